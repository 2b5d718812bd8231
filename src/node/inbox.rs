//! The raft thread's bounded inbox: peer messages, client produces and control
//! requests in separate bounded queues behind one lock and one condvar, so the raft
//! thread waits on a single thing (with a timeout: its next tick) and a flood of
//! produces can never crowd out the Raft messages that keep the leader in office.
//!
//! * Peer messages beyond `peer_cap` messages or `peer_max_bytes` (approximate
//!   entry bytes) are dropped (Raft tolerates loss and resends).
//! * Produces beyond `produce_cap` are handed back to the caller, which answers
//!   `UNAVAILABLE`.
//! * Control requests (stop, leadership transfer, a peer connected) are few and always
//!   accepted; "a peer connected" notices (from the network) are dropped beyond
//!   [`MAX_QUEUED_CONTROLS`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::net::Responder;
use crate::raft::Message;
use crate::types::GroupId;

/// Bound on queued control requests for network-triggered ones.
pub const MAX_QUEUED_CONTROLS: usize = 256;

/// A client produce waiting for the raft thread.
pub(crate) struct ProduceJob {
    /// The group (topic partition) it appends to.
    pub group: GroupId,
    /// The values (one for Produce, n for ProduceBatch).
    pub values: crate::replica::Values,
    /// The log entry kind of every value (`DataV1` records, `Data` commands).
    pub kind: crate::types::RecordKind,
    /// How the answer is shaped.
    pub shape: ReplyShape,
    /// Where the answer goes.
    pub reply: Responder,
    /// Past this the produce is answered TIMEOUT.
    pub deadline: Instant,
}

/// How a produce's answer is shaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReplyShape {
    /// A Produce: the offset.
    Single,
    /// A ProduceBatch: first offset and count.
    Batch,
    /// A ProduceBatch v2: first offset, count and whether it was a duplicate.
    BatchV2,
    /// A catalogue command on the metadata group: answered with what applying it
    /// did.
    Admin(AdminKind),
}

/// Which catalogue request a metadata-group proposal answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminKind {
    Create,
    Alter,
    Delete,
}

/// Requests to the raft thread from the node's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// Hand leadership to the most caught-up voter (graceful shutdown).
    TransferLeadership,
    /// Exit the loop.
    Stop,
    /// A peer opened a new connection to us (it may have restarted).
    PeerConnected(crate::raft::NodeId),
}

#[derive(Default)]
pub(crate) struct Taken {
    pub peer: Vec<(GroupId, Message)>,
    /// Per group, the oldest produces (one proposal's worth).
    pub produce: Vec<(GroupId, Vec<ProduceJob>)>,
    pub control: Vec<Control>,
}

struct State {
    peer: VecDeque<(GroupId, Message)>,
    /// Queued produces per group (only non-empty queues are kept).
    produce: BTreeMap<GroupId, VecDeque<ProduceJob>>,
    /// Produces queued over all groups.
    produce_len: usize,
    control: VecDeque<Control>,
    peer_dropped: u64,
    /// Approximate bytes of queued peer messages.
    peer_bytes: usize,
    /// The raft thread is waiting on `ready`: only then does a push wake it (a
    /// condvar notify is a system call; most pushes arrive while it is busy).
    waiting: bool,
}

pub(crate) struct Inbox {
    state: Mutex<State>,
    ready: Condvar,
    peer_cap: usize,
    peer_max_bytes: usize,
    produce_cap: usize,
}

