# Sourced by bench-cluster.sh and bench-catch-up.sh: a 3-node release cluster on
# 127.0.0.1 with OS-assigned ports. Needs BENCH_DIR; sets D (commitlogd), C (clog),
# OUT (an emptied results file in a fresh BENCH_DIR) and PIDS (killed on exit);
# NODE_ARGS (an array, may be empty) is added to every node's flags.
D=./target/release/commitlogd
C=./target/release/clog
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"
OUT="$BENCH_DIR/results.txt"
: >"$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap cleanup EXIT

start() { # id, extra args...
  local id=$1; shift
  rm -f "$BENCH_DIR/ready$id"
  $D --node-id "$id" --data-dir "$BENCH_DIR/n$id" --listen 127.0.0.1:0 \
    --gossip-listen 127.0.0.1:0 --ready-file "$BENCH_DIR/ready$id" --log-level warn \
    ${NODE_ARGS[@]+"${NODE_ARGS[@]}"} "$@" 2>"$BENCH_DIR/stderr$id" &
  PIDS+=($!)
  eval "PID$id=$!"
  for _ in $(seq 200); do [ -s "$BENCH_DIR/ready$id" ] && break; sleep 0.05; done
  [ -s "$BENCH_DIR/ready$id" ] || { echo "node $id did not start" >&2; cat "$BENCH_DIR/stderr$id"; exit 1; }
}
rpc() { grep '^rpc=' "$BENCH_DIR/ready$1" | cut -d= -f2; }
gsp() { grep '^gossip=' "$BENCH_DIR/ready$1" | cut -d= -f2; }

# A fresh cluster (data dirs removed); sets L to the leader's (node 1's) address once
# it sees two followers (bounded: 10 s).
start_three() {
  rm -rf "$BENCH_DIR"/n[123]
  start 1 --bootstrap
  start 2 --join "$(gsp 1)"
  start 3 --join "$(gsp 1)"
  for _ in $(seq 100); do
    [ "$($C --addr "$(rpc 1)" servers | grep -c follower)" = 2 ] && break; sleep 0.1
  done
  L=$(rpc 1)
}

# The commit index a node reports (empty while it is not ready).
commit_of() { $C --addr "$1" health 2>/dev/null | sed -n 's/.*commit=\([0-9]*\).*/\1/p' || true; }
# Waits until node $1's commit index reaches $2 (bounded: 10 minutes).
await_commit() {
  local c
  for _ in $(seq 12000); do
    c=$(commit_of "$(rpc "$1")")
    [ -n "$c" ] && [ "$c" -ge "$2" ] && return 0
    sleep 0.05
  done
  echo "node $1 did not reach commit $2" >&2; return 1
}
