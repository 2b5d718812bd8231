//! Tests of the dedup state machine: scenarios that read as the rules of the module
//! doc, a model-checked random walk (soundness against a model log, bounds and
//! invariants after every step, rebuild equivalence), and the batch header codec.

use std::num::{NonZeroU32, NonZeroU64};

use super::*;
use crate::raft::SplitMix64;

const EXPIRY_MS: u64 = 10_000;
const WALK_EXPIRY_MS: u64 = 2_000;
/// Clients of one walk: more than the smaller producer bounds it draws, fewer than
/// the larger.
const MAX_WALK_CLIENTS: usize = 6;

fn config(max_producers: u32, expiry_ms: u64) -> DedupConfig {
    DedupConfig {
        max_producers: NonZeroU32::new(max_producers).expect("test bound > 0"),
        producer_expiry_ms: NonZeroU64::new(expiry_ms).expect("test expiry > 0"),
    }
}

fn meta(pid: u64, epoch: u16, first_seq: u32, count: u32) -> BatchMeta {
    BatchMeta {
        producer: ProducerId(pid),
        epoch: ProducerEpoch(epoch),
        seq: BatchSeq::new(first_seq, count).expect("valid test batch"),
    }
}

fn dup(first: u64, last: u64, append_ms: u64) -> Verdict {
    Verdict::Duplicate {
        first_offset: Offset(first),
        last_offset: Offset(last),
        append_ms,
    }
}

/// One batch in the model log.
#[derive(Clone, Copy, Debug)]
struct Logged {
    meta: BatchMeta,
    first: Offset,
    append_ms: u64,
}

/// A leader: the dedup state plus the log it guards (the model every verdict is
/// checked against).
struct Leader {
    state: DedupState,
    log: Vec<Logged>,
    next_offset: u64,
}

impl Leader {
    fn new(cfg: DedupConfig) -> Leader {
        Leader {
            state: DedupState::new(cfg),
            log: Vec::new(),
            next_offset: 1,
        }
    }

    /// What the node does with a produce: check, and on Append append + record.
    fn produce(&mut self, m: BatchMeta, now_ms: u64) -> Verdict {
        let v = self.state.check(&m, now_ms);
        if v == Verdict::Append {
            let first = Offset(self.next_offset);
            self.state.record(&m, first, now_ms).expect("record");
            self.log.push(Logged {
                meta: m,
                first,
                append_ms: now_ms,
            });
            self.next_offset += u64::from(m.seq.count());
        }
        v
    }

    /// Raft drops the log from `offset`: the model log and the state.
    fn truncate(&mut self, offset: u64) {
        self.log.retain(|l| l.first.0 < offset);
        if let Some(l) = self.log.last_mut() {
            let end = l.first.0 + u64::from(l.meta.seq.count());
            if end > offset {
                let kept = (offset - l.first.0) as u32;
                l.meta.seq = BatchSeq::new(l.meta.seq.first_seq(), kept).expect("kept > 0");
            }
        }
        self.next_offset = self.next_offset.min(offset);
        self.state.truncate_from(Offset(offset));
    }

    /// A fresh state fed the same `record` calls the log holds (restart, new leader).
    fn rebuild(&self) -> DedupState {
        let mut s = DedupState::new(self.state.config());
        for l in &self.log {
            s.record(&l.meta, l.first, l.append_ms).expect("replay");
        }
        s
    }
}

// ---- scenarios ------------------------------------------------------------------

#[test]
fn in_order_batches_append_at_consecutive_offsets() {
    let mut l = Leader::new(DedupConfig::default());
    assert_eq!(l.produce(meta(1, 0, 0, 3), 100), Verdict::Append);
    assert_eq!(l.produce(meta(1, 0, 3, 1), 101), Verdict::Append);
    assert_eq!(l.produce(meta(1, 0, 4, 2), 102), Verdict::Append);
    let p = l.state.producer(ProducerId(1)).expect("kept");
    assert_eq!(p.next_seq(), 6);
    assert_eq!(p.epoch(), ProducerEpoch(0));
    let offsets: Vec<(u64, u64)> = p
        .batches()
        .map(|b| (b.first_offset.0, b.last_offset().0))
        .collect();
    assert_eq!(offsets, vec![(1, 3), (4, 4), (5, 6)]);
    assert_eq!(l.state.end_offset(), Offset(7));
    l.state.check_invariants().expect("invariants");
}

#[test]
fn retries_of_the_last_five_batches_get_their_original_offsets() {
    let mut l = Leader::new(DedupConfig::default());
    let mut seq = 0;
    let mut sent = Vec::new();
    for i in 0..8u32 {
        let m = meta(9, 0, seq, i + 1);
        assert_eq!(l.produce(m, 1000 + u64::from(i)), Verdict::Append);
        sent.push((m, l.log.last().expect("appended").first));
        seq += i + 1;
    }
    // Batches 3..8 (0-based) are the last five: their retries are duplicates.
    for (i, (m, first)) in sent.iter().enumerate().skip(3) {
        let last = first.0 + u64::from(m.seq.count()) - 1;
        assert_eq!(
            l.produce(*m, 2000),
            dup(first.0, last, 1000 + i as u64),
            "retry of batch {i}"
        );
    }
    // The sixth-oldest and older: appended long ago, typed error, never re-appended.
    for (m, _) in &sent[..3] {
        assert_eq!(l.produce(*m, 2000), Verdict::DuplicateTooOld);
    }
    assert_eq!(l.log.len(), 8, "no retry was appended");
    assert_eq!(
        l.state.producer(ProducerId(9)).expect("kept").next_seq(),
        seq
    );
}

