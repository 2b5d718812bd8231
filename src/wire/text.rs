//! The inline text protocol: one command per line, for `nc` and `telnet`.
//!
//! A connection whose first byte is an ASCII letter speaks this protocol. Lines end
//! with `\n` or `\r\n` and are at most [`MAX_LINE_BYTES`] long (terminator
//! included). Commands are case-insensitive; replies end with `\r\n`:
//!
//! | command | reply |
//! |---|---|
//! | `PING` | `+PONG` |
//! | `PRODUCE [@<topic>[/<partition>]] <text>` | `+OK <offset>` |
//! | `CONSUME [@<topic>[/<partition>]] <offset>` | `+<offset> <text>` |
//! | `SERVERS` | one line `<id> <name> <rpc_addr> <role> <up\|down>` per server, then `+END` |
//! | `STATUS` | `+<node> role=<role> term=<t> commit=<c> first=<f> last=<l>` |
//! | `HELP` | a few lines, then `+END` |
//! | `QUIT` | (the server closes the connection) |
//! | anything wrong | `-ERR <CODE_NAME> <message>` |
//!
//! Values are escaped in both directions with the same rules ([`escape`] /
//! [`unescape`]): printable ASCII other than `\` stands for itself; `\\`, `\n`, `\r`,
//! `\t` and `\xNN` (two hex digits) stand for the byte. So a `CONSUME` reply's text
//! can be pasted back into `PRODUCE`.
//!
//! `@<topic>[/<partition>]` right after `PRODUCE` or `CONSUME` picks a topic partition
//! (partition 0 when omitted); without it a command addresses the default topic's
//! partition 0, as before topics existed. A topic here is 1 to 249 printable ASCII
//! characters other than `/` and `\`. So a value for the default topic that starts
//! with `@` is written `\x40…`. Commands parse into the binary protocol's
//! [`Request`] and replies format the binary protocol's [`ResponseBody`] /
//! [`ErrorBody`], so the server has one code path for both protocols.

use crate::types::Offset;

use super::errors::{ErrorBody, ErrorCode};
use super::messages::{Request, ResponseBody, WireRecord};
use super::topics::{
    FetchedPartition, PartitionInfo, TopicDescription, TopicPartition, MAX_TOPIC_NAME_BYTES,
};

/// Longest accepted line, terminator included (64 KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A parsed text command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextCommand {
    /// A command that maps to a binary request (`PING`, `PRODUCE`, `CONSUME`,
    /// `SERVERS`, `STATUS`).
    Request(Request),
    /// `HELP`: answer with [`format_help`].
    Help,
    /// `QUIT`: close the connection.
    Quit,
}

/// Looks at the front of `buf`: `Ok(Some(n))` when a whole line of `n` bytes
/// (terminator included) is there, `Ok(None)` when more bytes are needed, and a
/// `FRAME_TOO_LARGE` error when no terminator appears within `max_line_bytes`.
pub fn line_len(buf: &[u8], max_line_bytes: usize) -> Result<Option<usize>, ErrorBody> {
    let window = &buf[..buf.len().min(max_line_bytes)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i + 1)),
        None if buf.len() >= max_line_bytes => Err(ErrorBody::new(
            ErrorCode::FrameTooLarge,
            format!("line longer than {max_line_bytes} bytes"),
        )),
        None => Ok(None),
    }
}

fn malformed(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Malformed, message)
}

