//! Deterministic simulator for the Raft core (tests only).
//!
//! A [`Cluster`] holds N [`RaftNode`]s over [`MemStorage`] "disks", a network of
//! in-flight messages with virtual delivery times, and a [`checker::Checker`] that
//! verifies Raft's safety properties after every step. Everything random comes from
//! one [`SplitMix64`] seeded by the test, so a seed replays exactly.
//!
//! Persistence is modelled explicitly: each node's Readies queue up as pending
//! writes; a write reaches the disk (the node's `MemStorage`) and is acknowledged with
//! `advance` only when the simulator decides (randomly later, or at once in
//! `instant_persist` mode). A crash drops the pending writes and restarts the node
//! from its disk alone.
//!
//! The network ([`net::Network`]) and the fault schedule ([`faults::FaultSchedule`])
//! do not know what they drive; this file is the driver for a bare `RaftNode`. Besides
//! crashes it models process pauses, crashes aimed between a send and the write it
//! depends on, torn writes, and data dirs wiped under an old id (with the same
//! "no vote until caught up" guard as `node/raft_loop.rs`, see [`Recovering`]).
//!
//! Besides the Raft invariants of [`checker`], every step checks that no message
//! leaves before the state it depends on is on disk (the Ready contract, checked at
//! the moment a message is handed to the network), that a leader's commit index never
//! passes what a majority has durably stored, and that acknowledged proposals (the
//! leader reported them committed and durable on itself) stay at their index.
//!
//! Used two ways: `tests.rs` drives random runs over many seeds; `scenarios.rs`
//! drives hand-written scenarios (message by message) named after the Raft paper.

pub(crate) mod checker;
pub(crate) mod faults;
pub(crate) mod net;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use super::MemStorage;
use super::{
    Config, Entry, HardState, Index, LogStart, Membership, Message, MessageBody, NodeId, RaftNode,
    ReadyAck, Role, SplitMix64, Storage, Term,
};
use checker::Checker;
use faults::CrashPoint;
use net::{LinkFault, Network, Sent};

/// One write a Ready asked for, not yet on "disk".
struct PendingWrite {
    seq: u64,
    hard_state: Option<HardState>,
    snapshot: Option<LogStart>,
    entries: Vec<Entry>,
}

/// The "must not vote" guard of a node that lost data, as `node/raft_loop.rs` keeps
/// it: drop vote requests and TimeoutNow and do not tick until a leader's
/// AppendEntries was heard and the durable log reaches the commit index it carried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recovering {
    pub min_commit: Index,
    pub need_leader: bool,
}

/// A simulated process: a running node (or its disk while it is down).
pub(crate) struct SimNode {
    pub(crate) raft: Option<RaftNode<MemStorage>>,
    down_disk: Option<MemStorage>,
    pending: VecDeque<PendingWrite>,
    pub(crate) cfg: Config,
    boots: u64,
    /// The process neither ticks nor processes anything before this tick.
    paused_until: u64,
    /// Set after a wiped data dir (see [`Recovering`]).
    pub(crate) recovering: Option<Recovering>,
    /// After a wipe: the last index the old disk held (it may have been acknowledged).
    /// The node counts as having lost data until its disk holds that much again,
    /// whatever its guard believes.
    lost_through: Option<Index>,
    /// Crash right after the next persisting Ready's messages are sent.
    crash_after_send: bool,
    /// Index → lowest term ever written there on this disk (for the Ready-contract
    /// check of late acknowledgements; cleared by a wipe).
    ever_durable: BTreeMap<u64, u64>,
    /// The log start the node was created with: a wiped node restarts from it (the
    /// simulator bootstraps with the whole configuration at index 0, which a real
    /// joiner learns from the configuration entries it replicates).
    boot_start: LogStart,
}

impl SimNode {
    fn new(disk: MemStorage, cfg: Config) -> SimNode {
        SimNode {
            boot_start: disk.log_start().clone(),
            ever_durable: BTreeMap::new(),
            raft: None,
            down_disk: Some(disk),
            pending: VecDeque::new(),
            cfg,
            boots: 0,
            paused_until: 0,
            recovering: None,
            lost_through: None,
            crash_after_send: false,
        }
    }

    /// Lost data (wiped) and not caught up again, by the guard or by the disk.
    fn lost_data(&self) -> bool {
        self.recovering.is_some() || self.lost_through.is_some()
    }

    /// The node's durable state (its disk), running or not.
    fn disk(&self) -> Option<&MemStorage> {
        match &self.raft {
            Some(r) => Some(r.storage()),
            None => self.down_disk.as_ref(),
        }
    }
}

