//! `clog`: the commitlog command-line client (produce, consume, tail, servers,
//! status, health, bench). Flags and output only; the protocol and the cluster
//! routing live in `commitlog::client` (`client::cluster::ClusterClient`).

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Parser, Subcommand};

use commitlog::client::cluster::PerTarget;
use commitlog::client::cluster::{report, ClusterClient, ClusterConfig, RetryPolicy};
use commitlog::client::histogram::Histogram;
use commitlog::client::tls::{client_config as client_config_tls, host_of, ClientTls};
use commitlog::client::{Client, ClientConfig, ClientError, Pipeline, Record};
use commitlog::types::Offset;
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
struct Cli {
    /// Seed server address(es), host:port, comma-separated. Any member of a cluster
    /// will do: the client discovers the others (GetServers).
    #[arg(
        long,
        global = true,
        env = "CLOG_ADDR",
        default_value = "127.0.0.1:8400"
    )]
    addr: String,

    /// Give up on connecting or on a response after this many milliseconds.
    #[arg(long, global = true, env = "CLOG_TIMEOUT_MS", default_value_t = 10_000)]
    timeout_ms: u64,

    /// Speak TLS, trusting the server certificate issued by this CA (PEM). The name
    /// checked is the host of --addr (an IP address or a DNS name).
    #[arg(long, global = true, env = "CLOG_CA")]
    ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) to present with --ca; its CN is your identity in the
    /// server's ACL. TLS servers require one.
    #[arg(long, global = true, env = "CLOG_CERT", requires_all = ["ca", "key"])]
    cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, global = true, env = "CLOG_KEY", requires_all = ["ca", "cert"])]
    key: Option<std::path::PathBuf>,

    /// Keep retrying a request that failed for a transient reason (no leader, no
    /// quorum, a server down) for up to this many milliseconds, with exponential
    /// back-off. 0 disables retries.
    #[arg(long, global = true, env = "CLOG_RETRY_MS", default_value_t = 15_000)]
    retry_ms: u64,

    #[command(subcommand)]
    command: Command,
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
struct ProduceArgs {
    /// Record values. Without any, stdin lines are produced.
    values: Vec<String>,
    /// Records per batch when reading stdin.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

#[derive(ClapArgs, Debug)]
struct ConsumeArgs {
    /// First offset to read.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Stop after this many records, waiting for new ones if needed (default: print
    /// everything up to the current end, then exit).
    #[arg(long)]
    count: Option<u64>,
    /// Print values only, without the offset column.
    #[arg(long)]
    values_only: bool,
}

#[derive(ClapArgs, Debug)]
struct TailArgs {
    /// Keep waiting for and printing new records (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    follow: bool,
    /// How many of the last records to print first.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: u64,
    /// Print values only, without the offset column.
    #[arg(long)]
    values_only: bool,
}

#[derive(ClapArgs, Debug)]
struct BenchArgs {
    /// Read everything from offset 0 with big fetches instead of producing (W4), from
    /// one follower (the leader if there is none).
    #[arg(long)]
    consume: bool,
    /// Producer connections to the leader (one thread each).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Produces each producer keeps in flight (1 = synchronous).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Record size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Records in total (produce), or to read (consume; default: all up to the end).
    #[arg(long)]
    count: Option<u64>,
    /// First offset to read with --consume (e.g. skip W1's records to read only
    /// the W2+W3 stream).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Fetch size in bytes for --consume (two fetches are kept in flight; 512 KiB
    /// measured fastest on a 2-core machine: 2.2-2.5 GB/s vs 1.8-2.1 at 1 MiB and
    /// 1.4-1.7 at 4 MiB).
    #[arg(long, default_value_t = 512 << 10)]
    max_bytes: u32,
    /// Stop after this many seconds even if not done.
    #[arg(long, default_value_t = 90)]
    max_secs: u64,
    /// Free-form label echoed in the RESULT line (e.g. W1).
    #[arg(long, default_value = "-")]
    label: String,
    /// Instead of producing, open this many connections one after another (each
    /// connect + TLS handshake when --ca is given + Ping) and report connections/s.
    #[arg(long)]
    handshakes: Option<u64>,
    /// Print progress (records done / total, current records/s) to stderr about once
    /// a second. On by default when stderr is a terminal.
    #[arg(long)]
    progress: bool,
}

/// Live progress of a bench on stderr, printed by a helper thread about once a second.
struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts printing if `--progress` was given or stderr is a terminal.
    fn start(forced: bool, total: Option<u64>) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let enabled = forced || io::stderr().is_terminal();
        let thread = enabled.then(|| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut last = (Instant::now(), 0u64);
                // Ends when the bench stops it (the bench itself is bounded by --max-secs).
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let now = (Instant::now(), done.load(Ordering::Relaxed));
                    let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-9);
                    let rate = now.1.saturating_sub(last.1) as f64 / secs;
                    let total = total.map_or("?".to_string(), |t| t.to_string());
                    eprintln!("bench: {}/{total} records, {rate:.0} records/s", now.1);
                    last = now;
                }
            })
        });
        Progress { done, stop, thread }
    }

    /// A counter the workers add finished records to.
    fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }

    /// Stops the printing (also on drop, so early error returns stop it too).
    fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error for the user: what happened and what to do next.
