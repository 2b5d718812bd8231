//! Feeding a log into the dedup state: batch starts, batches split over appends,
//! cuts, the leader's own proposals, compaction's placeholders, the legacy header
//! entries, and the rebuild from storage.

use super::*;
use crate::raft::{LogStart, MemStorage, StorageError};
use crate::replica::dedup::{ProducerEpoch, ProducerId};

const T1: Term = Term(1);
const T2: Term = Term(2);

fn meta(pid: u64, first_seq: u32, count: u32) -> BatchMeta {
    BatchMeta {
        producer: ProducerId(pid),
        epoch: ProducerEpoch(0),
        seq: BatchSeq::new(first_seq, count).unwrap(),
    }
}

/// A legacy header entry (records follow it).
fn header(index: u64, term: Term, m: &BatchMeta) -> Entry {
    Entry {
        index: Index(index),
        term,
        kind: RecordKind::ProducerBatch,
        data: encode_header(m, 1000 + index).into(),
    }
}

fn data(index: u64, term: Term) -> Entry {
    Entry {
        index: Index(index),
        term,
        kind: RecordKind::Data,
        data: format!("v{index}").into_bytes().into(),
    }
}

fn noop(index: u64, term: Term) -> Entry {
    Entry {
        index: Index(index),
        term,
        kind: RecordKind::NoOp,
        data: Vec::new().into(),
    }
}

/// A batch of `m` starting at `f` in term `t`, as leaders write it now: the first
/// record carries the header.
fn batch(f: u64, t: Term, m: &BatchMeta) -> Vec<Entry> {
    let start = Entry {
        index: Index(f),
        term: t,
        kind: RecordKind::DataV1Batch,
        data: crate::records::batch_start_bytes(b"v", &encode_header(m, 1000 + f)).into(),
    };
    let mut v = vec![start];
    v.extend((1..u64::from(m.seq.count())).map(|k| data(f + k, t)));
    v
}

/// A batch as the first idempotence builds wrote it: a header entry at `h`, then
/// the records.
fn legacy_batch(h: u64, t: Term, m: &BatchMeta) -> Vec<Entry> {
    let mut v = vec![header(h, t, m)];
    v.extend((1..=u64::from(m.seq.count())).map(|k| data(h + k, t)));
    v
}

fn duplicate_at(d: &mut DedupLog, m: &BatchMeta) -> Option<(u64, u64)> {
    match d.check(m, 2000) {
        Verdict::Duplicate {
            first_offset,
            last_offset,
            ..
        } => Some((first_offset.0, last_offset.0)),
        _ => None,
    }
}

#[test]
fn a_header_and_its_records_make_a_retry_a_duplicate() {
    let mut d = DedupLog::new(DedupConfig::default());
    let m = meta(7, 0, 3);
    d.appended(&batch(5, T1, &m));
    assert_eq!(duplicate_at(&mut d, &m), Some((5, 7)));
    assert_eq!(d.check(&meta(7, 3, 1), 2000), Verdict::Append);
    d.state().check_invariants().unwrap();
}

#[test]
fn a_batch_split_over_appends_is_recorded_once_whole() {
    let mut d = DedupLog::new(DedupConfig::default());
    let m = meta(7, 0, 3);
    let all = batch(1, T1, &m);
    d.appended(&all[..2]);
    assert!(d.state().producer(ProducerId(7)).is_none(), "not whole yet");
    d.appended(&all[2..]);
    assert_eq!(duplicate_at(&mut d, &m), Some((1, 3)));
}

#[test]
fn a_batch_cut_by_a_new_term_keeps_its_prefix() {
    let mut d = DedupLog::new(DedupConfig::default());
    let m = meta(7, 0, 3);
    let all = batch(1, T1, &m);
    d.appended(&all[..2]);
    // A new leader holding only the prefix appends its no-op after it.
    d.appended(&[noop(3, T2)]);
    let p = d.state().producer(ProducerId(7)).expect("prefix recorded");
    assert_eq!(p.next_seq(), 2);
    // The whole batch again does not match what the log holds: typed error.
    assert_eq!(d.check(&m, 2000), Verdict::OutOfOrder { expected_seq: 2 });
}

