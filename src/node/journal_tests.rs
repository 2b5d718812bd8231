//! The journal as a crash sees it: appends made durable only by the journal survive
//! the loss of every unsynced segment byte, and replay rebuilds each log exactly.

use std::path::{Path, PathBuf};

use super::*;
use crate::node::raft_storage::LogStorage;
use crate::raft::{Entry, Index, LogStart, Membership, Storage, Term};
use crate::storage::{LogConfig, Offset, RecordKind};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d =
            std::env::temp_dir().join(format!("commitlog-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_group(dir: &Path) -> LogStorage {
    let cfg = LogConfig {
        max_store_bytes: 1 << 20,
        initial_offset: Offset(1),
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open_and_repair(&dir.join("log"), cfg).unwrap().0);
    let start = LogStart {
        membership: Membership::with_voters([1]),
        ..LogStart::default()
    };
    LogStorage::open(dir, log, start).unwrap()
}

fn entries(from: u64, to: u64, term: u64, tag: u8) -> Vec<Entry> {
    (from..=to)
        .map(|i| Entry {
            index: Index(i),
            term: Term(term),
            kind: RecordKind::Data,
            data: vec![tag, i as u8, 7, 7].into(),
        })
        .collect()
}

/// Bytes of every file of the log's directory (the store files only hold records).
fn store_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "store"))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect();
    out.sort();
    out
}

/// Power loss: every store byte written after `synced` was taken is gone.
fn lose_unsynced(synced: &[(PathBuf, u64)]) {
    for (path, len) in synced {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(*len).unwrap();
    }
}

fn journal_round(j: &NodeJournal, groups: &mut [(GroupId, &mut LogStorage)]) {
    let appended: Vec<_> = groups
        .iter_mut()
        .filter_map(|(id, s)| Some((*id, Arc::clone(s.log()), s.take_unjournaled()?.0)))
        .collect();
    j.commit_round(&appended).unwrap();
}

/// Groups 1 and 2 (in `root/a`, `root/b`) with two entries each, journaled.
fn two_groups_journaled(root: &Path) -> (NodeJournal, LogStorage, LogStorage) {
    let j = NodeJournal::open(root).unwrap();
    let mut a = open_group(&root.join("a"));
    let mut b = open_group(&root.join("b"));
    a.append(&entries(1, 2, 1, b'a')).unwrap();
    b.append(&entries(1, 2, 1, b'b')).unwrap();
    journal_round(&j, &mut [(GroupId(1), &mut a), (GroupId(2), &mut b)]);
    (j, a, b)
}

fn terms_and_tags(s: &LogStorage) -> Vec<(u64, u8)> {
    let last = s.last_index();
    s.entries(Index(1), last + 1, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| (e.term.0, e.data[0]))
        .collect()
}

#[test]
fn journaled_appends_survive_losing_the_unsynced_segment_bytes() {
    let root = Dir::new("power-loss");
    let (a_dir, b_dir) = (root.0.join("a"), root.0.join("b"));
    let synced_a;
    let synced_b;
    {
        let j = NodeJournal::open(&root.0).unwrap();
        let mut a = open_group(&a_dir);
        let mut b = open_group(&b_dir);
        a.append(&entries(1, 3, 1, b'a')).unwrap();
        a.sync().unwrap();
        a.take_unjournaled();
        synced_a = store_sizes(&a_dir);
        synced_b = store_sizes(&b_dir);
        a.append(&entries(4, 6, 1, b'a')).unwrap();
        b.append(&entries(1, 5, 2, b'b')).unwrap();
        journal_round(&j, &mut [(GroupId(7), &mut a), (GroupId(8), &mut b)]);
        // A Raft conflict in a later round: entries from 5 replaced by a new term.
        a.append(&entries(5, 5, 3, b'c')).unwrap();
        journal_round(&j, &mut [(GroupId(7), &mut a)]);
    }
    lose_unsynced(&synced_a);
    lose_unsynced(&synced_b);
    let j = NodeJournal::open(&root.0).unwrap();
    for (id, dir, want) in [
        (
            7,
            &a_dir,
            vec![(1, b'a'), (1, b'a'), (1, b'a'), (1, b'a'), (3, b'c')],
        ),
        (8, &b_dir, vec![(2, b'b'); 5]),
    ] {
        let mut s = open_group(dir);
        let lost = s.last_index().0;
        assert!(
            lost < want.len() as u64 - 1,
            "group {id}: nothing was lost ({lost})"
        );
        let records = j.pending(GroupId(id));
        assert!(!records.is_empty());
        let folded = fold(&records).unwrap();
        s.replay(&folded).unwrap();
        assert_eq!(terms_and_tags(&s), want, "group {id}");
        // Replaying again changes nothing (a crash during replay replays again).
        s.replay(&folded).unwrap();
        assert_eq!(terms_and_tags(&s), want, "group {id} replayed twice");
    }
}

