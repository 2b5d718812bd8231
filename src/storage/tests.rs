//! Tests of the whole log.

use std::path::{Path, PathBuf};

/// A unique directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "commitlog-storage-{name}-{}-{nanos}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use std::fs;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

/// Small segments so tests cross many boundaries: ~5 records of ~40 bytes each.
pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        max_store_bytes: 256,
        max_index_bytes: 64,
        ..LogConfig::default()
    }
}

/// The value of record `i` (varying lengths, 0..=40 bytes).
fn value_of(i: u64) -> Vec<u8> {
    (0..(i * 7 % 41))
        .map(|k| (i as u8).wrapping_mul(31) ^ k as u8)
        .collect()
}

fn term_of(i: u64) -> Term {
    Term(i / 10)
}

fn kind_of(i: u64) -> RecordKind {
    match i % 13 {
        0 => RecordKind::NoOp,
        7 => RecordKind::Config,
        _ => RecordKind::Data,
    }
}

pub(crate) fn expected(i: u64) -> Record {
    Record {
        offset: Offset(i),
        term: term_of(i),
        kind: kind_of(i),
        value: value_of(i),
    }
}

/// Appends records `from..to` (offsets must line up), in batches of `batch`.
pub(crate) fn append_range(log: &Log, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let values: Vec<Vec<u8>> = (i..end).map(value_of).collect();
        let records: Vec<NewRecord<'_>> = (i..end)
            .zip(&values)
            .map(|(k, v)| NewRecord {
                term: term_of(k),
                kind: kind_of(k),
                value: v,
            })
            .collect();
        assert_eq!(log.append_batch(&records).unwrap(), Offset(i));
        i = end;
    }
    assert_eq!(log.next_offset(), Offset(to));
}

/// Checks every record in `from..to` with single reads and one range read.
pub(crate) fn check_range(log: &Log, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(log.read(Offset(i)).unwrap(), expected(i), "read({i})");
    }
    let all = log.read_range(Offset(from), u64::MAX).unwrap();
    assert_eq!(all.len() as u64, to - from);
    for (k, record) in all.iter().enumerate() {
        assert_eq!(*record, expected(from + k as u64));
    }
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn is_corrupt<T: std::fmt::Debug>(result: &Result<T>) -> bool {
    matches!(result, Err(StorageError::Corrupt { .. }))
}

/// The typed per-record error for exactly `offset`.
fn is_damaged_record<T: std::fmt::Debug>(result: &Result<T>, offset: u64) -> bool {
    matches!(result, Err(StorageError::CorruptRecord { offset: o, .. }) if o.0 == offset)
}

/// A tiny seeded PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<Arc<Log>>();
}

#[test]
fn round_trip_across_segment_boundaries() {
    let dir = TempDir::new("roundtrip");
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.first_offset(), Offset(0));
    assert_eq!(log.last_offset(), None);
    assert!(log.read_range(Offset(0), 100).unwrap().is_empty());
    assert_eq!(log.append_batch(&[]).unwrap(), Offset(0), "empty batch");
    for i in 0..40 {
        let v = value_of(i);
        let offset = log
            .append(NewRecord {
                term: term_of(i),
                kind: kind_of(i),
                value: &v,
            })
            .unwrap();
        assert_eq!(offset, Offset(i));
    }
    append_range(&log, 40, 200, 7);
    assert!(
        log.segment_count() > 10,
        "small segments roll: {}",
        log.segment_count()
    );
    assert_eq!(log.last_offset(), Some(Offset(199)));
    check_range(&log, 0, 200);
    for from in [0, 3, 57, 150, 199] {
        // Never more value bytes than asked, unless it is the single first record.
        for max_bytes in [0, 1, 40, 100, 1000] {
            let got = log.read_range(Offset(from), max_bytes).unwrap();
            assert!(!got.is_empty());
            let total: u64 = got.iter().map(|r| r.value.len() as u64).sum();
            assert!(got.len() == 1 || total <= max_bytes);
            for (k, record) in got.iter().enumerate() {
                assert_eq!(*record, expected(from + k as u64));
            }
            // Maximal: the next record would not have fit.
            let next = from + got.len() as u64;
            if next < 200 {
                assert!(total + value_of(next).len() as u64 > max_bytes);
            }
        }
    }
    assert!(log.read_range(Offset(200), 10).unwrap().is_empty());
    assert!(matches!(
        log.read_range(Offset(201), 10),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(Offset(200)),
        Err(StorageError::OffsetOutOfRange {
            next: Offset(200),
            ..
        })
    ));
}

