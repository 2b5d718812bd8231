//! Real UDP on 127.0.0.1 (OS-assigned ports) with a few in-process gossip nodes:
//! join, tag updates, graceful leave, kill → fail, wrong key → not joined + counted.
//! Timings are the LAN defaults scaled down 5× (200 ms probe period, generous enough
//! for a loaded CI machine). Every wait is
//! a bounded poll on a condition.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use commitlog::gossip::{
    driver, DriverConfig, GossipConfig, GossipHandle, MemberEvent, MemberEventKind, MemberState,
    Tags, TAG_RPC_ADDR,
};
use commitlog::types::NodeId;

const DEADLINE: Duration = Duration::from_secs(10);

fn config(key: Option<[u8; 32]>) -> GossipConfig {
    let mut c = GossipConfig::scaled_down(5);
    c.cluster_name = "udp-test".into();
    c.secret_key = key;
    c
}

fn node(
    id: u64,
    key: Option<[u8; 32]>,
    seeds: &[SocketAddr],
) -> (GossipHandle, Receiver<MemberEvent>) {
    let tags = Tags::new()
        .with(TAG_RPC_ADDR, &format!("127.0.0.1:{}", 8400 + id))
        .expect("small tags");
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    driver::start(
        config(key),
        NodeId(id),
        tags,
        DriverConfig::new(bind),
        seeds,
    )
    .expect("start gossip node")
}

/// Polls `cond` every 10 ms until it holds or the deadline passes.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {DEADLINE:?} waiting for: {what}");
}

/// Waits for an event of `kind` about `id` on `rx` (other events are skipped).
fn wait_event(rx: &Receiver<MemberEvent>, kind: MemberEventKind, id: NodeId) -> MemberEvent {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if ev.kind == kind && ev.member.id == id => return ev,
            Ok(_) => {}
            Err(e) => panic!("no {kind:?} event for {id} within {DEADLINE:?}: {e}"),
        }
    }
}

fn sees(h: &GossipHandle, id: NodeId, state: MemberState) -> bool {
    h.members().iter().any(|m| m.id == id && m.state == state)
}

#[test]
fn join_tag_update_and_graceful_leave() {
    let (a, a_rx) = node(1, None, &[]);
    let (b, _b_rx) = node(2, None, &[a.local_addr()]);
    let (c, c_rx) = node(3, None, &[a.local_addr()]);
    let all = [&a, &b, &c];
    wait_for("three nodes see each other alive", || {
        all.iter().all(|h| {
            h.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == 3
        })
    });
    let joined = wait_event(&a_rx, MemberEventKind::Join, NodeId(3));
    assert_eq!(joined.member.tags.get(TAG_RPC_ADDR), Some("127.0.0.1:8403"));
    assert_eq!(joined.member.addr, c.local_addr());

    // Tag update on b reaches a and c as an Update event.
    let tags = Tags::new()
        .with(TAG_RPC_ADDR, "127.0.0.1:8402")
        .and_then(|t| t.with("role", "voter"))
        .expect("tags");
    b.set_tags(tags);
    let updated = wait_event(&c_rx, MemberEventKind::Update, NodeId(2));
    assert_eq!(updated.member.tags.get("role"), Some("voter"));
    wait_for("a sees b's new tags", || {
        a.members()
            .iter()
            .any(|m| m.id == NodeId(2) && m.tags.get("role") == Some("voter"))
    });

    // Graceful leave of c: Leave events, state Left, never Fail.
    c.leave();
    c.shutdown();
    wait_event(&a_rx, MemberEventKind::Leave, NodeId(3));
    wait_for("a and b see c left", || {
        sees(&a, NodeId(3), MemberState::Left) && sees(&b, NodeId(3), MemberState::Left)
    });
    assert!(
        a_rx.try_iter().all(|e| e.kind != MemberEventKind::Fail),
        "leave reported as failure"
    );
    let stats = a.stats();
    assert_eq!(stats.gossip.dropped_auth + stats.gossip.dropped_decode, 0);
    // The whole scenario can finish within one probe period, so no probe count here.
    assert!(stats.gossip.packets_received > 0 && stats.gossip.packets_sent > 0);
    b.shutdown();
    a.shutdown();
}

#[test]
fn killed_node_is_reported_failed() {
    let (a, a_rx) = node(11, None, &[]);
    let (b, _b_rx) = node(12, None, &[a.local_addr()]);
    let (c, _c_rx) = node(13, None, &[a.local_addr()]);
    wait_for("three alive", || {
        [&a, &b, &c].iter().all(|h| {
            h.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == 3
        })
    });
    // Kill c: stop its thread and socket without a leave.
    drop(c);
    wait_event(&a_rx, MemberEventKind::Fail, NodeId(13));
    wait_for("b sees c dead", || sees(&b, NodeId(13), MemberState::Dead));
    assert!(
        sees(&a, NodeId(12), MemberState::Alive),
        "b was wrongly failed"
    );
}

#[test]
fn encrypted_cluster_rejects_a_wrong_key_and_counts_it() {
    let key = Some([0x5A; 32]);
    let (a, _a_rx) = node(21, key, &[]);
    let (b, _b_rx) = node(22, key, &[a.local_addr()]);
    wait_for("keyed nodes join", || {
        sees(&a, NodeId(22), MemberState::Alive) && sees(&b, NodeId(21), MemberState::Alive)
    });

    let (intruder, _i_rx) = node(23, Some([0xA5; 32]), &[a.local_addr()]);
    let (plain, _p_rx) = node(24, None, &[a.local_addr()]);
    // The intruders keep retrying their join every 200 ms; wait for several drops.
    wait_for("wrong-key and unkeyed packets dropped and counted", || {
        a.stats().gossip.dropped_auth >= 4
    });
    // Give them a few more retry rounds, then check they never got in.
    let before = a.stats().gossip.dropped_auth;
    wait_for("more drops", || a.stats().gossip.dropped_auth >= before + 4);
    for h in [&a, &b] {
        assert!(
            h.members()
                .iter()
                .all(|m| m.id != NodeId(23) && m.id != NodeId(24)),
            "intruder joined"
        );
    }
    for h in [&intruder, &plain] {
        assert_eq!(h.members().len(), 1, "intruder learned the cluster");
    }
    assert!(b
        .members()
        .iter()
        .any(|m| m.id == NodeId(21) && m.state == MemberState::Alive));
}
