//! Consumer group (cursor) APIs, wire-spec §16: CommitOffset (13), FetchOffset (14),
//! ListGroups (15), DeleteGroup (16), all version 0. Served by the metadata group's
//! leader (others answer `NOT_LEADER` with its hint).
//!
//! | key | request body | response body |
//! |---|---|---|
//! | 13 | `string group, u32 n (≤ 1000), n × (TopicPartition, u64 offset, bytes metadata)` | `u32 n, n × (TopicPartition, u16 error_code)` |
//! | 14 | `string group, u32 n (≤ 1000; 0 = all the group's cursors), n × TopicPartition` | `u32 n, n × (TopicPartition, u64 offset, bytes metadata, u16 error_code)` |
//! | 15 | empty | `u32 n, n × (string group, u32 cursors)` |
//! | 16 | `string group` | empty |
//!
//! `TopicPartition` = `string topic, u32 partition`. A cursor offset is the next
//! offset the group will read; FetchOffset answers `offset` 0 (and empty metadata)
//! for a partition without a cursor. The group name is checked by the node (a bad
//! one is `INVALID_GROUP`), not by the decoder.

use crate::bytes::ByteReader;

use super::buf::{len_u32, put_bytes, put_str, put_u16, put_u32, put_u64};
use super::errors::{DecodeError, ErrorCode};
use super::messages::{ApiKey, Request, ResponseBody};
use super::topics::{decode_target, put_target, str_len, target_len, TopicPartition};

/// Most partitions in one CommitOffset or FetchOffset request.
pub const MAX_GROUP_REQUEST_PARTITIONS: usize = 1000;

/// Smallest encoded TopicPartition: empty topic string + partition.
const MIN_TARGET_BYTES: usize = 2 + 4;

/// A consumer group request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRequest {
    /// Store cursors of `group` (CommitOffset, 13).
    CommitOffset {
        /// The consumer group.
        group: String,
        /// The cursors (at most [`MAX_GROUP_REQUEST_PARTITIONS`]).
        offsets: Vec<OffsetCommit>,
    },
    /// Read cursors of `group` (FetchOffset, 14).
    FetchOffset {
        /// The consumer group.
        group: String,
        /// The partitions asked; empty = every cursor the group has.
        partitions: Vec<TopicPartition>,
    },
    /// Every group with its number of cursors (ListGroups, 15).
    ListGroups,
    /// Delete a group and its cursors (DeleteGroup, 16).
    DeleteGroup {
        /// The consumer group.
        group: String,
    },
}

/// One cursor of a CommitOffset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The partition.
    pub target: TopicPartition,
    /// The next offset the group will read.
    pub offset: u64,
    /// Free-form client metadata (at most 4 KiB, checked by the node).
    pub metadata: Vec<u8>,
}

/// One partition's outcome in a CommitOffset answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitResult {
    /// The partition, as asked.
    pub target: TopicPartition,
    /// `NONE`, or why this cursor was not stored.
    pub error: ErrorCode,
}

/// One cursor of a FetchOffset answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedCursor {
    /// The partition.
    pub target: TopicPartition,
    /// The next offset the group will read; 0 = none committed.
    pub offset: u64,
    /// The metadata committed with it.
    pub metadata: Vec<u8>,
    /// `NONE`, or why it cannot be read (`UNKNOWN_TOPIC`).
    pub error: ErrorCode,
}

/// One group of a ListGroups answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// The group's name.
    pub name: String,
    /// How many cursors it holds.
    pub cursors: u32,
}

/// A consumer group API's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupResponse {
    /// CommitOffset: one result per partition, in the order asked.
    CommitOffset(Vec<CommitResult>),
    /// FetchOffset: the cursors asked (or all of the group's).
    FetchOffset(Vec<FetchedCursor>),
    /// ListGroups: every group in name order.
    ListGroups(Vec<GroupListing>),
    /// DeleteGroup: done.
    DeleteGroup,
}

