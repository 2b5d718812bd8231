//! Fuzz the Raft message decoder: it must never panic, and whatever it accepts must
//! re-encode to exactly the same bytes (the encoding is canonical) and decode again
//! to the same message.
#![no_main]

use commitlog::raft::{decode_message, encode_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_message(data) {
        let mut out = Vec::new();
        encode_message(&m, &mut out);
        assert_eq!(out.as_slice(), data, "re-encoding is canonical");
        assert_eq!(decode_message(&out).ok(), Some(m));
    }
});
