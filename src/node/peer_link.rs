//! The raft thread's direct path to a peer: a round's messages to one peer are
//! written to the peer's socket by the raft thread itself when nothing is queued for
//! that peer, instead of being handed to the peer's writer thread. That removes one
//! thread hand-off (a wake-up and a context switch) from both ends of a replicated
//! produce's critical path: the leader's AppendEntries and the follower's answer.
//!
//! Why it stays ordered and never blocks the raft thread:
//! * Direct only while `queued == 0`: every message handed to the writer before has
//!   been written (the writer counts a batch down only after writing it, under the
//!   link's lock), and only the raft thread sends, so nothing can be overtaken.
//! * The write is `send(MSG_DONTWAIT)`: a full socket buffer (a slow or stopped
//!   peer) never blocks. Nothing written: the caller queues the messages for the
//!   writer as before. Part of it written: the rest of the frame stays in `pending`,
//!   counted as one queued item, and the writer writes it before anything else.
//! * `try_lock` only: while the writer holds the link, the raft thread queues.
//! * The socket is a clone of the writer's plaintext connection, attached when it
//!   connects and detached when it drops it (a partial frame dies with its
//!   connection; Raft resends). TLS connections are not shared: their session state
//!   lives in the writer.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

/// What the raft thread and one peer's writer share about its connection.
#[derive(Default)]
pub(crate) struct Link {
    /// Items handed to the writer and not yet written or dropped.
    queued: AtomicUsize,
    /// The attached connection speaks RaftBatch v1 (no answers; `peers`).
    quiet: AtomicBool,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    /// The writer's connection (plaintext), while it has one.
    socket: Option<TcpStream>,
    /// Set by the connection's response reader when the peer closed it.
    broken: Option<Arc<AtomicBool>>,
    /// The unwritten rest of a frame a direct write left; written first by the writer.
    pending: Vec<u8>,
}

impl LinkState {
    fn clear(&mut self) {
        self.socket = None;
        self.broken = None;
        self.pending.clear();
    }
}

/// The outcome of [`Link::try_write`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Direct {
    /// The whole frame is in the socket.
    Written,
    /// Part of it is; the rest is pending and counted as one queued item: the caller
    /// must wake the writer (or, if it cannot, call [`Link::count_down`]).
    Partial,
    /// Nothing was written: queue the messages for the writer.
    NotWritten,
}

impl Link {
    /// Counts items handed to the writer.
    pub(crate) fn count_up(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts items written or dropped by the writer (or not handed over after all).
    pub(crate) fn count_down(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Nothing is queued for the writer: a direct write may be tried (a cheap check
    /// before encoding; [`Link::try_write`] checks the rest).
    pub(crate) fn is_idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Raft thread: writes `frames` to the peer's socket if nothing is queued and the
    /// writer is not using it; never blocks.
    pub(crate) fn try_write(&self, frames: &[u8]) -> Direct {
        if frames.is_empty() || !self.is_idle() {
            return Direct::NotWritten;
        }
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::WouldBlock) => return Direct::NotWritten,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        // The rest of an earlier partial frame goes first (through the writer), even
        // if its Flush could not be queued.
        let usable = state.socket.is_some()
            && state.pending.is_empty()
            && state
                .broken
                .as_ref()
                .is_some_and(|b| !b.load(Ordering::Acquire));
        let Some(socket) = state.socket.as_ref().filter(|_| usable) else {
            return Direct::NotWritten;
        };
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        match socket2::SockRef::from(socket).send_with_flags(frames, flags) {
            Ok(n) if n >= frames.len() => Direct::Written,
            Ok(n) if n > 0 => {
                state.pending.extend_from_slice(&frames[n..]);
                self.count_up(1);
                Direct::Partial
            }
            // Would block, or an error the writer will meet and reconnect on.
            _ => Direct::NotWritten,
        }
    }

    /// Writer: its new plaintext connection (a clone of the socket) and the flag its
    /// reader sets when the peer closes it.
    pub(crate) fn attach(&self, socket: TcpStream, broken: Arc<AtomicBool>, quiet: bool) {
        self.quiet.store(quiet, Ordering::Release);
        let mut state = self.lock();
        state.socket = Some(socket);
        state.broken = Some(broken);
        state.pending.clear();
    }

    /// The attached connection's frames are RaftBatch v1 (answered only when refused).
    pub(crate) fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Acquire)
    }

