//! Consumer groups (cursors) with real processes: a committed cursor survives a
//! kill -9 of the metadata group's leader (read back from the new leader); the
//! per-partition answers and the group name rule; deleting a topic deletes its
//! cursors; `clog consume --group G -n 5` run twice reads records 1–5 then 6–10
//! (no gap, no repeat) across a node restart; `clog group list|describe|reset|delete`.

mod cluster_common;
mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cluster_common::topics::*;
use cluster_common::{wait_for, Cluster};
use commitlog::client::Client;
use commitlog::wire::{
    ErrorCode, FetchedCursor, GroupRequest, GroupResponse, OffsetCommit, Request, ResponseBody,
    TopicPartition,
};
use common::TempDir;

/// One group request to one node.
fn group_call(client: &mut Client, request: GroupRequest) -> Result<GroupResponse, ErrorCode> {
    match call(client, Request::Group(request)) {
        Ok(ResponseBody::Group(answer)) => Ok(answer),
        Ok(other) => panic!("a group request answered {other:?}"),
        Err(e) => Err(e.code().unwrap_or(ErrorCode::Internal)),
    }
}

/// The node that serves group reads: the metadata leader, caught up.
fn metadata_leader(cluster: &Cluster, among: &[usize]) -> Option<usize> {
    among.iter().copied().find(|i| {
        let mut c = cluster.nodes[*i].client();
        group_call(&mut c, GroupRequest::ListGroups).is_ok()
    })
}

fn commit(target: (&str, u32), offset: u64, metadata: &[u8]) -> OffsetCommit {
    OffsetCommit {
        target: TopicPartition::new(target.0, target.1),
        offset,
        metadata: metadata.to_vec(),
    }
}

fn cursor(cursors: &[FetchedCursor], topic: &str, partition: u32) -> (u64, Vec<u8>, ErrorCode) {
    let c = cursors
        .iter()
        .find(|c| c.target == TopicPartition::new(topic, partition))
        .unwrap_or_else(|| panic!("no cursor of {topic}/{partition} in {cursors:?}"));
    (c.offset, c.metadata.clone(), c.error)
}

#[test]
fn a_cursor_survives_a_kill_9_of_the_metadata_leader() {
    let mut cluster = Cluster::start(3);
    // Replicated on every voter (a factor of 3 could race the voters' join).
    create_on_cluster(&cluster, "orders", settings(2, 0));
    let all = [0, 1, 2];
    let old = wait_for("a metadata leader", Duration::from_secs(20), || {
        metadata_leader(&cluster, &all)
    });
    let mut client = cluster.client();
    let results = client
        .commit_offsets(
            "billing",
            &[
                commit(("orders", 0), 42, b"host-a"),
                commit(("orders", 1), 7, b""),
                commit(("nope", 0), 1, b""),
                commit(("orders", 2), 1, b""),
            ],
        )
        .expect("commit");
    let codes: Vec<ErrorCode> = results.iter().map(|r| r.error).collect();
    assert_eq!(
        codes,
        [
            ErrorCode::None,
            ErrorCode::None,
            ErrorCode::UnknownTopic,
            ErrorCode::UnknownTopic
        ]
    );
    drop(client);

    cluster.nodes[old].kill();
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    let new = wait_for("a new metadata leader", Duration::from_secs(30), || {
        metadata_leader(&cluster, &rest)
    });
    assert_ne!(new, old);
    // Straight from the new leader, over the wire.
    let mut c = cluster.nodes[new].client();
    let asked = vec![
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    ];
    let answer = group_call(
        &mut c,
        GroupRequest::FetchOffset {
            group: "billing".into(),
            partitions: asked,
        },
    );
    let Ok(GroupResponse::FetchOffset(cursors)) = answer else {
        panic!("FetchOffset answered {answer:?}");
    };
    assert_eq!(
        cursor(&cursors, "orders", 0),
        (42, b"host-a".to_vec(), ErrorCode::None)
    );
    assert_eq!(
        cursor(&cursors, "orders", 1),
        (7, Vec::new(), ErrorCode::None)
    );

    // The client finds the new leader by itself; a follower points at it.
    let mut client = cluster.client();
    let all_cursors = client.fetch_offsets("billing", &[]).expect("fetch all");
    assert_eq!(all_cursors.len(), 2);
    let follower = rest.iter().copied().find(|i| *i != new).unwrap();
    let mut f = cluster.nodes[follower].client();
    assert_eq!(
        group_call(&mut f, GroupRequest::ListGroups),
        Err(ErrorCode::NotLeader)
    );

    // Commits go on with the old leader back as a follower.
    cluster.restart(old);
    let results = client
        .commit_offsets("billing", &[commit(("orders", 0), 43, b"")])
        .expect("commit after failover");
    assert_eq!(results[0].error, ErrorCode::None);
    let again = client
        .fetch_offsets("billing", &[TopicPartition::new("orders", 0)])
        .expect("fetch");
    assert_eq!(cursor(&again, "orders", 0).0, 43);
}

