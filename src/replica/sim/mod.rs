//! Deterministic simulator of a replicated log (tests only): N processes, each the
//! REAL [`Driver`] over a simulated disk, a hostile network, clients, and a checker
//! that runs after every step. Everything random comes from one [`SplitMix64`]
//! seeded by the test, and time is a virtual millisecond clock, so a seed replays
//! exactly.
//!
//! # What a process is
//! A [`Driver`]`<SimStorage, u64>` (the reply handle is the client's request id)
//! plus what the runner (`node::raft_loop`) does around it: an inbox of produces
//! proposed as one batch whenever the driver wants one, a tick every [`TICK_MS`],
//! and the execution of effects: `Send` goes to the network, `Sync { seq }` is
//! queued and completed later (the disk makes every append so far durable, then
//! `synced(seq)`; several due at once are coalesced, as the fsync thread does),
//! `Complete` answers the client, `HighWater` is checked.
//! The cluster forms as in production: node 1 bootstraps alone, the others start
//! fresh and the leader adds and promotes them (the driver's membership policy, fed
//! by `set_members` with every node that runs as live).
//! A restart builds a new `RaftNode` + `Driver` from the DURABLE state only, with
//! the recovery guard of `node::Node::start` (fresh data dir, or a log that ends
//! below the persisted commit: no vote until caught up from a leader).
//!
//! # Fault model (see `disk` for the disk)
//! * Network: loss, duplication, reordering (random delays, random order among
//!   messages due in the same millisecond), and delays of 1 to 20 election
//!   timeouts (requests and answers from old terms arrive late). Partitions are
//!   checked at delivery, so they also cut messages already in flight: symmetric
//!   splits, one-way links, and asymmetric ones (a node that can send but not
//!   receive, or the reverse). Healing reconnects peers (`peer_connected`).
//!   Messages reach only the incarnation of the receiver that was up when they were
//!   sent (a connection dies with the process); messages from a dead incarnation
//!   may still arrive.
//! * Crashes at random times, and aimed at the dangerous moments: right after a
//!   batch of effects that asked for a `Sync` (the batch's messages are already on
//!   the network, the append they depend on is not durable). A crash loses what was
//!   not synced, except a random prefix the disk may have flushed on its own.
//! * Process pauses: a node takes no input, ticks and fsync completions for a long
//!   time, then resumes with its state (messages to it wait in its buffers).
//! * A wiped data dir: a down node restarts under its old id with an empty disk. At
//!   most one at a time, and only when the bound "an acknowledged record survives
//!   any single-node loss" allows it: the other voters of the committed
//!   configuration durably hold every committed entry on a majority, and the wiped
//!   node holds nothing beyond the committed prefix (no acknowledgement of it may
//!   still count toward a commit). A node is not wiped while another node holds a
//!   damaged entry (it may be the one to heal it from).
//! * Storage faults (`disk` describes them), at random times on random nodes, up or
//!   down: bit flips in durable entries, synced writes lost at a crash (detected:
//!   the entry reads damaged), misdirected writes (two entries of one node read
//!   damaged), torn writes at a crash (the unsynced tail cut short), and transient
//!   read errors. Undetectable lost writes are outside the model. Config entries
//!   are never damaged (a node cannot start without them). Bounds, checked before
//!   each injection: every damaged entry keeps an intact durable copy (same index
//!   and term) on another node, so every committed entry keeps one; and the
//!   anchor-checked healer can repair it: the run of damage around it has an intact
//!   entry after it (the anchor) and another node holds the run and the anchor
//!   intact, and no other node's damaged run loses its last such helper. Retention
//!   on a node keeps every index from the lowest entry damaged on another node.
//!
//! # Healing (`mend`)
//! Each process runs the REAL [`crate::replica::heal::Healer`] as the node does:
//! damaged entries its Raft reads meet (the storage records them, as production's
//! `DamageReports`) go to it at the next tick, and a scrubber hands it every
//! damaged run of the log every 50 ticks, each with the first intact entry after
//! it as anchor (a run at the end of the log waits for one). `Fetch` actions are
//! network messages under every network fault, answered by the peer from its own
//! log (a page of contiguous intact records, and its term at the anchor if
//! intact); `Rebuild` writes the records durably where the copy is still damaged,
//! after checking that the log still has the anchor (Raft may have replaced the
//! range meanwhile: then the scrubber finds what is left again).
//!
//! # Checks
//! After every input to a driver (`checker` lists them): Raft safety, acknowledged
//! produces at exactly their offsets with exactly their values, no double answers,
//! the high-water mark against durable majorities (a damaged copy still counts:
//! Raft keeps it), an intact copy of every committed entry damaged somewhere,
//! healed entries equal to what they replace and to what is committed, and the
//! Ready contract for every message as it leaves. `run` adds liveness after
//! healing (every node caught up and every damaged entry healed, or compacted by
//! retention where no node keeps it any more, and a new produce acknowledged) and
//! an end-of-run check that every acknowledged produce is intact in every node's
//! durable log.
//!
//! # Idempotent producers
//! Two of the three client slots are idempotent producers (`run`): each batch
//! carries producer meta, a batch not acknowledged (timeout, leader change, crash,
//! no answer) is sent again as is until it is, and a dedup refusal re-inits the
//! producer. A retry of a written batch must be answered with its original offsets
//! (counted as duplicates; `many_seeds` asserts some happen), and the checker's
//! "no value committed at two offsets" is the exactly-once check across leader
//! changes, crashes, restarts (the dedup state rebuilt from the log), cuts and
//! retention. The `drop_producer_meta` knob shows it catches retries without dedup.
//!
//! # Broken variants (test-only [`Knobs`] of the HARNESS, not the driver)
//! `fake_sync` acknowledges a `Sync` without making the data durable,
//! `skip_recovery_guard` lets a wiped node vote at once, `lazy_hard_state` makes
//! hard-state writes durable only at the next sync, `heal_without_anchor` makes
//! the healer trust any peer's records, `truncate_at_damage` cuts the log at its
//! first damaged entry at a restart, as a torn tail. `tests` shows each is caught.

