//! Writes the input as each node metadata file (identity, hard state, log start,
//! gossip seeds) and reads it back with `node::meta`, as it is and with its length
//! and crc fixed. Properties (`commitlog::storage::fuzzing::check_node_meta`): no
//! panic; a bad file is `Corrupt` naming it; a decoded value re-encodes to exactly
//! the file's bytes; reading holds at most `decode_budget_bytes(input)` of heap.
#![no_main]

use commitlog_fuzz::{CountingAlloc, Probe};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    commitlog::storage::fuzzing::check_node_meta_probed(data, &Probe);
});
