//! ListOffsets on a cluster node (wire-spec §17): each partition asked is
//! answered from the local replica of its group, leader or follower, up to that
//! replica's high-water mark (its commit index), so a follower may answer an
//! offset a little behind the leader's, never one that is not committed.
//!
//! earliest = the first readable offset; latest = the high-water mark; a time =
//! the first committed record whose timestamp is at least it (the log's time
//! index, `storage/timeindex.rs`), or the high-water mark when there is none. A
//! partition this node cannot serve gets its own error and does not fail the
//! others. Lookups by time may read the disk, so they run on the read pool.

use std::sync::Arc;

use super::group::GroupState;
use crate::storage::StorageError;
use crate::types::Offset;
use crate::wire::{ErrorBody, ErrorCode, ListedOffset, OffsetSpec, TopicPartition, NO_TIMESTAMP};

/// One partition of a ListOffsets request, routed.
pub(crate) struct Lookup {
    pub target: TopicPartition,
    /// The group serving it here, or the error it is answered with.
    pub group: Result<Arc<GroupState>, ErrorBody>,
    pub spec: OffsetSpec,
}

/// Answers every lookup, in order.
pub(crate) fn answer(lookups: Vec<Lookup>) -> Vec<ListedOffset> {
    lookups.into_iter().map(answer_one).collect()
}

fn answer_one(l: Lookup) -> ListedOffset {
    let listed = |error, offset, timestamp| ListedOffset {
        target: l.target.clone(),
        error,
        offset,
        timestamp,
    };
    let g = match &l.group {
        Ok(g) => g,
        Err(e) => return listed(Some(e.clone()), Offset(0), NO_TIMESTAMP),
    };
    let (first, hw) = (g.first(), g.hw());
    match l.spec {
        OffsetSpec::Earliest => listed(None, first.min(hw), NO_TIMESTAMP),
        OffsetSpec::Latest => listed(None, hw, NO_TIMESTAMP),
        OffsetSpec::Time(ms) => match g.log.offset_for_timestamp(ms, hw) {
            // Below the first readable offset (the Raft log start moved past the
            // log's own start): the first readable offset is the answer's bound.
            Ok(Some((offset, _))) if offset < first => listed(None, first, NO_TIMESTAMP),
            Ok(Some((offset, ts))) => listed(None, offset, ts),
            Ok(None) => listed(None, hw, NO_TIMESTAMP),
            Err(e) => listed(Some(lookup_error(g, &e)), Offset(0), NO_TIMESTAMP),
        },
    }
}

/// The partition error for a failed lookup; damage goes to the healer.
fn lookup_error(g: &GroupState, e: &StorageError) -> ErrorBody {
    let code = match e {
        StorageError::CorruptRecord { offset, .. } => {
            g.damage.report(*offset);
            ErrorCode::CorruptRecord
        }
        _ => ErrorCode::Unavailable,
    };
    ErrorBody::new(code, format!("offset lookup by time failed: {e}"))
}

#[cfg(test)]
mod tests {
    use crate::auth::Action;
    use crate::wire::ApiKey;

    #[test]
    fn list_offsets_needs_consume() {
        assert_eq!(Action::for_api(ApiKey::ListOffsets), Some(Action::Consume));
    }
}
