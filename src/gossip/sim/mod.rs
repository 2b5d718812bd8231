//! Deterministic simulator for the gossip state machine.
//!
//! N [`Gossip`] nodes exchange packets through a simulated network driven by one
//! seeded [`Rng`] and a virtual millisecond clock: packets are dropped with a given
//! probability, duplicated with another, delayed uniformly within a range (so they
//! reorder), dropped across
//! partitions, and dropped when the destination is crashed. Nothing here touches a
//! socket, a thread or the wall clock, so a seed replays exactly.
//!
//! The event loop advances virtual time to the earliest of "next packet delivery" and
//! "next tick" (every node is ticked every `tick_ms`), handles it, and routes every
//! output the node produced. Member events are recorded with time and node.
//!
//! Scenario tests live in `sim/tests.rs`; the measurement program is
//! `benches/gossip_sim.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::config::GossipConfig;
use super::machine::{Gossip, GossipStats, Output};
use super::member::{Member, MemberEvent, MemberEventKind, MemberState, Tags, TAG_RPC_ADDR};
use super::rng::Rng;
use crate::types::NodeId;

#[cfg(test)]
mod tests;

/// Network behaviour.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Probability that any one packet is lost.
    pub loss: f64,
    /// Minimum one-way delay.
    pub min_delay_ms: u64,
    /// Maximum one-way delay (uniform in between).
    pub max_delay_ms: u64,
    /// Probability that a delivered packet is delivered twice (independent delays).
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            loss: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 5,
            duplicate: 0.0,
        }
    }
}

/// A recorded member event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvent {
    /// Virtual time.
    pub at_ms: u64,
    /// Index of the node that emitted it.
    pub node: usize,
    /// The event.
    pub event: MemberEvent,
}

struct Node {
    id: NodeId,
    addr: SocketAddr,
    gossip: Option<Gossip>,
    /// Restarts so far (changes the per-node seed).
    generation: u64,
    /// Stats of earlier generations, so byte counts survive restarts.
    retired_stats: GossipStats,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    deliver_ms: u64,
    order: u64,
    to: usize,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// The simulated cluster.
pub struct Sim {
    seed: u64,
    config: GossipConfig,
    /// Network behaviour; may be changed between steps.
    pub net: NetConfig,
    rng: Rng,
    now_ms: u64,
    tick_ms: u64,
    next_tick_ms: u64,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_order: u64,
    /// Partition group per node; packets between different groups are dropped.
    groups: Vec<u32>,
    /// Extra loss probability on every packet to or from a node (a degraded host).
    node_loss: Vec<f64>,
    events: Vec<SimEvent>,
    packets_delivered: u64,
    packets_lost: u64,
}

/// Virtual gossip address of node `index`.
pub fn sim_addr(index: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        10_000 + index as u16,
    )
}

fn node_seed(seed: u64, index: usize, generation: u64) -> u64 {
    let mut r = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9) ^ (generation << 48));
    r.next_u64()
}

impl Sim {
    /// `n` nodes (ids 1..=n, not yet joined), all with `config`.
    pub fn new(seed: u64, n: usize, config: GossipConfig, net: NetConfig) -> Sim {
        let mut sim = Sim {
            seed,
            config,
            net,
            rng: Rng::new(seed),
            now_ms: 0,
            tick_ms: 10,
            next_tick_ms: 0,
            nodes: Vec::with_capacity(n),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            next_order: 0,
            groups: vec![0; n],
            node_loss: vec![0.0; n],
            events: Vec::new(),
            packets_delivered: 0,
            packets_lost: 0,
        };
        for i in 0..n {
            let addr = sim_addr(i);
            sim.by_addr.insert(addr, i);
            sim.nodes.push(Node {
                id: NodeId(i as u64 + 1),
                addr,
                gossip: None,
                generation: 0,
                retired_stats: GossipStats::default(),
            });
            sim.boot(i, sim.config.clone());
        }
        sim
    }

    fn boot(&mut self, i: usize, config: GossipConfig) {
        let node = &mut self.nodes[i];
        let tags = Tags::new()
            .with(TAG_RPC_ADDR, &format!("127.0.0.1:{}", 20_000 + i))
            .unwrap_or_default();
        let local = Member {
            id: node.id,
            addr: node.addr,
            incarnation: 0,
            state: MemberState::Alive,
            tags,
        };
        let seed = node_seed(self.seed, i, node.generation);
        // The sim only builds configs the tests validated.
        node.gossip = Gossip::new(config, local, seed).ok();
    }

