//! The read path: single reads and range reads. Readers hold the segment list
//! shared for the duration of a read, never the append or sync locks, and see only
//! what the publication snapshot (`storage/publish.rs`) allows.

use std::path::Path;
use std::sync::Arc;

use super::{Log, Segments};
use crate::storage::error::{Result, StorageError};
use crate::storage::publish::Snapshot;
use crate::storage::record::{to_record, Header, Record, RECORD_HEADER_BYTES};
use crate::storage::segment::{FrameReader, SealedSegment, Step, StoreHandle};
use crate::sync::Ordering;
use crate::types::{Offset, RecordKind, Term};

/// A record borrowed from the log's read buffer, handed to the visitor of
/// [`Log::read_range_with`]. Its value is valid only during the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its offset (Raft index).
    pub offset: Offset,
    /// Its Raft term.
    pub term: Term,
    /// Data, no-op or config.
    pub kind: RecordKind,
    /// The payload (crc already checked).
    pub value: &'a [u8],
}

impl<'a> RecordRef<'a> {
    fn new(header: &Header, frame: &'a [u8]) -> RecordRef<'a> {
        let end = header.total_bytes() as usize;
        RecordRef {
            offset: Offset(header.offset),
            term: Term(header.term),
            kind: header.kind,
            value: &frame[RECORD_HEADER_BYTES..end],
        }
    }
}

/// Smallest and largest chunk read by one `pread` in `read_range`.
const MIN_READ_CHUNK_BYTES: u64 = 64 * 1024;
const MAX_READ_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes read with the header of a single record (usually the whole record).
const SINGLE_READ_CHUNK_BYTES: u64 = 4096;
/// A reader thread keeps its read buffer up to this size between calls.
const KEEP_READ_BUFFER_BYTES: usize = 2 * MAX_READ_CHUNK_BYTES as usize;

std::thread_local! {
    /// Each reader thread's reusable `read_range` buffer (bounded by
    /// `KEEP_READ_BUFFER_BYTES` between calls).
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Where one segment's readable records are.
struct View<'a> {
    file: &'a std::fs::File,
    path: &'a Path,
    /// Readable bytes of the store.
    end: u64,
    /// Store position of the first record wanted.
    position: u64,
    /// One past the last readable offset in this segment.
    next: u64,
}

impl Log {
    /// The record at `offset`. A damaged record (crc, framing, its index slot) is
    /// [`StorageError::CorruptRecord`]; other records are not affected by it.
    pub fn read(&self, offset: Offset) -> Result<Record> {
        self.check_open()?;
        let segments = read_lock!(self.segments);
        let snapshot = self.publication.snapshot();
        let first = self.first_offset.load(Ordering::Acquire);
        if offset.0 < first || offset.0 >= snapshot.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                first: Offset(first),
                next: Offset(snapshot.next_offset),
            });
        }
        let (sealed_segment, active_store);
        let view = if offset.0 >= segments.active.base {
            active_store = segments.active.store_handle()?;
            active_view(&segments, &active_store, snapshot, offset.0)?
        } else {
            sealed_segment = self.sealed_segment(&segments, offset.0)?;
            sealed_view(&sealed_segment, offset.0)?
        };
        let mut reader = FrameReader::new(
            view.file,
            view.path,
            view.position,
            view.end,
            SINGLE_READ_CHUNK_BYTES,
        );
        let (header, frame) = checked_step(&mut reader, view.path, offset.0)?;
        Ok(to_record(&header, frame))
    }

    /// Records from `from` on, stopping before `max_bytes` of record values would
    /// be exceeded, but always at least one record if `from < next_offset()`; empty
    /// if `from == next_offset()`. Every record's crc and offset are checked.
    ///
    /// A read that reaches a damaged record (or a segment that cannot be read)
    /// after taking others returns those; a read starting at a damaged record gets
    /// [`StorageError::CorruptRecord`]; a read starting after it works.
    pub fn read_range(&self, from: Offset, max_bytes: u64) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.read_range_with(from, max_bytes, |record| {
            out.push(Record {
                offset: record.offset,
                term: record.term,
                kind: record.kind,
                value: record.value.to_vec(),
            });
            true
        })?;
        Ok(out)
    }

    /// Like [`Log::read_range`], but lends each record to `visit` instead of
    /// allocating it, so a server can encode a response straight from the read
    /// buffer. `visit` returns false to stop before taking that record (it is then
    /// not counted). Returns how many records were taken.
    ///
    /// The same limits apply: at most `max_bytes` of values, but at least one
    /// record (if `visit` takes it) when `from < next_offset()`.
    pub fn read_range_with<F>(&self, from: Offset, max_bytes: u64, mut visit: F) -> Result<u64>
    where
        F: FnMut(RecordRef<'_>) -> bool,
    {
        self.check_open()?;
        let segments = read_lock!(self.segments);
        let snapshot = self.publication.snapshot();
        let first = self.first_offset.load(Ordering::Acquire);
        if from.0 == snapshot.next_offset && from.0 >= first {
            return Ok(0);
        }
        if from.0 < first || from.0 > snapshot.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                first: Offset(first),
                next: Offset(snapshot.next_offset),
            });
        }
        let mut taken = 0u64;
        let mut budget = max_bytes;
        let mut offset = from.0;
        // Bounded: every iteration moves to a later segment or returns.
        while offset < snapshot.next_offset {
            let (sealed_segment, active_store);
            let view = if offset >= segments.active.base {
                match segments.active.store_handle() {
                    Ok(store) => {
                        active_store = store;
                        active_view(&segments, &active_store, snapshot, offset)
                    }
                    Err(e) => Err(e),
                }
            } else {
                match self.sealed_segment(&segments, offset) {
                    Ok(segment) => {
                        sealed_segment = segment;
                        sealed_view(&sealed_segment, offset)
                    }
                    Err(e) => Err(e),
                }
            };
            // A damaged index slot or an unreadable segment: stop before it, or
            // report it when it holds the first record asked for.
            let view = match view {
                Ok(view) => view,
                Err(_) if taken > 0 => return Ok(taken),
                Err(e) => return Err(e),
            };
            // The first read covers the budget plus headers of records of 1 KiB or
            // more; smaller records need top-ups of a quarter of the budget, so at
            // most about a quarter of the bytes read goes unused.
            let chunk = budget
                .saturating_add(budget / 8)
                .saturating_add(MIN_READ_CHUNK_BYTES)
                .clamp(MIN_READ_CHUNK_BYTES, MAX_READ_CHUNK_BYTES);
            let top_up = (budget / 4).clamp(MIN_READ_CHUNK_BYTES, MAX_READ_CHUNK_BYTES);
            let buf = READ_BUFFER.with(|b| b.take());
            let mut reader =
                FrameReader::with_buffer(view.file, view.path, view.position, view.end, chunk, buf);
            reader.set_later_chunk_bytes(top_up);
            let mut cursor = Cursor {
                offset: &mut offset,
                budget: &mut budget,
                taken: &mut taken,
            };
            let result = read_segment(&mut reader, &view, &mut cursor, &mut visit);
            let mut buf = reader.into_buffer();
            if buf.len() > KEEP_READ_BUFFER_BYTES {
                buf = Vec::new();
            }
            READ_BUFFER.with(|b| b.set(buf));
            if !result? {
                return Ok(taken);
            }
        }
        Ok(taken)
    }

    /// Opens (or takes from the cache) the sealed segment holding `offset`.
    fn sealed_segment(&self, segments: &Segments, offset: u64) -> Result<Arc<SealedSegment>> {
        let i = segments.sealed_holding(offset).ok_or_else(|| {
            StorageError::corrupt(&self.dir, 0, "no segment holds a readable offset")
        })?;
        let meta = segments.sealed[i];
        if meta.unreadable {
            return Err(StorageError::corrupt_record(
                offset,
                crate::storage::segment::store_path(&self.dir, meta.base),
                0,
                "the segment is quarantined (damaged at open) until it is rebuilt",
            ));
        }
        if let Some(segment) = lock!(self.cache).get(meta.base) {
            return Ok(segment);
        }
        let count = segments.sealed_next(i) - meta.base;
        let segment = Arc::new(SealedSegment::open(
            &self.dir,
            meta.base,
            count,
            meta.store_bytes,
        )?);
        lock!(self.cache).insert(segment.clone());
        Ok(segment)
    }
}

