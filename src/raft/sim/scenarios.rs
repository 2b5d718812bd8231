//! Readable scenario tests, in the spirit of etcd-io/raft's `raft_paper_test.go` and
//! `testdata/*.txt`: each builds a small cluster, drives it message by message or tick
//! by tick, and cites the rule of the Raft paper (Ongaro & Ousterhout, 2014) or thesis
//! it checks. The simulator's checker runs after every step here too.

use super::{disk_with, sim_config, Cluster};
use crate::raft::{
    ConfChange, Config, Index, MessageBody, NodeId, ProposeError, RaftNode, ReadyAck, Role, Term,
};

fn cluster(n: u64) -> Cluster {
    let ids: Vec<u64> = (1..=n).collect();
    Cluster::new(7, &ids, &ids, sim_config)
}

/// Makes `id` campaign (no pre-vote) and delivers everything.
fn elect(c: &mut Cluster, id: u64) {
    c.node_mut(id).campaign(false, false).expect("campaign");
    c.settle(NodeId(id)).expect("settle");
    c.stabilize();
    assert_eq!(c.node(id).role(), Role::Leader, "node {id} won");
}

fn terms_of(c: &Cluster, id: u64) -> Vec<u64> {
    let r = c.node(id);
    (r.first_index().0..=r.last_index().0)
        .map(|i| r.term_at(Index(i)).expect("in log").0)
        .collect()
}

