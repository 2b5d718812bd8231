//! One connection's I/O state machine: its read and write buffers, reading until
//! `WouldBlock`, flushing, the per-connection limits, and closing (with a linger
//! after an error answer). See the module docs of [`crate::net`].

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::responder::ConnKey;
use super::server::Env;
use super::tls::Link;
use super::{ConnContext, Protocol, ServerConfig};

/// Bytes read from a socket per `read` call; also the read buffer every connection
/// may hold even when the node's memory budget is spent (its floor).
pub(super) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Upper bound of read/process/write rounds per connection per wake-up, so one busy
/// connection cannot starve the others; a connection that hits it is driven again on
/// the next loop iteration.
const MAX_ROUNDS_PER_DRIVE: usize = 32;
/// Buffers larger than this are freed once empty, so an idle connection that once
/// moved a big frame does not keep its memory.
pub(super) const RETAINED_BUFFER_BYTES: usize = 1 << 20;
/// The response size assumed for a connection before any response was seen.
const INITIAL_RESPONSE_ESTIMATE_BYTES: usize = 4096;

pub(super) enum Drive {
    /// Nothing more to do until the next event.
    Idle,
    /// Hit the round limit; drive again soon.
    Again,
    /// Done with this connection (reason for the log).
    Finished(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// No byte received yet.
    Detect,
    Binary,
    Text,
}

pub(super) struct Conn {
    pub(super) key: ConnKey,
    /// The socket, or a TLS session over it.
    pub(super) stream: Link,
    pub(super) peer: SocketAddr,
    pub(super) mode: Mode,
    /// Over the connection limit: only told so, then closed.
    pub(super) rejected: bool,
    pub(super) accepted_at: Instant,
    /// Read buffer: `rbuf[rstart..rend]` is received and not yet processed. The
    /// bytes past `rend` stay initialized between reads, so reading does not
    /// zero the buffer again every time.
    pub(super) rbuf: Vec<u8>,
    pub(super) rstart: usize,
    pub(super) rend: usize,
    /// The last read returned less than asked (or `WouldBlock`): the socket had
    /// nothing more, and the next readiness event (edge-triggered: one per arrival)
    /// clears this. Saves the `read` that would only return `WouldBlock`.
    pub(super) read_drained: bool,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) in_flight: usize,
    /// The client closed its sending side (read returned 0).
    pub(super) peer_closed: bool,
    /// No new requests; close once in-flight work is answered and flushed.
    pub(super) closing: bool,
    /// Graceful shutdown: requests already sent are read and answered UNAVAILABLE
    /// ("shutting down") instead of started; the connection closes once nothing
    /// more is buffered in the socket.
    pub(super) draining: bool,
    pub(super) last_progress: Instant,
    pub(super) next_text_id: u32,
    /// Moving average (1/8 weight) of this connection's response sizes, used to
    /// bound the bytes its in-flight requests will add to the write buffer.
    pub(super) avg_response_bytes: usize,
    /// Closing because of an error: half-close and drain before closing.
    pub(super) linger: bool,
    pub(super) linger_since: Option<Instant>,
    /// Bytes reserved from the memory budget for the answers in flight.
    pub(super) reserved_out: usize,
    /// What the node's budget counts for this connection now (the loop brings it
    /// up to date with [`Conn::held_bytes`] after each drive).
    pub(super) accounted: usize,
    /// The last drive stopped for want of budget: drive again when bytes free up.
    pub(super) wants_budget: bool,
    /// Readiness said the peer closed its side (or errored): read until EOF, since
    /// no further edge will come to report it.
    pub(super) read_closed: bool,
}

