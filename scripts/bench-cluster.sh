#!/usr/bin/env bash
# Replicated benchmark: ROUNDS rounds of a fresh 3-node cluster (release build, fsync
# always, default Raft timings) on 127.0.0.1 with peerbench workloads W1-W3 against
# the leader and W4 from a follower, each round followed by the same workloads on
# the peers' 3-node setups (../shared/peerbench: etcd and NATS JetStream R3) when
# installed; in the last round also the catch-up speed of a wiped follower (MB/s of
# log replicated until its commit index reaches the leader's), then W2/W3 over many
# partitions. Then medians and ratios (scripts/bench_summary.py).
# Env: BENCH_DIR (default target/bench-cluster), ROUNDS (3), PEERS ("etcd3 nats3";
# "" for none), W1_COUNT W2_COUNT W3_COUNT, PARTITIONS (default 12; 0 skips the
# many-partition lines).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench-cluster}
W1_COUNT=${W1_COUNT:-20000}
W2_COUNT=${W2_COUNT:-100000}
W3_COUNT=${W3_COUNT:-200000}
ROUNDS=${ROUNDS:-3}
CATCH_UP_W3_COUNT=${CATCH_UP_W3_COUNT:-100000}
PEERS=${PEERS-etcd3 nats3}
# shellcheck source=scripts/peers.sh
. scripts/peers.sh
# shellcheck source=scripts/cluster-nodes.sh
. scripts/cluster-nodes.sh
# shellcheck disable=SC2086
if [ -n "$PEERS" ] && ! peers_available $PEERS; then PEERS=""; fi

cluster_round() { # last-round? (1 = also partitions and catch-up)
  start_three
  fsync_probe "before W1"
  $C --addr "$L" bench --producers 1 --window 1 --size 100 --count "$W1_COUNT" --label W1
  fsync_probe "after W1"
  $C --addr "$L" bench --producers 16 --window 1 --size 1024 --count "$W2_COUNT" --label W2
  $C --addr "$L" bench --producers 4 --window 256 --size 1024 --count "$W3_COUNT" --label W3
  $C --addr "$(rpc 2)" bench --consume --from 1 --label W4

  if [ "$1" = 1 ]; then
    catch_up_and_partitions
  fi
  cleanup
}

catch_up_and_partitions() {
  # Catch-up first, while the default partition is the only group (measured with
  # the many-partition topic present, 13 groups caught up at once and only one
  # group's bytes were counted): wipe node 3 and time until its commit index equals
  # the leader's.
  kill -9 "$PID3"; wait "$PID3" 2>/dev/null || true
  rm -rf "$BENCH_DIR/n3"
  BYTES=$(cat "$BENCH_DIR"/n1/log/*.store | wc -c)
  # Timed from the restart: includes process start and gossip discovery.
  T0=$(date +%s.%N)
  start 3 --join "$(gsp 1)"
  TARGET=$(commit_of "$L")
  # The leader's own produce rate while it feeds the catch-up (W3's shape, about as
  # long as the catch-up), then the same once it is over.
  $C --addr "$L" bench --producers 4 --window 256 --size 1024 --count "$CATCH_UP_W3_COUNT" \
    --label W3-during-catch-up | grep RESULT &
  DURING=$!
  # `health` fails while the node catches up (not ready yet): commit_of is empty.
  await_commit 3 "$TARGET" || true
  T1=$(date +%s.%N)
  python3 -c "b=$BYTES; t=$T1-$T0; print(f'RESULT catch-up bytes={b} secs={t:.2f} MBps={b/t/1e6:.0f}')"
  wait "$DURING" || true
  # "After" starts once node 3 holds the during-run's records too.
  await_commit 3 "$(commit_of "$L")" || true
  $C --addr "$L" bench --producers 4 --window 256 --size 1024 --count "$CATCH_UP_W3_COUNT" \
    --label W3-after-catch-up | grep RESULT
  # Many partitions: W2 and W3 over one topic of $PARTITIONS partitions (replication 3,
  # leaders spread by the assignment), to compare with the one-partition lines above.
  PARTITIONS=${PARTITIONS:-12}
  if [ "$PARTITIONS" -gt 0 ]; then
    $C --addr "$L" topic create bench-0 --partitions "$PARTITIONS" --replication-factor 3 >/dev/null
    # Leadership moves to each partition's preferred leader within a few seconds.
    sleep 5
    $C --addr "$L" topic describe bench-0 | tail -n +1 >&2
    $C --addr "$L" bench --topics 1 --partitions "$PARTITIONS" --producers 16 --window 1 \
      --size 1024 --count "$W2_COUNT" --label "W2-${PARTITIONS}p"
    $C --addr "$L" bench --topics 1 --partitions "$PARTITIONS" --producers "$PARTITIONS" --window 256 \
      --size 1024 --count "$W3_COUNT" --label "W3-${PARTITIONS}p"
  fi

}

run_rounds cluster_round
