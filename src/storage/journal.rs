//! The node journal: one append-only file where the appends of every log that
//! changed in a group-commit round are written together and made durable by ONE
//! `fdatasync`, instead of one fsync per log (a node hosting many partitions would
//! otherwise pay a device flush per partition per round). The logs' own segment
//! files are written as usual but fsynced later, at a journal checkpoint; until
//! then a crash that loses their unsynced pages is repaired by replaying the
//! journal (the same idea as TiKV's raft-engine or a shared write-ahead log).
//!
//! This module is only the file: its format, appending a round, reading it back,
//! and rewriting it. What to journal, when to checkpoint and how to replay a record
//! into a log is the node's (`node::journal`).
//!
//! # Format
//! A sequence of records, each `magic u32 | body_len u32 | crc32c(body) u32 | body`
//! (little endian). The body is `generation u64 | log id u64 | first offset u64 |
//! end offset u64 | count u32`, then `count` entries `term u64 | kind u8 |
//! value_len u32 | value`: the log held exactly these entries from `first`, and
//! ended at `end`, when the record was written. A file's records carry its
//! generation: a reused file's older records after the newest one end it.
//!
//! # Torn tail or damage
//! Only the newest round can be torn (a crash during its write: it was never
//! acknowledged). A record that fails validation with no valid record after it is
//! that torn tail and is ignored; one followed by a valid record is damage
//! to acknowledged data, and opening the journal fails (never mistaken for a tail).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{u32_at, u64_at};
use super::segment;
use super::{Offset, RecordKind, Result, StorageError, Term};

/// Journal files are `journal.<generation>` in their directory; a checkpoint starts
/// a new generation and removes the older files once the logs they cover are fsynced.
pub const JOURNAL_FILE_PREFIX: &str = "journal.";
const MAGIC: u32 = 0x434c_4a31; // "CLJ1"
const HEADER_BYTES: usize = 12;
const BODY_FIXED_BYTES: usize = 36;
const ENTRY_FIXED_BYTES: usize = 13;
/// Largest journal file read (whole, into memory) at open: far above what
/// checkpoints let one reach (64 MiB plus one round).
const MAX_OPEN_BYTES: u64 = 1 << 30;
/// Most journal files read at open (a checkpoint leaves one or two).
const MAX_FILES: usize = 1024;
/// Removed journal files are kept under this prefix and written over by a later
/// generation: overwriting allocated blocks makes its `fdatasync` flush data only,
/// not the file's growth (measured here: 55 µs instead of 88 µs per fdatasync).
const FREE_FILE_PREFIX: &str = "journal.free.";
/// Most free files kept for reuse.
const MAX_FREE_FILES: usize = 2;

/// One entry of a journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The entry's Raft term.
    pub term: Term,
    /// Data, no-op or config.
    pub kind: RecordKind,
    /// The payload.
    pub value: Vec<u8>,
}

/// What one log held after a round: `entries` from `first` on, and its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Whose log (the node's group id).
    pub log_id: u64,
    /// Offset of `entries[0]`.
    pub first: Offset,
    /// The log's next offset once the round's appends were done.
    pub end: Offset,
    /// The entries from `first` (contiguous offsets).
    pub entries: Vec<JournalEntry>,
}

/// The open journal file and the round being encoded.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Generation of the file written now.
    generation: u64,
    file: File,
    /// Bytes of valid records in the file (the next round is written here).
    len: u64,
    /// The round being encoded.
    round: Vec<u8>,
}

/// The path of generation `generation`'s file in `dir`.
pub fn file_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{JOURNAL_FILE_PREFIX}{generation:020}"))
}

/// Generations of the journal files in `dir`, ascending.
fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(g) = name
            .to_str()
            .and_then(|n| n.strip_prefix(JOURNAL_FILE_PREFIX))
            .and_then(|g| g.parse::<u64>().ok())
        else {
            continue;
        };
        if out.len() == MAX_FILES {
            return Err(StorageError::corrupt(
                dir,
                0,
                format!("more than {MAX_FILES} journal files"),
            ));
        }
        out.push(g);
    }
    out.sort_unstable();
    Ok(out)
}

/// Removes the journal files of generations up to `through` (their records are
/// covered by fsynced logs), then fsyncs the directory.
pub fn remove_through(dir: &Path, through: u64) -> Result<()> {
    let mut free = free_files(dir)?.len();
    for g in generations(dir)?.into_iter().filter(|g| *g <= through) {
        let path = file_path(dir, g);
        let removed = if free < MAX_FREE_FILES {
            free += 1;
            std::fs::rename(&path, dir.join(format!("{FREE_FILE_PREFIX}{g}")))
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| StorageError::io(format!("removing {}", path.display()), e))?;
    }
    segment::sync_dir(dir)
}

/// Files kept for reuse in `dir`.
fn free_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    Ok(entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(FREE_FILE_PREFIX))
        })
        .map(|e| e.path())
        .take(MAX_FILES)
        .collect())
}

