//! Segment files: naming, the active segment (store + mapped index), lazily opened
//! sealed segments (store + index read with `pread`), and a sequential frame
//! reader shared by reads and recovery.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Result, StorageError};
use super::index::{self, SLOT_BYTES};
use super::mmap::IndexMap;
use super::record::{parse_frame, Frame, Header, RECORD_HEADER_BYTES};

/// Extension of store files.
pub(crate) const STORE_EXT: &str = "store";
/// Extension of index files.
pub(crate) const INDEX_EXT: &str = "index";

/// `dir/<base, 20 digits>.store`.
pub(crate) fn store_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{STORE_EXT}"))
}

/// `dir/<base, 20 digits>.index`.
pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{INDEX_EXT}"))
}

/// Which file of a segment a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Store,
    Index,
}

/// Parses `<20 digits>.store` / `<20 digits>.index`; anything else is `None`.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    let (stem, ext) = name.split_once('.')?;
    let kind = match ext {
        STORE_EXT => FileKind::Store,
        INDEX_EXT => FileKind::Index,
        _ => return None,
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, kind))
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

/// fsyncs a directory (after creating, renaming or removing entries in it).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsyncing directory {}", dir.display()), e))
}

/// Reads `buf.len()` bytes at `pos`; a short file is corruption, not an I/O error.
pub(crate) fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], pos: u64) -> Result<()> {
    file.read_exact_at(buf, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            StorageError::corrupt(path, pos, "file is shorter than the log expects")
        } else {
            StorageError::io(format!("reading {}", path.display()), e)
        }
    })
}

/// Index bytes really allocated (written with zeros) ahead of the slot being set:
/// one `pwrite` per this many bytes of index.
const INDEX_ALLOCATION_BYTES: u64 = 64 * 1024;

/// The segment being appended to: its store file and its memory-mapped index.
///
/// The index file is sized with `set_len`, which makes a sparse file: its pages
/// get disk space only when first written. Writing a page through the mapping
/// when the disk is full kills the process with SIGBUS, so every slot is
/// allocated with an ordinary `pwrite` (which fails with ENOSPC instead) before
/// the mapping touches it: `allocated` slots from the start of the file are backed.
///
/// The file handles are not needed by the mapping (a mapping stays valid after
/// its file descriptor is closed), so an idle log releases them
/// ([`ActiveSegment::take_files`], only once everything written through them is
/// fsynced) and they are reopened on demand: by writers for good
/// ([`ActiveSegment::files`]), by readers and fsyncs for one call
/// ([`ActiveSegment::store_handle`]). Thousands of idle logs then hold no
/// descriptors of their own.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub base: u64,
    pub store_path: PathBuf,
    pub index: IndexMap,
    pub index_path: PathBuf,
    /// Records this index can hold before the segment must roll.
    pub capacity: u64,
    /// Slots `0..allocated` are backed by disk space (only the writer changes it).
    allocated: std::sync::atomic::AtomicU64,
    /// The open store and index files; `None` once released.
    files: std::sync::Mutex<Option<Arc<ActiveFiles>>>,
}

/// The open files of an active segment (read + write).
#[derive(Debug)]
pub(crate) struct ActiveFiles {
    pub store: File,
    pub index: File,
}

impl ActiveFiles {
    fn open(store_path: &Path, index_path: &Path, create: bool) -> Result<ActiveFiles> {
        let store = open_rw(store_path, create)
            .map_err(|e| StorageError::io(format!("opening {}", store_path.display()), e))?;
        let index = open_rw(index_path, create)
            .map_err(|e| StorageError::io(format!("opening {}", index_path.display()), e))?;
        Ok(ActiveFiles { store, index })
    }

    /// Opens the existing files of a segment (read + write).
    pub fn open_existing(store_path: &Path, index_path: &Path) -> Result<ActiveFiles> {
        ActiveFiles::open(store_path, index_path, false)
    }
}

