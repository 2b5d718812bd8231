//! Codec tests: seeded random round trips for every message, and every error path
//! (truncation at every byte, oversized lengths, bad enum bytes, invalid UTF-8,
//! counts larger than the frame).

use super::*;
use crate::types::{NodeId, Offset, RecordKind, Term};

/// splitmix64: a small deterministic PRNG, so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u64_edge(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => u64::MAX,
            _ => self.next(),
        }
    }
    fn u32_edge(&mut self) -> u32 {
        self.u64_edge() as u32
    }
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn string(&mut self, max_chars: u64) -> String {
        const CHARS: &[char] = &['a', 'z', '0', ':', '.', ' ', 'é', '日', '🦀', '\n'];
        let len = self.below(max_chars + 1);
        (0..len)
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect()
    }
    fn kind(&mut self) -> RecordKind {
        [RecordKind::Data, RecordKind::NoOp, RecordKind::Config][self.below(3) as usize]
    }
    fn role(&mut self) -> ServerRole {
        ServerRole::from_u8(self.below(4) as u8).unwrap()
    }
    fn record(&mut self) -> WireRecord {
        WireRecord {
            offset: Offset(self.u64_edge()),
            term: Term(self.u64_edge()),
            kind: self.kind(),
            value: self.bytes(40),
        }
    }
}

fn random_request(rng: &mut Rng, api: ApiKey) -> Request {
    match api {
        ApiKey::Ping => Request::Ping,
        ApiKey::Produce => Request::Produce {
            value: rng.bytes(64),
        },
        ApiKey::ProduceBatch => Request::ProduceBatch {
            values: (0..rng.below(6)).map(|_| rng.bytes(20)).collect(),
        },
        ApiKey::Consume => Request::Consume {
            offset: Offset(rng.u64_edge()),
        },
        ApiKey::Fetch => Request::Fetch {
            offset: Offset(rng.u64_edge()),
            max_bytes: rng.u32_edge(),
            max_wait_ms: rng.u32_edge(),
        },
        ApiKey::GetServers => Request::GetServers,
        ApiKey::Status => Request::Status,
        ApiKey::RaftMessage => Request::Raft {
            payload: rng.bytes(64),
        },
        ApiKey::PeerHandshake => Request::PeerHandshake {
            cluster_name: rng.string(12),
            node_id: NodeId(rng.u64_edge()),
            node_name: rng.string(12),
        },
        ApiKey::ReadEntries => Request::ReadEntries {
            from: Offset(rng.u64_edge()),
            end: Offset(rng.u64_edge()),
            anchor: Offset(rng.u64_edge()),
            max_bytes: rng.u32_edge(),
        },
    }
}

fn random_body(rng: &mut Rng, api: ApiKey) -> ResponseBody {
    match api {
        ApiKey::Ping => ResponseBody::Ping,
        ApiKey::Produce => ResponseBody::Produce {
            offset: Offset(rng.u64_edge()),
        },
        ApiKey::ProduceBatch => ResponseBody::ProduceBatch {
            first_offset: Offset(rng.u64_edge()),
            count: rng.u32_edge(),
        },
        ApiKey::Consume => ResponseBody::Consume {
            record: rng.record(),
        },
        ApiKey::Fetch => ResponseBody::Fetch {
            high_watermark: Offset(rng.u64_edge()),
            records: (0..rng.below(5)).map(|_| rng.record()).collect(),
        },
        ApiKey::GetServers => ResponseBody::GetServers {
            servers: (0..rng.below(4))
                .map(|_| ServerInfo {
                    id: NodeId(rng.u64_edge()),
                    name: rng.string(8),
                    rpc_addr: rng.string(16),
                    role: rng.role(),
                    live: rng.below(2) == 1,
                })
                .collect(),
        },
        ApiKey::Status => ResponseBody::Status(StatusInfo {
            node_name: rng.string(8),
            role: rng.role(),
            term: Term(rng.u64_edge()),
            commit_index: Offset(rng.u64_edge()),
            last_index: Offset(rng.u64_edge()),
            first_index: Offset(rng.u64_edge()),
        }),
        ApiKey::RaftMessage => ResponseBody::Raft {
            payload: rng.bytes(64),
        },
        ApiKey::PeerHandshake => ResponseBody::PeerHandshake,
        ApiKey::ReadEntries => ResponseBody::ReadEntries {
            anchor_term: Term(rng.u64_edge()),
            commit_index: Offset(rng.u64_edge()),
            records: (0..rng.below(5)).map(|_| rng.record()).collect(),
        },
    }
}

