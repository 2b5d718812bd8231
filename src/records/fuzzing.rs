//! The property the `record_v1` fuzz target (`fuzz/fuzz_targets/record_v1.rs`) and
//! the corpus replay test (`tests/fuzz_corpus_replay.rs`) check, so both check the
//! same thing. It panics when the property fails, and for no other reason.

use super::{
    decode, set_leader_timestamp, DecodeError, LimitError, TimestampSource, MAX_HEADERS,
    MAX_KEY_BYTES,
};
use crate::bytes::ReadError;

/// Feeds `data` to [`decode`]. A decoded record re-encodes to exactly `data` (from
/// the borrowed view and from an owned copy), decodes again to the same record,
/// respects the limits, and can be stamped by the leader without changing anything
/// but its time. An error is one that could be true of `data`.
pub fn check_record_v1(data: &[u8]) {
    match decode(data) {
        Ok(record) => {
            assert_eq!(record.encoded_len(), data.len());
            let mut again = Vec::new();
            record.encode_into(&mut again);
            assert_eq!(again, data, "the encoding is not canonical: {record:?}");
            let owned = record.to_record();
            assert_eq!(owned.encoded_len(), data.len());
            let mut from_owned = Vec::new();
            owned.encode_into(&mut from_owned).expect("within limits");
            assert_eq!(from_owned, data, "owned copy encodes differently");
            assert_eq!(decode(&again), Ok(record));
            assert!(record.key().map_or(0, <[u8]>::len) <= MAX_KEY_BYTES);
            assert!(record.headers().len() <= MAX_HEADERS);
            assert_eq!(record.headers().iter().count(), record.headers().len());

            let mut stamped = data.to_vec();
            set_leader_timestamp(&mut stamped, -7).expect("a valid payload stamps");
            let after = decode(&stamped).expect("a stamped payload decodes");
            assert_eq!(after.timestamp().unix_ms, -7);
            assert_eq!(after.timestamp().source, TimestampSource::Leader);
            assert_eq!(
                (after.key(), after.headers().len(), after.value()),
                (record.key(), record.headers().len(), record.value())
            );
        }
        Err(err) => check_error(&err, data),
    }
}

fn check_error(err: &DecodeError, data: &[u8]) {
    assert!(!err.to_string().is_empty());
    match err {
        DecodeError::Read(ReadError::Truncated {
            at, wanted, left, ..
        }) => {
            assert!(wanted > left, "{err:?}");
            assert_eq!(at + left, data.len(), "{err:?}");
        }
        DecodeError::Read(ReadError::CountTooLarge { count, max, .. }) => {
            assert!(*count > *max as u64, "{err:?}")
        }
        DecodeError::Read(ReadError::BadUtf8 { .. }) => {}
        DecodeError::UnknownVersion { version } => assert_eq!(data.first(), Some(version)),
        DecodeError::UnknownFlags { flags } => assert_eq!(data.get(1), Some(flags)),
        DecodeError::Limit(LimitError::KeyTooLarge { key_bytes }) => {
            assert!(*key_bytes > MAX_KEY_BYTES)
        }
        DecodeError::Limit(LimitError::TooManyHeaders { count }) => {
            assert!(*count > MAX_HEADERS)
        }
        DecodeError::Limit(_) => {}
    }
    let mut copy = data.to_vec();
    assert_eq!(set_leader_timestamp(&mut copy, 1).as_ref(), Err(err));
    assert_eq!(copy, data, "a refused payload is left unchanged");
}
