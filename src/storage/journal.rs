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
//! (little endian). The body is `log id u64 | first offset u64 | end offset u64 |
//! count u32`, then `count` entries `term u64 | kind u8 | value_len u32 | value`:
//! the log held exactly these entries from `first`, and ended at `end`, when the
//! record was written.
//!
//! # Torn tail or damage
//! Only the newest round can be torn (a crash during its write: it was never
//! acknowledged). A record that fails validation with no valid record after it is
//! that torn tail and is ignored; one followed by a valid record is damage
//! to acknowledged data, and opening the journal fails (never mistaken for a tail).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::segment;
use super::{Offset, RecordKind, Result, StorageError, Term};

/// The journal file's name in its directory.
pub const JOURNAL_FILE_NAME: &str = "journal";
const MAGIC: u32 = 0x434c_4a31; // "CLJ1"
const HEADER_BYTES: usize = 12;
const BODY_FIXED_BYTES: usize = 28;
const ENTRY_FIXED_BYTES: usize = 13;
/// Largest journal read at open: far above what checkpoints let it reach.
const MAX_OPEN_BYTES: u64 = 1 << 33;

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
    path: PathBuf,
    file: File,
    /// Bytes of valid records in the file (the next round is written here).
    len: u64,
    /// The round being encoded.
    round: Vec<u8>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and returns it with the
    /// records it holds, oldest first. A torn tail is dropped (the next round
    /// overwrites it); damage before the tail is an error.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<JournalRecord>)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(JOURNAL_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        let size = segment::file_len(&file, &path)?;
        if size > MAX_OPEN_BYTES {
            return Err(StorageError::corrupt(
                &path,
                0,
                format!("journal of {size} bytes: larger than any this version writes"),
            ));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut (&file), &mut bytes)
            .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
        let (records, len) = decode_all(&bytes)
            .map_err(|(position, reason)| StorageError::corrupt(&path, position as u64, reason))?;
        if len < bytes.len() {
            log::warn!(
                "journal {}: dropped a torn tail of {} bytes (a round never acknowledged)",
                path.display(),
                bytes.len() - len
            );
        }
        segment::sync_dir(dir)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            path,
            file,
            len: len as u64,
            round: Vec::new(),
        };
        Ok((journal, records))
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
        self.round[body + 16..body + 24].copy_from_slice(&end.0.to_le_bytes());
        self.round[body + 24..body + 28].copy_from_slice(&start.count.to_le_bytes());
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
            .map_err(|e| StorageError::io(format!("writing {}", self.path.display()), e))?;
        self.len += round.len() as u64;
        self.round = round;
        self.round.clear();
        Ok(())
    }

    /// Drops the round being encoded (its logs were made durable another way).
    pub fn discard_round(&mut self) {
        self.round.clear();
    }

    /// Replaces the journal by one holding only `keep` (the logs it covered were
    /// made durable by the caller): written to a temporary file, fsynced and
    /// renamed over the journal, so a crash leaves the old or the new one whole.
    pub fn rewrite(&mut self, keep: &[JournalRecord]) -> Result<()> {
        self.round.clear();
        for r in keep {
            let mut start = self.begin_record(r.log_id, r.first);
            for e in &r.entries {
                self.push_entry(&mut start, e.term, e.kind, &e.value);
            }
            self.end_record(start, r.end);
        }
        let tmp = self.dir.join(format!("{JOURNAL_FILE_NAME}.tmp"));
        let io = |what: &'static str, p: &Path| {
            let p = p.display().to_string();
            move |e| StorageError::io(format!("{what} {p}"), e)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        file.write_all_at(&self.round, 0)
            .and_then(|()| file.sync_all())
            .map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("renaming", &tmp))?;
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
fn decode_all(bytes: &[u8]) -> std::result::Result<(Vec<JournalRecord>, usize), (usize, String)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_at(bytes, pos) {
            Ok((record, next)) => {
                records.push(record);
                pos = next;
            }
            Err(reason) => {
                if let Some(later) = valid_record_after(bytes, pos) {
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
fn valid_record_after(bytes: &[u8], bad: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    (bad + 1..bytes.len().saturating_sub(HEADER_BYTES - 1))
        .filter(|p| bytes[*p..*p + 4] == magic)
        .find(|p| decode_at(bytes, *p).is_ok())
}

fn decode_at(bytes: &[u8], pos: usize) -> std::result::Result<(JournalRecord, usize), String> {
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
    let record = decode_body(body)?;
    Ok((record, body_at + body_len))
}

fn decode_body(body: &[u8]) -> std::result::Result<JournalRecord, String> {
    if body.len() < BODY_FIXED_BYTES {
        return Err("record body too short".into());
    }
    let log_id = u64_at(body, 0);
    let first = Offset(u64_at(body, 8));
    let end = Offset(u64_at(body, 16));
    let count = u32_at(body, 24) as usize;
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
    Ok(JournalRecord {
        log_id,
        first,
        end,
        entries,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
