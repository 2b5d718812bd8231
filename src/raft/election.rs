//! Elections: timers, pre-vote, votes, role transitions, check-quorum, and the term
//! rules every incoming message goes through first (§5.1: a message with a higher
//! term makes the receiver a follower in that term; stale terms are ignored).

use super::node::{RaftError, RaftNode};
use super::storage::{Storage, StorageError};
use super::types::{Entry, Index, Message, MessageBody, NodeId, Payload, RecordKind, Role, Term};

impl<S: Storage> RaftNode<S> {
    /// True if this node may campaign: it is a voter in its effective configuration,
    /// or in the last configuration it knows committed. Thesis §4.2.2: a server
    /// removed by a configuration that is not committed yet "should still start new
    /// elections, as it might still be needed until the C_new entry is committed":
    /// when it holds the most up-to-date log, nobody else can win. Votes are still
    /// counted in the effective configuration, so its election needs a majority of
    /// C_new; once elected it leads until C_new commits, then steps down
    /// (`check_self_removal`).
    pub(crate) fn promotable(&self) -> bool {
        let committed = self.log.committed;
        let committed_config = self
            .configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= committed)
            .map_or(&self.log.start.membership, |(_, m)| m);
        self.membership.voters.contains(&self.id) || committed_config.voters.contains(&self.id)
    }

    pub(crate) fn tick_election(&mut self) -> Result<(), RaftError> {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.campaign(self.cfg.pre_vote, false)?;
        }
        Ok(())
    }

    pub(crate) fn tick_leader(&mut self) -> Result<(), RaftError> {
        self.refill_catch_up()?;
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_active() {
                log::info!(
                    "raft {}: leader lost contact with a quorum in term {}; stepping down",
                    self.id,
                    self.term
                );
                self.become_follower(self.term, None);
                return Ok(());
            }
            if let Some(t) = self.lead_transferee.take() {
                log::info!("raft {}: leadership transfer to {t} timed out", self.id);
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            if !self.maybe_quiesce() {
                self.bcast_heartbeat();
            }
        }
        Ok(())
    }

    /// Check-quorum: did a quorum of voters (counting ourselves) talk to us since the
    /// last check? Resets the activity flags for the next period.
    fn quorum_active(&mut self) -> bool {
        let id = self.id;
        let mut active = 0;
        for (pid, pr) in self.progress.iter_mut() {
            if *pid == id {
                pr.recent_active = true;
            }
            if pr.recent_active && self.membership.voters.contains(pid) {
                active += 1;
            }
            if *pid != id {
                pr.recent_active = false;
            }
        }
        active >= self.membership.quorum()
    }

    /// Starts an election: a pre-vote round first if `pre_vote`, else a real one.
    /// `transfer` marks a campaign forced by TimeoutNow (receivers ignore their lease).
    pub(crate) fn campaign(&mut self, pre_vote: bool, transfer: bool) -> Result<(), RaftError> {
        if !self.promotable() {
            return Ok(());
        }
        // Every vote request carries our last term: while our copy of the last entry
        // is damaged we cannot tell it, so we do not stand until it is healed.
        let last_term = match self.log.last_term() {
            Ok(t) => t,
            Err(StorageError::Damaged(i)) => {
                log::warn!(
                    "raft {}: last entry {i} is damaged here; not campaigning",
                    self.id
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let vote_term = if pre_vote {
            self.become_pre_candidate();
            Term(self.term.0 + 1)
        } else {
            self.become_candidate();
            self.term
        };
        let last_index = self.log.last_index();
        self.votes.insert(self.id, true);
        if self.tally_votes() {
            return self.on_election_won(pre_vote);
        }
        let voters: Vec<NodeId> = self.membership.voters.iter().copied().collect();
        for v in voters {
            if v == self.id {
                continue;
            }
            self.send_with_term(
                v,
                vote_term,
                MessageBody::RequestVote {
                    pre_vote,
                    transfer,
                    last_index,
                    last_term,
                },
            );
        }
        Ok(())
    }

    fn on_election_won(&mut self, pre_vote: bool) -> Result<(), RaftError> {
        if pre_vote {
            self.campaign(false, false)
        } else {
            self.become_leader()
        }
    }

    /// True if granted votes reach a quorum of the effective configuration's voters.
    fn tally_votes(&self) -> bool {
        let granted = self
            .votes
            .iter()
            .filter(|(id, g)| **g && self.membership.voters.contains(id))
            .count();
        granted >= self.membership.quorum()
    }

    fn tally_rejections(&self) -> bool {
        let rejected = self
            .votes
            .iter()
            .filter(|(id, g)| !**g && self.membership.voters.contains(id))
            .count();
        let voters = self.membership.voters.len();
        rejected > voters.saturating_sub(self.membership.quorum())
    }

    fn reset(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_timeout();
        self.lead_transferee = None;
        self.votes.clear();
        self.progress.clear();
        self.quiesced = false;
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        // Pre-vote changes neither term nor vote (Raft thesis §9.6).
        self.quiesced = false;
        self.votes.clear();
        self.progress.clear();
        self.leader = None;
        self.role = Role::PreCandidate;
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
    }

    fn become_candidate(&mut self) {
        let next = Term(self.term.0 + 1);
        self.reset(next);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    pub(crate) fn become_leader(&mut self) -> Result<(), RaftError> {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let last = self.log.last_index();
        let members: Vec<NodeId> = self.membership.members().collect();
        for id in members {
            self.progress.insert(id, self.new_progress(last));
        }
        let persisted = self.log.persisted;
        let fresh = self.new_progress(last);
        let me = self.progress.entry(self.id).or_insert(fresh);
        me.maybe_update(persisted);
        me.become_replicate();
        me.recent_active = true;
        log::info!("raft {}: became leader in term {}", self.id, self.term);
        // Entries of earlier terms may hold uncommitted configuration changes: block
        // new ones until everything up to here commits.
        self.pending_conf_index = last;
        #[cfg(test)]
        if self.cfg.bugs.skip_leader_noop {
            return self.bcast_append();
        }
        // §5.4.2 / §8: a no-op in the new term commits everything before it.
        self.append_local(vec![Entry {
            index: last + 1,
            term: self.term,
            kind: RecordKind::NoOp,
            data: Payload::default(),
        }])?;
        self.bcast_append()
    }

    /// First stage of every message: term rules. Then dispatch by role.
    pub(crate) fn step_inner(&mut self, m: Message) -> Result<(), RaftError> {
        if m.term > self.term {
            match m.body {
                MessageBody::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    let in_lease = self.cfg.check_quorum
                        && self.leader.is_some()
                        && self.election_elapsed < self.cfg.election_tick;
                    if in_lease && !transfer {
                        // We heard from a leader recently: ignore (thesis §4.2.3).
                        return Ok(());
                    }
                    if !pre_vote {
                        self.become_follower(m.term, None);
                    }
                }
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. }
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    // A stale leader (e.g. isolated while we moved on) learns our term
                    // from this and steps down.
                    self.send(m.from, MessageBody::HeartbeatResponse);
                }
                MessageBody::RequestVote { pre_vote, .. } => {
                    // Reject with our term so a stale candidate catches up at once
                    // (otherwise it may keep campaigning in terms nobody accepts).
                    self.send(
                        m.from,
                        MessageBody::RequestVoteResponse {
                            pre_vote,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return Ok(());
        }

        if let MessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            ..
        } = m.body
        {
            return self.handle_vote_request(m.from, m.term, pre_vote, last_index, last_term);
        }
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: Index,
        last_term: Term,
    ) -> Result<(), RaftError> {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        #[cfg(test)]
        let log_ok = self.cfg.bugs.vote_without_log_check
            || self.log.is_up_to_date(last_index, last_term, self.term);
        #[cfg(not(test))]
        let log_ok = self.log.is_up_to_date(last_index, last_term, self.term);
        if can_vote && log_ok {
            if pre_vote {
                // Granting a pre-vote changes nothing here: in particular it does NOT
                // reset the election timer (hashicorp/raft#609).
                self.send_with_term(
                    from,
                    term,
                    MessageBody::RequestVoteResponse {
                        pre_vote: true,
                        granted: true,
                    },
                );
            } else {
                self.election_elapsed = 0;
                self.vote = Some(from);
                let body = MessageBody::RequestVoteResponse {
                    pre_vote: false,
                    granted: true,
                };
                #[cfg(test)]
                if self.cfg.bugs.forget_to_persist_vote {
                    self.bug_hidden_vote = Some(self.term);
                    self.send_ungated(from, body);
                    return Ok(());
                }
                #[cfg(test)]
                if self.cfg.bugs.vote_response_before_persist {
                    self.send_ungated(from, body);
                    return Ok(());
                }
                // Gated: goes out only after the vote is durable (§5.2, Figure 2
                // "persistent state ... updated on stable storage before responding").
                self.send(from, body);
            }
        } else {
            self.send(
                from,
                MessageBody::RequestVoteResponse {
                    pre_vote,
                    granted: false,
                },
            );
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), RaftError> {
        match m.body {
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                let expected = match self.role {
                    Role::PreCandidate => pre_vote && m.term == Term(self.term.0 + 1),
                    _ => !pre_vote && m.term == self.term,
                };
                // A rejected pre-vote carries the voter's term (== ours here).
                let stale_reject =
                    self.role == Role::PreCandidate && pre_vote && !granted && m.term == self.term;
                if !expected && !stale_reject {
                    return Ok(());
                }
                self.votes.entry(m.from).or_insert(granted);
                if self.tally_votes() {
                    return self.on_election_won(self.role == Role::PreCandidate);
                }
                if self.tally_rejections() {
                    self.become_follower(self.term, None);
                }
                Ok(())
            }
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                // Someone won this term (§5.2): follow it.
                self.become_follower(self.term, Some(m.from));
                self.step_follower(m)
            }
            MessageBody::TimeoutNow => self.step_follower(m),
            _ => Ok(()),
        }
    }
}
