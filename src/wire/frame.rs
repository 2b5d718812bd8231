//! Framing, and the request/response codecs.
//!
//! A frame is `u32 length | payload`, where `length` counts the payload bytes only.
//! [`frame_len`] looks at the front of a receive buffer and says whether a whole
//! frame is there, without copying; the caller then hands exactly that many bytes to
//! [`decode_request`] / [`decode_response`].
//!
//! Request payload: `u16 api_key | u16 api_version | u32 correlation_id | body`.
//! Response payload: `u32 correlation_id | u16 error_code | body`, where the body is
//! the API's response body when `error_code == 0` and an [`ErrorBody`] otherwise.
//!
//! Invariants:
//! - Decoders never panic and never allocate more than a small constant times the
//!   frame's length (lengths and counts are checked against the remaining bytes
//!   first). Every body (version 0 and 1) has an exact layout: trailing bytes are
//!   `Malformed`. The version-1 bodies' codecs live in `topics.rs`.
//! - The encoding is canonical: for every frame `f` that decodes,
//!   `encode(decode(f)) == f` byte for byte (the fuzz target checks this).
//! - Encoders append to the caller's `Vec` and back-patch the length prefix, so a
//!   server can reuse one output buffer for many responses.

use crate::bytes::ByteReader;
use crate::types::{GroupId, NodeId, Offset, RecordKind, Term};

use super::buf::{
    begin_frame, end_frame, len_u32, put_bytes, put_str, put_u16, put_u32, put_u64, put_u8,
};
use super::errors::{DecodeError, ErrorBody, ErrorCode, LeaderHint};
use super::fetch::{encode_fetch_response, BorrowedRecord};
use super::messages::{
    ApiKey, RecordView, Request, RequestFrame, ResponseBody, ResponseFrame, ServerInfo, ServerRole,
    StatusInfo, WireRecord,
};
use super::records_v2;
use super::topics::{
    changes_len, decode_alter_topic, decode_create_topic, decode_description,
    decode_fetch_partitions, decode_fetched_partitions, decode_metadata_request,
    decode_metadata_response, decode_raft_batch, decode_target, decode_topic, put_alter_topic,
    put_create_topic, put_description, put_fetch_partitions, put_fetched_partitions,
    put_metadata_request, put_metadata_response, put_raft_batch, put_target, str_len, target_len,
    TopicPartition, SETTINGS_BYTES, SETTINGS_V2_BYTES,
};
use super::{Limits, MAX_FRAME_BYTES_CAP};

/// Bytes of the length prefix.
pub const LEN_PREFIX_BYTES: usize = 4;
/// Bytes of a request header (`api_key, api_version, correlation_id`).
pub const REQUEST_HEADER_BYTES: usize = 8;
/// Bytes of a response header (`correlation_id, error_code`).
pub const RESPONSE_HEADER_BYTES: usize = 6;
/// Bytes of a record before its value (`offset, term, kind, value_len`).
pub const RECORD_HEADER_BYTES: usize = 8 + 8 + 1 + 4;
/// Smallest encoded `Server` entry (empty strings).
const MIN_SERVER_BYTES: usize = 8 + 2 + 2 + 1 + 1;

/// Looks at the front of `buf`: `Ok(Some(total))` when a whole frame of `total`
/// bytes (prefix included) is there, `Ok(None)` when more bytes are needed, and
/// `FrameTooLarge` when the length prefix exceeds `limits` (or the hard cap). Copies
/// nothing. Any connection whose first byte is not 0x00 fails here, since the hard
/// cap is below 16 MiB.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let max = limits.effective_max_frame_bytes();
    if len > max {
        return Err(DecodeError::FrameTooLarge { len, max });
    }
    let total = LEN_PREFIX_BYTES + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// Checks that `frame` is exactly one whole frame and returns its payload.
