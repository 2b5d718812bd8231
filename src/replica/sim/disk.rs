//! The simulated data dir: what the process reads (the page cache) apart from what
//! survives a crash (the disk).
//!
//! * `append_entries` changes the page cache only; the appends since the last sync
//!   are kept in order.
//! * [`SimDisk::sync`] (the harness executing `Effect::Sync`) makes every append so
//!   far durable.
//! * `persist_hard_state`, `install_start` and `compact_start` are durable at once
//!   (atomic files), unless the broken-variant knob `lazy_hard_state` holds the hard
//!   state back until the next sync.
//! * [`SimDisk::crash`] keeps the disk plus a random prefix of the unsynced appends
//!   (writeback may have flushed some of them before the power went), possibly
//!   cutting the last one short (a torn write); the page cache is rebuilt from the
//!   disk.
//!
//! # Storage faults (injected by the harness within the bound of `super`)
//! * [`SimDisk::damage`]: a durable entry's copy becomes unreadable: a bit flip, a
//!   synced write that was reported done but lost (our log detects both with its
//!   checksums and the checkpoint), or one end of a misdirected write. The entry
//!   stays in the log (Raft may have counted it); reads of it fail with
//!   `StorageError::Damaged(i)` until it is healed or replaced by a new append.
//!   The image keeps the true content, so the harness can tell a right heal from a
//!   wrong one. A page-cache copy of the same entry is damaged too (a read goes to
//!   the disk).
//! * [`SimDisk::read_error`]: the next read of an entry fails as `Damaged` once,
//!   then works (a transient media error).
//! * Undetectable lost writes (the old record still there, checksum valid) are
//!   outside the model: the real log cannot tell them from a good record.
//!
//! Every read that meets damage is recorded (as production's `DamageReports`), for
//! the process's healer.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::raft::{
    Entry, HardState, Index, LogStart, RecordKind, SplitMix64, Storage, StorageError, Term,
};
use crate::replica::heal::{Anchor, FetchAnswer, FetchRequest};
use crate::replica::{ProducerFloor, ReplicaStorage};

/// Most damaged reads recorded before the healer takes them (the scrubber finds the
/// rest).
const MAX_REPORTS: usize = 4096;

/// One image of a log: its start record and the entries after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Image {
    pub(crate) start: LogStart,
    pub(crate) entries: Vec<Entry>,
    /// Entries whose copy here is damaged (the true content stays in `entries`).
    pub(crate) damaged: BTreeSet<Index>,
}

impl Image {
    pub(crate) fn last_index(&self) -> Index {
        self.start.index + self.entries.len() as u64
    }

    /// Term at `i` (the log start's term at `start.index`), None outside the log.
    pub(crate) fn term(&self, i: Index) -> Option<Term> {
        if i == self.start.index {
            return Some(self.start.term);
        }
        self.entry(i).map(|e| e.term)
    }

    pub(crate) fn entry(&self, i: Index) -> Option<&Entry> {
        if i <= self.start.index || i > self.last_index() {
            return None;
        }
        self.entries.get((i.0 - self.start.index.0 - 1) as usize)
    }

    /// True if this image holds entry `i` with `term`, or starts at or after `i`
    /// (the prefix was compacted or installed from a leader's committed start).
    pub(crate) fn holds(&self, i: Index, term: Term) -> bool {
        i <= self.start.index || self.term(i) == Some(term)
    }

    /// True if this image keeps entry `i` with `term` readable (not compacted away,
    /// not damaged).
    pub(crate) fn intact(&self, i: Index, term: Term) -> bool {
        i > self.start.index && self.term(i) == Some(term) && !self.damaged.contains(&i)
    }

