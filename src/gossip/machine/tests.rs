//! Unit scenarios for the state machine, driven by hand: each test feeds packets and
//! ticks and reads the outputs. Quotes are from the SWIM paper (Das, Gupta, Motivala
//! 2002) and Lifeguard (Dadgar et al. 2018).

use super::*;
use crate::gossip::codec::decode_packet;

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

fn member(i: u16) -> Member {
    Member {
        id: NodeId(u64::from(i)),
        addr: addr(i),
        incarnation: 0,
        state: MemberState::Alive,
        tags: Tags::new(),
    }
}

fn node(i: u16) -> Gossip {
    Gossip::new(GossipConfig::lan(), member(i), u64::from(i)).expect("valid config")
}

/// Drains outputs: (sends decoded as (to, messages), events).
/// A sent packet: destination, bytes, decoded messages.
type Sent = (SocketAddr, Vec<u8>, Vec<Message>);

fn drain(g: &mut Gossip) -> (Vec<Sent>, Vec<MemberEvent>) {
    let (mut sends, mut events) = (Vec::new(), Vec::new());
    while let Some(o) = g.poll_output() {
        match o {
            Output::Send { to, packet } => {
                assert!(
                    packet.len() <= g.config().max_packet_bytes,
                    "oversized packet"
                );
                let msgs = decode_packet(&packet, None)
                    .expect("own packets decode")
                    .messages;
                sends.push((to, packet, msgs));
            }
            Output::Event(e) => events.push(e),
        }
    }
    (sends, events)
}

fn packet_from(sender: u16, msgs: &[Message]) -> Vec<u8> {
    let mut b = PacketBuilder::new("commitlog", NodeId(u64::from(sender)), 1400);
    for m in msgs {
        assert!(b.try_push(&encode_message(m)));
    }
    codec::seal_packet(&b.into_plain(), None).expect("plain packet")
}

fn alive(i: u16, incarnation: u64) -> Message {
    Message::Alive {
        id: NodeId(u64::from(i)),
        incarnation,
        addr: addr(i),
        tags: Tags::new(),
    }
}

/// Node 1 knowing members 2..=n alive.
fn with_members(n: u16) -> Gossip {
    let mut g = node(1);
    g.tick(0);
    let msgs: Vec<Message> = (2..=n).map(|i| alive(i, 0)).collect();
    for chunk in msgs.chunks(20) {
        g.handle_packet(addr(2), &packet_from(2, chunk), 0);
    }
    drain(&mut g);
    g
}

#[test]
fn unanswered_probe_goes_indirect_then_suspect() {
    // SWIM 3.1: "If Mi does not receive the ack within the prespecified timeout, Mi
    // selects k members at random and sends each a ping-req(Mj) message."
    let mut g = with_members(6);
    let mut now = 0;
    let mut ping = None;
    while ping.is_none() && now < 2_000 {
        now += 10;
        g.tick(now);
        ping = drain(&mut g)
            .0
            .into_iter()
            .find_map(|(to, _, m)| match m.first() {
                Some(Message::Ping { seq, target }) => Some((to, *seq, *target)),
                _ => None,
            });
    }
    let (to, seq, target) = ping.expect("a probe within one period");
    assert_eq!(to, g.member(target).map(|m| m.addr).expect("known target"));
    g.tick(now + 500);
    let (sends, _) = drain(&mut g);
    let reqs: Vec<_> = sends
        .iter()
        .filter(|(_, _, m)| matches!(m.first(), Some(Message::IndirectPing { seq: s, target: t, .. }) if *s == seq && *t == target))
        .collect();
    assert_eq!(reqs.len(), 3, "k = 3 ping-reqs");
    assert!(
        reqs.iter().all(|(a, _, _)| *a != to),
        "helpers exclude the target"
    );
    // No ack by the end of the period: suspect.
    g.tick(now + 1_000);
    assert_eq!(
        g.member(target).map(|m| m.state),
        Some(MemberState::Suspect)
    );
    assert_eq!(g.stats().probe_failures, 1);
    // A nack-less failure (helpers silent) raised the local health score.
    assert!(g.stats().health_score > 0);
}