#[test]
fn a_cut_that_replaces_a_batch_forgets_it() {
    let mut d = DedupLog::new(DedupConfig::default());
    let m = meta(7, 0, 2);
    d.appended(&batch(1, T1, &m));
    // Another leader overwrites from index 1 with its own entries.
    d.appended(&[noop(1, T2), data(2, T2)]);
    assert_eq!(
        d.check(&m, 2000),
        Verdict::Append,
        "not in the log any more"
    );
}

#[test]
fn the_leaders_own_proposal_is_not_fed_twice() {
    let mut d = DedupLog::new(DedupConfig::default());
    let a = meta(7, 0, 2);
    let b = meta(7, 2, 1);
    d.record_own(&a, Index(1), 1001);
    assert_eq!(d.check(&b, 2000), Verdict::Append, "sees its own batch");
    d.record_own(&b, Index(3), 1003);
    d.proposed(Index(1), Index(3), T1);
    let mut ents = batch(1, T1, &a);
    ents.extend(batch(3, T1, &b));
    d.appended(&ents);
    assert_eq!(duplicate_at(&mut d, &a), Some((1, 2)));
    assert_eq!(duplicate_at(&mut d, &b), Some((3, 3)));
    d.state().check_invariants().unwrap();
}

#[test]
fn a_refused_proposal_takes_its_batches_back() {
    let mut d = DedupLog::new(DedupConfig::default());
    let a = meta(7, 0, 2);
    d.record_own(&a, Index(1), 1001);
    d.truncate_from(Index(1));
    assert_eq!(d.check(&a, 2000), Verdict::Append);
}

#[test]
fn rebuild_from_storage_equals_feeding() {
    let mut s = MemStorage::new(LogStart::default());
    let mut ents = vec![noop(1, T1)];
    ents.extend(batch(2, T1, &meta(1, 0, 2)));
    ents.push(data(4, T1));
    ents.extend(batch(5, T1, &meta(2, 0, 1)));
    ents.extend(batch(6, T1, &meta(1, 2, 3)));
    s.append(&ents).unwrap();
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert_eq!(duplicate_at(&mut d, &meta(1, 0, 2)), Some((2, 3)));
    assert_eq!(duplicate_at(&mut d, &meta(2, 0, 1)), Some((5, 5)));
    assert_eq!(duplicate_at(&mut d, &meta(1, 2, 3)), Some((6, 8)));
    assert_eq!(d.state().end_offset(), Offset(9));
}

