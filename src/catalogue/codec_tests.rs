//! The command and snapshot formats: round trips over generated values, exact
//! layouts, and hostile inputs (truncations, random bytes, huge counts).

use super::tests::{name, nodes, settings};
use super::*;
use crate::types::{GroupId, NodeId};

/// A tiny seeded PRNG (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn opt(&mut self) -> Option<u64> {
        self.chance(2).then(|| self.next())
    }

    fn update(&mut self) -> Option<Option<u64>> {
        match self.below(3) {
            0 => None,
            1 => Some(None),
            _ => Some(Some(self.next())),
        }
    }
}

const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

fn gen_name(rng: &mut Rng) -> TopicName {
    let len = if rng.chance(8) {
        249
    } else {
        1 + rng.below(20)
    };
    let raw: String = (0..len)
        .map(|_| NAME_CHARS[rng.below(NAME_CHARS.len() as u64) as usize] as char)
        .collect();
    match raw.as_str() {
        "." | ".." => name("dots"),
        _ => name(&raw),
    }
}

/// Settings with any values: the codec carries out-of-bounds ones too (apply
/// refuses them), so it must round-trip them.
fn gen_settings(rng: &mut Rng) -> TopicSettings {
    TopicSettings {
        partitions: rng.next() as u32,
        replication: match rng.below(3) {
            0 => Replication::All,
            _ => Replication::Factor(rng.next() as u8),
        },
        retention_bytes: rng.opt(),
        retention_age_ms: rng.opt(),
        max_record_bytes: rng.next() as u32,
        segment_bytes: rng.next(),
        timestamp_type: if rng.chance(2) {
            TimestampType::Leader
        } else {
            TimestampType::Producer
        },
        cleanup_policy: if rng.chance(2) {
            CleanupPolicy::Compact
        } else {
            CleanupPolicy::Delete
        },
        tombstone_retention_ms: if rng.chance(2) {
            rng.next()
        } else {
            crate::catalogue::DEFAULT_TOMBSTONE_RETENTION_MS
        },
    }
}

fn gen_assignment(rng: &mut Rng) -> Vec<Vec<NodeId>> {
    let lists = rng.below(6);
    (0..lists)
        .map(|_| (0..rng.below(6)).map(|_| NodeId(rng.next())).collect())
        .collect()
}

fn gen_command(rng: &mut Rng) -> Command {
    match rng.below(3) {
        0 => Command::CreateTopic {
            name: gen_name(rng),
            settings: gen_settings(rng),
            assignment: gen_assignment(rng),
        },
        1 => Command::DeleteTopic {
            name: gen_name(rng),
        },
        _ => Command::AlterTopic {
            name: gen_name(rng),
            change: SettingsChange {
                partitions: rng.chance(2).then(|| rng.next() as u32),
                retention_bytes: rng.update(),
                retention_age_ms: rng.update(),
                max_record_bytes: rng.chance(2).then(|| rng.next() as u32),
                timestamp_type: rng.chance(4).then_some(TimestampType::Leader),
                cleanup_policy: rng.chance(4).then_some(CleanupPolicy::Compact),
                tombstone_retention_ms: rng.chance(4).then(|| rng.next()),
            },
            new_assignment: gen_assignment(rng),
        },
    }
}

fn is_malformed<T: std::fmt::Debug>(result: Result<T, CatalogueError>) -> bool {
    matches!(result, Err(CatalogueError::Malformed(_)))
}

