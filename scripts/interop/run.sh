#!/bin/bash
# scripts/interop/run.sh — the interop suite: softverbs against Linux rdma_rxe.
#
# Builds softverbs (release), prepares or reuses a cached Debian 12 guest
# image (kernel 6.1 with rdma_rxe, rdma-core, perftest), creates the private
# network namespace "roce" (bridge br-rxe 10.77.0.1/24 + tap rxetap1), boots
# one qemu guest (g1, 10.77.0.2, rxe0 on eth0) and drives the matrix from
# the host: every row twice, softverbs as server with the rxe tool as client,
# then the reverse. The guest runs a job loop (guest/runner.sh) fed through
# the 9p share, so one boot serves the whole matrix.
#
# The ibv-* rows (issue 6) put softverbs' libibverbs.so.1 on the host side:
# the unmodified rdma-core / perftest C tool (/usr/bin/ibv_*_pingpong,
# ib_*_{bw,lat}) runs with LD_LIBRARY_PATH pointing at a private copy of
# target/libibverbs and SOFTVERBS_DEVICES giving rxe0 on the host's address
# in the namespace; the guest runs the same tool on its rxe0. Needs
# ibverbs-utils and perftest on the host (--deps installs them).
#
# Usage (as root):
#   scripts/interop/run.sh [options]
#     --deps          install the host packages first (qemu-system-x86,
#                     mmdebstrap, tcpdump, tshark, python3) with apt-get
#     -j, --json      print the results as JSON on stdout (the table goes to stderr)
#     --only REGEX    run only the cases whose name matches (grep -E)
#     --list          list the cases and exit
#     --bench         after the matrix (or alone with --only '^$'), the speed
#                     comparison: softverbs perf and perftest on rxe inside
#                     the same guest
#     --out DIR       results folder (default target/interop/run-<time>)
#     --keep          keep the captures of passing cases too
#     --no-build      use the existing target/release/softverbs and
#                     target/libibverbs (no cargo / build-libibverbs.sh)
#     --libibverbs    run only the ibv-* rows (the C tools on our
#                     libibverbs.so.1); same as --only '^ibv-'
#     --no-libibverbs leave the ibv-* rows out (they are also left out, with
#                     a warning, when the host lacks the tools)
# Environment: RXE_CACHE (image cache, default target/interop/cache),
#   RXE_SMP (guest vCPUs, default 2), RXE_MEM (MiB, default 1536),
#   RXE_ACCEL (tcg|kvm; default tcg unless a real kvm module is loaded),
#   CASE_TIMEOUT (seconds per case, default 90), RXE_NETNS (default roce),
#   SOFTVERBS_BIN (a prebuilt softverbs binary; skips the build),
#   IBV_LIB (a folder with a prebuilt libibverbs.so.1; skips its build;
#   either way the suite runs on its own copy, $OUT/lib, so a rebuild of
#   target/libibverbs during the run does not change it).
#
# Everything happens inside the network namespace; the host's own network is
# not touched. The namespace is removed at the end.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NETNS=${RXE_NETNS:-roce}
BR=br-rxe
NET=10.77.0
HOST_IP=$NET.1
G1_IP=$NET.2
CACHE=${RXE_CACHE:-$REPO/target/interop/cache}
SMP=${RXE_SMP:-2}
MEM=${RXE_MEM:-1536}
CASE_TIMEOUT=${CASE_TIMEOUT:-90}
GUEST_PKGS=linux-image-amd64,initramfs-tools,rdma-core,ibverbs-utils,ibverbs-providers,rdmacm-utils,perftest,iproute2,tcpdump,kmod,procps,iputils-ping,netcat-openbsd,ethtool,udev,coreutils
JSON=0 ONLY="" LIST=0 BENCH=0 OUT="" KEEP=0 BUILD=1 DEPS=0 IBV=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --deps) DEPS=1 ;;
    -j|--json) JSON=1 ;;
    --only) ONLY=$2; shift ;;
    --list) LIST=1 ;;
    --bench) BENCH=1 ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --libibverbs) IBV=2 ;;
    --no-libibverbs) IBV=0 ;;
    -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[interop $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }
nsx() { ip netns exec "$NETNS" "$@"; }

