//! Tests of offsets by time ([`Log::offset_for_timestamp`]) and retention by
//! record time over whole logs: answers equal a brute-force scan across segments,
//! with out-of-order timestamps, v0 and internal records; damaged, missing and
//! stale `.timeindex` files are rebuilt; truncation and retention forget what
//! they cut.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::tests::TempDir;
use super::*;
use crate::records::{RecordV1, Timestamp, TimestampSource};

/// Segments of 16 KiB: several index entries each, many segments.
fn config() -> LogConfig {
    LogConfig {
        max_store_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

/// A DataV1 payload with this timestamp and a value of `len` bytes.
fn v1_payload(ts_ms: i64, len: usize) -> Vec<u8> {
    let record = RecordV1 {
        timestamp: Timestamp {
            unix_ms: ts_ms,
            source: TimestampSource::Producer,
        },
        key: None,
        headers: Vec::new(),
        value: vec![7u8; len],
    };
    let mut out = Vec::new();
    record.encode_into(&mut out).unwrap();
    out
}

/// What record `i` of a test log is: a DataV1 with a timestamp, or none.
#[derive(Clone, Copy, Debug)]
enum Shape {
    V1(i64),
    V0,
    Internal,
}

/// Mostly rising timestamps from `t0`, with some going back, v0 and no-op records.
fn shapes(n: u64, t0: i64) -> Vec<Shape> {
    (0..n as i64)
        .map(|i| match i % 11 {
            3 => Shape::V0,
            8 => Shape::Internal,
            5 => Shape::V1(t0 + i * 10 - 700),
            _ => Shape::V1(t0 + i * 10),
        })
        .collect()
}

/// Appends `shapes` (from the log's next offset) in batches of 7.
fn append(log: &Log, shapes: &[Shape]) {
    for chunk in shapes.chunks(7) {
        let values: Vec<(RecordKind, Vec<u8>)> = chunk
            .iter()
            .enumerate()
            .map(|(k, s)| match *s {
                Shape::V1(ts) => (RecordKind::DataV1, v1_payload(ts, 150 + k * 13)),
                Shape::V0 => (RecordKind::Data, vec![1u8; 90]),
                Shape::Internal => (RecordKind::NoOp, Vec::new()),
            })
            .collect();
        let records: Vec<NewRecord<'_>> = values
            .iter()
            .map(|(kind, v)| NewRecord {
                term: Term(1),
                kind: *kind,
                value: v,
            })
            .collect();
        log.append_batch(&records).unwrap();
    }
}

/// The first offset from `base` with timestamp ≥ ts below `end`, by brute force.
fn brute(base: u64, shapes: &[Shape], ts: i64, end: u64) -> Option<(Offset, i64)> {
    shapes.iter().enumerate().find_map(|(i, s)| match *s {
        Shape::V1(t) if t >= ts && base + (i as u64) < end => Some((Offset(base + i as u64), t)),
        _ => None,
    })
}

fn check_all(log: &Log, base: u64, shapes: &[Shape], t0: i64) {
    let end = log.next_offset().0;
    let last = t0 + shapes.len() as i64 * 10;
    for ts in (t0 - 1_000..last + 50)
        .step_by(97)
        .chain([i64::MIN, i64::MAX])
    {
        let got = log.offset_for_timestamp(ts, Offset(end)).unwrap();
        assert_eq!(got, brute(base, shapes, ts, end), "ts {ts}");
    }
}

fn timeindex_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "timeindex"))
        .collect();
    files.sort();
    files
}

#[test]
fn lookups_match_a_full_scan_across_segments_and_reopens() {
    let dir = TempDir::new("time-lookup");
    let log = Log::open(dir.path(), config()).unwrap();
    let t0 = 1_700_000_000_000;
    let shapes = shapes(1_500, t0);
    append(&log, &shapes);
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());
    check_all(&log, 0, &shapes, t0);
    // The commit bound: nothing at or past it is answered.
    let (hit, _) = brute(0, &shapes, t0 + 5_000, u64::MAX).unwrap();
    assert_eq!(log.offset_for_timestamp(t0 + 5_000, hit).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(t0, Offset(0)).unwrap(), None);
    log.sync().unwrap();
    let sealed = log.segment_count() - 1;
    assert_eq!(
        timeindex_files(dir.path()).len(),
        sealed,
        "one file per sealed segment"
    );
    log.close().unwrap();
    // Reopened: the files are used (and still right); the active one is rebuilt.
    let log = Log::open(dir.path(), config()).unwrap();
    check_all(&log, 0, &shapes, t0);
    // Appends after a lookup are found by the next one.
    let more = shapes_from(t0 + 1_000_000, 300);
    append(&log, &more);
    let mut all = shapes.clone();
    all.extend(more);
    check_all(&log, 0, &all, t0);
}

