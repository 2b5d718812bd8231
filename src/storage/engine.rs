//! [`Log`]: the segmented log itself. This file holds the state, the three opens
//! (`open` strict, `open_and_repair` cutting, `open_for_replica` quarantining
//! damaged sealed segments), the append path, `sync` and `close`;
//! `engine/read.rs` the read path; `engine/maintenance.rs` truncation, reset and
//! retention; `engine/rebuild.rs` rebuilding a sealed segment from supplied
//! records. The design, formats and lock order are in the module doc of
//! [`crate::storage`].

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::{SegmentCache, PROCESS_BUDGET, SEALED_CACHE_CAPACITY};
use super::checkpoint::{self, Checkpoint};
use super::error::{Result, StorageError};
use super::index::{self, SLOT_BYTES};
use super::publish::Publication;
use super::record::{encode_into, encoded_bytes, NewRecord, RECORD_HEADER_BYTES};
use super::recovery::{self, DamagedRange, Mode, ReplicaRecovery, SealedMeta, TruncatedRange};
use super::segment::{self, ActiveFiles, ActiveSegment};
use super::LogConfig;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, RwLock};
use crate::types::Offset;

/// The append buffer is shrunk back to this after a larger batch.
const KEEP_BUFFER_BYTES: usize = 16 * 1024 * 1024;

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

mod maintenance;
mod read;
mod rebuild;
mod time;

pub use read::RecordRef;
pub use rebuild::{RebuildError, RebuildReport};

/// A sealed segment rolled in this process whose files are not yet fsynced and
/// whose index is not yet trimmed; the next [`Log::sync`] seals it on disk.
#[derive(Clone, Debug)]
struct PendingSeal {
    base: u64,
    count: u64,
    /// The handles it was written through, kept until the fsync: closing the last
    /// descriptor of a file with unsynced writes could lose a write error the
    /// kernel has not reported yet. `None`: released while everything was fsynced.
    files: Option<Arc<ActiveFiles>>,
}

impl PendingSeal {
    fn same(&self, other: &PendingSeal) -> bool {
        (self.base, self.count) == (other.base, other.count)
    }
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
    /// Set while a batch that failed half-way (after a roll) is being rolled back:
    /// appends are refused until the log is back at this offset.
    rolling_back_to: Option<u64>,
}

/// The segment list readers consult, behind the `segments` RwLock.
#[derive(Debug)]
struct Segments {
    /// Oldest first; the active segment follows the last one.
    sealed: Vec<SealedMeta>,
    active: Arc<ActiveSegment>,
    /// Damage of sealed segments found at open and not rebuilt since, oldest
    /// first (only [`Log::open_for_replica`] lists any).
    damaged: Vec<DamagedRange>,
    /// Bumped whenever sealed segments are cut away other than from the front
    /// (a suffix truncation into them, a reset): a segment with the same range
    /// may be written again afterwards, holding other records.
    epoch: u64,
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

    /// Forgets the damage listed for the segment with this base.
    fn forget_damage(&mut self, base: u64) {
        self.damaged.retain(|d| d.segment.0 != base);
    }

    fn sealed_bytes(&self, i: usize) -> u64 {
        let meta = self.sealed[i];
        meta.store_bytes + (self.sealed_next(i) - meta.base) * SLOT_BYTES
    }
}

/// A segmented, crash-safe, append-only log. `Send + Sync`: share it as `Arc<Log>`.
///
/// Appends are serialized internally; reads run concurrently with appends and
/// fsyncs and see only fully written records. Records are durable once [`Log::sync`]
/// has returned an offset above them.
#[derive(Debug)]
pub struct Log {
    /// Keeps other openers out of the directory while the log is open.
    dir_lock: HeldLock,
    dir: PathBuf,
    config: LogConfig,
    index_capacity: u64,
    /// Serializes [`Log::rebuild_sealed`] calls (held while files are built,
    /// which no other lock is).
    rebuild_lock: Mutex<()>,
    sync_lock: Mutex<()>,
    writer: Mutex<Writer>,
    segments: RwLock<Segments>,
    cache: Mutex<SegmentCache>,
    publication: Publication,
    first_offset: AtomicU64,
    durable_offset: AtomicU64,
    closed: AtomicBool,
    /// When the checkpoint was last written (only touched under the `sync` lock).
    /// and what it says (a clean stop of an idle log need not rewrite it).
    checkpoint_written: Mutex<Option<(std::time::Instant, Checkpoint)>>,
    /// Retention limits in force (bytes, age): the configuration's, until a topic's
    /// settings change them ([`Log::set_retention`]).
    retention: Mutex<Retention>,
    /// Time indexes kept in memory (`engine/time.rs`).
    time: Mutex<time::TimeState>,
}