/// A handle on an active segment's store for one read or fsync: the segment's
/// own open file, or a descriptor opened for this call only (released segment).
#[derive(Debug)]
pub(crate) enum StoreHandle {
    Shared(Arc<ActiveFiles>),
    Own(File),
}

impl StoreHandle {
    pub fn file(&self) -> &File {
        match self {
            StoreHandle::Shared(files) => &files.store,
            StoreHandle::Own(file) => file,
        }
    }
}

impl ActiveSegment {
    /// Opens (creating if needed) the files of segment `base` for appending, grows
    /// or sets its index file to the active size for `capacity` records, and maps it.
    /// The store is left as is; the caller cuts it to its valid length.
    /// `allocated_slots` slots at the start of the index are known to be written
    /// (backed by disk space); the caller may write more with [`Self::write_slots`].
    pub fn open(
        dir: &Path,
        base: u64,
        capacity: u64,
        allocated_slots: u64,
    ) -> Result<ActiveSegment> {
        let store_path = store_path(dir, base);
        let index_path = index_path(dir, base);
        let files = ActiveFiles::open(&store_path, &index_path, true)?;
        let index_bytes = index::active_file_bytes(capacity);
        // Not mapped yet, so resizing it is allowed (see the mmap invariant).
        files
            .index
            .set_len(index_bytes)
            .map_err(|e| StorageError::io(format!("sizing {}", index_path.display()), e))?;
        let index = IndexMap::map(&files.index, index_bytes / SLOT_BYTES)
            .map_err(|e| StorageError::io(format!("mapping {}", index_path.display()), e))?;
        Ok(ActiveSegment {
            base,
            store_path,
            index,
            index_path,
            capacity,
            allocated: std::sync::atomic::AtomicU64::new(allocated_slots.min(capacity + 1)),
            files: std::sync::Mutex::new(Some(Arc::new(files))),
        })
    }

    fn files_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<ActiveFiles>>> {
        // An `Option<Arc>` cannot be left half-changed by a panic.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open files, reopened (and kept) if they were released: for writers.
    pub fn files(&self) -> Result<Arc<ActiveFiles>> {
        let mut slot = self.files_slot();
        if let Some(files) = slot.as_ref() {
            return Ok(Arc::clone(files));
        }
        // Never created here: a store that vanished is an error, not a new segment.
        let files = Arc::new(ActiveFiles::open_existing(
            &self.store_path,
            &self.index_path,
        )?);
        *slot = Some(Arc::clone(&files));
        Ok(files)
    }

    /// The store for one read or fsync: the open file, or (released) a read-only
    /// descriptor of the same file for this call only, so readers of an idle log
    /// do not pin descriptors. fsync through it is as good as through the writer's
    /// handle: on Linux fsync writes back every dirty page of the inode, whichever
    /// descriptor dirtied it.
    pub fn store_handle(&self) -> Result<StoreHandle> {
        if let Some(files) = self.files_slot().as_ref() {
            return Ok(StoreHandle::Shared(Arc::clone(files)));
        }
        File::open(&self.store_path)
            .map(StoreHandle::Own)
            .map_err(|e| StorageError::io(format!("opening {}", self.store_path.display()), e))
    }

    /// Takes the files out (they close when the last holder drops them). The
    /// caller must have fsynced everything written through them.
    pub fn take_files(&self) -> Option<Arc<ActiveFiles>> {
        self.files_slot().take()
    }

    /// True while the segment holds its files open.
    pub fn files_open(&self) -> bool {
        self.files_slot().is_some()
    }

    /// Writes slots `0..positions.len()` with `pwrite` (allocating them), for a
    /// rebuilt index. Returns how many differed from what the file held.
    pub fn write_slots(&self, positions: &[u32]) -> Result<u64> {
        let mut bytes = Vec::with_capacity(positions.len() * SLOT_BYTES as usize);
        for (slot, &pos) in positions.iter().enumerate() {
            let rel = u32::try_from(slot).map_err(|_| {
                StorageError::corrupt(&self.index_path, 0, "more than 2^32 records in a segment")
            })?;
            bytes.extend_from_slice(&index::encode_slot(rel, pos).to_le_bytes());
        }
        let files = self.files()?;
        let mut old = vec![0u8; bytes.len()];
        read_exact_at(&files.index, &self.index_path, &mut old, 0)?;
        let differing = old
            .chunks(SLOT_BYTES as usize)
            .zip(bytes.chunks(SLOT_BYTES as usize))
            .filter(|(a, b)| a != b)
            .count() as u64;
        files
            .index
            .write_all_at(&bytes, 0)
            .map_err(|e| StorageError::io(format!("writing {}", self.index_path.display()), e))?;
        let slots = positions.len() as u64;
        self.allocated
            .fetch_max(slots, std::sync::atomic::Ordering::Relaxed);
        Ok(differing)
    }

    /// Makes sure `slot` is backed by disk space before the mapping writes it:
    /// writes zeros (with `pwrite`, so a full disk is ENOSPC, not SIGBUS) from the
    /// allocated end on, a chunk at a time. Only slots never published are zeroed.
    pub fn allocate_through(&self, slot: u64) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let allocated = self.allocated.load(Relaxed);
        if slot < allocated {
            return Ok(());
        }
        let total_slots = self.capacity + 1;
        let chunk_slots = INDEX_ALLOCATION_BYTES / SLOT_BYTES;
        let until = (slot + 1).max(allocated + chunk_slots).min(total_slots);
        if slot >= until {
            return Err(StorageError::corrupt(
                &self.index_path,
                slot * SLOT_BYTES,
                "internal: index slot out of range",
            ));
        }
        let zeros = vec![0u8; ((until - allocated) * SLOT_BYTES) as usize];
        self.files()?
            .index
            .write_all_at(&zeros, allocated * SLOT_BYTES)
            .map_err(|e| {
                StorageError::io(format!("allocating {}", self.index_path.display()), e)
            })?;
        self.allocated.store(until, Relaxed);
        Ok(())
    }

