//! The segmented [`Log`] as the Raft [`Storage`] (DESIGN decision 1: a record's offset
//! IS its Raft index, so the cluster log starts at offset 1 and Raft index 0 is the
//! "before the first entry" position).
//!
//! # What lives where
//! * Entries: the segmented log, one record per entry (term and kind in the record
//!   header). Readers (Consume/Fetch) read the same records, up to the commit index.
//! * Hard state and log start: `raft.hardstate` / `raft.logstart` (see `meta`).
//! * Where the configuration entries are: `raft.configs`, a checkpoint covering the
//!   log up to an index; start-up reads it and scans only the log above it, so a
//!   node with a 10 GiB log serves without reading its log. It is lowered (written)
//!   before entries it covers are overwritten, and raised to the durable end with
//!   each hard-state write.
//!
//! # Invariants (checked at [`LogStorage::open`])
//! * Raft's log is `start.index + 1 ..= log.next_offset() - 1`. The segmented log may
//!   hold older records below `start.index + 1` (prefix truncation drops whole
//!   segments only, and a crash may fall between the log-start write and the
//!   truncation); they are invisible to Raft (`Compacted`).
//! * If the log does not reach `start.index + 1` contiguously (a crash during an
//!   InstallSnapshot reset, which is not atomic), it is reset to start there: the
//!   log-start file is written *before* the log is reset, so it is the truth.
//!
//! # Write order for one Ready (the caller, `raft_loop`, follows it)
//! `install` (log-start file, then `Log::reset`), `append` (truncate the suffix
//! first if the entries overwrite, then `append_batch`), hard state, then one
//! `Log::sync` for the whole batch of Readies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::meta::{self, MetaError};
use crate::raft::{
    Entry, HardState, Index, LogStart, Payload, Storage, StorageError as RaftStorageError, Term,
};
use crate::replica::ProducerFloor;
use crate::storage::journal::JournalRecord;
use crate::storage::{Log, NewRecord, Offset, StorageError};
use crate::types::RecordKind;

/// Failure of a write to the Raft storage: fail-stop for the node.
#[derive(Debug)]
pub enum WriteError {
    /// The segmented log failed.
    Log(StorageError),
    /// A metadata file could not be written or read.
    Meta(MetaError),
    /// The caller asked for something that would break the log's contiguity.
    Invariant(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Log(e) => write!(f, "raft log: {e}"),
            WriteError::Meta(e) => write!(f, "raft metadata: {e}"),
            WriteError::Invariant(e) => write!(f, "raft storage invariant: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> WriteError {
        WriteError::Log(e)
    }
}

impl From<MetaError> for WriteError {
    fn from(e: MetaError) -> WriteError {
        WriteError::Meta(e)
    }
}

/// The segmented log plus the metadata files, seen as Raft storage.
#[derive(Debug)]
pub struct LogStorage {
    log: Arc<Log>,
    meta_dir: PathBuf,
    hard_state: HardState,
    start: LogStart,
    /// Indexes of the `Config` entries above the log start, ascending.
    configs: Vec<Index>,
    /// The `raft.configs` checkpoint covers the log up to here (see `meta`).
    configs_through: Index,
    /// Where damaged entries met by Raft's reads are reported (the healer).
    damage: Option<Arc<super::heal::DamageReports>>,
    /// Terms of the entries appended since open, as runs `(first index, term)`,
    /// ascending: Raft asks the term of a recent entry every round (commit rule),
    /// and this answers it without reading the record.
    recent_terms: RecentTerms,
    /// The first index appended since the log was last made durable (journaled
    /// or fsynced): where the next journal record of this group starts.
    unjournaled_from: Option<Index>,
    /// Value bytes appended since then.
    unjournaled_bytes: u64,
    /// The node journal (checkpointed before a reset: see `node::journal`).
    journal: Option<Arc<super::journal::NodeJournal>>,
    /// The dedup producer floor last persisted (`meta::write_producer_floor`).
    producer_floor: ProducerFloor,
}

/// Most term runs remembered (a run per leader term; older ones are read from disk).
const MAX_TERM_RUNS: usize = 256;

#[derive(Debug, Default)]
struct RecentTerms {
    runs: std::collections::VecDeque<(Index, Term)>,
}

impl RecentTerms {
    /// Entries from `from` on are replaced by `entries` (contiguous from `from`).
    fn appended(&mut self, from: Index, entries: &[Entry]) {
        while self.runs.back().is_some_and(|(i, _)| *i >= from) {
            self.runs.pop_back();
        }
        // Runs start at the first entry appended since open: lookups below it read
        // the record.
        for e in entries {
            if self.runs.back().map(|(_, t)| *t) != Some(e.term) {
                self.runs.push_back((e.index, e.term));
            }
        }
        while self.runs.len() > MAX_TERM_RUNS {
            self.runs.pop_front();
        }
    }

