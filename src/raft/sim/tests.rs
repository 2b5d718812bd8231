//! Randomized simulation over many seeds, the replay entry point, and proof that the
//! checker catches deliberately broken Raft variants.
//!
//! * `many_seeds`: `RAFT_SIM_SEEDS` seeds (default 4000) from `RAFT_SIM_SEED_BASE`
//!   (default 0). Soak: `RAFT_SIM_SEEDS=100000 cargo test --release --lib
//!   raft::sim::tests::many_seeds` (`make sim SEEDS=100000`).
//!   Every fourth seed runs the membership-churn plan (frequent membership changes
//!   under link faults and crashes, then liveness with one voter left down).
//! * `replay_seed`: `RAFT_SIM_SEED=<seed> cargo test --lib raft::sim::tests::replay_seed
//!   -- --nocapture` replays one seed exactly and prints its trace tail.
//!
//! Each run draws its network from the seed: loss, duplication, reordering, and a few
//! percent of messages delayed up to 5 election timeouts (so votes, appends and their
//! answers of old terms arrive several elections later), plus link faults (symmetric,
//! one-way, inbound-only, outbound-only, partial mesh) that heal later; and process
//! faults: crashes at random moments, right after a Ready's messages left but before
//! its writes, in the middle of a write (torn append), pauses of up to 60 ticks, and
//! data dirs wiped within the fault bound (see `Cluster::may_wipe`).

use super::faults::{Fault, FaultRates, FaultSchedule};
use super::net::NetProfile;
use super::{sim_config, Cluster, Event, SimBugs};
use crate::raft::config::Bugs;
use crate::raft::{ConfChange, Index, Membership, NodeId, ProposeError, SplitMix64};

/// Knobs of one randomized run; everything else derives from the seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub chaos_ticks: u64,
    pub faults: FaultRates,
    pub membership: bool,
    /// Chance per tick of a membership change at the leader.
    pub membership_pct: u64,
    /// After the chaos, keep one voter down through the liveness phase when the
    /// others form a majority of every configuration in play.
    pub liveness_with_one_down: bool,
    pub bugs: Bugs,
    pub sim_bugs: SimBugs,
    /// Overrides `max_size_per_msg` (1 = one entry per AppendEntries).
    pub max_size_per_msg: Option<u64>,
    /// Chance per tick of a client proposal.
    pub propose_pct: u64,
    /// Messages delayed up to this many election timeouts (a few percent of them).
    pub long_delay_timeouts: u64,
}

impl Plan {
    pub(crate) fn normal() -> Plan {
        Plan {
            chaos_ticks: 300,
            faults: FaultRates {
                crash_pct: 1,
                pause_pct: 1,
                wipe_pct: 1,
                restart_pct: 10,
                link_pct: 2,
                heal_pct: 6,
                max_pause_ticks: 60,
            },
            membership: true,
            membership_pct: 3,
            liveness_with_one_down: false,
            bugs: Bugs::default(),
            sim_bugs: SimBugs::default(),
            max_size_per_msg: None,
            propose_pct: 40,
            long_delay_timeouts: 5,
        }
    }

    /// Membership changes under link faults and crashes, and liveness with a voter
    /// (often the last leader) left down: covers thesis §4.2.2 (a server removed by
    /// an uncommitted configuration keeps campaigning) by seeds.
    pub(crate) fn membership_churn() -> Plan {
        let mut p = Plan::normal();
        p.membership_pct = 15;
        p.faults.link_pct = 5;
        p.faults.heal_pct = 4;
        p.faults.crash_pct = 2;
        p.liveness_with_one_down = true;
        p
    }

    /// The plan `many_seeds` and `replay_seed` use for `seed`.
    pub(crate) fn for_seed(seed: u64) -> Plan {
        if seed % 4 == 3 {
            Plan::membership_churn()
        } else {
            Plan::normal()
        }
    }
}

/// Counters from a successful run.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RunStats {
    pub commits: u64,
    pub acks: u64,
    pub liveness_ticks: u64,
}

