//! Storage engine throughput, compared with the raw sequential-write bandwidth of
//! the same disk. Run with `cargo bench --bench storage_append`. Without the
//! `--bench` argument that `cargo bench` passes (e.g. under
//! `cargo test --all-targets`) it runs as a smoke test with 4 MiB per case.
//!
//! Environment:
//! * `COMMITLOG_BENCH_DIR`: where to write (default `target/bench-storage`); it
//!   should be on the disk you care about. Everything written is removed at the end.
//! * `COMMITLOG_BENCH_VERBOSE`: if set, also print how long the final sync took.
//! * `COMMITLOG_BENCH_MB`: MiB of record values per no-fsync case (default 1024);
//!   the fsync-per-batch cases write a quarter of that.
//!
//! Before anything else it probes the disk's fsync rate, in the same process:
//! (a) 100-byte appends to a growing file, `fdatasync` after each (what the log
//! and Redis' AOF do: each sync also commits the file-size change to the journal);
//! (b) 4 KiB overwrites of a preallocated, zero-written file, `fdatasync` after each
//! (no metadata to commit: the best case, as fio measures it); (c) 100-byte writes
//! at increasing positions of a preallocated, zero-written file (what a log whose
//! store is pre-zeroed ahead of the write position would see). Each runs for about
//! `COMMITLOG_BENCH_PROBE_MS` ms (default 2000) and prints ops/s, mean and p99.
//!
//! Scale mode (`COMMITLOG_BENCH_SCALE_RECORDS=N`, optionally
//! `COMMITLOG_BENCH_SCALE_VALUE_BYTES`, default 100): instead of the table, appends N
//! records in batches of 256 with no fsync but a final one (like `--fsync never`),
//! printing the append rate of every millionth-record window and the resident
//! memory as it goes, then closes the log, reopens it (timed) and deletes it.
//!
//! Every append figure includes a final `sync()`, and the raw figure includes its
//! final fsync, so all numbers are "bytes made durable per second". Columns:
//! "value MB/s" counts record values only; "file MB/s" counts what reached the
//! files (values + 28-byte record headers + 8-byte index slots; for reads, the
//! store bytes parsed); "of raw" compares file MB/s of an append case with the
//! best of three raw-write runs (two before the log cases, one after); each append
//! case also runs twice and reports its faster run. MB = MiB.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commitlog::storage::{
    Log, LogConfig, NewRecord, Offset, RecordKind, Term, RECORD_HEADER_BYTES,
};

const BATCH_RECORDS: usize = 256;
const MIB: f64 = 1024.0 * 1024.0;

struct Row {
    case: String,
    /// Payload bytes (record values, or raw blocks).
    bytes: u64,
    /// Bytes that reached the files (values + record headers + index slots).
    disk_bytes: u64,
    records: u64,
    elapsed: Duration,
}

impl Row {
    fn print(&self, raw_mib_s: Option<f64>) {
        let secs = self.elapsed.as_secs_f64();
        let mib_s = self.bytes as f64 / MIB / secs;
        let records = if self.records > 0 {
            format!("{:>12.0}", self.records as f64 / secs)
        } else {
            format!("{:>12}", "-")
        };
        let disk_mib_s = self.disk_bytes as f64 / MIB / secs;
        let of_raw = raw_mib_s.map_or("-".to_string(), |raw| {
            format!("{:.0}%", 100.0 * disk_mib_s / raw)
        });
        println!(
            "{:<44} {:>10.1} {:>9.1} {} {:>7} {:>8.2}",
            self.case, mib_s, disk_mib_s, records, of_raw, secs
        );
    }
}

/// One fsync-rate probe: ops/s, mean and p99 of write + fdatasync.
struct Probe {
    case: &'static str,
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Probe {
    fn print(&mut self) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len().max(1);
        let mean = self.latencies_us.iter().sum::<u64>() as f64 / n as f64;
        let p99 = self.latencies_us.get(n * 99 / 100).copied().unwrap_or(0);
        let max = self.latencies_us.last().copied().unwrap_or(0);
        println!(
            "{:<60} {:>9.0} ops/s  mean {:>6.0} us  p99 {:>6} us  max {:>6} us",
            self.case,
            self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9),
            mean,
            p99,
            max
        );
    }
}

