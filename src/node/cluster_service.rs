//! [`ClusterService`]: the `net::Service` of a cluster node. It answers on the event
//! loop thread without blocking: produces go to the raft thread's bounded inbox (full:
//! UNAVAILABLE), reads to the read pool, Raft frames to the inbox (fire-and-forget:
//! the answer is an empty RaftMessage response; the receiver's Raft replies travel on
//! its own outgoing connection), status and membership from the published view.
//!
//! Peer frames are accepted only on a connection that sent a PeerHandshake with this
//! node's cluster name (a wrong name gets PERMISSION_DENIED). The set of peer
//! connections is bounded ([`MAX_PEER_CONNS`], oldest forgotten first).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::answer::{self, Refusal};
use super::inbox::{Control, Inbox, ProduceJob};
use super::reads::Reads;
use super::{lock, Shared};
use crate::net::{ConnContext, Responder, Service};
use crate::raft::{decode_message, Role};
use crate::replica::Values;
use crate::storage::RECORD_HEADER_BYTES;
use crate::types::GroupId;
use crate::wire::{self, Request, RequestFrame, ServerInfo, ServerRole, StatusInfo};

/// Most connections remembered as handshaken peers.
pub const MAX_PEER_CONNS: usize = 4096;

/// The cluster node's request handler.
pub struct ClusterService {
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) reads: Arc<Reads>,
    peer_conns: Mutex<(HashSet<u64>, VecDeque<u64>)>,
}

