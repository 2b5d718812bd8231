//! Quiescence: an idle group sends nothing and runs no election timer
//! ([`Config::quiesce`](super::Config::quiesce); CockroachDB's range quiescence,
//! TiKV's hibernate regions), so a node can host thousands of idle groups.
//!
//! # When a leader quiesces
//! At a heartbeat tick, instead of a heartbeat, when nothing is in flight: the last
//! entry is committed and durable here, every voter and learner acknowledged it in
//! this term and is in replicate state, no configuration change is uncommitted, no
//! leadership transfer runs, and no message waits for persistence. Members on nodes
//! the runner reports dead are exempt from "acknowledged it" (as CockroachDB
//! ignores replicas on non-live nodes): a node down for maintenance does not keep
//! every group it hosts awake. When one is reported alive again and is behind, the
//! leader wakes and catches it up (its restart also wakes the leader: a
//! reconnection, or its pre-vote). It then sends
//! every follower a `Heartbeat { commit, quiesce: true }` (commit = min(follower's
//! match, commit) as in every heartbeat, i.e. the last index for every member that
//! is not exempt: every follower learns the final commit index) and stops: its ticks do nothing,
//! so it sends no heartbeats and runs no check-quorum (which cannot depose it
//! spuriously while nobody talks).
//!
//! # When a follower quiesces
//! On a quiesce heartbeat from its leader of the current term, unless the runner
//! reports that leader's node dead. Its ticks then do nothing (no election timer).
//!
//! # Waking up
//! * Any message wakes a quiesced node, except the ones the quiescing exchange
//!   itself produces: a leader stays quiesced on a `HeartbeatResponse` of its term
//!   from a caught-up member, a follower on a repeated quiesce heartbeat. A follower that missed the quiesce
//!   heartbeat times out and pre-votes; that message wakes the leader, which
//!   heartbeats again (and quiesces again once the follower answered).
//! * A proposal, a membership change, a leadership transfer, a reconnected follower
//!   ([`RaftNode::reset_follower`]) and [`RaftNode::wake`] wake a leader. Waking
//!   resets the check-quorum period with every follower counted active: a leader
//!   that lost its quorum while quiesced accepts the proposal that woke it, cannot
//!   commit it, and steps down one election timeout later, as an active leader
//!   that just lost its quorum does.
//! * [`RaftNode::set_dead_nodes`]: when the node of a follower's leader becomes
//!   dead (the runner's failure detector; CockroachDB uses node liveness the same
//!   way), the follower wakes, forgets that leader (so it is not "in lease" and
//!   grants pre-votes) and campaigns (pre-vote) within `election_tick / 2` ticks,
//!   the jitter spreading the campaigns of many groups and of the surviving
//!   followers of one group. A false report about a live leader costs at most one
//!   pre-vote round: the leader and followers that still follow it ignore it (they
//!   are in lease), and the leader's next heartbeat takes the follower back.
//!
//! # Safety
//! Quiescence only suppresses heartbeats and timers, and the dead-node report only
//! starts an election earlier: no message is sent that Raft without quiescence
//! could not send (a quiesce heartbeat is a heartbeat), terms, votes, logs and
//! commit rules are untouched. Election safety, log matching, leader completeness
//! and commitment hold as before; the multi-group simulator checks them with
//! quiescence and false dead-node reports (`replica::sim::multi`).

use std::collections::BTreeSet;

use super::node::{RaftError, RaftNode};
use super::progress::ProgressState;
use super::storage::Storage;
use super::types::{Index, MessageBody, NodeId, Role};

