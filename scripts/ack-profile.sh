#!/usr/bin/env bash
# Where an ack's time goes on one fresh release node (fsync always): for each
# workload, records/s and p50, fsyncs and records per fsync, mean fsync time, and
# the server's context switches per ack (every thread, voluntary + involuntary,
# from /proc/<pid>/task/*/status), read around one `clog bench` run.
#   scripts/ack-profile.sh            # W1 W2 W3
#   scripts/ack-profile.sh W2         # one
# Env: PORT (18620), MPORT (18621), BENCH_DIR (target/ack-profile), IDEMPOTENCE (off),
# FSYNC (always; `never` measures what an ack costs besides the fsync).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18620}
MPORT=${MPORT:-18621}
BENCH_DIR=${BENCH_DIR:-$PWD/target/ack-profile}
IDEM=${IDEMPOTENCE:-off}
D=./target/release/commitlogd
C=./target/release/clog
[ -x "$D" ] && [ -x "$C" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT

metric() { # name -> value (sum over label sets)
  curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.6f\n", s }'
}
switches() { # pid -> context switches of every thread
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print s + 0 }'
}
workload() {
  case $1 in
    W1) echo "--producers 1 --window 1 --size 100 --count 20000" ;;
    W2) echo "--producers 16 --window 1 --size 1024 --count 300000" ;;
    W3) echo "--producers 4 --window 256 --size 1024 --count 600000" ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
  esac
}
printf '%-3s %10s %7s %9s %10s %9s %11s\n' wl "records/s" "p50 us" fsyncs "rec/fsync" "fsync us" "ctxsw/ack"
for w in ${@:-W1 W2 W3}; do
  rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"
  $D --data-dir "$BENCH_DIR/node" --listen "127.0.0.1:$PORT" --metrics-addr "127.0.0.1:$MPORT" \
    --log-level warn --ready-file "$BENCH_DIR/ready" --fsync "${FSYNC:-always}" &
  PID=$!
  for _ in $(seq 100); do [ -s "$BENCH_DIR/ready" ] && break; sleep 0.1; done
  [ -s "$BENCH_DIR/ready" ] || { echo "commitlogd did not start" >&2; exit 1; }
  f0=$(metric commitlog_fsync_duration_seconds_count); s0=$(metric commitlog_fsync_duration_seconds_sum)
  a0=$(metric commitlog_produce_records_total); c0=$(switches "$PID")
  # shellcheck disable=SC2046
  line=$($C --addr "127.0.0.1:$PORT" bench $(workload "$w") --idempotence "$IDEM" --label "$w" | grep RESULT)
  f1=$(metric commitlog_fsync_duration_seconds_count); s1=$(metric commitlog_fsync_duration_seconds_sum)
  a1=$(metric commitlog_produce_records_total); c1=$(switches "$PID")
  echo "$line" | awk -v f="$f1-$f0" -v a="$a1-$a0" -v w="$w" -v fs="$f0 $f1 $s0 $s1" -v c="$c0 $c1" '
    { split(fs, x, " "); split(c, y, " "); n = x[2] - x[1]; acks = 0 }
    { printf "%-3s %10d %7d %9d %10.1f %9.0f %11.2f\n", w, $7, $9, n, $5 / (n ? n : 1),
        (x[4] - x[3]) / (n ? n : 1) * 1e6, (y[2] - y[1]) / $5 }'
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
