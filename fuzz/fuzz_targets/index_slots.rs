//! Feeds arbitrary bytes to the index slot decoder, as they are and with every
//! slot's relative offset set to its slot number. Properties
//! (`commitlog::storage::fuzzing::check_index_slots`): no panic; a slot decodes
//! exactly when it holds its own number; a decoded slot re-encodes byte-exact;
//! decoding holds at most `decode_budget_bytes(input)` of heap.
#![no_main]

use commitlog_fuzz::{CountingAlloc, Probe};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    commitlog::storage::fuzzing::check_index_slots_probed(data, &Probe);
});
