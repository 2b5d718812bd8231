//! The raft thread: the only owner of `RaftNode<LogStorage>` and the only writer of
//! the log.
//!
//! # One iteration
//! 1. Wait on the [`Inbox`] until the next tick is due or input arrives; take every
//!    peer message and control request and the queued produces (bounded batch).
//! 2. Step peer messages; tick if due (`raft_tick_ms`).
//! 3. Group commit: all produces taken are proposed as ONE `propose` (one batch of
//!    entries, one AppendEntries per follower, one fsync per node). While a batch
//!    is uncommitted ([`MAX_UNCOMMITTED_BATCHES`]), new produces wait in the inbox
//!    and form the next, bigger batch: with 16 synchronous producers that turns ~4
//!    records per fsync into ~16 (measured W2: 6.3k/s → 12k/s), and a lone producer
//!    is not delayed at all.
//! 4. Drain Readies (module `raft` contract): for each, install a snapshot, append
//!    entries (truncating first), send messages — the leader's AppendEntries go out
//!    before its own fsync, so leader and follower fsyncs overlap (DESIGN 3). Then
//!    ONE `Log::sync` for the whole batch of Readies: inline when no fsync is in
//!    progress (lowest latency for a lone producer), otherwise handed to the fsync
//!    thread (`syncer`) so this thread keeps stepping acknowledgements and appending
//!    the next batch while the previous one is being synced. When the syncer reports the
//!    batch durable (`Control::Synced`), `advance` acknowledges it; `Ready::committed`
//!    (committed AND locally durable) raises the high-water mark and answers the
//!    produces whose entries are committed. Readies that change term or vote, or
//!    install a snapshot, are made durable synchronously (fsync, then the hard-state
//!    file) before `advance`, so no message depending on them leaves first.
//! 5. Every tick: publish the status view, expire produces past their deadline
//!    (TIMEOUT), reconcile membership with gossip (leader), compact per retention.
//!
//! # Hard state persistence
//! Term and vote changes are written (atomically, fsynced) before `advance`, so no
//! message depending on them leaves first. A commit-only change is written lazily
//! (at most once per second, and at shutdown): the persisted commit is only a lower
//! bound used at start-up, and writing it on every Ready would add two fsyncs to every
//! produce.
//!
//! # A node that lost committed entries must not vote (nats-server#7567)
//! A cluster node opens its log with `Log::open`; if that reports corruption it
//! re-opens with `Log::open_and_repair`, which cuts the log before the damage. Entries
//! it cut may have been acknowledged to a leader and counted toward a commit quorum;
//! if the node then voted with its shorter log it could help elect a leader that lacks
//! committed entries. So the node starts *recovering* when its log was repaired or
//! ends below its persisted commit index, or its data dir is fresh (a wiped node
//! rejoining under its old id): it drops vote and pre-vote requests and TimeoutNow,
//! and does not tick (so it never campaigns) until it has heard an AppendEntries from a
//! leader (whose commit index covers everything this node could have acknowledged)
//! and its durable log reaches that commit index. A single-voter cluster has nobody
//! to re-fetch from: it logs the loss and continues.
//!
//! # Produces that cannot commit
//! Each produce carries a deadline (`request_timeout_ms`); a pending produce past it
//! is answered TIMEOUT (it may or may not be written). Proposals refused by the core
//! are answered at once: NOT_LEADER (with the leader's address) or UNAVAILABLE.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::inbox::{Control, Inbox, ProduceJob};
use super::peers::Peers;
use super::raft_storage::{LogStorage, WriteError};
use super::reads::Reads;
use super::syncer::Syncer;
use super::{lock, Shared, View};
use crate::raft::{
    ConfChange, HardState, Index, Message, MessageBody, ProposeError, RaftError, RaftNode,
    ReadyAck, Role, SoftState,
};
use crate::types::Offset;
use crate::wire::{ErrorCode, ResponseBody};

/// Most Readies drained before one fsync.
const MAX_READIES_PER_SYNC: usize = 64;
/// Most fsync rounds per iteration (each round handles what the previous released).
const MAX_SYNC_ROUNDS: usize = 16;
/// A learner within this many entries of the leader's last index is promoted.
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 1000;
/// Proposal batches that may be uncommitted at once before new produces wait to
/// form a bigger batch (1 measured best: W2 12.2k/s vs 9.9k/s with 2).
pub const MAX_UNCOMMITTED_BATCHES: usize = 1;
/// Lazy commit persistence period.
const COMMIT_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

