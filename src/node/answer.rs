//! The one adapter from the node's outcomes to wire answers. Every response body and
//! error code the node sends is built here: the rest of the node speaks in domain
//! terms ([`Refusal`], [`ProduceError`], [`StorageError`], records, views).
//!
//! Expected outcomes (out of range, not leader, busy, too large, starting) are
//! per-request answers. Anything else from storage is a server fault: logged, and
//! answered `INTERNAL` for that request only, never retried record by record here.

use super::inbox::ReplyShape;
use super::raft_loop::ProduceReply;
use super::served::{BadPayload, ReadFormat};
use crate::net::Responder;
use crate::raft::NodeId;
use crate::replica::{ProduceError, Produced};
use crate::storage::StorageError;
use crate::types::{Offset, RecordKind, Term};
use crate::wire::{
    self, ErrorBody, ErrorCode, ResponseBody, ServerInfo, StatusInfo, WireRecord, WireRecordV1,
};

/// Why the node did not serve a request (expected outcomes, not faults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Reads: `asked` is outside `[first, next)`.
    OutOfRange {
        /// The offset asked for.
        asked: Offset,
        /// First readable offset.
        first: Offset,
        /// High-water mark.
        next: Offset,
    },
    /// Produces go to the leader (`addr` empty when unknown).
    NotLeader {
        /// The leader this node knows.
        leader: NodeId,
        /// Its client address, if gossip knows it.
        addr: String,
    },
    /// No leader is known (election, no quorum).
    NoLeader,
    /// A bounded queue is full; `what` names it.
    Busy(&'static str),
    /// A produce waited in the queue past its deadline; it was not written.
    NotProposed {
        /// The request timeout.
        timeout_ms: u64,
    },
    /// A value or batch over the limits.
    TooLarge {
        /// Largest value.
        max_value_bytes: usize,
        /// Largest batch payload.
        max_batch_bytes: usize,
        /// Most records in one batch.
        max_batch_records: usize,
    },
    /// The node is opening its log.
    Starting,
    /// The disk is full; `detail` says what failed.
    StorageFull {
        /// The write that failed.
        detail: String,
    },
    /// The node is stopping.
    ShuttingDown,
    /// A peer frame on a connection that did not hand-shake.
    NotAPeer,
    /// A peer of another cluster.
    ForeignCluster {
        /// This node's cluster.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// An undecodable Raft message.
    BadRaftMessage(String),
    /// The topic was deleted while the request waited.
    TopicDeleted,
    /// No such topic or partition (the message says which).
    UnknownTopic(String),
    /// A topic name that is not allowed.
    InvalidTopic(String),
    /// CreateTopic of a name that exists.
    TopicExists(String),
    /// Topic settings out of bounds (or another refused catalogue change).
    InvalidConfig(String),
    /// A record of format v1 the produce path refuses (the message names it).
    InvalidRecord(String),
    /// A consumer group name that is not allowed.
    InvalidGroup(String),
    /// The ACL refuses it (a check only the node can make); the message says what.
    Denied(String),
    /// Not ready to serve this yet (e.g. a new metadata leader catching up);
    /// `what` says why.
    NotReady(&'static str),
}

/// Answers a refused request.
pub(crate) fn refuse(reply: Responder, why: Refusal) {
    reply.respond(Err(error_body(why)))
}

/// The error body of a refusal (NOT_LEADER carries the leader's id and address).
pub(crate) fn error_body(why: Refusal) -> ErrorBody {
    match why {
        Refusal::NotLeader { leader, addr } => ErrorBody::not_leader(leader, addr),
        Refusal::OutOfRange { asked, first, next } => {
            ErrorBody::offset_out_of_range(asked, first, next)
        }
        other => {
            let (code, message) = code_and_message(other);
            ErrorBody::new(code, message)
        }
    }
}

/// Code and message of every refusal but NOT_LEADER and OUT_OF_RANGE (which have
/// their own constructors in `wire`).
fn code_and_message(why: Refusal) -> (ErrorCode, String) {
    use ErrorCode::*;
    match why {
        Refusal::NoLeader => (
            Unavailable,
            "no leader known (election in progress or no quorum); retry with backoff".into(),
        ),
        Refusal::Busy(what) => (Unavailable, format!("{what} full; retry with backoff")),
        Refusal::NotProposed { timeout_ms } => (
            Unavailable,
            format!(
                "not proposed within {timeout_ms} ms (replication is stalled); it was not \
                 written: retry with backoff"
            ),
        ),
        Refusal::TooLarge {
            max_value_bytes,
            max_batch_bytes,
            max_batch_records,
        } => (
            RecordTooLarge,
            format!(
                "records must be at most {max_value_bytes} bytes and a batch at most \
                 {max_batch_bytes} bytes and {max_batch_records} records; send smaller \
                 records or split the batch"
            ),
        ),
        Refusal::StorageFull { detail } => (
            StorageFull,
            format!(
                "the disk is full ({detail}); records not yet acknowledged may or may not \
                 be written: retry after space is freed, or on another node"
            ),
        ),
        Refusal::Starting => (
            Unavailable,
            "starting: the node is opening its log; retry in a moment".into(),
        ),
        Refusal::ShuttingDown => (
            Unavailable,
            "the server is shutting down; the request was not served: retry on another \
             node or after the restart"
                .into(),
        ),
        Refusal::NotAPeer => (
            PermissionDenied,
            "Raft messages are accepted only after a PeerHandshake".into(),
        ),
        Refusal::ForeignCluster { ours, theirs } => (
            PermissionDenied,
            format!("this node belongs to cluster `{ours}`, not `{theirs}`"),
        ),
        Refusal::BadRaftMessage(e) => (Malformed, format!("undecodable Raft message: {e}")),
        Refusal::TopicDeleted => (UnknownTopic, "the topic was deleted".into()),
        Refusal::UnknownTopic(m) => (UnknownTopic, m),
        Refusal::InvalidTopic(m) => (InvalidTopic, m),
        Refusal::TopicExists(m) => (TopicExists, m),
        Refusal::InvalidConfig(m) => (InvalidConfig, m),
        Refusal::InvalidRecord(m) => (InvalidRecord, m),
        Refusal::InvalidGroup(m) => (InvalidGroup, m),
        Refusal::Denied(m) => (PermissionDenied, m),
        Refusal::NotReady(what) => (Unavailable, format!("{what}; retry in a moment")),
        Refusal::NotLeader { .. } | Refusal::OutOfRange { .. } => {
            (Internal, "refusal without its own wire constructor".into())
        }
    }
}

/// Answers a produce with where it landed, or why not. `not_leader` resolves a
/// leader id to the refusal (it needs the member table).
pub(crate) fn produce(
    to: ProduceReply,
    result: Result<Produced, ProduceError>,
    not_leader: impl FnOnce(Option<NodeId>) -> Refusal,
) {
    let reply = to.reply;
    match result {
        Ok(p) => {
            let first = Offset(p.first.0);
            let count = (p.last.0 + 1).saturating_sub(p.first.0);
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            let body = match to.shape {
                ReplyShape::Single => ResponseBody::Produce { offset: first },
                ReplyShape::BatchV2 => ResponseBody::ProduceBatchV2 {
                    first_offset: first,
                    count,
                    // 1: a retry answered with its original offsets.
                    duplicate: p.duplicate,
                },
                _ => ResponseBody::ProduceBatch {
                    first_offset: first,
                    count,
                },
            };
            reply.ok(body);
        }
        Err(ProduceError::NotLeader { leader }) => refuse(reply, not_leader(leader)),
        Err(ProduceError::Unavailable(msg)) => reply.error(ErrorCode::Unavailable, msg),
        Err(ProduceError::Indeterminate(msg)) => reply.error(ErrorCode::Timeout, msg),
        Err(ProduceError::Producer(why)) => {
            let (code, msg) = super::producers::refusal(why);
            reply.error(code, msg)
        }
    }
}

/// An empty batch: nothing written, nothing to wait for.
pub(crate) fn empty_batch(reply: Responder, next: Offset) {
    reply.ok(ResponseBody::ProduceBatch {
        first_offset: next,
        count: 0,
    })
}

/// An empty ProduceBatch v2.
pub(crate) fn empty_batch_v2(reply: Responder, next: Offset) {
    reply.ok(ResponseBody::ProduceBatchV2 {
        first_offset: next,
        count: 0,
        duplicate: false,
    })
}

/// A storage error met while reading, as the reader's answer.
pub(crate) fn read_failed(reply: Responder, e: &StorageError, out_of_range: Refusal) {
    match e {
        StorageError::OffsetOutOfRange { .. } => refuse(reply, out_of_range),
        StorageError::Closed => refuse(reply, Refusal::ShuttingDown),
        StorageError::NoSpace { .. } => refuse(
            reply,
            Refusal::StorageFull {
                detail: e.to_string(),
            },
        ),
        // Damage to one record on this node: that record only, never the node's end
        // (the reader may get it from another replica; the node logs it to heal).
        StorageError::CorruptRecord { .. } => {
            log::error!("read hit a damaged record: {e}");
            reply.error(
                ErrorCode::CorruptRecord,
                format!("{e}; read it from another replica, or skip it"),
            )
        }
        other => {
            log::error!("read failed: {other}");
            reply.error(
                ErrorCode::Internal,
                format!("storage error: {other}; see the server log"),
            )
        }
    }
}

/// One record for Consume, as `format` presents it: `bytes` is the value (wire
/// kind `Data`, versions 0 and 1) or the v1 payload (version 2).
pub(crate) fn record(
    reply: Responder,
    format: ReadFormat,
    (offset, term): (Offset, Term),
    bytes: Vec<u8>,
) {
    reply.ok(match format {
        ReadFormat::Value => ResponseBody::Consume {
            record: WireRecord {
                offset,
                term,
                kind: RecordKind::Data,
                value: bytes,
            },
        },
        ReadFormat::V1 => ResponseBody::ConsumeV2 {
            record: WireRecordV1 {
                offset,
                payload: bytes,
            },
        },
    })
}

/// A stored v1 payload that does not decode (it passed its checksum: a bug).
pub(crate) fn bad_payload(reply: Responder, bad: &BadPayload) {
    let message = bad.message();
    log::error!("{message}");
    reply.error(ErrorCode::Internal, message)
}

/// A peer's ReadEntries.
pub(crate) fn entries(
    reply: Responder,
    anchor_term: Term,
    commit_index: Offset,
    records: Vec<WireRecord>,
) {
    reply.ok(ResponseBody::ReadEntries {
        anchor_term,
        commit_index,
        records,
    })
}

/// A Fetch with nothing (yet) to return.
pub(crate) fn nothing_fetched(reply: Responder, high_watermark: Offset) {
    reply.ok(ResponseBody::Fetch {
        high_watermark,
        records: Vec::new(),
    })
}

/// Ping.
pub(crate) fn pong(reply: Responder) {
    reply.ok(ResponseBody::Ping)
}

/// GetServers.
pub(crate) fn servers(reply: Responder, servers: Vec<ServerInfo>) {
    reply.ok(ResponseBody::GetServers { servers })
}

/// Status.
pub(crate) fn status(reply: Responder, status: StatusInfo) {
    reply.ok(ResponseBody::Status(status))
}

/// A peer's handshake was accepted.
pub(crate) fn peer_welcome(reply: Responder) {
    reply.ok(ResponseBody::PeerHandshake)
}

/// A Raft message was queued (fire-and-forget: the answer is empty).
pub(crate) fn raft_queued(reply: Responder) {
    reply.ok(ResponseBody::Raft {
        payload: Vec::new(),
    })
}

/// Answers a catalogue command (CreateTopic, DeleteTopic, AlterTopic) with what
/// applying it did: the topic as it is now, or why it was refused.
pub(crate) fn admin(
    reply: Responder,
    outcome: Result<crate::catalogue::Change, crate::catalogue::CatalogueError>,
    described: Option<(super::topics::ApiAnswer, wire::TopicDescription)>,
) {
    match (outcome, described) {
        (Err(e), _) => refuse(reply, super::topics::refusal(e)),
        (Ok(_), Some((api, d))) => topic(reply, api, d),
        (Ok(_), None) => reply.ok(ResponseBody::DeleteTopic),
    }
}

/// Answers with a topic's description in the shape of `api`.
pub(crate) fn topic(reply: Responder, api: super::topics::ApiAnswer, d: wire::TopicDescription) {
    use super::topics::ApiAnswer;
    reply.ok(match api {
        ApiAnswer::Create => ResponseBody::CreateTopic(d),
        ApiAnswer::Alter => ResponseBody::AlterTopic(d),
        ApiAnswer::Describe => ResponseBody::DescribeTopic(d),
    })
}

/// Answers Metadata.
pub(crate) fn metadata(
    reply: Responder,
    nodes: Vec<wire::NodeInfo>,
    topics: Vec<wire::TopicMetadata>,
) {
    reply.ok(ResponseBody::Metadata { nodes, topics })
}

/// Answers a multi-partition fetch: version 1 as read; version 2's records hold
/// their v1 payloads in `value` and are answered as `RecordV1`s (moved, not copied).
pub(crate) fn fetched_partitions(
    reply: Responder,
    format: ReadFormat,
    partitions: Vec<wire::FetchedPartition>,
) {
    reply.ok(match format {
        ReadFormat::Value => ResponseBody::FetchPartitions { partitions },
        ReadFormat::V1 => ResponseBody::FetchV2 {
            partitions: partitions.into_iter().map(partition_v2).collect(),
        },
    })
}

fn partition_v2(p: wire::FetchedPartition) -> wire::FetchedPartitionV2 {
    wire::FetchedPartitionV2 {
        target: p.target,
        error: p.error,
        high_watermark: p.high_watermark,
        records: p
            .records
            .into_iter()
            .map(|r| WireRecordV1 {
                offset: r.offset,
                payload: r.value,
            })
            .collect(),
    }
}

/// The answer to a ListOffsets.
pub(crate) fn listed_offsets(reply: Responder, partitions: Vec<wire::ListedOffset>) {
    reply.ok(ResponseBody::ListOffsets { partitions })
}

/// A RaftBatch v1 was queued: no answer (the sender hears only refusals).
pub(crate) fn raft_batch_queued_quietly(reply: Responder) {
    reply.no_answer()
}

/// Acknowledges a RaftBatch (the receiver's replies travel on its own connections).
pub(crate) fn raft_batch_queued(reply: Responder) {
    reply.ok(ResponseBody::RaftBatch)
}
