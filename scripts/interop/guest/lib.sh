# Sourced by every job (guest/runner.sh): helpers for the matrix cases.
S=/mnt/share; Q=$S/q
# rxe's port counters as "name value" lines (rdma statistic show).
cnt() { rdma statistic show link rxe0/1 | tr ' ' '\n' | awk 'NF' | sed -n '3,$p' | paste - - ; }
# srv PORT CMD...: run a server, touch $ID.ready once it listens on TCP PORT.
srv() {
  local port=$1; shift
  "$@" & local p=$! i
  for i in $(seq 1 600); do
    ss -Hltn "sport = :$port" | grep -q . && break
    kill -0 $p 2>/dev/null || break
    sleep 0.05
  done
  touch "$Q/$ID.ready"
  wait $p
}
# impair ARGS... | impair off: netem on both directions of eth0, inside the
# guest (the host kernel need not have sch_netem): egress directly, ingress
# through ifb0 (eth0's ingress redirected there).
impair() {
  tc qdisc del dev eth0 root 2>/dev/null
  tc qdisc del dev eth0 ingress 2>/dev/null
  ip link del ifb0 2>/dev/null
  [ "$1" = off ] && return 0
  modprobe sch_netem; modprobe ifb numifbs=0; modprobe act_mirred; modprobe cls_matchall
  tc qdisc add dev eth0 root netem "$@" || return 1
  ip link add ifb0 type ifb && ip link set ifb0 mtu 9000 && ip link set ifb0 up || return 1
  tc qdisc add dev eth0 handle ffff: ingress || return 1
  tc filter add dev eth0 parent ffff: matchall action mirred egress redirect dev ifb0 || return 1
  tc qdisc add dev ifb0 root netem "$@" || return 1
  tc -s qdisc show dev eth0; tc -s qdisc show dev ifb0
}
