//! A cluster node heals damaged log entries from its peers by itself (README "When
//! the disk lies"): a flipped byte in a sealed segment of a follower is found by the
//! scrubber and rewritten from a peer's copy, byte for byte; damage on the leader
//! does not stop a wiped follower from catching up through it; a topic partition's
//! replica heals the same way.

mod cluster_common;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_common::{wait_for, Checker, Cluster};

/// Small segments (many sealed ones) and a fast scrubber (damage found in well under
/// a second).
const FLAGS: &[&str] = &[
    "--segment-max-bytes",
    "64KiB",
    "--scrub-bytes-per-sec",
    "64MiB",
];
const HEAL_DEADLINE: Duration = Duration::from_secs(60);

fn start() -> Cluster {
    Cluster::start_with(&["127.0.0.1"; 3], FLAGS)
}

/// Produces `n` records of ~200 bytes in batches; returns the checker.
fn fill(cluster: &Cluster, n: usize) -> Checker {
    let checker = Checker::new();
    let mut client = cluster.client();
    for batch in 0..n / 50 {
        let values: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("heal-{batch}-{i}-{}", "x".repeat(180)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let first = client.produce_batch(&refs).expect("produce");
        checker.ack_batch(first, &refs);
    }
    let need = checker.required_hwm().expect("acked");
    cluster.wait_caught_up(&[0, 1, 2], need);
    checker
}

/// The sealed stores of a node (every store but the newest), oldest first.
fn sealed_stores(data: &Path) -> Vec<PathBuf> {
    let mut stores: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "store"))
        .collect();
    stores.sort();
    stores.pop();
    stores
}

/// Flips one byte in the middle of `store`; returns the file as it was.
fn flip_middle_byte(store: &Path) -> Vec<u8> {
    let original = std::fs::read(store).expect("read store");
    let mut damaged = original.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x5a;
    std::fs::write(store, &damaged).expect("write store");
    original
}

fn wait_file_equals(path: &Path, want: &[u8], what: &str) {
    wait_for(what, HEAL_DEADLINE, || {
        (std::fs::read(path).ok()?.as_slice() == want).then_some(())
    });
}

#[test]
fn a_follower_heals_a_flipped_byte_in_a_sealed_segment_from_a_peer() {
    let mut cluster = start();
    let checker = fill(&cluster, 1500);
    let leader = cluster.wait_leader();
    let f = (leader + 1) % 3;
    cluster.nodes[f].terminate();
    let stores = sealed_stores(&cluster.nodes[f].data_dir());
    assert!(
        stores.len() >= 3,
        "want several sealed segments: {stores:?}"
    );
    let store = &stores[stores.len() / 2];
    let original = flip_middle_byte(store);
    cluster.restart(f);

    // The scrubber finds it, the healer rewrites it from a peer: the file is
    // byte-identical to what it was, and every record reads back everywhere.
    wait_file_equals(store, &original, "the damaged store to be healed");
    let log = cluster.nodes[f].log();
    assert!(
        log.contains("healed damaged entries"),
        "no heal logged:\n{log}"
    );
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(30));
}

#[test]
fn damage_on_the_leader_is_healed_before_a_wiped_follower_needs_it() {
    let mut cluster = start();
    let checker = fill(&cluster, 1500);
    let leader = cluster.wait_leader();
    let wiped = (leader + 1) % 3;
    // Damage the running leader's copy (reads see it at once: no restart needed).
    let stores = sealed_stores(&cluster.nodes[leader].data_dir());
    let store = stores[1].clone();
    let original = flip_middle_byte(&store);
    // A follower loses its disk: catching up, it needs every entry from the leader,
    // the damaged one included.
    cluster.nodes[wiped].terminate();
    std::fs::remove_dir_all(cluster.nodes[wiped].data_dir()).expect("wipe");
    cluster.restart(wiped);

    let need = checker.required_hwm().expect("acked");
    cluster.wait_caught_up(&[wiped], need);
    wait_file_equals(&store, &original, "the leader's damaged store to be healed");
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(30));
}

