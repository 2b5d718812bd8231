//! The catalogue's snapshot format, so a node can persist what it applied (and the
//! metadata group can later compact its log).
//!
//! `u8 format version (2) | u64 applied | u64 next_group | u64 next_topic_id |
//! u32 topic count | topics in name order | u32 group count | consumer groups in name
//! order | producers`, big-endian; a topic is `name | u64 id | settings | u32
//! partition count | partitions`, a partition `u32 partition | u64 group | replica
//! list` (field encodings of `codec.rs`); a consumer group is `name | u32 cursor count
//! | cursors in (topic, partition) order`, a cursor `topic name | u32 partition | u64
//! offset | u32 len | metadata`; `producers` is the producer ids' encoding
//! (`producers.rs`). Version 1 (before consumer cursors, settings v2 and producer
//! ids) ends after the topics and still decodes, with no groups and no producer id
//! handed out (a release that wrote version 1 had no InitProducer).
//!
//! The decoder checks every invariant `apply` keeps (valid settings, partitions
//! numbered from 0, group ids unique and below `next_group`, replica lists of the
//! topic's shape, names sorted and unique, limits), so a decoded catalogue is one
//! that `apply` could have built. No checksum: the file that holds it carries one.
//!
//! Format 2 (written now) carries settings v2 (`codec.rs`) and the consumer
//! groups; format 1 decodes with the settings' defaults and no groups.

use crate::bytes::ByteReader;
use crate::types::GroupId;

use super::codec::{
    get_name, get_replicas, get_settings, malformed, put_name, put_replicas, put_settings,
};
use super::command::{get_group, get_metadata, put_group, put_metadata};
use super::error::CatalogueError;
use super::groups::{Cursor, GroupCursors, GroupName, MAX_CURSORS, MAX_GROUPS};
use super::producers::Producers;
use super::settings::MAX_PARTITIONS_PER_TOPIC;
use super::state::{Catalogue, PartitionInfo, Topic};
use super::MAX_TOPICS;

const FORMAT_VERSION: u8 = 2;
/// Smallest encoded consumer group: name (1 + 1) + cursor count.
const MIN_GROUP_BYTES: usize = 2 + 4;
/// Smallest encoded cursor: topic name (1 + 1) + partition + offset + metadata length.
const MIN_CURSOR_BYTES: usize = 2 + 4 + 8 + 4;
/// The format before settings v2 and consumer cursors, still read.
const FORMAT_VERSION_1: u8 = 1;
/// Smallest encoded topic: name (1 + 1) + id + settings (20) + partition count.
const MIN_TOPIC_BYTES: usize = 2 + 8 + 20 + 4;
/// Smallest encoded partition: number + group + replica count.
const MIN_PARTITION_BYTES: usize = 4 + 8 + 4;

impl Catalogue {
    /// Appends the catalogue's snapshot encoding to `out`.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.applied().to_be_bytes());
        out.extend_from_slice(&self.next_group().0.to_be_bytes());
        out.extend_from_slice(&self.next_topic_id().to_be_bytes());
        // At most MAX_TOPICS topics (apply's limit) fit in a u32.
        out.extend_from_slice(&(self.topic_count() as u32).to_be_bytes());
        for topic in self.topics() {
            put_name(out, &topic.name);
            out.extend_from_slice(&topic.id.to_be_bytes());
            put_settings(out, &topic.settings, FORMAT_VERSION);
            // At most MAX_PARTITIONS_PER_TOPIC partitions (validated settings).
            out.extend_from_slice(&(topic.partitions.len() as u32).to_be_bytes());
            for p in &topic.partitions {
                out.extend_from_slice(&p.partition.to_be_bytes());
                out.extend_from_slice(&p.group.0.to_be_bytes());
                put_replicas(out, &p.replicas);
            }
        }
        put_cursors(out, self);
        self.producers().encode(out);
    }

    /// Decodes a snapshot written by [`Catalogue::encode_snapshot`]; any other input,
    /// or one that breaks an invariant of the catalogue, is
    /// [`CatalogueError::Malformed`].
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Catalogue, CatalogueError> {
        let mut r = ByteReader::new(bytes);
        let version = r.u8("snapshot format version")?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(malformed(format!(
                "unknown snapshot format version {version}"
            )));
        }
        let applied = r.u64("applied index")?;
        let next_group = r.u64("next group")?;
        let next_topic_id = r.u64("next topic id")?;
        let count = r.u32("topic count")?;
        if count as usize > MAX_TOPICS {
            return Err(malformed(format!("{count} topics (at most {MAX_TOPICS})")));
        }
        let count = r.checked_count(u64::from(count), MIN_TOPIC_BYTES, "topic count")?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(get_topic(&mut r, version)?);
        }
        let (groups, producers) = if version == FORMAT_VERSION {
            (get_cursors(&mut r)?, Producers::decode(&mut r)?)
        } else {
            (Vec::new(), Producers::default())
        };
        r.finish("catalogue snapshot")?;
        let mut c =
            Catalogue::restore(applied, next_group, next_topic_id, topics).map_err(malformed)?;
        c.restore_cursors(groups).map_err(malformed)?;
        c.set_producers(producers);
        Ok(c)
    }
}

