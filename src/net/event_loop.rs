//! The mio event loop: accept, read, frame, dispatch, write, limits. See the module
//! docs of [`crate::net`] for the rules this file implements.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::responder::{encode_for, error_body, Completion, CompletionSink, ConnKey, WakeFlag};
use super::tls::{Link, Security};
use super::{ConnContext, Protocol, Responder, ServerConfig, Service};
use crate::wire::{self, ErrorCode, Limits, ResponseFrame};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Bytes read from a socket per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Upper bound of read/process/write rounds per connection per wake-up, so one busy
/// connection cannot starve the others; a connection that hits it is driven again on
/// the next loop iteration.
const MAX_ROUNDS_PER_DRIVE: usize = 32;
/// Buffers larger than this are freed once empty, so an idle connection that once
/// moved a big frame does not keep its memory.
const RETAINED_BUFFER_BYTES: usize = 1 << 20;
/// The response size assumed for a connection before any response was seen.
const INITIAL_RESPONSE_ESTIMATE_BYTES: usize = 4096;
/// Connections over `max_connections` held just long enough to be told why.
const MAX_REJECTING: usize = 64;
/// How long a rejected connection may take to send its first bytes.
const REJECT_WAIT: Duration = Duration::from_secs(1);
/// How long a connection closed after an error waits for the client to close first.
const LINGER: Duration = Duration::from_secs(1);
/// A TLS alert record: fatal `handshake_failure`, sent to a client starting TLS.
const TLS_HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: ServerConfig,
    service: Arc<dyn Service>,
    sink: Arc<CompletionSink>,
    completions: Receiver<Completion>,
    shutdown: Arc<AtomicBool>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_generation: u64,
    active: usize,
    rejecting: usize,
    security: Option<Security>,
}

