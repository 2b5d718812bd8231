//! The SWIM state machine: pure, deterministic, no sockets, threads or clocks.
//!
//! Inputs: [`Gossip::tick`] and [`Gossip::handle_packet`] (both take the caller's
//! millisecond clock), [`Gossip::join`], [`Gossip::leave`], [`Gossip::set_tags`].
//! Outputs are queued and drained with [`Gossip::poll_output`]: packets to send and
//! member events. The owner must drain outputs after every call (the queue is bounded
//! by `max_pending_outputs`; overflow is dropped and counted).
//!
//! ## Protocol period (SWIM + Lifeguard)
//! Every `probe_interval_ms` the node finishes the previous probe and starts the next:
//! the target is the next live member of a shuffled round-robin list (new members are
//! inserted at a random position; the list is reshuffled after each pass). It sends a
//! `Ping`; if no `Ack` arrives within `probe_timeout_ms` it sends `IndirectPing` to
//! `indirect_checks` other alive members, which ping the target and forward its ack.
//! If the period ends without any ack, the target becomes *suspect*: a [`Suspicion`]
//! timer starts at the Lifeguard maximum and shrinks with independent confirmations
//! (other members' suspicions of the same incarnation); when it fires the member is
//! declared dead (`Fail` event). A suspected member that hears of the suspicion (it is
//! gossiped like any update) refutes with a higher incarnation.
//!
//! Lifeguard local health: a ping-req helper whose target stays silent for 80% of the
//! probe timeout sends a `Nack`. A probe that fails *and* misses expected nacks, or a
//! refutation, raises this node's health score (at most `awareness_max_multiplier -
//! 1`); a successful probe lowers it. The probe interval and timeout are multiplied by
//! `score + 1`, so a node that is itself slow or cut off probes (and accuses) less.
//!
//! ## Update rules (per member, `i` = known incarnation)
//! - `Alive(j)` wins if `j > i` (or the member is unknown: `Join`).
//! - `Suspect(j)` wins over `Alive` if `j >= i`; over `Suspect` it only confirms.
//! - `Dead(j)` wins over `Alive`/`Suspect` if `j >= i`; `Leave(j)` likewise, and also
//!   over `Dead`. Suspect/Dead/Leave about unknown members are ignored.
//! - About the local node: any `Suspect/Dead/Leave(j >= own)`, or `Alive(j > own)`, or
//!   `Alive(own)` with other address/tags, is refuted by broadcasting
//!   `Alive(max(j, own) + 1)`. This is also how a restarted node rejoins: it starts at
//!   the incarnation its owner gives it (the UDP driver uses 0), learns its old
//!   incarnation from the state exchange with a seed and refutes above it.
//! - In a full state exchange a remote `Dead` is merged as `Suspect` (as memberlist
//!   does), so merging two healed partition halves gives live members a chance to
//!   refute instead of killing them outright.
//! - A `Suspect` of a newer incarnation than the one already suspected starts a fresh
//!   timer (the member refuted the old suspicion).
//! - A `Suspect/Dead(j)` about a member known `Alive` at `i > j` (or about this node
//!   at `own > j`) is answered directly to its sender with `Alive(i)`: the sender
//!   missed the refutation. Without this, a node that missed a refutation declared a
//!   live member dead when its timer ran out (about 1 per 350,000 probes at 10% loss
//!   in the simulator; 0 in 2.1 million probes with it).
//!
//! ## Dissemination
//! Every accepted update is queued in the [`BroadcastQueue`] and piggy-backed on
//! pings, acks and ping-reqs, and pushed to `gossip_nodes` random members (live, or
//! dead for less than `gossip_to_dead_ms`) every `gossip_interval_ms`. Each update is
//! sent `retransmit_mult · ceil(log10(n + 1))` times. Every packet is at most
//! `max_packet_bytes` (crypto overhead included).
//!
//! ## Join, state exchange, partitions
//! `join(seeds)` sends a `Sync` (full state, chunked into packets under the size
//! limit, flagged reply-wanted) to every seed; the seed merges it and answers with its
//! own full state. While the node has no live peer it resends to the seeds every
//! `join_retry_ms`. Every `push_pull_interval_ms` it exchanges state with one random
//! alive member, and every `reconnect_interval_ms` with one random dead member, which
//! is what merges healed partitions. Dead members are forgotten after
//! `dead_retention_ms`, left members after `left_retention_ms`.
//!
//! ## Encryption
//! With `secret_key` set, the core seals every packet (see `crypto`). Nonces come from
//! an injectable [`NonceSource`]; the default is derived from the seed (tests); the
//! UDP driver installs an OS-random source.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use super::broadcast::BroadcastQueue;
use super::codec::{
    self, encode_message, max_plain_bytes, Message, PacketBuilder, PacketError, SyncEntry,
    MSG_HEADER_BYTES, SYNC_JOIN, SYNC_REPLY_WANTED,
};
use super::config::{ConfigError, GossipConfig};
use super::crypto::{Cipher, CounterNonces, NonceSource};
use super::member::{Member, MemberEvent, MemberEventKind, MemberState, Tags};
use super::rng::Rng;
use super::suspicion::Suspicion;
use crate::types::NodeId;

