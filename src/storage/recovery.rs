//! Opening a log directory: find the segments, validate what must be validated,
//! cut a torn tail, rebuild indexes, and refuse (report) anything else.
//!
//! # The recovery rule: torn tail or corruption, decided by evidence
//!
//! A crash may leave a *torn tail*: bytes written after the last completed fsync
//! that did not all reach the disk. Only such bytes may be cut silently (with a
//! warning). Everything else that fails validation is *corruption*: `Log::open`
//! refuses with [`StorageError::Corrupt`] carrying a [`Damage`] (file, byte, the
//! first damaged offset, the durable end, whether truncation repairs it).
//!
//! Evidence comes from two places:
//!
//! * **The checkpoint** (`CHECKPOINT`, see `storage/checkpoint.rs`): the segment
//!   list and a *durable end* `E`, a lower bound of the offsets fsynced. It is
//!   rewritten atomically when the log opens, in the `sync` that seals a rolled
//!   segment, at most once a second after other syncs, before truncation, prefix
//!   removal or reset, and on close, so no fsync is added to a group commit.
//! * **What lies after the damage**: a valid record (crc intact) found anywhere
//!   after the first invalid byte of a store, or a valid record carrying the wrong
//!   offset, proves the damage is not a torn tail (a torn write only loses the end).
//!
//! Precisely, on open, with `o` the first offset that is missing or invalid:
//!
//! 1. A segment listed in the checkpoint with base `< E` whose store is missing is
//!    corruption at its base (a missing first segment is not repairable by
//!    truncation: that would drop the whole log).
//! 2. A store scan (the last segment, and any segment not sealed on disk) that
//!    stops at `o`: corruption if `o < E`, or if a valid record lies after the
//!    damage, or if the segment is not the last and its index is not the larger
//!    active-size file of a segment rolled but never synced (a hole);
//!    otherwise a torn tail, cut with a warning. A store that ends cleanly on a
//!    record boundary below `E` is corruption too (truncated below the durable end).
//! 3. Sealed segments (index exactly `8 * count` bytes) are not scanned: open checks
//!    their structure only (the last indexed record is inside the store and valid;
//!    the store does not end before it). Bytes after the last indexed record are
//!    reported (a warning) and never read. A damaged last record is reported and
//!    left to reads, which return [`StorageError::CorruptRecord`] for exactly the
//!    damaged records; a store shorter than its index is scanned under rule 2.
//! 4. Without a checkpoint (logs written before it existed, or a damaged one) `E`
//!    is unknown: only the evidence rules apply, exactly as above with `E = 0`.
//! 5. Replica mode ([`Log::open_for_replica`](super::Log::open_for_replica)):
//!    corruption rules 1 and 2 find in a segment that is *not the last* (a listed
//!    segment missing while a later one exists, a missing store, a hole, a sealed
//!    store cut short, an index that disagrees with its damaged store, more records
//!    than the segment holds) is *quarantined*: the segment keeps its offsets,
//!    nothing is cut and later segments stay. A store that ends cleanly where its
//!    sealed index ends is a whole segment, and the offsets after it up to the next
//!    segment become a segment of their own with no files; a whole index (exactly
//!    `8 * count` bytes) keeps the records the store still holds readable through
//!    it; otherwise no read can use the segment. Each such range, and each flaw
//!    rule 3 notes (bytes after the last record, a damaged last record or its
//!    slot), is returned as a `DamagedRange`. Quarantined segments are listed in
//!    the checkpoint like the others, so the next open finds them again (rule 1),
//!    and a strict open refuses them. Damage in the last segment, or a lost tail,
//!    is cut as in repair mode. `Log::rebuild_sealed` (`engine/rebuild.rs`)
//!    replaces a sealed segment by a whole one written to `<base>.store.tmp` /
//!    `<base>.index.tmp`, fsynced and renamed over the old files; temporary files
//!    a crash leaves are removed at open, so a crash leaves the old files or the
//!    new ones (each file is renamed atomically, and the new ones are the
//!    undamaged originals byte for byte, so any mix is a state these rules read
//!    correctly). A compacted segment is not byte-identical: every swap first
//!    makes a `<base>.swap` marker durable, and an open that finds one finishes
//!    the renames instead of removing the temporary files (`storage/compact.rs`).
//!
//! A cut never removes a record below `E` without an error. `E` lags the real
//! durable end by at most the lazy interval (about a second of writes; exact after
//! a clean close or [`Log::checkpoint`](super::Log::checkpoint)): records fsynced
//! in that window are protected by the evidence rule only, so damage to the very
//! end of them with nothing valid after it looks like a torn tail and is cut (with
//! the warning). The converse has one known false alarm: after a power loss,
//! out-of-order writeback of never-synced data can leave a valid record after a
//! hole at or above `E`; that is reported as corruption whose offsets are all at
//! or above the durable end (the report says so).
//!
//! [`Log::open_and_repair`](super::Log::open_and_repair) turns every such report
//! into a cut just before the damage and returns what it cut, for a node that can
//! refetch it; `storage::repair` does the same for one acknowledged offset.
//! [`Log::open_for_replica`](super::Log::open_for_replica) cuts only damage of the
//! last segment and quarantines the rest (rule 5), so a replica refetches just the
//! damaged ranges.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::checkpoint::{self, Checkpoint};
use super::error::{Damage, Result, StorageError};
use super::index::{self, SLOT_BYTES};
use super::record::RECORD_HEADER_BYTES;
use super::segment::{
    self, index_path, parse_file_name, read_exact_at, store_path, ActiveSegment, FileKind,
    FrameReader, Step,
};
use crate::types::Offset;

