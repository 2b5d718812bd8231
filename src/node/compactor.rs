//! The node's compactor: one thread that runs key-based compaction passes
//! (`storage::compact`) over the hosted partitions of topics whose cleanup policy
//! is `compact`, every `--compact-interval-ms` (0 turns it off).
//!
//! Each tick visits at most [`MAX_GROUPS_PER_TICK`] groups round robin and runs one
//! bounded pass on each (key map of at most `compact_key_map_bytes`). Per group it
//! remembers where the last pass's key map ended and starts the next one there;
//! once a pass finds nothing new below the floor it starts again from the first
//! offset only when a tombstone it kept is due. Since a pass reads every older
//! sealed segment again, a group is passed over until its sealed bytes not yet in
//! a key map are at least half of its sealed bytes ([`worth_a_pass`]; Kafka's
//! default dirty ratio). The floor is the group's commit
//! index + 1 (nothing uncommitted is decided on), the end of its last sealed
//! segment (`compact_pass` stops there) and, when given, the lowest consumer-group
//! cursor on the partition (`cursor_floor`).
//!
//! Every replica compacts its own copy: the result at an offset is the original or
//! its placeholder (same term), which reads, Raft and healing treat alike.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::group::GroupState;
use super::Shared;
use crate::catalogue::{CleanupPolicy, TopicSettings};
use crate::storage::compact::{compact_pass, PassParams, PassReport};
use crate::sync::{lock, wait_timeout};
use crate::types::{GroupId, Offset};

/// Groups one tick runs a pass on, at most.
pub(crate) const MAX_GROUPS_PER_TICK: usize = 64;

