//! Retention settings v2 and compacted topics with a real `commitlogd`: the
//! settings travel through `clog topic create|alter|describe` (version 1 of the
//! topic APIs), are replicated in the catalogue and survive a restart; a compacted
//! topic's records that compaction must keep (values without a key) stay at their
//! offsets while the compactor runs.
//!
//! Keyed records (ProduceBatch v2) on a compacted topic: after the compactor ran,
//! a reader sees the newest record of each key at its original offset, and a
//! tombstone and its key's older records are gone once it expired; on three
//! nodes, a follower that was down while its leader compacted catches up and
//! serves the newest record of each key at the same offsets. Consumer cursors
//! bound compaction: below the lowest cursor of any group only the newest record
//! of each key stays, at or above it every record stays; once the cursor moves to
//! the end, the rest is compacted too.

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use cluster_common::topics::{create, leaders};
use cluster_common::{wait_for, Cluster, SETTLE_DEADLINE};
use commitlog::client::records::{ConsumedRecord, ProducerRecord};
use commitlog::types::Offset;
use commitlog::wire::{
    ErrorCode, FetchPartition, GroupRequest, GroupResponse, OffsetCommit, TopicPartition,
    TopicSettings,
};
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
    let produced = produce_keyed(|batch| c.produce_records(&kv, batch).expect("produce"));
    let visible = wait_compacted(&mut c, &kv, &produced, |visible| {
        !visible.iter().any(|r| gone_offsets.contains(&r.offset.0))
    });
    check_compacted(&visible, &produced);
}

/// What was produced at each offset: key and value.
type Produced = BTreeMap<u64, (Vec<u8>, Vec<u8>)>;

/// 4,000 records of 1 KiB over [`KEYS`] keys (about 4 MiB: several sealed 1 MiB
/// segments), in batches of 50 through `produce` (which returns a batch's first
/// offset).
fn produce_keyed(produce: impl FnMut(&[&ProducerRecord]) -> Offset) -> Produced {
    produce_keyed_batches(0..80, produce)
}

/// The `batches` (of 50 records, 1 KiB each, keys round robin) of [`produce_keyed`].
fn produce_keyed_batches(
    batches: std::ops::Range<usize>,
    mut produce: impl FnMut(&[&ProducerRecord]) -> Offset,
) -> Produced {
    let mut produced = Produced::new();
    for batch in batches {
        let records: Vec<ProducerRecord> = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                let mut value = vec![b'v'; 1024];
                value[..8].copy_from_slice(&(n as u64).to_be_bytes());
                ProducerRecord::new(value).with_key(format!("key-{}", n % KEYS).into_bytes())
            })
            .collect();
        let first = produce(&records.iter().collect::<Vec<_>>());
        for (k, r) in records.iter().enumerate() {
            let key = r.key.clone().unwrap();
            produced.insert(first.0 + k as u64, (key, r.value.clone()));
        }
    }
    produced
}

