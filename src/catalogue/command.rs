//! The commands of the metadata log and their binary format.
//!
//! `u8 format version (1) | u8 command kind | body`, big-endian, field encodings of
//! `codec.rs`:
//! * kind 1, `CreateTopic`: `name | settings | assignment`;
//! * kind 2, `DeleteTopic`: `name`;
//! * kind 3, `AlterTopic`: `name | change | assignment`, where change is
//!   `opt-u32 partitions | update retention_bytes | update retention_age_ms |
//!   opt-u32 max_record_bytes`; `opt-u32` is `u8 0` or `u8 1 | u32`, and `update` is
//!   `u8 0` (keep), `u8 1` (clear) or `u8 2 | u64` (set).
//!
//! * kind 4, `CommitOffsets`: `group | u32 count | count × (name | u32 partition |
//!   u64 offset | u32 len | metadata)`, where `group` is encoded as a name;
//! * kind 5, `DeleteGroup`: `group`;
//! * kind 6, `InitProducer`: `u8 0` (anonymous) or `u8 1 | u8 len | name`.
//!
//! Format version 2 (settings v2) is the same with the settings-v2 fields: settings
//! end with `u8 timestamp_type | u8 cleanup_policy | u64 tombstone_retention_ms`
//! (`codec.rs`), and an AlterTopic change with `opt-u8 timestamp_type |
//! opt-u8 cleanup_policy | opt-u64 tombstone_retention_ms`. A command is written as
//! format 1 whenever it carries no v2 value other than the defaults (so nodes of
//! the previous release still read what this one writes for them); format 1
//! decodes with the defaults.
//!
//! New commands (consumer cursors, producer ids) take new kinds; a change to an existing command's
//! layout takes a new format version.

use crate::bytes::ByteReader;
use crate::types::NodeId;

use super::codec::{
    get_assignment, get_cleanup_policy, get_name, get_opt, get_settings, get_timestamp_type,
    malformed, put_assignment, put_name, put_opt, put_settings, settings_fit_v1,
};
use super::error::CatalogueError;
use super::groups::{CursorCommit, GroupName};
use super::name::TopicName;
use super::settings::{SettingsChange, TopicSettings};

const FORMAT_VERSION: u8 = 1;
/// Format with the settings-v2 fields.
const FORMAT_VERSION_2: u8 = 2;
const KIND_CREATE: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_ALTER: u8 = 3;
const KIND_COMMIT_OFFSETS: u8 = 4;
const KIND_DELETE_GROUP: u8 = 5;
/// Smallest encoded commit entry: name (1 + 1), partition, offset, metadata length.
const MIN_COMMIT_ENTRY_BYTES: usize = 2 + 4 + 8 + 4;
const KIND_INIT_PRODUCER: u8 = 6;

/// A change to the catalogue, proposed to the metadata group and applied by every
/// node once committed ([`Catalogue::apply`](super::Catalogue::apply)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Creates a topic.
    CreateTopic {
        /// The new topic.
        name: TopicName,
        /// Its settings.
        settings: TopicSettings,
        /// One replica list per partition, preferred leader first, computed by the
        /// proposer with [`assign`](super::assign); empty lists for
        /// [`Replication::All`](super::Replication::All).
        assignment: Vec<Vec<NodeId>>,
    },
    /// Deletes a topic and all its partitions (not the `default` topic).
    DeleteTopic {
        /// The topic.
        name: TopicName,
    },
    /// Changes a topic's settings, possibly adding partitions.
    AlterTopic {
        /// The topic.
        name: TopicName,
        /// What changes.
        change: SettingsChange,
        /// Replica lists of the added partitions, in partition order (empty when
        /// none are added).
        new_assignment: Vec<Vec<NodeId>>,
    },
    /// Moves a consumer group's cursors (creating the group on its first cursor).
    CommitOffsets {
        /// The group.
        group: GroupName,
        /// The cursors, applied in order (each refused or stored on its own).
        offsets: Vec<CursorCommit>,
    },
    /// Deletes a consumer group and its cursors (nothing if it has none).
    DeleteGroup {
        /// The group.
        group: GroupName,
    },
    /// Hands out a producer id and epoch (idempotent producers; `producers.rs`).
    InitProducer {
        /// A stable name: the same name gets its id at the next epoch.
        name: Option<String>,
    },
}

