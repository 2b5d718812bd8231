//! Outgoing peer transport: Raft messages to other nodes, as RaftMessage frames
//! (api key 32, body = `raft::encode_message`) on the peers' client port.
//!
//! * One writer thread per peer with a bounded queue ([`PeerConfig::queue_cap`]
//!   messages). [`Peers::send`] never blocks: when the queue is full the message is
//!   dropped and counted (Raft tolerates loss and retransmits), so a slow or dead peer
//!   never blocks the raft thread, the other peers or clients.
//! * A connection starts with a PeerHandshake frame (cluster name, node id, name).
//!   Outgoing sockets are bound to the node's own listen IP before connecting
//!   (`socket2`; DESIGN decision 6: the source address identifies the node, which is
//!   what iptables partitions between 127.0.0.x addresses rely on).
//! * Connect failures back off exponentially from `backoff_min_ms` to
//!   `backoff_max_ms`; messages queued meanwhile are dropped (they are stale by the
//!   time a connection exists; Raft resends what matters).
//! * Frames are RaftBatch v1, which the receiver answers only when it refuses them
//!   (wire-spec §11; Raft's own replies travel on the receiver's connections). A
//!   small reader thread per connection reads what does come back: an error response
//!   (say PERMISSION_DENIED for a wrong cluster name) is logged and closes the
//!   connection; `UNSUPPORTED_VERSION` (a peer of an older build) makes the writer
//!   reconnect with answered frames (RaftBatch v0 / RaftMessage v1, read and
//!   discarded) until that connection ends.
//! * The raft thread hands a round's messages over with [`Peers::flush`]; small
//!   ones to an idle plaintext peer it writes itself (`peer_link`), the rest go to
//!   the peer's writer thread.
//! * Writes have a timeout (`write_timeout_ms`): a peer that stops reading (SIGSTOP)
//!   costs its own writer a reconnect, nothing else.
//! * TLS ([`PeerConfig::tls`], from `--peer-tls-*`): the connection is a rustls client
//!   session presenting the peer certificate and verifying the peer's server
//!   certificate against the peer CA, with the server name = the IP of the peer's rpc
//!   address (certificates carry SANs for it). The handshake runs in the writer
//!   thread before the PeerHandshake frame (bounded by `connect_timeout_ms`); a failed
//!   handshake is a failed connect (logged, retried with the backoff). Afterwards the
//!   `rustls::StreamOwned` sits in a mutex shared by the writer and the response
//!   reader: the reader blocks on its own clone of the socket *without* the lock,
//!   then takes it only to feed the bytes read into rustls and drain the plaintext;
//!   the writer takes it to encrypt and send a batch. A connection the other side
//!   closes soon after it was established (e.g. it rejected our certificate after
//!   the handshake, or refused the PeerHandshake) also counts as a failure for the
//!   backoff, so a misconfigured node never reconnects in a tight loop.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::net::tls as net_tls;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};

use super::peer_link::{Direct, Link};
use crate::raft::{encode_message, Message, NodeId};
use crate::types::GroupId;
use crate::wire::{self, Request, RequestFrame};

/// Tunables of the peer transport.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This node.
    pub node_id: NodeId,
    /// This node's name (sent in the handshake).
    pub node_name: String,
    /// Cluster name (sent in the handshake; the receiver refuses another).
    pub cluster_name: String,
    /// IP outgoing connections bind to (unspecified: let the OS pick).
    pub bind_ip: IpAddr,
    /// Messages queued per peer before new ones are dropped.
    pub queue_cap: usize,
    /// Most bytes written in one batch.
    pub max_batch_bytes: usize,
    /// First reconnect delay.
    pub backoff_min_ms: u64,
    /// Cap of the reconnect delay.
    pub backoff_max_ms: u64,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// A write blocked this long drops the connection.
    pub write_timeout_ms: u64,
    /// TLS for outgoing peer connections (`--peer-tls-*`): presents the peer
    /// certificate, trusts the peer CA. None: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Default)]
struct Counters {
    dropped_full: AtomicU64,
    dropped_disconnected: AtomicU64,
    sent: AtomicU64,
    /// Of `sent`: written by the raft thread itself (`peer_link`).
    direct: AtomicU64,
}

