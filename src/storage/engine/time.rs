//! Offsets by time and the record time of sealed segments (retention by age),
//! from the sparse time indexes of `storage/timeindex.rs`.
//!
//! * A sealed segment's index is its `.timeindex` file when that is intact and
//!   was built from the segment as it is now (crc, then the stamp); otherwise it
//!   is rebuilt by reading the segment through the ordinary read path (crc of
//!   every record checked) and the file is written again (no fsync: it is
//!   derived data, checked on every load). Nothing stays open afterwards.
//! * The active segment's index lives in memory and is caught up lazily, by
//!   reading the records appended since the last lookup, so the append path pays
//!   nothing. Truncation and reset drop what they cut; an idle log drops it
//!   ([`Log::release_idle_files`]) and the next lookup reads the segment again.
//! * The newest timestamp of each sealed segment met is remembered (a few bytes
//!   per segment, keyed by base, end and store size so a rewritten segment is a
//!   new key).
//!
//! Lock order: `time` after `writer` and before `segments` (lookups read the log
//! while holding `time`; truncation takes it after releasing `segments`).

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Log;
use crate::storage::error::{Result, StorageError};
use crate::storage::record::RECORD_HEADER_BYTES;
use crate::storage::retention;
use crate::storage::segment::{self, read_exact_at};
use crate::storage::timeindex::{self, Stamp, TimeIndex};
use crate::types::Offset;

/// Value bytes one read of an index build asks for.
const BUILD_READ_BYTES: u64 = 1024 * 1024;
/// Value bytes one read of a lookup's scan asks for: an index interval and a bit
/// (the reader reads at least a 64 KiB chunk anyway).
const SCAN_READ_BYTES: u64 = 2 * timeindex::INTERVAL_BYTES;

/// What a [`Log`] keeps of its time indexes (behind the `time` mutex).
#[derive(Debug, Default)]
pub(super) struct TimeState {
    /// The index of the active segment's records read so far (or of a segment
    /// that was active then and has rolled since).
    building: Option<TimeIndex>,
    /// Newest timestamp of sealed segments whose index was loaded or built.
    newest: HashMap<SegmentKey, Option<i64>>,
    /// The last few sealed segments' indexes loaded, most recent first (at most
    /// [`LOADED_INDEXES`]), so repeated lookups do not read the file again.
    loaded: Vec<(SegmentKey, Arc<TimeIndex>)>,
}

/// Sealed segments' indexes kept decoded per log (up to 256 KiB each for 64 MiB
/// segments); dropped with the rest when the log goes idle.
const LOADED_INDEXES: usize = 4;

/// (base, next base, indexed store bytes).
type SegmentKey = (u64, u64, u64);

/// A sealed segment as the time index sees it.
#[derive(Clone, Copy, Debug)]
struct Sealed {
    base: u64,
    next: u64,
    store_bytes: u64,
    unreadable: bool,
}

impl Sealed {
    fn key(&self) -> SegmentKey {
        (self.base, self.next, self.store_bytes)
    }
}

/// The segment list and the readable end, copied under the `segments` lock.
struct Layout {
    sealed: Vec<Sealed>,
    active_base: u64,
    next: u64,
    epoch: u64,
}

impl Log {
    fn time_layout(&self) -> Result<Layout> {
        let segments = read_lock!(self.segments);
        let sealed = (0..segments.sealed.len())
            .map(|i| {
                let meta = segments.sealed[i];
                Sealed {
                    base: meta.base,
                    next: segments.sealed_next(i),
                    store_bytes: meta.store_bytes,
                    unreadable: meta.unreadable,
                }
            })
            .collect();
        Ok(Layout {
            sealed,
            active_base: segments.active.base,
            next: self.publication.snapshot().next_offset,
            epoch: segments.epoch,
        })
    }