/// Remembered (address, sync id) pairs already answered, so a chunked request gets one
/// reply.
const RECENT_SYNC_REPLIES: usize = 64;
/// After a join succeeds, this many extra state exchanges with random alive members
/// follow (one per `join_retry_ms`), so a lost reply chunk does not leave the joiner
/// with a partial view until the next periodic push-pull.
const JOIN_FOLLOWUPS: u8 = 2;

/// Something the owner must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes as one UDP datagram.
    Send {
        /// Destination.
        to: SocketAddr,
        /// The whole datagram (sealed if a key is configured).
        packet: Vec<u8>,
    },
    /// A member changed.
    Event(MemberEvent),
}

/// Counters. All monotonically increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Datagrams handed to the owner to send.
    pub packets_sent: u64,
    /// Bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Dropped: failed authentication (wrong key, tampered, sealed/unsealed mismatch).
    pub dropped_auth: u64,
    /// Dropped: another cluster's name.
    pub dropped_cluster: u64,
    /// Dropped: malformed.
    pub dropped_decode: u64,
    /// Dropped: claims to come from this node's own id.
    pub dropped_own_id: u64,
    /// Outputs dropped because the output queue was full.
    pub dropped_outputs: u64,
    /// Unknown members ignored because the member table was full.
    pub dropped_members_full: u64,
    /// Packets not sent because the nonce source or cipher failed.
    pub seal_failures: u64,
    /// Direct probes sent.
    pub probes_sent: u64,
    /// Ping-reqs sent.
    pub indirect_probes_sent: u64,
    /// Probes that ended without any ack (each raised or confirmed a suspicion).
    pub probe_failures: u64,
    /// Times this node refuted a suspicion (or stale state) about itself.
    pub refutes: u64,
    /// Members this node declared dead when their suspicion timed out.
    pub failures_declared: u64,
    /// Full state exchanges started (requests, not chunks).
    pub syncs_started: u64,
    /// Full state exchanges answered.
    pub syncs_answered: u64,
    /// Full state exchange requests not answered (per-period reply cap reached).
    pub syncs_refused: u64,
    /// Nacks sent as a ping-req helper whose target did not answer.
    pub nacks_sent: u64,
    /// Newer `Alive` records sent back to senders of stale suspicions.
    pub corrections_sent: u64,
    /// Gauge, not a counter: Lifeguard local health score (0 = healthy); the probe
    /// interval and timeout are multiplied by `health_score + 1`.
    pub health_score: u64,
}

#[derive(Debug)]
struct Entry {
    member: Member,
    /// When the state last changed (for retention and gossip-to-the-dead).
    state_change_ms: u64,
    suspicion: Option<Suspicion>,
}

#[derive(Debug)]
struct Probe {
    target: NodeId,
    incarnation: u64,
    seq: u32,
    started_ms: u64,
    indirect_sent: bool,
    acked: bool,
    expected_nacks: u64,
    nacks: u64,
}

#[derive(Debug)]
struct Relay {
    seq: u32,
    origin: SocketAddr,
    origin_seq: u32,
    nack_at_ms: u64,
    nacked: bool,
    expires_ms: u64,
}

