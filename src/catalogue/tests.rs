//! Scenarios of `apply`, the lookups and `assign`.

use super::*;
use crate::types::{GroupId, NodeId};

pub(super) fn name(s: &str) -> TopicName {
    TopicName::parse(s).unwrap()
}

pub(super) fn nodes(ids: &[u64]) -> Vec<NodeId> {
    ids.iter().map(|&i| NodeId(i)).collect()
}

pub(super) fn settings(partitions: u32, replication: Replication) -> TopicSettings {
    TopicSettings {
        partitions,
        replication,
        ..TopicSettings::default()
    }
}

fn create(topic: &str, s: TopicSettings, assignment: Vec<Vec<NodeId>>) -> Command {
    Command::CreateTopic {
        name: name(topic),
        settings: s,
        assignment,
    }
}

/// A topic whose every partition is hosted by every member.
fn create_all(topic: &str, partitions: u32) -> Command {
    create(
        topic,
        settings(partitions, Replication::All),
        vec![Vec::new(); partitions as usize],
    )
}

fn alter(topic: &str, change: SettingsChange, new_assignment: Vec<Vec<NodeId>>) -> Command {
    Command::AlterTopic {
        name: name(topic),
        change,
        new_assignment,
    }
}

fn grow_to(partitions: u32) -> SettingsChange {
    SettingsChange {
        partitions: Some(partitions),
        ..SettingsChange::default()
    }
}