    /// Store position of the record in `slot`.
    pub fn position(&self, slot: u64) -> Result<u64> {
        let value = self.index.load(slot).ok_or_else(|| {
            StorageError::corrupt(
                &self.index_path,
                slot * SLOT_BYTES,
                "slot past the index end",
            )
        })?;
        index::decode_slot(value, slot)
            .map_err(|reason| StorageError::corrupt(&self.index_path, slot * SLOT_BYTES, reason))
    }

    /// Records where the record in `slot` starts.
    pub fn set_position(&self, slot: u64, position: u64) -> bool {
        match (u32::try_from(slot), u32::try_from(position)) {
            (Ok(rel), Ok(pos)) => self.index.store(slot, index::encode_slot(rel, pos)),
            _ => false,
        }
    }
}

/// A sealed (immutable) segment opened for reading.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub base: u64,
    pub count: u64,
    pub store: File,
    pub store_path: PathBuf,
    pub store_bytes: u64,
    index: File,
    index_path: PathBuf,
}

impl SealedSegment {
    /// Opens sealed segment `base`, which must hold `count` records in
    /// `store_bytes` bytes, and checks that its index and store agree at the end
    /// (the last record starts where the index says and ends at the store's end).
    pub fn open(dir: &Path, base: u64, count: u64, store_bytes: u64) -> Result<SealedSegment> {
        let store_path = store_path(dir, base);
        let index_path = index_path(dir, base);
        let store = File::open(&store_path)
            .map_err(|e| StorageError::io(format!("opening {}", store_path.display()), e))?;
        let index = File::open(&index_path)
            .map_err(|e| StorageError::io(format!("opening {}", index_path.display()), e))?;
        let actual_store = file_len(&store, &store_path)?;
        // Bytes past the indexed end (appended garbage) were reported at open and
        // are never read; a store shorter than its records is a hole.
        if actual_store < store_bytes {
            return Err(StorageError::corrupt(
                &store_path,
                actual_store,
                format!("sealed store is {actual_store} bytes, expected {store_bytes}"),
            ));
        }
        // A segment sealed in this process may still have its preallocated index
        // (it is trimmed at the next sync), so only a short index is wrong.
        let index_bytes = file_len(&index, &index_path)?;
        if count == 0 || index_bytes < index::sealed_file_bytes(count) {
            return Err(StorageError::corrupt(
                &index_path,
                index_bytes,
                format!("sealed index is too short for {count} records"),
            ));
        }
        Ok(SealedSegment {
            base,
            count,
            store,
            store_path,
            store_bytes,
            index,
            index_path,
        })
    }

