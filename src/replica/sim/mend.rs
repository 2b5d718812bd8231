//! Storage faults and their healing in the simulator: the injection of damage
//! within the bound of the module docs, and each process's healer run as the node
//! runs it (`node::heal`): the REAL [`Healer`], fed by the damage its reads meet
//! and by a scrubber, its fetches sent as network messages and answered by the
//! peer from its own log, its rebuilds written in place.

use super::disk::SimDisk;
use super::{Cluster, Event, TICK_MS};
use crate::raft::{Entry, Index, Message, NodeId, Term};
use crate::replica::heal::{Action, Anchor, FetchAnswer, FetchRequest, HealConfig, Healer};

/// The simulated scrubber scans the process's log this often.
const SCRUB_MS: u64 = 50 * TICK_MS;
/// Most records in one fetch answer (a page).
const FETCH_PAGE_ENTRIES: usize = 4;
/// Healer timing, scaled to the simulator's short election timeout.
const HEAL_CFG: HealConfig = HealConfig {
    request_timeout_ms: 50 * TICK_MS,
    retry_after_ms: 30 * TICK_MS,
};
/// A lost write hits one of this many last durable entries of the crashed node.
const LOST_WRITE_WINDOW: u64 = 8;

/// What travels between simulated processes.
#[derive(Clone, Debug)]
pub(super) enum Packet {
    Raft(Message),
    /// A healer's request to `req.peer`.
    Fetch {
        from: NodeId,
        req: FetchRequest,
    },
    /// The peer's answer (`anchor` names the request's anchor index).
    Answer {
        from: NodeId,
        to: NodeId,
        id: u64,
        anchor: Index,
        answer: FetchAnswer,
    },
}

impl Packet {
    pub(super) fn from(&self) -> NodeId {
        match self {
            Packet::Raft(m) => m.from,
            Packet::Fetch { from, .. } | Packet::Answer { from, .. } => *from,
        }
    }

    pub(super) fn to(&self) -> NodeId {
        match self {
            Packet::Raft(m) => m.to,
            Packet::Fetch { req, .. } => req.peer,
            Packet::Answer { to, .. } => *to,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Packet::Raft(m) => m.body.name(),
            Packet::Fetch { .. } => "HealFetch",
            Packet::Answer { .. } => "HealAnswer",
        }
    }
}

/// A process's healer and what its runner keeps around it.
pub(super) struct Mender {
    healer: Healer,
    next_scrub_ms: u64,
}

impl Mender {
    pub(super) fn new(now_ms: u64) -> Mender {
        Mender {
            healer: Healer::new(HEAL_CFG),
            next_scrub_ms: now_ms + SCRUB_MS,
        }
    }
}

/// A storage fault the harness injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// One durable entry's copy flips bits.
    BitFlip,
    /// An append lands on another entry's slot: both read damaged.
    Misdirect,
    /// The next read of an entry fails once.
    ReadError,
}

impl Cluster {
    fn peers_of(&self, id: NodeId) -> Vec<NodeId> {
        self.ids().into_iter().filter(|p| *p != id).collect()
    }

    fn mender(&mut self, id: NodeId) -> Option<&mut Mender> {
        self.proc_mut(id).map(|p| &mut p.mender)
    }

    /// Every tick of a running process: damage its reads met (at once) and, every
    /// [`SCRUB_MS`], every damaged entry of its log go to the healer with the first
    /// intact entry after each range as anchor (none: the range waits for one);
    /// then the healer ticks and its actions run.
    pub(super) fn heal_tick(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now_ms;
        let peers = self.peers_of(id);
        let Some(n) = self.nodes.get(&id) else {
            return Ok(());
        };
        let (runs, reported) = {
            let mut d = n.disk.borrow_mut();
            (d.cache.damaged_runs(), d.take_reports())
        };
        let commit = self.driver(id).map_or(Index(0), |d| d.commit());
        let Some(m) = self.mender(id) else {
            return Ok(());
        };
        let scrub = m.next_scrub_ms <= now;
        if scrub {
            m.next_scrub_ms = now + SCRUB_MS;
        }
        m.healer.set_commit(commit);
        // A reported entry that is no longer damaged was a transient read error.
        for (first, end, anchor) in runs {
            let met = reported.range(first..end).next().is_some();
            match (scrub || met, anchor) {
                (true, Some(a)) => m.healer.damaged(first, end, a),
                // No intact entry after it: committed here, a peer's commit proves it.
                (true, None) if end - 1 <= commit => m.healer.damaged_committed(first, end),
                _ => {}
            }
        }
        m.healer.tick(now, &peers);
        self.heal_actions(id)
    }

    fn heal_actions(&mut self, id: NodeId) -> Result<(), String> {
        let Some(m) = self.mender(id) else {
            return Ok(());
        };
        for action in m.healer.take_actions() {
            match action {
                Action::Fetch(req) => {
                    let what = format!(
                        "asks {} for {}..{} (anchor {})",
                        req.peer, req.from, req.end, req.anchor
                    );
                    self.record(Event::Storage(id, what));
                    self.transmit(Packet::Fetch { from: id, req });
                }
                Action::Rebuild {
                    first,
                    end,
                    entries,
                    from_peer,
                    anchor,
                } => {
                    let result = self.rebuild(id, (first, end), &entries, from_peer, anchor)?;
                    if let Some(m) = self.mender(id) {
                        m.healer.rebuilt(first, result);
                    }
                }
            }
        }
        Ok(())
    }