# ------------------------------------------------------------------ matrix
# A row: NAME PHASE TOOL|SV_ARGS|RXE_ARGS [OPTS]. PHASE is the guest's
# Ethernet MTU setting: m1024 (eth0 1500, rxe active MTU 1024) or m4096
# (eth0 9000, rxe active MTU 4096); the host device gets the same MTU.
# SV_ARGS follow `softverbs`, RXE_ARGS are the guest command; the client
# side gets the peer's address appended. OPTS: netem (1% loss, reordering
# on both sides of the link), snap (capture headers only), port=N.
ROWS=()
row() { ROWS+=("$*"); }
PPN=50   # pingpong iterations
for mtu in 1024 4096; do
  ph=m$mtu
  for t in rc uc; do
    for s in 1 $mtu $((4 * mtu)); do
      row "pp-$t-m$mtu-s$s|$ph|pingpong $t -d rxe0 -g 1 -n $PPN -s $s -m $mtu -c|ibv_${t}_pingpong -d rxe0 -g 1 -n $PPN -s $s -m $mtu -c|"
    done
  done
  for s in 1 $mtu; do
    row "pp-ud-m$mtu-s$s|$ph|pingpong ud -d rxe0 -g 1 -n $PPN -s $s -c|ibv_ud_pingpong -d rxe0 -g 1 -n $PPN -s $s -c|"
  done
  for s in 1 $mtu $((4 * mtu)); do
    row "pp-srq-m$mtu-s$s|$ph|pingpong srq -d rxe0 -g 1 -q 4 -n $PPN -s $s -m $mtu -c|ibv_srq_pingpong -d rxe0 -g 1 -q 4 -n $PPN -s $s -m $mtu -c|"
  done
done
P="-d rxe0 -x 1 -F"
perf() { # NAME PHASE TEST ARGS [OPTS]
  row "$1|$2|perf $3 $P $4|ib_$3 $P $4|${5:-snap}"
}
perf pf-send_bw        m1024 send_bw   "-s 65536 -n 200"
perf pf-send_bw-a      m1024 send_bw   "-a -n 8"
perf pf-write_bw       m1024 write_bw  "-s 65536 -n 200"
perf pf-write_bw-a     m1024 write_bw  "-a -n 8"
perf pf-write_bw-q4    m1024 write_bw  "-s 65536 -n 100 -q 4"
perf pf-read_bw        m1024 read_bw   "-s 65536 -n 200"
perf pf-atomic_bw-fadd m1024 atomic_bw "-A FETCH_AND_ADD -n 500"
perf pf-atomic_bw-cas  m1024 atomic_bw "-A CMP_AND_SWAP -n 500"
perf pf-send_lat       m1024 send_lat  "-s 2 -n 500"
perf pf-write_lat      m1024 write_lat "-s 2 -n 500"
perf pf-read_lat       m1024 read_lat  "-s 2 -n 500"
perf pf-write_bw-m4096 m4096 write_bw  "-s 65536 -n 200"
perf pf-send_bw-m4096  m4096 send_bw   "-s 65536 -n 200"
# RC under 1% loss and reordering on both directions of the link.
perf nm-write_bw       m1024 write_bw  "-s 65536 -n 100" "snap netem"
perf nm-send_bw        m1024 send_bw   "-s 65536 -n 100" "snap netem"
perf nm-write_bw-a     m1024 write_bw  "-a -n 5" "snap netem"
row "nm-pp-rc-m1024-s4096|m1024|pingpong rc -d rxe0 -g 1 -n 200 -s 4096 -m 1024 -c|ibv_rc_pingpong -d rxe0 -g 1 -n 200 -s 4096 -m 1024 -c|netem"

# libibverbs rows (issue 6): the same unmodified C tool on both sides, on
# softverbs' libibverbs.so.1 on the host and on the kernel's rxe in the guest.
# OPTS "ibv": SV_ARGS is the host's whole command line.
ibv() { # NAME PHASE COMMAND [OPTS]
  row "ibv-$1|$2|$3|$3|ibv${4:+ $4}"
}
for t in rc uc; do
  ibv pp-$t        m1024 "ibv_${t}_pingpong -d rxe0 -g 1 -n $PPN -s 4096 -m 1024 -c"
  ibv pp-$t-e      m1024 "ibv_${t}_pingpong -d rxe0 -g 1 -n $PPN -s 4096 -m 1024 -c -e"
