//! The node's view of its log: the durable part (read through [`Storage`]) plus an
//! in-memory "unstable" tail of entries not yet acknowledged as durable.
//!
//! Invariants:
//! * Entries with index `< unstable_offset` are read from storage, and storage holds
//!   them correctly (they were acknowledged through `advance`, and no later truncation
//!   reached below `unstable_offset`).
//! * `write_from` ≥ `unstable_offset`: entries `>= write_from` were not yet handed to
//!   the caller in a `Ready`.
//! * `persisted` is a prefix of THIS log known durable (it never exceeds
//!   `last_index()`); a truncation at `i` lowers it to `i - 1`.
//! * `committed` never decreases (except never: restore raises it).

use super::storage::{Storage, StorageError};
use super::types::{Entry, Index, LogStart, Term};

/// How a leader's entries fit the log ([`RaftLog::find_conflict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Every entry is already here (damaged copies proven the same by a later one).
    Match,
    /// Entries from this position on replace the log's (a real conflict, possibly
    /// preceded by damaged copies of unknown term; nothing intact is cut).
    Conflict(usize),
    /// From this position on our copies are damaged and nothing in the batch proves
    /// them the leader's, while our log goes on after the batch: only the prefix
    /// before it is acknowledged (truncating would cut intact entries after it);
    /// the healer repairs the rest.
    Unproven(usize),
}

/// Durable storage + unstable tail (see module docs).
pub(crate) struct RaftLog<S> {
    pub(crate) storage: S,
    /// Current log start (may be ahead of storage until acknowledged).
    pub(crate) start: LogStart,
    unstable: Vec<Entry>,
    unstable_offset: Index,
    write_from: Index,
    /// A log start to hand to the caller (InstallSnapshot received).
    pending_snapshot: Option<LogStart>,
    /// Durable prefix of this log.
    pub(crate) persisted: Index,
    /// Highest index known committed.
    pub(crate) committed: Index,
}

impl<S: Storage> RaftLog<S> {
    /// Opens the log over `storage` with the persisted log start and commit index.
    pub(crate) fn new(storage: S, start: LogStart, commit: Index) -> RaftLog<S> {
        let last = storage.last_index().max(start.index);
        RaftLog {
            storage,
            unstable: Vec::new(),
            unstable_offset: last + 1,
            write_from: last + 1,
            pending_snapshot: None,
            persisted: last,
            committed: commit.min(last).max(start.index),
            start,
        }
    }

    pub(crate) fn first_index(&self) -> Index {
        self.start.index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        match self.unstable.last() {
            Some(e) => e.index,
            None => self.unstable_offset - 1,
        }
    }

    pub(crate) fn last_term(&self) -> Result<Term, StorageError> {
        self.term(self.last_index())
    }

    /// Term at `index`: the log-start term at `start.index`, `Compacted` below it,
    /// `Unavailable` above the last index.
    pub(crate) fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        if index < self.start.index {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if index >= self.unstable_offset {
            return Ok(self.unstable[(index.0 - self.unstable_offset.0) as usize].term);
        }
        self.storage.term(index)
    }

    /// True if the entry at `index` exists and has `term`.
    pub(crate) fn match_term(&self, index: Index, term: Term) -> bool {
        self.term(index) == Ok(term)
    }

