//! Idempotent producers: the pure dedup state of one partition.
//!
//! A producer (a client that called InitProducer) owns a [`ProducerId`] and a
//! [`ProducerEpoch`]; each batch it sends to a partition carries a [`BatchSeq`]:
//! the sequence number of its first record and its record count. [`DedupState`]
//! decides, for a batch about to be appended, whether it is new and in order
//! ([`Verdict::Append`]), a retry of a batch already in the log (answered with the
//! original offsets, [`Verdict::Duplicate`]), or one of the typed errors. It has no
//! I/O, no clock (time is a `_ms` input), no threads.
//!
//! # Derived from the log
//! The state is a function of the partition's own log: the only way in is
//! [`DedupState::record`], "this batch is in the log at these offsets", called with
//! the same arguments (the batch header's [`BatchMeta`], its first offset, the append
//! time written in the log) by the leader right after it appends, by a follower as
//! it appends, and when replaying the log at start-up or on a new leader. So every
//! replica holds the same state, a restart or a leader change loses nothing, and no
//! separate file has to be kept consistent with the log (two sources of truth that a
//! crash can split). Raft may cut an uncommitted tail: [`DedupState::truncate_from`]
//! (also implied by a `record` below the recorded end, as an entry written at index
//! i discards entries >= i) takes the cut batches back out.
//!
//! Contract for the caller:
//! - Call `record` in log order, for every batch the log holds (committed or not: a
//!   new leader commits its whole log), exactly as far as the log holds it: a batch of
//!   which the log keeps only a prefix is recorded with the prefix's count.
//! - On the leader, call `record` for an `Append` before the next `check`: two
//!   produces of one producer in one proposal round must see each other.
//! - A [`Verdict::Duplicate`] may name offsets that are not committed yet (the
//!   original is still in flight): answer it when the high-water mark passes
//!   `last_offset`, like the original; if those offsets are truncated instead, the
//!   retry gets the same "may not have been written" error as the original.
//! - `append_ms` is the time stored in the log with the batch (not the local clock
//!   of whoever replays it), so expiry decisions are the same on every replica.
//!
//! # Rules
//! - **Sequences** count records, per producer, per partition, per epoch: the first
//!   batch of a producer (and of each new epoch) starts at 0; the next batch starts
//!   where the last one ended. They are `u32` and wrap modulo 2^32 (a long-lived
//!   producer may send more than 2^32 records). Order is serial-number arithmetic
//!   (RFC 1982): a first sequence up to 2^31 - 1 ahead of the expected one is a gap,
//!   one behind it is a retry. That is unambiguous because a batch holds at most
//!   [`MAX_BATCH_RECORDS`] (2^24) records, so the retained window is below 2^27.
//! - **Retries**: a batch equal (same first sequence AND count) to one of the last
//!   [`BATCHES_PER_PRODUCER`] batches of its producer is a `Duplicate` and gets that
//!   batch's offsets. One that starts inside that window without matching a batch
//!   exactly (re-split, or a batch only partly kept by a truncation) is `OutOfOrder`;
//!   one that starts before the window is `DuplicateTooOld`.
//! - **Epochs**: a batch with an epoch older than the producer's is `Fenced` (a
//!   zombie instance); a newer epoch starts a new sequence at 0 and the older epoch's
//!   batches are dropped (their retries are fenced anyway). Epochs do not wrap:
//!   InitProducer hands out a new producer id instead of epoch `u16::MAX + 1`.
//! - **Unknown producers**: a producer not in the state may start only with
//!   sequence 0, and only if its id is above the *unknown floor*, the highest id
//!   this state ever forgot, or if the state remembers the epoch it forgot that id
//!   at and the batch's epoch is newer (a named producer re-initialised: InitProducer
//!   gives it the same id and a higher epoch, and every batch of the forgotten epoch,
//!   retries included, stays refused). Anything else is `UnknownProducer`.
//!
//! # Bounds, eviction and expiry
//! At most [`DedupConfig::max_producers`] producers, each with at most
//! [`BATCHES_PER_PRODUCER`] batches. A producer idle (no batch recorded) for
//! [`DedupConfig::producer_expiry_ms`] is expired ([`DedupState::expire`], and
//! every `record` at its append time); when a new producer would exceed the bound,
//! the least recently appended one is evicted. A forgotten producer raises the
//! unknown floor to its id, so its later batches, including a retry of its very
//! first batch (sequence 0), get `UnknownProducer`, never a silent second append.
//! This relies on InitProducer allocating ids in increasing order and never reusing
//! one; a brand-new producer whose id is below the floor (it was allocated before a
//! higher one was forgotten) is refused too and simply asks InitProducer for a new
//! id. A rebuild that does not replay the log from its start must first raise the
//! floor over every id that may have appended earlier
//! ([`DedupState::forget_producers_through`]).
//!
//! # Why errors, not appends
//! Each doubtful case (gap, reorder, zombie, forgotten producer, retry older than the
//! window) is refused with a typed error rather than appended: appending would
//! either store a record twice or accept records after a hole the producer does not
//! know about, and the producer is the only one that can tell what it sent. The
//! client reacts by re-initialising (new id or epoch) and reporting what may have
//! been lost or duplicated, instead of the log silently holding a duplicate.
//!
//! # Batch header
//! [`encode_batch_meta`] / [`decode_batch_meta`]: the producer fields a batch
//! carries in the log and on the wire, `u8 version (1) | u64 producer id | u16 epoch
//! | u32 first sequence | u32 record count`, big-endian, [`BATCH_META_BYTES`] bytes.
//! Decoding is total: any input gives a [`BatchMeta`] or a typed error.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use crate::bytes::{ByteReader, ReadError, TrailingBytes};
use crate::types::Offset;

