//! File descriptors of a node hosting many partitions, with a real process: once
//! its partitions are idle they hold (almost) no open files (each log closes its
//! files when its group quiesces; the node locks its data dir once instead of one
//! `LOCK` per log), and produce / consume still work afterwards, reopening them.

mod cluster_common;
mod common;

use std::path::Path;
use std::time::Duration;

use cluster_common::topics::*;
use cluster_common::wait_for;

const PARTITIONS: u32 = 200;
/// Open files in the data dir a node with only idle partitions may hold: the
/// data dir's `LOCK`, and one to spare (a single used partition holds two).
const IDLE_FDS_MAX: usize = 2;

/// Descriptors of process `pid` open on files under `dir`.
fn fds_under(pid: u32, dir: &Path) -> usize {
    let dir = std::fs::canonicalize(dir).expect("data dir");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the node's fd table")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// Waits until the node's idle partitions closed their files.
fn wait_idle(server: &common::Server, why: &str) {
    let (pid, dir) = (server.pid(), server.data_dir());
    wait_for(why, Duration::from_secs(60), || {
        (fds_under(pid, &dir) <= IDLE_FDS_MAX).then_some(())
    });
}

#[test]
fn idle_partitions_hold_no_files_and_wake_up_on_use() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    let d = create(&mut c, "many", settings(PARTITIONS, 1)).expect("create");
    assert_eq!(d.partitions.len(), PARTITIONS as usize);
    let used = [0u32, 1, 57, 123, PARTITIONS - 1];
    // Every partition was written (its leader's first entry), so each opened its
    // files; once idle they are closed again.
    wait_idle(&server, "idle partitions to close their files");

    let mut acked = Vec::new();
    for &p in &used {
        let value = format!("value of partition {p}").into_bytes();
        // A partition opened after the create was answered may still be electing.
        let offset = wait_for("a produce to be accepted", Duration::from_secs(30), || {
            produce(&mut c, "many", p, &value).ok()
        });
        acked.push((p, offset, value));
    }
    for (p, offset, value) in &acked {
        let got = consume(&mut c, "many", *p, *offset).expect("consume");
        assert_eq!(got, (*offset, value.clone()), "partition {p}");
    }
    wait_idle(&server, "the used partitions to close their files again");

    // Reads of idle partitions reopen nothing for good, writes wake them again.
    for (p, offset, value) in &acked {
        let got = consume(&mut c, "many", *p, *offset).expect("consume after idle");
        assert_eq!(got, (*offset, value.clone()), "partition {p}");
        let next = produce(&mut c, "many", *p, b"again").expect("produce after idle");
        assert!(next > *offset);
        assert_eq!(
            consume(&mut c, "many", *p, next).expect("consume the new record"),
            (next, b"again".to_vec())
        );
    }
    wait_idle(&server, "all partitions idle again");
}

#[test]
fn a_second_node_on_a_running_nodes_data_dir_is_refused() {
    let server = common::Server::start(&[]);
    let dir = server.data_dir();
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second commitlogd");
    let mut second = KillOnDrop(second);
    let second = &mut second.0;
    let status = wait_for("the second node to exit", Duration::from_secs(30), || {
        second.try_wait().expect("wait")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("cannot lock data dir"), "{err}");
    let mut c = server.client();
    assert!(c.produce(b"the first node still serves").is_ok());
}

/// Kills a child still running when the test ends (or fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
