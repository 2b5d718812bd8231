//! [`Driver`]: the replica state machine (see the module docs of `replica`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::dedup::{BatchMeta, DedupConfig, ProducerEpoch};
use super::dedup_log::DedupLog;
use super::policy::{self, MemberView};
use super::ReplicaStorage;
use crate::raft::{
    HardState, Index, Message, MessageBody, NodeId, ProposeError, RaftError, RaftNode, ReadyAck,
    Role, SoftState, Term,
};
use crate::types::RecordKind;

/// Most Readies drained before one `Sync`.
const MAX_READIES_PER_ROUND: usize = 64;
/// Most Ready rounds per input (each round handles what the previous released).
const MAX_ROUNDS: usize = 16;

/// Settings of a [`Driver`].
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Proposal batches that may be uncommitted at once before new produces wait to
    /// form a bigger batch (1 measured best: W2 12.2k/s vs 9.9k/s with 2).
    pub max_uncommitted_batches: usize,
    /// How often a commit-only hard-state change is persisted (lazily: the persisted
    /// commit is only a lower bound used at start-up; writing it per Ready would add
    /// fsyncs to every produce).
    pub commit_persist_interval_ms: u64,
    /// Acknowledge from the page cache (`--fsync never`), honoured only while this
    /// node is the only voter.
    pub skip_fsync_when_alone: bool,
    /// Bounds of the idempotent producers' dedup state (`replica::dedup`).
    pub dedup: DedupConfig,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            max_uncommitted_batches: 1,
            commit_persist_interval_ms: 1000,
            skip_fsync_when_alone: false,
            dedup: DedupConfig::default(),
        }
    }
}

/// The values of one produce: one (Produce) or several (ProduceBatch). A single
/// value needs no vector around it (one allocation less per record on the produce
/// path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    /// One record.
    One(Vec<u8>),
    /// A batch (possibly empty).
    Many(Vec<Vec<u8>>),
}

impl Values {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[Vec<u8>] {
        match self {
            Values::One(v) => std::slice::from_ref(v),
            Values::Many(vs) => vs,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Total bytes of the values.
    pub fn bytes(&self) -> usize {
        self.as_slice().iter().map(Vec::len).sum()
    }

    /// Moves the values to the end of `out` as entries of `kind`, leaving none here.
    fn move_to(&mut self, kind: RecordKind, out: &mut Vec<(RecordKind, Vec<u8>)>) {
        match std::mem::replace(self, Values::Many(Vec::new())) {
            Values::One(v) => out.push((kind, v)),
            Values::Many(vs) => out.extend(vs.into_iter().map(|v| (kind, v))),
        }
    }
}

impl From<Vec<Vec<u8>>> for Values {
    fn from(values: Vec<Vec<u8>>) -> Values {
        Values::Many(values)
    }
}

/// A produce handed to the driver. `R` is the caller's reply handle.
#[derive(Debug)]
pub struct ProduceRequest<R> {
    /// The values, appended contiguously, all or none.
    pub values: Values,
    /// An idempotent producer's batch meta (its count equals the values'): the
    /// batch is checked against the partition's dedup state before it is appended.
    pub producer: Option<BatchMeta>,
    /// The kind of log entry each value becomes: `DataV1` for a client's records
    /// (already encoded by the caller), `Data` for the metadata group's commands.
    pub kind: RecordKind,
    /// Answered `Timeout` when not committed by then (same clock as `now_ms`).
    pub deadline_ms: u64,
    /// Handed back in [`Effect::Complete`].
    pub reply: R,
}

/// Where an acknowledged produce landed (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Produced {
    /// Offset of the first value.
    pub first: Index,
    /// Offset of the last value (`first - 1` for an empty batch).
    pub last: Index,
    /// True for an idempotent retry answered with its original offsets (nothing
    /// was appended).
    pub duplicate: bool,
}

/// Why a produce was not acknowledged. Each says whether it may have been written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProduceError {
    /// Not written: this node is not the leader (`leader` if known).
    NotLeader {
        /// Known leader.
        leader: Option<NodeId>,
    },
    /// Not written: retry later (the message says why).
    Unavailable(String),
    /// May or may not be written (leadership changed after it was replicated, or it
    /// was not committed in time).
    Indeterminate(String),
    /// Not written: an idempotent producer's batch the dedup state refuses.
    Producer(ProducerRefusal),
}

