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
//! Used two ways: `tests.rs` drives random runs over many seeds; `scenarios.rs`
//! drives hand-written scenarios (message by message) named after the Raft paper.

pub(crate) mod checker;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use super::MemStorage;
use super::{
    Config, Entry, HardState, Index, LogStart, Membership, Message, MessageBody, NodeId, RaftNode,
    ReadyAck, Role, SplitMix64, Storage,
};
use checker::Checker;

/// One write a Ready asked for, not yet on "disk".
struct PendingWrite {
    seq: u64,
    hard_state: Option<HardState>,
    snapshot: Option<LogStart>,
    entries: Vec<Entry>,
}

/// A simulated process: a running node (or its disk while it is down).
pub(crate) struct SimNode {
    pub(crate) raft: Option<RaftNode<MemStorage>>,
    down_disk: Option<MemStorage>,
    pending: VecDeque<PendingWrite>,
    pub(crate) cfg: Config,
    boots: u64,
}

/// A compact trace record (formatted only when a failure is reported).
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Tick(u64),
    Deliver(Message),
    Drop(NodeId, NodeId, &'static str),
    Persist(NodeId, u64),
    Crash(NodeId),
    Restart(NodeId),
    Partition(Vec<NodeId>),
    Heal,
    Propose(NodeId, Index, Index),
    ConfChange(NodeId, super::ConfChange, Index),
    Transfer(NodeId, NodeId),
    Compact(NodeId, Index),
    Role(NodeId, Role, u64),
}

/// A message travelling through the network.
struct InFlight {
    deliver_at: u64,
    msg: Message,
}

/// The simulated cluster.
pub(crate) struct Cluster {
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    net: Vec<InFlight>,
    pub(crate) rng: SplitMix64,
    pub(crate) now: u64,
    pub(crate) checker: Checker,
    trace: VecDeque<Event>,
    /// Messages between these (ordered) pairs are dropped.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Network behaviour (percentages and ticks).
    pub(crate) drop_pct: u64,
    pub(crate) dup_pct: u64,
    pub(crate) max_delay_ticks: u64,
    /// Persist and acknowledge every Ready immediately.
    pub(crate) instant_persist: bool,
    seed: u64,
    last_role: BTreeMap<NodeId, (Role, u64)>,
    /// How to replay this run (printed in failure reports).
    pub(crate) replay_hint: Option<String>,
    /// AppendEntries rejections delivered (scenario tests check back-tracking cost).
    pub(crate) rejections_delivered: u64,
}

/// Trace length kept for failure reports.
const TRACE_EVENTS: usize = 120;

