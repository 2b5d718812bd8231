//! One fsync per node per group-commit round: when several groups appended in a
//! round (or a group journaled since the last checkpoint appended), their appends
//! are written to the node journal ([`storage::journal`](crate::storage::journal))
//! and made durable by one `fdatasync`; their segment files are fsynced later, at
//! a checkpoint. A round where one group alone appended fsyncs that group's log
//! as before (no double write on the one-partition path).
//!
//! # Rules that keep replay exact
//! * Once a group's appends went to the journal, all its appends do until the next
//!   checkpoint (a later round synced another way could be rolled back by replaying
//!   an older record over it).
//! * A checkpoint starts a new journal file (holding the records of groups not
//!   replayed yet), fsyncs the logs of every journaled group on its own thread,
//!   then removes the older files. Groups journaled before it stay journaled
//!   until it completes (their records are in the files it removes).
//! * Before a log is reset (InstallSnapshot), a checkpoint: no record from before
//!   the reset may be replayed after it.
//! * At start, each group replays its records when it opens: folded in order into
//!   what its log held after the last one ([`fold`]: an older record may stand on
//!   entries a later one replaced), applied, then its log fsynced; it counts as
//!   journaled until a checkpoint removes those records.
//!   Records of groups that never open stay in the journal (a lagging catalogue
//!   opens them later) until their directories are removed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::thread::JoinHandle;

use crate::storage::journal::{self, Journal, JournalEntry, JournalRecord};
use crate::storage::{Log, StorageError};
use crate::sync::lock;
use crate::types::GroupId;

/// Where the journal lives in the data dir.
pub(crate) const JOURNAL_DIR: &str = "journal";
/// A checkpoint once the journal holds this much.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// A checkpoint at least this often while groups are journaled (bounds what a
/// restart replays and the segment bytes written but not yet fsynced).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// A group appending alone releases the journal once every other journaled
/// group has written nothing for this long ([`NodeJournal::release`]).
const RELEASE_IDLE: Duration = Duration::from_millis(50);
/// A release fsyncs at most this many logs on the raft thread; more go to a
/// background checkpoint.
const MAX_INLINE_RELEASE_LOGS: usize = 4;

/// The node's journal and what it covers.
pub(crate) struct NodeJournal {
    inner: Mutex<Inner>,
    /// A checkpoint once the journal holds this much ([`CHECKPOINT_BYTES`]).
    checkpoint_bytes: u64,
    /// See [`RELEASE_IDLE`].
    release_idle: Duration,
}

struct Inner {
    journal: Journal,
    /// Groups with records in a journal file not yet removed, and their logs.
    journaled: BTreeMap<GroupId, Arc<Log>>,
    /// Groups journaled since the running checkpoint rotated the journal: the
    /// only ones still journaled once it completes.
    since_rotation: BTreeMap<GroupId, Arc<Log>>,
    /// Records of groups that have not opened since start.
    pending: BTreeMap<GroupId, Vec<JournalRecord>>,
    /// When a group was first journaled after the last rotation.
    since: Option<Instant>,
    /// When each journaled group last wrote a record.
    last_write: BTreeMap<GroupId, Instant>,
    /// The checkpoint fsyncing logs in the background, if one runs.
    running: Option<JoinHandle<Outcome>>,
}

/// What a background checkpoint did.
struct Outcome {
    /// Logs whose fsync failed (the journal files were then kept).
    failed: Vec<(GroupId, StorageError)>,
    /// Removing the covered journal files, if attempted.
    removed: Option<Result<(), StorageError>>,
}

impl std::fmt::Debug for NodeJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeJournal")
    }
}

