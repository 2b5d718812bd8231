//! `clog bench`: produce throughput and latency, consume throughput, handshakes/s.
//!
//! Produces go to one topic partition per producer: `-t/-p`, every partition of
//! `-t` (one producer at least for each), or with `--topics N --partitions M` the
//! topics `bench-0`..`bench-<N-1>` (created if missing). Each producer keeps its own
//! connection to its partition's leader; the result has the aggregate and one line
//! per partition.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

use commitlog::client::cluster::{
    classify, Backoff, ClusterClient, ClusterConfig, Jitter, Next, RetryPolicy,
};
use commitlog::client::histogram::Histogram;
use commitlog::client::{Ack, Client, ClientError, Pipeline};
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, TopicPartition, TopicSettings, DEFAULT_TOPIC};

use crate::fail::{explain, Failure};
use crate::{connect, Out, Output, Settings};

#[derive(ClapArgs, Debug)]
pub(crate) struct BenchArgs {
    /// Read everything from offset 0 with big fetches instead of producing (W4), from
    /// one follower (the leader if there is none).
    #[arg(long)]
    consume: bool,
    /// Producer connections to the leader (one thread each); at least one per
    /// partition produced to.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Topic to produce to (--consume reads the default topic only).
    #[arg(short = 't', long, default_value = DEFAULT_TOPIC)]
    topic: String,
    /// Partition of --topic to produce to [default: all of them, spread over the
    /// producers].
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    /// Produce to this many topics named bench-0, bench-1, ... (created if missing,
    /// with --partitions each, replicated on every voter) instead of --topic.
    #[arg(long, conflicts_with_all = ["partition", "consume", "handshakes"])]
    topics: Option<u32>,
    /// Partitions of each topic --topics creates.
    #[arg(long, default_value_t = 1, requires = "topics")]
    partitions: u32,
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

/// The retry budget of a stream of operations (a producer, the consumer): a
/// transient failure is retried with back-off until --retry-ms passes without
/// progress; mistakes (permissions, TLS, bad addresses) are not retried.
struct Retrier {
    policy: RetryPolicy,
    backoff: Backoff,
    failing_since: Option<Instant>,
    jitter: Jitter,
    retries: u64,
}

impl Retrier {
    fn new(policy: RetryPolicy, seed: u64) -> Retrier {
        Retrier {
            backoff: Backoff::new(policy.clone()),
            policy,
            failing_since: None,
            jitter: Jitter::new(seed ^ u64::from(std::process::id())),
            retries: 0,
        }
    }

    /// Something succeeded: the next failure starts a fresh budget.
    fn progress(&mut self) {
        if self.failing_since.take().is_some() {
            self.backoff = Backoff::new(self.policy.clone());
        }
    }

