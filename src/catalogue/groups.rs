//! Consumer cursors: per consumer group, the next offset it will read of each topic
//! partition it committed, with a little free-form metadata.
//!
//! # Why in the metadata group
//! Cursors are catalogue state, changed by the commands
//! [`CommitOffsets`](super::Command::CommitOffsets) and
//! [`DeleteGroup`](super::Command::DeleteGroup) of the metadata Raft group (group 0).
//! That group is already replicated on every voter, so a committed cursor survives
//! any minority failure and a leader change like a topic does; it is applied by the
//! same deterministic [`Catalogue::apply`](super::Catalogue::apply), persisted with
//! the catalogue, and deleting a topic deletes its cursors in the same step (no
//! cursor ever outlives or predates its topic). The cost is one metadata entry per
//! commit, bounded by how often clients commit (`clog consume` every second by
//! default), and a catalogue snapshot that grows with the cursors: hence the bounds
//! below. An internal compacted topic would scale further but needs compaction and
//! a second read path; it can replace this later behind the same wire APIs.
//!
//! # Bounds (refusals are deterministic, like every `apply` outcome)
//! - A group name follows the topic names' rules (1–249 of `a-zA-Z0-9._-`, not `.`
//!   or `..`): anything else is [`CatalogueError::InvalidGroup`] for the whole command.
//! - A cursor's metadata is at most [`MAX_CURSOR_METADATA_BYTES`]; a larger one is
//!   refused for that partition ([`CatalogueError::CursorMetadataTooLarge`]).
//! - At most [`MAX_GROUPS`] groups: a commit that would create one more is refused
//!   for all its partitions ([`CatalogueError::Limit`]); existing groups keep
//!   committing.
//! - At most [`MAX_CURSORS_PER_GROUP`] cursors in a group, [`MAX_CURSORS`] cursors and [`MAX_CURSOR_METADATA_TOTAL_BYTES`] of
//!   metadata over all groups: a commit entry that would add a new cursor (or
//!   metadata bytes) past them is refused for that partition; moving an existing
//!   cursor with no more metadata than it had always succeeds, so consumers that
//!   exist keep working at the bound.
//! - A commit to a topic or partition that does not exist is refused for that
//!   partition ([`CatalogueError::UnknownTopic`]); the others still apply.
//!
//! A group exists while it holds at least one cursor: deleting the last topic it
//! read removes it.

use std::collections::BTreeMap;
use std::fmt;

use super::error::CatalogueError;
use super::name::TopicName;

/// Longest consumer group name, in bytes (as topic names).
pub const MAX_GROUP_NAME_BYTES: usize = super::MAX_TOPIC_NAME_BYTES;
/// Largest metadata of one cursor.
pub const MAX_CURSOR_METADATA_BYTES: usize = 4096;
/// Most consumer groups in a cluster.
pub const MAX_GROUPS: usize = 10_000;
/// Most cursors over all groups.
pub const MAX_CURSORS: usize = 100_000;
/// Most cursors of one group (with [`MAX_CURSOR_METADATA_TOTAL_BYTES`], this keeps
/// a FetchOffset of all of a group's cursors under the default 8 MiB frame).
pub const MAX_CURSORS_PER_GROUP: usize = 10_000;
/// Most metadata bytes over all cursors (the catalogue is copied and persisted
/// whole after each applied batch, so its size is kept modest).
pub const MAX_CURSOR_METADATA_TOTAL_BYTES: usize = 4 << 20;
/// Most partitions one CommitOffsets names.
pub const MAX_COMMIT_ENTRIES: usize = 1000;

/// A valid consumer group name (the rules of [`TopicName`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<GroupName, CatalogueError> {
        Self::from_bytes(name.as_bytes())
    }

    /// Checks raw bytes (from a decoder) and wraps them.
    pub(crate) fn from_bytes(raw: &[u8]) -> Result<GroupName, CatalogueError> {
        // Same rules as topic names; the error is re-labelled for groups.
        match TopicName::from_bytes(raw) {
            Ok(t) => Ok(GroupName(t.as_str().to_owned())),
            Err(CatalogueError::InvalidTopic { name, reason }) => {
                Err(CatalogueError::InvalidGroup { name, reason })
            }
            Err(e) => Err(e),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a group stands on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The next offset the group will read.
    pub offset: u64,
    /// The client's free-form metadata (at most [`MAX_CURSOR_METADATA_BYTES`]).
    pub metadata: Vec<u8>,
}

/// One partition of a [`CommitOffsets`](super::Command::CommitOffsets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorCommit {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: u32,
    /// The next offset the group will read.
    pub offset: u64,
    /// Free-form metadata.
    pub metadata: Vec<u8>,
}

/// What a cursor command did: one result per commit entry with its topic and
/// partition, in order (empty for DeleteGroup).
pub type CursorResults = Vec<(TopicName, u32, Result<(), CatalogueError>)>;

/// The cursors of one group, by (topic, partition).
pub type GroupCursors = BTreeMap<(TopicName, u32), Cursor>;

/// Every group's cursors, with the totals the bounds check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursors {
    groups: BTreeMap<GroupName, GroupCursors>,
    cursors: usize,
    metadata_bytes: usize,
}

impl Cursors {
    /// The groups, in name order.
    pub fn groups(&self) -> impl Iterator<Item = (&GroupName, &GroupCursors)> {
        self.groups.iter()
    }