#[test]
fn a_duplicate_must_match_a_batch_exactly() {
    let mut l = Leader::new(DedupConfig::default());
    l.produce(meta(1, 0, 0, 4), 1);
    l.produce(meta(1, 0, 4, 4), 2);
    // Same first sequence, other count; a batch starting inside one; one spanning two.
    for m in [
        meta(1, 0, 0, 3),
        meta(1, 0, 2, 2),
        meta(1, 0, 2, 6),
        meta(1, 0, 4, 5),
    ] {
        assert_eq!(
            l.produce(m, 3),
            Verdict::OutOfOrder { expected_seq: 8 },
            "{m:?}"
        );
    }
    assert_eq!(l.produce(meta(1, 0, 4, 4), 3), dup(5, 8, 2));
    assert_eq!(l.log.len(), 2);
}

#[test]
fn a_gap_or_a_reordering_is_out_of_order_and_changes_nothing() {
    let mut l = Leader::new(DedupConfig::default());
    l.produce(meta(1, 0, 0, 2), 1);
    // Batch 3 overtakes batch 2: refused, expected stays 2.
    assert_eq!(
        l.produce(meta(1, 0, 4, 2), 2),
        Verdict::OutOfOrder { expected_seq: 2 }
    );
    assert_eq!(l.state.producer(ProducerId(1)).expect("kept").next_seq(), 2);
    assert_eq!(l.produce(meta(1, 0, 2, 2), 3), Verdict::Append);
    assert_eq!(l.produce(meta(1, 0, 4, 2), 4), Verdict::Append);
    // A far gap.
    assert_eq!(
        l.produce(meta(1, 0, 1_000_000, 1), 5),
        Verdict::OutOfOrder { expected_seq: 6 }
    );
    assert_eq!(l.log.len(), 3);
}

#[test]
fn an_older_epoch_is_fenced_and_a_new_epoch_restarts_at_zero() {
    let mut l = Leader::new(DedupConfig::default());
    l.produce(meta(1, 3, 0, 2), 1);
    l.produce(meta(1, 3, 2, 2), 2);
    // The new epoch must start at 0.
    assert_eq!(
        l.produce(meta(1, 4, 4, 1), 3),
        Verdict::OutOfOrder { expected_seq: 0 }
    );
    assert_eq!(l.produce(meta(1, 4, 0, 5), 4), Verdict::Append);
    let p = l.state.producer(ProducerId(1)).expect("kept");
    assert_eq!(
        (p.epoch(), p.next_seq(), p.batches().count()),
        (ProducerEpoch(4), 5, 1)
    );
    // The zombie (epoch 3): new batches and retries alike are fenced.
    let fenced = Verdict::Fenced {
        current_epoch: ProducerEpoch(4),
    };
    assert_eq!(l.produce(meta(1, 3, 4, 1), 5), fenced);
    assert_eq!(l.produce(meta(1, 3, 2, 2), 5), fenced);
    assert_eq!(l.produce(meta(1, 2, 0, 1), 5), fenced);
    // The new epoch's retry is a duplicate, its next batch appends.
    assert_eq!(l.produce(meta(1, 4, 0, 5), 6), dup(5, 9, 4));
    assert_eq!(l.produce(meta(1, 4, 5, 1), 7), Verdict::Append);
    assert_eq!(l.log.len(), 4);
}

#[test]
fn an_unknown_producer_may_start_only_at_sequence_zero() {
    let mut l = Leader::new(DedupConfig::default());
    assert_eq!(l.produce(meta(5, 0, 1, 1), 1), Verdict::UnknownProducer);
    assert_eq!(l.produce(meta(5, 7, 0, 1), 1), Verdict::Append);
    assert_eq!(l.state.producer_count(), 1);
    assert_eq!(l.state.unknown_floor(), None);
}

#[test]
fn an_expired_producer_is_unknown_even_for_a_retry_of_its_first_batch() {
    let mut l = Leader::new(config(16, EXPIRY_MS));
    l.produce(meta(3, 0, 0, 2), 1_000);
    l.produce(meta(7, 0, 0, 2), 1_000);
    l.produce(meta(3, 0, 2, 2), 5_000);
    // One ms before expiry producer 7 is still known; at expiry it is not, before
    // and after `expire` removes it.
    assert_eq!(l.produce(meta(7, 0, 0, 2), 10_999), dup(3, 4, 1_000));
    assert_eq!(
        l.produce(meta(7, 0, 0, 2), 11_000),
        Verdict::UnknownProducer
    );
    assert_eq!(l.state.expire(11_000), 1);
    assert!(l.state.producer(ProducerId(7)).is_none());
    assert_eq!(l.state.unknown_floor(), Some(ProducerId(7)));
    // Its retries and any later batch of its epoch are unknown (so is a newer epoch
    // that does not start at 0; a re-initialised one that does: next test).
    for m in [meta(7, 0, 0, 2), meta(7, 0, 2, 1), meta(7, 1, 1, 1)] {
        assert_eq!(l.produce(m, 11_001), Verdict::UnknownProducer, "{m:?}");
    }
    // Producer 3 appended later and is still known; a new id above the floor may
    // start; an id below it that never appended is refused (it re-initialises).
    assert_eq!(l.produce(meta(3, 0, 2, 2), 11_001), dup(5, 6, 5_000));
    assert_eq!(l.produce(meta(8, 0, 0, 1), 11_001), Verdict::Append);
    assert_eq!(
        l.produce(meta(6, 0, 0, 1), 11_001),
        Verdict::UnknownProducer
    );
    assert_eq!(l.log.len(), 4);
}