/// Asks a running server to shut down gracefully, from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// Stops accepting, finishes in-flight requests, and makes [`Server::run`] return.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("failed to wake the event loop for shutdown: {e}");
        }
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`local_addr`](Server::local_addr)).
    pub fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        service: Arc<dyn Service>,
    ) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        Server::from_listener(listener, config, service)
    }

    /// Serves on an already bound listener (so the caller can learn the port first).
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: ServerConfig,
        service: Arc<dyn Service>,
    ) -> io::Result<Server> {
        if config.max_frame_bytes > super::MAX_FRAME_BYTES_LIMIT {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_frame_bytes {} is above the protocol limit {}",
                    config.max_frame_bytes,
                    super::MAX_FRAME_BYTES_LIMIT
                ),
            ));
        }
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            config,
            service,
            sink: Arc::new(CompletionSink {
                tx,
                waker,
                wake: WakeFlag::new(),
                metrics: std::sync::OnceLock::new(),
            }),
            completions: rx,
            shutdown: Arc::new(AtomicBool::new(false)),
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            active: 0,
            rejecting: 0,
            security: None,
        })
    }

    /// Enables TLS and/or the ACL (see [`super::tls`]). Without this, plaintext only.
    pub fn with_security(mut self, security: Security) -> Server {
        self.security = Some(security);
        self
    }

    /// Counts requests, latencies, produced/consumed records and open connections
    /// into `metrics` (see [`crate::metrics`]). Without this, nothing is counted.
    pub fn with_metrics(self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Server {
        if self.sink.metrics.set(metrics).is_err() {
            log::warn!("metrics were already set for this server; keeping the first");
        }
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shutdown: Arc::clone(&self.shutdown),
            waker: Arc::clone(&self.sink.waker),
        }
    }

    /// Runs the event loop until [`ServerHandle::shutdown`] is called and every
    /// connection has drained (or the grace period has passed).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let sweep_every = Duration::from_millis((self.config.idle_timeout_ms / 4).clamp(10, 1000));
        let mut next_sweep = Instant::now() + sweep_every;
        let mut retry: Vec<usize> = Vec::new();
        let mut accept_retry = false;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let timeout = if !retry.is_empty() {
                Duration::ZERO
            } else if accept_retry {
                Duration::from_millis(10)
            } else {
                next_sweep.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut to_drive = std::mem::take(&mut retry);
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_retry = true,
                    WAKER => {}
                    Token(index) => {
                        if let Some(Some(conn)) = self.conns.get_mut(index) {
                            conn.read_drained = false;
                        }
                        to_drive.push(index)
                    }
                }
            }
            if accept_retry && self.listener.is_some() {
                accept_retry = self.accept_all();
            }
            // Completions: cheap to check every iteration, and required after a wake.
            self.sink.wake.clear();
            self.take_completions(&mut to_drive);
            to_drive.sort_unstable();
            to_drive.dedup();
            let now = Instant::now();
            for index in to_drive {
                if self.drive(index, now) {
                    retry.push(index);
                }
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + sweep_every;
            }
            if drain_deadline.is_none() && self.shutdown.load(Ordering::SeqCst) {
                drain_deadline = Some(self.begin_drain(now, &mut retry));
            }
            if let Some(deadline) = drain_deadline {
                if self.active + self.rejecting == 0 {
                    log::info!("all connections drained");
                    return Ok(());
                }
                if now >= deadline {
                    log::warn!(
                        "shutdown grace period over; closing {} connection(s) with work in flight",
                        self.active + self.rejecting
                    );
                    for index in 0..self.conns.len() {
                        self.close(index, "shutdown grace period over");
                    }
                    return Ok(());
                }
                // Bound the poll timeout while draining so the deadline is noticed.
                if next_sweep > now + Duration::from_millis(50) {
                    next_sweep = now + Duration::from_millis(50);
                }
            }
        }
    }

    /// Accepts until `WouldBlock`. Returns true if accepting should be retried soon
    /// (an error such as running out of file descriptors).
    fn accept_all(&mut self) -> bool {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return false;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept failed: {e}; retrying shortly");
                    return true;
                }
            };
            let rejecting = self.active >= self.config.max_connections;
            if rejecting && self.rejecting >= MAX_REJECTING {
                log::info!("{peer}: over max connections; closing without reply");
                drop(stream);
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("{peer}: set_nodelay failed: {e}");
            }
            let index = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            self.next_generation += 1;
            let key = ConnKey {
                index,
                generation: self.next_generation,
            };
            let mut conn = Conn::new(key, stream, peer, rejecting);
            if let Err(e) = self.poll.registry().register(
                &mut conn.stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("{peer}: register failed: {e}");
                self.free.push(index);
                continue;
            }
            if rejecting {
                self.rejecting += 1;
                log::info!(
                    "{peer}: rejecting connection {}: {} connections is the limit",
                    key.generation,
                    self.config.max_connections
                );
            } else {
                self.active += 1;
                if let Some(m) = self.sink.metrics.get() {
                    m.set_open_connections(self.active);
                }
                log::debug!("{peer}: accepted connection {}", key.generation);
            }
            self.conns[index] = Some(conn);
        }
    }

    fn take_completions(&mut self, to_drive: &mut Vec<usize>) {
        // Bounded: at most one completion per in-flight request.
        while let Ok(completion) = self.completions.try_recv() {
            let Some(Some(conn)) = self.conns.get_mut(completion.key.index) else {
                continue;
            };
            if conn.key != completion.key {
                continue; // the connection closed; its successor must not see this
            }
            conn.in_flight = conn.in_flight.saturating_sub(1);
            conn.avg_response_bytes = (conn.avg_response_bytes * 7 + completion.bytes.len()) / 8;
            if conn.pending_out() == 0 && completion.bytes.len() > conn.wbuf.capacity() {
                // A big response (a Fetch) becomes the write buffer: no copy.
                conn.wbuf = completion.bytes;
                conn.wpos = 0;
            } else {
                conn.wbuf.extend_from_slice(&completion.bytes);
            }
            to_drive.push(completion.key.index);
        }
    }

    /// Reads, processes and writes one connection. Returns true if it should be driven
    /// again on the next iteration (it hit the per-wake-up round limit).
    fn drive(&mut self, index: usize, now: Instant) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(index) else {
            return false;
        };
        let env = Env {
            config: &self.config,
            service: &*self.service,
            sink: &self.sink,
            security: self.security.as_ref(),
            limits: Limits {
                max_frame_bytes: self.config.max_frame_bytes,
            },
            now,
        };
        match conn.drive(&env) {
            Ok(Drive::Idle) => false,
            Ok(Drive::Again) => true,
            Ok(Drive::Finished(reason)) => {
                self.close(index, reason);
                false
            }
            Err(reason) => {
                self.close(index, &reason);
                false
            }
        }
    }

    fn close(&mut self, index: usize, reason: &str) {
        let Some(slot) = self.conns.get_mut(index) else {
            return;
        };
        let Some(mut conn) = slot.take() else {
            return;
        };
        conn.stream.close_notify();
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            log::debug!("{}: deregister failed: {e}", conn.peer);
        }
        if conn.rejected {
            self.rejecting -= 1;
        } else {
            self.active -= 1;
            if let Some(m) = self.sink.metrics.get() {
                m.set_open_connections(self.active);
            }
        }
        log::debug!(
            "{}: closed connection {} ({reason})",
            conn.peer,
            conn.key.generation
        );
        self.free.push(index);
    }

    fn sweep(&mut self, now: Instant) {
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_mut() else {
                continue;
            };
            if conn.rejected {
                if now.duration_since(conn.accepted_at) >= REJECT_WAIT {
                    // It never said which protocol it speaks: a text line is the most
                    // readable answer for a person at `nc`.
                    conn.queue(&too_many_text());
                    let _ = conn.flush(now);
                    self.close(index, "rejected: too many connections");
                }
                continue;
            }
            if let Some(since) = conn.linger_since {
                if now.duration_since(since) >= LINGER {
                    self.close(index, "linger over");
                }
                continue;
            }
            if conn.in_flight > 0 {
                continue; // the server is working on its behalf (e.g. a long-poll)
            }
            if now.duration_since(conn.last_progress) >= idle {
                let what = if conn.pending_out() > 0 {
                    "stalled: client is not reading its responses"
                } else if conn.unread().is_empty() {
                    "idle timeout"
                } else {
                    "idle timeout with a partial request buffered"
                };
                log::info!(
                    "{}: closing connection {}: {what}",
                    conn.peer,
                    conn.key.generation
                );
                self.close(index, what);
            }
        }
    }

    /// Stops accepting and marks every connection as closing. Returns the deadline.
    fn begin_drain(&mut self, now: Instant, retry: &mut Vec<usize>) -> Instant {
        log::info!(
            "shutting down: no longer accepting; draining {} connection(s)",
            self.active + self.rejecting
        );
        if let Some(mut listener) = self.listener.take() {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                log::debug!("deregister listener: {e}");
            }
        }
        self.service.begin_shutdown();
        for (index, slot) in self.conns.iter_mut().enumerate() {
            if let Some(conn) = slot.as_mut() {
                conn.closing = true;
                retry.push(index);
            }
        }
        now + Duration::from_millis(self.config.shutdown_grace_ms)
    }
}