fn shapes_from(t0: i64, n: u64) -> Vec<Shape> {
    shapes(n, t0)
}

#[test]
fn damaged_missing_and_stale_time_indexes_are_rebuilt() {
    let dir = TempDir::new("time-damage");
    let log = Log::open(dir.path(), config()).unwrap();
    let t0 = 1_000_000;
    let shapes = shapes(1_000, t0);
    append(&log, &shapes);
    check_all(&log, 0, &shapes, t0);
    log.close().unwrap();
    let files = timeindex_files(dir.path());
    assert!(files.len() >= 6);
    // A flipped byte, a torn file, a missing one, another segment's file.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[60] ^= 0x10;
    std::fs::write(&files[0], &bytes).unwrap();
    let torn = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &torn[..torn.len() / 2]).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    std::fs::copy(&files[4], &files[3]).unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    check_all(&log, 0, &shapes, t0);
    for file in &files[..4] {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            timeindex::decode(&bytes).is_ok(),
            "{} rewritten",
            file.display()
        );
    }
    assert_ne!(
        std::fs::read(&files[3]).unwrap(),
        std::fs::read(&files[4]).unwrap()
    );
}

#[test]
fn truncation_forgets_what_it_cut() {
    let dir = TempDir::new("time-truncate");
    let log = Log::open(dir.path(), config()).unwrap();
    let t0 = 5_000_000;
    let shapes = shapes(1_000, t0);
    append(&log, &shapes);
    check_all(&log, 0, &shapes, t0);
    log.sync().unwrap();
    // Cut into a sealed segment, then write other times over the same offsets.
    let keep = 400;
    log.truncate_suffix(Some(Offset(keep - 1))).unwrap();
    let other = shapes_from(t0 - 3_000_000, 600);
    append(&log, &other);
    log.sync().unwrap();
    let mut now: Vec<Shape> = shapes[..keep as usize].to_vec();
    now.extend(other);
    check_all(&log, 0, &now, t0 - 3_000_000);
    check_all(&log, 0, &now, t0);
    // Cut inside the active segment only.
    let end = log.next_offset().0;
    log.truncate_suffix(Some(Offset(end - 3))).unwrap();
    now.truncate(now.len() - 2);
    let newer = shapes_from(t0 + 9_000_000, 5);
    append(&log, &newer);
    now.extend(newer);
    check_all(&log, 0, &now, t0 + 9_000_000);
    // Prefix removal deletes the files of what it removed; lookups start later.
    let before = timeindex_files(dir.path()).len();
    log.truncate_prefix(Offset(300)).unwrap();
    let first = log.first_offset().0;
    assert!(first > 0);
    assert!(timeindex_files(dir.path()).len() < before);
    let rest = &now[first as usize..];
    check_all(&log, first, rest, t0);
}

#[test]
fn a_reset_log_forgets_every_time() {
    let dir = TempDir::new("time-reset");
    let log = Log::open(dir.path(), config()).unwrap();
    append(&log, &shapes(200, 1_000));
    assert!(log.offset_for_timestamp(0, Offset(200)).unwrap().is_some());
    log.reset(Offset(500)).unwrap();
    assert_eq!(log.offset_for_timestamp(0, Offset(u64::MAX)).unwrap(), None);
    let fresh = shapes(50, 90_000);
    append(&log, &fresh);
    check_all(&log, 500, &fresh, 90_000);
    assert!(timeindex_files(dir.path()).is_empty());
}

