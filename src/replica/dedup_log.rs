//! [`DedupLog`]: a partition's [`DedupState`] kept equal to what its log holds.
//!
//! The driver calls it with every slice of entries it appends to the log (leader,
//! follower, the Raft cut of an uncommitted tail), with the leader's own batches
//! as it proposes them, and once at start-up over the retained log
//! ([`DedupLog::rebuild`]). The producer batch headers ([`encode_header`]) are
//! the only bytes it reads: the first record of an idempotent batch
//! ([`RecordKind::DataV1Batch`]) starts with one (`records::stored`), and so does
//! what compaction leaves of it ([`RecordKind::CompactedBatchStart`]); logs of
//! the first idempotence builds hold it as an entry of its own before the records
//! ([`RecordKind::ProducerBatch`]), still read. Every other entry only tells where
//! a batch's records end.
//!
//! # Why every replica keeps it (not only the leader)
//! A follower records batches as it appends them, so a follower that wins an
//! election checks its first produce against a state that is already there: no
//! log scan on the leadership change (which would delay the first produces of a
//! new leader by the scan of its whole log) and no window in which a retry could
//! slip past an empty state. The cost is one header decode per idempotent batch on
//! each replica.
//!
//! # A batch's extent
//! A batch of `count` records whose first record is at `f` (the batch start
//! itself; for a `ProducerBatch` entry at `h`, `f = h + 1`) holds
//! `f ..= f + count - 1`, all of the header's term: the leader appends them in one
//! proposal, so by Raft's log matching an entry of that term at the next index is
//! the batch's next record (or compaction's placeholder of it). A follower may
//! receive them in several AppendEntries: the batch is recorded once its last
//! record is appended. If an entry of another term (a new leader's no-op) takes a
//! place the batch should have had, the log keeps only a prefix of the batch, and
//! that prefix is recorded (the dedup contract: as far as the log holds it).
//!
//! # Rebuild at open: the whole retained log
//! [`DedupLog::rebuild`] reads every retained entry once (only headers are
//! decoded). Scanning a tail and raising the unknown floor instead would make
//! every producer that did not write in that tail re-initialise after each
//! restart, and needs the highest id handed out, which the partition does not
//! know. Measured: a 1 GiB partition (1,000,000 records of 1 KiB) adds 2.5 s to
//! its open (dev build, warm page cache; `group N: driver built in` in the log).
//!
//! # A log that lost its beginning
//! The state is derived from the retained log. After a restart over a log whose
//! start was cut by retention, or a log start installed from the leader (this
//! replica was too far behind), the batches before the start are not known. Every
//! producer id up to the highest one seen in any header is then made unknown
//! ([`DedupState::forget_producers_through`]): such a producer's retry is refused
//! `UNKNOWN_PRODUCER`, never appended a second time. A producer with a higher id
//! than every producer of the retained log, all of whose batches were cut, is
//! covered by the *producer floor*: before the driver moves the log start
//! (retention), it persists the highest producer id the log held
//! (`ReplicaStorage::persist_producer_floor`), and a rebuild forgets through it
//! too. (Without it the simulator found such a producer's first batch, cut while
//! the client kept retrying it, appended a second time after a restart.) The floor
//! also carries each known producer's newest epoch ([`ProducerFloor`]), so a named
//! producer whose batches were all cut may start again with a newer epoch. The case
//! left: a log start installed from the leader on a replica that never saw that
//! producer (the leader does not send its floor); it needs the replica to lag a
//! whole retention period behind while the client retries.
//!
//! # A rebuild that met damaged entries
//! A damaged entry may be a batch start: the batch it opened is not known, and
//! no rule can tell which producer's retry to refuse (a producer whose first
//! batch it was is not even seen). So the state is *incomplete*
//! ([`DedupLog::is_complete`]) until the unreadable entries read again (the
//! healer rebuilt them from a peer's copy, or Raft cut them), and then it is
//! rebuilt from the log once more ([`DedupLog::try_complete`]). Meanwhile a
//! leader refuses idempotent batches with a retriable error (never appends one it
//! cannot check); other produces go on. The simulator damages batch starts and
//! checks that no value is stored twice.

