//! The replicated cluster node: storage + Raft + gossip + net wired into one server.
//!
//! # Threads
//! * **raft** (`raft_loop`): owns `RaftNode<LogStorage>`, the only log writer; ticks,
//!   steps peer messages, proposes produces in batches (group commit), persists and
//!   fsyncs each batch of Readies once, raises the commit high-water mark.
//! * **read pool + fetch timer** (`reads`): Consume / Fetch up to the commit index.
//! * **peer writers** (`peers`): one per peer, bounded queue, reconnect with backoff.
//! * **gossip driver** (`gossip::driver`) and **membership** (`membership`): member
//!   table and peer addresses from gossip; the leader turns joins into learners,
//!   promotes caught-up learners, removes decommissioned nodes.
//! * The event loop (`net::Server`) calls [`ClusterService`].
//!
//! # Data directory
//! `node.meta` (identity: node id, cluster name, bootstrap or join), `raft.hardstate`,
//! `raft.logstart` (see `meta`), and `log/` (the segmented log; offsets are Raft
//! indexes, the first entry is offset 1). A restart with the same data dir keeps the
//! identity and the log; a `--node-id` or `--cluster-name` that differs from the
//! stored identity is a start-up error.
//!
//! # Bootstrap and join
//! `--bootstrap` on an empty data dir creates a log start whose configuration has this
//! node as the only voter. On a data dir that already holds state it is refused, unless
//! that state is this same node's own bootstrap (restarting the first node with
//! unchanged flags is a restart, not a second bootstrap). `--join` starts with an empty
//! configuration; the node never campaigns until a leader has added it.
//!
//! # Shutdown: restart versus decommission
//! SIGTERM/SIGINT means "this node stops for now" (rolling restart, upgrade):
//! the leader first hands leadership to the most caught-up voter (bounded wait), then
//! the node leaves gossip (so others see it as left, not failed) and closes. It STAYS
//! in the Raft configuration: the leader ignores gossip leaves unless the node set the
//! `decommission` tag. With `--leave-on-shutdown` the node sets that tag before
//! leaving, and the leader removes it from the configuration: a permanent removal.
//! Removing and re-adding members on every restart would make a rolling restart a
//! sequence of membership changes, each one shrinking fault tolerance for a while.

mod answer;
mod balance;
mod cluster_service;
mod compactor;
mod fetch_many;
mod gate;
mod group;
mod group_open;
mod group_run;
mod groups;
pub mod heal;
mod hosting;
mod inbox;
mod journal;
mod list_offsets;
mod membership;
pub mod meta;
mod metadata;
mod peer_link;
mod peers;
mod produce_v1;
mod producers;
mod raft_loop;
pub mod raft_storage;
mod reads;
mod round_sync;
mod scrub;
mod served;
mod sync_pool;
mod topics;

pub use crate::replica::PROMOTE_MAX_LAG_ENTRIES;
pub use cluster_service::ClusterService;
pub use gate::Gate;
pub use membership::{TAG_DECOMMISSION, TAG_NAME};
pub use peers::PeerConfig;
pub use reads::ReadConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::gossip::{self, GossipConfig, GossipHandle, Tags, TAG_RPC_ADDR};
use crate::raft::{FollowerStatus, Index, Membership, Role, Term};
use crate::storage::{DirLock, LogConfig, OuterLock};
use crate::types::{GroupId, NodeId};

use group::{GroupState, Groups, DEFAULT_GROUP};
use group_open::GroupSpec;
use inbox::{Control, Inbox};
use meta::{Identity, Origin};
use peers::Peers;
use raft_loop::RaftLoop;
use reads::Reads;

/// How the node enters the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// A single node: a one-voter cluster on a fresh data dir (like `Bootstrap`), and
    /// a plain restart of whatever the data dir holds otherwise (also a node that
    /// joined others since, or was joined by them).
    Single,
    /// First node of a new cluster.
    Bootstrap,
    /// Join through these gossip addresses.
    Join(Vec<SocketAddr>),
}

impl StartMode {
    /// True if a fresh data dir starts a new one-voter cluster.
    fn creates_cluster(&self) -> bool {
        matches!(self, StartMode::Single | StartMode::Bootstrap)
    }
}