    /// After a failure: waits and returns `Ok` if it should be retried, else the error.
    fn retry(&mut self, e: ClientError) -> Result<(), ClientError> {
        if classify(&e, true) == Next::Fail {
            return Err(e);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        match self
            .backoff
            .next_delay(since.elapsed(), self.jitter.next_u64())
        {
            Some(wait) => {
                log::debug!("bench: retrying after {e} in {wait:?}");
                std::thread::sleep(wait);
                self.retries += 1;
                Ok(())
            }
            None => Err(e),
        }
    }
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

#[derive(Default)]
struct ProducerReport {
    target: Option<TopicPartition>,
    acked: u64,
    histogram: Histogram,
    error: Option<String>,
    retries: u64,
}

/// What one producer thread needs.
struct Producer {
    target: TopicPartition,
    config: ClusterConfig,
    retry: RetryPolicy,
    share: u64,
    window: usize,
    value: Vec<u8>,
    deadline: Instant,
    done: Arc<AtomicU64>,
}

pub(crate) fn bench(s: &Settings, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    if args.consume {
        return bench_consume(s, args, out);
    }
    if let Some(n) = args.handshakes {
        return bench_handshakes(s, n, args, out);
    }
    let mut cluster = connect(s)?;
    let targets = bench_targets(s, args, &mut cluster)?;
    let producers = args.producers.max(targets.len()).clamp(1, 1024);
    let total = args.count.unwrap_or(20_000);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let barrier = Arc::new(Barrier::new(producers + 1));
    let progress = Progress::start(args.progress, Some(total));
    let mut handles = Vec::new();
    let config = s.cluster_config()?;
    for p in 0..producers {
        // Split the count as evenly as possible.
        let share = total / producers as u64 + u64::from((p as u64) < total % producers as u64);
        let target = targets[p % targets.len()].clone();
        let first = cluster
            .partition_connection(&target)
            .map_err(|e| explain(&s.addr, e))?;
        let barrier = Arc::clone(&barrier);
        let producer = Producer {
            target,
            config: config.clone(),
            retry: s.retry_policy(),
            share,
            window: args.window.clamp(1, 65_536),
            value: (0..args.size).map(|i| b'a' + (i % 26) as u8).collect(),
            deadline,
            done: progress.counter(),
        };
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            producer.run(first, p as u64)
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let (total_report, per_partition) = join_producers(handles);
    progress.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    print_produce_result(out, args, producers, started, &total_report)?;
    if per_partition.len() > 1 || per_partition.keys().any(|t| !t.is_default()) {
        for (target, acked) in &per_partition {
            let rps = *acked as f64 / secs;
            writeln!(
                out,
                "partition {target}: {acked} records, {rps:.0} records/s"
            )?;
        }
    }
    if let Some(e) = total_report.error {
        return Err(Failure::new(
            crate::fail::EXIT_UNAVAILABLE,
            format!(
                "{e} (some produces failed after {} retries within --retry-ms; see the server log)",
                total_report.retries
            ),
        )
        .into());
    }
    Ok(())
}

/// Waits for every producer: their merged report, and the records acknowledged per
/// partition.
fn join_producers(
    handles: Vec<std::thread::JoinHandle<ProducerReport>>,
) -> (ProducerReport, BTreeMap<TopicPartition, u64>) {
    let mut total = ProducerReport::default();
    let mut per_partition: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for handle in handles {
        match handle.join() {
            Ok(report) => {
                if let Some(target) = &report.target {
                    *per_partition.entry(target.clone()).or_default() += report.acked;
                }
                total.acked += report.acked;
                total.retries += report.retries;
                total.histogram.merge(&report.histogram);
                if total.error.is_none() {
                    total.error = report.error;
                }
            }
            Err(_) => total.error = Some("a producer thread panicked".to_string()),
        }
    }
    (total, per_partition)
}

fn print_produce_result(
    out: &mut Out<'_>,
    args: &BenchArgs,
    producers: usize,
    started: Instant,
    report: &ProducerReport,
) -> io::Result<()> {
    let acked = report.acked;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = acked as f64 / secs;
    let mbps = acked as f64 * args.size as f64 / secs / 1e6;
    let h = &report.histogram;
    let (p50, p99, p999, max) = (
        h.quantile(0.5),
        h.quantile(0.99),
        h.quantile(0.999),
        h.max(),
    );
    writeln!(
        out,
        "produce: {acked} records of {} B in {secs:.3} s with {producers} producer(s) x window {}: {rps:.0} records/s, {mbps:.2} MB/s, latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us, {} retries",
        args.size, args.window, report.retries
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tProduce\t{}\t{acked}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t{p50}\t{p99}\t{p999}\t{max}",
        args.label
    )
}

impl Producer {
    /// Produces this producer's share, reconnecting to the (new) leader after
    /// transient failures. Records whose acknowledgement was lost are produced again
    /// (at-least-once); only acknowledged records are counted.
    fn run(self, first: Client, seed: u64) -> ProducerReport {
        let mut report = ProducerReport {
            target: Some(self.target.clone()),
            ..ProducerReport::default()
        };
        let mut retrier = Retrier::new(self.retry.clone(), seed);
        let mut conn = Some(first);
        let mut cluster: Option<ClusterClient> = None;
        // Bounded by the share, the deadline and the retry budget.
        while report.acked < self.share && Instant::now() < self.deadline {
            let result = match conn.take() {
                Some(mut c) => self.session(&mut c, &mut report, &mut retrier),
                None => self.reconnect(&mut cluster).map(|c| conn = Some(c)),
            };
            if let Err(e) = result {
                if let Err(e) = retrier.retry(e) {
                    report.error = Some(e.to_string());
                    break;
                }
            }
        }
        report.retries = retrier.retries;
        report
    }

    /// A new connection to the partition's leader as the cluster now sees it.
    fn reconnect(&self, cluster: &mut Option<ClusterClient>) -> Result<Client, ClientError> {
        let cluster = match cluster {
            Some(c) => c,
            None => cluster.insert(ClusterClient::connect(self.config.clone())?),
        };
        cluster.forget_topic(&self.target.topic);
        cluster.partition_connection(&self.target)
    }

    /// Produces on `conn` until the share is done, the deadline passes, or an error
    /// (the connection is then dropped with whatever was in flight).
    fn session(
        &self,
        conn: &mut Client,
        report: &mut ProducerReport,
        retrier: &mut Retrier,
    ) -> Result<(), ClientError> {
        let todo = self.share - report.acked;
        let mut pipeline = Pipeline::to_target(conn, self.window, self.target.clone());
        let mut sent = 0u64;
        while sent < todo && Instant::now() < self.deadline {
            if let Some(ack) = pipeline.produce(&self.value)? {
                self.count(ack, report, retrier)?;
            }
            sent += 1;
        }
        for ack in pipeline.drain()? {
            self.count(ack, report, retrier)?;
        }
        Ok(())
    }

    fn count(
        &self,
        ack: Ack,
        report: &mut ProducerReport,
        retrier: &mut Retrier,
    ) -> Result<(), ClientError> {
        ack.result?;
        report.acked += 1;
        self.done.fetch_add(1, Ordering::Relaxed);
        report.histogram.record(ack.latency.as_micros() as u64);
        retrier.progress();
        Ok(())
    }
}

/// The partitions the producers write to (see the module doc); `--topics` creates
/// the missing `bench-<i>` topics.
fn bench_targets(
    s: &Settings,
    args: &BenchArgs,
    cluster: &mut ClusterClient,
) -> Result<Vec<TopicPartition>, Failure> {
    let fail = |e| explain(&s.addr, e);
    let Some(topics) = args.topics else {
        let partitions = match (args.partition, args.topic.as_str()) {
            (Some(p), _) => vec![p],
            (None, DEFAULT_TOPIC) => vec![0],
            (None, topic) => (0..cluster.partition_count(topic).map_err(fail)?).collect(),
        };
        let targets: Vec<TopicPartition> = partitions
            .into_iter()
            .map(|p| TopicPartition::new(args.topic.as_str(), p))
            .collect();
        return Ok(targets);
    };
    let mut targets = Vec::new();
    for i in 0..topics.clamp(1, 1024) {
        let name = format!("bench-{i}");
        let partitions = match cluster.partition_count(&name) {
            Ok(n) => n,
            Err(e) if e.code() == Some(ErrorCode::UnknownTopic) => {
                let settings = TopicSettings {
                    partitions: args.partitions.max(1),
                    replication: 0,
                    ..TopicSettings::default()
                };
                cluster
                    .create_topic(&name, settings)
                    .map_err(fail)?
                    .settings
                    .partitions
            }
            Err(e) => return Err(fail(e)),
        };
        targets.extend((0..partitions).map(|p| TopicPartition::new(name.as_str(), p)));
    }
    Ok(targets)
}

/// Sequential connect (+ TLS handshake) + Ping, `n` times: connection set-up cost.
fn bench_handshakes(
    s: &Settings,
    n: u64,
    args: &BenchArgs,
    out: &mut Out<'_>,
) -> Result<(), Output> {
    let config = s.client_config()?;
    let mut retrier = Retrier::new(s.retry_policy(), 1);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let mut histogram = Histogram::new();
    let started = Instant::now();
    let mut done = 0u64;
    // Bounded by n and the deadline.
    while done < n && Instant::now() < deadline {
        let t0 = Instant::now();
        let attempt =
            Client::connect_with(s.first_seed(), config.clone()).and_then(|mut c| c.ping());
        if let Err(e) = attempt {
            retrier.retry(e).map_err(|e| explain(&s.addr, e))?;
            continue;
        }
        retrier.progress();
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
    let kind = if s.ca.is_some() { "TLS" } else { "plaintext" };
    writeln!(
        out,
        "handshakes: {done} {kind} connections (connect+handshake+ping) in {secs:.3} s: {rate:.0}/s, p50 {p50} us, p99 {p99} us, max {max} us, {} retries",
        retrier.retries
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tHandshake\t{}\t{done}\t{secs:.3}\t{rate:.0}\t0\t{p50}\t{p99}\t0\t{max}",
        args.label
    )?;
    Ok(())
}

fn bench_consume(s: &Settings, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    if args.topic != DEFAULT_TOPIC || args.partition.is_some_and(|p| p != 0) {
        return Err(Failure::usage(
            "bench --consume reads the default topic only for now; drop -t/-p",
        )
        .into());
    }
    let mut cluster = connect(s)?;
    let mut retrier = Retrier::new(s.retry_policy(), 2);
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    // One connection to one read target (a follower when there is one).
    let client = read_connection(&mut cluster, &mut retrier).map_err(fail)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let want = args.count;
    let progress = Progress::start(args.progress, want);
    let progress_done = progress.counter();
    let mut reader = Reader {
        client,
        next: Offset(args.from),
        records: 0,
        bytes: 0,
        in_flight: VecDeque::new(),
        ahead: Offset(args.from),
        per_fetch: 0,
        high_watermark: None,
    };
    // Bounded by the deadline, by reaching the end, and by the retry budget.
    while Instant::now() < deadline {
        let step = reader
            .send(args.max_bytes, want)
            .and_then(|()| reader.receive(want));
        match step {
            Ok(done) => {
                retrier.progress();
                progress_done.store(reader.records, Ordering::Relaxed);
                if done {
                    break;
                }
            }
            Err(e) => {
                reader.client = recover(e, &mut cluster, &mut retrier).map_err(fail)?;
                (reader.in_flight, reader.per_fetch) = (VecDeque::new(), 0);
            }
        }
    }
    progress.finish();
    let counts = (reader.records, reader.bytes);
    print_consume_result(out, args, started, counts, retrier.retries)?;
    Ok(())
}

/// The reading state of `bench --consume`. Two fetches are kept in flight: while
/// one response is read here, the server prepares the next one, which starts where
/// this one is predicted to end (the previous response's record count further on).
/// A wrong guess costs only a round trip: records already counted are skipped, and a
/// response that starts past `next` (it would leave a hole) is dropped and the fetch
/// sent again from `next`.
struct Reader {
    client: Client,
    next: Offset,
    records: u64,
    bytes: u64,
    in_flight: VecDeque<(u32, Offset)>,
    /// Start of the latest fetch sent.
    ahead: Offset,
    per_fetch: u64,
    high_watermark: Option<Offset>,
}

impl Reader {
    /// Sends the fetch from `next` unless one in flight starts at or before it (a
    /// chain of guesses that ran ahead of `next` is abandoned, not followed: each of
    /// its answers would be dropped), and the predicted next one.
    fn send(&mut self, max_bytes: u32, want: Option<u64>) -> Result<(), ClientError> {
        let covered = self.in_flight.iter().any(|&(_, from)| from <= self.next);
        if !covered && self.in_flight.len() < 2 {
            let id = self.client.send_fetch(self.next, max_bytes, 0)?;
            self.in_flight.push_back((id, self.next));
            self.ahead = self.next;
        }
        let guess = Offset(self.ahead.0 + self.per_fetch);
        let room = want.is_none_or(|n| self.records + self.per_fetch < n);
        let below_end = self.high_watermark.is_some_and(|hw| guess < hw);
        if self.in_flight.len() < 2 && self.per_fetch > 0 && room && below_end {
            // A failure here shows up in the receive below, which reconnects.
            if let Ok(id) = self.client.send_fetch(guess, max_bytes, 0) {
                self.in_flight.push_back((id, guess));
                self.ahead = guess;
            }
        }
        Ok(())
    }

    /// Receives the oldest fetch in flight; `true` when the reading is done.
    fn receive(&mut self, want: Option<u64>) -> Result<bool, ClientError> {
        let Some((id, from)) = self.in_flight.pop_front() else {
            return Ok(true);
        };
        let usable = from <= self.next;
        let (mut got, mut bytes, mut next) = (0u64, 0u64, self.next);
        let limit = want.map_or(u64::MAX, |n| n.saturating_sub(self.records));
        // Records are looked at in place in the response frame (no copies); with
        // --count, none past the count is counted.
        let fetched = self.client.recv_fetch_with(id, 0, |record| {
            if usable && record.offset >= next && got < limit {
                got += 1;
                bytes += record.value.len() as u64;
                next = Offset(record.offset.0 + 1);
            }
        });
        let count = match fetched {
            Ok((hw, count)) => {
                self.high_watermark = Some(hw);
                count
            }
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) && self.records == 0 => {
                // The log's start was removed by retention: begin at the first offset.
                let status = self.client.status()?;
                if status.first_index <= self.next {
                    return Err(e);
                }
                self.next = status.first_index;
                return Ok(false);
            }
            // A guess past the end; `next` is sent again.
            Err(e) if !usable && e.code().is_some() => return Ok(false),
            Err(e) => return Err(e),
        };
        if !usable {
            return Ok(false);
        }
        self.next = next;
        self.records += got;
        self.bytes += bytes;
        self.per_fetch = count;
        let done = match want {
            Some(n) => self.records >= n,
            None => self.high_watermark.is_some_and(|hw| self.next >= hw),
        };
        Ok(done || count == 0)
    }
}

fn print_consume_result(
    out: &mut Out<'_>,
    args: &BenchArgs,
    started: Instant,
    (records, bytes): (u64, u64),
    retries: u64,
) -> io::Result<()> {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    writeln!(
        out,
        "consume: {records} records ({bytes} B) in {secs:.3} s: {rps:.0} records/s, {mbps:.2} MB/s, {retries} retries"
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tConsume\t{}\t{records}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t0\t0\t0\t0",
        args.label
    )
}

/// After a failed fetch: waits (if the failure is transient and the budget allows)
/// and returns a new read connection, or the error.
fn recover(
    e: ClientError,
    cluster: &mut ClusterClient,
    retrier: &mut Retrier,
) -> Result<Client, ClientError> {
    retrier.retry(e)?;
    read_connection(cluster, retrier)
}

/// A connection to a read target, retried within the budget.
fn read_connection(
    cluster: &mut ClusterClient,
    retrier: &mut Retrier,
) -> Result<Client, ClientError> {
    // Bounded by the retry budget: every failure either waits or ends the loop.
    loop {
        match cluster.read_connection() {
            Ok(c) => return Ok(c),
            Err(e) => retrier.retry(e)?,
        }
    }
}
