//! Retry decisions and bounded exponential back-off, without clocks or sockets.
//!
//! [`classify`] maps a failed call to what the cluster client should do next
//! ([`Next`]); [`Backoff`] says how long to wait before the next attempt, or that the
//! budget is spent. Both are pure: elapsed time and jitter are inputs, so the tests
//! below drive them deterministically.
//!
//! Budget contract: at most [`RetryPolicy::max_attempts`] attempts in total, and no
//! attempt *starts* after [`RetryPolicy::max_total`] has elapsed since the first one.
//! A call therefore takes at most `max_total` plus one request timeout.

use std::time::Duration;

use super::super::ClientError;
use crate::wire::ErrorCode;

/// How hard the cluster client retries one logical call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles with each further attempt.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    /// 40 attempts, 20 ms doubling to 1 s, within 15 s: enough to ride out a leader
    /// election (about one election timeout, 1–2 s with production settings).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 40,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            max_total: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: one attempt.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// `NOT_LEADER` naming the leader's address: try there next, without waiting
    /// (unless that is where we just were).
    FollowLeader(String),
    /// A transient failure (no leader, no quorum, overloaded, connection lost or no
    /// answer in time): refresh the member list, back off, try again. `drop_conn`
    /// says the connection can no longer be trusted.
    Retry {
        /// Close the connection the attempt used.
        drop_conn: bool,
    },
    /// A consume/fetch answered `OFFSET_OUT_OF_RANGE` by a node that may lag:
    /// ask the leader before believing it.
    AskLeader,
    /// `UNKNOWN_TOPIC` while the topic's metadata came from the cache: ask for it
    /// again (once) before believing it; the topic may have been created or grown
    /// since, or the node that answered may not know it yet.
    RefreshMetadata,
    /// Not worth retrying (a client bug, a permission, a record too large, an offset
    /// outside the log as the leader sees it).
    Fail,
}

/// Decides what follows a failed attempt. `from_leader` tells whether the node that
/// answered is the one the client believes to be the leader (an out-of-range read
/// from a follower is retried on the leader; from the leader it is final).
///
/// Retrying after a connection error or a timeout can write a produce twice (it may
/// have been committed before the answer was lost): the cluster client is
/// at-least-once for produces, like the protocol's `TIMEOUT` advice.
pub fn classify(err: &ClientError, from_leader: bool) -> Next {
    match err {
        ClientError::Io(e) if is_permanent(e) => Next::Fail,
        ClientError::Io(_) | ClientError::Timeout => Next::Retry { drop_conn: true },
        ClientError::Protocol(_) => Next::Fail,
        ClientError::Server {
            code, leader_hint, ..
        } => match code {
            ErrorCode::NotLeader => match leader_hint {
                Some(h) if !h.addr.is_empty() => Next::FollowLeader(h.addr.clone()),
                _ => Next::Retry { drop_conn: false },
            },
            ErrorCode::Unavailable | ErrorCode::Timeout => Next::Retry { drop_conn: false },
            // The server closes the connection after these.
            ErrorCode::TooManyConnections => Next::Retry { drop_conn: true },
            ErrorCode::OffsetOutOfRange if !from_leader => Next::AskLeader,
            // The record is damaged on the node that answered: another replica
            // serves it, or this one once it has healed its copy from a peer.
            ErrorCode::CorruptRecord => Next::Retry { drop_conn: false },
            _ => Next::Fail,
        },
    }
}

/// [`classify`] for a request addressed to a topic partition: an `UNKNOWN_TOPIC`
/// is [`Next::RefreshMetadata`] unless the metadata was already asked again during
/// this call (`refreshed`), in which case it is final.
pub fn classify_topic(err: &ClientError, from_leader: bool, refreshed: bool) -> Next {
    match err.code() {
        Some(ErrorCode::UnknownTopic) if !refreshed => Next::RefreshMetadata,
        _ => classify(err, from_leader),
    }
}

/// I/O errors that another attempt would only repeat: an address that does not
/// resolve or parse (`InvalidInput`), and TLS failures (`InvalidData`: unknown CA,
/// bad signature, certificate required or rejected, wrong name).
pub fn is_permanent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
    )
}

