//! Errors of the storage engine.
//!
//! `Io` and `Corrupt` are fail-stop: the operation did not happen (or happened only
//! partly on disk) and the caller should stop using the log or rebuild it.
//! `OffsetOutOfRange` and `RecordTooLarge` are expected outcomes callers handle.
//! `CorruptRecord` concerns one record only (its neighbours stay readable), and
//! `NoSpace` leaves the log consistent and usable: retry once space is freed.

use std::fmt;
use std::path::PathBuf;

use crate::types::Offset;

/// Everything that can go wrong in the storage engine.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system I/O call failed.
    Io {
        /// What the engine was doing (includes the path).
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The offset is outside `[first, next)`.
    OffsetOutOfRange {
        /// The offset asked for.
        offset: Offset,
        /// First readable offset.
        first: Offset,
        /// One past the last appended offset.
        next: Offset,
    },
    /// Bytes on disk failed validation (crc, framing, index, or a hole in the log).
    /// From [`crate::storage::Log::open`], `damage` says which offsets are at stake.
    Corrupt {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte position in that file.
        position: u64,
        /// What was wrong.
        reason: String,
        /// The offsets at stake and how to repair, when known (open-time reports).
        damage: Option<Damage>,
    },
    /// One record is damaged on this disk (crc, framing, or its index slot). Only
    /// this record is affected: reads before and after it still work.
    CorruptRecord {
        /// The damaged record's offset.
        offset: Offset,
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte position in that file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file system is full (ENOSPC). Nothing of the failed operation is visible
    /// and the log stays usable: retry once space is freed.
    NoSpace {
        /// What the engine was doing (includes the path).
        context: String,
    },
    /// A record (header included) does not fit in one segment.
    RecordTooLarge {
        /// Encoded size of the record, header included.
        bytes: u64,
        /// The largest encoded record a segment accepts.
        max_bytes: u64,
    },
    /// The configuration is unusable (e.g. a store size above `u32::MAX`).
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The log refuses work: it was closed, or it shut itself down after an I/O
    /// failure left the on-disk tail in an unknown state (reopen it to recover).
    Closed,
}

/// The offsets a corruption found at open puts at stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The first offset that is damaged or missing: every offset from here on is
    /// lost if the log is truncated to repair it.
    pub first_offset: Offset,
    /// The log's durable end as recorded in its checkpoint (every offset below it
    /// was fsynced and may have been acknowledged), `None` if there is no checkpoint.
    pub durable_end: Option<Offset>,
    /// The end of the log as far as recovery knows it (at least the durable end):
    /// truncating at `first_offset` drops the offsets `first_offset..known_end`.
    pub known_end: Offset,
    /// True when truncating the log at `first_offset` leaves a consistent log
    /// (`storage::repair`); false when only restoring the files can help.
    pub repairable_by_truncation: bool,
}

/// Result type of the storage engine.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Wraps an I/O error with what the engine was doing.
    /// ENOSPC (and EDQUOT) become [`StorageError::NoSpace`].
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        if is_no_space(&source) {
            return StorageError::NoSpace {
                context: format!("{}: {source}", context.into()),
            };
        }
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    /// A corruption report.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
            damage: None,
        }
    }

    /// A damaged record.
    pub(crate) fn corrupt_record(
        offset: u64,
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::CorruptRecord {
            offset: Offset(offset),
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }

    /// The open-time damage report, if this is one.
    pub fn damage(&self) -> Option<Damage> {
        match self {
            StorageError::Corrupt { damage, .. } => *damage,
            _ => None,
        }
    }
}

/// ENOSPC or EDQUOT: the disk (or quota) is full.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            StorageError::OffsetOutOfRange {
                offset,
                first,
                next,
            } => write!(
                f,
                "offset {offset} is out of range: the log holds offsets [{first}, {next})"
            ),
            StorageError::Corrupt {
                path,
                position,
                reason,
                damage,
            } => {
                write!(
                    f,
                    "corrupt log data in {} at byte {position}: {reason}",
                    path.display()
                )?;
                match (damage, path.parent()) {
                    (Some(d), Some(dir)) => write!(f, "; {}", d.describe(dir)),
                    _ => Ok(()),
                }
            }
            StorageError::CorruptRecord {
                offset,
                path,
                position,
                reason,
            } => write!(
                f,
                "record {offset} is damaged ({} at byte {position}: {reason})",
                path.display()
            ),
            StorageError::NoSpace { context } => {
                write!(f, "no space left on the device while {context}")
            }
            StorageError::RecordTooLarge { bytes, max_bytes } => write!(
                f,
                "record of {bytes} bytes (header included) exceeds the segment limit of {max_bytes} bytes"
            ),
            StorageError::InvalidConfig { reason } => write!(f, "invalid log configuration: {reason}"),
            StorageError::Closed => write!(f, "the log is closed"),
        }
    }
}

impl Damage {
    /// What is at stake and the exact command that repairs it (for the log in
    /// `log_dir`).
    pub fn describe(&self, log_dir: &std::path::Path) -> String {
        let mut out = format!(
            "offsets {}..{} are at stake",
            self.first_offset, self.known_end
        );
        match self.durable_end {
            Some(end) if end > self.first_offset => out.push_str(&format!(
                " (those below the durable end {end} were fsynced and may have been acknowledged)"
            )),
            Some(end) => out.push_str(&format!(
                " (all at or above the durable end {end}: possibly never acknowledged)"
            )),
            None => out.push_str(" (no checkpoint: durable end unknown)"),
        }
        if self.repairable_by_truncation {
            out.push_str(&format!(
                "; to drop them and go on: commitlogd repair --data-dir {} --truncate-from {1} \
                 --i-understand-records-from-{1}-are-lost",
                log_dir.display(),
                self.first_offset
            ));
        } else {
            out.push_str(
                "; truncating cannot repair this without losing the whole log: restore the \
                 missing files from a backup (or move the data directory away to start empty)",
            );
        }
        out
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