/// Bytes read per `pread` while scanning a store.
const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;

/// What recovery does with corruption it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Report it as `Corrupt` (the default: never lose data silently).
    Strict,
    /// Cut the log just before it (and warn): for a node that can re-fetch the
    /// lost records, e.g. a Raft follower.
    Repair,
    /// Like `Repair` for damage in the last segment, but damage of a sealed
    /// segment is quarantined: the segment keeps its offsets, reads of what
    /// cannot be read fail, and the range is reported (rule 5).
    Replica,
}

/// What [`crate::storage::Log::open_and_repair`] cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedRange {
    /// The first offset dropped (the log's next offset after the repair).
    pub from: Offset,
    /// One past the last offset that may have been dropped, as far as recovery
    /// knows (at least the durable end of the checkpoint).
    pub to: Offset,
    /// What was damaged.
    pub reason: String,
}

/// What [`crate::storage::Log::open_for_replica`] did to the log it opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaRecovery {
    /// Damage in the last (active) segment, or a lost tail, cut as
    /// [`crate::storage::Log::open_and_repair`] does (`None`: nothing cut).
    pub cut: Option<TruncatedRange>,
    /// Damage in sealed segments, quarantined or noted (oldest first); the same
    /// list as [`crate::storage::Log::damaged_ranges`] right after the open.
    pub damaged: Vec<DamagedRange>,
}

/// A damaged part of a sealed segment that [`crate::storage::Log::open_for_replica`]
/// quarantined instead of cutting (rule 5 of `storage/recovery.rs`), or that it
/// found while checking a sealed segment. [`crate::storage::Log::rebuild_sealed`]
/// of `segment` repairs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRange {
    /// Base offset of the sealed segment holding the damage.
    pub segment: Offset,
    /// One past the segment's last offset (the next segment's base).
    pub segment_end: Offset,
    /// First offset that reads may fail for (`CorruptRecord`).
    pub first: Offset,
    /// One past the last such offset. `first == end == segment_end` when no
    /// record is affected (bytes after the segment's last record).
    pub end: Offset,
    /// True when the checkpoint's durable end covers `first..end`: those records
    /// were fsynced (and may have been acknowledged). False when open cannot tell
    /// (no checkpoint, or above its durable end): they may never have been
    /// durable, so a refetch must check the log-matching rule at both ends.
    /// Every open records its end as durable, so damage quarantined by an earlier
    /// open is reported below the durable end by the next one.
    pub below_durable_end: bool,
    /// What was damaged.
    pub reason: String,
}

/// A sealed segment as the log tracks it without opening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SealedMeta {
    pub base: u64,
    /// Bytes of the store covered by its records (the indexed end).
    pub store_bytes: u64,
    /// Quarantined as a whole (files missing or no usable index): every read in
    /// it is `CorruptRecord` until it is rebuilt.
    pub unreadable: bool,
}

impl SealedMeta {
    pub fn readable(base: u64, store_bytes: u64) -> SealedMeta {
        SealedMeta {
            base,
            store_bytes,
            unreadable: false,
        }
    }
}

/// What [`recover`] hands to the log.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Sealed segments, oldest first.
    pub sealed: Vec<SealedMeta>,
    /// The last segment, ready for appends.
    pub active: ActiveSegment,
    /// Records in the active segment.
    pub active_count: u64,
    /// Valid bytes in the active store.
    pub active_store_bytes: u64,
    /// What [`Mode::Repair`] cut because it was damaged (`None`: nothing).
    pub repaired: Option<TruncatedRange>,
    /// What [`Mode::Replica`] quarantined or noted in sealed segments.
    pub damaged: Vec<DamagedRange>,
    /// A brand-new log (no checkpoint, no segment file): its segment was just
    /// created and the directory not fsynced (nothing in it is durable yet; the
    /// log's first sync fsyncs the directory and writes the checkpoint).
    pub fresh: bool,
}

/// How a store scan ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// Bytes from `position` on are not a whole valid record. `evidence` is the
    /// position and offset of a valid record found after them, if any: proof that
    /// this is damage, not a torn write.
    Torn {
        position: u64,
        reason: &'static str,
        evidence: Option<(u64, u64)>,
    },
}