use crate::bytes::ByteReader;
use crate::raft::{Entry, Index, Storage, Term};
use crate::records::{stored_batch_header, PRODUCER_HEADER_BYTES};
use crate::types::{Offset, RecordKind};

use super::dedup::{
    encode_batch_meta, read_batch_meta, BatchMeta, BatchMetaError, BatchSeq, DedupConfig,
    DedupState, ProducerEpoch, ProducerId, Verdict,
};

/// Bytes read per storage call while rebuilding.
const REBUILD_READ_BYTES: u64 = 4 << 20;

/// Runs of unreadable entries kept; past it the last run grows over the readable
/// entries between (they read, so the check stays right, only longer).
const MAX_UNREADABLE_RUNS: usize = 4096;

/// A producer batch header: what a [`RecordKind::DataV1Batch`] record starts
/// with (and a legacy [`RecordKind::ProducerBatch`] entry holds).
pub fn encode_header(meta: &BatchMeta, append_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(PRODUCER_HEADER_BYTES);
    append_header(meta, append_ms, &mut out);
    out
}

/// Appends the producer batch header of `meta` to `out` (a record's payload).
pub fn append_header(meta: &BatchMeta, append_ms: u64, out: &mut Vec<u8>) {
    encode_batch_meta(meta, out);
    out.extend_from_slice(&append_ms.to_be_bytes());
}

/// Decodes a producer batch header (exactly [`PRODUCER_HEADER_BYTES`]): the batch
/// meta and its append time (ms).
pub fn decode_header(bytes: &[u8]) -> Result<(BatchMeta, u64), BatchMetaError> {
    let mut r = ByteReader::new(bytes);
    let meta = read_batch_meta(&mut r)?;
    let append_ms = r.u64("producer batch append time")?;
    r.finish("producer batch header entry")
        .map_err(BatchMetaError::Trailing)?;
    Ok((meta, append_ms))
}

/// A batch whose records are not all appended yet.
#[derive(Clone, Copy, Debug)]
struct Partial {
    meta: BatchMeta,
    /// Where its first record is.
    first: Index,
    term: Term,
    append_ms: u64,
    /// Records of the batch appended so far.
    seen: u32,
}

/// The dedup state of one partition, fed from its log (module doc).
#[derive(Clone, Debug)]
pub struct DedupLog {
    state: DedupState,
    partial: Option<Partial>,
    /// The last entry fed (index, term): an appended slice that holds this entry
    /// with this term holds the same entries up to it (Raft's log matching), which
    /// were fed already (the leader records its batches as it proposes them).
    fed: Option<(Index, Term)>,
    /// The highest producer id of any header fed, or of the persisted floor.
    max_producer: Option<ProducerId>,
    /// Runs `[first, end)` of entries the rebuild could not read (module doc).
    unreadable: Vec<(Index, Index)>,
}

/// What the driver persists before it moves the log start
/// (`ReplicaStorage::persist_producer_floor`): the highest producer id the log held,
/// and the newest epoch of each producer the state keeps or remembers as forgotten
/// (at most [`MAX_FLOOR_EPOCHS`], the highest ids), so a rebuild over the cut log
/// refuses the cut batches' retries but lets a re-initialised producer (a named one
/// keeps its id, with a newer epoch) start again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerFloor {
    /// The highest producer id the log held (0: none).
    pub high: u64,
    /// (producer id, newest epoch), by id.
    pub epochs: Vec<(u64, u16)>,
}

impl ProducerFloor {
    /// `self` persisted over `older`: the highest id ever recorded stays, the epochs
    /// are the newest state's.
    pub fn over(&self, older: &ProducerFloor) -> ProducerFloor {
        ProducerFloor {
            high: self.high.max(older.high),
            epochs: self.epochs.clone(),
        }
    }
}

/// Most epochs a persisted floor carries (two partitions' worth of producers at the
/// default bound).
pub const MAX_FLOOR_EPOCHS: usize = 4096;

