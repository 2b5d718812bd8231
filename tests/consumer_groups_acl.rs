//! The consumer group APIs under the casbin ACL, against a real TLS `commitlogd`:
//! CommitOffset and FetchOffset need `consume` on each topic they name (a FetchOffset
//! naming none: on `*`), ListGroups needs `describe`, DeleteGroup needs `consume` on
//! every topic the group has a cursor on (checked by the node).

mod common;
mod security_support;

use std::time::{Duration, Instant};

use commitlog::client::{Client, ClientError};
use commitlog::wire::{
    ErrorCode, GroupRequest, GroupResponse, OffsetCommit, TopicPartition, TopicSettings,
};

use security_support::Pki;

/// `nobody` may consume topic `orders` only; `root` everything.
const POLICY: &str = "\
p, root, *, produce
p, root, *, consume
p, root, *, describe
p, root, *, admin
p, nobody, orders, consume
";

fn commit(group: &str, topics: &[&str]) -> GroupRequest {
    GroupRequest::CommitOffset {
        group: group.into(),
        offsets: topics
            .iter()
            .map(|t| OffsetCommit {
                target: TopicPartition::new(*t, 0),
                offset: 5,
                metadata: Vec::new(),
            })
            .collect(),
    }
}

/// Sends `request`, retrying while the node is not ready to serve it yet (a fresh
/// node's metadata leader, a partition electing its leader), with a deadline.
fn served(client: &mut Client, request: GroupRequest) -> Result<GroupResponse, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.group_call(request.clone()) {
            Err(e) if e.code() == Some(ErrorCode::Unavailable) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn denied(result: Result<GroupResponse, ClientError>, what: &str) -> String {
    let e = result.expect_err(what);
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{what}: {e}");
    e.to_string()
}

#[test]
fn group_apis_need_consume_on_their_topics_and_describe_to_list() {
    let pki = Pki::generate();
    let policy = pki.path("groups-policy.csv");
    std::fs::write(&policy, POLICY).unwrap();
    let server = pki.start_server(&["--acl-policy-file", &policy.display().to_string()]);
    let mut root = pki.client(server.addr, Some("root")).unwrap();
    let one = TopicSettings {
        partitions: 1,
        ..TopicSettings::default()
    };
    for topic in ["orders", "payments"] {
        root.create_topic(topic, one).expect("root creates");
    }
    let mut nobody = pki.client(server.addr, Some("nobody")).unwrap();

    let stored = served(&mut nobody, commit("mine", &["orders"])).expect("commit on orders");
    let GroupResponse::CommitOffset(results) = stored else {
        panic!("answered {stored:?}");
    };
    assert_eq!(results[0].error, ErrorCode::None);
    let message = denied(
        served(&mut nobody, commit("mine", &["orders", "payments"])),
        "commit naming payments",
    );
    assert!(message.contains("on topic `payments`"), "{message}");

    let named = GroupRequest::FetchOffset {
        group: "mine".into(),
        partitions: vec![TopicPartition::new("orders", 0)],
    };
    assert!(served(&mut nobody, named).is_ok(), "fetch of orders");
    let all = GroupRequest::FetchOffset {
        group: "mine".into(),
        partitions: Vec::new(),
    };
    denied(
        served(&mut nobody, all.clone()),
        "fetch of every cursor needs `*`",
    );
    assert!(served(&mut root, all).is_ok());
    denied(
        served(&mut nobody, GroupRequest::ListGroups),
        "list needs describe",
    );

    // A group with a cursor on payments may only be deleted with consume there.
    served(&mut root, commit("mixed", &["orders", "payments"])).expect("root commits");
    let delete = |g: &str| GroupRequest::DeleteGroup { group: g.into() };
    let message = denied(served(&mut nobody, delete("mixed")), "delete of mixed");
    assert!(message.contains("`payments`"), "{message}");
    served(&mut nobody, delete("mine")).expect("delete of a group on orders only");
    let listed = served(&mut root, GroupRequest::ListGroups).expect("root lists");
    let GroupResponse::ListGroups(groups) = listed else {
        panic!("answered {listed:?}");
    };
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["mixed"], "mine deleted, mixed kept");
}