done
ibv pp-ud          m1024 "ibv_ud_pingpong -d rxe0 -g 1 -n $PPN -s 1024 -c"
ibv pp-ud-e        m1024 "ibv_ud_pingpong -d rxe0 -g 1 -n $PPN -s 1024 -c -e"
ibv pp-srq         m1024 "ibv_srq_pingpong -d rxe0 -g 1 -q 4 -n $PPN -s 4096 -m 1024 -c"
ibv pp-srq-e       m1024 "ibv_srq_pingpong -d rxe0 -g 1 -q 4 -n $PPN -s 4096 -m 1024 -c -e"
ibv pp-rc-m4096    m4096 "ibv_rc_pingpong -d rxe0 -g 1 -n $PPN -s 16384 -m 4096 -c"
# perftest 4.5+0.17 takes its ibv_wr_* path only on devices it knows by
# vendor_part_id (mlx5, EFA): on rxe and on softverbs its default is
# ibv_post_send, as with --use_old_post_send. The -wr rows make it take
# ibv_wr_* on the host (OPTS "wr": host/wr_api_preload.c reports a
# ConnectX-4 part id; the verdict checks "ibv_wr* API : ON" in its output);
# the guest's perftest keeps its default.
for t in send write read; do
  ibv pf-${t}_bw     m1024 "ib_${t}_bw $P -s 65536 -n 200" snap
  ibv pf-${t}_bw-wr  m1024 "ib_${t}_bw $P -s 65536 -n 200" "snap wr"
  ibv pf-${t}_bw-old m1024 "ib_${t}_bw $P -s 65536 -n 200 --use_old_post_send" snap
done
ibv pf-atomic_bw         m1024 "ib_atomic_bw $P -A FETCH_AND_ADD -n 500" snap
ibv pf-atomic_bw-wr      m1024 "ib_atomic_bw $P -A FETCH_AND_ADD -n 500" "snap wr"
ibv pf-atomic_bw-cas-wr  m1024 "ib_atomic_bw $P -A CMP_AND_SWAP -n 500" "snap wr"
ibv pf-atomic_bw-cas-old m1024 "ib_atomic_bw $P -A CMP_AND_SWAP -n 500 --use_old_post_send" snap
for t in send write read atomic; do
  ibv pf-${t}_lat    m1024 "ib_${t}_lat $P -n 500" snap
  ibv pf-${t}_lat-wr m1024 "ib_${t}_lat $P -n 500" "snap wr"
done
ibv pf-send_lat-old  m1024 "ib_send_lat $P -n 500 --use_old_post_send" snap
ibv pf-write_bw-a-wr m1024 "ib_write_bw $P -a -n 8" "snap wr"
ibv pf-send_bw-m4096-wr m4096 "ib_send_bw $P -s 65536 -n 200" "snap wr"

# Every row in both directions: sv-srv (softverbs server, rxe client) and
# rxe-srv (rxe server, softverbs client).
CASES=()
IBV_TOOLS=(ibv_rc_pingpong ibv_uc_pingpong ibv_ud_pingpong ibv_srq_pingpong ib_send_bw ib_write_bw ib_read_bw ib_atomic_bw ib_send_lat ib_write_lat ib_read_lat ib_atomic_lat)
IBV_MISSING=""
for b in "${IBV_TOOLS[@]}"; do command -v $b >/dev/null || IBV_MISSING+=" $b"; done
if [[ $IBV != 0 && -n "$IBV_MISSING" && $DEPS == 0 ]]; then
  [[ $IBV == 2 ]] && die "the host lacks$IBV_MISSING: run with --deps (or apt-get install ibverbs-utils perftest)"
  log "warning: the host lacks$IBV_MISSING: the ibv-* rows are left out (--deps installs ibverbs-utils and perftest)"
  IBV=0
fi
for r in "${ROWS[@]}"; do
  IFS='|' read -r name _ _ _ _ <<<"$r"
  [[ $IBV == 0 && $name == ibv-* ]] && continue
  [[ $IBV == 2 && $name != ibv-* ]] && continue
  for dir in sv-srv rxe-srv; do
    [[ -z "$ONLY" ]] || grep -qE -- "$ONLY" <<<"$name.$dir" || continue
    CASES+=("$dir|$r")
  done
done
if [[ $LIST == 1 ]]; then
  for c in "${CASES[@]}"; do
    IFS='|' read -r dir name ph sv rx opts <<<"$c"
    if [[ $opts == *ibv* ]]; then sv="(libibverbs.so.1) $sv"; else sv="softverbs $sv"; fi
    printf '%-28s %-7s %-6s %s  <->  %s  [%s]\n' "$name" "$dir" "$ph" "$sv" "$rx" "$opts"
  done
  exit 0
fi

# ------------------------------------------------------------------ setup
[[ $(id -u) == 0 ]] || die "run as root (network namespace, taps, tcpdump)"
# One suite at a time: the namespace, the tap and TCP port 18515 are shared.
exec 9>"/run/softverbs-interop-$NETNS.lock"
flock -n 9 || die "another interop run holds /run/softverbs-interop-$NETNS.lock"

