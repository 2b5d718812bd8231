//! Topic requests on a node: which hosted group serves a topic partition, the
//! catalogue commands behind CreateTopic / DeleteTopic / AlterTopic (proposed to the
//! metadata group like a produce, answered once applied), and the Metadata and
//! DescribeTopic answers built from the applied catalogue and the groups' views.

use std::sync::Arc;

use super::answer::{self, Refusal};
use super::group::GroupState;
use super::{lock, Shared};
use crate::catalogue::{
    self, CatalogueError, Command, Replication, SettingsChange, Topic, TopicName,
};
use crate::catalogue::{CleanupPolicy, TimestampType, DEFAULT_TOMBSTONE_RETENTION_MS};
use crate::net::Responder;
use crate::raft::Role;
use crate::types::{GroupId, NodeId};
use crate::wire::{self, ErrorCode, NodeInfo, TopicDescription, TopicMetadata, TopicPartition};

/// The hosted group serving `target`, or why there is none here.
pub(crate) fn route(shared: &Shared, target: &TopicPartition) -> Result<Arc<GroupState>, Refusal> {
    if target.is_default() {
        return Ok(Arc::clone(&shared.default));
    }
    let name = TopicName::parse(&target.topic).map_err(refusal)?;
    let catalogue = shared.catalogue();
    let Some(p) = catalogue.partition(name.as_str(), target.partition) else {
        return Err(match catalogue.topic(name.as_str()) {
            None => Refusal::UnknownTopic(format!("no topic named {name}")),
            Some(t) => Refusal::UnknownTopic(format!(
                "topic {name} has {} partition(s); there is no partition {}",
                t.partitions.len(),
                target.partition
            )),
        });
    };
    match shared.groups.get(p.group) {
        Some(g) => Ok(g),
        // Placed here but still opening (a big topic opens over a few iterations).
        None if p.is_hosted_by(shared.cfg.node_id) => {
            Err(Refusal::Busy("partition still opening on this node"))
        }
        // Not a replica here: point at one that is (its preferred leader first).
        None => Err(shared.not_leader(p.replicas.first().copied())),
    }
}

/// The catalogue's refusal as the wire's.
pub(crate) fn refusal(e: CatalogueError) -> Refusal {
    match e {
        CatalogueError::InvalidTopic { .. } => Refusal::InvalidTopic(e.to_string()),
        CatalogueError::TopicExists(_) => Refusal::TopicExists(e.to_string()),
        CatalogueError::UnknownTopic(_) => Refusal::UnknownTopic(e.to_string()),
        CatalogueError::InvalidSettings(_)
        | CatalogueError::InvalidAssignment(_)
        | CatalogueError::PartitionsDecrease { .. }
        | CatalogueError::ReplicationTooHigh { .. }
        | CatalogueError::Limit(_)
        | CatalogueError::DefaultTopicProtected
        | CatalogueError::Malformed(_) => Refusal::InvalidConfig(e.to_string()),
        CatalogueError::InvalidGroup { .. } => Refusal::InvalidGroup(e.to_string()),
        CatalogueError::CursorMetadataTooLarge { .. } => Refusal::InvalidConfig(e.to_string()),
    }
}

/// CreateTopic's settings as the catalogue's (zero: none or the default).
pub(crate) fn settings_from_wire(s: &wire::TopicSettings) -> catalogue::TopicSettings {
    let defaults = catalogue::TopicSettings::default();
    let nonzero = |v: u64| (v != 0).then_some(v);
    catalogue::TopicSettings {
        partitions: if s.partitions == 0 { 1 } else { s.partitions },
        replication: match s.replication {
            0 => Replication::All,
            n => Replication::Factor(n),
        },
        retention_bytes: nonzero(s.retention_bytes),
        retention_age_ms: nonzero(s.retention_age_ms),
        max_record_bytes: if s.max_record_bytes == 0 {
            defaults.max_record_bytes
        } else {
            s.max_record_bytes
        },
        segment_bytes: nonzero(s.segment_bytes).unwrap_or(defaults.segment_bytes),
        // The decoder admits only the defined codes.
        timestamp_type: TimestampType::from_code(s.timestamp_type).unwrap_or_default(),
        cleanup_policy: CleanupPolicy::from_code(s.cleanup_policy).unwrap_or_default(),
        tombstone_retention_ms: nonzero(s.tombstone_retention_ms)
            .unwrap_or(defaults.tombstone_retention_ms),
    }
}

