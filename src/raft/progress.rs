//! The leader's view of each follower: how much of the log it holds (`matched`), what to
//! send next (`next`), the flow-control state and the window of in-flight
//! AppendEntries.
//!
//! States (as in etcd-io/raft):
//! * `Probe`: the leader does not know where the follower's log diverges; it sends at
//!   most one AppendEntries per heartbeat interval and waits for the answer.
//! * `Replicate`: the follower accepted an append; the leader streams entries
//!   optimistically (advancing `next` at send time) with at most
//!   `max_inflight_msgs` unacknowledged messages holding at most
//!   `max_inflight_bytes` of entries (the flow control of a catch-up: the leader
//!   reads the log no faster than the follower stores it, and the bytes in flight
//!   per follower stay bounded).
//! * `Snapshot`: an InstallSnapshot is outstanding; nothing else is sent until the
//!   follower answers (or a heartbeat response shows it is still behind).
//!
//! The catch-up throttle (`Config::catch_up_bytes_per_tick`, Kafka's replication
//! quota in spirit): entries a follower needs that are already committed (the quorum
//! does not wait for them) are sent to it at most that many bytes per tick. The
//! leader's fresh entries are never held back, so the throttle never slows a commit;
//! it bounds what a catch-up takes from the leader's disk, CPU and network.

use std::collections::VecDeque;

use super::types::Index;

/// Flow-control state of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the point where the logs match, one message at a time.
    Probe,
    /// Streaming entries with a bounded in-flight window.
    Replicate,
    /// Waiting for the follower to install a log start at the given index.
    Snapshot(Index),
}

/// A bounded FIFO of the last index and the entry bytes of each unacknowledged
/// AppendEntries.
#[derive(Clone, Debug)]
pub struct Inflights {
    cap: usize,
    /// Entry bytes in flight at which the window is full (0: no limit).
    max_bytes: u64,
    bytes: u64,
    messages: VecDeque<(Index, u64)>,
}

impl Inflights {
    /// A window of at most `cap` messages and `max_bytes` of entries (0: no byte
    /// limit; a message is always let in when the window is empty).
    pub fn new(cap: usize, max_bytes: u64) -> Inflights {
        Inflights {
            cap,
            max_bytes,
            bytes: 0,
            messages: VecDeque::with_capacity(cap.min(64)),
        }
    }

