//! `commitlogd`: the commitlog server. Flags and process lifecycle only; the work is
//! in `commitlog::net` (event loop), `commitlog::service` (single-node handler, the
//! default and `--dev`) and `commitlog::node` (cluster node: `--bootstrap` or
//! `--join`). In cluster mode the ready file holds two lines, `rpc=IP:PORT` and
//! `gossip=IP:PORT`; in single-node mode just the address.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use commitlog::auth::{AclSource, Authorizer};
use commitlog::gossip::GossipConfig;
use commitlog::metrics::Metrics;
use commitlog::net::tls::{self, PeerTls};
use commitlog::net::{Security, Server, ServerConfig, Service, TlsFiles};
use commitlog::node::{Node, NodeConfig, StartMode};
use commitlog::service::{FsyncPolicy, LogService, ServiceConfig};
use commitlog::storage::{Log, LogConfig};
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

    /// Stop reading from a connection while its unsent responses exceed this.
    #[arg(long, env = "COMMITLOGD_MAX_CONN_BUFFER_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    max_conn_buffer_bytes: u64,

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

    /// Gossip (UDP) address, host:port; port 0 picks a free port. Cluster mode only.
    #[arg(
        long,
        env = "COMMITLOGD_GOSSIP_LISTEN",
        default_value = "127.0.0.1:8401"
    )]
    gossip_listen: String,

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

fn main() -> ExitCode {
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
    if args.bootstrap || !args.join.is_empty() {
        return run_cluster(args);
    }
    // Installed first, so a SIGTERM during start-up is queued, not fatal: the signal
    // thread started below picks it up and shuts down as soon as the server exists.
    // SIGHUP reloads the ACL policy.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Certificates, keys and the ACL are checked before anything is created.
    let (security, cluster) = load_security(&args)?;
    if security.is_none() {
        log::info!("TLS off: plaintext only, no client identity, ACL off");
    }
    log::debug!(
        "cluster security (kept for the cluster work): peer TLS {}, gossip encryption {}",
        cluster
            .peer_tls
            .as_ref()
            .map_or("off".to_string(), |p| format!("as `{}`", p.identity)),
        if cluster.gossip.secret_key.is_some() {
            "on"
        } else {
            "off"
        }
    );
    let (data_dir, dev_dir) = match (&args.data_dir, args.dev) {
        (Some(dir), _) => (dir.clone(), None),
        (None, true) => {
            let dev = DevDir::create()?;
            log::info!("dev mode: temporary data dir {}", dev.0.display());
            (dev.0.clone(), Some(dev))
        }
        (None, false) => {
            return Err(
                "--data-dir is required (or COMMITLOGD_DATA_DIR); for a throw-away node run `commitlogd --dev`"
                    .to_string(),
            )
        }
    };
    let listen = resolve(&args.listen)?;
    let max_frame_bytes = u32::try_from(args.max_frame_bytes)
        .ok()
        .filter(|n| (1024..=commitlog::net::MAX_FRAME_BYTES_LIMIT).contains(n))
        .ok_or_else(|| {
            format!(
                "--max-frame-bytes must be between 1024 and {}",
                commitlog::net::MAX_FRAME_BYTES_LIMIT
            )
        })?;
    if args.fsync == FsyncArg::Never {
        log::warn!("--fsync never: acknowledged records can be lost on power failure");
    }

    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let log_config = LogConfig {
        max_store_bytes: args.segment_max_bytes,
        max_index_bytes: args.index_max_bytes,
        initial_offset: Offset(0),
        retention_bytes: args.retention_bytes,
        retention_age: args.retention_age,
    };
    let log = Arc::new(
        Log::open(&data_dir, log_config)
            .map_err(|e| format!("cannot open the log in {}: {e}", data_dir.display()))?,
    );
    log::info!(
        "log open in {}: offsets [{}, {})",
        data_dir.display(),
        log.first_offset(),
        log.next_offset()
    );

    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}; is another server running there?"))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    let metrics = start_metrics(&args)?.map(|(m, _)| m);
    let service_config = ServiceConfig {
        node_id: NodeId(args.node_id),
        node_name: args
            .node_name
            .clone()
            .unwrap_or_else(|| format!("node-{}", args.node_id)),
        advertise_addr: local_addr.to_string(),
        fsync: match args.fsync {
            FsyncArg::Always => FsyncPolicy::Always,
            FsyncArg::Never => FsyncPolicy::Never,
        },
        read_threads: args.read_threads.max(1),
        max_fetch_bytes: max_frame_bytes.saturating_sub(64 * 1024).max(512),
        retention_interval_ms: u64::try_from(args.retention_interval.as_millis())
            .unwrap_or(u64::MAX),
        metrics: metrics.clone(),
        ..ServiceConfig::default()
    };
    let service = LogService::start(Arc::clone(&log), service_config)
        .map_err(|e| format!("cannot start the service: {e}"))?;
    let server_config = ServerConfig {
        max_frame_bytes,
        max_connections: args.max_connections.max(1),
        idle_timeout_ms: args.idle_timeout_ms.max(1),
        max_conn_buffer_bytes: usize::try_from(args.max_conn_buffer_bytes).unwrap_or(usize::MAX),
        max_in_flight_per_conn: args.max_in_flight_per_conn.max(1),
        ..ServerConfig::default()
    };
    let mut server = Server::from_listener(
        listener,
        server_config,
        Arc::clone(&service) as Arc<dyn Service>,
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let authorizer = security.as_ref().and_then(|s| s.authorizer.clone());
    if let Some(security) = security {
        server = server.with_security(security);
    }
    if let Some(m) = &metrics {
        server = server.with_metrics(Arc::clone(m));
    }
    let signal_metrics = metrics.clone();

    let handle = server.handle();
    spawn_signal_thread(signals, authorizer, signal_metrics, move || {
        handle.shutdown()
    })?;

    log::info!("listening on {local_addr}");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &local_addr)?;
    }
    commitlog::notify::ready_with_status(&format!("serving on {local_addr}"));
    if let Some(m) = &metrics {
        m.set_serving(true);
    }
    let served = server.run();
    // The server (and its reference to the service) is gone; stop the service.
    let stopped = service.shutdown();
    drop(service);
    served.map_err(|e| format!("event loop failed: {e}"))?;
    stopped.map_err(|e| format!("final fsync failed: {e}"))?;
    match Arc::try_unwrap(log) {
        Ok(log) => log
            .close()
            .map_err(|e| format!("closing the log failed: {e}"))?,
        Err(_) => log::warn!("log still referenced at exit; it was synced but not closed"),
    }
    log::info!("log synced and closed");
    if let Some(dev) = dev_dir {
        match std::fs::remove_dir_all(&dev.0) {
            Ok(()) => log::info!("removed dev data dir {}", dev.0.display()),
            Err(e) => log::warn!("could not remove {}: {e}", dev.0.display()),
        }
    }
    Ok(())
}