/// Figure 7: "When the leader at the top comes to power, it is possible that any of
/// scenarios (a–f) could occur in follower logs" — missing entries (a, b), extra
/// uncommitted entries (c, d), or both (e, f). §5.3: "the leader handles
/// inconsistencies by forcing the followers' logs to duplicate its own", finding the
/// latest point where they agree. With conflict hints each follower needs at most two
/// rejections.
#[test]
fn figure_7_followers_with_missing_and_extra_entries_converge_to_the_leader() {
    let logs: [(u64, &[u64]); 7] = [
        (1, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]),
        (2, &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        (3, &[1, 1, 1, 4]),
        (4, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        (5, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        (6, &[1, 1, 1, 4, 4, 4, 4]),
        (7, &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    let voters: Vec<u64> = (1..=7).collect();
    let disks = logs
        .iter()
        .map(|(id, terms)| (*id, disk_with(&voters, terms, 7)))
        .collect();
    let mut c = Cluster::from_disks(disks, sim_config);
    elect(&mut c, 1);
    assert_eq!(c.node(1).term(), Term(8));
    let leader = terms_of(&c, 1);
    assert_eq!(
        leader,
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8],
        "no-op appended"
    );
    for id in 2..=7 {
        assert_eq!(
            terms_of(&c, id),
            leader,
            "follower {id} duplicates the leader"
        );
        assert_eq!(c.node(id).commit_index(), Index(11));
    }
    assert!(
        c.rejections_delivered <= 12,
        "fast back-tracking: {} rejections",
        c.rejections_delivered
    );
}

/// Figure 8 and §5.4.2: "Raft never commits log entries from previous terms by
/// counting replicas. Only log entries from the leader's current term are committed
/// by counting replicas." S1 (leader of term 4) replicates the term-2 entry at index 2
/// to a majority (S1, S2, S3) but it must not count as committed: S5 (whose index 2
/// has term 3) can still be elected and overwrite it. With the bug switch that counts
/// old-term replicas, the checker reports the lost commit.
fn figure_8(bug: bool) -> Result<(), String> {
    let voters = [1, 2, 3, 4, 5];
    let disks = vec![
        (1, disk_with(&voters, &[1, 2], 3)),
        (2, disk_with(&voters, &[1, 2], 3)),
        (3, disk_with(&voters, &[1], 3)),
        (4, disk_with(&voters, &[1], 3)),
        (5, disk_with(&voters, &[1, 3], 3)),
    ];
    let mut c = Cluster::from_disks(disks, |id| {
        let mut cfg = sim_config(id);
        cfg.max_size_per_msg = 1; // one entry per AppendEntries
        cfg.check_quorum = false; // the paper's setting: no leader lease
        cfg.bugs.commit_old_term_by_counting = bug;
        cfg
    });
    // (c) S1 wins term 4 with votes from S2 and S3, S4 (S5's log is more up to date).
    c.node_mut(1)
        .campaign(false, false)
        .map_err(|e| e.to_string())?;
    c.settle(NodeId(1))?;
    for _ in 0..50 {
        let msgs = c.take_messages();
        if msgs.is_empty() {
            break;
        }
        for mut m in msgs {
            let leader_elected = c.node(1).role() == Role::Leader;
            // Once S1 leads, only S2 and S3 hear from it, and only old-term entries
            // (the term-4 no-op is lost on the way).
            if leader_elected && m.from == NodeId(1) {
                if m.to != NodeId(2) && m.to != NodeId(3) {
                    continue;
                }
                if let MessageBody::AppendEntries { entries, .. } = &mut m.body {
                    entries.retain(|e| e.term < Term(4));
                }
            }
            c.try_inject(m)?;
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), Term(4));
    assert_eq!(
        c.node(3).term_at(Index(2)),
        Ok(Term(2)),
        "S3 has index 2 now"
    );
    if !bug {
        assert_eq!(
            c.node(1).commit_index(),
            Index(0),
            "index 2 is on a majority but from term 2: not committed by counting"
        );
    }
    // (d) S1 crashes; S5 is elected (votes from S2, S3, S4) and overwrites index 2.
    c.crash(NodeId(1));
    c.clear_network();
    c.node_mut(5)
        .campaign(false, false)
        .map_err(|e| e.to_string())?;
    c.settle(NodeId(5))?;
    for _ in 0..100 {
        let msgs = c.take_messages();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            c.try_inject(m)?;
        }
    }
    assert_eq!(c.node(5).role(), Role::Leader);
    for id in 2..=4 {
        assert_eq!(
            c.node(id).term_at(Index(2)),
            Ok(Term(3)),
            "S{id} follows S5"
        );
    }
    Ok(())
}

#[test]
fn figure_8_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    figure_8(false).expect("correct Raft passes the checker");
}

#[test]
fn figure_8_with_commit_by_counting_bug_is_caught_by_the_checker() {
    let err = figure_8(true).expect_err("the checker must catch the lost commit");
    assert!(err.contains("violated"), "{err}");
}

/// Figure 8 (e): "if S1 replicates an entry from its current term on a majority of
/// the cluster before crashing, then this entry is committed (S5 cannot win an
/// election)" — and so is the older entry before it.
#[test]
fn figure_8_current_term_entry_commits_the_older_ones_too() {
    let voters = [1, 2, 3, 4, 5];
    let disks = vec![
        (1, disk_with(&voters, &[1, 2], 3)),
        (2, disk_with(&voters, &[1, 2], 3)),
        (3, disk_with(&voters, &[1], 3)),
        (4, disk_with(&voters, &[1], 3)),
        (5, disk_with(&voters, &[1, 3], 3)),
    ];
    let mut c = Cluster::from_disks(disks, |id| {
        let mut cfg = sim_config(id);
        cfg.check_quorum = false; // no lease: votes are decided by logs alone
        cfg
    });
    c.block_one_way(1, 5);
    elect(&mut c, 1);
    assert_eq!(
        c.node(1).commit_index(),
        Index(3),
        "no-op of term 4 commits 1..=3"
    );
    c.crash(NodeId(1));
    c.node_mut(5).campaign(false, false).expect("campaign");
    c.settle(NodeId(5)).expect("settle");
    c.stabilize();
    assert_ne!(c.node(5).role(), Role::Leader, "S5 lacks a committed entry");
}

/// Thesis §9.6 (pre-vote): a node partitioned away keeps timing out but, failing its
/// pre-vote, never increments its term, so it does not disrupt the leader when it
/// rejoins. hashicorp/raft#609: granting a pre-vote must NOT reset the election timer.
#[test]
fn pre_vote_keeps_an_isolated_node_from_disrupting_and_does_not_reset_timers() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    let term = c.node(1).term();
    c.isolate(3);
    c.tick(3, 100);
    assert_eq!(c.node(3).term(), term, "pre-vote failed: term unchanged");
    assert_eq!(c.node(3).role(), Role::PreCandidate);
    c.heal();
    c.clear_network();
    c.tick_all(4);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), term, "leader not disrupted");
    assert_eq!(c.node(3).leader(), Some(NodeId(1)));

    // Granting a pre-vote leaves the granter's timer alone; a real vote resets it.
    let mut fresh = cluster(3);
    fresh.tick(2, 5);
    assert_eq!(fresh.node(2).election_elapsed, 5);
    let pre = crate::raft::Message {
        from: NodeId(3),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::RequestVote {
            pre_vote: true,
            transfer: false,
            last_index: Index(0),
            last_term: Term(0),
        },
    };
    fresh.inject(pre.clone());
    assert!(fresh.bodies(2, 3).iter().any(|b| matches!(
        b,
        MessageBody::RequestVoteResponse {
            pre_vote: true,
            granted: true
        }
    )));
    assert_eq!(
        fresh.node(2).election_elapsed,
        5,
        "pre-vote grant kept the timer"
    );
    assert_eq!(fresh.node(2).term(), Term(0), "pre-vote changed no term");
    let real = crate::raft::Message {
        body: MessageBody::RequestVote {
            pre_vote: false,
            transfer: false,
            last_index: Index(0),
            last_term: Term(0),
        },
        ..pre
    };
    fresh.inject(real);
    assert_eq!(
        fresh.node(2).election_elapsed,
        0,
        "a real vote resets the timer"
    );
}

