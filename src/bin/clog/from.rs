//! `--from` of `clog consume` and `clog tail`: where to start reading.
//!
//! | value | starts at |
//! |---|---|
//! | `start` (or `0`) | the first record the partition still holds |
//! | `end` | the high-water mark: only records produced from now on |
//! | `-N` | N offsets before the end (`-10`: the last 10 offsets) |
//! | `N` | offset N |
//! | `@2026-12-06T10:00:00Z` | the first record whose timestamp is at or after that time (RFC 3339, `Z` or `±hh:mm`, optional fraction of a second) |
//! | `@-10m` | the first record of the last 10 minutes (`s`, `m`, `h`, `d`) |
//!
//! Times are looked up with ListOffsets (wire-spec §17); the parser is
//! hand-written (no date crate) and every error names the input it refuses.

use commitlog::client::cluster::ClusterClient;
use commitlog::client::Result as ClientResult;
use commitlog::types::Offset;
use commitlog::wire::{OffsetSpec, TopicPartition};

/// A parsed `--from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// The first record still held.
    Start,
    /// The high-water mark.
    End,
    /// This many offsets before the high-water mark.
    Last(u64),
    /// This offset.
    Offset(u64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// The first record at or after this long before now (ms).
    Ago(u64),
}

/// Parses a `--from` value (clap's value parser).
pub(crate) fn parse_from(text: &str) -> Result<StartAt, String> {
    let s = text.trim();
    match s {
        "start" | "beginning" => return Ok(StartAt::Start),
        "end" => return Ok(StartAt::End),
        _ => {}
    }
    if let Some(time) = s.strip_prefix('@') {
        return match time.strip_prefix('-') {
            Some(ago) => parse_duration_ms(ago)
                .map(StartAt::Ago)
                .map_err(|why| format!("`{text}`: {why} (e.g. @-10m, @-2h, @-1d)")),
            None => parse_rfc3339_ms(time)
                .map(StartAt::Time)
                .map_err(|why| format!("`{text}`: {why} (e.g. @2026-12-06T10:00:00Z)")),
        };
    }
    if let Some(n) = s.strip_prefix('-') {
        return match n.parse::<u64>() {
            Ok(n) => Ok(StartAt::Last(n)),
            Err(_) => Err(format!(
                "`{text}`: -N takes a whole number of offsets (e.g. -100)"
            )),
        };
    }
    match s.parse::<u64>() {
        Ok(0) => Ok(StartAt::Start),
        Ok(n) => Ok(StartAt::Offset(n)),
        Err(_) => Err(format!(
            "`{text}` is not start, end, -N, an offset, @<RFC 3339 time> or @-<duration>"
        )),
    }
}

/// `10m` → 600 000. Units: s, m, h, d.
pub(crate) fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let unit_at = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration `{s}` needs a unit: s, m, h or d"))?;
    let (digits, unit) = s.split_at(unit_at);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration `{s}` does not start with a number"))?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unit `{unit}` of `{s}` is not s, m, h or d")),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("duration `{s}` is too long"))
}

/// A fixed-width decimal field of `s` at `at..at + len`.
fn field(s: &str, at: usize, len: usize, what: &str) -> Result<i64, String> {
    let digits = s
        .get(at..at + len)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("`{s}` has no {len}-digit {what} at character {}", at + 1))?;
    digits.parse().map_err(|_| format!("`{s}`: bad {what}"))
}