/// What the loop lends a connection while driving it.
struct Env<'a> {
    config: &'a ServerConfig,
    service: &'a dyn Service,
    sink: &'a Arc<CompletionSink>,
    security: Option<&'a Security>,
    limits: Limits,
    now: Instant,
}

enum Drive {
    /// Nothing more to do until the next event.
    Idle,
    /// Hit the round limit; drive again soon.
    Again,
    /// Done with this connection (reason for the log).
    Finished(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// No byte received yet.
    Detect,
    Binary,
    Text,
}

struct Conn {
    key: ConnKey,
    /// The socket, or a TLS session over it.
    stream: Link,
    peer: SocketAddr,
    mode: Mode,
    /// Over the connection limit: only told so, then closed.
    rejected: bool,
    accepted_at: Instant,
    /// Read buffer: `rbuf[rstart..rend]` is received and not yet processed. The
    /// bytes past `rend` stay initialized between reads, so reading does not
    /// zero the buffer again every time.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// The last read returned less than asked (or `WouldBlock`): the socket had
    /// nothing more, and the next readiness event (edge-triggered: one per arrival)
    /// clears this. Saves the `read` that would only return `WouldBlock`.
    read_drained: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    in_flight: usize,
    /// The client closed its sending side (read returned 0).
    peer_closed: bool,
    /// No new requests; close once in-flight work is answered and flushed.
    closing: bool,
    last_progress: Instant,
    next_text_id: u32,
    /// Moving average (1/8 weight) of this connection's response sizes, used to
    /// bound the bytes its in-flight requests will add to the write buffer.
    avg_response_bytes: usize,
    /// Closing because of an error: half-close and drain before closing.
    linger: bool,
    linger_since: Option<Instant>,
}

impl Conn {
    fn new(key: ConnKey, stream: TcpStream, peer: SocketAddr, rejected: bool) -> Conn {
        let now = Instant::now();
        Conn {
            key,
            stream: Link::plain(stream),
            peer,
            mode: Mode::Detect,
            rejected,
            accepted_at: now,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            read_drained: false,
            wbuf: Vec::new(),
            wpos: 0,
            in_flight: 0,
            peer_closed: false,
            closing: false,
            last_progress: now,
            next_text_id: 0,
            avg_response_bytes: INITIAL_RESPONSE_ESTIMATE_BYTES,
            linger: false,
            linger_since: None,
        }
    }

