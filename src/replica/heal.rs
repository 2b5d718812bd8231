//! Healing this node's damaged log entries from its peers, as a pure state machine.
//!
//! A record that fails its checksum, or sits in a missing or unreadable segment, is
//! still an entry of the Raft log: it was durable here and may have counted toward a
//! commit. Cutting the log there, as a torn tail is cut, could destroy the last intact
//! copy of later entries; so the node keeps the entry (Raft's reads of it return
//! `StorageError::Damaged`, which holds back only what needs that entry), serves
//! nothing from it, and fetches a replacement from a peer. This is the shape of
//! protocol-aware recovery (Alagappan et al., "Protocol-Aware Recovery for
//! Consensus-Based Storage", FAST 2018): a damaged copy is repaired from the
//! replicas, never trusted, never silently dropped.
//!
//! # Which copy is right
//! Raft's log-matching property: if a peer's entry at index `a` has the same term as
//! this node's entry at `a`, the two logs are identical up to `a`. Each damaged range
//! `[first, end)` is fetched with an *anchor*, an intact local entry at `a >= end`;
//! a peer's records are used if its term at `a` equals ours (checked on every page).
//! Or by commitment: a range committed here and on the peer (both commit indexes
//! reach `end - 1`) is the same on both, since a committed entry is the same on
//! every node (Raft's state machine safety); this also heals a damaged tail that has
//! no intact entry after it ([`Healer::damaged_committed`]). A peer that proves
//! neither is skipped.
//!
//! # Inputs and actions
//! [`Healer::damaged`] queues a range (overlapping or touching ranges merge);
//! [`Healer::tick`] starts the next range (one at a time: healing is rare and must
//! not compete with replication), rotates peers and times requests out;
//! [`Healer::answered`] takes a peer's answer; [`Healer::rebuilt`] the result of
//! writing the healed records. Each queues [`Action`]s drained with
//! [`Healer::take_actions`]: `Fetch` (ask a peer for records `from..end` plus its
//! term at the anchor) and `Rebuild` (write these records in place of the damaged
//! ones). The runner (`node::heal`) executes them; nothing here does I/O or reads
//! a clock.
//!
//! # Bounds
//! At most [`MAX_QUEUED_RANGES`] ranges wait (more are dropped with a warning: the
//! scrubber finds them again); the records held are those of the one range being
//! healed, which the runner keeps within a segment.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::{Entry, Index, NodeId, Term};

/// Most damaged ranges queued at once.
pub const MAX_QUEUED_RANGES: usize = 1024;

/// Timing of the healer.
#[derive(Clone, Copy, Debug)]
pub struct HealConfig {
    /// A request unanswered this long counts as a failure of that peer.
    pub request_timeout_ms: u64,
    /// After every peer failed for a range, wait this long before trying again.
    pub retry_after_ms: u64,
}

impl Default for HealConfig {
    fn default() -> HealConfig {
        HealConfig {
            request_timeout_ms: 5_000,
            retry_after_ms: 2_000,
        }
    }
}

/// An intact local entry at or after a damaged range: a peer's records are trusted
/// only if its term at `index` is `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Index of the intact entry.
    pub index: Index,
    /// Its term.
    pub term: Term,
}

/// Ask `peer` for its records `from..end` (as many as fit one answer) and its term
/// at `anchor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// Matches the answer to the request.
    pub id: u64,
    /// Who to ask.
    pub peer: NodeId,
    /// First index wanted.
    pub from: Index,
    /// One past the last index wanted.
    pub end: Index,
    /// Index whose term the peer must report.
    pub anchor: Index,
}

/// A peer's answer to a [`FetchRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchAnswer {
    /// The peer's term at the anchor (`None` if it does not hold it intact).
    pub anchor_term: Option<Term>,
    /// The peer's commit index (`Index(0)` if unknown: no proof by commitment).
    pub peer_commit: Index,
    /// Its records from `from` on, contiguous (at least one if it has `from`).
    pub entries: Vec<Entry>,
}

