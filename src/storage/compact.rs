//! Key-based compaction of a log's sealed segments ([`compact_pass`]).
//!
//! # What is removed
//!
//! Only v1 records (`DataV1`, `DataV1Batch`) whose payload (`crate::records`) has a key. Such
//! a record at offset `o` is removed when a record with the same key exists at a
//! higher offset below the *floor*. A *tombstone* (a keyed record with an empty
//! value) that is the newest of its key is removed once its timestamp is more than
//! `tombstone_retention_ms` old, and only in a pass that first rewrote every older
//! segment with a key map holding it (so no older record of its key survives it).
//! Keyless and v0 (`Data`) records, no-ops, configuration entries and every
//! internal kind are kept. The floor is exclusive and chosen by the caller: at most
//! the commit index + 1, the end of the last sealed segment, and the lowest cursor
//! of any consumer group, so nothing uncommitted, nothing in the active segment and
//! nothing a group has not read past is decided on.
//!
//! # The placeholder invariant
//!
//! A removed record becomes a *placeholder*: the same offset and term,
//! `RecordKind::NoOp`, an empty value (28 bytes); the first record of an
//! idempotent batch (`DataV1Batch`) becomes a `CompactedBatchStart` holding its
//! producer batch header (55 bytes), so a restart's dedup state still knows the
//! batch and a late retry of it is not appended again. Offsets never change, every
//! offset of a segment still has a record (the index keeps its shape), Raft's log
//! matching (the term at each index) holds, and readers, the scrubber and the
//! healer (`ReadEntries` by offset range) work unchanged; consumers skip
//! placeholders as they skip no-ops. A peer may hold the original or the
//! placeholder at an offset: both have the same term, and both are committed.
//!
//! # Passes and bounded memory
//!
//! A pass builds a key map (key → newest offset) from the records in
//! `[from, floor)`, stopping early once the keys would take more than
//! `key_map_bytes` (each key's bytes plus [`KEY_ENTRY_OVERHEAD_BYTES`]); the offset
//! where it stopped is the pass's `scanned_to`. It then rewrites, oldest first,
//! every sealed segment below `scanned_to` that holds a record the map supersedes
//! (`Log::compact_sealed`: temporary files, fsync, a marker, renames, directory
//! fsync; see `engine/rebuild.rs`). The caller starts the next pass at
//! `scanned_to`, so a range with more keys than the bound is compacted in several
//! passes, and starts again from the first offset once it reaches the floor (to
//! expire tombstones, [`PassReport::tombstone_due_ms`] says when). Work per pass:
//! one read of `[from, scanned_to)`, one read of each older segment, and the
//! rewrites.
//!
//! A segment with damage (quarantined, or a record that does not read) ends the
//! range a pass considers: it is healed first, then compacted by a later pass.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::engine::{Log, RebuildError, RecordRef};
use super::error::{Result, StorageError};
use super::record::Record;
use super::segment;
use crate::records;
use crate::types::{Offset, RecordKind};

/// Default bound of a pass's key map: 64 MiB of keys and entries.
pub const DEFAULT_KEY_MAP_BYTES: usize = 64 * 1024 * 1024;
/// What one key-map entry costs beyond its key's bytes (hash table slot, vector
/// header, offset), counted against the bound.
pub const KEY_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Record value bytes read per `read_range` call while scanning.
const SCAN_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Suffix of a segment's swap marker (module doc of `engine/rebuild.rs`).
const SWAP_SUFFIX: &str = "swap";

/// What one pass is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct PassParams {
    /// Where the key map starts (the previous pass's `scanned_to`; the first
    /// offset is used when lower).
    pub from: Offset,
    /// Exclusive: no record at or above it is read into the map or removed.
    pub floor: Offset,
    /// Now, in ms since the Unix epoch (tombstone expiry).
    pub now_ms: i64,
    /// How long a newest-of-its-key tombstone is kept, from its timestamp.
    pub tombstone_retention_ms: u64,
    /// Bound of the key map.
    pub key_map_bytes: usize,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Where the key map started.
    pub from: Offset,
    /// Where it ended (exclusive): the next pass starts here.
    pub scanned_to: Offset,
    /// Keys in the map.
    pub keys: u64,
    /// Segments rewritten.
    pub segments_rewritten: u64,
    /// Records replaced by placeholders (tombstones included).
    pub records_removed: u64,
    /// Expired tombstones among them.
    pub tombstones_removed: u64,
    /// Store bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Record bytes read (both scans).
    pub bytes_read: u64,
    /// The earliest time (ms since the epoch) a tombstone kept by this pass
    /// expires; `None` when it kept none.
    pub tombstone_due_ms: Option<i64>,
}

