//! Tests of the recovery rule (`storage/recovery.rs`): each reproduction of a disk
//! that lies is classified as corruption with the right offsets, a genuine torn
//! tail is still cut, and opening twice gives the same state.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::TempDir;
use super::*;

/// Records of 100-byte values (128 bytes on disk), in segments of 64 KiB (shared
/// with `heal_tests`).
pub(super) fn config() -> LogConfig {
    LogConfig {
        max_store_bytes: 64 * 1024,
        ..LogConfig::default()
    }
}

pub(super) const RECORD_BYTES: u64 = 128;
pub(super) const PER_SEGMENT: u64 = 64 * 1024 / RECORD_BYTES;

/// The 100-byte value of record `i` (its offset in the first 8 bytes).
pub(super) fn value(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 100];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn append(log: &Log, from: u64, to: u64) {
    for chunk_start in (from..to).step_by(50) {
        let values: Vec<Vec<u8>> = (chunk_start..to.min(chunk_start + 50)).map(value).collect();
        let records: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                term: Term(1),
                kind: RecordKind::Data,
                value: v,
            })
            .collect();
        log.append_batch(&records).unwrap();
    }
}

/// A closed log of `n` records (so its checkpoint says durable end `n`).
fn closed_log(name: &str, n: u64) -> TempDir {
    let dir = TempDir::new(name);
    let log = Log::open(dir.path(), config()).unwrap();
    append(&log, 0, n);
    log.close().unwrap();
    dir
}

fn store(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.store"))
}

fn damage_of(result: Result<Log>) -> (Damage, String) {
    match result {
        Err(e @ StorageError::Corrupt { .. }) => {
            (e.damage().expect("damage report"), e.to_string())
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(log) => panic!("opened with next offset {}", log.next_offset()),
    }
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn assert_readable(log: &Log, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(log.read(Offset(i)).unwrap().value, value(i), "record {i}");
    }
}

/// Opening the same damaged directory twice gives the same report, and the files
/// are not touched by a refused open.
fn refused_twice(dir: &Path) -> Damage {
    let before = fs::read(store(dir, 0)).ok();
    let (first, message) = damage_of(Log::open(dir, config()));
    let (second, _) = damage_of(Log::open(dir, config()));
    assert_eq!(first, second, "{message}");
    assert_eq!(
        fs::read(store(dir, 0)).ok(),
        before,
        "a refused open changed nothing"
    );
    assert!(message.contains("commitlogd repair") || !first.repairable_by_truncation);
    first
}

#[test]
fn damaged_length_field_is_corruption() {
    let dir = closed_log("len-field", 300);
    let base = (300 / PER_SEGMENT) * PER_SEGMENT; // the active segment
    edit(&store(dir.path(), base), |b| b[5] = 0x5a);
    let damage = refused_twice(dir.path());
    assert_eq!(damage.first_offset, Offset(base));
    assert_eq!(damage.durable_end, Some(Offset(300)));
    assert!(damage.repairable_by_truncation);
    let (log, cut) = Log::open_and_repair(dir.path(), config()).unwrap();
    let cut = cut.expect("repair reports its cut");
    assert_eq!((cut.from, cut.to), (Offset(base), Offset(300)));
    assert_eq!(log.next_offset(), Offset(base));
    assert_readable(&log, 0, base);
}

#[test]
fn zeroed_page_in_the_active_store_is_corruption() {
    let dir = closed_log("zero-page", 400);
    let base = (400 / PER_SEGMENT) * PER_SEGMENT;
    let count = 400 - base;
    assert!(
        count * RECORD_BYTES > 3 * 4096,
        "the active store spans pages"
    );
    edit(&store(dir.path(), base), |b| b[4096..8192].fill(0));
    let damage = refused_twice(dir.path());
    assert_eq!(damage.first_offset, Offset(base + 4096 / RECORD_BYTES));
    assert_eq!(damage.durable_end, Some(Offset(400)));
}

#[test]
fn store_truncated_on_a_record_boundary_is_corruption() {
    let dir = closed_log("trunc-boundary", 400);
    let base = (400 / PER_SEGMENT) * PER_SEGMENT;
    let keep = 10;
    fs::OpenOptions::new()
        .write(true)
        .open(store(dir.path(), base))
        .unwrap()
        .set_len(keep * RECORD_BYTES)
        .unwrap();
    let damage = refused_twice(dir.path());
    assert_eq!(damage.first_offset, Offset(base + keep));
    assert_eq!(damage.known_end, Offset(400));
}

#[test]
fn missing_first_segment_is_corruption_not_a_new_start() {
    let dir = closed_log("missing-first", 3 * PER_SEGMENT + 10);
    fs::remove_file(store(dir.path(), 0)).unwrap();
    fs::remove_file(dir.path().join(format!("{:020}.index", 0))).unwrap();
    let damage = refused_twice(dir.path());
    assert_eq!(damage.first_offset, Offset(0));
    assert!(
        !damage.repairable_by_truncation,
        "it would drop the whole log"
    );
}

#[test]
fn missing_middle_segment_is_corruption() {
    let dir = closed_log("missing-middle", 3 * PER_SEGMENT + 10);
    fs::remove_file(store(dir.path(), PER_SEGMENT)).unwrap();
    fs::remove_file(dir.path().join(format!("{PER_SEGMENT:020}.index"))).unwrap();
    let damage = refused_twice(dir.path());
    assert_eq!(damage.first_offset, Offset(PER_SEGMENT));
    assert!(damage.repairable_by_truncation);
    let (log, cut) = Log::open_and_repair(dir.path(), config()).unwrap();
    assert_eq!(cut.map(|c| c.from), Some(Offset(PER_SEGMENT)));
    assert_eq!(log.next_offset(), Offset(PER_SEGMENT));
    assert_readable(&log, 0, PER_SEGMENT);
}

#[test]
fn sealed_segment_flip_zero_and_garbage_stay_local() {
    let n = 3 * PER_SEGMENT + 10;
    let dir = closed_log("sealed-local", n);
    // A flipped value byte of record 5, a zeroed page in segment 1, and 1000
    // bytes of garbage after segment 2.
    edit(&store(dir.path(), 0), |b| {
        b[5 * RECORD_BYTES as usize + 40] ^= 1
    });
    edit(&store(dir.path(), PER_SEGMENT), |b| b[8192..12288].fill(0));
    edit(&store(dir.path(), 2 * PER_SEGMENT), |b| {
        b.extend(std::iter::repeat_n(0x77, 1000))
    });
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.next_offset(), Offset(n));
    let bad = |o: u64| matches!(log.read(Offset(o)), Err(StorageError::CorruptRecord { offset, .. }) if offset.0 == o);
    assert!(bad(5));
    assert_readable(&log, 0, 5);
    assert_readable(&log, 6, PER_SEGMENT + 64);
    let zeroed = (PER_SEGMENT + 64)..(PER_SEGMENT + 96);
    for o in zeroed.clone() {
        assert!(bad(o), "record {o} in the zeroed page");
    }
    assert_readable(&log, zeroed.end, n);
    // Range reads return what precedes the damage, fail at it, work after it.
    assert_eq!(log.read_range(Offset(0), u64::MAX).unwrap().len(), 5);
    assert!(matches!(
        log.read_range(Offset(5), u64::MAX),
        Err(StorageError::CorruptRecord {
            offset: Offset(5),
            ..
        })
    ));
    let after = log.read_range(Offset(6), u64::MAX).unwrap();
    assert_eq!(after.len() as u64, PER_SEGMENT + 64 - 6);
    let tail = log.read_range(Offset(zeroed.end), u64::MAX).unwrap();
    assert_eq!(tail.last().map(|r| r.offset), Some(Offset(n - 1)));
}

