//! Consumer groups: `clog consume --group G` (resume where G stopped, commit as it
//! goes) and `clog group list|describe|reset|delete`.
//!
//! A group's cursor on a partition is the next offset it will read, stored in the
//! cluster (wire-spec §16). `consume --group` is **at-least-once**: it commits the
//! offset after the last record it has *printed* (written and flushed), every
//! `--commit-interval-ms` and once more when it stops (end of the log, `--count`
//! reached, an error, or Ctrl-C), so a crash can print some records again on the
//! next run but never skips one.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Subcommand};
use serde_json::json;

use commitlog::client::cluster::ClusterClient;
use commitlog::client::records::ConsumedRecord;
use commitlog::client::ClientError;
use commitlog::types::Offset;
use commitlog::wire::{ErrorCode, OffsetCommit, OffsetSpec, TopicPartition};

use crate::commands::{first_offset, record_format};
use crate::fail::{explain, Failure};
use crate::format::{RecordFormat, Shown};
use crate::from;
use crate::{connect, ConsumeArgs, Out, Output, OutputKind, Settings};

/// Bytes asked per Fetch.
const FETCH_BYTES: u32 = 1 << 20;
/// How long one Fetch waits for new records when following: short enough that a
/// consumer commits about every interval even when records trickle in.
const FOLLOW_WAIT_MS: u32 = 1_000;

#[derive(Subcommand, Debug)]
pub(crate) enum GroupCommand {
    /// List the consumer groups and how many cursors each has.
    #[command(after_help = "\
Examples:
  clog group list
  clog group list -o json | jq -r .group")]
    List,
    /// Show a group's cursors: topic, partition, next offset to read, the
    /// partition's end (high-water mark) and the lag (offsets left to read: internal
    /// entries count too, so at most that many records).
    #[command(after_help = "\
Examples:
  clog group describe billing
  clog group describe billing -o json | jq .lag")]
    Describe {
        /// The group.
        group: String,
    },
    /// Move a group's cursors on a topic: to the first retained record, to the end
    /// (skip everything until now) or to an offset. Stop the group's consumers
    /// first: a running consumer commits over the reset.
    #[command(after_help = "\
Examples:
  clog group reset billing --topic orders --to start     # read everything again
  clog group reset billing --topic orders --to end       # skip to new records
  clog group reset billing --topic orders --partition 2 --to 1500")]
    Reset(ResetArgs),
    /// Delete a group and its cursors (its consumers then start over).
    #[command(after_help = "\
Examples:
  clog group delete billing")]
    Delete {
        /// The group.
        group: String,
    },
}

#[derive(ClapArgs, Debug)]
pub(crate) struct ResetArgs {
    /// The group.
    group: String,
    /// The topic whose cursors move.
    #[arg(short = 't', long)]
    topic: String,
    /// Only this partition [default: every partition of the topic].
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    /// `start` (the first retained record), `end` (the high-water mark) or an offset.
    #[arg(long, value_parser = parse_to)]
    to: ResetTo,
}

/// Where `group reset --to` moves cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetTo {
    Start,
    End,
    Offset(u64),
}

fn parse_to(text: &str) -> Result<ResetTo, String> {
    match text {
        "start" => Ok(ResetTo::Start),
        "end" => Ok(ResetTo::End),
        n => n
            .parse()
            .map(ResetTo::Offset)
            .map_err(|e| format!("{e}; give start, end or an offset")),
    }
}

pub(crate) fn run(s: &Settings, cmd: &GroupCommand, out: &mut Out<'_>) -> Result<(), Output> {
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    let mut client = connect(s)?;
    match cmd {
        GroupCommand::List => {
            let groups = client.list_groups().map_err(fail)?;
            if s.output == OutputKind::Text {
                writeln!(out, "GROUP\tCURSORS")?;
            }
            for g in groups {
                match s.output {
                    OutputKind::Text => writeln!(out, "{}\t{}", g.name, g.cursors)?,
                    OutputKind::Json => {
                        writeln!(out, "{}", json!({ "group": g.name, "cursors": g.cursors }))?
                    }
                }
            }
        }
        GroupCommand::Describe { group } => describe(s, &mut client, group, out)?,
        GroupCommand::Reset(args) => reset(s, &mut client, args, out)?,
        GroupCommand::Delete { group } => {
            client.delete_group(group).map_err(fail)?;
            match s.output {
                OutputKind::Text => writeln!(out, "deleted group {group}")?,
                OutputKind::Json => {
                    writeln!(out, "{}", json!({ "group": group, "deleted": true }))?
                }
            }
        }
    }
    Ok(())
}

