use super::*;
use crate::types::RecordKind;

fn e(i: u64, t: u64) -> Entry {
    Entry {
        index: Index(i),
        term: Term(t),
        kind: RecordKind::Data,
        data: vec![i as u8; 3].into(),
    }
}

fn anchor(i: u64, t: u64) -> Anchor {
    Anchor {
        index: Index(i),
        term: Term(t),
    }
}

fn fetches(h: &mut Healer) -> Vec<FetchRequest> {
    h.take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Fetch(f) => Some(f),
            Action::Rebuild { .. } => None,
        })
        .collect()
}

const PEERS: [NodeId; 2] = [NodeId(2), NodeId(3)];

fn answer(term_at_anchor: u64, range: std::ops::Range<u64>) -> Result<FetchAnswer, String> {
    Ok(FetchAnswer {
        anchor_term: Some(Term(term_at_anchor)),
        peer_commit: Index(0),
        entries: range.map(|i| e(i, 1)).collect(),
    })
}

#[test]
fn a_range_is_fetched_in_pages_then_rebuilt_once() {
    let mut h = Healer::new(HealConfig::default());
    h.damaged(Index(10), Index(20), anchor(25, 2));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].from, f[0].end, f[0].anchor),
        (Index(10), Index(20), Index(25))
    );
    h.answered(f[0].id, answer(2, 10..14), &PEERS);
    let f2 = fetches(&mut h);
    assert_eq!(f2.len(), 1, "the next page is asked of the same peer");
    assert_eq!((f2[0].from, f2[0].peer), (Index(14), f[0].peer));
    // Records past the range are ignored.
    h.answered(f2[0].id, answer(2, 14..30), &PEERS);
    let acts = h.take_actions();
    let [Action::Rebuild {
        first,
        end,
        entries,
        ..
    }] = acts.as_slice()
    else {
        panic!("expected one rebuild, got {acts:?}");
    };
    assert_eq!((*first, *end), (Index(10), Index(20)));
    let idx: Vec<u64> = entries.iter().map(|e| e.index.0).collect();
    assert_eq!(idx, (10..20).collect::<Vec<_>>());
    assert_eq!(h.damaged_entries(), 10);
    h.rebuilt(Index(10), Ok(()));
    assert_eq!(h.damaged_entries(), 0);
    assert_eq!(h.stats().entries_healed, 10);
}

#[test]
fn a_peer_with_another_term_at_the_anchor_is_never_used() {
    // A diverged log: same index, another term at the anchor. The other peer is
    // asked, and the first one's records are never used.
    let mut h = Healer::new(HealConfig::default());
    h.damaged(Index(5), Index(6), anchor(9, 3));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    h.answered(f[0].id, answer(2, 5..6), &PEERS);
    let f2 = fetches(&mut h);
    assert_eq!(f2.len(), 1);
    assert_ne!(f2[0].peer, f[0].peer, "the other peer is asked");
    h.answered(f2[0].id, answer(3, 5..6), &PEERS);
    let acts = h.take_actions();
    assert!(
        matches!(acts.as_slice(), [Action::Rebuild { from_peer, .. }] if *from_peer == f2[0].peer)
    );
    assert_eq!(h.stats().peer_failures, 1);
}

#[test]
fn when_every_peer_fails_the_range_waits_and_is_retried() {
    let cfg = HealConfig {
        request_timeout_ms: 100,
        retry_after_ms: 1_000,
    };
    let mut h = Healer::new(cfg);
    h.damaged(Index(5), Index(8), anchor(8, 1));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    h.answered(f[0].id, Err("CORRUPT_RECORD".into()), &PEERS);
    let f = fetches(&mut h);
    assert_eq!(f.len(), 1);
    // The second peer times out.
    h.tick(150, &PEERS);
    assert!(
        fetches(&mut h).is_empty(),
        "both tried: wait before retrying"
    );
    assert_eq!(h.damaged_entries(), 3, "still known damaged");
    h.tick(900, &PEERS);
    assert!(fetches(&mut h).is_empty());
    h.tick(1_200, &PEERS);
    assert_eq!(fetches(&mut h).len(), 1, "retried after retry_after_ms");
    // A late answer to the abandoned request changes nothing.
    h.answered(f[0].id, answer(1, 5..8), &PEERS);
    assert!(h.take_actions().is_empty());
}

