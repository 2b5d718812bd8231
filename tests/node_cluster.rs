//! Real 3-node clusters on 127.0.0.1 (OS-assigned ports, fast Raft/gossip timings):
//! formation through bootstrap + gossip joins, replication to every follower,
//! NOT_LEADER from followers, a follower restart that catches up, graceful leader
//! hand-over, and a refused bootstrap over existing state. Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, ServerRole};
use common::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);

struct Node {
    id: u64,
    child: Option<Child>,
    dir: PathBuf,
    rpc: SocketAddr,
    gossip: SocketAddr,
    starts: u32,
    extra: Vec<String>,
}

impl Node {
    fn start_with(root: &Path, id: u64, join: Option<SocketAddr>, extra: &[&str]) -> Node {
        let mut n = Node {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            id,
            child: None,
            dir: root.join(format!("n{id}")),
            rpc: "127.0.0.1:0".parse().unwrap(),
            gossip: "127.0.0.1:0".parse().unwrap(),
            starts: 0,
        };
        n.spawn(join);
        n
    }

    fn spawn(&mut self, join: Option<SocketAddr>) {
        self.starts += 1;
        std::fs::create_dir_all(&self.dir).unwrap();
        let ready = self.dir.join(format!("ready-{}", self.starts));
        let log = self.dir.join(format!("stderr-{}", self.starts));
        let mut args: Vec<String> = vec!["--node-id".into(), self.id.to_string()];
        args.push("--data-dir".into());
        args.push(self.dir.join("data").to_string_lossy().into_owned());
        for a in ["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"] {
            args.push(a.into());
        }
        for a in ["--raft-tick-ms", "10", "--gossip-interval-ms", "100"] {
            args.push(a.into());
        }
        args.push("--request-timeout-ms".into());
        args.push("3000".into());
        args.extend(self.extra.iter().cloned());
        match join {
            Some(seed) => args.extend(["--join".to_string(), seed.to_string()]),
            None => args.push("--bootstrap".into()),
        }
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let (child, ready) = common::spawn::spawn_commitlogd(&args, &ready, &log, DEADLINE);
        self.child = Some(child);
        self.rpc = ready.rpc;
        self.gossip = ready.gossip;
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("stderr-{}", self.starts)))
            .unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::connect(self.rpc, Duration::from_secs(5)).expect("connect")
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + DEADLINE;
            loop {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("node {} did not exit: {}", self.id, self.stderr());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 20 ms until it returns Some, or panics after DEADLINE.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn three_nodes(root: &Path) -> Vec<Node> {
    three_nodes_with(root, &[])
}

fn three_nodes_with(root: &Path, extra: &[&str]) -> Vec<Node> {
    let n1 = Node::start_with(root, 1, None, extra);
    let n2 = Node::start_with(root, 2, Some(n1.gossip), extra);
    let n3 = Node::start_with(root, 3, Some(n1.gossip), extra);
    let nodes = vec![n1, n2, n3];
    // Formed: every node sees one leader and two followers (all voters).
    for n in &nodes {
        wait_for("3 voters with a leader", || {
            let servers = Client::connect(n.rpc, Duration::from_secs(2))
                .ok()?
                .servers()
                .ok()?;
            let leaders = servers
                .iter()
                .filter(|s| s.role == ServerRole::Leader)
                .count();
            let followers = servers
                .iter()
                .filter(|s| s.role == ServerRole::Follower)
                .count();
            (leaders == 1 && followers == 2 && servers.iter().all(|s| s.live)).then_some(())
        });
    }
    nodes
}

fn leader_index(nodes: &[Node]) -> usize {
    wait_for("a leader", || {
        nodes.iter().position(|n| {
            n.child.is_some()
                && Client::connect(n.rpc, Duration::from_secs(2))
                    .and_then(|mut c| c.status())
                    .is_ok_and(|s| s.role == ServerRole::Leader)
        })
    })
}

/// Produces `values` on the leader (retrying UNAVAILABLE / NOT_LEADER briefly).
fn produce_all(nodes: &[Node], values: &[String]) -> Vec<Offset> {
    let mut out = Vec::new();
    for v in values {
        let off = wait_for("produce", || {
            let l = leader_index(nodes);
            nodes[l].client().produce(v.as_bytes()).ok()
        });
        out.push(off);
    }
    out
}

fn read_at(n: &Node, off: Offset) -> Option<Vec<u8>> {
    let mut c = Client::connect(n.rpc, Duration::from_secs(2)).ok()?;
    c.consume(off)
        .ok()
        .filter(|r| r.offset == off)
        .map(|r| r.value)
}

#[test]
fn three_node_cluster_replicates_to_every_follower() {
    let root = TempDir::new("node-cluster");
    let nodes = three_nodes(root.path());
    let values: Vec<String> = (0..20).map(|i| format!("record-{i}")).collect();
    let offsets = produce_all(&nodes, &values);
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets increase: {offsets:?}"
    );
    assert!(
        offsets[0].0 >= 1,
        "cluster offsets are Raft indexes (from 1)"
    );
    for n in &nodes {
        for (off, v) in offsets.iter().zip(&values) {
            let got = wait_for("replicated record", || read_at(n, *off));
            assert_eq!(got, v.as_bytes(), "node {} offset {off}", n.id);
        }
        // Fetch from the first offset returns only data records, in order.
        let mut c = n.client();
        let fetched = c.fetch(offsets[0], 1 << 20, 0).expect("fetch");
        let got: Vec<Vec<u8>> = fetched.records.iter().map(|r| r.value.clone()).collect();
        let want: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(got, want, "node {}", n.id);
    }
    // A produce on a follower is refused with the leader's id and address.
    let l = leader_index(&nodes);
    let follower = &nodes[(l + 1) % 3];
    let err = follower.client().produce(b"nope").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotLeader), "{err}");
    let hint = err.leader_hint().expect("leader hint");
    assert_eq!(hint.leader_id.0, nodes[l].id);
    assert_eq!(hint.addr, nodes[l].rpc.to_string());
}