#[test]
fn record_too_large_is_rejected_and_nothing_is_appended() {
    let dir = TempDir::new("too-large");
    let log = Log::open(dir.path(), small_config()).unwrap();
    let big = vec![0u8; 256];
    let ok = [1u8; 3];
    let batch = [
        NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: &ok,
        },
        NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: &big,
        },
    ];
    assert!(matches!(
        log.append_batch(&batch),
        Err(StorageError::RecordTooLarge {
            bytes: 284,
            max_bytes: 256
        })
    ));
    assert_eq!(log.next_offset(), Offset(0));
    // The largest record that fits gets a segment of its own.
    let max = vec![5u8; 256 - RECORD_HEADER_BYTES];
    append_range(&log, 0, 3, 3);
    let at = log
        .append(NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: &max,
        })
        .unwrap();
    assert_eq!(log.read(at).unwrap().value, max);
    assert!(matches!(
        Log::open(
            dir.path(),
            LogConfig {
                max_store_bytes: u64::from(u32::MAX) + 1,
                ..LogConfig::default()
            }
        ),
        Err(StorageError::InvalidConfig { .. })
    ));
}

#[test]
fn reopen_after_clean_close_and_after_drop() {
    let dir = TempDir::new("reopen");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 100, 9);
    log.close().unwrap();
    // A clean close leaves every index sealed (exactly 8 bytes per record).
    for index in segment_files(dir.path(), "index") {
        assert_eq!(fs::metadata(&index).unwrap().len() % 8, 0);
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.next_offset(), Offset(100));
    assert_eq!(log.durable_offset(), Offset(100));
    check_range(&log, 0, 100);
    // The directory is locked while the log is open.
    assert!(matches!(
        Log::open(dir.path(), small_config()),
        Err(StorageError::Io { .. })
    ));
    append_range(&log, 100, 150, 4);
    // No close and no sync: a process crash (the page cache survives).
    drop(log);
    // Files that are not segments are left alone.
    fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.next_offset(), Offset(150));
    check_range(&log, 0, 150);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn reopen_with_default_sizes_keeps_a_single_segment() {
    let dir = TempDir::new("defaults");
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append_range(&log, 0, 1000, 100);
    assert_eq!(log.segment_count(), 1);
    log.close().unwrap();
    assert!(dir.path().join("00000000000000000000.store").exists());
    assert_eq!(
        fs::metadata(dir.path().join("00000000000000000000.index"))
            .unwrap()
            .len(),
        8000
    );
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    check_range(&log, 0, 1000);
}

#[test]
fn sync_reports_durable_offset() {
    let dir = TempDir::new("sync");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 30, 5);
    assert_eq!(log.durable_offset(), Offset(0));
    assert_eq!(log.sync().unwrap(), Offset(30));
    assert_eq!(log.durable_offset(), Offset(30));
    // Rolled segments are sealed on disk by the sync.
    let indexes = segment_files(dir.path(), "index");
    for (i, index) in indexes.iter().enumerate().take(indexes.len() - 1) {
        let base: u64 = index
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let next: u64 = indexes[i + 1]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(fs::metadata(index).unwrap().len(), 8 * (next - base));
    }
    log.truncate_suffix(Some(Offset(9))).unwrap();
    assert_eq!(log.durable_offset(), Offset(10));
}

