//! A topic's settings, their bounds, and changes to them.

use std::fmt;

use super::error::CatalogueError;

/// Most partitions of one topic.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;
/// Largest allowed `max_record_bytes` (64 MiB).
pub const MAX_MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;
/// Smallest segment (1 MiB).
pub const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
/// Largest segment: storage addresses a segment's store with 32-bit positions.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Room a segment keeps beyond a record of `max_record_bytes` (the storage record
/// header and framing), so the largest record always fits in one segment.
pub const RECORD_OVERHEAD_BYTES: u64 = 1024;

/// Default time a tombstone (a keyed record with an empty value) is kept on a
/// compacted topic once it is the newest record of its key: 24 h.
pub const DEFAULT_TOMBSTONE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Whose clock sets a record's timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// The producer's `timestamp_ms` is kept ("create time"; the default).
    #[default]
    Producer,
    /// The leader overwrites it with its clock at append ("append time").
    Leader,
}

impl TimestampType {
    /// The settings-v2 byte (wire and catalogue): 0 producer, 1 leader.
    pub fn code(self) -> u8 {
        match self {
            TimestampType::Producer => 0,
            TimestampType::Leader => 1,
        }
    }

    /// The type of a settings-v2 byte; `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<TimestampType> {
        match code {
            0 => Some(TimestampType::Producer),
            1 => Some(TimestampType::Leader),
            _ => None,
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampType::Producer => "producer",
            TimestampType::Leader => "leader",
        })
    }
}

/// What happens to a partition's old records besides retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    /// Only retention (by bytes and age) removes records (the default).
    #[default]
    Delete,
    /// Retention, plus key-based compaction: a keyed record is removed once a newer
    /// record of the same key is committed and read by every consumer group.
    Compact,
}

impl CleanupPolicy {
    /// The settings-v2 byte (wire and catalogue): 0 delete, 1 compact.
    pub fn code(self) -> u8 {
        match self {
            CleanupPolicy::Delete => 0,
            CleanupPolicy::Compact => 1,
        }
    }

    /// The policy of a settings-v2 byte; `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<CleanupPolicy> {
        match code {
            0 => Some(CleanupPolicy::Delete),
            1 => Some(CleanupPolicy::Compact),
            _ => None,
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        })
    }
}

/// Where a topic's partitions are replicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Replication {
    /// Every member of the metadata group hosts every partition, and the partition's
    /// membership follows the metadata group's (the single log of earlier versions;
    /// the `default` topic).
    All,
    /// Each partition has this many replicas, chosen among the voters when the
    /// partition is created: 1, 3 or 5, and at most the number of voters.
    Factor(u8),
}

impl Replication {
    /// The factors a topic may ask for.
    pub const FACTORS: [u8; 3] = [1, 3, 5];

    /// Checks the factor is one of [`Replication::FACTORS`].
    pub fn validate(self) -> Result<(), CatalogueError> {
        match self {
            Replication::All => Ok(()),
            Replication::Factor(f) if Self::FACTORS.contains(&f) => Ok(()),
            Replication::Factor(f) => Err(CatalogueError::InvalidSettings(format!(
                "replication factor {f} is not one of 1, 3, 5"
            ))),
        }
    }

    /// Length of a partition's replica list: 0 for `All` (the list stays empty).
    pub fn list_len(self) -> usize {
        match self {
            Replication::All => 0,
            Replication::Factor(f) => usize::from(f),
        }
    }
}

impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replication::All => f.write_str("all"),
            Replication::Factor(n) => write!(f, "{n}"),
        }
    }
}

/// A topic's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// Number of partitions, 1 ..= [`MAX_PARTITIONS_PER_TOPIC`].
    pub partitions: u32,
    /// Where partitions are replicated (fixed at creation).
    pub replication: Replication,
    /// Retention by size per partition: older segments go once the partition holds
    /// more. `None` keeps everything; when set, more than 0.
    pub retention_bytes: Option<u64>,
    /// Retention by age: segments whose records are all older go. `None` keeps
    /// everything; when set, more than 0.
    pub retention_age_ms: Option<u64>,
    /// Largest record accepted, 1 ..= [`MAX_MAX_RECORD_BYTES`], and at most
    /// `segment_bytes - RECORD_OVERHEAD_BYTES`.
    pub max_record_bytes: u32,
    /// Size at which a segment is sealed, [`MIN_SEGMENT_BYTES`] ..=
    /// [`MAX_SEGMENT_BYTES`] (fixed at creation).
    pub segment_bytes: u64,
    /// Whose clock stamps records (settings v2).
    pub timestamp_type: TimestampType,
    /// Delete (retention only) or compact (settings v2).
    pub cleanup_policy: CleanupPolicy,
    /// How long a compacted topic keeps a tombstone that is the newest record of
    /// its key, counted from the tombstone's timestamp; more than 0 (settings v2).
    pub tombstone_retention_ms: u64,
}

