//! The node's scrubber: one thread verifying the sealed segments of every hosted
//! group in turn at `--scrub-bytes-per-sec` in total (DESIGN 10: find latent damage
//! before a read needs it). Damage goes to the group's healer; a group removed
//! meanwhile is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::group::GroupState;
use super::Shared;
use crate::storage::scrub::{Fault, ScrubCounters, Scrubber, STEPS_PER_SEC};
use crate::sync::{lock, wait_timeout};
use crate::types::GroupId;

/// The running scrubber thread.
pub(crate) struct ScrubHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ScrubHandle {
    pub(crate) fn stop(mut self) {
        let (flag, wake) = &*self.stop;
        *lock(flag) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the scrubber (none when the rate is 0).
pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<Option<ScrubHandle>> {
    let rate = shared.cfg.scrub_bytes_per_sec;
    if rate == 0 {
        return Ok(None);
    }
    let counters = Arc::new(ScrubCounters::default());
    if let Some(m) = &shared.cfg.metrics {
        m.set_scrub_counters(Arc::clone(&counters));
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let mut all = ScrubAll {
        shared,
        counters,
        scrubbers: BTreeMap::new(),
        cursor: GroupId(0),
        generation: None,
    };
    let budget = (rate / STEPS_PER_SEC).max(1);
    let pause = Duration::from_millis(1000 / STEPS_PER_SEC);
    let thread = std::thread::Builder::new()
        .name("scrubber".into())
        .spawn(move || loop {
            all.step(budget);
            let flag = lock(&thread_stop.0);
            if *flag {
                return;
            }
            if *wait_timeout(&thread_stop.1, flag, pause).0 {
                return;
            }
        })?;
    Ok(Some(ScrubHandle {
        stop,
        thread: Some(thread),
    }))
}

/// Groups one step looks at, at most (a pass over 10,000 groups without sealed
/// segments takes 4 s).
const MAX_GROUPS_PER_STEP: usize = 256;

struct ScrubAll {
    shared: Arc<Shared>,
    counters: Arc<ScrubCounters>,
    scrubbers: BTreeMap<GroupId, (Arc<GroupState>, Scrubber)>,
    /// The group the next step starts with (round robin).
    cursor: GroupId,
    /// The group registry's generation the scrubbers follow.
    generation: Option<u64>,
}

impl ScrubAll {
    /// Verifies about `budget` bytes over the groups, from the cursor on.
    fn step(&mut self, budget: u64) {
        self.follow_groups();
        let ids: Vec<GroupId> = self
            .scrubbers
            .range(self.cursor..)
            .chain(self.scrubbers.range(..self.cursor))
            .map(|(id, _)| *id)
            .collect();
        let mut left = budget;
        // At most one segment read for a time index per step (retention by age
        // does not read segments on the raft thread: `Log::retention_point`).
        let mut built_time_index = false;
        // Bounded: a step looks at most at MAX_GROUPS_PER_STEP groups (thousands
        // of groups without sealed segments would otherwise all be visited 10
        // times a second).
        for id in ids.into_iter().take(MAX_GROUPS_PER_STEP) {
            let Some((group, scrubber)) = self.scrubbers.get_mut(&id) else {
                continue;
            };
            let before = self.counters.bytes_verified.load(Ordering::Relaxed);
            for fault in scrubber.step(left) {
                report(group, &fault);
            }
            let used = self.counters.bytes_verified.load(Ordering::Relaxed) - before;
            if !built_time_index {
                built_time_index = build_time_index(group);
            }
            self.cursor = GroupId(id.0 + 1);
            left = left.saturating_sub(used);
            if left == 0 {
                self.cursor = id;
                break;
            }
        }
    }

    fn follow_groups(&mut self) {
        let Some(groups) = self.shared.groups.changed_since(&mut self.generation) else {
            return;
        };
        // A set: thousands of groups, re-read at every change while a topic of
        // thousands of partitions is created, must not cost N² comparisons.
        let hosted: std::collections::BTreeSet<GroupId> = groups.iter().map(|g| g.id).collect();
        self.scrubbers.retain(|id, _| hosted.contains(id));
        for g in groups {
            if !self.scrubbers.contains_key(&g.id) {
                let s = Scrubber::with_counters(Arc::clone(&g.log), Arc::clone(&self.counters));
                self.scrubbers.insert(g.id, (g, s));
            }
        }
    }
}

/// Builds one missing time index of the group's log (retention by age counts such
/// a segment by its file time until then); true if it read a segment.
fn build_time_index(group: &GroupState) -> bool {
    match group.log.build_time_index() {
        Ok(built) => built,
        Err(e) => {
            log::debug!("group {}: time index not built: {e}", group.id);
            false
        }
    }
}

fn report(group: &GroupState, f: &Fault) {
    log::error!(
        "scrubber: group {}: {} offsets {}..{} ({:?}): {}; reads of it answer \
         CORRUPT_RECORD until it is healed from a peer (see README \"When the disk lies\")",
        group.id,
        f.path.display(),
        f.first,
        f.end,
        f.kind,
        f.reason
    );
    group.damage.report_range(f.first, f.end);
}
