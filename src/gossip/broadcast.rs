//! The dissemination queue: membership updates waiting to be piggy-backed.
//!
//! Invariants:
//! - at most one queued update per member (a newer update about a member replaces
//!   the older one), so the queue is bounded by the member table (+1 for self);
//! - each update is sent at most `limit` times (`retransmit_mult · ceil(log10(n+1))`,
//!   computed by the caller when it fills a packet), then dropped;
//! - packets are filled least-transmitted first, newest first among equals
//!   (memberlist's ordering), so fresh news overtakes old news.

use crate::types::NodeId;

#[derive(Debug)]
struct Entry {
    about: NodeId,
    encoded: Vec<u8>,
    transmits: u32,
    /// Insertion order; larger is newer.
    order: u64,
}

/// Pending broadcasts (encoded messages) with their transmit counts.
#[derive(Debug, Default)]
pub struct BroadcastQueue {
    entries: Vec<Entry>,
    next_order: u64,
}

impl BroadcastQueue {
    /// An empty queue.
    pub fn new() -> BroadcastQueue {
        BroadcastQueue::default()
    }

    /// Queues `encoded` (a full encoded message) as the news about `about`,
    /// replacing any older news about the same member.
    pub fn push(&mut self, about: NodeId, encoded: Vec<u8>) {
        self.entries.retain(|e| e.about != about);
        self.next_order += 1;
        self.entries.push(Entry {
            about,
            encoded,
            transmits: 0,
            order: self.next_order,
        });
    }

    /// Number of queued updates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops the news about `about` (the member was forgotten).
    pub fn forget(&mut self, about: NodeId) {
        self.entries.retain(|e| e.about != about);
    }

    /// Offers queued updates to `fit` in priority order; `fit` returns whether it
    /// took the bytes. Taken updates count a transmission; updates that reached
    /// `limit` transmissions are removed. Returns how many were taken.
    pub fn fill(&mut self, limit: u32, mut fit: impl FnMut(&[u8]) -> bool) -> usize {
        self.entries
            .sort_by(|a, b| a.transmits.cmp(&b.transmits).then(b.order.cmp(&a.order)));
        let mut taken = 0;
        for e in &mut self.entries {
            if fit(&e.encoded) {
                e.transmits += 1;
                taken += 1;
            }
        }
        self.entries.retain(|e| e.transmits < limit);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_news_replaces_older_and_limits_apply() {
        let mut q = BroadcastQueue::new();
        q.push(NodeId(1), vec![1]);
        q.push(NodeId(2), vec![2]);
        q.push(NodeId(1), vec![11]);
        assert_eq!(q.len(), 2);
        let mut seen = Vec::new();
        assert_eq!(
            q.fill(2, |b| {
                seen.push(b[0]);
                true
            }),
            2
        );
        // Newest first among equally transmitted.
        assert_eq!(seen, vec![11, 2]);
        q.fill(2, |_| true);
        assert!(q.is_empty(), "each update is sent exactly `limit` times");
    }

    #[test]
    fn least_transmitted_goes_first_and_rejected_bytes_are_kept() {
        let mut q = BroadcastQueue::new();
        q.push(NodeId(1), vec![1]);
        q.fill(10, |_| true);
        q.push(NodeId(2), vec![2]);
        let mut first = None;
        q.fill(10, |b| {
            first.get_or_insert(b[0]);
            false
        });
        assert_eq!(first, Some(2));
        assert_eq!(q.len(), 2);
        q.forget(NodeId(1));
        assert_eq!(q.len(), 1);
    }
}