fn get_topic(r: &mut ByteReader<'_>, version: u8) -> Result<Topic, CatalogueError> {
    let name = get_name(r)?;
    let id = r.u64("topic id")?;
    let settings = get_settings(r, version)?;
    let count = r.u32("partition count")?;
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(malformed(format!(
            "topic {name} has {count} partitions (at most {MAX_PARTITIONS_PER_TOPIC})"
        )));
    }
    let count = r.checked_count(u64::from(count), MIN_PARTITION_BYTES, "partition count")?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        partitions.push(PartitionInfo {
            partition: r.u32("partition")?,
            group: GroupId(r.u64("group")?),
            replicas: get_replicas(r)?,
        });
    }
    Ok(Topic {
        name,
        id,
        settings,
        partitions,
    })
}

fn put_cursors(out: &mut Vec<u8>, c: &Catalogue) {
    let cursors = c.cursors();
    // At most MAX_GROUPS groups and MAX_CURSORS cursors (apply's limits).
    out.extend_from_slice(&(cursors.group_count() as u32).to_be_bytes());
    for (name, group) in cursors.groups() {
        put_group(out, name);
        out.extend_from_slice(&(group.len() as u32).to_be_bytes());
        for ((topic, partition), cursor) in group {
            put_name(out, topic);
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&cursor.offset.to_be_bytes());
            put_metadata(out, &cursor.metadata);
        }
    }
}

/// The consumer groups of a version-2 snapshot; their invariants (order, bounds,
/// partitions that exist) are checked by `Cursors::restore`.
fn get_cursors(r: &mut ByteReader<'_>) -> Result<Vec<(GroupName, GroupCursors)>, CatalogueError> {
    let count = r.u32("group count")?;
    if count as usize > MAX_GROUPS {
        return Err(malformed(format!("{count} groups (at most {MAX_GROUPS})")));
    }
    let count = r.checked_count(u64::from(count), MIN_GROUP_BYTES, "group count")?;
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        let name = get_group(r)?;
        let n = r.u32("cursor count")?;
        if n as usize > MAX_CURSORS {
            return Err(malformed(format!("group {name} has {n} cursors")));
        }
        let n = r.checked_count(u64::from(n), MIN_CURSOR_BYTES, "cursor count")?;
        let mut cursors = GroupCursors::new();
        for _ in 0..n {
            let key = (get_name(r)?, r.u32("partition")?);
            let cursor = Cursor {
                offset: r.u64("offset")?,
                metadata: get_metadata(r)?,
            };
            if cursors.last_key_value().is_some_and(|(k, _)| *k >= key) {
                return Err(malformed(format!("group {name}: cursors out of order")));
            }
            cursors.insert(key, cursor);
        }
        groups.push((name, cursors));
    }
    Ok(groups)
}
