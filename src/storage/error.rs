//! Errors of the storage engine.
//!
//! `Io` and `Corrupt` are fail-stop: the operation did not happen (or happened only
//! partly on disk) and the caller should stop using the log or rebuild it.
//! `OffsetOutOfRange` and `RecordTooLarge` are expected outcomes callers handle.

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
    Corrupt {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte position in that file.
        position: u64,
        /// What was wrong.
        reason: String,
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

/// Result type of the storage engine.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Wraps an I/O error with what the engine was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
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
        }
    }
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
            } => write!(
                f,
                "corrupt log data in {} at byte {position}: {reason}",
                path.display()
            ),
            StorageError::RecordTooLarge { bytes, max_bytes } => write!(
                f,
                "record of {bytes} bytes (header included) exceeds the segment limit of {max_bytes} bytes"
            ),
            StorageError::InvalidConfig { reason } => write!(f, "invalid log configuration: {reason}"),
            StorageError::Closed => write!(f, "the log is closed"),
        }
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
