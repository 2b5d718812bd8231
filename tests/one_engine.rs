//! One engine: a plain `commitlogd` (no `--bootstrap`/`--join`) is a one-voter Raft
//! cluster that others can join later without moving data, and a data directory of
//! the old single-node engine is refused, untouched.

mod cluster_common;
mod common;

use std::process::Command;
use std::time::Duration;

use cluster_common::{Checker, Cluster};
use commitlog::types::Offset;
use commitlog::wire::ServerRole;

#[test]
fn a_single_node_grows_into_a_three_node_cluster_keeping_its_records() {
    let mut cluster = Cluster::single_on("127.0.0.1");
    let status = cluster.nodes[0].status().expect("status");
    assert_eq!(status.role, ServerRole::Leader, "a lone node leads at once");
    let checker = Checker::new();
    let mut client = cluster.nodes[0].client();
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("alone-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    let first = client
        .produce_batch(&refs)
        .expect("produce on the single node");
    assert_eq!(first, Offset(2), "offset 1 is the first leader's no-op");
    checker.ack_batch(first, &refs);
    drop(client);

    // Two nodes join the single node through its gossip address.
    cluster.add_node_on("127.0.0.1");
    cluster.add_node_on("127.0.0.1");
    cluster.wait_voters(3);

    // New records go through the (possibly new) leader; old ones kept their offsets
    // and are now on every node.
    let mut client = cluster.client();
    for i in 0..20 {
        let value = format!("grown-{i}").into_bytes();
        let offset = client.produce(&value).expect("produce on the cluster");
        assert!(
            offset > Offset(first.0 + 49),
            "no offset is reused: {offset}"
        );
        checker.ack(offset, &value);
    }
    let need = checker.required_hwm().expect("acked something");
    cluster.wait_caught_up(&[0, 1, 2], need);
    // Every acknowledged record at its offset on every node (the old ones too).
    checker.verify(&cluster.addrs(&[0, 1, 2]), Duration::from_secs(20));
}

#[test]
fn an_old_single_node_data_dir_is_refused_and_left_untouched() {
    let dir = common::TempDir::new("legacy");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = data.join("00000000000000000000.store");
    let index = data.join("00000000000000000000.index");
    std::fs::write(&store, b"old records").unwrap();
    std::fs::write(&index, [0u8; 16]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run commitlogd");
    assert!(!out.status.success(), "an old data dir must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("old single-node engine") && err.contains(&*data.to_string_lossy()),
        "{err}"
    );
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "nothing was created: {names:?}");
    assert_eq!(std::fs::read(&store).unwrap(), b"old records");
}