install_deps() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  local qv; qv=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [[ "$qv" == *bpo* ]]; then
    # qemu-utils from backports: bookworm's qemu-system-common would break it.
    apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 \
      || die "qemu-system-x86 from bookworm-backports (add that suite to apt's sources)"
  else
    apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils
  fi
  apt-get install -y -q --no-install-recommends mmdebstrap e2fsprogs tcpdump tshark iproute2 python3
  [[ $IBV == 0 ]] || apt-get install -y -q --no-install-recommends ibverbs-utils perftest
}
[[ $DEPS == 1 ]] && install_deps
for b in qemu-system-x86_64 tcpdump python3 ip tc; do
  command -v $b >/dev/null || die "$b is missing: run with --deps (or apt-get install qemu-system-x86 tcpdump python3 iproute2)"
done

# The guest image: built once into $CACHE, reused while its /sbin/rxe-init
# matches guest/rxe-init (checked with debugfs, so an image made by the
# shared rxe-vm.sh is reused as is).
image() {
  mkdir -p "$CACHE"
  local want have=""
  want=$(sha256sum <"$HERE/guest/rxe-init" | cut -d' ' -f1)
  if [[ -s "$CACHE/rootfs.ext4" && -s "$CACHE/vmlinuz" && -s "$CACHE/initrd.img" && -z "${FORCE:-}" ]]; then
    have=$(debugfs -R 'cat /sbin/rxe-init' "$CACHE/rootfs.ext4" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [[ "$have" == "$want" ]] && { log "guest image: $CACHE (cached)"; return 0; }
    log "guest image in $CACHE has another rxe-init: rebuilding"
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: run with --deps"
  local mirror root="$CACHE/rootfs" t0=$SECONDS
  mirror=${RXE_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)}
  [[ -n "$mirror" ]] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
  if [[ ! -x "$root/usr/bin/ib_write_bw" ]]; then
    rm -rf "$root"
    log "mmdebstrap bookworm ($mirror) -> $root"
    mmdebstrap --variant=minbase --include="$GUEST_PKGS" bookworm "$root" "$mirror" || die "mmdebstrap failed"
  fi
  install -m755 "$HERE/guest/rxe-init" "$root/sbin/rxe-init"
  mkdir -p "$root/mnt/share"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)" "$CACHE/vmlinuz"
  cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)" "$CACHE/initrd.img"
  rm -f "$CACHE/rootfs.ext4.tmp"; truncate -s 1536M "$CACHE/rootfs.ext4.tmp"
  mkfs.ext4 -q -F -L rxeroot -d "$root" "$CACHE/rootfs.ext4.tmp" || die "mkfs.ext4 failed"
  mv "$CACHE/rootfs.ext4.tmp" "$CACHE/rootfs.ext4"
  log "guest image built in $((SECONDS - t0))s"
}

net_up() {
  ip netns list | grep -qw "$NETNS" && ip netns del "$NETNS"
  ip netns add "$NETNS"
  nsx ip link set lo up
  nsx ip link add "$BR" type bridge
  nsx ip link set "$BR" mtu 9000
  nsx ip addr add "$HOST_IP/24" dev "$BR"
  nsx ip tuntap add dev rxetap1 mode tap
  nsx ip link set rxetap1 mtu 9000
  nsx ip link set rxetap1 master "$BR"
  nsx ip link set rxetap1 up
  nsx ip link set "$BR" up
}
net_down() { ip netns list | grep -qw "$NETNS" && ip netns del "$NETNS"; true; }

accel() {
  local a=${RXE_ACCEL:-}
  if [[ -z "$a" ]]; then
    if [[ -e /dev/kvm && ! -d /sys/module/kvm_pvm ]] && { [[ -d /sys/module/kvm_intel ]] || [[ -d /sys/module/kvm_amd ]]; }; then a=kvm; else a=tcg; fi
  fi
  if [[ $a == kvm ]]; then echo "-accel kvm -cpu host"; else echo "-accel tcg,thread=multi,tb-size=512 -cpu max"; fi
}

