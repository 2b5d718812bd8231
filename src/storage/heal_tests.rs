//! Tests of self-healing: `Log::open_for_replica` quarantines damage of sealed
//! segments instead of cutting the log, and `Log::rebuild_sealed` rebuilds such
//! a segment from its intact records plus supplied ones, byte for byte.

use std::fs;
use std::path::{Path, PathBuf};

use super::fault_tests::{config, value, PER_SEGMENT, RECORD_BYTES};
use super::tests::TempDir;
use super::*;
/// Three sealed segments and a short active one.
const N: u64 = 3 * PER_SEGMENT + 10;
/// The middle sealed segment most tests damage.
const SEG: u64 = PER_SEGMENT;

/// Record `SEG + 5` carries, inside its value, the valid encoding of a different
/// record `SEG + 6` (a client may store anything, log bytes included).
const HOST: u64 = SEG + 5;

fn record(i: u64) -> Record {
    let mut value = value(i);
    if i == HOST {
        let mut fake = Vec::new();
        let impostor = NewRecord {
            term: Term(77),
            kind: RecordKind::Data,
            value: b"fake",
        };
        super::record::encode_into(&mut fake, HOST + 1, &impostor);
        value[20..20 + fake.len()].copy_from_slice(&fake);
    }
    Record {
        offset: Offset(i),
        term: Term(1 + i / 100),
        kind: if i.is_multiple_of(97) {
            RecordKind::NoOp
        } else {
            RecordKind::Data
        },
        value,
    }
}

fn records(from: u64, to: u64) -> Vec<Record> {
    (from..to).map(record).collect()
}

/// A closed log of `N` records (its checkpoint says durable end `N`).
fn closed_log(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    let log = Log::open(dir.path(), config()).unwrap();
    for chunk in records(0, N).chunks(50) {
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
    log.close().unwrap();
    dir
}

fn store(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.store"))
}

fn index(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// The bytes of a segment's store and index (`None`: missing).
fn segment_bytes(dir: &Path, base: u64) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        fs::read(store(dir, base)).ok(),
        fs::read(index(dir, base)).ok(),
    )
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn is_damaged(log: &Log, offset: u64) -> bool {
    matches!(log.read(Offset(offset)), Err(StorageError::CorruptRecord { offset: o, .. }) if o.0 == offset)
}

fn assert_readable(log: &Log, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(log.read(Offset(i)).unwrap(), record(i), "record {i}");
    }
}

/// Files of the log directory whose names end in `.tmp`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// After a rebuild: the segment's files equal the undamaged originals, every
/// record reads back, nothing is listed as damaged, and a strict open accepts
/// the log.
fn assert_healed(log: Log, dir: &Path, base: u64, original: &(Option<Vec<u8>>, Option<Vec<u8>>)) {
    assert_eq!(
        &segment_bytes(dir, base),
        original,
        "rebuilt files are byte-identical"
    );
    assert_readable(&log, 0, N);
    assert_eq!(log.damaged_ranges(), Vec::new());
    assert!(temp_files(dir).is_empty());
    drop(log);
    let log = Log::open(dir, config()).unwrap();
    assert_eq!(
        (log.first_offset(), log.next_offset()),
        (Offset(0), Offset(N))
    );
    assert_readable(&log, 0, N);
}

