//! `clog`: the commitlog command-line client (produce, consume, tail, servers,
//! status, health, bench). Flags and output only; the protocol and the cluster
//! routing live in `commitlog::client` (`client::cluster::ClusterClient`).

mod bench;
mod commands;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use commitlog::client::cluster::PerTarget;
use commitlog::client::cluster::{ClusterClient, ClusterConfig, RetryPolicy};
use commitlog::client::tls::{client_config as client_config_tls, host_of, ClientTls};
use commitlog::client::{Client, ClientConfig, ClientError};
use commitlog::wire::ErrorCode;

/// Command-line client for commitlog.
///
/// Examples:
///   clog produce hello world          # two records, prints their offsets
///   seq 1000 | clog produce           # one record per stdin line, sent in batches
///   clog consume --from 0 --count 10  # "offset TAB value" per line
///   clog tail -f                      # last 10 records, then follow
///   clog servers                      # the cluster's members and their roles
///   clog status                       # every member's term, commit, last index, lag
///   clog --addr 127.0.0.1:8400,127.0.0.1:8401 produce x   # several seeds
///   clog bench --producers 16 --size 1024 --count 100000
///
/// Produces go to the leader, reads are spread over followers; NOT_LEADER, UNAVAILABLE
/// and connection errors are retried with back-off (see --retry-ms).
#[derive(Parser, Debug)]
#[command(name = "clog", version, verbatim_doc_comment)]
pub(crate) struct Cli {
    /// Seed server address(es), host:port, comma-separated. Any member of a cluster
    /// will do: the client discovers the others (GetServers).
    #[arg(
        long,
        global = true,
        env = "CLOG_ADDR",
        default_value = "127.0.0.1:8400"
    )]
    pub(crate) addr: String,

    /// Give up on connecting or on a response after this many milliseconds.
    #[arg(long, global = true, env = "CLOG_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,

    /// Speak TLS, trusting the server certificate issued by this CA (PEM). The name
    /// checked is the host of --addr (an IP address or a DNS name).
    #[arg(long, global = true, env = "CLOG_CA")]
    pub(crate) ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) to present with --ca; its CN is your identity in the
    /// server's ACL. TLS servers require one.
    #[arg(long, global = true, env = "CLOG_CERT", requires_all = ["ca", "key"])]
    pub(crate) cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, global = true, env = "CLOG_KEY", requires_all = ["ca", "cert"])]
    pub(crate) key: Option<std::path::PathBuf>,

    /// Keep retrying a request that failed for a transient reason (no leader, no
    /// quorum, a server down) for up to this many milliseconds, with exponential
    /// back-off. 0 disables retries.
    #[arg(long, global = true, env = "CLOG_RETRY_MS", default_value_t = 15_000)]
    pub(crate) retry_ms: u64,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append records: each argument is one record; without arguments, each line of
    /// stdin is one record (sent in batches). Prints each offset (arguments) or a
    /// summary (stdin).
    Produce(ProduceArgs),
    /// Print records from an offset: `offset<TAB>value` per line (or values only).
    Consume(ConsumeArgs),
    /// Print the last records; with -f keep printing new ones as they arrive.
    Tail(TailArgs),
    /// List the cluster's servers: id, name, address, role, live (gossip).
    Servers,
    /// Ask every server for its own Raft view: role, term, commit index, last and
    /// first index, and each follower's lag behind the leader's last index.
    Status,
    /// Check that one server (the first --addr) answers; prints its status. Exit code
    /// 0 when healthy.
    Health,
    /// Measure produce throughput and latency (or consume throughput with
    /// --consume) and print a RESULT line like peerbench.
    Bench(BenchArgs),
}

