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
//! * Responses (empty Raft acks; the receiver answers over its own connections) are
//!   read and discarded by a small reader thread per connection, so the receiver's
//!   per-connection output buffer never fills. An error response (say
//!   PERMISSION_DENIED for a wrong cluster name) is logged and closes the connection.
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
}

/// A Raft message of one group.
type GroupMsg = (GroupId, Message);

struct PeerHandle {
    tx: SyncSender<GroupMsg>,
    addr: Arc<Mutex<Option<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

/// The set of outgoing peer connections.
pub(crate) struct Peers {
    cfg: PeerConfig,
    peers: Mutex<HashMap<NodeId, PeerHandle>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// Most peers a node keeps writers for (bounds threads; far above MAX voters used).
const MAX_PEERS: usize = 256;

impl Peers {
    pub(crate) fn new(cfg: PeerConfig) -> Peers {
        Peers {
            cfg,
            peers: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Sets (or updates) the rpc address of `id`, starting its writer if needed.
    pub(crate) fn set_addr(&self, id: NodeId, addr: SocketAddr) {
        if id == self.cfg.node_id {
            return;
        }
        let mut peers = lock(&self.peers);
        if let Some(p) = peers.get(&id) {
            let mut a = lock(&p.addr);
            if *a != Some(addr) {
                log::info!("peer {id}: address {addr}");
                *a = Some(addr);
            }
            return;
        }
        self.spawn(&mut peers, id, Some(addr));
    }

    fn spawn(&self, peers: &mut HashMap<NodeId, PeerHandle>, id: NodeId, addr: Option<SocketAddr>) {
        if peers.len() >= MAX_PEERS || self.stop.load(Ordering::Acquire) {
            return;
        }
        let (tx, rx) = mpsc::sync_channel(self.cfg.queue_cap.max(1));
        let addr = Arc::new(Mutex::new(addr));
        let writer = Writer {
            cfg: self.cfg.clone(),
            peer: id,
            addr: Arc::clone(&addr),
            stop: Arc::clone(&self.stop),
            counters: Arc::clone(&self.counters),
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
                    },
                );
            }
            Err(e) => log::error!("peer {id}: cannot start writer thread: {e}"),
        }
    }

