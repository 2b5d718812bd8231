//! Version 1 of the protocol: topics, partitions and Raft groups (wire-spec §11).
//!
//! The types here are plain data, like [`super::messages`]; this file also holds
//! their codecs, which [`super::frame`] calls for the v1 bodies and the topic APIs.
//! Layouts (all integers big-endian, `string` = `u16 len | UTF-8`):
//!
//! - target prefix of Produce/ProduceBatch/Consume v1: `string topic, u32 partition`;
//! - Fetch v1 request: `u32 max_wait_ms, u32 max_bytes, u32 count,
//!   count × (string topic, u32 partition, u64 offset, u32 partition_max_bytes)`;
//! - Fetch v1 response: `u32 count, count × (string topic, u32 partition,
//!   u16 error_code, [error detail], u64 high_watermark, u32 n, n × Record)`;
//! - Metadata, CreateTopic, DeleteTopic, DescribeTopic, AlterTopic, RaftBatch: see
//!   the functions below and wire-spec §11.
//!
//! Invariants: every count is checked against the bytes left (and, for requests,
//! against a fixed bound) before anything is allocated; a topic name longer than
//! [`MAX_TOPIC_NAME_BYTES`] is `MALFORMED`; unknown flag bits and unknown error codes
//! are `MALFORMED`, so the encoding stays canonical.

use std::fmt;

use crate::bytes::ByteReader;
use crate::types::{GroupId, NodeId, Offset};

use super::buf::{len_u32, put_bytes, put_str, put_u16, put_u32, put_u64, put_u8};
use super::errors::{DecodeError, ErrorBody, ErrorCode};
use super::messages::{Request, ResponseBody, WireRecord};

/// Longest topic name a decoder accepts, in bytes (longer is `MALFORMED`). Which
/// characters a name may use is the node's rule (`INVALID_TOPIC`), not the codec's.
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// The topic every version-0 request addresses (partition 0).
pub const DEFAULT_TOPIC: &str = "default";

/// Most partitions one Fetch v1 request may name (more is `MALFORMED`): bounds the
/// work and the answer of one request.
pub const MAX_FETCH_PARTITIONS: usize = 1000;

/// Most topics one Metadata request may name (more is `MALFORMED`; 0 names all).
pub const MAX_METADATA_TOPICS: usize = 1000;

/// Most messages in one RaftBatch frame (more is `MALFORMED`): one frame carries at
/// most one message per group, and a node hosts far fewer groups than this.
pub const MAX_RAFT_BATCH_MESSAGES: usize = 16_384;

/// Smallest encoded `string topic, u32 partition`.
pub(crate) const MIN_TARGET_BYTES: usize = 2 + 4;
/// Smallest Fetch v1 request entry (empty topic).
pub(crate) const MIN_FETCH_PARTITION_BYTES: usize = MIN_TARGET_BYTES + 8 + 4;
/// Smallest Fetch v1 response entry (empty topic, no error, no records).
pub(crate) const MIN_FETCHED_PARTITION_BYTES: usize = MIN_TARGET_BYTES + 2 + 8 + 4;
/// Smallest Metadata node entry (empty strings).
pub(crate) const MIN_NODE_BYTES: usize = 8 + 2 + 2;
/// Smallest Metadata topic entry (empty name, no partitions).
pub(crate) const MIN_TOPIC_METADATA_BYTES: usize = 2 + 2 + 4;
/// Smallest partition entry (no replicas).
pub(crate) const MIN_PARTITION_INFO_BYTES: usize = 4 + 8 + 8 + 4;
/// Smallest RaftBatch entry (empty payload).
pub(crate) const MIN_GROUP_MESSAGE_BYTES: usize = 8 + 4;

