//! Scenario tests on the simulator. Each test runs a few fixed seeds (or the one in
//! `GOSSIP_SIM_SEED`); a failure prints the seed and a one-line replay command.
//! Bigger clusters and longer runs: `GOSSIP_SIM_LONG=1` (see `make gossip-sim`).
//!
//! Timings are memberlist's LAN defaults (1 s protocol period), in virtual time.

use super::*;
use crate::gossip::config::GossipConfig;

fn long() -> bool {
    std::env::var("GOSSIP_SIM_LONG").is_ok_and(|v| v == "1")
}

/// The seeds to run: `GOSSIP_SIM_SEED` if set, else `defaults`.
fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("GOSSIP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => defaults.to_vec(),
    }
}

/// Panics with the seed and a replay command unless `cond` holds.
fn check(sim: &Sim, test: &str, cond: bool, what: &str) {
    if !cond {
        panic!(
            "gossip sim seed {} failed: {what} (t = {} ms)\nreplay: {}",
            sim.seed(),
            sim.now_ms(),
            sim.replay_hint(test)
        );
    }
}

const PERIOD_MS: u64 = 1_000;

/// Forms a cluster of `n` nodes (all join through node 0) and waits for convergence.
/// Returns the sim and the convergence time.
fn formed(seed: u64, n: usize, net: NetConfig, test: &str) -> (Sim, u64) {
    let mut sim = Sim::new(seed, n, GossipConfig::lan(), net);
    sim.join_all_via(0);
    let took = sim.run_until(60 * PERIOD_MS, Sim::converged);
    check(
        &sim,
        test,
        took.is_some(),
        "cluster did not converge within 60 periods",
    );
    (sim, took.unwrap_or_default())
}

#[test]
fn join_converges_within_bounded_periods() {
    // SWIM: a joiner learns the whole view from the seed's state exchange (one round
    // trip); everyone else learns the joiner by epidemic dissemination, O(log n)
    // gossip rounds.
    let sizes: &[usize] = &[5, 20, 100];
    let defaults: &[u64] = if long() {
        &[1, 2, 3, 4, 5, 6, 7, 8]
    } else {
        &[1, 2]
    };
    for seed in seeds(defaults) {
        for &n in sizes {
            let (mut sim, took) = formed(
                seed,
                n,
                NetConfig::default(),
                "join_converges_within_bounded_periods",
            );
            check(
                &sim,
                "join_converges_within_bounded_periods",
                took <= 10 * PERIOD_MS,
                &format!("{n} nodes formed in {took} ms > 10 periods"),
            );
            // A late joiner into the converged cluster.
            let extra = n - 1;
            sim.crash(extra);
            sim.run_until(120 * PERIOD_MS, |s| {
                s.all_see(extra, &[MemberState::Dead], true)
            });
            sim.restart(extra, &[0]);
            let late = sim.run_until(30 * PERIOD_MS, Sim::converged);
            check(
                &sim,
                "join_converges_within_bounded_periods",
                late.is_some_and(|t| t <= 10 * PERIOD_MS),
                &format!("late joiner into {n} nodes: {late:?} ms"),
            );
        }
    }
}

#[test]
fn crashed_member_is_declared_failed_on_every_node_within_bound() {
    let test = "crashed_member_is_declared_failed_on_every_node_within_bound";
    let sizes: &[usize] = &[5, 20, 100];
    let defaults: &[u64] = if long() {
        &[11, 12, 13, 14, 15, 16, 17, 18]
    } else {
        &[11, 12]
    };
    for seed in seeds(defaults) {
        for &n in sizes {
            let (mut sim, _) = formed(seed, n, NetConfig::default(), test);
            let victim = 1 + (seed as usize % (n - 1));
            let victim_id = sim.id(victim);
            sim.crash(victim);
            // Bound: one period until someone probes it (n - 1 probers, each over a
            // shuffled list; allow a few), one period for the failed probe, the
            // unconfirmed Lifeguard maximum, plus dissemination.
            let max_suspicion = GossipConfig::lan().suspicion_max_timeout_ms(n);
            let bound = 5 * PERIOD_MS + max_suspicion + 5 * PERIOD_MS;
            let took = sim.run_until(bound, |s| s.all_see(victim, &[MemberState::Dead], false));
            check(
                &sim,
                test,
                took.is_some(),
                &format!(
                    "{n} nodes: crash of node {victim} not detected everywhere within {bound} ms"
                ),
            );
            // Every survivor emitted exactly one Fail for the victim.
            check(
                &sim,
                test,
                sim.fail_events_about(victim_id) == n - 1,
                "one Fail event per survivor",
            );
            // Nobody else was declared failed.
            let others = (0..n)
                .filter(|&i| i != victim)
                .map(|i| sim.fail_events_about(sim.id(i)))
                .sum::<usize>();
            check(&sim, test, others == 0, "a live node was declared failed");
            if n == 5 {
                // Dead members are forgotten after dead_retention_ms (10 min).
                sim.run_for(GossipConfig::lan().dead_retention_ms + 2 * PERIOD_MS);
                check(
                    &sim,
                    test,
                    sim.all_see(victim, &[], true),
                    "dead member not forgotten",
                );
                check(
                    &sim,
                    test,
                    sim.fail_events_about(victim_id) == n - 1,
                    "repeated Fail events",
                );
            }
        }
    }
}