/// Cluster mode (`--bootstrap` or `--join`): a Raft node (`commitlog::node`).
fn run_cluster(args: Args) -> Result<(), String> {
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let data_dir = args.data_dir.clone().ok_or_else(|| {
        "--data-dir is required in cluster mode (or COMMITLOGD_DATA_DIR)".to_string()
    })?;
    if args.fsync == FsyncArg::Never {
        return Err("--fsync never is not supported in cluster mode".to_string());
    }
    // Certificates, keys and the ACL are checked before anything is created. The
    // server side is the same as a single node's; outgoing peer connections use the
    // peer certificate.
    let (security, cluster) = load_security(&args)?;
    if security.is_some() && cluster.peer_tls.is_none() {
        return Err(
            "cluster mode with --server-tls-* also needs --peer-tls-cert-file, \
             --peer-tls-key-file and --peer-tls-ca-file: every node requires client \
             certificates, so without a peer certificate this node's peer connections \
             could not authenticate and the cluster could not form"
                .to_string(),
        );
    }
    match &cluster.peer_tls {
        Some(p) => log::info!("peer connections: TLS as `{}`", p.identity),
        None => log::info!("TLS off: plaintext clients and peers, ACL off"),
    }
    let gossip_key = match &args.gossip_key_file {
        Some(path) => {
            Some(commitlog::auth::keyfile::load_gossip_key(path).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let listen = resolve(&args.listen)?;
    let gossip_listen = resolve(&args.gossip_listen)?;
    let mut seeds = Vec::new();
    for seed in &args.join {
        let seed = seed.trim();
        if seed.is_empty() {
            continue;
        }
        seeds.push(resolve(seed).map_err(|e| format!("bad --join address: {e}"))?);
    }
    let max_frame_bytes = u32::try_from(args.max_frame_bytes)
        .ok()
        .filter(|n| (64 * 1024 + 1024..=commitlog::net::MAX_FRAME_BYTES_LIMIT).contains(n))
        .ok_or_else(|| {
            format!(
                "--max-frame-bytes must be between {} and {} in cluster mode",
                64 * 1024 + 1024,
                commitlog::net::MAX_FRAME_BYTES_LIMIT
            )
        })?;
    if args.election_ticks <= args.heartbeat_ticks || args.heartbeat_ticks == 0 {
        return Err("--election-ticks must be greater than --heartbeat-ticks (> 0)".into());
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}; is another server running there?"))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let mode = if args.bootstrap {
        StartMode::Bootstrap
    } else {
        StartMode::Join(seeds)
    };
    let mut cfg = NodeConfig::new(
        NodeId(args.node_id),
        data_dir,
        local_addr,
        gossip_listen,
        mode,
    );
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
    };
    cfg.retention_interval_ms =
        u64::try_from(args.retention_interval.as_millis()).unwrap_or(u64::MAX);
    cfg.read.threads = args.read_threads.max(1);
    cfg.read.max_fetch_bytes = max_frame_bytes.saturating_sub(64 * 1024).max(512);
    cfg.max_frame_bytes = max_frame_bytes;
    cfg.leave_on_shutdown = args.leave_on_shutdown;
    cfg.gossip_key = gossip_key;
    cfg.peer_tls = cluster.peer_tls.map(|p| p.client);
    let metrics = start_metrics(&args)?;
    cfg.metrics = metrics.as_ref().map(|(m, _)| Arc::clone(m));
    let transfer_wait = Duration::from_millis(cfg.raft_tick_ms * u64::from(cfg.election_ticks) * 3)
        .clamp(Duration::from_millis(200), Duration::from_secs(10));

    let fatal_handle: Arc<std::sync::Mutex<Option<commitlog::net::ServerHandle>>> =
        Arc::new(std::sync::Mutex::new(None));
    let on_fatal = {
        let h = Arc::clone(&fatal_handle);
        Box::new(move || {
            if let Some(h) = h.lock().ok().and_then(|g| g.clone()) {
                h.shutdown();
            }
        })
    };
    let node = Arc::new(Node::start(cfg, on_fatal)?);
    let server_config = ServerConfig {
        max_frame_bytes,
        max_connections: args.max_connections.max(1),
        idle_timeout_ms: args.idle_timeout_ms.max(1),
        max_conn_buffer_bytes: usize::try_from(args.max_conn_buffer_bytes).unwrap_or(usize::MAX),
        max_in_flight_per_conn: args.max_in_flight_per_conn.max(1),
        ..ServerConfig::default()
    };
    let mut server =
        Server::from_listener(listener, server_config, node.service() as Arc<dyn Service>)
            .map_err(|e| format!("cannot start the event loop: {e}"))?;
    if let Some((m, _)) = &metrics {
        server = server.with_metrics(Arc::clone(m));
    }
    let authorizer = security.as_ref().and_then(|s| s.authorizer.clone());
    if let Some(security) = security {
        server = server.with_security(security);
    }
    let handle = server.handle();
    if let Ok(mut g) = fatal_handle.lock() {
        *g = Some(handle.clone());
    }
    if node.failed() {
        // The raft thread failed before the handle was registered.
        handle.shutdown();
    }
    {
        let node = Arc::clone(&node);
        let signal_metrics = metrics.as_ref().map(|(m, _)| Arc::clone(m));
        spawn_signal_thread(signals, authorizer, signal_metrics, move || {
            node.prepare_shutdown(transfer_wait);
            handle.shutdown();
        })?;
    }
    log::info!(
        "listening on {local_addr}, gossip on {}",
        node.gossip_addr()
    );
    if let Some(path) = &args.ready_file {
        let mut text = format!("rpc={local_addr}\ngossip={}\n", node.gossip_addr());
        if let Some((_, addr)) = &metrics {
            text.push_str(&format!("metrics={addr}\n"));
        }
        write_ready_text(path, &text)?;
    }
    commitlog::notify::ready_with_status(&format!(
        "serving on {local_addr}, gossip on {}",
        node.gossip_addr()
    ));
    if let Some((m, _)) = &metrics {
        m.set_serving(true);
    }
    let served = server.run();
    let stopped = node.shutdown();
    let failed = node.failed();
    served.map_err(|e| format!("event loop failed: {e}"))?;
    stopped?;
    if failed {
        return Err("the raft thread stopped after a fatal error (see above)".into());
    }
    log::info!("node stopped");
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

fn write_ready_file(path: &Path, addr: &SocketAddr) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{addr}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write ready file {}: {e}", path.display()))
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