/// A partition of a topic: what Produce, ProduceBatch, Consume and Fetch v1 address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name (at most [`MAX_TOPIC_NAME_BYTES`] bytes on the wire).
    pub topic: String,
    /// The partition, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`, `partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Topic [`DEFAULT_TOPIC`], partition 0: what every version-0 request means.
    pub fn default_topic() -> TopicPartition {
        TopicPartition::new(DEFAULT_TOPIC, 0)
    }

    /// True for [`TopicPartition::default_topic`] (which version 0 can carry).
    pub fn is_default(&self) -> bool {
        self.partition == 0 && self.topic == DEFAULT_TOPIC
    }
}

/// `topic/partition`.
impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One partition of a Fetch v1 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    /// Which partition.
    pub target: TopicPartition,
    /// First offset wanted (0 = the first retained offset, as in v0).
    pub offset: Offset,
    /// Soft cap on this partition's record bytes (at least one record if any).
    pub max_bytes: u32,
}

/// One partition of a Fetch v1 response (`R` = [`WireRecord`]); Fetch v2 answers
/// the same shape with records of format v1 (`super::FetchedPartitionV2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedPartition<R = WireRecord> {
    /// Which partition (as asked).
    pub target: TopicPartition,
    /// Why this partition could not be read (`NOT_LEADER` carries its hint); `None`
    /// on success. Other partitions of the same answer are unaffected.
    pub error: Option<ErrorBody>,
    /// Next offset a consumer can read up to in this partition, exclusive.
    pub high_watermark: Offset,
    /// The records: as in a v0 Fetch answer (v1), or of format v1 (v2).
    pub records: Vec<R>,
}

/// A node as Metadata lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Client/peer address, `host:port`.
    pub rpc_addr: String,
}

/// Where one partition lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition, from 0.
    pub partition: u32,
    /// Its Raft group.
    pub group: GroupId,
    /// Its leader as the answering node knows it; `NodeId(0)` = unknown.
    pub leader: NodeId,
    /// The nodes holding a replica.
    pub replicas: Vec<NodeId>,
}

/// One topic of a Metadata answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name (as asked, when asked by name).
    pub name: String,
    /// [`ErrorCode::None`], or why it cannot be described (`UNKNOWN_TOPIC`,
    /// `PERMISSION_DENIED`); its partitions are then empty.
    pub error: ErrorCode,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
}

/// A topic's settings, as CreateTopic sends them and TopicDescription reports them.
/// Zero means "none" (retention) or "the server's default" (sizes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition: 0 = every voter, else 1, 3 or 5 (the node checks).
    pub replication: u8,
    /// Keep at most this many bytes per partition; 0 = no size limit.
    pub retention_bytes: u64,
    /// Keep records at most this long; 0 = no age limit.
    pub retention_age_ms: u64,
    /// Largest record value; 0 = the server's default.
    pub max_record_bytes: u32,
    /// Segment file size; 0 = the server's default.
    pub segment_bytes: u64,
    /// Settings v2 (version 1 of CreateTopic/DescribeTopic/AlterTopic, §18): whose
    /// clock stamps records, 0 producer ("create time", the default), 1 leader
    /// ("append time"); other values are `MALFORMED`. Version 0 carries 0.
    pub timestamp_type: u8,
    /// Settings v2: 0 delete (retention only, the default), 1 compact.
    pub cleanup_policy: u8,
    /// Settings v2: how long a compacted topic keeps a tombstone; 0 = the server's
    /// default (24 h).
    pub tombstone_retention_ms: u64,
}

impl TopicSettings {
    /// True when a settings-v2 field is not its default (only version 1 carries it).
    pub fn has_v2_fields(&self) -> bool {
        self.timestamp_type != 0 || self.cleanup_policy != 0 || self.tombstone_retention_ms != 0
    }
}

/// A topic as CreateTopic, DescribeTopic and AlterTopic answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Its id, never reused (a topic deleted and created again gets a new one).
    pub topic_id: u64,
    /// Its settings (`settings.partitions` is the partition count).
    pub settings: TopicSettings,
    /// Where each partition lives.
    pub partitions: Vec<PartitionInfo>,
    /// Encode the settings-v2 fields: true in answers to version 1 of CreateTopic,
    /// DescribeTopic and AlterTopic (the decoder sets it from the version).
    pub settings_v2: bool,
}

