//! Idempotent producers end to end with a real `commitlogd` (one node): a batch
//! sent twice with the same producer meta is appended once and the retry is
//! answered with the original offsets and `duplicate`; gaps and fenced instances
//! are typed errors; the dedup state survives a kill -9 (rebuilt from the log);
//! `clog produce` is idempotent by default. And a 3-node cluster under kill -9 of
//! the leader and a paused node, and (a sibling test, on one loopback address per
//! node) under iptables partitions cutting the leader off from the majority and
//! healed, with the library's retries on: every acknowledged value is at its offset
//! on every node and no value appears twice. The partition test needs root and
//! iptables (CI has both) and skips elsewhere, saying why.

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_common::partition::{self, Partition};
use cluster_common::{Checker, Cluster, SETTLE_DEADLINE};

use commitlog::client::records::ProducerRecord;
use commitlog::client::Client;
use commitlog::replica::dedup::{BatchMeta, BatchSeq, ProducerEpoch, ProducerId};
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, FetchPartition, TopicPartition};

fn meta(id: u64, epoch: u16, first_seq: u32, count: u32) -> BatchMeta {
    BatchMeta {
        producer: ProducerId(id),
        epoch: ProducerEpoch(epoch),
        seq: BatchSeq::new(first_seq, count).unwrap(),
    }
}

fn records(values: &[&str]) -> Vec<ProducerRecord> {
    values.iter().map(|v| ProducerRecord::new(*v)).collect()
}

fn refs(r: &[ProducerRecord]) -> Vec<&ProducerRecord> {
    r.iter().collect()
}

/// Every value of the default partition from its start, bounded in rounds.
fn values(c: &mut Client) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = Offset(0);
    for _ in 0..100 {
        let asked = [FetchPartition {
            target: TopicPartition::default_topic(),
            offset: at,
            max_bytes: 1 << 20,
        }];
        let mut answered = c.fetch_records(&asked, 1 << 20, 0).expect("fetch v2");
        let p = answered.remove(0);
        let got = p.records;
        if got.is_empty() {
            break;
        }
        for r in got {
            at = Offset(r.offset.0 + 1);
            out.push(r.value);
        }
    }
    out
}

#[test]
fn a_batch_sent_twice_is_appended_once() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    let grant = c.init_producer(None).expect("init producer");
    assert!(grant.producer_id >= 1);
    let target = TopicPartition::default_topic();
    let batch = records(&["a", "b"]);
    let m = meta(grant.producer_id, grant.epoch, 0, 2);
    let first = c
        .produce_records_idempotent(&target, &refs(&batch), m)
        .expect("first send");
    assert!(!first.duplicate);
    let again = c
        .produce_records_idempotent(&target, &refs(&batch), m)
        .expect("retry");
    assert!(again.duplicate, "the retry is answered as a duplicate");
    assert_eq!(again.first_offset, first.first_offset);
    assert_eq!(again.count, 2);
    let next = records(&["c"]);
    let n = c
        .produce_records_idempotent(
            &target,
            &refs(&next),
            meta(grant.producer_id, grant.epoch, 2, 1),
        )
        .expect("next batch");
    assert!(!n.duplicate && n.first_offset > first.first_offset);
    assert_eq!(
        values(&mut c),
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

#[test]
fn gaps_and_fenced_instances_are_typed_errors() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    let target = TopicPartition::default_topic();
    let old = c.init_producer(Some("app")).expect("init app");
    let new = c.init_producer(Some("app")).expect("init app again");
    assert_eq!(new.producer_id, old.producer_id, "a name keeps its id");
    assert_eq!(new.epoch, old.epoch + 1, "and bumps its epoch");
    let batch = records(&["x"]);
    let gap = c.produce_records_idempotent(
        &target,
        &refs(&batch),
        meta(new.producer_id, new.epoch, 5, 1),
    );
    assert_eq!(
        gap.unwrap_err().code(),
        Some(ErrorCode::UnknownProducer),
        "a producer's first batch on a partition starts at sequence 0"
    );
    c.produce_records_idempotent(
        &target,
        &refs(&batch),
        meta(new.producer_id, new.epoch, 0, 1),
    )
    .expect("new instance");
    let gap = c.produce_records_idempotent(
        &target,
        &refs(&batch),
        meta(new.producer_id, new.epoch, 3, 1),
    );
    assert_eq!(gap.unwrap_err().code(), Some(ErrorCode::OutOfOrderSequence));
    let zombie = c.produce_records_idempotent(
        &target,
        &refs(&batch),
        meta(old.producer_id, old.epoch, 1, 1),
    );
    assert_eq!(zombie.unwrap_err().code(), Some(ErrorCode::ProducerFenced));
    let bad = c.init_producer(Some("no spaces"));
    assert_eq!(bad.unwrap_err().code(), Some(ErrorCode::InvalidConfig));
    assert_eq!(values(&mut c), [b"x".to_vec()], "only the accepted batch");
}

