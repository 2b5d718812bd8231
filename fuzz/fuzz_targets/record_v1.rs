//! Feeds arbitrary bytes to the record format v1 payload decoder (`records::decode`).
//! Properties (`commitlog::records::fuzzing::check_record_v1`): no panic; a decoded
//! payload re-encodes to exactly its bytes (from the borrowed view and from an
//! owned copy) and respects the limits; the leader's in-place time stamp changes
//! only the time; an error is one the input can have. Decoding allocates nothing
//! (a fixed 4 KiB budget); the owned copy stays within `FACTOR` times the input.
#![no_main]

use commitlog::records::decode;
use commitlog_fuzz::{bounded, wire_budget_bytes, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A 6-byte empty header becomes a 48-byte `RecordHeaderV1` (an empty `String`
/// and `Vec`) in the owned copy's header list.
const FACTOR: usize = 10;

fuzz_target!(|data: &[u8]| {
    let decoded = bounded(
        "records::decode",
        data.len(),
        wire_budget_bytes(0, 0),
        || decode(data),
    );
    if let Ok(record) = decoded {
        let max = wire_budget_bytes(data.len(), FACTOR);
        let _ = bounded("RecordV1Ref::to_record", data.len(), max, || {
            record.to_record()
        });
    }
    commitlog::records::fuzzing::check_record_v1(data);
});