/// What an AlterTopic changes; `None` leaves a setting as it is. On the wire a flag
/// bit says which fields follow ([`TopicChanges::flags`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicChanges {
    /// New partition count (increase only; the node refuses a decrease with
    /// `INVALID_CONFIG`). Flag `0x01`.
    pub partitions: Option<u32>,
    /// New size retention; `Some(0)` clears it. Flag `0x02`.
    pub retention_bytes: Option<u64>,
    /// New age retention; `Some(0)` clears it. Flag `0x04`.
    pub retention_age_ms: Option<u64>,
    /// New record size limit; `Some(0)` = the server's default. Flag `0x08`.
    pub max_record_bytes: Option<u32>,
    /// New timestamp type (0 producer, 1 leader). Flag `0x10`, version 1.
    pub timestamp_type: Option<u8>,
    /// New cleanup policy (0 delete, 1 compact). Flag `0x20`, version 1.
    pub cleanup_policy: Option<u8>,
    /// New tombstone retention; `Some(0)` = the server's default. Flag `0x40`,
    /// version 1.
    pub tombstone_retention_ms: Option<u64>,
}

impl TopicChanges {
    /// Flag bit: a `u32` partition count follows.
    pub const PARTITIONS: u8 = 0x01;
    /// Flag bit: a `u64 retention_bytes` follows.
    pub const RETENTION_BYTES: u8 = 0x02;
    /// Flag bit: a `u64 retention_age_ms` follows.
    pub const RETENTION_AGE_MS: u8 = 0x04;
    /// Flag bit: a `u32 max_record_bytes` follows.
    pub const MAX_RECORD_BYTES: u8 = 0x08;
    /// Every bit version 0 defines; any other bit is `MALFORMED` there.
    pub const ALL_FLAGS: u8 = 0x0f;
    /// Flag bit (version 1): a `u8 timestamp_type` follows.
    pub const TIMESTAMP_TYPE: u8 = 0x10;
    /// Flag bit (version 1): a `u8 cleanup_policy` follows.
    pub const CLEANUP_POLICY: u8 = 0x20;
    /// Flag bit (version 1): a `u64 tombstone_retention_ms` follows.
    pub const TOMBSTONE_RETENTION_MS: u8 = 0x40;
    /// Every bit version 1 defines.
    pub const ALL_FLAGS_V1: u8 = 0x7f;

    /// The flags byte: one bit per `Some` field.
    pub fn flags(&self) -> u8 {
        let bit = |set: bool, flag: u8| if set { flag } else { 0 };
        bit(self.partitions.is_some(), Self::PARTITIONS)
            | bit(self.retention_bytes.is_some(), Self::RETENTION_BYTES)
            | bit(self.retention_age_ms.is_some(), Self::RETENTION_AGE_MS)
            | bit(self.max_record_bytes.is_some(), Self::MAX_RECORD_BYTES)
            | bit(self.timestamp_type.is_some(), Self::TIMESTAMP_TYPE)
            | bit(self.cleanup_policy.is_some(), Self::CLEANUP_POLICY)
            | bit(
                self.tombstone_retention_ms.is_some(),
                Self::TOMBSTONE_RETENTION_MS,
            )
    }
}

/// One Raft group's message in a RaftBatch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    /// The group it belongs to.
    pub group: GroupId,
    /// The raft module's own encoding, opaque here.
    pub payload: Vec<u8>,
}

// ---------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------

/// A topic name: a string of at most [`MAX_TOPIC_NAME_BYTES`].
pub(crate) fn decode_topic(
    r: &mut ByteReader<'_>,
    what: &'static str,
) -> Result<String, DecodeError> {
    let name = r.str_u16(what)?;
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return Err(DecodeError::malformed(format!(
            "{what} of {} bytes exceeds {MAX_TOPIC_NAME_BYTES} bytes",
            name.len()
        )));
    }
    Ok(name.to_string())
}