impl<S: Storage> RaftNode<S> {
    /// True while the group is quiesced here: ticks do nothing (the runner may skip
    /// them) until a message, a proposal or a dead-node report wakes it.
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiesced node (no-op otherwise): a leader resumes heartbeats and
    /// check-quorum (with a full period before it judges), a follower resumes its
    /// election timer.
    pub fn wake(&mut self) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        if self.role == Role::Leader {
            for pr in self.progress.values_mut() {
                pr.recent_active = true;
            }
        }
    }

    /// The runner's failure detector: the nodes currently believed dead (all of
    /// them, each call). A follower whose leader's node became dead since the last
    /// call wakes and campaigns soon (module docs). Reports about this node are
    /// ignored.
    pub fn set_dead_nodes(&mut self, dead: &BTreeSet<NodeId>) -> Result<(), RaftError> {
        let newly_dead = self
            .leader
            .filter(|l| *l != self.id && dead.contains(l) && !self.dead_nodes.contains(l));
        let revived_behind = self.role == Role::Leader
            && self.dead_nodes.iter().any(|id| {
                !dead.contains(id) && self.progress.contains_key(id) && !self.caught_up(*id)
            });
        if dead != &self.dead_nodes {
            self.dead_nodes = dead.clone();
        }
        if revived_behind {
            // A member it quiesced without is back: catch it up.
            self.wake();
        }
        if let (Some(l), true) = (newly_dead, self.role == Role::Follower) {
            log::info!(
                "raft {}: leader {l} reported dead in term {}; campaigning soon",
                self.id,
                self.term
            );
            self.wake();
            self.leader = None;
            let et = self.cfg.election_tick;
            let soon = 1 + self.rng.below(u64::from((et / 2).max(1))) as u32;
            self.election_elapsed = self.randomized_election_timeout.saturating_sub(soon);
        }
        Ok(())
    }

    /// Wakes before stepping `body` from `from`, unless it belongs to the quiescing
    /// exchange (module docs).
    pub(crate) fn wake_for_message(
        &mut self,
        from: NodeId,
        term_matches: bool,
        body: &MessageBody,
    ) {
        if !self.quiesced {
            return;
        }
        let part_of_quiescing = term_matches
            && match body {
                // From a member behind (exempt as dead), it wakes: the leader
                // then catches it up instead of staying quiet.
                MessageBody::HeartbeatResponse => self.role == Role::Leader && self.caught_up(from),
                MessageBody::Heartbeat { quiesce: true, .. } => self.leader == Some(from),
                _ => false,
            };
        if !part_of_quiescing {
            self.wake();
        }
    }

    /// A follower got a quiesce heartbeat from its leader (after applying it).
    pub(crate) fn follow_quiesce(&mut self, from: NodeId) {
        if self.cfg.quiesce
            && self.role == Role::Follower
            && self.leader == Some(from)
            && !self.dead_nodes.contains(&from)
        {
            self.quiesced = true;
        }
    }

    /// Leader, at a heartbeat tick: quiesces if nothing is in flight (module docs).
    /// Returns true if it did (it then sent the quiesce heartbeats).
    pub(crate) fn maybe_quiesce(&mut self) -> bool {
        if !self.can_quiesce() {
            return false;
        }
        self.quiesced = true;
        let commit = self.log.committed;
        // min(match, commit) as every heartbeat: a member exempt as dead may be
        // behind, with stale entries it must not commit (found by the multi-group
        // simulator, seed 4).
        let followers: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, pr)| (*id, pr.matched.min(commit)))
            .collect();
        #[cfg(test)]
        let followers: Vec<(NodeId, Index)> = if self.cfg.bugs.quiesce_tells_full_commit {
            followers.into_iter().map(|(id, _)| (id, commit)).collect()
        } else {
            followers
        };
        for (id, commit) in followers {
            self.send(
                id,
                MessageBody::Heartbeat {
                    commit,
                    quiesce: true,
                },
            );
        }
        log::debug!(
            "raft {}: quiesced at {commit} in term {}",
            self.id,
            self.term
        );
        true
    }

    fn can_quiesce(&self) -> bool {
        let last = self.log.last_index();
        let idle = self.cfg.quiesce
            && self.role == Role::Leader
            && !self.quiesced
            && self.lead_transferee.is_none()
            && self.pending_conf_index <= self.log.committed
            && self.log.committed == last
            && self.log.persisted >= last
            && !self.log.has_unwritten()
            && self.gated_is_empty();
        idle && self
            .membership
            .members()
            .all(|id| id == self.id || self.dead_nodes.contains(&id) || self.caught_up(id))
    }

    fn caught_up(&self, id: NodeId) -> bool {
        let last = self.log.last_index();
        self.progress
            .get(&id)
            .is_some_and(|p| p.matched == last && p.state == ProgressState::Replicate)
    }
}
