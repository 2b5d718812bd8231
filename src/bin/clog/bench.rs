//! `clog bench`: produce throughput and latency, consume throughput, handshakes/s.
//!
//! Produces go to one topic partition per producer: `-t/-p`, every partition of
//! `-t` (one producer at least for each), or with `--topics N --partitions M` the
//! topics `bench-0`..`bench-<N-1>` (created if missing). Each producer keeps its own
//! connection to its partition's leader; the result has the aggregate and one line
//! per partition.
//!
//! Each record goes as a ProduceBatch v2 batch of one, as `clog produce` sends
//! records. With `--idempotence on` (the default, as `clog produce`) each producer
//! asks for a producer id (InitProducer) and every batch carries the next sequence
//! of its partition; after a failure it takes a new producer id before producing
//! again (the outcome of what was in flight is unknown: the library does the
//! same). `off` sends the same batches without producer meta (`clog produce
//! --no-idempotence`), so on vs off is the cost of idempotence alone. `--plain`
//! sends plain Produce requests instead (values only: no key, headers or time; the
//! oldest and lightest path). The output names the mode.
//!
//! `--consume` reads the same partitions (it creates none: an unknown topic or
//! partition is an error before anything is read), one reader thread per partition
//! with its own connection to one of the partition's replicas and two fetches in
//! flight (Fetch v0 for the default topic, v1 with one partition otherwise; both
//! decoded in place, without a copy per record). Its RESULT line has the produce
//! side's columns.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, ValueEnum};

use commitlog::client::cluster::{
    classify, Backoff, ClusterClient, ClusterConfig, Jitter, Next, RetryPolicy,
};
use commitlog::client::histogram::Histogram;
use commitlog::client::records::ProducerRecord;
use commitlog::client::{Ack, Client, ClientError, Pipeline, ProducerGrant};
use commitlog::replica::dedup::{BatchMeta, BatchSeq, ProducerEpoch, ProducerId};
use commitlog::types::Offset;
use commitlog::wire::{
    ErrorCode, Request, ResponseBody, TopicPartition, TopicSettings, DEFAULT_TOPIC,
};

use crate::fail::{explain, Failure};
use crate::{connect, Out, Output, Settings};

#[derive(ClapArgs, Debug)]
pub(crate) struct BenchArgs {
    /// Read instead of producing (W4): the partitions -t/-p or --topics name (every
    /// partition of a topic without -p), from --from to the end each replica knows
    /// (or --count records in all), with big fetches. One reader thread per
    /// partition, each with its own connection to one of the partition's replicas
    /// (a follower for the default topic) and two fetches in flight, so a topic of
    /// M partitions is read with M connections in parallel, as M producers write
    /// it. The rate is the sum of the readers over the time from when all are
    /// connected until the last one is done.
    #[arg(long)]
    consume: bool,
    /// Producer connections to the leader (one thread each); at least one per
    /// partition produced to.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Topic to produce to or, with --consume, read.
    #[arg(short = 't', long, default_value = DEFAULT_TOPIC)]
    topic: String,
    /// Partition of --topic to produce to or read [default: all of them, spread
    /// over the producers; one reader each with --consume].
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    /// Produce to this many topics named bench-0, bench-1, ... (created if missing,
    /// with --partitions each, replicated on every voter) instead of --topic; with
    /// --consume, read every partition of them (an unknown one is an error).
    #[arg(long, conflicts_with_all = ["partition", "handshakes"])]
    topics: Option<u32>,
    /// Partitions of each topic --topics creates (--consume reads the partitions
    /// the topics have).
    #[arg(long, default_value_t = 1, requires = "topics")]
    partitions: u32,
    /// Produces each producer keeps in flight (1 = synchronous).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Record size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Records in total (produce), or to read (consume; default: all up to the end).
    /// Split evenly over the producers or the partitions read.
    #[arg(long)]
    count: Option<u64>,
    /// First offset to read in each partition with --consume (e.g. skip W1's
    /// records to read only the W2+W3 stream).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Fetch size in bytes for --consume (two fetches per reader are kept in flight; 512 KiB
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
    /// Produce as idempotent producers (InitProducer, then a sequence per batch of
    /// one record), as `clog produce` does by default, or the same record batches
    /// without producer meta (`off`). The produce and RESULT lines say which.
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    idempotence: Switch,
    /// Send plain Produce requests (values only, no record batches; never
    /// idempotent) instead of ProduceBatch v2.
    #[arg(long, conflicts_with = "idempotence")]
    plain: bool,
}

