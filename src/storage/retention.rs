//! Retention policy: how many of the oldest sealed segments to drop. Pure
//! arithmetic; the time and the segments' times are inputs.
//!
//! A segment's time for retention by age is its newest record timestamp (record
//! format v1), capped at its store file's modification time: a producer's clock
//! far in the future (or a bad timestamp) cannot keep a segment longer than its
//! last write would, while old timestamps (records copied in from elsewhere) do
//! expire by their own time, as in Kafka. A segment with no timestamped record
//! (only v0 records) ages from its modification time, as before.

use std::time::{Duration, SystemTime};

use super::error::Result;

/// How many of the oldest sealed segments (sizes in `sealed_bytes`, oldest first)
/// must go for the log (those plus `active_bytes`) to fit in `limit_bytes`. The
/// active segment is never dropped, so the log may stay above the limit.
pub(crate) fn drop_for_bytes(sealed_bytes: &[u64], active_bytes: u64, limit_bytes: u64) -> usize {
    let mut total: u64 = sealed_bytes.iter().sum::<u64>() + active_bytes;
    let mut n = 0;
    for &bytes in sealed_bytes {
        if total <= limit_bytes {
            break;
        }
        total -= bytes;
        n += 1;
    }
    n
}

/// The time a segment ages from: its newest record timestamp (ms since the epoch)
/// capped at its store's modification time, or that time alone (see the module doc).
pub(crate) fn segment_time(modified: SystemTime, newest_ms: Option<i64>) -> SystemTime {
    let Some(ms) = newest_ms else {
        return modified;
    };
    let newest = u64::try_from(ms).map_or(SystemTime::UNIX_EPOCH, |ms| {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(modified)
    });
    newest.min(modified)
}

/// How many of the `sealed` oldest segments have a time (`modified(i)`: segment
/// i's [`segment_time`]) more than `max_age` before `now`; stops at the first
/// younger one (asked oldest first and only as far as needed).
pub(crate) fn drop_for_age(
    sealed: usize,
    max_age: Duration,
    now: SystemTime,
    modified: &mut dyn FnMut(usize) -> Result<SystemTime>,
) -> Result<usize> {
    let mut n = 0;
    while n < sealed {
        let expired = now
            .duration_since(modified(n)?)
            .is_ok_and(|age| age > max_age);
        if !expired {
            break;
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_policy_drops_oldest_until_under_limit() {
        assert_eq!(drop_for_bytes(&[10, 10, 10], 5, 100), 0);
        assert_eq!(drop_for_bytes(&[10, 10, 10], 5, 25), 1);
        assert_eq!(drop_for_bytes(&[10, 10, 10], 5, 5), 3);
        assert_eq!(
            drop_for_bytes(&[10, 10, 10], 50, 5),
            3,
            "never the active one"
        );
        assert_eq!(drop_for_bytes(&[], 50, 5), 0);
    }

    #[test]
    fn age_policy_stops_at_first_young_segment() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let times = [
            t0,
            t0 + Duration::from_secs(50),
            t0 + Duration::from_secs(10),
        ];
        let mut modified = |i: usize| Ok(times[i]);
        let now = t0 + Duration::from_secs(100);
        assert_eq!(
            drop_for_age(3, Duration::from_secs(60), now, &mut modified).unwrap(),
            1
        );
        assert_eq!(
            drop_for_age(3, Duration::from_secs(200), now, &mut modified).unwrap(),
            0
        );
        assert_eq!(
            drop_for_age(3, Duration::from_secs(1), now, &mut modified).unwrap(),
            3
        );
        // A clock behind the files expires nothing.
        assert_eq!(
            drop_for_age(3, Duration::from_secs(1), t0, &mut modified).unwrap(),
            0
        );
    }

    #[test]
    fn segment_time_is_the_newest_record_capped_at_the_file() {
        let file = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            segment_time(file, None),
            file,
            "no timestamp: the file's time"
        );
        let older = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
        assert_eq!(
            segment_time(file, Some(5_000)),
            older,
            "old records expire by their time"
        );
        assert_eq!(
            segment_time(file, Some(i64::MAX)),
            file,
            "a future timestamp is capped at the file's time"
        );
        assert_eq!(segment_time(file, Some(-1)), SystemTime::UNIX_EPOCH);
        let now = file + Duration::from_secs(10);
        let times = [
            segment_time(file, Some(5_000)),
            segment_time(file, Some(i64::MAX)),
        ];
        let mut at = |i: usize| Ok(times[i]);
        assert_eq!(
            drop_for_age(2, Duration::from_secs(60), now, &mut at).unwrap(),
            1
        );
    }
}
