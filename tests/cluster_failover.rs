//! Leader failure under load: SIGKILL the leader while a client keeps producing; a
//! new leader is elected, the client continues after retries, and every
//! acknowledged record is readable at its offset from every node. Then the killed
//! node restarts on its data and catches up with the full log.

mod cluster_common;

use std::sync::Arc;
use std::time::Duration;

use cluster_common::{Checker, Cluster, Producer, SETTLE_DEADLINE};
use commitlog::wire::ServerRole;

#[test]
fn leader_sigkill_under_produce_then_the_killed_node_restarts_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let checker = Arc::new(Checker::new());
    let old = cluster.wait_leader();
    let old_term = cluster.nodes[old].status().expect("status").term;

    let producer = Producer::start(
        &cluster,
        &checker,
        "kill",
        1_000_000,
        Duration::from_secs(90),
    );
    producer.wait_acked(0, 100, SETTLE_DEADLINE);

    // SIGKILL the leader mid-stream.
    let retries_before = producer.retries();
    cluster.nodes[old].kill();
    let at_kill = producer.acked();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = cluster.wait_leader_among(&others);
    let new_term = cluster.nodes[new].status().expect("status").term;
    assert!(
        new_term > old_term,
        "new leader's term {new_term} vs {old_term}"
    );

    // The client rides out the election (retries) and continues.
    producer.wait_acked(at_kill, 100, SETTLE_DEADLINE);
    assert!(
        producer.retries() > retries_before,
        "the produce after the kill must have been retried"
    );

    // Every acknowledged record so far is on both survivors.
    let mid = checker.verify(&cluster.addrs(&others), SETTLE_DEADLINE);
    assert!(mid.acked >= 200, "{mid:?}");

    // Restart the killed node on its data dir while produces continue.
    cluster.restart(old);
    let at_restart = producer.acked();
    producer.wait_acked(at_restart, 100, SETTLE_DEADLINE);
    let (acked, failed) = producer.stats_snapshot_and_stop();
    assert_eq!(
        failed.0, 0,
        "produces failed despite retries: {:?}",
        failed.1
    );

    // It catches up and serves the full log, identical to the others'.
    let report = checker.verify(&cluster.addrs(&[0, 1, 2]), SETTLE_DEADLINE);
    assert_eq!(report.acked as u64, acked, "{report:?}");
    let status = cluster.nodes[old].status().expect("restarted node answers");
    assert_ne!(status.role, ServerRole::Learner);
    eprintln!("failover: {acked} acknowledged; logs {:?}", report.per_node);
}
