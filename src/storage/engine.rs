//! [`Log`]: the segmented log itself (appends, reads, truncation, sync, retention).
//! The design, formats and lock order are in the module doc of [`crate::storage`].

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::cache::{SegmentCache, SEALED_CACHE_CAPACITY};
use super::error::{Result, StorageError};
use super::index::{self, SLOT_BYTES};
use super::publish::Publication;
use super::record::{
    encode_into, encoded_bytes, to_record, NewRecord, Record, RECORD_HEADER_BYTES,
};
use super::recovery::{self, SealedMeta};
use super::retention;
use super::segment::{self, ActiveSegment, FrameReader, SealedSegment, Step};
use super::LogConfig;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, RwLock};
use crate::types::Offset;

/// Smallest and largest chunk read by one `pread` in `read_range`.
const MIN_READ_CHUNK_BYTES: u64 = 64 * 1024;
const MAX_READ_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes read with the header of a single record (usually the whole record).
const SINGLE_READ_CHUNK_BYTES: u64 = 4096;
/// The append buffer is shrunk back to this after a larger batch.
const KEEP_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// A reader thread keeps its read buffer up to this size between calls.
const KEEP_READ_BUFFER_BYTES: usize = 2 * MAX_READ_CHUNK_BYTES as usize;

std::thread_local! {
    /// Each reader thread's reusable `read_range` buffer (bounded by
    /// `KEEP_READ_BUFFER_BYTES` between calls).
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes a lock; a poisoned lock (a panic while holding it, i.e. a bug) closes the log.
macro_rules! lock {
    ($mutex:expr) => {
        $mutex.lock().map_err(|_| StorageError::Closed)?
    };
}
macro_rules! read_lock {
    ($rwlock:expr) => {
        $rwlock.read().map_err(|_| StorageError::Closed)?
    };
}
macro_rules! write_lock {
    ($rwlock:expr) => {
        $rwlock.write().map_err(|_| StorageError::Closed)?
    };
}

/// A sealed segment rolled in this process whose files are not yet fsynced and
/// whose index is not yet trimmed; the next [`Log::sync`] seals it on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingSeal {
    base: u64,
    count: u64,
}

/// State of the append path, behind the `writer` mutex.
#[derive(Debug)]
struct Writer {
    active: Arc<ActiveSegment>,
    next_offset: u64,
    /// Bytes written to the active store.
    store_bytes: u64,
    /// Reused encoding buffer: one batch (per segment) becomes one write.
    buf: Vec<u8>,
    pending_seal: Vec<PendingSeal>,
    /// Segments created since the directory was last fsynced.
    unsynced_creations: u64,
}

/// The segment list readers consult, behind the `segments` RwLock.
#[derive(Debug)]
struct Segments {
    /// Oldest first; the active segment follows the last one.
    sealed: Vec<SealedMeta>,
    active: Arc<ActiveSegment>,
}

impl Segments {
    /// First offset after sealed segment `i`.
    fn sealed_next(&self, i: usize) -> u64 {
        self.sealed
            .get(i + 1)
            .map_or(self.active.base, |meta| meta.base)
    }

    fn first_offset(&self) -> u64 {
        self.sealed
            .first()
            .map_or(self.active.base, |meta| meta.base)
    }

    /// Index of the sealed segment holding `offset` (which is below the active base).
    fn sealed_holding(&self, offset: u64) -> Option<usize> {
        self.sealed
            .partition_point(|meta| meta.base <= offset)
            .checked_sub(1)
    }

    fn sealed_bytes(&self, i: usize) -> u64 {
        let meta = self.sealed[i];
        meta.store_bytes + (self.sealed_next(i) - meta.base) * SLOT_BYTES
    }
}

/// Where one segment's readable records are.
struct View<'a> {
    file: &'a std::fs::File,
    path: &'a Path,
    /// Readable bytes of the store.
    end: u64,
    /// Store position of the first record wanted.
    position: u64,
    /// One past the last readable offset in this segment.
    next: u64,
}

