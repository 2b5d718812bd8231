//! Topics and partitions with real processes, through the wire protocol v1: create,
//! produce, consume, describe, alter and delete topics on one node (and across a
//! restart), and on three nodes across a leader kill, where every acknowledged record
//! must stay at its offset in its partition on every replica.

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_common::topics::*;
use cluster_common::{wait_for, Cluster};
use commitlog::types::{GroupId, NodeId, Offset};
use commitlog::wire::{ErrorCode, Request, ResponseBody, TopicChanges};

#[test]
fn a_single_node_creates_serves_alters_and_deletes_topics_across_a_restart() {
    let mut server = common::Server::start(&[]);
    let mut c = server.client();
    assert_eq!(topic_names(&mut c), vec!["default".to_string()]);

    let d = create(&mut c, "orders", settings(3, 1)).expect("create orders");
    assert_eq!((d.name.as_str(), d.partitions.len()), ("orders", 3));
    let groups: Vec<GroupId> = d.partitions.iter().map(|p| p.group).collect();
    assert!(
        groups.iter().all(|g| g.0 >= 2),
        "partitions get new groups: {groups:?}"
    );
    assert_eq!(
        code(create(&mut c, "orders", settings(1, 1)).map(|_| ResponseBody::Ping)),
        Some(ErrorCode::TopicExists)
    );
    for bad in ["", "a/b", "..", "sp ace"] {
        let r = create(&mut c, bad, settings(1, 1)).map(|_| ResponseBody::Ping);
        assert_eq!(code(r), Some(ErrorCode::InvalidTopic), "name {bad:?}");
    }
    let r = create(&mut c, "too-many", settings(1, 3)).map(|_| ResponseBody::Ping);
    assert_eq!(
        code(r),
        Some(ErrorCode::InvalidConfig),
        "replication 3 on one voter"
    );

    // Each partition is its own log with its own offsets.
    let mut acked: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    for round in 0..5 {
        for p in 0..3u32 {
            let value = format!("p{p}-r{round}").into_bytes();
            let offset = produce(&mut c, "orders", p, &value).expect("produce");
            acked.insert((p, offset.0), value);
        }
    }
    let firsts: Vec<u64> = (0..3u32)
        .map(|p| {
            acked
                .keys()
                .filter(|k| k.0 == p)
                .map(|k| k.1)
                .min()
                .unwrap()
        })
        .collect();
    assert!(
        firsts.iter().all(|f| *f == firsts[0]),
        "same offsets in every partition: {firsts:?}"
    );
    let v0 = c.produce(b"still the default topic").expect("v0 produce");
    assert_eq!(
        c.consume(v0).expect("v0 consume").value,
        b"still the default topic"
    );
    for ((p, offset), value) in &acked {
        assert_eq!(
            consume(&mut c, "orders", *p, Offset(*offset)).expect("consume"),
            (Offset(*offset), value.clone())
        );
    }
    assert_eq!(
        code(produce(&mut c, "orders", 3, b"x").map(|_| ResponseBody::Ping)),
        Some(ErrorCode::UnknownTopic)
    );
    assert_eq!(
        code(produce(&mut c, "nope", 0, b"x").map(|_| ResponseBody::Ping)),
        Some(ErrorCode::UnknownTopic)
    );

    // Alter: more partitions, a retention.
    let changes = TopicChanges {
        partitions: Some(5),
        retention_bytes: Some(1 << 30),
        ..TopicChanges::default()
    };
    match call(
        &mut c,
        Request::AlterTopic {
            name: "orders".into(),
            changes,
        },
    )
    .expect("alter")
    {
        ResponseBody::AlterTopic(d) => {
            assert_eq!(d.partitions.len(), 5);
            assert_eq!(d.settings.retention_bytes, 1 << 30);
        }
        other => panic!("AlterTopic answered {other:?}"),
    }
    let offset = produce(&mut c, "orders", 4, b"in a new partition").expect("new partition");
    acked.insert((4, offset.0), b"in a new partition".to_vec());
    let fewer = TopicChanges {
        partitions: Some(2),
        ..TopicChanges::default()
    };
    let r = call(
        &mut c,
        Request::AlterTopic {
            name: "orders".into(),
            changes: fewer,
        },
    );
    assert_eq!(
        code(r),
        Some(ErrorCode::InvalidConfig),
        "partitions never shrink"
    );

    create(&mut c, "scratch", settings(2, 1)).expect("create scratch");
    produce(&mut c, "scratch", 1, b"gone soon").expect("produce scratch");
    let scratch_groups: Vec<GroupId> = describe(&mut c, "scratch")
        .expect("describe")
        .partitions
        .iter()
        .map(|p| p.group)
        .collect();
    call(
        &mut c,
        Request::DeleteTopic {
            name: "scratch".into(),
        },
    )
    .expect("delete");
    assert_eq!(
        code(produce(&mut c, "scratch", 1, b"x").map(|_| ResponseBody::Ping)),
        Some(ErrorCode::UnknownTopic)
    );
    assert_eq!(
        code(call(
            &mut c,
            Request::DeleteTopic {
                name: "default".into()
            }
        )),
        Some(ErrorCode::InvalidConfig)
    );
    let groups_dir = server.data_dir().join("groups");
    wait_for(
        "the deleted topic's data to go",
        Duration::from_secs(10),
        || {
            scratch_groups
                .iter()
                .all(|g| !groups_dir.join(g.0.to_string()).exists())
                .then_some(())
        },
    );

    // A crash and restart keeps the catalogue and every partition's records.
    drop(c);
    server.kill();
    server.restart();
    let mut c = server.client();
    let names = wait_for("topics after the restart", Duration::from_secs(10), || {
        let mut c = server.client();
        let names = topic_names(&mut c);
        (names.len() == 2).then_some(names)
    });
    assert_eq!(names, vec!["default".to_string(), "orders".to_string()]);
    for ((p, offset), value) in &acked {
        let got = wait_for(
            "a partition to serve after the restart",
            Duration::from_secs(10),
            || consume(&mut c, "orders", *p, Offset(*offset)).ok(),
        );
        assert_eq!(got, (Offset(*offset), value.clone()));
    }
    assert_eq!(
        describe(&mut c, "orders")
            .expect("describe")
            .partitions
            .len(),
        5
    );
    let next = produce(&mut c, "orders", 0, b"after restart").expect("produce after restart");
    assert!(
        acked.keys().filter(|k| k.0 == 0).all(|k| k.1 < next.0),
        "offsets are never reused"
    );
}