/// Retention limits: total bytes, age.
type Retention = (Option<u64>, Option<std::time::Duration>);

/// Name of the lock file in a log directory.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";

/// How an open log keeps a second opener (in this or another process) out of its
/// directory, which the mmap invariant requires (`storage/mmap.rs`).
#[derive(Clone, Debug, Default)]
pub enum DirLock {
    /// An exclusive `flock` on `<dir>/LOCK`, held while the log is open (one
    /// descriptor per open log). Opening a log another holder has open fails.
    #[default]
    Own,
    /// The directory lies under the directory of this [`OuterLock`], whose holder
    /// opens each log under it at most once (a node and its groups): the log takes
    /// no lock of its own and keeps the outer one alive while it is open. Tools
    /// that open such a log directly must take the outer lock first (`commitlogd
    /// repair` does).
    Covered(Arc<OuterLock>),
}

/// An exclusive `flock` on `<dir>/LOCK` covering every log under `dir`
/// ([`DirLock::Covered`]); released when the last holder drops it.
#[derive(Debug)]
pub struct OuterLock {
    dir: PathBuf,
    _file: fs::File,
}

impl OuterLock {
    /// Locks `dir` (which must exist). Fails with an `Io` error of kind
    /// `WouldBlock` when another holder has it.
    pub fn acquire(dir: &Path) -> Result<OuterLock> {
        Ok(OuterLock {
            _file: lock_dir(dir)?,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory it covers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What an open log holds to keep its directory to itself.
#[derive(Debug)]
enum HeldLock {
    Own(#[allow(dead_code)] fs::File),
    Covered(#[allow(dead_code)] Arc<OuterLock>),
}

/// Takes the lock `config` asks for on the log directory `dir`.
fn hold_lock(dir: &Path, lock: &DirLock) -> Result<HeldLock> {
    match lock {
        DirLock::Own => lock_dir(dir).map(HeldLock::Own),
        DirLock::Covered(outer) if dir.starts_with(outer.dir()) => {
            Ok(HeldLock::Covered(Arc::clone(outer)))
        }
        DirLock::Covered(outer) => Err(StorageError::InvalidConfig {
            reason: format!(
                "log directory {} is not under the locked directory {}",
                dir.display(),
                outer.dir().display()
            ),
        }),
    }
}

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

/// Maps an I/O error to a `StorageError` naming what failed where. The message is
/// built only when there is an error (this sits on every fsync's path).
fn io_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::io(format!("{what} {}", path.display()), e)
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log starting at
    /// `config.initial_offset` if needed, and recovers it (see the module doc).
    ///
    /// The directory is locked (`flock` on `LOCK`) while open: a second `open` of the
    /// same directory fails with an `Io` error of kind `WouldBlock`.
    ///
    /// Damage that is not a torn tail (see `storage/recovery.rs`) is refused with
    /// [`StorageError::Corrupt`] whose [`StorageError::damage`] names the offsets at
    /// stake and whether `storage::repair` can truncate it away.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        Log::open_with(dir, config, Mode::Strict, None).map(|(log, _)| log)
    }

    /// Like [`Log::open`], but every corruption recovery would report (damage
    /// below the durable end or followed by valid records, a missing segment, a
    /// hole between segments) is cut off instead: the log ends just before it,
    /// later segments are deleted, and a warning says what was dropped. Returns the
    /// log and the range it cut (`None` when nothing was damaged; a plain torn tail
    /// is not reported).
    ///
    /// Records after the cut are lost, so use it only where they can be fetched
    /// again (a Raft follower re-fetches from the leader), typically after `open`
    /// returned [`StorageError::Corrupt`]; [`Log::open_for_replica`] loses less
    /// (it cuts only in the last segment). Sealed segments are still not scanned:
    /// damage there shows up as [`StorageError::CorruptRecord`] on read (and to the
    /// scrubber), and `truncate_suffix` to just before the damaged offset removes it.
    pub fn open_and_repair(dir: &Path, config: LogConfig) -> Result<(Log, Option<TruncatedRange>)> {
        Log::open_with(dir, config, Mode::Repair, None).map(|(log, recovery)| (log, recovery.cut))
    }

    /// The open of a replica that can refetch damaged records from its peers.
    /// Damage in the last (active) segment, or a lost tail, is cut exactly as
    /// [`Log::open_and_repair`] does (the Raft layer refetches the tail). Damage
    /// of a *sealed* segment (its files missing, a hole between segments, an
    /// index that disagrees with its store, a store cut short or with bytes after
    /// its last record) is quarantined instead: the segment keeps its offsets,
    /// later segments are untouched, `first_offset`/`next_offset` stay as they
    /// were, reads of the offsets that cannot be read return
    /// [`StorageError::CorruptRecord`] (all of the segment when no usable index
    /// or store is left) and reads elsewhere are unaffected. Returns the log, what
    /// was cut and the damaged ranges (also [`Log::damaged_ranges`]), which
    /// [`Log::rebuild_sealed`] repairs from records fetched from a peer.
    ///
    /// Retention, `truncate_prefix` and `truncate_suffix` work with quarantined
    /// segments present (removing one removes its damage from the list), except
    /// that `truncate_suffix` cannot keep part of a segment no read can use.
    pub fn open_for_replica(dir: &Path, config: LogConfig) -> Result<(Log, ReplicaRecovery)> {
        Log::open_with(dir, config, Mode::Replica, None)
    }

    /// Like [`Log::open_for_replica`] (`replica`) or [`Log::open`], for a log whose
    /// records from `journaled_from` on are also held by the node journal: a bad
    /// end of the newest segment at or after it is cut like a torn tail (a
    /// valid record after it, or the checkpoint's durable end, would otherwise
    /// make it damage), because the caller writes those records again from the
    /// journal. Anything wrong below it is treated as by the other opens.
    pub fn open_covered(
        dir: &Path,
        config: LogConfig,
        replica: bool,
        journaled_from: Offset,
    ) -> Result<(Log, ReplicaRecovery)> {
        let mode = if replica { Mode::Replica } else { Mode::Strict };
        Log::open_with(dir, config, mode, Some(journaled_from.0))
    }

    /// Damage of sealed segments found by [`Log::open_for_replica`] and not
    /// rebuilt, truncated or removed since, oldest first. Records found damaged
    /// later by reads or the scrubber are not added (the caller tracks those);
    /// [`Log::rebuild_sealed`] repairs them too.
    pub fn damaged_ranges(&self) -> Vec<DamagedRange> {
        self.segments
            .read()
            .map_or_else(|_| Vec::new(), |s| s.damaged.clone())
    }

    fn open_with(
        dir: &Path,
        config: LogConfig,
        mode: Mode,
        journaled_from: Option<u64>,
    ) -> Result<(Log, ReplicaRecovery)> {
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
        // An index holds 8-byte positions into a store of at most 4 GiB; bounding it
        // also keeps its file-size arithmetic far from overflow.
        if config.max_index_bytes > u64::from(u32::MAX) {
            return Err(StorageError::InvalidConfig {
                reason: format!(
                    "max_index_bytes must be at most {} (got {})",
                    u32::MAX,
                    config.max_index_bytes
                ),
            });
        }
        let index_capacity = index::capacity_slots(config.max_index_bytes);
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let dir_lock = hold_lock(dir, &config.dir_lock)?;
        // Recovery fsynced every file it kept and then the directory (a brand-new
        // log's directory waits for its first sync), so their entries are durable:
        // no second directory fsync (a node creating thousands of groups pays for
        // every one).
        let recovered = recovery::recover(
            dir,
            index_capacity,
            config.initial_offset.0,
            mode,
            journaled_from,
        )?;
        let active = Arc::new(recovered.active);
        let next_offset = active
            .base
            .checked_add(recovered.active_count)
            .ok_or_else(|| {
                StorageError::corrupt(
                    &active.store_path,
                    0,
                    "the active segment's offsets would pass u64::MAX",
                )
            })?;
        let segments = Segments {
            sealed: recovered.sealed,
            active: active.clone(),
            damaged: recovered.damaged.clone(),
            epoch: 0,
        };
        let first_offset = segments.first_offset();
        log::info!(
            "opened log {}: offsets [{first_offset}, {next_offset}) in {} segment(s)",
            dir.display(),
            segments.sealed.len() + 1
        );
        // Everything recovery kept is durable: record it, so a later open can tell
        // damage below this end from a torn tail.
        let mut bases: Vec<u64> = segments.sealed.iter().map(|m| m.base).collect();
        bases.push(segments.active.base);
        // A repair may have cut below the old durable end: never leave that one.
        // A brand-new log has nothing to vouch for yet: its first sync writes it.
        let opened = Checkpoint {
            durable_end: next_offset,
            bases,
        };
        let written = !recovered.fresh && checkpoint::write_or_remove(dir, &opened)?;
        let log = Log {
            dir_lock,
            dir: dir.to_path_buf(),
            index_capacity,
            rebuild_lock: Mutex::new(()),
            sync_lock: Mutex::new(()),
            writer: Mutex::new(Writer {
                active,
                next_offset,
                store_bytes: recovered.active_store_bytes,
                buf: Vec::new(),
                pending_seal: Vec::new(),
                // A brand-new log's segment: the first sync fsyncs the directory.
                unsynced_creations: u64::from(recovered.fresh),
                rolling_back_to: None,
            }),
            segments: RwLock::new(segments),
            cache: Mutex::new(SegmentCache::new(SEALED_CACHE_CAPACITY, &PROCESS_BUDGET)),
            publication: Publication::new(next_offset, recovered.active_store_bytes),
            first_offset: AtomicU64::new(first_offset),
            // Recovery fsynced everything it kept.
            durable_offset: AtomicU64::new(next_offset),
            closed: AtomicBool::new(false),
            checkpoint_written: Mutex::new(written.then(|| (std::time::Instant::now(), opened))),
            retention: Mutex::new((config.retention_bytes, config.retention_age)),
            time: Mutex::new(time::TimeState::default()),
            config,
        };
        let recovery = ReplicaRecovery {
            cut: recovered.repaired,
            damaged: recovered.damaged,
        };
        Ok((log, recovery))
    }

    /// The sealed segments as `(base, next base, indexed store bytes)`, oldest
    /// first; the store bytes are `None` for a quarantined segment no read can use.
    pub(crate) fn sealed_segments(&self) -> Vec<(u64, u64, Option<u64>)> {
        let Ok(segments) = self.segments.read() else {
            return Vec::new();
        };
        (0..segments.sealed.len())
            .map(|i| {
                let meta = segments.sealed[i];
                let store_bytes = (!meta.unreadable).then_some(meta.store_bytes);
                (meta.base, segments.sealed_next(i), store_bytes)
            })
            .collect()
    }

    /// Base offsets of every segment, oldest first.
    fn segment_bases(&self) -> Result<Vec<u64>> {
        let segments = read_lock!(self.segments);
        let mut bases: Vec<u64> = segments.sealed.iter().map(|m| m.base).collect();
        bases.push(segments.active.base);
        Ok(bases)
    }

    /// Writes the checkpoint (caller holds the `sync` lock, so no structural change
    /// races it): the current segments and `durable_end`, which must be a lower
    /// bound of what is fsynced. `required`: the write must not leave a checkpoint
    /// claiming more than is true (before a structural change), so on failure the
    /// old checkpoint is removed; otherwise a failure only leaves the older, still
    /// valid, checkpoint in place (with a warning).
    fn write_checkpoint(&self, durable_end: u64, keep_below: u64, required: bool) -> Result<()> {
        let checkpoint = Checkpoint {
            durable_end,
            bases: self
                .segment_bases()?
                .into_iter()
                .filter(|&b| b <= keep_below)
                .collect(),
        };
        let result = if required {
            checkpoint::write_or_remove(&self.dir, &checkpoint)
        } else {
            checkpoint::write(&self.dir, &checkpoint).map(|()| true)
        };
        match result {
            Ok(written) => {
                // Removed: the next sync writes a new one at once.
                *lock!(self.checkpoint_written) =
                    written.then(|| (std::time::Instant::now(), checkpoint));
                Ok(())
            }
            Err(e) if !required => {
                log::warn!(
                    "log {}: checkpoint not updated ({e}); the previous one stays valid",
                    self.dir.display()
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log was opened with (retention: see
    /// [`Log::retention`]).
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The retention limits in force: total bytes, age (`None`: unlimited).
    pub fn retention(&self) -> (Option<u64>, Option<std::time::Duration>) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the retention limits (a topic's settings changed); applied by the
    /// next retention run.
    pub fn set_retention(&self, bytes: Option<u64>, age: Option<std::time::Duration>) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = (bytes, age);
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
    /// On error nothing of the batch stays visible and the log stays usable (a full
    /// disk is [`StorageError::NoSpace`]; retry once space is freed). A batch that
    /// spans segments and fails after its first part was published is truncated
    /// back (readers may have seen that part for a moment; it was never durable);
    /// appends meanwhile get `NoSpace`. Only if that roll-back fails does the log
    /// close itself (fail-stop; reopening recovers a consistent log).
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
        if let Some(to) = w.rolling_back_to {
            return Err(StorageError::NoSpace {
                context: format!("rolling back a failed batch to offset {to}; retry"),
            });
        }
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
                Err(error) => {
                    w.rolling_back_to = Some(first);
                    drop(guard);
                    return Err(self.roll_back_batch(first, error));
                }
            }
        }
        if w.buf.capacity() > KEEP_BUFFER_BYTES {
            w.buf = Vec::new();
        }
        Ok(Offset(first))
    }

    /// A batch failed after part of it was written (it spanned a roll): removes
    /// that part, so the failure leaves the log as it was before the batch. Returns
    /// the batch's error; if the roll-back itself fails the log closes (fail-stop).
    fn roll_back_batch(&self, first: u64, error: StorageError) -> StorageError {
        let keep_through = first
            .checked_sub(1)
            .filter(|&k| k >= self.first_offset.load(Ordering::Acquire))
            .map(Offset);
        if let Err(e) = self.truncate_suffix(keep_through) {
            log::error!(
                "log {}: cannot roll back a failed batch: {e}",
                self.dir.display()
            );
            return self.fail(error);
        }
        match self.writer.lock() {
            Ok(mut w) => w.rolling_back_to = None,
            Err(_) => return self.fail(error),
        }
        log::warn!(
            "log {}: a batch failed half-way ({error}); rolled back to offset {first}",
            self.dir.display()
        );
        error
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
            // can be written before the bytes they point at. The slot is backed by
            // disk space first (a full disk is an error here, not a SIGBUS later).
            active.allocate_through(slot)?;
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
        let files = active.files()?;
        if let Err(e) = files.store.write_all_at(&w.buf, start) {
            let error =
                StorageError::io(format!("appending to {}", active.store_path.display()), e);
            // Nothing was published; drop any partial write so the next append
            // starts on a record boundary.
            return match files.store.set_len(start) {
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
        let fresh = ActiveSegment::open(&self.dir, base, self.index_capacity, 0)?;
        fresh
            .files()?
            .store
            .set_len(0)
            .map_err(io_err("clearing", &fresh.store_path))?;
        let fresh = Arc::new(fresh);
        let old = std::mem::replace(&mut w.active, fresh.clone());
        let old_files = old.take_files();
        {
            let mut segments = write_lock!(self.segments);
            segments
                .sealed
                .push(SealedMeta::readable(old.base, w.store_bytes));
            segments.active = fresh;
            self.publication.publish(base, 0);
        }
        w.pending_seal.push(PendingSeal {
            base: old.base,
            count: base - old.base,
            files: old_files,
        });
        w.store_bytes = 0;
        w.unsynced_creations += 1;
        log::debug!("log {}: rolled to segment {base}", self.dir.display());
        Ok(())
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
        // Nothing appended, rolled or created since the last completed fsync
        // (truncations fsync themselves): no fsync, e.g. for the final checkpoint
        // of thousands of idle groups.
        let nothing_new = target <= self.durable_offset.load(Ordering::Acquire)
            && pending.is_empty()
            && creations == 0;
        let result = if nothing_new {
            Ok(())
        } else {
            self.sync_files(&active, &pending, creations)
        };
        drop(active);
        if let Err(error) = result {
            return Err(self.fail(error));
        }
        {
            let mut w = lock!(self.writer);
            w.pending_seal
                .retain(|p| !pending.iter().any(|done| done.same(p)));
            w.unsynced_creations -= creations;
        }
        self.durable_offset.fetch_max(target, Ordering::AcqRel);
        // After a roll at once (the segment list changed), otherwise lazily: the
        // checkpoint is a lower bound, so lagging is safe and costs no fsync per
        // group commit.
        let due = lock!(self.checkpoint_written)
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= checkpoint::LAZY_INTERVAL);
        if due || !pending.is_empty() || creations > 0 {
            self.write_checkpoint(self.durable_offset.load(Ordering::Acquire), u64::MAX, false)?;
        }
        Ok(self.durable_offset())
    }

    /// True if segments rolled or were created since the last [`Log::sync`]: only
    /// `sync` seals them (a journal that covers the appends does not).
    pub fn has_unsynced_rolls(&self) -> bool {
        // A poisoned writer: say yes, the caller's `sync` then reports the failure.
        self.writer.lock().map_or(true, |w| {
            !w.pending_seal.is_empty() || w.unsynced_creations > 0
        })
    }

    /// fsyncs and writes the checkpoint now (durable end = everything appended):
    /// for a clean stop that does not [`Log::close`] the log, so the next open
    /// knows the exact durable end instead of the lazily written lower bound.
    pub fn checkpoint(&self) -> Result<Offset> {
        self.sync()?;
        // Under the sync lock no truncation can lower the end meanwhile.
        let _sync = lock!(self.sync_lock);
        let durable_end = self.durable_offset.load(Ordering::Acquire);
        let exact = Checkpoint {
            durable_end,
            bases: self.segment_bases()?,
        };
        // An idle log's checkpoint often says exactly this already (a node
        // stopping with thousands of idle groups saves two fsyncs per group).
        let mut written = lock!(self.checkpoint_written);
        if written.as_ref().is_none_or(|(_, cp)| *cp != exact) {
            checkpoint::write(&self.dir, &exact)?;
            *written = Some((std::time::Instant::now(), exact));
        }
        Ok(Offset(durable_end))
    }

    fn sync_files(
        &self,
        active: &ActiveSegment,
        pending: &[PendingSeal],
        creations: u64,
    ) -> Result<()> {
        for seal in pending {
            self.seal_on_disk(seal)?;
        }
        // Released files were fsynced before they were closed; what was written
        // since went through reopened ones. A descriptor opened here for the fsync
        // alone would do as well: on Linux fsync writes back every dirty page of
        // the inode, whichever descriptor dirtied it.
        active
            .store_handle()?
            .file()
            .sync_data()
            .map_err(io_err("fsyncing", &active.store_path))?;
        if creations > 0 || !pending.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// fsyncs a rolled segment's store and index, then trims the index to its
    /// records: the on-disk mark of a sealed segment.
    fn seal_on_disk(&self, seal: &PendingSeal) -> Result<()> {
        let store_path = segment::store_path(&self.dir, seal.base);
        let index_path = segment::index_path(&self.dir, seal.base);
        let reopened;
        // Through the handles it was written with, when it still has them, so a
        // write error is reported to this fsync; else they were released after
        // an fsync and fresh ones do.
        let files = match &seal.files {
            Some(files) => files.as_ref(),
            None => {
                reopened = ActiveFiles::open_existing(&store_path, &index_path)?;
                &reopened
            }
        };
        files
            .store
            .sync_data()
            .map_err(io_err("fsyncing", &store_path))?;
        // The index is no longer mapped (it was unmapped at the roll, and the only
        // other holder of the mapping, a previous sync, has finished), so it may
        // be trimmed: this is what marks the segment sealed on disk. The trim
        // comes after the index data is durable, so a trimmed index is always a
        // valid one; the trim itself needs no fsync: if a crash loses it, the
        // segment merely looks unsealed and recovery scans and re-seals it.
        files
            .index
            .sync_data()
            .and_then(|()| files.index.set_len(index::sealed_file_bytes(seal.count)))
            .map_err(io_err("sealing", &index_path))
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

    /// Closes the descriptors an idle log holds: the active segment's store and
    /// index and the cached sealed segments (a node calls it for a quiesced
    /// group, so thousands of idle partitions hold no descriptors; with
    /// [`DirLock::Covered`] such a log holds none at all). Appends, truncation and
    /// rebuilds reopen the files when they need them; reads and fsyncs of a
    /// released active segment use a descriptor of their own for that call. The
    /// index stays mapped (a mapping outlives its descriptor).
    ///
    /// What was appended and not yet fsynced is fsynced first: a write error the
    /// kernel has not reported yet may be lost with the last descriptor of a file
    /// (`close` does not report it and the inode may leave the cache), so a
    /// handle is only ever closed with nothing unsynced behind it. Returns
    /// whether anything was released; an fsync failure closes the log as in
    /// [`Log::sync`].
    pub fn release_idle_files(&self) -> Result<bool> {
        self.check_open()?;
        let sealed = lock!(self.cache).clear() > 0;
        self.drop_building_time_index();
        let unsynced = {
            let w = lock!(self.writer);
            if !w.active.files_open() {
                return Ok(sealed);
            }
            w.next_offset > self.durable_offset.load(Ordering::Acquire)
                || !w.pending_seal.is_empty()
                || w.unsynced_creations > 0
        };
        if unsynced {
            self.sync()?;
        }
        // Under both locks nothing is appended or cut meanwhile; an append that
        // came between the fsync and here keeps the handles (released next time).
        let _sync = lock!(self.sync_lock);
        let w = lock!(self.writer);
        let synced = w.next_offset <= self.durable_offset.load(Ordering::Acquire)
            && w.pending_seal.is_empty()
            && w.unsynced_creations == 0;
        let released = synced && w.active.take_files().is_some();
        Ok(released || sealed)
    }

    /// fsyncs, then trims the active index to its used length. Reopening a closed
    /// log still validates the last segment.
    pub fn close(self) -> Result<()> {
        let durable_end = self.sync()?.0;
        let bases = self.segment_bases()?;
        let (index_path, count) = {
            let w = lock!(self.writer);
            (w.active.index_path.clone(), w.next_offset - w.active.base)
        };
        let dir = self.dir.clone();
        // Unmaps the index (only then may it be shrunk, see the mmap invariant) but
        // keeps the directory locked until the trim is done.
        let Log { dir_lock, .. } = self;
        let index = OpenOptions::new()
            .write(true)
            .open(&index_path)
            .map_err(io_err("opening", &index_path))?;
        index
            .set_len(index::sealed_file_bytes(count))
            .and_then(|()| index.sync_all())
            .map_err(io_err("trimming", &index_path))?;
        segment::sync_dir(&dir)?;
        // The previous checkpoint stays a valid lower bound if this one fails.
        if let Err(e) = checkpoint::write(&dir, &Checkpoint { durable_end, bases }) {
            log::warn!(
                "log {}: checkpoint not updated at close: {e}",
                dir.display()
            );
        }
        drop(dir_lock);
        log::info!("closed log {}", dir.display());
        Ok(())
    }
}

#[cfg(test)]
impl Log {
    /// Sealed segments currently open in the cache.
    pub(crate) fn open_sealed_segments(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// True while the active segment holds its files open.
    pub(crate) fn active_files_open(&self) -> bool {
        self.writer.lock().is_ok_and(|w| w.active.files_open())
    }
}