    /// True when no more messages may be sent.
    pub fn full(&self) -> bool {
        self.messages.len() >= self.cap || (self.max_bytes > 0 && self.bytes >= self.max_bytes)
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Entry bytes in flight.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True when nothing is in flight.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Records a message whose last entry is `last`, carrying `bytes` of entries.
    /// Callers check `full()` first.
    pub fn add(&mut self, last: Index, bytes: u64) {
        debug_assert!(!self.full());
        self.messages.push_back((last, bytes));
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Frees every message whose last entry is <= `index` (acknowledged).
    pub fn free_le(&mut self, index: Index) {
        while self.messages.front().is_some_and(|&(i, _)| i <= index) {
            self.free_first_one();
        }
    }

    /// Frees the oldest message (assumed lost), so a stalled window can make progress.
    pub fn free_first_one(&mut self) {
        if let Some((_, bytes)) = self.messages.pop_front() {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }
}

/// The leader's bookkeeping for one member (including itself).
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be durable on the member and to match the leader's log.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Flow-control state.
    pub state: ProgressState,
    /// In probe state: a message was sent this heartbeat interval; wait.
    pub probe_sent: bool,
    /// Unacknowledged messages in replicate state.
    pub inflights: Inflights,
    /// Heard from during the current check-quorum period.
    pub recent_active: bool,
    /// Bytes of already-committed entries that may still be sent this tick (used
    /// only when the catch-up throttle is on).
    pub catch_up_tokens: u64,
    /// A send was held back by the throttle this tick: resume at the next refill.
    pub catch_up_throttled: bool,
}

impl Progress {
    /// A fresh progress for a member when the leader's last index is `last`, with
    /// a window of `max_inflight` messages and `max_bytes` of entries.
    pub fn new(last: Index, max_inflight: usize, max_bytes: u64) -> Progress {
        Progress {
            matched: Index(0),
            next: last + 1,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight, max_bytes),
            recent_active: false,
            catch_up_tokens: 0,
            catch_up_throttled: false,
        }
    }

    /// A new tick's catch-up budget (`per_tick` bytes; unused budget does not
    /// accumulate). Returns true if a send was held back since the last refill.
    pub fn refill_catch_up(&mut self, per_tick: u64) -> bool {
        self.catch_up_tokens = per_tick;
        std::mem::take(&mut self.catch_up_throttled)
    }

    /// Entry bytes of already-committed entries that may be sent now (`None`: held
    /// back until the next tick, remembered). At least one entry always goes when
    /// this is `Some`, so a message may overshoot it by one entry.
    pub fn catch_up_allowance(&mut self) -> Option<u64> {
        if self.catch_up_tokens == 0 {
            self.catch_up_throttled = true;
            return None;
        }
        Some(self.catch_up_tokens)
    }

    /// `bytes` of already-committed entries were sent.
    pub fn spend_catch_up(&mut self, bytes: u64) {
        self.catch_up_tokens = self.catch_up_tokens.saturating_sub(bytes);
    }

    /// Enters probe state (after a rejection, a snapshot, or a lost connection).
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot(at) = self.state {
            self.next = self.matched.max(at) + 1;
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Enters replicate state (the follower accepted an append).
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Enters snapshot state: an InstallSnapshot at `at` was sent.
    pub fn become_snapshot(&mut self, at: Index) {
        self.state = ProgressState::Snapshot(at);
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// True when nothing may be sent now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot(_) => true,
        }
    }

    /// The follower acknowledged `index`; returns true if `matched` advanced.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        if self.next < index + 1 {
            self.next = index + 1;
        }
        updated
    }

    /// Records that `count` entries of `bytes` through `last` were sent (optimistic
    /// in replicate state).
    pub fn sent_entries(&mut self, last: Index, count: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if count > 0 {
                    self.next = last + 1;
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot(_) => {}
        }
    }

    /// The follower rejected an append at `rejected`; its log has nothing matching
    /// above `hint` (already translated into the leader's log). Returns false if the
    /// rejection is stale (answers an older message).
    pub fn maybe_decr_to(&mut self, rejected: Index, hint: Index) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.become_probe();
            return true;
        }
        if self.next - 1 != rejected {
            return false;
        }
        if rejected <= self.matched {
            // The follower no longer holds an entry it acknowledged: it lost its log
            // (a wiped data dir). Replicate again from where its log ends; that node
            // itself refuses to vote until it has caught up (see `node::raft_loop`).
            // A stale rejection taking this path only delays commit: match rises
            // again with the next acknowledgement, and commit never decreases.
            self.matched = hint.min(rejected - 1);
        }
        self.next = rejected.min(hint + 1).max(self.matched + 1).max(Index(1));
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_is_bounded_and_frees_in_order() {
        let mut w = Inflights::new(3, 0);
        for i in [5, 7, 9] {
            assert!(!w.full());
            w.add(Index(i), 1 << 20);
        }
        assert!(w.full());
        w.free_le(Index(7));
        assert_eq!(w.len(), 1);
        w.free_first_one();
        assert!(w.is_empty());
    }

    #[test]
    fn inflight_window_is_bounded_by_bytes_and_frees_them() {
        let mut w = Inflights::new(64, 1000);
        w.add(Index(3), 600);
        assert!(!w.full(), "under the byte bound");
        w.add(Index(4), 600);
        assert!(w.full(), "1200 bytes in flight");
        assert_eq!(w.bytes(), 1200);
        w.free_le(Index(3));
        assert!(!w.full());
        assert_eq!(w.bytes(), 600);
        w.add(Index(9), 5000);
        w.free_first_one();
        assert_eq!(w.bytes(), 5000);
        assert!(w.full(), "one message over the bound still goes, alone");
        w.reset();
        assert_eq!((w.len(), w.bytes()), (0, 0));
    }

    #[test]
    fn probe_back_tracks_with_hint_and_ignores_stale_rejections() {
        let mut p = Progress::new(Index(10), 4, 0);
        assert_eq!(p.next, Index(11));
        assert!(!p.maybe_decr_to(Index(3), Index(0)), "stale: next-1 != 3");
        assert!(p.maybe_decr_to(Index(10), Index(4)));
        assert_eq!(p.next, Index(5));
        assert!(p.maybe_update(Index(4)));
        p.become_replicate();
        p.sent_entries(Index(8), 4, 400);
        assert_eq!(p.next, Index(9));
        assert!(
            !p.maybe_decr_to(Index(4), Index(0)),
            "at or below match is stale"
        );
        assert!(p.maybe_decr_to(Index(8), Index(6)));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next, Index(5));
        // A probe rejected at or below match: the follower lost its log.
        assert!(p.maybe_decr_to(Index(4), Index(0)));
        assert_eq!((p.matched, p.next), (Index(0), Index(1)));
    }
}