#[test]
fn three_nodes_keep_every_partitions_records_across_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    let d = create_on_cluster(&cluster, "events", settings(6, 3));
    assert_eq!(d.partitions.len(), 6);
    for p in &d.partitions {
        assert_eq!(p.replicas.len(), 3, "replication 3: {p:?}");
    }
    let all = [0, 1, 2];
    let ls = wait_for(
        "leaders of every partition",
        Duration::from_secs(20),
        || leaders(&cluster, &all, "events"),
    );
    let mut spread: Vec<NodeId> = ls.clone();
    spread.sort();
    spread.dedup();
    assert!(spread.len() >= 2, "leaders spread over the nodes: {ls:?}");

    let mut acked = Acked::new();
    produce_all(&cluster, &all, "events", "before", 10, &mut acked);
    let victim = ls[0].0 as usize - 1;
    cluster.nodes[victim].kill();
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    produce_all(&cluster, &rest, "events", "during", 10, &mut acked);
    cluster.restart(victim);
    produce_all(&cluster, &all, "events", "after", 5, &mut acked);
    // Leadership returns to each partition's preferred leader (its first replica,
    // spread evenly by the assignment), the restarted node included.
    let preferred: Vec<NodeId> = d.partitions.iter().map(|p| p.replicas[0]).collect();
    let mut per_node = preferred.clone();
    per_node.sort();
    per_node.dedup();
    assert_eq!(per_node.len(), 3, "preferred leaders spread: {preferred:?}");
    wait_for(
        "leaders back on their preferred nodes",
        Duration::from_secs(30),
        || leaders(&cluster, &all, "events").filter(|ls| *ls == preferred),
    );
    produce_all(&cluster, &all, "events", "rebalanced", 3, &mut acked);

    // Every acknowledged record is at its offset on every node.
    verify_everywhere(&cluster, &all, &acked);
}