impl NodeJournal {
    /// Opens the journal of the node whose data dir is `data_dir`; its records wait
    /// for their groups to open.
    pub(crate) fn open(data_dir: &Path) -> Result<NodeJournal, String> {
        let dir = data_dir.join(JOURNAL_DIR);
        let (journal, records) = Journal::open(&dir).map_err(|e| {
            format!(
                "cannot open the node journal in {}: {e}. Its records are the only durable \
                 copy of recent appends; if it is damaged, move the data dir aside and let \
                 the node catch up from its peers",
                dir.display()
            )
        })?;
        let mut pending: BTreeMap<GroupId, Vec<JournalRecord>> = BTreeMap::new();
        for r in records {
            pending.entry(GroupId(r.log_id)).or_default().push(r);
        }
        if !pending.is_empty() {
            log::info!(
                "node journal: records of {} group(s) to replay as they open",
                pending.len()
            );
        }
        Ok(NodeJournal {
            checkpoint_bytes: CHECKPOINT_BYTES,
            inner: Mutex::new(Inner {
                journal,
                journaled: BTreeMap::new(),
                since_rotation: BTreeMap::new(),
                pending,
                since: None,
                last_write: BTreeMap::new(),
                running: None,
            }),
            release_idle: RELEASE_IDLE,
        })
    }

    /// The records `id` has to replay (oldest first); call [`NodeJournal::replayed`]
    /// once they are applied and its log fsynced.
    pub(crate) fn pending(&self, id: GroupId) -> Vec<JournalRecord> {
        lock(&self.inner)
            .pending
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// `id` replayed its records and fsynced its log. Its records stay in the
    /// journal files until a checkpoint removes them: until then it is journaled
    /// like a group that wrote them (a later round fsynced another way could be
    /// rolled back by replaying them again after another crash).
    pub(crate) fn replayed(&self, id: GroupId, log: &Arc<Log>) {
        let mut inner = lock(&self.inner);
        if inner.pending.remove(&id).is_some() {
            inner.journaled.insert(id, Arc::clone(log));
            inner.since_rotation.insert(id, Arc::clone(log));
            inner.since.get_or_insert_with(Instant::now);
        }
    }

    /// `id`'s data is gone (deleted): nothing of it is kept or synced any more.
    pub(crate) fn forget(&self, id: GroupId) {
        let mut inner = lock(&self.inner);
        inner.pending.remove(&id);
        inner.journaled.remove(&id);
        inner.since_rotation.remove(&id);
        inner.last_write.remove(&id);
    }

    /// Groups whose records wait for them to open.
    pub(crate) fn pending_groups(&self) -> Vec<GroupId> {
        lock(&self.inner).pending.keys().copied().collect()
    }

    /// True if `id`'s appends must go to the journal (it has records there).
    #[cfg(test)]
    pub(crate) fn covers(&self, id: GroupId) -> bool {
        self.covers_any(std::iter::once(id))
    }

    /// True if any of `ids` is journaled (one lock for a round's groups).
    pub(crate) fn covers_any(&self, ids: impl Iterator<Item = GroupId>) -> bool {
        let inner = lock(&self.inner);
        ids.into_iter().any(|id| inner.journaled.contains_key(&id))
    }

    /// Writes one record per appended log and fsyncs the journal once. `appended`
    /// gives each group's log and the first offset it changed in the round.
    pub(crate) fn commit_round(
        &self,
        appended: &[(GroupId, Arc<Log>, crate::storage::Offset)],
    ) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        for (id, log, from) in appended {
            encode(&mut inner.journal, *id, log, *from)?;
        }
        let committed = inner.journal.commit();
        if committed.is_err() {
            inner.journal.discard_round();
        }
        committed?;
        let now = Instant::now();
        for (id, log, _) in appended {
            inner.journaled.insert(*id, Arc::clone(log));
            inner.since_rotation.insert(*id, Arc::clone(log));
            inner.last_write.insert(*id, now);
        }
        inner.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Collects a finished background checkpoint, and starts one if the journal
    /// is big or old enough: it rotates the journal (the raft thread goes on
    /// writing the new file) and fsyncs the covered logs on its own thread, so no
    /// round waits for the segments' fsyncs. An error is a log's fsync failing.
    pub(crate) fn poll_checkpoint(&self) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        if inner.running.as_ref().is_some_and(|t| t.is_finished()) {
            inner.collect()?;
        }
        let due = inner.journal.len_bytes() >= self.checkpoint_bytes
            || inner
                .since
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL);
        if inner.running.is_some() || !due {
            return Ok(());
        }
        inner.start_checkpoint()
    }

    /// After a round's drivers heard `synced`: `lone` is the group that appended
    /// alone if the round was journaled. It releases itself if it can, otherwise
    /// a checkpoint starts when due.
    pub(crate) fn after_round(&self, lone: Option<GroupId>) -> Result<(), StorageError> {
        if let Some(id) = lone {
            if self.release(id)? {
                return Ok(());
            }
        }
        self.poll_checkpoint()
    }

    /// `id` appended alone in a round but had to be journaled: if every other
    /// journaled group has been idle for `release_idle` (and no checkpoint runs),
    /// fsyncs every journaled log and removes the journal files now, so `id`'s
    /// next rounds fsync its own log again instead of writing everything twice.
    /// Why not wait for the checkpoint: one write of another group (the metadata
    /// group's InitProducer or cursor commit, in a round shared with a busy
    /// partition) would otherwise double that partition's writes for up to
    /// `CHECKPOINT_INTERVAL` (measured: a 64 MiB journal in a 6 s single-partition
    /// run). The idle wait keeps groups that do write often journaled together.
    /// More than [`MAX_INLINE_RELEASE_LOGS`] journaled logs start the background
    /// checkpoint instead (the raft thread does not wait for their fsyncs).
    /// True if it released.
    pub(crate) fn release(&self, id: GroupId) -> Result<bool, StorageError> {
        let mut inner = lock(&self.inner);
        if inner.running.as_ref().is_some_and(|t| t.is_finished()) {
            inner.collect()?;
        }
        let others_idle = inner.journaled.keys().filter(|&&g| g != id).all(|g| {
            inner
                .last_write
                .get(g)
                .is_none_or(|t| t.elapsed() >= self.release_idle)
        });
        if inner.running.is_some() || !inner.journaled.contains_key(&id) || !others_idle {
            return Ok(false);
        }
        if inner.journaled.len() > MAX_INLINE_RELEASE_LOGS {
            // Too many fsyncs for the raft thread: the background checkpoint does
            // them, and `id` releases itself once it is the only one journaled.
            inner.start_checkpoint()?;
            return Ok(false);
        }
        let through = inner.rotate()?;
        inner.sync_and_remove(through)?;
        Ok(true)
    }

    /// A checkpoint now, on the calling thread (before a log reset, at exit, after
    /// a failed journal write): when it returns, no journal record of a group
    /// that has opened is left.
    pub(crate) fn checkpoint(&self) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        if inner.running.is_some() {
            inner.collect()?;
        }
        let through = inner.rotate()?;
        inner.sync_and_remove(through)
    }
}