QEMU_PID=""
boot() { # boots g1 in the background with share $SHARE
  # shellcheck disable=SC2046
  ip netns exec "$NETNS" timeout 3600 qemu-system-x86_64 $(accel) -smp "$SMP" -m "$MEM" -machine q35 \
    -nodefaults -display none -no-reboot -serial stdio \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet init=/sbin/rxe-init rxe.ip=$G1_IP/24 rxe.name=g1" \
    -drive "file=$CACHE/rootfs.ext4,format=raw,if=virtio,snapshot=on" \
    -netdev "tap,id=n0,ifname=rxetap1,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02" \
    -virtfs "local,path=$SHARE,mount_tag=share,security_model=none,id=share" \
    </dev/null >"$SHARE/console-g1.log" 2>&1 &
  QEMU_PID=$!
}

cleanup() {
  [[ -n "${TD_PID:-}" ]] && kill "$TD_PID" 2>/dev/null
  [[ -n "${SHARE:-}" && -d "${SHARE:-}/q" ]] && touch "$SHARE/q/g1.quit"
  if [[ -n "$QEMU_PID" ]]; then
    local i; for i in $(seq 1 100); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$QEMU_PID" 2>/dev/null; wait "$QEMU_PID" 2>/dev/null
  fi
  net_down
}