    /// The term of `index` if it is at or after the first remembered run (the
    /// caller checked `index <= last_index`).
    fn term(&self, index: Index) -> Option<Term> {
        let k = self.runs.partition_point(|(i, _)| *i <= index);
        (k > 0).then(|| self.runs[k - 1].1)
    }

    fn clear(&mut self) {
        self.runs.clear();
    }
}

impl LogStorage {
    /// Opens the Raft storage over `log` with the metadata files in `meta_dir`
    /// (missing files mean a fresh node: hard state zero, log start `default_start`).
    /// Reconciles the log with the log-start record (see module docs).
    pub fn open(
        meta_dir: &Path,
        log: Arc<Log>,
        default_start: LogStart,
    ) -> Result<LogStorage, WriteError> {
        let start = match meta::read_log_start(meta_dir)? {
            Some(s) => s,
            None => {
                meta::write_log_start(meta_dir, &default_start)?;
                default_start
            }
        };
        let hard_state = meta::read_hard_state(meta_dir)?.unwrap_or(HardState {
            term: start.term,
            vote: None,
            commit: start.index,
        });
        let want_first = start.index.0 + 1;
        let (first, next) = (log.first_offset().0, log.next_offset().0);
        if next < want_first || first > want_first {
            log::warn!(
                "raft log holds [{first}, {next}) but the log start says it begins at \
                 {want_first}: resetting the log to start there"
            );
            log.reset(Offset(want_first))?;
        }
        let mut storage = LogStorage {
            log,
            meta_dir: meta_dir.to_path_buf(),
            hard_state,
            start,
            configs: Vec::new(),
            configs_through: Index(0),
            damage: None,
            recent_terms: RecentTerms::default(),
            unjournaled_from: None,
            unjournaled_bytes: 0,
            journal: None,
            producer_floor: meta::read_producer_floor(meta_dir)?,
        };
        storage.load_configs()?;
        Ok(storage)
    }