impl Inner {
    /// Rotates the journal and fsyncs the covered logs on a checkpoint thread
    /// (here, if no thread starts).
    fn start_checkpoint(&mut self) -> Result<(), StorageError> {
        let through = self.rotate()?;
        let logs: Vec<(GroupId, Arc<Log>)> = self
            .journaled
            .iter()
            .map(|(id, l)| (*id, Arc::clone(l)))
            .collect();
        let dir = self.journal.dir().to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpoint_logs(&logs, &dir, through));
        match spawned {
            Ok(t) => self.running = Some(t),
            // No thread: this round waits for the fsyncs instead.
            Err(e) => {
                log::warn!("journal checkpoint thread not started ({e}): checkpointing here");
                self.sync_and_remove(through)?;
            }
        }
        Ok(())
    }

    /// Starts a new journal file holding the records still waiting for their
    /// groups; returns the last generation to remove once the logs are fsynced.
    fn rotate(&mut self) -> Result<u64, StorageError> {
        let keep: Vec<JournalRecord> = self.pending.values().flatten().cloned().collect();
        let through = self.journal.rotate(&keep)?;
        self.since_rotation.clear();
        self.since = None;
        Ok(through)
    }

    /// fsyncs every journaled log, then removes the files through `through`.
    fn sync_and_remove(&mut self, through: u64) -> Result<(), StorageError> {
        for log in self.journaled.values() {
            log.sync()?;
        }
        journal::remove_through(self.journal.dir(), through)?;
        self.journaled = std::mem::take(&mut self.since_rotation);
        let journaled = &self.journaled;
        self.last_write.retain(|g, _| journaled.contains_key(g));
        Ok(())
    }

    /// Waits for the running checkpoint and applies its outcome.
    fn collect(&mut self) -> Result<(), StorageError> {
        let Some(thread) = self.running.take() else {
            return Ok(());
        };
        let outcome = thread.join().unwrap_or_else(|_| Outcome {
            failed: Vec::new(),
            removed: Some(Err(StorageError::Closed)),
        });
        // A deleted group's log may fail to sync: its records no longer matter.
        if let Some((id, e)) = outcome
            .failed
            .into_iter()
            .find(|(id, _)| self.journaled.contains_key(id))
        {
            log::error!("journal checkpoint: group {id}'s log failed to fsync: {e}");
            return Err(e);
        }
        match outcome.removed {
            Some(Ok(())) => self.journaled = std::mem::take(&mut self.since_rotation),
            // Older files stay: every group journaled stays so until a later
            // checkpoint removes them.
            Some(Err(e)) => log::warn!("journal checkpoint: files not removed: {e}"),
            None => {}
        }
        Ok(())
    }
}

