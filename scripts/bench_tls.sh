#!/usr/bin/env bash
# make bench-tls: produce throughput (W2-, W3-like) and connection set-up rate with and
# without TLS, against a release single-node commitlogd (--fsync always) on 127.0.0.1.
# Env: BENCH_DIR (default target/bench-tls), PORT (default 18401), W2_COUNT, W3_COUNT,
#      HANDSHAKES (default 1000), NODE_FLAGS (extra commitlogd flags for both runs, e.g.
#      "--fsync never" to isolate the CPU cost of TLS from fsync waits).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-tls}
PORT=${PORT:-18401}
W2_COUNT=${W2_COUNT:-50000}
W3_COUNT=${W3_COUNT:-100000}
HANDSHAKES=${HANDSHAKES:-1000}

cargo build --release --bins
./certs/gencert.sh "$BENCH_DIR/certs" >/dev/null
CERTS="$BENCH_DIR/certs"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap stop EXIT

start() { # start <extra commitlogd flags...>
  rm -rf "$BENCH_DIR/node" "$BENCH_DIR/ready"
  mkdir -p "$BENCH_DIR/node"
  ./target/release/commitlogd --data-dir "$BENCH_DIR/node" --listen "127.0.0.1:$PORT" \
    --log-level warn --ready-file "$BENCH_DIR/ready" ${NODE_FLAGS:-} "$@" &
  PID=$!
  for _ in $(seq 100); do [ -s "$BENCH_DIR/ready" ] && break; sleep 0.1; done
  [ -s "$BENCH_DIR/ready" ] || { echo "commitlogd did not start" >&2; exit 1; }
}

run() { # run <label suffix> <clog flags...>
  local tag=$1; shift
  local C=(./target/release/clog --addr "127.0.0.1:$PORT" "$@")
  "${C[@]}" bench --producers 16 --window 1 --size 1024 --count "$W2_COUNT" --label "W2-$tag"
  "${C[@]}" bench --producers 4 --window 256 --size 1024 --count "$W3_COUNT" --label "W3-$tag"
  "${C[@]}" bench --handshakes "$HANDSHAKES" --label "HS-$tag"
}

start
run plain
stop
start --server-tls-cert-file "$CERTS/server.pem" --server-tls-key-file "$CERTS/server-key.pem" \
  --server-tls-ca-file "$CERTS/ca.pem"
run tls --ca "$CERTS/ca.pem" --cert "$CERTS/root.pem" --key "$CERTS/root-key.pem"
stop
