//! Configuration of one Raft node, validated before use.

use std::fmt;

use super::types::NodeId;

/// Tunables of a Raft node. Times are in ticks: the caller decides how long a tick is
/// (DESIGN: 100 ms heartbeat, 1 s election timeout in production → tick = 100 ms,
/// `heartbeat_tick = 1`, `election_tick = 10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (never 0).
    pub id: NodeId,
    /// A follower that hears nothing from a leader for a randomized
    /// [`election_tick`, 2·`election_tick`) ticks starts an election. Also the
    /// check-quorum period of a leader and the leadership-transfer deadline.
    pub election_tick: u32,
    /// A leader sends heartbeats every `heartbeat_tick` ticks (< `election_tick`).
    pub heartbeat_tick: u32,
    /// Maximum AppendEntries messages in flight (unacknowledged) per follower in
    /// replicate state: the pipelining window.
    pub max_inflight_msgs: usize,
    /// Entry bytes in flight to one follower at which the leader stops sending more
    /// (0: no limit): the flow control of a catch-up.
    pub max_inflight_bytes: u64,
    /// Bytes of already-committed entries sent to one follower per tick (0: no
    /// limit): the catch-up throttle (see `progress`). Entries not yet committed are
    /// never held back. A follower whose log falls behind by more than this rate
    /// of produced bytes does not catch up while the throttle holds (as with Kafka's
    /// replication quotas): the operator chooses.
    pub catch_up_bytes_per_tick: u64,
    /// Entry payload bytes per AppendEntries message (at least one entry is always
    /// sent, so one entry larger than this still goes alone).
    pub max_size_per_msg: u64,
    /// Use pre-vote (Raft thesis §9.6) before incrementing the term.
    pub pre_vote: bool,
    /// A leader that did not hear from a quorum within `election_tick` steps down,
    /// and followers that heard from a leader recently ignore vote requests.
    pub check_quorum: bool,
    /// Bound on entries appended by the leader but not yet committed; further
    /// proposals are refused with `ProposeError::TooManyPending`.
    pub max_uncommitted_entries: u64,
    /// Bound on messages queued in the node waiting for persistence or for `ready()`.
    pub max_outbox_msgs: usize,
    /// Quiesce the group when idle (module `quiesce`): the leader stops sending
    /// heartbeats and followers stop their election timers. Only for a runner that
    /// reports dead nodes ([`RaftNode::set_dead_nodes`](super::RaftNode::set_dead_nodes)):
    /// a quiesced follower notices a dead leader only that way.
    pub quiesce: bool,
    /// Deliberately broken behaviours, only to prove the simulator's checker fails.
    #[cfg(test)]
    pub(crate) bugs: Bugs,
}

/// Test-only switches that break Raft on purpose (see `sim::tests`).
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bugs {
    /// Commit entries of earlier terms by counting replicas (Figure 8 violation).
    pub commit_old_term_by_counting: bool,
    /// Do not append a no-op entry on election (so old-term entries are only
    /// committed by later proposals; makes Figure 8 reachable in random runs).
    pub skip_leader_noop: bool,
    /// Vote and send the vote before the vote is durable, and never persist it.
    pub forget_to_persist_vote: bool,
    /// Grant votes without the "candidate's log is at least as up-to-date" check.
    pub vote_without_log_check: bool,
    /// Followers acknowledge appended entries before they are durable.
    pub ack_before_persist: bool,
    /// Send a vote grant before the vote is durable (the vote is still persisted).
    pub vote_response_before_persist: bool,
    /// The leader counts its own appended entries toward the commit quorum before
    /// they are durable on it.
    pub leader_counts_unpersisted_append: bool,
    /// A quiesce heartbeat carries the leader's commit index, not min(follower's
    /// match, commit): a follower behind commits its stale entries.
    pub quiesce_tells_full_commit: bool,
}

impl Config {
    /// A configuration with production-like defaults for node `id`.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            catch_up_bytes_per_tick: 0,
            max_size_per_msg: 1024 * 1024,
            pre_vote: true,
            check_quorum: true,
            max_uncommitted_entries: 1 << 20,
            max_outbox_msgs: 1 << 16,
            quiesce: false,
            #[cfg(test)]
            bugs: Bugs::default(),
        }
    }

    /// Checks every field; the node refuses to start with an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError("id must not be 0"));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError("heartbeat_tick must be > 0"));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError("election_tick must be > heartbeat_tick"));
        }
        if self.election_tick > 1_000_000 {
            return Err(ConfigError("election_tick must be <= 1000000"));
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_msgs > 1 << 16 {
            return Err(ConfigError("max_inflight_msgs must be in 1..=65536"));
        }
        if self.max_size_per_msg == 0 {
            return Err(ConfigError("max_size_per_msg must be > 0"));
        }
        if self.max_uncommitted_entries == 0 {
            return Err(ConfigError("max_uncommitted_entries must be > 0"));
        }
        if self.max_outbox_msgs < 16 {
            return Err(ConfigError("max_outbox_msgs must be >= 16"));
        }
        Ok(())
    }
}

/// Why a [`Config`] is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_fields_are_refused() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
        let mut c = Config::new(NodeId(0));
        assert!(c.validate().is_err());
        c = Config::new(NodeId(1));
        c.election_tick = 1;
        assert!(c.validate().is_err());
        c = Config::new(NodeId(1));
        c.max_inflight_msgs = 0;
        assert!(c.validate().is_err());
        c = Config::new(NodeId(1));
        c.heartbeat_tick = 0;
        assert!(c.validate().is_err());
        c = Config::new(NodeId(1));
        c.max_size_per_msg = 0;
        assert!(c.validate().is_err());
    }
}
