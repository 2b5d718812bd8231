//! What the replica simulator checks after every step. Every message names the
//! property; a failure is reported with the seed and the trace.
//!
//! Raft (paper, Figure 3), over what the drivers actually wrote:
//! * ELECTION SAFETY: at most one leader per term.
//! * LOG MATCHING: two entries with the same (index, term) have the same content
//!   and the same predecessor term (by induction: identical prefixes). Entries count
//!   once they exist outside one page cache: durable on some disk, or sent in an
//!   AppendEntries (an append lost in a crash before either never existed).
//! * COMMITTED ENTRIES NEVER CHANGE: an index committed anywhere holds the same entry
//!   wherever it is committed, for the whole run, and no leader of a later term
//!   appends something else there.
//! * LEADER COMPLETENESS: a leader of term T holds every entry committed by a node
//!   that was in a term < T.
//!
//! The replica driver, on top:
//! * ACKNOWLEDGED PRODUCE: an OK answer names exactly the offsets where its values
//!   are committed; a "not written" answer (NotLeader, Unavailable) is never
//!   committed; no value is committed at two offsets; no request is answered twice.
//! * DURABLE MAJORITY: the highest committed entry is durably stored (on the
//!   simulated disk, not the page cache) by a majority of the voters of the latest
//!   committed configuration. Since log matching holds for durable logs too, that
//!   covers every committed entry, and so every acknowledged produce survives any
//!   crash the model allows.
//! * HIGH-WATER MARK: on one node and one process lifetime it only rises; the entry
//!   below it is durable on that node and on a majority (as above).
//! * INTACT COPY: every committed entry whose copy is damaged on some node is held
//!   intact (durable, readable, same term) by some node: the bound the fault
//!   injection keeps, which the system must not break (by cutting or overwriting
//!   intact copies because of damage elsewhere). Entries below some node's log
//!   start are exempt: retention removed them from the cluster.
//! * HEALED ENTRY: an entry the healer wrote equals the copy it replaces (same
//!   term, same bytes: the harness knows what the damaged copy held), equals the
//!   committed one where the node has it committed, and fits the log around it
//!   (log matching with its predecessor and successor).
//! * READY CONTRACT: a message taken from a driver depends only on durable state:
//!   the sender's durable term covers the message's term; a vote (and a candidate's
//!   own vote request) is durable before it leaves; an AppendEntries acknowledgement
//!   covers only entries durable on the sender.

use std::collections::HashMap;

use super::disk::{Image, SimDisk};
use crate::raft::{
    Entry, HardState, Index, Membership, Message, MessageBody, NodeId, RecordKind, Role, Term,
};
use crate::replica::{ProduceError, Produced};

/// Content identity of an entry.
pub(crate) fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Content {
    kind: RecordKind,
    hash: u64,
    /// The hash of the client's value a data entry holds.
    value: Option<u64>,
}

fn content(e: &Entry) -> Content {
    Content {
        kind: e.kind,
        hash: fnv(&e.data),
        value: client_value(e).map(fnv),
    }
}

/// The value a client produced that entry `e` holds: a `Data` entry's bytes, or
/// what precedes the producer batch header of an idempotent batch's first record
/// (the simulator's values are raw bytes, not v1 payloads).
pub(crate) fn client_value(e: &Entry) -> Option<&[u8]> {
    match e.kind {
        RecordKind::Data => Some(&e.data),
        RecordKind::DataV1Batch => {
            let len = e
                .data
                .len()
                .checked_sub(crate::records::PRODUCER_HEADER_BYTES)?;
            e.data.get(..len)
        }
        _ => None,
    }
}

#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    content: Content,
    /// Term of the node that first reported it committed.
    commit_term: Term,
}

/// What became of a client request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Acked(Index, Index),
    NotWritten,
    Maybe,
}