    /// Finds the configuration entries from the `raft.configs` checkpoint plus a
    /// scan of the log's tail above it; without a usable checkpoint, scans the log.
    fn load_configs(&mut self) -> Result<(), WriteError> {
        let last = crate::raft::Storage::last_index(self);
        let checkpoint = match meta::read_config_index(&self.meta_dir) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{e}; scanning the log for configuration entries instead");
                None
            }
        };
        let usable = checkpoint.filter(|c| c.through <= last && self.listed_are_configs(c));
        if usable.is_none() && last > self.start.index {
            log::info!("no usable configuration checkpoint: scanning the log once");
        }
        let (mut configs, from) = match usable {
            Some(c) if c.through >= self.start.index => (c.indexes, c.through + 1),
            _ => (Vec::new(), self.start.index + 1),
        };
        configs.retain(|i| *i > self.start.index);
        configs.extend(self.scan_configs(from, last)?);
        self.configs = configs;
        let durable = Index(self.log.durable_offset().0.saturating_sub(1));
        let through = durable.min(last).max(self.start.index);
        if let Err(e) = self.write_configs_checkpoint(through) {
            // Only a speed-up for the next start (a full disk, say): go on without.
            log::warn!("configuration checkpoint not written: {e}");
        }
        Ok(())
    }

    /// True if every index the checkpoint lists above the log start holds a
    /// `Config` entry (anything else means the checkpoint is not to be trusted).
    fn listed_are_configs(&self, c: &meta::ConfigIndex) -> bool {
        c.indexes
            .iter()
            .filter(|i| **i > self.start.index)
            .all(|i| {
                self.log
                    .read(Offset(i.0))
                    .is_ok_and(|r| r.kind == crate::types::RecordKind::Config)
            })
    }

    /// Indexes of `Config` entries in `[lo, hi]`, reading record headers in 4 MiB
    /// rounds (bounded: each round moves past at least one record).
    fn scan_configs(&self, lo: Index, hi: Index) -> Result<Vec<Index>, WriteError> {
        let mut out = Vec::new();
        let mut at = lo;
        while at <= hi {
            let mut next = at;
            self.log.read_range_with(Offset(at.0), 4 << 20, |r| {
                if r.offset.0 > hi.0 {
                    return false;
                }
                if r.kind == crate::types::RecordKind::Config {
                    out.push(Index(r.offset.0));
                }
                next = Index(r.offset.0 + 1);
                true
            })?;
            if next == at {
                break;
            }
            at = next;
        }
        Ok(out)
    }

    /// At shutdown: fsyncs the log and moves the `raft.configs` checkpoint to its
    /// end, so the next start scans nothing.
    pub fn checkpoint_for_restart(&mut self) -> Result<(), WriteError> {
        self.log.sync()?;
        self.checkpoint_configs()
    }

    /// Moves the `raft.configs` checkpoint up to the durable end of the log.
    fn checkpoint_configs(&mut self) -> Result<(), WriteError> {
        let durable = Index(self.log.durable_offset().0.saturating_sub(1));
        let through = durable.min(crate::raft::Storage::last_index(self));
        if through <= self.configs_through {
            return Ok(());
        }
        self.write_configs_checkpoint(through)
    }

    fn write_configs_checkpoint(&mut self, through: Index) -> Result<(), WriteError> {
        let indexes: Vec<Index> = self
            .configs
            .iter()
            .copied()
            .filter(|i| *i <= through)
            .collect();
        if indexes.len() > meta::MAX_CONFIG_INDEXES {
            // Only a log with thousands of membership changes and no retention gets
            // here; start-up then scans the tail above the older checkpoint.
            log::warn!("{} configuration entries: not checkpointed", indexes.len());
            return Ok(());
        }
        meta::write_config_index(&self.meta_dir, &meta::ConfigIndex { through, indexes })?;
        self.configs_through = through;
        Ok(())
    }

    /// The shared segmented log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The persisted log-start record.
    pub fn log_start(&self) -> &LogStart {
        &self.start
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Discards stored entries with index >= `entries[0].index`, then appends
    /// `entries` (not yet durable: call [`LogStorage::sync`]).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), WriteError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let next = self.log.next_offset().0;
        if first.index.0 <= self.start.index.0 || first.index.0 > next {
            return Err(WriteError::Invariant(format!(
                "append at {} outside the log [{}, {next}]",
                first.index,
                self.start.index.0 + 1
            )));
        }
        if first.index <= self.configs_through {
            // The checkpoint must never claim entries that are about to be replaced.
            self.write_configs_checkpoint(first.index - 1)?;
        }
        self.configs.retain(|i| *i < first.index);
        if first.index.0 < next {
            self.log.truncate_suffix(Some(Offset(first.index.0 - 1)))?;
        }
        let records: Vec<NewRecord<'_>> = entries
            .iter()
            .map(|e| NewRecord {
                term: e.term,
                kind: e.kind,
                value: &e.data,
            })
            .collect();
        // Forget the runs of entries about to be replaced before writing (a failed
        // write leaves the log shorter, never with terms we would misreport).
        self.recent_terms.appended(first.index, &[]);
        self.unjournaled_bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
        self.unjournaled_from = Some(
            self.unjournaled_from
                .map_or(first.index, |f| f.min(first.index)),
        );
        let at = self.log.append_batch(&records)?;
        self.recent_terms.appended(first.index, entries);
        self.configs.extend(
            entries
                .iter()
                .filter(|e| e.kind == crate::types::RecordKind::Config)
                .map(|e| e.index),
        );
        if at.0 != first.index.0 {
            return Err(WriteError::Invariant(format!(
                "entry {} was written at offset {at}",
                first.index
            )));
        }
        Ok(())
    }

    /// Resets go through `journal` (a checkpoint first).
    pub(crate) fn use_journal(&mut self, journal: Arc<super::journal::NodeJournal>) {
        self.journal = Some(journal);
    }

    /// The first offset appended since the last call and the value bytes
    /// appended since (None if nothing was): what this round's journal record
    /// holds, up to the log's end.
    pub fn take_unjournaled(&mut self) -> Option<(Offset, u64)> {
        let bytes = std::mem::take(&mut self.unjournaled_bytes);
        let from = self.unjournaled_from.take()?;
        let first = from.max(self.start.index + 1);
        (first.0 < self.log.next_offset().0).then_some((Offset(first.0), bytes))
    }

    /// Makes the log hold what `record` says it held after that round: its entries
    /// from `record.first` (those already here, same index and term, are the same
    /// entries and stay), and nothing after `record.end`. Entries at or below the
    /// log start are skipped (compacted since). Applying a group's records in
    /// order rebuilds its log as of the last one (see `node::journal`).
    pub fn replay(&mut self, record: &JournalRecord) -> Result<(), WriteError> {
        let skip = (self.start.index.0 + 1).saturating_sub(record.first.0) as usize;
        let differs = self.first_difference(record, skip);
        if let Some(k) = differs {
            let entries: Vec<Entry> = record.entries[k..]
                .iter()
                .enumerate()
                .map(|(j, e)| Entry {
                    index: Index(record.first.0 + (k + j) as u64),
                    term: e.term,
                    kind: e.kind,
                    data: e.value.clone().into(),
                })
                .collect();
            self.append(&entries)?;
        }
        let end = Index(record.end.0.max(self.start.index.0 + 1));
        if self.log.next_offset().0 > end.0 {
            self.truncate_from(end)?;
        }
        Ok(())
    }

    /// The position in `record.entries` (from `skip`) of the first entry the log
    /// does not hold with the same term, reading the log in ranges; None if it
    /// holds them all. A damaged entry counts as different.
    fn first_difference(&self, record: &JournalRecord, skip: usize) -> Option<usize> {
        let next = self.log.next_offset().0;
        let mut k = skip;
        let mut mismatch = false;
        // Bounded: every read moves `k` forward or ends the loop.
        while k < record.entries.len() && !mismatch {
            if record.first.0 + k as u64 >= next {
                return Some(k);
            }
            let before = k;
            let read = self
                .log
                .read_range_with(Offset(record.first.0 + k as u64), 4 << 20, |r| {
                    let expected = record.first.0 + k as u64;
                    match record.entries.get(k) {
                        Some(e) if r.offset.0 == expected && r.term == e.term => {
                            k += 1;
                            k < record.entries.len()
                        }
                        Some(_) => {
                            mismatch = true;
                            false
                        }
                        None => false,
                    }
                });
            if read.is_err() || k == before {
                return Some(k);
            }
        }
        mismatch.then_some(k)
    }

    /// Drops the entries from `index` on (above the log start).
    fn truncate_from(&mut self, index: Index) -> Result<(), WriteError> {
        if index <= self.configs_through {
            self.write_configs_checkpoint(index - 1)?;
        }
        self.configs.retain(|i| *i < index);
        self.recent_terms.appended(index, &[]);
        self.log.truncate_suffix(Some(Offset(index.0 - 1)))?;
        Ok(())
    }

    /// Damaged entries Raft's reads meet from now on are reported to `sink`.
    pub fn report_damage_to(&mut self, sink: Arc<super::heal::DamageReports>) {
        self.damage = Some(sink);
    }

    /// A read error as Raft sees it: a damaged record is [`RaftStorageError::Damaged`]
    /// (not fatal; reported to the healer), anything else fail-stop I/O.
    fn read_error(&self, e: StorageError) -> RaftStorageError {
        match e {
            StorageError::CorruptRecord { offset, .. } => {
                if let Some(sink) = &self.damage {
                    sink.report(offset);
                }
                RaftStorageError::Damaged(Index(offset.0))
            }
            e => RaftStorageError::Io(e.to_string()),
        }
    }

    /// Persists the hard state (atomic file write, fsynced).
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), WriteError> {
        meta::write_hard_state(&self.meta_dir, &hs)?;
        self.hard_state = hs;
        Ok(())
    }

    /// InstallSnapshot: records the new log start, then drops the whole log and
    /// restarts it at `start.index + 1`.
    pub fn install(&mut self, start: LogStart) -> Result<(), WriteError> {
        if let Some(journal) = &self.journal {
            // No journal record from before the reset may be replayed after it.
            journal.checkpoint()?;
        }
        self.unjournaled_from = None;
        meta::write_log_start(&self.meta_dir, &start)?;
        self.recent_terms.clear();
        self.log.reset(Offset(start.index.0 + 1))?;
        self.configs.clear();
        let through = start.index;
        self.start = start;
        self.write_configs_checkpoint(through)
    }

    /// Prefix compaction: records `start` (from `RaftNode::compact`), then drops
    /// the whole segments below `start.index + 1`. Returns the bytes freed.
    pub fn compact(&mut self, start: LogStart) -> Result<u64, WriteError> {
        if start.index <= self.start.index {
            return Ok(0);
        }
        meta::write_log_start(&self.meta_dir, &start)?;
        self.configs.retain(|i| *i > start.index);
        self.start = start;
        Ok(self.log.truncate_prefix(Offset(self.start.index.0 + 1))?)
    }

    /// fsyncs the log; returns the durable end.
    pub fn sync(&self) -> Result<Offset, WriteError> {
        Ok(self.log.sync()?)
    }
}

