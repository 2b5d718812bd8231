//! Byte-level primitives shared by the decoders and encoders.
//!
//! [`Reader`] is a cursor over one frame's payload. Every read checks the remaining
//! length first and reports a short field as [`DecodeError::Malformed`]: by the time
//! a reader exists the whole frame is in memory, so a field that runs past the end is
//! a lie in the frame, not a reason to wait for more bytes. Lengths are compared with
//! the remaining bytes before anything is copied, and element counts are compared
//! with `remaining / minimum element size` before a `Vec` is sized from them, so an
//! allocation is always bounded by a small multiple of the frame's own length.
//!
//! The `put_*` helpers append big-endian integers and length-prefixed fields to a
//! caller's `Vec<u8>`.

use super::errors::DecodeError;

/// Cursor over a frame payload. Carries the correlation id once it is known, so every
/// error raised after the header can still be answered.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    correlation_id: Option<u32>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            correlation_id: None,
        }
    }

    pub(crate) fn set_correlation_id(&mut self, correlation_id: u32) {
        self.correlation_id = Some(correlation_id);
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A `Malformed` error that carries the correlation id if it is known.
    pub(crate) fn malformed(&self, reason: String) -> DecodeError {
        DecodeError::Malformed {
            correlation_id: self.correlation_id,
            reason,
        }
    }

    pub(crate) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(self.malformed(format!(
                "{what} needs {len} bytes but only {} remain in the frame",
                self.remaining()
            )));
        }
        let field = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(field)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let field = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(field);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// `u32 len | bytes`; the length is checked against the remaining bytes before
    /// the slice is taken.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    /// `u16 len | UTF-8`.
    pub(crate) fn string(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let len = self.u16(what)?;
        let raw = self.take(usize::from(len), what)?;
        std::str::from_utf8(raw)
            .map_err(|e| self.malformed(format!("{what} is not valid UTF-8: {e}")))
    }

    /// A `u32` element count, checked so that `count * min_element_bytes` fits in the
    /// remaining bytes. The result is safe to pass to `Vec::with_capacity`.
    pub(crate) fn count(
        &mut self,
        min_element_bytes: usize,
        what: &str,
    ) -> Result<usize, DecodeError> {
        debug_assert!(min_element_bytes > 0);
        let count = self.u32(what)? as usize;
        let max = self.remaining() / min_element_bytes;
        if count > max {
            return Err(self.malformed(format!(
                "{what} is {count} but the {} remaining bytes hold at most {max}",
                self.remaining()
            )));
        }
        Ok(count)
    }

    /// Everything that is left (for opaque bodies).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    /// Version 0 messages have an exact layout: trailing bytes are malformed.
    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.malformed(format!(
                "{} unexpected trailing bytes after the {what} body",
                self.remaining()
            )));
        }
        Ok(())
    }
}

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

    #[test]
    fn reader_rejects_lengths_past_the_end() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(matches!(
            r.bytes("value"),
            Err(DecodeError::Malformed { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(
            r.count(4, "count"),
            Err(DecodeError::Malformed { .. })
        ));
        let mut r = Reader::new(&[0, 2, 0xc3, 0x28]);
        assert!(matches!(
            r.string("name"),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
