//! The `produce`, `consume`, `tail`, `servers`, `status` and `health` commands.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::time::Instant;

use commitlog::client::cluster::report;
use commitlog::client::Record;
use commitlog::types::Offset;

use crate::{
    connect, connect_first, explain, Cli, ConsumeArgs, Failure, Out, Output, ProduceArgs, TailArgs,
};

pub(crate) fn produce(cli: &Cli, args: &ProduceArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    if !args.values.is_empty() {
        for value in &args.values {
            let offset = client
                .produce(value.as_bytes())
                .map_err(|e| explain(&cli.addr, e))?;
            writeln!(out, "{offset}")?;
        }
        return Ok(());
    }
    let batch_max = args.batch.clamp(1, 100_000);
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut batch: Vec<String> = Vec::with_capacity(batch_max);
    let mut batch_bytes = 0usize;
    let (mut produced, mut first, mut last) = (0u64, None::<Offset>, None::<Offset>);
    loop {
        let line = lines
            .next()
            .transpose()
            .map_err(|e| Failure(format!("reading stdin: {e}")))?;
        let end = line.is_none();
        if let Some(mut line) = line {
            if line.ends_with('\r') {
                line.pop(); // CRLF input
            }
            batch_bytes += line.len();
            batch.push(line);
        }
        if !batch.is_empty() && (end || batch.len() >= batch_max || batch_bytes >= 1 << 20) {
            let values: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
            let offset = client
                .produce_batch(&values)
                .map_err(|e| explain(&cli.addr, e))?;
            produced += values.len() as u64;
            first.get_or_insert(offset);
            last = Some(Offset(offset.0 + values.len() as u64 - 1));
            batch.clear();
            batch_bytes = 0;
        }
        if end {
            break;
        }
    }
    match (first, last) {
        (Some(f), Some(l)) => writeln!(out, "produced {produced} records at offsets {f}..={l}")?,
        _ => writeln!(out, "produced 0 records (stdin was empty)")?,
    }
    Ok(())
}

fn print_record(
    out: &mut Out<'_>,
    offset: Offset,
    value: &[u8],
    values_only: bool,
) -> io::Result<()> {
    if !values_only {
        write!(out, "{offset}\t")?;
    }
    out.write_all(value)?;
    out.write_all(b"\n")
}

pub(crate) fn consume(cli: &Cli, args: &ConsumeArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let mut next = Offset(args.from);
    let mut printed = 0u64;
    let want = args.count.unwrap_or(u64::MAX);
    // Bounded: each fetch returns at least one record or we stop at the end.
    while printed < want {
        let wait_ms = if args.count.is_some() { 1000 } else { 0 };
        let fetched = client
            .fetch(next, 1 << 20, wait_ms)
            .map_err(|e| explain(&cli.addr, e))?;
        if fetched.records.is_empty() {
            if args.count.is_none() || next >= fetched.high_watermark && wait_ms == 0 {
                break;
            }
            continue;
        }
        for record in fetched.records {
            if printed >= want {
                break;
            }
            print_record(out, record.offset, &record.value, args.values_only)?;
            next = Offset(record.offset.0 + 1);
            printed += 1;
        }
    }
    Ok(())
}

/// How much further back than `-n` offsets `tail` starts: offsets held by internal
/// Raft entries (no-ops, configuration changes) carry no record.
const TAIL_SLACK_OFFSETS: u64 = 64;

pub(crate) fn tail(cli: &Cli, args: &TailArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let first = client
        .leader_status()
        .map_err(|e| explain(&cli.addr, e))?
        .first_index;
    // The high-water mark (exclusive end) as a reader sees it.
    let end = client
        .fetch(first, 1, 0)
        .map_err(|e| explain(&cli.addr, e))?
        .high_watermark;
    let lines = usize::try_from(args.lines.min(1_000_000)).unwrap_or(1_000_000);
    let mut next = Offset(
        end.0
            .saturating_sub(args.lines.saturating_add(TAIL_SLACK_OFFSETS))
            .max(first.0),
    );
    // Keep only the last `lines` records seen up to the end (bounded memory).
    let mut last: VecDeque<Record> = VecDeque::with_capacity(lines.min(4096));
    // Bounded: every fetch returns records (advancing `next`) or we stop.
    while next < end && lines > 0 {
        let fetched = client
            .fetch(next, 1 << 20, 0)
            .map_err(|e| explain(&cli.addr, e))?;
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
    for record in &last {
        print_record(out, record.offset, &record.value, args.values_only)?;
    }
    if lines == 0 {
        next = end;
    }
    if !args.follow {
        return Ok(());
    }
    // Follow: long-poll for new records until interrupted.
    loop {
        out.flush()?;
        let fetched = client
            .fetch(next, 1 << 20, 5_000)
            .map_err(|e| explain(&cli.addr, e))?;
        for record in &fetched.records {
            print_record(out, record.offset, &record.value, args.values_only)?;
            next = Offset(record.offset.0 + 1);
        }
    }
}

pub(crate) fn servers(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let members = client.servers().map_err(|e| explain(&cli.addr, e))?;
    out.write_all(report::servers_table(&members).as_bytes())?;
    Ok(())
}

pub(crate) fn status(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(cli)?;
    let rows = client.status_all().map_err(|e| explain(&cli.addr, e))?;
    out.write_all(report::status_table(&rows).as_bytes())?;
    Ok(())
}

pub(crate) fn health(cli: &Cli, out: &mut Out<'_>) -> Result<(), Output> {
    let started = Instant::now();
    let mut client = connect_first(cli)?;
    client.ping().map_err(|e| explain(&cli.addr, e))?;
    let rtt_us = started.elapsed().as_micros();
    let s = client.status().map_err(|e| explain(&cli.addr, e))?;
    writeln!(
        out,
        "ok {} at {}: role={} term={} commit={} first={} last={} (connect+ping {rtt_us} us)",
        s.node_name, cli.addr, s.role, s.term, s.commit_index, s.first_index, s.last_index
    )?;
    Ok(())
}