pub(crate) fn payload(frame: &[u8]) -> Result<&[u8], DecodeError> {
    let Some(prefix) = frame.get(..LEN_PREFIX_BYTES) else {
        return Err(DecodeError::Incomplete {
            needed: LEN_PREFIX_BYTES - frame.len(),
        });
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len > MAX_FRAME_BYTES_CAP {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: MAX_FRAME_BYTES_CAP,
        });
    }
    let total = LEN_PREFIX_BYTES + len as usize;
    if frame.len() < total {
        return Err(DecodeError::Incomplete {
            needed: total - frame.len(),
        });
    }
    if frame.len() > total {
        return Err(DecodeError::Malformed {
            correlation_id: None,
            reason: format!(
                "{} bytes after the end of the frame (pass exactly one frame)",
                frame.len() - total
            ),
        });
    }
    Ok(&frame[LEN_PREFIX_BYTES..])
}

/// Decodes one whole frame (length prefix included, nothing after it).
///
/// Errors after the header carry the correlation id so the server can answer.
pub fn decode_request(frame: &[u8]) -> Result<RequestFrame, DecodeError> {
    let payload = payload(frame)?;
    if payload.len() < REQUEST_HEADER_BYTES {
        return Err(DecodeError::Malformed {
            correlation_id: None,
            reason: format!(
                "request payload of {} bytes is shorter than the {REQUEST_HEADER_BYTES}-byte header",
                payload.len()
            ),
        });
    }
    let mut r = ByteReader::new(payload);
    let api_key = r.u16("api_key")?;
    let api_version = r.u16("api_version")?;
    let correlation_id = r.u32("correlation_id")?;
    let Some(api) = ApiKey::from_u16(api_key) else {
        return Err(DecodeError::UnsupportedApi {
            correlation_id,
            api_key,
        });
    };
    if api_version > api.max_version() {
        return Err(DecodeError::UnsupportedVersion {
            correlation_id,
            api_key: api,
            version: api_version,
        });
    }
    let request = decode_request_body(api, api_version, &mut r)
        .and_then(|request| Ok(r.finish(api.name()).map(|()| request)?))
        .map_err(|e| e.in_frame(correlation_id))?;
    Ok(RequestFrame {
        api_version,
        correlation_id,
        request,
    })
}

/// The target of a Produce/ProduceBatch/Consume: the prefix in version 1, the
/// default topic's partition 0 in version 0.
fn decode_version_target(
    version: u16,
    r: &mut ByteReader<'_>,
) -> Result<TopicPartition, DecodeError> {
    if version == 0 {
        Ok(TopicPartition::default_topic())
    } else {
        decode_target(r)
    }
}

/// The group of a RaftMessage/ReadEntries: the `u64` prefix in version 1; in
/// version 0 (a node with one log) the `default` topic's partition 0.
fn decode_version_group(
    version: u16,
    r: &mut ByteReader<'_>,
    what: &'static str,
) -> Result<GroupId, DecodeError> {
    if version == 0 {
        Ok(GroupId::DEFAULT_PARTITION)
    } else {
        Ok(GroupId(r.u64(what)?))
    }
}

