//! `clog topic create|list|describe|alter|delete`: topic administration.
//!
//! Create, alter and delete need the `admin` action on the topic and go to the
//! metadata leader (the client follows `NOT_LEADER` hints); list and describe need
//! `describe`. Text tables or, with `-o json`, one JSON object per topic.

use std::io::{self, BufRead, IsTerminal, Write};

use clap::{Args as ClapArgs, Subcommand};
use serde_json::{json, Value};

use commitlog::types::NodeId;
use commitlog::wire::{
    PartitionInfo, TopicChanges, TopicDescription, TopicMetadata, TopicSettings, DEFAULT_TOPIC,
};

use crate::fail::{explain, Failure};
use crate::{connect, Out, Output, OutputKind, Settings};

#[derive(Subcommand, Debug)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    #[command(after_help = "\
Examples:
  clog topic create orders --partitions 3 --replication-factor 3
  clog topic create logs --retention-bytes 1073741824 --retention-ms 604800000
  clog topic create users --cleanup-policy compact --tombstone-retention 1d
  clog topic create events --timestamp-type leader
  clog topic create scratch -o json")]
    Create(CreateArgs),
    /// List the topics: name, partitions, replicas of each partition.
    #[command(after_help = "\
Examples:
  clog topic list
  clog topic list -o json | jq -r .name")]
    List,
    /// Show a topic's settings and where each partition lives (leader as the
    /// answering node knows it; `-` when it does not host that partition).
    #[command(after_help = "\
Examples:
  clog topic describe orders
  clog topic describe orders -o json | jq .partitions")]
    Describe {
        /// The topic.
        name: String,
    },
    /// Change a topic's settings: add partitions (never fewer), retention, record
    /// size limit. Settings not given stay as they are.
    #[command(after_help = "\
Examples:
  clog topic alter orders --partitions 6
  clog topic alter logs --retention-ms none --retention-bytes 10737418240
  clog topic alter users --cleanup-policy compact --tombstone-retention 12h")]
    Alter(AlterArgs),
    /// Delete a topic and all its records. Asks for confirmation unless --yes; the
    /// `default` topic cannot be deleted.
    #[command(after_help = "\
