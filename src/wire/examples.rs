//! The byte-exact examples of `wire-spec.md`, as data.
//!
//! Each example is one request a person can paste into `printf … | nc` and the exact
//! bytes a fresh `commitlogd --dev` answers. They are meant to be sent **in order**,
//! each on its own connection, to one fresh server: `produce` writes `hello` at
//! offset 2 (offset 1 is the leader's no-op), which `consume` and `text-consume` read
//! back from offset 0 ("from the first retained offset"); `text-produce` writes
//! offset 3; `read-entries` (a peer request) reads offset 1 raw, the no-op (the data
//! records after it carry the leader's clock, so their raw bytes vary). A unit test parses the spec's example blocks and checks they equal this
//! table (so the document cannot drift), and checks that the codec produces these
//! bytes; a server integration test sends each request to a real server.

/// One request/response pair from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecExample {
    /// The name in the spec's `<!-- example: NAME -->` marker.
    pub name: &'static str,
    /// Bytes the client sends (a binary frame, or a text line).
    pub request: &'static [u8],
    /// Bytes the server answers.
    pub response: &'static [u8],
}

/// The examples of `wire-spec.md`, in the order they are run.
pub const SPEC_EXAMPLES: &[SpecExample] = &[
    SpecExample {
        name: "ping",
        request: b"\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01",
        response: b"\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00",
    },
    SpecExample {
        name: "produce",
        request: b"\x00\x00\x00\x11\x00\x01\x00\x00\x00\x00\x00\x02\x00\x00\x00\x05hello",
        response: b"\x00\x00\x00\x0e\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02",
    },
    SpecExample {
        name: "consume",
        request: b"\x00\x00\x00\x10\x00\x03\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00",
        response: b"\x00\x00\x00\x20\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x05hello",
    },
    SpecExample {
        name: "consume-out-of-range",
        request: b"\x00\x00\x00\x10\x00\x03\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x05",
        response: b"\x00\x00\x00\x36\x00\x00\x00\x04\x00\x01\x00\x2eoffset 5 is out of range: the log holds [1, 3)",
    },
    SpecExample {
        name: "unsupported-api",
        request: b"\x00\x00\x00\x08\x00\x63\x00\x00\x00\x00\x00\x05",
        response: b"\x00\x00\x00L\x00\x00\x00\x05\x00\x05\x00Dapi key 99 is not supported; this server speaks api keys 0-17, 32-35",
    },
    SpecExample {
        name: "text-ping",
        request: b"PING\r\n",
        response: b"+PONG\r\n",
    },
    SpecExample {
        name: "text-consume",
        request: b"CONSUME 0\r\n",
        response: b"+2 hello\r\n",
    },
    SpecExample {
        name: "text-produce",
        request: b"PRODUCE world\r\n",
        response: b"+OK 3\r\n",
    },
    SpecExample {
        name: "read-entries",
        request: b"\x00\x00\x00\x24\x00\x22\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x10\x00\x00",
        response: b"\x00\x00\x00\x2f\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00",
    },
];

