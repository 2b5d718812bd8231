//! The I/O shell of [`ClusterClient`] against scripted fake servers on 127.0.0.1:
//! hint following, read fall-back to the leader, and the retry bounds (attempts and
//! time). The routing and back-off decisions themselves are tested without sockets
//! in `routing.rs` and `retry.rs`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::types::{NodeId, Term};
use crate::wire::{
    self, ErrorBody, LeaderHint, Request, ResponseBody, ResponseFrame, ServerInfo, ServerRole,
    WireRecord,
};

type Handler = dyn Fn(&Request) -> std::result::Result<ResponseBody, ErrorBody> + Send + Sync;

/// A scripted server: answers every request with `handler`, counts produces.
struct Fake {
    addr: String,
    produces: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn bind() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr").to_string();
        (l, a)
    }

    fn serve(listener: TcpListener, handler: Arc<Handler>) -> Fake {
        let addr = listener.local_addr().expect("addr").to_string();
        let produces = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&produces), Arc::clone(&stop));
        std::thread::spawn(move || {
            // Bounded: a test opens far fewer connections; Drop wakes and stops it.
            for stream in listener.incoming().take(64) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (h, p) = (Arc::clone(&handler), Arc::clone(&p));
                std::thread::spawn(move || serve_conn(stream, &*h, &p));
            }
        });
        Fake {
            addr,
            produces,
            stop,
        }
    }

    fn produces(&self) -> u32 {
        self.produces.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Answers frames until the client goes away (bounded by the client's lifetime and
/// a 10 s read timeout).
fn serve_conn(mut stream: TcpStream, handler: &Handler, produces: &AtomicU32) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut prefix = [0u8; 4];
    while stream.read_exact(&mut prefix).is_ok() {
        let len = u32::from_be_bytes(prefix) as usize;
        if len > 1 << 20 {
            return;
        }
        let mut frame = prefix.to_vec();
        frame.resize(4 + len, 0);
        if stream.read_exact(&mut frame[4..]).is_err() {
            return;
        }
        let Ok(request) = wire::decode_request(&frame) else {
            return;
        };
        if matches!(request.request, Request::Produce { .. }) {
            produces.fetch_add(1, Ordering::SeqCst);
        }
        let mut out = Vec::new();
        wire::encode_response(
            &ResponseFrame {
                correlation_id: request.correlation_id,
                result: handler(&request.request),
            },
            &mut out,
        );
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn server(id: u64, addr: &str, role: ServerRole) -> ServerInfo {
    ServerInfo {
        id: NodeId(id),
        name: format!("n{id}"),
        rpc_addr: addr.to_string(),
        role,
        live: true,
    }
}

fn error(code: ErrorCode, hint: Option<&str>) -> ErrorBody {
    ErrorBody {
        code,
        message: format!("scripted {code}"),
        leader_hint: hint.map(|a| LeaderHint {
            leader_id: NodeId(9),
            addr: a.to_string(),
        }),
    }
}

fn fast_policy(max_attempts: u32, max_total_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_total: Duration::from_millis(max_total_ms),
    }
}

fn config(seeds: &str, retry: RetryPolicy) -> ClusterConfig {
    ClusterConfig::new(seeds)
        .timeout(Duration::from_secs(5))
        .retry(retry)
}

#[test]
fn not_leader_hints_are_followed_and_remembered() {
    let (la, a) = Fake::bind();
    let (lb, b) = Fake::bind();
    // A believes it leads (stale) but refuses produces, naming B.
    let (a2, b2) = (a.clone(), b.clone());
    let fake_a = Fake::serve(
        la,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![
                    server(1, &a2, ServerRole::Leader),
                    server(2, &b2, ServerRole::Follower),
                ],
            }),
            _ => Err(error(ErrorCode::NotLeader, Some(&b2))),
        }),
    );
    let (a3, b3) = (a.clone(), b.clone());
    let fake_b = Fake::serve(
        lb,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![
                    server(1, &a3, ServerRole::Follower),
                    server(2, &b3, ServerRole::Leader),
                ],
            }),
            Request::Produce { .. } => Ok(ResponseBody::Produce { offset: Offset(42) }),
            _ => Err(error(ErrorCode::Internal, None)),
        }),
    );
    let mut client = ClusterClient::connect(config(&a, fast_policy(10, 5_000))).expect("connect");
    assert_eq!(client.leader(), Some(a.as_str()));
    assert_eq!(
        client.produce_via(b"x").expect("produce"),
        (b.clone(), Offset(42))
    );
    assert_eq!((fake_a.produces(), fake_b.produces()), (1, 1));
    assert_eq!(client.retries(), 1);
    // The next produce goes straight to B.
    assert_eq!(client.produce(b"y").expect("produce"), Offset(42));
    assert_eq!((fake_a.produces(), fake_b.produces()), (1, 2));
    assert_eq!(client.leader(), Some(b.as_str()));
}

