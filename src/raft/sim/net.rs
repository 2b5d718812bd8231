//! The simulated network, independent of what it carries: messages between numbered
//! processes with virtual delivery times, drops, duplicates, reordering, rare very
//! long delays (so requests and responses of old terms arrive after several elections),
//! and link rules (symmetric and one-way partitions, inbound isolation, partial
//! meshes). The Raft simulator drives it with Raft messages; a driver above the Raft
//! core can drive it with its own message type.

use std::collections::BTreeSet;

use crate::raft::{NodeId, SplitMix64};

/// A message travelling through the network.
struct InFlight<M> {
    deliver_at: u64,
    from: NodeId,
    to: NodeId,
    msg: M,
}

/// Delay, loss and duplication knobs (percentages and ticks).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NetProfile {
    pub drop_pct: u64,
    pub dup_pct: u64,
    /// Ordinary messages take 0..=`max_delay_ticks`.
    pub max_delay_ticks: u64,
    /// This fraction of messages takes up to `long_delay_max_ticks` instead.
    pub long_delay_pct: u64,
    pub long_delay_max_ticks: u64,
}

/// What happened to a sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Dropped,
    Queued { copies: u8 },
}

/// Bound on messages in flight; beyond it new messages are dropped (a real network
/// buffer is bounded too, and an unbounded one would hide back-pressure bugs).
pub(crate) const MAX_IN_FLIGHT: usize = 50_000;

/// The network: messages in flight and the link rules in force.
pub(crate) struct Network<M> {
    inflight: Vec<InFlight<M>>,
    /// Messages from `.0` to `.1` are dropped on delivery.
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) profile: NetProfile,
}

impl<M: Clone> Network<M> {
    pub(crate) fn new() -> Network<M> {
        Network {
            inflight: Vec::new(),
            blocked: BTreeSet::new(),
            profile: NetProfile::default(),
        }
    }

    /// Hands a message to the network at time `now`.
    pub(crate) fn send(
        &mut self,
        rng: &mut SplitMix64,
        now: u64,
        from: NodeId,
        to: NodeId,
        msg: M,
    ) -> Sent {
        let p = self.profile;
        if (p.drop_pct > 0 && rng.chance(p.drop_pct)) || self.inflight.len() >= MAX_IN_FLIGHT {
            return Sent::Dropped;
        }
        let copies = if p.dup_pct > 0 && rng.chance(p.dup_pct) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if p.long_delay_pct > 0 && rng.chance(p.long_delay_pct) {
                rng.below(p.long_delay_max_ticks + 1)
            } else {
                rng.below(p.max_delay_ticks + 1)
            };
            self.inflight.push(InFlight {
                deliver_at: now + delay,
                from,
                to,
                msg: msg.clone(),
            });
        }
        Sent::Queued { copies }
    }

    /// Takes one message due at `now` whose recipient `accepts` (a paused process
    /// leaves its messages waiting): the oldest when `random` is false, a random one
    /// otherwise (reordering).
    pub(crate) fn take_due(
        &mut self,
        rng: &mut SplitMix64,
        now: u64,
        random: bool,
        accepts: impl Fn(NodeId) -> bool,
    ) -> Option<(NodeId, NodeId, M)> {
        let due: Vec<usize> = self
            .inflight
            .iter()
            .enumerate()
            .filter(|(_, f)| f.deliver_at <= now && accepts(f.to))
            .map(|(i, _)| i)
            .collect();
        let pick = match (due.is_empty(), random) {
            (true, _) => return None,
            (false, true) => due[rng.below(due.len() as u64) as usize],
            (false, false) => due[0],
        };
        let f = self.inflight.remove(pick);
        Some((f.from, f.to, f.msg))
    }

    /// Takes the oldest message regardless of its delivery time (manual mode).
    pub(crate) fn take_first(&mut self) -> Option<(NodeId, NodeId, M)> {
        if self.inflight.is_empty() {
            return None;
        }
        let f = self.inflight.remove(0);
        Some((f.from, f.to, f.msg))
    }

    /// Drops everything in flight.
    pub(crate) fn clear(&mut self) {
        self.inflight.clear();
    }

    /// Takes everything in flight, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<M> {
        self.inflight.drain(..).map(|f| f.msg).collect()
    }

    /// Messages in flight from `from` to `to`.
    pub(crate) fn between(&self, from: NodeId, to: NodeId) -> impl Iterator<Item = &M> {
        self.inflight
            .iter()
            .filter(move |f| f.from == from && f.to == to)
            .map(|f| &f.msg)
    }

    // ------------------------------------------------------------ link rules

    /// True if messages from `from` to `to` are currently lost.
    pub(crate) fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Restores every link.
    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Symmetric partition: `group` | everyone else in `all`.
    pub(crate) fn partition(&mut self, all: &[NodeId], group: &[NodeId]) {
        self.blocked.clear();
        for a in all {
            for b in all {
                if group.contains(a) != group.contains(b) {
                    self.blocked.insert((*a, *b));
                }
            }
        }
    }

    /// Blocks `from` → `to` only (`to` can still reach `from`).
    pub(crate) fn block_one_way(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// `id` receives nothing but can still send.
    pub(crate) fn isolate_inbound(&mut self, all: &[NodeId], id: NodeId) {
        for a in all {
            if *a != id {
                self.blocked.insert((*a, id));
            }
        }
    }

    /// `id` can receive but nothing it sends arrives.
    pub(crate) fn isolate_outbound(&mut self, all: &[NodeId], id: NodeId) {
        for a in all {
            if *a != id {
                self.blocked.insert((id, *a));
            }
        }
    }

    /// The blocked directed links, for traces.
    pub(crate) fn blocked_links(&self) -> Vec<(NodeId, NodeId)> {
        self.blocked.iter().copied().collect()
    }
}

