//! The catalogue: topics, their partitions' groups and replicas, and `apply`.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{GroupId, NodeId};

use super::command::Command;
use super::error::CatalogueError;
use super::groups::{CursorCommit, CursorResults, Cursors, GroupName};
use super::name::TopicName;
use super::producers::{ProducerGrant, Producers};
use super::settings::{Replication, SettingsChange, TopicSettings};
use super::{MAX_PARTITIONS, MAX_TOPICS};

/// One partition of a topic: its own Raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number within the topic, from 0.
    pub partition: u32,
    /// The partition's Raft group (never 0, never reused).
    pub group: GroupId,
    /// The nodes that host it, the preferred leader first. Empty for
    /// [`Replication::All`]: every member of the metadata group hosts it.
    pub replicas: Vec<NodeId>,
}

impl PartitionInfo {
    /// The node that should lead the group when it is up (the first replica).
    pub fn preferred_leader(&self) -> Option<NodeId> {
        self.replicas.first().copied()
    }

    /// True if the partition is hosted by every member of the metadata group.
    pub fn follows_voters(&self) -> bool {
        self.replicas.is_empty()
    }

    /// True if `node` hosts the partition.
    pub fn is_hosted_by(&self, node: NodeId) -> bool {
        self.follows_voters() || self.replicas.contains(&node)
    }
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    /// Its name.
    pub name: TopicName,
    /// Unique over the catalogue's history: a topic deleted and created again under
    /// the same name gets a new id.
    pub id: u64,
    /// Its settings (`settings.partitions == partitions.len()`).
    pub settings: TopicSettings,
    /// Its partitions, partition `p` at index `p`.
    pub partitions: Vec<PartitionInfo>,
}

/// A partition group a command created or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionGroup {
    /// The group.
    pub group: GroupId,
    /// Its topic.
    pub topic: TopicName,
    /// Its partition number.
    pub partition: u32,
    /// Its replicas, preferred leader first (empty: every member hosts it).
    pub replicas: Vec<NodeId>,
}

/// What an applied command changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The topic the command was about.
    pub topic: TopicName,
    /// Groups to start where hosted (a created topic's, or partitions added by an
    /// alter), in group order.
    pub created: Vec<PartitionGroup>,
    /// Groups to stop, and whose data to remove, where hosted (a deleted topic's).
    pub deleted: Vec<PartitionGroup>,
    /// True when an alter changed settings the running groups use (retention,
    /// largest record); the new ones are in [`Catalogue::topic`].
    pub settings_changed: bool,
}

/// The outcome of [`Catalogue::apply`] for a command that was not refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The index was applied before (replay after a restart): nothing changed.
    AlreadyApplied,
    /// The command took effect.
    Changed(Change),
    /// A cursor command (CommitOffsets, DeleteGroup) was applied: one result per
    /// commit entry.
    Cursors(CursorResults),
    /// InitProducer handed out this producer id and epoch.
    Producer(ProducerGrant),
}

/// The catalogue: the state machine of the metadata group. See the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    topics: BTreeMap<TopicName, Topic>,
    /// Every partition group: where it is in `topics`.
    groups: BTreeMap<GroupId, (TopicName, u32)>,
    next_group: u64,
    next_topic_id: u64,
    applied: u64,
    /// Consumer groups' cursors (`groups.rs`).
    cursors: Cursors,
    /// Producer ids handed out (InitProducer).
    producers: Producers,
}

impl Default for Catalogue {
    fn default() -> Catalogue {
        Catalogue::new()
    }
}

impl Catalogue {
    /// An empty catalogue: no topics (the metadata leader proposes the `default`
    /// topic), nothing applied.
    pub fn new() -> Catalogue {
        Catalogue {
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            next_group: 1,
            next_topic_id: 1,
            applied: 0,
            cursors: Cursors::default(),
            producers: Producers::default(),
        }
    }

    /// The catalogue every cluster starts from: the `default` topic, one partition
    /// replicated on every voter, in group 1 (the log a node held before topics
    /// existed). Its settings are nominal: that partition's log follows the node's
    /// own flags (segment size, retention) until an AlterTopic changes retention.
    pub fn with_default_topic() -> Catalogue {
        let mut c = Catalogue::new();
        let name = TopicName::default_topic();
        let settings = TopicSettings {
            max_record_bytes: super::MAX_MAX_RECORD_BYTES,
            segment_bytes: super::MAX_SEGMENT_BYTES,
            ..TopicSettings::default()
        };
        let partitions = c.add_partitions(&name, 0, &[Vec::new()]);
        c.topics.insert(
            name.clone(),
            Topic {
                name,
                id: c.next_topic_id,
                settings,
                partitions,
            },
        );
        c.next_topic_id += 1;
        c
    }