#[test]
fn flipped_value_byte_is_rebuilt_byte_for_byte() {
    let dir = closed_log("heal-flip");
    let original = segment_bytes(dir.path(), SEG);
    edit(&store(dir.path(), SEG), |b| {
        b[5 * RECORD_BYTES as usize + 40] ^= 0x20
    });
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    // Only the structure of a sealed segment is checked at open.
    assert_eq!(recovery, ReplicaRecovery::default());
    assert!(is_damaged(&log, SEG + 5));
    assert_readable(&log, SEG + 6, N);
    let report = log
        .rebuild_sealed(Offset(SEG + 5), &[record(SEG + 5)])
        .unwrap();
    assert_eq!(
        report,
        RebuildReport {
            segment: Offset(SEG),
            end: Offset(2 * SEG),
            local_records: PER_SEGMENT - 1,
            supplied_records: 1,
            ignored_records: 0,
            store_bytes: PER_SEGMENT * RECORD_BYTES,
        }
    );
    assert_eq!(log.read(Offset(SEG + 5)).unwrap(), record(SEG + 5));
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn zeroed_page_spanning_records_is_rebuilt() {
    let dir = closed_log("heal-page");
    let original = segment_bytes(dir.path(), SEG);
    edit(&store(dir.path(), SEG), |b| b[8192..12288].fill(0));
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let zeroed = (SEG + 8192 / RECORD_BYTES)..(SEG + 12288 / RECORD_BYTES);
    for o in zeroed.clone() {
        assert!(is_damaged(&log, o), "record {o}");
    }
    // The supply may overlap intact records (equal ones are fine) and reach
    // outside the segment (ignored).
    let supply = records(zeroed.start - 4, zeroed.end + 4)
        .into_iter()
        .chain(records(N - 2, N))
        .collect::<Vec<_>>();
    let report = log.rebuild_sealed(Offset(SEG), &supply).unwrap();
    assert_eq!(report.supplied_records, zeroed.end - zeroed.start);
    assert_eq!(report.ignored_records, 8 + 2);
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn damaged_index_slot_is_rebuilt_from_the_intact_store() {
    let dir = closed_log("heal-slot");
    let original = segment_bytes(dir.path(), SEG);
    edit(&index(dir.path(), SEG), |b| b[7 * 8] ^= 0x01);
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(is_damaged(&log, SEG + 7));
    let report = log.rebuild_sealed(Offset(SEG + 100), &[]).unwrap();
    assert_eq!(report.local_records, PER_SEGMENT);
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn missing_middle_segment_is_quarantined_then_recreated() {
    let dir = closed_log("heal-missing");
    let original = segment_bytes(dir.path(), SEG);
    fs::remove_file(store(dir.path(), SEG)).unwrap();
    fs::remove_file(index(dir.path(), SEG)).unwrap();
    assert!(matches!(
        Log::open(dir.path(), config()),
        Err(StorageError::Corrupt { .. })
    ));
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    let expected = DamagedRange {
        segment: Offset(SEG),
        segment_end: Offset(2 * SEG),
        first: Offset(SEG),
        end: Offset(2 * SEG),
        below_durable_end: true,
        reason: recovery.damaged[0].reason.clone(),
    };
    assert_eq!(recovery.cut, None);
    assert_eq!(recovery.damaged, vec![expected.clone()]);
    assert_eq!(log.damaged_ranges(), vec![expected]);
    assert_eq!(
        (log.first_offset(), log.next_offset()),
        (Offset(0), Offset(N))
    );
    assert_eq!(log.segment_count(), 4, "no later segment was deleted");
    assert_readable(&log, 0, SEG);
    assert_readable(&log, 2 * SEG, N);
    for o in [SEG, SEG + 1, 2 * SEG - 1] {
        assert!(is_damaged(&log, o), "record {o}");
    }
    // A range read stops before the quarantined segment and fails at it.
    assert_eq!(log.read_range(Offset(SEG - 3), u64::MAX).unwrap().len(), 3);
    assert!(matches!(
        log.read_range(Offset(SEG), u64::MAX),
        Err(StorageError::CorruptRecord { offset, .. }) if offset == Offset(SEG)
    ));
    // An incomplete supply is refused and names what is missing.
    match log.rebuild_sealed(Offset(SEG), &records(SEG, 2 * SEG - 10)) {
        Err(RebuildError::Incomplete {
            missing,
            missing_count,
        }) => {
            assert_eq!(missing, vec![(Offset(2 * SEG - 10), Offset(2 * SEG))]);
            assert_eq!(missing_count, 10);
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert!(!store(dir.path(), SEG).exists());
    assert!(temp_files(dir.path()).is_empty());
    let report = log
        .rebuild_sealed(Offset(SEG), &records(SEG, 2 * SEG))
        .unwrap();
    assert_eq!(report.supplied_records, PER_SEGMENT);
    assert_healed(log, dir.path(), SEG, &original);
}

/// Without a checkpoint the hole is inferred from the previous segment's sealed
/// index, which ends before the next segment starts.
#[test]
fn missing_segment_without_checkpoint_is_quarantined() {
    let dir = closed_log("heal-missing-nocp");
    let original = segment_bytes(dir.path(), SEG);
    fs::remove_file(store(dir.path(), SEG)).unwrap();
    fs::remove_file(index(dir.path(), SEG)).unwrap();
    fs::remove_file(dir.path().join(checkpoint::FILE_NAME)).unwrap();
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    let range = &recovery.damaged[0];
    assert_eq!(
        (range.segment, range.first, range.end),
        (Offset(SEG), Offset(SEG), Offset(2 * SEG))
    );
    assert!(
        !range.below_durable_end,
        "no checkpoint: durability unknown"
    );
    assert_readable(&log, 0, SEG);
    assert_readable(&log, 2 * SEG, N);
    assert!(is_damaged(&log, SEG + 3));
    log.rebuild_sealed(Offset(SEG), &records(SEG, 2 * SEG))
        .unwrap();
    assert_healed(log, dir.path(), SEG, &original);
}

/// A missing index and a damaged store: no usable index, so the whole segment
/// is quarantined; the rebuild still finds every intact record in the store.
#[test]
fn index_and_store_damage_quarantines_the_segment() {
    let dir = closed_log("heal-both");
    let original = segment_bytes(dir.path(), SEG);
    fs::remove_file(index(dir.path(), SEG)).unwrap();
    edit(&store(dir.path(), SEG), |b| {
        b[200 * RECORD_BYTES as usize + 60] ^= 0x04
    });
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    assert_eq!(
        (recovery.damaged[0].first, recovery.damaged[0].end),
        (Offset(SEG), Offset(2 * SEG))
    );
    assert!(is_damaged(&log, SEG));
    assert!(is_damaged(&log, SEG + 300));
    assert_readable(&log, 2 * SEG, N);
    let report = log
        .rebuild_sealed(Offset(SEG), &[record(SEG + 200)])
        .unwrap();
    assert_eq!(report.local_records, PER_SEGMENT - 1);
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn truncated_sealed_store_keeps_its_intact_records_readable() {
    let dir = closed_log("heal-short");
    let original = segment_bytes(dir.path(), SEG);
    let keep = 100 * RECORD_BYTES + 50;
    fs::OpenOptions::new()
        .write(true)
        .open(store(dir.path(), SEG))
        .unwrap()
        .set_len(keep)
        .unwrap();
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    assert_eq!(
        (recovery.damaged[0].first, recovery.damaged[0].end),
        (Offset(SEG + 100), Offset(2 * SEG))
    );
    assert_readable(&log, 0, SEG + 100);
    assert!(is_damaged(&log, SEG + 100));
    assert!(is_damaged(&log, 2 * SEG - 1));
    assert_readable(&log, 2 * SEG, N);
    log.rebuild_sealed(Offset(SEG), &records(SEG + 100, 2 * SEG))
        .unwrap();
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn trailing_garbage_is_listed_and_rebuilt_away() {
    let dir = closed_log("heal-garbage");
    let original = segment_bytes(dir.path(), SEG);
    edit(&store(dir.path(), SEG), |b| {
        b.extend(std::iter::repeat_n(0x5a, 1000))
    });
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    let range = &recovery.damaged[0];
    assert_eq!(
        (range.segment, range.first, range.end),
        (Offset(SEG), Offset(2 * SEG), Offset(2 * SEG)),
        "no record is affected"
    );
    assert_readable(&log, 0, N);
    let report = log.rebuild_sealed(range.segment, &[]).unwrap();
    assert_eq!(report.supplied_records, 0);
    assert_healed(log, dir.path(), SEG, &original);
}

#[test]
fn conflicting_supply_is_refused_and_nothing_changes() {
    let dir = closed_log("heal-conflict");
    edit(&store(dir.path(), SEG), |b| {
        b[5 * RECORD_BYTES as usize + 40] ^= 0x20
    });
    let damaged = segment_bytes(dir.path(), SEG);
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let mut other_term = record(SEG + 6);
    other_term.term = Term(99);
    let mut other_value = record(SEG + 7);
    other_value.value[50] ^= 1;
    for (bad, offset) in [(other_term, SEG + 6), (other_value, SEG + 7)] {
        let supply = [record(SEG + 5), bad];
        match log.rebuild_sealed(Offset(SEG), &supply) {
            Err(RebuildError::Conflict { offset: o, .. }) => assert_eq!(o, Offset(offset)),
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(segment_bytes(dir.path(), SEG), damaged, "nothing written");
        assert!(temp_files(dir.path()).is_empty());
        assert!(is_damaged(&log, SEG + 5));
    }
    // Two different records for one offset.
    let mut twin = record(SEG + 5);
    twin.term = Term(42);
    assert!(matches!(
        log.rebuild_sealed(Offset(SEG), &[record(SEG + 5), twin]),
        Err(RebuildError::InvalidSupply { .. })
    ));
    assert_eq!(segment_bytes(dir.path(), SEG), damaged);
}

#[test]
fn leftover_temporary_files_are_removed_at_open() {
    let dir = closed_log("heal-temp");
    let original = segment_bytes(dir.path(), SEG);
    let store_temp = dir.path().join(format!("{SEG:020}.store.tmp"));
    let index_temp = dir.path().join(format!("{SEG:020}.index.tmp"));
    fs::write(&store_temp, b"half a rebuilt store").unwrap();
    fs::write(&index_temp, [0u8; 24]).unwrap();
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery, ReplicaRecovery::default());
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(segment_bytes(dir.path(), SEG), original);
    assert_readable(&log, 0, N);
}

#[test]
fn active_and_removed_segments_are_refused() {
    let dir = closed_log("heal-refuse");
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(matches!(
        log.rebuild_sealed(Offset(N - 1), &[]),
        Err(RebuildError::NotSealed { active_base, .. }) if active_base == Offset(3 * SEG)
    ));
    log.truncate_prefix(Offset(SEG)).unwrap();
    assert!(matches!(
        log.rebuild_sealed(Offset(3), &records(0, SEG)),
        Err(RebuildError::Removed { first, .. }) if first == Offset(SEG)
    ));
}

/// Retention may remove a quarantined segment (its store may be missing), and a
/// rebuild racing a removal is refused at the swap, leaving no file behind.
#[test]
fn retention_removes_a_quarantined_segment() {
    let dir = closed_log("heal-retention");
    fs::remove_file(store(dir.path(), 0)).unwrap();
    fs::remove_file(index(dir.path(), 0)).unwrap();
    let by_age = LogConfig {
        retention_age: Some(std::time::Duration::from_secs(3600)),
        ..config()
    };
    let (log, recovery) = Log::open_for_replica(dir.path(), by_age).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    assert_eq!(log.first_offset(), Offset(0), "first offset unchanged");
    assert!(is_damaged(&log, 0));
    // Fresh segments are kept; the storeless quarantined one counts as expired.
    let freed = log.apply_retention(std::time::SystemTime::now()).unwrap();
    assert_eq!(freed, PER_SEGMENT * 8, "only its index slots were counted");
    assert_eq!(log.first_offset(), Offset(SEG));
    assert_eq!(log.damaged_ranges(), Vec::new());
    assert!(matches!(
        log.rebuild_sealed(Offset(0), &records(0, SEG)),
        Err(RebuildError::Removed { .. })
    ));

    // Damage in the next segment; retention removes it between build and swap.
    drop(log);
    edit(&store(dir.path(), SEG), |b| b[100] ^= 1);
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(is_damaged(&log, SEG));
    let built = log.build_sealed(Offset(SEG), &[record(SEG)]).unwrap();
    assert_eq!(temp_files(dir.path()).len(), 2);
    log.truncate_prefix(Offset(2 * SEG)).unwrap();
    assert!(matches!(
        log.swap_in(Offset(SEG), built),
        Err(RebuildError::Removed { .. })
    ));
    assert!(temp_files(dir.path()).is_empty());
    assert!(!store(dir.path(), SEG).exists(), "not resurrected");
    assert_readable(&log, 2 * SEG, N);
}

#[test]
fn truncate_suffix_around_a_quarantined_segment() {
    let dir = closed_log("heal-truncate");
    fs::remove_file(store(dir.path(), SEG)).unwrap();
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    // After it: the quarantined segment stays.
    log.truncate_suffix(Some(Offset(2 * SEG + 5))).unwrap();
    assert_eq!(log.damaged_ranges().len(), 1);
    // Inside it: nothing of it can be kept.
    assert!(matches!(
        log.truncate_suffix(Some(Offset(SEG + 5))),
        Err(StorageError::CorruptRecord { .. })
    ));
    assert_eq!(log.next_offset(), Offset(2 * SEG + 6));
    // At its base: it becomes the (empty) active segment.
    log.truncate_suffix(Some(Offset(SEG - 1))).unwrap();
    assert_eq!(log.next_offset(), Offset(SEG));
    assert_eq!(log.damaged_ranges(), Vec::new());
    let values = records(SEG, SEG + 3);
    let batch: Vec<NewRecord<'_>> = values
        .iter()
        .map(|r| NewRecord {
            term: r.term,
            kind: r.kind,
            value: &r.value,
        })
        .collect();
    log.append_batch(&batch).unwrap();
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_readable(&log, 0, SEG + 3);
}

/// Damage in the active segment is still cut (the Raft layer refetches the tail).
#[test]
fn damage_in_the_active_segment_is_cut() {
    let dir = closed_log("heal-active");
    edit(&store(dir.path(), 3 * SEG), |b| {
        b[3 * RECORD_BYTES as usize + 50] ^= 2
    });
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged, Vec::new());
    assert_eq!(recovery.cut.map(|c| c.from), Some(Offset(3 * SEG + 3)));
    assert_eq!(log.next_offset(), Offset(3 * SEG + 3));
    assert_readable(&log, 0, 3 * SEG + 3);
}

/// A segment whose store holds more records than it should (the next segment
/// starts earlier): strict open refuses, replica open keeps its own records and
/// lists the rest as trailing bytes, and the rebuild drops them.
#[test]
fn records_past_the_segment_end_are_trailing_bytes() {
    let dir = closed_log("heal-overlap");
    let original = segment_bytes(dir.path(), SEG);
    // The next segment's first record appended to this store, index unsealed.
    let extra = fs::read(store(dir.path(), 2 * SEG)).unwrap()[..RECORD_BYTES as usize].to_vec();
    edit(&store(dir.path(), SEG), |b| b.extend_from_slice(&extra));
    edit(&index(dir.path(), SEG), |b| b.extend_from_slice(&[0u8; 16]));
    assert!(Log::open(dir.path(), config()).is_err());
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "{recovery:?}");
    assert_eq!(recovery.damaged[0].first, recovery.damaged[0].end);
    assert_readable(&log, 0, N);
    log.rebuild_sealed(Offset(SEG), &[]).unwrap();
    assert_healed(log, dir.path(), SEG, &original);
}

/// Damage at the start of a record whose value holds a valid frame of the next
/// offset: the search after the damage finds that frame first, but the index
/// says where the real record is, so the rebuild keeps the real one.
#[test]
fn a_frame_inside_a_damaged_value_does_not_pose_as_a_record() {
    let dir = closed_log("heal-impostor");
    let original = segment_bytes(dir.path(), SEG);
    edit(&store(dir.path(), SEG), |b| {
        b[5 * RECORD_BYTES as usize] ^= 0xff
    });
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(is_damaged(&log, HOST));
    assert_eq!(log.read(Offset(HOST + 1)).unwrap(), record(HOST + 1));
    let report = log.rebuild_sealed(Offset(HOST), &[record(HOST)]).unwrap();
    assert_eq!(report.supplied_records, 1);
    assert_healed(log, dir.path(), SEG, &original);
}

/// A crash during a rebuild: before the renames (only temporary files exist),
/// or between them (new store, old or no index). Every such state opens, and
/// reads return the original records or report damage, never other data.
#[test]
fn a_crash_during_a_rebuild_leaves_old_or_new_files() {
    let dir = closed_log("heal-crash");
    let original = segment_bytes(dir.path(), SEG);
    fs::remove_file(store(dir.path(), SEG)).unwrap();
    fs::remove_file(index(dir.path(), SEG)).unwrap();
    let store_temp = dir.path().join(format!("{SEG:020}.store.tmp"));
    // Crash before the renames: the temporary files go, the segment stays missing.
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let built = log
        .build_sealed(Offset(SEG), &records(SEG, 2 * SEG))
        .unwrap();
    assert_eq!(temp_files(dir.path()).len(), 2);
    drop((log, built));
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(recovery.damaged.len(), 1);
    // Crash between the renames: the new store without its index is a whole
    // segment (open rebuilds the index from the store), even for a strict open.
    let built = log
        .build_sealed(Offset(SEG), &records(SEG, 2 * SEG))
        .unwrap();
    fs::rename(&store_temp, store(dir.path(), SEG)).unwrap();
    drop((log, built));
    let log = Log::open(dir.path(), config()).unwrap();
    assert_readable(&log, 0, N);
    assert_eq!(segment_bytes(dir.path(), SEG), original);
    drop(log);

    // The same with a damaged index slot: the new store beside the old index
    // still reports the damaged slot's record as damaged, reads the rest.
    edit(&index(dir.path(), SEG), |b| b[9 * 8 + 1] ^= 0x40);
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let built = log.build_sealed(Offset(SEG), &[]).unwrap();
    fs::rename(&store_temp, store(dir.path(), SEG)).unwrap();
    drop((log, built));
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert!(temp_files(dir.path()).is_empty());
    assert!(is_damaged(&log, SEG + 9));
    assert_readable(&log, SEG + 10, N);
    log.rebuild_sealed(Offset(SEG), &[]).unwrap();
    assert_healed(log, dir.path(), SEG, &original);
}

/// The scrubber reports a quarantined segment as damaged records (one fault per
/// step, merged), never as trailing bytes of a store it cannot index.
#[test]
fn the_scrubber_reports_a_quarantined_segment_as_damaged() {
    let dir = closed_log("heal-scrub");
    fs::remove_file(index(dir.path(), SEG)).unwrap();
    edit(&store(dir.path(), SEG), |b| b[300] ^= 1);
    let (log, recovery) = Log::open_for_replica(dir.path(), config()).unwrap();
    assert_eq!(recovery.damaged.len(), 1);
    let mut scrubber = scrub::Scrubber::new(std::sync::Arc::new(log));
    let faults = scrubber.step(u64::MAX);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].kind, scrub::FaultKind::DamagedRecords);
    assert_eq!(
        (faults[0].first, faults[0].end),
        (Offset(SEG), Offset(2 * SEG))
    );
}

/// Reads and appends run while a segment is rebuilt: readers see the original
/// records or, before the swap, the damaged one's typed error; never other data.
#[test]
fn reads_and_appends_go_on_during_a_rebuild() {
    let dir = closed_log("heal-concurrent");
    let original = segment_bytes(dir.path(), SEG);
    edit(&store(dir.path(), SEG), |b| {
        b[7 * RECORD_BYTES as usize + 60] ^= 0x10
    });
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let log = std::sync::Arc::new(log);
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let rounds = std::sync::Arc::new(AtomicU64::new(0));
    let reader = {
        let (log, stop, rounds) = (log.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            // Bounded: stops when told, or after a fixed number of rounds.
            while !stop.load(Ordering::Acquire) && rounds.load(Ordering::Relaxed) < 100_000_000 {
                let o = SEG + rounds.load(Ordering::Relaxed) % PER_SEGMENT;
                match log.read(Offset(o)) {
                    Ok(r) => assert_eq!(r, record(o)),
                    Err(StorageError::CorruptRecord { offset, .. }) => {
                        assert_eq!(offset.0, SEG + 7)
                    }
                    Err(e) => panic!("read {o}: {e}"),
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The reader is reading before the appends and the rebuild start, and still
    // after them (a loaded machine may not schedule it at once).
    let reader_moved_past = |seen: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while rounds.load(Ordering::Relaxed) <= seen {
            assert!(std::time::Instant::now() < deadline, "the reader never ran");
            std::thread::yield_now();
        }
    };
    reader_moved_past(0);
    let value = record(N).value;
    for round in 0..20u64 {
        let appended = log
            .append(NewRecord {
                term: Term(50),
                kind: RecordKind::Data,
                value: &value,
            })
            .unwrap();
        assert_eq!(appended, Offset(N + round));
        if round == 10 {
            log.rebuild_sealed(Offset(SEG), &[record(SEG + 7)]).unwrap();
        }
    }
    reader_moved_past(rounds.load(Ordering::Relaxed));
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    assert_eq!(log.read(Offset(SEG + 7)).unwrap(), record(SEG + 7));
    assert_eq!(segment_bytes(dir.path(), SEG), original);
    assert_eq!(log.next_offset(), Offset(N + 20));
}

/// A segment cut away by a suffix truncation and written again with the same
/// range while it was being rebuilt is not replaced by the rebuilt files.
#[test]
fn a_segment_written_again_during_a_rebuild_is_not_replaced() {
    let dir = closed_log("heal-rewritten");
    edit(&store(dir.path(), SEG), |b| b[100] ^= 1);
    let (log, _) = Log::open_for_replica(dir.path(), config()).unwrap();
    let built = log.build_sealed(Offset(SEG), &[record(SEG)]).unwrap();
    log.truncate_suffix(Some(Offset(SEG - 1))).unwrap();
    let again = records(SEG, N);
    for chunk in again.chunks(50) {
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
    assert_eq!(log.segment_count(), 4, "the same layout again");
    let rewritten = segment_bytes(dir.path(), SEG);
    assert!(matches!(
        log.swap_in(Offset(SEG), built),
        Err(RebuildError::Removed { .. })
    ));
    assert_eq!(segment_bytes(dir.path(), SEG), rewritten);
    assert!(temp_files(dir.path()).is_empty());
    assert_readable(&log, 0, N);
}
