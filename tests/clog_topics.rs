//! Topics end to end: `clog topic ...` and `clog produce/consume -t/-p` against a
//! real single node, and the cluster client against a real 3-node cluster (topic
//! created through a follower, every partition produced to and read back from
//! every node).

mod cluster_common;
mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use commitlog::client::cluster::{ClusterClient, ClusterConfig, RetryPolicy};
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, TopicPartition, TopicSettings};

use cluster_common::{wait_for, Cluster, SETTLE_DEADLINE};
use common::Server;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs clog and asserts it succeeded; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = server.clog(args);
    assert!(
        out.status.success(),
        "clog {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs clog and asserts it failed with `exit` and `code` named on stderr.
fn fails(server: &Server, args: &[&str], exit: i32, code: &str) -> String {
    let out = server.clog(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(exit), "clog {args:?}: {err}");
    assert!(err.contains(code), "clog {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn topic_lifecycle_with_clog_on_one_node() {
    let server = Server::start(&[]);
    let out = ok(
        &server,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
    );
    assert!(out.starts_with("created topic orders\n"), "{out}");
    let list = ok(&server, &["topic", "list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().take(2).eq(["orders", "3"])),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("default ")), "{list}");
    let json = ok(&server, &["topic", "describe", "orders", "-o", "json"]);
    let described: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(described["name"], "orders");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(described["replication"], "1");

    // Produce to partition 2, read it back from partition 2 only.
    let offset = ok(&server, &["produce", "-t", "orders", "-p", "2", "hello"]);
    let offset = offset.trim().to_string();
    let read = ok(
        &server,
        &["consume", "-t", "orders", "-p", "2", "--from", &offset],
    );
    assert_eq!(read, format!("{offset}\thello\n"));
    let read = ok(&server, &["consume", "-t", "orders", "-p", "1"]);
    assert_eq!(read, "", "partition 1 is empty");

    // Without -p: round-robin, one partition after another, printed as `p TAB offset`.
    let out = ok(&server, &["produce", "-t", "orders", "a", "b", "c"]);
    let partitions: BTreeSet<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(
        partitions.len(),
        3,
        "three records on three partitions: {out}"
    );
    for line in out.lines() {
        let (p, offset) = line.split_once('\t').expect("partition TAB offset");
        let read = ok(
            &server,
            &[
                "consume", "-t", "orders", "-p", p, "--from", offset, "--count", "1",
            ],
        );
        assert!(read.starts_with(&format!("{offset}\t")), "{read}");
    }

    let altered = ok(&server, &["topic", "alter", "orders", "--partitions", "5"]);
    assert!(altered.contains("partitions:        5"), "{altered}");
    // The new partitions take records too.
    let offset = ok(&server, &["produce", "-t", "orders", "-p", "4", "late"]);
    assert!(!offset.trim().is_empty());

    fails(&server, &["topic", "create", "orders"], 7, "TOPIC_EXISTS");
    fails(
        &server,
        &["topic", "create", "bad name!"],
        2,
        "INVALID_TOPIC",
    );
    fails(
        &server,
        &["topic", "alter", "orders", "--partitions", "2"],
        2,
        "INVALID_CONFIG",
    );
    // Deleting needs --yes without a terminal; `default` is refused by clog.
    fails(&server, &["topic", "delete", "orders"], 2, "--yes");
    fails(
        &server,
        &["topic", "delete", "default", "--yes"],
        2,
        "cannot be deleted",
    );
    let out = ok(&server, &["topic", "delete", "orders", "--yes"]);
    assert_eq!(out, "deleted topic orders\n");
    fails(
        &server,
        &["produce", "-t", "orders", "-p", "0", "x"],
        5,
        "UNKNOWN_TOPIC",
    );
    fails(
        &server,
        &["produce", "-t", "orders", "x"],
        5,
        "UNKNOWN_TOPIC",
    );
    fails(&server, &["consume", "-t", "orders"], 5, "UNKNOWN_TOPIC");
    let list = ok(&server, &["topic", "list"]);
    assert!(!list.contains("orders"), "{list}");
    // The default topic is untouched and still the default.
    ok(&server, &["produce", "still-here"]);
    let read = ok(&server, &["consume", "-t", "default", "--values-only"]);
    assert_eq!(read, "still-here\n");
}

#[test]
fn stdin_batches_spread_over_partitions() {
    let server = Server::start(&[]);
    ok(
        &server,
        &[
            "topic",
            "create",
            "logs",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
    );
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    let out = server.clog_stdin(&["produce", "-t", "logs", "--batch", "5"], lines.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("produced 10 records to logs: partition 0 offsets"),
        "{text}"
    );
    assert!(text.contains("partition 1 offsets"), "{text}");
    let mut values = Vec::new();
    for p in ["0", "1"] {
        let read = ok(
            &server,
            &["consume", "-t", "logs", "-p", p, "--values-only"],
        );
        assert_eq!(read.lines().count(), 5, "one batch per partition: {read}");
        values.extend(read.lines().map(str::to_string));
    }
    values.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
}

fn follower_client(cluster: &Cluster, index: usize) -> ClusterClient {
    let config = ClusterConfig::new(&cluster.nodes[index].addr())
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy {
            max_attempts: 400,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(300),
            max_total: Duration::from_secs(30),
        });
    ClusterClient::connect(config).expect("cluster client connects")
}

#[test]
fn a_replicated_topic_through_the_cluster_client_on_three_nodes() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    // Seeded with a follower only: the client finds the metadata leader.
    let mut client = follower_client(&cluster, follower);
    let settings = TopicSettings {
        partitions: 6,
        replication: 3,
        ..TopicSettings::default()
    };
    let created = client.create_topic("events", settings).expect("create");
    assert_eq!(created.partitions.len(), 6);
    assert!(created.partitions.iter().all(|p| p.replicas.len() == 3));
    let err = client.create_topic("events", settings).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicExists), "{err}");

    let mut written = Vec::new();
    for p in 0..6 {
        let target = TopicPartition::new("events", p);
        let value = format!("value-{p}").into_bytes();
        let offset = client.produce_to(&target, &value).expect("produce");
        written.push((target, offset, value));
    }
    // Round-robin without a partition reaches every partition.
    let picked: BTreeSet<u32> = (0..6)
        .map(|_| client.produce_to_topic("events", b"rr").expect("rr").0)
        .collect();
    assert_eq!(picked.len(), 6, "{picked:?}");

    // Every node holds every partition (replication 3 of 3) and serves it once its
    // commit index covers the record.
    for node in &cluster.nodes {
        let mut direct = node.client();
        for (target, offset, value) in &written {
            let record = wait_for(
                &format!("{target}@{offset} on node {}", node.id),
                SETTLE_DEADLINE,
                || direct.consume_from(target, *offset).ok(),
            );
            assert_eq!(record.offset, *offset);
            assert_eq!(&record.value, value);
        }
    }
    // Reads through the cluster client, spread over the replicas.
    for (target, offset, value) in &written {
        let fetched = client
            .fetch_from(target, *offset, 1 << 20, 0)
            .expect("fetch");
        assert_eq!(fetched.records.first().map(|r| &r.value), Some(value));
        let record = client.consume_from(target, *offset).expect("consume");
        assert_eq!(&record.value, value);
    }
    let (_, topics) = client.metadata(&["events"]).expect("metadata");
    assert_eq!(topics[0].partitions.len(), 6);
    let unknown = client
        .produce_to(&TopicPartition::new("nope", 0), b"x")
        .unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownTopic), "{unknown}");
    assert!(client
        .consume_from(&TopicPartition::new("events", 0), Offset(u64::MAX / 2))
        .is_err());
}

#[test]
fn bench_creates_its_topics_and_reports_every_partition() {
    let server = Server::start(&[]);
    let out = ok(
        &server,
        &[
            "bench",
            "--topics",
            "2",
            "--partitions",
            "2",
            "--count",
            "400",
        ],
    );
    assert!(out.contains("produce: 400 records"), "{out}");
    for target in ["bench-0/0", "bench-0/1", "bench-1/0", "bench-1/1"] {
        assert!(
            out.contains(&format!("partition {target}: 100 records")),
            "{target}: {out}"
        );
    }
    let list = ok(&server, &["topic", "list", "-o", "json"]);
    let names: BTreeSet<String> = list
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        names.contains("bench-0") && names.contains("bench-1"),
        "{names:?}"
    );
    // Every acknowledged record is in its partition (a retried produce whose
    // answer was lost may add a copy: at-least-once).
    let read = ok(
        &server,
        &["consume", "-t", "bench-1", "-p", "1", "--values-only"],
    );
    assert!(read.lines().count() >= 100, "{}", read.lines().count());
    // A second run reuses the topics.
    ok(
        &server,
        &[
            "bench",
            "--topics",
            "2",
            "--partitions",
            "2",
            "--count",
            "40",
        ],
    );
}
