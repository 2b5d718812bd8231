//! TLS on the shared port, against real `commitlogd` processes on 127.0.0.1 with
//! certificates generated at test start: who gets in (a client certificate from the
//! configured CA, valid now) and who does not (no certificate, another CA, expired,
//! plaintext), the text protocol inside TLS (also through `openssl s_client`), and
//! `clog --ca --cert --key`.

mod common;
mod security_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use commitlog::client::ClientError;
use commitlog::types::Offset;
use commitlog::wire::ErrorCode;

use common::{read_to_close, Server, FIRST_OFFSET};
use security_support::{text_command, Pki};

/// A client rejected by the handshake fails at connect or at its first request (with
/// TLS 1.3 the server checks the client certificate after the client's last flight).
fn assert_refused(pki: &Pki, server: &Server, who: Option<&str>, alert: &str) {
    let result = pki
        .client(server.addr, who)
        .and_then(|mut client| client.ping());
    match result {
        Err(ClientError::Io(e)) => {
            assert!(
                e.to_string().contains(alert),
                "{who:?}: expected {alert}, got {e}"
            );
        }
        Err(ClientError::Timeout) => panic!("{who:?}: timed out instead of being refused"),
        other => panic!("{who:?}: expected a TLS failure ({alert}), got {other:?}"),
    }
}

#[test]
fn root_certificate_gets_in_and_round_trips_records() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut root = pki
        .client(server.addr, Some("root"))
        .expect("root connects");
    root.ping().unwrap();
    let first = root.produce(b"over tls").unwrap();
    let batch = root.produce_batch(&[b"a", b"b"]).unwrap();
    assert_eq!(batch, Offset(first.0 + 1));
    assert_eq!(root.consume(first).unwrap().value, b"over tls");
    let fetched = root.fetch(first, 1 << 20, 0).unwrap();
    assert_eq!(fetched.records.len(), 3);
    assert_eq!(fetched.records[2].value, b"b");
    // A larger value crosses many TLS records in both directions.
    let big = vec![0x5A; 3 << 20];
    let offset = root.produce(&big).unwrap();
    assert_eq!(root.consume(offset).unwrap().value, big);
    assert!(
        server
            .stderr()
            .contains("TLS on: client certificates required"),
        "{}",
        server.stderr()
    );
}

#[test]
fn no_certificate_other_ca_and_expired_certificates_are_refused() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    assert_refused(&pki, &server, None, "CertificateRequired");
    assert_refused(&pki, &server, Some("stranger-root"), "UnknownCA");
    assert_refused(&pki, &server, Some("expired-root"), "CertificateExpired");
    // The server is still fine for a good client afterwards.
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    root.ping().unwrap();
    let log = server.stderr();
    assert!(log.contains("TLS error"), "{log}");
}

#[test]
fn plaintext_to_a_tls_server_is_refused_with_one_line() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    // Text client (a person at nc).
    let mut tcp = server.tcp();
    tcp.write_all(b"PING\r\n").unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&bytes);
    assert!(closed, "connection closed after the refusal");
    assert!(
        text.starts_with("-ERR UNAUTHENTICATED this server requires TLS"),
        "{text}"
    );
    assert_eq!(text.matches("\r\n").count(), 1, "exactly one line: {text}");
    // Binary client of this crate: the line becomes a typed error.
    let err = commitlog::client::Client::connect(server.addr, Duration::from_secs(10))
        .unwrap()
        .ping()
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
}

#[test]
fn allow_plaintext_accepts_plaintext_as_anonymous() {
    let pki = Pki::generate();
    let policy = pki.path("anon-policy.csv");
    std::fs::write(
        &policy,
        "p, root, *, produce\np, root, *, consume\np, anonymous, *, consume\n",
    )
    .unwrap();
    let policy = policy.display().to_string();
    let server = pki.start_server(&["--allow-plaintext", "--acl-policy-file", &policy]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    root.produce(b"secret").unwrap();
    // Plaintext is accepted: Ping works, the ACL applies to `anonymous`.
    let mut plain = server.client();
    plain.ping().unwrap();
    assert_eq!(plain.consume(Offset(0)).unwrap().value, b"secret");
    let err = plain.produce(b"sneaky").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    assert!(err.to_string().contains("anonymous"), "{err}");
    let mut tcp = server.tcp();
    tcp.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    tcp.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    // TLS clients are still served.
    root.ping().unwrap();
    assert_eq!(root.fetch(Offset(0), 1 << 20, 0).unwrap().records.len(), 1);
}

#[test]
fn text_protocol_inside_tls() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut root = pki.raw(server.addr, "root");
    assert_eq!(text_command(&mut root, "PING"), "+PONG");
    assert_eq!(
        text_command(&mut root, "PRODUCE hello tls"),
        format!("+OK {FIRST_OFFSET}")
    );
    assert_eq!(
        text_command(&mut root, "CONSUME 0"),
        format!("+{FIRST_OFFSET} hello tls")
    );
    let mut nobody = pki.raw(server.addr, "nobody");
    assert_eq!(text_command(&mut nobody, "PING"), "+PONG");
    let denied = text_command(&mut nobody, "PRODUCE nope");
    assert!(
        denied.starts_with("-ERR PERMISSION_DENIED") && denied.contains("`nobody`"),
        "{denied}"
    );
    let denied = text_command(&mut nobody, "CONSUME 0");
    assert!(denied.starts_with("-ERR PERMISSION_DENIED"), "{denied}");
    assert_eq!(
        text_command(&mut root, "CONSUME 3"),
        "-ERR OFFSET_OUT_OF_RANGE offset 3 is out of range: the log holds [1, 3)"
    );
}

