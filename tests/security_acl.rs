//! Authorization against real `commitlogd` processes: the casbin ACL over certificate
//! CNs. `root` may produce and consume; `nobody` is denied with PERMISSION_DENIED and
//! nothing is written; peer RPCs need `replicate`, which only the peer identity has;
//! SIGHUP reloads the policy; bad ACL, peer TLS and gossip key files stop the start
//! with a message naming the file; a policy object names a topic (`*`: every topic).

mod common;
mod security_support;

use std::process::Command;
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, Request};

use common::FIRST_OFFSET;
use security_support::Pki;

fn assert_denied<T: std::fmt::Debug>(
    result: Result<T, commitlog::client::ClientError>,
    what: &str,
) -> String {
    let err = result.expect_err(what);
    assert_eq!(
        err.code(),
        Some(ErrorCode::PermissionDenied),
        "{what}: {err}"
    );
    err.to_string()
}

/// Sends `request` pipelined and returns the error code of its answer (None: success).
fn answer_code(client: &mut Client, request: Request) -> Option<ErrorCode> {
    let id = client.send(request).expect("send");
    let (got, result) = client.recv().expect("recv");
    assert_eq!(got, id);
    result.err().and_then(|e| e.code())
}

#[test]
fn root_may_produce_and_consume_nobody_is_denied_and_nothing_is_written() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    assert_eq!(root.produce(b"first").unwrap(), Offset(FIRST_OFFSET));
    let before = root.status().unwrap();

    let mut nobody = pki.client(server.addr, Some("nobody")).unwrap();
    nobody
        .ping()
        .expect("Ping is open to every authenticated connection");
    let message = assert_denied(nobody.produce(b"intruder"), "nobody produce");
    assert!(
        message.contains("`nobody`") && message.contains("`produce`"),
        "the message names identity and action: {message}"
    );
    assert!(
        message.contains("--acl-policy-file"),
        "and what to do: {message}"
    );
    assert_denied(nobody.produce_batch(&[b"x", b"y"]), "nobody batch");
    let message = assert_denied(nobody.consume(Offset(0)), "nobody consume");
    assert!(message.contains("`consume`"), "{message}");
    assert_denied(nobody.fetch(Offset(0), 1 << 20, 0), "nobody fetch");
    assert_denied(nobody.status(), "nobody status");
    assert_denied(nobody.servers(), "nobody servers");
    // Denials keep the connection: the next request is answered too.
    nobody.ping().unwrap();

    // Nothing was written: root sees the same log.
    let after = root.status().unwrap();
    assert_eq!(after.last_index, before.last_index);
    assert_eq!(after.commit_index, before.commit_index);
    let fetched = root.fetch(Offset(0), 1 << 20, 0).unwrap();
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value, b"first");
    assert_eq!(fetched.high_watermark, Offset(FIRST_OFFSET + 1));
    assert!(server.stderr().contains("denied Produce to `nobody`"));
}

#[test]
fn peer_rpcs_need_the_replicate_permission() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    let raft = Request::Raft {
        group: commitlog::types::GroupId::DEFAULT_PARTITION,
        payload: vec![1, 2, 3],
    };
    assert_eq!(
        answer_code(&mut root, raft.clone()),
        Some(ErrorCode::PermissionDenied)
    );
    let handshake = Request::PeerHandshake {
        cluster_name: "commitlog".into(),
        node_id: commitlog::types::NodeId(2),
        node_name: "node-2".into(),
    };
    assert_eq!(
        answer_code(&mut root, handshake.clone()),
        Some(ErrorCode::PermissionDenied)
    );

    // The peer identity passes the ACL; the single node then has no Raft to hand the
    // RPC to, so the answer is anything but PERMISSION_DENIED.
    let mut peer = pki.client(server.addr, Some("peer")).unwrap();
    let code = answer_code(&mut peer, handshake);
    assert_ne!(code, Some(ErrorCode::PermissionDenied), "peer handshake");
    let code = answer_code(&mut peer, raft);
    assert_ne!(code, Some(ErrorCode::PermissionDenied), "peer raft message");
    // And the peer identity may not produce.
    assert_denied(peer.produce(b"not a client"), "peer produce");
}