struct Pending {
    first: Index,
    last: Index,
    term: crate::raft::Term,
    job: ProduceJob,
}

/// Why the loop stopped with an error.
#[derive(Debug)]
pub(crate) enum Fatal {
    Raft(RaftError),
    Write(WriteError),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Raft(e) => e.fmt(f),
            Fatal::Write(e) => e.fmt(f),
        }
    }
}

impl From<RaftError> for Fatal {
    fn from(e: RaftError) -> Fatal {
        Fatal::Raft(e)
    }
}

impl From<WriteError> for Fatal {
    fn from(e: WriteError) -> Fatal {
        Fatal::Write(e)
    }
}

/// State of the "must not vote" guard (module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recovering {
    /// The durable log must reach this commit index.
    pub min_commit: Index,
    /// Still waiting for a leader's AppendEntries.
    pub need_leader: bool,
}

pub(crate) struct RaftLoop {
    pub node: RaftNode<LogStorage>,
    pub shared: Arc<Shared>,
    pub inbox: Arc<Inbox>,
    pub reads: Arc<Reads>,
    pub peers: Arc<Peers>,
    pub recovering: Option<Recovering>,
    pub syncer: Arc<Syncer>,
    pending: VecDeque<Pending>,
    /// Last index of each proposal batch not yet committed (leader).
    uncommitted_batches: VecDeque<Index>,
    /// Highest Ready seq handed to the syncer.
    sync_requested: u64,
    /// Highest Ready seq known durable.
    sync_done: u64,
    /// Highest Ready seq issued.
    issued: u64,
    commit: Index,
    persisted_hs: HardState,
    latest_hs: HardState,
    last_hs_write: Instant,
    last_retention: Instant,
    last_progress_log: Instant,
}

impl RaftLoop {
    pub(crate) fn new(
        node: RaftNode<LogStorage>,
        shared: Arc<Shared>,
        inbox: Arc<Inbox>,
        reads: Arc<Reads>,
        peers: Arc<Peers>,
        recovering: Option<Recovering>,
        syncer: Arc<Syncer>,
    ) -> RaftLoop {
        let hs = node.storage().hard_state();
        let commit = node.log_start().index;
        RaftLoop {
            node,
            shared,
            inbox,
            reads,
            peers,
            recovering,
            syncer,
            pending: VecDeque::new(),
            uncommitted_batches: VecDeque::new(),
            sync_requested: 0,
            sync_done: 0,
            issued: 0,
            commit,
            persisted_hs: hs,
            latest_hs: hs,
            last_hs_write: Instant::now(),
            last_retention: Instant::now(),
            last_progress_log: Instant::now(),
        }
    }

    /// Runs until a Stop control request or a fatal error.
    pub(crate) fn run(mut self) -> Result<(), Fatal> {
        let result = self.run_inner();
        if let Err(e) = &result {
            log::error!("raft thread stops after a fatal error: {e}");
        }
        self.finish();
        result
    }

    fn run_inner(&mut self) -> Result<(), Fatal> {
        let tick = Duration::from_millis(self.shared.cfg.raft_tick_ms.max(1));
        let mut next_tick = Instant::now() + tick;
        // A one-voter cluster (a single node) serves from its first iteration.
        if self.recovering.is_none() && self.node.campaign_if_sole_voter()? {
            log::info!("only voter of the configuration: elected without waiting");
        }
        self.process_readies()?;
        self.publish(true);
        loop {
            let now = Instant::now();
            // Group commit across round trips: while MAX_UNCOMMITTED_BATCHES
            // proposals are uncommitted, new produces keep queueing and form one
            // bigger batch (fewer fsyncs on every node) instead of many small ones.
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
            let take_produces = self.uncommitted_batches.len() < MAX_UNCOMMITTED_BATCHES;
            let taken = self.inbox.take(
                next_tick.saturating_duration_since(now),
                take_produces,
                self.shared.cfg.max_batch_records,
                self.shared.cfg.max_batch_bytes,
            );
            let mut stop = false;
            for c in taken.control {
                match c {
                    Control::Stop => stop = true,
                    Control::TransferLeadership => self.transfer_leadership(),
                    Control::Synced(seq) => self.on_synced(seq)?,
                    Control::PeerConnected(id) => self.node.reset_follower(id)?,
                    Control::SyncFailed => {
                        return Err(Fatal::Write(WriteError::Invariant(
                            "fsync failed; the log is closed".into(),
                        )))
                    }
                }
            }
            for m in taken.peer {
                self.step(m)?;
            }
            let now = Instant::now();
            let ticked = now >= next_tick;
            if ticked {
                let recovering = self.recovering.is_some();
                if !recovering || self.node.role() == Role::Leader {
                    self.node.tick()?;
                }
                next_tick += tick;
                if next_tick < now {
                    next_tick = now + tick;
                }
            }
            if !taken.produce.is_empty() {
                self.propose(taken.produce);
            }
            self.process_readies()?;
            self.check_recovered();
            if ticked {
                self.on_tick()?;
            }
            self.publish(ticked);
            if stop {
                return Ok(());
            }
        }
    }

