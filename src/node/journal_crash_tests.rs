//! Random rounds over three groups (journaled or fsynced the way the raft thread
//! chooses, Raft-style overwrites, checkpoints, lone releases) with power losses:
//! every store file loses a random part of what was written since its last fsync
//! (plus torn garbage), the journal keeps what was committed (plus torn garbage).
//! After each restart every group's log must hold its durable entries exactly.
//! Replay one seed: `JOURNAL_CRASH_SEED=<n> cargo test --lib journal_crash`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::node::journal::{fold, NodeJournal, JOURNAL_DIR};
use crate::node::raft_storage::LogStorage;
use crate::node::round_sync::RoundSync;
use crate::raft::{Entry, Index, LogStart, Membership, SplitMix64, Storage, Term};
use crate::storage::{Log, LogConfig, Offset, RecordKind};
use crate::types::GroupId;

struct Group {
    id: GroupId,
    dir: PathBuf,
    storage: Option<LogStorage>,
    /// Terms of the log's entries from index 1 now, and as of the last durable round.
    current: Vec<u64>,
    durable: Vec<u64>,
    /// Store bytes at the last fsync of the log itself.
    synced_bytes: u64,
    term: u64,
}

fn cfg() -> LogConfig {
    LogConfig {
        max_store_bytes: 8 << 20,
        initial_offset: Offset(1),
        ..LogConfig::default()
    }
}

fn store_file(dir: &Path) -> PathBuf {
    let mut stores: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "store"))
        .collect();
    assert_eq!(stores.len(), 1, "one segment");
    stores.remove(0)
}

fn store_bytes(dir: &Path) -> u64 {
    std::fs::metadata(store_file(dir)).unwrap().len()
}

impl Group {
    fn storage(&mut self) -> &mut LogStorage {
        self.storage.as_mut().expect("open")
    }

    /// Appends 1-3 entries, sometimes over the last few (a new leader's term).
    fn append(&mut self, rng: &mut SplitMix64) {
        let len = self.current.len() as u64;
        let mut from = len + 1;
        if len > 0 && rng.chance(20) {
            from = len + 1 - rng.below(len.min(3)) - 1;
            self.term += 1;
        }
        let entries: Vec<Entry> = (0..1 + rng.below(3))
            .map(|k| Entry {
                index: Index(from + k),
                term: Term(self.term),
                kind: RecordKind::Data,
                data: vec![self.id.0 as u8; 1 + rng.below(200) as usize].into(),
            })
            .collect();
        self.storage().append(&entries).unwrap();
        self.current.truncate(from as usize - 1);
        self.current.extend(entries.iter().map(|e| e.term.0));
    }

    fn fsynced(&mut self) {
        self.storage().sync().unwrap();
        self.synced_bytes = store_bytes(&self.dir);
        self.durable = self.current.clone();
    }

    fn terms(&self) -> Vec<u64> {
        let s = self.storage.as_ref().expect("open");
        let last = s.last_index();
        s.entries(Index(1), last + 1, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.term.0)
            .collect()
    }
}

fn open_group(g: &mut Group, journal: &Arc<NodeJournal>) {
    let folded = fold(&journal.pending(g.id));
    let log = match folded.as_ref().map(|r| r.first) {
        Some(from) => Log::open_covered(&g.dir.join("log"), cfg(), false, from).map(|(l, _)| l),
        None => Log::open(&g.dir.join("log"), cfg()),
    }
    .unwrap_or_else(|e| panic!("group {}: {e}", g.id));
    let start = LogStart {
        membership: Membership::with_voters([1]),
        ..LogStart::default()
    };
    let mut s = LogStorage::open(&g.dir, Arc::new(log), start).unwrap();
    if let Some(r) = &folded {
        s.replay(r)
            .unwrap_or_else(|e| panic!("group {}: replay: {e}", g.id));
    }
    s.sync().unwrap();
    journal.replayed(g.id, s.log());
    s.use_journal(Arc::clone(journal));
    g.storage = Some(s);
    g.synced_bytes = store_bytes(&g.dir);
}