impl GroupRequest {
    /// The API key it is sent under.
    pub fn api_key(&self) -> ApiKey {
        match self {
            GroupRequest::CommitOffset { .. } => ApiKey::CommitOffset,
            GroupRequest::FetchOffset { .. } => ApiKey::FetchOffset,
            GroupRequest::ListGroups => ApiKey::ListGroups,
            GroupRequest::DeleteGroup { .. } => ApiKey::DeleteGroup,
        }
    }

    /// The topics it names, each once in first-use order (ACL objects).
    pub fn topics(&self) -> Vec<&str> {
        let targets: Vec<&TopicPartition> = match self {
            GroupRequest::CommitOffset { offsets, .. } => {
                offsets.iter().map(|o| &o.target).collect()
            }
            GroupRequest::FetchOffset { partitions, .. } => partitions.iter().collect(),
            GroupRequest::ListGroups | GroupRequest::DeleteGroup { .. } => Vec::new(),
        };
        let mut topics: Vec<&str> = Vec::new();
        for t in targets {
            // Bounded: at most MAX_GROUP_REQUEST_PARTITIONS targets.
            if !topics.contains(&t.topic.as_str()) {
                topics.push(&t.topic);
            }
        }
        topics
    }
}

impl GroupResponse {
    /// The API it answers.
    pub fn api_key(&self) -> ApiKey {
        match self {
            GroupResponse::CommitOffset(_) => ApiKey::CommitOffset,
            GroupResponse::FetchOffset(_) => ApiKey::FetchOffset,
            GroupResponse::ListGroups(_) => ApiKey::ListGroups,
            GroupResponse::DeleteGroup => ApiKey::DeleteGroup,
        }
    }
}

fn bounded(
    r: &mut ByteReader<'_>,
    min_bytes: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    let count = r.count_u32(min_bytes, what)?;
    if count > MAX_GROUP_REQUEST_PARTITIONS {
        return Err(DecodeError::malformed(format!(
            "{what} {count} exceeds the limit of {MAX_GROUP_REQUEST_PARTITIONS}"
        )));
    }
    Ok(count)
}

fn decode_code(r: &mut ByteReader<'_>) -> Result<ErrorCode, DecodeError> {
    let code = r.u16("error_code")?;
    ErrorCode::from_u16(code)
        .ok_or_else(|| DecodeError::malformed(format!("unknown error code {code}")))
}

/// Decodes the body of a group request of `api`.
pub(crate) fn decode_request(api: ApiKey, r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let request = match api {
        ApiKey::CommitOffset => {
            let group = r.str_u16("CommitOffset group")?.to_string();
            let n = bounded(r, MIN_TARGET_BYTES + 12, "CommitOffset count")?;
            let mut offsets = Vec::with_capacity(n);
            for _ in 0..n {
                offsets.push(OffsetCommit {
                    target: decode_target(r)?,
                    offset: r.u64("CommitOffset offset")?,
                    metadata: r.bytes_u32("CommitOffset metadata")?.to_vec(),
                });
            }
            GroupRequest::CommitOffset { group, offsets }
        }
        ApiKey::FetchOffset => {
            let group = r.str_u16("FetchOffset group")?.to_string();
            let n = bounded(r, MIN_TARGET_BYTES, "FetchOffset count")?;
            let mut partitions = Vec::with_capacity(n);
            for _ in 0..n {
                partitions.push(decode_target(r)?);
            }
            GroupRequest::FetchOffset { group, partitions }
        }
        ApiKey::ListGroups => GroupRequest::ListGroups,
        _ => GroupRequest::DeleteGroup {
            group: r.str_u16("DeleteGroup group")?.to_string(),
        },
    };
    Ok(Request::Group(request))
}