fn decode_request_body(
    api: ApiKey,
    version: u16,
    r: &mut ByteReader<'_>,
) -> Result<Request, DecodeError> {
    Ok(match api {
        ApiKey::Ping => Request::Ping,
        ApiKey::Produce => Request::Produce {
            target: decode_version_target(version, r)?,
            value: r.bytes_u32("Produce value")?.to_vec(),
        },
        ApiKey::ProduceBatch if version >= 2 => records_v2::decode_produce_batch_v2(r)?,
        ApiKey::Consume if version >= 2 => Request::ConsumeV2 {
            target: decode_target(r)?,
            offset: Offset(r.u64("Consume offset")?),
        },
        ApiKey::Fetch if version >= 2 => records_v2::decode_fetch_v2(r)?,
        ApiKey::ProduceBatch => {
            let target = decode_version_target(version, r)?;
            let count = r.count_u32(4, "ProduceBatch count")?;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                values.push(r.bytes_u32("ProduceBatch value")?.to_vec());
            }
            Request::ProduceBatch { target, values }
        }
        ApiKey::Consume => Request::Consume {
            target: decode_version_target(version, r)?,
            offset: Offset(r.u64("Consume offset")?),
        },
        ApiKey::Fetch if version >= 1 => decode_fetch_partitions(r)?,
        ApiKey::Fetch => Request::Fetch {
            offset: Offset(r.u64("Fetch offset")?),
            max_bytes: r.u32("Fetch max_bytes")?,
            max_wait_ms: r.u32("Fetch max_wait_ms")?,
        },
        ApiKey::GetServers => Request::GetServers,
        ApiKey::Status => Request::Status,
        ApiKey::Metadata => decode_metadata_request(r)?,
        ApiKey::CreateTopic => decode_create_topic(r, version)?,
        ApiKey::DeleteTopic => Request::DeleteTopic {
            name: decode_topic(r, "DeleteTopic name")?,
        },
        ApiKey::DescribeTopic => Request::DescribeTopic {
            name: decode_topic(r, "DescribeTopic name")?,
        },
        ApiKey::AlterTopic => decode_alter_topic(r, version)?,
        ApiKey::InitProducer => decode_init_producer(r)?,
        ApiKey::RaftMessage => Request::Raft {
            group: decode_version_group(version, r, "RaftMessage group")?,
            payload: r.rest().to_vec(),
        },
        ApiKey::RaftBatch => decode_raft_batch(r)?,
        ApiKey::PeerHandshake => Request::PeerHandshake {
            cluster_name: r.str_u16("PeerHandshake cluster_name")?.to_string(),
            node_id: NodeId(r.u64("PeerHandshake node_id")?),
            node_name: r.str_u16("PeerHandshake node_name")?.to_string(),
        },
        ApiKey::CommitOffset | ApiKey::FetchOffset | ApiKey::ListGroups | ApiKey::DeleteGroup => {
            super::groups::decode_request(api, r)?
        }
        ApiKey::ReadEntries => Request::ReadEntries {
            group: decode_version_group(version, r, "ReadEntries group")?,
            from: Offset(r.u64("ReadEntries from")?),
            end: Offset(r.u64("ReadEntries end")?),
            anchor: Offset(r.u64("ReadEntries anchor")?),
            max_bytes: r.u32("ReadEntries max_bytes")?,
        },
        ApiKey::ListOffsets => super::list_offsets::decode_request(r)?,
    })
}

/// Appends one request frame to `out`, in [`RequestFrame::wire_version`] (the
/// frame's `api_version` clamped to the versions that carry the request).
///
/// # Panics
/// If a value exceeds 4 GiB (callers check record sizes against their limits first;
/// see [`request_frame_len`]).
pub fn encode_request(frame: &RequestFrame, out: &mut Vec<u8>) {
    let version = frame.wire_version();
    let start = begin_frame(out);
    put_u16(out, frame.request.api_key().as_u16());
    put_u16(out, version);
    put_u32(out, frame.correlation_id);
    encode_request_body(&frame.request, version, out);
    end_frame(out, start);
}

