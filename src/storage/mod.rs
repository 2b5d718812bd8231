//! The segmented, crash-safe log that is both the commit log and the Raft log.
//!
//! # Shape
//!
//! A log is a directory of *segments*. Each segment covers a contiguous run of
//! offsets starting at its *base offset* and is two files named after that base,
//! zero-padded to 20 digits:
//!
//! * `00000000000000000000.store`: the records, back to back (format below);
//! * `00000000000000000000.index`: relative offset → position in the store,
//!   memory-mapped while the segment is active (through `storage/mmap.rs`, the
//!   only module with `unsafe`), read with `pread` once it is sealed.
//!
//! A sealed segment may also have `<base>.timeindex`, its sparse time index
//! (`storage/timeindex.rs`: derived data, rebuilt when damaged or stale, never
//! needed to open the log), used by [`Log::offset_for_timestamp`] and by retention
//! by age.
//!
//! The directory also holds `LOCK`, on which an open log keeps an exclusive
//! `flock`, so the same log cannot be opened twice at once. A process that opens
//! many logs under one directory (a node: one log per Raft group) locks that
//! directory once instead ([`OuterLock`], [`DirLock::Covered`]): its logs take no
//! lock and hold no descriptor for it.
//!
//! # Open files
//!
//! An open log holds the active segment's store and index open (the index is
//! also mapped), up to 16 sealed segments a read opened (two descriptors each; at
//! most 512 for all the logs of a process together) and, with [`DirLock::Own`],
//! `LOCK`. [`Log::release_idle_files`]
//! closes all of them for an idle log (after fsyncing anything unsynced, so no
//! write error is lost with a descriptor); the mapping stays. Writers reopen the
//! active files on demand and keep them; reads and fsyncs of a released log open
//! a descriptor for that call only, so reading an idle log does not pin any.
//!
//! Only the newest segment (the *active* one) is written. A new segment starts when
//! the next record would push the active store past `max_store_bytes` or its index
//! past `max_index_bytes`. Older (*sealed*) segments are immutable; they are opened
//! lazily on read and kept in a small bounded cache, so a log with thousands of
//! segments costs neither thousands of fds nor thousands of mappings.
//!
//! # Record format (store file)
//!
//! Every record is a 28-byte header followed by the value; all integers are
//! little-endian:
//!
//! ```text
//! byte  0..4   crc32c    u32  CRC-32C (Castagnoli) of bytes 4..28+len (rest of header + value)
//! byte  4..8   len       u32  value length in bytes
//! byte  8..16  offset    u64  the record's absolute offset (its Raft index)
//! byte 16..24  term      u64  the Raft term (0 for a standalone log)
//! byte 24      kind      u8   RecordKind: 0 data, 1 no-op, 2 config; others are corrupt
//! byte 25..28  reserved  3 bytes, written as zero and required to be zero
//! byte 28..    value     `len` bytes
//! ```
//!
//! The crc is checked on every read path (single reads, range reads, recovery
//! scans), and the header's offset must equal the offset asked for, so a flipped
//! byte or a stale index entry yields [`StorageError::Corrupt`], never wrong data.
//!
//! # Index format
//!
//! Slot `i` (8 bytes at byte `8 * i`) describes the record with relative offset
//! `i` (absolute offset `base + i`): `u32` LE relative offset (must equal `i`),
//! then `u32` LE byte position of the record in the store. Store files are therefore
//! limited to `u32::MAX` bytes. The index file of the active segment is
//! preallocated to `(capacity + 1) * 8` bytes (one spare slot that is never used);
//! *sealing* a segment fsyncs its store and index and then trims the index to
//! exactly `count * 8` bytes. An index whose length is exactly eight times the
//! number of records the segment must hold is therefore the on-disk mark of a
//! segment whose contents are durable.
//!
//! # Durability and group commit
//!
//! [`Log::append`] and [`Log::append_batch`] write into the page cache (one
//! positioned write per batch per segment) and publish the records to readers;
//! they are durable only after [`Log::sync`], which fsyncs without holding the
//! append lock so appends continue meanwhile. Rolling to a new segment does not
//! fsync inline: the sealed segment is queued and the next `sync` fsyncs it, trims
//! its index (sealing it on disk) and fsyncs the directory, before reporting any
//! offset as durable. Removing segments (truncation, retention, reset) fsyncs the
//! directory immediately.
//!
//! # Concurrency
//!
//! Five locks, always taken in this order: `rebuild` (serializes
//! [`Log::rebuild_sealed`], held while it builds files, when it holds no other),
//! `sync` (serializes `sync` with structural changes), `writer` (the append path),
//! `segments` (an `RwLock` over the segment list) and the sealed-segment cache. Appends take only `writer`, except
//! for the short exclusive section of a segment roll. Readers take `segments`
//! shared for the duration of a read and never take `writer` or `sync`, so they do
//! not wait for appends or fsyncs. The *readable end* (next offset and end of the
//! active store) is published with Release after the bytes and index slots are
//! written and loaded with Acquire by readers (`storage/publish.rs`, checked by a
//! loom model). Truncation, reset, retention and rolls take `segments` exclusively, so
//! a reader never observes bytes being rewritten.
//!
//! The directory also holds `CHECKPOINT` (`storage/checkpoint.rs`): the segment
//! list and a *durable end* (a lower bound of the fsynced offsets), rewritten
//! atomically on open, when a rolled segment is sealed, at most once a second after
//! other syncs, before truncation / prefix removal / reset, and on close. It adds
//! no fsync to a group commit.
//!
//! # Recovery rule (on [`Log::open`])
//!
//! Stated precisely in the module doc of `storage/recovery.rs`. In short: only
//! bytes written after the last completed fsync may be cut as a torn tail; damage
//! below the checkpoint's durable end, damage followed by a valid record, a hole
//! between segments, or a listed segment that is missing is corruption, refused with
//! [`StorageError::Corrupt`] carrying a [`Damage`] (file, byte, offsets at stake,
//! whether truncation repairs it). Sealed segments get cheap structural checks only
//! (no scan: a 10 GiB log opens in milliseconds); damage inside them is
//! [`StorageError::CorruptRecord`] for exactly the damaged records on read, and the
//! [`scrub`] module finds it in the background. [`Log::open_and_repair`] cuts instead
//! of refusing (a Raft follower refetches) and returns what it cut;
//! [`repair::repair`] (`commitlogd repair`) does so for an operator who acknowledges
//! the first damaged offset.
//!
//! # Self-healing (replicas)
//!
//! [`Log::open_for_replica`] cuts only damage in the last segment; damage of a
//! sealed segment (missing files, a hole, an index that disagrees with its store,
//! a store cut short or with bytes after its last record) is *quarantined*: the
//! segment keeps its offsets, reads of what cannot be read are
//! [`StorageError::CorruptRecord`], later segments stay, and the ranges are
//! returned ([`DamagedRange`], also [`Log::damaged_ranges`]). The node fetches the
//! records from a peer and calls [`Log::rebuild_sealed`], which writes a whole
//! segment from the intact local records plus the supplied ones (never
//! overwriting an intact record) to temporary files, fsyncs and renames them
//! over the old ones, and swaps the segment in under the locks; since encoding is
//! deterministic the result is the undamaged original, byte for byte. It also
//! repairs records found damaged later by reads or the scrubber.
//!
//! # Disk full
//!
//! ENOSPC anywhere is [`StorageError::NoSpace`]: a failed append is rolled back (a
//! batch that failed half-way across a roll is truncated back) and the next append
//! after space frees works. The mapped index never touches unallocated pages: slots
//! are allocated with `pwrite` (64 KiB at a time) before the mapping writes them, so
//! a full disk cannot raise SIGBUS. A checkpoint that cannot be written is kept old
//! (still a valid lower bound) or, before a structural change, removed.
//!
//! # Pure decoders (fuzzing)
//!
//! [`codec`] (records, index slots) and [`checkpoint::decode`] are pure functions
//! over bytes that never panic and never allocate from an unchecked length.

