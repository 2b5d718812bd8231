//! The listener side of the event loop: accept, the connection table, the limits
//! that span connections, completions from other threads (the `Waker`), the idle
//! sweep and graceful shutdown. See the module docs of [`crate::net`].

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, Drive};
use super::dispatch::too_many_text;
use super::responder::{Completion, CompletionSink, ConnKey, WakeFlag};
use super::tls::Security;
use super::{ServerConfig, Service};
use crate::wire::Limits;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Connections over `max_connections` held just long enough to be told why.
const MAX_REJECTING: usize = 64;
/// How long a rejected connection may take to send its first bytes.
const REJECT_WAIT: Duration = Duration::from_secs(1);
/// How long a connection closed after an error waits for the client to close first.
const LINGER: Duration = Duration::from_secs(1);

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
    budget: Budget,
}

/// The node-wide memory budget (see "Memory budget" in the [`crate::net`] docs).
/// Loop-thread only: every change to a connection's buffers happens while the loop
/// drives it, and is brought into `conns_bytes` right after.
#[derive(Default)]
struct Budget {
    /// Sum of every open connection's [`Conn::accounted`].
    conns_bytes: usize,
    /// Reservations of answers still in flight for connections already closed;
    /// released when each answer arrives (and is dropped).
    orphan_bytes: usize,
    /// Bytes were released this round: drive the waiting connections again.
    released: bool,
    /// Connections that stopped for want of budget (deduplicated each round; at
    /// most one entry per connection slot after that).
    waiters: Vec<usize>,
}

impl Budget {
    fn total(&self) -> usize {
        self.conns_bytes.saturating_add(self.orphan_bytes)
    }

    /// Moves a connection's count from `old` to `new` bytes.
    fn reconcile(&mut self, old: usize, new: usize) {
        self.conns_bytes = self.conns_bytes.saturating_sub(old).saturating_add(new);
        if new < old {
            self.released = true;
        }
    }
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
        let whole_frame_bytes = config.max_frame_bytes as usize + 4;
        if config.max_buffered_bytes < whole_frame_bytes {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "max_buffered_bytes {} cannot hold one whole frame of max_frame_bytes {}: \
                     raise --max-buffered-bytes or lower --max-frame-bytes",
                    config.max_buffered_bytes, config.max_frame_bytes
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
            budget: Budget::default(),
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
            accept_retry |= self.note_events(&events, &mut to_drive);
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
            self.end_budget_round(&mut retry);
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

    /// Notes each readiness event on its connection and queues it to be driven.
    /// Returns whether the listener is ready.
    fn note_events(&mut self, events: &Events, to_drive: &mut Vec<usize>) -> bool {
        let mut listener_ready = false;
        for event in events.iter() {
            match event.token() {
                LISTENER => listener_ready = true,
                WAKER => {}
                Token(index) => {
                    if let Some(Some(conn)) = self.conns.get_mut(index) {
                        conn.read_drained = false;
                        conn.read_closed |= event.is_read_closed() || event.is_error();
                    }
                    to_drive.push(index)
                }
            }
        }
        listener_ready
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
            let conn = match self.conns.get_mut(completion.key.index) {
                Some(Some(conn)) if conn.key == completion.key => conn,
                // The connection closed (its successor must not see this): the
                // answer is dropped here and its reservation released.
                _ => {
                    let orphans = &mut self.budget.orphan_bytes;
                    *orphans = orphans.saturating_sub(completion.reserved_bytes);
                    self.budget.released = true;
                    continue;
                }
            };
            conn.in_flight = conn.in_flight.saturating_sub(1);
            conn.reserved_out = conn.reserved_out.saturating_sub(completion.reserved_bytes);
            conn.avg_response_bytes = (conn.avg_response_bytes * 7 + completion.bytes.len()) / 8;
            if conn.pending_out() == 0 && completion.bytes.len() > conn.wbuf.capacity() {
                // A big response (a Fetch) becomes the write buffer: no copy.
                conn.wbuf = completion.bytes;
                conn.wpos = 0;
            } else {
                conn.queue(&completion.bytes);
            }
            if completion.close && !conn.closing {
                log::info!("{}: peer handshake refused; closing", conn.peer);
                conn.rstart = conn.rend;
                conn.closing = true;
                conn.linger = true;
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
        // What the other connections leave of the node budget, capped per connection
        // (a cap that always fits one whole frame, or a big frame could never start).
        let others_bytes = self.budget.total().saturating_sub(conn.accounted);
        let conn_cap_bytes = self
            .config
            .max_conn_buffer_bytes
            .max(self.config.max_frame_bytes as usize + 4);
        let conn_limit_bytes = self
            .config
            .max_buffered_bytes
            .saturating_sub(others_bytes)
            .min(conn_cap_bytes);
        let env = Env {
            config: &self.config,
            service: &*self.service,
            sink: &self.sink,
            security: self.security.as_ref(),
            limits: Limits {
                max_frame_bytes: self.config.max_frame_bytes,
            },
            now,
            conn_limit_bytes,
        };
        let result = conn.drive(&env);
        let held = conn.held_bytes();
        self.budget.reconcile(conn.accounted, held);
        conn.accounted = held;
        if conn.wants_budget {
            self.budget.waiters.push(index);
        }
        match result {
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
        // Its buffers are freed with `conn`; answers still in flight stay counted
        // until they arrive and are dropped.
        self.budget.reconcile(conn.accounted, 0);
        self.budget.orphan_bytes = self.budget.orphan_bytes.saturating_add(conn.reserved_out);
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

    /// After a round: publishes the budget gauge and, if bytes were released, drives
    /// the connections waiting for budget again.
    fn end_budget_round(&mut self, retry: &mut Vec<usize>) {
        if let Some(m) = self.sink.metrics.get() {
            m.set_net_buffered_bytes(self.budget.total());
        }
        let waiters = &mut self.budget.waiters;
        if waiters.is_empty() {
            self.budget.released = false;
            return;
        }
        if self.budget.released {
            retry.append(waiters);
            self.budget.released = false;
        } else {
            waiters.sort_unstable();
            waiters.dedup();
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
                // Read what was sent before the close and answer it (UNAVAILABLE),
                // so no client is left guessing whether its request was written.
                conn.draining = true;
                conn.read_drained = false;
                retry.push(index);
            }
        }
        now + Duration::from_millis(self.config.shutdown_grace_ms)
    }
}

/// What the loop lends a connection while driving it.
pub(super) struct Env<'a> {
    pub(super) config: &'a ServerConfig,
    pub(super) service: &'a dyn Service,
    pub(super) sink: &'a Arc<CompletionSink>,
    pub(super) security: Option<&'a Security>,
    pub(super) limits: Limits,
    pub(super) now: Instant,
    /// The most this connection may hold now: its own cap, or less when the other
    /// connections have spent the node's budget.
    pub(super) conn_limit_bytes: usize,
}
