//! Topics and partitions with real processes, through the wire protocol v1: create,
//! produce, consume, describe, alter and delete topics on one node (and across a
//! restart), and on three nodes across a leader kill, where every acknowledged record
//! must stay at its offset in its partition on every replica.

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_common::{wait_for, Cluster};
use commitlog::client::{Client, ClientError};
use commitlog::types::{GroupId, NodeId, Offset};
use commitlog::wire::{
    ErrorCode, Request, ResponseBody, TopicChanges, TopicDescription, TopicPartition, TopicSettings,
};

/// Sends one request and waits for its answer.
fn call(client: &mut Client, request: Request) -> Result<ResponseBody, ClientError> {
    let id = client.send(request)?;
    let (got, result) = client.recv()?;
    assert_eq!(got, id, "answers come in order");
    result
}

fn code(r: Result<ResponseBody, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

fn settings(partitions: u32, replication: u8) -> TopicSettings {
    TopicSettings {
        partitions,
        replication,
        ..TopicSettings::default()
    }
}

fn create(
    client: &mut Client,
    name: &str,
    s: TopicSettings,
) -> Result<TopicDescription, ClientError> {
    match call(
        client,
        Request::CreateTopic {
            name: name.into(),
            settings: s,
        },
    )? {
        ResponseBody::CreateTopic(d) => Ok(d),
        other => panic!("CreateTopic answered {other:?}"),
    }
}

fn produce(
    client: &mut Client,
    topic: &str,
    partition: u32,
    value: &[u8],
) -> Result<Offset, ClientError> {
    let target = TopicPartition::new(topic, partition);
    match call(
        client,
        Request::Produce {
            target,
            value: value.to_vec(),
        },
    )? {
        ResponseBody::Produce { offset } => Ok(offset),
        other => panic!("Produce answered {other:?}"),
    }
}

fn consume(
    client: &mut Client,
    topic: &str,
    partition: u32,
    offset: Offset,
) -> Result<(Offset, Vec<u8>), ClientError> {
    let target = TopicPartition::new(topic, partition);
    match call(client, Request::Consume { target, offset })? {
        ResponseBody::Consume { record } => Ok((record.offset, record.value)),
        other => panic!("Consume answered {other:?}"),
    }
}

fn describe(client: &mut Client, name: &str) -> Result<TopicDescription, ClientError> {
    match call(client, Request::DescribeTopic { name: name.into() })? {
        ResponseBody::DescribeTopic(d) => Ok(d),
        other => panic!("DescribeTopic answered {other:?}"),
    }
}

fn topic_names(client: &mut Client) -> Vec<String> {
    match call(client, Request::Metadata { topics: Vec::new() }).expect("metadata") {
        ResponseBody::Metadata { topics, .. } => topics.into_iter().map(|t| t.name).collect(),
        other => panic!("Metadata answered {other:?}"),
    }
}

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

/// Asks every node until the metadata leader takes the CreateTopic.
fn create_on_cluster(cluster: &Cluster, name: &str, s: TopicSettings) -> TopicDescription {
    wait_for(
        "the metadata leader to create the topic",
        Duration::from_secs(20),
        || {
            for n in &cluster.nodes {
                let mut c = n.client();
                match create(&mut c, name, s) {
                    Ok(d) => return Some(d),
                    Err(e) if e.code() == Some(ErrorCode::TopicExists) => {
                        return describe(&mut c, name).ok();
                    }
                    Err(_) => {}
                }
            }
            None
        },
    )
}

/// Each partition's leader as some node reports it.
fn leaders(cluster: &Cluster, among: &[usize], name: &str) -> Option<Vec<NodeId>> {
    let mut out: Vec<NodeId> = Vec::new();
    for i in among {
        let mut c = cluster.nodes[*i].client();
        let d = describe(&mut c, name).ok()?;
        if out.is_empty() {
            out = vec![NodeId(0); d.partitions.len()];
        }
        for p in &d.partitions {
            let slot = out.get_mut(p.partition as usize)?;
            if p.leader.0 != 0 {
                *slot = p.leader;
            }
        }
    }
    let alive: Vec<u64> = among.iter().map(|i| *i as u64 + 1).collect();
    out.iter().all(|l| alive.contains(&l.0)).then_some(out)
}

/// Produces `n` records to every partition on its leader (retrying elections).
fn produce_all(
    cluster: &Cluster,
    among: &[usize],
    name: &str,
    tag: &str,
    n: usize,
    acked: &mut BTreeMap<(u32, u64), Vec<u8>>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while i < n {
        assert!(Instant::now() < deadline, "producing {tag} took too long");
        let Some(ls) = leaders(cluster, among, name) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut all = true;
        for (p, leader) in ls.iter().enumerate() {
            let value = format!("{tag}-{i}-p{p}").into_bytes();
            let mut c = cluster.nodes[leader.0 as usize - 1].client();
            match produce(&mut c, name, p as u32, &value) {
                Ok(offset) => {
                    assert!(
                        acked.insert((p as u32, offset.0), value).is_none(),
                        "offset reused"
                    );
                }
                Err(_) => all = false,
            }
        }
        if all {
            i += 1;
        }
    }
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

    let mut acked = BTreeMap::new();
    produce_all(&cluster, &all, "events", "before", 10, &mut acked);
    let victim = ls[0].0 as usize - 1;
    cluster.nodes[victim].kill();
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    produce_all(&cluster, &rest, "events", "during", 10, &mut acked);
    cluster.restart(victim);
    produce_all(&cluster, &all, "events", "after", 5, &mut acked);

    // Every acknowledged record is at its offset on every node.
    for node in &all {
        for ((p, offset), value) in &acked {
            let got = wait_for("a replica to catch up", Duration::from_secs(30), || {
                let mut c = cluster.nodes[*node].client();
                consume(&mut c, "events", *p, Offset(*offset)).ok()
            });
            assert_eq!(
                got,
                (Offset(*offset), value.clone()),
                "node {node} partition {p}"
            );
        }
    }
}