mod cache;
pub mod checkpoint;
pub mod codec;
pub mod compact;
mod engine;
mod error;
pub mod fuzzing;
mod index;
pub mod journal;
mod mmap;
mod publish;
mod record;
mod recovery;
pub mod repair;
mod retention;
pub mod scrub;
mod segment;
mod timeindex;

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod heal_tests;
#[cfg(test)]
mod idle_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod time_tests;

pub use self::engine::{DirLock, Log, OuterLock, RebuildError, RebuildReport, RecordRef};
pub use self::error::{Damage, Result, StorageError};
pub use self::record::{NewRecord, Record, RECORD_HEADER_BYTES};
pub use self::recovery::{DamagedRange, ReplicaRecovery, TruncatedRange};
pub use crate::types::{Offset, RecordKind, Term};

/// Configuration of a [`Log`].
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Maximum size of one segment's store file, in bytes (at most `u32::MAX`).
    /// A record larger than this (header included) is rejected. Default 64 MiB.
    pub max_store_bytes: u64,
    /// Maximum size of one segment's index file, in bytes (8 bytes per record,
    /// plus one spare slot while the segment is active). Default 10 MiB.
    pub max_index_bytes: u64,
    /// First offset of a brand-new empty log (0 standalone, 1 for Raft).
    pub initial_offset: Offset,
    /// Retention by total size: drop the oldest whole segments while the log is
    /// larger than this. `None` (the default) keeps everything.
    pub retention_bytes: Option<u64>,
    /// Retention by age: drop the oldest whole segments older than this, a
    /// segment's time being its newest record timestamp capped at its last write
    /// (its last write alone without timestamps; `storage/retention.rs`). `None`
    /// (the default) keeps everything.
    pub retention_age: Option<std::time::Duration>,
    /// How the directory is kept to this log: its own `flock` on `<dir>/LOCK`
    /// (the default), or an outer lock covering it ([`DirLock::Covered`]).
    pub dir_lock: DirLock,
}

/// Default maximum store file size: 64 MiB.
pub const DEFAULT_MAX_STORE_BYTES: u64 = 64 * 1024 * 1024;
/// Default maximum index file size: 10 MiB.
pub const DEFAULT_MAX_INDEX_BYTES: u64 = 10 * 1024 * 1024;

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            max_store_bytes: DEFAULT_MAX_STORE_BYTES,
            max_index_bytes: DEFAULT_MAX_INDEX_BYTES,
            initial_offset: Offset(0),
            retention_bytes: None,
            retention_age: None,
            dir_lock: DirLock::Own,
        }
    }
}