fn encode_request_body(request: &Request, version: u16, out: &mut Vec<u8>) {
    let v1 = version >= 1;
    let put_version_target = |out: &mut Vec<u8>, target: &TopicPartition| {
        if v1 {
            put_target(out, target);
        }
    };
    let put_version_group = |out: &mut Vec<u8>, group: GroupId| {
        if v1 {
            put_u64(out, group.0);
        }
    };
    match request {
        Request::Ping | Request::GetServers | Request::Status => {}
        Request::Produce { target, value } => {
            put_version_target(out, target);
            put_bytes(out, value);
        }
        Request::ProduceBatch { target, values } => {
            put_version_target(out, target);
            put_u32(out, len_u32(values.len()));
            for value in values {
                put_bytes(out, value);
            }
        }
        Request::Consume { target, offset } => {
            put_version_target(out, target);
            put_u64(out, offset.0);
        }
        Request::Fetch {
            offset,
            max_bytes,
            max_wait_ms,
        } => {
            put_u64(out, offset.0);
            put_u32(out, *max_bytes);
            put_u32(out, *max_wait_ms);
        }
        Request::FetchPartitions {
            max_wait_ms,
            max_bytes,
            partitions,
        } => put_fetch_partitions(out, *max_wait_ms, *max_bytes, partitions),
        Request::Metadata { topics } => put_metadata_request(out, topics),
        Request::CreateTopic { name, settings } => put_create_topic(out, name, settings, version),
        Request::DeleteTopic { name } | Request::DescribeTopic { name } => put_str(out, name),
        Request::AlterTopic { name, changes } => put_alter_topic(out, name, changes),
        Request::InitProducer { name } => match name {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                put_str(out, n);
            }
        },
        Request::Raft { group, payload } => {
            put_version_group(out, *group);
            out.extend_from_slice(payload);
        }
        Request::RaftBatch { messages } => put_raft_batch(out, messages),
        Request::Group(g) => super::groups::put_request(out, g),
        Request::PeerHandshake {
            cluster_name,
            node_id,
            node_name,
        } => {
            put_str(out, cluster_name);
            put_u64(out, node_id.0);
            put_str(out, node_name);
        }
        Request::ReadEntries {
            group,
            from,
            end,
            anchor,
            max_bytes,
        } => {
            put_version_group(out, *group);
            put_u64(out, from.0);
            put_u64(out, end.0);
            put_u64(out, anchor.0);
            put_u32(out, *max_bytes);
        }
        Request::ListOffsets { queries } => super::list_offsets::put_request(out, queries),
        Request::ProduceBatchV2 {
            target,
            producer,
            records,
        } => records_v2::put_produce_batch_v2(out, target, producer.as_ref(), records),
        Request::ConsumeV2 { target, offset } => {
            put_target(out, target);
            put_u64(out, offset.0);
        }
        Request::FetchV2 {
            max_wait_ms,
            max_bytes,
            partitions,
        } => records_v2::put_fetch_v2(out, *max_wait_ms, *max_bytes, partitions),
    }
}

/// Size of the encoded frame (prefix included), without encoding it. A client
/// compares it with the server's `max_frame_bytes` before sending.
pub fn request_frame_len(frame: &RequestFrame) -> usize {
    let v1 = frame.wire_version() >= 1;
    let target = |t: &TopicPartition| if v1 { target_len(t) } else { 0 };
    let group = if v1 { 8 } else { 0 };
    let body = match &frame.request {
        Request::Ping | Request::GetServers | Request::Status => 0,
        Request::Produce { target: t, value } => target(t) + 4 + value.len(),
        Request::ProduceBatch { target: t, values } => {
            target(t) + 4 + values.iter().map(|v| 4 + v.len()).sum::<usize>()
        }
        Request::Consume { target: t, .. } => target(t) + 8,
        Request::Fetch { .. } => 16,
        Request::FetchPartitions { partitions, .. } | Request::FetchV2 { partitions, .. } => {
            12 + partitions
                .iter()
                .map(|p| target_len(&p.target) + 12)
                .sum::<usize>()
        }
        Request::Metadata { topics } => 4 + topics.iter().map(|t| str_len(t)).sum::<usize>(),
        Request::CreateTopic { name, .. } => {
            str_len(name) + SETTINGS_BYTES + if v1 { SETTINGS_V2_BYTES } else { 0 }
        }
        Request::DeleteTopic { name } | Request::DescribeTopic { name } => str_len(name),
        Request::AlterTopic { name, changes } => str_len(name) + changes_len(changes),
        Request::InitProducer { name } => 1 + name.as_deref().map_or(0, str_len),
        Request::ReadEntries { .. } => group + 28,
        Request::Group(g) => super::groups::request_len(g),
        Request::ListOffsets { queries } => super::list_offsets::request_len(queries),
        Request::Raft { payload, .. } => group + payload.len(),
        Request::RaftBatch { messages } => {
            4 + messages.iter().map(|m| 12 + m.payload.len()).sum::<usize>()
        }
        Request::PeerHandshake {
            cluster_name,
            node_name,
            ..
        } => str_len(cluster_name) + 8 + str_len(node_name),
        Request::ProduceBatchV2 {
            target: t,
            producer,
            records,
        } => records_v2::produce_batch_v2_len(t, producer.as_ref(), records),
        Request::ConsumeV2 { target: t, .. } => target_len(t) + 8,
    };
    LEN_PREFIX_BYTES + REQUEST_HEADER_BYTES + body
}