#[test]
fn no_false_failures_under_ten_percent_loss() {
    let test = "no_false_failures_under_ten_percent_loss";
    // CI: 20 nodes for 600 periods. Long: 100 nodes for 3600 periods.
    let (n, periods) = if long() { (100, 3_600) } else { (20, 600) };
    let defaults: &[u64] = if long() {
        &[21, 22, 23, 24]
    } else {
        &[21, 22, 23]
    };
    for seed in seeds(defaults) {
        let lossy = NetConfig {
            loss: 0.10,
            min_delay_ms: 1,
            max_delay_ms: 20,
            duplicate: 0.01,
        };
        let (mut sim, _) = formed(seed, n, lossy, test);
        sim.run_for(periods * PERIOD_MS);
        let fails: usize = (0..n).map(|i| sim.fail_events_about(sim.id(i))).sum();
        let probes: u64 = (0..n)
            .filter_map(|i| sim.node(i))
            .map(|g| g.stats().probes_sent)
            .sum();
        let suspicions: u64 = (0..n)
            .filter_map(|i| sim.node(i))
            .map(|g| g.stats().probe_failures)
            .sum();
        log::info!("seed {seed}: {n} nodes, {periods} periods, 10% loss: {probes} probes, {suspicions} failed probes, {fails} false Fail events");
        check(
            &sim,
            test,
            fails == 0,
            &format!("{fails} false failure declarations ({suspicions} failed probes of {probes})"),
        );
        // Under loss some refutation is always in flight; once loss stops, views agree.
        sim.net.loss = 0.0;
        let agreed = sim.run_until(60 * PERIOD_MS, Sim::converged);
        check(
            &sim,
            test,
            agreed.is_some(),
            "views did not agree after loss stopped",
        );
    }
}

#[test]
fn healed_partition_merges_again() {
    let test = "healed_partition_merges_again";
    let n = if long() { 30 } else { 10 };
    for seed in seeds(&[31, 32]) {
        let (mut sim, _) = formed(seed, n, NetConfig::default(), test);
        let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
        sim.partition(&groups);
        let split = sim.run_until(120 * PERIOD_MS, |s| {
            (0..n).all(|i| {
                (0..n).all(|j| {
                    groups[i] == groups[j] || s.state_seen(i, j) == Some(MemberState::Dead)
                })
            })
        });
        check(
            &sim,
            test,
            split.is_some(),
            "the halves did not declare each other dead",
        );
        sim.heal();
        // Reconnect attempts to dead members (every 30 s per node) start the merge;
        // refutations finish it.
        let merged = sim.run_until(180 * PERIOD_MS, Sim::converged);
        check(
            &sim,
            test,
            merged.is_some(),
            "healed partition did not merge within 180 periods",
        );
        log::info!("seed {seed}: partition merged {merged:?} ms after heal");
    }
}

