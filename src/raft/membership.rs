//! Membership changes (Raft thesis §4.1, single-server changes) and leadership
//! transfer (§3.10).
//!
//! * A configuration takes effect on a node as soon as its `Config` entry is appended
//!   to that node's log (committed or not), and reverts if the entry is truncated.
//! * One change at a time: the leader refuses a new change while the previous one (or
//!   any entry from before its election, which might hide one) is uncommitted.
//! * Learners receive the log but neither vote nor count toward commit; `AddVoter` on a
//!   learner promotes it (callers promote once its lag is small, see `Status`).
//! * A leader that removes itself keeps leading (replicating, and committing with the
//!   new configuration's majority, which excludes it) until the removal commits, then
//!   steps down and sends TimeoutNow to the most up-to-date voter.

use super::node::{decode_config, ProposeError, RaftError, RaftNode};
use super::storage::Storage;
use super::types::{ConfChange, Entry, Index, Membership, MessageBody, NodeId, RecordKind, Role};

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    NotLeader,
    /// The target is not a voter (or is this node).
    InvalidTarget,
    /// The log could not be read.
    Fatal(RaftError),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::NotLeader => f.write_str("not leader"),
            TransferError::InvalidTarget => f.write_str("target is not another voter"),
            TransferError::Fatal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TransferError {}

impl<S: Storage> RaftNode<S> {
    /// Appends entries to the log (leader's own or from AppendEntries), keeping the
    /// configuration history in step: truncated Config entries are reverted, appended
    /// ones take effect.
    pub(crate) fn log_append(&mut self, ents: &[Entry]) -> Result<(), RaftError> {
        let mut decoded = Vec::new();
        for e in ents.iter().filter(|e| e.kind == RecordKind::Config) {
            decoded.push((e.index, decode_config(e)?));
        }
        if let Some(from) = self.log.append(ents) {
            self.drop_acks_of_replaced_entries(from);
            let before = self.configs.len();
            self.configs.retain(|(i, _)| *i < from);
            if self.configs.len() != before {
                let m = self.membership_at(from);
                self.apply_membership(m);
            }
        }
        if let Some((_, m)) = decoded.last() {
            let m = m.clone();
            self.configs.extend(decoded);
            self.apply_membership(m);
        }
        Ok(())
    }

    /// Leader-side append of new entries of the current term.
    pub(crate) fn append_local(&mut self, ents: Vec<Entry>) -> Result<(), RaftError> {
        self.log_append(&ents)?;
        #[cfg(test)]
        if self.cfg.bugs.leader_counts_unpersisted_append {
            let last = self.log.last_index();
            if let Some(pr) = self.progress.get_mut(&self.id) {
                pr.maybe_update(last);
            }
        }
        Ok(())
    }