/// Decodes one whole response frame to a version-0 request of API `api` (responses
/// do not carry their API key; the client knows what it asked). Same as
/// [`decode_response_versioned`] with version 0.
pub fn decode_response(frame: &[u8], api: ApiKey) -> Result<ResponseFrame, DecodeError> {
    decode_response_versioned(frame, api, 0)
}

/// Decodes one whole response frame to a request of API `api` sent in version
/// `api_version`. Only Fetch answers differently in version 1
/// ([`ResponseBody::FetchPartitions`]); in version 2 ProduceBatch, Consume and
/// Fetch answer with their v2 bodies (`ProduceBatchV2`, `ConsumeV2`, `FetchV2`);
/// every other response body is the same in every version.
pub fn decode_response_versioned(
    frame: &[u8],
    api: ApiKey,
    api_version: u16,
) -> Result<ResponseFrame, DecodeError> {
    let (mut r, correlation_id, error) = decode_response_header(frame)?;
    let result = match error {
        None => {
            let body = decode_response_body(api, api_version, &mut r)
                .and_then(|body| Ok(r.finish(api.name()).map(|()| body)?))
                .map_err(|e| e.in_frame(correlation_id))?;
            Ok(body)
        }
        Some(body) => Err(body),
    };
    Ok(ResponseFrame {
        correlation_id,
        result,
    })
}

/// Reads a response frame's header. Returns a reader positioned at the body, the
/// correlation id, and the decoded error body when the error code is not 0 (the
/// reader is then fully consumed). Errors raised later while reading the body must
/// be given the correlation id with [`DecodeError::in_frame`].
pub(crate) fn decode_response_header(
    frame: &[u8],
) -> Result<(ByteReader<'_>, u32, Option<ErrorBody>), DecodeError> {
    let payload = payload(frame)?;
    if payload.len() < RESPONSE_HEADER_BYTES {
        return Err(DecodeError::Malformed {
            correlation_id: None,
            reason: format!(
                "response payload of {} bytes is shorter than the {RESPONSE_HEADER_BYTES}-byte header",
                payload.len()
            ),
        });
    }
    let mut r = ByteReader::new(payload);
    let correlation_id = r.u32("correlation_id")?;
    let error = decode_error_tail(&mut r).map_err(|e| e.in_frame(correlation_id))?;
    Ok((r, correlation_id, error))
}

/// `error_code | error body`: `None` for code 0 (the API's body follows).
fn decode_error_tail(r: &mut ByteReader<'_>) -> Result<Option<ErrorBody>, DecodeError> {
    let code = r.u16("error_code")?;
    if code == 0 {
        return Ok(None);
    }
    let Some(code) = ErrorCode::from_u16(code) else {
        return Err(DecodeError::malformed(format!("unknown error code {code}")));
    };
    let body = decode_error_body(code, r)?;
    r.finish("error")?;
    Ok(Some(body))
}