impl Default for TopicSettings {
    /// One partition hosted by every member, no retention, records up to 1 MiB,
    /// 64 MiB segments, producer timestamps, no compaction, tombstones kept 24 h.
    fn default() -> TopicSettings {
        TopicSettings {
            partitions: 1,
            replication: Replication::All,
            retention_bytes: None,
            retention_age_ms: None,
            max_record_bytes: 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            timestamp_type: TimestampType::Producer,
            cleanup_policy: CleanupPolicy::Delete,
            tombstone_retention_ms: DEFAULT_TOMBSTONE_RETENTION_MS,
        }
    }
}

impl TopicSettings {
    /// Checks every setting against its bounds.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let bad = |why: String| Err(CatalogueError::InvalidSettings(why));
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&self.partitions) {
            return bad(format!(
                "partitions must be 1 to {MAX_PARTITIONS_PER_TOPIC} (got {})",
                self.partitions
            ));
        }
        self.replication.validate()?;
        if self.retention_bytes == Some(0) || self.retention_age_ms == Some(0) {
            return bad("a retention limit must be more than 0 (or unset)".into());
        }
        if self.tombstone_retention_ms == 0 {
            return bad("tombstone_retention_ms must be more than 0".into());
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes must be {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES} (got {})",
                self.segment_bytes
            ));
        }
        if !(1..=MAX_MAX_RECORD_BYTES).contains(&self.max_record_bytes) {
            return bad(format!(
                "max_record_bytes must be 1 to {MAX_MAX_RECORD_BYTES} (got {})",
                self.max_record_bytes
            ));
        }
        if u64::from(self.max_record_bytes) + RECORD_OVERHEAD_BYTES > self.segment_bytes {
            return bad(format!(
                "max_record_bytes {} does not fit in a segment of {} bytes \
                 ({RECORD_OVERHEAD_BYTES} bytes are kept for framing)",
                self.max_record_bytes, self.segment_bytes
            ));
        }
        Ok(())
    }
}

/// A change to an existing topic's settings. `None` fields keep the current value.
/// Replication and segment size are fixed at creation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// New number of partitions: at least the current one (partitions are never
    /// removed). Added partitions get replica lists from the command.
    pub partitions: Option<u32>,
    /// `Some(None)` removes the size retention, `Some(Some(n))` sets it.
    pub retention_bytes: Option<Option<u64>>,
    /// `Some(None)` removes the age retention, `Some(Some(ms))` sets it.
    pub retention_age_ms: Option<Option<u64>>,
    /// New largest record.
    pub max_record_bytes: Option<u32>,
    /// New timestamp type (settings v2).
    pub timestamp_type: Option<TimestampType>,
    /// New cleanup policy (settings v2).
    pub cleanup_policy: Option<CleanupPolicy>,
    /// New tombstone retention (settings v2).
    pub tombstone_retention_ms: Option<u64>,
}

impl SettingsChange {
    /// The settings after this change, checked: never fewer partitions, every bound
    /// of [`TopicSettings::validate`].
    pub fn apply_to(&self, current: &TopicSettings) -> Result<TopicSettings, CatalogueError> {
        let mut next = current.clone();
        if let Some(requested) = self.partitions {
            if requested < current.partitions {
                return Err(CatalogueError::PartitionsDecrease {
                    current: current.partitions,
                    requested,
                });
            }
            next.partitions = requested;
        }
        if let Some(bytes) = self.retention_bytes {
            next.retention_bytes = bytes;
        }
        if let Some(age_ms) = self.retention_age_ms {
            next.retention_age_ms = age_ms;
        }
        if let Some(max) = self.max_record_bytes {
            next.max_record_bytes = max;
        }
        if let Some(kind) = self.timestamp_type {
            next.timestamp_type = kind;
        }
        if let Some(policy) = self.cleanup_policy {
            next.cleanup_policy = policy;
        }
        if let Some(ms) = self.tombstone_retention_ms {
            next.tombstone_retention_ms = ms;
        }
        next.validate()?;
        Ok(next)
    }

    /// True when the change names a settings-v2 field (it needs command format 2).
    pub fn has_v2_fields(&self) -> bool {
        self.timestamp_type.is_some()
            || self.cleanup_policy.is_some()
            || self.tombstone_retention_ms.is_some()
    }