/// Parses one line (with or without its `\n` / `\r\n`).
pub fn parse_line(line: &[u8]) -> Result<TextCommand, ErrorBody> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(line.len());
    let line = &line[start..];
    if line.is_empty() {
        return Err(malformed("empty line; try HELP".to_string()));
    }
    let (name, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let no_args = |cmd: TextCommand, label: &str| match args {
        Some(a) if !a.trim_ascii().is_empty() => {
            Err(malformed(format!("{label} takes no arguments")))
        }
        _ => Ok(cmd),
    };
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("PING") {
        no_args(TextCommand::Request(Request::Ping), "PING")
    } else if is("PRODUCE") {
        let (target, text) = split_target(args.unwrap_or_default())?;
        let Some(text) = args.and(text) else {
            return Err(malformed(
                "usage: PRODUCE [@<topic>[/<partition>]] <text>".to_string(),
            ));
        };
        Ok(TextCommand::Request(Request::Produce {
            target,
            value: unescape(text)?,
        }))
    } else if is("CONSUME") {
        let (target, arg) = split_target(args.unwrap_or_default().trim_ascii())?;
        let offset = std::str::from_utf8(arg.unwrap_or_default().trim_ascii())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                malformed(
                    "usage: CONSUME [@<topic>[/<partition>]] <offset> (a decimal number)"
                        .to_string(),
                )
            })?;
        Ok(TextCommand::Request(Request::Consume {
            target,
            offset: Offset(offset),
        }))
    } else if is("SERVERS") {
        no_args(TextCommand::Request(Request::GetServers), "SERVERS")
    } else if is("STATUS") {
        no_args(TextCommand::Request(Request::Status), "STATUS")
    } else if is("HELP") {
        no_args(TextCommand::Help, "HELP")
    } else if is("QUIT") {
        no_args(TextCommand::Quit, "QUIT")
    } else {
        let mut shown = Vec::new();
        escape(&name[..name.len().min(32)], &mut shown);
        Err(ErrorBody::new(
            ErrorCode::UnsupportedApi,
            format!(
                "unknown command {}; try HELP",
                String::from_utf8_lossy(&shown)
            ),
        ))
    }
}

/// Splits an optional `@<topic>[/<partition>]` off the front of `args`: the target
/// (the default topic's partition 0 without one) and what follows the one space after
/// it (`None` when nothing, not even a space, follows the target).
fn split_target(args: &[u8]) -> Result<(TopicPartition, Option<&[u8]>), ErrorBody> {
    let Some(spec) = args.strip_prefix(b"@") else {
        return Ok((TopicPartition::default_topic(), Some(args)));
    };
    let (spec, rest) = match spec.iter().position(|&b| b == b' ') {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    };
    let (topic, partition) = match spec.iter().position(|&b| b == b'/') {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    };
    if !is_text_topic(topic) {
        return Err(malformed(format!(
            "bad topic after @: 1 to {MAX_TOPIC_NAME_BYTES} printable ASCII characters \
             other than / and \\"
        )));
    }
    let partition = match partition {
        None => 0,
        Some(digits) => std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .ok_or_else(|| malformed("bad partition after /: a decimal number".to_string()))?,
    };
    // Checked above: printable ASCII, so valid UTF-8.
    let topic = String::from_utf8_lossy(topic).into_owned();
    Ok((TopicPartition { topic, partition }, rest))
}

/// A topic the text protocol can write after `@`.
fn is_text_topic(topic: &[u8]) -> bool {
    (1..=MAX_TOPIC_NAME_BYTES).contains(&topic.len())
        && topic
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b'/' && b != b'\\')
}

/// Writes `@<topic>[/<partition>] ` for a target other than the default; `false`
/// (writing nothing) when the topic has no text form.
fn put_target(target: &TopicPartition, out: &mut Vec<u8>) -> bool {
    if target.is_default() {
        return true;
    }
    if !is_text_topic(target.topic.as_bytes()) {
        return false;
    }
    out.push(b'@');
    out.extend_from_slice(target.topic.as_bytes());
    if target.partition != 0 {
        out.extend_from_slice(format!("/{}", target.partition).as_bytes());
    }
    out.push(b' ');
    true
}

