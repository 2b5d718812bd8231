//! ListOffsets (API key 17, version 0; wire-spec §17): for each partition asked,
//! its earliest retained offset, its high-water mark, or the first offset whose
//! record timestamp is at least a given time.
//!
//! Request: `count n` (≤ [`MAX_LIST_OFFSETS_PARTITIONS`]), n × (`TopicPartition`,
//! `i64 spec`): [`SPEC_EARLIEST`] (-2), [`SPEC_LATEST`] (-1), or a timestamp in ms
//! since the epoch (≥ 0); any other negative spec is MALFORMED.
//!
//! Response: `count n`, n × (`TopicPartition`, `u16 error_code` and error detail
//! as in Fetch v1, `u64 offset`, `i64 timestamp`): the timestamp of the record at
//! `offset`, or -1 when the answer is not a record (earliest, latest, or a time
//! beyond every record, answered with the high-water mark).

use crate::bytes::ByteReader;
use crate::types::Offset;

use super::buf::{len_u32, put_u32, put_u64};
use super::errors::{DecodeError, ErrorBody};
use super::messages::{Request, ResponseBody};
use super::topics::{
    decode_partition_error, decode_target, put_partition_error, put_target, target_len,
    TopicPartition, MIN_TARGET_BYTES,
};

/// Most partitions one ListOffsets request may name.
pub const MAX_LIST_OFFSETS_PARTITIONS: usize = 1000;
/// Spec: the first retained offset.
pub const SPEC_EARLIEST: i64 = -2;
/// Spec: the high-water mark (the next offset to be committed).
pub const SPEC_LATEST: i64 = -1;
/// The timestamp of an answer that is not a record.
pub const NO_TIMESTAMP: i64 = -1;

const MIN_QUERY_BYTES: usize = MIN_TARGET_BYTES + 8;
const MIN_LISTED_BYTES: usize = MIN_TARGET_BYTES + 2 + 8 + 8;

/// What a ListOffsets query asks of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first retained offset.
    Earliest,
    /// The high-water mark.
    Latest,
    /// The first offset whose timestamp is ≥ this many ms since the epoch.
    Time(i64),
}

impl OffsetSpec {
    /// The wire value.
    pub fn to_i64(self) -> i64 {
        match self {
            OffsetSpec::Earliest => SPEC_EARLIEST,
            OffsetSpec::Latest => SPEC_LATEST,
            OffsetSpec::Time(ms) => ms,
        }
    }

    /// Decodes a wire value; `None` for a negative value other than -1 and -2.
    pub fn from_i64(spec: i64) -> Option<OffsetSpec> {
        match spec {
            SPEC_EARLIEST => Some(OffsetSpec::Earliest),
            SPEC_LATEST => Some(OffsetSpec::Latest),
            ms if ms >= 0 => Some(OffsetSpec::Time(ms)),
            _ => None,
        }
    }
}

/// One partition of a ListOffsets request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetQuery {
    /// The partition.
    pub target: TopicPartition,
    /// What is asked.
    pub spec: OffsetSpec,
}

/// One partition of a ListOffsets answer, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    /// The partition.
    pub target: TopicPartition,
    /// Why this partition has no answer (then offset 0, timestamp -1).
    pub error: Option<ErrorBody>,
    /// The offset answered.
    pub offset: Offset,
    /// The timestamp of the record at `offset`, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
}

/// Request body.
pub(crate) fn decode_request(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let count = r.count_u32(MIN_QUERY_BYTES, "ListOffsets count")?;
    if count > MAX_LIST_OFFSETS_PARTITIONS {
        return Err(DecodeError::malformed(format!(
            "ListOffsets names {count} partitions, more than {MAX_LIST_OFFSETS_PARTITIONS}"
        )));
    }
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let target = decode_target(r)?;
        let raw = r.u64("ListOffsets spec")? as i64;
        let spec = OffsetSpec::from_i64(raw).ok_or_else(|| {
            DecodeError::malformed(format!(
                "ListOffsets spec {raw} is not -2 (earliest), -1 (latest) or a time ≥ 0"
            ))
        })?;
        queries.push(OffsetQuery { target, spec });
    }
    Ok(Request::ListOffsets { queries })
}

/// Request body.
pub(crate) fn put_request(out: &mut Vec<u8>, queries: &[OffsetQuery]) {
    put_u32(out, len_u32(queries.len()));
    for q in queries {
        put_target(out, &q.target);
        put_u64(out, q.spec.to_i64() as u64);
    }
}

/// Encoded size of the request body.
pub(crate) fn request_len(queries: &[OffsetQuery]) -> usize {
    4 + queries
        .iter()
        .map(|q| target_len(&q.target) + 8)
        .sum::<usize>()
}