/// Unix ms of `t`.
fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn retention_by_age_counts_from_record_time_capped_at_the_file() {
    let dir = TempDir::new("time-retention");
    let hour = Duration::from_secs(3_600);
    let log = Log::open(
        dir.path(),
        LogConfig {
            retention_age: Some(hour),
            ..config()
        },
    )
    .unwrap();
    let now = SystemTime::now();
    // Records from two days ago, then from the far future, then from now.
    let old = shapes(300, ms(now) - 48 * 3_600_000);
    append(&log, &old);
    log.sync().unwrap();
    let old_end = log.next_offset().0;
    // Roll so the old records are all in sealed segments.
    let future = shapes(300, ms(now) + 1_000 * 86_400_000);
    append(&log, &future);
    append(&log, &shapes(300, ms(now)));
    log.sync().unwrap();
    let freed = log.apply_retention(now).unwrap();
    assert!(
        freed > 0,
        "two-day-old records expired though their files are new"
    );
    let first = log.first_offset().0;
    assert!(
        first <= old_end,
        "segments with future records stay ({first} > {old_end})"
    );
    assert!(
        old_end - first < 150,
        "most of the old records went: first {first}, old end {old_end}"
    );
    // The future timestamps are capped at the files' time: two hours on, they go.
    log.apply_retention(now + 2 * hour).unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "all sealed segments older than an hour"
    );
}

#[test]
fn v0_segments_age_from_their_files() {
    let dir = TempDir::new("time-retention-v0");
    let hour = Duration::from_secs(3_600);
    let log = Log::open(
        dir.path(),
        LogConfig {
            retention_age: Some(hour),
            ..config()
        },
    )
    .unwrap();
    let v0: Vec<Shape> = (0..500).map(|_| Shape::V0).collect();
    append(&log, &v0);
    log.sync().unwrap();
    let now = SystemTime::now();
    assert_eq!(log.apply_retention(now).unwrap(), 0);
    assert_eq!(
        log.offset_for_timestamp(i64::MIN, Offset(500)).unwrap(),
        None
    );
    assert!(log.apply_retention(now + 2 * hour).unwrap() > 0);
    assert_eq!(log.segment_count(), 1);
}

/// Descriptors of this process open on files in `dir`.
fn fds_in(dir: &Path) -> usize {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

#[test]
fn an_idle_log_holds_no_time_index_file_open() {
    let dir = TempDir::new("time-idle");
    let log = Log::open(dir.path(), config()).unwrap();
    let shapes = shapes(600, 1_000);
    append(&log, &shapes);
    check_all(&log, 0, &shapes, 1_000);
    log.release_idle_files().unwrap();
    assert_eq!(fds_in(dir.path()), 1, "only LOCK");
    // Lookups on the idle log open what they read for the call only.
    check_all(&log, 0, &shapes, 1_000);
    log.release_idle_files().unwrap();
    assert_eq!(fds_in(dir.path()), 1, "only LOCK");
}

#[test]
fn the_retention_point_never_reads_a_segment_and_the_builder_catches_up() {
    let dir = TempDir::new("time-retention-point");
    let hour = Duration::from_secs(3_600);
    let cfg = LogConfig {
        retention_age: Some(hour),
        ..config()
    };
    let now = SystemTime::now();
    {
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        // Two-day-old records in sealed segments, then recent ones.
        append(&log, &shapes(300, ms(now) - 48 * 3_600_000));
        append(&log, &shapes(300, ms(now)));
        log.sync().unwrap();
    }
    // A restart without the `.timeindex` files (as after an upgrade): the sealed
    // segments' record times are not known without reading them.
    for f in timeindex_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let log = Log::open(dir.path(), cfg).unwrap();
    let first = log.first_offset();
    assert!(log.segment_count() > 2);
    assert_eq!(
        log.retention_point(now).unwrap(),
        first,
        "the files are new: without reading, nothing is old enough"
    );
    assert!(
        timeindex_files(dir.path()).is_empty(),
        "no segment was read"
    );
    // The background builder reads one segment per call until all are known.
    let mut built = 0;
    while log.build_time_index().unwrap() {
        built += 1;
        assert!(built < 100, "bounded by the segment count");
    }
    assert!(built > 0);
    assert!(
        log.retention_point(now).unwrap() > first,
        "with the record times known, the two-day-old segments go"
    );
}
