//! Member records as the owner sees them: identity, address, incarnation, state and
//! metadata tags, plus the events the state machine emits when they change.
//!
//! Tags are bounded when they are built ([`Tags::insert`] checks every limit), so an
//! encoded member entry always fits in one gossip packet.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::types::NodeId;

/// Maximum bytes of one tag key or value (each is length-prefixed with a `u8`).
pub const MAX_TAG_FIELD_BYTES: usize = 255;
/// Maximum encoded size of a whole tag set (count byte + every length-prefixed key and
/// value). Keeps a member entry well under one 1400-byte packet.
pub const MAX_TAGS_BYTES: usize = 512;
/// The tag every node publishes: the `host:port` of its client/peer RPC listener.
pub const TAG_RPC_ADDR: &str = "rpc_addr";

/// Why a tag set was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagsError {
    /// A key or value is longer than [`MAX_TAG_FIELD_BYTES`].
    FieldTooLong,
    /// The encoded tag set would exceed [`MAX_TAGS_BYTES`].
    TooLarge {
        /// Encoded size the insert would have produced.
        encoded_bytes: usize,
    },
}

impl fmt::Display for TagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagsError::FieldTooLong => write!(f, "tag key or value longer than 255 bytes"),
            TagsError::TooLarge { encoded_bytes } => write!(
                f,
                "tags would encode to {encoded_bytes} bytes, limit {MAX_TAGS_BYTES}"
            ),
        }
    }
}

impl std::error::Error for TagsError {}

/// Member metadata: a small sorted string map (e.g. `rpc_addr`, later `role`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tags {
    map: BTreeMap<String, String>,
}

impl Tags {
    /// An empty tag set.
    pub fn new() -> Tags {
        Tags::default()
    }

    /// Sets `key` to `value`, refusing anything that would break the size limits.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), TagsError> {
        if key.len() > MAX_TAG_FIELD_BYTES || value.len() > MAX_TAG_FIELD_BYTES {
            return Err(TagsError::FieldTooLong);
        }
        let old_entry = self.map.get(key).map_or(0, |v| 2 + key.len() + v.len());
        let encoded_bytes = self.encoded_len() - old_entry + 2 + key.len() + value.len();
        if encoded_bytes > MAX_TAGS_BYTES {
            return Err(TagsError::TooLarge { encoded_bytes });
        }
        self.map.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// Builder form of [`Tags::insert`].
    pub fn with(mut self, key: &str, value: &str) -> Result<Tags, TagsError> {
        self.insert(key, value)?;
        Ok(self)
    }

    /// Removes `key`; returns its value if it was set.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no tag is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Size of the wire encoding: one count byte, then `u8` length + bytes for every
    /// key and value.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .map
            .iter()
            .map(|(k, v)| 2 + k.len() + v.len())
            .sum::<usize>()
    }
}

/// Liveness of a member, from this node's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answering probes (or not yet suspected).
    Alive = 0,
    /// Failed a probe; will be declared dead unless it refutes in time.
    Suspect = 1,
    /// Declared failed. Kept for a while (reconnect attempts), then forgotten.
    Dead = 2,
    /// Announced a graceful leave.
    Left = 3,
}

impl MemberState {
    /// Wire byte to state.
    pub fn from_u8(byte: u8) -> Option<MemberState> {
        match byte {
            0 => Some(MemberState::Alive),
            1 => Some(MemberState::Suspect),
            2 => Some(MemberState::Dead),
            3 => Some(MemberState::Left),
            _ => None,
        }
    }

    /// Alive or suspect: still part of the cluster and still probed.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// A snapshot of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Stable identity of the node.
    pub id: NodeId,
    /// Where its gossip socket listens.
    pub addr: SocketAddr,
    /// Incarnation number: only the member itself increases it (to refute a suspicion,
    /// to publish new tags, to rejoin). Higher incarnations win.
    pub incarnation: u64,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Metadata such as `rpc_addr`.
    pub tags: Tags,
}

/// What happened to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberEventKind {
    /// First seen alive, or alive again after being dead or left.
    Join,
    /// Address or tags changed while alive.
    Update,
    /// Announced a graceful leave.
    Leave,
    /// Declared dead by failure detection.
    Fail,
}

/// An event for the owner, carrying the member as it is after the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEvent {
    /// The kind of change.
    pub kind: MemberEventKind,
    /// The member after the change.
    pub member: Member,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_enforce_limits_and_track_encoded_len() {
        let mut t = Tags::new();
        assert_eq!(t.encoded_len(), 1);
        t.insert(TAG_RPC_ADDR, "127.0.0.1:8400").unwrap();
        assert_eq!(t.encoded_len(), 1 + 2 + 8 + 14);
        assert_eq!(t.get(TAG_RPC_ADDR), Some("127.0.0.1:8400"));
        let long = "x".repeat(256);
        assert_eq!(t.insert(&long, "v"), Err(TagsError::FieldTooLong));
        assert_eq!(t.insert("k", &long), Err(TagsError::FieldTooLong));
        let v = "v".repeat(200);
        t.insert("a", &v).unwrap();
        t.insert("b", &v).unwrap();
        assert!(matches!(t.insert("c", &v), Err(TagsError::TooLarge { .. })));
        // Replacing a value accounts for the old one.
        t.insert("a", &v).unwrap();
        assert!(t.encoded_len() <= MAX_TAGS_BYTES);
        assert_eq!(t.remove("a").as_deref(), Some(v.as_str()));
    }

    #[test]
    fn member_state_round_trips() {
        for s in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ] {
            assert_eq!(MemberState::from_u8(s as u8), Some(s));
        }
        assert_eq!(MemberState::from_u8(4), None);
        assert!(MemberState::Suspect.is_live());
        assert!(!MemberState::Left.is_live());
    }
}
