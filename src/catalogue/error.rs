//! Why a catalogue operation was refused.

use std::fmt;

use super::name::TopicName;

/// Why a catalogue operation (parse, validate, assign, apply, decode) was refused.
/// Each variant maps onto one wire error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogueError {
    /// A topic name that is not `[a-zA-Z0-9._-]{1,249}` (or is `.` / `..`).
    InvalidTopic {
        /// The name as given (at most its first 64 bytes, lossily decoded).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A topic of that name exists already.
    TopicExists(TopicName),
    /// No topic of that name exists.
    UnknownTopic(TopicName),
    /// A setting out of its bounds.
    InvalidSettings(String),
    /// A replica assignment whose shape does not fit the topic (a proposer bug, or a
    /// command built by hand).
    InvalidAssignment(String),
    /// An alter asked for fewer partitions than the topic has: partitions are never
    /// removed (their offsets would be lost).
    PartitionsDecrease {
        /// Partitions the topic has.
        current: u32,
        /// Partitions asked for.
        requested: u32,
    },
    /// The replication factor exceeds the number of voters.
    ReplicationTooHigh {
        /// The factor asked for.
        factor: u8,
        /// The voters there are.
        voters: usize,
    },
    /// A catalogue-wide limit ([`MAX_TOPICS`](super::MAX_TOPICS),
    /// [`MAX_PARTITIONS`](super::MAX_PARTITIONS), group ids) would be exceeded.
    Limit(String),
    /// The `default` topic cannot be deleted (the v0 protocol and `nc` use it).
    DefaultTopicProtected,
    /// Bytes that do not decode as a command or a snapshot.
    Malformed(String),
    /// A consumer group name that breaks the topic names' rules.
    InvalidGroup {
        /// The name as given (at most its first 64 bytes, lossily decoded).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cursor's metadata above
    /// [`MAX_CURSOR_METADATA_BYTES`](super::MAX_CURSOR_METADATA_BYTES).
    CursorMetadataTooLarge {
        /// Its size.
        bytes: usize,
    },
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogueError::InvalidTopic { name, reason } => {
                write!(f, "invalid topic name {name:?}: {reason}")
            }
            CatalogueError::TopicExists(name) => write!(f, "topic {name} already exists"),
            CatalogueError::UnknownTopic(name) => write!(f, "no topic named {name}"),
            CatalogueError::InvalidSettings(why) => write!(f, "invalid topic settings: {why}"),
            CatalogueError::InvalidAssignment(why) => {
                write!(f, "invalid replica assignment: {why}")
            }
            CatalogueError::PartitionsDecrease { current, requested } => write!(
                f,
                "a topic's partitions can only grow: it has {current}, {requested} were asked"
            ),
            CatalogueError::ReplicationTooHigh { factor, voters } => write!(
                f,
                "replication factor {factor} exceeds the {voters} voters of the cluster: \
                 add nodes or lower the factor"
            ),
            CatalogueError::Limit(why) => write!(f, "catalogue limit reached: {why}"),
            CatalogueError::DefaultTopicProtected => {
                write!(f, "the default topic cannot be deleted")
            }
            CatalogueError::Malformed(why) => write!(f, "malformed catalogue data: {why}"),
            CatalogueError::InvalidGroup { name, reason } => {
                write!(f, "invalid consumer group name {name:?}: {reason}")
            }
            CatalogueError::CursorMetadataTooLarge { bytes } => write!(
                f,
                "cursor metadata of {bytes} bytes exceeds {} bytes",
                super::MAX_CURSOR_METADATA_BYTES
            ),
        }
    }
}

impl std::error::Error for CatalogueError {}

impl From<crate::bytes::ReadError> for CatalogueError {
    fn from(e: crate::bytes::ReadError) -> CatalogueError {
        CatalogueError::Malformed(e.to_string())
    }
}

impl From<crate::bytes::TrailingBytes> for CatalogueError {
    fn from(e: crate::bytes::TrailingBytes) -> CatalogueError {
        CatalogueError::Malformed(e.to_string())
    }
}