#[test]
fn ack_through_a_helper_keeps_the_target_alive() {
    let mut g = with_members(4);
    let mut now = 0;
    let mut probe = None;
    while probe.is_none() && now < 2_000 {
        now += 10;
        g.tick(now);
        probe = drain(&mut g)
            .0
            .into_iter()
            .find_map(|(_, _, m)| match m.first() {
                Some(Message::Ping { seq, target }) => Some((*seq, *target)),
                _ => None,
            });
    }
    let (seq, target) = probe.expect("probe");
    g.tick(now + 500);
    drain(&mut g);
    // A helper forwards the target's ack (same seq).
    let helper = if target == NodeId(2) { 3 } else { 2 };
    g.handle_packet(
        addr(helper),
        &packet_from(helper, &[Message::Ack { seq }]),
        now + 600,
    );
    g.tick(now + 1_000);
    assert_eq!(g.member(target).map(|m| m.state), Some(MemberState::Alive));
    assert_eq!(g.stats().probe_failures, 0);
}

#[test]
fn helper_relays_ping_req_forwards_ack_and_nacks_silence() {
    let mut g = with_members(4);
    // Node 2 asks node 1 to probe node 3.
    let req = Message::IndirectPing {
        seq: 77,
        target: NodeId(3),
        target_addr: addr(3),
    };
    g.handle_packet(addr(2), &packet_from(2, &[req]), 10);
    let (sends, _) = drain(&mut g);
    let relay_seq = sends
        .iter()
        .find_map(|(to, _, m)| match m.first() {
            Some(Message::Ping { seq, target }) if *to == addr(3) && *target == NodeId(3) => {
                Some(*seq)
            }
            _ => None,
        })
        .expect("relay ping to the target");
    g.handle_packet(
        addr(3),
        &packet_from(3, &[Message::Ack { seq: relay_seq }]),
        20,
    );
    let (sends, _) = drain(&mut g);
    assert!(sends
        .iter()
        .any(|(to, _, m)| *to == addr(2) && m.first() == Some(&Message::Ack { seq: 77 })));
    // A second request whose target stays silent is nacked at 80% of the timeout.
    let req2 = Message::IndirectPing {
        seq: 78,
        target: NodeId(3),
        target_addr: addr(3),
    };
    g.handle_packet(addr(2), &packet_from(2, &[req2]), 30);
    drain(&mut g);
    g.tick(30 + 399);
    assert!(drain(&mut g)
        .0
        .iter()
        .all(|(_, _, m)| !m.contains(&Message::Nack { seq: 78 })));
    g.tick(30 + 400);
    let (sends, _) = drain(&mut g);
    assert!(sends
        .iter()
        .any(|(to, _, m)| *to == addr(2) && m.first() == Some(&Message::Nack { seq: 78 })));
    assert_eq!(g.stats().nacks_sent, 1);
}

#[test]
fn suspicion_of_self_is_refuted_with_a_higher_incarnation() {
    // SWIM 4.2: "Mj ... will disseminate an Alive message with a higher incarnation."
    let mut g = with_members(3);
    let suspect_me = Message::Suspect {
        id: NodeId(1),
        incarnation: 0,
        from: NodeId(2),
    };
    g.handle_packet(addr(2), &packet_from(2, &[suspect_me]), 100);
    assert_eq!(g.local().incarnation, 1);
    assert_eq!(g.stats().refutes, 1);
    // The refutation is piggy-backed on the next packet.
    g.handle_packet(
        addr(2),
        &packet_from(
            2,
            &[Message::Ping {
                seq: 5,
                target: NodeId(1),
            }],
        ),
        110,
    );
    let (sends, _) = drain(&mut g);
    let (_, _, msgs) = sends.first().expect("ack");
    assert_eq!(msgs.first(), Some(&Message::Ack { seq: 5 }));
    assert!(msgs.contains(&alive(1, 1)));
    // A stale suspicion (older incarnation) is ignored.
    let stale = Message::Dead {
        id: NodeId(1),
        incarnation: 0,
        from: NodeId(2),
    };
    g.handle_packet(addr(2), &packet_from(2, &[stale]), 120);
    assert_eq!(g.local().incarnation, 1);
}

