use std::time::Duration;

use super::http::respond_to;
use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(100)); // exactly the first bound
    h.observe(Duration::from_micros(101)); // second bucket
    h.observe(Duration::from_secs(60)); // +Inf
    let c = h.cumulative();
    assert_eq!(c[0], 1);
    assert_eq!(c[1], 2);
    assert_eq!(c[LATENCY_BUCKETS_US.len() - 1], 2);
    assert_eq!(c[LATENCY_BUCKETS_US.len()], 3);
    assert_eq!(h.count(), 3);
}

#[test]
fn render_has_help_type_and_counted_values() {
    let m = Metrics::new();
    m.record_request(ApiKey::Produce, ErrorCode::None, Duration::from_millis(2));
    m.record_request(
        ApiKey::Consume,
        ErrorCode::OffsetOutOfRange,
        Duration::from_micros(50),
    );
    m.add_produced(3, 30);
    m.observe_fsync(Duration::from_millis(1));
    let text = m.render();
    assert!(
        text.contains("commitlog_requests_total{api=\"Produce\",code=\"NONE\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("commitlog_requests_total{api=\"Consume\",code=\"OFFSET_OUT_OF_RANGE\"} 1\n")
    );
    assert!(text.contains("commitlog_produce_records_total 3\n"));
    assert!(text.contains("commitlog_produce_bytes_total 30\n"));
    assert!(text.contains("commitlog_fsync_duration_seconds_count 1\n"));
    assert!(text
        .contains("commitlog_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 1\n"));
    assert!(text
        .contains("commitlog_request_duration_seconds_bucket{api=\"Produce\",le=\"0.001\"} 0\n"));
    // Single node: no raft series.
    assert!(!text.contains("commitlog_raft_term"));
    // Every sample's family has HELP and TYPE before it.
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                declared.iter().any(|d| name == d
                    || name
                        .strip_prefix(d.as_str())
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                "undeclared sample {line}"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
}

#[test]
fn cluster_gauges_and_readiness() {
    let m = Metrics::new();
    assert_eq!(m.readiness(), Readiness::NotServing);
    m.set_serving(true);
    assert_eq!(m.readiness(), Readiness::Ready);
    let mut g = RaftGauges {
        term: 7,
        commit: 40,
        last: 42,
        role: Role::Leader,
        readiness: Readiness::Ready,
        gossip: [3, 1, 0],
    };
    m.publish_raft(&g, &[(2, 5)]);
    m.observe_leader(Some(1));
    m.observe_leader(Some(1));
    m.observe_leader(None);
    m.observe_leader(Some(2));
    let text = m.render();
    assert!(text.contains("commitlog_raft_term 7\n"));
    assert!(text.contains("commitlog_raft_role{role=\"leader\"} 1\n"));
    assert!(text.contains("commitlog_raft_role{role=\"follower\"} 0\n"));
    assert!(text.contains("commitlog_raft_follower_lag_entries{follower=\"2\"} 5\n"));
    assert!(text.contains("commitlog_gossip_members{state=\"alive\"} 3\n"));
    assert!(text.contains("commitlog_raft_leader_changes_total 2\n"));
    assert!(text.contains("commitlog_ready 1\n"));
    g.readiness = Readiness::NoLeader;
    m.publish_raft(&g, &[]);
    assert_eq!(m.readiness(), Readiness::NoLeader);
    assert!(!m.render().contains("follower=\"2\""));
}

#[test]
fn http_routing() {
    let m = Metrics::new();
    m.set_serving(true);
    assert_eq!(respond_to(b"GET /healthz HTTP/1.1\r\n\r\n", &m).0, "200 OK");
    assert_eq!(respond_to(b"GET /readyz HTTP/1.0\r\n\r\n", &m).0, "200 OK");
    assert_eq!(
        respond_to(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &m).0,
        "200 OK"
    );
    assert_eq!(
        respond_to(b"GET /nope HTTP/1.1\r\n\r\n", &m).0,
        "404 Not Found"
    );
    assert_eq!(
        respond_to(b"POST /metrics HTTP/1.1\r\n\r\n", &m).0,
        "405 Method Not Allowed"
    );
    assert_eq!(
        respond_to(b"\xff\xfe garbage\r\n\r\n", &m).0,
        "400 Bad Request"
    );
    assert_eq!(respond_to(b"GET /metrics\r\n\r\n", &m).0, "400 Bad Request");
    m.set_serving(false);
    let (status, _, body) = respond_to(b"GET /readyz HTTP/1.1\r\n\r\n", &m);
    assert_eq!(status, "503 Service Unavailable");
    assert!(body.contains("not serving"));
}
