//! Feeds arbitrary bytes to `frame_len`, `decode_request` and `decode_response` (for
//! every API) and checks that whatever decodes re-encodes to the same bytes. The
//! checks live in `commitlog::wire::fuzzing` so the corpus replay test runs the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    commitlog::wire::fuzzing::check_frame_decoder(data);
});
