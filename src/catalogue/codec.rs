//! Field encodings shared by the command and snapshot formats (big-endian).
//!
//! * name: `u8 len | ASCII` (a [`TopicName`] is at most 249 bytes);
//! * settings: `u32 partitions | u8 replication kind (0 all, 1 factor) | u8 factor
//!   (0 for all) | opt retention_bytes | opt retention_age_ms | u32 max_record_bytes |
//!   u64 segment_bytes`, where `opt` is `u8 0` (unset) or `u8 1 | u64`; settings v2
//!   (command and snapshot format 2) append `u8 timestamp_type (0 producer, 1 leader)
//!   | u8 cleanup_policy (0 delete, 1 compact) | u64 tombstone_retention_ms`, and
//!   format 1 decodes with their defaults;
//! * replica list: `u32 count | count × u64 node id`;
//! * assignment: `u32 count | count × replica list`.
//!
//! Decoding checks structure only: a settings value out of bounds or an assignment
//! of the wrong shape still decodes and is refused by `apply` like any other, so every
//! command that encodes also decodes (a committed entry that no node could decode
//! would stop the metadata group). A name must be valid because [`TopicName`] cannot
//! hold an invalid one.

use crate::bytes::ByteReader;
use crate::types::NodeId;

use super::error::CatalogueError;
use super::name::TopicName;
use super::settings::{CleanupPolicy, Replication, TimestampType, TopicSettings};

const REPLICATION_ALL: u8 = 0;
const REPLICATION_FACTOR: u8 = 1;

pub(super) fn malformed(why: String) -> CatalogueError {
    CatalogueError::Malformed(why)
}

pub(super) fn put_name(out: &mut Vec<u8>, name: &TopicName) {
    let raw = name.as_str().as_bytes();
    // A TopicName is at most 249 bytes, so its length fits the u8 prefix.
    debug_assert!(raw.len() <= usize::from(u8::MAX));
    out.push(raw.len() as u8);
    out.extend_from_slice(raw);
}

pub(super) fn get_name(r: &mut ByteReader<'_>) -> Result<TopicName, CatalogueError> {
    let len = r.u8("topic name length")?;
    let raw = r.take(usize::from(len), "topic name")?;
    TopicName::from_bytes(raw).map_err(|e| malformed(e.to_string()))
}

pub(super) fn put_opt(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

pub(super) fn get_opt(
    r: &mut ByteReader<'_>,
    field: &'static str,
) -> Result<Option<u64>, CatalogueError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(r.u64(field)?)),
        flag => Err(malformed(format!("{field} has presence flag {flag}"))),
    }
}

pub(super) fn put_replication(out: &mut Vec<u8>, replication: Replication) {
    match replication {
        Replication::All => out.extend_from_slice(&[REPLICATION_ALL, 0]),
        Replication::Factor(f) => out.extend_from_slice(&[REPLICATION_FACTOR, f]),
    }
}

fn get_replication(r: &mut ByteReader<'_>) -> Result<Replication, CatalogueError> {
    let kind = r.u8("replication kind")?;
    let factor = r.u8("replication factor")?;
    match (kind, factor) {
        (REPLICATION_ALL, 0) => Ok(Replication::All),
        (REPLICATION_FACTOR, f) => Ok(Replication::Factor(f)),
        _ => Err(malformed(format!(
            "replication kind {kind} with factor {factor}"
        ))),
    }
}

/// Settings as format `version` (1 or 2) encodes them; format 1 drops the v2
/// fields (the caller writes format 1 only when they are the defaults).
pub(super) fn put_settings(out: &mut Vec<u8>, s: &TopicSettings, version: u8) {
    out.extend_from_slice(&s.partitions.to_be_bytes());
    put_replication(out, s.replication);
    put_opt(out, s.retention_bytes);
    put_opt(out, s.retention_age_ms);
    out.extend_from_slice(&s.max_record_bytes.to_be_bytes());
    out.extend_from_slice(&s.segment_bytes.to_be_bytes());
    if version >= 2 {
        out.push(s.timestamp_type.code());
        out.push(s.cleanup_policy.code());
        out.extend_from_slice(&s.tombstone_retention_ms.to_be_bytes());
    }
}

/// True when `s` holds only the defaults of the settings-v2 fields, so format 1
/// carries it whole.
pub(super) fn settings_fit_v1(s: &TopicSettings) -> bool {
    let d = TopicSettings::default();
    s.timestamp_type == d.timestamp_type
        && s.cleanup_policy == d.cleanup_policy
        && s.tombstone_retention_ms == d.tombstone_retention_ms
}

pub(super) fn get_timestamp_type(r: &mut ByteReader<'_>) -> Result<TimestampType, CatalogueError> {
    let code = r.u8("timestamp_type")?;
    TimestampType::from_code(code).ok_or_else(|| malformed(format!("timestamp_type {code}")))
}

pub(super) fn get_cleanup_policy(r: &mut ByteReader<'_>) -> Result<CleanupPolicy, CatalogueError> {
    let code = r.u8("cleanup_policy")?;
    CleanupPolicy::from_code(code).ok_or_else(|| malformed(format!("cleanup_policy {code}")))
}

pub(super) fn get_settings(
    r: &mut ByteReader<'_>,
    version: u8,
) -> Result<TopicSettings, CatalogueError> {
    let mut s = TopicSettings {
        partitions: r.u32("partitions")?,
        replication: get_replication(r)?,
        retention_bytes: get_opt(r, "retention_bytes")?,
        retention_age_ms: get_opt(r, "retention_age_ms")?,
        max_record_bytes: r.u32("max_record_bytes")?,
        segment_bytes: r.u64("segment_bytes")?,
        ..TopicSettings::default()
    };
    if version >= 2 {
        s.timestamp_type = get_timestamp_type(r)?;
        s.cleanup_policy = get_cleanup_policy(r)?;
        s.tombstone_retention_ms = r.u64("tombstone_retention_ms")?;
    }
    Ok(s)
}

/// A length as the format's `u32` prefix. A list of more than `u32::MAX` elements
/// cannot be built in memory; were one written, the wrong prefix would make its
/// decode fail (trailing bytes) rather than this encoder panic.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

pub(super) fn put_replicas(out: &mut Vec<u8>, replicas: &[NodeId]) {
    put_len(out, replicas.len());
    for node in replicas {
        out.extend_from_slice(&node.0.to_be_bytes());
    }
}

pub(super) fn get_replicas(r: &mut ByteReader<'_>) -> Result<Vec<NodeId>, CatalogueError> {
    let count = r.count_u32(8, "replica count")?;
    let mut replicas = Vec::with_capacity(count);
    for _ in 0..count {
        replicas.push(NodeId(r.u64("replica node id")?));
    }
    Ok(replicas)
}

pub(super) fn put_assignment(out: &mut Vec<u8>, lists: &[Vec<NodeId>]) {
    put_len(out, lists.len());
    for list in lists {
        put_replicas(out, list);
    }
}

pub(super) fn get_assignment(r: &mut ByteReader<'_>) -> Result<Vec<Vec<NodeId>>, CatalogueError> {
    // Each replica list takes at least its 4-byte count.
    let count = r.count_u32(4, "assignment length")?;
    let mut lists = Vec::with_capacity(count);
    for _ in 0..count {
        lists.push(get_replicas(r)?);
    }
    Ok(lists)
}