/// The last record written after the last sync, cut at every byte: a torn tail,
/// cut; opening again gives the same state.
#[test]
fn torn_unsynced_tail_is_cut_and_reopening_is_stable() {
    let dir = closed_log("torn", 40);
    let log = Log::open(dir.path(), config()).unwrap();
    append(&log, 40, 41);
    drop(log); // never synced
    let src = store(dir.path(), 0);
    let full = fs::metadata(&src).unwrap().len();
    for cut in (full - RECORD_BYTES)..full {
        let copy = TempDir::new("torn-copy");
        for entry in fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
        fs::OpenOptions::new()
            .write(true)
            .open(store(copy.path(), 0))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let log = Log::open(copy.path(), config()).unwrap();
        assert_eq!(log.next_offset(), Offset(40), "cut at {cut}");
        drop(log);
        let log = Log::open(copy.path(), config()).unwrap();
        assert_eq!(log.next_offset(), Offset(40), "second open, cut at {cut}");
        assert_readable(&log, 0, 40);
    }
}

/// A log written before checkpoints existed still opens; its torn tail is cut and
/// damage followed by valid records is still refused (the evidence rule).
#[test]
fn log_without_checkpoint_uses_the_evidence_rule() {
    let dir = closed_log("no-checkpoint", 40);
    fs::remove_file(dir.path().join(checkpoint::FILE_NAME)).unwrap();
    let len = fs::metadata(store(dir.path(), 0)).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(store(dir.path(), 0))
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.next_offset(), Offset(39));
    log.close().unwrap();
    fs::remove_file(dir.path().join(checkpoint::FILE_NAME)).unwrap();
    edit(&store(dir.path(), 0), |b| {
        b[3 * RECORD_BYTES as usize + 50] ^= 4
    });
    let (damage, _) = damage_of(Log::open(dir.path(), config()));
    assert_eq!(damage.first_offset, Offset(3));
    assert_eq!(damage.durable_end, None);
}

/// Truncation lowers the checkpoint first, so a truncated log reopens cleanly.
#[test]
fn truncation_and_prefix_removal_keep_the_checkpoint_honest() {
    let dir = TempDir::new("honest-checkpoint");
    let log = Log::open(dir.path(), config()).unwrap();
    append(&log, 0, 3 * PER_SEGMENT);
    log.sync().unwrap();
    log.truncate_suffix(Some(Offset(PER_SEGMENT + 3))).unwrap();
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.next_offset(), Offset(PER_SEGMENT + 4));
    append(&log, PER_SEGMENT + 4, 3 * PER_SEGMENT);
    log.sync().unwrap();
    log.truncate_prefix(Offset(PER_SEGMENT)).unwrap();
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.first_offset(), Offset(PER_SEGMENT));
    assert_readable(&log, PER_SEGMENT, 3 * PER_SEGMENT);
}
