//! Cluster discovery and failure detection: a hand-rolled SWIM (with Lifeguard's
//! suspicion timers and local health) as a pure state machine plus a thin UDP driver.
//!
//! Code map:
//! - [`config`]: tunables (hashicorp/memberlist LAN defaults) and the formulas derived
//!   from them (suspicion timeout `4 · max(1, log10(n + 1)) · period`, up to 6× that
//!   while unconfirmed; retransmits `4 · ceil(log10(n + 1))`);
//! - [`member`]: member records, bounded tags (`rpc_addr`, …), events;
//! - [`codec`]: the packet format (documented there); the decoder never panics;
//! - [`crypto`]: AES-256-GCM sealing, nonce sources and the nonce-uniqueness argument;
//! - [`broadcast`]: the bounded piggy-back queue; [`suspicion`]: Lifeguard timers;
//! - [`machine`]: the [`Gossip`] state machine (protocol and update rules in its
//!   module doc; `messages`, `timers`, `sending` hold the parts of its `impl`);
//! - [`driver`]: UDP socket + thread + bounded event channel around the machine;
//! - [`sim`]: deterministic simulator (seeded PRNG, virtual clock, lossy network).
//!
//! Architecture invariant: only `driver` touches sockets, threads, clocks or OS
//! randomness. Everything else is deterministic given its inputs and seed.
//!
//! Decisions:
//! - Encryption happens in the core (the codec seals with the configured key), so the
//!   simulator exercises it; the nonce source is injected (seed-derived counter in
//!   tests, 96 OS-random bits per packet from the driver).
//! - Rejoin after restart: a node always starts at incarnation 0; it learns its old
//!   incarnation from the state exchange with a seed (or from gossip) and refutes with
//!   a higher one. No wall-clock incarnations.
//! - The full state exchange (join, push-pull, reconnect) is UDP only, chunked into
//!   packets under `max_packet_bytes`; a joiner does two extra exchanges with random
//!   members after its join so a lost chunk does not leave it with a partial view.
//!
//! Measured in the simulator (`cargo bench --bench gossip_sim`, LAN defaults, 1 s
//! period, 5 seeds): one join converges everywhere in 0.2-0.6 periods (5-100 nodes); a
//! crash is known to every node after 5.9 s (5 nodes), 7.0 s (20), 9.9 s (100);
//! steady-state traffic is 80-400 bytes/s per node. Under 10% packet loss (5 seeds ×
//! one virtual hour each), 0.83-0.84% of probes got no ack (each raised a suspicion
//! that the member refuted) and there were **0 false failure declarations** in
//! 352,051 probes (20 nodes) and 1,758,553 probes (100 nodes): a measured
//! false-positive rate of 0 in 2.1 million probes (95% upper bound about 1.4e-6 per
//! probe). CI runs the
//! same scenario smaller (`sim/tests.rs`); `make gossip-sim` runs the long version.

pub mod broadcast;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod driver;
pub mod machine;
pub mod member;
pub mod rng;
pub mod sim;
pub mod suspicion;

pub use config::GossipConfig;
pub use driver::{DriverConfig, DriverStats, GossipHandle};
pub use machine::{Gossip, GossipStats, Output};
pub use member::{Member, MemberEvent, MemberEventKind, MemberState, Tags, TAG_RPC_ADDR};
