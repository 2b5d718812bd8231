//! Records of format v1 in the client (keys, headers, timestamps; wire-spec §13,
//! §14): [`ProducerRecord`] to produce, [`ConsumedRecord`] as read, the key →
//! partition rule ([`choose_partition`]) and the version-2 calls of [`Client`]
//! (`ProduceBatch` / `Consume` / `Fetch` v2). The older calls (bare values) keep
//! working: the server stores their values as v1 records without key or headers.

use std::time::Duration;

use super::{unexpected, Client, ClientError, Result};
use crate::records::{self, RecordHeaderV1, RecordV1, Timestamp, TimestampSource};
use crate::types::Offset;
use crate::wire::{ErrorBody, FetchPartition, Request, ResponseBody, TopicPartition};

/// A record to produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The key (`None`: no key; `Some(vec![])`: an empty key, which is a key).
    pub key: Option<Vec<u8>>,
    /// Headers in order; a name may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    /// ms since the Unix epoch; `None` lets the partition's leader set it.
    pub timestamp_ms: Option<i64>,
    /// The value.
    pub value: Vec<u8>,
}

impl ProducerRecord {
    /// A record of `value` alone.
    pub fn new(value: impl Into<Vec<u8>>) -> ProducerRecord {
        ProducerRecord {
            value: value.into(),
            ..ProducerRecord::default()
        }
    }

    /// With a key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// With the producer's timestamp.
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> ProducerRecord {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// The v1 payload (an unset timestamp is written as -1: the leader sets it).
    /// Fails, writing nothing, when a key or header breaks a limit of §13.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let record = RecordV1 {
            timestamp: Timestamp {
                unix_ms: self.timestamp_ms.unwrap_or(-1),
                source: TimestampSource::Producer,
            },
            key: self.key.clone(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| RecordHeaderV1 {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            value: self.value.clone(),
        };
        let mut out = Vec::with_capacity(record.encoded_len());
        record
            .encode_into(&mut out)
            .map_err(|e| ClientError::Protocol(format!("record not sent: {e}")))?;
        Ok(out)
    }
}

/// A record as read with version 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Its offset.
    pub offset: Offset,
    /// ms since the Unix epoch; -1 when unknown (a record written before v1).
    pub timestamp_ms: i64,
    /// True when the leader set the timestamp on append.
    pub leader_time: bool,
    /// The key, if it has one.
    pub key: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value.
    pub value: Vec<u8>,
}

impl ConsumedRecord {
    /// Decodes the v1 payload the server answered at `offset`.
    pub fn decode(offset: Offset, payload: &[u8]) -> Result<ConsumedRecord> {
        let r = records::decode(payload).map_err(|e| {
            ClientError::Protocol(format!(
                "the record at offset {offset} does not decode: {e}"
            ))
        })?;
        Ok(ConsumedRecord {
            offset,
            timestamp_ms: r.timestamp().unix_ms,
            leader_time: r.timestamp().source == TimestampSource::Leader,
            key: r.key().map(<[u8]>::to_vec),
            headers: r
                .headers()
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            value: r.value().to_vec(),
        })
    }
}

/// One partition of a [`Client::fetch_records`] answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecords {
    /// Which partition (as asked).
    pub target: TopicPartition,
    /// Why it could not be read (`None` on success).
    pub error: Option<ErrorBody>,
    /// Next offset a consumer can read up to, exclusive.
    pub high_watermark: Offset,
    /// The records.
    pub records: Vec<ConsumedRecord>,
}

/// The partition a record goes to among `partitions`: an explicit partition wins;
/// else a keyed record goes where [`records::partition_for_key`] (Kafka's murmur2)
/// sends its key; else `None`: the caller's partitioner picks (round-robin).
pub fn choose_partition(explicit: Option<u32>, key: Option<&[u8]>, partitions: u32) -> Option<u32> {
    explicit.or_else(|| key.map(|k| records::partition_for_key(k, partitions)))
}

/// Splits `records` into batches per partition, keeping each partition's records in
/// their order; `pick` gives a record's partition. Batches come in the order their
/// partition first appears.
pub fn group_by_partition(
    records: &[ProducerRecord],
    mut pick: impl FnMut(&ProducerRecord) -> u32,
) -> Vec<(u32, Vec<&ProducerRecord>)> {
    let mut groups: Vec<(u32, Vec<&ProducerRecord>)> = Vec::new();
    for r in records {
        let p = pick(r);
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, batch)) => batch.push(r),
            None => groups.push((p, vec![r])),
        }
    }
    groups
}

