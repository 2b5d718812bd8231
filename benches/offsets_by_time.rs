//! Offsets by time over one big partition log (storage level, no network): how
//! long `Log::offset_for_timestamp` takes cold (no `.timeindex` file yet: the
//! segments before the answer are read once to build them), after a reopen (the
//! files are loaded), and warm (indexes cached per segment), and the time to the
//! first record from a time versus from an offset. Run with
//! `cargo bench --bench offsets_by_time`. Prints numbers; asserts nothing.
//!
//! Environment: `COMMITLOG_BENCH_DIR` (default `target/bench-time`), and
//! `COMMITLOG_BENCH_MB` (MiB of record values, default 1024). Records are DataV1
//! payloads of 1 KiB with timestamps 1 ms apart, out of order by up to 50 ms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use commitlog::records::{RecordV1, Timestamp, TimestampSource};
use commitlog::storage::{Log, LogConfig, NewRecord, Offset, RecordKind, Term};

const VALUE_BYTES: usize = 1024;
const T0_MS: i64 = 1_796_551_200_000;

fn payload(ts: i64) -> Vec<u8> {
    let record = RecordV1 {
        timestamp: Timestamp {
            unix_ms: ts,
            source: TimestampSource::Leader,
        },
        key: None,
        headers: Vec::new(),
        value: vec![b'x'; VALUE_BYTES],
    };
    let mut out = Vec::new();
    record.encode_into(&mut out).expect("within limits");
    out
}

/// Timestamp of record i: rising 1 ms per record, some up to 50 ms early.
fn ts_of(i: u64) -> i64 {
    T0_MS + i as i64 - if i % 7 == 3 { 50 } else { 0 }
}

fn fill(log: &Log, records: u64) {
    let mut i = 0;
    while i < records {
        let end = (i + 1000).min(records);
        let values: Vec<Vec<u8>> = (i..end).map(|k| payload(ts_of(k))).collect();
        let batch: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                term: Term(1),
                kind: RecordKind::DataV1,
                value: v,
            })
            .collect();
        log.append_batch(&batch).expect("append");
        i = end;
    }
    log.sync().expect("sync");
}

fn quantiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "median {:?}, p99 {:?}, max {:?} ({} lookups)",
        at(0.5),
        at(0.99),
        at(1.0),
        v.len()
    )
}

/// Lookups of `n` times spread over the log (a fixed pseudo-random walk).
fn lookups(log: &Log, records: u64, n: u64, end: Offset) -> Vec<Duration> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ts = ts_of(x % records);
            let start = Instant::now();
            let found = log.offset_for_timestamp(ts, end).expect("lookup");
            let took = start.elapsed();
            assert!(found.is_some());
            took
        })
        .collect()
}

fn main() {
    let mb: u64 = std::env::var("COMMITLOG_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mb = if std::env::args().any(|a| a == "--bench") {
        mb
    } else {
        4
    };
    let dir = PathBuf::from(
        std::env::var("COMMITLOG_BENCH_DIR").unwrap_or_else(|_| "target/bench-time".into()),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let records = mb * 1024 * 1024 / VALUE_BYTES as u64;
    let log = Log::open(&dir, LogConfig::default()).expect("open");
    let start = Instant::now();
    fill(&log, records);
    println!(
        "filled {records} records ({mb} MiB of values, {} segments) in {:?}",
        log.segment_count(),
        start.elapsed()
    );
    let end = log.next_offset();
    log.close().expect("close");

    let log = Log::open(&dir, LogConfig::default()).expect("reopen");
    let mid = ts_of(records * 9 / 10);
    let start = Instant::now();
    log.offset_for_timestamp(mid, end).expect("lookup");
    println!(
        "cold (no .timeindex files; 90% of the log indexed): {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    log.offset_for_timestamp(ts_of(records - 1), end)
        .expect("lookup");
    println!(
        "cold, rest of the log incl. the active segment: {:?}",
        start.elapsed()
    );
    println!("warm: {}", quantiles(lookups(&log, records, 2000, end)));
    log.close().expect("close");

    let log = Log::open(&dir, LogConfig::default()).expect("reopen");
    let start = Instant::now();
    log.offset_for_timestamp(mid, end).expect("lookup");
    println!(
        "after a reopen (files loaded, active segment re-read): {:?}",
        start.elapsed()
    );
    println!("warm: {}", quantiles(lookups(&log, records, 2000, end)));

    // Time to the first record: from a time (lookup + read) vs from an offset.
    let mut by_time = Vec::new();
    let mut by_offset = Vec::new();
    for k in 1..200u64 {
        let i = records * k / 200;
        let start = Instant::now();
        let (offset, _) = log.offset_for_timestamp(ts_of(i), end).unwrap().unwrap();
        log.read_range(offset, 64 * 1024).expect("read");
        by_time.push(start.elapsed());
        let start = Instant::now();
        log.read_range(Offset(i), 64 * 1024).expect("read");
        by_offset.push(start.elapsed());
    }
    println!("first 64 KiB from a time:    {}", quantiles(by_time));
    println!("first 64 KiB from an offset: {}", quantiles(by_offset));
    log.close().expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}
