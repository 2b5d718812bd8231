//! Tests of the v1 payload codec and the key hash: round trips over generated
//! records, truncation, hostile lengths and counts, limits, the byte example and the
//! partition vectors of `wire-spec.md` §13, and Kafka's murmur2 test vectors.

use super::fuzzing::check_record_v1;
use super::*;
use crate::bytes::ReadError;

const SPEC: &str = include_str!("../../wire-spec.md");

/// The crate's SplitMix64 (deterministic, no crate), so a failure replays.
struct Rng(crate::raft::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(crate::raft::SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Header names drawn from a small set so duplicates are common; one is empty and
/// some are multi-byte UTF-8.
const NAMES: [&str; 5] = ["trace", "", "content-type", "ключ", "trace-ü"];

fn random_record(rng: &mut Rng) -> RecordV1 {
    let unix_ms = match rng.below(4) {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => 0,
        _ => rng.next() as i64,
    };
    let source = if rng.below(2) == 0 {
        TimestampSource::Producer
    } else {
        TimestampSource::Leader
    };
    let key = match rng.below(3) {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(rng.bytes(40)),
    };
    let headers = (0..rng.below(6))
        .map(|_| RecordHeaderV1 {
            name: NAMES[rng.below(NAMES.len())].to_string(),
            value: rng.bytes(12),
        })
        .collect();
    RecordV1 {
        timestamp: Timestamp { unix_ms, source },
        key,
        headers,
        value: rng.bytes(60),
    }
}

fn encoded(record: &RecordV1) -> Vec<u8> {
    let mut out = Vec::new();
    record.encode_into(&mut out).expect("within limits");
    assert_eq!(out.len(), record.encoded_len());
    out
}

/// Bytes from the payload's start to the value's start.
fn value_start(record: &RecordV1) -> usize {
    record.encoded_len() - record.value.len()
}

fn producer_time(unix_ms: i64) -> Timestamp {
    Timestamp {
        unix_ms,
        source: TimestampSource::Producer,
    }
}

fn bare(value: &[u8]) -> RecordV1 {
    RecordV1 {
        timestamp: producer_time(5),
        key: None,
        headers: Vec::new(),
        value: value.to_vec(),
    }
}

#[test]
fn generated_records_round_trip_byte_exact() {
    let mut rng = Rng::new(0x5eed_0001);
    for _ in 0..2000 {
        let record = random_record(&mut rng);
        let bytes = encoded(&record);
        let view = decode(&bytes).unwrap_or_else(|e| panic!("{record:?}: {e}"));
        assert_eq!(view.to_record(), record);
        assert_eq!(view.timestamp(), record.timestamp);
        assert_eq!(view.key(), record.key.as_deref());
        assert_eq!(view.value(), record.value.as_slice());
        let names: Vec<&str> = view.headers().iter().map(|h| h.name).collect();
        let expected: Vec<&str> = record.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, expected, "order and duplicates kept");
        let mut again = Vec::new();
        view.encode_into(&mut again);
        assert_eq!(again, bytes);
        assert_eq!(view.encoded_len(), bytes.len());
        check_record_v1(&bytes);
    }
}

#[test]
fn the_value_is_borrowed_from_the_payload() {
    let bytes = encoded(&bare(b"in place"));
    let view = decode(&bytes).unwrap();
    let start = bytes.len() - b"in place".len();
    assert!(std::ptr::eq(view.value(), &bytes[start..]));
}

/// Every cut before the value is an error naming the short field; a cut inside the
/// value decodes with that much value (the container's length and crc32c catch it,
/// as for a v0 value: `mod.rs`).
#[test]
fn every_truncation_before_the_value_is_an_error() {
    let mut rng = Rng::new(0x5eed_0002);
    for _ in 0..300 {
        let record = random_record(&mut rng);
        let bytes = encoded(&record);
        let start = value_start(&record);
        for cut in 0..start {
            let err = decode(&bytes[..cut]).expect_err("a cut before the value");
            assert!(
                matches!(
                    err,
                    DecodeError::Read(ReadError::Truncated { .. })
                        | DecodeError::Read(ReadError::CountTooLarge { .. })
                ),
                "cut at {cut} of {record:?}: {err:?}"
            );
            check_record_v1(&bytes[..cut]);
        }
        for cut in start..bytes.len() {
            let view = decode(&bytes[..cut]).unwrap();
            assert_eq!(view.value(), &record.value[..cut - start]);
            assert_eq!(view.key(), record.key.as_deref());
            assert_eq!(view.headers().len(), record.headers.len());
        }
    }
}

#[test]
fn absent_and_empty_keys_are_different_records() {
    let none = bare(b"v");
    let empty = RecordV1 {
        key: Some(Vec::new()),
        ..none.clone()
    };
    let (a, b) = (encoded(&none), encoded(&empty));
    assert_ne!(a, b);
    assert_eq!(decode(&a).unwrap().key(), None);
    assert_eq!(decode(&b).unwrap().key(), Some(&[][..]));
    assert_eq!(b.len(), a.len() + 4);
}

#[test]
fn duplicate_header_names_keep_their_order_and_the_last_wins_a_lookup() {
    let header = |name: &str, value: &[u8]| RecordHeaderV1 {
        name: name.into(),
        value: value.to_vec(),
    };
    let record = RecordV1 {
        headers: vec![header("a", b"1"), header("b", b"2"), header("a", b"3")],
        ..bare(b"")
    };
    let bytes = encoded(&record);
    let headers = decode(&bytes).unwrap().headers();
    let values: Vec<&[u8]> = headers.iter().map(|h| h.value).collect();
    assert_eq!(values, [&b"1"[..], b"2", b"3"]);
    assert_eq!(headers.last_value("a"), Some(&b"3"[..]));
    assert_eq!(headers.last_value("c"), None);
}

/// A payload of version, flags, timestamp and whatever follows.
fn payload(flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![VERSION, flags];
    out.extend_from_slice(&42i64.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// Hostile lengths and counts are refused by their limit or by the bytes left,
/// before any field they announce is read (the decoder allocates nothing at all;
/// `to_record` only sizes its header list from a count checked against the bytes).
#[test]
fn huge_lengths_and_counts_are_refused_before_reading_on() {
    let cases: [(&str, Vec<u8>, DecodeError); 7] = [
        (
            "key length u32::MAX",
            payload(FLAG_KEY, &[0xff, 0xff, 0xff, 0xff, 1, 2]),
            LimitError::KeyTooLarge {
                key_bytes: u32::MAX as usize,
            }
            .into(),
        ),
        (
            "header count u16::MAX",
            payload(0, &[0xff, 0xff, 0, 0, 0, 0, 0, 0]),
            LimitError::TooManyHeaders { count: 0xffff }.into(),
        ),
        (
            "header name length u16::MAX",
            payload(0, &[0, 1, 0xff, 0xff, b'a', 0, 0, 0]),
            LimitError::HeaderNameTooLarge {
                index: 0,
                name_bytes: 0xffff,
            }
            .into(),
        ),
        (
            "header value length u32::MAX",
            payload(0, &[0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 9]),
            LimitError::HeaderValueTooLarge {
                index: 0,
                value_bytes: u32::MAX as usize,
            }
            .into(),
        ),
        (
            "key length within the limit but past the end",
            payload(FLAG_KEY, &(MAX_KEY_BYTES as u32).to_be_bytes()),
            ReadError::Truncated {
                field: "record key",
                at: 14,
                wanted: MAX_KEY_BYTES,
                left: 0,
            }
            .into(),
        ),
        (
            "header count within the limit but more than the bytes hold",
            payload(0, &[0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ReadError::CountTooLarge {
                field: "record header count",
                count: 3,
                max: 1,
                left: 10,
            }
            .into(),
        ),
        (
            "header value length within the limit but past the end",
            payload(0, &[0, 1, 0, 0, 0, 0x10, 0, 0, 7]),
            ReadError::Truncated {
                field: "record header value",
                at: 18,
                wanted: 0x0010_0000,
                left: 1,
            }
            .into(),
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(decode(&bytes), Err(expected), "{what}");
        check_record_v1(&bytes);
    }
}

#[test]
fn unknown_versions_flags_and_bad_names_are_typed_errors() {
    let mut v2 = encoded(&bare(b"x"));
    v2[0] = 2;
    assert_eq!(decode(&v2), Err(DecodeError::UnknownVersion { version: 2 }));
    assert_eq!(
        decode(&[0]),
        Err(DecodeError::UnknownVersion { version: 0 })
    );
    for bit in 2..8 {
        let flags = 1u8 << bit;
        assert_eq!(
            decode(&payload(flags, &[0, 0])),
            Err(DecodeError::UnknownFlags { flags })
        );
    }
    let bad_name = payload(0, &[0, 1, 0, 2, 0xc3, 0x28, 0, 0, 0, 0]);
    assert!(matches!(
        decode(&bad_name),
        Err(DecodeError::Read(ReadError::BadUtf8 {
            field: "record header name",
            ..
        }))
    ));
    assert!(matches!(
        decode(&[]),
        Err(DecodeError::Read(ReadError::Truncated { .. }))
    ));
    let e = DecodeError::UnknownVersion { version: 9 }.to_string();
    assert!(e.contains("version 9") && e.contains("upgrade"), "{e}");
}

#[test]
fn the_encoder_enforces_every_limit_and_writes_nothing_past_one() {
    let header = |name_bytes: usize, value_bytes: usize| RecordHeaderV1 {
        name: "n".repeat(name_bytes),
        value: vec![7; value_bytes],
    };
    let at_limits = RecordV1 {
        key: Some(vec![1; MAX_KEY_BYTES]),
        headers: (0..MAX_HEADERS)
            .map(|i| match i {
                0 => header(MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES),
                _ => header(1, 0),
            })
            .collect(),
        ..bare(b"v")
    };
    let bytes = encoded(&at_limits);
    assert_eq!(decode(&bytes).unwrap().to_record(), at_limits);

    let over: [(RecordV1, LimitError); 4] = [
        (
            RecordV1 {
                key: Some(vec![1; MAX_KEY_BYTES + 1]),
                ..at_limits.clone()
            },
            LimitError::KeyTooLarge {
                key_bytes: MAX_KEY_BYTES + 1,
            },
        ),
        (
            RecordV1 {
                headers: vec![header(0, 0); MAX_HEADERS + 1],
                ..bare(b"")
            },
            LimitError::TooManyHeaders {
                count: MAX_HEADERS + 1,
            },
        ),
        (
            RecordV1 {
                headers: vec![header(1, 0), header(MAX_HEADER_NAME_BYTES + 1, 0)],
                ..bare(b"")
            },
            LimitError::HeaderNameTooLarge {
                index: 1,
                name_bytes: MAX_HEADER_NAME_BYTES + 1,
            },
        ),
        (
            RecordV1 {
                headers: vec![header(1, MAX_HEADER_VALUE_BYTES + 1)],
                ..bare(b"")
            },
            LimitError::HeaderValueTooLarge {
                index: 0,
                value_bytes: MAX_HEADER_VALUE_BYTES + 1,
            },
        ),
    ];
    for (record, expected) in over {
        let mut out = vec![0xaa];
        assert_eq!(record.encode_into(&mut out), Err(expected));
        assert_eq!(record.check_limits(), Err(expected));
        assert_eq!(out, [0xaa], "nothing written");
    }
}

#[test]
fn the_leader_stamps_its_time_in_place() {
    let record = RecordV1 {
        key: Some(b"k".to_vec()),
        ..bare(b"value")
    };
    let mut bytes = encoded(&record);
    let mut again = bytes.clone();
    let len = bytes.len();
    set_leader_timestamp(&mut bytes, 1_796_551_200_000).unwrap();
    assert_eq!(bytes.len(), len);
    let stamped = decode(&bytes).unwrap().to_record();
    assert_eq!(
        stamped,
        RecordV1 {
            timestamp: Timestamp {
                unix_ms: 1_796_551_200_000,
                source: TimestampSource::Leader
            },
            ..record
        }
    );
    let mut bad = vec![1, 0x80, 0, 0];
    assert!(set_leader_timestamp(&mut bad, 3).is_err());
    assert_eq!(bad, [1, 0x80, 0, 0]);
    // The produce path's stamp of an already decoded payload writes the same bytes.
    assert!(stamp_decoded(&mut again, 1_796_551_200_000));
    assert_eq!(again, bytes);
    assert!(!stamp_decoded(&mut bad, 3), "shorter than any record");
    assert_eq!(bad, [1, 0x80, 0, 0]);
}

/// The lines of the ```text block right after `marker` in `wire-spec.md`.
fn spec_block_after(marker: &str) -> Vec<&'static str> {
    crate::wire::examples::tests::text_block_after(marker)
}

/// The hex columns of `xxd` lines (`00000000: 0102 0000 …  ascii`).
fn unxxd(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let (addr, rest) = line.split_once(": ").expect("xxd address");
        assert_eq!(usize::from_str_radix(addr, 16), Ok(n * 16), "{line}");
        let hex: String = rest[..rest.len().min(39)]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for pair in hex.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).unwrap();
            out.push(u8::from_str_radix(pair, 16).expect("hex"));
        }
    }
    out
}

/// The example of `wire-spec.md` §13, byte for byte, both ways.
#[test]
fn spec_example_is_what_the_codec_writes() {
    let in_spec = unxxd(&spec_block_after(
        "<!-- record-v1-example: key-header-value -->",
    ));
    let record = RecordV1 {
        timestamp: producer_time(1_796_551_200_000), // 2026-12-06T10:00:00Z
        key: Some(b"k1".to_vec()),
        headers: vec![RecordHeaderV1 {
            name: "trace".into(),
            value: b"abc".to_vec(),
        }],
        value: b"hello".to_vec(),
    };
    let pinned: &[u8] = b"\x01\x02\x00\x00\x01\xa2\x4a\xcb\xcd\x00\
        \x00\x00\x00\x02k1\
        \x00\x01\x00\x05trace\x00\x00\x00\x03abc\
        hello";
    assert_eq!(encoded(&record), pinned);
    assert_eq!(in_spec, pinned);
    assert_eq!(decode(pinned).unwrap().to_record(), record);
}

/// Kafka's own `UtilsTest.testMurmur2` values (Java `int`s), and those other
/// Kafka-compatible clients assert for short keys (one of each tail length).
#[test]
fn murmur2_matches_kafkas_test_vectors() {
    let vectors: [(&[u8], i32); 11] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
        (b"1", -1_993_445_489),
        (b"12", 126_087_238),
        (b"123", -267_702_483),
        (b"1234", -1_614_185_708),
        (b"12345", -1_188_365_604),
    ];
    for (key, java_int) in vectors {
        assert_eq!(
            murmur2(key),
            java_int as u32,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
}

/// The hand computation in `partition.rs`'s doc, step by step.
#[test]
fn murmur2_of_nothing_is_the_final_mix_of_the_seed() {
    let mut h: u32 = 0x9747_b28c;
    assert_eq!(h >> 13, 0x0004_ba3d);
    h ^= h >> 13;
    assert_eq!(h, 0x9743_08b1);
    h = h.wrapping_mul(0x5bd1_e995);
    assert_eq!(h, 0x106e_2805);
    assert_eq!(h >> 15, 0x0000_20dc);
    h ^= h >> 15;
    assert_eq!(h, 0x106e_08d9);
    assert_eq!(murmur2(b""), 0x106e_08d9);
}

#[test]
fn partition_for_key_clears_the_sign_bit_then_takes_the_remainder() {
    // murmur2("21") is negative as a Java int: toPositive clears bit 31 (not abs).
    assert_eq!(murmur2(b"21") & 0x7fff_ffff, 1_173_551_340);
    assert_eq!(partition_for_key(b"21", 6), 1_173_551_340 % 6);
    assert_eq!(partition_for_key(b"21", 1), 0);
    assert_eq!(partition_for_key(b"21", 0), 0, "total, never a panic");
    let mut rng = Rng::new(0x5eed_0003);
    for _ in 0..500 {
        let key = rng.bytes(20);
        let n = 1 + rng.below(64) as u32;
        assert!(partition_for_key(&key, n) < n);
        assert_eq!(partition_for_key(&key, n), partition_for_key(&key, n));
    }
}

/// The table of `wire-spec.md` §13: key, murmur2 as a Java int, partition of 6 and
/// of 100.
#[test]
fn spec_partition_table_is_what_the_hash_gives() {
    let lines: Vec<&str> = SPEC.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "<!-- partition-vectors -->")
        .expect("marker in wire-spec.md");
    let rows: Vec<Vec<&str>> = lines[at + 3..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 4, "{rows:?}");
    for row in rows {
        let key = row[0].trim_matches('`');
        let key = if key == "(empty)" { "" } else { key };
        let java_int: i32 = row[1].parse().unwrap();
        assert_eq!(murmur2(key.as_bytes()), java_int as u32, "{key}");
        assert_eq!(partition_for_key(key.as_bytes(), 6).to_string(), row[2]);
        assert_eq!(partition_for_key(key.as_bytes(), 100).to_string(), row[3]);
    }
}

#[test]
fn a_bare_value_wraps_into_the_same_bytes_the_encoder_writes() {
    for (value, timestamp) in [
        (&b""[..], producer_time(-1)),
        (&b"hello"[..], producer_time(1_765_000_000_000)),
        (
            &b"stamped"[..],
            Timestamp {
                unix_ms: 42,
                source: TimestampSource::Leader,
            },
        ),
    ] {
        let owned = RecordV1 {
            timestamp,
            ..bare(value)
        };
        let wrapped = encode_value_only(value, timestamp);
        assert_eq!(wrapped, encoded(&owned), "value {value:?}");
        let back = decode(&wrapped).unwrap();
        assert_eq!(back.value(), value);
        assert_eq!(back.timestamp(), timestamp);
        assert_eq!(back.key(), None);
        assert!(back.headers().is_empty());
        assert_eq!(&wrapped[..MIN_PAYLOAD_BYTES], &value_only_prefix(timestamp));
    }
}
