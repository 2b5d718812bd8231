//! A 3-node cluster of real processes: produce on the leader, consume the same
//! records from every follower; NOT_LEADER hints; `clog` servers/status/produce/
//! consume against the cluster; the cluster client against a single `--dev` node.

mod cluster_common;
mod common;

use std::time::Duration;

use cluster_common::{Checker, Cluster};
use commitlog::client::cluster::{ClusterClient, ClusterConfig};
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, ServerRole};

#[test]
fn three_nodes_produce_on_the_leader_and_consume_from_every_follower() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader();
    let leader_addr = cluster.nodes[leader].addr();
    let checker = Checker::new();

    // The cluster client sends every produce to the leader.
    let mut client = cluster.client();
    let term_before = cluster.nodes[leader].status().expect("status").term;
    let mut acked: Vec<(Offset, Vec<u8>)> = Vec::new();
    let mut vias: Vec<String> = Vec::new();
    for i in 0..40 {
        let value = format!("basic-{i}").into_bytes();
        let (via, offset) = client.produce_via(&value).expect("produce");
        vias.push(via);
        checker.ack(offset, &value);
        acked.push((offset, value));
    }
    // Unless an election happened meanwhile (a loaded machine), all went to the leader.
    let stable = cluster.nodes[leader]
        .status()
        .is_some_and(|s| s.term == term_before && s.role == ServerRole::Leader);
    if stable {
        assert!(vias.iter().all(|v| *v == leader_addr), "{vias:?}");
    } else {
        eprintln!("leadership changed during the test; not checking where produces went");
    }
    let batch: Vec<Vec<u8>> = (0..25).map(|i| format!("batch-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
    let first = client.produce_batch(&refs).expect("produce batch");
    checker.ack_batch(first, &refs);
    for (i, v) in batch.iter().enumerate() {
        acked.push((Offset(first.0 + i as u64), v.clone()));
    }
    assert!(
        acked[0].0 .0 >= 1,
        "cluster offsets start at 1, got {}",
        acked[0].0
    );
    let need = checker.required_hwm().expect("acked something");

    // Every follower serves the same records at the same offsets (plain
    // connections, one per follower, no routing).
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    cluster.wait_caught_up(&followers, need);
    for &f in &followers {
        let node = &cluster.nodes[f];
        let mut c = node.client();
        for (offset, value) in &acked {
            let record = c
                .consume(*offset)
                .unwrap_or_else(|e| panic!("consume {offset} from node {}: {e}", node.id));
            assert_eq!(record.offset, *offset, "node {}", node.id);
            assert_eq!(&record.value, value, "node {} offset {offset}", node.id);
        }
    }
    // The cluster client's reads (spread over followers) see them too.
    let mut readers: Vec<String> = Vec::new();
    for (offset, value) in acked.iter().take(10) {
        let consumed = client.consume(*offset).expect("routed consume");
        assert_eq!((consumed.offset, &consumed.value), (*offset, value));
        readers.extend(client.last_served_by().map(str::to_string));
        let fetched = client.fetch(*offset, 1 << 20, 0).expect("routed fetch");
        assert_eq!(fetched.records.first().map(|r| &r.value), Some(value));
        readers.extend(client.last_served_by().map(str::to_string));
    }
    // Round-robin over the two followers, never the leader (while it leads).
    if stable {
        let mut follower_addrs = cluster.addrs(&followers);
        follower_addrs.sort();
        let mut seen = readers.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, follower_addrs, "reads served by {readers:?}");
        let per_node: Vec<usize> = follower_addrs
            .iter()
            .map(|a| readers.iter().filter(|r| *r == a).count())
            .collect();
        assert_eq!(per_node, [10, 10], "reads served by {readers:?}");
    }

    // A follower refuses produces with a hint naming the leader.
    let leader = cluster.wait_leader();
    let leader_addr = cluster.nodes[leader].addr();
    let follower = (leader + 1) % 3;
    let mut direct = cluster.nodes[follower].client();
    let err = direct
        .produce(b"to-a-follower")
        .expect_err("follower must refuse");
    assert_eq!(err.code(), Some(ErrorCode::NotLeader), "{err}");
    let hint = err.leader_hint().expect("NOT_LEADER carries a hint");
    assert_eq!(hint.addr, leader_addr);
    assert_eq!(hint.leader_id.0, cluster.nodes[leader].id);

    let report = checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(20));
    assert_eq!(report.acked, 65);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn clog_routes_through_the_cluster_and_reports_servers_and_status() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    // Seeded with a follower only: the produce still lands (on the leader).
    let seed = cluster.nodes[follower].addr();
    let out = common::clog(&seed, &["produce", "one", "two"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offsets: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| l.parse().expect("an offset per line"))
        .collect();
    assert_eq!(offsets.len(), 2);
    assert!(offsets[0] >= 1 && offsets[1] > offsets[0], "{offsets:?}");
    let lines: String = (0..300).map(|i| format!("line-{i}\n")).collect();
    let out = common::clog(&seed, &["produce"], Some(lines.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with("produced 300 records"),
        "{}",
        stdout(&out)
    );

    // Several seeds, the first of them dead: consume still works.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let seeds = format!("{dead},{}", cluster.seeds());
    cluster.wait_caught_up(&[0, 1, 2], commitlog::types::Offset(offsets[1] + 301));
    let out = common::clog(
        &seeds,
        &["consume", "--from", &offsets[0].to_string(), "--count", "3"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let values: Vec<&str> = text.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(values, ["one", "two", "line-0"], "{text}");

    let out = common::clog(&seed, &["tail", "-n", "2", "--values-only"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "line-298\nline-299\n");

    // bench produces at the leader (pipelined connections) and reads from a follower.
    let out = common::clog(
        &seed,
        &[
            "bench",
            "--count",
            "300",
            "--producers",
            "2",
            "--window",
            "8",
            "--size",
            "64",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("RESULT\tCommitlog\tProduce"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).starts_with("produce: 300 records"),
        "{}",
        stdout(&out)
    );
    let out = common::clog(&seed, &["bench", "--consume", "--count", "300"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("RESULT\tCommitlog\tConsume"),
        "{}",
        stdout(&out)
    );

    let out = common::clog(&seed, &["servers"], None);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");
    assert_eq!(text.matches(" follower ").count(), 2, "{text}");
    for node in &cluster.nodes {
        assert!(text.contains(&node.addr()), "{text}");
    }

    let out = common::clog(&seed, &["status"], None);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().contains("commit"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(&cluster.nodes[leader].addr()), "{text}");
    assert!(!text.contains("unreachable"), "{text}");
}

#[test]
fn the_cluster_client_works_unchanged_against_a_single_dev_node() {
    let server = common::Server::start(&["--node-name", "solo"]);
    let mut client = ClusterClient::connect(ClusterConfig::new(&server.addr.to_string()))
        .expect("connect to a dev node");
    assert_eq!(client.leader(), Some(server.addr.to_string().as_str()));
    assert_eq!(client.members().len(), 1);
    let a = client.produce(b"a").expect("produce");
    let b = client.produce(b"b").expect("produce");
    assert_eq!(b.0, a.0 + 1);
    assert_eq!(client.consume(a).expect("consume").value, b"a");
    let fetched = client.fetch(a, 1 << 20, 0).expect("fetch");
    assert_eq!(fetched.records.len(), 2);
    // Beyond the end is the leader's answer: final, not retried forever.
    let err = client.consume(Offset(b.0 + 100)).expect_err("out of range");
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange));
    let rows = client.status_all().expect("status");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1.as_ref().expect("status").role, ServerRole::Leader);
}