struct Failure(String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure(format!("{e}"))
    }
}

fn explain(addr: &str, e: ClientError) -> Failure {
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
fn client_config(cli: &Cli) -> Result<ClientConfig, Failure> {
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
fn first_seed(cli: &Cli) -> &str {
    cli.addr.split(',').next().unwrap_or("").trim()
}

/// A cluster client over the seeds in --addr, with --timeout-ms, --retry-ms and TLS.
fn connect(cli: &Cli) -> Result<ClusterClient, Failure> {
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
fn connect_first(cli: &Cli) -> Result<Client, Failure> {
    let first = first_seed(cli);
    Client::connect_with(first, client_config(cli)?).map_err(|e| explain(first, e))
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match &cli.command {
        Command::Produce(args) => produce(cli, args, &mut out),
        Command::Consume(args) => consume(cli, args, &mut out),
        Command::Tail(args) => tail(cli, args, &mut out),
        Command::Servers => servers(cli, &mut out),
        Command::Status => status(cli, &mut out),
        Command::Health => health(cli, &mut out),
        Command::Bench(args) => bench(cli, args, &mut out),
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
enum Output {
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

type Out<'a> = io::BufWriter<io::StdoutLock<'a>>;

fn produce(cli: &Cli, args: &ProduceArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    if !args.values.is_empty() {
        for value in &args.values {
            let offset = client
                .produce(value.as_bytes())
                .map_err(|e| explain(&cli.addr, e))?;
            writeln!(out, "{offset}")?;
        }
        return Ok(());
    }
    let batch_max = args.batch.clamp(1, 100_000);
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut batch: Vec<String> = Vec::with_capacity(batch_max);
    let mut batch_bytes = 0usize;
    let (mut produced, mut first, mut last) = (0u64, None::<Offset>, None::<Offset>);
    loop {
        let line = lines
            .next()
            .transpose()
            .map_err(|e| Failure(format!("reading stdin: {e}")))?;
        let end = line.is_none();
        if let Some(mut line) = line {
            if line.ends_with('\r') {
                line.pop(); // CRLF input
            }
            batch_bytes += line.len();
            batch.push(line);
        }
        if !batch.is_empty() && (end || batch.len() >= batch_max || batch_bytes >= 1 << 20) {
            let values: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
            let offset = client
                .produce_batch(&values)
                .map_err(|e| explain(&cli.addr, e))?;
            produced += values.len() as u64;
            first.get_or_insert(offset);
            last = Some(Offset(offset.0 + values.len() as u64 - 1));
            batch.clear();
            batch_bytes = 0;
        }
        if end {
            break;
        }
    }
    match (first, last) {
        (Some(f), Some(l)) => writeln!(out, "produced {produced} records at offsets {f}..={l}")?,
        _ => writeln!(out, "produced 0 records (stdin was empty)")?,
    }
    Ok(())
}

fn print_record(
    out: &mut Out<'_>,
    offset: Offset,
    value: &[u8],
    values_only: bool,
) -> io::Result<()> {
    if !values_only {
        write!(out, "{offset}\t")?;
    }
    out.write_all(value)?;
    out.write_all(b"\n")
}

fn consume(cli: &Cli, args: &ConsumeArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let mut next = Offset(args.from);
    let mut printed = 0u64;
    let want = args.count.unwrap_or(u64::MAX);
    // Bounded: each fetch returns at least one record or we stop at the end.
    while printed < want {
        let wait_ms = if args.count.is_some() { 1000 } else { 0 };
        let fetched = client
            .fetch(next, 1 << 20, wait_ms)
            .map_err(|e| explain(&cli.addr, e))?;
        if fetched.records.is_empty() {
            if args.count.is_none() || next >= fetched.high_watermark && wait_ms == 0 {
                break;
            }
            continue;
        }
        for record in fetched.records {
            if printed >= want {
                break;
            }
            print_record(out, record.offset, &record.value, args.values_only)?;
            next = Offset(record.offset.0 + 1);
            printed += 1;
        }
    }
    Ok(())
}

/// How much further back than `-n` offsets `tail` starts: offsets held by internal
/// Raft entries (no-ops, configuration changes) carry no record.
const TAIL_SLACK_OFFSETS: u64 = 64;

fn tail(cli: &Cli, args: &TailArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let first = client
        .leader_status()
        .map_err(|e| explain(&cli.addr, e))?
        .first_index;
    // The high-water mark (exclusive end) as a reader sees it.
    let end = client
        .fetch(first, 1, 0)
        .map_err(|e| explain(&cli.addr, e))?
        .high_watermark;
    let lines = usize::try_from(args.lines.min(1_000_000)).unwrap_or(1_000_000);
    let mut next = Offset(
        end.0
            .saturating_sub(args.lines.saturating_add(TAIL_SLACK_OFFSETS))
            .max(first.0),
    );
    // Keep only the last `lines` records seen up to the end (bounded memory).
    let mut last: VecDeque<Record> = VecDeque::with_capacity(lines.min(4096));
    // Bounded: every fetch returns records (advancing `next`) or we stop.
    while next < end && lines > 0 {
        let fetched = client
            .fetch(next, 1 << 20, 0)
            .map_err(|e| explain(&cli.addr, e))?;
        if fetched.records.is_empty() {
            break;
        }
        for record in fetched.records {
            next = Offset(record.offset.0 + 1);
            if last.len() == lines {
                last.pop_front();
            }
            last.push_back(record);
        }
    }
    for record in &last {
        print_record(out, record.offset, &record.value, args.values_only)?;
    }
    if lines == 0 {
        next = end;
    }
    if !args.follow {
        return Ok(());
    }
    // Follow: long-poll for new records until interrupted.
    loop {
        out.flush()?;
        let fetched = client
            .fetch(next, 1 << 20, 5_000)
            .map_err(|e| explain(&cli.addr, e))?;
        for record in &fetched.records {
            print_record(out, record.offset, &record.value, args.values_only)?;
            next = Offset(record.offset.0 + 1);
        }
    }
}

fn servers(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let members = client.servers().map_err(|e| explain(&cli.addr, e))?;
    out.write_all(report::servers_table(&members).as_bytes())?;
    Ok(())
}

fn status(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let rows = client.status_all().map_err(|e| explain(&cli.addr, e))?;
    out.write_all(report::status_table(&rows).as_bytes())?;
    Ok(())
}

fn health(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let started = Instant::now();
    let mut client = connect_first(cli)?;
    client.ping().map_err(|e| explain(&cli.addr, e))?;
    let rtt_us = started.elapsed().as_micros();
    let s = client.status().map_err(|e| explain(&cli.addr, e))?;
    writeln!(
        out,
        "ok {} at {}: role={} term={} commit={} first={} last={} (connect+ping {rtt_us} us)",
        s.node_name, cli.addr, s.role, s.term, s.commit_index, s.first_index, s.last_index
    )?;
    Ok(())
}

struct ProducerReport {
    acked: u64,
    histogram: Histogram,
    error: Option<String>,
}

fn bench(cli: &Cli, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    if args.consume {
        return bench_consume(cli, args, out);
    }
    if let Some(n) = args.handshakes {
        return bench_handshakes(cli, n, args, out);
    }
    let producers = args.producers.clamp(1, 1024);
    let total = args.count.unwrap_or(20_000);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let barrier = Arc::new(Barrier::new(producers + 1));
    let progress = Progress::start(args.progress, Some(total));
    let mut handles = Vec::new();
    let mut cluster = connect(cli)?;
    for p in 0..producers {
        // Split the count as evenly as possible.
        let share = total / producers as u64 + u64::from((p as u64) < total % producers as u64);
        let mut client = cluster
            .leader_connection()
            .map_err(|e| explain(&cli.addr, e))?;
        let barrier = Arc::clone(&barrier);
        let done = progress.counter();
        let size = args.size;
        let window = args.window.clamp(1, 65_536);
        handles.push(std::thread::spawn(move || {
            let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let mut report = ProducerReport {
                acked: 0,
                histogram: Histogram::new(),
                error: None,
            };
            barrier.wait();
            let mut pipeline = Pipeline::new(&mut client, window);
            let record = |ack: commitlog::client::Ack, report: &mut ProducerReport| match ack.result
            {
                Ok(_) => {
                    report.acked += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    report.histogram.record(ack.latency.as_micros() as u64);
                }
                Err(e) => {
                    report.error.get_or_insert_with(|| e.to_string());
                }
            };
            for _ in 0..share {
                if Instant::now() >= deadline {
                    break;
                }
                match pipeline.produce(&value) {
                    Ok(Some(ack)) => record(ack, &mut report),
                    Ok(None) => {}
                    Err(e) => {
                        report.error = Some(e.to_string());
                        return report;
                    }
                }
            }
            match pipeline.drain() {
                Ok(acks) => acks.into_iter().for_each(|ack| record(ack, &mut report)),
                Err(e) => report.error = Some(e.to_string()),
            }
            report
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let mut histogram = Histogram::new();
    let mut acked = 0u64;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(report) => {
                acked += report.acked;
                histogram.merge(&report.histogram);
                if first_error.is_none() {
                    first_error = report.error;
                }
            }
            Err(_) => first_error = Some("a producer thread panicked".to_string()),
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = acked as f64 / secs;
    let mbps = acked as f64 * args.size as f64 / secs / 1e6;
    let (p50, p99, p999, max) = (
        histogram.quantile(0.5),
        histogram.quantile(0.99),
        histogram.quantile(0.999),
        histogram.max(),
    );
    writeln!(
        out,
        "produce: {acked} records of {} B in {secs:.3} s with {producers} producer(s) x window {}: {rps:.0} records/s, {mbps:.2} MB/s, latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us",
        args.size, args.window
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tProduce\t{}\t{acked}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t{p50}\t{p99}\t{p999}\t{max}",
        args.label
    )?;
    if let Some(e) = first_error {
        return Err(Failure(format!("{e} (some produces failed; see the server log)")).into());
    }
    Ok(())
}

/// Sequential connect (+ TLS handshake) + Ping, `n` times: connection set-up cost.
fn bench_handshakes(cli: &Cli, n: u64, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let config = client_config(cli)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let mut histogram = Histogram::new();
    let started = Instant::now();
    let mut done = 0u64;
    // Bounded by n and the deadline.
    while done < n && Instant::now() < deadline {
        let t0 = Instant::now();
        let mut client = Client::connect_with(cli.addr.as_str(), config.clone())
            .map_err(|e| explain(&cli.addr, e))?;
        client.ping().map_err(|e| explain(&cli.addr, e))?;
        histogram.record(t0.elapsed().as_micros() as u64);
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    let (p50, p99, max) = (
        histogram.quantile(0.5),
        histogram.quantile(0.99),
        histogram.max(),
    );
    let kind = if cli.ca.is_some() { "TLS" } else { "plaintext" };
    writeln!(
        out,
        "handshakes: {done} {kind} connections (connect+handshake+ping) in {secs:.3} s: {rate:.0}/s, p50 {p50} us, p99 {p99} us, max {max} us"
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tHandshake\t{}\t{done}\t{secs:.3}\t{rate:.0}\t0\t{p50}\t{p99}\t0\t{max}",
        args.label
    )?;
    Ok(())
}

fn bench_consume(cli: &Cli, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    // One connection to one read target (a follower when there is one).
    let mut client = connect(cli)?
        .read_connection()
        .map_err(|e| explain(&cli.addr, e))?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let mut next = Offset(args.from);
    let mut records = 0u64;
    let mut bytes = 0u64;
    let want = args.count;
    let progress = Progress::start(args.progress, want);
    let progress_done = progress.counter();
    // Two fetches in flight: while one response is read here, the server prepares
    // the next one, which starts where this one is predicted to end (the previous
    // response's record count further on). A wrong guess costs only a round trip:
    // records already counted are skipped, and a response that starts past `next`
    // (it would leave a hole) is dropped and the fetch sent again from `next`.
    let mut in_flight: VecDeque<(u32, Offset)> = VecDeque::new();
    let mut ahead = next; // start of the latest fetch sent
    let mut per_fetch = 0u64;
    let mut high_watermark: Option<Offset> = None;
    let fail = |e| -> Output { explain(&cli.addr, e).into() };
    // Bounded by the deadline and by reaching the end.
    while Instant::now() < deadline {
        if in_flight.is_empty() {
            let id = client.send_fetch(next, args.max_bytes, 0).map_err(fail)?;
            in_flight.push_back((id, next));
            ahead = next;
        }
        let guess = Offset(ahead.0 + per_fetch);
        let room = want.is_none_or(|n| records + per_fetch < n);
        if in_flight.len() < 2
            && per_fetch > 0
            && room
            && high_watermark.is_some_and(|hw| guess < hw)
        {
            let id = client.send_fetch(guess, args.max_bytes, 0).map_err(fail)?;
            in_flight.push_back((id, guess));
            ahead = guess;
        }
        let Some((id, from)) = in_flight.pop_front() else {
            break;
        };
        let usable = from <= next;
        // Records are looked at in place in the response frame (no copies).
        let mut got = 0u64;
        let fetched = client.recv_fetch_with(id, 0, |record| {
            if usable && record.offset >= next {
                got += 1;
                bytes += record.value.len() as u64;
                next = Offset(record.offset.0 + 1);
            }
        });
        let count = match fetched {
            Ok((hw, count)) => {
                high_watermark = Some(hw);
                count
            }
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) && records == 0 => {
                // The log's start was removed by retention: begin at the first offset.
                let status = client.status().map_err(fail)?;
                if status.first_index <= next {
                    return Err(fail(e));
                }
                next = status.first_index;
                continue;
            }
            Err(_) if !usable => continue, // a guess past the end; `next` is re-sent
            Err(e) => return Err(fail(e)),
        };
        if !usable {
            continue;
        }
        records += got;
        progress_done.store(records, Ordering::Relaxed);
        per_fetch = count;
        let done = match want {
            Some(n) => records >= n,
            None => high_watermark.is_some_and(|hw| next >= hw),
        };
        if done || count == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    progress.finish();
    writeln!(
        out,
        "consume: {records} records ({bytes} B) in {secs:.3} s: {rps:.0} records/s, {mbps:.2} MB/s"
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tConsume\t{}\t{records}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t0\t0\t0\t0",
        args.label
    )?;
    Ok(())
}