/// Batches retained per producer: retries of any of the last this-many batches get
/// their original offsets.
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Most records one batch may hold. A frame is below 2^24 bytes and a record takes
/// at least one, so no produce comes near; the bound keeps sequence comparisons
/// unambiguous (see the module doc).
pub const MAX_BATCH_RECORDS: u32 = 1 << 24;

/// Version byte of the batch header encoding.
pub const BATCH_META_VERSION: u8 = 1;

/// Encoded size of a [`BatchMeta`]: version, id, epoch, first sequence, count.
pub const BATCH_META_BYTES: usize = 1 + 8 + 2 + 4 + 4;

/// Sequence distances at or above this are "behind" (serial-number arithmetic).
const HALF_SEQ_SPACE: u32 = 1 << 31;

/// A producer's identity, handed out by InitProducer (increasing, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub u64);

/// A producer's epoch: a newer instance of the same producer id fences older ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerEpoch(pub u16);

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ProducerEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The sequence numbers of a batch's records: `first_seq`, `first_seq + 1`, ...
/// (wrapping), `count` of them, 1 ≤ `count` ≤ [`MAX_BATCH_RECORDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchSeq {
    first_seq: u32,
    count: u32,
}

impl BatchSeq {
    /// A batch of `count` records starting at `first_seq`.
    pub fn new(first_seq: u32, count: u32) -> Result<BatchSeq, BatchSeqError> {
        match count {
            0 => Err(BatchSeqError::Empty),
            n if n > MAX_BATCH_RECORDS => Err(BatchSeqError::TooManyRecords { count: n }),
            _ => Ok(BatchSeq { first_seq, count }),
        }
    }

    /// Sequence number of the first record.
    pub fn first_seq(self) -> u32 {
        self.first_seq
    }

    /// Number of records.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Sequence number of the last record (wrapping).
    pub fn last_seq(self) -> u32 {
        self.first_seq.wrapping_add(self.count - 1)
    }

    /// Sequence number the producer's next batch starts at (wrapping).
    pub fn next_seq(self) -> u32 {
        self.first_seq.wrapping_add(self.count)
    }
}