#[test]
fn generated_commands_round_trip_and_every_truncation_is_an_error() {
    let mut rng = Rng(0xc0ffee);
    for case in 0..2_000 {
        let cmd = gen_command(&mut rng);
        let bytes = cmd.to_bytes();
        assert_eq!(Command::decode(&bytes), Ok(cmd.clone()), "case {case}");
        let mut appended = vec![7];
        cmd.encode(&mut appended);
        assert_eq!(&appended[1..], &bytes[..], "encode appends");
        for cut in 0..bytes.len() {
            assert!(
                is_malformed(Command::decode(&bytes[..cut])),
                "case {case} cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(is_malformed(Command::decode(&longer)), "trailing byte");
    }
}

#[test]
fn the_command_layout_is_pinned() {
    let delete = Command::DeleteTopic { name: name("ab") };
    assert_eq!(delete.to_bytes(), [1, 2, 2, b'a', b'b']);
    let create = Command::CreateTopic {
        name: name("t"),
        settings: TopicSettings {
            partitions: 2,
            replication: Replication::Factor(1),
            retention_bytes: None,
            retention_age_ms: Some(9),
            max_record_bytes: 0x0102_0304,
            segment_bytes: 5,
            ..TopicSettings::default()
        },
        assignment: vec![nodes(&[7]), vec![]],
    };
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        1, 1, 1, b't',                          // version, create, name
        0, 0, 0, 2, 1, 1,                       // partitions, factor 1
        0, 1, 0, 0, 0, 0, 0, 0, 0, 9,           // no size retention, age 9
        1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5,     // max record, segment
        0, 0, 0, 2,                             // two replica lists
        0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7,     // [7]
        0, 0, 0, 0,                             // []
    ];
    assert_eq!(create.to_bytes(), want);
    let change = SettingsChange {
        partitions: Some(3),
        retention_bytes: Some(None),
        retention_age_ms: None,
        max_record_bytes: None,
        ..SettingsChange::default()
    };
    let alter = Command::AlterTopic {
        name: name("t"),
        change,
        new_assignment: vec![],
    };
    #[rustfmt::skip]
    let want: Vec<u8> = vec![1, 3, 1, b't', 1, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(alter.to_bytes(), want);
}

#[test]
fn unknown_versions_kinds_flags_and_names_are_malformed() {
    let good = Command::DeleteTopic { name: name("ab") }.to_bytes();
    for (at, byte) in [(0, 2), (0, 3), (0, 0), (1, 0), (1, 4), (3, b'/'), (2, 0)] {
        let mut bad = good.clone();
        bad[at] = byte;
        assert!(is_malformed(Command::decode(&bad)), "byte {at} = {byte}");
    }
    let mut create = Command::CreateTopic {
        name: name("t"),
        settings: settings(1, Replication::All),
        assignment: vec![],
    }
    .to_bytes();
    // Replication "all" with a factor byte, then a bad presence flag.
    create[9] = 3;
    assert!(is_malformed(Command::decode(&create)));
    create[9] = 0;
    create[10] = 2;
    assert!(is_malformed(Command::decode(&create)));
    create[10] = 0;
    assert!(Command::decode(&create).is_ok());
}

#[test]
fn random_bytes_never_panic_and_whatever_decodes_is_canonical() {
    let mut rng = Rng(42);
    let mut decoded = 0;
    for case in 0..20_000 {
        let bytes = if case % 2 == 0 {
            let len = rng.below(48) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            mutated(&gen_command(&mut rng).to_bytes(), &mut rng)
        };
        if let Ok(cmd) = Command::decode(&bytes) {
            assert_eq!(cmd.to_bytes(), bytes, "one encoding per command");
            decoded += 1;
        }
        if let Ok(c) = Catalogue::decode_snapshot(&bytes) {
            if bytes[0] == 1 {
                // Format 1 (no groups, settings v1) is read, and written again as format 2.
                assert_eq!(Catalogue::decode_snapshot(&snapshot(&c)).unwrap(), c);
            } else {
                assert_eq!(snapshot(&c), bytes);
            }
        }
    }
    assert!(
        decoded > 100,
        "mutations that still decode were checked ({decoded})"
    );
}

/// `bytes` with a few random bytes overwritten.
fn mutated(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() as u64) as usize;
        out[at] = rng.next() as u8;
    }
    out
}

#[test]
fn huge_counts_are_refused_before_anything_is_allocated() {
    let mut create = Command::CreateTopic {
        name: name("t"),
        settings: settings(1, Replication::All),
        assignment: vec![],
    }
    .to_bytes();
    let at = create.len() - 4;
    create[at..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(is_malformed(Command::decode(&create)), "4 G replica lists");

    // One replica list claiming 4 G nodes.
    create[at..].copy_from_slice(&1u32.to_be_bytes());
    create.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(is_malformed(Command::decode(&create)), "4 G replicas");

    // A 29-byte snapshot claiming 4 G topics.
    let mut snap = vec![1];
    snap.extend_from_slice(&[0; 8]);
    snap.extend_from_slice(&1u64.to_be_bytes());
    snap.extend_from_slice(&1u64.to_be_bytes());
    snap.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(is_malformed(Catalogue::decode_snapshot(&snap)));
    let at = snap.len() - 4;
    snap[at..].copy_from_slice(&((MAX_TOPICS - 1) as u32).to_be_bytes());
    assert!(
        is_malformed(Catalogue::decode_snapshot(&snap)),
        "a count within the limit"
    );
}

fn snapshot(c: &Catalogue) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode_snapshot(&mut out);
    out
}