/// A named producer keeps its id across InitProducer (a higher epoch): once the
/// partition forgot it (expiry, eviction), the re-initialised producer may start
/// again at sequence 0 of a newer epoch, while every batch of the forgotten epoch,
/// its retries included, stays unknown (never a second append).
#[test]
fn a_forgotten_named_producer_restarts_with_a_newer_epoch() {
    let mut l = Leader::new(config(2, EXPIRY_MS));
    l.produce(meta(4, 2, 0, 2), 1_000);
    // Idle past expiry but not yet removed: the same verdicts as once removed.
    assert_eq!(
        l.state.check(&meta(4, 2, 0, 2), 11_000),
        Verdict::UnknownProducer
    );
    assert_eq!(l.state.check(&meta(4, 3, 0, 1), 11_000), Verdict::Append);
    assert_eq!(l.state.expire(11_000), 1);
    for m in [meta(4, 2, 0, 2), meta(4, 1, 0, 1), meta(4, 3, 1, 1)] {
        assert_eq!(l.produce(m, 11_001), Verdict::UnknownProducer, "{m:?}");
    }
    assert_eq!(l.produce(meta(4, 3, 0, 1), 11_001), Verdict::Append);
    assert_eq!(l.produce(meta(4, 3, 0, 1), 11_002), dup(3, 3, 11_001));
    assert_eq!(
        l.produce(meta(4, 2, 0, 2), 11_002),
        Verdict::Fenced {
            current_epoch: ProducerEpoch(3)
        }
    );
    // Evicted (bound 2) rather than expired: the same.
    l.produce(meta(5, 0, 0, 1), 11_003);
    l.produce(meta(6, 0, 0, 1), 11_004);
    assert!(
        l.state.producer(ProducerId(4)).is_none(),
        "4 was least recent"
    );
    assert_eq!(
        l.produce(meta(4, 3, 0, 1), 11_005),
        Verdict::UnknownProducer
    );
    assert_eq!(l.produce(meta(4, 4, 0, 1), 11_005), Verdict::Append);
    l.state.check_invariants().expect("invariants");
    // A rebuild from the log answers the same.
    let rebuilt = l.rebuild();
    for m in [
        meta(4, 3, 0, 1),
        meta(4, 4, 0, 1),
        meta(4, 5, 0, 1),
        meta(5, 1, 0, 1),
    ] {
        assert_eq!(
            rebuilt.check(&m, 11_006),
            l.state.check(&m, 11_006),
            "{m:?}"
        );
    }
}

#[test]
fn record_expires_producers_idle_at_its_append_time() {
    let mut s = DedupState::new(config(16, EXPIRY_MS));
    s.record(&meta(1, 0, 0, 1), Offset(1), 0).expect("record");
    s.record(&meta(2, 0, 0, 1), Offset(2), EXPIRY_MS)
        .expect("record");
    assert!(s.producer(ProducerId(1)).is_none());
    assert_eq!(s.producer_count(), 1);
    assert_eq!(s.unknown_floor(), Some(ProducerId(1)));
}

#[test]
fn the_least_recently_appended_producer_is_evicted_beyond_the_bound() {
    let mut l = Leader::new(config(3, EXPIRY_MS));
    l.produce(meta(1, 0, 0, 1), 1);
    l.produce(meta(2, 0, 0, 1), 2);
    l.produce(meta(3, 0, 0, 1), 3);
    l.produce(meta(1, 0, 1, 1), 4); // 1 is now more recent than 2
    assert_eq!(l.produce(meta(4, 0, 0, 1), 5), Verdict::Append);
    assert_eq!(l.state.producer_count(), 3);
    assert!(
        l.state.producer(ProducerId(2)).is_none(),
        "2 was least recent"
    );
    for pid in [1, 3, 4] {
        assert!(l.state.producer(ProducerId(pid)).is_some(), "{pid} kept");
    }
    // The evicted producer's retry of its first batch is an error, not a duplicate.
    assert_eq!(l.produce(meta(2, 0, 0, 1), 6), Verdict::UnknownProducer);
    assert_eq!(l.produce(meta(2, 0, 1, 1), 6), Verdict::UnknownProducer);
    assert_eq!(l.log.len(), 5);
    l.state.check_invariants().expect("invariants");
}

#[test]
fn truncation_takes_cut_batches_back_out() {
    let mut l = Leader::new(DedupConfig::default());
    l.produce(meta(1, 0, 0, 2), 1); // offsets 1..2
    l.produce(meta(2, 0, 0, 1), 2); // 3
    l.produce(meta(1, 0, 2, 3), 3); // 4..6
    l.produce(meta(1, 0, 5, 2), 4); // 7..8
    l.truncate(5); // keeps offset 4 of the batch at 4..6, drops 7..8
    let p = l.state.producer(ProducerId(1)).expect("kept");
    assert_eq!(p.next_seq(), 3);
    let kept: Vec<(u32, u32)> = p
        .batches()
        .map(|b| (b.seq.first_seq(), b.seq.count()))
        .collect();
    assert_eq!(kept, vec![(0, 2), (2, 1)]);
    assert_eq!(l.state.end_offset(), Offset(5));
    // The cut batch's retry: only a prefix is in the log, so not a duplicate and
    // not appended again; the record after the kept prefix appends.
    assert_eq!(
        l.produce(meta(1, 0, 2, 3), 5),
        Verdict::OutOfOrder { expected_seq: 3 }
    );
    assert_eq!(l.produce(meta(1, 0, 0, 2), 5), dup(1, 2, 1));
    assert_eq!(l.produce(meta(1, 0, 3, 2), 6), Verdict::Append);
    assert_eq!(l.log.last().expect("appended").first, Offset(5));
    // Producer 2 was below the cut: untouched.
    assert_eq!(l.produce(meta(2, 0, 0, 1), 7), dup(3, 3, 2));
    l.state.check_invariants().expect("invariants");
}