#[test]
fn restarted_follower_catches_up_and_leader_hands_over_on_sigterm() {
    let root = TempDir::new("node-restart");
    let mut nodes = three_nodes(root.path());
    let l = leader_index(&nodes);
    let f = (l + 1) % 3;
    let first: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    produce_all(&nodes, &first);
    nodes[f].terminate();
    // SIGTERM is a restart, not a decommission: the node stays a voter.
    let fid = nodes[f].id;
    wait_for("stopped follower listed as not live", || {
        let servers = nodes[l].client().servers().ok()?;
        let s = servers.iter().find(|s| s.id.0 == fid)?;
        assert_eq!(s.role, ServerRole::Follower, "still a voter");
        (!s.live).then_some(())
    });
    let during: Vec<String> = (0..50).map(|i| format!("during-{i}")).collect();
    let offsets = produce_all(&nodes, &during);
    let seed = nodes[l].gossip;
    nodes[f].spawn(Some(seed));
    for (off, v) in offsets.iter().zip(&during) {
        let got = wait_for("caught-up record", || read_at(&nodes[f], *off));
        assert_eq!(got, v.as_bytes());
    }
    // SIGTERM on the leader hands leadership to another voter first.
    nodes[l].terminate();
    let stderr = nodes[l].stderr();
    assert!(stderr.contains("leadership handed over"), "{stderr}");
    let new_leader = leader_index(&nodes);
    assert_ne!(new_leader, l);
    let after = produce_all(&nodes, &["after".to_string()]);
    assert!(after[0] > *offsets.last().unwrap());
}

#[test]
fn bootstrap_is_refused_over_a_joined_node_and_identity_mismatch_is_an_error() {
    let root = TempDir::new("node-refuse");
    let nodes = three_nodes(root.path());
    drop(nodes); // SIGKILL all three
    let dir = root.path().join("n2").join("data");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_commitlogd"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run commitlogd")
    };
    let out = run(&["--node-id", "2", "--bootstrap"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to --bootstrap over existing state"),
        "{err}"
    );
    let out = run(&["--node-id", "9", "--join", "127.0.0.1:9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to node 2"), "{err}");
}

