#!/bin/sh
# Runs rdma-core's own Python test suite (shipped by python3-pyverbs, v44 on
# Debian 12: 273 tests) against softverbs's libibverbs.so.1, on one softverbs
# rxe device (pyverbs tests talk between QPs of the same device).
#
#   scripts/build-libibverbs.sh
#   scripts/test-pyverbs.sh [unittest args…]    # e.g. test_qpex
#
# Installs python3-pyverbs if it is missing (apt-get, needs root), unpacks
# the tests to target/pyverbs-tests, runs them with our library first on
# LD_LIBRARY_PATH (checked: pyverbs must map target/libibverbs), and prints
# passed / failed / errors / skipped with the skip reasons. Exits 1 if any
# test failed or errored.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
lib=${SOFTVERBS_LIBIBVERBS_DIR:-$root/target/libibverbs}
py=/usr/bin/python3 # pyverbs is built for the system Python, not a pyenv one
if [ ! -e "$lib/libibverbs.so.1" ]; then
  echo "no $lib/libibverbs.so.1: run scripts/build-libibverbs.sh first" >&2
  exit 2
fi
lib=$(cd "$lib" && pwd -P) # as /proc/self/maps names it
if [ ! -d /usr/share/doc/rdma-core/tests ]; then
  apt-get install -y python3-pyverbs > /dev/null 2>&1 ||
    { apt-get update > /dev/null 2>&1 && apt-get install -y python3-pyverbs > /dev/null 2>&1; } ||
    { echo "SKIP: cannot install python3-pyverbs" >&2; exit 0; }
fi
dir="$root/target/pyverbs-tests"
rm -rf "$dir"
mkdir -p "$dir"
cp -r /usr/share/doc/rdma-core/tests "$dir/"
gunzip -f "$dir"/tests/*.gz
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SOFTVERBS_DEVICES=${SOFTVERBS_DEVICES:-rxe0=rxe:127.0.44.1}
dev=${SOFTVERBS_DEVICES%%=*}
maps=$("$py" -c "import pyverbs.device as d; d.get_device_list(); print(open('/proc/self/maps').read())" | grep libibverbs)
case "$maps" in
  *"$lib"*) ;;
  *) echo "pyverbs did not load $lib/libibverbs.so.1:" >&2; echo "$maps" >&2; exit 2 ;;
esac
cd "$dir" || exit 2
log="$dir/result.txt"
timeout 900 "$py" tests/run_tests.py --dev "$dev" --gid 1 -v "$@" > "$log" 2>&1
rc=$?
echo "passed  $(grep -cE '(\.\.\. |^)ok$' "$log")"
echo "failed  $(grep -cE '\.\.\. FAIL$' "$log")"
echo "errors  $(grep -cE '\.\.\. ERROR$' "$log")"
echo "skipped $(grep -cE '\.\.\. skipped ' "$log")"
tail -1 "$log"
echo "skip reasons:"
grep -E '\.\.\. skipped ' "$log" | sed "s/.*skipped //" | sort | uniq -c | sort -rn
grep -E '\.\.\. (FAIL|ERROR)$' "$log"
sed -n '/^=====/,$p' "$log" | grep -v '^softverbs'
[ "$rc" -eq 0 ] || exit 1
