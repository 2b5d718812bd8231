//! A blocking client for commitlog's binary protocol.
//!
//! [`Client`] owns one TCP connection to one server. The simple calls
//! ([`Client::produce`], [`Client::consume`], [`Client::fetch`], …) send one request
//! and wait for its response. For throughput, [`Client::send`] and [`Client::recv`]
//! pipeline: many requests may be in flight on the connection and responses come
//! back **in completion order** (the server may answer a later request first), each
//! matched to its request by correlation id. [`Pipeline`] wraps that with a bounded
//! window. A simple call made while pipelined requests are outstanding keeps their
//! responses aside (bounded by the number in flight) for later `recv` calls.
//!
//! Every call is bounded in time by the client's timeout (plus `max_wait_ms` for a
//! long-polling fetch); a timeout leaves the connection in an unknown state, so the
//! caller should reconnect. Errors are typed ([`ClientError`]): I/O, timeout, an
//! error answered by the server (with its stable code and, for `NOT_LEADER`, a leader
//! hint), or a protocol violation by the server.
//!
//! With [`ClientConfig::tls`] set, the connection is TLS with a client certificate
//! (module [`tls`]); everything else is unchanged. A server that requires TLS answers
//! a plaintext client with one `-ERR UNAUTHENTICATED` line, surfaced as
//! [`ClientError::Server`] with [`ErrorCode::Unauthenticated`].
//!
//! Cluster-aware routing (discover with `GetServers`, send produces to the leader,
//! spread reads, follow `NOT_LEADER` hints, retry with back-off) is the layer above
//! this type: [`cluster::ClusterClient`].

pub mod cluster;
pub mod histogram;
pub mod records;
pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use self::tls::{ClientTls, Stream};
use crate::types::{Offset, Term};
use crate::wire::{
    self, ApiKey, ErrorBody, ErrorCode, FetchPartition, FetchedPartition, LeaderHint, Limits,
    NodeInfo, Request, RequestFrame, ResponseBody, ServerInfo, StatusInfo, TopicChanges,
    TopicDescription, TopicMetadata, TopicPartition, TopicSettings, WireRecord,
};

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum ClientError {
    /// The connection failed (refused, reset, closed by the server, …).
    Io(io::Error),
    /// No response within the timeout. Reconnect before reusing the client.
    Timeout,
    /// The server answered with an error.
    Server {
        /// Stable error code.
        code: ErrorCode,
        /// What happened and what to do.
        message: String,
        /// Where the leader is, with `NOT_LEADER`.
        leader_hint: Option<LeaderHint>,
    },
    /// The server sent bytes this client cannot make sense of.
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if the server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The leader hint of a `NOT_LEADER` error.
    pub fn leader_hint(&self) -> Option<&LeaderHint> {
        match self {
            ClientError::Server { leader_hint, .. } => leader_hint.as_ref(),
            _ => None,
        }
    }

    fn from_body(body: ErrorBody) -> ClientError {
        ClientError::Server {
            code: body.code,
            message: body.message,
            leader_hint: body.leader_hint,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Timeout => write!(f, "timed out waiting for the server"),
            ClientError::Server { code, message, .. } => write!(f, "{code}: {message}"),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A record as read from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its offset.
    pub offset: Offset,
    /// The Raft term it was written in (0 on a single node).
    pub term: Term,
    /// The value.
    pub value: Vec<u8>,
}

impl From<WireRecord> for Record {
    fn from(r: WireRecord) -> Record {
        Record {
            offset: r.offset,
            term: r.term,
            value: r.value,
        }
    }
}

/// The answer to a [`Client::fetch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResult {
    /// Consumers can read up to here (exclusive).
    pub high_watermark: Offset,
    /// Records at increasing offsets ≥ the one asked (possibly none).
    pub records: Vec<Record>,
}

/// Options of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Bound on connecting and on waiting for each response.
    pub timeout: Duration,
    /// Largest response frame accepted.
    pub max_frame_bytes: u32,
    /// Speak TLS (see [`tls`]); `None` for plaintext.
    pub tls: Option<ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(10),
            max_frame_bytes: wire::MAX_FRAME_BYTES_CAP,
            tls: None,
        }
    }
}

