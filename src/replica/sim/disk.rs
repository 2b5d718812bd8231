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
//!   cutting the last one short; the page cache is rebuilt from the disk.

use std::cell::RefCell;
use std::rc::Rc;

use crate::raft::{Entry, HardState, Index, LogStart, SplitMix64, Storage, StorageError, Term};
use crate::replica::ReplicaStorage;

/// One image of a log: its start record and the entries after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Image {
    pub(crate) start: LogStart,
    pub(crate) entries: Vec<Entry>,
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
        Ok(())
    }

    fn compact(&mut self, start: LogStart) {
        if start.index <= self.start.index {
            return;
        }
        let drop = (start.index.0 - self.start.index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.start = start;
    }

    fn install(&mut self, start: LogStart) {
        self.entries.clear();
        self.start = start;
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
    /// The durable "recovering" marker (production: `node::meta`'s marker file): a
    /// node that crashes while catching up after a wipe still does not vote when it
    /// comes back.
    pub(crate) recovering_marker: bool,
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
        };
        SimDisk {
            durable: image.clone(),
            cache: image,
            hard_state: hs,
            written_hs: hs,
            recovering_marker: false,
            unsynced: Vec::new(),
            journal: Vec::new(),
            lazy_hard_state: false,
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
        total - kept
    }

    /// The data dir is replaced by an empty one (a node that joins).
    pub(crate) fn wipe(&mut self) {
        let lazy = self.lazy_hard_state;
        *self = SimDisk::new(LogStart::default());
        self.lazy_hard_state = lazy;
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
        let d = self.0.borrow();
        if index < d.cache.start.index {
            return Err(StorageError::Compacted);
        }
        d.cache.term(index).ok_or(StorageError::Unavailable)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let d = self.0.borrow();
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

    fn is_no_space(_: &Self::Error) -> bool {
        // The simulated disk never fills up (storage faults are a later step).
        false
    }
}
