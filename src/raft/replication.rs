//! Log replication (§5.3): the leader's AppendEntries pipeline with per-follower flow
//! control and fast back-tracking, heartbeats, InstallSnapshot for followers behind
//! the leader's log start, commitment (§5.4.2), and the follower side of all three.

use super::log::Fit;
use super::node::{RaftError, RaftNode};
use super::progress::{Progress, ProgressState};
use super::storage::{Storage, StorageError};
use super::types::{Entry, Index, LogStart, Message, MessageBody, NodeId, Role, Term};

/// `prev_term` of an AppendEntries whose `prev_index` is committed on the leader
/// but whose copy there is damaged (no entry has term 0). A follower accepts it
/// only at its own commit index, where leader completeness makes its entry the
/// leader's.
pub(crate) const COMMITTED_PREV: Term = Term(0);

impl<S: Storage> RaftNode<S> {
    /// Sends the next batch of entries to `to` if its flow control allows. With
    /// `send_if_empty`, sends an empty AppendEntries (carrying the commit index, or
    /// probing) when there is nothing new. Returns true if something was sent.
    pub(crate) fn send_append(
        &mut self,
        to: NodeId,
        send_if_empty: bool,
    ) -> Result<bool, RaftError> {
        let Some(pr) = self.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused() {
            return Ok(false);
        }
        let next = pr.next;
        let prev = next - 1;
        let last = self.log.last_index();
        let prev_term = match self.log.term(prev) {
            Ok(t) => t,
            Err(StorageError::Compacted) => return Ok(self.send_snapshot(to)),
            // Our copy of a committed entry is damaged: the follower takes
            // COMMITTED_PREV at its own commit index (it holds the same entry there),
            // so it can receive what follows, which also gives our healer an anchor
            // on it.
            Err(StorageError::Damaged(_)) if prev <= self.log.committed => COMMITTED_PREV,
            Err(StorageError::Damaged(at)) => return Ok(self.hold_for_heal(to, at)),
            Err(e) => return Err(e.into()),
        };
        // The catch-up throttle: already-committed entries go within this tick's
        // budget; held back (None), at most an empty append (commit index, probe).
        let catch_up = self.cfg.catch_up_bytes_per_tick > 0 && next <= self.log.committed;
        let max_bytes = if catch_up && next <= last {
            self.progress
                .get_mut(&to)
                .and_then(Progress::catch_up_allowance)
                .map(|allowed| allowed.min(self.cfg.max_size_per_msg))
        } else {
            Some(self.cfg.max_size_per_msg)
        };
        let entries = match max_bytes {
            Some(max_bytes) if next <= last => match self.log.entries(next, last + 1, max_bytes) {
                Ok(e) => e,
                Err(StorageError::Compacted) => return Ok(self.send_snapshot(to)),
                Err(StorageError::Damaged(at)) => return Ok(self.hold_for_heal(to, at)),
                Err(e) => return Err(e.into()),
            },
            _ => Vec::new(),
        };
        if entries.is_empty() && !send_if_empty {
            return Ok(false);
        }
        let n = entries.len();
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent_entries(prev + n as u64, n, bytes);
            if catch_up {
                pr.spend_catch_up(bytes);
            }
        }
        let commit = self.log.committed;
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_index: prev,
                prev_term,
                commit,
                entries,
            },
        );
        Ok(true)
    }

    /// The catch-up throttle's tick: every follower gets a new tick's budget, and
    /// those held back since the last tick get their window filled again.
    pub(crate) fn refill_catch_up(&mut self) -> Result<(), RaftError> {
        let per_tick = self.cfg.catch_up_bytes_per_tick;
        if per_tick == 0 {
            return Ok(());
        }
        let me = self.id;
        let held: Vec<NodeId> = self
            .progress
            .iter_mut()
            .filter(|(id, _)| **id != me)
            .filter_map(|(id, pr)| pr.refill_catch_up(per_tick).then_some(*id))
            .collect();
        for id in held {
            for _ in 0..self.cfg.max_inflight_msgs {
                if !self.send_append(id, false)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// A fresh progress for a member when the leader's last index is `last`.
    pub(crate) fn new_progress(&self, last: Index) -> Progress {
        let mut p = Progress::new(
            last,
            self.cfg.max_inflight_msgs,
            self.cfg.max_inflight_bytes,
        );
        p.refill_catch_up(self.cfg.catch_up_bytes_per_tick);
        p
    }

    /// Our copy of entry `at`, which `to` needs next, is damaged: send nothing now.
    /// The follower keeps getting heartbeats (no election), the storage layer has
    /// reported the damage to the healer, and the next heartbeat response retries.
    fn hold_for_heal(&self, to: NodeId, at: Index) -> bool {
        log::debug!(
            "raft {}: entry {at} needed by {to} is damaged here; waiting for it to be healed",
            self.id
        );
        false
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let start = self.log.start.clone();
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        pr.become_snapshot(start.index);
        log::debug!(
            "raft {}: sending log start {} to {to}",
            self.id,
            start.index
        );
        self.send(to, MessageBody::InstallSnapshot { start });
        true
    }

    /// Sends entries (or an empty append carrying the commit index) to every follower.
    pub(crate) fn bcast_append(&mut self) -> Result<(), RaftError> {
        let ids: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in ids {
            if id != self.id {
                self.send_append(id, true)?;
            }
        }
        Ok(())
    }

    pub(crate) fn bcast_heartbeat(&mut self) {
        let committed = self.log.committed;
        let targets: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, pr)| (*id, pr.matched.min(committed)))
            .collect();
        for (id, commit) in targets {
            // min(match, commit): never tell a follower to commit an entry it may not
            // hold or that differs from ours.
            self.send(
                id,
                MessageBody::Heartbeat {
                    commit,
                    quiesce: false,
                },
            );
        }
    }

    /// Advances the commit index to the highest index durable on a quorum of voters,
    /// but only if that entry is from the current term (§5.4.2, Figure 8).
    pub(crate) fn maybe_commit(&mut self) -> Result<bool, RaftError> {
        let mut matched: Vec<Index> = self
            .membership
            .voters
            .iter()
            .map(|v| self.progress.get(v).map_or(Index(0), |p| p.matched))
            .collect();
        if matched.is_empty() {
            return Ok(false);
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let q = matched[self.membership.quorum() - 1];
        if q <= self.log.committed {
            return Ok(false);
        }
        #[cfg(test)]
        let any_term = self.cfg.bugs.commit_old_term_by_counting;
        #[cfg(not(test))]
        let any_term = false;
        let term_of_q = match self.log.term(q) {
            Ok(t) => t,
            // Decided again once the entry is healed (or a later one is replicated).
            Err(StorageError::Damaged(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if !any_term && term_of_q != self.term {
            return Ok(false);
        }
        self.log.commit_to(q);
        self.check_self_removal();
        Ok(true)
    }

    pub(crate) fn step_leader(&mut self, m: Message) -> Result<(), RaftError> {
        let from = m.from;
        let Some(pr) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        match m.body {
            MessageBody::AppendEntriesResponse {
                reject: true,
                index,
                hint_index,
                hint_term,
            } => {
                let mut next_probe = hint_index;
                if hint_term.0 > 0 {
                    next_probe = self.log.find_conflict_by_term(hint_index, hint_term);
                }
                let Some(pr) = self.progress.get_mut(&from) else {
                    return Ok(());
                };
                if pr.maybe_decr_to(index, next_probe) {
                    self.send_append(from, true)?;
                }
            }
            MessageBody::AppendEntriesResponse {
                reject: false,
                index,
                ..
            } => {
                if index > self.log.last_index() {
                    log::warn!(
                        "raft {}: {from} acknowledged {index}, beyond our log",
                        self.id
                    );
                    return Ok(());
                }
                let Some(pr) = self.progress.get_mut(&from) else {
                    return Ok(());
                };
                let was_paused = pr.is_paused();
                let updated = pr.maybe_update(index);
                match pr.state {
                    ProgressState::Probe if updated => pr.become_replicate(),
                    ProgressState::Snapshot(at) if pr.matched >= at => pr.become_replicate(),
                    ProgressState::Replicate => pr.inflights.free_le(index),
                    _ => {}
                }
                if updated {
                    if self.maybe_commit()? {
                        if self.role != Role::Leader {
                            return Ok(());
                        }
                        self.bcast_append()?;
                    } else if was_paused {
                        // It may have missed the commit index while paused.
                        self.send_append(from, true)?;
                    }
                    // Fill the window (bounded by max_inflight_msgs).
                    for _ in 0..self.cfg.max_inflight_msgs {
                        if !self.send_append(from, false)? {
                            break;
                        }
                    }
                }
                self.maybe_send_timeout_now(from);
            }
            MessageBody::HeartbeatResponse => {
                pr.probe_sent = false;
                match pr.state {
                    ProgressState::Snapshot(_) => pr.become_probe(),
                    ProgressState::Replicate if pr.inflights.full() => {
                        pr.inflights.free_first_one()
                    }
                    _ => {}
                }
                if pr.matched < self.log.last_index() {
                    self.send_append(from, true)?;
                }
                self.maybe_send_timeout_now(from);
            }
            _ => {}
        }
        Ok(())
    }

    fn maybe_send_timeout_now(&mut self, from: NodeId) {
        if self.lead_transferee != Some(from) {
            return;
        }
        let caught_up = self
            .progress
            .get(&from)
            .is_some_and(|p| p.matched == self.log.last_index());
        if caught_up {
            log::info!("raft {}: {from} caught up, sending TimeoutNow", self.id);
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    pub(crate) fn step_follower(&mut self, m: Message) -> Result<(), RaftError> {
        match m.body {
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                commit,
                entries,
            } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_append(m.from, prev_index, prev_term, commit, entries)
            }
            MessageBody::Heartbeat { commit, quiesce } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                let c = commit.min(self.log.last_index());
                self.log.commit_to(c);
                self.send(m.from, MessageBody::HeartbeatResponse);
                if quiesce {
                    self.follow_quiesce(m.from);
                }
                Ok(())
            }
            MessageBody::InstallSnapshot { start } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_snapshot(m.from, start);
                Ok(())
            }
            MessageBody::TimeoutNow => {
                if self.promotable() {
                    log::info!("raft {}: TimeoutNow from {}, campaigning", self.id, m.from);
                    // Leadership transfer skips pre-vote (thesis §3.10).
                    self.campaign(false, true)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        entries: Vec<Entry>,
    ) -> Result<(), RaftError> {
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == prev_index + (i as u64 + 1));
        if !contiguous {
            log::warn!("raft {}: non-contiguous AppendEntries from {from}", self.id);
            return Ok(());
        }
        if prev_index < self.log.committed {
            let committed = self.log.committed;
            self.send_append_response(from, false, committed, Index(0), Term(0));
            return Ok(());
        }
        // Our committed entry is the leader's (leader completeness) even when our copy
        // of it, or the leader's (COMMITTED_PREV), is damaged: the leader can append
        // after it, which gives the healers an intact entry to anchor to.
        let at_commit = prev_index == self.log.committed
            && (prev_term == COMMITTED_PREV
                || matches!(self.log.term(prev_index), Err(StorageError::Damaged(_))));
        if at_commit || self.log.match_term(prev_index, prev_term) {
            let mut last_new = prev_index + entries.len() as u64;
            match self.log.find_conflict(&entries) {
                Fit::Match => {}
                Fit::Conflict(ci) => {
                    let first = entries[ci].index;
                    if first <= self.log.committed {
                        return Err(RaftError::Corrupt(format!(
                            "leader {from} overwrites committed index {first}"
                        )));
                    }
                    self.log_append(&entries[ci..])?;
                }
                Fit::Unproven(ci) => last_new = entries[ci].index - 1,
            }
            self.log.commit_to(commit.min(last_new));
            self.send_append_response(from, false, last_new, Index(0), Term(0));
        } else {
            // For COMMITTED_PREV beyond our commit index, point the leader at it.
            let (from_index, from_term) = if prev_term == COMMITTED_PREV {
                (self.log.committed, self.term)
            } else {
                (prev_index, prev_term)
            };
            let hint = self
                .log
                .find_conflict_by_term(from_index.min(self.log.last_index()), from_term);
            let hint_term = self.log.term(hint)?;
            self.send_append_response(from, true, prev_index, hint, hint_term);
        }
        Ok(())
    }

    fn send_append_response(
        &mut self,
        to: NodeId,
        reject: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) {
        let body = MessageBody::AppendEntriesResponse {
            reject,
            index,
            hint_index,
            hint_term,
        };
        #[cfg(test)]
        if self.cfg.bugs.ack_before_persist {
            self.send_ungated(to, body);
            return;
        }
        self.send(to, body);
    }

    fn handle_snapshot(&mut self, from: NodeId, start: LogStart) {
        if start.index <= self.log.committed {
            let committed = self.log.committed;
            self.send_append_response(from, false, committed, Index(0), Term(0));
            return;
        }
        if self.log.match_term(start.index, start.term) {
            // We already hold the prefix: just learn that it is committed.
            self.log.commit_to(start.index);
        } else {
            log::info!(
                "raft {}: installing log start {} (term {}) from {from}",
                self.id,
                start.index,
                start.term
            );
            self.configs.clear();
            self.membership = start.membership.clone();
            self.log.restore(start.clone());
        }
        self.send_append_response(from, false, start.index, Index(0), Term(0));
    }
}
