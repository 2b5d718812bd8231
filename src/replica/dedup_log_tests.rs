//! Feeding a log into the dedup state: headers, batches split over appends, cuts,
//! the leader's own proposals, and the rebuild from storage.

use super::*;
use crate::raft::{LogStart, MemStorage};
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

/// A batch of `m` at `h` in term `t`: its header and records.
fn batch(h: u64, t: Term, m: &BatchMeta) -> Vec<Entry> {
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
    assert_eq!(duplicate_at(&mut d, &m), Some((6, 8)));
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
    assert_eq!(duplicate_at(&mut d, &m), Some((2, 4)));
}

#[test]
fn a_batch_cut_by_a_new_term_keeps_its_prefix() {
    let mut d = DedupLog::new(DedupConfig::default());
    let m = meta(7, 0, 3);
    let all = batch(1, T1, &m);
    d.appended(&all[..3]);
    // A new leader holding only the prefix appends its no-op after it.
    d.appended(&[noop(4, T2)]);
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
    d.record_own(&b, Index(4), 1004);
    d.proposed(Index(1), Index(5), T1);
    let mut ents = batch(1, T1, &a);
    ents.extend(batch(4, T1, &b));
    d.appended(&ents);
    assert_eq!(duplicate_at(&mut d, &a), Some((2, 3)));
    assert_eq!(duplicate_at(&mut d, &b), Some((5, 5)));
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
    ents.push(data(5, T1));
    ents.extend(batch(6, T1, &meta(2, 0, 1)));
    ents.extend(batch(8, T1, &meta(1, 2, 3)));
    s.append(&ents).unwrap();
    let mut d = DedupLog::rebuild(DedupConfig::default(), &s);
    assert_eq!(duplicate_at(&mut d, &meta(1, 0, 2)), Some((3, 4)));
    assert_eq!(duplicate_at(&mut d, &meta(2, 0, 1)), Some((7, 7)));
    assert_eq!(duplicate_at(&mut d, &meta(1, 2, 3)), Some((9, 11)));
    assert_eq!(d.state().end_offset(), Offset(12));
}

#[test]
fn headers_round_trip_and_bad_ones_are_typed_errors() {
    let m = meta(9, 4, 2);
    let bytes = encode_header(&m, 123);
    assert_eq!(bytes.len(), HEADER_BYTES);
    assert_eq!(decode_header(&bytes), Ok((m, 123)));
    assert!(decode_header(&bytes[..HEADER_BYTES - 1]).is_err());
    let mut long = bytes.clone();
    long.push(0);
    assert!(decode_header(&long).is_err());
    // An undecodable header is skipped, not a panic.
    let mut d = DedupLog::new(DedupConfig::default());
    let mut bad = header(1, T1, &m);
    bad.data = vec![9u8; 3].into();
    d.appended(&[bad, data(2, T1)]);
    assert_eq!(d.state().producer_count(), 0);
}
