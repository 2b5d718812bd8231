//! The raft thread: the runner of the node's [`replica::Driver`](crate::replica::Driver).
//! It owns the driver (and through it the only writer of the log), feeds it inputs
//! and executes its effects; every decision (batching, fsync bookkeeping, answers,
//! the recovery guard, membership and retention policy, the high-water mark) is the
//! driver's, so the simulator tests exactly what runs here.
//!
//! # One iteration
//! 1. Wait on the [`Inbox`] until the next tick is due or input arrives; take every
//!    peer message and control request, and the queued produces if the driver wants
//!    a new batch (bounded by `max_batch_records` / `max_batch_bytes`).
//! 2. Feed them to the driver: controls, peer messages, a tick if due, then all
//!    produces taken as ONE proposal.
//! 3. Execute the effects: sends go to the peer writers at once (so the leader's
//!    AppendEntries leave before its own fsync: leader and follower fsyncs overlap,
//!    DESIGN 3); the `Sync` requests of a round become ONE fsync on this thread (a
//!    lone producer waits for nothing else; produces arriving meanwhile queue in the
//!    inbox and form the next, bigger batch); completions answer the clients; the
//!    high-water mark is published to the readers.
//! 4. Every tick: publish the status view and metrics, expire produces that waited
//!    in the inbox past their deadline, apply retention when due.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::answer::{self, Refusal};
use super::inbox::{Control, Inbox, ProduceJob};
use super::peers::Peers;
use super::raft_storage::{LogStorage, WriteError};
use super::reads::Reads;
use super::{lock, Shared, View};
use crate::net::Responder;
use crate::raft::{Config as RaftConfig, Index, RaftNode, Role, SoftState};
use crate::replica::{Driver, DriverConfig, DriverError, Effect, MemberView, ProduceRequest};

/// Most effect rounds per iteration (each round executes what the previous released).
const MAX_EFFECT_ROUNDS: usize = 32;

/// Where a produce's answer goes and in which shape.
pub(crate) struct ProduceReply {
    pub reply: Responder,
    /// Answer as Produce (true) or ProduceBatch (false).
    pub single: bool,
}

/// Why the loop stopped with an error.
#[derive(Debug)]
pub(crate) enum Fatal {
    Driver(DriverError),
    Write(WriteError),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Driver(e) => e.fmt(f),
            Fatal::Write(e) => e.fmt(f),
        }
    }
}

impl From<DriverError> for Fatal {
    fn from(e: DriverError) -> Fatal {
        Fatal::Driver(e)
    }
}

impl From<WriteError> for Fatal {
    fn from(e: WriteError) -> Fatal {
        Fatal::Write(e)
    }
}

pub(crate) struct RaftLoop {
    pub driver: Driver<LogStorage, ProduceReply>,
    pub shared: Arc<Shared>,
    pub inbox: Arc<Inbox>,
    pub reads: Arc<Reads>,
    pub peers: Arc<Peers>,
    /// Origin of the driver's millisecond clock.
    clock: Instant,
    /// What rebuilds the driver after a full disk: Raft settings, driver settings
    /// and a seed source.
    rebuild: (RaftConfig, DriverConfig, u64),
    /// Set while the disk is full: when the last write was tried.
    disk_full: Option<Instant>,
    /// The durable recovering marker exists (removed once the guard lifts).
    recovering_marked: bool,
    last_retention: Instant,
    last_progress_log: Instant,
}

