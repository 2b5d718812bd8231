//! Multi-group simulator (tests only): N nodes each host the same G Raft groups
//! (topic partitions), every replica the REAL [`Driver`] over its own simulated
//! disk, all groups sharing ONE network between node pairs (each message tagged
//! with its group), as the node's single raft thread runs many drivers.
//!
//! What it adds to the single-group simulator (`super`):
//! * Quiescence ([`crate::raft::Config::quiesce`] on): the runner skips the ticks of
//!   every group whose [`Driver::is_quiesced`] is true, as the node does, and the
//!   harness counts the Raft messages sent and the ticks run (idle cost).
//! * A simulated failure detector (gossip's): node `b` is dead to node `a` once `a`
//!   has not been able to hear from `b` for [`DETECT_MS`] (`b` crashed, or the
//!   link `b -> a` is cut), plus false reports a run injects ("`b` is dead" while
//!   it runs). Each change of a node's view goes to every group it hosts through
//!   [`Driver::set_node_liveness`]. Tests can switch it off and report by hand.
//! * Faults: message loss, duplication, delay and reordering, one-way and
//!   symmetric partitions (checked at delivery), node crashes (every group on the
//!   node loses what it had not synced) and restarts. Disks are not damaged here
//!   (the single-group simulator covers storage faults and healing).
//!
//! Checked after every input, per group, with the single-group checker
//! (`super::checker`): election safety, log matching, committed entries never
//! change, leader completeness, acknowledged produces at exactly their offsets,
//! high-water marks and durable majorities, and the Ready contract of every
//! message sent. `run` adds liveness after healing (a leader in every group, a new
//! produce acknowledged in every group, every replica caught up), that every
//! group then quiesces everywhere with no message sent while idle, and that every
//! acknowledged produce is in every replica's durable log.
//!
//! Replay a failing seed: `REPLICA_SIM_SEED=<n> cargo test --lib
//! replica::sim::multi::tests::replay_seed -- --nocapture`.

mod run;
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use super::checker::{self, Checker};
use super::disk::{SimDisk, SimStorage};
use super::{fmt_message, TICK_MS};
use crate::raft::{Config, Index, LogStart, Membership, Message, MessageBody, NodeId, RaftNode};
use crate::raft::{Role, SplitMix64, Term};
use crate::replica::{
    Driver, DriverConfig, DriverError, Effect, ProduceError, ProduceRequest, Produced, Recovering,
    Values,
};

/// A node is reported dead to another after this long unreachable.
pub(crate) const DETECT_MS: u64 = 3 * super::ELECTION_MS;
/// Produces queued at one replica before it refuses more.
const INBOX_CAP: usize = 16;
/// Most driver inputs in one settle.
const MAX_SETTLE_ROUNDS: usize = 64;
/// Most effect batches drained per settle round.
const MAX_EFFECT_ROUNDS: usize = 32;

/// A group (topic partition) number.
pub(crate) type Group = u64;

/// Network behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NetFaults {
    pub(crate) drop_pct: u64,
    pub(crate) dup_pct: u64,
    /// Delay: 1..=this ms.
    pub(crate) max_delay_ms: u64,
    /// A Sync completes 0..=this ms after it was asked for.
    pub(crate) max_sync_delay_ms: u64,
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MultiStats {
    /// Raft messages handed to the network.
    pub(crate) sent: u64,
    /// Group ticks run / skipped because the group was quiesced.
    pub(crate) ticks_run: u64,
    pub(crate) ticks_skipped: u64,
    pub(crate) crashes: u64,
    pub(crate) false_reports: u64,
    pub(crate) liveness_reports: u64,
    pub(crate) acked: u64,
}

struct Queued {
    req: u64,
    values: Vec<Vec<u8>>,
    deadline_ms: u64,
}

/// One group's replica in a running process.
struct Proc {
    driver: Driver<SimStorage, u64>,
    inbox: VecDeque<Queued>,
    /// Requested fsyncs: (due time, seq).
    syncs: VecDeque<(u64, u64)>,
}

/// One group's replica on a node: its disk survives the process.
struct Replica {
    disk: Rc<RefCell<SimDisk>>,
    proc: Option<Proc>,
}