/// Why a [`BatchSeq`] is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSeqError {
    /// A batch without records has no sequence.
    Empty,
    /// More than [`MAX_BATCH_RECORDS`] records.
    TooManyRecords {
        /// The count given.
        count: u32,
    },
}

impl fmt::Display for BatchSeqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSeqError::Empty => write!(f, "a producer batch must hold at least one record"),
            BatchSeqError::TooManyRecords { count } => write!(
                f,
                "a producer batch holds {count} records; at most {MAX_BATCH_RECORDS} are allowed"
            ),
        }
    }
}

impl std::error::Error for BatchSeqError {}

/// The producer fields one batch carries: who sent it and which sequences it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchMeta {
    /// The producer.
    pub producer: ProducerId,
    /// The producer's epoch when it sent the batch.
    pub epoch: ProducerEpoch,
    /// The batch's sequence numbers.
    pub seq: BatchSeq,
}

/// A batch as the log holds it: its sequences, where it was appended and when.
/// Its offsets are consecutive: `first_offset ..= last_offset()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendedBatch {
    /// The batch's sequence numbers.
    pub seq: BatchSeq,
    /// Offset of its first record.
    pub first_offset: Offset,
    /// Append time stored in the log with the batch (ms).
    pub append_ms: u64,
}

impl AppendedBatch {
    /// Offset of its last record.
    pub fn last_offset(&self) -> Offset {
        // record() checked that this does not overflow.
        Offset(self.first_offset.0 + u64::from(self.seq.count - 1))
    }
}

/// What to do with a batch about to be appended ([`DedupState::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New and in order: append it, then [`DedupState::record`] it.
    Append,
    /// Already in the log, exactly: answer with these offsets, append nothing.
    Duplicate {
        /// Offset of the batch's first record.
        first_offset: Offset,
        /// Offset of its last record.
        last_offset: Offset,
        /// Its append time (ms), as stored in the log.
        append_ms: u64,
    },
    /// A gap, a reordering, or a batch overlapping appended ones without matching
    /// one: typed error, nothing appended.
    OutOfOrder {
        /// The first sequence the producer's next batch must have.
        expected_seq: u32,
    },
    /// An older epoch than the producer's current one (a zombie): typed error.
    Fenced {
        /// The producer's current epoch.
        current_epoch: ProducerEpoch,
    },
    /// The producer is not known here (never seen with sequence 0, expired or
    /// evicted): typed error; the producer must re-initialise.
    UnknownProducer,
    /// A retry older than the retained window: it was appended long ago, at offsets
    /// no longer known. Typed error, not appended again.
    DuplicateTooOld,
}

/// Bounds of a partition's dedup state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Most producers kept; the least recently appended one is evicted beyond.
    pub max_producers: NonZeroU32,
    /// A producer with no batch for this long is forgotten.
    pub producer_expiry_ms: NonZeroU64,
}

impl Default for DedupConfig {
    /// 1024 producers, one hour: far beyond any client's retry time.
    fn default() -> Self {
        DedupConfig {
            max_producers: NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN),
            producer_expiry_ms: NonZeroU64::new(3_600_000).unwrap_or(NonZeroU64::MIN),
        }
    }
}

/// Why [`DedupState::record`] refused a batch (a caller bug: the log cannot hold it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The batch's offsets would pass `u64::MAX`.
    OffsetOverflow {
        /// The first offset given.
        first_offset: Offset,
        /// The batch's record count.
        count: u32,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::OffsetOverflow {
                first_offset,
                count,
            } => write!(
                f,
                "a batch of {count} records at offset {first_offset} passes the largest offset"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// One producer's state: its epoch, the next sequence it must send, its last batches.
#[derive(Clone, Debug)]
struct Producer {
    epoch: ProducerEpoch,
    next_seq: u32,
    /// Oldest first, at most [`BATCHES_PER_PRODUCER`], contiguous in sequence, the
    /// last one ending at `next_seq`.
    batches: VecDeque<AppendedBatch>,
    /// The state's clock when its last batch was recorded.
    last_append_ms: u64,
    /// Its key in [`DedupState::lru`].
    stamp: u64,
}

/// A read-only view of one producer ([`DedupState::producer`]).
#[derive(Clone, Copy, Debug)]
pub struct ProducerView<'a> {
    producer: &'a Producer,
}

impl<'a> ProducerView<'a> {
    /// Its current epoch.
    pub fn epoch(&self) -> ProducerEpoch {
        self.producer.epoch
    }

    /// The first sequence its next batch must have.
    pub fn next_seq(&self) -> u32 {
        self.producer.next_seq
    }

    /// When it last appended (ms, the state's clock then).
    pub fn last_append_ms(&self) -> u64 {
        self.producer.last_append_ms
    }

    /// Its retained batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &'a AppendedBatch> + 'a {
        self.producer.batches.iter()
    }
}

