//! The `produce`, `consume` and `tail` commands. Reads use only Fetch (the
//! `consume` action): no Status or GetServers is needed to read.
//!
//! Topics: `-t/--topic` (default `default`) and `-p/--partition`. A produce without
//! `-p` to a topic with several partitions spreads its requests round-robin over
//! them (the client's partitioner) and says where each went; `consume` and `tail`
//! without `-p` read partition 0. With `-o json` every record read, every offset
//! produced and the stdin summary (one object per partition) name the topic and
//! the partition.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, IsTerminal, Read, Write};

use commitlog::client::cluster::ClusterClient;
use commitlog::client::records::ConsumedRecord;
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, TopicPartition, DEFAULT_TOPIC};

use crate::fail::{explain, Failure};
use crate::format::{unescape, Print, RecordFormat, Shown};
use crate::from;
use crate::{
    connect, ConsumeArgs, Out, Output, OutputKind, ProduceArgs, RecordOutput, Settings, TailArgs,
};

/// Largest record `produce` reads (from stdin or a file): the server's default frame
/// limit. Bigger input is refused as a data error instead of being held in memory.
pub(crate) const MAX_RECORD_BYTES: usize = 8 << 20;
/// Bytes asked per Fetch.
const FETCH_BYTES: u32 = 1 << 20;
/// How long one Fetch waits for new records when following.
const FOLLOW_WAIT_MS: u32 = 5_000;

pub(crate) fn produce(s: &Settings, args: &ProduceArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let v1 = crate::records::wanted(args);
    if !args.values.is_empty() || !args.value_file.is_empty() {
        if v1 {
            return crate::records::produce_given(s, args, out);
        }
        return produce_given(s, args, out);
    }
    let delimiter = match (&args.delimiter, args.null) {
        (_, true) => vec![0],
        (Some(d), false) => unescape(d),
        (None, false) => b"\n".to_vec(),
    };
    if delimiter.is_empty() {
        return Err(Failure::usage("--delimiter must not be empty").into());
    }
    let strip_cr = args.delimiter.is_none() && !args.null;
    if v1 {
        return crate::records::produce_stdin(s, args, out, (&delimiter, strip_cr));
    }
    let mut client = produce_client(s, args)?;
    let fixed = fixed_partition(s, &mut client, &args.topic, args.partition)?;
    let mut ranges = Ranges::new();
    let parse = |raw: &[u8], number: u64| {
        (args.input_format.decode(raw))
            .map_err(|e| Failure::data(format!("record {number} of stdin: {e}")))
    };
    let send = |batch: &[Vec<u8>]| {
        let values: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let (partition, offset) = send_batch(&mut client, &args.topic, fixed, &values)
            .map_err(|e| explain(&s.addr, e))?;
        let n = values.len() as u64;
        add_range(&mut ranges, partition, offset, n);
        Ok(n)
    };
    let produced = stdin_batches(args, (&delimiter, strip_cr), parse, Vec::len, send)?;
    match s.output {
        OutputKind::Json => write_summary_json(out, &args.topic, &ranges)?,
        OutputKind::Text => write_summary(out, &args.topic, fixed, produced, &ranges)?,
    }
    Ok(())
}

/// A connection for `produce`, idempotent unless `--no-idempotence`.
pub(crate) fn produce_client(s: &Settings, args: &ProduceArgs) -> Result<ClusterClient, Failure> {
    let mut client = connect(s)?;
    client.set_idempotence(!args.no_idempotence);
    Ok(client)
}

