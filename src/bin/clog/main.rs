//! `clog`: the commitlog command-line client (produce, consume, tail, topic,
//! servers, status, health, bench). Flags and output only; the protocol and the cluster
//! routing live in `commitlog::client` (`client::cluster::ClusterClient`).
//!
//! Modules: `commands` (produce, consume, tail), `topic` (topic administration),
//! `group` (consumer groups: `consume --group`, `group list|describe|reset|delete`),
//! `admin` (servers, status, health),
//! `format` (record output formats and input decodings), `bench`, `fail` (messages
//! and exit codes), `settings` (flags, environment, profile and defaults resolved
//! into one set of connection settings, and the member cache directory), `profile`
//! (named profiles in a TOML file).

mod admin;
mod bench;
mod commands;
mod fail;
mod format;
mod from;
mod group;
mod profile;
mod records;
mod settings;
mod topic;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::fail::{Failure, EXIT_CODES_HELP, EXIT_INTERRUPTED};

/// `-t`'s default: the topic every cluster has (and version-0 requests mean).
const DEFAULT_TOPIC_NAME: &str = commitlog::wire::DEFAULT_TOPIC;
pub(crate) use crate::settings::{connect, connect_first, Settings};

/// Command-line client for commitlog.
///
/// Examples:
///   clog produce hello world          # two records, prints their offsets
///   seq 1000 | clog produce           # one record per stdin line, sent in batches
///   clog consume                      # "offset TAB value" per line, from the start to the end
///   clog consume --follow             # ... then wait for new records (Ctrl-C to stop)
///   clog tail -f                      # last 10 records, then follow
///   clog topic create orders --partitions 3   # a topic of 3 partitions
///   clog produce -t orders -p 2 hello         # to partition 2 of topic orders
///   clog consume -t orders -p 2               # read it back
///   clog consume -t orders --group billing -n 5   # resume where `billing` stopped
///   clog group list                   # consumer groups (cursors kept by the cluster)
///   clog servers                      # the cluster's members and their roles
///   clog status                       # every member's term, commit, last index, lag
///   clog health --cluster             # exit 0 only when the whole cluster is healthy
///   clog --addr 127.0.0.1:8400,127.0.0.1:8401 produce x   # several seeds
///   clog bench --producers 16 --size 1024 --count 100000
///
/// Produces go to the leader, reads are spread over followers; NOT_LEADER, UNAVAILABLE
/// and connection errors are retried with back-off (see --retry-ms). The members
/// learned from a cluster are remembered (in $XDG_CACHE_HOME/clog, or $CLOG_CACHE_DIR)
/// and tried when the seeds do not answer. Connection settings can be kept in
/// named profiles (`clog profile --help`).
#[derive(Parser, Debug)]
#[command(name = "clog", version, verbatim_doc_comment, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// Seed server address(es), host:port, comma-separated [default: 127.0.0.1:8400].
    /// Any member of a cluster will do: the client discovers the others (GetServers).
    #[arg(long, global = true, env = "CLOG_ADDR")]
    pub(crate) addr: Option<String>,

    /// Give up on connecting or on a response after this many milliseconds (≥ 1)
    /// [default: 10000].
    #[arg(long, global = true, env = "CLOG_TIMEOUT_MS",
          value_parser = parse_timeout_ms)]
    pub(crate) timeout_ms: Option<u64>,

    /// Speak TLS, trusting the server certificate issued by this CA (PEM). The name
    /// checked is the host of --addr (an IP address or a DNS name).
    #[arg(long, global = true, env = "CLOG_CA")]
    pub(crate) ca: Option<std::path::PathBuf>,

    /// Client certificate (PEM) to present with --ca; its CN is your identity in the
    /// server's ACL. TLS servers require one.
    #[arg(long, global = true, env = "CLOG_CERT")]
    pub(crate) cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, global = true, env = "CLOG_KEY")]
    pub(crate) key: Option<std::path::PathBuf>,

    /// Keep retrying a request that failed for a transient reason (no leader, no
    /// quorum, a server down, a connection reset) for up to this many milliseconds,
    /// with exponential back-off; 0 disables retries [default: 15000]. Mistakes
    /// (unknown host, TLS certificate errors, permissions) are never retried.
    #[arg(long, global = true, env = "CLOG_RETRY_MS")]
    pub(crate) retry_ms: Option<u64>,

    /// Output: `text` (tables, `offset TAB value`) or `json` (one JSON object per
    /// record, member or problem, one per line).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputKind::Text)]
    pub(crate) output: OutputKind,

    /// Use this profile's settings (see `clog profile`) instead of the current one.
    /// Flags and their CLOG_* variables still win over a profile.
    #[arg(long, global = true, env = "CLOG_PROFILE")]
    pub(crate) profile: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputKind {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Append records: each argument is one record; without arguments, each line of
    /// stdin is one record (sent in batches). Prints each offset (arguments) or a
    /// summary (stdin); with -o json one object per offset (`topic`, `partition`,
    /// `offset`) or per partition written to (`first_offset`, `last_offset`,
    /// `records`).
    #[command(after_help = "\
Examples:
  clog produce hello world                   # two records; prints 2 offsets
  seq 100000 | clog produce                  # one record per line, in batches
  find . -print0 | clog produce -0           # NUL-separated records
  clog produce --value-file photo.jpg        # a whole file is one record
  echo 68690a | clog produce --input-format hex   # the record is \"hi\\n\"
  clog produce -t orders -p 2 hello          # to partition 2 of topic orders
  seq 100 | clog produce -t orders           # batches round-robin over its partitions
  clog produce -o json -t orders hi          # {\"offset\":2,\"partition\":0,\"topic\":\"orders\"}
  clog produce -t orders -k user-42 hi       # keyed: same key, same partition
  clog produce -H trace=abc -H src=web hi    # headers (repeatable, order kept)
  clog produce --timestamp 1796551200000 hi  # the producer's time (default: the leader's)
  printf 'u1:a\\nu2:b\\n' | clog produce -t orders --key-separator :   # KEY:VALUE lines")]
    Produce(ProduceArgs),
    /// Print records from an offset (default: from the start) to the end of the log:
    /// `offset<TAB>value` per line, flushed as records arrive. With --count N, stop
    /// after N records (waiting for new ones unless -e); with --follow, keep waiting.
    #[command(after_help = "\
Examples:
  clog consume                               # everything, then exit
  clog consume --from 42 --count 10          # 10 records from offset 42 (waits for them)
  clog consume --count 10 -e                 # at most 10, but stop at the end
  clog consume --follow                      # everything, then new records as they come
  clog consume -o json | jq .value           # one JSON object per record: topic, partition,
                                             # offset, size, value (value_base64 if not UTF-8)
  clog consume -f '%o: %v (%s bytes)\\n'      # kcat-style format
  clog consume -t orders -f '%t/%p %o %v\\n'  # with the topic and partition
  clog consume --values-only -0 | xargs -0 echo
  clog consume -t orders -p 2                # partition 2 of topic orders (default: 0)
  clog consume -t orders --group billing     # resume where group billing stopped,
                                             # committing as it goes (at-least-once)
  clog consume -t orders --group billing -n 5 --commit-interval-ms 200
  clog consume --print-key --print-timestamp # offset, timestamp ms, key, value
  clog consume --print-headers               # headers as name=value,... before the value
  clog consume -f '%o %T %k %h %v\\n'         # kcat-style: %k key, %T timestamp, %h headers
  clog consume -o json | jq '.key, .headers, .timestamp_ms'
  clog consume --from -100                   # the last 100 offsets
  clog consume --from @-10m --follow         # the last 10 minutes, then follow
  clog consume --from @2026-12-06T10:00:00Z  # from the first record at or after 10:00 UTC
  clog consume --from end --follow           # only records produced from now on")]
    Consume(ConsumeArgs),
    /// Print the last records; with -f keep printing new ones as they arrive.
    #[command(after_help = "\
Examples:
  clog tail                                  # the last 10 records
  clog tail -n 100 -f                        # the last 100, then follow (Ctrl-C to stop)
  clog tail -o json -n 1                     # the last record as JSON
  clog tail -t orders -p 1 -f                # partition 1 of topic orders
  clog tail --print-key --print-timestamp    # with each record's key and time
  clog tail --from @-1h -f                   # the last hour, then follow")]
    Tail(TailArgs),
    /// Create, list, describe, alter and delete topics.
    #[command(
        subcommand,
        after_help = "\
Examples:
  clog topic create orders --partitions 3 --replication-factor 3
  clog topic list
  clog topic describe orders
  clog topic alter orders --partitions 6 --retention-ms 604800000
  clog topic delete orders --yes"
    )]
    Topic(topic::TopicCommand),
    /// Consumer groups: named cursors the cluster keeps (list, describe, reset,
    /// delete); `clog consume --group` reads from and moves them.
    #[command(
        subcommand,
        after_help = "\
Examples:
  clog group list
  clog group describe billing
  clog group reset billing --topic orders --to start
  clog group delete billing"
    )]
    Group(group::GroupCommand),
    /// List the cluster's servers: id, name, address, role, live (gossip).
    #[command(after_help = "\