/// One round over some groups, made durable as the raft thread would.
fn round(groups: &mut [Group], journal: &NodeJournal, rng: &mut SplitMix64) {
    let picked: Vec<usize> = (0..groups.len()).filter(|_| rng.chance(50)).collect();
    if picked.is_empty() {
        return;
    }
    let mut appended = Vec::new();
    let mut bytes = 0;
    for &i in &picked {
        groups[i].append(rng);
        let g = &mut groups[i];
        let log = Arc::clone(g.storage().log());
        if let Some((from, b)) = g.storage().take_unjournaled() {
            appended.push((g.id, log, from));
            bytes += b;
        }
    }
    let covered = picked.iter().any(|&i| journal.covers(groups[i].id));
    // Small limits of its own would not change the rules: scale the bytes so big
    // rounds happen too.
    let mode = RoundSync::choose(picked.len(), covered, bytes << 11);
    if mode == RoundSync::CheckpointThenLogs {
        journal.checkpoint().unwrap();
        all_checkpointed(groups, journal);
    }
    if mode == RoundSync::Journal {
        journal.commit_round(&appended).unwrap();
        for &i in &picked {
            groups[i].durable = groups[i].current.clone();
        }
        if picked.len() == 1 && journal.release(groups[picked[0]].id).unwrap() {
            // Every journaled log was fsynced.
            all_checkpointed(groups, journal);
        }
    } else {
        for &i in &picked {
            groups[i].fsynced();
        }
    }
}

/// After a checkpoint every log is fsynced as of now.
fn all_checkpointed(groups: &mut [Group], journal: &NodeJournal) {
    for g in groups.iter_mut() {
        if !journal.covers(g.id) {
            g.synced_bytes = store_bytes(&g.dir);
        }
    }
}

/// Power loss: each store keeps a random part of its unsynced bytes, then maybe
/// torn garbage; the journal's newest file may get torn garbage after its records.
fn power_loss(groups: &mut [Group], root: &Path, rng: &mut SplitMix64) {
    for g in groups.iter_mut() {
        g.storage = None;
        let path = store_file(&g.dir);
        let len = std::fs::metadata(&path).unwrap().len();
        // A cut (Raft overwrite) since the last fsync was itself fsynced.
        let synced = g.synced_bytes.min(len);
        let keep = synced + rng.below(len - synced + 1);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(keep).unwrap();
        if rng.chance(30) {
            let garbage: Vec<u8> = (0..1 + rng.below(40))
                .map(|_| rng.next_u64() as u8)
                .collect();
            std::os::unix::fs::FileExt::write_all_at(&f, &garbage, keep).unwrap();
        }
    }
    let journal_dir = root.join(JOURNAL_DIR);
    let newest = std::fs::read_dir(&journal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().contains("free"))
        .max();
    if let (Some(path), true) = (newest, rng.chance(30)) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let garbage: Vec<u8> = (0..1 + rng.below(60))
            .map(|_| rng.next_u64() as u8)
            .collect();
        std::io::Write::write_all(&mut f, &garbage).unwrap();
    }
}

/// Even seeds release the journal whenever a group appends alone, however recently
/// the others wrote (`NodeJournal::release`).
fn open_journal(root: &Path, seed: u64) -> Arc<NodeJournal> {
    let mut journal = NodeJournal::open(root).unwrap();
    if seed.is_multiple_of(2) {
        journal.release_idle = std::time::Duration::ZERO;
    }
    Arc::new(journal)
}

fn run(seed: u64) {
    let root = std::env::temp_dir().join(format!(
        "commitlog-journal-crash-{seed}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let mut rng = SplitMix64::new(seed);
    let mut journal = open_journal(&root, seed);
    let mut groups: Vec<Group> = (1..=3)
        .map(|i| Group {
            id: GroupId(i),
            dir: root.join(format!("g{i}")),
            storage: None,
            current: Vec::new(),
            durable: Vec::new(),
            synced_bytes: 0,
            term: 1,
        })
        .collect();
    for g in groups.iter_mut() {
        std::fs::create_dir_all(&g.dir).unwrap();
        open_group(g, &journal);
    }
    for step in 0..60 {
        if rng.chance(10) {
            journal.checkpoint().unwrap();
            all_checkpointed(&mut groups, &journal);
        } else if rng.chance(12) {
            power_loss(&mut groups, &root, &mut rng);
            drop(journal);
            journal = open_journal(&root, seed);
            for g in groups.iter_mut() {
                open_group(g, &journal);
                let terms = g.terms();
                assert!(
                    terms.starts_with(&g.durable),
                    "seed {seed} step {step} group {}: durable {:?}, log after restart {:?}",
                    g.id,
                    g.durable,
                    terms
                );
                g.current = terms.clone();
                g.durable = terms;
            }
        } else {
            round(&mut groups, &journal, &mut rng);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn durable_entries_survive_power_losses_between_random_rounds() {
    if let Some(seed) = std::env::var("JOURNAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed);
        return;
    }
    for seed in 0..200 {
        run(seed);
    }
}