/// Why an idempotent producer's batch was refused (`replica::dedup` rules). Nothing
/// of it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerRefusal {
    /// A gap or a reordering: the producer's next batch must start at `expected_seq`.
    OutOfOrder {
        /// The first sequence expected.
        expected_seq: u32,
    },
    /// An older epoch than the producer's current one: a newer instance exists.
    Fenced {
        /// The producer's current epoch.
        current_epoch: ProducerEpoch,
    },
    /// The producer is not known to this partition (never seen, expired or
    /// evicted): it must re-initialise.
    UnknownProducer,
    /// A retry of a batch older than the retained window: it was appended long ago.
    DuplicateTooOld,
    /// The meta's record count differs from the batch's.
    CountMismatch {
        /// Records the meta announces.
        meta: u32,
        /// Records the batch holds.
        values: usize,
    },
}

/// What the caller must do, in order (module docs of `replica`).
#[derive(Debug)]
pub enum Effect<R> {
    /// Send a Raft message.
    Send(Message),
    /// fsync everything appended so far, then call [`Driver::synced`]`(seq)`.
    Sync {
        /// Ready sequence number the fsync covers.
        seq: u64,
    },
    /// Answer a produce.
    Complete {
        /// The request's reply handle.
        reply: R,
        /// Where it landed, or why not.
        result: Result<Produced, ProduceError>,
    },
    /// The exclusive high-water mark rose to this (commit + 1).
    HighWater(Index),
    /// The first readable offset rose to this.
    FirstIndex(Index),
    /// Role, term or leader changed.
    Role(SoftState),
}

/// An error after which the driver must not be used: fail-stop, except `NoSpace`,
/// after which the caller rebuilds the driver from the durable state
/// ([`Driver::into_parts`]) and retries once space frees.
#[derive(Debug)]
pub enum DriverError {
    /// The Raft core failed (corrupt state, storage read error).
    Raft(RaftError),
    /// A write failed.
    Storage(String),
    /// A write found the disk full; nothing after the durable state counts.
    NoSpace(String),
}