impl DedupLog {
    /// The state of an empty log.
    pub fn new(config: DedupConfig) -> DedupLog {
        DedupLog {
            state: DedupState::new(config),
            partial: None,
            fed: None,
            max_producer: None,
            unreadable: Vec::new(),
        }
    }

    /// The state of the log `storage` holds: every retained entry is read once
    /// (a damaged range is skipped entry by entry, logged). Bounded by the log.
    pub fn rebuild<S: Storage>(
        config: DedupConfig,
        storage: &S,
        floor: &ProducerFloor,
    ) -> DedupLog {
        let mut d = DedupLog::new(config);
        // Producers whose batches a cut of the log start removed (persisted by the
        // driver before each cut): as if their headers were still fed.
        d.max_producer = (floor.high > 0).then_some(ProducerId(floor.high));
        let last = storage.last_index();
        let lo_start = storage.first_index();
        let mut lo = lo_start;
        while lo <= last {
            let read = storage.entries(lo, last + 1, REBUILD_READ_BYTES);
            match read {
                Ok(ents) if !ents.is_empty() => {
                    lo = ents[ents.len() - 1].index + 1;
                    d.feed(&ents);
                }
                Ok(_) => break,
                Err(e) => {
                    // One entry at a time past the unreadable one.
                    match storage.entries(lo, lo + 1, REBUILD_READ_BYTES) {
                        Ok(ents) => d.feed(&ents),
                        Err(_) => {
                            log::warn!(
                                "dedup: entry {lo} is unreadable ({e}); idempotent batches \
                                 wait until it is healed"
                            );
                            d.unreadable(lo, storage.term(lo).ok());
                        }
                    }
                    lo = lo + 1;
                }
            }
        }
        if lo_start > Index(1) {
            d.forget_unseen();
            // Their epochs when the driver cut the log (never older than any epoch
            // of theirs that was cut): a newer one is a re-initialised producer.
            // Not for a state that could not read all of its log (see `floor`).
            let epochs = if d.is_complete() {
                &floor.epochs[..]
            } else {
                &[]
            };
            for &(pid, epoch) in epochs {
                d.state
                    .remember_forgotten(ProducerId(pid), ProducerEpoch(epoch));
            }
        }
        d
    }

    /// What the driver persists before it moves the log start (module doc). An
    /// incomplete state carries no epochs: a batch in an entry it could not read may
    /// have a newer epoch than it knows, and remembering the older one would let
    /// that batch's retry in again once the entry is cut.
    pub fn floor(&self) -> ProducerFloor {
        let epochs = if self.is_complete() {
            self.state.epochs()
        } else {
            Vec::new()
        };
        let mut epochs: Vec<(u64, u16)> = epochs
            .into_iter()
            .map(|(pid, epoch)| (pid.0, epoch.0))
            .collect();
        // The highest ids when over the bound (the lowest are the longest forgotten).
        let over = epochs.len().saturating_sub(MAX_FLOOR_EPOCHS);
        epochs.drain(..over);
        ProducerFloor {
            high: self.producer_high_water(),
            epochs,
        }
    }

    /// False while entries the state was derived from could not be read (module
    /// doc): a leader must not check a batch against it.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// When every entry the rebuild could not read reads now (healed) or is gone
    /// (cut, or below the log start), rebuilds the state from `storage`; true
    /// when the state is complete. Reads the unreadable runs, then the whole log
    /// once: call it rarely (the driver does at most once a second, and only
    /// while an idempotent batch waits).
    pub fn try_complete<S: Storage>(&mut self, storage: &S) -> bool {
        if self.is_complete() {
            return true;
        }
        let readable = self.unreadable.iter().all(|&(first, end)| {
            let end = end.min(storage.last_index() + 1);
            let mut lo = first.max(storage.first_index());
            while lo < end {
                match storage.entries(lo, end, REBUILD_READ_BYTES) {
                    Ok(ents) if !ents.is_empty() => lo = ents[ents.len() - 1].index + 1,
                    _ => return false,
                }
            }
            true
        });
        if readable {
            log::info!("dedup: the damaged entries read again: rebuilding the producer state");
            // Without epochs: the ones persisted may be older than a batch in the
            // entries this state could not read (see `floor`).
            let floor = ProducerFloor {
                high: self.max_producer.map_or(0, |p| p.0),
                epochs: Vec::new(),
            };
            *self = DedupLog::rebuild(self.state.config(), storage, &floor);
        }
        self.is_complete()
    }

