//! Record formats: how `consume` and `tail` print a record (text with escapes,
//! raw values, kcat-style `-f`, JSON) and how `produce` decodes its input (raw, hex,
//! base64). Pure functions over bytes; the commands do the I/O.

use std::io::{self, Write};

use clap::ValueEnum;

use commitlog::client::records::ConsumedRecord;
use commitlog::wire::TopicPartition;

/// `produce --input-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum InputFormat {
    Raw,
    Hex,
    Base64,
}

impl InputFormat {
    /// The record bytes `input` stands for (hex and base64 ignore surrounding white
    /// space, so `echo 6869 | clog produce --input-format hex` works).
    pub(crate) fn decode(self, input: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            InputFormat::Raw => Ok(input.to_vec()),
            InputFormat::Hex => decode_hex(input.trim_ascii()),
            InputFormat::Base64 => decode_base64(input.trim_ascii()),
        }
    }
}

fn decode_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", text.len()));
    }
    text.chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(format!(
                    "`{}` is not a hex byte",
                    String::from_utf8_lossy(pair)
                )),
            }
        })
        .collect()
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648), padding optional.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64_ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    let body = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if body.len() % 4 == 1 {
        return Err(format!(
            "{} base64 characters cannot encode whole bytes",
            body.len()
        ));
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = BASE64_ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("`{}` is not a base64 character", c.escape_ascii()))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// `\n`, `\t`, `\r`, `\0` and `\\` in a flag's text as the bytes they stand for.
pub(crate) fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(other) => out.extend_from_slice(&[b'\\', other]),
            None => out.push(b'\\'),
        }
    }
    out
}

/// One piece of a `-f` format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Vec<u8>),
    Offset,
    Value,
    Size,
    Topic,
    Partition,
    /// `%k`: the key (raw; nothing when the record has none).
    Key,
    /// `%T`: the timestamp in ms (-1 when unknown).
    Timestamp,
    /// `%h`: the headers, `name=value` joined by `,` (raw).
    Headers,
}

/// What `--print-key`, `--print-timestamp` and `--print-headers` add to text
/// output, between the offset and the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Print {
    pub(crate) key: bool,
    pub(crate) timestamp: bool,
    pub(crate) headers: bool,
}

/// One record as the formats print it, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shown<'a> {
    pub(crate) offset: u64,
    pub(crate) value: &'a [u8],
    /// `None`: no key (distinct from an empty one).
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) headers: &'a [(String, Vec<u8>)],
    /// ms since the Unix epoch and whether the leader set it; `None` when unknown.
    pub(crate) timestamp: Option<(i64, bool)>,
}

impl<'a> Shown<'a> {
    /// A record read with keys, headers and time (Fetch v2).
    pub(crate) fn of(r: &'a ConsumedRecord) -> Shown<'a> {
        Shown {
            offset: r.offset.0,
            value: &r.value,
            key: r.key.as_deref(),
            headers: &r.headers,
            timestamp: (r.timestamp_ms != -1).then_some((r.timestamp_ms, r.leader_time)),
        }
    }
}

/// How records are printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordFormat {
    /// `offset<TAB>value<end>`, the value with C-style escapes (`\n`, `\t`, `\\`,
    /// `\xNN` for other control and non-UTF-8 bytes) so that one record is one line;
    /// `print` adds the timestamp, key and headers (escaped too) before the value.
    Text { end: u8, print: Print },
    /// The raw value, then `end`.
    ValuesOnly { end: u8 },
    /// `-f`: kcat-style pieces, raw values, nothing added.
    Custom(Vec<Piece>),
    /// One JSON object per line: `topic`, `partition`, `offset`, `size`, `value`
    /// (valid UTF-8) or `value_base64` (anything else), `key` / `key_base64`
    /// (`null`: no key), `headers` (`[{name, value | value_base64}]`, in order),
    /// `timestamp_ms` and `timestamp_type` (`create` or `append`; both `null` when
    /// unknown).
    Json,
}