#[test]
fn graceful_leave_is_a_leave_not_a_failure() {
    let test = "graceful_leave_is_a_leave_not_a_failure";
    for seed in seeds(&[41, 42]) {
        let (mut sim, _) = formed(seed, 8, NetConfig::default(), test);
        let leaver = 3;
        let id = sim.id(leaver);
        if let Some(g) = sim.node_mut(leaver) {
            g.leave();
        }
        // The leaver keeps running a little (as the driver does), then stops.
        sim.run_for(2 * PERIOD_MS);
        sim.crash(leaver);
        let took = sim.run_until(10 * PERIOD_MS, |s| {
            s.all_see(leaver, &[MemberState::Left], false)
        });
        check(&sim, test, took.is_some(), "leave did not reach every node");
        let leaves = sim
            .events()
            .iter()
            .filter(|e| e.event.kind == MemberEventKind::Leave && e.event.member.id == id)
            .count();
        check(
            &sim,
            test,
            leaves == 7,
            &format!("{leaves} Leave events, want 7"),
        );
        sim.run_for(40 * PERIOD_MS);
        check(
            &sim,
            test,
            sim.fail_events_about(id) == 0,
            "a left node was declared failed",
        );
        // Left members are forgotten after left_retention_ms (30 s).
        check(
            &sim,
            test,
            sim.all_see(leaver, &[], true),
            "left member not forgotten",
        );
    }
}

#[test]
fn tag_update_propagates_as_update_event() {
    let test = "tag_update_propagates_as_update_event";
    for seed in seeds(&[51, 52]) {
        let (mut sim, _) = formed(seed, 10, NetConfig::default(), test);
        let node = 4;
        let id = sim.id(node);
        let tags = Tags::new()
            .with(TAG_RPC_ADDR, "127.0.0.1:9999")
            .and_then(|t| t.with("role", "voter"));
        check(&sim, test, tags.is_ok(), "tags");
        if let (Some(g), Ok(t)) = (sim.node_mut(node), tags) {
            g.set_tags(t);
        }
        let took = sim.run_until(10 * PERIOD_MS, |s| {
            (0..10).filter(|&i| i != node).all(|i| {
                s.view(i, node)
                    .is_some_and(|m| m.tags.get("role") == Some("voter"))
            })
        });
        check(&sim, test, took.is_some(), "tag update did not propagate");
        let updates = sim
            .events()
            .iter()
            .filter(|e| e.event.kind == MemberEventKind::Update && e.event.member.id == id)
            .count();
        check(
            &sim,
            test,
            updates == 9,
            &format!("{updates} Update events, want 9"),
        );
    }
}

#[test]
fn restarted_node_rejoins_with_a_higher_incarnation() {
    let test = "restarted_node_rejoins_with_a_higher_incarnation";
    for seed in seeds(&[61, 62]) {
        let (mut sim, _) = formed(seed, 8, NetConfig::default(), test);
        let node = 5;
        let id = sim.id(node);
        // Make its incarnation non-zero first (a tag change), so a restart at 0 is stale.
        if let Some(g) = sim.node_mut(node) {
            let mut t = g.local().tags.clone();
            let _ = t.insert("gen", "1");
            g.set_tags(t);
            g.set_tags(g.local().tags.clone());
        }
        sim.run_until(10 * PERIOD_MS, Sim::converged);
        let old_inc = sim.view(node, node).map_or(0, |m| m.incarnation);
        check(
            &sim,
            test,
            old_inc == 2,
            "incarnation after two tag updates",
        );

        // Case 1: restart before anyone noticed the crash.
        sim.restart(node, &[0]);
        let took = sim.run_until(10 * PERIOD_MS, Sim::converged);
        check(&sim, test, took.is_some(), "quick restart did not converge");
        let inc1 = sim.view(node, node).map_or(0, |m| m.incarnation);
        check(
            &sim,
            test,
            inc1 > old_inc,
            "restarted node did not out-bid its old incarnation",
        );

        // Case 2: crash, get declared dead, restart.
        sim.crash(node);
        sim.run_until(60 * PERIOD_MS, |s| {
            s.all_see(node, &[MemberState::Dead], false)
        });
        check(
            &sim,
            test,
            sim.all_see(node, &[MemberState::Dead], false),
            "crash not detected",
        );
        sim.restart(node, &[1]);
        let took = sim.run_until(10 * PERIOD_MS, Sim::converged);
        check(
            &sim,
            test,
            took.is_some(),
            "restart after failure did not converge",
        );
        let inc2 = sim.view(node, node).map_or(0, |m| m.incarnation);
        check(
            &sim,
            test,
            inc2 > inc1,
            "no higher incarnation after failure",
        );
        let rejoins = sim
            .events()
            .iter()
            .filter(|e| {
                e.event.kind == MemberEventKind::Join
                    && e.event.member.id == id
                    && e.event.member.incarnation == inc2
            })
            .count();
        check(
            &sim,
            test,
            rejoins == 7,
            &format!("{rejoins} Join events for the rejoin, want 7"),
        );
    }
}

