//! Opening a log directory: find the segments, validate what must be validated,
//! cut a torn tail, rebuild indexes. The rule is in the module doc of
//! [`crate::storage`]; in short, sealed segments are trusted (reads check crcs),
//! the unsynced tail is scanned and cut at its first invalid record, and holes or
//! mid-log damage are reported as [`StorageError::Corrupt`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Result, StorageError};
use super::index::{self, SLOT_BYTES};
use super::record::RECORD_HEADER_BYTES;
use super::segment::{
    self, index_path, parse_file_name, store_path, ActiveSegment, FileKind, FrameReader, Step,
};

/// Bytes read per `pread` while scanning a store.
const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;

/// What recovery does with corruption it finds while scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Report it as `Corrupt` (the default: never lose data silently).
    Strict,
    /// Cut the log just before it (and warn): for a node that can re-fetch the
    /// lost records, e.g. a Raft follower.
    Repair,
}

/// A sealed segment as the log tracks it without opening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SealedMeta {
    pub base: u64,
    pub store_bytes: u64,
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
}

/// How a store scan ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last record ends exactly at the end of the file.
    Clean,
    /// Bytes from `position` on are not a whole valid record.
    Torn { position: u64, reason: &'static str },
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
/// offset are checked. A record with a valid crc but the wrong offset, or an invalid
/// record followed by a valid record with the next offset, is `Corrupt` in
/// [`Mode::Strict`] and ends the scan (like a torn tail) in [`Mode::Repair`].
pub(crate) fn scan_store(
    file: &File,
    path: &Path,
    store_bytes: u64,
    base: u64,
    mode: Mode,
) -> Result<Scan> {
    let mut reader = FrameReader::new(file, path, 0, store_bytes, SCAN_CHUNK_BYTES);
    let mut positions = Vec::new();
    // Bounded: every iteration consumes at least one header's worth of bytes.
    loop {
        let expected = base + positions.len() as u64;
        match reader.next_step()? {
            Step::Record {
                position, header, ..
            } => {
                if header.offset != expected && mode == Mode::Repair {
                    return Ok(Scan {
                        positions,
                        valid_bytes: position,
                        tail: Tail::Torn {
                            position,
                            reason: "record holds the wrong offset",
                        },
                    });
                }
                if header.offset != expected {
                    return Err(StorageError::corrupt(
                        path,
                        position,
                        format!(
                            "record holds offset {} where {expected} belongs",
                            header.offset
                        ),
                    ));
                }
                let position = u32::try_from(position).map_err(|_| {
                    StorageError::corrupt(path, position, "store larger than 4 GiB")
                })?;
                positions.push(position);
            }
            Step::End => {
                return Ok(Scan {
                    positions,
                    valid_bytes: store_bytes,
                    tail: Tail::Clean,
                })
            }
            Step::Invalid {
                position,
                reason,
                value_len,
            } => {
                if let (Some(value_len), Mode::Strict) = (value_len, mode) {
                    let next = position + RECORD_HEADER_BYTES as u64 + u64::from(value_len);
                    if next < store_bytes
                        && valid_record_at(file, path, next, store_bytes, expected + 1)?
                    {
                        return Err(StorageError::corrupt(
                            path,
                            position,
                            format!(
                                "{reason} in record {expected}, which is followed by valid records"
                            ),
                        ));
                    }
                }
                return Ok(Scan {
                    positions,
                    valid_bytes: position,
                    tail: Tail::Torn { position, reason },
                });
            }
        }
    }
}

fn valid_record_at(file: &File, path: &Path, position: u64, end: u64, offset: u64) -> Result<bool> {
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
    for path in [store_path(dir, base), index_path(dir, base)] {
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

/// Suffix of the temporary file a rebuilt sealed index is written to.
const TEMP_SUFFIX: &str = ".tmp";

/// Writes a sealed index (exactly `positions.len()` slots) the crash-safe way:
/// write a temporary file, fsync it, rename it over the index, fsync the directory.
/// A crash at any point leaves either the old index or the complete new one.
fn write_sealed_index(dir: &Path, base: u64, positions: &[u32]) -> Result<()> {
    let path = index_path(dir, base);
    let mut temp = path.clone().into_os_string();
    temp.push(TEMP_SUFFIX);
    let temp = std::path::PathBuf::from(temp);
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
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let is_ours = name
            .to_str()
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            .and_then(parse_file_name)
            .is_some();
        if is_ours {
            log::warn!("removing leftover {:?} in {}", name, dir.display());
            fs::remove_file(entry.path())
                .map_err(|e| StorageError::io(format!("removing {:?}", entry.path()), e))?;
        }
    }
    Ok(())
}

/// Opens or creates the log in `dir` (which exists) and recovers it.
pub(crate) fn recover(
    dir: &Path,
    index_capacity: u64,
    initial_offset: u64,
    mode: Mode,
) -> Result<Recovered> {
    remove_temp_files(dir)?;
    let found = list_segments(dir)?;
    let bases: Vec<u64> = found.keys().copied().collect();
    if bases.is_empty() {
        let active = ActiveSegment::open(dir, initial_offset, index_capacity)?;
        segment::sync_dir(dir)?;
        return Ok(Recovered {
            sealed: Vec::new(),
            active,
            active_count: 0,
            active_store_bytes: 0,
        });
    }

    let mut sealed = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let files = found.get(&base).copied().unwrap_or_default();
        let spath = store_path(dir, base);
        let Some(&next_base) = bases.get(i + 1) else {
            // The last segment: always scanned.
            let store = open_store(&spath)?;
            let scan = scan_store(&store, &spath, files.store.unwrap_or(0), base, mode)?;
            drop(store);
            let recovered =
                activate_last(dir, base, index_capacity, &scan, files.store.unwrap_or(0))?;
            return Ok(Recovered {
                sealed,
                ..recovered
            });
        };
        let expected = next_base - base;
        // Repair treats a missing store as an empty one, so the log is cut here.
        let store_bytes = match (files.store, mode) {
            (Some(bytes), _) => bytes,
            (None, Mode::Repair) => 0,
            (None, Mode::Strict) => {
                return Err(StorageError::corrupt(
                    &spath,
                    0,
                    "store file of a sealed segment is missing",
                ))
            }
        };
        if files.store.is_some() && files.index == Some(index::sealed_file_bytes(expected)) {
            sealed.push(SealedMeta { base, store_bytes });
            continue;
        }
        // Not sealed on disk: scan it.
        let store = open_store(&spath)?;
        let scan = scan_store(&store, &spath, store_bytes, base, mode)?;
        let count = scan.positions.len() as u64;
        if count == expected && scan.tail == Tail::Clean {
            store
                .sync_data()
                .map_err(|e| StorageError::io(format!("fsyncing {}", spath.display()), e))?;
            write_sealed_index(dir, base, &scan.positions)?;
            log::warn!(
                "log {}: rebuilt the index of segment {base} ({count} records)",
                dir.display()
            );
            sealed.push(SealedMeta { base, store_bytes });
            continue;
        }
        let unsynced = files
            .index
            .is_some_and(|len| len > index::sealed_file_bytes(expected));
        if count > expected || (!unsynced && mode == Mode::Strict) {
            return Err(StorageError::corrupt(
                &spath,
                scan.valid_bytes,
                format!(
                    "segment {base} holds {count} valid records but the next segment starts at \
                     offset {next_base}: records are missing from the middle of the log"
                ),
            ));
        }
        // The unsynced tail (or, repairing, the damage) starts here: cut it and
        // drop the later segments.
        drop(store);
        remove_segments_newest_first(dir, &bases[i + 1..])?;
        log::warn!(
            "log {}: segment {base} was never synced or is damaged and ends early ({:?}); \
             dropping it from offset {} and removing {} later segment(s)",
            dir.display(),
            scan.tail,
            base + count,
            bases.len() - i - 1
        );
        let recovered = activate_last(dir, base, index_capacity, &scan, store_bytes)?;
        segment::sync_dir(dir)?;
        return Ok(Recovered {
            sealed,
            ..recovered
        });
    }
    Err(StorageError::InvalidConfig {
        reason: "internal: segment list ended without a last segment".into(),
    })
}

/// Cuts the last segment to its valid records, rebuilds its index in place and
/// fsyncs it.
fn activate_last(
    dir: &Path,
    base: u64,
    index_capacity: u64,
    scan: &Scan,
    store_bytes: u64,
) -> Result<Recovered> {
    let count = scan.positions.len() as u64;
    let active = ActiveSegment::open(dir, base, index_capacity.max(count))?;
    if let Tail::Torn { position, reason } = scan.tail {
        log::warn!(
            "log {}: torn tail in {} at byte {position} ({reason}); dropping {} bytes after offset {}",
            dir.display(),
            active.store_path.display(),
            store_bytes - position,
            base + count,
        );
        active
            .store
            .set_len(scan.valid_bytes)
            .map_err(|e| StorageError::io(format!("cutting {}", active.store_path.display()), e))?;
    }
    let mut fixed = 0u64;
    for (slot, &pos) in scan.positions.iter().enumerate() {
        let slot = slot as u64;
        if active.position(slot).ok() != Some(u64::from(pos)) {
            fixed += 1;
            if !active.set_position(slot, u64::from(pos)) {
                return Err(StorageError::corrupt(
                    &active.index_path,
                    slot * SLOT_BYTES,
                    "index too small",
                ));
            }
        }
    }
    if fixed > 0 {
        log::warn!(
            "log {}: rebuilt {fixed} of {count} slots of {}",
            dir.display(),
            active.index_path.display()
        );
    }
    active
        .store
        .sync_data()
        .map_err(|e| StorageError::io(format!("fsyncing {}", active.store_path.display()), e))?;
    Ok(Recovered {
        sealed: Vec::new(),
        active,
        active_count: count,
        active_store_bytes: scan.valid_bytes,
    })
}
