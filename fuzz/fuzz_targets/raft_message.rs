//! Fuzz the Raft message decoder: it must never panic, and whatever it accepts must
//! re-encode to exactly the same bytes (the encoding is canonical) and decode again
//! to the same message. Decoding runs under the counting allocator, bounded by
//! `FACTOR` times the message length.
#![no_main]

use commitlog::raft::{decode_message, encode_message};
use commitlog_fuzz::{bounded, wire_budget_bytes, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// An entry's fixed fields and value `Vec` header take a few times their encoding.
const FACTOR: usize = 8;

fuzz_target!(|data: &[u8]| {
    let max = wire_budget_bytes(data.len(), FACTOR);
    if let Ok(m) = bounded("decode_message", data.len(), max, || decode_message(data)) {
        let mut out = Vec::new();
        encode_message(&m, &mut out);
        assert_eq!(out.as_slice(), data, "re-encoding is canonical");
        assert_eq!(decode_message(&out).ok(), Some(m));
    }
});