impl Command {
    /// The topic the command is about (`None` for the cursor and producer commands).
    pub fn topic(&self) -> Option<&TopicName> {
        match self {
            Command::CreateTopic { name, .. }
            | Command::DeleteTopic { name }
            | Command::AlterTopic { name, .. } => Some(name),
            Command::CommitOffsets { .. }
            | Command::DeleteGroup { .. }
            | Command::InitProducer { .. } => None,
        }
    }

    /// Appends the command's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let version = self.format_version();
        out.push(version);
        match self {
            Command::CreateTopic {
                name,
                settings,
                assignment,
            } => {
                out.push(KIND_CREATE);
                put_name(out, name);
                put_settings(out, settings, version);
                put_assignment(out, assignment);
            }
            Command::DeleteTopic { name } => {
                out.push(KIND_DELETE);
                put_name(out, name);
            }
            Command::AlterTopic {
                name,
                change,
                new_assignment,
            } => {
                out.push(KIND_ALTER);
                put_name(out, name);
                put_change(out, change, version);
                put_assignment(out, new_assignment);
            }
            Command::CommitOffsets { group, offsets } => {
                out.push(KIND_COMMIT_OFFSETS);
                put_group(out, group);
                put_commits(out, offsets);
            }
            Command::DeleteGroup { group } => {
                out.push(KIND_DELETE_GROUP);
                put_group(out, group);
            }
            Command::InitProducer { name } => {
                out.push(KIND_INIT_PRODUCER);
                match name {
                    None => out.push(0),
                    Some(n) => {
                        out.push(1);
                        // Longer names are refused by apply; the length saturates
                        // (then the decode fails on trailing bytes, not a panic).
                        out.push(u8::try_from(n.len()).unwrap_or(u8::MAX));
                        out.extend_from_slice(n.as_bytes());
                    }
                }
            }
        }
    }

    /// Format 1 unless a settings-v2 value other than the defaults must be carried.
    fn format_version(&self) -> u8 {
        match self {
            Command::CreateTopic { settings, .. } if !settings_fit_v1(settings) => FORMAT_VERSION_2,
            Command::AlterTopic { change, .. } if change.has_v2_fields() => FORMAT_VERSION_2,
            _ => FORMAT_VERSION,
        }
    }

    /// The command's encoding in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one whole command; any other input is [`CatalogueError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Command, CatalogueError> {
        let mut r = ByteReader::new(bytes);
        let version = r.u8("command format version")?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err(malformed(format!(
                "unknown command format version {version}"
            )));
        }
        let command = match r.u8("command kind")? {
            KIND_CREATE => Command::CreateTopic {
                name: get_name(&mut r)?,
                settings: get_settings(&mut r, version)?,
                assignment: get_assignment(&mut r)?,
            },
            KIND_DELETE => Command::DeleteTopic {
                name: get_name(&mut r)?,
            },
            KIND_ALTER => Command::AlterTopic {
                name: get_name(&mut r)?,
                change: get_change(&mut r, version)?,
                new_assignment: get_assignment(&mut r)?,
            },
            KIND_COMMIT_OFFSETS => Command::CommitOffsets {
                group: get_group(&mut r)?,
                offsets: get_commits(&mut r)?,
            },
            KIND_DELETE_GROUP => Command::DeleteGroup {
                group: get_group(&mut r)?,
            },
            KIND_INIT_PRODUCER => Command::InitProducer {
                name: get_producer_name(&mut r)?,
            },
            kind => return Err(malformed(format!("unknown command kind {kind}"))),
        };
        r.finish("command")?;
        if command.format_version() != version {
            // One encoding per command: format 2 only for what format 1 cannot carry.
            return Err(malformed(format!(
                "command in format {version} that format {} carries",
                command.format_version()
            )));
        }
        Ok(command)
    }
}

fn get_producer_name(r: &mut ByteReader<'_>) -> Result<Option<String>, CatalogueError> {
    match r.u8("producer name flag")? {
        0 => Ok(None),
        1 => {
            // Checked (charset) by apply, identically on every node.
            Ok(Some(r.str_u8("producer name")?.to_string()))
        }
        flag => Err(malformed(format!("producer name has presence flag {flag}"))),
    }
}

fn put_opt_u32(out: &mut Vec<u8>, value: Option<u32>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn get_opt_u32(r: &mut ByteReader<'_>, field: &'static str) -> Result<Option<u32>, CatalogueError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(r.u32(field)?)),
        flag => Err(malformed(format!("{field} has presence flag {flag}"))),
    }
}