    /// The seed this simulation was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Number of nodes (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id
    }

    /// The state machine of node `i` (None while crashed).
    pub fn node(&self, i: usize) -> Option<&Gossip> {
        self.nodes[i].gossip.as_ref()
    }

    /// Mutable access to node `i`'s state machine; outputs are routed at the next step.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut Gossip> {
        self.nodes[i].gossip.as_mut()
    }

    /// True unless node `i` is crashed.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].gossip.is_some()
    }

    /// Every recorded event.
    pub fn events(&self) -> &[SimEvent] {
        &self.events
    }

    /// Packets delivered and lost so far.
    pub fn packet_counts(&self) -> (u64, u64) {
        (self.packets_delivered, self.packets_lost)
    }

    /// Bytes sent by node `i` over its whole life (restarts included).
    pub fn bytes_sent(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        n.retired_stats.bytes_sent + n.gossip.as_ref().map_or(0, |g| g.stats().bytes_sent)
    }

    /// Node `i` joins through the given seed nodes.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<SocketAddr> = seeds.iter().map(|&s| self.nodes[s].addr).collect();
        if let Some(g) = self.nodes[i].gossip.as_mut() {
            g.join(&addrs);
        }
        self.route(i);
    }

    /// Every node but `seed` joins through `seed`.
    pub fn join_all_via(&mut self, seed: usize) {
        for i in 0..self.nodes.len() {
            if i != seed {
                self.join(i, &[seed]);
            }
        }
    }

    /// Node `i` stops: no ticks, packets to it are lost, its state is gone.
    pub fn crash(&mut self, i: usize) {
        if let Some(g) = self.nodes[i].gossip.take() {
            add_stats(&mut self.nodes[i].retired_stats, g.stats());
        }
    }

    /// Restarts a crashed node from scratch (incarnation 0, same id and address) and
    /// joins it through `seeds`.
    pub fn restart(&mut self, i: usize, seeds: &[usize]) {
        self.crash(i);
        self.nodes[i].generation += 1;
        self.boot(i, self.config.clone());
        if let Some(g) = self.nodes[i].gossip.as_mut() {
            g.tick(self.now_ms);
        }
        self.join(i, seeds);
    }

    /// Replaces node `i` by a fresh one with another configuration (e.g. a wrong key).
    pub fn reboot_with(&mut self, i: usize, config: GossipConfig) {
        self.crash(i);
        self.nodes[i].generation += 1;
        self.boot(i, config);
    }

    /// Splits the network: node `i` is in group `group_of[i]`.
    pub fn partition(&mut self, group_of: &[u32]) {
        self.groups = group_of.to_vec();
        self.groups.resize(self.nodes.len(), 0);
    }

    /// Degrades node `i`: every packet it sends or receives is also lost with
    /// probability `loss`.
    pub fn set_node_loss(&mut self, i: usize, loss: f64) {
        self.node_loss[i] = loss;
    }

    /// Removes any partition.
    pub fn heal(&mut self) {
        self.groups = vec![0; self.nodes.len()];
    }

    /// Advances virtual time by `ms`.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        self.run_to(end);
    }

    /// Runs until `done` holds (checked after every tick) or `max_ms` pass. Returns the
    /// virtual time it took, or None.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Sim) -> bool) -> Option<u64> {
        let start = self.now_ms;
        let end = start + max_ms;
        if done(self) {
            return Some(0);
        }
        while self.now_ms < end {
            // Step one tick at a time (the tick at `step_end` included).
            let step_end = self.next_tick_ms.min(end);
            self.run_to(step_end);
            if done(self) {
                return Some(self.now_ms - start);
            }
        }
        None
    }

    fn run_to(&mut self, end_ms: u64) {
        loop {
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.deliver_ms);
            let next = match next_packet {
                Some(p) if p < self.next_tick_ms => p,
                _ => self.next_tick_ms,
            };
            if next > end_ms {
                self.now_ms = self.now_ms.max(end_ms);
                return;
            }
            self.now_ms = next;
            if next_packet == Some(next) && next < self.next_tick_ms {
                if let Some(Reverse(p)) = self.in_flight.pop() {
                    self.deliver(p);
                }
            } else {
                self.next_tick_ms = next + self.tick_ms;
                for i in 0..self.nodes.len() {
                    if let Some(g) = self.nodes[i].gossip.as_mut() {
                        g.tick(next);
                        self.route(i);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, p: InFlight) {
        let now = self.now_ms;
        let Some(g) = self.nodes[p.to].gossip.as_mut() else {
            self.packets_lost += 1;
            return;
        };
        self.packets_delivered += 1;
        g.handle_packet(p.from, &p.bytes, now);
        self.route(p.to);
    }

    /// Drains node `i`'s outputs into the network and the event log.
    fn route(&mut self, i: usize) {
        let from = self.nodes[i].addr;
        // Bounded by the node's output queue bound.
        loop {
            let Some(out) = self.nodes[i].gossip.as_mut().and_then(Gossip::poll_output) else {
                return;
            };
            match out {
                Output::Event(event) => self.events.push(SimEvent {
                    at_ms: self.now_ms,
                    node: i,
                    event,
                }),
                Output::Send { to, packet } => {
                    let Some(&dst) = self.by_addr.get(&to) else {
                        self.packets_lost += 1;
                        continue;
                    };
                    let degraded = self.node_loss[i].max(self.node_loss[dst]);
                    if self.groups[i] != self.groups[dst]
                        || self.rng.chance(self.net.loss)
                        || (degraded > 0.0 && self.rng.chance(degraded))
                    {
                        self.packets_lost += 1;
                        continue;
                    }
                    let copies = if self.rng.chance(self.net.duplicate) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let spread = self.net.max_delay_ms.saturating_sub(self.net.min_delay_ms);
                        let delay = self.net.min_delay_ms.max(1) + self.rng.below(spread + 1);
                        self.next_order += 1;
                        self.in_flight.push(Reverse(InFlight {
                            deliver_ms: self.now_ms + delay,
                            order: self.next_order,
                            to: dst,
                            from,
                            bytes: packet.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Node `i`'s view of node `j` (None if unknown or `i` is crashed).
    pub fn view(&self, i: usize, j: usize) -> Option<Member> {
        let g = self.nodes[i].gossip.as_ref()?;
        if i == j {
            return Some(g.local().clone());
        }
        g.member(self.nodes[j].id).cloned()
    }

    /// Node `i`'s state for node `j`.
    pub fn state_seen(&self, i: usize, j: usize) -> Option<MemberState> {
        self.view(i, j).map(|m| m.state)
    }

    /// Every up node sees every other up node alive, at that node's own incarnation
    /// and with its own tags.
    pub fn converged(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect();
        up.iter().all(|&i| {
            up.iter().all(|&j| {
                if i == j {
                    return true;
                }
                let (Some(seen), Some(truth)) = (self.view(i, j), self.view(j, j)) else {
                    return false;
                };
                seen.state == MemberState::Alive
                    && seen.incarnation == truth.incarnation
                    && seen.tags == truth.tags
                    && seen.addr == truth.addr
            })
        })
    }

    /// Every up node other than `target` sees `target` in one of `states` (unknown
    /// counts as matching when `forgotten_ok`).
    pub fn all_see(&self, target: usize, states: &[MemberState], forgotten_ok: bool) -> bool {
        (0..self.nodes.len())
            .filter(|&i| i != target && self.is_up(i))
            .all(|i| match self.state_seen(i, target) {
                Some(s) => states.contains(&s),
                None => forgotten_ok,
            })
    }

    /// Number of `Fail` events, on any node, about `target`.
    pub fn fail_events_about(&self, target: NodeId) -> usize {
        self.events
            .iter()
            .filter(|e| e.event.kind == MemberEventKind::Fail && e.event.member.id == target)
            .count()
    }

    /// The one-line command that replays a failing scenario test.
    pub fn replay_hint(&self, test_name: &str) -> String {
        format!(
            "GOSSIP_SIM_SEED={} cargo test --lib gossip::sim::tests::{} -- --nocapture",
            self.seed, test_name
        )
    }
}

fn add_stats(into: &mut GossipStats, s: &GossipStats) {
    into.packets_sent += s.packets_sent;
    into.bytes_sent += s.bytes_sent;
    into.packets_received += s.packets_received;
    into.bytes_received += s.bytes_received;
}
