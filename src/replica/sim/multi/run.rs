//! One randomized multi-group run: chaos (random produces to random groups,
//! crashes and restarts, partitions and one-way cuts, false "dead" reports about
//! running nodes, a lossy reordering network), then healing and the liveness and
//! idle checks (module docs of `multi`).

use std::collections::BTreeMap;

use super::{Group, Multi, MultiStats, NetFaults};
use crate::raft::{Config, Index, NodeId, SplitMix64};
use crate::replica::sim::{ELECTION_MS, TICK_MS};

/// Virtual ms of chaos per run.
const CHAOS_MS: u64 = 1500;
/// Bound on the time to recover after healing.
const LIVENESS_BOUND_MS: u64 = 200 * ELECTION_MS;
/// Bound on the time for every group to quiesce once idle.
const QUIESCE_BOUND_MS: u64 = 100 * ELECTION_MS;
/// A produce is answered (or times out) within this.
const PRODUCE_DEADLINE_MS: u64 = 30 * ELECTION_MS;
/// Ticks watched while idle: no message may be sent, no tick run.
const IDLE_WATCH_MS: u64 = 50 * TICK_MS;

/// The Raft configuration of the simulated groups (quiescence on).
pub(crate) fn raft_config() -> Config {
    let mut cfg = Config::new(NodeId(1));
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 1;
    cfg.max_inflight_msgs = 4;
    cfg.max_size_per_msg = 256;
    cfg.max_uncommitted_entries = 200;
    cfg.quiesce = true;
    cfg
}

/// Runs one seed; the failure report names the seed and the replay command.
pub(crate) fn run_seed(seed: u64, trace_cap: usize) -> Result<MultiStats, String> {
    run_seed_with(seed, raft_config(), trace_cap)
}

/// [`run_seed`] with another Raft configuration (the bug switches).
pub(crate) fn run_seed_with(
    seed: u64,
    cfg: Config,
    trace_cap: usize,
) -> Result<MultiStats, String> {
    let mut rng = SplitMix64::new(seed ^ 0x0317_7161_u64);
    let n = if rng.chance(70) { 3 } else { 5 };
    let groups = 3 + rng.below(8);
    let mut m = Multi::new(seed, n, groups, cfg, trace_cap);
    // Some runners tick quiesced groups anyway: it must change nothing.
    m.skip_quiesced = rng.chance(80);
    m.faults = NetFaults {
        drop_pct: rng.below(6),
        dup_pct: rng.below(4),
        max_delay_ms: 1 + rng.below(15),
        max_sync_delay_ms: rng.below(20),
    };
    let result = start_all(&mut m)
        .and_then(|()| chaos(&mut m))
        .and_then(|()| liveness(&mut m))
        .and_then(|()| idle(&mut m))
        .and_then(|()| m.check_acked_everywhere());
    match result {
        Ok(()) => {
            m.stats.acked = m.acked();
            if trace_cap > 10_000 {
                eprintln!("{}", m.report("none: the seed passed; its trace"));
            }
            Ok(m.stats)
        }
        Err(e) => Err(m.report(&e)),
    }
}

pub(crate) fn start_all(m: &mut Multi) -> Result<(), String> {
    for id in m.ids() {
        m.start(id)?;
    }
    Ok(())
}

fn pick_node(m: &mut Multi) -> NodeId {
    let ids = m.ids();
    ids[m.rng.below(ids.len() as u64) as usize]
}

fn pick_group(m: &mut Multi) -> Group {
    let groups = m.groups();
    groups[m.rng.below(groups.len() as u64) as usize]
}

fn chaos(m: &mut Multi) -> Result<(), String> {
    let end = m.now_ms + CHAOS_MS;
    while m.now_ms < end {
        m.step_ms()?;
        m.take_answers();
        if m.rng.below(100) < 8 {
            let g = pick_group(m);
            let target = match m.leader(g) {
                Some(l) if m.rng.chance(85) => l,
                _ => pick_node(m),
            };
            let k = 1 + m.rng.below(3) as usize;
            let deadline = m.now_ms + PRODUCE_DEADLINE_MS;
            m.submit(target, g, k, deadline)?;
        }
        fault(m)?;
    }
    Ok(())
}