    /// Entries in `[lo, hi)` limited to `max_bytes` (at least one when `lo < hi`).
    pub(crate) fn entries(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if lo <= self.start.index {
            return Err(StorageError::Compacted);
        }
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        if lo < self.unstable_offset {
            let stored_hi = hi.min(self.unstable_offset);
            out = self.storage.entries(lo, stored_hi, max_bytes)?;
            bytes = out.iter().map(Entry::size_bytes).sum();
            let complete = out.last().map(|e| e.index + 1) == Some(stored_hi);
            if !complete || stored_hi == hi {
                return Ok(out);
            }
        }
        let from = lo.max(self.unstable_offset);
        let a = (from.0 - self.unstable_offset.0) as usize;
        let b = (hi.0 - self.unstable_offset.0) as usize;
        for e in &self.unstable[a..b] {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// The entry at `index`.
    pub(crate) fn entry(&self, index: Index) -> Result<Entry, StorageError> {
        self.entries(index, index + 1, u64::MAX)?
            .pop()
            .ok_or(StorageError::Unavailable)
    }

    /// Largest index `<= index` whose term is `<= term` (the log start if none).
    /// Damaged entries are passed over (their term is unknown; the hint only
    /// speeds up probing).
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let mut i = index.min(self.last_index());
        while i > self.start.index {
            match self.term(i) {
                Ok(t) if t <= term => return i,
                Ok(_) | Err(StorageError::Damaged(_)) => i = i - 1,
                Err(_) => return self.start.index,
            }
        }
        self.start.index
    }

    /// How `ents` (contiguous, following a matching entry) fit this log. A damaged
    /// local entry is the leader's if a later entry of `ents` matches an intact one
    /// here (log matching); unproven, it is replaced only where nothing intact after
    /// it would be cut with it (see [`Fit`]).
    pub(crate) fn find_conflict(&self, ents: &[Entry]) -> Fit {
        let mut unproven: Option<usize> = None;
        for (k, e) in ents.iter().enumerate() {
            if e.index <= self.start.index {
                continue;
            }
            match self.term(e.index) {
                Ok(t) if t == e.term => unproven = None,
                Err(StorageError::Damaged(_)) => {
                    unproven.get_or_insert(k);
                }
                // A real conflict, or the end of this log: everything from the first
                // unproven damaged entry on is damaged, conflicting or absent.
                _ => return Fit::Conflict(unproven.unwrap_or(k)),
            }
        }
        match unproven {
            None => Fit::Match,
            Some(k) => Fit::Unproven(k),
        }
    }

    /// Appends `ents` (contiguous, `ents[0].index <= last + 1`, above the log start),
    /// discarding any existing entries at and after `ents[0].index`. Returns the index
    /// truncated from if existing entries were discarded.
    pub(crate) fn append(&mut self, ents: &[Entry]) -> Option<Index> {
        let first = ents.first()?.index;
        debug_assert!(first > self.start.index && first <= self.last_index() + 1);
        let truncated = (first <= self.last_index()).then_some(first);
        if first >= self.unstable_offset {
            self.unstable
                .truncate((first.0 - self.unstable_offset.0) as usize);
        } else {
            self.unstable.clear();
            self.unstable_offset = first;
        }
        self.write_from = self.write_from.min(first);
        self.persisted = self.persisted.min(first - 1);
        self.unstable.extend_from_slice(ents);
        truncated
    }

    /// Raises the commit index (never lowers it).
    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Restarts the log after `start` (InstallSnapshot): everything is discarded.
    pub(crate) fn restore(&mut self, start: LogStart) {
        self.unstable.clear();
        self.unstable_offset = start.index + 1;
        self.write_from = self.unstable_offset;
        self.persisted = Index(0);
        self.committed = self.committed.max(start.index);
        self.pending_snapshot = Some(start.clone());
        self.start = start;
    }

    /// Prefix compaction: the log now starts after `start.index` (must be durable).
    pub(crate) fn compact(&mut self, start: LogStart) {
        debug_assert!(start.index <= self.persisted && start.index < self.unstable_offset);
        self.start = start;
    }

    /// True if there is something to hand to the caller for persistence.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.pending_snapshot.is_some() || self.write_from <= self.last_index()
    }

    /// Takes the pending snapshot and the entries not yet handed out. Returns also the
    /// (index, term) of the last thing written, to match the acknowledgement against.
    pub(crate) fn take_unwritten(
        &mut self,
    ) -> (Option<LogStart>, Vec<Entry>, Option<(Index, Term)>) {
        let snap = self.pending_snapshot.take();
        let mut mark = snap.as_ref().map(|s| (s.index, s.term));
        let mut ents = Vec::new();
        if self.write_from <= self.last_index() {
            let a = (self.write_from.0 - self.unstable_offset.0) as usize;
            ents = self.unstable[a..].to_vec();
            self.write_from = self.last_index() + 1;
        }
        if let Some(e) = ents.last() {
            mark = Some((e.index, e.term));
        }
        (snap, ents, mark)
    }