/// Response body.
pub(crate) fn decode_response(r: &mut ByteReader<'_>) -> Result<ResponseBody, DecodeError> {
    let count = r.count_u32(MIN_LISTED_BYTES, "ListOffsets count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        partitions.push(ListedOffset {
            target: decode_target(r)?,
            error: decode_partition_error(r)?,
            offset: Offset(r.u64("ListOffsets offset")?),
            timestamp: r.u64("ListOffsets timestamp")? as i64,
        });
    }
    Ok(ResponseBody::ListOffsets { partitions })
}

/// Response body.
pub(crate) fn put_response(out: &mut Vec<u8>, partitions: &[ListedOffset]) {
    put_u32(out, len_u32(partitions.len()));
    for p in partitions {
        put_target(out, &p.target);
        put_partition_error(out, p.error.as_ref());
        put_u64(out, p.offset.0);
        put_u64(out, p.timestamp as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        decode_request, decode_response_versioned, encode_request, encode_response, ApiKey,
        ErrorCode, RequestFrame, ResponseFrame, V1_EXAMPLES,
    };

    fn orders1() -> TopicPartition {
        TopicPartition::new("orders", 1)
    }

    /// The spec's example (wire-spec §17, table `V1_EXAMPLES`) is what the codec
    /// reads and writes.
    #[test]
    fn the_spec_example_is_what_the_codec_speaks() {
        let ex = V1_EXAMPLES
            .iter()
            .find(|e| e.name == "list-offsets")
            .unwrap();
        let req = decode_request(ex.request).unwrap();
        let queries = vec![
            OffsetQuery {
                target: orders1(),
                spec: OffsetSpec::Earliest,
            },
            OffsetQuery {
                target: orders1(),
                spec: OffsetSpec::Time(1_796_551_200_000),
            },
            OffsetQuery {
                target: TopicPartition::new("nope", 0),
                spec: OffsetSpec::Latest,
            },
        ];
        assert_eq!(req, RequestFrame::new(12, Request::ListOffsets { queries }));
        assert_eq!(req.request.api_key(), ApiKey::ListOffsets);
        assert_eq!(req.request.topics(), vec!["orders", "nope"]);
        let mut again = Vec::new();
        encode_request(&req, &mut again);
        assert_eq!(again, ex.request);
        assert_eq!(crate::wire::request_frame_len(&req), ex.request.len());
        let listed = |target, error, offset, timestamp| ListedOffset {
            target,
            error,
            offset: Offset(offset),
            timestamp,
        };
        let frame = ResponseFrame {
            correlation_id: 12,
            result: Ok(ResponseBody::ListOffsets {
                partitions: vec![
                    listed(orders1(), None, 1, NO_TIMESTAMP),
                    listed(orders1(), None, 2, 1_796_551_200_042),
                    listed(
                        TopicPartition::new("nope", 0),
                        Some(ErrorBody::new(
                            ErrorCode::UnknownTopic,
                            "topic `nope` does not exist",
                        )),
                        0,
                        NO_TIMESTAMP,
                    ),
                ],
            }),
        };
        let mut out = Vec::new();
        encode_response(&frame, &mut out);
        assert_eq!(out, ex.response);
        assert_eq!(
            decode_response_versioned(ex.response, ApiKey::ListOffsets, 0),
            Ok(frame)
        );
    }

    #[test]
    fn bad_specs_counts_and_truncations_are_refused() {
        let frame = |count: u32, spec: i64| {
            let mut body = Vec::new();
            put_u32(&mut body, count);
            put_target(&mut body, &orders1());
            put_u64(&mut body, spec as u64);
            let mut out = Vec::new();
            put_u32(&mut out, (8 + body.len()) as u32);
            out.extend_from_slice(&[0, 17, 0, 0, 0, 0, 0, 1]);
            out.extend_from_slice(&body);
            out
        };
        assert!(decode_request(&frame(1, -1)).is_ok());
        assert!(decode_request(&frame(1, 0)).is_ok());
        assert!(decode_request(&frame(1, -3)).is_err(), "spec -3");
        assert!(decode_request(&frame(1, i64::MIN)).is_err());
        assert!(
            decode_request(&frame(2, -1)).is_err(),
            "count past the bytes"
        );
        let full = frame(1, -2);
        for cut in 12..full.len() {
            let mut short = full[..cut].to_vec();
            short[..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes());
            assert!(decode_request(&short).is_err(), "cut at {cut}");
        }
        // More than the bound, even with the bytes there.
        let n = MAX_LIST_OFFSETS_PARTITIONS + 1;
        let queries = vec![
            OffsetQuery {
                target: orders1(),
                spec: OffsetSpec::Latest,
            };
            n
        ];
        let mut big = Vec::new();
        encode_request(
            &RequestFrame::new(1, Request::ListOffsets { queries }),
            &mut big,
        );
        assert!(decode_request(&big).is_err());
    }
}
