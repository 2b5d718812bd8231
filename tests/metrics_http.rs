//! `--metrics-addr` against real `commitlogd` processes: `/metrics` counts what the
//! test did and parses as Prometheus text format; `/healthz` and `/readyz`; 404 and
//! bad requests; a 2-node cluster's readiness and Raft/gossip gauges.

mod cluster_common;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cluster_common::{wait_for, Cluster};
use commitlog::types::Offset;
use common::{Server, FIRST_OFFSET};

/// A free loopback port: bind port 0, note it, release it.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Sends raw bytes, returns (status code, body). Bounded by socket timeouts.
fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer (431) and close before reading everything we send.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// Parses Prometheus text format strictly enough to catch mistakes: every sample is
/// `name{labels} value` or `name value`, its family has `# HELP` and `# TYPE` lines
/// before it, counters end in `_total`. Returns sample (name with labels) -> value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP has text");
            assert!(!doc.is_empty());
            help.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {name}");
            }
            assert!(help.contains(name), "TYPE before HELP for {name}");
            types.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels close");
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').expect("label k=v");
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2);
                    }
                    name
                }
                None => series,
            };
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            let family = types.keys().find(|f| {
                name == f.as_str()
                    || (types[*f] == "histogram"
                        && name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s)))
            });
            assert!(family.is_some(), "sample without HELP/TYPE: {line}");
            samples.insert(series.to_string(), value);
        }
    }
    samples
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("missing {key} in {samples:#?}"))
}

#[test]
fn single_node_metrics_count_requests_and_health_endpoints_answer() {
    let metrics = free_addr();
    let server = Server::start(&["--metrics-addr", &metrics.to_string()]);
    assert!(server.stderr().contains("metrics on http://"));

    let (status, body) = get(metrics, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = get(metrics, "/readyz");
    assert_eq!(status, 200);

    let before = parse_prometheus(&get(metrics, "/metrics").1);
    assert_eq!(
        sample(
            &before,
            "commitlog_requests_total{api=\"Produce\",code=\"NONE\"}"
        ),
        0.0
    );

    let mut client = server.client();
    for i in 0..5u8 {
        client.produce(&[i; 10]).unwrap();
    }
    client.produce_batch(&[b"abc", b"defg"]).unwrap();
    for i in 0..3 {
        client.consume(Offset(FIRST_OFFSET + i)).unwrap();
    }
    assert!(client.consume(Offset(1000)).is_err());

    let (status, text) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    let after = parse_prometheus(&text);
    let get_s = |k: &str| sample(&after, k);
    assert_eq!(
        get_s("commitlog_requests_total{api=\"Produce\",code=\"NONE\"}"),
        5.0
    );
    assert_eq!(
        get_s("commitlog_requests_total{api=\"ProduceBatch\",code=\"NONE\"}"),
        1.0
    );
    assert_eq!(
        get_s("commitlog_requests_total{api=\"Consume\",code=\"NONE\"}"),
        3.0
    );
    assert_eq!(
        get_s("commitlog_requests_total{api=\"Consume\",code=\"OFFSET_OUT_OF_RANGE\"}"),
        1.0
    );
    assert_eq!(get_s("commitlog_produce_records_total"), 7.0);
    assert_eq!(get_s("commitlog_produce_bytes_total"), 57.0);
    assert_eq!(get_s("commitlog_consume_records_total"), 3.0);
    assert_eq!(get_s("commitlog_consume_bytes_total"), 30.0);
    assert_eq!(get_s("commitlog_open_connections"), 1.0);
    assert_eq!(
        get_s("commitlog_request_duration_seconds_count{api=\"Produce\"}"),
        5.0
    );
    assert_eq!(
        get_s("commitlog_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"),
        5.0
    );
    // --dev fsyncs every batch: at least one fsync per produce round trip.
    assert!(get_s("commitlog_fsync_duration_seconds_count") >= 6.0);
    assert_eq!(get_s("commitlog_ready"), 1.0);
    // A single node is a one-voter Raft cluster: the same Raft gauges as a cluster.
    assert_eq!(get_s("commitlog_raft_term"), 1.0);
    assert_eq!(get_s("commitlog_raft_role{role=\"leader\"}"), 1.0);

    // Unknown path, wrong method, garbage, an oversized head: answered, not fatal.
    assert_eq!(get(metrics, "/nope").0, 404);
    assert_eq!(http_raw(metrics, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http_raw(metrics, b"\x00\x01\xffgarbage\r\n\r\n").0, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(http_raw(metrics, huge.as_bytes()).0, 431);
    // A connection that closes without a full request is just dropped.
    drop(TcpStream::connect(metrics).unwrap());
    assert_eq!(get(metrics, "/healthz").0, 200);
    client.ping().unwrap();
}

#[test]
fn cluster_node_is_ready_as_a_voter_and_publishes_raft_gauges() {
    let mut cluster = Cluster::start(1);
    let metrics = free_addr();
    let index = cluster.add_node_with("127.0.0.1", &["--metrics-addr", &metrics.to_string()]);
    cluster.wait_voters(2);
    let leader = cluster.wait_leader();
    let mut client = cluster.nodes[leader].client();
    for i in 0..3u8 {
        client.produce(&[i; 8]).unwrap();
    }
    // Readiness and gauges are published per Raft tick: poll until they show.
    let samples = wait_for(
        "node 2 ready with raft gauges",
        Duration::from_secs(20),
        || {
            let (status, _) = get(metrics, "/readyz");
            let samples = parse_prometheus(&get(metrics, "/metrics").1);
            let commit = samples.get("commitlog_raft_commit_index").copied()?;
            (status == 200 && commit >= 3.0).then_some(samples)
        },
    );
    assert!(sample(&samples, "commitlog_raft_term") >= 1.0);
    assert!(sample(&samples, "commitlog_raft_last_index") >= 3.0);
    let roles: f64 = ["follower", "pre_candidate", "candidate", "leader"]
        .iter()
        .map(|r| sample(&samples, &format!("commitlog_raft_role{{role=\"{r}\"}}")))
        .sum();
    assert_eq!(roles, 1.0, "exactly one role is 1");
    assert!(sample(&samples, "commitlog_raft_leader_changes_total") >= 1.0);
    assert_eq!(
        sample(&samples, "commitlog_gossip_members{state=\"alive\"}"),
        1.0,
        "the other member (this node is not counted)"
    );
    assert!(sample(&samples, "commitlog_fsync_duration_seconds_count") >= 1.0);
    if leader == index {
        assert!(samples.contains_key("commitlog_raft_follower_lag_entries{follower=\"1\"}"));
    }
}