#[test]
fn incarnation_ordering_rules() {
    let mut g = with_members(3);
    let id = NodeId(2);
    let state = |g: &Gossip| g.member(id).map(|m| (m.state, m.incarnation));
    let feed = |g: &mut Gossip, m: Message| {
        g.handle_packet(addr(3), &packet_from(3, &[m]), 50);
        drain(g).1
    };
    // Suspect(0) overrides Alive(0); no event.
    assert!(feed(
        &mut g,
        Message::Suspect {
            id,
            incarnation: 0,
            from: NodeId(3)
        }
    )
    .is_empty());
    assert_eq!(state(&g), Some((MemberState::Suspect, 0)));
    // Alive(0) does not refute Suspect(0); Alive(1) does.
    feed(&mut g, alive(2, 0));
    assert_eq!(state(&g), Some((MemberState::Suspect, 0)));
    feed(&mut g, alive(2, 1));
    assert_eq!(state(&g), Some((MemberState::Alive, 1)));
    // Dead(0) is stale; Dead(1) wins with a Fail event.
    assert!(feed(
        &mut g,
        Message::Dead {
            id,
            incarnation: 0,
            from: NodeId(3)
        }
    )
    .is_empty());
    let ev = feed(
        &mut g,
        Message::Dead {
            id,
            incarnation: 1,
            from: NodeId(3),
        },
    );
    assert_eq!(ev.first().map(|e| e.kind), Some(MemberEventKind::Fail));
    // Alive(2) brings it back: Join.
    let ev = feed(&mut g, alive(2, 2));
    assert_eq!(ev.first().map(|e| e.kind), Some(MemberEventKind::Join));
    // Leave(2) → Left with a Leave event; Alive(2) cannot undo it.
    let ev = feed(&mut g, Message::Leave { id, incarnation: 2 });
    assert_eq!(ev.first().map(|e| e.kind), Some(MemberEventKind::Leave));
    feed(&mut g, alive(2, 2));
    assert_eq!(state(&g), Some((MemberState::Left, 2)));
    // Suspect/Dead/Leave about an unknown member are ignored.
    feed(
        &mut g,
        Message::Dead {
            id: NodeId(99),
            incarnation: 5,
            from: NodeId(3),
        },
    );
    assert!(g.member(NodeId(99)).is_none());
}