/// Expects `sep` at byte `at` of `s`.
fn separator(s: &str, at: usize, seps: &[u8]) -> Result<(), String> {
    match s.as_bytes().get(at) {
        Some(b) if seps.contains(b) => Ok(()),
        _ => Err(format!(
            "`{s}`: expected `{}` at character {}",
            seps[0] as char,
            at + 1
        )),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)` → ms since the epoch.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let year = field(s, 0, 4, "year")?;
    separator(s, 4, b"-")?;
    let month = field(s, 5, 2, "month")?;
    separator(s, 7, b"-")?;
    let day = field(s, 8, 2, "day")?;
    separator(s, 10, b"Tt")?;
    let hour = field(s, 11, 2, "hour")?;
    separator(s, 13, b":")?;
    let minute = field(s, 14, 2, "minute")?;
    separator(s, 16, b":")?;
    let second = field(s, 17, 2, "second")?;
    if !(1..=12).contains(&month) {
        return Err(format!("`{s}`: month {month} is not 1-12"));
    }
    let days_in_month = days_in_month(year, month);
    if !(1..=days_in_month).contains(&day) {
        return Err(format!("`{s}`: day {day} is not 1-{days_in_month}"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "`{s}`: time {hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    let (millis, rest) = fraction_ms(s, 19)?;
    let offset_minutes = zone_minutes(s, rest)?;
    let days = days_from_civil(year, month, day);
    let local_s = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Ok((local_s - offset_minutes * 60) * 1_000 + millis)
}

/// An optional `.digits` at `at`: its milliseconds (truncated) and where it ends.
fn fraction_ms(s: &str, at: usize) -> Result<(i64, usize), String> {
    if s.as_bytes().get(at) != Some(&b'.') {
        return Ok((0, at));
    }
    let digits = s[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return Err(format!("`{s}`: a fraction of a second takes 1 to 9 digits"));
    }
    let mut ms: i64 = 0;
    for (i, b) in s.as_bytes()[at + 1..at + 1 + digits.min(3)]
        .iter()
        .enumerate()
    {
        ms += i64::from(b - b'0') * [100, 10, 1][i];
    }
    Ok((ms, at + 1 + digits))
}

/// `Z` or `±hh:mm` at `at`, which must end `s`: the offset from UTC in minutes.
fn zone_minutes(s: &str, at: usize) -> Result<i64, String> {
    let zone = &s[at..];
    if zone.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let sign = match zone.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => {
            return Err(format!(
                "`{s}` needs a time zone: Z or ±hh:mm (e.g. +01:00)"
            ))
        }
    };
    if zone.len() != 6 {
        return Err(format!("`{s}`: time zone `{zone}` is not ±hh:mm"));
    }
    let hours = field(zone, 1, 2, "zone hour")?;
    separator(zone, 3, b":")?;
    let minutes = field(zone, 4, 2, "zone minute")?;
    if hours > 23 || minutes > 59 {
        return Err(format!("`{s}`: time zone `{zone}` is out of range"));
    }
    Ok(sign * (hours * 60 + minutes))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian calendar).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start in March, so the leap day is the last day of a year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Milliseconds since the epoch now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The offset `from` names on `target`: `None` for [`StartAt::Start`] (the caller's
/// "first record" path reads from offset 0).
pub(crate) fn resolve(
    client: &mut ClusterClient,
    target: &TopicPartition,
    from: StartAt,
) -> ClientResult<Option<Offset>> {
    let at_time = |client: &mut ClusterClient, ms: i64| {
        client
            .list_offset(target, OffsetSpec::Time(ms.max(0)))
            .map(|l| Some(l.offset))
    };
    match from {
        StartAt::Start => Ok(None),
        StartAt::Offset(n) => Ok(Some(Offset(n))),
        StartAt::End => client
            .list_offset(target, OffsetSpec::Latest)
            .map(|l| Some(l.offset)),
        StartAt::Last(n) => {
            let end = client.list_offset(target, OffsetSpec::Latest)?.offset;
            let first = client.list_offset(target, OffsetSpec::Earliest)?.offset;
            Ok(Some(Offset(end.0.saturating_sub(n).max(first.0))))
        }
        StartAt::Time(ms) => at_time(client, ms),
        StartAt::Ago(ms) => at_time(
            client,
            now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_offsets_and_last_n() {
        assert_eq!(parse_from("start"), Ok(StartAt::Start));
        assert_eq!(parse_from("0"), Ok(StartAt::Start));
        assert_eq!(parse_from("end"), Ok(StartAt::End));
        assert_eq!(parse_from("-100"), Ok(StartAt::Last(100)));
        assert_eq!(parse_from("42"), Ok(StartAt::Offset(42)));
        for bad in [
            "", "-", "-x", "forty", "4 2", "-1.5", "@", "@-", "@-10", "@-10y",
        ] {
            let err = parse_from(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn relative_durations() {
        assert_eq!(parse_from("@-10m"), Ok(StartAt::Ago(600_000)));
        assert_eq!(parse_from("@-90s"), Ok(StartAt::Ago(90_000)));
        assert_eq!(parse_from("@-2h"), Ok(StartAt::Ago(7_200_000)));
        assert_eq!(parse_from("@-1d"), Ok(StartAt::Ago(86_400_000)));
        assert_eq!(parse_from("@-0s"), Ok(StartAt::Ago(0)));
        assert!(parse_from("@-99999999999999999999d").is_err());
        assert!(parse_from("@-10m5s").unwrap_err().contains("m5s"));
    }

    #[test]
    fn rfc3339_times() {
        let t = |s: &str| parse_rfc3339_ms(s);
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        // The spec's example time (wire-spec §13, §17).
        assert_eq!(t("2026-12-06T10:00:00Z"), Ok(1_796_551_200_000));
        assert_eq!(t("2026-12-06t10:00:00z"), Ok(1_796_551_200_000));
        assert_eq!(t("2026-12-06T11:00:00+01:00"), Ok(1_796_551_200_000));
        assert_eq!(t("2026-12-06T04:30:00-05:30"), Ok(1_796_551_200_000));
        assert_eq!(t("2026-12-06T10:00:00.042Z"), Ok(1_796_551_200_042));
        assert_eq!(t("2026-12-06T10:00:00.5Z"), Ok(1_796_551_200_500));
        assert_eq!(t("2026-12-06T10:00:00.123456789Z"), Ok(1_796_551_200_123));
        assert_eq!(t("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(t("1969-12-31T23:59:59Z"), Ok(-1_000));
        assert_eq!(t("2024-12-31T23:59:59Z"), Ok(1_735_689_599_000));
        for (bad, says) in [
            ("2026-13-01T00:00:00Z", "month 13"),
            ("2026-02-29T00:00:00Z", "day 29"),
            ("2026-04-31T00:00:00Z", "day 31"),
            ("2026-12-06T24:00:00Z", "24:00:00"),
            ("2026-12-06T10:60:00Z", "10:60:00"),
            ("2026-12-06T10:00:00", "time zone"),
            ("2026-12-06T10:00:00+0100", "+0100"),
            ("2026-12-06T10:00:00+25:00", "+25:00"),
            ("2026-12-06 10:00:00Z", "character 11"),
            ("2026-12-6T10:00:00Z", "day"),
            ("2026-12-06T10:00:00.Z", "fraction"),
            ("2026-12-06T10:00:00Zjunk", "time zone"),
            ("yesterday", "year"),
        ] {
            let err = t(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains(bad), "names the input: {err}");
        }
    }

    #[test]
    fn calendar_matches_day_counting() {
        // Walk day by day from 1960 to 2100 and compare with the formula.
        let mut days = days_from_civil(1960, 1, 1);
        for year in 1960..2100 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        days,
                        "{year}-{month}-{day}"
                    );
                    days += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }
}
