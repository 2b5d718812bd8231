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

    // -----------------------------------------------------------------------
    // Messages

    fn handle_message(&mut self, from: SocketAddr, sender: NodeId, msg: Message) {
        match msg {
            Message::Ping { seq, target } => {
                if target == self.me.id {
                    self.send(from, &[encode_message(&Message::Ack { seq })], true);
                }
            }
            Message::IndirectPing {
                seq,
                target,
                target_addr,
            } => {
                let relay_seq = self.take_seq();
                // Lifeguard: nack at 80% of the probe timeout if the target is silent.
                self.relays.push_back(Relay {
                    seq: relay_seq,
                    origin: from,
                    origin_seq: seq,
                    nack_at_ms: self
                        .now_ms
                        .saturating_add(self.config.probe_timeout_ms / 5 * 4),
                    nacked: false,
                    expires_ms: self.now_ms.saturating_add(self.config.probe_interval_ms),
                });
                while self.relays.len() > self.config.max_pending_relays {
                    self.relays.pop_front();
                }
                let ping = encode_message(&Message::Ping {
                    seq: relay_seq,
                    target,
                });
                self.send(target_addr, &[ping], true);
            }
            Message::Ack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.acked = true;
                } else if let Some(i) = self.relays.iter().position(|r| r.seq == seq) {
                    if let Some(r) = self.relays.remove(i) {
                        let ack = encode_message(&Message::Ack { seq: r.origin_seq });
                        self.send(r.origin, &[ack], true);
                    }
                }
            }
            Message::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Message::Alive {
                id,
                incarnation,
                addr,
                tags,
            } => self.apply_alive(id, incarnation, addr, tags),
            Message::Suspect {
                id,
                incarnation,
                from: suspector,
            } => {
                self.correct_stale(from, id, incarnation);
                self.apply_suspect(id, incarnation, suspector);
            }
            Message::Dead {
                id,
                incarnation,
                from: declarer,
            } => {
                self.correct_stale(from, id, incarnation);
                self.apply_dead(id, incarnation, declarer);
            }
            Message::Leave { id, incarnation } => self.apply_leave(id, incarnation),
            Message::Sync {
                sync_id,
                flags,
                entries,
            } => {
                for e in entries {
                    self.merge_sync_entry(sender, e);
                }
                if flags & SYNC_REPLY_WANTED != 0
                    && !self.recent_sync_replies.contains(&(from, sync_id))
                {
                    self.recent_sync_replies.push_back((from, sync_id));
                    if self.recent_sync_replies.len() > RECENT_SYNC_REPLIES {
                        self.recent_sync_replies.pop_front();
                    }
                    // A small request buys a full-state reply (many packets): cap the
                    // replies per protocol period so spoofed requests cannot turn this
                    // node into an amplifier. Refused joiners retry.
                    if self.sync_replies_this_period < self.config.max_sync_replies_per_period {
                        self.sync_replies_this_period += 1;
                        self.stats.syncs_answered += 1;
                        self.send_sync(from, 0);
                    } else {
                        self.stats.syncs_refused += 1;
                    }
                }
            }
        }
    }

    /// Anti-entropy for stragglers: a suspicion or death notice about a member this
    /// node knows alive at a *newer* incarnation means the sender missed the
    /// refutation; answer it directly with the newer `Alive` instead of waiting for
    /// the next push-pull (before this, a node that missed a refutation could declare
    /// a live member dead when its suspicion timer ran out).
    fn correct_stale(&mut self, to: SocketAddr, id: NodeId, incarnation: u64) {
        let current = if id == self.me.id {
            (!self.left && incarnation < self.me.incarnation).then(|| Message::Alive {
                id,
                incarnation: self.me.incarnation,
                addr: self.me.addr,
                tags: self.me.tags.clone(),
            })
        } else {
            self.members
                .get(&id)
                .filter(|e| {
                    e.member.state == MemberState::Alive && incarnation < e.member.incarnation
                })
                .map(|e| Message::Alive {
                    id,
                    incarnation: e.member.incarnation,
                    addr: e.member.addr,
                    tags: e.member.tags.clone(),
                })
        };
        if let Some(msg) = current {
            self.stats.corrections_sent += 1;
            self.send(to, &[encode_message(&msg)], false);
        }
    }

    fn merge_sync_entry(&mut self, sender: NodeId, e: SyncEntry) {
        match e.state {
            MemberState::Alive => self.apply_alive(e.id, e.incarnation, e.addr, e.tags),
            MemberState::Suspect => {
                self.apply_alive(e.id, e.incarnation, e.addr, e.tags);
                self.apply_suspect(e.id, e.incarnation, sender);
            }
            // memberlist's rule: a remote "dead" only makes us suspect, so live
            // members on our side of a healed partition can refute.
            MemberState::Dead => self.apply_suspect(e.id, e.incarnation, sender),
            MemberState::Left => self.apply_leave(e.id, e.incarnation),
        }
    }

    fn apply_alive(&mut self, id: NodeId, incarnation: u64, addr: SocketAddr, tags: Tags) {
        if id == self.me.id {
            let conflicting = incarnation == self.me.incarnation
                && (addr != self.me.addr || tags != self.me.tags);
            if incarnation > self.me.incarnation || conflicting {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let kind = match self.members.get_mut(&id) {
            None => {
                if self.members.len() >= self.config.max_members {
                    self.stats.dropped_members_full += 1;
                    return;
                }
                self.members.insert(
                    id,
                    Entry {
                        member: Member {
                            id,
                            addr,
                            incarnation,
                            state: MemberState::Alive,
                            tags,
                        },
                        state_change_ms: now,
                        suspicion: None,
                    },
                );
                self.add_to_probe_order(id);
                Some(MemberEventKind::Join)
            }
            Some(e) => {
                if incarnation <= e.member.incarnation {
                    return;
                }
                let prev = e.member.state;
                let changed = e.member.addr != addr || e.member.tags != tags;
                e.member.incarnation = incarnation;
                e.member.addr = addr;
                e.member.tags = tags;
                e.member.state = MemberState::Alive;
                e.suspicion = None;
                if prev != MemberState::Alive {
                    e.state_change_ms = now;
                }
                match prev {
                    MemberState::Dead | MemberState::Left => {
                        self.add_to_probe_order(id);
                        Some(MemberEventKind::Join)
                    }
                    _ if changed => Some(MemberEventKind::Update),
                    _ => None,
                }
            }
        };
        if let Some(kind) = kind {
            self.emit(kind, id);
        }
        self.broadcast_member_alive(id);
    }

    fn apply_suspect(&mut self, id: NodeId, incarnation: u64, suspector: NodeId) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let live = self.live_count();
        let (min_ms, max_ms) = (
            self.config.suspicion_min_timeout_ms(live),
            self.config.suspicion_max_timeout_ms(live),
        );
        let k = if live.saturating_sub(2) >= self.config.indirect_checks {
            self.config.indirect_checks as u32
        } else {
            0
        };
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation {
            return;
        }
        let deadline = match e.member.state {
            MemberState::Dead | MemberState::Left => return,
            MemberState::Suspect if incarnation == e.member.incarnation => {
                let Some(s) = e.suspicion.as_mut() else {
                    return;
                };
                if !s.confirm(suspector) {
                    return;
                }
                s.deadline_ms()
            }
            // A suspicion of a newer incarnation is a new suspicion: the member
            // refuted the old one (this node just missed the refutation), so the old
            // timer and its confirmations must not carry over.
            MemberState::Suspect | MemberState::Alive => {
                e.member.incarnation = incarnation;
                e.member.state = MemberState::Suspect;
                e.state_change_ms = now;
                let s = Suspicion::new(suspector, now, min_ms, max_ms, k);
                let deadline = s.deadline_ms();
                e.suspicion = Some(s);
                deadline
            }
        };
        self.next_suspicion_check_ms = self.next_suspicion_check_ms.min(deadline);
        let msg = encode_message(&Message::Suspect {
            id,
            incarnation,
            from: suspector,
        });
        self.broadcasts.push(id, msg);
    }

    fn apply_dead(&mut self, id: NodeId, incarnation: u64, declarer: NodeId) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation || !e.member.state.is_live() {
            return;
        }
        e.member.incarnation = incarnation;
        e.member.state = MemberState::Dead;
        e.state_change_ms = now;
        e.suspicion = None;
        self.emit(MemberEventKind::Fail, id);
        let msg = encode_message(&Message::Dead {
            id,
            incarnation,
            from: declarer,
        });
        self.broadcasts.push(id, msg);
    }

    fn apply_leave(&mut self, id: NodeId, incarnation: u64) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation || e.member.state == MemberState::Left {
            return;
        }
        e.member.incarnation = incarnation;
        e.member.state = MemberState::Left;
        e.state_change_ms = now;
        e.suspicion = None;
        self.emit(MemberEventKind::Leave, id);
        let msg = encode_message(&Message::Leave { id, incarnation });
        self.broadcasts.push(id, msg);
    }

    /// Someone holds a view of this node at `incarnation` that must be overridden.
    fn refute(&mut self, incarnation: u64) {
        if self.left {
            return;
        }
        self.me.incarnation = incarnation.max(self.me.incarnation).saturating_add(1);
        self.stats.refutes += 1;
        // Lifeguard: being suspected hints that this node is the slow one.
        self.adjust_health(1);
        log::debug!(
            "gossip: node {} refutes at incarnation {}",
            self.me.id,
            self.me.incarnation
        );
        self.broadcast_self_alive();
    }

    fn broadcast_self_alive(&mut self) {
        let msg = encode_message(&Message::Alive {
            id: self.me.id,
            incarnation: self.me.incarnation,
            addr: self.me.addr,
            tags: self.me.tags.clone(),
        });
        self.broadcasts.push(self.me.id, msg);
    }

    fn broadcast_member_alive(&mut self, id: NodeId) {
        if let Some(e) = self.members.get(&id) {
            let msg = encode_message(&Message::Alive {
                id,
                incarnation: e.member.incarnation,
                addr: e.member.addr,
                tags: e.member.tags.clone(),
            });
            self.broadcasts.push(id, msg);
        }
    }

    fn emit(&mut self, kind: MemberEventKind, id: NodeId) {
        if let Some(e) = self.members.get(&id) {
            let event = MemberEvent {
                kind,
                member: e.member.clone(),
            };
            log::debug!("gossip: node {} sees {:?} of {}", self.me.id, kind, id);
            self.push_output(Output::Event(event));
        }
    }

    // -----------------------------------------------------------------------
    // Timers

    fn observe(&mut self, now_ms: u64) {
        // Tolerate a clock that goes backwards: time never decreases inside.
        self.now_ms = self.now_ms.max(now_ms);
        if !self.started {
            self.started = true;
            let now = self.now_ms;
            // Jitter the first probe and gossip so nodes started together do not
            // act in lockstep.
            self.next_probe_ms = now.saturating_add(self.rng.below(self.config.probe_interval_ms));
            self.next_gossip_ms =
                now.saturating_add(self.rng.below(self.config.gossip_interval_ms));
            self.next_push_pull_ms =
                now.saturating_add(self.rng.below(self.config.push_pull_interval_ms));
            self.next_reconnect_ms = now
                .saturating_add(self.config.reconnect_interval_ms)
                .saturating_add(self.rng.below(self.config.reconnect_interval_ms));
        }
    }

    fn take_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn ids_where(&self, pred: impl Fn(&Entry) -> bool) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(id, _)| *id)
            .collect()
    }

    fn addr_of(&self, id: NodeId) -> SocketAddr {
        self.members
            .get(&id)
            .map_or(self.me.addr, |e| e.member.addr)
    }

    fn add_to_probe_order(&mut self, id: NodeId) {
        // Random position at or after the cursor, so a new member is probed within
        // the current pass.
        let lo = self.probe_index.min(self.probe_order.len());
        let span = (self.probe_order.len() - lo) as u64 + 1;
        let at = lo + self.rng.below(span) as usize;
        self.probe_order.insert(at, id);
    }

    fn next_probe_target(&mut self) -> Option<NodeId> {
        // At most one full pass plus one reshuffle.
        let bound = 2 * (self.probe_order.len() + self.members.len()) + 2;
        for _ in 0..bound {
            if self.probe_index >= self.probe_order.len() {
                let mut order = self.ids_where(|e| e.member.state.is_live());
                if order.is_empty() {
                    self.probe_order.clear();
                    self.probe_index = 0;
                    return None;
                }
                self.rng.shuffle(&mut order);
                self.probe_order = order;
                self.probe_index = 0;
            }
            let id = self.probe_order[self.probe_index];
            self.probe_index += 1;
            if self
                .members
                .get(&id)
                .is_some_and(|e| e.member.state.is_live())
            {
                return Some(id);
            }
        }
        None
    }

    fn start_probe(&mut self) {
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let Some(e) = self.members.get(&target) else {
            return;
        };
        let (addr, incarnation) = (e.member.addr, e.member.incarnation);
        let seq = self.take_seq();
        self.probe = Some(Probe {
            target,
            incarnation,
            seq,
            started_ms: self.now_ms,
            indirect_sent: false,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.stats.probes_sent += 1;
        self.send(
            addr,
            &[encode_message(&Message::Ping { seq, target })],
            true,
        );
    }

    fn maybe_send_indirect(&mut self) {
        let due = match &self.probe {
            Some(p) => {
                !p.acked
                    && !p.indirect_sent
                    && self.now_ms
                        >= p.started_ms
                            .saturating_add(self.scaled(self.config.probe_timeout_ms))
            }
            None => false,
        };
        if !due {
            return;
        }
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (target, seq) = (p.target, p.seq);
        let target_addr = self.addr_of(target);
        let helpers =
            self.ids_where(|e| e.member.state == MemberState::Alive && e.member.id != target);
        let chosen = self.rng.sample(&helpers, self.config.indirect_checks);
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = chosen.len() as u64;
        }
        let msg = encode_message(&Message::IndirectPing {
            seq,
            target,
            target_addr,
        });
        for helper in chosen {
            let addr = self.addr_of(helper);
            self.stats.indirect_probes_sent += 1;
            self.send(addr, std::slice::from_ref(&msg), true);
        }
    }

    fn finish_probe(&mut self) {
        let Some(p) = self.probe.take() else {
            return;
        };
        if p.acked {
            self.adjust_health(-1);
            return;
        }
        // Lifeguard: helpers that did not even nack suggest the problem is here.
        let missed_nacks = p.expected_nacks.saturating_sub(p.nacks);
        let delta = if p.expected_nacks > 0 {
            missed_nacks
        } else {
            1
        };
        self.adjust_health(delta as i64);
        // Only suspect the incarnation we probed; a refutation meanwhile wins.
        let still_same = self
            .members
            .get(&p.target)
            .is_some_and(|e| e.member.state.is_live() && e.member.incarnation == p.incarnation);
        if still_same {
            self.stats.probe_failures += 1;
            let me = self.me.id;
            self.apply_suspect(p.target, p.incarnation, me);
        }
    }

    /// `base_ms` stretched by the local health score (Lifeguard).
    fn scaled(&self, base_ms: u64) -> u64 {
        base_ms.saturating_mul(self.stats.health_score + 1)
    }

    fn adjust_health(&mut self, delta: i64) {
        let max = self.config.awareness_max_multiplier - 1;
        let score = self.stats.health_score as i64 + delta;
        self.stats.health_score = score.clamp(0, max as i64) as u64;
    }

    fn expire_relays(&mut self) {
        let now = self.now_ms;
        let mut nacks = Vec::new();
        for r in self.relays.iter_mut() {
            if !r.nacked && now >= r.nack_at_ms {
                r.nacked = true;
                nacks.push((r.origin, r.origin_seq));
            }
        }
        for (origin, seq) in nacks {
            self.stats.nacks_sent += 1;
            self.send(origin, &[encode_message(&Message::Nack { seq })], true);
        }
        while self
            .relays
            .front()
            .is_some_and(|r| r.expires_ms <= self.now_ms)
        {
            self.relays.pop_front();
        }
    }

    fn expire_suspicions(&mut self) {
        let now = self.now_ms;
        let mut expired = Vec::new();
        let mut next = u64::MAX;
        for (id, e) in &self.members {
            if let Some(s) = &e.suspicion {
                let d = s.deadline_ms();
                if d <= now {
                    expired.push((*id, e.member.incarnation));
                } else {
                    next = next.min(d);
                }
            }
        }
        self.next_suspicion_check_ms = next;
        let me = self.me.id;
        for (id, incarnation) in expired {
            self.stats.failures_declared += 1;
            log::info!("gossip: node {me} declares {id} dead");
            self.apply_dead(id, incarnation, me);
        }
    }

    fn forget_old_members(&mut self) {
        let now = self.now_ms;
        let (dead_ms, left_ms) = (self.config.dead_retention_ms, self.config.left_retention_ms);
        let old = self.ids_where(|e| match e.member.state {
            MemberState::Dead => now >= e.state_change_ms.saturating_add(dead_ms),
            MemberState::Left => now >= e.state_change_ms.saturating_add(left_ms),
            _ => false,
        });
        for id in old {
            self.members.remove(&id);
            self.broadcasts.forget(id);
        }
    }

    fn gossip_round(&mut self) {
        if self.broadcasts.is_empty() {
            return;
        }
        let now = self.now_ms;
        let window = self.config.gossip_to_dead_ms;
        let candidates = self.ids_where(|e| match e.member.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead => now < e.state_change_ms.saturating_add(window),
            MemberState::Left => false,
        });
        for id in self.rng.sample(&candidates, self.config.gossip_nodes) {
            if self.broadcasts.is_empty() {
                break;
            }
            let addr = self.addr_of(id);
            self.send(addr, &[], true);
        }
    }

    // -----------------------------------------------------------------------
    // Sending

    fn plain_budget(&self) -> usize {
        max_plain_bytes(self.config.max_packet_bytes, self.cipher.is_some())
    }

    /// Sends `messages` (encoded) in one packet, topped up with broadcasts if
    /// `piggyback`. Sends nothing if the packet would be empty.
    fn send(&mut self, to: SocketAddr, messages: &[Vec<u8>], piggyback: bool) {
        let mut b = PacketBuilder::new(&self.config.cluster_name, self.me.id, self.plain_budget());
        for m in messages {
            if !b.try_push(m) {
                log::warn!("gossip: message of {} bytes does not fit a packet", m.len());
            }
        }
        if piggyback && !self.broadcasts.is_empty() {
            let limit = self.config.retransmit_limit(self.live_count());
            self.broadcasts.fill(limit, |msg| b.try_push(msg));
        }
        if b.is_empty() {
            return;
        }
        let plain = b.into_plain();
        self.send_plain(to, &plain);
    }

    fn send_plain(&mut self, to: SocketAddr, plain: &[u8]) {
        let sealed = match self.cipher.as_ref() {
            Some(c) => codec::seal_packet(plain, Some((c, self.nonces.as_mut()))),
            None => codec::seal_packet(plain, None),
        };
        let Some(packet) = sealed else {
            self.stats.seal_failures += 1;
            return;
        };
        debug_assert!(packet.len() <= self.config.max_packet_bytes);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        self.push_output(Output::Send { to, packet });
    }

    fn push_output(&mut self, out: Output) {
        if self.outputs.len() >= self.config.max_pending_outputs {
            self.stats.dropped_outputs += 1;
            return;
        }
        self.outputs.push_back(out);
    }

    /// Sends this node's full state to `to`, chunked into packets under the size
    /// limit; every chunk carries the same sync id and flags.
    fn send_sync(&mut self, to: SocketAddr, flags: u8) {
        if flags & SYNC_REPLY_WANTED != 0 {
            self.stats.syncs_started += 1;
        }
        self.next_sync_id = self.next_sync_id.wrapping_add(1);
        let sync_id = self.next_sync_id;
        let mut entries = Vec::with_capacity(self.members.len() + 1);
        entries.push(SyncEntry {
            id: self.me.id,
            incarnation: self.me.incarnation,
            state: if self.left {
                MemberState::Left
            } else {
                MemberState::Alive
            },
            addr: self.me.addr,
            tags: self.me.tags.clone(),
        });
        entries.extend(self.members.values().map(|e| SyncEntry {
            id: e.member.id,
            incarnation: e.member.incarnation,
            state: e.member.state,
            addr: e.member.addr,
            tags: e.member.tags.clone(),
        }));
        let empty = PacketBuilder::new(&self.config.cluster_name, self.me.id, self.plain_budget());
        // Budget for entries: what a packet holds minus the message and sync headers.
        let entry_budget = empty.remaining().saturating_sub(MSG_HEADER_BYTES + 5);
        let mut chunk: Vec<SyncEntry> = Vec::new();
        let mut chunk_bytes = 0;
        for e in entries {
            let len = codec::sync_entry_len(&e);
            if chunk_bytes + len > entry_budget && !chunk.is_empty() {
                self.send_sync_chunk(to, sync_id, flags, std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += len;
            chunk.push(e);
        }
        if !chunk.is_empty() {
            self.send_sync_chunk(to, sync_id, flags, chunk);
        }
    }

    fn send_sync_chunk(
        &mut self,
        to: SocketAddr,
        sync_id: u32,
        flags: u8,
        entries: Vec<SyncEntry>,
    ) {
        let msg = encode_message(&Message::Sync {
            sync_id,
            flags,
            entries,
        });
        self.send(to, &[msg], false);
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