    /// Index of the last metadata log entry applied (0: none).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The producer ids handed out (InitProducer).
    pub fn producers(&self) -> &Producers {
        &self.producers
    }

    /// Sets the producer ids (snapshot decoding).
    pub(super) fn set_producers(&mut self, producers: Producers) {
        self.producers = producers;
    }

    /// The group id the next created partition gets.
    pub fn next_group(&self) -> GroupId {
        GroupId(self.next_group)
    }

    /// The id the next created topic gets.
    pub fn next_topic_id(&self) -> u64 {
        self.next_topic_id
    }

    /// Records that the metadata log entry at `index` was applied without being a
    /// catalogue command (a no-op or configuration entry), so a replay skips it. An
    /// index at or below [`Catalogue::applied`] is ignored.
    pub fn skip(&mut self, index: u64) {
        self.applied = self.applied.max(index);
    }

    /// Applies the committed command at log `index`.
    ///
    /// Deterministic: the result depends only on the state and the command, so every
    /// node that applies the same log holds the same catalogue. An index at or below
    /// [`Catalogue::applied`] is ignored ([`Applied::AlreadyApplied`]), so replaying
    /// the log after a restart is harmless. A refused command returns its error and
    /// leaves the topics unchanged, but is still recorded as applied: it is committed,
    /// and every node refuses it the same way.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Applied, CatalogueError> {
        if index <= self.applied {
            return Ok(Applied::AlreadyApplied);
        }
        self.applied = index;
        let change = match cmd {
            Command::CreateTopic {
                name,
                settings,
                assignment,
            } => self.create(name, settings, assignment)?,
            Command::DeleteTopic { name } => self.delete(name)?,
            Command::AlterTopic {
                name,
                change,
                new_assignment,
            } => self.alter(name, change, new_assignment)?,
            Command::CommitOffsets { group, offsets } => {
                return Ok(Applied::Cursors(self.commit_offsets(group, offsets)));
            }
            Command::DeleteGroup { group } => {
                self.cursors.delete_group(group.as_str());
                return Ok(Applied::Cursors(Vec::new()));
            }
            Command::InitProducer { name } => {
                return Ok(Applied::Producer(self.producers.init(name.as_deref())?));
            }
        };
        Ok(Applied::Changed(change))
    }

    fn commit_offsets(&mut self, group: &GroupName, offsets: &[CursorCommit]) -> CursorResults {
        let topics = &self.topics;
        let exists = |t: &TopicName, p: u32| {
            topics
                .get(t)
                .is_some_and(|t| (p as usize) < t.partitions.len())
        };
        self.cursors.commit(group, offsets, exists)
    }

    /// The consumer groups' cursors.
    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// The lowest offset any consumer group committed on a partition (compaction
    /// keeps what a cursor has not passed); `None` when no group has a cursor there.
    pub fn min_cursor(&self, topic: &str, partition: u32) -> Option<u64> {
        self.cursors.min_cursor(topic, partition)
    }

    fn create(
        &mut self,
        name: &TopicName,
        settings: &TopicSettings,
        assignment: &[Vec<NodeId>],
    ) -> Result<Change, CatalogueError> {
        if self.topics.contains_key(name) {
            return Err(CatalogueError::TopicExists(name.clone()));
        }
        settings.validate()?;
        check_assignment(settings.replication, settings.partitions, assignment)?;
        self.check_room(1, settings.partitions)?;
        let id = self.next_topic_id;
        self.next_topic_id += 1;
        let partitions = self.add_partitions(name, 0, assignment);
        let created = partition_groups(name, &partitions);
        let topic = Topic {
            name: name.clone(),
            id,
            settings: settings.clone(),
            partitions,
        };
        self.topics.insert(name.clone(), topic);
        Ok(change(name, created, Vec::new(), false))
    }

    fn delete(&mut self, name: &TopicName) -> Result<Change, CatalogueError> {
        if name.is_default() {
            return Err(CatalogueError::DefaultTopicProtected);
        }
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| CatalogueError::UnknownTopic(name.clone()))?;
        for p in &topic.partitions {
            self.groups.remove(&p.group);
        }
        self.cursors.remove_topic(name);
        let deleted = partition_groups(name, &topic.partitions);
        Ok(change(name, Vec::new(), deleted, false))
    }

    fn alter(
        &mut self,
        name: &TopicName,
        settings_change: &SettingsChange,
        new_assignment: &[Vec<NodeId>],
    ) -> Result<Change, CatalogueError> {
        let unknown = || CatalogueError::UnknownTopic(name.clone());
        let current = &self.topics.get(name).ok_or_else(unknown)?.settings;
        let next = settings_change.apply_to(current)?;
        let added = next.partitions - current.partitions;
        check_assignment(next.replication, added, new_assignment)?;
        self.check_room(0, added)?;
        let settings_changed = TopicSettings {
            partitions: current.partitions,
            ..next.clone()
        } != *current;
        let first = current.partitions;
        let partitions = self.add_partitions(name, first, new_assignment);
        let created = partition_groups(name, &partitions);
        let topic = self.topics.get_mut(name).ok_or_else(unknown)?;
        topic.partitions.extend(partitions);
        topic.settings = next;
        Ok(change(name, created, Vec::new(), settings_changed))
    }

    /// Refuses a command that would exceed the catalogue's limits.
    fn check_room(&self, new_topics: usize, new_partitions: u32) -> Result<(), CatalogueError> {
        if self.topics.len() + new_topics > MAX_TOPICS {
            return Err(CatalogueError::Limit(format!(
                "a cluster holds at most {MAX_TOPICS} topics"
            )));
        }
        if self.groups.len() + new_partitions as usize > MAX_PARTITIONS {
            return Err(CatalogueError::Limit(format!(
                "a cluster holds at most {MAX_PARTITIONS} partitions (it has {})",
                self.groups.len()
            )));
        }
        let ids_left = self
            .next_topic_id
            .checked_add(new_topics as u64)
            .zip(self.next_group.checked_add(u64::from(new_partitions)));
        if ids_left.is_none() {
            return Err(CatalogueError::Limit("topic or group ids exhausted".into()));
        }
        Ok(())
    }

    /// Allocates groups for partitions `first ..` with the given replica lists and
    /// indexes them. The caller checked the assignment and the room.
    fn add_partitions(
        &mut self,
        name: &TopicName,
        first: u32,
        assignment: &[Vec<NodeId>],
    ) -> Vec<PartitionInfo> {
        let mut out = Vec::with_capacity(assignment.len());
        for (partition, replicas) in (first..).zip(assignment) {
            let group = GroupId(self.next_group);
            self.next_group += 1;
            self.groups.insert(group, (name.clone(), partition));
            out.push(PartitionInfo {
                partition,
                group,
                replicas: replicas.clone(),
            });
        }
        out
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// Partition `partition` of topic `topic`.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionInfo> {
        let topic = self.topics.get(topic)?;
        topic.partitions.get(usize::try_from(partition).ok()?)
    }

    /// The topic and partition of a group.
    pub fn group(&self, group: GroupId) -> Option<(&Topic, &PartitionInfo)> {
        let (name, partition) = self.groups.get(&group)?;
        let topic = self.topics.get(name)?;
        let info = topic.partitions.get(*partition as usize)?;
        Some((topic, info))
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Number of topics.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Number of partition groups over all topics.
    pub fn partition_count(&self) -> usize {
        self.groups.len()
    }

    /// Every partition `node` hosts, in group order: those that list it as a replica,
    /// and every partition with [`Replication::All`] (hosted by every member of the
    /// metadata group, which `node` is since it applies this catalogue).
    pub fn groups_on(&self, node: NodeId) -> Vec<(&Topic, &PartitionInfo)> {
        self.groups
            .keys()
            .filter_map(|g| self.group(*g))
            .filter(|(_, p)| p.is_hosted_by(node))
            .collect()
    }

    /// The groups whose preferred leader (first replica) is `node`, in group order:
    /// when `node` comes back, its owner asks for their leadership back.
    pub fn preferred_leader_groups(&self, node: NodeId) -> Vec<GroupId> {
        self.groups
            .keys()
            .filter_map(|g| self.group(*g))
            .filter(|(_, p)| p.preferred_leader() == Some(node))
            .map(|(_, p)| p.group)
            .collect()
    }

    /// Rebuilds a catalogue from decoded parts, checking every invariant `apply`
    /// keeps (the snapshot decoder's last step).
    pub(super) fn restore(
        applied: u64,
        next_group: u64,
        next_topic_id: u64,
        topics: Vec<Topic>,
    ) -> Result<Catalogue, String> {
        if next_group == 0 || next_topic_id == 0 {
            return Err("group and topic ids start at 1".into());
        }
        if topics.len() > MAX_TOPICS {
            return Err(format!("{} topics (at most {MAX_TOPICS})", topics.len()));
        }
        let mut c = Catalogue {
            applied,
            next_group,
            next_topic_id,
            ..Catalogue::new()
        };
        let mut ids = BTreeSet::new();
        for topic in topics {
            check_topic(&topic, next_topic_id, next_group)?;
            if !ids.insert(topic.id) {
                return Err(format!("topic id {} appears twice", topic.id));
            }
            if c.topics.keys().next_back() >= Some(&topic.name) {
                return Err(format!("topic {} is out of order", topic.name));
            }
            c.index(&topic)?;
            c.topics.insert(topic.name.clone(), topic);
        }
        Ok(c)
    }

    /// Sets the cursors of a restored catalogue, checking them against its topics
    /// (the snapshot decoder's step after [`Catalogue::restore`]).
    pub(super) fn restore_cursors(
        &mut self,
        groups: Vec<(GroupName, super::groups::GroupCursors)>,
    ) -> Result<(), String> {
        let topics = &self.topics;
        let exists = |t: &TopicName, p: u32| {
            topics
                .get(t)
                .is_some_and(|t| (p as usize) < t.partitions.len())
        };
        self.cursors = Cursors::restore(groups, exists)?;
        Ok(())
    }

    /// Adds a restored topic's groups to the group index.
    fn index(&mut self, topic: &Topic) -> Result<(), String> {
        for p in &topic.partitions {
            if self.groups.len() >= MAX_PARTITIONS {
                return Err(format!("more than {MAX_PARTITIONS} partitions"));
            }
            let at = (topic.name.clone(), p.partition);
            if self.groups.insert(p.group, at).is_some() {
                return Err(format!("group {} appears twice", p.group));
            }
        }
        Ok(())
    }
}

