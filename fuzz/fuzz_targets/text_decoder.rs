//! Feeds arbitrary bytes to the inline text protocol's `line_len` and `parse_line`
//! and checks that every command that parses survives format → parse. `parse_line`
//! first runs alone under the counting allocator, bounded by `FACTOR` times the
//! line length.
#![no_main]

use commitlog_fuzz::{bounded, wire_budget_bytes, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A parsed command holds at most a copy of the line's value.
const FACTOR: usize = 4;

fuzz_target!(|data: &[u8]| {
    let max = wire_budget_bytes(data.len(), FACTOR);
    let _ = bounded("parse_line", data.len(), max, || {
        commitlog::wire::text::parse_line(data)
    });
    commitlog::wire::fuzzing::check_text_decoder(data);
});