Examples:
  clog topic delete scratch                  # asks: type the name to confirm
  clog topic delete scratch --yes            # scripts")]
    Delete {
        /// The topic.
        name: String,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

#[derive(ClapArgs, Debug)]
pub(crate) struct CreateArgs {
    /// The new topic's name: letters, digits, `.`, `_` and `-`.
    name: String,
    /// Number of partitions (each is its own Raft group).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replicas per partition: 1, 3, 5 or `all` (every voter of the cluster).
    #[arg(long, default_value = "all", value_parser = parse_replication)]
    replication_factor: u8,
    /// Keep at most this many bytes per partition [default: no limit].
    #[arg(long, value_name = "B")]
    retention_bytes: Option<u64>,
    /// Keep records at most this many milliseconds [default: no limit].
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// Largest record value in bytes [default: the server's].
    #[arg(long, value_name = "B")]
    max_record_bytes: Option<u32>,
    /// Segment file size in bytes [default: the server's].
    #[arg(long, value_name = "B")]
    segment_bytes: Option<u64>,
    #[command(flatten)]
    v2: SettingsV2Args,
}

/// The settings-v2 flags of create and alter (wire-spec §18).
#[derive(ClapArgs, Debug, Default)]
pub(crate) struct SettingsV2Args {
    /// Whose clock stamps records: `producer` (kept as sent) or `leader` (set on
    /// append) [default: producer].
    #[arg(long, value_name = "producer|leader", value_parser = parse_timestamp_type)]
    timestamp_type: Option<u8>,
    /// `delete` (retention only) or `compact` (also keep only the newest record
    /// per key) [default: delete].
    #[arg(long, value_name = "delete|compact", value_parser = parse_cleanup_policy)]
    cleanup_policy: Option<u8>,
    /// How long a compacted topic keeps a tombstone (a key with an empty value):
    /// `500ms`, `30s`, `10m`, `12h`, `1d`, or plain milliseconds [default: 1d].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    tombstone_retention: Option<u64>,
}

#[derive(ClapArgs, Debug)]
pub(crate) struct AlterArgs {
    /// The topic.
    name: String,
    /// New partition count (more than now; partitions are never removed).
    #[arg(long)]
    partitions: Option<u32>,
    /// New size retention per partition in bytes, or `none` to remove the limit.
    #[arg(long, value_name = "B|none", value_parser = parse_limit)]
    retention_bytes: Option<u64>,
    /// New age retention in milliseconds, or `none` to remove the limit.
    #[arg(long, value_name = "MS|none", value_parser = parse_limit)]
    retention_ms: Option<u64>,
    /// New largest record value in bytes.
    #[arg(long, value_name = "B")]
    max_record_bytes: Option<u32>,
    #[command(flatten)]
    v2: SettingsV2Args,
}

/// `--timestamp-type`: 0 producer, 1 leader (the wire codes).
fn parse_timestamp_type(text: &str) -> Result<u8, String> {
    match text {
        "producer" | "create" => Ok(0),
        "leader" | "append" => Ok(1),
        _ => Err("give producer or leader".into()),
    }
}

/// `--cleanup-policy`: 0 delete, 1 compact (the wire codes).
fn parse_cleanup_policy(text: &str) -> Result<u8, String> {
    match text {
        "delete" => Ok(0),
        "compact" => Ok(1),
        _ => Err("give delete or compact".into()),
    }
}

/// A duration in milliseconds: a number with a unit (`ms`, `s`, `m`, `h`, `d`) or
/// plain milliseconds; more than 0.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: give a number and a unit, like 30s, 10m, 12h or 1d"))?;
    let unit_ms: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: the unit is one of ms, s, m, h, d")),
    };
    match n.checked_mul(unit_ms) {
        Some(0) => Err("a duration of 0 keeps nothing; give more".into()),
        Some(ms) => Ok(ms),
        None => Err(format!("{text:?} is too long")),
    }
}

/// `--replication-factor`: 1, 3, 5 or `all` (0 on the wire).
fn parse_replication(text: &str) -> Result<u8, String> {
    match text {
        "all" => Ok(0),
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("give 1, 3, 5 or all (odd sizes keep a Raft majority)".into()),
    }
}