#[test]
fn replay_cuts_what_the_last_round_did_not_hold() {
    let root = Dir::new("stale-tail");
    let g = root.0.join("g");
    {
        let j = NodeJournal::open(&root.0).unwrap();
        let mut s = open_group(&g);
        s.append(&entries(1, 6, 1, b'x')).unwrap();
        journal_round(&j, &mut [(GroupId(3), &mut s)]);
        // The new leader's shorter log replaces 4..6 with one entry of term 2: the
        // segment still holds the old entries if the truncation is lost.
        s.append(&entries(4, 4, 2, b'y')).unwrap();
        journal_round(&j, &mut [(GroupId(3), &mut s)]);
    }
    let j = NodeJournal::open(&root.0).unwrap();
    let mut s = open_group(&g);
    // Put the stale suffix back, as a lost truncation would leave it.
    s.append(&entries(4, 6, 1, b'x')).unwrap();
    s.replay(&fold(&j.pending(GroupId(3))).unwrap()).unwrap();
    assert_eq!(
        terms_and_tags(&s),
        vec![(1, b'x'), (1, b'x'), (1, b'x'), (2, b'y')]
    );
}

#[test]
fn a_checkpoint_keeps_only_records_of_groups_not_replayed() {
    let root = Dir::new("checkpoint");
    {
        let (j, _, _) = two_groups_journaled(&root.0);
        assert!(j.covers(GroupId(1)) && j.covers(GroupId(2)));
    }
    let j = NodeJournal::open(&root.0).unwrap();
    assert_eq!(j.pending_groups(), vec![GroupId(1), GroupId(2)]);
    let mut a = open_group(&root.0.join("a"));
    a.replay(&fold(&j.pending(GroupId(1))).unwrap()).unwrap();
    a.sync().unwrap();
    j.replayed(GroupId(1), a.log());
    j.checkpoint().unwrap();
    assert!(!j.covers(GroupId(1)));
    drop(j);
    let j = NodeJournal::open(&root.0).unwrap();
    assert_eq!(j.pending_groups(), vec![GroupId(2)]);
    j.forget(GroupId(2));
    j.checkpoint().unwrap();
    drop(j);
    assert!(NodeJournal::open(&root.0)
        .unwrap()
        .pending_groups()
        .is_empty());
}

#[test]
fn a_reset_checkpoints_first_so_older_records_never_come_back() {
    let root = Dir::new("reset");
    let g = root.0.join("g");
    {
        let j = Arc::new(NodeJournal::open(&root.0).unwrap());
        let mut s = open_group(&g);
        s.use_journal(Arc::clone(&j));
        s.append(&entries(1, 5, 1, b'o')).unwrap();
        journal_round(&j, &mut [(GroupId(4), &mut s)]);
        // InstallSnapshot: the log restarts after index 10.
        s.install(LogStart {
            index: Index(10),
            term: Term(4),
            membership: Membership::with_voters([1]),
        })
        .unwrap();
        s.append(&entries(11, 11, 4, b'n')).unwrap();
        journal_round(&j, &mut [(GroupId(4), &mut s)]);
    }
    let j = NodeJournal::open(&root.0).unwrap();
    let records = j.pending(GroupId(4));
    assert_eq!(records.len(), 1, "only the record after the reset");
    assert_eq!(records[0].first, Offset(11));
}

#[test]
fn a_hole_in_unsynced_segment_bytes_is_cut_and_refilled_from_the_journal() {
    let root = Dir::new("hole");
    let g = root.0.join("g");
    {
        let j = NodeJournal::open(&root.0).unwrap();
        let mut s = open_group(&g);
        s.append(&entries(1, 3, 1, b'h')).unwrap();
        s.sync().unwrap();
        s.take_unjournaled();
        s.append(&entries(4, 8, 1, b'h')).unwrap();
        journal_round(&j, &mut [(GroupId(6), &mut s)]);
    }
    // Pages written after the last fsync reach the disk out of order: record 5
    // is zeros, records after it are intact.
    let (store, _) = store_sizes(&g).remove(0);
    let record_bytes = (crate::storage::RECORD_HEADER_BYTES + 4) as u64;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0; record_bytes as usize], 4 * record_bytes)
        .unwrap();
    let cfg = LogConfig {
        max_store_bytes: 1 << 20,
        initial_offset: Offset(1),
        ..LogConfig::default()
    };
    // Without the journal this is damage (a valid record follows the bad one).
    assert!(Log::open(&g.join("log"), cfg.clone()).is_err());
    let j = NodeJournal::open(&root.0).unwrap();
    let records = j.pending(GroupId(6));
    let from = records.iter().map(|r| r.first).min().unwrap();
    assert_eq!(from, Offset(4));
    let (log, found) = Log::open_covered(&g.join("log"), cfg, false, from).unwrap();
    assert!(found.cut.is_none_or(|c| c.from >= from));
    let start = LogStart {
        membership: Membership::with_voters([1]),
        ..LogStart::default()
    };
    let mut s = LogStorage::open(&g, Arc::new(log), start).unwrap();
    assert_eq!(s.last_index(), Index(4), "cut at the hole");
    s.replay(&fold(&records).unwrap()).unwrap();
    assert_eq!(terms_and_tags(&s), vec![(1, b'h'); 8]);
}