    fn unread(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    fn ctx(&self) -> ConnContext {
        ConnContext {
            conn_id: self.key.generation,
            peer_addr: self.peer,
            identity: self.stream.identity(),
            protocol: if self.mode == Mode::Text {
                Protocol::Text
            } else {
                Protocol::Binary
            },
        }
    }

    /// Most bytes buffered but not yet processed.
    fn read_cap(&self, config: &ServerConfig) -> usize {
        (config.max_frame_bytes as usize + 4).max(READ_CHUNK_BYTES)
    }

    fn drive(&mut self, env: &Env<'_>) -> Result<Drive, String> {
        for _ in 0..MAX_ROUNDS_PER_DRIVE {
            let mut progress = self.flush(env.now)?;
            progress |= self.process(env);
            if !self.read_drained && self.may_read(env.config) {
                progress |= self.read_some(env)?;
            }
            if progress {
                continue;
            }
            // Nothing more can happen until an event: is the connection finished?
            let finished = (self.closing || self.peer_closed)
                && self.in_flight == 0
                && self.pending_out() == 0
                && !self.stream.wants_write();
            if !finished {
                return Ok(Drive::Idle);
            }
            if self.linger {
                return self.linger_close(env.now);
            }
            if self.peer_closed {
                if !self.unread().is_empty() {
                    log::debug!(
                        "{}: disconnected with {} byte(s) of a partial request",
                        self.peer,
                        self.unread().len()
                    );
                }
                return Ok(Drive::Finished("client closed"));
            }
            return Ok(Drive::Finished("closing"));
        }
        Ok(Drive::Again)
    }

    /// After an error answer: half-close and discard input until the client closes
    /// (or `LINGER` passes, enforced by the sweep), so unread input does not make the
    /// kernel reset the connection before the client has read the error.
    fn linger_close(&mut self, now: Instant) -> Result<Drive, String> {
        if self.peer_closed {
            return Ok(Drive::Finished("closed after error"));
        }
        if self.linger_since.is_none() {
            self.linger_since = Some(now);
            if let Err(e) = self.stream.shutdown(std::net::Shutdown::Write) {
                return Err(format!("shutdown failed: {e}"));
            }
        }
        let mut scratch = [0u8; 4096];
        // Bounded: at most 256 reads (1 MiB) per wake-up; the sweep ends the linger.
        for _ in 0..256 {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Ok(Drive::Finished("closed after error")),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Drive::Idle),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Ok(Drive::Finished("closed after error")),
            }
        }
        Ok(Drive::Again)
    }