Examples:
  clog servers
  clog servers -o json | jq -r 'select(.role == \"leader\") | .address'")]
    Servers,
    /// Ask every server for its own Raft view: role, term, commit index, last and
    /// first index, and each follower's lag behind the leader's last index. Exit code
    /// 3 when a member does not answer.
    #[command(after_help = "\
Examples:
  clog status
  clog status -o json")]
    Status,
    /// Check one server (the first --addr): it answers and knows a leader; with
    /// --cluster, every member (quorum, one leader, lag under --max-lag). Exit code
    /// 0 only when healthy; one line per problem otherwise (exit code 3).
    #[command(after_help = "\
Examples:
  clog health                                # the node at --addr
  clog health --cluster --max-lag 1000       # the whole cluster
  clog health --cluster -o json              # one JSON object per member and problem")]
    Health(HealthArgs),
    /// Measure produce throughput and latency (or consume throughput with
    /// --consume) and print a RESULT line like peerbench. Transient errors (a leader
    /// change) are retried within --retry-ms and counted.
    #[command(after_help = "\
Examples:
  clog bench --producers 16 --window 8 --size 1024 --count 100000
  clog bench --consume                       # read everything back
  clog bench --topics 4 --partitions 3 --count 120000   # 12 partitions, one producer each
  clog bench --topics 4 --consume            # read them back, one reader per partition
  clog bench -t orders -p 1 --consume        # one partition of orders
  clog bench -t orders --producers 6         # every partition of orders
  clog bench --handshakes 1000 --ca ca.pem --cert c.pem --key k.pem")]
    Bench(bench::BenchArgs),
    /// Named connection profiles (addresses, TLS files, timeouts) in
    /// $XDG_CONFIG_HOME/clog/profiles.toml, as `rpk profile` and `nats context`.
    #[command(
        subcommand,
        after_help = "\
Examples:
  clog profile create prod --addr 10.0.0.1:8400,10.0.0.2:8400 --ca ca.pem --cert me.pem --key me-key.pem
  clog profile create local --addr 127.0.0.1:8400
  clog profile use prod                      # from now on
  clog --profile local produce x             # once (or CLOG_PROFILE=local)
  clog profile list
  clog profile delete local"
    )]
    Profile(profile::ProfileCommand),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = "\
Examples:
  clog completions bash > ~/.local/share/bash-completion/completions/clog
  clog completions zsh > \"${fpath[1]}/_clog\"
  clog completions fish > ~/.config/fish/completions/clog.fish")]
    Completions { shell: clap_complete::Shell },
    /// Write the manual page clog.1 into DIR (used by `make man`).
    #[command(hide = true)]
    GenerateMan { dir: std::path::PathBuf },
}

