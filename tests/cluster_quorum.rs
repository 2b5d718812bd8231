//! Quorum arithmetic with real processes: a 5-node cluster keeps working after
//! losing two nodes (the leader among them), and after losing a third it refuses
//! writes with a clear error (UNAVAILABLE / TIMEOUT, or NOT_LEADER with no leader
//! known) within the request timeout instead of hanging. One node back restores
//! writes.

mod cluster_common;
mod common;

use std::time::{Duration, Instant};

use cluster_common::{is_refusal, Checker, Cluster, REQUEST_TIMEOUT_MS, SETTLE_DEADLINE};
use commitlog::client::cluster::RetryPolicy;
use commitlog::client::Client;

#[test]
fn five_nodes_survive_losing_two_and_refuse_writes_without_a_quorum() {
    let mut cluster = Cluster::start(5);
    let checker = Checker::new();
    let mut client = cluster.client();
    for i in 0..20 {
        let value = format!("five-{i}");
        checker.ack(
            client.produce(value.as_bytes()).expect("produce"),
            value.as_bytes(),
        );
    }

    // Lose two: the leader and one follower.
    let leader = cluster.wait_leader();
    let second = (leader + 1) % 5;
    cluster.nodes[leader].kill();
    cluster.nodes[second].kill();
    let survivors = cluster.running();
    assert_eq!(survivors.len(), 3);
    let new_leader = cluster.wait_leader_among(&survivors);
    for i in 0..20 {
        let value = format!("three-{i}");
        let offset = client
            .produce(value.as_bytes())
            .expect("3 of 5 is a quorum: writes continue");
        checker.ack(offset, value.as_bytes());
    }
    // Every survivor has everything before the next loss.
    cluster.wait_caught_up(&survivors, checker.required_hwm().expect("acked"));

    // Lose a third (a follower: the leader stays, without a quorum).
    let third = *survivors
        .iter()
        .find(|&&i| i != new_leader)
        .expect("a follower");
    cluster.nodes[third].kill();
    let remaining = cluster.running();
    assert_eq!(remaining.len(), 2);

    // The cluster client gives up with a clear error within its budget.
    let budget = Duration::from_secs(2);
    let mut limited = cluster.client_with(RetryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_total: budget,
    });
    let started = Instant::now();
    let err = limited
        .produce(b"no-quorum")
        .expect_err("2 of 5 must refuse writes");
    let took = started.elapsed();
    assert!(is_refusal(&err), "not a clear refusal: {err}");
    let bound = budget + Duration::from_millis(REQUEST_TIMEOUT_MS) + Duration::from_secs(3);
    assert!(took < bound, "took {took:?} (bound {bound:?}): {err}");

    // Each remaining node, asked directly, answers with an error code (not silence)
    // within the request timeout.
    for &i in &remaining {
        let started = Instant::now();
        let limit = Duration::from_millis(REQUEST_TIMEOUT_MS) + Duration::from_secs(2);
        let result = Client::connect(
            cluster.nodes[i].addr().as_str(),
            limit + Duration::from_secs(3),
        )
        .and_then(|mut c| c.produce(b"no-quorum-direct"));
        let took = started.elapsed();
        let err = result.expect_err("no quorum, no acknowledgement");
        assert!(is_refusal(&err), "node {}: {err}", cluster.nodes[i].id);
        assert!(
            took < limit,
            "node {} answered after {took:?}",
            cluster.nodes[i].id
        );
        eprintln!("node {} refused in {took:?}: {err}", cluster.nodes[i].id);
    }

    // One node back makes 3 of 5 again: writes resume.
    cluster.restart(third);
    let mut client = cluster.client();
    for i in 0..10 {
        let value = format!("again-{i}");
        checker.ack(
            client
                .produce(value.as_bytes())
                .expect("writes resume with a quorum"),
            value.as_bytes(),
        );
    }
    let running = cluster.running();
    let report = checker.verify(&cluster.addrs(&running), SETTLE_DEADLINE);
    assert_eq!(report.acked, 50);
}
