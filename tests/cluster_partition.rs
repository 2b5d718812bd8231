//! A real network partition (iptables, one loopback address per node): the leader is
//! cut off from the other two. The majority elects a new leader and keeps accepting
//! writes; the old leader acknowledges nothing it cannot commit; after healing it
//! converges to the majority's log.
//!
//! Needs root and iptables (CI has both: `.ci/run` installs iptables). Elsewhere the
//! test prints why and skips.

mod cluster_common;
mod common;

use std::time::{Duration, Instant};

use cluster_common::partition::{self, Partition};
use cluster_common::{is_refusal, Checker, Cluster, REQUEST_TIMEOUT_MS, SETTLE_DEADLINE};
use commitlog::client::cluster::{ClusterClient, ClusterConfig};
use commitlog::client::{Client, ClientError};

const IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

#[test]
fn partitioned_leader_commits_nothing_majority_continues_and_it_converges_after_healing() {
    if let Some(why) = partition::unavailable_reason() {
        eprintln!("SKIPPED partition test: {why}");
        return;
    }
    let cluster = Cluster::start_on(&IPS);
    let checker = Checker::new();
    let mut client = cluster.client();
    for i in 0..20 {
        let value = format!("before-{i}");
        checker.ack(
            client.produce(value.as_bytes()).expect("produce"),
            value.as_bytes(),
        );
    }
    let old = cluster.wait_leader();
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let majority_ips: Vec<&str> = majority.iter().map(|&i| IPS[i]).collect();

    let cut = Partition::new(&[IPS[old]], &majority_ips);
    eprintln!(
        "partition {}: {} | {:?}",
        cut.chain(),
        IPS[old],
        majority_ips
    );

    // The majority elects a new leader among itself.
    let new = cluster.wait_leader_among(&majority);
    assert_ne!(new, old);

    // ... and keeps accepting writes (a client that knows only the majority).
    let seeds = cluster.addrs(&majority).join(",");
    let mut majority_client = ClusterClient::connect(
        ClusterConfig::new(&seeds).timeout(Duration::from_millis(REQUEST_TIMEOUT_MS + 3_000)),
    )
    .expect("client of the majority");
    for i in 0..30 {
        let value = format!("majority-{i}");
        let (via, offset) = majority_client
            .produce_via(value.as_bytes())
            .expect("the majority accepts writes");
        assert_ne!(
            via,
            cluster.nodes[old].addr(),
            "acknowledged by the cut-off node"
        );
        checker.ack(offset, value.as_bytes());
    }

    // The old leader acknowledges nothing: it cannot reach a quorum.
    let per_request = Duration::from_millis(REQUEST_TIMEOUT_MS + 2_000);
    for i in 0..2 {
        let value = format!("minority-{i}");
        checker.forbid(value.as_bytes());
        let started = Instant::now();
        let result = Client::connect(cluster.nodes[old].addr().as_str(), per_request)
            .and_then(|mut c| c.produce(value.as_bytes()));
        match result {
            Ok(offset) => panic!("the cut-off node acknowledged {value} at {offset}"),
            Err(e) => assert!(
                is_refusal(&e) || matches!(e, ClientError::Timeout),
                "unexpected error from the cut-off node: {e}"
            ),
        }
        assert!(started.elapsed() < per_request + Duration::from_secs(1));
    }

    // Heal: the old leader rejoins as a follower of the newer term and converges.
    cut.heal();
    let leader = cluster.wait_leader();
    let leader_term = cluster.nodes[leader].status().expect("status").term;
    for i in 0..20 {
        let value = format!("after-{i}");
        checker.ack(
            client
                .produce(value.as_bytes())
                .expect("produce after healing"),
            value.as_bytes(),
        );
    }
    let report = checker.verify(&cluster.addrs(&[0, 1, 2]), SETTLE_DEADLINE);
    assert_eq!(report.acked, 70);
    let old_status = cluster.nodes[old].status().expect("old leader answers");
    assert!(old_status.term >= leader_term, "{old_status:?}");
}

#[test]
fn the_iptables_chain_is_removed_even_when_the_test_panics() {
    if let Some(why) = partition::unavailable_reason() {
        eprintln!("SKIPPED partition test: {why}");
        return;
    }
    let mut chain = String::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cut = Partition::new(&["127.0.0.9"], &["127.0.0.10"]);
        chain = cut.chain().to_string();
        assert!(iptables_rules().contains(&chain), "chain was not created");
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    assert!(!chain.is_empty());
    assert!(
        !iptables_rules().contains(&chain),
        "chain {chain} left behind:\n{}",
        iptables_rules()
    );
}

fn iptables_rules() -> String {
    let out = std::process::Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .expect("iptables -S");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