impl Storage for LogStorage {
    fn config_entry_indexes(&self) -> Result<Vec<Index>, RaftStorageError> {
        Ok(self.configs.clone())
    }

    fn initial_state(&self) -> Result<(HardState, LogStart), RaftStorageError> {
        Ok((self.hard_state, self.start.clone()))
    }

    fn first_index(&self) -> Index {
        self.start.index + 1
    }

    fn last_index(&self) -> Index {
        Index(self.log.next_offset().0.saturating_sub(1)).max(self.start.index)
    }

    fn term(&self, index: Index) -> Result<Term, RaftStorageError> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        if index < self.start.index {
            return Err(RaftStorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(RaftStorageError::Unavailable);
        }
        if let Some(term) = self.recent_terms.term(index) {
            return Ok(term);
        }
        self.log
            .read(Offset(index.0))
            .map(|r| r.term)
            .map_err(|e| self.read_error(e))
    }

    fn entries(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo <= self.start.index {
            return Err(RaftStorageError::Compacted);
        }
        if hi - 1 > self.last_index() {
            return Err(RaftStorageError::Unavailable);
        }
        // One buffer for every payload read (entries share it: one allocation per
        // call, not one per entry; a catch-up reads 1 MiB at a time).
        let mut data: Vec<u8> = Vec::new();
        let mut heads: Vec<(Index, Term, RecordKind, usize)> = Vec::new();
        let mut bytes = 0u64;
        let mut at = lo;
        let mut full = false;
        // Bounded: every round reads at least one record and moves `at` past it.
        while at < hi && !full {
            let budget = max_bytes.saturating_sub(bytes).max(1);
            let mut misplaced = None;
            let mut read_any = false;
            self.log
                .read_range_with(Offset(at.0), budget, |r| {
                    read_any = true;
                    if r.offset.0 != at.0 {
                        misplaced = Some(r.offset);
                        return false;
                    }
                    let size = r.value.len() as u64 + 13;
                    if at >= hi || (!heads.is_empty() && bytes + size > max_bytes) {
                        full = true;
                        return false;
                    }
                    bytes += size;
                    data.extend_from_slice(r.value);
                    heads.push((at, r.term, r.kind, data.len()));
                    at = at + 1;
                    true
                })
                .map_err(|e| self.read_error(e))?;
            if let Some(offset) = misplaced {
                return Err(RaftStorageError::Io(format!(
                    "expected entry {at}, read offset {offset}"
                )));
            }
            if !read_any {
                return Err(RaftStorageError::Unavailable);
            }
        }
        let data = Arc::new(data);
        let mut start = 0;
        let mut out = Vec::with_capacity(heads.len());
        for (index, term, kind, end) in heads {
            let payload = Payload::shared(&data, start..end)
                .ok_or_else(|| RaftStorageError::Io("payload outside its read".to_string()))?;
            out.push(Entry {
                index,
                term,
                kind,
                data: payload,
            });
            start = end;
        }
        Ok(out)
    }
}