#[test]
fn a_server_that_stays_unavailable_is_given_up_on_after_max_attempts() {
    let (l, a) = Fake::bind();
    let a2 = a.clone();
    let fake = Fake::serve(
        l,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Leader)],
            }),
            _ => Err(error(ErrorCode::Unavailable, None)),
        }),
    );
    let mut client = ClusterClient::connect(config(&a, fast_policy(5, 10_000))).expect("connect");
    let err = client.produce(b"x").expect_err("never available");
    assert_eq!(err.code(), Some(ErrorCode::Unavailable));
    assert!(
        err.to_string().contains("gave up after 5 attempts"),
        "{err}"
    );
    assert_eq!(fake.produces(), 5);
}

#[test]
fn retrying_stops_when_the_time_budget_is_spent() {
    let (l, a) = Fake::bind();
    let a2 = a.clone();
    let fake = Fake::serve(
        l,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Leader)],
            }),
            _ => Err(error(ErrorCode::Timeout, None)),
        }),
    );
    let policy = RetryPolicy {
        max_attempts: 1_000_000,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_total: Duration::from_millis(300),
    };
    let mut client = ClusterClient::connect(config(&a, policy)).expect("connect");
    let started = Instant::now();
    let err = client.produce(b"x").expect_err("always times out");
    assert_eq!(err.code(), Some(ErrorCode::Timeout));
    // Waits are at least 5 ms each, so a 300 ms budget allows at most ~60 attempts.
    let attempts = fake.produces();
    assert!((2..=70).contains(&attempts), "{attempts} attempts");
    // Generous bound: the point is that it ends, not how fast.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_hint_pointing_back_at_the_same_node_is_not_followed_forever() {
    let (l, a) = Fake::bind();
    let a2 = a.clone();
    let fake = Fake::serve(
        l,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Follower)],
            }),
            _ => Err(error(ErrorCode::NotLeader, Some(&a2))),
        }),
    );
    let mut client = ClusterClient::connect(config(&a, fast_policy(6, 5_000))).expect("connect");
    let err = client.produce(b"x").expect_err("no real leader");
    assert_eq!(err.code(), Some(ErrorCode::NotLeader));
    assert_eq!(fake.produces(), 6);
}

#[test]
fn permanent_errors_are_not_retried() {
    let (l, a) = Fake::bind();
    let a2 = a.clone();
    let fake = Fake::serve(
        l,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Leader)],
            }),
            _ => Err(error(ErrorCode::RecordTooLarge, None)),
        }),
    );
    let mut client = ClusterClient::connect(config(&a, fast_policy(10, 5_000))).expect("connect");
    let err = client.produce(b"x").expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::RecordTooLarge));
    assert_eq!(fake.produces(), 1);
    assert_eq!(client.retries(), 0);
}

#[test]
fn reads_go_to_the_follower_and_an_out_of_range_there_is_checked_with_the_leader() {
    let (lf, f) = Fake::bind();
    let (ll, l) = Fake::bind();
    let servers = vec![
        server(1, &l, ServerRole::Leader),
        server(2, &f, ServerRole::Follower),
    ];
    let s2 = servers.clone();
    // The follower lags: it has offset 5 only.
    let _follower = Fake::serve(
        lf,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: s2.clone(),
            }),
            Request::Consume { offset, .. } if offset.0 <= 5 => Ok(ResponseBody::Consume {
                record: WireRecord {
                    offset: Offset(5),
                    term: Term(1),
                    kind: crate::types::RecordKind::Data,
                    value: b"from-follower".to_vec(),
                },
            }),
            _ => Err(error(ErrorCode::OffsetOutOfRange, None)),
        }),
    );
    let _leader = Fake::serve(
        ll,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: servers.clone(),
            }),
            Request::Consume { offset, .. } if offset.0 <= 6 => Ok(ResponseBody::Consume {
                record: WireRecord {
                    offset: *offset,
                    term: Term(1),
                    kind: crate::types::RecordKind::Data,
                    value: b"from-leader".to_vec(),
                },
            }),
            _ => Err(error(ErrorCode::OffsetOutOfRange, None)),
        }),
    );
    let mut client = ClusterClient::connect(config(&f, fast_policy(10, 5_000))).expect("connect");
    assert_eq!(
        client.consume(Offset(5)).expect("consume").value,
        b"from-follower"
    );
    assert_eq!(
        client.consume(Offset(6)).expect("consume").value,
        b"from-leader"
    );
    // Out of range at the leader too: that answer is final.
    let err = client.consume(Offset(7)).expect_err("beyond the end");
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    assert_eq!(client.retries(), 2);
}

#[test]
fn the_per_target_hook_sees_every_address_dialled() {
    let (l, a) = Fake::bind();
    let a2 = a.clone();
    let _fake = Fake::serve(
        l,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Leader)],
            }),
            _ => Ok(ResponseBody::Produce { offset: Offset(1) }),
        }),
    );
    let dialled: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&dialled);
    let mut cfg = config(&a, fast_policy(3, 1_000));
    cfg.per_target = Some(PerTarget::new(move |addr, options| {
        seen.lock().expect("lock").push(addr.to_string());
        options.timeout = Duration::from_secs(3);
    }));
    let mut client = ClusterClient::connect(cfg).expect("connect");
    client.produce(b"x").expect("produce");
    let _own = client.leader_connection().expect("own connection");
    // Once for the cached connection, once for the dedicated one.
    assert_eq!(*dialled.lock().expect("lock"), vec![a.clone(), a]);
}

