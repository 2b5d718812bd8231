//! `commitlogd`: the commitlog server. Flags and process lifecycle only; the work is
//! in `commitlog::net` (event loop) and `commitlog::node` (the node). Every mode runs
//! the same node: without `--bootstrap`/`--join` it is a one-voter Raft cluster
//! (`--dev` too). The ready file holds `rpc=IP:PORT`, `gossip=IP:PORT` and, with
//! `--metrics-addr`, `metrics=IP:PORT`, one per line.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use commitlog::auth::{AclSource, Authorizer};
use commitlog::gossip::GossipConfig;
use commitlog::metrics::Metrics;
use commitlog::net::tls::{self, PeerTls};
use commitlog::net::{Security, Server, ServerConfig, Service, TlsFiles};
use commitlog::node::{FsyncPolicy, Gate, Node, NodeConfig, StartMode};
use commitlog::storage::LogConfig;
use commitlog::types::{NodeId, Offset};

/// The commitlog server: an append-only log that clients produce to and consume
/// from by offset.
///
/// Every flag can also be set through the environment variable shown in brackets.
/// `commitlogd --dev` starts a throw-away single node on 127.0.0.1:8400.
#[derive(Parser, Debug)]
#[command(name = "commitlogd", version)]
struct Args {
    /// Development mode: a single node on 127.0.0.1:8400 with a fresh temporary data
    /// directory that is removed on clean exit. --listen and --data-dir override.
    #[arg(long, env = "COMMITLOGD_DEV")]
    dev: bool,

    /// Directory holding the log's segment files (created if missing). Required
    /// unless --dev.
    #[arg(long, env = "COMMITLOGD_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address to serve clients on, host:port. Port 0 picks a free port (see the
    /// `listening on` log line and --ready-file).
    #[arg(long, env = "COMMITLOGD_LISTEN", default_value = "127.0.0.1:8400")]
    listen: String,

    /// Once serving, write the bound address (host:port) to this file, atomically
    /// (write to a temporary file, then rename).
    #[arg(long, env = "COMMITLOGD_READY_FILE")]
    ready_file: Option<PathBuf>,

