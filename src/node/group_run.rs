//! [`GroupRun`]: one Raft group on the raft thread: its [`Driver`], the shared state
//! it publishes ([`GroupState`]), and what the runner keeps per group (the durable
//! recovering marker, a full disk, retention timing). The raft thread
//! (`raft_loop`) owns every group's `GroupRun` and executes their effects.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::answer::{self, Refusal};
use super::group::GroupState;
use super::raft_loop::{Fatal, ProduceReply};
use super::raft_storage::{LogStorage, WriteError};
use super::{lock, Shared};
use crate::raft::{Config as RaftConfig, Index, RaftNode, Role};
use crate::replica::{Driver, DriverConfig, DriverError, Effect};

/// One group as the raft thread runs it.
pub(crate) struct GroupRun {
    pub driver: Driver<LogStorage, ProduceReply>,
    pub state: Arc<GroupState>,
    /// Its membership follows the metadata group's voters (gossip policy): the
    /// metadata group itself and partitions replicated on every voter.
    pub follows_voters: bool,
    /// What rebuilds the driver after a full disk: Raft settings, driver settings
    /// and a seed source.
    rebuild: (RaftConfig, DriverConfig, u64),
    /// Set while the disk is full: when the last write was tried.
    pub disk_full: Option<Instant>,
    /// The durable recovering marker exists (removed once the guard lifts).
    recovering_marked: bool,
    last_retention: Instant,
}

impl GroupRun {
    pub(crate) fn new(
        driver: Driver<LogStorage, ProduceReply>,
        state: Arc<GroupState>,
        follows_voters: bool,
        rebuild: (RaftConfig, DriverConfig, u64),
    ) -> GroupRun {
        GroupRun {
            recovering_marked: driver.recovering(),
            driver,
            state,
            follows_voters,
            rebuild,
            disk_full: None,
            last_retention: Instant::now(),
        }
    }

    /// Once the recovery guard lifts, its durable marker goes (see `meta`).
    pub(crate) fn clear_recovering_marker(&mut self) {
        if !self.recovering_marked || self.driver.recovering() {
            return;
        }
        match super::meta::remove_recovering_marker(&self.state.dir) {
            Ok(()) => self.recovering_marked = false,
            Err(e) => log::warn!(
                "group {}: cannot remove the recovering marker (retrying): {e}",
                self.state.id
            ),
        }
    }

    /// ENOSPC: answer what waits, make what was appended durable, and rebuild the
    /// driver from the durable state (as a restart would). Returns the effects the
    /// abandoned driver left (sends, high-water marks) for the runner to execute.
    pub(crate) fn enter_disk_full(
        &mut self,
        why: &str,
    ) -> Result<Vec<Effect<ProduceReply>>, Fatal> {
        if self.disk_full.is_none() {
            log::warn!(
                "group {}: disk full ({why}): produces get STORAGE_FULL until space frees; \
                 writes are retried with each produce and every second",
                self.state.id
            );
        }
        self.disk_full = Some(Instant::now());
        let (pending, effects) = self.driver.abandon();
        for reply in pending {
            answer::refuse(reply.reply, storage_full());
        }
        // Whatever was appended is made durable, then read back as after a restart.
        let log = Arc::clone(self.driver.raft().storage().log());
        log.sync().map_err(WriteError::from)?;
        let start = self.driver.raft().log_start().clone();
        let mut storage = LogStorage::open(&self.state.dir, log, start)?;
        storage.report_damage_to(Arc::clone(&self.state.damage));
        let (raft_cfg, driver_cfg, seed) = self.rebuild.clone();
        self.rebuild.2 = seed.wrapping_add(1);
        let node = RaftNode::new(raft_cfg, storage, seed).map_err(DriverError::from)?;
        self.driver = Driver::new(node, driver_cfg, None);
        Ok(effects)
    }