/// Runs one seed; `Err` carries the failure report (with the replay command).
pub(crate) fn run_seed(seed: u64, plan: Plan) -> Result<RunStats, String> {
    let mut rng = SplitMix64::new(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    let n: u64 = if seed.is_multiple_of(2) { 3 } else { 5 };
    let ids: Vec<u64> = (1..=n + 1).collect();
    let voters: Vec<u64> = (1..=n).collect();
    let pre_vote = rng.chance(75);
    // At least one of pre-vote and check-quorum: with neither, a removed server that
    // missed its removal disrupts elections forever (thesis §4.2.3) and liveness is
    // not expected.
    let check_quorum = !pre_vote || rng.chance(75);
    // Half the seeds bound the in-flight window by bytes too (drawn apart from
    // `rng`, so the other draws stay as they were).
    let window_draw = SplitMix64::new(seed ^ 0x000B_17E5_u64).next_u64();
    let max_inflight_bytes = if window_draw.is_multiple_of(2) {
        64 * (1 + (window_draw >> 8) % 8)
    } else {
        0
    };
    // A third of the seeds throttle catch-up (one to four entries' worth per tick).
    let catch_up_bytes_per_tick = if (window_draw >> 16).is_multiple_of(3) {
        32 * (1 + (window_draw >> 24) % 4)
    } else {
        0
    };
    let bugs = plan.bugs;
    let mut c = Cluster::new(seed, &ids, &voters, |id| {
        let mut cfg = sim_config(id);
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.max_inflight_bytes = max_inflight_bytes;
        cfg.catch_up_bytes_per_tick = catch_up_bytes_per_tick;
        cfg.bugs = bugs;
        if let Some(m) = plan.max_size_per_msg {
            cfg.max_size_per_msg = m;
        }
        cfg
    });
    if plan.bugs != Bugs::default() || plan.sim_bugs != SimBugs::default() {
        c.replay_hint = Some(format!(
            "a bug-switch run ({:?}, {:?}), seed {seed}",
            plan.bugs, plan.sim_bugs
        ));
    }
    c.sim_bugs = plan.sim_bugs;
    c.instant_persist = false;
    let election_tick = u64::from(sim_config(NodeId(1)).election_tick);
    c.net.profile = NetProfile {
        drop_pct: rng.below(8),
        dup_pct: rng.below(5),
        max_delay_ticks: 1 + rng.below(3),
        long_delay_pct: rng.below(6),
        long_delay_max_ticks: plan.long_delay_timeouts * election_tick,
    };
    let result = chaos(&mut c, &mut rng, plan).and_then(|()| liveness(&mut c, &mut rng, plan));
    if std::env::var_os("RAFT_SIM_TRACE").is_some() {
        // Replaying a passing seed with its trace: RAFT_SIM_TRACE=1 RAFT_SIM_SEED=…
        eprintln!("{}", c.report("trace requested (RAFT_SIM_TRACE)"));
    }
    match result {
        Ok(liveness_ticks) => Ok(RunStats {
            commits: c.checker.commits_observed,
            acks: c.checker.acks_observed,
            liveness_ticks,
        }),
        Err(e) => Err(c.report(&e)),
    }
}

/// One virtual tick: deliver due messages in random order, random persistence
/// acknowledgements, then tick every running node.
fn tick_once(c: &mut Cluster, rng: &mut SplitMix64, persist_pct: u64) -> Result<(), String> {
    c.now += 1;
    c.record(Event::Tick(c.now));
    for _ in 0..10_000 {
        if !c.deliver_one(true)? {
            break;
        }
    }
    for id in c.ids() {
        if c.is_up(id) && rng.chance(persist_pct) {
            let k = 1 + rng.below(3) as usize;
            c.persist(id, k)?;
        }
    }
    let mut ids = c.ids();
    super::net::shuffle(rng, &mut ids);
    for id in ids {
        c.tick_node(id)?;
    }
    Ok(())
}

fn apply_fault(c: &mut Cluster, f: Fault) -> Result<(), String> {
    match f {
        Fault::Crash(id, point) => c.crash_at(id, point),
        Fault::Pause(id, ticks) => c.pause(id, ticks),
        Fault::Wipe(id) if c.may_wipe(id) => c.wipe(id)?,
        Fault::Wipe(_) => {}
        Fault::Restart(id) => {
            c.start(id)?;
            c.settle(id)?;
        }
        Fault::Link(kind) => c.link_fault(kind),
        Fault::Heal => c.heal(),
    }
    Ok(())
}

fn client(c: &mut Cluster, rng: &mut SplitMix64) -> Result<(), String> {
    let ids = c.ids();
    let target = match c.leaders().first() {
        Some(l) if rng.chance(90) => *l,
        _ => ids[rng.below(ids.len() as u64) as usize],
    };
    if !c.is_active(target) {
        return Ok(());
    }
    match c.propose(target.0, 1 + rng.below(3) as usize) {
        Ok(_)
        | Err(ProposeError::NotLeader { .. })
        | Err(ProposeError::TooManyPending)
        | Err(ProposeError::Transferring) => Ok(()),
        Err(e) => Err(format!("unexpected proposal error: {e}")),
    }
}

fn chaos(c: &mut Cluster, rng: &mut SplitMix64, plan: Plan) -> Result<(), String> {
    let mut schedule = FaultSchedule::new(plan.faults);
    for _ in 0..plan.chaos_ticks {
        tick_once(c, rng, 60)?;
        if rng.chance(plan.propose_pct) {
            client(c, rng)?;
        }
        let ids = c.ids();
        let up: Vec<NodeId> = ids.iter().copied().filter(|i| c.is_up(*i)).collect();
        let faults = schedule.draw(rng, &ids, |id| up.contains(&id));
        for f in faults {
            apply_fault(c, f)?;
        }
        // Membership changes and leadership transfers at the leader.
        if let Some(&l) = c.leaders().first().filter(|l| c.is_active(**l)) {
            if plan.membership && rng.chance(plan.membership_pct) {
                conf_change(c, rng, l)?;
            }
            // An armed crash may have taken the leader down during the change.
            if rng.chance(1) && c.is_active(l) {
                let voters: Vec<NodeId> = c.node(l.0).membership().voters.iter().copied().collect();
                let to = voters[rng.below(voters.len() as u64) as usize];
                if to != l && c.node_mut(l.0).transfer_leadership(to).is_ok() {
                    c.record(Event::Transfer(l, to));
                    c.settle(l)?;
                }
            }
        }
        if rng.chance(3) {
            compact(c, rng)?;
        }
        c.check_all()?;
    }
    Ok(())
}

/// Compaction of a committed, durable prefix on a random active node.
fn compact(c: &mut Cluster, rng: &mut SplitMix64) -> Result<(), String> {
    let ids = c.ids();
    let id = ids[rng.below(ids.len() as u64) as usize];
    if !c.is_active(id) {
        return Ok(());
    }
    let r = c.node(id.0);
    let top = r.commit_index().min(r.persisted_index());
    let through = top - rng.below(4);
    if through > r.log_start().index {
        let r = c.node_mut(id.0);
        let start = r.compact(through).map_err(|e| format!("compact: {e}"))?;
        r.storage_mut()
            .compact(start)
            .map_err(|e| format!("storage compact: {e}"))?;
        c.record(Event::Compact(id, through));
    }
    Ok(())
}

fn conf_change(c: &mut Cluster, rng: &mut SplitMix64, l: NodeId) -> Result<(), String> {
    let m = c.node(l.0).membership().clone();
    let outsiders: Vec<NodeId> = c.ids().into_iter().filter(|i| !m.contains(*i)).collect();
    let mut options = Vec::new();
    if let Some(o) = outsiders.first() {
        options.push(ConfChange::AddLearner(*o));
    }
    if let Some(lr) = m.learners.iter().next() {
        options.push(ConfChange::AddVoter(*lr));
    }
    // The fault model allows a minority of voters to lose data at once; shrinking the
    // configuration while one is still recovering could make it a majority.
    if m.voters.len() >= 3 && c.nodes_recovering() == 0 {
        let v: Vec<NodeId> = m.voters.iter().copied().collect();
        options.push(ConfChange::Remove(v[rng.below(v.len() as u64) as usize]));
    }
    if options.is_empty() {
        return Ok(());
    }
    let cc = options[rng.below(options.len() as u64) as usize];
    match c.node_mut(l.0).propose_conf_change(cc) {
        Ok(i) => {
            c.record(Event::ConfChange(l, cc, i));
            c.settle(l)
        }
        Err(ProposeError::ConfChangePending)
        | Err(ProposeError::TooManyPending)
        | Err(ProposeError::Transferring) => Ok(()),
        Err(e) => Err(format!("unexpected conf change error: {e}")),
    }
}

/// After healing everything: a leader must be elected and a new proposal must commit
/// within a bounded number of ticks; the node that commits it holds every
/// acknowledged entry at its index. Returns the ticks it took.
fn liveness(c: &mut Cluster, rng: &mut SplitMix64, plan: Plan) -> Result<u64, String> {
    // 100 election timeouts. Typical runs need < 60 ticks; the long tail comes from
    // runs without pre-vote, where a voter that is behind and holds a stale
    // configuration keeps starting elections it cannot win and bumps everyone's term
    // (seed 20042 needed 370 ticks). Each round still elects someone with probability
    // ~1/4, so 100 timeouts leave a failure chance far below one in 10^9 seeds.
    const BOUND_TICKS: u64 = 1000;
    c.heal();
    c.disarm_crashes();
    c.net.profile = NetProfile {
        max_delay_ticks: 1,
        ..NetProfile::default()
    };
    for id in c.ids() {
        if !c.is_up(id) {
            c.start(id)?;
            c.settle(id)?;
        }
    }
    if plan.liveness_with_one_down {
        keep_one_voter_down(c, rng);
    }
    let mut marker: Option<(Index, crate::raft::Payload)> = None;
    let mut proposed_at = 0;
    for t in 0..BOUND_TICKS {
        tick_once(c, rng, 100)?;
        if let Some((i, payload)) = &marker {
            if let Some(id) = c.committed_with(*i, payload) {
                c.check_acked_on(id)?;
                return Ok(t);
            }
        }
        if marker.is_none() || t - proposed_at > 30 {
            if let Some(&l) = c.leaders().first().filter(|l| c.is_active(**l)) {
                if let Ok(i) = c.propose(l.0, 1) {
                    let payload = c.node(l.0).entry_at(i).map(|e| e.data).unwrap_or_default();
                    marker = Some((i, payload));
                    proposed_at = t;
                }
            }
        }
    }
    Err(format!(
        "LIVENESS violated: no proposal committed within {BOUND_TICKS} ticks after healing (marker {:?})",
        marker.map(|m| m.0)
    ))
}

/// Crashes the leader (or a random voter) for good if the others still form a
/// majority of every configuration any running node holds, not counting nodes
/// that lost their data and cannot vote yet.
fn keep_one_voter_down(c: &mut Cluster, rng: &mut SplitMix64) {
    let ids = c.ids();
    let victim = match c.leaders().first() {
        Some(l) if rng.chance(70) => *l,
        _ => ids[rng.below(ids.len() as u64) as usize],
    };
    let configs: Vec<Membership> = ids
        .iter()
        .filter(|i| c.is_up(**i))
        .map(|i| c.node(i.0).membership().clone())
        .collect();
    let able = |v: &NodeId| *v != victim && c.is_up(*v) && c.nodes[v].recovering.is_none();
    let fine = configs
        .iter()
        .all(|m| m.voters.iter().filter(|v| able(v)).count() >= m.quorum());
    if fine {
        c.crash(victim);
    }
}

impl Cluster {
    /// Some running node that has committed `payload` at index `i`.
    fn committed_with(&self, i: Index, payload: &[u8]) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.raft.as_ref().map(|r| (id, r)))
            .find(|(_, r)| r.commit_index() >= i && r.entry_at(i).is_ok_and(|e| e.data == payload))
            .map(|(id, _)| *id)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn many_seeds() {
    let n = env_u64("RAFT_SIM_SEEDS", 4000);
    let base = env_u64("RAFT_SIM_SEED_BASE", 0);
    let mut commits = 0;
    let mut acks = 0;
    let mut worst_liveness = 0;
    let mut worst_seed = base;
    for seed in base..base + n {
        match run_seed(seed, Plan::for_seed(seed)) {
            Ok(s) => {
                commits += s.commits;
                acks += s.acks;
                if s.liveness_ticks > worst_liveness {
                    worst_liveness = s.liveness_ticks;
                    worst_seed = seed;
                }
            }
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!(
        "raft sim: {n} seeds ok, {commits} commitments and {acks} acknowledgements checked, \
         worst liveness {worst_liveness} ticks (seed {worst_seed})"
    );
    assert!(commits > n, "the runs commit entries");
    assert!(acks > n, "the runs acknowledge proposals");
}

#[test]
fn replay_seed() {
    let seed = env_u64("RAFT_SIM_SEED", 1);
    match run_seed(seed, Plan::for_seed(seed)) {
        Ok(s) => eprintln!("seed {seed} ok: {s:?}"),
        Err(report) => panic!("{report}"),
    }
}

/// Runs seeds with a broken variant (the base bug-hunting plan changed by `tweak`)
/// until the checker reports a violation.
fn find_violation(tweak: impl Fn(&mut Plan), max_seeds: u64) -> (u64, String) {
    let mut plan = Plan::normal();
    plan.membership = false;
    plan.max_size_per_msg = Some(1);
    plan.propose_pct = 15;
    plan.faults.link_pct = 10;
    tweak(&mut plan);
    for seed in 0..max_seeds {
        if let Err(report) = run_seed(seed, plan) {
            eprintln!(
                "{:?} {:?} caught at seed {seed}: {}",
                plan.bugs,
                plan.sim_bugs,
                report.lines().next().unwrap_or("")
            );
            return (seed, report);
        }
    }
    panic!("no violation found in {max_seeds} seeds for {plan:?}");
}

#[test]
fn checker_catches_committing_old_term_entries_by_counting() {
    let (_, report) = find_violation(
        |p| {
            p.bugs.commit_old_term_by_counting = true;
            p.bugs.skip_leader_noop = true;
            p.faults.crash_pct = 5;
        },
        3000,
    );
    assert!(report.contains("violated"), "{report}");
}

#[test]
fn checker_catches_unpersisted_votes() {
    let (_, report) = find_violation(
        |p| {
            p.bugs.forget_to_persist_vote = true;
            p.faults.crash_pct = 5;
        },
        3000,
    );
    assert!(report.contains("violated"), "{report}");
}

#[test]
fn checker_catches_votes_without_log_check() {
    let (_, report) = find_violation(|p| p.bugs.vote_without_log_check = true, 3000);
    assert!(report.contains("violated"), "{report}");
}

#[test]
fn checker_catches_acks_before_persistence() {
    let (_, report) = find_violation(
        |p| {
            p.bugs.ack_before_persist = true;
            p.faults.crash_pct = 5;
        },
        3000,
    );
    assert!(report.contains("violated"), "{report}");
}

/// The vote is persisted, but the grant leaves before the fsync: no crash is needed
/// for the Ready-contract check to see it.
#[test]
fn checker_catches_a_vote_sent_before_it_is_persisted() {
    let (_, report) = find_violation(|p| p.bugs.vote_response_before_persist = true, 100);
    assert!(
        report.contains("READY CONTRACT violated") && report.contains("sends RequestVoteResp"),
        "{report}"
    );
}

/// A leader that counts its own append toward the commit quorum before its fsync
/// commits (and so acknowledges) entries a majority does not hold on disk.
#[test]
fn checker_catches_a_leader_committing_before_its_own_fsync() {
    let (_, report) = find_violation(
        |p| {
            p.bugs.leader_counts_unpersisted_append = true;
            p.faults.crash_pct = 5;
        },
        1000,
    );
    assert!(report.contains("violated"), "{report}");
}

/// Acknowledging a proposal to its client as soon as the leader appended it (before
/// its fsync and before commit): a crash loses acknowledged entries.
#[test]
fn checker_catches_acknowledgements_before_commit_and_fsync() {
    let (_, report) = find_violation(
        |p| {
            p.sim_bugs.ack_on_append = true;
            p.faults.crash_pct = 5;
        },
        1000,
    );
    assert!(
        report.contains("ACKNOWLEDGE") && report.contains("violated") || report.contains("LOST"),
        "{report}"
    );
}

/// A node whose data dir was wiped votes at once with its empty log and forgotten
/// vote: it helps elect a leader without committed entries, or votes twice in a term.
#[test]
fn checker_catches_a_wiped_node_voting_before_it_caught_up() {
    let (_, report) = find_violation(
        |p| {
            p.sim_bugs.wiped_node_votes = true;
            p.faults.wipe_pct = 10;
        },
        3000,
    );
    assert!(report.contains("violated"), "{report}");
}