impl BenchArgs {
    /// The produce mode, as the produce and RESULT lines name it.
    fn mode_name(&self) -> &'static str {
        if self.plain {
            "plain"
        } else {
            self.idempotence.name()
        }
    }

    fn idempotent(&self) -> bool {
        !self.plain && self.idempotence == Switch::On
    }
}

/// A flag's `on` / `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

impl Switch {
    fn name(self) -> &'static str {
        match self {
            Switch::On => "on",
            Switch::Off => "off",
        }
    }
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
    /// Without `--plain`: the v1 payload of `value`, sent as a batch of one.
    record_payload: Option<Vec<u8>>,
    /// With `--idempotence on`: the producer id of the first session.
    first_grant: Option<ProducerGrant>,
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
    let value: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let record_payload = match args.plain {
        false => Some(
            ProducerRecord::new(value.clone())
                .encode()
                .map_err(|e| explain(&s.addr, e))?,
        ),
        true => None,
    };
    for p in 0..producers {
        let share = share(total, producers, p);
        let target = targets[p % targets.len()].clone();
        let first = cluster
            .partition_connection(&target)
            .map_err(|e| explain(&s.addr, e))?;
        let first_grant = match args.idempotent() {
            true => Some(
                cluster
                    .init_producer(None)
                    .map_err(|e| explain(&s.addr, e))?,
            ),
            false => None,
        };
        let barrier = Arc::clone(&barrier);
        let producer = Producer {
            target,
            config: config.clone(),
            retry: s.retry_policy(),
            share,
            window: args.window.clamp(1, 65_536),
            value: value.clone(),
            deadline,
            done: progress.counter(),
            record_payload: record_payload.clone(),
            first_grant,
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
    let idempotence = args.mode_name();
    writeln!(
        out,
        "produce: {acked} records of {} B in {secs:.3} s with {producers} producer(s) x window {}, idempotence {idempotence}: {rps:.0} records/s, {mbps:.2} MB/s, latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us, {} retries",
        args.size, args.window, report.retries
    )?;
    // peerbench's 12 columns, then the mode (readers of the 12 ignore extra ones).
    writeln!(
        out,
        "RESULT\tCommitlog\tProduce\t{}\t{acked}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t{p50}\t{p99}\t{p999}\t{max}\tidempotence={idempotence}",
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
        let mut grant = self.first_grant;
        let mut cluster: Option<ClusterClient> = None;
        // Bounded by the share, the deadline and the retry budget.
        while report.acked < self.share && Instant::now() < self.deadline {
            let result = match conn.take() {
                Some(mut c) => match (&self.record_payload, grant.take()) {
                    (None, _) => self.session(&mut c, &mut report, &mut retrier),
                    // Idempotent exactly when the first session had a producer id.
                    (Some(payload), g) if g.is_some() || self.first_grant.is_none() => {
                        let mut batches = BatchPipeline::new(&self.target, payload, g);
                        self.batch_session(&mut c, &mut batches, &mut report, &mut retrier)
                    }
                    // The last session ended with its producer id (see the module
                    // doc): a new one before producing again.
                    (Some(_), _) => self.new_grant(&mut cluster).map(|g| {
                        grant = Some(g);
                        conn = Some(c);
                    }),
                },
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
        let cluster = self.cluster_client(cluster)?;
        cluster.forget_topic(&self.target.topic);
        cluster.partition_connection(&self.target)
    }

    /// A new producer id (idempotent mode, after a session ended).
    fn new_grant(&self, cluster: &mut Option<ClusterClient>) -> Result<ProducerGrant, ClientError> {
        self.cluster_client(cluster)?.init_producer(None)
    }

    fn cluster_client<'c>(
        &self,
        cluster: &'c mut Option<ClusterClient>,
    ) -> Result<&'c mut ClusterClient, ClientError> {
        match cluster {
            Some(c) => Ok(c),
            None => Ok(cluster.insert(ClusterClient::connect(self.config.clone())?)),
        }
    }

    /// [`Producer::session`] with record batches of one; idempotent: each with
    /// the next sequence, and any error ends the session and its producer id (the
    /// next session asks for a new one: see the module doc).
    fn batch_session(
        &self,
        conn: &mut Client,
        idem: &mut BatchPipeline<'_>,
        report: &mut ProducerReport,
        retrier: &mut Retrier,
    ) -> Result<(), ClientError> {
        let todo = self.share - report.acked;
        let mut sent = 0u64;
        while sent < todo && Instant::now() < self.deadline {
            if idem.sent_at.len() >= self.window {
                let ack = idem.next_ack(conn)?;
                self.count(ack, report, retrier)?;
            }
            idem.send(conn)?;
            sent += 1;
        }
        // Bounded by the number in flight.
        while !idem.sent_at.is_empty() {
            let ack = idem.next_ack(conn)?;
            self.count(ack, report, retrier)?;
        }
        Ok(())
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

/// Up to a window of ProduceBatch v2 batches of one record in flight on one
/// connection; idempotent ones with consecutive sequences of one producer id.
struct BatchPipeline<'a> {
    target: &'a TopicPartition,
    payload: &'a [u8],
    grant: Option<ProducerGrant>,
    next_seq: u32,
    sent_at: std::collections::HashMap<u32, Instant>,
}

impl<'a> BatchPipeline<'a> {
    fn new(target: &'a TopicPartition, payload: &'a [u8], grant: Option<ProducerGrant>) -> Self {
        BatchPipeline {
            target,
            payload,
            grant,
            next_seq: 0,
            sent_at: std::collections::HashMap::new(),
        }
    }

    /// Sends the next batch (sequences wrap, as the partition expects).
    fn send(&mut self, conn: &mut Client) -> Result<(), ClientError> {
        let seq = BatchSeq::new(self.next_seq, 1)
            .map_err(|e| ClientError::Protocol(format!("sequence {}: {e}", self.next_seq)))?;
        let meta = self.grant.map(|g| BatchMeta {
            producer: ProducerId(g.producer_id),
            epoch: ProducerEpoch(g.epoch),
            seq,
        });
        let id = conn.send(Request::ProduceBatchV2 {
            target: self.target.clone(),
            producer: meta,
            records: vec![self.payload.to_vec()],
        })?;
        self.next_seq = seq.next_seq();
        self.sent_at.insert(id, Instant::now());
        Ok(())
    }

    /// The next acknowledgement, in completion order.
    fn next_ack(&mut self, conn: &mut Client) -> Result<Ack, ClientError> {
        let (correlation_id, result) = conn.recv()?;
        let latency = self
            .sent_at
            .remove(&correlation_id)
            .map_or(Duration::ZERO, |t| t.elapsed());
        let result = result.and_then(|body| match body {
            ResponseBody::ProduceBatchV2 {
                first_offset,
                count: 1,
                ..
            } => Ok(first_offset),
            other => Err(ClientError::Protocol(format!(
                "unexpected {} response",
                other.api_key()
            ))),
        });
        Ok(Ack {
            correlation_id,
            result,
            latency,
        })
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

/// Most reader threads of `bench --consume` (one per partition read).
const MAX_READERS: usize = 1024;

/// `bench --consume`: one reader per partition (see `--consume`'s help), started
/// together; the result is their sum over the time from the start until the last
/// one finished, then one line per partition.
fn bench_consume(s: &Settings, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut cluster = connect(s)?;
    let targets = consume_targets(s, args, &mut cluster)?;
    let readers = targets.len();
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let barrier = Arc::new(Barrier::new(readers + 1));
    let progress = Progress::start(args.progress, args.count);
    let config = s.cluster_config()?;
    // Every reader is connected before any thread starts, so a failure leaves none
    // waiting.
    let mut jobs = Vec::with_capacity(readers);
    for (i, target) in targets.into_iter().enumerate() {
        let mut retrier = Retrier::new(s.retry_policy(), 2 + i as u64);
        let first = read_connection(&mut cluster, &target, &mut retrier)
            .map_err(|e| explain(&s.addr, e))?;
        let job = ConsumeJob {
            target,
            config: config.clone(),
            from: Offset(args.from),
            want: args.count.map(|n| share(n, readers, i)),
            max_bytes: args.max_bytes,
            deadline,
            done: progress.counter(),
        };
        jobs.push((job, first, retrier));
    }
    let mut handles = Vec::with_capacity(readers);
    for (job, first, retrier) in jobs {
        let barrier = Arc::clone(&barrier);
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            job.run(first, retrier)
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let reports: Vec<ConsumeReport> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| ConsumeReport::panicked()))
        .collect();
    progress.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    print_consume_result(out, args, secs, &reports)?;
    match reports.into_iter().find_map(|r| r.error) {
        Some(e) => Err(explain(&s.addr, e).into()),
        None => Ok(()),
    }
}

/// `total` split as evenly as possible over `parts`: part `i`'s share.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

/// The partitions `bench --consume` reads: `-t` (partition `-p`, else every
/// partition) or every partition of `bench-0`..`bench-<N-1>` with `--topics N`.
/// Unknown topics and partitions are refused before anything is read.
fn consume_targets(
    s: &Settings,
    args: &BenchArgs,
    cluster: &mut ClusterClient,
) -> Result<Vec<TopicPartition>, Failure> {
    let topics: Vec<String> = match args.topics {
        Some(n) => (0..n.clamp(1, 1024))
            .map(|i| format!("bench-{i}"))
            .collect(),
        None => vec![args.topic.clone()],
    };
    let mut targets = Vec::new();
    for topic in &topics {
        // The default topic's partition 0 needs no Metadata (the `consume` action only).
        let count = if topic == DEFAULT_TOPIC && args.partition.is_none_or(|p| p == 0) {
            1
        } else {
            cluster.partition_count(topic).map_err(|e| match args.topics {
                Some(n) if e.code() == Some(ErrorCode::UnknownTopic) => Failure::new(
                    crate::fail::EXIT_NOT_FOUND,
                    format!("{e} (write the bench topics first: `clog bench --topics {n} --partitions M`)"),
                ),
                _ => explain(&s.addr, e),
            })?
        };
        let picked = pick_partitions(topic, args.partition, count)
            .map_err(|message| explain(&s.addr, unknown_topic(message)))?;
        targets.extend(picked);
        if targets.len() > MAX_READERS {
            return Err(Failure::usage(format!(
                "bench --consume reads with one thread per partition, at most {MAX_READERS}: name fewer with -t/-p or --topics"
            )));
        }
    }
    Ok(targets)
}

/// Partition `partition` of `topic` (which has `count`), or all of them; an error
/// message for a partition it does not have.
fn pick_partitions(
    topic: &str,
    partition: Option<u32>,
    count: u32,
) -> Result<Vec<TopicPartition>, String> {
    match partition {
        Some(p) if p < count => Ok(vec![TopicPartition::new(topic, p)]),
        Some(p) => Err(format!(
            "topic {topic} has no partition {p}: it has {count} (0 to {})",
            count.saturating_sub(1)
        )),
        None => Ok((0..count).map(|p| TopicPartition::new(topic, p)).collect()),
    }
}

/// An `UNKNOWN_TOPIC` error found by clog itself (a partition past the count).
fn unknown_topic(message: String) -> ClientError {
    ClientError::Server {
        code: ErrorCode::UnknownTopic,
        message,
        leader_hint: None,
    }
}

/// What one reader of `bench --consume` needs.
struct ConsumeJob {
    target: TopicPartition,
    config: ClusterConfig,
    from: Offset,
    /// This reader's share of --count (`None`: to the end).
    want: Option<u64>,
    max_bytes: u32,
    deadline: Instant,
    done: Arc<AtomicU64>,
}

/// What one reader of `bench --consume` read.
struct ConsumeReport {
    target: Option<TopicPartition>,
    records: u64,
    bytes: u64,
    retries: u64,
    error: Option<ClientError>,
}

impl ConsumeReport {
    fn panicked() -> ConsumeReport {
        ConsumeReport {
            target: None,
            records: 0,
            bytes: 0,
            retries: 0,
            error: Some(ClientError::Protocol("a reader thread panicked".into())),
        }
    }
}

impl ConsumeJob {
    /// Reads the partition from `from` to its end (or `want` records), reconnecting
    /// to a replica after transient failures within the retry budget.
    fn run(self, client: Client, mut retrier: Retrier) -> ConsumeReport {
        let mut reader = Reader::new(client, self.target.clone(), self.from);
        let mut cluster: Option<ClusterClient> = None;
        let mut error = None;
        // Bounded by the deadline, by reaching the end, and by the retry budget.
        while Instant::now() < self.deadline {
            let before = reader.records;
            let step = reader
                .send(self.max_bytes, self.want)
                .and_then(|()| reader.receive(self.want));
            self.done
                .fetch_add(reader.records - before, Ordering::Relaxed);
            match step {
                Ok(true) => break,
                Ok(false) => retrier.progress(),
                Err(e) => match self.recover(e, &mut cluster, &mut retrier) {
                    Ok(client) => reader.reconnected(client),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                },
            }
        }
        ConsumeReport {
            target: Some(self.target),
            records: reader.records,
            bytes: reader.bytes,
            retries: retrier.retries,
            error,
        }
    }

    /// After a failed fetch: waits (if the failure is transient and the budget
    /// allows) and returns a new connection to a replica, or the error.
    fn recover(
        &self,
        e: ClientError,
        cluster: &mut Option<ClusterClient>,
        retrier: &mut Retrier,
    ) -> Result<Client, ClientError> {
        retrier.retry(e)?;
        let cluster = match cluster {
            Some(c) => c,
            None => cluster.insert(connect_cluster(&self.config, retrier)?),
        };
        cluster.forget_topic(&self.target.topic);
        read_connection(cluster, &self.target, retrier)
    }
}

/// The reading state of `bench --consume`. Two fetches are kept in flight: while
/// one response is read here, the server prepares the next one, which starts where
/// this one is predicted to end (the previous response's record count further on).
/// A wrong guess costs only a round trip: records already counted are skipped, and a
/// response that starts past `next` (it would leave a hole) is dropped and the fetch
/// sent again from `next`.
struct Reader {
    client: Client,
    target: TopicPartition,
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
    fn new(client: Client, target: TopicPartition, from: Offset) -> Reader {
        Reader {
            client,
            target,
            next: from,
            records: 0,
            bytes: 0,
            in_flight: VecDeque::new(),
            ahead: from,
            per_fetch: 0,
            high_watermark: None,
        }
    }

    /// Continues on a new connection: what was in flight on the old one is lost.
    fn reconnected(&mut self, client: Client) {
        self.client = client;
        (self.in_flight, self.per_fetch) = (VecDeque::new(), 0);
    }

    /// Sends the fetch from `next` unless one in flight starts at or before it (a
    /// chain of guesses that ran ahead of `next` is abandoned, not followed: each of
    /// its answers would be dropped), and the predicted next one.
    fn send(&mut self, max_bytes: u32, want: Option<u64>) -> Result<(), ClientError> {
        let covered = self.in_flight.iter().any(|&(_, from)| from <= self.next);
        if !covered && self.in_flight.len() < 2 {
            let id = self
                .client
                .send_fetch_to(&self.target, self.next, max_bytes, 0)?;
            self.in_flight.push_back((id, self.next));
            self.ahead = self.next;
        }
        let guess = Offset(self.ahead.0 + self.per_fetch);
        let room = want.is_none_or(|n| self.records + self.per_fetch < n);
        let below_end = self.high_watermark.is_some_and(|hw| guess < hw);
        if self.in_flight.len() < 2 && self.per_fetch > 0 && room && below_end {
            // A failure here shows up in the receive below, which reconnects.
            if let Ok(id) = self.client.send_fetch_to(&self.target, guess, max_bytes, 0) {
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
                self.next = self.first_offset(e)?;
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

impl Reader {
    /// Where to start instead after `e` (`OFFSET_OUT_OF_RANGE`): the log's first
    /// offset if retention removed `next`, as the error names it (`the log holds
    /// [first, end)`) or, for the default topic, Status does. `e` otherwise (an
    /// offset past the end).
    fn first_offset(&mut self, e: ClientError) -> Result<Offset, ClientError> {
        let named = match &e {
            ClientError::Server { message, .. } => log_start(message),
            _ => None,
        };
        let first = match named {
            Some(first) => first,
            None if self.target.is_default() => self.client.status()?.first_index,
            None => return Err(e),
        };
        if first <= self.next {
            return Err(e);
        }
        Ok(first)
    }
}

/// The first offset an `OFFSET_OUT_OF_RANGE` message names (`... the log holds
/// [first, end)`), if it names one.
fn log_start(message: &str) -> Option<Offset> {
    let (_, rest) = message.split_once("holds [")?;
    let (first, _) = rest.split_once(',')?;
    first.trim().parse().ok().map(Offset)
}

fn print_consume_result(
    out: &mut Out<'_>,
    args: &BenchArgs,
    secs: f64,
    reports: &[ConsumeReport],
) -> io::Result<()> {
    let records: u64 = reports.iter().map(|r| r.records).sum();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let retries: u64 = reports.iter().map(|r| r.retries).sum();
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    writeln!(
        out,
        "consume: {records} records ({bytes} B) in {secs:.3} s with {} reader(s): {rps:.0} records/s, {mbps:.2} MB/s, {retries} retries",
        reports.len()
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tConsume\t{}\t{records}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t0\t0\t0\t0",
        args.label
    )?;
    let per_partition = reports.len() > 1
        || reports
            .iter()
            .any(|r| r.target.as_ref().is_some_and(|t| !t.is_default()));
    if per_partition {
        for r in reports {
            let Some(target) = &r.target else { continue };
            let (rps, mbps) = (r.records as f64 / secs, r.bytes as f64 / secs / 1e6);
            writeln!(
                out,
                "partition {target}: {} records, {rps:.0} records/s, {mbps:.2} MB/s",
                r.records
            )?;
        }
    }
    Ok(())
}

/// A cluster client, retried within the budget.
fn connect_cluster(
    config: &ClusterConfig,
    retrier: &mut Retrier,
) -> Result<ClusterClient, ClientError> {
    // Bounded by the retry budget: every failure either waits or ends the loop.
    loop {
        match ClusterClient::connect(config.clone()) {
            Ok(c) => return Ok(c),
            Err(e) => retrier.retry(e)?,
        }
    }
}

/// A connection to one of `target`'s replicas, retried within the budget.
fn read_connection(
    cluster: &mut ClusterClient,
    target: &TopicPartition,
    retrier: &mut Retrier,
) -> Result<Client, ClientError> {
    // Bounded by the retry budget: every failure either waits or ends the loop.
    loop {
        match cluster.partition_read_connection(target) {
            Ok(c) => return Ok(c),
            Err(e) => retrier.retry(e)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_split_evenly_and_wholly() {
        for (total, parts) in [(0, 1), (10, 3), (301, 3), (5, 8), (u64::MAX, 7)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            let sum = shares.iter().fold(0u64, |a, &s| a.wrapping_add(s));
            assert_eq!(sum, total, "{shares:?}");
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "{shares:?}"
            );
        }
        assert_eq!(share(301, 3, 0), 101);
        assert_eq!(share(301, 3, 2), 100);
        assert_eq!(share(7, 0, 0), 7, "no parts counts as one");
    }

    #[test]
    fn partitions_picked_are_the_topics_own() {
        let all = pick_partitions("t", None, 3).unwrap();
        assert_eq!(
            all,
            (0..3)
                .map(|p| TopicPartition::new("t", p))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            pick_partitions("t", Some(2), 3).unwrap(),
            [TopicPartition::new("t", 2)]
        );
        let err = pick_partitions("t", Some(3), 3).unwrap_err();
        assert!(
            err.contains("no partition 3") && err.contains("0 to 2"),
            "{err}"
        );
        assert!(pick_partitions("t", Some(0), 0).is_err());
    }

    #[test]
    fn the_log_start_is_read_from_an_out_of_range_message() {
        let message =
            commitlog::wire::offset_out_of_range_message(Offset(3), Offset(40), Offset(90));
        assert_eq!(log_start(&message), Some(Offset(40)));
        let empty = commitlog::wire::offset_out_of_range_message(Offset(3), Offset(9), Offset(9));
        assert_eq!(log_start(&empty), None);
        assert_eq!(log_start("holds [x, 3)"), None);
    }
}