/// A keyed `DataV1` record: its key, whether it is a tombstone, its timestamp.
struct Keyed<'a> {
    key: &'a [u8],
    tombstone: bool,
    timestamp_ms: i64,
}

/// The key of a record compaction may remove; `None` for every record it keeps
/// whatever happens (other kinds, keyless, a payload that does not decode).
fn keyed(kind: RecordKind, value: &[u8]) -> Option<Keyed<'_>> {
    let payload = records::stored_v1_payload(kind, value)?;
    let record = records::decode(payload).ok()?;
    Some(Keyed {
        key: record.key()?,
        tombstone: record.value().is_empty(),
        timestamp_ms: record.timestamp().unix_ms,
    })
}

/// Key → newest offset below the map's end, bounded in bytes.
struct KeyMap {
    newest: HashMap<Vec<u8>, u64>,
    bytes: usize,
    limit: usize,
}

impl KeyMap {
    /// Records `key` at `offset`; false (nothing recorded) when a new key would
    /// pass the bound and the map is not empty.
    fn insert(&mut self, key: &[u8], offset: u64) -> bool {
        if let Some(newest) = self.newest.get_mut(key) {
            *newest = offset;
            return true;
        }
        let cost = key.len() + KEY_ENTRY_OVERHEAD_BYTES;
        if self.bytes + cost > self.limit && !self.newest.is_empty() {
            return false;
        }
        self.bytes += cost;
        self.newest.insert(key.to_vec(), offset);
        true
    }
}

/// One compaction pass over `log` (module doc). Errors leave every segment either
/// as it was or wholly rewritten; the caller retries later.
pub fn compact_pass(
    log: &Log,
    params: &PassParams,
) -> std::result::Result<PassReport, RebuildError> {
    let first = log.first_offset().0;
    let sealed = sealed_below(log, params.floor.0);
    let end = sealed.last().map_or(first, |&(_, next)| next);
    let from = params.from.0.max(first);
    let mut report = PassReport {
        from: Offset(from),
        scanned_to: Offset(from),
        ..PassReport::default()
    };
    if from >= end {
        return Ok(report);
    }
    let mut map = KeyMap {
        newest: HashMap::new(),
        bytes: 0,
        limit: params.key_map_bytes,
    };
    let scanned_to = build_map(log, (from, end), &mut map, &mut report.bytes_read)?;
    report.scanned_to = Offset(scanned_to);
    report.keys = map.newest.len() as u64;
    for &(base, next) in sealed.iter().take_while(|&&(base, _)| base < scanned_to) {
        let plan = plan_segment(log, (base, next), (from, scanned_to), &map, params)?;
        report.bytes_read += plan.bytes_read;
        if let Some(due) = plan.tombstone_due_ms {
            report.tombstone_due_ms = Some(report.tombstone_due_ms.map_or(due, |d| d.min(due)));
        }
        if plan.placeholders.is_empty() {
            continue;
        }
        let rebuilt = log.compact_sealed(Offset(base), &plan.placeholders)?;
        report.segments_rewritten += 1;
        report.records_removed += plan.placeholders.len() as u64;
        report.tombstones_removed += plan.tombstones;
        report.bytes_before += plan.store_bytes;
        report.bytes_after += rebuilt.store_bytes;
    }
    Ok(report)
}

/// The readable sealed segments `(base, next)` below `floor`, oldest first, up to
/// (not including) the first quarantined one.
fn sealed_below(log: &Log, floor: u64) -> Vec<(u64, u64)> {
    log.sealed_segments()
        .into_iter()
        .take_while(|&(_, next, store_bytes)| next <= floor && store_bytes.is_some())
        .map(|(base, next, _)| (base, next))
        .collect()
}

/// Reads `[from, end)` into the map; returns where it stopped (exclusive).
fn build_map(
    log: &Log,
    (from, end): (u64, u64),
    map: &mut KeyMap,
    bytes_read: &mut u64,
) -> Result<u64> {
    let mut next = from;
    while next < end {
        let mut full = false;
        let taken = log.read_range_with(Offset(next), SCAN_CHUNK_BYTES, |r| {
            if r.offset.0 >= end {
                return false;
            }
            if let Some(k) = keyed(r.kind, r.value) {
                if !map.insert(k.key, r.offset.0) {
                    full = true;
                    return false;
                }
            }
            *bytes_read += r.value.len() as u64;
            next = r.offset.0 + 1;
            true
        })?;
        if full || taken == 0 {
            break;
        }
    }
    Ok(next)
}