/// The running compactor thread.
pub(crate) struct CompactorHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl CompactorHandle {
    pub(crate) fn stop(mut self) {
        let (flag, wake) = &*self.stop;
        *lock(flag) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the compactor (none when the interval is 0).
pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<Option<CompactorHandle>> {
    let interval_ms = shared.cfg.compact_interval_ms;
    if interval_ms == 0 {
        return Ok(None);
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let mut compactor = Compactor {
        shared,
        progress: BTreeMap::new(),
        cursor: GroupId(0),
    };
    let pause = Duration::from_millis(interval_ms);
    let thread = std::thread::Builder::new()
        .name("compactor".into())
        .spawn(move || loop {
            let flag = lock(&thread_stop.0);
            if *flag || *wait_timeout(&thread_stop.1, flag, pause).0 {
                return;
            }
            compactor.tick();
        })?;
    Ok(Some(CompactorHandle {
        stop,
        thread: Some(thread),
    }))
}

/// Where a group's compaction stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Where the next pass's key map starts.
    pub from: u64,
    /// When a tombstone kept by the last round expires (ms since the epoch).
    pub tombstone_due_ms: Option<i64>,
}

impl Progress {
    /// After a pass: resume where its map ended; a pass that found nothing new
    /// starts the next round from the first offset once a tombstone is due.
    pub(crate) fn after(&self, report: &PassReport, now_ms: i64) -> Progress {
        let due = match (self.tombstone_due_ms, report.tombstone_due_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let idle = report.scanned_to.0 <= self.from && report.records_removed == 0;
        if idle && due.is_some_and(|d| d <= now_ms) {
            return Progress {
                from: 0,
                tombstone_due_ms: None,
            };
        }
        Progress {
            from: report.scanned_to.0.max(self.from),
            tombstone_due_ms: due,
        }
    }
}

struct Compactor {
    shared: Arc<Shared>,
    progress: BTreeMap<GroupId, Progress>,
    /// The group the next tick starts with (round robin).
    cursor: GroupId,
}

impl Compactor {
    fn tick(&mut self) {
        let catalogue = self.shared.catalogue();
        let mut groups: Vec<(Arc<GroupState>, TopicSettings)> = Vec::new();
        for g in self.shared.groups.all() {
            if let Some((topic, _)) = catalogue.group(g.id) {
                if topic.settings.cleanup_policy == CleanupPolicy::Compact {
                    groups.push((g, topic.settings.clone()));
                }
            }
        }
        self.progress
            .retain(|id, _| groups.iter().any(|(g, _)| g.id == *id));
        groups.sort_by_key(|(g, _)| (g.id < self.cursor, g.id));
        for (g, settings) in groups.into_iter().take(MAX_GROUPS_PER_TICK) {
            self.cursor = GroupId(g.id.0 + 1);
            // Never remove a record a consumer group has not read past: the lowest
            // committed cursor of any group on this partition bounds the pass.
            let cursor_floor = catalogue
                .group(g.id)
                .and_then(|(topic, p)| catalogue.min_cursor(topic.name.as_str(), p.partition));
            self.pass(&g, &settings, cursor_floor);
        }
    }

    fn pass(&mut self, g: &GroupState, settings: &TopicSettings, cursor_floor: Option<u64>) {
        let mut progress = self.progress.get(&g.id).copied().unwrap_or_default();
        let now_ms = super::produce_v1::leader_now_ms();
        if progress.tombstone_due_ms.is_some_and(|due| due <= now_ms) {
            // A new round from the start expires the tombstone.
            progress = Progress::default();
        }
        let sealed: Vec<(u64, u64)> = g
            .log
            .sealed_segments()
            .into_iter()
            .map(|(_, next, bytes)| (next, bytes.unwrap_or(0)))
            .collect();
        if progress.from > 0 && !worth_a_pass(&sealed, progress.from) {
            return;
        }
        let params = PassParams {
            from: Offset(progress.from),
            floor: Offset(floor(g.hw().0, cursor_floor)),
            now_ms,
            tombstone_retention_ms: settings.tombstone_retention_ms,
            key_map_bytes: self.shared.cfg.compact_key_map_bytes,
        };
        match compact_pass(&g.log, &params) {
            Ok(report) => {
                if report.segments_rewritten > 0 {
                    log::info!(
                        "compactor: group {}: {} records removed ({} tombstones) in {} \
                         segments, {} -> {} bytes; keys {}..{}",
                        g.id,
                        report.records_removed,
                        report.tombstones_removed,
                        report.segments_rewritten,
                        report.bytes_before,
                        report.bytes_after,
                        report.from,
                        report.scanned_to
                    );
                }
                self.progress.insert(g.id, progress.after(&report, now_ms));
            }
            // Damage (healed first), a segment removed by retention meanwhile, a
            // closed log: the next tick tries again.
            Err(e) => log::warn!("compactor: group {}: pass skipped: {e}", g.id),
        }
    }
}

/// Whether a pass is worth its reads: every pass reads each older sealed segment
/// again, so it runs once the sealed bytes not yet in a key map (at or after
/// `from`) are at least half of all sealed bytes (Kafka's default
/// `min.cleanable.dirty.ratio`). `sealed`: each sealed segment's end and bytes.
pub(crate) fn worth_a_pass(sealed: &[(u64, u64)], from: u64) -> bool {
    let (mut clean, mut dirty) = (0u64, 0u64);
    for &(next, bytes) in sealed {
        if next <= from {
            clean += bytes;
        } else {
            dirty += bytes;
        }
    }
    dirty > 0 && dirty >= clean
}

/// The compaction floor (exclusive): the high-water mark (commit index + 1), lowered
/// to the lowest consumer cursor when there is one.
pub(crate) fn floor(hw: u64, cursor_floor: Option<u64>) -> u64 {
    cursor_floor.map_or(hw, |c| c.min(hw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_lower_of_commit_and_cursor() {
        assert_eq!(floor(100, None), 100);
        assert_eq!(floor(100, Some(40)), 40);
        assert_eq!(floor(100, Some(400)), 100);
    }

    #[test]
    fn a_pass_waits_for_enough_new_sealed_bytes() {
        // Segments ending at 10, 20, 30 of 100 bytes each.
        let sealed = [(10, 100), (20, 100), (30, 100)];
        assert!(worth_a_pass(&sealed, 0), "all new");
        assert!(worth_a_pass(&sealed, 15), "200 new of 300");
        assert!(!worth_a_pass(&sealed, 25), "100 new of 300");
        assert!(!worth_a_pass(&sealed, 30), "nothing new");
        // A compacted (small) older part: a little new data is enough.
        assert!(worth_a_pass(&[(10, 5), (20, 100)], 10));
    }

    #[test]
    fn progress_resumes_and_restarts_a_round_for_due_tombstones() {
        let start = Progress::default();
        let report = PassReport {
            scanned_to: Offset(50),
            records_removed: 3,
            tombstone_due_ms: Some(1_000),
            ..PassReport::default()
        };
        let p = start.after(&report, 0);
        assert_eq!(p.from, 50);
        assert_eq!(p.tombstone_due_ms, Some(1_000));
        // Nothing new, tombstone not due: stay.
        let idle = PassReport {
            from: Offset(50),
            scanned_to: Offset(50),
            ..PassReport::default()
        };
        assert_eq!(p.after(&idle, 999), p);
        // Due: a new round from the start.
        assert_eq!(p.after(&idle, 1_000), Progress::default());
    }
}
