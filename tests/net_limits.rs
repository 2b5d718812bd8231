//! The node-wide limits of the network front end against real `commitlogd` processes:
//! a connection's slot is freed as soon as the client closes (even mid-frame), and the
//! bytes buffered for requests and responses stay within the memory budget however
//! clients misbehave (measured as the process's VmRSS and the
//! `commitlog_net_buffered_bytes` gauge).

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{self, ErrorCode, Request, RequestFrame};
use common::{Server, FIRST_OFFSET};

const MIB: u64 = 1 << 20;
/// RSS a node may add on top of its buffer budget: thread stacks, the storage read
/// buffers of the worker pool, the allocator's slack.
const RSS_MARGIN_BYTES: u64 = 96 * MIB;
const DEADLINE: Duration = Duration::from_secs(60);

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The resident set size of process `pid`, from /proc/PID/status.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// The plain samples (`name value`, no labels) of `/metrics`.
fn metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The `commitlog_net_buffered_bytes` gauge (`u64::MAX` while it is missing, so a
/// wait for it to fill goes on and a wait for it to empty does not end).
fn buffered_bytes(metrics_addr: SocketAddr) -> u64 {
    let m = metrics(metrics_addr);
    m.get("commitlog_net_buffered_bytes")
        .map_or(u64::MAX, |v| *v as u64)
}

/// Waits (bounded) until `f` holds; `what` names the condition in the failure.
fn await_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Produces about `total_bytes` of records in batches of 64 KiB values.
fn fill(server: &Server, total_bytes: u64) {
    let mut client = server.client();
    let value = vec![b'v'; 64 * 1024];
    let batch: Vec<&[u8]> = vec![&value; 16];
    for _ in 0..total_bytes.div_ceil(16 * 64 * 1024) {
        client.produce_batch(&batch).expect("produce batch");
    }
}

#[test]
fn partial_frames_then_close_free_their_slots_at_once() {
    let server = Server::start(&["--max-connections", "200"]);
    // A Produce header that promises 1000 bytes, then the client goes away.
    let mut partial = Vec::new();
    partial.extend_from_slice(&1000u32.to_be_bytes());
    partial.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 7, 0, 0]);
    for _ in 0..250 {
        let mut tcp = TcpStream::connect(server.addr).expect("connect");
        tcp.write_all(&partial).expect("write partial frame");
        drop(tcp);
    }
    // The idle timeout is 60 s: being served before the deadline means EOF freed
    // the slots.
    let end = Instant::now() + Duration::from_secs(30);
    let mut last_error = String::new();
    loop {
        assert!(
            Instant::now() < end,
            "a normal client was not served: {last_error}"
        );
        match Client::connect(server.addr, Duration::from_secs(5)).and_then(|mut c| c.ping()) {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::TooManyConnections), "{e}");
                last_error = e.to_string();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let mut client = server.client();
    assert_eq!(client.produce(b"after").unwrap(), Offset(FIRST_OFFSET));
}

#[test]
fn pipelined_fetches_never_read_stay_within_the_connection_share_and_are_freed() {
    let metrics_addr = free_addr();
    let server = Server::start(&["--metrics-addr", &metrics_addr.to_string()]);
    fill(&server, 10 * MIB);
    let base = rss_bytes(server.pid());

    // 200 × Fetch(offset 0, 4 MiB), never reading the answers.
    let mut tcp = server.tcp();
    let mut frames = Vec::new();
    for id in 0..200 {
        let fetch = Request::Fetch {
            offset: Offset(0),
            max_bytes: 4 << 20,
            max_wait_ms: 0,
        };
        wire::encode_request(&RequestFrame::new(id, fetch), &mut frames);
    }
    tcp.write_all(&frames).unwrap();

    // The connection may buffer 16 MiB (--max-conn-buffer-bytes); the node holds
    // that much, not 200 × 4 MiB.
    let bound = base + 16 * MIB + RSS_MARGIN_BYTES;
    await_until("the connection's share to fill", || {
        let rss = rss_bytes(server.pid());
        assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");
        let held = buffered_bytes(metrics_addr);
        held != u64::MAX && held >= 12 * MIB
    });
    // A second client is still served while the first one holds its share.
    server.client().ping().unwrap();
    let rss = rss_bytes(server.pid());
    assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");

    drop(tcp);
    await_until("the closed connection's bytes to be released", || {
        buffered_bytes(metrics_addr) == 0
    });
    let rss = rss_bytes(server.pid());
    assert!(rss <= bound, "after close: RSS {rss} over {bound}");
}

#[test]
fn pipelined_consumes_of_a_big_record_never_read_stay_within_the_connection_share() {
    let metrics_addr = free_addr();
    let server = Server::start(&["--metrics-addr", &metrics_addr.to_string()]);
    let mut client = server.client();
    let at = client.produce(&vec![b'c'; 4 << 20]).expect("produce 4 MiB");
    drop(client);
    let base = rss_bytes(server.pid());

    // 200 × Consume of that 4 MiB record, never reading the answers: a Consume
    // cannot be cut, so it must reserve the whole record before it starts.
    let mut tcp = server.tcp();
    let mut frames = Vec::new();
    for id in 0..200 {
        wire::encode_request(
            &RequestFrame::new(
                id,
                Request::Consume {
                    target: commitlog::wire::TopicPartition::default_topic(),
                    offset: at,
                },
            ),
            &mut frames,
        );
    }
    tcp.write_all(&frames).unwrap();
    let bound = base + 16 * MIB + RSS_MARGIN_BYTES;
    await_until("the connection's share to fill", || {
        let rss = rss_bytes(server.pid());
        assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");
        let held = buffered_bytes(metrics_addr);
        held != u64::MAX && held >= 8 * MIB
    });
    server.client().ping().unwrap();
    let rss = rss_bytes(server.pid());
    assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");
    drop(tcp);
    await_until("the closed connection's bytes to be released", || {
        buffered_bytes(metrics_addr) == 0
    });
}