/// The kinds of link failure the random runs draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkFault {
    /// A minority group cut off from the rest, both directions.
    Symmetric,
    /// One node hears nobody but is heard.
    InboundOnly,
    /// One node is heard by nobody but hears everyone.
    OutboundOnly,
    /// A few random directed links fail (A reaches B, B does not reach A).
    OneWayLinks,
    /// A few random pairs cannot talk (a partial mesh: A–B and B–C work, A–C not).
    PartialMesh,
}

impl LinkFault {
    pub(crate) fn pick(rng: &mut SplitMix64) -> LinkFault {
        match rng.below(5) {
            0 => LinkFault::Symmetric,
            1 => LinkFault::InboundOnly,
            2 => LinkFault::OutboundOnly,
            3 => LinkFault::OneWayLinks,
            _ => LinkFault::PartialMesh,
        }
    }

    /// Applies this fault over processes `all` (replacing any earlier one).
    pub(crate) fn apply<M: Clone>(
        self,
        net: &mut Network<M>,
        rng: &mut SplitMix64,
        all: &[NodeId],
    ) {
        net.heal();
        if all.len() < 2 {
            return;
        }
        let one = all[rng.below(all.len() as u64) as usize];
        match self {
            LinkFault::Symmetric => {
                let mut group = all.to_vec();
                shuffle(rng, &mut group);
                group.truncate(1 + rng.below(all.len() as u64 / 2) as usize);
                net.partition(all, &group);
            }
            LinkFault::InboundOnly => net.isolate_inbound(all, one),
            LinkFault::OutboundOnly => net.isolate_outbound(all, one),
            LinkFault::OneWayLinks | LinkFault::PartialMesh => {
                let cuts = 1 + rng.below(all.len() as u64);
                for _ in 0..cuts {
                    let a = all[rng.below(all.len() as u64) as usize];
                    let b = all[rng.below(all.len() as u64) as usize];
                    if a == b {
                        continue;
                    }
                    net.block_one_way(a, b);
                    if self == LinkFault::PartialMesh {
                        net.block_one_way(b, a);
                    }
                }
            }
        }
    }
}

/// Fisher–Yates shuffle driven by the simulation's generator.
pub(crate) fn shuffle<T>(rng: &mut SplitMix64, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
