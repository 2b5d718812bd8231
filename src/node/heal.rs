//! The healer's runner on a cluster node: collects damaged log ranges (found at open,
//! by the scrubber, by reads, by Raft's own reads), drives the pure
//! [`replica::heal::Healer`](crate::replica::heal::Healer), fetches intact records
//! from peers with the `ReadEntries` peer request and writes them in place
//! (`storage::Log::rebuild_sealed`).

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

use crate::storage::Offset;
use crate::sync::lock;

/// Most damaged offsets waiting to be picked up (more are dropped: the scrubber
/// finds them again).
const MAX_REPORTED_OFFSETS: usize = 4096;

/// Damaged offsets reported by any thread, picked up by the healer thread.
#[derive(Debug, Default)]
pub struct DamageReports {
    offsets: Mutex<BTreeSet<u64>>,
    changed: Condvar,
}

impl DamageReports {
    /// Reports a damaged record (idempotent, bounded, never blocks for long).
    pub fn report(&self, offset: Offset) {
        let mut offsets = lock(&self.offsets);
        if offsets.len() < MAX_REPORTED_OFFSETS && offsets.insert(offset.0) {
            self.changed.notify_all();
        }
    }

    /// Takes every reported offset.
    #[allow(dead_code)] // used by the healer thread (next commit)
    pub(crate) fn take(&self) -> BTreeSet<u64> {
        std::mem::take(&mut *lock(&self.offsets))
    }
}
