//! The Raft node: state, the public API (`tick`, `step`, `propose`, `ready`,
//! `advance`, …) and the persistence bookkeeping behind the Ready/advance contract.
//! Election, replication and membership logic live in sibling files as further
//! `impl RaftNode` blocks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::config::Config;
use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::storage::{Storage, StorageError};
use super::types::{
    Entry, HardState, Index, LogStart, Membership, Message, MessageBody, NodeId, RecordKind, Role,
    Term,
};

/// A small seeded PRNG (SplitMix64): deterministic, std-only, good enough for jitter.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Errors that stop the node (fail-stop): the caller should crash and restart it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// The log could not be read.
    Storage(StorageError),
    /// The configuration is invalid.
    Config(super::config::ConfigError),
    /// Stored or received data violates an invariant (e.g. an undecodable
    /// configuration entry, or a leader asking to overwrite a committed entry).
    Corrupt(String),
}

impl From<StorageError> for RaftError {
    fn from(e: StorageError) -> RaftError {
        RaftError::Storage(e)
    }
}

impl fmt::Display for RaftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftError::Storage(e) => write!(f, "raft storage: {e}"),
            RaftError::Config(e) => e.fmt(f),
            RaftError::Corrupt(e) => write!(f, "raft invariant violated: {e}"),
        }
    }
}

impl std::error::Error for RaftError {}

/// Why a proposal was refused. All are expected outcomes the caller handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader` is the known leader, if any.
    NotLeader {
        /// Known leader.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is in progress.
    Transferring,
    /// `max_uncommitted_entries` would be exceeded: back off.
    TooManyPending,
    /// An empty batch.
    Empty,
    /// Another membership change is not committed yet (one change at a time).
    ConfChangePending,
    /// The membership change makes no sense (e.g. removing the last voter).
    InvalidConfChange(&'static str),
    /// The log could not be read.
    Fatal(RaftError),
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => write!(f, "not leader (leader is {l})"),
            ProposeError::NotLeader { leader: None } => f.write_str("not leader (no leader known)"),
            ProposeError::Transferring => f.write_str("leadership transfer in progress"),
            ProposeError::TooManyPending => f.write_str("too many uncommitted entries"),
            ProposeError::Empty => f.write_str("empty proposal"),
            ProposeError::ConfChangePending => f.write_str("a membership change is pending"),
            ProposeError::InvalidConfChange(why) => write!(f, "invalid membership change: {why}"),
            ProposeError::Fatal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ProposeError {}

impl From<RaftError> for ProposeError {
    fn from(e: RaftError) -> ProposeError {
        ProposeError::Fatal(e)
    }
}

/// Where a proposal landed. It is durable and visible once `commit >= last` and the
/// entry at `last` still has `term` (a new leader may have overwritten it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// Index of the first entry of the batch.
    pub first: Index,
    /// Index of the last entry of the batch.
    pub last: Index,
    /// Term the entries were appended in.
    pub term: Term,
}

/// Volatile state reported when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// Current role.
    pub role: Role,
    /// Known leader of the current term.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: Term,
}

/// Output of the node, drained with [`RaftNode::ready`]. See the module docs of
/// `raft` for the contract; in short, for each Ready in order:
///
/// 1. If `snapshot` is set: discard the whole log and persist it as the log start.
/// 2. If `entries` is non-empty: discard stored entries with index >=
///    `entries[0].index`, then append `entries`.
/// 3. If `hard_state` is set: persist it (after the entries, so a persisted commit
///    index never points past the durable log).
/// 4. `messages` may be sent right away, in any order relative to 1-3: the node holds
///    back every message that depends on unpersisted state until it is acknowledged.
/// 5. Once 1-3 are durable (fsync), call `advance(ReadyAck { seq })`. Readies are
///    acknowledged in order; acknowledging `seq` acknowledges all earlier ones.
/// 6. `committed` entries are committed AND durable locally: serve them to consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Sequence number to acknowledge.
    pub seq: u64,
    /// Role/leader/term changes.
    pub soft_state: Option<SoftState>,
    /// Hard state to persist.
    pub hard_state: Option<HardState>,
    /// Log start to install (the log is discarded first).
    pub snapshot: Option<LogStart>,
    /// Entries to persist (truncating first, see above).
    pub entries: Vec<Entry>,
    /// Messages safe to send now.
    pub messages: Vec<Message>,
    /// Newly committed and locally durable range, inclusive.
    pub committed: Option<(Index, Index)>,
}