/// When a produce is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After the entries are fsynced (crash-safe; many produces share one fsync).
    Always,
    /// As soon as they are in the page cache: acknowledged records can be lost on
    /// power failure. Benchmarks only; allowed only for a one-voter cluster.
    Never,
}

/// Everything a cluster node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node id (never 0); also the gossip member id.
    pub node_id: NodeId,
    /// Human-readable name.
    pub node_name: String,
    /// Cluster name (peer handshake and gossip packets).
    pub cluster_name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The bound client/peer address (advertised to others; outgoing peer
    /// connections bind to its IP).
    pub rpc_addr: SocketAddr,
    /// Gossip UDP bind address (port 0 allowed).
    pub gossip_addr: SocketAddr,
    /// Bootstrap or join.
    pub mode: StartMode,
    /// Length of one Raft tick.
    pub raft_tick_ms: u64,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Gossip probe interval (other gossip timings scale with it).
    pub gossip_interval_ms: u64,
    /// A produce not committed within this is answered TIMEOUT.
    pub request_timeout_ms: u64,
    /// Segment sizes and retention (the initial offset is forced to 1).
    pub log: LogConfig,
    /// How often retention runs.
    pub retention_interval_ms: u64,
    /// Read pool and long-poll limits.
    pub read: ReadConfig,
    /// Produces queued for the raft thread before UNAVAILABLE.
    pub max_pending_produces: usize,
    /// Peer messages queued for the raft thread before they are dropped.
    pub max_pending_peer_msgs: usize,
    /// Entry bytes of peer messages queued for the raft thread before they are dropped.
    pub max_pending_peer_bytes: usize,
    /// Most records in one group-commit proposal.
    pub max_batch_records: usize,
    /// Most payload bytes in one group-commit proposal.
    pub max_batch_bytes: usize,
    /// Largest frame the server accepts (bounds Raft messages and produce sizes).
    pub max_frame_bytes: u32,
    /// Set the decommission tag before leaving gossip at shutdown (the leader then
    /// removes this node from the configuration).
    pub leave_on_shutdown: bool,
    /// AES-256-GCM key sealing every gossip packet (`--gossip-key-file`); every
    /// member needs the same key. None: gossip is plaintext.
    pub gossip_key: Option<[u8; 32]>,
    /// TLS for outgoing peer connections (`--peer-tls-*`, see `peers`); None:
    /// plaintext. Incoming peer connections are the server's business
    /// (`net::Security`, which must then trust the peer CA).
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
    /// When produces are acknowledged (see [`FsyncPolicy`]).
    pub fsync: FsyncPolicy,
    /// Rate of the background scrubber over sealed segments; 0 turns it off.
    pub scrub_bytes_per_sec: u64,
    /// The catch-up throttle: bytes per second of already-committed entries a
    /// group's leader sends to one follower (a follower that is behind); 0: no
    /// limit. Entries not yet committed are never held back.
    pub catch_up_bytes_per_sec: u64,
    /// How often the compactor runs a pass over each compacted partition
    /// (`node::compactor`); 0 turns it off.
    pub compact_interval_ms: u64,
    /// Bound of one compaction pass's key map, in bytes.
    pub compact_key_map_bytes: usize,
    /// Where fsyncs, Raft state and gossip members are published (see
    /// [`crate::metrics`]); `None`: not counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Most hosted partitions with their own metrics series (bounded cardinality);
    /// 0 turns per-partition and per-topic series off.
    pub metrics_partition_series: usize,
    /// The ACL the event loop checks, for the checks only the node can make
    /// (DeleteGroup needs `consume` on the topics of the group's cursors); `None`:
    /// the ACL is off.
    pub acl: Option<Arc<crate::auth::Authorizer>>,
}

