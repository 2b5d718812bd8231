//! A small bounded cache of opened sealed segments (least recently used is
//! evicted), so reads of old data do not reopen files every time while a log of
//! thousands of segments holds at most `capacity` of them open.
//!
//! The logs of a process also share one bound ([`PROCESS_SEALED_CAPACITY`]): a
//! node hosting thousands of partitions would otherwise hold up to
//! `capacity` segments (two descriptors each) per partition that was read or
//! scrubbed. At that bound a log reuses its own least recently used entry, or,
//! holding none, reads the segment without keeping it open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::segment::SealedSegment;

/// Sealed segments kept open at most per log (two fds each).
pub(crate) const SEALED_CACHE_CAPACITY: usize = 16;

/// Sealed segments kept open at most by all the logs of this process together
/// (1,024 descriptors).
pub(crate) const PROCESS_SEALED_CAPACITY: usize = 512;

/// A bound on the entries of several caches together.
#[derive(Debug)]
pub(crate) struct Budget {
    open: AtomicUsize,
    capacity: usize,
}

impl Budget {
    pub const fn new(capacity: usize) -> Budget {
        Budget {
            open: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Takes one entry; false at the bound.
    fn reserve(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.open.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// The entries of every log's cache in the process.
pub(crate) static PROCESS_BUDGET: Budget = Budget::new(PROCESS_SEALED_CAPACITY);

#[derive(Debug)]
pub(crate) struct SegmentCache {
    capacity: usize,
    budget: &'static Budget,
    tick: u64,
    entries: Vec<(u64, Arc<SealedSegment>)>,
}

impl SegmentCache {
    /// A cache of at most `capacity` segments, within `budget` with others.
    pub fn new(capacity: usize, budget: &'static Budget) -> SegmentCache {
        SegmentCache {
            capacity: capacity.max(1),
            budget,
            tick: 0,
            entries: Vec::new(),
        }
    }

    /// The cached segment with this base, marking it recently used.
    pub fn get(&mut self, base: u64) -> Option<Arc<SealedSegment>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries
            .iter_mut()
            .find(|(_, seg)| seg.base == base)
            .map(|(used, seg)| {
                *used = tick;
                seg.clone()
            })
    }

    /// Adds a segment, evicting the least recently used one when full (this
    /// log's bound, or the process-wide one). Not kept at all when the process
    /// bound is reached and this cache holds nothing to evict.
    pub fn insert(&mut self, segment: Arc<SealedSegment>) {
        self.remove(segment.base);
        let full = self.entries.len() >= self.capacity || !self.budget.reserve();
        if full {
            let Some(lru) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(i, _)| i)
            else {
                return;
            };
            // The evicted entry's place goes to the new one.
            self.entries.swap_remove(lru);
        }
        self.tick += 1;
        self.entries.push((self.tick, segment));
    }

    /// Forgets the segment with this base (it is being deleted or rewritten).
    pub fn remove(&mut self, base: u64) {
        let before = self.entries.len();
        self.entries.retain(|(_, seg)| seg.base != base);
        self.budget.release(before - self.entries.len());
    }

    /// Forgets everything; returns how many segments it held.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        self.budget.release(n);
        n
    }

    /// Number of open segments.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Drop for SegmentCache {
    fn drop(&mut self) {
        self.budget.release(self.entries.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::segment;

    /// A one-record sealed segment (empty store) at `base`.
    fn sealed(dir: &std::path::Path, base: u64) -> Arc<SealedSegment> {
        std::fs::write(segment::store_path(dir, base), b"").unwrap();
        std::fs::write(segment::index_path(dir, base), [0u8; 8]).unwrap();
        Arc::new(SealedSegment::open(dir, base, 1, 0).unwrap())
    }

    #[test]
    fn caches_share_one_bound_and_give_it_back() {
        static BUDGET: Budget = Budget::new(2);
        let dir = crate::storage::tests::TempDir::new("cache-budget");
        let mut a = SegmentCache::new(4, &BUDGET);
        let mut b = SegmentCache::new(4, &BUDGET);
        a.insert(sealed(dir.path(), 1));
        a.insert(sealed(dir.path(), 2));
        b.insert(sealed(dir.path(), 3));
        assert_eq!(
            b.len(),
            0,
            "at the shared bound with nothing to evict: not kept"
        );
        assert!(a.get(1).is_some());
        a.insert(sealed(dir.path(), 4));
        assert_eq!(
            a.len(),
            2,
            "at the shared bound: its own LRU entry made room"
        );
        assert!(a.get(2).is_none() && a.get(1).is_some() && a.get(4).is_some());
        a.remove(1);
        b.insert(sealed(dir.path(), 3));
        assert_eq!(b.len(), 1, "a removed entry is given back");
        drop(a);
        b.insert(sealed(dir.path(), 5));
        assert_eq!(b.len(), 2, "a dropped cache gives its entries back");
        assert_eq!(b.clear(), 2);
        assert_eq!(BUDGET.open.load(Ordering::Acquire), 0);
    }
}
