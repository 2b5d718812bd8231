//! The read-only view of the durable Raft log the core reads through, and an in-memory
//! implementation for tests and the simulator.
//!
//! The core never writes through this trait: writes (append, truncate suffix, install
//! a log start) are handed to the caller in [`super::Ready`], and the caller applies
//! them to its log (the segmented `crate::storage::Log` in production) before it
//! acknowledges them with [`super::RaftNode::advance`]. Contract for implementors:
//!
//! * The log holds entries `first_index() ..= last_index()`, contiguous. An empty log
//!   has `last_index() == first_index() - 1`.
//! * `term(first_index() - 1)` is the log-start term (persisted with the log-start
//!   record, see [`LogStart`]); `term(i)` below that is `Err(Compacted)`, above
//!   `last_index()` is `Err(Unavailable)`.
//! * After `advance(seq)`, everything in readies `..= seq` is reflected (the store may
//!   reflect later readies too; the core never reads an index it has not seen
//!   acknowledged).

use std::fmt;

use super::types::{Entry, HardState, Index, LogStart, RecordKind, Term};

/// Why a read from [`Storage`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The index is below the log start (compacted away).
    Compacted,
    /// The index is above the last entry.
    Unavailable,
    /// The entry exists but this node's copy cannot be read (failed checksum,
    /// damaged framing, a missing segment). Not fatal: the entry is still in the log
    /// as far as Raft is concerned (it was durable and may count toward commits); the
    /// node heals its copy from a peer (`replica::heal`) and meanwhile does not send
    /// it or decide anything on its term.
    Damaged(Index),
    /// The disk failed; the node cannot continue (fail-stop).
    Io(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Compacted => f.write_str("log index compacted"),
            StorageError::Unavailable => f.write_str("log index not yet written"),
            StorageError::Damaged(i) => write!(f, "log entry {i} is damaged on this node"),
            StorageError::Io(e) => write!(f, "raft log I/O error: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// Read access to the durable Raft log and its metadata.
pub trait Storage {
    /// The persisted hard state and log-start record (read once at start-up).
    fn initial_state(&self) -> Result<(HardState, LogStart), StorageError>;
    /// Index of the first entry (log-start index + 1).
    fn first_index(&self) -> Index;
    /// Index of the last entry (log-start index if the log is empty).
    fn last_index(&self) -> Index;
    /// Term of the entry at `index`; `first_index() - 1` gives the log-start term.
    fn term(&self, index: Index) -> Result<Term, StorageError>;
    /// Entries in `[lo, hi)`, stopping once their total [`Entry::size_bytes`] would
    /// exceed `max_bytes` — but always at least one entry when `lo < hi`.
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// Indexes of every `Config` entry in the log, ascending. The default scans the
    /// whole log in 1 MiB chunks at start-up; a disk log may keep an index instead.
    fn config_entry_indexes(&self) -> Result<Vec<Index>, StorageError> {
        let mut out = Vec::new();
        let mut lo = self.first_index();
        let end = self.last_index() + 1;
        while lo < end {
            let chunk = self.entries(lo, end, 1 << 20)?;
            let Some(last) = chunk.last() else {
                return Err(StorageError::Io("entries() returned nothing".into()));
            };
            lo = last.index + 1;
            out.extend(
                chunk
                    .iter()
                    .filter(|e| e.kind == RecordKind::Config)
                    .map(|e| e.index),
            );
        }
        Ok(out)
    }
}

/// An in-memory [`Storage`] with the write operations a caller performs for a Ready.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    start: LogStart,
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log bootstrapped with `start` (usually index 0, term 0 and the initial
    /// membership; a node joining later starts with an empty membership).
    pub fn new(start: LogStart) -> MemStorage {
        MemStorage {
            hard_state: HardState {
                term: start.term,
                vote: None,
                commit: start.index,
            },
            start,
            entries: Vec::new(),
        }
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The stored log-start record.
    pub fn log_start(&self) -> &LogStart {
        &self.start
    }

    /// All stored entries.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Discards entries with index >= `entries[0].index`, then appends `entries`.
    /// Refuses a gap or an overwrite of the log start.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.start.index || first.index > self.last_index() + 1 {
            return Err(StorageError::Io(format!(
                "append at {} outside log ({}..={})",
                first.index,
                self.start.index + 1,
                self.last_index() + 1
            )));
        }
        let keep = (first.index.0 - self.start.index.0 - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Drops the whole log and restarts it after `start` (InstallSnapshot).
    pub fn install(&mut self, start: LogStart) {
        self.entries.clear();
        self.start = start;
    }

    /// Drops entries `..= start.index` and records `start` (prefix compaction).
    pub fn compact(&mut self, start: LogStart) -> Result<(), StorageError> {
        if start.index <= self.start.index {
            return Ok(());
        }
        if start.index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        let drop = (start.index.0 - self.start.index.0) as usize;
        self.entries.drain(..drop);
        self.start = start;
        Ok(())
    }

    fn slot(&self, index: Index) -> Result<usize, StorageError> {
        if index <= self.start.index {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        Ok((index.0 - self.start.index.0 - 1) as usize)
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, LogStart), StorageError> {
        Ok((self.hard_state, self.start.clone()))
    }

    fn first_index(&self) -> Index {
        self.start.index + 1
    }

    fn last_index(&self) -> Index {
        self.start.index + self.entries.len() as u64
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        let slot = self.slot(index)?;
        Ok(self.entries[slot].term)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        let a = self.slot(lo)?;
        let b = self.slot(hi - 1)?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in &self.entries[a..=b] {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::Membership;

    fn e(i: u64, t: u64) -> Entry {
        Entry {
            index: Index(i),
            term: Term(t),
            kind: RecordKind::Data,
            data: vec![i as u8; 10].into(),
        }
    }

    #[test]
    fn mem_storage_appends_truncates_compacts_and_bounds_reads() {
        let mut s = MemStorage::new(LogStart {
            membership: Membership::with_voters([1]),
            ..LogStart::default()
        });
        assert_eq!((s.first_index(), s.last_index()), (Index(1), Index(0)));
        s.append(&[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
        s.append(&[e(3, 2), e(4, 2)]).unwrap();
        assert_eq!(s.term(Index(3)), Ok(Term(2)));
        assert_eq!(s.last_index(), Index(4));
        assert!(s.append(&[e(9, 2)]).is_err(), "gap refused");
        assert_eq!(
            s.entries(Index(1), Index(5), 0).unwrap().len(),
            1,
            "at least one"
        );
        assert_eq!(s.entries(Index(1), Index(5), 46).unwrap().len(), 2);
        s.compact(LogStart {
            index: Index(2),
            term: Term(1),
            membership: Membership::with_voters([1]),
        })
        .unwrap();
        assert_eq!(s.term(Index(2)), Ok(Term(1)));
        assert_eq!(s.term(Index(1)), Err(StorageError::Compacted));
        assert_eq!(s.term(Index(5)), Err(StorageError::Unavailable));
        assert_eq!(s.config_entry_indexes(), Ok(vec![]));
    }
}