    fn step(&mut self, m: Message) -> Result<(), Fatal> {
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
        Ok(self.node.step(m)?)
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

    // ---------------------------------------------------------------- produce

    fn propose(&mut self, jobs: Vec<ProduceJob>) {
        let mut jobs = jobs;
        let total: usize = jobs.iter().map(|j| j.values.len()).sum();
        let mut values = Vec::with_capacity(total);
        let mut counts = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            counts.push(job.values.len() as u64);
            values.append(&mut job.values);
        }
        match self.node.propose(values) {
            Ok(p) => {
                self.uncommitted_batches.push_back(p.last);
                let mut at = p.first;
                for (job, n) in jobs.into_iter().zip(counts) {
                    self.pending.push_back(Pending {
                        first: at,
                        last: at + (n - 1),
                        term: p.term,
                        job,
                    });
                    at = at + n;
                }
            }
            Err(e) => {
                let (code, msg) = match &e {
                    ProposeError::NotLeader { leader } => {
                        for job in jobs {
                            self.shared.reply_not_leader(job.reply, *leader);
                        }
                        return;
                    }
                    ProposeError::Transferring => (
                        ErrorCode::Unavailable,
                        "leadership is being transferred; retry in a moment".to_string(),
                    ),
                    ProposeError::TooManyPending => (
                        ErrorCode::Unavailable,
                        "too many uncommitted records (followers are behind); retry with backoff"
                            .to_string(),
                    ),
                    other => {
                        log::error!("propose failed: {other}");
                        (ErrorCode::Internal, format!("propose failed: {other}"))
                    }
                };
                for job in jobs {
                    job.reply.error(code, msg.clone());
                }
            }
        }
    }