impl NodeConfig {
    /// Defaults for everything but identity and addresses.
    pub fn new(
        node_id: NodeId,
        data_dir: PathBuf,
        rpc_addr: SocketAddr,
        gossip_addr: SocketAddr,
        mode: StartMode,
    ) -> NodeConfig {
        NodeConfig {
            node_id,
            node_name: format!("node-{node_id}"),
            cluster_name: "commitlog".into(),
            data_dir,
            rpc_addr,
            gossip_addr,
            mode,
            raft_tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 1,
            gossip_interval_ms: 1000,
            request_timeout_ms: 5000,
            log: LogConfig::default(),
            retention_interval_ms: 60_000,
            read: ReadConfig {
                threads: 2,
                queue_cap: 4096,
                max_parked: 4096,
                max_wait_ms: 30_000,
                max_fetch_bytes: crate::wire::DEFAULT_MAX_FRAME_BYTES - 64 * 1024,
            },
            max_pending_produces: 16 * 1024,
            max_pending_peer_msgs: 64 * 1024,
            max_pending_peer_bytes: 128 << 20,
            max_batch_records: 8 * 1024,
            max_batch_bytes: 4 << 20,
            max_frame_bytes: crate::wire::DEFAULT_MAX_FRAME_BYTES,
            leave_on_shutdown: false,
            gossip_key: None,
            peer_tls: None,
            fsync: FsyncPolicy::Always,
            scrub_bytes_per_sec: 4 << 20,
            catch_up_bytes_per_sec: 0,
            compact_interval_ms: 30_000,
            compact_key_map_bytes: crate::storage::compact::DEFAULT_KEY_MAP_BYTES,
            metrics: None,
            metrics_partition_series: 1000,
            acl: None,
        }
    }
}

/// A member as gossip sees it.
#[derive(Clone, Debug)]
pub(crate) struct GossipMember {
    pub gossip_addr: SocketAddr,
    pub name: String,
    pub rpc_addr: Option<String>,
    pub live: bool,
    pub decommission: bool,
}

/// The raft thread's published state, for Status / GetServers / produce routing.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub first: Index,
    pub last: Index,
    pub membership: Membership,
    pub followers: Vec<FollowerStatus>,
    pub recovering: bool,
    /// The metadata group only: this node leads and has committed an entry of its
    /// term, so its applied catalogue holds every earlier commit (consumer group
    /// reads wait for it: no stale cursor after a leader change).
    pub term_committed: bool,
}

/// State shared by the node's threads.
pub(crate) struct Shared {
    pub cfg: NodeConfig,
    /// The Raft groups hosted here.
    pub groups: Groups,
    /// The `default` topic's partition 0 (v0 requests, Status, GetServers).
    pub default: Arc<GroupState>,
    /// The catalogue as last applied here (routing of topic requests).
    pub catalogue: std::sync::RwLock<Arc<crate::catalogue::Catalogue>>,
    pub heal_counters: Arc<heal::HealCounters>,
    /// Gossip member table (bounded by gossip's own `max_members`).
    pub members: Mutex<BTreeMap<NodeId, GossipMember>>,
    /// Gossip seeds last written to the data dir.
    pub last_seeds: Mutex<Vec<SocketAddr>>,
    pub closing: AtomicBool,
    /// The disk filled up: produces go to the raft thread whatever the role, which
    /// retries its writes and answers STORAGE_FULL until space frees.
    pub disk_full: AtomicBool,
    /// Consumer group reads waiting for a new metadata leader to be caught up.
    pub group_reads: groups::WaitingReads,
    /// The node journal: one fsync per round for many groups.
    pub journal: Arc<journal::NodeJournal>,
}

pub(crate) use crate::sync::lock;

impl Shared {
    /// The catalogue as last applied here.
    pub(crate) fn catalogue(&self) -> Arc<crate::catalogue::Catalogue> {
        let c = self.catalogue.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&c)
    }

    /// Publishes a newly applied catalogue.
    pub(crate) fn publish_catalogue(&self, catalogue: &crate::catalogue::Catalogue) {
        let mut c = self.catalogue.write().unwrap_or_else(|p| p.into_inner());
        *c = Arc::new(catalogue.clone());
    }

    /// Why a produce is refused here: NOT_LEADER with the leader's address, or
    /// "no leader" when none (other than this node) is known.
    pub(crate) fn not_leader(&self, leader: Option<NodeId>) -> answer::Refusal {
        let Some(id) = leader.filter(|l| *l != self.cfg.node_id) else {
            return answer::Refusal::NoLeader;
        };
        let addr = lock(&self.members)
            .get(&id)
            .and_then(|g| g.rpc_addr.clone())
            .unwrap_or_default();
        answer::Refusal::NotLeader { leader: id, addr }
    }

    /// Largest record value accepted (it must fit a segment and a Raft frame).
    pub(crate) fn max_record_value_bytes(&self) -> usize {
        let seg = usize::try_from(self.cfg.log.max_store_bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(cluster_service::RECORD_OVERHEAD_BYTES);
        seg.min(self.max_produce_bytes())
    }

    /// Largest total payload of one produce (leaves room for the Raft frame headers).
    pub(crate) fn max_produce_bytes(&self) -> usize {
        let frame = self.cfg.max_frame_bytes as usize;
        frame.saturating_sub(frame_headroom_bytes(frame))
    }
}