#[test]
fn overlapping_and_touching_ranges_merge_and_nothing_starts_without_peers() {
    let mut h = Healer::new(HealConfig::default());
    h.damaged(Index(10), Index(12), anchor(12, 1));
    h.damaged(Index(12), Index(15), anchor(20, 1));
    h.damaged(Index(11), Index(13), anchor(13, 1));
    h.damaged(Index(30), Index(31), anchor(31, 1));
    assert_eq!(h.damaged_entries(), 6);
    h.tick(0, &[]);
    assert!(h.take_actions().is_empty());
    h.tick(1, &PEERS);
    let f = fetches(&mut h);
    assert_eq!(
        (f[0].from, f[0].end, f[0].anchor),
        (Index(10), Index(15), Index(20))
    );
    // A range inside the one being healed is not queued again.
    h.damaged(Index(11), Index(12), anchor(12, 1));
    assert_eq!(h.damaged_entries(), 6);
}

#[test]
fn a_gap_or_a_wrong_start_in_an_answer_is_a_peer_failure() {
    let mut h = Healer::new(HealConfig::default());
    h.damaged(Index(5), Index(9), anchor(9, 1));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    let gap = Ok(FetchAnswer {
        anchor_term: Some(Term(1)),
        peer_commit: Index(0),
        entries: vec![e(5, 1), e(7, 1)],
    });
    h.answered(f[0].id, gap, &PEERS);
    let f2 = fetches(&mut h);
    assert_eq!(f2.len(), 1);
    assert_eq!(f2[0].from, Index(5), "nothing of the bad answer was kept");
    assert_eq!(h.stats().peer_failures, 1);
}

#[test]
fn a_failed_rebuild_puts_the_range_back() {
    let cfg = HealConfig {
        request_timeout_ms: 100,
        retry_after_ms: 10,
    };
    let mut h = Healer::new(cfg);
    h.damaged(Index(5), Index(6), anchor(6, 1));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    h.answered(f[0].id, answer(1, 5..6), &PEERS);
    assert_eq!(h.take_actions().len(), 1);
    h.rebuilt(Index(5), Err("disk full".into()));
    assert_eq!(h.damaged_entries(), 1);
    h.tick(20, &PEERS);
    assert_eq!(fetches(&mut h).len(), 1);
}

#[test]
fn a_committed_range_is_proven_by_both_commit_indexes_without_an_anchor() {
    let mut h = Healer::new(HealConfig::default());
    // Not committed here: needs an anchor, so it is not queued.
    h.damaged_committed(Index(5), Index(8));
    assert_eq!(h.damaged_entries(), 0);
    h.set_commit(Index(9));
    h.damaged_committed(Index(5), Index(8));
    h.tick(0, &PEERS);
    let f = fetches(&mut h);
    assert_eq!(f.len(), 1);
    // A peer that has not committed 7 yet proves nothing.
    let behind = Ok(FetchAnswer {
        anchor_term: None,
        peer_commit: Index(6),
        entries: (5..8).map(|i| e(i, 1)).collect(),
    });
    h.answered(f[0].id, behind, &PEERS);
    let f2 = fetches(&mut h);
    assert_eq!(f2.len(), 1, "the other peer is asked");
    assert_eq!(h.stats().peer_failures, 1);
    let committed = Ok(FetchAnswer {
        anchor_term: None,
        peer_commit: Index(12),
        entries: (5..8).map(|i| e(i, 1)).collect(),
    });
    h.answered(f2[0].id, committed, &PEERS);
    let acts = h.take_actions();
    assert!(
        matches!(acts.as_slice(), [Action::Rebuild { anchor: None, first, .. }] if *first == Index(5)),
        "{acts:?}"
    );
}