/// `string topic, u32 partition`.
pub(crate) fn decode_target(r: &mut ByteReader<'_>) -> Result<TopicPartition, DecodeError> {
    let topic = decode_topic(r, "topic")?;
    let partition = r.u32("partition")?;
    Ok(TopicPartition { topic, partition })
}

/// A `u32` count checked against the bytes left and against `max`.
fn bounded_count(
    r: &mut ByteReader<'_>,
    min_element_bytes: usize,
    max: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    let count = r.count_u32(min_element_bytes, what)?;
    if count > max {
        return Err(DecodeError::malformed(format!(
            "{what} {count} exceeds the limit of {max}"
        )));
    }
    Ok(count)
}

/// Fetch v1 request body, after the header.
pub(crate) fn decode_fetch_partitions(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let max_wait_ms = r.u32("Fetch max_wait_ms")?;
    let max_bytes = r.u32("Fetch max_bytes")?;
    let count = bounded_count(
        r,
        MIN_FETCH_PARTITION_BYTES,
        MAX_FETCH_PARTITIONS,
        "Fetch partition count",
    )?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        partitions.push(FetchPartition {
            target: decode_target(r)?,
            offset: Offset(r.u64("Fetch offset")?),
            max_bytes: r.u32("Fetch partition_max_bytes")?,
        });
    }
    Ok(Request::FetchPartitions {
        max_wait_ms,
        max_bytes,
        partitions,
    })
}

/// `u16 error_code` and, when nonzero, the error detail of a v0 error body.
pub(crate) fn decode_partition_error(
    r: &mut ByteReader<'_>,
) -> Result<Option<ErrorBody>, DecodeError> {
    let code = r.u16("partition error_code")?;
    if code == 0 {
        return Ok(None);
    }
    let Some(code) = ErrorCode::from_u16(code) else {
        return Err(DecodeError::malformed(format!(
            "unknown partition error code {code}"
        )));
    };
    super::frame::decode_error_body(code, r).map(Some)
}

/// Fetch v1 response body.
pub(crate) fn decode_fetched_partitions(
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    let count = r.count_u32(MIN_FETCHED_PARTITION_BYTES, "Fetch partition count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let target = decode_target(r)?;
        let error = decode_partition_error(r)?;
        let high_watermark = Offset(r.u64("Fetch high_watermark")?);
        let records = super::frame::decode_records(r, "Fetch record count")?;
        partitions.push(FetchedPartition {
            target,
            error,
            high_watermark,
            records,
        });
    }
    Ok(ResponseBody::FetchPartitions { partitions })
}

/// Metadata request body.
pub(crate) fn decode_metadata_request(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let count = bounded_count(r, 2, MAX_METADATA_TOPICS, "Metadata topic count")?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(decode_topic(r, "Metadata topic")?);
    }
    Ok(Request::Metadata { topics })
}

fn decode_partition_infos(r: &mut ByteReader<'_>) -> Result<Vec<PartitionInfo>, DecodeError> {
    let count = r.count_u32(MIN_PARTITION_INFO_BYTES, "partition count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let partition = r.u32("partition")?;
        let group = GroupId(r.u64("partition group")?);
        let leader = NodeId(r.u64("partition leader")?);
        let n = r.count_u32(8, "replica count")?;
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            replicas.push(NodeId(r.u64("replica")?));
        }
        partitions.push(PartitionInfo {
            partition,
            group,
            leader,
            replicas,
        });
    }
    Ok(partitions)
}

/// Metadata response body.
pub(crate) fn decode_metadata_response(
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    let count = r.count_u32(MIN_NODE_BYTES, "Metadata node count")?;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(NodeInfo {
            id: NodeId(r.u64("node id")?),
            name: r.str_u16("node name")?.to_string(),
            rpc_addr: r.str_u16("node rpc_addr")?.to_string(),
        });
    }
    let count = r.count_u32(MIN_TOPIC_METADATA_BYTES, "Metadata topic count")?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let name = decode_topic(r, "Metadata topic")?;
        let code = r.u16("topic error_code")?;
        let error = ErrorCode::from_u16(code)
            .ok_or_else(|| DecodeError::malformed(format!("unknown topic error code {code}")))?;
        let partitions = decode_partition_infos(r)?;
        topics.push(TopicMetadata {
            name,
            error,
            partitions,
        });
    }
    Ok(ResponseBody::Metadata { nodes, topics })
}

