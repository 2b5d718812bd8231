//! A cluster-aware client: discovery, leader routing, read spreading and retries.
//!
//! [`ClusterClient`] is built from one or more seed addresses. It asks any reachable
//! seed for the member list (`GetServers`), then
//!
//! - sends produces to the leader;
//! - spreads consumes and fetches round-robin over live followers, falling back to
//!   the leader (a single `--dev` node reports itself as leader, so everything goes
//!   there). A follower answering `OFFSET_OUT_OF_RANGE` may just lag behind: the
//!   client asks the leader before believing it;
//! - retries `NOT_LEADER` at the hinted leader at once, and `UNAVAILABLE`,
//!   `TIMEOUT`, `TOO_MANY_CONNECTIONS`, connection errors and client-side timeouts
//!   after a bounded exponential back-off with jitter, refreshing the member list
//!   before the next attempt.
//!
//! Members learned from `GetServers` can be remembered on disk ([`cache`],
//! [`ClusterConfig::member_cache`]) and are tried after the seeds, so a client whose
//! only seed died still finds the rest of the cluster. An identity that may not
//! `describe` (GetServers refused) still produces and reads: the client then routes
//! with the seeds and follows `NOT_LEADER` hints.
//!
//! The decisions live in two pure modules tested without sockets: [`routing`] (which
//! server) and [`retry`] (retry or not, how long to wait). This file is the I/O
//! shell: connections (one cached [`Client`] per server, bounded), sleeping, clocks;
//! `shell_tests.rs` drives it against scripted fake servers on 127.0.0.1.
//!
//! Guarantees and bounds: a call makes at most [`RetryPolicy::max_attempts`]
//! attempts and starts none after [`RetryPolicy::max_total`]; each attempt is bounded
//! by the connection timeout ([`ClientConfig::timeout`]). A refresh asks each known
//! address at most once. Produces are **at-least-once** across retries: an attempt
//! that timed out or lost its connection may have been committed, so a retried
//! record can appear twice (at two offsets); each acknowledged offset is exact.
//! Reads are served up to the answering node's commit index, so a read from a
//! follower may briefly not see a record the leader already acknowledged.

pub mod cache;
mod groups;
mod list_offsets;
mod record_calls;
pub mod report;
pub mod retry;
pub mod routing;
#[cfg(test)]
mod shell_tests;
mod topic_calls;
pub mod topics;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use cache::MemberCache;
pub use record_calls::ProducedBatch;
pub use retry::{classify, classify_topic, Backoff, Jitter, Next, RetryPolicy};
pub use routing::{Member, Router, MAX_MEMBERS};
pub use topics::{Partitioner, TopicCache};

use super::{
    Client, ClientConfig, ClientError, FetchResult, ProducerGrant, ProducerState, Record, Result,
};
use crate::types::Offset;
use crate::wire::{ErrorCode, StatusInfo};

/// Splits a comma-separated seed list (`"a:8400, b:8400"`), dropping empty items.
pub fn parse_seeds(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Options of a [`ClusterClient`].
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where to start discovery (`host:port` each).
    pub seeds: Vec<String>,
    /// Per-connection options (connect and response timeout).
    pub client: ClientConfig,
    /// Retry budget of each call.
    pub retry: RetryPolicy,
    /// Most connections kept open at once (one per server).
    pub max_connections: usize,
    /// Adjusts [`ClusterConfig::client`] for each address dialled, e.g. to verify
    /// that server's own host name in its TLS certificate (members of a cluster live
    /// on different hosts). `None`: the same options for every server.
    pub per_target: Option<PerTarget>,
    /// Remember the members learned from the cluster here, and try them when the
    /// seeds do not answer (see [`cache`]). `None`: know only the seeds.
    pub member_cache: Option<MemberCache>,
    /// How long a topic's cached metadata (partitions, leaders, replicas) is used
    /// before it is asked again ([`topics`]); failures invalidate it sooner.
    pub metadata_max_age: Duration,
}

/// A hook that adjusts the connection options for one server address (see
/// [`ClusterConfig::per_target`]).
#[derive(Clone)]
pub struct PerTarget(pub Arc<AdjustOptions>);

/// The function inside a [`PerTarget`]: `f(addr, options)`.
pub type AdjustOptions = dyn Fn(&str, &mut ClientConfig) + Send + Sync;