#[derive(ClapArgs, Debug)]
pub(crate) struct ProduceArgs {
    /// Record values. Without any (and without --value-file), stdin is read.
    pub(crate) values: Vec<String>,
    /// Topic to write to (`clog topic list` shows them).
    #[arg(short = 't', long, default_value = DEFAULT_TOPIC_NAME)]
    pub(crate) topic: String,
    /// Partition to write to. Without it, a topic with several partitions gets
    /// each request (argument, file or stdin batch) on the next partition in turn
    /// (round-robin), and each offset is printed as `partition<TAB>offset`.
    #[arg(short = 'p', long)]
    pub(crate) partition: Option<u32>,
    /// A file whose whole content is one record (repeatable).
    #[arg(long, value_name = "PATH")]
    pub(crate) value_file: Vec<std::path::PathBuf>,
    /// Records per batch when reading stdin (at most 16384, the server's limit).
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: usize,
    /// What separates records on stdin (escapes \n, \t, \r, \0, \\ allowed)
    /// [default: a newline; a CR before it is dropped].
    #[arg(long, short = 'd', conflicts_with = "null")]
    pub(crate) delimiter: Option<String>,
    /// Records on stdin are separated by NUL bytes (as `find -print0`).
    #[arg(short = '0', long)]
    pub(crate) null: bool,
    /// How each value (argument, file or stdin record) is written: raw bytes, hex or
    /// base64 (standard alphabet, padding optional).
    #[arg(long, value_enum, default_value_t = format::InputFormat::Raw)]
    pub(crate) input_format: format::InputFormat,
    /// The key of every record (`--key` is the TLS key). Records with the same key
    /// go to the same partition of the topic, unless -p says which.
    #[arg(
        short = 'k',
        long,
        value_name = "KEY",
        conflicts_with = "key_separator"
    )]
    pub(crate) record_key: Option<String>,
    /// Each record (argument or stdin line) is KEY<SEP>VALUE, split at the first
    /// SEP (escapes \n, \t, \0, \\ allowed); a record without SEP is an error.
    #[arg(long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// A header NAME=VALUE on every record (repeatable; order kept, names may repeat).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    pub(crate) headers: Vec<String>,
    /// The records' timestamp, ms since the Unix epoch [default: set by the
    /// partition's leader when it appends them].
    #[arg(long, value_name = "MS")]
    pub(crate) timestamp: Option<i64>,
    /// Produce without idempotence: a retried batch may then be stored twice.
    /// By default each batch carries a producer id and sequence, and the partition
    /// answers a retry of a written batch with its original offsets.
    #[arg(long)]
    pub(crate) no_idempotence: bool,
}