/// Deliberate breakage of the simulator's own model (not of Raft), to prove the
/// checker notices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SimBugs {
    /// Acknowledge a proposal to the client as soon as the leader appended it.
    pub ack_on_append: bool,
    /// A wiped node votes at once (no [`Recovering`] guard).
    pub wiped_node_votes: bool,
}

/// A compact trace record (formatted only when a failure is reported).
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Tick(u64),
    Deliver(Message),
    Drop(NodeId, NodeId, &'static str),
    Persist(NodeId, u64),
    Crash(NodeId, CrashPoint),
    Restart(NodeId),
    Pause(NodeId, u64),
    Wipe(NodeId),
    Recovered(NodeId, Index),
    Partition(Vec<NodeId>),
    Links(LinkFault, Vec<(NodeId, NodeId)>),
    Heal,
    Propose(NodeId, Index, Index),
    Ack(NodeId, Index, Index),
    ConfChange(NodeId, super::ConfChange, Index),
    Transfer(NodeId, NodeId),
    Compact(NodeId, Index),
    Role(NodeId, Role, u64),
}

/// A client proposal waiting for its acknowledgement.
struct PendingProposal {
    node: NodeId,
    first: Index,
    last: Index,
    term: Term,
    payloads: Vec<Vec<u8>>,
}

/// The simulated cluster.
pub(crate) struct Cluster {
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    pub(crate) net: Network<Message>,
    pub(crate) rng: SplitMix64,
    pub(crate) now: u64,
    pub(crate) checker: Checker,
    trace: VecDeque<Event>,
    /// Persist and acknowledge every Ready immediately.
    pub(crate) instant_persist: bool,
    seed: u64,
    last_role: BTreeMap<NodeId, (Role, u64)>,
    /// How to replay this run (printed in failure reports).
    pub(crate) replay_hint: Option<String>,
    /// AppendEntries rejections delivered (scenario tests check back-tracking cost).
    pub(crate) rejections_delivered: u64,
    proposals: Vec<PendingProposal>,
    pub(crate) sim_bugs: SimBugs,
    /// Per leader: its term and the commit index already checked against durable
    /// copies.
    durable_commit_checked: BTreeMap<NodeId, (Term, Index)>,
}

/// Trace length kept for failure reports.
const TRACE_EVENTS: usize = 160;

/// Readies drained per node per step (each Ready is finite; this bounds the loop).
const MAX_READIES_PER_DRAIN: usize = 64;

/// Bound on proposals waiting for acknowledgement (oldest forgotten beyond it).
const MAX_PENDING_PROPOSALS: usize = 4096;

impl Cluster {
    /// A cluster of processes `ids`; `voters` form the bootstrap configuration (the
    /// others start with an empty configuration and join through membership changes).
    pub(crate) fn new(
        seed: u64,
        ids: &[u64],
        voters: &[u64],
        make_cfg: impl Fn(NodeId) -> Config,
    ) -> Cluster {
        let mut nodes = BTreeMap::new();
        let boot = Membership::with_voters(voters.iter().copied());
        for &id in ids {
            let id = NodeId(id);
            let membership = if voters.contains(&id.0) {
                boot.clone()
            } else {
                Membership::default()
            };
            let disk = MemStorage::new(LogStart {
                membership,
                ..LogStart::default()
            });
            nodes.insert(id, SimNode::new(disk, make_cfg(id)));
        }
        let mut c = Cluster {
            nodes,
            net: Network::new(),
            rng: SplitMix64::new(seed),
            now: 0,
            checker: Checker::default(),
            trace: VecDeque::new(),
            instant_persist: true,
            seed,
            last_role: BTreeMap::new(),
            replay_hint: None,
            rejections_delivered: 0,
            proposals: Vec::new(),
            sim_bugs: SimBugs::default(),
            durable_commit_checked: BTreeMap::new(),
        };
        let all: Vec<NodeId> = c.nodes.keys().copied().collect();
        for id in all {
            c.start(id).expect("a fresh node starts");
        }
        c
    }

    /// A cluster built from prepared disks (scenario tests with preset logs).
    pub(crate) fn from_disks(
        disks: Vec<(u64, MemStorage)>,
        make_cfg: impl Fn(NodeId) -> Config,
    ) -> Cluster {
        let mut c = Cluster::new(0, &[], &[], &make_cfg);
        for (id, disk) in disks {
            let id = NodeId(id);
            c.nodes.insert(id, SimNode::new(disk, make_cfg(id)));
            c.start(id).expect("prepared node starts");
        }
        c
    }

    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn node(&self, id: u64) -> &RaftNode<MemStorage> {
        self.nodes[&NodeId(id)].raft.as_ref().expect("node is up")
    }

