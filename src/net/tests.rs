//! In-process tests of the event loop with a scripted [`Service`]: ordering by
//! correlation id, the responder's drop guarantee, and graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{ConnContext, Responder, Server, ServerConfig, ServerHandle, Service};
use crate::types::{Offset, RecordKind, Term};
use crate::wire::{self, ApiKey, ErrorCode, Request, RequestFrame, ResponseBody};

/// Holds every Produce until a Ping arrives, then answers the Ping first and the
/// held Produces in reverse order. Consume requests are dropped unanswered.
#[derive(Default)]
struct Scripted {
    held: Mutex<Vec<Responder>>,
    shutdown_called: Mutex<bool>,
}

impl Service for Scripted {
    fn call(&self, request: RequestFrame, _ctx: &ConnContext, reply: Responder) {
        match request.request {
            Request::Produce { .. } => self.held.lock().unwrap().push(reply),
            Request::Ping => {
                reply.ok(ResponseBody::Ping);
                let held: Vec<Responder> = self.held.lock().unwrap().drain(..).collect();
                for (i, r) in held.into_iter().rev().enumerate() {
                    r.ok(ResponseBody::Produce {
                        offset: Offset(i as u64),
                    });
                }
            }
            Request::Consume { .. } => drop(reply),
            Request::Fetch { .. } => {
                // Ten 100 KiB records, pushed as a service pushes from storage.
                let value = vec![b'f'; 100 * 1024];
                let mut builder = reply.fetch_builder(10 * value.len());
                for i in 0..10 {
                    builder.push(Offset(i), Term(1), RecordKind::Data, &value);
                }
                reply.respond_fetch_built(Offset(10), builder);
            }
            _ => reply.error(ErrorCode::UnsupportedApi, "not scripted"),
        }
    }

    fn begin_shutdown(&self) {
        *self.shutdown_called.lock().unwrap() = true;
    }
}

fn start(service: Arc<Scripted>) -> (std::net::SocketAddr, ServerHandle, JoinHandle<()>) {
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        service,
    )
    .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    (addr, handle, thread)
}

fn send(stream: &mut TcpStream, correlation_id: u32, request: Request) {
    let mut out = Vec::new();
    wire::encode_request(&RequestFrame::new(correlation_id, request), &mut out);
    stream.write_all(&out).unwrap();
}

/// Reads one response frame; returns (correlation id, error code).
fn recv(stream: &mut TcpStream, api: ApiKey) -> (u32, Option<ErrorCode>) {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len < 1 << 20);
    let mut frame = prefix.to_vec();
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).unwrap();
    let response = wire::decode_response(&frame, api).unwrap();
    (
        response.correlation_id,
        response.result.err().map(|e| e.code),
    )
}

#[test]
fn responses_complete_out_of_order_and_carry_their_correlation_ids() {
    let service = Arc::new(Scripted::default());
    let (addr, handle, thread) = start(service.clone());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(
        &mut stream,
        10,
        Request::Produce {
            target: crate::wire::TopicPartition::default_topic(),
            value: b"a".to_vec(),
        },
    );
    send(
        &mut stream,
        11,
        Request::Produce {
            target: crate::wire::TopicPartition::default_topic(),
            value: b"b".to_vec(),
        },
    );
    send(&mut stream, 12, Request::Ping);
    // Requests of one connection start in order, so both produces are held when
    // the ping arrives; the answers come back ping first, then 11, then 10.
    assert_eq!(recv(&mut stream, ApiKey::Ping), (12, None));
    assert_eq!(recv(&mut stream, ApiKey::Produce), (11, None));
    assert_eq!(recv(&mut stream, ApiKey::Produce), (10, None));
    handle.shutdown();
    thread.join().unwrap();
    assert!(*service.shutdown_called.lock().unwrap());
}

#[test]
fn a_dropped_responder_answers_internal() {
    let (addr, handle, thread) = start(Arc::new(Scripted::default()));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(
        &mut stream,
        7,
        Request::Consume {
            target: crate::wire::TopicPartition::default_topic(),
            offset: Offset(0),
        },
    );
    assert_eq!(
        recv(&mut stream, ApiKey::Consume),
        (7, Some(ErrorCode::Internal))
    );
    // The connection stays usable.
    send(&mut stream, 8, Request::Ping);
    assert_eq!(recv(&mut stream, ApiKey::Ping), (8, None));
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn shutdown_waits_for_in_flight_requests_then_returns() {
    let service = Arc::new(Scripted::default());
    let (addr, handle, thread) = start(service.clone());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(
        &mut stream,
        1,
        Request::Produce {
            target: crate::wire::TopicPartition::default_topic(),
            value: b"x".to_vec(),
        },
    );
    send(&mut stream, 2, Request::Ping);
    assert_eq!(recv(&mut stream, ApiKey::Ping), (2, None));
    assert_eq!(recv(&mut stream, ApiKey::Produce), (1, None));
    send(
        &mut stream,
        3,
        Request::Produce {
            target: crate::wire::TopicPartition::default_topic(),
            value: b"y".to_vec(),
        },
    );
    // Wait until the produce is held (bounded), then shut down with it in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while service.held.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::yield_now();
    }
    handle.shutdown();
    // The loop keeps the connection until the held request is answered.
    let held: Vec<Responder> = service.held.lock().unwrap().drain(..).collect();
    for r in held {
        r.ok(ResponseBody::Produce { offset: Offset(9) });
    }
    assert_eq!(recv(&mut stream, ApiKey::Produce), (3, None));
    thread.join().unwrap();
    // After the drain the connection is closed.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

/// Reads one Fetch response frame; returns the offsets of its records.
fn recv_fetch_offsets(stream: &mut TcpStream) -> Vec<u64> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len < 4 << 20);
    let mut frame = prefix.to_vec();
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).unwrap();
    match wire::decode_response(&frame, ApiKey::Fetch).unwrap().result {
        Ok(ResponseBody::Fetch { records, .. }) => records.iter().map(|r| r.offset.0).collect(),
        other => panic!("not a Fetch answer: {other:?}"),
    }
}

#[test]
fn a_fetch_answer_is_cut_to_the_allowance_but_always_takes_its_first_record() {
    let (addr, handle, thread) = start(Arc::new(Scripted::default()));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fetch = |max_bytes| Request::Fetch {
        offset: Offset(0),
        max_bytes,
        max_wait_ms: 0,
    };
    // Room for two records and their headers, not three: a contiguous prefix.
    send(&mut stream, 1, fetch(250 * 1024));
    assert_eq!(recv_fetch_offsets(&mut stream), vec![0, 1]);
    // Less than one record: the first is taken anyway, so a consumer advances.
    send(&mut stream, 2, fetch(1));
    assert_eq!(recv_fetch_offsets(&mut stream), vec![0]);
    handle.shutdown();
    thread.join().unwrap();
}