#[test]
fn headers_round_trip_and_bad_ones_are_typed_errors() {
    let m = meta(9, 4, 2);
    let bytes = encode_header(&m, 123);
    assert_eq!(bytes.len(), PRODUCER_HEADER_BYTES);
    assert_eq!(decode_header(&bytes), Ok((m, 123)));
    assert!(decode_header(&bytes[..PRODUCER_HEADER_BYTES - 1]).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(decode_header(&long).is_err());
    // An undecodable header, or a batch start too short to hold one, is skipped,
    // not a panic.
    let mut d = DedupLog::new(DedupConfig::default());
    let mut bad = header(1, T1, &m);
    bad.data = vec![9u8; 3].into();
    let mut short = batch(3, T1, &m).remove(0);
    short.data = vec![1u8; 5].into();
    let mut garbled = batch(4, T1, &m).remove(0);
    garbled.data = vec![9u8; PRODUCER_HEADER_BYTES + 4].into();
    d.appended(&[bad, data(2, T1), short, garbled, data(5, T1)]);
    assert_eq!(d.state().producer_count(), 0);
}

#[test]
fn legacy_header_entries_are_still_read() {
    let mut s = MemStorage::new(LogStart::default());
    let mut ents = legacy_batch(1, T1, &meta(1, 0, 2));
    ents.extend(batch(4, T1, &meta(1, 2, 1)));
    ents.extend(legacy_batch(5, T1, &meta(2, 0, 1)));
    s.append(&ents).unwrap();
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert_eq!(duplicate_at(&mut d, &meta(1, 0, 2)), Some((2, 3)));
    assert_eq!(duplicate_at(&mut d, &meta(1, 2, 1)), Some((4, 4)));
    assert_eq!(duplicate_at(&mut d, &meta(2, 0, 1)), Some((6, 6)));
}

#[test]
fn compaction_placeholders_keep_their_batch_known() {
    // Compaction replaced the batch's first record by its header alone and a
    // later record by an empty no-op of the same term: a restart still knows it.
    let m = meta(3, 0, 3);
    let mut ents = batch(1, T1, &m);
    ents[0].kind = RecordKind::CompactedBatchStart;
    ents[0].data = encode_header(&m, 1001).into();
    ents[1] = noop(2, T1);
    ents.extend(batch(4, T1, &meta(3, 3, 1)));
    ents[3].kind = RecordKind::CompactedBatchStart;
    ents[3].data = encode_header(&meta(3, 3, 1), 1004).into();
    let mut s = MemStorage::new(LogStart::default());
    s.append(&ents).unwrap();
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert_eq!(duplicate_at(&mut d, &m), Some((1, 3)));
    assert_eq!(duplicate_at(&mut d, &meta(3, 3, 1)), Some((4, 4)));
    assert_eq!(d.check(&meta(3, 4, 1), 2000), Verdict::Append);
}

/// A log whose entries in `damaged` do not read (as a damaged segment).
struct DamagedStorage {
    inner: MemStorage,
    damaged: std::cell::RefCell<std::collections::BTreeSet<u64>>,
}

impl Storage for DamagedStorage {
    fn initial_state(&self) -> Result<(crate::raft::HardState, LogStart), StorageError> {
        self.inner.initial_state()
    }
    fn first_index(&self) -> Index {
        self.inner.first_index()
    }
    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.inner.term(index)
    }
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let bad = self.damaged.borrow().range(lo.0..hi.0).next().copied();
        match bad {
            Some(b) if b == lo.0 => Err(StorageError::Damaged(lo)),
            Some(b) => self.inner.entries(lo, Index(b), max_bytes),
            None => self.inner.entries(lo, hi, max_bytes),
        }
    }
}

#[test]
fn a_damaged_batch_start_makes_the_state_incomplete_until_healed() {
    // Producer 9's only batch starts at 3; that entry does not read at open. No
    // rule could refuse its retry (producer 9 is seen nowhere else), so the state
    // is incomplete until the entry reads again.
    let mut inner = MemStorage::new(LogStart::default());
    let mut ents = batch(1, T1, &meta(1, 0, 2));
    ents.extend(batch(3, T1, &meta(9, 0, 2)));
    inner.append(&ents).unwrap();
    let s = DamagedStorage {
        inner,
        damaged: std::cell::RefCell::new([3].into()),
    };
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert!(!d.is_complete());
    // What it would persist before a cut names no epoch: producer 9's batch at 3
    // may carry a newer epoch than this state knows.
    assert!(d.floor().epochs.is_empty());
    assert!(!d.try_complete(&s), "still damaged");
    // Healed: the retry is now answered with the original offsets.
    s.damaged.borrow_mut().clear();
    assert!(d.try_complete(&s));
    assert_eq!(duplicate_at(&mut d, &meta(9, 0, 2)), Some((3, 4)));
    assert_eq!(duplicate_at(&mut d, &meta(1, 0, 2)), Some((1, 2)));
}