    pub(crate) fn node_mut(&mut self, id: u64) -> &mut RaftNode<MemStorage> {
        self.nodes
            .get_mut(&NodeId(id))
            .and_then(|n| n.raft.as_mut())
            .expect("node is up")
    }

    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.raft.is_some())
    }

    /// Up and not paused: the process handles input now.
    pub(crate) fn is_active(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.raft.is_some() && n.paused_until <= self.now)
    }

    /// Leaders among running nodes, highest term first.
    pub(crate) fn leaders(&self) -> Vec<NodeId> {
        let mut v: Vec<(u64, NodeId)> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.raft.as_ref().map(|r| (r, id)))
            .filter(|(r, _)| r.role() == Role::Leader)
            .map(|(r, id)| (r.term().0, *id))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, id)| id).collect()
    }

    pub(crate) fn record(&mut self, e: Event) {
        if self.trace.len() == TRACE_EVENTS {
            self.trace.pop_front();
        }
        self.trace.push_back(e);
    }

    /// Human-readable failure report with the replay command.
    pub(crate) fn report(&self, what: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "RAFT SIMULATION FAILURE (seed {}): {what}", self.seed);
        let _ = writeln!(s, "last {} events (oldest first):", self.trace.len());
        for e in &self.trace {
            let _ = writeln!(s, "  {}", fmt_event(e));
        }
        for (id, n) in &self.nodes {
            let Some(r) = &n.raft else {
                let _ = writeln!(s, "  node {id}: down");
                continue;
            };
            let st = r.status();
            let hs = r.storage().hard_state();
            let _ = writeln!(
                s,
                "  node {id}: {} term {} leader {:?} commit {} log {}..={} persisted {} \
                 disk term {} vote {:?} voters {:?} learners {:?}{}{}",
                st.role,
                st.term,
                st.leader.map(|l| l.0),
                st.commit,
                st.first_index,
                st.last_index,
                st.persisted,
                hs.term,
                hs.vote.map(|v| v.0),
                st.membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                st.membership
                    .learners
                    .iter()
                    .map(|v| v.0)
                    .collect::<Vec<_>>(),
                if n.paused_until > self.now {
                    " PAUSED"
                } else {
                    ""
                },
                if n.recovering.is_some() {
                    " RECOVERING"
                } else {
                    ""
                },
            );
        }
        let hint = self.replay_hint.clone().unwrap_or_else(|| {
            format!(
                "RAFT_SIM_SEED={} cargo test --lib raft::sim::tests::replay_seed -- --nocapture",
                self.seed
            )
        });
        let _ = writeln!(s, "replay: {hint}");
        s
    }

    // ------------------------------------------------------------ processes

    /// Boots (or reboots) a node from its disk.
    pub(crate) fn start(&mut self, id: NodeId) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let n = self.nodes.get_mut(&id).ok_or("no such node")?;
        let disk = n.down_disk.take().ok_or("node already up")?;
        n.boots += 1;
        n.paused_until = 0;
        let raft = RaftNode::new(n.cfg.clone(), disk, seed).map_err(|e| e.to_string())?;
        let commit = raft.commit_index();
        n.raft = Some(raft);
        self.checker.on_boot(id, commit);
        if n.boots > 1 {
            self.record(Event::Restart(id));
        }
        Ok(())
    }

    /// Crashes a node at a random moment: unacknowledged writes are lost, the disk
    /// survives.
    ///
    /// Some of the pending writes may have reached the disk without the node hearing
    /// about it (the fsync finished, the process died before the acknowledgement): a
    /// random prefix of them is applied, the rest is lost. Storage may legitimately
    /// hold more than was acknowledged.
    pub(crate) fn crash(&mut self, id: NodeId) {
        self.crash_at(id, CrashPoint::Anywhere);
    }

    /// Crashes a node at `point` (an aimed point that needs a later Ready is armed
    /// and happens then).
    pub(crate) fn crash_at(&mut self, id: NodeId, point: CrashPoint) {
        match point {
            CrashPoint::Anywhere => {
                let written = self.rng.below(3) as usize;
                self.kill(id, written, None, point);
            }
            CrashPoint::AfterSendBeforePersist => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.crash_after_send = n.raft.is_some();
                }
            }
            CrashPoint::TornWrite => {
                let torn = self.rng.below(4) as usize;
                self.kill(id, usize::MAX, Some(torn), point);
            }
        }
    }

    /// Stops the process: the first `written` pending writes reach the disk (the
    /// last of them cut to `torn` entries and no hard state, if given).
    fn kill(&mut self, id: NodeId, written: usize, torn: Option<usize>, point: CrashPoint) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(r) = n.raft.take() else {
            return;
        };
        let mut disk = r.into_storage();
        let writes: Vec<PendingWrite> = n.pending.drain(..).take(written).collect();
        let count = writes.len();
        for (k, mut w) in writes.into_iter().enumerate() {
            if let (Some(keep), true) = (torn, k + 1 == count) {
                w.entries.truncate(keep);
                w.hard_state = None;
            }
            if let Some(s) = w.snapshot {
                disk.install(s);
            }
            if disk.append(&w.entries).is_err() {
                break;
            }
            note_durable(&mut n.ever_durable, &w.entries);
            if let Some(hs) = w.hard_state {
                disk.set_hard_state(hs);
            }
        }
        n.down_disk = Some(disk);
        n.crash_after_send = false;
        n.paused_until = 0;
        self.last_role.remove(&id);
        self.proposals.retain(|p| p.node != id);
        self.durable_commit_checked.remove(&id);
        self.record(Event::Crash(id, point));
    }

    /// Cancels every armed crash (the fault phase is over).
    pub(crate) fn disarm_crashes(&mut self) {
        for n in self.nodes.values_mut() {
            n.crash_after_send = false;
        }
    }

    /// Stops a process for `ticks`: no ticks, no deliveries, no writes complete.
    pub(crate) fn pause(&mut self, id: NodeId, ticks: u64) {
        let until = self.now + ticks;
        if let Some(n) = self.nodes.get_mut(&id).filter(|n| n.raft.is_some()) {
            n.paused_until = until;
            self.record(Event::Pause(id, ticks));
        }
    }

    /// Number of nodes that lost data and do not hold again everything they held.
    pub(crate) fn nodes_recovering(&self) -> usize {
        self.nodes.values().filter(|n| n.lost_data()).count()
    }

    /// True if wiping `id` stays within the fault model: nobody else is recovering
    /// lost data, every configuration any node holds keeps a majority with data
    /// (at least 3 voters), and another node's disk holds every committed entry.
    pub(crate) fn may_wipe(&self, id: NodeId) -> bool {
        if self.nodes_recovering() > 0 {
            return false;
        }
        let small_config = self.nodes.values().any(|n| {
            let voters = match (&n.raft, n.disk()) {
                (Some(r), _) => r.membership().voters.len(),
                (None, Some(d)) => disk_config(d).voters.len(),
                (None, None) => 0,
            };
            voters > 0 && voters < 3
        });
        if small_config {
            return false;
        }
        let (committed, term) = self.checker.max_committed();
        self.nodes
            .iter()
            .filter(|(other, _)| **other != id)
            .filter_map(|(_, n)| n.disk())
            .any(|d| d.log_start().index >= committed || d.term(committed) == Ok(term))
    }

    /// The process dies and restarts with an empty data dir under its old id, guarded
    /// by [`Recovering`].
    pub(crate) fn wipe(&mut self, id: NodeId) -> Result<(), String> {
        self.crash_at(id, CrashPoint::Anywhere);
        let guard = !self.sim_bugs.wiped_node_votes;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        n.lost_through = n.down_disk.as_ref().map(|d| d.last_index());
        n.down_disk = Some(MemStorage::new(n.boot_start.clone()));
        n.ever_durable.clear();
        n.recovering = guard.then_some(Recovering {
            min_commit: Index(0),
            need_leader: true,
        });
        self.record(Event::Wipe(id));
        self.start(id)?;
        self.settle(id)
    }

    /// Clears the guard once the node caught up (as `raft_loop::check_recovered`).
    fn check_recovered(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if let (Some(lost), Some(d)) = (n.lost_through, n.disk()) {
            if d.last_index() >= lost {
                n.lost_through = None;
            }
        }
        let (Some(g), Some(r)) = (n.recovering, n.raft.as_ref()) else {
            return;
        };
        let durable_commit = r.commit_index().min(r.persisted_index());
        if !g.need_leader && r.persisted_index() >= g.min_commit && durable_commit >= g.min_commit {
            n.recovering = None;
            self.record(Event::Recovered(id, g.min_commit));
        }
    }

    // ------------------------------------------------------------ network

    pub(crate) fn partition(&mut self, group: &[NodeId]) {
        let all = self.ids();
        self.net.partition(&all, group);
        self.record(Event::Partition(group.to_vec()));
    }

    /// Applies a random link fault of kind `kind`.
    pub(crate) fn link_fault(&mut self, kind: LinkFault) {
        let all = self.ids();
        kind.apply(&mut self.net, &mut self.rng, &all);
        let links = self.net.blocked_links();
        self.record(Event::Links(kind, links));
    }

    /// Cuts `id` off from everyone (both directions).
    pub(crate) fn isolate(&mut self, id: u64) {
        self.partition(&[NodeId(id)]);
    }

    pub(crate) fn heal(&mut self) {
        self.net.heal();
        self.record(Event::Heal);
    }

    /// Blocks messages from `a` to `b` only.
    pub(crate) fn block_one_way(&mut self, a: u64, b: u64) {
        self.net.block_one_way(NodeId(a), NodeId(b));
    }

    /// Hands a message to the network, after checking the sender's disk holds what
    /// the message depends on.
    fn enqueue(&mut self, m: Message) -> Result<(), String> {
        if let Some(n) = self.nodes.get(&m.from) {
            if let Some(r) = &n.raft {
                checker::check_send(r, &m, &n.ever_durable)?;
            }
        }
        let (from, to, name) = (m.from, m.to, m.body.name());
        if self.net.send(&mut self.rng, self.now, from, to, m) == Sent::Dropped {
            self.record(Event::Drop(from, to, name));
        }
        Ok(())
    }

    /// Delivers one due message to an active process (the oldest when `random` is
    /// false, a random one otherwise). Returns false when none is due.
    pub(crate) fn deliver_one(&mut self, random: bool) -> Result<bool, String> {
        let now = self.now;
        let nodes = &self.nodes;
        let accepts = |to: NodeId| nodes.get(&to).is_none_or(|n| n.paused_until <= now);
        match self.net.take_due(&mut self.rng, now, random, accepts) {
            Some((_, _, m)) => {
                self.deliver(m)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn deliver(&mut self, m: Message) -> Result<(), String> {
        if self.net.is_blocked(m.from, m.to) || !self.is_up(m.to) {
            self.record(Event::Drop(m.from, m.to, m.body.name()));
            return Ok(());
        }
        if matches!(
            m.body,
            MessageBody::AppendEntriesResponse { reject: true, .. }
        ) {
            self.rejections_delivered += 1;
        }
        let to = m.to;
        if !self.recovering_admits(&m) {
            self.record(Event::Drop(m.from, m.to, "(recovering) ignored"));
            return Ok(());
        }
        self.record(Event::Deliver(m.clone()));
        let node = self.nodes.get_mut(&to).and_then(|n| n.raft.as_mut());
        if let Some(r) = node {
            r.step(m)
                .map_err(|e| format!("node {to} step failed: {e}"))?;
        }
        self.settle(to)
    }

    /// The [`Recovering`] guard on input: false if the message must be ignored.
    fn recovering_admits(&mut self, m: &Message) -> bool {
        let Some(g) = self
            .nodes
            .get_mut(&m.to)
            .and_then(|n| n.recovering.as_mut())
        else {
            return true;
        };
        match &m.body {
            MessageBody::RequestVote { .. } | MessageBody::TimeoutNow => false,
            MessageBody::AppendEntries { commit, .. } if g.need_leader => {
                g.need_leader = false;
                g.min_commit = g.min_commit.max(*commit);
                true
            }
            _ => true,
        }
    }

    /// Delivers every message, in order, until the network is quiet (manual mode).
    /// Ignores delivery times. Bounded.
    pub(crate) fn stabilize(&mut self) {
        for _ in 0..100_000 {
            let Some((_, _, m)) = self.net.take_first() else {
                return;
            };
            if let Err(e) = self.deliver(m) {
                panic!("{}", self.report(&e));
            }
        }
        panic!("{}", self.report("network did not quiesce"));
    }

    /// Drops every message in flight.
    pub(crate) fn clear_network(&mut self) {
        self.net.clear();
    }

    /// Takes the messages in flight (scenario tests inspect and re-inject them).
    pub(crate) fn take_messages(&mut self) -> Vec<Message> {
        self.net.drain()
    }

    /// Steps a message into its recipient directly.
    pub(crate) fn inject(&mut self, m: Message) {
        if let Err(e) = self.deliver(m) {
            panic!("{}", self.report(&e));
        }
    }

    /// Like `inject`, returning the checker's verdict instead of panicking.
    pub(crate) fn try_inject(&mut self, m: Message) -> Result<(), String> {
        self.deliver(m)
    }

    // ------------------------------------------------------------ time & disk

    /// Ticks one node (a paused one, or one recovering lost data that is not leader,
    /// does not tick).
    pub(crate) fn tick_node(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if n.paused_until > now {
            return Ok(());
        }
        let recovering = n.recovering.is_some();
        if let Some(r) = n.raft.as_mut() {
            if recovering && r.role() != Role::Leader {
                return Ok(());
            }
            r.tick()
                .map_err(|e| format!("node {id} tick failed: {e}"))?;
            self.settle(id)?;
        }
        Ok(())
    }

    /// Ticks one node `n` times, delivering nothing (manual mode helper).
    pub(crate) fn tick(&mut self, id: u64, n: u32) {
        for _ in 0..n {
            if let Err(e) = self.tick_node(NodeId(id)) {
                panic!("{}", self.report(&e));
            }
        }
    }

    /// Ticks every running node `n` times, stabilizing the network after each tick.
    pub(crate) fn tick_all(&mut self, n: u32) {
        for _ in 0..n {
            self.now += 1;
            for id in self.ids() {
                if let Err(e) = self.tick_node(id) {
                    panic!("{}", self.report(&e));
                }
            }
            self.stabilize();
        }
    }

    /// Writes (and acknowledges) up to `max` pending Readies of node `id`.
    pub(crate) fn persist(&mut self, id: NodeId, max: usize) -> Result<(), String> {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&id).filter(|n| n.paused_until <= now) else {
            return Ok(());
        };
        let Some(r) = n.raft.as_mut() else {
            return Ok(());
        };
        let mut last_seq = None;
        for _ in 0..max {
            let Some(w) = n.pending.pop_front() else {
                break;
            };
            let disk = r.storage_mut();
            if let Some(s) = w.snapshot {
                disk.install(s);
            }
            disk.append(&w.entries)
                .map_err(|e| format!("node {id} disk append: {e}"))?;
            note_durable(&mut n.ever_durable, &w.entries);
            if let Some(hs) = w.hard_state {
                disk.set_hard_state(hs);
            }
            last_seq = Some(w.seq);
        }
        if let Some(seq) = last_seq {
            r.advance(ReadyAck { seq })
                .map_err(|e| format!("node {id} advance failed: {e}"))?;
            self.record(Event::Persist(id, seq));
            self.settle(id)?;
        }
        Ok(())
    }

    /// Drains node `id`'s Readies: checks them, queues writes, sends messages and
    /// acknowledges proposals. Then runs the cluster-wide checks.
    pub(crate) fn settle(&mut self, id: NodeId) -> Result<(), String> {
        for _ in 0..MAX_READIES_PER_DRAIN {
            let Some(r) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
                break;
            };
            if !r.has_ready() {
                break;
            }
            let rd = r.ready();
            if let Some(first) = rd.entries.first() {
                let prev_term = r
                    .term_at(first.index - 1)
                    .map_err(|e| format!("node {id}: term before Ready entries: {e}"))?;
                self.checker.on_append(id, prev_term, &rd.entries)?;
            }
            let must_persist = rd.must_persist();
            let seq = rd.seq;
            if let Some((_, hi)) = rd.committed {
                self.acknowledge(id, hi)?;
            }
            let n = self.nodes.get_mut(&id).expect("node exists");
            if must_persist {
                n.pending.push_back(PendingWrite {
                    seq,
                    hard_state: rd.hard_state,
                    snapshot: rd.snapshot,
                    entries: rd.entries,
                });
            }
            let crash_now = must_persist && std::mem::take(&mut n.crash_after_send);
            for m in rd.messages {
                self.enqueue(m)?;
            }
            if crash_now {
                // The messages are out; none of this Ready's writes reached the disk
                // (earlier pending writes may have).
                let earlier = self.nodes[&id].pending.len().saturating_sub(1);
                let written = self.rng.below(earlier as u64 + 1) as usize;
                self.kill(id, written, None, CrashPoint::AfterSendBeforePersist);
                break;
            }
            if must_persist && self.instant_persist {
                self.persist(id, usize::MAX)?;
            }
        }
        self.check_recovered(id);
        self.check_all()
    }

    /// Runs every safety check on every running node.
    pub(crate) fn check_all(&mut self) -> Result<(), String> {
        let ids = self.ids();
        for id in ids {
            let Some(r) = self.nodes.get(&id).and_then(|n| n.raft.as_ref()) else {
                continue;
            };
            let role = (r.role(), r.term().0);
            if self.last_role.get(&id) != Some(&role) {
                self.last_role.insert(id, role);
                self.trace_role(id, role);
            }
            let r = self.nodes[&id].raft.as_ref().expect("up");
            self.checker.check_node(r)?;
            self.check_commit_durable(id)?;
        }
        Ok(())
    }

    /// When a leader advances its commit index, a majority of its voters holds the
    /// entry there on disk (a voter that lost its data since counts: the fault model
    /// allows it). What it inherited as a follower was checked by earlier leaders.
    fn check_commit_durable(&mut self, id: NodeId) -> Result<(), String> {
        let Some(r) = self.nodes[&id].raft.as_ref() else {
            return Ok(());
        };
        if r.role() != Role::Leader {
            return Ok(());
        }
        let commit = r.commit_index();
        match self.durable_commit_checked.get(&id) {
            Some(&(t, checked)) if t == r.term() => {
                if checked >= commit || commit <= r.log_start().index {
                    return Ok(());
                }
            }
            _ => {
                self.durable_commit_checked.insert(id, (r.term(), commit));
                return Ok(());
            }
        }
        let term = r
            .term_at(commit)
            .map_err(|e| format!("node {id}: committed entry unreadable: {e}"))?;
        let voters = &r.membership().voters;
        let holding = voters
            .iter()
            .filter(|v| {
                self.nodes.get(v).is_some_and(|n| {
                    n.lost_data()
                        || n.disk().is_some_and(|d| {
                            d.log_start().index >= commit || d.term(commit) == Ok(term)
                        })
                })
            })
            .count();
        if holding < r.membership().quorum() {
            return Err(format!(
                "COMMIT DURABILITY violated: leader {id} commits {commit} (term {term}) but \
                 only {holding} of voters {:?} hold it on disk",
                voters.iter().map(|v| v.0).collect::<Vec<_>>()
            ));
        }
        self.durable_commit_checked.insert(id, (r.term(), commit));
        Ok(())
    }

    fn trace_role(&mut self, id: NodeId, role: (Role, u64)) {
        self.record(Event::Role(id, role.0, role.1));
    }

    // ------------------------------------------------------------ clients

    /// Proposes `n` data entries at node `id` with unique payloads.
    pub(crate) fn propose(&mut self, id: u64, n: usize) -> Result<Index, super::ProposeError> {
        let batch: Vec<Vec<u8>> = (0..n).map(|_| self.checker.next_payload()).collect();
        let r = self.node_mut(id);
        let p = r.propose(batch.clone())?;
        self.record(Event::Propose(NodeId(id), p.first, p.last));
        if self.proposals.len() == MAX_PENDING_PROPOSALS {
            self.proposals.remove(0);
        }
        self.proposals.push(PendingProposal {
            node: NodeId(id),
            first: p.first,
            last: p.last,
            term: p.term,
            payloads: batch,
        });
        let mut res = Ok(());
        if self.sim_bugs.ack_on_append {
            res = self.acknowledge(NodeId(id), p.last);
        }
        if let Err(e) = res.and_then(|()| self.settle(NodeId(id))) {
            panic!("{}", self.report(&e));
        }
        Ok(p.last)
    }

    /// Node `id` reported everything through `through` committed and durable on
    /// itself: its proposals up to there are acknowledged to their clients, unless a
    /// later leader replaced them (then the client gets an error, not an ack).
    fn acknowledge(&mut self, id: NodeId, through: Index) -> Result<(), String> {
        let Some(r) = self.nodes.get(&id).and_then(|n| n.raft.as_ref()) else {
            return Ok(());
        };
        let checker = &self.checker;
        // The term at the batch's last index, from the log or (compacted) from what
        // the checker saw committed there.
        let term_at = |i: Index| r.term_at(i).ok().or_else(|| checker.committed_term(i));
        let mut acked = Vec::new();
        self.proposals.retain_mut(|p| {
            if p.node != id || p.last > through {
                return true;
            }
            if term_at(p.last) == Some(p.term) {
                acked.push((p.first, p.last, p.term, std::mem::take(&mut p.payloads)));
            }
            false
        });
        for (first, last, term, payloads) in acked {
            self.record(Event::Ack(id, first, last));
            for (k, data) in payloads.into_iter().enumerate() {
                let e = Entry {
                    index: first + k as u64,
                    term,
                    kind: super::RecordKind::Data,
                    data: data.into(),
                };
                self.checker.on_ack(id, &e)?;
            }
        }
        Ok(())
    }

    /// End of a run: every acknowledged proposal is in `id`'s log at its index.
    pub(crate) fn check_acked_on(&self, id: NodeId) -> Result<(), String> {
        match self.nodes.get(&id).and_then(|n| n.raft.as_ref()) {
            Some(r) => self.checker.check_acked_final(r),
            None => Ok(()),
        }
    }

    /// The message bodies currently in flight from `from` to `to`.
    pub(crate) fn bodies(&self, from: u64, to: u64) -> Vec<&MessageBody> {
        self.net
            .between(NodeId(from), NodeId(to))
            .map(|m| &m.body)
            .collect()
    }
}

