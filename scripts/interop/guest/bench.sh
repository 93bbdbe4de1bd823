# Speed comparison inside one guest (scripts/interop/run.sh --bench): the
# same perftest options against Linux rxe (server and client on rxe0, which
# rxe loops back inside the kernel) and against softverbs (server and client
# processes on devices 127.0.0.1 and 127.0.0.2, UDP port 4792 since rxe
# holds 4791; packets cross the guest's loopback). Same vCPUs, same
# emulation, same sizes, run one after the other.
S=/mnt/share
cp $S/softverbs /tmp/softverbs
SV=/tmp/softverbs
ME=$(ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
D=${BENCH_SECS:-4}
one() { # STACK TEST SIZE OPTS -> value (Gb/s average or typical usec)
  local stack=$1 t=$2 sz=$3; shift 3
  local out=/tmp/b-$stack-$t.txt args="-x 1 -F -s $sz $*"
  if [ $stack = rxe ]; then
    timeout 120 ib_$t -d rxe0 $args > $out.srv 2>&1 & local p=$!
    for i in $(seq 1 100); do ss -Hltn 'sport = :18515' | grep -q . && break; sleep 0.1; done
    timeout 120 ib_$t -d rxe0 $args $ME > $out 2>&1
  else
    SOFTVERBS_DEVICES=rxe0=rxe:127.0.0.1:4792 timeout 120 $SV perf $t -d rxe0 $args > $out.srv 2>&1 & local p=$!
    for i in $(seq 1 100); do ss -Hltn 'sport = :18515' | grep -q . && break; sleep 0.1; done
    SOFTVERBS_DEVICES=rxe0=rxe:127.0.0.2:4792 timeout 120 $SV perf $t -d rxe0 $args 127.0.0.1 > $out 2>&1
  fi
  wait $p
  case $t in
    # ib_send_bw -D reports zeros on the client; the server measures: take
    # the larger of the two sides' BW average.
    *_bw) cat $out $out.srv | awk -v s=$sz '$1==s && NF>=5 && $4+0>=m {m=$4+0; f=1} END{if(f)print m; else print "fail"}' ;;
    *_lat) awk -v s=$sz '$1==s && NF>=6 {print $5; f=1} END{if(!f)print "fail"}' $out ;;
  esac
}
echo "speed in guest $(hostname): $(nproc) vCPUs, $(uname -r); rxe0 loopback vs softverbs over 127.0.0.1<->127.0.0.2"
printf '%-10s %-7s %-12s %-12s %s\n' test size rxe softverbs softverbs/rxe
for t in write_bw send_bw read_bw; do
  r=$(one rxe $t 65536 -D $D --report_gbits); s=$(one sv $t 65536 -D $D --report_gbits)
  printf '%-10s %-7s %-12s %-12s %s\n' $t 65536 "$r Gb/s" "$s Gb/s" "$(awk -v a="$r" -v b="$s" 'BEGIN{if(a+0>0&&b+0>0)printf "%.2f", b/a; else print "-"}')"
done
for t in send_lat write_lat read_lat; do
  r=$(one rxe $t 2 -n 1000); s=$(one sv $t 2 -n 1000)
  printf '%-10s %-7s %-12s %-12s %s\n' $t 2 "$r us" "$s us" "$(awk -v a="$r" -v b="$s" 'BEGIN{if(a+0>0&&b+0>0)printf "%.2f", b/a; else print "-"}')"
done
echo "(bandwidth: BW average; latency: t_typical; ratio > 1 means softverbs is faster for bw, slower for latency)"
for f in /tmp/b-*.txt /tmp/b-*.srv; do echo "--- $f"; tail -3 $f; done