/// Output options shared by `consume` and `tail`.
#[derive(ClapArgs, Debug)]
pub(crate) struct RecordOutput {
    /// Print values only (raw bytes), each followed by a newline (NUL with -0).
    #[arg(long, conflicts_with = "format")]
    pub(crate) values_only: bool,
    /// End each record with NUL instead of a newline (default and --values-only).
    #[arg(short = '0', long)]
    pub(crate) null: bool,
    /// Text output: print each record's key after its offset (escaped; `null`
    /// when it has none).
    #[arg(long, conflicts_with = "values_only")]
    pub(crate) print_key: bool,
    /// Text output: print each record's timestamp (ms since the Unix epoch; -1
    /// when unknown) after its offset.
    #[arg(long, conflicts_with = "values_only")]
    pub(crate) print_timestamp: bool,
    /// Text output: print each record's headers (`name=value,...`; `-` for none)
    /// before its value.
    #[arg(long, conflicts_with = "values_only")]
    pub(crate) print_headers: bool,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct ConsumeArgs {
    /// Topic to read (`clog topic list` shows them).
    #[arg(short = 't', long, default_value = DEFAULT_TOPIC_NAME)]
    pub(crate) topic: String,
    /// Partition to read [default: 0]. One partition is read per run: to read
    /// every partition of a topic, run one consume per partition.
    #[arg(short = 'p', long)]
    pub(crate) partition: Option<u32>,
    /// Where to start: start (the first record still held; also 0), end (only new
    /// records), -N (the last N offsets), N (offset N), @TIME (the first record at or
    /// after an RFC 3339 time, e.g. @2026-12-06T10:00:00Z or @2026-12-06T11:00:00+01:00)
    /// or @-DURATION (e.g. @-10m; units s, m, h, d). With --group, only where the
    /// group has no cursor yet.
    #[arg(long, default_value = "start", value_parser = from::parse_from, allow_hyphen_values = true)]
    pub(crate) from: from::StartAt,
    /// Stop after this many records, waiting for new ones if needed (unless -e).
    #[arg(short = 'n', long)]
    pub(crate) count: Option<u64>,
    /// Read as consumer group G: start at G's cursor on the partition (where it
    /// stopped), and commit the position after the last record printed every
    /// --commit-interval-ms and on exit (Ctrl-C, --count reached, end of the log).
    #[arg(short = 'g', long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// With --group: commit at most this often, in milliseconds.
    #[arg(long, default_value_t = 1000, requires = "group")]
    pub(crate) commit_interval_ms: u64,
    /// After the end, keep waiting for and printing new records (Ctrl-C to stop).
    #[arg(long, conflicts_with = "exit_at_end")]
    pub(crate) follow: bool,
    /// Exit at the end of the log even if --count records were not read yet (kcat -e).
    #[arg(short = 'e', long)]
    pub(crate) exit_at_end: bool,
    /// Print each record with this format (kcat style): %o offset, %v value (raw),
    /// %s value size in bytes, %t topic, %p partition, %k key (raw), %T timestamp
    /// (ms), %h headers (name=value,...), %% a percent sign; \n, \t, \0 and \\
    /// escapes. No newline is added.
    #[arg(short = 'f', long)]
    pub(crate) format: Option<String>,
    #[command(flatten)]
    pub(crate) output: RecordOutput,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct TailArgs {
    /// Topic to read (`clog topic list` shows them).
    #[arg(short = 't', long, default_value = DEFAULT_TOPIC_NAME)]
    pub(crate) topic: String,
    /// Partition to read [default: 0] (one partition per run).
    #[arg(short = 'p', long)]
    pub(crate) partition: Option<u32>,
    /// Keep waiting for and printing new records (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// How many of the last records to print first.
    #[arg(short = 'n', long, default_value_t = 10, conflicts_with = "from")]
    pub(crate) lines: u64,
    /// Print from here to the end instead of the last -n records (then follow with
    /// -f): start, end, -N, an offset, @TIME or @-DURATION, as `consume --from`.
    #[arg(long, value_parser = from::parse_from, allow_hyphen_values = true)]
    pub(crate) from: Option<from::StartAt>,
    /// Record format as `consume -f` (here -f is --follow, as in tail -f).
    #[arg(long)]
    pub(crate) format: Option<String>,
    #[command(flatten)]
    pub(crate) output: RecordOutput,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct HealthArgs {
    /// Check every member of the cluster instead of one server.
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Largest lag (entries behind the leader's last index) a healthy follower may
    /// have (with --cluster).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) max_lag: u64,
}

/// `--timeout-ms`: at least 1 (0 would fail every request at once).
fn parse_timeout_ms(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err(
            "0 would time out every request at once; give at least 1 (milliseconds), e.g. 10000"
                .into(),
        ),
        Ok(ms) => Ok(ms),
        Err(e) => Err(format!("{e}; give a number of milliseconds, e.g. 10000")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit_130_on_ctrl_c();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("clog: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Ctrl-C ends clog with exit code 130 (what a shell reports for SIGINT), after the
/// records printed so far: output is flushed record batch by record batch.
fn exit_130_on_ctrl_c() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]) else {
        return; // the default action (termination by SIGINT) remains
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            // A `consume --group` stops where it printed (at-least-once).
            group::commit_on_interrupt();
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = dispatch(cli, &mut out);
    let flushed = out.flush();
    let writing = |e: io::Error| Failure::new(fail::EXIT_OTHER, format!("writing output: {e}"));
    match (result, flushed) {
        // `clog consume | head`: the reader went away; that is not an error.
        (Err(Output::Io(e)), _) | (Ok(()), Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        (Err(Output::Io(e)), _) | (Ok(()), Err(e)) => Err(writing(e)),
        (Err(Output::Fail(f)), _) => Err(f),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn dispatch(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let settings = match &cli.command {
        // Commands that do not talk to a server.
        Command::Profile(cmd) => return profile::run(cli, cmd, out),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "clog", out);
            return Ok(());
        }
        Command::GenerateMan { dir } => return generate_man(dir),
        _ => Settings::resolve(cli)?,
    };
    match &cli.command {
        Command::Produce(args) => commands::produce(&settings, args, out),
        Command::Consume(args) => commands::consume(&settings, args, out),
        Command::Tail(args) => commands::tail(&settings, args, out),
        Command::Topic(cmd) => topic::run(&settings, cmd, out),
        Command::Group(cmd) => group::run(&settings, cmd, out),
        Command::Servers => admin::servers(&settings, out),
        Command::Status => admin::status(&settings, out),
        Command::Health(args) => admin::health(&settings, args, out),
        Command::Bench(args) => bench::bench(&settings, args, out),
        Command::Profile(_) | Command::Completions { .. } | Command::GenerateMan { .. } => Ok(()),
    }
}

/// `clog generate-man DIR`: clog.1 from the clap definitions.
fn generate_man(dir: &std::path::Path) -> Result<(), Output> {
    let path = dir.join("clog.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    std::fs::write(&path, page)
        .map_err(|e| Failure::new(fail::EXIT_OTHER, format!("writing {}: {e}", path.display())))?;
    Ok(())
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