/// Bytes of a frame kept for headers around records (Raft message, response header):
/// 64 KiB, or a quarter of a small frame.
pub fn frame_headroom_bytes(max_frame_bytes: usize) -> usize {
    (64 * 1024).min(max_frame_bytes / 4)
}

/// A running cluster node. Serve [`Node::service`] with a `net::Server`.
pub struct Node {
    shared: Arc<Shared>,
    service: Arc<ClusterService>,
    inbox: Arc<Inbox>,
    reads: Arc<Reads>,
    peers: Arc<Peers>,
    gossip: Arc<Mutex<Option<GossipHandle>>>,
    gossip_addr: SocketAddr,
    raft_thread: Mutex<Option<JoinHandle<()>>>,
    membership_thread: Mutex<Option<JoinHandle<()>>>,
    membership_stop: Arc<AtomicBool>,
    fatal: Arc<AtomicBool>,
    healer: Mutex<Option<heal::HealHandle>>,
    scrubber: Mutex<Option<scrub::ScrubHandle>>,
    compactor: Mutex<Option<compactor::CompactorHandle>>,
}

impl Node {
    /// Opens (or creates) the data dir, checks the identity, and starts every thread.
    /// `on_fatal` is called (from the raft thread) if the node hits a fail-stop error;
    /// the owner should shut the server down.
    pub fn start(
        mut cfg: NodeConfig,
        on_fatal: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Node, String> {
        if cfg.node_id.0 == 0 {
            return Err("--node-id must not be 0".into());
        }
        let dir = cfg.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        refuse_legacy_dir(&dir)?;
        // One lock for the whole data dir, before anything in it is read or
        // written; every group's log is opened under it (no lock file of its own)
        // and keeps it alive while open.
        let dir_lock = OuterLock::acquire(&dir).map_err(|e| {
            format!(
                "cannot lock data dir {} (is another commitlogd using it?): {e}",
                dir.display()
            )
        })?;
        cfg.log.dir_lock = DirLock::Covered(Arc::new(dir_lock));
        let fresh = check_identity(&cfg)?;
        let journal = Arc::new(journal::NodeJournal::open(&dir)?);
        let [default, metadata] = open_startup_groups(&cfg, fresh, &journal)?;
        let (start_index, last) = {
            let v = default.state.view();
            (v.commit, v.last)
        };
        let meta_voters = metadata
            .state
            .view()
            .membership
            .voters
            .into_iter()
            .collect();
        let applied = metadata::Metadata::load(&metadata.state.dir, meta_voters)?;
        let partitions = hosting::open_hosted(&cfg, &applied, &journal)?;
        let waiting = journal.pending_groups();
        if !waiting.is_empty() {
            log::warn!(
                "node journal: records of groups {waiting:?} wait until the catalogue opens \
                 them here"
            );
        }
        let groups = Groups::default();
        groups.insert(Arc::clone(&default.state));
        groups.insert(Arc::clone(&metadata.state));
        for p in &partitions {
            groups.insert(Arc::clone(&p.state));
        }
        let heal_counters = Arc::new(heal::HealCounters::default());
        if let Some(m) = &cfg.metrics {
            m.set_heal_counters(Arc::clone(&heal_counters));
        }
        let shared = Arc::new(Shared {
            groups,
            default: Arc::clone(&default.state),
            catalogue: std::sync::RwLock::new(Arc::new(applied.catalogue().clone())),
            heal_counters,
            members: Mutex::new(BTreeMap::new()),
            last_seeds: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            group_reads: groups::WaitingReads::default(),
            journal,
            cfg: cfg.clone(),
        });
        group_open::report_damage_found_at_open(&default.state, default.damaged);
        group_open::report_damage_found_at_open(&metadata.state, metadata.damaged);
        let mut runs = vec![default.run, metadata.run];
        for p in partitions {
            group_open::report_damage_found_at_open(&p.state, p.damaged);
            runs.push(p.run);
        }
        let healer = heal::spawn(Arc::clone(&shared), Arc::clone(&shared.heal_counters))
            .map_err(|e| format!("cannot start the healer: {e}"))?;
        let scrubber = scrub::spawn(Arc::clone(&shared))
            .map_err(|e| format!("cannot start the scrubber: {e}"))?;
        let compactor = compactor::spawn(Arc::clone(&shared))
            .map_err(|e| format!("cannot start the compactor: {e}"))?;
        let reads = Arc::new(
            Reads::start(cfg.read.clone())
                .map_err(|e| format!("cannot start the read pool: {e}"))?,
        );
        let peers = Arc::new(Peers::new(PeerConfig {
            node_id: cfg.node_id,
            node_name: cfg.node_name.clone(),
            cluster_name: cfg.cluster_name.clone(),
            bind_ip: cfg.rpc_addr.ip(),
            queue_cap: 4096,
            max_batch_bytes: 4 << 20,
            backoff_min_ms: (cfg.raft_tick_ms / 2).clamp(5, 100),
            backoff_max_ms: (cfg.raft_tick_ms * u64::from(cfg.election_ticks)).clamp(50, 2000),
            connect_timeout_ms: 1000,
            write_timeout_ms: 2000,
            tls: cfg.peer_tls.clone(),
        }));
        let inbox = Arc::new(Inbox::new(
            cfg.max_pending_peer_msgs,
            cfg.max_pending_peer_bytes,
            cfg.max_pending_produces,
        ));

        // Gossip.
        let mut gcfg = GossipConfig::scaled_down((1000 / cfg.gossip_interval_ms.max(1)).max(1));
        gcfg.probe_interval_ms = cfg.gossip_interval_ms.max(1);
        gcfg.probe_timeout_ms = gcfg.probe_timeout_ms.clamp(1, gcfg.probe_interval_ms);
        gcfg.cluster_name = cfg.cluster_name.clone();
        gcfg.secret_key = cfg.gossip_key;
        let tags = Tags::new()
            .with(TAG_RPC_ADDR, &cfg.rpc_addr.to_string())
            .and_then(|t| t.with(TAG_NAME, &cfg.node_name))
            .map_err(|e| format!("bad gossip tags: {e:?}"))?;
        let mut seeds = match &cfg.mode {
            StartMode::Join(s) => s.clone(),
            StartMode::Bootstrap | StartMode::Single => Vec::new(),
        };
        // After a restart, also try the members last seen alive.
        match meta::read_seeds(&dir) {
            Ok(known) => {
                for a in known {
                    if !seeds.contains(&a) {
                        seeds.push(a);
                    }
                }
            }
            Err(e) => log::warn!("ignoring the recorded gossip seeds: {e}"),
        }
        let (handle, events) = gossip::driver::start(
            gcfg,
            cfg.node_id,
            tags,
            gossip::DriverConfig::new(cfg.gossip_addr),
            &seeds,
        )
        .map_err(|e| format!("cannot start gossip on {}: {e}", cfg.gossip_addr))?;
        let gossip_addr = handle.local_addr();
        let gossip = Arc::new(Mutex::new(Some(handle)));
        let membership_stop = Arc::new(AtomicBool::new(false));
        let membership_thread = {
            let (shared, peers, gossip, stop) = (
                Arc::clone(&shared),
                Arc::clone(&peers),
                Arc::clone(&gossip),
                Arc::clone(&membership_stop),
            );
            std::thread::Builder::new()
                .name("membership".into())
                .spawn(move || membership::run(shared, peers, gossip, events, stop))
                .map_err(|e| format!("cannot start the membership thread: {e}"))?
        };

        let fatal = Arc::new(AtomicBool::new(false));
        let raft = RaftLoop::new(
            runs,
            applied,
            Arc::clone(&shared),
            Arc::clone(&inbox),
            Arc::clone(&reads),
            Arc::clone(&peers),
            sync_pool::SyncPool::start()
                .map_err(|e| format!("cannot start the fsync pool: {e}"))?,
        );
        let raft_thread = {
            let fatal = Arc::clone(&fatal);
            std::thread::Builder::new()
                .name("raft".into())
                .spawn(move || {
                    // A panic is a bug: treat it like a fail-stop error (the process
                    // shuts down) rather than serving without a raft thread.
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raft.run()));
                    if !matches!(run, Ok(Ok(()))) {
                        fatal.store(true, Ordering::Release);
                        on_fatal();
                    }
                })
                .map_err(|e| format!("cannot start the raft thread: {e}"))?
        };
        let service = Arc::new(ClusterService::new(
            Arc::clone(&shared),
            Arc::clone(&inbox),
            Arc::clone(&reads),
        ));
        log::info!(
            "cluster node {} ({}) of `{}`: rpc {}, gossip {gossip_addr}, log [{}, {last}]",
            cfg.node_id,
            cfg.node_name,
            cfg.cluster_name,
            cfg.rpc_addr,
            start_index.0 + 1
        );
        Ok(Node {
            shared,
            service,
            inbox,
            reads,
            peers,
            gossip,
            gossip_addr,
            raft_thread: Mutex::new(Some(raft_thread)),
            membership_thread: Mutex::new(Some(membership_thread)),
            membership_stop,
            fatal,
            healer: Mutex::new(Some(healer)),
            scrubber: Mutex::new(scrubber),
            compactor: Mutex::new(compactor),
        })
    }

    /// Waits (bounded by `max_wait`) until a node that is the only voter of its
    /// configuration leads, so that a single node announces itself ready only when
    /// it accepts produces. Returns at once for a member of a larger cluster.
    pub fn wait_until_serving(&self, max_wait: Duration) {
        let deadline = Instant::now() + max_wait;
        let me = self.shared.cfg.node_id;
        while Instant::now() < deadline {
            {
                let v = lock(&self.shared.default.view);
                let sole = v.membership.voters.len() == 1 && v.membership.voters.contains(&me);
                if !sole || v.role == Role::Leader || self.failed() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        log::warn!("not leading {max_wait:?} after start-up although the only voter");
    }

    /// The request handler to serve.
    pub fn service(&self) -> Arc<ClusterService> {
        Arc::clone(&self.service)
    }

    /// The bound gossip address.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// True once the raft thread stopped on a fail-stop error.
    pub fn failed(&self) -> bool {
        self.fatal.load(Ordering::Acquire)
    }

    /// First half of a graceful shutdown, while the server still runs: a leader hands
    /// leadership to the most caught-up voter (waiting up to `max_wait`), then the
    /// node leaves gossip (with the decommission tag if `leave_on_shutdown`).
    pub fn prepare_shutdown(&self, max_wait: Duration) {
        let deadline = Instant::now() + max_wait;
        let me = self.shared.cfg.node_id;
        let hand_over = {
            let v = lock(&self.shared.default.view);
            // A lone voter has nobody to hand over to: do not wait for it.
            v.role == Role::Leader && v.membership.voters.iter().any(|id| *id != me)
        };
        if hand_over {
            self.inbox.push_control(Control::TransferLeadership);
            // Bounded: polls until the role changes or the deadline passes.
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                let v = lock(&self.shared.default.view);
                if v.role != Role::Leader {
                    log::info!("leadership handed over (leader now {:?})", v.leader);
                    break;
                }
            }
        }
        let g = lock(&self.gossip);
        if let Some(g) = g.as_ref() {
            if self.shared.cfg.leave_on_shutdown {
                let mut tags = Tags::new();
                let _ = tags.insert(TAG_RPC_ADDR, &self.shared.cfg.rpc_addr.to_string());
                let _ = tags.insert(TAG_NAME, &self.shared.cfg.node_name);
                let _ = tags.insert(TAG_DECOMMISSION, "1");
                g.set_tags(tags);
                // Give the tag a few gossip rounds to spread before the leave.
                let spread = Duration::from_millis(self.shared.cfg.gossip_interval_ms.max(1) * 3);
                std::thread::sleep(spread.min(deadline.saturating_duration_since(Instant::now())));
            }
            g.leave();
        }
    }

    /// Second half: stops the raft thread, readers, peers and gossip, and syncs the
    /// log. Call after the network server stopped. Idempotent.
    pub fn shutdown(&self) -> Result<(), String> {
        self.shared.closing.store(true, Ordering::Release);
        self.inbox.push_control(Control::Stop);
        if let Some(t) = lock(&self.raft_thread).take() {
            let _ = t.join();
        }
        self.reads.shutdown();
        self.peers.shutdown();
        if let Some(h) = lock(&self.healer).take() {
            h.stop();
        }
        if let Some(s) = lock(&self.scrubber).take() {
            s.stop();
        }
        if let Some(c) = lock(&self.compactor).take() {
            c.stop();
        }
        self.membership_stop.store(true, Ordering::Release);
        if let Some(g) = lock(&self.gossip).take() {
            g.shutdown();
        }
        if let Some(t) = lock(&self.membership_thread).take() {
            let _ = t.join();
        }
        // An exact checkpoint (durable end and segments) for the next start.
        for g in self.shared.groups.all() {
            g.log
                .checkpoint()
                .map_err(|e| format!("final fsync of group {} failed: {e}", g.id))?;
        }
        Ok(())
    }
}