    /// A healing packet reaches a running, unpaused receiver.
    pub(super) fn deliver_heal(&mut self, p: Packet) -> Result<(), String> {
        match p {
            Packet::Raft(_) => Ok(()),
            Packet::Fetch { from, req } => {
                let to = req.peer;
                let mut answer = self.nodes[&to]
                    .disk
                    .borrow()
                    .serve_fetch(&req, FETCH_PAGE_ENTRIES);
                // The peer's commit index (what its ReadEntries answer reports).
                answer.peer_commit = self.driver(to).map_or(Index(0), |d| d.commit());
                self.transmit(Packet::Answer {
                    from: to,
                    to: from,
                    id: req.id,
                    anchor: req.anchor,
                    answer,
                });
                Ok(())
            }
            Packet::Answer {
                from,
                to,
                id,
                anchor,
                mut answer,
            } => {
                if self.knobs.heal_without_anchor {
                    // Broken variant: whatever the peer holds, it "matches".
                    answer.anchor_term = self.nodes[&to].disk.borrow().cache.term(anchor);
                }
                let what = format!(
                    "answer {id} from {from}: term {:?} at anchor {anchor}, {} records",
                    answer.anchor_term,
                    answer.entries.len()
                );
                self.record(Event::Storage(to, what));
                let peers = self.peers_of(to);
                let Some(m) = self.mender(to) else {
                    return Ok(());
                };
                m.healer.answered(id, Ok(answer), &peers);
                self.heal_actions(to)
            }
        }
    }

    /// Writes healed records where this node's copies are still damaged; `Err` is a
    /// violation, `Ok(Err)` a rebuild the healer must retry.
    fn rebuild(
        &mut self,
        id: NodeId,
        (first, end): (Index, Index),
        entries: &[Entry],
        from_peer: NodeId,
        anchor: Option<Anchor>,
    ) -> Result<Result<(), String>, String> {
        let disk = std::rc::Rc::clone(&self.nodes[&id].disk);
        let mut d = disk.borrow_mut();
        // Raft may have replaced the range since the anchor was taken (a leader's
        // append over uncommitted entries): then the records prove nothing here. The
        // scrubber finds what is still damaged again, with a fresh anchor. (A range
        // proven by commitment has no anchor: committed entries never change.)
        if anchor.is_some_and(|a| !d.cache.intact(a.index, a.term)) {
            drop(d);
            let what = format!("drops the rebuild of {first}..{end}: its anchor changed");
            self.record(Event::Storage(id, what));
            return Ok(Ok(()));
        }
        let mut written = Vec::new();
        for e in entries {
            if d.heal_entry(e)? {
                written.push(e.index);
            }
        }
        let prev_term = d.cache.term(first - 1).unwrap_or(Term(0));
        let hi = Index(end.0.min(d.cache.last_index().0));
        let around: Vec<Entry> = (first.0..=hi.0)
            .filter_map(|i| d.cache.entry(Index(i)).cloned())
            .collect();
        drop(d);
        self.stats.healed += written.len() as u64;
        let what = format!("rebuilt {written:?} of {first}..{end} from node {from_peer}");
        self.record(Event::Storage(id, what));
        if !written.is_empty() {
            let commit = self
                .driver(id)
                .map_or(Index(0), |d| d.raft().commit_index());
            self.checker
                .on_healed(id, commit, prev_term, &around, &written)?;
        }
        Ok(Ok(()))
    }

    /// Retention catches up: a running node whose damaged entries lie below another
    /// node's log start (nobody keeps them to heal from) compacts past them, as its
    /// own retention would.
    pub(crate) fn retention_catch_up(&mut self) -> Result<(), String> {
        for id in self.ids() {
            let others = self.nodes.iter().filter(|(o, _)| **o != id);
            let Some(start) = others
                .map(|(_, n)| n.disk.borrow().durable.start.index)
                .max()
            else {
                continue;
            };
            let below = self.nodes[&id]
                .disk
                .borrow()
                .cache
                .damaged
                .first()
                .is_some_and(|i| *i <= start);
            if below && self.is_up(id) {
                self.compact(id, start + 1)?;
            }
        }
        Ok(())
    }

    /// True when no node's log holds a damaged entry.
    pub(super) fn all_healed(&self) -> bool {
        self.nodes
            .values()
            .all(|n| n.disk.borrow().damaged_count() == 0)
    }

    /// The lowest entry damaged on a node other than `id`: node `id` may be the
    /// one to heal it from, so retention there keeps it and what follows (the
    /// anchor), and its data dir is not wiped meanwhile. (In production retention
    /// removes a prefix on every node alike; a heal that races it is outside the
    /// model.)
    pub(super) fn damage_elsewhere(&self, id: NodeId) -> Option<Index> {
        let others = self.nodes.iter().filter(|(o, _)| **o != id);
        others
            .filter_map(|(_, n)| n.disk.borrow().durable.damaged.first().copied())
            .min()
    }

