# Sourced by bench.sh and bench-cluster.sh: the rounds loop, the fsync probe, and one
# round of peer systems with
# ../shared/peerbench (its run.sh starts each server on loopback, runs W1-W4 once,
# stops it). Skipped, with a message, when peerbench or a server is not installed.
# Env: PEERBENCH (default ../shared/peerbench next to this checkout).
PEERBENCH=${PEERBENCH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/peerbench}

# peers_available CONFIG... -> 0 if run.sh, its binary and each config's server exist.
peers_available() {
  [ -x "$PEERBENCH/run.sh" ] || { echo "peers: no $PEERBENCH/run.sh: peers skipped" >&2; return 1; }
  local bin=${CARGO_TARGET_DIR_PEERS:-/tmp/peerbench-target}/release/peerbench cfg
  [ -x "$bin" ] || { echo "peers: build it first: (cd $PEERBENCH && CARGO_TARGET_DIR=/tmp/peerbench-target cargo build --release); peers skipped" >&2; return 1; }
  for cfg in "$@"; do
    case $cfg in
      redis-*) command -v redis-server >/dev/null || { echo "peers: redis-server not installed: peers skipped" >&2; return 1; } ;;
      etcd*) command -v etcd >/dev/null || { echo "peers: etcd not installed: peers skipped" >&2; return 1; } ;;
      nats*) command -v nats-server >/dev/null || { echo "peers: nats-server not installed: peers skipped" >&2; return 1; } ;;
    esac
  done
}

# peers_round OUT CONFIG...: one rep of each config; appends its RESULT lines to OUT.
peers_round() {
  local out=$1 work; shift
  work=$(mktemp -d "${TMPDIR:-/tmp}/peers.XXXXXX")
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR_PEERS:-/tmp/peerbench-target} REPS=1 WORK="$work" \
    W1_COUNT="$W1_COUNT" W2_COUNT="$W2_COUNT" W3_COUNT="$W3_COUNT" \
    "$PEERBENCH/run.sh" "$@" >"$work/log.txt" 2>&1 || { tail -5 "$work/log.txt" >&2; rm -rf "$work"; return 1; }
  grep '^RESULT' "$work/results.tsv" >>"$out"
  rm -rf "$work"
}

# The disk's fsync rate (it drifts by 10x within minutes here): 1000 appends of
# 100 B to a growing file in $BENCH_DIR, each with O_DSYNC, the same kind of write
# + sync as the log's. W1 is compared with it (bench_summary.py).
fsync_probe() { # label
  local f="$BENCH_DIR/fsync-probe" t0 t1
  t0=$(date +%s%N)
  dd if=/dev/zero of="$f" bs=100 count=1000 oflag=dsync status=none
  t1=$(date +%s%N)
  rm -f "$f"
  echo "PROBE $1: $((1000 * 1000000000 / (t1 - t0))) fsyncs/s (100 B appends + O_DSYNC, growing file)"
}

# run_rounds OUR_ROUND: ROUNDS rounds of OUR_ROUND (called with 1 in the last round,
# else 0) followed by the peers of $PEERS, every line appended to $OUT; then the
# medians and ratios.
# CPU time (jiffies): "total steal" from /proc/stat's cpu line.
cpu_jiffies() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat; }
# Share of CPU time the hypervisor took (steal) since "total steal" $1 $2: on a VM,
# a run with much steal measured the host's other tenants, not us.
steal_since() { cpu_jiffies | awk -v t0="$1" -v s0="$2" '{ d = $1 - t0; s = d > 0 ? 100 * ($2 - s0) / d : 0; printf "%.0f%%", s }'; }

run_rounds() {
  local our=$1 r last j0 jr
  j0=$(cpu_jiffies)
  for r in $(seq "$ROUNDS"); do
    echo "== round $r/$ROUNDS: commitlog (load $(cut -d' ' -f1-3 /proc/loadavg))"
    jr=$(cpu_jiffies)
    last=0
    [ "$r" = "$ROUNDS" ] && last=1
    "$our" "$last" | tee -a "$OUT"
    # shellcheck disable=SC2086
    echo "== round $r/$ROUNDS: commitlog done; CPU steal during it $(steal_since $jr)"
    if [ -n "$PEERS" ]; then
      echo "== round $r/$ROUNDS: $PEERS"
      jr=$(cpu_jiffies)
      # shellcheck disable=SC2086
      peers_round "$OUT" $PEERS || echo "peers: round $r failed (see above)" >&2
      # shellcheck disable=SC2086
      echo "== round $r/$ROUNDS: peers done; CPU steal during them $(steal_since $jr)"
    fi
  done
  # shellcheck disable=SC2086
  echo "== medians over $ROUNDS rounds; load now $(cut -d' ' -f1-3 /proc/loadavg); CPU steal over the run $(steal_since $j0)"
  python3 "$(dirname "${BASH_SOURCE[0]}")/bench_summary.py" "$OUT"
}