/// The groups every node runs from the start: the `default` topic's partition 0 (the
/// data dir's top level, where the log was before topics existed) and the metadata
/// group (`meta/`). A new cluster's first node is their only voter; a joiner starts
/// with no configuration and is added by the leaders (gossip membership policy).
/// A data dir written before topics gets its metadata group the same way.
fn open_startup_groups(
    cfg: &NodeConfig,
    fresh: bool,
    journal: &Arc<journal::NodeJournal>,
) -> Result<[group_open::Opened; 2], String> {
    let dir = &cfg.data_dir;
    let bootstrap = cfg.mode.creates_cluster();
    let initial = if bootstrap {
        Membership::with_voters([cfg.node_id.0])
    } else {
        Membership::default()
    };
    let has_peers = has_peers(cfg, dir);
    let default = group_open::open(
        cfg,
        GroupSpec {
            id: DEFAULT_GROUP,
            dir: dir.clone(),
            initial: initial.clone(),
            follows_voters: true,
            log: cfg.log.clone(),
            maybe_lost: fresh && !bootstrap,
            has_peers,
            max_record_bytes: u64::MAX,
        },
        journal,
    )?;
    let meta_dir = dir.join(METADATA_DIR);
    let metadata = group_open::open(
        cfg,
        GroupSpec {
            id: GroupId::METADATA,
            maybe_lost: fresh && !bootstrap,
            dir: meta_dir,
            initial,
            follows_voters: true,
            // The catalogue is never cut by retention (it is small; compaction
            // would need a snapshot of the catalogue first).
            log: LogConfig {
                retention_bytes: None,
                retention_age: None,
                max_store_bytes: cfg.log.max_store_bytes.min(METADATA_SEGMENT_BYTES),
                ..cfg.log.clone()
            },
            has_peers,
            max_record_bytes: u64::MAX,
        },
        journal,
    )?;
    Ok([default, metadata])
}