/// A catalogue built by applying generated valid commands.
fn gen_catalogue(rng: &mut Rng) -> Catalogue {
    let voters = nodes(&[1, 2, 3, 4, 5]);
    let mut c = Catalogue::new();
    for index in 1..=rng.below(30) + 1 {
        let topic = format!("t{}", rng.below(8));
        let cmd = match rng.below(4) {
            0 => Command::DeleteTopic { name: name(&topic) },
            1 => grow(&c, &voters, &topic, rng),
            _ => {
                let replication = [
                    Replication::All,
                    Replication::Factor(1),
                    Replication::Factor(3),
                ][rng.below(3) as usize];
                let mut s = settings(1 + rng.below(4) as u32, replication);
                s.retention_bytes = rng.opt().map(|b| b | 1);
                let assignment = assign(&voters, &c, s.partitions, replication, 0).unwrap();
                Command::CreateTopic {
                    name: name(&topic),
                    settings: s,
                    assignment,
                }
            }
        };
        // Refusals (topic exists, unknown topic) are part of the history too.
        let _ = c.apply(index, &cmd);
    }
    c
}

fn grow(c: &Catalogue, voters: &[NodeId], topic: &str, rng: &mut Rng) -> Command {
    let (current, replication) = c.topic(topic).map_or((1, Replication::All), |t| {
        (t.settings.partitions, t.settings.replication)
    });
    let partitions = current + rng.below(3) as u32;
    let new_assignment = assign(voters, c, partitions - current, replication, current).unwrap();
    let change = SettingsChange {
        partitions: Some(partitions),
        max_record_bytes: rng.chance(2).then_some(4096),
        ..SettingsChange::default()
    };
    Command::AlterTopic {
        name: name(topic),
        change,
        new_assignment,
    }
}

