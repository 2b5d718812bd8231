//! Fast paths for Fetch, the hot read (target: serving 1 GB/s of record data).
//!
//! Encoding: [`FetchResponseWriter`] streams records into the caller's buffer with no
//! allocation besides growing it, so a server copies values straight from storage;
//! [`encode_fetch_response`] does the same from a slice of any [`RecordView`]; and
//! [`fetch_response_prefix`] + [`record_header`] give the fixed-size pieces for a
//! vectored write that sends values from a memory map without copying them at all.
//!
//! Fetch version 1 (several partitions) has the same kind of streaming encoder,
//! [`FetchPartitionsWriter`]: per partition a [`PartitionRecordsWriter`] appends
//! records straight into the caller's buffer and back-patches the counts.
//!
//! Decoding: [`decode_fetch_response`] validates the whole frame once, then hands
//! out records that borrow their values from the frame ([`BorrowedRecord`]), so a
//! consumer does not allocate per record. It accepts exactly the frames
//! [`super::decode_response`] accepts for [`ApiKey::Fetch`], with the same values.

use crate::bytes::ByteReader;
use crate::types::{Offset, RecordKind, Term};

use super::buf::{begin_frame, end_frame, len_u32, put_u16, put_u32, put_u64};
use super::errors::{DecodeError, ErrorBody};
use super::frame::{
    decode_record_ref, decode_response_header, put_record_header, LEN_PREFIX_BYTES,
    RECORD_HEADER_BYTES, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES,
};
use super::messages::{ApiKey, RecordView, WireRecord};
use super::topics::{
    decode_partition_error, decode_target, put_partition_error, put_target, TopicPartition,
    MIN_FETCHED_PARTITION_BYTES,
};

/// Bytes of a Fetch response up to the first record (prefix, header, hw, count).
pub const FETCH_RESPONSE_PREFIX_BYTES: usize = LEN_PREFIX_BYTES + RESPONSE_HEADER_BYTES + 8 + 4;

/// A record whose value borrows from a buffer (a received frame, a mapped segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BorrowedRecord<'a> {
    /// Its position in the log.
    pub offset: Offset,
    /// The Raft term it was written in.
    pub term: Term,
    /// Its kind.
    pub kind: RecordKind,
    /// The value.
    pub value: &'a [u8],
}

impl BorrowedRecord<'_> {
    /// Copies the value into an owned [`WireRecord`].
    pub fn to_owned(&self) -> WireRecord {
        WireRecord {
            offset: self.offset,
            term: self.term,
            kind: self.kind,
            value: self.value.to_vec(),
        }
    }
}

impl RecordView for BorrowedRecord<'_> {
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
        self.value
    }
}

/// The records of a validated Fetch response, in order.
#[derive(Clone, Debug)]
pub struct FetchRecords<'a> {
    /// The record bytes, already validated by [`decode_fetch_response`].
    buf: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for FetchRecords<'a> {
    type Item = BorrowedRecord<'a>;

    fn next(&mut self) -> Option<BorrowedRecord<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut r = ByteReader::new(self.buf);
        // Validated up front, so this cannot fail; stop rather than panic if it did.
        let record = decode_record_ref(&mut r).ok()?;
        self.buf = r.rest();
        self.remaining -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for FetchRecords<'_> {}

/// A successful Fetch response, borrowing from the frame.
#[derive(Clone, Debug)]
pub struct FetchBody<'a> {
    /// Next offset a consumer can read up to, exclusive.
    pub high_watermark: Offset,
    /// The records.
    pub records: FetchRecords<'a>,
}

/// A Fetch response frame, borrowing from the frame.
#[derive(Clone, Debug)]
pub struct FetchResponseView<'a> {
    /// Copied from the request.
    pub correlation_id: u32,
    /// The body, or the error.
    pub result: Result<FetchBody<'a>, ErrorBody>,
}

/// Decodes one whole Fetch response frame without copying record values.
pub fn decode_fetch_response(frame: &[u8]) -> Result<FetchResponseView<'_>, DecodeError> {
    let (mut r, correlation_id, error) = decode_response_header(frame)?;
    if let Some(body) = error {
        return Ok(FetchResponseView {
            correlation_id,
            result: Err(body),
        });
    }
    let (high_watermark, count, records) =
        validate_fetch_body(&mut r).map_err(|e| e.in_frame(correlation_id))?;
    Ok(FetchResponseView {
        correlation_id,
        result: Ok(FetchBody {
            high_watermark,
            records: FetchRecords {
                buf: records,
                // `count` fits: it was read from a u32.
                remaining: count as u32,
            },
        }),
    })
}