/// The data dir's lock file (`storage::OuterLock`).
const DATA_DIR_LOCK_FILE: &str = "LOCK";
/// Where the metadata group lives in the data dir.
const METADATA_DIR: &str = "meta";
/// Largest segment of the metadata group's log.
const METADATA_SEGMENT_BYTES: u64 = 16 << 20;

/// Checks (or creates) the stored identity against the flags.
/// Returns true if the identity was just created (a fresh data dir).
fn check_identity(cfg: &NodeConfig) -> Result<bool, String> {
    let dir = &cfg.data_dir;
    match meta::read_identity(dir).map_err(|e| e.to_string())? {
        Some(id) => check_stored_identity(cfg, &id).map(|()| false),
        None => {
            refuse_unknown_state(cfg)?;
            meta::write_identity(
                dir,
                &Identity {
                    node_id: cfg.node_id,
                    cluster_name: cfg.cluster_name.clone(),
                    origin: if cfg.mode.creates_cluster() {
                        Origin::Bootstrap
                    } else {
                        Origin::Join
                    },
                },
            )
            .map_err(|e| e.to_string())?;
            Ok(true)
        }
    }
}

/// The stored identity must match the flags; `--bootstrap` restarts only its own
/// bootstrapped node (a single node restarts whatever it holds).
fn check_stored_identity(cfg: &NodeConfig, id: &Identity) -> Result<(), String> {
    let dir = &cfg.data_dir;
    if id.node_id != cfg.node_id {
        return Err(format!(
            "data dir {} belongs to node {}, but --node-id is {}; use the right \
             data dir or node id",
            dir.display(),
            id.node_id,
            cfg.node_id
        ));
    }
    if id.cluster_name != cfg.cluster_name {
        return Err(format!(
            "data dir {} belongs to cluster `{}`, but --cluster-name is `{}`",
            dir.display(),
            id.cluster_name,
            cfg.cluster_name
        ));
    }
    if cfg.mode == StartMode::Bootstrap && id.origin != Origin::Bootstrap {
        return Err(format!(
            "refusing to --bootstrap over existing state: data dir {} holds node {} \
             that joined cluster `{}`; restart it with --join, or wipe the data dir \
             to create a new cluster",
            dir.display(),
            id.node_id,
            id.cluster_name
        ));
    }
    if cfg.mode == StartMode::Bootstrap {
        log::info!(
            "data dir {} already holds this node's bootstrapped state; restarting \
             from it (not bootstrapping again)",
            dir.display()
        );
    }
    Ok(())
}