#[test]
fn truncating_a_whole_new_epoch_keeps_the_epoch() {
    let mut l = Leader::new(DedupConfig::default());
    l.produce(meta(1, 0, 0, 2), 1); // 1..2
    l.produce(meta(1, 1, 0, 2), 2); // 3..4
    l.truncate(3);
    let p = l.state.producer(ProducerId(1)).expect("kept");
    assert_eq!(
        (p.epoch(), p.next_seq(), p.batches().count()),
        (ProducerEpoch(1), 0, 0)
    );
    // Epoch 1 was handed out: epoch 0 stays fenced; epoch 1's cut batch re-appends.
    assert_eq!(
        l.produce(meta(1, 0, 2, 1), 3),
        Verdict::Fenced {
            current_epoch: ProducerEpoch(1)
        }
    );
    assert_eq!(l.produce(meta(1, 1, 0, 2), 3), Verdict::Append);
    assert_eq!(l.produce(meta(1, 1, 0, 2), 4), dup(3, 4, 3));
}

#[test]
fn a_record_below_the_end_truncates_first() {
    let mut s = DedupState::new(DedupConfig::default());
    s.record(&meta(1, 0, 0, 2), Offset(1), 1).expect("record");
    s.record(&meta(1, 0, 2, 2), Offset(3), 2).expect("record");
    // A new leader's entry at offset 3 replaces what was there.
    s.record(&meta(2, 0, 0, 1), Offset(3), 3).expect("record");
    assert_eq!(s.producer(ProducerId(1)).expect("kept").next_seq(), 2);
    assert_eq!(s.end_offset(), Offset(4));
    assert_eq!(
        s.check(&meta(1, 0, 2, 2), 4),
        Verdict::Append,
        "the replaced batch is no longer in the log"
    );
    s.check_invariants().expect("invariants");
}

#[test]
fn a_record_past_the_largest_offset_is_refused_without_change() {
    let mut s = DedupState::new(DedupConfig::default());
    s.record(&meta(1, 0, 0, 1), Offset(1), 1).expect("record");
    assert_eq!(
        s.record(&meta(1, 0, 1, 2), Offset(u64::MAX - 1), 2),
        Err(RecordError::OffsetOverflow {
            first_offset: Offset(u64::MAX - 1),
            count: 2
        })
    );
    assert_eq!(s.producer(ProducerId(1)).expect("kept").next_seq(), 1);
    assert_eq!(s.end_offset(), Offset(2));
}

#[test]
fn time_never_goes_back_for_expiry() {
    let mut s = DedupState::new(config(16, EXPIRY_MS));
    s.record(&meta(1, 0, 0, 1), Offset(1), 50_000)
        .expect("record");
    // Another leader whose clock is behind: expiry still counts from 50 s.
    s.record(&meta(2, 0, 0, 1), Offset(2), 1_000)
        .expect("record");
    assert_eq!(s.check(&meta(1, 0, 0, 1), 0), dup(1, 1, 50_000));
    assert_eq!(s.check(&meta(2, 0, 1, 1), 0), Verdict::Append);
    assert_eq!(
        s.expire(59_999),
        0,
        "idle for 9.999 s at the latest time seen"
    );
    assert_eq!(s.expire(60_000), 2);
}

#[test]
fn sequences_wrap_around() {
    let mut l = Leader::new(DedupConfig::default());
    let big = MAX_BATCH_RECORDS;
    let mut seq: u32 = 0;
    // Batches 0..=254 of 2^24 records, then one of 2^24 - 2: the next sequence is
    // u32::MAX - 1; batch i sits at offsets 1 + i * 2^24 ...
    for i in 0..255u64 {
        assert_eq!(
            l.produce(meta(1, 0, seq, big), i),
            Verdict::Append,
            "batch {i}"
        );
        seq = seq.wrapping_add(big);
    }
    assert_eq!(l.produce(meta(1, 0, seq, big - 2), 255), Verdict::Append);
    assert_eq!(
        l.state.producer(ProducerId(1)).expect("kept").next_seq(),
        u32::MAX - 1
    );
    // A batch across the wrap: sequences MAX - 1, MAX, 0, 1.
    let straddle = meta(1, 0, u32::MAX - 1, 4);
    assert_eq!(l.produce(straddle, 256), Verdict::Append);
    assert_eq!(l.state.producer(ProducerId(1)).expect("kept").next_seq(), 2);
    let at = l.log.last().expect("appended").first.0;
    assert_eq!(l.produce(straddle, 257), dup(at, at + 3, 256));
    // Behind inside the window (inexact), ahead: out of order.
    let expected = Verdict::OutOfOrder { expected_seq: 2 };
    assert_eq!(l.produce(meta(1, 0, u32::MAX, 1), 257), expected);
    assert_eq!(l.produce(meta(1, 0, 1, 1), 257), expected);
    assert_eq!(l.produce(meta(1, 0, 5, 1), 257), expected);
    assert_eq!(l.produce(meta(1, 0, 1 << 30, 1), 257), expected);
    // The window is the last five batches: 252, 253, 254, the short one, the straddle.
    let first_252 = 1 + 252 * u64::from(big);
    assert_eq!(
        l.produce(meta(1, 0, 0u32.wrapping_sub(4 * big), big), 258),
        dup(first_252, first_252 + u64::from(big) - 1, 252)
    );
    assert_eq!(
        l.produce(meta(1, 0, 0u32.wrapping_sub(5 * big), big), 258),
        Verdict::DuplicateTooOld
    );
    assert_eq!(
        l.produce(meta(1, 0, (1 << 31) + 10, 1), 258),
        Verdict::DuplicateTooOld
    );
    assert_eq!(l.produce(meta(1, 0, 2, 1), 259), Verdict::Append);
    assert_eq!(l.log.len(), 258);
}

