//! Rebuilding a sealed segment from its intact records plus records a peer
//! supplied: [`Log::rebuild_sealed`].
//!
//! The new segment is written to temporary files beside the old ones (holding
//! only the rebuild lock, so appends, reads and fsyncs go on), fsynced, then
//! renamed over the old files under the `sync` lock (no structural change can
//! race it) and `segments` exclusively (readers wait for two renames only), and
//! the directory is fsynced. Record encoding is deterministic, so the rebuilt
//! store and index are byte-identical to the undamaged originals: a crash
//! between the two renames leaves each file either old or new, and every such
//! pair is a state open reads by its ordinary rules (intact data read back,
//! damage still found), never as wrong data. Leftover temporary files are
//! removed at open.
//!
//! Compaction (`storage/compact.rs`) writes a segment that is *not* byte-identical
//! (placeholders in place of removed records), so a mix of old and new files would
//! be damage. Every swap therefore writes a marker `<base>.swap` (fsynced, with
//! the directory) after the new files are durable and before the first rename, and
//! removes it after the directory fsync that follows the renames: an open that
//! finds the marker finishes the renames (roll forward), one that finds temporary
//! files without it removes them (roll back). Either way a crash leaves the old
//! segment or the new one, never a mix.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io_err, Log};
use crate::storage::error::StorageError;
use crate::storage::index::{self, SLOT_BYTES};
use crate::storage::record::{encode_into, encoded_bytes, parse_frame, Frame, NewRecord, Record};
use crate::storage::recovery::{self, SealedMeta};
use crate::storage::segment::{self, FrameReader, Step};
use crate::sync::Ordering;
use crate::types::{Offset, RecordKind, Term};

/// Bytes read per `pread` while collecting a segment's intact records.
const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;
/// The new store is written in chunks of about this size.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;
/// Missing ranges named in [`RebuildError::Incomplete`] at most.
const MAX_NAMED_RANGES: usize = 64;

/// What [`Log::rebuild_sealed`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildReport {
    /// Base offset of the rebuilt segment.
    pub segment: Offset,
    /// One past its last offset.
    pub end: Offset,
    /// Records taken from the local files (intact there).
    pub local_records: u64,
    /// Records taken from the supplied ones (damaged or missing locally).
    pub supplied_records: u64,
    /// Supplied records not needed: outside the segment, or equal to an intact
    /// local record.
    pub ignored_records: u64,
    /// Bytes of the rebuilt store.
    pub store_bytes: u64,
}