/// A data dir without an identity must be empty (or hold only a fresh joiner's
/// files): never guess whose state it is. A log written by the old single-node
/// engine (segments directly in the data dir, offsets from 0) gets its own message.
fn refuse_unknown_state(cfg: &NodeConfig) -> Result<(), String> {
    let dir = &cfg.data_dir;
    refuse_legacy_dir(dir)?;
    // The lock file the node itself just created is not state.
    let has_state = std::fs::read_dir(dir)
        .map(|mut d| d.any(|e| !e.is_ok_and(|e| e.file_name() == DATA_DIR_LOCK_FILE)))
        .unwrap_or(false);
    if has_state && cfg.mode.creates_cluster() {
        let how = if cfg.mode == StartMode::Bootstrap {
            "refusing to --bootstrap over existing state"
        } else {
            "refusing to start a new single node over existing state"
        };
        return Err(format!(
            "{how}: data dir {} is not empty but holds no node identity ({} missing); \
             use an empty data dir",
            dir.display(),
            meta::IDENTITY_FILE
        ));
    }
    if has_state
        && meta::read_log_start(dir)
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Err(format!(
            "data dir {} holds Raft state but no node identity ({} missing); \
             refusing to guess who this node is",
            dir.display(),
            meta::IDENTITY_FILE
        ));
    }
    Ok(())
}