/// The SWIM membership state machine (see the module doc).
pub struct Gossip {
    config: GossipConfig,
    cipher: Option<Cipher>,
    nonces: Box<dyn NonceSource>,
    me: Member,
    left: bool,
    members: BTreeMap<NodeId, Entry>,
    rng: Rng,
    broadcasts: BroadcastQueue,
    outputs: VecDeque<Output>,
    stats: GossipStats,
    probe_order: Vec<NodeId>,
    probe_index: usize,
    probe: Option<Probe>,
    relays: VecDeque<Relay>,
    next_seq: u32,
    seeds: Vec<SocketAddr>,
    /// Extra state exchanges with random members still due after a join.
    join_followups: u8,
    next_sync_id: u32,
    recent_sync_replies: VecDeque<(SocketAddr, u32)>,
    sync_replies_this_period: u32,
    started: bool,
    now_ms: u64,
    next_probe_ms: u64,
    next_gossip_ms: u64,
    next_push_pull_ms: u64,
    next_join_ms: u64,
    next_reconnect_ms: u64,
    next_suspicion_check_ms: u64,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("me", &self.me)
            .field("left", &self.left)
            .field("members", &self.members.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// A node that knows only itself. `local` is this node (its state is forced to
    /// `Alive`; its incarnation is where it starts). `seed` fixes every random choice.
    pub fn new(config: GossipConfig, local: Member, seed: u64) -> Result<Gossip, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let nonces = Box::new(CounterNonces::new(rng.next_u64() as u32));
        let cipher = config.secret_key.as_ref().map(Cipher::new);
        let mut me = local;
        me.state = MemberState::Alive;
        Ok(Gossip {
            config,
            cipher,
            nonces,
            me,
            left: false,
            members: BTreeMap::new(),
            rng,
            broadcasts: BroadcastQueue::new(),
            outputs: VecDeque::new(),
            stats: GossipStats::default(),
            probe_order: Vec::new(),
            probe_index: 0,
            probe: None,
            relays: VecDeque::new(),
            next_seq: 0,
            seeds: Vec::new(),
            join_followups: 0,
            next_sync_id: 0,
            recent_sync_replies: VecDeque::new(),
            sync_replies_this_period: 0,
            started: false,
            now_ms: 0,
            next_probe_ms: 0,
            next_gossip_ms: 0,
            next_push_pull_ms: 0,
            next_join_ms: 0,
            next_reconnect_ms: 0,
            next_suspicion_check_ms: u64::MAX,
        })
    }

    /// Replaces the nonce source used to seal packets (the driver installs an
    /// OS-random one; see `crypto`).
    pub fn set_nonce_source(&mut self, nonces: Box<dyn NonceSource>) {
        self.nonces = nonces;
    }

    /// This node as it currently advertises itself.
    pub fn local(&self) -> &Member {
        &self.me
    }