/// Result of scanning a store from its start.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Start position of every valid record, in order.
    pub positions: Vec<u32>,
    /// Bytes covered by the valid records.
    pub valid_bytes: u64,
    pub tail: Tail,
}

/// Scans the store of the segment starting at `base`: every record's crc and
/// offset are checked. The scan stops at the first invalid record, or at a valid
/// record carrying the wrong offset (which is its own evidence of damage); it then
/// looks for evidence after the damage.
pub(crate) fn scan_store(file: &File, path: &Path, store_bytes: u64, base: u64) -> Result<Scan> {
    let mut reader = FrameReader::new(file, path, 0, store_bytes, SCAN_CHUNK_BYTES);
    let mut positions = Vec::new();
    // Bounded: every iteration consumes at least one header's worth of bytes.
    loop {
        // A segment based near u64::MAX cannot hold more offsets: damage, not a panic.
        let Some(expected) = base.checked_add(positions.len() as u64) else {
            return Err(StorageError::corrupt(
                path,
                reader.position(),
                "offsets would pass u64::MAX",
            ));
        };
        let (position, reason, evidence) = match reader.next_step()? {
            Step::Record {
                position, header, ..
            } if header.offset == expected => {
                let position = u32::try_from(position).map_err(|_| {
                    StorageError::corrupt(path, position, "store larger than 4 GiB")
                })?;
                positions.push(position);
                continue;
            }
            Step::Record {
                position, header, ..
            } => (
                position,
                "record holds the wrong offset",
                Some((position, header.offset)),
            ),
            Step::End => {
                return Ok(Scan {
                    positions,
                    valid_bytes: store_bytes,
                    tail: Tail::Clean,
                })
            }
            Step::Invalid {
                position, reason, ..
            } => {
                let evidence = find_valid_record(file, path, position + 1, store_bytes, expected)?;
                (position, reason, evidence)
            }
        };
        return Ok(Scan {
            positions,
            valid_bytes: position,
            tail: Tail::Torn {
                position,
                reason,
                evidence,
            },
        });
    }
}

/// Looks for a valid record (crc intact) holding an offset above `after` anywhere
/// in `file[from..end)`: returns its position and offset. Candidate positions are
/// filtered on the cheap header fields (a plausible offset, a known kind, zero
/// reserved bytes, a length that fits) before the crc is computed, so the search
/// is one linear pass; it runs only when a scan met damage.
pub(crate) fn find_valid_record(
    file: &File,
    path: &Path,
    from: u64,
    end: u64,
    after: u64,
) -> Result<Option<(u64, u64)>> {
    let header = RECORD_HEADER_BYTES as u64;
    let most_records = (end.saturating_sub(from)) / header + 1;
    let mut chunk = vec![0u8; SCAN_CHUNK_BYTES as usize];
    let mut start = from;
    // Bounded: `start` grows by at least one chunk minus a header per iteration.
    while start + header <= end {
        let len = (end - start).min(SCAN_CHUNK_BYTES) as usize;
        read_exact_at(file, path, &mut chunk[..len], start)?;
        let last = len.saturating_sub(RECORD_HEADER_BYTES);
        for at in 0..=last {
            let h = &chunk[at..at + RECORD_HEADER_BYTES];
            let mut off = [0u8; 8];
            off.copy_from_slice(&h[8..16]);
            let offset = u64::from_le_bytes(off);
            let plausible = offset > after
                && offset - after <= most_records
                && h[24] <= 2
                && h[25..28] == [0, 0, 0];
            if !plausible {
                continue;
            }
            let position = start + at as u64;
            if record_is_valid(file, path, position, end, offset)? {
                return Ok(Some((position, offset)));
            }
        }
        if len < SCAN_CHUNK_BYTES as usize {
            break;
        }
        start += (len - RECORD_HEADER_BYTES + 1) as u64;
    }
    Ok(None)
}

fn record_is_valid(file: &File, path: &Path, position: u64, end: u64, offset: u64) -> Result<bool> {
    let mut reader = FrameReader::new(file, path, position, end, 4096);
    Ok(matches!(
        reader.next_step()?,
        Step::Record { header, .. } if header.offset == offset
    ))
}

/// Lengths of one segment's files (`None`: missing).
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    store: Option<u64>,
    index: Option<u64>,
}

fn list_segments(dir: &Path) -> Result<BTreeMap<u64, Found>> {
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some((base, kind)) = name.to_str().and_then(parse_file_name) else {
            log::debug!("ignoring {:?} in log directory {}", name, dir.display());
            continue;
        };
        let len = entry
            .metadata()
            .map_err(|e| StorageError::io(format!("stat {:?}", entry.path()), e))?
            .len();
        let slot = found.entry(base).or_default();
        match kind {
            FileKind::Store => slot.store = Some(len),
            FileKind::Index => slot.index = Some(len),
        }
    }
    Ok(found)
}

