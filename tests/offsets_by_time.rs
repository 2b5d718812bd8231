//! Offsets by position and time with a real `commitlogd`: ListOffsets (API key 17)
//! earliest / latest / by time, one answer per partition (an unknown topic fails
//! only its own entry), and `clog consume|tail --from` starting where they say.
//!
//! Every record the leader appends is stored in format v1 with the leader's
//! timestamp (a v0 produce included), so lookups by time find them.

mod common;

use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, OffsetQuery, OffsetSpec, TopicPartition, NO_TIMESTAMP};

fn query(target: &TopicPartition, spec: OffsetSpec) -> OffsetQuery {
    OffsetQuery {
        target: target.clone(),
        spec,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The offsets `clog` printed (`offset<TAB>value` lines).
fn printed_offsets(out: &std::process::Output) -> Vec<u64> {
    assert!(
        out.status.success(),
        "clog failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn list_offsets_and_clog_from_on_a_single_node() {
    let server = common::Server::start(&[]);
    let mut c = server.client();
    let default = TopicPartition::default_topic();
    let before_ms = now_ms();
    let mut offsets = Vec::new();
    for i in 0..20 {
        offsets.push(c.produce(format!("v{i}").as_bytes()).expect("produce"));
    }
    let (first, last) = (offsets[0], offsets[19]);
    let hw = Offset(last.0 + 1);

    let nope = TopicPartition::new("nope", 0);
    let answers = c
        .list_offsets(&[
            query(&default, OffsetSpec::Earliest),
            query(&default, OffsetSpec::Latest),
            query(&nope, OffsetSpec::Latest),
            query(&default, OffsetSpec::Time(i64::MAX)),
            query(&default, OffsetSpec::Time(before_ms - 60_000)),
        ])
        .expect("list offsets");
    assert_eq!(answers.len(), 5);
    assert!(answers
        .iter()
        .all(|a| a.target == default || a.target == nope));
    let earliest = &answers[0];
    assert_eq!(earliest.error, None);
    assert!(
        earliest.offset <= first && earliest.offset.0 >= 1,
        "{earliest:?}"
    );
    assert_eq!(
        (answers[1].offset, answers[1].timestamp),
        (hw, NO_TIMESTAMP)
    );
    let unknown = answers[2].error.as_ref().expect("nope has no partition");
    assert_eq!(unknown.code, ErrorCode::UnknownTopic);
    assert_eq!(
        (answers[3].offset, answers[3].timestamp),
        (hw, NO_TIMESTAMP),
        "a time after every record: the high-water mark"
    );
    let by_time = &answers[4];
    assert_eq!(by_time.error, None);
    // Stamped by the leader: the first produced record is the first at or after
    // a minute before the produce, stamped within the run.
    assert_eq!(by_time.offset, first);
    assert!(by_time.timestamp >= before_ms && by_time.timestamp <= now_ms());

    // clog --from: positions.
    let all = printed_offsets(&server.clog(&["consume", "--from", "start"]));
    assert_eq!(all, offsets.iter().map(|o| o.0).collect::<Vec<_>>());
    let last5 = printed_offsets(&server.clog(&["consume", "--from", "-5"]));
    assert_eq!(last5, offsets[15..].iter().map(|o| o.0).collect::<Vec<_>>());
    assert!(printed_offsets(&server.clog(&["consume", "--from", "end"])).is_empty());
    let from_offset =
        printed_offsets(&server.clog(&["consume", "--from", &offsets[7].0.to_string()]));
    assert_eq!(from_offset.first(), Some(&offsets[7].0));
    let tail = printed_offsets(&server.clog(&["tail", "--from", "-3"]));
    assert_eq!(tail, offsets[17..].iter().map(|o| o.0).collect::<Vec<_>>());

    // clog --from by time: an hour ago, and a time after every record.
    let recent = printed_offsets(&server.clog(&["consume", "--from", "@-1h"]));
    let future =
        printed_offsets(&server.clog(&["consume", "--from", "@2999-01-01T00:00:00+01:00"]));
    assert!(future.is_empty(), "{future:?}");
    assert_eq!(recent, all, "every record is from the last hour");

    // Records produced after a known time: the lookup and `--from @time` start at
    // the first of them. The clock is awaited (bounded) to pass every earlier stamp.
    let acked_ms = now_ms();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while now_ms() <= acked_ms {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock does not advance"
        );
        std::thread::yield_now();
    }
    let t_mid = acked_ms + 1;
    let later: Vec<Offset> = (0..5)
        .map(|i| c.produce(format!("later{i}").as_bytes()).expect("produce"))
        .collect();
    let answer = c
        .list_offsets(&[query(&default, OffsetSpec::Time(t_mid))])
        .expect("list offsets")
        .remove(0);
    assert_eq!(answer.offset, later[0], "{answer:?}");
    assert!(answer.timestamp >= t_mid, "{answer:?}");
    let at = format!("@{}", rfc3339(t_mid));
    let from_time = printed_offsets(&server.clog(&["consume", "--from", &at]));
    assert_eq!(
        from_time,
        later.iter().map(|o| o.0).collect::<Vec<_>>(),
        "{at}"
    );
    let tail_time = printed_offsets(&server.clog(&["tail", "--from", &at]));
    assert_eq!(tail_time, from_time);

    // A bad --from names the input.
    let bad = server.clog(&["consume", "--from", "@2026-02-30T00:00:00Z"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("2026-02-30T00:00:00Z") && err.contains("day 30"),
        "{err}"
    );
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (days to a civil date, the
/// inverse of the usual days-from-civil formula).
fn rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms_of_day % 1000
    )
}

#[test]
fn rfc3339_formatter_of_this_test() {
    assert_eq!(rfc3339(1_796_551_200_042), "2026-12-06T10:00:00.042Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}