/// Every visible record is the one produced at its offset; per key the newest is
/// there and what is left is a suffix of what was produced (a record is removed
/// only for a newer one of its key).
fn check_compacted(visible: &[ConsumedRecord], produced: &Produced) {
    for r in visible {
        let Some((key, value)) = produced.get(&r.offset.0) else {
            continue;
        };
        assert_eq!(r.key.as_ref(), Some(key), "offset {}", r.offset);
        assert_eq!(&r.value, value, "offset {}", r.offset);
    }
    let mut by_key: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    for (offset, (key, _)) in produced {
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

/// Whether, per key, the records left are the newest ones produced (the last
/// assertion of [`check_compacted`], without panicking).
fn newest_ones_are_left(visible: &[ConsumedRecord], produced: &Produced) -> bool {
    let seen: std::collections::BTreeSet<u64> = visible.iter().map(|r| r.offset.0).collect();
    let mut by_key: BTreeMap<&Vec<u8>, Vec<u64>> = BTreeMap::new();
    for (offset, (key, _)) in produced {
        by_key.entry(key).or_default().push(*offset);
    }
    by_key.values().all(|offsets| {
        let kept = offsets.iter().filter(|o| seen.contains(o)).count();
        offsets[offsets.len() - kept..]
            .iter()
            .all(|o| seen.contains(o))
    })
}

/// Waits (bounded) until a read of `target` through `c` shows that compaction
/// removed more than half of `produced`, and the next read is the same: a read of
/// many fetches is not atomic, and one that a compaction pass overtook mixes the
/// log before and after it.
fn wait_compacted(
    c: &mut commitlog::client::Client,
    target: &TopicPartition,
    produced: &Produced,
    extra: impl Fn(&[ConsumedRecord]) -> bool,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous: Vec<ConsumedRecord> = Vec::new();
    loop {
        let visible = read_all(c, target);
        if visible.len() < produced.len() / 2 && extra(&visible) && visible == previous {
            return visible;
        }
        previous = visible.clone();
        assert!(
            Instant::now() < deadline,
            "not compacted within 60 s: {} of {} records visible",
            visible.len(),
            produced.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_lagging_follower_catches_up_over_compacted_segments() {
    let mut cluster = Cluster::start_with(
        &["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        &["--compact-interval-ms", "200"],
    );
    let settings = TopicSettings {
        partitions: 1,
        replication: 3,
        segment_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
        cleanup_policy: 1,
        ..TopicSettings::default()
    };
    // Right after the start the metadata leader may not count three voters yet
    // (INVALID_CONFIG for a replication of 3): ask again until it does.
    wait_for("the metadata leader to create kv", SETTLE_DEADLINE, || {
        cluster
            .nodes
            .iter()
            .find_map(|n| create(&mut n.client(), "kv", settings).ok())
    });
    let all = [0, 1, 2];
    let leader = wait_for("a leader of kv/0", SETTLE_DEADLINE, || {
        leaders(&cluster, &all, "kv").map(|l| l[0])
    });
    let leader = (leader.0 - 1) as usize;
    let lagging = (leader + 1) % 3;
    cluster.nodes[lagging].kill();
    let kv = TopicPartition::new("kv", 0);
    let mut c = cluster.nodes[leader].client();
    let produced = produce_keyed(|batch| c.produce_records(&kv, batch).expect("produce"));
    let on_leader = wait_compacted(&mut c, &kv, &produced, |_| true);
    check_compacted(&on_leader, &produced);
    // The follower comes back and fetches what it missed from compacted segments
    // (placeholders where records were removed), then serves the same records.
    cluster.restart(lagging);
    let last = *produced.keys().last().unwrap();
    let mut f = cluster.nodes[lagging].client();
    let mut previous = Vec::new();
    // A follower that fetched one segment before a leader's pass rewrote it and a
    // newer one after holds, for a while, an older record of a key whose newer one
    // it lacks (each is a record the other copy had): its own compactor removes the
    // older one on its next pass. Wait for that too.
    let on_follower = wait_for("the follower to catch up", SETTLE_DEADLINE, || {
        let visible = read_all_or_none(&mut f, &kv)?;
        let done = visible.last().map(|r| r.offset.0) == Some(last)
            && visible == previous
            && newest_ones_are_left(&visible, &produced);
        previous = visible.clone();
        done.then_some(visible)
    });
    check_compacted(&on_follower, &produced);
    // Compacted independently or not, both hold only records produced at their
    // offsets and every key's newest; the leader's newest per key match.
    let newest = |v: &[ConsumedRecord]| -> BTreeMap<Vec<u8>, u64> {
        v.iter()
            .filter_map(|r| Some((r.key.clone()?, r.offset.0)))
            .collect()
    };
    assert_eq!(newest(&on_follower), newest(&on_leader));
}

/// [`read_all`], `None` while the node does not serve the partition yet.
fn read_all_or_none(
    c: &mut commitlog::client::Client,
    target: &TopicPartition,
) -> Option<Vec<ConsumedRecord>> {
    let asked = [FetchPartition {
        target: target.clone(),
        offset: Offset(0),
        max_bytes: 1 << 20,
    }];
    let answered = c.fetch_records(&asked, 1 << 20, 0).ok()?;
    if answered.first()?.error.is_some() {
        return None;
    }
    Some(read_all(c, target))
}

/// A compacted topic of one partition on the node, 1 MiB segments; returns it and
/// the directory of its log files.
fn create_compacted(
    server: &Server,
    c: &mut commitlog::client::Client,
    name: &str,
) -> (TopicPartition, std::path::PathBuf) {
    let settings = TopicSettings {
        partitions: 1,
        replication: 1,
        segment_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
        cleanup_policy: 1,
        ..TopicSettings::default()
    };
    let d = c.create_topic(name, settings).expect("create");
    let group = d.partitions[0].group.0;
    let dir = server.data_dir().join("groups").join(group.to_string());
    (TopicPartition::new(name, 0), dir)
}

/// Base offsets of the segments under `dir` (files `<base, 20 digits>.store`).
fn segment_bases(dir: &std::path::Path) -> Vec<u64> {
    let mut bases = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    // Bounded: a group directory is a couple of levels deep.
    for _ in 0..4 {
        let mut deeper = Vec::new();
        for d in dirs {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    deeper.push(path);
                } else if let Some(base) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".store"))
                    .filter(|b| b.len() == 20)
                    .and_then(|b| b.parse::<u64>().ok())
                {
                    bases.push(base);
                }
            }
        }
        dirs = deeper;
    }
    bases.sort_unstable();
    bases
}

/// Stores `group`'s cursor of `target` at `offset` (the next offset it reads).
fn commit_cursor(
    c: &mut commitlog::client::Client,
    group: &str,
    target: &TopicPartition,
    offset: u64,
) {
    let answer = c
        .group_call(GroupRequest::CommitOffset {
            group: group.to_string(),
            offsets: vec![OffsetCommit {
                target: target.clone(),
                offset,
                metadata: Vec::new(),
            }],
        })
        .expect("commit offset");
    match answer {
        GroupResponse::CommitOffset(results) => {
            assert_eq!(results.len(), 1);
            assert_eq!(results[0].error, ErrorCode::None, "{results:?}");
        }
        other => panic!("CommitOffset answered {other:?}"),
    }
}

/// Reads `target` until `done` holds for two reads in a row (a read of many
/// fetches that a compaction pass overtook mixes the log before and after it);
/// panics after 60 s.
fn wait_read(
    c: &mut commitlog::client::Client,
    target: &TopicPartition,
    what: &str,
    done: impl Fn(&[u64]) -> bool,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous: Vec<ConsumedRecord> = Vec::new();
    loop {
        let visible = read_all(c, target);
        let offsets: Vec<u64> = visible.iter().map(|r| r.offset.0).collect();
        if done(&offsets) && visible == previous {
            return visible;
        }
        previous = visible;
        assert!(
            Instant::now() < deadline,
            "{target}: not {what} within 60 s ({} records visible)",
            previous.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What compaction below `cursor` leaves of `produced` (everything produced is
/// below it): segments are rewritten whole, so the one holding `cursor` (from
/// `straddling_base`) keeps all its records below the cursor; below that, the
/// newest record of each key there.
fn expected_below_cursor(produced: &Produced, straddling_base: u64) -> Vec<u64> {
    let mut newest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (offset, (key, _)) in produced.range(..straddling_base) {
        newest.insert(key, *offset);
    }
    let mut kept: Vec<u64> = newest.into_values().collect();
    kept.extend(produced.range(straddling_base..).map(|(o, _)| *o));
    kept.sort_unstable();
    kept
}

#[test]
fn compaction_never_passes_the_lowest_consumer_cursor() {
    let server = Server::start(&["--compact-interval-ms", "100"]);
    let mut c = server.client();
    let (kv, kv_dir) = create_compacted(&server, &mut c, "kv");
    let first_half = produce_keyed_batches(0..40, |batch| {
        c.produce_records(&kv, batch).expect("produce")
    });
    // Group `slow` has read the first half (before anything after it is sealed);
    // group `fast` is past everything produced: the lower one bounds compaction.
    let cursor = first_half.keys().last().unwrap() + 1;
    commit_cursor(&mut c, "slow", &kv, cursor);
    let second_half = produce_keyed_batches(40..80, |batch| {
        c.produce_records(&kv, batch).expect("produce")
    });
    let end = second_half.keys().last().unwrap() + 1;
    commit_cursor(&mut c, "fast", &kv, end);
    let straddling_base = segment_bases(&kv_dir)
        .into_iter()
        .filter(|b| *b <= cursor)
        .max()
        .expect("kv has segments");
    assert!(
        segment_bases(&kv_dir)
            .iter()
            .filter(|b| **b > cursor)
            .count()
            >= 2,
        "the second half fills sealed segments: {:?}",
        segment_bases(&kv_dir)
    );

    // A topic without cursors, produced after kv: once it is compacted, the
    // compactor (which visits every compacted partition each tick) has also run
    // on kv with all of kv's segments above written and sealed.
    let (free, _) = create_compacted(&server, &mut c, "free");
    let free_produced = produce_keyed(|batch| c.produce_records(&free, batch).expect("produce"));
    let compacted_free = wait_compacted(&mut c, &free, &free_produced, |_| true);
    check_compacted(&compacted_free, &free_produced);

    // Below the cursor: the newest record of each key (in whole segments).
    let mut expected = expected_below_cursor(&first_half, straddling_base);
    // At or above it: every record, older duplicates of a key included.
    expected.extend(second_half.keys());
    let mut produced = first_half.clone();
    produced.extend(second_half.clone());
    // Records that are gone stay gone, so the wait ends once the compactor has
    // removed all it may below the cursor; a removal at or above it fails below.
    let visible = wait_read(&mut c, &kv, "compacted below the cursor", |offsets| {
        offsets.len() <= expected.len()
    });
    let offsets: Vec<u64> = visible.iter().map(|r| r.offset.0).collect();
    assert_eq!(
        offsets.iter().filter(|o| **o >= cursor).count(),
        second_half.len(),
        "a record the slow group has not read was removed"
    );
    assert_eq!(offsets, expected);
    check_compacted(&visible, &produced);

    // The slow group reads to the end: the older duplicates above its old cursor
    // are compacted too.
    commit_cursor(&mut c, "slow", &kv, end);
    let visible = wait_read(&mut c, &kv, "compacted above the old cursor", |offsets| {
        offsets.iter().filter(|o| **o >= cursor).count() < second_half.len() / 2
    });
    check_compacted(&visible, &produced);
}