/// CreateTopic request body (settings v2 in version 1).
pub(crate) fn decode_create_topic(
    r: &mut ByteReader<'_>,
    version: u16,
) -> Result<Request, DecodeError> {
    let name = decode_topic(r, "CreateTopic name")?;
    let settings = decode_settings(r, version >= 1)?;
    Ok(Request::CreateTopic { name, settings })
}

/// AlterTopic request body (flags 0x10–0x40 in version 1).
pub(crate) fn decode_alter_topic(
    r: &mut ByteReader<'_>,
    version: u16,
) -> Result<Request, DecodeError> {
    let name = decode_topic(r, "AlterTopic name")?;
    let changes = decode_changes(r, version)?;
    Ok(Request::AlterTopic { name, changes })
}

/// A settings-v2 enum byte: 0 or 1, anything else `MALFORMED`.
fn decode_v2_code(r: &mut ByteReader<'_>, what: &'static str) -> Result<u8, DecodeError> {
    match r.u8(what)? {
        code @ (0 | 1) => Ok(code),
        code => Err(DecodeError::malformed(format!(
            "{what} {code} is not 0 or 1"
        ))),
    }
}

/// The settings fields, in CreateTopic / TopicDescription order (with the
/// settings-v2 fields when `v2`).
fn decode_settings(r: &mut ByteReader<'_>, v2: bool) -> Result<TopicSettings, DecodeError> {
    let mut s = TopicSettings {
        partitions: r.u32("topic partitions")?,
        replication: r.u8("topic replication")?,
        retention_bytes: r.u64("topic retention_bytes")?,
        retention_age_ms: r.u64("topic retention_age_ms")?,
        max_record_bytes: r.u32("topic max_record_bytes")?,
        segment_bytes: r.u64("topic segment_bytes")?,
        ..TopicSettings::default()
    };
    if v2 {
        s.timestamp_type = decode_v2_code(r, "topic timestamp_type")?;
        s.cleanup_policy = decode_v2_code(r, "topic cleanup_policy")?;
        s.tombstone_retention_ms = r.u64("topic tombstone_retention_ms")?;
    }
    Ok(s)
}

/// TopicDescription (the answer to CreateTopic, DescribeTopic, AlterTopic); with
/// settings v2 in answers to version 1.
pub(crate) fn decode_description(
    r: &mut ByteReader<'_>,
    version: u16,
) -> Result<TopicDescription, DecodeError> {
    let settings_v2 = version >= 1;
    Ok(TopicDescription {
        name: decode_topic(r, "topic name")?,
        topic_id: r.u64("topic id")?,
        settings: decode_settings(r, settings_v2)?,
        partitions: decode_partition_infos(r)?,
        settings_v2,
    })
}

