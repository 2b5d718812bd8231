//! The fsync thread of a cluster node: the raft thread appends a batch of Readies to
//! the page cache, sends its messages, and asks the syncer to make them durable
//! ([`Syncer::request`] with the last Ready's seq); the syncer runs `Log::sync` and
//! reports back through the inbox (`Control::Synced(seq)`), and only then does the
//! raft thread `advance` past those Readies. Meanwhile the raft thread keeps stepping
//! acknowledgements and appending new proposals, so consecutive batches pipeline: one
//! fsync in progress while the next batch forms (requests that arrive during an fsync
//! are coalesced into the next one).
//!
//! Correctness rests on `Log::sync` covering everything appended before it started
//! (it snapshots the append position first) and on acks being cumulative: a seq is
//! reported only after an fsync that started after the seq was requested.

use std::sync::{Arc, Condvar, Mutex};

use super::inbox::{Control, Inbox};
use super::lock;
use crate::storage::Log;

struct State {
    requested: u64,
    stop: bool,
}

pub(crate) struct Syncer {
    state: Mutex<State>,
    wake: Condvar,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Syncer {
    pub(crate) fn new(metrics: Option<std::sync::Arc<crate::metrics::Metrics>>) -> Syncer {
        Syncer {
            state: Mutex::new(State {
                requested: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            metrics,
        }
    }

    /// Asks for everything appended so far to be fsynced and `seq` reported.
    pub(crate) fn request(&self, seq: u64) {
        let mut s = lock(&self.state);
        s.requested = s.requested.max(seq);
        drop(s);
        self.wake.notify_one();
    }

    /// Makes [`Syncer::run`] return after the fsync in progress (if any).
    pub(crate) fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_one();
    }

    /// The thread body: fsync, report, repeat. A failed fsync is reported as
    /// `Control::SyncFailed` (fail-stop for the node) and ends the thread.
    pub(crate) fn run(self: Arc<Self>, log: Arc<Log>, inbox: Arc<Inbox>) {
        let mut done = 0u64;
        loop {
            let target = {
                let mut s = lock(&self.state);
                while s.requested <= done && !s.stop {
                    s = crate::sync::wait(&self.wake, s);
                }
                if s.requested <= done {
                    return;
                }
                s.requested
            };
            let started = std::time::Instant::now();
            let synced = log.sync();
            if let Some(m) = &self.metrics {
                m.observe_fsync(started.elapsed());
            }
            match synced {
                Ok(_) => {
                    done = target;
                    inbox.push_control(Control::Synced(target));
                }
                Err(e) => {
                    log::error!("fsync failed: {e}");
                    inbox.push_control(Control::SyncFailed);
                    return;
                }
            }
        }
    }
}