/// Why [`Log::rebuild_sealed`] refused or failed. Every refusal leaves the log
/// and its files as they were.
#[derive(Debug)]
pub enum RebuildError {
    /// The offset lies in the active segment (or past the end): only sealed
    /// segments are rebuilt (the Raft layer repairs the tail by truncating).
    NotSealed {
        /// The offset asked for.
        offset: Offset,
        /// Base of the active segment.
        active_base: Offset,
    },
    /// The segment is gone: below the first offset (retention or a prefix
    /// truncation removed it), or it was removed or cut while being rebuilt.
    Removed {
        /// The offset asked for.
        offset: Offset,
        /// The log's first offset now.
        first: Offset,
    },
    /// Offsets that are neither intact locally nor supplied.
    Incomplete {
        /// Missing ranges `[from, to)`, oldest first (at most 64 named).
        missing: Vec<(Offset, Offset)>,
        /// How many offsets are missing in all.
        missing_count: u64,
    },
    /// A supplied record differs (term, kind or value) from the intact local
    /// record at its offset: intact data is never overwritten.
    Conflict {
        /// The offset.
        offset: Offset,
        /// Term of the local record.
        local_term: Term,
        /// Term of the supplied record.
        supplied_term: Term,
    },
    /// The supplied records cannot form a segment (two different records for one
    /// offset, a value too large).
    InvalidSupply {
        /// The offset concerned.
        offset: Offset,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the files failed (a failure after the first rename
    /// closes the log, like any failure that leaves the disk state unknown).
    Storage(StorageError),
}

impl From<StorageError> for RebuildError {
    fn from(e: StorageError) -> RebuildError {
        RebuildError::Storage(e)
    }
}

impl fmt::Display for RebuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildError::NotSealed {
                offset,
                active_base,
            } => write!(
                f,
                "offset {offset} is not in a sealed segment (the active one starts at \
                 {active_base})"
            ),
            RebuildError::Removed { offset, first } => write!(
                f,
                "the segment holding offset {offset} was removed (first offset now {first})"
            ),
            RebuildError::Incomplete {
                missing,
                missing_count,
            } => {
                write!(
                    f,
                    "{missing_count} offset(s) are neither intact nor supplied:"
                )?;
                for (from, to) in missing {
                    write!(f, " {from}..{to}")?;
                }
                Ok(())
            }
            RebuildError::Conflict {
                offset,
                local_term,
                supplied_term,
            } => write!(
                f,
                "the supplied record {offset} (term {supplied_term}) differs from the intact \
                 local one (term {local_term}); nothing was written"
            ),
            RebuildError::InvalidSupply { offset, reason } => {
                write!(f, "supplied record {offset}: {reason}")
            }
            RebuildError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RebuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RebuildError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

/// An intact local record: where its frame lies in the old store.
#[derive(Clone, Copy, Debug)]
struct Local {
    position: u64,
    bytes: u64,
    /// Found by searching after damage rather than by framing from the start of
    /// the store: a valid frame inside a damaged record's value (a client may
    /// store record bytes as a value) could pose as it, so the index is asked.
    resynced: bool,
}

/// Where each record of the new segment comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Local(Local),
    /// Index into the supplied records.
    Supplied(usize),
    /// Compaction: the placeholder at this index of the supplied records in place
    /// of the local record, which must still have the placeholder's term.
    Placeholder(Local, usize),
}

/// The rebuilt files, written to their temporary names and fsynced.
#[derive(Debug)]
pub(crate) struct Built {
    base: u64,
    end: u64,
    /// The segment list's epoch when the segment was located.
    epoch: u64,
    store_temp: PathBuf,
    index_temp: PathBuf,
    report: RebuildReport,
}

impl Built {
    fn discard(&self) {
        for path in [&self.store_temp, &self.index_temp] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("removing {}: {e}", path.display()),
            }
        }
    }
}

impl Log {
    /// Rebuilds the sealed segment holding `first` into a whole, valid segment:
    /// every record intact in the local files is kept, and every offset damaged
    /// or missing locally (a flipped byte, a zeroed page, a damaged index slot,
    /// trailing garbage, a quarantined or missing segment) is filled with the
    /// supplied record of exactly that offset (its term, kind and value).
    /// Supplied records outside the segment are ignored; a supplied record equal
    /// to the intact local one is fine.
    ///
    /// Refuses, changing nothing, when some offset of the segment is neither
    /// intact nor supplied ([`RebuildError::Incomplete`], naming them), when a
    /// supplied record differs from an intact local one ([`RebuildError::Conflict`]:
    /// intact data is never overwritten), when the offset is in the active segment
    /// ([`RebuildError::NotSealed`]) or when the segment is gone or was removed or
    /// cut meanwhile ([`RebuildError::Removed`]). On success the segment's reads
    /// work again and its entries leave [`Log::damaged_ranges`].
    ///
    /// The caller vouches for the supplied records (a replica checks them with
    /// Raft's log-matching rule). Appends, reads and syncs go on while the files
    /// are built; only the final swap holds the locks (see the module doc). At
    /// most one rebuild runs at a time.
    pub fn rebuild_sealed(
        &self,
        first: Offset,
        records: &[Record],
    ) -> std::result::Result<RebuildReport, RebuildError> {
        self.check_open()?;
        let _rebuild = lock!(self.rebuild_lock);
        let built = self.build_sealed(first, records)?;
        self.swap_in(first, built)
    }