/// A retention limit: a number, or `none` (0 on the wire clears it).
fn parse_limit(text: &str) -> Result<u64, String> {
    if text == "none" {
        return Ok(0);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("0 is not a limit; give `none` to remove it".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; give a number or `none`")),
    }
}

pub(crate) fn run(s: &Settings, cmd: &TopicCommand, out: &mut Out<'_>) -> Result<(), Output> {
    let fail = |e| -> Output { explain(&s.addr, e).into() };
    match cmd {
        TopicCommand::Create(args) => {
            let settings = TopicSettings {
                partitions: args.partitions,
                replication: args.replication_factor,
                retention_bytes: args.retention_bytes.unwrap_or(0),
                retention_age_ms: args.retention_ms.unwrap_or(0),
                max_record_bytes: args.max_record_bytes.unwrap_or(0),
                segment_bytes: args.segment_bytes.unwrap_or(0),
                timestamp_type: args.v2.timestamp_type.unwrap_or(0),
                cleanup_policy: args.v2.cleanup_policy.unwrap_or(0),
                tombstone_retention_ms: args.v2.tombstone_retention.unwrap_or(0),
            };
            let mut client = connect(s)?;
            let d = client.create_topic(&args.name, settings).map_err(fail)?;
            write_description(s, out, "created", &d)
        }
        TopicCommand::List => {
            let mut client = connect(s)?;
            let mut topics = client.list_topics().map_err(fail)?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            write_list(s, out, &topics)
        }
        TopicCommand::Describe { name } => {
            let mut client = connect(s)?;
            let d = client.describe_topic(name).map_err(fail)?;
            write_description(s, out, "", &d)
        }
        TopicCommand::Alter(args) => alter(s, args, out),
        TopicCommand::Delete { name, yes } => delete(s, name, *yes, out),
    }
}

fn alter(s: &Settings, args: &AlterArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let changes = TopicChanges {
        partitions: args.partitions,
        retention_bytes: args.retention_bytes,
        retention_age_ms: args.retention_ms,
        max_record_bytes: args.max_record_bytes,
        timestamp_type: args.v2.timestamp_type,
        cleanup_policy: args.v2.cleanup_policy,
        tombstone_retention_ms: args.v2.tombstone_retention,
    };
    if changes.flags() == 0 {
        return Err(Failure::usage(
            "nothing to change: give --partitions, --retention-bytes, --retention-ms, --max-record-bytes, --timestamp-type, --cleanup-policy or --tombstone-retention",
        )
        .into());
    }
    let mut client = connect(s)?;
    let d = client
        .alter_topic(&args.name, changes)
        .map_err(|e| explain(&s.addr, e))?;
    write_description(s, out, "altered", &d)
}

fn delete(s: &Settings, name: &str, yes: bool, out: &mut Out<'_>) -> Result<(), Output> {
    if name == DEFAULT_TOPIC {
        return Err(Failure::usage(format!(
            "the `{DEFAULT_TOPIC}` topic cannot be deleted (version-0 clients write to it)"
        ))
        .into());
    }
    if !yes {
        confirm(name)?;
    }
    let mut client = connect(s)?;
    client.delete_topic(name).map_err(|e| explain(&s.addr, e))?;
    match s.output {
        OutputKind::Text => writeln!(out, "deleted topic {name}")?,
        OutputKind::Json => writeln!(out, "{}", json!({ "name": name, "deleted": true }))?,
    }
    Ok(())
}

/// Asks for the topic's name on the terminal; refuses without one.
fn confirm(name: &str) -> Result<(), Failure> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(format!(
            "deleting topic {name} removes all its records; pass --yes to confirm (stdin is not a terminal to ask on)"
        )));
    }
    eprint!("Delete topic {name} and all its records? Type its name to confirm: ");
    let mut answer = String::new();
    stdin
        .lock()
        .take_line(&mut answer)
        .map_err(|e| Failure::new(crate::fail::EXIT_OTHER, format!("reading stdin: {e}")))?;
    if answer.trim() != name {
        return Err(Failure::usage(format!(
            "not confirmed; topic {name} was not deleted"
        )));
    }
    Ok(())
}

/// One bounded line of a reader.
trait TakeLine {
    fn take_line(&mut self, line: &mut String) -> io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, line: &mut String) -> io::Result<usize> {
        // A topic name is at most 249 bytes; a longer answer is not the name anyway.
        io::Read::take(self, 1024).read_line(line)
    }
}

fn leader_text(id: NodeId) -> String {
    if id == NodeId(0) {
        "-".to_string()
    } else {
        id.0.to_string()
    }
}

fn replicas_text(p: &PartitionInfo) -> String {
    let ids: Vec<String> = p.replicas.iter().map(|r| r.0.to_string()).collect();
    ids.join(",")
}

fn partition_json(p: &PartitionInfo) -> Value {
    json!({
        "partition": p.partition,
        "group": p.group.0,
        "leader": (p.leader != NodeId(0)).then_some(p.leader.0),
        "replicas": p.replicas.iter().map(|r| r.0).collect::<Vec<_>>(),
    })
}

fn replication_text(replication: u8) -> String {
    match replication {
        0 => "all".to_string(),
        n => n.to_string(),
    }
}

fn timestamp_type_text(code: u8) -> &'static str {
    if code == 1 {
        "leader"
    } else {
        "producer"
    }
}

fn cleanup_policy_text(code: u8) -> &'static str {
    if code == 1 {
        "compact"
    } else {
        "delete"
    }
}

fn limit_text(value: u64, unit: &str) -> String {
    match value {
        0 => "none".to_string(),
        n => format!("{n} {unit}"),
    }
}

