//! Process lifecycle: graceful shutdown on SIGTERM keeps everything; SIGKILL in the
//! middle of concurrent produces loses nothing that was acknowledged.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{Request, ResponseBody};
use common::{Server, FIRST_OFFSET};

#[test]
fn sigterm_finishes_in_flight_work_exits_zero_and_keeps_the_data() {
    let mut server = Server::start(&[]);
    let mut client = server.client();
    let values: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("value-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    assert_eq!(
        client.produce_batch(&refs[..100]).unwrap(),
        Offset(FIRST_OFFSET)
    );
    let end = Offset(FIRST_OFFSET + 200);
    for v in &refs[100..] {
        client.produce(v).unwrap();
    }
    // A long-poll in flight during shutdown is answered (empty), not dropped.
    let addr = server.addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let poller = std::thread::spawn(move || {
        let mut c = Client::connect(addr, Duration::from_secs(20)).unwrap();
        let fetch_id = c
            .send(Request::Fetch {
                offset: end,
                max_bytes: 1 << 20,
                max_wait_ms: 15_000,
            })
            .unwrap();
        let ping_id = c.send(Request::Ping).unwrap();
        // Requests of a connection are started in order: once the ping is answered,
        // the fetch is parked in the server.
        let (id, result) = c.recv().unwrap();
        assert_eq!(id, ping_id);
        assert_eq!(result.unwrap(), ResponseBody::Ping);
        ready_tx.send(()).unwrap();
        let started = Instant::now();
        let (id, result) = c.recv().unwrap();
        assert_eq!(id, fetch_id);
        (result, started.elapsed())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("poller ready");
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.stderr()
    );
    let (result, waited) = poller.join().unwrap();
    match result {
        Ok(ResponseBody::Fetch {
            records,
            high_watermark,
        }) => {
            assert!(records.is_empty());
            assert_eq!(high_watermark, end);
        }
        other => panic!("long-poll during shutdown got {other:?}"),
    }
    assert!(
        waited < Duration::from_secs(14),
        "shutdown waited out the long-poll"
    );
    let log = server.stderr();
    assert!(log.contains("node stopped"), "{log}");

    server.restart();
    let mut client = server.client();
    let fetched = client.fetch(Offset(0), 1 << 20, 0).unwrap();
    // The restarted leader's no-op takes the offset after the recovered end.
    assert_eq!(fetched.high_watermark, Offset(end.0 + 1));
    let got: Vec<Vec<u8>> = fetched.records.into_iter().map(|r| r.value).collect();
    assert_eq!(got, values);
    // New produces continue after it: no acknowledged offset is reused.
    assert_eq!(client.produce(b"after restart").unwrap(), Offset(end.0 + 1));
}

/// Acknowledged produces: (offset, value).
type Acked = Vec<(Offset, Vec<u8>)>;

#[test]
fn sigkill_during_concurrent_produces_loses_no_acknowledged_record() {
    let mut server = Server::start(&[]);
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..4 {
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        let addr = server.addr;
        producers.push(std::thread::spawn(move || {
            let mut client = Client::connect(addr, Duration::from_secs(10)).unwrap();
            // Bounded: at most 100k produces, and the server dies long before.
            for i in 0..100_000u32 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let value = format!("p{p}-{i}").into_bytes();
                match client.produce(&value) {
                    Ok(offset) => acked.lock().unwrap().push((offset, value)),
                    Err(_) => return, // the server was killed
                }
            }
        }));
    }
    // Kill once a good number of produces were acknowledged (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "producers too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // No offset was acknowledged twice.
    let mut by_offset: HashMap<Offset, Vec<u8>> = HashMap::new();
    for (offset, value) in &acked {
        assert!(
            by_offset.insert(*offset, value.clone()).is_none(),
            "offset {offset} acked twice"
        );
    }

    server.restart();
    let mut client = server.client();
    for (offset, value) in &acked {
        let record = client
            .consume(*offset)
            .unwrap_or_else(|e| panic!("acked offset {offset} lost: {e}"));
        assert_eq!(&record.value, value, "offset {offset} changed");
    }
}

#[test]
fn retention_runs_periodically_and_drops_old_segments() {
    let server = Server::start(&[
        "--segment-max-bytes",
        "4KiB",
        "--retention-bytes",
        "8KiB",
        "--retention-interval",
        "50ms",
    ]);
    let mut client = server.client();
    let value = vec![b'r'; 100];
    let values: Vec<&[u8]> = (0..200).map(|_| value.as_slice()).collect();
    client.produce_batch(&values).unwrap();
    // Wait (bounded) for the retention thread to drop the oldest segments.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let status = client.status().unwrap();
        if status.first_index > Offset(1) {
            break status.first_index;
        }
        assert!(Instant::now() < deadline, "retention never ran: {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(first < Offset(FIRST_OFFSET + 200));
    let err = client.consume(Offset(1)).unwrap_err();
    assert_eq!(
        err.code(),
        Some(commitlog::wire::ErrorCode::OffsetOutOfRange)
    );
    // Offset 0 still means "from the start": the first retained record.
    assert_eq!(client.consume(Offset(0)).unwrap().offset, first);
    assert_eq!(client.consume(Offset(199)).unwrap().value, value);
}

/// Requests a client sent before a graceful shutdown closes its connection are all
/// answered: served, or UNAVAILABLE ("shutting down", nothing written); none is met
/// by a bare close. The node is paused while the requests and SIGTERM arrive, so the
/// shutdown and the requests race when it resumes.
#[test]
fn requests_sent_around_a_graceful_shutdown_are_all_answered() {
    use commitlog::wire::{decode_response, encode_request, ApiKey, ErrorCode, RequestFrame};
    use std::io::Write;
    let mut server = Server::start(&[]);
    let mut tcp = server.tcp();
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    let pid = server.pid();
    signal("-STOP", pid);
    let sent: u32 = 50;
    let mut bytes = Vec::new();
    for id in 0..sent {
        let frame = RequestFrame {
            api_version: 0,
            correlation_id: id,
            request: Request::Produce {
                target: commitlog::wire::TopicPartition::default_topic(),
                value: format!("around-shutdown-{id}").into_bytes(),
            },
        };
        encode_request(&frame, &mut bytes);
    }
    tcp.write_all(&bytes).expect("send before the shutdown");
    signal("-TERM", pid);
    signal("-CONT", pid);
    let (answers, _) = common::read_to_close(&mut tcp, Duration::from_secs(20));
    let mut at = 0;
    let mut answered = 0;
    // Bounded by the bytes read.
    while at + 4 <= answers.len() {
        let len = u32::from_be_bytes(answers[at..at + 4].try_into().unwrap()) as usize;
        let frame = &answers[at..at + 4 + len];
        match decode_response(frame, ApiKey::Produce)
            .expect("a well-formed answer")
            .result
        {
            Ok(_) => {}
            Err(e) => assert_eq!(e.code, ErrorCode::Unavailable, "{}", e.message),
        }
        answered += 1;
        at += 4 + len;
    }
    assert_eq!(
        answered, sent,
        "every request sent was answered before the close"
    );
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status}");
}
