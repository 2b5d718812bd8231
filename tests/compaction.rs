//! Retention settings v2 and compacted topics with a real `commitlogd`: the
//! settings travel through `clog topic create|alter|describe` (version 1 of the
//! topic APIs), are replicated in the catalogue and survive a restart; a compacted
//! topic's records that compaction must keep (values without a key) stay at their
//! offsets while the compactor runs.
//!
//! Removal of superseded keyed records is tested at storage level
//! (`storage::compact_tests`): a produce path that stores keyed v1 records is not
//! part of this slice.

mod common;

use std::process::Output;

use commitlog::types::Offset;
use commitlog::wire::TopicPartition;
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