fn remove_segment_files(dir: &Path, base: u64) -> Result<()> {
    let timeindex = crate::storage::timeindex::path(dir, base);
    for path in [store_path(dir, base), index_path(dir, base), timeindex] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Deletes the given segments, newest first, so a crash leaves a contiguous log.
pub(crate) fn remove_segments_newest_first(dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases.iter().rev() {
        remove_segment_files(dir, base)?;
    }
    Ok(())
}

/// Deletes the given segments, oldest first, so a crash leaves a contiguous log.
pub(crate) fn remove_segments_oldest_first(dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases {
        remove_segment_files(dir, base)?;
    }
    Ok(())
}

fn open_store(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))
}

/// Suffix of the temporary file a rebuilt sealed index (or a rebuilt segment's
/// file) is written to before it is renamed over the file; removed at open.
const TEMP_SUFFIX: &str = ".tmp";

/// The temporary name of `path` while it is being rewritten.
pub(crate) fn temp_path(path: &Path) -> std::path::PathBuf {
    let mut temp = path.as_os_str().to_os_string();
    temp.push(TEMP_SUFFIX);
    std::path::PathBuf::from(temp)
}

/// Writes a sealed index (exactly `positions.len()` slots) the crash-safe way:
/// write a temporary file, fsync it, rename it over the index, fsync the directory.
/// A crash at any point leaves either the old index or the complete new one.
fn write_sealed_index(dir: &Path, base: u64, positions: &[u32]) -> Result<()> {
    let path = index_path(dir, base);
    let temp = temp_path(&path);
    let mut bytes = Vec::with_capacity(positions.len() * SLOT_BYTES as usize);
    for (slot, &pos) in positions.iter().enumerate() {
        let rel = u32::try_from(slot)
            .map_err(|_| StorageError::corrupt(&path, 0, "more than 2^32 records in a segment"))?;
        bytes.extend_from_slice(&index::encode_slot(rel, pos).to_le_bytes());
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| StorageError::io(format!("creating {}", temp.display()), e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(format!("writing {}", temp.display()), e))?;
    drop(file);
    fs::rename(&temp, &path)
        .map_err(|e| StorageError::io(format!("renaming {}", temp.display()), e))?;
    segment::sync_dir(dir)
}

/// Removes temporary files a crash may have left behind.
fn remove_temp_files(dir: &Path) -> Result<()> {
    // A swap whose marker is durable is finished, not undone (`engine/rebuild.rs`).
    super::compact::finish_interrupted_swaps(dir)?;
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let is_ours = name
            .to_str()
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            .and_then(parse_file_name)
            .is_some()
            || name == checkpoint::TEMP_NAME;
        if is_ours {
            log::warn!("removing leftover {:?} in {}", name, dir.display());
            fs::remove_file(entry.path())
                .map_err(|e| StorageError::io(format!("removing {:?}", entry.path()), e))?;
        }
    }
    Ok(())
}

/// Where the damage is and what it puts at stake, before it becomes an error or a cut.
struct Finding {
    path: std::path::PathBuf,
    position: u64,
    reason: String,
    first: u64,
    known_end: u64,
    repairable: bool,
}

impl Finding {
    fn into_error(self, durable_end: Option<u64>) -> StorageError {
        StorageError::Corrupt {
            path: self.path,
            position: self.position,
            reason: self.reason,
            damage: Some(Damage {
                first_offset: Offset(self.first),
                durable_end: durable_end.map(Offset),
                known_end: Offset(self.known_end),
                repairable_by_truncation: self.repairable,
            }),
        }
    }

    /// In [`Mode::Repair`]: logs the cut and records it (the lowest cut wins).
    fn repaired(self, dir: &Path, repaired: &mut Option<TruncatedRange>) {
        log::warn!(
            "log {}: repair cuts the log at offset {} (offsets {}..{} dropped or never \
             present): {} in {} at byte {}",
            dir.display(),
            self.first,
            self.first,
            self.known_end,
            self.reason,
            self.path.display(),
            self.position
        );
        let to = repaired
            .as_ref()
            .map_or(self.known_end, |r| r.to.0.max(self.known_end));
        if repaired.as_ref().is_none_or(|r| self.first < r.from.0) {
            *repaired = Some(TruncatedRange {
                from: Offset(self.first),
                to: Offset(to),
                reason: self.reason,
            });
        } else if let Some(r) = repaired {
            r.to = Offset(to);
        }
    }
}

