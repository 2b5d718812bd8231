//! The one byte reader behind every binary decoder: wire frames (`wire`), Raft
//! messages (`raft::codec`), gossip packets (`gossip::codec`) and the node's metadata
//! files (`node::meta`).
//!
//! [`ByteReader`] is a cursor over bytes that are already wholly in memory (a frame, a
//! datagram, a file). It holds the rule "never allocate from an unchecked length" in
//! one place:
//!
//! * every read checks the bytes left first and fails with [`ReadError::Truncated`]
//!   instead of panicking;
//! * a length prefix is compared with the bytes left before the field is taken, and a
//!   taken field borrows the input (nothing is copied or allocated here);
//! * an element count is compared with `bytes left / smallest element size`
//!   ([`ByteReader::checked_count`]) before a caller sizes a `Vec` from it, so an
//!   allocation is bounded by a small multiple of the input's own length;
//! * [`ByteReader::finish`] reports bytes left over ([`TrailingBytes`]).
//!
//! All integers are big-endian: every format that uses this reader is. Each decoder
//! keeps its own error type and converts these errors with `From` (or, where it knows
//! more context, with its own mapping), so the formats and the errors their callers
//! see stay what they were.

use std::fmt;
use std::str::Utf8Error;

/// Why a read failed. `field` names what was being read, for the error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The field needs more bytes than are left.
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Offset in the input where the field starts.
        at: usize,
        /// Bytes the field needs.
        wanted: usize,
        /// Bytes that were left.
        left: usize,
    },
    /// An element count larger than the bytes left could possibly hold.
    CountTooLarge {
        /// What was being counted.
        field: &'static str,
        /// The count read.
        count: u64,
        /// The most elements the bytes left can hold.
        max: usize,
        /// Bytes that were left after the count.
        left: usize,
    },
    /// A string field is not UTF-8.
    BadUtf8 {
        /// What was being read.
        field: &'static str,
        /// Where the UTF-8 check failed.
        error: Utf8Error,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Truncated {
                field,
                wanted,
                left,
                ..
            } => write!(f, "{field} needs {wanted} bytes but only {left} remain"),
            ReadError::CountTooLarge {
                field,
                count,
                max,
                left,
            } => write!(
                f,
                "{field} is {count} but the {left} remaining bytes hold at most {max}"
            ),
            ReadError::BadUtf8 { field, error } => {
                write!(f, "{field} is not valid UTF-8: {error}")
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Bytes left after the end of a structure whose layout is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrailingBytes {
    /// The structure that should have ended.
    pub field: &'static str,
    /// How many bytes were left.
    pub bytes: usize,
}

impl fmt::Display for TrailingBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} unexpected trailing bytes after the {}",
            self.bytes, self.field
        )
    }
}

impl std::error::Error for TrailingBytes {}