/// Cuts the last, never synced, record at every byte: a torn tail. The log
/// reopens with exactly the earlier records, and appends continue after them.
#[test]
fn reopen_after_cut_at_every_byte_of_the_last_record() {
    let dir = TempDir::new("cut-src");
    let n = 23; // value_of(22) is 31 bytes
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, n - 1, 4);
    log.close().unwrap();
    // Reopening checkpoints durable end n - 1; the last record is never synced.
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, n - 1, n, 1);
    drop(log);
    let store = segment_files(dir.path(), "store").pop().unwrap();
    let store_len = fs::metadata(&store).unwrap().len();
    let last_len = RECORD_HEADER_BYTES as u64 + value_of(n - 1).len() as u64;
    let last_start = store_len - last_len;
    for cut in last_start..store_len {
        let copy = TempDir::new("cut");
        copy_dir(dir.path(), copy.path());
        let store_copy = copy.path().join(store.file_name().unwrap());
        fs::OpenOptions::new()
            .write(true)
            .open(&store_copy)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let log = Log::open(copy.path(), small_config()).unwrap();
        assert_eq!(log.next_offset(), Offset(n - 1), "cut at {cut}");
        assert_eq!(fs::metadata(&store_copy).unwrap().len(), last_start);
        check_range(&log, 0, n - 1);
        append_range(&log, n - 1, n + 2, 3);
        check_range(&log, 0, n + 2);
    }
}

/// Segments rolled but never synced are cut at their first invalid record, and
/// the segments after them are dropped.
#[test]
fn unsynced_rolled_segment_with_torn_tail_is_cut() {
    let dir = TempDir::new("unsynced");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 60, 6);
    drop(log); // no sync: rolled segments keep their preallocated index
    let stores = segment_files(dir.path(), "store");
    assert!(stores.len() > 4);
    let victim = &stores[2];
    let victim_base: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let len = fs::metadata(victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let next = log.next_offset().0;
    assert!(
        next > victim_base && next < 60,
        "cut inside segment {victim_base}: {next}"
    );
    assert_eq!(log.segment_count(), 3);
    check_range(&log, 0, next);
    append_range(&log, next, next + 5, 2);
    check_range(&log, 0, next + 5);
}

#[test]
fn damage_followed_by_valid_records_is_corrupt_not_cut() {
    let dir = TempDir::new("mid-corrupt");
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append_range(&log, 0, 20, 20);
    log.close().unwrap();
    let store = segment_files(dir.path(), "store").pop().unwrap();
    let mut bytes = fs::read(&store).unwrap();
    // A value byte of record 5 (the header is intact, so framing still works).
    let position: usize = (0..5)
        .map(|i| RECORD_HEADER_BYTES + value_of(i).len())
        .sum::<usize>()
        + RECORD_HEADER_BYTES;
    bytes[position] ^= 0x40;
    fs::write(&store, &bytes).unwrap();
    let opened = Log::open(dir.path(), LogConfig::default());
    assert!(is_corrupt(&opened), "{opened:?}");
    // The file was not cut.
    assert_eq!(fs::read(&store).unwrap().len(), bytes.len());
    // Repairing cuts the log just before the damaged record.
    let log = Log::open_and_repair(dir.path(), LogConfig::default())
        .unwrap()
        .0;
    assert_eq!(log.next_offset(), Offset(5));
    check_range(&log, 0, 5);
    append_range(&log, 5, 8, 3);
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    check_range(&log, 0, 8);
}

#[test]
fn corruption_in_a_sealed_segment_is_reported() {
    let dir = TempDir::new("sealed-corrupt");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 60, 6);
    log.close().unwrap();
    let stores = segment_files(dir.path(), "store");
    let victim = &stores[1];
    let base: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = fs::read(victim).unwrap();
    bytes[RECORD_HEADER_BYTES - 1] ^= 1; // reserved byte of its first record
    fs::write(victim, &bytes).unwrap();
    // Sealed segments are not scanned on open...
    let log = Log::open(dir.path(), small_config()).unwrap();
    // ...but every read path checks them: the damaged record is a typed error,
    // a range read stops before it, and its neighbours stay readable.
    assert!(is_damaged_record(&log.read(Offset(base)), base));
    let before = log.read_range(Offset(0), u64::MAX).unwrap();
    assert_eq!(before.len() as u64, base);
    assert!(is_damaged_record(&log.read_range(Offset(base), 1), base));
    assert_eq!(log.read(Offset(base + 1)).unwrap(), expected(base + 1));
    assert_eq!(
        log.read_range(Offset(base + 1), 1).unwrap()[0],
        expected(base + 1)
    );
    assert_eq!(log.read(Offset(0)).unwrap(), expected(0));
    drop(log);

    // A sealed store that lost its last byte: only its last record is damaged.
    let victim = &stores[2];
    let next_base: u64 = stores[3]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let base: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let len = fs::metadata(victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.read(Offset(base)).unwrap(), expected(base));
    assert!(is_damaged_record(
        &log.read(Offset(next_base - 1)),
        next_base - 1
    ));
    assert_eq!(log.read(Offset(next_base)).unwrap(), expected(next_base));
    drop(log);

    // A missing segment in the middle is a hole: Corrupt on open.
    fs::remove_file(&stores[3]).unwrap();
    assert!(is_corrupt(&Log::open(dir.path(), small_config())));
    fs::remove_file(stores[3].with_extension("index")).unwrap();
    assert!(is_corrupt(&Log::open(dir.path(), small_config())));
    // Repairing ends the log before the hole; here one record earlier, because the
    // segment before the hole lost its last byte above (with the hole, its index no
    // longer matches, so it is scanned).
    let hole: u64 = stores[3]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let log = Log::open_and_repair(dir.path(), small_config()).unwrap().0;
    assert_eq!(log.next_offset(), Offset(hole - 1));
    assert_eq!(log.read(Offset(hole - 2)).unwrap(), expected(hole - 2));
    assert_eq!(segment_files(dir.path(), "store").len(), 3);
}

