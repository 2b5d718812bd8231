//! Byte-level writers shared by the encoders: big-endian integers and length-prefixed
//! fields appended to a caller's `Vec<u8>`, and the frame length back-patch.
//!
//! Decoding goes through [`crate::bytes::ByteReader`], the reader every decoder in
//! the crate shares; `errors.rs` converts its errors into [`super::DecodeError`].

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Converts a field length to its `u32` prefix.
///
/// # Panics
/// If `len` exceeds `u32::MAX` (4 GiB). That is a caller bug: frames are capped at
/// [`super::MAX_FRAME_BYTES_CAP`], so callers check sizes against their [`super::Limits`]
/// before building a message.
pub(crate) fn len_u32(len: usize) -> u32 {
    assert!(
        len <= u32::MAX as usize,
        "wire field of {len} bytes exceeds the u32 length prefix"
    );
    len as u32
}

/// `u32 len | bytes`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_u32(out, len_u32(v.len()));
    out.extend_from_slice(v);
}

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a char
/// boundary.
pub(crate) fn truncate_str(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `u16 len | UTF-8`. Strings longer than 65535 bytes are truncated at a char
/// boundary (strings are names, addresses and messages, never data).
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, usize::from(u16::MAX));
    put_u16(out, s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}

/// Reserves the 4-byte length prefix; returns where the frame starts.
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    start
}

/// Back-patches the length prefix reserved by [`begin_frame`].
pub(crate) fn end_frame(out: &mut [u8], start: usize) {
    let len = len_u32(out.len() - start - 4);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_str_respects_char_boundaries() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
    }

    #[test]
    fn put_str_truncates_to_u16() {
        let long = "x".repeat(70_000);
        let mut out = Vec::new();
        put_str(&mut out, &long);
        assert_eq!(&out[..2], &[0xff, 0xff]);
        assert_eq!(out.len(), 2 + 65_535);
    }
}
