//! Error codes a client sees, the error body of a response, and decoder errors.
//!
//! [`ErrorCode`] values are stable: a code is never renumbered or reused. A code added
//! later is only sent to requests whose `api_version` knows it (older versions get the
//! closest existing code), so a decoder may reject a code it does not know as
//! malformed. The one recorded exception (wire-spec §6): `STORAGE_FULL` (14) and
//! `CORRUPT_RECORD` (15) were added to version 0 itself; clients built before them
//! see an unknown code. The topic codes 16..=19 came with version 1
//! ([`ErrorCode::for_request`] maps them for version-0 requests). `wire-spec.md`
//! lists each code with when it is sent and what a client should do.

use std::fmt;

use crate::bytes::{ReadError, TrailingBytes};
use crate::types::{NodeId, Offset};

use super::messages::ApiKey;
use super::messages::ResponseFrame;

/// Stable `u16` error codes carried in every response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Success; the body is the API's response body. Never appears in an error body.
    None = 0,
    /// The offset is below the first retained offset or beyond the high-water mark.
    /// Do: restart from an offset in the range the message names.
    OffsetOutOfRange = 1,
    /// This node is not the leader. Do: retry at the leader hint (if known), else
    /// refresh `GetServers` and retry after a short back-off.
    NotLeader = 2,
    /// The frame's length exceeds the receiver's limit. The connection is closed.
    /// Do: send smaller frames (split batches).
    FrameTooLarge = 3,
    /// The frame could not be decoded. The connection is closed. Do: fix the client.
    Malformed = 4,
    /// Unknown `api_key`. The connection stays open. Do: do not use that API with
    /// this server.
    UnsupportedApi = 5,
    /// Known API, unknown `api_version`. The connection stays open. Do: retry with a
    /// version the message lists.
    UnsupportedVersion = 6,
    /// The request needs an authenticated identity (a client certificate).
    Unauthenticated = 7,
    /// The identity is not allowed to do this (ACL). Nothing was written.
    PermissionDenied = 8,
    /// The node cannot serve right now (no leader, no quorum, shutting down). Do:
    /// retry with back-off, possibly on another node.
    Unavailable = 9,
    /// The operation did not complete in time; a produce may or may not have been
    /// committed. Do: retry (duplicates are possible) or check with a consume.
    Timeout = 10,
    /// A bug or an I/O failure on the server. Do: report it; retry elsewhere.
    Internal = 11,
    /// A record value exceeds the server's maximum record size. Do not retry as is.
    RecordTooLarge = 12,
    /// The server is at its connection limit; it closes the connection after this
    /// response. Do: retry later with back-off.
    TooManyConnections = 13,
    /// The node's disk is full; nothing of the request was written and the node
    /// stays up. Do: retry later with back-off (or on another node); an operator
    /// must free space. (Added to version 0; see wire-spec §6.)
    StorageFull = 14,
    /// A record the read reached is damaged on this node's disk (its checksum or
    /// framing failed); records before it were returned, records after it can be
    /// read by starting after it. Do: read that offset from another replica, or
    /// retry later (a cluster node repairs it from its peers). (Added to version 0.)
    CorruptRecord = 15,
    /// The topic does not exist, or the partition does not exist in it. Do: check
    /// the name (Metadata lists topics); a topic just created may not be known to
    /// every node yet, so refresh Metadata before concluding. Version 1 and the
    /// topic APIs only.
    UnknownTopic = 16,
    /// CreateTopic for a name that is taken. Do: use the existing topic or another
    /// name. Topic APIs only.
    TopicExists = 17,
    /// The topic name is empty, too long or uses characters outside the allowed set
    /// (the message names the rule). Do: fix the name; do not retry as is.
    /// Version 1 and the topic APIs only.
    InvalidTopic = 18,
    /// A topic setting is out of range (partitions, replication, sizes, a partition
    /// decrease); the message names the field. Do: fix it; do not retry as is. Topic
    /// APIs only.
    InvalidConfig = 19,
    /// A record of format v1 does not decode, breaks a limit of `wire-spec.md` §13,
    /// or carries a timestamp or flag the topic refuses; the message says which
    /// record and what. Nothing of the batch was written. Do: fix the record; do
    /// not retry as is. ProduceBatch version 2 only.
    InvalidRecord = 25,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::None,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::NotLeader,
        ErrorCode::FrameTooLarge,
        ErrorCode::Malformed,
        ErrorCode::UnsupportedApi,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::RecordTooLarge,
        ErrorCode::TooManyConnections,
        ErrorCode::StorageFull,
        ErrorCode::CorruptRecord,
        ErrorCode::UnknownTopic,
        ErrorCode::TopicExists,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidRecord,
    ];

    /// Decodes a wire value; `None` for codes this version does not know.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        // By value, not position: the codes need not be contiguous.
        ErrorCode::ALL.iter().copied().find(|c| c.as_u16() == code)
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The stable upper-case name, as printed by the text protocol (`NOT_LEADER`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Malformed => "MALFORMED",
            ErrorCode::UnsupportedApi => "UNSUPPORTED_API",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::RecordTooLarge => "RECORD_TOO_LARGE",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::StorageFull => "STORAGE_FULL",
            ErrorCode::CorruptRecord => "CORRUPT_RECORD",
            ErrorCode::UnknownTopic => "UNKNOWN_TOPIC",
            ErrorCode::TopicExists => "TOPIC_EXISTS",
            ErrorCode::InvalidTopic => "INVALID_TOPIC",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidRecord => "INVALID_RECORD",
        }
    }

    /// True when the same request may succeed later or elsewhere without change.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::Unavailable
                | ErrorCode::Timeout
                | ErrorCode::TooManyConnections
                | ErrorCode::StorageFull
                | ErrorCode::CorruptRecord
        )
    }

    /// True for the codes added with version 1 (topics): 16..=19. They are only sent
    /// to requests that know them ([`ErrorCode::for_request`]).
    pub fn is_topic_code(self) -> bool {
        matches!(
            self,
            ErrorCode::UnknownTopic
                | ErrorCode::TopicExists
                | ErrorCode::InvalidTopic
                | ErrorCode::InvalidConfig
        )
    }

    /// The code to send to a request of `api` in `api_version` (wire-spec §6: a
    /// client never sees a code its request version predates). The topic codes go
    /// unchanged to version-1 requests and to the APIs added with topics; a
    /// version-0 request (which means the default topic) gets the closest older code
    /// instead: `UNAVAILABLE` for `UNKNOWN_TOPIC` (the default topic is not there
    /// yet, e.g. while the cluster starts), `INTERNAL` for the others (a version-0
    /// request cannot cause them, so sending one is a server bug).
    pub fn for_request(self, api: ApiKey, api_version: u16) -> ErrorCode {
        let knows_topic_codes = api_version >= 1
            || matches!(
                api,
                ApiKey::Metadata
                    | ApiKey::CreateTopic
                    | ApiKey::DeleteTopic
                    | ApiKey::DescribeTopic
                    | ApiKey::AlterTopic
                    | ApiKey::RaftBatch
            );
        match self {
            code if !code.is_topic_code() || knows_topic_codes => code,
            ErrorCode::UnknownTopic => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// True when the server closes the connection after sending this error (the byte
    /// stream can no longer be trusted, or the server refuses the connection).
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::FrameTooLarge | ErrorCode::Malformed | ErrorCode::TooManyConnections
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the leader is, sent with `NOT_LEADER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's id; `NodeId(0)` means unknown.
    pub leader_id: NodeId,
    /// The leader's client address (`host:port`); empty when unknown.
    pub addr: String,
}

impl LeaderHint {
    /// True when the hint names neither an id nor an address.
    pub fn is_unknown(&self) -> bool {
        self.leader_id == NodeId(0) && self.addr.is_empty()
    }
}

/// The body of a response whose error code is not `NONE`.
///
/// Wire: `u16 message_len | message (UTF-8)`, and for `NOT_LEADER` additionally
/// `u64 leader_id | u16 addr_len | addr`. A decoded `NOT_LEADER` body always has
/// `leader_hint: Some(..)` (possibly [`LeaderHint::is_unknown`]); every other code has
/// `None`. An encoder writes a zero hint for `NOT_LEADER` without one and ignores a
/// hint on any other code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    /// Never [`ErrorCode::None`].
    pub code: ErrorCode,
    /// Human-readable: says what happened and what to do. At most 65535 bytes.
    pub message: String,
    /// Only for [`ErrorCode::NotLeader`].
    pub leader_hint: Option<LeaderHint>,
}

impl ErrorBody {
    /// An error body in the normal form a decoder produces (a `NOT_LEADER` gets an
    /// unknown hint).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        let leader_hint = (code == ErrorCode::NotLeader).then(LeaderHint::default);
        ErrorBody {
            code,
            message: message.into(),
            leader_hint,
        }
    }

    /// A `NOT_LEADER` error pointing at the leader (`NodeId(0)` / `""` when unknown).
    pub fn not_leader(leader_id: NodeId, addr: impl Into<String>) -> ErrorBody {
        let addr = addr.into();
        let message = if leader_id == NodeId(0) && addr.is_empty() {
            "this node is not the leader and does not know who is; retry later".to_string()
        } else {
            format!("this node is not the leader; retry at node {leader_id} ({addr})")
        };
        ErrorBody {
            code: ErrorCode::NotLeader,
            message,
            leader_hint: Some(LeaderHint { leader_id, addr }),
        }
    }

    /// `OFFSET_OUT_OF_RANGE` with [`offset_out_of_range_message`].
    pub fn offset_out_of_range(offset: Offset, first: Offset, next: Offset) -> ErrorBody {
        ErrorBody::new(
            ErrorCode::OffsetOutOfRange,
            offset_out_of_range_message(offset, first, next),
        )
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// The message of every `OFFSET_OUT_OF_RANGE` error (the spec quotes it).
///
/// `first` is the first retained offset and `next` the next offset to be written
/// (the high-water mark); the log holds `[first, next)`.
///
/// `offset 5 is out of range: the log holds [0, 1)`, or for an empty log
/// `offset 5 is out of range: the log is empty, the next offset is 0`.
pub fn offset_out_of_range_message(offset: Offset, first: Offset, next: Offset) -> String {
    if first >= next {
        format!("offset {offset} is out of range: the log is empty, the next offset is {next}")
    } else {
        format!("offset {offset} is out of range: the log holds [{first}, {next})")
    }
}

/// Why a frame could not be decoded.
///
/// Only `Incomplete` means "wait for more bytes"; every other variant means the frame
/// is bad. [`DecodeError::error_response`] turns one into the response a server
/// sends (`MALFORMED` and `FRAME_TOO_LARGE` are followed by closing the connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an error: the buffer ends before the frame does; `needed` more bytes are
    /// required (at least).
    Incomplete {
        /// How many more bytes are needed.
        needed: usize,
    },
    /// The length prefix exceeds the limit; the stream cannot be resynchronised.
    FrameTooLarge {
        /// The length prefix (payload bytes).
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The frame is complete but its contents are wrong.
    Malformed {
        /// Known when the header was readable.
        correlation_id: Option<u32>,
        /// What was wrong, for the error message.
        reason: String,
    },
    /// The `api_key` is not one this decoder knows.
    UnsupportedApi {
        /// From the request header.
        correlation_id: u32,
        /// The unknown key.
        api_key: u16,
    },
    /// The API is known but not this version.
    UnsupportedVersion {
        /// From the request header.
        correlation_id: u32,
        /// The API asked for.
        api_key: ApiKey,
        /// The unknown version.
        version: u16,
    },
}

impl DecodeError {
    /// The error code a server answers with; `None` for `Incomplete`.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            DecodeError::Incomplete { .. } => None,
            DecodeError::FrameTooLarge { .. } => Some(ErrorCode::FrameTooLarge),
            DecodeError::Malformed { .. } => Some(ErrorCode::Malformed),
            DecodeError::UnsupportedApi { .. } => Some(ErrorCode::UnsupportedApi),
            DecodeError::UnsupportedVersion { .. } => Some(ErrorCode::UnsupportedVersion),
        }
    }

    /// The correlation id, when the header was readable.
    pub fn correlation_id(&self) -> Option<u32> {
        match self {
            DecodeError::Incomplete { .. } | DecodeError::FrameTooLarge { .. } => None,
            DecodeError::Malformed { correlation_id, .. } => *correlation_id,
            DecodeError::UnsupportedApi { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. } => Some(*correlation_id),
        }
    }

    /// The response a server sends for this error: correlation id 0 when the header
    /// was unreadable. `None` for `Incomplete`.
    pub fn error_response(&self) -> Option<ResponseFrame> {
        let code = self.error_code()?;
        Some(ResponseFrame {
            correlation_id: self.correlation_id().unwrap_or(0),
            result: Err(ErrorBody::new(code, self.to_string())),
        })
    }

    /// A `Malformed` error; [`DecodeError::in_frame`] adds the correlation id.
    pub(crate) fn malformed(reason: String) -> DecodeError {
        DecodeError::Malformed {
            correlation_id: None,
            reason,
        }
    }

    /// Attaches the frame's correlation id to a `Malformed` error raised after the
    /// header was read, so the server can still answer it.
    pub(crate) fn in_frame(self, correlation_id: u32) -> DecodeError {
        match self {
            DecodeError::Malformed {
                correlation_id: None,
                reason,
            } => DecodeError::Malformed {
                correlation_id: Some(correlation_id),
                reason,
            },
            other => other,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete { needed } => {
                write!(f, "incomplete frame: {needed} more bytes needed")
            }
            DecodeError::FrameTooLarge { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the limit of {max} bytes; send smaller frames"
            ),
            DecodeError::Malformed { reason, .. } => write!(f, "malformed frame: {reason}"),
            DecodeError::UnsupportedApi { api_key, .. } => write!(
                f,
                "api key {api_key} is not supported; this server speaks api keys {}",
                ApiKey::supported_list()
            ),
            DecodeError::UnsupportedVersion {
                api_key, version, ..
            } => write!(
                f,
                "{} version {version} is not supported; this server speaks versions 0..={}",
                api_key.name(),
                api_key.max_version()
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A field that runs past the end, a count too large or bad UTF-8: the frame is
/// complete (the reader only ever sees whole frames), so the frame lies.
impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> DecodeError {
        let reason = match e {
            ReadError::Truncated { .. } => format!("{e} in the frame"),
            ReadError::CountTooLarge { .. } | ReadError::BadUtf8 { .. } => e.to_string(),
        };
        DecodeError::malformed(reason)
    }
}

/// Version 0 bodies have an exact layout.
impl From<TrailingBytes> for DecodeError {
    fn from(e: TrailingBytes) -> DecodeError {
        DecodeError::malformed(format!("{e} body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable_and_round_trip() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert!(i < 20 || code.as_u16() >= 20, "{code} renumbered");
            assert!(i >= 20 || code.as_u16() as usize == i, "{code} renumbered");
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(*code));
        }
        assert_eq!(ErrorCode::from_u16(25), Some(ErrorCode::InvalidRecord));
        assert_eq!(ErrorCode::from_u16(26), None);
        assert_eq!(ErrorCode::from_u16(14), Some(ErrorCode::StorageFull));
        assert_eq!(ErrorCode::from_u16(15), Some(ErrorCode::CorruptRecord));
        assert_eq!(ErrorCode::from_u16(16), Some(ErrorCode::UnknownTopic));
        assert_eq!(ErrorCode::from_u16(19), Some(ErrorCode::InvalidConfig));
        assert_eq!(ErrorCode::from_u16(u16::MAX), None);
        assert_eq!(ErrorCode::NotLeader.to_string(), "NOT_LEADER");
        assert_eq!(ErrorCode::Malformed.as_u16(), 4);
    }

    #[test]
    fn topic_codes_are_named_and_only_sent_to_requests_that_know_them() {
        let names: Vec<&str> = ErrorCode::ALL[16..20].iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "UNKNOWN_TOPIC",
                "TOPIC_EXISTS",
                "INVALID_TOPIC",
                "INVALID_CONFIG"
            ]
        );
        for code in &ErrorCode::ALL[16..20] {
            assert!(code.is_topic_code() && !code.is_retriable() && !code.closes_connection());
            assert_eq!(code.for_request(ApiKey::Produce, 1), *code);
            assert_eq!(code.for_request(ApiKey::CreateTopic, 0), *code);
        }
        let v0 = |code: ErrorCode| code.for_request(ApiKey::Consume, 0);
        assert_eq!(v0(ErrorCode::UnknownTopic), ErrorCode::Unavailable);
        assert_eq!(v0(ErrorCode::InvalidTopic), ErrorCode::Internal);
        assert_eq!(v0(ErrorCode::NotLeader), ErrorCode::NotLeader);
        assert!(ErrorCode::ALL[..16].iter().all(|c| !c.is_topic_code()));
    }

    #[test]
    fn offset_out_of_range_message_is_the_spec_text() {
        assert_eq!(
            offset_out_of_range_message(Offset(5), Offset(0), Offset(1)),
            "offset 5 is out of range: the log holds [0, 1)"
        );
        assert_eq!(
            offset_out_of_range_message(Offset(5), Offset(0), Offset(0)),
            "offset 5 is out of range: the log is empty, the next offset is 0"
        );
    }

    #[test]
    fn decode_errors_map_to_responses() {
        assert_eq!(DecodeError::Incomplete { needed: 3 }.error_response(), None);
        let resp = DecodeError::UnsupportedApi {
            correlation_id: 7,
            api_key: 99,
        }
        .error_response()
        .unwrap();
        assert_eq!(resp.correlation_id, 7);
        let err = resp.result.unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedApi);
        assert!(err.message.contains("99"), "{}", err.message);
        let resp = DecodeError::FrameTooLarge { len: 9, max: 1 }
            .error_response()
            .unwrap();
        assert_eq!(resp.correlation_id, 0);
        assert_eq!(resp.result.unwrap_err().code, ErrorCode::FrameTooLarge);
    }
}