/// Writes `write_bytes` at increasing positions (wrapping inside `prefill_bytes`
/// when that is non-zero) with an `fdatasync` after each, for `duration`. With
/// `prefill_bytes == 0` the file grows with every write.
fn fsync_probe(
    dir: &Path,
    case: &'static str,
    write_bytes: usize,
    prefill_bytes: u64,
    duration: Duration,
) -> Probe {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe.bin");
    let _ = fs::remove_file(&path);
    let file = File::create(&path).expect("create probe file");
    if prefill_bytes > 0 {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < prefill_bytes {
            file.write_all_at(&zeros, at).expect("prefill");
            at += zeros.len() as u64;
        }
        file.sync_all().expect("prefill fsync");
    }
    let block = vec![0x5au8; write_bytes];
    let mut latencies_us = Vec::new();
    let mut position = 0u64;
    let start = Instant::now();
    // Bounded by `duration`.
    while start.elapsed() < duration {
        let t = Instant::now();
        file.write_all_at(&block, position).expect("probe write");
        file.sync_data().expect("probe fdatasync");
        latencies_us.push(t.elapsed().as_micros() as u64);
        position += write_bytes as u64;
        if prefill_bytes > 0 && position + write_bytes as u64 > prefill_bytes {
            position = 0;
        }
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = fs::remove_file(&path);
    Probe {
        case,
        ops: latencies_us.len() as u64,
        elapsed,
        latencies_us,
    }
}

fn raw_write(dir: &Path, total_bytes: u64) -> Row {
    let path = dir.join("raw-bandwidth.bin");
    let block = vec![0x5au8; 1024 * 1024];
    let start = Instant::now();
    let mut file = File::create(&path).expect("create raw file");
    let mut written = 0;
    while written < total_bytes {
        file.write_all(&block).expect("raw write");
        written += block.len() as u64;
    }
    file.sync_data().expect("raw fsync"); // fdatasync, as `Log::sync` uses
    let elapsed = start.elapsed();
    drop(file);
    let _ = fs::remove_file(&path);
    Row {
        case: "raw write, 1 MiB blocks + fdatasync".into(),
        bytes: written,
        disk_bytes: written,
        records: 0,
        elapsed,
    }
}

/// Appends `total_value_bytes` of `value_bytes`-byte records in batches; with
/// `fsync_each_batch`, calls `sync()` after every batch. Returns the row and leaves
/// the log open for the read case.
fn append_case(
    dir: &Path,
    value_bytes: usize,
    total_value_bytes: u64,
    fsync_each_batch: bool,
) -> (Row, Log) {
    let log = Log::open(dir, LogConfig::default()).expect("open log");
    let values: Vec<Vec<u8>> = (0..BATCH_RECORDS)
        .map(|i| (0..value_bytes).map(|k| (i * 31 + k) as u8).collect())
        .collect();
    let batch: Vec<NewRecord<'_>> = values
        .iter()
        .map(|v| NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: v,
        })
        .collect();
    let batches = total_value_bytes.div_ceil((value_bytes * BATCH_RECORDS) as u64);
    let start = Instant::now();
    for _ in 0..batches {
        log.append_batch(&batch).expect("append");
        if fsync_each_batch {
            log.sync().expect("sync");
        }
    }
    let appended = start.elapsed();
    let durable = log.sync().expect("sync");
    let elapsed = start.elapsed();
    if std::env::var_os("COMMITLOG_BENCH_VERBOSE").is_some() {
        eprintln!(
            "  ({value_bytes} B, fsync per batch {fsync_each_batch}: appends {:.3} s, final sync {:.3} s)",
            appended.as_secs_f64(),
            (elapsed - appended).as_secs_f64()
        );
    }
    let records = batches * BATCH_RECORDS as u64;
    assert_eq!(durable, Offset(records));
    let mode = if fsync_each_batch {
        "fsync every batch"
    } else {
        "one final fsync"
    };
    let row = Row {
        case: format!("append {value_bytes} B x {BATCH_RECORDS}/batch, {mode}"),
        bytes: records * value_bytes as u64,
        disk_bytes: records * (value_bytes as u64 + RECORD_HEADER_BYTES as u64 + 8),
        records,
        elapsed,
    };
    (row, log)
}

fn read_case(log: &Log, value_bytes: usize) -> Row {
    let start = Instant::now();
    let mut offset = log.first_offset();
    let mut bytes = 0u64;
    let mut records = 0u64;
    while offset < log.next_offset() {
        let got = log.read_range(offset, 1024 * 1024).expect("read_range");
        records += got.len() as u64;
        bytes += got.iter().map(|r| r.value.len() as u64).sum::<u64>();
        offset = Offset(offset.0 + got.len() as u64);
    }
    Row {
        case: format!("read_range {value_bytes} B records, 1 MiB per call"),
        bytes,
        disk_bytes: records * (value_bytes as u64 + RECORD_HEADER_BYTES as u64),
        records,
        elapsed: start.elapsed(),
    }
}

