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
//!
//! Version 1 (topics and partitions; layouts in [`super::topics`] and wire-spec §11):
//! Produce, ProduceBatch and Consume v1 prefix the body with `string topic, u32
//! partition`; Fetch v1 reads several partitions; RaftMessage and ReadEntries v1
//! prefix `u64 group`; new APIs Metadata (7), CreateTopic (8), DeleteTopic (9),
//! DescribeTopic (10), AlterTopic (11) and the peer API RaftBatch (35).
//!
//! Version 2 (records of format v1; layouts in [`super::records_v2`], wire-spec
//! §14): ProduceBatch, Consume and Fetch, as their own [`Request`] and
//! [`ResponseBody`] variants (`ProduceBatchV2`, `ConsumeV2`, `FetchV2`).
//! InitProducer (12, wire-spec §15): request `u8 flags` (bit 0: `string name`
//! follows), response `u64 producer_id, u16 epoch`.
//!
//! # Versions in `Request`
//!
//! A decoded [`Request`] carries its target whatever the version: a version-0 Produce,
//! ProduceBatch or Consume has `target` = [`TopicPartition::default_topic`], a
//! version-0 RaftMessage or ReadEntries has `group` =
//! [`GroupId::DEFAULT_PARTITION`] (1: the one log of a version-0 node).
//! [`Request::versions`] says which versions can carry a request; the encoder writes
//! the frame's `api_version` clamped into that range, so a request is never sent in a
//! layout that would drop its target (a "v0" frame with topic `orders` goes out as
//! v1). [`RequestFrame::new`] picks the lowest such version, so requests for the
//! default topic keep their version-0 bytes.

use std::fmt;

use crate::types::{GroupId, NodeId, Offset, RecordKind, Term};

use super::groups::{GroupRequest, GroupResponse};
use super::records_v2::{FetchedPartitionV2, WireRecordV1};
use super::topics::{
    FetchPartition, FetchedPartition, GroupMessage, NodeInfo, TopicChanges, TopicDescription,
    TopicMetadata, TopicPartition, TopicSettings, DEFAULT_TOPIC,
};
use crate::replica::dedup::BatchMeta;

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
    /// The cluster's nodes and where each topic partition lives.
    Metadata = 7,
    /// Create a topic.
    CreateTopic = 8,
    /// Delete a topic.
    DeleteTopic = 9,
    /// One topic's settings and partitions.
    DescribeTopic = 10,
    /// Change a topic's settings.
    AlterTopic = 11,
    /// Store a consumer group's cursors (wire-spec §16).
    CommitOffset = 13,
    /// Read a consumer group's cursors.
    FetchOffset = 14,
    /// List the consumer groups.
    ListGroups = 15,
    /// Delete a consumer group.
    DeleteGroup = 16,
    /// Get a producer id and epoch for idempotent produces.
    InitProducer = 12,
    /// Offsets by position or time (earliest, latest, first at or after a time).
    ListOffsets = 17,
    /// A Raft message between peers (opaque to the wire codec).
    RaftMessage = 32,
    /// First frame on a peer connection.
    PeerHandshake = 33,
    /// A peer's raw log records (every kind), to heal a damaged copy.
    ReadEntries = 34,
    /// Several Raft groups' messages to one peer in one frame.
    RaftBatch = 35,
}

impl ApiKey {
    /// Every key this codec speaks.
    pub const ALL: [ApiKey; 22] = [
        ApiKey::Ping,
        ApiKey::Produce,
        ApiKey::ProduceBatch,
        ApiKey::Consume,
        ApiKey::Fetch,
        ApiKey::GetServers,
        ApiKey::Status,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::DescribeTopic,
        ApiKey::AlterTopic,
        ApiKey::InitProducer,
        ApiKey::RaftMessage,
        ApiKey::PeerHandshake,
        ApiKey::ReadEntries,
        ApiKey::RaftBatch,
        ApiKey::CommitOffset,
        ApiKey::FetchOffset,
        ApiKey::ListGroups,
        ApiKey::DeleteGroup,
        ApiKey::ListOffsets,
    ];