/// Generation `generation`'s file: a free file renamed (written over from the
/// start) if there is one, else a new one.
fn reuse_or_create(dir: &Path, generation: u64) -> Result<File> {
    let Some(free) = free_files(dir)?.into_iter().next() else {
        return create_file(dir, generation);
    };
    let path = file_path(dir, generation);
    std::fs::rename(&free, &path)
        .map_err(|e| StorageError::io(format!("reusing {}", free.display()), e))?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))
}

/// Reads one journal file: its records and the length of its valid prefix.
fn read_file(path: &Path, generation: u64) -> Result<(File, Vec<JournalRecord>, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
    let size = segment::file_len(&file, path)?;
    if size > MAX_OPEN_BYTES {
        return Err(StorageError::corrupt(
            path,
            0,
            format!("journal of {size} bytes: larger than any this version writes"),
        ));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut (&file), &mut bytes)
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
    let (records, len) = decode_all(&bytes, generation)
        .map_err(|(position, reason)| StorageError::corrupt(path, position as u64, reason))?;
    if len < bytes.len() {
        log::info!(
            "journal {}: ignored {} bytes after the last record (a torn round never \
             acknowledged, or a reused file's old contents)",
            path.display(),
            bytes.len() - len
        );
    }
    Ok((file, records, len as u64))
}

fn create_file(dir: &Path, generation: u64) -> Result<File> {
    let path = file_path(dir, generation);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and returns it with the
    /// records of all its files, oldest first. Torn tails are dropped (the next
    /// round overwrites the newest file's); damage before a tail is an error.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<JournalRecord>)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        let mut records = Vec::new();
        let mut newest = None;
        for g in generations(dir)? {
            let (file, mut in_file, len) = read_file(&file_path(dir, g), g)?;
            records.append(&mut in_file);
            newest = Some((g, file, len));
        }
        let (generation, file, len) = match newest {
            Some(n) => n,
            None => (1, create_file(dir, 1)?, 0),
        };
        segment::sync_dir(dir)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            generation,
            file,
            len,
            round: Vec::new(),
        };
        Ok((journal, records))
    }

    /// The directory of the journal's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generation of the file written now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes of committed records in the file.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// True if nothing was added since the last commit.
    pub fn round_is_empty(&self) -> bool {
        self.round.is_empty()
    }

    /// Starts a record of `log_id` from offset `first` in the current round; add its
    /// entries with [`Journal::push_entry`] and close it with [`Journal::end_record`].
    pub fn begin_record(&mut self, log_id: u64, first: Offset) -> RecordStart {
        let at = self.round.len();
        self.round.extend_from_slice(&[0; HEADER_BYTES]);
        self.round.extend_from_slice(&self.generation.to_le_bytes());
        self.round.extend_from_slice(&log_id.to_le_bytes());
        self.round.extend_from_slice(&first.0.to_le_bytes());
        self.round.extend_from_slice(&[0; 12]); // end and count, set at the end
        RecordStart { at, count: 0 }
    }

    /// Adds one entry to the record begun at `start`.
    pub fn push_entry(
        &mut self,
        start: &mut RecordStart,
        term: Term,
        kind: RecordKind,
        value: &[u8],
    ) {
        self.round.extend_from_slice(&term.0.to_le_bytes());
        self.round.push(kind as u8);
        self.round
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.round.extend_from_slice(value);
        start.count += 1;
    }

    /// Closes the record begun at `start`: the log ended at `end`.
    pub fn end_record(&mut self, start: RecordStart, end: Offset) {
        let body = start.at + HEADER_BYTES;
        self.round[body + 24..body + 32].copy_from_slice(&end.0.to_le_bytes());
        self.round[body + 32..body + 36].copy_from_slice(&start.count.to_le_bytes());
        let body_len = (self.round.len() - body) as u32;
        let crc = crc32c::crc32c(&self.round[body..]);
        self.round[start.at..start.at + 4].copy_from_slice(&MAGIC.to_le_bytes());
        self.round[start.at + 4..start.at + 8].copy_from_slice(&body_len.to_le_bytes());
        self.round[start.at + 8..start.at + 12].copy_from_slice(&crc.to_le_bytes());
    }

    /// Writes the round's records after the committed ones and `fdatasync`s: when
    /// this returns Ok, every record of the round is durable. On error nothing of
    /// the round counts (a partial write is a torn tail the next round overwrites).
    pub fn commit(&mut self) -> Result<()> {
        if self.round.is_empty() {
            return Ok(());
        }
        let round = std::mem::take(&mut self.round);
        self.file
            .write_all_at(&round, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| {
                let path = file_path(&self.dir, self.generation);
                StorageError::io(format!("writing {}", path.display()), e)
            })?;
        self.len += round.len() as u64;
        self.round = round;
        self.round.clear();
        Ok(())
    }

    /// Drops the round being encoded (its logs were made durable another way).
    pub fn discard_round(&mut self) {
        self.round.clear();
    }

    /// Starts the next generation's file holding `keep` (records still needed
    /// whose files are about to be removed), fsynced with its directory, and
    /// writes to it from now on. Returns the generation before it: its files and
    /// older may be removed once the logs their records cover are fsynced. A crash
    /// during the rotation leaves the older files whole (`keep` is read twice
    /// then, which replay tolerates).
    pub fn rotate(&mut self, keep: &[JournalRecord]) -> Result<u64> {
        self.round.clear();
        let previous = self.generation;
        let next = previous + 1;
        // The kept records are records of the new file.
        self.generation = next;
        let rotated = self.start_file(keep);
        if rotated.is_err() {
            self.generation = previous;
            self.round.clear();
        }
        rotated.map(|()| previous)
    }

    /// Writes `keep` at the start of the current generation's file and switches to it.
    fn start_file(&mut self, keep: &[JournalRecord]) -> Result<()> {
        for r in keep {
            let mut start = self.begin_record(r.log_id, r.first);
            for e in &r.entries {
                self.push_entry(&mut start, e.term, e.kind, &e.value);
            }
            self.end_record(start, r.end);
        }
        let path = file_path(&self.dir, self.generation);
        let file = reuse_or_create(&self.dir, self.generation)?;
        file.write_all_at(&self.round, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))?;
        segment::sync_dir(&self.dir)?;
        self.file = file;
        self.len = self.round.len() as u64;
        self.round.clear();
        Ok(())
    }
}

