//! Message types: API keys, requests, response bodies, records and server entries.
//!
//! These are plain data; [`super::frame`] turns them into bytes and back. Body layouts
//! (all integers big-endian, `bytes` = `u32 len | bytes`, `string` = `u16 len | UTF-8`):
//!
//! | key | API | request body | response body |
//! |---|---|---|---|
//! | 0 | Ping | empty | empty |
//! | 1 | Produce | `bytes value` | `u64 offset` |
//! | 2 | ProduceBatch | `u32 count, count × bytes` | `u64 first_offset, u32 count` |
//! | 3 | Consume | `u64 offset` | `Record` |
//! | 4 | Fetch | `u64 offset, u32 max_bytes, u32 max_wait_ms` | `u64 high_watermark, u32 count, count × Record` |
//! | 5 | GetServers | empty | `u32 count, count × Server` |
//! | 6 | Status | empty | `string node_name, u8 role, u64 term, u64 commit_index, u64 last_index, u64 first_index` |
//! | 32 | RaftMessage | opaque (rest of frame) | opaque (rest of frame) |
//! | 33 | PeerHandshake | `string cluster_name, u64 node_id, string node_name` | empty |
//! | 34 | ReadEntries | `u64 from, u64 end, u64 anchor, u32 max_bytes` | `u64 anchor_term, u64 commit_index, u32 count, count × Record` |
//!
//! `Record` = `u64 offset, u64 term, u8 kind, bytes value`;
//! `Server` = `u64 id, string name, string rpc_addr, u8 role, u8 live`.

use std::fmt;

use crate::types::{NodeId, Offset, RecordKind, Term};

/// Identifies an API in a request header. Keys 32..=47 are reserved for peer (Raft)
/// traffic; keys not listed here are answered with `UNSUPPORTED_API`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ApiKey {
    /// Liveness check.
    Ping = 0,
    /// Append one record.
    Produce = 1,
    /// Append several records at contiguous offsets.
    ProduceBatch = 2,
    /// Read one record.
    Consume = 3,
    /// Read many records, long-polling at the tail.
    Fetch = 4,
    /// List the cluster's servers.
    GetServers = 5,
    /// This node's Raft status.
    Status = 6,
    /// A Raft message between peers (opaque to the wire codec).
    RaftMessage = 32,
    /// First frame on a peer connection.
    PeerHandshake = 33,
    /// A peer's raw log records (every kind), to heal a damaged copy.
    ReadEntries = 34,
}

impl ApiKey {
    /// Every key this codec speaks.
    pub const ALL: [ApiKey; 10] = [
        ApiKey::Ping,
        ApiKey::Produce,
        ApiKey::ProduceBatch,
        ApiKey::Consume,
        ApiKey::Fetch,
        ApiKey::GetServers,
        ApiKey::Status,
        ApiKey::RaftMessage,
        ApiKey::PeerHandshake,
        ApiKey::ReadEntries,
    ];