/// Checks a Fetch body (`high_watermark | count | records`) once, so the records can
/// later be handed out without checks. Returns the high watermark, the record count and
/// the record bytes.
fn validate_fetch_body<'a>(
    r: &mut ByteReader<'a>,
) -> Result<(Offset, usize, &'a [u8]), DecodeError> {
    let body = validate_records(r)?;
    r.finish("Fetch")?;
    Ok(body)
}

/// [`validate_fetch_body`] without the end-of-frame check: the body of one partition
/// of a Fetch v1 answer, which others may follow.
fn validate_records<'a>(r: &mut ByteReader<'a>) -> Result<(Offset, usize, &'a [u8]), DecodeError> {
    let high_watermark = Offset(r.u64("Fetch high_watermark")?);
    let count = r.count_u32(RECORD_HEADER_BYTES, "Fetch record count")?;
    let mut start = r.clone();
    for _ in 0..count {
        decode_record_ref(r)?;
    }
    let records = start.take(start.remaining() - r.remaining(), "Fetch records")?;
    Ok((high_watermark, count, records))
}

/// One partition of a Fetch version-1 answer, its records borrowed from the frame.
#[derive(Clone, Debug)]
pub struct FetchedPartitionView<'a> {
    /// Which partition (as asked).
    pub target: TopicPartition,
    /// Its records, or why it could not be read (its records, normally none, are
    /// then not handed out).
    pub result: Result<FetchBody<'a>, ErrorBody>,
}

/// A Fetch version-1 response frame, borrowing from the frame.
#[derive(Clone, Debug)]
pub struct FetchPartitionsView<'a> {
    /// Copied from the request.
    pub correlation_id: u32,
    /// One entry per partition asked, in the order asked; or the error of the whole
    /// request.
    pub result: Result<Vec<FetchedPartitionView<'a>>, ErrorBody>,
}

/// Decodes one whole Fetch version-1 response frame without copying record values
/// (as [`decode_fetch_response`] does for version 0). It accepts exactly the frames
/// [`super::decode_response_versioned`] accepts for [`ApiKey::Fetch`] version 1; the
/// partition list is bounded by the frame (each entry takes at least 20 bytes).
pub fn decode_fetch_partitions_response(
    frame: &[u8],
) -> Result<FetchPartitionsView<'_>, DecodeError> {
    let (mut r, correlation_id, error) = decode_response_header(frame)?;
    if let Some(body) = error {
        return Ok(FetchPartitionsView {
            correlation_id,
            result: Err(body),
        });
    }
    let partitions = validate_partitions(&mut r).map_err(|e| e.in_frame(correlation_id))?;
    Ok(FetchPartitionsView {
        correlation_id,
        result: Ok(partitions),
    })
}

/// The partitions of a Fetch v1 body, each validated once.
fn validate_partitions<'a>(
    r: &mut ByteReader<'a>,
) -> Result<Vec<FetchedPartitionView<'a>>, DecodeError> {
    let count = r.count_u32(MIN_FETCHED_PARTITION_BYTES, "Fetch partition count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let target = decode_target(r)?;
        let error = decode_partition_error(r)?;
        let (high_watermark, count, records) = validate_records(r)?;
        let result = match error {
            Some(body) => Err(body),
            None => Ok(FetchBody {
                high_watermark,
                records: FetchRecords {
                    buf: records,
                    // `count` fits: it was read from a u32.
                    remaining: count as u32,
                },
            }),
        };
        partitions.push(FetchedPartitionView { target, result });
    }
    r.finish("Fetch")?;
    Ok(partitions)
}

/// Fast path for the hot read: appends a Fetch response whose records are borrowed
/// ([`RecordView`]), with no allocation besides growing `out`.
pub fn encode_fetch_response<R: RecordView>(
    correlation_id: u32,
    high_watermark: Offset,
    records: &[R],
    out: &mut Vec<u8>,
) {
    let record_bytes: usize = records
        .iter()
        .map(|r| RECORD_HEADER_BYTES + r.value().len())
        .sum();
    out.reserve(FETCH_RESPONSE_PREFIX_BYTES + record_bytes);
    let mut writer = FetchResponseWriter::begin(out, correlation_id, high_watermark);
    for record in records {
        writer.push(
            record.offset(),
            record.term(),
            record.kind(),
            record.value(),
        );
    }
    writer.finish();
}

