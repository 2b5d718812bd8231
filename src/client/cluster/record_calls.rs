//! The record-format-v1 calls of [`ClusterClient`] (keys, headers, timestamps):
//! produce records to a topic (an explicit partition wins, else a keyed record goes
//! to its key's partition, else the round-robin partitioner; one ProduceBatch v2 per
//! partition), and read records with Consume / Fetch v2. Routed and retried as
//! every topic call ([`super::topic_calls`]).

use super::topic_calls::Dest;
use super::*;
use crate::client::records::{
    choose_partition, group_by_partition, ConsumedRecord, PartitionRecords, ProducerRecord,
};
use crate::wire::{FetchPartition, TopicPartition};

/// Where one partition's batch of a [`ClusterClient::produce_records`] landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducedBatch {
    /// The partition.
    pub partition: u32,
    /// Offset of its first record.
    pub first_offset: Offset,
    /// Records appended there.
    pub count: u32,
}

impl ClusterClient {
    /// Produces `records` to `topic`: to `partition` when given, else each keyed
    /// record to its key's partition and each keyless one to the partitioner's
    /// pick. One all-or-none batch per partition, in the order partitions first
    /// appear; an error stops at that partition (batches before it are written).
    pub fn produce_records(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        records: &[ProducerRecord],
    ) -> Result<Vec<ProducedBatch>> {
        let count = match partition {
            Some(_) => 0,
            None => self.partition_count(topic)?,
        };
        // One keyless pick per call: the batch of keyless records stays together.
        let keyless = if partition.is_none() && records.iter().any(|r| r.key.is_none()) {
            self.partitioner.pick(count)
        } else {
            0
        };
        let groups = group_by_partition(records, |r| {
            choose_partition(partition, r.key.as_deref(), count).unwrap_or(keyless)
        });
        let mut produced = Vec::with_capacity(groups.len());
        for (p, batch) in groups {
            let target = TopicPartition::new(topic, p);
            let first_offset = self.produce_records_to(&target, &batch)?;
            produced.push(ProducedBatch {
                partition: p,
                first_offset,
                count: batch.len() as u32,
            });
        }
        Ok(produced)
    }

    /// ProduceBatch v2 of `records` to `target`'s leader; returns the first offset.
    pub fn produce_records_to(
        &mut self,
        target: &TopicPartition,
        records: &[&ProducerRecord],
    ) -> Result<Offset> {
        self.run_dest(Dest::Partition(target, Route::Write), |c| {
            c.produce_records(target, records)
        })
        .map(|(_, o)| o)
    }

    /// Consume v2 of `target` at `offset`, from one of its replicas in turn.
    pub fn consume_record_from(
        &mut self,
        target: &TopicPartition,
        offset: Offset,
    ) -> Result<ConsumedRecord> {
        self.run_dest(Dest::Partition(target, Route::Read), |c| {
            c.consume_record(target, offset)
        })
        .map(|(_, r)| r)
    }

    /// Fetch v2 of one partition from `offset`, from one of its replicas in turn; a
    /// partition error is returned as the call's error (so it is retried as one).
    pub fn fetch_records_from(
        &mut self,
        target: &TopicPartition,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<PartitionRecords> {
        let asked = [FetchPartition {
            target: target.clone(),
            offset,
            max_bytes,
        }];
        self.run_dest(Dest::Partition(target, Route::Read), |c| {
            let answered = c.fetch_records(&asked, max_bytes, max_wait_ms)?;
            match answered.into_iter().find(|p| &p.target == target) {
                Some(PartitionRecords {
                    error: Some(body), ..
                }) => Err(ClientError::from_body(body)),
                Some(p) => Ok(p),
                None => Err(ClientError::Protocol(format!(
                    "the Fetch answer does not mention {}/{}",
                    target.topic, target.partition
                ))),
            }
        })
        .map(|(_, p)| p)
    }
}