    /// Decodes a wire value; `None` for unknown (including reserved) keys.
    pub fn from_u16(key: u16) -> Option<ApiKey> {
        ApiKey::ALL.iter().copied().find(|k| k.as_u16() == key)
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Highest `api_version` this codec speaks for the key: 1 for the APIs that
    /// address a topic partition or a Raft group, 0 for the others.
    pub fn max_version(self) -> u16 {
        match self {
            // Version 2: records of format v1 (wire-spec §14).
            ApiKey::ProduceBatch | ApiKey::Consume | ApiKey::Fetch => 2,
            ApiKey::Produce | ApiKey::RaftMessage | ApiKey::ReadEntries => 1,
            // Version 1: answered only when refused (wire-spec §11).
            ApiKey::RaftBatch => 1,
            // Settings v2 (wire-spec §18).
            ApiKey::CreateTopic | ApiKey::DescribeTopic | ApiKey::AlterTopic => 1,
            _ => 0,
        }
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
            ApiKey::Metadata => "Metadata",
            ApiKey::CreateTopic => "CreateTopic",
            ApiKey::DeleteTopic => "DeleteTopic",
            ApiKey::DescribeTopic => "DescribeTopic",
            ApiKey::AlterTopic => "AlterTopic",
            ApiKey::InitProducer => "InitProducer",
            ApiKey::RaftMessage => "RaftMessage",
            ApiKey::PeerHandshake => "PeerHandshake",
            ApiKey::ReadEntries => "ReadEntries",
            ApiKey::RaftBatch => "RaftBatch",
            ApiKey::CommitOffset => "CommitOffset",
            ApiKey::FetchOffset => "FetchOffset",
            ApiKey::ListGroups => "ListGroups",
            ApiKey::DeleteGroup => "DeleteGroup",
            ApiKey::ListOffsets => "ListOffsets",
        }
    }

    /// True for keys only peers may send (32..=47).
    pub fn is_peer_api(self) -> bool {
        (32..=47).contains(&self.as_u16())
    }