#[test]
fn retention_compacts_cluster_wide_and_a_lagging_follower_gets_a_snapshot() {
    let root = TempDir::new("node-retention");
    let extra = [
        "--segment-max-bytes",
        "32KiB",
        "--index-max-bytes",
        "16KiB",
        "--retention-bytes",
        "64KiB",
        "--retention-interval",
        "50ms",
    ];
    let mut nodes = three_nodes_with(root.path(), &extra);
    let l = leader_index(&nodes);
    let f = (l + 1) % 3;
    nodes[f].kill();
    // ~1 MB through 32 KiB segments: the leader keeps only the newest ~64 KiB.
    let value = vec![b'x'; 500];
    let mut last = Offset(0);
    let mut c = nodes[l].client();
    for chunk in 0..40 {
        let values: Vec<&[u8]> = (0..50).map(|_| value.as_slice()).collect();
        let first = c.produce_batch(&values).expect("produce batch");
        last = Offset(first.0 + 49);
        assert!(chunk == 0 || first.0 > 1);
    }
    let leader_first = wait_for("leader compaction", || {
        let s = nodes[l].client().status().ok()?;
        (s.first_index.0 > 1000).then_some(s.first_index)
    });
    let err = nodes[l].client().consume(Offset(1)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange), "{err}");
    // The restarted follower is behind the leader's first index: InstallSnapshot.
    let seed = nodes[l].gossip;
    nodes[f].spawn(Some(seed));
    let kick = nodes[l]
        .client()
        .produce(b"after-snapshot")
        .expect("produce");
    let got = wait_for("follower caught up through a snapshot", || {
        read_at(&nodes[f], kick)
    });
    assert_eq!(got, b"after-snapshot");
    let s = nodes[f].client().status().expect("status");
    assert!(
        s.first_index >= leader_first,
        "follower log starts at {}",
        s.first_index
    );
    assert_eq!(read_at(&nodes[f], last).as_deref(), Some(value.as_slice()));
    assert!(
        nodes[f].stderr().contains("installing log start"),
        "{}",
        nodes[f].stderr()
    );
}

#[test]
fn killed_leader_is_replaced_quickly_and_catches_up_after_restart() {
    let root = TempDir::new("node-kill");
    let mut nodes = three_nodes(root.path());
    let before = produce_all(&nodes, &["one".to_string(), "two".to_string()]);
    let l = leader_index(&nodes);
    nodes[l].kill();
    let t0 = Instant::now();
    let new_leader = leader_index(&nodes);
    let elected_in = t0.elapsed();
    assert_ne!(new_leader, l);
    assert!(
        elected_in < Duration::from_secs(5),
        "election took {elected_in:?}"
    );
    let after = produce_all(&nodes, &["three".to_string()]);
    let seed = nodes[new_leader].gossip;
    nodes[l].spawn(Some(seed));
    for (off, v) in before.iter().chain(&after).zip(["one", "two", "three"]) {
        let got = wait_for("restarted node has every record", || {
            read_at(&nodes[l], *off)
        });
        assert_eq!(got, v.as_bytes());
    }
}

#[test]
fn a_node_added_through_gossip_is_promoted_and_removed_by_a_decommissioning_leave() {
    let root = TempDir::new("node-membership");
    let mut nodes = three_nodes(root.path());
    produce_all(&nodes, &["before".to_string()]);
    let seed = nodes[0].gossip;
    nodes.push(Node::start_with(
        root.path(),
        4,
        Some(seed),
        &["--leave-on-shutdown"],
    ));
    let voter4 = |nodes: &[Node]| {
        let l = leader_index(nodes);
        let servers = nodes[l].client().servers().ok()?;
        Some(servers.iter().find(|s| s.id.0 == 4).map(|s| s.role))
    };
    wait_for("node 4 promoted to voter", || {
        (voter4(&nodes)? == Some(ServerRole::Follower)).then_some(())
    });
    let offsets = produce_all(&nodes, &["with-four".to_string()]);
    let got = wait_for("node 4 replicates", || read_at(&nodes[3], offsets[0]));
    assert_eq!(got, b"with-four");
    // A plain SIGTERM of node 4 with --leave-on-shutdown: the leader removes it.
    nodes[3].terminate();
    wait_for("node 4 removed from the configuration", || {
        (voter4(&nodes[..3])?.is_none()).then_some(())
    });
    produce_all(&nodes[..3], &["after".to_string()]);
}

