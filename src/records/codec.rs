//! The v1 payload codec: owned [`RecordV1`] and borrowed [`RecordV1Ref`], their
//! encoders, [`decode`] and [`set_leader_timestamp`]. Layout and rules: `mod.rs`.

use std::fmt;

use super::{
    FLAG_KEY, FLAG_LEADER_TIME, KNOWN_FLAGS, MAX_HEADERS, MAX_HEADER_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES, MAX_KEY_BYTES, MIN_HEADER_BYTES, MIN_PAYLOAD_BYTES, VERSION,
};
use crate::bytes::{ByteReader, ReadError};

/// Who set a record's timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampSource {
    /// The producer, when it built the record (Kafka's `CreateTime`).
    Producer,
    /// The partition's leader, when it appended the record (Kafka's `LogAppendTime`).
    Leader,
}

/// A record's time: ms since the Unix epoch, and who set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z (negative before it).
    pub unix_ms: i64,
    /// Who set it.
    pub source: TimestampSource,
}

/// One header of an owned record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordHeaderV1 {
    /// The name (UTF-8, at most [`MAX_HEADER_NAME_BYTES`]; may repeat in a record).
    pub name: String,
    /// The value (at most [`MAX_HEADER_VALUE_BYTES`]).
    pub value: Vec<u8>,
}

/// An owned v1 record, as a producer builds it. Its fields are free to set; the
/// limits are checked by [`RecordV1::check_limits`] and by the encoder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordV1 {
    /// When, and set by whom.
    pub timestamp: Timestamp,
    /// The key; `None` is no key, `Some(vec![])` an empty one.
    pub key: Option<Vec<u8>>,
    /// Headers in order (duplicates allowed).
    pub headers: Vec<RecordHeaderV1>,
    /// The value.
    pub value: Vec<u8>,
}

/// A limit of `mod.rs` that a record exceeds (encoding) or a payload claims to
/// exceed (decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// The key is longer than [`MAX_KEY_BYTES`].
    KeyTooLarge {
        /// Its length.
        key_bytes: usize,
    },
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders {
        /// How many.
        count: usize,
    },
    /// A header name longer than [`MAX_HEADER_NAME_BYTES`].
    HeaderNameTooLarge {
        /// The header's position (from 0).
        index: usize,
        /// The name's length.
        name_bytes: usize,
    },
    /// A header value longer than [`MAX_HEADER_VALUE_BYTES`].
    HeaderValueTooLarge {
        /// The header's position (from 0).
        index: usize,
        /// The value's length.
        value_bytes: usize,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LimitError::KeyTooLarge { key_bytes } => write!(
                f,
                "the record key is {key_bytes} bytes; keys are at most {MAX_KEY_BYTES} bytes"
            ),
            LimitError::TooManyHeaders { count } => write!(
                f,
                "the record has {count} headers; at most {MAX_HEADERS} are allowed"
            ),
            LimitError::HeaderNameTooLarge { index, name_bytes } => write!(
                f,
                "record header {index} has a {name_bytes}-byte name; names are at most \
                 {MAX_HEADER_NAME_BYTES} bytes"
            ),
            LimitError::HeaderValueTooLarge { index, value_bytes } => write!(
                f,
                "record header {index} has a {value_bytes}-byte value; header values are at \
                 most {MAX_HEADER_VALUE_BYTES} bytes (put bulk data in the record value)"
            ),
        }
    }
}

impl std::error::Error for LimitError {}

/// Why a payload is not a valid v1 record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A field is cut short, a header count cannot fit in the bytes left, or a
    /// header name is not UTF-8 (the error names the field).
    Read(ReadError),
    /// The version byte is not [`VERSION`].
    UnknownVersion {
        /// The byte found.
        version: u8,
    },
    /// A flag bit version 1 does not define is set.
    UnknownFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// A length or count is over its limit.
    Limit(LimitError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Read(e) => write!(f, "malformed v1 record: {e}"),
            DecodeError::UnknownVersion { version } => write!(
                f,
                "record format version {version} is not known here (this build reads version \
                 {VERSION}); upgrade this node or client"
            ),
            DecodeError::UnknownFlags { flags } => write!(
                f,
                "record flags {flags:#04x} set bits version {VERSION} does not define \
                 (known: {KNOWN_FLAGS:#04x})"
            ),
            DecodeError::Limit(e) => write!(f, "malformed v1 record: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> Self {
        DecodeError::Read(e)
    }
}

impl From<LimitError> for DecodeError {
    fn from(e: LimitError) -> Self {
        DecodeError::Limit(e)
    }
}

/// One header of a decoded record, borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderRef<'a> {
    /// The name.
    pub name: &'a str,
    /// The value.
    pub value: &'a [u8],
}

/// The headers of a decoded record: the validated bytes of the header section,
/// read again on iteration (nothing is collected on decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadersRef<'a> {
    count: u16,
    /// Exactly `count` headers, each already checked by [`decode`].
    section: &'a [u8],
}

