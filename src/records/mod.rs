//! Record format v1: what a data record of format v1 holds (optional key, ordered
//! headers, a timestamp, the value) and its byte encoding, plus the key hash that
//! picks a partition.
//!
//! This module is a pure, total codec: no I/O, no clock. It encodes and decodes the
//! *payload* of a v1 record, i.e. the bytes a stored record (`storage::record`) or a
//! version-1 wire record carries as its value. The container says which format a
//! payload is in (the stored record's kind, the wire version), so a payload does not
//! need to be told apart from a v0 raw value here, and the codec never guesses. The
//! container also frames the payload (its length) and checksums it (the stored
//! record's crc32c covers the whole payload, key, headers and timestamp included).
//!
//! # Layout (big-endian, as the rest of the project; `wire-spec.md` §13)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | `version` = 1 ([`VERSION`]) |
//! | 1 | `flags`: bit 0 ([`FLAG_LEADER_TIME`]) the leader set the timestamp on append, else the producer did; bit 1 ([`FLAG_KEY`]) a key follows; other bits are 0 |
//! | 8 | `timestamp_ms`: i64, ms since the Unix epoch (two's complement) |
//! | 4 + n | key, only when `FLAG_KEY`: `u32 n`, n bytes (n = 0 is an empty key, distinct from no key) |
//! | 2 | `header_count` |
//! | … | each header: `u16 name_len`, UTF-8 name, `u32 value_len`, value bytes |
//! | rest | the value (the container's length ends it) |
//!
//! # Decisions
//!
//! * **Absent vs empty key.** A flag bit says whether a key is present, so a keyless
//!   record (the common case) spends no bytes on it and an empty key stays a key.
//! * **Headers are an ordered list; duplicate names are allowed**, as in Kafka
//!   (`Headers.add` appends; `lastHeader` reads the newest). Refusing them would make
//!   a record moved over from Kafka lossy. Order is kept byte for byte.
//!   [`HeadersRef::last_value`] gives Kafka's `lastHeader` reading. Names are UTF-8,
//!   may be empty (Kafka allows it), and a value is bytes (no null value: use empty).
//! * **Limits** ([`MAX_KEY_BYTES`], [`MAX_HEADERS`], [`MAX_HEADER_NAME_BYTES`],
//!   [`MAX_HEADER_VALUE_BYTES`]) are checked by both the encoder (which then writes
//!   nothing) and the decoder, with a typed [`LimitError`]. Keys and headers are
//!   routing and tracing metadata, so they are bounded well below the frame size;
//!   the value is bounded only by the container (frame size, segment size).
//! * **Unknown versions and flag bits are refused**, not skipped: a later format
//!   gets a new version byte, and a reader that does not know it must say so.
//! * **The timestamp is any i64**; which timestamps a leader accepts from producers
//!   is the produce path's policy, not the codec's. [`set_leader_timestamp`]
//!   rewrites it in place when a topic says the leader stamps records.
//! * **The value is the rest** of the payload, borrowed on decode (no copy). So a
//!   payload cut inside its value still decodes, with a shorter value: detecting a
//!   cut is the container's job (length prefix + crc32c), as for a v0 value.
//!
//! # Decoder rules
//!
//! [`decode`] never panics and allocates nothing: it borrows the key, header names
//! and values and the value from the input. Every length is checked against its
//! limit and then against the bytes left, and the header count against its limit and
//! against `bytes left / 6` (the smallest header) before anything is read. The
//! encoding is canonical: re-encoding a decoded payload gives back the same bytes
//! (checked by the `record_v1` fuzz target and `tests.rs`).
//!
//! # Partitioning by key
//!
//! [`partition_for_key`] is Kafka's default partitioner for keyed records:
//! `(murmur2(key) & 0x7fff_ffff) % partitions`, with Kafka's murmur2 variant (seed
//! `0x9747b28c`, little-endian 4-byte blocks). Chosen because it is stable
//! (specified by its bytes, the same on every platform and release: never Rust's
//! `Hash`, which may change) and because users moving from Kafka keep their
//! key → partition mapping for the same partition count. See `partition.rs`.

mod codec;
pub mod fuzzing;
mod partition;
mod stored;
#[cfg(test)]
mod tests;

pub use codec::{
    decode, encode_value_only, set_leader_timestamp, stamp_decoded, value_only_prefix, DecodeError,
    HeaderRef, HeadersIter, HeadersRef, LimitError, RecordHeaderV1, RecordV1, RecordV1Ref,
    Timestamp, TimestampSource,
};
pub use partition::{murmur2, partition_for_key};
#[cfg(test)]
pub use stored::batch_start_bytes;
pub use stored::{stored_batch_header, stored_v1_payload, PRODUCER_HEADER_BYTES};

/// The version byte that starts every v1 payload.
pub const VERSION: u8 = 1;

/// Flag bit: the leader set the timestamp when it appended the record (a topic
/// setting); without it the producer set it.
pub const FLAG_LEADER_TIME: u8 = 0x01;

/// Flag bit: the payload holds a key (possibly empty).
pub const FLAG_KEY: u8 = 0x02;

/// Every flag bit version 1 defines; any other bit set is a decode error.
pub const KNOWN_FLAGS: u8 = FLAG_LEADER_TIME | FLAG_KEY;

/// Largest key, in bytes. Keys route records and name them for compaction; 64 KiB
/// is far above any sane key while keeping a per-key index bounded.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Most headers in one record.
pub const MAX_HEADERS: usize = 128;

/// Largest header name, in bytes of UTF-8.
pub const MAX_HEADER_NAME_BYTES: usize = 256;

/// Largest header value, in bytes. Headers carry metadata (trace ids, content
/// types); bulk data belongs in the value.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024 * 1024;

/// Bytes of a payload with no key, no headers and an empty value: version, flags,
/// timestamp, header count.
pub const MIN_PAYLOAD_BYTES: usize = 1 + 1 + 8 + 2;

/// Bytes of the smallest header (empty name, empty value): the two lengths.
pub const MIN_HEADER_BYTES: usize = 2 + 4;
