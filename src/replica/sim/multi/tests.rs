//! Multi-group scenarios and randomized runs.
//!
//! * `many_seeds`: `REPLICA_MULTI_SEEDS` seeds (default 300) from
//!   `REPLICA_MULTI_SEED_BASE` (default 0).
//! * `replay_seed`: `REPLICA_SIM_SEED=<n> cargo test --lib
//!   replica::sim::multi::tests::replay_seed -- --nocapture`.
#![cfg(test)]

use super::run::{idle, raft_config, run_seed, run_seed_with, start_all};
use super::{Group, Multi, MultiStats};
use std::collections::BTreeMap;

use crate::raft::{Index, NodeId, Role};
use crate::replica::sim::{ELECTION_MS, TICK_MS};
use crate::replica::MemberView;

const TRACE_EVENTS: usize = 300;
const REPLAY_TRACE_EVENTS: usize = 200_000;
const NODES: u64 = 3;
const GROUPS: u64 = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn ok<T>(m: &Multi, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{}", m.report(&e)))
}

/// Runs until `done` holds, at most `bound_ms`.
fn run_until(m: &mut Multi, bound_ms: u64, done: impl Fn(&Multi) -> bool) -> bool {
    let end = m.now_ms + bound_ms;
    while m.now_ms < end {
        if done(m) {
            return true;
        }
        let r = m.step_ms();
        ok(m, r);
    }
    done(m)
}

/// Produces one record to every group through its leader and waits for the acks.
/// Returns each group's acknowledged offset.
fn produce_everywhere(m: &mut Multi) -> Vec<(Group, Index)> {
    let mut acked = Vec::new();
    for g in m.groups() {
        let found = run_until(m, 50 * ELECTION_MS, |m| m.leader(g).is_some());
        assert!(found, "{}", m.report(&format!("no leader in group {g}")));
        let l = m.leader(g).expect("found");
        let deadline = m.now_ms + 50 * ELECTION_MS;
        let r = m.submit(l, g, 1, deadline);
        let req = ok(m, r).expect("leader is up");
        let mut at = None;
        for _ in 0..50 * ELECTION_MS {
            let answers = m.take_answers();
            if let Some((_, _, res)) = answers.into_iter().find(|(_, r, _)| *r == req) {
                let p = res.unwrap_or_else(|e| panic!("group {g} produce refused: {e:?}"));
                at = Some(p.last);
                break;
            }
            let r = m.step_ms();
            ok(m, r);
        }
        acked.push((
            g,
            at.unwrap_or_else(|| panic!("group {g}: produce not answered")),
        ));
    }
    acked
}

/// A cluster of 3 nodes × 20 groups, started, one produce per group, idle and
/// quiesced everywhere.
fn idle_cluster(seed: u64) -> Multi {
    let mut m = Multi::new(seed, NODES, GROUPS, raft_config(), TRACE_EVENTS);
    let r = start_all(&mut m);
    ok(&m, r);
    produce_everywhere(&mut m);
    let r = idle(&mut m);
    ok(&m, r);
    m
}

/// Raft messages per tick over `ticks` ticks.
fn messages_per_tick(m: &mut Multi, ticks: u64) -> f64 {
    let sent = m.stats.sent;
    let r = m.run_ms(ticks * TICK_MS);
    ok(m, r);
    (m.stats.sent - sent) as f64 / ticks as f64
}

#[test]
fn idle_groups_send_nothing_and_are_not_ticked() {
    // Before: the same cluster without quiescence heartbeats every tick.
    let mut cfg = raft_config();
    cfg.quiesce = false;
    let mut busy = Multi::new(1, NODES, GROUPS, cfg, TRACE_EVENTS);
    let r = start_all(&mut busy);
    ok(&busy, r);
    produce_everywhere(&mut busy);
    let before = messages_per_tick(&mut busy, 100);
    // 20 groups × 2 followers × (heartbeat + response) per heartbeat tick.
    let expected = (GROUPS * (NODES - 1) * 2) as f64;
    assert!(
        (before - expected).abs() < 1.0,
        "{before} messages per tick"
    );

    let mut m = idle_cluster(1);
    let ticks_run = m.stats.ticks_run;
    let after = messages_per_tick(&mut m, 100);
    assert_eq!(after, 0.0, "{}", m.report("quiesced groups sent messages"));
    assert_eq!(
        m.stats.ticks_run, ticks_run,
        "the runner skipped every tick"
    );
    assert!(m.stats.ticks_skipped >= 100 * NODES * GROUPS);
    // A runner that ticks quiesced groups anyway: still nothing.
    m.skip_quiesced = false;
    let ticked = messages_per_tick(&mut m, 100);
    assert_eq!(
        ticked,
        0.0,
        "{}",
        m.report("ticking quiesced groups sent messages")
    );
    assert!(m.groups().iter().all(|g| m.quiesced_everywhere(*g)));
    eprintln!(
        "idle cost, {NODES} nodes x {GROUPS} groups: {before} Raft messages per tick without \
         quiescence, {after} with it (group ticks run while idle: 0)"
    );
}

