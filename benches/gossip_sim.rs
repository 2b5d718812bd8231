//! Gossip measurements from the deterministic simulator (virtual time, LAN defaults:
//! 1 s protocol period). Prints a Markdown table for BENCHMARKS.md; asserts nothing.
//!
//! Run: `cargo bench --bench gossip_sim` (optionally `GOSSIP_BENCH_SEEDS=10`).
//!
//! - formation: all n nodes join through node 0 at t = 0; time until every node sees
//!   every other alive with its current incarnation and tags;
//! - join: one node joins an already converged cluster of n - 1;
//! - detection: a node crashes; time until the first survivor suspects it and until
//!   every survivor has declared it dead;
//! - bytes/s/node: UDP payload bytes sent per node per second at steady state (no
//!   membership changes), averaged over 120 s;
//! - false positives: 10% packet loss for one virtual hour.

use commitlog::gossip::sim::{NetConfig, Sim};
use commitlog::gossip::{GossipConfig, MemberState};

const PERIOD_MS: u64 = 1_000;
const LIMIT_MS: u64 = 600_000;

fn stats(v: &[u64]) -> (f64, u64) {
    let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    (mean, v.iter().copied().max().unwrap_or(0))
}

fn periods(ms: f64) -> f64 {
    ms / PERIOD_MS as f64
}

struct Row {
    n: usize,
    formation: Vec<u64>,
    join: Vec<u64>,
    first_suspect: Vec<u64>,
    all_dead: Vec<u64>,
    bytes_per_s: Vec<u64>,
}

fn measure(n: usize, seed: u64, row: &mut Row) {
    let config = GossipConfig::lan();
    let mut sim = Sim::new(seed, n, config, NetConfig::default());
    let newcomer = n - 1;
    sim.crash(newcomer);
    for i in 1..newcomer {
        sim.join(i, &[0]);
    }
    let Some(formed) = sim.run_until(LIMIT_MS, Sim::converged) else {
        println!("seed {seed} n {n}: did not form");
        return;
    };
    row.formation.push(formed);
    sim.run_for(5 * PERIOD_MS);

    sim.restart(newcomer, &[0]);
    let Some(joined) = sim.run_until(LIMIT_MS, Sim::converged) else {
        println!("seed {seed} n {n}: join did not converge");
        return;
    };
    row.join.push(joined);

    // Steady state: let the join's broadcasts drain, then count bytes.
    sim.run_for(30 * PERIOD_MS);
    let before: u64 = (0..n).map(|i| sim.bytes_sent(i)).sum();
    let window_ms = 120 * PERIOD_MS;
    sim.run_for(window_ms);
    let after: u64 = (0..n).map(|i| sim.bytes_sent(i)).sum();
    row.bytes_per_s
        .push((after - before) * 1_000 / window_ms / n as u64);

    let victim = 1 + (seed as usize % (n - 1));
    sim.crash(victim);
    let first = sim.run_until(LIMIT_MS, |s| {
        (0..n).any(|i| i != victim && s.state_seen(i, victim) != Some(MemberState::Alive))
    });
    let rest = sim.run_until(LIMIT_MS, |s| s.all_see(victim, &[MemberState::Dead], false));
    if let (Some(f), Some(r)) = (first, rest) {
        row.first_suspect.push(f);
        row.all_dead.push(f + r);
    }
}

fn false_positives(n: usize, seeds: u64, hours: u64) {
    let lossy = NetConfig {
        loss: 0.10,
        min_delay_ms: 1,
        max_delay_ms: 20,
        duplicate: 0.0,
    };
    let (mut probes, mut failed, mut refutes, mut fails) = (0u64, 0u64, 0u64, 0usize);
    for seed in 0..seeds {
        let mut sim = Sim::new(2_000 + seed, n, GossipConfig::lan(), lossy.clone());
        sim.join_all_via(0);
        sim.run_for(hours * 3_600 * PERIOD_MS);
        for g in (0..n).filter_map(|i| sim.node(i)) {
            probes += g.stats().probes_sent;
            failed += g.stats().probe_failures;
            refutes += g.stats().refutes;
        }
        fails += (0..n)
            .map(|i| sim.fail_events_about(sim.id(i)))
            .sum::<usize>();
    }
    println!(
        "| {n} | {seeds} × {hours} h | {probes} | {failed} ({:.2}%) | {refutes} | {fails} |",
        failed as f64 * 100.0 / probes.max(1) as f64
    );
}

