//! Plain data types of the Raft core: log positions, entries, membership, hard state,
//! the log-start ("snapshot") record and the messages nodes exchange.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::{Add, Deref, Sub};
use std::sync::Arc;

use crate::types::Offset;
pub use crate::types::{NodeId, RecordKind, Term};

/// A position in the Raft log. Raft indexes ARE log offsets (DESIGN decision 1); this
/// newtype exists so Raft arithmetic (`index + 1`, `index - 1`) reads naturally, and it
/// converts losslessly to and from [`crate::types::Offset`]. Index 0 is "before the
/// first entry" (a fresh log's first entry has index 1). Subtraction saturates at 0 so
/// that arithmetic on hostile values never panics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Index(pub u64);

impl Add<u64> for Index {
    type Output = Index;
    fn add(self, rhs: u64) -> Index {
        Index(self.0.saturating_add(rhs))
    }
}

impl Sub<u64> for Index {
    type Output = Index;
    fn sub(self, rhs: u64) -> Index {
        Index(self.0.saturating_sub(rhs))
    }
}

impl From<Offset> for Index {
    fn from(o: Offset) -> Index {
        Index(o.0)
    }
}

impl From<Index> for Offset {
    fn from(i: Index) -> Offset {
        Offset(i.0)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One Raft log entry. `Config` entries carry an encoded [`Membership`]
/// (see [`Membership::encode`]); `NoOp` entries carry no data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log (== the record's offset).
    pub index: Index,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Data, leader no-op or membership configuration.
    pub kind: RecordKind,
    /// Payload (client bytes, or the encoded configuration).
    pub data: Payload,
}

impl Entry {
    /// Bytes this entry counts for against `max_size_per_msg`: payload plus its
    /// 13-byte header in the AppendEntries encoding.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 13
    }
}

/// An entry's bytes: immutable and shared, so the entry can sit in the unstable log,
/// in a Ready and in one AppendEntries per follower without copying the payload
/// (a clone is a reference-count increment). Made from a `Vec<u8>` without copying,
/// or as a range of a buffer many entries share ([`Payload::shared`]: the entries of
/// one received AppendEntries, or of one catch-up read), so a batch of entries costs
/// one allocation, not one per entry. A shared payload keeps its whole buffer alive.
#[derive(Clone, Default)]
pub struct Payload {
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Payload {
    /// `buf[range]`, sharing `buf`; `None` if the range is not within it.
    pub fn shared(buf: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Option<Payload> {
        buf.get(range.clone())?;
        Some(Payload {
            buf: Arc::clone(buf),
            start: range.start,
            end: range.end,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // In bounds: checked when made (`shared`) or the whole vector (`from`).
        self.buf.get(self.start..self.end).unwrap_or_default()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Payload {}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        let end = v.len();
        Payload {
            buf: Arc::new(v),
            start: 0,
            end,
        }
    }
}

/// Copies the bytes.
impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Payload {
        Payload::from(v.to_vec())
    }
}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Payload {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Vec<u8>> for Payload {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Payload {
    /// As the bytes (what `Vec<u8>` printed before), not as the `Arc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// A cluster configuration: who votes and who only receives the log.
/// A node is never both a voter and a learner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Nodes that vote and count toward commit quorums.
    pub voters: BTreeSet<NodeId>,
    /// Nodes that receive the log but neither vote nor count for commit.
    pub learners: BTreeSet<NodeId>,
}

/// Upper bound on members in one configuration (voters + learners); decoders refuse more.
pub const MAX_MEMBERS: usize = 1024;

impl Membership {
    /// A configuration with the given voters and no learners.
    pub fn with_voters(ids: impl IntoIterator<Item = u64>) -> Membership {
        Membership {
            voters: ids.into_iter().map(NodeId).collect(),
            learners: BTreeSet::new(),
        }
    }

    /// True if `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member (voters first, then learners), each once.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Number of voters that form a majority (0 voters → 1, so nothing ever commits).
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Encodes as: voter count u32, voter ids u64..., learner count u32, learner ids
    /// u64... (big-endian). This is the payload of `RecordKind::Config` entries.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.voters.len() as u32).to_be_bytes());
        for v in &self.voters {
            out.extend_from_slice(&v.0.to_be_bytes());
        }
        out.extend_from_slice(&(self.learners.len() as u32).to_be_bytes());
        for l in &self.learners {
            out.extend_from_slice(&l.0.to_be_bytes());
        }
    }

    /// The encoding as a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 8 * (self.voters.len() + self.learners.len()));
        self.encode(&mut v);
        v
    }

    /// Decodes an entire buffer produced by [`Membership::encode`]; trailing bytes,
    /// duplicates, overlap between voters and learners and more than [`MAX_MEMBERS`]
    /// members are errors.
    pub fn decode(buf: &[u8]) -> Result<Membership, crate::raft::codec::CodecError> {
        crate::raft::codec::decode_membership(buf)
    }
}

/// State that must be durable before messages depending on it are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: Term,
    /// Candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// Commit index known when written (may lag; never ahead of what a quorum holds).
    pub commit: Index,
}

/// The "snapshot": the log starts right after `index`. A log that was never compacted
/// has `index == 0`, `term == 0` and the bootstrap membership. The caller persists this
/// record whenever it compacts a log prefix or installs a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStart {
    /// Last index covered (compacted away); the first entry in the log is `index + 1`.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// Configuration in effect at `index`.
    pub membership: Membership,
}

/// Role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Polling voters with pre-votes before incrementing its term.
    PreCandidate,
    /// Campaigning in its current term.
    Candidate,
    /// Leader of its current term.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(s)
    }
}