    /// Queues a message for its recipient; never blocks (drops when full).
    pub(crate) fn send(&self, group: GroupId, m: Message) {
        let to = m.to;
        let mut peers = lock(&self.peers);
        if !peers.contains_key(&to) {
            // Address unknown yet (gossip will tell); the writer waits for it.
            self.spawn(&mut peers, to, None);
        }
        let Some(p) = peers.get(&to) else {
            return;
        };
        match p.tx.try_send((group, m)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    log::debug!("peer {to}: queue full, {} message(s) dropped so far", n + 1);
                }
            }
        }
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
            "peers stopped: {} sent, {} dropped (queue full), {} dropped (disconnected)",
            self.counters.sent.load(Ordering::Relaxed),
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

impl Writer {
    fn run(self, rx: Receiver<GroupMsg>) {
        let mut conn: Option<Conn> = None;
        let mut backoff_ms = self.cfg.backoff_min_ms.max(1);
        let mut next_attempt = Instant::now();
        let mut buf = Vec::new();
        let mut correlation: u32 = 0;
        while !self.stop.load(Ordering::Acquire) {
            // Connect as soon as the address is known, before any message: the peer
            // hears "connected" (a node that restarted), which wakes its quiesced
            // groups and makes their leaders probe this node's logs.
            if conn.is_none() && Instant::now() >= next_attempt {
                if let Some(addr) = *lock(&self.addr) {
                    conn = self.try_connect(addr, &mut backoff_ms, &mut next_attempt);
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
                    Ok(m) => {
                        approx += super::inbox::message_bytes(&m.1);
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            let want = *lock(&self.addr);
            if let Some(c) = &conn {
                let broken = c.broken.load(Ordering::Acquire);
                if broken || Some(c.addr) != want {
                    let lived = c.opened_at.elapsed();
                    if let Some(c) = conn.take() {
                        c.close();
                    }
                    if broken && lived < Duration::from_millis(self.cfg.backoff_max_ms.max(1)) {
                        // Refused soon after connecting (certificate rejected after
                        // the handshake, PeerHandshake refused): back off as for a
                        // failed connect.
                        next_attempt = Instant::now() + Duration::from_millis(backoff_ms);
                        backoff_ms = (backoff_ms * 2).min(self.cfg.backoff_max_ms.max(1));
                    } else {
                        backoff_ms = self.cfg.backoff_min_ms.max(1);
                    }
                }
            }
            if conn.is_none() {
                let Some(addr) = want else {
                    self.drop_batch(batch.len());
                    continue;
                };
                if Instant::now() < next_attempt {
                    self.drop_batch(batch.len());
                    continue;
                }
                conn = self.try_connect(addr, &mut backoff_ms, &mut next_attempt);
                if conn.is_none() {
                    self.drop_batch(batch.len());
                    continue;
                }
            }
            buf.clear();
            encode_frames(&batch, &mut correlation, &mut buf);
            let Some(c) = conn.as_mut() else {
                continue;
            };
            match c.write_all(&buf) {
                Ok(()) => {
                    self.counters
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    log::info!(
                        "peer {}: write to {} failed: {e}; reconnecting",
                        self.peer,
                        c.addr
                    );
                    if let Some(c) = conn.take() {
                        c.close();
                    }
                    next_attempt = Instant::now() + Duration::from_millis(backoff_ms);
                }
            }
        }
        if let Some(c) = conn.take() {
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
        let mut conn = Conn {
            transport,
            ctl,
            addr,
            opened_at: Instant::now(),
            reader: None,
            broken,
        };
        if let Err(e) = conn.write_all(&hello) {
            conn.close();
            return Err(e);
        }
        let reader = std::thread::Builder::new()
            .name(format!("peer-{peer}-rx"))
            .spawn(move || drain_responses(peer, reader_stream, reader_tls, &reader_broken));
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
fn encode_frames(batch: &[GroupMsg], correlation: &mut u32, out: &mut Vec<u8>) {
    let mut run: Vec<&GroupMsg> = Vec::new();
    let mut run_bytes = 0usize;
    for m in batch {
        let bytes = super::inbox::message_bytes(&m.1);
        if bytes > COALESCE_BYTES {
            *correlation = correlation.wrapping_add(1);
            encode_raft_frame(m, *correlation, out);
            continue;
        }
        if run_bytes + bytes > COALESCE_BYTES || run.len() >= wire::MAX_RAFT_BATCH_MESSAGES {
            *correlation = correlation.wrapping_add(1);
            encode_batch_frame(&run, *correlation, out);
            run.clear();
            run_bytes = 0;
        }
        run.push(m);
        run_bytes += bytes;
    }
    match run.as_slice() {
        [] => {}
        [one] => {
            *correlation = correlation.wrapping_add(1);
            encode_raft_frame(one, *correlation, out);
        }
        _ => {
            *correlation = correlation.wrapping_add(1);
            encode_batch_frame(&run, *correlation, out);
        }
    }
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

/// RaftBatch: `u32 count, count × (u64 group, u32 len, message)` (wire-spec §5).
fn encode_batch_frame(run: &[&GroupMsg], correlation: u32, out: &mut Vec<u8>) {
    let start = begin_frame(wire::ApiKey::RaftBatch, 0, correlation, out);
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
fn drain_responses(
    peer: NodeId,
    mut stream: TcpStream,
    tls: Option<Arc<Mutex<TlsStream>>>,
    broken: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut plain = vec![0u8; 64 * 1024];
    let mut responses = Responses {
        peer,
        pending: Vec::new(),
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
        encode_frames(&batch, &mut correlation, &mut buf);
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
    }
}