    /// The bound: node `id`'s durable copy of `i` may be damaged only if another
    /// node holds the same entry intact and durable.
    fn may_damage(&self, id: NodeId, i: Index) -> bool {
        let Some(t) = self.nodes[&id].disk.borrow().durable_data_entry(i) else {
            return false;
        };
        self.nodes
            .iter()
            .any(|(o, n)| *o != id && n.disk.borrow().durable.intact(i, t))
    }

    /// The healability bound (module docs): after damaging `extra` on node `id`,
    /// the run of damage around each index has an intact anchor after it and a
    /// helper (another node holding the run and the anchor intact), and every
    /// damaged run of another node that had a helper keeps one. Over durable
    /// images: a helper's page cache dies with it.
    fn healable_after(&self, id: NodeId, extra: &[Index]) -> bool {
        let disks: Vec<(NodeId, std::cell::Ref<'_, SimDisk>)> = self
            .nodes
            .iter()
            .map(|(o, n)| (*o, n.disk.borrow()))
            .collect();
        let bad = |x: NodeId, d: &SimDisk, i: Index, with_extra: bool| {
            d.durable.damaged.contains(&i) || (with_extra && x == id && extra.contains(&i))
        };
        // Node `x`'s run [f, e) with anchor e: some other node holds f..=e intact
        // and equal.
        let helped = |x: NodeId, d: &SimDisk, f: Index, e: Index, with_extra: bool| {
            let Some(anchor_term) = d.durable.term(e).filter(|_| !bad(x, d, e, with_extra)) else {
                return false;
            };
            disks.iter().any(|(y, o)| {
                *y != x
                    && o.durable.term(e) == Some(anchor_term)
                    && (f.0..=e.0).all(|i| {
                        let i = Index(i);
                        i > o.durable.start.index && !bad(*y, o, i, with_extra)
                    })
            })
        };
        let runs = |x: NodeId, d: &SimDisk, with_extra: bool| {
            let mut out: Vec<(Index, Index)> = Vec::new();
            let mut all: Vec<Index> = d.durable.damaged.iter().copied().collect();
            if with_extra && x == id {
                all.extend(extra.iter().copied());
                all.sort();
                all.dedup();
            }
            for i in all {
                match out.last_mut() {
                    Some((_, end)) if *end == i => *end = i + 1,
                    _ => out.push((i, i + 1)),
                }
            }
            out
        };
        disks.iter().all(|(x, d)| {
            runs(*x, d, true).into_iter().all(|(f, e)| {
                let touched = *x == id && extra.iter().any(|i| f <= *i && *i < e);
                if touched {
                    return helped(*x, d, f, e, true);
                }
                !helped(*x, d, f, e, false) || helped(*x, d, f, e, true)
            })
        })
    }

    fn damage(&mut self, id: NodeId, indexes: &[Index], what: &str) -> bool {
        if !indexes.iter().all(|i| self.may_damage(id, *i)) {
            return false;
        }
        if self.healable_bound && !self.healable_after(id, indexes) {
            return false;
        }
        for i in indexes {
            self.nodes[&id].disk.borrow_mut().damage(*i);
        }
        self.stats.damaged += indexes.len() as u64;
        let list: Vec<u64> = indexes.iter().map(|i| i.0).collect();
        self.record(Event::Storage(id, format!("{what}: {list:?} damaged")));
        true
    }

    /// A random durable entry of node `id` (None if its durable log is empty).
    fn random_durable(&mut self, id: NodeId, window: u64) -> Option<Index> {
        let (start, last) = {
            let d = self.nodes[&id].disk.borrow();
            (d.durable.start.index, d.durable.last_index())
        };
        let len = (last.0 - start.0).min(window);
        (len > 0).then(|| Index(last.0 - self.rng.below(len)))
    }

    /// Injects one storage fault on a random node, if the bound allows it.
    pub(crate) fn inject(&mut self, fault: Fault) -> bool {
        let ids = self.ids();
        let id = ids[self.rng.below(ids.len() as u64) as usize];
        let Some(i) = self.random_durable(id, u64::MAX) else {
            return false;
        };
        match fault {
            Fault::BitFlip => self.damage(id, &[i], "bit flip"),
            Fault::Misdirect => {
                let Some(j) = self.random_durable(id, u64::MAX).filter(|j| *j != i) else {
                    return false;
                };
                self.damage(id, &[i, j], "misdirected write")
            }
            Fault::ReadError => {
                if !self.is_up(id) {
                    return false;
                }
                self.nodes[&id].disk.borrow_mut().read_error(i);
                self.stats.read_errors += 1;
                self.record(Event::Storage(id, format!("read error armed at {i}")));
                true
            }
        }
    }

    /// After a crash: a recently synced write of node `id` turns out lost.
    pub(super) fn lose_synced_write(&mut self, id: NodeId) {
        if let Some(i) = self.random_durable(id, LOST_WRITE_WINDOW) {
            self.damage(id, &[i], "synced write lost");
        }
    }
}