impl PerTarget {
    /// Wraps `f(addr, options)`.
    pub fn new(f: impl Fn(&str, &mut ClientConfig) + Send + Sync + 'static) -> PerTarget {
        PerTarget(Arc::new(f))
    }
}

impl fmt::Debug for PerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PerTarget(..)")
    }
}

impl ClusterConfig {
    /// Defaults for the comma-separated `seeds`.
    pub fn new(seeds: &str) -> ClusterConfig {
        ClusterConfig {
            seeds: parse_seeds(seeds),
            client: ClientConfig::default(),
            retry: RetryPolicy::default(),
            max_connections: 16,
            per_target: None,
            member_cache: None,
            metadata_max_age: Duration::from_millis(topics::DEFAULT_MAX_AGE_MS),
        }
    }

    /// Sets the per-connection timeout.
    pub fn timeout(mut self, timeout: Duration) -> ClusterConfig {
        self.client.timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> ClusterConfig {
        self.retry = retry;
        self
    }
}

/// Which kind of server a call wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Write,
    Read,
}

/// Most recently failed addresses remembered (asked last during discovery).
const MAX_RECENT_FAILURES: usize = 16;

/// A client for a whole cluster (see the module doc).
pub struct ClusterClient {
    config: ClusterConfig,
    router: Router,
    conns: HashMap<String, Client>,
    recent_failures: VecDeque<String>,
    jitter: Jitter,
    retries: u64,
    last_served_by: Option<String>,
    /// Why GetServers was refused, when this identity may not `describe` (reads and
    /// produces then go to the seeds and follow `NOT_LEADER` hints).
    discovery_denied: Option<String>,
    /// Where topic partitions live, and the metadata leader ([`topics`]).
    topics: TopicCache,
    /// Picks the partition of records produced without one.
    partitioner: Partitioner,
    /// Metadata was refused (the identity may not `describe` topics): partition
    /// calls route by the member list and hints instead.
    topic_metadata_denied: bool,
    /// The origin of the cache's `now_ms`.
    epoch: Instant,
    /// Record produces are idempotent (the default): one producer id per client,
    /// a sequence per partition, retries resend the same batch.
    idempotence: bool,
    /// The idempotent producer's id, epoch and sequences.
    producer: ProducerState,
}