fn change(
    name: &TopicName,
    created: Vec<PartitionGroup>,
    deleted: Vec<PartitionGroup>,
    settings_changed: bool,
) -> Change {
    Change {
        topic: name.clone(),
        created,
        deleted,
        settings_changed,
    }
}

fn partition_groups(name: &TopicName, partitions: &[PartitionInfo]) -> Vec<PartitionGroup> {
    partitions
        .iter()
        .map(|p| PartitionGroup {
            group: p.group,
            topic: name.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
        })
        .collect()
}

/// Checks that `lists` holds one replica list per partition, each of the length the
/// replication asks for (empty for `All`) and without a node twice.
pub(super) fn check_assignment(
    replication: Replication,
    partitions: u32,
    lists: &[Vec<NodeId>],
) -> Result<(), CatalogueError> {
    let bad = |why: String| Err(CatalogueError::InvalidAssignment(why));
    if lists.len() != partitions as usize {
        return bad(format!(
            "{} replica lists for {partitions} partitions",
            lists.len()
        ));
    }
    for (i, list) in lists.iter().enumerate() {
        check_list(replication, i, list)?;
    }
    Ok(())
}

/// Checks the replica list of partition `i`.
fn check_list(replication: Replication, i: usize, list: &[NodeId]) -> Result<(), CatalogueError> {
    let want = replication.list_len();
    if list.len() != want {
        return Err(CatalogueError::InvalidAssignment(format!(
            "list {i} has {} replicas, replication {replication} needs {want}",
            list.len()
        )));
    }
    // Lists hold at most 5 nodes here.
    if list.iter().enumerate().any(|(j, n)| list[..j].contains(n)) {
        return Err(CatalogueError::InvalidAssignment(format!(
            "list {i} names a node twice"
        )));
    }
    Ok(())
}

/// Checks one restored topic against the invariants `apply` keeps.
fn check_topic(topic: &Topic, next_topic_id: u64, next_group: u64) -> Result<(), String> {
    let name = &topic.name;
    if topic.id == 0 || topic.id >= next_topic_id {
        return Err(format!(
            "topic {name} has id {} (next {next_topic_id})",
            topic.id
        ));
    }
    topic
        .settings
        .validate()
        .map_err(|e| format!("{name}: {e}"))?;
    if topic.partitions.len() != topic.settings.partitions as usize {
        return Err(format!("{name}: partition count differs from its settings"));
    }
    for (i, p) in topic.partitions.iter().enumerate() {
        if p.partition as usize != i {
            return Err(format!("{name}: partition {} at position {i}", p.partition));
        }
        if p.group.0 == 0 || p.group.0 >= next_group {
            return Err(format!("{name}: group {} (next {next_group})", p.group));
        }
        check_list(topic.settings.replication, i, &p.replicas)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}