struct Request {
    values: Vec<Vec<u8>>,
    outcome: Outcome,
    /// An attempt of an idempotent producer's batch: other attempts of the same
    /// batch (same values) may be the one that wrote them, so "not written" is only
    /// about this attempt and is not checked against the values' commits.
    idempotent: bool,
}

/// Everything the checker learnt during one run.
pub(crate) struct Checker {
    leaders: HashMap<Term, NodeId>,
    entries: HashMap<(Index, Term), (Content, Term)>,
    committed: Vec<Option<Committed>>,
    max_committed: Index,
    /// Latest committed configuration (index, voters).
    config: (Index, Membership),
    /// Configurations appended anywhere (Raft uses the latest appended one, committed
    /// or not, for every commit decision).
    appended_configs: Vec<(Index, Membership)>,
    /// The effective configuration of every running node (a leader counts with the
    /// latest one in its log even before it is durable or sent).
    live_configs: Vec<Membership>,
    commit_seen: HashMap<NodeId, Index>,
    requests: HashMap<u64, Request>,
    /// Value hash → (request id) of every value ever proposed.
    value_owner: HashMap<u64, u64>,
    /// Value hash → committed index.
    value_at: HashMap<u64, Index>,
    /// Acks to verify once the commits of this step are registered.
    unverified: Vec<u64>,
    /// High-water marks of this step to verify: (node, hw, term below it).
    hw_events: Vec<(NodeId, Index)>,
    last_hw: HashMap<NodeId, Index>,
    /// Entries first registered as committed in this step: (index, term, commit term).
    fresh: Vec<(Index, Term, Term)>,
    pub(crate) acked: u64,
    pub(crate) commits: u64,
}

impl Checker {
    pub(crate) fn new(bootstrap: Membership) -> Checker {
        Checker {
            leaders: HashMap::new(),
            entries: HashMap::new(),
            committed: Vec::new(),
            max_committed: Index(0),
            config: (Index(0), bootstrap),
            appended_configs: Vec::new(),
            live_configs: Vec::new(),
            commit_seen: HashMap::new(),
            requests: HashMap::new(),
            value_owner: HashMap::new(),
            value_at: HashMap::new(),
            unverified: Vec::new(),
            hw_events: Vec::new(),
            last_hw: HashMap::new(),
            fresh: Vec::new(),
            acked: 0,
            commits: 0,
        }
    }

    // ------------------------------------------------------------ lifecycle

    /// A process started with this commit index.
    pub(crate) fn on_boot(&mut self, id: NodeId, commit: Index) {
        self.commit_seen.insert(id, commit);
        self.last_hw.remove(&id);
    }

    /// A client request with these values was handed to a node.
    pub(crate) fn on_request(&mut self, req: u64, values: &[Vec<u8>], idempotent: bool) {
        for v in values {
            self.value_owner.insert(fnv(v), req);
        }
        self.requests.insert(
            req,
            Request {
                values: values.to_vec(),
                outcome: Outcome::Pending,
                idempotent,
            },
        );
    }

    // ------------------------------------------------------------ log matching

    /// Node `id` appended `ents` after an entry of `prev_term`.
    pub(crate) fn on_append(
        &mut self,
        id: NodeId,
        prev_term: Term,
        ents: &[Entry],
    ) -> Result<(), String> {
        let mut prev = prev_term;
        for e in ents {
            let c = content(e);
            let new_entry = !self.entries.contains_key(&(e.index, e.term));
            let known = *self.entries.entry((e.index, e.term)).or_insert((c, prev));
            if known != (c, prev) {
                return Err(format!(
                    "LOG MATCHING violated: node {id} appends {}/{} ({c:?}, prev term {prev}); \
                     another log has {:?}",
                    e.index, e.term, known
                ));
            }
            if let Some(k) = self.committed_at(e.index) {
                if e.term >= k.commit_term && (e.term != k.term || c != k.content) {
                    return Err(format!(
                        "COMMITTED ENTRIES NEVER CHANGE violated: node {id} appends {}/{} over \
                         the entry committed there (term {}, known committed in term {})",
                        e.index, e.term, k.term, k.commit_term
                    ));
                }
            }
            if e.kind == RecordKind::Config && new_entry {
                if let Ok(m) = Membership::decode(&e.data) {
                    self.appended_configs.push((e.index, m));
                }
            }
            prev = e.term;
        }
        Ok(())
    }