/// AlterTopic request body after the name.
fn decode_changes(r: &mut ByteReader<'_>, version: u16) -> Result<TopicChanges, DecodeError> {
    let flags = r.u8("AlterTopic flags")?;
    let defined = if version >= 1 {
        TopicChanges::ALL_FLAGS_V1
    } else {
        TopicChanges::ALL_FLAGS
    };
    if flags & !defined != 0 {
        return Err(DecodeError::malformed(format!(
            "AlterTopic flags {flags:#04x} has undefined bits (defined: {defined:#04x})"
        )));
    }
    let has = |bit: u8| flags & bit != 0;
    let mut changes = TopicChanges::default();
    if has(TopicChanges::PARTITIONS) {
        changes.partitions = Some(r.u32("AlterTopic partitions")?);
    }
    if has(TopicChanges::RETENTION_BYTES) {
        changes.retention_bytes = Some(r.u64("AlterTopic retention_bytes")?);
    }
    if has(TopicChanges::RETENTION_AGE_MS) {
        changes.retention_age_ms = Some(r.u64("AlterTopic retention_age_ms")?);
    }
    if has(TopicChanges::MAX_RECORD_BYTES) {
        changes.max_record_bytes = Some(r.u32("AlterTopic max_record_bytes")?);
    }
    if has(TopicChanges::TIMESTAMP_TYPE) {
        changes.timestamp_type = Some(decode_v2_code(r, "AlterTopic timestamp_type")?);
    }
    if has(TopicChanges::CLEANUP_POLICY) {
        changes.cleanup_policy = Some(decode_v2_code(r, "AlterTopic cleanup_policy")?);
    }
    if has(TopicChanges::TOMBSTONE_RETENTION_MS) {
        changes.tombstone_retention_ms = Some(r.u64("AlterTopic tombstone_retention_ms")?);
    }
    Ok(changes)
}

/// RaftBatch request body.
pub(crate) fn decode_raft_batch(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let count = bounded_count(
        r,
        MIN_GROUP_MESSAGE_BYTES,
        MAX_RAFT_BATCH_MESSAGES,
        "RaftBatch count",
    )?;
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push(GroupMessage {
            group: GroupId(r.u64("RaftBatch group")?),
            payload: r.bytes_u32("RaftBatch payload")?.to_vec(),
        });
    }
    Ok(Request::RaftBatch { messages })
}

// ---------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------

/// `string topic, u32 partition`.
pub(crate) fn put_target(out: &mut Vec<u8>, target: &TopicPartition) {
    put_str(out, &target.topic);
    put_u32(out, target.partition);
}

/// Encoded size of [`put_target`].
pub(crate) fn target_len(target: &TopicPartition) -> usize {
    str_len(&target.topic) + 4
}

/// Encoded size of a `string`.
pub(crate) fn str_len(s: &str) -> usize {
    2 + s.len().min(usize::from(u16::MAX))
}

/// Fetch v1 request body.
pub(crate) fn put_fetch_partitions(
    out: &mut Vec<u8>,
    max_wait_ms: u32,
    max_bytes: u32,
    partitions: &[FetchPartition],
) {
    put_u32(out, max_wait_ms);
    put_u32(out, max_bytes);
    put_u32(out, len_u32(partitions.len()));
    for p in partitions {
        put_target(out, &p.target);
        put_u64(out, p.offset.0);
        put_u32(out, p.max_bytes);
    }
}

/// `u16 error_code` (0 for `None`) and the error detail of a v0 error body.
pub(crate) fn put_partition_error(out: &mut Vec<u8>, error: Option<&ErrorBody>) {
    match error {
        None => put_u16(out, 0),
        Some(err) => super::frame::put_error(out, err),
    }
}

/// Fetch v1 response body.
pub(crate) fn put_fetched_partitions(out: &mut Vec<u8>, partitions: &[FetchedPartition]) {
    put_u32(out, len_u32(partitions.len()));
    for p in partitions {
        put_target(out, &p.target);
        put_partition_error(out, p.error.as_ref());
        put_u64(out, p.high_watermark.0);
        super::frame::encode_records(&p.records, out);
    }
}

/// Metadata request body.
pub(crate) fn put_metadata_request(out: &mut Vec<u8>, topics: &[String]) {
    put_u32(out, len_u32(topics.len()));
    for topic in topics {
        put_str(out, topic);
    }
}

fn put_partition_infos(out: &mut Vec<u8>, partitions: &[PartitionInfo]) {
    put_u32(out, len_u32(partitions.len()));
    for p in partitions {
        put_u32(out, p.partition);
        put_u64(out, p.group.0);
        put_u64(out, p.leader.0);
        put_u32(out, len_u32(p.replicas.len()));
        for replica in &p.replicas {
            put_u64(out, replica.0);
        }
    }
}