impl ClusterClient {
    /// Discovers the cluster from `config.seeds`. Fails at once if every seed refuses
    /// the connection (nothing is running there); otherwise retries discovery within
    /// the retry budget.
    pub fn connect(config: ClusterConfig) -> Result<ClusterClient> {
        if config.seeds.is_empty() {
            return Err(ClientError::Protocol(
                "no seed address given (expected host:port[,host:port...])".into(),
            ));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        let mut known = config.seeds.clone();
        if let Some(cache) = &config.member_cache {
            // Members remembered from an earlier run are tried after the seeds.
            known.extend(cache.lookup(&config.seeds));
        }
        let max_age_ms = u64::try_from(config.metadata_max_age.as_millis()).unwrap_or(u64::MAX);
        let mut client = ClusterClient {
            router: Router::new(known),
            topics: TopicCache::new(max_age_ms, topics::MAX_CACHED_TOPICS),
            partitioner: Partitioner::new(seed),
            topic_metadata_denied: false,
            epoch: Instant::now(),
            config,
            conns: HashMap::new(),
            recent_failures: VecDeque::new(),
            jitter: Jitter::new(seed),
            retries: 0,
            last_served_by: None,
            discovery_denied: None,
            idempotence: true,
            producer: ProducerState::default(),
        };
        match client.refresh() {
            Ok(()) => Ok(client),
            Err(e) if is_refused(&e) => Err(e),
            Err(_) => {
                client.refresh_with_retry()?;
                Ok(client)
            }
        }
    }

    /// The members from the latest refresh.
    pub fn members(&self) -> &[Member] {
        self.router.members()
    }

    /// The leader's address as currently believed.
    pub fn leader(&self) -> Option<&str> {
        self.router.leader()
    }

    /// The options.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The server that answered the latest successful call.
    pub fn last_served_by(&self) -> Option<&str> {
        self.last_served_by.as_deref()
    }

    /// Attempts made beyond the first one of each call, over this client's life
    /// (following a leader hint counts as one).
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Asks for the member list once: the believed leader first, then live members,
    /// other members, the seeds, and recently failed addresses last; the first answer
    /// wins. Each address is asked at most once. A `PERMISSION_DENIED` answer (the
    /// identity may not `describe`) is not an error: the client then routes with the
    /// seeds alone, and only [`ClusterClient::servers`] and
    /// [`ClusterClient::status_all`] report the refusal.
    pub fn refresh(&mut self) -> Result<()> {
        let mut order = self.router.discovery_order();
        order.sort_by_key(|a| self.recent_failures.contains(a));
        let mut last_err = None;
        for addr in order {
            match self.conn(&addr).and_then(|c| c.servers()) {
                Ok(servers) => {
                    self.router.update(servers, &addr);
                    self.forget_failure(&addr);
                    self.remember_members();
                    return Ok(());
                }
                Err(ClientError::Server {
                    code: ErrorCode::PermissionDenied,
                    message,
                    ..
                }) => {
                    // Reading needs only `consume`, producing only `produce`: without
                    // `describe`, route with the seeds and follow NOT_LEADER hints.
                    log::debug!("GetServers refused by {addr} ({message}); routing with the seeds");
                    self.discovery_denied = Some(message);
                    self.router.without_discovery();
                    return Ok(());
                }
                Err(e) => {
                    log::debug!("GetServers from {addr} failed: {e}");
                    self.note_failure(&addr);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Protocol("no server to ask".into())))
    }

    /// `PERMISSION_DENIED` if GetServers was refused (see [`ClusterClient::refresh`]).
    fn check_discovery_allowed(&self) -> Result<()> {
        match &self.discovery_denied {
            Some(message) => Err(ClientError::Server {
                code: ErrorCode::PermissionDenied,
                message: message.clone(),
                leader_hint: None,
            }),
            None => Ok(()),
        }
    }

    /// Saves the member addresses in the member cache, if there is one.
    fn remember_members(&self) {
        if let Some(cache) = &self.config.member_cache {
            let addrs: Vec<String> = self
                .router
                .members()
                .iter()
                .filter(|m| !m.addr.is_empty())
                .map(|m| m.addr.clone())
                .collect();
            cache.save(&addrs);
        }
    }

    /// [`ClusterClient::refresh`] with the retry budget.
    pub fn refresh_with_retry(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.config.retry.clone());
        loop {
            let err = match self.refresh() {
                Ok(()) => return Ok(()),
                // Not transient (e.g. UNAUTHENTICATED, PERMISSION_DENIED): say so now.
                Err(e) if classify(&e, false) == Next::Fail => return Err(e),
                Err(e) => e,
            };
            match backoff.next_delay(started.elapsed(), self.jitter.next_u64()) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(give_up(err, backoff.attempts(), started.elapsed())),
            }
        }
    }

    /// The current member list, freshly asked (with retries).
    pub fn servers(&mut self) -> Result<Vec<Member>> {
        self.refresh_with_retry()?;
        self.check_discovery_allowed()?;
        Ok(self.router.members().to_vec())
    }

