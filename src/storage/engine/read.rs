//! The read path: single reads and range reads. Readers hold the segment list
//! shared for the duration of a read, never the append or sync locks, and see only
//! what the publication snapshot (`storage/publish.rs`) allows.

use std::path::Path;
use std::sync::Arc;

use super::{Log, Segments};
use crate::storage::error::{Result, StorageError};
use crate::storage::record::{to_record, Record};
use crate::storage::segment::{FrameReader, SealedSegment, Step};
use crate::sync::Ordering;
use crate::types::Offset;

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
    /// The record at `offset`.
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
        let sealed_segment;
        let view = if offset.0 >= segments.active.base {
            let active = &segments.active;
            View {
                file: &active.store,
                path: &active.store_path,
                end: snapshot.active_store_end,
                position: active.position(offset.0 - active.base)?,
                next: snapshot.next_offset,
            }
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
        match reader.next_step()? {
            Step::Record {
                position,
                header,
                frame,
            } => {
                if header.offset != offset.0 {
                    return Err(StorageError::corrupt(
                        view.path,
                        position,
                        format!(
                            "index points at offset {} when {offset} was asked",
                            header.offset
                        ),
                    ));
                }
                Ok(to_record(&header, frame))
            }
            Step::End => Err(StorageError::corrupt(
                view.path,
                view.position,
                "index points past the store end",
            )),
            Step::Invalid {
                position, reason, ..
            } => Err(StorageError::corrupt(view.path, position, reason)),
        }
    }

    /// Records from `from` on, stopping before `max_bytes` of record values would
    /// be exceeded, but always at least one record if `from < next_offset()`; empty
    /// if `from == next_offset()`. Every record's crc and offset are checked.
    pub fn read_range(&self, from: Offset, max_bytes: u64) -> Result<Vec<Record>> {
        self.check_open()?;
        let segments = read_lock!(self.segments);
        let snapshot = self.publication.snapshot();
        let first = self.first_offset.load(Ordering::Acquire);
        if from.0 == snapshot.next_offset && from.0 >= first {
            return Ok(Vec::new());
        }
        if from.0 < first || from.0 > snapshot.next_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                first: Offset(first),
                next: Offset(snapshot.next_offset),
            });
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut offset = from.0;
        // Bounded: every iteration moves to a later segment or returns.
        while offset < snapshot.next_offset {
            let sealed_segment;
            let view = if offset >= segments.active.base {
                let active = &segments.active;
                View {
                    file: &active.store,
                    path: &active.store_path,
                    end: snapshot.active_store_end,
                    position: active.position(offset - active.base)?,
                    next: snapshot.next_offset,
                }
            } else {
                sealed_segment = self.sealed_segment(&segments, offset)?;
                sealed_view(&sealed_segment, offset)?
            };
            let chunk = budget
                .saturating_add(budget / 2)
                .clamp(MIN_READ_CHUNK_BYTES, MAX_READ_CHUNK_BYTES);
            let buf = READ_BUFFER.with(|b| b.take());
            let mut reader =
                FrameReader::with_buffer(view.file, view.path, view.position, view.end, chunk, buf);
            let result = read_segment(&mut reader, &view, &mut offset, &mut budget, &mut out);
            let mut buf = reader.into_buffer();
            if buf.len() > KEEP_READ_BUFFER_BYTES {
                buf = Vec::new();
            }
            READ_BUFFER.with(|b| b.set(buf));
            if !result? {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Opens (or takes from the cache) the sealed segment holding `offset`.
    fn sealed_segment(&self, segments: &Segments, offset: u64) -> Result<Arc<SealedSegment>> {
        let i = segments.sealed_holding(offset).ok_or_else(|| {
            StorageError::corrupt(&self.dir, 0, "no segment holds a readable offset")
        })?;
        let meta = segments.sealed[i];
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

/// Appends the records of one segment from `*offset` on to `out`, within `*budget`
/// value bytes (but at least one record overall). Returns false when the budget
/// stopped it, true when it reached the end of the segment's readable records.
fn read_segment(
    reader: &mut FrameReader<'_>,
    view: &View<'_>,
    offset: &mut u64,
    budget: &mut u64,
    out: &mut Vec<Record>,
) -> Result<bool> {
    while *offset < view.next {
        match reader.next_step()? {
            Step::Record {
                position,
                header,
                frame,
            } => {
                if header.offset != *offset {
                    return Err(StorageError::corrupt(
                        view.path,
                        position,
                        format!(
                            "record holds offset {} where {offset} belongs",
                            header.offset
                        ),
                    ));
                }
                let value_bytes = u64::from(header.value_len);
                if value_bytes > *budget && !out.is_empty() {
                    return Ok(false);
                }
                *budget = budget.saturating_sub(value_bytes);
                out.push(to_record(&header, frame));
                *offset += 1;
            }
            Step::End => {
                return Err(StorageError::corrupt(
                    view.path,
                    reader.position(),
                    format!("store ends before offset {offset}"),
                ))
            }
            Step::Invalid {
                position, reason, ..
            } => return Err(StorageError::corrupt(view.path, position, reason)),
        }
    }
    Ok(true)
}

/// The view of sealed `segment` starting at `offset`.
fn sealed_view(segment: &SealedSegment, offset: u64) -> Result<View<'_>> {
    Ok(View {
        file: &segment.store,
        path: &segment.store_path,
        end: segment.store_bytes,
        position: segment.position(offset - segment.base)?,
        next: segment.base + segment.count,
    })
}