    /// The peer moved to `addr`: stops direct writes to a connection elsewhere (the
    /// writer reconnects); one to `addr` already (the writer was quicker) stays.
    pub(crate) fn detach_unless_to(&self, addr: SocketAddr) {
        let mut state = self.lock();
        let connected_to = state.socket.as_ref().and_then(|s| s.peer_addr().ok());
        if connected_to != Some(addr) {
            state.clear();
        }
    }

    /// Writer: the connection is gone (with any partial frame on it).
    pub(crate) fn detach(&self) {
        self.lock().clear();
    }

    /// Writer: runs `write` with the link held (no direct write interleaves), first
    /// handing it what a partial direct write left, if anything.
    pub(crate) fn write_locked<R>(&self, write: impl FnOnce(&[u8]) -> R) -> R {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        write(&pending)
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn writes_only_when_attached_idle_and_unbroken() {
        let link = Link::default();
        assert_eq!(link.try_write(b"x"), Direct::NotWritten, "no connection");
        let (a, mut b) = pair();
        let broken = Arc::new(AtomicBool::new(false));
        link.attach(a, Arc::clone(&broken), true);
        assert_eq!(link.try_write(b"hello"), Direct::Written);
        let mut got = [0u8; 5];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello");
        link.count_up(1);
        assert_eq!(link.try_write(b"x"), Direct::NotWritten, "queued first");
        link.count_down(1);
        broken.store(true, Ordering::Release);
        assert_eq!(link.try_write(b"x"), Direct::NotWritten, "broken");
        broken.store(false, Ordering::Release);
        let to = b.local_addr().expect("addr");
        link.detach_unless_to(to);
        assert_eq!(
            link.try_write(b"y"),
            Direct::Written,
            "still connected there"
        );
        link.detach_unless_to("127.0.0.1:1".parse().expect("addr"));
        assert_eq!(link.try_write(b"x"), Direct::NotWritten, "the peer moved");
        let (a2, _b2) = pair();
        link.attach(a2, Arc::clone(&broken), true);
        link.detach();
        assert_eq!(link.try_write(b"x"), Direct::NotWritten, "detached");
    }

    #[test]
    fn a_full_socket_never_blocks_and_the_rest_goes_first() {
        let link = Link::default();
        let (a, mut b) = pair();
        link.attach(a, Arc::new(AtomicBool::new(false)), false);
        // Nobody reads `b`: the socket buffers fill, and a write must not block.
        let chunk = vec![7u8; 1 << 20];
        let mut outcomes = Vec::new();
        for _ in 0..64 {
            let o = link.try_write(&chunk);
            let stop = o != Direct::Written;
            outcomes.push(o);
            if stop {
                break;
            }
        }
        let last = outcomes.last().expect("one write at least");
        assert_ne!(*last, Direct::Written, "64 MiB did not fill the socket");
        if *last == Direct::Partial {
            assert_eq!(
                link.try_write(b"x"),
                Direct::NotWritten,
                "the rest is queued"
            );
            link.count_down(1);
            assert_eq!(
                link.try_write(b"x"),
                Direct::NotWritten,
                "the rest goes first even when its Flush was not queued"
            );
            link.count_up(1);
            let rest = link.write_locked(|p| p.len());
            assert!(rest > 0 && rest < chunk.len(), "{rest}");
            link.count_down(1);
        }
        assert_eq!(link.write_locked(|p| p.len()), 0, "pending taken once");
        drop(b.set_nonblocking(true));
        let mut sink = vec![0u8; 1 << 16];
        let mut read = 0usize;
        while let Ok(n) = b.read(&mut sink) {
            if n == 0 {
                break;
            }
            read += n;
        }
        assert!(read > 0);
    }
}