/// The dedup state of one partition (see the module doc).
#[derive(Clone, Debug)]
pub struct DedupState {
    config: DedupConfig,
    /// A B-tree, not a hash map: no hashing per batch, and ids chosen by a client
    /// cannot collide on purpose (at most `max_producers` entries).
    producers: BTreeMap<ProducerId, Producer>,
    /// Producers by recency of their last batch, least recent first. Stamps grow
    /// with every record, and so (never decreasing) does the clock they were taken
    /// at, so the front is also the longest idle.
    lru: BTreeMap<u64, ProducerId>,
    next_stamp: u64,
    /// Largest time seen (ms): clocks of different leaders may disagree, expiry
    /// only ever moves forward.
    clock_ms: u64,
    /// The highest producer id ever forgotten (None: none).
    unknown_floor: Option<ProducerId>,
    /// The epoch each recently forgotten producer had (at most `max_producers`,
    /// the lowest ids dropped first): a newer epoch of it may start again.
    forgotten: BTreeMap<ProducerId, ProducerEpoch>,
    /// One past the last offset recorded (after truncation: at most the cut).
    end_offset: Offset,
}

/// A producer forgotten at `forgotten_epoch` may start again only re-initialised: a
/// newer epoch, at sequence 0. Its batches of that epoch or older (retries, zombies)
/// are unknown: they may have been appended before it was forgotten.
fn restart_or_unknown(meta: &BatchMeta, forgotten_epoch: ProducerEpoch) -> Verdict {
    if meta.epoch > forgotten_epoch && meta.seq.first_seq() == 0 {
        Verdict::Append
    } else {
        Verdict::UnknownProducer
    }
}

impl DedupState {
    /// An empty state: what a partition with an empty log holds.
    pub fn new(config: DedupConfig) -> DedupState {
        DedupState {
            config,
            producers: BTreeMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            clock_ms: 0,
            unknown_floor: None,
            forgotten: BTreeMap::new(),
            end_offset: Offset(0),
        }
    }

    /// Decides what to do with a batch about to be appended at time `now_ms`
    /// (rules in the module doc). Does not change the state: after appending an
    /// `Append` batch, call [`DedupState::record`].
    pub fn check(&self, meta: &BatchMeta, now_ms: u64) -> Verdict {
        let now_ms = now_ms.max(self.clock_ms);
        let Some(p) = self.producers.get(&meta.producer) else {
            return self.check_absent(meta);
        };
        if self.is_expired(p, now_ms) {
            // Idle past expiry: as unknown as after `expire` removes it (forgotten at
            // its epoch), so the verdict does not depend on when the timer fired.
            return restart_or_unknown(meta, p.epoch);
        }
        if meta.epoch < p.epoch {
            return Verdict::Fenced {
                current_epoch: p.epoch,
            };
        }
        if meta.epoch > p.epoch {
            return match meta.seq.first_seq() {
                0 => Verdict::Append,
                _ => Verdict::OutOfOrder { expected_seq: 0 },
            };
        }
        p.check_seq(meta.seq)
    }