#[test]
fn every_packet_stays_under_the_size_limit_even_with_a_full_queue() {
    // 200 members with big tags: the broadcast queue and the state exchange both
    // need many packets; none may exceed 1400 bytes.
    let mut g = node(1);
    g.tick(0);
    let tags = Tags::new()
        .with("rpc_addr", &"x".repeat(200))
        .expect("tags");
    for i in 2..=201u16 {
        let m = Message::Alive {
            id: NodeId(u64::from(i)),
            incarnation: 0,
            addr: addr(i),
            tags: tags.clone(),
        };
        g.handle_packet(addr(2), &packet_from(2, &[m]), 0);
    }
    assert_eq!(g.live_count(), 201);
    let (_, events) = drain(&mut g);
    assert_eq!(events.len(), 200);
    // A join request from a newcomer: the reply is chunked.
    let join = Message::Sync {
        sync_id: 1,
        flags: SYNC_REPLY_WANTED | SYNC_JOIN,
        entries: vec![],
    };
    g.handle_packet(
        addr(500),
        &packet_from(500, std::slice::from_ref(&join)),
        10,
    );
    let (sends, _) = drain(&mut g);
    let entries: usize = sends
        .iter()
        .filter(|(to, _, _)| *to == addr(500))
        .flat_map(|(_, _, m)| m.iter())
        .map(|m| match m {
            Message::Sync { entries, .. } => entries.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(entries, 201, "every member (and self) is in the reply");
    assert!(sends.len() > 10, "reply split into many packets");
    // The same request again (another chunk of it) gets no second reply.
    g.handle_packet(addr(500), &packet_from(500, &[join]), 11);
    assert!(drain(&mut g).0.is_empty());
    // Gossip rounds drain the queue in packets under the limit (checked in drain).
    for t in 1..200 {
        g.tick(t * 200);
        drain(&mut g);
    }
}

#[test]
fn wrong_cluster_and_garbage_are_dropped_and_counted() {
    let mut g = node(1);
    let mut b = PacketBuilder::new("other", NodeId(2), 1400);
    assert!(b.try_push(&encode_message(&alive(2, 0))));
    let other = codec::seal_packet(&b.into_plain(), None).expect("packet");
    g.handle_packet(addr(2), &other, 0);
    g.handle_packet(addr(2), &[1, 0, 200], 0);
    g.handle_packet(addr(2), &[1, 1, 0, 0], 0);
    let s = g.stats();
    assert_eq!(
        (s.dropped_cluster, s.dropped_decode, s.dropped_auth),
        (1, 1, 1)
    );
    assert_eq!(g.live_count(), 1);
}

#[test]
fn output_queue_is_bounded() {
    let mut config = GossipConfig::lan();
    config.max_pending_outputs = 16;
    let mut g = Gossip::new(config, member(1), 1).expect("config");
    for i in 0..40u32 {
        g.handle_packet(
            addr(2),
            &packet_from(
                2,
                &[Message::Ping {
                    seq: i,
                    target: NodeId(1),
                }],
            ),
            0,
        );
    }
    assert_eq!(g.stats().dropped_outputs, 24);
    let mut n = 0;
    while g.poll_output().is_some() {
        n += 1;
    }
    assert_eq!(n, 16);
}

#[test]
fn clock_extremes_do_not_panic() {
    // A clock that jumps to the end of time (every timer fires) or backwards (time
    // never decreases inside) leaves a machine that still answers pings.
    let mut g = with_members(4);
    for now in [u64::MAX - 1, u64::MAX, 5, u64::MAX] {
        g.tick(now);
        let ping = Message::Ping {
            seq: 9,
            target: NodeId(1),
        };
        g.handle_packet(addr(2), &packet_from(2, &[ping]), now);
        let (sends, _) = drain(&mut g);
        assert!(sends
            .iter()
            .any(|(to, _, m)| *to == addr(2) && m.first() == Some(&Message::Ack { seq: 9 })));
    }
}

#[test]
fn suspicion_of_a_newer_incarnation_restarts_the_timer() {
    // Regression (found by the 100-node loss simulation): a node that missed a
    // refutation kept its old suspicion timer when a fresh suspicion of the newer
    // incarnation arrived, and declared the member dead at once.
    let mut g = with_members(6);
    let id = NodeId(2);
    let suspect = |inc| Message::Suspect {
        id,
        incarnation: inc,
        from: NodeId(3),
    };
    g.handle_packet(addr(3), &packet_from(3, &[suspect(0)]), 1_000);
    // Just before the old timer (4 s min .. 24 s max) would fire, a suspicion of
    // incarnation 1 arrives (this node missed Alive(1)).
    g.tick(24_990);
    assert_eq!(g.member(id).map(|m| m.state), Some(MemberState::Suspect));
    g.handle_packet(addr(4), &packet_from(4, &[suspect(1)]), 24_995);
    g.tick(25_100);
    assert_eq!(
        g.member(id).map(|m| (m.state, m.incarnation)),
        Some((MemberState::Suspect, 1)),
        "a fresh suspicion gets a fresh timer"
    );
    g.tick(24_995 + 23_000);
    assert_eq!(g.member(id).map(|m| m.state), Some(MemberState::Suspect));
    g.tick(24_995 + 24_001);
    assert_eq!(g.member(id).map(|m| m.state), Some(MemberState::Dead));
}

#[test]
fn stale_suspicion_is_answered_with_the_newer_alive() {
    let mut g = with_members(4);
    g.handle_packet(addr(2), &packet_from(2, &[alive(2, 3)]), 10);
    drain(&mut g);
    // Node 4 missed Alive(3) and gossips Suspect(2) about node 2.
    let stale = Message::Suspect {
        id: NodeId(2),
        incarnation: 2,
        from: NodeId(4),
    };
    g.handle_packet(addr(4), &packet_from(4, &[stale]), 20);
    let (sends, _) = drain(&mut g);
    assert!(sends
        .iter()
        .any(|(to, _, m)| *to == addr(4) && m.contains(&alive(2, 3))));
    assert_eq!(
        g.member(NodeId(2)).map(|m| m.state),
        Some(MemberState::Alive)
    );
    assert_eq!(g.stats().corrections_sent, 1);
    // The same about this node itself: answered with its own current Alive.
    g.handle_packet(
        addr(3),
        &packet_from(
            3,
            &[Message::Suspect {
                id: NodeId(1),
                incarnation: 0,
                from: NodeId(3),
            }],
        ),
        30,
    );
    assert_eq!(g.local().incarnation, 1, "refuted once");
    drain(&mut g);
    g.handle_packet(
        addr(4),
        &packet_from(
            4,
            &[Message::Dead {
                id: NodeId(1),
                incarnation: 0,
                from: NodeId(4),
            }],
        ),
        40,
    );
    let (sends, _) = drain(&mut g);
    assert!(sends
        .iter()
        .any(|(to, _, m)| *to == addr(4) && m.contains(&alive(1, 1))));
    assert_eq!(
        g.local().incarnation,
        1,
        "a stale notice needs no new incarnation"
    );
}

#[test]
fn full_state_replies_are_capped_per_period() {
    let mut g = with_members(3);
    let join = |i: u32| Message::Sync {
        sync_id: i,
        flags: SYNC_REPLY_WANTED | SYNC_JOIN,
        entries: vec![],
    };
    // Within one protocol period (no probe tick in between): 64 answered, 6 refused.
    for i in 0..70u32 {
        g.handle_packet(addr(1000 + i as u16), &packet_from(600, &[join(i)]), 1);
    }
    let replied = drain(&mut g)
        .0
        .iter()
        .filter(|(to, _, _)| to.port() >= 8000)
        .count();
    assert_eq!(replied, 64);
    assert_eq!((g.stats().syncs_answered, g.stats().syncs_refused), (64, 6));
    // The next period has a fresh allowance.
    g.tick(5_000);
    g.handle_packet(addr(1100), &packet_from(600, &[join(100)]), 5_001);
    assert_eq!(g.stats().syncs_answered, 65);
}

/// Replays the committed cargo-fuzz corpus (`fuzz/corpus/gossip_packet`) through the
/// same properties as the fuzz target, so CI checks it without a nightly toolchain.
#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gossip_packet");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // No corpus checked out (e.g. a trimmed source package).
    };
    let cipher = crate::gossip::crypto::Cipher::new(&[0x42; 32]);
    let mut replayed = 0;
    for entry in entries.flatten().take(10_000) {
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        let _ = decode_packet(&data, Some(&cipher));
        if let Ok(packet) = decode_packet(&data, None) {
            let mut b = PacketBuilder::new(&packet.cluster, packet.sender, 65_507);
            for m in &packet.messages {
                assert!(b.try_push(&encode_message(m)));
            }
            assert_eq!(codec::decode_plain(&b.into_plain()).as_ref(), Ok(&packet));
        }
        let mut config = GossipConfig::lan();
        config.cluster_name = String::new();
        let mut g = Gossip::new(config, member(1), 7).expect("config");
        g.handle_packet(addr(2), &data, 1);
        g.tick(2_000);
        while g.poll_output().is_some() {}
        replayed += 1;
    }
    assert!(replayed > 0, "corpus directory exists but is empty");
}
