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
//! * A checkpoint fsyncs the logs of every journaled group, then rewrites the
//!   journal keeping only the records of groups not replayed yet.
//! * Before a log is reset (InstallSnapshot), a checkpoint: no record from before
//!   the reset may be replayed after it.
//! * At start, each group replays its records when it opens (in order, each making
//!   the log hold exactly what it held after that round), then fsyncs its log.
//!   Records of groups that never open stay in the journal (a lagging catalogue
//!   opens them later) until their directories are removed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sync_pool::SyncPool;
use crate::storage::journal::{Journal, JournalRecord};
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

/// The node's journal and what it covers.
pub(crate) struct NodeJournal {
    inner: Mutex<Inner>,
}

struct Inner {
    journal: Journal,
    /// Groups with records since the last checkpoint, and their logs.
    journaled: BTreeMap<GroupId, Arc<Log>>,
    /// Records of groups that have not opened since start.
    pending: BTreeMap<GroupId, Vec<JournalRecord>>,
    /// When the first group was journaled after the last checkpoint.
    since: Option<Instant>,
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
            inner: Mutex::new(Inner {
                journal,
                journaled: BTreeMap::new(),
                pending,
                since: None,
            }),
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

    /// `id` replayed its records and fsynced its log.
    pub(crate) fn replayed(&self, id: GroupId) {
        lock(&self.inner).pending.remove(&id);
    }

    /// `id`'s data is gone (deleted): nothing of it is kept or synced any more.
    pub(crate) fn forget(&self, id: GroupId) {
        let mut inner = lock(&self.inner);
        inner.pending.remove(&id);
        inner.journaled.remove(&id);
    }

    /// Groups whose records wait for them to open.
    pub(crate) fn pending_groups(&self) -> Vec<GroupId> {
        lock(&self.inner).pending.keys().copied().collect()
    }

    /// True if `id`'s appends must go to the journal (it has records there).
    pub(crate) fn covers(&self, id: GroupId) -> bool {
        lock(&self.inner).journaled.contains_key(&id)
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
        for (id, log, _) in appended {
            inner.journaled.insert(*id, Arc::clone(log));
        }
        inner.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// True if a checkpoint is due (size or age).
    pub(crate) fn checkpoint_due(&self) -> bool {
        let inner = lock(&self.inner);
        inner.journal.len_bytes() >= CHECKPOINT_BYTES
            || inner
                .since
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// fsyncs the log of every journaled group (several at once on `pool`), then
    /// rewrites the journal with only the records still waiting for their groups.
    pub(crate) fn checkpoint(&self, pool: Option<&SyncPool>) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        let logs: Vec<Arc<Log>> = inner.journaled.values().cloned().collect();
        let results = match pool {
            Some(pool) => pool.sync_all(&logs),
            None => logs.iter().map(|l| l.sync().map(|_| ())).collect(),
        };
        for r in results {
            r?;
        }
        let keep: Vec<JournalRecord> = inner.pending.values().flatten().cloned().collect();
        if inner.journal.len_bytes() > 0 || !keep.is_empty() {
            inner.journal.rewrite(&keep)?;
        }
        inner.journaled.clear();
        inner.since = None;
        Ok(())
    }
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