/// A bounds-checked big-endian cursor over an input held in memory.
#[derive(Clone, Debug)]
pub struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> ByteReader<'a> {
        ByteReader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `len` bytes, borrowed from the input.
    pub fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], ReadError> {
        let left = self.remaining();
        if len > left {
            return Err(ReadError::Truncated {
                field,
                at: self.pos,
                wanted: len,
                left,
            });
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ReadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ReadError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// `u32 len | bytes`, borrowed from the input.
    pub fn bytes_u32(&mut self, field: &'static str) -> Result<&'a [u8], ReadError> {
        let len = self.u32(field)?;
        self.take(len as usize, field)
    }

    /// `len` bytes of UTF-8, borrowed from the input.
    pub fn str(&mut self, len: usize, field: &'static str) -> Result<&'a str, ReadError> {
        let raw = self.take(len, field)?;
        std::str::from_utf8(raw).map_err(|error| ReadError::BadUtf8 { field, error })
    }

    /// `u8 len | UTF-8`.
    pub fn str_u8(&mut self, field: &'static str) -> Result<&'a str, ReadError> {
        let len = self.u8(field)?;
        self.str(usize::from(len), field)
    }

    /// `u16 len | UTF-8`.
    pub fn str_u16(&mut self, field: &'static str) -> Result<&'a str, ReadError> {
        let len = self.u16(field)?;
        self.str(usize::from(len), field)
    }

    /// Checks an element count read from the input: `count` elements of at least
    /// `min_element_bytes` each must fit in the bytes left. The result is safe to pass
    /// to `Vec::with_capacity`.
    pub fn checked_count(
        &self,
        count: u64,
        min_element_bytes: usize,
        field: &'static str,
    ) -> Result<usize, ReadError> {
        // A zero-sized element would make any count "fit"; treat it as one byte.
        let left = self.remaining();
        let max = left / min_element_bytes.max(1);
        match usize::try_from(count) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ReadError::CountTooLarge {
                field,
                count,
                max,
                left,
            }),
        }
    }

    /// A `u32` element count, checked by [`ByteReader::checked_count`].
    pub fn count_u32(
        &mut self,
        min_element_bytes: usize,
        field: &'static str,
    ) -> Result<usize, ReadError> {
        let count = self.u32(field)?;
        self.checked_count(u64::from(count), min_element_bytes, field)
    }

    /// Everything not read yet (for opaque bodies and trailing free-form fields).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    /// Checks that the input is fully read: `field` has an exact layout.
    pub fn finish(&self, field: &'static str) -> Result<(), TrailingBytes> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(TrailingBytes { field, bytes }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_and_advance_the_cursor() {
        let input = [1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4];
        let mut r = ByteReader::new(&input);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(2));
        assert_eq!(r.u32("c"), Ok(3));
        assert_eq!(r.u64("d"), Ok(4));
        assert_eq!(r.position(), input.len());
        assert_eq!(r.finish("x"), Ok(()));
    }

    #[test]
    fn a_short_field_is_truncated_and_does_not_move_the_cursor() {
        let mut r = ByteReader::new(&[9, 1, 2, 3]);
        r.u8("tag").unwrap();
        assert_eq!(
            r.u64("id"),
            Err(ReadError::Truncated {
                field: "id",
                at: 1,
                wanted: 8,
                left: 3
            })
        );
        assert_eq!(r.position(), 1);
        assert_eq!(r.rest(), &[1, 2, 3]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn length_prefixes_are_checked_against_the_bytes_left() {
        let mut r = ByteReader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(matches!(
            r.bytes_u32("value"),
            Err(ReadError::Truncated {
                wanted: 9,
                left: 2,
                ..
            })
        ));
        let mut r = ByteReader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.bytes_u32("value"),
            Err(ReadError::Truncated { .. })
        ));
        let mut r = ByteReader::new(&[0, 0, 0, 2, 7, 8, 5]);
        assert_eq!(r.bytes_u32("value"), Ok(&[7, 8][..]));
        assert_eq!(
            r.finish("record"),
            Err(TrailingBytes {
                field: "record",
                bytes: 1
            })
        );
    }

    #[test]
    fn strings_are_checked_for_length_and_utf8() {
        let mut r = ByteReader::new(&[0, 2, b'h', b'i', 2, 0xc3, 0x28]);
        assert_eq!(r.str_u16("name"), Ok("hi"));
        assert!(matches!(
            r.str_u8("key"),
            Err(ReadError::BadUtf8 { field: "key", .. })
        ));
        let mut r = ByteReader::new(&[5, b'a']);
        assert!(matches!(r.str_u8("key"), Err(ReadError::Truncated { .. })));
    }

    #[test]
    fn counts_must_fit_in_the_bytes_left() {
        let mut r = ByteReader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            r.count_u32(4, "count"),
            Err(ReadError::CountTooLarge {
                field: "count",
                count: u64::from(u32::MAX),
                max: 1,
                left: 4
            })
        );
        let mut r = ByteReader::new(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.count_u32(4, "count"), Ok(2));
        assert!(r.checked_count(3, 4, "count").is_err());
        assert_eq!(r.checked_count(8, 1, "count"), Ok(8));
        assert!(r.checked_count(u64::MAX, 1, "count").is_err());
        assert!(
            r.checked_count(9, 0, "count").is_err(),
            "zero size counts as one"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = ByteReader::new(&[1]).u32("Fetch max_bytes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Fetch max_bytes needs 4 bytes but only 1 remain"
        );
        let t = ByteReader::new(&[1, 2]).finish("Ping").unwrap_err();
        assert_eq!(t.to_string(), "2 unexpected trailing bytes after the Ping");
    }
}