#[test]
fn a_group_journaled_alone_releases_itself_and_others_keep_it() {
    let root = Dir::new("release");
    let (mut j, mut a, _) = two_groups_journaled(&root.0);
    // Another group is journaled too and wrote within the idle time: `a` may not
    // leave.
    j.release_idle = Duration::from_secs(3600);
    assert!(!j.release(GroupId(1)).unwrap());
    assert!(j.covers(GroupId(1)));
    j.checkpoint().unwrap();
    a.append(&entries(3, 3, 1, b'a')).unwrap();
    journal_round(&j, &mut [(GroupId(1), &mut a)]);
    assert!(j.release(GroupId(1)).unwrap());
    assert!(!j.covers(GroupId(1)));
    assert_eq!(a.log().durable_offset(), Offset(4), "its log was fsynced");
    drop(j);
    assert!(NodeJournal::open(&root.0)
        .unwrap()
        .pending_groups()
        .is_empty());
}

#[test]
fn a_lone_group_releases_the_journal_once_the_others_are_idle() {
    let root = Dir::new("release-idle");
    let (mut j, mut a, b) = two_groups_journaled(&root.0);
    a.append(&entries(3, 3, 1, b'a')).unwrap();
    journal_round(&j, &mut [(GroupId(1), &mut a)]);
    // Group 2 wrote within the idle time: group 1 stays journaled.
    j.release_idle = Duration::from_secs(3600);
    assert!(!j.release(GroupId(1)).unwrap());
    assert!(j.covers(GroupId(1)) && j.covers(GroupId(2)));
    // Group 2 idle long enough (here: any time): both logs are fsynced, the
    // journal files removed, neither group journaled.
    j.release_idle = Duration::ZERO;
    assert!(j.release(GroupId(1)).unwrap());
    assert!(!j.covers(GroupId(1)) && !j.covers(GroupId(2)));
    assert_eq!(a.log().durable_offset(), Offset(4));
    assert_eq!(b.log().durable_offset(), Offset(3));
    drop(j);
    assert!(NodeJournal::open(&root.0)
        .unwrap()
        .pending_groups()
        .is_empty());
}

#[test]
fn a_lone_group_that_cannot_release_itself_still_gets_checkpoints() {
    let root = Dir::new("lone-checkpoints");
    let (mut j, mut a, _b) = two_groups_journaled(&root.0);
    j.checkpoint_bytes = 1;
    j.release_idle = Duration::from_secs(3600);
    // Group 1 appends alone round after round while group 2 is still journaled:
    // it cannot release itself, so the size limit must start checkpoints (in the
    // background: awaited with a deadline), and then group 1 releases itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 3;
    while j.covers(GroupId(1)) && Instant::now() < deadline {
        a.append(&entries(i, i, 1, b'a')).unwrap();
        journal_round(&j, &mut [(GroupId(1), &mut a)]);
        j.after_round(Some(GroupId(1))).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!j.covers(GroupId(2)), "group 2 was checkpointed");
    assert!(!j.covers(GroupId(1)), "then group 1 released itself");
    let files = std::fs::read_dir(root.0.join(JOURNAL_DIR)).unwrap().count();
    assert!(files <= 3, "journal files: {files}");
}

#[test]
fn folding_keeps_the_last_word_on_every_offset() {
    let rec = |first: u64, terms: &[u64]| JournalRecord {
        log_id: 5,
        first: Offset(first),
        end: Offset(first + terms.len() as u64),
        entries: terms
            .iter()
            .map(|t| crate::storage::journal::JournalEntry {
                term: Term(*t),
                kind: RecordKind::Data,
                value: vec![*t as u8],
            })
            .collect(),
    };
    let terms = |r: &JournalRecord| r.entries.iter().map(|e| e.term.0).collect::<Vec<_>>();
    assert!(fold(&[]).is_none());
    // An append at 22, then a new leader's entries from 20, then more: the
    // first record stood on entries the second replaced.
    let f = fold(&[rec(22, &[1]), rec(20, &[2, 2]), rec(22, &[2, 2, 2])]).unwrap();
    assert_eq!(
        (f.first, f.end, terms(&f)),
        (Offset(20), Offset(25), vec![2; 5])
    );
    // A record starting past the earlier ones keeps what it stood on from the log.
    let f = fold(&[rec(10, &[1]), rec(12, &[1, 1])]).unwrap();
    assert_eq!(
        (f.first, f.end, terms(&f)),
        (Offset(12), Offset(14), vec![1, 1])
    );
    // Offsets far apart (a damaged-but-checksummed file, say) allocate nothing.
    let f = fold(&[rec(1, &[1]), rec(u64::MAX - 9, &[4])]).unwrap();
    assert_eq!((f.first, terms(&f)), (Offset(u64::MAX - 9), vec![4]));
    // A shorter overwrite ends the log where it ends.
    let f = fold(&[rec(1, &[1, 1, 1, 1]), rec(2, &[3])]).unwrap();
    assert_eq!(
        (f.first, f.end, terms(&f)),
        (Offset(1), Offset(3), vec![1, 3])
    );
}