/// At most one fault per ms, each rare.
fn fault(m: &mut Multi) -> Result<(), String> {
    let roll = m.rng.below(10_000);
    let id = pick_node(m);
    match roll {
        0..=5 => m.crash(id),
        6..=30 if !m.is_up(id) => m.start(id)?,
        31..=34 => {
            let side = [id];
            m.partition(&side);
        }
        35..=38 => {
            let other = pick_node(m);
            if other != id {
                m.block(id, other);
            }
        }
        39..=46 => m.heal()?,
        57..=62 => {
            let g = pick_group(m);
            m.transfer(id, g)?;
        }
        47..=56 => {
            // A false (or true) "dead" report: `at` believes `id` dead for a while.
            let at = pick_node(m);
            if at != id {
                let ms = ELECTION_MS * (1 + m.rng.below(5));
                m.report_dead(at, id, ms);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Heals everything, restarts every node, and waits (bounded) until every group
/// has acknowledged a new produce and every replica has caught up with it.
fn liveness(m: &mut Multi) -> Result<(), String> {
    m.heal()?;
    m.faults = NetFaults {
        max_delay_ms: 5,
        max_sync_delay_ms: 5,
        ..NetFaults::default()
    };
    for id in m.ids() {
        m.start(id)?;
    }
    let start = m.now_ms;
    // Group → (marker request, acked at).
    let mut markers: BTreeMap<Group, (u64, Option<Index>)> = BTreeMap::new();
    while m.now_ms - start < LIVENESS_BOUND_MS {
        m.step_ms()?;
        for (g, req, result) in m.take_answers() {
            if markers.get(&g).is_some_and(|(r, _)| *r == req) {
                match result {
                    Ok(p) => {
                        markers.insert(g, (req, Some(p.last)));
                    }
                    Err(_) => {
                        markers.remove(&g);
                    }
                }
            }
        }
        for g in m.groups() {
            if markers.contains_key(&g) {
                continue;
            }
            if let Some(l) = m.leader(g) {
                let deadline = m.now_ms + PRODUCE_DEADLINE_MS;
                if let Some(req) = m.submit(l, g, 1, deadline)? {
                    markers.entry(g).or_insert((req, None));
                }
            }
        }
        if m.groups().iter().all(|g| caught_up(m, *g, &markers)) {
            return Ok(());
        }
    }
    Err(format!(
        "LIVENESS violated: {LIVENESS_BOUND_MS} ms after healing, markers {markers:?}: not \
         every group acknowledged a new produce and caught up everywhere"
    ))
}

fn caught_up(m: &Multi, g: Group, markers: &BTreeMap<Group, (u64, Option<Index>)>) -> bool {
    let Some((_, Some(at))) = markers.get(&g) else {
        return false;
    };
    m.ids().into_iter().all(|id| {
        m.driver(id, g)
            .is_some_and(|d| d.commit() >= *at && !d.recovering())
    })
}

/// Once idle, every group quiesces on every node and the last answers of the
/// quiescing exchange are delivered (bounded); then the whole cluster sends no
/// Raft message and runs no group tick.
pub(crate) fn idle(m: &mut Multi) -> Result<(), String> {
    let start = m.now_ms;
    while !(m.in_flight() == 0 && m.groups().iter().all(|g| m.quiesced_everywhere(*g))) {
        if m.now_ms - start > QUIESCE_BOUND_MS {
            let awake: Vec<Group> = m
                .groups()
                .into_iter()
                .filter(|g| !m.quiesced_everywhere(*g))
                .collect();
            return Err(format!(
                "QUIESCENCE violated: groups {awake:?} still awake {QUIESCE_BOUND_MS} ms after \
                 the cluster went idle"
            ));
        }
        m.step_ms()?;
    }
    let (sent, ticks) = (m.stats.sent, m.stats.ticks_run);
    m.run_ms(IDLE_WATCH_MS)?;
    let ticked = m.skip_quiesced && m.stats.ticks_run != ticks;
    if m.stats.sent != sent || ticked {
        return Err(format!(
            "IDLE COST violated: quiesced groups sent {} messages and ran {} ticks in {} ms",
            m.stats.sent - sent,
            m.stats.ticks_run - ticks,
            IDLE_WATCH_MS
        ));
    }
    Ok(())
}
