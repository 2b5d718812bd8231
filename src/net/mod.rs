//! The network front end: one mio event loop that owns every socket.
//!
//! # Files
//! - `server.rs`: the listener, accept, the connection table, the node-wide limits
//!   and memory budget, completions from other threads, the idle sweep, shutdown.
//! - `conn.rs`: one connection's I/O state machine: buffers, read, flush, close.
//! - `detect.rs`: the first byte picks the protocol (TLS, binary, text).
//! - `dispatch.rs`: a buffered frame or line → admission (budget) → decode → ACL →
//!   [`Service::call`] with a [`Responder`]; error answers.
//! - [`responder`], [`pool`], [`tls`]: see their docs.
//!
//! # Threads and channels
//! - **The event loop** (one thread, [`Server::run`]) accepts connections, reads bytes,
//!   cuts them into requests (binary frames or text lines), writes responses, and
//!   enforces the limits below. It never blocks on anything but `Poll::poll` and never
//!   touches storage: every decoded request goes to a [`Service`] together with a
//!   [`Responder`].
//! - **The service** decides where the work runs (the node, [`crate::node`], queues
//!   produces for its raft thread, runs reads on a [`WorkerPool`] and parks long-polls
//!   on a timer thread).
//!   When the work is done, whichever thread finished it calls [`Responder::respond`]:
//!   the response is encoded there, sent over an mpsc channel to the loop, and the loop
//!   is woken through a `mio::Waker` (wake-ups are coalesced, see [`responder`]).
//!
//! # Protocols
//! The first byte a client sends picks the protocol of the whole connection:
//! `0x00` is a binary frame (the high byte of a length below 16 MiB), an ASCII letter
//! or whitespace starts inline text commands (`PING`, `PRODUCE <text>`,
//! `CONSUME <offset>`, `SERVERS`, `HELP`; one per line, answered with one line), and
//! `0x16` is a TLS handshake: with TLS configured ([`Server::with_security`], see
//! [`tls`]) the connection becomes a rustls session and its first *decrypted* byte
//! picks binary or text; without TLS it is answered with a TLS `handshake_failure`
//! alert and closed. Anything else gets a one-line `-ERR MALFORMED` and a close. With
//! TLS configured, a plaintext first byte gets `-ERR UNAUTHENTICATED …` and a close
//! (unless plaintext is allowed).
//!
//! # Authorization
//! With [`Security::authorizer`] set, every decoded request is checked against the
//! casbin ACL ([`crate::auth`]) on the loop thread, before [`Service::call`]: a denied
//! request is answered `PERMISSION_DENIED` in the connection's protocol and never
//! reaches the service, so nothing is written. Decisions are cached per connection.
//! An ACL denial keeps the connection open (the client may send what it is allowed).
//! A `PeerHandshake` the service refuses with `PERMISSION_DENIED` (a foreign cluster
//! name, wire-spec.md §5) is different: its sender is no peer of ours, so the
//! connection is closed once that answer is flushed.
//!
//! # Ordering
//! Binary requests on one connection are pipelined: up to
//! [`ServerConfig::max_in_flight_per_conn`] may be in flight, and **responses are
//! written in completion order, which may differ from request order** (a `Consume` can
//! overtake a `Produce` waiting for its fsync). Each response carries its request's
//! correlation id; clients match on it. Text connections process one line at a time,
//! so their answers are always in order.
//!
//! # Limits and backpressure
//! - `max_frame_bytes`: a larger frame (or text line) gets `FRAME_TOO_LARGE` and the
//!   connection closes after the error is flushed.
//! - `max_connections`: a connection over the limit waits (up to 1 s) for its first
//!   bytes, gets `TOO_MANY_CONNECTIONS` in its own protocol (an error frame carrying the
//!   correlation id of its first request, or a `-ERR` line), and is closed. At most 64
//!   such connections are held; beyond that they are closed at once.
//! - `max_conn_buffer_bytes` and `max_buffered_bytes`: the memory budget, below.
//! - `max_in_flight_per_conn`: at most this many requests of one connection are in the
//!   service at once; further frames stay in the (bounded) read buffer, and once that
//!   is full the loop stops reading the socket, so TCP pushes back on the client.
//! - `idle_timeout_ms`: a connection with nothing in flight that has neither completed
//!   a request nor accepted response bytes for this long is closed. This catches idle
//!   clients, slowloris clients that drip a frame byte by byte, and clients that never
//!   read their responses.
//! - A client that closes (EOF) is noticed at once, even with half a frame buffered:
//!   readiness reports the close, and the loop then reads until EOF instead of
//!   trusting a short read, so the slot is freed without waiting for the idle timeout.
//!
//! # Memory budget
//! Every byte the loop buffers for a client is counted, per connection and node-wide
//! (the `commitlog_net_buffered_bytes` gauge). A connection holds
//! - its **read buffer** (allocated capacity): requests received and not yet handed to
//!   the service, or a partial frame or text line;
//! - its **write buffer** (allocated capacity): answers not yet taken by the socket;
//! - a **reservation for each answer in flight** (in the service, the worker pool, a
//!   parked long-poll, or the completion channel): made when the request starts,
//!   released when its answer reaches the loop and is queued (and then counted as write
//!   buffer). A `Fetch` reserves its `max_bytes` (plus the frame prefix) or, when less
//!   is free, what is free, at least 64 KiB; the [`Responder`] carries that allowance
//!   and [`Responder::fetch_builder`] stops taking records at it (always taking the
//!   first, so a consumer advances), so the answer is sized to what the connection
//!   may still buffer. A `Consume` answers one record that cannot be cut, so it
//!   reserves a whole `max_frame_bytes` (pipelined Consumes run two at a time with the
//!   defaults; streaming reads use Fetch). Other answers are small (acks, status,
//!   server lists) and reserve the connection's moving average of answer sizes (at
//!   least 256 bytes).
//!
//! A connection may hold at most `max_conn_buffer_bytes` (16 MiB by default), and
//! all connections together at most `max_buffered_bytes` (256 MiB by default,
//! `--max-buffered-bytes`); a connection's limit is the smaller of its own cap and
//! what the others leave of the node's budget. At its limit a connection **waits**:
//! the next request is not started (it stays unread in the read buffer), and once the
//! read buffer is full the socket is not read, so TCP pushes back on the client.
//! Nothing is refused and no memory grows. A binary frame longer than 64 KiB is
//! admitted whole or not at all: the read buffer is reserved for the whole frame when
//! its length prefix arrives, or the frame waits unread, so connections never each
//! hold half a frame and wait for each other. When bytes are released (answers
//! flushed, connections closed), the connections that waited are driven again. A
//! connection that waits with nothing in flight for `idle_timeout_ms` is closed like
//! an idle one, so budget held by slowloris clients comes back.
//!
//! So that small requests always flow, each connection may hold one 64 KiB read
//! buffer and run one request (with a 64 KiB Fetch allowance) even when the budget is
//! spent: the worst case is `max_buffered_bytes + connections × (64 KiB + one
//! answer)`. Per-connection state outside the budget is fixed in size: a rustls
//! session buffers at most [`tls::TLS_SEND_BUFFER_BYTES`] to send and one TLS record
//! (16 KiB of plaintext) received; a text line is at most 64 KiB
//! ([`crate::wire::text::MAX_LINE_BYTES`]).
//!
//! **Release.** A closed connection's buffers are freed at once; its answers still in
//! flight stay counted until they arrive, and are then dropped unsent (parked
//! long-polls arrive within their `max_wait_ms`). Empty buffers larger than 1 MiB are
//! freed, smaller ones kept for reuse (and counted). The gauge shows bytes held by
//! the loop; the process's RSS may stay higher for a while after a burst because the
//! allocator keeps freed memory for reuse.
//!
//! A misbehaving connection only ever affects itself, apart from sharing the node's
//! memory budget (while others hold it, large requests wait; small ones still flow):
//! errors are logged (`debug` for ordinary disconnects, `info` for protocol
//! violations and limits) and that connection is closed.
//!
//! # Shutdown
//! [`ServerHandle::shutdown`] (the binary calls it on SIGINT/SIGTERM) makes the loop
//! stop accepting, stop starting new requests, deliver the responses of requests
//! already in flight, and return once every connection is flushed and closed (or
//! `shutdown_grace_ms` has passed). The caller then shuts the service down.