struct SimNode {
    up: bool,
    incarnation: u64,
    replicas: BTreeMap<Group, Replica>,
    next_tick_ms: u64,
    /// The failure detector's view here: since when each peer is unreachable.
    unreachable_since: BTreeMap<NodeId, u64>,
    /// Injected false reports: peer → until when it is "dead" here.
    false_dead_until: BTreeMap<NodeId, u64>,
    /// The dead set last handed to the drivers.
    reported: BTreeSet<NodeId>,
}

struct InFlight {
    at_ms: u64,
    group: Group,
    msg: Message,
    to_incarnation: u64,
}

/// N nodes × G groups over one network.
pub(crate) struct Multi {
    nodes: BTreeMap<NodeId, SimNode>,
    checkers: BTreeMap<Group, Checker>,
    net: Vec<InFlight>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) rng: SplitMix64,
    pub(crate) now_ms: u64,
    pub(crate) faults: NetFaults,
    /// The simulated failure detector runs (tests may report by hand instead).
    pub(crate) detector: bool,
    /// The runner skips the ticks of quiesced groups (else it ticks them too,
    /// which must be harmless).
    pub(crate) skip_quiesced: bool,
    raft_cfg: Config,
    seed: u64,
    pub(crate) stats: MultiStats,
    answers: Vec<(Group, u64, Result<Produced, ProduceError>)>,
    trace: VecDeque<(u64, String)>,
    trace_cap: usize,
    next_req: u64,
}

