//! Feeds arbitrary bytes to the store's record decoder, as they are and with the
//! first record's crc recomputed (so the fuzzer reaches the fields behind it).
//! Properties (`commitlog::storage::fuzzing::check_record_format`): no panic; a
//! decoded record has a good checksum and re-encodes to exactly its bytes; "need
//! more bytes" never asks for more than the store has left; decoding holds at most
//! `decode_budget_bytes(input)` of heap.
#![no_main]

use commitlog_fuzz::{CountingAlloc, Probe};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    commitlog::storage::fuzzing::check_record_format_probed(data, &Probe);
});
