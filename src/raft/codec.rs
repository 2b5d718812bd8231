//! Compact binary encoding of Raft messages: the body of wire api key 32
//! (RaftMessage). std-only, big-endian, every length checked against the bytes that
//! remain before anything is allocated; decoding never panics and returns
//! [`CodecError`] for any malformed input. The whole buffer must be consumed.
//!
//! ```text
//! message   := type:u8 from:u64 to:u64 term:u64 body
//! type 1  RequestVote           flags:u8 (bit0 pre_vote, bit1 transfer)
//!                               last_index:u64 last_term:u64
//! type 2  RequestVoteResponse   flags:u8 (bit0 pre_vote, bit1 granted)
//! type 3  AppendEntries         prev_index:u64 prev_term:u64 commit:u64
//!                               count:u32 count × entry
//!                               (prev_term 0: the leader's copy of its committed
//!                               prev entry is damaged; `COMMITTED_PREV`)
//!         entry                 term:u64 kind:u8 (0 data, 1 no-op, 2 config)
//!                               len:u32 data:len bytes
//!                               (index is implicit: prev_index + 1 + position)
//! type 4  AppendEntriesResponse flags:u8 (bit0 reject) index:u64
//!                               hint_index:u64 hint_term:u64
//! type 5  Heartbeat             commit:u64
//! type 6  HeartbeatResponse     (empty)
//! type 7  InstallSnapshot       index:u64 term:u64 membership
//! type 8  TimeoutNow            (empty)
//! type 9  QuiesceHeartbeat      commit:u64 (a Heartbeat with `quiesce: true`: the
//!                               group is idle, the follower may stop its election
//!                               timer; a type of its own so type 5 is unchanged)
//! membership := voters:u32 voters × id:u64  learners:u32 learners × id:u64
//!               (ascending, no duplicates, no id in both, at most 1024 in total)
//! ```
//! Unknown types, unknown flag bits, unknown kinds and trailing bytes are errors.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::bytes::{ByteReader, ReadError, TrailingBytes};

use super::types::{
    Entry, Index, LogStart, Membership, Message, MessageBody, NodeId, Payload, RecordKind, Term,
    MAX_MEMBERS,
};

/// Bytes of an entry's header on the wire (term, kind, length).
pub const ENTRY_HEADER_BYTES: usize = 13;

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended early: `needed` more bytes at offset `at`.
    Truncated {
        /// Offset where reading failed.
        at: usize,
        /// Bytes that were needed there.
        needed: usize,
    },
    /// Unknown message type byte.
    UnknownType(u8),
    /// Flag bits that no version defines.
    BadFlags(u8),
    /// Unknown record kind byte.
    BadKind(u8),
    /// A count or length larger than the remaining input allows.
    BadLength(u64),
    /// Entry indexes would overflow u64.
    IndexOverflow,
    /// A membership list is unsorted, has duplicates, overlaps or is too long.
    BadMembership,
    /// Bytes left after the message.
    TrailingBytes(usize),
    /// A string is not UTF-8 (no message type carries a string yet; every error of
    /// the shared reader has a variant here).
    BadUtf8,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated { at, needed } => {
                write!(
                    f,
                    "truncated raft message: {needed} more bytes needed at {at}"
                )
            }
            CodecError::UnknownType(t) => write!(f, "unknown raft message type {t}"),
            CodecError::BadFlags(b) => write!(f, "unknown flag bits {b:#04x}"),
            CodecError::BadKind(k) => write!(f, "unknown record kind {k}"),
            CodecError::BadLength(n) => write!(f, "length {n} exceeds the message"),
            CodecError::IndexOverflow => f.write_str("entry index overflows"),
            CodecError::BadMembership => f.write_str("malformed membership list"),
            CodecError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            CodecError::BadUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<ReadError> for CodecError {
    fn from(e: ReadError) -> CodecError {
        match e {
            ReadError::Truncated {
                at, wanted, left, ..
            } => CodecError::Truncated {
                at,
                needed: wanted - left,
            },
            ReadError::CountTooLarge { count, .. } => CodecError::BadLength(count),
            ReadError::BadUtf8 { .. } => CodecError::BadUtf8,
        }
    }
}

