//! How a consumer read presents one stored data record, by the version asked:
//!
//! * Consume / Fetch versions 0 and 1 and the text protocol get the **value only**
//!   (wire kind `Data`): a `DataV1` record's value is a sub-slice of its payload, a
//!   v0 (`Data`) record's payload is its value. Old clients keep working unchanged.
//! * Consume / Fetch version 2 get the **v1 payload** (`RecordV1`): a `DataV1`
//!   record's payload as stored (a `DataV1Batch` record's without the producer
//!   batch header it ends with, `records::stored_v1_payload`); a v0 record converted to one with no key, no
//!   headers, flags 0 and `timestamp_ms = -1` (unknown), its value not copied.
//!
//! A stored `DataV1` payload passed its crc32c, so one that does not decode is a
//! bug (of the writer or of this reader), never a disk fault: the read answers
//! `INTERNAL` naming the offset ([`BadPayload`]); nothing panics. ReadEntries (a
//! peer healing its copy) does not come here: it stays raw.

use crate::records::{self, Timestamp, TimestampSource, MIN_PAYLOAD_BYTES};
use crate::types::{Offset, RecordKind};
use crate::wire;

/// How a read presents records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadFormat {
    /// Versions 0 and 1, text: the value only.
    Value,
    /// Version 2: the whole v1 payload.
    V1,
}

impl ReadFormat {
    /// Bytes a record takes on the wire besides what [`Served::len`] counts.
    pub(crate) fn header_bytes(self) -> u64 {
        match self {
            ReadFormat::Value => wire::RECORD_HEADER_BYTES as u64,
            ReadFormat::V1 => wire::RECORD_V1_HEADER_BYTES as u64,
        }
    }
}

/// One stored data record as a read answers it, borrowing the stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served<'a> {
    /// A value (versions 0/1) or a stored v1 payload (version 2).
    Slice(&'a [u8]),
    /// A v0 record presented as v1: this prefix, then the stored value.
    Converted {
        prefix: [u8; MIN_PAYLOAD_BYTES],
        value: &'a [u8],
    },
}

impl Served<'_> {
    /// Bytes of the served value or payload.
    pub(crate) fn len(&self) -> usize {
        match self {
            Served::Slice(s) => s.len(),
            Served::Converted { prefix, value } => prefix.len() + value.len(),
        }
    }

    /// Appends the served bytes to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Served::Slice(s) => out.extend_from_slice(s),
            Served::Converted { prefix, value } => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(value);
            }
        }
    }

    /// An owned copy.
    pub(crate) fn to_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }

    /// The value-only slice (what [`ReadFormat::Value`] serves).
    pub(crate) fn as_value(&self) -> &[u8] {
        match self {
            Served::Slice(s) => s,
            Served::Converted { value, .. } => value,
        }
    }
}

/// A stored `DataV1` payload that does not decode: a bug, answered `INTERNAL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadPayload {
    /// The record's offset.
    pub offset: Offset,
    /// Why it does not decode.
    pub error: records::DecodeError,
}

impl BadPayload {
    /// The message a client sees (and the server logs).
    pub(crate) fn message(&self) -> String {
        format!(
            "the record at offset {} passed its checksum but its v1 payload does not \
             decode ({}); this is a server bug: report it, and read past the offset",
            self.offset, self.error
        )
    }
}

/// The timestamp a v0 record is presented with: unknown.
const V0_TIMESTAMP: Timestamp = Timestamp {
    unix_ms: -1,
    source: TimestampSource::Producer,
};

