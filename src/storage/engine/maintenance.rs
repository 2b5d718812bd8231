//! Structural changes: suffix and prefix truncation, reset, retention. Each takes
//! the `sync` lock (so no fsync runs meanwhile), then `writer`, then `segments`
//! exclusively, so neither appends nor reads observe a half-done change.

use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use super::{io_err, Log, Segments, Writer};
use crate::storage::cache::SegmentCache;
use crate::storage::checkpoint::{self, Checkpoint};
use crate::storage::error::{Result, StorageError};
use crate::storage::index::SLOT_BYTES;
use crate::storage::recovery;
use crate::storage::retention;
use crate::storage::segment::{self, ActiveSegment};
use crate::sync::Ordering;
use crate::types::Offset;

/// Where `truncate_suffix` cuts.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// In the active segment, at this store position.
    Active { position: u64 },
    /// In sealed segment `index` (which becomes active), at this store position,
    /// keeping its first `kept` records.
    Sealed {
        index: usize,
        position: u64,
        kept: u64,
    },
}

impl Log {
    /// Drops every record after `keep_through` (`None`: every record), e.g. when a
    /// Raft leader overwrites a conflicting suffix. The next append gets offset
    /// `keep_through + 1`. Durable on return (files cut and fsynced, directory
    /// fsynced; readers are held off only while files are cut, not during the
    /// fsyncs); `durable_offset` is lowered to the new end if it was above it.
    pub fn truncate_suffix(&self, keep_through: Option<Offset>) -> Result<()> {
        self.check_open()?;
        let _sync = lock!(self.sync_lock);
        let mut guard = lock!(self.writer);
        let w = &mut *guard;
        let first = self.first_offset.load(Ordering::Acquire);
        let next = w.next_offset;
        let new_next = match keep_through {
            None => first,
            Some(k) => k.0.saturating_add(1),
        };
        if new_next >= next {
            return Ok(());
        }
        if new_next < first {
            return Err(StorageError::OffsetOutOfRange {
                offset: keep_through.unwrap_or(Offset(first)),
                first: Offset(first),
                next: Offset(next),
            });
        }
        // The checkpoint must never claim more than the log holds: lower it first
        // (or remove it), so a crash during the cut cannot look like corruption.
        self.durable_offset.fetch_min(new_next, Ordering::AcqRel);
        let durable_end = self.durable_offset.load(Ordering::Acquire);
        self.write_checkpoint(durable_end, new_next, true)?;
        let removed_segments = {
            let mut segments = write_lock!(self.segments);
            // Errors up to here changed nothing; after this they close the log.
            let cut = self.plan_cut(w, &segments, new_next)?;
            let mut cache = lock!(self.cache);
            let result = match cut {
                Cut::Active { position } => self.cut_active(w, position).map(|()| false),
                Cut::Sealed {
                    index,
                    position,
                    kept,
                } => self
                    .cut_into_sealed(w, &mut segments, &mut cache, (index, kept), position)
                    .map(|()| true),
            };
            match result {
                Ok(removed) => removed,
                Err(error) => return Err(self.fail(error)),
            }
        };
        w.next_offset = new_next;
        self.publication.publish(new_next, w.store_bytes);
        self.durable_offset.fetch_min(new_next, Ordering::AcqRel);
        // `segments` is released; `writer` keeps appends out until this is done.
        self.forget_times_from(new_next);
        // Readers already see the new end; make it durable without blocking them.
        let active = &w.active;
        let result = active
            .files()
            .and_then(|files| {
                files
                    .store
                    .sync_data()
                    .map_err(io_err("fsyncing", &active.store_path))
            })
            .and_then(|()| {
                if removed_segments {
                    segment::sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(error) = result {
            return Err(self.fail(error));
        }
        log::info!(
            "log {}: truncated after {:?} (next offset {new_next})",
            self.dir.display(),
            keep_through
        );
        Ok(())
    }

    /// Where the log must be cut so that `new_next` is the next offset: the end of
    /// record `new_next - 1`, which is read and checked (so a damaged record at or
    /// after the cut, or a damaged index slot for it, does not get in the way).
    fn plan_cut(&self, w: &Writer, segments: &Segments, new_next: u64) -> Result<Cut> {
        let active = &w.active;
        if new_next >= active.base {
            let position = match (new_next - active.base).checked_sub(1) {
                None => 0,
                Some(prev) => segment::record_end(
                    &active.files()?.store,
                    &active.store_path,
                    active.position(prev)?,
                    w.store_bytes,
                    new_next - 1,
                )?,
            };
            return Ok(Cut::Active { position });
        }
        let index = segments.sealed_holding(new_next).ok_or_else(|| {
            StorageError::corrupt(&self.dir, 0, "no segment holds the truncation point")
        })?;
        let meta = segments.sealed[index];
        let position = match (new_next - meta.base).checked_sub(1) {
            None => 0,
            // Nothing of a quarantined segment can be kept (cut at its base).
            Some(_) if meta.unreadable => {
                return Err(StorageError::corrupt_record(
                    new_next - 1,
                    segment::store_path(&self.dir, meta.base),
                    0,
                    "cannot keep part of a quarantined segment; truncate to its base or \
                     rebuild it first",
                ))
            }
            Some(prev) => {
                let store_path = segment::store_path(&self.dir, meta.base);
                let store = fs::File::open(&store_path).map_err(io_err("opening", &store_path))?;
                segment::record_end(
                    &store,
                    &store_path,
                    segment::read_index_slot(&self.dir, meta.base, prev)?,
                    meta.store_bytes,
                    new_next - 1,
                )?
            }
        };
        Ok(Cut::Sealed {
            index,
            position,
            kept: new_next - meta.base,
        })
    }

    fn cut_active(&self, w: &mut Writer, position: u64) -> Result<()> {
        w.active
            .files()?
            .store
            .set_len(position)
            .map_err(io_err("truncating", &w.active.store_path))?;
        w.store_bytes = position;
        Ok(())
    }

    fn cut_into_sealed(
        &self,
        w: &mut Writer,
        segments: &mut Segments,
        cache: &mut SegmentCache,
        (t, kept): (usize, u64),
        position: u64,
    ) -> Result<()> {
        let meta = segments.sealed[t];
        let count = segments.sealed_next(t) - meta.base;
        // Newest first, so a crash in between leaves a contiguous log.
        let doomed: Vec<u64> = segments.sealed[t + 1..]
            .iter()
            .map(|m| m.base)
            .chain(std::iter::once(w.active.base))
            .collect();
        recovery::remove_segments_newest_first(&self.dir, &doomed)?;
        for base in doomed.iter().chain(std::iter::once(&meta.base)) {
            cache.remove(*base);
        }
        // Grown back to the active size before it is mapped (mmap invariant).
        // Its first `kept` slots were written when it was active: they are backed.
        let fresh = Arc::new(ActiveSegment::open(
            &self.dir,
            meta.base,
            self.index_capacity.max(count),
            kept,
        )?);
        fresh
            .files()?
            .store
            .set_len(position)
            .map_err(io_err("truncating", &fresh.store_path))?;
        segments.sealed.truncate(t);
        segments.damaged.retain(|d| d.segment.0 < meta.base);
        segments.epoch += 1;
        segments.active = fresh.clone();
        w.active = fresh;
        w.store_bytes = position;
        w.pending_seal.retain(|p| p.base < meta.base);
        Ok(())
    }

    /// Drops whole segments whose records are all below `before` (never the active
    /// segment), e.g. after a snapshot or for retention; returns the bytes freed.
    /// `first_offset` becomes the base of the oldest remaining segment, which may
    /// still be below `before`.
    pub fn truncate_prefix(&self, before: Offset) -> Result<u64> {
        self.check_open()?;
        let _sync = lock!(self.sync_lock);
        let (bases, freed) = {
            let mut w = lock!(self.writer);
            let mut segments = write_lock!(self.segments);
            let n = (0..segments.sealed.len())
                .take_while(|&i| segments.sealed_next(i) <= before.0)
                .count();
            self.detach_oldest(&mut w, &mut segments, n)?
        };
        self.delete_detached(&bases, freed)?;
        Ok(freed)
    }

    /// Removes the `n` oldest sealed segments from the in-memory log (readers stop
    /// seeing them at once) and returns their bases and size. The caller deletes
    /// the files with [`Log::delete_detached`] after releasing `writer` and
    /// `segments`, still holding `sync` (so no sync touches them meanwhile).
    fn detach_oldest(
        &self,
        w: &mut Writer,
        segments: &mut Segments,
        n: usize,
    ) -> Result<(Vec<u64>, u64)> {
        if n == 0 {
            return Ok((Vec::new(), 0));
        }
        let freed: u64 = (0..n).map(|i| segments.sealed_bytes(i)).sum();
        let bases: Vec<u64> = segments.sealed[..n].iter().map(|m| m.base).collect();
        {
            let mut cache = lock!(self.cache);
            for base in &bases {
                cache.remove(*base);
            }
        }
        w.pending_seal.retain(|p| !bases.contains(&p.base));
        segments.sealed.drain(..n);
        for base in &bases {
            segments.forget_damage(*base);
        }
        self.first_offset
            .store(segments.first_offset(), Ordering::Release);
        Ok((bases, freed))
    }

    /// Deletes detached segments, oldest first (a crash leaves a contiguous log),
    /// and fsyncs the directory.
    fn delete_detached(&self, bases: &[u64], freed: u64) -> Result<()> {
        if bases.is_empty() {
            return Ok(());
        }
        // The checkpoint stops listing them before they go.
        let durable_end = self.durable_offset.load(Ordering::Acquire);
        let result = self
            .write_checkpoint(durable_end, u64::MAX, true)
            .and_then(|()| recovery::remove_segments_oldest_first(&self.dir, bases))
            .and_then(|()| segment::sync_dir(&self.dir));
        if let Err(error) = result {
            return Err(self.fail(error));
        }
        log::info!(
            "log {}: removed {} segment(s), {freed} bytes; first offset now {}",
            self.dir.display(),
            bases.len(),
            self.first_offset()
        );
        Ok(())
    }

    /// Drops everything and leaves an empty log whose next offset is `start`
    /// (InstallSnapshot). Not atomic across a crash: a crash during reset leaves the
    /// old log minus some of its oldest segments, or an empty log at
    /// `config.initial_offset`, or the new empty log; the caller's snapshot metadata
    /// must say which state it expects and reset again if needed.
    pub fn reset(&self, start: Offset) -> Result<()> {
        self.check_open()?;
        let _sync = lock!(self.sync_lock);
        let mut guard = lock!(self.writer);
        let w = &mut *guard;
        let mut segments = write_lock!(self.segments);
        lock!(self.cache).clear();
        let mut bases: Vec<u64> = segments.sealed.iter().map(|m| m.base).collect();
        bases.push(segments.active.base);
        // Nothing below `start` is required any more (written before the removal).
        let checkpoint = Checkpoint {
            durable_end: start.0,
            bases: vec![start.0],
        };
        // What the checkpoint says is no longer known here: the next sync or
        // `checkpoint` writes it again.
        *lock!(self.checkpoint_written) = None;
        let result = checkpoint::write_or_remove(&self.dir, &checkpoint)
            .and_then(|_| recovery::remove_segments_oldest_first(&self.dir, &bases))
            .and_then(|()| segment::sync_dir(&self.dir))
            .and_then(|()| ActiveSegment::open(&self.dir, start.0, self.index_capacity, 0))
            .and_then(|fresh| {
                // Old files were unlinked above, so this is a new, empty file.
                fresh
                    .files()?
                    .store
                    .set_len(0)
                    .map_err(io_err("clearing", &fresh.store_path))?;
                segment::sync_dir(&self.dir)?;
                Ok(fresh)
            });
        let fresh = match result {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => return Err(self.fail(error)),
        };
        segments.sealed.clear();
        segments.damaged.clear();
        segments.epoch += 1;
        segments.active = fresh.clone();
        w.active = fresh;
        w.next_offset = start.0;
        w.store_bytes = 0;
        w.pending_seal.clear();
        w.unsynced_creations = 0;
        w.rolling_back_to = None;
        self.first_offset.store(start.0, Ordering::Release);
        self.publication.publish(start.0, 0);
        self.durable_offset.store(start.0, Ordering::Release);
        drop(segments);
        self.forget_times_from(0);
        log::info!("log {}: reset to start at {start}", self.dir.display());
        Ok(())
    }

    /// Applies the configured retention (total bytes and/or age, both off by
    /// default): drops the oldest whole sealed segments, never the active one.
    /// A segment's age is measured from its newest record timestamp, capped at
    /// its store file's modification time (its last write), or from that time
    /// alone when it has no timestamped record (`storage/retention.rs`), to `now`.
    /// Returns the bytes freed.
    pub fn apply_retention(&self, now: SystemTime) -> Result<u64> {
        self.check_open()?;
        if self.retention() == (None, None) {
            return Ok(0);
        }
        // Before any lock: it may read segments to rebuild their time indexes.
        let expired = self.expired_by_age(now, true)?;
        let _sync = lock!(self.sync_lock);
        let (bases, freed) = {
            let mut w = lock!(self.writer);
            let mut segments = write_lock!(self.segments);
            let n = self.retention_count(&w, &segments, &expired)?;
            self.detach_oldest(&mut w, &mut segments, n)?
        };
        self.delete_detached(&bases, freed)?;
        Ok(freed)
    }

    /// The first offset that [`Log::apply_retention`] would keep at `now` (the
    /// current first offset when it would drop nothing), without dropping anything.
    /// A Raft node uses it to pick its compaction point: it compacts its committed
    /// prefix up to there, then calls [`Log::truncate_prefix`].
    ///
    /// It never reads a segment (it runs on the raft thread, where reading a big
    /// segment would stall every produce): a sealed segment whose newest record
    /// time is not known yet (no `.timeindex` file: a segment sealed before a
    /// restart, or rewritten by compaction) counts by its file's modification time
    /// alone, which is never earlier than its capped record time, so it is kept
    /// at least as long; [`Log::build_time_index`] fills the gap in the background.
    pub fn retention_point(&self, now: SystemTime) -> Result<Offset> {
        self.check_open()?;
        let expired = self.expired_by_age(now, false)?;
        let w = lock!(self.writer);
        let segments = read_lock!(self.segments);
        let n = self.retention_count(&w, &segments, &expired)?;
        if n == 0 {
            return Ok(Offset(segments.first_offset()));
        }
        Ok(Offset(segments.sealed_next(n - 1)))
    }

    /// Bases of the oldest sealed segments the configured age limit drops at `now`;
    /// `read`: segments without a time index may be read to build one.
    fn expired_by_age(&self, now: SystemTime, read: bool) -> Result<Vec<u64>> {
        match self.retention().1 {
            Some(max_age) => self.age_expired_bases(max_age, now, read),
            None => Ok(Vec::new()),
        }
    }

    /// How many of the oldest sealed segments the configured retention drops;
    /// `expired` are the bases the age limit drops (computed before the locks
    /// were taken: only the oldest segments still listed in that order count).
    fn retention_count(&self, w: &Writer, segments: &Segments, expired: &[u64]) -> Result<usize> {
        let sizes: Vec<u64> = (0..segments.sealed.len())
            .map(|i| segments.sealed_bytes(i))
            .collect();
        let active_bytes = w.store_bytes + (w.next_offset - w.active.base) * SLOT_BYTES;
        let retention_bytes = self.retention().0;
        let by_bytes = retention_bytes.map_or(0, |limit| {
            retention::drop_for_bytes(&sizes, active_bytes, limit)
        });
        let by_age = segments
            .sealed
            .iter()
            .zip(expired)
            .take_while(|(meta, base)| meta.base == **base)
            .count();
        Ok(by_bytes.max(by_age))
    }
}
