//! Process metrics in Prometheus text exposition format, and the health state behind
//! `/healthz` and `/readyz` (served by [`http`]).
//!
//! # Design
//! One [`Metrics`] value per process, shared as `Arc<Metrics>` through the existing
//! configuration structs (`NodeConfig::metrics`,
//! [`Server::with_metrics`](crate::net::Server::with_metrics)); `None` means no
//! counting at all. Every label set is known up front, so the hot path never
//! allocates or locks: requests are an array indexed by `[api][error code]`, latency
//! histograms are fixed arrays of buckets, and all updates are `Relaxed` atomic adds
//! (a scrape may see one counter a few increments ahead of another; each counter on
//! its own is exact). The only lock is the follower-lag list, written by the raft
//! thread once per publish (every tick) and read by scrapes.
//!
//! Histograms keep non-cumulative bucket counts plus a sum in microseconds; rendering
//! turns them into cumulative `_bucket{le="…"}` lines in seconds, `_sum` and `_count`.
//!
//! # Metrics
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `commitlog_requests_total` | counter | `api`, `code` | requests answered, by API and error code (`NONE` = success) |
//! | `commitlog_request_duration_seconds` | histogram | `api` | from request decoded to response handed to the event loop |
//! | `commitlog_produce_records_total` | counter | | records acknowledged by `Produce`/`ProduceBatch` |
//! | `commitlog_produce_bytes_total` | counter | | value bytes of those records |
//! | `commitlog_consume_records_total` | counter | | records returned by `Consume`/`Fetch` |
//! | `commitlog_consume_bytes_total` | counter | | value bytes of those records |
//! | `commitlog_open_connections` | gauge | | client connections open now |
//! | `commitlog_net_buffered_bytes` | gauge | | bytes the network front end holds for requests and answers (read and write buffers, answers reserved in flight), against `--max-buffered-bytes` |
//! | `commitlog_scrub_bytes_verified_total`, `commitlog_scrub_faults_total`, `commitlog_scrub_passes_total` | counter | | the background scrubber (`--scrub-bytes-per-sec`): bytes of sealed segments verified, damaged ranges found, complete passes |
//! | `commitlog_fsync_duration_seconds` | histogram | | every log fsync (the raft thread); `_count` is the fsync count |
//! | `commitlog_raft_term` | gauge | | current Raft term |
//! | `commitlog_raft_commit_index` | gauge | | commit index known durable here |
//! | `commitlog_raft_last_index` | gauge | | last index in the local log |
//! | `commitlog_raft_role` | gauge | `role` | 1 for this node's role (`follower`, `pre_candidate`, `candidate`, `leader`), 0 for the others |
//! | `commitlog_raft_leader_changes_total` | counter | | times this node saw a new leader |
//! | `commitlog_raft_follower_lag_entries` | gauge | `follower` | entries each follower lacks; only on the leader (cluster) |
//! | `commitlog_gossip_members` | gauge | `state` | other gossip members (this node excluded) by state: `alive`, `failed`, `leaving` (decommissioning) (cluster) |
//! | `commitlog_ready` | gauge | | 1 while `/readyz` answers 200 |
//!
//! # Health
//! `/healthz` is 200 while the process serves HTTP at all. `/readyz` is 200 once the
//! binary called [`Metrics::set_serving`] and, in cluster mode, the raft thread's
//! last publish found a known leader and this node a voter, not recovering; otherwise
//! 503 with the reason ([`Readiness`]). A learner is reported not ready until the
//! leader promotes it (which it does once the learner is within
//! `PROMOTE_MAX_LAG_ENTRIES` of the log).

pub mod http;

mod partitions;
pub use partitions::{PartitionSample, PartitionSeries};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::raft::Role;
use crate::wire::{ApiKey, ErrorCode, Request};

const N_APIS: usize = ApiKey::ALL.len();
const N_CODES: usize = ErrorCode::ALL.len();

