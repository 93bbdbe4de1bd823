#!/bin/sh
# Runs unmodified rdma-core tools and perftest on softverbs's libibverbs.so.1:
# both sides on this host, each in its own process: the server on rxe0, the
# client on rxe1 (on addresses 127.X.Y.1 and .2 of their own, so runs at the
# same time do not collide; the out-of-band TCP exchange goes to 127.0.0.1).
#
#   apt-get install -y ibverbs-utils perftest     # Debian 12: rdma-core 44
#   scripts/build-libibverbs.sh
#   scripts/test-libibverbs.sh [-k]               # -k: keep going after a failure
#
# Prints one line per run (PASS/FAIL) and the output of failures; exits 1 if
# any failed. SOFTVERBS_IBV_DEBUG=1 makes the library say why a verb failed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
lib=${SOFTVERBS_LIBIBVERBS_DIR:-$root/target/libibverbs}
keep=0
[ "${1:-}" = "-k" ] && keep=1
if [ ! -e "$lib/libibverbs.so.1" ]; then
  echo "no $lib/libibverbs.so.1: run scripts/build-libibverbs.sh first" >&2
  exit 2
fi
if ! command -v ibv_devinfo > /dev/null; then
  echo "SKIP: rdma-core tools not installed (apt-get install -y ibverbs-utils perftest)"
  exit 0
fi
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
port=$((18515 + $$ % 1000))
# Addresses of their own, so that tests running at the same time on the
# default 127.0.0.1/127.0.0.2 do not take our UDP port 4791.
net=127.$((100 + $$ % 100)).$(( ($$ / 100) % 250 + 1 ))
srv_dev="rxe0=rxe:$net.1"
cli_dev="rxe1=rxe:$net.2"
export SOFTVERBS_IBV_DEBUG=1

result() { # name rc logs...
  name=$1 rc=$2
  shift 2
  if [ "$rc" -eq 0 ]; then
    echo "PASS  $name"
  else
    echo "FAIL  $name (rc $rc)"
    for f in "$@"; do sed 's/^/      | /' "$f"; done
    failed=1
    [ "$keep" -eq 1 ] || exit 1
  fi
}

single() { # name cmd...
  name=$1
  shift
  timeout 30 "$@" > "$tmp/out" 2>&1
  result "$name" $? "$tmp/out"
}

pair() { # name server-cmd -- client-args (client = server cmd + args)
  name=$1
  shift
  port=$((port + 1))
  SOFTVERBS_DEVICES=$srv_dev timeout 60 "$@" -d rxe0 -p $port > "$tmp/srv" 2>&1 &
  spid=$!
  sleep 0.5
  SOFTVERBS_DEVICES=$cli_dev timeout 60 "$@" -d rxe1 -p $port 127.0.0.1 > "$tmp/cli" 2>&1
  crc=$?
  wait $spid
  src=$?
  rc=$crc
  [ $rc -eq 0 ] && rc=$src
  last_rc=$rc
  result "$name" $rc "$tmp/srv" "$tmp/cli"
}

single "ibv_devices" ibv_devices
single "ibv_devinfo" ibv_devinfo
single "ibv_devinfo -v" ibv_devinfo -v
single "ibv_devinfo -d rxe1 -v" ibv_devinfo -d rxe1 -v
pair "ibv_rc_pingpong -g 1" ibv_rc_pingpong -g 1
pair "ibv_rc_pingpong -g 1 -e" ibv_rc_pingpong -g 1 -e
pair "ibv_rc_pingpong -g 1 -s 65536 -n 200" ibv_rc_pingpong -g 1 -s 65536 -n 200
pair "ibv_uc_pingpong -g 1" ibv_uc_pingpong -g 1
pair "ibv_uc_pingpong -g 1 -e" ibv_uc_pingpong -g 1 -e
pair "ibv_ud_pingpong -g 1" ibv_ud_pingpong -g 1
pair "ibv_ud_pingpong -g 1 -e" ibv_ud_pingpong -g 1 -e
pair "ibv_srq_pingpong -g 1" ibv_srq_pingpong -g 1
pair "ibv_srq_pingpong -g 1 -e" ibv_srq_pingpong -g 1 -e
if command -v ib_write_bw > /dev/null; then
  for t in ib_write_bw ib_send_bw ib_read_bw ib_atomic_bw ib_write_lat ib_send_lat ib_read_lat ib_atomic_lat; do
    pair "$t -x 1 --use_old_post_send" $t -x 1 -n 200 --use_old_post_send
  done
  # perftest's default path. perftest 4.5 takes its ibv_wr_* path only on
  # devices whose vendor_part_id it knows (mlx5, EFA), so on softverbs (as on
  # rxe) the default is ibv_post_send too ...
  for t in ib_write_bw ib_send_bw ib_read_bw ib_atomic_bw ib_write_lat ib_send_lat ib_read_lat ib_atomic_lat; do
    pair "$t -x 1" $t -x 1 -n 200
  done
  # ... and the ibv_wr_* path (extended QPs) runs under a preload that makes
  # ibv_query_device report a ConnectX-4 part id (the interop suite's -wr
  # rows do the same); the tool must say "ibv_wr* API : ON".
  if cc -shared -fPIC -o "$tmp/wr_api.so" "$root/scripts/interop/host/wr_api_preload.c" -ldl 2> "$tmp/cc"; then
    for t in ib_write_bw ib_send_bw ib_read_bw ib_atomic_bw ib_write_lat ib_send_lat ib_read_lat ib_atomic_lat; do
      pair "$t -x 1 (ibv_wr_* path)" env LD_PRELOAD="$tmp/wr_api.so" $t -x 1 -n 200
      if [ "$last_rc" -eq 0 ] && ! grep -qE 'ibv_wr\* API +: ON' "$tmp/cli"; then
        result "$t -x 1 took the ibv_wr_* path" 1 "$tmp/cli"
      fi
    done
  else
    result "compile scripts/interop/host/wr_api_preload.c" 1 "$tmp/cc"
  fi
fi
exit $failed