    /// A producer not in the state may start at sequence 0 unless it was forgotten;
    /// a forgotten one whose epoch is remembered, with a newer epoch.
    fn check_absent(&self, meta: &BatchMeta) -> Verdict {
        if let Some(&epoch) = self.forgotten.get(&meta.producer) {
            return restart_or_unknown(meta, epoch);
        }
        if meta.seq.first_seq() == 0 && !self.is_below_floor(meta.producer) {
            Verdict::Append
        } else {
            Verdict::UnknownProducer
        }
    }

    fn is_below_floor(&self, pid: ProducerId) -> bool {
        self.unknown_floor.is_some_and(|floor| pid <= floor)
    }

    fn is_expired(&self, p: &Producer, now_ms: u64) -> bool {
        now_ms.saturating_sub(p.last_append_ms) >= self.config.producer_expiry_ms.get()
    }

    /// The batch `meta` is in the log at `first_offset ..= first_offset + count - 1`,
    /// appended at `append_ms` (the time stored in the log with it). Called in log
    /// order for every batch the log holds (see the module doc); a `first_offset`
    /// below the end recorded so far first truncates there, as the log does.
    ///
    /// Also expires producers idle at `append_ms` and evicts the least recently
    /// appended one beyond [`DedupConfig::max_producers`].
    pub fn record(
        &mut self,
        meta: &BatchMeta,
        first_offset: Offset,
        append_ms: u64,
    ) -> Result<(), RecordError> {
        let overflow = RecordError::OffsetOverflow {
            first_offset,
            count: meta.seq.count(),
        };
        // end = one past the last offset; it must itself fit for `end_offset`.
        let end = first_offset
            .0
            .checked_add(u64::from(meta.seq.count()))
            .ok_or(overflow)?;
        if first_offset < self.end_offset {
            self.truncate_from(first_offset);
        }
        self.clock_ms = self.clock_ms.max(append_ms);
        self.expire_idle();
        let batch = AppendedBatch {
            seq: meta.seq,
            first_offset,
            append_ms,
        };
        self.apply(meta.producer, meta.epoch, batch);
        self.end_offset = Offset(end);
        self.evict_over_bound();
        Ok(())
    }

    /// Adds `batch` to its producer, creating the producer if needed.
    fn apply(&mut self, pid: ProducerId, epoch: ProducerEpoch, batch: AppendedBatch) {
        let p = match self.producers.entry(pid) {
            Entry::Occupied(e) => {
                let p = e.into_mut();
                if epoch < p.epoch {
                    // A leader fenced this; the log holding it anyway means the
                    // newer epoch's state is what retries must be checked against.
                    log::warn!(
                        "dedup: producer {pid} epoch {epoch} batch at {} is older than \
                         epoch {}; keeping the newer epoch",
                        batch.first_offset,
                        p.epoch
                    );
                    return;
                }
                self.lru.remove(&p.stamp);
                p
            }
            Entry::Vacant(e) => {
                self.forgotten.remove(&pid);
                e.insert(Producer {
                    epoch,
                    next_seq: batch.seq.first_seq(),
                    batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                    last_append_ms: 0,
                    stamp: 0,
                })
            }
        };
        p.push(pid, epoch, batch);
        p.last_append_ms = self.clock_ms;
        p.stamp = self.next_stamp;
        self.lru.insert(self.next_stamp, pid);
        self.next_stamp += 1;
    }

