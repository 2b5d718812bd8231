//! The `clog` command-line client against a real server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{clog, Server};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn produce_arguments_and_stdin_then_consume_and_tail() {
    let server = Server::start(&[]);
    let out = server.clog(&["produce", "--no-idempotence", "hello", "world"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "2\n3\n");

    let lines: String = (0..2500).map(|i| format!("line-{i}\n")).collect();
    let out = server.clog_stdin(
        &["produce", "--no-idempotence", "--batch", "1000"],
        lines.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "produced 2500 records at offsets 4..=2503\n");

    let out = server.clog(&["consume", "--from", "3", "--count", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\tworld\n4\tline-0\n5\tline-1\n");
    // Without --from: from the first offset.
    let out = server.clog(&["consume", "--count", "1"]);
    assert_eq!(stdout(&out), "2\thello\n");

    // Without --count: everything up to the end, then exit.
    let out = server.clog(&["consume", "--from", "2502", "--values-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line-2498\nline-2499\n");

    let out = server.clog(&["tail", "-n", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "2502\tline-2498\n2503\tline-2499\n");
}

#[test]
fn tail_follow_prints_new_records() {
    let server = Server::start(&[]);
    server.clog(&["produce", "--no-idempotence", "old"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(["--addr", &server.addr.to_string(), "tail", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "2\told\n");
    server.clog(&["produce", "--no-idempotence", "new"]);
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "3\tnew\n");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn servers_and_health_describe_the_node() {
    let server = Server::start(&["--node-name", "n1"]);
    let out = server.clog(&["servers"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("n1") && text.contains("leader") && text.contains(&server.addr.to_string()),
        "{text}"
    );
    let out = server.clog(&["health"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok n1 "), "{}", stdout(&out));
}

#[test]
fn failures_exit_non_zero_with_one_line_that_says_what_to_do() {
    let server = Server::start(&[]);
    server.clog(&["produce", "--no-idempotence", "x"]);
    let out = server.clog(&["consume", "--from", "99", "--count", "1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("OFFSET_OUT_OF_RANGE") && err.contains("[1, 3)"),
        "{err}"
    );

    // Nobody listens on this port (we bind and drop it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = clog(&format!("127.0.0.1:{port}"), &["health"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("commitlogd --dev"), "{err}");
}

#[test]
fn a_closed_pipe_ends_clog_quietly() {
    let server = Server::start(&[]);
    let lines: String = (0..20_000).map(|i| format!("r{i}\n")).collect();
    assert!(server
        .clog_stdin(&["produce", "--no-idempotence"], lines.as_bytes())
        .status
        .success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(["--addr", &server.addr.to_string(), "consume"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "2\tr0\n");
    drop(reader); // like `| head -1`
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_produce_and_consume_print_result_lines() {
    let server = Server::start(&[]);
    let out = server.clog(&[
        "bench",
        "--producers",
        "2",
        "--window",
        "8",
        "--size",
        "64",
        "--count",
        "400",
        "--label",
        "T1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let result = text
        .lines()
        .find(|l| l.starts_with("RESULT\t"))
        .expect("a RESULT line");
    let fields: Vec<&str> = result.split('\t').collect();
    assert_eq!(fields.len(), 13, "{result}");
    assert_eq!(fields[12], "idempotence=on", "the default mode");
    assert_eq!(&fields[1..5], &["Commitlog", "Produce", "T1", "400"]);
    let out = server.clog(&["bench", "--consume", "--label", "T4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let result = text
        .lines()
        .find(|l| l.starts_with("RESULT\t"))
        .expect("a RESULT line");
    let fields: Vec<&str> = result.split('\t').collect();
    assert_eq!(&fields[1..5], &["Commitlog", "Consume", "T4", "400"]);
    let _ = Duration::ZERO;
}
