//! Codec tests: seeded random round trips for every message, and every error path
//! (truncation at every byte, oversized lengths, bad enum bytes, invalid UTF-8,
//! counts larger than the frame).

use super::*;
use crate::types::{GroupId, NodeId, Offset, RecordKind, Term};

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
    /// The default target a third of the time, else a random topic partition.
    fn target(&mut self) -> TopicPartition {
        if self.below(3) == 0 {
            TopicPartition::default_topic()
        } else {
            TopicPartition::new(self.string(12), self.u32_edge())
        }
    }
    fn group(&mut self) -> GroupId {
        GroupId(if self.below(3) == 0 {
            0
        } else {
            self.u64_edge()
        })
    }
    fn node_ids(&mut self, max: u64) -> Vec<NodeId> {
        (0..self.below(max + 1))
            .map(|_| NodeId(self.u64_edge()))
            .collect()
    }
    fn partition_info(&mut self) -> PartitionInfo {
        PartitionInfo {
            partition: self.u32_edge(),
            group: self.group(),
            leader: NodeId(self.u64_edge()),
            replicas: self.node_ids(5),
        }
    }
    /// Settings; the settings-v2 fields only when `v2` (version 0 cannot carry
    /// them).
    fn settings(&mut self, v2: bool) -> TopicSettings {
        let mut s = TopicSettings {
            partitions: self.u32_edge(),
            replication: self.next() as u8,
            retention_bytes: self.u64_edge(),
            retention_age_ms: self.u64_edge(),
            max_record_bytes: self.u32_edge(),
            segment_bytes: self.u64_edge(),
            ..TopicSettings::default()
        };
        if v2 {
            s.timestamp_type = self.below(2) as u8;
            s.cleanup_policy = self.below(2) as u8;
            s.tombstone_retention_ms = self.u64_edge();
        }
        s
    }
    fn description(&mut self, v2: bool) -> TopicDescription {
        TopicDescription {
            name: self.string(12),
            topic_id: self.u64_edge(),
            settings: self.settings(v2),
            partitions: (0..self.below(4)).map(|_| self.partition_info()).collect(),
            settings_v2: v2,
        }
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        (self.below(2) == 0).then(|| f(self))
    }
    fn fetched(&mut self) -> FetchedPartition {
        FetchedPartition {
            target: self.target(),
            error: self.maybe(random_error),
            high_watermark: Offset(self.u64_edge()),
            records: (0..self.below(3)).map(|_| self.record()).collect(),
        }
    }
    fn record_v1(&mut self) -> WireRecordV1 {
        WireRecordV1 {
            offset: Offset(self.u64_edge()),
            payload: self.bytes(40),
        }
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

/// Every (API, version) this codec speaks.
fn api_versions() -> Vec<(ApiKey, u16)> {
    ApiKey::ALL
        .iter()
        .flat_map(|api| (0..=api.max_version()).map(move |v| (*api, v)))
        .collect()
}

/// A random request of `api` in `version`: version 0 addresses the default topic
/// (group 1), version 1 a random one (sometimes the default).
fn random_request(rng: &mut Rng, api: ApiKey, version: u16) -> Request {
    let target = |rng: &mut Rng| {
        if version == 0 {
            TopicPartition::default_topic()
        } else {
            rng.target()
        }
    };
    let group = |rng: &mut Rng| {
        if version == 0 {
            GroupId::DEFAULT_PARTITION
        } else {
            rng.group()
        }
    };
    match api {
        ApiKey::ProduceBatch if version >= 2 => random_produce_batch_v2(rng),
        ApiKey::Consume if version >= 2 => Request::ConsumeV2 {
            target: rng.target(),
            offset: Offset(rng.u64_edge()),
        },
        ApiKey::Fetch if version >= 2 => Request::FetchV2 {
            max_wait_ms: rng.u32_edge(),
            max_bytes: rng.u32_edge(),
            partitions: (0..rng.below(4))
                .map(|_| FetchPartition {
                    target: rng.target(),
                    offset: Offset(rng.u64_edge()),
                    max_bytes: rng.u32_edge(),
                })
                .collect(),
        },
        ApiKey::Ping => Request::Ping,
        ApiKey::Produce => Request::Produce {
            target: target(rng),
            value: rng.bytes(64),
        },
        ApiKey::ProduceBatch => Request::ProduceBatch {
            target: target(rng),
            values: (0..rng.below(6)).map(|_| rng.bytes(20)).collect(),
        },
        ApiKey::Consume => Request::Consume {
            target: target(rng),
            offset: Offset(rng.u64_edge()),
        },
        ApiKey::Fetch if version >= 1 => Request::FetchPartitions {
            max_wait_ms: rng.u32_edge(),
            max_bytes: rng.u32_edge(),
            partitions: (0..rng.below(4))
                .map(|_| FetchPartition {
                    target: rng.target(),
                    offset: Offset(rng.u64_edge()),
                    max_bytes: rng.u32_edge(),
                })
                .collect(),
        },
        ApiKey::Fetch => Request::Fetch {
            offset: Offset(rng.u64_edge()),
            max_bytes: rng.u32_edge(),
            max_wait_ms: rng.u32_edge(),
        },
        ApiKey::GetServers => Request::GetServers,
        ApiKey::Status => Request::Status,
        ApiKey::InitProducer => Request::InitProducer {
            name: (rng.below(2) == 1).then(|| rng.string(12)),
        },
        ApiKey::Metadata => Request::Metadata {
            topics: (0..rng.below(4)).map(|_| rng.string(12)).collect(),
        },
        ApiKey::CreateTopic => Request::CreateTopic {
            name: rng.string(12),
            settings: rng.settings(version >= 1),
        },
        ApiKey::DeleteTopic => Request::DeleteTopic {
            name: rng.string(12),
        },
        ApiKey::DescribeTopic => Request::DescribeTopic {
            name: rng.string(12),
        },
        ApiKey::AlterTopic => Request::AlterTopic {
            name: rng.string(12),
            changes: TopicChanges {
                partitions: rng.maybe(|r| r.u32_edge()),
                retention_bytes: rng.maybe(|r| r.u64_edge()),
                retention_age_ms: rng.maybe(|r| r.u64_edge()),
                max_record_bytes: rng.maybe(|r| r.u32_edge()),
                timestamp_type: rng.maybe(|r| r.below(2) as u8).filter(|_| version >= 1),
                cleanup_policy: rng.maybe(|r| r.below(2) as u8).filter(|_| version >= 1),
                tombstone_retention_ms: rng.maybe(|r| r.u64_edge()).filter(|_| version >= 1),
            },
        },
        ApiKey::RaftMessage => Request::Raft {
            group: group(rng),
            payload: rng.bytes(64),
        },
        ApiKey::RaftBatch => Request::RaftBatch {
            messages: (0..rng.below(4))
                .map(|_| GroupMessage {
                    group: rng.group(),
                    payload: rng.bytes(30),
                })
                .collect(),
        },
        ApiKey::PeerHandshake => Request::PeerHandshake {
            cluster_name: rng.string(12),
            node_id: NodeId(rng.u64_edge()),
            node_name: rng.string(12),
        },
        ApiKey::ReadEntries => Request::ReadEntries {
            group: group(rng),
            from: Offset(rng.u64_edge()),
            end: Offset(rng.u64_edge()),
            anchor: Offset(rng.u64_edge()),
            max_bytes: rng.u32_edge(),
        },
        ApiKey::CommitOffset | ApiKey::FetchOffset | ApiKey::ListGroups | ApiKey::DeleteGroup => {
            Request::Group(random_group_request(rng, api))
        }
        ApiKey::ListOffsets => Request::ListOffsets {
            queries: (0..rng.below(4))
                .map(|_| crate::wire::OffsetQuery {
                    target: rng.target(),
                    spec: match rng.below(3) {
                        0 => crate::wire::OffsetSpec::Earliest,
                        1 => crate::wire::OffsetSpec::Latest,
                        _ => crate::wire::OffsetSpec::Time((rng.u64_edge() >> 1) as i64),
                    },
                })
                .collect(),
        },
    }
}

/// A ProduceBatch v2 (records are random bytes: the codec does not decode them),
/// half of them with a producer's batch meta counting its records.
fn random_produce_batch_v2(rng: &mut Rng) -> Request {
    use crate::replica::dedup::{BatchMeta, BatchSeq, ProducerEpoch, ProducerId};
    let with_meta = rng.below(2) == 0;
    let count = rng.below(5) + u64::from(with_meta);
    let records: Vec<Vec<u8>> = (0..count).map(|_| rng.bytes(30)).collect();
    let producer = with_meta.then(|| BatchMeta {
        producer: ProducerId(rng.u64_edge()),
        epoch: ProducerEpoch(rng.next() as u16),
        seq: BatchSeq::new(rng.u32_edge(), count as u32).expect("1..=5 records"),
    });
    Request::ProduceBatchV2 {
        target: rng.target(),
        producer,
        records,
    }
}

/// A request frame of `api` in `version`.
fn random_request_frame(rng: &mut Rng, api: ApiKey, version: u16) -> RequestFrame {
    let request = random_request(rng, api, version);
    let (lowest, highest) = request.versions();
    assert!((lowest..=highest).contains(&version), "{request:?}");
    RequestFrame {
        api_version: version,
        correlation_id: rng.next() as u32,
        request,
    }
}

fn random_body(rng: &mut Rng, api: ApiKey, version: u16) -> ResponseBody {
    match api {
        ApiKey::ProduceBatch if version >= 2 => ResponseBody::ProduceBatchV2 {
            first_offset: Offset(rng.u64_edge()),
            count: rng.u32_edge(),
            duplicate: rng.below(2) == 1,
        },
        ApiKey::Consume if version >= 2 => ResponseBody::ConsumeV2 {
            record: rng.record_v1(),
        },
        ApiKey::Fetch if version >= 2 => ResponseBody::FetchV2 {
            partitions: (0..rng.below(4))
                .map(|_| FetchedPartitionV2 {
                    target: rng.target(),
                    error: rng.maybe(random_error),
                    high_watermark: Offset(rng.u64_edge()),
                    records: (0..rng.below(3)).map(|_| rng.record_v1()).collect(),
                })
                .collect(),
        },
        ApiKey::ListOffsets => ResponseBody::ListOffsets {
            partitions: (0..rng.below(4))
                .map(|_| crate::wire::ListedOffset {
                    target: rng.target(),
                    error: rng.maybe(random_error),
                    offset: Offset(rng.u64_edge()),
                    timestamp: rng.u64_edge() as i64,
                })
                .collect(),
        },
        ApiKey::Fetch if version >= 1 => ResponseBody::FetchPartitions {
            partitions: (0..rng.below(4)).map(|_| rng.fetched()).collect(),
        },
        ApiKey::Metadata => ResponseBody::Metadata {
            nodes: (0..rng.below(4))
                .map(|_| NodeInfo {
                    id: NodeId(rng.u64_edge()),
                    name: rng.string(8),
                    rpc_addr: rng.string(16),
                })
                .collect(),
            topics: (0..rng.below(4))
                .map(|_| TopicMetadata {
                    name: rng.string(12),
                    error: ErrorCode::ALL[rng.below(ErrorCode::ALL.len() as u64) as usize],
                    partitions: (0..rng.below(3)).map(|_| rng.partition_info()).collect(),
                })
                .collect(),
        },
        ApiKey::CreateTopic => ResponseBody::CreateTopic(rng.description(version >= 1)),
        ApiKey::DeleteTopic => ResponseBody::DeleteTopic,
        ApiKey::DescribeTopic => ResponseBody::DescribeTopic(rng.description(version >= 1)),
        ApiKey::AlterTopic => ResponseBody::AlterTopic(rng.description(version >= 1)),
        ApiKey::RaftBatch => ResponseBody::RaftBatch,
        ApiKey::InitProducer => ResponseBody::InitProducer {
            producer_id: rng.u64_edge(),
            epoch: rng.u32_edge() as u16,
        },
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
        ApiKey::CommitOffset | ApiKey::FetchOffset | ApiKey::ListGroups | ApiKey::DeleteGroup => {
            ResponseBody::Group(random_group_response(rng, api))
        }
    }
}

fn random_group_request(rng: &mut Rng, api: ApiKey) -> GroupRequest {
    let group = rng.string(12);
    match api {
        ApiKey::CommitOffset => GroupRequest::CommitOffset {
            group,
            offsets: (0..rng.below(4))
                .map(|_| OffsetCommit {
                    target: rng.target(),
                    offset: rng.u64_edge(),
                    metadata: rng.bytes(20),
                })
                .collect(),
        },
        ApiKey::FetchOffset => GroupRequest::FetchOffset {
            group,
            partitions: (0..rng.below(4)).map(|_| rng.target()).collect(),
        },
        ApiKey::ListGroups => GroupRequest::ListGroups,
        _ => GroupRequest::DeleteGroup { group },
    }
}

fn random_group_response(rng: &mut Rng, api: ApiKey) -> GroupResponse {
    let code = |rng: &mut Rng| ErrorCode::ALL[rng.below(ErrorCode::ALL.len() as u64) as usize];
    match api {
        ApiKey::CommitOffset => GroupResponse::CommitOffset(
            (0..rng.below(4))
                .map(|_| CommitResult {
                    target: rng.target(),
                    error: code(rng),
                })
                .collect(),
        ),
        ApiKey::FetchOffset => GroupResponse::FetchOffset(
            (0..rng.below(4))
                .map(|_| FetchedCursor {
                    target: rng.target(),
                    offset: rng.u64_edge(),
                    metadata: rng.bytes(20),
                    error: code(rng),
                })
                .collect(),
        ),
        ApiKey::ListGroups => GroupResponse::ListGroups(
            (0..rng.below(4))
                .map(|_| GroupListing {
                    name: rng.string(12),
                    cursors: rng.u32_edge(),
                })
                .collect(),
        ),
        _ => GroupResponse::DeleteGroup,
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
    let apis = api_versions();
    for i in 0..3_000 {
        let (api, version) = apis[i % apis.len()];
        let frame = random_request_frame(&mut rng, api, version);
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
    let apis = api_versions();
    for i in 0..4_000 {
        let (api, version) = apis[i % apis.len()];
        let result = if rng.below(3) == 0 {
            Err(random_error(&mut rng))
        } else {
            Ok(random_body(&mut rng, api, version))
        };
        let frame = ResponseFrame {
            correlation_id: rng.next() as u32,
            result,
        };
        let bytes = enc_resp(&frame);
        assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        assert_eq!(
            decode_response_versioned(&bytes, api, version),
            Ok(frame.clone()),
            "seed 2 case {i}"
        );
        if version == 0 {
            assert_eq!(decode_response(&bytes, api), Ok(frame.clone()));
        }
        fuzzing::check_fetch_view_agrees(&bytes);
    }
}

#[test]
fn every_truncation_is_incomplete_or_malformed() {
    let mut rng = Rng(3);
    let apis = api_versions();
    for i in 0..300 {
        let (api, version) = apis[i % apis.len()];
        let req = enc_req(&RequestFrame {
            correlation_id: 7,
            ..random_request_frame(&mut rng, api, version)
        });
        let resp = enc_resp(&ResponseFrame {
            correlation_id: 7,
            result: if i % 4 == 0 {
                Err(random_error(&mut rng))
            } else {
                Ok(random_body(&mut rng, api, version))
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
                decode_response_versioned(&resp[..len], api, version),
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
                // v1 has the u64 group before the opaque payload.
                Ok(f)
                    if api == ApiKey::RaftMessage
                        && keep >= REQUEST_HEADER_BYTES + 8 * usize::from(version) =>
                {
                    assert_eq!(f.correlation_id, 7)
                }
                other => panic!("{api} cut to {keep}: {other:?}"),
            }
        }
        for keep in 0..resp.len() - 4 {
            let cut = with_payload_cut(&resp, keep);
            match decode_response_versioned(&cut, api, version) {
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
        Request::Consume {
            target: TopicPartition::default_topic(),
            offset: Offset(1),
        },
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
    for api in [31u16, 36, 47, 60, 99, u16::MAX] {
        assert_eq!(
            decode_request(&frame(api, 0)),
            Err(DecodeError::UnsupportedApi {
                correlation_id: 0xdead_beef,
                api_key: api
            })
        );
    }
    let err = decode_request(&frame(1, 2)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            correlation_id: 0xdead_beef,
            api_key: ApiKey::Produce,
            version: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "Produce version 2 is not supported; this server speaks versions 0..=1"
    );
    let err = decode_request(&frame(7, 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Metadata version 1 is not supported; this server speaks versions 0..=0"
    );
    let err = decode_request(&frame(99, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "api key 99 is not supported; this server speaks api keys 0-17, 32-35"
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
    bytes[kind_at] = 7;
    let reason = malformed_reason(decode_response(&bytes, ApiKey::Consume));
    assert!(reason.contains("kind 7"), "{reason}");

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
    let apis = api_versions();
    for i in 0..200 {
        let (api, version) = apis[i % apis.len()];
        fuzzing::check_frame_decoder(&enc_req(&random_request_frame(&mut rng, api, version)));
        fuzzing::check_frame_decoder(&enc_resp(&ResponseFrame {
            correlation_id: 1,
            result: Ok(random_body(&mut rng, api, version)),
        }));
        fuzzing::check_frame_decoder(&rng.bytes(40));
        fuzzing::check_text_decoder(&rng.bytes(40));
    }
    fuzzing::check_text_decoder(b"PRODUCE a\\x00b\r\n");
    fuzzing::check_text_decoder(b"consume 12\n");
    fuzzing::check_text_decoder(b"PRODUCE @orders/3 x\r\n");
    fuzzing::check_text_decoder(b"consume @o 1\n");
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

/// Version 0 keeps its bytes: a request for the default topic (group 1) is encoded as
/// version 0, exactly as before topics existed, and decodes back to that target.
#[test]
fn default_targets_keep_their_version_0_bytes() {
    let produce = RequestFrame::new(
        2,
        Request::Produce {
            target: TopicPartition::default_topic(),
            value: b"hello".to_vec(),
        },
    );
    assert_eq!(produce.api_version, 0);
    let by_name = |name: &str| SPEC_EXAMPLES.iter().find(|e| e.name == name).unwrap();
    assert_eq!(enc_req(&produce), by_name("produce").request);
    let read = RequestFrame::new(
        6,
        Request::ReadEntries {
            group: GroupId::DEFAULT_PARTITION,
            from: Offset(1),
            end: Offset(2),
            anchor: Offset(3),
            max_bytes: 1 << 20,
        },
    );
    assert_eq!(enc_req(&read), by_name("read-entries").request);
    let raft = RequestFrame::new(
        1,
        Request::Raft {
            group: GroupId::DEFAULT_PARTITION,
            payload: vec![9, 9],
        },
    );
    assert_eq!(enc_req(&raft), [0, 0, 0, 10, 0, 32, 0, 0, 0, 0, 0, 1, 9, 9]);
    // The same request sent as version 1 carries the default target explicitly.
    let v1 = RequestFrame {
        api_version: 1,
        ..produce
    };
    let bytes = enc_req(&v1);
    assert_eq!(&bytes[6..8], &[0, 1]);
    assert_eq!(&bytes[12..21], b"\x00\x07default");
    assert_eq!(decode_request(&bytes), Ok(v1));
}

/// A frame that says version 0 but names another topic (or group) cannot drop it:
/// it goes out as version 1. A version above what a request can be sent in is
/// clamped down to one that carries it.
#[test]
fn the_encoder_never_drops_a_target() {
    let orders = Request::Consume {
        target: TopicPartition::new("orders", 2),
        offset: Offset(5),
    };
    let frame = RequestFrame {
        api_version: 0,
        correlation_id: 3,
        request: orders.clone(),
    };
    assert_eq!(frame.wire_version(), 1);
    assert_eq!(RequestFrame::new(3, orders.clone()).api_version, 1);
    let decoded = decode_request(&enc_req(&frame)).unwrap();
    assert_eq!((decoded.api_version, decoded.request), (1, orders));
    let group = Request::Raft {
        group: GroupId(7),
        payload: vec![1],
    };
    let decoded = decode_request(&enc_req(&RequestFrame {
        api_version: 0,
        correlation_id: 4,
        request: group.clone(),
    }))
    .unwrap();
    assert_eq!((decoded.api_version, decoded.request), (1, group));
    let fetch_v0 = RequestFrame {
        api_version: 1,
        correlation_id: 5,
        request: Request::Fetch {
            offset: Offset(1),
            max_bytes: 2,
            max_wait_ms: 3,
        },
    };
    assert_eq!(fetch_v0.wire_version(), 0);
    let decoded = decode_request(&enc_req(&fetch_v0)).unwrap();
    assert_eq!(decoded.request, fetch_v0.request);
    let ping = RequestFrame {
        api_version: 9,
        correlation_id: 6,
        request: Request::Ping,
    };
    assert_eq!(decode_request(&enc_req(&ping)).unwrap().api_version, 0);
}

fn topic_frame(api: u16, version: u16, body: &[u8]) -> Vec<u8> {
    let mut frame = ((REQUEST_HEADER_BYTES + body.len()) as u32)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&api.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

#[test]
fn topic_names_are_bounded() {
    let produce = |topic: &str| {
        let mut body = string(topic);
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        decode_request(&topic_frame(1, 1, &body))
    };
    let longest = "t".repeat(MAX_TOPIC_NAME_BYTES);
    assert!(produce(&longest).is_ok());
    assert!(produce("").is_ok(), "the node, not the codec, checks names");
    let reason = malformed_reason(produce(&format!("{longest}t")));
    assert!(reason.contains("250 bytes"), "{reason}");
    for api in [8u16, 9, 10] {
        let mut body = string(&"x".repeat(300));
        body.resize(body.len() + 33, 0);
        assert!(malformed_reason(decode_request(&topic_frame(api, 0, &body))).contains("300"));
    }
    let bad_utf8 = [0, 2, 0xc3, 0x28, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(malformed_reason(decode_request(&topic_frame(3, 1, &bad_utf8))).contains("UTF-8"));
}

/// Counts above a request's fixed bound are refused even when the frame holds that
/// many elements; counts above what the frame can hold are refused before any
/// allocation (a 4-billion-element promise would abort the test binary otherwise).
#[test]
fn version_1_counts_are_bounded_before_allocating() {
    let count_body = |prefix: &[u8], count: u32, element: &[u8], n: usize| {
        let mut body = prefix.to_vec();
        body.extend_from_slice(&count.to_be_bytes());
        for _ in 0..n {
            body.extend_from_slice(element);
        }
        body
    };
    let fetch_entry = [0u8; 18];
    let fetch_prefix = [0u8; 8];
    let at_limit = count_body(&fetch_prefix, 1000, &fetch_entry, 1000);
    assert!(decode_request(&topic_frame(4, 1, &at_limit)).is_ok());
    let over = count_body(&fetch_prefix, 1001, &fetch_entry, 1001);
    let reason = malformed_reason(decode_request(&topic_frame(4, 1, &over)));
    assert!(
        reason.contains("1001") && reason.contains("1000"),
        "{reason}"
    );
    let huge = count_body(&fetch_prefix, u32::MAX, &fetch_entry, 1);
    malformed_reason(decode_request(&topic_frame(4, 1, &huge)));

    let over = count_body(&[], 1001, &[0, 0], 1001);
    assert!(malformed_reason(decode_request(&topic_frame(7, 0, &over))).contains("1001"));
    let over = count_body(&[], 16_385, &[0; 12], 16_385);
    assert!(malformed_reason(decode_request(&topic_frame(35, 0, &over))).contains("16385"));
    malformed_reason(decode_request(&topic_frame(
        35,
        0,
        &count_body(&[], u32::MAX, &[], 0),
    )));

    // Responses: counts checked against the frame.
    let response = |body: &[u8]| {
        let mut frame = ((RESPONSE_HEADER_BYTES + body.len()) as u32)
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        frame.extend_from_slice(body);
        frame
    };
    let nodes = count_body(&[], u32::MAX, &[], 0);
    malformed_reason(decode_response(&response(&nodes), ApiKey::Metadata));
    // name, topic_id, settings, one partition whose replica count is u32::MAX.
    let description = [
        &string("t")[..],
        &[0; 8 + 33],
        &1u32.to_be_bytes(),
        &[0; 20],
        &u32::MAX.to_be_bytes(),
    ]
    .concat();
    let reason = malformed_reason(decode_response(
        &response(&description),
        ApiKey::DescribeTopic,
    ));
    assert!(reason.contains("replica count"), "{reason}");
    let fetched = count_body(&[], u32::MAX, &[], 0);
    malformed_reason(decode_response_versioned(
        &response(&fetched),
        ApiKey::Fetch,
        1,
    ));
}

#[test]
fn alter_topic_flags_select_fields_and_unknown_bits_are_malformed() {
    let changes = TopicChanges {
        retention_bytes: Some(0),
        max_record_bytes: Some(7),
        ..TopicChanges::default()
    };
    assert_eq!(changes.flags(), 0x0a);
    let frame = RequestFrame::new(
        1,
        Request::AlterTopic {
            name: "t".into(),
            changes,
        },
    );
    let bytes = enc_req(&frame);
    // name, flags, u64 retention_bytes (0 clears it), u32 max_record_bytes.
    assert_eq!(&bytes[12..], b"\x00\x01t\x0a\0\0\0\0\0\0\0\0\0\0\0\x07");
    assert_eq!(decode_request(&bytes), Ok(frame));
    let mut bad = bytes.clone();
    bad[15] |= 0x10;
    assert!(malformed_reason(decode_request(&bad)).contains("flags"));
    // A flag whose field is missing.
    let mut short = bytes;
    short[15] |= TopicChanges::PARTITIONS;
    malformed_reason(decode_request(&short));
}

#[test]
fn fetch_partition_errors_are_typed() {
    let frame = ResponseFrame {
        correlation_id: 1,
        result: Ok(ResponseBody::FetchPartitions {
            partitions: vec![FetchedPartition {
                target: TopicPartition::new("t", 0),
                error: Some(ErrorBody::not_leader(NodeId(2), "127.0.0.2:8400")),
                high_watermark: Offset(0),
                records: vec![],
            }],
        }),
    };
    let bytes = enc_resp(&frame);
    assert_eq!(
        decode_response_versioned(&bytes, ApiKey::Fetch, 1),
        Ok(frame)
    );
    // The v0 decoder reads the same bytes as a v0 Fetch body and refuses them.
    assert!(decode_response(&bytes, ApiKey::Fetch).is_err());
    let code_at = 4 + RESPONSE_HEADER_BYTES + 4 + 3 + 4;
    let mut unknown = bytes.clone();
    unknown[code_at..code_at + 2].copy_from_slice(&300u16.to_be_bytes());
    let reason = malformed_reason(decode_response_versioned(&unknown, ApiKey::Fetch, 1));
    assert!(reason.contains("300"), "{reason}");
}

#[test]
fn fetch_partitions_writer_matches_the_generic_encoder() {
    let mut rng = Rng(6);
    for _ in 0..50 {
        let partitions: Vec<FetchedPartition> = (0..rng.below(4)).map(|_| rng.fetched()).collect();
        let generic = enc_resp(&ResponseFrame {
            correlation_id: 12,
            result: Ok(ResponseBody::FetchPartitions {
                partitions: partitions.clone(),
            }),
        });
        let mut out = b"before".to_vec();
        let mut w = FetchPartitionsWriter::begin(&mut out, 12);
        for p in &partitions {
            let mut records = w.partition(&p.target, p.error.as_ref(), p.high_watermark);
            for r in &p.records {
                records.push(r.offset, r.term, r.kind, &r.value);
            }
            assert_eq!(records.count() as usize, p.records.len());
        }
        assert_eq!(w.count() as usize, partitions.len());
        assert_eq!(w.frame_bytes(), generic.len());
        w.finish();
        assert_eq!(&out[6..], &generic[..]);
    }
}

#[test]
fn requests_name_the_topics_they_touch() {
    let fetch = Request::FetchPartitions {
        max_wait_ms: 0,
        max_bytes: 0,
        partitions: ["a", "b", "a"]
            .iter()
            .map(|t| FetchPartition {
                target: TopicPartition::new(*t, 0),
                offset: Offset(0),
                max_bytes: 0,
            })
            .collect(),
    };
    assert_eq!(fetch.topics(), ["a", "b"]);
    let produce = Request::Produce {
        target: TopicPartition::new("orders", 3),
        value: vec![],
    };
    assert_eq!(produce.topics(), ["orders"]);
    let fetch_v0 = Request::Fetch {
        offset: Offset(0),
        max_bytes: 0,
        max_wait_ms: 0,
    };
    assert_eq!(fetch_v0.topics(), [DEFAULT_TOPIC]);
    let alter = Request::AlterTopic {
        name: "x".into(),
        changes: TopicChanges::default(),
    };
    assert_eq!(alter.topics(), ["x"]);
    assert!(Request::Metadata { topics: vec![] }.topics().is_empty());
    assert!(Request::Status.topics().is_empty());
    assert!(Request::RaftBatch { messages: vec![] }.topics().is_empty());
}

/// The fuzz target `frame_decoder` bounds a decode's heap use by 12 × the frame
/// length (`FACTOR`): every decoded element must fit 12 × its smallest encoding (an
/// empty topic name, 2 bytes, becomes a 24-byte `String`).
#[test]
fn decoded_elements_fit_the_fuzz_allocation_factor() {
    use super::topics::{
        MIN_FETCHED_PARTITION_BYTES, MIN_FETCH_PARTITION_BYTES, MIN_GROUP_MESSAGE_BYTES,
        MIN_NODE_BYTES, MIN_PARTITION_INFO_BYTES, MIN_TOPIC_METADATA_BYTES,
    };
    use std::mem::size_of;
    const FACTOR: usize = 12;
    let fits = |size: usize, min_bytes: usize, what: &str| {
        assert!(
            size <= FACTOR * min_bytes,
            "{what}: {size} > {FACTOR} × {min_bytes}"
        );
    };
    fits(size_of::<String>(), 2, "Metadata topic");
    fits(
        size_of::<FetchPartition>(),
        MIN_FETCH_PARTITION_BYTES,
        "FetchPartition",
    );
    fits(
        size_of::<FetchedPartition>(),
        MIN_FETCHED_PARTITION_BYTES,
        "FetchedPartition",
    );
    fits(size_of::<NodeInfo>(), MIN_NODE_BYTES, "NodeInfo");
    fits(
        size_of::<TopicMetadata>(),
        MIN_TOPIC_METADATA_BYTES,
        "TopicMetadata",
    );
    fits(
        size_of::<PartitionInfo>(),
        MIN_PARTITION_INFO_BYTES,
        "PartitionInfo",
    );
    fits(size_of::<NodeId>(), 8, "replica");
    fits(
        size_of::<GroupMessage>(),
        MIN_GROUP_MESSAGE_BYTES,
        "GroupMessage",
    );
    fits(size_of::<WireRecord>(), RECORD_HEADER_BYTES, "WireRecord");
}

#[test]
fn fetch_max_bytes_is_read_in_place_in_both_versions() {
    let v0 = enc_req(&RequestFrame::new(
        1,
        Request::Fetch {
            offset: Offset(9),
            max_bytes: 12_345,
            max_wait_ms: 7,
        },
    ));
    assert_eq!(peek_fetch_max_bytes(&v0), Some(12_345));
    let v1 = enc_req(&RequestFrame::new(
        2,
        Request::FetchPartitions {
            max_wait_ms: 7,
            max_bytes: 54_321,
            partitions: vec![],
        },
    ));
    assert_eq!(peek_fetch_max_bytes(&v1), Some(54_321));
    assert_eq!(peek_fetch_max_bytes(&v1[..19]), None);
    let ping = enc_req(&RequestFrame::new(3, Request::Ping));
    assert_eq!(peek_fetch_max_bytes(&ping), None);
    // Version 2 has the version-1 request layout.
    let v2 = enc_req(&RequestFrame::new(
        4,
        Request::FetchV2 {
            max_wait_ms: 7,
            max_bytes: 65_432,
            partitions: vec![],
        },
    ));
    assert_eq!(peek_fetch_max_bytes(&v2), Some(65_432));
    let mut v3 = v1.clone();
    v3[7] = 3;
    assert_eq!(peek_fetch_max_bytes(&v3), None);
}

/// The borrowing Fetch v1 decoder sees what the owned one sees, hands out values
/// from the frame, and refuses what it refuses.
#[test]
fn fetch_partitions_view_matches_the_owned_decoder() {
    let mut rng = Rng(7);
    for _ in 0..50 {
        let partitions: Vec<FetchedPartition> = (0..rng.below(4)).map(|_| rng.fetched()).collect();
        let frame = enc_resp(&ResponseFrame {
            correlation_id: 13,
            result: Ok(ResponseBody::FetchPartitions {
                partitions: partitions.clone(),
            }),
        });
        let view = decode_fetch_partitions_response(&frame).unwrap();
        assert_eq!(view.correlation_id, 13);
        let got = view.result.unwrap();
        assert_eq!(got.len(), partitions.len());
        let frame_range = frame.as_ptr_range();
        for (view, want) in got.into_iter().zip(&partitions) {
            assert_eq!(view.target, want.target);
            match (view.result, &want.error) {
                (Err(body), Some(error)) => assert_eq!(&body, error),
                (Ok(body), None) => {
                    assert_eq!(body.high_watermark, want.high_watermark);
                    let records: Vec<WireRecord> = body
                        .records
                        .inspect(|r| {
                            assert!(frame_range.contains(&r.value.as_ptr()) || r.value.is_empty())
                        })
                        .map(|r| r.to_owned())
                        .collect();
                    assert_eq!(records, want.records);
                }
                (result, error) => panic!("{result:?} for {error:?}"),
            }
        }
        // Every shorter body is refused by both decoders.
        for keep in [frame.len() - 5, RESPONSE_HEADER_BYTES + 2] {
            let cut = with_payload_cut(&frame, keep);
            let owned = decode_response_versioned(&cut, ApiKey::Fetch, 1);
            assert_eq!(
                decode_fetch_partitions_response(&cut).is_ok(),
                owned.is_ok(),
                "{owned:?}"
            );
        }
    }
    let error = enc_resp(&ResponseFrame {
        correlation_id: 5,
        result: Err(ErrorBody::new(ErrorCode::Unavailable, "no quorum")),
    });
    let view = decode_fetch_partitions_response(&error).unwrap();
    assert_eq!(view.result.unwrap_err().code, ErrorCode::Unavailable);
}
