//! Record format v1 end to end with a real `commitlogd` (one node): keys, headers
//! and timestamps round trip through ProduceBatch / Consume / Fetch v2; the same key
//! always goes to the same partition of a 6-partition topic and an explicit
//! partition wins; version 0/1 readers (and the text protocol) see only the value;
//! a leader-stamped time lies within the test's clock window; bad records are
//! refused with INVALID_RECORD and nothing is written.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use commitlog::client::cluster::{ClusterClient, ClusterConfig};
use commitlog::client::records::{ConsumedRecord, ProducerRecord};
use commitlog::client::Client;
use commitlog::records::partition_for_key;
use commitlog::types::Offset;
use commitlog::wire::{
    ErrorCode, FetchPartition, Request, ResponseBody, TopicPartition, TopicSettings,
};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 6;

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn cluster_client(server: &common::Server) -> ClusterClient {
    ClusterClient::connect(ClusterConfig::new(&server.addr.to_string())).expect("connect")
}

fn create_topic(client: &mut Client) {
    let settings = TopicSettings {
        partitions: PARTITIONS,
        replication: 1,
        ..TopicSettings::default()
    };
    client.create_topic(TOPIC, settings).expect("create topic");
}

fn target(partition: u32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

/// Every record of `partition` from its start (Fetch v2), bounded in rounds.
fn read_partition(c: &mut Client, partition: u32) -> Vec<ConsumedRecord> {
    let mut out = Vec::new();
    let mut at = Offset(0);
    for _ in 0..100 {
        let asked = [FetchPartition {
            target: target(partition),
            offset: at,
            max_bytes: 1 << 20,
        }];
        let mut answered = c.fetch_records(&asked, 1 << 20, 0).expect("fetch v2");
        assert_eq!(answered.len(), 1);
        let p = answered.remove(0);
        assert_eq!(p.error, None, "partition {partition}");
        let Some(last) = p.records.last().map(|r| r.offset) else {
            return out;
        };
        at = Offset(last.0 + 1);
        out.extend(p.records);
    }
    panic!("partition {partition} did not end within 100 fetches")
}

fn keyed(i: usize) -> ProducerRecord {
    let mut r = ProducerRecord::new(format!("value-{i}").into_bytes())
        .with_key(format!("user-{}", i % 10).into_bytes())
        .with_header("trace", format!("t{i}").into_bytes())
        .with_header("trace", b"again".to_vec());
    if !i.is_multiple_of(3) {
        r = r.with_timestamp_ms(1_700_000_000_000 + i as i64);
    }
    r
}

#[test]
fn keys_headers_and_timestamps_round_trip_and_keys_pick_partitions() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    create_topic(&mut c);
    let mut cluster = cluster_client(&server);

    let records: Vec<ProducerRecord> = (0..40).map(keyed).collect();
    let before_ms = now_ms();
    let batches = cluster
        .produce_records(TOPIC, None, &records)
        .expect("produce records");
    let after_ms = now_ms();
    let total: u32 = batches.iter().map(|b| b.count).sum();
    assert_eq!(total, 40);

    // Read everything back; each record sits in its key's partition, whole.
    let mut seen: BTreeMap<Vec<u8>, (u32, ConsumedRecord)> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for r in read_partition(&mut c, p) {
            seen.insert(r.value.clone(), (p, r));
        }
    }
    assert_eq!(seen.len(), 40, "every record read back once");
    for sent in &records {
        let (p, got) = &seen[&sent.value];
        let key = sent.key.as_deref().unwrap();
        assert_eq!(*p, partition_for_key(key, PARTITIONS), "key {key:?}");
        assert_eq!(got.key.as_deref(), Some(key));
        assert_eq!(
            got.headers, sent.headers,
            "headers in order, duplicates kept"
        );
        match sent.timestamp_ms {
            Some(ts) => {
                assert_eq!(got.timestamp_ms, ts, "producer time kept");
                assert!(!got.leader_time);
            }
            None => {
                assert!(got.leader_time, "an unset time is the leader's");
                assert!(
                    (before_ms..=after_ms).contains(&got.timestamp_ms),
                    "{} not in [{before_ms}, {after_ms}]",
                    got.timestamp_ms
                );
            }
        }
        // Consume v2 of the same offset agrees with Fetch v2.
        let one = c
            .consume_record(&target(*p), got.offset)
            .expect("consume v2");
        assert_eq!(&one, got);
    }

    // Later records with the same key land in the same partition again.
    let again = cluster
        .produce_records(TOPIC, None, &[keyed(3)])
        .expect("produce again");
    assert_eq!(again[0].partition, seen[&b"value-3".to_vec()].0);

    // An explicit partition wins over the key.
    let hashed = partition_for_key(b"user-1", PARTITIONS);
    let explicit = (hashed + 1) % PARTITIONS;
    let forced = cluster
        .produce_records(TOPIC, Some(explicit), &[keyed(1)])
        .expect("produce to a partition");
    assert_eq!(forced[0].partition, explicit);
    let back = c
        .consume_record(&target(explicit), forced[0].first_offset)
        .expect("consume forced");
    assert_eq!(back.key.as_deref(), Some(&b"user-1"[..]));
}