/// A Raft RPC. `term` is the sender's term, except for pre-vote requests (the term the
/// sender would campaign in) and granted pre-vote responses (echo of that term).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// See the type docs.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// Body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (§5.2), or PreVote (Raft thesis §9.6) when `pre_vote`.
    RequestVote {
        /// A pre-vote: the receiver changes no state.
        pre_vote: bool,
        /// Sent because of TimeoutNow: receivers ignore their leader lease.
        transfer: bool,
        /// Index of the candidate's last entry.
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
    },
    /// Answer to RequestVote.
    RequestVoteResponse {
        /// Answer to a pre-vote.
        pre_vote: bool,
        /// Vote granted.
        granted: bool,
    },
    /// AppendEntries (§5.3). Entries are contiguous from `prev_index + 1`.
    AppendEntries {
        /// Index of the entry preceding `entries`.
        prev_index: Index,
        /// Term of that entry.
        prev_term: Term,
        /// Leader's commit index.
        commit: Index,
        /// New entries (may be empty: a probe).
        entries: Vec<Entry>,
    },
    /// Answer to AppendEntries or InstallSnapshot.
    AppendEntriesResponse {
        /// The follower's log did not contain `prev_index`/`prev_term`.
        reject: bool,
        /// On success: the follower's log matches the leader's through this index.
        /// On reject: the `prev_index` that was rejected.
        index: Index,
        /// On reject: a hint: the follower's log has no entry matching the leader's
        /// at indexes in (`hint_index`, `index`]; `hint_term` is the term at
        /// `hint_index` in the follower's log (fast back-tracking).
        hint_index: Index,
        /// See `hint_index`.
        hint_term: Term,
    },
    /// Leader heartbeat; `commit` is min(follower's match, leader commit).
    Heartbeat {
        /// Commit index the follower may adopt.
        commit: Index,
        /// The group is idle: the leader sends no more heartbeats until something
        /// happens, and the follower may stop its election timer (`quiesce`).
        quiesce: bool,
    },
    /// Answer to Heartbeat.
    HeartbeatResponse,
    /// The follower needs entries the leader no longer has: its log must restart
    /// after `start.index`.
    InstallSnapshot {
        /// The leader's log-start record.
        start: LogStart,
    },
    /// Leadership transfer: the recipient campaigns immediately.
    TimeoutNow,
}

impl MessageBody {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResp",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse { .. } => "AppendEntriesResp",
            MessageBody::Heartbeat { quiesce: true, .. } => "QuiesceHeartbeat",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}

/// A single-server membership change (Raft thesis §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a node as a learner (it receives the log, does not vote).
    AddLearner(NodeId),
    /// Add a node as a voter, or promote a learner to voter.
    AddVoter(NodeId),
    /// Remove a voter or learner (possibly the leader itself).
    Remove(NodeId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_shares_its_bytes_instead_of_copying_them() {
        let v = vec![7u8; 1024];
        let at = v.as_ptr();
        let p = Payload::from(v);
        assert_eq!(p.as_ptr(), at, "wrapping a Vec keeps its buffer");
        let q = p.clone();
        assert_eq!(q.as_ptr(), at, "a clone points at the same bytes");
        assert_eq!(q, p);
        assert_eq!(p.len(), 1024);
        assert_eq!(format!("{:?}", Payload::from(vec![1, 2])), "[1, 2]");
        assert_ne!(Payload::from(&b"ab"[..]), Payload::from(b"ac".to_vec()));
    }
}