/// Writes as much of `data[*sent..]` as the socket takes without blocking.
fn push_some(tcp: &mut TcpStream, data: &[u8], sent: &mut usize) -> bool {
    let mut progress = false;
    while *sent < data.len() {
        match tcp.write(&data[*sent..]) {
            Ok(n) => {
                *sent += n;
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    progress
}

#[test]
fn many_connections_holding_big_partial_frames_stay_within_the_node_budget() {
    let metrics_addr = free_addr();
    let server = Server::start(&[
        "--metrics-addr",
        &metrics_addr.to_string(),
        "--max-buffered-bytes",
        "64MiB",
    ]);
    let base = rss_bytes(server.pid());
    let budget = 64 * MIB;
    // Each of 100 connections sends an 8 MiB Produce frame minus its last byte.
    let frame_len: u32 = 8 << 20;
    let mut frame = Vec::with_capacity(frame_len as usize + 4);
    frame.extend_from_slice(&frame_len.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 9]);
    frame.extend_from_slice(&(frame_len - 12).to_be_bytes());
    frame.resize(frame_len as usize + 3, b'p');
    let mut conns: Vec<(TcpStream, usize)> = (0..100)
        .map(|_| {
            let tcp = TcpStream::connect(server.addr).expect("connect");
            tcp.set_nonblocking(true).unwrap();
            (tcp, 0)
        })
        .collect();
    // Each connection may hold one 64 KiB read chunk beyond the budget.
    let bound = base + budget + 100 * 64 * 1024 + RSS_MARGIN_BYTES;
    await_until("the node budget to fill up", || {
        for (tcp, sent) in conns.iter_mut() {
            push_some(tcp, &frame, sent);
        }
        let rss = rss_bytes(server.pid());
        assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");
        let held = buffered_bytes(metrics_addr);
        held != u64::MAX && held + 8 * MIB >= budget
    });
    let held = buffered_bytes(metrics_addr);
    assert!(
        held <= budget + 100 * 64 * 1024,
        "{held} buffered bytes over the budget"
    );
    // A well-behaved client is served from its own small share.
    let mut client = server.client();
    client.ping().unwrap();
    assert_eq!(client.produce(b"small").unwrap(), Offset(FIRST_OFFSET));
    drop(client);
    let rss = rss_bytes(server.pid());
    assert!(rss <= bound, "RSS {rss} over {bound} (base {base})");
    drop(conns);
    await_until("the closed connections' bytes to be released", || {
        buffered_bytes(metrics_addr) == 0
    });
}

#[test]
fn a_budget_smaller_than_one_frame_is_refused_at_start() {
    let dir = common::TempDir::new("budget");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--max-buffered-bytes", "1MiB", "--max-frame-bytes", "2MiB"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn commitlogd");
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("commitlogd kept running with a budget below one frame");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("--max-buffered-bytes"), "{stderr}");
}

/// One ProduceBatch of millions of empty values used to hold the writer for seconds
/// (everyone else's produces waited): a batch is capped at `MAX_BATCH_RECORDS`
/// values, one more is refused with nothing written, and the cap itself is accepted.
#[test]
fn a_batch_of_more_than_the_record_cap_is_refused_whole() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let empty: Vec<&[u8]> = vec![b"".as_slice(); wire::MAX_BATCH_RECORDS + 1];
    let err = client.produce_batch(&empty).expect_err("over the cap");
    assert_eq!(err.code(), Some(ErrorCode::RecordTooLarge), "{err}");
    assert!(err.to_string().contains("16384 records"), "{err}");
    let first = client
        .produce_batch(&empty[..wire::MAX_BATCH_RECORDS])
        .expect("a batch at the cap");
    assert_eq!(
        first,
        Offset(FIRST_OFFSET),
        "the refused batch wrote nothing"
    );
    let status = client.status().expect("status");
    assert_eq!(
        status.last_index,
        Offset(FIRST_OFFSET + wire::MAX_BATCH_RECORDS as u64 - 1)
    );
}

/// A peer's ReadEntries over empty records (no value bytes to stop at) is bounded by
/// its byte cap with record headers counted: it never collects the whole log.
#[test]
fn read_entries_of_empty_records_stay_within_the_byte_cap() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let empty: Vec<&[u8]> = vec![b"".as_slice(); wire::MAX_BATCH_RECORDS];
    client
        .produce_batch(&empty)
        .expect("a batch of empty records");
    let max_bytes = 4096u32;
    client
        .send(Request::ReadEntries {
            group: commitlog::types::GroupId::DEFAULT_PARTITION,
            from: Offset(1),
            end: Offset(u64::MAX),
            anchor: Offset(1),
            max_bytes,
        })
        .expect("send ReadEntries");
    let (_, answer) = client.recv().expect("answer");
    match answer.expect("records") {
        wire::ResponseBody::ReadEntries { records, .. } => {
            assert!(!records.is_empty());
            let bytes = records.len() * wire::RECORD_HEADER_BYTES;
            assert!(bytes <= max_bytes as usize, "{} records", records.len());
        }
        other => panic!("unexpected {other:?}"),
    }
}
