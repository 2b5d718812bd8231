//! Topic helpers for real-process tests: one request/answer over the wire protocol
//! v1, topic creation on whichever node leads the metadata group, partition leaders
//! as the nodes report them, and producing to every partition's leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{wait_for, Cluster};
use commitlog::client::{Client, ClientError};
use commitlog::types::{NodeId, Offset};
use commitlog::wire::{
    ErrorCode, Request, ResponseBody, TopicDescription, TopicPartition, TopicSettings,
};

/// Acknowledged records: (topic, partition, offset) → value.
pub type Acked = BTreeMap<(String, u32, u64), Vec<u8>>;

/// Sends one request and waits for its answer.
pub fn call(client: &mut Client, request: Request) -> Result<ResponseBody, ClientError> {
    let id = client.send(request)?;
    let (got, result) = client.recv()?;
    assert_eq!(got, id, "answers come in order");
    result
}

pub fn code(r: Result<ResponseBody, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

pub fn settings(partitions: u32, replication: u8) -> TopicSettings {
    TopicSettings {
        partitions,
        replication,
        ..TopicSettings::default()
    }
}

pub fn create(
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

pub fn produce(
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

pub fn consume(
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

pub fn describe(client: &mut Client, name: &str) -> Result<TopicDescription, ClientError> {
    match call(client, Request::DescribeTopic { name: name.into() })? {
        ResponseBody::DescribeTopic(d) => Ok(d),
        other => panic!("DescribeTopic answered {other:?}"),
    }
}

pub fn topic_names(client: &mut Client) -> Vec<String> {
    match call(client, Request::Metadata { topics: Vec::new() }).expect("metadata") {
        ResponseBody::Metadata { topics, .. } => topics.into_iter().map(|t| t.name).collect(),
        other => panic!("Metadata answered {other:?}"),
    }
}

/// Asks every node until the metadata leader takes the CreateTopic.
pub fn create_on_cluster(cluster: &Cluster, name: &str, s: TopicSettings) -> TopicDescription {
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
                    // A refused name or setting will not be accepted by retrying.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(ErrorCode::InvalidConfig | ErrorCode::InvalidTopic)
                        ) =>
                    {
                        panic!("creating {name}: {e}")
                    }
                    Err(_) => {}
                }
            }
            None
        },
    )
}

/// Each partition's leader as some node reports it.
pub fn leaders(cluster: &Cluster, among: &[usize], name: &str) -> Option<Vec<NodeId>> {
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

/// Produces `n` records to every partition of `name` on its leader (retrying
/// elections), recording each acknowledgement.
pub fn produce_all(
    cluster: &Cluster,
    among: &[usize],
    name: &str,
    tag: &str,
    n: usize,
    acked: &mut Acked,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 0;
    while i < n {
        assert!(
            Instant::now() < deadline,
            "producing {tag} to {name} took too long"
        );
        let Some(ls) = leaders(cluster, among, name) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut all = true;
        for (p, leader) in ls.iter().enumerate() {
            let value = format!("{name}-{tag}-{i}-p{p}").into_bytes();
            let mut c = cluster.nodes[leader.0 as usize - 1].client();
            match produce(&mut c, name, p as u32, &value) {
                Ok(offset) => {
                    let key = (name.to_string(), p as u32, offset.0);
                    if let Some(old) = acked.insert(key, value.clone()) {
                        panic!(
                            "{name}/{p} offset {} acknowledged twice: {old:?} and {value:?}",
                            offset.0
                        );
                    }
                }
                Err(_) => all = false,
            }
        }
        if all {
            i += 1;
        }
    }
}

/// Every acknowledged record is at its offset in its partition on every node of
/// `among` (waiting, bounded, for replicas to catch up).
pub fn verify_everywhere(cluster: &Cluster, among: &[usize], acked: &Acked) {
    for node in among {
        let mut c = cluster.nodes[*node].client();
        for ((topic, p, offset), value) in acked {
            let got = wait_for(
                "a replica to catch up",
                Duration::from_secs(60),
                || match consume(&mut c, topic, *p, Offset(*offset)) {
                    Ok(r) => Some(r),
                    Err(ClientError::Server { .. }) => None,
                    Err(_) => {
                        c = cluster.nodes[*node].client();
                        None
                    }
                },
            );
            assert_eq!(
                got,
                (Offset(*offset), value.clone()),
                "node {node}: {topic}/{p}"
            );
        }
    }
}
