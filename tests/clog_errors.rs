//! `clog` failures against real servers (issue 11): mistakes fail at once with the
//! cause and the fix (point 5), exit codes say what kind of failure it was (point 9),
//! and reading needs only the `consume` action (point 4).
//!
//! "At once" is checked without clocks: a retried failure ends with "gave up after N
//! attempts", a failure that was not retried does not.

mod common;
mod security_support;

use std::process::{Command, Output, Stdio};

use common::{Server, TempDir};
use security_support::Pki;

fn clog_at(addr: &str, cache: &TempDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clog"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The one stderr line of a failed run with exit code `code`.
fn failure(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("gave up after"), "was retried: {err}");
    err
}

#[test]
fn usage_unreachable_not_found_and_data_errors_have_their_exit_codes() {
    let server = Server::start(&[]);
    let cache = TempDir::new("clog-cache");
    let addr = server.addr.to_string();
    // Usage: 2.
    let err = failure(&clog_at("127.0.0.1", &cache, &["health"]), 2);
    assert!(
        err.contains("has no port") && err.contains("127.0.0.1:8400"),
        "{err}"
    );
    let err = failure(&clog_at("127.0.0.1:99999", &cache, &["health"]), 2);
    assert!(err.contains("is not a port"), "{err}");
    let out = clog_at(&addr, &cache, &["--timeout-ms", "0", "health"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = clog_at(&addr, &cache, &["consume", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Nothing listens (bound, then dropped): 3 at once, naming the address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{port}");
    for cmd in [
        &["produce", "x"][..],
        &["consume"],
        &["servers"],
        &["bench", "--count", "1"],
    ] {
        let err = failure(&clog_at(&dead, &cache, cmd), 3);
        assert!(
            err.contains(&dead) && err.contains("commitlogd --dev"),
            "{err}"
        );
    }

    // Out of range: 5. Undecodable input: 6.
    let err = failure(
        &clog_at(&addr, &cache, &["consume", "--from", "99", "--count", "1"]),
        5,
    );
    assert!(err.contains("OFFSET_OUT_OF_RANGE"), "{err}");
    let err = failure(
        &clog_at(&addr, &cache, &["produce", "--input-format", "hex", "zz"]),
        6,
    );
    assert!(err.contains("argument 1") && err.contains("hex"), "{err}");
    let err = failure(&clog_at(&addr, &cache, &["consume", "-f", "%q"]), 2);
    assert!(err.contains("%q"), "{err}");
}

#[test]
fn tls_mistakes_fail_at_once_with_exit_code_4_and_the_fix() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let cache = TempDir::new("clog-cache");
    let addr = server.addr.to_string();
    let p = |name: &str| pki.path(name).display().to_string();
    let (ca, other_ca) = (p("ca.pem"), p("other-ca.pem"));
    let tls = |ca: &str, who: Option<&str>, cmd: &str| -> Output {
        let mut args = vec!["--ca".to_string(), ca.to_string()];
        if let Some(who) = who {
            args.extend(["--cert".into(), p(&format!("{who}.pem"))]);
            args.extend(["--key".into(), p(&format!("{who}-key.pem"))]);
        }
        args.push(cmd.to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        clog_at(&addr, &cache, &refs)
    };
    // Plaintext to a TLS server.
    let err = failure(&clog_at(&addr, &cache, &["consume"]), 4);
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains("--ca"),
        "{err}"
    );
    // No client certificate.
    let err = failure(&tls(&ca, None, "consume"), 4);
    assert!(err.contains("--cert and --key"), "{err}");
    // A client certificate from another CA.
    let err = failure(&tls(&ca, Some("stranger-root"), "consume"), 4);
    assert!(
        err.contains("does not trust your client certificate"),
        "{err}"
    );
    // A --ca that did not sign the server's certificate.
    let err = failure(&tls(&other_ca, Some("root"), "consume"), 4);
    assert!(err.contains("not issued by --ca"), "{err}");
    // An expired client certificate.
    let err = failure(&tls(&ca, Some("expired-root"), "consume"), 4);
    assert!(err.contains("certificate"), "{err}");
    // A --cert without --key is a usage error.
    let out = clog_at(
        &addr,
        &cache,
        &["--ca", &ca, "--cert", &p("root.pem"), "consume"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn reading_needs_only_the_consume_action() {
    let pki = Pki::generate();
    let policy = pki.path("policy.csv");
    std::fs::write(&policy, "p, root, *, produce\np, nobody, *, consume\n").unwrap();
    let server = pki.start_server(&["--acl-policy-file", policy.to_str().unwrap()]);
    let cache = TempDir::new("clog-cache");
    let addr = server.addr.to_string();
    let p = |name: &str| pki.path(name).display().to_string();
    let run = |who: &str, cmd: &[&str]| -> Output {
        let (cert, key, ca) = (
            p(&format!("{who}.pem")),
            p(&format!("{who}-key.pem")),
            p("ca.pem"),
        );
        let mut args = vec!["--ca", &ca, "--cert", &cert, "--key", &key];
        args.extend_from_slice(cmd);
        clog_at(&addr, &cache, &args)
    };
    // root may only produce (no `describe` either): produce still works.
    let out = run("root", &["produce", "a", "b"]);
    assert!(out.status.success(), "{out:?}");
    // nobody may only consume: consume and tail work.
    let out = run("nobody", &["consume", "--values-only"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    let out = run("nobody", &["tail", "-n", "1", "--values-only"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b\n");
    // What nobody may not do: exit code 4 and the action it lacks.
    let err = failure(&run("nobody", &["produce", "c"]), 4);
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("`produce`"),
        "{err}"
    );
    let err = failure(&run("nobody", &["servers"]), 4);
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("`describe`"),
        "{err}"
    );
}
