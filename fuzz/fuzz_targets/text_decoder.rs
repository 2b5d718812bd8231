//! Feeds arbitrary bytes to the inline text protocol's `line_len` and `parse_line`
//! and checks that every command that parses survives format → parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    commitlog::wire::fuzzing::check_text_decoder(data);
});
