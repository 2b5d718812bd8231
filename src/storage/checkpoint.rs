//! The log's checkpoint file (`CHECKPOINT` in the log directory): the segment list
//! and a *durable end*, a lower bound of the offsets known to be fsynced. Recovery
//! uses it as evidence: damage below the durable end, or a listed segment that is
//! missing, is corruption, never a torn tail (rule in `storage/recovery.rs`).
//!
//! Layout (little-endian), [`encode`] / [`decode`] are pure functions:
//!
//! ```text
//! byte 0..4    magic        "CLCP"
//! byte 4       version      1
//! byte 5..8    reserved     zero
//! byte 8..16   durable_end  u64  every offset below it was fsynced
//! byte 16..20  count        u32  number of segment bases that follow
//! byte 20..    bases        count x u64, strictly increasing
//! last 4       crc32c       u32  of every byte before it
//! ```
//!
//! It is written atomically (temporary file, fsync, rename, fsync the directory)
//! when the log opens, in the `sync` that seals a rolled segment, lazily (at most
//! once per `LAZY_INTERVAL`, 1 s) after other syncs, before any structural change that
//! lowers the end or removes segments, and on close. Between writes it only lags
//! (a lower durable end, fewer segments), which keeps it a valid lower bound.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Result, StorageError};
use super::segment;

/// Name of the checkpoint file in a log directory.
pub(crate) const FILE_NAME: &str = "CHECKPOINT";
/// Temporary file a new checkpoint is written to before the rename.
pub(crate) const TEMP_NAME: &str = "CHECKPOINT.tmp";
/// Lazy checkpoints after ordinary syncs are written at most this often.
pub(crate) const LAZY_INTERVAL: Duration = Duration::from_secs(1);

const MAGIC: &[u8; 4] = b"CLCP";
const VERSION: u8 = 1;
const FIXED_BYTES: usize = 20;
const CRC_BYTES: usize = 4;
/// Largest checkpoint read (a million segments); a longer file is damaged.
pub(crate) const MAX_FILE_BYTES: u64 = (FIXED_BYTES + CRC_BYTES + 8 * 1_000_000) as u64;

/// The decoded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every offset below this was fsynced (a lower bound).
    pub durable_end: u64,
    /// Base offsets of the segments, oldest first.
    pub bases: Vec<u64>,
}

/// Encodes a checkpoint.
pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_BYTES + CRC_BYTES + 8 * checkpoint.bases.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&checkpoint.durable_end.to_le_bytes());
    out.extend_from_slice(&(checkpoint.bases.len() as u32).to_le_bytes());
    for base in &checkpoint.bases {
        out.extend_from_slice(&base.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a checkpoint; never panics, allocates at most `bytes.len()`.
pub fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, &'static str> {
    if bytes.len() < FIXED_BYTES + CRC_BYTES {
        return Err("checkpoint shorter than its header");
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err("checkpoint crc32c mismatch");
    }
    if &body[0..4] != MAGIC || body[4] != VERSION || body[5..8] != [0, 0, 0] {
        return Err("unknown checkpoint magic or version");
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let durable_end = u64_at(8);
    let count = u32::from_le_bytes([body[16], body[17], body[18], body[19]]) as usize;
    if (body.len() - FIXED_BYTES) / 8 != count || !(body.len() - FIXED_BYTES).is_multiple_of(8) {
        return Err("checkpoint segment count does not match its length");
    }
    let bases: Vec<u64> = (0..count).map(|i| u64_at(FIXED_BYTES + 8 * i)).collect();
    if bases.windows(2).any(|w| w[0] >= w[1]) {
        return Err("checkpoint segment bases are not increasing");
    }
    Ok(Checkpoint { durable_end, bases })
}

/// Reads the checkpoint of the log in `dir`: `Ok(None)` when there is none (a log
/// written before checkpoints existed) or when it is damaged (then with a warning:
/// recovery falls back to the evidence rule alone).
pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(FILE_NAME);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        log::warn!(
            "log {}: {} is larger than any valid checkpoint; ignoring it (durable end unknown)",
            dir.display(),
            path.display()
        );
        return Ok(None);
    }
    match decode(&bytes) {
        Ok(checkpoint) => Ok(Some(checkpoint)),
        Err(reason) => {
            log::warn!(
                "log {}: ignoring damaged {} ({reason}); the durable end is unknown, so only \
                 the evidence rule can tell damage from a torn tail",
                dir.display(),
                path.display()
            );
            Ok(None)
        }
    }
}

/// Writes the checkpoint atomically: temporary file, fsync, rename, fsync the
/// directory. A crash leaves the old checkpoint or the new one.
pub(crate) fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let temp = dir.join(TEMP_NAME);
    let path = dir.join(FILE_NAME);
    let bytes = encode(checkpoint);
    let result = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
    if let Err(e) = result {
        // A half-written temporary file would only waste the space that ran out.
        let _ = fs::remove_file(&temp);
        return Err(StorageError::io(format!("writing {}", temp.display()), e));
    }
    fs::rename(&temp, &path)
        .map_err(|e| StorageError::io(format!("renaming {}", temp.display()), e))?;
    segment::sync_dir(dir)
}

/// Writes the checkpoint, or, when that fails (say the disk is full), removes the
/// old one so it cannot claim more than is true after a structural change (unlink
/// needs no space). Without a checkpoint recovery uses the evidence rule alone.
/// Returns whether the checkpoint was written (false: removed).
pub(crate) fn write_or_remove(dir: &Path, checkpoint: &Checkpoint) -> Result<bool> {
    let Err(error) = write(dir, checkpoint) else {
        return Ok(true);
    };
    log::warn!(
        "log {}: cannot write the checkpoint ({error}); removing the old one",
        dir.display()
    );
    remove(dir).map(|()| false)
}

/// Removes the checkpoint (if any) and fsyncs the directory.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    let path: PathBuf = dir.join(FILE_NAME);
    match fs::remove_file(&path) {
        Ok(()) => segment::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_rejected() {
        let cp = Checkpoint {
            durable_end: 1234,
            bases: vec![0, 998, 2000],
        };
        let bytes = encode(&cp);
        assert_eq!(decode(&bytes), Ok(cp));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {at} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn write_read_and_remove() {
        let dir = crate::storage::tests::TempDir::new("checkpoint");
        assert_eq!(read(dir.path()).unwrap(), None);
        let cp = Checkpoint {
            durable_end: 7,
            bases: vec![1],
        };
        write(dir.path(), &cp).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(cp));
        fs::write(dir.path().join(FILE_NAME), b"garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None, "damaged: ignored");
        remove(dir.path()).unwrap();
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
