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

/// The record count of a `clog bench` RESULT line (`RESULT TAB Commitlog TAB kind
/// TAB label TAB count ...`).
fn result_count(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT\t"))
        .unwrap_or_else(|| panic!("no RESULT line: {out}"));
    let count = line.split('\t').nth(4).unwrap_or_default();
    count
        .parse()
        .unwrap_or_else(|e| panic!("{e}: `{count}` in {line}"))
}

/// The count on the `partition TARGET: N records` line of a bench output.
fn partition_count(out: &str, target: &str) -> u64 {
    let prefix = format!("partition {target}: ");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no line for {target}: {out}"));
    let count = line.split(' ').next().unwrap_or_default();
    count.parse().unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn bench_consume_reads_every_partition_of_a_topic() {
    let server = Server::start(&[]);
    ok(
        &server,
        &[
            "topic",
            "create",
            "reads",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
    );
    let produced = ok(
        &server,
        &["bench", "-t", "reads", "--count", "900", "--window", "4"],
    );
    assert_eq!(result_count(&produced), 900, "{produced}");
    // What each partition holds, read record by record (a produce retried after a
    // lost answer may add a copy: at-least-once, so count rather than assume 300).
    let held: Vec<u64> = ["0", "1", "2"]
        .iter()
        .map(|p| {
            let read = ok(
                &server,
                &["consume", "-t", "reads", "-p", p, "--values-only"],
            );
            read.lines().count() as u64
        })
        .collect();
    assert!(held.iter().all(|&n| n >= 300), "{held:?}");

    let out = ok(&server, &["bench", "-t", "reads", "--consume"]);
    assert_eq!(result_count(&out), held.iter().sum::<u64>(), "{out}");
    assert!(out.contains("with 3 reader(s)"), "{out}");
    for (p, &n) in held.iter().enumerate() {
        assert_eq!(partition_count(&out, &format!("reads/{p}")), n, "{out}");
    }
    // One partition; a count split over the partitions.
    let out = ok(&server, &["bench", "-t", "reads", "-p", "1", "--consume"]);
    assert_eq!(result_count(&out), held[1], "{out}");
    let out = ok(
        &server,
        &["bench", "-t", "reads", "--consume", "--count", "301"],
    );
    assert_eq!(result_count(&out), 301, "{out}");
    assert_eq!(partition_count(&out, "reads/0"), 101, "{out}");
    assert_eq!(partition_count(&out, "reads/2"), 100, "{out}");

    // Unknown partitions and topics are refused before anything is read.
    let err = fails(
        &server,
        &["bench", "-t", "reads", "-p", "3", "--consume"],
        5,
        "UNKNOWN_TOPIC",
    );
    assert!(err.contains("no partition 3"), "{err}");
    fails(
        &server,
        &["bench", "-t", "nope", "--consume"],
        5,
        "UNKNOWN_TOPIC",
    );
    fails(
        &server,
        &["bench", "--topics", "2", "--consume"],
        5,
        "bench-0",
    );
    // --topics: the bench topics written, then read back.
    ok(
        &server,
        &[
            "bench",
            "--topics",
            "2",
            "--partitions",
            "2",
            "--count",
            "200",
        ],
    );
    let out = ok(&server, &["bench", "--topics", "2", "--consume"]);
    assert!(out.contains("with 4 reader(s)"), "{out}");
    assert!(result_count(&out) >= 200, "{out}");
    for target in ["bench-0/0", "bench-0/1", "bench-1/0", "bench-1/1"] {
        assert!(partition_count(&out, target) >= 50, "{target}: {out}");
    }
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn json_output_names_the_topic_and_partition() {
    let server = Server::start(&[]);
    ok(
        &server,
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
    );
    let produced = json_lines(&ok(
        &server,
        &["-o", "json", "produce", "-t", "events", "-p", "1", "a", "b"],
    ));
    assert_eq!(produced.len(), 2);
    for p in &produced {
        assert_eq!(p["topic"], "events");
        assert_eq!(p["partition"], 1);
    }
    let read = json_lines(&ok(
        &server,
        &["-o", "json", "consume", "-t", "events", "-p", "1"],
    ));
    assert_eq!(read.len(), 2);
    for (record, (p, value)) in read.iter().zip(produced.iter().zip(["a", "b"])) {
        assert_eq!(record["topic"], "events");
        assert_eq!(record["partition"], 1);
        assert_eq!(record["offset"], p["offset"]);
        assert_eq!(record["value"], value);
        assert_eq!(record["size"], 1);
    }
    let last = json_lines(&ok(
        &server,
        &["-o", "json", "tail", "-n", "1", "-t", "events", "-p", "1"],
    ));
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["topic"], "events");
    assert_eq!(last[0]["partition"], 1);
    assert_eq!(last[0]["value"], "b");
    // The default topic names itself too.
    ok(&server, &["produce", "plain"]);
    let read = json_lines(&ok(&server, &["-o", "json", "consume"]));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["topic"], "default");
    assert_eq!(read[0]["partition"], 0);
    // A stdin produce over both partitions: one summary object per partition.
    let out = server.clog_stdin(
        &["-o", "json", "produce", "-t", "events", "--batch", "2"],
        b"1\n2\n3\n4\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json_lines(&stdout(&out));
    assert_eq!(summary.len(), 2, "{summary:?}");
    let partitions: BTreeSet<u64> = summary
        .iter()
        .map(|s| s["partition"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(partitions, BTreeSet::from([0, 1]));
    for s in &summary {
        assert_eq!(s["topic"], "events");
        assert_eq!(s["records"], 2);
        assert!(
            s["first_offset"].as_u64() < s["last_offset"].as_u64(),
            "{s}"
        );
    }
}