fn random_error(rng: &mut Rng) -> ErrorBody {
    let code = ErrorCode::ALL[1 + rng.below(ErrorCode::ALL.len() as u64 - 1) as usize];
    let mut err = ErrorBody::new(code, rng.string(30));
    if code == ErrorCode::NotLeader && rng.below(2) == 0 {
        err.leader_hint = Some(LeaderHint {
            leader_id: NodeId(rng.u64_edge()),
            addr: rng.string(16),
        });
    }
    err
}

fn enc_req(frame: &RequestFrame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(frame, &mut out);
    out
}

fn enc_resp(frame: &ResponseFrame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(frame, &mut out);
    out
}

/// A copy of `frame` cut to `keep` payload bytes, with the length prefix fixed up, so
/// the decoder sees a complete frame whose body is short.
fn with_payload_cut(frame: &[u8], keep: usize) -> Vec<u8> {
    let mut cut = (keep as u32).to_be_bytes().to_vec();
    cut.extend_from_slice(&frame[4..4 + keep]);
    cut
}

#[test]
fn random_requests_round_trip() {
    let mut rng = Rng(1);
    for i in 0..2_000 {
        let api = ApiKey::ALL[i % ApiKey::ALL.len()];
        let frame = RequestFrame::new(rng.next() as u32, random_request(&mut rng, api));
        let bytes = enc_req(&frame);
        assert_eq!(bytes.len(), request_frame_len(&frame), "{frame:?}");
        assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        assert_eq!(decode_request(&bytes), Ok(frame.clone()), "seed 1 case {i}");
        // Appending to a non-empty buffer writes the same bytes after what is there.
        let mut out = b"xyz".to_vec();
        encode_request(&frame, &mut out);
        assert_eq!(&out[3..], &bytes[..]);
    }
}

#[test]
fn random_responses_round_trip() {
    let mut rng = Rng(2);
    for i in 0..3_000 {
        let api = ApiKey::ALL[i % ApiKey::ALL.len()];
        let result = if rng.below(3) == 0 {
            Err(random_error(&mut rng))
        } else {
            Ok(random_body(&mut rng, api))
        };
        let frame = ResponseFrame {
            correlation_id: rng.next() as u32,
            result,
        };
        let bytes = enc_resp(&frame);
        assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        assert_eq!(
            decode_response(&bytes, api),
            Ok(frame.clone()),
            "seed 2 case {i}"
        );
        fuzzing::check_fetch_view_agrees(&bytes);
    }
}