#[test]
fn sighup_reloads_the_policy() {
    let pki = Pki::generate();
    let policy = pki.path("policy.csv");
    std::fs::write(&policy, "p, root, *, produce\n").unwrap();
    let policy_arg = policy.display().to_string();
    let server = pki.start_server(&["--acl-policy-file", &policy_arg]);
    let mut nobody = pki.client(server.addr, Some("nobody")).unwrap();
    assert_denied(nobody.produce(b"x"), "before reload");

    std::fs::write(&policy, "p, root, *, produce\np, nobody, *, produce\n").unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The reload is asynchronous (signal thread): wait for its log line, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("ACL policy reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", server.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The same connection sees the new policy (its decision cache is invalidated).
    assert_eq!(
        nobody.produce(b"now allowed").unwrap(),
        Offset(FIRST_OFFSET)
    );

    // A broken policy keeps the previous one.
    std::fs::write(&policy, "p, nobody, produce\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("keeping the previous policy") {
        assert!(Instant::now() < deadline, "no error: {}", server.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.stderr().contains("policy.csv line 1"));
    assert_eq!(
        nobody.produce(b"still allowed").unwrap(),
        Offset(FIRST_OFFSET + 1)
    );
}

/// Runs commitlogd with TLS and `extra` flags, expecting it to fail at start.
fn start_fails(pki: &Pki, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args(pki.server_args())
        .args(extra)
        .output()
        .unwrap();
    assert!(!output.status.success(), "started with {extra:?}");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn bad_acl_peer_and_gossip_key_files_stop_the_start() {
    let pki = Pki::generate();
    let bad_policy = pki.path("bad-policy.csv");
    std::fs::write(&bad_policy, "p, root, *, produse\n").unwrap();
    let err = start_fails(
        &pki,
        &["--acl-policy-file", &bad_policy.display().to_string()],
    );
    assert!(
        err.contains("bad-policy.csv") && err.contains("produse"),
        "{err}"
    );

    let missing_model = pki.path("missing-model.conf").display().to_string();
    let err = start_fails(&pki, &["--acl-model-file", &missing_model]);
    assert!(
        err.contains("--acl-model-file") && err.contains("missing-model.conf"),
        "{err}"
    );

    let bad_key = pki.path("gossip.key");
    std::fs::write(&bad_key, "too short\n").unwrap();
    let err = start_fails(&pki, &["--gossip-key-file", &bad_key.display().to_string()]);
    assert!(
        err.contains("gossip.key") && err.contains("64 hex"),
        "{err}"
    );

    let missing_peer = pki.path("no-peer.pem").display().to_string();
    let err = start_fails(
        &pki,
        &[
            "--peer-tls-cert-file",
            &missing_peer,
            "--peer-tls-key-file",
            &pki.key("peer").display().to_string(),
            "--peer-tls-ca-file",
            &pki.ca().display().to_string(),
        ],
    );
    assert!(
        err.contains("--peer-tls-cert-file") && err.contains("no-peer.pem"),
        "{err}"
    );
}

#[test]
fn peer_tls_and_gossip_key_are_accepted_and_reported() {
    let pki = Pki::generate();
    let key = pki.path("gossip.key");
    std::fs::write(&key, "ab".repeat(32) + "\n").unwrap();
    let key = key.display().to_string();
    let peer_cert = pki.cert("peer").display().to_string();
    let peer_key = pki.key("peer").display().to_string();
    let ca = pki.ca().display().to_string();
    let server = pki.start_server(&[
        "--peer-tls-cert-file",
        &peer_cert,
        "--peer-tls-key-file",
        &peer_key,
        "--peer-tls-ca-file",
        &ca,
        "--gossip-key-file",
        &key,
    ]);
    let log = server.stderr();
    assert!(
        log.contains("peer TLS loaded (identity `commitlog-peer`)"),
        "{log}"
    );
    assert!(log.contains("gossip key loaded"), "{log}");
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    root.ping().unwrap();
}

#[test]
fn without_tls_the_acl_is_off() {
    let server = common::Server::start(&[]);
    let mut client = server.client();
    assert_eq!(client.produce(b"open").unwrap(), Offset(FIRST_OFFSET));
    assert_eq!(
        answer_code(&mut client, Request::Status),
        None,
        "no identity, no ACL"
    );
    assert!(server.stderr().contains("TLS off"), "{}", server.stderr());
}

/// `nobody` may produce, consume and administer topic `orders` only; `root` keeps
/// `*` (every topic).
const PER_TOPIC_POLICY: &str = "\
p, root, *, produce
p, root, *, consume
p, root, *, describe
p, root, *, admin
p, nobody, orders, produce
p, nobody, orders, consume
p, nobody, orders, admin
";

#[test]
fn topic_grants_cover_their_topic_only_and_star_covers_all() {
    use commitlog::wire::{TopicChanges, TopicPartition, TopicSettings};
    let pki = Pki::generate();
    let policy = pki.path("topics-policy.csv");
    std::fs::write(&policy, PER_TOPIC_POLICY).unwrap();
    let server = pki.start_server(&["--acl-policy-file", &policy.display().to_string()]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    let one = TopicSettings {
        partitions: 1,
        ..TopicSettings::default()
    };
    for topic in ["orders", "payments"] {
        root.create_topic(topic, one).expect("root creates");
    }
    let (orders, payments) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("payments", 0),
    );
    let mut nobody = pki.client(server.addr, Some("nobody")).unwrap();
    // A fresh partition may need a moment to elect its leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    let offset = loop {
        match nobody.produce_to(&orders, b"mine") {
            Ok(offset) => break offset,
            Err(e)
                if e.code() == Some(ErrorCode::Unavailable)
                    || e.code() == Some(ErrorCode::NotLeader) =>
            {
                assert!(Instant::now() < deadline, "orders never served: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("nobody produce to orders: {e}"),
        }
    };
    assert_eq!(nobody.consume_from(&orders, offset).unwrap().value, b"mine");
    let message = assert_denied(nobody.produce_to(&payments, b"x"), "payments produce");
    assert!(message.contains("on topic `payments`"), "{message}");
    assert!(
        message.contains("p, nobody, payments, produce"),
        "{message}"
    );
    assert_denied(nobody.produce(b"x"), "default produce");
    assert_denied(
        nobody.consume_from(&payments, Offset(0)),
        "payments consume",
    );
    assert_denied(nobody.fetch(Offset(0), 1 << 20, 0), "default fetch (v0)");
    let both = [orders.clone(), payments.clone()].map(|target| commitlog::wire::FetchPartition {
        target,
        offset: Offset(0),
        max_bytes: 1024,
    });
    assert_denied(
        nobody.fetch_partitions(&both, 4096, 0),
        "fetch over orders and payments",
    );
    // Admin on orders only: alter orders, not payments; create nothing else.
    let grow = TopicChanges {
        partitions: Some(2),
        ..TopicChanges::default()
    };
    assert_eq!(
        nobody
            .alter_topic("orders", grow)
            .unwrap()
            .settings
            .partitions,
        2
    );
    assert_denied(nobody.alter_topic("payments", grow), "alter payments");
    assert_denied(nobody.create_topic("mine", one), "create mine");
    assert_denied(nobody.delete_topic("payments"), "delete payments");
    // No describe anywhere: neither a topic's nor the list of all.
    assert_denied(nobody.metadata(&["orders"]), "metadata orders");
    assert_denied(nobody.metadata(&[]), "metadata of all topics");
    // `*` still grants everything; nothing nobody was refused was written.
    assert!(
        root.consume_from(&payments, Offset(0)).is_err(),
        "payments is empty"
    );
    root.produce_to(&payments, b"root's")
        .expect("root produce payments");
    root.produce(b"root's default")
        .expect("root produce default");
    let (_, topics) = root.metadata(&[]).expect("root lists topics");
    assert!(topics
        .iter()
        .any(|t| t.name == "orders" && t.partitions.len() == 2));
    nobody
        .delete_topic("orders")
        .expect("nobody may delete orders");
    assert!(server
        .stderr()
        .contains("denied Produce to `nobody` on `payments`"));
}