#[test]
fn cutting_the_unreadable_entries_away_completes_the_state() {
    let mut inner = MemStorage::new(LogStart::default());
    inner.append(&batch(1, T1, &meta(1, 0, 3))).unwrap();
    let s = DamagedStorage {
        inner,
        damaged: std::cell::RefCell::new([3].into()),
    };
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert!(!d.is_complete());
    // A new leader overwrites from 3 on.
    d.appended(&[noop(3, T2)]);
    assert!(d.is_complete());
}

#[test]
fn the_producer_floor_keeps_a_producer_whose_batches_were_all_cut_unknown() {
    // Producer 9 wrote only the batch at 1..=2, then retention cut through 4 (the
    // simulator's seed 1210: its client kept retrying that batch). Producer 1 is
    // the only one the retained log shows.
    let start = LogStart {
        index: Index(4),
        term: T1,
        membership: crate::raft::Membership::with_voters([1]),
    };
    let mut s = MemStorage::new(start);
    s.append(&batch(5, T1, &meta(1, 0, 2))).unwrap();
    // Without the floor the retry looks like a new producer's first batch.
    let mut blind = DedupLog::rebuild(DedupConfig::default(), &s, &ProducerFloor::default());
    assert_eq!(blind.check(&meta(9, 0, 2), 2000), Verdict::Append);
    // With the floor the driver persisted before the cut, it is refused.
    let floor = ProducerFloor {
        high: 9,
        epochs: Vec::new(),
    };
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s, &floor);
    assert_eq!(d.check(&meta(9, 0, 2), 2000), Verdict::UnknownProducer);
    assert_eq!(duplicate_at(&mut d, &meta(1, 0, 2)), Some((5, 6)));
    // A producer handed out later is new.
    assert_eq!(d.check(&meta(10, 0, 1), 2000), Verdict::Append);
    assert_eq!(d.producer_high_water(), 9);
}

/// A named producer whose batches retention cut entirely, before a restart: the
/// floor the driver persisted carries its epoch, so the rebuilt state refuses the cut
/// batch's retries but lets the re-initialised producer (same id, newer epoch) start.
#[test]
fn the_persisted_floor_lets_a_named_producer_whose_batches_were_cut_start_again() {
    // Producer 9 (epoch 2) wrote 1..=2 and producer 1 wrote 5..=6; the driver
    // persisted its floor, then retention cut through 4.
    let mut full = MemStorage::new(LogStart::default());
    let named = BatchMeta {
        epoch: ProducerEpoch(2),
        ..meta(9, 0, 2)
    };
    full.append(&batch(1, T1, &named)).unwrap();
    full.append(&[data(3, T1), data(4, T1)]).unwrap();
    full.append(&batch(5, T1, &meta(1, 0, 2))).unwrap();
    let floor = DedupLog::rebuild(DedupConfig::default(), &full, &ProducerFloor::default()).floor();
    assert_eq!(floor.high, 9);
    assert_eq!(floor.epochs, vec![(1, 0), (9, 2)]);
    let start = LogStart {
        index: Index(4),
        term: T1,
        membership: crate::raft::Membership::with_voters([1]),
    };
    let mut cut = MemStorage::new(start);
    cut.append(&batch(5, T1, &meta(1, 0, 2))).unwrap();
    let mut d = DedupLog::rebuild(DedupConfig::default(), &cut, &floor);
    assert_eq!(d.check(&named, 2000), Verdict::UnknownProducer, "a retry");
    let restarted = BatchMeta {
        epoch: ProducerEpoch(3),
        ..meta(9, 0, 1)
    };
    assert_eq!(d.check(&restarted, 2000), Verdict::Append);
    // An older floor file (no epochs): refused, as before.
    let old = ProducerFloor {
        high: 9,
        epochs: Vec::new(),
    };
    let mut d = DedupLog::rebuild(DedupConfig::default(), &cut, &old);
    assert_eq!(d.check(&restarted, 2000), Verdict::UnknownProducer);
}