mod conn;
mod detect;
mod dispatch;
pub mod pool;
pub mod responder;
mod server;
#[cfg(test)]
mod tests;
pub mod tls;

pub use pool::{PoolSubmitter, WorkerPool};
pub use responder::{error_body, FetchBuilder, Protocol, Responder};
pub use server::{Server, ServerHandle};
pub use tls::{Security, TlsFiles};

use std::net::SocketAddr;

use crate::wire::RequestFrame;

/// Limits of the network front end. See the module docs for what each one does.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted frame (and text line), length prefix excluded.
    pub max_frame_bytes: u32,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Close a connection that made no progress for this long.
    pub idle_timeout_ms: u64,
    /// Most bytes one connection may buffer (unread requests, unsent responses,
    /// responses in flight); see "Memory budget" in the module docs.
    pub max_conn_buffer_bytes: usize,
    /// Most bytes all connections together may buffer (the node's budget).
    pub max_buffered_bytes: usize,
    /// Most requests of one connection in the service at once.
    pub max_in_flight_per_conn: usize,
    /// On shutdown, how long to wait for in-flight requests to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: 1024,
            idle_timeout_ms: 60_000,
            max_conn_buffer_bytes: 16 << 20,
            max_buffered_bytes: 256 << 20,
            max_in_flight_per_conn: 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Default largest frame: 8 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 8 << 20;

/// The largest frame the protocol detection allows: a binary connection's first byte
/// must be 0x00, so lengths stay below 16 MiB.
pub const MAX_FRAME_BYTES_LIMIT: u32 = (1 << 24) - 1;

/// What a service knows about the connection a request came from.
#[derive(Clone, Debug)]
pub struct ConnContext {
    /// Unique (per server run) id of the connection, for logs.
    pub conn_id: u64,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The verified TLS client identity (certificate CN); `None` on plaintext.
    pub identity: Option<std::sync::Arc<str>>,
    /// The protocol the connection speaks.
    pub protocol: Protocol,
}

/// Handles decoded requests (the node's `Gate` and `ClusterService` implement it).
///
/// `call` runs on the event-loop thread, so it must not block: it either answers at
/// once through `reply` or hands the request (with `reply`) to another thread. Each
/// `reply` must be used once; dropping it answers `INTERNAL`.
pub trait Service: Send + Sync + 'static {
    /// Starts handling one request.
    fn call(&self, request: RequestFrame, ctx: &ConnContext, reply: Responder);

    /// Called once on the event-loop thread when graceful shutdown begins (no new
    /// requests will be started). Requests that could wait a long time, such as
    /// parked long-polls, should be answered now so the drain finishes quickly.
    fn begin_shutdown(&self) {}
}
