//! Idempotent producers in the client library: InitProducer, ProduceBatch v2 with
//! producer meta, and the per-partition sequences of one producer instance.

use std::collections::HashMap;
use std::time::Duration;

use super::records::ProducerRecord;
use super::{unexpected, Client, Result};
use crate::replica::dedup::{BatchMeta, BatchSeq, ProducerEpoch, ProducerId};
use crate::types::Offset;
use crate::wire::{ErrorCode, Request, ResponseBody, TopicPartition};

/// A producer id and epoch handed out by InitProducer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerGrant {
    /// The producer id (never 0, never reused by the cluster).
    pub producer_id: u64,
    /// Its epoch: a named producer's newer instance fences the older ones.
    pub epoch: u16,
}

impl Client {
    /// Asks the metadata leader for a producer id and epoch. With `name`, a stable
    /// producer: the same name keeps its id at the next epoch, which fences any
    /// older instance still sending (its batches get `PRODUCER_FENCED`).
    pub fn init_producer(&mut self, name: Option<&str>) -> Result<ProducerGrant> {
        let request = Request::InitProducer {
            name: name.map(str::to_string),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::InitProducer { producer_id, epoch } => {
                Ok(ProducerGrant { producer_id, epoch })
            }
            other => Err(unexpected(&other)),
        }
    }
}

/// Where an idempotent batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotentProduced {
    /// Offset of its first record.
    pub first_offset: Offset,
    /// Records in the batch.
    pub count: u32,
    /// True when the batch was a retry of one already written: answered with the
    /// original offsets, nothing appended.
    pub duplicate: bool,
}

impl Client {
    /// ProduceBatch v2 with producer meta: the partition appends the batch once,
    /// however often it is sent with the same `meta` (a retry is answered with the
    /// original offsets and `duplicate`).
    pub fn produce_records_idempotent(
        &mut self,
        target: &TopicPartition,
        records: &[&ProducerRecord],
        meta: BatchMeta,
    ) -> Result<IdempotentProduced> {
        self.produce_batch_v2(target, records, Some(meta))
    }

    /// ProduceBatch v2, with or without producer meta.
    pub(crate) fn produce_batch_v2(
        &mut self,
        target: &TopicPartition,
        records: &[&ProducerRecord],
        producer: Option<BatchMeta>,
    ) -> Result<IdempotentProduced> {
        let payloads = records
            .iter()
            .map(|r| r.encode())
            .collect::<Result<Vec<_>>>()?;
        let request = Request::ProduceBatchV2 {
            target: target.clone(),
            producer,
            records: payloads,
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::ProduceBatchV2 {
                first_offset,
                count,
                duplicate,
            } if count as usize == records.len() => Ok(IdempotentProduced {
                first_offset,
                count,
                duplicate,
            }),
            other => Err(unexpected(&other)),
        }
    }
}

/// The client side of an idempotent producer: its id and epoch (one InitProducer
/// per instance, on its first produce) and the next sequence per partition. A
/// retry resends the same batch with the same sequence, so the partition appends
/// it once.
#[derive(Clone, Debug, Default)]
pub struct ProducerState {
    grant: Option<ProducerGrant>,
    next_seq: HashMap<TopicPartition, u32>,
}

impl ProducerState {
    /// The producer's grant, if it initialised.
    pub fn grant(&self) -> Option<ProducerGrant> {
        self.grant
    }

    /// Sets the grant (after InitProducer): sequences start again at 0.
    pub fn set_grant(&mut self, grant: ProducerGrant) {
        self.grant = Some(grant);
        self.next_seq.clear();
    }

    /// The meta of the next batch of `count` records to `target` (not yet
    /// advanced: [`ProducerState::acknowledged`] does once it is written).
    pub fn next_meta(&self, target: &TopicPartition, count: u32) -> Option<BatchMeta> {
        let grant = self.grant?;
        let first = self.next_seq.get(target).copied().unwrap_or(0);
        Some(BatchMeta {
            producer: ProducerId(grant.producer_id),
            epoch: ProducerEpoch(grant.epoch),
            seq: BatchSeq::new(first, count).ok()?,
        })
    }

    /// The batch `meta` to `target` was written: the next one follows it.
    pub fn acknowledged(&mut self, target: &TopicPartition, meta: &BatchMeta) {
        self.next_seq.insert(target.clone(), meta.seq.next_seq());
    }

    /// Forgets the grant (a refusal that needs a re-init).
    pub fn reset(&mut self) {
        self.grant = None;
        self.next_seq.clear();
    }
}

/// What a dedup refusal means for the records of the refused batch, for the
/// error a producer reports (codes 20-23), or `None` for other codes.
pub fn refusal_advice(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::OutOfOrderSequence => {
            "the partition lost track of this producer's sequence (a batch between may be \
             missing); the producer re-initialises: a batch retried after this may be \
             stored twice"
        }
        ErrorCode::ProducerFenced => {
            "another instance of this named producer started; this one must stop (nothing \
             of the batch was written)"
        }
        ErrorCode::UnknownProducer => {
            "the partition forgot this producer (expired, evicted or restarted over a cut \
             log); the producer re-initialises: if the batch was written before, it may now \
             be stored twice"
        }
        ErrorCode::DuplicateTooOld => {
            "a retry of a batch written long ago; it is not written again"
        }
        _ => return None,
    })
}