/// Thesis §6.2 (check-quorum): "a leader steps down if an election timeout elapses
/// without a successful round of heartbeats to a majority of its cluster", and §4.2.3:
/// servers that heard from a leader within the minimum election timeout ignore
/// RequestVote.
#[test]
fn check_quorum_isolated_leader_steps_down_and_followers_ignore_disruptive_votes() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    let term = c.node(1).term();
    // Followers in lease ignore a higher-term RequestVote.
    c.tick_all(1);
    c.inject(crate::raft::Message {
        from: NodeId(3),
        to: NodeId(2),
        term: Term(term.0 + 5),
        body: MessageBody::RequestVote {
            pre_vote: false,
            transfer: false,
            last_index: Index(100),
            last_term: Term(term.0 + 4),
        },
    });
    assert_eq!(
        c.node(2).term(),
        term,
        "vote request ignored within the lease"
    );
    // Isolated leader steps down within one election timeout (checked every
    // election_tick ticks, so at most two periods).
    c.isolate(1);
    for _ in 0..20 {
        c.tick(1, 1);
    }
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "lost quorum: stepped down"
    );
}

/// Thesis §3.10 (leadership transfer): the leader brings the target up to date, sends
/// TimeoutNow, and the target starts an election at once and wins. Proposals are
/// refused meanwhile.
#[test]
fn leadership_transfer_hands_over_to_a_caught_up_follower() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    // Make node 3 lag, then transfer to it.
    c.block_one_way(1, 3);
    c.propose(1, 5).expect("propose");
    c.stabilize();
    assert!(c.node(3).last_index() < c.node(1).last_index());
    c.heal();
    let term = c.node(1).term();
    c.node_mut(1)
        .transfer_leadership(NodeId(3))
        .expect("transfer");
    assert_eq!(
        c.node_mut(1).propose(vec![b"x".to_vec()]),
        Err(ProposeError::Transferring)
    );
    c.settle(NodeId(1)).expect("settle");
    c.tick_all(3);
    assert_eq!(c.node(3).role(), Role::Leader, "target took over");
    assert_eq!(c.node(3).term(), Term(term.0 + 1));
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), Some(NodeId(3)));
    let i = c.propose(3, 1).expect("new leader accepts proposals");
    c.stabilize();
    assert!(c.node(1).commit_index() >= i);
}

