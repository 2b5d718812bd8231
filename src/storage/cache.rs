//! A small bounded cache of opened sealed segments (least recently used is
//! evicted), so reads of old data do not reopen files every time while a log of
//! thousands of segments holds at most `capacity` of them open.

use std::sync::Arc;

use super::segment::SealedSegment;

/// Sealed segments kept open at most (two fds each).
pub(crate) const SEALED_CACHE_CAPACITY: usize = 16;

#[derive(Debug)]
pub(crate) struct SegmentCache {
    capacity: usize,
    tick: u64,
    entries: Vec<(u64, Arc<SealedSegment>)>,
}

impl SegmentCache {
    pub fn new(capacity: usize) -> SegmentCache {
        SegmentCache {
            capacity: capacity.max(1),
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

    /// Adds a segment, evicting the least recently used one when full.
    pub fn insert(&mut self, segment: Arc<SealedSegment>) {
        self.remove(segment.base);
        if self.entries.len() >= self.capacity {
            if let Some(lru) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(lru);
            }
        }
        self.tick += 1;
        self.entries.push((self.tick, segment));
    }

    /// Forgets the segment with this base (it is being deleted or rewritten).
    pub fn remove(&mut self, base: u64) {
        self.entries.retain(|(_, seg)| seg.base != base);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of open segments.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