/// What compaction writes in place of the record `r`: an empty no-op, or for the
/// first record of an idempotent batch its producer batch header alone, so the
/// dedup state rebuilt from the log still knows the batch (`replica::dedup_log`).
fn placeholder(r: &RecordRef<'_>) -> Record {
    let (kind, value) = match records::stored_batch_header(r.kind, r.value) {
        Some(header) => (RecordKind::CompactedBatchStart, header.to_vec()),
        None => (RecordKind::NoOp, Vec::new()),
    };
    Record {
        offset: r.offset,
        term: r.term,
        kind,
        value,
    }
}

/// What to replace in one segment.
struct SegmentPlan {
    /// In offset order.
    placeholders: Vec<Record>,
    tombstones: u64,
    tombstone_due_ms: Option<i64>,
    store_bytes: u64,
    bytes_read: u64,
}

/// Reads segment `[base, next)` and picks the records the map supersedes, and the
/// expired tombstones of the map's own range `[from, to)`.
fn plan_segment(
    log: &Log,
    (base, next): (u64, u64),
    (from, to): (u64, u64),
    map: &KeyMap,
    params: &PassParams,
) -> Result<SegmentPlan> {
    let mut plan = SegmentPlan {
        placeholders: Vec::new(),
        tombstones: 0,
        tombstone_due_ms: None,
        store_bytes: 0,
        bytes_read: 0,
    };
    let mut offset = base;
    while offset < next {
        let taken = log.read_range_with(Offset(offset), SCAN_CHUNK_BYTES, |r| {
            if r.offset.0 >= next {
                return false;
            }
            offset = r.offset.0 + 1;
            plan.bytes_read += r.value.len() as u64;
            plan.store_bytes += super::RECORD_HEADER_BYTES as u64 + r.value.len() as u64;
            let Some(k) = keyed(r.kind, r.value) else {
                return true;
            };
            let Some(&newest) = map.newest.get(k.key) else {
                return true;
            };
            if newest > r.offset.0 {
                plan.placeholders.push(placeholder(&r));
            } else if k.tombstone && newest == r.offset.0 && r.offset.0 >= from && r.offset.0 < to {
                let due = k.timestamp_ms.saturating_add(
                    i64::try_from(params.tombstone_retention_ms).unwrap_or(i64::MAX),
                );
                if due <= params.now_ms {
                    plan.placeholders.push(placeholder(&r));
                    plan.tombstones += 1;
                } else {
                    plan.tombstone_due_ms = Some(plan.tombstone_due_ms.map_or(due, |d| d.min(due)));
                }
            }
            true
        })?;
        if taken == 0 {
            break;
        }
    }
    Ok(plan)
}

/// The swap marker of segment `base`.
fn marker_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SWAP_SUFFIX}"))
}

/// Writes segment `base`'s swap marker and makes it durable (file and directory):
/// from here a crash finishes the swap at open.
pub(crate) fn write_swap_marker(dir: &Path, base: u64) -> Result<()> {
    let path = marker_path(dir, base);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))?;
    file.sync_all()
        .map_err(|e| StorageError::io(format!("fsyncing {}", path.display()), e))?;
    segment::sync_dir(dir)
}

/// Removes segment `base`'s swap marker durably (a marker left behind would make
/// a later open roll a later, unfinished swap forward).
pub(crate) fn clear_swap_marker(dir: &Path, base: u64) -> Result<()> {
    let path = marker_path(dir, base);
    match fs::remove_file(&path) {
        Ok(()) => segment::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
    }
}

/// At open, before temporary files are removed: finishes every swap whose marker
/// is on disk (renames the temporary files still there over the segment's), then
/// removes the marker.
pub(crate) fn finish_interrupted_swaps(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let base = name
            .to_str()
            .and_then(|n| n.strip_suffix(SWAP_SUFFIX))
            .and_then(|n| n.strip_suffix('.'))
            .filter(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(base) = base {
            bases.push(base);
        }
    }
    for base in bases {
        log::warn!(
            "log {}: finishing the interrupted rewrite of segment {base}",
            dir.display()
        );
        for path in [
            segment::store_path(dir, base),
            segment::index_path(dir, base),
        ] {
            let temp = super::recovery::temp_path(&path);
            match fs::rename(&temp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("renaming {}", temp.display()), e)),
            }
        }
        segment::sync_dir(dir)?;
        clear_swap_marker(dir, base)?;
    }
    Ok(())
}
