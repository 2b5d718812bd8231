//! `clog` with record format v1 against a real `--dev` node: `produce -k`,
//! `--key-separator`, `-H` and `--timestamp`; `consume`/`tail` showing keys,
//! headers and timestamps in `-o json`, with `--print-key` / `--print-timestamp` /
//! `--print-headers`, and in `-f`. Offsets are taken from what `produce` prints.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use commitlog::records::partition_for_key;
use common::{Server, TempDir};

/// Runs `clog --addr <server> args` with `stdin`, a private member cache.
fn clog(server: &Server, cache: &TempDir, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clog"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(args)
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[test]
fn keyed_records_with_headers_and_time_round_trip_through_clog() {
    let server = Server::start(&[]);
    let cache = TempDir::new("clog-records");
    ok(&clog(
        &server,
        &cache,
        &["topic", "create", "events", "--partitions", "6"],
        b"",
    ));
    // An argument with a key, two headers (same name twice) and a producer time.
    let args = [
        "produce",
        "-t",
        "events",
        "-k",
        "user-42",
        "-H",
        "trace=abc",
        "-H",
        "trace=def",
        "--timestamp",
        "1796551200000",
        "-o",
        "json",
        "logged in",
    ];
    let produced = json_lines(&ok(&clog(&server, &cache, &args, b"")));
    let partition = partition_for_key(b"user-42", 6);
    assert_eq!(
        produced[0]["partition"], partition,
        "the key picks the partition"
    );
    let offset = produced[0]["offset"].as_u64().unwrap();

    // Stdin lines KEY:VALUE without a time: the leader stamps them.
    let before_ms = now_ms();
    ok(&clog(
        &server,
        &cache,
        &["produce", "-t", "events", "--key-separator", ":"],
        b"user-42:clicked\nuser-42:a:b\n",
    ));
    let after_ms = now_ms();

    let p = partition.to_string();
    let read = ok(&clog(
        &server,
        &cache,
        &["consume", "-t", "events", "-p", &p, "-o", "json"],
        b"",
    ));
    let records = json_lines(&read);
    assert_eq!(records.len(), 3, "{read}");
    let first = &records[0];
    assert_eq!(first["offset"].as_u64(), Some(offset));
    assert_eq!(first["key"], "user-42");
    assert_eq!(first["value"], "logged in");
    assert_eq!(first["timestamp_ms"], 1_796_551_200_000i64);
    assert_eq!(first["timestamp_type"], "create");
    assert_eq!(
        first["headers"],
        serde_json::json!([{"name": "trace", "value": "abc"}, {"name": "trace", "value": "def"}])
    );
    // Split at the first separator only.
    assert_eq!(
        (records[2]["key"].as_str(), records[2]["value"].as_str()),
        (Some("user-42"), Some("a:b"))
    );
    for r in &records[1..] {
        assert_eq!(r["timestamp_type"], "append");
        let ts = r["timestamp_ms"].as_i64().unwrap();
        assert!(
            (before_ms..=after_ms).contains(&ts),
            "{ts} not in [{before_ms}, {after_ms}]"
        );
        assert_eq!(r["headers"], serde_json::json!([]));
    }

    // Text with the key, the time and the headers; kcat-style -f; tail.
    let text = ok(&clog(
        &server,
        &cache,
        &[
            "consume",
            "-t",
            "events",
            "-p",
            &p,
            "--print-key",
            "--print-timestamp",
            "--print-headers",
            "--count",
            "1",
        ],
        b"",
    ));
    assert_eq!(
        text,
        format!("{offset}\t1796551200000\tuser-42\ttrace=abc,trace=def\tlogged in\n")
    );
    let custom = ok(&clog(
        &server,
        &cache,
        &[
            "consume",
            "-t",
            "events",
            "-p",
            &p,
            "-f",
            "%k|%T|%v\\n",
            "--count",
            "1",
        ],
        b"",
    ));
    assert_eq!(custom, "user-42|1796551200000|logged in\n");
    let tail = ok(&clog(
        &server,
        &cache,
        &["tail", "-t", "events", "-p", &p, "-n", "1", "--print-key"],
        b"",
    ));
    assert!(tail.ends_with("\tuser-42\ta:b\n"), "{tail}");
}

#[test]
fn plain_records_and_bad_input_are_reported() {
    let server = Server::start(&[]);
    let cache = TempDir::new("clog-records-plain");
    // A plain produce shows no key and the leader's time.
    ok(&clog(&server, &cache, &["produce", "plain"], b""));
    let read = json_lines(&ok(&clog(&server, &cache, &["consume", "-o", "json"], b"")));
    assert_eq!(read[0]["key"], serde_json::Value::Null);
    assert_eq!(read[0]["timestamp_type"], "append");
    let text = ok(&clog(&server, &cache, &["consume", "--print-key"], b""));
    assert!(text.ends_with("\tnull\tplain\n"), "{text}");

    // A stdin line without the separator, a header without `=`: data and usage errors.
    let no_sep = clog(
        &server,
        &cache,
        &["produce", "--key-separator", ":"],
        b"novalue\n",
    );
    assert!(!no_sep.status.success());
    assert!(
        String::from_utf8_lossy(&no_sep.stderr).contains("no key separator"),
        "{}",
        String::from_utf8_lossy(&no_sep.stderr)
    );
    let bad_header = clog(&server, &cache, &["produce", "-H", "oops", "x"], b"");
    assert!(!bad_header.status.success());
    assert!(String::from_utf8_lossy(&bad_header.stderr).contains("NAME=VALUE"));
    // A negative time is refused by the server as INVALID_RECORD; nothing written.
    let negative = clog(&server, &cache, &["produce", "--timestamp=-5", "x"], b"");
    assert!(!negative.status.success());
    assert!(
        String::from_utf8_lossy(&negative.stderr).contains("INVALID_RECORD"),
        "{}",
        String::from_utf8_lossy(&negative.stderr)
    );
    let values = ok(&clog(&server, &cache, &["consume", "--values-only"], b""));
    assert_eq!(values, "plain\n");
}