/// Thesis §4.2.1 (learners): a new server joins as a non-voting member, catches up,
/// and is then promoted. Learners never campaign and do not count toward commit.
#[test]
fn learner_catches_up_without_voting_and_is_promoted() {
    let mut c = Cluster::new(3, &[1, 2, 3, 4], &[1, 2, 3], sim_config);
    elect(&mut c, 1);
    c.propose(1, 10).expect("propose");
    c.stabilize();
    c.node_mut(1)
        .propose_conf_change(ConfChange::AddLearner(NodeId(4)))
        .expect("add learner");
    c.settle(NodeId(1)).expect("settle");
    c.tick_all(3);
    assert!(c.node(4).membership().learners.contains(&NodeId(4)));
    assert_eq!(
        c.node(4).last_index(),
        c.node(1).last_index(),
        "learner caught up"
    );
    let st = c.node(1).status();
    let f4 = st
        .followers
        .iter()
        .find(|f| f.id == NodeId(4))
        .expect("tracked");
    assert!(!f4.voter);
    assert_eq!(f4.lag_entries, 0);
    // The learner never campaigns.
    c.tick(4, 100);
    assert_eq!(c.node(4).role(), Role::Follower);
    assert!(c.bodies(4, 1).is_empty());
    // Learners do not count for commit: with voters 2 and 3 cut off, nothing commits.
    c.isolate(2);
    c.block_one_way(1, 3);
    c.block_one_way(3, 1);
    let i = c.propose(1, 1).expect("propose");
    c.stabilize();
    assert_eq!(c.node(4).last_index(), i, "learner has it");
    assert!(
        c.node(1).commit_index() < i,
        "leader + learner is not a quorum of voters"
    );
    c.heal();
    c.tick_all(3);
    assert!(c.node(1).commit_index() >= i);
    // Promotion.
    c.node_mut(1)
        .propose_conf_change(ConfChange::AddVoter(NodeId(4)))
        .expect("promote");
    c.settle(NodeId(1)).expect("settle");
    c.tick_all(3);
    assert!(c.node(4).membership().voters.contains(&NodeId(4)));
    assert!(c
        .node(1)
        .status()
        .followers
        .iter()
        .any(|f| f.id == NodeId(4) && f.voter));
}

/// Thesis §4.2.2: a leader removed from the configuration keeps managing the cluster
/// until the removal commits, then steps down; it never campaigns again, and the rest
/// elect a leader and keep committing.
#[test]
fn removing_the_leader_steps_it_down_after_the_removal_commits() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    let idx = c
        .node_mut(1)
        .propose_conf_change(ConfChange::Remove(NodeId(1)))
        .expect("remove self");
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "still leading until committed"
    );
    assert_eq!(
        c.node_mut(1)
            .propose_conf_change(ConfChange::Remove(NodeId(2))),
        Err(ProposeError::ConfChangePending),
        "one change at a time"
    );
    c.settle(NodeId(1)).expect("settle");
    c.stabilize();
    assert!(c.node(2).commit_index() >= idx);
    assert_ne!(
        c.node(1).role(),
        Role::Leader,
        "stepped down once committed"
    );
    c.tick_all(25);
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], NodeId(1));
    let l = leaders[0].0;
    let i = c.propose(l, 2).expect("propose");
    c.stabilize();
    assert!(c.node(2).commit_index() >= i && c.node(3).commit_index() >= i);
    c.tick(1, 100);
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "removed node never campaigns"
    );
}