impl crate::replica::ReplicaStorage for LogStorage {
    type Error = WriteError;

    fn append_entries(&mut self, entries: &[Entry]) -> Result<(), WriteError> {
        self.append(entries)
    }

    fn install_start(&mut self, start: LogStart) -> Result<(), WriteError> {
        self.install(start)
    }

    fn compact_start(&mut self, start: LogStart) -> Result<u64, WriteError> {
        self.compact(start)
    }

    fn persist_hard_state(&mut self, hs: HardState) -> Result<(), WriteError> {
        self.set_hard_state(hs)?;
        // Piggy-backed on the (lazy, ≤ 1/s) hard-state write: start-up then scans
        // at most what was written since.
        self.checkpoint_configs()
    }

    fn persisted_hard_state(&self) -> HardState {
        self.hard_state
    }

    fn persist_producer_floor(&mut self, floor: &ProducerFloor) -> Result<(), WriteError> {
        let next = floor.over(&self.producer_floor);
        if next != self.producer_floor {
            meta::write_producer_floor(&self.meta_dir, &next)?;
            self.producer_floor = next;
        }
        Ok(())
    }

    fn producer_floor(&self) -> ProducerFloor {
        self.producer_floor.clone()
    }

    fn is_no_space(e: &WriteError) -> bool {
        match e {
            WriteError::Log(StorageError::NoSpace { .. }) => true,
            WriteError::Meta(MetaError::Io { source, .. }) => {
                source.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Membership, RecordKind};
    use crate::storage::LogConfig;

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("commitlog-raftstore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn cfg() -> LogConfig {
        LogConfig {
            max_store_bytes: 4096,
            initial_offset: Offset(1),
            ..LogConfig::default()
        }
    }

    fn e(i: u64, t: u64, kind: RecordKind) -> Entry {
        Entry {
            index: Index(i),
            term: Term(t),
            kind,
            data: vec![i as u8; 100].into(),
        }
    }

    fn open(d: &Path) -> LogStorage {
        let log = Arc::new(Log::open_and_repair(&d.join("log"), cfg()).unwrap().0);
        LogStorage::open(
            d,
            log,
            LogStart {
                membership: Membership::with_voters([1]),
                ..LogStart::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn append_truncate_term_entries_and_restart() {
        let d = dir("basic");
        let mut s = open(&d);
        assert_eq!((s.first_index(), s.last_index()), (Index(1), Index(0)));
        assert_eq!(s.term(Index(0)), Ok(Term(0)));
        s.append(&[
            e(1, 1, RecordKind::NoOp),
            e(2, 1, RecordKind::Data),
            e(3, 1, RecordKind::Config),
        ])
        .unwrap();
        // Overwrite a conflicting suffix.
        s.append(&[e(3, 2, RecordKind::Data), e(4, 2, RecordKind::Data)])
            .unwrap();
        assert!(s.append(&[e(9, 2, RecordKind::Data)]).is_err(), "gap");
        assert!(s.append(&[e(0, 2, RecordKind::Data)]).is_err(), "log start");
        assert_eq!(s.term(Index(3)), Ok(Term(2)));
        assert_eq!(s.term(Index(5)), Err(RaftStorageError::Unavailable));
        assert_eq!(s.last_index(), Index(4));
        let all = s.entries(Index(1), Index(5), u64::MAX).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].kind, RecordKind::NoOp);
        assert_eq!(all[2], e(3, 2, RecordKind::Data));
        // Byte limit: 113 bytes each, at least one.
        assert_eq!(s.entries(Index(1), Index(5), 0).unwrap().len(), 1);
        assert_eq!(s.entries(Index(1), Index(5), 226).unwrap().len(), 2);
        assert_eq!(s.entries(Index(2), Index(4), u64::MAX).unwrap().len(), 2);
        assert_eq!(
            s.entries(Index(2), Index(6), 1),
            Err(RaftStorageError::Unavailable)
        );
        assert_eq!(s.config_entry_indexes(), Ok(vec![]));
        let hs = HardState {
            term: Term(2),
            vote: Some(crate::raft::NodeId(1)),
            commit: Index(4),
        };
        s.set_hard_state(hs).unwrap();
        s.sync().unwrap();
        drop(s);
        let s = open(&d);
        assert_eq!(s.initial_state().unwrap().0, hs);
        assert_eq!(s.last_index(), Index(4));
        assert_eq!(s.term(Index(4)), Ok(Term(2)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The remembered terms of recent entries answer exactly what the records say,
    /// through overwrites and after a reopen (where only the records answer).
    #[test]
    fn recent_terms_agree_with_the_records() {
        let d = dir("terms");
        let mut s = open(&d);
        let terms = [1u64, 1, 2, 2, 2, 3, 3, 5];
        let ents: Vec<Entry> = (1..=8u64)
            .map(|i| e(i, terms[i as usize - 1], RecordKind::Data))
            .collect();
        s.append(&ents).unwrap();
        // A new leader overwrites 5.. with term 6, then 7.. with term 6 again.
        s.append(&[e(5, 6, RecordKind::Data), e(6, 6, RecordKind::Data)])
            .unwrap();
        s.append(&[e(7, 6, RecordKind::Data)]).unwrap();
        let want = [1u64, 1, 2, 2, 6, 6, 6];
        let remembered: Vec<Result<Term, RaftStorageError>> =
            (1..=8u64).map(|i| s.term(Index(i))).collect();
        s.sync().unwrap();
        drop(s);
        let s = open(&d);
        for i in 1..=8u64 {
            let on_disk = s.term(Index(i));
            assert_eq!(remembered[i as usize - 1], on_disk, "index {i}");
            match want.get(i as usize - 1) {
                Some(t) => assert_eq!(on_disk, Ok(Term(*t)), "index {i}"),
                None => assert_eq!(on_disk, Err(RaftStorageError::Unavailable)),
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn compaction_and_install_move_the_log_start_durably() {
        let d = dir("compact");
        let mut s = open(&d);
        // ~40 records of 128 bytes per 4 KiB segment: 200 entries span 5+ segments.
        let ents: Vec<Entry> = (1..=200).map(|i| e(i, 1, RecordKind::Data)).collect();
        s.append(&ents).unwrap();
        s.sync().unwrap();
        let start = LogStart {
            index: Index(150),
            term: Term(1),
            membership: Membership::with_voters([1, 2]),
        };
        let freed = s.compact(start.clone()).unwrap();
        assert!(freed > 0, "whole segments below 151 are dropped");
        assert_eq!(s.first_index(), Index(151));
        assert_eq!(s.term(Index(150)), Ok(Term(1)));
        assert_eq!(s.term(Index(149)), Err(RaftStorageError::Compacted));
        assert_eq!(
            s.entries(Index(100), Index(160), 1),
            Err(RaftStorageError::Compacted)
        );
        assert!(s.log().first_offset().0 <= 151);
        drop(s);
        let mut s = open(&d);
        assert_eq!(
            s.initial_state().unwrap().1,
            start,
            "log start survives restart"
        );
        assert_eq!(s.last_index(), Index(200));
        // InstallSnapshot past the end: the log restarts after index 500.
        let snap = LogStart {
            index: Index(500),
            term: Term(3),
            membership: Membership::with_voters([1, 2, 3]),
        };
        s.install(snap.clone()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (Index(501), Index(500)));
        assert_eq!(s.term(Index(500)), Ok(Term(3)));
        s.append(&[e(501, 3, RecordKind::Data)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let s = open(&d);
        assert_eq!(s.last_index(), Index(501));
        assert_eq!(s.term(Index(501)), Ok(Term(3)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_crash_between_log_start_write_and_reset_is_repaired_at_open() {
        let d = dir("crashreset");
        let mut s = open(&d);
        s.append(&[e(1, 1, RecordKind::Data), e(2, 1, RecordKind::Data)])
            .unwrap();
        s.sync().unwrap();
        drop(s);
        // The log-start file says 1000 but the log was never reset.
        meta::write_log_start(
            &d,
            &LogStart {
                index: Index(1000),
                term: Term(5),
                membership: Membership::with_voters([1]),
            },
        )
        .unwrap();
        let s = open(&d);
        assert_eq!(
            (s.first_index(), s.last_index()),
            (Index(1001), Index(1000))
        );
        assert_eq!(s.log().next_offset(), Offset(1001));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A restart finds the configuration entries from the checkpoint plus the tail,
    /// never claims overwritten ones, and falls back to a scan when the checkpoint
    /// is damaged.
    #[test]
    fn configuration_entries_survive_restarts_without_a_full_scan() {
        use crate::replica::ReplicaStorage;
        let d = dir("configs");
        let mut s = open(&d);
        let kinds = |i: u64| {
            if i.is_multiple_of(50) {
                RecordKind::Config
            } else {
                RecordKind::Data
            }
        };
        let ents: Vec<Entry> = (1..=200).map(|i| e(i, 1, kinds(i))).collect();
        s.append(&ents).unwrap();
        s.sync().unwrap();
        s.persist_hard_state(HardState::default()).unwrap();
        let want: Vec<Index> = [50, 100, 150, 200].map(Index).to_vec();
        let ck = meta::read_config_index(&d).unwrap().unwrap();
        assert_eq!((ck.through, ck.indexes.clone()), (Index(200), want.clone()));
        // Entries after the checkpoint are found by the tail scan.
        s.append(&[e(201, 1, RecordKind::Config)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut s = open(&d);
        let mut all = want.clone();
        all.push(Index(201));
        assert_eq!(s.config_entry_indexes(), Ok(all));
        // Overwriting from 150 lowers the checkpoint before anything is replaced.
        s.append(&[e(150, 2, RecordKind::Data)]).unwrap();
        let ck = meta::read_config_index(&d).unwrap().unwrap();
        assert!(ck.through < Index(150), "{ck:?}");
        assert_eq!(s.config_entry_indexes(), Ok(vec![Index(50), Index(100)]));
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            open(&d).config_entry_indexes(),
            Ok(vec![Index(50), Index(100)])
        );
        // A damaged checkpoint is not trusted: the log is scanned instead.
        std::fs::write(d.join(meta::CONFIG_INDEX_FILE), b"garbage").unwrap();
        assert_eq!(
            open(&d).config_entry_indexes(),
            Ok(vec![Index(50), Index(100)])
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
