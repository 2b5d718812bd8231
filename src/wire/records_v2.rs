//! Version 2 of ProduceBatch, Consume and Fetch: records of format v1 (key,
//! headers, timestamp, value; `crate::records`, wire-spec §13) on the wire.
//! Layouts (wire-spec §14; `bytes` = `u32 len | bytes`):
//!
//! | key v2 | request body | response body |
//! |---|---|---|
//! | 2 ProduceBatch | `TopicPartition`, `u8 flags` (bit 0: a `BatchMeta` follows), [`BatchMeta`, 19 bytes], `u32 count` (≤ 16,384), count × `bytes record` | `u64 first_offset`, `u32 count`, `u8 duplicate` |
//! | 3 Consume | `TopicPartition`, `u64 offset` | `RecordV1` |
//! | 4 Fetch | as version 1 | as version 1 with `RecordV1` instead of `Record` |
//!
//! `RecordV1` = `u64 offset | bytes payload`, the payload a §13 v1 encoding (a
//! record stored as v0 is answered as a v1 payload with no key, no headers, flags 0
//! and `timestamp_ms = -1`).
//!
//! The codec checks structure only (lengths, counts, flags, the batch meta and its
//! record count); whether each record's payload decodes is the server's check
//! (`INVALID_RECORD`, code 25, naming the record), so one bad record is a typed
//! answer and not a closed connection.

use crate::bytes::ByteReader;
use crate::replica::dedup::{encode_batch_meta, read_batch_meta, BatchMeta, BATCH_META_BYTES};
use crate::types::Offset;

use super::buf::{len_u32, put_bytes, put_u32, put_u64, put_u8};
use super::errors::DecodeError;
use super::messages::{Request, ResponseBody};
use super::topics::{
    decode_partition_error, decode_target, put_partition_error, put_target, target_len,
    FetchPartition, TopicPartition, MIN_FETCHED_PARTITION_BYTES,
};
use super::MAX_BATCH_RECORDS;

/// Bytes of a `RecordV1` before its payload: `u64 offset`, `u32 payload_len`.
pub const RECORD_V1_HEADER_BYTES: usize = 8 + 4;

/// ProduceBatch v2 flag bit: a producer's `BatchMeta` follows (idempotent produce).
pub const PRODUCE_FLAG_PRODUCER: u8 = 0x01;

/// A record of format v1 as Consume v2 and Fetch v2 answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRecordV1 {
    /// Its position in the log.
    pub offset: Offset,
    /// The §13 v1 payload (decode it with `crate::records::decode`).
    pub payload: Vec<u8>,
}

/// One partition of a Fetch v2 answer: [`super::FetchedPartition`] with records of
/// format v1.
pub type FetchedPartitionV2 = super::FetchedPartition<WireRecordV1>;

/// ProduceBatch v2 request body, after the header.
pub(crate) fn decode_produce_batch_v2(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    let target = decode_target(r)?;
    let flags = r.u8("ProduceBatch flags")?;
    if flags & !PRODUCE_FLAG_PRODUCER != 0 {
        return Err(DecodeError::malformed(format!(
            "ProduceBatch flags {flags:#04x} set bits version 2 does not define (known: \
             {PRODUCE_FLAG_PRODUCER:#04x})"
        )));
    }
    let producer = if flags & PRODUCE_FLAG_PRODUCER != 0 {
        let meta = read_batch_meta(r)
            .map_err(|e| DecodeError::malformed(format!("ProduceBatch producer: {e}")))?;
        Some(meta)
    } else {
        None
    };
    let count = r.count_u32(4, "ProduceBatch count")?;
    if count > MAX_BATCH_RECORDS {
        return Err(DecodeError::malformed(format!(
            "ProduceBatch count {count} exceeds the limit of {MAX_BATCH_RECORDS}"
        )));
    }
    if let Some(meta) = &producer {
        if meta.seq.count() as usize != count {
            return Err(DecodeError::malformed(format!(
                "ProduceBatch producer meta counts {} records, the batch holds {count}",
                meta.seq.count()
            )));
        }
    }
    let mut records = Vec::with_capacity(count);
    for k in 0..count {
        let bytes = r.bytes_u32("ProduceBatch record")?;
        // The leader ends an idempotent batch's first record with the producer
        // batch header (`records::stored`): room for it now saves a copy later.
        let room = match (k, &producer) {
            (0, Some(_)) => crate::records::PRODUCER_HEADER_BYTES,
            _ => 0,
        };
        let mut record = Vec::with_capacity(bytes.len() + room);
        record.extend_from_slice(bytes);
        records.push(record);
    }
    Ok(Request::ProduceBatchV2 {
        target,
        producer,
        records,
    })
}

