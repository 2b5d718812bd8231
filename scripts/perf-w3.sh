#!/usr/bin/env bash
# perf of the leader and a follower during W3 on 3 nodes, for the checkout given
# (its release build): scripts/perf-w3.sh /path/to/checkout; reports in $BENCH_DIR.
set -euo pipefail
cd "$1"
B=${BENCH_DIR:-$PWD/target/perf-w3}; rm -rf $B; mkdir -p $B
D=./target/release/commitlogd; C=./target/release/clog
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null||true; done' EXIT
start(){ id=$1; shift; $D --node-id $id --data-dir $B/n$id --listen 127.0.0.1:0 --gossip-listen 127.0.0.1:0 --ready-file $B/ready$id --log-level warn "$@" 2>$B/err$id & PIDS+=($!); for _ in $(seq 200); do [ -s $B/ready$id ] && break; sleep 0.05; done; }
rpc(){ grep '^rpc=' $B/ready$1|cut -d= -f2; }; gsp(){ grep '^gossip=' $B/ready$1|cut -d= -f2; }
start 1 --bootstrap; start 2 --join $(gsp 1); start 3 --join $(gsp 1)
for _ in $(seq 100); do [ "$($C --addr $(rpc 1) servers | grep -c follower)" = 2 ] && break; sleep 0.1; done
L=$(rpc 1)
$C --addr $L bench --producers 4 --window 256 --size 1024 --count 100000 --label warm >/dev/null 2>&1
perf record -e cpu-clock:u -g -o $B/perf1.data -p ${PIDS[0]} -- sleep 4 >/dev/null 2>&1 &
PP=$!
perf record -e cpu-clock:u -g -o $B/perf2.data -p ${PIDS[1]} -- sleep 4 >/dev/null 2>&1 &
PP2=$!
sleep 0.3
$C --addr $L bench --producers 4 --window 256 --size 1024 --count 600000 --label W3 2>&1 | grep RESULT
wait $PP $PP2 || true
perf report -i $B/perf1.data --no-children --sort dso,sym -g none --percent-limit 1.5 --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > $B/perf_leader_$(basename $1).txt
perf report -i $B/perf2.data --no-children --sort dso,sym -g none --percent-limit 1.5 --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > $B/perf_follower_$(basename $1).txt
