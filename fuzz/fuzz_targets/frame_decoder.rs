//! Feeds arbitrary bytes to `frame_len`, `decode_request` and `decode_response` (for
//! every API and version) and checks that whatever decodes re-encodes to the same bytes. The
//! checks live in `commitlog::wire::fuzzing` so the corpus replay test runs the same.
//! Each decode first runs alone under the counting allocator, bounded by
//! `FACTOR` times the frame length.
#![no_main]

use commitlog::wire::fuzzing::api_versions;
use commitlog::wire::{decode_fetch_response, decode_request, decode_response_versioned};
use commitlog_fuzz::{bounded, wire_budget_bytes, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A 2-byte empty topic name in a Metadata request becomes a 24-byte `String` in
/// memory (a 4-byte empty ProduceBatch value a 24-byte `Vec`); the unit test
/// `wire::tests::decoded_elements_fit_the_fuzz_allocation_factor` checks every element.
const FACTOR: usize = 12;

fuzz_target!(|data: &[u8]| {
    let max = wire_budget_bytes(data.len(), FACTOR);
    let _ = bounded("decode_request", data.len(), max, || decode_request(data));
    let _ = bounded("decode_fetch_response", data.len(), max, || {
        decode_fetch_response(data).is_ok()
    });
    for (api, version) in api_versions() {
        let _ = bounded("decode_response", data.len(), max, || {
            decode_response_versioned(data, api, version)
        });
    }
    commitlog::wire::fuzzing::check_frame_decoder(data);
});