    /// The configuration in effect at `index` (latest Config entry at or below it).
    pub(crate) fn membership_at(&self, index: Index) -> Membership {
        self.configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| self.log.start.membership.clone())
    }

    fn apply_membership(&mut self, m: Membership) {
        self.membership = m;
        if self.role == Role::Leader {
            let last = self.log.last_index();
            let members: Vec<NodeId> = self.membership.members().collect();
            let fresh = self.new_progress(last);
            for id in &members {
                self.progress.entry(*id).or_insert_with(|| fresh.clone());
            }
            let me = self.id;
            self.progress
                .retain(|id, _| *id == me || members.contains(id));
            if let Some(t) = self.lead_transferee {
                if !self.membership.voters.contains(&t) {
                    self.lead_transferee = None;
                }
            }
        } else if !self.promotable() && self.role != Role::Follower {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// After a commit: a leader whose own removal is committed steps down (thesis
    /// §4.2.2) and hands over to the most up-to-date voter.
    pub(crate) fn check_self_removal(&mut self) {
        if self.role != Role::Leader || self.promotable() {
            return;
        }
        let config_index = self.configs.last().map_or(self.log.start.index, |c| c.0);
        if self.log.committed < config_index {
            return;
        }
        let best = self
            .progress
            .iter()
            .filter(|(id, _)| self.membership.voters.contains(id))
            .max_by_key(|(_, p)| p.matched)
            .map(|(id, _)| *id);
        log::info!("raft {}: removal committed, stepping down", self.id);
        if let Some(to) = best {
            self.send(to, MessageBody::TimeoutNow);
        }
        let term = self.term;
        self.become_follower(term, None);
    }

    /// Proposes a single-server membership change (leader only). Returns the index of
    /// the Config entry; it takes effect on each node when appended there.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, ProposeError> {
        self.check_can_propose(1)?;
        if self.pending_conf_index > self.log.committed {
            return Err(ProposeError::ConfChangePending);
        }
        self.wake();
        let mut m = self.membership.clone();
        match change {
            ConfChange::AddLearner(id) => {
                if m.contains(id) {
                    return Err(ProposeError::InvalidConfChange("already a member"));
                }
                m.learners.insert(id);
            }
            ConfChange::AddVoter(id) => {
                if m.voters.contains(&id) {
                    return Err(ProposeError::InvalidConfChange("already a voter"));
                }
                m.learners.remove(&id);
                m.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                if !m.contains(id) {
                    return Err(ProposeError::InvalidConfChange("not a member"));
                }
                m.learners.remove(&id);
                m.voters.remove(&id);
                if m.voters.is_empty() {
                    return Err(ProposeError::InvalidConfChange(
                        "cannot remove the last voter",
                    ));
                }
            }
        }
        if m.voters.len() + m.learners.len() > super::types::MAX_MEMBERS {
            return Err(ProposeError::InvalidConfChange("too many members"));
        }
        if change_id(change).0 == 0 {
            return Err(ProposeError::InvalidConfChange("node id 0"));
        }
        let index = self.log.last_index() + 1;
        self.append_local(vec![Entry {
            index,
            term: self.term,
            kind: RecordKind::Config,
            data: m.to_bytes().into(),
        }])?;
        self.pending_conf_index = index;
        self.bcast_append()?;
        // Removing a voter can lower the quorum and commit pending entries at once.
        if self.maybe_commit()? && self.role == Role::Leader {
            self.bcast_append()?;
        }
        Ok(index)
    }

    /// Leader only: follower `id` reconnected (it may have restarted, possibly with a
    /// lost log). Forgets its match index and probes it again from the end of the log:
    /// a follower whose log is intact acknowledges at once and regains its match; one
    /// that lost its log rejects, and replication restarts from where its log ends
    /// (without waiting for a new proposal). Commit never decreases, so this can only
    /// delay a commit by one round trip.
    pub fn reset_follower(&mut self, id: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader || id == self.id {
            return Ok(());
        }
        self.wake();
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&id) else {
            return Ok(());
        };
        if matches!(pr.state, super::progress::ProgressState::Snapshot(_)) {
            return Ok(());
        }
        pr.matched = Index(0);
        pr.become_probe();
        pr.next = last + 1;
        self.send_append(id, true)?;
        Ok(())
    }

    /// Starts a leadership transfer to voter `to` (graceful shutdown, rolling
    /// restarts). New proposals are refused until it completes or an election timeout
    /// passes; once `to` has the whole log it gets TimeoutNow and campaigns at once.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if to == self.id || !self.membership.voters.contains(&to) {
            return Err(TransferError::InvalidTarget);
        }
        self.wake();
        self.lead_transferee = Some(to);
        self.election_elapsed = 0;
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to, true).map_err(TransferError::Fatal)?;
        }
        Ok(())
    }
}

fn change_id(c: ConfChange) -> NodeId {
    match c {
        ConfChange::AddLearner(id) | ConfChange::AddVoter(id) | ConfChange::Remove(id) => id,
    }
}