#[test]
fn old_readers_see_only_the_value_and_old_writers_get_the_leaders_time() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    create_topic(&mut c);
    let record = ProducerRecord::new(b"the value".to_vec())
        .with_key(b"k".to_vec())
        .with_header("h", b"x".to_vec())
        .with_timestamp_ms(42);
    let at = c
        .produce_records(&target(2), &[&record])
        .expect("produce v2");

    // Consume v1 and Fetch v1: the value alone.
    let v1 = c.consume_from(&target(2), at).expect("consume v1");
    assert_eq!(v1.value, b"the value");
    let asked = [FetchPartition {
        target: target(2),
        offset: at,
        max_bytes: 1 << 20,
    }];
    let fetched = c.fetch_partitions(&asked, 1 << 20, 0).expect("fetch v1");
    let values: Vec<&[u8]> = fetched[0].records.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, [&b"the value"[..]]);
    assert_eq!(
        fetched[0].records[0].kind,
        commitlog::types::RecordKind::Data
    );

    // The text protocol too.
    let mut tcp = server.tcp();
    tcp.write_all(format!("CONSUME @{TOPIC}/2 {}\r\n", at.0).as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(&tcp).read_line(&mut line).unwrap();
    assert_eq!(line, format!("+{} the value\r\n", at.0));

    // A version-0 produce (bare value) is read by v2 with the leader's time, no
    // key, no headers; Consume and Fetch v0 give the value back.
    let before_ms = now_ms();
    let v0 = c.produce(b"plain").expect("v0 produce");
    let after_ms = now_ms();
    let got = c
        .consume_record(&TopicPartition::default_topic(), v0)
        .expect("consume v2 of a v0 produce");
    assert_eq!((got.key, got.headers.len()), (None, 0));
    assert_eq!(got.value, b"plain");
    assert!(got.leader_time);
    assert!((before_ms..=after_ms).contains(&got.timestamp_ms));
    assert_eq!(c.consume(v0).expect("v0 consume").value, b"plain");
    let f = c.fetch(v0, 1 << 20, 0).expect("v0 fetch");
    assert_eq!(f.records[0].value, b"plain");
}

fn raw_batch(c: &mut Client, records: Vec<Vec<u8>>) -> Result<ResponseBody, ErrorCode> {
    let request = Request::ProduceBatchV2 {
        target: target(0),
        producer: None,
        records,
    };
    let id = c.send(request).expect("send");
    let (got, result) = c.recv().expect("recv");
    assert_eq!(got, id);
    result.map_err(|e| e.code().expect("a server error"))
}

#[test]
fn bad_records_are_refused_whole_and_nothing_is_written() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    create_topic(&mut c);
    let good = ProducerRecord::new(b"ok".to_vec()).encode().unwrap();
    let mut leader_flag = good.clone();
    leader_flag[1] |= 0x01;
    let mut negative = good.clone();
    negative[2..10].copy_from_slice(&(-5i64).to_be_bytes());
    for bad in [vec![9u8, 0, 0], leader_flag, negative, vec![1]] {
        let answer = raw_batch(&mut c, vec![good.clone(), bad.clone()]);
        assert_eq!(answer, Err(ErrorCode::InvalidRecord), "payload {bad:?}");
    }
    // Nothing of those batches was written: the partition is still empty.
    assert!(read_partition(&mut c, 0).is_empty());
    // A good batch goes through.
    match raw_batch(&mut c, vec![good.clone(), good]) {
        Ok(ResponseBody::ProduceBatchV2 {
            count, duplicate, ..
        }) => assert_eq!((count, duplicate), (2, false)),
        other => panic!("good batch answered {other:?}"),
    }
    assert_eq!(read_partition(&mut c, 0).len(), 2);
}

#[test]
fn an_idempotent_batch_is_refused_until_the_server_supports_it() {
    use commitlog::replica::dedup::{BatchMeta, BatchSeq, ProducerEpoch, ProducerId};
    let server = common::Server::start(&[]);
    let mut c = server.client();
    let record = ProducerRecord::new(b"x".to_vec()).encode().unwrap();
    let request = Request::ProduceBatchV2 {
        target: TopicPartition::default_topic(),
        producer: Some(BatchMeta {
            producer: ProducerId(1),
            epoch: ProducerEpoch(0),
            seq: BatchSeq::new(0, 1).unwrap(),
        }),
        records: vec![record],
    };
    let id = c.send(request).expect("send");
    let (got, result) = c.recv().expect("recv");
    assert_eq!(got, id);
    let err = result.expect_err("refused");
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion));
    assert!(err.to_string().contains("idempotent"), "{err}");
}

#[test]
fn the_version_2_spec_examples_get_exactly_the_documented_bytes() {
    use std::io::Read;
    let server = common::Server::start(&[]);
    assert!(!commitlog::wire::V2_EXAMPLES.is_empty());
    // In order, against one fresh server, each on its own connection.
    for example in commitlog::wire::V2_EXAMPLES {
        let mut tcp = server.tcp();
        tcp.write_all(example.request).unwrap();
        let mut got = vec![0u8; example.response.len()];
        tcp.read_exact(&mut got).unwrap();
        assert_eq!(
            got,
            example.response,
            "example {}: got {:?}",
            example.name,
            String::from_utf8_lossy(&got)
        );
    }
}
