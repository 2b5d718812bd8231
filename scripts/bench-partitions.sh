#!/usr/bin/env bash
# W2 over topics of 1, 3 and 12 partitions (replication 3) on 3 nodes, with the
# number of fsyncs node 1 made during each run (metrics). Env: PARTITION_COUNTS.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_DIR:-$PWD/target/bench-partitions}; rm -rf $B; mkdir -p $B
D=./target/release/commitlogd; C=./target/release/clog
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null||true; done' EXIT
start(){ id=$1; shift; $D --node-id $id --data-dir $B/n$id --listen 127.0.0.1:0 --gossip-listen 127.0.0.1:0 --ready-file $B/ready$id --log-level warn --metrics-addr 127.0.0.1:0 "$@" 2>$B/err$id & PIDS+=($!); for _ in $(seq 200); do [ -s $B/ready$id ] && break; sleep 0.05; done; }
rpc(){ grep '^rpc=' $B/ready$1|cut -d= -f2; }; gsp(){ grep '^gossip=' $B/ready$1|cut -d= -f2; }; met(){ grep '^metrics=' $B/ready$1|cut -d= -f2; }
start 1 --bootstrap; start 2 --join $(gsp 1); start 3 --join $(gsp 1)
for _ in $(seq 100); do [ "$($C --addr $(rpc 1) servers | grep -c follower)" = 2 ] && break; sleep 0.1; done
L=$(rpc 1)
for P in ${PARTITION_COUNTS:-1 3 12}; do
  T=p$P-$RANDOM; $C --addr $L topic create $T --partitions $P --replication-factor 3 >/dev/null; sleep 5
  f0=$(curl -s http://$(met 1)/metrics | grep '^commitlog_fsync_duration_seconds_count' | awk '{print $2}')
  $C --addr $L bench --producers 16 --window 1 --size 1024 --count 50000 --label W2-$P -t $T 2>&1 | grep -E 'RESULT|partition' | head -3
  f1=$(curl -s http://$(met 1)/metrics | grep '^commitlog_fsync_duration_seconds_count' | awk '{print $2}')
  echo "node1 fsyncs during W2-$P: $((f1-f0))"
done
