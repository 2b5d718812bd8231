//! One randomized run: a chaos phase under the fault model of the module docs, then
//! healing and a bounded wait for liveness, then the end-of-run durability check.

use std::collections::BTreeMap;

use super::mend::Fault;
use super::{Cluster, Faults, Knobs, Stats, ELECTION_MS};
use crate::raft::{Config, Index, NodeId, SplitMix64};
use crate::replica::dedup::{BatchMeta, BatchSeq, DedupConfig, ProducerEpoch, ProducerId};
use crate::replica::{DriverConfig, ProduceError, Produced};

/// Virtual time after healing within which every node must converge and a new
/// produce must be acknowledged (100 election timeouts; typical runs need < 10).
const LIVENESS_BOUND_MS: u64 = 100 * ELECTION_MS;
/// A client gives up on a request this long after its deadline (the node died).
const CLIENT_GIVE_UP_MS: u64 = 500;
/// Produce deadline handed to the driver.
const PRODUCE_DEADLINE_MS: u64 = 15 * ELECTION_MS;

/// Rates of one run, per 10,000 virtual milliseconds unless named otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) chaos_ms: u64,
    pub(crate) crash: u64,
    pub(crate) restart: u64,
    pub(crate) wipe: u64,
    pub(crate) pause: u64,
    pub(crate) network: u64,
    pub(crate) compact: u64,
    pub(crate) transfer: u64,
    /// Storage faults (module docs of `disk`).
    pub(crate) bit_flip: u64,
    pub(crate) misdirect: u64,
    pub(crate) read_error: u64,
    /// Share of crashes that lose a synced write (as a damaged entry).
    pub(crate) lost_write_pct: u64,
    /// Per mille of client slots that submit each millisecond.
    pub(crate) submit_permille: u64,
    pub(crate) knobs: Knobs,
    /// Damage only where the anchor-checked healer can repair it (false: only
    /// "every damaged entry keeps an intact copy elsewhere").
    pub(crate) healable_bound: bool,
    /// Client slots (of 3) that are idempotent producers.
    pub(crate) idempotent_slots: u64,
    /// Half the seeds bound the leader's in-flight window by bytes too.
    pub(crate) byte_windows: bool,
}

impl Plan {
    pub(crate) fn normal() -> Plan {
        Plan {
            chaos_ms: 3000,
            crash: 8,
            restart: 80,
            wipe: 20,
            pause: 4,
            network: 8,
            compact: 10,
            transfer: 3,
            bit_flip: 20,
            misdirect: 5,
            read_error: 20,
            lost_write_pct: 30,
            submit_permille: 30,
            knobs: Knobs::default(),
            healable_bound: true,
            idempotent_slots: 2,
            byte_windows: true,
        }
    }

    /// `normal`, with only the weaker bound when `REPLICA_SIM_WEAK_BOUND` is set
    /// (measures what anchor-only healing cannot repair: liveness failures).
    pub(crate) fn from_env() -> Plan {
        Plan {
            healable_bound: std::env::var_os("REPLICA_SIM_WEAK_BOUND").is_none(),
            ..Plan::normal()
        }
    }
}