/// Rule 1: the first segment the checkpoint lists below its durable end whose
/// store is missing. In replica mode only one with no segment found after it (the log's tail is
/// lost); the others are quarantined (rule 5).
fn missing_listed(
    dir: &Path,
    cp: &Checkpoint,
    found: &BTreeMap<u64, Found>,
    mode: Mode,
) -> Option<Finding> {
    let last = found.keys().next_back().copied();
    let missing = cp
        .bases
        .iter()
        .copied()
        .take_while(|&b| b < cp.durable_end)
        .filter(|&b| mode != Mode::Replica || last.is_none_or(|l| l <= b))
        .find(|b| found.get(b).is_none_or(|f| f.store.is_none()))?;
    let last_found = last.unwrap_or(0);
    Some(Finding {
        path: store_path(dir, missing),
        position: 0,
        reason: format!(
            "the segment starting at offset {missing} is missing (the checkpoint lists it \
             below the durable end {})",
            cp.durable_end
        ),
        first: missing,
        known_end: cp.durable_end.max(last_found),
        repairable: found.keys().any(|&b| b < missing),
    })
}

/// Rule 5: listed segments below the durable end with no file at all and a
/// segment found after them (a hole, not a lost tail), to quarantine.
fn lost_between(cp: &Checkpoint, found: &BTreeMap<u64, Found>) -> BTreeSet<u64> {
    let last = found.keys().next_back().copied();
    cp.bases
        .iter()
        .copied()
        .take_while(|&b| b < cp.durable_end)
        .filter(|b| !found.contains_key(b) && last.is_some_and(|l| l > *b))
        .collect()
}

/// Rule 2: is the end of a scan at offset `o` damage rather than a torn tail?
/// `hole`: the segment is not the last and was sealed on disk.
fn damage_reason(o: u64, durable_end: Option<u64>, tail: &Tail, hole: bool) -> Option<String> {
    let what = match tail {
        Tail::Clean => "the store ends".to_string(),
        Tail::Torn { reason, .. } => reason.to_string(),
    };
    if let Tail::Torn {
        evidence: Some((position, offset)),
        ..
    } = tail
    {
        return Some(format!(
            "{what} at offset {o}, and a valid record (offset {offset}) follows at byte \
             {position}: damage, not a torn write"
        ));
    }
    if let Some(end) = durable_end.filter(|&end| o < end) {
        return Some(format!("{what} at offset {o}, below the durable end {end}"));
    }
    hole.then(|| {
        format!("{what} at offset {o} before the next segment starts: records are missing")
    })
}

/// Something wrong in a sealed segment that does not stop it being read:
/// offsets `first..end` may fail to read (`first == end`: none).
struct Flaw {
    first: u64,
    end: u64,
    reason: String,
}

/// A sealed segment that passed rule 3: its indexed store end, and what is wrong
/// in it if anything.
struct Checked {
    store_bytes: u64,
    flaw: Option<Flaw>,
}

/// Rule 3: the cheap structural check of a sealed segment of `count` records whose
/// store is `store_len` bytes. Returns the indexed end of the store, or `None` when
/// the store is shorter than its index says (the caller scans it).
fn check_sealed(dir: &Path, base: u64, count: u64, store_len: u64) -> Result<Option<Checked>> {
    let last = base + count - 1;
    let spath = store_path(dir, base);
    let damaged_last = |reason: String| Checked {
        store_bytes: store_len,
        flaw: Some(Flaw {
            first: last,
            end: last + 1,
            reason,
        }),
    };
    let position = match segment::read_index_slot(dir, base, count - 1) {
        Ok(position) => position,
        Err(StorageError::Corrupt { reason, .. }) => {
            log::warn!(
                "log {}: the index slot of record {last} (sealed segment {base}) is damaged \
                 ({reason}); reads of that record will fail",
                dir.display()
            );
            return Ok(Some(damaged_last(format!("index slot damaged: {reason}"))));
        }
        Err(e) => return Err(e),
    };
    if position + RECORD_HEADER_BYTES as u64 > store_len {
        return Ok(None);
    }
    let store = File::open(&spath)
        .map_err(|e| StorageError::io(format!("opening {}", spath.display()), e))?;
    let mut reader = FrameReader::new(&store, &spath, position, store_len, 4096);
    match reader.next_step()? {
        Step::Record { header, .. } if header.offset == last => {
            let end = position + header.total_bytes();
            let mut flaw = None;
            if end < store_len {
                log::warn!(
                    "log {}: {} holds {} bytes after its last indexed record (appended \
                     garbage?); they are ignored",
                    dir.display(),
                    spath.display(),
                    store_len - end
                );
                flaw = Some(Flaw {
                    first: base + count,
                    end: base + count,
                    reason: format!("{} bytes after the last record", store_len - end),
                });
            }
            Ok(Some(Checked {
                store_bytes: end,
                flaw,
            }))
        }
        _ => {
            log::warn!(
                "log {}: the last record ({last}) of sealed segment {} is damaged; reads of \
                 it will fail until it is repaired",
                dir.display(),
                spath.display()
            );
            Ok(Some(damaged_last("the last record is damaged".into())))
        }
    }
}