    /// Whether another request may be started: under the in-flight cap, and the
    /// unsent bytes plus the expected size of the responses in flight stay under
    /// `max_conn_buffer_bytes` (one request is always allowed when none is in flight).
    fn may_start_request(&self, config: &ServerConfig) -> bool {
        if self.in_flight == 0 {
            return true;
        }
        let expected = self.pending_out().saturating_add(
            self.in_flight
                .saturating_mul(self.avg_response_bytes.max(1)),
        );
        self.in_flight < config.max_in_flight_per_conn && expected < config.max_conn_buffer_bytes
    }

    fn may_read(&self, config: &ServerConfig) -> bool {
        !self.peer_closed
            && !self.closing
            && self.pending_out() < config.max_conn_buffer_bytes
            && self.unread().len() < self.read_cap(config)
            && self.in_flight < config.max_in_flight_per_conn
    }

    /// Writes until the buffer is empty or the socket would block.
    fn flush(&mut self, now: Instant) -> Result<bool, String> {
        let mut progress = match self.stream.flush_tls() {
            Ok(wrote) => wrote,
            Err(e) => return Err(format!("TLS write failed: {e}")),
        };
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err("write returned 0".to_string()),
                Ok(n) => {
                    self.wpos += n;
                    self.last_progress = now;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            if self.wbuf.capacity() > RETAINED_BUFFER_BYTES {
                self.wbuf = Vec::new(); // give a burst's memory back
            }
        } else if self.wpos > (1 << 20) && self.wpos > self.wbuf.len() / 2 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(progress)
    }