#[test]
fn index_rebuilt_when_deleted_or_corrupted() {
    let dir = TempDir::new("index-rebuild");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 60, 5);
    log.close().unwrap();
    let indexes = segment_files(dir.path(), "index");
    // A temporary file left by a crash during an index rebuild is removed.
    let temp = dir.path().join("00000000000000000000.index.tmp");
    fs::write(&temp, b"partial").unwrap();
    // The last segment's index: deleted, then overwritten with garbage.
    let last = indexes.last().unwrap().clone();
    fs::remove_file(&last).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(!temp.exists());
    check_range(&log, 0, 60);
    log.close().unwrap();
    let len = fs::metadata(&last).unwrap().len() as usize;
    fs::write(&last, vec![0xa5u8; len]).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 60);
    log.close().unwrap();
    // A sealed segment's index: deleted, then truncated.
    fs::remove_file(&indexes[1]).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&indexes[2])
        .unwrap()
        .set_len(4)
        .unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 60);
    drop(log);
    // A sealed index of the right length but wrong content is caught on read.
    let len = fs::metadata(&indexes[3]).unwrap().len() as usize;
    fs::write(&indexes[3], vec![0x11u8; len]).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let base: u64 = indexes[3]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(is_damaged_record(&log.read(Offset(base + 1)), base + 1));
}

/// Random single-byte flips anywhere in the files: the log either reports
/// Corrupt (on open or on read) or returns exactly the records written, never
/// different data.
#[test]
fn random_byte_flips_are_never_returned_as_data() {
    let dir = TempDir::new("flip-src");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 50, 5);
    log.close().unwrap();
    let files: Vec<PathBuf> = segment_files(dir.path(), "store")
        .into_iter()
        .chain(segment_files(dir.path(), "index"))
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut corrupt_on_open, mut corrupt_on_read) = (0, 0);
    for trial in 0..100 {
        let copy = TempDir::new("flip");
        copy_dir(dir.path(), copy.path());
        let file = copy.path().join(
            files[rng.below(files.len() as u64) as usize]
                .file_name()
                .unwrap(),
        );
        let mut bytes = fs::read(&file).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] ^= 1 << rng.below(8);
        fs::write(&file, &bytes).unwrap();
        let log = match Log::open(copy.path(), small_config()) {
            Ok(log) => log,
            Err(StorageError::Corrupt { .. }) => {
                corrupt_on_open += 1;
                continue;
            }
            Err(other) => panic!("trial {trial}: unexpected error {other}"),
        };
        let next = log.next_offset().0;
        assert_eq!(
            next, 50,
            "trial {trial}: everything was durable: nothing may go"
        );
        let mut first_damaged = next;
        for i in 0..next {
            match log.read(Offset(i)) {
                Ok(record) => assert_eq!(record, expected(i), "trial {trial}"),
                Err(StorageError::CorruptRecord { offset, .. }) if offset.0 == i => {
                    first_damaged = first_damaged.min(i);
                    corrupt_on_read += 1;
                }
                Err(other) => panic!("trial {trial}: unexpected error {other}"),
            }
        }
        match log.read_range(Offset(0), u64::MAX) {
            Ok(records) => {
                // A damaged index slot of a later record is not on the sequential
                // path of a range read, so it may return more.
                assert!(records.len() as u64 >= first_damaged, "trial {trial}");
                for (i, record) in records.iter().enumerate() {
                    assert_eq!(*record, expected(i as u64), "trial {trial}");
                }
            }
            Err(StorageError::CorruptRecord { offset, .. }) => assert_eq!(offset.0, 0),
            Err(other) => panic!("trial {trial}: unexpected error {other}"),
        }
    }
    assert!(
        corrupt_on_open + corrupt_on_read > 50,
        "flips were detected"
    );
}