    /// Compaction: rewrites the sealed segment that starts at `base` with the
    /// record at each offset of `placeholders` (sorted by offset) replaced by that
    /// placeholder (same term: an empty no-op, or a batch start's header; see
    /// `RecordKind::is_placeholder`), every other record kept byte for byte.
    /// Offsets, terms and the index shape stay; only the store shrinks. Refuses,
    /// changing nothing, when the segment has damage ([`RebuildError::Incomplete`]:
    /// heal it first), when it is no longer a sealed segment starting at `base`,
    /// or when a record to replace no longer has the expected term
    /// ([`RebuildError::Conflict`]). Crash safety: the module doc.
    pub(crate) fn compact_sealed(
        &self,
        base: Offset,
        placeholders: &[Record],
    ) -> std::result::Result<RebuildReport, RebuildError> {
        self.check_open()?;
        let _rebuild = lock!(self.rebuild_lock);
        let (start, end, epoch) = self.locate_sealed(base)?;
        if start != base.0 {
            return Err(RebuildError::Removed {
                offset: base,
                first: self.first_offset(),
            });
        }
        let locals = collect_local(&self.dir, start, end)?;
        check_complete(start, end, &locals, &BTreeMap::new())?;
        let sources: Vec<Source> = locals
            .iter()
            .map(|(&offset, &local)| {
                match placeholders.binary_search_by_key(&offset, |p| p.offset.0) {
                    Ok(k) => Source::Placeholder(local, k),
                    Err(_) => Source::Local(local),
                }
            })
            .collect();
        let built = write_files(&self.dir, (start, end), &sources, placeholders)?;
        self.swap_in(base, Built { epoch, ..built })
    }

    /// Writes the rebuilt files of the segment holding `first` to their temporary
    /// names. The caller holds the rebuild lock until [`Log::swap_in`].
    pub(crate) fn build_sealed(
        &self,
        first: Offset,
        records: &[Record],
    ) -> std::result::Result<Built, RebuildError> {
        let (base, end, epoch) = self.locate_sealed(first)?;
        let locals = collect_local(&self.dir, base, end)?;
        let supplied = supplied_in(base, end, records)?;
        check_complete(base, end, &locals, &supplied)?;
        let sources = plan_sources(&self.dir, base, end, &locals, &supplied, records)?;
        let built = write_files(&self.dir, (base, end), &sources, records)?;
        Ok(Built { epoch, ..built })
    }

    /// The sealed segment `(base, end)` holding `offset`, and the list's epoch.
    fn locate_sealed(&self, offset: Offset) -> std::result::Result<(u64, u64, u64), RebuildError> {
        let segments = read_lock!(self.segments);
        let first = self.first_offset.load(Ordering::Acquire);
        if offset.0 >= segments.active.base {
            return Err(RebuildError::NotSealed {
                offset,
                active_base: Offset(segments.active.base),
            });
        }
        match segments.sealed_holding(offset.0) {
            Some(i) if offset.0 >= first => Ok((
                segments.sealed[i].base,
                segments.sealed_next(i),
                segments.epoch,
            )),
            _ => Err(RebuildError::Removed {
                offset,
                first: Offset(first),
            }),
        }
    }

    /// Renames the built files over the segment's, if it is still the same
    /// sealed segment, and makes readers use them (the caller holds the rebuild
    /// lock). On any error the temporary files are removed.
    pub(crate) fn swap_in(
        &self,
        first: Offset,
        built: Built,
    ) -> std::result::Result<RebuildReport, RebuildError> {
        if let Err(e) = self.swap_locked(first, &built) {
            // After a failed rename the log is closed and the marker and the
            // files stay for the reopen to finish the swap.
            if self.check_open().is_ok() {
                built.discard();
                // A marker left behind would make a later open roll a later,
                // unfinished swap of this segment forward: stop instead.
                if let Err(clear) =
                    crate::storage::compact::clear_swap_marker(&self.dir, built.base)
                {
                    log::warn!("swap of segment {} failed: {e}", built.base);
                    return Err(self.fail(clear).into());
                }
            }
            return Err(e);
        }
        // Outside `sync` (its fsync would hold up the log's group commits), still
        // under the rebuild lock, so no later swap's marker can be confused with it.
        if let Err(error) = crate::storage::compact::clear_swap_marker(&self.dir, built.base) {
            return Err(self.fail(error).into());
        }
        log::info!(
            "log {}: rebuilt sealed segment {}..{} ({} local, {} supplied records)",
            self.dir.display(),
            built.base,
            built.end,
            built.report.local_records,
            built.report.supplied_records
        );
        Ok(built.report)
    }

