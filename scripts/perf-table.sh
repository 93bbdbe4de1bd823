#!/usr/bin/env bash
# perf-table.sh — one run of the numbers the CLI issue asks for, as a
# Markdown table: `softverbs perf {write,read,send}_bw` at 64 B, 4 KiB and
# 64 KiB and `perf {send,write}_lat` at 2 B (both sides in one process over
# two loopback devices), next to memcpy and a plain UDP loopback transfer of
# the same bytes measured in the same run (`softverbs baseline`).
#
#   scripts/perf-table.sh [ITERATIONS]      (default 5000; builds release)
#
# Uses its own loopback addresses so it does not collide with other
# softverbs processes on 127.0.0.1/127.0.0.2.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-5000}
cargo build --release --bin softverbs >/dev/null 2>&1
sv=target/release/softverbs
export SOFTVERBS_DEVICES=rxe0=rxe:127.0.77.1,rxe1=rxe:127.0.77.2
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print('%.2f' % d[sys.argv[1]][0][sys.argv[2]])" "$@"; }

echo "| test | bytes | BW average [MB/s] | msg rate [Mpps] |"
echo "|---|---:|---:|---:|"
for t in write_bw read_bw send_bw; do
  for s in 64 4096 65536; do
    out=$($sv perf $t --loopback -s $s -n $iters -j 2>/dev/null)
    echo "| $t | $s | $(echo "$out" | field bw bw_average) | $(echo "$out" | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['bw'][0]['msg_rate_mpps'])") |"
  done
done
echo
echo "| test | bytes | t_typical [µs] | t_avg [µs] | 99% [µs] |"
echo "|---|---:|---:|---:|---:|"
for t in send_lat write_lat; do
  out=$($sv perf $t --loopback -s 2 -n $iters -j 2>/dev/null)
  echo "| $t | 2 | $(echo "$out" | field lat t_typical) | $(echo "$out" | field lat t_avg) | $(echo "$out" | field lat p99) |"
done
echo
echo "Baseline, same run (UDP datagrams of at most 1024 bytes, the path MTU above):"
echo '```'
$sv baseline -s 64,4096,65536 --addr 127.0.77.3
echo '```'