/// AlterTopic's changes as the catalogue's (a zero retention clears it).
pub(crate) fn change_from_wire(c: &wire::TopicChanges) -> SettingsChange {
    let update = |v: Option<u64>| v.map(|v| (v != 0).then_some(v));
    SettingsChange {
        partitions: c.partitions,
        retention_bytes: update(c.retention_bytes),
        retention_age_ms: update(c.retention_age_ms),
        max_record_bytes: c.max_record_bytes,
        timestamp_type: c
            .timestamp_type
            .map(|t| TimestampType::from_code(t).unwrap_or_default()),
        cleanup_policy: c
            .cleanup_policy
            .map(|p| CleanupPolicy::from_code(p).unwrap_or_default()),
        tombstone_retention_ms: c.tombstone_retention_ms.map(|ms| {
            if ms == 0 {
                DEFAULT_TOMBSTONE_RETENTION_MS
            } else {
                ms
            }
        }),
    }
}

/// The metadata group's voters as this node sees them (the proposer's assignment
/// input).
pub(crate) fn voters(shared: &Shared) -> Vec<NodeId> {
    shared
        .groups
        .get(GroupId::METADATA)
        .map(|g| g.view().membership.voters.into_iter().collect())
        .unwrap_or_default()
}

/// Builds the command of a CreateTopic (validated and assigned here, checked again
/// when applied).
pub(crate) fn create_command(
    shared: &Shared,
    name: &str,
    settings: &wire::TopicSettings,
) -> Result<Command, Refusal> {
    let name = TopicName::parse(name).map_err(refusal)?;
    let settings = settings_from_wire(settings);
    settings.validate().map_err(refusal)?;
    let catalogue = shared.catalogue();
    if catalogue.topic(name.as_str()).is_some() {
        return Err(refusal(CatalogueError::TopicExists(name)));
    }
    let assignment = catalogue::assign(
        &voters(shared),
        &catalogue,
        settings.partitions,
        settings.replication,
        0,
    )
    .map_err(refusal)?;
    Ok(Command::CreateTopic {
        name,
        settings,
        assignment,
    })
}

/// Builds the command of an AlterTopic (new partitions are assigned here).
pub(crate) fn alter_command(
    shared: &Shared,
    name: &str,
    changes: &wire::TopicChanges,
) -> Result<Command, Refusal> {
    let name = TopicName::parse(name).map_err(refusal)?;
    let catalogue = shared.catalogue();
    let topic = catalogue
        .topic(name.as_str())
        .ok_or_else(|| refusal(CatalogueError::UnknownTopic(name.clone())))?;
    let change = change_from_wire(changes);
    let next = change.apply_to(&topic.settings).map_err(refusal)?;
    let current = topic.settings.partitions;
    let new_assignment = catalogue::assign(
        &voters(shared),
        &catalogue,
        next.partitions - current,
        next.replication,
        current,
    )
    .map_err(refusal)?;
    Ok(Command::AlterTopic {
        name,
        change,
        new_assignment,
    })
}

/// Builds the command of a DeleteTopic.
pub(crate) fn delete_command(shared: &Shared, name: &str) -> Result<Command, Refusal> {
    let name = TopicName::parse(name).map_err(refusal)?;
    if shared.catalogue().topic(name.as_str()).is_none() {
        return Err(refusal(CatalogueError::UnknownTopic(name)));
    }
    Ok(Command::DeleteTopic { name })
}

/// A partition's leader as this node knows it (0: unknown, not hosted here).
fn leader_of(shared: &Shared, group: GroupId) -> NodeId {
    shared
        .groups
        .get(group)
        .and_then(|g| {
            let v = lock(&g.view);
            if v.role == Role::Leader {
                Some(shared.cfg.node_id)
            } else {
                v.leader
            }
        })
        .unwrap_or(NodeId(0))
}