    /// The swap proper. Holds `sync` (no structural change meanwhile), then
    /// `segments` exclusively for the two renames.
    fn swap_locked(&self, first: Offset, built: &Built) -> std::result::Result<(), RebuildError> {
        self.check_open()?;
        let _sync = lock!(self.sync_lock);
        // Under `sync` no structural change can remove the segment between the
        // check, the marker and the renames.
        self.still_sealed(first, built)?;
        crate::storage::compact::write_swap_marker(&self.dir, built.base)?;
        {
            let mut segments = write_lock!(self.segments);
            let first_offset = self.first_offset.load(Ordering::Acquire);
            let i = sealed_position(&segments, first_offset, first, built)?;
            let store = segment::store_path(&self.dir, built.base);
            fs::rename(&built.store_temp, &store).map_err(io_err("renaming", &built.store_temp))?;
            let index = segment::index_path(&self.dir, built.base);
            if let Err(e) = fs::rename(&built.index_temp, &index) {
                // The new store lies beside the old index: stop (reopen recovers).
                let error = StorageError::io(format!("renaming {}", built.index_temp.display()), e);
                return Err(self.fail(error).into());
            }
            segments.sealed[i] = SealedMeta::readable(built.base, built.report.store_bytes);
            segments.forget_damage(built.base);
            lock!(self.cache).remove(built.base);
        }
        if let Err(error) = segment::sync_dir(&self.dir) {
            return Err(self.fail(error).into());
        }
        Ok(())
    }

    /// Refuses unless the built segment is still the sealed segment it was built
    /// from (the caller holds `sync`).
    fn still_sealed(&self, first: Offset, built: &Built) -> std::result::Result<(), RebuildError> {
        let segments = read_lock!(self.segments);
        let first_offset = self.first_offset.load(Ordering::Acquire);
        sealed_position(&segments, first_offset, first, built).map(|_| ())
    }
}

/// Where the built segment sits in the sealed list, if it is still the sealed
/// segment it was built from: the same range is not enough (cut away and written
/// again, it may hold other records: the epoch says).
fn sealed_position(
    segments: &super::Segments,
    first_offset: u64,
    first: Offset,
    built: &Built,
) -> std::result::Result<usize, RebuildError> {
    let same = segments
        .sealed
        .iter()
        .position(|m| m.base == built.base)
        .filter(|&i| {
            segments.sealed_next(i) == built.end
                && built.base >= first_offset
                && segments.epoch == built.epoch
        });
    same.ok_or(if first.0 >= segments.active.base {
        RebuildError::NotSealed {
            offset: first,
            active_base: Offset(segments.active.base),
        }
    } else {
        RebuildError::Removed {
            offset: first,
            first: Offset(first_offset),
        }
    })
}

/// Every intact record of segment `base..end` in its local files: a sequential
/// scan of the store (resuming after damage at the next valid record), then the
/// index for offsets the scan did not find or found only after damage (where the
/// index, written when the records were appended, wins).
fn collect_local(dir: &Path, base: u64, end: u64) -> Result<BTreeMap<u64, Local>, StorageError> {
    let mut locals = BTreeMap::new();
    let path = segment::store_path(dir, base);
    let store = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(locals),
        Err(e) => return Err(io_err("opening", &path)(e)),
    };
    let store_len = segment::file_len(&store, &path)?;
    scan_local(&store, &path, (base, end), store_len, &mut locals)?;
    if (locals.len() as u64) < end - base || locals.values().any(|l| l.resynced) {
        index_local(dir, (base, end), (&store, &path, store_len), &mut locals)?;
    }
    Ok(locals)
}