#[test]
fn truncate_suffix_then_reopen() {
    let dir = TempDir::new("truncate-suffix");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 100, 10);
    // Inside the active segment.
    log.truncate_suffix(Some(Offset(98))).unwrap();
    assert_eq!(log.next_offset(), Offset(99));
    // Deep into a sealed segment, then at a segment boundary.
    log.truncate_suffix(Some(Offset(42))).unwrap();
    assert_eq!(log.next_offset(), Offset(43));
    assert_eq!(log.last_offset(), Some(Offset(42)));
    assert!(matches!(
        log.read(Offset(43)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    check_range(&log, 0, 43);
    // A no-op when nothing is after it.
    log.truncate_suffix(Some(Offset(500))).unwrap();
    assert_eq!(log.next_offset(), Offset(43));
    append_range(&log, 43, 70, 6);
    check_range(&log, 0, 70);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 70);
    let segments = log.segment_count();
    // Exactly at a segment base.
    let bases: Vec<u64> = segment_files(dir.path(), "store")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    let boundary = bases[segments / 2];
    log.truncate_suffix(Some(Offset(boundary - 1))).unwrap();
    assert_eq!(log.next_offset(), Offset(boundary));
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.next_offset(), Offset(boundary));
    check_range(&log, 0, boundary);
    // Everything.
    log.truncate_suffix(None).unwrap();
    assert_eq!(log.next_offset(), Offset(0));
    assert_eq!(log.last_offset(), None);
    assert_eq!(log.segment_count(), 1);
    append_range(&log, 0, 12, 5);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 12);
}