#[test]
fn replaying_a_log_tail_that_starts_mid_sequence_near_the_wrap() {
    let mut s = DedupState::new(DedupConfig::default());
    s.forget_producers_through(ProducerId(10));
    s.record(&meta(4, 0, u32::MAX - 2, 5), Offset(100), 1)
        .expect("record");
    assert_eq!(s.check(&meta(4, 0, 2, 1), 2), Verdict::Append);
    assert_eq!(s.check(&meta(4, 0, u32::MAX - 2, 5), 2), dup(100, 104, 1));
    assert_eq!(
        s.check(&meta(4, 0, u32::MAX - 3, 1), 2),
        Verdict::DuplicateTooOld
    );
    // Ids at or below the floor that the tail does not hold are unknown.
    assert_eq!(s.check(&meta(9, 0, 0, 1), 2), Verdict::UnknownProducer);
    assert_eq!(s.check(&meta(11, 0, 0, 1), 2), Verdict::Append);
}

#[test]
fn rebuild_from_the_log_answers_as_the_live_state() {
    let mut l = Leader::new(config(2, EXPIRY_MS));
    l.produce(meta(1, 0, 0, 2), 10);
    l.produce(meta(2, 0, 0, 1), 20);
    l.produce(meta(1, 0, 2, 2), 30);
    l.produce(meta(2, 1, 0, 1), 40);
    l.produce(meta(3, 0, 0, 1), 50); // evicts 1
    l.state.expire(40 + EXPIRY_MS);
    let mut rebuilt = l.rebuild();
    rebuilt.expire(40 + EXPIRY_MS);
    assert_eq!(rebuilt.unknown_floor(), l.state.unknown_floor());
    let probes = [
        meta(1, 0, 0, 2),
        meta(1, 0, 4, 1),
        meta(2, 0, 0, 1),
        meta(2, 1, 0, 1),
        meta(2, 1, 1, 1),
        meta(3, 0, 0, 1),
        meta(3, 0, 1, 1),
        meta(4, 0, 0, 1),
    ];
    for m in probes {
        assert_eq!(
            rebuilt.check(&m, 40 + EXPIRY_MS),
            l.state.check(&m, 40 + EXPIRY_MS),
            "{m:?}"
        );
    }
    assert_eq!(
        rebuilt.check(&meta(3, 0, 0, 1), 40 + EXPIRY_MS),
        dup(7, 7, 50)
    );
}

#[test]
fn batch_seq_bounds() {
    assert_eq!(BatchSeq::new(0, 0), Err(BatchSeqError::Empty));
    assert_eq!(
        BatchSeq::new(0, MAX_BATCH_RECORDS + 1),
        Err(BatchSeqError::TooManyRecords {
            count: MAX_BATCH_RECORDS + 1
        })
    );
    let s = BatchSeq::new(u32::MAX, MAX_BATCH_RECORDS).expect("max batch");
    assert_eq!(s.last_seq(), MAX_BATCH_RECORDS - 2);
    assert_eq!(s.next_seq(), MAX_BATCH_RECORDS - 1);
}

// ---- random walk against a model log ----------------------------------------------

/// A simulated producer client.
#[derive(Clone, Debug)]
struct Client {
    pid: u64,
    epoch: u16,
    next_seq: u32,
    /// Every batch it sent that was appended (any epoch): candidates for retries.
    sent: Vec<BatchMeta>,
}

struct Walk {
    rng: SplitMix64,
    leader: Leader,
    clients: Vec<Client>,
    /// Ids handed out but not used yet (a producer slow to send its first batch).
    reserved: Vec<u64>,
    next_pid: u64,
    now_ms: u64,
    truncations: bool,
    stats: Coverage,
}

/// What a walk exercised, so the test can show it reached every verdict.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    /// Per verdict kind, in [`verdict_kind`] order.
    verdicts: [u64; 6],
    /// Verdicts the model alone predicted (and that matched).
    predicted: u64,
    /// Producers forgotten (expired or evicted), seen as the floor rising.
    floor_raises: u64,
    truncations: u64,
    /// Clients that re-initialised as named producers (same id, newer epoch)...
    named_reinits: u64,
    /// ...and forgotten ids that appended again that way.
    named_restarts: u64,
}

fn verdict_kind(v: Verdict) -> usize {
    match v {
        Verdict::Append => 0,
        Verdict::Duplicate { .. } => 1,
        Verdict::OutOfOrder { .. } => 2,
        Verdict::Fenced { .. } => 3,
        Verdict::UnknownProducer => 4,
        Verdict::DuplicateTooOld => 5,
    }
}

