//! Safety checks run by the simulator after every step (Raft paper, Figure 3):
//!
//! * Election Safety: at most one leader per term.
//! * Log Matching: if two logs contain an entry with the same index and term, the
//!   entries are identical and so are all entries before them. Checked incrementally:
//!   every appended entry (index, term) is registered with its content and the term of
//!   its predecessor; a second entry with the same (index, term) must agree on both.
//!   By induction on the index that implies identical prefixes.
//! * Leader Completeness: an entry committed while the committing node was in term U
//!   is in the log of every leader of a term > U (checked when a leader is first seen).
//! * State Machine Safety: an index, once committed anywhere, holds the same entry on
//!   every node that commits it, forever; no node appends a different entry there in
//!   a term ≥ U.
//! * A node's commit index never decreases while it runs (a restart may lose an
//!   unpersisted commit index).
//! * Acknowledged proposals: an entry acknowledged to its client (the leader reported
//!   it committed and durable on itself) is committed at exactly that index, forever;
//!   no payload is acknowledged twice or at two indexes.
//! * The Ready contract ([`check_send`]): when a message is handed to the network, the
//!   sender's disk already holds the term (and, for votes, the vote) and the log
//!   entries the message vouches for.

use std::collections::{BTreeMap, HashMap};

use crate::raft::{
    Entry, Index, MemStorage, Message, MessageBody, NodeId, RaftNode, RecordKind, Role, Storage,
    Term,
};

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Identity of an entry's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Content {
    kind: RecordKind,
    hash: u64,
}

fn content(e: &Entry) -> Content {
    Content {
        kind: e.kind,
        hash: fnv(&e.data),
    }
}

/// What the checker knows about committed index `i`.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    content: Content,
    /// Term of the node that first reported it committed.
    commit_term: Term,
}

/// Accumulated knowledge across the whole run.
#[derive(Default)]
pub(crate) struct Checker {
    leaders: HashMap<u64, NodeId>,
    /// (index, term) → (content, previous entry's term).
    entries: HashMap<(u64, u64), (Content, Term)>,
    committed: Vec<Option<Committed>>,
    commit_seen: HashMap<NodeId, Index>,
    payload_counter: u64,
    /// Number of (index) commitments observed, for statistics.
    pub(crate) commits_observed: u64,
    /// Acknowledged index → content.
    acked: BTreeMap<u64, Content>,
    /// Acknowledged payload hash → index.
    acked_payloads: HashMap<u64, Index>,
    /// Number of acknowledged entries, for statistics.
    pub(crate) acks_observed: u64,
}

/// The Ready contract, checked when `r` hands `m` to the network: every message
/// carries a term the sender's disk holds; a vote request or grant leaves only once
/// the vote is on disk; an AppendEntries acknowledgement only once the acknowledged
/// entry is on disk. Pre-vote traffic changes no state and depends on none.
///
/// An acknowledgement of an older term (released after the sender moved on, which is
/// no different from a delayed message) only needs the disk to have held an entry of
/// at most that term at that index at some point: `ever_durable` maps each index to
/// the lowest term ever written there.
pub(crate) fn check_send(
    r: &RaftNode<MemStorage>,
    m: &Message,
    ever_durable: &BTreeMap<u64, u64>,
) -> Result<(), String> {
    let disk = r.storage();
    let hs = disk.hard_state();
    let fail = |what: &str| {
        Err(format!(
            "READY CONTRACT violated: node {} sends {} to {} in term {} {what} \
             (its disk has term {}, vote {:?})",
            r.id(),
            m.body.name(),
            m.to,
            m.term,
            hs.term,
            hs.vote.map(|v| v.0)
        ))
    };
    let term_ok = match m.body {
        MessageBody::RequestVoteResponse { pre_vote: true, .. } => true,
        MessageBody::RequestVote { pre_vote: true, .. } => hs.term.0 + 1 >= m.term.0,
        _ => hs.term >= m.term,
    };
    if !term_ok {
        return fail("before that term is on disk");
    }
    let same_term = hs.term == m.term;
    match m.body {
        MessageBody::RequestVote {
            pre_vote: false, ..
        } if same_term && hs.vote != Some(r.id()) => fail("before its vote for itself is on disk"),
        MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        } if same_term && hs.vote != Some(m.to) => fail("granting a vote not on disk"),
        MessageBody::AppendEntriesResponse {
            reject: false,
            index,
            ..
        } => {
            let on_disk = index <= disk.log_start().index
                || if m.term < r.term() {
                    ever_durable.get(&index.0).is_some_and(|t| *t <= m.term.0)
                } else {
                    match (disk.term(index), r.term_at(index)) {
                        (Ok(a), Ok(b)) => a == b,
                        (Ok(_), Err(_)) => true,
                        (Err(_), _) => false,
                    }
                };
            if on_disk {
                Ok(())
            } else {
                fail(&format!("acknowledging entry {index} before it is on disk"))
            }
        }
        _ => Ok(()),
    }
}

