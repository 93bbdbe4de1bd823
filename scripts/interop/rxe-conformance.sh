#!/bin/bash
# scripts/interop/rxe-conformance.sh — rdma-core's own Python test suite
# (python3-pyverbs v44, Debian 12) on Linux 6.1 rdma_rxe inside one qemu
# guest, for comparison with softverbs' conformance run (issue 6).
#
# Usage (as root): RXE_CACHE=/work/rxe-cache scripts/interop/rxe-conformance.sh [OUT.txt]
#   OUT.txt defaults to crates/ibverbs/conformance/rxe-linux-6.1.txt.
# Uses ../shared/interop/rxe-vm.sh (SHARED_INTEROP=DIR to point elsewhere)
# and its guest/rdma-core-tests.sh; the guest image must include
# python3-pyverbs (rxe-vm.sh image does). Runs in its own network namespace
# (RXE_NETNS, default sv-rxetests) so it can overlap an interop run.
# Guest vCPUs RXE_SMP (default 2). Under TCG on a 2-core machine: about 30 s
# (15 s boot, 10 s of tests); the guest is killed after RXE_TIMEOUT s.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED_INTEROP:-$REPO/../shared/interop}
OUTF=${1:-$REPO/crates/ibverbs/conformance/rxe-linux-6.1.txt}
export RXE_NETNS=${RXE_NETNS:-sv-rxetests}
export RXE_TIMEOUT=${RXE_TIMEOUT:-3600}
export RXE_CACHE=${RXE_CACHE:-$REPO/target/interop/cache}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/rxe-conformance.XXXXXX")
trap '"$SHARED/rxe-vm.sh" net-down >/dev/null 2>&1 || true' EXIT
cp "$SHARED/guest/rdma-core-tests.sh" "$DIR/guest.sh"
# rxe-vm.sh image rebuilds an image older than its guest/rxe-init; a cached
# image with python3-pyverbs is used as it is.
if [[ ! -s "$RXE_CACHE/rootfs.ext4" || ! -d "$RXE_CACHE/rootfs/usr/lib/python3/dist-packages/pyverbs" ]]; then
  "$SHARED/rxe-vm.sh" image
fi
"$SHARED/rxe-vm.sh" net-up 1
t0=$SECONDS
"$SHARED/rxe-vm.sh" run "$DIR" 1 || true
[[ -s "$DIR/rdma-core-tests-rxe.txt" ]] || { tail -30 "$DIR/console-g1.log" >&2; echo "no results (see $DIR)" >&2; exit 1; }
mkdir -p "$(dirname "$OUTF")"
{
  echo "# rdma-core tests (python3-pyverbs 44, Debian 12) on Linux $(grep -o 'kernel [^ ]*' "$DIR/console-g1.log" | head -1 | cut -d' ' -f2) rdma_rxe (rxe0 on eth0, GID 1), qemu TCG guest"
  echo "# produced by scripts/interop/rxe-conformance.sh on $(date -u +%F) in $((SECONDS - t0)) s (guest boot included)"
  echo "# command in the guest: python3 tests/run_tests.py --dev rxe0 --gid 1 -v"
  cat "$DIR/rdma-core-tests-rxe.txt"
} >"$OUTF"
tail -6 "$OUTF"
echo "results: $OUTF (guest console: $DIR/console-g1.log)"
