//! `clog` input and output against a real `--dev` node (issue 11): streaming and
//! stopping (point 6), binary and multi-line values (point 7), health and `-o json`
//! (point 8). Offsets are taken from what `produce` prints, never assumed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

use common::{Server, TempDir};

/// Runs `clog --addr <server> args` with `stdin`, a private member cache.
fn clog(server: &Server, cache: &TempDir, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(server, cache, args, Stdio::piped());
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn spawn(server: &Server, cache: &TempDir, args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clog"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(args)
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

/// The offsets `clog produce a b ...` printed.
fn offsets(text: &str) -> Vec<u64> {
    text.lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn consume_streams_records_as_they_arrive_and_stops_as_asked() {
    let server = Server::start(&[]);
    let cache = TempDir::new("clog-cache");
    let first = offsets(&ok(&clog(&server, &cache, &["produce", "one"], b"")))[0];
    let from = first.to_string();
    // --count 3 waits for three records; the first is printed before the others
    // exist (not buffered until the count is reached).
    let mut child = spawn(
        &server,
        &cache,
        &["consume", "--from", &from, "--count", "3"],
        Stdio::null(),
    );
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{first}\tone\n"));
    ok(&clog(
        &server,
        &cache,
        &["produce", "two", "three", "four"],
        b"",
    ));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let values: Vec<&str> = rest
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(values, ["two", "three"]);

    // Without --count: to the end, then exit. With -e: at most --count, stop at the end.
    let all = ok(&clog(&server, &cache, &["consume", "--values-only"], b""));
    assert_eq!(all, "one\ntwo\nthree\nfour\n");
    let out = ok(&clog(
        &server,
        &cache,
        &[
            "consume",
            "--from",
            &from,
            "--count",
            "10",
            "-e",
            "--values-only",
        ],
        b"",
    ));
    assert_eq!(out, "one\ntwo\nthree\nfour\n");

    // --follow keeps going after the end, until Ctrl-C: exit code 130.
    let mut child = spawn(
        &server,
        &cache,
        &["consume", "--follow", "--values-only"],
        Stdio::null(),
    );
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for want in ["one", "two", "three", "four"] {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), want);
    }
    ok(&clog(&server, &cache, &["produce", "five"], b""));
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "five\n");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn binary_and_multi_line_values_in_and_out() {
    let server = Server::start(&[]);
    let cache = TempDir::new("clog-cache");
    let dir = TempDir::new("clog-values");
    // NUL-separated stdin: the first record holds a newline.
    let out = ok(&clog(&server, &cache, &["produce", "-0"], b"a\nb\0c\0"));
    assert!(out.starts_with("produced 2 records at offsets "), "{out}");
    // A custom delimiter, hex and base64 input, a whole file as one record.
    let out = ok(&clog(
        &server,
        &cache,
        &["produce", "--delimiter", ";;"],
        b"x;;y",
    ));
    assert!(out.starts_with("produced 2 records"), "{out}");
    let first = offsets(&ok(&clog(
        &server,
        &cache,
        &[
            "produce",
            "--no-idempotence",
            "--input-format",
            "hex",
            "ff00",
        ],
        b"",
    )))[0];
    ok(&clog(
        &server,
        &cache,
        &[
            "produce",
            "--no-idempotence",
            "--input-format",
            "base64",
            "aGkK",
        ],
        b"",
    ));
    let file = dir.path().join("v.bin");
    std::fs::write(&file, b"line1\nline2\n").unwrap();
    let single = ok(&clog(
        &server,
        &cache,
        &["produce", "--value-file", file.to_str().unwrap()],
        b"",
    ));
    assert_eq!(offsets(&single).len(), 1, "{single}");

    // Default text: one record per line, escaped.
    let text = ok(&clog(&server, &cache, &["consume"], b""));
    let values: Vec<&str> = text
        .lines()
        .map(|l| l.split_once('\t').unwrap().1)
        .collect();
    assert_eq!(
        values,
        [
            "a\\nb",
            "c",
            "x",
            "y",
            "\\xff\\x00",
            "hi\\n",
            "line1\\nline2\\n"
        ]
    );
    // JSON: text when UTF-8, base64 otherwise.
    let json = ok(&clog(&server, &cache, &["-o", "json", "consume"], b""));
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 7, "{json}");
    assert_eq!(objects[0]["value"], "a\nb");
    assert_eq!(objects[4]["offset"], first);
    assert_eq!(objects[4]["value_base64"], "/wA=");
    assert_eq!(objects[4]["size"], 2);
    // -f with kcat-style fields; raw values.
    let from = first.to_string();
    let out = clog(
        &server,
        &cache,
        &[
            "consume",
            "--from",
            &from,
            "--count",
            "2",
            "-f",
            "%o|%s|%v%%\\n",
        ],
        b"",
    );
    assert!(out.status.success());
    let mut want = format!("{first}|2|").into_bytes();
    want.extend_from_slice(&[0xff, 0, b'%', b'\n']);
    want.extend_from_slice(format!("{}|3|hi\n%\n", first + 1).as_bytes());
    assert_eq!(out.stdout, want);
    // --values-only -0: raw values, NUL-terminated (round trip of the first record).
    let out = clog(
        &server,
        &cache,
        &["consume", "--values-only", "-0", "--count", "1"],
        b"",
    );
    assert_eq!(out.stdout, b"a\nb\0");
}

#[test]
fn health_servers_and_status_as_text_and_json() {
    let server = Server::start(&["--node-name", "n1"]);
    let cache = TempDir::new("clog-cache");
    let out = ok(&clog(&server, &cache, &["health"], b""));
    assert!(out.starts_with("ok n1 at "), "{out}");
    let out = ok(&clog(&server, &cache, &["health", "--cluster"], b""));
    assert!(out.starts_with("ok 1 members"), "{out}");
    let out = ok(&clog(
        &server,
        &cache,
        &["health", "--cluster", "-o", "json"],
        b"",
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["healthy"], true, "{out}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    let out = ok(&clog(&server, &cache, &["servers", "-o", "json"], b""));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["name"], "n1");
    assert_eq!(v["role"], "leader");
    assert_eq!(v["address"], server.addr.to_string());
    // One stdin record: singular.
    let out = ok(&clog(&server, &cache, &["produce"], b"solo\n"));
    assert!(out.starts_with("produced 1 record at offset "), "{out}");
    let out = ok(&clog(&server, &cache, &["status", "-o", "json"], b""));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["role"], "leader");
    assert!(v["commit"].is_u64(), "{out}");
}