    /// Forgets producers idle for [`DedupConfig::producer_expiry_ms`] at `now_ms`
    /// (the runner calls this now and then; `check` already treats them as
    /// unknown). Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.expire_idle()
    }

    fn expire_idle(&mut self) -> usize {
        let mut expired = 0;
        // Bounded: each turn removes one producer.
        while let Some((&stamp, &pid)) = self.lru.first_key_value() {
            let idle = self
                .producers
                .get(&pid)
                .is_none_or(|p| self.is_expired(p, self.clock_ms));
            if !idle {
                break;
            }
            self.forget(stamp, pid);
            expired += 1;
        }
        expired
    }

    fn evict_over_bound(&mut self) {
        let max = self.config.max_producers.get() as usize;
        while self.producers.len() > max {
            let Some((&stamp, &pid)) = self.lru.first_key_value() else {
                break;
            };
            log::debug!("dedup: evicting producer {pid}: more than {max} producers");
            self.forget(stamp, pid);
        }
    }

    fn forget(&mut self, stamp: u64, pid: ProducerId) {
        self.lru.remove(&stamp);
        if let Some(p) = self.producers.remove(&pid) {
            self.remember_forgotten(pid, p.epoch);
        }
        self.unknown_floor = Some(self.unknown_floor.map_or(pid, |f| f.max(pid)));
    }

    /// The log dropped every entry at or after `offset`: batches there go, a batch
    /// that straddles `offset` keeps the records before it, and each producer's next
    /// sequence goes back to the first one cut. Producers stay known at their newest
    /// epoch (a batch of a newer epoch means that epoch was handed out, so older ones
    /// are still fenced). Returns the batches dropped or shortened.
    pub fn truncate_from(&mut self, offset: Offset) -> usize {
        if offset >= self.end_offset {
            return 0;
        }
        self.end_offset = offset;
        self.producers
            .values_mut()
            .map(|p| p.truncate_from(offset))
            .sum()
    }

    /// Treats every producer id up to `pid` that is not in the state as forgotten
    /// (unknown). For a rebuild that replays only a suffix of the log: the ids
    /// InitProducer had handed out before that suffix's start must not be able to
    /// restart at sequence 0.
    pub fn forget_producers_through(&mut self, pid: ProducerId) {
        self.unknown_floor = Some(self.unknown_floor.map_or(pid, |f| f.max(pid)));
    }

    /// Forgets one producer as expiry would (its later batches, retries included,
    /// get `UnknownProducer`): for a rebuild that cannot tell how much of its last
    /// batch the log holds.
    pub fn forget_producer(&mut self, pid: ProducerId) {
        match self.producers.get(&pid) {
            Some(p) => {
                let stamp = p.stamp;
                self.forget(stamp, pid);
            }
            None => self.forget_producers_through(pid),
        }
    }

    /// The newest epoch of every producer kept or remembered as forgotten, by id.
    pub fn epochs(&self) -> Vec<(ProducerId, ProducerEpoch)> {
        // The two maps never share an id (`check_invariants`).
        let mut all: Vec<(ProducerId, ProducerEpoch)> =
            self.forgotten.iter().map(|(&pid, &e)| (pid, e)).collect();
        all.extend(self.producers.iter().map(|(&pid, p)| (pid, p.epoch)));
        all.sort_unstable();
        all
    }

    /// Remembers that producer `pid`, not kept, was forgotten at `epoch` (from the
    /// persisted floor: its batches were all cut): a newer epoch may start again.
    pub fn remember_forgotten(&mut self, pid: ProducerId, epoch: ProducerEpoch) {
        if self.producers.contains_key(&pid) {
            return;
        }
        let e = self.forgotten.entry(pid).or_insert(epoch);
        *e = (*e).max(epoch);
        let max = self.config.max_producers.get() as usize;
        while self.forgotten.len() > max {
            self.forgotten.pop_first();
        }
    }

    /// The highest producer id forgotten, if any.
    pub fn unknown_floor(&self) -> Option<ProducerId> {
        self.unknown_floor
    }

    /// Producers kept.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// One producer's state, if kept (an expired one may still be here until the
    /// next `expire` or `record`).
    pub fn producer(&self, pid: ProducerId) -> Option<ProducerView<'_>> {
        self.producers
            .get(&pid)
            .map(|producer| ProducerView { producer })
    }

    /// One past the last offset recorded.
    pub fn end_offset(&self) -> Offset {
        self.end_offset
    }

    /// The bounds this state keeps.
    pub fn config(&self) -> DedupConfig {
        self.config
    }

    /// Checks the state's invariants (for tests and simulators): bounds, the LRU
    /// index, and per producer contiguous, non-overlapping batches below the end.
    pub fn check_invariants(&self) -> Result<(), String> {
        let max = self.config.max_producers.get() as usize;
        if self.producers.len() > max || self.forgotten.len() > max {
            return Err(format!(
                "{} producers kept, {} forgotten epochs",
                self.producers.len(),
                self.forgotten.len()
            ));
        }
        if let Some(pid) = self
            .forgotten
            .keys()
            .find(|p| self.producers.contains_key(p))
        {
            return Err(format!("producer {pid} both kept and forgotten"));
        }
        if self.lru.len() != self.producers.len() {
            return Err(format!(
                "lru holds {} producers, the map {}",
                self.lru.len(),
                self.producers.len()
            ));
        }
        let mut last_ms = 0;
        for (&stamp, pid) in &self.lru {
            let p = self
                .producers
                .get(pid)
                .ok_or_else(|| format!("lru names producer {pid} not kept"))?;
            if p.stamp != stamp || stamp >= self.next_stamp {
                return Err(format!(
                    "producer {pid} stamp {} in lru as {stamp}",
                    p.stamp
                ));
            }
            if p.last_append_ms < last_ms || p.last_append_ms > self.clock_ms {
                return Err(format!("producer {pid} last append out of lru order"));
            }
            last_ms = p.last_append_ms;
            p.check_invariants(self.end_offset)
                .map_err(|e| format!("producer {pid}: {e}"))?;
        }
        Ok(())
    }
}