/// ProduceBatch v2 request body.
pub(crate) fn put_produce_batch_v2(
    out: &mut Vec<u8>,
    target: &TopicPartition,
    producer: Option<&BatchMeta>,
    records: &[Vec<u8>],
) {
    put_target(out, target);
    match producer {
        Some(meta) => {
            put_u8(out, PRODUCE_FLAG_PRODUCER);
            encode_batch_meta(meta, out);
        }
        None => put_u8(out, 0),
    }
    put_u32(out, len_u32(records.len()));
    for record in records {
        put_bytes(out, record);
    }
}

/// Encoded length of a ProduceBatch v2 request body.
pub(crate) fn produce_batch_v2_len(
    target: &TopicPartition,
    producer: Option<&BatchMeta>,
    records: &[Vec<u8>],
) -> usize {
    let meta = producer.map_or(0, |_| BATCH_META_BYTES);
    target_len(target) + 1 + meta + 4 + records.iter().map(|r| 4 + r.len()).sum::<usize>()
}

/// ProduceBatch v2 response body.
pub(crate) fn decode_produce_batch_v2_response(
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    let first_offset = Offset(r.u64("ProduceBatch first_offset")?);
    let count = r.u32("ProduceBatch count")?;
    let duplicate = match r.u8("ProduceBatch duplicate")? {
        0 => false,
        1 => true,
        other => {
            return Err(DecodeError::malformed(format!(
                "ProduceBatch duplicate {other} is not 0 or 1"
            )))
        }
    };
    Ok(ResponseBody::ProduceBatchV2 {
        first_offset,
        count,
        duplicate,
    })
}

/// ProduceBatch v2 response body.
pub(crate) fn put_produce_batch_v2_response(
    out: &mut Vec<u8>,
    first_offset: Offset,
    count: u32,
    duplicate: bool,
) {
    put_u64(out, first_offset.0);
    put_u32(out, count);
    put_u8(out, u8::from(duplicate));
}

/// One `RecordV1`, borrowing its payload.
pub(crate) fn decode_record_v1_ref<'a>(
    r: &mut ByteReader<'a>,
) -> Result<(Offset, &'a [u8]), DecodeError> {
    let offset = Offset(r.u64("record offset")?);
    let payload = r.bytes_u32("record payload")?;
    Ok((offset, payload))
}

/// One `RecordV1`.
pub(crate) fn decode_record_v1(r: &mut ByteReader<'_>) -> Result<WireRecordV1, DecodeError> {
    let (offset, payload) = decode_record_v1_ref(r)?;
    Ok(WireRecordV1 {
        offset,
        payload: payload.to_vec(),
    })
}

/// One `RecordV1`.
pub(crate) fn put_record_v1(out: &mut Vec<u8>, record: &WireRecordV1) {
    put_u64(out, record.offset.0);
    put_bytes(out, &record.payload);
}

/// Fetch v2 request body (the version 1 layout).
pub(crate) fn decode_fetch_v2(r: &mut ByteReader<'_>) -> Result<Request, DecodeError> {
    match super::topics::decode_fetch_partitions(r)? {
        Request::FetchPartitions {
            max_wait_ms,
            max_bytes,
            partitions,
        } => Ok(Request::FetchV2 {
            max_wait_ms,
            max_bytes,
            partitions,
        }),
        // decode_fetch_partitions only makes FetchPartitions.
        _ => Err(DecodeError::malformed("Fetch v2 body".into())),
    }
}

/// Fetch v2 request body (the version 1 layout).
pub(crate) fn put_fetch_v2(
    out: &mut Vec<u8>,
    max_wait_ms: u32,
    max_bytes: u32,
    partitions: &[FetchPartition],
) {
    super::topics::put_fetch_partitions(out, max_wait_ms, max_bytes, partitions)
}

/// Fetch v2 response body.
pub(crate) fn decode_fetched_partitions_v2(
    r: &mut ByteReader<'_>,
) -> Result<ResponseBody, DecodeError> {
    let count = r.count_u32(MIN_FETCHED_PARTITION_BYTES, "Fetch partition count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let target = decode_target(r)?;
        let error = decode_partition_error(r)?;
        let high_watermark = Offset(r.u64("Fetch high_watermark")?);
        let n = r.count_u32(RECORD_V1_HEADER_BYTES, "Fetch record count")?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            records.push(decode_record_v1(r)?);
        }
        partitions.push(FetchedPartitionV2 {
            target,
            error,
            high_watermark,
            records,
        });
    }
    Ok(ResponseBody::FetchV2 { partitions })
}

/// Fetch v2 response body.
pub(crate) fn put_fetched_partitions_v2(out: &mut Vec<u8>, partitions: &[FetchedPartitionV2]) {
    put_u32(out, len_u32(partitions.len()));
    for p in partitions {
        put_target(out, &p.target);
        put_partition_error(out, p.error.as_ref());
        put_u64(out, p.high_watermark.0);
        put_u32(out, len_u32(p.records.len()));
        for record in &p.records {
            put_record_v1(out, record);
        }
    }
}
