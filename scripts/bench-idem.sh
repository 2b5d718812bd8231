#!/usr/bin/env bash
# Idempotence on vs off, and the produce path before/after a change, interleaved on
# one fresh single node per run: W1 (1 producer, window 1, 100 B), W2 (16 producers,
# window 1, 1 KiB), W3 (4 producers, window 256, 1 KiB), ROUNDS rounds of
#   before (BEFORE checkout's binaries, its default produce path)
#   plain  (this checkout, clog bench --plain: plain Produce, values only)
#   off    (this checkout, clog bench --idempotence off: record batches, no meta)
#   on     (this checkout, clog bench --idempotence on: idempotent record batches)
# then medians and ratios. Each checkout needs `cargo build --release --bins`.
# Runs last a few seconds each (W2 300k, W3 600k records): a run's first ~0.2 s
# (16 InitProducers, the first batches) would otherwise weigh on the ratio.
#   scripts/bench-idem.sh /path/to/before-checkout
# Env: ROUNDS (default 5), PORT (default 18494), BENCH_DIR (default target/bench-idem).
set -euo pipefail
BEFORE=${1:?usage: bench-idem.sh BEFORE_CHECKOUT}
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18494}
BENCH_DIR=${BENCH_DIR:-$HERE/target/bench-idem}
OUT="$BENCH_DIR/results.txt"
mkdir -p "$BENCH_DIR"
: >"$OUT"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
run_side() { # side dir extra-flags
  local side=$1 dir=$2 extra=$3 data="$BENCH_DIR/$1"
  rm -rf "$data"
  mkdir -p "$data"
  "$dir/target/release/commitlogd" --data-dir "$data/node" --listen "127.0.0.1:$PORT" \
    --log-level warn --ready-file "$data/ready" &
  PID=$!
  for _ in $(seq 100); do [ -s "$data/ready" ] && break; sleep 0.1; done
  [ -s "$data/ready" ] || { echo "commitlogd ($side) did not start" >&2; exit 1; }
  local C="$dir/target/release/clog --addr 127.0.0.1:$PORT"
  for w in "--producers 1 --window 1 --size 100 --count 20000 --label W1" \
           "--producers 16 --window 1 --size 1024 --count 300000 --label W2" \
           "--producers 4 --window 256 --size 1024 --count 600000 --label W3"; do
    # shellcheck disable=SC2086
    line=$($C bench $w $extra 2>&1 | grep RESULT | cut -f4,7,10)
    echo "$side $line" | tee -a "$OUT"
  done
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
for _ in $(seq "$ROUNDS"); do
  run_side before "$BEFORE" ""
  run_side plain "$HERE" "--plain"
  run_side off "$HERE" "--idempotence off"
  run_side on "$HERE" "--idempotence on"
done
echo "== medians over $ROUNDS rounds (records/s; W1 p99 µs) - load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 4:
        runs[(p[0], p[1])].append((float(p[2]), float(p[3])))
for w in ["W1", "W2", "W3"]:
    sides = ("before", "plain", "off", "on")
    m = {s: statistics.median(x[0] for x in runs[(s, w)]) for s in sides if runs[(s, w)]}
    if len(m) < 4:
        continue
    print(f"{w}: before {m['before']:,.0f}  plain {m['plain']:,.0f}  off {m['off']:,.0f}  "
          f"on {m['on']:,.0f}  plain/before {m['plain'] / m['before']:.2f}  "
          f"off/plain {m['off'] / m['plain']:.2f}  on/off {m['on'] / m['off']:.2f}")
PY