mod checker;
mod disk;
mod mend;
mod multi;
mod run;
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use crate::raft::{
    Config, Index, LogStart, Membership, Message, MessageBody, NodeId, RaftNode, Role, SplitMix64,
    Term,
};
use crate::replica::dedup::BatchMeta;
use crate::replica::{
    Driver, DriverConfig, DriverError, Effect, MemberView, ProduceError, ProduceRequest, Produced,
    Recovering, Values,
};
use checker::Checker;
use disk::{SimDisk, SimStorage};
use mend::{Mender, Packet};

/// Length of one Raft tick (the election timeout is 10 ticks).
pub(crate) const TICK_MS: u64 = 10;
/// Election timeout of the simulated nodes.
pub(crate) const ELECTION_MS: u64 = 10 * TICK_MS;
/// Produces queued at a node before it refuses more.
const INBOX_CAP: usize = 64;
/// Most requests proposed as one batch.
const MAX_BATCH_REQUESTS: usize = 8;
/// Most driver inputs in one settle (each executes what the previous released).
const MAX_SETTLE_ROUNDS: usize = 64;
/// Most effect batches drained per settle round.
const MAX_EFFECT_ROUNDS: usize = 32;

/// Network and disk behaviour (percentages per message or per mille per Sync).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) drop_pct: u64,
    pub(crate) dup_pct: u64,
    /// Normal delay: 1..=this ms.
    pub(crate) max_delay_ms: u64,
    /// Share of messages delayed by 1 to 20 election timeouts.
    pub(crate) long_delay_pct: u64,
    /// A Sync completes 0..=this ms after it was asked for.
    pub(crate) max_sync_delay_ms: u64,
    /// Per mille of effect batches with a Sync after which the node crashes at once.
    pub(crate) crash_at_sync_permille: u64,
    /// Share of crashes after which a recently synced entry reads damaged (a write
    /// reported done but lost, detected by the checksums).
    pub(crate) lost_write_pct: u64,
}

/// Deliberately broken harness behaviours (the checker must catch each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Knobs {
    /// Call `synced` without making the appended data durable.
    pub(crate) fake_sync: bool,
    /// Start wiped (and truncated) nodes without the recovery guard.
    pub(crate) skip_recovery_guard: bool,
    /// Hard-state writes become durable only at the next sync.
    pub(crate) lazy_hard_state: bool,
    /// The healer trusts a peer's records without the anchor check (the harness
    /// hands it our own term as the peer's term at the anchor).
    pub(crate) heal_without_anchor: bool,
    /// A restart cuts the log at its first damaged entry, as a torn tail is cut.
    pub(crate) truncate_at_damage: bool,
    /// The runner drops idempotent batches' producer meta (no dedup): retries
    /// store values twice.
    pub(crate) drop_producer_meta: bool,
}

/// The simulated wall clock at virtual time 0 (producer batch append times).
const WALL_CLOCK_BASE_MS: u64 = 1_700_000_000_000;

/// A produce waiting in a node's inbox.
struct Queued {
    req: u64,
    values: Vec<Vec<u8>>,
    deadline_ms: u64,
    producer: Option<BatchMeta>,
}

/// A running process.
struct Proc {
    driver: Driver<SimStorage, u64>,
    inbox: VecDeque<Queued>,
    /// Requested fsyncs: (due time, seq), due times non-decreasing.
    syncs: VecDeque<(u64, u64)>,
    next_tick_ms: u64,
    paused_until_ms: u64,
    /// The healer and its runner's state (`mend`).
    mender: Mender,
}

/// A node: its disk survives its processes.
struct SimNode {
    disk: Rc<RefCell<SimDisk>>,
    proc: Option<Proc>,
    incarnation: u64,
    /// The data dir was replaced: the next start is a fresh start.
    fresh: bool,
}

struct InFlight {
    at_ms: u64,
    msg: Packet,
    to_incarnation: u64,
}

