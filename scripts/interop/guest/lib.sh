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
# netem DEV ARGS...: impair what leaves DEV (off: remove).
netem() {
  local dev=$1; shift
  tc qdisc del dev "$dev" root 2>/dev/null
  [ "$1" = off ] || tc qdisc add dev "$dev" root netem "$@"
}