/// The background checkpoint: fsyncs each log, then removes the journal files
/// through `through` if every fsync succeeded.
fn checkpoint_logs(logs: &[(GroupId, Arc<Log>)], dir: &Path, through: u64) -> Outcome {
    let failed: Vec<(GroupId, StorageError)> = logs
        .iter()
        .filter_map(|(id, log)| log.sync().err().map(|e| (*id, e)))
        .collect();
    let removed = failed
        .is_empty()
        .then(|| journal::remove_through(dir, through));
    Outcome { failed, removed }
}

/// One group's records folded into the one record of what its log held after the
/// last of them: applied in order on top of each other (an older record may start
/// past what the next ones hold: the entries it stood on are kept from the log,
/// and a later record starting lower replaces them). None without records.
pub(crate) fn fold(records: &[JournalRecord]) -> Option<JournalRecord> {
    let last = records.last()?;
    let mut first = records.first()?.first.0;
    let mut entries: Vec<&JournalEntry> = Vec::new();
    for r in records {
        let at = r.first.0;
        // A record starting lower replaces everything from there; one starting past
        // what the earlier ones hold stood on entries of the log (kept there, and
        // never a hole filled with shifted entries). No allocation from the offsets.
        if at < first || at - first > entries.len() as u64 {
            entries.clear();
            first = at;
        } else {
            entries.truncate((at - first) as usize);
        }
        entries.extend(r.entries.iter());
    }
    Some(JournalRecord {
        log_id: last.log_id,
        first: crate::storage::Offset(first),
        end: last.end,
        entries: entries.into_iter().cloned().collect(),
    })
}

/// Appends the record of `log` from `from` to its end to the journal's round.
fn encode(
    journal: &mut Journal,
    id: GroupId,
    log: &Log,
    from: crate::storage::Offset,
) -> Result<(), StorageError> {
    let end = log.next_offset();
    let mut record = journal.begin_record(id.0, from);
    let mut at = from;
    // Bounded: every read returns at least one record or stops the loop.
    while at < end {
        let mut read = 0u64;
        log.read_range_with(at, 4 << 20, |r| {
            if r.offset >= end {
                return false;
            }
            journal.push_entry(&mut record, r.term, r.kind, r.value);
            read += 1;
            true
        })?;
        if read == 0 {
            return Err(StorageError::corrupt(
                log.dir(),
                0,
                format!("journal: no record at offset {at} below the end {end}"),
            ));
        }
        at = crate::storage::Offset(at.0 + read);
    }
    journal.end_record(record, end);
    Ok(())
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "journal_crash_tests.rs"]
mod crash_tests;