fn describe(
    s: &Settings,
    client: &mut ClusterClient,
    group: &str,
    out: &mut Out<'_>,
) -> Result<(), Output> {
    let cursors = client
        .fetch_offsets(group, &[])
        .map_err(|e| explain(&s.addr, e))?;
    if cursors.is_empty() {
        return Err(Failure::new(
            crate::fail::EXIT_NOT_FOUND,
            format!("group {group} has no cursor (`clog group list` shows the groups)"),
        )
        .into());
    }
    if s.output == OutputKind::Text {
        writeln!(out, "TOPIC\tPARTITION\tOFFSET\tEND\tLAG")?;
    }
    for c in cursors {
        // The end is best effort: a partition that cannot be read now shows `-`.
        let end = client
            .fetch_from(&c.target, Offset(0), 1, 0)
            .ok()
            .map(|f| f.high_watermark.0);
        let lag = end.map(|e| e.saturating_sub(c.offset));
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        match s.output {
            OutputKind::Text => writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                c.target.topic,
                c.target.partition,
                c.offset,
                show(end),
                show(lag)
            )?,
            OutputKind::Json => writeln!(
                out,
                "{}",
                json!({ "group": group, "topic": c.target.topic,
                        "partition": c.target.partition, "offset": c.offset,
                        "end": end, "lag": lag })
            )?,
        }
    }
    Ok(())
}

fn reset(
    s: &Settings,
    client: &mut ClusterClient,
    args: &ResetArgs,
    out: &mut Out<'_>,
) -> Result<(), Output> {
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => (0..client.partition_count(&args.topic).map_err(fail)?).collect(),
    };
    let mut offsets = Vec::with_capacity(partitions.len());
    for p in partitions {
        let target = TopicPartition::new(args.topic.as_str(), p);
        let offset = match args.to {
            ResetTo::Offset(o) => o,
            ResetTo::Start => first_offset(client, &target).map_err(fail)?.0,
            ResetTo::End => {
                client
                    .fetch_from(&target, Offset(0), 1, 0)
                    .map_err(fail)?
                    .high_watermark
                    .0
            }
        };
        offsets.push(OffsetCommit {
            target,
            offset,
            metadata: Vec::new(),
        });
    }
    // Bounded by the server's limit of partitions per commit.
    for chunk in offsets.chunks(commitlog::wire::MAX_GROUP_REQUEST_PARTITIONS) {
        let results = client.commit_offsets(&args.group, chunk).map_err(fail)?;
        for (r, o) in results.iter().zip(chunk) {
            check_stored(r.error, &r.target)?;
            match s.output {
                OutputKind::Text => writeln!(
                    out,
                    "{}\t{}\t{}",
                    r.target.topic, r.target.partition, o.offset
                )?,
                OutputKind::Json => writeln!(
                    out,
                    "{}",
                    json!({ "group": args.group, "topic": r.target.topic,
                            "partition": r.target.partition, "offset": o.offset })
                )?,
            }
        }
    }
    Ok(())
}

fn check_stored(code: ErrorCode, target: &TopicPartition) -> Result<(), Failure> {
    if code == ErrorCode::None {
        return Ok(());
    }
    let e = ClientError::Server {
        code,
        message: format!("the cursor of {target} was not stored ({code})"),
        leader_hint: None,
    };
    Err(explain("", e))
}

/// What a Ctrl-C commits before clog exits: the running `consume --group`'s
/// position (set while one runs).
struct Pending {
    settings: Settings,
    group: String,
    target: TopicPartition,
    next: u64,
}

static ON_INTERRUPT: Mutex<Option<Pending>> = Mutex::new(None);

/// How long Ctrl-C waits for a flush in progress before it exits without a commit.
const INTERRUPT_LOCK_WAIT: Duration = Duration::from_secs(2);

fn lock_pending() -> std::sync::MutexGuard<'static, Option<Pending>> {
    ON_INTERRUPT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called by the Ctrl-C handler before it exits: commits the position of a running
/// `consume --group` (within --timeout-ms/--retry-ms), so the next run resumes after
/// the last record printed.
pub(crate) fn commit_on_interrupt() {
    // The consumer holds the lock while it flushes records and records how far it
    // printed; a stalled stdout must not keep Ctrl-C from ending clog, hence the
    // bounded wait (then nothing is committed: the next run prints those again).
    let deadline = Instant::now() + INTERRUPT_LOCK_WAIT;
    let pending = loop {
        match ON_INTERRUPT.try_lock() {
            Ok(mut guard) => break guard.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::sync::TryLockError::WouldBlock) => break None,
        }
    };
    // Nothing printed from a start at "the first retained record": nothing to store.
    let Some(p) = pending.filter(|p| p.next != 0) else {
        return;
    };
    let committed = connect(&p.settings)
        .map_err(|f| f.message)
        .and_then(|mut c| commit(&mut c, &p.group, &p.target, p.next).map_err(|e| e.to_string()));
    if let Err(e) = committed {
        eprintln!(
            "clog: could not commit group {} at {}: {e}",
            p.group, p.next
        );
    }
}

