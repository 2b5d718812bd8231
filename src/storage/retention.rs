//! Retention policy: how many of the oldest sealed segments to drop. Pure
//! arithmetic; the time and the segments' modification times are inputs.

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

/// How many of the `sealed` oldest segments were last modified more than `max_age`
/// before `now`; stops at the first younger one (`modified(i)` is segment i's last
/// write time, asked oldest first and only as far as needed).
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
}