/// Reads stdin, one record per delimited input (`parse` gets its bytes and its
/// number from 1), and hands batches of at most `--batch` records or 1 MiB (by
/// `size`) to `send`, which returns the records it wrote. Returns them all.
pub(crate) fn stdin_batches<T>(
    args: &ProduceArgs,
    (delimiter, strip_cr): (&[u8], bool),
    mut parse: impl FnMut(&[u8], u64) -> Result<T, Failure>,
    size: impl Fn(&T) -> usize,
    mut send: impl FnMut(&[T]) -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprintln!("clog: reading records from the terminal, one per line; Ctrl-D to end, Ctrl-C to cancel");
    }
    let mut input = stdin.lock();
    let batch_max = args.batch.clamp(1, commitlog::wire::MAX_BATCH_RECORDS);
    let mut batch: Vec<T> = Vec::with_capacity(batch_max.min(4096));
    let (mut batch_bytes, mut produced) = (0usize, 0u64);
    // Bounded by the input: each pass consumes one record or ends.
    loop {
        let number = produced + batch.len() as u64 + 1;
        let raw = read_record(&mut input, delimiter, strip_cr, number)?;
        let end = raw.is_none();
        if let Some(raw) = raw {
            let item = parse(&raw, number)?;
            batch_bytes += size(&item);
            batch.push(item);
        }
        if !batch.is_empty() && (end || batch.len() >= batch_max || batch_bytes >= 1 << 20) {
            produced += send(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
        if end {
            return Ok(produced);
        }
    }
}

/// Adds `n` records written at `first` of `partition` to `ranges`.
pub(crate) fn add_range(ranges: &mut Ranges, partition: u32, first: Offset, n: u64) {
    let last = Offset(first.0 + n - 1);
    let range = ranges.entry(partition).or_insert((first, last, 0));
    (range.1, range.2) = (last, range.2 + n);
}

/// Per partition written to: the first and last offset written, and the records.
pub(crate) type Ranges = BTreeMap<u32, (Offset, Offset, u64)>;

/// The summary of a stdin produce as JSON: one object per partition written to.
pub(crate) fn write_summary_json(
    out: &mut Out<'_>,
    topic: &str,
    ranges: &Ranges,
) -> io::Result<()> {
    for (partition, (first, last, records)) in ranges {
        let line = serde_json::json!({
            "topic": topic,
            "partition": partition,
            "first_offset": first.0,
            "last_offset": last.0,
            "records": records,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The summary of a stdin produce: the offsets written, per partition when the
/// records went to several.
pub(crate) fn write_summary(
    out: &mut Out<'_>,
    topic: &str,
    fixed: Option<u32>,
    produced: u64,
    ranges: &Ranges,
) -> io::Result<()> {
    let place = if topic == DEFAULT_TOPIC {
        String::new()
    } else {
        format!(" to {}", topic)
    };
    let one = |p: &u32| match fixed {
        Some(_) if topic == DEFAULT_TOPIC => String::new(),
        _ => format!(" of partition {p}"),
    };
    match (ranges.len(), ranges.iter().next()) {
        (1, Some((p, (f, _, _)))) if produced == 1 => {
            writeln!(out, "produced 1 record{place} at offset {f}{}", one(p))?
        }
        (1, Some((p, (f, l, _)))) => writeln!(
            out,
            "produced {produced} records{place} at offsets {f}..={l}{}",
            one(p)
        )?,
        (0, _) => writeln!(out, "produced 0 records (stdin was empty)")?,
        _ => {
            let parts: Vec<String> = ranges
                .iter()
                .map(|(p, (f, l, _))| format!("partition {p} offsets {f}..={l}"))
                .collect();
            writeln!(
                out,
                "produced {produced} records{place}: {}",
                parts.join(", ")
            )?
        }
    }
    Ok(())
}

/// The partition every produce of this run goes to: `-p`, or 0 for the default
/// topic and for a topic with one partition; `None` when the partitioner picks one
/// per request (a topic with several partitions).
pub(crate) fn fixed_partition(
    s: &Settings,
    client: &mut ClusterClient,
    topic: &str,
    partition: Option<u32>,
) -> Result<Option<u32>, Failure> {
    match partition {
        Some(p) => Ok(Some(p)),
        None if topic == DEFAULT_TOPIC => Ok(Some(0)),
        None => match client.partition_count(topic) {
            Ok(1) => Ok(Some(0)),
            Ok(_) => Ok(None),
            Err(e) => Err(explain(&s.addr, e)),
        },
    }
}

/// Produces `values` as one batch to `topic` (partition `fixed`, or the
/// partitioner's pick); returns the partition and the first offset.
fn send_batch(
    client: &mut ClusterClient,
    topic: &str,
    fixed: Option<u32>,
    values: &[&[u8]],
) -> commitlog::client::Result<(u32, Offset)> {
    if client.idempotent_produces() {
        // Records v1 (ProduceBatch v2) carry the producer meta.
        let records: Vec<commitlog::client::records::ProducerRecord> = values
            .iter()
            .map(|v| commitlog::client::records::ProducerRecord::new(v.to_vec()))
            .collect();
        let batches = client.produce_records(topic, fixed, &records)?;
        return batches
            .first()
            .map(|b| (b.partition, b.first_offset))
            .ok_or_else(|| commitlog::client::ClientError::Protocol("nothing produced".into()));
    }
    match fixed {
        Some(p) => {
            let target = TopicPartition::new(topic, p);
            client.produce_batch_to(&target, values).map(|o| (p, o))
        }
        None => client.produce_batch_to_topic(topic, values),
    }
}

/// Arguments and --value-file records, one produce each; prints each offset (with
/// `-o json` one object per record: `topic`, `partition`, `offset`).
fn produce_given(s: &Settings, args: &ProduceArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut values = Vec::with_capacity(args.values.len() + args.value_file.len());
    for (i, v) in args.values.iter().enumerate() {
        let value = args
            .input_format
            .decode(v.as_bytes())
            .map_err(|e| Failure::data(format!("argument {}: {e}", i + 1)))?;
        values.push(value);
    }
    for path in &args.value_file {
        let mut raw = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_RECORD_BYTES as u64 + 1).read_to_end(&mut raw))
            .map_err(|e| Failure::usage(format!("--value-file {}: {e}", path.display())))?;
        if raw.len() > MAX_RECORD_BYTES {
            return Err(too_large(&format!("--value-file {}", path.display())).into());
        }
        let value = args
            .input_format
            .decode(&raw)
            .map_err(|e| Failure::data(format!("--value-file {}: {e}", path.display())))?;
        values.push(value);
    }
    let mut client = produce_client(s, args)?;
    let fixed = fixed_partition(s, &mut client, &args.topic, args.partition)?;
    for value in &values {
        let (partition, offset) = send_batch(&mut client, &args.topic, fixed, &[value])
            .map_err(|e| explain(&s.addr, e))?;
        match (s.output, fixed) {
            (OutputKind::Json, _) => {
                let line = serde_json::json!({
                    "topic": args.topic,
                    "partition": partition,
                    "offset": offset.0,
                });
                writeln!(out, "{line}")?
            }
            (OutputKind::Text, Some(_)) => writeln!(out, "{offset}")?,
            (OutputKind::Text, None) => writeln!(out, "{partition}\t{offset}")?,
        }
    }
    Ok(())
}

fn too_large(what: &str) -> Failure {
    Failure::data(format!(
        "{what} is larger than {} MiB, the most one record may be; split it",
        MAX_RECORD_BYTES >> 20
    ))
}

/// The next record of `input` up to `delimiter` (not included), or `None` at the
/// end. A last record without a delimiter counts; an empty input after the last
/// delimiter does not. Bounded by [`MAX_RECORD_BYTES`].
pub(crate) fn read_record(
    input: &mut impl BufRead,
    delimiter: &[u8],
    strip_cr: bool,
    number: u64,
) -> Result<Option<Vec<u8>>, Failure> {
    let last = delimiter[delimiter.len() - 1];
    let mut record = Vec::new();
    let limit = (MAX_RECORD_BYTES + delimiter.len() + 1) as u64;
    // Bounded: each read_until adds bytes or reaches the end; the record is capped.
    loop {
        let room = limit.saturating_sub(record.len() as u64);
        let n = input
            .by_ref()
            .take(room)
            .read_until(last, &mut record)
            .map_err(|e| Failure::new(crate::fail::EXIT_OTHER, format!("reading stdin: {e}")))?;
        if record.ends_with(delimiter) {
            record.truncate(record.len() - delimiter.len());
            if strip_cr && record.last() == Some(&b'\r') {
                record.pop(); // CRLF input
            }
            break;
        }
        if record.len() as u64 >= limit {
            return Err(too_large(&format!("record {number} of stdin")));
        }
        if n == 0 {
            if record.is_empty() {
                return Ok(None);
            }
            break;
        }
    }
    if record.len() > MAX_RECORD_BYTES {
        return Err(too_large(&format!("record {number} of stdin")));
    }
    Ok(Some(record))
}

/// The record format the output flags ask for.
pub(crate) fn record_format(
    kind: OutputKind,
    custom: Option<&str>,
    flags: &RecordOutput,
) -> Result<RecordFormat, Failure> {
    let end = if flags.null { 0 } else { b'\n' };
    Ok(match (custom, kind, flags.values_only) {
        (Some(f), _, _) => RecordFormat::custom(f).map_err(Failure::usage)?,
        (None, OutputKind::Json, _) => RecordFormat::Json,
        (None, OutputKind::Text, true) => RecordFormat::ValuesOnly { end },
        (None, OutputKind::Text, false) => RecordFormat::Text {
            end,
            print: Print {
                key: flags.print_key,
                timestamp: flags.print_timestamp,
                headers: flags.print_headers,
            },
        },
    })
}

pub(crate) fn consume(s: &Settings, args: &ConsumeArgs, out: &mut Out<'_>) -> Result<(), Output> {
    if let Some(group) = &args.group {
        return crate::group::consume(s, args, group, out);
    }
    let format = record_format(s.output, args.format.as_deref(), &args.output)?;
    let target = TopicPartition::new(args.topic.as_str(), args.partition.unwrap_or(0));
    let mut client = connect(s)?;
    // Without --count: to the end, then exit (unless --follow). With --count: wait
    // for the records (unless -e).
    let follow = args.follow || (args.count.is_some() && !args.exit_at_end);
    let want = args.count.unwrap_or(u64::MAX);
    let mut next = match from::resolve(&mut client, &target, args.from) {
        Ok(Some(offset)) => offset,
        Ok(None) => first_offset(&mut client, &target).map_err(|e| explain(&s.addr, e))?,
        Err(e) => return Err(explain(&s.addr, e).into()),
    };
    let mut printed = 0u64;
    // Bounded: without `follow` every pass advances toward the end or stops.
    while printed < want {
        let wait_ms = if follow { FOLLOW_WAIT_MS } else { 0 };
        let fetched = client
            .fetch_records_from(&target, next, FETCH_BYTES, wait_ms)
            .map_err(|e| explain(&s.addr, e))?;
        let got_any = !fetched.records.is_empty();
        for record in &fetched.records {
            if printed >= want {
                break;
            }
            format.write_record(out, &target, &Shown::of(record))?;
            next = Offset(record.offset.0 + 1);
            printed += 1;
        }
        // Records appear as they arrive, not when a buffer fills.
        out.flush()?;
        if !follow && (!got_any || next >= fetched.high_watermark) {
            break;
        }
    }
    Ok(())
}

/// How much further back than `-n` offsets `tail` starts: offsets held by internal
/// Raft entries (no-ops, configuration changes) carry no record.
const TAIL_SLACK_OFFSETS: u64 = 64;

pub(crate) fn tail(s: &Settings, args: &TailArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let format = record_format(s.output, args.format.as_deref(), &args.output)?;
    let target = TopicPartition::new(args.topic.as_str(), args.partition.unwrap_or(0));
    let mut client = connect(s)?;
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    if let Some(at) = args.from {
        let start = match from::resolve(&mut client, &target, at).map_err(fail)? {
            Some(offset) => offset,
            None => first_offset(&mut client, &target).map_err(fail)?,
        };
        return tail_from(
            s,
            (&mut client, &target),
            start,
            args.follow,
            (&format, out),
        );
    }
    // The high-water mark (exclusive end) as a reader sees it.
    let first = first_offset(&mut client, &target).map_err(fail)?;
    let end = client
        .fetch_from(&target, first, 1, 0)
        .map_err(fail)?
        .high_watermark;
    let lines = usize::try_from(args.lines.min(1_000_000)).unwrap_or(1_000_000);
    let start = end
        .0
        .saturating_sub(args.lines.saturating_add(TAIL_SLACK_OFFSETS));
    let (last, mut next) =
        last_records(&mut client, &target, Offset(start), end, lines).map_err(fail)?;
    for record in &last {
        format.write_record(out, &target, &Shown::of(record))?;
    }
    out.flush()?;
    if lines == 0 {
        next = end;
    }
    if !args.follow {
        return Ok(());
    }
    // Follow: long-poll for new records until interrupted.
    loop {
        let fetched = client
            .fetch_records_from(&target, next, FETCH_BYTES, FOLLOW_WAIT_MS)
            .map_err(fail)?;
        for record in &fetched.records {
            format.write_record(out, &target, &Shown::of(record))?;
            next = Offset(record.offset.0 + 1);
        }
        out.flush()?;
    }
}

/// `tail --from`: every record from `next` to the end, then (with `follow`) new
/// ones as they arrive.
fn tail_from(
    s: &Settings,
    (client, target): (&mut ClusterClient, &TopicPartition),
    mut next: Offset,
    follow: bool,
    (format, out): (&RecordFormat, &mut Out<'_>),
) -> Result<(), Output> {
    // Bounded: without `follow` every pass advances toward the end or stops.
    loop {
        let wait_ms = if follow { FOLLOW_WAIT_MS } else { 0 };
        let fetched = client
            .fetch_records_from(target, next, FETCH_BYTES, wait_ms)
            .map_err(|e| explain(&s.addr, e))?;
        let got_any = !fetched.records.is_empty();
        for record in &fetched.records {
            format.write_record(out, target, &Shown::of(record))?;
            next = Offset(record.offset.0 + 1);
        }
        out.flush()?;
        if !follow && (!got_any || next >= fetched.high_watermark) {
            return Ok(());
        }
    }
}

/// Where "from the start" begins: the partition's first retained offset
/// (ListOffsets earliest; the `consume` action, no Status). A server older than
/// ListOffsets is asked the old way: a fetch at offset 0 (0 means its first record),
/// else the start of the range its `OFFSET_OUT_OF_RANGE` names (`the log holds
/// [1, 308)`), else 1.
pub(crate) fn first_offset(
    client: &mut ClusterClient,
    target: &TopicPartition,
) -> commitlog::client::Result<Offset> {
    match client.list_offset(target, commitlog::wire::OffsetSpec::Earliest) {
        Ok(listed) => Ok(listed.offset),
        Err(e)
            if matches!(
                e.code(),
                Some(ErrorCode::UnsupportedApi | ErrorCode::UnsupportedVersion)
            ) =>
        {
            first_offset_by_fetch(client, target)
        }
        Err(e) => Err(e),
    }
}

fn first_offset_by_fetch(
    client: &mut ClusterClient,
    target: &TopicPartition,
) -> commitlog::client::Result<Offset> {
    match client.fetch_from(target, Offset(0), 1, 0) {
        Ok(_) => Ok(Offset(0)),
        Err(commitlog::client::ClientError::Server {
            code: ErrorCode::OffsetOutOfRange,
            message,
            ..
        }) => {
            let named = message
                .split_once("holds [")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|n| n.trim().parse().ok());
            Ok(Offset(named.unwrap_or(1)))
        }
        Err(e) => Err(e),
    }
}

/// The last `lines` records before `end`, reading from `start` (from the log's
/// first record if retention removed `start`); and the offset after them.
fn last_records(
    client: &mut ClusterClient,
    target: &TopicPartition,
    start: Offset,
    end: Offset,
    lines: usize,
) -> commitlog::client::Result<(VecDeque<ConsumedRecord>, Offset)> {
    let mut next = start;
    // Bounded memory: only the last `lines` records are kept.
    let mut last: VecDeque<ConsumedRecord> = VecDeque::with_capacity(lines.min(4096));
    // Bounded: every fetch returns records (advancing `next`) or we stop.
    while next < end && lines > 0 {
        let fetched = match client.fetch_records_from(target, next, FETCH_BYTES, 0) {
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) && next != Offset(0) => {
                next = Offset(0);
                continue;
            }
            other => other?,
        };
        if fetched.records.is_empty() {
            break;
        }
        for record in fetched.records {
            next = Offset(record.offset.0 + 1);
            if last.len() == lines {
                last.pop_front();
            }
            last.push_back(record);
        }
    }
    Ok((last, next))
}
