//! The network front end: one mio event loop that owns every socket.
//!
//! # Threads and channels
//! - **The event loop** (one thread, [`Server::run`]) accepts connections, reads bytes,
//!   cuts them into requests (binary frames or text lines), writes responses, and
//!   enforces the limits below. It never blocks on anything but `Poll::poll` and never
//!   touches storage: every decoded request goes to a [`Service`] together with a
//!   [`Responder`].
//! - **The service** decides where the work runs (the single-node
//!   [`LogService`](crate::service::LogService) uses a group-commit writer thread for
//!   produces, a [`WorkerPool`] for reads and a timer thread for parked long-polls).
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
//! - `max_conn_buffer_bytes`: while a connection's unsent response bytes exceed this,
//!   the loop stops reading from it, so a client that never reads cannot make the
//!   server buffer without limit. A request is started only while the unsent bytes
//!   plus `in_flight × (moving average of this connection's response sizes)` stay
//!   under the cap (one request may always run), so the bound holds for responses
//!   still being computed too: it overshoots by at most the responses in flight when
//!   they turn out larger than the average (at worst one `max_frame_bytes` response
//!   when a single request is in flight).
//! - `max_in_flight_per_conn`: at most this many requests of one connection are in the
//!   service at once; further frames stay in the (bounded) read buffer, and once that
//!   is full the loop stops reading the socket, so TCP pushes back on the client.
//! - `idle_timeout_ms`: a connection with nothing in flight that has neither completed
//!   a request nor accepted response bytes for this long is closed. This catches idle
//!   clients, slowloris clients that drip a frame byte by byte, and clients that never
//!   read their responses.
//!
//! A misbehaving connection only ever affects itself: errors are logged (`debug` for
//! ordinary disconnects, `info` for protocol violations and limits) and that connection
//! is closed.
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
    /// Stop reading from a connection while its unsent responses exceed this.
    pub max_conn_buffer_bytes: usize,
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

/// Handles decoded requests. The single-node [`LogService`](crate::service::LogService)
/// implements it today; the Raft-backed cluster node will replace it.
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