impl Ready {
    /// Where the caller must cut its log before appending `entries`: stored entries
    /// with index >= this are discarded (nothing is discarded when appending at the
    /// end). `None` when there are no entries.
    pub fn truncate_from(&self) -> Option<Index> {
        self.entries.first().map(|e| e.index)
    }

    /// True if this Ready carries anything that must be made durable.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}

/// Acknowledgement that every Ready with `seq <=` this one is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyAck {
    /// Highest durable Ready.
    pub seq: u64,
}

/// Replication state of one follower, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The follower.
    pub id: NodeId,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Highest index known durable on the follower.
    pub matched: Index,
    /// Next index the leader sends.
    pub next: Index,
    /// Flow-control state.
    pub state: ProgressState,
    /// Entries the follower lacks: leader's last index − `matched`.
    pub lag_entries: u64,
    /// Heard from during the current check-quorum period.
    pub recent_active: bool,
    /// AppendEntries messages sent and not yet acknowledged.
    pub inflight_msgs: usize,
}

/// A snapshot of the node's state for operators (`clog servers`, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// First index in the log.
    pub first_index: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// Durable prefix of the log.
    pub persisted: Index,
    /// Effective configuration (latest appended).
    pub membership: Membership,
    /// Per-follower progress (leader only; empty otherwise).
    pub followers: Vec<FollowerStatus>,
}

/// A Raft node as a pure state machine. See the `raft` module docs.
pub struct RaftNode<S: Storage> {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) log: RaftLog<S>,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    /// Effective configuration: the latest in `configs`, else the log start's.
    pub(crate) membership: Membership,
    /// Config entries above the log start, ascending by index.
    pub(crate) configs: Vec<(Index, Membership)>,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_timeout: u32,
    pub(crate) rng: SplitMix64,
    pub(crate) lead_transferee: Option<NodeId>,
    pub(crate) pending_conf_index: Index,
    /// Quiesced (module `quiesce`): ticks do nothing.
    pub(crate) quiesced: bool,
    /// The runner's latest dead-node report (`quiesce`).
    pub(crate) dead_nodes: BTreeSet<NodeId>,
    // ---- output bookkeeping ----
    /// Messages that may be sent now.
    outbox: Vec<Message>,
    /// Messages waiting until Ready `seq` is acknowledged.
    gated: VecDeque<(u64, Message)>,
    /// Seq of the next Ready.
    next_seq: u64,
    /// Highest acknowledged Ready.
    acked_seq: u64,
    /// Highest issued Ready that changed term/vote or wrote log data.
    last_change_seq: u64,
    /// Highest issued Ready that changed term or vote.
    term_change_seq: u64,
    /// For issued Readies with log data: the (index, term) of the last thing written.
    write_marks: VecDeque<(u64, Index, Term)>,
    /// Hard state last handed out.
    emitted_hs: HardState,
    /// Soft state last handed out.
    emitted_soft: SoftState,
    /// Highest index reported in `Ready::committed`.
    reported_commit: Index,
    /// Test-only bug switch state: the vote in this term is never persisted.
    #[cfg(test)]
    pub(crate) bug_hidden_vote: Option<Term>,
}