/// Upper bounds of the latency buckets, in microseconds (100 µs .. 10 s); a last
/// `+Inf` bucket catches the rest.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A fixed-bucket latency histogram (lock-free, no allocation).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// Cumulative counts per bucket (the last is `+Inf`, equal to the count).
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS_US.len() + 1] {
        let mut out = [0u64; LATENCY_BUCKETS_US.len() + 1];
        let mut total = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *o = total;
        }
        out
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let cumulative = self.cumulative();
        for (i, c) in cumulative.iter().enumerate() {
            match LATENCY_BUCKETS_US.get(i) {
                Some(&us) => {
                    let le = us as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {c}");
                }
            }
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{braces} {}",
            cumulative[LATENCY_BUCKETS_US.len()]
        );
    }
}

/// Why `/readyz` answers 503 (or that it answers 200).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Ready to serve.
    Ready = 0,
    /// The server is not serving yet (or any more).
    NotServing = 1,
    /// Cluster: no leader known.
    NoLeader = 2,
    /// Cluster: this node is not in the Raft configuration yet.
    NotMember = 3,
    /// Cluster: this node is a learner still catching up (not yet promoted).
    Learner = 4,
    /// Cluster: this node lost log entries and is catching up before it may vote.
    Recovering = 5,
}

impl Readiness {
    fn from_u8(v: u8) -> Readiness {
        match v {
            0 => Readiness::Ready,
            2 => Readiness::NoLeader,
            3 => Readiness::NotMember,
            4 => Readiness::Learner,
            5 => Readiness::Recovering,
            _ => Readiness::NotServing,
        }
    }

    /// The reason text `/readyz` sends.
    pub fn reason(self) -> &'static str {
        match self {
            Readiness::Ready => "ok",
            Readiness::NotServing => "not serving client requests (starting or stopping)",
            Readiness::NoLeader => "no Raft leader known; waiting for an election",
            Readiness::NotMember => "not in the cluster configuration yet; waiting to be added",
            Readiness::Learner => "learner catching up on the log; ready once promoted to voter",
            Readiness::Recovering => "recovering lost log entries from the leader",
        }
    }
}

/// Cluster state published by the raft thread (see [`Metrics::publish_raft`]).
#[derive(Clone, Debug)]
pub struct RaftGauges {
    /// Current term.
    pub term: u64,
    /// Commit index known durable here.
    pub commit: u64,
    /// Last local log index.
    pub last: u64,
    /// This node's role.
    pub role: Role,
    /// Readiness derived from leader/membership/recovery.
    pub readiness: Readiness,
    /// Gossip members `[alive, failed, leaving]`.
    pub gossip: [u64; 3],
}

