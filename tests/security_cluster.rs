//! A cluster with TLS everywhere, as real `commitlogd` processes on 127.0.0.1 with
//! OS-assigned ports and certificates generated at run time (`security_support`):
//! server certificates for clients and incoming peers, the `commitlog-peer`
//! certificate for outgoing peer connections, the default ACL.
//!
//! - 3 nodes form, replicate (produce through the leader as `root`, read the same
//!   records from every follower), and survive SIGKILL of the leader (a new leader is
//!   elected; every acknowledged record is readable on the survivors, and new
//!   produces are acknowledged). `root` sending a RaftMessage is PERMISSION_DENIED.
//! - A node whose peer certificate comes from another CA cannot join: its
//!   connections are refused and it never becomes a voter.
//! - Server TLS without peer TLS is refused at start in cluster mode.
//!
//! Every wait polls with a deadline. On failure the nodes' log tails are printed.

mod common;
mod security_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, Request, ServerRole, StatusInfo};

use common::TempDir;
use security_support::Pki;

/// Start-up, election and replication deadlines (generous: 2 loaded cores).
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);

fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    // Bounded by the deadline.
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// Which peer certificate a node presents (and which CA it trusts for peers).
#[derive(Clone, Copy)]
enum PeerCert {
    /// `peer.pem`, issued by the cluster CA.
    Good,
    /// `stranger-peer.pem` (CN `commitlog-peer`), issued by another CA, which this
    /// node also trusts for peers.
    Stranger,
}

struct TlsNode {
    id: u64,
    dir: PathBuf,
    child: Option<Child>,
    rpc: SocketAddr,
    gossip: SocketAddr,
}

impl TlsNode {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn client(&self, pki: &Pki) -> Option<Client> {
        pki.client(self.rpc, Some("root")).ok()
    }

    fn status(&self, pki: &Pki) -> Option<StatusInfo> {
        self.client(pki)?.status().ok()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The nodes of one test; kills them on drop and prints their logs on panic.
struct Nodes {
    dir: TempDir,
    nodes: Vec<TlsNode>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = n.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!("----- node {} log tail -----\n{tail}", n.id);
            }
        }
    }
}

fn tls_args(pki: &Pki, peer: PeerCert) -> Vec<String> {
    let mut args = pki.server_args();
    let (cert, key, ca) = match peer {
        PeerCert::Good => (pki.cert("peer"), pki.key("peer"), pki.ca()),
        PeerCert::Stranger => (
            pki.cert("stranger-peer"),
            pki.key("stranger-peer"),
            pki.path("other-ca.pem"),
        ),
    };
    for (flag, path) in [
        ("--peer-tls-cert-file", cert),
        ("--peer-tls-key-file", key),
        ("--peer-tls-ca-file", ca),
    ] {
        args.push(flag.into());
        args.push(path.display().to_string());
    }
    args
}

impl Nodes {
    fn new() -> Nodes {
        Nodes {
            dir: TempDir::new("security-cluster"),
            nodes: Vec::new(),
        }
    }

    /// Starts a node (node 1 bootstraps, the others join every started node's
    /// gossip address) and waits for its ready file.
    fn start(&mut self, pki: &Pki, peer: PeerCert) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let dir = self.dir.path().join(format!("n{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready");
        let mut args: Vec<String> = vec!["--node-id".into(), id.to_string()];
        args.extend(["--node-name".into(), format!("n{id}")]);
        args.extend([
            "--data-dir".into(),
            dir.join("data").to_string_lossy().into_owned(),
        ]);
        for a in ["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"] {
            args.push(a.into());
        }
        args.extend([
            "--cluster-name".into(),
            format!("tls-{}", std::process::id()),
        ]);
        for a in ["--raft-tick-ms", "20", "--election-ticks", "25"] {
            args.push(a.into());
        }
        for a in ["--heartbeat-ticks", "3", "--gossip-interval-ms", "100"] {
            args.push(a.into());
        }
        args.extend(["--request-timeout-ms".into(), "2000".into()]);
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        args.extend(tls_args(pki, peer).into_iter().map(Into::into));
        if self.nodes.is_empty() {
            args.push("--bootstrap".into());
        } else {
            let seeds: Vec<String> = self.nodes.iter().map(|n| n.gossip.to_string()).collect();
            args.push("--join".into());
            args.push(seeds.join(",").into());
        }
        let (child, ready) =
            common::spawn::spawn_commitlogd(&args, &ready, &dir.join("log"), DEADLINE);
        let (rpc, gossip) = (ready.rpc, ready.gossip);
        self.nodes.push(TlsNode {
            id,
            dir,
            child: Some(child),
            rpc,
            gossip,
        });
        self.nodes.len() - 1
    }