/// A blocking connection to one server.
pub struct Client {
    stream: Stream,
    addr: SocketAddr,
    config: ClientConfig,
    next_correlation_id: u32,
    /// API and version of every request sent and not yet answered, by correlation
    /// id (a version-1 Fetch is answered in another layout).
    pending: HashMap<u32, (ApiKey, u16)>,
    /// Responses received while waiting for another one (bounded by `pending`).
    parked: VecDeque<(u32, Result<ResponseBody>)>,
    /// `rbuf[..rlen]` is received and not yet decoded; the rest stays initialized
    /// between reads so reading does not zero it again.
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    /// The socket's current read timeout (changing it is a system call, so it is
    /// only lowered when a deadline needs it, and raised when it became far too
    /// short; a read that times out early just tries again until the deadline).
    read_timeout: Option<Duration>,
}

impl Client {
    /// Connects to the first address of `addr` that accepts within `timeout`.
    pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Client> {
        Client::connect_with(
            addr,
            ClientConfig {
                timeout,
                ..ClientConfig::default()
            },
        )
    }

    /// Connects with explicit options.
    pub fn connect_with(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Client> {
        let mut last_err = None;
        // A name that does not resolve is a mistake, not a passing failure: it is
        // reported as `InvalidInput`, which the cluster client does not retry.
        let resolved = addr.to_socket_addrs().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot resolve the address: {e}"),
            )
        })?;
        for addr in resolved {
            match TcpStream::connect_timeout(&addr, config.timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(config.timeout))?;
                    let stream = match &config.tls {
                        Some(tls) => Stream::tls(stream, addr, tls, config.timeout)?,
                        None => Stream::Plain(stream),
                    };
                    return Ok(Client {
                        stream,
                        addr,
                        config,
                        next_correlation_id: 1,
                        pending: HashMap::new(),
                        parked: VecDeque::new(),
                        rbuf: Vec::new(),
                        rlen: 0,
                        wbuf: Vec::new(),
                        read_timeout: None,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .map(ClientError::from)
            .unwrap_or_else(|| ClientError::Protocol("address resolved to nothing".into())))
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests sent and not yet received.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Liveness check.
    pub fn ping(&mut self) -> Result<()> {
        match self.call(Request::Ping, Duration::ZERO)? {
            ResponseBody::Ping => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Appends one record; returns its offset once it is durable.
    pub fn produce(&mut self, value: &[u8]) -> Result<Offset> {
        match self.call(
            Request::Produce {
                target: TopicPartition::default_topic(),
                value: value.to_vec(),
            },
            Duration::ZERO,
        )? {
            ResponseBody::Produce { offset } => Ok(offset),
            other => Err(unexpected(&other)),
        }
    }

    /// Appends records at contiguous offsets (all or none); returns the first offset.
    pub fn produce_batch(&mut self, values: &[&[u8]]) -> Result<Offset> {
        let request = Request::ProduceBatch {
            target: TopicPartition::default_topic(),
            values: values.iter().map(|v| v.to_vec()).collect(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::ProduceBatch {
                first_offset,
                count,
            } if count as usize == values.len() => Ok(first_offset),
            other => Err(unexpected(&other)),
        }
    }

    /// The first record at an offset ≥ `offset`.
    pub fn consume(&mut self, offset: Offset) -> Result<Record> {
        let request = Request::Consume {
            target: TopicPartition::default_topic(),
            offset,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::Consume { record } => Ok(record.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Records from `offset` on, up to about `max_bytes`; if none is available yet,
    /// the server waits up to `max_wait_ms` for some.
    pub fn fetch(
        &mut self,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<FetchResult> {
        let request = Request::Fetch {
            offset,
            max_bytes,
            max_wait_ms,
        };
        let extra = Duration::from_millis(u64::from(max_wait_ms));
        match self.call(request, extra)? {
            ResponseBody::Fetch {
                high_watermark,
                records,
            } => Ok(FetchResult {
                high_watermark,
                records: records.into_iter().map(Record::from).collect(),
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// The cluster's servers.
    pub fn servers(&mut self) -> Result<Vec<ServerInfo>> {
        match self.call(Request::GetServers, Duration::ZERO)? {
            ResponseBody::GetServers { servers } => Ok(servers),
            other => Err(unexpected(&other)),
        }
    }

    /// The server's status.
    pub fn status(&mut self) -> Result<StatusInfo> {
        match self.call(Request::Status, Duration::ZERO)? {
            ResponseBody::Status(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Appends one record to `target`; returns its offset once it is durable. The
    /// default topic's partition 0 goes out as version 0, any other as version 1.
    pub fn produce_to(&mut self, target: &TopicPartition, value: &[u8]) -> Result<Offset> {
        let request = Request::Produce {
            target: target.clone(),
            value: value.to_vec(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::Produce { offset } => Ok(offset),
            other => Err(unexpected(&other)),
        }
    }

    /// Appends records to `target` at contiguous offsets (all or none); returns the
    /// first offset.
    pub fn produce_batch_to(
        &mut self,
        target: &TopicPartition,
        values: &[&[u8]],
    ) -> Result<Offset> {
        let request = Request::ProduceBatch {
            target: target.clone(),
            values: values.iter().map(|v| v.to_vec()).collect(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::ProduceBatch {
                first_offset,
                count,
            } if count as usize == values.len() => Ok(first_offset),
            other => Err(unexpected(&other)),
        }
    }

    /// The first record of `target` at an offset ≥ `offset`.
    pub fn consume_from(&mut self, target: &TopicPartition, offset: Offset) -> Result<Record> {
        let request = Request::Consume {
            target: target.clone(),
            offset,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::Consume { record } => Ok(record.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Fetch version 1: records of several partitions in one request (at most
    /// [`wire::MAX_FETCH_PARTITIONS`]), up to about `max_bytes` in all; waits up to
    /// `max_wait_ms` when no partition has any yet. One entry per partition asked,
    /// in order; a partition's error (e.g. `NOT_LEADER` for a partition this server
    /// does not host) leaves the others unaffected.
    pub fn fetch_partitions(
        &mut self,
        partitions: &[FetchPartition],
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<Vec<FetchedPartition>> {
        let request = Request::FetchPartitions {
            max_wait_ms,
            max_bytes,
            partitions: partitions.to_vec(),
        };
        let extra = Duration::from_millis(u64::from(max_wait_ms));
        match self.call(request, extra)? {
            ResponseBody::FetchPartitions { partitions } => Ok(partitions),
            other => Err(unexpected(&other)),
        }
    }

    /// The cluster's nodes and where the named topics' partitions live (every topic
    /// when `topics` is empty). Leaders are as this server knows them: `NodeId(0)`
    /// for a partition it does not host.
    pub fn metadata(&mut self, topics: &[&str]) -> Result<(Vec<NodeInfo>, Vec<TopicMetadata>)> {
        let request = Request::Metadata {
            topics: topics.iter().map(|t| t.to_string()).collect(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::Metadata { nodes, topics } => Ok((nodes, topics)),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates topic `name` (only the metadata leader accepts: others answer
    /// `NOT_LEADER` with its address); returns it as created.
    pub fn create_topic(
        &mut self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicDescription> {
        let request = Request::CreateTopic {
            name: name.to_string(),
            settings,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::CreateTopic(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// Topic `name`'s settings and partitions.
    pub fn describe_topic(&mut self, name: &str) -> Result<TopicDescription> {
        let request = Request::DescribeTopic {
            name: name.to_string(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::DescribeTopic(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes topic `name`'s settings (metadata leader only, as
    /// [`Client::create_topic`]); returns it as altered.
    pub fn alter_topic(&mut self, name: &str, changes: TopicChanges) -> Result<TopicDescription> {
        let request = Request::AlterTopic {
            name: name.to_string(),
            changes,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::AlterTopic(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes topic `name` and its records (metadata leader only).
    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        let request = Request::DeleteTopic {
            name: name.to_string(),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::DeleteTopic => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one request without waiting; returns its correlation id.
    pub fn send(&mut self, request: Request) -> Result<u32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let api = request.api_key();
        let frame = RequestFrame::new(correlation_id, request);
        let version = frame.wire_version();
        self.wbuf.clear();
        wire::encode_request(&frame, &mut self.wbuf);
        self.stream.write_all(&self.wbuf)?;
        self.pending.insert(correlation_id, (api, version));
        Ok(correlation_id)
    }

    /// Sends a produce of `value` without waiting; returns its correlation id.
    /// The frame is encoded straight from `value` (no copy into a request).
    pub fn send_produce(&mut self, value: &[u8]) -> Result<u32> {
        let correlation_id = self.next_correlation_id;
        self.wbuf.clear();
        encode_produce(correlation_id, value, &mut self.wbuf)?;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        self.stream.write_all(&self.wbuf)?;
        self.pending.insert(correlation_id, (ApiKey::Produce, 0));
        Ok(correlation_id)
    }

    /// Receives the next response to any pipelined request, in completion order:
    /// `(correlation_id, result)`. Waits up to the client timeout.
    pub fn recv(&mut self) -> Result<(u32, Result<ResponseBody>)> {
        if let Some(parked) = self.parked.pop_front() {
            return Ok(parked);
        }
        if self.pending.is_empty() {
            return Err(ClientError::Protocol(
                "recv with no request in flight".to_string(),
            ));
        }
        let deadline = Instant::now() + self.config.timeout;
        self.read_response(deadline)
    }

    /// Sends `request` and waits for its response, up to the timeout plus `extra`.
    fn call(&mut self, request: Request, extra: Duration) -> Result<ResponseBody> {
        let correlation_id = self.send(request)?;
        let deadline = Instant::now() + self.config.timeout + extra;
        // Bounded: every iteration consumes one response of a pending request.
        loop {
            let (id, result) = self.read_response(deadline)?;
            if id == correlation_id {
                return result;
            }
            self.parked.push_back((id, result));
        }
    }

    /// Reads one response frame and matches it to a pending request.
    fn read_response(&mut self, deadline: Instant) -> Result<(u32, Result<ResponseBody>)> {
        let frame_len = self.read_frame(deadline)?;
        self.take_response(frame_len)
    }

    /// Decodes the response frame of `frame_len` bytes at the front of the read
    /// buffer, matches it to a pending request and consumes it.
    fn take_response(&mut self, frame_len: usize) -> Result<(u32, Result<ResponseBody>)> {
        let frame = &self.rbuf[..frame_len];
        let correlation_id = frame_correlation_id(frame)?;
        let (api, version) = match self.pending.remove(&correlation_id) {
            Some(sent) => sent,
            None => {
                // Not ours: a connection-level error (correlation id 0), e.g.
                // TOO_MANY_CONNECTIONS or MALFORMED, ends the conversation.
                let decoded = wire::decode_response(frame, ApiKey::Ping);
                self.consume_front(frame_len);
                return match decoded {
                    Ok(wire::ResponseFrame {
                        result: Err(body), ..
                    }) => Err(ClientError::from_body(body)),
                    _ => Err(ClientError::Protocol(format!(
                        "response with unknown correlation id {correlation_id}"
                    ))),
                };
            }
        };
        let decoded = wire::decode_response_versioned(frame, api, version);
        self.consume_front(frame_len);
        match decoded {
            Ok(response) => Ok((
                correlation_id,
                response.result.map_err(ClientError::from_body),
            )),
            Err(e) => Err(ClientError::Protocol(format!("bad {api} response: {e}"))),
        }
    }

    /// Drops the first `n` received bytes.
    fn consume_front(&mut self, n: usize) {
        self.rbuf.copy_within(n..self.rlen, 0);
        self.rlen -= n;
        if self.rlen == 0 && self.rbuf.len() > RETAINED_READ_BUFFER_BYTES {
            self.rbuf = Vec::new();
        }
    }

    /// Like [`Client::fetch`], but lends each record to `visit` straight from the
    /// response frame instead of copying it (no allocation per record), and returns
    /// the high watermark and the number of records. For fast consumers.
    pub fn fetch_with<F>(
        &mut self,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
        visit: F,
    ) -> Result<(Offset, u64)>
    where
        F: FnMut(wire::BorrowedRecord<'_>),
    {
        let correlation_id = self.send_fetch(offset, max_bytes, max_wait_ms)?;
        self.recv_fetch_with(correlation_id, max_wait_ms, visit)
    }

    /// Sends a `Fetch` without waiting (see [`Client::recv_fetch_with`]); returns
    /// its correlation id. With two in flight a consumer overlaps the server's work
    /// on the next batch with its own on the current one.
    pub fn send_fetch(&mut self, offset: Offset, max_bytes: u32, max_wait_ms: u32) -> Result<u32> {
        self.send(Request::Fetch {
            offset,
            max_bytes,
            max_wait_ms,
        })
    }

    /// Sends a `Fetch` of `target` without waiting: version 0 for the default
    /// topic's partition 0, else version 1 asking for that one partition. Returns its
    /// correlation id; [`Client::recv_fetch_with`] receives the answer.
    pub fn send_fetch_to(
        &mut self,
        target: &TopicPartition,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<u32> {
        if target.is_default() {
            return self.send_fetch(offset, max_bytes, max_wait_ms);
        }
        self.send(Request::FetchPartitions {
            max_wait_ms,
            max_bytes,
            partitions: vec![FetchPartition {
                target: target.clone(),
                offset,
                max_bytes,
            }],
        })
    }

    /// Waits for the response to the `Fetch` sent as `correlation_id` and lends its
    /// records to `visit` as [`Client::fetch_with`] does. Responses to other
    /// requests that arrive first are kept for [`Client::recv`]. A version-1 Fetch
    /// must have asked for one partition ([`Client::send_fetch_to`]); that
    /// partition's error is returned as the call's error.
    pub fn recv_fetch_with<F>(
        &mut self,
        correlation_id: u32,
        max_wait_ms: u32,
        mut visit: F,
    ) -> Result<(Offset, u64)>
    where
        F: FnMut(wire::BorrowedRecord<'_>),
    {
        if let Some(i) = self.parked.iter().position(|(id, _)| *id == correlation_id) {
            // Already received (decoded) while waiting for something else.
            return match self.parked.remove(i) {
                Some((_, result)) => visit_decoded(result?, visit),
                None => Err(ClientError::Protocol("lost a parked response".into())),
            };
        }
        let Some(&(_, version)) = self.pending.get(&correlation_id) else {
            return Err(ClientError::Protocol(format!(
                "no Fetch {correlation_id} in flight"
            )));
        };
        let deadline =
            Instant::now() + self.config.timeout + Duration::from_millis(u64::from(max_wait_ms));
        // Bounded: every iteration consumes one response of a pending request.
        loop {
            let frame_len = self.read_frame(deadline)?;
            let id = frame_correlation_id(&self.rbuf[..frame_len])?;
            if id != correlation_id {
                let parked = self.take_response(frame_len)?;
                self.parked.push_back(parked);
                continue;
            }
            self.pending.remove(&correlation_id);
            let result = visit_fetch_frame(&self.rbuf[..frame_len], version, &mut visit);
            self.consume_front(frame_len);
            return result;
        }
    }

    /// Reads until the read buffer starts with a whole frame; returns its length.
    fn read_frame(&mut self, deadline: Instant) -> Result<usize> {
        let limits = Limits {
            max_frame_bytes: self.config.max_frame_bytes,
        };
        // Bounded by the deadline: every read either adds bytes or times out.
        loop {
            let received = &self.rbuf[..self.rlen];
            let want = match wire::frame_len(received, &limits) {
                Ok(Some(n)) => return Ok(n),
                // Read the rest of a frame whose length is known in one go.
                Ok(None) if received.len() >= 4 => {
                    let len =
                        u32::from_be_bytes([received[0], received[1], received[2], received[3]]);
                    (len as usize + 4)
                        .saturating_sub(received.len())
                        .max(READ_CHUNK_BYTES)
                }
                Ok(None) => READ_CHUNK_BYTES,
                Err(e) => {
                    if received.starts_with(b"-ERR") {
                        return Err(text_error(received));
                    }
                    return Err(ClientError::Protocol(format!("bad response frame: {e}")));
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout);
            }
            let remaining = deadline - now;
            let reset = match self.read_timeout {
                None => true,
                Some(current) => current > remaining || current < remaining / 4,
            };
            if reset {
                // Half the remaining time (at least 1 ms): consecutive calls with the
                // same timeout then keep it without another system call.
                let timeout = (remaining / 2).max(Duration::from_millis(1)).min(remaining);
                self.stream.tcp().set_read_timeout(Some(timeout))?;
                self.read_timeout = Some(timeout);
            }
            let start = self.rlen;
            if self.rbuf.len() < start + want {
                self.rbuf.resize(start + want, 0);
            }
            let read = self.stream.read(&mut self.rbuf[start..]);
            match read {
                Ok(0) => {
                    if self.rbuf[..self.rlen].starts_with(b"-ERR") {
                        return Err(text_error(&self.rbuf[..self.rlen]));
                    }
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                Ok(n) => self.rlen = start + n,
                Err(e) => {
                    let early_timeout = matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                    if e.kind() == io::ErrorKind::Interrupted || early_timeout {
                        continue; // the deadline check above ends the wait
                    }
                    return Err(e.into());
                }
            }
        }
    }
}

/// Lends the records of a Fetch answer frame (version 0, or version 1 with one
/// partition) to `visit` straight from the frame; the high watermark and the count.
fn visit_fetch_frame<F>(frame: &[u8], version: u16, visit: &mut F) -> Result<(Offset, u64)>
where
    F: FnMut(wire::BorrowedRecord<'_>),
{
    let body = if version == 0 {
        let view = wire::decode_fetch_response(frame)
            .map_err(|e| ClientError::Protocol(format!("bad Fetch response: {e}")))?;
        view.result.map_err(ClientError::from_body)?
    } else {
        let view = wire::decode_fetch_partitions_response(frame)
            .map_err(|e| ClientError::Protocol(format!("bad Fetch response: {e}")))?;
        let mut partitions = view.result.map_err(ClientError::from_body)?;
        if partitions.len() != 1 {
            return Err(ClientError::Protocol(format!(
                "a Fetch of one partition was answered with {}",
                partitions.len()
            )));
        }
        match partitions.pop() {
            Some(p) => p.result.map_err(ClientError::from_body)?,
            None => return Err(ClientError::Protocol("an empty Fetch answer".into())),
        }
    };
    let mut count = 0u64;
    for record in body.records {
        visit(record);
        count += 1;
    }
    Ok((body.high_watermark, count))
}

/// [`visit_fetch_frame`] for an answer already decoded (kept aside while waiting
/// for another).
fn visit_decoded<F>(body: ResponseBody, mut visit: F) -> Result<(Offset, u64)>
where
    F: FnMut(wire::BorrowedRecord<'_>),
{
    let (high_watermark, records) = match body {
        ResponseBody::Fetch {
            high_watermark,
            records,
        } => (high_watermark, records),
        ResponseBody::FetchPartitions { mut partitions } if partitions.len() == 1 => {
            let p = partitions.remove(0);
            if let Some(error) = p.error {
                return Err(ClientError::from_body(error));
            }
            (p.high_watermark, p.records)
        }
        other => return Err(unexpected(&other)),
    };
    for r in &records {
        visit(wire::BorrowedRecord {
            offset: r.offset,
            term: r.term,
            kind: r.kind,
            value: &r.value,
        });
    }
    Ok((high_watermark, records.len() as u64))
}

/// Bytes asked of the socket per read when no bigger frame is known to be coming.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A read buffer grown past this (by a big response) is freed once empty.
const RETAINED_READ_BUFFER_BYTES: usize = 16 << 20;

/// Appends a `Produce` request frame for `value`: the bytes
/// `wire::encode_request` writes for `Request::Produce`, without owning the value.
fn encode_produce(correlation_id: u32, value: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let too_big =
        || ClientError::Protocol(format!("a record of {} bytes is too large", value.len()));
    let value_len = u32::try_from(value.len()).map_err(|_| too_big())?;
    let frame_len =
        u32::try_from(wire::REQUEST_HEADER_BYTES + 4 + value.len()).map_err(|_| too_big())?;
    out.reserve(wire::LEN_PREFIX_BYTES + frame_len as usize);
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.extend_from_slice(&ApiKey::Produce.as_u16().to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // api_version
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&value_len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// The correlation id of a response frame (`u32 len | u32 correlation_id | ...`).
fn frame_correlation_id(frame: &[u8]) -> Result<u32> {
    frame
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| ClientError::Protocol("short response frame".into()))
}

/// A server that refused the connection before knowing its protocol answers with a
/// text line (`-ERR TOO_MANY_CONNECTIONS ...`).
fn text_error(buf: &[u8]) -> ClientError {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let mut words = line.trim_end().splitn(3, ' ');
    let _ = words.next();
    let name = words.next().unwrap_or("");
    let code = ErrorCode::ALL
        .iter()
        .copied()
        .find(|c| c.name() == name)
        .unwrap_or(ErrorCode::Internal);
    ClientError::Server {
        code,
        message: words.next().unwrap_or("").to_string(),
        leader_hint: None,
    }
}

fn unexpected(body: &ResponseBody) -> ClientError {
    ClientError::Protocol(format!("unexpected {} response", body.api_key()))
}

/// Keeps up to `window` produces in flight on one client, for benchmarks and bulk
/// loads. Acknowledgements arrive in completion order.
pub struct Pipeline<'a> {
    client: &'a mut Client,
    window: usize,
    sent_at: HashMap<u32, Instant>,
    /// Where produces go; `None`: the default topic's partition 0 (version 0).
    target: Option<TopicPartition>,
}

/// One acknowledged (or failed) produce of a [`Pipeline`].
#[derive(Debug)]
pub struct Ack {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// Its offset, or the error.
    pub result: Result<Offset>,
    /// Time from send to acknowledgement.
    pub latency: Duration,
}

impl<'a> Pipeline<'a> {
    /// A pipeline over `client` with at most `window` (≥ 1) requests in flight.
    pub fn new(client: &'a mut Client, window: usize) -> Pipeline<'a> {
        Pipeline {
            client,
            window: window.max(1),
            sent_at: HashMap::new(),
            target: None,
        }
    }

    /// A pipeline whose produces go to `target` (version 1 unless it is the
    /// default topic's partition 0).
    pub fn to_target(
        client: &'a mut Client,
        window: usize,
        target: TopicPartition,
    ) -> Pipeline<'a> {
        let mut pipeline = Pipeline::new(client, window);
        pipeline.target = Some(target).filter(|t| !t.is_default());
        pipeline
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.sent_at.len()
    }

    /// Sends a produce, first waiting for one acknowledgement if the window is full
    /// (returned, so the caller can record it).
    pub fn produce(&mut self, value: &[u8]) -> Result<Option<Ack>> {
        let ack = if self.sent_at.len() >= self.window {
            Some(self.next_ack()?)
        } else {
            None
        };
        let id = match &self.target {
            None => self.client.send_produce(value)?,
            Some(target) => self.client.send(Request::Produce {
                target: target.clone(),
                value: value.to_vec(),
            })?,
        };
        self.sent_at.insert(id, Instant::now());
        Ok(ack)
    }

    /// Waits for the next acknowledgement (`Protocol` error if none is in flight).
    pub fn next_ack(&mut self) -> Result<Ack> {
        let (correlation_id, result) = self.client.recv()?;
        let latency = self
            .sent_at
            .remove(&correlation_id)
            .map_or(Duration::ZERO, |t| t.elapsed());
        let result = result.and_then(|body| match body {
            ResponseBody::Produce { offset } => Ok(offset),
            other => Err(unexpected(&other)),
        });
        Ok(Ack {
            correlation_id,
            result,
            latency,
        })
    }

    /// Waits for every outstanding acknowledgement.
    pub fn drain(&mut self) -> Result<Vec<Ack>> {
        let mut acks = Vec::with_capacity(self.sent_at.len());
        // Bounded by the number in flight.
        while !self.sent_at.is_empty() {
            acks.push(self.next_ack()?);
        }
        Ok(acks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_produce_matches_the_wire_encoder() {
        for value in [&b""[..], b"x", &[7u8; 1000][..]] {
            let mut ours = Vec::new();
            encode_produce(0xdead_beef, value, &mut ours).unwrap();
            let mut theirs = Vec::new();
            wire::encode_request(
                &RequestFrame::new(
                    0xdead_beef,
                    Request::Produce {
                        target: crate::wire::TopicPartition::default_topic(),
                        value: value.to_vec(),
                    },
                ),
                &mut theirs,
            );
            assert_eq!(ours, theirs);
        }
    }
}