/// How a read of `format` presents the data record `(offset, kind, payload)`.
/// Internal kinds are the caller's to skip; one reaching here is served as stored.
pub(crate) fn serve(
    format: ReadFormat,
    offset: Offset,
    kind: RecordKind,
    payload: &[u8],
) -> Result<Served<'_>, BadPayload> {
    match (kind, format) {
        (RecordKind::DataV1 | RecordKind::DataV1Batch, format) => {
            // A batch start shorter than its header does not decode (cut short).
            let payload = records::stored_v1_payload(kind, payload).unwrap_or_default();
            let record = records::decode(payload).map_err(|error| BadPayload { offset, error })?;
            Ok(Served::Slice(match format {
                ReadFormat::Value => record.value(),
                ReadFormat::V1 => payload,
            }))
        }
        (RecordKind::Data, ReadFormat::V1) => Ok(Served::Converted {
            prefix: records::value_only_prefix(V0_TIMESTAMP),
            value: payload,
        }),
        _ => Ok(Served::Slice(payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{RecordHeaderV1, RecordV1};

    fn v1_payload() -> Vec<u8> {
        let record = RecordV1 {
            timestamp: Timestamp {
                unix_ms: 1_765_000_000_000,
                source: TimestampSource::Producer,
            },
            key: Some(b"user-1".to_vec()),
            headers: vec![RecordHeaderV1 {
                name: "h".into(),
                value: b"1".to_vec(),
            }],
            value: b"hello".to_vec(),
        };
        let mut out = Vec::new();
        record.encode_into(&mut out).unwrap();
        out
    }

    #[test]
    fn old_versions_see_only_the_value_of_a_v1_record() {
        let p = v1_payload();
        let s = serve(ReadFormat::Value, Offset(3), RecordKind::DataV1, &p).unwrap();
        assert_eq!(s.as_value(), b"hello");
        assert_eq!(s.len(), 5);
        assert_eq!(s.to_vec(), b"hello");
        // The value is a sub-slice of the stored payload (no copy).
        let Served::Slice(v) = s else {
            panic!("copied")
        };
        assert_eq!(v.as_ptr(), p[p.len() - 5..].as_ptr());
    }

    #[test]
    fn version_2_sees_the_payload_and_v0_records_converted() {
        let p = v1_payload();
        let s = serve(ReadFormat::V1, Offset(3), RecordKind::DataV1, &p).unwrap();
        assert_eq!(s.to_vec(), p);
        let v0 = serve(ReadFormat::V1, Offset(4), RecordKind::Data, b"old").unwrap();
        let bytes = v0.to_vec();
        assert_eq!(v0.len(), bytes.len());
        let r = records::decode(&bytes).unwrap();
        assert_eq!(r.value(), b"old");
        assert_eq!(r.timestamp(), V0_TIMESTAMP);
        assert_eq!(r.key(), None);
        assert!(r.headers().is_empty());
        assert_eq!(bytes[1], 0, "flags 0");
        let same = serve(ReadFormat::Value, Offset(4), RecordKind::Data, b"old").unwrap();
        assert_eq!(same, Served::Slice(b"old"));
    }

    #[test]
    fn a_batch_start_is_served_without_its_producer_header() {
        let p = v1_payload();
        let stored = records::batch_start_bytes(&p, &[9; records::PRODUCER_HEADER_BYTES]);
        let v1 = serve(ReadFormat::V1, Offset(3), RecordKind::DataV1Batch, &stored).unwrap();
        assert_eq!(v1.to_vec(), p);
        let value = serve(
            ReadFormat::Value,
            Offset(3),
            RecordKind::DataV1Batch,
            &stored,
        );
        assert_eq!(value.unwrap().as_value(), b"hello");
        let short = serve(ReadFormat::V1, Offset(5), RecordKind::DataV1Batch, &[9; 4]);
        assert_eq!(short.unwrap_err().offset, Offset(5));
    }

    #[test]
    fn a_payload_that_does_not_decode_names_its_offset() {
        for format in [ReadFormat::Value, ReadFormat::V1] {
            let e = serve(format, Offset(9), RecordKind::DataV1, &[7, 0]).unwrap_err();
            assert_eq!(e.offset, Offset(9));
            assert!(e.message().contains("offset 9"), "{}", e.message());
        }
    }
}
