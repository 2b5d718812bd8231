//! A real `commitlogd` serving the client library, the text protocol and the
//! byte-exact examples of wire-spec.md.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use commitlog::client::ClientError;
use commitlog::types::Offset;
use commitlog::wire::{self, ErrorCode, ServerRole};
use common::{read_n, read_to_close, Server, FIRST_OFFSET};

#[test]
fn produce_then_consume_round_trips_records_at_their_offsets() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.ping().unwrap();
    let values: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    let mut offsets = Vec::new();
    for v in &values {
        offsets.push(client.produce(v).unwrap());
    }
    // Offsets are assigned in order, from 0, without gaps on a single node.
    assert_eq!(
        offsets,
        (FIRST_OFFSET..FIRST_OFFSET + 50)
            .map(Offset)
            .collect::<Vec<_>>()
    );
    for (offset, v) in offsets.iter().zip(&values) {
        let record = client.consume(*offset).unwrap();
        assert_eq!(record.offset, *offset);
        assert_eq!(&record.value, v);
    }
    // Binary values survive untouched.
    let binary: Vec<u8> = (0..=255u8).collect();
    let at = client.produce(&binary).unwrap();
    assert_eq!(client.consume(at).unwrap().value, binary);
}

#[test]
fn produce_batch_assigns_contiguous_offsets() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.produce(b"first").unwrap();
    let values: Vec<&[u8]> = vec![b"a", b"bb", b"ccc"];
    let first = client.produce_batch(&values).unwrap();
    let at = FIRST_OFFSET + 1;
    assert_eq!(first, Offset(at));
    let fetched = client.fetch(Offset(at), 1 << 20, 0).unwrap();
    assert_eq!(fetched.high_watermark, Offset(at + 3));
    let got: Vec<(u64, Vec<u8>)> = fetched
        .records
        .into_iter()
        .map(|r| (r.offset.0, r.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (at, b"a".to_vec()),
            (at + 1, b"bb".to_vec()),
            (at + 2, b"ccc".to_vec())
        ]
    );
}

#[test]
fn out_of_range_offsets_get_a_clear_error() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.produce(b"only").unwrap();
    match client.consume(Offset(7)) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::OffsetOutOfRange);
            assert_eq!(
                message,
                wire::offset_out_of_range_message(Offset(7), Offset(1), Offset(FIRST_OFFSET + 1))
            );
        }
        other => panic!("expected OFFSET_OUT_OF_RANGE, got {other:?}"),
    }
    let err = client.fetch(Offset(9), 1024, 0).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    // The connection is still usable after an error; offset 0 reads from the start.
    assert_eq!(client.consume(Offset(0)).unwrap().value, b"only");
    assert_eq!(
        client.consume(Offset(0)).unwrap().offset,
        Offset(FIRST_OFFSET)
    );
}

#[test]
fn fetch_long_poll_returns_early_when_data_arrives() {
    let server = Server::start(&[]);
    let mut producer = server.client();
    producer.produce(b"before").unwrap();
    let addr = server.addr;
    let waiter = std::thread::spawn(move || {
        let mut client = commitlog::client::Client::connect(addr, Duration::from_secs(10)).unwrap();
        let started = Instant::now();
        let fetched = client
            .fetch(Offset(FIRST_OFFSET + 1), 1 << 20, 10_000)
            .unwrap();
        (fetched, started.elapsed())
    });
    // Whether the fetch is parked before or after this produce, it must return it.
    producer.produce(b"after").unwrap();
    let (fetched, elapsed) = waiter.join().unwrap();
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].offset, Offset(FIRST_OFFSET + 1));
    assert_eq!(fetched.records[0].value, b"after");
    assert!(
        elapsed < Duration::from_secs(8),
        "fetch waited {elapsed:?} despite new data"
    );
}