impl Walk {
    fn new(seed: u64) -> Walk {
        let mut rng = SplitMix64::new(seed);
        let max = 1 + rng.below(10) as u32;
        let truncations = rng.chance(50);
        let mut w = Walk {
            rng,
            leader: Leader::new(config(max, WALK_EXPIRY_MS)),
            clients: Vec::new(),
            reserved: Vec::new(),
            next_pid: 1,
            now_ms: 1_000,
            truncations,
            stats: Coverage::default(),
        };
        for _ in 0..3 {
            w.new_client();
        }
        w
    }

    fn new_client(&mut self) {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.clients.push(Client {
            pid,
            epoch: 0,
            next_seq: 0,
            sent: Vec::new(),
        });
    }

    fn step(&mut self) {
        self.now_ms += match self.rng.below(60) {
            0 => 1_000 + self.rng.below(2_000),
            _ => self.rng.below(40),
        };
        let c = self.rng.below(self.clients.len() as u64) as usize;
        let count = 1 + self.rng.below(4) as u32;
        let m = match self.rng.below(100) {
            0..=39 => self.next_batch(c, count),
            40..=59 => match self.pick_sent(c) {
                Some(m) => m,
                None => self.next_batch(c, count),
            },
            60..=64 => {
                let k = 1 + self.rng.below(6) as u32;
                let cl = &self.clients[c];
                meta(cl.pid, cl.epoch, cl.next_seq.wrapping_add(k), count)
            }
            65..=69 => {
                let cl = &mut self.clients[c];
                cl.epoch += 1;
                cl.next_seq = 0;
                self.next_batch(c, count)
            }
            70..=74 => {
                let cl = &self.clients[c];
                meta(cl.pid, cl.epoch.saturating_sub(1), cl.next_seq, count)
            }
            75..=79 if self.clients.len() < MAX_WALK_CLIENTS => {
                self.new_client();
                self.next_batch(self.clients.len() - 1, count)
            }
            80..=84 => {
                self.reserved.push(self.next_pid);
                self.next_pid += 1;
                return;
            }
            85..=87 if !self.reserved.is_empty() => {
                let pid = self.reserved.remove(0);
                self.clients.push(Client {
                    pid,
                    epoch: 0,
                    next_seq: 0,
                    sent: Vec::new(),
                });
                self.next_batch(self.clients.len() - 1, count)
            }
            88..=91 => {
                self.leader.state.expire(self.now_ms);
                return;
            }
            92..=95 if self.truncations => {
                let end = self.leader.next_offset;
                let back = 1 + self.rng.below(12);
                self.leader.truncate(end.saturating_sub(back).max(1));
                self.stats.truncations += 1;
                return;
            }
            _ => {
                let cl = &self.clients[c];
                meta(cl.pid, cl.epoch, self.rng.next_u64() as u32, count)
            }
        };
        self.send(c, m);
    }

    fn next_batch(&self, c: usize, count: u32) -> BatchMeta {
        let cl = &self.clients[c];
        meta(cl.pid, cl.epoch, cl.next_seq, count)
    }

    fn pick_sent(&mut self, c: usize) -> Option<BatchMeta> {
        let sent = &self.clients[c].sent;
        if sent.is_empty() {
            return None;
        }
        // Mostly recent batches, sometimes any.
        let n = sent.len() as u64;
        let back = if self.rng.chance(70) {
            self.rng.below(n.min(7))
        } else {
            self.rng.below(n)
        };
        Some(sent[(n - 1 - back) as usize])
    }

    /// Sends `m` for client `c`: the verdict is checked, then the client reacts.
    fn send(&mut self, c: usize, m: BatchMeta) {
        let completeness = expected_verdict(&self.leader, &m, self.now_ms, self.truncations);
        let before = self.leader.log.len();
        let forgotten = self.leader.state.producer(m.producer).is_none()
            && self
                .leader
                .state
                .unknown_floor()
                .is_some_and(|f| m.producer <= f);
        let v = self.leader.produce(m, self.now_ms);
        if forgotten && v == Verdict::Append {
            self.stats.named_restarts += 1;
        }
        let l = &self.leader;
        assert_sound(&l.state, &l.log[..before], &m, v, self.now_ms);
        if let Some(want) = completeness {
            assert_eq!(v, want, "{m:?}");
            self.stats.predicted += 1;
        }
        self.stats.verdicts[verdict_kind(v)] += 1;
        let cl = &mut self.clients[c];
        match v {
            Verdict::Append => {
                cl.sent.push(m);
                if m.epoch == ProducerEpoch(cl.epoch) {
                    cl.next_seq = m.seq.next_seq();
                }
            }
            Verdict::OutOfOrder { expected_seq } if m.epoch == ProducerEpoch(cl.epoch) => {
                // A naive client trusts the server: if the state were wrong this
                // would produce duplicates, which `assert_sound` would catch.
                cl.next_seq = expected_seq;
            }
            Verdict::UnknownProducer if self.rng.chance(50) => {
                // Re-initialise as a named producer: the same id, a newer epoch.
                cl.epoch += 1;
                cl.next_seq = 0;
                self.stats.named_reinits += 1;
            }
            Verdict::UnknownProducer | Verdict::Fenced { .. } => {
                // Re-initialise: a fresh id.
                cl.pid = self.next_pid;
                self.next_pid += 1;
                cl.epoch = 0;
                cl.next_seq = 0;
                cl.sent.clear();
            }
            _ => {}
        }
    }
}