impl Checker {
    /// A fresh unique payload for a client proposal.
    pub(crate) fn next_payload(&mut self) -> Vec<u8> {
        self.payload_counter += 1;
        format!("v{}", self.payload_counter).into_bytes()
    }

    pub(crate) fn on_boot(&mut self, id: NodeId, commit: Index) {
        self.commit_seen.insert(id, commit);
    }

    /// The highest index known committed, with its term ((0, 0) if none).
    pub(crate) fn max_committed(&self) -> (Index, Term) {
        self.committed
            .iter()
            .enumerate()
            .rev()
            .find_map(|(slot, k)| k.map(|k| (Index(slot as u64 + 1), k.term)))
            .unwrap_or((Index(0), Term(0)))
    }

    /// The term of the entry known committed at `i`.
    pub(crate) fn committed_term(&self, i: Index) -> Option<Term> {
        let slot = (i.0 as usize).checked_sub(1)?;
        self.committed.get(slot).copied().flatten().map(|k| k.term)
    }

    /// Node `id` acknowledged entry `e` to its client.
    pub(crate) fn on_ack(&mut self, id: NodeId, e: &Entry) -> Result<(), String> {
        let c = content(e);
        if let Some(i0) = self.acked_payloads.get(&c.hash) {
            return Err(format!(
                "ACKNOWLEDGEMENT violated: node {id} acknowledges entry {} whose payload was \
                 already acknowledged at {i0}",
                e.index
            ));
        }
        if let Some(k) = self
            .committed
            .get(e.index.0 as usize - 1)
            .copied()
            .flatten()
        {
            if k.content != c || k.term != e.term {
                return Err(format!(
                    "ACKNOWLEDGEMENT violated: node {id} acknowledges {}/{} but another entry \
                     (term {}) is committed there",
                    e.index, e.term, k.term
                ));
            }
        }
        self.acked.insert(e.index.0, c);
        self.acked_payloads.insert(c.hash, e.index);
        self.acks_observed += 1;
        Ok(())
    }

    /// End of a run: `r` (which has committed the latest proposal) holds every
    /// acknowledged entry, committed, at its index.
    pub(crate) fn check_acked_final(&self, r: &RaftNode<MemStorage>) -> Result<(), String> {
        let start = r.log_start().index;
        for (&i, &c) in &self.acked {
            let i = Index(i);
            if i > r.commit_index() {
                return Err(format!(
                    "ACKNOWLEDGED ENTRY LOST: {i} is beyond node {}'s final commit index {}",
                    r.id(),
                    r.commit_index()
                ));
            }
            if i <= start {
                continue;
            }
            let e = r
                .entry_at(i)
                .map_err(|e| format!("node {}: entry {i} unreadable: {e}", r.id()))?;
            if content(&e) != c {
                return Err(format!(
                    "ACKNOWLEDGED ENTRY LOST: node {} holds a different entry at {i} at the end",
                    r.id()
                ));
            }
        }
        Ok(())
    }