fn commit(
    client: &mut ClusterClient,
    group: &str,
    target: &TopicPartition,
    next: u64,
) -> Result<(), ClientError> {
    let entry = OffsetCommit {
        target: target.clone(),
        offset: next,
        metadata: Vec::new(),
    };
    let results = client.commit_offsets(group, &[entry])?;
    match results.first().map(|r| r.error) {
        Some(ErrorCode::None) => Ok(()),
        code => Err(ClientError::Server {
            code: code.unwrap_or(ErrorCode::Internal),
            message: format!("the cursor of {target} was not stored"),
            leader_hint: None,
        }),
    }
}

/// `clog consume --group G`: from G's cursor (or `--from` when it has none), printing
/// and committing as it goes (see the module doc).
pub(crate) fn consume(
    s: &Settings,
    args: &ConsumeArgs,
    group: &str,
    out: &mut Out<'_>,
) -> Result<(), Output> {
    let format = record_format(s.output, args.format.as_deref(), &args.output)?;
    let target = TopicPartition::new(args.topic.as_str(), args.partition.unwrap_or(0));
    let mut client = connect(s)?;
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    let mut next = start(&mut client, group, &target, args.from).map_err(fail)?;
    let mut committed = next;
    *lock_pending() = Some(Pending {
        settings: s.clone(),
        group: group.to_string(),
        target: target.clone(),
        next: next.0,
    });
    let interval = Duration::from_millis(args.commit_interval_ms);
    let follow = args.follow || (args.count.is_some() && !args.exit_at_end);
    let want = args.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut last_commit = Instant::now();
    // Bounded: without `follow` every pass advances toward the end or stops; with
    // it, until --count records or Ctrl-C.
    let read: Result<(), Output> = loop {
        if printed >= want {
            break Ok(());
        }
        let wait_ms = if follow { FOLLOW_WAIT_MS } else { 0 };
        let fetched = match client.fetch_records_from(&target, next, FETCH_BYTES, wait_ms) {
            Ok(f) => f,
            Err(e) => break Err(fail(e)),
        };
        let left = usize::try_from(want - printed).unwrap_or(usize::MAX);
        let batch = &fetched.records[..fetched.records.len().min(left)];
        if let Err(e) = print_batch(&format, out, &target, batch) {
            break Err(e);
        }
        if let Some(last) = batch.last() {
            next = Offset(last.offset.0 + 1);
        }
        printed += batch.len() as u64;
        if next != committed && last_commit.elapsed() >= interval {
            if let Err(e) = commit(&mut client, group, &target, next.0) {
                break Err(fail(e));
            }
            (committed, last_commit) = (next, Instant::now());
        }
        if !follow && (batch.is_empty() || next >= fetched.high_watermark) {
            break Ok(());
        }
    };
    lock_pending().take();
    // `next` only ever covers records flushed to stdout.
    if next != committed {
        if let Err(e) = commit(&mut client, group, &target, next.0) {
            // The read's own error (if any) is the one to report.
            read?;
            return Err(fail(e));
        }
    }
    read
}

/// Prints `records` and flushes them. The Ctrl-C lock is held across the flush and
/// the position update, so a Ctrl-C commits either before these records or after
/// all of them; a batch that did not reach stdout whole moves nothing (the next
/// run prints it again: at-least-once).
fn print_batch(
    format: &RecordFormat,
    out: &mut Out<'_>,
    target: &TopicPartition,
    records: &[ConsumedRecord],
) -> Result<(), Output> {
    let mut pending = lock_pending();
    for record in records {
        format.write_record(out, target, &Shown::of(record))?;
    }
    out.flush()?;
    if let (Some(p), Some(last)) = (pending.as_mut(), records.last()) {
        p.next = last.offset.0 + 1;
    }
    Ok(())
}

/// Where a group consumer starts: its cursor, else `--from` (default: the first retained
/// record); a cursor below the first retained record starts at that record.
fn start(
    client: &mut ClusterClient,
    group: &str,
    target: &TopicPartition,
    from: from::StartAt,
) -> Result<Offset, ClientError> {
    let cursors = client.fetch_offsets(group, std::slice::from_ref(target))?;
    let cursor = match cursors.first() {
        Some(c) if c.error != ErrorCode::None => {
            return Err(ClientError::Server {
                code: c.error,
                message: format!("cannot read group {group}'s cursor of {target}"),
                leader_hint: None,
            })
        }
        Some(c) => c.offset,
        None => 0,
    };
    if cursor == 0 {
        return match from::resolve(client, target, from)? {
            Some(offset) => Ok(offset),
            None => first_offset(client, target),
        };
    }
    // Below the first retained offset, retention removed the records the group had
    // not read yet: say so and go on from what is left.
    let first = client.list_offset(target, OffsetSpec::Earliest)?.offset;
    if first.0 > cursor {
        eprintln!(
            "clog: group {group}'s position {cursor} on {target} was removed by retention; \
             starting at {first}"
        );
        return Ok(first);
    }
    Ok(Offset(cursor))
}