/// Runs one seed; `Err` is the failure report (with the replay command).
pub(crate) fn run_seed(seed: u64, plan: &Plan, trace_cap: usize) -> Result<Stats, String> {
    let mut rng = SplitMix64::new(seed ^ 0x005E_ED0F_5EED_u64);
    let n = if seed.is_multiple_of(2) { 3 } else { 5 };
    let mut raft_cfg = Config::new(NodeId(1));
    raft_cfg.election_tick = 10;
    raft_cfg.heartbeat_tick = 2;
    raft_cfg.max_inflight_msgs = 4;
    raft_cfg.max_size_per_msg = 256;
    // Half the seeds bound the window by bytes too (one to four messages' worth),
    // drawn apart from `rng` so the other draws stay as they were.
    let window_draw = SplitMix64::new(seed ^ 0x000B_17E5_u64).next_u64();
    raft_cfg.max_inflight_bytes = if plan.byte_windows && window_draw.is_multiple_of(2) {
        256 * (1 + (window_draw >> 8) % 4)
    } else {
        0
    };
    // A third of the seeds throttle catch-up (one to four messages' worth per tick).
    raft_cfg.catch_up_bytes_per_tick = if plan.byte_windows && (window_draw >> 16).is_multiple_of(3)
    {
        256 * (1 + (window_draw >> 24) % 4)
    } else {
        0
    };
    raft_cfg.max_uncommitted_entries = 200;
    raft_cfg.pre_vote = rng.chance(75);
    raft_cfg.check_quorum = !raft_cfg.pre_vote || rng.chance(75);
    let driver_cfg = DriverConfig {
        max_uncommitted_batches: 1 + rng.below(2) as usize,
        commit_persist_interval_ms: 20 + rng.below(1000),
        skip_fsync_when_alone: false,
        dedup: DedupConfig::default(),
    };
    let variant = (plan.knobs != Knobs::default()).then(|| format!("{:?}", plan.knobs));
    let mut c = Cluster::new(seed, n, raft_cfg, driver_cfg, plan.knobs, trace_cap);
    c.healable_bound = plan.healable_bound;
    c.faults = Faults {
        drop_pct: rng.below(6),
        dup_pct: rng.below(5),
        max_delay_ms: 1 + rng.below(15),
        long_delay_pct: rng.below(4),
        max_sync_delay_ms: rng.below(30),
        crash_at_sync_permille: rng.below(6),
        lost_write_pct: plan.lost_write_pct,
    };
    let mut clients = Clients {
        idempotent_slots: plan.idempotent_slots,
        ..Clients::default()
    };
    let result = start_all(&mut c)
        .and_then(|()| chaos(&mut c, &mut clients, plan))
        .and_then(|()| liveness(&mut c, &mut clients))
        .and_then(|ms| c.check_acked_everywhere().map(|()| ms));
    match result {
        Ok(ms) => {
            c.stats.liveness_ms = ms;
            c.stats.acked = c.checker().acked;
            c.stats.commits = c.checker().commits;
            if trace_cap > 10_000 {
                let header = format!("seed {seed} passed; its trace:");
                eprintln!("{}", c.trace_report(&header, variant.as_deref()));
            }
            Ok(c.stats)
        }
        Err(e) => Err(c.report(&e, variant.as_deref())),
    }
}

fn start_all(c: &mut Cluster) -> Result<(), String> {
    for id in c.ids() {
        c.start(id)?;
    }
    Ok(())
}

fn per_10k(c: &mut Cluster, rate: u64) -> bool {
    c.rng.below(10_000) < rate
}

fn pick(c: &mut Cluster, from: &[NodeId]) -> Option<NodeId> {
    (!from.is_empty()).then(|| from[c.rng.below(from.len() as u64) as usize])
}

fn chaos(c: &mut Cluster, clients: &mut Clients, plan: &Plan) -> Result<(), String> {
    for _ in 0..plan.chaos_ms {
        c.step_ms()?;
        clients.step(c, plan.submit_permille)?;
        processes(c, plan)?;
        if per_10k(c, plan.network) {
            network(c)?;
        }
        let up: Vec<NodeId> = c.ids().into_iter().filter(|i| c.is_up(*i)).collect();
        if per_10k(c, plan.compact) {
            if let Some(id) = pick(c, &up) {
                let hw = c.driver(id).map_or(Index(0), |d| d.commit());
                let back = c.rng.below(20);
                c.compact(id, hw + 1 - back)?;
            }
        }
        if per_10k(c, plan.transfer) {
            if let Some(l) = c.leader() {
                c.transfer(l)?;
            }
        }
        storage_faults(c, plan);
    }
    Ok(())
}

/// Bit flips, misdirected writes and read errors (lost writes come with crashes).
fn storage_faults(c: &mut Cluster, plan: &Plan) {
    for (rate, fault) in [
        (plan.bit_flip, Fault::BitFlip),
        (plan.misdirect, Fault::Misdirect),
        (plan.read_error, Fault::ReadError),
    ] {
        if per_10k(c, rate) {
            c.inject(fault);
        }
    }
}