impl Producer {
    /// Verdict for a batch of the producer's current epoch.
    fn check_seq(&self, seq: BatchSeq) -> Verdict {
        if let Some(b) = self.batches.iter().find(|b| b.seq == seq) {
            return Verdict::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset(),
                append_ms: b.append_ms,
            };
        }
        let ahead = seq.first_seq().wrapping_sub(self.next_seq);
        if ahead == 0 {
            return Verdict::Append;
        }
        let expected = Verdict::OutOfOrder {
            expected_seq: self.next_seq,
        };
        if ahead < HALF_SEQ_SPACE {
            return expected; // a gap
        }
        let behind = self.next_seq.wrapping_sub(seq.first_seq());
        if behind <= self.window() {
            expected // overlaps retained batches without matching one
        } else {
            Verdict::DuplicateTooOld
        }
    }

    /// Sequences covered by the retained batches.
    fn window(&self) -> u32 {
        self.batches
            .front()
            .map_or(0, |b| self.next_seq.wrapping_sub(b.seq.first_seq()))
    }

    /// Appends a recorded batch, keeping the batches contiguous and bounded.
    fn push(&mut self, pid: ProducerId, epoch: ProducerEpoch, batch: AppendedBatch) {
        if epoch > self.epoch {
            // A new epoch restarts the sequence; the old epoch's retries are fenced.
            self.epoch = epoch;
            self.batches.clear();
        } else if batch.seq.first_seq() != self.next_seq {
            // The log is the truth; older batches no longer line up with it, so
            // drop them (their retries become typed errors, not duplicates).
            log::warn!(
                "dedup: producer {pid} batch at {} starts at sequence {}, expected {}",
                batch.first_offset,
                batch.seq.first_seq(),
                self.next_seq
            );
            self.batches.clear();
        }
        if self.batches.len() >= BATCHES_PER_PRODUCER {
            self.batches.pop_front();
        }
        self.next_seq = batch.seq.next_seq();
        self.batches.push_back(batch);
    }

    fn truncate_from(&mut self, offset: Offset) -> usize {
        let mut changed = 0;
        while let Some(b) = self.batches.back_mut() {
            if b.first_offset >= offset {
                self.next_seq = b.seq.first_seq();
                self.batches.pop_back();
                changed += 1;
                continue;
            }
            if b.last_offset() >= offset {
                // offset - first < count ≤ MAX_BATCH_RECORDS: fits and is ≥ 1.
                let kept = (offset.0 - b.first_offset.0) as u32;
                b.seq = BatchSeq {
                    first_seq: b.seq.first_seq(),
                    count: kept,
                };
                self.next_seq = b.seq.next_seq();
                changed += 1;
            }
            break;
        }
        changed
    }

    fn check_invariants(&self, end_offset: Offset) -> Result<(), String> {
        if self.batches.len() > BATCHES_PER_PRODUCER {
            return Err(format!("{} batches", self.batches.len()));
        }
        if self.window() > BATCHES_PER_PRODUCER as u32 * MAX_BATCH_RECORDS {
            return Err(format!("window of {} sequences", self.window()));
        }
        let mut prev: Option<&AppendedBatch> = None;
        for b in &self.batches {
            if let Some(a) = prev {
                if a.seq.next_seq() != b.seq.first_seq() {
                    return Err(format!("batches {a:?} and {b:?} not contiguous"));
                }
                if a.last_offset() >= b.first_offset {
                    return Err(format!("batches {a:?} and {b:?} overlap in offsets"));
                }
            }
            if b.last_offset() >= end_offset {
                return Err(format!("batch {b:?} at or past the end {end_offset}"));
            }
            prev = Some(b);
        }
        match prev {
            Some(last) if last.seq.next_seq() != self.next_seq => Err(format!(
                "next sequence {} but the last batch ends before {}",
                self.next_seq,
                last.seq.next_seq()
            )),
            _ => Ok(()),
        }
    }
}