/// A record being encoded in the current round.
#[derive(Debug)]
pub struct RecordStart {
    at: usize,
    count: u32,
}

/// Decodes every record; returns them and the length of the valid prefix, or the
/// position and reason of damage followed by valid records.
fn decode_all(
    bytes: &[u8],
    generation: u64,
) -> std::result::Result<(Vec<JournalRecord>, usize), (usize, String)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_at(bytes, pos, generation) {
            Ok((record, next)) => {
                records.push(record);
                pos = next;
            }
            Err(reason) => {
                if let Some(later) = valid_record_after(bytes, pos, generation) {
                    return Err((
                        pos,
                        format!(
                            "journal record damaged ({reason}) before a valid record at byte \
                             {later}: acknowledged appends may be lost"
                        ),
                    ));
                }
                break;
            }
        }
    }
    Ok((records, pos))
}

/// The position of the first valid record after `bad`, if any.
fn valid_record_after(bytes: &[u8], bad: usize, generation: u64) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    (bad + 1..bytes.len().saturating_sub(HEADER_BYTES - 1))
        .filter(|p| bytes[*p..*p + 4] == magic)
        .find(|p| decode_at(bytes, *p, generation).is_ok())
}

/// The record at `pos`; one of another generation (left in a reused file) is
/// not a record of this file.
fn decode_at(
    bytes: &[u8],
    pos: usize,
    generation: u64,
) -> std::result::Result<(JournalRecord, usize), String> {
    let header = bytes
        .get(pos..pos + HEADER_BYTES)
        .ok_or("truncated record header")?;
    if u32_at(header, 0) != MAGIC {
        return Err("no record magic".into());
    }
    let body_len = u32_at(header, 4) as usize;
    let body_at = pos + HEADER_BYTES;
    let body = bytes
        .get(body_at..body_at + body_len)
        .ok_or("record runs past the end of the file")?;
    if crc32c::crc32c(body) != u32_at(header, 8) {
        return Err("record checksum mismatch".into());
    }
    let (record_generation, record) = decode_body(body)?;
    if record_generation != generation {
        return Err(format!(
            "a record of generation {record_generation} (a reused file's old contents)"
        ));
    }
    Ok((record, body_at + body_len))
}

fn decode_body(body: &[u8]) -> std::result::Result<(u64, JournalRecord), String> {
    if body.len() < BODY_FIXED_BYTES {
        return Err("record body too short".into());
    }
    let generation = u64_at(body, 0);
    let log_id = u64_at(body, 8);
    let first = Offset(u64_at(body, 16));
    let end = Offset(u64_at(body, 24));
    let count = u32_at(body, 32) as usize;
    // Each entry takes at least ENTRY_FIXED_BYTES: the count is bounded by the body.
    if count > (body.len() - BODY_FIXED_BYTES) / ENTRY_FIXED_BYTES {
        return Err(format!(
            "record claims {count} entries in {} bytes",
            body.len()
        ));
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = BODY_FIXED_BYTES;
    for _ in 0..count {
        let fixed = body
            .get(at..at + ENTRY_FIXED_BYTES)
            .ok_or("entry header past the record")?;
        let kind = RecordKind::from_u8(fixed[8]).ok_or("unknown entry kind")?;
        let len = u32_at(fixed, 9) as usize;
        let value = body
            .get(at + ENTRY_FIXED_BYTES..at + ENTRY_FIXED_BYTES + len)
            .ok_or("entry value past the record")?;
        entries.push(JournalEntry {
            term: Term(u64_at(fixed, 0)),
            kind,
            value: value.to_vec(),
        });
        at += ENTRY_FIXED_BYTES + len;
    }
    if at != body.len() {
        return Err("record body length does not match its entries".into());
    }
    if first.0.checked_add(count as u64) != Some(end.0) {
        return Err(format!(
            "record from {first} with {count} entries claims end {end}"
        ));
    }
    Ok((
        generation,
        JournalRecord {
            log_id,
            first,
            end,
            entries,
        },
    ))
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
