//! How a stored record's kind frames its v1 payload (`RecordKind` in `types.rs`):
//!
//! | kind | stored bytes |
//! |---|---|
//! | `DataV1` | the v1 payload |
//! | `DataV1Batch` | the v1 payload, then the producer batch header ([`PRODUCER_HEADER_BYTES`]) |
//! | `CompactedBatchStart` | the producer batch header alone |
//!
//! The header (batch meta and the leader's append time) is the dedup state's
//! (`replica::dedup_log`); readers, the time index and compaction only cut it
//! off. It goes after the payload so the leader adds it in place: the request
//! decoder leaves room for it (`wire::records_v2`), no copy of the record.

use crate::types::RecordKind;

/// Bytes of the producer batch header a `DataV1Batch` record ends with: the
/// batch meta and a u64 append time.
pub const PRODUCER_HEADER_BYTES: usize = crate::replica::dedup::BATCH_META_BYTES + 8;

/// The v1 payload of a stored record of `kind`; `None` for kinds without one (v0
/// `Data`, internal entries) and for a `DataV1Batch` shorter than its header.
pub fn stored_v1_payload(kind: RecordKind, stored: &[u8]) -> Option<&[u8]> {
    match kind {
        RecordKind::DataV1 => Some(stored),
        RecordKind::DataV1Batch => stored.get(..stored.len().checked_sub(PRODUCER_HEADER_BYTES)?),
        _ => None,
    }
}

/// The producer batch header a stored record of `kind` carries: `DataV1Batch`
/// and `CompactedBatchStart` records; `None` for the others and for one too
/// short to hold it.
pub fn stored_batch_header(kind: RecordKind, stored: &[u8]) -> Option<&[u8]> {
    match kind {
        RecordKind::DataV1Batch | RecordKind::CompactedBatchStart => {
            stored.get(stored.len().checked_sub(PRODUCER_HEADER_BYTES)?..)
        }
        _ => None,
    }
}

/// The stored bytes of a `DataV1Batch` record: `payload` then `header` (tests:
/// the leader appends the header in place, `replica::dedup_propose`).
#[cfg(test)]
pub fn batch_start_bytes(payload: &[u8], header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + header.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(header);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_frame_payload_and_header() {
        let header = [7u8; PRODUCER_HEADER_BYTES];
        let stored = batch_start_bytes(b"v1", &header);
        assert_eq!(
            stored_v1_payload(RecordKind::DataV1Batch, &stored),
            Some(&b"v1"[..])
        );
        assert_eq!(
            stored_batch_header(RecordKind::DataV1Batch, &stored),
            Some(&header[..])
        );
        assert_eq!(
            stored_batch_header(RecordKind::CompactedBatchStart, &header),
            Some(&header[..])
        );
        assert_eq!(stored_v1_payload(RecordKind::DataV1, b"p"), Some(&b"p"[..]));
        assert_eq!(stored_v1_payload(RecordKind::Data, b"p"), None);
        assert_eq!(stored_batch_header(RecordKind::DataV1, &stored), None);
        // Too short to hold the header: no payload, no header, no panic.
        assert_eq!(
            stored_v1_payload(RecordKind::DataV1Batch, &header[..5]),
            None
        );
        assert_eq!(
            stored_batch_header(RecordKind::DataV1Batch, &header[..5]),
            None
        );
    }
}