#[test]
fn openssl_s_client_ping() {
    let available = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        eprintln!("SKIPPED openssl_s_client_ping: the `openssl` CLI is not installed");
        return;
    }
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error"])
        .arg("-cert")
        .arg(pki.cert("root"))
        .arg("-key")
        .arg(pki.key("root"))
        .arg("-CAfile")
        .arg(pki.ca())
        .arg("-connect")
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().unwrap();
    // QUIT makes the server close, which ends s_client: no timing involved.
    stdin.write_all(b"PING\r\nQUIT\r\n").unwrap();
    let output = {
        // Keep stdin open until the server closed (s_client exits on EOF from it).
        let out = child.wait_with_output().expect("openssl output");
        drop(stdin);
        out
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("+PONG"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn clog_with_ca_cert_key_flags_and_env() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let addr = server.addr.to_string();
    let ca = pki.ca().display().to_string();
    let cert = pki.cert("root").display().to_string();
    let key = pki.key("root").display().to_string();
    let out = common::clog(
        &addr,
        &[
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "produce",
            "--no-idempotence",
            "one",
            "two",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n{}\n", FIRST_OFFSET, FIRST_OFFSET + 1)
    );
    // The same through CLOG_CA / CLOG_CERT / CLOG_KEY.
    let out = Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(["--addr", &addr, "consume"])
        .env("CLOG_CA", &ca)
        .env("CLOG_CERT", &cert)
        .env("CLOG_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\tone\n{}\ttwo\n", FIRST_OFFSET, FIRST_OFFSET + 1)
    );
    // nobody is told why, in one line.
    let out = common::clog(
        &addr,
        &[
            "--ca",
            &ca,
            "--cert",
            &pki.cert("nobody").display().to_string(),
            "--key",
            &pki.key("nobody").display().to_string(),
            "produce",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("`nobody`"),
        "{err}"
    );
    // Without TLS flags: told to use them.
    let out = common::clog(&addr, &["produce", "x"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains("--ca"),
        "{err}"
    );
}

#[test]
fn bad_tls_files_fail_start_with_a_message_naming_the_file() {
    let pki = Pki::generate();
    let missing = pki.path("missing.pem").display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args(["--server-tls-cert-file", &missing])
        .args([
            "--server-tls-key-file",
            &pki.key("server").display().to_string(),
        ])
        .args(["--server-tls-ca-file", &pki.ca().display().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("--server-tls-cert-file") && err.contains("missing.pem"),
        "{err}"
    );
    // A key that does not match the certificate.
    let output = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args([
            "--server-tls-cert-file",
            &pki.cert("server").display().to_string(),
        ])
        .args([
            "--server-tls-key-file",
            &pki.key("root").display().to_string(),
        ])
        .args(["--server-tls-ca-file", &pki.ca().display().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("do not form a usable pair"), "{err}");
}

#[test]
fn stalled_or_garbage_handshakes_do_not_block_the_loop() {
    let pki = Pki::generate();
    let server = pki.start_server(&["--idle-timeout-ms", "1000"]);
    // A client that starts a TLS record and then stalls mid-ClientHello.
    let mut stalled = server.tcp();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // A client that sends a handshake record holding an undecodable ClientHello.
    let mut junk = server.tcp();
    junk.write_all(&[
        0x16, 0x03, 0x03, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
    ])
    .unwrap();
    // Meanwhile a real client is served at once.
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    root.produce(b"not blocked").unwrap();
    // The junk gets a fatal alert (content type 0x15) and a close.
    let (bytes, closed) = read_to_close(&mut junk, Duration::from_secs(10));
    assert!(closed, "junk handshake closed");
    assert_eq!(
        bytes.first(),
        Some(&0x15),
        "a TLS alert record: {bytes:02x?}"
    );
    // The stalled one is closed by the idle timeout, not left hanging.
    let (_, closed) = read_to_close(&mut stalled, Duration::from_secs(10));
    assert!(closed, "stalled handshake closed by the idle timeout");
    // (root idled too and was closed the same way; a new connection is served.)
    let mut again = pki.client(server.addr, Some("root")).unwrap();
    assert_eq!(again.consume(Offset(0)).unwrap().value, b"not blocked");
}

#[test]
fn pipelined_produces_over_tls() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    let value = vec![b'p'; 1024];
    let mut acks = Vec::new();
    {
        let mut pipeline = commitlog::client::Pipeline::new(&mut root, 128);
        for _ in 0..2000 {
            if let Some(ack) = pipeline.produce(&value).unwrap() {
                acks.push(ack);
            }
        }
        acks.extend(pipeline.drain().unwrap());
    }
    let mut offsets: Vec<u64> = acks.iter().map(|a| a.result.as_ref().unwrap().0).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (FIRST_OFFSET..FIRST_OFFSET + 2000).collect::<Vec<u64>>()
    );
    let fetched = root.fetch(Offset(0), 8 << 20, 0).unwrap();
    assert_eq!(fetched.records.len(), 2000);
}