#[test]
fn dedup_survives_a_kill_and_restart() {
    let mut server = common::Server::start(&[]);
    let mut c = server.client();
    let grant = c.init_producer(None).expect("init producer");
    let target = TopicPartition::default_topic();
    let batch = records(&["p", "q", "r"]);
    let m = meta(grant.producer_id, grant.epoch, 0, 3);
    let first = c
        .produce_records_idempotent(&target, &refs(&batch), m)
        .expect("first send");
    server.kill();
    server.restart();
    let mut c = server.client();
    let again = c
        .produce_records_idempotent(&target, &refs(&batch), m)
        .expect("retry after the restart");
    assert!(again.duplicate);
    assert_eq!(again.first_offset, first.first_offset);
    assert_eq!(values(&mut c).len(), 3, "nothing appended twice");
    let next = c.init_producer(None).expect("ids survive the restart");
    assert!(next.producer_id > grant.producer_id, "ids are never reused");
}

#[test]
fn clog_produce_is_idempotent_by_default() {
    let server = common::Server::start(&[]);
    let out = server.clog(&["produce", "one", "two"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.clog(&["produce", "--no-idempotence", "three"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = server.client();
    assert_eq!(
        values(&mut c),
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

/// What an [`idempotent_producer`] saw.
#[derive(Debug, Default)]
struct ProducerOutcome {
    /// Produces that failed after the client's retries (outcome unknown).
    failed: u64,
    /// Retries answered as duplicates (written before, answered with the offsets).
    duplicates: u64,
    /// Attempts the cluster client retried (after a timeout, a refusal, a new leader).
    retries: u64,
}

/// Produces unique values `<tag>-<n>` one batch each through an idempotent cluster
/// client until stopped; every acknowledgement goes to the checker.
fn idempotent_producer(
    cluster: &Cluster,
    checker: &Arc<Checker>,
    stop: &Arc<AtomicBool>,
    acked: &Arc<AtomicU64>,
    tag: &str,
) -> std::thread::JoinHandle<ProducerOutcome> {
    let mut client = cluster.client();
    let (checker, stop, acked) = (Arc::clone(checker), Arc::clone(stop), Arc::clone(acked));
    let tag = tag.to_string();
    std::thread::spawn(move || {
        let target = TopicPartition::default_topic();
        let (mut failed, mut duplicates) = (0, 0);
        let end = Instant::now() + Duration::from_secs(120);
        for n in 0..100_000u64 {
            if stop.load(Ordering::SeqCst) || Instant::now() >= end {
                break;
            }
            let value = format!("{tag}-{n}");
            let record = ProducerRecord::new(value.clone());
            match client.produce_idempotent_to(&target, &[&record]) {
                Ok(p) => {
                    checker.ack(p.first_offset, value.as_bytes());
                    duplicates += u64::from(p.duplicate);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                // Outcome unknown after the retries: the value may be written once;
                // the client re-initialises, the test moves on to a new value.
                Err(_) => failed += 1,
            }
        }
        ProducerOutcome {
            failed,
            duplicates,
            retries: client.retries(),
        }
    })
}

fn wait_acked(acked: &AtomicU64, at_least: u64) {
    cluster_common::wait_for(
        &format!("{at_least} acknowledged idempotent produces"),
        SETTLE_DEADLINE,
        || (acked.load(Ordering::SeqCst) >= at_least).then_some(()),
    );
}

/// Every committed value of the default partition on the node at `addr`, by
/// offset (version 0 reads: values only).
fn node_values(addr: &str) -> BTreeMap<u64, Vec<u8>> {
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let mut out = BTreeMap::new();
    let mut next = Offset(0);
    for _ in 0..100_000 {
        let fetched = c.fetch(next, 1 << 20, 0).expect("fetch");
        let Some(last) = fetched.records.last().map(|r| r.offset) else {
            break;
        };
        for r in fetched.records {
            out.insert(r.offset.0, r.value);
        }
        next = Offset(last.0 + 1);
    }
    out
}

#[test]
fn no_value_twice_under_leader_kill_and_pause() {
    let mut cluster = Cluster::start(3);
    let checker = Arc::new(Checker::new());
    let leader = cluster.wait_leader();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let producer = idempotent_producer(&cluster, &checker, &stop, &acked, "idem");
    wait_acked(&acked, 50);

    // kill -9 the leader mid-stream: in-flight batches are retried on the new one.
    cluster.nodes[leader].kill();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_leader_among(&others);
    wait_acked(&acked, acked.load(Ordering::SeqCst) + 50);
    cluster.restart(leader);
    cluster.wait_voters(3);

    // Pause the new leader past an election timeout, then let it go.
    cluster.nodes[new_leader].signal("STOP");
    std::thread::sleep(Duration::from_millis(1500));
    cluster.nodes[new_leader].signal("CONT");
    wait_acked(&acked, acked.load(Ordering::SeqCst) + 50);

    stop.store(true, Ordering::SeqCst);
    let ProducerOutcome {
        failed, duplicates, ..
    } = producer.join().expect("producer thread");
    let all: Vec<usize> = (0..3).collect();
    let verified = checker.verify(&cluster.addrs(&all), SETTLE_DEADLINE);
    assert!(verified.acked >= 150, "{verified:?}");
    assert_no_value_twice(&cluster.addrs(&all), failed, duplicates);
    eprintln!(
        "{} acknowledged, {failed} failed after retries, {duplicates} retries answered as \
         duplicates; no value twice on any node",
        verified.acked
    );
}

/// Panics if any node in `addrs` stores one value at two offsets (every value a
/// producer sends is unique, so a second copy is a retry appended again).
fn assert_no_value_twice(addrs: &[String], failed: u64, duplicates: u64) {
    for addr in addrs {
        let mut seen: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (offset, value) in node_values(addr) {
            if let Some(first) = seen.insert(value.clone(), offset) {
                panic!(
                    "node {addr}: {:?} is stored twice, at {first} and {offset} ({failed} \
                     produces failed, {duplicates} retries answered as duplicates)",
                    String::from_utf8_lossy(&value)
                );
            }
        }
    }
}

/// One address per node, so iptables can cut one node off from the others (the
/// test process talks from 127.0.0.1 and reaches every node throughout).
const PARTITION_IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// How many times the leader is cut off and healed.
const PARTITION_ROUNDS: usize = 3;

/// Progress each producer phase waits for (acknowledgements across producers).
const ACKS_PER_PHASE: u64 = 40;

/// Cuts the current leader off from the other two, waits until the majority elects
/// a leader of its own and the producers get `ACKS_PER_PHASE` more values through
/// it, then heals and waits for all three voters and more progress.
fn partition_leader_round(cluster: &Cluster, acked: &AtomicU64) {
    let old = cluster.wait_leader();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let majority_ips: Vec<&str> = majority.iter().map(|&i| PARTITION_IPS[i]).collect();
    let cut = Partition::new(&[PARTITION_IPS[old]], &majority_ips);
    eprintln!(
        "partition {}: {} | {majority_ips:?}",
        cut.chain(),
        PARTITION_IPS[old]
    );
    let new = cluster.wait_leader_among(&majority);
    assert_ne!(new, old);
    // Batches sent to the cut-off leader time out there and are retried unchanged
    // at the new one (or are answered as duplicates if they did commit).
    wait_acked(acked, acked.load(Ordering::SeqCst) + ACKS_PER_PHASE);
    cut.heal();
    cluster.wait_voters(3);
    wait_acked(acked, acked.load(Ordering::SeqCst) + ACKS_PER_PHASE);
}

#[test]
fn no_value_twice_under_partitions_of_the_leader() {
    if let Some(why) = partition::unavailable_reason() {
        eprintln!("SKIPPED partition test: {why}");
        return;
    }
    let cluster = Cluster::start_on(&PARTITION_IPS);
    let checker = Arc::new(Checker::new());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    // Two producers (two producer ids) through every phase.
    let producers = [
        idempotent_producer(&cluster, &checker, &stop, &acked, "p1"),
        idempotent_producer(&cluster, &checker, &stop, &acked, "p2"),
    ];
    wait_acked(&acked, ACKS_PER_PHASE);
    for _ in 0..PARTITION_ROUNDS {
        partition_leader_round(&cluster, &acked);
    }
    stop.store(true, Ordering::SeqCst);
    let (mut failed, mut duplicates, mut retries) = (0, 0, 0);
    for p in producers {
        let outcome = p.join().expect("producer thread");
        failed += outcome.failed;
        duplicates += outcome.duplicates;
        retries += outcome.retries;
    }
    // Each cut leaves the producers' next batch at the cut-off leader, which cannot
    // commit it: without a retry the test did not exercise the partition.
    assert!(
        retries > 0,
        "no produce was retried: the partitions went unnoticed"
    );
    let all: Vec<usize> = (0..3).collect();
    let verified = checker.verify(&cluster.addrs(&all), SETTLE_DEADLINE);
    let phases = 1 + 2 * PARTITION_ROUNDS as u64;
    assert!(
        verified.acked as u64 >= phases * ACKS_PER_PHASE,
        "{verified:?}"
    );
    assert_no_value_twice(&cluster.addrs(&all), failed, duplicates);
    eprintln!(
        "{} acknowledged over {PARTITION_ROUNDS} partitions of the leader, {retries} \
         retried attempts, {failed} failed after retries, {duplicates} retries answered as \
         duplicates; no value twice on any node",
        verified.acked
    );
}