fn write_error<S: ReplicaStorage>(e: S::Error) -> DriverError {
    if S::is_no_space(&e) {
        DriverError::NoSpace(e.to_string())
    } else {
        DriverError::Storage(e.to_string())
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Raft(e) => e.fmt(f),
            DriverError::Storage(e) => write!(f, "log write failed: {e}"),
            DriverError::NoSpace(e) => write!(f, "disk full: {e}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<RaftError> for DriverError {
    fn from(e: RaftError) -> DriverError {
        DriverError::Raft(e)
    }
}

/// The "must not vote" guard (module docs of `replica`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovering {
    /// The durable log must reach this commit index.
    pub min_commit: Index,
    /// Still waiting for a leader's AppendEntries.
    pub need_leader: bool,
}

struct Pending<R> {
    first: Index,
    last: Index,
    term: Term,
    deadline_ms: u64,
    reply: R,
    /// An idempotent retry waiting for its original's commit.
    duplicate: bool,
}

/// The replica state machine.
pub struct Driver<S: ReplicaStorage, R> {
    node: RaftNode<S>,
    cfg: DriverConfig,
    recovering: Option<Recovering>,
    effects: Vec<Effect<R>>,
    pending: VecDeque<Pending<R>>,
    /// Last index of each proposal batch not yet committed (leader).
    uncommitted_batches: VecDeque<Index>,
    /// Highest Ready seq a `Sync` was asked for.
    sync_requested: u64,
    /// Highest Ready seq known durable.
    sync_done: u64,
    /// Highest Ready seq issued.
    issued: u64,
    /// A term/vote change (or log start) to persist once its Ready is durable.
    hs_after_sync: Option<(u64, HardState)>,
    commit: Index,
    latest_hs: HardState,
    last_hs_write_ms: u64,
    now_ms: u64,
    members: BTreeMap<NodeId, MemberView>,
    /// Idempotent producers' state, derived from this replica's log.
    dedup: DedupLog,
    /// Wall clock (ms since the epoch) for producer batch append times.
    wall_ms: u64,
    /// While the dedup state is incomplete: when (`now_ms`) to try completing it
    /// again (`DedupLog::try_complete` reads the log).
    dedup_retry_at_ms: u64,
}

impl<S: ReplicaStorage, R> Driver<S, R> {
    /// A driver over a started Raft node.
    pub fn new(node: RaftNode<S>, cfg: DriverConfig, recovering: Option<Recovering>) -> Self {
        let hs = node.storage().persisted_hard_state();
        let commit = node.log_start().index;
        let floor = node.storage().producer_floor();
        let dedup = DedupLog::rebuild(cfg.dedup, node.storage(), &floor);
        Driver {
            node,
            cfg,
            recovering,
            effects: Vec::new(),
            pending: VecDeque::new(),
            uncommitted_batches: VecDeque::new(),
            sync_requested: 0,
            sync_done: 0,
            issued: 0,
            hs_after_sync: None,
            commit,
            latest_hs: hs,
            last_hs_write_ms: 0,
            now_ms: 0,
            members: BTreeMap::new(),
            dedup,
            wall_ms: 0,
            dedup_retry_at_ms: 0,
        }
    }

    /// The wall clock (ms since the epoch): the append time the leader stores with
    /// an idempotent batch, and the clock producer expiry counts in. An input like
    /// `now_ms`; the runner sets it before proposing.
    pub fn set_wall_clock_ms(&mut self, wall_ms: u64) {
        self.wall_ms = wall_ms;
    }

    /// The idempotent producers' state (read-only: tests, simulators, metrics).
    pub fn dedup(&self) -> &super::dedup::DedupState {
        self.dedup.state()
    }

    /// First input: a one-voter cluster elects itself at once, and whatever the
    /// restarted node must do is released.
    pub fn start(&mut self, now_ms: u64) -> Result<(), DriverError> {
        self.now_ms = now_ms;
        self.last_hs_write_ms = now_ms;
        if self.recovering.is_none() && self.node.campaign_if_sole_voter()? {
            log::info!("only voter of the configuration: elected without waiting");
        }
        self.process()
    }

    /// Effects queued since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect<R>> {
        std::mem::take(&mut self.effects)
    }

    /// True if new produces may form a batch now (fewer, fuller batches while one
    /// is replicating: group commit across round trips).
    pub fn wants_produces(&mut self) -> bool {
        let commit = self.commit;
        while self
            .uncommitted_batches
            .front()
            .is_some_and(|l| *l <= commit)
        {
            self.uncommitted_batches.pop_front();
        }
        if self.node.role() != Role::Leader {
            self.uncommitted_batches.clear();
        }
        self.uncommitted_batches.len() < self.cfg.max_uncommitted_batches
    }

    /// Proposes every request as ONE batch (one append, one fsync, one
    /// AppendEntries per follower).
    pub fn propose(&mut self, reqs: Vec<ProduceRequest<R>>) -> Result<(), DriverError> {
        if reqs.is_empty() {
            return Ok(());
        }
        if reqs.iter().any(|r| r.producer.is_some()) {
            return self.propose_idempotent(reqs);
        }
        let mut reqs = reqs;
        let total: usize = reqs.iter().map(|r| r.values.len()).sum();
        let mut values = Vec::with_capacity(total);
        let mut counts = Vec::with_capacity(reqs.len());
        for r in &mut reqs {
            counts.push(r.values.len() as u64);
            r.values.move_to(r.kind, &mut values);
        }
        if values.is_empty() {
            // Only empty batches: nothing to replicate, nothing to wait for.
            let at = self.node.last_index() + 1;
            for r in reqs {
                self.complete(
                    r.reply,
                    Ok(Produced {
                        first: at,
                        last: at - 1,
                        duplicate: false,
                    }),
                );
            }
            return Ok(());
        }
        match self.node.propose_entries(values) {
            Ok(p) => {
                self.uncommitted_batches.push_back(p.last);
                let mut at = p.first;
                for (r, n) in reqs.into_iter().zip(counts) {
                    // An empty request inside a batch lands "before" `at` (last < first).
                    self.pending.push_back(Pending {
                        first: at,
                        last: (at + n) - 1,
                        term: p.term,
                        deadline_ms: r.deadline_ms,
                        reply: r.reply,
                        duplicate: false,
                    });
                    at = at + n;
                }
            }
            Err(ProposeError::Fatal(e)) => return Err(e.into()),
            Err(e) => {
                let err = refusal(&e);
                for r in reqs {
                    self.complete(r.reply, Err(err.clone()));
                }
            }
        }
        self.process()
    }

    /// A Raft message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), DriverError> {
        if let Some(r) = &mut self.recovering {
            match &m.body {
                MessageBody::RequestVote { .. } | MessageBody::TimeoutNow => {
                    log::debug!("recovering: ignoring {} from {}", m.body.name(), m.from);
                    return Ok(());
                }
                MessageBody::AppendEntries { commit, .. } if r.need_leader => {
                    r.need_leader = false;
                    r.min_commit = r.min_commit.max(*commit);
                    log::info!(
                        "recovering: leader {} has commit {}; not voting until the log reaches {}",
                        m.from,
                        commit,
                        r.min_commit
                    );
                }
                _ => {}
            }
        }
        self.node.step(m)?;
        self.process()
    }

    /// One Raft tick, plus the periodic duties: expire produces past their deadline,
    /// persist a changed commit lazily, and (leader) one membership change.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), DriverError> {
        self.now_ms = now_ms;
        if self.recovering.is_none() || self.node.role() == Role::Leader {
            self.node.tick()?;
        }
        self.process()?;
        self.expire_pending();
        let due =
            now_ms.saturating_sub(self.last_hs_write_ms) >= self.cfg.commit_persist_interval_ms;
        if due && self.durable_hs(self.latest_hs) != self.node.storage().persisted_hard_state() {
            self.write_hard_state(self.latest_hs)?;
        }
        if self.node.role() == Role::Leader {
            self.reconcile_membership();
        }
        if self.wall_ms > 0 {
            self.dedup.expire(self.wall_ms);
        }
        self.process()
    }

    /// The `Sync { seq }` effect completed: every Ready up to `seq` is durable.
    pub fn synced(&mut self, seq: u64) -> Result<(), DriverError> {
        self.sync_done = self.sync_done.max(seq);
        if let Some((hs_seq, hs)) = self.hs_after_sync {
            if hs_seq > seq {
                // Readies up to `seq` are durable; the term/vote change waits for its own.
                self.node.advance(ReadyAck { seq })?;
                return self.process();
            }
            self.hs_after_sync = None;
            self.write_hard_state(hs)?;
        }
        // Readies issued after the last Sync persist nothing: acknowledge them too.
        let ack = if self.sync_requested <= seq {
            self.issued
        } else {
            seq
        };
        self.node.advance(ReadyAck { seq: ack })?;
        self.process()
    }

    /// A peer (re)connected: probe it again so a wiped follower refills.
    pub fn peer_connected(&mut self, id: NodeId) -> Result<(), DriverError> {
        self.node.reset_follower(id)?;
        self.process()
    }

    /// The gossip member table the membership policy works from. A quiesced
    /// leader with a membership change to make wakes up (its next tick makes it).
    pub fn set_members(&mut self, members: BTreeMap<NodeId, MemberView>) {
        self.members = members;
        if self.node.is_quiesced()
            && self.node.role() == Role::Leader
            && self.next_membership_change().is_some()
        {
            self.node.wake();
        }
    }

    /// The failure detector's verdict (gossip): every node currently believed
    /// down. A follower whose leader's node went down wakes (if quiesced) and
    /// campaigns soon; a false report costs at most one pre-vote round
    /// (`raft::quiesce`). Call it whenever the set changes (calling it again with
    /// the same set does nothing).
    pub fn set_node_liveness(&mut self, dead: &BTreeSet<NodeId>) -> Result<(), DriverError> {
        self.node.set_dead_nodes(dead)?;
        self.process()
    }

    /// True if the runner may skip this group's ticks: Raft is quiesced (nothing in
    /// flight, no heartbeats, no election timer) and no produce waits for an answer
    /// or a deadline. Ticking it anyway is harmless. Commit persistence is lazy
    /// (`commit_persist_interval_ms`, on ticks): a group quiesced for long keeps an
    /// older persisted commit, which is only a lower bound used at start-up.
    pub fn is_quiesced(&self) -> bool {
        self.node.is_quiesced() && self.pending.is_empty()
    }

    /// Leader: hand leadership to the most caught-up voter (graceful shutdown).
    pub fn transfer_leadership(&mut self) -> Result<(), DriverError> {
        if self.node.role() != Role::Leader {
            return Ok(());
        }
        match policy::transfer_target(&self.node.status().followers) {
            Some(to) => match self.node.transfer_leadership(to) {
                Ok(()) => log::info!("transferring leadership to {to}"),
                Err(e) => log::warn!("leadership transfer to {to} refused: {e}"),
            },
            None => log::info!("no other voter to transfer leadership to"),
        }
        self.process()
    }

    /// Campaigns now unless recovering (see [`RaftNode::campaign_now`]).
    pub fn campaign_now(&mut self) -> Result<(), DriverError> {
        if self.recovering.is_none() {
            self.node.campaign_now()?;
        }
        self.process()
    }

    /// Hands leadership to `to` (a caught-up voter: the preferred leader of a
    /// partition); a no-op unless this node leads.
    pub fn transfer_leadership_to(&mut self, to: NodeId) -> Result<(), DriverError> {
        if self.node.role() != Role::Leader {
            return Ok(());
        }
        match self.node.transfer_leadership(to) {
            Ok(()) => log::info!("transferring leadership to preferred leader {to}"),
            Err(e) => log::debug!("leadership transfer to {to} refused: {e}"),
        }
        self.process()
    }

    /// Retention: drop the log before `point` (the first offset retention keeps), but
    /// never past what is committed and durable here.
    pub fn compact_to(&mut self, point: Index) -> Result<(), DriverError> {
        let through = Index(point.0.saturating_sub(1))
            .min(self.commit)
            .min(self.node.persisted_index());
        if through <= self.node.log_start().index {
            return Ok(());
        }
        // Before any batch goes: its producer must stay refused once unknown (and
        // its epoch known, so a re-initialised one may start again).
        let floor = self.dedup.floor();
        if floor != self.node.storage().producer_floor() {
            self.node
                .storage_mut()
                .persist_producer_floor(&floor)
                .map_err(write_error::<S>)?;
        }
        match self.node.compact(through) {
            Ok(start) => {
                let freed = self
                    .node
                    .storage_mut()
                    .compact_start(start.clone())
                    .map_err(write_error::<S>)?;
                log::info!(
                    "retention: log now starts at {}; {freed} bytes freed",
                    start.index + 1
                );
                self.effects.push(Effect::FirstIndex(start.index + 1));
            }
            Err(e) => log::debug!("retention: compaction through {through} refused: {e}"),
        }
        Ok(())
    }

    /// Shutdown: answers every pending produce and persists the latest commit.
    pub fn finish(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.complete(
                p.reply,
                Err(ProduceError::Indeterminate(
                    "the server is shutting down before the record committed; it may or may \
                     not be written: retry on another node"
                        .into(),
                )),
            );
        }
        if self.hs_after_sync.is_none()
            && self.durable_hs(self.latest_hs) != self.node.storage().persisted_hard_state()
        {
            if let Err(e) = self.write_hard_state(self.latest_hs) {
                log::warn!("could not persist the final hard state: {e}");
            }
        }
    }

    /// After [`DriverError::NoSpace`]: hands back the reply handles of produces not
    /// answered yet and the effects not taken yet, in order. The driver must not be
    /// used afterwards: the caller builds a new one from the durable state.
    pub fn abandon(&mut self) -> (Vec<R>, Vec<Effect<R>>) {
        let pending = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|p| p.reply)
            .collect();
        (pending, std::mem::take(&mut self.effects))
    }

    // ------------------------------------------------------------ read-only view

    /// The Raft node (read-only: status, role, indexes).
    pub fn raft(&self) -> &RaftNode<S> {
        &self.node
    }

    /// The storage, for the runner's own bookkeeping writes at shutdown (start-up
    /// checkpoints). Never for log entries or hard state: those are the driver's.
    pub fn storage_mut(&mut self) -> &mut S {
        self.node.storage_mut()
    }

    /// Highest index committed and durable here (readers see up to it).
    pub fn commit(&self) -> Index {
        self.commit
    }

    /// True while the "must not vote" guard holds.
    pub fn recovering(&self) -> bool {
        self.recovering.is_some()
    }

    /// Produces proposed and not answered yet.
    pub fn pending_produces(&self) -> usize {
        self.pending.len()
    }

    // ------------------------------------------------------------ internals

    fn complete(&mut self, reply: R, result: Result<Produced, ProduceError>) {
        self.effects.push(Effect::Complete { reply, result });
    }

    fn skip_fsync(&self) -> bool {
        let voters = &self.node.membership().voters;
        self.cfg.skip_fsync_when_alone && voters.len() == 1 && voters.contains(&self.node.id())
    }

    /// Drains Readies: appends, forwards messages, asks for fsyncs, raises the
    /// high-water mark and answers produces, until Raft has nothing more (bounded).
    fn process(&mut self) -> Result<(), DriverError> {
        for _ in 0..MAX_ROUNDS {
            if !self.node.has_ready() {
                break;
            }
            self.process_round()?;
        }
        self.check_recovered();
        Ok(())
    }

    fn process_round(&mut self) -> Result<(), DriverError> {
        let mut round = Round::default();
        for _ in 0..MAX_READIES_PER_ROUND {
            if !self.node.has_ready() {
                break;
            }
            let rd = self.node.ready();
            if let Some(start) = rd.snapshot {
                log::info!(
                    "installing log start {} (term {}) from the leader",
                    start.index,
                    start.term
                );
                let first = start.index + 1;
                self.node
                    .storage_mut()
                    .install_start(start)
                    .map_err(write_error::<S>)?;
                self.dedup.install_start(first);
                self.effects.push(Effect::FirstIndex(first));
                round.snapshot = true;
            }
            if !rd.entries.is_empty() {
                self.node
                    .storage_mut()
                    .append_entries(&rd.entries)
                    .map_err(write_error::<S>)?;
                self.dedup.appended(&rd.entries);
                round.appended = true;
            }
            round.soft = rd.soft_state.or(round.soft);
            round.hard = rd.hard_state.or(round.hard);
            for m in rd.messages {
                self.effects.push(Effect::Send(m));
            }
            if let Some((_, hi)) = rd.committed {
                round.committed = Some(hi);
            }
            round.last_seq = rd.seq;
        }
        self.persist_round(&round)?;
        if let Some(s) = round.soft {
            self.effects.push(Effect::Role(s));
        }
        if let Some(hi) = round.committed {
            if hi > self.commit {
                self.commit = hi;
                self.effects.push(Effect::HighWater(hi + 1));
            }
            self.answer_committed();
        }
        Ok(())
    }

    /// The durability half of a round (module docs: durability rules).
    fn persist_round(&mut self, round: &Round) -> Result<(), DriverError> {
        self.issued = round.last_seq;
        let persisted = self.node.storage().persisted_hard_state();
        let mut hs_change = round.snapshot;
        if let Some(hs) = round.hard {
            self.latest_hs = hs;
            hs_change |= hs.term != persisted.term || hs.vote != persisted.vote;
        }
        if hs_change {
            // Term/vote changes and log starts are rare: persist the hard state once
            // everything up to this Ready is durable, then acknowledge. If an earlier
            // change still waits for its Sync, keep ITS seq (with the newer state):
            // acknowledging that earlier Ready must write a term at least as new.
            let seq = self.hs_after_sync.map_or(round.last_seq, |(s, _)| s);
            self.hs_after_sync = Some((seq, self.latest_hs));
            self.request_sync(round.last_seq);
        } else if round.appended && self.skip_fsync() {
            self.sync_done = round.last_seq;
            self.node.advance(ReadyAck {
                seq: round.last_seq,
            })?;
        } else if round.appended {
            self.request_sync(round.last_seq);
        } else if self.sync_requested <= self.sync_done && self.hs_after_sync.is_none() {
            self.node.advance(ReadyAck {
                seq: round.last_seq,
            })?;
        }
        // Otherwise a Sync is outstanding: `synced` acknowledges this Ready with it.
        Ok(())
    }

    fn request_sync(&mut self, seq: u64) {
        self.sync_requested = self.sync_requested.max(seq);
        self.effects.push(Effect::Sync { seq });
    }

    fn check_recovered(&mut self) {
        if let Some(r) = self.recovering {
            if !r.need_leader
                && self.node.persisted_index() >= r.min_commit
                && self.commit >= r.min_commit
            {
                log::info!(
                    "recovered: log durable through {}; voting again",
                    r.min_commit
                );
                self.recovering = None;
            }
        }
    }

    /// Answers the produces whose entries are committed, in order.
    fn answer_committed(&mut self) {
        let is_leader = self.node.role() == Role::Leader;
        while self.pending.front().is_some_and(|p| p.last <= self.commit) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let ours = (is_leader && self.node.term() == p.term)
                || self.node.term_at(p.last) == Ok(p.term);
            let result = if ours {
                Ok(Produced {
                    first: p.first,
                    last: p.last,
                    duplicate: p.duplicate,
                })
            } else if self.node.term_at(p.first).map_or(true, |t| t == p.term) {
                // Unreadable (below a log start installed from the leader) proves
                // nothing: the records may be committed there.
                Err(ProduceError::Indeterminate(
                    "leadership changed while the records were replicated; some may be \
                     written: retry (duplicates possible) or check by consuming"
                        .into(),
                ))
            } else {
                Err(ProduceError::Unavailable(
                    "leadership changed before the records committed; they were not \
                     written: retry"
                        .into(),
                ))
            };
            self.complete(p.reply, result);
        }
    }

    fn expire_pending(&mut self) {
        let now = self.now_ms;
        if !self.pending.iter().any(|p| p.deadline_ms <= now) {
            return;
        }
        let (expired, keep): (VecDeque<Pending<R>>, VecDeque<Pending<R>>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.deadline_ms <= now);
        self.pending = keep;
        for p in expired {
            self.complete(
                p.reply,
                Err(ProduceError::Indeterminate(
                    "not committed in time (no quorum?); the record may or may not be \
                     written: retry (duplicates possible) or check by consuming"
                        .into(),
                )),
            );
        }
    }

    /// The hard state as it may be persisted: its commit clamped to what is
    /// committed AND durable here, so a persisted commit never points past the log.
    fn durable_hs(&self, hs: HardState) -> HardState {
        HardState {
            commit: hs.commit.min(self.commit),
            ..hs
        }
    }

    fn write_hard_state(&mut self, hs: HardState) -> Result<(), DriverError> {
        let hs = self.durable_hs(hs);
        self.node
            .storage_mut()
            .persist_hard_state(hs)
            .map_err(write_error::<S>)?;
        self.last_hs_write_ms = self.now_ms;
        Ok(())
    }

    /// The membership change the policy wants next (leader).
    fn next_membership_change(&self) -> Option<crate::raft::ConfChange> {
        let status = self.node.status();
        policy::next_change(
            self.node.id(),
            &status.membership,
            &status.followers,
            &self.members,
            self.commit,
        )
    }

    /// Leader only: one membership change per tick, driven by gossip (DESIGN 5).
    fn reconcile_membership(&mut self) {
        let Some(change) = self.next_membership_change() else {
            return;
        };
        match self.node.propose_conf_change(change) {
            Ok(index) => log::info!("membership: proposed {change:?} at {index}"),
            Err(ProposeError::ConfChangePending) | Err(ProposeError::Transferring) => {}
            Err(e) => log::warn!("membership: {change:?} refused: {e}"),
        }
    }
}

/// What one round of Readies asked for.
#[derive(Default)]
struct Round {
    last_seq: u64,
    appended: bool,
    snapshot: bool,
    hard: Option<HardState>,
    soft: Option<SoftState>,
    committed: Option<Index>,
}

/// A proposal refused by Raft, as the produce's answer.
fn refusal(e: &ProposeError) -> ProduceError {
    match e {
        ProposeError::NotLeader { leader } => ProduceError::NotLeader { leader: *leader },
        ProposeError::Transferring => {
            ProduceError::Unavailable("leadership is being transferred; retry in a moment".into())
        }
        ProposeError::TooManyPending => ProduceError::Unavailable(
            "too many uncommitted records (followers are behind); retry with backoff".into(),
        ),
        other => ProduceError::Unavailable(format!("propose failed: {other}")),
    }
}

#[path = "dedup_propose.rs"]
mod dedup_propose;
