//! Offsets by position and time with a real `commitlogd`: ListOffsets (API key 17)
//! earliest / latest / by time, one answer per partition (an unknown topic fails
//! only its own entry), and `clog consume|tail --from` starting where they say.
//!
//! Records produced through the v0 API carry a timestamp only once the server
//! stores every new record in format v1 (the leader stamps it); on a server that
//! stores them as v0 no record has a time and every lookup by time answers the
//! high-water mark. The test checks whichever the server does, and says which.

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
    let stamped = by_time.timestamp != NO_TIMESTAMP;
    if stamped {
        // v1 records stamped by the leader: the first produced record is the first
        // at or after a minute before the produce, stamped within the run.
        assert_eq!(by_time.offset, first);
        assert!(by_time.timestamp >= before_ms && by_time.timestamp <= now_ms());
    } else {
        eprintln!("this server stores v0 records (no timestamps): lookups by time answer the end");
        assert_eq!(by_time.offset, hw);
    }

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
    if stamped {
        assert_eq!(recent, all, "every record is from the last hour");
    } else {
        assert!(recent.is_empty(), "no record has a time: {recent:?}");
    }

    // A bad --from names the input.
    let bad = server.clog(&["consume", "--from", "@2026-02-30T00:00:00Z"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("2026-02-30T00:00:00Z") && err.contains("day 30"),
        "{err}"
    );
}