    /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`,
    /// `/readyz`) over HTTP on this address, IP:PORT (port 0 picks a free port; see
    /// the `metrics on` log line, and the `metrics=` line of a cluster ready file).
    /// Off by default.
    #[arg(long, env = "COMMITLOGD_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// This node's name, reported by `clog servers` (default: node-N for --node-id N).
    #[arg(long, env = "COMMITLOGD_NODE_NAME")]
    node_name: Option<String>,

    /// This node's numeric id.
    #[arg(long, env = "COMMITLOGD_NODE_ID", default_value_t = 1)]
    node_id: u64,

    /// Largest segment store file; a new segment starts when it is full. Sizes take
    /// suffixes KiB, MiB, GiB (or K, M, G).
    #[arg(long, env = "COMMITLOGD_SEGMENT_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    segment_max_bytes: u64,

    /// Largest segment index file (8 bytes per record).
    #[arg(long, env = "COMMITLOGD_INDEX_MAX_BYTES", default_value = "10MiB", value_parser = parse_bytes)]
    index_max_bytes: u64,

    /// Delete the oldest whole segments while the log is larger than this.
    /// Default: keep everything.
    #[arg(long, env = "COMMITLOGD_RETENTION_BYTES", value_parser = parse_bytes)]
    retention_bytes: Option<u64>,

    /// Delete whole segments last written longer ago than this, e.g. 7d, 12h, 30m,
    /// 45s. Default: keep everything.
    #[arg(long, env = "COMMITLOGD_RETENTION_AGE", value_parser = parse_duration)]
    retention_age: Option<Duration>,

    /// How often retention runs, e.g. 1m, 30s.
    #[arg(long, env = "COMMITLOGD_RETENTION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    retention_interval: Duration,

    /// When a produce is acknowledged. `always` (default): after the record is
    /// fsynced to disk (many produces share one fsync). `never`: as soon as it is
    /// in the OS page cache. WARNING: with `never`, ACKNOWLEDGED RECORDS CAN BE LOST
    /// on power failure or kernel crash. Use it only for benchmarks.
    #[arg(long, env = "COMMITLOGD_FSYNC", value_enum, default_value_t = FsyncArg::Always)]
    fsync: FsyncArg,

    /// Most client connections at once; more get TOO_MANY_CONNECTIONS and are closed.
    #[arg(long, env = "COMMITLOGD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,

    /// Largest request/response frame (at most 16777215). Larger frames get
    /// FRAME_TOO_LARGE and the connection is closed.
    #[arg(long, env = "COMMITLOGD_MAX_FRAME_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    max_frame_bytes: u64,

    /// Close connections that made no progress (no complete request, no response
    /// bytes taken) for this many milliseconds while nothing was in flight.
    #[arg(long, env = "COMMITLOGD_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    idle_timeout_ms: u64,

    /// Most bytes one connection may buffer: its unread requests, its unsent
    /// responses and the responses it has in flight. A connection at this limit is
    /// not read from (TCP pushes back) and its Fetch answers are sized to fit.
    #[arg(long, env = "COMMITLOGD_MAX_CONN_BUFFER_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    max_conn_buffer_bytes: u64,

    /// Most bytes all connections together may buffer (requests read but not yet
    /// handed on, responses in flight or unsent). When it is spent, new requests
    /// wait unread and Fetch answers shrink; each connection may still use one
    /// 64 KiB read buffer and run one request, so small requests keep flowing.
    /// Must hold one whole frame (at least --max-frame-bytes).
    #[arg(long, env = "COMMITLOGD_MAX_BUFFERED_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    max_buffered_bytes: u64,

    /// Most requests of one connection being served at once (pipelining window).
    #[arg(
        long,
        env = "COMMITLOGD_MAX_IN_FLIGHT_PER_CONN",
        default_value_t = 1024
    )]
    max_in_flight_per_conn: usize,

    /// Threads serving reads (Consume/Fetch).
    #[arg(long, env = "COMMITLOGD_READ_THREADS", default_value_t = 2)]
    read_threads: usize,

    /// TLS certificate (PEM chain) this server presents to clients. With the three
    /// --server-tls-* files, every connection must use TLS with a client certificate
    /// issued by --server-tls-ca-file, and the ACL (--acl-*) is enforced.
    #[arg(long, env = "COMMITLOGD_SERVER_TLS_CERT_FILE", requires_all = ["server_tls_key_file", "server_tls_ca_file"])]
    server_tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --server-tls-cert-file.
    #[arg(long, env = "COMMITLOGD_SERVER_TLS_KEY_FILE", requires_all = ["server_tls_cert_file", "server_tls_ca_file"])]
    server_tls_key_file: Option<PathBuf>,

    /// CA certificate(s) (PEM) that issue client certificates.
    #[arg(long, env = "COMMITLOGD_SERVER_TLS_CA_FILE", requires_all = ["server_tls_cert_file", "server_tls_key_file"])]
    server_tls_ca_file: Option<PathBuf>,

    /// Certificate this node presents to other nodes (its CN is the peer identity the
    /// ACL grants `replicate`, e.g. commitlog-peer). Cluster mode: the client
    /// certificate of this node's outgoing peer connections (required there with
    /// --server-tls-*). Single node: validated only.
    #[arg(long, env = "COMMITLOGD_PEER_TLS_CERT_FILE", requires_all = ["peer_tls_key_file", "peer_tls_ca_file", "server_tls_cert_file"])]
    peer_tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --peer-tls-cert-file.
    #[arg(long, env = "COMMITLOGD_PEER_TLS_KEY_FILE", requires_all = ["peer_tls_cert_file", "peer_tls_ca_file"])]
    peer_tls_key_file: Option<PathBuf>,

    /// CA certificate(s) (PEM) of the peers' certificates: trusted for incoming peer
    /// connections, and to verify the server certificate of peers this node dials
    /// (checked against the IP of the peer's rpc address).
    #[arg(long, env = "COMMITLOGD_PEER_TLS_CA_FILE", requires_all = ["peer_tls_cert_file", "peer_tls_key_file"])]
    peer_tls_ca_file: Option<PathBuf>,

    /// With TLS on, also accept plaintext connections. They have no verified identity
    /// and are checked by the ACL as `anonymous` (the default policy allows them only
    /// Ping). Meant for migrations; without it plaintext gets `-ERR UNAUTHENTICATED`.
    #[arg(
        long,
        env = "COMMITLOGD_ALLOW_PLAINTEXT",
        requires = "server_tls_cert_file"
    )]
    allow_plaintext: bool,

    /// casbin ACL model (default: the built-in copy of certs/model.conf). Only used
    /// with TLS: without TLS there is no identity and the ACL is off.
    #[arg(
        long,
        env = "COMMITLOGD_ACL_MODEL_FILE",
        requires = "server_tls_cert_file"
    )]
    acl_model_file: Option<PathBuf>,

    /// casbin ACL policy, lines `p, <certificate CN>, *, <produce|consume|describe|replicate>`
    /// (default: the built-in copy of certs/policy.csv). Reloaded on SIGHUP.
    #[arg(
        long,
        env = "COMMITLOGD_ACL_POLICY_FILE",
        requires = "server_tls_cert_file"
    )]
    acl_policy_file: Option<PathBuf>,

    /// Gossip encryption key: 32 raw bytes or 64 hex characters (`openssl rand -hex 32`).
    /// Cluster mode: seals and authenticates every gossip packet (AES-256-GCM);
    /// packets that fail are dropped and counted. Every node needs the same key.
    #[arg(long, env = "COMMITLOGD_GOSSIP_KEY_FILE")]
    gossip_key_file: Option<PathBuf>,

    /// Cluster mode: start a new cluster with this node as its only voter. Refused
    /// on a data dir that holds another node's (or a joined node's) state.
    #[arg(long, env = "COMMITLOGD_BOOTSTRAP", conflicts_with_all = ["join", "dev"])]
    bootstrap: bool,

    /// Cluster mode: join an existing cluster through these gossip addresses
    /// (comma-separated host:port).
    #[arg(
        long,
        env = "COMMITLOGD_JOIN",
        value_delimiter = ',',
        conflicts_with = "dev"
    )]
    join: Vec<String>,

    /// Gossip (UDP) address, host:port; port 0 picks a free port. Default:
    /// 127.0.0.1:8401 with --bootstrap or --join; for a single node, a free port on
    /// the --listen IP (set it explicitly if others are to --join this node later).
    #[arg(long, env = "COMMITLOGD_GOSSIP_LISTEN")]
    gossip_listen: Option<String>,

    /// Name of the cluster; peers and gossip packets of another cluster are refused.
    #[arg(long, env = "COMMITLOGD_CLUSTER_NAME", default_value = "commitlog")]
    cluster_name: String,

    /// Length of one Raft tick in milliseconds (heartbeats and elections count ticks).
    #[arg(long, env = "COMMITLOGD_RAFT_TICK_MS", default_value_t = 100)]
    raft_tick_ms: u64,

    /// Election timeout in ticks (randomized in [n, 2n)).
    #[arg(long, env = "COMMITLOGD_ELECTION_TICKS", default_value_t = 10)]
    election_ticks: u32,

    /// Leader heartbeat interval in ticks.
    #[arg(long, env = "COMMITLOGD_HEARTBEAT_TICKS", default_value_t = 1)]
    heartbeat_ticks: u32,

    /// Gossip probe interval in milliseconds; the other gossip timings scale with it.
    #[arg(long, env = "COMMITLOGD_GOSSIP_INTERVAL_MS", default_value_t = 1000)]
    gossip_interval_ms: u64,

    /// A produce not committed within this many milliseconds is answered TIMEOUT
    /// (it may or may not be written).
    #[arg(long, env = "COMMITLOGD_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    request_timeout_ms: u64,

    /// On shutdown, leave the cluster for good: the leader removes this node from
    /// the Raft configuration. Without it, SIGTERM is a restart (the node stays a
    /// member).
    #[arg(long, env = "COMMITLOGD_LEAVE_ON_SHUTDOWN")]
    leave_on_shutdown: bool,

    /// Rate at which a background thread re-reads sealed segments and checks every
    /// record's checksum, so latent disk damage is found before a read needs it
    /// (metrics `commitlog_scrub_*`). 0 turns it off.
    #[arg(long, env = "COMMITLOGD_SCRUB_BYTES_PER_SEC", default_value = "4MiB", value_parser = parse_bytes)]
    scrub_bytes_per_sec: u64,

    /// The catch-up throttle: bytes per second of already-committed entries each
    /// partition's leader sends to one follower that is behind (a wiped or new
    /// node catching up), so the catch-up leaves the leader's disk, CPU and network
    /// to its produces. Entries not yet committed are never held back, so it never
    /// slows a commit; a follower behind by more than this rate of new data does
    /// not catch up while it holds. 0 (the default): no limit. Example: 100MiB.
    #[arg(long, env = "COMMITLOGD_CATCH_UP_BYTES_PER_SEC", default_value = "0", value_parser = parse_bytes)]
    catch_up_bytes_per_sec: u64,

    /// How often the compactor runs a pass over each partition of a topic with
    /// cleanup policy `compact` (keep the newest record per key). 0 turns it off.
    #[arg(long, env = "COMMITLOGD_COMPACT_INTERVAL_MS", default_value_t = 30_000)]
    compact_interval_ms: u64,

    /// Most hosted partitions exported with their own metrics series
    /// (`commitlog_partition_*{topic,partition}`, `commitlog_topic_*{topic}`), which
    /// bounds the metrics' cardinality on nodes with many partitions. 0 turns the
    /// per-partition and per-topic series off (the hosted/led group counts stay).
    #[arg(
        long,
        env = "COMMITLOGD_METRICS_PARTITION_SERIES",
        default_value_t = 1000
    )]
    metrics_partition_series: usize,

    /// Log filter (error, warn, info, debug, trace, or env_logger syntax such as
    /// `commitlog=debug`). Default: RUST_LOG, else info.
    #[arg(long, env = "COMMITLOGD_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FsyncArg {
    /// fsync before acknowledging (crash-safe).
    Always,
    /// Acknowledge from the page cache: acknowledged records can be lost on power failure.
    Never,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 1048576, 64MiB, 512KiB, 1GiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit `{other}`; use KiB, MiB or GiB")),
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 7d, 12h, 30m, 45s, 500ms"))?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit `{other}`; use ms, s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Gossip address of --bootstrap / --join nodes when --gossip-listen is not set.
const DEFAULT_GOSSIP_LISTEN: &str = "127.0.0.1:8401";

fn main() -> ExitCode {
    // `make man`: the manual page from the flags below (hidden, not in --help).
    if std::env::args().nth(1).as_deref() == Some("--generate-man") {
        return generate_man(std::env::args_os().nth(2));
    }
    // `commitlogd repair --data-dir D …`: inspect or truncate a damaged log (storage::repair).
    if std::env::args().nth(1).as_deref() == Some("repair") {
        env_logger::Builder::new()
            .parse_filters("info")
            .format_timestamp_millis()
            .init();
        return ExitCode::from(commitlog::storage::repair::run_cli(
            std::env::args().skip(2),
        ));
    }
    let args = Args::parse();
    let filter = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    env_logger::Builder::new()
        .parse_filters(&filter)
        .format_timestamp_millis()
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            eprintln!("commitlogd: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A data directory `--dev` created and removes on clean exit.
struct DevDir(PathBuf);

impl DevDir {
    fn create() -> Result<DevDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("commitlogd-dev-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(DevDir(dir))
    }
}

impl Drop for DevDir {
    /// A start that fails (e.g. the port is taken) leaves no temporary directory
    /// behind; a clean exit has already removed it (and logged so).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings for the cluster (peer TLS, gossip key), loaded and validated at start so a
/// bad file fails now; the Raft-backed cluster work starts the peer connections and
/// the gossip driver with them.
#[derive(Debug)]
struct ClusterSecurity {
    peer_tls: Option<PeerTls>,
    gossip: GossipConfig,
}

/// Loads the TLS files, the ACL and the gossip key named by the flags.
fn load_security(args: &Args) -> Result<(Option<Security>, ClusterSecurity), String> {
    let peer_files = match (
        &args.peer_tls_cert_file,
        &args.peer_tls_key_file,
        &args.peer_tls_ca_file,
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        _ => None,
    };
    let peer_tls = match &peer_files {
        Some(files) => {
            let peer = tls::load_peer_tls(files).map_err(|e| e.to_string())?;
            log::info!(
                "peer TLS loaded (identity `{}`); used for outgoing node-to-node connections in cluster mode",
                peer.identity
            );
            Some(peer)
        }
        None => None,
    };
    let mut gossip = GossipConfig::default();
    if let Some(path) = &args.gossip_key_file {
        let key = commitlog::auth::keyfile::load_gossip_key(path).map_err(|e| e.to_string())?;
        gossip.secret_key = Some(key);
        log::info!(
            "gossip key loaded from {}; it seals gossip packets once this node runs gossip",
            path.display()
        );
    }
    let cluster = ClusterSecurity { peer_tls, gossip };

    let (Some(cert), Some(key), Some(ca)) = (
        &args.server_tls_cert_file,
        &args.server_tls_key_file,
        &args.server_tls_ca_file,
    ) else {
        return Ok((None, cluster));
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: ca.clone(),
    };
    let extra_cas: Vec<(&Path, &str)> = peer_files
        .iter()
        .map(|f| (f.ca.as_path(), "--peer-tls-ca-file"))
        .collect();
    let server_tls = tls::server_config(&files, &extra_cas).map_err(|e| e.to_string())?;
    let source = if args.acl_model_file.is_none() && args.acl_policy_file.is_none() {
        AclSource::Builtin
    } else {
        AclSource::Files {
            model: args.acl_model_file.clone(),
            policy: args.acl_policy_file.clone(),
        }
    };
    let authorizer = Authorizer::load(source).map_err(|e| e.to_string())?;
    log::info!(
        "TLS on: client certificates required (CA {}); ACL: {}{}",
        ca.display(),
        authorizer.source(),
        if args.allow_plaintext {
            "; plaintext connections allowed as `anonymous`"
        } else {
            ""
        }
    );
    Ok((
        Some(Security {
            tls: Some(server_tls),
            allow_plaintext: args.allow_plaintext,
            authorizer: Some(Arc::new(authorizer)),
        }),
        cluster,
    ))
}

fn run(args: Args) -> Result<(), String> {
    let (data_dir, dev_dir) = match (&args.data_dir, args.dev) {
        (Some(dir), _) => (dir.clone(), None),
        (None, true) => {
            let dev = DevDir::create()?;
            log::info!("dev mode: temporary data dir {}", dev.0.display());
            (dev.0.clone(), Some(dev))
        }
        (None, false) => {
            return Err(
                "--data-dir is required (or COMMITLOGD_DATA_DIR); for a throw-away node run \
                 `commitlogd --dev`"
                    .to_string(),
            )
        }
    };
    let served = run_node(args, data_dir);
    if let Some(dev) = dev_dir {
        // Also after a failed start (port taken): a throw-away dir never outlives us.
        match std::fs::remove_dir_all(&dev.0) {
            Ok(()) => log::info!("removed dev data dir {}", dev.0.display()),
            Err(e) => log::warn!("could not remove {}: {e}", dev.0.display()),
        }
    }
    served
}

/// How this process enters a cluster: alone (a one-voter cluster, the default),
/// as the first node of a new cluster, or by joining through gossip seeds.
fn start_mode(args: &Args) -> Result<StartMode, String> {
    if args.bootstrap {
        return Ok(StartMode::Bootstrap);
    }
    let mut seeds = Vec::new();
    for seed in args.join.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        seeds.push(resolve(seed).map_err(|e| format!("bad --join address: {e}"))?);
    }
    if seeds.is_empty() {
        Ok(StartMode::Single)
    } else {
        Ok(StartMode::Join(seeds))
    }
}

/// The gossip address: the flag, else 127.0.0.1:8401 for --bootstrap/--join, else a
/// free port on the listen IP (a single node needs gossip only once others join it).
fn gossip_listen(args: &Args, mode: &StartMode, listen: SocketAddr) -> Result<SocketAddr, String> {
    match (&args.gossip_listen, mode) {
        (Some(g), _) => resolve(g),
        (None, StartMode::Single) => Ok(SocketAddr::new(listen.ip(), 0)),
        (None, _) => resolve(DEFAULT_GOSSIP_LISTEN),
    }
}

/// Checks the security flags and loads their files (before anything is created).
fn node_security(args: &Args) -> Result<(Option<Security>, ClusterSecurity), String> {
    let (security, cluster) = load_security(args)?;
    if security.is_some() && cluster.peer_tls.is_none() && !args.dev {
        log::warn!(
            "TLS without --peer-tls-*: this node cannot dial peers, so it can run only as \
             a single node; others cannot join it"
        );
    }
    match (&security, &cluster.peer_tls) {
        (_, Some(p)) => log::info!("peer connections: TLS as `{}`", p.identity),
        (None, None) => log::info!("TLS off: plaintext clients and peers, ACL off"),
        (Some(_), None) => {}
    }
    Ok((security, cluster))
}

/// Every mode runs the same node: a single node is a one-voter Raft cluster.
fn run_node(args: Args, data_dir: PathBuf) -> Result<(), String> {
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mode = start_mode(&args)?;
    if args.fsync == FsyncArg::Never && mode != StartMode::Single {
        return Err(
            "--fsync never is only for a single node (benchmarks); a cluster \
                    acknowledges only what a majority has on disk"
                .to_string(),
        );
    }
    if args.fsync == FsyncArg::Never {
        log::warn!("--fsync never: acknowledged records can be lost on power failure");
    }
    let (security, cluster) = node_security(&args)?;
    if security.is_some() && cluster.peer_tls.is_none() && mode != StartMode::Single {
        return Err(
            "cluster mode with --server-tls-* also needs --peer-tls-cert-file, \
             --peer-tls-key-file and --peer-tls-ca-file: every node requires client \
             certificates, so without a peer certificate this node's peer connections \
             could not authenticate and the cluster could not form"
                .to_string(),
        );
    }
    let listen = resolve(&args.listen)?;
    let gossip_listen = gossip_listen(&args, &mode, listen)?;
    let max_frame_bytes = max_frame_bytes(&args)?;
    if args.election_ticks <= args.heartbeat_ticks || args.heartbeat_ticks == 0 {
        return Err("--election-ticks must be greater than --heartbeat-ticks (> 0)".into());
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}; is another server running there?"))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let metrics = start_metrics(&args)?;
    let mut cfg = node_config(&args, data_dir, local_addr, gossip_listen, mode);
    cfg.max_frame_bytes = max_frame_bytes;
    let headroom = commitlog::node::frame_headroom_bytes(max_frame_bytes as usize);
    cfg.read.max_fetch_bytes = max_frame_bytes
        .saturating_sub(u32::try_from(headroom).unwrap_or(u32::MAX))
        .max(512);
    cfg.peer_tls = cluster.peer_tls.map(|p| p.client);
    cfg.gossip_key = cluster.gossip.secret_key;
    cfg.metrics = metrics.as_ref().map(|(m, _)| Arc::clone(m));
    cfg.acl = security.as_ref().and_then(|s| s.authorizer.clone());
    let transfer_wait = Duration::from_millis(cfg.raft_tick_ms * u64::from(cfg.election_ticks) * 3)
        .clamp(Duration::from_millis(200), Duration::from_secs(10));
    // The port answers from now on: "starting" until the node has opened its log.
    let gate = Arc::new(Gate::new());
    let server_config = ServerConfig {
        max_frame_bytes,
        max_connections: args.max_connections.max(1),
        idle_timeout_ms: args.idle_timeout_ms.max(1),
        max_conn_buffer_bytes: usize::try_from(args.max_conn_buffer_bytes).unwrap_or(usize::MAX),
        max_buffered_bytes: usize::try_from(args.max_buffered_bytes).unwrap_or(usize::MAX),
        max_in_flight_per_conn: args.max_in_flight_per_conn.max(1),
        ..ServerConfig::default()
    };
    let mut server = Server::from_listener(
        listener,
        server_config,
        Arc::clone(&gate) as Arc<dyn Service>,
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    if let Some((m, _)) = &metrics {
        server = server.with_metrics(Arc::clone(m));
    }
    let authorizer = security.as_ref().and_then(|s| s.authorizer.clone());
    if let Some(security) = security {
        server = server.with_security(security);
    }
    let handle = server.handle();
    let started: Arc<OnceLock<Arc<Node>>> = Arc::new(OnceLock::new());
    {
        let (node, handle) = (Arc::clone(&started), handle.clone());
        let signal_metrics = metrics.as_ref().map(|(m, _)| Arc::clone(m));
        spawn_signal_thread(signals, authorizer, signal_metrics, move || {
            if let Some(node) = node.get() {
                node.prepare_shutdown(transfer_wait);
            }
            handle.shutdown();
        })?;
    }
    let starter = {
        let (started, handle) = (Arc::clone(&started), handle.clone());
        let metrics_addr = metrics.as_ref().map(|(_, a)| *a);
        let serving = metrics.as_ref().map(|(m, _)| Arc::clone(m));
        std::thread::Builder::new()
            .name("start".into())
            .spawn(move || -> Result<(), String> {
                let result = start_node(cfg, &gate, &started, &handle);
                let announced = result.and_then(|()| {
                    let node = started.get().ok_or("node missing after start")?;
                    announce(&args, node, local_addr, metrics_addr)
                });
                match &announced {
                    Ok(()) => {
                        if let Some(m) = serving {
                            m.set_serving(true);
                        }
                    }
                    Err(_) => handle.shutdown(),
                }
                announced
            })
            .map_err(|e| format!("cannot start the start-up thread: {e}"))?
    };
    let served = server.run();
    let start_result = starter
        .join()
        .unwrap_or_else(|_| Err("the start-up thread panicked".into()));
    let stopped = started.get().map(|node| (node.shutdown(), node.failed()));
    served.map_err(|e| format!("event loop failed: {e}"))?;
    start_result?;
    if let Some((stopped, failed)) = stopped {
        stopped?;
        if failed {
            return Err("the raft thread stopped after a fatal error (see above)".into());
        }
    }
    log::info!("node stopped");
    Ok(())
}

/// Opens the node (log, Raft state, threads) and opens the gate to it. A fail-stop
/// error later (raft thread) shuts the server down.
fn start_node(
    cfg: NodeConfig,
    gate: &Gate,
    started: &OnceLock<Arc<Node>>,
    handle: &commitlog::net::ServerHandle,
) -> Result<(), String> {
    let on_fatal = {
        let h = handle.clone();
        Box::new(move || h.shutdown())
    };
    let node = Arc::new(Node::start(cfg, on_fatal)?);
    node.wait_until_serving(Duration::from_secs(5));
    gate.open(node.service());
    if node.failed() {
        handle.shutdown();
    }
    let _ = started.set(node);
    Ok(())
}

/// The frame limit, checked.
fn max_frame_bytes(args: &Args) -> Result<u32, String> {
    u32::try_from(args.max_frame_bytes)
        .ok()
        .filter(|n| (4096..=commitlog::net::MAX_FRAME_BYTES_LIMIT).contains(n))
        .ok_or_else(|| {
            format!(
                "--max-frame-bytes must be between 4096 and {}",
                commitlog::net::MAX_FRAME_BYTES_LIMIT
            )
        })
}

/// The node settings the flags name (security and limits are filled in by the caller).
fn node_config(
    args: &Args,
    data_dir: PathBuf,
    rpc: SocketAddr,
    gossip: SocketAddr,
    mode: StartMode,
) -> NodeConfig {
    let mut cfg = NodeConfig::new(NodeId(args.node_id), data_dir, rpc, gossip, mode);
    cfg.node_name = args
        .node_name
        .clone()
        .unwrap_or_else(|| format!("node-{}", args.node_id));
    cfg.cluster_name = args.cluster_name.clone();
    cfg.raft_tick_ms = args.raft_tick_ms.max(1);
    cfg.election_ticks = args.election_ticks;
    cfg.heartbeat_ticks = args.heartbeat_ticks;
    cfg.gossip_interval_ms = args.gossip_interval_ms.max(1);
    cfg.request_timeout_ms = args.request_timeout_ms.max(1);
    cfg.log = LogConfig {
        max_store_bytes: args.segment_max_bytes,
        max_index_bytes: args.index_max_bytes,
        initial_offset: Offset(1),
        retention_bytes: args.retention_bytes,
        retention_age: args.retention_age,
        // The node locks its data dir once for every log in it.
        ..LogConfig::default()
    };
    cfg.retention_interval_ms =
        u64::try_from(args.retention_interval.as_millis()).unwrap_or(u64::MAX);
    cfg.read.threads = args.read_threads.max(1);
    cfg.leave_on_shutdown = args.leave_on_shutdown;
    cfg.scrub_bytes_per_sec = args.scrub_bytes_per_sec;
    cfg.catch_up_bytes_per_sec = args.catch_up_bytes_per_sec;
    cfg.compact_interval_ms = args.compact_interval_ms;
    cfg.metrics_partition_series = args.metrics_partition_series;
    cfg.fsync = match args.fsync {
        FsyncArg::Always => FsyncPolicy::Always,
        FsyncArg::Never => FsyncPolicy::Never,
    };
    cfg
}

/// Says where the node serves: log line, ready file, systemd.
fn announce(
    args: &Args,
    node: &Node,
    rpc: SocketAddr,
    metrics: Option<SocketAddr>,
) -> Result<(), String> {
    let gossip = node.gossip_addr();
    log::info!("listening on {rpc}, gossip on {gossip}");
    if let Some(path) = &args.ready_file {
        let mut text = format!("rpc={rpc}\ngossip={gossip}\n");
        if let Some(addr) = metrics {
            text.push_str(&format!("metrics={addr}\n"));
        }
        write_ready_text(path, &text)?;
    }
    commitlog::notify::ready_with_status(&format!("serving on {rpc}, gossip on {gossip}"));
    Ok(())
}

/// Starts the metrics/health HTTP server if `--metrics-addr` is set.
fn start_metrics(args: &Args) -> Result<Option<(Arc<Metrics>, SocketAddr)>, String> {
    let Some(addr) = args.metrics_addr else {
        return Ok(None);
    };
    let metrics = Arc::new(Metrics::new());
    let bound = commitlog::metrics::http::serve(addr, Arc::clone(&metrics)).map_err(|e| {
        format!("cannot serve metrics on {addr}: {e}; pick another --metrics-addr or free it")
    })?;
    log::info!("metrics on http://{bound}/metrics (also /healthz, /readyz)");
    Ok(Some((metrics, bound)))
}

fn write_ready_text(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write ready file {}: {e}", path.display()))
}

fn resolve(listen: &str) -> Result<SocketAddr, String> {
    listen
        .to_socket_addrs()
        .map_err(|e| format!("bad --listen `{listen}`: {e}; use host:port, e.g. 127.0.0.1:8400"))?
        .next()
        .ok_or_else(|| format!("--listen `{listen}` resolved to no address"))
}

/// The signal thread: SIGHUP reloads the ACL policy; the first SIGINT/SIGTERM tells
/// systemd and the metrics that the node is stopping, then runs `stop` once.
fn spawn_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    authorizer: Option<Arc<Authorizer>>,
    metrics: Option<Arc<commitlog::metrics::Metrics>>,
    stop: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("commitlogd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    match &authorizer {
                        Some(a) => match a.reload() {
                            Ok(()) => log::info!("SIGHUP: ACL policy reloaded"),
                            Err(e) => log::error!("SIGHUP: {e}; keeping the previous policy"),
                        },
                        None => log::info!("SIGHUP: no ACL to reload (TLS is off)"),
                    }
                    continue;
                }
                log::info!("received signal {signal}; shutting down");
                commitlog::notify::stopping();
                if let Some(m) = &metrics {
                    m.set_serving(false);
                }
                stop();
                break;
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

/// `commitlogd --generate-man DIR`: writes DIR/commitlogd.8 from the clap definitions.
fn generate_man(dir: Option<std::ffi::OsString>) -> ExitCode {
    let Some(dir) = dir else {
        eprintln!("commitlogd: --generate-man needs a directory");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(dir).join("commitlogd.8");
    let command = <Args as clap::CommandFactory>::command();
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(command)
        .section("8")
        .render(&mut page)
        .and_then(|()| std::fs::write(&path, page));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("commitlogd: writing {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5 fortnights").is_err());
    }
}
