//! [`GroupState`]: one Raft group's state shared by the node's threads. The raft
//! thread writes it (high-water mark, log start, view); the read pool, the healer and
//! the service read it. A node hosts several groups: the metadata group (the
//! catalogue), and one group per topic partition it replicates.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::heal::DamageReports;
use super::View;
use crate::storage::{Log, Offset};
use crate::types::GroupId;

/// One group's shared state.
pub(crate) struct GroupState {
    pub id: GroupId,
    /// Where its Raft state files and `log/` live.
    pub dir: PathBuf,
    pub log: Arc<Log>,
    /// Exclusive high-water mark: commit index + 1.
    pub hw: AtomicU64,
    /// Raft log start + 1 (reads below it are out of range).
    pub raft_first: AtomicU64,
    pub view: Mutex<View>,
    /// Damaged records found by reads, Raft and the scrubber, for the healer.
    pub damage: Arc<DamageReports>,
    /// Largest record value its topic accepts (the node's own limits apply too).
    pub max_record_bytes: AtomicU64,
}

impl GroupState {
    pub(crate) fn new(
        id: GroupId,
        dir: PathBuf,
        log: Arc<Log>,
        start: Offset,
        view: View,
        damage: Arc<DamageReports>,
    ) -> GroupState {
        GroupState {
            id,
            dir,
            log,
            hw: AtomicU64::new(start.0 + 1),
            raft_first: AtomicU64::new(start.0 + 1),
            view: Mutex::new(view),
            damage,
            max_record_bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// Readers may see offsets below this.
    pub(crate) fn hw(&self) -> Offset {
        Offset(self.hw.load(Ordering::Acquire))
    }

    /// The first readable offset: the log's first, or after the Raft log start.
    pub(crate) fn first(&self) -> Offset {
        Offset(
            self.log
                .first_offset()
                .0
                .max(self.raft_first.load(Ordering::Acquire)),
        )
    }

    /// Largest record value its topic accepts.
    pub(crate) fn max_record_bytes(&self) -> usize {
        usize::try_from(self.max_record_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// A snapshot of the published view.
    pub(crate) fn view(&self) -> View {
        super::lock(&self.view).clone()
    }
}

/// The group holding the `default` topic's partition 0 (v0 requests): the log in the
/// data dir's top level, as before topics existed.
pub(crate) const DEFAULT_GROUP: GroupId = GroupId::DEFAULT_PARTITION;

/// The groups this node hosts, by id (the raft thread adds and removes them).
#[derive(Default)]
pub(crate) struct Groups {
    map: std::sync::RwLock<std::collections::BTreeMap<GroupId, Arc<GroupState>>>,
    /// Bumped on every insert and removal: followers of the set (healer,
    /// scrubber) re-read it only when it changed.
    generation: AtomicU64,
}

impl Groups {
    pub(crate) fn get(&self, id: GroupId) -> Option<Arc<GroupState>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id).cloned()
    }

    pub(crate) fn insert(&self, g: Arc<GroupState>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(g.id, g);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes with every insert and removal.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn remove(&self, id: GroupId) -> Option<Arc<GroupState>> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(&id)
    }

    /// Every hosted group, if the set changed since `seen` (which is updated).
    pub(crate) fn changed_since(&self, seen: &mut Option<u64>) -> Option<Vec<Arc<GroupState>>> {
        let generation = self.generation();
        if *seen == Some(generation) {
            return None;
        }
        *seen = Some(generation);
        Some(self.all())
    }

    /// Every hosted group.
    pub(crate) fn all(&self) -> Vec<Arc<GroupState>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }
}