    /// A Ready of `id` appends `ents`, whose predecessor has `prev_term`.
    pub(crate) fn on_append(
        &mut self,
        id: NodeId,
        prev_term: Term,
        ents: &[Entry],
    ) -> Result<(), String> {
        let mut prev = prev_term;
        for e in ents {
            let c = content(e);
            match self.entries.get(&(e.index.0, e.term.0)) {
                Some(&(c0, p0)) if c0 != c || p0 != prev => {
                    return Err(format!(
                        "LOG MATCHING violated: node {id} appends {}/{} ({:?}, prev term {prev}) \
                         but another log has {}/{} ({c0:?}, prev term {p0})",
                        e.index, e.term, c, e.index, e.term
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index.0, e.term.0), (c, prev));
                }
            }
            if let Some(Some(k)) = self.committed.get(e.index.0 as usize - 1) {
                if e.term >= k.commit_term && (e.term != k.term || c != k.content) {
                    return Err(format!(
                        "STATE MACHINE SAFETY violated: node {id} appends {}/{} over an entry \
                         committed in term {} with term {}",
                        e.index, e.term, k.commit_term, k.term
                    ));
                }
            }
            prev = e.term;
        }
        Ok(())
    }

    /// Per-step checks of one running node.
    pub(crate) fn check_node(&mut self, r: &RaftNode<MemStorage>) -> Result<(), String> {
        let id = r.id();
        if r.role() == Role::Leader {
            match self.leaders.get(&r.term().0) {
                Some(l) if *l != id => {
                    return Err(format!(
                        "ELECTION SAFETY violated: nodes {l} and {id} both lead term {}",
                        r.term()
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(r.term().0, id);
                    self.check_leader_completeness(r)?;
                }
            }
        }
        let commit = r.commit_index();
        let seen = self.commit_seen.get(&id).copied().unwrap_or(Index(0));
        if commit < seen {
            return Err(format!(
                "COMMIT INDEX decreased on node {id}: {seen} -> {commit}"
            ));
        }
        if commit > r.last_index() {
            return Err(format!(
                "node {id}: commit {commit} beyond last index {}",
                r.last_index()
            ));
        }
        if commit > seen {
            self.commit_seen.insert(id, commit);
            let start = r.log_start().index;
            let mut i = seen + 1;
            while i <= commit {
                if i < start {
                    i = start;
                    continue;
                }
                let (term, c) = if i == start {
                    // Only the term is known at the log start.
                    (r.log_start().term, None)
                } else {
                    let e = r
                        .entry_at(i)
                        .map_err(|e| format!("node {id}: committed entry {i} unreadable: {e}"))?;
                    (e.term, Some(content(&e)))
                };
                self.on_committed(id, i, term, c, r.term())?;
                i = i + 1;
            }
        }
        Ok(())
    }

    fn on_committed(
        &mut self,
        id: NodeId,
        i: Index,
        term: Term,
        c: Option<Content>,
        node_term: Term,
    ) -> Result<(), String> {
        if i.0 == 0 {
            return Ok(());
        }
        let slot = i.0 as usize - 1;
        if self.committed.len() <= slot {
            self.committed.resize(slot + 1, None);
        }
        match (&self.committed[slot], c) {
            (Some(k), _) if k.term != term => Err(format!(
                "STATE MACHINE SAFETY violated: node {id} commits {i} with term {term}, \
                 but it was committed with term {} (content {:?})",
                k.term, k.content
            )),
            (Some(k), Some(c)) if k.content != c => Err(format!(
                "STATE MACHINE SAFETY violated: node {id} commits different content at {i}"
            )),
            (Some(_), _) => Ok(()),
            (None, Some(c)) if self.acked.get(&i.0).is_some_and(|a| *a != c) => Err(format!(
                "ACKNOWLEDGED ENTRY LOST: node {id} commits a different entry at acknowledged \
                 index {i}"
            )),
            (None, Some(c)) => {
                self.commits_observed += 1;
                self.committed[slot] = Some(Committed {
                    term,
                    content: c,
                    commit_term: node_term,
                });
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    fn check_leader_completeness(&self, r: &RaftNode<MemStorage>) -> Result<(), String> {
        let first = r.first_index();
        for (slot, k) in self.committed.iter().enumerate() {
            let Some(k) = k else { continue };
            let i = Index(slot as u64 + 1);
            if i < first - 1 || k.commit_term >= r.term() {
                continue;
            }
            if r.term_at(i) != Ok(k.term) {
                return Err(format!(
                    "LEADER COMPLETENESS violated: node {} leads term {} without entry {i} \
                     (term {}) committed in term {}; it has {:?}",
                    r.id(),
                    r.term(),
                    k.term,
                    k.commit_term,
                    r.term_at(i)
                ));
            }
        }
        Ok(())
    }
}