    /// Decodes a wire value; `None` for unknown (including reserved) keys.
    pub fn from_u16(key: u16) -> Option<ApiKey> {
        ApiKey::ALL.iter().copied().find(|k| k.as_u16() == key)
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Highest `api_version` this codec speaks for the key (all 0 today).
    pub fn max_version(self) -> u16 {
        0
    }

    /// The name used in the spec and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ApiKey::Ping => "Ping",
            ApiKey::Produce => "Produce",
            ApiKey::ProduceBatch => "ProduceBatch",
            ApiKey::Consume => "Consume",
            ApiKey::Fetch => "Fetch",
            ApiKey::GetServers => "GetServers",
            ApiKey::Status => "Status",
            ApiKey::RaftMessage => "RaftMessage",
            ApiKey::PeerHandshake => "PeerHandshake",
            ApiKey::ReadEntries => "ReadEntries",
        }
    }

    /// True for keys only peers may send (32..=47).
    pub fn is_peer_api(self) -> bool {
        (32..=47).contains(&self.as_u16())
    }

    /// `"0-6, 32-34"`, for error messages.
    pub(crate) fn supported_list() -> &'static str {
        "0-6, 32-34"
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Liveness check.
    Ping,
    /// Append one record.
    Produce {
        /// Record value.
        value: Vec<u8>,
    },
    /// Append records at contiguous offsets, all or none.
    ProduceBatch {
        /// Record values in order.
        values: Vec<Vec<u8>>,
    },
    /// The first data record at an offset ≥ `offset`.
    Consume {
        /// Offset asked for.
        offset: Offset,
    },
    /// Data records from `offset`, up to about `max_bytes`, waiting up to
    /// `max_wait_ms` when none are available yet.
    Fetch {
        /// First offset wanted.
        offset: Offset,
        /// Soft cap on record bytes returned (at least one record is returned if any).
        max_bytes: u32,
        /// Long-poll bound when `offset` is at the high-water mark.
        max_wait_ms: u32,
    },
    /// List the cluster's servers.
    GetServers,
    /// This node's Raft status.
    Status,
    /// A Raft message; the bytes are the raft module's own encoding.
    Raft {
        /// Opaque body.
        payload: Vec<u8>,
    },
    /// Identifies a peer connection.
    PeerHandshake {
        /// Must match the receiver's cluster name.
        cluster_name: String,
        /// The sender's node id.
        node_id: NodeId,
        /// The sender's node name.
        node_name: String,
    },
    /// The receiver's log records `from..end` (every kind, committed or not), as
    /// many as fit `max_bytes` (at least one), and its term at `anchor`.
    ReadEntries {
        /// First offset wanted.
        from: Offset,
        /// One past the last offset wanted.
        end: Offset,
        /// Offset whose term the answer reports.
        anchor: Offset,
        /// Soft cap on record bytes returned.
        max_bytes: u32,
    },
}

impl Request {
    /// The API key this request is sent under.
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::Ping => ApiKey::Ping,
            Request::Produce { .. } => ApiKey::Produce,
            Request::ProduceBatch { .. } => ApiKey::ProduceBatch,
            Request::Consume { .. } => ApiKey::Consume,
            Request::Fetch { .. } => ApiKey::Fetch,
            Request::GetServers => ApiKey::GetServers,
            Request::Status => ApiKey::Status,
            Request::Raft { .. } => ApiKey::RaftMessage,
            Request::PeerHandshake { .. } => ApiKey::PeerHandshake,
            Request::ReadEntries { .. } => ApiKey::ReadEntries,
        }
    }
}

/// A request with its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    /// Version of the request's API (0 for every API today).
    pub api_version: u16,
    /// Echoed in the response; the client picks it.
    pub correlation_id: u32,
    /// The request (its API key is [`Request::api_key`]).
    pub request: Request,
}

impl RequestFrame {
    /// A version-0 request.
    pub fn new(correlation_id: u32, request: Request) -> RequestFrame {
        RequestFrame {
            api_version: 0,
            correlation_id,
            request,
        }
    }
}

/// A record on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRecord {
    /// Its position in the log (its Raft index).
    pub offset: Offset,
    /// The Raft term it was written in.
    pub term: Term,
    /// Data for everything consumers see.
    pub kind: RecordKind,
    /// The value as produced.
    pub value: Vec<u8>,
}

/// Read access to a record, so the Fetch encoder can write records it does not own
/// (e.g. slices of a memory-mapped segment) without copying them into `WireRecord`s.
pub trait RecordView {
    /// The record's offset.
    fn offset(&self) -> Offset;
    /// The record's term.
    fn term(&self) -> Term;
    /// The record's kind.
    fn kind(&self) -> RecordKind;
    /// The record's value.
    fn value(&self) -> &[u8];
}