/// The sequential part of [`collect_local`]: valid records with increasing
/// offsets of the segment; after damage, the scan resumes at the next valid
/// record of a later offset.
fn scan_local(
    store: &File,
    path: &Path,
    (base, end): (u64, u64),
    store_len: u64,
    locals: &mut BTreeMap<u64, Local>,
) -> Result<(), StorageError> {
    let mut start = 0u64;
    let mut expected = base;
    let mut resynced = false;
    // Bounded: every pass starts after the previous one's damage.
    while start < store_len && expected < end {
        let mut reader = FrameReader::new(store, path, start, store_len, SCAN_CHUNK_BYTES);
        let damage = loop {
            match reader.next_step()? {
                Step::Record {
                    position, header, ..
                } if header.offset >= expected && header.offset < end => {
                    let local = Local {
                        position,
                        bytes: header.total_bytes(),
                        resynced,
                    };
                    locals.insert(header.offset, local);
                    expected = header.offset + 1;
                    if expected >= end {
                        return Ok(());
                    }
                }
                Step::Record { position, .. } | Step::Invalid { position, .. } => break position,
                Step::End => return Ok(()),
            }
        };
        // Offsets above `expected - 1` (none below `base` is wanted).
        let after = expected.saturating_sub(1);
        match recovery::find_valid_record(store, path, damage + 1, store_len, after)? {
            Some((position, offset)) if offset < end => {
                start = position;
                expected = offset;
                resynced = true;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// The index part of [`collect_local`]: offsets the scan missed whose index slot
/// points at a valid record of that offset.
fn index_local(
    dir: &Path,
    (base, end): (u64, u64),
    (store, path, store_len): (&File, &Path, u64),
    locals: &mut BTreeMap<u64, Local>,
) -> Result<(), StorageError> {
    let index_path = segment::index_path(dir, base);
    let index = match File::open(&index_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("opening", &index_path)(e)),
    };
    let slots = (segment::file_len(&index, &index_path)? / SLOT_BYTES).min(end - base);
    let mut slot_bytes = [0u8; SLOT_BYTES as usize];
    for slot in 0..slots {
        if locals.get(&(base + slot)).is_some_and(|l| !l.resynced) {
            continue;
        }
        segment::read_exact_at(&index, &index_path, &mut slot_bytes, slot * SLOT_BYTES)?;
        let Ok(position) = index::decode_slot(u64::from_le_bytes(slot_bytes), slot) else {
            continue;
        };
        let mut reader = FrameReader::new(store, path, position, store_len, 4096);
        if let Step::Record { header, .. } = reader.next_step()? {
            if header.offset == base + slot {
                let local = Local {
                    position,
                    bytes: header.total_bytes(),
                    resynced: false,
                };
                locals.insert(base + slot, local);
            }
        }
    }
    Ok(())
}

/// The supplied records inside `base..end`, by offset (index into `records`).
fn supplied_in(
    base: u64,
    end: u64,
    records: &[Record],
) -> std::result::Result<BTreeMap<u64, usize>, RebuildError> {
    let mut supplied = BTreeMap::new();
    for (k, record) in records.iter().enumerate() {
        let offset = record.offset.0;
        if offset < base || offset >= end {
            continue;
        }
        if encoded_bytes(record.value.len()) > u64::from(u32::MAX) {
            return Err(RebuildError::InvalidSupply {
                offset: record.offset,
                reason: "the value does not fit in a segment".into(),
            });
        }
        if let Some(&earlier) = supplied.get(&offset) {
            if records[earlier] != *record {
                return Err(RebuildError::InvalidSupply {
                    offset: record.offset,
                    reason: "supplied twice with different contents".into(),
                });
            }
            continue;
        }
        supplied.insert(offset, k);
    }
    Ok(supplied)
}

/// Refuses unless every offset of `base..end` is intact locally or supplied.
fn check_complete(
    base: u64,
    end: u64,
    locals: &BTreeMap<u64, Local>,
    supplied: &BTreeMap<u64, usize>,
) -> std::result::Result<(), RebuildError> {
    let mut missing = Vec::new();
    let mut missing_count = 0u64;
    let mut next = base;
    let mut present: Vec<u64> = locals.keys().chain(supplied.keys()).copied().collect();
    present.sort_unstable();
    present.dedup();
    for offset in present.into_iter().chain(std::iter::once(end)) {
        if offset > next {
            missing_count += offset - next;
            if missing.len() < MAX_NAMED_RANGES {
                missing.push((Offset(next), Offset(offset)));
            }
        }
        next = offset + 1;
    }
    if missing_count == 0 {
        return Ok(());
    }
    Err(RebuildError::Incomplete {
        missing,
        missing_count,
    })
}

/// One source per offset of `base..end`: the intact local record, else the
/// supplied one. A supplied record that differs from an intact local one is a
/// conflict.
fn plan_sources(
    dir: &Path,
    base: u64,
    end: u64,
    locals: &BTreeMap<u64, Local>,
    supplied: &BTreeMap<u64, usize>,
    records: &[Record],
) -> std::result::Result<Vec<Source>, RebuildError> {
    let path = segment::store_path(dir, base);
    let mut encoded = Vec::new();
    let mut local_bytes = Vec::new();
    let mut store = None;
    for (&offset, &k) in supplied {
        let Some(local) = locals.get(&offset) else {
            continue;
        };
        encoded.clear();
        encode_into(&mut encoded, offset, &new_record(&records[k]));
        if store.is_none() {
            store = Some(File::open(&path).map_err(io_err("opening", &path))?);
        }
        let Some(store) = &store else { continue };
        local_bytes.resize(local.bytes as usize, 0);
        segment::read_exact_at(store, &path, &mut local_bytes, local.position)?;
        if encoded != local_bytes {
            let mut term = [0u8; 8];
            term.copy_from_slice(&local_bytes[16..24]);
            let local_term = Term(u64::from_le_bytes(term));
            // Compaction: one side may hold the placeholder of the other's record
            // (same offset and term); the intact local record stays.
            let local_value_len = local_bytes.len().saturating_sub(encoded_bytes(0) as usize);
            let local_placeholder = (local_bytes.get(24).copied())
                .and_then(RecordKind::from_u8)
                .is_some_and(|kind| kind.is_placeholder(local_value_len));
            let either_placeholder =
                records[k].kind.is_placeholder(records[k].value.len()) || local_placeholder;
            if local_term == records[k].term && either_placeholder {
                continue;
            }
            return Err(RebuildError::Conflict {
                offset: Offset(offset),
                local_term,
                supplied_term: records[k].term,
            });
        }
    }
    // Every offset has a source (checked), so this allocates what the data holds;
    // `usize::MAX` (no source) cannot occur and would fail the write.
    let sources = (base..end)
        .map(
            |offset| match (locals.get(&offset), supplied.get(&offset)) {
                (Some(local), _) => Source::Local(*local),
                (None, Some(&k)) => Source::Supplied(k),
                (None, None) => Source::Supplied(usize::MAX),
            },
        )
        .collect();
    Ok(sources)
}

fn new_record(record: &Record) -> NewRecord<'_> {
    NewRecord {
        term: record.term,
        kind: record.kind,
        value: &record.value,
    }
}

/// Creates (truncating) a temporary file for writing.
fn create_temp(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("creating", path))
}

/// Writes the new store and index of segment `base..end` to their temporary
/// names and fsyncs them. Every record is checked right before it is written.
fn write_files(
    dir: &Path,
    (base, end): (u64, u64),
    sources: &[Source],
    records: &[Record],
) -> std::result::Result<Built, RebuildError> {
    let store_path = segment::store_path(dir, base);
    let store_temp = recovery::temp_path(&store_path);
    let index_temp = recovery::temp_path(&segment::index_path(dir, base));
    let built = Built {
        base,
        end,
        epoch: 0,
        store_temp,
        index_temp,
        report: RebuildReport {
            segment: Offset(base),
            end: Offset(end),
            local_records: 0,
            supplied_records: 0,
            ignored_records: 0,
            store_bytes: 0,
        },
    };
    let written = write_store(&built, &store_path, sources, records)
        .and_then(|(positions, report)| write_index(&built, &positions).map(|()| report));
    match written {
        Ok(report) => Ok(Built { report, ..built }),
        Err(e) => {
            // Nothing was renamed: the temporary files only waste space.
            let _ = fs::remove_file(&built.store_temp);
            let _ = fs::remove_file(&built.index_temp);
            Err(e)
        }
    }
}

/// Writes the new store; returns each record's position and the report.
fn write_store(
    built: &Built,
    old_store: &Path,
    sources: &[Source],
    records: &[Record],
) -> std::result::Result<(Vec<u32>, RebuildReport), RebuildError> {
    let old = match File::open(old_store) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("opening", old_store)(e).into()),
    };
    let mut out = create_temp(&built.store_temp)?;
    let mut report = built.report.clone();
    let mut positions = Vec::with_capacity(sources.len());
    let mut buf = Vec::new();
    let mut position = 0u64;
    let mut placeholders = 0u64;
    for (source, offset) in sources.iter().zip(built.base..) {
        let start = buf.len();
        match (*source, &old) {
            (Source::Local(local), Some(file)) => {
                buf.resize(start + local.bytes as usize, 0);
                segment::read_exact_at(file, old_store, &mut buf[start..], local.position)?;
                report.local_records += 1;
            }
            (Source::Supplied(k), _) if k < records.len() => {
                encode_into(&mut buf, offset, &new_record(&records[k]));
                report.supplied_records += 1;
            }
            (Source::Placeholder(local, k), Some(file)) if k < records.len() => {
                check_term(file, old_store, (offset, local, records[k].term))?;
                encode_into(&mut buf, offset, &new_record(&records[k]));
                report.local_records += 1;
                placeholders += 1;
            }
            _ => {
                return Err(StorageError::corrupt(old_store, 0, "internal: no source").into());
            }
        }
        check_frame(&buf[start..], offset, old_store)?;
        positions.push(
            u32::try_from(position).map_err(|_| RebuildError::InvalidSupply {
                offset: Offset(offset),
                reason: "the rebuilt store would exceed 4 GiB".into(),
            })?,
        );
        position += (buf.len() - start) as u64;
        if buf.len() >= WRITE_CHUNK_BYTES {
            out.write_all(&buf)
                .map_err(io_err("writing", &built.store_temp))?;
            buf.clear();
        }
    }
    out.write_all(&buf)
        .map_err(io_err("writing", &built.store_temp))?;
    // Retention by age reads the store's modification time: a rewritten segment
    // (healed or compacted) holds records as old as before.
    if let Some(modified) = old
        .as_ref()
        .and_then(|f| f.metadata().and_then(|m| m.modified()).ok())
    {
        if let Err(e) = out.set_modified(modified) {
            log::warn!("keeping the age of {}: {e}", built.store_temp.display());
        }
    }
    out.sync_all()
        .map_err(io_err("writing", &built.store_temp))?;
    report.store_bytes = position;
    report.ignored_records = records.len() as u64 - report.supplied_records - placeholders;
    Ok((positions, report))
}

