//! Cluster discovery and failure detection: a hand-rolled SWIM (with Lifeguard's
//! suspicion timers) as a pure state machine plus a thin UDP driver.
//!
//! Code map:
//! - [`config`]: tunables (memberlist LAN defaults) and the formulas derived from them;
//! - [`member`]: member records, tags, events;
//! - [`codec`]: the packet format (documented there), never panics on input;
//! - [`crypto`]: AES-256-GCM sealing, nonce sources and the uniqueness argument;
//! - [`broadcast`]: the bounded piggy-back queue; [`suspicion`]: Lifeguard timers;
//! - [`machine`]: the [`Gossip`] state machine (protocol described there);
//! - [`driver`]: UDP socket + thread + channel around the machine;
//! - [`sim`]: deterministic simulator (seeded PRNG, virtual clock, lossy network).
//!
//! Architecture invariant: only `driver` touches sockets, threads, clocks or OS
//! randomness. Everything else is deterministic given its inputs and seed.

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