fn put_update(out: &mut Vec<u8>, update: Option<Option<u64>>) {
    match update {
        None => out.push(0),
        Some(None) => out.push(1),
        Some(Some(v)) => {
            out.push(2);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn get_update(
    r: &mut ByteReader<'_>,
    field: &'static str,
) -> Result<Option<Option<u64>>, CatalogueError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(None)),
        2 => Ok(Some(Some(r.u64(field)?))),
        tag => Err(malformed(format!("{field} has update tag {tag}"))),
    }
}

fn put_opt_u8(out: &mut Vec<u8>, value: Option<u8>) {
    match value {
        None => out.push(0),
        Some(v) => out.extend_from_slice(&[1, v]),
    }
}

fn present(r: &mut ByteReader<'_>, field: &'static str) -> Result<bool, CatalogueError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        flag => Err(malformed(format!("{field} has presence flag {flag}"))),
    }
}

fn put_change(out: &mut Vec<u8>, change: &SettingsChange, version: u8) {
    put_opt_u32(out, change.partitions);
    put_update(out, change.retention_bytes);
    put_update(out, change.retention_age_ms);
    put_opt_u32(out, change.max_record_bytes);
    if version >= FORMAT_VERSION_2 {
        put_opt_u8(out, change.timestamp_type.map(|t| t.code()));
        put_opt_u8(out, change.cleanup_policy.map(|p| p.code()));
        put_opt(out, change.tombstone_retention_ms);
    }
}

fn get_change(r: &mut ByteReader<'_>, version: u8) -> Result<SettingsChange, CatalogueError> {
    let mut change = SettingsChange {
        partitions: get_opt_u32(r, "partitions")?,
        retention_bytes: get_update(r, "retention_bytes")?,
        retention_age_ms: get_update(r, "retention_age_ms")?,
        max_record_bytes: get_opt_u32(r, "max_record_bytes")?,
        ..SettingsChange::default()
    };
    if version >= FORMAT_VERSION_2 {
        if present(r, "timestamp_type")? {
            change.timestamp_type = Some(get_timestamp_type(r)?);
        }
        if present(r, "cleanup_policy")? {
            change.cleanup_policy = Some(get_cleanup_policy(r)?);
        }
        change.tombstone_retention_ms = get_opt(r, "tombstone_retention_ms")?;
    }
    Ok(change)
}

pub(super) fn put_group(out: &mut Vec<u8>, group: &GroupName) {
    let raw = group.as_str().as_bytes();
    // A GroupName is at most 249 bytes, so its length fits the u8 prefix.
    debug_assert!(raw.len() <= usize::from(u8::MAX));
    out.push(raw.len() as u8);
    out.extend_from_slice(raw);
}

pub(super) fn get_group(r: &mut ByteReader<'_>) -> Result<GroupName, CatalogueError> {
    let len = r.u8("group name length")?;
    let raw = r.take(usize::from(len), "group name")?;
    GroupName::from_bytes(raw).map_err(|e| malformed(e.to_string()))
}

/// Metadata length as its `u32` prefix (a longer one cannot be built from a wire
/// request, whose frames are at most 16 MiB).
pub(super) fn put_metadata(out: &mut Vec<u8>, metadata: &[u8]) {
    let len = u32::try_from(metadata.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(metadata);
}

pub(super) fn get_metadata(r: &mut ByteReader<'_>) -> Result<Vec<u8>, CatalogueError> {
    Ok(r.bytes_u32("cursor metadata")?.to_vec())
}

fn put_commits(out: &mut Vec<u8>, offsets: &[CursorCommit]) {
    let len = u32::try_from(offsets.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    for c in offsets {
        put_name(out, &c.topic);
        out.extend_from_slice(&c.partition.to_be_bytes());
        out.extend_from_slice(&c.offset.to_be_bytes());
        put_metadata(out, &c.metadata);
    }
}

fn get_commits(r: &mut ByteReader<'_>) -> Result<Vec<CursorCommit>, CatalogueError> {
    let count = r.count_u32(MIN_COMMIT_ENTRY_BYTES, "commit count")?;
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        offsets.push(CursorCommit {
            topic: get_name(r)?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
            metadata: get_metadata(r)?,
        });
    }
    Ok(offsets)
}