#[test]
fn group_names_are_checked_and_deleting_a_topic_deletes_its_cursors() {
    let cluster = Cluster::start(1);
    create_on_cluster(&cluster, "gone", settings(1, 1));
    create_on_cluster(&cluster, "kept", settings(1, 1));
    let mut client = cluster.client();
    for bad in ["", "a b", "..", &"g".repeat(250)] {
        let e = client.commit_offsets(bad, &[commit(("kept", 0), 1, b"")]);
        assert_eq!(
            e.err().and_then(|e| e.code()),
            Some(ErrorCode::InvalidGroup),
            "{bad:?}"
        );
    }
    let big = vec![0u8; 4097];
    let r = client
        .commit_offsets(
            "g",
            &[commit(("gone", 0), 5, b""), commit(("kept", 0), 6, &big)],
        )
        .expect("commit");
    assert_eq!(r[0].error, ErrorCode::None);
    assert_eq!(r[1].error, ErrorCode::InvalidConfig, "metadata above 4 KiB");
    client
        .commit_offsets("h", &[commit(("gone", 0), 9, b"")])
        .expect("commit");
    let listed = client.list_groups().expect("list");
    let names: Vec<&str> = listed.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["g", "h"]);

    client.delete_topic("gone").expect("delete topic");
    assert!(
        client.list_groups().expect("list").is_empty(),
        "groups whose only cursors were on the topic are gone"
    );
    let after = client
        .fetch_offsets("g", &[TopicPartition::new("gone", 0)])
        .expect("fetch");
    assert_eq!(cursor(&after, "gone", 0).2, ErrorCode::UnknownTopic);
    client.delete_group("never-was").expect("idempotent delete");
}

/// `clog` against the cluster, the member cache in `cache`.
fn clog(cluster: &Cluster, cache: &TempDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(args)
        .env("CLOG_ADDR", cluster.seeds())
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run clog")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The values of `offset<TAB>value` lines.
fn values(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_once('\t').map_or(l, |(_, v)| v).to_string())
        .collect()
}