    /// `"0-17, 32-35"`, for error messages.
    pub(crate) fn supported_list() -> &'static str {
        "0-17, 32-35"
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
        /// The partition written (version 0: the default topic, partition 0).
        target: TopicPartition,
        /// Record value.
        value: Vec<u8>,
    },
    /// Append records at contiguous offsets, all or none.
    ProduceBatch {
        /// The partition written (version 0: the default topic, partition 0).
        target: TopicPartition,
        /// Record values in order.
        values: Vec<Vec<u8>>,
    },
    /// The first data record at an offset ≥ `offset`.
    Consume {
        /// The partition read (version 0: the default topic, partition 0).
        target: TopicPartition,
        /// Offset asked for.
        offset: Offset,
    },
    /// Fetch version 0: data records of the default topic's partition 0 from
    /// `offset`, up to about `max_bytes`, waiting up to `max_wait_ms` when none are
    /// available yet.
    Fetch {
        /// First offset wanted.
        offset: Offset,
        /// Soft cap on record bytes returned (at least one record is returned if any).
        max_bytes: u32,
        /// Long-poll bound when `offset` is at the high-water mark.
        max_wait_ms: u32,
    },
    /// Fetch version 1: several partitions in one request (at most
    /// [`super::MAX_FETCH_PARTITIONS`]). The answer is
    /// [`ResponseBody::FetchPartitions`].
    FetchPartitions {
        /// Long-poll bound when no partition has records yet.
        max_wait_ms: u32,
        /// Soft cap on the record bytes of the whole answer.
        max_bytes: u32,
        /// The partitions, each with its offset and its own cap.
        partitions: Vec<FetchPartition>,
    },
    /// List the cluster's servers.
    GetServers,
    /// This node's Raft status.
    Status,
    /// The cluster's nodes and where the named topics' partitions live.
    Metadata {
        /// Topics to describe; empty = every topic.
        topics: Vec<String>,
    },
    /// Create a topic; answered with its [`TopicDescription`].
    CreateTopic {
        /// The new topic's name.
        name: String,
        /// Its settings.
        settings: TopicSettings,
    },
    /// Delete a topic and its records.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// One topic's settings and partitions.
    DescribeTopic {
        /// The topic.
        name: String,
    },
    /// Change a topic's settings; answered with its new [`TopicDescription`].
    AlterTopic {
        /// The topic.
        name: String,
        /// What changes.
        changes: TopicChanges,
    },
    /// A producer id and epoch for idempotent produces (wire-spec §15).
    InitProducer {
        /// A stable name: InitProducer again with it bumps the epoch (fencing the
        /// older instance); none for an anonymous producer.
        name: Option<String>,
    },
    /// A Raft message; the bytes are the raft module's own encoding.
    Raft {
        /// The Raft group (version 0: group 1, the `default` topic's partition 0).
        group: GroupId,
        /// Opaque body.
        payload: Vec<u8>,
    },
    /// Several groups' Raft messages to one peer (at most
    /// [`super::MAX_RAFT_BATCH_MESSAGES`]); answered with an empty body.
    RaftBatch {
        /// The messages, in order.
        messages: Vec<GroupMessage>,
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
        /// The Raft group whose log is read (version 0: group 1).
        group: GroupId,
        /// First offset wanted.
        from: Offset,
        /// One past the last offset wanted.
        end: Offset,
        /// Offset whose term the answer reports.
        anchor: Offset,
        /// Soft cap on record bytes returned.
        max_bytes: u32,
    },
    /// ProduceBatch version 2: records of format v1, all or none (wire-spec §14).
    ProduceBatchV2 {
        /// The partition written.
        target: TopicPartition,
        /// An idempotent producer's batch meta (its record count is the batch's).
        producer: Option<BatchMeta>,
        /// The records' v1 payloads (§13), in order; the server checks each.
        records: Vec<Vec<u8>>,
    },
    /// Consume version 2: the first data record at an offset ≥ `offset`, as a
    /// [`WireRecordV1`].
    ConsumeV2 {
        /// The partition read.
        target: TopicPartition,
        /// Offset asked for.
        offset: Offset,
    },
    /// Fetch version 2: as [`Request::FetchPartitions`], answered with
    /// [`ResponseBody::FetchV2`] (records of format v1).
    FetchV2 {
        /// Long-poll bound when no partition has records yet.
        max_wait_ms: u32,
        /// Soft cap on the record bytes of the whole answer.
        max_bytes: u32,
        /// The partitions, each with its offset and its own cap.
        partitions: Vec<FetchPartition>,
    },
    /// A consumer group API (CommitOffset, FetchOffset, ListGroups, DeleteGroup).
    Group(GroupRequest),
    /// Offsets by position or time, per partition (`wire/list_offsets.rs`).
    ListOffsets {
        /// At most [`super::MAX_LIST_OFFSETS_PARTITIONS`] partitions.
        queries: Vec<super::OffsetQuery>,
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
            Request::Fetch { .. } | Request::FetchPartitions { .. } => ApiKey::Fetch,
            Request::GetServers => ApiKey::GetServers,
            Request::Status => ApiKey::Status,
            Request::Metadata { .. } => ApiKey::Metadata,
            Request::CreateTopic { .. } => ApiKey::CreateTopic,
            Request::DeleteTopic { .. } => ApiKey::DeleteTopic,
            Request::DescribeTopic { .. } => ApiKey::DescribeTopic,
            Request::AlterTopic { .. } => ApiKey::AlterTopic,
            Request::InitProducer { .. } => ApiKey::InitProducer,
            Request::Raft { .. } => ApiKey::RaftMessage,
            Request::RaftBatch { .. } => ApiKey::RaftBatch,
            Request::PeerHandshake { .. } => ApiKey::PeerHandshake,
            Request::ReadEntries { .. } => ApiKey::ReadEntries,
            Request::ProduceBatchV2 { .. } => ApiKey::ProduceBatch,
            Request::ConsumeV2 { .. } => ApiKey::Consume,
            Request::FetchV2 { .. } => ApiKey::Fetch,
            Request::Group(g) => g.api_key(),
            Request::ListOffsets { .. } => ApiKey::ListOffsets,
        }
    }

    /// The `api_version`s whose layout carries this request, `(lowest, highest)`:
    /// a request for the default topic (or group 1) fits version 0 and 1, one for
    /// another topic (or group) only version 1; `Fetch` is version 0 only and
    /// `FetchPartitions` version 1 only; every other request version 0.
    pub fn versions(&self) -> (u16, u16) {
        let by_target = |fits_v0: bool| if fits_v0 { (0, 1) } else { (1, 1) };
        match self {
            Request::Produce { target, .. }
            | Request::ProduceBatch { target, .. }
            | Request::Consume { target, .. } => by_target(target.is_default()),
            Request::Raft { group, .. } | Request::ReadEntries { group, .. } => {
                by_target(*group == GroupId::DEFAULT_PARTITION)
            }
            Request::FetchPartitions { .. } => (1, 1),
            Request::ProduceBatchV2 { .. }
            | Request::ConsumeV2 { .. }
            | Request::FetchV2 { .. } => (2, 2),
            // Settings v2 (§18): version 1 only when a v2 value is carried; a
            // DescribeTopic asks for them with api_version 1.
            Request::CreateTopic { settings, .. } => by_target(!settings.has_v2_fields()),
            Request::AlterTopic { changes, .. } => {
                by_target(changes.flags() & !TopicChanges::ALL_FLAGS == 0)
            }
            Request::DescribeTopic { .. } | Request::RaftBatch { .. } => (0, 1),
            _ => (0, 0),
        }
    }

    /// The topics this request reads, writes or administers, each once, in first-use
    /// order (for per-topic ACL checks): the target of Produce/ProduceBatch/Consume,
    /// [`DEFAULT_TOPIC`] for a version-0 Fetch, every partition's topic of a Fetch v1,
    /// the named topic of the topic APIs, the listed topics of Metadata. Empty for
    /// requests that touch no topic, **and for a Metadata that names none** (it asks
    /// for every topic: filter the answer per topic instead).
    pub fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = Vec::new();
        match self {
            Request::Produce { target, .. }
            | Request::ProduceBatch { target, .. }
            | Request::Consume { target, .. } => add_topic(&mut topics, &target.topic),
            Request::Fetch { .. } => add_topic(&mut topics, DEFAULT_TOPIC),
            Request::FetchPartitions { partitions, .. } | Request::FetchV2 { partitions, .. } => {
                partitions
                    .iter()
                    .for_each(|p| add_topic(&mut topics, &p.target.topic))
            }
            Request::ProduceBatchV2 { target, .. } | Request::ConsumeV2 { target, .. } => {
                add_topic(&mut topics, &target.topic)
            }
            Request::ListOffsets { queries } => queries
                .iter()
                .for_each(|q| add_topic(&mut topics, &q.target.topic)),
            Request::Metadata { topics: names } => {
                names.iter().for_each(|t| add_topic(&mut topics, t))
            }
            Request::CreateTopic { name, .. }
            | Request::DeleteTopic { name }
            | Request::DescribeTopic { name }
            | Request::AlterTopic { name, .. } => add_topic(&mut topics, name),
            Request::Group(g) => g
                .topics()
                .into_iter()
                .for_each(|t| add_topic(&mut topics, t)),
            Request::Ping
            | Request::GetServers
            | Request::Status
            | Request::InitProducer { .. }
            | Request::Raft { .. }
            | Request::RaftBatch { .. }
            | Request::PeerHandshake { .. }
            | Request::ReadEntries { .. } => {}
        }
        topics
    }
}