/// Appends a group request's body.
pub(crate) fn put_request(out: &mut Vec<u8>, request: &GroupRequest) {
    match request {
        GroupRequest::CommitOffset { group, offsets } => {
            put_str(out, group);
            put_u32(out, len_u32(offsets.len()));
            for o in offsets {
                put_target(out, &o.target);
                put_u64(out, o.offset);
                put_bytes(out, &o.metadata);
            }
        }
        GroupRequest::FetchOffset { group, partitions } => {
            put_str(out, group);
            put_u32(out, len_u32(partitions.len()));
            for p in partitions {
                put_target(out, p);
            }
        }
        GroupRequest::ListGroups => {}
        GroupRequest::DeleteGroup { group } => put_str(out, group),
    }
}

/// Encoded size of a group request's body.
pub(crate) fn request_len(request: &GroupRequest) -> usize {
    match request {
        GroupRequest::CommitOffset { group, offsets } => {
            str_len(group)
                + 4
                + offsets
                    .iter()
                    .map(|o| target_len(&o.target) + 12 + o.metadata.len())
                    .sum::<usize>()
        }
        GroupRequest::FetchOffset { group, partitions } => {
            str_len(group) + 4 + partitions.iter().map(target_len).sum::<usize>()
        }
        GroupRequest::ListGroups => 0,
        GroupRequest::DeleteGroup { group } => str_len(group),
    }
}

/// Decodes the body of a group response to a request of `api`.
pub(crate) fn decode_response(
    api: ApiKey,
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    let response = match api {
        ApiKey::CommitOffset => {
            let n = r.count_u32(MIN_TARGET_BYTES + 2, "CommitOffset result count")?;
            let mut results = Vec::with_capacity(n);
            for _ in 0..n {
                results.push(CommitResult {
                    target: decode_target(r)?,
                    error: decode_code(r)?,
                });
            }
            GroupResponse::CommitOffset(results)
        }
        ApiKey::FetchOffset => {
            let n = r.count_u32(MIN_TARGET_BYTES + 14, "FetchOffset cursor count")?;
            let mut cursors = Vec::with_capacity(n);
            for _ in 0..n {
                cursors.push(FetchedCursor {
                    target: decode_target(r)?,
                    offset: r.u64("FetchOffset offset")?,
                    metadata: r.bytes_u32("FetchOffset metadata")?.to_vec(),
                    error: decode_code(r)?,
                });
            }
            GroupResponse::FetchOffset(cursors)
        }
        ApiKey::ListGroups => {
            let n = r.count_u32(2 + 4, "ListGroups count")?;
            let mut groups = Vec::with_capacity(n);
            for _ in 0..n {
                groups.push(GroupListing {
                    name: r.str_u16("ListGroups group")?.to_string(),
                    cursors: r.u32("ListGroups cursors")?,
                });
            }
            GroupResponse::ListGroups(groups)
        }
        _ => GroupResponse::DeleteGroup,
    };
    Ok(ResponseBody::Group(response))
}