/// A compact trace record (formatted only for reports).
#[derive(Clone, Debug)]
enum Event {
    Deliver(Message),
    Drop(NodeId, NodeId, &'static str, &'static str),
    Sync(NodeId, u64),
    Crash(NodeId, usize, bool),
    Restart(NodeId, bool),
    Wipe(NodeId),
    Pause(NodeId, u64),
    Block(Vec<(NodeId, NodeId)>),
    Heal,
    Submit(NodeId, u64, usize),
    Propose(NodeId, Vec<u64>),
    Complete(NodeId, u64, Result<Produced, ProduceError>),
    HighWater(NodeId, Index),
    FirstIndex(NodeId, Index),
    Role(NodeId, Role, Term, Option<NodeId>),
    Compact(NodeId, Index),
    Transfer(NodeId),
    /// Storage faults and healing (already formatted: rare).
    Storage(NodeId, String),
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) crashes: u64,
    pub(crate) crashes_at_sync: u64,
    pub(crate) wipes: u64,
    pub(crate) pauses: u64,
    pub(crate) stale_deliveries: u64,
    pub(crate) acked: u64,
    pub(crate) commits: u64,
    pub(crate) liveness_ms: u64,
    pub(crate) damaged: u64,
    pub(crate) read_errors: u64,
    pub(crate) healed: u64,
    /// Idempotent retries answered with their original offsets.
    pub(crate) duplicates: u64,
    /// Idempotent batches refused by the dedup state (the client re-inits).
    pub(crate) producer_errors: u64,
}

/// The simulated cluster.
pub(crate) struct Cluster {
    nodes: BTreeMap<NodeId, SimNode>,
    net: Vec<InFlight>,
    pub(crate) rng: SplitMix64,
    pub(crate) now_ms: u64,
    checker: Checker,
    trace: VecDeque<(u64, Event)>,
    trace_cap: usize,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) faults: Faults,
    knobs: Knobs,
    raft_cfg: Config,
    driver_cfg: DriverConfig,
    seed: u64,
    pub(crate) stats: Stats,
    /// Answers the clients have not read yet.
    answers: Vec<(u64, Result<Produced, ProduceError>)>,
    /// Damage only where the anchor-checked healer can repair it (`mend`).
    pub(crate) healable_bound: bool,
}