/// Both seq ranges as plain integers (the walk never wraps).
fn overlaps(a: BatchSeq, b: BatchSeq) -> bool {
    let (a0, a1) = (
        u64::from(a.first_seq()),
        u64::from(a.first_seq()) + u64::from(a.count()),
    );
    let (b0, b1) = (
        u64::from(b.first_seq()),
        u64::from(b.first_seq()) + u64::from(b.count()),
    );
    a0 < b1 && b0 < a1
}

/// Safety: an Append never stores a record twice, a Duplicate names exactly that
/// batch in the log, errors are consistent with what they claim.
/// `log` is the log when `state` gave verdict `v` for `m`.
fn assert_sound(state: &DedupState, log: &[Logged], m: &BatchMeta, v: Verdict, now_ms: u64) {
    let same = |x: &Logged| x.meta.producer == m.producer && x.meta.epoch == m.epoch;
    match v {
        Verdict::Append => {
            if let Some(x) = log.iter().find(|x| same(x) && overlaps(x.meta.seq, m.seq)) {
                panic!("{m:?} appended twice: already at {x:?}");
            }
        }
        Verdict::Duplicate {
            first_offset,
            last_offset,
            append_ms,
        } => {
            let found = log.iter().any(|x| {
                x.meta == *m
                    && x.first == first_offset
                    && x.first.0 + u64::from(x.meta.seq.count()) - 1 == last_offset.0
                    && x.append_ms == append_ms
            });
            assert!(
                found,
                "{m:?} named duplicate at {first_offset}..{last_offset} not in log"
            );
        }
        Verdict::Fenced { current_epoch } => assert!(current_epoch > m.epoch, "{m:?}"),
        Verdict::OutOfOrder { expected_seq } => {
            assert_ne!(expected_seq, m.seq.first_seq(), "{m:?}")
        }
        Verdict::UnknownProducer => {
            let kept_but_idle = state
                .producer(m.producer)
                .is_some_and(|p| now_ms.saturating_sub(p.last_append_ms()) >= WALK_EXPIRY_MS);
            let floored = state.unknown_floor().is_some_and(|f| m.producer <= f);
            assert!(
                m.seq.first_seq() != 0 || floored || kept_but_idle,
                "{m:?} refused as unknown"
            );
        }
        Verdict::DuplicateTooOld => {
            let p = state.producer(m.producer).expect("a kept producer");
            assert_ne!(p.next_seq(), m.seq.first_seq());
        }
    }
}

/// Completeness, where the model alone decides the verdict (walks without
/// truncation): for a kept, live producer of the batch's epoch, the next batch
/// appends, one of its last five logged batches is a duplicate, an older logged one
/// is too old.
fn expected_verdict(l: &Leader, m: &BatchMeta, now_ms: u64, truncations: bool) -> Option<Verdict> {
    if truncations {
        return None;
    }
    let p = l.state.producer(m.producer)?;
    if p.epoch() != m.epoch || now_ms.saturating_sub(p.last_append_ms()) >= WALK_EXPIRY_MS {
        return None;
    }
    let mine: Vec<&Logged> = l
        .log
        .iter()
        .filter(|x| x.meta.producer == m.producer && x.meta.epoch == m.epoch)
        .collect();
    let next = mine.last().map_or(0, |x| x.meta.seq.next_seq());
    if m.seq.first_seq() == next {
        return Some(Verdict::Append);
    }
    let at = mine.iter().position(|x| x.meta == *m)?;
    if at + BATCHES_PER_PRODUCER >= mine.len() {
        let x = mine[at];
        let last = x.first.0 + u64::from(x.meta.seq.count()) - 1;
        Some(dup(x.first.0, last, x.append_ms))
    } else {
        Some(Verdict::DuplicateTooOld)
    }
}

/// The verdicts a state gives for every batch the walk's clients might send.
fn probe_all(s: &DedupState, w: &Walk) -> Vec<(BatchMeta, Verdict)> {
    let mut probes = Vec::new();
    for cl in &w.clients {
        probes.push(meta(cl.pid, cl.epoch, cl.next_seq, 1));
        probes.push(meta(cl.pid, cl.epoch, cl.next_seq.wrapping_add(1), 1));
        probes.push(meta(cl.pid, cl.epoch + 1, 0, 1));
        probes.push(meta(cl.pid, cl.epoch.saturating_sub(1), 0, 1));
        probes.extend(cl.sent.iter().copied());
    }
    for pid in 0..w.next_pid + 2 {
        probes.push(meta(pid, 0, 0, 1));
    }
    probes
        .into_iter()
        .map(|m| (m, s.check(&m, w.now_ms)))
        .collect()
}

fn compare_with_rebuild(w: &mut Walk) {
    let now = w.now_ms;
    let mut rebuilt = w.leader.rebuild();
    rebuilt.expire(now);
    w.leader.state.expire(now);
    rebuilt.check_invariants().expect("rebuilt invariants");
    if w.truncations {
        // A truncation may shrink the live window below what a replay finds, so
        // only soundness is compared: both answer every probe safely.
        for (m, v) in probe_all(&rebuilt, w) {
            assert_sound(&rebuilt, &w.leader.log, &m, v, now);
        }
        for (m, v) in probe_all(&w.leader.state, w) {
            assert_sound(&w.leader.state, &w.leader.log, &m, v, now);
        }
        return;
    }
    assert_eq!(rebuilt.unknown_floor(), w.leader.state.unknown_floor());
    assert_eq!(rebuilt.producer_count(), w.leader.state.producer_count());
    let live = probe_all(&w.leader.state, w);
    let replayed = probe_all(&rebuilt, w);
    assert_eq!(live, replayed);
}