#[test]
fn fetch_long_poll_returns_empty_after_max_wait() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.produce(b"x").unwrap();
    let started = Instant::now();
    let hw = FIRST_OFFSET + 1;
    let fetched = client.fetch(Offset(hw), 1 << 20, 300).unwrap();
    let elapsed = started.elapsed();
    assert!(fetched.records.is_empty());
    assert_eq!(fetched.high_watermark, Offset(hw));
    assert!(
        elapsed >= Duration::from_millis(300),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}"
    );
    // max_wait_ms = 0 answers at once.
    let fetched = client.fetch(Offset(hw), 1 << 20, 0).unwrap();
    assert!(fetched.records.is_empty());
}

#[test]
fn servers_and_status_describe_this_node() {
    let server = Server::start(&["--node-name", "alpha"]);
    let mut client = server.client();
    client.produce(b"a").unwrap();
    client.produce(b"b").unwrap();
    let servers = client.servers().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "alpha");
    assert_eq!(servers[0].rpc_addr, server.addr.to_string());
    assert_eq!(servers[0].role, ServerRole::Leader);
    assert!(servers[0].live);
    let status = client.status().unwrap();
    assert_eq!(status.node_name, "alpha");
    assert_eq!(status.role, ServerRole::Leader);
    // A single node is a one-voter cluster: the same Status meaning as on many
    // nodes (commit and last inclusive; the first entry is the leader's no-op).
    assert_eq!(status.term.0, 1);
    assert_eq!(status.commit_index, Offset(FIRST_OFFSET + 1));
    assert_eq!(status.first_index, Offset(1));
    assert_eq!(status.last_index, Offset(FIRST_OFFSET + 1));
}

#[test]
fn text_protocol_answers_one_line_per_command() {
    let server = Server::start(&[]);
    let mut tcp = server.tcp();
    tcp.write_all(
        b"PING\r\nPRODUCE hello world\r\nCONSUME 0\r\nCONSUME 9\r\nSERVERS\r\nNOPE\r\nQUIT\r\n",
    )
    .unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed, "QUIT closes the connection");
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "+PONG");
    assert_eq!(lines[1], format!("+OK {FIRST_OFFSET}"));
    assert_eq!(lines[2], format!("+{FIRST_OFFSET} hello world"));
    assert!(
        lines[3].starts_with("-ERR OFFSET_OUT_OF_RANGE "),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], format!("1 node-1 {} leader up", server.addr));
    assert_eq!(lines[5], "+END");
    assert!(
        lines[6].starts_with("-ERR UNSUPPORTED_API "),
        "{}",
        lines[6]
    );
}

#[test]
fn every_spec_example_gets_exactly_the_documented_bytes() {
    let server = Server::start(&[]);
    assert!(!wire::SPEC_EXAMPLES.is_empty());
    // The examples run in order against one fresh server, each on its own connection.
    for example in wire::SPEC_EXAMPLES {
        let mut tcp = server.tcp();
        tcp.write_all(example.request).unwrap();
        let got = read_n(&mut tcp, example.response.len());
        assert_eq!(
            got,
            example.response,
            "example {}: got {:?}, want {:?}",
            example.name,
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(example.response)
        );
        // Nothing more follows the documented answer.
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        let (rest, _) = read_to_close(&mut tcp, Duration::from_secs(5));
        assert!(
            rest.is_empty(),
            "example {}: extra bytes {rest:?}",
            example.name
        );
    }
}

#[test]
fn tls_handshake_gets_an_alert_and_a_close() {
    let server = Server::start(&[]);
    let mut tcp = server.tcp();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    assert!(closed);
    // A TLS alert record: content type 21, level fatal (2).
    assert_eq!(bytes.first(), Some(&0x15));
    assert_eq!(bytes.get(5), Some(&0x02));
}

#[test]
fn an_empty_batch_is_answered_with_count_zero() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.produce(b"x").unwrap();
    let id = client
        .send(wire::Request::ProduceBatch {
            target: commitlog::wire::TopicPartition::default_topic(),
            values: Vec::new(),
        })
        .unwrap();
    let (got, result) = client.recv().unwrap();
    assert_eq!(got, id);
    match result.unwrap() {
        wire::ResponseBody::ProduceBatch { count, .. } => assert_eq!(count, 0),
        other => panic!("unexpected {other:?}"),
    }
    // Nothing was written.
    assert_eq!(client.status().unwrap().commit_index, Offset(FIRST_OFFSET));
}