/// What the runner must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this request; report the answer with [`Healer::answered`].
    Fetch(FetchRequest),
    /// Write `entries` (exactly `first..end`) in place of the damaged copies;
    /// report with [`Healer::rebuilt`].
    Rebuild {
        /// First healed index.
        first: Index,
        /// One past the last.
        end: Index,
        /// The verified records.
        entries: Vec<Entry>,
        /// The peer they came from (for the log line).
        from_peer: NodeId,
        /// The anchor they were checked against (`None`: proven by commitment): if
        /// this node's entry there changed meanwhile (Raft replaced an uncommitted
        /// suffix), they prove nothing and must not be written; report the range
        /// again instead.
        anchor: Option<Anchor>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Queued {
    end: Index,
    anchor: Option<Anchor>,
    not_before_ms: u64,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the answer to request `id`, sent at `sent_ms`.
    Fetching { id: u64, sent_ms: u64 },
    /// The records went to the runner; waiting for [`Healer::rebuilt`].
    Rebuilding,
}

#[derive(Debug)]
struct Current {
    first: Index,
    end: Index,
    anchor: Option<Anchor>,
    peer: NodeId,
    tried: BTreeSet<NodeId>,
    fetched: Vec<Entry>,
    phase: Phase,
}

impl Current {
    fn next_wanted(&self) -> Index {
        self.first + self.fetched.len() as u64
    }
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealStats {
    /// Ranges healed.
    pub ranges_healed: u64,
    /// Entries healed.
    pub entries_healed: u64,
    /// Peer answers not used (no anchor, other term, error, timeout, bad shape).
    pub peer_failures: u64,
    /// Rebuilds that failed.
    pub rebuild_failures: u64,
}

/// The healing state machine (see the module docs).
#[derive(Debug)]
pub struct Healer {
    cfg: HealConfig,
    queue: BTreeMap<Index, Queued>,
    current: Option<Current>,
    actions: Vec<Action>,
    next_id: u64,
    peer_cursor: usize,
    now_ms: u64,
    /// This node's commit index (for proof by commitment).
    commit: Index,
    stats: HealStats,
}

impl Healer {
    /// An idle healer.
    pub fn new(cfg: HealConfig) -> Healer {
        Healer {
            cfg,
            queue: BTreeMap::new(),
            current: None,
            actions: Vec::new(),
            next_id: 1,
            peer_cursor: 0,
            now_ms: 0,
            commit: Index(0),
            stats: HealStats::default(),
        }
    }

    /// This node's commit index: ranges at or below it may be proven by a peer's
    /// commit index instead of an anchor.
    pub fn set_commit(&mut self, commit: Index) {
        self.commit = self.commit.max(commit);
    }

    /// Entries `first..end` are damaged here and committed (`end - 1 <=` the commit
    /// index), with no intact entry after them to anchor to: a peer whose commit
    /// index covers them proves them.
    pub fn damaged_committed(&mut self, first: Index, end: Index) {
        if first >= end || end - 1 > self.commit {
            log::warn!("heal: {first}..{end} is not committed here; it needs an anchor");
            return;
        }
        self.queue_range(first, end, None);
    }

    /// Entries `first..end` are damaged here; `anchor` is an intact entry at or
    /// after `end`. Ranges already queued or being healed are merged, not repeated.
    pub fn damaged(&mut self, first: Index, end: Index, anchor: Anchor) {
        if first >= end || anchor.index < end {
            log::warn!("heal: ignoring malformed range {first}..{end} (anchor {anchor:?})");
            return;
        }
        self.queue_range(first, end, Some(anchor));
    }

    fn queue_range(&mut self, first: Index, end: Index, anchor: Option<Anchor>) {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.first <= first && end <= c.end)
        {
            return;
        }
        let (mut first, mut end, mut anchor) = (first, end, anchor);
        // Merge every queued range that overlaps or touches [first, end).
        let touching: Vec<Index> = self
            .queue
            .range(..=end)
            .filter(|(f, q)| **f <= end && q.end >= first)
            .map(|(f, _)| *f)
            .collect();
        for f in touching {
            if let Some(q) = self.queue.remove(&f) {
                first = first.min(f);
                if q.end > end {
                    end = q.end;
                    anchor = q.anchor;
                }
            }
        }
        if self.queue.len() >= MAX_QUEUED_RANGES {
            log::warn!("heal: {MAX_QUEUED_RANGES} ranges queued; dropping {first}..{end} for now");
            return;
        }
        self.queue.insert(
            first,
            Queued {
                end,
                anchor,
                not_before_ms: 0,
            },
        );
    }

    /// Time passes; `peers` are the nodes that may hold intact copies (this node
    /// excluded). Starts the next range, and fails a request that timed out.
    pub fn tick(&mut self, now_ms: u64, peers: &[NodeId]) {
        self.now_ms = now_ms;
        if let Some(Phase::Fetching { sent_ms, .. }) = self.current.as_ref().map(|c| &c.phase) {
            if now_ms.saturating_sub(*sent_ms) >= self.cfg.request_timeout_ms {
                log::warn!("heal: no answer from a peer in time; trying another");
                self.peer_failed(peers);
            }
        }
        if self.current.is_none() {
            self.start_next(peers);
        }
    }

    /// A peer answered request `id` (or the request failed with `Err`).
    pub fn answered(&mut self, id: u64, answer: Result<FetchAnswer, String>, peers: &[NodeId]) {
        let Some(c) = &mut self.current else {
            return;
        };
        if !matches!(c.phase, Phase::Fetching { id: want, .. } if want == id) {
            return; // late answer to an abandoned request
        }
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                log::warn!(
                    "heal: peer {} could not serve {}..{}: {e}",
                    c.peer,
                    c.first,
                    c.end
                );
                return self.peer_failed(peers);
            }
        };
        let by_anchor = c.anchor.is_some_and(|a| answer.anchor_term == Some(a.term));
        let by_commit = c.end - 1 <= self.commit.min(answer.peer_commit);
        if !by_anchor && !by_commit {
            log::warn!(
                "heal: peer {} proves neither {}..{} (its term at the anchor {:?} where this \
                 node has {:?}; its commit index {}, ours {}); not using it",
                c.peer,
                c.first,
                c.end,
                answer.anchor_term,
                c.anchor,
                answer.peer_commit,
                self.commit
            );
            return self.peer_failed(peers);
        }
        let want = c.next_wanted();
        let usable = answer
            .entries
            .iter()
            .take_while(|e| e.index < c.end)
            .enumerate()
            .all(|(i, e)| e.index == want + i as u64);
        if answer.entries.first().map(|e| e.index) != Some(want) || !usable {
            log::warn!(
                "heal: peer {} answered records not starting at {want}",
                c.peer
            );
            return self.peer_failed(peers);
        }
        let end = c.end;
        c.fetched
            .extend(answer.entries.into_iter().take_while(|e| e.index < end));
        if c.next_wanted() < c.end {
            let peer = c.peer;
            return self.send_fetch(peer);
        }
        c.phase = Phase::Rebuilding;
        let entries = std::mem::take(&mut c.fetched);
        self.actions.push(Action::Rebuild {
            first: c.first,
            end: c.end,
            entries,
            from_peer: c.peer,
            anchor: c.anchor,
        });
    }

    /// The runner wrote (or failed to write) the records of the range starting at
    /// `first`.
    pub fn rebuilt(&mut self, first: Index, result: Result<(), String>) {
        let Some(c) = self.current.take_if(|c| c.first == first) else {
            return;
        };
        match result {
            Ok(()) => {
                self.stats.ranges_healed += 1;
                self.stats.entries_healed += c.end.0 - c.first.0;
            }
            Err(e) => {
                log::error!(
                    "heal: writing healed entries {}..{} failed: {e}",
                    c.first,
                    c.end
                );
                self.stats.rebuild_failures += 1;
                self.requeue(&c);
            }
        }
    }

    /// Drains the actions queued since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Damaged entries known and not yet healed (queued or in progress).
    pub fn damaged_entries(&self) -> u64 {
        let queued: u64 = self.queue.iter().map(|(f, q)| q.end.0 - f.0).sum();
        queued + self.current.as_ref().map_or(0, |c| c.end.0 - c.first.0)
    }

    /// Counters.
    pub fn stats(&self) -> HealStats {
        self.stats
    }

    fn start_next(&mut self, peers: &[NodeId]) {
        let now = self.now_ms;
        let Some((&first, &q)) = self.queue.iter().find(|(_, q)| q.not_before_ms <= now) else {
            return;
        };
        let Some(peer) = self.pick_peer(peers, &BTreeSet::new()) else {
            return; // nobody to ask yet; stays queued
        };
        self.queue.remove(&first);
        self.current = Some(Current {
            first,
            end: q.end,
            anchor: q.anchor,
            peer,
            tried: BTreeSet::new(),
            fetched: Vec::new(),
            phase: Phase::Rebuilding, // replaced by send_fetch
        });
        self.send_fetch(peer);
    }

    fn send_fetch(&mut self, peer: NodeId) {
        let id = self.next_id;
        self.next_id += 1;
        let Some(c) = &mut self.current else {
            return;
        };
        c.peer = peer;
        c.phase = Phase::Fetching {
            id,
            sent_ms: self.now_ms,
        };
        self.actions.push(Action::Fetch(FetchRequest {
            id,
            peer,
            from: c.next_wanted(),
            end: c.end,
            // Without an anchor any index serves: the answer is proven by commitment.
            anchor: c.anchor.map_or(c.end - 1, |a| a.index),
        }));
    }

    /// The current peer cannot help: try the next one not yet tried for this
    /// range, or put the range back to wait `retry_after_ms`.
    fn peer_failed(&mut self, peers: &[NodeId]) {
        self.stats.peer_failures += 1;
        let Some(c) = &mut self.current else {
            return;
        };
        c.tried.insert(c.peer);
        // Records of an unusable peer are not mixed with another's.
        c.fetched.clear();
        let tried = c.tried.clone();
        match self.pick_peer(peers, &tried) {
            Some(peer) => self.send_fetch(peer),
            None => {
                if let Some(c) = self.current.take() {
                    log::warn!(
                        "heal: no peer could supply entries {}..{}; retrying in {} ms",
                        c.first,
                        c.end,
                        self.cfg.retry_after_ms
                    );
                    self.requeue(&c);
                }
            }
        }
    }

    fn requeue(&mut self, c: &Current) {
        self.queue.insert(
            c.first,
            Queued {
                end: c.end,
                anchor: c.anchor,
                not_before_ms: self.now_ms + self.cfg.retry_after_ms,
            },
        );
    }

    fn pick_peer(&mut self, peers: &[NodeId], tried: &BTreeSet<NodeId>) -> Option<NodeId> {
        let candidates: Vec<NodeId> = peers
            .iter()
            .copied()
            .filter(|p| !tried.contains(p))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        self.peer_cursor = self.peer_cursor.wrapping_add(1);
        Some(candidates[self.peer_cursor % candidates.len()])
    }
}

#[cfg(test)]
mod tests;
