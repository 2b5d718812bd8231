//! Many requests in flight on one connection: every response carries its request's
//! correlation id, so the client matches answers that may complete out of order.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use commitlog::client::{Client, Pipeline};
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, Request, ResponseBody};
use common::{Server, FIRST_OFFSET};

#[derive(Debug)]
enum Sent {
    Produce(Vec<u8>),
    Consume(Offset),
    Ping,
    OutOfRange,
}

#[test]
fn hundreds_of_mixed_requests_in_flight_are_matched_by_correlation_id() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let seeded: Vec<Vec<u8>> = (0..20).map(|i| format!("seed-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = seeded.iter().map(|v| v.as_slice()).collect();
    client.produce_batch(&refs).unwrap();

    let mut sent: HashMap<u32, Sent> = HashMap::new();
    for i in 0..600u32 {
        let (request, what) = match i % 4 {
            0 => {
                let v = format!("new-{i}").into_bytes();
                (
                    Request::Produce {
                        target: commitlog::wire::TopicPartition::default_topic(),
                        value: v.clone(),
                    },
                    Sent::Produce(v),
                )
            }
            1 => {
                let at = Offset(FIRST_OFFSET + u64::from(i) % 20);
                (
                    Request::Consume {
                        target: commitlog::wire::TopicPartition::default_topic(),
                        offset: at,
                    },
                    Sent::Consume(at),
                )
            }
            2 => (Request::Ping, Sent::Ping),
            _ => (
                Request::Consume {
                    target: commitlog::wire::TopicPartition::default_topic(),
                    offset: Offset(1_000_000),
                },
                Sent::OutOfRange,
            ),
        };
        let id = client.send(request).unwrap();
        assert!(
            sent.insert(id, what).is_none(),
            "correlation id {id} reused"
        );
    }
    assert_eq!(client.in_flight(), 600);
    let mut produced: HashMap<Offset, Vec<u8>> = HashMap::new();
    for _ in 0..600 {
        let (id, result) = client.recv().unwrap();
        let what = sent
            .remove(&id)
            .unwrap_or_else(|| panic!("unknown correlation id {id}"));
        match (what, result) {
            (Sent::Produce(v), Ok(ResponseBody::Produce { offset })) => {
                assert!(
                    produced.insert(offset, v).is_none(),
                    "offset {offset} given twice"
                );
            }
            (Sent::Consume(at), Ok(ResponseBody::Consume { record })) => {
                assert_eq!(record.offset, at);
                assert_eq!(record.value, seeded[(at.0 - FIRST_OFFSET) as usize]);
            }
            (Sent::Ping, Ok(ResponseBody::Ping)) => {}
            (Sent::OutOfRange, Err(e)) => assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange)),
            (what, result) => panic!("request {what:?} got {result:?}"),
        }
    }
    assert!(sent.is_empty());
    assert_eq!(client.in_flight(), 0);
    // Produced offsets are exactly the 150 after the seed, and hold what was sent.
    let offsets: HashSet<u64> = produced.keys().map(|o| o.0).collect();
    assert_eq!(
        offsets,
        (FIRST_OFFSET + 20..FIRST_OFFSET + 170).collect::<HashSet<u64>>()
    );
    for (offset, v) in &produced {
        assert_eq!(&client.consume(*offset).unwrap().value, v);
    }
}

#[test]
fn a_windowed_pipeline_acknowledges_every_produce() {
    let server = Server::start(&[]);
    let mut client = Client::connect(server.addr, Duration::from_secs(10)).unwrap();
    let mut acks = Vec::new();
    {
        let mut pipeline = Pipeline::new(&mut client, 64);
        for i in 0..2000u32 {
            if let Some(ack) = pipeline.produce(format!("w-{i}").as_bytes()).unwrap() {
                acks.push(ack);
            }
            assert!(pipeline.in_flight() <= 64);
        }
        acks.extend(pipeline.drain().unwrap());
    }
    assert_eq!(acks.len(), 2000);
    let mut offsets: Vec<u64> = acks.iter().map(|a| a.result.as_ref().unwrap().0).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (FIRST_OFFSET..FIRST_OFFSET + 2000).collect::<Vec<u64>>()
    );
    // A simple call after pipelining still works on the same connection.
    assert_eq!(
        client.status().unwrap().commit_index,
        Offset(FIRST_OFFSET + 1999)
    );
}

#[test]
fn a_simple_call_keeps_pipelined_responses_for_later() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let a = client.send(Request::Ping).unwrap();
    let b = client.send_produce(b"queued").unwrap();
    // This call's response may arrive after the two above; they are kept.
    client.ping().unwrap();
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let (id, result) = client.recv().unwrap();
        assert!(result.is_ok());
        seen.insert(id);
    }
    assert_eq!(seen, HashSet::from([a, b]));
}

/// Version-1 fetches of one partition each, pipelined: every answer is received by
/// its correlation id whatever order it is asked in, and a partition's own error is
/// the call's error.
#[test]
fn pipelined_fetches_of_a_topic_partition_are_matched_by_correlation_id() {
    use commitlog::wire::{TopicPartition, TopicSettings};
    let server = Server::start(&[]);
    let mut client = server.client();
    let settings = TopicSettings {
        partitions: 2,
        ..TopicSettings::default()
    };
    client.create_topic("pipe", settings).unwrap();
    let target = TopicPartition::new("pipe", 1);
    let first = client.produce_to(&target, b"one").unwrap();
    let second = client.produce_to(&target, b"two").unwrap();
    let from_first = client.send_fetch_to(&target, first, 1 << 20, 0).unwrap();
    let from_second = client.send_fetch_to(&target, second, 1 << 20, 0).unwrap();
    let missing = TopicPartition::new("pipe", 5);
    let unknown = client.send_fetch_to(&missing, first, 1 << 20, 0).unwrap();
    client.produce(b"default").unwrap();
    let default = TopicPartition::default_topic();
    let of_default = client
        .send_fetch_to(&default, Offset(0), 1 << 20, 0)
        .unwrap();

    // Asked in the reverse order: the earlier answers are kept meanwhile.
    let mut values = |id| {
        let mut got = Vec::new();
        let result = client.recv_fetch_with(id, 0, |r| got.push((r.offset, r.value.to_vec())));
        result.map(|(_, count)| {
            assert_eq!(count as usize, got.len());
            got
        })
    };
    let read = values(of_default).unwrap();
    assert_eq!(read.last().map(|r| r.1.as_slice()), Some(&b"default"[..]));
    let err = values(unknown).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic), "{err}");
    assert_eq!(values(from_second).unwrap(), [(second, b"two".to_vec())]);
    assert_eq!(
        values(from_first).unwrap(),
        [(first, b"one".to_vec()), (second, b"two".to_vec())]
    );
    assert_eq!(client.in_flight(), 0);
}