#[test]
fn a_wiped_follower_catches_up_without_new_produces_under_the_catch_up_throttle() {
    let root = TempDir::new("node-wiped");
    // A throttle of about one record per (10 ms) tick: the catch-up is paced over
    // ~100 ticks (the resumption after each refill is what this exercises), and
    // still ends.
    let mut nodes = three_nodes_with(root.path(), &["--catch-up-bytes-per-sec", "2KiB"]);
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let offsets = produce_all(&nodes, &values);
    let l = leader_index(&nodes);
    let f = (l + 2) % 3;
    nodes[f].kill();
    std::fs::remove_dir_all(nodes[f].dir.join("data")).unwrap();
    let seed = nodes[l].gossip;
    nodes[f].spawn(Some(seed));
    // No produce after the restart: the leader re-probes the reconnected follower.
    for (off, v) in offsets.iter().zip(&values) {
        let got = wait_for("wiped follower refilled", || read_at(&nodes[f], *off));
        assert_eq!(got, v.as_bytes());
    }
    assert!(
        nodes[f].stderr().contains("recovered"),
        "{}",
        nodes[f].stderr()
    );
}

#[test]
fn the_first_node_restarted_with_unchanged_bootstrap_flags_rejoins() {
    let root = TempDir::new("node-rebootstrap");
    let mut nodes = three_nodes(root.path());
    let before = produce_all(&nodes, &["a".to_string()]);
    nodes[0].terminate();
    let during = produce_all(&nodes[1..], &["b".to_string()]);
    // Same flags as the first start (--bootstrap, no --join): a restart, not a new
    // cluster; it finds the others through the gossip seeds it recorded.
    nodes[0].spawn(None);
    for (off, v) in [(before[0], "a"), (during[0], "b")] {
        let deadline = Instant::now() + DEADLINE;
        let got = loop {
            if let Some(got) = read_at(&nodes[0], off) {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "restarted first node lacks offset {off}: {}",
                nodes[0].stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(got, v.as_bytes());
    }
    let after = produce_all(&nodes, &["c".to_string()]);
    let got = wait_for("first node follows new writes", || {
        read_at(&nodes[0], after[0])
    });
    assert_eq!(got, b"c");
}

#[test]
fn a_follower_with_a_damaged_log_refetches_and_only_then_votes() {
    let root = TempDir::new("node-damaged");
    let mut nodes = three_nodes(root.path());
    let values: Vec<String> = (0..200).map(|i| format!("value-{i:04}")).collect();
    let offsets = produce_all(&nodes, &values);
    let l = leader_index(&nodes);
    let f = (l + 1) % 3;
    // Make sure f has everything, then stop it gracefully (its commit is persisted).
    let last = *offsets.last().unwrap();
    wait_for("follower has the last record", || read_at(&nodes[f], last));
    nodes[f].terminate();
    let store = nodes[f]
        .dir
        .join("data/log")
        .join(format!("{:020}.store", 1));
    let mut bytes = std::fs::read(&store).expect("store file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&store, &bytes).unwrap();
    let seed = nodes[l].gossip;
    nodes[f].spawn(Some(seed));
    for (off, v) in offsets.iter().zip(&values) {
        let got = wait_for("refetched record", || read_at(&nodes[f], *off));
        assert_eq!(got, v.as_bytes());
    }
    let stderr = nodes[f].stderr();
    assert!(stderr.contains("not voting until"), "{stderr}");
    assert!(
        stderr.contains("recovered: log durable through"),
        "{stderr}"
    );
}

#[test]
fn without_a_quorum_produces_fail_within_the_request_timeout() {
    let root = TempDir::new("node-noquorum");
    let mut nodes = three_nodes(root.path());
    produce_all(&nodes, &["ok".to_string()]);
    let l = leader_index(&nodes);
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != l {
            n.kill();
        }
    }
    // Requests time out after 3000 ms (--request-timeout-ms in these tests).
    for _ in 0..3 {
        let t0 = Instant::now();
        let err = nodes[l].client().produce(b"lost").unwrap_err();
        let took = t0.elapsed();
        assert!(
            matches!(
                err.code(),
                Some(ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::NotLeader)
            ),
            "{err}"
        );
        assert!(
            took < Duration::from_millis(4500),
            "answered after {took:?}"
        );
    }
    let status = nodes[l].client().status().expect("status");
    assert_ne!(
        status.role,
        ServerRole::Leader,
        "a leader without quorum steps down"
    );
}