/// Back-off state of one logical call.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    waited_attempts: u32,
}

impl Backoff {
    /// A fresh call: the first attempt is about to start.
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            attempts: 1,
            waited_attempts: 0,
        }
    }

    /// Attempts started so far (the first one included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// May another attempt start now, `elapsed` after the first? Counts it if so.
    /// Used for retries that do not wait (following a leader hint).
    pub fn try_immediate(&mut self, elapsed: Duration) -> bool {
        if self.attempts >= self.policy.max_attempts.max(1) || elapsed >= self.policy.max_total {
            return false;
        }
        self.attempts += 1;
        true
    }

    /// The wait before the next attempt, or `None` when the budget is spent
    /// (attempts or time). `elapsed` is the time since the first attempt started;
    /// `jitter` is any random number: the wait is drawn from
    /// `[d/2, d]` where `d = min(initial · 2^k, max_backoff)` ("equal jitter", so
    /// clients that failed together do not retry together). The wait never runs past
    /// `max_total`. Counts the attempt that follows the wait.
    pub fn next_delay(&mut self, elapsed: Duration, jitter: u64) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts.max(1) || elapsed >= self.policy.max_total {
            return None;
        }
        let shift = self.waited_attempts.min(20);
        let full = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.policy.max_backoff);
        let full_us = u64::try_from(full.as_micros()).unwrap_or(u64::MAX);
        let half_us = full_us / 2;
        let wait_us = half_us + jitter % (full_us - half_us + 1);
        let remaining = self.policy.max_total - elapsed;
        let wait = Duration::from_micros(wait_us).min(remaining);
        self.attempts += 1;
        self.waited_attempts += 1;
        Some(wait)
    }
}

