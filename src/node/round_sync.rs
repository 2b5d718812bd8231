//! The raft thread's fsync of a round (part of [`RaftLoop`]): which groups' appends
//! go through the node journal with one fsync (`node::journal`), and which fsync
//! their own logs.

use std::sync::Arc;
use std::time::Instant;

use super::journal::NodeJournal;
use super::raft_loop::{Fatal, RaftLoop};
use super::raft_storage::WriteError;
use crate::storage::Log;
use crate::types::GroupId;

/// Rounds appending more value bytes than this fsync their logs (in parallel)
/// rather than write everything twice: the journal saves flushes of small appends,
/// big ones are bound by the disk's bandwidth.
const MAX_JOURNAL_ROUND_BYTES: u64 = 256 << 10;

/// How a round's appends are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RoundSync {
    /// One journal record per group, one fsync of the journal.
    Journal,
    /// Each log's own fsync (one group alone, or a big round).
    Logs,
    /// A big round with journaled groups: the journal is checkpointed first (no
    /// journal record may be replayed over rounds synced another way).
    CheckpointThenLogs,
}

impl RoundSync {
    pub(super) fn choose(groups: usize, any_journaled: bool, bytes: u64) -> RoundSync {
        let big = bytes > MAX_JOURNAL_ROUND_BYTES;
        match (groups > 1, any_journaled, big) {
            (true, _, false) => RoundSync::Journal,
            // A journaled group alone stays journaled (then releases itself).
            (false, true, _) => RoundSync::Journal,
            (true, true, true) => RoundSync::CheckpointThenLogs,
            _ => RoundSync::Logs,
        }
    }
}

impl RaftLoop {
    /// Makes the round's appends durable (see [`RoundSync`]), then tells each driver.
    pub(super) fn sync_round(&mut self, syncs: Vec<(GroupId, u64)>) -> Result<(), Fatal> {
        let syncs: Vec<(GroupId, u64, Arc<Log>)> = syncs
            .into_iter()
            .filter_map(|(id, seq)| Some((id, seq, Arc::clone(&self.groups.get(&id)?.state.log))))
            .collect();
        let Some(&(first, _, _)) = syncs.first() else {
            return Ok(());
        };
        let journal = Arc::clone(&self.shared.journal);
        let mut appended = Vec::with_capacity(syncs.len());
        let mut bytes = 0;
        for (id, _, log) in &syncs {
            let taken = self
                .groups
                .get_mut(id)
                .and_then(|g| g.driver.storage_mut().take_unjournaled());
            if let Some((from, b)) = taken {
                appended.push((*id, Arc::clone(log), from));
                bytes += b;
            }
        }
        let covered = journal.covers_any(syncs.iter().map(|(id, _, _)| *id));
        let mode = RoundSync::choose(syncs.len(), covered, bytes);
        let started = Instant::now();
        if mode == RoundSync::CheckpointThenLogs {
            journal.checkpoint().map_err(WriteError::from)?;
        }
        let journaled = mode == RoundSync::Journal && self.journal_round(&journal, &appended)?;
        if !journaled {
            let logs: Vec<_> = syncs.iter().map(|(_, _, l)| Arc::clone(l)).collect();
            for r in self.sync_pool.sync_all(&logs) {
                r.map_err(WriteError::from)?;
            }
        }
        if let Some(m) = &self.shared.cfg.metrics {
            let fsyncs = if journaled { 1 } else { syncs.len() };
            for _ in 0..fsyncs {
                m.observe_fsync(started.elapsed());
            }
        }
        let lone = syncs.len() == 1;
        for (id, seq, _) in syncs {
            self.touch(id);
            self.group_call(id, |g| Ok(g.driver.synced(seq)?))?;
        }
        let checkpointed = if mode == RoundSync::Journal && !journaled {
            // A failed journal write: no older record may outlive these fsyncs.
            journal.checkpoint()
        } else {
            journal.after_round((journaled && lone).then_some(first))
        };
        checkpointed.map_err(WriteError::from)?;
        Ok(())
    }

    /// Writes the round to the journal with one fsync; false if that failed (the
    /// caller then fsyncs the logs themselves and checkpoints the journal, so no
    /// older record of theirs is replayed over the newer appends). Logs whose
    /// segments rolled are fsynced too: only their own sync seals a segment.
    fn journal_round(
        &self,
        journal: &NodeJournal,
        appended: &[(GroupId, Arc<Log>, crate::storage::Offset)],
    ) -> Result<bool, Fatal> {
        let rolled: Vec<Arc<Log>> = appended
            .iter()
            .filter(|(_, l, _)| l.has_unsynced_rolls())
            .map(|(_, l, _)| Arc::clone(l))
            .collect();
        for r in self.sync_pool.sync_all(&rolled) {
            r.map_err(WriteError::from)?;
        }
        match journal.commit_round(appended) {
            Ok(()) => Ok(true),
            Err(e) => {
                log::warn!("node journal: {e}; fsyncing the round's logs one by one");
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RoundSync, MAX_JOURNAL_ROUND_BYTES};

    #[test]
    fn small_rounds_of_several_groups_are_journaled_big_ones_are_not() {
        let small = 16 * 1024;
        let big = MAX_JOURNAL_ROUND_BYTES + 1;
        assert_eq!(RoundSync::choose(2, false, small), RoundSync::Journal);
        assert_eq!(RoundSync::choose(12, true, small), RoundSync::Journal);
        assert_eq!(RoundSync::choose(1, false, small), RoundSync::Logs);
        assert_eq!(RoundSync::choose(1, false, big), RoundSync::Logs);
        assert_eq!(RoundSync::choose(12, false, big), RoundSync::Logs);
        // Journaled groups never go back to their own fsyncs while the journal
        // still holds records of theirs.
        assert_eq!(RoundSync::choose(1, true, big), RoundSync::Journal);
        assert_eq!(
            RoundSync::choose(3, true, big),
            RoundSync::CheckpointThenLogs
        );
    }
}