#[derive(ClapArgs, Debug)]
pub(crate) struct ProduceArgs {
    /// Record values. Without any, stdin lines are produced.
    pub(crate) values: Vec<String>,
    /// Records per batch when reading stdin.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: usize,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct ConsumeArgs {
    /// First offset to read.
    #[arg(long, default_value_t = 0)]
    pub(crate) from: u64,
    /// Stop after this many records, waiting for new ones if needed (default: print
    /// everything up to the current end, then exit).
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Print values only, without the offset column.
    #[arg(long)]
    pub(crate) values_only: bool,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct TailArgs {
    /// Keep waiting for and printing new records (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// How many of the last records to print first.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub(crate) lines: u64,
    /// Print values only, without the offset column.
    #[arg(long)]
    pub(crate) values_only: bool,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct BenchArgs {
    /// Read everything from offset 0 with big fetches instead of producing (W4), from
    /// one follower (the leader if there is none).
    #[arg(long)]
    pub(crate) consume: bool,
    /// Producer connections to the leader (one thread each).
    #[arg(long, default_value_t = 1)]
    pub(crate) producers: usize,
    /// Produces each producer keeps in flight (1 = synchronous).
    #[arg(long, default_value_t = 1)]
    pub(crate) window: usize,
    /// Record size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Records in total (produce), or to read (consume; default: all up to the end).
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// First offset to read with --consume (e.g. skip W1's records to read only
    /// the W2+W3 stream).
    #[arg(long, default_value_t = 0)]
    pub(crate) from: u64,
    /// Fetch size in bytes for --consume (two fetches are kept in flight; 512 KiB
    /// measured fastest on a 2-core machine: 2.2-2.5 GB/s vs 1.8-2.1 at 1 MiB and
    /// 1.4-1.7 at 4 MiB).
    #[arg(long, default_value_t = 512 << 10)]
    pub(crate) max_bytes: u32,
    /// Stop after this many seconds even if not done.
    #[arg(long, default_value_t = 90)]
    pub(crate) max_secs: u64,
    /// Free-form label echoed in the RESULT line (e.g. W1).
    #[arg(long, default_value = "-")]
    pub(crate) label: String,
    /// Instead of producing, open this many connections one after another (each
    /// connect + TLS handshake when --ca is given + Ping) and report connections/s.
    #[arg(long)]
    pub(crate) handshakes: Option<u64>,
    /// Print progress (records done / total, current records/s) to stderr about once
    /// a second. On by default when stderr is a terminal.
    #[arg(long)]
    pub(crate) progress: bool,
}

/// An error for the user: what happened and what to do next.
pub(crate) struct Failure(String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure(format!("{e}"))
    }
}

pub(crate) fn explain(addr: &str, e: ClientError) -> Failure {
    let hint = match &e {
        ClientError::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            format!("is commitlogd running at {addr}? start one with `commitlogd --dev`, or point --addr / CLOG_ADDR at it")
        }
        ClientError::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
            "TLS failed: check --ca (the CA of the server's certificate), --cert and --key (a client certificate the server's CA issued, not expired), and that --addr's host is in the server certificate".to_string()
        }
        ClientError::Io(_) => format!("check that {addr} is a commitlogd server and retry"),
        ClientError::Timeout => {
            "the server did not answer in time; check it is healthy (`clog health`) or raise --timeout-ms".to_string()
        }
        ClientError::Server { code, .. } => match code {
            ErrorCode::OffsetOutOfRange => "use an offset inside the range above".to_string(),
            ErrorCode::FrameTooLarge => "send smaller records or batches".to_string(),
            ErrorCode::Unauthenticated => {
                "this server requires TLS: pass --ca, --cert and --key (or CLOG_CA, CLOG_CERT, CLOG_KEY)".to_string()
            }
            ErrorCode::PermissionDenied => "do not retry; see the message above".to_string(),
            c if c.is_retriable() => "retry in a moment".to_string(),
            _ => "see the server log for details".to_string(),
        },
        ClientError::Protocol(_) => format!("is {addr} really a commitlogd server? versions may differ"),
    };
    Failure(format!("{e} ({hint})"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("clog: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Client options from the flags: timeout and, with --ca, TLS (the name checked is
/// the host of the first seed; other members are checked against their own host).
pub(crate) fn client_config(cli: &Cli) -> Result<ClientConfig, Failure> {
    let mut config = ClientConfig {
        timeout: Duration::from_millis(cli.timeout_ms),
        ..ClientConfig::default()
    };
    if let Some(ca) = &cli.ca {
        let cert_key = match (&cli.cert, &cli.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        let rustls_config = client_config_tls(ca, cert_key).map_err(|e| Failure(e.to_string()))?;
        let tls = ClientTls::for_host(rustls_config, host_of(first_seed(cli)))
            .map_err(|e| Failure(e.to_string()))?;
        config.tls = Some(tls);
    }
    Ok(config)
}

/// The first address of --addr.
pub(crate) fn first_seed(cli: &Cli) -> &str {
    cli.addr.split(',').next().unwrap_or("").trim()
}

/// A cluster client over the seeds in --addr, with --timeout-ms, --retry-ms and TLS.
pub(crate) fn connect(cli: &Cli) -> Result<ClusterClient, Failure> {
    let retry = if cli.retry_ms == 0 {
        RetryPolicy::none()
    } else {
        RetryPolicy {
            max_total: Duration::from_millis(cli.retry_ms),
            ..RetryPolicy::default()
        }
    };
    let mut config = ClusterConfig::new(&cli.addr)
        .timeout(Duration::from_millis(cli.timeout_ms))
        .retry(retry);
    config.client = client_config(cli)?;
    if config.client.tls.is_some() {
        config.per_target = Some(PerTarget::new(|addr, options| {
            if let Some(tls) = &mut options.tls {
                if let Ok(for_addr) = ClientTls::for_host(tls.config.clone(), host_of(addr)) {
                    *tls = for_addr;
                }
            }
        }));
    }
    ClusterClient::connect(config).map_err(|e| explain(&cli.addr, e))
}

/// A plain connection to the first seed (for `health`, which checks one server).
pub(crate) fn connect_first(cli: &Cli) -> Result<Client, Failure> {
    let first = first_seed(cli);
    Client::connect_with(first, client_config(cli)?).map_err(|e| explain(first, e))
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match &cli.command {
        Command::Produce(args) => commands::produce(cli, args, &mut out),
        Command::Consume(args) => commands::consume(cli, args, &mut out),
        Command::Tail(args) => commands::tail(cli, args, &mut out),
        Command::Servers => commands::servers(cli, &mut out),
        Command::Status => commands::status(cli, &mut out),
        Command::Health => commands::health(cli, &mut out),
        Command::Bench(args) => bench::bench(cli, args, &mut out),
    };
    let flushed = out.flush();
    match (result, flushed) {
        // `clog consume | head`: the reader went away; that is not an error.
        (Err(Output::Io(e)), _) | (Ok(()), Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        (Err(Output::Io(e)), _) => Err(Failure(format!("writing output: {e}"))),
        (Err(Output::Fail(f)), _) => Err(f),
        (Ok(()), Err(e)) => Err(Failure(format!("writing output: {e}"))),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Output errors (broken pipe is quiet) versus real failures.
pub(crate) enum Output {
    Io(io::Error),
    Fail(Failure),
}

impl From<io::Error> for Output {
    fn from(e: io::Error) -> Output {
        Output::Io(e)
    }
}

impl From<Failure> for Output {
    fn from(f: Failure) -> Output {
        Output::Fail(f)
    }
}

pub(crate) type Out<'a> = io::BufWriter<io::StdoutLock<'a>>;