pub(crate) fn decode_error_body(
    code: ErrorCode,
    r: &mut ByteReader<'_>,
) -> Result<ErrorBody, DecodeError> {
    let message = r.str_u16("error message")?.to_string();
    let leader_hint = if code == ErrorCode::NotLeader {
        let leader_id = NodeId(r.u64("leader_id")?);
        let addr = r.str_u16("leader addr")?.to_string();
        Some(LeaderHint { leader_id, addr })
    } else {
        None
    };
    Ok(ErrorBody {
        code,
        message,
        leader_hint,
    })
}

fn decode_record(r: &mut ByteReader<'_>) -> Result<WireRecord, DecodeError> {
    decode_record_ref(r).map(|rec| rec.to_owned())
}

/// One record, borrowing its value from the frame.
pub(crate) fn decode_record_ref<'a>(
    r: &mut ByteReader<'a>,
) -> Result<BorrowedRecord<'a>, DecodeError> {
    let offset = Offset(r.u64("record offset")?);
    let term = Term(r.u64("record term")?);
    let kind_byte = r.u8("record kind")?;
    let Some(kind) = RecordKind::from_u8(kind_byte) else {
        return Err(DecodeError::malformed(format!(
            "record kind {kind_byte} is not 0..=4"
        )));
    };
    let value = r.bytes_u32("record value")?;
    Ok(BorrowedRecord {
        offset,
        term,
        kind,
        value,
    })
}

/// `u32 count, count × Record`; the count is checked against the bytes left.
pub(crate) fn decode_records(
    r: &mut ByteReader<'_>,
    what: &'static str,
) -> Result<Vec<WireRecord>, DecodeError> {
    let count = r.count_u32(RECORD_HEADER_BYTES, what)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_record(r)?);
    }
    Ok(records)
}

fn decode_role(r: &mut ByteReader<'_>, what: &'static str) -> Result<ServerRole, DecodeError> {
    let byte = r.u8(what)?;
    ServerRole::from_u8(byte)
        .ok_or_else(|| DecodeError::malformed(format!("{what} {byte} is not 0..=3")))
}

/// InitProducer request body: `u8 flags` (bit 0: `string name` follows; other
/// bits must be 0).
fn decode_init_producer(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let flags = r.u8("InitProducer flags")?;
    if flags & !1 != 0 {
        return Err(DecodeError::malformed(format!(
            "InitProducer flags {flags:#04x}: only bit 0 is defined"
        )));
    }
    let name = if flags & 1 == 1 {
        Some(r.str_u16("InitProducer name")?.to_string())
    } else {
        None
    };
    Ok(Request::InitProducer { name })
}