#[test]
fn truncate_prefix_then_reopen() {
    let dir = TempDir::new("truncate-prefix");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 100, 10);
    let before = log.size_bytes();
    assert_eq!(log.truncate_prefix(Offset(0)).unwrap(), 0);
    let freed = log.truncate_prefix(Offset(50)).unwrap();
    assert!(freed > 0);
    assert_eq!(log.size_bytes(), before - freed);
    let first = log.first_offset().0;
    assert!(first <= 50 && first > 30, "first {first}");
    assert!(matches!(
        log.read(Offset(first - 1)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read_range(Offset(0), 10),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    check_range(&log, first, 100);
    // Never the active segment, even when everything is below `before`.
    log.truncate_prefix(Offset(1_000)).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.next_offset(), Offset(100));
    let first = log.first_offset().0;
    assert!(first < 100);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.first_offset(), Offset(first));
    check_range(&log, first, 100);
    // truncate_suffix below the first offset is out of range, at first - 1 drops all.
    assert!(matches!(
        log.truncate_suffix(Some(Offset(first - 2))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.truncate_suffix(Some(Offset(first - 1))).unwrap();
    assert_eq!(log.next_offset(), Offset(first));
    assert_eq!(log.last_offset(), None);
}

#[test]
fn reset_then_reopen() {
    let dir = TempDir::new("reset");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 40, 10);
    log.reset(Offset(1_000)).unwrap();
    assert_eq!(log.first_offset(), Offset(1_000));
    assert_eq!(log.next_offset(), Offset(1_000));
    assert_eq!(log.last_offset(), None);
    assert_eq!(log.segment_count(), 1);
    assert!(log.read_range(Offset(1_000), 10).unwrap().is_empty());
    assert!(matches!(
        log.read(Offset(5)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let v = b"after reset";
    let at = log
        .append(NewRecord {
            term: Term(9),
            kind: RecordKind::Data,
            value: v,
        })
        .unwrap();
    assert_eq!(at, Offset(1_000));
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.first_offset(), Offset(1_000));
    assert_eq!(log.next_offset(), Offset(1_001));
    assert_eq!(log.read(Offset(1_000)).unwrap().value, v);
    assert_eq!(segment_files(dir.path(), "store").len(), 1);
    // Reset to the current start works too (same file names).
    log.reset(Offset(1_000)).unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.next_offset(), Offset(1_000));
}

#[test]
fn initial_offset_of_a_new_log() {
    let dir = TempDir::new("initial");
    let config = LogConfig {
        initial_offset: Offset(1),
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.first_offset(), Offset(1));
    assert_eq!(log.next_offset(), Offset(1));
    append_range(&log, 1, 20, 3);
    check_range(&log, 1, 20);
    log.close().unwrap();
    // initial_offset only applies to a brand-new log.
    let log = Log::open(
        dir.path(),
        LogConfig {
            initial_offset: Offset(7),
            ..config
        },
    )
    .unwrap();
    assert_eq!(log.first_offset(), Offset(1));
}

#[test]
fn retention_by_bytes() {
    let dir = TempDir::new("retention-bytes");
    let config = LogConfig {
        retention_bytes: Some(1_000),
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    append_range(&log, 0, 200, 10);
    let before = log.size_bytes();
    assert!(before > 3_000);
    let freed = log.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(log.size_bytes(), before - freed);
    assert!(log.size_bytes() <= 1_000, "{}", log.size_bytes());
    assert!(
        log.size_bytes() > 1_000 - 300,
        "only whole segments, only as needed"
    );
    let first = log.first_offset().0;
    check_range(&log, first, 200);
    assert_eq!(log.apply_retention(SystemTime::now()).unwrap(), 0);
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.first_offset(), Offset(first));
    // Off by default.
    let dir2 = TempDir::new("retention-off");
    let log = Log::open(dir2.path(), small_config()).unwrap();
    append_range(&log, 0, 100, 10);
    assert_eq!(
        log.apply_retention(SystemTime::now() + Duration::from_secs(1 << 30))
            .unwrap(),
        0
    );
    assert_eq!(log.first_offset(), Offset(0));
}

#[test]
fn retention_by_age() {
    let dir = TempDir::new("retention-age");
    let config = LogConfig {
        retention_age: Some(Duration::from_secs(3_600)),
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    append_range(&log, 0, 100, 10);
    let now = SystemTime::now();
    assert_eq!(log.apply_retention(now).unwrap(), 0);
    let freed = log
        .apply_retention(now + Duration::from_secs(7_200))
        .unwrap();
    assert!(freed > 0);
    // Every sealed segment was older than an hour by then; the active one stays.
    assert_eq!(log.segment_count(), 1);
    let first = log.first_offset().0;
    assert!(first > 90);
    check_range(&log, first, 100);
}

#[test]
fn sealed_segments_are_opened_lazily_and_cached_boundedly() {
    let dir = TempDir::new("lazy");
    let config = LogConfig {
        max_store_bytes: 128,
        max_index_bytes: 8,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    append_range(&log, 0, 60, 50);
    assert_eq!(log.segment_count(), 60, "one record per segment");
    log.close().unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(
        log.open_sealed_segments(),
        0,
        "open does not open sealed segments"
    );
    check_range(&log, 0, 60);
    assert!(log.open_sealed_segments() <= cache::SEALED_CACHE_CAPACITY);
}

/// A reader runs next to an appender and must see every record exactly as
/// written, in order, and never a partial one.
#[test]
fn concurrent_reader_and_appender() {
    let dir = TempDir::new("concurrent");
    let log = Arc::new(
        Log::open(
            dir.path(),
            LogConfig {
                max_store_bytes: 64 * 1024,
                max_index_bytes: 8 * 1024,
                ..LogConfig::default()
            },
        )
        .unwrap(),
    );
    const N: u64 = 20_000;
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            append_range(&log, 0, N, 17);
            for _ in 0..5 {
                log.sync().unwrap();
            }
        })
    };
    let mut cursor = 0;
    let mut reads = 0u64;
    while cursor < N {
        reads += 1;
        assert!(reads < 50_000_000, "reader made no progress");
        let next = log.next_offset().0;
        assert!(next >= cursor);
        if next == cursor {
            std::thread::yield_now();
            continue;
        }
        let records = log.read_range(Offset(cursor), 2_000).unwrap();
        assert!(!records.is_empty());
        for record in records {
            assert_eq!(record, expected(cursor));
            cursor += 1;
        }
        assert_eq!(log.read(Offset(cursor - 1)).unwrap(), expected(cursor - 1));
    }
    appender.join().unwrap();
    assert_eq!(log.durable_offset(), Offset(N));
}

#[test]
fn a_million_small_records() {
    let dir = TempDir::new("million");
    let config = LogConfig {
        max_store_bytes: 8 * 1024 * 1024,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    const N: u64 = 1_000_000;
    let mut values = vec![[0u8; 16]; 1_000];
    let mut i = 0;
    while i < N {
        for (k, v) in values.iter_mut().enumerate() {
            v[..8].copy_from_slice(&(i + k as u64).to_le_bytes());
        }
        let batch: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                term: Term(1),
                kind: RecordKind::Data,
                value: v,
            })
            .collect();
        assert_eq!(log.append_batch(&batch).unwrap(), Offset(i));
        i += batch.len() as u64;
    }
    assert_eq!(log.sync().unwrap(), Offset(N));
    assert!(log.segment_count() > 4);
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.next_offset(), Offset(N));
    let mut cursor = 0;
    while cursor < N {
        let records = log.read_range(Offset(cursor), 1 << 20).unwrap();
        for record in &records {
            assert_eq!(record.offset, Offset(cursor));
            assert_eq!(record.value[..8], cursor.to_le_bytes());
            cursor += 1;
        }
    }
    assert_eq!(
        log.read(Offset(777_777)).unwrap().value[..8],
        777_777u64.to_le_bytes()
    );
}