/// Crashes, restarts, wipes and pauses.
fn processes(c: &mut Cluster, plan: &Plan) -> Result<(), String> {
    let ids = c.ids();
    let up: Vec<NodeId> = ids.iter().copied().filter(|i| c.is_up(*i)).collect();
    let down: Vec<NodeId> = ids.iter().copied().filter(|i| !c.is_up(*i)).collect();
    if per_10k(c, plan.crash) {
        if let Some(id) = pick(c, &up) {
            c.crash(id, false);
        }
    }
    if per_10k(c, plan.wipe) {
        if let Some(id) = pick(c, &down) {
            c.try_wipe(id);
        }
    }
    for id in down {
        if per_10k(c, plan.restart) {
            c.start(id)?;
        }
    }
    if per_10k(c, plan.pause) {
        if let Some(id) = pick(c, &up) {
            let ms = 2 * ELECTION_MS + c.rng.below(15 * ELECTION_MS);
            c.pause(id, ms);
        }
    }
    Ok(())
}

/// One network change: a split, one-way links, an asymmetric node, or healing.
fn network(c: &mut Cluster) -> Result<(), String> {
    let ids = c.ids();
    match c.rng.below(4) {
        0 => {
            let mut group = ids.clone();
            for i in (1..group.len()).rev() {
                let j = c.rng.below(i as u64 + 1) as usize;
                group.swap(i, j);
            }
            group.truncate(1 + c.rng.below(ids.len() as u64 / 2) as usize);
            c.partition(&group);
        }
        1 => {
            let (Some(a), Some(b)) = (pick(c, &ids), pick(c, &ids)) else {
                return Ok(());
            };
            if a != b {
                c.block(vec![(a, b)]);
            }
        }
        2 => {
            let Some(a) = pick(c, &ids) else {
                return Ok(());
            };
            let outgoing = c.rng.chance(50);
            let links = ids
                .iter()
                .filter(|b| **b != a)
                .map(|b| if outgoing { (a, *b) } else { (*b, a) })
                .collect();
            c.block(links);
        }
        _ => c.heal()?,
    }
    Ok(())
}

/// Heals everything and waits (bounded) until every node is up, caught up and
/// voting, and a produce proposed after healing is acknowledged. Returns the
/// virtual ms it took.
fn liveness(c: &mut Cluster, clients: &mut Clients) -> Result<u64, String> {
    c.heal()?;
    c.unpause_all();
    c.faults = Faults {
        max_delay_ms: 5,
        max_sync_delay_ms: 5,
        ..Faults::default()
    };
    for id in c.ids() {
        if !c.is_up(id) {
            c.start(id)?;
        }
    }
    let start = c.now_ms;
    let mut marker: Option<u64> = None;
    while c.now_ms - start < LIVENESS_BOUND_MS {
        c.step_ms()?;
        clients.step(c, 10)?;
        if c.now_ms.is_multiple_of(super::TICK_MS) {
            c.retention_catch_up()?;
        }
        if let Some(req) = marker {
            if let Some(Ok(p)) = clients.answered.get(&req) {
                if c.converged(p.last) {
                    return Ok(c.now_ms - start);
                }
            } else if clients.answered.contains_key(&req) {
                marker = None;
            }
        }
        if marker.is_none() {
            if let Some(l) = c.leader() {
                marker = clients.submit(c, l, 1)?;
            }
        }
    }
    Err(format!(
        "LIVENESS violated: {} ms after healing, marker request {marker:?} (answer {:?}) and \
         not every node caught up",
        LIVENESS_BOUND_MS,
        marker.and_then(|m| clients.answered.get(&m).cloned())
    ))
}

/// Client slots: each has at most one request outstanding and follows leader hints.
/// Slots below `idempotent_slots` (the plan's) are idempotent producers (producer id = slot +
/// 1): a batch not acknowledged is retried as is (same values, same sequence) until
/// it is; a dedup refusal re-inits the producer (next epoch, sequence 0) and moves
/// on to a new batch, as the client library does. The checker's "no value
/// committed at two offsets" is the exactly-once check.
#[derive(Default)]
struct Clients {
    next_req: u64,
    /// Slot → (request, give-up time).
    outstanding: BTreeMap<u64, (u64, u64)>,
    hint: Option<NodeId>,
    answered: BTreeMap<u64, Result<Produced, ProduceError>>,
    producers: BTreeMap<u64, SimProducer>,
    /// Slots below this are idempotent producers.
    idempotent_slots: u64,
}