impl Cluster {
    /// Node 1 bootstraps a one-voter cluster; nodes 2..=n start fresh and join
    /// through the leader's membership policy (`set_members`), as in production.
    /// Nothing runs until [`Cluster::start`].
    pub(crate) fn new(
        seed: u64,
        n: u64,
        raft_cfg: Config,
        driver_cfg: DriverConfig,
        knobs: Knobs,
        trace_cap: usize,
    ) -> Cluster {
        let boot = Membership::with_voters([1]);
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let membership = if id == 1 {
                boot.clone()
            } else {
                Membership::default()
            };
            let mut disk = SimDisk::new(LogStart {
                membership,
                ..LogStart::default()
            });
            disk.lazy_hard_state = knobs.lazy_hard_state;
            disk.truncate_at_damage = knobs.truncate_at_damage;
            let node = SimNode {
                disk: Rc::new(RefCell::new(disk)),
                proc: None,
                incarnation: 0,
                fresh: id != 1,
            };
            nodes.insert(NodeId(id), node);
        }
        Cluster {
            nodes,
            net: Vec::new(),
            rng: SplitMix64::new(seed),
            now_ms: 0,
            checker: Checker::new(boot),
            trace: VecDeque::new(),
            trace_cap,
            blocked: BTreeSet::new(),
            faults: Faults::default(),
            knobs,
            raft_cfg,
            driver_cfg,
            seed,
            stats: Stats::default(),
            answers: Vec::new(),
            healable_bound: true,
        }
    }

    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.proc.is_some())
    }

    fn is_paused(&self, id: NodeId) -> bool {
        self.proc(id)
            .is_some_and(|p| p.paused_until_ms > self.now_ms)
    }

    fn proc(&self, id: NodeId) -> Option<&Proc> {
        self.nodes.get(&id).and_then(|n| n.proc.as_ref())
    }

    fn proc_mut(&mut self, id: NodeId) -> Option<&mut Proc> {
        self.nodes.get_mut(&id).and_then(|n| n.proc.as_mut())
    }

    /// The driver of a running node.
    pub(crate) fn driver(&self, id: NodeId) -> Option<&Driver<SimStorage, u64>> {
        self.proc(id).map(|p| &p.driver)
    }

    /// The running leader of the highest term, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.ids()
            .into_iter()
            .filter_map(|id| {
                self.driver(id)
                    .map(|d| (d.raft().term(), d.raft().role(), id))
            })
            .filter(|(_, r, _)| *r == Role::Leader)
            .max_by_key(|(t, _, id)| (*t, *id))
            .map(|(_, _, id)| id)
    }

    fn record(&mut self, e: Event) {
        if self.trace.len() >= self.trace_cap {
            self.trace.pop_front();
        }
        self.trace.push_back((self.now_ms, e));
    }

    /// Answers produced since the last call.
    pub(crate) fn take_answers(&mut self) -> Vec<(u64, Result<Produced, ProduceError>)> {
        std::mem::take(&mut self.answers)
    }

    pub(crate) fn checker(&self) -> &Checker {
        &self.checker
    }

    // ------------------------------------------------------------ processes

    /// Starts a process over the node's durable state.
    pub(crate) fn start(&mut self, id: NodeId) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let mut cfg = self.raft_cfg.clone();
        cfg.id = id;
        let skip_guard = self.knobs.skip_recovery_guard;
        let n = self.nodes.get_mut(&id).ok_or("no such node")?;
        if n.proc.is_some() {
            return Ok(());
        }
        n.incarnation += 1;
        n.disk.borrow_mut().open();
        let (last, persisted_commit, marker) = {
            let d = n.disk.borrow();
            (
                d.durable.last_index(),
                d.hard_state.commit,
                d.recovering_marker,
            )
        };
        let raft = RaftNode::new(cfg, SimStorage(Rc::clone(&n.disk)), seed)
            .map_err(|e| format!("node {id} cannot restart: {e}"))?;
        let voters = &raft.membership().voters;
        let single_voter = voters.len() == 1 && voters.contains(&id);
        // As `node::Node::start`: a wiped node, one that stopped while catching up
        // (the durable marker), or one whose log ends below its persisted commit.
        let lost_entries = last < persisted_commit && !single_voter;
        let recovering =
            (!skip_guard && (n.fresh || marker || lost_entries)).then_some(Recovering {
                min_commit: persisted_commit,
                need_leader: true,
            });
        n.fresh = false;
        n.disk.borrow_mut().recovering_marker = recovering.is_some();
        self.checker.on_boot(id, raft.commit_index());
        n.proc = Some(Proc {
            driver: Driver::new(raft, self.driver_cfg.clone(), recovering),
            inbox: VecDeque::new(),
            syncs: VecDeque::new(),
            next_tick_ms: self.now_ms + TICK_MS,
            paused_until_ms: 0,
            mender: Mender::new(self.now_ms),
        });
        self.record(Event::Restart(id, recovering.is_some()));
        let now = self.now_ms;
        self.input(id, |d| d.start(now))?;
        // Its peers reconnect to it.
        for other in self.ids() {
            if other != id && self.is_up(other) {
                self.input(other, |d| d.peer_connected(id))?;
            }
        }
        Ok(())
    }

    /// Kills a process: what its disk did not make durable is lost.
    pub(crate) fn crash(&mut self, id: NodeId, at_sync: bool) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if n.proc.take().is_none() {
            return;
        }
        let lost = n.disk.borrow_mut().crash(&mut self.rng);
        self.stats.crashes += 1;
        if at_sync {
            self.stats.crashes_at_sync += 1;
        }
        self.record(Event::Crash(id, lost, at_sync));
        if self.faults.lost_write_pct > 0 && self.rng.chance(self.faults.lost_write_pct) {
            self.lose_synced_write(id);
        }
    }

    /// Replaces a down node's data dir with an empty one if the model allows it
    /// (module docs). Returns true if it did.
    pub(crate) fn try_wipe(&mut self, id: NodeId) -> bool {
        if self.is_up(id) || self.nodes.values().any(|n| n.fresh) {
            return false;
        }
        let recovering = self
            .ids()
            .into_iter()
            .any(|o| self.driver(o).is_some_and(|d| d.recovering()));
        if recovering {
            return false;
        }
        let m = self.checker.max_committed();
        let Some(term) = self
            .checker
            .committed_term(m)
            .or((m.0 == 0).then_some(Term(0)))
        else {
            return false;
        };
        // Every configuration in play keeps a durable majority without this node.
        let holds = |v: &NodeId| *v != id && self.nodes[v].disk.borrow().durable.holds(m, term);
        let safe = self.checker.configs_in_play().into_iter().all(|c| {
            let kept = c
                .voters
                .iter()
                .filter(|v| self.nodes.contains_key(v) && holds(v));
            kept.count() >= c.quorum()
        });
        let n = &self.nodes[&id];
        if !safe || n.disk.borrow().durable.last_index() > m || self.damage_elsewhere(id).is_some()
        {
            return false;
        }
        n.disk.borrow_mut().wipe();
        self.nodes.get_mut(&id).expect("exists").fresh = true;
        self.stats.wipes += 1;
        self.record(Event::Wipe(id));
        true
    }

    /// Stops a process for `ms` (it keeps its state).
    pub(crate) fn pause(&mut self, id: NodeId, ms: u64) {
        let until = self.now_ms + ms;
        if let Some(p) = self.proc_mut(id) {
            p.paused_until_ms = until;
            self.stats.pauses += 1;
            self.record(Event::Pause(id, ms));
        }
    }

    /// Resumes every paused process.
    pub(crate) fn unpause_all(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(p) = n.proc.as_mut() {
                p.paused_until_ms = 0;
            }
        }
    }

    // ------------------------------------------------------------ inputs

    /// Feeds one input to a running node's driver, then settles it.
    fn input(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Driver<SimStorage, u64>) -> Result<(), DriverError>,
    ) -> Result<(), String> {
        let Some(p) = self.proc_mut(id) else {
            return Ok(());
        };
        f(&mut p.driver).map_err(|e| format!("node {id}: driver failed: {e}"))?;
        self.settle(id)?;
        self.clear_marker_once_recovered(id);
        Ok(())
    }

    /// The runner removes the durable "recovering" marker once the guard lifts.
    fn clear_marker_once_recovered(&mut self, id: NodeId) {
        let recovered = self.driver(id).is_some_and(|d| !d.recovering());
        if let (true, Some(n)) = (recovered, self.nodes.get(&id)) {
            n.disk.borrow_mut().recovering_marker = false;
        }
    }

    /// Executes effects, completes fsyncs due now, proposes queued produces, until
    /// the node has nothing more to do now; checks after every round.
    fn settle(&mut self, id: NodeId) -> Result<(), String> {
        for _ in 0..MAX_SETTLE_ROUNDS {
            self.execute(id)?;
            self.check_step()?;
            if self.is_paused(id) || !self.is_up(id) {
                return Ok(());
            }
            if !self.poll(id)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn execute(&mut self, id: NodeId) -> Result<(), String> {
        for _ in 0..MAX_EFFECT_ROUNDS {
            let Some(p) = self.proc_mut(id) else {
                return Ok(());
            };
            let effects = p.driver.take_effects();
            if effects.is_empty() {
                return Ok(());
            }
            let mut sync = None;
            for e in effects {
                match e {
                    Effect::Send(m) => self.take_send(m)?,
                    Effect::Sync { seq } => sync = Some(seq),
                    Effect::Complete { reply, result } => self.on_complete(id, reply, result)?,
                    Effect::HighWater(hw) => {
                        self.record(Event::HighWater(id, hw));
                        self.checker.on_high_water(id, hw)?;
                    }
                    Effect::FirstIndex(i) => self.record(Event::FirstIndex(id, i)),
                    Effect::Role(s) => self.record(Event::Role(id, s.role, s.term, s.leader)),
                }
            }
            if let Some(seq) = sync {
                if self.rng.below(1000) < self.faults.crash_at_sync_permille {
                    // Check what this batch did (commits, answers) before it dies.
                    self.check_step()?;
                    self.crash(id, true);
                    return Ok(());
                }
                self.queue_sync(id, seq);
            }
        }
        Ok(())
    }

    fn on_complete(
        &mut self,
        id: NodeId,
        req: u64,
        result: Result<Produced, ProduceError>,
    ) -> Result<(), String> {
        self.record(Event::Complete(id, req, result.clone()));
        self.checker.on_complete(id, req, &result)?;
        self.answers.push((req, result));
        Ok(())
    }

    fn queue_sync(&mut self, id: NodeId, seq: u64) {
        let delay = self.rng.below(self.faults.max_sync_delay_ms + 1);
        let now = self.now_ms;
        if let Some(p) = self.proc_mut(id) {
            let after = p.syncs.back().map_or(0, |s| s.0);
            p.syncs.push_back(((now + delay).max(after), seq));
        }
    }

    /// Runs the fsyncs due now as one; true if it did.
    fn complete_due_syncs(&mut self, id: NodeId) -> Result<bool, String> {
        let now = self.now_ms;
        let Some(p) = self.proc_mut(id) else {
            return Ok(false);
        };
        let mut seq = None;
        while p.syncs.front().is_some_and(|s| s.0 <= now) {
            seq = p.syncs.pop_front().map(|s| s.1);
        }
        let Some(seq) = seq else {
            return Ok(false);
        };
        if !self.knobs.fake_sync {
            self.nodes[&id].disk.borrow_mut().sync()?;
        }
        self.record(Event::Sync(id, seq));
        let p = self.proc_mut(id).expect("checked above");
        p.driver
            .synced(seq)
            .map_err(|e| format!("node {id}: synced failed: {e}"))?;
        Ok(true)
    }

    /// Completes due fsyncs or proposes queued produces; true if it fed an input.
    fn poll(&mut self, id: NodeId) -> Result<bool, String> {
        Ok(self.complete_due_syncs(id)? || self.propose_queued(id)?)
    }

    /// Proposes the queued produces as one batch if the driver wants one.
    fn propose_queued(&mut self, id: NodeId) -> Result<bool, String> {
        let wall_ms = WALL_CLOCK_BASE_MS + self.now_ms;
        let drop_meta = self.knobs.drop_producer_meta;
        let Some(p) = self.proc_mut(id) else {
            return Ok(false);
        };
        // Asked on every poll, as the runner does each iteration (it also forgets
        // batches of a lost leadership).
        if !p.driver.wants_produces() || p.inbox.is_empty() {
            return Ok(false);
        }
        let n = p.inbox.len().min(MAX_BATCH_REQUESTS);
        let reqs: Vec<ProduceRequest<u64>> = p
            .inbox
            .drain(..n)
            .map(|q| ProduceRequest {
                // Both shapes the node hands the driver: one value, or a batch.
                values: match <[Vec<u8>; 1]>::try_from(q.values) {
                    Ok([one]) => Values::One(one),
                    Err(many) => Values::Many(many),
                },
                producer: q.producer.filter(|_| !drop_meta),
                kind: crate::types::RecordKind::Data,
                deadline_ms: q.deadline_ms,
                reply: q.req,
            })
            .collect();
        let ids = reqs.iter().map(|r| r.reply).collect();
        // A wall clock that is not the virtual one: append times and expiry only
        // need to be monotonic here.
        p.driver.set_wall_clock_ms(wall_ms);
        p.driver
            .propose(reqs)
            .map_err(|e| format!("node {id}: propose failed: {e}"))?;
        self.record(Event::Propose(id, ids));
        Ok(true)
    }

    /// A client hands a produce to node `id`; false if the node is down (refused).
    pub(crate) fn submit(
        &mut self,
        id: NodeId,
        req: u64,
        values: Vec<Vec<u8>>,
        deadline_ms: u64,
        producer: Option<BatchMeta>,
    ) -> Result<bool, String> {
        let Some(p) = self.proc_mut(id) else {
            return Ok(false);
        };
        let full = p.inbox.len() >= INBOX_CAP;
        if !full {
            p.inbox.push_back(Queued {
                req,
                values: values.clone(),
                deadline_ms,
                producer,
            });
        }
        self.checker.on_request(req, &values, producer.is_some());
        self.record(Event::Submit(id, req, values.len()));
        if full {
            self.not_proposed(req)?;
            return Ok(true);
        }
        if !self.is_paused(id) {
            self.settle(id)?;
        }
        Ok(true)
    }

    fn not_proposed(&mut self, req: u64) -> Result<(), String> {
        self.checker.on_not_proposed(req)?;
        let answer = Err(ProduceError::Unavailable("not proposed".into()));
        self.answers.push((req, answer));
        Ok(())
    }

    /// Retention at node `id`: keep offsets from `point` on.
    pub(crate) fn compact(&mut self, id: NodeId, point: Index) -> Result<(), String> {
        if self.is_paused(id) {
            return Ok(());
        }
        // Retention keeps what another node may need to heal from (`mend`).
        let point = self.damage_elsewhere(id).map_or(point, |i| point.min(i));
        self.record(Event::Compact(id, point));
        self.input(id, |d| d.compact_to(point))
    }

    /// Graceful hand-over by node `id` if it leads.
    pub(crate) fn transfer(&mut self, id: NodeId) -> Result<(), String> {
        if self.is_paused(id) {
            return Ok(());
        }
        self.record(Event::Transfer(id));
        self.input(id, |d| d.transfer_leadership())
    }

    // ------------------------------------------------------------ network

    fn take_send(&mut self, m: Message) -> Result<(), String> {
        {
            let d = self.nodes[&m.from].disk.borrow();
            checker::check_send(&m, &d)?;
        }
        if let MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            ..
        } = &m.body
        {
            // A leader whose copy of `prev` is damaged sends a placeholder term
            // (`raft::replication::COMMITTED_PREV`); the harness knows the real one.
            let real_prev = self.nodes[&m.from].disk.borrow().cache.term(*prev_index);
            let prev_term = real_prev.unwrap_or(*prev_term);
            // Sent entries exist outside the sender's page cache from now on.
            self.checker.on_append(m.from, prev_term, entries)?;
        }
        self.transmit(Packet::Raft(m));
        Ok(())
    }

    /// The network takes a packet: it may lose, duplicate and delay it.
    fn transmit(&mut self, m: Packet) {
        if self.faults.drop_pct > 0 && self.rng.chance(self.faults.drop_pct) {
            self.record(Event::Drop(m.from(), m.to(), m.name(), "lost"));
            return;
        }
        let copies = if self.rng.chance(self.faults.dup_pct) {
            2
        } else {
            1
        };
        let to_incarnation = match self.nodes.get(&m.to()) {
            Some(n) if n.proc.is_some() => n.incarnation,
            _ => u64::MAX,
        };
        for _ in 0..copies {
            let delay = if self.rng.chance(self.faults.long_delay_pct) {
                ELECTION_MS * (1 + self.rng.below(20)) + self.rng.below(ELECTION_MS)
            } else {
                1 + self.rng.below(self.faults.max_delay_ms.max(1))
            };
            self.net.push(InFlight {
                at_ms: self.now_ms + delay,
                msg: m.clone(),
                to_incarnation,
            });
        }
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
            self.deliver(f)?;
        }
        Ok(())
    }

    fn deliver(&mut self, mut f: InFlight) -> Result<(), String> {
        let (from, to, name) = (f.msg.from(), f.msg.to(), f.msg.name());
        if self.blocked.contains(&(from, to)) {
            self.record(Event::Drop(from, to, name, "partition"));
            return Ok(());
        }
        let alive = self
            .nodes
            .get(&to)
            .is_some_and(|n| n.proc.is_some() && n.incarnation == f.to_incarnation);
        if !alive {
            self.record(Event::Drop(from, to, name, "receiver restarted or down"));
            return Ok(());
        }
        if let Some(until) = self
            .proc(to)
            .map(|p| p.paused_until_ms)
            .filter(|u| *u > self.now_ms)
        {
            f.at_ms = until + self.rng.below(5);
            self.net.push(f);
            return Ok(());
        }
        let m = match f.msg {
            Packet::Raft(m) => m,
            other => return self.deliver_heal(other),
        };
        if self.driver(to).is_some_and(|d| d.raft().term() > m.term) {
            self.stats.stale_deliveries += 1;
        }
        self.record(Event::Deliver(m.clone()));
        self.input(to, |d| d.step(m))
    }

    /// Cuts every link between `group` and the rest (both ways).
    pub(crate) fn partition(&mut self, group: &[NodeId]) {
        let ids = self.ids();
        let mut cut = Vec::new();
        for a in &ids {
            for b in &ids {
                if group.contains(a) != group.contains(b) {
                    cut.push((*a, *b));
                }
            }
        }
        self.block(cut);
    }

    /// Cuts the given one-way links (in addition to those already cut).
    pub(crate) fn block(&mut self, links: Vec<(NodeId, NodeId)>) {
        self.blocked.extend(links.iter().copied());
        self.record(Event::Block(links));
    }

    /// Restores every link; the two ends of each reconnect.
    pub(crate) fn heal(&mut self) -> Result<(), String> {
        let cut = std::mem::take(&mut self.blocked);
        self.record(Event::Heal);
        for (a, b) in cut {
            if self.is_up(b) && !self.is_paused(a) {
                self.input(a, |d| d.peer_connected(b))?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ time

    /// One virtual millisecond: deliveries, fsync completions, ticks.
    pub(crate) fn step_ms(&mut self) -> Result<(), String> {
        self.now_ms += 1;
        self.deliver_due()?;
        for id in self.ids() {
            if self.is_up(id) && !self.is_paused(id) && self.poll(id)? {
                self.settle(id)?;
            }
        }
        self.tick_due()
    }

    fn tick_due(&mut self) -> Result<(), String> {
        let now = self.now_ms;
        for id in self.ids() {
            if self.is_paused(id) {
                continue;
            }
            let Some(p) = self.proc_mut(id) else { continue };
            if p.next_tick_ms > now {
                continue;
            }
            p.next_tick_ms = (p.next_tick_ms + TICK_MS).max(now + 1);
            let expired: Vec<u64> = {
                let (old, keep) = std::mem::take(&mut p.inbox)
                    .into_iter()
                    .partition(|q: &Queued| q.deadline_ms <= now);
                p.inbox = keep;
                old.into_iter().map(|q: Queued| q.req).collect()
            };
            for req in expired {
                self.not_proposed(req)?;
            }
            let views = self.member_views();
            self.input(id, |d| {
                if d.raft().role() == Role::Leader {
                    d.set_members(views);
                }
                d.tick(now)
            })?;
            self.heal_tick(id)?;
        }
        Ok(())
    }

    /// What gossip would report: every node, live while its process runs.
    fn member_views(&self) -> BTreeMap<NodeId, MemberView> {
        let view = |live| MemberView {
            live,
            decommission: false,
            has_rpc_addr: true,
        };
        self.ids()
            .into_iter()
            .map(|id| (id, view(self.is_up(id))))
            .collect()
    }

    // ------------------------------------------------------------ checks

    /// The per-step checks over every node (see `checker`).
    fn check_step(&mut self) -> Result<(), String> {
        for (id, n) in &self.nodes {
            let appended = std::mem::take(&mut n.disk.borrow_mut().journal);
            for a in appended {
                self.checker.on_append(*id, a.prev_term, &a.entries)?;
            }
        }
        let disks: Vec<(NodeId, std::cell::Ref<'_, SimDisk>)> = self
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.disk.borrow()))
            .collect();
        let mut leaders = Vec::new();
        for (id, d) in &disks {
            let Some(p) = self.nodes[id].proc.as_ref() else {
                continue;
            };
            let r = p.driver.raft();
            self.checker.on_role(*id, r.role(), r.term(), &d.cache)?;
            self.checker
                .on_commit(*id, r.term(), r.commit_index(), &d.cache)?;
            if r.role() == Role::Leader {
                leaders.push((*id, r.term(), &d.cache));
            }
        }
        self.checker.check_fresh(&leaders)?;
        let live = self.nodes.values().filter_map(|n| n.proc.as_ref());
        let configs = live.map(|p| p.driver.raft().membership().clone()).collect();
        self.checker.set_live_configs(configs);
        let refs: Vec<(NodeId, &SimDisk)> = disks.iter().map(|(id, d)| (*id, &**d)).collect();
        self.checker.check_durability(&refs)?;
        self.checker.check_intact_copies(&refs)
    }

    /// End of run: every acknowledged produce is in every node's durable log, at
    /// its offsets, wherever that node's high-water mark covers it.
    pub(crate) fn check_acked_everywhere(&self) -> Result<(), String> {
        for (req, first, values) in self.checker.acked_requests() {
            for (id, n) in &self.nodes {
                let hw = self.driver(*id).map_or(Index(0), |d| d.commit());
                let d = n.disk.borrow();
                for (k, v) in values.iter().enumerate() {
                    let i = first + k as u64;
                    if i > hw || i <= d.durable.start.index {
                        continue;
                    }
                    let intact = !d.durable.damaged.contains(&i);
                    let holds = d.durable.entry(i).and_then(checker::client_value) == Some(&v[..]);
                    if !intact || !holds {
                        return Err(format!(
                            "ACKNOWLEDGED PRODUCE violated: request {req} value {k} acked at {i} \
                             is not intact in node {id}'s durable log (high-water mark {hw})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Fault-free convergence: every node up, caught up through `i`, not recovering.
    pub(crate) fn converged(&self, i: Index) -> bool {
        let ids = self.ids();
        let all_voters = self.leader().and_then(|l| self.driver(l)).is_some_and(|d| {
            let m = d.raft().membership();
            m.learners.is_empty() && ids.iter().all(|id| m.voters.contains(id))
        });
        all_voters
            && ids.iter().all(|id| {
                self.driver(*id)
                    .is_some_and(|d| d.commit() >= i && !d.recovering())
            })
            && self.all_healed()
    }

    // ------------------------------------------------------------ reports

    /// The failure report: what, the trace, every node, and the replay command.
    pub(crate) fn report(&self, what: &str, variant: Option<&str>) -> String {
        let header = format!("REPLICA SIMULATION FAILURE (seed {}): {what}", self.seed);
        self.trace_report(&header, variant)
    }

    /// `header`, the trace, every node, and the replay command.
    pub(crate) fn trace_report(&self, header: &str, variant: Option<&str>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{header}");
        let _ = writeln!(
            s,
            "last {} events (oldest first, virtual ms):",
            self.trace.len()
        );
        for (t, e) in &self.trace {
            let _ = writeln!(s, "  {t:>6} {}", fmt_event(e));
        }
        for id in self.ids() {
            let _ = writeln!(s, "  {}", self.describe(id));
        }
        if let Some(v) = variant {
            let _ = writeln!(s, "broken variant under test: {v}");
        }
        let _ = writeln!(
            s,
            "replay: REPLICA_SIM_SEED={} cargo test --lib replica::sim::tests::replay_seed -- --nocapture",
            self.seed
        );
        s
    }

    fn describe(&self, id: NodeId) -> String {
        let n = &self.nodes[&id];
        let d = n.disk.borrow();
        let disk = format!(
            "durable log {}..={} damaged {:?} hs term {} vote {:?} commit {}",
            d.durable.start.index + 1,
            d.durable.last_index(),
            d.durable.damaged.iter().map(|i| i.0).collect::<Vec<_>>(),
            d.hard_state.term,
            d.hard_state.vote.map(|v| v.0),
            d.hard_state.commit
        );
        let Some(p) = &n.proc else {
            return format!("node {id} (incarnation {}): down; {disk}", n.incarnation);
        };
        let r = p.driver.raft();
        format!(
            "node {id} (incarnation {}): {} term {} leader {:?} commit {} hw-commit {} log {}..={} \
             persisted {} recovering {} paused_until {} voters {:?}; {disk}",
            n.incarnation,
            r.role(),
            r.term(),
            r.leader().map(|l| l.0),
            r.commit_index(),
            p.driver.commit(),
            r.first_index(),
            r.last_index(),
            r.persisted_index(),
            p.driver.recovering(),
            p.paused_until_ms,
            r.membership().voters.iter().map(|v| v.0).collect::<Vec<_>>()
        )
    }
}

pub(super) fn fmt_message(m: &Message) -> String {
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
        } => {
            format!(" reject={reject} index={index} hint={hint_index}/{hint_term}")
        }
        MessageBody::Heartbeat { commit, quiesce } => format!(" commit={commit} quiesce={quiesce}"),
        MessageBody::InstallSnapshot { start } => format!(" start={}/{}", start.index, start.term),
        _ => String::new(),
    };
    format!(
        "{} -> {} t{} {}{detail}",
        m.from,
        m.to,
        m.term,
        m.body.name()
    )
}

fn fmt_event(e: &Event) -> String {
    match e {
        Event::Deliver(m) => format!("deliver {}", fmt_message(m)),
        Event::Drop(a, b, what, why) => format!("drop {a} -> {b} {what} ({why})"),
        Event::Sync(id, seq) => format!("fsync node {id} through ready {seq}"),
        Event::Crash(id, lost, at_sync) => format!(
            "CRASH node {id}{} ({lost} unsynced appends lost)",
            if *at_sync {
                " right after asking for a sync"
            } else {
                ""
            }
        ),
        Event::Restart(id, rec) => format!(
            "START node {id}{}",
            if *rec { " (recovering: no vote)" } else { "" }
        ),
        Event::Wipe(id) => format!("WIPE data dir of node {id}"),
        Event::Pause(id, ms) => format!("PAUSE node {id} for {ms} ms"),
        Event::Block(links) => format!(
            "CUT links {}",
            links
                .iter()
                .map(|(a, b)| format!("{a}->{b}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Event::Heal => "HEAL every link".into(),
        Event::Submit(id, req, n) => format!("client request {req} ({n} values) to node {id}"),
        Event::Propose(id, reqs) => format!("node {id} proposes requests {reqs:?}"),
        Event::Complete(id, req, r) => format!("node {id} answers request {req}: {r:?}"),
        Event::HighWater(id, hw) => format!("node {id} high-water mark {hw}"),
        Event::FirstIndex(id, i) => format!("node {id} first index {i}"),
        Event::Role(id, role, term, leader) => {
            format!(
                "node {id} is {role} in term {term} (leader {:?})",
                leader.map(|l| l.0)
            )
        }
        Event::Compact(id, i) => format!("node {id} retention: keep from {i}"),
        Event::Transfer(id) => format!("node {id} asked to transfer leadership"),
        Event::Storage(id, what) => format!("node {id} storage: {what}"),
    }
}