    /// One group's cursors.
    pub fn group(&self, name: &str) -> Option<&GroupCursors> {
        self.groups.get(name)
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Number of cursors over all groups.
    pub fn cursor_count(&self) -> usize {
        self.cursors
    }

    /// The lowest cursor of any group on a partition (what compaction must not
    /// pass); `None` when no group has one there.
    pub fn min_cursor(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = (TopicName::parse(topic).ok()?, partition);
        self.groups
            .values()
            .filter_map(|g| g.get(&key).map(|c| c.offset))
            .min()
    }

    /// Applies a commit: each entry whose partition `exists` is stored unless a
    /// bound refuses it. See the module doc for the bounds.
    pub(super) fn commit(
        &mut self,
        group: &GroupName,
        entries: &[CursorCommit],
        exists: impl Fn(&TopicName, u32) -> bool,
    ) -> CursorResults {
        let new_group = !self.groups.contains_key(group);
        if new_group && self.groups.len() >= MAX_GROUPS {
            let full = format!("a cluster holds at most {MAX_GROUPS} consumer groups");
            return entries
                .iter()
                .map(|e| {
                    (
                        e.topic.clone(),
                        e.partition,
                        Err(CatalogueError::Limit(full.clone())),
                    )
                })
                .collect();
        }
        let mut cursors = self.groups.remove(group).unwrap_or_default();
        let results = entries
            .iter()
            .map(|e| {
                let result = self.commit_one(&mut cursors, e, &exists);
                (e.topic.clone(), e.partition, result)
            })
            .collect();
        if !cursors.is_empty() {
            self.groups.insert(group.clone(), cursors);
        }
        results
    }

    fn commit_one(
        &mut self,
        cursors: &mut GroupCursors,
        e: &CursorCommit,
        exists: &impl Fn(&TopicName, u32) -> bool,
    ) -> Result<(), CatalogueError> {
        if !exists(&e.topic, e.partition) {
            return Err(CatalogueError::UnknownTopic(e.topic.clone()));
        }
        if e.metadata.len() > MAX_CURSOR_METADATA_BYTES {
            return Err(CatalogueError::CursorMetadataTooLarge {
                bytes: e.metadata.len(),
            });
        }
        let key = (e.topic.clone(), e.partition);
        let old = cursors.get(&key).map_or(0, |c| c.metadata.len());
        let is_new = !cursors.contains_key(&key);
        if is_new && self.cursors >= MAX_CURSORS {
            return Err(CatalogueError::Limit(format!(
                "a cluster holds at most {MAX_CURSORS} consumer cursors"
            )));
        }
        if is_new && cursors.len() >= MAX_CURSORS_PER_GROUP {
            return Err(CatalogueError::Limit(format!(
                "a consumer group holds at most {MAX_CURSORS_PER_GROUP} cursors"
            )));
        }
        let grown = e.metadata.len().saturating_sub(old);
        if self.metadata_bytes + grown > MAX_CURSOR_METADATA_TOTAL_BYTES {
            return Err(CatalogueError::Limit(format!(
                "cursor metadata totals at most {MAX_CURSOR_METADATA_TOTAL_BYTES} bytes"
            )));
        }
        self.metadata_bytes = self.metadata_bytes + e.metadata.len() - old;
        self.cursors += usize::from(is_new);
        let cursor = Cursor {
            offset: e.offset,
            metadata: e.metadata.clone(),
        };
        cursors.insert(key, cursor);
        Ok(())
    }

    /// Removes a group (nothing if it has no cursor).
    pub(super) fn delete_group(&mut self, group: &str) {
        if let Some(cursors) = self.groups.remove(group) {
            self.forget(&cursors);
        }
    }

    /// Removes every cursor on `topic` (the topic was deleted), and the groups left
    /// without a cursor.
    pub(super) fn remove_topic(&mut self, topic: &TopicName) {
        let (mut cursors_gone, mut bytes_gone) = (0, 0);
        for cursors in self.groups.values_mut() {
            cursors.retain(|(t, _), c| {
                let keep = t != topic;
                if !keep {
                    cursors_gone += 1;
                    bytes_gone += c.metadata.len();
                }
                keep
            });
        }
        self.cursors -= cursors_gone;
        self.metadata_bytes -= bytes_gone;
        self.groups.retain(|_, cursors| !cursors.is_empty());
    }

    fn forget(&mut self, cursors: &GroupCursors) {
        self.cursors -= cursors.len();
        self.metadata_bytes -= cursors.values().map(|c| c.metadata.len()).sum::<usize>();
    }

    /// Rebuilds the cursors from a snapshot's groups, checking every invariant
    /// `commit` keeps (`exists` tells which partitions the catalogue has).
    pub(super) fn restore(
        groups: Vec<(GroupName, GroupCursors)>,
        exists: impl Fn(&TopicName, u32) -> bool,
    ) -> Result<Cursors, String> {
        if groups.len() > MAX_GROUPS {
            return Err(format!("{} consumer groups", groups.len()));
        }
        let mut out = Cursors::default();
        for (name, cursors) in groups {
            if out.groups.keys().next_back() >= Some(&name) {
                return Err(format!("consumer group {name} is out of order"));
            }
            if cursors.is_empty() || cursors.len() > MAX_CURSORS_PER_GROUP {
                return Err(format!(
                    "consumer group {name} has {} cursors",
                    cursors.len()
                ));
            }
            for ((topic, partition), c) in &cursors {
                if !exists(topic, *partition) {
                    return Err(format!("group {name}: no partition {topic}/{partition}"));
                }
                if c.metadata.len() > MAX_CURSOR_METADATA_BYTES {
                    return Err(format!("group {name}: metadata too large"));
                }
                out.metadata_bytes += c.metadata.len();
            }
            out.cursors += cursors.len();
            if out.cursors > MAX_CURSORS || out.metadata_bytes > MAX_CURSOR_METADATA_TOTAL_BYTES {
                return Err("more cursors or cursor metadata than the bounds".into());
            }
            out.groups.insert(name, cursors);
        }
        Ok(out)
    }
}