    fn answer_committed(&mut self) {
        let is_leader = self.node.role() == Role::Leader;
        while let Some(p) = self.pending.front() {
            if p.last > self.commit {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let ours = (is_leader && self.node.term() == p.term)
                || self.node.term_at(p.last) == Ok(p.term);
            if ours {
                let first = Offset(p.first.0);
                let body = if p.job.single {
                    ResponseBody::Produce { offset: first }
                } else {
                    ResponseBody::ProduceBatch {
                        first_offset: first,
                        count: u32::try_from(p.last.0 - p.first.0 + 1).unwrap_or(u32::MAX),
                    }
                };
                p.job.reply.ok(body);
            } else if self.node.term_at(p.first) == Ok(p.term) {
                p.job.reply.error(
                    ErrorCode::Timeout,
                    "leadership changed while the records were replicated; some may be written: \
                     retry (duplicates possible) or check by consuming",
                );
            } else {
                p.job.reply.error(
                    ErrorCode::Unavailable,
                    "leadership changed before the records committed; they were not written: retry",
                );
            }
        }
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        for job in self.inbox.take_expired(now) {
            job.reply.error(
                ErrorCode::Unavailable,
                format!(
                    "not proposed within {} ms (replication is stalled); it was not written: \
                     retry with backoff",
                    self.shared.cfg.request_timeout_ms
                ),
            );
        }
        if !self.pending.iter().any(|p| p.job.deadline <= now) {
            return;
        }
        let (expired, keep): (VecDeque<Pending>, VecDeque<Pending>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.job.deadline <= now);
        self.pending = keep;
        for p in expired {
            p.job.reply.error(
                ErrorCode::Timeout,
                format!(
                    "not committed within {} ms (no quorum?); the record may or may not be \
                     written: retry (duplicates possible) or check by consuming",
                    self.shared.cfg.request_timeout_ms
                ),
            );
        }
    }

    // ---------------------------------------------------------------- readies

    fn process_readies(&mut self) -> Result<(), Fatal> {
        for _ in 0..MAX_SYNC_ROUNDS {
            if !self.node.has_ready() {
                break;
            }
            let mut last_seq = 0;
            let mut need_sync = false;
            let mut hard_state = None;
            let mut committed = None;
            let mut soft = None;
            let mut snapshot_installed = false;
            for _ in 0..MAX_READIES_PER_SYNC {
                if !self.node.has_ready() {
                    break;
                }
                let rd = self.node.ready();
                if rd.soft_state.is_some() {
                    soft = rd.soft_state;
                }
                if let Some(start) = rd.snapshot {
                    log::info!(
                        "installing log start {} (term {}) from the leader",
                        start.index,
                        start.term
                    );
                    let first = start.index.0 + 1;
                    self.node.storage_mut().install(start)?;
                    self.shared.raft_first.store(first, Ordering::Release);
                    snapshot_installed = true;
                }
                if !rd.entries.is_empty() {
                    self.node.storage_mut().append(&rd.entries)?;
                    need_sync = true;
                }
                if rd.hard_state.is_some() {
                    hard_state = rd.hard_state;
                }
                for m in rd.messages {
                    self.peers.send(m);
                }
                if let Some((_, hi)) = rd.committed {
                    committed = Some(hi);
                }
                last_seq = rd.seq;
            }
            self.issued = last_seq;
            let mut sync_now = snapshot_installed;
            if let Some(hs) = hard_state {
                self.latest_hs = hs;
                sync_now |= hs.term != self.persisted_hs.term || hs.vote != self.persisted_hs.vote;
            }
            if sync_now {
                // Term/vote changes and snapshots are rare: make everything durable
                // here (covering batches the syncer has not finished), then ack all.
                self.timed_sync()?;
                if let Some(hs) = hard_state {
                    if hs.term != self.persisted_hs.term || hs.vote != self.persisted_hs.vote {
                        self.write_hard_state(hs)?;
                    }
                }
                self.sync_done = self.sync_done.max(last_seq);
                self.node.advance(ReadyAck { seq: last_seq })?;
            } else if need_sync && self.sync_requested <= self.sync_done {
                // No fsync in progress: sync inline (two thread hand-offs fewer, which
                // is what a lone synchronous producer waits for).
                self.timed_sync()?;
                self.sync_done = last_seq;
                self.node.advance(ReadyAck { seq: last_seq })?;
            } else if need_sync {
                // An fsync is running: queue this batch behind it and keep going.
                self.sync_requested = last_seq;
                self.syncer.request(last_seq);
            } else if self.sync_requested <= self.sync_done {
                self.node.advance(ReadyAck { seq: last_seq })?;
            }
            // Otherwise an fsync is outstanding: `on_synced` acknowledges this Ready
            // together with the batch it covers.
            if let Some(s) = soft {
                self.on_soft_state(s);
            }
            if let Some(hi) = committed {
                if hi > self.commit {
                    self.commit = hi;
                    self.shared.hw.fetch_max(hi.0 + 1, Ordering::AcqRel);
                    self.reads.on_hw_raised();
                }
                self.answer_committed();
            }
        }
        Ok(())
    }

    /// The syncer made every Ready up to `seq` durable.
    fn on_synced(&mut self, seq: u64) -> Result<(), Fatal> {
        self.sync_done = self.sync_done.max(seq);
        // Readies issued after the last fsync request persist nothing: ack them too.
        let ack = if self.sync_requested <= seq {
            self.issued
        } else {
            seq
        };
        self.node.advance(ReadyAck { seq: ack })?;
        Ok(())
    }

    /// The hard state as it may be persisted: its commit clamped to what is
    /// committed AND durable here, so a persisted commit never points past the log.
    fn durable_hs(&self, hs: HardState) -> HardState {
        HardState {
            commit: hs.commit.min(self.commit),
            ..hs
        }
    }

    fn write_hard_state(&mut self, hs: HardState) -> Result<(), Fatal> {
        let hs = self.durable_hs(hs);
        self.node.storage_mut().set_hard_state(hs)?;
        self.persisted_hs = hs;
        self.last_hs_write = Instant::now();
        Ok(())
    }

    /// True when produces are acknowledged from the page cache (`--fsync never`),
    /// which is honoured only while this node is the only voter: with peers, an
    /// acknowledgement must mean "on disk on a majority".
    fn skip_fsync(&self) -> bool {
        let voters = &self.node.membership().voters;
        self.shared.cfg.fsync == super::FsyncPolicy::Never
            && voters.len() == 1
            && voters.contains(&self.node.id())
    }

    /// The inline fsync, observed in the fsync metrics.
    fn timed_sync(&mut self) -> Result<(), Fatal> {
        if self.skip_fsync() {
            return Ok(());
        }
        let started = Instant::now();
        let synced = self.node.storage().sync();
        if let Some(m) = &self.shared.cfg.metrics {
            m.observe_fsync(started.elapsed());
        }
        synced?;
        Ok(())
    }

    fn on_soft_state(&mut self, s: SoftState) {
        if let Some(m) = &self.shared.cfg.metrics {
            m.observe_leader(s.leader.map(|l| l.0));
        }
        log::info!(
            "raft: {} in term {} (leader: {})",
            s.role,
            s.term,
            s.leader.map_or("none".to_string(), |l| l.to_string())
        );
        if s.role != Role::Leader {
            // Produces still pending keep waiting: a new leader may commit them, or
            // the deadline answers them.
        }
    }

    // ---------------------------------------------------------------- per tick

    fn on_tick(&mut self) -> Result<(), Fatal> {
        self.expire_pending();
        if self.latest_hs != self.persisted_hs
            && self.last_hs_write.elapsed() >= COMMIT_PERSIST_INTERVAL
        {
            let hs = self.latest_hs;
            self.write_hard_state(hs)?;
        }
        if self.node.role() == Role::Leader {
            self.reconcile_membership();
            if self.last_progress_log.elapsed() >= Duration::from_secs(5) {
                self.last_progress_log = Instant::now();
                for f in self.node.status().followers {
                    log::debug!(
                        "follower {}: match {} next {} {:?} lag {} inflight {} active {}",
                        f.id,
                        f.matched,
                        f.next,
                        f.state,
                        f.lag_entries,
                        f.inflight_msgs,
                        f.recent_active
                    );
                }
            }
        }
        let interval = Duration::from_millis(self.shared.cfg.retention_interval_ms.max(10));
        if self.last_retention.elapsed() >= interval {
            self.last_retention = Instant::now();
            self.apply_retention()?;
        }
        Ok(())
    }

    fn apply_retention(&mut self) -> Result<(), Fatal> {
        let log = Arc::clone(self.node.storage().log());
        let cfg = log.config();
        if cfg.retention_bytes.is_none() && cfg.retention_age.is_none() {
            return Ok(());
        }
        let point = match log.retention_point(SystemTime::now()) {
            Ok(p) => p,
            Err(e) => {
                log::error!("retention: {e}");
                return Ok(());
            }
        };
        let through = Index(point.0.saturating_sub(1))
            .min(self.commit)
            .min(self.node.persisted_index());
        if through <= self.node.log_start().index {
            return Ok(());
        }
        match self.node.compact(through) {
            Ok(start) => {
                let first = start.index.0 + 1;
                let freed = self.node.storage_mut().compact(start)?;
                self.shared.raft_first.store(first, Ordering::Release);
                log::info!("retention: log now starts at {first}; {freed} bytes freed");
            }
            Err(e) => log::debug!("retention: compaction through {through} refused: {e}"),
        }
        Ok(())
    }

    /// Leader only: one membership change per tick, driven by gossip (DESIGN 5).
    fn reconcile_membership(&mut self) {
        let me = self.node.id();
        let m = self.node.membership().clone();
        let members = lock(&self.shared.members).clone();
        let change = members
            .iter()
            .find(|(id, g)| g.decommission && **id != me && m.contains(**id))
            .map(|(id, _)| ConfChange::Remove(*id))
            .or_else(|| {
                self.node
                    .status()
                    .followers
                    .iter()
                    .find(|f| {
                        !f.voter
                            && m.learners.contains(&f.id)
                            && f.recent_active
                            && f.lag_entries <= PROMOTE_MAX_LAG_ENTRIES
                    })
                    .map(|f| ConfChange::AddVoter(f.id))
            })
            .or_else(|| {
                members
                    .iter()
                    .find(|(id, g)| {
                        g.live
                            && !g.decommission
                            && g.rpc_addr.is_some()
                            && **id != me
                            && !m.contains(**id)
                    })
                    .map(|(id, _)| ConfChange::AddLearner(*id))
            });
        let Some(change) = change else {
            return;
        };
        match self.node.propose_conf_change(change) {
            Ok(index) => log::info!("membership: proposed {change:?} at {index}"),
            Err(ProposeError::ConfChangePending) | Err(ProposeError::Transferring) => {}
            Err(e) => log::warn!("membership: {change:?} refused: {e}"),
        }
    }

    fn transfer_leadership(&mut self) {
        if self.node.role() != Role::Leader {
            return;
        }
        let best = self
            .node
            .status()
            .followers
            .iter()
            .filter(|f| f.voter)
            .max_by_key(|f| f.matched)
            .map(|f| f.id);
        match best {
            Some(to) => match self.node.transfer_leadership(to) {
                Ok(()) => log::info!("transferring leadership to {to}"),
                Err(e) => log::warn!("leadership transfer to {to} refused: {e}"),
            },
            None => log::info!("no other voter to transfer leadership to"),
        }
    }

    fn publish(&self, full: bool) {
        let mut v = lock(&self.shared.view);
        v.role = self.node.role();
        v.term = self.node.term();
        v.leader = self.node.leader();
        v.commit = self.commit;
        v.first = self.node.first_index();
        v.last = self.node.last_index();
        v.recovering = self.recovering.is_some();
        if full || v.membership != *self.node.membership() {
            let status = self.node.status();
            v.membership = status.membership;
            v.followers = status.followers;
        }
        drop(v);
        // Per tick (`full`), not per iteration: the leader's lag needs `status()`.
        if let (true, Some(m)) = (full, &self.shared.cfg.metrics) {
            self.publish_metrics(m);
        }
    }

    /// Raft gauges, readiness and gossip member counts for the metrics (every tick;
    /// only the leader asks for the follower lag).
    fn publish_metrics(&self, m: &crate::metrics::Metrics) {
        use crate::metrics::{RaftGauges, Readiness};
        let me = self.shared.cfg.node_id;
        let membership = self.node.membership();
        let readiness = if self.recovering.is_some() {
            Readiness::Recovering
        } else if self.node.leader().is_none() {
            Readiness::NoLeader
        } else if membership.voters.contains(&me) {
            Readiness::Ready
        } else if membership.learners.contains(&me) {
            Readiness::Learner
        } else {
            Readiness::NotMember
        };
        let mut gossip = [0u64; 3];
        for member in lock(&self.shared.members).values() {
            let slot = if member.decommission {
                2
            } else if member.live {
                0
            } else {
                1
            };
            gossip[slot] += 1;
        }
        let lag: Vec<(u64, u64)> = if self.node.role() == Role::Leader {
            self.node
                .status()
                .followers
                .iter()
                .map(|f| (f.id.0, f.lag_entries))
                .collect()
        } else {
            Vec::new()
        };
        m.publish_raft(
            &RaftGauges {
                term: self.node.term().0,
                commit: self.commit.0,
                last: self.node.last_index().0,
                role: self.node.role(),
                readiness,
                gossip,
            },
            &lag,
        );
    }

    /// On exit: answer everything still waiting, persist the latest commit.
    fn finish(&mut self) {
        for p in self.pending.drain(..) {
            p.job.reply.error(
                ErrorCode::Unavailable,
                "the server is shutting down before the record committed; it may or may not \
                 be written: retry on another node",
            );
        }
        for job in self.inbox.drain_produces() {
            job.reply.error(
                ErrorCode::Unavailable,
                "the server is shutting down; retry on another node",
            );
        }
        if self.durable_hs(self.latest_hs) != self.persisted_hs {
            let hs = self.latest_hs;
            if let Err(e) = self.write_hard_state(hs) {
                log::warn!("could not persist the final hard state: {e}");
            }
        }
        let mut v = lock(&self.shared.view);
        *v = View {
            role: Role::Follower,
            leader: None,
            ..v.clone()
        };
    }
}
