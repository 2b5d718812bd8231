//! Raft consensus as a pure state machine (DESIGN decision 4), in the style of
//! etcd-io/raft: no sockets, threads, clocks, files or global randomness. Time enters
//! as [`RaftNode::tick`], network input as [`RaftNode::step`], client input as
//! [`RaftNode::propose`] / [`RaftNode::propose_conf_change`] /
//! [`RaftNode::transfer_leadership`]; everything the node wants done comes out of
//! [`RaftNode::ready`] and is acknowledged with [`RaftNode::advance`]. Election-timeout
//! jitter comes from a [`SplitMix64`] seeded by the caller.
//!
//! # Code map
//! * `types` — [`Index`], [`Entry`] (its bytes a shared [`Payload`]: the unstable
//!   log, a Ready and each AppendEntries hold the same bytes), [`Membership`],
//!   [`HardState`], [`LogStart`], [`Message`].
//! * `config` — [`Config`] and its validation.
//! * `storage` — the read-only [`Storage`] trait the durable log implements (the
//!   segmented `crate::storage::Log` in production, [`MemStorage`] in tests).
//! * `log` — durable log + unstable tail; `progress` — per-follower flow control.
//! * `node` — [`RaftNode`], the public API, Ready/advance bookkeeping.
//! * `election`, `replication`, `membership` — the protocol, one concern per file.
//! * `quiesce` — idle groups stop heartbeats and election timers
//!   ([`Config::quiesce`], [`RaftNode::is_quiesced`], [`RaftNode::set_dead_nodes`]).
//! * `codec` — the binary message encoding ([`encode_message`], [`decode_message`]).
//! * `sim` (tests only) — the deterministic simulator, scenario tests, bug switches.
//!
//! # State machine
//! Roles: Follower → (election timeout) → PreCandidate → (pre-vote quorum) →
//! Candidate → (vote quorum) → Leader; any message with a higher term makes a node a
//! follower in that term (pre-vote requests and granted pre-vote responses excepted:
//! they carry a future term and change nothing). Features:
//! * randomized election timeout in [`election_tick`, 2·`election_tick`);
//! * pre-vote (thesis §9.6): granting a pre-vote changes neither term, vote nor the
//!   election timer;
//! * check-quorum: a leader that did not hear from a quorum during an election timeout
//!   steps down; a follower that heard from a leader within the election timeout
//!   ignores vote requests (unless the candidate was told to campaign by TimeoutNow);
//! * a no-op entry on election; only current-term entries commit by counting
//!   replicas (§5.4.2);
//! * pipelined AppendEntries with a bounded in-flight window per follower, probe /
//!   replicate / snapshot states, fast back-tracking with conflict (index, term)
//!   hints, batches bounded by `max_size_per_msg`; heartbeats carry
//!   min(follower match, commit);
//! * single-server membership changes, learners, promotion, leader self-removal
//!   (see `membership`); leadership transfer with TimeoutNow;
//! * log-prefix snapshots: a log may start at N > 1 ([`LogStart`]); followers behind
//!   the leader's log start get InstallSnapshot and restart their log there;
//! * quiescence ([`Config::quiesce`], off by default; see `quiesce`): an idle
//!   group's leader sends a last `Heartbeat { quiesce: true }` and then nothing, its
//!   followers stop their election timers; any message, proposal, membership change
//!   or transfer wakes it, and the runner's dead-node report
//!   ([`RaftNode::set_dead_nodes`]) makes followers of a dead leader campaign.
//!   Safety is unchanged: it only suppresses heartbeats and timers.
//!
//! # The Ready / advance contract (durability before acknowledgement, DESIGN 3)
//! Loop: feed inputs; `while node.has_ready() { let rd = node.ready(); … }`. For each
//! [`Ready`], in order:
//! 1. `rd.snapshot`: discard the whole log, persist the log start record.
//! 2. `rd.entries`: discard stored entries with index ≥ `entries[0].index`, append.
//! 3. `rd.hard_state`: persist (after the entries).
//! 4. `rd.messages`: send now. The node has already held back every message that
//!    depends on unpersisted state (a vote, a term change, an AppendEntries
//!    acknowledgement of entries not yet durable) and releases it in a later Ready
//!    after the acknowledgement. Only the leader's own replication traffic
//!    (AppendEntries, heartbeats, InstallSnapshot, TimeoutNow) is sent before its
//!    append is durable, as etcd-io/raft allows; the leader's own match index — and so
//!    commitment — advances only on acknowledgement.
//! 5. After fsync: `node.advance(ReadyAck { seq: rd.seq })`. Acks are cumulative and
//!    may be batched (group commit): acking seq N acknowledges every Ready ≤ N.
//! 6. `rd.committed` (inclusive range) is committed and durable on this node: it is
//!    the consumers' high-water mark (DESIGN decision 2). After a restart the first
//!    Ready reports the range from the log start again.
//!
//! ```
//! use commitlog::raft::*;
//! let disk = MemStorage::new(LogStart {
//!     membership: Membership::with_voters([1]),
//!     ..LogStart::default()
//! });
//! let mut node = RaftNode::new(Config::new(NodeId(1)), disk, 42)?;
//! let mut served_through = Index(0);
//! for _ in 0..100 {
//!     node.tick()?;
//!     while node.has_ready() {
//!         let rd = node.ready();
//!         // 1-3: persist (the segmented log appends and fsyncs here).
//!         let disk = node.storage_mut();
//!         if let Some(start) = rd.snapshot.clone() {
//!             disk.install(start);
//!         }
//!         disk.append(&rd.entries)?;
//!         if let Some(hs) = rd.hard_state {
//!             disk.set_hard_state(hs);
//!         }
//!         // 4: send rd.messages to peers (none in a one-node cluster).
//!         // 5: acknowledge durability.
//!         node.advance(ReadyAck { seq: rd.seq })?;
//!         // 6: advance the consumers' high-water mark.
//!         if let Some((_, hi)) = rd.committed {
//!             served_through = hi;
//!         }
//!     }
//!     if node.role() == Role::Leader && served_through == Index(1) {
//!         node.propose(vec![b"hello".to_vec()])?; // index 1 is the leader's no-op
//!     }
//! }
//! assert_eq!(served_through, Index(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Compaction is caller-initiated: [`RaftNode::compact`]`(through)` returns the
//! [`LogStart`] to persist; then the caller drops entries ≤ `through` from its log.
//!
//! # Simulator and replaying a seed
//! `cargo test --lib raft::sim` runs thousands of seeded runs (count from
//! `RAFT_SIM_SEEDS`, default 4000) of 3- and 5-node clusters under message loss,
//! duplication, reordering, delays of several election timeouts, symmetric and
//! one-way partitions, crashes (losing unacknowledged writes, also aimed between a
//! send and its fsync and in the middle of an append), process pauses, wiped data
//! dirs, membership changes and leadership transfers, checking Raft's safety
//! properties, the Ready contract and acknowledged proposals after every step and
//! liveness after healing. A failure prints the seed, the last
//! events, and the command that replays it:
//! `RAFT_SIM_SEED=<seed> cargo test --lib raft::sim::tests::replay_seed -- --nocapture`
//! (add `RAFT_SIM_TRACE=1` to print the trace tail of a passing seed too).
//! The long soak: `make sim SEEDS=100000`, i.e.
//! `RAFT_SIM_SEEDS=100000 cargo test --release --lib raft::sim::tests::many_seeds`
//! (`RAFT_SIM_SEED_BASE` shifts the seed range).

#![warn(missing_docs)]

mod codec;
mod config;
mod election;
mod log;
mod membership;
mod node;
mod progress;
mod quiesce;
mod replication;
mod storage;
mod types;

#[cfg(test)]
mod sim;

pub use codec::{decode_message, decode_message_owned, encode_message, CodecError};
pub use config::{Config, ConfigError};
pub use membership::TransferError;
pub use node::{
    CompactError, FollowerStatus, ProposeError, Proposed, RaftError, RaftNode, Ready, ReadyAck,
    SoftState, SplitMix64, Status,
};
pub use progress::ProgressState;
pub use storage::{MemStorage, Storage, StorageError};
pub use types::{
    ConfChange, Entry, HardState, Index, LogStart, Membership, Message, MessageBody, NodeId,
    Payload, RecordKind, Role, Term, MAX_MEMBERS,
};