    /// Reads until `WouldBlock`, a short read (the socket is drained), EOF or the
    /// read-buffer cap.
    fn read_some(&mut self, env: &Env<'_>) -> Result<bool, String> {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == 0 && self.rbuf.len() > RETAINED_BUFFER_BYTES {
            self.rbuf = Vec::new(); // give a big frame's memory back
        }
        let cap = self.read_cap(env.config);
        let mut progress = false;
        while self.rend < cap {
            let start = self.rend;
            let want = READ_CHUNK_BYTES.min(cap - start);
            if self.rbuf.len() < start + want {
                self.rbuf.resize(start + want, 0);
            }
            let result = self.stream.read(&mut self.rbuf[start..start + want]);
            match result {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.rend = start + n;
                    progress = true;
                    // A short read drained a plain socket; over TLS it only says
                    // how much plaintext rustls had, so keep reading until WouldBlock.
                    if n < want && !self.stream.is_tls() {
                        self.read_drained = true;
                        break;
                    }
                }
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock => {
                        self.read_drained = true;
                        break;
                    }
                    ErrorKind::Interrupted => continue,
                    _ => return Err(format!("read failed: {e}")),
                },
            }
        }
        Ok(progress)
    }

    /// Starts as many buffered requests as the limits allow.
    fn process(&mut self, env: &Env<'_>) -> bool {
        let mut progress = false;
        // Bounded by the buffered bytes: each round consumes at least one byte or stops.
        loop {
            if self.closing || self.pending_out() >= env.config.max_conn_buffer_bytes {
                return progress;
            }
            let Some(&first) = self.unread().first() else {
                return progress;
            };
            if self.rejected {
                return self.reject(first) || progress;
            }
            let step = match self.mode {
                Mode::Detect => {
                    self.detect(first, env);
                    true
                }
                Mode::Binary => self.process_frame(env),
                Mode::Text => self.process_line(env),
            };
            if !step {
                return progress;
            }
            progress = true;
        }
    }

    fn detect(&mut self, first: u8, env: &Env<'_>) {
        let tls = env.security.and_then(|s| s.tls.as_ref());
        if let (Some(config), false) = (tls, self.stream.is_tls()) {
            if first == 0x16 {
                let hello = self.rbuf[self.rstart..self.rend].to_vec();
                self.rstart = self.rend;
                if let Err(e) = self.stream.start_tls(config, &hello) {
                    log::info!("{}: TLS handshake failed: {e}", self.peer);
                    self.closing = true;
                }
                return; // the first decrypted byte picks the protocol
            }
            if !env.security.is_some_and(|s| s.allow_plaintext) {
                log::info!(
                    "{}: plaintext connection to a TLS server; refusing",
                    self.peer
                );
                self.queue(super::tls::PLAINTEXT_REFUSAL.as_bytes());
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
                return;
            }
        }
        match wire::Protocol::detect(first) {
            wire::Protocol::Binary => self.mode = Mode::Binary,
            wire::Protocol::Text => self.mode = Mode::Text,
            wire::Protocol::Tls if self.stream.is_tls() => {
                log::info!("{}: TLS inside TLS; closing", self.peer);
                self.queue(
                    b"-ERR MALFORMED TLS is already on: send binary frames or text commands\r\n",
                );
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
            wire::Protocol::Tls => {
                log::info!(
                    "{}: client started a TLS handshake, but TLS is not enabled; sending an alert",
                    self.peer
                );
                self.queue(&TLS_HANDSHAKE_FAILURE_ALERT);
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
            wire::Protocol::Unknown => {
                let b = first;
                log::info!(
                    "{}: unrecognized protocol (first byte {b:#04x}); closing",
                    self.peer
                );
                let line = format!(
                    "-ERR MALFORMED unrecognized protocol (first byte {b:#04x}): send binary frames (first byte 0x00, see wire-spec.md) or text commands such as PING\r\n"
                );
                self.queue(line.as_bytes());
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
        }
    }

    /// A connection over the limit: answer in its protocol, then close.
    fn reject(&mut self, first: u8) -> bool {
        if first == 0x00 {
            // Wait (bounded by REJECT_WAIT in the sweep) for the correlation id.
            let unread = self.unread();
            if unread.len() < 12 && !self.peer_closed {
                return false;
            }
            let correlation_id = read_correlation_id(unread).unwrap_or(0);
            let bytes = encode_for(
                Protocol::Binary,
                correlation_id,
                Err(error_body(
                    ErrorCode::TooManyConnections,
                    too_many_message(),
                )),
            );
            self.queue(&bytes);
        } else {
            self.queue(&too_many_text());
        }
        self.rstart = self.rend;
        self.closing = true;
        self.linger = true;
        true
    }

    /// Handles one binary frame if a whole one is buffered. Returns false if it needs
    /// more bytes or may not start another request now.
    fn process_frame(&mut self, env: &Env<'_>) -> bool {
        if !self.may_start_request(env.config) {
            return false;
        }
        let frame_len = match wire::frame_len(self.unread(), &env.limits) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(e) => {
                // Only FrameTooLarge is possible here: the stream cannot be resynced.
                // wire-spec.md: answered with correlation id 0, payload unread.
                log::info!("{}: {e}; closing", self.peer);
                self.fail(
                    0,
                    ErrorCode::FrameTooLarge,
                    format!(
                        "{e}; split the request (e.g. smaller batches) or raise --max-frame-bytes"
                    ),
                );
                return true;
            }
        };
        let frame_end = self.rstart + frame_len;
        let decoded = wire::decode_request(&self.rbuf[self.rstart..frame_end]);
        self.rstart = frame_end;
        self.last_progress = env.now;
        match decoded {
            Ok(frame) => {
                if !self.authorized(env, frame.request.api_key(), frame.correlation_id) {
                    return true;
                }
                self.in_flight += 1;
                let mut responder = Responder::new(
                    self.key,
                    frame.correlation_id,
                    frame.request.api_key(),
                    Protocol::Binary,
                    Arc::clone(env.sink),
                );
                responder.set_produce_size(crate::metrics::produce_size(&frame.request));
                let ctx = self.ctx();
                env.service.call(frame, &ctx, responder);
            }
            Err(e) => {
                let response = e.error_response().unwrap_or_else(|| ResponseFrame {
                    correlation_id: e.correlation_id().unwrap_or(0),
                    result: Err(error_body(ErrorCode::Malformed, e.to_string())),
                });
                let closes = match &response.result {
                    Err(body) => body.code.closes_connection(),
                    Ok(_) => true,
                };
                let mut bytes = Vec::new();
                wire::encode_response(&response, &mut bytes);
                self.queue(&bytes);
                if closes {
                    log::info!("{}: bad request: {e}; closing", self.peer);
                    self.rstart = self.rend;
                    self.closing = true;
                    self.linger = true;
                } else {
                    log::debug!("{}: rejected request: {e}", self.peer);
                }
            }
        }
        true
    }

    /// Handles one text line if a whole one is buffered (text is one request at a
    /// time, so answers stay in order).
    fn process_line(&mut self, env: &Env<'_>) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        let unread = self.unread();
        let consumed = match wire::text::line_len(unread, wire::text::MAX_LINE_BYTES) {
            Ok(Some(n)) => n,
            Ok(None) if self.peer_closed => unread.len(),
            Ok(None) => return false,
            Err(err) => {
                log::info!("{}: {err}; closing", self.peer);
                let mut bytes = Vec::new();
                wire::text::format_error(&err, &mut bytes);
                self.queue(&bytes);
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
                return true;
            }
        };
        let line_len = consumed;
        let line = &unread[..line_len];
        let parsed = if self.peer_closed && line.is_empty() {
            None // nothing after the last line terminator
        } else {
            Some(wire::text::parse_line(line))
        };
        self.rstart += consumed;
        self.last_progress = env.now;
        match parsed {
            None => {}
            Some(Ok(wire::text::TextCommand::Help)) => {
                let mut bytes = Vec::new();
                wire::text::format_help(&mut bytes);
                self.queue(&bytes);
            }
            Some(Ok(wire::text::TextCommand::Quit)) => {
                self.rstart = self.rend;
                self.closing = true;
            }
            Some(Ok(wire::text::TextCommand::Request(request))) => {
                if !self.authorized(env, request.api_key(), 0) {
                    return true;
                }
                let correlation_id = self.next_text_id;
                self.next_text_id = self.next_text_id.wrapping_add(1);
                self.in_flight += 1;
                let mut responder = Responder::new(
                    self.key,
                    correlation_id,
                    request.api_key(),
                    Protocol::Text,
                    Arc::clone(env.sink),
                );
                responder.set_produce_size(crate::metrics::produce_size(&request));
                let ctx = self.ctx();
                env.service.call(
                    wire::RequestFrame {
                        api_version: 0,
                        correlation_id,
                        request,
                    },
                    &ctx,
                    responder,
                );
            }
            Some(Err(err)) => {
                let mut bytes = Vec::new();
                wire::text::format_error(&err, &mut bytes);
                self.queue(&bytes);
            }
        }
        true
    }

    /// Checks the ACL (a no-op without [`Security`]); a denied request is answered
    /// here in the connection's protocol and never reaches the service.
    fn authorized(&mut self, env: &Env<'_>, api: wire::ApiKey, correlation_id: u32) -> bool {
        let Some(security) = env.security else {
            return true;
        };
        match self.stream.authorize(security, api, self.peer) {
            Ok(()) => true,
            Err((code, message)) => {
                let protocol = self.ctx().protocol;
                let bytes = encode_for(protocol, correlation_id, Err(error_body(code, message)));
                self.queue(&bytes);
                false
            }
        }
    }

    /// Answers with an error and keeps the connection.
    fn answer_error(&mut self, correlation_id: u32, code: ErrorCode, message: String) {
        let bytes = encode_for(
            Protocol::Binary,
            correlation_id,
            Err(error_body(code, message)),
        );
        self.queue(&bytes);
    }

    /// Answers with an error and closes the connection once it is flushed.
    fn fail(&mut self, correlation_id: u32, code: ErrorCode, message: String) {
        self.answer_error(correlation_id, code, message);
        self.rstart = self.rend;
        self.closing = true;
        self.linger = true;
    }
}

/// The correlation id of a request frame, if its header is buffered:
/// `u32 len | u16 api_key | u16 version | u32 correlation_id`.
fn read_correlation_id(buf: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(8..12)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn too_many_message() -> &'static str {
    "too many connections (the server's --max-connections limit); retry later or raise the limit"
}

fn too_many_text() -> Vec<u8> {
    encode_for(
        Protocol::Text,
        0,
        Err(error_body(
            ErrorCode::TooManyConnections,
            too_many_message(),
        )),
    )
}