/// Metadata response body.
pub(crate) fn put_metadata_response(
    out: &mut Vec<u8>,
    nodes: &[NodeInfo],
    topics: &[TopicMetadata],
) {
    put_u32(out, len_u32(nodes.len()));
    for n in nodes {
        put_u64(out, n.id.0);
        put_str(out, &n.name);
        put_str(out, &n.rpc_addr);
    }
    put_u32(out, len_u32(topics.len()));
    for t in topics {
        put_str(out, &t.name);
        put_u16(out, t.error.as_u16());
        put_partition_infos(out, &t.partitions);
    }
}

/// CreateTopic request body (settings v2 in version 1).
pub(crate) fn put_create_topic(
    out: &mut Vec<u8>,
    name: &str,
    settings: &TopicSettings,
    version: u16,
) {
    put_str(out, name);
    put_settings(out, settings, version >= 1);
}

/// AlterTopic request body.
pub(crate) fn put_alter_topic(out: &mut Vec<u8>, name: &str, changes: &TopicChanges) {
    put_str(out, name);
    put_changes(out, changes);
}

/// The settings fields, in CreateTopic / TopicDescription order (with the
/// settings-v2 fields when `v2`).
fn put_settings(out: &mut Vec<u8>, s: &TopicSettings, v2: bool) {
    put_u32(out, s.partitions);
    put_u8(out, s.replication);
    put_u64(out, s.retention_bytes);
    put_u64(out, s.retention_age_ms);
    put_u32(out, s.max_record_bytes);
    put_u64(out, s.segment_bytes);
    if v2 {
        put_u8(out, s.timestamp_type);
        put_u8(out, s.cleanup_policy);
        put_u64(out, s.tombstone_retention_ms);
    }
}

/// Encoded size of [`put_settings`] without the settings-v2 fields.
pub(crate) const SETTINGS_BYTES: usize = 4 + 1 + 8 + 8 + 4 + 8;
/// Bytes the settings-v2 fields add.
pub(crate) const SETTINGS_V2_BYTES: usize = 1 + 1 + 8;

/// TopicDescription.
pub(crate) fn put_description(out: &mut Vec<u8>, d: &TopicDescription) {
    put_str(out, &d.name);
    put_u64(out, d.topic_id);
    put_settings(out, &d.settings, d.settings_v2);
    put_partition_infos(out, &d.partitions);
}

/// AlterTopic fields after the name.
fn put_changes(out: &mut Vec<u8>, c: &TopicChanges) {
    put_u8(out, c.flags());
    if let Some(v) = c.partitions {
        put_u32(out, v);
    }
    if let Some(v) = c.retention_bytes {
        put_u64(out, v);
    }
    if let Some(v) = c.retention_age_ms {
        put_u64(out, v);
    }
    if let Some(v) = c.max_record_bytes {
        put_u32(out, v);
    }
    if let Some(v) = c.timestamp_type {
        put_u8(out, v);
    }
    if let Some(v) = c.cleanup_policy {
        put_u8(out, v);
    }
    if let Some(v) = c.tombstone_retention_ms {
        put_u64(out, v);
    }
}

/// Encoded size of [`put_changes`].
pub(crate) fn changes_len(c: &TopicChanges) -> usize {
    let opt = |set: bool, n: usize| if set { n } else { 0 };
    1 + opt(c.partitions.is_some(), 4)
        + opt(c.retention_bytes.is_some(), 8)
        + opt(c.retention_age_ms.is_some(), 8)
        + opt(c.max_record_bytes.is_some(), 4)
        + opt(c.timestamp_type.is_some(), 1)
        + opt(c.cleanup_policy.is_some(), 1)
        + opt(c.tombstone_retention_ms.is_some(), 8)
}

/// RaftBatch request body.
pub(crate) fn put_raft_batch(out: &mut Vec<u8>, messages: &[GroupMessage]) {
    put_u32(out, len_u32(messages.len()));
    for m in messages {
        put_u64(out, m.group.0);
        put_bytes(out, &m.payload);
    }
}