#[test]
fn a_hole_between_segments_is_corrupt_and_repair_cuts_before_it() {
    let dir = TempDir::new("hole");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 60, 6);
    log.close().unwrap();
    let stores = segment_files(dir.path(), "store");
    let hole: u64 = stores[3]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    fs::remove_file(&stores[3]).unwrap();
    fs::remove_file(stores[3].with_extension("index")).unwrap();
    assert!(is_corrupt(&Log::open(dir.path(), small_config())));
    let log = Log::open_and_repair(dir.path(), small_config()).unwrap().0;
    assert_eq!(log.next_offset(), Offset(hole));
    check_range(&log, 0, hole);
    assert_eq!(segment_files(dir.path(), "store").len(), 3);
    append_range(&log, hole, hole + 4, 4);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, hole + 4);
}

/// `truncate_suffix` to just before a damaged record removes it, even when the
/// damage is in the last record of a sealed segment.
#[test]
fn truncate_suffix_removes_damage_in_a_sealed_segment() {
    let dir = TempDir::new("truncate-damage");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 60, 6);
    log.close().unwrap();
    let stores = segment_files(dir.path(), "store");
    let victim = &stores[2];
    let base: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next_base: u64 = stores[3]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = fs::read(victim).unwrap();
    // The length field of the segment's last record.
    let last_start = bytes.len() - RECORD_HEADER_BYTES - value_of(next_base - 1).len();
    bytes[last_start + 4] ^= 0x10;
    fs::write(victim, &bytes).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.read(Offset(base)).unwrap(), expected(base));
    assert!(is_damaged_record(
        &log.read(Offset(next_base - 1)),
        next_base - 1
    ));
    log.truncate_suffix(Some(Offset(next_base - 2))).unwrap();
    assert_eq!(log.next_offset(), Offset(next_base - 1));
    check_range(&log, 0, next_base - 1);
    append_range(&log, next_base - 1, next_base + 10, 4);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, next_base + 10);
}

/// A huge `max_index_bytes` (its file-size arithmetic would overflow) is refused as
/// configuration, before anything is created.
#[test]
fn an_index_size_beyond_4_gib_is_refused() {
    let dir = TempDir::new("index-cap");
    let config = LogConfig {
        max_index_bytes: u64::MAX,
        ..LogConfig::default()
    };
    match Log::open(dir.path(), config) {
        Err(StorageError::InvalidConfig { reason }) => {
            assert!(reason.contains("max_index_bytes"), "{reason}")
        }
        other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
    }
}
