//! The raft thread: the runner of every [`replica::Driver`](crate::replica::Driver)
//! on the node, one per Raft group it hosts ([`GroupRun`]). It owns the drivers (and
//! through them the only writer of each group's log), feeds them inputs and executes
//! their effects; every decision (batching, fsync bookkeeping, answers, the recovery
//! guard, membership and retention policy, the high-water mark) is a driver's, so the
//! simulator tests exactly what runs here.
//!
//! # One iteration
//! 1. Wait on the [`Inbox`] until the next tick is due or input arrives; take every
//!    peer message and control request, and, for each group whose driver wants a new
//!    batch, its queued produces (bounded by `max_batch_records` / `max_batch_bytes`).
//! 2. Feed them to the drivers: controls, peer messages (routed by group id), a tick
//!    if due, then each group's produces as ONE proposal.
//! 3. Execute the effects: sends go to the peer writers at once (so the leader's
//!    AppendEntries leave before its own fsync: leader and follower fsyncs overlap,
//!    DESIGN 3); the `Sync` requests of a round are collected over every group and
//!    made durable together (`round_sync`: one fsync of the node journal for
//!    several groups, a lone group's own fsync otherwise), then each driver hears
//!    `synced` (a lone producer waits for nothing else; produces arriving meanwhile
//!    queue in the inbox and form the next, bigger batch); completions answer the
//!    clients; high-water marks are published to the readers.
//! 4. Every tick: publish the status views and metrics, expire produces that waited
//!    in the inbox past their deadline, apply retention when due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::{self, Refusal};
use super::group_run::{storage_full, GroupRun};
use super::inbox::{Control, Inbox, ProduceJob, ReplyShape};
use super::metadata::Metadata;
use super::peers::Peers;
use super::raft_storage::WriteError;
use super::reads::Reads;
use super::sync_pool::SyncPool;
use super::{lock, Shared};
use crate::net::Responder;
use crate::raft::{Message, Role, SoftState};
use crate::replica::{DriverError, Effect, MemberView, ProduceError, ProduceRequest, Produced};
use crate::types::GroupId;

/// Most effect rounds per iteration (each round executes what the previous released).
const MAX_EFFECT_ROUNDS: usize = 32;
/// Where a produce's answer goes and in which shape.
pub(crate) struct ProduceReply {
    pub reply: Responder,
    /// How the answer is shaped.
    pub shape: ReplyShape,
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
    pub(super) groups: BTreeMap<GroupId, GroupRun>,
    pub(super) shared: Arc<Shared>,
    pub(super) inbox: Arc<Inbox>,
    reads: Arc<Reads>,
    peers: Arc<Peers>,
    /// The catalogue as applied from the metadata group's log.
    pub(super) metadata: Metadata,
    /// Groups that got input since their effects were last executed.
    pub(super) touched: BTreeSet<GroupId>,
    /// Groups that are not quiesced (or may not be): the only ones ticked, so a
    /// node with thousands of idle partitions does no per-tick work for them.
    active: BTreeSet<GroupId>,
    /// Groups whose membership follows the voters (their leaders apply the
    /// membership policy every tick, quiesced or not).
    follows: BTreeSet<GroupId>,
    /// Applied catalogue commands whose proposers are answered at the end of the
    /// current execution.
    admin_answers: Vec<(ProduceReply, Result<Produced, ProduceError>)>,
    /// Fsyncs logs of several groups at once.
    pub(super) sync_pool: SyncPool,
    /// Groups that executed effects since the views were last published.
    ran: BTreeSet<GroupId>,
    /// Groups proposed to that may not take a new batch yet.
    proposing: BTreeSet<GroupId>,
    /// Groups whose disk is full (the service then sends produces here whatever
    /// the role; the flag is cleared only after the views are published, so the
    /// service never sees "no full disk" with a view from before the recovery).
    full_groups: BTreeSet<GroupId>,
    /// Partition groups the catalogue placed here, not opened yet (`hosting`).
    pub(super) pending_hosts: std::collections::VecDeque<crate::catalogue::PartitionGroup>,
    /// The applied catalogue is newer than the persisted one.
    pub(super) persist_due: bool,
    /// Nodes gossip considers dead, as last reported to the groups.
    dead: BTreeSet<crate::raft::NodeId>,
    last_full_publish: Instant,
    /// Origin of the drivers' millisecond clock.
    clock: Instant,
    last_progress_log: Instant,
    last_rebalance: Instant,
}

