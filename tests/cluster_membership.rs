//! Membership changes with real processes: a fourth node joins a running cluster
//! through gossip while a client keeps producing (the leader adds it as a learner,
//! then promotes it to voter once caught up), then it leaves gracefully
//! (`--leave-on-shutdown` + SIGTERM: the leader removes it from the configuration).
//! Proof that it is really gone from the voters: with three voters left, losing one
//! more still leaves a quorum (with four voters, two of four would not be).

mod cluster_common;
mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_common::{wait_for, Checker, Cluster, Producer, SETTLE_DEADLINE};
use commitlog::wire::ServerRole;

#[test]
fn a_node_joins_through_gossip_while_producing_and_leaves_gracefully() {
    let mut cluster = Cluster::start(3);
    let checker = Arc::new(Checker::new());
    let producer = Producer::start(
        &cluster,
        &checker,
        "member",
        1_000_000,
        Duration::from_secs(90),
    );
    producer.wait_acked(0, 100, SETTLE_DEADLINE);

    // Join: gossip tells the leader, which adds a learner and promotes it.
    let added = cluster.add_node_with("127.0.0.1", &["--leave-on-shutdown"]);
    let added_id = cluster.nodes[added].id;
    let mut roles_seen: Vec<ServerRole> = Vec::new();
    wait_for("the new node to become a voter", SETTLE_DEADLINE, || {
        let leader = cluster.try_leader()?;
        let servers = cluster.nodes[leader].servers()?;
        let me = servers.iter().find(|s| s.id.0 == added_id)?;
        if roles_seen.last() != Some(&me.role) {
            roles_seen.push(me.role);
        }
        (me.role == ServerRole::Follower && me.live).then_some(())
    });
    eprintln!("roles of the joining node as the leader reported them: {roles_seen:?}");
    assert!(
        !roles_seen.contains(&ServerRole::Leader),
        "a joining node must not lead before catching up: {roles_seen:?}"
    );
    cluster.wait_voters(4);

    // It catches up while produces continue.
    let at_join = producer.acked();
    producer.wait_acked(at_join, 100, SETTLE_DEADLINE);
    cluster.wait_caught_up(&[added], checker.required_hwm().expect("acked"));

    // Graceful leave: the leader removes it from the configuration.
    let status = cluster.nodes[added].terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    wait_for(
        "the leader to drop the node that left",
        SETTLE_DEADLINE,
        || {
            let leader = cluster.try_leader()?;
            let servers = cluster.nodes[leader].servers()?;
            let gone = servers
                .iter()
                .find(|s| s.id.0 == added_id)
                .is_none_or(|s| !matches!(s.role, ServerRole::Leader | ServerRole::Follower));
            gone.then_some(())
        },
    );

    // Three voters remain: losing one of them still leaves a quorum.
    let leader = cluster.wait_leader();
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    cluster.nodes[victim].kill();
    let at_kill = producer.acked();
    producer.wait_acked(at_kill, 50, SETTLE_DEADLINE);
    let (acked, (failed, last_error)) = producer.stats_snapshot_and_stop();
    assert_eq!(failed, 0, "produces failed despite retries: {last_error:?}");

    let running = cluster.running();
    let report = checker.verify(&cluster.addrs(&running), SETTLE_DEADLINE);
    assert_eq!(report.acked as u64, acked);
    eprintln!(
        "membership: {acked} acknowledged; logs {:?}",
        report.per_node
    );
}