    /// Partitions this change adds to a topic that has `current` (0 when it adds none).
    pub fn added_partitions(&self, current: u32) -> u32 {
        self.partitions.map_or(0, |p| p.saturating_sub(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TopicSettings {
        TopicSettings::default()
    }

    #[test]
    fn defaults_are_valid() {
        let d = settings();
        d.validate().unwrap();
        assert_eq!(d.partitions, 1);
        assert_eq!(d.replication, Replication::All);
        assert_eq!(d.retention_bytes, None);
    }

    /// An edit of the default settings, and whether the result is valid.
    type Case = (&'static str, fn(&mut TopicSettings), bool);

    const CASES: &[Case] = &[
        ("0 partitions", |s| s.partitions = 0, false),
        (
            "most partitions",
            |s| s.partitions = MAX_PARTITIONS_PER_TOPIC,
            true,
        ),
        (
            "too many",
            |s| s.partitions = MAX_PARTITIONS_PER_TOPIC + 1,
            false,
        ),
        ("factor 1", |s| s.replication = Replication::Factor(1), true),
        ("factor 5", |s| s.replication = Replication::Factor(5), true),
        (
            "factor 2",
            |s| s.replication = Replication::Factor(2),
            false,
        ),
        (
            "factor 0",
            |s| s.replication = Replication::Factor(0),
            false,
        ),
        ("retention 0", |s| s.retention_bytes = Some(0), false),
        ("retention 1", |s| s.retention_bytes = Some(1), true),
        ("age 0", |s| s.retention_age_ms = Some(0), false),
        ("record 0", |s| s.max_record_bytes = 0, false),
        ("tombstones 0", |s| s.tombstone_retention_ms = 0, false),
        ("tombstones 1", |s| s.tombstone_retention_ms = 1, true),
        (
            "record max",
            |s| {
                s.max_record_bytes = MAX_MAX_RECORD_BYTES;
                s.segment_bytes = MAX_SEGMENT_BYTES;
            },
            true,
        ),
        (
            "record too big",
            |s| {
                s.max_record_bytes = MAX_MAX_RECORD_BYTES + 1;
                s.segment_bytes = MAX_SEGMENT_BYTES;
            },
            false,
        ),
        (
            "segment min",
            |s| {
                s.segment_bytes = MIN_SEGMENT_BYTES;
                s.max_record_bytes = (MIN_SEGMENT_BYTES - RECORD_OVERHEAD_BYTES) as u32;
            },
            true,
        ),
        (
            "record > segment",
            |s| s.segment_bytes = MIN_SEGMENT_BYTES,
            false,
        ),
        (
            "segment small",
            |s| s.segment_bytes = MIN_SEGMENT_BYTES - 1,
            false,
        ),
        (
            "segment big",
            |s| s.segment_bytes = MAX_SEGMENT_BYTES + 1,
            false,
        ),
    ];

    #[test]
    fn each_bound_is_checked_at_both_ends() {
        for (what, edit, ok) in CASES {
            let mut s = settings();
            edit(&mut s);
            match s.validate() {
                Ok(()) => assert!(ok, "{what} was accepted"),
                Err(CatalogueError::InvalidSettings(_)) => assert!(!ok, "{what} was refused"),
                Err(e) => panic!("{what}: unexpected {e:?}"),
            }
        }
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let mut current = settings();
        current.retention_bytes = Some(100);
        current.retention_age_ms = Some(5_000);
        let change = SettingsChange {
            retention_age_ms: Some(None),
            max_record_bytes: Some(4096),
            ..SettingsChange::default()
        };
        let next = change.apply_to(&current).unwrap();
        assert_eq!(next.retention_bytes, Some(100), "kept");
        assert_eq!(next.retention_age_ms, None, "cleared");
        assert_eq!(next.max_record_bytes, 4096, "set");
        assert_eq!(next.partitions, current.partitions);
        assert_eq!(next.cleanup_policy, CleanupPolicy::Delete, "default kept");
        assert_eq!(
            SettingsChange::default().apply_to(&current).unwrap(),
            current
        );
        let v2 = SettingsChange {
            timestamp_type: Some(TimestampType::Leader),
            cleanup_policy: Some(CleanupPolicy::Compact),
            tombstone_retention_ms: Some(60_000),
            ..SettingsChange::default()
        };
        assert!(v2.has_v2_fields() && !change.has_v2_fields());
        let next = v2.apply_to(&current).unwrap();
        assert_eq!(next.timestamp_type, TimestampType::Leader);
        assert_eq!(next.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(next.tombstone_retention_ms, 60_000);
        assert_eq!(next.retention_bytes, Some(100), "v1 fields kept");
    }

    #[test]
    fn partitions_only_grow_and_changes_are_validated() {
        let mut current = settings();
        current.partitions = 4;
        let fewer = SettingsChange {
            partitions: Some(3),
            ..SettingsChange::default()
        };
        assert_eq!(
            fewer.apply_to(&current),
            Err(CatalogueError::PartitionsDecrease {
                current: 4,
                requested: 3
            })
        );
        assert_eq!(fewer.added_partitions(4), 0);
        let more = SettingsChange {
            partitions: Some(6),
            ..SettingsChange::default()
        };
        assert_eq!(more.apply_to(&current).unwrap().partitions, 6);
        assert_eq!(more.added_partitions(4), 2);
        let zero_retention = SettingsChange {
            retention_bytes: Some(Some(0)),
            ..SettingsChange::default()
        };
        assert!(matches!(
            zero_retention.apply_to(&current),
            Err(CatalogueError::InvalidSettings(_))
        ));
    }
}
