//! Multi-process cluster harness shared by `tests/cluster_*.rs`.
//!
//! - [`Cluster`] starts real `commitlogd` nodes (node 1 `--bootstrap`, the others
//!   `--join` its gossip address) on 127.0.0.1 (or one loopback address per node for
//!   partition tests) with OS-assigned ports and short Raft/gossip timings, and
//!   kills, terminates, restarts (same ports, same data) and adds nodes.
//! - [`Checker`] (in `checker.rs`) is the one consistency checker every test uses.
//! - [`Producer`] produces unique values in a background thread through the
//!   cluster client and records every acknowledgement in the checker.
//! - [`Partition`] (in `partition.rs`) cuts loopback addresses apart with iptables.
//!
//! Every wait is a poll with a deadline ([`wait_for`]); nothing sleeps to
//! synchronize. When a test panics, the cluster prints the tail of every node's log
//! and keeps its directory for inspection.
#![allow(dead_code)]

pub mod checker;
pub mod partition;
pub mod topics;
// The one process starter (every crate using this module also has `mod common`).
use crate::common::spawn;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use commitlog::client::cluster::{ClusterClient, ClusterConfig, RetryPolicy};
use commitlog::client::{Client, ClientError};
use commitlog::types::Offset;
use commitlog::wire::{ServerInfo, ServerRole, StatusInfo};

pub use checker::Checker;

/// How long a node may take to write its ready file.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(20);
/// How long a cluster may take to elect a leader / settle membership.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// Poll interval of [`wait_for`].
const POLL: Duration = Duration::from_millis(25);

/// Node timings for tests: fast elections and gossip, so failures are noticed in
/// about a second (tests run in parallel on 2 loaded cores, so not faster).
pub const RAFT_TICK_MS: u64 = 20;
/// Election timeout in ticks (randomized by the node in [1x, 2x)): 0.5–1 s, long
/// enough that a loaded CI machine does not trigger spurious elections.
pub const ELECTION_TICKS: u64 = 25;
/// Heartbeat interval in ticks.
pub const HEARTBEAT_TICKS: u64 = 3;
/// Gossip probe interval.
pub const GOSSIP_INTERVAL_MS: u64 = 100;
/// How long a node waits for a produce to commit before answering UNAVAILABLE.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Polls `f` every few milliseconds until it returns `Some`, or panics with `what`
/// after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    // Bounded by the deadline.
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// One `commitlogd` of a [`Cluster`].
pub struct Node {
    /// Node id (1-based).
    pub id: u64,
    /// Loopback address it binds to.
    pub ip: String,
    /// Client/peer address (known after the first start).
    pub rpc: Option<SocketAddr>,
    /// Gossip address (known after the first start).
    pub gossip: Option<SocketAddr>,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    extra_args: Vec<String>,
}

impl Node {
    /// The rpc address as `host:port`.
    pub fn addr(&self) -> String {
        self.rpc.expect("node started").to_string()
    }