/// The latest configuration on a disk (of a node that is down).
fn disk_config(d: &MemStorage) -> Membership {
    d.all_entries()
        .iter()
        .rev()
        .find(|e| e.kind == super::RecordKind::Config)
        .and_then(|e| Membership::decode(&e.data).ok())
        .unwrap_or_else(|| d.log_start().membership.clone())
}

/// Records `ents` as written to a disk (lowest term per index).
fn note_durable(ever: &mut BTreeMap<u64, u64>, ents: &[Entry]) {
    for e in ents {
        let t = ever.entry(e.index.0).or_insert(e.term.0);
        *t = (*t).min(e.term.0);
    }
}

fn fmt_event(e: &Event) -> String {
    match e {
        Event::Tick(t) => format!("tick {t}"),
        Event::Deliver(m) => {
            let detail = match &m.body {
                MessageBody::RequestVote {
                    last_index,
                    last_term,
                    ..
                } => format!(" last={last_index}/{last_term}"),
                MessageBody::RequestVoteResponse { granted, .. } => format!(" granted={granted}"),
                MessageBody::AppendEntries {
                    prev_index,
                    prev_term,
                    commit,
                    entries,
                } => format!(
                    " prev={prev_index}/{prev_term} commit={commit} entries={}",
                    entries
                        .iter()
                        .map(|e| format!("{}/{}", e.index, e.term))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                MessageBody::AppendEntriesResponse {
                    reject,
                    index,
                    hint_index,
                    hint_term,
                } => format!(" reject={reject} index={index} hint={hint_index}/{hint_term}"),
                MessageBody::Heartbeat { commit, quiesce } => {
                    format!(" commit={commit} quiesce={quiesce}")
                }
                MessageBody::InstallSnapshot { start } => {
                    format!(" start={}/{}", start.index, start.term)
                }
                _ => String::new(),
            };
            format!(
                "deliver {} -> {} t{} {}{}",
                m.from,
                m.to,
                m.term,
                m.body.name(),
                detail
            )
        }
        Event::Drop(a, b, what) => format!("drop {a} -> {b} {what}"),
        Event::Persist(id, seq) => format!("persist node {id} through ready {seq}"),
        Event::Crash(id, point) => format!("CRASH node {id} ({point:?})"),
        Event::Restart(id) => format!("RESTART node {id}"),
        Event::Pause(id, t) => format!("PAUSE node {id} for {t} ticks"),
        Event::Wipe(id) => format!("WIPE node {id}: restarts with an empty data dir"),
        Event::Recovered(id, i) => format!("node {id} recovered (durable through {i})"),
        Event::Links(kind, links) => format!(
            "LINKS {kind:?}: blocked {:?}",
            links.iter().map(|(a, b)| (a.0, b.0)).collect::<Vec<_>>()
        ),
        Event::Ack(id, a, b) => format!("ack from node {id}: {a}..={b} committed"),
        Event::Partition(g) => format!(
            "PARTITION {:?} | rest",
            g.iter().map(|i| i.0).collect::<Vec<_>>()
        ),
        Event::Heal => "HEAL".to_string(),
        Event::Propose(id, a, b) => format!("propose at node {id}: {a}..={b}"),
        Event::ConfChange(id, c, i) => format!("conf change at node {id}: {c:?} at {i}"),
        Event::Transfer(a, b) => format!("transfer leadership {a} -> {b}"),
        Event::Compact(id, i) => format!("compact node {id} through {i}"),
        Event::Role(id, r, t) => format!("node {id} is {r} in term {t}"),
    }
}

/// Default configuration used by the simulator: short timings.
pub(crate) fn sim_config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.max_inflight_msgs = 4;
    c.max_size_per_msg = 256;
    c.max_uncommitted_entries = 200;
    c
}

/// Storage helpers for scenario tests.
pub(crate) fn disk_with(voters: &[u64], terms: &[u64], hs_term: u64) -> MemStorage {
    let mut s = MemStorage::new(LogStart {
        membership: Membership::with_voters(voters.iter().copied()),
        ..LogStart::default()
    });
    let ents: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| Entry {
            index: Index(i as u64 + 1),
            term: super::Term(*t),
            kind: super::RecordKind::Data,
            data: format!("{i}@{t}").into_bytes().into(),
        })
        .collect();
    s.append(&ents).expect("contiguous");
    s.set_hard_state(HardState {
        term: super::Term(hs_term),
        vote: None,
        commit: Index(0),
    });
    debug_assert_eq!(s.last_index(), Index(terms.len() as u64));
    s
}