/// A tiny xorshift generator for back-off jitter (not for anything secret).
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded by the caller (the I/O shell uses the clock and the process id).
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;
    use crate::wire::LeaderHint;
    use std::io;

    fn server_err(code: ErrorCode, hint: Option<(&str, u64)>) -> ClientError {
        ClientError::Server {
            code,
            message: "m".into(),
            leader_hint: hint.map(|(addr, id)| LeaderHint {
                leader_id: NodeId(id),
                addr: addr.into(),
            }),
        }
    }

    #[test]
    fn unknown_topic_refreshes_the_metadata_once_then_fails() {
        let e = server_err(ErrorCode::UnknownTopic, None);
        assert_eq!(classify_topic(&e, true, false), Next::RefreshMetadata);
        assert_eq!(classify_topic(&e, true, true), Next::Fail);
        assert_eq!(classify(&e, true), Next::Fail);
        for code in [
            ErrorCode::TopicExists,
            ErrorCode::InvalidTopic,
            ErrorCode::InvalidConfig,
        ] {
            assert_eq!(
                classify_topic(&server_err(code, None), true, false),
                Next::Fail
            );
        }
        let hinted = server_err(ErrorCode::NotLeader, Some(("10.0.0.2:8400", 2)));
        assert_eq!(
            classify_topic(&hinted, false, false),
            Next::FollowLeader("10.0.0.2:8400".into())
        );
    }

    #[test]
    fn not_leader_with_an_address_is_followed() {
        let e = server_err(ErrorCode::NotLeader, Some(("127.0.0.3:8400", 3)));
        assert_eq!(
            classify(&e, false),
            Next::FollowLeader("127.0.0.3:8400".into())
        );
    }

    #[test]
    fn not_leader_without_an_address_backs_off() {
        let e = server_err(ErrorCode::NotLeader, Some(("", 0)));
        assert_eq!(classify(&e, false), Next::Retry { drop_conn: false });
        let e = server_err(ErrorCode::NotLeader, None);
        assert_eq!(classify(&e, true), Next::Retry { drop_conn: false });
    }

    #[test]
    fn transient_errors_retry_and_broken_connections_are_dropped() {
        for code in [ErrorCode::Unavailable, ErrorCode::Timeout] {
            assert_eq!(
                classify(&server_err(code, None), true),
                Next::Retry { drop_conn: false }
            );
        }
        assert_eq!(
            classify(&server_err(ErrorCode::TooManyConnections, None), true),
            Next::Retry { drop_conn: true }
        );
        let refused = ClientError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused, true), Next::Retry { drop_conn: true });
        assert_eq!(
            classify(&ClientError::Timeout, false),
            Next::Retry { drop_conn: true }
        );
    }

    #[test]
    fn tls_and_address_errors_are_not_retried() {
        for kind in [io::ErrorKind::InvalidData, io::ErrorKind::InvalidInput] {
            let e = ClientError::Io(io::Error::new(kind, "received fatal alert: UnknownCA"));
            assert_eq!(classify(&e, true), Next::Fail);
        }
        let reset = ClientError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset, false), Next::Retry { drop_conn: true });
    }

    #[test]
    fn permanent_errors_fail() {
        for code in [
            ErrorCode::Malformed,
            ErrorCode::PermissionDenied,
            ErrorCode::Unauthenticated,
            ErrorCode::RecordTooLarge,
            ErrorCode::FrameTooLarge,
            ErrorCode::UnsupportedApi,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                classify(&server_err(code, None), false),
                Next::Fail,
                "{code}"
            );
        }
        assert_eq!(
            classify(&ClientError::Protocol("x".into()), false),
            Next::Fail
        );
    }

    #[test]
    fn a_damaged_record_is_read_again_elsewhere() {
        let e = server_err(ErrorCode::CorruptRecord, None);
        assert_eq!(classify(&e, false), Next::Retry { drop_conn: false });
        assert_eq!(classify(&e, true), Next::Retry { drop_conn: false });
    }

    #[test]
    fn out_of_range_from_a_follower_asks_the_leader_but_the_leader_is_final() {
        let e = server_err(ErrorCode::OffsetOutOfRange, None);
        assert_eq!(classify(&e, false), Next::AskLeader);
        assert_eq!(classify(&e, true), Next::Fail);
    }

    fn policy(max_attempts: u32, max_total_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            max_total: Duration::from_millis(max_total_ms),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_within_equal_jitter_bounds() {
        let mut b = Backoff::new(policy(100, 1_000_000));
        let mut expected_full_ms = 10u64;
        for _ in 0..10 {
            let low = b.clone().next_delay(Duration::ZERO, 0).unwrap();
            let high = b.clone().next_delay(Duration::ZERO, u64::MAX - 1).unwrap();
            let d = b.next_delay(Duration::ZERO, 12345).unwrap();
            assert!(
                low >= Duration::from_micros(expected_full_ms * 500),
                "{low:?}"
            );
            assert!(high <= Duration::from_millis(expected_full_ms), "{high:?}");
            assert!(low <= d && d <= Duration::from_millis(expected_full_ms));
            expected_full_ms = (expected_full_ms * 2).min(100);
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let mut b = Backoff::new(policy(4, 1_000_000));
        assert_eq!(b.attempts(), 1);
        assert!(b.next_delay(Duration::ZERO, 1).is_some());
        assert!(b.try_immediate(Duration::ZERO));
        assert!(b.next_delay(Duration::ZERO, 1).is_some());
        assert_eq!(b.attempts(), 4);
        assert_eq!(b.next_delay(Duration::ZERO, 1), None);
        assert!(!b.try_immediate(Duration::ZERO));
    }

    #[test]
    fn total_time_is_bounded_and_the_last_wait_is_clamped() {
        let mut b = Backoff::new(policy(1000, 50));
        // 45 ms in: at most 5 ms of budget left, whatever the doubling says.
        b.waited_attempts = 5;
        let d = b.next_delay(Duration::from_millis(45), 7).unwrap();
        assert!(d <= Duration::from_millis(5), "{d:?}");
        assert_eq!(b.next_delay(Duration::from_millis(50), 7), None);
        assert!(!b.try_immediate(Duration::from_millis(51)));
    }

    #[test]
    fn one_attempt_policy_never_retries() {
        let mut b = Backoff::new(RetryPolicy::none());
        assert_eq!(b.next_delay(Duration::ZERO, 0), None);
        assert!(!b.try_immediate(Duration::ZERO));
    }

    #[test]
    fn jitter_is_not_constant() {
        let mut j = Jitter::new(0);
        let a = j.next_u64();
        let b = j.next_u64();
        assert_ne!(a, b);
        assert_ne!(a, 0);
    }
}
