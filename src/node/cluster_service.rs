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
use super::fetch_many::{ManyFetch, Part};
use super::group::GroupState;
use super::inbox::{AdminKind, Control, Inbox, ProduceJob, ReplyShape};

use super::producers as producer;
use super::reads::Reads;
use super::served::ReadFormat;
use super::topics;
use super::{hosting, produce_v1};
use super::{lock, Shared};
use crate::net::{ConnContext, Responder, Service};
use crate::raft::{decode_message_owned, Role};
use crate::replica::dedup::BatchMeta;
use crate::replica::Values;
use crate::storage::RECORD_HEADER_BYTES;
use crate::types::{GroupId, NodeId, RecordKind};
use crate::wire::{
    self, Request, RequestFrame, ServerInfo, ServerRole, StatusInfo, TopicPartition,
};

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

    /// Queues a produce of v1 payloads (already encoded) after the leader and size
    /// checks; the size limits apply to the stored payloads.
    fn produce(
        &self,
        group: &GroupState,
        values: Values,
        shape: ReplyShape,
        producer: Option<BatchMeta>,
        reply: Responder,
    ) {
        let s = &self.shared;
        let (role, leader) = {
            let v = lock(&group.view);
            (v.role, v.leader)
        };
        // With a full disk the raft thread decides (it retries its writes first).
        if role != Role::Leader && !s.disk_full.load(Ordering::Acquire) {
            return answer::refuse(reply, s.not_leader(leader));
        }
        let max_value = s.max_record_value_bytes().min(group.max_record_bytes());
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
        let kind = RecordKind::DataV1;
        self.queue_produce(group.id, values, kind, shape, producer, reply);
    }

    /// Queues a produce (or catalogue command) for the raft thread, answering
    /// UNAVAILABLE when the queue is full.
    fn queue_produce(
        &self,
        group: GroupId,
        values: Values,
        kind: RecordKind,
        shape: ReplyShape,
        producer: Option<BatchMeta>,
        reply: Responder,
    ) {
        let timeout = Duration::from_millis(self.shared.cfg.request_timeout_ms.max(1));
        let job = ProduceJob {
            group,
            values,
            kind,
            shape,
            reply,
            deadline: Instant::now() + timeout,
            producer,
        };
        if let Err(reply) = self.inbox.push_produce(job) {
            answer::refuse(
                reply,
                Refusal::Busy("produce queue (replication is behind)"),
            );
        }
    }

    /// A produce to a topic partition: routed to its group (v0: the default).
    fn produce_to(&self, target: &TopicPartition, values: Values, reply: Responder) {
        let group = match topics::route(&self.shared, target) {
            Ok(g) => g,
            Err(why) => return answer::refuse(reply, why),
        };
        if values.is_empty() {
            return answer::empty_batch(reply, group.hw());
        }
        let shape = match values {
            Values::One(_) => ReplyShape::Single,
            Values::Many(_) => ReplyShape::Batch,
        };
        // Bare values are stored as v1 records stamped with this leader's time.
        let values = produce_v1::wrap_values(values, produce_v1::leader_now_ms());
        self.produce(&group, values, shape, None, reply)
    }

    /// ProduceBatch v2: records of format v1, checked and stamped here (the topic's
    /// timestamp type), then appended as they are.
    fn produce_batch_v2(
        &self,
        target: &TopicPartition,
        producer: Option<BatchMeta>,
        mut records: Vec<Vec<u8>>,
        reply: Responder,
    ) {
        let group = match topics::route(&self.shared, target) {
            Ok(g) => g,
            Err(why) => return answer::refuse(reply, why),
        };
        // The partition's dedup state checks the batch on the leader (driver).
        if let Some(bad) = producer::count_mismatch(producer.as_ref(), records.len()) {
            return answer::refuse(reply, Refusal::InvalidRecord(bad));
        }
        if records.is_empty() {
            return answer::empty_batch_v2(reply, group.hw());
        }
        let ty = hosting::timestamp_type_of(&self.shared, group.id);
        let now_ms = produce_v1::leader_now_ms();
        if let Err(bad) = produce_v1::stamp_records(&mut records, ty, now_ms) {
            return answer::refuse(reply, Refusal::InvalidRecord(bad.message()));
        }
        let values = Values::Many(records);
        self.produce(&group, values, ReplyShape::BatchV2, producer, reply)
    }

    /// Fetch v1: each partition routed to its group (or answered with its error).
    fn fetch_partitions(
        &self,
        partitions: Vec<wire::FetchPartition>,
        max_bytes: u32,
        max_wait_ms: u32,
        format: ReadFormat,
        reply: Responder,
    ) {
        let parts = partitions
            .into_iter()
            .map(|p| Part {
                group: topics::route(&self.shared, &p.target).map_err(answer::error_body),
                target: p.target,
                offset: p.offset,
                max_bytes: p.max_bytes,
            })
            .collect();
        let fetch = ManyFetch {
            parts,
            max_bytes: u64::from(max_bytes),
            wait: Duration::ZERO,
            format,
        };
        self.reads.fetch_many(fetch, max_wait_ms, reply)
    }

    /// A catalogue command goes to the metadata group like a produce; its answer
    /// comes once it is applied (`hosting`).
    fn propose_admin(
        &self,
        cmd: Result<crate::catalogue::Command, Refusal>,
        kind: AdminKind,
        reply: Responder,
    ) {
        let cmd = match cmd {
            Ok(c) => c,
            Err(why) => return answer::refuse(reply, why),
        };
        let Some(meta) = self.shared.groups.get(GroupId::METADATA) else {
            return answer::refuse(reply, Refusal::Starting);
        };
        let s = &self.shared;
        let leader = {
            let v = lock(&meta.view);
            (v.role != Role::Leader).then_some(v.leader)
        };
        if let Some(leader) = leader {
            return answer::refuse(reply, s.not_leader(leader));
        }
        let (values, shape) = (Values::One(cmd.to_bytes()), ReplyShape::Admin(kind));
        // Catalogue commands stay `Data` entries (the metadata group's format).
        self.queue_produce(
            GroupId::METADATA,
            values,
            RecordKind::Data,
            shape,
            None,
            reply,
        );
    }

    fn handshake(
        &self,
        ctx: &ConnContext,
        cluster_name: String,
        node_id: NodeId,
        node_name: String,
        reply: Responder,
    ) {
        let s = &self.shared;
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

    /// The peer APIs: handshake and Raft messages (version 0 means group 1, as the
    /// codec decodes it).
    fn peer_call(&self, request: Request, quiet: bool, ctx: &ConnContext, reply: Responder) {
        if let Request::PeerHandshake {
            cluster_name,
            node_id,
            node_name,
        } = request
        {
            return self.handshake(ctx, cluster_name, node_id, node_name, reply);
        }
        if !self.is_peer(ctx.conn_id) {
            return answer::refuse(reply, Refusal::NotAPeer);
        }
        let queued = match request {
            Request::Raft { group, payload } => self.queue_raft(group, payload),
            Request::RaftBatch { messages } => messages
                .into_iter()
                .try_for_each(|m| self.queue_raft(m.group, m.payload)),
            _ => Ok(()),
        };
        match queued {
            Err(e) => answer::refuse(reply, e),
            Ok(()) if reply.api_key() == wire::ApiKey::RaftBatch && quiet => {
                answer::raft_batch_queued_quietly(reply)
            }
            Ok(()) if reply.api_key() == wire::ApiKey::RaftBatch => {
                answer::raft_batch_queued(reply)
            }
            Ok(()) => answer::raft_queued(reply),
        }
    }

    /// Decodes a peer's Raft message and queues it for the raft thread (its entries
    /// share `payload`).
    fn queue_raft(&self, group: GroupId, payload: Vec<u8>) -> Result<(), Refusal> {
        match decode_message_owned(payload) {
            Ok(m) if m.to == self.shared.cfg.node_id => self.inbox.push_peer(group, m),
            Ok(m) => log::debug!("dropping a Raft message for node {}", m.to),
            Err(e) => return Err(Refusal::BadRaftMessage(e.to_string())),
        }
        Ok(())
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
        let view = s.default.view();
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
        let v = s.default.view();
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
        let version_1 = frame.wire_version() >= 1;
        // Version 1 of the topic APIs answers with settings v2 (wire-spec §18).
        let settings_v2 = version_1;
        match frame.request {
            Request::Ping => answer::pong(reply),
            Request::Produce { target, value } => {
                self.produce_to(&target, Values::One(value), reply)
            }
            Request::ProduceBatch { target, values } => {
                self.produce_to(&target, Values::Many(values), reply)
            }
            Request::Consume { target, offset } => match topics::route(s, &target) {
                Ok(group) => self.reads.consume(group, offset, ReadFormat::Value, reply),
                Err(why) => answer::refuse(reply, why),
            },
            Request::ConsumeV2 { target, offset } => match topics::route(s, &target) {
                Ok(group) => self.reads.consume(group, offset, ReadFormat::V1, reply),
                Err(why) => answer::refuse(reply, why),
            },
            Request::ProduceBatchV2 {
                target,
                producer,
                records,
            } => self.produce_batch_v2(&target, producer, records, reply),
            Request::FetchV2 {
                max_wait_ms,
                max_bytes,
                partitions,
            } => {
                let format = ReadFormat::V1;
                self.fetch_partitions(partitions, max_bytes, max_wait_ms, format, reply)
            }
            Request::Fetch {
                offset,
                max_bytes,
                max_wait_ms,
            } => {
                let group = Arc::clone(&s.default);
                self.reads
                    .fetch(group, offset, max_bytes, max_wait_ms, reply)
            }
            Request::FetchPartitions {
                max_wait_ms,
                max_bytes,
                partitions,
            } => {
                let format = ReadFormat::Value;
                self.fetch_partitions(partitions, max_bytes, max_wait_ms, format, reply)
            }
            Request::ListOffsets { queries } => {
                let lookups = queries
                    .into_iter()
                    .map(|q| super::list_offsets::Lookup {
                        group: topics::route(s, &q.target).map_err(answer::error_body),
                        target: q.target,
                        spec: q.spec,
                    })
                    .collect();
                self.reads.list_offsets(lookups, reply)
            }
            Request::GetServers => answer::servers(reply, self.servers()),
            Request::Status => answer::status(reply, self.status()),
            Request::Metadata { topics } => topics::metadata(s, &topics, reply),
            Request::DescribeTopic { name } => topics::describe_topic(s, &name, settings_v2, reply),
            Request::CreateTopic { name, settings } => {
                let cmd = topics::create_command(s, &name, &settings);
                let kind = if settings_v2 {
                    AdminKind::CreateV1
                } else {
                    AdminKind::Create
                };
                self.propose_admin(cmd, kind, reply)
            }
            Request::AlterTopic { name, changes } => {
                let cmd = topics::alter_command(s, &name, &changes);
                let kind = if settings_v2 {
                    AdminKind::AlterV1
                } else {
                    AdminKind::Alter
                };
                self.propose_admin(cmd, kind, reply)
            }
            Request::DeleteTopic { name } => {
                let cmd = topics::delete_command(s, &name);
                self.propose_admin(cmd, AdminKind::Delete, reply)
            }
            Request::Group(g) => {
                let identity = ctx.identity.as_deref();
                if let Some((cmd, kind, reply)) = super::groups::serve(s, g, identity, reply) {
                    self.propose_admin(cmd, kind, reply)
                }
            }
            Request::InitProducer { name } => {
                let cmd = super::producers::init_command(name);
                self.propose_admin(cmd, AdminKind::InitProducer, reply)
            }
            // A healer's request: a plain connection with the `replicate` action.
            Request::ReadEntries {
                group,
                from,
                end,
                anchor,
                max_bytes,
            } => match s.groups.get(group) {
                Some(g) => self
                    .reads
                    .read_entries(g, (from, end, anchor), max_bytes, reply),
                None => answer::refuse(
                    reply,
                    Refusal::UnknownTopic(format!("group {group} is not hosted here")),
                ),
            },
            // RaftBatch v1 is answered only when refused.
            peer @ (Request::PeerHandshake { .. }
            | Request::Raft { .. }
            | Request::RaftBatch { .. }) => self.peer_call(peer, version_1, ctx, reply),
        }
    }

    fn begin_shutdown(&self) {
        self.reads.release_parked();
        super::groups::release_waiting(&self.shared);
    }
}

/// Encoded size of a record with no value, for limit messages.
pub(crate) const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES;
