//! Misbehaving clients only hurt themselves: each gets a clear error (where possible)
//! and its own connection closed, while a well-behaved client keeps being served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{self, ApiKey, ErrorCode, Request, RequestFrame};
use common::{read_to_close, Server};

/// The error code of a binary error frame.
fn error_code_of(frame: &[u8]) -> ErrorCode {
    let response = wire::decode_response(frame, ApiKey::Ping).expect("an error frame");
    response.result.expect_err("an error").code
}

fn assert_healthy(server: &Server) {
    let mut client = server.client();
    client.ping().unwrap();
    let at = client.produce(b"still here").unwrap();
    assert_eq!(client.consume(at).unwrap().value, b"still here");
}

#[test]
fn garbage_after_a_binary_start_gets_malformed_and_a_close() {
    let server = Server::start(&[]);
    let mut tcp = server.tcp();
    // A 5-byte payload cannot hold the 8-byte request header.
    tcp.write_all(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff")
        .unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed, "the connection is closed");
    assert_eq!(error_code_of(&bytes), ErrorCode::Malformed);
    assert_healthy(&server);
}

#[test]
fn unknown_first_byte_gets_an_error_line_and_a_close() {
    let server = Server::start(&[]);
    let mut tcp = server.tcp();
    tcp.write_all(&[0xff, 0xfe, 0x00, 0x01]).unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed);
    assert!(
        bytes.starts_with(b"-ERR MALFORMED "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_healthy(&server);
}

#[test]
fn oversized_frame_gets_frame_too_large_and_a_close() {
    let server = Server::start(&["--max-frame-bytes", "64KiB"]);
    let mut tcp = server.tcp();
    // Header of a 1 MiB Produce (api 1, version 0, correlation id 77), then some bytes.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(1u32 << 20).to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0, 0]);
    frame.extend_from_slice(&77u32.to_be_bytes());
    frame.extend_from_slice(&[b'x'; 1000]);
    tcp.write_all(&frame).unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed);
    let response = wire::decode_response(&bytes, ApiKey::Produce).unwrap();
    // wire-spec.md: the payload is not read, so the answer carries correlation id 0.
    assert_eq!(response.correlation_id, 0);
    assert_eq!(response.result.unwrap_err().code, ErrorCode::FrameTooLarge);
    // Through the client library the same is a typed error.
    let mut client = server.client();
    let err = client.produce(&vec![b'y'; 100 * 1024]).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::FrameTooLarge));
    assert_healthy(&server);
}

#[test]
fn half_a_frame_then_disconnect_leaves_the_server_healthy() {
    let server = Server::start(&[]);
    for _ in 0..5 {
        let mut tcp = server.tcp();
        let mut frame = Vec::new();
        wire::encode_request(
            &RequestFrame::new(
                1,
                Request::Produce {
                    target: commitlog::wire::TopicPartition::default_topic(),
                    value: vec![b'z'; 100],
                },
            ),
            &mut frame,
        );
        tcp.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(tcp);
    }
    assert_healthy(&server);
    // Nothing of the half frames was written.
    let mut client = server.client();
    assert_eq!(client.consume(Offset(0)).unwrap().value, b"still here");
}

#[test]
fn a_client_that_never_reads_is_throttled_and_dropped_while_others_are_served() {
    let server = Server::start(&[
        "--max-conn-buffer-bytes",
        "256KiB",
        "--idle-timeout-ms",
        "1000",
    ]);
    let mut client = server.client();
    let big = vec![b'b'; 128 * 1024];
    let at = client.produce(&big).unwrap();
    // The bad client asks for the big record 2,000 times (250 MiB of answers) and
    // never reads them.
    let mut hog = server.tcp();
    let mut requests = Vec::new();
    for i in 0..2000u32 {
        wire::encode_request(
            &RequestFrame::new(
                i,
                Request::Consume {
                    target: commitlog::wire::TopicPartition::default_topic(),
                    offset: at,
                },
            ),
            &mut requests,
        );
    }
    hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server stops reading from the hog, so this write may not complete: that is
    // the backpressure we want. Ignore the timeout.
    let _ = hog.write_all(&requests);
    // Meanwhile another client is served normally, many times over (a new
    // connection: the first one may have idled out while the hog was writing).
    let mut client = server.client();
    let started = Instant::now();
    for i in 0..50 {
        client.ping().unwrap();
        let offset = client.produce(format!("ok-{i}").as_bytes()).unwrap();
        assert_eq!(
            client.consume(offset).unwrap().value,
            format!("ok-{i}").as_bytes()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Still not reading, the hog is closed for making no progress: its writes then
    // fail with a reset (bounded: 15 s).
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let closed = loop {
        match hog.write_all(&requests[..64]) {
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                break true
            }
            _ if Instant::now() >= deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(
        closed,
        "the stalled connection is closed by the idle timeout"
    );
    // It received far less than it asked for.
    let (bytes, _) = read_to_close(&mut hog, Duration::from_secs(5));
    assert!(
        bytes.len() < 2000 * big.len(),
        "the server buffered without bound"
    );
    assert_healthy(&server);
}

#[test]
fn connections_over_the_limit_get_too_many_connections() {
    let server = Server::start(&["--max-connections", "2"]);
    let mut first = server.client();
    let mut second = server.client();
    first.ping().unwrap();
    second.ping().unwrap();
    let mut third = Client::connect(server.addr, Duration::from_secs(10)).unwrap();
    let err = third.ping().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManyConnections), "{err}");
    // A text client over the limit gets an error line.
    let mut tcp = server.tcp();
    tcp.write_all(b"PING\r\n").unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed);
    assert!(
        bytes.starts_with(b"-ERR TOO_MANY_CONNECTIONS "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    // The admitted clients are unaffected; once one leaves, a new one gets in.
    first.ping().unwrap();
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(server.addr, Duration::from_secs(10)).unwrap();
        match c.ping() {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::TooManyConnections), "{e}");
                assert!(Instant::now() < deadline, "slot never freed");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn idle_and_slowloris_connections_are_closed() {
    let server = Server::start(&["--idle-timeout-ms", "300"]);
    let started = Instant::now();
    // Idle: connects and says nothing.
    let mut idle = server.tcp();
    // Slowloris: drips a frame one byte at a time, never completing it.
    let mut slow = server.tcp();
    // A 256-byte frame is announced, then dripped: it never completes.
    slow.write_all(&[0x00, 0x00, 0x01, 0x00]).unwrap();
    let drip = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded: at most 100 bytes and 10 s.
        for _ in 0..100 {
            if Instant::now() >= deadline || slow.write_all(b"a").is_err() {
                return true; // the server closed it
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let (_, closed) = read_to_close(&mut idle, Duration::from_secs(10));
    assert!(closed, "idle connection closed");
    assert!(drip.join().unwrap(), "slowloris connection closed");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A connection that keeps completing requests is not idle.
    let mut client = server.client();
    for _ in 0..8 {
        client.ping().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    client.ping().unwrap();
    // And a long-poll longer than the idle timeout is not cut off.
    let fetched = client.fetch(Offset(0), 1024, 800).unwrap();
    assert!(fetched.records.is_empty());
    client.ping().unwrap();
    let _ = TcpStream::connect(server.addr).unwrap();
}