/// Where a range read stands: next offset, value bytes left, records taken.
struct Cursor<'a> {
    offset: &'a mut u64,
    budget: &'a mut u64,
    taken: &'a mut u64,
}

/// Lends the records of one segment from `*cursor.offset` on to `visit`, within the
/// value-byte budget (but at least one record overall). Returns false when the
/// budget or `visit` stopped it, true when it reached the end of the segment's
/// readable records.
fn read_segment<F>(
    reader: &mut FrameReader<'_>,
    view: &View<'_>,
    cursor: &mut Cursor<'_>,
    visit: &mut F,
) -> Result<bool>
where
    F: FnMut(RecordRef<'_>) -> bool,
{
    while *cursor.offset < view.next {
        let (header, frame) = match checked_step(reader, view.path, *cursor.offset) {
            Ok(record) => record,
            // Records before a damaged one are returned; the next read, starting at
            // the damaged record, gets the error.
            Err(StorageError::CorruptRecord { .. }) if *cursor.taken > 0 => return Ok(false),
            Err(e) => return Err(e),
        };
        let value_bytes = u64::from(header.value_len);
        if value_bytes > *cursor.budget && *cursor.taken > 0 {
            return Ok(false);
        }
        if !visit(RecordRef::new(&header, frame)) {
            return Ok(false);
        }
        *cursor.budget = cursor.budget.saturating_sub(value_bytes);
        *cursor.taken += 1;
        *cursor.offset += 1;
    }
    Ok(true)
}

/// The next record of `reader`, which must be the valid record `offset`; anything
/// else is [`StorageError::CorruptRecord`] for `offset`.
fn checked_step<'r>(
    reader: &'r mut FrameReader<'_>,
    path: &Path,
    offset: u64,
) -> Result<(Header, &'r [u8])> {
    let start = reader.position();
    match reader.next_step()? {
        Step::Record { header, frame, .. } if header.offset == offset => Ok((header, frame)),
        Step::Record {
            position, header, ..
        } => Err(StorageError::corrupt_record(
            offset,
            path,
            position,
            format!(
                "record holds offset {} where {offset} belongs",
                header.offset
            ),
        )),
        Step::End => Err(StorageError::corrupt_record(
            offset,
            path,
            start,
            "the store ends before this record",
        )),
        Step::Invalid { position, reason } => {
            Err(StorageError::corrupt_record(offset, path, position, reason))
        }
    }
}

/// The view of the active segment starting at `offset`, read through `store`.
fn active_view<'s>(
    segments: &'s Segments,
    store: &'s StoreHandle,
    snapshot: Snapshot,
    offset: u64,
) -> Result<View<'s>> {
    let active = &segments.active;
    Ok(View {
        file: store.file(),
        path: &active.store_path,
        end: snapshot.active_store_end,
        position: active
            .position(offset - active.base)
            .map_err(|e| as_record_error(e, offset))?,
        next: snapshot.next_offset,
    })
}

/// A damaged index slot is a damaged record.
fn as_record_error(e: StorageError, offset: u64) -> StorageError {
    match e {
        StorageError::Corrupt {
            path,
            position,
            reason,
            ..
        } => StorageError::corrupt_record(offset, path, position, reason),
        other => other,
    }
}

/// The view of sealed `segment` starting at `offset`.
fn sealed_view(segment: &SealedSegment, offset: u64) -> Result<View<'_>> {
    Ok(View {
        file: &segment.store,
        path: &segment.store_path,
        end: segment.store_bytes,
        position: segment
            .position(offset - segment.base)
            .map_err(|e| as_record_error(e, offset))?,
        next: segment.base + segment.count,
    })
}