impl RecordView for WireRecord {
    fn offset(&self) -> Offset {
        self.offset
    }
    fn term(&self) -> Term {
        self.term
    }
    fn kind(&self) -> RecordKind {
        self.kind
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
}

impl<T: RecordView + ?Sized> RecordView for &T {
    fn offset(&self) -> Offset {
        (**self).offset()
    }
    fn term(&self) -> Term {
        (**self).term()
    }
    fn kind(&self) -> RecordKind {
        (**self).kind()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
}

/// A server's Raft role as reported by `GetServers` and `Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ServerRole {
    /// A voting follower.
    Follower = 0,
    /// The leader.
    Leader = 1,
    /// A non-voting member catching up.
    Learner = 2,
    /// Not known (e.g. seen through gossip only, or a candidate).
    Unknown = 3,
}

impl ServerRole {
    /// Decodes a wire value; `None` for values above 3.
    pub fn from_u8(byte: u8) -> Option<ServerRole> {
        match byte {
            0 => Some(ServerRole::Follower),
            1 => Some(ServerRole::Leader),
            2 => Some(ServerRole::Learner),
            3 => Some(ServerRole::Unknown),
            _ => None,
        }
    }

    /// Lower-case name (`leader`), as the text protocol prints it.
    pub fn name(self) -> &'static str {
        match self {
            ServerRole::Follower => "follower",
            ServerRole::Leader => "leader",
            ServerRole::Learner => "learner",
            ServerRole::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of `GetServers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Client/peer address, `host:port`.
    pub rpc_addr: String,
    /// Raft role.
    pub role: ServerRole,
    /// Whether gossip currently considers it alive.
    pub live: bool,
}

/// Body of the `Status` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusInfo {
    /// The answering node's name.
    pub node_name: String,
    /// Its Raft role.
    pub role: ServerRole,
    /// Its current term.
    pub term: Term,
    /// Highest index it knows committed.
    pub commit_index: Offset,
    /// Last index in its log.
    pub last_index: Offset,
    /// First index in its log.
    pub first_index: Offset,
}

/// A successful response body; which variant is decoded is decided by the API the
/// client asked (responses do not carry their API key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// Ping answer.
    Ping,
    /// Offset of the produced record.
    Produce {
        /// Assigned offset.
        offset: Offset,
    },
    /// The batch occupies `first_offset .. first_offset + count`.
    ProduceBatch {
        /// Offset of the first value.
        first_offset: Offset,
        /// Number of values written.
        count: u32,
    },
    /// The record found.
    Consume {
        /// The record.
        record: WireRecord,
    },
    /// Records with increasing offsets ≥ the one asked, possibly skipping internal
    /// entries.
    Fetch {
        /// Next offset a consumer can read up to, exclusive.
        high_watermark: Offset,
        /// The records.
        records: Vec<WireRecord>,
    },
    /// The cluster's servers.
    GetServers {
        /// One entry per server.
        servers: Vec<ServerInfo>,
    },
    /// The node's status.
    Status(StatusInfo),
    /// A Raft reply; opaque.
    Raft {
        /// Opaque body.
        payload: Vec<u8>,
    },
    /// The handshake was accepted.
    PeerHandshake,
    /// Raw log records.
    ReadEntries {
        /// The sender's term at the anchor; 0 if it does not hold that record intact.
        anchor_term: Term,
        /// The sender's commit index: its records up to here are committed.
        commit_index: Offset,
        /// Contiguous records from `from`, stopping before `end`, a damaged record
        /// or the byte cap.
        records: Vec<WireRecord>,
    },
}

impl ResponseBody {
    /// The API this body answers.
    pub fn api_key(&self) -> ApiKey {
        match self {
            ResponseBody::Ping => ApiKey::Ping,
            ResponseBody::Produce { .. } => ApiKey::Produce,
            ResponseBody::ProduceBatch { .. } => ApiKey::ProduceBatch,
            ResponseBody::Consume { .. } => ApiKey::Consume,
            ResponseBody::Fetch { .. } => ApiKey::Fetch,
            ResponseBody::GetServers { .. } => ApiKey::GetServers,
            ResponseBody::Status(_) => ApiKey::Status,
            ResponseBody::Raft { .. } => ApiKey::RaftMessage,
            ResponseBody::PeerHandshake => ApiKey::PeerHandshake,
            ResponseBody::ReadEntries { .. } => ApiKey::ReadEntries,
        }
    }
}

/// A response with its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    /// Copied from the request.
    pub correlation_id: u32,
    /// The body, or the error (error code ≠ 0 on the wire).
    pub result: Result<ResponseBody, super::errors::ErrorBody>,
}
