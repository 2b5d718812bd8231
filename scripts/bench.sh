#!/usr/bin/env bash
# make bench: storage append benchmark, then ROUNDS rounds of the peerbench
# workloads W1-W4 against a fresh single-node commitlogd (release build, --fsync
# always) on 127.0.0.1, each round followed by the same workloads on the peers
# (../shared/peerbench, default Redis with appendfsync always) when they are
# installed, with the disk's fsync rate probed around W1; then medians and ratios
# (scripts/bench_summary.py).
# Env: BENCH_DIR (default target/bench-data), PORT (default 18400), ROUNDS (3),
#      PEERS ("redis-always"; "" for none), W1_COUNT W2_COUNT W3_COUNT,
#      SKIP_STORAGE=1 to skip the storage benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-data}
PORT=${PORT:-18400}
ROUNDS=${ROUNDS:-3}
PEERS=${PEERS-redis-always}
W1_COUNT=${W1_COUNT:-20000}
W2_COUNT=${W2_COUNT:-100000}
W3_COUNT=${W3_COUNT:-200000}
# shellcheck source=scripts/peers.sh
. scripts/peers.sh

cargo build --release --bins
if [ "${SKIP_STORAGE:-0}" != 1 ]; then
  COMMITLOG_BENCH_DIR="$BENCH_DIR/storage" cargo bench --bench storage_append
fi
mkdir -p "$BENCH_DIR"
OUT="$BENCH_DIR/results.txt"
: >"$OUT"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
# shellcheck disable=SC2086
if [ -n "$PEERS" ] && ! peers_available $PEERS; then PEERS=""; fi

ours_round() {
  rm -rf "$BENCH_DIR/node" "$BENCH_DIR/ready"
  mkdir -p "$BENCH_DIR/node"
  ./target/release/commitlogd --data-dir "$BENCH_DIR/node" --listen "127.0.0.1:$PORT" \
    --log-level warn --ready-file "$BENCH_DIR/ready" &
  PID=$!
  for _ in $(seq 100); do [ -s "$BENCH_DIR/ready" ] && break; sleep 0.1; done
  [ -s "$BENCH_DIR/ready" ] || { echo "commitlogd did not start" >&2; exit 1; }
  local C="./target/release/clog --addr 127.0.0.1:$PORT"
  fsync_probe "before W1"
  $C bench --producers 1 --window 1 --size 100 --count "$W1_COUNT" --label W1
  fsync_probe "after W1"
  $C bench --producers 16 --window 1 --size 1024 --count "$W2_COUNT" --label W2
  $C bench --producers 4 --window 256 --size 1024 --count "$W3_COUNT" --label W3
  $C bench --consume --from "$W1_COUNT" --label W4
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

run_rounds ours_round
