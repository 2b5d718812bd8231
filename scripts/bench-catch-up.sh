#!/usr/bin/env bash
# The catch-up trade-off: how fast a wiped follower catches up, and what the leader's
# own produce rate keeps meanwhile, for each --catch-up-bytes-per-sec in RATES
# (0 = no throttle). Per round and rate: a fresh 3-node cluster (release build, fsync
# always) filled with FILL records of 1 KiB, node 3 killed, wiped and restarted; the
# catch-up is timed from the restart until node 3's commit index reaches the leader's
# at that moment (process start and discovery included). During it the leader runs
# W3's shape (4 producers, window 256, 1 KiB, W3_COUNT records); once node 3 has
# caught up with everything (those records too) the same W3 runs again. Rates are
# interleaved within each round; then the median per rate.
# Env: BENCH_DIR (default target/bench-catch-up), ROUNDS (2), RATES ("0 300MiB 200MiB
# 100MiB"), FILL (300000), W3_COUNT (100000).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-catch-up}
ROUNDS=${ROUNDS:-2}
RATES=${RATES:-0 300MiB 200MiB 100MiB}
FILL=${FILL:-300000}
W3_COUNT=${W3_COUNT:-100000}
# shellcheck source=scripts/cluster-nodes.sh
. scripts/cluster-nodes.sh
[ -x "$D" ] && [ -x "$C" ] || cargo build --release --bins
w3() { # label -> records/s
  $C --addr "$L" bench --producers 4 --window 256 --size 1024 --count "$W3_COUNT" \
    --label "$1" | awk -F'\t' '/^RESULT/ { print $7 }'  # records/s
}

one() {
  start_three
  $C --addr "$L" bench --producers 4 --window 256 --size 1024 --count "$FILL" --label fill >/dev/null
  kill -9 "$PID3"; wait "$PID3" 2>/dev/null || true
  rm -rf "$BENCH_DIR/n3"
  local bytes t0 t1 target during after
  bytes=$(cat "$BENCH_DIR"/n1/log/*.store | wc -c)
  t0=$(date +%s.%N)
  start 3 --join "$(gsp 1)"
  target=$(commit_of "$L")
  w3 during >"$BENCH_DIR/during" &
  local w=$!
  await_commit 3 "$target"
  t1=$(date +%s.%N)
  wait "$w"; during=$(cat "$BENCH_DIR/during")
  await_commit 3 "$(commit_of "$L")"
  after=$(w3 after)
  python3 -c "b=$bytes; t=$t1-$t0; d=$during; a=$after; print(f'RESULT rate=$RATE MBps={b/t/1e6:.0f} secs={t:.2f} during={d:.0f} after={a:.0f} ratio={d/a:.2f}')" | tee -a "$OUT"
  cleanup
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for RATE in $RATES; do NODE_ARGS=(--catch-up-bytes-per-sec "$RATE"); one; done
done
echo "== medians per --catch-up-bytes-per-sec (catch-up MB/s; the leader's W3 during / after)"
python3 - "$OUT" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = dict(re.findall(r"(\w+)=(\S+)", line))
    rows.setdefault(m["rate"], []).append(m)
for rate, ms in rows.items():
    med = lambda k: statistics.median(float(m[k]) for m in ms)
    print(f"rate={rate:>8}  catch-up {med('MBps'):4.0f} MB/s  W3 during {med('during'):7.0f}/s"
          f"  after {med('after'):7.0f}/s  ratio {med('ratio'):.2f}  ({len(ms)} runs)")
EOF