impl RaftLoop {
    pub(crate) fn new(
        driver: Driver<LogStorage, ProduceReply>,
        rebuild: (RaftConfig, DriverConfig, u64),
        shared: Arc<Shared>,
        inbox: Arc<Inbox>,
        reads: Arc<Reads>,
        peers: Arc<Peers>,
    ) -> RaftLoop {
        let recovering_marked = driver.recovering();
        RaftLoop {
            driver,
            shared,
            inbox,
            reads,
            peers,
            clock: Instant::now(),
            recovering_marked,
            rebuild,
            disk_full: None,
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

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run_inner(&mut self) -> Result<(), Fatal> {
        let tick = Duration::from_millis(self.shared.cfg.raft_tick_ms.max(1));
        let mut next_tick = Instant::now() + tick;
        let started = self.start_driver();
        self.on_result(started)?;
        self.publish(true);
        loop {
            let stop = self.iteration(&mut next_tick, tick);
            if self.on_result(stop)? == Some(true) {
                return Ok(());
            }
            self.clear_recovering_marker();
        }
    }

    /// Once the recovery guard lifts, its durable marker goes (see `meta`).
    fn clear_recovering_marker(&mut self) {
        if !self.recovering_marked || self.driver.recovering() {
            return;
        }
        match super::meta::remove_recovering_marker(&self.shared.cfg.data_dir) {
            Ok(()) => self.recovering_marked = false,
            Err(e) => log::warn!("cannot remove the recovering marker (retrying): {e}"),
        }
    }

    fn start_driver(&mut self) -> Result<(), Fatal> {
        self.driver.start(self.now_ms())?;
        self.execute()
    }

    /// A full disk is not fail-stop: the node steps back to its durable state.
    fn on_result<T>(&mut self, r: Result<T, Fatal>) -> Result<Option<T>, Fatal> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Fatal::Driver(DriverError::NoSpace(why))) => {
                self.enter_disk_full(&why)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One wait for input and its processing; true when asked to stop.
    fn iteration(&mut self, next_tick: &mut Instant, tick: Duration) -> Result<bool, Fatal> {
        let now = Instant::now();
        let taken = self.inbox.take(
            next_tick.saturating_duration_since(now),
            self.disk_full.is_some() || self.driver.wants_produces(),
            self.shared.cfg.max_batch_records,
            self.shared.cfg.max_batch_bytes,
        );
        let mut stop = false;
        for c in taken.control {
            stop |= self.control(c)?;
        }
        if self.disk_full.is_some() && !self.try_leave_disk_full(!taken.produce.is_empty())? {
            for job in taken.produce {
                answer::refuse(job.reply, self.storage_full());
            }
            self.publish(true);
            return Ok(stop);
        }
        for m in taken.peer {
            self.driver.step(m)?;
        }
        let now = Instant::now();
        let ticked = now >= *next_tick;
        if ticked {
            self.tick()?;
            *next_tick += tick;
            if *next_tick < now {
                *next_tick = now + tick;
            }
        }
        if !taken.produce.is_empty() {
            let reqs = taken.produce.into_iter().map(|j| self.request(j)).collect();
            self.driver.propose(reqs)?;
        }
        self.execute()?;
        self.publish(ticked);
        Ok(stop)
    }

    // ---------------------------------------------------------------- disk full

    /// ENOSPC: answer what waits, make what was appended durable, and rebuild the
    /// driver from the durable state (as a restart would). Writes are tried again
    /// with the next produce, or after a second (a follower needs no produce).
    fn enter_disk_full(&mut self, why: &str) -> Result<(), Fatal> {
        if self.disk_full.is_none() {
            log::warn!(
                "disk full ({why}): produces get STORAGE_FULL until space frees; writes \
                 are retried with each produce and every second"
            );
        }
        self.disk_full = Some(Instant::now());
        let (pending, effects) = self.driver.abandon();
        self.execute_effects(effects)?;
        for reply in pending {
            answer::refuse(reply.reply, self.storage_full());
        }
        // Whatever was appended is made durable, then read back as after a restart.
        let log = Arc::clone(self.driver.raft().storage().log());
        log.sync().map_err(WriteError::from)?;
        let start = self.driver.raft().log_start().clone();
        let mut storage = LogStorage::open(&self.shared.cfg.data_dir, log, start)?;
        storage.report_damage_to(Arc::clone(&self.shared.damage));
        let (raft_cfg, driver_cfg, seed) = self.rebuild.clone();
        self.rebuild.2 = seed.wrapping_add(1);
        let node = RaftNode::new(raft_cfg, storage, seed).map_err(DriverError::from)?;
        self.driver = Driver::new(node, driver_cfg, None);
        self.shared.disk_full.store(true, Ordering::Release);
        Ok(())
    }

    /// Retries the writes (a one-voter node elects itself again, which writes) when
    /// a produce waits or a second passed. True once the disk takes writes again.
    fn try_leave_disk_full(&mut self, produce_waits: bool) -> Result<bool, Fatal> {
        let due = self
            .disk_full
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
        if !produce_waits && !due {
            return Ok(false);
        }
        self.disk_full = Some(Instant::now());
        let started = self.start_driver();
        if self.on_result(started)?.is_none() {
            return Ok(false);
        }
        log::info!("disk takes writes again: serving produces");
        self.disk_full = None;
        self.shared.disk_full.store(false, Ordering::Release);
        Ok(true)
    }

    fn storage_full(&self) -> Refusal {
        Refusal::StorageFull {
            detail: "no space left on the log's device".into(),
        }
    }

    /// Feeds one control request; true for Stop.
    fn control(&mut self, c: Control) -> Result<bool, Fatal> {
        match c {
            Control::Stop => return Ok(true),
            Control::TransferLeadership => self.driver.transfer_leadership()?,
            Control::PeerConnected(id) => self.driver.peer_connected(id)?,
        }
        Ok(false)
    }

    fn request(&self, job: ProduceJob) -> ProduceRequest<ProduceReply> {
        let deadline = job.deadline.saturating_duration_since(self.clock);
        ProduceRequest {
            values: job.values,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            reply: ProduceReply {
                reply: job.reply,
                single: job.single,
            },
        }
    }

    fn tick(&mut self) -> Result<(), Fatal> {
        if self.driver.raft().role() == Role::Leader {
            self.driver.set_members(self.member_views());
        }
        self.driver.tick(self.now_ms())?;
        self.expire_queued();
        let interval = Duration::from_millis(self.shared.cfg.retention_interval_ms.max(10));
        if self.last_retention.elapsed() >= interval {
            self.last_retention = Instant::now();
            self.apply_retention()?;
        }
        if self.driver.raft().role() == Role::Leader
            && self.last_progress_log.elapsed() >= Duration::from_secs(5)
        {
            self.last_progress_log = Instant::now();
            for f in self.driver.raft().status().followers {
                log::debug!("follower {}: {f:?}", f.id);
            }
        }
        Ok(())
    }

    fn member_views(&self) -> BTreeMap<crate::raft::NodeId, MemberView> {
        lock(&self.shared.members)
            .iter()
            .map(|(id, g)| {
                let view = MemberView {
                    live: g.live,
                    decommission: g.decommission,
                    has_rpc_addr: g.rpc_addr.is_some(),
                };
                (*id, view)
            })
            .collect()
    }

    /// Produces that waited in the inbox past their deadline were never proposed.
    fn expire_queued(&mut self) {
        let timeout_ms = self.shared.cfg.request_timeout_ms;
        for job in self.inbox.take_expired(Instant::now()) {
            answer::refuse(job.reply, Refusal::NotProposed { timeout_ms });
        }
    }

    /// Retention reads segment times (I/O, here); the driver decides how far to cut.
    fn apply_retention(&mut self) -> Result<(), Fatal> {
        let log = Arc::clone(self.driver.raft().storage().log());
        let cfg = log.config();
        if cfg.retention_bytes.is_none() && cfg.retention_age.is_none() {
            return Ok(());
        }
        match log.retention_point(SystemTime::now()) {
            Ok(point) => Ok(self.driver.compact_to(Index(point.0))?),
            Err(e) => {
                log::error!("retention: {e}");
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------- effects

    /// Executes the driver's effects until it has none (bounded).
    fn execute(&mut self) -> Result<(), Fatal> {
        for _ in 0..MAX_EFFECT_ROUNDS {
            let effects = self.driver.take_effects();
            if effects.is_empty() {
                return Ok(());
            }
            // One fsync for every Sync of the round, after its messages left.
            if let Some(seq) = self.execute_effects(effects)? {
                self.sync(seq)?;
            }
        }
        Ok(())
    }

    /// Executes one round of effects but the fsync; returns the Sync seq asked for.
    fn execute_effects(
        &mut self,
        effects: Vec<Effect<ProduceReply>>,
    ) -> Result<Option<u64>, Fatal> {
        let mut sync_seq = None;
        for e in effects {
            match e {
                Effect::Send(m) => self.peers.send(m),
                Effect::Sync { seq } => sync_seq = Some(seq),
                Effect::Complete { reply, result } => {
                    answer::produce(reply, result, |l| self.shared.not_leader(l))
                }
                Effect::HighWater(hw) => self.raise_high_water(hw),
                Effect::FirstIndex(first) => {
                    self.shared.raft_first.fetch_max(first.0, Ordering::AcqRel);
                }
                Effect::Role(s) => self.on_role(s),
            }
        }
        Ok(sync_seq)
    }

    /// Readers may see offsets below `hw` now. Status shows it before any produce
    /// it covers is answered (a client that saw its offset sees it committed).
    fn raise_high_water(&mut self, hw: Index) {
        self.shared.hw.fetch_max(hw.0, Ordering::AcqRel);
        {
            let mut v = lock(&self.shared.view);
            v.commit = v.commit.max(hw - 1);
            v.last = v.last.max(hw - 1);
        }
        self.reads.on_hw_raised();
    }

    /// One fsync covering every Ready up to `seq`, observed in the fsync metrics.
    fn sync(&mut self, seq: u64) -> Result<(), Fatal> {
        let started = Instant::now();
        let synced = self.driver.raft().storage().sync();
        if let Some(m) = &self.shared.cfg.metrics {
            m.observe_fsync(started.elapsed());
        }
        synced?;
        self.driver.synced(seq)?;
        Ok(())
    }

    fn on_role(&mut self, s: SoftState) {
        if let Some(m) = &self.shared.cfg.metrics {
            m.observe_leader(s.leader.map(|l| l.0));
        }
        log::info!(
            "raft: {} in term {} (leader: {})",
            s.role,
            s.term,
            s.leader.map_or("none".to_string(), |l| l.to_string())
        );
    }

    // ---------------------------------------------------------------- view

    fn publish(&self, full: bool) {
        let node = self.driver.raft();
        let mut v = lock(&self.shared.view);
        v.role = node.role();
        v.term = node.term();
        v.leader = node.leader();
        v.commit = self.driver.commit();
        v.first = node.first_index();
        v.last = node.last_index();
        v.recovering = self.driver.recovering();
        if full || v.membership != *node.membership() {
            let status = node.status();
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
        let node = self.driver.raft();
        let me = self.shared.cfg.node_id;
        let membership = node.membership();
        let readiness = if self.driver.recovering() {
            Readiness::Recovering
        } else if node.leader().is_none() {
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
        let lag: Vec<(u64, u64)> = if node.role() == Role::Leader {
            node.status()
                .followers
                .iter()
                .map(|f| (f.id.0, f.lag_entries))
                .collect()
        } else {
            Vec::new()
        };
        m.publish_raft(
            &RaftGauges {
                term: node.term().0,
                commit: self.driver.commit().0,
                last: node.last_index().0,
                role: node.role(),
                readiness,
                gossip,
            },
            &lag,
        );
    }

    /// On exit: answer everything still waiting, persist the latest commit.
    fn finish(&mut self) {
        self.driver.finish();
        if let Err(e) = self.driver.storage_mut().checkpoint_for_restart() {
            log::warn!("no start-up checkpoint written at shutdown: {e}");
        }
        for e in self.driver.take_effects() {
            if let Effect::Complete { reply, result } = e {
                answer::produce(reply, result, |l| self.shared.not_leader(l));
            }
        }
        for job in self.inbox.drain_produces() {
            answer::refuse(job.reply, Refusal::ShuttingDown);
        }
        let mut v = lock(&self.shared.view);
        *v = View {
            role: Role::Follower,
            leader: None,
            ..v.clone()
        };
    }
}
