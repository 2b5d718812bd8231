//! commitlog: a distributed commit log service.
//!
//! See `ARCHITECTURE.md` for the map of modules and their invariants.
//!
//! No `unsafe` outside `storage/mmap.rs`: the crate denies it, and that module alone
//! allows it, next to the invariant that makes it sound. (`Cargo.toml` denies it for
//! the binaries, tests and benches too.)

#![deny(unsafe_code)]

pub mod auth;
pub mod bytes;
pub mod catalogue;
pub mod client;
pub mod gossip;
pub mod metrics;
pub mod net;
pub mod node;
pub mod notify;
pub mod raft;
pub mod records;
pub mod replica;
pub mod storage;
pub mod sync;
pub mod types;
pub mod wire;