    /// Whether its process is running (as far as this harness knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("log-{start}"))
    }

    /// The node's stderr of its latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// A plain connection to this node (no routing, no retries).
    pub fn client(&self) -> Client {
        Client::connect(self.addr().as_str(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to node {} at {}: {e}", self.id, self.addr()))
    }

    /// Its own Raft view, or `None` if it does not answer.
    pub fn status(&self) -> Option<StatusInfo> {
        let mut c = Client::connect(self.addr().as_str(), Duration::from_secs(2)).ok()?;
        c.status().ok()
    }

    /// Its member list, or `None` if it does not answer.
    pub fn servers(&self) -> Option<Vec<ServerInfo>> {
        let mut c = Client::connect(self.addr().as_str(), Duration::from_secs(2)).ok()?;
        c.servers().ok()
    }

    /// Its read high-water mark (exclusive), or `None` if it does not answer.
    pub fn high_watermark(&self) -> Option<Offset> {
        let mut c = Client::connect(self.addr().as_str(), Duration::from_secs(2)).ok()?;
        let first = c.status().ok()?.first_index;
        c.fetch(first, 1, 0).ok().map(|f| f.high_watermark)
    }

    /// Sends `signal` (`"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let end = Instant::now() + EXIT_DEADLINE;
        let child = self.child.as_mut().expect("running");
        // Bounded by the deadline.
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "node {} did not exit within {EXIT_DEADLINE:?} of SIGTERM",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A set of real `commitlogd` processes (see the module doc).
pub struct Cluster {
    root: PathBuf,
    /// The nodes; index `i` has id `i + 1`.
    pub nodes: Vec<Node>,
    ips: Vec<String>,
    /// Node 1 starts as a plain single node (no `--bootstrap`): a one-voter cluster
    /// that others join later.
    plain_first: bool,
}

impl Cluster {
    /// Starts `n` nodes on 127.0.0.1 and waits until they are all voters.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_on(&vec!["127.0.0.1"; n])
    }

    /// Starts one node per address in `ips` (e.g. 127.0.0.2, .3, .4 for partition
    /// tests) and waits until they are all voters of one cluster.
    pub fn start_on(ips: &[&str]) -> Cluster {
        let mut cluster = Cluster::empty(ips, false);
        for ip in ips {
            cluster.add_node_on(ip);
        }
        cluster.wait_voters(ips.len());
        cluster
    }

    /// [`Cluster::start_on`] with extra `commitlogd` flags for every node.
    pub fn start_with(ips: &[&str], extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::empty(ips, false);
        for ip in ips {
            cluster.add_node_with(ip, extra_args);
        }
        cluster.wait_voters(ips.len());
        cluster
    }

    /// One plain `commitlogd` (no `--bootstrap`/`--join`) on `ip`, which nodes
    /// added later ([`Cluster::add_node_on`]) join.
    pub fn single_on(ip: &str) -> Cluster {
        let mut cluster = Cluster::empty(&[ip], true);
        cluster.add_node_on(ip);
        cluster.wait_voters(1);
        cluster
    }

    fn empty(ips: &[&str], plain_first: bool) -> Cluster {
        assert!(!ips.is_empty());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!(
            "commitlog-cluster-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&root).expect("create cluster dir");
        Cluster {
            root,
            nodes: Vec::new(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            plain_first,
        }
    }

    /// Adds and starts a node on `ip`: the first one bootstraps, later ones join
    /// through the gossip addresses of the nodes already there. Returns its index.
    /// Does not wait for it to become a voter (see [`Cluster::wait_voters`]).
    pub fn add_node_on(&mut self, ip: &str) -> usize {
        self.add_node_with(ip, &[])
    }

    /// [`Cluster::add_node_on`] with extra `commitlogd` flags (e.g.
    /// `--leave-on-shutdown`), kept across restarts.
    pub fn add_node_with(&mut self, ip: &str, extra_args: &[&str]) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let dir = self.root.join(format!("n{id}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        self.nodes.push(Node {
            id,
            ip: ip.to_string(),
            rpc: None,
            gossip: None,
            dir,
            child: None,
            starts: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        });
        let index = self.nodes.len() - 1;
        self.spawn(index);
        index
    }

    /// Gossip addresses of every started node except `index`.
    fn join_list(&self, index: usize) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != index && n.gossip.is_some())
            .map(|(_, n)| n.gossip.expect("gossip").to_string())
            .collect()
    }

    fn spawn(&mut self, index: usize) {
        let join = self.join_list(index);
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "node {} already running", node.id);
        node.starts += 1;
        let ready = node.dir.join(format!("ready-{}", node.starts));
        // First start: port 0 (the OS picks). Restarts reuse the same ports so the
        // other members' view of the node's addresses stays right.
        let listen = node.rpc.map_or(format!("{}:0", node.ip), |a| a.to_string());
        let gossip = node
            .gossip
            .map_or(format!("{}:0", node.ip), |a| a.to_string());
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            node.id.to_string(),
            "--node-name".into(),
            format!("n{}", node.id),
            "--data-dir".into(),
            node.data_dir().to_string_lossy().into_owned(),
            "--listen".into(),
            listen,
            "--gossip-listen".into(),
            gossip,
            "--cluster-name".into(),
            format!("clogtest-{}", std::process::id()),
            "--raft-tick-ms".into(),
            RAFT_TICK_MS.to_string(),
            "--election-ticks".into(),
            ELECTION_TICKS.to_string(),
            "--heartbeat-ticks".into(),
            HEARTBEAT_TICKS.to_string(),
            "--gossip-interval-ms".into(),
            GOSSIP_INTERVAL_MS.to_string(),
            "--request-timeout-ms".into(),
            REQUEST_TIMEOUT_MS.to_string(),
        ];
        // Node 1 bootstraps on its first start; every other start (node 1's restarts
        // included) joins through the others' gossip addresses. A restart keeps its
        // Raft state either way (the bootstrap configuration is persisted), but only
        // `--join` gives a restarted node 1 gossip seeds: restarted with `--bootstrap`
        // after a graceful leave, the others would list it as not live forever.
        if index == 0 && node.starts == 1 && !self.plain_first {
            args.push("--bootstrap".into());
        } else if join.is_empty() && self.plain_first {
            // A plain single node, alone: it needs nobody to join.
        } else {
            assert!(!join.is_empty(), "node {} has nobody to join", node.id);
            args.push("--join".into());
            args.push(join.join(","));
        }
        args.extend(node.extra_args.iter().cloned());
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let log = node.log_path(node.starts);
        let (child, ready) = spawn::spawn_commitlogd(&args, &ready, &log, START_DEADLINE);
        node.child = Some(child);
        node.rpc = Some(ready.rpc);
        node.gossip = Some(ready.gossip);
    }

    /// Starts node `index` again on its data directory and ports.
    pub fn restart(&mut self, index: usize) {
        self.spawn(index);
    }

    /// Indexes of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect()
    }

    /// Comma-separated rpc addresses of the running nodes (a seed list).
    pub fn seeds(&self) -> String {
        self.running()
            .iter()
            .map(|&i| self.nodes[i].addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cluster client seeded with every running node, with test-sized timeouts.
    pub fn client(&self) -> ClusterClient {
        self.client_with(RetryPolicy {
            max_attempts: 200,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
            max_total: Duration::from_secs(15),
        })
    }

    /// A cluster client with an explicit retry policy.
    pub fn client_with(&self, retry: RetryPolicy) -> ClusterClient {
        let config = ClusterConfig::new(&self.seeds())
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS + 3_000))
            .retry(retry);
        ClusterClient::connect(config).expect("cluster client connects")
    }

    /// Waits until exactly one running node among `among` says it is the leader, with
    /// a term no other running node exceeds; returns its index.
    pub fn wait_leader_among(&self, among: &[usize]) -> usize {
        wait_for("a leader", SETTLE_DEADLINE, || {
            let statuses: Vec<(usize, StatusInfo)> = among
                .iter()
                .filter(|&&i| self.nodes[i].is_running())
                .filter_map(|&i| self.nodes[i].status().map(|s| (i, s)))
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

    /// [`Cluster::wait_leader_among`] over all running nodes.
    pub fn wait_leader(&self) -> usize {
        self.wait_leader_among(&self.running())
    }

    /// Waits until the leader lists exactly `n` members, all voters (leader or
    /// follower), all live.
    pub fn wait_voters(&self, n: usize) {
        let end = Instant::now() + SETTLE_DEADLINE;
        let mut last_seen: Option<Vec<ServerInfo>> = None;
        // Bounded by the deadline.
        loop {
            if let Some(servers) = self.try_leader().and_then(|l| self.nodes[l].servers()) {
                let ok = servers.len() == n
                    && servers.iter().all(|s| {
                        s.live && matches!(s.role, ServerRole::Leader | ServerRole::Follower)
                    });
                if ok {
                    return;
                }
                last_seen = Some(servers);
            }
            assert!(
                Instant::now() < end,
                "timed out after {SETTLE_DEADLINE:?} waiting for {n} live voters; the leader \
                 last listed {last_seen:#?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// The running node that says it is leader with the highest term, if any.
    pub fn try_leader(&self) -> Option<usize> {
        self.running()
            .into_iter()
            .filter_map(|i| self.nodes[i].status().map(|s| (i, s)))
            .filter(|(_, s)| s.role == ServerRole::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }

    /// Waits until every node in `among` serves reads up to at least `hwm`.
    pub fn wait_caught_up(&self, among: &[usize], hwm: Offset) {
        for &i in among {
            wait_for(
                &format!("node {} to reach high-water mark {hwm}", self.nodes[i].id),
                SETTLE_DEADLINE,
                || (self.nodes[i].high_watermark()? >= hwm).then_some(()),
            );
        }
    }

    /// Rpc addresses of the nodes at `among`.
    pub fn addrs(&self, among: &[usize]) -> Vec<String> {
        among.iter().map(|&i| self.nodes[i].addr()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                for start in 1..=node.starts {
                    let text = std::fs::read_to_string(node.log_path(start)).unwrap_or_default();
                    eprintln!(
                        "---- node {} ({}) start {start}, last lines ----\n{}",
                        node.id,
                        node.ip,
                        tail_lines(&text, 60)
                    );
                }
            }
            eprintln!("cluster files kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Counters of a [`Producer`].
#[derive(Default)]
pub struct ProducerStats {
    /// Acknowledged produces.
    pub acked: AtomicU64,
    /// Produces that failed after the client's retries.
    pub failed: AtomicU64,
    /// The latest failure, for messages.
    pub last_error: Mutex<Option<String>>,
    /// Retried attempts of the producer's cluster client.
    pub retries: AtomicU64,
    /// Longest time one produce call took (retries included), in microseconds.
    pub max_latency_us: AtomicU64,
}

/// A background producer: unique values `"<tag>-<n>"` through a cluster client,
/// every acknowledgement recorded in the checker. Stops on [`Producer::stop`], after
/// `max_records`, or after `max_duration`.
pub struct Producer {
    stop: Arc<AtomicBool>,
    /// Its counters.
    pub stats: Arc<ProducerStats>,
    handle: Option<JoinHandle<()>>,
}

impl Producer {
    /// Starts producing to `cluster` in a new thread.
    pub fn start(
        cluster: &Cluster,
        checker: &Arc<Checker>,
        tag: &str,
        max_records: u64,
        max_duration: Duration,
    ) -> Producer {
        let mut client = cluster.client();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProducerStats::default());
        let (stop2, stats2, checker, tag) = (
            Arc::clone(&stop),
            Arc::clone(&stats),
            Arc::clone(checker),
            tag.to_string(),
        );
        let handle = std::thread::spawn(move || {
            let end = Instant::now() + max_duration;
            for n in 0..max_records {
                if stop2.load(Ordering::SeqCst) || Instant::now() >= end {
                    break;
                }
                let value = format!("{tag}-{n}");
                let started = Instant::now();
                let result = client.produce(value.as_bytes());
                let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats2.max_latency_us.fetch_max(took_us, Ordering::SeqCst);
                match result {
                    Ok(offset) => {
                        checker.ack(offset, value.as_bytes());
                        stats2.acked.fetch_add(1, Ordering::SeqCst);
                        stats2.retries.store(client.retries(), Ordering::SeqCst);
                    }
                    Err(e) => {
                        stats2.failed.fetch_add(1, Ordering::SeqCst);
                        *stats2.last_error.lock().expect("lock") = Some(e.to_string());
                    }
                }
            }
        });
        Producer {
            stop,
            stats,
            handle: Some(handle),
        }
    }

    /// Retried attempts of its client so far (as of the latest acknowledgement).
    pub fn retries(&self) -> u64 {
        self.stats.retries.load(Ordering::SeqCst)
    }

    /// Longest single produce call so far (retries included).
    pub fn max_latency(&self) -> Duration {
        Duration::from_micros(self.stats.max_latency_us.load(Ordering::SeqCst))
    }

    /// Acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.stats.acked.load(Ordering::SeqCst)
    }

    /// Waits until `n` more produces than `from` were acknowledged.
    pub fn wait_acked(&self, from: u64, n: u64, deadline: Duration) {
        wait_for(
            &format!("{n} more acknowledged produces (after {from})"),
            deadline,
            || (self.acked() >= from + n).then_some(()),
        );
    }

    /// Stops and joins the thread; returns the acknowledged count and the failure
    /// count with the latest failure.
    pub fn stats_snapshot_and_stop(self) -> (u64, (u64, Option<String>)) {
        let stats = Arc::clone(&self.stats);
        let (acked, failed) = self.stop();
        let last = stats.last_error.lock().expect("lock").clone();
        (acked, (failed, last))
    }

    /// Stops and joins the thread; returns (acked, failed).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("producer thread");
        }
        (
            self.stats.acked.load(Ordering::SeqCst),
            self.stats.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// True if `e` is the server refusing a write for lack of a leader or quorum.
pub fn is_refusal(e: &ClientError) -> bool {
    use commitlog::wire::ErrorCode;
    matches!(
        e.code(),
        Some(ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::NotLeader)
    )
}