/// Streams a Fetch response into a buffer record by record, so a server can copy
/// values straight from storage and stop at `max_bytes`. The count and the length
/// prefix are back-patched by [`FetchResponseWriter::finish`] (or on drop).
pub struct FetchResponseWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u32,
}

impl<'a> FetchResponseWriter<'a> {
    /// Writes the frame header; records follow with [`FetchResponseWriter::push`].
    pub fn begin(out: &'a mut Vec<u8>, correlation_id: u32, high_watermark: Offset) -> Self {
        let start = begin_frame(out);
        put_u32(out, correlation_id);
        put_u16(out, 0);
        put_u64(out, high_watermark.0);
        put_u32(out, 0); // count, patched at the end
        FetchResponseWriter {
            out,
            start,
            count: 0,
        }
    }

    /// Appends one record.
    ///
    /// # Panics
    /// After `u32::MAX` records or a value over 4 GiB (both far beyond any frame).
    pub fn push(&mut self, offset: Offset, term: Term, kind: RecordKind, value: &[u8]) {
        self.count = self.count.checked_add(1).unwrap_or_else(|| {
            panic!("more than u32::MAX records in one Fetch response");
        });
        put_record_header(self.out, offset, term, kind, len_u32(value.len()));
        self.out.extend_from_slice(value);
    }

    /// Records pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Frame bytes written so far (prefix included): compare with `max_bytes` and
    /// the frame limit before pushing more.
    pub fn frame_bytes(&self) -> usize {
        self.out.len() - self.start
    }

    /// Patches the count and length prefix.
    pub fn finish(self) {
        // Drop does the work.
    }
}

impl Drop for FetchResponseWriter<'_> {
    fn drop(&mut self) {
        let count_at = self.start + FETCH_RESPONSE_PREFIX_BYTES - 4;
        self.out[count_at..count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        end_frame(self.out, self.start);
    }
}

/// The bytes of a Fetch response before its first record, for vectored writes
/// (`prefix`, then per record [`record_header`] and the value slice).
/// `records_bytes` is the total of `RECORD_HEADER_BYTES + value.len()` over records.
///
/// # Panics
/// If the frame would exceed 4 GiB.
pub fn fetch_response_prefix(
    correlation_id: u32,
    high_watermark: Offset,
    count: u32,
    records_bytes: usize,
) -> [u8; FETCH_RESPONSE_PREFIX_BYTES] {
    let len = len_u32(FETCH_RESPONSE_PREFIX_BYTES - LEN_PREFIX_BYTES + records_bytes);
    let mut out = [0u8; FETCH_RESPONSE_PREFIX_BYTES];
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out[4..8].copy_from_slice(&correlation_id.to_be_bytes());
    // error_code 0 at 8..10
    out[10..18].copy_from_slice(&high_watermark.0.to_be_bytes());
    out[18..22].copy_from_slice(&count.to_be_bytes());
    out
}

/// A record's bytes before its value (`offset, term, kind, value_len`).
pub fn record_header(
    offset: Offset,
    term: Term,
    kind: RecordKind,
    value_len: u32,
) -> [u8; RECORD_HEADER_BYTES] {
    let mut out = [0u8; RECORD_HEADER_BYTES];
    out[0..8].copy_from_slice(&offset.0.to_be_bytes());
    out[8..16].copy_from_slice(&term.0.to_be_bytes());
    out[16] = kind as u8;
    out[17..21].copy_from_slice(&value_len.to_be_bytes());
    out
}

/// Streams a Fetch version-1 response (several partitions) into a buffer, with no
/// allocation besides growing it: `begin`, then per partition
/// [`FetchPartitionsWriter::partition`] and that partition's records. The counts and
/// the length prefix are back-patched when each writer finishes (or drops).
pub struct FetchPartitionsWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u32,
}

/// Where the partition count sits: after the prefix and the response header.
const PARTITION_COUNT_AT: usize = LEN_PREFIX_BYTES + RESPONSE_HEADER_BYTES;