#[test]
fn generated_catalogues_round_trip_and_every_truncation_is_an_error() {
    let mut rng = Rng(7);
    let mut largest = 0;
    for case in 0..300 {
        let c = gen_catalogue(&mut rng);
        let bytes = snapshot(&c);
        assert_eq!(
            Catalogue::decode_snapshot(&bytes),
            Ok(c.clone()),
            "case {case}"
        );
        largest = largest.max(c.partition_count());
        for cut in 0..bytes.len() {
            assert!(
                is_malformed(Catalogue::decode_snapshot(&bytes[..cut])),
                "cut {cut}"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(is_malformed(Catalogue::decode_snapshot(&longer)));
    }
    assert!(largest >= 10, "the generator builds real catalogues");
    assert_eq!(
        Catalogue::decode_snapshot(&snapshot(&Catalogue::new())),
        Ok(Catalogue::new())
    );
}

fn topic(n: &str, id: u64, groups: &[u64]) -> Topic {
    Topic {
        name: name(n),
        id,
        settings: settings(groups.len() as u32, Replication::All),
        partitions: (0..)
            .zip(groups)
            .map(|(partition, &g)| PartitionInfo {
                partition,
                group: GroupId(g),
                replicas: vec![],
            })
            .collect(),
    }
}

#[test]
fn a_snapshot_breaking_an_invariant_is_malformed() {
    let good = || vec![topic("a", 1, &[1, 2]), topic("b", 2, &[3])];
    assert!(Catalogue::restore(9, 4, 3, good()).is_ok());
    let mut cases: Vec<(&str, u64, u64, Vec<Topic>)> = vec![
        ("group 0 next", 0, 3, good()),
        ("group not below next", 3, 3, good()),
        ("topic id not below next", 4, 2, good()),
        (
            "names out of order",
            4,
            3,
            good().into_iter().rev().collect(),
        ),
        (
            "same id twice",
            4,
            3,
            vec![topic("a", 1, &[1, 2]), topic("b", 1, &[3])],
        ),
        (
            "same group twice",
            4,
            3,
            vec![topic("a", 1, &[1, 2]), topic("b", 2, &[2])],
        ),
        (
            "same name twice",
            4,
            3,
            vec![topic("a", 1, &[1]), topic("a", 2, &[2])],
        ),
    ];
    let mut wrong = good();
    wrong[0].partitions[1].partition = 5;
    cases.push(("partition numbers", 4, 3, wrong));
    let mut wrong = good();
    wrong[0].settings.partitions = 3;
    cases.push(("count differs from settings", 4, 3, wrong));
    let mut wrong = good();
    wrong[1].partitions[0].replicas = nodes(&[1]);
    cases.push(("replicas of an all-members topic", 4, 3, wrong));
    let mut wrong = good();
    wrong[1].settings.segment_bytes = 1;
    cases.push(("invalid settings", 4, 3, wrong));
    for (what, next_group, next_topic_id, topics) in cases {
        assert!(
            Catalogue::restore(9, next_group, next_topic_id, topics).is_err(),
            "{what}"
        );
    }
    // Through the bytes: a next_group that is too low.
    let mut c = Catalogue::new();
    c.apply(
        1,
        &Command::CreateTopic {
            name: name("a"),
            settings: settings(1, Replication::All),
            assignment: vec![vec![]],
        },
    )
    .unwrap();
    let mut bytes = snapshot(&c);
    bytes[9..17].copy_from_slice(&1u64.to_be_bytes());
    assert!(is_malformed(Catalogue::decode_snapshot(&bytes)));
}

#[test]
fn settings_v2_take_format_2_and_format_1_decodes_with_the_defaults() {
    let mut s = settings(1, Replication::All);
    let v1 = Command::CreateTopic {
        name: name("t"),
        settings: s.clone(),
        assignment: vec![],
    }
    .to_bytes();
    assert_eq!(v1[0], 1, "defaults stay in format 1");
    s.cleanup_policy = CleanupPolicy::Compact;
    s.timestamp_type = TimestampType::Leader;
    s.tombstone_retention_ms = 60_000;
    let create = Command::CreateTopic {
        name: name("t"),
        settings: s.clone(),
        assignment: vec![],
    };
    let v2 = create.to_bytes();
    assert_eq!(v2[0], 2);
    assert_eq!(v2.len(), v1.len() + 10, "u8, u8, u64 appended");
    assert_eq!(
        &v2[v2.len() - 14..v2.len() - 4],
        &[1, 1, 0, 0, 0, 0, 0, 0, 0xea, 0x60]
    );
    assert_eq!(Command::decode(&v2).unwrap(), create);
    let Command::CreateTopic { settings: old, .. } = Command::decode(&v1).unwrap() else {
        panic!("not a create");
    };
    assert_eq!(old.cleanup_policy, CleanupPolicy::Delete);
    assert_eq!(old.tombstone_retention_ms, DEFAULT_TOMBSTONE_RETENTION_MS);
    // An unknown policy byte is malformed.
    let mut bad = v2.clone();
    let at = bad.len() - 13;
    bad[at] = 7;
    assert!(is_malformed(Command::decode(&bad)));
    // A v2 change: alter with only a policy.
    let alter = Command::AlterTopic {
        name: name("t"),
        change: SettingsChange {
            cleanup_policy: Some(CleanupPolicy::Compact),
            ..SettingsChange::default()
        },
        new_assignment: vec![],
    };
    let bytes = alter.to_bytes();
    assert_eq!(bytes[0], 2);
    assert_eq!(Command::decode(&bytes).unwrap(), alter);
}

#[test]
fn a_format_1_snapshot_decodes_with_the_settings_v2_defaults() {
    let mut c = Catalogue::with_default_topic();
    let mut s = settings(2, Replication::All);
    s.cleanup_policy = CleanupPolicy::Compact;
    let create = Command::CreateTopic {
        name: name("c"),
        settings: s,
        assignment: vec![vec![], vec![]],
    };
    c.apply(1, &create).unwrap();
    let snap = snapshot(&c);
    assert_eq!(snap[0], 2);
    let back = Catalogue::decode_snapshot(&snap).unwrap();
    assert_eq!(
        back.topic("c").unwrap().settings.cleanup_policy,
        CleanupPolicy::Compact
    );
    // The same catalogue in format 1: drop the 10 v2 bytes after each settings.
    let only_default = Catalogue::with_default_topic();
    let mut v1 = snapshot(&only_default);
    v1[0] = 1;
    let settings_end = 1 + 8 * 3 + 4 + 1 + 7 + 8 + 20;
    v1.drain(settings_end..settings_end + 10);
    // ... and the groups (u32 count) and producer ids (u64 next id, u32 names).
    v1.truncate(v1.len() - 4 - 8 - 4);
    let old = Catalogue::decode_snapshot(&v1).unwrap();
    assert_eq!(old, only_default);
}
