//! Retention settings v2 and compacted topics with a real `commitlogd`: the
//! settings travel through `clog topic create|alter|describe` (version 1 of the
//! topic APIs), are replicated in the catalogue and survive a restart; a compacted
//! topic's records that compaction must keep (values without a key) stay at their
//! offsets while the compactor runs.
//!
//! Keyed records (ProduceBatch v2) on a compacted topic: after the compactor ran,
//! a reader sees the newest record of each key at its original offset, and a
//! tombstone and its key's older records are gone once it expired.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use commitlog::client::records::{ConsumedRecord, ProducerRecord};
use commitlog::types::Offset;
use commitlog::wire::{FetchPartition, TopicPartition, TopicSettings};
use common::Server;
use serde_json::Value;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs clog and asserts it succeeded; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = server.clog(args);
    assert!(
        out.status.success(),
        "clog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn json(server: &Server, args: &[&str]) -> Value {
    let out = ok(server, args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn settings_v2_are_set_altered_described_and_survive_a_restart() {
    let mut server = Server::start(&["--compact-interval-ms", "100"]);
    let created = json(
        &server,
        &[
            "topic",
            "create",
            "users",
            "--cleanup-policy",
            "compact",
            "--tombstone-retention",
            "12h",
            "--timestamp-type",
            "leader",
            "--segment-bytes",
            "1048576",
            "--max-record-bytes",
            "65536",
            "-o",
            "json",
        ],
    );
    assert_eq!(created["cleanup_policy"], "compact", "{created}");
    assert_eq!(created["timestamp_type"], "leader");
    assert_eq!(created["tombstone_retention_ms"], 43_200_000);
    // A topic created without the flags has the defaults (asked by describe).
    ok(&server, &["topic", "create", "plain"]);
    let plain = json(&server, &["topic", "describe", "plain", "-o", "json"]);
    assert_eq!(plain["cleanup_policy"], "delete", "{plain}");
    assert_eq!(plain["timestamp_type"], "producer");
    assert_eq!(plain["tombstone_retention_ms"], 86_400_000);

    let altered = json(
        &server,
        &[
            "topic",
            "alter",
            "users",
            "--timestamp-type",
            "producer",
            "-o",
            "json",
        ],
    );
    assert_eq!(altered["timestamp_type"], "producer", "{altered}");
    assert_eq!(altered["cleanup_policy"], "compact", "kept");
    assert_eq!(altered["tombstone_retention_ms"], 43_200_000, "kept");
    let text = ok(&server, &["topic", "describe", "users"]);
    assert!(text.contains("cleanup policy:    compact"), "{text}");

    // Bad values are refused by clog before any request.
    let bad = server.clog(&["topic", "alter", "users", "--cleanup-policy", "shrink"]);
    assert!(!bad.status.success());

    // Values without a key on a compacted topic: compaction keeps every one at its
    // offset (about 3 MiB: several sealed segments of 1 MiB).
    let users = TopicPartition::new("users", 0);
    let mut c = server.client();
    let value = vec![b'x'; 1000];
    let mut offsets = Vec::new();
    for i in 0..3000u32 {
        let mut v = value.clone();
        v[..4].copy_from_slice(&i.to_be_bytes());
        offsets.push(c.produce_to(&users, &v).expect("produce").0);
    }
    server.terminate();
    server.restart();
    let after = json(&server, &["topic", "describe", "users", "-o", "json"]);
    assert_eq!(
        after["cleanup_policy"], "compact",
        "survives a restart: {after}"
    );
    assert_eq!(after["tombstone_retention_ms"], 43_200_000);
    let mut c = server.client();
    for (i, offset) in offsets.iter().enumerate() {
        let record = c.consume_from(&users, Offset(*offset)).expect("consume");
        assert_eq!(record.offset, Offset(*offset));
        assert_eq!(
            &record.value[..4],
            &(i as u32).to_be_bytes(),
            "offset {offset}"
        );
    }
}

const KEYS: usize = 20;

/// Every record of `target` from its start (Fetch v2), bounded in rounds.
fn read_all(c: &mut commitlog::client::Client, target: &TopicPartition) -> Vec<ConsumedRecord> {
    let mut out: Vec<ConsumedRecord> = Vec::new();
    let mut at = Offset(0);
    // Bounded: each answer moves past at least one offset, and the partition has
    // fewer than 5,000.
    for _ in 0..10_000 {
        let asked = [FetchPartition {
            target: target.clone(),
            offset: at,
            max_bytes: 1 << 20,
        }];
        let mut answered = c.fetch_records(&asked, 1 << 20, 0).expect("fetch v2");
        let p = answered.remove(0);
        assert_eq!(p.error, None);
        let Some(last) = p.records.last().map(|r| r.offset) else {
            // An answer of skipped entries only (placeholders of removed
            // records) says where its scan stopped; nothing after it: the end.
            if p.high_watermark > at {
                at = p.high_watermark;
                continue;
            }
            return out;
        };
        at = Offset(last.0 + 1);
        out.extend(p.records);
    }
    panic!("{target} did not end within 10,000 fetches")
}

#[test]
fn a_compacted_topic_keeps_the_newest_record_per_key_at_its_offset() {
    let server = Server::start(&["--compact-interval-ms", "200"]);
    let mut c = server.client();
    let settings = TopicSettings {
        partitions: 1,
        replication: 1,
        segment_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
        cleanup_policy: 1,
        tombstone_retention_ms: 1,
        ..TopicSettings::default()
    };
    let d = c.create_topic("kv", settings).expect("create");
    assert!(d.settings_v2, "a v1 create answers with settings v2");
    let kv = TopicPartition::new("kv", 0);
    // Key `gone`: two values, then a tombstone (expires after 1 ms); then 4,000
    // records of 1 KiB over 20 keys (about 4 MiB: several sealed 1 MiB segments).
    let gone: Vec<ProducerRecord> = vec![
        ProducerRecord::new(b"a".to_vec()).with_key(b"gone".to_vec()),
        ProducerRecord::new(b"b".to_vec()).with_key(b"gone".to_vec()),
        ProducerRecord::new(Vec::new()).with_key(b"gone".to_vec()),
    ];
    let first = c
        .produce_records(&kv, &gone.iter().collect::<Vec<_>>())
        .expect("produce");
    let gone_offsets: Vec<u64> = (first.0..first.0 + 3).collect();
    let mut produced: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for batch in 0..80 {
        let records: Vec<ProducerRecord> = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                let mut value = vec![b'v'; 1024];
                value[..8].copy_from_slice(&(n as u64).to_be_bytes());
                ProducerRecord::new(value).with_key(format!("key-{}", n % KEYS).into_bytes())
            })
            .collect();
        let first = c
            .produce_records(&kv, &records.iter().collect::<Vec<_>>())
            .expect("produce");
        for (k, r) in records.iter().enumerate() {
            let key = r.key.clone().unwrap();
            produced.insert(first.0 + k as u64, (key, r.value.clone()));
        }
    }
    let total = produced.len();
    // The compactor runs every 200 ms: wait (bounded) until it has removed most.
    let deadline = Instant::now() + Duration::from_secs(60);
    let visible = loop {
        let visible = read_all(&mut c, &kv);
        let gone_left = visible.iter().any(|r| gone_offsets.contains(&r.offset.0));
        if visible.len() < total / 2 && !gone_left {
            break visible;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted within 60 s: {} of {total} records visible, tombstone key left: {gone_left}",
            visible.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every visible record is the one produced at its offset.
    for r in &visible {
        let (key, value) = &produced[&r.offset.0];
        assert_eq!(r.key.as_ref(), Some(key), "offset {}", r.offset);
        assert_eq!(&r.value, value, "offset {}", r.offset);
    }
    // Per key: the newest record is there, and what is left is a suffix of what was
    // produced (a record is removed only for a newer one of its key).
    let mut by_key: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    for (offset, (key, _)) in &produced {
        by_key.entry(key.clone()).or_default().push(*offset);
    }
    let seen: std::collections::BTreeSet<u64> = visible.iter().map(|r| r.offset.0).collect();
    for (key, offsets) in &by_key {
        let kept: Vec<u64> = offsets
            .iter()
            .copied()
            .filter(|o| seen.contains(o))
            .collect();
        assert_eq!(kept.last(), offsets.last(), "{key:?}: the newest is kept");
        assert_eq!(
            kept[..],
            offsets[offsets.len() - kept.len()..],
            "{key:?}: what is left is the newest ones"
        );
    }
}