fn changed(outcome: Result<Applied, CatalogueError>) -> Change {
    match outcome {
        Ok(Applied::Changed(change)) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn groups(list: &[PartitionGroup]) -> Vec<u64> {
    list.iter().map(|g| g.group.0).collect()
}

#[test]
fn a_created_topic_gets_fresh_groups_and_every_lookup_finds_them() {
    let mut c = Catalogue::new();
    let lists = vec![nodes(&[1, 2, 3]), nodes(&[2, 3, 1])];
    let change = changed(c.apply(
        1,
        &create("orders", settings(2, Replication::Factor(3)), lists.clone()),
    ));
    assert_eq!(change.topic, name("orders"));
    assert_eq!(groups(&change.created), [1, 2]);
    assert_eq!(change.created[1].partition, 1);
    assert_eq!(change.created[1].replicas, lists[1]);
    assert!(change.deleted.is_empty() && !change.settings_changed);
    assert_eq!(
        (c.applied(), c.next_group(), c.next_topic_id()),
        (1, GroupId(3), 2)
    );

    let topic = c.topic("orders").unwrap();
    assert_eq!((topic.id, topic.partitions.len()), (1, 2));
    let p1 = c.partition("orders", 1).unwrap();
    assert_eq!(
        (p1.group, p1.preferred_leader()),
        (GroupId(2), Some(NodeId(2)))
    );
    assert!(c.partition("orders", 2).is_none() && c.partition("nope", 0).is_none());
    let (t, p) = c.group(GroupId(1)).unwrap();
    assert_eq!((t.name.as_str(), p.partition), ("orders", 0));
    assert!(c.group(GroupId(3)).is_none() && c.group(GroupId::METADATA).is_none());
    assert_eq!((c.topic_count(), c.partition_count()), (1, 2));
}

#[test]
fn an_index_applied_before_is_ignored() {
    let mut c = Catalogue::new();
    changed(c.apply(5, &create_all("a", 1)));
    let before = c.clone();
    for index in [0, 3, 5] {
        assert_eq!(
            c.apply(index, &create_all("b", 1)),
            Ok(Applied::AlreadyApplied)
        );
        assert_eq!(
            c.apply(index, &create_all("a", 1)),
            Ok(Applied::AlreadyApplied)
        );
    }
    assert_eq!(c, before, "a replay changes nothing");
    c.skip(4);
    assert_eq!(c.applied(), 5, "skip never goes back");
    c.skip(7);
    assert_eq!(c.apply(7, &create_all("b", 1)), Ok(Applied::AlreadyApplied));
    assert!(c.topic("b").is_none());
}

/// A catalogue with `default` (all members), `x` (factor 3, two partitions on 1..3)
/// and `y` (factor 1, two partitions on 4 and 1), applied at indexes 1..=3.
fn sample() -> Catalogue {
    let mut c = Catalogue::new();
    changed(c.apply(1, &create_all(DEFAULT_TOPIC, 1)));
    let x = vec![nodes(&[1, 2, 3]), nodes(&[2, 3, 1])];
    changed(c.apply(2, &create("x", settings(2, Replication::Factor(3)), x)));
    let y = vec![nodes(&[4]), nodes(&[1])];
    changed(c.apply(3, &create("y", settings(2, Replication::Factor(1)), y)));
    c
}

#[test]
fn a_refused_command_changes_no_topic_but_counts_as_applied() {
    let dup = vec![nodes(&[1, 1, 2])];
    let f3 = |p| settings(p, Replication::Factor(3));
    let mut bad_settings = settings(1, Replication::All);
    bad_settings.retention_bytes = Some(0);
    let cases: Vec<(Command, Expect)> = vec![
        (create_all("x", 1), |e| {
            matches!(e, CatalogueError::TopicExists(_))
        }),
        (create("z", bad_settings, vec![vec![]]), |e| {
            matches!(e, CatalogueError::InvalidSettings(_))
        }),
        (
            create("z", settings(3, Replication::Factor(2)), vec![]),
            |e| matches!(e, CatalogueError::InvalidSettings(_)),
        ),
        (
            create("z", f3(2), vec![nodes(&[1, 2, 3])]),
            is_bad_assignment,
        ),
        (create("z", f3(1), vec![nodes(&[1, 2])]), is_bad_assignment),
        (create("z", f3(1), dup), is_bad_assignment),
        (
            create("z", settings(1, Replication::All), vec![nodes(&[1])]),
            is_bad_assignment,
        ),
        (Command::DeleteTopic { name: name("z") }, |e| {
            matches!(e, CatalogueError::UnknownTopic(_))
        }),
        (alter("z", grow_to(1), vec![]), |e| {
            matches!(e, CatalogueError::UnknownTopic(_))
        }),
        (
            Command::DeleteTopic {
                name: name(DEFAULT_TOPIC),
            },
            |e| *e == CatalogueError::DefaultTopicProtected,
        ),
        (alter("x", grow_to(1), vec![]), |e| {
            *e == CatalogueError::PartitionsDecrease {
                current: 2,
                requested: 1,
            }
        }),
        (alter("x", grow_to(3), vec![]), is_bad_assignment),
        (alter("x", grow_to(3), vec![nodes(&[1])]), is_bad_assignment),
        (
            alter("x", grow_to(2), vec![nodes(&[1, 2, 3])]),
            is_bad_assignment,
        ),
    ];
    for (i, (cmd, expected)) in cases.into_iter().enumerate() {
        let mut c = sample();
        let mut want = c.clone();
        let index = 10 + i as u64;
        let err = c.apply(index, &cmd).expect_err("refused");
        assert!(expected(&err), "case {i}: {cmd:?} gave {err:?}");
        want.skip(index);
        assert_eq!(c, want, "case {i}: only the applied index moved");
    }
}

/// Whether an error is the one a case expects.
type Expect = fn(&CatalogueError) -> bool;

fn is_bad_assignment(e: &CatalogueError) -> bool {
    matches!(e, CatalogueError::InvalidAssignment(_))
}

#[test]
fn a_deleted_topic_created_again_never_reuses_its_groups_or_id() {
    let mut c = sample();
    let old_id = c.topic("x").unwrap().id;
    let change = changed(c.apply(4, &Command::DeleteTopic { name: name("x") }));
    assert_eq!(groups(&change.deleted), [2, 3]);
    assert_eq!(change.deleted[0].replicas, nodes(&[1, 2, 3]));
    assert!(change.created.is_empty());
    assert!(c.topic("x").is_none() && c.group(GroupId(2)).is_none());
    assert_eq!(c.partition_count(), 3);

    let lists = vec![nodes(&[3, 1, 2]); 2];
    let change = changed(c.apply(5, &create("x", settings(2, Replication::Factor(3)), lists)));
    assert_eq!(groups(&change.created), [6, 7]);
    assert!(c.topic("x").unwrap().id > old_id);
    assert_eq!(c.group(GroupId(6)).unwrap().0.name, name("x"));
}

#[test]
fn an_alter_adds_partitions_and_reports_settings_changes() {
    let mut c = sample();
    let change = SettingsChange {
        partitions: Some(4),
        retention_age_ms: Some(Some(60_000)),
        ..SettingsChange::default()
    };
    let added = vec![nodes(&[3, 1, 2]), nodes(&[1, 2, 3])];
    let out = changed(c.apply(4, &alter("x", change, added)));
    assert_eq!(groups(&out.created), [6, 7]);
    assert_eq!((out.created[0].partition, out.created[1].partition), (2, 3));
    assert!(out.settings_changed);
    let x = c.topic("x").unwrap();
    assert_eq!((x.settings.partitions, x.partitions.len()), (4, 4));
    assert_eq!(x.settings.retention_age_ms, Some(60_000));
    assert_eq!(c.partition("x", 3).unwrap().group, GroupId(7));
    assert_eq!(c.group(GroupId(6)).unwrap().1.partition, 2);

    let out = changed(c.apply(5, &alter("x", grow_to(4), vec![])));
    assert!(
        out.created.is_empty() && !out.settings_changed,
        "no-op alter"
    );
    let clear = SettingsChange {
        retention_age_ms: Some(None),
        ..SettingsChange::default()
    };
    assert!(changed(c.apply(6, &alter("x", clear.clone(), vec![]))).settings_changed);
    assert_eq!(c.topic("x").unwrap().settings.retention_age_ms, None);
    let again = changed(c.apply(7, &alter("x", clear, vec![])));
    assert!(
        !again.settings_changed,
        "clearing what is unset changes nothing"
    );
}

#[test]
fn the_topic_count_is_bounded() {
    let mut c = Catalogue::new();
    for i in 0..MAX_TOPICS {
        changed(c.apply(i as u64 + 1, &create_all(&format!("t{i}"), 1)));
    }
    let err = c.apply(1_000_000, &create_all("one-more", 1)).unwrap_err();
    assert!(matches!(err, CatalogueError::Limit(_)), "{err:?}");
    assert_eq!(c.topic_count(), MAX_TOPICS);
}

#[test]
fn the_partition_count_is_bounded_over_all_topics() {
    let mut c = Catalogue::new();
    let per_topic = MAX_PARTITIONS_PER_TOPIC;
    let topics = MAX_PARTITIONS as u32 / per_topic;
    for i in 0..topics - 1 {
        changed(c.apply(u64::from(i) + 1, &create_all(&format!("t{i}"), per_topic)));
    }
    changed(c.apply(100, &create_all("last", per_topic - 1)));
    assert_eq!(c.partition_count(), MAX_PARTITIONS - 1);
    let err = c.apply(101, &create_all("more", 2)).unwrap_err();
    assert!(matches!(err, CatalogueError::Limit(_)), "{err:?}");
    let err = c
        .apply(102, &alter("t0", grow_to(per_topic + 1), vec![vec![]]))
        .unwrap_err();
    assert!(matches!(err, CatalogueError::InvalidSettings(_)), "{err:?}");
    let grown = c.apply(103, &alter("last", grow_to(per_topic), vec![vec![]]));
    assert_eq!(changed(grown).created.len(), 1, "the last partition fits");
    let err = c.apply(104, &create_all("more", 1)).unwrap_err();
    assert!(matches!(err, CatalogueError::Limit(_)), "{err:?}");
}

#[test]
fn a_node_hosts_its_replicas_and_every_all_partition() {
    let c = sample();
    let hosted = |n: u64| -> Vec<u64> {
        c.groups_on(NodeId(n))
            .iter()
            .map(|(_, p)| p.group.0)
            .collect()
    };
    // Groups: 1 default/0 (all), 2 x/0, 3 x/1, 4 y/0 on 4, 5 y/1 on 1.
    assert_eq!(hosted(1), [1, 2, 3, 5]);
    assert_eq!(hosted(2), [1, 2, 3]);
    assert_eq!(hosted(4), [1, 4]);
    assert_eq!(
        hosted(9),
        [1],
        "a new member hosts the all-members partitions"
    );
    let (topic, _) = c.groups_on(NodeId(4))[1];
    assert_eq!(topic.name, name("y"));

    assert_eq!(
        c.preferred_leader_groups(NodeId(1)),
        [GroupId(2), GroupId(5)]
    );
    assert_eq!(c.preferred_leader_groups(NodeId(2)), [GroupId(3)]);
    assert!(c.preferred_leader_groups(NodeId(3)).is_empty());
}

/// Replicas and preferred leaderships per node, over `voters`.
fn spread(c: &Catalogue, voters: &[NodeId]) -> (Vec<u64>, Vec<u64>) {
    let mut replicas = vec![0; voters.len()];
    let mut leaders = vec![0; voters.len()];
    for p in c.topics().flat_map(|t| t.partitions.iter()) {
        for (rank, n) in p.replicas.iter().enumerate() {
            let i = voters.iter().position(|v| v == n).unwrap();
            replicas[i] += 1;
            leaders[i] += u64::from(rank == 0);
        }
    }
    (replicas, leaders)
}

fn max_minus_min(v: &[u64]) -> u64 {
    v.iter().max().unwrap() - v.iter().min().unwrap()
}

#[test]
fn twelve_partitions_on_three_voters_spread_evenly() {
    let voters = nodes(&[1, 2, 3]);
    for (factor, replicas_each) in [(3u8, 12u64), (1, 4)] {
        let replication = Replication::Factor(factor);
        let mut c = Catalogue::new();
        let lists = assign(&voters, &c, 12, replication, 0).unwrap();
        changed(c.apply(1, &create("t", settings(12, replication), lists)));
        let (replicas, leaders) = spread(&c, &voters);
        assert_eq!(replicas, [replicas_each; 3], "factor {factor}");
        assert_eq!(leaders, [4, 4, 4], "factor {factor}");
    }
}

/// Creates topics of the given (partitions, factor) shapes one after another with
/// `assign`, and returns the worst replica and leadership spreads seen.
fn create_in_turn(voters: &[NodeId], shapes: &[(u32, u8)]) -> (u64, u64) {
    let mut c = Catalogue::new();
    let mut worst = (0, 0);
    for (i, &(partitions, factor)) in shapes.iter().enumerate() {
        let replication = Replication::Factor(factor);
        let lists = assign(voters, &c, partitions, replication, 0).unwrap();
        let cmd = create(&format!("t{i}"), settings(partitions, replication), lists);
        changed(c.apply(i as u64 + 1, &cmd));
        let (replicas, leaders) = spread(&c, voters);
        worst.0 = worst.0.max(max_minus_min(&replicas));
        worst.1 = worst.1.max(max_minus_min(&leaders));
    }
    worst
}

#[test]
fn topics_created_one_after_another_stay_evenly_spread() {
    let three = nodes(&[1, 2, 3]);
    for factor in [1, 3] {
        let one_partition_each = vec![(1, factor); 30];
        let varied: Vec<(u32, u8)> = (0..30).map(|i| (1 + i % 5, factor)).collect();
        for shapes in [one_partition_each, varied] {
            let (replicas, leaders) = create_in_turn(&three, &shapes);
            assert!(
                replicas <= 1 && leaders <= 1,
                "factor {factor}: {replicas}, {leaders}"
            );
        }
    }
    // Mixed factors on five voters: replicas stay within one of each other. Replica
    // balance comes first (data is costly to move), so a leader can only be picked
    // among the least-loaded replicas and leaderships may drift by two.
    let five = nodes(&[10, 20, 30, 40, 50]);
    let shapes = [
        (1, 3),
        (2, 1),
        (5, 5),
        (3, 3),
        (1, 1),
        (7, 3),
        (4, 5),
        (6, 1),
    ];
    let mixed: Vec<(u32, u8)> = shapes.iter().copied().cycle().take(40).collect();
    let (replicas, leaders) = create_in_turn(&five, &mixed);
    assert_eq!(replicas, 1);
    assert!(leaders <= 2, "leaderships spread by {leaders}");
}

#[test]
fn added_partitions_go_to_the_least_loaded_voters() {
    let voters = nodes(&[1, 2, 3]);
    let mut c = Catalogue::new();
    let one = Replication::Factor(1);
    changed(c.apply(
        1,
        &create("a", settings(2, one), vec![nodes(&[1]), nodes(&[1])]),
    ));
    let lists = assign(&voters, &c, 2, one, 2).unwrap();
    assert_eq!(lists, [nodes(&[2]), nodes(&[3])]);
    changed(c.apply(2, &alter("a", grow_to(4), lists)));
    // Node 4 is not a voter: its replica does not count, and it gets nothing.
    changed(c.apply(3, &create("b", settings(1, one), vec![nodes(&[4])])));
    let lists = assign(&voters, &c, 3, one, 0).unwrap();
    assert_eq!(lists, [nodes(&[2]), nodes(&[3]), nodes(&[1])]);
}

#[test]
fn assign_is_deterministic_and_checks_its_inputs() {
    let c = sample();
    let f3 = Replication::Factor(3);
    let a = assign(&nodes(&[3, 1, 2, 5]), &c, 6, f3, 0).unwrap();
    let b = assign(&nodes(&[5, 2, 2, 1, 3]), &c, 6, f3, 0).unwrap();
    assert_eq!(a, b, "voter order and duplicates do not matter");
    assert_eq!(a.len(), 6);
    assert_eq!(
        assign(&nodes(&[1, 2, 2]), &c, 1, f3, 0),
        Err(CatalogueError::ReplicationTooHigh {
            factor: 3,
            voters: 2
        })
    );
    assert!(matches!(
        assign(&nodes(&[1, 2, 3]), &c, 1, Replication::Factor(2), 0),
        Err(CatalogueError::InvalidSettings(_))
    ));
    assert_eq!(
        assign(&[], &c, 2, Replication::All, 0),
        Ok(vec![vec![], vec![]])
    );
    let too_many = assign(
        &nodes(&[1]),
        &c,
        2,
        Replication::All,
        MAX_PARTITIONS_PER_TOPIC - 1,
    );
    assert!(matches!(too_many, Err(CatalogueError::InvalidSettings(_))));
    assert!(assign(&nodes(&[1]), &c, 1, Replication::All, u32::MAX).is_err());
}

#[test]
fn every_cluster_starts_with_the_default_topic_in_group_1() {
    let c = Catalogue::with_default_topic();
    let t = c.topic(DEFAULT_TOPIC).expect("default topic");
    assert_eq!(t.partitions.len(), 1);
    assert_eq!(
        t.partitions[0].group,
        crate::types::GroupId::DEFAULT_PARTITION
    );
    assert!(t.partitions[0].follows_voters());
    assert_eq!(c.next_group(), crate::types::GroupId(2));
    assert!(t.settings.validate().is_ok());
    let mut bytes = Vec::new();
    c.encode_snapshot(&mut bytes);
    assert_eq!(Catalogue::decode_snapshot(&bytes), Ok(c));
}