/// A log written by the old single-node engine is refused before anything is
/// created in its directory (not even the node's lock file).
fn refuse_legacy_dir(dir: &std::path::Path) -> Result<(), String> {
    if is_legacy_single_node_dir(dir) {
        return Err(format!(
            "data dir {} holds a log written by the old single-node engine (segment \
             files directly in the data dir, offsets from 0). Every node now runs as a \
             Raft group whose offsets start at 1, and such a log cannot be used in place. \
             Start on an empty data dir; to keep the old records, serve the old dir with \
             the previous commitlogd release and copy them \
             (`clog consume --from 0 --count N | clog produce` against the new node), \
             then remove the old dir",
            dir.display()
        ));
    }
    Ok(())
}

/// True if `dir` holds segment files of the old single-node engine: `.store` files
/// directly in the data dir (nodes keep their log in `log/`).
fn is_legacy_single_node_dir(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .take(100_000)
        .any(|e| e.path().extension().is_some_and(|x| x == "store"))
}

/// True if this node may have peers holding copies of its log: it joined others, its
/// log start names other members, or gossip has seen others (seeds file).
fn has_peers(cfg: &NodeConfig, dir: &std::path::Path) -> bool {
    if matches!(cfg.mode, StartMode::Join(_)) {
        return true;
    }
    let others_in_start = meta::read_log_start(dir)
        .ok()
        .flatten()
        .is_some_and(|s| s.membership.members().any(|m| m != cfg.node_id));
    let others_seen = meta::read_seeds(dir).is_ok_and(|s| !s.is_empty());
    others_in_start || others_seen
}