impl Conn {
    pub(super) fn new(key: ConnKey, stream: TcpStream, peer: SocketAddr, rejected: bool) -> Conn {
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
            draining: false,
            last_progress: now,
            next_text_id: 0,
            avg_response_bytes: INITIAL_RESPONSE_ESTIMATE_BYTES,
            linger: false,
            linger_since: None,
            reserved_out: 0,
            accounted: 0,
            wants_budget: false,
            read_closed: false,
        }
    }

    /// The bytes this connection holds against the memory budget: its read buffer,
    /// its write buffer (allocated, sent or not) and the answers reserved in flight.
    pub(super) fn held_bytes(&self) -> usize {
        self.rbuf
            .capacity()
            .saturating_add(self.wbuf.capacity())
            .saturating_add(self.reserved_out)
    }

    /// Bytes this connection may still add within its limit for this drive.
    pub(super) fn room_bytes(&self, env: &Env<'_>) -> usize {
        env.conn_limit_bytes.saturating_sub(self.held_bytes())
    }

    pub(super) fn unread(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    pub(super) fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    pub(super) fn queue(&mut self, bytes: &[u8]) {
        let needed = self.wbuf.len().saturating_add(bytes.len());
        if needed > self.wbuf.capacity() && needed > READ_CHUNK_BYTES {
            // Past 64 KiB grow by a quarter, not double (still amortized O(1)): the
            // budget counts capacity, so slack would throttle the connection.
            let extra = bytes.len().max(self.wbuf.capacity() / 4);
            self.wbuf.reserve_exact(extra);
        }
        self.wbuf.extend_from_slice(bytes);
    }

    pub(super) fn ctx(&self) -> ConnContext {
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

    /// Most bytes buffered but not yet processed: one largest frame, or for text
    /// one longest line with its terminator.
    pub(super) fn read_cap(&self, config: &ServerConfig) -> usize {
        if self.mode == Mode::Text {
            return crate::wire::text::MAX_LINE_BYTES + 2;
        }
        (config.max_frame_bytes as usize + 4).max(READ_CHUNK_BYTES)
    }

    pub(super) fn drive(&mut self, env: &Env<'_>) -> Result<Drive, String> {
        self.wants_budget = false;
        for _ in 0..MAX_ROUNDS_PER_DRIVE {
            let mut progress = self.flush(env.now)?;
            progress |= self.process(env);
            if !self.read_drained && self.may_read(env) {
                progress |= self.read_some(env)?;
            }
            if progress {
                continue;
            }
            // Nothing more can happen until an event: is the connection finished?
            let drained = self.draining && self.read_drained;
            let finished = (self.closing || self.peer_closed || drained)
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
    pub(super) fn linger_close(&mut self, now: Instant) -> Result<Drive, String> {
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

    pub(super) fn may_read(&self, env: &Env<'_>) -> bool {
        let config = env.config;
        !self.peer_closed
            && !self.closing
            && self.pending_out() < env.conn_limit_bytes.max(1)
            && self.unread().len() < self.read_cap(config)
            && self.in_flight < config.max_in_flight_per_conn
    }

    /// Writes until the buffer is empty or the socket would block.
    pub(super) fn flush(&mut self, now: Instant) -> Result<bool, String> {
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
            // The budget counts capacity: give back what was sent.
            self.wbuf
                .shrink_to(self.wbuf.len().max(RETAINED_BUFFER_BYTES));
        }
        Ok(progress)
    }

    /// Reads until `WouldBlock`, a short read (the socket is drained), EOF or the
    /// read-buffer cap.
    pub(super) fn read_some(&mut self, env: &Env<'_>) -> Result<bool, String> {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == 0 && self.rbuf.len() > RETAINED_BUFFER_BYTES {
            self.rbuf = Vec::new(); // give a big frame's memory back
        }
        let cap = self.read_limit(env);
        if self.rend >= cap && cap < self.read_cap(env.config) {
            self.wants_budget = true;
        }
        let mut progress = false;
        while self.rend < cap {
            let start = self.rend;
            let want = READ_CHUNK_BYTES.min(cap - start);
            if self.rbuf.len() < start + want {
                // Grow by doubling, but never past `cap`: the budget counts capacity.
                let target = self.rbuf.capacity().saturating_mul(2).min(cap);
                let target = target.max(start + want);
                self.rbuf.reserve_exact(target - self.rbuf.len());
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
                    // After a close event, read on: the EOF gets no edge of its own.
                    if n < want && !self.stream.is_tls() && !self.read_closed {
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

    /// How far the read buffer may fill (after compaction, so from index 0). Every
    /// connection may hold [`READ_CHUNK_BYTES`]; beyond that the buffer takes room
    /// from the memory budget. A binary frame larger than the floor is taken whole
    /// or not at all: the buffer is sized for the whole frame at once (that is the
    /// reservation), or the frame waits unread, so no two connections can each hold
    /// half a frame and wait for each other.
    fn read_limit(&mut self, env: &Env<'_>) -> usize {
        let hard = self.read_cap(env.config);
        let others = self.held_bytes().saturating_sub(self.rbuf.capacity());
        let allowed = env
            .conn_limit_bytes
            .saturating_sub(others)
            .max(READ_CHUNK_BYTES)
            .max(self.rbuf.capacity())
            .min(hard);
        let Some(frame_bytes) = self.frame_in_progress(env) else {
            return allowed;
        };
        if frame_bytes > allowed {
            return READ_CHUNK_BYTES.max(self.rbuf.capacity()).min(hard);
        }
        // Capacity is the reservation (the budget counts it); pages are only
        // touched as bytes arrive.
        self.rbuf
            .reserve_exact(frame_bytes.saturating_sub(self.rbuf.len()));
        allowed
    }

    /// Bytes (length prefix included) of the binary frame whose header is at the
    /// start of the read buffer, if it is longer than what is buffered and allowed.
    fn frame_in_progress(&self, env: &Env<'_>) -> Option<usize> {
        if self.mode != Mode::Binary || self.rstart != 0 {
            return None;
        }
        let len: [u8; 4] = self.rbuf.get(..4.min(self.rend))?.try_into().ok()?;
        let frame_bytes = u32::from_be_bytes(len) as usize + 4;
        let fits = frame_bytes <= env.config.max_frame_bytes as usize + 4;
        (fits && frame_bytes > self.rend).then_some(frame_bytes)
    }

    /// Starts as many buffered requests as the limits allow.
    pub(super) fn process(&mut self, env: &Env<'_>) -> bool {
        let mut progress = false;
        // Bounded by the buffered bytes: each round consumes at least one byte or stops.
        loop {
            if self.closing || self.pending_out() >= env.conn_limit_bytes.max(1) {
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
}