/// Writes `cmd` as a canonical command line (upper case, `\r\n`). Returns `false`
/// and writes nothing for requests that have no text form (`ProduceBatch`, `Fetch`,
/// the topic APIs, the peer requests, and a target whose topic cannot be written
/// after `@`).
pub fn format_command(cmd: &TextCommand, out: &mut Vec<u8>) -> bool {
    match cmd {
        TextCommand::Help => out.extend_from_slice(b"HELP"),
        TextCommand::Quit => out.extend_from_slice(b"QUIT"),
        TextCommand::Request(req) => match req {
            Request::Ping => out.extend_from_slice(b"PING"),
            Request::Produce { target, value } => {
                let start = out.len();
                out.extend_from_slice(b"PRODUCE ");
                if !put_target(target, out) {
                    out.truncate(start);
                    return false;
                }
                match value.split_first() {
                    // A leading `@` would read as a target.
                    Some((b'@', rest)) if target.is_default() => {
                        out.extend_from_slice(b"\\x40");
                        escape(rest, out);
                    }
                    _ => escape(value, out),
                }
            }
            Request::Consume { target, offset } => {
                let start = out.len();
                out.extend_from_slice(b"CONSUME ");
                if !put_target(target, out) {
                    out.truncate(start);
                    return false;
                }
                out.extend_from_slice(offset.to_string().as_bytes());
            }
            Request::GetServers => out.extend_from_slice(b"SERVERS"),
            Request::Status => out.extend_from_slice(b"STATUS"),
            Request::ProduceBatch { .. }
            | Request::Fetch { .. }
            | Request::FetchPartitions { .. }
            | Request::Metadata { .. }
            | Request::CreateTopic { .. }
            | Request::DeleteTopic { .. }
            | Request::DescribeTopic { .. }
            | Request::AlterTopic { .. }
            | Request::InitProducer { .. }
            | Request::Raft { .. }
            | Request::RaftBatch { .. }
            | Request::PeerHandshake { .. }
            | Request::ReadEntries { .. }
            | Request::ListOffsets { .. }
            | Request::ProduceBatchV2 { .. }
            | Request::ConsumeV2 { .. }
            | Request::FetchV2 { .. }
            | Request::Group(_) => return false,
        },
    }
    out.extend_from_slice(b"\r\n");
    true
}

fn put_record_line(record: &WireRecord, prefix: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(record.offset.to_string().as_bytes());
    out.push(b' ');
    escape(&record.value, out);
    out.extend_from_slice(b"\r\n");
}