/// Fetch v1 over several partitions: records of each, a per-partition error for one
/// that does not exist (the others still answered), a long-poll that a produce to
/// any of its partitions ends before the wait, and one that ends empty at its wait.
#[test]
fn fetch_partitions_reads_several_partitions_and_long_polls_over_all_of_them() {
    use commitlog::wire::FetchPartition;
    let server = common::Server::start(&[]);
    let mut c = server.client();
    create(&mut c, "multi", settings(2, 1)).expect("create");
    let a = produce(&mut c, "multi", 0, b"zero").expect("produce 0");
    let b = produce(&mut c, "multi", 1, b"one").expect("produce 1");
    let part = |p: u32, offset: Offset| FetchPartition {
        target: commitlog::wire::TopicPartition::new("multi", p),
        offset,
        max_bytes: 1 << 20,
    };
    let missing = FetchPartition {
        target: commitlog::wire::TopicPartition::new("multi", 9),
        offset: Offset(0),
        max_bytes: 1 << 20,
    };
    let got = c
        .fetch_partitions(&[part(0, a), part(1, b), missing], 1 << 20, 0)
        .expect("fetch");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].records.len(), 1);
    assert_eq!(got[0].records[0].value, b"zero");
    assert_eq!(got[1].records[0].value, b"one");
    let err = got[2].error.as_ref().expect("an error for partition 9");
    assert_eq!(err.code, ErrorCode::UnknownTopic);

    // At both high-water marks: a produce to partition 1 ends the wait (had it not,
    // the 20 s wait would end with no records).
    let next = [part(0, Offset(a.0 + 1)), part(1, Offset(b.0 + 1))];
    let addr = server.addr;
    let producer = std::thread::spawn(move || {
        let mut p =
            commitlog::client::Client::connect(addr, Duration::from_secs(5)).expect("connect");
        // Not synchronization: the answer is the same whichever comes first; the
        // pause only makes the parked-then-woken path the likely one.
        std::thread::sleep(Duration::from_millis(200));
        produce(&mut p, "multi", 1, b"woke").expect("produce")
    });
    let got = c
        .fetch_partitions(&next, 1 << 20, 20_000)
        .expect("long-poll");
    let woke = producer.join().expect("producer");
    assert!(got[0].records.is_empty());
    assert_eq!(got[1].records.len(), 1);
    assert_eq!(
        (got[1].records[0].offset, got[1].records[0].value.as_slice()),
        (woke, &b"woke"[..])
    );

    // Nothing arrives: answered empty once the wait ends, with the high-water marks.
    let idle = [part(0, Offset(a.0 + 1)), part(1, Offset(woke.0 + 1))];
    let got = c
        .fetch_partitions(&idle, 1 << 20, 100)
        .expect("empty long-poll");
    assert!(got
        .iter()
        .all(|p| p.records.is_empty() && p.error.is_none()));
    assert_eq!(got[1].high_watermark, Offset(woke.0 + 1));
}

/// A Fetch v1 answer stays within its byte budget: only the first partition read
/// may go past it (by one record); the others are answered empty at the offset asked
/// (not at their high-water mark, which would make a consumer skip records).
#[test]
fn fetch_partitions_spends_the_budget_once_and_never_skips() {
    use commitlog::wire::{FetchPartition, TopicPartition};
    let server = common::Server::start(&[]);
    let mut c = server.client();
    create(&mut c, "budget", settings(2, 1)).expect("create");
    let big = vec![7u8; 4096];
    let a = produce(&mut c, "budget", 0, &big).expect("produce 0");
    let b = produce(&mut c, "budget", 1, &big).expect("produce 1");
    let part = |p: u32, offset: Offset| FetchPartition {
        target: TopicPartition::new("budget", p),
        offset,
        max_bytes: 1 << 20,
    };
    let got = c
        .fetch_partitions(&[part(0, a), part(1, b)], 100, 0)
        .expect("fetch");
    assert_eq!(got[0].records.len(), 1, "one record past the budget");
    assert!(got[1].records.is_empty(), "the budget is spent");
    assert!(got[1].error.is_none());
    assert_eq!(got[1].high_watermark, b, "empty at the offset asked");
}