    /// Everything through `(index, term)` of a Ready is durable; if that entry is still
    /// in this log, the durable prefix grows and the unstable tail shrinks.
    pub(crate) fn on_persisted(&mut self, index: Index, term: Term) {
        if index > self.persisted && index < self.write_from && self.match_term(index, term) {
            self.persisted = index;
        }
        let stable_through = self.persisted.min(self.write_from - 1);
        if stable_through >= self.unstable_offset {
            let n =
                ((stable_through.0 - self.unstable_offset.0 + 1) as usize).min(self.unstable.len());
            self.unstable.drain(..n);
            self.unstable_offset = self.unstable_offset + n as u64;
        }
    }

    /// True if a candidate log `(last_index, last_term)` is at least as up-to-date as
    /// this one (§5.4.1).
    /// With our last term unreadable (the entry is damaged here), `current_term`
    /// bounds it from above: a candidate whose last term exceeds it, or equals it
    /// with a log at least as long, is up to date whatever our term is.
    pub(crate) fn is_up_to_date(
        &self,
        last_index: Index,
        last_term: Term,
        current_term: Term,
    ) -> bool {
        let Ok(my_term) = self.last_term() else {
            return last_term > current_term
                || (last_term == current_term && last_index >= self.last_index());
        };
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::MemStorage;
    use crate::raft::types::RecordKind;

    fn e(i: u64, t: u64) -> Entry {
        Entry {
            index: Index(i),
            term: Term(t),
            kind: RecordKind::Data,
            data: vec![0; 8].into(),
        }
    }

    fn log() -> RaftLog<MemStorage> {
        RaftLog::new(
            MemStorage::new(LogStart::default()),
            LogStart::default(),
            Index(0),
        )
    }

    #[test]
    fn acknowledgement_of_a_truncated_write_does_not_advance_persisted() {
        let mut l = log();
        l.append(&[e(1, 1), e(2, 1), e(3, 1)]);
        let (_, w1, mark1) = l.take_unwritten();
        assert_eq!(w1.len(), 3);
        // Before the first write is durable, entries 2.. are replaced by term 2.
        assert_eq!(l.append(&[e(2, 2)]), Some(Index(2)));
        let (_, w2, mark2) = l.take_unwritten();
        assert_eq!(w2, vec![e(2, 2)]);
        // The caller applies write 1, acks it: entry 3/1 is gone from this log.
        l.storage.append(&w1).unwrap();
        let (i, t) = mark1.unwrap();
        l.on_persisted(i, t);
        assert_eq!(l.persisted, Index(0), "3/1 is not in this log any more");
        l.storage.append(&w2).unwrap();
        let (i, t) = mark2.unwrap();
        l.on_persisted(i, t);
        assert_eq!(l.persisted, Index(2));
        assert_eq!(l.term(Index(2)), Ok(Term(2)));
        assert_eq!(l.last_index(), Index(2));
        assert_eq!(l.entries(Index(1), Index(3), u64::MAX).unwrap().len(), 2);
    }

    #[test]
    fn a_ready_and_a_follower_read_share_the_unstable_payload() {
        let mut l = log();
        let ent = e(1, 1);
        let at = ent.data.as_ptr();
        l.append(&[ent]);
        let (_, w, _) = l.take_unwritten();
        assert_eq!(w[0].data.as_ptr(), at, "handed out without a copy");
        let read = l.entries(Index(1), Index(2), u64::MAX).unwrap();
        assert_eq!(
            read[0].data.as_ptr(),
            at,
            "read for AppendEntries without a copy"
        );
    }

    #[test]
    fn reads_span_storage_and_unstable_tail_within_byte_limit() {
        let mut l = log();
        l.append(&[e(1, 1), e(2, 1)]);
        let (_, w, mark) = l.take_unwritten();
        l.storage.append(&w).unwrap();
        let (i, t) = mark.unwrap();
        l.on_persisted(i, t);
        l.append(&[e(3, 1), e(4, 2)]);
        assert_eq!(l.entries(Index(1), Index(5), u64::MAX).unwrap().len(), 4);
        assert_eq!(l.entries(Index(2), Index(5), 21 * 2).unwrap().len(), 2);
        assert_eq!(l.entries(Index(1), Index(5), 0).unwrap().len(), 1);
        assert_eq!(l.find_conflict_by_term(Index(4), Term(1)), Index(3));
        assert_eq!(l.find_conflict(&[e(3, 1), e(4, 3)]), Fit::Conflict(1));
        assert!(l.is_up_to_date(Index(4), Term(2), Term(2)));
        assert!(!l.is_up_to_date(Index(9), Term(1), Term(2)));
    }

    #[test]
    fn restore_discards_the_log_and_compaction_hides_the_prefix() {
        let mut l = log();
        l.append(&[e(1, 1), e(2, 1)]);
        l.restore(LogStart {
            index: Index(10),
            term: Term(3),
            membership: Default::default(),
        });
        assert_eq!((l.first_index(), l.last_index()), (Index(11), Index(10)));
        assert_eq!(l.committed, Index(10));
        assert_eq!(l.term(Index(10)), Ok(Term(3)));
        assert_eq!(l.term(Index(2)), Err(StorageError::Compacted));
        let (snap, ents, mark) = l.take_unwritten();
        assert!(snap.is_some() && ents.is_empty());
        assert_eq!(mark, Some((Index(10), Term(3))));
        l.on_persisted(Index(10), Term(3));
        assert_eq!(l.persisted, Index(10));
    }

    /// A stored log whose copies of `bad` entries are damaged.
    struct DamagedStore {
        mem: MemStorage,
        bad: Vec<u64>,
    }

    impl Storage for DamagedStore {
        fn initial_state(&self) -> Result<(crate::raft::types::HardState, LogStart), StorageError> {
            self.mem.initial_state()
        }
        fn first_index(&self) -> Index {
            self.mem.first_index()
        }
        fn last_index(&self) -> Index {
            self.mem.last_index()
        }
        fn term(&self, i: Index) -> Result<Term, StorageError> {
            if self.bad.contains(&i.0) {
                return Err(StorageError::Damaged(i));
            }
            self.mem.term(i)
        }
        fn entries(&self, lo: Index, hi: Index, max: u64) -> Result<Vec<Entry>, StorageError> {
            match self.bad.iter().find(|b| lo.0 <= **b && **b < hi.0) {
                Some(b) => Err(StorageError::Damaged(Index(*b))),
                None => self.mem.entries(lo, hi, max),
            }
        }
    }

    fn damaged_log(last: u64, bad: &[u64]) -> RaftLog<DamagedStore> {
        let mut mem = MemStorage::new(LogStart::default());
        let ents: Vec<Entry> = (1..=last).map(|i| e(i, 1)).collect();
        mem.append(&ents).unwrap();
        let store = DamagedStore {
            mem,
            bad: bad.to_vec(),
        };
        RaftLog::new(store, LogStart::default(), Index(0))
    }

    #[test]
    fn a_damaged_copy_is_replaced_only_where_nothing_intact_is_cut() {
        let l = damaged_log(6, &[3, 4]);
        // 5 matches an intact entry: by log matching 3 and 4 are the leader's too.
        let proven = [e(2, 1), e(3, 1), e(4, 1), e(5, 1)];
        assert_eq!(l.find_conflict(&proven), Fit::Match);
        // Nothing proves them and 5, 6 follow: only the prefix is acknowledged.
        assert_eq!(l.find_conflict(&[e(3, 1), e(4, 1)]), Fit::Unproven(0));
        // A real conflict at 5: 3 and 4 go with it (nothing intact between).
        assert_eq!(
            l.find_conflict(&[e(3, 2), e(4, 2), e(5, 2)]),
            Fit::Conflict(0)
        );
        // A damaged tail is replaced by entries that run past it.
        let tail = damaged_log(4, &[3, 4]);
        assert_eq!(
            tail.find_conflict(&[e(3, 1), e(4, 1), e(5, 1)]),
            Fit::Conflict(0)
        );
        // Probing hints pass over damaged entries.
        assert_eq!(l.find_conflict_by_term(Index(4), Term(1)), Index(2));
    }

    #[test]
    fn a_voter_with_a_damaged_last_entry_bounds_its_last_term_by_its_current_term() {
        let l = damaged_log(4, &[4]);
        assert!(l.is_up_to_date(Index(4), Term(2), Term(2)));
        assert!(l.is_up_to_date(Index(1), Term(3), Term(2)));
        assert!(!l.is_up_to_date(Index(3), Term(2), Term(2)), "shorter log");
        assert!(!l.is_up_to_date(Index(9), Term(1), Term(2)), "maybe older");
    }
}