#[test]
fn a_quiesced_group_whose_leader_dies_elects_a_new_one() {
    let mut m = idle_cluster(2);
    m.detector = false;
    // The node leading most groups dies.
    let victim = (1..=NODES)
        .map(NodeId)
        .max_by_key(|id| {
            m.groups()
                .iter()
                .filter(|g| m.leader(**g) == Some(*id))
                .count()
        })
        .expect("nodes");
    let led: Vec<Group> = m
        .groups()
        .into_iter()
        .filter(|g| m.leader(*g) == Some(victim))
        .collect();
    assert!(!led.is_empty());
    let terms: Vec<_> = led.iter().map(|g| m.max_term(*g)).collect();
    m.crash(victim);
    // Without a liveness report the quiesced followers do not notice (no timer).
    let r = m.run_ms(20 * ELECTION_MS);
    ok(&m, r);
    for (g, t) in led.iter().zip(&terms) {
        assert!(m.quiesced_everywhere(*g), "group {g} woke without a report");
        assert_eq!(m.max_term(*g), *t, "group {g} held an election");
    }
    // The failure detector reports it: every group it led elects a new leader.
    for id in m.ids() {
        if id != victim {
            m.report_dead(id, victim, 1000 * ELECTION_MS);
        }
    }
    let elected = run_until(&mut m, 20 * ELECTION_MS, |m| {
        led.iter()
            .all(|g| m.leader(*g).is_some_and(|l| l != victim))
    });
    assert!(elected, "{}", m.report("no new leader after the report"));
    for g in &led {
        let l = m.leader(*g).expect("elected");
        assert_eq!(m.driver(l, *g).map(|d| d.raft().role()), Some(Role::Leader));
    }
    // New produces commit in every group (two of three voters up).
    let acked = produce_everywhere(&mut m);
    assert_eq!(acked.len() as u64, GROUPS);
    // And the survivors go idle again.
    let r = idle(&mut m);
    ok(&m, r);
}

#[test]
fn a_false_dead_report_about_a_live_leader_costs_at_most_an_election() {
    let mut m = idle_cluster(3);
    m.detector = false;
    let g = 0;
    let leader = m.leader(g).expect("leader");
    let term = m.max_term(g);
    let follower = (1..=NODES)
        .map(NodeId)
        .find(|id| *id != leader)
        .expect("3 nodes");
    m.report_dead(follower, leader, 10 * ELECTION_MS);
    let r = m.run_ms(20 * ELECTION_MS);
    ok(&m, r);
    assert!(
        m.max_term(g).0 <= term.0 + 1,
        "{}",
        m.report("more than one election")
    );
    let acked = produce_everywhere(&mut m);
    assert_eq!(acked.len() as u64, GROUPS);
    let r = idle(&mut m);
    ok(&m, r);
}

#[test]
fn many_seeds() {
    let n = env_u64("REPLICA_MULTI_SEEDS", 300);
    let base = env_u64("REPLICA_MULTI_SEED_BASE", 0);
    let mut total = MultiStats::default();
    let mut failed: Vec<(u64, String)> = Vec::new();
    let mut first_report = None;
    for seed in base..base + n {
        match run_seed(seed, TRACE_EVENTS) {
            Ok(s) => {
                total.sent += s.sent;
                total.crashes += s.crashes;
                total.false_reports += s.false_reports;
                total.liveness_reports += s.liveness_reports;
                total.acked += s.acked;
                total.ticks_run += s.ticks_run;
                total.ticks_skipped += s.ticks_skipped;
            }
            Err(report) => {
                failed.push((seed, report.lines().next().unwrap_or("").to_string()));
                first_report.get_or_insert(report);
            }
        }
    }
    eprintln!(
        "multi-group sim: {n} seeds: {} produces acked, {} crashes, {} liveness changes fed \
         ({} false dead reports), {} messages, group ticks run {} / skipped while quiesced {}",
        total.acked,
        total.crashes,
        total.liveness_reports,
        total.false_reports,
        total.sent,
        total.ticks_run,
        total.ticks_skipped
    );
    if let Some(report) = first_report {
        let list: Vec<String> = failed.iter().map(|(s, l)| format!("  {s}: {l}")).collect();
        panic!(
            "{report}\n{} of {n} seeds failed:\n{}",
            failed.len(),
            list.join("\n")
        );
    }
    assert!(total.acked > n && total.crashes > 0 && total.false_reports > 0);
    assert!(total.ticks_skipped > 0);
}