    /// The log lost its beginning (retention before a restart, a log start
    /// installed from the leader): producers whose batches were all there are not
    /// known. Every id up to the highest one seen is made unknown, so a retry of
    /// such a producer's first batch is refused, not appended again (module doc).
    fn forget_unseen(&mut self) {
        if let Some(pid) = self.max_producer {
            self.state.forget_producers_through(pid);
        }
    }

    /// A log start was installed from the leader: the log now starts at `first`
    /// and what came before is not known here.
    pub fn install_start(&mut self, first: Index) {
        self.truncate_from(first);
        self.forget_unseen();
        // The log was discarded whole: what could not be read is gone with it.
        self.unreadable.clear();
    }

    /// The highest producer id this replica's log held a batch of (0: none): what
    /// the driver persists before it moves the log start.
    pub fn producer_high_water(&self) -> u64 {
        self.max_producer.map_or(0, |p| p.0)
    }

    /// The state, read-only.
    pub fn state(&self) -> &DedupState {
        &self.state
    }

    /// Entries were appended to the log (discarding any at or after the first's
    /// index). Entries already fed (the leader's own proposals) are skipped.
    pub fn appended(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        // The leader's own proposal, recorded as proposed: skip what was fed.
        let fed_here = self.fed.filter(|&(index, term)| {
            first.index <= index && entries.iter().any(|e| e.index == index && e.term == term)
        });
        let from = match fed_here {
            Some((index, _)) => entries.partition_point(|e| e.index <= index),
            None => {
                // Appending at i discards the log from i on (nothing when i is past
                // the end).
                self.truncate_from(first.index);
                0
            }
        };
        self.feed(&entries[from..]);
    }

    /// The log dropped every entry at or after `index` (a cut, or a log start
    /// installed from the leader: then `index` is the new first index and what
    /// came before is not known here).
    pub fn truncate_from(&mut self, index: Index) {
        let cut = self.state.truncate_from(Offset(index.0));
        if cut > 0 {
            log::info!("dedup: the log was cut at {index}: {cut} producer batches dropped");
        }
        // Unreadable entries cut away no longer make the state incomplete.
        self.unreadable.retain_mut(|run| {
            run.1 = run.1.min(index);
            run.0 < run.1
        });
        if let Some(p) = &mut self.partial {
            if p.first >= index {
                self.partial = None;
            } else {
                // Records kept: those below the cut.
                p.seen = p
                    .seen
                    .min(u32::try_from(index.0 - p.first.0).unwrap_or(u32::MAX));
            }
        }
        self.fed = None;
    }

    /// Leader: the verdict for a batch about to be proposed at `now_ms` (wall clock).
    pub fn check(&mut self, meta: &BatchMeta, now_ms: u64) -> Verdict {
        // A leader's log is not continued by another: a batch left partial is cut.
        self.flush_partial();
        self.state.check(meta, now_ms)
    }

    /// Leader: the batch `meta` is proposed with its first record at `first`.
    /// Recorded now, so the next check of the same proposal sees it.
    pub fn record_own(&mut self, meta: &BatchMeta, first: Index, append_ms: u64) {
        self.flush_partial();
        if let Err(e) = self.state.record(meta, Offset(first.0), append_ms) {
            log::error!("dedup: cannot record the batch at {first}: {e}");
        }
    }

    /// Leader: the proposal that was to start at `first` was refused (nothing
    /// appended): the batches recorded for it go again.
    pub fn retract(&mut self, first: Index) {
        self.state.truncate_from(Offset(first.0));
    }

