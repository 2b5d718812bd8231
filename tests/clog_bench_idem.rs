//! `clog bench --idempotence on|off` against a real `commitlogd --dev`: the output
//! names the mode, every acknowledged record is in the log once, and the mode is
//! the one used (on: producer ids were handed out; off and --plain: none). The
//! records sit at adjacent offsets: a batch's producer header rides inside its
//! first record, it takes no offset.

mod common;

use commitlog::client::Client;
use commitlog::types::Offset;
use commitlog::wire::{FetchPartition, TopicPartition};

use common::Server;

/// Records a bench run writes (each value is `--size` bytes of a, b, c, ...).
const SIZE_BYTES: usize = 32;

fn bench_value() -> Vec<u8> {
    (0..SIZE_BYTES).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs `clog bench` with `extra` and returns its RESULT line's fields and the
/// human `produce:` line.
fn run_bench(server: &Server, extra: &[&str]) -> (Vec<String>, String) {
    let size = SIZE_BYTES.to_string();
    let mut args = vec![
        "bench",
        "--producers",
        "2",
        "--window",
        "4",
        "--size",
        &size,
    ];
    args.extend_from_slice(extra);
    let out = server.clog(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "clog {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .find(|l| l.starts_with("RESULT\t"))
        .unwrap_or_else(|| panic!("no RESULT line in {stdout}"));
    let human = stdout
        .lines()
        .find(|l| l.starts_with("produce: "))
        .unwrap_or_else(|| panic!("no produce line in {stdout}"))
        .to_string();
    (result.split('\t').map(str::to_string).collect(), human)
}

/// Every consumer-visible record of the default partition as (offset, value),
/// bounded in rounds.
fn log(c: &mut Client) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = Offset(0);
    for _ in 0..1_000 {
        let asked = [FetchPartition {
            target: TopicPartition::default_topic(),
            offset: at,
            max_bytes: 1 << 20,
        }];
        let mut answered = c.fetch_records(&asked, 1 << 20, 0).expect("fetch v2");
        let records = answered.remove(0).records;
        if records.is_empty() {
            break;
        }
        for r in records {
            at = Offset(r.offset.0 + 1);
            out.push((r.offset.0, r.value));
        }
    }
    out
}

/// Next producer id the node hands out (asking takes one).
fn next_producer_id(c: &mut Client) -> u64 {
    c.init_producer(None).expect("init producer").producer_id
}

#[test]
fn bench_names_its_idempotence_mode_and_writes_each_record_once() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let before_on = next_producer_id(&mut c);

    // Default: on.
    let (fields, human) = run_bench(&server, &["--count", "200", "--label", "ON"]);
    assert_eq!(fields.len(), 13, "{fields:?}");
    assert_eq!(&fields[1..5], &["Commitlog", "Produce", "ON", "200"]);
    assert_eq!(fields[12], "idempotence=on");
    assert!(human.contains("idempotence on"), "{human}");
    let after_on = next_producer_id(&mut c);
    assert!(
        after_on >= before_on + 3,
        "two producers took ids between {before_on} and {after_on}"
    );
    let on_log = log(&mut c);
    assert_eq!(on_log.len(), 200, "every acknowledged record once");
    assert!(on_log.iter().all(|(_, v)| *v == bench_value()));
    // The producer header of each idempotent batch rides in its record: no
    // offset is spent on it.
    for pair in on_log.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "adjacent: {pair:?}");
    }

    let (fields, human) = run_bench(
        &server,
        &["--idempotence", "off", "--count", "100", "--label", "OFF"],
    );
    assert_eq!(&fields[1..5], &["Commitlog", "Produce", "OFF", "100"]);
    assert_eq!(fields[12], "idempotence=off");
    assert!(human.contains("idempotence off"), "{human}");
    assert_eq!(
        next_producer_id(&mut c),
        after_on + 1,
        "a bench without idempotence asks for no producer id"
    );
    let all = log(&mut c);
    assert_eq!(all.len(), 300);
    let off_log = &all[200..];
    assert!(off_log.iter().all(|(_, v)| *v == bench_value()));
    for pair in off_log.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "batches without meta are adjacent"
        );
    }

    // --plain: plain Produce requests (values only), never idempotent.
    let (fields, human) = run_bench(&server, &["--plain", "--count", "50", "--label", "PL"]);
    assert_eq!(&fields[1..5], &["Commitlog", "Produce", "PL", "50"]);
    assert_eq!(fields[12], "idempotence=plain");
    assert!(human.contains("idempotence plain"), "{human}");
    assert_eq!(
        next_producer_id(&mut c),
        after_on + 2,
        "no producer id taken"
    );
    let all = log(&mut c);
    assert_eq!(all.len(), 350);
    assert!(all[300..].iter().all(|(_, v)| *v == bench_value()));
    let clash = server.clog(&["bench", "--plain", "--idempotence", "on", "--count", "1"]);
    assert!(
        !clash.status.success(),
        "--plain is never idempotent: a usage error"
    );

    let bad = server.clog(&["bench", "--idempotence", "maybe", "--count", "1"]);
    assert!(!bad.status.success(), "an unknown mode is a usage error");
}

/// `clog produce` with record options (`-k`) takes a producer id by default and
/// none with `--no-idempotence`, as the value-only path does.
#[test]
fn produce_with_a_key_honours_no_idempotence() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let before = next_producer_id(&mut c);
    let plain = server.clog(&["produce", "-k", "k1", "--no-idempotence", "v1"]);
    assert!(plain.status.success(), "{plain:?}");
    assert_eq!(next_producer_id(&mut c), before + 1, "no producer id taken");
    let idem = server.clog(&["produce", "-k", "k2", "v2"]);
    assert!(idem.status.success(), "{idem:?}");
    assert_eq!(
        next_producer_id(&mut c),
        before + 3,
        "one producer id taken"
    );
    let values: Vec<Vec<u8>> = log(&mut c).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec![b"v1".to_vec(), b"v2".to_vec()]);
}
