//! Support shared by the fuzz targets: a counting global allocator and the
//! allocation bound the decoders promise.
//!
//! Every target installs [`CountingAlloc`] as its `#[global_allocator]` and runs its
//! decodes through [`measure`] (or [`Probe`], the `AllocationProbe` the storage checks
//! call), which fails the input when the decode's peak heap use above what was live
//! before exceeds the budget: a decoder that sizes a buffer from an unchecked length
//! field is caught even when the allocation succeeds.
//!
//! `unsafe` is confined to `src/storage/mmap.rs` in the main crate. This fuzz-only
//! crate is the one other place it is allowed, and only for `GlobalAlloc` (which
//! cannot be implemented without it): the allocator forwards every call unchanged to
//! `std::alloc::System` and only counts bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use commitlog::storage::fuzzing::AllocationProbe;

/// Bytes currently allocated through [`CountingAlloc`].
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Highest `LIVE_BYTES` since the last reset by [`measure`].
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bytes ever allocated (a realloc counts its growth).
static TOTAL_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    TOTAL_BYTES.fetch_add(bytes, Ordering::Relaxed);
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

/// `System`, counting live, peak and total bytes.
pub struct CountingAlloc;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// the `GlobalAlloc` contract; the counters only observe sizes and never touch memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (the caller upholds `alloc`'s contract).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (`ptr` came from this allocator, i.e. `System`).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        new
    }
}

/// Heap use of one measured call.
#[derive(Clone, Copy, Debug)]
pub struct Allocated {
    /// Peak live bytes during the call, above what was live before it.
    pub peak_bytes: usize,
    /// Bytes allocated during the call (freed or not).
    pub total_bytes: usize,
}

/// Runs `f` and returns its result with its heap use. The fuzz targets run on one
/// thread, so nothing else allocates meanwhile.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let live_before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(live_before, Ordering::Relaxed);
    let total_before = TOTAL_BYTES.load(Ordering::Relaxed);
    let out = f();
    let used = Allocated {
        peak_bytes: PEAK_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(live_before),
        total_bytes: TOTAL_BYTES.load(Ordering::Relaxed) - total_before,
    };
    (out, used)
}

/// Runs `decode` over `input_bytes` of untrusted bytes and fails (panics) if it
/// held more than `max_bytes` at its peak.
pub fn bounded<T>(
    what: &str,
    input_bytes: usize,
    max_bytes: usize,
    decode: impl FnOnce() -> T,
) -> T {
    let (out, used) = measure(decode);
    assert!(
        used.peak_bytes <= max_bytes,
        "{what}: decoding {input_bytes} bytes held {} bytes at its peak \
         ({} allocated in all); the bound is {max_bytes}",
        used.peak_bytes,
        used.total_bytes
    );
    out
}

/// Budget of the wire, gossip and Raft decoders: `factor` times the input plus
/// 4 KiB. The factor is per decoder (see each target): the wire promises "a small
/// constant times the frame length".
pub fn wire_budget_bytes(input_bytes: usize, factor: usize) -> usize {
    input_bytes.saturating_mul(factor).saturating_add(4096)
}

/// The [`AllocationProbe`] the storage checks decode through.
pub struct Probe;

impl AllocationProbe for Probe {
    fn decode(
        &self,
        what: &'static str,
        input_bytes: usize,
        max_bytes: usize,
        decode: &mut dyn FnMut(),
    ) {
        bounded(what, input_bytes, max_bytes, decode);
    }
}