    fn committed_at(&self, i: Index) -> Option<Committed> {
        let slot = i.0.checked_sub(1)? as usize;
        self.committed.get(slot).copied().flatten()
    }

    // ------------------------------------------------------------ raft state

    /// Leader bookkeeping for one running node (election safety, completeness).
    pub(crate) fn on_role(
        &mut self,
        id: NodeId,
        role: Role,
        term: Term,
        log: &Image,
    ) -> Result<(), String> {
        if role != Role::Leader {
            return Ok(());
        }
        match self.leaders.get(&term) {
            Some(l) if *l != id => Err(format!(
                "ELECTION SAFETY violated: nodes {l} and {id} both lead term {term}"
            )),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, id);
                self.check_completeness(id, term, log)
            }
        }
    }

    fn check_completeness(&self, id: NodeId, term: Term, log: &Image) -> Result<(), String> {
        for (slot, k) in self.committed.iter().enumerate() {
            let Some(k) = k else { continue };
            let i = Index(slot as u64 + 1);
            if k.commit_term < term && !log.holds(i, k.term) {
                return Err(format!(
                    "LEADER COMPLETENESS violated: node {id} leads term {term} without entry \
                     {i}/{} committed in term {}; it has {:?}",
                    k.term,
                    k.commit_term,
                    log.term(i)
                ));
            }
        }
        Ok(())
    }

    /// Node `id` (in `term`, log `log`) reports Raft commit index `commit`.
    pub(crate) fn on_commit(
        &mut self,
        id: NodeId,
        term: Term,
        commit: Index,
        log: &Image,
    ) -> Result<(), String> {
        let seen = self.commit_seen.get(&id).copied().unwrap_or(Index(0));
        if commit < seen {
            return Err(format!(
                "COMMIT INDEX decreased on node {id}: {seen} -> {commit}"
            ));
        }
        self.commit_seen.insert(id, commit);
        let mut i = (seen + 1).max(log.start.index + 1);
        while i <= commit {
            let Some(e) = log.entry(i) else { break };
            self.register(id, e, term)?;
            i = i + 1;
        }
        Ok(())
    }

    fn register(&mut self, id: NodeId, e: &Entry, node_term: Term) -> Result<(), String> {
        let slot = e.index.0 as usize - 1;
        if self.committed.len() <= slot {
            self.committed.resize(slot + 1, None);
        }
        let c = content(e);
        if let Some(k) = self.committed[slot] {
            if k.term != e.term || k.content != c {
                return Err(format!(
                    "COMMITTED ENTRIES NEVER CHANGE violated: node {id} commits {}/{} ({c:?}) \
                     where {}/{} ({:?}) was committed",
                    e.index, e.term, e.index, k.term, k.content
                ));
            }
            return Ok(());
        }
        self.committed[slot] = Some(Committed {
            term: e.term,
            content: c,
            commit_term: node_term,
        });
        self.commits += 1;
        self.fresh.push((e.index, e.term, node_term));
        self.max_committed = self.max_committed.max(e.index);
        self.on_new_commit(e)
    }

    fn on_new_commit(&mut self, e: &Entry) -> Result<(), String> {
        match e.kind {
            RecordKind::Config => {
                let m = Membership::decode(&e.data)
                    .map_err(|err| format!("committed config {} undecodable: {err}", e.index))?;
                if e.index > self.config.0 {
                    self.config = (e.index, m);
                }
            }
            RecordKind::Data | RecordKind::DataV1Batch => {
                let Some(h) = client_value(e).map(fnv) else {
                    return Err(format!("data entry {} is shorter than its header", e.index));
                };
                if let Some(j) = self.value_at.insert(h, e.index) {
                    if j != e.index {
                        return Err(format!(
                            "ACKNOWLEDGED PRODUCE violated: one value committed at {j} and {}",
                            e.index
                        ));
                    }
                }
                let owner = self.value_owner.get(&h).copied();
                if let Some(req) = owner {
                    let r = &self.requests[&req];
                    if r.outcome == Outcome::NotWritten && !r.idempotent {
                        return Err(format!(
                            "ACKNOWLEDGED PRODUCE violated: request {req} was answered \"not \
                             written\" but a value of it is committed at {}",
                            e.index
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Leaders elected before an entry was known committed must hold it too
    /// (completeness for entries registered during this step).
    pub(crate) fn check_fresh(&mut self, leaders: &[(NodeId, Term, &Image)]) -> Result<(), String> {
        for (i, term, commit_term) in std::mem::take(&mut self.fresh) {
            for (id, lt, log) in leaders {
                if *lt > commit_term && !log.holds(i, term) {
                    return Err(format!(
                        "LEADER COMPLETENESS violated: node {id} leads term {lt} without entry \
                         {i}/{term} committed in term {commit_term}; it has {:?}",
                        log.term(i)
                    ));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ produces

    /// Node `node` answered request `req`.
    pub(crate) fn on_complete(
        &mut self,
        node: NodeId,
        req: u64,
        result: &Result<Produced, ProduceError>,
    ) -> Result<(), String> {
        let Some(r) = self.requests.get_mut(&req) else {
            return Err(format!("node {node} answered unknown request {req}"));
        };
        if r.outcome != Outcome::Pending {
            return Err(format!(
                "ACKNOWLEDGED PRODUCE violated: request {req} answered twice (by node {node}: \
                 {result:?}; before: {:?})",
                r.outcome
            ));
        }
        r.outcome = match result {
            Ok(p) => {
                if p.last.0 + 1 - p.first.0 != r.values.len() as u64 {
                    return Err(format!(
                        "ACKNOWLEDGED PRODUCE violated: request {req} of {} values acked at {}..={}",
                        r.values.len(),
                        p.first,
                        p.last
                    ));
                }
                self.unverified.push(req);
                self.acked += 1;
                Outcome::Acked(p.first, p.last)
            }
            Err(ProduceError::NotLeader { .. })
            | Err(ProduceError::Unavailable(_))
            | Err(ProduceError::Producer(_)) => {
                let values = if r.idempotent { &[][..] } else { &r.values[..] };
                for v in values {
                    if let Some(i) = self.value_at.get(&fnv(v)) {
                        return Err(format!(
                            "ACKNOWLEDGED PRODUCE violated: request {req} answered \"not \
                             written\" ({result:?}) but it is committed at {i}"
                        ));
                    }
                }
                Outcome::NotWritten
            }
            Err(ProduceError::Indeterminate(_)) => Outcome::Maybe,
        };
        Ok(())
    }

    /// The harness answered a request it never proposed (queue full, expired).
    pub(crate) fn on_not_proposed(&mut self, req: u64) -> Result<(), String> {
        self.on_complete(
            NodeId(0),
            req,
            &Err(ProduceError::Unavailable("not proposed".into())),
        )
    }

    fn verify_acks(&mut self) -> Result<(), String> {
        for req in std::mem::take(&mut self.unverified) {
            let r = &self.requests[&req];
            let Outcome::Acked(first, _) = r.outcome else {
                continue;
            };
            for (k, v) in r.values.iter().enumerate() {
                let i = first + k as u64;
                let ok = self
                    .committed_at(i)
                    .is_some_and(|c| c.content.value == Some(fnv(v)));
                if !ok {
                    return Err(format!(
                        "ACKNOWLEDGED PRODUCE violated: request {req} acked at {i} but the entry \
                         committed there is {:?}",
                        self.committed_at(i)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Acked requests, for the end-of-run check of every node's log.
    pub(crate) fn acked_requests(&self) -> Vec<(u64, Index, Vec<Vec<u8>>)> {
        let mut v: Vec<_> = self
            .requests
            .iter()
            .filter_map(|(id, r)| match r.outcome {
                Outcome::Acked(first, _) => Some((*id, first, r.values.clone())),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(id, _, _)| *id);
        v
    }

    // ------------------------------------------------------------ healing

    /// Node `id` (Raft commit index `commit`) rebuilt entries in place; `around` is
    /// its log from the first rebuilt index through the entry after the last one
    /// (if any), `prev_term` the term before it, `written` the indexes it wrote.
    /// (A stale suffix above the node's commit index is healed as it was: it may
    /// differ from what is committed elsewhere.)
    pub(crate) fn on_healed(
        &mut self,
        id: NodeId,
        commit: Index,
        prev_term: Term,
        around: &[Entry],
        written: &[Index],
    ) -> Result<(), String> {
        let mine = around.iter().filter(|e| e.index <= commit);
        for e in mine.filter(|e| written.contains(&e.index)) {
            if let Some(k) = self.committed_at(e.index) {
                if k.term != e.term || k.content != content(e) {
                    return Err(format!(
                        "HEALED ENTRY violated: node {id} healed {}/{} ({:?}) where {}/{} \
                         ({:?}) is committed",
                        e.index,
                        e.term,
                        content(e),
                        e.index,
                        k.term,
                        k.content
                    ));
                }
            }
        }
        self.on_append(id, prev_term, around)
            .map_err(|e| format!("HEALED ENTRY violated: {e}"))
    }

    /// Every committed entry damaged somewhere is intact somewhere (see module docs).
    pub(crate) fn check_intact_copies(&self, disks: &[(NodeId, &SimDisk)]) -> Result<(), String> {
        // Entries some node's retention removed (or a log start installed from such
        // a node covers) are no longer kept by the cluster.
        let retained_after = disks.iter().map(|(_, d)| d.durable.start.index).max();
        for (id, d) in disks {
            let kept = d.durable.damaged.iter().copied();
            for i in kept.filter(|i| Some(*i) > retained_after) {
                let Some(k) = self.committed_at(i) else {
                    continue;
                };
                if d.durable.term(i) != Some(k.term) {
                    continue;
                }
                if !disks.iter().any(|(_, o)| o.durable.intact(i, k.term)) {
                    return Err(format!(
                        "INTACT COPY violated: committed entry {i}/{} is damaged on node {id} \
                         and intact on no node",
                        k.term
                    ));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ durability

    /// Node `id` published high-water mark `hw` (checked at the end of the step).
    pub(crate) fn on_high_water(&mut self, id: NodeId, hw: Index) -> Result<(), String> {
        let last = self.last_hw.get(&id).copied().unwrap_or(Index(0));
        if hw <= last {
            return Err(format!(
                "HIGH-WATER MARK violated: it went back on node {id}: {last} -> {hw}"
            ));
        }
        self.last_hw.insert(id, hw);
        self.hw_events.push((id, hw));
        Ok(())
    }

    /// End-of-step checks that need every disk: acks, high-water marks, durable
    /// majority.
    pub(crate) fn check_durability(&mut self, disks: &[(NodeId, &SimDisk)]) -> Result<(), String> {
        self.verify_acks()?;
        for (id, hw) in std::mem::take(&mut self.hw_events) {
            let i = hw - 1;
            let Some(k) = self.committed_at(i) else {
                if i.0 == 0 {
                    continue;
                }
                return Err(format!(
                    "HIGH-WATER MARK violated: node {id} publishes {hw} but {i} is not known committed"
                ));
            };
            let own = disks.iter().find(|(d, _)| *d == id).map(|(_, d)| *d);
            if own.is_some_and(|d| !d.durable.holds(i, k.term)) {
                return Err(format!(
                    "HIGH-WATER MARK violated: node {id} publishes {hw} but {i}/{} is not durable there",
                    k.term
                ));
            }
            self.check_majority(i, k.term, disks, "HIGH-WATER MARK")?;
        }
        if let Some(k) = self.committed_at(self.max_committed) {
            self.check_majority(self.max_committed, k.term, disks, "DURABLE MAJORITY")?;
        }
        Ok(())
    }

    /// The entry must be durable on a majority of the committed configuration or of
    /// a configuration appended after it (single-server changes: their majorities
    /// intersect, and a leader counts with the latest one it appended).
    fn check_majority(
        &self,
        i: Index,
        term: Term,
        disks: &[(NodeId, &SimDisk)],
        what: &str,
    ) -> Result<(), String> {
        let holders: Vec<NodeId> = disks
            .iter()
            .filter(|(_, d)| d.durable.holds(i, term))
            .map(|(id, _)| *id)
            .collect();
        let majority =
            |m: &Membership| holders.iter().filter(|h| m.voters.contains(h)).count() >= m.quorum();
        if self.configs_in_play().into_iter().any(majority) {
            return Ok(());
        }
        Err(format!(
            "{what} violated: committed entry {i}/{term} is durable only on {:?}; the \
             committed configuration (at {}) has voters {:?}",
            holders.iter().map(|h| h.0).collect::<Vec<_>>(),
            self.config.0,
            self.config.1.voters.iter().map(|v| v.0).collect::<Vec<_>>()
        ))
    }

    /// The committed configuration, every one appended after it, and every running
    /// node's effective one.
    pub(crate) fn configs_in_play(&self) -> Vec<&Membership> {
        let later = self
            .appended_configs
            .iter()
            .filter(|(i, _)| *i > self.config.0);
        std::iter::once(&self.config.1)
            .chain(later.map(|(_, m)| m))
            .chain(self.live_configs.iter())
            .collect()
    }

    /// The running nodes' effective configurations, this step.
    pub(crate) fn set_live_configs(&mut self, configs: Vec<Membership>) {
        self.live_configs = configs;
    }

    pub(crate) fn max_committed(&self) -> Index {
        self.max_committed
    }

    /// The term of committed entry `i`, if known.
    pub(crate) fn committed_term(&self, i: Index) -> Option<Term> {
        self.committed_at(i).map(|c| c.term)
    }
}

/// The Ready contract for a message node `m.from` hands to the transport now, given
/// its disk.
pub(crate) fn check_send(m: &Message, disk: &SimDisk) -> Result<(), String> {
    let hs: HardState = disk.hard_state;
    let ok = match &m.body {
        MessageBody::RequestVote { pre_vote: true, .. } => hs.term.0 + 1 >= m.term.0,
        MessageBody::RequestVoteResponse {
            pre_vote: true,
            granted: true,
        } => true,
        MessageBody::RequestVote {
            pre_vote: false, ..
        } => hs.term > m.term || (hs.term == m.term && hs.vote == Some(m.from)),
        MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        } => hs.term > m.term || (hs.term == m.term && hs.vote == Some(m.to)),
        MessageBody::AppendEntriesResponse {
            reject: false,
            index,
            ..
        } => {
            let term = disk.cache.term(*index);
            let durable = *index <= disk.durable.start.index
                || term.is_some_and(|t| disk.durable.holds(*index, t));
            hs.term >= m.term && durable
        }
        _ => hs.term >= m.term,
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "READY CONTRACT violated: node {} sends {} (term {}) to {} with durable hard state \
         {hs:?} and durable log through {} ({:?})",
        m.from,
        m.body.name(),
        m.term,
        m.to,
        disk.durable.last_index(),
        m.body
    ))
}