/// The local record a placeholder replaces still has the term compaction read.
fn check_term(
    file: &File,
    path: &Path,
    (offset, local, term): (u64, Local, Term),
) -> std::result::Result<(), RebuildError> {
    let mut header = [0u8; 24];
    segment::read_exact_at(file, path, &mut header, local.position)?;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&header[16..24]);
    let local_term = Term(u64::from_le_bytes(raw));
    if local_term == term {
        return Ok(());
    }
    Err(RebuildError::Conflict {
        offset: Offset(offset),
        local_term,
        supplied_term: term,
    })
}

/// The frame about to be written is one valid record of `offset`.
fn check_frame(frame: &[u8], offset: u64, path: &Path) -> Result<(), StorageError> {
    match parse_frame(frame, frame.len() as u64) {
        Frame::Valid(header)
            if header.offset == offset && header.total_bytes() == frame.len() as u64 =>
        {
            Ok(())
        }
        _ => Err(StorageError::corrupt(
            path,
            0,
            format!("internal: rebuilt record {offset} does not verify"),
        )),
    }
}

/// Writes the new sealed index (exactly one slot per record) and fsyncs it.
fn write_index(built: &Built, positions: &[u32]) -> std::result::Result<(), RebuildError> {
    let mut bytes = Vec::with_capacity(positions.len() * SLOT_BYTES as usize);
    for (slot, &position) in positions.iter().enumerate() {
        let rel = u32::try_from(slot).map_err(|_| RebuildError::InvalidSupply {
            offset: Offset(built.base + slot as u64),
            reason: "more than 2^32 records in a segment".into(),
        })?;
        bytes.extend_from_slice(&index::encode_slot(rel, position).to_le_bytes());
    }
    let mut out = create_temp(&built.index_temp)?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(io_err("writing", &built.index_temp))?;
    Ok(())
}