impl From<TrailingBytes> for CodecError {
    fn from(e: TrailingBytes) -> CodecError {
        CodecError::TrailingBytes(e.bytes)
    }
}

const T_VOTE: u8 = 1;
const T_VOTE_RESP: u8 = 2;
const T_APPEND: u8 = 3;
const T_APPEND_RESP: u8 = 4;
const T_HEARTBEAT: u8 = 5;
const T_HEARTBEAT_RESP: u8 = 6;
const T_SNAPSHOT: u8 = 7;
const T_TIMEOUT_NOW: u8 = 8;
const T_QUIESCE: u8 = 9;

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn flags(bits: &[bool]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0u8, |acc, (i, b)| acc | (u8::from(*b) << i))
}

/// Appends the encoding of `m` to `out`.
pub fn encode_message(m: &Message, out: &mut Vec<u8>) {
    let ty = match m.body {
        MessageBody::RequestVote { .. } => T_VOTE,
        MessageBody::RequestVoteResponse { .. } => T_VOTE_RESP,
        MessageBody::AppendEntries { .. } => T_APPEND,
        MessageBody::AppendEntriesResponse { .. } => T_APPEND_RESP,
        MessageBody::Heartbeat { quiesce: true, .. } => T_QUIESCE,
        MessageBody::Heartbeat { .. } => T_HEARTBEAT,
        MessageBody::HeartbeatResponse => T_HEARTBEAT_RESP,
        MessageBody::InstallSnapshot { .. } => T_SNAPSHOT,
        MessageBody::TimeoutNow => T_TIMEOUT_NOW,
    };
    out.push(ty);
    put_u64(out, m.from.0);
    put_u64(out, m.to.0);
    put_u64(out, m.term.0);
    match &m.body {
        MessageBody::RequestVote {
            pre_vote,
            transfer,
            last_index,
            last_term,
        } => {
            out.push(flags(&[*pre_vote, *transfer]));
            put_u64(out, last_index.0);
            put_u64(out, last_term.0);
        }
        MessageBody::RequestVoteResponse { pre_vote, granted } => {
            out.push(flags(&[*pre_vote, *granted]));
        }
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            commit,
            entries,
        } => {
            put_u64(out, prev_index.0);
            put_u64(out, prev_term.0);
            put_u64(out, commit.0);
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                put_u64(out, e.term.0);
                out.push(e.kind as u8);
                out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
                out.extend_from_slice(&e.data);
            }
        }
        MessageBody::AppendEntriesResponse {
            reject,
            index,
            hint_index,
            hint_term,
        } => {
            out.push(flags(&[*reject]));
            put_u64(out, index.0);
            put_u64(out, hint_index.0);
            put_u64(out, hint_term.0);
        }
        MessageBody::Heartbeat { commit, .. } => put_u64(out, commit.0),
        MessageBody::HeartbeatResponse | MessageBody::TimeoutNow => {}
        MessageBody::InstallSnapshot { start } => {
            put_u64(out, start.index.0);
            put_u64(out, start.term.0);
            start.membership.encode(out);
        }
    }
}

/// `count:u32 count × entry`; entry indexes follow `prev_index`. `data` makes each
/// entry's payload from its bytes in the message.
fn read_entries(
    r: &mut ByteReader<'_>,
    prev_index: Index,
    data: &dyn Fn(&[u8]) -> Payload,
) -> Result<Vec<Entry>, CodecError> {
    let count = r.count_u32(ENTRY_HEADER_BYTES, "entry count")?;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let index = prev_index
            .0
            .checked_add(i as u64 + 1)
            .ok_or(CodecError::IndexOverflow)?;
        let term = Term(r.u64("entry term")?);
        let k = r.u8("entry kind")?;
        let kind = RecordKind::from_u8(k).ok_or(CodecError::BadKind(k))?;
        let bytes = r.bytes_u32("entry data")?;
        entries.push(Entry {
            index: Index(index),
            term,
            kind,
            data: data(bytes),
        });
    }
    Ok(entries)
}