#[test]
fn a_missing_sealed_segment_is_recreated_from_a_peer_and_later_segments_kept() {
    let mut cluster = start();
    let checker = fill(&cluster, 1500);
    let leader = cluster.wait_leader();
    let f = (leader + 2) % 3;
    cluster.nodes[f].terminate();
    let stores = sealed_stores(&cluster.nodes[f].data_dir());
    assert!(
        stores.len() >= 3,
        "want several sealed segments: {stores:?}"
    );
    let store = stores[1].clone();
    let index = store.with_extension("index");
    let (store_bytes, index_bytes) = (
        std::fs::read(&store).expect("store"),
        std::fs::read(&index).expect("index"),
    );
    let later = std::fs::read(&stores[2]).expect("a later store");
    std::fs::remove_file(&store).expect("remove store");
    std::fs::remove_file(&index).expect("remove index");
    cluster.restart(f);

    // The node starts (it does not cut its log there), recreates the segment from a
    // peer's copy, byte for byte, and kept the later segments as they were.
    wait_file_equals(&store, &store_bytes, "the missing store to be recreated");
    wait_file_equals(&index, &index_bytes, "the missing index to be recreated");
    assert_eq!(std::fs::read(&stores[2]).expect("later store"), later);
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(30));
}

#[test]
fn damage_on_every_node_in_different_places_is_healed_everywhere() {
    let cluster = start();
    let checker = fill(&cluster, 1500);
    // Running nodes: node i gets a flipped byte in its sealed segment i (reads see
    // the damage at once). Every record still has two intact copies.
    let mut damaged = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let stores = sealed_stores(&node.data_dir());
        assert!(
            stores.len() >= 3,
            "want several sealed segments: {stores:?}"
        );
        let store = stores[i].clone();
        let original = flip_middle_byte(&store);
        damaged.push((store, original));
    }
    for (store, original) in &damaged {
        wait_file_equals(store, original, "every damaged store to be healed");
    }
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(30));
    // More records commit as before.
    let mut client = cluster.client();
    let offset = client
        .produce(b"after-healing")
        .expect("produce after healing");
    checker.ack(offset, b"after-healing");
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(30));
}

/// The healer serves every partition, not only the default one: a flipped byte in a
/// sealed segment of a topic partition's replica (its own log under `groups/<id>/`)
/// is rewritten from a peer's copy while the node runs.
#[test]
fn a_topic_partition_heals_a_flipped_byte_from_a_peer() {
    use cluster_common::topics::{self, Acked};
    use commitlog::wire::TopicSettings;
    let cluster = start();
    let settings = TopicSettings {
        partitions: 1,
        replication: 3,
        segment_bytes: 1 << 20,
        max_record_bytes: 64 * 1024,
        ..TopicSettings::default()
    };
    let d = topics::create_on_cluster(&cluster, "healme", settings);
    let group = d.partitions[0].group;
    let all = [0, 1, 2];
    let mut acked = Acked::new();
    let leader = wait_for("a partition leader", HEAL_DEADLINE, || {
        topics::leaders(&cluster, &all, "healme")
    })[0];
    let mut c = cluster.nodes[leader.0 as usize - 1].client();
    for i in 0..400 {
        let value = format!("{i:05}-{}", "y".repeat(8 * 1024)).into_bytes();
        let offset = topics::produce(&mut c, "healme", 0, &value).expect("produce");
        acked.insert(("healme".to_string(), 0, offset.0), value);
    }
    topics::verify_everywhere(&cluster, &all, &acked);
    let follower = all
        .iter()
        .copied()
        .find(|i| *i as u64 + 1 != leader.0)
        .expect("a follower");
    let data = cluster.nodes[follower]
        .data_dir()
        .join("groups")
        .join(group.0.to_string());
    let stores = sealed_stores(&data);
    assert!(stores.len() >= 2, "want sealed segments: {stores:?}");
    let store = &stores[0];
    let original = flip_middle_byte(store);
    wait_file_equals(
        store,
        &original,
        "the partition's damaged store to be healed",
    );
    topics::verify_everywhere(&cluster, &all, &acked);
}
