//! The hand-off between the appender and readers: the *readable end*.
//!
//! The appender writes record bytes to the active store and their index slots,
//! then calls [`Publication::publish`], which stores the active store's end and the
//! next offset with Release. Readers call [`Publication::snapshot`], which loads
//! them with Acquire (next offset first), and only touch records below the
//! snapshot's next offset and store bytes below its end. So a reader sees only
//! fully written records. Lowering the readable end (truncation, reset) and moving
//! it to a new segment (roll) happen while readers are excluded by the segment
//! `RwLock`, so they need no extra ordering.
//!
//! Uses `crate::sync` atomics so the loom model below checks this very code.

use crate::sync::{AtomicU64, Ordering};

/// The published readable end of the log.
#[derive(Debug)]
pub(crate) struct Publication {
    next_offset: AtomicU64,
    active_store_end: AtomicU64,
}

/// What a reader may look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// One past the last readable offset.
    pub next_offset: u64,
    /// Readable bytes of the active store; at least the end of record
    /// `next_offset - 1` when that record is in the active segment.
    pub active_store_end: u64,
}

impl Publication {
    pub fn new(next_offset: u64, active_store_end: u64) -> Publication {
        Publication {
            next_offset: AtomicU64::new(next_offset),
            active_store_end: AtomicU64::new(active_store_end),
        }
    }

    /// Makes everything written before this call visible to readers.
    pub fn publish(&self, next_offset: u64, active_store_end: u64) {
        self.active_store_end
            .store(active_store_end, Ordering::Release);
        self.next_offset.store(next_offset, Ordering::Release);
    }

    /// The current readable end.
    pub fn snapshot(&self) -> Snapshot {
        let next_offset = self.next_offset.load(Ordering::Acquire);
        let active_store_end = self.active_store_end.load(Ordering::Acquire);
        Snapshot {
            next_offset,
            active_store_end,
        }
    }

    /// The published next offset.
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }
}

#[cfg(all(test, commitlog_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;

    /// Bytes per modeled record.
    const RECORD_BYTES: u64 = 10;

    /// A writer "appends" two records (relaxed stores stand for the file and index
    /// writes) and publishes after each; a concurrent reader must never see a
    /// published record whose bytes are not there yet, nor a store end short of the
    /// published records.
    #[test]
    fn loom_reader_sees_only_published_records() {
        loom::model(|| {
            let publication = Arc::new(Publication::new(0, 0));
            let slots = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);

            let writer = {
                let publication = publication.clone();
                let slots = slots.clone();
                loom::thread::spawn(move || {
                    for i in 0..2u64 {
                        slots[i as usize].store(100 + i, Ordering::Relaxed);
                        publication.publish(i + 1, (i + 1) * RECORD_BYTES);
                    }
                })
            };

            let snap = publication.snapshot();
            assert!(snap.next_offset <= 2);
            assert!(snap.active_store_end >= snap.next_offset * RECORD_BYTES);
            for i in 0..snap.next_offset {
                assert_eq!(slots[i as usize].load(Ordering::Relaxed), 100 + i);
            }
            writer.join().unwrap();
            assert_eq!(publication.next_offset(), 2);
        });
    }
}