    /// The first record below `end` (the caller's commit bound) whose timestamp is
    /// at least `ts_ms`, with that timestamp; `None` when there is none (the
    /// caller answers its end). Only v1 records have a time (v0 and internal
    /// records are skipped). Reads the time index, then at most about one index
    /// interval of records (more only when a segment's index must be rebuilt).
    pub fn offset_for_timestamp(&self, ts_ms: i64, end: Offset) -> Result<Option<(Offset, i64)>> {
        self.check_open()?;
        let mut state = lock!(self.time);
        let layout = self.time_layout()?;
        let end = end.0.min(layout.next);
        let listed = |k: &SegmentKey| layout.sealed.iter().any(|s| s.key() == *k);
        state.newest.retain(|k, _| listed(k));
        state.loaded.retain(|(k, _)| listed(k));
        for seg in &layout.sealed {
            if seg.base >= end {
                return Ok(None);
            }
            if state
                .newest
                .get(&seg.key())
                .is_some_and(|m| m.is_none_or(|m| m < ts_ms))
            {
                continue;
            }
            let index = self.sealed_index(&mut state, seg, layout.epoch)?;
            if let Some(start) = index.scan_start(ts_ms) {
                let found = self.scan_for_time(start, seg.next.min(end), ts_ms)?;
                if found.is_some() || seg.next >= end {
                    return Ok(found);
                }
            }
        }
        if layout.active_base >= end {
            return Ok(None);
        }
        let index = self.active_index(&mut state, &layout)?;
        match index.scan_start(ts_ms) {
            Some(start) => self.scan_for_time(start, end, ts_ms),
            None => Ok(None),
        }
    }