/// Decodes one message occupying all of `buf` (entries copy their bytes out of it).
pub fn decode_message(buf: &[u8]) -> Result<Message, CodecError> {
    decode_with(buf, &|bytes: &[u8]| Payload::from(bytes))
}

/// Decodes one message occupying all of `buf`, which its entries share (one
/// allocation for a whole AppendEntries, not one per entry; `Payload::shared`).
pub fn decode_message_owned(buf: Vec<u8>) -> Result<Message, CodecError> {
    let buf = Arc::new(buf);
    let base = buf.as_ptr() as usize;
    decode_with(&buf, &|bytes: &[u8]| {
        // `bytes` is a sub-slice of `buf` (the reader only lends those).
        let start = (bytes.as_ptr() as usize).wrapping_sub(base);
        Payload::shared(&buf, start..start + bytes.len()).unwrap_or_else(|| Payload::from(bytes))
    })
}

fn decode_with(buf: &[u8], data: &dyn Fn(&[u8]) -> Payload) -> Result<Message, CodecError> {
    let mut r = ByteReader::new(buf);
    let ty = r.u8("type")?;
    let from = NodeId(r.u64("from")?);
    let to = NodeId(r.u64("to")?);
    let term = Term(r.u64("term")?);
    let body = match ty {
        T_VOTE => {
            let f = read_flags(&mut r, 2)?;
            MessageBody::RequestVote {
                pre_vote: f & 1 != 0,
                transfer: f & 2 != 0,
                last_index: Index(r.u64("last_index")?),
                last_term: Term(r.u64("last_term")?),
            }
        }
        T_VOTE_RESP => {
            let f = read_flags(&mut r, 2)?;
            MessageBody::RequestVoteResponse {
                pre_vote: f & 1 != 0,
                granted: f & 2 != 0,
            }
        }
        T_APPEND => {
            let prev_index = Index(r.u64("prev_index")?);
            let prev_term = Term(r.u64("prev_term")?);
            let commit = Index(r.u64("commit")?);
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                commit,
                entries: read_entries(&mut r, prev_index, data)?,
            }
        }
        T_APPEND_RESP => {
            let f = read_flags(&mut r, 1)?;
            MessageBody::AppendEntriesResponse {
                reject: f & 1 != 0,
                index: Index(r.u64("index")?),
                hint_index: Index(r.u64("hint_index")?),
                hint_term: Term(r.u64("hint_term")?),
            }
        }
        T_HEARTBEAT | T_QUIESCE => MessageBody::Heartbeat {
            commit: Index(r.u64("commit")?),
            quiesce: ty == T_QUIESCE,
        },
        T_HEARTBEAT_RESP => MessageBody::HeartbeatResponse,
        T_SNAPSHOT => MessageBody::InstallSnapshot {
            start: LogStart {
                index: Index(r.u64("index")?),
                term: Term(r.u64("term")?),
                membership: read_membership(&mut r)?,
            },
        },
        T_TIMEOUT_NOW => MessageBody::TimeoutNow,
        other => return Err(CodecError::UnknownType(other)),
    };
    r.finish("raft message")?;
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

fn read_flags(r: &mut ByteReader<'_>, defined_bits: u32) -> Result<u8, CodecError> {
    let f = r.u8("flags")?;
    if u32::from(f) >> defined_bits != 0 {
        return Err(CodecError::BadFlags(f));
    }
    Ok(f)
}

/// `count:u32 count × id:u64`, ascending, at most `limit` ids.
fn read_id_set(r: &mut ByteReader<'_>, limit: usize) -> Result<BTreeSet<NodeId>, CodecError> {
    let n = r.u32("member count")?;
    if n as usize > limit {
        return Err(CodecError::BadMembership);
    }
    let n = r.checked_count(u64::from(n), 8, "member count")?;
    let mut set = BTreeSet::new();
    let mut prev: Option<u64> = None;
    for _ in 0..n {
        let id = r.u64("member id")?;
        if prev.is_some_and(|p| p >= id) {
            return Err(CodecError::BadMembership);
        }
        prev = Some(id);
        set.insert(NodeId(id));
    }
    Ok(set)
}

