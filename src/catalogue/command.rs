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
//! * kind 4, `InitProducer`: `u8 0` (anonymous) or `u8 1 | u8 len | name`.
//!
//! New commands (consumer cursors) take new kinds; a change to an existing command's
//! layout takes a new format version.

use crate::bytes::ByteReader;
use crate::types::NodeId;

use super::codec::{
    get_assignment, get_name, get_settings, malformed, put_assignment, put_name, put_settings,
};
use super::error::CatalogueError;
use super::name::TopicName;
use super::settings::{SettingsChange, TopicSettings};

const FORMAT_VERSION: u8 = 1;
const KIND_CREATE: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_ALTER: u8 = 3;
const KIND_INIT_PRODUCER: u8 = 4;

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
    /// Hands out a producer id and epoch (idempotent producers; `producers.rs`).
    InitProducer {
        /// A stable name: the same name gets its id at the next epoch.
        name: Option<String>,
    },
}

impl Command {
    /// The topic the command is about (none for InitProducer).
    pub fn topic(&self) -> Option<&TopicName> {
        match self {
            Command::CreateTopic { name, .. }
            | Command::DeleteTopic { name }
            | Command::AlterTopic { name, .. } => Some(name),
            Command::InitProducer { .. } => None,
        }
    }

    /// Appends the command's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        match self {
            Command::CreateTopic {
                name,
                settings,
                assignment,
            } => {
                out.push(KIND_CREATE);
                put_name(out, name);
                put_settings(out, settings);
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
                put_change(out, change);
                put_assignment(out, new_assignment);
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
        if version != FORMAT_VERSION {
            return Err(malformed(format!(
                "unknown command format version {version}"
            )));
        }
        let command = match r.u8("command kind")? {
            KIND_CREATE => Command::CreateTopic {
                name: get_name(&mut r)?,
                settings: get_settings(&mut r)?,
                assignment: get_assignment(&mut r)?,
            },
            KIND_DELETE => Command::DeleteTopic {
                name: get_name(&mut r)?,
            },
            KIND_ALTER => Command::AlterTopic {
                name: get_name(&mut r)?,
                change: get_change(&mut r)?,
                new_assignment: get_assignment(&mut r)?,
            },
            KIND_INIT_PRODUCER => Command::InitProducer {
                name: get_producer_name(&mut r)?,
            },
            kind => return Err(malformed(format!("unknown command kind {kind}"))),
        };
        r.finish("command")?;
        Ok(command)
    }
}

fn get_producer_name(r: &mut ByteReader<'_>) -> Result<Option<String>, CatalogueError> {
    match r.u8("producer name flag")? {
        0 => Ok(None),
        1 => {
            let len = r.u8("producer name length")?;
            let raw = r.take(usize::from(len), "producer name")?;
            // Checked (charset) by apply, identically on every node.
            let name = std::str::from_utf8(raw)
                .map_err(|_| malformed("producer name is not UTF-8".into()))?;
            Ok(Some(name.to_string()))
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

fn put_change(out: &mut Vec<u8>, change: &SettingsChange) {
    put_opt_u32(out, change.partitions);
    put_update(out, change.retention_bytes);
    put_update(out, change.retention_age_ms);
    put_opt_u32(out, change.max_record_bytes);
}

fn get_change(r: &mut ByteReader<'_>) -> Result<SettingsChange, CatalogueError> {
    Ok(SettingsChange {
        partitions: get_opt_u32(r, "partitions")?,
        retention_bytes: get_update(r, "retention_bytes")?,
        retention_age_ms: get_update(r, "retention_age_ms")?,
        max_record_bytes: get_opt_u32(r, "max_record_bytes")?,
    })
}