    /// The configuration.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// True after [`Gossip::leave`].
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Every known member including this node, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        let mut all: Vec<Member> = self.members.values().map(|e| e.member.clone()).collect();
        let mut me = self.me.clone();
        if self.left {
            me.state = MemberState::Left;
        }
        let at = all.partition_point(|m| m.id < me.id);
        all.insert(at, me);
        all
    }

    /// One member (not this node) by id.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id).map(|e| &e.member)
    }

    /// Live (alive or suspect) members, this node included.
    pub fn live_count(&self) -> usize {
        1 + self
            .members
            .values()
            .filter(|e| e.member.state.is_live())
            .count()
    }

    /// The next queued output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Joins through `seeds` (addresses of any members; this node's own address is
    /// skipped): sends each a full state exchange now, and again every
    /// `join_retry_ms` while this node knows no live peer. Timers use the time of
    /// the latest `tick`/`handle_packet`.
    pub fn join(&mut self, seeds: &[SocketAddr]) {
        self.seeds = seeds
            .iter()
            .copied()
            .filter(|a| *a != self.me.addr)
            .take(64)
            .collect();
        let targets = self.seeds.clone();
        for seed in targets {
            self.send_sync(seed, SYNC_REPLY_WANTED | SYNC_JOIN);
        }
        self.next_join_ms = self.now_ms.saturating_add(self.config.join_retry_ms);
        self.join_followups = JOIN_FOLLOWUPS;
    }

    /// Leaves gracefully: broadcasts a `Leave` at the current incarnation (sent right
    /// away to every live member and then gossiped), stops probing
    /// and never refutes again. Keep ticking for a few gossip intervals before
    /// shutting down so the news spreads.
    pub fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        self.probe = None;
        let msg = encode_message(&Message::Leave {
            id: self.me.id,
            incarnation: self.me.incarnation,
        });
        // Tell every live member directly (one small packet each, bounded by
        // `max_members`), then keep gossiping it like any update.
        let live = self.ids_where(|e| e.member.state.is_live());
        for id in live {
            let addr = self.addr_of(id);
            self.send(addr, std::slice::from_ref(&msg), false);
        }
        self.broadcasts.push(self.me.id, msg);
    }

    /// Publishes new tags: bumps the incarnation and broadcasts `Alive`.
    pub fn set_tags(&mut self, tags: Tags) {
        if self.left {
            return;
        }
        self.me.tags = tags;
        self.me.incarnation = self.me.incarnation.saturating_add(1);
        self.broadcast_self_alive();
    }

    /// Advances timers to `now_ms`: probes, ping-req, suspicion timeouts, gossip
    /// fan-out, state exchanges, join retries, forgetting. Call at least every
    /// few tens of milliseconds (the driver uses 10 ms).
    pub fn tick(&mut self, now_ms: u64) {
        self.observe(now_ms);
        let now = self.now_ms;

        if now >= self.next_probe_ms {
            self.finish_probe();
            self.sync_replies_this_period = 0;
            self.next_probe_ms = now.saturating_add(self.scaled(self.config.probe_interval_ms));
            self.forget_old_members();
            if !self.left {
                self.start_probe();
            }
        }
        self.maybe_send_indirect();
        self.expire_relays();

        if now >= self.next_suspicion_check_ms {
            self.expire_suspicions();
        }
        if now >= self.next_gossip_ms {
            self.next_gossip_ms = now.saturating_add(self.config.gossip_interval_ms);
            self.gossip_round();
        }
        if self.left {
            return;
        }
        if now >= self.next_push_pull_ms {
            self.next_push_pull_ms = now.saturating_add(self.config.push_pull_interval_ms);
            let alive = self.ids_where(|e| e.member.state == MemberState::Alive);
            if let Some(&id) = self.rng.sample(&alive, 1).first() {
                let addr = self.addr_of(id);
                self.send_sync(addr, SYNC_REPLY_WANTED);
            }
        }
        if now >= self.next_join_ms && !self.seeds.is_empty() {
            self.next_join_ms = now.saturating_add(self.config.join_retry_ms);
            if self.live_count() == 1 {
                let seeds = self.seeds.clone();
                for seed in seeds {
                    self.send_sync(seed, SYNC_REPLY_WANTED | SYNC_JOIN);
                }
            } else if self.join_followups > 0 {
                self.join_followups -= 1;
                let alive = self.ids_where(|e| e.member.state == MemberState::Alive);
                if let Some(&id) = self.rng.sample(&alive, 1).first() {
                    let addr = self.addr_of(id);
                    self.send_sync(addr, SYNC_REPLY_WANTED);
                }
            }
        }
        if now >= self.next_reconnect_ms {
            self.next_reconnect_ms = now.saturating_add(self.config.reconnect_interval_ms);
            let dead = self.ids_where(|e| e.member.state == MemberState::Dead);
            if let Some(&id) = self.rng.sample(&dead, 1).first() {
                let addr = self.addr_of(id);
                self.send_sync(addr, SYNC_REPLY_WANTED);
            }
        }
    }

    /// Handles one received datagram from `from`. Packets that fail authentication,
    /// carry another cluster name or do not decode are dropped and counted.
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now_ms: u64) {
        self.observe(now_ms);
        self.stats.packets_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        let plain = match codec::open_packet(bytes, self.cipher.as_ref()) {
            Ok(p) => p,
            Err(PacketError::Auth) => {
                self.stats.dropped_auth += 1;
                log::debug!("gossip: dropped unauthenticated packet from {from}");
                return;
            }
            Err(PacketError::Decode(e)) => {
                self.stats.dropped_decode += 1;
                log::debug!("gossip: dropped packet from {from}: {e}");
                return;
            }
        };
        let packet = match codec::decode_plain(&plain) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped_decode += 1;
                log::debug!("gossip: dropped packet from {from}: {e}");
                return;
            }
        };
        if packet.cluster != self.config.cluster_name {
            self.stats.dropped_cluster += 1;
            log::debug!("gossip: dropped packet of cluster {:?}", packet.cluster);
            return;
        }
        if packet.sender == self.me.id {
            self.stats.dropped_own_id += 1;
            return;
        }
        for msg in packet.messages {
            self.handle_message(from, packet.sender, msg);
        }
    }
}

mod messages;
mod sending;
mod timers;

#[cfg(test)]
mod tests;