/// A partition's replicas: its list, or the metadata group's voters for one
/// replicated on every voter.
fn replicas_of(p: &catalogue::PartitionInfo, voters: &[NodeId]) -> Vec<NodeId> {
    if p.replicas.is_empty() {
        voters.to_vec()
    } else {
        p.replicas.clone()
    }
}

fn partitions_of(shared: &Shared, topic: &Topic, voters: &[NodeId]) -> Vec<wire::PartitionInfo> {
    topic
        .partitions
        .iter()
        .map(|p| wire::PartitionInfo {
            partition: p.partition,
            group: p.group,
            leader: leader_of(shared, p.group),
            replicas: replicas_of(p, voters),
        })
        .collect()
}

/// A topic as DescribeTopic (and the admin answers) report it.
pub(crate) fn describe(shared: &Shared, topic: &Topic) -> TopicDescription {
    let s = &topic.settings;
    TopicDescription {
        name: topic.name.as_str().to_string(),
        topic_id: topic.id,
        settings: wire::TopicSettings {
            partitions: s.partitions,
            replication: match s.replication {
                Replication::All => 0,
                Replication::Factor(n) => n,
            },
            retention_bytes: s.retention_bytes.unwrap_or(0),
            retention_age_ms: s.retention_age_ms.unwrap_or(0),
            max_record_bytes: s.max_record_bytes,
            segment_bytes: s.segment_bytes,
            timestamp_type: s.timestamp_type.code(),
            cleanup_policy: s.cleanup_policy.code(),
            tombstone_retention_ms: s.tombstone_retention_ms,
        },
        partitions: partitions_of(shared, topic, &voters(shared)),
        settings_v2: false,
    }
}

/// Answers DescribeTopic (with settings v2 when `settings_v2`: asked in version 1).
pub(crate) fn describe_topic(shared: &Shared, name: &str, settings_v2: bool, reply: Responder) {
    let catalogue = shared.catalogue();
    match catalogue.topic(name) {
        Some(t) => {
            let d = TopicDescription {
                settings_v2,
                ..describe(shared, t)
            };
            answer::topic(reply, ApiAnswer::Describe, d)
        }
        None => answer::refuse(
            reply,
            Refusal::UnknownTopic(format!("no topic named {name}")),
        ),
    }
}

/// Which admin API a topic description answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiAnswer {
    Create,
    Alter,
    Describe,
}

/// Answers Metadata: the known nodes, and the asked topics (all when none).
pub(crate) fn metadata(shared: &Shared, asked: &[String], reply: Responder) {
    let catalogue = shared.catalogue();
    let voters = voters(shared);
    let topics: Vec<TopicMetadata> = if asked.is_empty() {
        catalogue
            .topics()
            .map(|t| topic_metadata(shared, t, &voters))
            .collect()
    } else {
        asked
            .iter()
            .map(|name| match catalogue.topic(name) {
                Some(t) => topic_metadata(shared, t, &voters),
                None => TopicMetadata {
                    name: name.clone(),
                    error: ErrorCode::UnknownTopic,
                    partitions: Vec::new(),
                },
            })
            .collect()
    };
    answer::metadata(reply, nodes(shared), topics);
}

fn topic_metadata(shared: &Shared, t: &Topic, voters: &[NodeId]) -> TopicMetadata {
    TopicMetadata {
        name: t.name.as_str().to_string(),
        error: ErrorCode::None,
        partitions: partitions_of(shared, t, voters),
    }
}

/// This node and the live members gossip knows, with their client addresses.
fn nodes(shared: &Shared) -> Vec<NodeInfo> {
    let cfg = &shared.cfg;
    let mut out = vec![NodeInfo {
        id: cfg.node_id,
        name: cfg.node_name.clone(),
        rpc_addr: cfg.rpc_addr.to_string(),
    }];
    for (id, m) in lock(&shared.members).iter() {
        if *id == cfg.node_id || !m.live {
            continue;
        }
        if let Some(addr) = &m.rpc_addr {
            out.push(NodeInfo {
                id: *id,
                name: m.name.clone(),
                rpc_addr: addr.clone(),
            });
        }
    }
    out
}