/// A segmented, crash-safe, append-only log. `Send + Sync`: share it as `Arc<Log>`.
///
/// Appends are serialized internally; reads run concurrently with appends and
/// fsyncs and see only fully written records. Records are durable once [`Log::sync`]
/// has returned an offset above them.
#[derive(Debug)]
pub struct Log {
    /// Holds an exclusive `flock` on `<dir>/LOCK` while the log is open.
    lock_file: fs::File,
    dir: PathBuf,
    config: LogConfig,
    index_capacity: u64,
    sync_lock: Mutex<()>,
    writer: Mutex<Writer>,
    segments: RwLock<Segments>,
    cache: Mutex<SegmentCache>,
    publication: Publication,
    first_offset: AtomicU64,
    durable_offset: AtomicU64,
    closed: AtomicBool,
}

/// Name of the lock file in a log directory.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";

/// Takes an exclusive advisory lock on the directory, so a second `Log` (in this
/// or another process) cannot open it and break the mmap invariant.
fn lock_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("creating", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::io(
            format!("locking {}", path.display()),
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the log is already open (in this or another process)",
            ),
        )),
        Err(fs::TryLockError::Error(e)) => {
            Err(StorageError::io(format!("locking {}", path.display()), e))
        }
    }
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = format!("{what} {}", path.display());
    move |e| StorageError::io(context, e)
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log starting at
    /// `config.initial_offset` if needed, and recovers it (see the module doc).
    ///
    /// The directory is locked (`flock` on `LOCK`) while open: a second `open` of the
    /// same directory fails with an `Io` error of kind `WouldBlock`.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        if config.max_store_bytes > u64::from(u32::MAX)
            || config.max_store_bytes < RECORD_HEADER_BYTES as u64
        {
            return Err(StorageError::InvalidConfig {
                reason: format!(
                    "max_store_bytes must be between {RECORD_HEADER_BYTES} and {} (got {})",
                    u32::MAX,
                    config.max_store_bytes
                ),
            });
        }
        let index_capacity = index::capacity_slots(config.max_index_bytes);
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let lock_file = lock_dir(dir)?;
        let recovered = recovery::recover(dir, index_capacity, config.initial_offset.0)?;
        // Recovery fsynced every file it kept; make their directory entries durable too.
        segment::sync_dir(dir)?;
        let active = Arc::new(recovered.active);
        let next_offset = active.base + recovered.active_count;
        let segments = Segments {
            sealed: recovered.sealed,
            active: active.clone(),
        };
        let first_offset = segments.first_offset();
        log::info!(
            "opened log {}: offsets [{first_offset}, {next_offset}) in {} segment(s)",
            dir.display(),
            segments.sealed.len() + 1
        );
        Ok(Log {
            lock_file,
            dir: dir.to_path_buf(),
            index_capacity,
            sync_lock: Mutex::new(()),
            writer: Mutex::new(Writer {
                active,
                next_offset,
                store_bytes: recovered.active_store_bytes,
                buf: Vec::new(),
                pending_seal: Vec::new(),
                unsynced_creations: 0,
            }),
            segments: RwLock::new(segments),
            cache: Mutex::new(SegmentCache::new(SEALED_CACHE_CAPACITY)),
            publication: Publication::new(next_offset, recovered.active_store_bytes),
            first_offset: AtomicU64::new(first_offset),
            // Recovery fsynced everything it kept.
            durable_offset: AtomicU64::new(next_offset),
            closed: AtomicBool::new(false),
            config,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    /// Marks the log unusable after a failure that left the disk in an unknown state.
    fn fail(&self, error: StorageError) -> StorageError {
        log::error!("log {} shuts down after: {error}", self.dir.display());
        self.closed.store(true, Ordering::Release);
        error
    }

    /// Appends one record; returns its offset.
    pub fn append(&self, record: NewRecord<'_>) -> Result<Offset> {
        self.append_batch(std::slice::from_ref(&record))
    }

    /// Appends records with contiguous offsets; returns the offset of the first
    /// (the next offset if `records` is empty). The batch is encoded into one buffer
    /// and written with one positioned write per segment it lands in, then
    /// published to readers.
    ///
    /// On error nothing of the batch is visible and the log stays usable, except
    /// when the batch spans segments and fails after its first part was published:
    /// then the log closes itself (fail-stop; reopening recovers a consistent log
    /// holding a prefix of the batch).
    pub fn append_batch(&self, records: &[NewRecord<'_>]) -> Result<Offset> {
        self.check_open()?;
        let max_bytes = self.config.max_store_bytes;
        for record in records {
            let bytes = encoded_bytes(record.value.len());
            if bytes > max_bytes {
                return Err(StorageError::RecordTooLarge { bytes, max_bytes });
            }
        }
        let mut guard = lock!(self.writer);
        self.check_open()?;
        let w = &mut *guard;
        let first = w.next_offset;
        if first.checked_add(records.len() as u64).is_none() {
            return Err(StorageError::InvalidConfig {
                reason: "offsets would overflow u64".into(),
            });
        }
        let mut rest = records;
        // Bounded: every iteration appends at least one record.
        while !rest.is_empty() {
            let need = encoded_bytes(rest[0].value.len());
            let count = w.next_offset - w.active.base;
            let mut step = Ok(());
            if count > 0 && (w.store_bytes + need > max_bytes || count >= w.active.capacity) {
                step = self.roll(w);
            }
            match step.and_then(|()| self.append_chunk(w, rest)) {
                Ok(written) => rest = &rest[written..],
                Err(error) if w.next_offset == first => return Err(error),
                Err(error) => return Err(self.fail(error)),
            }
        }
        if w.buf.capacity() > KEEP_BUFFER_BYTES {
            w.buf = Vec::new();
        }
        Ok(Offset(first))
    }

    /// Writes as many of `records` as fit in the active segment (at least one; the
    /// caller rolled if needed) and publishes them. Returns how many.
    fn append_chunk(&self, w: &mut Writer, records: &[NewRecord<'_>]) -> Result<usize> {
        let max_bytes = self.config.max_store_bytes;
        let active = w.active.clone();
        let start = w.store_bytes;
        let mut position = start;
        let mut offset = w.next_offset;
        w.buf.clear();
        let mut taken = 0;
        for record in records {
            let need = encoded_bytes(record.value.len());
            let slot = offset - active.base;
            if taken > 0 && (position + need > max_bytes || slot >= active.capacity) {
                break;
            }
            // Index slots of unpublished records are invisible to readers, so they
            // can be written before the bytes they point at.
            if !active.set_position(slot, position) {
                return Err(StorageError::corrupt(
                    &active.index_path,
                    slot * SLOT_BYTES,
                    "internal: index slot out of range",
                ));
            }
            encode_into(&mut w.buf, offset, record);
            position += need;
            offset += 1;
            taken += 1;
        }
        if let Err(e) = active.store.write_all_at(&w.buf, start) {
            let error =
                StorageError::io(format!("appending to {}", active.store_path.display()), e);
            // Nothing was published; drop any partial write so the next append
            // starts on a record boundary.
            return match active.store.set_len(start) {
                Ok(()) => Err(error),
                Err(_) => Err(self.fail(error)),
            };
        }
        w.store_bytes = position;
        w.next_offset = offset;
        self.publication.publish(offset, position);
        Ok(taken)
    }

    /// Seals the active segment (in memory; on disk at the next sync) and starts a
    /// new one at the next offset.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let base = w.next_offset;
        let fresh = ActiveSegment::open(&self.dir, base, self.index_capacity)?;
        fresh
            .store
            .set_len(0)
            .map_err(io_err("clearing", &fresh.store_path))?;
        let fresh = Arc::new(fresh);
        let old = std::mem::replace(&mut w.active, fresh.clone());
        {
            let mut segments = write_lock!(self.segments);
            segments.sealed.push(SealedMeta {
                base: old.base,
                store_bytes: w.store_bytes,
            });
            segments.active = fresh;
            self.publication.publish(base, 0);
        }
        w.pending_seal.push(PendingSeal {
            base: old.base,
            count: base - old.base,
        });
        w.store_bytes = 0;
        w.unsynced_creations += 1;
        log::debug!("log {}: rolled to segment {base}", self.dir.display());
        Ok(())
    }

    /// The record at `offset`.
    pub fn read(&self, offset: Offset) -> Result<Record> {
        self.check_open()?;
        let segments = read_lock!(self.segments);
        let snapshot = self.publication.snapshot();
        let first = self.first_offset.load(Ordering::Acquire);
        if offset.0 < first || offset.0 >= snapshot.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                first: Offset(first),
                next: Offset(snapshot.next_offset),
            });
        }
        let sealed_segment;
        let view = if offset.0 >= segments.active.base {
            let active = &segments.active;
            View {
                file: &active.store,
                path: &active.store_path,
                end: snapshot.active_store_end,
                position: active.position(offset.0 - active.base)?,
                next: snapshot.next_offset,
            }
        } else {
            sealed_segment = self.sealed_segment(&segments, offset.0)?;
            sealed_view(&sealed_segment, offset.0)?
        };
        let mut reader = FrameReader::new(
            view.file,
            view.path,
            view.position,
            view.end,
            SINGLE_READ_CHUNK_BYTES,
        );
        match reader.next_step()? {
            Step::Record {
                position,
                header,
                frame,
            } => {
                if header.offset != offset.0 {
                    return Err(StorageError::corrupt(
                        view.path,
                        position,
                        format!(
                            "index points at offset {} when {offset} was asked",
                            header.offset
                        ),
                    ));
                }
                Ok(to_record(&header, frame))
            }
            Step::End => Err(StorageError::corrupt(
                view.path,
                view.position,
                "index points past the store end",
            )),
            Step::Invalid {
                position, reason, ..
            } => Err(StorageError::corrupt(view.path, position, reason)),
        }
    }

    /// Records from `from` on, stopping before `max_bytes` of record values would
    /// be exceeded, but always at least one record if `from < next_offset()`; empty
    /// if `from == next_offset()`. Every record's crc and offset are checked.
    pub fn read_range(&self, from: Offset, max_bytes: u64) -> Result<Vec<Record>> {
        self.check_open()?;
        let segments = read_lock!(self.segments);
        let snapshot = self.publication.snapshot();
        let first = self.first_offset.load(Ordering::Acquire);
        if from.0 == snapshot.next_offset && from.0 >= first {
            return Ok(Vec::new());
        }
        if from.0 < first || from.0 > snapshot.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                first: Offset(first),
                next: Offset(snapshot.next_offset),
            });
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut offset = from.0;
        // Bounded: every iteration moves to a later segment or returns.
        while offset < snapshot.next_offset {
            let sealed_segment;
            let view = if offset >= segments.active.base {
                let active = &segments.active;
                View {
                    file: &active.store,
                    path: &active.store_path,
                    end: snapshot.active_store_end,
                    position: active.position(offset - active.base)?,
                    next: snapshot.next_offset,
                }
            } else {
                sealed_segment = self.sealed_segment(&segments, offset)?;
                sealed_view(&sealed_segment, offset)?
            };
            let chunk = budget
                .saturating_add(budget / 2)
                .clamp(MIN_READ_CHUNK_BYTES, MAX_READ_CHUNK_BYTES);
            let buf = READ_BUFFER.with(|b| b.take());
            let mut reader =
                FrameReader::with_buffer(view.file, view.path, view.position, view.end, chunk, buf);
            let result = read_segment(&mut reader, &view, &mut offset, &mut budget, &mut out);
            let mut buf = reader.into_buffer();
            if buf.len() > KEEP_READ_BUFFER_BYTES {
                buf = Vec::new();
            }
            READ_BUFFER.with(|b| b.set(buf));
            if !result? {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Opens (or takes from the cache) the sealed segment holding `offset`.
    fn sealed_segment(&self, segments: &Segments, offset: u64) -> Result<Arc<SealedSegment>> {
        let i = segments.sealed_holding(offset).ok_or_else(|| {
            StorageError::corrupt(&self.dir, 0, "no segment holds a readable offset")
        })?;
        let meta = segments.sealed[i];
        if let Some(segment) = lock!(self.cache).get(meta.base) {
            return Ok(segment);
        }
        let count = segments.sealed_next(i) - meta.base;
        let segment = Arc::new(SealedSegment::open(
            &self.dir,
            meta.base,
            count,
            meta.store_bytes,
        )?);
        lock!(self.cache).insert(segment.clone());
        Ok(segment)
    }

    /// First readable offset.
    pub fn first_offset(&self) -> Offset {
        Offset(self.first_offset.load(Ordering::Acquire))
    }

    /// One past the last appended (and readable) record.
    pub fn next_offset(&self) -> Offset {
        Offset(self.publication.next_offset())
    }

    /// The last appended record's offset, `None` when the log is empty.
    pub fn last_offset(&self) -> Option<Offset> {
        let next = self.publication.next_offset();
        (next > self.first_offset.load(Ordering::Acquire)).then(|| Offset(next - 1))
    }

    /// The offset below which every record is durable (fsynced).
    pub fn durable_offset(&self) -> Offset {
        Offset(self.durable_offset.load(Ordering::Acquire))
    }

    /// fsyncs everything appended so far and returns the offset below which
    /// everything is durable. Appends continue while it runs (the append lock is
    /// held only to take a snapshot), so many appends share one fsync: group commit.
    /// Segments rolled since the last sync are sealed on disk first (store and index
    /// fsynced, index trimmed) and the directory is fsynced if segments were created.
    ///
    /// An fsync failure closes the log (after a failed fsync the kernel may have
    /// dropped the dirty pages, so retrying could falsely report success).
    pub fn sync(&self) -> Result<Offset> {
        self.check_open()?;
        let _sync = lock!(self.sync_lock);
        let (active, target, pending, creations) = {
            let w = lock!(self.writer);
            (
                w.active.clone(),
                w.next_offset,
                w.pending_seal.clone(),
                w.unsynced_creations,
            )
        };
        let result = self.sync_files(&active, &pending, creations);
        drop(active);
        if let Err(error) = result {
            return Err(self.fail(error));
        }
        {
            let mut w = lock!(self.writer);
            w.pending_seal.retain(|p| !pending.contains(p));
            w.unsynced_creations -= creations;
        }
        self.durable_offset.fetch_max(target, Ordering::AcqRel);
        Ok(self.durable_offset())
    }

    fn sync_files(
        &self,
        active: &ActiveSegment,
        pending: &[PendingSeal],
        creations: u64,
    ) -> Result<()> {
        for seal in pending {
            let store_path = segment::store_path(&self.dir, seal.base);
            let index_path = segment::index_path(&self.dir, seal.base);
            std::fs::File::open(&store_path)
                .and_then(|f| f.sync_data())
                .map_err(io_err("fsyncing", &store_path))?;
            // The index is no longer mapped (it was unmapped at the roll, and the only
            // other holder of the mapping, a previous sync, has finished), so it may
            // be trimmed: this is what marks the segment sealed on disk.
            let index = OpenOptions::new()
                .write(true)
                .open(&index_path)
                .map_err(io_err("opening", &index_path))?;
            index
                .sync_data()
                .and_then(|()| index.set_len(index::sealed_file_bytes(seal.count)))
                .and_then(|()| index.sync_all())
                .map_err(io_err("sealing", &index_path))?;
        }
        active
            .store
            .sync_data()
            .map_err(io_err("fsyncing", &active.store_path))?;
        if creations > 0 || !pending.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Drops every record after `keep_through` (`None`: every record), e.g. when a
    /// Raft leader overwrites a conflicting suffix. The next append gets offset
    /// `keep_through + 1`. Durable on return (files cut and fsynced, directory
    /// fsynced); `durable_offset` is lowered to the new end if it was above it.
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
        let mut segments = write_lock!(self.segments);
        let mut cache = lock!(self.cache);
        let result = if new_next >= w.active.base {
            self.cut_active(w, new_next)
        } else {
            self.cut_into_sealed(w, &mut segments, &mut cache, new_next)
        };
        if let Err(error) = result {
            return Err(self.fail(error));
        }
        w.next_offset = new_next;
        self.publication.publish(new_next, w.store_bytes);
        self.durable_offset.fetch_min(new_next, Ordering::AcqRel);
        log::info!(
            "log {}: truncated after {:?} (next offset {new_next})",
            self.dir.display(),
            keep_through
        );
        Ok(())
    }

    fn cut_active(&self, w: &mut Writer, new_next: u64) -> Result<()> {
        let active = &w.active;
        let position = active.position(new_next - active.base)?;
        active
            .store
            .set_len(position)
            .and_then(|()| active.store.sync_data())
            .map_err(io_err("truncating", &active.store_path))?;
        w.store_bytes = position;
        Ok(())
    }

    fn cut_into_sealed(
        &self,
        w: &mut Writer,
        segments: &mut Segments,
        cache: &mut SegmentCache,
        new_next: u64,
    ) -> Result<()> {
        let t = segments.sealed_holding(new_next).ok_or_else(|| {
            StorageError::corrupt(&self.dir, 0, "no segment holds the truncation point")
        })?;
        let meta = segments.sealed[t];
        let count = segments.sealed_next(t) - meta.base;
        let position = if new_next == meta.base {
            0
        } else {
            SealedSegment::open(&self.dir, meta.base, count, meta.store_bytes)?
                .position(new_next - meta.base)?
        };
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
        let fresh = Arc::new(ActiveSegment::open(
            &self.dir,
            meta.base,
            self.index_capacity.max(count),
        )?);
        fresh
            .store
            .set_len(position)
            .and_then(|()| fresh.store.sync_data())
            .map_err(io_err("truncating", &fresh.store_path))?;
        segment::sync_dir(&self.dir)?;
        segments.sealed.truncate(t);
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
        let result = recovery::remove_segments_oldest_first(&self.dir, bases)
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
        let result = recovery::remove_segments_oldest_first(&self.dir, &bases)
            .and_then(|()| segment::sync_dir(&self.dir))
            .and_then(|()| ActiveSegment::open(&self.dir, start.0, self.index_capacity))
            .and_then(|fresh| {
                // Old files were unlinked above, so this is a new, empty file.
                fresh
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
        segments.active = fresh.clone();
        w.active = fresh;
        w.next_offset = start.0;
        w.store_bytes = 0;
        w.pending_seal.clear();
        w.unsynced_creations = 0;
        self.first_offset.store(start.0, Ordering::Release);
        self.publication.publish(start.0, 0);
        self.durable_offset.store(start.0, Ordering::Release);
        log::info!("log {}: reset to start at {start}", self.dir.display());
        Ok(())
    }

    /// Applies the configured retention (total bytes and/or age, both off by
    /// default): drops the oldest whole sealed segments, never the active one.
    /// A segment's age is measured from its store file's modification time (its
    /// last write) to `now`. Returns the bytes freed.
    pub fn apply_retention(&self, now: SystemTime) -> Result<u64> {
        self.check_open()?;
        if self.config.retention_bytes.is_none() && self.config.retention_age.is_none() {
            return Ok(0);
        }
        let _sync = lock!(self.sync_lock);
        let (bases, freed) = {
            let mut w = lock!(self.writer);
            let mut segments = write_lock!(self.segments);
            let sizes: Vec<u64> = (0..segments.sealed.len())
                .map(|i| segments.sealed_bytes(i))
                .collect();
            let active_bytes = w.store_bytes + (w.next_offset - w.active.base) * SLOT_BYTES;
            let by_bytes = self.config.retention_bytes.map_or(0, |limit| {
                retention::drop_for_bytes(&sizes, active_bytes, limit)
            });
            let by_age = match self.config.retention_age {
                None => 0,
                Some(max_age) => {
                    let mut modified = |i: usize| -> Result<SystemTime> {
                        let path = segment::store_path(&self.dir, segments.sealed[i].base);
                        fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .map_err(io_err("stat", &path))
                    };
                    retention::drop_for_age(sizes.len(), max_age, now, &mut modified)?
                }
            };
            self.detach_oldest(&mut w, &mut segments, by_bytes.max(by_age))?
        };
        self.delete_detached(&bases, freed)?;
        Ok(freed)
    }

    /// Bytes the log occupies: store bytes plus used index bytes of every segment.
    pub fn size_bytes(&self) -> u64 {
        let Ok(segments) = self.segments.read() else {
            return 0;
        };
        let snapshot = self.publication.snapshot();
        let sealed: u64 = (0..segments.sealed.len())
            .map(|i| segments.sealed_bytes(i))
            .sum();
        let active_count = snapshot.next_offset.saturating_sub(segments.active.base);
        sealed + snapshot.active_store_end + active_count * SLOT_BYTES
    }

    /// Number of segments (sealed + the active one).
    pub fn segment_count(&self) -> usize {
        self.segments.read().map_or(0, |s| s.sealed.len() + 1)
    }

    /// fsyncs, then trims the active index to its used length. Reopening a closed
    /// log still validates the last segment.
    pub fn close(self) -> Result<()> {
        self.sync()?;
        let (index_path, count) = {
            let w = lock!(self.writer);
            (w.active.index_path.clone(), w.next_offset - w.active.base)
        };
        let dir = self.dir.clone();
        // Unmaps the index (only then may it be shrunk, see the mmap invariant) but
        // keeps the directory locked until the trim is done.
        let Log { lock_file, .. } = self;
        let index = OpenOptions::new()
            .write(true)
            .open(&index_path)
            .map_err(io_err("opening", &index_path))?;
        index
            .set_len(index::sealed_file_bytes(count))
            .and_then(|()| index.sync_all())
            .map_err(io_err("trimming", &index_path))?;
        segment::sync_dir(&dir)?;
        drop(lock_file);
        log::info!("closed log {}", dir.display());
        Ok(())
    }
}

/// Appends the records of one segment from `*offset` on to `out`, within `*budget`
/// value bytes (but at least one record overall). Returns false when the budget
/// stopped it, true when it reached the end of the segment's readable records.
fn read_segment(
    reader: &mut FrameReader<'_>,
    view: &View<'_>,
    offset: &mut u64,
    budget: &mut u64,
    out: &mut Vec<Record>,
) -> Result<bool> {
    while *offset < view.next {
        match reader.next_step()? {
            Step::Record {
                position,
                header,
                frame,
            } => {
                if header.offset != *offset {
                    return Err(StorageError::corrupt(
                        view.path,
                        position,
                        format!(
                            "record holds offset {} where {offset} belongs",
                            header.offset
                        ),
                    ));
                }
                let value_bytes = u64::from(header.value_len);
                if value_bytes > *budget && !out.is_empty() {
                    return Ok(false);
                }
                *budget = budget.saturating_sub(value_bytes);
                out.push(to_record(&header, frame));
                *offset += 1;
            }
            Step::End => {
                return Err(StorageError::corrupt(
                    view.path,
                    reader.position(),
                    format!("store ends before offset {offset}"),
                ))
            }
            Step::Invalid {
                position, reason, ..
            } => return Err(StorageError::corrupt(view.path, position, reason)),
        }
    }
    Ok(true)
}

/// The view of sealed `segment` starting at `offset`.
fn sealed_view(segment: &SealedSegment, offset: u64) -> Result<View<'_>> {
    Ok(View {
        file: &segment.store,
        path: &segment.store_path,
        end: segment.store_bytes,
        position: segment.position(offset - segment.base)?,
        next: segment.base + segment.count,
    })
}

#[cfg(test)]
impl Log {
    /// Sealed segments currently open in the cache.
    pub(crate) fn open_sealed_segments(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}