impl ClusterService {
    pub(crate) fn new(shared: Arc<Shared>, inbox: Arc<Inbox>, reads: Arc<Reads>) -> ClusterService {
        ClusterService {
            shared,
            inbox,
            reads,
            peer_conns: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    fn produce(&self, values: Values, reply: Responder) {
        let single = matches!(values, Values::One(_));
        let s = &self.shared;
        let (role, leader) = {
            let v = lock(&s.view);
            (v.role, v.leader)
        };
        // With a full disk the raft thread decides (it retries its writes first).
        if role != Role::Leader && !s.disk_full.load(Ordering::Acquire) {
            return answer::refuse(reply, s.not_leader(leader));
        }
        let max_value = s.max_record_value_bytes();
        let total = values.bytes();
        // The count is bounded too: an empty record still costs a log record and a
        // Raft entry, and one batch is appended in one raft-thread round.
        if values.len() > wire::MAX_BATCH_RECORDS
            || values.as_slice().iter().any(|v| v.len() > max_value)
            || total > s.max_produce_bytes()
        {
            let too_large = Refusal::TooLarge {
                max_value_bytes: max_value,
                max_batch_bytes: s.max_produce_bytes(),
                max_batch_records: wire::MAX_BATCH_RECORDS,
            };
            return answer::refuse(reply, too_large);
        }
        let job = ProduceJob {
            values,
            single,
            reply,
            deadline: Instant::now() + Duration::from_millis(s.cfg.request_timeout_ms.max(1)),
        };
        if let Err(job) = self.inbox.push_produce(job) {
            answer::refuse(
                job.reply,
                Refusal::Busy("produce queue (replication is behind)"),
            );
        }
    }

    fn is_peer(&self, conn_id: u64) -> bool {
        lock(&self.peer_conns).0.contains(&conn_id)
    }

    fn add_peer(&self, conn_id: u64) {
        let mut g = lock(&self.peer_conns);
        let (set, order) = &mut *g;
        if set.insert(conn_id) {
            order.push_back(conn_id);
            while order.len() > MAX_PEER_CONNS {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    fn servers(&self) -> Vec<ServerInfo> {
        let s = &self.shared;
        let view = lock(&s.view).clone();
        let members = lock(&s.members).clone();
        let me = s.cfg.node_id;
        let mut ids: Vec<_> = view.membership.members().collect();
        ids.extend(members.iter().filter(|(_, g)| g.live).map(|(id, _)| *id));
        ids.push(me);
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let role = if Some(id) == view.leader {
                    ServerRole::Leader
                } else if view.membership.voters.contains(&id) {
                    ServerRole::Follower
                } else if view.membership.learners.contains(&id) {
                    ServerRole::Learner
                } else {
                    ServerRole::Unknown
                };
                let g = members.get(&id);
                if id == me {
                    ServerInfo {
                        id,
                        name: s.cfg.node_name.clone(),
                        rpc_addr: s.cfg.rpc_addr.to_string(),
                        role,
                        live: true,
                    }
                } else {
                    ServerInfo {
                        id,
                        name: g
                            .map(|g| g.name.clone())
                            .filter(|n| !n.is_empty())
                            .unwrap_or_else(|| format!("node-{id}")),
                        rpc_addr: g.and_then(|g| g.rpc_addr.clone()).unwrap_or_default(),
                        role,
                        live: g.is_some_and(|g| g.live),
                    }
                }
            })
            .collect()
    }

    fn status(&self) -> StatusInfo {
        let s = &self.shared;
        let v = lock(&s.view).clone();
        let me = s.cfg.node_id;
        let role = match v.role {
            Role::Leader => ServerRole::Leader,
            _ if v.membership.learners.contains(&me) => ServerRole::Learner,
            Role::Follower if v.membership.voters.contains(&me) => ServerRole::Follower,
            _ => ServerRole::Unknown,
        };
        StatusInfo {
            node_name: s.cfg.node_name.clone(),
            role,
            term: v.term,
            commit_index: v.commit.into(),
            last_index: v.last.into(),
            first_index: v.first.into(),
        }
    }
}

impl Service for ClusterService {
    fn call(&self, frame: RequestFrame, ctx: &ConnContext, reply: Responder) {
        let s = &self.shared;
        if s.closing.load(Ordering::Acquire) {
            return answer::refuse(reply, Refusal::ShuttingDown);
        }
        match frame.request {
            Request::Ping => answer::pong(reply),
            Request::Produce { target, value } if target.is_default() => {
                self.produce(Values::One(value), reply)
            }
            Request::ProduceBatch { target, values } if target.is_default() => {
                if values.is_empty() {
                    answer::empty_batch(reply, s.hw())
                } else {
                    self.produce(Values::Many(values), reply)
                }
            }
            Request::Consume { target, offset } if target.is_default() => {
                self.reads.consume(offset, reply)
            }
            Request::Fetch {
                offset,
                max_bytes,
                max_wait_ms,
            } => self.reads.fetch(offset, max_bytes, max_wait_ms, reply),
            Request::ReadEntries {
                group: GroupId::METADATA,
                from,
                end,
                anchor,
                max_bytes,
            } => self.reads.read_entries(from, end, anchor, max_bytes, reply),
            Request::GetServers => answer::servers(reply, self.servers()),
            Request::Status => answer::status(reply, self.status()),
            Request::PeerHandshake {
                cluster_name,
                node_id,
                node_name,
            } => {
                if cluster_name != s.cfg.cluster_name {
                    log::warn!(
                        "conn {} ({}): peer {node_id} ({node_name}) is in cluster \
                         `{cluster_name}`, not `{}`; refused",
                        ctx.conn_id,
                        ctx.peer_addr,
                        s.cfg.cluster_name
                    );
                    let foreign = Refusal::ForeignCluster {
                        ours: s.cfg.cluster_name.clone(),
                        theirs: cluster_name,
                    };
                    return answer::refuse(reply, foreign);
                }
                log::debug!(
                    "conn {} ({}): peer {node_id} ({node_name})",
                    ctx.conn_id,
                    ctx.peer_addr
                );
                self.add_peer(ctx.conn_id);
                self.inbox.push_control(Control::PeerConnected(node_id));
                answer::peer_welcome(reply)
            }
            Request::Raft {
                group: GroupId::METADATA,
                payload,
            } => {
                if !self.is_peer(ctx.conn_id) {
                    return answer::refuse(reply, Refusal::NotAPeer);
                }
                match decode_message(&payload) {
                    Ok(m) if m.to == s.cfg.node_id => self.inbox.push_peer(m),
                    Ok(m) => log::debug!("dropping a Raft message for node {}", m.to),
                    Err(e) => return answer::refuse(reply, Refusal::BadRaftMessage(e.to_string())),
                }
                answer::raft_queued(reply)
            }
            other => not_served(&other, reply),
        }
    }

    fn begin_shutdown(&self) {
        self.reads.release_parked();
    }
}

/// Until the node serves topics (issue #13): another topic than the default is
/// `UNKNOWN_TOPIC`, another Raft group and the new APIs `UNSUPPORTED_API`, so nothing
/// lands in the default log by mistake.
fn not_served(request: &Request, reply: Responder) {
    use wire::{ErrorBody, ErrorCode};
    let api = request.api_key();
    let err = match request.topics().first() {
        Some(topic)
            if matches!(
                api,
                wire::ApiKey::Produce | wire::ApiKey::ProduceBatch | wire::ApiKey::Consume
            ) =>
        {
            ErrorBody::new(
                ErrorCode::UnknownTopic,
                format!("topic `{topic}` (or that partition) does not exist on this node"),
            )
        }
        _ => ErrorBody::new(
            ErrorCode::UnsupportedApi,
            format!("{api} (this version or Raft group) is not served by this node yet"),
        ),
    };
    reply.respond(Err(err))
}

/// Encoded size of a record with no value, for limit messages.
pub(crate) const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES;
