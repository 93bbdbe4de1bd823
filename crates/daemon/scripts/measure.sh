#!/bin/sh
# The daemon issue's numbers, side by side in one run:
#   softverbs perf write_bw (64 KiB) and send_lat (2 B), --loopback over two
#   rxe devices, embedded (this process's devices) and through softverbsd
#   (SOFTVERBS_BACKEND selects); then softverbsd's CPU time over 10 s with
#   four clients connected and idle (utime+stime from /proc/PID/stat).
#
#   cargo build --release -p softverbs-cli -p softverbs-daemon --bins --examples
#   crates/daemon/scripts/measure.sh [TARGET_DIR] [ROUNDS]
set -eu
T=${1:-target}/release
ROUNDS=${2:-3}
SOCK=/tmp/softverbsd-measure-$$.sock
DEVS_D=rxe0=rxe:127.0.14.1:14991,rxe1=rxe:127.0.14.2:14991
DEVS_E=rxe0=rxe:127.0.14.3:14991,rxe1=rxe:127.0.14.4:14991
"$T/softverbsd" --socket "$SOCK" --devices "$DEVS_D" 2>/dev/null &
DPID=$!
trap 'kill $DPID 2>/dev/null; rm -f "$SOCK"' EXIT
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done

perf() { # backend test size -> "bw_avg_MBps" or "t_typical t_avg"
    if [ "$1" = daemon ]; then
        env SOFTVERBS_BACKEND=daemon SOFTVERBS_SOCKET="$SOCK" "$T/softverbs" perf "$2" --loopback -s "$3" -j
    else
        env SOFTVERBS_BACKEND=embedded SOFTVERBS_DEVICES="$DEVS_E" "$T/softverbs" perf "$2" --loopback -s "$3" -j
    fi
}
echo "load before: $(cat /proc/loadavg)"
pick() { # a JSON object on stdin, a Python expression over it (v)
    python3 -c "import json,sys; v=json.loads(sys.stdin.read()); print($1)"
}
printf '%-6s %-9s %22s %22s %18s\n' round backend "write_bw 64KiB MB/s" "send_lat 2B typ µs" "send_lat avg µs"
for r in $(seq "$ROUNDS"); do
    for b in embedded daemon; do
        w=$(perf $b write_bw 65536 | pick 'round(v["bw"][0]["bw_average"],1)')
        l=$(perf $b send_lat 2 | pick '"%.2f %.2f" % (v["lat"][0]["t_typical"], v["lat"][0]["t_avg"])')
        printf '%-6s %-9s %22s %22s %18s\n' "$r" "$b" "$w" ${l% *} ${l#* }
    done
done

# Idle CPU: four clients hold rings on both devices and post nothing.
IDLE=""
for i in 1 2 3 4; do
    dev=rxe$((i % 2))
    "$T/examples/idle_client" "$SOCK" "$dev" 15 >/dev/null &
    IDLE="$IDLE $!"
done
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
a=$(ticks); sleep 10; b=$(ticks)
hz=$(getconf CLK_TCK)
echo "softverbsd idle CPU over 10 s with 4 idle clients: $((b - a)) ticks of 1/$hz s (utime+stime)"
echo "softverbsd threads: $(ls /proc/$DPID/task | wc -l)"
# shellcheck disable=SC2086
wait $IDLE
