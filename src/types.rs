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

/// What a log entry is. Only `Data` and `DataV1` records are visible to consumers;
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
    /// records. Internal: consumers never see it.
    ProducerBatch = 4,
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
            _ => None,
        }
    }

    /// True for entries that consumers never see.
    pub fn is_internal(self) -> bool {
        !matches!(self, RecordKind::Data | RecordKind::DataV1)
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
        ] {
            assert_eq!(RecordKind::from_u8(kind as u8), Some(kind));
        }
        assert_eq!(RecordKind::from_u8(5), None);
        assert!(!RecordKind::DataV1.is_internal());
        assert!(RecordKind::ProducerBatch.is_internal());
        assert!(!RecordKind::Data.is_internal());
        assert!(RecordKind::NoOp.is_internal());
    }
}
