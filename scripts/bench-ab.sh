#!/usr/bin/env bash
# Before/after of two checkouts on one machine, interleaved: W1, W2, W3 then W4 on a
# fresh single node per side, ROUNDS rounds alternating, then medians per workload.
#   scripts/bench-ab.sh /path/to/before-checkout [/path/to/after-checkout]
# Each checkout needs a release build (cargo build --release --bins).
# Env: ROUNDS (default 8), PORT (default 18493), BENCH_DIR (default target/bench-ab).
set -euo pipefail
BEFORE=${1:?usage: bench-ab.sh BEFORE_CHECKOUT [AFTER_CHECKOUT]}
AFTER=${2:-$(cd "$(dirname "$0")/.." && pwd)}
ROUNDS=${ROUNDS:-8}
PORT=${PORT:-18493}
BENCH_DIR=${BENCH_DIR:-$AFTER/target/bench-ab}
OUT="$BENCH_DIR/results.txt"
mkdir -p "$BENCH_DIR"
: >"$OUT"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
for round in $(seq "$ROUNDS"); do
  for side in before after; do
    dir=$BEFORE
    [ "$side" = after ] && dir=$AFTER
    data="$BENCH_DIR/$side"
    rm -rf "$data"
    mkdir -p "$data"
    "$dir/target/release/commitlogd" --data-dir "$data/node" --listen "127.0.0.1:$PORT" \
      --log-level warn --ready-file "$data/ready" &
    PID=$!
    for _ in $(seq 100); do [ -s "$data/ready" ] && break; sleep 0.1; done
    [ -s "$data/ready" ] || { echo "commitlogd ($side) did not start" >&2; exit 1; }
    C="$dir/target/release/clog --addr 127.0.0.1:$PORT"
    for w in "--producers 1 --window 1 --size 100 --count 20000 --label W1" \
             "--producers 16 --window 1 --size 1024 --count 100000 --label W2" \
             "--producers 4 --window 256 --size 1024 --count 200000 --label W3" \
             "--consume --from 20000 --label W4"; do
      # shellcheck disable=SC2086
      line=$($C bench $w 2>&1 | grep RESULT | cut -f4,7,10)
      echo "$side $line" | tee -a "$OUT"
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
  done
done
echo "== medians over $ROUNDS rounds (records/s; W1 p99 µs) - load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 4:
        runs[(p[0], p[1])].append((float(p[2]), float(p[3])))
for w in ["W1", "W2", "W3", "W4"]:
    b, a = runs[("before", w)], runs[("after", w)]
    if not b or not a:
        continue
    mb, ma = statistics.median(x[0] for x in b), statistics.median(x[0] for x in a)
    p99 = f"  p99 {statistics.median(x[1] for x in b):.0f} -> {statistics.median(x[1] for x in a):.0f} us" if w == "W1" else ""
    print(f"{w}: before {mb:,.0f}  after {ma:,.0f}  after/before {ma / mb:.2f}{p99}")
PY