/// What recovery has kept so far.
struct Kept {
    sealed: Vec<SealedMeta>,
    damaged: Vec<DamagedRange>,
    repaired: Option<TruncatedRange>,
    durable_end: Option<u64>,
    /// Records from here on are also in the node journal (see `Log::open_covered`).
    journaled_from: Option<u64>,
}

impl Kept {
    /// Reports a flaw of the sealed segment `base..next` (listed in replica mode).
    fn note(&mut self, mode: Mode, base: u64, next: u64, flaw: Flaw) {
        if mode != Mode::Replica {
            return;
        }
        self.damaged.push(DamagedRange {
            segment: Offset(base),
            segment_end: Offset(next),
            first: Offset(flaw.first),
            end: Offset(flaw.end),
            below_durable_end: self.durable_end.is_some_and(|e| flaw.end <= e),
            reason: flaw.reason,
        });
    }

    fn into_recovered(self, active: ActiveSegment, count: u64, store_bytes: u64) -> Recovered {
        Recovered {
            sealed: self.sealed,
            active,
            active_count: count,
            active_store_bytes: store_bytes,
            repaired: self.repaired,
            damaged: self.damaged,
            fresh: false,
        }
    }

    /// Rule 5: keeps the offsets `base..next` as one segment no read can use.
    fn quarantine(&mut self, dir: &Path, base: u64, next: u64, reason: String) {
        log::warn!(
            "log {}: quarantining offsets {base}..{next} (sealed segment {base}): {reason}; \
             reads of them fail until the segment is rebuilt",
            dir.display()
        );
        self.sealed.push(SealedMeta {
            base,
            store_bytes: 0,
            unreadable: true,
        });
        let flaw = Flaw {
            first: base,
            end: next,
            reason,
        };
        self.note(Mode::Replica, base, next, flaw);
    }
}

/// How recovering one segment ended.
enum Outcome {
    /// It stays as a sealed segment (possibly quarantined).
    Kept,
    /// The log ends in it: the caller cuts it to `scan` and makes it active.
    Ends { scan: Scan, store_len: u64 },
}

/// Opens or creates the log in `dir` (which exists) and recovers it (rule above).
pub(crate) fn recover(
    dir: &Path,
    index_capacity: u64,
    initial_offset: u64,
    mode: Mode,
    journaled_from: Option<u64>,
) -> Result<Recovered> {
    remove_temp_files(dir)?;
    let cp = checkpoint::read(dir)?;
    let durable_end = cp.as_ref().map(|c| c.durable_end);
    let mut found = list_segments(dir)?;
    let mut kept = Kept {
        sealed: Vec::new(),
        damaged: Vec::new(),
        repaired: None,
        durable_end,
        journaled_from,
    };
    let mut empty_start = initial_offset;
    if let Some(finding) = cp
        .as_ref()
        .and_then(|cp| missing_listed(dir, cp, &found, mode))
    {
        if mode == Mode::Strict {
            return Err(finding.into_error(durable_end));
        }
        let doomed: Vec<u64> = found.range(finding.first..).map(|(b, _)| *b).collect();
        remove_segments_newest_first(dir, &doomed)?;
        for base in &doomed {
            found.remove(base);
        }
        empty_start = finding.first;
        finding.repaired(dir, &mut kept.repaired);
    }
    let lost = match (&cp, mode) {
        (Some(cp), Mode::Replica) => lost_between(cp, &found),
        _ => BTreeSet::new(),
    };
    let mut bases: Vec<u64> = found.keys().chain(&lost).copied().collect();
    bases.sort_unstable();
    if bases.is_empty() {
        let active = ActiveSegment::open(dir, empty_start, index_capacity, 0)?;
        // A brand-new log holds nothing durable, so the new files' directory
        // entries can wait for its first sync (a node creating thousands of
        // groups saves a directory fsync per group).
        let fresh = cp.is_none();
        if !fresh {
            segment::sync_dir(dir)?;
        }
        let mut recovered = kept.into_recovered(active, 0, 0);
        recovered.fresh = fresh;
        return Ok(recovered);
    }
    for (i, &base) in bases.iter().enumerate() {
        let files = found.get(&base).copied().unwrap_or_default();
        let next_base = bases.get(i + 1).copied();
        let Outcome::Ends { scan, store_len } =
            recover_segment(dir, (base, next_base), files, i > 0, mode, &mut kept)?
        else {
            continue;
        };
        // The log ends here: cut the torn tail (or, repairing, the damage) and drop
        // the later segments.
        let count = scan.positions.len() as u64;
        let later = &bases[i + 1..];
        if !later.is_empty() {
            log::warn!(
                "log {}: segment {base} ends at offset {}, before the next segment; \
                 removing {} later segment(s) that were never durable",
                dir.display(),
                base + count,
                later.len()
            );
            remove_segments_newest_first(dir, later)?;
        }
        let (active, active_store_bytes) =
            activate_last(dir, base, index_capacity, &scan, store_len)?;
        segment::sync_dir(dir)?;
        return Ok(kept.into_recovered(active, count, active_store_bytes));
    }
    Err(StorageError::InvalidConfig {
        reason: "internal: segment list ended without a last segment".into(),
    })
}