    /// Leader: a proposal of entries up to `last` in `term` was appended; its
    /// batches were recorded with [`DedupLog::record_own`].
    pub fn proposed(&mut self, first: Index, last: Index, term: Term) {
        // Only when contiguous with what was fed: otherwise the appended slice is
        // fed again (same result, more work).
        if self.fed.is_none_or(|(index, _)| index + 1 >= first) {
            self.fed = Some((last, term));
        }
    }

    /// Forgets producers idle past the expiry at `now_ms` (wall clock).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.state.expire(now_ms)
    }

    /// Rebuild: the entry at `index` (of `term`, if known) cannot be read. It
    /// still counts as a record of a pending batch when its term says it is one.
    fn unreadable(&mut self, index: Index, term: Option<Term>) {
        let full = self.unreadable.len() >= MAX_UNREADABLE_RUNS;
        match self.unreadable.last_mut() {
            Some(run) if run.1 == index || full => run.1 = index + 1,
            _ => self.unreadable.push((index, index + 1)),
        }
        if let Some(p) = &mut self.partial {
            let next = p.first + u64::from(p.seen);
            if index == next && term == Some(p.term) {
                p.seen += 1;
                if p.seen == p.meta.seq.count() {
                    self.flush_partial();
                }
                return;
            }
        }
        if let Some(p) = self.partial.take() {
            // How much of the batch the log holds is unknown: recording less would
            // let a retry be appended again, more would answer it with offsets of
            // other records. The producer must re-init instead.
            log::warn!(
                "dedup: a record of producer {}'s batch at {} is unreadable: the producer \
                 is forgotten here",
                p.meta.producer,
                p.first
            );
            self.state.forget_producer(p.meta.producer);
        }
        self.fed = None;
    }

    fn feed(&mut self, entries: &[Entry]) {
        for e in entries {
            self.feed_one(e);
            self.fed = Some((e.index, e.term));
        }
    }

    fn feed_one(&mut self, e: &Entry) {
        if let Some(p) = &mut self.partial {
            // Same term at the next index: the batch's record (module doc).
            if e.index == p.first + u64::from(p.seen) && e.term == p.term {
                p.seen += 1;
                if p.seen == p.meta.seq.count() {
                    self.flush_partial();
                }
                return;
            }
            self.flush_partial();
        }
        // The header, where the batch's first record is, and how many of its
        // records this entry is.
        let (header, first, seen) = match e.kind {
            RecordKind::ProducerBatch => (Some(&e.data[..]), e.index + 1, 0),
            RecordKind::DataV1Batch | RecordKind::CompactedBatchStart => {
                (stored_batch_header(e.kind, &e.data), e.index, 1)
            }
            _ => return,
        };
        match header.map(decode_header) {
            Some(Ok((meta, append_ms))) => {
                self.max_producer = self.max_producer.max(Some(meta.producer));
                self.partial = Some(Partial {
                    meta,
                    first,
                    term: e.term,
                    append_ms,
                    seen,
                });
                if seen == meta.seq.count() {
                    self.flush_partial();
                }
            }
            Some(Err(err)) => log::warn!(
                "dedup: the producer batch header at {} does not decode ({err}); its batch \
                 is not known here",
                e.index
            ),
            None => log::warn!(
                "dedup: the batch start at {} is shorter than its header; its batch is not \
                 known here",
                e.index
            ),
        }
    }

    /// Records the pending batch as far as the log holds it.
    fn flush_partial(&mut self) {
        let Some(p) = self.partial.take() else {
            return;
        };
        let meta = if p.seen == p.meta.seq.count() {
            p.meta
        } else {
            let Ok(seq) = BatchSeq::new(p.meta.seq.first_seq(), p.seen) else {
                // No record of the batch made it: nothing to record.
                return;
            };
            log::info!(
                "dedup: producer {} batch at {} kept {} of {} records",
                p.meta.producer,
                p.first,
                p.seen,
                p.meta.seq.count()
            );
            BatchMeta { seq, ..p.meta }
        };
        if let Err(e) = self.state.record(&meta, Offset(p.first.0), p.append_ms) {
            log::error!("dedup: cannot record the batch at {}: {e}", p.first);
        }
    }
}

#[cfg(test)]
#[path = "dedup_log_tests.rs"]
mod tests;
