//! Consumer cursors in the catalogue: apply, bounds, topic deletion, the command
//! and snapshot formats.

use super::tests::{name, settings};
use super::*;

fn group(s: &str) -> GroupName {
    GroupName::parse(s).unwrap()
}

fn entry(topic: &str, partition: u32, offset: u64, metadata: &[u8]) -> CursorCommit {
    CursorCommit {
        topic: name(topic),
        partition,
        offset,
        metadata: metadata.to_vec(),
    }
}

fn commit(g: &str, offsets: Vec<CursorCommit>) -> Command {
    Command::CommitOffsets {
        group: group(g),
        offsets,
    }
}

fn create(topic: &str, partitions: u32) -> Command {
    Command::CreateTopic {
        name: name(topic),
        settings: settings(partitions, Replication::All),
        assignment: vec![Vec::new(); partitions as usize],
    }
}

/// The per-entry results of an applied cursor command, as error-or-ok flags.
fn results(outcome: Result<Applied, CatalogueError>) -> Vec<Result<(), CatalogueError>> {
    match outcome {
        Ok(Applied::Cursors(r)) => r.into_iter().map(|(_, _, r)| r).collect(),
        other => panic!("expected cursor results, got {other:?}"),
    }
}

/// A catalogue with topics `orders` (3 partitions) and `audit` (1), applied at 1–2.
fn with_topics() -> Catalogue {
    let mut c = Catalogue::new();
    c.apply(1, &create("orders", 3)).unwrap();
    c.apply(2, &create("audit", 1)).unwrap();
    c
}

fn offset_of(c: &Catalogue, g: &str, topic: &str, partition: u32) -> Option<u64> {
    let cursors = c.cursors().group(g)?;
    cursors.get(&(name(topic), partition)).map(|c| c.offset)
}

/// A snapshot's producer section when no id was handed out: next id, no names.
const PRODUCERS_TAIL_BYTES: usize = 8 + 4;

#[test]
fn commits_store_cursors_per_partition_and_refuse_unknown_ones() {
    let mut c = with_topics();
    let r = results(c.apply(
        3,
        &commit(
            "billing",
            vec![
                entry("orders", 0, 10, b"host-a"),
                entry("orders", 3, 5, b""),
                entry("nope", 0, 5, b""),
                entry("audit", 0, 7, b""),
            ],
        ),
    ));
    assert_eq!(r[0], Ok(()));
    assert_eq!(r[1], Err(CatalogueError::UnknownTopic(name("orders"))));
    assert_eq!(r[2], Err(CatalogueError::UnknownTopic(name("nope"))));
    assert_eq!(r[3], Ok(()));
    assert_eq!(offset_of(&c, "billing", "orders", 0), Some(10));
    assert_eq!(offset_of(&c, "billing", "orders", 3), None);
    let meta = &c.cursors().group("billing").unwrap()[&(name("orders"), 0)].metadata;
    assert_eq!(meta, b"host-a");
    assert_eq!(c.applied(), 3);

    // A later commit moves the cursor (also backwards: a reset), another group is
    // independent, and a replayed index changes nothing.
    c.apply(4, &commit("billing", vec![entry("orders", 0, 4, b"")]))
        .unwrap();
    c.apply(5, &commit("search", vec![entry("orders", 0, 20, b"")]))
        .unwrap();
    assert_eq!(
        c.apply(5, &commit("search", vec![entry("orders", 0, 99, b"")])),
        Ok(Applied::AlreadyApplied)
    );
    assert_eq!(offset_of(&c, "billing", "orders", 0), Some(4));
    assert_eq!(offset_of(&c, "search", "orders", 0), Some(20));
    assert_eq!(c.min_cursor("orders", 0), Some(4));
    assert_eq!(c.min_cursor("orders", 1), None);
    assert_eq!(c.min_cursor("audit", 0), Some(7));
    assert_eq!(c.cursors().group_count(), 2);
    assert_eq!(c.cursors().cursor_count(), 3);
}

#[test]
fn a_commit_of_only_unknown_partitions_creates_no_group() {
    let mut c = with_topics();
    let r = results(c.apply(3, &commit("ghost", vec![entry("nope", 0, 1, b"")])));
    assert!(r[0].is_err());
    assert!(c.cursors().group("ghost").is_none());
    assert_eq!(c.cursors().group_count(), 0);
}

