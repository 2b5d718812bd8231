//! `clog` against a real 3-node cluster (issue 11): `clog bench` rides out a SIGTERM
//! of the leader (point 3), the member cache lets the README's failover walk-through
//! work with only the dead node as seed (point 2), and `status` / `health --cluster`
//! fail while a member is down (point 8).

mod cluster_common;
mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cluster_common::{wait_for, Cluster};
use common::TempDir;

/// `clog` as a user runs it: `CLOG_ADDR` set to the seed (the README's default
/// address stands for n1), the member cache in `cache`.
fn clog(seed: &str, cache: &TempDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clog"));
    cmd.args(args)
        .env("CLOG_ADDR", seed)
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(seed: &str, cache: &TempDir, args: &[&str]) -> Output {
    clog(seed, cache, args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bench_survives_a_leader_sigterm_and_a_dead_seed_is_bypassed_through_the_cache() {
    let mut cluster = Cluster::start(3);
    let cache = TempDir::new("clog-cache");
    let seed = cluster.nodes[0].addr();

    // Any command that reaches the cluster remembers its members.
    let out = run(&seed, &cache, &["servers"]);
    assert!(out.status.success(), "{}", text(&out));
    let remembered: String = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for node in &cluster.nodes {
        assert!(remembered.contains(&node.addr()), "{remembered}");
    }

    // clog bench while the leader is stopped with SIGTERM: retried, exit 0.
    let leader = cluster.wait_leader();
    let before = cluster.nodes[leader].high_watermark().unwrap();
    let bench = clog(
        &seed,
        &cache,
        &[
            "bench",
            "--producers",
            "2",
            "--window",
            "4",
            "--size",
            "64",
            "--count",
            "100000000",
            "--max-secs",
            "10",
        ],
    )
    .spawn()
    .unwrap();
    wait_for("bench records", Duration::from_secs(20), || {
        let hw = cluster.nodes[leader].high_watermark()?;
        (hw.0 > before.0 + 200).then_some(())
    });
    cluster.nodes[leader].terminate();
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let retries: u64 = stdout
        .lines()
        .find(|l| l.starts_with("produce: "))
        .and_then(|l| l.strip_suffix(" retries"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry count: {stdout}"));
    assert!(retries > 0, "the leader change cost no retry? {stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("RESULT\t")),
        "{stdout}"
    );
    cluster.restart(leader);
    cluster.wait_voters(3);

    // The README walk-through: kill -9 n1 (the only seed), then the literal command.
    cluster.nodes[0].kill();
    let out = run(&seed, &cache, &["produce", "after-failover"]);
    assert!(out.status.success(), "{}", text(&out));
    let offset: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let other = cluster.nodes[1].addr();
    let from = offset.to_string();
    let out = run(
        &other,
        &cache,
        &["consume", "--from", &from, "--count", "1", "--values-only"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "after-failover\n",
        "{}",
        text(&out)
    );

    // Without the cache nothing else is known: exit 3 at once, naming the address.
    let empty = TempDir::new("clog-empty-cache");
    let out = run(&seed, &empty, &["produce", "x"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        err.contains(&seed) && !err.contains("gave up after"),
        "{err}"
    );

    // A member is down: status and health --cluster say so and exit 3.
    let out = run(&seed, &cache, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unreachable"),
        "{}",
        text(&out)
    );
    let out = run(&seed, &cache, &["health", "--cluster"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let problems = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        problems
            .lines()
            .any(|l| l.starts_with("problem: ") && l.contains(&seed)),
        "{}",
        text(&out)
    );
}
