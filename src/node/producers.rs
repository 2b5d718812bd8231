//! Idempotent producers on the node: InitProducer (a catalogue command on the
//! metadata group, answered once applied with the id and epoch handed out), the
//! wire answers of the dedup refusals, and the wall clock the leader stamps
//! producer batches with.

use super::answer::{self, Refusal};
use super::metadata::Metadata;
use super::raft_loop::ProduceReply;
use super::Shared;
use crate::catalogue::Command;
use crate::replica::{ProduceError, Produced, ProducerRefusal};
use crate::wire::{ErrorCode, ResponseBody};

/// Milliseconds since the Unix epoch (0 if the clock is before it): the append
/// time stored with an idempotent batch, from which producer expiry counts.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Code and message of a batch the partition's dedup state refused (nothing of it
/// was written).
pub(crate) fn refusal(why: ProducerRefusal) -> (ErrorCode, String) {
    match why {
        ProducerRefusal::OutOfOrder { expected_seq } => (
            ErrorCode::OutOfOrderSequence,
            format!(
                "the batch does not start at sequence {expected_seq}, the next one this \
                 partition expects from the producer; nothing was written. Do: re-init the \
                 producer; records sent between may be missing"
            ),
        ),
        ProducerRefusal::Fenced { current_epoch } => (
            ErrorCode::ProducerFenced,
            format!(
                "a newer instance of this producer (epoch {current_epoch}) exists; nothing \
                 was written. Do: stop this instance"
            ),
        ),
        ProducerRefusal::UnknownProducer => (
            ErrorCode::UnknownProducer,
            "this partition does not know the producer (new id not starting at sequence 0, \
             or expired/evicted); nothing was written. Do: re-init the producer; a batch \
             retried across the re-init may be stored twice"
                .into(),
        ),
        ProducerRefusal::DuplicateTooOld => (
            ErrorCode::DuplicateTooOld,
            "a retry of a batch older than the last 5 this partition keeps per producer; it \
             was written long ago and is not written again"
                .into(),
        ),
        ProducerRefusal::CountMismatch { meta, values } => (
            ErrorCode::Malformed,
            format!("the producer batch meta counts {meta} records but the batch has {values}"),
        ),
    }
}

/// The catalogue command of an InitProducer (the name is checked first, so a bad
/// one is refused without a metadata entry).
pub(crate) fn init_command(name: Option<String>) -> Result<Command, Refusal> {
    if let Some(n) = &name {
        crate::catalogue::check_producer_name(n)
            .map_err(|e| Refusal::InvalidConfig(e.to_string()))?;
    }
    Ok(Command::InitProducer { name })
}

/// Answers an InitProducer's proposer once its command is applied: the id and
/// epoch handed out, or why not.
pub(super) fn answer_init(
    metadata: &mut Metadata,
    shared: &Shared,
    to: ProduceReply,
    result: Result<Produced, ProduceError>,
) {
    let index = match &result {
        Ok(p) => p.first.0,
        Err(_) => return answer::produce(to, result, |l| shared.not_leader(l)),
    };
    if let Some(g) = metadata.take_grant(index) {
        return to.reply.ok(ResponseBody::InitProducer {
            producer_id: g.id,
            epoch: g.epoch,
        });
    }
    match metadata.take_outcome(index) {
        Some(Err(e)) => answer::refuse(to.reply, super::topics::refusal(e)),
        _ => to.reply.error(
            ErrorCode::Internal,
            "the InitProducer command was committed but its outcome is not known here; retry",
        ),
    }
}

/// Why a ProduceBatch v2's producer meta does not fit its records, if it does not.
pub(crate) fn count_mismatch(
    meta: Option<&crate::replica::dedup::BatchMeta>,
    records: usize,
) -> Option<String> {
    let meta = meta?;
    (meta.seq.count() as usize != records).then(|| {
        format!(
            "the producer batch meta counts {} records but the batch holds {records}",
            meta.seq.count()
        )
    })
}