/// A Raft message of one group.
type GroupMsg = (GroupId, Message);

/// What a peer's writer thread is handed.
enum Job {
    Msg(GroupMsg),
    /// Write what a partial direct write left (`Link`'s pending bytes).
    Flush,
}

struct PeerHandle {
    tx: SyncSender<Job>,
    addr: Arc<Mutex<Option<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
    link: Arc<Link>,
}

/// The set of outgoing peer connections.
pub(crate) struct Peers {
    cfg: PeerConfig,
    peers: Mutex<HashMap<NodeId, PeerHandle>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// The current round's messages (raft thread), sent by [`Peers::flush`].
    round: Mutex<Vec<GroupMsg>>,
    /// The raft thread's encoding buffer for direct writes (kept between rounds).
    frames: Mutex<Vec<u8>>,
}

/// Most entry bytes a round may carry to one peer to be written by the raft thread
/// itself (a catch-up's big appends go through the writer thread).
const DIRECT_MAX_BYTES: usize = 64 * 1024;

/// Most peers a node keeps writers for (bounds threads; far above MAX voters used).
const MAX_PEERS: usize = 256;

impl Peers {
    pub(crate) fn new(cfg: PeerConfig) -> Peers {
        Peers {
            cfg,
            peers: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            round: Mutex::new(Vec::new()),
            frames: Mutex::new(Vec::new()),
        }
    }

    /// Sets (or updates) the rpc address of `id`, starting its writer if needed.
    pub(crate) fn set_addr(&self, id: NodeId, addr: SocketAddr) {
        if id == self.cfg.node_id {
            return;
        }
        let mut peers = lock(&self.peers);
        let Some(p) = peers.get(&id) else {
            self.spawn(&mut peers, id, Some(addr));
            return;
        };
        let mut a = lock(&p.addr);
        if *a == Some(addr) {
            return;
        }
        log::info!("peer {id}: address {addr}");
        *a = Some(addr);
        drop(a);
        let link = Arc::clone(&p.link);
        drop(peers);
        // No more direct writes to the old address: the next message goes to the
        // writer, which reconnects. (Outside the peers lock: the writer may hold the
        // link through a slow write, and the raft thread takes the peers lock.)
        link.detach_unless_to(addr);
    }

    fn spawn(&self, peers: &mut HashMap<NodeId, PeerHandle>, id: NodeId, addr: Option<SocketAddr>) {
        if peers.len() >= MAX_PEERS || self.stop.load(Ordering::Acquire) {
            return;
        }
        let (tx, rx) = mpsc::sync_channel(self.cfg.queue_cap.max(1));
        let addr = Arc::new(Mutex::new(addr));
        let link = Arc::new(Link::default());
        let writer = Writer {
            cfg: self.cfg.clone(),
            peer: id,
            addr: Arc::clone(&addr),
            stop: Arc::clone(&self.stop),
            counters: Arc::clone(&self.counters),
            link: Arc::clone(&link),
            old_peer: Arc::new(AtomicBool::new(false)),
        };
        let thread = std::thread::Builder::new()
            .name(format!("peer-{id}"))
            .spawn(move || writer.run(rx));
        match thread {
            Ok(t) => {
                peers.insert(
                    id,
                    PeerHandle {
                        tx,
                        addr,
                        thread: Some(t),
                        link,
                    },
                );
            }
            Err(e) => log::error!("peer {id}: cannot start writer thread: {e}"),
        }
    }

    /// Adds a message to the current round; [`Peers::flush`] sends the round.
    pub(crate) fn send(&self, group: GroupId, m: Message) {
        lock(&self.round).push((group, m));
    }