/// Log-prefix snapshots (§7, in our form "the log starts at N"): a follower that needs
/// entries below the leader's first index receives InstallSnapshot, restarts its log
/// there, and continues with normal replication.
#[test]
fn snapshot_install_brings_a_far_behind_follower_back() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    c.isolate(3);
    for _ in 0..4 {
        c.propose(1, 5).expect("propose");
        c.stabilize();
    }
    let commit = c.node(1).commit_index();
    assert_eq!(commit, Index(21));
    let start = c.node_mut(1).compact(Index(15)).expect("compact");
    c.node_mut(1)
        .storage_mut()
        .compact(start)
        .expect("storage compact");
    assert_eq!(c.node(1).first_index(), Index(16));
    c.heal();
    c.tick_all(4);
    assert_eq!(c.node(3).first_index(), Index(16), "log restarted after 15");
    assert_eq!(c.node(3).log_start().term, c.node(1).term());
    assert_eq!(c.node(3).last_index(), Index(21));
    assert_eq!(c.node(3).commit_index(), Index(21));
    let i = c.propose(1, 1).expect("propose");
    c.stabilize();
    c.tick_all(1);
    assert_eq!(
        c.node(3).commit_index(),
        i,
        "replication continues after the snapshot"
    );
    // The follower restarts from what it persisted: the log start and later entries.
    c.crash(NodeId(3));
    c.start(NodeId(3)).expect("restart");
    assert_eq!(c.node(3).first_index(), Index(16));
    assert_eq!(c.node(3).last_index(), i);
}

/// The Ready contract: a vote is not sent before it is durable (§5.2, Figure 2:
/// "updated on stable storage before responding to RPCs"), and a single node's own
/// entries commit only after its own append is acknowledged (DESIGN decision 3).
#[test]
fn ready_holds_back_messages_until_persisted_and_leader_commits_only_durable_entries() {
    let disk = disk_with(&[1, 2, 3], &[], 0);
    let mut n = RaftNode::new(sim_config(NodeId(2)), disk, 1).expect("node");
    n.step(crate::raft::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::RequestVote {
            pre_vote: false,
            transfer: false,
            last_index: Index(0),
            last_term: Term(0),
        },
    })
    .expect("step");
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| h.vote), Some(Some(NodeId(1))));
    assert!(rd.messages.is_empty(), "vote response waits for the fsync");
    n.advance(ReadyAck { seq: rd.seq }).expect("advance");
    let rd = n.ready();
    assert!(matches!(
        rd.messages.as_slice(),
        [m] if matches!(m.body, MessageBody::RequestVoteResponse { granted: true, .. })
    ));

    let mut cfg: Config = sim_config(NodeId(1));
    cfg.pre_vote = false;
    let mut solo = RaftNode::new(cfg, disk_with(&[1], &[], 0), 1).expect("node");
    for _ in 0..40 {
        solo.tick().expect("tick");
    }
    assert_eq!(solo.role(), Role::Leader);
    let p = solo.propose(vec![b"a".to_vec()]).expect("propose");
    let rd = solo.ready();
    assert!(rd.entries.iter().any(|e| e.index == p.last));
    assert!(
        solo.commit_index() < p.last,
        "not durable yet: not committed"
    );
    solo.storage_mut().append(&rd.entries).expect("append");
    solo.advance(ReadyAck { seq: rd.seq }).expect("advance");
    assert_eq!(solo.commit_index(), p.last, "committed once durable");
    let rd = solo.ready();
    assert_eq!(rd.committed, Some((Index(1), p.last)));
}

/// Operator-facing API: status shows each follower's lag; refusals are typed.
#[test]
fn status_compaction_and_transfer_refusals_are_reported() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    c.block_one_way(1, 3);
    c.propose(1, 4).expect("propose");
    c.stabilize();
    let st = c.node(1).status();
    assert_eq!(st.role, Role::Leader);
    assert_eq!(st.followers.len(), 2);
    let f3 = st
        .followers
        .iter()
        .find(|f| f.id == NodeId(3))
        .expect("node 3");
    assert_eq!(f3.lag_entries, 4, "node 3 missed the batch");
    assert!(
        c.node(2).status().followers.is_empty(),
        "followers report no progress"
    );
    assert_eq!(
        c.node_mut(2).transfer_leadership(NodeId(3)),
        Err(crate::raft::TransferError::NotLeader)
    );
    assert_eq!(
        c.node_mut(1).transfer_leadership(NodeId(9)),
        Err(crate::raft::TransferError::InvalidTarget)
    );
    assert_eq!(
        c.node_mut(2).propose(vec![b"x".to_vec()]),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(1))
        })
    );
    let beyond = c.node(1).commit_index() + 1;
    assert_eq!(
        c.node_mut(1).compact(beyond),
        Err(crate::raft::CompactError::NotCommittedOrDurable)
    );
    assert_eq!(
        c.node_mut(1).compact(Index(0)),
        Err(crate::raft::CompactError::AlreadyCompacted)
    );
    assert_eq!(
        c.node_mut(1)
            .propose_conf_change(ConfChange::AddVoter(NodeId(2))),
        Err(ProposeError::InvalidConfChange("already a voter"))
    );
}