# ------------------------------------------------------------------ running
T_START=$SECONDS
if [[ $BUILD == 1 && -z "${SOFTVERBS_BIN:-}" ]]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release --bin softverbs) >&2 || die "build failed"
fi
SV=${SOFTVERBS_BIN:-$REPO/target/release/softverbs}
[[ -x $SV ]] || die "$SV is missing"
[[ -n "$OUT" ]] || OUT=$REPO/target/interop/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/cases"; OUT=$(cd "$OUT" && pwd)
# softverbs' libibverbs.so.1 for the ibv-* rows: a private copy in $OUT/lib.
IBV_DIR=$OUT/lib
if [[ ${#CASES[@]} -gt 0 ]] && grep -q '|ibv' <<<"$(printf '%s\n' "${CASES[@]}")"; then
  src=${IBV_LIB:-$REPO/target/libibverbs}
  if [[ $BUILD == 1 && -z "${IBV_LIB:-}" ]]; then
    log "scripts/build-libibverbs.sh"
    "$REPO/scripts/build-libibverbs.sh" >&2 || die "libibverbs build failed"
  fi
  [[ -e $src/libibverbs.so.1 ]] || die "$src/libibverbs.so.1 is missing (scripts/build-libibverbs.sh)"
  mkdir -p "$IBV_DIR"
  cp -L "$src/libibverbs.so.1" "$IBV_DIR/libibverbs.so.1"
  n=$(LD_LIBRARY_PATH=$IBV_DIR SOFTVERBS_DEVICES=rxe0=rxe:$HOST_IP timeout 20 ibv_devices 2>&1 | grep -cw rxe0)
  [[ $n -ge 1 ]] || die "ibv_devices on $IBV_DIR/libibverbs.so.1 does not list rxe0"
  log "libibverbs: $IBV_DIR/libibverbs.so.1 (copy of $src, $(stat -c %y "$src/libibverbs.so.1" | cut -d. -f1))"
  if grep -q '|ibv.* wr' <<<"$(printf '%s\n' "${CASES[@]}")"; then
    ${CC:-cc} -O2 -shared -fPIC -o "$IBV_DIR/wr_api_preload.so" "$HERE/host/wr_api_preload.c" -ldl \
      || die "cannot build host/wr_api_preload.c (needs a C compiler) for the -wr rows"
  fi
fi
image
SHARE=$OUT/share; Q=$SHARE/q
mkdir -p "$Q"
cp "$HERE/guest/runner.sh" "$SHARE/guest.sh"
cp "$HERE/guest/lib.sh" "$SHARE/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM
net_up
log "booting g1 ($(accel), $SMP vCPUs) with share $SHARE"
boot
T_BOOT=$SECONDS
for i in $(seq 1 1800); do [[ -e $Q/g1.up ]] && break; kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
[[ -e $Q/g1.up ]] || { tail -20 "$SHARE/console-g1.log" >&2; die "guest did not come up"; }
log "g1 up after $((SECONDS - T_BOOT))s"

JOBN=0
# gjob SCRIPT-TEXT: submit a job to g1; its id in JOB_ID.
JOB_ID=""
gjob() {
  JOBN=$((JOBN + 1))
  JOB_ID=$(printf 'g1.%04d' $JOBN)
  { echo ". $SHARE_GUEST/lib.sh"; echo "$1"; } >"$Q/$JOB_ID.tmp"
  mv "$Q/$JOB_ID.tmp" "$Q/$JOB_ID.job"
}
SHARE_GUEST=/mnt/share
# gwait ID SECS: wait for a job's rc; prints it (124 if it did not end in time).
gwait() {
  local i n=$(( $2 * 10 ))
  for ((i = 0; i < n; i++)); do [[ -e $Q/$1.rc ]] && { cat "$Q/$1.rc"; return; }; sleep 0.1; done
  echo 124
}
# grun SECS TEXT: run a job to the end; output to stderr on failure.
grun() {
  local id rc; gjob "$2"; id=$JOB_ID; rc=$(gwait "$id" "$1")
  [[ $rc == 0 ]] || { log "guest job failed ($rc): $2"; cat "$Q/$id.out" >&2 2>/dev/null; }
  return "$rc"
}

CUR_PHASE=""
phase() {
  [[ $1 == "$CUR_PHASE" ]] && return
  local mtu=1500; [[ $1 == m4096 ]] && mtu=9000
  grun 60 "ip link set eth0 mtu $mtu; for i in \$(seq 1 50); do ibv_devinfo -d rxe0 | grep -q 'active_mtu:.*${1#m}' && break; sleep 0.1; done; ibv_devinfo -d rxe0 | grep -E 'mtu'" \
    || log "warning: could not set the guest MTU for $1"
  log "phase $1: guest eth0 mtu $mtu, rxe0 reports: $(tr '\n' ' ' <"$Q/g1.$(printf %04d $JOBN).out" | tr -s ' \t')"
  CUR_PHASE=$1
}

# RC under loss and reordering: 1% loss and 10% of packets sent 1 ms early
# (netem delay + reorder), each direction, applied inside the guest.
NETEM="loss 1% delay 1ms reorder 10% 25%"
netem_on() { grun 30 "impair $NETEM" || log "warning: could not set up netem in the guest"; }
netem_off() { grun 30 "impair off" >/dev/null; }

# wait_listen PID PORT: until the host-side server listens (or died).
wait_listen() {
  local i
  for i in $(seq 1 600); do
    nsx ss -Hltn "sport = :$2" | grep -q . && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

RESULTS=$OUT/results.tsv
: >"$RESULTS"
# counter NAME FILE: a counter's value in a "name value" file (0 if absent).
counter() { awk -v n="$1" '$1==n{print $2; f=1} END{if(!f)print 0}' "$2" 2>/dev/null || echo 0; }

run_case() {
  local dir=$1 name=$2 ph=$3 sv=$4 rx=$5 opts=$6
  local cdir="$OUT/cases/$name.$dir" port=18515 snap=0 t0=$SECONDS
  mkdir -p "$cdir"
  [[ $opts == *port=* ]] && port=$(sed 's/.*port=\([0-9]*\).*/\1/' <<<"$opts")
  [[ $opts == *snap* ]] && snap=256
  phase "$ph"
  local mtu=${ph#m}
  local env="SOFTVERBS_DEVICES=rxe0=rxe:$HOST_IP:mtu=$mtu"
  local sv_cmd rx_cmd pre="$SV" stats=" --stats"
  # ibv rows: the C tool itself, on our libibverbs.so.1
  [[ $opts == *ibv* ]] && { env="LD_LIBRARY_PATH=$IBV_DIR SOFTVERBS_IBV_DEBUG=1 $env"; pre=""; stats=""; }
  [[ $opts == *ibv*\ wr* ]] && env="LD_PRELOAD=$IBV_DIR/wr_api_preload.so $env"
  if [[ $dir == sv-srv ]]; then
    sv_cmd="${pre:+$pre }$sv$stats"; rx_cmd="$rx $HOST_IP"
  else
    sv_cmd="${pre:+$pre }$sv$stats $G1_IP"; rx_cmd="$rx"
  fi
  echo "host (netns $NETNS): $env $sv_cmd" >"$cdir/cmd.txt"
  echo "guest g1: $rx_cmd" >>"$cdir/cmd.txt"
  [[ $opts == *netem* ]] && netem_on
  ip netns exec "$NETNS" tcpdump -i "$BR" --immediate-mode -B 16384 -U -s $snap -w "$cdir/capture.pcap" 'udp port 4791 or tcp port '"$port" >"$cdir/tcpdump.log" 2>&1 &
  local td=$!; TD_PID=$td
  for _ in $(seq 1 50); do grep -q listening "$cdir/tcpdump.log" 2>/dev/null && break; sleep 0.05; done
  local T=$CASE_TIMEOUT id hrc grc hp
  if [[ $dir == sv-srv ]]; then
    # shellcheck disable=SC2086
    ip netns exec "$NETNS" env $env timeout "$T" $sv_cmd >"$cdir/host.out" 2>&1 &
    hp=$!
    if wait_listen "$hp" "$port"; then
      gjob "cnt > \$Q/\$ID.cnt0; timeout $T $rx_cmd; rc=\$?; cnt > \$Q/\$ID.cnt1; exit \$rc"; id=$JOB_ID
      # a server that failed leaves the guest's client waiting: stop it
      for _ in $(seq 1 $((T * 10))); do
        [[ -e $Q/$id.rc ]] && break
        kill -0 "$hp" 2>/dev/null || { sleep 2; [[ -e $Q/$id.rc ]] || grun 10 "pkill -x ${rx%% *}; true" >/dev/null; break; }
        sleep 0.1
      done
      grc=$(gwait "$id" 20)
    else
      id=""; grc=125
    fi
    wait "$hp"; hrc=$?
  else
    gjob "cnt > \$Q/\$ID.cnt0; srv $port timeout $T $rx_cmd; rc=\$?; cnt > \$Q/\$ID.cnt1; exit \$rc"; id=$JOB_ID
    for _ in $(seq 1 $((T * 10))); do [[ -e $Q/$id.ready || -e $Q/$id.rc ]] && break; sleep 0.1; done
    # shellcheck disable=SC2086
    nsx env $env timeout "$T" $sv_cmd >"$cdir/host.out" 2>&1
    hrc=$?
    # a client that failed leaves the guest's server waiting: stop it
    [[ $hrc == 0 ]] || { sleep 2; [[ -e $Q/$id.rc ]] || grun 10 "pkill -x ${rx%% *}; true" >/dev/null; }
    grc=$(gwait "$id" $((T + 15)))
  fi
  sleep 0.5
  kill -INT "$td" 2>/dev/null; wait "$td" 2>/dev/null
  if [[ $opts == *netem* ]]; then grun 10 "tc -s qdisc show dev eth0; tc -s qdisc show dev ifb0" >/dev/null; cp "$Q/g1.$(printf %04d $JOBN).out" "$cdir/netem-stats.txt"; netem_off; fi
  if [[ -n "$id" ]]; then
    cp "$Q/$id.out" "$cdir/guest.out" 2>/dev/null
    cp "$Q/$id.cnt0" "$cdir/rxe-counters-before.txt" 2>/dev/null
    cp "$Q/$id.cnt1" "$cdir/rxe-counters-after.txt" 2>/dev/null
  fi
  # Verdict: both sides exit 0; Linux accepted every packet sent to it
  # (rxe counts rcvd_pkts only after the ICRC and header checks pass, so
  # it must equal what the capture saw going to the guest — not under
  # netem, which drops after the capture point); softverbs dropped nothing
  # for a bad ICRC; every fully captured packet's ICRC recomputes.
  local why=() to_guest=0 rcvd=0 bad_icrc sv_icrc detail_extra=""
  [[ $hrc == 0 ]] || why+=("softverbs rc=$hrc")
  [[ $grc == 0 ]] || why+=("rxe rc=$grc")
  # perftest says which post path it took
  if [[ $opts == *ibv* && $sv == ib_* ]]; then
    local want=OFF; [[ $opts == *ibv*\ wr* ]] && want=ON
    grep -qE "ibv_wr\* API +: $want" "$cdir/host.out" || why+=("host perftest: ibv_wr* API is not $want")
  fi
  to_guest=$(tcpdump -r "$cdir/capture.pcap" -n "udp dst port 4791 and dst host $G1_IP" 2>/dev/null | wc -l)
  rcvd=$(( $(counter rcvd_pkts "$cdir/rxe-counters-after.txt") - $(counter rcvd_pkts "$cdir/rxe-counters-before.txt") ))
  # A packet that reaches the guest after its tool destroyed the QP (a last
  # ACK or a send the tool did not wait for: srq_pingpong stops counting
  # before its last sends complete) is dropped before rcvd_pkts counts it;
  # a few such late packets are tolerated and reported.
  # ibv_srq_pingpong may leave one message per QP (and its ACK) in flight.
  local late=$((to_guest - rcvd)) tol=4 cap_drop
  [[ $name == *srq* ]] && tol=24
  cap_drop=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$cdir/tcpdump.log")
  if [[ ${cap_drop:-0} != 0 ]]; then
    detail_extra=" capture_dropped=$cap_drop (count check skipped)"
  elif [[ $opts != *netem* ]] && (( late < 0 || late > tol )); then
    why+=("rxe rcvd_pkts +$rcvd but $to_guest sent to it")
  fi
  sv_icrc=$(grep -oE 'drop_bad_icrc[": =]+[0-9]+' "$cdir/host.out" | grep -oE '[0-9]+$' | tail -1)
  [[ -z "$sv_icrc" || "$sv_icrc" == 0 ]] || why+=("softverbs drop_bad_icrc=$sv_icrc")
  [[ -n "$sv_icrc" ]] || sv_icrc="?"
  bad_icrc=$(python3 "$HERE/host/icrc_check.py" "$cdir/capture.pcap" 2>/dev/null)
  local ok_n bad_n; read -r ok_n bad_n <<<"$bad_icrc"
  [[ "${bad_n:-0}" == 0 ]] || why+=("capture: $bad_n bad ICRC")
  local status=PASS detail
  [[ ${#why[@]} == 0 ]] || status=FAIL
  (( late == 0 )) && late=""
  detail="to_rxe=$to_guest rxe_rcvd=$rcvd${late:+ late=$late} icrc_ok=${ok_n:-0} sv_drop_bad_icrc=$sv_icrc$detail_extra"
  if [[ $opts == *netem* ]]; then
    # evidence that recovery ran: softverbs' retransmissions and rxe's
    # duplicate / out-of-sequence / retry counters over the case
    local sv_retx k d=""
    sv_retx=$(grep -oE 'qp_retransmitted_pkts[": =]+[0-9]+' "$cdir/host.out" | grep -oE '[0-9]+$' | tail -1)
    for k in duplicate_request out_of_seq_request rcvd_seq_err completer_retry_err; do
      d+=" rxe_$k=$(( $(counter $k "$cdir/rxe-counters-after.txt") - $(counter $k "$cdir/rxe-counters-before.txt") ))"
    done
    detail+=" sv_retransmitted=${sv_retx:-?}$d"
  fi
  [[ ${#why[@]} == 0 ]] || detail="$(IFS=';'; echo "${why[*]}"); $detail"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$dir" "$ph" "$status" $((SECONDS - t0)) "$detail" \
    "$env $sv_cmd" "$rx_cmd" "$cdir" >>"$RESULTS"
  log "$(printf '%-4s %-26s %-7s %3ss  %s' "$status" "$name" "$dir" $((SECONDS - t0)) "$detail")"
  if [[ $status == PASS && $KEEP == 0 ]]; then rm -f "$cdir/capture.pcap"; fi
  # a stuck guest job must not hold the port for the next case
  [[ -n "$id" && ! -e $Q/$id.rc ]] && grun 10 "pkill -x ${rx%% *}; true" >/dev/null
}

# Phase order: all m1024 cases, then m4096, then netem (fewest MTU switches).
ordered() {
  local c
  for c in "${CASES[@]}"; do IFS='|' read -r _ _ ph _ _ opts <<<"$c"; [[ $ph == m1024 && $opts != *netem* ]] && echo "$c"; done
  for c in "${CASES[@]}"; do IFS='|' read -r _ _ ph _ _ opts <<<"$c"; [[ $ph == m4096 && $opts != *netem* ]] && echo "$c"; done
  for c in "${CASES[@]}"; do IFS='|' read -r _ _ _ _ _ opts <<<"$c"; [[ $opts == *netem* ]] && echo "$c"; done
}
T_MATRIX=$SECONDS
while IFS='|' read -r dir name ph sv rx opts; do
  run_case "$dir" "$name" "$ph" "$sv" "$rx" "$opts"
done < <(ordered)
MATRIX_S=$((SECONDS - T_MATRIX))
grun 30 "dmesg | grep -iE 'rxe|rdma|icrc' | tail -50" ; true
cp "$Q/g1.$(printf %04d $JOBN).out" "$OUT/guest-dmesg.txt" 2>/dev/null

if [[ $BENCH == 1 ]]; then
  log "speed comparison in g1 (softverbs perf vs perftest on rxe, same guest)"
  cp "$SV" "$SHARE/softverbs"
  cp "$HERE/guest/bench.sh" "$SHARE/bench.sh"
  grun 900 "bash \$S/bench.sh" || true
  cp "$Q/g1.$(printf %04d $JOBN).out" "$OUT/bench.txt" 2>/dev/null
fi

touch "$Q/g1.quit"
TOTAL_S=$((SECONDS - T_START))
BENCH_ARG=(); [[ $BENCH == 1 ]] && BENCH_ARG=("$OUT/bench.txt")
python3 "$HERE/host/report.py" "$RESULTS" "$JSON" "$MATRIX_S" "$TOTAL_S" "$OUT" "${BENCH_ARG[@]}"