impl Multi {
    /// `n` nodes, each hosting groups `0..groups`, every group with all `n` nodes
    /// as voters from the start. Nothing runs until [`Multi::start`].
    pub(crate) fn new(seed: u64, n: u64, groups: u64, raft_cfg: Config, trace_cap: usize) -> Multi {
        let boot = Membership::with_voters(1..=n);
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let replicas = (0..groups)
                .map(|g| {
                    let disk = SimDisk::new(LogStart {
                        membership: boot.clone(),
                        ..LogStart::default()
                    });
                    let r = Replica {
                        disk: Rc::new(RefCell::new(disk)),
                        proc: None,
                    };
                    (g, r)
                })
                .collect();
            let node = SimNode {
                up: false,
                incarnation: 0,
                replicas,
                next_tick_ms: 0,
                unreachable_since: BTreeMap::new(),
                false_dead_until: BTreeMap::new(),
                reported: BTreeSet::new(),
            };
            nodes.insert(NodeId(id), node);
        }
        Multi {
            nodes,
            checkers: (0..groups)
                .map(|g| (g, Checker::new(boot.clone())))
                .collect(),
            net: Vec::new(),
            blocked: BTreeSet::new(),
            rng: SplitMix64::new(seed),
            now_ms: 0,
            faults: NetFaults::default(),
            detector: true,
            skip_quiesced: true,
            raft_cfg,
            seed,
            stats: MultiStats::default(),
            answers: Vec::new(),
            trace: VecDeque::new(),
            trace_cap,
            next_req: 0,
        }
    }

    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn groups(&self) -> Vec<Group> {
        self.checkers.keys().copied().collect()
    }

    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.up)
    }

    fn proc(&self, id: NodeId, g: Group) -> Option<&Proc> {
        self.nodes
            .get(&id)
            .and_then(|n| n.replicas.get(&g))
            .and_then(|r| r.proc.as_ref())
    }

    fn proc_mut(&mut self, id: NodeId, g: Group) -> Option<&mut Proc> {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.replicas.get_mut(&g))
            .and_then(|r| r.proc.as_mut())
    }

    /// The driver of group `g` on a running node.
    pub(crate) fn driver(&self, id: NodeId, g: Group) -> Option<&Driver<SimStorage, u64>> {
        self.proc(id, g).map(|p| &p.driver)
    }

    /// The running leader of group `g` with the highest term, if any.
    pub(crate) fn leader(&self, g: Group) -> Option<NodeId> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.driver(id, g).map(|d| (d.raft(), id)))
            .filter(|(r, _)| r.role() == Role::Leader)
            .max_by_key(|(r, id)| (r.term(), *id))
            .map(|(_, id)| id)
    }

    /// True if group `g` is quiesced on every running node.
    pub(crate) fn quiesced_everywhere(&self, g: Group) -> bool {
        self.ids()
            .into_iter()
            .filter(|id| self.is_up(*id))
            .all(|id| self.driver(id, g).is_some_and(|d| d.is_quiesced()))
    }

    pub(crate) fn take_answers(&mut self) -> Vec<(Group, u64, Result<Produced, ProduceError>)> {
        std::mem::take(&mut self.answers)
    }

    /// Messages on the network.
    pub(crate) fn in_flight(&self) -> usize {
        self.net.len()
    }

    pub(crate) fn acked(&self) -> u64 {
        self.checkers.values().map(|c| c.acked).sum()
    }

    fn record(&mut self, what: impl FnOnce() -> String) {
        if self.trace_cap == 0 {
            return;
        }
        if self.trace.len() >= self.trace_cap {
            self.trace.pop_front();
        }
        let line = what();
        self.trace.push_back((self.now_ms, line));
    }

    // ------------------------------------------------------------ processes

    /// Starts node `id`'s process: every group's driver from its durable state.
    pub(crate) fn start(&mut self, id: NodeId) -> Result<(), String> {
        if self.is_up(id) {
            return Ok(());
        }
        let now = self.now_ms;
        let n = self.nodes.get_mut(&id).ok_or("no such node")?;
        n.up = true;
        n.incarnation += 1;
        n.next_tick_ms = now + TICK_MS;
        n.unreachable_since.clear();
        n.false_dead_until.clear();
        n.reported.clear();
        self.record(|| format!("START node {id}"));
        for g in self.groups() {
            self.start_replica(id, g)?;
        }
        // Its peers reconnect to it.
        for other in self.ids() {
            if other != id && self.is_up(other) {
                for g in self.groups() {
                    self.input(other, g, |d| d.peer_connected(id))?;
                }
            }
        }
        Ok(())
    }

    fn start_replica(&mut self, id: NodeId, g: Group) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let mut cfg = self.raft_cfg.clone();
        cfg.id = id;
        let r = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.replicas.get_mut(&g))
            .ok_or("no such replica")?;
        let (last, persisted_commit, marker) = {
            let d = r.disk.borrow();
            let hs = d.hard_state;
            (d.durable.last_index(), hs.commit, d.recovering_marker)
        };
        let raft = RaftNode::new(cfg, SimStorage(Rc::clone(&r.disk)), seed)
            .map_err(|e| format!("node {id} group {g} cannot restart: {e}"))?;
        // As `node::Node::start`: a log that ends below the persisted commit (or a
        // replica that stopped while catching up) does not vote until caught up.
        let recovering = (marker || last < persisted_commit).then_some(Recovering {
            min_commit: persisted_commit,
            need_leader: true,
        });
        r.disk.borrow_mut().recovering_marker = recovering.is_some();
        let commit = raft.commit_index();
        r.proc = Some(Proc {
            driver: Driver::new(raft, DriverConfig::default(), recovering),
            inbox: VecDeque::new(),
            syncs: VecDeque::new(),
        });
        if let Some(c) = self.checkers.get_mut(&g) {
            c.on_boot(id, commit);
        }
        let now = self.now_ms;
        self.input(id, g, |d| d.start(now))
    }

    /// Kills node `id`: every group loses what its disk had not made durable.
    pub(crate) fn crash(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if !n.up {
            return;
        }
        n.up = false;
        let mut lost = 0;
        for r in n.replicas.values_mut() {
            r.proc = None;
            lost += r.disk.borrow_mut().crash(&mut self.rng);
        }
        self.stats.crashes += 1;
        self.record(|| format!("CRASH node {id} ({lost} unsynced appends lost)"));
    }

    // ------------------------------------------------------------ inputs

    /// Feeds one input to group `g`'s driver on node `id`, then settles it.
    fn input(
        &mut self,
        id: NodeId,
        g: Group,
        f: impl FnOnce(&mut Driver<SimStorage, u64>) -> Result<(), DriverError>,
    ) -> Result<(), String> {
        let Some(p) = self.proc_mut(id, g) else {
            return Ok(());
        };
        f(&mut p.driver).map_err(|e| format!("node {id} group {g}: driver failed: {e}"))?;
        self.settle(id, g)?;
        let recovered = self.driver(id, g).is_some_and(|d| !d.recovering());
        if recovered {
            self.nodes[&id].replicas[&g]
                .disk
                .borrow_mut()
                .recovering_marker = false;
        }
        Ok(())
    }

    fn settle(&mut self, id: NodeId, g: Group) -> Result<(), String> {
        for _ in 0..MAX_SETTLE_ROUNDS {
            self.execute(id, g)?;
            self.check_group(g)?;
            if !self.poll(id, g)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn execute(&mut self, id: NodeId, g: Group) -> Result<(), String> {
        for _ in 0..MAX_EFFECT_ROUNDS {
            let Some(p) = self.proc_mut(id, g) else {
                return Ok(());
            };
            let effects = p.driver.take_effects();
            if effects.is_empty() {
                return Ok(());
            }
            for e in effects {
                match e {
                    Effect::Send(m) => self.take_send(g, m)?,
                    Effect::Sync { seq } => self.queue_sync(id, g, seq),
                    Effect::Complete { reply, result } => {
                        self.record(|| format!("g{g} node {id} answers {reply}: {result:?}"));
                        self.checker(g)?.on_complete(id, reply, &result)?;
                        self.answers.push((g, reply, result));
                    }
                    Effect::HighWater(hw) => self.checker(g)?.on_high_water(id, hw)?,
                    Effect::FirstIndex(_) => {}
                    Effect::Role(s) => {
                        self.record(|| format!("g{g} node {id} is {} in term {}", s.role, s.term))
                    }
                }
            }
        }
        Ok(())
    }

    fn checker(&mut self, g: Group) -> Result<&mut Checker, String> {
        self.checkers
            .get_mut(&g)
            .ok_or_else(|| format!("no group {g}"))
    }

    fn queue_sync(&mut self, id: NodeId, g: Group, seq: u64) {
        let delay = self.rng.below(self.faults.max_sync_delay_ms + 1);
        let now = self.now_ms;
        if let Some(p) = self.proc_mut(id, g) {
            let after = p.syncs.back().map_or(0, |s| s.0);
            p.syncs.push_back(((now + delay).max(after), seq));
        }
    }

    /// Completes the fsyncs due now as one, or proposes queued produces; true if
    /// it fed an input.
    fn poll(&mut self, id: NodeId, g: Group) -> Result<bool, String> {
        let now = self.now_ms;
        let Some(p) = self.proc_mut(id, g) else {
            return Ok(false);
        };
        let mut seq = None;
        while p.syncs.front().is_some_and(|s| s.0 <= now) {
            seq = p.syncs.pop_front().map(|s| s.1);
        }
        if let Some(seq) = seq {
            self.nodes[&id].replicas[&g].disk.borrow_mut().sync()?;
            let p = self.proc_mut(id, g).ok_or("gone")?;
            p.driver
                .synced(seq)
                .map_err(|e| format!("node {id} group {g}: synced failed: {e}"))?;
            return Ok(true);
        }
        if !p.driver.wants_produces() || p.inbox.is_empty() {
            return Ok(false);
        }
        let reqs: Vec<ProduceRequest<u64>> = p
            .inbox
            .drain(..)
            .map(|q| ProduceRequest {
                values: Values::Many(q.values),
                producer: None,
                kind: crate::types::RecordKind::Data,
                deadline_ms: q.deadline_ms,
                reply: q.req,
            })
            .collect();
        p.driver
            .propose(reqs)
            .map_err(|e| format!("node {id} group {g}: propose failed: {e}"))?;
        Ok(true)
    }

    /// A client hands `n` fresh values for group `g` to node `id`. Returns the
    /// request id, or None if the node is down (connection refused).
    pub(crate) fn submit(
        &mut self,
        id: NodeId,
        g: Group,
        n: usize,
        deadline_ms: u64,
    ) -> Result<Option<u64>, String> {
        if self.proc(id, g).is_none() {
            return Ok(None);
        }
        self.next_req += 1;
        let req = self.next_req;
        let values: Vec<Vec<u8>> = (0..n)
            .map(|k| format!("g{g}r{req}.{k}").into_bytes())
            .collect();
        self.checker(g)?.on_request(req, &values, false);
        self.record(|| format!("g{g} client request {req} to node {id}"));
        let p = self.proc_mut(id, g).ok_or("gone")?;
        if p.inbox.len() >= INBOX_CAP {
            self.not_proposed(g, req)?;
            return Ok(Some(req));
        }
        p.inbox.push_back(Queued {
            req,
            values,
            deadline_ms,
        });
        self.settle(id, g)?;
        Ok(Some(req))
    }

    fn not_proposed(&mut self, g: Group, req: u64) -> Result<(), String> {
        self.checker(g)?.on_not_proposed(req)?;
        let answer = Err(ProduceError::Unavailable("not proposed".into()));
        self.answers.push((g, req, answer));
        Ok(())
    }

    /// Feeds any input to group `g`'s driver on node `id` (tests), then settles.
    pub(crate) fn with_driver(
        &mut self,
        id: NodeId,
        g: Group,
        f: impl FnOnce(&mut Driver<SimStorage, u64>) -> Result<(), DriverError>,
    ) -> Result<(), String> {
        self.input(id, g, f)
    }

    /// Graceful hand-over of group `g` by node `id` if it leads it.
    pub(crate) fn transfer(&mut self, id: NodeId, g: Group) -> Result<(), String> {
        self.record(|| format!("g{g} node {id} asked to transfer leadership"));
        self.input(id, g, |d| d.transfer_leadership())
    }

    // ------------------------------------------------------------ network

    fn take_send(&mut self, g: Group, m: Message) -> Result<(), String> {
        {
            let d = self.nodes[&m.from].replicas[&g].disk.borrow();
            checker::check_send(&m, &d).map_err(|e| format!("group {g}: {e}"))?;
        }
        if let MessageBody::AppendEntries {
            prev_term, entries, ..
        } = &m.body
        {
            // Sent entries exist outside the sender's page cache from now on.
            self.checker(g)?.on_append(m.from, *prev_term, entries)?;
        }
        self.stats.sent += 1;
        if self.faults.drop_pct > 0 && self.rng.chance(self.faults.drop_pct) {
            return Ok(());
        }
        let copies = if self.rng.chance(self.faults.dup_pct) {
            2
        } else {
            1
        };
        let to_incarnation = match self.nodes.get(&m.to) {
            Some(n) if n.up => n.incarnation,
            _ => u64::MAX,
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.faults.max_delay_ms.max(1));
            self.net.push(InFlight {
                at_ms: self.now_ms + delay,
                group: g,
                msg: m.clone(),
                to_incarnation,
            });
        }
        Ok(())
    }

    /// Delivers every message due now, in random order.
    fn deliver_due(&mut self) -> Result<(), String> {
        let now = self.now_ms;
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|f| f.at_ms <= now);
        self.net = rest;
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for f in due {
            let (from, to) = (f.msg.from, f.msg.to);
            let alive = self
                .nodes
                .get(&to)
                .is_some_and(|n| n.up && n.incarnation == f.to_incarnation);
            if self.blocked.contains(&(from, to)) || !alive {
                continue;
            }
            let g = f.group;
            self.record(|| format!("g{g} deliver {}", fmt_message(&f.msg)));
            self.input(to, g, |d| d.step(f.msg))?;
        }
        Ok(())
    }

    /// Cuts every link between `side` and the rest (both ways).
    pub(crate) fn partition(&mut self, side: &[NodeId]) {
        let ids = self.ids();
        for a in &ids {
            for b in &ids {
                if side.contains(a) != side.contains(b) {
                    self.blocked.insert((*a, *b));
                }
            }
        }
        self.record(|| format!("PARTITION {side:?} from the rest"));
    }

    /// Cuts one link, one way.
    pub(crate) fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
        self.record(|| format!("CUT {from} -> {to}"));
    }

    /// Restores every link; the two ends of each reconnect (every group).
    pub(crate) fn heal(&mut self) -> Result<(), String> {
        let cut = std::mem::take(&mut self.blocked);
        self.record(|| "HEAL every link".into());
        for (a, b) in cut {
            if self.is_up(a) && self.is_up(b) {
                for g in self.groups() {
                    self.input(a, g, |d| d.peer_connected(b))?;
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ liveness reports

    /// Node `at` believes `dead` dead for `ms` although it may run (a false report
    /// when it does).
    pub(crate) fn report_dead(&mut self, at: NodeId, dead: NodeId, ms: u64) {
        let until = self.now_ms + ms;
        if let Some(n) = self.nodes.get_mut(&at) {
            n.false_dead_until.insert(dead, until);
        }
        if self.is_up(dead) {
            self.stats.false_reports += 1;
        }
        self.record(|| format!("REPORT at node {at}: node {dead} dead for {ms} ms"));
    }

    /// Node `at`'s failure detector (module docs); feeds every group on a change.
    fn update_liveness(&mut self, at: NodeId) -> Result<(), String> {
        let now = self.now_ms;
        let ids = self.ids();
        let reachable: Vec<(NodeId, bool)> = ids
            .iter()
            .filter(|b| **b != at)
            .map(|b| (*b, self.is_up(*b) && !self.blocked.contains(&(*b, at))))
            .collect();
        let detector = self.detector;
        let n = self.nodes.get_mut(&at).ok_or("no such node")?;
        let mut dead = BTreeSet::new();
        for (b, ok) in reachable {
            if ok {
                n.unreachable_since.remove(&b);
            } else {
                let since = *n.unreachable_since.entry(b).or_insert(now);
                if detector && now - since >= DETECT_MS {
                    dead.insert(b);
                }
            }
        }
        n.false_dead_until.retain(|_, until| *until > now);
        dead.extend(n.false_dead_until.keys().copied());
        if dead == n.reported {
            return Ok(());
        }
        n.reported = dead.clone();
        self.stats.liveness_reports += 1;
        self.record(|| format!("node {at} failure detector: dead {dead:?}"));
        for g in self.groups() {
            self.input(at, g, |d| d.set_node_liveness(&dead))?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ time

    /// One virtual millisecond: deliveries, fsync completions, ticks.
    pub(crate) fn step_ms(&mut self) -> Result<(), String> {
        self.now_ms += 1;
        self.deliver_due()?;
        for id in self.ids() {
            for g in self.groups() {
                if self.poll(id, g)? {
                    self.settle(id, g)?;
                }
            }
        }
        self.tick_due()
    }

    /// Runs `ms` virtual milliseconds.
    pub(crate) fn run_ms(&mut self, ms: u64) -> Result<(), String> {
        for _ in 0..ms {
            self.step_ms()?;
        }
        Ok(())
    }

    fn tick_due(&mut self) -> Result<(), String> {
        let now = self.now_ms;
        for id in self.ids() {
            let n = self.nodes.get_mut(&id).ok_or("no such node")?;
            if !n.up || n.next_tick_ms > now {
                continue;
            }
            n.next_tick_ms = (n.next_tick_ms + TICK_MS).max(now + 1);
            self.update_liveness(id)?;
            for g in self.groups() {
                self.tick_group(id, g)?;
            }
        }
        Ok(())
    }

    /// The runner: expires queued produces, and ticks the group unless quiesced.
    fn tick_group(&mut self, id: NodeId, g: Group) -> Result<(), String> {
        let now = self.now_ms;
        let Some(p) = self.proc_mut(id, g) else {
            return Ok(());
        };
        let (expired, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut p.inbox)
            .into_iter()
            .partition(|q| q.deadline_ms <= now);
        p.inbox = keep.into();
        let quiesced = p.driver.is_quiesced();
        for q in expired {
            self.not_proposed(g, q.req)?;
        }
        if quiesced && self.skip_quiesced {
            self.stats.ticks_skipped += 1;
            return Ok(());
        }
        self.stats.ticks_run += 1;
        self.input(id, g, |d| d.tick(now))
    }

    // ------------------------------------------------------------ checks

    /// The per-step checks of group `g` over every node (see `super::checker`).
    fn check_group(&mut self, g: Group) -> Result<(), String> {
        let checker = self.checkers.get_mut(&g).ok_or("no group")?;
        let mut disks = Vec::new();
        let mut leaders = Vec::new();
        let mut configs = Vec::new();
        for (id, n) in &self.nodes {
            let r = &n.replicas[&g];
            for a in std::mem::take(&mut r.disk.borrow_mut().journal) {
                checker.on_append(*id, a.prev_term, &a.entries)?;
            }
            disks.push((*id, r.disk.borrow(), r.proc.as_ref()));
        }
        for (id, d, p) in &disks {
            let Some(p) = p else { continue };
            let r = p.driver.raft();
            let fail = |e: String| format!("group {g}: {e}");
            checker
                .on_role(*id, r.role(), r.term(), &d.cache)
                .map_err(fail)?;
            checker
                .on_commit(*id, r.term(), r.commit_index(), &d.cache)
                .map_err(fail)?;
            if r.role() == Role::Leader {
                leaders.push((*id, r.term(), &d.cache));
            }
            configs.push(r.membership().clone());
        }
        checker
            .check_fresh(&leaders)
            .map_err(|e| format!("group {g}: {e}"))?;
        checker.set_live_configs(configs);
        let refs: Vec<(NodeId, &SimDisk)> = disks.iter().map(|(id, d, _)| (*id, &**d)).collect();
        checker
            .check_durability(&refs)
            .map_err(|e| format!("group {g}: {e}"))
    }

    /// End of run: every acknowledged produce is in every replica's durable log at
    /// its offsets, wherever that replica's high-water mark covers it.
    pub(crate) fn check_acked_everywhere(&self) -> Result<(), String> {
        for (g, c) in &self.checkers {
            for (req, first, values) in c.acked_requests() {
                for (id, n) in &self.nodes {
                    let hw = self.driver(*id, *g).map_or(Index(0), |d| d.commit());
                    let d = n.replicas[g].disk.borrow();
                    for (k, v) in values.iter().enumerate() {
                        let i = first + k as u64;
                        if i > hw || i <= d.durable.start.index {
                            continue;
                        }
                        let value = d.durable.entry(i).and_then(super::checker::client_value);
                        if value != Some(&v[..]) {
                            return Err(format!(
                                "ACKNOWLEDGED PRODUCE violated: group {g} request {req} value \
                                 {k} acked at {i} is not in node {id}'s durable log (hw {hw})"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ reports

    /// The failure report: what, the trace, every replica, the replay command.
    pub(crate) fn report(&self, what: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "MULTI-GROUP SIMULATION FAILURE (seed {}): {what}",
            self.seed
        );
        let _ = writeln!(s, "last {} events (virtual ms):", self.trace.len());
        for (t, e) in &self.trace {
            let _ = writeln!(s, "  {t:>6} {e}");
        }
        for g in self.groups() {
            for id in self.ids() {
                let _ = writeln!(s, "  {}", self.describe(id, g));
            }
        }
        let _ = writeln!(
            s,
            "replay: REPLICA_SIM_SEED={} cargo test --lib replica::sim::multi::tests::replay_seed -- --nocapture",
            self.seed
        );
        s
    }

    fn describe(&self, id: NodeId, g: Group) -> String {
        let Some(d) = self.driver(id, g) else {
            return format!("g{g} node {id}: down");
        };
        let r = d.raft();
        format!(
            "g{g} node {id}: {} term {} leader {:?} commit {} log ..={} persisted {} \
             quiesced {} recovering {}",
            r.role(),
            r.term(),
            r.leader().map(|l| l.0),
            r.commit_index(),
            r.last_index(),
            r.persisted_index(),
            d.is_quiesced(),
            d.recovering()
        )
    }

    /// The highest term any running replica of group `g` is in.
    pub(crate) fn max_term(&self, g: Group) -> Term {
        self.ids()
            .into_iter()
            .filter_map(|id| self.driver(id, g).map(|d| d.raft().term()))
            .max()
            .unwrap_or(Term(0))
    }
}