impl RaftLoop {
    pub(crate) fn new(
        groups: Vec<GroupRun>,
        metadata: Metadata,
        shared: Arc<Shared>,
        inbox: Arc<Inbox>,
        reads: Arc<Reads>,
        peers: Arc<Peers>,
        sync_pool: SyncPool,
    ) -> RaftLoop {
        let active: BTreeSet<GroupId> = groups.iter().map(|g| g.state.id).collect();
        let follows = groups
            .iter()
            .filter(|g| g.follows_voters)
            .map(|g| g.state.id)
            .collect();
        RaftLoop {
            active,
            follows,
            groups: groups.into_iter().map(|g| (g.state.id, g)).collect(),
            metadata,
            shared,
            inbox,
            reads,
            peers,
            touched: BTreeSet::new(),
            admin_answers: Vec::new(),
            sync_pool,
            dead: BTreeSet::new(),
            ran: BTreeSet::new(),
            proposing: BTreeSet::new(),
            full_groups: BTreeSet::new(),
            pending_hosts: std::collections::VecDeque::new(),
            persist_due: false,
            // The first publish is a full one.
            last_full_publish: Instant::now()
                .checked_sub(Duration::from_secs(2))
                .unwrap_or_else(Instant::now),
            clock: Instant::now(),
            last_progress_log: Instant::now(),
            last_rebalance: Instant::now(),
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
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in ids {
            self.start_group(id)?;
        }
        self.execute()?;
        self.publish(true);
        loop {
            if self.iteration(&mut next_tick, tick)? {
                return Ok(());
            }
        }
    }

    /// Marks a group as having input: its effects run this iteration, and it is
    /// ticked until it quiesces.
    pub(super) fn touch(&mut self, id: GroupId) {
        self.touched.insert(id);
        self.active.insert(id);
    }

    /// Adds a group (hosted from now on).
    pub(super) fn add_group(&mut self, run: GroupRun) {
        let id = run.state.id;
        if run.follows_voters {
            self.follows.insert(id);
        }
        self.groups.insert(id, run);
        self.touch(id);
    }

    /// Removes a group (no longer hosted).
    pub(super) fn remove_group(&mut self, id: GroupId) -> Option<GroupRun> {
        self.touched.remove(&id);
        self.active.remove(&id);
        self.follows.remove(&id);
        self.proposing.remove(&id);
        self.full_groups.remove(&id);
        self.groups.remove(&id)
    }

    /// Starts a group's driver (a one-voter group elects itself, which writes).
    pub(super) fn start_group(&mut self, id: GroupId) -> Result<(), Fatal> {
        let now = self.now_ms();
        self.touch(id);
        self.group_call(id, |g| Ok(g.driver.start(now)?))
    }

    /// Runs `f` on a group's driver. A full disk is not fail-stop: that group steps
    /// back to its durable state and answers STORAGE_FULL until writes work again.
    pub(super) fn group_call(
        &mut self,
        id: GroupId,
        f: impl FnOnce(&mut GroupRun) -> Result<(), Fatal>,
    ) -> Result<(), Fatal> {
        let Some(g) = self.groups.get_mut(&id) else {
            return Ok(());
        };
        match f(g) {
            Err(Fatal::Driver(DriverError::NoSpace(why))) => {
                let effects = g.enter_disk_full(&why)?;
                self.full_groups.insert(id);
                self.shared.disk_full.store(true, Ordering::Release);
                self.execute_effects(id, effects);
                // Its view shows the rebuilt driver (not the leader it was).
                self.ran.insert(id);
                Ok(())
            }
            other => other,
        }
    }

    /// One wait for input and its processing; true when asked to stop.
    fn iteration(&mut self, next_tick: &mut Instant, tick: Duration) -> Result<bool, Fatal> {
        let now = Instant::now();
        let busy = self.busy_groups();
        // Groups waiting to be opened: look at the inbox without waiting.
        let wait = if self.pending_hosts.is_empty() {
            next_tick.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        let taken = self.inbox.take(
            wait,
            &busy,
            self.shared.cfg.max_batch_records,
            self.shared.cfg.max_batch_bytes,
        );
        let mut stop = false;
        for c in taken.control {
            stop |= self.control(c)?;
        }
        for (id, m) in taken.peer {
            self.step(id, m)?;
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
        for (id, jobs) in taken.produce {
            self.propose(id, jobs)?;
        }
        if !self.pending_hosts.is_empty() {
            self.host_pending();
        }
        self.execute()?;
        // Messages sent outside an execution round (a disk-full rebuild's) too.
        self.peers.flush();
        self.publish(ticked);
        // After publishing: a new metadata leader may have become ready to serve.
        super::groups::serve_waiting(&self.shared);
        Ok(stop)
    }

    /// Groups whose driver does not take a new batch now (one uncommitted batch at a
    /// time); a group with a full disk takes produces (to retry or refuse them).
    /// Only groups proposed to since they last took a batch can be busy: the scan
    /// costs nothing per idle group.
    fn busy_groups(&mut self) -> BTreeSet<GroupId> {
        let groups = &mut self.groups;
        self.proposing.retain(|id| {
            groups
                .get_mut(id)
                .is_some_and(|g| g.disk_full.is_none() && !g.driver.wants_produces())
        });
        self.proposing.clone()
    }

    fn step(&mut self, id: GroupId, m: Message) -> Result<(), Fatal> {
        if !self.groups.contains_key(&id) {
            log::debug!("dropping a Raft message for group {id}, not hosted here");
            return Ok(());
        }
        self.touch(id);
        self.group_call(id, |g| Ok(g.driver.step(m)?))
    }

    /// One proposal of a group's produces (a group with a full disk retries its
    /// writes first and refuses them while it stays full).
    fn propose(&mut self, id: GroupId, jobs: Vec<ProduceJob>) -> Result<(), Fatal> {
        let Some(g) = self.groups.get(&id) else {
            for job in jobs {
                answer::refuse(job.reply, Refusal::Busy("partition moved off this node"));
            }
            return Ok(());
        };
        if g.disk_full.is_some() && !self.retry_disk(id)? {
            for job in jobs {
                answer::refuse(job.reply, storage_full());
            }
            return Ok(());
        }
        let reqs: Vec<_> = jobs.into_iter().map(|j| self.request(j)).collect();
        self.touch(id);
        self.proposing.insert(id);
        let wall_ms = super::producers::wall_clock_ms();
        self.group_call(id, |g| {
            g.driver.set_wall_clock_ms(wall_ms);
            Ok(g.driver.propose(reqs)?)
        })
    }

    /// Tries a group's writes again after a full disk; true once it takes them.
    fn retry_disk(&mut self, id: GroupId) -> Result<bool, Fatal> {
        if let Some(g) = self.groups.get_mut(&id) {
            g.disk_full = None;
        }
        self.start_group(id)?;
        self.execute()?;
        let full = self.groups.get(&id).is_some_and(|g| g.disk_full.is_some());
        if !full {
            log::info!("group {id}: disk takes writes again: serving produces");
        }
        if !full {
            self.full_groups.remove(&id);
        }
        self.ran.insert(id);
        Ok(!full)
    }

    /// Feeds one control request; true for Stop.
    fn control(&mut self, c: Control) -> Result<bool, Fatal> {
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        match c {
            Control::Stop => return Ok(true),
            Control::TransferLeadership => {
                for id in ids {
                    self.touch(id);
                    self.group_call(id, |g| Ok(g.driver.transfer_leadership()?))?;
                }
            }
            Control::PeerConnected(peer) => {
                for id in ids {
                    self.touch(id);
                    self.group_call(id, |g| Ok(g.driver.peer_connected(peer)?))?;
                }
            }
        }
        Ok(false)
    }

    fn request(&self, job: ProduceJob) -> ProduceRequest<ProduceReply> {
        let deadline = job.deadline.saturating_duration_since(self.clock);
        ProduceRequest {
            values: job.values,
            producer: job.producer,
            kind: job.kind,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            reply: ProduceReply {
                reply: job.reply,
                shape: job.shape,
            },
        }
    }

    fn tick(&mut self) -> Result<(), Fatal> {
        let members = self.member_views();
        self.report_liveness(&members)?;
        let now = self.now_ms();
        let interval = Duration::from_millis(self.shared.cfg.retention_interval_ms.max(10));
        let ids: Vec<GroupId> = self.active.union(&self.follows).copied().collect();
        for id in ids {
            let retry = self
                .groups
                .get(&id)
                .is_some_and(|g| g.disk_full.is_some() && g.disk_retry_due(false));
            if retry {
                self.retry_disk(id)?;
            }
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            // Membership follows the voters even while idle (a change wakes it).
            if g.follows_voters && g.driver.raft().role() == Role::Leader {
                g.driver.set_members(members.clone());
            }
            // A quiesced group has nothing to time: no heartbeats, no election timer
            // (retention runs once it wakes); it leaves the ticked set until input
            // wakes it.
            if g.driver.is_quiesced() {
                if g.disk_full.is_none() {
                    self.active.remove(&id);
                }
                continue;
            }
            self.touch(id);
            self.group_call(id, |g| {
                g.driver.tick(now)?;
                g.apply_retention(interval)
            })?;
        }
        self.expire_queued();
        self.log_progress();
        let mut last = self.last_rebalance;
        self.rebalance_leaders(&mut last);
        self.last_rebalance = last;
        Ok(())
    }

    /// Tells every group which nodes gossip considers dead, when that changes (a
    /// quiesced follower whose leader died elects a new one).
    fn report_liveness(
        &mut self,
        members: &BTreeMap<crate::raft::NodeId, MemberView>,
    ) -> Result<(), Fatal> {
        let dead: BTreeSet<crate::raft::NodeId> = members
            .iter()
            .filter(|(_, m)| !m.live)
            .map(|(id, _)| *id)
            .collect();
        if dead == self.dead {
            return Ok(());
        }
        log::info!("nodes considered down: {dead:?}");
        // A node back from the dead may have restarted with less: leaders probe it.
        let back: Vec<crate::raft::NodeId> = self.dead.difference(&dead).copied().collect();
        self.dead = dead.clone();
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in ids {
            self.touch(id);
            self.group_call(id, |g| {
                g.driver.set_node_liveness(&dead)?;
                for n in &back {
                    g.driver.peer_connected(*n)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Every 5 s, the leaders' view of their followers (debug log).
    fn log_progress(&mut self) {
        if self.last_progress_log.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last_progress_log = Instant::now();
        for (id, g) in &self.groups {
            if g.driver.raft().role() == Role::Leader {
                for f in g.driver.raft().status().followers {
                    log::debug!("group {id}: follower {}: {f:?}", f.id);
                }
            }
        }
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

    // ---------------------------------------------------------------- effects

    /// Executes the touched groups' effects until they have none (bounded); the
    /// fsyncs a round asks for run after every group's messages of that round left.
    fn execute(&mut self) -> Result<(), Fatal> {
        let executed = self.execute_rounds();
        if !self.admin_answers.is_empty() {
            // A client told "created" routes by the views: they show the new leaders.
            for g in self.groups.values() {
                g.publish(false);
            }
        }
        for (reply, result) in std::mem::take(&mut self.admin_answers) {
            self.answer_admin(reply, result);
        }
        executed
    }

    fn execute_rounds(&mut self) -> Result<(), Fatal> {
        for _ in 0..MAX_EFFECT_ROUNDS {
            let mut syncs: Vec<(GroupId, u64)> = Vec::new();
            let ids: Vec<GroupId> = self.touched.iter().copied().collect();
            for id in ids {
                let Some(g) = self.groups.get_mut(&id) else {
                    continue;
                };
                let effects = g.driver.take_effects();
                if effects.is_empty() {
                    self.touched.remove(&id);
                    continue;
                }
                self.ran.insert(id);
                if let Some(seq) = self.execute_effects(id, effects) {
                    syncs.push((id, seq));
                }
            }
            // The round's messages leave before its fsync: followers write and fsync
            // while this node does.
            self.peers.flush();
            if self.touched.is_empty() && syncs.is_empty() {
                return Ok(());
            }
            self.sync_round(syncs)?;
        }
        Ok(())
    }

    /// Executes one round of a group's effects but the fsync; returns the Sync seq
    /// asked for. On the metadata group, committed entries are applied to the
    /// catalogue before the commands' proposers are answered.
    fn execute_effects(&mut self, id: GroupId, effects: Vec<Effect<ProduceReply>>) -> Option<u64> {
        let g = self.groups.get(&id)?;
        let mut sync_seq = None;
        let mut admin = Vec::new();
        let mut meta_committed = false;
        for e in effects {
            match e {
                Effect::Send(m) => self.peers.send(id, m),
                Effect::Sync { seq } => sync_seq = Some(seq),
                Effect::Complete { reply, result }
                    if matches!(reply.shape, ReplyShape::Admin(_)) =>
                {
                    admin.push((reply, result));
                }
                Effect::Complete { reply, result } => {
                    answer::produce(reply, result, |l| self.shared.not_leader(l))
                }
                Effect::HighWater(hw) => {
                    g.raise_high_water(hw);
                    self.reads.on_hw_raised(&g.state);
                    meta_committed |= id == GroupId::METADATA;
                }
                Effect::FirstIndex(first) => {
                    g.state.raft_first.fetch_max(first.0, Ordering::AcqRel);
                }
                Effect::Role(s) => on_role(&self.shared, id, s),
            }
        }
        if meta_committed {
            self.apply_metadata();
        }
        // Answered after this execution's rounds: a one-voter group the command
        // created has elected itself by then.
        self.admin_answers.extend(admin);
        sync_seq
    }

    // ---------------------------------------------------------------- view

    /// Publishes the views of the groups that ran (role, term, indexes); on a
    /// tick also those that are not quiesced with their follower progress, and
    /// every group's once a second.
    fn publish(&mut self, ticked: bool) {
        let all = ticked && self.last_full_publish.elapsed() >= Duration::from_secs(1);
        if all {
            self.last_full_publish = Instant::now();
            // Once a second, not per iteration: a walk over thousands of groups.
            // Idle groups close their files (`GroupRun::release_idle_files`).
            for g in self.groups.values_mut() {
                g.release_idle_files();
            }
        }
        let ran = std::mem::take(&mut self.ran);
        // A group stops recovering only when it runs: its marker goes at once (a
        // crash right after catching up must not leave it unable to vote), and
        // only the groups that ran are looked at.
        for id in &ran {
            if let Some(g) = self.groups.get_mut(id) {
                g.clear_recovering_marker();
            }
        }
        if ticked {
            // A quiesced group's view was published when it last ran.
            for id in self.active.union(&ran) {
                if let Some(g) = self.groups.get(id) {
                    g.publish(all || !g.driver.is_quiesced());
                }
            }
        } else {
            for g in ran.iter().filter_map(|id| self.groups.get(id)) {
                g.publish(false);
            }
        }
        let full = ticked;
        if self.full_groups.is_empty() && self.shared.disk_full.load(Ordering::Acquire) {
            self.shared.disk_full.store(false, Ordering::Release);
        }
        // Per tick (`full`), not per iteration: the leader's lag needs `status()`.
        if let (true, Some(m)) = (full, &self.shared.cfg.metrics) {
            if let Some(g) = self.groups.get(&self.shared.default.id) {
                publish_metrics(&self.shared, g, m);
            }
            // A sample of every hosted partition: once a second (every tick would
            // walk thousands of groups and build their label strings 10 times as often
            // as any scrape reads them).
            if all {
                self.publish_partition_metrics(m);
            }
        }
    }

    /// On exit: answer everything still waiting, persist the latest commits.
    fn finish(&mut self) {
        for g in self.groups.values_mut() {
            g.finish(&self.shared);
        }
        // The logs were fsynced by `finish`: the next start replays nothing.
        if let Err(e) = self.shared.journal.checkpoint() {
            log::warn!("node journal not checkpointed at exit (replayed at start): {e}");
        }
        for job in self.inbox.drain_produces() {
            answer::refuse(job.reply, Refusal::ShuttingDown);
        }
    }
}

fn on_role(shared: &Shared, id: GroupId, s: SoftState) {
    if id == shared.default.id {
        if let Some(m) = &shared.cfg.metrics {
            m.observe_leader(s.leader.map(|l| l.0));
        }
    }
    log::info!(
        "raft group {id}: {} in term {} (leader: {})",
        s.role,
        s.term,
        s.leader.map_or("none".to_string(), |l| l.to_string())
    );
}

/// Raft gauges, readiness and gossip member counts for the metrics (every tick;
/// only the leader asks for the follower lag).
fn publish_metrics(shared: &Shared, g: &GroupRun, m: &crate::metrics::Metrics) {
    use crate::metrics::{RaftGauges, Readiness};
    let node = g.driver.raft();
    let me = shared.cfg.node_id;
    let membership = node.membership();
    let readiness = if g.driver.recovering() {
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
    for member in lock(&shared.members).values() {
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
            commit: g.driver.commit().0,
            last: node.last_index().0,
            role: node.role(),
            readiness,
            gossip,
        },
        &lag,
    );
}