impl Client {
    /// ProduceBatch v2: appends `records` to `target` at contiguous offsets (all or
    /// none); returns the first offset. A record the server refuses fails the whole
    /// batch with `INVALID_RECORD` naming it.
    pub fn produce_records(
        &mut self,
        target: &TopicPartition,
        records: &[&ProducerRecord],
    ) -> Result<Offset> {
        self.produce_batch_v2(target, records, None)
            .map(|p| p.first_offset)
    }

    /// Consume v2: the first record of `target` at an offset ≥ `offset`, with its
    /// key, headers and timestamp.
    pub fn consume_record(
        &mut self,
        target: &TopicPartition,
        offset: Offset,
    ) -> Result<ConsumedRecord> {
        let request = Request::ConsumeV2 {
            target: target.clone(),
            offset,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::ConsumeV2 { record } => {
                ConsumedRecord::decode(record.offset, &record.payload)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Fetch v2: records of several partitions (as [`Client::fetch_partitions`]),
    /// each with its key, headers and timestamp.
    pub fn fetch_records(
        &mut self,
        partitions: &[FetchPartition],
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<Vec<PartitionRecords>> {
        let request = Request::FetchV2 {
            max_wait_ms,
            max_bytes,
            partitions: partitions.to_vec(),
        };
        let extra = Duration::from_millis(u64::from(max_wait_ms));
        let answered = match self.call(request, extra)? {
            ResponseBody::FetchV2 { partitions } => partitions,
            other => return Err(unexpected(&other)),
        };
        answered
            .into_iter()
            .map(|p| {
                let records = p
                    .records
                    .iter()
                    .map(|r| ConsumedRecord::decode(r.offset, &r.payload))
                    .collect::<Result<Vec<_>>>()?;
                Ok(PartitionRecords {
                    target: p.target,
                    error: p.error,
                    high_watermark: p.high_watermark,
                    records,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_partition_wins_then_the_key_then_the_partitioner() {
        assert_eq!(choose_partition(Some(4), Some(b"k"), 6), Some(4));
        let by_key = records::partition_for_key(b"user-1", 6);
        assert_eq!(choose_partition(None, Some(b"user-1"), 6), Some(by_key));
        assert_eq!(choose_partition(None, None, 6), None);
        // An empty key is a key.
        let empty = records::partition_for_key(b"", 6);
        assert_eq!(choose_partition(None, Some(b""), 6), Some(empty));
    }

    #[test]
    fn batches_group_per_partition_in_order() {
        let rs: Vec<ProducerRecord> = (0..6u8).map(|i| ProducerRecord::new(vec![i])).collect();
        let groups = group_by_partition(&rs, |r| u32::from(r.value[0] % 2));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, 0);
        let values: Vec<u8> = groups[0].1.iter().map(|r| r.value[0]).collect();
        assert_eq!(values, [0, 2, 4]);
        let values: Vec<u8> = groups[1].1.iter().map(|r| r.value[0]).collect();
        assert_eq!(values, [1, 3, 5]);
    }

    #[test]
    fn a_record_round_trips_through_its_payload() {
        let r = ProducerRecord::new(b"v".to_vec())
            .with_key(Vec::new())
            .with_header("a", b"1".to_vec())
            .with_header("a", b"2".to_vec())
            .with_timestamp_ms(1_765_000_000_000);
        let back = ConsumedRecord::decode(Offset(7), &r.encode().unwrap()).unwrap();
        assert_eq!(back.offset, Offset(7));
        assert_eq!(back.key, Some(Vec::new()));
        assert_eq!(back.headers, r.headers);
        assert_eq!(back.timestamp_ms, 1_765_000_000_000);
        assert!(!back.leader_time);
        assert_eq!(back.value, b"v");
        let unset = ProducerRecord::new(b"x".to_vec()).encode().unwrap();
        assert_eq!(
            ConsumedRecord::decode(Offset(1), &unset)
                .unwrap()
                .timestamp_ms,
            -1
        );
    }

    #[test]
    fn a_key_over_the_limit_is_refused_before_sending() {
        let r = ProducerRecord::new(b"v".to_vec()).with_key(vec![0; records::MAX_KEY_BYTES + 1]);
        assert!(r.encode().is_err());
    }
}