impl RecordFormat {
    /// Parses a `-f` format: `%o` offset, `%v` value, `%s` size, `%t` topic, `%p`
    /// partition, `%%`; escapes as [`unescape`]. Unknown `%x` is an error naming it.
    pub(crate) fn custom(format: &str) -> Result<RecordFormat, String> {
        let bytes = unescape(format);
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut it = bytes.iter().copied();
        while let Some(b) = it.next() {
            if b != b'%' {
                text.push(b);
                continue;
            }
            let piece = match it.next() {
                Some(b'%') => {
                    text.push(b'%');
                    continue;
                }
                Some(b'o') => Piece::Offset,
                Some(b'v') => Piece::Value,
                Some(b's') => Piece::Size,
                Some(b't') => Piece::Topic,
                Some(b'p') => Piece::Partition,
                Some(b'k') => Piece::Key,
                Some(b'T') => Piece::Timestamp,
                Some(b'h') => Piece::Headers,
                Some(c) => {
                    return Err(format!(
                        "unknown field `%{}` in -f (known: %o offset, %v value, %s size, %t topic, %p partition, %k key, %T timestamp, %h headers, %% a percent sign)",
                        c as char
                    ))
                }
                None => return Err("-f ends with a lone `%` (write %% for a percent sign)".into()),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(RecordFormat::Custom(pieces))
    }

    /// Writes one record of `from`.
    pub(crate) fn write_record(
        &self,
        out: &mut impl Write,
        from: &TopicPartition,
        r: &Shown<'_>,
    ) -> io::Result<()> {
        match self {
            RecordFormat::Text { end, print } => {
                write!(out, "{}\t", r.offset)?;
                write_extras(out, print, r)?;
                write_escaped(out, r.value)?;
                out.write_all(&[*end])
            }
            RecordFormat::ValuesOnly { end } => {
                out.write_all(r.value)?;
                out.write_all(&[*end])
            }
            RecordFormat::Custom(pieces) => {
                for piece in pieces {
                    write_piece(out, piece, from, r)?;
                }
                Ok(())
            }
            RecordFormat::Json => {
                serde_json::to_writer(&mut *out, &json_record(from, r))?;
                out.write_all(b"\n")
            }
        }
    }
}

/// The timestamp, key and headers `print` asks for, each escaped and followed by
/// a tab: `-1` for an unknown time, `null` for no key, `-` for no headers.
fn write_extras(out: &mut impl Write, print: &Print, r: &Shown<'_>) -> io::Result<()> {
    if print.timestamp {
        write!(out, "{}\t", r.timestamp.map_or(-1, |t| t.0))?;
    }
    if print.key {
        match r.key {
            Some(k) => write_escaped(out, k)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b"\t")?;
    }
    if print.headers {
        if r.headers.is_empty() {
            out.write_all(b"-")?;
        }
        for (i, (name, value)) in r.headers.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write_escaped(out, name.as_bytes())?;
            out.write_all(b"=")?;
            write_escaped(out, value)?;
        }
        out.write_all(b"\t")?;
    }
    Ok(())
}

fn write_piece(
    out: &mut impl Write,
    piece: &Piece,
    from: &TopicPartition,
    r: &Shown<'_>,
) -> io::Result<()> {
    match piece {
        Piece::Text(t) => out.write_all(t),
        Piece::Offset => write!(out, "{}", r.offset),
        Piece::Value => out.write_all(r.value),
        Piece::Size => write!(out, "{}", r.value.len()),
        Piece::Topic => out.write_all(from.topic.as_bytes()),
        Piece::Partition => write!(out, "{}", from.partition),
        Piece::Key => out.write_all(r.key.unwrap_or_default()),
        Piece::Timestamp => write!(out, "{}", r.timestamp.map_or(-1, |t| t.0)),
        Piece::Headers => {
            for (i, (name, value)) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(name.as_bytes())?;
                out.write_all(b"=")?;
                out.write_all(value)?;
            }
            Ok(())
        }
    }
}

/// Inserts `bytes` as `name` (valid UTF-8) or `name_base64` (anything else), the
/// convention of every byte field in the JSON output.
fn insert_bytes(object: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.into(), text.into()),
        Err(_) => object.insert(format!("{name}_base64"), encode_base64(bytes).into()),
    };
}