impl Inbox {
    pub(crate) fn new(peer_cap: usize, peer_max_bytes: usize, produce_cap: usize) -> Inbox {
        Inbox {
            state: Mutex::new(State {
                peer: VecDeque::new(),
                produce: BTreeMap::new(),
                produce_len: 0,
                control: VecDeque::new(),
                peer_dropped: 0,
                peer_bytes: 0,
                waiting: false,
            }),
            ready: Condvar::new(),
            peer_cap: peer_cap.max(1),
            peer_max_bytes: peer_max_bytes.max(1),
            produce_cap: produce_cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Releases the lock, then wakes the raft thread if it waits.
    fn wake(&self, s: MutexGuard<'_, State>) {
        let waiting = s.waiting;
        drop(s);
        if waiting {
            self.ready.notify_one();
        }
    }

    /// Queues a peer message, dropping it if the queue is full.
    pub(crate) fn push_peer(&self, group: GroupId, m: Message) {
        let bytes = message_bytes(&m);
        let mut s = self.lock();
        if s.peer.len() >= self.peer_cap
            || (s.peer_bytes > 0 && s.peer_bytes + bytes > self.peer_max_bytes)
        {
            s.peer_dropped += 1;
            if s.peer_dropped.is_power_of_two() {
                log::warn!(
                    "raft inbox full: {} peer message(s) dropped",
                    s.peer_dropped
                );
            }
            return;
        }
        s.peer_bytes += bytes;
        s.peer.push_back((group, m));
        self.wake(s);
    }

    /// Queues a produce; gives its reply handle back when the queue is full.
    pub(crate) fn push_produce(&self, job: ProduceJob) -> Result<(), Responder> {
        let mut s = self.lock();
        if s.produce_len >= self.produce_cap {
            return Err(job.reply);
        }
        s.produce_len += 1;
        s.produce.entry(job.group).or_default().push_back(job);
        self.wake(s);
        Ok(())
    }

    /// Queues a control request.
    pub(crate) fn push_control(&self, c: Control) {
        let mut s = self.lock();
        // Peer connections come from the network: bound them (the others are few).
        if matches!(c, Control::PeerConnected(_)) && s.control.len() >= MAX_QUEUED_CONTROLS {
            return;
        }
        s.control.push_back(c);
        self.wake(s);
    }

    /// Waits up to `timeout` for anything, then takes every peer message and
    /// control request and, for each group not in `busy`, the oldest produces up to
    /// `max_records` values / `max_bytes` payload bytes (at least one produce if any
    /// is queued). Produces of busy groups stay queued (and do not end the wait).
    pub(crate) fn take(
        &self,
        timeout: Duration,
        busy: &BTreeSet<GroupId>,
        max_records: usize,
        max_bytes: usize,
    ) -> Taken {
        let mut s = self.lock();
        let idle = |s: &State| {
            s.peer.is_empty() && s.control.is_empty() && s.produce.keys().all(|g| busy.contains(g))
        };
        if idle(&s) && !timeout.is_zero() {
            // Set under the lock the pushers take, so no push can miss the wait.
            s.waiting = true;
            s = crate::sync::wait_timeout(&self.ready, s, timeout).0;
            s.waiting = false;
        }
        s.peer_bytes = 0;
        let mut out = Taken {
            peer: s.peer.drain(..).collect(),
            control: s.control.drain(..).collect(),
            produce: Vec::new(),
        };
        let groups: Vec<GroupId> = s
            .produce
            .keys()
            .filter(|g| !busy.contains(g))
            .copied()
            .collect();
        for g in groups {
            let taken = take_batch(&mut s, g, max_records, max_bytes);
            out.produce.push((g, taken));
        }
        out
    }

    /// Takes the queued produces whose deadline passed before they were proposed.
    pub(crate) fn take_expired(&self, now: Instant) -> Vec<ProduceJob> {
        let mut s = self.lock();
        let mut expired = Vec::new();
        for queue in s.produce.values_mut() {
            if queue.iter().any(|j| j.deadline <= now) {
                let (gone, keep): (VecDeque<ProduceJob>, VecDeque<ProduceJob>) =
                    std::mem::take(queue)
                        .into_iter()
                        .partition(|j| j.deadline <= now);
                *queue = keep;
                expired.extend(gone);
            }
        }
        s.produce.retain(|_, q| !q.is_empty());
        s.produce_len -= expired.len();
        expired
    }

    /// Takes every queued produce (shutdown: they are answered UNAVAILABLE).
    pub(crate) fn drain_produces(&self) -> Vec<ProduceJob> {
        let mut s = self.lock();
        s.produce_len = 0;
        std::mem::take(&mut s.produce)
            .into_values()
            .flatten()
            .collect()
    }

    /// Takes every queued produce of one group (it was removed).
    pub(crate) fn drain_group(&self, group: GroupId) -> Vec<ProduceJob> {
        let mut s = self.lock();
        let jobs: Vec<ProduceJob> = s.produce.remove(&group).into_iter().flatten().collect();
        s.produce_len -= jobs.len();
        jobs
    }
}

/// The oldest produces of `group` up to the bounds (at least one).
fn take_batch(
    s: &mut State,
    group: GroupId,
    max_records: usize,
    max_bytes: usize,
) -> Vec<ProduceJob> {
    let mut out: Vec<ProduceJob> = Vec::new();
    let Some(queue) = s.produce.get_mut(&group) else {
        return out;
    };
    let (mut records, mut bytes) = (0usize, 0usize);
    while let Some(job) = queue.front() {
        let n = job.values.len();
        let b = job.values.bytes();
        if !out.is_empty() && (records + n > max_records || bytes + b > max_bytes) {
            break;
        }
        records += n;
        bytes += b;
        if let Some(job) = queue.pop_front() {
            out.push(job);
        }
    }
    if queue.is_empty() {
        s.produce.remove(&group);
    }
    s.produce_len -= out.len();
    out
}

/// Approximate memory of a message: its entries' payloads plus a fixed overhead.
pub(crate) fn message_bytes(m: &Message) -> usize {
    match &m.body {
        crate::raft::MessageBody::AppendEntries { entries, .. } => entries
            .iter()
            .map(|e| e.size_bytes() as usize)
            .sum::<usize>()
            .saturating_add(64),
        _ => 64,
    }
}