fn decode_response_body(
    api: ApiKey,
    version: u16,
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    Ok(match api {
        ApiKey::ProduceBatch if version >= 2 => records_v2::decode_produce_batch_v2_response(r)?,
        ApiKey::Consume if version >= 2 => ResponseBody::ConsumeV2 {
            record: records_v2::decode_record_v1(r)?,
        },
        ApiKey::Fetch if version >= 2 => records_v2::decode_fetched_partitions_v2(r)?,
        ApiKey::Fetch if version >= 1 => decode_fetched_partitions(r)?,
        ApiKey::Metadata => decode_metadata_response(r)?,
        ApiKey::CreateTopic => ResponseBody::CreateTopic(decode_description(r, version)?),
        ApiKey::DeleteTopic => ResponseBody::DeleteTopic,
        ApiKey::DescribeTopic => ResponseBody::DescribeTopic(decode_description(r, version)?),
        ApiKey::AlterTopic => ResponseBody::AlterTopic(decode_description(r, version)?),
        ApiKey::RaftBatch => ResponseBody::RaftBatch,
        ApiKey::CommitOffset | ApiKey::FetchOffset | ApiKey::ListGroups | ApiKey::DeleteGroup => {
            super::groups::decode_response(api, r)?
        }
        ApiKey::InitProducer => ResponseBody::InitProducer {
            producer_id: r.u64("InitProducer producer_id")?,
            epoch: r.u16("InitProducer epoch")?,
        },
        ApiKey::Ping => ResponseBody::Ping,
        ApiKey::Produce => ResponseBody::Produce {
            offset: Offset(r.u64("Produce offset")?),
        },
        ApiKey::ProduceBatch => ResponseBody::ProduceBatch {
            first_offset: Offset(r.u64("ProduceBatch first_offset")?),
            count: r.u32("ProduceBatch count")?,
        },
        ApiKey::Consume => ResponseBody::Consume {
            record: decode_record(r)?,
        },
        ApiKey::Fetch => ResponseBody::Fetch {
            high_watermark: Offset(r.u64("Fetch high_watermark")?),
            records: decode_records(r, "Fetch record count")?,
        },
        ApiKey::ReadEntries => ResponseBody::ReadEntries {
            anchor_term: Term(r.u64("ReadEntries anchor_term")?),
            commit_index: Offset(r.u64("ReadEntries commit_index")?),
            records: decode_records(r, "ReadEntries record count")?,
        },
        ApiKey::GetServers => {
            let count = r.count_u32(MIN_SERVER_BYTES, "GetServers count")?;
            let mut servers = Vec::with_capacity(count);
            for _ in 0..count {
                let id = NodeId(r.u64("server id")?);
                let name = r.str_u16("server name")?.to_string();
                let rpc_addr = r.str_u16("server rpc_addr")?.to_string();
                let role = decode_role(r, "server role")?;
                let live = match r.u8("server live")? {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(DecodeError::malformed(format!(
                            "server live {other} is not 0 or 1"
                        )))
                    }
                };
                servers.push(ServerInfo {
                    id,
                    name,
                    rpc_addr,
                    role,
                    live,
                });
            }
            ResponseBody::GetServers { servers }
        }
        ApiKey::Status => ResponseBody::Status(StatusInfo {
            node_name: r.str_u16("Status node_name")?.to_string(),
            role: decode_role(r, "Status role")?,
            term: Term(r.u64("Status term")?),
            commit_index: Offset(r.u64("Status commit_index")?),
            last_index: Offset(r.u64("Status last_index")?),
            first_index: Offset(r.u64("Status first_index")?),
        }),
        ApiKey::RaftMessage => ResponseBody::Raft {
            payload: r.rest().to_vec(),
        },
        ApiKey::PeerHandshake => ResponseBody::PeerHandshake,
        ApiKey::ListOffsets => super::list_offsets::decode_response(r)?,
    })
}

/// Appends one response frame to `out`.
///
/// An `Err` body with code [`ErrorCode::None`] is a caller bug; it is sent as
/// `INTERNAL` (and asserts in debug builds).
pub fn encode_response(frame: &ResponseFrame, out: &mut Vec<u8>) {
    match &frame.result {
        Ok(ResponseBody::Fetch {
            high_watermark,
            records,
        }) => encode_fetch_response(frame.correlation_id, *high_watermark, records, out),
        Ok(body) => {
            let start = begin_frame(out);
            put_u32(out, frame.correlation_id);
            put_u16(out, 0);
            encode_response_body(body, out);
            end_frame(out, start);
        }
        Err(err) => encode_error_response(frame.correlation_id, err, out),
    }
}

/// Appends an error response frame to `out` (see [`encode_response`]).
pub fn encode_error_response(correlation_id: u32, err: &ErrorBody, out: &mut Vec<u8>) {
    let start = begin_frame(out);
    put_u32(out, correlation_id);
    put_error(out, err);
    end_frame(out, start);
}

/// `u16 error_code | message | [leader hint]`: the error part of a response header
/// and body, also a Fetch v1 partition's error. Code `NONE` is written as
/// `INTERNAL` (a caller bug; asserts in debug builds).
pub(crate) fn put_error(out: &mut Vec<u8>, err: &ErrorBody) {
    debug_assert!(err.code != ErrorCode::None, "error body with code NONE");
    let code = match err.code {
        ErrorCode::None => ErrorCode::Internal,
        code => code,
    };
    put_u16(out, code.as_u16());
    put_str(out, &err.message);
    if code == ErrorCode::NotLeader {
        let unknown = LeaderHint::default();
        let hint = err.leader_hint.as_ref().unwrap_or(&unknown);
        put_u64(out, hint.leader_id.0);
        put_str(out, &hint.addr);
    }
}