/// A 50/50 partition until both halves declare each other dead, then heal: time until
/// every node sees every other alive again.
fn partition_merge(n: usize, seeds: u64) {
    let mut merged_ms = Vec::new();
    for seed in 0..seeds {
        let mut sim = Sim::new(3_000 + seed, n, GossipConfig::lan(), NetConfig::default());
        sim.join_all_via(0);
        if sim.run_until(LIMIT_MS, Sim::converged).is_none() {
            continue;
        }
        let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
        sim.partition(&groups);
        let split = sim.run_until(LIMIT_MS, |s| {
            (0..n).all(|i| {
                (0..n).all(|j| {
                    groups[i] == groups[j] || s.state_seen(i, j) == Some(MemberState::Dead)
                })
            })
        });
        if split.is_none() {
            continue;
        }
        sim.heal();
        if let Some(t) = sim.run_until(LIMIT_MS, Sim::converged) {
            merged_ms.push(t);
        }
    }
    let (mean, max) = stats(&merged_ms);
    println!(
        "| {n} | {}/{seeds} | {:.1} / {:.1} |",
        merged_ms.len(),
        mean / 1_000.0,
        max as f64 / 1_000.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary
    // without it, and CI should not spend time on measurements.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gossip_sim: measurement program; run it with `cargo bench --bench gossip_sim`");
        return;
    }
    let seeds: u64 = std::env::var("GOSSIP_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("Gossip simulator, memberlist LAN defaults (1 s period), {seeds} seeds per size, 1-5 ms one-way delay, no loss.");
    println!();
    println!("| nodes | formation (periods = s, mean/max) | one join (periods = s, mean/max) | first suspicion after crash (s) | failure known everywhere (s, mean/max) | bytes/s/node steady |");
    println!("|---|---|---|---|---|---|");
    for n in [5usize, 20, 100] {
        let mut row = Row {
            n,
            formation: Vec::new(),
            join: Vec::new(),
            first_suspect: Vec::new(),
            all_dead: Vec::new(),
            bytes_per_s: Vec::new(),
        };
        for seed in 0..seeds {
            measure(n, 1_000 + seed, &mut row);
        }
        let (fm, fx) = stats(&row.formation);
        let (jm, jx) = stats(&row.join);
        let (sm, _) = stats(&row.first_suspect);
        let (dm, dx) = stats(&row.all_dead);
        let (bm, _) = stats(&row.bytes_per_s);
        println!(
            "| {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {:.1} / {:.1} | {:.0} |",
            row.n,
            periods(fm),
            periods(fx as f64),
            periods(jm),
            periods(jx as f64),
            sm / 1_000.0,
            dm / 1_000.0,
            dx as f64 / 1_000.0,
            bm
        );
    }
    println!();
    println!("10% packet loss (each packet, each direction), 1-20 ms delay:");
    println!();
    println!(
        "| nodes | seeds × virtual time | probes | probes without ack | refutations | false Fail events |"
    );
    println!("|---|---|---|---|---|---|");
    false_positives(20, seeds, 1);
    false_positives(100, seeds, 1);
    println!();
    println!("Healed 50/50 partition (after both halves declared each other dead; reconnect interval 30 s):");
    println!();
    println!("| nodes | merged | time to full view after heal (s, mean/max) |");
    println!("|---|---|---|");
    partition_merge(10, seeds);
    partition_merge(50, seeds);
}