fn write_description(
    s: &Settings,
    out: &mut Out<'_>,
    verb: &str,
    d: &TopicDescription,
) -> Result<(), Output> {
    let t = &d.settings;
    if s.output == OutputKind::Json {
        let v = json!({
            "name": d.name,
            "topic_id": d.topic_id,
            "partitions": d.partitions.iter().map(partition_json).collect::<Vec<_>>(),
            "replication": replication_text(t.replication),
            "retention_bytes": (t.retention_bytes != 0).then_some(t.retention_bytes),
            "retention_ms": (t.retention_age_ms != 0).then_some(t.retention_age_ms),
            "max_record_bytes": t.max_record_bytes,
            "segment_bytes": t.segment_bytes,
            "timestamp_type": d.settings_v2.then(|| timestamp_type_text(t.timestamp_type)),
            "cleanup_policy": d.settings_v2.then(|| cleanup_policy_text(t.cleanup_policy)),
            "tombstone_retention_ms": d.settings_v2.then_some(t.tombstone_retention_ms),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if !verb.is_empty() {
        writeln!(out, "{verb} topic {}", d.name)?;
    }
    writeln!(out, "name:              {}", d.name)?;
    writeln!(out, "id:                {}", d.topic_id)?;
    writeln!(out, "partitions:        {}", t.partitions)?;
    writeln!(
        out,
        "replication:       {}",
        replication_text(t.replication)
    )?;
    writeln!(
        out,
        "retention bytes:   {}",
        limit_text(t.retention_bytes, "B")
    )?;
    writeln!(
        out,
        "retention:         {}",
        limit_text(t.retention_age_ms, "ms")
    )?;
    writeln!(out, "max record bytes:  {}", t.max_record_bytes)?;
    writeln!(out, "segment bytes:     {}", t.segment_bytes)?;
    // Answers to version 0 (a create or alter without settings-v2 flags) do not
    // carry these; describe asks for them.
    if d.settings_v2 {
        writeln!(
            out,
            "timestamp type:    {}",
            timestamp_type_text(t.timestamp_type)
        )?;
        writeln!(
            out,
            "cleanup policy:    {}",
            cleanup_policy_text(t.cleanup_policy)
        )?;
        writeln!(out, "tombstone retention: {} ms", t.tombstone_retention_ms)?;
    }
    writeln!(out, "PARTITION  GROUP  LEADER  REPLICAS")?;
    for p in &d.partitions {
        writeln!(
            out,
            "{:<9}  {:<5}  {:<6}  {}",
            p.partition,
            p.group.0,
            leader_text(p.leader),
            replicas_text(p)
        )?;
    }
    Ok(())
}

fn write_list(s: &Settings, out: &mut Out<'_>, topics: &[TopicMetadata]) -> Result<(), Output> {
    if s.output == OutputKind::Json {
        for t in topics {
            let v = json!({
                "name": t.name,
                "partitions": t.partitions.len(),
                "replicas": t.partitions.iter().map(|p| p.replicas.iter().map(|r| r.0).collect::<Vec<_>>()).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let width = topics
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "{:<width$}  PARTITIONS  REPLICAS", "NAME")?;
    for t in topics {
        let replicas = t.partitions.first().map(replicas_text).unwrap_or_default();
        writeln!(
            out,
            "{:<width$}  {:<10}  {}",
            t.name,
            t.partitions.len(),
            replicas
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_factors_are_odd_or_all() {
        assert_eq!(parse_replication("all"), Ok(0));
        assert_eq!(parse_replication("3"), Ok(3));
        assert!(parse_replication("2").is_err());
        assert!(parse_replication("7").is_err());
    }

    #[test]
    fn settings_v2_flags_parse() {
        assert_eq!(parse_timestamp_type("leader"), Ok(1));
        assert_eq!(parse_timestamp_type("producer"), Ok(0));
        assert!(parse_timestamp_type("wall").is_err());
        assert_eq!(parse_cleanup_policy("compact"), Ok(1));
        assert!(parse_cleanup_policy("shrink").is_err());
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("12h"), Ok(43_200_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("1500"), Ok(1500));
        for bad in ["0s", "1w", "d", "", "-1d", "99999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_take_none_but_not_zero() {
        assert_eq!(parse_limit("none"), Ok(0));
        assert_eq!(parse_limit("1000"), Ok(1000));
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("x").is_err());
    }
}