fn read_membership(r: &mut ByteReader<'_>) -> Result<Membership, CodecError> {
    let voters = read_id_set(r, MAX_MEMBERS)?;
    let learners = read_id_set(r, MAX_MEMBERS - voters.len())?;
    if voters.iter().any(|v| learners.contains(v)) {
        return Err(CodecError::BadMembership);
    }
    Ok(Membership { voters, learners })
}

/// Decodes a membership occupying all of `buf` (see [`Membership::decode`]).
pub(crate) fn decode_membership(buf: &[u8]) -> Result<Membership, CodecError> {
    let mut r = ByteReader::new(buf);
    let m = read_membership(&mut r)?;
    r.finish("membership")?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::node::SplitMix64;

    fn random_message(rng: &mut SplitMix64) -> Message {
        let body = match rng.below(9) {
            0 => MessageBody::RequestVote {
                pre_vote: rng.chance(50),
                transfer: rng.chance(50),
                last_index: Index(rng.next_u64()),
                last_term: Term(rng.next_u64()),
            },
            1 => MessageBody::RequestVoteResponse {
                pre_vote: rng.chance(50),
                granted: rng.chance(50),
            },
            2 => {
                let prev = rng.below(1 << 40);
                let n = rng.below(5);
                MessageBody::AppendEntries {
                    prev_index: Index(prev),
                    prev_term: Term(rng.below(100)),
                    commit: Index(rng.below(1 << 40)),
                    entries: (0..n)
                        .map(|i| Entry {
                            index: Index(prev + 1 + i),
                            term: Term(rng.below(100)),
                            kind: RecordKind::from_u8(rng.below(3) as u8).unwrap(),
                            data: (0..rng.below(40))
                                .map(|_| rng.next_u64() as u8)
                                .collect::<Vec<u8>>()
                                .into(),
                        })
                        .collect(),
                }
            }
            3 => MessageBody::AppendEntriesResponse {
                reject: rng.chance(50),
                index: Index(rng.next_u64()),
                hint_index: Index(rng.next_u64()),
                hint_term: Term(rng.next_u64()),
            },
            4 | 8 => MessageBody::Heartbeat {
                commit: Index(rng.next_u64()),
                quiesce: rng.chance(50),
            },
            5 => MessageBody::HeartbeatResponse,
            6 => {
                let mut m = Membership::default();
                for _ in 0..rng.below(6) {
                    let id = NodeId(rng.below(20));
                    if rng.chance(50) {
                        m.learners.remove(&id);
                        m.voters.insert(id);
                    } else if !m.voters.contains(&id) {
                        m.learners.insert(id);
                    }
                }
                MessageBody::InstallSnapshot {
                    start: LogStart {
                        index: Index(rng.next_u64()),
                        term: Term(rng.next_u64()),
                        membership: m,
                    },
                }
            }
            7 => MessageBody::TimeoutNow,
            _ => MessageBody::HeartbeatResponse,
        };
        Message {
            from: NodeId(rng.next_u64()),
            to: NodeId(rng.next_u64()),
            term: Term(rng.next_u64()),
            body,
        }
    }

    #[test]
    fn every_message_type_round_trips() {
        let mut rng = SplitMix64::new(7);
        let mut seen = BTreeSet::new();
        for _ in 0..2000 {
            let m = random_message(&mut rng);
            let mut buf = Vec::new();
            encode_message(&m, &mut buf);
            seen.insert(buf[0]);
            assert_eq!(decode_message(&buf), Ok(m.clone()));
            // The owned decode (entries share the buffer) reads the same message.
            assert_eq!(decode_message_owned(buf), Ok(m));
        }
        assert_eq!(seen.len(), 9, "all message types generated");
    }

    #[test]
    fn quiesce_heartbeat_is_type_9_and_type_5_is_unchanged() {
        let hb = |quiesce| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::Heartbeat {
                commit: Index(7),
                quiesce,
            },
        };
        let mut plain = Vec::new();
        encode_message(&hb(false), &mut plain);
        let mut expected = vec![T_HEARTBEAT];
        for v in [1u64, 2, 3, 7] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(plain, expected, "type 5 as before quiescence");
        let mut quiet = Vec::new();
        encode_message(&hb(true), &mut quiet);
        assert_eq!(quiet[0], T_QUIESCE);
        assert_eq!(quiet[1..], plain[1..]);
        assert_eq!(decode_message(&quiet), Ok(hb(true)));
        assert_eq!(decode_message(&plain), Ok(hb(false)));
        quiet.push(0);
        assert_eq!(decode_message(&quiet), Err(CodecError::TrailingBytes(1)));
        assert_eq!(
            decode_message(&quiet[..20]),
            Err(CodecError::Truncated { at: 17, needed: 5 })
        );
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_a_typed_error() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..300 {
            let m = random_message(&mut rng);
            let mut buf = Vec::new();
            encode_message(&m, &mut buf);
            for cut in 0..buf.len() {
                assert!(
                    decode_message(&buf[..cut]).is_err(),
                    "cut at {cut} of {m:?}"
                );
            }
            buf.push(0);
            assert_eq!(decode_message(&buf), Err(CodecError::TrailingBytes(1)));
        }
    }

    #[test]
    fn hostile_lengths_and_bytes_are_refused_without_allocation() {
        // AppendEntries claiming 2^32-1 entries in a 40-byte message.
        let mut buf = vec![T_APPEND];
        buf.extend_from_slice(&[0; 24 + 24]);
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_message(&buf),
            Err(CodecError::BadLength(u32::MAX as u64))
        );
        // Entry with an absurd data length.
        let mut buf = vec![T_APPEND];
        buf.extend_from_slice(&[0; 48]);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&[0; 9]);
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_message(&buf),
            Err(CodecError::Truncated { .. })
        ));
        // Index overflow.
        let mut buf = vec![T_APPEND];
        buf.extend_from_slice(&[0; 24]);
        buf.extend_from_slice(&u64::MAX.to_be_bytes());
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&[0; 13]);
        assert_eq!(decode_message(&buf), Err(CodecError::IndexOverflow));
        // Unknown type, flags, kind.
        let mut buf = vec![99];
        buf.extend_from_slice(&[0; 24]);
        assert_eq!(decode_message(&buf), Err(CodecError::UnknownType(99)));
        let mut buf = vec![T_VOTE_RESP];
        buf.extend_from_slice(&[0; 24]);
        buf.push(0x80);
        assert_eq!(decode_message(&buf), Err(CodecError::BadFlags(0x80)));
        // Membership with a duplicate voter.
        let mut buf = vec![T_SNAPSHOT];
        buf.extend_from_slice(&[0; 40]);
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&5u64.to_be_bytes());
        buf.extend_from_slice(&5u64.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode_message(&buf), Err(CodecError::BadMembership));
    }

    #[test]
    fn random_bytes_never_panic_and_valid_decodes_re_encode_identically() {
        let mut rng = SplitMix64::new(11);
        let mut ok = 0;
        for _ in 0..20_000 {
            let len = rng.below(80) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if !buf.is_empty() {
                buf[0] = 1 + rng.below(9) as u8;
            }
            if let Ok(m) = decode_message(&buf) {
                ok += 1;
                let mut again = Vec::new();
                encode_message(&m, &mut again);
                assert_eq!(again, buf);
            }
        }
        assert!(ok > 0, "some random inputs decode");
    }

    #[test]
    fn membership_encoding_round_trips() {
        let m = Membership {
            voters: [1, 2, 3].into_iter().map(NodeId).collect(),
            learners: [9].into_iter().map(NodeId).collect(),
        };
        assert_eq!(Membership::decode(&m.to_bytes()), Ok(m.clone()));
        assert!(Membership::decode(&[0, 0, 0]).is_err());
        let mut trailing = m.to_bytes();
        trailing.push(0);
        assert_eq!(
            Membership::decode(&trailing),
            Err(CodecError::TrailingBytes(1))
        );
        // A voter count larger than the bytes present, under the member limit.
        assert_eq!(
            Membership::decode(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(CodecError::BadLength(3))
        );
    }
}