#[test]
fn every_truncation_is_incomplete_or_malformed() {
    let mut rng = Rng(3);
    for i in 0..200 {
        let api = ApiKey::ALL[i % ApiKey::ALL.len()];
        let req = enc_req(&RequestFrame::new(7, random_request(&mut rng, api)));
        let resp = enc_resp(&ResponseFrame {
            correlation_id: 7,
            result: if i % 4 == 0 {
                Err(random_error(&mut rng))
            } else {
                Ok(random_body(&mut rng, api))
            },
        });
        for len in 0..req.len() {
            // The buffer ends early: wait for exactly the missing bytes.
            let needed = if len < 4 { 4 - len } else { req.len() - len };
            assert_eq!(
                decode_request(&req[..len]),
                Err(DecodeError::Incomplete { needed })
            );
            assert_eq!(frame_len(&req[..len], &Limits::default()), Ok(None));
        }
        for len in 0..resp.len() {
            assert!(matches!(
                decode_response(&resp[..len], api),
                Err(DecodeError::Incomplete { .. })
            ));
        }
        // A complete frame whose payload is cut short is malformed (opaque Raft
        // payloads excepted: any length is valid).
        for keep in 0..req.len() - 4 {
            let cut = with_payload_cut(&req, keep);
            match decode_request(&cut) {
                Err(DecodeError::Malformed { correlation_id, .. }) => {
                    assert_eq!(correlation_id.is_some(), keep >= REQUEST_HEADER_BYTES);
                }
                Ok(f) if api == ApiKey::RaftMessage && keep >= REQUEST_HEADER_BYTES => {
                    assert_eq!(f.correlation_id, 7)
                }
                other => panic!("{api} cut to {keep}: {other:?}"),
            }
        }
        for keep in 0..resp.len() - 4 {
            let cut = with_payload_cut(&resp, keep);
            match decode_response(&cut, api) {
                Err(DecodeError::Malformed { correlation_id, .. }) => {
                    assert_eq!(correlation_id.is_some(), keep >= RESPONSE_HEADER_BYTES);
                }
                Ok(f) if api == ApiKey::RaftMessage && keep >= RESPONSE_HEADER_BYTES => {
                    assert!(f.result.is_ok())
                }
                other => panic!("{api} response cut to {keep}: {other:?}"),
            }
        }
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut req = enc_req(&RequestFrame::new(
        9,
        Request::Consume { offset: Offset(1) },
    ));
    req.push(0);
    assert!(matches!(
        decode_request(&req),
        Err(DecodeError::Malformed {
            correlation_id: None,
            ..
        })
    ));
    // Inside the frame: an extra byte after the body.
    let fixed = with_payload_cut(&req, req.len() - 4);
    assert!(matches!(
        decode_request(&fixed),
        Err(DecodeError::Malformed {
            correlation_id: Some(9),
            ..
        })
    ));
}

#[test]
fn frame_len_enforces_limits() {
    let limits = Limits {
        max_frame_bytes: 100,
    };
    assert_eq!(frame_len(&[0, 0, 0], &limits), Ok(None));
    assert_eq!(frame_len(&[0, 0, 0, 100], &limits), Ok(None));
    let mut ok = vec![0, 0, 0, 100];
    ok.resize(104 + 10, 0);
    assert_eq!(frame_len(&ok, &limits), Ok(Some(104)));
    assert_eq!(
        frame_len(&[0, 0, 0, 101], &limits),
        Err(DecodeError::FrameTooLarge { len: 101, max: 100 })
    );
    // The hard cap applies whatever the configured limit; any first byte other than
    // 0x00 (TLS 0x16, an ASCII letter) is too large.
    let unlimited = Limits {
        max_frame_bytes: u32::MAX,
    };
    assert_eq!(unlimited.effective_max_frame_bytes(), MAX_FRAME_BYTES_CAP);
    assert_eq!(frame_len(&[0, 0xff, 0xff, 0xff], &unlimited), Ok(None));
    for first in [0x01, 0x16, b'P', 0xff] {
        assert!(matches!(
            frame_len(&[first, 0, 0, 0], &unlimited),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode_request(&[first, 0, 0, 0]),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }
    assert_eq!(Limits::default().max_frame_bytes, 8 * 1024 * 1024);
    assert_eq!(Protocol::detect(0), Protocol::Binary);
    assert_eq!(Protocol::detect(0x16), Protocol::Tls);
    assert_eq!(Protocol::detect(b'p'), Protocol::Text);
    assert_eq!(Protocol::detect(b'\r'), Protocol::Unknown);
}

#[test]
fn unknown_api_and_version_keep_the_correlation_id() {
    let frame = |api: u16, version: u16| {
        let mut f = vec![0, 0, 0, 8];
        f.extend_from_slice(&api.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        f
    };
    for api in [7u16, 31, 35, 47, 99, u16::MAX] {
        assert_eq!(
            decode_request(&frame(api, 0)),
            Err(DecodeError::UnsupportedApi {
                correlation_id: 0xdead_beef,
                api_key: api
            })
        );
    }
    let err = decode_request(&frame(1, 1)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            correlation_id: 0xdead_beef,
            api_key: ApiKey::Produce,
            version: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "Produce version 1 is not supported; this server speaks versions 0..=0"
    );
    for api in ApiKey::ALL {
        assert_eq!(ApiKey::from_u16(api.as_u16()), Some(api));
        assert_eq!(api.is_peer_api(), api.as_u16() >= 32);
    }
}

fn malformed_reason(result: Result<impl std::fmt::Debug, DecodeError>) -> String {
    match result {
        Err(DecodeError::Malformed { reason, .. }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn bad_enum_bytes_are_malformed() {
    let record = WireRecord {
        offset: Offset(1),
        term: Term(1),
        kind: RecordKind::Data,
        value: b"v".to_vec(),
    };
    let mut bytes = enc_resp(&ResponseFrame {
        correlation_id: 1,
        result: Ok(ResponseBody::Consume { record }),
    });
    let kind_at = 4 + RESPONSE_HEADER_BYTES + 16;
    assert_eq!(bytes[kind_at], 0);
    bytes[kind_at] = 3;
    let reason = malformed_reason(decode_response(&bytes, ApiKey::Consume));
    assert!(reason.contains("kind 3"), "{reason}");

    let server = ServerInfo {
        id: NodeId(1),
        name: String::new(),
        rpc_addr: String::new(),
        role: ServerRole::Leader,
        live: true,
    };
    let bytes = enc_resp(&ResponseFrame {
        correlation_id: 1,
        result: Ok(ResponseBody::GetServers {
            servers: vec![server],
        }),
    });
    let (role_at, live_at) = (bytes.len() - 2, bytes.len() - 1);
    let mut bad_role = bytes.clone();
    bad_role[role_at] = 4;
    assert!(malformed_reason(decode_response(&bad_role, ApiKey::GetServers)).contains("role"));
    let mut bad_live = bytes;
    bad_live[live_at] = 2;
    assert!(malformed_reason(decode_response(&bad_live, ApiKey::GetServers)).contains("live"));

    let mut unknown_code = enc_resp(&ResponseFrame {
        correlation_id: 1,
        result: Err(ErrorBody::new(ErrorCode::Internal, "x")),
    });
    unknown_code[8..10].copy_from_slice(&200u16.to_be_bytes());
    assert!(malformed_reason(decode_response(&unknown_code, ApiKey::Ping)).contains("200"));
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut bytes = enc_req(&RequestFrame::new(
        1,
        Request::PeerHandshake {
            cluster_name: "ab".into(),
            node_id: NodeId(1),
            node_name: "n".into(),
        },
    ));
    let name_at = 4 + REQUEST_HEADER_BYTES + 2;
    bytes[name_at] = 0xff;
    assert!(malformed_reason(decode_request(&bytes)).contains("UTF-8"));

    let mut bytes = enc_resp(&ResponseFrame {
        correlation_id: 1,
        result: Err(ErrorBody::new(ErrorCode::Timeout, "ab")),
    });
    let msg_at = 4 + RESPONSE_HEADER_BYTES + 2;
    bytes[msg_at..msg_at + 2].copy_from_slice(&[0xc3, 0x28]);
    assert!(malformed_reason(decode_response(&bytes, ApiKey::Produce)).contains("UTF-8"));
}

/// Counts that promise more elements than the frame could hold are rejected before
/// any `Vec::with_capacity` (a 4-billion-element promise in a 16-byte frame). Were
/// the count trusted, `Vec::with_capacity` would ask for ~100 GB and abort the whole
/// test binary, so passing here shows the check comes first.
#[test]
fn huge_counts_are_rejected_before_allocating() {
    let mut batch = vec![0, 0, 0, 16, 0, 2, 0, 0, 0, 0, 0, 1];
    batch.extend_from_slice(&u32::MAX.to_be_bytes());
    batch.extend_from_slice(&[0, 0, 0, 0]);
    let reason = malformed_reason(decode_request(&batch));
    assert!(reason.contains("4294967295"), "{reason}");

    let mut fetch = vec![0, 0, 0, 18, 0, 0, 0, 1, 0, 0];
    fetch.extend_from_slice(&7u64.to_be_bytes());
    fetch.extend_from_slice(&u32::MAX.to_be_bytes());
    malformed_reason(decode_response(&fetch, ApiKey::Fetch));

    let mut servers = vec![0, 0, 0, 10, 0, 0, 0, 1, 0, 0];
    servers.extend_from_slice(&1u32.to_be_bytes());
    malformed_reason(decode_response(&servers, ApiKey::GetServers));

    // A value length beyond the frame.
    let mut produce = vec![0, 0, 0, 12, 0, 1, 0, 0, 0, 0, 0, 1];
    produce.extend_from_slice(&u32::MAX.to_be_bytes());
    malformed_reason(decode_request(&produce));
}

#[test]
fn not_leader_hint_round_trips_and_defaults() {
    let with_hint = ErrorBody::not_leader(NodeId(3), "127.0.0.3:8400");
    assert!(with_hint.message.contains("127.0.0.3:8400"));
    let frame = ResponseFrame {
        correlation_id: 5,
        result: Err(with_hint),
    };
    assert_eq!(
        decode_response(&enc_resp(&frame), ApiKey::Produce),
        Ok(frame)
    );
    // A NOT_LEADER built without a hint is sent as "unknown" and decodes as such.
    let bare = ErrorBody {
        code: ErrorCode::NotLeader,
        message: "no".into(),
        leader_hint: None,
    };
    let decoded = decode_response(
        &enc_resp(&ResponseFrame {
            correlation_id: 5,
            result: Err(bare),
        }),
        ApiKey::Produce,
    )
    .unwrap();
    let hint = decoded.result.unwrap_err().leader_hint.unwrap();
    assert!(hint.is_unknown());
    // Other codes never carry a hint on the wire.
    let mut other = ErrorBody::new(ErrorCode::Unavailable, "x");
    other.leader_hint = Some(LeaderHint {
        leader_id: NodeId(1),
        addr: "a".into(),
    });
    let decoded = decode_response(
        &enc_resp(&ResponseFrame {
            correlation_id: 5,
            result: Err(other),
        }),
        ApiKey::Ping,
    )
    .unwrap();
    assert_eq!(decoded.result.unwrap_err().leader_hint, None);
}

#[test]
fn fetch_fast_paths_match_the_generic_encoder() {
    let mut rng = Rng(4);
    for _ in 0..50 {
        let records: Vec<WireRecord> = (0..rng.below(6)).map(|_| rng.record()).collect();
        let hw = Offset(rng.next());
        let generic = enc_resp(&ResponseFrame {
            correlation_id: 11,
            result: Ok(ResponseBody::Fetch {
                high_watermark: hw,
                records: records.clone(),
            }),
        });

        let mut streamed = b"previous".to_vec();
        let mut w = FetchResponseWriter::begin(&mut streamed, 11, hw);
        for r in &records {
            w.push(r.offset, r.term, r.kind, &r.value);
        }
        assert_eq!(w.count() as usize, records.len());
        assert_eq!(w.frame_bytes(), generic.len());
        w.finish();
        assert_eq!(&streamed[8..], &generic[..]);

        let refs: Vec<&WireRecord> = records.iter().collect();
        let mut borrowed = Vec::new();
        encode_fetch_response(11, hw, &refs, &mut borrowed);
        assert_eq!(borrowed, generic);

        let records_bytes: usize = records
            .iter()
            .map(|r| RECORD_HEADER_BYTES + r.value.len())
            .sum();
        let mut vectored =
            fetch_response_prefix(11, hw, records.len() as u32, records_bytes).to_vec();
        for r in &records {
            vectored.extend_from_slice(&record_header(
                r.offset,
                r.term,
                r.kind,
                r.value.len() as u32,
            ));
            vectored.extend_from_slice(&r.value);
        }
        assert_eq!(vectored, generic);
    }
}

#[test]
fn encoders_append_and_reuse_buffers() {
    let mut out = Vec::with_capacity(64);
    encode_request(&RequestFrame::new(1, Request::Ping), &mut out);
    encode_request(&RequestFrame::new(2, Request::Status), &mut out);
    let first = frame_len(&out, &Limits::default()).unwrap().unwrap();
    assert_eq!(first, 12);
    assert_eq!(decode_request(&out[..first]).unwrap().correlation_id, 1);
    assert_eq!(
        decode_request(&out[first..]).unwrap().request,
        Request::Status
    );
}

#[test]
fn the_shared_fuzz_checks_accept_valid_and_hostile_input() {
    let mut rng = Rng(5);
    for i in 0..100 {
        let api = ApiKey::ALL[i % ApiKey::ALL.len()];
        fuzzing::check_frame_decoder(&enc_req(&RequestFrame::new(
            1,
            random_request(&mut rng, api),
        )));
        fuzzing::check_frame_decoder(&enc_resp(&ResponseFrame {
            correlation_id: 1,
            result: Ok(random_body(&mut rng, api)),
        }));
        fuzzing::check_frame_decoder(&rng.bytes(40));
        fuzzing::check_text_decoder(&rng.bytes(40));
    }
    fuzzing::check_text_decoder(b"PRODUCE a\\x00b\r\n");
    fuzzing::check_text_decoder(b"consume 12\n");
}

#[test]
fn fetch_view_borrows_values_from_the_frame() {
    let records: Vec<WireRecord> = (0..3)
        .map(|i| WireRecord {
            offset: Offset(10 + 2 * i),
            term: Term(2),
            kind: RecordKind::Data,
            value: vec![i as u8; 5],
        })
        .collect();
    let mut frame = Vec::new();
    encode_fetch_response(9, Offset(16), &records, &mut frame);
    let view = decode_fetch_response(&frame).unwrap();
    assert_eq!(view.correlation_id, 9);
    let body = view.result.unwrap();
    assert_eq!(body.high_watermark, Offset(16));
    assert_eq!(body.records.len(), 3);
    let frame_range = frame.as_ptr_range();
    for (got, want) in body.records.zip(&records) {
        assert_eq!(got.to_owned(), *want);
        assert!(
            frame_range.contains(&got.value.as_ptr()),
            "value was copied"
        );
    }
    // Errors come through typed, like decode_response.
    let mut err = Vec::new();
    encode_response(
        &ResponseFrame {
            correlation_id: 4,
            result: Err(ErrorBody::offset_out_of_range(
                Offset(9),
                Offset(0),
                Offset(3),
            )),
        },
        &mut err,
    );
    let view = decode_fetch_response(&err).unwrap();
    assert_eq!(view.result.unwrap_err().code, ErrorCode::OffsetOutOfRange);
    assert!(matches!(
        decode_fetch_response(&frame[..frame.len() - 1]),
        Err(DecodeError::Incomplete { needed: 1 })
    ));
}
