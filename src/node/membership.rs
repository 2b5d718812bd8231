//! Gossip → node: a thread that turns gossip member events into the node's member
//! table (name, rpc address, liveness, decommission tag) and peer addresses. The Raft
//! configuration itself is changed by the leader's raft thread
//! (`RaftLoop::reconcile_membership`), one change per tick:
//!
//! * a live gossip member that is not in the configuration → `AddLearner`;
//! * a learner whose match is within `PROMOTE_MAX_LAG_ENTRIES` of the leader's last
//!   index and was heard from recently → `AddVoter` (promotion);
//! * a member that announced decommission (tag `decommission=1`, set by
//!   `--leave-on-shutdown` before its gossip leave) → `Remove`.
//!
//! A member that merely fails, or leaves gossip without the decommission tag (a plain
//! restart: SIGTERM), stays in the configuration (DESIGN 5): removal would shrink
//! fault tolerance, and a rolling restart must not remove and re-add every node.
//!
//! Events can be dropped by the gossip driver when its channel is full, so the table
//! is also refreshed from `GossipHandle::members` (the source of truth) every second.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::peers::Peers;
use super::{lock, GossipMember, Shared};
use crate::gossip::{GossipHandle, Member, MemberEvent, TAG_RPC_ADDR};

/// Gossip tag with the node's name.
pub const TAG_NAME: &str = "name";
/// Gossip tag a node sets (value `1`) before leaving for good.
pub const TAG_DECOMMISSION: &str = "decommission";

pub(crate) fn run(
    shared: Arc<Shared>,
    peers: Arc<Peers>,
    gossip: Arc<Mutex<Option<GossipHandle>>>,
    events: Receiver<MemberEvent>,
    stop: Arc<AtomicBool>,
) {
    refresh(&shared, &peers, &gossip);
    while !stop.load(Ordering::Acquire) {
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(ev) => {
                log::info!(
                    "gossip: {:?} node {} at {} ({:?})",
                    ev.kind,
                    ev.member.id,
                    ev.member.addr,
                    ev.member.state
                );
                apply(&shared, &peers, &ev.member);
            }
            Err(RecvTimeoutError::Timeout) => refresh(&shared, &peers, &gossip),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn refresh(shared: &Shared, peers: &Peers, gossip: &Mutex<Option<GossipHandle>>) {
    let members = match &*lock(gossip) {
        Some(g) => g.members(),
        None => return,
    };
    for m in &members {
        apply(shared, peers, m);
    }
    // Forget members gossip itself has forgotten (bounds the table).
    lock(&shared.members).retain(|id, _| members.iter().any(|m| m.id == *id));
}

fn apply(shared: &Shared, peers: &Peers, m: &Member) {
    if m.id == shared.cfg.node_id {
        return;
    }
    let rpc_addr = m.tags.get(TAG_RPC_ADDR).map(str::to_string);
    if let Some(addr) = rpc_addr
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    {
        peers.set_addr(m.id, addr);
    }
    let entry = GossipMember {
        name: m.tags.get(TAG_NAME).unwrap_or_default().to_string(),
        rpc_addr,
        live: m.state.is_live(),
        decommission: m.tags.get(TAG_DECOMMISSION) == Some("1"),
    };
    lock(&shared.members).insert(m.id, entry);
}