    /// Store position of the record in `slot` (one `pread` of the index).
    pub fn position(&self, slot: u64) -> Result<u64> {
        if slot >= self.count {
            return Err(StorageError::corrupt(
                &self.index_path,
                slot * SLOT_BYTES,
                "slot past the index end",
            ));
        }
        let mut bytes = [0u8; SLOT_BYTES as usize];
        read_exact_at(&self.index, &self.index_path, &mut bytes, slot * SLOT_BYTES)?;
        index::decode_slot(u64::from_le_bytes(bytes), slot)
            .map_err(|reason| StorageError::corrupt(&self.index_path, slot * SLOT_BYTES, reason))
    }
}

/// The length of an open file.
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))
}

/// Checks the record at `position` (crc, and that it holds offset `expected`) and
/// returns the position where it ends.
pub(crate) fn record_end(
    file: &File,
    path: &Path,
    position: u64,
    store_end: u64,
    expected: u64,
) -> Result<u64> {
    let mut reader = FrameReader::new(file, path, position, store_end, 4096);
    match reader.next_step()? {
        Step::Record { header, .. } if header.offset == expected => {
            Ok(position + header.total_bytes())
        }
        Step::Record { header, .. } => Err(StorageError::corrupt(
            path,
            position,
            format!(
                "record holds offset {} where {expected} belongs",
                header.offset
            ),
        )),
        Step::End => Err(StorageError::corrupt(
            path,
            position,
            "index points past the store end",
        )),
        Step::Invalid { reason, .. } => Err(StorageError::corrupt(path, position, reason)),
    }
}

/// Reads one slot of the index of segment `base` without opening the segment for
/// reads (no end-of-segment check), and returns the store position it holds.
pub(crate) fn read_index_slot(dir: &Path, base: u64, slot: u64) -> Result<u64> {
    let path = index_path(dir, base);
    let file = File::open(&path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
    let mut bytes = [0u8; SLOT_BYTES as usize];
    read_exact_at(&file, &path, &mut bytes, slot * SLOT_BYTES)?;
    index::decode_slot(u64::from_le_bytes(bytes), slot)
        .map_err(|reason| StorageError::corrupt(&path, slot * SLOT_BYTES, reason))
}

/// One step of a [`FrameReader`].
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A valid record starting at `position`; `frame` is header + value.
    Record {
        position: u64,
        header: Header,
        frame: &'a [u8],
    },
    /// Reached the end.
    End,
    /// The bytes at `position` are not a valid record.
    Invalid { position: u64, reason: &'static str },
}

/// Reads records sequentially from `file[start..end)` in large chunks: one `pread`
/// per chunk, then parsing in memory. The buffer can be handed in and taken back
/// ([`FrameReader::with_buffer`], [`FrameReader::into_buffer`]) so a reader thread
/// reuses one allocation instead of allocating and zeroing a chunk per call.
pub(crate) struct FrameReader<'f> {
    file: &'f File,
    path: &'f Path,
    /// `buf[..filled]` holds file bytes from `buf_pos` on; the rest is scratch.
    buf: Vec<u8>,
    filled: usize,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Bytes of `buf` already handed out.
    consumed: usize,
    end: u64,
    chunk_bytes: u64,
    /// Chunk size of the refills after the first (defaults to `chunk_bytes`).
    later_chunk_bytes: u64,
}