#[test]
fn clog_consume_with_a_group_resumes_where_it_stopped_across_a_restart() {
    // A plain single node (it restarts alone).
    let mut cluster = Cluster::single_on("127.0.0.1");
    create_on_cluster(&cluster, "events", settings(1, 1));
    let mut c = cluster.nodes[0].client();
    let offsets: Vec<u64> = (1..=12)
        .map(|i| {
            produce(&mut c, "events", 0, format!("v{i}").as_bytes())
                .expect("produce")
                .0
        })
        .collect();
    drop(c);
    let cache = TempDir::new("consumer-groups-clog");
    let consume = ["consume", "-t", "events", "--group", "G", "-n", "5"];
    let first = stdout_ok(&clog(&cluster, &cache, &consume));
    assert_eq!(values(&first), ["v1", "v2", "v3", "v4", "v5"]);

    cluster.nodes[0].kill();
    cluster.restart(0);
    let second = stdout_ok(&clog(&cluster, &cache, &consume));
    assert_eq!(
        values(&second),
        ["v6", "v7", "v8", "v9", "v10"],
        "no gap, no repeat"
    );

    let list = stdout_ok(&clog(&cluster, &cache, &["group", "list"]));
    assert_eq!(list, "GROUP\tCURSORS\nG\t1\n");
    let described = stdout_ok(&clog(&cluster, &cache, &["group", "describe", "G"]));
    let row: Vec<&str> = described
        .lines()
        .nth(1)
        .expect("a row")
        .split('\t')
        .collect();
    let end: u64 = row[3].parse().expect("end");
    let offset: u64 = row[2].parse().expect("offset");
    let lag: u64 = row[4].parse().expect("lag");
    assert_eq!((row[0], row[1]), ("events", "0"));
    assert_eq!(offset, offsets[10], "the next offset to read is v11's");
    // The lag counts offsets: the restart's leader no-op is one of them.
    assert_eq!(lag, end - offset);
    assert!(end > offsets[11], "{described}");

    // Back to the start, then to the end.
    let reset = ["group", "reset", "G", "--topic", "events", "--to", "start"];
    stdout_ok(&clog(&cluster, &cache, &reset));
    let three = ["consume", "-t", "events", "-g", "G", "-n", "3"];
    assert_eq!(
        values(&stdout_ok(&clog(&cluster, &cache, &three))),
        ["v1", "v2", "v3"]
    );
    let reset = ["group", "reset", "G", "--topic", "events", "--to", "end"];
    stdout_ok(&clog(&cluster, &cache, &reset));
    let rest = ["consume", "-t", "events", "-g", "G"];
    assert_eq!(
        stdout_ok(&clog(&cluster, &cache, &rest)),
        "",
        "nothing left"
    );

    stdout_ok(&clog(&cluster, &cache, &["group", "delete", "G"]));
    let list = stdout_ok(&clog(&cluster, &cache, &["group", "list"]));
    assert_eq!(list, "GROUP\tCURSORS\n");
    // Without a cursor the group starts from the start again.
    let from_start = stdout_ok(&clog(&cluster, &cache, &three));
    assert_eq!(values(&from_start), ["v1", "v2", "v3"]);
}

#[test]
fn ctrl_c_commits_what_clog_consume_printed() {
    let cluster = Cluster::single_on("127.0.0.1");
    create_on_cluster(&cluster, "clicks", settings(1, 1));
    let mut c = cluster.nodes[0].client();
    let offsets: Vec<u64> = (1..=3)
        .map(|i| {
            produce(&mut c, "clicks", 0, format!("c{i}").as_bytes())
                .expect("produce")
                .0
        })
        .collect();
    let cache = TempDir::new("consumer-groups-ctrl-c");
    // No periodic commit within the test: only the one on Ctrl-C can store it.
    let args = [
        "consume",
        "-t",
        "clicks",
        "-g",
        "K",
        "--follow",
        "--commit-interval-ms",
        "600000",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(args)
        .env("CLOG_ADDR", cluster.seeds())
        .env("CLOG_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clog");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("clog prints the records");
        lines.push(line);
    }
    assert_eq!(values(&lines.join("\n")), ["c1", "c2", "c3"]);
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(killed.success());
    let status = wait_for("clog to exit", Duration::from_secs(20), || {
        child.try_wait().expect("try_wait")
    });
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr).expect("stderr");
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    let mut client = cluster.client();
    let cursors = client
        .fetch_offsets("K", &[TopicPartition::new("clicks", 0)])
        .expect("fetch");
    assert_eq!(cursor(&cursors, "clicks", 0).0, offsets[2] + 1, "{stderr}");
}
