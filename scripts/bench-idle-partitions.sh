#!/usr/bin/env bash
# Idle cost of many partitions: 3 nodes on loopback, one topic of N partitions
# (replication 3), time until every partition has a leader, then idle CPU, RSS, open
# files (all, and those in the data dir) and threads per node, then W1 on the default
# topic, on a one-partition topic `one` and on one random partition of `many` (same
# run, same nodes). Env: N (default 300), SETTLE seconds of idleness before the
# measurement (default 8), W1_COUNT records per W1 (default 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}; SETTLE=${SETTLE:-8}; W1_COUNT=${W1_COUNT:-3000}
B=${BENCH_DIR:-$PWD/target/bench-idle-partitions}; rm -rf $B; mkdir -p $B
D=./target/release/commitlogd; C=./target/release/clog
echo "load before: $(uptime)"; echo "open-file limit: $(ulimit -n)"
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null||true; done' EXIT
start(){ id=$1; shift; $D --node-id $id --data-dir $B/n$id --listen 127.0.0.1:0 --gossip-listen 127.0.0.1:0 --ready-file $B/ready$id --log-level warn --index-max-bytes 64KiB "$@" 2>$B/err$id & PIDS+=($!); for _ in $(seq 200); do [ -s $B/ready$id ] && break; sleep 0.05; done; }
rpc(){ grep '^rpc=' $B/ready$1|cut -d= -f2; }; gsp(){ grep '^gossip=' $B/ready$1|cut -d= -f2; }
start 1 --bootstrap; start 2 --join $(gsp 1); start 3 --join $(gsp 1)
for _ in $(seq 100); do [ "$($C --addr $(rpc 1) servers | grep -c follower)" = 2 ] && break; sleep 0.1; done
L=$(rpc 1)
t0=$(date +%s.%N)
$C --addr $L topic create many --partitions $N --replication-factor 3 >/dev/null
# wait (up to 10 min) until every partition has a leader
for _ in $(seq 1200); do u=$($C --addr $L topic describe many | awk 'NR>9 && $3=="-"' | wc -l); [ "$u" = 0 ] && break; sleep 0.5; done
t1=$(date +%s.%N)
echo "created $N partitions (replication 3) with leaders in $(echo "$t1 - $t0" | bc) s (partitions without a leader left: $u)"
for i in 1 2 3; do p=${PIDS[$((i-1))]}; echo "node $i right after: rss $(grep VmRSS /proc/$p/status | awk '{print $2/1024}') MiB; fds $(ls /proc/$p/fd | wc -l)"; done
sleep $SETTLE
for i in 1 2 3; do p=${PIDS[$((i-1))]}; c0=$(awk '{print $14+$15}' /proc/$p/stat); sleep 5; c1=$(awk '{print $14+$15}' /proc/$p/stat); echo "node $i idle cpu $(echo "scale=2; ($c1-$c0)/5" | bc)% of a core; rss $(grep VmRSS /proc/$p/status | awk '{print $2/1024}') MiB; fds $(ls /proc/$p/fd | wc -l) ($(find /proc/$p/fd -lname "$B/n$i/*" 2>/dev/null | wc -l) in the data dir); threads $(ls /proc/$p/task | wc -l)"; done
$C --addr $L topic create one --partitions 1 --replication-factor 3 >/dev/null
for _ in $(seq 100); do [ "$($C --addr $L topic describe one | awk 'NR>9 && $3=="-"' | wc -l)" = 0 ] && break; sleep 0.1; done
P=$((RANDOM % N))
# clog is pointed at P's leader: the cluster client caches the routes of at most
# 4,096 partitions per topic (client::cluster::topics::MAX_CACHED_PARTITIONS) and
# cannot reach a later partition through a node that does not lead it.
LP=$($C --addr $L topic describe many | awk -v p=$P 'NR>9 && $1==p {print $3}')
w1(){ $C --addr "$1" bench "${@:3}" --producers 1 --window 1 --size 100 --count $W1_COUNT --label "$2" 2>&1 | grep -E 'RESULT|error' || true; }
w1 $L W1-default
w1 $L W1-one-partition-topic -t one -p 0
w1 $(rpc $LP) "W1-many-partition-$P-leader-$LP" -t many -p $P
for i in 1 2 3; do p=${PIDS[$((i-1))]}; echo "node $i after the W1 runs: fds $(ls /proc/$p/fd | wc -l); rss $(grep VmRSS /proc/$p/status | awk '{print $2/1024}') MiB"; done
# Graceful stop (SIGTERM), waited for: the next run must not start while these
# nodes still checkpoint their groups into the directory it removes.
t2=$(date +%s.%N); for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait $p 2>/dev/null || true; done; PIDS=()
echo "SIGTERM to exit of all 3 nodes: $(echo "$(date +%s.%N) - $t2" | bc) s"