    /// Waits for exactly one leader among the running `among` with the highest term.
    fn wait_leader(&self, pki: &Pki, among: &[usize]) -> usize {
        wait_for("a leader", DEADLINE, || {
            let statuses: Vec<(usize, StatusInfo)> = among
                .iter()
                .filter(|&&i| self.nodes[i].child.is_some())
                .filter_map(|&i| self.nodes[i].status(pki).map(|s| (i, s)))
                .collect();
            let max_term = statuses.iter().map(|(_, s)| s.term).max()?;
            let leaders: Vec<usize> = statuses
                .iter()
                .filter(|(_, s)| s.role == ServerRole::Leader && s.term == max_term)
                .map(|(i, _)| *i)
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    }

    /// Waits until the leader lists `n` live voters.
    fn wait_voters(&self, pki: &Pki, leader: usize, n: usize) {
        wait_for(&format!("{n} live voters"), DEADLINE, || {
            let servers = self.nodes[leader].client(pki)?.servers().ok()?;
            let voters = servers
                .iter()
                .filter(|s| s.live && matches!(s.role, ServerRole::Leader | ServerRole::Follower))
                .count();
            (servers.len() == n && voters == n).then_some(())
        });
    }
}

/// Produces `values` through the leader as root; returns the acknowledged offsets.
fn produce_all(pki: &Pki, leader: &TlsNode, values: &[Vec<u8>]) -> Vec<(Offset, Vec<u8>)> {
    let mut client = leader.client(pki).expect("root connects to the leader");
    values
        .iter()
        .map(|v| {
            (
                client.produce(v).expect("produce through the leader"),
                v.clone(),
            )
        })
        .collect()
}

/// Waits until `node` serves every acknowledged record with its value.
fn assert_readable(pki: &Pki, node: &TlsNode, acked: &[(Offset, Vec<u8>)]) {
    let mut client = wait_for(
        &format!("root connects to node {}", node.id),
        DEADLINE,
        || node.client(pki),
    );
    for (offset, value) in acked {
        let record = wait_for(
            &format!("node {} serves offset {offset}", node.id),
            DEADLINE,
            || client.consume(*offset).ok(),
        );
        assert_eq!(
            &record.value, value,
            "node {} offset {offset} holds another value",
            node.id
        );
    }
}

#[test]
fn three_tls_nodes_replicate_deny_client_raft_and_survive_leader_sigkill() {
    let pki = Pki::generate();
    let mut nodes = Nodes::new();
    for _ in 0..3 {
        nodes.start(&pki, PeerCert::Good);
    }
    let leader = nodes.wait_leader(&pki, &[0, 1, 2]);
    nodes.wait_voters(&pki, leader, 3);
    let old_term = nodes.nodes[leader].status(&pki).expect("status").term;

    // Replication: produce through the leader, read from every follower.
    let values: Vec<Vec<u8>> = (0..20).map(|i| format!("tls-{i}").into_bytes()).collect();
    let mut acked = produce_all(&pki, &nodes.nodes[leader], &values);
    for i in (0..3).filter(|&i| i != leader) {
        assert_readable(&pki, &nodes.nodes[i], &acked);
    }

    // A client certificate may not speak Raft to a cluster node.
    for i in [leader, (leader + 1) % 3] {
        let mut root = nodes.nodes[i].client(&pki).expect("root connects");
        let id = root
            .send(Request::Raft {
                group: commitlog::types::GroupId::DEFAULT_PARTITION,
                payload: vec![1, 2, 3],
            })
            .expect("send");
        let (got, result) = root.recv().expect("recv");
        assert_eq!(got, id);
        let code = result.err().and_then(|e| e.code());
        assert_eq!(code, Some(ErrorCode::PermissionDenied), "node {i}");
    }

    // SIGKILL the leader: a new one is elected over TLS, nothing acknowledged is lost.
    nodes.nodes[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new = nodes.wait_leader(&pki, &survivors);
    let new_term = nodes.nodes[new].status(&pki).expect("status").term;
    assert!(new_term > old_term, "term {new_term} after {old_term}");
    let more: Vec<Vec<u8>> = (0..10).map(|i| format!("after-{i}").into_bytes()).collect();
    acked.extend(wait_for("the new leader acknowledges", DEADLINE, || {
        let mut client = nodes.nodes[new].client(&pki)?;
        client.produce(b"probe").ok()?;
        Some(produce_all(&pki, &nodes.nodes[new], &more))
    }));
    for &i in &survivors {
        assert_readable(&pki, &nodes.nodes[i], &acked);
    }
    assert!(
        nodes.nodes[new].log().contains("(TLS)"),
        "peer connections are TLS"
    );
}

#[test]
fn a_node_with_a_peer_certificate_from_another_ca_cannot_join() {
    let pki = Pki::generate();
    let mut nodes = Nodes::new();
    let first = nodes.start(&pki, PeerCert::Good);
    nodes.wait_leader(&pki, &[first]);
    let rogue = nodes.start(&pki, PeerCert::Stranger);
    let rogue_id = nodes.nodes[rogue].id;

    // Its peer connections are refused: the handshake fails both ways (the cluster
    // does not trust its certificate; it does not trust the cluster's).
    wait_for("the stranger's peer connections fail", DEADLINE, || {
        let log = nodes.nodes[rogue].log();
        (log.contains("TLS handshake") || log.contains("TLS error")).then_some(())
    });
    // The leader knows it (gossip), but it never becomes a voter: it cannot answer
    // the leader's AppendEntries, so it never catches up and is never promoted.
    wait_for("the leader lists the stranger", DEADLINE, || {
        let servers = nodes.nodes[first].client(&pki)?.servers().ok()?;
        servers.iter().any(|s| s.id.0 == rogue_id).then_some(())
    });
    let end = Instant::now() + Duration::from_secs(2);
    // Bounded: 2 s of polling.
    while Instant::now() < end {
        let servers = nodes.nodes[first]
            .client(&pki)
            .expect("root connects")
            .servers()
            .expect("servers");
        for s in servers.iter().filter(|s| s.id.0 == rogue_id) {
            assert!(
                !matches!(s.role, ServerRole::Leader | ServerRole::Follower),
                "the stranger became a voter: {s:?}"
            );
        }
        let status = nodes.nodes[rogue].status(&pki).expect("rogue status");
        assert_ne!(status.role, ServerRole::Leader, "the stranger leads");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        nodes.nodes[first].status(&pki).expect("status").role,
        ServerRole::Leader,
        "the first node is undisturbed"
    );
}

#[test]
fn cluster_mode_with_server_tls_but_no_peer_tls_refuses_to_start() {
    let pki = Pki::generate();
    let dir = TempDir::new("security-cluster-refuse");
    let out = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .arg("--bootstrap")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"])
        .args(pki.server_args())
        .output()
        .expect("run commitlogd");
    assert!(!out.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--peer-tls-cert-file") && stderr.contains("could not authenticate"),
        "the message says what is missing: {stderr}"
    );
}