/// Recovers the segment `base` (rules 2, 3 and 5): keeps it sealed, or says the
/// log ends in it (then it was scanned). `next_base`: the next segment's base
/// (`None`: this is the last one). `has_earlier`: a segment precedes it.
fn recover_segment(
    dir: &Path,
    (base, next_base): (u64, Option<u64>),
    files: Found,
    has_earlier: bool,
    mode: Mode,
    kept: &mut Kept,
) -> Result<Outcome> {
    if let (Some(next), Some(store_len)) = (next_base, files.store) {
        if files.index == Some(index::sealed_file_bytes(next - base)) {
            if let Some(checked) = check_sealed(dir, base, next - base, store_len)? {
                kept.sealed
                    .push(SealedMeta::readable(base, checked.store_bytes));
                if let Some(flaw) = checked.flaw {
                    kept.note(mode, base, next, flaw);
                }
                return Ok(Outcome::Kept);
            }
        }
    }
    let spath = store_path(dir, base);
    if files.store.is_none() {
        if let (Mode::Replica, Some(next)) = (mode, next_base) {
            let reason = format!("the store of segment {base} is missing");
            kept.quarantine(dir, base, next, reason);
            return Ok(Outcome::Kept);
        }
        if mode == Mode::Strict {
            let finding = Finding {
                path: spath,
                position: 0,
                reason: format!("the store of segment {base} is missing"),
                first: base,
                known_end: kept.durable_end.unwrap_or(0).max(next_base.unwrap_or(base)),
                repairable: has_earlier,
            };
            return Err(finding.into_error(kept.durable_end));
        }
    }
    let store = open_store(&spath)?;
    let store_len = files.store.unwrap_or(0);
    let scan = scan_store(&store, &spath, store_len, base)?;
    drop(store);
    if let Some(next) = next_base {
        if seal_complete(dir, (base, next), &scan, mode, kept)? {
            return Ok(Outcome::Kept);
        }
    }
    let o = base + scan.positions.len() as u64;
    // Not the last segment, and its index is not the larger active-size file of
    // a segment rolled but never synced.
    let hole = next_base.is_some_and(|next| {
        files
            .index
            .is_none_or(|len| len <= index::sealed_file_bytes(next - base))
    });
    // A bad end of the last segment where the node journal holds every record
    // from there on is cut like a torn tail: replay writes those records again
    // (segment pages written after the last fsync may reach the disk out of order).
    let covered = !hole && kept.journaled_from.is_some_and(|j| o >= j);
    let reason = damage_reason(o, kept.durable_end, &scan.tail, hole).filter(|_| !covered);
    if let Some(reason) = reason {
        if let (Mode::Replica, Some(next)) = (mode, next_base) {
            quarantine_scanned(dir, (base, next), files, &scan, reason, kept)?;
            return Ok(Outcome::Kept);
        }
        let finding = scan_finding(spath, &scan, (o, next_base), reason, kept.durable_end);
        if mode == Mode::Strict {
            return Err(finding.into_error(kept.durable_end));
        }
        finding.repaired(dir, &mut kept.repaired);
    }
    Ok(Outcome::Ends { scan, store_len })
}

/// The corruption a scan of the store at `spath` that stopped at offset `o` found
/// (the next segment starts at `next_base`).
fn scan_finding(
    spath: std::path::PathBuf,
    scan: &Scan,
    (o, next_base): (u64, Option<u64>),
    reason: String,
    durable_end: Option<u64>,
) -> Finding {
    let evidence_end = match scan.tail {
        Tail::Torn {
            evidence: Some((_, offset)),
            ..
        } => offset + 1,
        _ => 0,
    };
    Finding {
        path: spath,
        position: scan.valid_bytes,
        reason,
        first: o,
        known_end: durable_end
            .unwrap_or(0)
            .max(evidence_end)
            .max(next_base.unwrap_or(o)),
        repairable: true,
    }
}

/// A non-last segment `base..next` whose scan found at least all its records:
/// sealed (returns true). More records than the segment holds is corruption,
/// except in replica mode, where they are noted like other trailing bytes.
fn seal_complete(
    dir: &Path,
    (base, next): (u64, u64),
    scan: &Scan,
    mode: Mode,
    kept: &mut Kept,
) -> Result<bool> {
    let count = scan.positions.len() as u64;
    let expected = next - base;
    let spath = store_path(dir, base);
    if count > expected && mode != Mode::Replica {
        return Err(StorageError::corrupt(
            &spath,
            u64::from(scan.positions[expected as usize]),
            format!(
                "segment {base} holds {count} records but the next segment starts at \
                 offset {next}"
            ),
        ));
    }
    if count < expected {
        return Ok(false);
    }
    kept.sealed
        .push(seal_scanned(dir, base, expected, scan, &spath)?);
    if count > expected || scan.tail != Tail::Clean {
        let flaw = Flaw {
            first: next,
            end: next,
            reason: "bytes after the last record".into(),
        };
        kept.note(mode, base, next, flaw);
    }
    Ok(true)
}

