//! The thin UDP driver: one `std::net::UdpSocket`, one thread, one event channel
//! around the pure [`Gossip`] state machine.
//!
//! The thread blocks in `recv_from` with a read timeout of `tick_ms` (10 ms), hands
//! every datagram to [`Gossip::handle_packet`], calls [`Gossip::tick`] with a monotonic
//! millisecond clock (`Instant` since start), sends every queued packet with
//! `send_to`, and forwards member events to a bounded `std::sync::mpsc::sync_channel`.
//! If the owner does not drain events and the channel is full, events are dropped and
//! counted (`DriverStats::events_dropped`); `GossipHandle::members` is the source
//! of truth to reconcile from.
//!
//! This module is the only place in `gossip` with sockets, threads, clocks and OS
//! randomness: it seeds the machine's PRNG and installs a nonce source that draws
//! 96 random bits per sealed packet from `ring::rand::SystemRandom`.
//!
//! Rejoin after a restart: the driver always starts at incarnation 0; the machine
//! learns its previous incarnation from the state exchange with a seed and refutes
//! above it (see `machine`). No wall-clock incarnations.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::config::GossipConfig;
use super::crypto::{NonceSource, NONCE_BYTES};
use super::machine::{Gossip, GossipStats, Output};
use super::member::{Member, MemberEvent, MemberState, Tags};
// std directly (not `crate::sync`): nothing here is a loom model, and the driver
// must compile under `--cfg commitlog_loom` too.
use crate::types::NodeId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Largest datagram the driver reads (bigger ones are truncated by the OS and then
/// fail authentication or decoding).
const RECV_BUFFER_BYTES: usize = 65_536;

/// Socket and thread settings.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Address to bind (port 0 = OS-assigned).
    pub bind_addr: SocketAddr,
    /// Address other members should use; defaults to the bound address, which must
    /// then not be unspecified (0.0.0.0 / ::).
    pub advertise_addr: Option<SocketAddr>,
    /// Read timeout, i.e. the tick granularity when idle.
    pub tick_ms: u64,
    /// Bound of the event channel.
    pub max_pending_events: usize,
}

impl DriverConfig {
    /// Binds `bind_addr`, 10 ms ticks, 1024 pending events.
    pub fn new(bind_addr: SocketAddr) -> DriverConfig {
        DriverConfig {
            bind_addr,
            advertise_addr: None,
            tick_ms: 10,
            max_pending_events: 1024,
        }
    }
}

/// Counters of the state machine plus the driver's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// The state machine's counters (drops by reason included).
    pub gossip: GossipStats,
    /// Events dropped because the channel was full.
    pub events_dropped: u64,
    /// `send_to` failures.
    pub send_errors: u64,
    /// `recv_from` failures other than timeouts.
    pub recv_errors: u64,
}

/// 96 fresh OS-random bits per nonce (see `crypto` for the uniqueness argument).
struct SystemNonces {
    rng: SystemRandom,
}

impl NonceSource for SystemNonces {
    fn next_nonce(&mut self) -> Option<[u8; NONCE_BYTES]> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.rng.fill(&mut nonce).ok()?;
        Some(nonce)
    }
}

#[derive(Default)]
struct Counters {
    events_dropped: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

struct Shared {
    gossip: Mutex<Gossip>,
    socket: UdpSocket,
    events: SyncSender<MemberEvent>,
    counters: Counters,
    stop: AtomicBool,
    started: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gossip> {
        // A panic while holding the lock is a bug; keep serving with the state as is.
        crate::sync::lock(&self.gossip)
    }