#[test]
fn replay_seed() {
    let seed = env_u64("REPLICA_SIM_SEED", 1);
    match run_seed(seed, REPLAY_TRACE_EVENTS) {
        Ok(s) => eprintln!("seed {seed} ok: {s:?}"),
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn a_quiesced_leader_cut_off_steps_down_once_a_produce_wakes_it() {
    let mut m = idle_cluster(4);
    m.detector = false;
    let g = 0;
    let leader = m.leader(g).expect("leader");
    m.partition(&[leader]);
    // Quiesced: no check-quorum runs, nobody notices, it stays leader.
    let r = m.run_ms(20 * ELECTION_MS);
    ok(&m, r);
    assert_eq!(m.leader(g), Some(leader));
    assert!(m.quiesced_everywhere(g));
    // A produce wakes it; it cannot commit it, and check-quorum deposes it.
    let deadline = m.now_ms + 100 * ELECTION_MS;
    let r = m.submit(leader, g, 1, deadline);
    let req = ok(&m, r).expect("up");
    let deposed = run_until(&mut m, 3 * ELECTION_MS, |m| {
        m.driver(leader, g).map(|d| d.raft().role()) != Some(Role::Leader)
    });
    assert!(
        deposed,
        "{}",
        m.report("a leader without quorum kept leading")
    );
    let answers = m.take_answers();
    let answer = answers.iter().find(|(_, r, _)| *r == req);
    assert!(
        !matches!(answer, Some((_, _, Ok(_)))),
        "acknowledged without a quorum: {answer:?}"
    );
    // The other side elects once told, and serves.
    for id in m.ids() {
        if id != leader {
            m.report_dead(id, leader, 1000 * ELECTION_MS);
        }
    }
    let elected = run_until(&mut m, 20 * ELECTION_MS, |m| {
        m.leader(g).is_some_and(|l| l != leader)
    });
    assert!(elected, "{}", m.report("the majority side elected nobody"));
}

#[test]
fn a_quiesced_leader_wakes_for_a_membership_change() {
    let mut m = idle_cluster(5);
    let g = 1;
    let leader = m.leader(g).expect("leader");
    let live = MemberView {
        live: true,
        decommission: false,
        has_rpc_addr: true,
    };
    let mut members: BTreeMap<NodeId, MemberView> =
        (1..=NODES).map(|i| (NodeId(i), live)).collect();
    // Same members: nothing to change, it stays quiesced.
    let same = members.clone();
    let r = m.with_driver(leader, g, |d| {
        d.set_members(same);
        Ok(())
    });
    ok(&m, r);
    assert!(m.driver(leader, g).is_some_and(|d| d.is_quiesced()));
    // A new live member: it wakes, and its next tick proposes the learner.
    members.insert(NodeId(9), live);
    let r = m.with_driver(leader, g, |d| {
        d.set_members(members);
        Ok(())
    });
    ok(&m, r);
    assert!(m.driver(leader, g).is_some_and(|d| !d.is_quiesced()));
    let added = run_until(&mut m, 5 * ELECTION_MS, |m| {
        m.driver(leader, g)
            .is_some_and(|d| d.raft().membership().learners.contains(&NodeId(9)))
    });
    assert!(added, "{}", m.report("the learner was not proposed"));
}

/// Proof the checker sees quiescence bugs: a quiesce heartbeat that tells a
/// follower behind (on a node reported dead) the full commit index makes it commit
/// stale entries (found by this simulator before the fix).
#[test]
fn checker_catches_a_quiesce_heartbeat_past_the_follower_match() {
    let mut cfg = raft_config();
    cfg.bugs.quiesce_tells_full_commit = true;
    let found = (0..200).find_map(|seed| run_seed_with(seed, cfg.clone(), TRACE_EVENTS).err());
    let report = found.expect("some seed fails with the bug");
    assert!(
        report.contains("COMMITTED ENTRIES NEVER CHANGE") || report.contains("LOG MATCHING"),
        "{report}"
    );
}
