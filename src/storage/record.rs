//! Record encoding and decoding (the byte layout is documented in the module doc of
//! [`crate::storage`]). Pure functions over byte slices: no I/O.

use crate::types::{Offset, RecordKind, Term};

/// Size of the fixed record header on disk.
pub const RECORD_HEADER_BYTES: usize = 28;

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its offset (Raft index).
    pub offset: Offset,
    /// Its Raft term.
    pub term: Term,
    /// Data, no-op or config.
    pub kind: RecordKind,
    /// The payload.
    pub value: Vec<u8>,
}

/// A record to append; the log assigns its offset.
#[derive(Clone, Copy, Debug)]
pub struct NewRecord<'a> {
    /// Its Raft term.
    pub term: Term,
    /// Data, no-op or config.
    pub kind: RecordKind,
    /// The payload.
    pub value: &'a [u8],
}

/// The decoded fixed header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub value_len: u32,
    pub offset: u64,
    pub term: u64,
    pub kind: RecordKind,
}

impl Header {
    /// Header plus value, in bytes.
    pub fn total_bytes(&self) -> u64 {
        RECORD_HEADER_BYTES as u64 + u64::from(self.value_len)
    }
}

/// Encoded size of a record with a value of `value_len` bytes.
pub(crate) fn encoded_bytes(value_len: usize) -> u64 {
    RECORD_HEADER_BYTES as u64 + value_len as u64
}

/// Appends the encoding of `record` at `offset` to `buf`.
///
/// The caller has checked that `record.value.len()` fits in a `u32`.
pub(crate) fn encode_into(buf: &mut Vec<u8>, offset: u64, record: &NewRecord<'_>) {
    debug_assert!(u32::try_from(record.value.len()).is_ok());
    let start = buf.len();
    let value_len = record.value.len() as u32;
    buf.extend_from_slice(&[0u8; 4]); // crc, filled below
    buf.extend_from_slice(&value_len.to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&record.term.0.to_le_bytes());
    buf.extend_from_slice(&[record.kind as u8, 0, 0, 0]);
    buf.extend_from_slice(record.value);
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Outcome of parsing the bytes at one record position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole, valid record occupies the first `header.total_bytes()` bytes.
    Valid(Header),
    /// `buf` ends before the record does; at least `needed_bytes` are needed.
    Short { needed_bytes: u64 },
    /// The bytes are not a valid record. `value_len` is the length field when the
    /// header was complete (it may itself be the damaged part).
    Invalid {
        reason: &'static str,
        value_len: Option<u32>,
    },
}

/// The little-endian u32 at `at` (the caller checked the length).
pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// The little-endian u64 at `at` (the caller checked the length).
pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Parses the record starting at `buf[0]`. `bytes_left` is how many valid bytes the
/// store holds from this position on (`buf` may hold fewer), so a length field that
/// points past the end of the store is reported as invalid, not as "short".
pub(crate) fn parse_frame(buf: &[u8], bytes_left: u64) -> Frame {
    if bytes_left < RECORD_HEADER_BYTES as u64 {
        return Frame::Invalid {
            reason: "truncated record header",
            value_len: None,
        };
    }
    if buf.len() < RECORD_HEADER_BYTES {
        return Frame::Short {
            needed_bytes: RECORD_HEADER_BYTES as u64,
        };
    }
    let value_len = u32_at(buf, 4);
    let total = RECORD_HEADER_BYTES as u64 + u64::from(value_len);
    if total > bytes_left {
        return Frame::Invalid {
            reason: "record length runs past the end of the store",
            value_len: Some(value_len),
        };
    }
    if (buf.len() as u64) < total {
        return Frame::Short {
            needed_bytes: total,
        };
    }
    let total = total as usize; // <= buf.len()
    let stored_crc = u32_at(buf, 0);
    if crc32c::crc32c(&buf[4..total]) != stored_crc {
        return Frame::Invalid {
            reason: "crc32c mismatch",
            value_len: Some(value_len),
        };
    }
    if buf[25..28] != [0, 0, 0] {
        return Frame::Invalid {
            reason: "reserved header bytes are not zero",
            value_len: Some(value_len),
        };
    }
    let Some(kind) = RecordKind::from_u8(buf[24]) else {
        return Frame::Invalid {
            reason: "unknown record kind",
            value_len: Some(value_len),
        };
    };
    Frame::Valid(Header {
        value_len,
        offset: u64_at(buf, 8),
        term: u64_at(buf, 16),
        kind,
    })
}

/// Builds the owned record from a frame already validated by [`parse_frame`].
pub(crate) fn to_record(header: &Header, frame: &[u8]) -> Record {
    let end = header.total_bytes() as usize;
    Record {
        offset: Offset(header.offset),
        term: Term(header.term),
        kind: header.kind,
        value: frame[RECORD_HEADER_BYTES..end].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(offset: u64, term: u64, kind: RecordKind, value: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(
            &mut buf,
            offset,
            &NewRecord {
                term: Term(term),
                kind,
                value,
            },
        );
        buf
    }

    #[test]
    fn layout_is_as_documented() {
        let buf = encode(0x0102, 7, RecordKind::Config, b"abc");
        assert_eq!(buf.len(), RECORD_HEADER_BYTES + 3);
        assert_eq!(&buf[4..8], &3u32.to_le_bytes());
        assert_eq!(&buf[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&buf[16..24], &7u64.to_le_bytes());
        assert_eq!(buf[24], 2);
        assert_eq!(&buf[25..28], &[0, 0, 0]);
        assert_eq!(&buf[28..], b"abc");
        assert_eq!(&buf[0..4], &crc32c::crc32c(&buf[4..]).to_le_bytes());
    }

    #[test]
    fn round_trip_and_every_flip_detected() {
        let buf = encode(42, 3, RecordKind::Data, b"hello world");
        let Frame::Valid(h) = parse_frame(&buf, buf.len() as u64) else {
            panic!("valid record rejected");
        };
        let rec = to_record(&h, &buf);
        assert_eq!(rec.offset, Offset(42));
        assert_eq!(rec.term, Term(3));
        assert_eq!(rec.value, b"hello world");
        for at in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[at] ^= 1 << bit;
                assert!(
                    !matches!(parse_frame(&bad, bad.len() as u64), Frame::Valid(_)),
                    "flip at byte {at} bit {bit} accepted"
                );
            }
        }
    }

    #[test]
    fn short_and_truncated_inputs() {
        let buf = encode(1, 1, RecordKind::NoOp, &[9u8; 100]);
        for cut in 0..buf.len() {
            // The store holds the whole record, the buffer only a prefix.
            assert!(matches!(
                parse_frame(&buf[..cut], buf.len() as u64),
                Frame::Short { .. }
            ));
            // The store itself ends early: never valid, never a panic.
            assert!(matches!(
                parse_frame(&buf[..cut], cut as u64),
                Frame::Invalid { .. }
            ));
        }
    }

    #[test]
    fn huge_length_field_is_invalid_not_an_allocation() {
        let mut buf = encode(1, 1, RecordKind::Data, b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_frame(&buf, buf.len() as u64),
            Frame::Invalid { .. }
        ));
    }
}