fn put_v1_line(record: &super::WireRecordV1, prefix: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(record.offset.to_string().as_bytes());
    out.push(b' ');
    escape(&record.payload, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the reply to a command.
pub fn format_response(result: &Result<ResponseBody, ErrorBody>, out: &mut Vec<u8>) {
    let body = match result {
        Ok(body) => body,
        Err(err) => return format_error(err, out),
    };
    match body {
        ResponseBody::Ping => out.extend_from_slice(b"+PONG\r\n"),
        ResponseBody::Produce { offset } => {
            out.extend_from_slice(format!("+OK {offset}\r\n").as_bytes())
        }
        ResponseBody::ProduceBatch {
            first_offset,
            count,
        }
        | ResponseBody::ProduceBatchV2 {
            first_offset,
            count,
            ..
        } => out.extend_from_slice(format!("+OK {first_offset} {count}\r\n").as_bytes()),
        // Version 2 has no text form; were one answered here, its payload is shown
        // escaped, whole.
        ResponseBody::ConsumeV2 { record } => put_v1_line(record, b"+", out),
        ResponseBody::FetchV2 { partitions } => {
            for p in partitions {
                p.records.iter().for_each(|r| put_v1_line(r, b"", out));
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::Consume { record } => put_record_line(record, b"+", out),
        ResponseBody::Fetch { records, .. } | ResponseBody::ReadEntries { records, .. } => {
            for record in records {
                put_record_line(record, b"", out);
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::GetServers { servers } => {
            for s in servers {
                out.extend_from_slice(s.id.to_string().as_bytes());
                out.push(b' ');
                escape(s.name.as_bytes(), out);
                out.push(b' ');
                escape(s.rpc_addr.as_bytes(), out);
                let live = if s.live { "up" } else { "down" };
                out.extend_from_slice(format!(" {} {live}\r\n", s.role).as_bytes());
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::Status(s) => {
            out.push(b'+');
            escape(s.node_name.as_bytes(), out);
            out.extend_from_slice(
                format!(
                    " role={} term={} commit={} first={} last={}\r\n",
                    s.role, s.term, s.commit_index, s.first_index, s.last_index
                )
                .as_bytes(),
            );
        }
        ResponseBody::InitProducer { producer_id, epoch } => {
            out.extend_from_slice(format!("+OK {producer_id} {epoch}\r\n").as_bytes())
        }
        ResponseBody::Raft { .. }
        | ResponseBody::PeerHandshake
        | ResponseBody::RaftBatch
        | ResponseBody::DeleteTopic => out.extend_from_slice(b"+OK\r\n"),
        // The text protocol has no group commands; a binary answer is never printed.
        ResponseBody::Group(_) => out.extend_from_slice(b"+OK\r\n"),
        ResponseBody::FetchPartitions { partitions } => {
            for p in partitions {
                put_fetched_lines(p, out);
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::ListOffsets { partitions } => {
            for p in partitions {
                out.push(b'@');
                escape(p.target.topic.as_bytes(), out);
                out.extend_from_slice(format!("/{}", p.target.partition).as_bytes());
                match &p.error {
                    None => out.extend_from_slice(
                        format!(" offset={} timestamp={}", p.offset, p.timestamp).as_bytes(),
                    ),
                    Some(err) => {
                        out.extend_from_slice(format!(" {} ", err.code).as_bytes());
                        escape(err.message.as_bytes(), out);
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::Metadata { nodes, topics } => {
            for n in nodes {
                out.extend_from_slice(format!("node {} ", n.id).as_bytes());
                escape(n.name.as_bytes(), out);
                out.push(b' ');
                escape(n.rpc_addr.as_bytes(), out);
                out.extend_from_slice(b"\r\n");
            }
            for t in topics {
                out.extend_from_slice(b"topic ");
                escape(t.name.as_bytes(), out);
                out.extend_from_slice(format!(" {}", t.error).as_bytes());
                put_partitions_line(&t.partitions, out);
            }
            out.extend_from_slice(b"+END\r\n");
        }
        ResponseBody::CreateTopic(d)
        | ResponseBody::DescribeTopic(d)
        | ResponseBody::AlterTopic(d) => put_description_line(d, out),
    }
}

/// One Fetch v1 partition: `@<topic>/<partition> hw=<hw>` (or its error), then its
/// records as Fetch prints them.
fn put_fetched_lines(p: &FetchedPartition, out: &mut Vec<u8>) {
    out.push(b'@');
    escape(p.target.topic.as_bytes(), out);
    out.extend_from_slice(format!("/{} hw={}", p.target.partition, p.high_watermark).as_bytes());
    if let Some(err) = &p.error {
        out.extend_from_slice(format!(" {} ", err.code).as_bytes());
        escape(err.message.as_bytes(), out);
    }
    out.extend_from_slice(b"\r\n");
    for record in &p.records {
        put_record_line(record, b"", out);
    }
}

/// ` <partition>:<group>:<leader>` per partition, then the line end.
fn put_partitions_line(partitions: &[PartitionInfo], out: &mut Vec<u8>) {
    for p in partitions {
        out.extend_from_slice(format!(" {}:{}:{}", p.partition, p.group, p.leader).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `+<name> id=<id> partitions=<n> …` on one line.
fn put_description_line(d: &TopicDescription, out: &mut Vec<u8>) {
    let s = &d.settings;
    out.push(b'+');
    escape(d.name.as_bytes(), out);
    out.extend_from_slice(
        format!(
            " id={} partitions={} replication={} retention_bytes={} retention_age_ms={} \
             max_record_bytes={} segment_bytes={}",
            d.topic_id,
            s.partitions,
            s.replication,
            s.retention_bytes,
            s.retention_age_ms,
            s.max_record_bytes,
            s.segment_bytes
        )
        .as_bytes(),
    );
    if d.settings_v2 {
        // Settings v2 (wire-spec §18), appended so the older fields keep their place.
        let text = |code: u8, zero: &'static str, one: &'static str| match code {
            0 => zero,
            _ => one,
        };
        out.extend_from_slice(
            format!(
                " timestamp_type={} cleanup_policy={} tombstone_retention_ms={}",
                text(s.timestamp_type, "producer", "leader"),
                text(s.cleanup_policy, "delete", "compact"),
                s.tombstone_retention_ms
            )
            .as_bytes(),
        );
    }
    put_partitions_line(&d.partitions, out);
}

/// Writes `-ERR <CODE_NAME> <message>\r\n` (message escaped onto one line).
pub fn format_error(err: &ErrorBody, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(err.code.name().as_bytes());
    out.push(b' ');
    escape(err.message.as_bytes(), out);
    out.extend_from_slice(b"\r\n");
}

/// The `HELP` reply.
pub const HELP_TEXT: &str = "\
commitlog inline protocol: one command per line, case-insensitive\r
PING              -> +PONG\r
PRODUCE <text>    -> +OK <offset>   (escapes: \\\\ \\n \\r \\t \\xNN)\r
CONSUME <offset>  -> +<offset> <text>\r
  @<topic>[/<partition>] right after PRODUCE or CONSUME picks a topic (partition 0 if omitted)\r
SERVERS           -> <id> <name> <rpc_addr> <role> <up|down> per server, then +END\r
STATUS            -> +<node> role=<role> term=<t> commit=<c> first=<f> last=<l>\r
QUIT              -> closes the connection\r
errors            -> -ERR <CODE_NAME> <message>\r
+END\r
";

/// Writes the `HELP` reply.
pub fn format_help(out: &mut Vec<u8>) {
    out.extend_from_slice(HELP_TEXT.as_bytes());
}

/// Appends `value` with every byte that is not printable ASCII, and `\`, escaped.
pub fn escape(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
}

/// Reverses [`escape`]. Bytes other than `\` stand for themselves; an unknown or
/// cut-off escape is `MALFORMED`.
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, ErrorBody> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let escaped = match text.get(i + 1) {
            Some(b'\\') => b'\\',
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'x') => {
                let hex = |j: usize| text.get(j).and_then(|c| (*c as char).to_digit(16));
                match (hex(i + 2), hex(i + 3)) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 4;
                        continue;
                    }
                    _ => {
                        return Err(malformed(format!(
                            "bad \\x escape at byte {i}: \\x needs two hex digits"
                        )))
                    }
                }
            }
            _ => {
                return Err(malformed(format!(
                    "bad escape at byte {i}; use \\\\ for a backslash"
                )))
            }
        };
        out.push(escaped);
        i += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeId, RecordKind, Term};
    use crate::wire::messages::{ServerInfo, ServerRole, StatusInfo};

    fn parse(line: &str) -> Result<TextCommand, ErrorBody> {
        parse_line(line.as_bytes())
    }

    fn req(r: Request) -> Result<TextCommand, ErrorBody> {
        Ok(TextCommand::Request(r))
    }

    fn fmt(result: Result<ResponseBody, ErrorBody>) -> String {
        let mut out = Vec::new();
        format_response(&result, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(parse("PING\r\n"), req(Request::Ping));
        assert_eq!(parse("ping\n"), req(Request::Ping));
        assert_eq!(parse("  Ping  "), req(Request::Ping));
        assert_eq!(
            parse("produce hello world\r\n"),
            req(Request::Produce {
                target: TopicPartition::default_topic(),
                value: b"hello world".to_vec()
            })
        );
        assert_eq!(
            parse("PRODUCE \r\n"),
            req(Request::Produce {
                target: TopicPartition::default_topic(),
                value: vec![]
            })
        );
        assert_eq!(
            parse("Consume 42"),
            req(Request::Consume {
                target: TopicPartition::default_topic(),
                offset: Offset(42)
            })
        );
        assert_eq!(parse("SERVERS"), req(Request::GetServers));
        assert_eq!(parse("status"), req(Request::Status));
        assert_eq!(parse("HELP"), Ok(TextCommand::Help));
        assert_eq!(parse("quit\r\n"), Ok(TextCommand::Quit));
    }

    #[test]
    fn bad_commands_are_typed_errors() {
        let code = |line: &str| parse(line).unwrap_err().code;
        assert_eq!(code(""), ErrorCode::Malformed);
        assert_eq!(code("\r\n"), ErrorCode::Malformed);
        assert_eq!(code("PRODUCE"), ErrorCode::Malformed);
        assert_eq!(code("CONSUME"), ErrorCode::Malformed);
        assert_eq!(code("CONSUME x"), ErrorCode::Malformed);
        assert_eq!(code("CONSUME -1"), ErrorCode::Malformed);
        assert_eq!(code("CONSUME 18446744073709551616"), ErrorCode::Malformed);
        assert_eq!(code("PING extra"), ErrorCode::Malformed);
        assert_eq!(code("PRODUCE bad\\q"), ErrorCode::Malformed);
        assert_eq!(code("PRODUCE bad\\x4"), ErrorCode::Malformed);
        assert_eq!(code("PRODUCE bad\\"), ErrorCode::Malformed);
        let err = parse("FROB 1").unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedApi);
        assert_eq!(err.message, "unknown command FROB; try HELP");
    }

    #[test]
    fn an_at_sign_picks_a_topic_partition() {
        let at = |topic: &str, partition: u32| TopicPartition::new(topic, partition);
        assert_eq!(
            parse("PRODUCE @orders hello world"),
            req(Request::Produce {
                target: at("orders", 0),
                value: b"hello world".to_vec()
            })
        );
        assert_eq!(
            parse("produce @orders/7 \\x40x\r\n"),
            req(Request::Produce {
                target: at("orders", 7),
                value: b"@x".to_vec()
            })
        );
        assert_eq!(
            parse("PRODUCE @orders/2 "),
            req(Request::Produce {
                target: at("orders", 2),
                value: vec![]
            })
        );
        assert_eq!(
            parse("CONSUME @orders/2 5"),
            req(Request::Consume {
                target: at("orders", 2),
                offset: Offset(5)
            })
        );
        assert_eq!(
            parse("consume @a.b-c_D 0"),
            req(Request::Consume {
                target: at("a.b-c_D", 0),
                offset: Offset(0)
            })
        );
        // `@default` is the default topic, the same as no `@` at all.
        assert_eq!(parse("CONSUME @default 1"), parse("CONSUME 1"));
        // A value for the default topic starting with `@` is escaped.
        assert_eq!(
            parse("PRODUCE \\x40home"),
            req(Request::Produce {
                target: TopicPartition::default_topic(),
                value: b"@home".to_vec()
            })
        );
        let code = |line: &str| parse(line).unwrap_err().code;
        for bad in [
            "PRODUCE @orders",
            "PRODUCE @ x",
            "PRODUCE @/1 x",
            "PRODUCE @orders/ x",
            "PRODUCE @orders/x x",
            "PRODUCE @orders/-1 x",
            "PRODUCE @orders/+1 x",
            "PRODUCE @orders/4294967296 x",
            "PRODUCE @or\\ders x",
            "PRODUCE @a/1/2 x",
            "CONSUME @orders",
            "CONSUME @orders/1",
            "CONSUME @orders x",
        ] {
            assert_eq!(code(bad), ErrorCode::Malformed, "{bad}");
        }
        let long = format!("PRODUCE @{} x", "t".repeat(MAX_TOPIC_NAME_BYTES + 1));
        assert_eq!(code(&long), ErrorCode::Malformed);
        let longest = format!("PRODUCE @{} x", "t".repeat(MAX_TOPIC_NAME_BYTES));
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn targets_format_canonically_or_not_at_all() {
        let line = |cmd: TextCommand| {
            let mut out = Vec::new();
            format_command(&cmd, &mut out).then(|| String::from_utf8(out).unwrap())
        };
        let produce = |topic: &str, partition: u32, value: &[u8]| {
            TextCommand::Request(Request::Produce {
                target: TopicPartition::new(topic, partition),
                value: value.to_vec(),
            })
        };
        assert_eq!(
            line(produce("orders", 0, b"a b")).as_deref(),
            Some("PRODUCE @orders a b\r\n")
        );
        assert_eq!(
            line(produce("orders", 3, b"@")).as_deref(),
            Some("PRODUCE @orders/3 @\r\n")
        );
        assert_eq!(
            line(produce("default", 0, b"@x")).as_deref(),
            Some("PRODUCE \\x40x\r\n")
        );
        assert_eq!(
            line(produce("default", 1, b"x")).as_deref(),
            Some("PRODUCE @default/1 x\r\n")
        );
        // Topics the text protocol cannot write: no text form.
        for topic in ["", "a b", "a/b", "é", "a\\b"] {
            assert_eq!(line(produce(topic, 0, b"x")), None, "{topic:?}");
        }
        let consume = TextCommand::Request(Request::Consume {
            target: TopicPartition::new("o", 9),
            offset: Offset(4),
        });
        assert_eq!(line(consume).as_deref(), Some("CONSUME @o/9 4\r\n"));
    }

    #[test]
    fn line_len_finds_lines_and_bounds_them() {
        assert_eq!(line_len(b"PING", 16), Ok(None));
        assert_eq!(line_len(b"PING\r\nPI", 16), Ok(Some(6)));
        assert_eq!(line_len(b"\n", 16), Ok(Some(1)));
        assert_eq!(line_len(&[b'a'; 15], 16), Ok(None));
        assert_eq!(
            line_len(&[b'a'; 16], 16).unwrap_err().code,
            ErrorCode::FrameTooLarge
        );
        let mut long = vec![b'a'; 15];
        long.push(b'\n');
        assert_eq!(line_len(&long, 16), Ok(Some(16)));
    }

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut text = Vec::new();
        escape(&all, &mut text);
        assert!(text.iter().all(|b| (0x20..=0x7e).contains(b)));
        assert_eq!(unescape(&text).unwrap(), all);
        let mut out = Vec::new();
        escape(b"a\\b\nc\x01\xff", &mut out);
        assert_eq!(out, b"a\\\\b\\nc\\x01\\xff");
        assert_eq!(unescape(b"\\x4A\\x4a").unwrap(), b"JJ");
    }

    #[test]
    fn format_command_round_trips_through_parse() {
        let cmds = [
            TextCommand::Request(Request::Ping),
            TextCommand::Request(Request::Produce {
                target: TopicPartition::default_topic(),
                value: b" lead\\ing\r\n\x00\xfe".to_vec(),
            }),
            TextCommand::Request(Request::Consume {
                target: TopicPartition::default_topic(),
                offset: Offset(u64::MAX),
            }),
            TextCommand::Request(Request::GetServers),
            TextCommand::Request(Request::Status),
            TextCommand::Help,
            TextCommand::Quit,
            TextCommand::Request(Request::Produce {
                target: TopicPartition::default_topic(),
                value: b"@not-a-topic".to_vec(),
            }),
            TextCommand::Request(Request::Produce {
                target: TopicPartition::new("orders", 12),
                value: b"@x y".to_vec(),
            }),
            TextCommand::Request(Request::Consume {
                target: TopicPartition::new("default", 4),
                offset: Offset(1),
            }),
        ];
        for cmd in cmds {
            let mut out = Vec::new();
            assert!(format_command(&cmd, &mut out));
            assert_eq!(line_len(&out, MAX_LINE_BYTES), Ok(Some(out.len())));
            assert_eq!(parse_line(&out), Ok(cmd));
        }
        let mut out = Vec::new();
        assert!(!format_command(
            &TextCommand::Request(Request::Raft {
                group: crate::types::GroupId::DEFAULT_PARTITION,
                payload: vec![]
            }),
            &mut out
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn replies_format_as_documented() {
        assert_eq!(fmt(Ok(ResponseBody::Ping)), "+PONG\r\n");
        assert_eq!(
            fmt(Ok(ResponseBody::Produce { offset: Offset(7) })),
            "+OK 7\r\n"
        );
        let record = WireRecord {
            offset: Offset(3),
            term: Term(1),
            kind: RecordKind::Data,
            value: b"hi\n\x00".to_vec(),
        };
        assert_eq!(
            fmt(Ok(ResponseBody::Consume {
                record: record.clone()
            })),
            "+3 hi\\n\\x00\r\n"
        );
        assert_eq!(
            fmt(Ok(ResponseBody::Fetch {
                high_watermark: Offset(4),
                records: vec![record]
            })),
            "3 hi\\n\\x00\r\n+END\r\n"
        );
        let servers = vec![
            ServerInfo {
                id: NodeId(1),
                name: "n1".into(),
                rpc_addr: "127.0.0.1:8400".into(),
                role: ServerRole::Leader,
                live: true,
            },
            ServerInfo {
                id: NodeId(2),
                name: "n2".into(),
                rpc_addr: "127.0.0.2:8400".into(),
                role: ServerRole::Follower,
                live: false,
            },
        ];
        assert_eq!(
            fmt(Ok(ResponseBody::GetServers { servers })),
            "1 n1 127.0.0.1:8400 leader up\r\n2 n2 127.0.0.2:8400 follower down\r\n+END\r\n"
        );
        assert_eq!(
            fmt(Ok(ResponseBody::Status(StatusInfo {
                node_name: "n1".into(),
                role: ServerRole::Leader,
                term: Term(2),
                commit_index: Offset(9),
                last_index: Offset(10),
                first_index: Offset(0),
            }))),
            "+n1 role=leader term=2 commit=9 first=0 last=10\r\n"
        );
        assert_eq!(
            fmt(Err(ErrorBody::offset_out_of_range(
                Offset(5),
                Offset(0),
                Offset(1)
            ))),
            "-ERR OFFSET_OUT_OF_RANGE offset 5 is out of range: the log holds [0, 1)\r\n"
        );
        assert_eq!(
            fmt(Err(ErrorBody::new(ErrorCode::Internal, "two\nlines"))),
            "-ERR INTERNAL two\\nlines\r\n"
        );
    }

    #[test]
    fn version_1_replies_have_a_line_form() {
        use crate::types::GroupId;
        use crate::wire::topics::{PartitionInfo, TopicDescription, TopicSettings};
        let record = WireRecord {
            offset: Offset(2),
            term: Term(1),
            kind: RecordKind::Data,
            value: b"hi".to_vec(),
        };
        let partitions = vec![
            FetchedPartition {
                target: TopicPartition::new("orders", 1),
                error: None,
                high_watermark: Offset(3),
                records: vec![record],
            },
            FetchedPartition {
                target: TopicPartition::new("nope", 0),
                error: Some(ErrorBody::new(ErrorCode::UnknownTopic, "no such topic")),
                high_watermark: Offset(0),
                records: vec![],
            },
        ];
        assert_eq!(
            fmt(Ok(ResponseBody::FetchPartitions { partitions })),
            "@orders/1 hw=3\r\n2 hi\r\n@nope/0 hw=0 UNKNOWN_TOPIC no such topic\r\n+END\r\n"
        );
        let description = TopicDescription {
            name: "orders".into(),
            topic_id: 4,
            settings: TopicSettings {
                partitions: 1,
                ..TopicSettings::default()
            },
            partitions: vec![PartitionInfo {
                partition: 0,
                group: GroupId(7),
                leader: NodeId(2),
                replicas: vec![NodeId(2)],
            }],
            settings_v2: false,
        };
        assert_eq!(
            fmt(Ok(ResponseBody::DescribeTopic(description))),
            "+orders id=4 partitions=1 replication=0 retention_bytes=0 retention_age_ms=0 \
             max_record_bytes=0 segment_bytes=0 0:7:2\r\n"
        );
        assert_eq!(fmt(Ok(ResponseBody::DeleteTopic)), "+OK\r\n");
    }

    #[test]
    fn help_lines_end_with_end_marker() {
        let mut out = Vec::new();
        format_help(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("+END\r\n"));
        for line in text.split_terminator("\r\n") {
            assert!(!line.contains('\n'), "{line:?}");
            assert!(!line.starts_with('-'), "{line:?}");
            assert!(line.len() < 100, "{line:?}");
        }
        assert!(text.contains("PRODUCE <text>"));
    }
}