fn run_walk(seed: u64, steps: u32) -> Coverage {
    let mut w = Walk::new(seed);
    let max = w.leader.state.config().max_producers.get() as usize;
    for i in 0..steps {
        let floor = w.leader.state.unknown_floor();
        w.step();
        if w.leader.state.unknown_floor() != floor {
            w.stats.floor_raises += 1;
        }
        let s = &w.leader.state;
        if let Err(e) = s.check_invariants() {
            panic!("seed {seed} step {i}: {e}");
        }
        assert!(s.producer_count() <= max, "seed {seed} step {i}");
        if i % 50 == 49 {
            compare_with_rebuild(&mut w);
        }
    }
    compare_with_rebuild(&mut w);
    w.stats
}

#[test]
fn random_walks_stay_sound_bounded_and_rebuildable() {
    let mut total = Coverage::default();
    for seed in 0..300u64 {
        let Ok(c) = std::panic::catch_unwind(|| run_walk(seed, 400)) else {
            panic!("walk seed {seed} failed; replay it with DEDUP_SEED={seed}");
        };
        for (t, n) in total.verdicts.iter_mut().zip(c.verdicts) {
            *t += n;
        }
        total.predicted += c.predicted;
        total.floor_raises += c.floor_raises;
        total.truncations += c.truncations;
        total.named_reinits += c.named_reinits;
        total.named_restarts += c.named_restarts;
    }
    // The walk reached every verdict, predicted many, forgot and truncated often.
    assert!(total.verdicts.iter().all(|&n| n >= 100), "{total:?}");
    assert!(total.predicted >= 10_000, "{total:?}");
    assert!(total.floor_raises >= 1_000, "{total:?}");
    assert!(total.truncations >= 1_000, "{total:?}");
    assert!(total.named_restarts >= 100, "{total:?}");
}

/// Replays one seed: `DEDUP_SEED=<n> cargo test --lib replica::dedup::tests::replay_seed`.
#[test]
fn replay_seed() {
    if let Some(seed) = std::env::var("DEDUP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let c = run_walk(seed, 400);
        eprintln!("seed {seed}: {c:?}");
    }
}

// ---- batch header codec ---------------------------------------------------------

#[test]
fn batch_meta_has_a_fixed_documented_layout() {
    let mut out = Vec::new();
    encode_batch_meta(&meta(7, 2, 5, 3), &mut out);
    let want: [u8; BATCH_META_BYTES] = [
        0x01, // version
        0, 0, 0, 0, 0, 0, 0, 7, // producer id
        0, 2, // epoch
        0, 0, 0, 5, // first sequence
        0, 0, 0, 3, // count
    ];
    assert_eq!(out, want);
    assert_eq!(decode_batch_meta(&want), Ok(meta(7, 2, 5, 3)));
}

#[test]
fn batch_meta_round_trips() {
    let mut rng = SplitMix64::new(14);
    for _ in 0..2_000 {
        let m = meta(
            rng.next_u64(),
            rng.next_u64() as u16,
            rng.next_u64() as u32,
            1 + rng.below(u64::from(MAX_BATCH_RECORDS)) as u32,
        );
        let mut out = vec![0xAA]; // something before it, as in a larger header
        encode_batch_meta(&m, &mut out);
        assert_eq!(out.len(), 1 + BATCH_META_BYTES);
        assert_eq!(decode_batch_meta(&out[1..]), Ok(m));
        let mut r = ByteReader::new(&out[1..]);
        assert_eq!(read_batch_meta(&mut r), Ok(m));
        assert_eq!(r.remaining(), 0);
    }
}

#[test]
fn batch_meta_decoding_rejects_bad_input_with_typed_errors() {
    let mut good = Vec::new();
    encode_batch_meta(&meta(1, 1, 1, 1), &mut good);
    for len in 0..good.len() {
        assert!(
            matches!(
                decode_batch_meta(&good[..len]),
                Err(BatchMetaError::Read(_))
            ),
            "prefix of {len} bytes"
        );
    }
    for version in [0u8, 2, 0xFF] {
        let mut bad = good.clone();
        bad[0] = version;
        assert_eq!(
            decode_batch_meta(&bad),
            Err(BatchMetaError::UnknownVersion { version })
        );
    }
    let mut empty = good.clone();
    empty[15..19].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        decode_batch_meta(&empty),
        Err(BatchMetaError::Seq(BatchSeqError::Empty))
    );
    let mut huge = good.clone();
    huge[15..19].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode_batch_meta(&huge),
        Err(BatchMetaError::Seq(BatchSeqError::TooManyRecords {
            count: u32::MAX
        }))
    );
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        decode_batch_meta(&long),
        Err(BatchMetaError::Trailing(TrailingBytes { bytes: 1, .. }))
    ));
}

#[test]
fn batch_meta_decoding_is_total_on_random_bytes() {
    let mut rng = SplitMix64::new(0xDED0);
    for _ in 0..5_000 {
        let len = rng.below(2 * BATCH_META_BYTES as u64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if rng.chance(50) && !bytes.is_empty() {
            bytes[0] = BATCH_META_VERSION;
        }
        if let Ok(m) = decode_batch_meta(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            let mut out = Vec::new();
            encode_batch_meta(&m, &mut out);
            assert_eq!(out, bytes);
        }
    }
}