impl<'a> FetchPartitionsWriter<'a> {
    /// Writes the frame header; partitions follow.
    pub fn begin(out: &'a mut Vec<u8>, correlation_id: u32) -> Self {
        let start = begin_frame(out);
        put_u32(out, correlation_id);
        put_u16(out, 0);
        put_u32(out, 0); // partition count, patched at the end
        FetchPartitionsWriter {
            out,
            start,
            count: 0,
        }
    }

    /// Starts the next partition's entry: its target, its error (`None` on success;
    /// a `NOT_LEADER` carries its hint) and high-water mark. Its records follow
    /// through the returned writer (none for an error, normally).
    ///
    /// # Panics
    /// After `u32::MAX` partitions (far beyond any frame).
    pub fn partition(
        &mut self,
        target: &TopicPartition,
        error: Option<&ErrorBody>,
        high_watermark: Offset,
    ) -> PartitionRecordsWriter<'_> {
        self.count = self.count.checked_add(1).unwrap_or_else(|| {
            panic!("more than u32::MAX partitions in one Fetch response");
        });
        put_target(self.out, target);
        put_partition_error(self.out, error);
        put_u64(self.out, high_watermark.0);
        let count_at = self.out.len();
        put_u32(self.out, 0); // record count, patched by the partition writer
        PartitionRecordsWriter {
            out: self.out,
            frame_start: self.start,
            count_at,
            count: 0,
        }
    }

    /// Partitions started so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Frame bytes written so far (prefix included).
    pub fn frame_bytes(&self) -> usize {
        self.out.len() - self.start
    }

    /// Patches the partition count and the length prefix.
    pub fn finish(self) {
        // Drop does the work.
    }
}

impl Drop for FetchPartitionsWriter<'_> {
    fn drop(&mut self) {
        let at = self.start + PARTITION_COUNT_AT;
        self.out[at..at + 4].copy_from_slice(&self.count.to_be_bytes());
        end_frame(self.out, self.start);
    }
}

/// The records of one partition in a [`FetchPartitionsWriter`]; its record count is
/// patched when it finishes (or drops).
pub struct PartitionRecordsWriter<'w> {
    out: &'w mut Vec<u8>,
    frame_start: usize,
    count_at: usize,
    count: u32,
}

impl PartitionRecordsWriter<'_> {
    /// Appends one record.
    ///
    /// # Panics
    /// After `u32::MAX` records or a value over 4 GiB (both far beyond any frame).
    pub fn push(&mut self, offset: Offset, term: Term, kind: RecordKind, value: &[u8]) {
        self.count = self.count.checked_add(1).unwrap_or_else(|| {
            panic!("more than u32::MAX records in one Fetch partition");
        });
        put_record_header(self.out, offset, term, kind, len_u32(value.len()));
        self.out.extend_from_slice(value);
    }

    /// Records pushed to this partition so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the whole frame so far (prefix included): compare with the
    /// request's `max_bytes` and the frame limit before pushing more.
    pub fn frame_bytes(&self) -> usize {
        self.out.len() - self.frame_start
    }

    /// Patches this partition's record count.
    pub fn finish(self) {
        // Drop does the work.
    }
}

impl Drop for PartitionRecordsWriter<'_> {
    fn drop(&mut self) {
        let at = self.count_at;
        self.out[at..at + 4].copy_from_slice(&self.count.to_be_bytes());
    }
}

/// A Fetch request frame's `max_bytes` (the whole answer's soft cap), read in place
/// without decoding, for sizing the answer's buffer before the request runs:
/// version 0 `len | api | version | id | u64 offset | u32 max_bytes`, versions 1
/// and 2 `len | api | version | id | u32 max_wait_ms | u32 max_bytes | …`. `None` for
/// another API, an unknown version, or a frame too short (which the decoder
/// refuses anyway).
pub fn peek_fetch_max_bytes(frame: &[u8]) -> Option<u32> {
    let header: [u8; 4] = frame.get(4..8)?.try_into().ok()?;
    if u16::from_be_bytes([header[0], header[1]]) != ApiKey::Fetch.as_u16() {
        return None;
    }
    let at = match u16::from_be_bytes([header[2], header[3]]) {
        0 => LEN_PREFIX_BYTES + REQUEST_HEADER_BYTES + 8,
        // Version 2 keeps the version-1 request layout.
        1 | 2 => LEN_PREFIX_BYTES + REQUEST_HEADER_BYTES + 4,
        _ => return None,
    };
    let max: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(max))
}