/// An idempotent producer's client state.
#[derive(Default)]
struct SimProducer {
    epoch: u16,
    next_seq: u32,
    /// The batch being sent (retried until acknowledged).
    batch: Option<(Vec<Vec<u8>>, BatchMeta)>,
}

const CLIENT_SLOTS: u64 = 3;

impl Clients {
    fn step(&mut self, c: &mut Cluster, submit_permille: u64) -> Result<(), String> {
        for (req, result) in c.take_answers() {
            match &result {
                Err(ProduceError::NotLeader { leader }) => self.hint = *leader,
                Ok(_) => {}
                Err(_) => self.hint = None,
            }
            let slot = self
                .outstanding
                .iter()
                .find(|(_, (r, _))| *r == req)
                .map(|(s, _)| *s);
            if let Some(p) = slot.and_then(|s| self.producers.get_mut(&s)) {
                p.on_answer(&result, &mut c.stats);
            }
            self.outstanding.retain(|_, (r, _)| *r != req);
            self.answered.insert(req, result);
        }
        let now = c.now_ms;
        self.outstanding.retain(|_, (_, give_up)| *give_up > now);
        for slot in 0..CLIENT_SLOTS {
            if self.outstanding.contains_key(&slot) || c.rng.below(1000) >= submit_permille {
                continue;
            }
            let target = match self.hint {
                Some(h) if c.rng.chance(90) => h,
                _ => {
                    let ids = c.ids();
                    ids[c.rng.below(ids.len() as u64) as usize]
                }
            };
            let n = 1 + c.rng.below(3) as usize;
            let sent = if slot < self.idempotent_slots {
                self.submit_idempotent(c, slot, target, n)?
            } else {
                self.submit(c, target, n)?
            };
            if let Some(req) = sent {
                self.outstanding
                    .insert(slot, (req, now + PRODUCE_DEADLINE_MS + CLIENT_GIVE_UP_MS));
            }
        }
        Ok(())
    }

    /// Submits `n` unique values to `target`; None if it refused the connection.
    fn submit(&mut self, c: &mut Cluster, target: NodeId, n: usize) -> Result<Option<u64>, String> {
        self.next_req += 1;
        let req = self.next_req;
        let values = (0..n).map(|k| format!("r{req}.{k}").into_bytes()).collect();
        let deadline = c.now_ms + PRODUCE_DEADLINE_MS;
        Ok(c.submit(target, req, values, deadline, None)?
            .then_some(req))
    }

    /// Sends slot `slot`'s current batch again, or a new one of `n` values.
    fn submit_idempotent(
        &mut self,
        c: &mut Cluster,
        slot: u64,
        target: NodeId,
        n: usize,
    ) -> Result<Option<u64>, String> {
        self.next_req += 1;
        let req = self.next_req;
        let p = self.producers.entry(slot).or_default();
        let (values, meta) = match &p.batch {
            Some(b) => b.clone(),
            None => {
                let values: Vec<Vec<u8>> = (0..n)
                    .map(|k| format!("p{slot}r{req}.{k}").into_bytes())
                    .collect();
                let seq = BatchSeq::new(p.next_seq, n as u32).map_err(|e| e.to_string())?;
                let meta = BatchMeta {
                    producer: ProducerId(slot + 1),
                    epoch: ProducerEpoch(p.epoch),
                    seq,
                };
                p.next_seq = seq.next_seq();
                p.batch = Some((values.clone(), meta));
                (values, meta)
            }
        };
        let deadline = c.now_ms + PRODUCE_DEADLINE_MS;
        Ok(c.submit(target, req, values, deadline, Some(meta))?
            .then_some(req))
    }
}

impl SimProducer {
    fn on_answer(&mut self, result: &Result<Produced, ProduceError>, stats: &mut Stats) {
        match result {
            Ok(p) => {
                stats.duplicates += u64::from(p.duplicate);
                self.batch = None;
            }
            Err(ProduceError::Producer(_)) => {
                // What this batch became is unknown to the producer: a new epoch
                // starts clean (the checker still sees any duplicate).
                stats.producer_errors += 1;
                self.epoch += 1;
                self.next_seq = 0;
                self.batch = None;
            }
            // Not acknowledged: the same batch is sent again.
            Err(_) => {}
        }
    }
}