/// Adds `topic` unless present. Quadratic, and bounded: a decoded request names at
/// most [`super::MAX_FETCH_PARTITIONS`] topics.
fn add_topic<'a>(topics: &mut Vec<&'a str>, topic: &'a str) {
    if !topics.contains(&topic) {
        topics.push(topic);
    }
}

/// A request with its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    /// Version of the request's API (see [`RequestFrame::wire_version`]).
    pub api_version: u16,
    /// Echoed in the response; the client picks it.
    pub correlation_id: u32,
    /// The request (its API key is [`Request::api_key`]).
    pub request: Request,
}

impl RequestFrame {
    /// A request in the lowest version that carries it ([`Request::versions`]):
    /// version 0 for everything version 0 can say (so existing requests keep their
    /// bytes), version 1 for a topic other than the default, a group other than 0, or
    /// a multi-partition Fetch.
    pub fn new(correlation_id: u32, request: Request) -> RequestFrame {
        RequestFrame {
            api_version: request.versions().0,
            correlation_id,
            request,
        }
    }

    /// The version the encoder writes: `api_version` clamped into
    /// [`Request::versions`]. A decoded frame's version is always in range.
    pub fn wire_version(&self) -> u16 {
        let (lowest, highest) = self.request.versions();
        self.api_version.clamp(lowest, highest)
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
    /// Fetch version 1: one entry per partition asked, in the order asked.
    FetchPartitions {
        /// The partitions' records or errors.
        partitions: Vec<FetchedPartition>,
    },
    /// The cluster's servers.
    GetServers {
        /// One entry per server.
        servers: Vec<ServerInfo>,
    },
    /// The cluster's nodes and its topics' partitions.
    Metadata {
        /// Every node the answering node knows.
        nodes: Vec<NodeInfo>,
        /// The topics asked (all when none was named).
        topics: Vec<TopicMetadata>,
    },
    /// The created topic.
    CreateTopic(TopicDescription),
    /// The topic was deleted.
    DeleteTopic,
    /// The topic asked.
    DescribeTopic(TopicDescription),
    /// The topic as altered.
    AlterTopic(TopicDescription),
    /// The batch was queued (fire-and-forget, like RaftMessage).
    RaftBatch,
    /// The producer id and epoch handed out.
    InitProducer {
        /// Never 0, never reused.
        producer_id: u64,
        /// Its epoch (a newer one fences older instances of a named producer).
        epoch: u16,
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
    /// A consumer group API's answer.
    Group(GroupResponse),
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
    /// ProduceBatch version 2: the batch occupies `first_offset .. first_offset +
    /// count`.
    ProduceBatchV2 {
        /// Offset of the first record.
        first_offset: Offset,
        /// Number of records.
        count: u32,
        /// True when this batch was a producer's retry, answered with the offsets
        /// of the original (nothing was appended).
        duplicate: bool,
    },
    /// Consume version 2: the record found.
    ConsumeV2 {
        /// The record.
        record: WireRecordV1,
    },
    /// Fetch version 2: one entry per partition asked, in the order asked.
    FetchV2 {
        /// The partitions' records or errors.
        partitions: Vec<FetchedPartitionV2>,
    },
    /// One entry per partition asked, in the order asked.
    ListOffsets {
        /// The partitions' offsets or errors.
        partitions: Vec<super::ListedOffset>,
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
            ResponseBody::Fetch { .. } | ResponseBody::FetchPartitions { .. } => ApiKey::Fetch,
            ResponseBody::GetServers { .. } => ApiKey::GetServers,
            ResponseBody::Status(_) => ApiKey::Status,
            ResponseBody::Metadata { .. } => ApiKey::Metadata,
            ResponseBody::CreateTopic(_) => ApiKey::CreateTopic,
            ResponseBody::DeleteTopic => ApiKey::DeleteTopic,
            ResponseBody::DescribeTopic(_) => ApiKey::DescribeTopic,
            ResponseBody::AlterTopic(_) => ApiKey::AlterTopic,
            ResponseBody::RaftBatch => ApiKey::RaftBatch,
            ResponseBody::InitProducer { .. } => ApiKey::InitProducer,
            ResponseBody::Raft { .. } => ApiKey::RaftMessage,
            ResponseBody::PeerHandshake => ApiKey::PeerHandshake,
            ResponseBody::ReadEntries { .. } => ApiKey::ReadEntries,
            ResponseBody::ProduceBatchV2 { .. } => ApiKey::ProduceBatch,
            ResponseBody::ConsumeV2 { .. } => ApiKey::Consume,
            ResponseBody::FetchV2 { .. } => ApiKey::Fetch,
            ResponseBody::Group(g) => g.api_key(),
            ResponseBody::ListOffsets { .. } => ApiKey::ListOffsets,
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