    /// Sends the round's messages; never blocks. Per recipient, in order: written
    /// to its socket by the calling (raft) thread when nothing is queued for it
    /// (`peer_link`), else queued for its writer (dropped when the queue is full:
    /// Raft retransmits).
    pub(crate) fn flush(&self) {
        let round = std::mem::take(&mut *lock(&self.round));
        if round.is_empty() {
            return;
        }
        let mut by_peer: Vec<(NodeId, Vec<GroupMsg>)> = Vec::new();
        for gm in round {
            let to = gm.1.to;
            match by_peer.iter_mut().find(|(id, _)| *id == to) {
                Some((_, msgs)) => msgs.push(gm),
                None => by_peer.push((to, vec![gm])),
            }
        }
        let mut peers = lock(&self.peers);
        let mut frames = lock(&self.frames);
        for (to, msgs) in by_peer {
            if !peers.contains_key(&to) {
                // Address unknown yet (gossip will tell); the writer waits for it.
                self.spawn(&mut peers, to, None);
            }
            if let Some(p) = peers.get(&to) {
                self.deliver(to, p, msgs, &mut frames);
            }
        }
    }

    fn deliver(&self, to: NodeId, p: &PeerHandle, msgs: Vec<GroupMsg>, frames: &mut Vec<u8>) {
        let bytes: usize = msgs.iter().map(|m| super::inbox::message_bytes(&m.1)).sum();
        // Encoded only when a direct write may happen (the writer encodes the rest).
        if self.cfg.tls.is_none() && bytes <= DIRECT_MAX_BYTES && p.link.is_idle() {
            frames.clear();
            let mut correlation = 0;
            encode_frames(&msgs, &mut correlation, frames, p.link.quiet());
            match p.link.try_write(frames) {
                Direct::Written => {
                    self.count_direct(msgs.len());
                    return;
                }
                Direct::Partial => {
                    self.count_direct(msgs.len());
                    if p.tx.try_send(Job::Flush).is_err() {
                        // The writer writes the rest before its next batch anyway.
                        p.link.count_down(1);
                    }
                    return;
                }
                Direct::NotWritten => {}
            }
        }
        for m in msgs {
            p.link.count_up(1);
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                p.tx.try_send(Job::Msg(m))
            {
                p.link.count_down(1);
                let n = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    log::debug!("peer {to}: queue full, {} message(s) dropped so far", n + 1);
                }
            }
        }
    }

    fn count_direct(&self, n: usize) {
        self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.counters.direct.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Stops every writer (their connections close).
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let handles: Vec<PeerHandle> = lock(&self.peers).drain().map(|(_, p)| p).collect();
        for mut h in handles {
            drop(h.tx);
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
        log::debug!(
            "peers stopped: {} sent ({} by the raft thread), {} dropped (queue full), {} dropped (disconnected)",
            self.counters.sent.load(Ordering::Relaxed),
            self.counters.direct.load(Ordering::Relaxed),
            self.counters.dropped_full.load(Ordering::Relaxed),
            self.counters.dropped_disconnected.load(Ordering::Relaxed)
        );
    }
}

struct Writer {
    cfg: PeerConfig,
    peer: NodeId,
    addr: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    link: Arc<Link>,
    /// The peer answered a RaftBatch v1 with UNSUPPORTED_VERSION (an older build):
    /// its connections use answered frames until one of them ends.
    old_peer: Arc<AtomicBool>,
}

/// A TLS peer connection: shared by the writer and the response reader.
type TlsStream = net_tls::BlockingTls;

enum Transport {
    Plain(TcpStream),
    Tls(Arc<Mutex<TlsStream>>),
}

struct Conn {
    transport: Transport,
    /// A clone of the socket, to shut it down (which also ends the reader).
    ctl: TcpStream,
    addr: SocketAddr,
    opened_at: Instant,
    reader: Option<JoinHandle<()>>,
    broken: Arc<AtomicBool>,
    /// Frames are RaftBatch v1: the peer answers only refusals.
    quiet: bool,
}

/// Plaintext bytes rustls takes per `writer()` call (below its default 64 KiB send
/// buffer limit, and flushed after each, so every chunk is accepted).
const TLS_WRITE_CHUNK_BYTES: usize = 16 * 1024;