impl<'a> HeadersRef<'a> {
    /// How many headers.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order.
    pub fn iter(&self) -> HeadersIter<'a> {
        HeadersIter {
            reader: ByteReader::new(self.section),
            left: self.count,
        }
    }

    /// The value of the last header named `name` (Kafka's `lastHeader`).
    pub fn last_value(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .filter(|h| h.name == name)
            .last()
            .map(|h| h.value)
    }
}

impl<'a> IntoIterator for HeadersRef<'a> {
    type Item = HeaderRef<'a>;
    type IntoIter = HeadersIter<'a>;

    fn into_iter(self) -> HeadersIter<'a> {
        self.iter()
    }
}

/// Iterator over [`HeadersRef`].
#[derive(Clone, Debug)]
pub struct HeadersIter<'a> {
    reader: ByteReader<'a>,
    left: u16,
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The section was validated by `decode`, so this cannot fail; if it somehow
        // did, ending the iteration early is still total (and the debug build says so).
        match read_header(&mut self.reader, 0) {
            Ok(h) => Some(h),
            Err(e) => {
                debug_assert!(false, "validated header section failed to read: {e}");
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for HeadersIter<'_> {}

/// A decoded v1 record, borrowing every field from the payload. Only [`decode`]
/// makes one, so it always satisfies the limits and re-encodes infallibly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordV1Ref<'a> {
    timestamp: Timestamp,
    key: Option<&'a [u8]>,
    headers: HeadersRef<'a>,
    value: &'a [u8],
}

impl<'a> RecordV1Ref<'a> {
    /// When, and set by whom.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The key (`None`: no key; `Some(&[])`: an empty key).
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The headers, in order.
    pub fn headers(&self) -> HeadersRef<'a> {
        self.headers
    }

    /// The value.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Length of the encoding: the payload this was decoded from.
    pub fn encoded_len(&self) -> usize {
        MIN_PAYLOAD_BYTES + key_len(self.key) + self.headers.section.len() + self.value.len()
    }

    /// Appends the encoding (the same bytes it was decoded from) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        put_prefix(out, self.timestamp, self.key);
        out.extend_from_slice(&self.headers.count.to_be_bytes());
        out.extend_from_slice(self.headers.section);
        out.extend_from_slice(self.value);
    }

    /// An owned copy.
    pub fn to_record(&self) -> RecordV1 {
        // `count` was checked against the bytes of the section: the capacity is
        // bounded by the payload's own length.
        let mut headers = Vec::with_capacity(self.headers.len());
        headers.extend(self.headers.iter().map(|h| RecordHeaderV1 {
            name: h.name.to_owned(),
            value: h.value.to_vec(),
        }));
        RecordV1 {
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            headers,
            value: self.value.to_vec(),
        }
    }
}

impl RecordV1 {
    /// Checks every limit of `mod.rs` (the encoder does too).
    pub fn check_limits(&self) -> Result<(), LimitError> {
        if let Some(key) = &self.key {
            check_key_len(key.len())?;
        }
        check_header_count(self.headers.len())?;
        for (index, h) in self.headers.iter().enumerate() {
            check_header_name_len(index, h.name.len())?;
            check_header_value_len(index, h.value.len())?;
        }
        Ok(())
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| MIN_HEADER_BYTES + h.name.len() + h.value.len())
            .sum();
        MIN_PAYLOAD_BYTES + key_len(self.key.as_deref()) + headers + self.value.len()
    }

    /// Appends the encoding to `out`, or, when a limit is exceeded, returns which
    /// and appends nothing.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), LimitError> {
        self.check_limits()?;
        out.reserve(self.encoded_len());
        put_prefix(out, self.timestamp, self.key.as_deref());
        // Both fit their fields: checked above against limits below u16/u32::MAX.
        let count = self.headers.len() as u16;
        out.extend_from_slice(&count.to_be_bytes());
        for h in &self.headers {
            out.extend_from_slice(&(h.name.len() as u16).to_be_bytes());
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(&(h.value.len() as u32).to_be_bytes());
            out.extend_from_slice(&h.value);
        }
        out.extend_from_slice(&self.value);
        Ok(())
    }
}

/// Encoded bytes of an optional key.
fn key_len(key: Option<&[u8]>) -> usize {
    key.map_or(0, |k| 4 + k.len())
}

/// Version, flags, timestamp and the key: everything before the header count. The
/// caller checked the key against [`MAX_KEY_BYTES`].
fn put_prefix(out: &mut Vec<u8>, timestamp: Timestamp, key: Option<&[u8]>) {
    let mut flags = 0;
    if timestamp.source == TimestampSource::Leader {
        flags |= FLAG_LEADER_TIME;
    }
    if key.is_some() {
        flags |= FLAG_KEY;
    }
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&timestamp.unix_ms.to_be_bytes());
    if let Some(key) = key {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
    }
}

fn check_key_len(key_bytes: usize) -> Result<(), LimitError> {
    if key_bytes > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLarge { key_bytes });
    }
    Ok(())
}

fn check_header_count(count: usize) -> Result<(), LimitError> {
    if count > MAX_HEADERS {
        return Err(LimitError::TooManyHeaders { count });
    }
    Ok(())
}