pub(crate) fn put_record_header(
    out: &mut Vec<u8>,
    offset: Offset,
    term: Term,
    kind: RecordKind,
    len: u32,
) {
    put_u64(out, offset.0);
    put_u64(out, term.0);
    put_u8(out, kind as u8);
    put_u32(out, len);
}

fn encode_record<R: RecordView + ?Sized>(record: &R, out: &mut Vec<u8>) {
    let value = record.value();
    put_record_header(
        out,
        record.offset(),
        record.term(),
        record.kind(),
        len_u32(value.len()),
    );
    out.extend_from_slice(value);
}

pub(crate) fn encode_records(records: &[WireRecord], out: &mut Vec<u8>) {
    put_u32(out, len_u32(records.len()));
    for record in records {
        encode_record(record, out);
    }
}

fn encode_response_body(body: &ResponseBody, out: &mut Vec<u8>) {
    match body {
        ResponseBody::Ping
        | ResponseBody::PeerHandshake
        | ResponseBody::DeleteTopic
        | ResponseBody::RaftBatch => {}
        ResponseBody::FetchPartitions { partitions } => put_fetched_partitions(out, partitions),
        ResponseBody::Metadata { nodes, topics } => put_metadata_response(out, nodes, topics),
        ResponseBody::CreateTopic(d)
        | ResponseBody::DescribeTopic(d)
        | ResponseBody::AlterTopic(d) => put_description(out, d),
        ResponseBody::Produce { offset } => put_u64(out, offset.0),
        ResponseBody::InitProducer { producer_id, epoch } => {
            put_u64(out, *producer_id);
            out.extend_from_slice(&epoch.to_be_bytes());
        }
        ResponseBody::ProduceBatch {
            first_offset,
            count,
        } => {
            put_u64(out, first_offset.0);
            put_u32(out, *count);
        }
        ResponseBody::Consume { record } => encode_record(record, out),
        ResponseBody::Fetch {
            high_watermark,
            records,
        } => {
            put_u64(out, high_watermark.0);
            encode_records(records, out);
        }
        ResponseBody::ReadEntries {
            anchor_term,
            commit_index,
            records,
        } => {
            put_u64(out, anchor_term.0);
            put_u64(out, commit_index.0);
            encode_records(records, out);
        }
        ResponseBody::GetServers { servers } => {
            put_u32(out, len_u32(servers.len()));
            for s in servers {
                put_u64(out, s.id.0);
                put_str(out, &s.name);
                put_str(out, &s.rpc_addr);
                put_u8(out, s.role as u8);
                put_u8(out, u8::from(s.live));
            }
        }
        ResponseBody::Status(s) => {
            put_str(out, &s.node_name);
            put_u8(out, s.role as u8);
            put_u64(out, s.term.0);
            put_u64(out, s.commit_index.0);
            put_u64(out, s.last_index.0);
            put_u64(out, s.first_index.0);
        }
        ResponseBody::Raft { payload } => out.extend_from_slice(payload),
        ResponseBody::ProduceBatchV2 {
            first_offset,
            count,
            duplicate,
        } => records_v2::put_produce_batch_v2_response(out, *first_offset, *count, *duplicate),
        ResponseBody::ConsumeV2 { record } => records_v2::put_record_v1(out, record),
        ResponseBody::FetchV2 { partitions } => {
            records_v2::put_fetched_partitions_v2(out, partitions)
        }
        ResponseBody::Group(g) => super::groups::put_response(out, g),
        ResponseBody::ListOffsets { partitions } => {
            super::list_offsets::put_response(out, partitions)
        }
    }
}