/// Thesis §4.1: "a server always uses the latest configuration in its log, regardless
/// of whether the entry is committed" — so when an uncommitted configuration entry is
/// truncated by a new leader, the server falls back to the previous configuration.
#[test]
fn an_uncommitted_configuration_takes_effect_when_appended_and_reverts_when_truncated() {
    let mut c = Cluster::new(5, &[1, 2, 3, 4], &[1, 2, 3], sim_config);
    elect(&mut c, 1);
    // Node 1 appends "add learner 4" but nobody receives it.
    c.isolate(1);
    c.node_mut(1)
        .propose_conf_change(ConfChange::AddLearner(NodeId(4)))
        .expect("conf change");
    c.settle(NodeId(1)).expect("settle");
    c.stabilize();
    assert!(
        c.node(1).membership().learners.contains(&NodeId(4)),
        "in effect once appended"
    );
    // Nodes 2 and 3 elect node 2, which commits a new entry at the same index.
    c.crash(NodeId(1));
    c.heal();
    c.tick_all(40);
    let l = c.leaders()[0].0;
    assert_ne!(l, 1);
    c.propose(l, 1).expect("propose");
    c.stabilize();
    c.start(NodeId(1)).expect("restart");
    c.tick_all(5);
    assert!(
        c.node(1).membership().learners.is_empty(),
        "truncated configuration reverted"
    );
    assert_eq!(c.node(1).last_index(), c.node(l).last_index());
}

/// Nonsense from a peer (acknowledging entries the leader never had, a commit index
/// beyond the follower's log) is ignored rather than trusted or crashing the node.
#[test]
fn out_of_range_acknowledgements_and_commit_indexes_are_ignored() {
    let mut c = cluster(3);
    elect(&mut c, 1);
    let commit = c.node(1).commit_index();
    c.inject(crate::raft::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: c.node(1).term(),
        body: MessageBody::AppendEntriesResponse {
            reject: false,
            index: Index(1_000_000),
            hint_index: Index(0),
            hint_term: Term(0),
        },
    });
    assert_eq!(c.node(1).commit_index(), commit);
    assert_eq!(c.node(1).role(), Role::Leader);
    let term = c.node(2).term();
    c.inject(crate::raft::Message {
        from: NodeId(1),
        to: NodeId(2),
        term,
        body: MessageBody::Heartbeat {
            commit: Index(u64::MAX),
            quiesce: false,
        },
    });
    assert_eq!(c.node(2).commit_index(), c.node(2).last_index());
}

