//! The on-disk decoders as public pure functions over bytes, for fuzz targets and
//! tools: a record, an index slot, and the checkpoint (`checkpoint::decode`). None
//! panics or allocates more than the input it is given.

use super::record::{encode_into, parse_frame, to_record, Frame};
use super::{index, NewRecord, Record};

/// Decodes the record at the start of `buf` (the store holds exactly `buf` from
/// here on): the record and the bytes it occupies, or why the bytes are invalid.
/// `buf` shorter than the record its header announces is invalid (truncated).
pub fn decode_record(buf: &[u8]) -> Result<(Record, usize), &'static str> {
    match parse_frame(buf, buf.len() as u64) {
        Frame::Valid(header) => Ok((to_record(&header, buf), header.total_bytes() as usize)),
        Frame::Short { .. } => Err("record shorter than its header announces"),
        Frame::Invalid { reason, .. } => Err(reason),
    }
}

/// Appends the encoding of `record` at `offset` to `buf` (the value must be
/// shorter than 4 GiB).
pub fn encode_record(buf: &mut Vec<u8>, offset: u64, record: &NewRecord<'_>) {
    encode_into(buf, offset, record);
}

/// Decodes index slot number `slot` from its 8 bytes: the store position it holds.
pub fn decode_index_slot(bytes: &[u8], slot: u64) -> Result<u64, &'static str> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| "an index slot is 8 bytes")?;
    index::decode_slot(u64::from_le_bytes(raw), slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Offset, RecordKind, Term};

    #[test]
    fn record_round_trip_and_truncation() {
        let mut buf = Vec::new();
        let new = NewRecord {
            term: Term(2),
            kind: RecordKind::Data,
            value: b"abc",
        };
        encode_record(&mut buf, 9, &new);
        let (record, used) = decode_record(&buf).unwrap();
        assert_eq!((record.offset, used), (Offset(9), buf.len()));
        for cut in 0..buf.len() {
            assert!(decode_record(&buf[..cut]).is_err());
        }
        assert_eq!(decode_index_slot(&[3, 0, 0, 0, 7, 0, 0, 0], 3), Ok(7));
        assert!(decode_index_slot(&[3, 0, 0], 3).is_err());
    }
}