/// Rule 5: the sealed segment `base..next`, whose scan met damage (`reason`),
/// is quarantined instead of cut. A store that ends cleanly where its (sealed)
/// index ends is a whole segment followed by a missing one; a whole index keeps
/// every record the store still holds readable; otherwise no read can use it.
fn quarantine_scanned(
    dir: &Path,
    (base, next): (u64, u64),
    files: Found,
    scan: &Scan,
    reason: String,
    kept: &mut Kept,
) -> Result<()> {
    let count = scan.positions.len() as u64;
    let o = base + count;
    if count > 0 && scan.tail == Tail::Clean && files.index == Some(index::sealed_file_bytes(count))
    {
        // As a later open will see it (the missing segment's base is then in the
        // checkpoint): a whole segment, its index rebuilt from the scan.
        kept.sealed.push(seal_scanned(
            dir,
            base,
            count,
            scan,
            &store_path(dir, base),
        )?);
        let reason = format!("the segment of offsets {o}..{next} is missing ({reason})");
        kept.quarantine(dir, o, next, reason);
        return Ok(());
    }
    if files.index == Some(index::sealed_file_bytes(next - base)) {
        log::warn!(
            "log {}: sealed segment {base} is damaged from offset {o} on ({reason}); \
             reads of damaged records fail until it is rebuilt",
            dir.display()
        );
        let store_len = files.store.unwrap_or(0);
        kept.sealed.push(SealedMeta::readable(base, store_len));
        let flaw = Flaw {
            first: o,
            end: next,
            reason,
        };
        kept.note(Mode::Replica, base, next, flaw);
        return Ok(());
    }
    kept.quarantine(dir, base, next, reason);
    Ok(())
}

/// A non-last segment whose scan found all `expected` records: (re)writes its
/// sealed index. Bytes after the last record (appended garbage) are ignored.
fn seal_scanned(
    dir: &Path,
    base: u64,
    expected: u64,
    scan: &Scan,
    spath: &Path,
) -> Result<SealedMeta> {
    let positions = &scan.positions[..expected as usize];
    // Records past the segment's end (replica mode only) are ignored like garbage.
    let store_bytes = scan
        .positions
        .get(expected as usize)
        .map_or(scan.valid_bytes, |&p| u64::from(p));
    if scan.tail != Tail::Clean || positions.len() < scan.positions.len() {
        log::warn!(
            "log {}: {} holds bytes after its last record (offset {}); they are ignored",
            dir.display(),
            spath.display(),
            base + expected - 1
        );
    }
    let store = open_store(spath)?;
    store
        .sync_data()
        .map_err(|e| StorageError::io(format!("fsyncing {}", spath.display()), e))?;
    write_sealed_index(dir, base, positions)?;
    log::warn!(
        "log {}: rebuilt the index of segment {base} ({expected} records)",
        dir.display()
    );
    Ok(SealedMeta::readable(base, store_bytes))
}

/// Cuts the last segment to its valid records, rewrites its index (allocating it)
/// and fsyncs the store. Returns the segment and its valid store bytes.
fn activate_last(
    dir: &Path,
    base: u64,
    index_capacity: u64,
    scan: &Scan,
    store_bytes: u64,
) -> Result<(ActiveSegment, u64)> {
    let count = scan.positions.len() as u64;
    let active = ActiveSegment::open(dir, base, index_capacity.max(count), 0)?;
    if let Tail::Torn {
        position, reason, ..
    } = scan.tail
    {
        log::warn!(
            "log {}: torn tail in {} at byte {position} ({reason}); dropping {} bytes after \
             offset {} (written after the last checkpointed fsync, never reported durable)",
            dir.display(),
            active.store_path.display(),
            store_bytes - position,
            base + count,
        );
        active
            .files()?
            .store
            .set_len(scan.valid_bytes)
            .map_err(|e| StorageError::io(format!("cutting {}", active.store_path.display()), e))?;
    }
    let fixed = active.write_slots(&scan.positions)?;
    if fixed > 0 {
        log::warn!(
            "log {}: rebuilt {fixed} of {count} slots of {}",
            dir.display(),
            active.index_path.display()
        );
    }
    active
        .files()?
        .store
        .sync_data()
        .map_err(|e| StorageError::io(format!("fsyncing {}", active.store_path.display()), e))?;
    Ok((active, scan.valid_bytes))
}