/// The version-1 examples of `wire-spec.md` §11, in the spec's order. The codec
/// test checks every byte; they are not replayed against a server (a fresh `--dev`
/// server has no topic `orders`).
pub const V1_EXAMPLES: &[SpecExample] = &[
    SpecExample {
        name: "create-topic",
        request: b"\x00\x00\x00\x31\x00\x08\x00\x00\x00\x00\x00\x0a\x00\x06orders\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x24\x0c\x84\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        response: b"\x00\x00\x00\x7b\x00\x00\x00\x0a\x00\x00\x00\x06orders\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x24\x0c\x84\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
    },
    SpecExample {
        name: "produce-v1",
        request: b"\x00\x00\x00\x1d\x00\x01\x00\x01\x00\x00\x00\x07\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x05hello",
        response: b"\x00\x00\x00\x0e\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02",
    },
    SpecExample {
        name: "fetch-v1",
        request: b"\x00\x00\x00\x42\x00\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x04nope\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00",
        response: b"\x00\x00\x00s\x00\x00\x00\x08\x00\x00\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x05hello\x00\x04nope\x00\x00\x00\x00\x00\x10\x00\x1btopic `nope` does not exist\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    },
    SpecExample {
        name: "metadata",
        request: b"\x00\x00\x00\x14\x00\x07\x00\x00\x00\x00\x00\x09\x00\x00\x00\x01\x00\x06orders",
        response: b"\x00\x00\x00\x7c\x00\x00\x00\x09\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x06node-1\x00\x0e\x31\x32\x37\x2e\x30\x2e\x30\x2e\x31\x3a\x38\x34\x30\x30\x00\x00\x00\x01\x00\x06orders\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
    },
    SpecExample {
        name: "raft-batch",
        request: b"\x00\x00\x00\x29\x00\x23\x00\x00\x00\x00\x00\x0b\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03\x01\x02\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x02\x04\x05",
        response: b"\x00\x00\x00\x06\x00\x00\x00\x0b\x00\x00",
    },
    SpecExample {
        name: "list-offsets",
        request: b"\x00\x00\x00F\x00\x11\x00\x00\x00\x00\x00\x0c\x00\x00\x00\x03\x00\x06orders\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xfe\x00\x06orders\x00\x00\x00\x01\x00\x00\x01\xa2J\xcb\xcd\x00\x00\x04nope\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
        response: b"\x00\x00\x00\x7f\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x03\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x01\xa2J\xcb\xcd*\x00\x04nope\x00\x00\x00\x00\x00\x10\x00\x1btopic `nope` does not exist\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    },
    SpecExample {
        name: "alter-topic-v1",
        request: b"\x00\x00\x00\x19\x00\x0b\x00\x01\x00\x00\x00\x0c\x00\x05users\x60\x01\x00\x00\x00\x00\x05\x26\x5c\x00",
        response: b"\x00\x00\x00d\x00\x00\x00\x0c\x00\x00\x00\x05users\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x01\x00\x00\x00\x00\x05\x26\x5c\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
    },
];

/// The version-2 examples of `wire-spec.md` §14 (records v1), in the spec's order:
/// the codec test checks every byte and `tests/records_v1.rs` replays them, in
/// order, against a fresh server.
pub const V2_EXAMPLES: &[SpecExample] = &[
    SpecExample {
        name: "produce-batch-v2",
        request: b"\x00\x00\x00\x43\x00\x02\x00\x02\x00\x00\x00\x01\x00\x07\x64\x65\x66\x61\x75\x6c\x74\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x25\x01\x02\x00\x00\x01\xa2\x4a\xcb\xcd\x00\x00\x00\x00\x02\x6b\x31\x00\x01\x00\x05\x74\x72\x61\x63\x65\x00\x00\x00\x03\x61\x62\x63\x68\x65\x6c\x6c\x6f",
        response: b"\x00\x00\x00\x13\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00",
    },
    SpecExample {
        name: "consume-v2",
        request: b"\x00\x00\x00\x1d\x00\x03\x00\x02\x00\x00\x00\x02\x00\x07\x64\x65\x66\x61\x75\x6c\x74\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        response: b"\x00\x00\x00\x37\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x25\x01\x02\x00\x00\x01\xa2\x4a\xcb\xcd\x00\x00\x00\x00\x02\x6b\x31\x00\x01\x00\x05\x74\x72\x61\x63\x65\x00\x00\x00\x03\x61\x62\x63\x68\x65\x6c\x6c\x6f",
    },
    SpecExample {
        name: "fetch-v2",
        request: b"\x00\x00\x00\x2d\x00\x04\x00\x02\x00\x00\x00\x03\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x01\x00\x07\x64\x65\x66\x61\x75\x6c\x74\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x10\x00\x00",
        response: b"\x00\x00\x00\x56\x00\x00\x00\x03\x00\x00\x00\x00\x00\x01\x00\x07\x64\x65\x66\x61\x75\x6c\x74\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x25\x01\x02\x00\x00\x01\xa2\x4a\xcb\xcd\x00\x00\x00\x00\x02\x6b\x31\x00\x01\x00\x05\x74\x72\x61\x63\x65\x00\x00\x00\x03\x61\x62\x63\x68\x65\x6c\x6c\x6f",
    },
    SpecExample {
        name: "produce-batch-v2-invalid",
        request: b"\x00\x00\x00\x1f\x00\x02\x00\x02\x00\x00\x00\x04\x00\x07\x64\x65\x66\x61\x75\x6c\x74\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x02",
        response: b"\x00\x00\x00\xa4\x00\x00\x00\x04\x00\x19\x00\x9c\x72\x65\x63\x6f\x72\x64\x20\x30\x20\x6f\x66\x20\x74\x68\x65\x20\x62\x61\x74\x63\x68\x3a\x20\x72\x65\x63\x6f\x72\x64\x20\x66\x6f\x72\x6d\x61\x74\x20\x76\x65\x72\x73\x69\x6f\x6e\x20\x32\x20\x69\x73\x20\x6e\x6f\x74\x20\x6b\x6e\x6f\x77\x6e\x20\x68\x65\x72\x65\x20\x28\x74\x68\x69\x73\x20\x62\x75\x69\x6c\x64\x20\x72\x65\x61\x64\x73\x20\x76\x65\x72\x73\x69\x6f\x6e\x20\x31\x29\x3b\x20\x75\x70\x67\x72\x61\x64\x65\x20\x74\x68\x69\x73\x20\x6e\x6f\x64\x65\x20\x6f\x72\x20\x63\x6c\x69\x65\x6e\x74\x3b\x20\x6e\x6f\x74\x68\x69\x6e\x67\x20\x6f\x66\x20\x74\x68\x65\x20\x62\x61\x74\x63\x68\x20\x77\x61\x73\x20\x77\x72\x69\x74\x74\x65\x6e",
    },
];

/// The consumer group examples of `wire-spec.md` §16, in the spec's order (checked
/// byte for byte by `groups.rs`'s tests; not replayed against a server).
pub const CURSOR_EXAMPLES: &[SpecExample] = &[
    SpecExample {
        name: "commit-offset",
        request: b"\x00\x00\x00I\x00\x0d\x00\x00\x00\x00\x00\x14\x00\x07billing\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x2a\x00\x00\x00\x06host-a\x00\x04nope\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00",
        response: b"\x00\x00\x00\x24\x00\x00\x00\x14\x00\x00\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x00\x00\x00\x00\x04nope\x00\x00\x00\x00\x00\x10",
    },
    SpecExample {
        name: "fetch-offset",
        request: b"\x00\x00\x00-\x00\x0e\x00\x00\x00\x00\x00\x15\x00\x07billing\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x00\x00\x06orders\x00\x00\x00\x01",
        response: b"\x00\x00\x00D\x00\x00\x00\x15\x00\x00\x00\x00\x00\x02\x00\x06orders\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x2a\x00\x00\x00\x06host-a\x00\x00\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    },
    SpecExample {
        name: "list-groups",
        request: b"\x00\x00\x00\x08\x00\x0f\x00\x00\x00\x00\x00\x16",
        response: b"\x00\x00\x00\x17\x00\x00\x00\x16\x00\x00\x00\x00\x00\x01\x00\x07billing\x00\x00\x00\x01",
    },
    SpecExample {
        name: "delete-group",
        request: b"\x00\x00\x00\x11\x00\x10\x00\x00\x00\x00\x00\x17\x00\x07billing",
        response: b"\x00\x00\x00\x06\x00\x00\x00\x17\x00\x00",
    },
    SpecExample {
        name: "delete-group-invalid",
        request: b"\x00\x00\x00\x12\x00\x10\x00\x00\x00\x00\x00\x18\x00\x08bad\x20name",
        response: b"\x00\x00\x00b\x00\x00\x00\x18\x00\x18\x00Zinvalid\x20consumer\x20group\x20name\x20\x22bad\x20name\x22\x3a\x20only\x20letters\x2c\x20digits\x2c\x20\x27\x2e\x27\x2c\x20\x27\x5f\x27\x20and\x20\x27-\x27\x20are\x20allowed",
    },
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{GroupId, NodeId};
    use crate::types::{Offset, RecordKind, Term};
    use crate::wire::text::{format_response, parse_line, TextCommand};
    use crate::wire::{
        decode_request, decode_response_versioned, encode_request, encode_response, ApiKey,
        ErrorBody, ErrorCode, FetchPartition, FetchPartitionsWriter, FetchedPartition,
        GroupMessage, NodeInfo, PartitionInfo, Request, ResponseBody, ResponseFrame,
        TopicDescription, TopicMetadata, TopicPartition, TopicSettings, WireRecord,
    };

    const SPEC: &str = include_str!("../../wire-spec.md");

    /// Decodes the escapes `printf` understands in our examples.
    fn unprintf(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                match b[i + 1] {
                    b'x' => {
                        let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 4;
                    }
                    b'r' => {
                        out.push(b'\r');
                        i += 2;
                    }
                    b'n' => {
                        out.push(b'\n');
                        i += 2;
                    }
                    b'\\' => {
                        out.push(b'\\');
                        i += 2;
                    }
                    other => panic!("unsupported printf escape \\{}", other as char),
                }
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    /// Reads the hex columns of `xxd` output lines (`00000000: 0000 0006 …  ascii`).
    fn unxxd(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            let (addr, rest) = line.split_once(": ").expect("xxd line has an address");
            assert_eq!(
                usize::from_str_radix(addr, 16).unwrap(),
                n * 16,
                "xxd address of {line:?}"
            );
            let hex: String = rest[..rest.len().min(39)]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert_eq!(hex.len() % 2, 0, "{line:?}");
            for pair in hex.as_bytes().chunks(2) {
                let pair = std::str::from_utf8(pair).unwrap();
                out.push(u8::from_str_radix(pair, 16).unwrap());
            }
        }
        out
    }

    /// Every `<!-- {kind}: NAME -->` block: the printf request and the xxd response.
    fn examples_in_spec(kind: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let lines: Vec<&str> = SPEC.lines().collect();
        let marker = format!("<!-- {kind}: ");
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line
                .strip_prefix(marker.as_str())
                .and_then(|l| l.strip_suffix(" -->"))
            else {
                continue;
            };
            assert_eq!(lines[i + 1], "```sh", "example {name}: sh block first");
            let cmd = lines[i + 2];
            let quoted = cmd
                .strip_prefix("printf '")
                .and_then(|c| c.split_once('\''))
                .unwrap_or_else(|| panic!("example {name}: expected printf '...'"))
                .0;
            assert!(
                cmd.ends_with("| nc -q1 127.0.0.1 8400 | xxd"),
                "example {name}: {cmd}"
            );
            assert_eq!(lines[i + 3], "```");
            assert_eq!(lines[i + 4], "```text", "example {name}: text block second");
            let end = lines[i + 5..]
                .iter()
                .position(|l| *l == "```")
                .expect("closed block")
                + i
                + 5;
            let response = unxxd(&lines[i + 5..end]);
            found.push((name.to_string(), unprintf(quoted), response));
        }
        found
    }

    /// The lines of the ```text block right after `marker`.
    pub(crate) fn text_block_after(marker: &str) -> Vec<&'static str> {
        let lines: Vec<&'static str> = SPEC.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == marker)
            .unwrap_or_else(|| panic!("{marker} missing from wire-spec.md"));
        assert_eq!(lines[at + 1], "```text", "{marker}");
        let len = lines[at + 2..]
            .iter()
            .position(|l| *l == "```")
            .expect("closed block");
        lines[at + 2..at + 2 + len].to_vec()
    }

    #[test]
    fn spec_not_leader_layout_is_what_the_codec_writes() {
        let frame = ResponseFrame {
            correlation_id: 2,
            result: Err(ErrorBody {
                message: "not the leader".to_string(),
                ..ErrorBody::not_leader(crate::types::NodeId(3), "127.0.0.3:8400")
            }),
        };
        let bytes = unxxd(&text_block_after("<!-- layout: not-leader -->"));
        assert_eq!(bytes, encoded(frame.clone()));
        assert_eq!(
            crate::wire::decode_response(&bytes, ApiKey::Produce),
            Ok(frame)
        );
    }

    #[test]
    fn spec_init_producer_layout_is_what_the_codec_writes() {
        let request = crate::wire::RequestFrame {
            api_version: 0,
            correlation_id: 7,
            request: crate::wire::Request::InitProducer {
                name: Some("app".into()),
            },
        };
        let bytes = unxxd(&text_block_after("<!-- layout: init-producer-request -->"));
        let mut want = Vec::new();
        crate::wire::encode_request(&request, &mut want);
        assert_eq!(bytes, want);
        assert_eq!(crate::wire::decode_request(&bytes), Ok(request));
        let response = ResponseFrame {
            correlation_id: 7,
            result: Ok(crate::wire::ResponseBody::InitProducer {
                producer_id: 1,
                epoch: 0,
            }),
        };
        let bytes = unxxd(&text_block_after("<!-- layout: init-producer-response -->"));
        assert_eq!(bytes, encoded(response.clone()));
        assert_eq!(
            crate::wire::decode_response(&bytes, ApiKey::InitProducer),
            Ok(response)
        );
    }

    #[test]
    fn spec_help_text_is_the_help_reply() {
        let doc = text_block_after("<!-- help -->").join("\r\n") + "\r\n";
        assert_eq!(doc, crate::wire::text::HELP_TEXT);
    }

    #[test]
    fn spec_document_examples_equal_the_table() {
        for (kind, table) in [
            ("example", SPEC_EXAMPLES),
            ("v1-example", V1_EXAMPLES),
            ("cursor-example", CURSOR_EXAMPLES),
        ] {
            let in_spec = examples_in_spec(kind);
            let names: Vec<&str> = in_spec.iter().map(|e| e.0.as_str()).collect();
            let names_in_table: Vec<&str> = table.iter().map(|e| e.name).collect();
            assert_eq!(names, names_in_table, "same {kind}s, same order");
            for ((name, request, response), ex) in in_spec.iter().zip(table) {
                assert_eq!(request, ex.request, "request bytes of {name}");
                assert_eq!(response, ex.response, "response bytes of {name}");
            }
        }
    }

    /// §18: AlterTopic v1 with settings-v2 flags decodes to the described change, and
    /// the answer with settings v2 encodes to the spec's bytes.
    #[test]
    fn the_codec_produces_the_settings_v2_example() {
        let ex = V1_EXAMPLES
            .iter()
            .find(|e| e.name == "alter-topic-v1")
            .unwrap();
        let req = decode_request(ex.request).unwrap();
        assert_eq!(req.api_version, 1);
        let changes = crate::wire::TopicChanges {
            cleanup_policy: Some(1),
            tombstone_retention_ms: Some(86_400_000),
            ..crate::wire::TopicChanges::default()
        };
        assert_eq!(
            req.request,
            Request::AlterTopic {
                name: "users".into(),
                changes
            }
        );
        let mut again = Vec::new();
        encode_request(&req, &mut again);
        assert_eq!(again, ex.request);
        let users = TopicDescription {
            name: "users".into(),
            topic_id: 2,
            settings: TopicSettings {
                partitions: 1,
                max_record_bytes: 1 << 20,
                segment_bytes: 64 << 20,
                cleanup_policy: 1,
                tombstone_retention_ms: 86_400_000,
                ..TopicSettings::default()
            },
            partitions: vec![PartitionInfo {
                partition: 0,
                group: GroupId(3),
                leader: NodeId(1),
                replicas: vec![NodeId(1)],
            }],
            settings_v2: true,
        };
        let frame = ResponseFrame {
            correlation_id: 12,
            result: Ok(ResponseBody::AlterTopic(users)),
        };
        assert_eq!(encoded(frame.clone()), ex.response);
        assert_eq!(
            decode_response_versioned(ex.response, ApiKey::AlterTopic, 1),
            Ok(frame)
        );
        // The same bytes are malformed as version 0 (undefined flag bits).
        let mut v0 = ex.request.to_vec();
        v0[7] = 0;
        assert!(matches!(
            decode_request(&v0),
            Err(crate::wire::DecodeError::Malformed { .. })
        ));
    }

    /// The partitions of `orders` in the v1 examples.
    fn orders_partitions() -> Vec<PartitionInfo> {
        (0..2)
            .map(|p| PartitionInfo {
                partition: p,
                group: GroupId(u64::from(p) + 1),
                leader: NodeId(1),
                replicas: vec![NodeId(1)],
            })
            .collect()
    }

    /// The v1 table is what the codec reads and writes: each request decodes to the
    /// request described in the spec, and the described answer encodes to the bytes.
    #[test]
    fn the_codec_produces_the_v1_table() {
        let answer = |name: &str, result: Result<ResponseBody, ErrorBody>| {
            let ex = V1_EXAMPLES.iter().find(|e| e.name == name).unwrap();
            let req = decode_request(ex.request).unwrap();
            let mut again = Vec::new();
            encode_request(&req, &mut again);
            assert_eq!(again, ex.request, "{name} request re-encodes");
            let frame = ResponseFrame {
                correlation_id: req.correlation_id,
                result,
            };
            assert_eq!(encoded(frame.clone()), ex.response, "{name}");
            let api = req.request.api_key();
            assert_eq!(
                decode_response_versioned(ex.response, api, req.api_version),
                Ok(frame),
                "{name} response decodes"
            );
            (req.api_version, req.request)
        };
        let settings = TopicSettings {
            partitions: 2,
            retention_age_ms: 7 * 24 * 3600 * 1000,
            ..TopicSettings::default()
        };
        let orders = TopicDescription {
            name: "orders".into(),
            topic_id: 1,
            settings,
            partitions: orders_partitions(),
            settings_v2: false,
        };
        assert_eq!(
            answer("create-topic", Ok(ResponseBody::CreateTopic(orders))),
            (
                0,
                Request::CreateTopic {
                    name: "orders".into(),
                    settings
                }
            )
        );
        assert_eq!(
            answer(
                "produce-v1",
                Ok(ResponseBody::Produce { offset: Offset(2) })
            ),
            (
                1,
                Request::Produce {
                    target: TopicPartition::new("orders", 1),
                    value: b"hello".to_vec()
                }
            )
        );
        let fetched = vec![
            FetchedPartition {
                target: TopicPartition::new("orders", 1),
                error: None,
                high_watermark: Offset(3),
                records: vec![hello(2)],
            },
            FetchedPartition {
                target: TopicPartition::new("nope", 0),
                error: Some(ErrorBody::new(
                    ErrorCode::UnknownTopic,
                    "topic `nope` does not exist",
                )),
                high_watermark: Offset(0),
                records: vec![],
            },
        ];
        let asked = |topic: &str, partition| FetchPartition {
            target: TopicPartition::new(topic, partition),
            offset: Offset(0),
            max_bytes: 64 * 1024,
        };
        assert_eq!(
            answer(
                "fetch-v1",
                Ok(ResponseBody::FetchPartitions {
                    partitions: fetched.clone()
                })
            ),
            (
                1,
                Request::FetchPartitions {
                    max_wait_ms: 0,
                    max_bytes: 1 << 20,
                    partitions: vec![asked("orders", 1), asked("nope", 0)],
                }
            )
        );
        // The streaming writer writes the same answer.
        let ex = V1_EXAMPLES.iter().find(|e| e.name == "fetch-v1").unwrap();
        let mut streamed = Vec::new();
        let mut w = FetchPartitionsWriter::begin(&mut streamed, 8);
        for p in &fetched {
            let mut records = w.partition(&p.target, p.error.as_ref(), p.high_watermark);
            for r in &p.records {
                records.push(r.offset, r.term, r.kind, &r.value);
            }
        }
        w.finish();
        assert_eq!(streamed, ex.response);

        let node = NodeInfo {
            id: NodeId(1),
            name: "node-1".into(),
            rpc_addr: "127.0.0.1:8400".into(),
        };
        let topic = TopicMetadata {
            name: "orders".into(),
            error: ErrorCode::None,
            partitions: orders_partitions(),
        };
        assert_eq!(
            answer(
                "metadata",
                Ok(ResponseBody::Metadata {
                    nodes: vec![node],
                    topics: vec![topic]
                })
            ),
            (
                0,
                Request::Metadata {
                    topics: vec!["orders".into()]
                }
            )
        );
        let message = |group, payload: &[u8]| GroupMessage {
            group: GroupId(group),
            payload: payload.to_vec(),
        };
        assert_eq!(
            answer("raft-batch", Ok(ResponseBody::RaftBatch)),
            (
                0,
                Request::RaftBatch {
                    messages: vec![message(1, &[1, 2, 3]), message(2, &[4, 5])]
                }
            )
        );
    }

    fn encoded(frame: ResponseFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(&frame, &mut out);
        out
    }

    fn hello(offset: u64) -> WireRecord {
        WireRecord {
            offset: Offset(offset),
            term: Term(1),
            kind: RecordKind::Data,
            value: b"hello".to_vec(),
        }
    }

    /// The table is what the codec produces for the server's answers.
    #[test]
    fn the_codec_produces_the_table() {
        let by_name = |name: &str| SPEC_EXAMPLES.iter().find(|e| e.name == name).unwrap();
        let answer = |name: &str, result: Result<ResponseBody, ErrorBody>| {
            let ex = by_name(name);
            let req = decode_request(ex.request).unwrap();
            let resp = encoded(ResponseFrame {
                correlation_id: req.correlation_id,
                result,
            });
            assert_eq!(resp, ex.response, "{name}");
            req.request
        };
        assert_eq!(answer("ping", Ok(ResponseBody::Ping)), Request::Ping);
        assert_eq!(
            answer("produce", Ok(ResponseBody::Produce { offset: Offset(2) })),
            Request::Produce {
                target: TopicPartition::default_topic(),
                value: b"hello".to_vec()
            }
        );
        assert_eq!(
            answer("consume", Ok(ResponseBody::Consume { record: hello(2) })),
            Request::Consume {
                target: TopicPartition::default_topic(),
                offset: Offset(0)
            }
        );
        assert_eq!(
            answer(
                "consume-out-of-range",
                Err(ErrorBody::offset_out_of_range(
                    Offset(5),
                    Offset(1),
                    Offset(3)
                ))
            ),
            Request::Consume {
                target: TopicPartition::default_topic(),
                offset: Offset(5)
            }
        );

        let ex = by_name("unsupported-api");
        let err = decode_request(ex.request).unwrap_err();
        assert_eq!(encoded(err.error_response().unwrap()), ex.response);

        let text = |name: &str, result: Result<ResponseBody, ErrorBody>| {
            let ex = by_name(name);
            let mut out = Vec::new();
            format_response(&result, &mut out);
            assert_eq!(out, ex.response, "{name}");
            parse_line(ex.request).unwrap()
        };
        assert_eq!(
            text("text-ping", Ok(ResponseBody::Ping)),
            TextCommand::Request(Request::Ping)
        );
        assert_eq!(
            text(
                "text-consume",
                Ok(ResponseBody::Consume { record: hello(2) })
            ),
            TextCommand::Request(Request::Consume {
                target: TopicPartition::default_topic(),
                offset: Offset(0)
            })
        );
        assert_eq!(
            text(
                "text-produce",
                Ok(ResponseBody::Produce { offset: Offset(3) })
            ),
            TextCommand::Request(Request::Produce {
                target: TopicPartition::default_topic(),
                value: b"world".to_vec()
            })
        );
        let rec = |offset: u64, kind: RecordKind, value: &[u8]| WireRecord {
            offset: Offset(offset),
            term: Term(1),
            kind,
            value: value.to_vec(),
        };
        assert_eq!(
            answer(
                "read-entries",
                Ok(ResponseBody::ReadEntries {
                    anchor_term: Term(1),
                    commit_index: Offset(3),
                    records: vec![rec(1, RecordKind::NoOp, b"")],
                })
            ),
            Request::ReadEntries {
                group: crate::types::GroupId::DEFAULT_PARTITION,
                from: Offset(1),
                end: Offset(2),
                anchor: Offset(3),
                max_bytes: 1 << 20,
            }
        );
        // Every binary example answers the API it asked.
        for ex in SPEC_EXAMPLES.iter().filter(|e| e.request[0] == 0) {
            if let Ok(req) = decode_request(ex.request) {
                let api = req.request.api_key();
                assert!(ApiKey::ALL.contains(&api));
                crate::wire::decode_response(ex.response, api).unwrap();
            }
        }
    }

    /// §14: the document's version-2 examples are the table, and the codec reads
    /// the requests and writes the answers byte for byte.
    #[test]
    fn spec_v2_examples_are_the_table_and_what_the_codec_writes() {
        let in_spec = examples_in_spec("v2-example");
        let names: Vec<&str> = in_spec.iter().map(|e| e.0.as_str()).collect();
        let table: Vec<&str> = V2_EXAMPLES.iter().map(|e| e.name).collect();
        assert_eq!(names, table, "same v2 examples, same order");
        for ((name, request, response), ex) in in_spec.iter().zip(V2_EXAMPLES) {
            assert_eq!(request, ex.request, "request bytes of {name}");
            assert_eq!(response, ex.response, "response bytes of {name}");
        }
        let payload = crate::records::RecordV1 {
            timestamp: crate::records::Timestamp {
                unix_ms: 1_796_551_200_000,
                source: crate::records::TimestampSource::Producer,
            },
            key: Some(b"k1".to_vec()),
            headers: vec![crate::records::RecordHeaderV1 {
                name: "trace".into(),
                value: b"abc".to_vec(),
            }],
            value: b"hello".to_vec(),
        };
        let mut payload_bytes = Vec::new();
        payload.encode_into(&mut payload_bytes).unwrap();
        let default = TopicPartition::default_topic();
        let record = crate::wire::WireRecordV1 {
            offset: Offset(2),
            payload: payload_bytes.clone(),
        };
        let invalid = "record 0 of the batch: record format version 2 is not known here \
                       (this build reads version 1); upgrade this node or client; nothing \
                       of the batch was written";
        let cases: [(&str, Request, Result<ResponseBody, ErrorBody>); 4] = [
            (
                "produce-batch-v2",
                Request::ProduceBatchV2 {
                    target: default.clone(),
                    producer: None,
                    records: vec![payload_bytes.clone()],
                },
                Ok(ResponseBody::ProduceBatchV2 {
                    first_offset: Offset(2),
                    count: 1,
                    duplicate: false,
                }),
            ),
            (
                "consume-v2",
                Request::ConsumeV2 {
                    target: default.clone(),
                    offset: Offset(0),
                },
                Ok(ResponseBody::ConsumeV2 {
                    record: record.clone(),
                }),
            ),
            (
                "fetch-v2",
                Request::FetchV2 {
                    max_wait_ms: 0,
                    max_bytes: 1 << 20,
                    partitions: vec![FetchPartition {
                        target: default.clone(),
                        offset: Offset(2),
                        max_bytes: 1 << 20,
                    }],
                },
                Ok(ResponseBody::FetchV2 {
                    partitions: vec![crate::wire::FetchedPartitionV2 {
                        target: default.clone(),
                        error: None,
                        high_watermark: Offset(3),
                        records: vec![record],
                    }],
                }),
            ),
            (
                "produce-batch-v2-invalid",
                Request::ProduceBatchV2 {
                    target: default,
                    producer: None,
                    records: vec![vec![2]],
                },
                Err(ErrorBody::new(ErrorCode::InvalidRecord, invalid)),
            ),
        ];
        for (name, request, result) in cases {
            let ex = V2_EXAMPLES.iter().find(|e| e.name == name).unwrap();
            let req = decode_request(ex.request).unwrap();
            assert_eq!((req.api_version, &req.request), (2, &request), "{name}");
            let mut again = Vec::new();
            encode_request(&req, &mut again);
            assert_eq!(again, ex.request, "{name} request re-encodes");
            let frame = ResponseFrame {
                correlation_id: req.correlation_id,
                result,
            };
            assert_eq!(encoded(frame.clone()), ex.response, "{name} response");
            let api = request.api_key();
            assert_eq!(
                decode_response_versioned(ex.response, api, 2),
                Ok(frame),
                "{name} response decodes"
            );
        }
    }
}