impl Conn {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.transport {
            Transport::Plain(stream) => stream.write_all(buf),
            Transport::Tls(shared) => {
                let mut guard = lock(shared);
                let tls = &mut *guard;
                for chunk in buf.chunks(TLS_WRITE_CHUNK_BYTES) {
                    tls.conn.writer().write_all(chunk)?;
                    net_tls::flush_blocking(&mut tls.conn, &mut tls.sock)?;
                }
                Ok(())
            }
        }
    }

    fn close(mut self) {
        if let Transport::Tls(shared) = &self.transport {
            // Best effort; bounded by the socket's write timeout.
            let mut guard = lock(shared);
            let tls = &mut *guard;
            tls.conn.send_close_notify();
            let _ = net_tls::flush_blocking(&mut tls.conn, &mut tls.sock);
        }
        let _ = self.ctl.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The writer's connection and its reconnect state.
struct Session {
    conn: Option<Conn>,
    backoff_ms: u64,
    next_attempt: Instant,
    buf: Vec<u8>,
    correlation: u32,
}

impl Writer {
    fn run(self, rx: Receiver<Job>) {
        let mut s = Session {
            conn: None,
            backoff_ms: self.cfg.backoff_min_ms.max(1),
            next_attempt: Instant::now(),
            buf: Vec::new(),
            correlation: 0,
        };
        while !self.stop.load(Ordering::Acquire) {
            // Connect as soon as the address is known, before any message: the peer
            // hears "connected" (a node that restarted), which wakes its quiesced
            // groups and makes their leaders probe this node's logs.
            if s.conn.is_none() && Instant::now() >= s.next_attempt {
                if let Some(addr) = *lock(&self.addr) {
                    self.connect_session(&mut s, addr);
                }
            }
            let first = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Batch whatever else is queued (bounded by bytes and by the queue).
            let mut batch = vec![first];
            let mut approx = 0usize;
            while approx < self.cfg.max_batch_bytes && batch.len() < self.cfg.queue_cap {
                match rx.try_recv() {
                    Ok(job) => {
                        if let Job::Msg((_, m)) = &job {
                            approx += super::inbox::message_bytes(m);
                        }
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(&mut s, &batch);
            // Counted down only once written (or dropped): the raft thread writes
            // directly only when nothing handed over earlier is still unwritten.
            self.link.count_down(batch.len());
        }
        self.close_session(&mut s);
    }

    /// Writes one batch (after what a partial direct write left), reconnecting
    /// first if the connection broke or the peer's address changed.
    fn write_batch(&self, s: &mut Session, batch: &[Job]) {
        let messages = batch.iter().filter(|j| matches!(j, Job::Msg(_))).count();
        let want = *lock(&self.addr);
        if let Some(c) = &s.conn {
            let broken = c.broken.load(Ordering::Acquire);
            if broken || Some(c.addr) != want {
                let lived = c.opened_at.elapsed();
                let old_peer = self.old_peer.load(Ordering::Acquire);
                // A quiet connection refused as too new: reconnect at once, answered.
                let downgrade = broken && c.quiet && old_peer;
                if broken && !c.quiet {
                    // The old peer may come back upgraded: try quiet frames again.
                    self.old_peer.store(false, Ordering::Release);
                }
                self.close_session(s);
                if downgrade {
                    s.next_attempt = Instant::now();
                } else if broken && lived < Duration::from_millis(self.cfg.backoff_max_ms.max(1)) {
                    // Refused soon after connecting (certificate rejected after
                    // the handshake, PeerHandshake refused): back off as for a
                    // failed connect.
                    s.next_attempt = Instant::now() + Duration::from_millis(s.backoff_ms);
                    s.backoff_ms = (s.backoff_ms * 2).min(self.cfg.backoff_max_ms.max(1));
                } else {
                    s.backoff_ms = self.cfg.backoff_min_ms.max(1);
                }
            }
        }
        if s.conn.is_none() {
            match want {
                Some(addr) if Instant::now() >= s.next_attempt => self.connect_session(s, addr),
                _ => {}
            }
        }
        let Some(c) = s.conn.as_mut() else {
            self.drop_batch(messages);
            return;
        };
        s.buf.clear();
        let msgs = batch.iter().filter_map(|j| match j {
            Job::Msg(m) => Some(m),
            Job::Flush => None,
        });
        encode_frames(msgs, &mut s.correlation, &mut s.buf, c.quiet);
        let buf = &s.buf;
        let written = self.link.write_locked(|pending| {
            if !pending.is_empty() {
                c.write_all(pending)?;
            }
            if buf.is_empty() {
                return Ok(());
            }
            c.write_all(buf)
        });
        match written {
            Ok(()) => {
                self.counters
                    .sent
                    .fetch_add(messages as u64, Ordering::Relaxed);
            }
            Err(e) => {
                log::info!(
                    "peer {}: write to {} failed: {e}; reconnecting",
                    self.peer,
                    c.addr
                );
                self.close_session(s);
                s.next_attempt = Instant::now() + Duration::from_millis(s.backoff_ms);
            }
        }
    }

    fn connect_session(&self, s: &mut Session, addr: SocketAddr) {
        s.conn = self.try_connect(addr, &mut s.backoff_ms, &mut s.next_attempt);
        if let Some(c) = &s.conn {
            if let Transport::Plain(stream) = &c.transport {
                match stream.try_clone() {
                    Ok(clone) => self.link.attach(clone, Arc::clone(&c.broken), c.quiet),
                    Err(e) => log::debug!("peer {}: no direct path: {e}", self.peer),
                }
            }
        }
    }

    fn close_session(&self, s: &mut Session) {
        self.link.detach();
        if let Some(c) = s.conn.take() {
            c.close();
        }
    }

    /// One connection attempt; on failure the next one waits (exponential backoff).
    fn try_connect(
        &self,
        addr: SocketAddr,
        backoff_ms: &mut u64,
        next_attempt: &mut Instant,
    ) -> Option<Conn> {
        match self.connect(addr) {
            Ok(c) => {
                log::info!(
                    "peer {}: connected to {addr}{}",
                    self.peer,
                    if self.cfg.tls.is_some() { " (TLS)" } else { "" }
                );
                Some(c)
            }
            Err(e) => {
                if e.kind() == ErrorKind::InvalidData {
                    // TLS handshake failures are configuration problems: visible.
                    log::warn!("peer {}: connect to {addr} failed: {e}", self.peer);
                } else {
                    log::debug!("peer {}: connect to {addr} failed: {e}", self.peer);
                }
                *next_attempt = Instant::now() + Duration::from_millis(*backoff_ms);
                *backoff_ms = (*backoff_ms * 2).min(self.cfg.backoff_max_ms.max(1));
                None
            }
        }
    }

    fn drop_batch(&self, n: usize) {
        self.counters
            .dropped_disconnected
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    fn connect(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if !self.cfg.bind_ip.is_unspecified() && self.cfg.bind_ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(&SocketAddr::new(self.cfg.bind_ip, 0).into())?;
        }
        socket.connect_timeout(
            &addr.into(),
            Duration::from_millis(self.cfg.connect_timeout_ms.max(1)),
        )?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_millis(
            self.cfg.write_timeout_ms.max(1),
        )))?;
        let ctl = stream.try_clone()?;
        let reader_stream = stream.try_clone()?;
        let transport = match &self.cfg.tls {
            None => Transport::Plain(stream),
            Some(config) => {
                Transport::Tls(Arc::new(Mutex::new(self.handshake(config, addr, stream)?)))
            }
        };
        let mut hello = Vec::new();
        wire::encode_request(
            &RequestFrame::new(
                0,
                Request::PeerHandshake {
                    cluster_name: self.cfg.cluster_name.clone(),
                    node_id: self.cfg.node_id,
                    node_name: self.cfg.node_name.clone(),
                },
            ),
            &mut hello,
        );
        let broken = Arc::new(AtomicBool::new(false));
        let reader_broken = Arc::clone(&broken);
        let peer = self.peer;
        let reader_tls = match &transport {
            Transport::Plain(_) => None,
            Transport::Tls(shared) => Some(Arc::clone(shared)),
        };
        let quiet = !self.old_peer.load(Ordering::Acquire);
        let mut conn = Conn {
            transport,
            ctl,
            addr,
            opened_at: Instant::now(),
            reader: None,
            broken,
            quiet,
        };
        let old_peer = quiet.then(|| Arc::clone(&self.old_peer));
        if let Err(e) = conn.write_all(&hello) {
            conn.close();
            return Err(e);
        }
        let reader = std::thread::Builder::new()
            .name(format!("peer-{peer}-rx"))
            .spawn(move || {
                drain_responses(peer, reader_stream, reader_tls, &reader_broken, old_peer)
            });
        match reader {
            Ok(r) => {
                conn.reader = Some(r);
                Ok(conn)
            }
            Err(e) => {
                conn.close();
                Err(e)
            }
        }
    }

    /// The client side of a TLS handshake with `addr`, bounded by the connect timeout.
    /// The server name checked against the peer's certificate is the peer's IP.
    /// Failures are `InvalidData` (certificate problems) or I/O errors.
    fn handshake(
        &self,
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream> {
        let timeout = Duration::from_millis(self.cfg.connect_timeout_ms.max(1));
        let tls = net_tls::connect_blocking(config, ServerName::from(addr.ip()), stream, timeout)?;
        tls.sock.set_read_timeout(None)?;
        Ok(tls)
    }
}

/// Appends a RaftMessage request frame (wire-spec section 3: length, api key 32,
/// version 0, correlation id, then the raft encoding as the body), encoding the
/// message straight into `out` (no intermediate payload copy).
/// Small messages (heartbeats, votes, acknowledgements, small appends) of every
/// group share RaftBatch frames up to this many bytes: one frame per node pair per
/// round instead of one per group. Bigger messages travel alone (a frame must stay
/// within the receiver's frame limit).
const COALESCE_BYTES: usize = 64 * 1024;

/// Encodes a batch of queued messages as frames: runs of small messages as
/// RaftBatch frames, big ones as RaftMessage v1 frames.
/// `quiet`: every frame is a RaftBatch v1 (the receiver answers only refusals);
/// otherwise big and lone messages are RaftMessage v1 frames and runs RaftBatch v0,
/// each answered.
fn encode_frames<'a>(
    batch: impl IntoIterator<Item = &'a GroupMsg>,
    correlation: &mut u32,
    out: &mut Vec<u8>,
    quiet: bool,
) {
    let mut run: Vec<&GroupMsg> = Vec::new();
    let mut run_bytes = 0usize;
    let mut frame = |run: &[&GroupMsg], out: &mut Vec<u8>| {
        *correlation = correlation.wrapping_add(1);
        match run {
            [] => {}
            [one] if !quiet => encode_raft_frame(one, *correlation, out),
            _ => encode_batch_frame(run, *correlation, out, u16::from(quiet)),
        }
    };
    for m in batch {
        let bytes = super::inbox::message_bytes(&m.1);
        if bytes > COALESCE_BYTES {
            frame(&[m], out);
            continue;
        }
        if run_bytes + bytes > COALESCE_BYTES || run.len() >= wire::MAX_RAFT_BATCH_MESSAGES {
            frame(&run, out);
            run.clear();
            run_bytes = 0;
        }
        run.push(m);
        run_bytes += bytes;
    }
    frame(&run, out);
}

/// Starts a request frame (length patched by `end_frame`); returns its start.
fn begin_frame(api: wire::ApiKey, version: u16, correlation: u32, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&api.as_u16().to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation.to_be_bytes());
    start
}

fn end_frame(start: usize, out: &mut [u8]) {
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// RaftMessage v1: `u64 group`, then the message (wire-spec §5).
fn encode_raft_frame((group, m): &GroupMsg, correlation: u32, out: &mut Vec<u8>) {
    let start = begin_frame(wire::ApiKey::RaftMessage, 1, correlation, out);
    out.extend_from_slice(&group.0.to_be_bytes());
    encode_message(m, out);
    end_frame(start, out);
}

/// RaftBatch: `u32 count, count × (u64 group, u32 len, message)` (wire-spec §11).
fn encode_batch_frame(run: &[&GroupMsg], correlation: u32, out: &mut Vec<u8>, version: u16) {
    let start = begin_frame(wire::ApiKey::RaftBatch, version, correlation, out);
    out.extend_from_slice(&(run.len() as u32).to_be_bytes());
    for (group, m) in run {
        out.extend_from_slice(&group.0.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        encode_message(m, out);
        let len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }
    end_frame(start, out);
}

/// Reads responses until the connection closes; an error response (or a TLS error)
/// marks the connection broken (the writer reconnects). With TLS the socket is read
/// without the session lock; the lock is held only to decrypt what was read.
/// `old_peer` (quiet connections): set when the peer does not know RaftBatch v1.
fn drain_responses(
    peer: NodeId,
    mut stream: TcpStream,
    tls: Option<Arc<Mutex<TlsStream>>>,
    broken: &AtomicBool,
    old_peer: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut plain = vec![0u8; 64 * 1024];
    let mut responses = Responses {
        peer,
        pending: Vec::new(),
        old_peer,
    };
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ok = match &tls {
            None => responses.feed(&buf[..n]),
            Some(shared) => decrypt(peer, shared, &buf[..n], &mut plain, &mut responses),
        };
        if !ok {
            break;
        }
    }
    broken.store(true, Ordering::Release);
}

/// Feeds `raw` TLS bytes to the session and the plaintext to `responses`. Returns
/// false when the connection must be closed.
fn decrypt(
    peer: NodeId,
    shared: &Mutex<TlsStream>,
    mut raw: &[u8],
    plain: &mut [u8],
    responses: &mut Responses,
) -> bool {
    let mut guard = lock(shared);
    let tls = &mut *guard;
    // Bounded: every round consumes bytes of `raw` or returns.
    while !raw.is_empty() {
        match tls.conn.read_tls(&mut raw) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => {
                log::warn!("peer {peer}: TLS read failed: {e}; reconnecting");
                return false;
            }
        }
        if let Err(e) = tls.conn.process_new_packets() {
            log::warn!("peer {peer}: TLS error: {e}; reconnecting");
            let _ = net_tls::flush_blocking(&mut tls.conn, &mut tls.sock);
            return false;
        }
        // Bounded: rustls holds at most its received-plaintext limit.
        loop {
            match tls.conn.reader().read(plain) {
                Ok(0) => return false, // close_notify
                Ok(m) => {
                    if !responses.feed(&plain[..m]) {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
    }
    // Whatever the session wants to send in reply (key updates).
    net_tls::flush_blocking(&mut tls.conn, &mut tls.sock).is_ok()
}

/// Response frames of one connection, parsed as they arrive.
struct Responses {
    peer: NodeId,
    pending: Vec<u8>,
    old_peer: Option<Arc<AtomicBool>>,
}

impl Responses {
    /// Consumes response bytes; false when the peer refused our traffic or sent a bad
    /// frame (the connection is closed).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let peer = self.peer;
        let pending = &mut self.pending;
        pending.extend_from_slice(bytes);
        // Frames: u32 length | u32 correlation | u16 error code | body.
        let mut at = 0usize;
        while pending.len() - at >= 4 {
            let len = u32::from_be_bytes([
                pending[at],
                pending[at + 1],
                pending[at + 2],
                pending[at + 3],
            ]) as usize;
            if len > wire::MAX_FRAME_BYTES_CAP as usize || len < 6 {
                log::warn!("peer {peer}: bad response frame length {len}; closing");
                return false;
            }
            if pending.len() - at < 4 + len {
                break;
            }
            let code = u16::from_be_bytes([pending[at + 8], pending[at + 9]]);
            if code == wire::ErrorCode::UnsupportedVersion as u16 {
                if let Some(old) = &self.old_peer {
                    log::info!(
                        "peer {peer}: runs an older version (no RaftBatch v1); \
                         reconnecting with answered frames"
                    );
                    old.store(true, Ordering::Release);
                    return false;
                }
            }
            if code != 0 {
                let msg = match wire::decode_response(
                    &pending[at..at + 4 + len],
                    wire::ApiKey::RaftMessage,
                ) {
                    Ok(f) => match f.result {
                        Err(e) => e.message,
                        Ok(_) => String::new(),
                    },
                    Err(_) => String::new(),
                };
                log::warn!("peer {peer}: refused our traffic (error {code}: {msg}); reconnecting");
                return false;
            }
            at += 4 + len;
        }
        pending.drain(..at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, Index, MessageBody, RecordKind, Term};

    #[test]
    fn raft_frames_decode_as_wire_requests_and_raft_messages() {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendEntries {
                prev_index: Index(4),
                prev_term: Term(2),
                commit: Index(4),
                entries: vec![Entry {
                    index: Index(5),
                    term: Term(3),
                    kind: RecordKind::Data,
                    data: b"hello".to_vec().into(),
                }],
            },
        };
        let mut buf = Vec::new();
        encode_raft_frame(&(GroupId(7), m.clone()), 77, &mut buf);
        let frame = wire::decode_request(&buf).expect("a valid request frame");
        assert_eq!(frame.correlation_id, 77);
        let Request::Raft { group, payload } = frame.request else {
            panic!("not a Raft request");
        };
        assert_eq!(group, GroupId(7));
        assert_eq!(crate::raft::decode_message(&payload), Ok(m));
    }

    /// Small messages of many groups share RaftBatch frames; big ones go alone.
    #[test]
    fn small_messages_of_many_groups_share_one_frame() {
        let beat = |g: u64| {
            let m = Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(g),
                body: MessageBody::Heartbeat {
                    commit: Index(g),
                    quiesce: false,
                },
            };
            (GroupId(g), m)
        };
        let mut batch: Vec<GroupMsg> = (1..=100).map(beat).collect();
        let big = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::AppendEntries {
                prev_index: Index(0),
                prev_term: Term(0),
                commit: Index(0),
                entries: vec![Entry {
                    index: Index(1),
                    term: Term(1),
                    kind: RecordKind::Data,
                    data: vec![7u8; COALESCE_BYTES + 1].into(),
                }],
            },
        };
        batch.push((GroupId(500), big.clone()));
        let mut buf = Vec::new();
        let mut correlation = 0;
        encode_frames(&batch, &mut correlation, &mut buf, false);
        let mut frames = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            frames.push(wire::decode_request(&buf[at..at + 4 + len]).expect("a frame"));
            at += 4 + len;
        }
        assert_eq!(
            frames.len(),
            2,
            "one RaftBatch for 100 heartbeats, one big message"
        );
        let Request::Raft { group, payload } = &frames[0].request else {
            panic!("the big message goes first, alone");
        };
        assert_eq!(
            (*group, crate::raft::decode_message(payload)),
            (GroupId(500), Ok(big))
        );
        let Request::RaftBatch { messages } = &frames[1].request else {
            panic!("not a RaftBatch");
        };
        assert_eq!(messages.len(), 100);
        for (i, gm) in messages.iter().enumerate() {
            let (g, m) = beat(i as u64 + 1);
            assert_eq!(
                (gm.group, crate::raft::decode_message(&gm.payload)),
                (g, Ok(m))
            );
        }
        // Quiet: the same frames, each a RaftBatch v1 (the big message a batch of one).
        buf.clear();
        encode_frames(&batch, &mut correlation, &mut buf, true);
        let (mut at, mut sizes) = (0, Vec::new());
        while at < buf.len() {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let frame = wire::decode_request(&buf[at..at + 4 + len]).expect("a frame");
            assert_eq!(frame.api_version, 1, "{:?}", frame.request.api_key());
            let Request::RaftBatch { messages } = frame.request else {
                panic!("quiet frames are RaftBatch v1");
            };
            sizes.push(messages.len());
            at += 4 + len;
        }
        assert_eq!(sizes, vec![1, 100]);
    }

    /// An UNSUPPORTED_VERSION answer on a quiet connection marks the peer old (the
    /// writer reconnects with answered frames); on an answered one it is an error.
    #[test]
    fn an_old_peer_refusing_quiet_frames_is_told_apart() {
        let refusal = |correlation: u32| {
            let mut out = Vec::new();
            let body = wire::ErrorBody {
                code: wire::ErrorCode::UnsupportedVersion,
                message: "RaftBatch v1".into(),
                leader_hint: None,
            };
            wire::encode_response(
                &wire::ResponseFrame {
                    correlation_id: correlation,
                    result: Err(body),
                },
                &mut out,
            );
            out
        };
        let old = Arc::new(AtomicBool::new(false));
        let mut quiet = Responses {
            peer: NodeId(2),
            pending: Vec::new(),
            old_peer: Some(Arc::clone(&old)),
        };
        assert!(!quiet.feed(&refusal(1)), "the connection is dropped");
        assert!(old.load(Ordering::Acquire), "and the peer known old");
        let mut answered = Responses {
            peer: NodeId(2),
            pending: Vec::new(),
            old_peer: None,
        };
        assert!(!answered.feed(&refusal(1)));
    }
}