#[test]
fn group_names_follow_topic_name_rules() {
    for bad in ["", ".", "..", "a b", "ü", &"g".repeat(250)] {
        assert!(
            matches!(
                GroupName::parse(bad),
                Err(CatalogueError::InvalidGroup { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(GroupName::parse(&"g".repeat(MAX_GROUP_NAME_BYTES)).is_ok());
    assert!(GroupName::parse("svc.billing-v2_1").is_ok());
}

#[test]
fn metadata_above_4_kib_is_refused_for_that_partition_only() {
    let mut c = with_topics();
    let big = vec![7u8; MAX_CURSOR_METADATA_BYTES + 1];
    let ok = vec![7u8; MAX_CURSOR_METADATA_BYTES];
    let r = results(c.apply(
        3,
        &commit(
            "g",
            vec![entry("orders", 0, 1, &big), entry("orders", 1, 1, &ok)],
        ),
    ));
    assert_eq!(
        r[0],
        Err(CatalogueError::CursorMetadataTooLarge {
            bytes: MAX_CURSOR_METADATA_BYTES + 1
        })
    );
    assert_eq!(r[1], Ok(()));
}

#[test]
fn at_the_group_bound_new_groups_are_refused_and_old_ones_keep_committing() {
    let mut c = with_topics();
    let mut index = 2;
    for i in 0..MAX_GROUPS {
        index += 1;
        let r = results(c.apply(
            index,
            &commit(&format!("g{i}"), vec![entry("audit", 0, 1, b"")]),
        ));
        assert_eq!(r, [Ok(())]);
    }
    index += 1;
    let r = results(c.apply(index, &commit("one-more", vec![entry("audit", 0, 1, b"")])));
    assert!(matches!(r[0], Err(CatalogueError::Limit(_))));
    assert!(c.cursors().group("one-more").is_none());
    index += 1;
    let r = results(c.apply(index, &commit("g0", vec![entry("audit", 0, 9, b"")])));
    assert_eq!(r, [Ok(())]);
    assert_eq!(offset_of(&c, "g0", "audit", 0), Some(9));

    // Deleting a group makes room again.
    index += 1;
    c.apply(index, &Command::DeleteGroup { group: group("g1") })
        .unwrap();
    index += 1;
    let r = results(c.apply(index, &commit("one-more", vec![entry("audit", 0, 1, b"")])));
    assert_eq!(r, [Ok(())]);
}

#[test]
fn at_the_cursor_bounds_new_cursors_are_refused_and_existing_ones_move() {
    let mut c = Catalogue::new();
    c.apply(1, &create("wide", MAX_PARTITIONS_PER_TOPIC))
        .unwrap();
    let mut index = 1;
    let per_group = MAX_CURSORS_PER_GROUP as u32;
    let groups = MAX_CURSORS / MAX_CURSORS_PER_GROUP;
    for g in 0..groups {
        for chunk in 0..per_group / 1000 {
            let offsets = (chunk * 1000..(chunk + 1) * 1000)
                .map(|p| entry("wide", p, 1, b""))
                .collect();
            index += 1;
            let r = results(c.apply(index, &commit(&format!("g{g}"), offsets)));
            assert!(r.iter().all(|r| r.is_ok()));
        }
    }
    assert_eq!(c.cursors().cursor_count(), MAX_CURSORS);
    index += 1;
    let r = results(c.apply(
        index,
        &commit(
            "g0",
            vec![
                entry("wide", 0, 50, b"moved"),
                entry("newcomer-p", 0, 1, b""),
            ],
        ),
    ));
    assert_eq!(r[0], Ok(()), "an existing cursor moves at the bound");
    assert!(r[1].is_err());
    index += 1;
    let r = results(c.apply(index, &commit("fresh", vec![entry("wide", 0, 1, b"")])));
    assert!(matches!(r[0], Err(CatalogueError::Limit(_))), "{r:?}");
    assert!(c.cursors().group("fresh").is_none());
}

#[test]
fn a_group_holds_at_most_its_share_of_cursors() {
    let mut c = Catalogue::new();
    c.apply(1, &create("wide", MAX_PARTITIONS_PER_TOPIC))
        .unwrap();
    let mut index = 1;
    for chunk in 0..(MAX_CURSORS_PER_GROUP as u32 / 1000) {
        let offsets = (chunk * 1000..(chunk + 1) * 1000)
            .map(|p| entry("wide", p, 1, b""))
            .collect();
        index += 1;
        c.apply(index, &commit("g", offsets)).unwrap();
    }
    c.apply(index + 1, &create("more", 1)).unwrap();
    let r = results(c.apply(index + 2, &commit("g", vec![entry("more", 0, 1, b"")])));
    assert!(matches!(r[0], Err(CatalogueError::Limit(_))));
}

#[test]
fn deleting_a_topic_deletes_its_cursors_and_emptied_groups() {
    let mut c = with_topics();
    c.apply(
        3,
        &commit(
            "both",
            vec![entry("orders", 0, 3, b"x"), entry("audit", 0, 4, b"")],
        ),
    )
    .unwrap();
    c.apply(4, &commit("only-orders", vec![entry("orders", 1, 5, b"")]))
        .unwrap();
    c.apply(
        5,
        &Command::DeleteTopic {
            name: name("orders"),
        },
    )
    .unwrap();
    assert!(c.cursors().group("only-orders").is_none());
    assert_eq!(offset_of(&c, "both", "orders", 0), None);
    assert_eq!(offset_of(&c, "both", "audit", 0), Some(4));
    assert_eq!(c.cursors().cursor_count(), 1);
    assert_eq!(c.min_cursor("orders", 0), None);

    // A topic created again under the same name starts without cursors.
    c.apply(6, &create("orders", 1)).unwrap();
    assert_eq!(c.min_cursor("orders", 0), None);
    // Deleting a group is idempotent.
    c.apply(
        7,
        &Command::DeleteGroup {
            group: group("both"),
        },
    )
    .unwrap();
    c.apply(
        8,
        &Command::DeleteGroup {
            group: group("both"),
        },
    )
    .unwrap();
    assert_eq!(c.cursors().group_count(), 0);
    assert_eq!(c.cursors().cursor_count(), 0);
}

#[test]
fn cursor_commands_round_trip_and_are_pinned() {
    let cmds = [
        commit(
            "g",
            vec![entry("orders", 2, 7, b"m"), entry("audit", 0, 0, b"")],
        ),
        commit("g", Vec::new()),
        Command::DeleteGroup { group: group("g") },
    ];
    for cmd in &cmds {
        let bytes = cmd.to_bytes();
        assert_eq!(Command::decode(&bytes).as_ref(), Ok(cmd));
        for cut in 0..bytes.len() {
            assert!(Command::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
    let pinned = [
        1, 4, 1, b'g', 0, 0, 0, 1, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, b'm',
    ];
    let cmd = commit("g", vec![entry("t", 2, 7, b"m")]);
    assert_eq!(cmd.to_bytes(), pinned);
    assert_eq!(
        Command::DeleteGroup { group: group("g") }.to_bytes(),
        [1, 5, 1, b'g']
    );
    // An invalid group name in the bytes is malformed; so is a huge count.
    assert!(Command::decode(&[1, 5, 1, b' ']).is_err());
    let mut huge = vec![1, 4, 1, b'g'];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(Command::decode(&huge).is_err());
}

fn snapshot(c: &Catalogue) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode_snapshot(&mut out);
    out
}

#[test]
fn snapshots_carry_cursors_and_version_1_still_decodes() {
    let mut c = with_topics();
    c.apply(
        3,
        &commit(
            "b",
            vec![entry("orders", 2, 3, b"meta"), entry("audit", 0, 4, b"")],
        ),
    )
    .unwrap();
    c.apply(4, &commit("a", vec![entry("orders", 0, 1, b"")]))
        .unwrap();
    let bytes = snapshot(&c);
    assert_eq!(bytes[0], 2, "format version 2");
    let back = Catalogue::decode_snapshot(&bytes).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.min_cursor("orders", 2), Some(3));
    for cut in 0..bytes.len() {
        assert!(
            Catalogue::decode_snapshot(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }

    // Version 1 (no groups) still decodes: `codec_tests`' format-1 test.
}

#[test]
fn a_snapshot_with_a_bad_cursor_is_malformed() {
    let mut c = with_topics();
    c.apply(3, &commit("g", vec![entry("orders", 2, 3, b"")]))
        .unwrap();
    let good = snapshot(&c);
    // The cursor's partition (the u32 before the offset) names partition 9.
    let at = good.len() - PRODUCERS_TAIL_BYTES - 4 - 8 - 4;
    let mut bad = good.clone();
    bad[at..at + 4].copy_from_slice(&9u32.to_be_bytes());
    assert!(Catalogue::decode_snapshot(&bad).is_err(), "no partition 9");
    // A group with no cursor.
    let mut c = with_topics();
    c.apply(3, &commit("g", vec![entry("audit", 0, 3, b"")]))
        .unwrap();
    let mut bytes = snapshot(&c);
    let producers = bytes.split_off(bytes.len() - PRODUCERS_TAIL_BYTES);
    let cut = bytes.len() - (2 + 5 + 4 + 8 + 4);
    bytes.truncate(cut);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&producers);
    assert!(Catalogue::decode_snapshot(&bytes).is_err(), "empty group");
    // Two groups out of order.
    let mut c = with_topics();
    c.apply(3, &commit("a", vec![entry("audit", 0, 3, b"")]))
        .unwrap();
    c.apply(4, &commit("b", vec![entry("audit", 0, 3, b"")]))
        .unwrap();
    let bytes = snapshot(&c);
    let a = bytes.windows(2).position(|w| w == [1, b'a']).unwrap();
    let b = bytes.windows(2).rposition(|w| w == [1, b'b']).unwrap();
    let mut swapped = bytes.clone();
    swapped[a + 1] = b'b';
    swapped[b + 1] = b'a';
    assert!(
        Catalogue::decode_snapshot(&swapped).is_err(),
        "out of order"
    );
}