    /// Drains the machine's outputs (under the lock), then performs them (without it).
    fn flush(&self, mut g: std::sync::MutexGuard<'_, Gossip>) {
        let mut outputs = Vec::new();
        while let Some(o) = g.poll_output() {
            outputs.push(o);
        }
        drop(g);
        for o in outputs {
            match o {
                Output::Send { to, packet } => {
                    if let Err(e) = self.socket.send_to(&packet, to) {
                        self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                        log::debug!("gossip: send to {to} failed: {e}");
                    }
                }
                Output::Event(ev) => match self.events.try_send(ev) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(_)) => {
                        self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
    }
}

/// Owner's handle on a running gossip node. Dropping it stops the node without a
/// leave (other members will detect it as failed); call [`GossipHandle::leave`]
/// first for a graceful exit.
pub struct GossipHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    id: NodeId,
}

impl std::fmt::Debug for GossipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("id", &self.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Binds the socket, starts the thread and, if `seeds` is not empty, joins through
/// them. Returns the handle and the event receiver.
pub fn start(
    config: GossipConfig,
    id: NodeId,
    tags: Tags,
    driver: DriverConfig,
    seeds: &[SocketAddr],
) -> io::Result<(GossipHandle, Receiver<MemberEvent>)> {
    let socket = UdpSocket::bind(driver.bind_addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(driver.tick_ms.max(1))))?;
    let local_addr = socket.local_addr()?;
    let advertise = driver.advertise_addr.unwrap_or(local_addr);
    if advertise.ip().is_unspecified() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "gossip: bound to an unspecified address; set advertise_addr",
        ));
    }
    let rng = SystemRandom::new();
    let mut seed_bytes = [0u8; 8];
    rng.fill(&mut seed_bytes)
        .map_err(|_| io::Error::other("gossip: no OS randomness"))?;
    let local = Member {
        id,
        addr: advertise,
        incarnation: 0,
        state: MemberState::Alive,
        tags,
    };
    let mut gossip = Gossip::new(config, local, u64::from_le_bytes(seed_bytes))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    gossip.set_nonce_source(Box::new(SystemNonces { rng }));
    let (tx, rx) = mpsc::sync_channel(driver.max_pending_events.max(1));
    let shared = Arc::new(Shared {
        gossip: Mutex::new(gossip),
        socket,
        events: tx,
        counters: Counters::default(),
        stop: AtomicBool::new(false),
        started: Instant::now(),
    });
    {
        let mut g = shared.lock();
        let now = shared.now_ms();
        g.tick(now);
        if !seeds.is_empty() {
            g.join(seeds);
        }
        shared.flush(g);
    }
    let worker = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name(format!("gossip-{id}"))
        .spawn(move || run(&worker))?;
    Ok((
        GossipHandle {
            shared,
            thread: Some(thread),
            local_addr,
            id,
        },
        rx,
    ))
}

fn run(shared: &Shared) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    while !shared.stop.load(Ordering::Acquire) {
        let received = shared.socket.recv_from(&mut buf);
        let mut g = shared.lock();
        let now = shared.now_ms();
        match received {
            Ok((len, from)) => g.handle_packet(from, &buf[..len], now),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                shared.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("gossip: recv failed: {e}");
            }
        }
        g.tick(now);
        shared.flush(g);
    }
    // Send whatever is still queued (e.g. a leave) before the socket closes.
    shared.flush(shared.lock());
}

impl GossipHandle {
    /// The bound socket address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Snapshot of every known member, this node included.
    pub fn members(&self) -> Vec<Member> {
        self.shared.lock().members()
    }

    /// Counters.
    pub fn stats(&self) -> DriverStats {
        let gossip = self.shared.lock().stats().clone();
        let c = &self.shared.counters;
        DriverStats {
            gossip,
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            recv_errors: c.recv_errors.load(Ordering::Relaxed),
        }
    }

    /// Publishes new tags (sent with the next packets).
    pub fn set_tags(&self, tags: Tags) {
        let mut g = self.shared.lock();
        g.set_tags(tags);
        self.shared.flush(g);
    }

    /// Joins (more) seeds.
    pub fn join(&self, seeds: &[SocketAddr]) {
        let mut g = self.shared.lock();
        g.join(seeds);
        self.shared.flush(g);
    }

    /// Leaves gracefully: the leave is sent to every live member before this returns.
    /// The node keeps gossiping until [`GossipHandle::shutdown`].
    pub fn leave(&self) {
        let mut g = self.shared.lock();
        g.leave();
        self.shared.flush(g);
    }

    /// Stops the thread and closes the socket (without a leave unless
    /// [`GossipHandle::leave`] was called).
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("gossip: driver thread panicked");
            }
        }
    }
}

impl Drop for GossipHandle {
    fn drop(&mut self) {
        self.stop_thread();
    }
}