impl<'f> FrameReader<'f> {
    pub fn new(
        file: &'f File,
        path: &'f Path,
        start: u64,
        end: u64,
        chunk_bytes: u64,
    ) -> FrameReader<'f> {
        FrameReader::with_buffer(file, path, start, end, chunk_bytes, Vec::new())
    }

    /// Like [`FrameReader::new`], reusing `buf`'s allocation.
    pub fn with_buffer(
        file: &'f File,
        path: &'f Path,
        start: u64,
        end: u64,
        chunk_bytes: u64,
        buf: Vec<u8>,
    ) -> FrameReader<'f> {
        FrameReader {
            file,
            path,
            buf,
            filled: 0,
            buf_pos: start,
            consumed: 0,
            end,
            chunk_bytes: chunk_bytes.max(RECORD_HEADER_BYTES as u64),
            later_chunk_bytes: chunk_bytes.max(RECORD_HEADER_BYTES as u64),
        }
    }

    /// Reads `chunk_bytes` at the first refill, then `later_chunk_bytes` per refill:
    /// a range read sized for its budget tops up with small reads instead of
    /// reading a whole second chunk it will mostly not use.
    pub fn set_later_chunk_bytes(&mut self, later_chunk_bytes: u64) {
        self.later_chunk_bytes = later_chunk_bytes.max(RECORD_HEADER_BYTES as u64);
    }

    /// Gives the buffer back for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// File position of the next record.
    pub fn position(&self) -> u64 {
        self.buf_pos + self.consumed as u64
    }

    /// The next record, the end, or the reason the bytes here are invalid.
    pub fn next_step(&mut self) -> Result<Step<'_>> {
        // Two refills at most: the first may only complete the header.
        for _ in 0..3 {
            let position = self.position();
            if position >= self.end {
                return Ok(Step::End);
            }
            match parse_frame(&self.buf[self.consumed..self.filled], self.end - position) {
                Frame::Valid(header) => {
                    let start = self.consumed;
                    self.consumed += header.total_bytes() as usize;
                    return Ok(Step::Record {
                        position,
                        header,
                        frame: &self.buf[start..self.consumed],
                    });
                }
                Frame::Short { needed_bytes } => self.refill(needed_bytes)?,
                Frame::Invalid { reason, .. } => return Ok(Step::Invalid { position, reason }),
            }
        }
        Err(StorageError::corrupt(
            self.path,
            self.position(),
            "record framing did not converge",
        ))
    }

    /// Drops consumed bytes and reads until at least `needed_bytes` unconsumed
    /// bytes are buffered (the caller checked they exist before `end`).
    fn refill(&mut self, needed_bytes: u64) -> Result<()> {
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.buf_pos += self.consumed as u64;
        self.consumed = 0;
        let want = needed_bytes
            .max(self.chunk_bytes)
            .min(self.end - self.buf_pos);
        self.chunk_bytes = self.later_chunk_bytes;
        let want = usize::try_from(want).map_err(|_| {
            StorageError::corrupt(self.path, self.buf_pos, "record larger than memory")
        })?;
        if want <= self.filled {
            return Ok(());
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let filled = self.filled;
        read_exact_at(
            self.file,
            self.path,
            &mut self.buf[filled..want],
            self.buf_pos + filled as u64,
        )?;
        self.filled = want;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = store_path(dir, 42);
        assert_eq!(p, Path::new("/x/00000000000000000042.store"));
        let name = p.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(parse_file_name(name), Some((42, FileKind::Store)));
        assert_eq!(
            parse_file_name("18446744073709551615.index"),
            Some((u64::MAX, FileKind::Index))
        );
        assert_eq!(parse_file_name("42.store"), None);
        assert_eq!(parse_file_name("0000000000000000004x.store"), None);
        assert_eq!(parse_file_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_file_name("99999999999999999999.store"), None);
    }
}
