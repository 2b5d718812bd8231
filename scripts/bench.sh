#!/usr/bin/env bash
# make bench: storage append benchmark, then the peerbench workloads W1-W4 against a
# real single-node commitlogd (release build, --fsync always) on 127.0.0.1.
# Env: BENCH_DIR (data dir root, default target/bench-data), PORT (default 18400),
#      W1_COUNT W2_COUNT W3_COUNT, SKIP_STORAGE=1 to skip the storage benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-data}
PORT=${PORT:-18400}
W1_COUNT=${W1_COUNT:-20000}
W2_COUNT=${W2_COUNT:-100000}
W3_COUNT=${W3_COUNT:-200000}

cargo build --release --bins
if [ "${SKIP_STORAGE:-0}" != 1 ]; then
  COMMITLOG_BENCH_DIR="$BENCH_DIR/storage" cargo bench --bench storage_append
fi

rm -rf "$BENCH_DIR/node"
mkdir -p "$BENCH_DIR/node"
./target/release/commitlogd --data-dir "$BENCH_DIR/node" --listen "127.0.0.1:$PORT" \
  --log-level warn --ready-file "$BENCH_DIR/ready" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$BENCH_DIR/ready" ] && break; sleep 0.1; done
[ -s "$BENCH_DIR/ready" ] || { echo "commitlogd did not start" >&2; exit 1; }
rm -f "$BENCH_DIR/ready"

# The disk's fsync rate right before and after W1 (it drifts by 10x within
# minutes here): 1000 appends of 100 B to a growing file, each with O_DSYNC, the
# same kind of write + sync as the log's. W1 is compared with these.
fsync_probe() {
  local f="$BENCH_DIR/fsync-probe" t0 t1
  t0=$(date +%s%N)
  dd if=/dev/zero of="$f" bs=100 count=1000 oflag=dsync status=none
  t1=$(date +%s%N)
  rm -f "$f"
  echo "PROBE $1: $((1000 * 1000000000 / (t1 - t0))) fsyncs/s (100 B appends + O_DSYNC, growing file)"
}

C="./target/release/clog --addr 127.0.0.1:$PORT"
fsync_probe "before W1"
$C bench --producers 1 --window 1 --size 100 --count "$W1_COUNT" --label W1
fsync_probe "after W1"
$C bench --producers 16 --window 1 --size 1024 --count "$W2_COUNT" --label W2
$C bench --producers 4 --window 256 --size 1024 --count "$W3_COUNT" --label W3
$C bench --consume --from "$W1_COUNT" --label W4