fn topic_metadata(leader: u64, replicas: &[u64], partitions: u32) -> crate::wire::TopicMetadata {
    crate::wire::TopicMetadata {
        name: "orders".into(),
        error: ErrorCode::None,
        partitions: (0..partitions)
            .map(|p| crate::wire::PartitionInfo {
                partition: p,
                group: crate::types::GroupId(2 + u64::from(p)),
                leader: NodeId(leader),
                replicas: replicas.iter().map(|r| NodeId(*r)).collect(),
            })
            .collect(),
    }
}

#[test]
fn admin_requests_follow_hints_to_the_metadata_leader() {
    let (la, a) = Fake::bind();
    let (lb, b) = Fake::bind();
    let (a2, b2) = (a.clone(), b.clone());
    // A leads the member list but not the metadata group: it names B.
    let _fake_a = Fake::serve(
        la,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![
                    server(1, &a2, ServerRole::Leader),
                    server(2, &b2, ServerRole::Follower),
                ],
            }),
            Request::CreateTopic { .. } => Err(error(ErrorCode::NotLeader, Some(&b2))),
            _ => Err(error(ErrorCode::Internal, None)),
        }),
    );
    let created = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&created);
    let _fake_b = Fake::serve(
        lb,
        Arc::new(move |r| match r {
            Request::CreateTopic { name, settings } => {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(ResponseBody::CreateTopic(crate::wire::TopicDescription {
                    name: name.clone(),
                    topic_id: 7,
                    settings: *settings,
                    partitions: vec![],
                    settings_v2: false,
                }))
            }
            Request::DeleteTopic { .. } => Ok(ResponseBody::DeleteTopic),
            _ => Err(error(ErrorCode::Internal, None)),
        }),
    );
    let mut c = ClusterClient::connect(config(&a, fast_policy(5, 2_000))).unwrap();
    let d = c
        .create_topic("orders", crate::wire::TopicSettings::default())
        .unwrap();
    assert_eq!(d.topic_id, 7);
    assert_eq!(c.last_served_by(), Some(b.as_str()));
    // The metadata leader is remembered: the next admin call goes straight to B.
    let retries = c.retries();
    c.delete_topic("orders").unwrap();
    assert_eq!(c.retries(), retries);
    assert_eq!(created.load(Ordering::SeqCst), 1);
}

#[test]
fn partition_produces_go_to_the_partition_leader_and_unknown_topics_are_asked_again_once() {
    let (la, a) = Fake::bind();
    let (lb, b) = Fake::bind();
    let (a2, b2) = (a.clone(), b.clone());
    let metadata_asked = Arc::new(AtomicU32::new(0));
    let asked = Arc::clone(&metadata_asked);
    // A answers Metadata: orders has 2 partitions led by node 2 (B).
    let _fake_a = Fake::serve(
        la,
        Arc::new(move |r| match r {
            Request::GetServers => Ok(ResponseBody::GetServers {
                servers: vec![server(1, &a2, ServerRole::Leader)],
            }),
            Request::Metadata { topics } if topics == &["orders".to_string()] => {
                asked.fetch_add(1, Ordering::SeqCst);
                Ok(ResponseBody::Metadata {
                    nodes: vec![
                        crate::wire::NodeInfo {
                            id: NodeId(1),
                            name: "n1".into(),
                            rpc_addr: a2.clone(),
                        },
                        crate::wire::NodeInfo {
                            id: NodeId(2),
                            name: "n2".into(),
                            rpc_addr: b2.clone(),
                        },
                    ],
                    topics: vec![topic_metadata(2, &[2, 1], 2)],
                })
            }
            _ => Err(error(ErrorCode::Internal, None)),
        }),
    );
    let fake_b = Fake::serve(
        lb,
        Arc::new(move |r| match r {
            Request::Produce { target, .. } if target.partition == 1 => {
                Ok(ResponseBody::Produce { offset: Offset(5) })
            }
            Request::Produce { .. } => Err(error(ErrorCode::UnknownTopic, None)),
            _ => Err(error(ErrorCode::Internal, None)),
        }),
    );
    let mut c = ClusterClient::connect(config(&a, fast_policy(10, 2_000))).unwrap();
    let one = crate::wire::TopicPartition::new("orders", 1);
    assert_eq!(c.produce_to(&one, b"x").unwrap(), Offset(5));
    assert_eq!(c.last_served_by(), Some(b.as_str()));
    assert_eq!(c.partition_count("orders").unwrap(), 2);
    assert_eq!(metadata_asked.load(Ordering::SeqCst), 1, "cached");
    // UNKNOWN_TOPIC from the partition's node: the metadata is asked once more, then
    // the error is believed.
    let zero = crate::wire::TopicPartition::new("orders", 0);
    let err = c.produce_to(&zero, b"x").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic), "{err}");
    assert_eq!(metadata_asked.load(Ordering::SeqCst), 2);
    assert_eq!(fake_b.produces(), 3);
}
