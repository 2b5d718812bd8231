//! The wire protocol: a pure codec (no I/O) for commitlog's binary frames and its
//! inline text protocol. `wire-spec.md` at the repository root is the source of truth
//! for the bytes; this module implements it and a test keeps the spec's examples
//! equal to [`SPEC_EXAMPLES`].
//!
//! # Shape
//!
//! All integers are big-endian. A frame is `u32 length | payload`, `length` counting
//! the payload only and never above [`MAX_FRAME_BYTES_CAP`] (16 MiB − 1), so a binary
//! connection's first byte is always `0x00`. A server picks the protocol from the
//! first byte of a connection ([`Protocol::detect`]): `0x00` binary, `0x16` TLS, an
//! ASCII letter the inline [`text`] protocol.
//!
//! - Request payload: `u16 api_key | u16 api_version | u32 correlation_id | body`.
//! - Response payload: `u32 correlation_id | u16 error_code | body`; the body is the
//!   API's response body when `error_code == 0`, else an [`ErrorBody`].
//! - Version 0 of every API addresses the topic [`DEFAULT_TOPIC`], partition 0 (and
//!   Raft group 1); version 1 names a topic partition or a group
//!   ([`Request::versions`], wire-spec §11).
//!
//! # Files
//!
//! - `frame.rs`: [`frame_len`], [`decode_request`], [`encode_request`],
//!   [`decode_response`], [`encode_response`].
//! - `fetch.rs`: the Fetch fast paths: a streaming, allocation-free encoder
//!   ([`FetchResponseWriter`]), pieces for vectored writes, and a decoder that
//!   borrows record values from the frame ([`decode_fetch_response`]).
//! - `messages.rs`: [`ApiKey`], [`Request`], [`ResponseBody`] and friends.
//! - `groups.rs`: the consumer group (cursor) APIs, keys 13–16 ([`GroupRequest`],
//!   [`GroupResponse`]; wire-spec §16).
//! - `topics.rs`: version 1 (topics, partitions, Raft groups): [`TopicPartition`],
//!   the topic APIs' types and the codecs of every version-1 body.
//! - `records_v2.rs`: version 2 of ProduceBatch, Consume and Fetch (records of
//!   format v1: keys, headers, timestamps; wire-spec §14).
//! - `errors.rs`: [`ErrorCode`], [`ErrorBody`], [`DecodeError`].
//! - `text.rs`: the line protocol (`PING`, `PRODUCE`, `CONSUME`, …).
//! - `examples.rs`: [`SPEC_EXAMPLES`], the byte examples of the spec.
//! - `buf.rs`: bounds-checked reader and big-endian writers.
//!
//! # Invariants
//!
//! - Decoders never panic on any input and allocate at most a small constant times
//!   the frame length: every length and count is checked against the remaining bytes
//!   before anything is allocated.
//! - Encoding is canonical: `encode(decode(frame)) == frame` for every frame that
//!   decodes. `fuzz/` checks both properties; its corpus is replayed by
//!   `tests/fuzz_corpus_replay.rs`.
//! - Encoders only append to the caller's `Vec<u8>` (no per-record allocation on the
//!   Fetch path).

mod buf;
mod errors;
pub(crate) mod examples;
mod fetch;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod list_offsets;
mod messages;
mod records_v2;
pub mod text;
mod topics;

#[cfg(test)]
mod tests;

pub use errors::{offset_out_of_range_message, DecodeError, ErrorBody, ErrorCode, LeaderHint};
pub use examples::{SpecExample, CURSOR_EXAMPLES, SPEC_EXAMPLES, V1_EXAMPLES, V2_EXAMPLES};
pub use fetch::{
    decode_fetch_partitions_response, decode_fetch_response, encode_fetch_response,
    fetch_response_prefix, peek_fetch_max_bytes, record_header, BorrowedRecord, FetchBody,
    FetchPartitionsView, FetchPartitionsWriter, FetchRecords, FetchResponseView,
    FetchResponseWriter, FetchedPartitionView, PartitionRecordsWriter, FETCH_RESPONSE_PREFIX_BYTES,
};
pub use frame::{
    decode_request, decode_response, decode_response_versioned, encode_error_response,
    encode_request, encode_response, frame_len, request_frame_len, LEN_PREFIX_BYTES,
    RECORD_HEADER_BYTES, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES,
};
pub use groups::{
    CommitResult, FetchedCursor, GroupListing, GroupRequest, GroupResponse, OffsetCommit,
    MAX_GROUP_REQUEST_PARTITIONS,
};
pub use list_offsets::{
    ListedOffset, OffsetQuery, OffsetSpec, MAX_LIST_OFFSETS_PARTITIONS, NO_TIMESTAMP,
    SPEC_EARLIEST, SPEC_LATEST,
};
pub use messages::{
    ApiKey, RecordView, Request, RequestFrame, ResponseBody, ResponseFrame, ServerInfo, ServerRole,
    StatusInfo, WireRecord,
};
pub use records_v2::{
    FetchedPartitionV2, WireRecordV1, PRODUCE_FLAG_PRODUCER, RECORD_V1_HEADER_BYTES,
};
pub use topics::{
    FetchPartition, FetchedPartition, GroupMessage, NodeInfo, PartitionInfo, TopicChanges,
    TopicDescription, TopicMetadata, TopicPartition, TopicSettings, DEFAULT_TOPIC,
    MAX_FETCH_PARTITIONS, MAX_METADATA_TOPICS, MAX_RAFT_BATCH_MESSAGES, MAX_TOPIC_NAME_BYTES,
};

/// Hard upper bound on a frame's length field (16 MiB − 1): keeps the first byte of
/// every binary frame at `0x00`, which is how a server tells binary from TLS and text.
pub const MAX_FRAME_BYTES_CAP: u32 = (1 << 24) - 1;

/// Default [`Limits::max_frame_bytes`]: 8 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

/// Most values in one ProduceBatch (more is `RECORD_TOO_LARGE`): a batch is appended
/// in one round of the node's raft thread, so this bounds how long one request can
/// hold up everyone else's produces (a batch of 16,384 empty values took 3.4 ms
/// median, 15 ms at most, on a 2-core machine; BENCHMARKS.md).
pub const MAX_BATCH_RECORDS: usize = 16_384;

/// The well-known client/peer port.
pub const DEFAULT_PORT: u16 = 8400;

/// Decoder limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted length prefix (payload bytes, prefix excluded). Values above
    /// [`MAX_FRAME_BYTES_CAP`] act as the cap.
    pub max_frame_bytes: u32,
}

impl Limits {
    /// The limit actually enforced: `min(max_frame_bytes, MAX_FRAME_BYTES_CAP)`.
    pub fn effective_max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes.min(MAX_FRAME_BYTES_CAP)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// Which protocol a connection speaks, decided by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `0x00`: length-prefixed binary frames.
    Binary,
    /// `0x16`: a TLS handshake record.
    Tls,
    /// An ASCII letter: the inline text protocol.
    Text,
    /// Anything else: the server closes the connection.
    Unknown,
}

impl Protocol {
    /// Classifies a connection by its first byte.
    pub fn detect(first_byte: u8) -> Protocol {
        match first_byte {
            0x00 => Protocol::Binary,
            0x16 => Protocol::Tls,
            b if b.is_ascii_alphabetic() => Protocol::Text,
            _ => Protocol::Unknown,
        }
    }
}