/// Every counter, gauge and histogram of the process (see the module docs).
pub struct Metrics {
    requests: [[AtomicU64; N_CODES]; N_APIS],
    latency: [Histogram; N_APIS],
    produce_records: AtomicU64,
    produce_bytes: AtomicU64,
    consume_records: AtomicU64,
    consume_bytes: AtomicU64,
    open_connections: AtomicU64,
    net_buffered_bytes: AtomicU64,
    fsync: Histogram,
    /// The scrubber's own counters, once it runs (read at scrape time).
    scrub: std::sync::OnceLock<std::sync::Arc<crate::storage::scrub::ScrubCounters>>,
    /// The healer's counters, once it runs.
    heal: std::sync::OnceLock<std::sync::Arc<crate::node::heal::HealCounters>>,
    cluster: AtomicBool,
    raft_term: AtomicU64,
    raft_commit: AtomicU64,
    raft_last: AtomicU64,
    raft_role: AtomicU8,
    leader_changes: AtomicU64,
    last_leader: AtomicU64,
    follower_lag: Mutex<Vec<(u64, u64)>>,
    gossip: [AtomicU64; 3],
    serving: AtomicBool,
    cluster_readiness: AtomicU8,
    partitions: Mutex<partitions::PartitionSeries>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const ROLES: [(Role, &str); 4] = [
    (Role::Follower, "follower"),
    (Role::PreCandidate, "pre_candidate"),
    (Role::Candidate, "candidate"),
    (Role::Leader, "leader"),
];

fn api_index(api: ApiKey) -> usize {
    ApiKey::ALL.iter().position(|&a| a == api).unwrap_or(0)
}

impl Metrics {
    /// All zero, not serving.
    pub fn new() -> Metrics {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::default()),
            produce_records: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            consume_records: AtomicU64::new(0),
            consume_bytes: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            net_buffered_bytes: AtomicU64::new(0),
            fsync: Histogram::default(),
            scrub: std::sync::OnceLock::new(),
            heal: std::sync::OnceLock::new(),
            cluster: AtomicBool::new(false),
            raft_term: AtomicU64::new(0),
            raft_commit: AtomicU64::new(0),
            raft_last: AtomicU64::new(0),
            raft_role: AtomicU8::new(0),
            leader_changes: AtomicU64::new(0),
            last_leader: AtomicU64::new(0),
            follower_lag: Mutex::new(Vec::new()),
            gossip: std::array::from_fn(|_| AtomicU64::new(0)),
            serving: AtomicBool::new(false),
            cluster_readiness: AtomicU8::new(Readiness::NoLeader as u8),
            partitions: Mutex::new(partitions::PartitionSeries::default()),
        }
    }

    /// Publishes the hosted groups and the per-partition sample (raft thread).
    pub fn publish_partitions(&self, series: partitions::PartitionSeries) {
        *crate::sync::lock(&self.partitions) = series;
    }

    /// Counts one answered request and its latency.
    pub fn record_request(&self, api: ApiKey, code: ErrorCode, elapsed: Duration) {
        let a = api_index(api);
        let c = usize::from(code.as_u16()).min(N_CODES - 1);
        self.requests[a][c].fetch_add(1, Relaxed);
        self.latency[a].observe(elapsed);
    }

    /// Records and value bytes acknowledged to a producer.
    pub fn add_produced(&self, records: u64, bytes: u64) {
        self.produce_records.fetch_add(records, Relaxed);
        self.produce_bytes.fetch_add(bytes, Relaxed);
    }

    /// Records and value bytes returned to a consumer.
    pub fn add_consumed(&self, records: u64, bytes: u64) {
        self.consume_records.fetch_add(records, Relaxed);
        self.consume_bytes.fetch_add(bytes, Relaxed);
    }

    /// Sets the open client connection gauge.
    pub fn set_open_connections(&self, n: usize) {
        self.open_connections.store(n as u64, Relaxed);
    }

    /// Sets the gauge of bytes buffered by the network front end.
    pub fn set_net_buffered_bytes(&self, n: usize) {
        self.net_buffered_bytes.store(n as u64, Relaxed);
    }

    /// Records one fsync.
    pub fn observe_fsync(&self, elapsed: Duration) {
        self.fsync.observe(elapsed);
    }

    /// Fsyncs recorded so far.
    pub fn fsync_count(&self) -> u64 {
        self.fsync.count()
    }

    /// Marks the client server as serving (true) or stopping (false).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Relaxed);
    }

    /// Notes the leader this node currently sees; a new `Some` leader different from
    /// the previous one counts as a leader change.
    pub fn observe_leader(&self, leader: Option<u64>) {
        let id = leader.unwrap_or(0);
        let previous = self.last_leader.swap(id, Relaxed);
        if id != 0 && id != previous {
            self.leader_changes.fetch_add(1, Relaxed);
        }
    }

    /// Publishes the raft thread's state (called once per publish, every tick).
    pub fn publish_raft(&self, g: &RaftGauges, follower_lag: &[(u64, u64)]) {
        self.cluster.store(true, Relaxed);
        self.raft_term.store(g.term, Relaxed);
        self.raft_commit.store(g.commit, Relaxed);
        self.raft_last.store(g.last, Relaxed);
        let role = ROLES.iter().position(|(r, _)| *r == g.role).unwrap_or(0);
        self.raft_role.store(role as u8, Relaxed);
        self.cluster_readiness.store(g.readiness as u8, Relaxed);
        for (slot, n) in self.gossip.iter().zip(g.gossip) {
            slot.store(n, Relaxed);
        }
        let mut lag = crate::sync::lock(&self.follower_lag);
        lag.clear();
        lag.extend_from_slice(follower_lag);
    }

    /// What `/readyz` answers now.
    pub fn readiness(&self) -> Readiness {
        if !self.serving.load(Relaxed) {
            return Readiness::NotServing;
        }
        if self.cluster.load(Relaxed) {
            return Readiness::from_u8(self.cluster_readiness.load(Relaxed));
        }
        Readiness::Ready
    }

    /// The count of `commitlog_requests_total{api,code}`.
    pub fn requests(&self, api: ApiKey, code: ErrorCode) -> u64 {
        let c = usize::from(code.as_u16()).min(N_CODES - 1);
        self.requests[api_index(api)][c].load(Relaxed)
    }

    /// Renders every metric in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        header(
            &mut out,
            "commitlog_requests_total",
            "counter",
            "Requests answered, by API and error code (NONE = success).",
        );
        for (a, api) in ApiKey::ALL.iter().enumerate() {
            for (c, code) in ErrorCode::ALL.iter().enumerate() {
                let n = self.requests[a][c].load(Relaxed);
                // Success is always listed; error series appear once they happen.
                if n > 0 || *code == ErrorCode::None {
                    let _ = writeln!(
                        out,
                        "commitlog_requests_total{{api=\"{}\",code=\"{}\"}} {n}",
                        api.name(),
                        code.name()
                    );
                }
            }
        }
        header(
            &mut out,
            "commitlog_request_duration_seconds",
            "histogram",
            "Request latency from decode to response, by API.",
        );
        for (a, api) in ApiKey::ALL.iter().enumerate() {
            self.latency[a].render(
                &mut out,
                "commitlog_request_duration_seconds",
                &format!("api=\"{}\"", api.name()),
            );
        }
        let counters = [
            (
                "commitlog_produce_records_total",
                "Records acknowledged to producers.",
                &self.produce_records,
            ),
            (
                "commitlog_produce_bytes_total",
                "Value bytes of records acknowledged to producers.",
                &self.produce_bytes,
            ),
            (
                "commitlog_consume_records_total",
                "Records returned by Consume and Fetch.",
                &self.consume_records,
            ),
            (
                "commitlog_consume_bytes_total",
                "Value bytes of records returned by Consume and Fetch.",
                &self.consume_bytes,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        header(
            &mut out,
            "commitlog_open_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "commitlog_open_connections {}",
            self.open_connections.load(Relaxed)
        );
        header(
            &mut out,
            "commitlog_net_buffered_bytes",
            "gauge",
            "Bytes buffered for requests and answers across all connections.",
        );
        let _ = writeln!(
            out,
            "commitlog_net_buffered_bytes {}",
            self.net_buffered_bytes.load(Relaxed)
        );
        header(
            &mut out,
            "commitlog_fsync_duration_seconds",
            "histogram",
            "Log fsync latency; _count is the number of fsyncs.",
        );
        self.fsync
            .render(&mut out, "commitlog_fsync_duration_seconds", "");
        self.render_scrub(&mut out);
        self.render_heal(&mut out);
        if self.cluster.load(Relaxed) {
            self.render_cluster(&mut out);
            partitions::render(&crate::sync::lock(&self.partitions), &mut out);
        }
        header(
            &mut out,
            "commitlog_ready",
            "gauge",
            "1 while /readyz answers 200.",
        );
        let ready = u8::from(self.readiness() == Readiness::Ready);
        let _ = writeln!(out, "commitlog_ready {ready}");
        out
    }

    /// Exports the scrubber's counters (see `storage::scrub`).
    pub fn set_scrub_counters(&self, c: std::sync::Arc<crate::storage::scrub::ScrubCounters>) {
        let _ = self.scrub.set(c);
    }

    /// The healer's counters are rendered from now on.
    pub fn set_heal_counters(&self, c: std::sync::Arc<crate::node::heal::HealCounters>) {
        let _ = self.heal.set(c);
    }

    fn render_heal(&self, out: &mut String) {
        let Some(c) = self.heal.get() else {
            return;
        };
        let name = "commitlog_heal_entries_healed_total";
        header(
            out,
            name,
            "counter",
            "Damaged log entries rewritten from a peer's copy.",
        );
        let _ = writeln!(out, "{name} {}", c.entries_healed.load(Relaxed));
        let name = "commitlog_heal_entries_damaged";
        header(
            out,
            name,
            "gauge",
            "Damaged log entries known and not yet healed.",
        );
        let _ = writeln!(out, "{name} {}", c.entries_damaged.load(Relaxed));
    }

    fn render_scrub(&self, out: &mut String) {
        let Some(c) = self.scrub.get() else {
            return;
        };
        let counters = [
            (
                "commitlog_scrub_bytes_verified_total",
                "Bytes of sealed segments the scrubber verified.",
                &c.bytes_verified,
            ),
            (
                "commitlog_scrub_faults_total",
                "Damaged ranges the scrubber found.",
                &c.faults_found,
            ),
            (
                "commitlog_scrub_passes_total",
                "Complete passes over the sealed segments.",
                &c.passes_completed,
            ),
        ];
        for (name, help, value) in counters {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
    }

    fn render_cluster(&self, out: &mut String) {
        let gauges = [
            ("commitlog_raft_term", "Current Raft term.", &self.raft_term),
            (
                "commitlog_raft_commit_index",
                "Raft commit index known durable on this node.",
                &self.raft_commit,
            ),
            (
                "commitlog_raft_last_index",
                "Last index in this node's Raft log.",
                &self.raft_last,
            ),
        ];
        for (name, help, value) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        header(
            out,
            "commitlog_raft_role",
            "gauge",
            "1 for this node's Raft role, 0 for the others.",
        );
        let role = usize::from(self.raft_role.load(Relaxed));
        for (i, (_, name)) in ROLES.iter().enumerate() {
            let _ = writeln!(
                out,
                "commitlog_raft_role{{role=\"{name}\"}} {}",
                u8::from(i == role)
            );
        }
        header(
            out,
            "commitlog_raft_leader_changes_total",
            "counter",
            "Times this node saw a new Raft leader.",
        );
        let _ = writeln!(
            out,
            "commitlog_raft_leader_changes_total {}",
            self.leader_changes.load(Relaxed)
        );
        header(
            out,
            "commitlog_raft_follower_lag_entries",
            "gauge",
            "Entries each follower lacks (leader only).",
        );
        let lag = crate::sync::lock(&self.follower_lag).clone();
        for (id, entries) in lag {
            let _ = writeln!(
                out,
                "commitlog_raft_follower_lag_entries{{follower=\"{id}\"}} {entries}"
            );
        }
        header(
            out,
            "commitlog_gossip_members",
            "gauge",
            "Other gossip members (this node excluded) by state.",
        );
        for (state, n) in ["alive", "failed", "leaving"].iter().zip(&self.gossip) {
            let _ = writeln!(
                out,
                "commitlog_gossip_members{{state=\"{state}\"}} {}",
                n.load(Relaxed)
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Records and value bytes a produce request carries (`None` for other requests).
pub fn produce_size(request: &Request) -> Option<(u64, u64)> {
    match request {
        Request::Produce { value, .. } => Some((1, value.len() as u64)),
        Request::ProduceBatch { values, .. } => Some((
            values.len() as u64,
            values.iter().map(|v| v.len() as u64).sum(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