impl<S: Storage> RaftNode<S> {
    /// Starts (or restarts) a node over `storage`, which holds exactly what was
    /// persisted. `seed` seeds the election-timeout jitter (use different seeds on
    /// different nodes, e.g. from the OS at start-up or from the simulator).
    pub fn new(cfg: Config, storage: S, seed: u64) -> Result<RaftNode<S>, RaftError> {
        cfg.validate().map_err(RaftError::Config)?;
        let (hs, start) = storage.initial_state()?;
        let config_indexes = storage.config_entry_indexes()?;
        let log = RaftLog::new(storage, start.clone(), hs.commit);
        let mut configs = Vec::with_capacity(config_indexes.len());
        for i in config_indexes {
            let e = log.entry(i)?;
            configs.push((i, decode_config(&e)?));
        }
        let membership = configs
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| start.membership.clone());
        let soft = SoftState {
            role: Role::Follower,
            leader: None,
            term: hs.term,
        };
        let mut node = RaftNode {
            id: cfg.id,
            log,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            membership,
            configs,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            rng: SplitMix64::new(seed ^ cfg.id.0.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            lead_transferee: None,
            pending_conf_index: Index(0),
            quiesced: false,
            dead_nodes: BTreeSet::new(),
            outbox: Vec::new(),
            gated: VecDeque::new(),
            next_seq: 1,
            acked_seq: 0,
            last_change_seq: 0,
            term_change_seq: 0,
            write_marks: VecDeque::new(),
            emitted_hs: HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            },
            emitted_soft: soft,
            reported_commit: Index(0),
            cfg,
            #[cfg(test)]
            bug_hidden_vote: None,
        };
        node.emitted_hs.commit = node.log.committed;
        node.reported_commit = node.log.start.index;
        node.reset_randomized_timeout();
        Ok(node)
    }

    // ------------------------------------------------------------------ inputs

    /// Advances logical time by one tick (elections, heartbeats, check-quorum).
    /// Does nothing while quiesced.
    pub fn tick(&mut self) -> Result<(), RaftError> {
        if self.quiesced {
            return Ok(());
        }
        if self.role == Role::Leader {
            self.tick_leader()
        } else {
            self.tick_election()
        }
    }

    /// Elects this node at once if it is the only voter of its configuration (a
    /// single node is a one-voter cluster; nobody else could vote, so waiting an
    /// election timeout would only delay serving). Returns true if it campaigned.
    pub fn campaign_if_sole_voter(&mut self) -> Result<bool, RaftError> {
        let sole = self.membership.voters.len() == 1 && self.membership.voters.contains(&self.id);
        if !sole || self.role == Role::Leader {
            return Ok(false);
        }
        self.campaign(self.cfg.pre_vote, false)?;
        Ok(true)
    }

    /// Starts an election now (a pre-vote first when configured) if this node is a
    /// voter and not the leader: what an election timeout would do, earlier. Used
    /// by a new partition's preferred leader so it is elected first (any node may
    /// campaign at any time; safety never depends on when). Returns true if it
    /// campaigned.
    pub fn campaign_now(&mut self) -> Result<bool, RaftError> {
        if self.role == Role::Leader || !self.membership.voters.contains(&self.id) {
            return Ok(false);
        }
        self.campaign(self.cfg.pre_vote, false)?;
        Ok(true)
    }

    /// Feeds a message received from a peer. Messages for another node or from a
    /// stale term are ignored (or answered with the current term).
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.to != self.id || m.from == self.id {
            return Ok(());
        }
        self.wake_for_message(m.from, m.term == self.term, &m.body);
        self.step_inner(m)
    }

    /// Appends a batch of data records (leader only) and starts replicating them.
    pub fn propose(&mut self, batch: Vec<Vec<u8>>) -> Result<Proposed, ProposeError> {
        self.propose_entries(batch.into_iter().map(|v| (RecordKind::Data, v)).collect())
    }

    /// As [`RaftNode::propose`], with each entry's kind given (record format v1 data,
    /// producer batch headers).
    pub fn propose_entries(
        &mut self,
        batch: Vec<(RecordKind, Vec<u8>)>,
    ) -> Result<Proposed, ProposeError> {
        self.check_can_propose(batch.len() as u64)?;
        self.wake();
        let first = self.log.last_index() + 1;
        let ents: Vec<Entry> = batch
            .into_iter()
            .enumerate()
            .map(|(i, (kind, data))| Entry {
                index: first + i as u64,
                term: self.term,
                kind,
                data: data.into(),
            })
            .collect();
        let last = first + (ents.len() as u64 - 1);
        self.append_local(ents)?;
        self.bcast_append()?;
        Ok(Proposed {
            first,
            last,
            term: self.term,
        })
    }

    pub(crate) fn check_can_propose(&self, n: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::Transferring);
        }
        if n == 0 {
            return Err(ProposeError::Empty);
        }
        let uncommitted = self.log.last_index().0 - self.log.committed.0;
        if uncommitted + n > self.cfg.max_uncommitted_entries {
            return Err(ProposeError::TooManyPending);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ outputs

    /// True if [`RaftNode::ready`] has something to hand out.
    pub fn has_ready(&self) -> bool {
        !self.outbox.is_empty()
            || self.log.has_unwritten()
            || self.current_hs() != self.emitted_hs
            || self.soft_state() != self.emitted_soft
            || self.committed_durable() > self.reported_commit
    }

    /// Takes everything the caller must persist, send and apply. See [`Ready`].
    pub fn ready(&mut self) -> Ready {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut rd = Ready {
            seq,
            ..Ready::default()
        };
        let soft = self.soft_state();
        if soft != self.emitted_soft {
            rd.soft_state = Some(soft);
            self.emitted_soft = soft;
        }
        let hs = self.current_hs();
        let mut changed = false;
        if hs != self.emitted_hs {
            changed = hs.term != self.emitted_hs.term || hs.vote != self.emitted_hs.vote;
            if changed {
                self.term_change_seq = seq;
            }
            #[allow(unused_mut)]
            let mut out = hs;
            #[cfg(test)]
            if self.bug_hidden_vote == Some(hs.term) {
                out.vote = None;
            }
            rd.hard_state = Some(out);
            self.emitted_hs = hs;
        }
        let (snap, ents, mark) = self.log.take_unwritten();
        if let Some((i, t)) = mark {
            self.write_marks.push_back((seq, i, t));
            changed = true;
        }
        if changed {
            self.last_change_seq = seq;
        }
        rd.snapshot = snap;
        rd.entries = ents;
        rd.messages = std::mem::take(&mut self.outbox);
        let durable = self.committed_durable();
        if durable > self.reported_commit {
            rd.committed = Some((self.reported_commit + 1, durable));
            self.reported_commit = durable;
        }
        rd
    }

    /// Acknowledges that every Ready up to `ack.seq` is durable. Releases messages that
    /// waited for it, advances the leader's own match index, and may commit.
    pub fn advance(&mut self, ack: ReadyAck) -> Result<(), RaftError> {
        if ack.seq <= self.acked_seq || ack.seq >= self.next_seq {
            return Ok(());
        }
        self.acked_seq = ack.seq;
        while let Some(&(seq, i, t)) = self.write_marks.front() {
            if seq > ack.seq {
                break;
            }
            self.write_marks.pop_front();
            self.log.on_persisted(i, t);
        }
        while self.gated.front().is_some_and(|(s, _)| *s <= ack.seq) {
            if let Some((_, m)) = self.gated.pop_front() {
                self.outbox.push(m);
            }
        }
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(pr) = self.progress.get_mut(&self.id) {
                pr.maybe_update(persisted);
            }
            if self.maybe_commit()? {
                self.bcast_append()?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ queries

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Known leader.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Commit index (may be ahead of the locally durable log on a follower).
    pub fn commit_index(&self) -> Index {
        self.log.committed
    }

    /// First index in the log.
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// Last index in the log (durable or not).
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Durable prefix of the log.
    pub fn persisted_index(&self) -> Index {
        self.log.persisted
    }

    /// Term of the entry at `index` in this node's log (durable or not).
    pub fn term_at(&self, index: Index) -> Result<Term, StorageError> {
        self.log.term(index)
    }

    /// Entry at `index` in this node's log (durable or not).
    pub fn entry_at(&self, index: Index) -> Result<Entry, StorageError> {
        self.log.entry(index)
    }

    /// Effective configuration (the latest appended, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The log-start record currently in effect.
    pub fn log_start(&self) -> &LogStart {
        &self.log.start
    }

    /// The storage the node reads.
    pub fn storage(&self) -> &S {
        &self.log.storage
    }

    /// Mutable access for the caller's writes (apply Ready contents, compaction).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.log.storage
    }

    /// Gives the storage back (e.g. to restart a node over it in tests).
    pub fn into_storage(self) -> S {
        self.log.storage
    }

    /// The current hard state (what the next Ready would persist).
    pub fn hard_state(&self) -> HardState {
        self.current_hs()
    }

    /// State for operators, including each follower's lag when leader.
    pub fn status(&self) -> Status {
        let last = self.log.last_index();
        let followers = if self.role == Role::Leader {
            self.progress
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, pr)| FollowerStatus {
                    id: *id,
                    voter: self.membership.voters.contains(id),
                    matched: pr.matched,
                    next: pr.next,
                    state: pr.state,
                    lag_entries: last.0.saturating_sub(pr.matched.0),
                    recent_active: pr.recent_active,
                    inflight_msgs: pr.inflights.len(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: self.log.committed,
            first_index: self.log.first_index(),
            last_index: last,
            persisted: self.log.persisted,
            membership: self.membership.clone(),
            followers,
        }
    }

    /// Caller-initiated compaction of the committed, durable prefix through `through`.
    /// Returns the log-start record the caller must persist before discarding entries
    /// `..= through` from its log (the node stops reading them immediately).
    pub fn compact(&mut self, through: Index) -> Result<LogStart, CompactError> {
        if through <= self.log.start.index {
            return Err(CompactError::AlreadyCompacted);
        }
        if through > self.log.committed || through > self.log.persisted {
            return Err(CompactError::NotCommittedOrDurable);
        }
        let term = self.log.term(through).map_err(CompactError::Storage)?;
        let membership = self.membership_at(through);
        let start = LogStart {
            index: through,
            term,
            membership,
        };
        self.configs.retain(|(i, _)| *i > through);
        self.log.compact(start.clone());
        Ok(start)
    }

    // ------------------------------------------------------------------ internals

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    pub(crate) fn current_hs(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    fn committed_durable(&self) -> Index {
        self.log.committed.min(self.log.persisted)
    }

    /// The Ready seq that must be acknowledged before a message depending on the
    /// current term, vote and log may be sent.
    fn persist_barrier(&self) -> u64 {
        let hs = self.current_hs();
        if hs.term != self.emitted_hs.term
            || hs.vote != self.emitted_hs.vote
            || self.log.has_unwritten()
        {
            self.next_seq
        } else {
            self.last_change_seq
        }
    }

    /// The Ready seq that must be acknowledged before a message carrying the current
    /// term may be sent.
    fn term_barrier(&self) -> u64 {
        let hs = self.current_hs();
        if hs.term != self.emitted_hs.term || hs.vote != self.emitted_hs.vote {
            self.next_seq
        } else {
            self.term_change_seq
        }
    }

    /// Queues a message. Leader replication traffic waits only for the leader's term
    /// to be durable (DESIGN decision 3 lets it send entries before its own append is
    /// durable). With peers the term was durable before the votes that elected it
    /// left, so it goes out at once; a sole voter wins without a vote, so its first
    /// AppendEntries waits for its term (a crash could otherwise elect it again in the
    /// same term with other entries). Everything else waits until the state it
    /// depends on is durable.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let m = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if self.outbox.len() + self.gated.len() >= self.cfg.max_outbox_msgs {
            log::warn!("raft {}: outbox full, dropping {}", self.id, m.body.name());
            return;
        }
        let leader_traffic = self.role == Role::Leader
            && matches!(
                m.body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. }
                    | MessageBody::TimeoutNow
            );
        let barrier = if leader_traffic {
            self.term_barrier()
        } else {
            self.persist_barrier()
        };
        if barrier <= self.acked_seq {
            self.outbox.push(m);
        } else {
            self.gated.push_back((barrier, m));
        }
    }

    /// Entries from `from` on are being replaced: an acknowledgement of them still
    /// waiting for its Ready to be durable must not leave (by the time it would,
    /// the entries it vouches for are gone, and a deposed leader of their term
    /// could still count it). Found by the replica simulator (seed 3148).
    pub(crate) fn drop_acks_of_replaced_entries(&mut self, from: Index) {
        self.gated.retain(|(_, m)| {
            !matches!(
                m.body,
                MessageBody::AppendEntriesResponse { reject: false, index, .. } if index >= from
            )
        });
    }

    /// True if no message waits for persistence.
    pub(crate) fn gated_is_empty(&self) -> bool {
        self.gated.is_empty()
    }

    /// Sends without waiting for persistence (only for test-only bug switches).
    #[cfg(test)]
    pub(crate) fn send_ungated(&mut self, to: NodeId, body: MessageBody) {
        let m = Message {
            from: self.id,
            to,
            term: self.term,
            body,
        };
        self.outbox.push(m);
    }

    pub(crate) fn reset_randomized_timeout(&mut self) {
        let et = self.cfg.election_tick;
        self.randomized_election_timeout = et + self.rng.below(u64::from(et)) as u32;
    }
}

/// Why [`RaftNode::compact`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactError {
    /// The log already starts after that index.
    AlreadyCompacted,
    /// Only the committed and locally durable prefix may be compacted.
    NotCommittedOrDurable,
    /// The log could not be read.
    Storage(StorageError),
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::AlreadyCompacted => f.write_str("already compacted"),
            CompactError::NotCommittedOrDurable => {
                f.write_str("only the committed, durable prefix can be compacted")
            }
            CompactError::Storage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CompactError {}

/// Decodes the membership carried by a `Config` entry.
pub(crate) fn decode_config(e: &Entry) -> Result<Membership, RaftError> {
    Membership::decode(&e.data)
        .map_err(|err| RaftError::Corrupt(format!("config entry {}: {err}", e.index)))
}