/// Readies drained per node per step (each Ready is finite; this bounds the loop).
const MAX_READIES_PER_DRAIN: usize = 64;

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
            nodes.insert(
                id,
                SimNode {
                    raft: None,
                    down_disk: Some(disk),
                    pending: VecDeque::new(),
                    cfg: make_cfg(id),
                    boots: 0,
                },
            );
        }
        let mut c = Cluster {
            nodes,
            net: Vec::new(),
            rng: SplitMix64::new(seed),
            now: 0,
            checker: Checker::default(),
            trace: VecDeque::new(),
            blocked: BTreeSet::new(),
            drop_pct: 0,
            dup_pct: 0,
            max_delay_ticks: 0,
            instant_persist: true,
            seed,
            last_role: BTreeMap::new(),
            replay_hint: None,
            rejections_delivered: 0,
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
            c.nodes.insert(
                id,
                SimNode {
                    raft: None,
                    down_disk: Some(disk),
                    pending: VecDeque::new(),
                    cfg: make_cfg(id),
                    boots: 0,
                },
            );
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
            match &n.raft {
                Some(r) => {
                    let st = r.status();
                    let _ = writeln!(
                        s,
                        "  node {id}: {} term {} leader {:?} commit {} log {}..={} persisted {} voters {:?} learners {:?}",
                        st.role,
                        st.term,
                        st.leader.map(|l| l.0),
                        st.commit,
                        st.first_index,
                        st.last_index,
                        st.persisted,
                        st.membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                        st.membership.learners.iter().map(|v| v.0).collect::<Vec<_>>(),
                    );
                }
                None => {
                    let _ = writeln!(s, "  node {id}: down");
                }
            }
        }
        match &self.replay_hint {
            Some(h) => {
                let _ = writeln!(s, "replay: {h}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "replay: RAFT_SIM_SEED={} cargo test --lib raft::sim::tests::replay_seed -- --nocapture",
                    self.seed
                );
            }
        }
        s
    }

    // ------------------------------------------------------------ processes

    /// Boots (or reboots) a node from its disk.
    pub(crate) fn start(&mut self, id: NodeId) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let n = self.nodes.get_mut(&id).ok_or("no such node")?;
        let disk = n.down_disk.take().ok_or("node already up")?;
        n.boots += 1;
        let raft = RaftNode::new(n.cfg.clone(), disk, seed).map_err(|e| e.to_string())?;
        let commit = raft.commit_index();
        n.raft = Some(raft);
        self.checker.on_boot(id, commit);
        if n.boots > 1 {
            self.record(Event::Restart(id));
        }
        Ok(())
    }

    /// Crashes a node: unacknowledged writes are lost; the disk survives.
    ///
    /// Some of the pending writes may have reached the disk without the node hearing
    /// about it (the fsync finished, the process died before the acknowledgement): a
    /// random prefix of them is applied, the rest is lost. Storage may legitimately
    /// hold more than was acknowledged.
    pub(crate) fn crash(&mut self, id: NodeId) {
        let written = self.rng.below(3) as usize;
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if let Some(r) = n.raft.take() {
            let mut disk = r.into_storage();
            for w in n.pending.drain(..).take(written) {
                if let Some(s) = w.snapshot {
                    disk.install(s);
                }
                if disk.append(&w.entries).is_err() {
                    break;
                }
                if let Some(hs) = w.hard_state {
                    disk.set_hard_state(hs);
                }
            }
            n.down_disk = Some(disk);
            self.last_role.remove(&id);
            self.record(Event::Crash(id));
        }
    }

    // ------------------------------------------------------------ network

    pub(crate) fn partition(&mut self, group: &[NodeId]) {
        self.blocked.clear();
        let ids = self.ids();
        for a in &ids {
            for b in &ids {
                if group.contains(a) != group.contains(b) {
                    self.blocked.insert((*a, *b));
                }
            }
        }
        self.record(Event::Partition(group.to_vec()));
    }

    /// Cuts `id` off from everyone (both directions).
    pub(crate) fn isolate(&mut self, id: u64) {
        self.partition(&[NodeId(id)]);
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
        self.record(Event::Heal);
    }

    /// Blocks messages from `a` to `b` only.
    pub(crate) fn block_one_way(&mut self, a: u64, b: u64) {
        self.blocked.insert((NodeId(a), NodeId(b)));
    }

    fn enqueue(&mut self, m: Message) {
        if self.drop_pct > 0 && self.rng.chance(self.drop_pct) {
            self.record(Event::Drop(m.from, m.to, m.body.name()));
            return;
        }
        let copies = if self.dup_pct > 0 && self.rng.chance(self.dup_pct) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.below(self.max_delay_ticks + 1);
            self.net.push(InFlight {
                deliver_at: self.now + delay,
                msg: m.clone(),
            });
        }
    }

    /// Delivers one message (the oldest due one when `random` is false, a random
    /// due one otherwise). Returns false when none is due.
    pub(crate) fn deliver_one(&mut self, random: bool) -> Result<bool, String> {
        let due: Vec<usize> = self
            .net
            .iter()
            .enumerate()
            .filter(|(_, f)| f.deliver_at <= self.now)
            .map(|(i, _)| i)
            .collect();
        if due.is_empty() {
            return Ok(false);
        }
        let pick = if random {
            due[self.rng.below(due.len() as u64) as usize]
        } else {
            due[0]
        };
        let f = self.net.remove(pick);
        self.deliver(f.msg)?;
        Ok(true)
    }

    fn deliver(&mut self, m: Message) -> Result<(), String> {
        if self.blocked.contains(&(m.from, m.to)) || !self.is_up(m.to) {
            self.record(Event::Drop(m.from, m.to, m.body.name()));
            return Ok(());
        }
        if matches!(
            m.body,
            MessageBody::AppendEntriesResponse { reject: true, .. }
        ) {
            self.rejections_delivered += 1;
        }
        self.record(Event::Deliver(m.clone()));
        let to = m.to;
        let node = self.nodes.get_mut(&to).and_then(|n| n.raft.as_mut());
        if let Some(r) = node {
            r.step(m)
                .map_err(|e| format!("node {to} step failed: {e}"))?;
        }
        self.settle(to)
    }

    /// Delivers every message, in order, until the network is quiet (manual mode).
    /// Ignores delivery times. Bounded.
    pub(crate) fn stabilize(&mut self) {
        for _ in 0..100_000 {
            if self.net.is_empty() {
                return;
            }
            let f = self.net.remove(0);
            if let Err(e) = self.deliver(f.msg) {
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
        self.net.drain(..).map(|f| f.msg).collect()
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

    /// Ticks one node.
    pub(crate) fn tick_node(&mut self, id: NodeId) -> Result<(), String> {
        if let Some(r) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
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
        let Some(n) = self.nodes.get_mut(&id) else {
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

    /// Drains node `id`'s Readies: checks them, queues writes and sends messages.
    /// Then runs the cluster-wide checks.
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
            if must_persist {
                let n = self.nodes.get_mut(&id).expect("node exists");
                n.pending.push_back(PendingWrite {
                    seq,
                    hard_state: rd.hard_state,
                    snapshot: rd.snapshot,
                    entries: rd.entries,
                });
            }
            for m in rd.messages {
                self.enqueue(m);
            }
            if must_persist && self.instant_persist {
                self.persist(id, usize::MAX)?;
            }
        }
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
        }
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
        let p = r.propose(batch)?;
        self.record(Event::Propose(NodeId(id), p.first, p.last));
        if let Err(e) = self.settle(NodeId(id)) {
            panic!("{}", self.report(&e));
        }
        Ok(p.last)
    }

    /// The message bodies currently in flight from `from` to `to`.
    pub(crate) fn bodies(&self, from: u64, to: u64) -> Vec<&MessageBody> {
        self.net
            .iter()
            .filter(|f| f.msg.from == NodeId(from) && f.msg.to == NodeId(to))
            .map(|f| &f.msg.body)
            .collect()
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
                MessageBody::Heartbeat { commit } => format!(" commit={commit}"),
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
        Event::Crash(id) => format!("CRASH node {id}"),
        Event::Restart(id) => format!("RESTART node {id}"),
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
            data: format!("{i}@{t}").into_bytes(),
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