/// Thesis §4.2.2: a server that is not part of its own latest configuration "should
/// still start new elections, as it might still be needed until the C_new entry is
/// committed". Four voters, S4 down. Leader S1 appends C_new = {2, 3, 4} (removing
/// itself) while cut off, then restarts: it holds the longest log and a configuration
/// without itself. S2 and S3 cannot win under the old configuration (they need three
/// of {1, 2, 3, 4}; S1 refuses them, its log is more up to date), although S1, S2, S3
/// are a majority of both configurations. Only S1 can break the tie: it campaigns (it
/// is a voter of the last committed configuration), wins with the votes of S2 and S3
/// (a majority of C_new, which counts its election), commits C_new, steps down, and
/// S2 or S3 takes over.
#[test]
fn a_server_removed_by_an_uncommitted_configuration_still_campaigns() {
    let mut c = cluster(4);
    elect(&mut c, 1);
    c.crash(NodeId(4));
    c.isolate(1);
    let idx = c
        .node_mut(1)
        .propose_conf_change(ConfChange::Remove(NodeId(1)))
        .expect("remove S1");
    c.settle(NodeId(1)).expect("settle");
    c.stabilize();
    assert!(!c.node(1).membership().voters.contains(&NodeId(1)));
    assert!(c.node(2).last_index() < idx && c.node(3).last_index() < idx);
    c.crash(NodeId(1));
    c.start(NodeId(1)).expect("restart");
    assert_eq!(c.node(1).last_index(), idx, "S1 kept C_new on disk");
    c.heal();
    c.tick_all(300);
    let leaders: Vec<u64> = c.leaders().iter().map(|l| l.0).collect();
    assert!(
        leaders == [2] || leaders == [3],
        "S2 or S3 leads once S1 committed its own removal: {leaders:?}"
    );
    let l = leaders[0];
    assert!(c.node(l).commit_index() >= idx, "C_new committed");
    let i = c.propose(l, 1).expect("propose");
    c.tick_all(2);
    assert!(c.node(2).commit_index() >= i && c.node(3).commit_index() >= i);
    assert_eq!(c.node(1).role(), Role::Follower, "S1 stepped down for good");
}

/// Delivers everything in flight, returning the checker's verdict.
fn try_stabilize(c: &mut Cluster) -> Result<(), String> {
    for _ in 0..100 {
        let msgs = c.take_messages();
        if msgs.is_empty() {
            return Ok(());
        }
        for m in msgs {
            c.try_inject(m)?;
        }
    }
    Err("network did not quiesce".into())
}

/// KNOWN HOLE in the "no vote until caught up" guard of `node/raft_loop.rs` (modelled
/// by the simulator's `Recovering`): a wiped node forgot its term and vote, and the
/// guard lifts once the node has caught up with *a* leader. If that leader is a
/// deposed one (a late message, or a stale leader cut off from the rest), the node
/// adopts the old term, acknowledges the stale leader's entries and votes in terms
/// where it already voted. S3 votes for S2 in term 2 and helps it commit 2/2; S3 is
/// wiped (one minority voter, every committed entry still on S2) and catches up from
/// S1, which still leads term 1: S1 counts S3's acknowledgement and commits 2/1 over
/// the committed 2/2, and S3 would also vote for S1 in term 2 (two leaders in one
/// term). The checker reports it; this test pins the hole down and should change once
/// the guard is fixed (e.g. a wiped node rejoins under a new id, as etcd requires).
#[test]
fn known_hole_a_wiped_node_catching_up_from_a_deposed_leader() {
    let err = wiped_node_meets_deposed_leader().expect_err("the checker sees the hole");
    eprintln!("known hole: {}", err.lines().next().unwrap_or(""));
    assert!(err.contains("violated"), "{err}");
}

fn wiped_node_meets_deposed_leader() -> Result<(), String> {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(7, &ids, &ids, |id| {
        let mut cfg = sim_config(id);
        cfg.pre_vote = false;
        cfg.check_quorum = false;
        cfg
    });
    elect(&mut c, 1);
    c.propose(1, 1).map_err(|e| e.to_string())?;
    // S1's AppendEntries of term 1 to S3 is delayed; the rest is lost.
    let late: Vec<_> = c
        .take_messages()
        .into_iter()
        .filter(|m| m.to == NodeId(3))
        .collect();
    c.block_one_way(1, 2);
    c.block_one_way(2, 1);
    c.node_mut(2)
        .campaign(false, false)
        .map_err(|e| e.to_string())?;
    c.settle(NodeId(2))?;
    try_stabilize(&mut c)?;
    assert_eq!(
        c.node(2).role(),
        Role::Leader,
        "S2 leads term 2 with S3's vote"
    );
    assert_eq!(c.node(3).storage().hard_state().vote, Some(NodeId(2)));
    assert_eq!(
        c.node(2).commit_index(),
        Index(2),
        "2/2 committed by S2 and S3"
    );
    c.clear_network();

    c.wipe(NodeId(3))?;
    for m in late {
        c.try_inject(m)?;
    }
    for _ in 0..5 {
        // S1 still believes it leads term 1 and keeps replicating to S3.
        c.tick_node(NodeId(1))?;
        c.tick_node(NodeId(1))?;
        try_stabilize(&mut c)?;
    }
    c.node_mut(1)
        .campaign(false, false)
        .map_err(|e| e.to_string())?;
    c.settle(NodeId(1))?;
    try_stabilize(&mut c)
}

