//! What the leader appends for a client's records: every record appended from now
//! on is `RecordKind::DataV1`, its payload in record format v1 (`crate::records`,
//! wire-spec §13). Built on the request path (the event-loop thread, before the
//! `ProduceJob`), never on the raft thread, which only appends what it is handed.
//!
//! * A Produce / ProduceBatch of version 0 or 1 carries bare values: each becomes a
//!   v1 payload with no key, no headers and the leader's time (`FLAG_LEADER_TIME`).
//! * A ProduceBatch v2 carries v1 payloads: each is decoded (a payload that does
//!   not decode, breaks a limit, claims the leader-time flag or has a timestamp
//!   below -1 refuses the whole batch with INVALID_RECORD), then stamped with the
//!   leader's time when the topic takes the leader's time or the producer left the
//!   timestamp unset (-1); otherwise the producer's timestamp is kept byte for byte.
//!
//! Size limits apply to the stored payload (value plus the v1 fields), since that
//! is what a segment and a Raft frame hold.

use crate::records::{self, Timestamp, TimestampSource, FLAG_LEADER_TIME};
use crate::replica::Values;

/// A producer's "no timestamp": the leader sets one.
pub(crate) const UNSET_TIMESTAMP_MS: i64 = -1;

pub(crate) use crate::catalogue::TimestampType;

/// The leader's clock in ms since the Unix epoch (0 for a clock set before it).
pub(crate) fn leader_now_ms() -> i64 {
    i64::try_from(super::producers::wall_clock_ms()).unwrap_or(i64::MAX)
}

/// Version 0/1 produce: every bare value as a v1 payload with the leader's time.
pub(crate) fn wrap_values(values: Values, now_ms: i64) -> Values {
    let stamp = Timestamp {
        unix_ms: now_ms,
        source: TimestampSource::Leader,
    };
    match values {
        Values::One(v) => Values::One(records::encode_value_only(&v, stamp)),
        Values::Many(vs) => Values::Many(
            vs.iter()
                .map(|v| records::encode_value_only(v, stamp))
                .collect(),
        ),
    }
}

/// Why a record of a ProduceBatch v2 was refused (the whole batch is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvalidRecord {
    /// Its position in the batch (0-based).
    pub index: usize,
    /// What is wrong with it.
    pub why: String,
}

impl InvalidRecord {
    /// The message a client sees.
    pub(crate) fn message(&self) -> String {
        format!(
            "record {} of the batch: {}; nothing of the batch was written",
            self.index, self.why
        )
    }
}

/// ProduceBatch v2: checks every payload and stamps the leader's time where the
/// topic's timestamp type says so. On error nothing need be appended (payloads
/// before the bad one may already be stamped; the caller drops the batch).
pub(crate) fn stamp_records(
    payloads: &mut [Vec<u8>],
    ty: TimestampType,
    now_ms: i64,
) -> Result<(), InvalidRecord> {
    for (index, payload) in payloads.iter_mut().enumerate() {
        let bad = |why: String| InvalidRecord { index, why };
        let decoded = records::decode(payload).map_err(|e| bad(e.to_string()))?;
        let ts = decoded.timestamp();
        if payload.get(1).is_some_and(|f| f & FLAG_LEADER_TIME != 0) {
            return Err(bad(
                "the leader-time flag (0x01) is set only by the leader; clear it".into(),
            ));
        }
        if ts.unix_ms < UNSET_TIMESTAMP_MS {
            return Err(bad(format!(
                "timestamp_ms {} is negative: send ms since the Unix epoch, or -1 to let \
                 the leader set it",
                ts.unix_ms
            )));
        }
        // Decoded once, just above: stamped in place without a second decode.
        let stamp = ty == TimestampType::Leader || ts.unix_ms == UNSET_TIMESTAMP_MS;
        if stamp && !records::stamp_decoded(payload, now_ms) {
            return Err(bad("shorter than a record".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{RecordHeaderV1, RecordV1};

    fn payload(unix_ms: i64, key: Option<&[u8]>) -> Vec<u8> {
        let record = RecordV1 {
            timestamp: Timestamp {
                unix_ms,
                source: TimestampSource::Producer,
            },
            key: key.map(<[u8]>::to_vec),
            headers: vec![RecordHeaderV1 {
                name: "trace".into(),
                value: b"abc".to_vec(),
            }],
            value: b"v".to_vec(),
        };
        let mut out = Vec::new();
        record.encode_into(&mut out).unwrap();
        out
    }

    #[test]
    fn bare_values_become_leader_stamped_v1_payloads() {
        let wrapped = wrap_values(Values::Many(vec![b"a".to_vec(), Vec::new()]), 77);
        let Values::Many(ps) = wrapped else {
            panic!("shape changed")
        };
        for (p, value) in ps.iter().zip([&b"a"[..], b""]) {
            let r = records::decode(p).unwrap();
            assert_eq!(r.value(), value);
            assert_eq!(r.key(), None);
            assert!(r.headers().is_empty());
            assert_eq!(r.timestamp().unix_ms, 77);
            assert_eq!(r.timestamp().source, TimestampSource::Leader);
        }
        assert!(matches!(
            wrap_values(Values::One(b"x".to_vec()), 1),
            Values::One(_)
        ));
    }

    #[test]
    fn producer_time_is_kept_and_an_unset_one_gets_the_leaders() {
        let mut ps = vec![payload(1_000, Some(b"k")), payload(-1, None)];
        let kept = ps[0].clone();
        stamp_records(&mut ps, TimestampType::Producer, 5_000).unwrap();
        assert_eq!(ps[0], kept, "a producer's timestamp is kept byte for byte");
        let stamped = records::decode(&ps[1]).unwrap();
        assert_eq!(stamped.timestamp().unix_ms, 5_000);
        assert_eq!(stamped.timestamp().source, TimestampSource::Leader);
        assert_eq!(stamped.value(), b"v");
    }

    #[test]
    fn leader_time_topics_stamp_every_record() {
        let mut ps = vec![payload(1_000, Some(b"k"))];
        stamp_records(&mut ps, TimestampType::Leader, 9).unwrap();
        let r = records::decode(&ps[0]).unwrap();
        assert_eq!(r.timestamp().unix_ms, 9);
        assert_eq!(r.key(), Some(&b"k"[..]));
    }

    #[test]
    fn bad_records_are_refused_with_their_position() {
        let mut flagged = payload(5, None);
        flagged[1] |= FLAG_LEADER_TIME;
        for (bad, says) in [
            (vec![2u8, 0], "version 2"),
            (payload(-2, None), "negative"),
            (flagged, "leader-time flag"),
            (vec![1u8, 0, 0], "malformed"),
        ] {
            let mut ps = vec![payload(1, None), bad];
            let err = stamp_records(&mut ps, TimestampType::Producer, 1).unwrap_err();
            assert_eq!(err.index, 1);
            assert!(err.message().contains(says), "{}", err.message());
        }
    }
}