    /// Refreshes until a leader is known (within the retry budget); returns its address.
    pub fn find_leader(&mut self) -> Result<String> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.config.retry.clone());
        loop {
            let err = match self.refresh().and_then(|()| self.check_discovery_allowed()) {
                Ok(()) => match self.router.leader() {
                    Some(l) => return Ok(l.to_string()),
                    None => ClientError::Server {
                        code: ErrorCode::Unavailable,
                        message: "no leader is known to the cluster right now".into(),
                        leader_hint: None,
                    },
                },
                Err(e) => e,
            };
            match backoff.next_delay(started.elapsed(), self.jitter.next_u64()) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(give_up(err, backoff.attempts(), started.elapsed())),
            }
        }
    }

    /// A new connection of its own to the leader (for pipelining, e.g. `clog bench`).
    /// It does not follow leader changes: errors on it are the caller's to handle.
    pub fn leader_connection(&mut self) -> Result<Client> {
        let leader = self.find_leader()?;
        Client::connect_with(leader.as_str(), self.options_for(&leader))
    }

    /// A new connection of its own to the next read target (a follower if any).
    pub fn read_connection(&mut self) -> Result<Client> {
        if self.router.is_stale() {
            self.refresh_with_retry()?;
        }
        let target = self.router.read_target().ok_or_else(no_server)?;
        Client::connect_with(target.as_str(), self.options_for(&target))
    }

    /// Appends one record at the leader; returns its offset once committed.
    pub fn produce(&mut self, value: &[u8]) -> Result<Offset> {
        self.run(Route::Write, |c| c.produce(value)).map(|(_, o)| o)
    }

    /// Like [`ClusterClient::produce`], also telling which server acknowledged.
    pub fn produce_via(&mut self, value: &[u8]) -> Result<(String, Offset)> {
        self.run(Route::Write, |c| c.produce(value))
    }

    /// Appends records at contiguous offsets at the leader (all or none); returns the
    /// first offset.
    pub fn produce_batch(&mut self, values: &[&[u8]]) -> Result<Offset> {
        self.run(Route::Write, |c| c.produce_batch(values))
            .map(|(_, o)| o)
    }

    /// The first record at an offset ≥ `offset`, from a follower if possible.
    pub fn consume(&mut self, offset: Offset) -> Result<Record> {
        self.run(Route::Read, |c| c.consume(offset)).map(|(_, r)| r)
    }

    /// Records from `offset` on (see [`Client::fetch`]), from a follower if possible.
    pub fn fetch(
        &mut self,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<FetchResult> {
        self.run(Route::Read, |c| c.fetch(offset, max_bytes, max_wait_ms))
            .map(|(_, f)| f)
    }

    /// The leader's status (while no leader is known: some member's), with retries.
    pub fn leader_status(&mut self) -> Result<StatusInfo> {
        self.run(Route::Write, |c| c.status()).map(|(_, s)| s)
    }

    /// Every member's own status, asked once each after refreshing the list (one
    /// attempt per member: a node that does not answer shows its error).
    pub fn status_all(&mut self) -> Result<Vec<(Member, Result<StatusInfo>)>> {
        self.refresh_with_retry()?;
        self.check_discovery_allowed()?;
        let members = self.router.members().to_vec();
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let status = self.conn(&m.addr).and_then(|c| c.status());
            if status.is_err() {
                self.conns.remove(&m.addr);
            }
            out.push((m, status));
        }
        Ok(out)
    }

    /// Runs `op` against the server `route` picks, retrying as the module doc says.
    /// Returns the address that answered and the result.
    fn run<T>(
        &mut self,
        route: Route,
        mut op: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<(String, T)> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.config.retry.clone());
        let mut forced: Option<String> = None;
        // Bounded by `backoff`: every pass either returns or consumes an attempt.
        loop {
            if forced.is_none() && self.router.is_stale() {
                if let Err(e) = self.refresh() {
                    log::debug!("member list refresh failed: {e}");
                }
            }
            let target = match forced.take() {
                Some(t) => t,
                None => match route {
                    Route::Write => self.router.write_target(),
                    Route::Read => self.router.read_target(),
                }
                .ok_or_else(no_server)?,
            };
            let err = match self.conn(&target).and_then(&mut op) {
                Ok(v) => {
                    self.forget_failure(&target);
                    self.last_served_by = Some(target.clone());
                    return Ok((target, v));
                }
                Err(e) => e,
            };
            let from_leader = self.router.leader() == Some(target.as_str());
            let next = classify(&err, from_leader);
            log::debug!(
                "attempt {} at {target} failed: {err} -> {next:?}",
                backoff.attempts()
            );
            match next {
                Next::Fail | Next::RefreshMetadata => return Err(err),
                Next::FollowLeader(leader) => {
                    if self.router.follow_hint(&target, &leader)
                        && backoff.try_immediate(started.elapsed())
                    {
                        self.retries += 1;
                        forced = Some(leader);
                        continue;
                    }
                }
                Next::AskLeader => {
                    let leader = self.router.leader().map(str::to_string);
                    match leader {
                        Some(l) if l != target && backoff.try_immediate(started.elapsed()) => {
                            self.retries += 1;
                            forced = Some(l);
                            continue;
                        }
                        _ => return Err(err),
                    }
                }
                Next::Retry { drop_conn } => {
                    if drop_conn {
                        self.conns.remove(&target);
                    }
                    self.note_failure(&target);
                    self.router.on_failure(&target);
                }
            }
            match backoff.next_delay(started.elapsed(), self.jitter.next_u64()) {
                Some(wait) => {
                    self.retries += 1;
                    std::thread::sleep(wait);
                }
                None => return Err(give_up(err, backoff.attempts(), started.elapsed())),
            }
        }
    }

    /// The cached connection to `addr`, connecting if needed (evicting another when
    /// at the bound). A failed connect is returned as the attempt's error.
    fn conn(&mut self, addr: &str) -> Result<&mut Client> {
        if !self.conns.contains_key(addr) {
            if self.conns.len() >= self.config.max_connections.max(1) {
                if let Some(victim) = self.conns.keys().next().cloned() {
                    self.conns.remove(&victim);
                }
            }
            let client =
                Client::connect_with(addr, self.options_for(addr)).map_err(|e| match e {
                    // Say where: the caller may have tried several addresses.
                    ClientError::Io(io) => {
                        ClientError::Io(io::Error::new(io.kind(), format!("{addr}: {io}")))
                    }
                    other => other,
                })?;
            self.conns.insert(addr.to_string(), client);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ClientError::Protocol("connection vanished".into()))
    }

    /// The connection options for `addr` ([`ClusterConfig::per_target`] applied).
    fn options_for(&self, addr: &str) -> ClientConfig {
        let mut options = self.config.client.clone();
        if let Some(PerTarget(adjust)) = &self.config.per_target {
            adjust(addr, &mut options);
        }
        options
    }

    fn note_failure(&mut self, addr: &str) {
        self.forget_failure(addr);
        if self.recent_failures.len() >= MAX_RECENT_FAILURES {
            self.recent_failures.pop_front();
        }
        self.recent_failures.push_back(addr.to_string());
    }

    fn forget_failure(&mut self, addr: &str) {
        self.recent_failures.retain(|a| a != addr);
    }
}

