//! The one place with `unsafe`: a shared, writable memory map of an index file,
//! viewed as an array of 8-byte slots accessed through atomics.
//!
//! # Invariant (why the `unsafe` below is sound)
//!
//! * The map covers `slots * 8` bytes of a regular file that is at least that long
//!   when mapped, and the storage engine never shrinks a file that is mapped: index
//!   files are trimmed only after their [`IndexMap`] has been dropped (sealing,
//!   close), and a segment is re-mapped only after its file has been grown back
//!   (truncating into a sealed segment). Shrinking a mapped file would make
//!   accesses fault with SIGBUS.
//! * Only this `Log` writes the log directory while it is open: `Log::open` takes an
//!   exclusive `flock` on `<dir>/LOCK`, so a second `Log` (in this or another
//!   process) cannot open it; or, with `DirLock::Covered`, its opener holds such a
//!   lock on an enclosing directory and opens each log under it once (a node and
//!   its groups; `commitlogd repair` takes the enclosing locks too). Other
//!   programs must not modify its files. Closing the index's file descriptor
//!   (an idle log releases it) does not unmap it.
//! * The mapping is page-aligned, so every slot is 8-byte aligned, and every access
//!   goes through `AtomicU64`: concurrent readers and the writer never form a data
//!   race, whatever the caller does. (Readers only look at slots that were published
//!   to them, see [`super::publish`]; the atomics make even a mistake there a wrong
//!   value, which the crc check then catches, rather than undefined behaviour.)
//! * The `&[AtomicU64]` handed out borrows `self`, so it cannot outlive the mapping.
//!
//! The crate root has `#![deny(unsafe_code)]`; `IndexMap::atomics` is the one place
//! that allows it. Anything else that needs `unsafe` must come here, with its own
//! line in this invariant.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A writable shared mapping of `slots` 8-byte index slots.
#[derive(Debug)]
pub(crate) struct IndexMap {
    raw: MmapRaw,
    slots: u64,
}

impl IndexMap {
    /// Maps the first `slots * 8` bytes of `file` (opened read + write).
    pub fn map(file: &File, slots: u64) -> io::Result<IndexMap> {
        let len_bytes = slots
            .checked_mul(8)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad index map size"))?;
        let file_len = file.metadata()?.len();
        if file_len < len_bytes as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "index file is shorter than the requested mapping",
            ));
        }
        let raw = MmapOptions::new().len(len_bytes).map_raw(file)?;
        if raw.len() != len_bytes || raw.as_ptr().align_offset(8) != 0 {
            return Err(io::Error::other("unexpected mapping size or alignment"));
        }
        Ok(IndexMap { raw, slots })
    }

    #[allow(unsafe_code)] // The crate's only allowance; see the module invariant.
    fn atomics(&self) -> &[AtomicU64] {
        // SAFETY: `raw` maps exactly `slots * 8` bytes (checked in `map`), readable
        // and writable, 8-byte aligned (checked in `map`), and stays mapped for as
        // long as `self` lives; the returned slice borrows `self`. The file is never
        // shrunk below the mapped length while mapped (module invariant), so the
        // memory stays valid. `AtomicU64` has the size and alignment of `u64`, any
        // bit pattern is a valid value, and all accesses are atomic, so there is no
        // data race with other threads using the same mapping.
        unsafe {
            std::slice::from_raw_parts(self.raw.as_ptr() as *const AtomicU64, self.slots as usize)
        }
    }

    /// The raw little-endian slot value, or `None` past the end of the map.
    pub fn load(&self, slot: u64) -> Option<u64> {
        let slot = usize::try_from(slot).ok()?;
        self.atomics()
            .get(slot)
            .map(|a| u64::from_le(a.load(Ordering::Relaxed)))
    }

    /// Stores a raw slot value (little-endian on disk). Returns false past the end.
    pub fn store(&self, slot: u64, value: u64) -> bool {
        let Ok(slot) = usize::try_from(slot) else {
            return false;
        };
        match self.atomics().get(slot) {
            Some(a) => {
                a.store(value.to_le(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_through_the_file() {
        let dir = crate::storage::tests::TempDir::new("mmap");
        let path = dir.path().join("x.index");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(32).unwrap();
        let map = IndexMap::map(&file, 4).unwrap();
        assert!(map.store(1, 0x0102_0304_0506_0708));
        assert!(!map.store(4, 1));
        assert_eq!(map.load(1), Some(0x0102_0304_0506_0708));
        assert_eq!(map.load(4), None);
        drop(map);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert!(IndexMap::map(&file, 5).is_err(), "map longer than the file");
    }
}