fn reopen_case(dir: &Path) -> Duration {
    let start = Instant::now();
    let log = Log::open(dir, LogConfig::default()).expect("reopen");
    let elapsed = start.elapsed();
    drop(log);
    elapsed
}

/// Resident memory of this process, from `/proc/self/status` (0 if unknown).
fn rss_mib() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Asks the kernel to drop the cached pages of every file in `dir` (they are
/// clean after a sync); returns how many files it managed.
fn drop_file_cache(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            std::process::Command::new("dd")
                .arg(format!("if={}", entry.path().display()))
                .args(["of=/dev/null", "iflag=nocache", "count=0", "status=none"])
                .status()
                .is_ok_and(|status| status.success())
        })
        .count()
}

/// Scale mode: see the module doc.
fn scale_case(base: &Path, total_records: u64, value_bytes: usize) {
    const WINDOW: u64 = 1_000_000;
    let dir = base.join("scale");
    let log = Log::open(&dir, LogConfig::default()).expect("open log");
    let values: Vec<Vec<u8>> = (0..BATCH_RECORDS)
        .map(|i| (0..value_bytes).map(|k| (i * 31 + k) as u8).collect())
        .collect();
    let batch: Vec<NewRecord<'_>> = values
        .iter()
        .map(|v| NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: v,
        })
        .collect();
    println!(
        "scale: {total_records} records of {value_bytes} B, {BATCH_RECORDS} per append_batch, one final fsync"
    );
    println!(
        "{:>12} {:>12} {:>10} {:>9} {:>9}",
        "records", "records/s", "MB/s", "RSS MiB", "segments"
    );
    let start = Instant::now();
    let mut window_start = Instant::now();
    let mut written = 0u64;
    let mut in_window = 0u64;
    let mut first_window_rate = None;
    // Bounded by `total_records`.
    while written < total_records {
        log.append_batch(&batch).expect("append");
        written += BATCH_RECORDS as u64;
        in_window += BATCH_RECORDS as u64;
        if in_window >= WINDOW || written >= total_records {
            let secs = window_start.elapsed().as_secs_f64();
            first_window_rate.get_or_insert(in_window as f64 / secs);
            println!(
                "{:>12} {:>12.0} {:>10.1} {:>9.1} {:>9}",
                written,
                in_window as f64 / secs,
                in_window as f64 * value_bytes as f64 / secs / 1e6,
                rss_mib(),
                log.segment_count()
            );
            in_window = 0;
            window_start = Instant::now();
        }
    }
    log.sync().expect("sync");
    let elapsed = start.elapsed().as_secs_f64();
    // The windows above are paced by the kernel's dirty-page writeback once the
    // page cache fills; append one more window to the now clean, big log so it can
    // be compared with the first window of the empty log on equal terms. Its
    // files' cached pages are dropped first (`dd iflag=nocache count=0`, i.e.
    // posix_fadvise DONTNEED), else the kernel must reclaim them to make room.
    let dropped = drop_file_cache(&dir);
    let more = Instant::now();
    let mut appended = 0u64;
    while appended < WINDOW {
        log.append_batch(&batch).expect("append");
        appended += BATCH_RECORDS as u64;
    }
    let more_rate = appended as f64 / more.elapsed().as_secs_f64();
    log.sync().expect("sync");
    written += appended;
    println!(
        "append rate of {appended} more records to the synced {total_records}-record log ({dropped} files' page cache dropped): {more_rate:.0} records/s; first {WINDOW} of the empty log: {:.0} records/s ({:+.1}%)",
        first_window_rate.unwrap_or(0.0),
        100.0 * (more_rate / first_window_rate.unwrap_or(more_rate) - 1.0)
    );
    let size = log.size_bytes();
    println!(
        "total: {written} records, {:.2} GiB on disk, {:.1} s, {:.0} records/s overall, RSS {:.1} MiB",
        size as f64 / (1u64 << 30) as f64,
        elapsed,
        written as f64 / elapsed,
        rss_mib()
    );
    log.close().expect("close");
    let rss_before = rss_mib();
    let reopen = Instant::now();
    let log = Log::open(&dir, LogConfig::default()).expect("reopen");
    let reopen = reopen.elapsed();
    println!(
        "reopen of the {:.2} GiB log: {:.1} ms; RSS {:.1} MiB before, {:.1} MiB after",
        size as f64 / (1u64 << 30) as f64,
        reopen.as_secs_f64() * 1e3,
        rss_before,
        rss_mib()
    );
    // Reading the last records proves the reopened log is whole.
    let last = log.next_offset().0 - 1;
    assert_eq!(
        log.read(Offset(last)).expect("read last").offset,
        Offset(last)
    );
    drop(log);
    let _ = fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary
    // without it, and then it is only a quick smoke test of the benchmark itself.
    let smoke_test = !std::env::args().any(|arg| arg == "--bench");
    let base: PathBuf = std::env::var_os("COMMITLOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let name = if smoke_test {
                "target/bench-storage-smoke"
            } else {
                "target/bench-storage"
            };
            Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
        });
    let default_mib = if smoke_test { 4 } else { 1024 };
    let total_mib: u64 = std::env::var("COMMITLOG_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_mib);
    let total_bytes = total_mib * 1024 * 1024;
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).expect("create bench dir");
    let scale_records: Option<u64> = std::env::var("COMMITLOG_BENCH_SCALE_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok());
    if let Some(records) = scale_records {
        let value_bytes = std::env::var("COMMITLOG_BENCH_SCALE_VALUE_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        scale_case(&base, records, value_bytes);
        let _ = fs::remove_dir_all(&base);
        return;
    }
    println!(
        "storage_append: {} ({} MiB per case{})\n",
        base.display(),
        total_mib,
        if smoke_test {
            "; smoke test only, `cargo bench --bench storage_append` measures"
        } else {
            ""
        }
    );
    let probe_ms: u64 = std::env::var("COMMITLOG_BENCH_PROBE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke_test { 50 } else { 2000 });
    let probe = Duration::from_millis(probe_ms);
    println!("disk fsync rate (write + fdatasync, one at a time):");
    let mut probes = [
        fsync_probe(&base, "(a) 100 B appends to a growing file", 100, 0, probe),
        fsync_probe(
            &base,
            "(b) 4 KiB overwrites, preallocated zero-written file",
            4096,
            64 << 20,
            probe,
        ),
        fsync_probe(
            &base,
            "(c) 100 B appends inside a preallocated zero-written file",
            100,
            64 << 20,
            probe,
        ),
    ];
    for p in &mut probes {
        p.print();
    }
    println!();
    println!(
        "{:<44} {:>10} {:>9} {:>12} {:>7} {:>8}",
        "case", "value MB/s", "file MB/s", "records/s", "of raw", "seconds"
    );

    // The disk's bandwidth drifts (shared virtual disks especially), so measure it
    // twice before and once after the log cases and compare against the best run.
    let raw_first = raw_write(&base, total_bytes);
    let mut raw_before = raw_write(&base, total_bytes);
    raw_before.case = "raw write again".into();
    let mut rows = Vec::new();
    let mut reopen = None;
    for (value_bytes, fsync_each_batch) in [(100, false), (1024, false), (100, true), (1024, true)]
    {
        let dir = base.join(format!("log-{value_bytes}-{fsync_each_batch}"));
        let bytes = if fsync_each_batch {
            total_bytes / 4
        } else {
            total_bytes
        };
        // Like the raw runs, each append case runs twice and keeps the faster run
        // (the read case uses the log of the second run).
        let (first_row, first_log) = append_case(&dir, value_bytes, bytes, fsync_each_batch);
        drop(first_log);
        let _ = fs::remove_dir_all(&dir);
        let (row, log) = append_case(&dir, value_bytes, bytes, fsync_each_batch);
        let row = if first_row.elapsed < row.elapsed {
            first_row
        } else {
            row
        };
        rows.push((row, true));
        if !fsync_each_batch {
            rows.push((read_case(&log, value_bytes), false));
        }
        let size = log.size_bytes();
        log.close().expect("close");
        if value_bytes == 1024 && !fsync_each_batch {
            reopen = Some((size, reopen_case(&dir)));
        }
        let _ = fs::remove_dir_all(&dir);
    }
    let mut raw_after = raw_write(&base, total_bytes);
    raw_after.case = "raw write again, after the log cases".into();
    let mib_s = |row: &Row| row.bytes as f64 / MIB / row.elapsed.as_secs_f64();
    let raw_mib_s = mib_s(&raw_first)
        .max(mib_s(&raw_before))
        .max(mib_s(&raw_after));
    raw_first.print(None);
    raw_before.print(None);
    raw_after.print(None);
    for (row, is_append) in &rows {
        row.print(is_append.then_some(raw_mib_s));
    }
    if let Some((size, elapsed)) = reopen {
        println!(
            "\nreopen of a {:.0} MiB log: {:.1} ms",
            size as f64 / MIB,
            elapsed.as_secs_f64() * 1e3
        );
    }
    let _ = fs::remove_dir_all(&base);
}