/// Why a batch header could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchMetaError {
    /// Too few bytes.
    Read(ReadError),
    /// A version this build does not know.
    UnknownVersion {
        /// The version byte read.
        version: u8,
    },
    /// An empty or oversized record count.
    Seq(BatchSeqError),
    /// Bytes after the header where it should have ended.
    Trailing(TrailingBytes),
}

impl fmt::Display for BatchMetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchMetaError::Read(e) => write!(f, "producer batch header: {e}"),
            BatchMetaError::UnknownVersion { version } => write!(
                f,
                "producer batch header version {version} is unknown (this build reads \
                 {BATCH_META_VERSION})"
            ),
            BatchMetaError::Seq(e) => write!(f, "producer batch header: {e}"),
            BatchMetaError::Trailing(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BatchMetaError {}

impl From<ReadError> for BatchMetaError {
    fn from(e: ReadError) -> Self {
        BatchMetaError::Read(e)
    }
}

/// Appends the encoding of `meta` ([`BATCH_META_BYTES`] bytes) to `out`.
pub fn encode_batch_meta(meta: &BatchMeta, out: &mut Vec<u8>) {
    out.push(BATCH_META_VERSION);
    out.extend_from_slice(&meta.producer.0.to_be_bytes());
    out.extend_from_slice(&meta.epoch.0.to_be_bytes());
    out.extend_from_slice(&meta.seq.first_seq().to_be_bytes());
    out.extend_from_slice(&meta.seq.count().to_be_bytes());
}

/// Reads one batch header from `r` (for a header embedded in a larger structure).
pub fn read_batch_meta(r: &mut ByteReader<'_>) -> Result<BatchMeta, BatchMetaError> {
    let version = r.u8("producer batch header version")?;
    if version != BATCH_META_VERSION {
        return Err(BatchMetaError::UnknownVersion { version });
    }
    let producer = ProducerId(r.u64("producer id")?);
    let epoch = ProducerEpoch(r.u16("producer epoch")?);
    let first_seq = r.u32("producer first sequence")?;
    let count = r.u32("producer batch record count")?;
    let seq = BatchSeq::new(first_seq, count).map_err(BatchMetaError::Seq)?;
    Ok(BatchMeta {
        producer,
        epoch,
        seq,
    })
}

/// Decodes a batch header that is the whole of `bytes`.
pub fn decode_batch_meta(bytes: &[u8]) -> Result<BatchMeta, BatchMetaError> {
    let mut r = ByteReader::new(bytes);
    let meta = read_batch_meta(&mut r)?;
    r.finish("producer batch header")
        .map_err(BatchMetaError::Trailing)?;
    Ok(meta)
}

#[cfg(test)]
#[path = "dedup_tests.rs"]
mod tests;
