# Guest side of scripts/interop/run.sh, installed as /mnt/share/guest.sh
# (rxe-init runs it once rxe0 is up, then powers the guest off).
#
# The host drives the matrix: it drops job scripts into /mnt/share/q named
# <guest>.<id>.job; this loop renames each to .run, runs it in the
# background (so a server job and later jobs can overlap) and leaves
# <id>.out and, when it ends, <id>.rc. A job signals readiness (a server
# listening) by touching <id>.ready (see lib.sh). <guest>.quit ends the loop.
S=/mnt/share; Q=$S/q; me=$(hostname)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ulimit -l unlimited 2>/dev/null
ulimit -c 0
modprobe sch_netem 2>/dev/null
{
  echo "kernel $(uname -r)"; ip -br link; ip -br addr; rdma link
  ibv_devinfo -d rxe0 | grep -E 'state|mtu|fw_ver'
  echo "rdma statistic counters:"; rdma statistic show link rxe0/1
} > "$S/$me-info.txt" 2>&1
touch "$Q/$me.up"
echo "runner: $me up"
while [ ! -e "$Q/$me.quit" ]; do
  for f in $(cd "$Q" && ls 2>/dev/null | grep "^$me\..*\.job$"); do
    id=${f%.job}
    mv "$Q/$f" "$Q/$id.run" || continue
    ( cd /tmp && ID=$id bash "$Q/$id.run" > "$Q/$id.out" 2>&1; echo $? > "$Q/$id.rc.tmp"; mv "$Q/$id.rc.tmp" "$Q/$id.rc" ) &
  done
  sleep 0.2
done
wait
echo "runner: $me quit"