fn no_server() -> ClientError {
    ClientError::Protocol("no server address known (no seeds given)".into())
}

fn is_refused(e: &ClientError) -> bool {
    matches!(e, ClientError::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused)
}

/// `err` with a note saying how long the client tried (the code is kept).
fn give_up(err: ClientError, attempts: u32, elapsed: Duration) -> ClientError {
    if attempts <= 1 {
        return err;
    }
    let note = format!(
        "gave up after {attempts} attempts in {} ms",
        elapsed.as_millis()
    );
    match err {
        ClientError::Server {
            code,
            message,
            leader_hint,
        } => ClientError::Server {
            code,
            message: format!("{message} ({note})"),
            leader_hint,
        },
        ClientError::Io(e) => ClientError::Io(io::Error::new(e.kind(), format!("{e} ({note})"))),
        ClientError::Protocol(m) => ClientError::Protocol(format!("{m} ({note})")),
        ClientError::Timeout => ClientError::Timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_split_on_commas() {
        assert_eq!(
            parse_seeds(" a:1, b:2,,c:3 "),
            vec!["a:1".to_string(), "b:2".into(), "c:3".into()]
        );
        assert!(parse_seeds(" , ").is_empty());
    }

    #[test]
    fn giving_up_keeps_the_code_and_says_how_long() {
        let e = give_up(
            ClientError::Server {
                code: ErrorCode::Unavailable,
                message: "no quorum".into(),
                leader_hint: None,
            },
            5,
            Duration::from_millis(1234),
        );
        assert_eq!(e.code(), Some(ErrorCode::Unavailable));
        assert!(
            e.to_string()
                .contains("gave up after 5 attempts in 1234 ms"),
            "{e}"
        );
        let e = give_up(ClientError::Timeout, 1, Duration::ZERO);
        assert!(matches!(e, ClientError::Timeout));
    }

    #[test]
    fn connecting_with_no_seeds_is_a_clear_error() {
        let err = ClusterClient::connect(ClusterConfig::new(" "))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no seed address"), "{err}");
    }

    #[test]
    fn connecting_to_nothing_fails_fast() {
        // Bind then drop a listener: its port now refuses connections.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let err = ClusterClient::connect(ClusterConfig::new(&addr.to_string()))
            .err()
            .unwrap();
        assert!(is_refused(&err), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
