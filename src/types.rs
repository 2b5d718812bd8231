//! Small newtypes shared across modules, so an offset cannot be passed as a term
//! or a count.

use std::fmt;

/// Position of a record in the log. In a cluster a record's offset is its Raft index
/// (DESIGN decision 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64);

/// A Raft term. Single-node logs write term 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// Identity of a node in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// Identity of a Raft group on a cluster. Group 0 is the metadata group (the
/// cluster's voters, holding the catalogue); every topic partition is its own group,
/// numbered by the catalogue from 1 and never reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The metadata group.
    pub const METADATA: GroupId = GroupId(0);
    /// The `default` topic's partition 0: what version 0 of the protocol (one log
    /// per cluster) reads and writes, and what a version-0 peer message is about.
    pub const DEFAULT_PARTITION: GroupId = GroupId(1);
}

/// What a log entry is. Only `Data`, `DataV1` and `DataV1Batch` records are visible to consumers;
/// the others are internal entries that live in the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A record a client produced.
    Data = 0,
    /// The no-op a new Raft leader appends to commit entries of earlier terms.
    NoOp = 1,
    /// A Raft membership configuration entry.
    Config = 2,
    /// A record a client produced, in record format v1: the payload is the
    /// `crate::records` encoding (timestamp, optional key, headers, value;
    /// `wire-spec.md` §13). `Data` (v0) payloads are the bare value.
    DataV1 = 3,
    /// The header of an idempotent producer's batch (`crate::replica::dedup`): the
    /// batch meta and the leader's append time, written just before the batch's
    /// records. Internal: consumers never see it. Written by the first builds of
    /// idempotence; read, no longer written (`DataV1Batch` replaced it).
    ProducerBatch = 4,
    /// A `DataV1` record that opens an idempotent producer's batch: its payload is
    /// the v1 payload followed by the batch header (batch meta and the leader's
    /// append time, `crate::records::PRODUCER_HEADER_BYTES`). One
    /// entry per one-record batch, as Kafka carries producer id, epoch and
    /// sequence in its record batch header.
    DataV1Batch = 5,
    /// What compaction leaves of a `DataV1Batch` record it removed: the batch
    /// header alone, so the producer's dedup state survives a restart.
    /// Internal: consumers skip it as they skip no-ops.
    CompactedBatchStart = 6,
}

impl RecordKind {
    /// Decodes the on-disk / on-wire byte; unknown values are an error for the caller.
    pub fn from_u8(byte: u8) -> Option<RecordKind> {
        match byte {
            0 => Some(RecordKind::Data),
            1 => Some(RecordKind::NoOp),
            2 => Some(RecordKind::Config),
            3 => Some(RecordKind::DataV1),
            4 => Some(RecordKind::ProducerBatch),
            5 => Some(RecordKind::DataV1Batch),
            6 => Some(RecordKind::CompactedBatchStart),
            _ => None,
        }
    }

    /// True for entries that consumers never see.
    pub fn is_internal(self) -> bool {
        !matches!(
            self,
            RecordKind::Data | RecordKind::DataV1 | RecordKind::DataV1Batch
        )
    }

    /// True for a record compaction left in place of another (same offset and
    /// term): an empty no-op, or a batch start's header.
    pub fn is_placeholder(self, value_len: usize) -> bool {
        match self {
            RecordKind::NoOp => value_len == 0,
            RecordKind::CompactedBatchStart => true,
            _ => false,
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kind_round_trips_and_rejects_unknown() {
        for kind in [
            RecordKind::Data,
            RecordKind::NoOp,
            RecordKind::Config,
            RecordKind::DataV1,
            RecordKind::ProducerBatch,
            RecordKind::DataV1Batch,
            RecordKind::CompactedBatchStart,
        ] {
            assert_eq!(RecordKind::from_u8(kind as u8), Some(kind));
        }
        assert_eq!(RecordKind::from_u8(7), None);
        assert!(!RecordKind::DataV1Batch.is_internal());
        assert!(RecordKind::CompactedBatchStart.is_internal());
        assert!(RecordKind::NoOp.is_placeholder(0) && !RecordKind::NoOp.is_placeholder(1));
        assert!(RecordKind::CompactedBatchStart.is_placeholder(27));
        assert!(!RecordKind::DataV1Batch.is_placeholder(27));
        assert!(!RecordKind::DataV1.is_internal());
        assert!(RecordKind::ProducerBatch.is_internal());
        assert!(!RecordKind::Data.is_internal());
        assert!(RecordKind::NoOp.is_internal());
    }
}
