//! Tests of key-based compaction (`storage/compact.rs`): what is removed and what
//! stays, the placeholder invariant, the floor, tombstone expiry, the bounded key
//! map, crash safety of a rewrite, and that a compacted segment scrubs clean and
//! heals a peer.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::compact::{compact_pass, PassParams, PassReport, KEY_ENTRY_OVERHEAD_BYTES};
use super::tests::TempDir;
use super::*;
use crate::records::{RecordV1, Timestamp, TimestampSource};

/// ~10 records per segment.
fn config() -> LogConfig {
    LogConfig {
        max_store_bytes: 700,
        max_index_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Records 0..RECORDS: every 11th is keyless, every 13th a v0 record, every 17th a
/// no-op, every 5th (of the others) an idempotent batch's first record (the v1
/// payload, then its producer header); the others have key `k{i % KEYS}`, but
/// TOMB_OLD and TOMB (a tombstone) have key `tomb`.
const RECORDS: u64 = 300;
const KEYS: u64 = 7;
const TOMB: u64 = 150;
/// Timestamp of record `i`: `BASE_MS + i`.
const BASE_MS: i64 = 1_700_000_000_000;

/// An older record of the tombstone's key.
const TOMB_OLD: u64 = 40;

fn key_of(i: u64) -> Option<Vec<u8>> {
    if i == TOMB || i == TOMB_OLD {
        return Some(b"tomb".to_vec());
    }
    (!i.is_multiple_of(11)).then(|| format!("k{}", i % KEYS).into_bytes())
}

fn kind_of(i: u64) -> RecordKind {
    if i.is_multiple_of(17) {
        RecordKind::NoOp
    } else if i.is_multiple_of(13) {
        RecordKind::Data
    } else if i.is_multiple_of(5) {
        RecordKind::DataV1Batch
    } else {
        RecordKind::DataV1
    }
}

fn is_v1(i: u64) -> bool {
    matches!(kind_of(i), RecordKind::DataV1 | RecordKind::DataV1Batch)
}

/// Record `i`'s producer batch header (when it is a batch start).
fn batch_header(i: u64) -> Vec<u8> {
    vec![i as u8; crate::records::PRODUCER_HEADER_BYTES]
}

fn payload(i: u64) -> Vec<u8> {
    match kind_of(i) {
        RecordKind::DataV1 | RecordKind::DataV1Batch => {
            let value = if i == TOMB {
                Vec::new()
            } else {
                format!("value-{i}").into_bytes()
            };
            let record = RecordV1 {
                timestamp: Timestamp {
                    unix_ms: BASE_MS + i as i64,
                    source: TimestampSource::Producer,
                },
                key: key_of(i),
                headers: Vec::new(),
                value,
            };
            let mut out = Vec::new();
            record.encode_into(&mut out).unwrap();
            if kind_of(i) == RecordKind::DataV1Batch {
                out.extend_from_slice(&batch_header(i));
            }
            out
        }
        RecordKind::NoOp => Vec::new(),
        _ => format!("v0-{i}").into_bytes(),
    }
}

fn original(i: u64) -> Record {
    Record {
        offset: Offset(i),
        term: Term(1 + i / 40),
        kind: kind_of(i),
        value: payload(i),
    }
}

fn filled_log(dir: &Path) -> Log {
    let log = Log::open(dir, config()).unwrap();
    let all: Vec<Record> = (0..RECORDS).map(original).collect();
    for chunk in all.chunks(25) {
        let batch: Vec<NewRecord<'_>> = chunk
            .iter()
            .map(|r| NewRecord {
                term: r.term,
                kind: r.kind,
                value: &r.value,
            })
            .collect();
        log.append_batch(&batch).unwrap();
    }
    log.sync().unwrap();
    assert!(log.segment_count() > 10, "many segments");
    log
}

fn sealed_end(log: &Log) -> u64 {
    log.sealed_segments().last().map(|s| s.1).unwrap()
}

fn params(floor: u64, now_ms: i64) -> PassParams {
    PassParams {
        from: Offset(0),
        floor: Offset(floor),
        now_ms,
        tombstone_retention_ms: 1000,
        key_map_bytes: 1 << 20,
    }
}

/// What a compaction below `floor` must leave at each offset (the model):
/// `true` = replaced by a placeholder.
fn model_removed(floor: u64, expire_tombstone: bool) -> Vec<bool> {
    let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();
    for i in 0..floor {
        if is_v1(i) {
            if let Some(k) = key_of(i) {
                newest.insert(k, i);
            }
        }
    }
    (0..RECORDS)
        .map(|i| {
            let Some(k) = key_of(i).filter(|_| is_v1(i)) else {
                return false;
            };
            match newest.get(&k) {
                Some(&n) if n > i => true,
                Some(&n) if n == i && i == TOMB => expire_tombstone,
                _ => false,
            }
        })
        .collect()
}

/// `r` is compaction's placeholder of record `i`: an empty no-op, or a batch
/// start's header alone.
fn is_placeholder(r: &Record, i: u64) -> bool {
    let (kind, value) = match kind_of(i) {
        RecordKind::DataV1Batch => (RecordKind::CompactedBatchStart, batch_header(i)),
        _ => (RecordKind::NoOp, Vec::new()),
    };
    r.offset == Offset(i) && r.term == original(i).term && r.kind == kind && r.value == value
}

/// Every offset holds the original or, where the model says, its placeholder.
fn check_against_model(log: &Log, removed: &[bool]) {
    let read = log.read_range(Offset(0), u64::MAX).unwrap();
    assert_eq!(
        read.len() as u64,
        RECORDS,
        "every offset still has a record"
    );
    for (i, r) in (0..RECORDS).zip(&read) {
        if removed[i as usize] {
            assert!(
                is_placeholder(r, i),
                "offset {i} should be a placeholder: {r:?}"
            );
        } else {
            assert_eq!(*r, original(i), "offset {i} kept as it was");
        }
    }
}

fn count(removed: &[bool]) -> u64 {
    removed.iter().filter(|&&r| r).count() as u64
}

#[test]
fn newest_per_key_is_kept_and_offsets_and_terms_never_change() {
    let dir = TempDir::new("compact-newest");
    let log = filled_log(dir.path());
    let floor = sealed_end(&log);
    assert!(floor > TOMB + 20 && floor < RECORDS);
    let size_before = log.size_bytes();
    let report = compact_pass(&log, &params(floor, BASE_MS)).unwrap();
    let removed = model_removed(floor, false);
    assert!(
        count(&removed) > 100,
        "the model removes most keyed records"
    );
    assert_eq!(report.records_removed, count(&removed));
    assert_eq!(report.scanned_to, Offset(floor));
    assert_eq!(report.keys, KEYS + 1);
    assert_eq!(report.tombstones_removed, 0);
    assert!(report.bytes_after < report.bytes_before);
    assert!(log.size_bytes() < size_before);
    check_against_model(&log, &removed);
    // A second pass finds nothing more; the log reopens the same.
    let again = compact_pass(&log, &params(floor, BASE_MS)).unwrap();
    assert_eq!(again.records_removed, 0);
    log.close().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    check_against_model(&log, &removed);
}

#[test]
fn the_floor_is_respected() {
    let dir = TempDir::new("compact-floor");
    let log = filled_log(dir.path());
    // A floor inside the sealed range: a record whose newer key lies at or above it
    // stays, and so does everything from the floor on.
    let floor = 95;
    let report = compact_pass(&log, &params(floor, BASE_MS)).unwrap();
    assert!(report.scanned_to.0 <= floor);
    let removed = model_removed(report.scanned_to.0, false);
    for i in report.scanned_to.0..RECORDS {
        assert!(!removed[i as usize]);
    }
    check_against_model(&log, &removed);
    // Nothing at all below a floor at the first offset.
    let dir2 = TempDir::new("compact-floor0");
    let log2 = filled_log(dir2.path());
    let none = compact_pass(&log2, &params(0, BASE_MS)).unwrap();
    assert_eq!(none, PassReport::default());
    check_against_model(&log2, &[false; RECORDS as usize]);
}

#[test]
fn tombstones_expire_after_their_retention_and_only_then() {
    let dir = TempDir::new("compact-tomb");
    let log = filled_log(dir.path());
    let floor = sealed_end(&log);
    // The tombstone is the newest of its key below the floor only if no later
    // record of its key lies below it: check the model's premise.
    let tomb_key = key_of(TOMB).unwrap();
    assert!(
        (TOMB + 1..floor).all(|i| key_of(i) != Some(tomb_key.clone()) || !is_v1(i)),
        "premise: TOMB is its key's newest"
    );
    let tomb_ms = BASE_MS + TOMB as i64;
    let young = compact_pass(&log, &params(floor, tomb_ms + 999)).unwrap();
    assert_eq!(young.tombstones_removed, 0);
    assert_eq!(young.tombstone_due_ms, Some(tomb_ms + 1000));
    check_against_model(&log, &model_removed(floor, false));
    let old = compact_pass(&log, &params(floor, tomb_ms + 1000)).unwrap();
    assert_eq!(old.tombstones_removed, 1);
    assert_eq!(old.records_removed, 1);
    assert_eq!(old.tombstone_due_ms, None);
    check_against_model(&log, &model_removed(floor, true));
    assert!(is_placeholder(
        &log.read(Offset(TOMB_OLD)).unwrap(),
        TOMB_OLD
    ));
}

#[test]
fn a_small_key_map_compacts_in_several_passes_to_the_same_result() {
    let dir = TempDir::new("compact-passes");
    let log = filled_log(dir.path());
    let floor = sealed_end(&log);
    let mut p = params(floor, BASE_MS);
    // Room for two keys of 2 bytes.
    p.key_map_bytes = 2 * (2 + KEY_ENTRY_OVERHEAD_BYTES);
    let mut passes = 0;
    while p.from.0 < floor {
        let report = compact_pass(&log, &p).unwrap();
        assert!(report.keys <= 2, "the bound holds: {report:?}");
        assert!(report.scanned_to > p.from, "every pass progresses");
        p.from = report.scanned_to;
        passes += 1;
        assert!(passes < 1000);
    }
    assert!(passes > 3, "{passes} passes");
    // Superseded records are gone as in one pass (the last pass's map covers the
    // newest record of every key).
    let removed = model_removed(floor, false);
    let read = log.read_range(Offset(0), u64::MAX).unwrap();
    for (i, r) in (0..RECORDS).zip(&read) {
        if !removed[i as usize] {
            assert_eq!(*r, original(i), "offset {i} kept");
        }
    }
    // A final round from the start (what the compactor does once at the floor)
    // reaches exactly the one-pass result.
    p.from = Offset(0);
    while p.from.0 < floor {
        p.from = compact_pass(&log, &p).unwrap().scanned_to;
    }
    check_against_model(&log, &removed);
}

/// Copies the files of a closed log.
fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_crash_at_each_step_of_a_rewrite_leaves_the_old_or_the_new_segment() {
    // The original log, and the same log compacted; the first rewritten segment's
    // new files stand in for what a crash leaves at each step.
    let before = TempDir::new("compact-crash-before");
    filled_log(before.path()).close().unwrap();
    let after = TempDir::new("compact-crash-after");
    copy_dir(before.path(), after.path());
    let log = Log::open(after.path(), config()).unwrap();
    let floor = sealed_end(&log);
    compact_pass(&log, &params(floor, BASE_MS)).unwrap();
    let compacted = log.read_range(Offset(0), u64::MAX).unwrap();
    log.close().unwrap();
    let base = 0u64;
    let name = |ext: &str| format!("{base:020}.{ext}");
    assert_ne!(
        fs::metadata(before.path().join(name("store")))
            .unwrap()
            .len(),
        fs::metadata(after.path().join(name("store")))
            .unwrap()
            .len(),
        "the first segment was rewritten"
    );
    // (temps written, marker?, store renamed?, index renamed?) → new segment?
    let steps = [
        (false, false, false, false),
        (true, false, false, false),
        (true, true, false, false),
        (true, true, true, false),
        (true, true, true, true),
    ];
    for (k, &(temps, marker, store, index)) in steps.iter().enumerate() {
        let dir = TempDir::new(&format!("compact-crash-{k}"));
        copy_dir(before.path(), dir.path());
        for (ext, renamed) in [("store", store), ("index", index)] {
            let new = after.path().join(name(ext));
            let target = if renamed {
                dir.path().join(name(ext))
            } else {
                dir.path().join(format!("{}.tmp", name(ext)))
            };
            if temps {
                fs::copy(&new, &target).unwrap();
            }
        }
        if marker {
            fs::write(dir.path().join(name("swap")), b"").unwrap();
        }
        let reopened = Log::open(dir.path(), config()).unwrap();
        let read = reopened.read_range(Offset(0), u64::MAX).unwrap();
        let first_end = sealed_first_end(&reopened);
        for (i, r) in (0..RECORDS).zip(&read) {
            let want = if i < first_end && marker {
                compacted[i as usize].clone()
            } else {
                original(i)
            };
            assert_eq!(*r, want, "step {k}, offset {i}");
        }
        assert_eq!(read.len() as u64, RECORDS, "step {k}");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp") || n.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "step {k}: {leftovers:?}");
    }
}

fn sealed_first_end(log: &Log) -> u64 {
    log.sealed_segments()[0].1
}

#[test]
fn a_compacted_segment_scrubs_clean_and_heals_a_peer() {
    let ours = TempDir::new("compact-heal-ours");
    let peer = TempDir::new("compact-heal-peer");
    filled_log(peer.path()).close().unwrap();
    copy_dir(peer.path(), ours.path());
    let log = std::sync::Arc::new(Log::open(ours.path(), config()).unwrap());
    let floor = sealed_end(&log);
    let report = compact_pass(&log, &params(floor, BASE_MS)).unwrap();
    assert!(report.segments_rewritten > 5);
    let mut scrubber = scrub::Scrubber::new(std::sync::Arc::clone(&log));
    let faults = scrubber.step(u64::MAX);
    assert!(faults.is_empty(), "{faults:?}");
    // The peer (not compacted) damages a record of its second segment; our
    // compacted copy of that segment heals it.
    let (base, next, _) = log.sealed_segments()[1];
    let store = peer.path().join(format!("{base:020}.store"));
    let mut bytes = fs::read(&store).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    fs::write(&store, &bytes).unwrap();
    let (peer_log, _) = Log::open_for_replica(peer.path(), config()).unwrap();
    assert!(
        (base..next).any(|i| peer_log.read(Offset(i)).is_err()),
        "damaged"
    );
    let supplied = log.read_range(Offset(base), u64::MAX).unwrap();
    let supplied: Vec<Record> = supplied.into_iter().filter(|r| r.offset.0 < next).collect();
    peer_log.rebuild_sealed(Offset(base), &supplied).unwrap();
    for i in base..next {
        let r = peer_log.read(Offset(i)).unwrap();
        assert!(
            r == original(i) || is_placeholder(&r, i),
            "offset {i}: {r:?}"
        );
    }
    // The other way: our compacted segment takes a peer's original records as
    // equal (same term) and keeps its placeholders.
    let originals: Vec<Record> = (base..next).map(original).collect();
    log.rebuild_sealed(Offset(base), &originals).unwrap();
    for i in base..next {
        let r = log.read(Offset(i)).unwrap();
        assert_eq!(r, supplied[(i - base) as usize], "offset {i} as compacted");
    }
}

#[test]
fn a_compacted_segment_keeps_its_age_for_retention() {
    let dir = TempDir::new("compact-age");
    let log = filled_log(dir.path());
    let store = dir.path().join(format!("{:020}.store", 0));
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(&store)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let len_before = fs::metadata(&store).unwrap().len();
    let report = compact_pass(&log, &params(sealed_end(&log), BASE_MS)).unwrap();
    assert!(report.segments_rewritten > 0);
    let len_after = fs::metadata(&store).unwrap().len();
    assert!(len_after < len_before, "rewritten");
    assert_eq!(fs::metadata(&store).unwrap().modified().unwrap(), old);
}

/// Compaction throughput (BENCHMARKS.md): a log of `COMPACT_BENCH_MB` MiB (default
/// 1024) of 1 KiB keyed v1 records over `COMPACT_BENCH_KEYS` keys (default 10,000)
/// in 64 MiB segments, compacted by passes from the start until the key map has
/// covered the sealed range. Prints the numbers; asserts only that the newest
/// record of a key is kept. Run:
/// `cargo test --lib compaction_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn compaction_throughput() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let total_mb = env("COMPACT_BENCH_MB", 1024);
    let keys = env("COMPACT_BENCH_KEYS", 10_000);
    let dir = TempDir::new("compact-bench");
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let value = vec![7u8; 1000];
    let records = total_mb * 1024 * 1024 / 1060;
    let started = std::time::Instant::now();
    let mut batch_bytes = Vec::new();
    for chunk in 0..records.div_ceil(1000) {
        batch_bytes.clear();
        for i in chunk * 1000..((chunk + 1) * 1000).min(records) {
            let record = RecordV1 {
                timestamp: Timestamp {
                    unix_ms: BASE_MS + i as i64,
                    source: TimestampSource::Producer,
                },
                key: Some(format!("key-{:08}", i % keys).into_bytes()),
                headers: Vec::new(),
                value: value.clone(),
            };
            let mut out = Vec::new();
            record.encode_into(&mut out).unwrap();
            batch_bytes.push(out);
        }
        let batch: Vec<NewRecord<'_>> = batch_bytes
            .iter()
            .map(|v| NewRecord {
                term: Term(1),
                kind: RecordKind::DataV1,
                value: v,
            })
            .collect();
        log.append_batch(&batch).unwrap();
    }
    log.sync().unwrap();
    let size_before = log.size_bytes();
    println!(
        "wrote {records} records, {} MiB in {:?}",
        size_before >> 20,
        started.elapsed()
    );
    let floor = sealed_end(&log);
    let mut p = PassParams {
        from: Offset(0),
        floor: Offset(floor),
        now_ms: BASE_MS,
        tombstone_retention_ms: 1000,
        key_map_bytes: compact::DEFAULT_KEY_MAP_BYTES,
    };
    let started = std::time::Instant::now();
    let mut total = PassReport::default();
    let mut passes = 0;
    while p.from.0 < floor {
        let r = compact_pass(&log, &p).unwrap();
        p.from = r.scanned_to;
        passes += 1;
        total.records_removed += r.records_removed;
        total.segments_rewritten += r.segments_rewritten;
        total.bytes_read += r.bytes_read;
        total.bytes_before += r.bytes_before;
        total.bytes_after += r.bytes_after;
    }
    let secs = started.elapsed().as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "compacted {:.0} MiB below the floor in {secs:.2} s ({passes} passes): {:.0} MiB/s of log; \
         read {:.0} MiB ({:.0} MiB/s); {} records removed, {} segments rewritten \
         {:.0} -> {:.1} MiB; log {:.0} -> {:.0} MiB",
        mib(total.bytes_before.max(1)),
        mib(size_before) / secs,
        mib(total.bytes_read),
        mib(total.bytes_read) / secs,
        total.records_removed,
        total.segments_rewritten,
        mib(total.bytes_before),
        mib(total.bytes_after),
        mib(size_before),
        mib(log.size_bytes()),
    );
    let last = log.read(Offset(floor - 1)).unwrap();
    assert_eq!(
        last.kind,
        RecordKind::DataV1,
        "the newest of its key is kept"
    );
}