/// Appends a group response's body.
pub(crate) fn put_response(out: &mut Vec<u8>, response: &GroupResponse) {
    match response {
        GroupResponse::CommitOffset(results) => {
            put_u32(out, len_u32(results.len()));
            for c in results {
                put_target(out, &c.target);
                put_u16(out, c.error.as_u16());
            }
        }
        GroupResponse::FetchOffset(cursors) => {
            put_u32(out, len_u32(cursors.len()));
            for c in cursors {
                put_target(out, &c.target);
                put_u64(out, c.offset);
                put_bytes(out, &c.metadata);
                put_u16(out, c.error.as_u16());
            }
        }
        GroupResponse::ListGroups(groups) => {
            put_u32(out, len_u32(groups.len()));
            for g in groups {
                put_str(out, &g.name);
                put_u32(out, g.cursors);
            }
        }
        GroupResponse::DeleteGroup => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        decode_request, decode_response, encode_request, encode_response, ErrorBody, RequestFrame,
        ResponseFrame, CURSOR_EXAMPLES,
    };

    fn target(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    /// Checks one §16 example: the request decodes to `request` and re-encodes to its
    /// bytes, and `result` encodes to (and decodes from) the answer's bytes.
    fn check(name: &str, request: GroupRequest, result: Result<GroupResponse, ErrorBody>) {
        let ex = CURSOR_EXAMPLES.iter().find(|e| e.name == name).unwrap();
        let frame = decode_request(ex.request).unwrap();
        assert_eq!(frame.request, Request::Group(request), "{name} request");
        let mut again = Vec::new();
        encode_request(&frame, &mut again);
        assert_eq!(again, ex.request, "{name} request re-encodes");
        assert_eq!(
            crate::wire::request_frame_len(&frame),
            ex.request.len(),
            "{name} length"
        );
        let response = ResponseFrame {
            correlation_id: frame.correlation_id,
            result: result.map(ResponseBody::Group),
        };
        let mut bytes = Vec::new();
        encode_response(&response, &mut bytes);
        assert_eq!(bytes, ex.response, "{name} response");
        let api = frame.request.api_key();
        assert_eq!(decode_response(ex.response, api), Ok(response));
    }

    #[test]
    fn the_codec_produces_the_cursor_examples() {
        check(
            "commit-offset",
            GroupRequest::CommitOffset {
                group: "billing".into(),
                offsets: vec![
                    OffsetCommit {
                        target: target("orders", 0),
                        offset: 42,
                        metadata: b"host-a".to_vec(),
                    },
                    OffsetCommit {
                        target: target("nope", 0),
                        offset: 7,
                        metadata: Vec::new(),
                    },
                ],
            },
            Ok(GroupResponse::CommitOffset(vec![
                CommitResult {
                    target: target("orders", 0),
                    error: ErrorCode::None,
                },
                CommitResult {
                    target: target("nope", 0),
                    error: ErrorCode::UnknownTopic,
                },
            ])),
        );
        let cursor = |p: u32, offset: u64, metadata: &[u8]| FetchedCursor {
            target: target("orders", p),
            offset,
            metadata: metadata.to_vec(),
            error: ErrorCode::None,
        };
        check(
            "fetch-offset",
            GroupRequest::FetchOffset {
                group: "billing".into(),
                partitions: vec![target("orders", 0), target("orders", 1)],
            },
            Ok(GroupResponse::FetchOffset(vec![
                cursor(0, 42, b"host-a"),
                cursor(1, 0, b""),
            ])),
        );
        check(
            "list-groups",
            GroupRequest::ListGroups,
            Ok(GroupResponse::ListGroups(vec![GroupListing {
                name: "billing".into(),
                cursors: 1,
            }])),
        );
        check(
            "delete-group",
            GroupRequest::DeleteGroup {
                group: "billing".into(),
            },
            Ok(GroupResponse::DeleteGroup),
        );
        let invalid = crate::catalogue::GroupName::parse("bad name").unwrap_err();
        check(
            "delete-group-invalid",
            GroupRequest::DeleteGroup {
                group: "bad name".into(),
            },
            Err(ErrorBody::new(ErrorCode::InvalidGroup, invalid.to_string())),
        );
    }

    #[test]
    fn counts_are_bounded_and_truncations_are_malformed() {
        let offsets = (0..=MAX_GROUP_REQUEST_PARTITIONS as u32)
            .map(|p| OffsetCommit {
                target: target("t", p),
                offset: 1,
                metadata: Vec::new(),
            })
            .collect();
        let too_many = RequestFrame::new(
            1,
            Request::Group(GroupRequest::CommitOffset {
                group: "g".into(),
                offsets,
            }),
        );
        let mut bytes = Vec::new();
        encode_request(&too_many, &mut bytes);
        assert!(decode_request(&bytes).is_err(), "1001 partitions");
        for ex in CURSOR_EXAMPLES {
            let len = ex.request.len();
            for cut in crate::wire::LEN_PREFIX_BYTES + 8..len {
                let mut short = ex.request[..cut].to_vec();
                let payload = u32::try_from(cut - 4).unwrap();
                short[..4].copy_from_slice(&payload.to_be_bytes());
                // ListGroups has an empty body: no shorter frame is a ListGroups.
                assert!(decode_request(&short).is_err(), "{} cut {cut}", ex.name);
            }
        }
    }
}