/// One record as a JSON object (see [`RecordFormat::Json`]).
fn json_record(from: &TopicPartition, r: &Shown<'_>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("topic".into(), from.topic.as_str().into());
    object.insert("partition".into(), from.partition.into());
    object.insert("offset".into(), r.offset.into());
    object.insert("size".into(), r.value.len().into());
    insert_bytes(&mut object, "value", r.value);
    match r.key {
        Some(k) => insert_bytes(&mut object, "key", k),
        None => {
            object.insert("key".into(), serde_json::Value::Null);
        }
    }
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .map(|(name, value)| {
            let mut h = serde_json::Map::new();
            h.insert("name".into(), name.as_str().into());
            insert_bytes(&mut h, "value", value);
            serde_json::Value::Object(h)
        })
        .collect();
    object.insert("headers".into(), headers.into());
    let (ms, kind) = match r.timestamp {
        Some((ms, leader)) => (ms.into(), if leader { "append" } else { "create" }.into()),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    object.insert("timestamp_ms".into(), ms);
    object.insert("timestamp_type".into(), kind);
    serde_json::Value::Object(object)
}

/// `value` with C-style escapes so that it stays on one line (see
/// [`RecordFormat::Text`]).
fn write_escaped(out: &mut impl Write, value: &[u8]) -> io::Result<()> {
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.write_all(b"\\n")?,
                '\t' => out.write_all(b"\\t")?,
                '\r' => out.write_all(b"\\r")?,
                '\\' => out.write_all(b"\\\\")?,
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(out, "\\x{b:02x}")?;
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.write_all(c.encode_utf8(&mut buf).as_bytes())?;
                }
            }
        }
        for b in chunk.invalid() {
            write!(out, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: &RecordFormat, offset: u64, value: &[u8]) -> String {
        render_from(f, &TopicPartition::default_topic(), offset, value)
    }

    fn render_from(f: &RecordFormat, from: &TopicPartition, offset: u64, value: &[u8]) -> String {
        let shown = Shown {
            offset,
            value,
            key: None,
            headers: &[],
            timestamp: None,
        };
        let mut out = Vec::new();
        f.write_record(&mut out, from, &shown).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn base64_and_hex_round_trip() {
        for v in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            &[0, 255, 10, 13][..],
        ] {
            let enc = encode_base64(v);
            assert_eq!(decode_base64(enc.as_bytes()).unwrap(), v, "{enc}");
            assert_eq!(
                decode_base64(enc.trim_end_matches('=').as_bytes()).unwrap(),
                v
            );
        }
        assert_eq!(encode_base64(b"hi\n"), "aGkK");
        assert!(decode_base64(b"a").is_err());
        assert!(decode_base64(b"a*bc").is_err());
        assert_eq!(InputFormat::Hex.decode(b" 68690a\n").unwrap(), b"hi\n");
        assert!(InputFormat::Hex.decode(b"6").is_err());
        assert!(InputFormat::Hex.decode(b"zz").is_err());
    }

    #[test]
    fn text_keeps_one_record_on_one_line() {
        let f = RecordFormat::Text {
            end: b'\n',
            print: Print::default(),
        };
        assert_eq!(render(&f, 7, b"a\nb\tc\\"), "7\ta\\nb\\tc\\\\\n");
        assert_eq!(render(&f, 1, &[0xff, b'x', 1]), "1\t\\xffx\\x01\n");
        assert_eq!(render(&f, 2, "é".as_bytes()), "2\té\n");
    }

    #[test]
    fn custom_formats_and_json() {
        let f = RecordFormat::custom("%o:%s:%v%%\\n").unwrap();
        assert_eq!(render(&f, 3, b"a\nb"), "3:3:a\nb%\n");
        assert!(RecordFormat::custom("%K").is_err());
        assert!(RecordFormat::custom("x%").is_err());
        assert_eq!(
            render(&RecordFormat::Json, 4, b"h\"i"),
            "{\"headers\":[],\"key\":null,\"offset\":4,\"partition\":0,\"size\":3,\
             \"timestamp_ms\":null,\"timestamp_type\":null,\"topic\":\"default\",\"value\":\"h\\\"i\"}\n"
        );
        assert_eq!(
            render(&RecordFormat::Json, 5, &[0xff]),
            "{\"headers\":[],\"key\":null,\"offset\":5,\"partition\":0,\"size\":1,\
             \"timestamp_ms\":null,\"timestamp_type\":null,\"topic\":\"default\",\"value_base64\":\"/w==\"}\n"
        );
    }

    #[test]
    fn json_and_custom_formats_name_the_partition() {
        let orders = TopicPartition::new("orders", 2);
        let line = render_from(&RecordFormat::Json, &orders, 9, b"x");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 9);
        assert_eq!(v["value"], "x");
        let f = RecordFormat::custom("%t/%p@%o %v\\n").unwrap();
        assert_eq!(render_from(&f, &orders, 9, b"x"), "orders/2@9 x\n");
    }

    fn full<'a>(headers: &'a [(String, Vec<u8>)]) -> Shown<'a> {
        Shown {
            offset: 3,
            value: b"v\n",
            key: Some(b"k\xff"),
            headers,
            timestamp: Some((1_796_551_200_000, true)),
        }
    }

    #[test]
    fn keys_headers_and_time_in_text_custom_and_json() {
        let headers = vec![
            ("a".to_string(), b"1".to_vec()),
            ("a".to_string(), vec![0xfe]),
        ];
        let r = full(&headers);
        let from = TopicPartition::new("events", 1);
        let show = |f: &RecordFormat, r: &Shown<'_>| {
            let mut out = Vec::new();
            f.write_record(&mut out, &from, r).unwrap();
            out
        };
        let all = Print {
            key: true,
            timestamp: true,
            headers: true,
        };
        let text = RecordFormat::Text {
            end: b'\n',
            print: all,
        };
        assert_eq!(
            show(&text, &r),
            b"3\t1796551200000\tk\\xff\ta=1,a=\\xfe\tv\\n\n".to_vec()
        );
        let bare = Shown {
            key: None,
            headers: &[],
            timestamp: None,
            ..r
        };
        assert_eq!(show(&text, &bare), b"3\t-1\tnull\t-\tv\\n\n".to_vec());
        let custom = RecordFormat::custom("%k|%T|%h|%v").unwrap();
        assert_eq!(
            show(&custom, &r),
            b"k\xff|1796551200000|a=1,a=\xfe|v\n".to_vec()
        );
        let v: serde_json::Value = serde_json::from_slice(&show(&RecordFormat::Json, &r)).unwrap();
        assert_eq!(v["key_base64"], encode_base64(b"k\xff"));
        assert!(v.get("key").is_none());
        assert_eq!(
            v["headers"][0],
            serde_json::json!({"name": "a", "value": "1"})
        );
        assert_eq!(
            v["headers"][1],
            serde_json::json!({"name": "a", "value_base64": "/g=="})
        );
        assert_eq!(v["timestamp_ms"], 1_796_551_200_000i64);
        assert_eq!(v["timestamp_type"], "append");
        assert_eq!(v["value"], "v\n");
    }
}
