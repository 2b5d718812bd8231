//! One log = one Raft group: the pure replica driver.
//!
//! [`Driver`] is everything between "a produce arrived" and "this produce is
//! acknowledged at offsets X..Y", as a state machine with no threads, sockets, clocks
//! or fsyncs of its own (etcd-io/raft's `rawnode` keeps its storage bookkeeping pure
//! the same way). It owns the [`RaftNode`](crate::raft::RaftNode) and decides:
//! proposal batching (group commit across round trips), the overlapped fsync
//! bookkeeping of the Ready/advance contract, pending produces and their answers,
//! the "no vote until caught up" guard, learner promotion and removal policy,
//! retention, and the high-water mark readers see.
//!
//! # Inputs and effects
//! Inputs are method calls: [`Driver::propose`], [`Driver::step`], [`Driver::tick`],
//! [`Driver::synced`], [`Driver::peer_connected`], [`Driver::transfer_leadership`],
//! [`Driver::compact_to`], [`Driver::finish`], [`Driver::set_members`],
//! [`Driver::set_node_liveness`]. Time is an input (`now_ms`, any
//! monotonic millisecond clock). Each call queues [`Effect`]s that the caller drains
//! with [`Driver::take_effects`] and executes in order:
//! - `Send(m)`: hand the message to the transport (any time; Raft already holds back
//!   every message that depends on state not yet durable).
//! - `Sync { seq }`: make everything appended so far durable (fsync), then call
//!   [`Driver::synced`]`(seq)`. Several may be outstanding; the runner may run them
//!   inline or on another thread, and may coalesce them (acks are cumulative).
//! - `Complete { reply, result }`: answer a produce.
//! - `HighWater(hw)`: readers may now see offsets below `hw` (commit index + 1).
//! - `FirstIndex(i)`: offsets below `i` are gone (retention or a leader's log start).
//! - `Role(s)`: role, term or leader changed.
//!
//! # Quiescence (many groups per node)
//! With [`crate::raft::Config::quiesce`] on, an idle group quiesces (the policy is
//! Raft's: `raft::quiesce` says when and what wakes it). The driver adds what only
//! it knows: [`Driver::is_quiesced`] is false while a produce waits for an answer
//! or its deadline (those need ticks), and [`Driver::set_members`] wakes a
//! quiesced leader that has a membership change to make. The runner:
//! - skips [`Driver::tick`] for groups whose [`Driver::is_quiesced`] is true (ticking
//!   them anyway is harmless: it does nothing);
//! - calls [`Driver::set_node_liveness`] on every group when its failure detector's
//!   dead set changes (a quiesced follower notices a dead leader only that way);
//! - keeps feeding every message, proposal and reconnection as before: each wakes
//!   the group where needed.
//!
//! A quiesced group persists its lazily written commit index at its next tick.
//!
//! Appending, installing a log start, compacting and writing the hard state go
//! through [`ReplicaStorage`] synchronously: they reach the page cache (the hard
//! state file is written atomically and durably); only the log's fsync is an effect.
//!
//! # Durability rules the driver enforces
//! - A Ready is acknowledged to Raft (`advance`) only after a `Sync` covering it
//!   completed, and, if it changed term or vote or installed a log start, after the
//!   hard state was written. Raft counts the leader's own entries toward commit only
//!   after `advance`, so nothing is acknowledged before it is on disk on a majority.
//! - The high-water mark is `Ready::committed` (committed AND locally durable) + 1;
//!   it never goes back.
//! - A produce is answered OK only if its entries are committed in the term they
//!   were proposed in; otherwise it gets a typed error saying whether it may have
//!   been written.
//! - A node whose log may have lost acknowledged entries (repaired, wiped, or below
//!   its persisted commit) does not vote or campaign until it holds a leader's commit
//!   index durably (nats-server#7567).
//!
//! [`crate::node`]'s raft thread is the runner that executes these effects; the
//! simulator in `replica::sim` drives the same driver over a simulated disk, and
//! `replica::sim::multi` drives many groups per node over one network with
//! quiescence and a simulated failure detector.

pub mod dedup;
pub mod dedup_log;
pub use dedup_log::ProducerFloor;
mod driver;
pub mod heal;
mod policy;
#[cfg(test)]
mod sim;

pub use driver::{
    Driver, DriverConfig, DriverError, Effect, ProduceError, ProduceRequest, Produced,
    ProducerRefusal, Recovering, Values,
};
pub use policy::{MemberView, PROMOTE_MAX_LAG_ENTRIES};

use crate::raft::{Entry, HardState, LogStart, Storage};

/// The log a [`Driver`] writes: Raft's read-side [`Storage`] plus the writes. Writes
/// reach the page cache; durability comes from the runner's `Sync`.
pub trait ReplicaStorage: Storage {
    /// Why a write failed (fail-stop for the driver).
    type Error: std::fmt::Display + std::fmt::Debug;

    /// Discards stored entries with index >= `entries[0].index`, then appends.
    fn append_entries(&mut self, entries: &[Entry]) -> Result<(), Self::Error>;
    /// Discards the whole log and persists `start` as its start (durably).
    fn install_start(&mut self, start: LogStart) -> Result<(), Self::Error>;
    /// Drops entries through `start.index` and persists `start` (durably). Returns
    /// the bytes freed.
    fn compact_start(&mut self, start: LogStart) -> Result<u64, Self::Error>;
    /// Persists the hard state (atomically and durably).
    fn persist_hard_state(&mut self, hs: HardState) -> Result<(), Self::Error>;
    /// The hard state last persisted.
    fn persisted_hard_state(&self) -> HardState;
    /// Durably records that producer ids up to `floor.high` wrote batches that a
    /// move of the log start may remove, with their newest epochs
    /// (`replica::dedup_log`, "A log that lost its beginning"); keeps the highest
    /// `high` ever recorded.
    fn persist_producer_floor(&mut self, floor: &ProducerFloor) -> Result<(), Self::Error>;
    /// What [`persist_producer_floor`](Self::persist_producer_floor) recorded last
    /// (default: none).
    fn producer_floor(&self) -> ProducerFloor;
    /// True if `e` means the disk is full (ENOSPC): not fail-stop, the caller steps
    /// back to its durable state and retries once space frees.
    fn is_no_space(e: &Self::Error) -> bool;
}