#[test]
fn wrong_key_or_cluster_name_never_joins_and_is_counted() {
    let test = "wrong_key_or_cluster_name_never_joins_and_is_counted";
    for seed in seeds(&[71]) {
        let mut config = GossipConfig::lan();
        config.secret_key = Some([7; 32]);
        let mut sim = Sim::new(seed, 6, config.clone(), NetConfig::default());
        let mut wrong_key = config.clone();
        wrong_key.secret_key = Some([8; 32]);
        sim.reboot_with(4, wrong_key);
        let mut wrong_name = config;
        wrong_name.cluster_name = "other".into();
        sim.reboot_with(5, wrong_name);
        sim.join_all_via(0);
        sim.run_for(20 * PERIOD_MS);
        for outsider in [4, 5] {
            check(
                &sim,
                test,
                (0..4).all(|i| sim.view(i, outsider).is_none()),
                "outsider became a member",
            );
            check(
                &sim,
                test,
                sim.node(outsider).is_some_and(|g| g.live_count() == 1),
                "outsider learned members",
            );
        }
        let insiders_converged =
            (0..4).all(|i| (0..4).all(|j| sim.state_seen(i, j) == Some(MemberState::Alive)));
        check(
            &sim,
            test,
            insiders_converged,
            "the keyed cluster did not form",
        );
        let seed_stats = sim.node(0).map(|g| g.stats().clone()).unwrap_or_default();
        check(
            &sim,
            test,
            seed_stats.dropped_auth > 0,
            "wrong-key packets not counted",
        );
        check(
            &sim,
            test,
            seed_stats.dropped_cluster > 0,
            "wrong-cluster packets not counted",
        );
    }
}

#[test]
fn same_seed_replays_identically() {
    let run = |seed| {
        let lossy = NetConfig {
            loss: 0.05,
            min_delay_ms: 1,
            max_delay_ms: 30,
            duplicate: 0.05,
        };
        let mut sim = Sim::new(seed, 8, GossipConfig::lan(), lossy);
        sim.join_all_via(0);
        sim.run_for(5 * PERIOD_MS);
        sim.crash(2);
        sim.run_for(40 * PERIOD_MS);
        (sim.events().to_vec(), sim.packet_counts())
    };
    let a = run(99);
    assert_eq!(a, run(99));
    assert!(!a.0.is_empty());
    assert_ne!(a.1, run(100).1, "different seeds gave identical traffic");
}

#[test]
fn degraded_node_backs_off_and_healthy_members_stay_alive() {
    // Lifeguard: a node that cannot hear nacks from its ping-req helpers (its own
    // network is bad) raises its health score and probes less often; the healthy
    // members never declare each other failed.
    let test = "degraded_node_backs_off_and_healthy_members_stay_alive";
    let n = 10;
    for seed in seeds(&[81, 82]) {
        let (mut sim, _) = formed(seed, n, NetConfig::default(), test);
        let bad = 3;
        sim.set_node_loss(bad, 0.5);
        let mut max_health = 0;
        for _ in 0..300 {
            sim.run_for(PERIOD_MS);
            max_health = max_health.max(sim.node(bad).map_or(0, |g| g.stats().health_score));
        }
        check(
            &sim,
            test,
            max_health > 0,
            "the degraded node never raised its health score",
        );
        let healthy_failed = sim
            .events()
            .iter()
            .filter(|e| {
                e.event.kind == MemberEventKind::Fail
                    && e.node != bad
                    && e.event.member.id != sim.id(bad)
            })
            .count();
        check(
            &sim,
            test,
            healthy_failed == 0,
            &format!("{healthy_failed} Fail events among healthy members"),
        );
        let probes = sim.node(bad).map_or(0, |g| g.stats().probes_sent);
        let healthy_probes = sim.node(0).map_or(0, |g| g.stats().probes_sent);
        check(
            &sim,
            test,
            probes < healthy_probes,
            &format!("degraded node probed {probes} times, a healthy one {healthy_probes}"),
        );
    }
}