    fn append(&mut self, ents: &[Entry]) -> Result<(), String> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index <= self.start.index || first.index > self.last_index() + 1 {
            return Err(format!(
                "append at {} outside the log {}..={}",
                first.index,
                self.start.index + 1,
                self.last_index() + 1
            ));
        }
        self.entries
            .truncate((first.index.0 - self.start.index.0 - 1) as usize);
        self.entries.extend_from_slice(ents);
        // New writes replace whatever was there, damaged or not.
        self.damaged.split_off(&first.index);
        Ok(())
    }

    /// Drops every entry from `i` on (the broken variant that cuts at damage).
    fn truncate_from(&mut self, i: Index) {
        if i > self.start.index {
            self.entries
                .truncate((i.0 - self.start.index.0 - 1) as usize);
            self.damaged.split_off(&i);
        }
    }

    fn compact(&mut self, start: LogStart) {
        if start.index <= self.start.index {
            return;
        }
        let drop = (start.index.0 - self.start.index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.damaged = self.damaged.split_off(&(start.index + 1));
        self.start = start;
    }

    fn install(&mut self, start: LogStart) {
        self.entries.clear();
        self.damaged.clear();
        self.start = start;
    }

    /// Maximal runs `[first, end)` of damaged entries, each with the first intact
    /// entry after it as anchor (None if the log ends damaged).
    pub(crate) fn damaged_runs(&self) -> Vec<(Index, Index, Option<Anchor>)> {
        let mut runs: Vec<(Index, Index)> = Vec::new();
        for i in self.damaged.iter().copied() {
            match runs.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        runs.into_iter()
            .map(|(first, end)| {
                let anchor = self.term(end).map(|term| Anchor { index: end, term });
                (first, end, anchor)
            })
            .collect()
    }
}

/// An append the checker has not seen yet: the term before it, and the entries.
pub(crate) struct Appended {
    pub(crate) prev_term: Term,
    pub(crate) entries: Vec<Entry>,
}

/// One node's data dir.
pub(crate) struct SimDisk {
    pub(crate) durable: Image,
    pub(crate) cache: Image,
    /// The hard state on disk.
    pub(crate) hard_state: HardState,
    /// The hard state last written (differs from `hard_state` only under the
    /// `lazy_hard_state` knob).
    written_hs: HardState,
    /// Appends since the last sync, in order.
    unsynced: Vec<Appended>,
    /// Appends that became durable, not yet taken by the checker (an append lost
    /// in a crash before it was durable or sent never existed for Raft).
    pub(crate) journal: Vec<Appended>,
    /// Broken variant: hard-state writes become durable only at the next sync.
    pub(crate) lazy_hard_state: bool,
    /// Broken variant: a restart cuts the log at its first damaged entry, as a torn
    /// tail is cut.
    pub(crate) truncate_at_damage: bool,
    /// Entries whose next read fails once (transient read errors).
    read_errors: BTreeSet<Index>,
    /// Damaged entries reads met, for the healer (bounded by [`MAX_REPORTS`]).
    reports: BTreeSet<Index>,
    /// The durable "recovering" marker (production: `node::meta`'s marker file): a
    /// node that crashes while catching up after a wipe still does not vote when it
    /// comes back.
    pub(crate) recovering_marker: bool,
    /// The durable producer floor (production: `node::meta`'s `dedup.floor`).
    producer_floor: ProducerFloor,
}

impl SimDisk {
    /// An empty data dir whose log starts at `start`.
    pub(crate) fn new(start: LogStart) -> SimDisk {
        let hs = HardState {
            term: start.term,
            vote: None,
            commit: start.index,
        };
        let image = Image {
            start,
            entries: Vec::new(),
            damaged: BTreeSet::new(),
        };
        SimDisk {
            durable: image.clone(),
            cache: image,
            hard_state: hs,
            written_hs: hs,
            recovering_marker: false,
            producer_floor: ProducerFloor::default(),
            unsynced: Vec::new(),
            journal: Vec::new(),
            lazy_hard_state: false,
            truncate_at_damage: false,
            read_errors: BTreeSet::new(),
            reports: BTreeSet::new(),
        }
    }

    /// fsync: every append so far (and, under the knob, the hard state) is durable.
    pub(crate) fn sync(&mut self) -> Result<(), String> {
        for a in std::mem::take(&mut self.unsynced) {
            self.durable.append(&a.entries)?;
            self.journal.push(a);
        }
        self.hard_state = self.written_hs;
        Ok(())
    }

    /// Power loss: the disk keeps a random prefix of the unsynced appends.
    /// Returns how many appends were lost entirely.
    pub(crate) fn crash(&mut self, rng: &mut SplitMix64) -> usize {
        let pending = std::mem::take(&mut self.unsynced);
        let total = pending.len();
        let kept = rng.below(total as u64 + 1) as usize;
        let mut rest = pending.into_iter();
        for a in rest.by_ref().take(kept) {
            if self.durable.append(&a.entries).is_err() {
                break;
            }
            self.journal.push(a);
        }
        if let Some(next) = rest.next() {
            if rng.chance(30) && next.entries.len() > 1 {
                let part = 1 + rng.below(next.entries.len() as u64 - 1) as usize;
                if self.durable.append(&next.entries[..part]).is_ok() {
                    self.journal.push(Appended {
                        prev_term: next.prev_term,
                        entries: next.entries[..part].to_vec(),
                    });
                }
            }
        }
        self.cache = self.durable.clone();
        self.written_hs = self.hard_state;
        self.read_errors.clear();
        self.reports.clear();
        total - kept
    }

    /// Opening the log at a restart. Only the broken variant changes anything: it
    /// cuts the log at the first damaged entry, as a torn tail.
    pub(crate) fn open(&mut self) {
        if !self.truncate_at_damage {
            return;
        }
        if let Some(first) = self.durable.damaged.first().copied() {
            self.durable.truncate_from(first);
            self.cache = self.durable.clone();
        }
    }

    /// The data dir is replaced by an empty one (a node that joins).
    pub(crate) fn wipe(&mut self) {
        let (lazy, cut) = (self.lazy_hard_state, self.truncate_at_damage);
        *self = SimDisk::new(LogStart::default());
        self.lazy_hard_state = lazy;
        self.truncate_at_damage = cut;
    }

    /// A durable data entry that may be damaged: its index and term.
    pub(crate) fn durable_data_entry(&self, i: Index) -> Option<Term> {
        self.durable
            .entry(i)
            .filter(|e| !e.kind.is_internal() && !self.durable.damaged.contains(&i))
            .map(|e| e.term)
    }

    /// Entry `i`'s copy on disk is damaged (and so is the page cache's copy of it,
    /// if the cache still holds that entry). Config entries are left alone: a node
    /// reads them at start-up and cannot start without them (outside the model).
    pub(crate) fn damage(&mut self, i: Index) -> bool {
        let Some(term) = self.durable_data_entry(i) else {
            return false;
        };
        self.durable.damaged.insert(i);
        if self.cache.entry(i) == self.durable.entry(i) && self.cache.term(i) == Some(term) {
            self.cache.damaged.insert(i);
        }
        true
    }

    /// The next read of entry `i` fails once.
    pub(crate) fn read_error(&mut self, i: Index) {
        let data = self.cache.entry(i).is_some_and(|e| !e.kind.is_internal());
        if data {
            self.read_errors.insert(i);
        }
    }

    /// Damaged entries the process's log holds now (what its scrubber finds).
    pub(crate) fn damaged_count(&self) -> usize {
        self.cache.damaged.len()
    }

    /// A read of entry `i`: fails if its copy is damaged or a transient error is
    /// due (recorded for the healer).
    fn check_read(&mut self, i: Index) -> Result<(), StorageError> {
        if self.cache.damaged.contains(&i) || self.read_errors.remove(&i) {
            if self.reports.len() < MAX_REPORTS {
                self.reports.insert(i);
            }
            return Err(StorageError::Damaged(i));
        }
        Ok(())
    }

    /// Takes the damaged entries reads met.
    pub(crate) fn take_reports(&mut self) -> BTreeSet<Index> {
        std::mem::take(&mut self.reports)
    }

    /// A peer's fetch, answered from this node's log: up to `max_entries` intact
    /// records from `req.from`, contiguous, stopping at damage or the end, and the
    /// term at the anchor if intact here.
    pub(crate) fn serve_fetch(&self, req: &FetchRequest, max_entries: usize) -> FetchAnswer {
        let c = &self.cache;
        let anchor_term = c
            .term(req.anchor)
            .filter(|_| req.anchor > c.start.index && !c.damaged.contains(&req.anchor));
        let mut entries = Vec::new();
        let mut i = req.from;
        while i < req.end && entries.len() < max_entries && !c.damaged.contains(&i) {
            let Some(e) = c.entry(i) else { break };
            entries.push(e.clone());
            i = i + 1;
        }
        FetchAnswer {
            // Filled in by the sender (`mend`), which knows its commit index.
            peer_commit: Index(0),
            anchor_term,
            entries,
        }
    }

    /// Writes a healed record in place of this node's damaged copy, durably (the
    /// page cache and the disk). Returns true if it wrote, false if there was
    /// nothing to heal here (compacted, beyond the log, or intact now). Refuses to
    /// replace an intact entry with another term.
    pub(crate) fn heal_entry(&mut self, e: &Entry) -> Result<bool, String> {
        let i = e.index;
        let Some(local_term) = self.cache.term(i).filter(|_| i > self.cache.start.index) else {
            return Ok(false);
        };
        if !self.cache.damaged.contains(&i) {
            if local_term != e.term {
                return Err(format!(
                    "HEAL violated: a rebuild would replace intact entry {i}/{local_term} with                      {i}/{}",
                    e.term
                ));
            }
            return Ok(false);
        }
        if self.cache.entry(i) != Some(e) {
            return Err(format!(
                "HEALED ENTRY violated: entry {i} healed as {i}/{} ({} bytes) but the damaged \
                 copy held {:?}",
                e.term,
                e.data.len(),
                self.cache.entry(i).map(|c| (c.term, c.data.len()))
            ));
        }
        let durable_same =
            self.durable.damaged.contains(&i) && self.durable.entry(i) == self.cache.entry(i);
        replace(&mut self.cache, e);
        if durable_same {
            replace(&mut self.durable, e);
        }
        Ok(true)
    }
}

/// Puts `e` at its index in `image` (which holds that index) and marks it intact.
fn replace(image: &mut Image, e: &Entry) {
    let slot = (e.index.0 - image.start.index.0 - 1) as usize;
    if let Some(old) = image.entries.get_mut(slot) {
        *old = e.clone();
        image.damaged.remove(&e.index);
    }
}

/// [`ReplicaStorage`] over a shared [`SimDisk`] (the harness keeps the other handle
/// to sync, crash and inspect it).
pub(crate) struct SimStorage(pub(crate) Rc<RefCell<SimDisk>>);

impl Storage for SimStorage {
    fn initial_state(&self) -> Result<(HardState, LogStart), StorageError> {
        let d = self.0.borrow();
        Ok((d.hard_state, d.cache.start.clone()))
    }

    fn first_index(&self) -> Index {
        self.0.borrow().cache.start.index + 1
    }

    fn last_index(&self) -> Index {
        self.0.borrow().cache.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        let mut d = self.0.borrow_mut();
        if index < d.cache.start.index {
            return Err(StorageError::Compacted);
        }
        let term = d.cache.term(index).ok_or(StorageError::Unavailable)?;
        if index > d.cache.start.index {
            d.check_read(index)?;
        }
        Ok(term)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let mut d = self.0.borrow_mut();
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo <= d.cache.start.index {
            return Err(StorageError::Compacted);
        }
        if hi - 1 > d.cache.last_index() {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut i = lo;
        while i < hi {
            if let Err(e) = d.check_read(i) {
                // As the real log: the records before the damaged one, else the error.
                return if out.is_empty() { Err(e) } else { Ok(out) };
            }
            let Some(e) = d.cache.entry(i) else { break };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            i = i + 1;
        }
        Ok(out)
    }

    /// As production's config index: known without reading the records (a damaged
    /// record's kind is still known from the index).
    fn config_entry_indexes(&self) -> Result<Vec<Index>, StorageError> {
        let d = self.0.borrow();
        let configs = d
            .cache
            .entries
            .iter()
            .filter(|e| e.kind == RecordKind::Config);
        Ok(configs.map(|e| e.index).collect())
    }
}

impl ReplicaStorage for SimStorage {
    type Error = String;

    fn append_entries(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut d = self.0.borrow_mut();
        let prev_term = d
            .cache
            .term(first.index - 1)
            .ok_or_else(|| format!("append at {}: no entry before it", first.index))?;
        d.cache.append(entries)?;
        d.unsynced.push(Appended {
            prev_term,
            entries: entries.to_vec(),
        });
        Ok(())
    }

    fn install_start(&mut self, start: LogStart) -> Result<(), String> {
        let mut d = self.0.borrow_mut();
        // Durable at once: earlier unsynced appends are discarded with the log.
        d.unsynced.clear();
        d.durable.install(start.clone());
        d.cache.install(start);
        Ok(())
    }

    fn compact_start(&mut self, start: LogStart) -> Result<u64, String> {
        let mut d = self.0.borrow_mut();
        let before = d.cache.entries.len();
        d.durable.compact(start.clone());
        d.cache.compact(start);
        Ok((before - d.cache.entries.len()) as u64)
    }

    fn persist_hard_state(&mut self, hs: HardState) -> Result<(), String> {
        let mut d = self.0.borrow_mut();
        d.written_hs = hs;
        if !d.lazy_hard_state {
            d.hard_state = hs;
        }
        Ok(())
    }

    fn persisted_hard_state(&self) -> HardState {
        self.0.borrow().written_hs
    }

    fn persist_producer_floor(&mut self, floor: &ProducerFloor) -> Result<(), String> {
        let mut d = self.0.borrow_mut();
        d.producer_floor = floor.over(&d.producer_floor);
        Ok(())
    }

    fn producer_floor(&self) -> ProducerFloor {
        self.0.borrow().producer_floor.clone()
    }

    fn is_no_space(_: &Self::Error) -> bool {
        // The simulated disk never fills up (storage faults are a later step).
        false
    }
}