    /// True when a write should be tried again: a produce waits or a second passed.
    pub(crate) fn disk_retry_due(&self, produce_waits: bool) -> bool {
        produce_waits
            || self
                .disk_full
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
    }

    /// Retention reads segment times (I/O, here); the driver decides how far to cut.
    pub(crate) fn apply_retention(&mut self, interval: Duration) -> Result<(), Fatal> {
        if self.last_retention.elapsed() < interval {
            return Ok(());
        }
        self.last_retention = Instant::now();
        let log = Arc::clone(self.driver.raft().storage().log());
        if log.retention() == (None, None) {
            return Ok(());
        }
        match log.retention_point(SystemTime::now()) {
            Ok(point) => Ok(self.driver.compact_to(Index(point.0))?),
            Err(e) => {
                log::error!("group {} retention: {e}", self.state.id);
                Ok(())
            }
        }
    }

    /// An idle group (quiesced, disk not full) closes its log's files until it
    /// writes again (reads use short-lived descriptors meanwhile): thousands of
    /// idle partitions then hold no descriptors. Called once a second; cheap for
    /// a log that holds nothing.
    pub(crate) fn release_idle_files(&self) {
        if !self.driver.is_quiesced() || self.disk_full.is_some() {
            return;
        }
        if let Err(e) = self.state.log.release_idle_files() {
            log::error!("group {}: cannot close its idle files: {e}", self.state.id);
        }
    }

    /// Readers may see offsets below `hw` now. Status shows it before any produce
    /// it covers is answered (a client that saw its offset sees it committed).
    pub(crate) fn raise_high_water(&self, hw: Index) {
        self.state.hw.fetch_max(hw.0, Ordering::AcqRel);
        let mut v = lock(&self.state.view);
        v.commit = v.commit.max(hw - 1);
        v.last = v.last.max(hw - 1);
    }

    /// Publishes role, term and indexes (and, when `full` or changed, membership
    /// and follower progress) for Status, routing and the healer.
    pub(crate) fn publish(&self, full: bool) {
        let node = self.driver.raft();
        let mut v = lock(&self.state.view);
        // Once an entry of this term is committed it stays so for the term.
        let ready_before = v.term_committed && v.term == node.term();
        v.role = node.role();
        v.term = node.term();
        v.leader = node.leader();
        v.commit = self.driver.commit();
        v.first = node.first_index();
        v.last = node.last_index();
        v.recovering = self.driver.recovering();
        v.term_committed = self.state.id == crate::types::GroupId::METADATA
            && v.role == Role::Leader
            && (ready_before || node.term_at(v.commit).is_ok_and(|t| t == v.term));
        if full || v.membership != *node.membership() {
            let status = node.status();
            v.membership = status.membership;
            v.followers = status.followers;
        }
    }

    /// On exit: answers everything still waiting, persists the latest commit.
    pub(crate) fn finish(&mut self, shared: &Shared) {
        self.driver.finish();
        if let Err(e) = self.driver.storage_mut().checkpoint_for_restart() {
            log::warn!(
                "group {}: no start-up checkpoint written at shutdown: {e}",
                self.state.id
            );
        }
        self.answer_finished(shared);
    }

    /// Answers every produce still waiting (the group is deleted: no checkpoint).
    pub(crate) fn answer_waiting(&mut self, shared: &Shared) {
        self.driver.finish();
        self.answer_finished(shared);
    }

    /// Answers what the finished driver left and shows the group without a leader.
    fn answer_finished(&mut self, shared: &Shared) {
        for e in self.driver.take_effects() {
            if let Effect::Complete { reply, result } = e {
                answer::produce(reply, result, |l| shared.not_leader(l));
            }
        }
        let mut v = lock(&self.state.view);
        v.role = Role::Follower;
        v.leader = None;
    }
}

/// The refusal for produces while the disk is full.
pub(crate) fn storage_full() -> Refusal {
    Refusal::StorageFull {
        detail: "no space left on the log's device".into(),
    }
}
