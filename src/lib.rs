//! commitlog: a distributed commit log service.
//!
//! See `ARCHITECTURE.md` for the map of modules and their invariants.

pub mod auth;
pub mod bytes;
pub mod client;
pub mod gossip;
pub mod metrics;
pub mod net;
pub mod node;
pub mod notify;
pub mod raft;
pub mod service;
pub mod storage;
pub mod sync;
pub mod types;
pub mod wire;
