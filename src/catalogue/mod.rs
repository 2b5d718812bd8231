//! The topic catalogue: the state machine of the metadata Raft group.
//!
//! # What group 0 holds
//! Raft group 0 ([`GroupId::METADATA`](crate::types::GroupId::METADATA)) is made of the
//! cluster's voters. The data entries of its log are encoded [`Command`]s (create,
//! delete, alter a topic). Every node applies the committed commands in log order to
//! its own [`Catalogue`], then starts or stops the partition Raft groups the catalogue
//! assigns to it ([`Catalogue::groups_on`]). Each topic partition is its own Raft
//! group, numbered by the catalogue.
//!
//! # Determinism
//! [`Catalogue::apply`] is a pure function of the state and the command: no clock, no
//! randomness, no I/O, no knowledge of who the voters are. Nodes that apply the same
//! committed log therefore hold equal catalogues. A command that is refused (a topic
//! that already exists, a limit reached) is refused identically on every node, leaves
//! the topics unchanged, and still counts as applied: the log entry is committed, it
//! just had no effect.
//!
//! # Group ids are never reused
//! Groups are numbered from 1 by a counter that only grows. A topic deleted and
//! created again gets new groups, so a late message addressed to a group of the old
//! topic can never reach (or corrupt) a group of the new one.
//!
//! # Why the proposer computes the assignment
//! Where a new partition's replicas live depends on the current voters, which the
//! catalogue does not know and which could differ between the moment a command is
//! proposed and the moment a lagging node applies it. So the metadata leader (which
//! knows the voters) computes the replica lists with [`assign`] and puts them in the
//! command; `apply` only checks their shape. A partition with
//! [`Replication::All`] has an empty replica list: it is hosted by every member of the
//! metadata group and its membership follows that group's, like the single log of
//! earlier versions (the `default` topic).
//!
//! # Formats
//! [`Command`] and the catalogue snapshot ([`Catalogue::encode_snapshot`]) are
//! versioned, big-endian binary formats whose decoders are total: they return
//! [`CatalogueError::Malformed`] on any bad input, never panic, and never size an
//! allocation from a length they have not checked against the bytes left.

mod assign;
mod codec;
mod command;
mod error;
mod groups;
mod name;
mod producers;
mod settings;
mod snapshot;
mod state;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod groups_tests;
#[cfg(test)]
mod tests;

pub use assign::assign;
pub use command::Command;
pub use error::CatalogueError;
pub use groups::{
    Cursor, CursorCommit, CursorResults, Cursors, GroupCursors, GroupName, MAX_COMMIT_ENTRIES,
    MAX_CURSORS, MAX_CURSORS_PER_GROUP, MAX_CURSOR_METADATA_BYTES, MAX_CURSOR_METADATA_TOTAL_BYTES,
    MAX_GROUPS, MAX_GROUP_NAME_BYTES,
};
pub use name::{TopicName, DEFAULT_TOPIC, MAX_TOPIC_NAME_BYTES};
pub use producers::{
    check_producer_name, ProducerGrant, Producers, MAX_NAMED_PRODUCERS, MAX_PRODUCER_NAME_BYTES,
};
pub use settings::{CleanupPolicy, TimestampType, DEFAULT_TOMBSTONE_RETENTION_MS};
pub use settings::{
    Replication, SettingsChange, TopicSettings, MAX_MAX_RECORD_BYTES, MAX_PARTITIONS_PER_TOPIC,
    MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, RECORD_OVERHEAD_BYTES,
};
pub use state::{Applied, Catalogue, Change, PartitionGroup, PartitionInfo, Topic};

/// Most topics a catalogue holds.
pub const MAX_TOPICS: usize = 10_000;

/// Most partitions (partition groups) over all topics of a catalogue.
pub const MAX_PARTITIONS: usize = 100_000;