    /// Reads records from `from` up to `to` (exclusive) and returns the first
    /// with a timestamp `≥ ts_ms`.
    fn scan_for_time(&self, from: u64, to: u64, ts_ms: i64) -> Result<Option<(Offset, i64)>> {
        let mut next = from;
        while next < to {
            let (mut found, mut done) = (None, false);
            let taken = self.read_range_with(Offset(next), SCAN_READ_BYTES, |r| {
                if r.offset.0 >= to {
                    done = true;
                    return false;
                }
                if let Some(t) = timeindex::record_timestamp(r.kind, r.value) {
                    if t >= ts_ms {
                        found = Some((r.offset, t));
                        return false;
                    }
                }
                next = r.offset.0 + 1;
                true
            })?;
            if found.is_some() || done || taken == 0 {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Adds the records from `index.next` up to `to` to `index`.
    fn index_records(&self, index: &mut TimeIndex, to: u64) -> Result<()> {
        while index.next < to {
            let taken = self.read_range_with(Offset(index.next), BUILD_READ_BYTES, |r| {
                if r.offset.0 >= to {
                    return false;
                }
                let stored_bytes = RECORD_HEADER_BYTES as u64 + r.value.len() as u64;
                let ts = timeindex::record_timestamp(r.kind, r.value);
                index.push(r.offset.0, stored_bytes, ts);
                true
            })?;
            if taken == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The active segment's index, caught up to the readable end.
    fn active_index<'s>(&self, state: &'s mut TimeState, layout: &Layout) -> Result<&'s TimeIndex> {
        let mut index = match state.building.take() {
            Some(b) if b.base == layout.active_base && b.next <= layout.next => b,
            _ => TimeIndex::new(layout.active_base),
        };
        let result = self.index_records(&mut index, layout.next);
        // What was indexed before an error is still right.
        let index = state.building.insert(index);
        result.map(|()| &*index)
    }

    /// The index of a sealed segment, from the few kept decoded or as
    /// [`Log::sealed_index_uncached`] finds it.
    fn sealed_index(
        &self,
        state: &mut TimeState,
        seg: &Sealed,
        epoch: u64,
    ) -> Result<Arc<TimeIndex>> {
        if let Some(i) = state.loaded.iter().position(|(k, _)| *k == seg.key()) {
            let entry = state.loaded.remove(i);
            state.loaded.insert(0, entry);
            return Ok(Arc::clone(&state.loaded[0].1));
        }
        let index = Arc::new(self.sealed_index_uncached(state, seg, epoch)?);
        state.loaded.insert(0, (seg.key(), Arc::clone(&index)));
        state.loaded.truncate(LOADED_INDEXES);
        Ok(index)
    }

    /// The index of a sealed segment: its file when intact and current, else
    /// rebuilt (and the file written again).
    fn sealed_index_uncached(
        &self,
        state: &mut TimeState,
        seg: &Sealed,
        epoch: u64,
    ) -> Result<TimeIndex> {
        if seg.unreadable {
            return Err(StorageError::corrupt_record(
                seg.base,
                segment::store_path(&self.dir, seg.base),
                0,
                "the segment is quarantined (damaged at open) until it is rebuilt",
            ));
        }
        let stamp = self.segment_stamp(seg)?;
        let path = timeindex::path(&self.dir, seg.base);
        if let Some(index) = self.load_index(seg, stamp) {
            state.newest.insert(seg.key(), index.max_ts);
            return Ok(index);
        }
        let mut index = match state.building.take() {
            Some(b) if b.base == seg.base && b.next <= seg.next => b,
            other => {
                state.building = other;
                TimeIndex::new(seg.base)
            }
        };
        self.index_records(&mut index, seg.next)?;
        if index.next != seg.next {
            return Err(StorageError::corrupt(
                &path,
                0,
                "segment ended early while indexing",
            ));
        }
        // A segment cut or rewritten meanwhile (a new epoch) gets no file.
        let unchanged = self.time_layout()?.epoch == epoch && self.segment_stamp(seg)? == stamp;
        if unchanged {
            if let Err(e) = fs::write(&path, timeindex::encode(&index, stamp)) {
                log::warn!("time index {} not written: {e}", path.display());
            }
            state.newest.insert(seg.key(), index.max_ts);
        }
        Ok(index)
    }

    /// The file of a sealed segment, if it is intact and was built from the
    /// segment as it is now; a damaged or stale one is logged and ignored.
    fn load_index(&self, seg: &Sealed, stamp: Stamp) -> Option<TimeIndex> {
        let path = timeindex::path(&self.dir, seg.base);
        let file = fs::File::open(&path).ok()?;
        let len = file.metadata().ok()?.len();
        let why = if len > timeindex::max_file_bytes(seg.store_bytes) {
            "longer than the segment allows".to_string()
        } else {
            let mut bytes = vec![0u8; len as usize];
            match read_exact_at(&file, &path, &mut bytes, 0) {
                Err(e) => e.to_string(),
                Ok(()) => match timeindex::decode(&bytes) {
                    Ok((index, s))
                        if s == stamp && index.base == seg.base && index.next == seg.next =>
                    {
                        return Some(index)
                    }
                    Ok(_) => "built from another version of the segment".to_string(),
                    Err(reason) => reason.to_string(),
                },
            }
        };
        log::info!("time index {} is rebuilt: {why}", path.display());
        None
    }

    /// What identifies the segment's content now: its record count, store bytes
    /// and the crc field of its last record (one index slot, four store bytes).
    fn segment_stamp(&self, seg: &Sealed) -> Result<Stamp> {
        let count = seg.next - seg.base;
        let position = segment::read_index_slot(&self.dir, seg.base, count - 1)?;
        let store_path = segment::store_path(&self.dir, seg.base);
        let store = fs::File::open(&store_path)
            .map_err(|e| StorageError::io(format!("opening {}", store_path.display()), e))?;
        let mut crc = [0u8; 4];
        read_exact_at(&store, &store_path, &mut crc, position)?;
        Ok(Stamp {
            count,
            store_bytes: seg.store_bytes,
            last_crc: u32::from_le_bytes(crc),
        })
    }

    /// The newest record timestamp of sealed segment `seg`.
    fn sealed_newest(&self, seg: &Sealed, epoch: u64) -> Result<Option<i64>> {
        let mut state = lock!(self.time);
        if let Some(newest) = state.newest.get(&seg.key()) {
            return Ok(*newest);
        }
        Ok(self.sealed_index(&mut state, seg, epoch)?.max_ts)
    }

    /// `sealed_newest` without reading the segment: from memory or its
    /// `.timeindex` file; `None` when only a read of the segment would tell.
    fn sealed_newest_known(&self, seg: &Sealed) -> Result<Option<Option<i64>>> {
        let mut state = lock!(self.time);
        if let Some(newest) = state.newest.get(&seg.key()) {
            return Ok(Some(*newest));
        }
        if let Some((_, index)) = state.loaded.iter().find(|(k, _)| *k == seg.key()) {
            return Ok(Some(index.max_ts));
        }
        // The index built while it was the active segment, complete.
        if let Some(b) = state
            .building
            .as_ref()
            .filter(|b| b.base == seg.base && b.next == seg.next)
        {
            return Ok(Some(b.max_ts));
        }
        let stamp = self.segment_stamp(seg)?;
        Ok(self.load_index(seg, stamp).map(|index| {
            state.newest.insert(seg.key(), index.max_ts);
            index.max_ts
        }))
    }

    /// Builds the time index of the oldest sealed segment that has none yet (a
    /// read of that segment), so retention by age (which does not read segments on
    /// the raft thread, [`Log::retention_point`]) knows its record times; for a
    /// background thread. Returns true if it built one; false when every sealed
    /// segment's newest time is known, or no age limit is set.
    pub fn build_time_index(&self) -> Result<bool> {
        self.check_open()?;
        if self.retention().1.is_none() {
            return Ok(false);
        }
        let layout = self.time_layout()?;
        for seg in layout.sealed.iter().filter(|s| !s.unreadable) {
            if self.sealed_newest_known(seg)?.is_none() {
                if let Err(e) = self.sealed_newest(seg, layout.epoch) {
                    // Not read again at every call: its age stays its file's.
                    log::warn!(
                        "segment {}: record time unknown ({e}); its age is its file's",
                        seg.base
                    );
                    lock!(self.time).newest.insert(seg.key(), None);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Bases of the oldest sealed segments that retention by age drops at `now`:
    /// a segment's time is its newest record timestamp, capped at its store's
    /// modification time (a timestamp in the future cannot keep it longer than its
    /// last write would); with no timestamped record (or an unreadable index),
    /// the modification time alone. Called without any lock held: with `read` it
    /// may read whole segments to rebuild their indexes; without, a segment whose
    /// index is not at hand counts by its modification time alone.
    pub(super) fn age_expired_bases(
        &self,
        max_age: Duration,
        now: SystemTime,
        read: bool,
    ) -> Result<Vec<u64>> {
        let layout = self.time_layout()?;
        // Segments removed or rewritten since (retention, compaction) leave
        // their keys behind: forget them here too, not only on lookups.
        {
            let mut state = lock!(self.time);
            let listed = |k: &SegmentKey| layout.sealed.iter().any(|s| s.key() == *k);
            state.newest.retain(|k, _| listed(k));
            state.loaded.retain(|(k, _)| listed(k));
        }
        let mut time_of = |i: usize| -> Result<SystemTime> {
            let seg = &layout.sealed[i];
            let path = segment::store_path(&self.dir, seg.base);
            let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(time) => time,
                // A quarantined segment may have no store: it holds nothing
                // readable, so it may go as soon as its turn comes.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SystemTime::UNIX_EPOCH,
                Err(e) => return Err(StorageError::io(format!("stat {}", path.display()), e)),
            };
            let newest = if seg.unreadable {
                None
            } else if !read {
                // Unknown without a read: the file's time alone (kept as long, or
                // longer; `build_time_index` reads it in the background).
                self.sealed_newest_known(seg).ok().flatten().flatten()
            } else {
                self.sealed_newest(seg, layout.epoch).unwrap_or_else(|e| {
                    log::warn!(
                        "segment {}: record time unknown ({e}); its age is its file's",
                        seg.base
                    );
                    None
                })
            };
            Ok(retention::segment_time(modified, newest))
        };
        let n = retention::drop_for_age(layout.sealed.len(), max_age, now, &mut time_of)?;
        Ok(layout.sealed[..n].iter().map(|s| s.base).collect())
    }

    /// Forgets what truncation to `new_next` cut (the caller holds `writer`, not
    /// `segments`).
    pub(super) fn forget_times_from(&self, new_next: u64) {
        let mut state = self.time.lock().unwrap_or_else(|p| p.into_inner());
        if state.building.as_ref().is_some_and(|b| b.next > new_next) {
            state.building = None;
        }
        state.newest.retain(|k, _| k.1 <= new_next);
        state.loaded.retain(|(k, _)| k.1 <= new_next);
    }

    /// Drops the indexes kept in memory (an idle log).
    pub(super) fn drop_building_time_index(&self) {
        let mut state = self.time.lock().unwrap_or_else(|p| p.into_inner());
        state.building = None;
        state.loaded.clear();
    }
}