fn check_header_name_len(index: usize, name_bytes: usize) -> Result<(), LimitError> {
    if name_bytes > MAX_HEADER_NAME_BYTES {
        return Err(LimitError::HeaderNameTooLarge { index, name_bytes });
    }
    Ok(())
}

fn check_header_value_len(index: usize, value_bytes: usize) -> Result<(), LimitError> {
    if value_bytes > MAX_HEADER_VALUE_BYTES {
        return Err(LimitError::HeaderValueTooLarge { index, value_bytes });
    }
    Ok(())
}

/// Decodes a v1 payload, borrowing from it. Total: any input gives a record or a
/// typed error, and nothing is allocated.
pub fn decode(payload: &[u8]) -> Result<RecordV1Ref<'_>, DecodeError> {
    let mut r = ByteReader::new(payload);
    let version = r.u8("record version")?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion { version });
    }
    let flags = r.u8("record flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnknownFlags { flags });
    }
    let source = if flags & FLAG_LEADER_TIME != 0 {
        TimestampSource::Leader
    } else {
        TimestampSource::Producer
    };
    let unix_ms = i64::from_be_bytes(r.array("record timestamp_ms")?);
    let key = if flags & FLAG_KEY != 0 {
        let len = r.u32("record key length")? as usize;
        check_key_len(len)?;
        Some(r.take(len, "record key")?)
    } else {
        None
    };
    let headers = read_headers(&mut r)?;
    Ok(RecordV1Ref {
        timestamp: Timestamp { unix_ms, source },
        key,
        headers,
        value: r.rest(),
    })
}

/// The header count and every header, validated; returns them as a section.
fn read_headers<'a>(r: &mut ByteReader<'a>) -> Result<HeadersRef<'a>, DecodeError> {
    let count = r.u16("record header count")?;
    check_header_count(usize::from(count))?;
    r.checked_count(u64::from(count), MIN_HEADER_BYTES, "record header count")?;
    // A copy of the cursor at the section's start: once every header has been
    // checked, it takes the section's bytes in one borrow.
    let mut at_section = r.clone();
    for index in 0..usize::from(count) {
        read_header(r, index)?;
    }
    let section_bytes = r.position() - at_section.position();
    let section = at_section.take(section_bytes, "record headers")?;
    Ok(HeadersRef { count, section })
}

/// One header; `index` is its position, for errors.
fn read_header<'a>(r: &mut ByteReader<'a>, index: usize) -> Result<HeaderRef<'a>, DecodeError> {
    let name_len = usize::from(r.u16("record header name length")?);
    check_header_name_len(index, name_len)?;
    let name = r.str(name_len, "record header name")?;
    let value_len = r.u32("record header value length")? as usize;
    check_header_value_len(index, value_len)?;
    let value = r.take(value_len, "record header value")?;
    Ok(HeaderRef { name, value })
}

/// Marks a v1 payload as stamped by the leader at `unix_ms`: sets
/// [`FLAG_LEADER_TIME`] and overwrites the timestamp in place (same length, so the
/// payload's framing is unchanged). For topics whose records take the leader's
/// append time; call it before the record's checksum is computed. The whole
/// payload is validated first; on error nothing is changed.
pub fn set_leader_timestamp(payload: &mut [u8], unix_ms: i64) -> Result<(), DecodeError> {
    decode(payload)?;
    stamp_decoded(payload, unix_ms);
    Ok(())
}

/// [`set_leader_timestamp`] for a payload [`decode`] already accepted (the produce
/// path decodes each record once): sets the flag and the time in place. Returns
/// false, writing nothing, for a payload shorter than any valid one.
pub fn stamp_decoded(payload: &mut [u8], unix_ms: i64) -> bool {
    // Every valid payload starts with version, flags and 8 timestamp bytes.
    let Some(head) = payload.get_mut(..MIN_PAYLOAD_BYTES - 2) else {
        return false;
    };
    head[1] |= FLAG_LEADER_TIME;
    head[2..].copy_from_slice(&unix_ms.to_be_bytes());
    true
}

/// The bytes a payload with no key and no headers has before its value: version,
/// flags, `timestamp`, a zero header count. A bare value after them is a whole v1
/// payload, so a v0 value is wrapped (or a v0 record presented as v1) without
/// building a [`RecordV1`] (which would copy the value once more).
pub fn value_only_prefix(timestamp: Timestamp) -> [u8; MIN_PAYLOAD_BYTES] {
    let mut out = [0u8; MIN_PAYLOAD_BYTES];
    out[0] = VERSION;
    if timestamp.source == TimestampSource::Leader {
        out[1] = FLAG_LEADER_TIME;
    }
    out[2..10].copy_from_slice(&timestamp.unix_ms.to_be_bytes());
    // Bytes 10..12, the header count, stay 0.
    out
}

/// The v1 payload of a bare value: no key, no headers, `timestamp`. One allocation
/// of exactly the payload's length.
pub fn encode_value_only(value: &[u8], timestamp: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_PAYLOAD_BYTES + value.len());
    out.extend_from_slice(&value_only_prefix(timestamp));
    out.extend_from_slice(value);
    out
}