/// A new partition's preferred leader campaigns at start-up, before any election
/// timeout: it is elected without waiting, and campaigning early is safe (any voter
/// may start an election at any time; the checker runs after every step). A leader
/// and a non-voter do not campaign.
#[test]
fn campaign_now_elects_the_caller_without_waiting_for_a_timeout() {
    let mut c = cluster(3);
    assert!(c.node_mut(2).campaign_now().expect("campaign"));
    c.settle(NodeId(2)).expect("settle");
    c.stabilize();
    assert_eq!(c.node(2).role(), Role::Leader, "node 2 won without a tick");
    assert!(
        !c.node_mut(2).campaign_now().expect("leader"),
        "a leader does not campaign"
    );
    let term = c.node(2).term();
    c.stabilize();
    assert_eq!(c.node(2).term(), term);
}

/// The catch-up throttle (`Config::catch_up_bytes_per_tick`): a follower that missed
/// committed entries gets at most one tick's budget of them per tick (plus the one
/// entry a message always carries), while a proposal still commits at once with the
/// caught-up follower; the lagging follower does catch up, tick by tick.
#[test]
fn the_catch_up_throttle_bounds_committed_bytes_per_tick_but_never_a_commit() {
    const PER_TICK: u64 = 100;
    let ids = [1, 2, 3];
    let mut c = Cluster::new(7, &ids, &ids, |id| {
        let mut cfg = sim_config(id);
        cfg.catch_up_bytes_per_tick = PER_TICK;
        cfg
    });
    elect(&mut c, 1);
    c.isolate(3);
    for _ in 0..10 {
        c.propose(1, 20).expect("propose");
        c.stabilize();
    }
    c.heal();
    let target = c.node(1).commit_index();
    assert!(target.0 >= 200, "committed without node 3");
    let mut ticks = 0;
    while c.node(3).last_index() < target {
        ticks += 1;
        assert!(ticks <= 200, "node 3 did not catch up in 200 ticks");
        c.tick(1, 1);
        let commit_at_tick = c.node(1).commit_index();
        let (mut sent, mut largest) = (0u64, 0u64);
        // Deliver until quiet (bounded), counting committed entry bytes to node 3.
        for _ in 0..10_000 {
            let msgs = c.take_messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                if let (NodeId(3), MessageBody::AppendEntries { entries, .. }) = (m.to, &m.body) {
                    for e in entries.iter().filter(|e| e.index <= commit_at_tick) {
                        sent += e.size_bytes();
                        largest = largest.max(e.size_bytes());
                    }
                }
                c.inject(m);
            }
        }
        assert!(
            sent <= PER_TICK + largest,
            "tick {ticks}: {sent} committed bytes sent, budget {PER_TICK}"
        );
        if ticks == 3 {
            // Mid catch-up: a proposal commits with nodes 1 and 2 alone, no tick.
            let i = c.propose(1, 1).expect("propose");
            c.stabilize();
            assert!(c.node(1).commit_index() >= i, "the throttle held a commit");
            assert!(c.node(3).last_index() < i, "node 3 is still behind");
        }
    }
    assert!(ticks >= 20, "{ticks} ticks: the throttle did not hold");
}
