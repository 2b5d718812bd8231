//! `produce` with keys, headers and timestamps (record format v1, ProduceBatch v2):
//! `-k/--record-key`, `--key-separator`, `-H/--header`, `--timestamp`. A keyed
//! record goes to its key's partition (Kafka's murmur2) unless `-p` says where;
//! keyless records go where the partitioner sends them, as plain produces do.
//! Without any of these flags `produce` keeps its plain path (bare values).

use std::io;

use commitlog::client::cluster::ClusterClient;
use commitlog::client::records::ProducerRecord;
use commitlog::types::Offset;

use crate::commands::{
    add_range, fixed_partition, produce_client, stdin_batches, write_summary, write_summary_json,
    Ranges,
};
use crate::fail::{explain, Failure};
use crate::format::unescape;
use crate::{Out, Output, OutputKind, ProduceArgs, Settings};

/// True when `produce` must send records of format v1.
pub(crate) fn wanted(args: &ProduceArgs) -> bool {
    args.record_key.is_some()
        || args.key_separator.is_some()
        || !args.headers.is_empty()
        || args.timestamp.is_some()
}

/// What every record of this run carries besides its value (and its key when
/// `--key-separator` splits it from the input).
struct Template {
    key: Option<Vec<u8>>,
    separator: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: Option<i64>,
}

impl Template {
    fn from_args(args: &ProduceArgs) -> Result<Template, Failure> {
        let separator = args.key_separator.as_deref().map(unescape);
        if separator.as_ref().is_some_and(Vec::is_empty) {
            return Err(Failure::usage("--key-separator must not be empty"));
        }
        let headers = args
            .headers
            .iter()
            .map(|h| match h.split_once('=') {
                Some((name, value)) => Ok((name.to_string(), value.as_bytes().to_vec())),
                None => Err(Failure::usage(format!(
                    "--header `{h}`: expected NAME=VALUE (e.g. --header trace-id=abc)"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Template {
            key: args.record_key.as_ref().map(|k| k.as_bytes().to_vec()),
            separator,
            headers,
            timestamp_ms: args.timestamp,
        })
    }

    /// The record of one input (`what` names it in errors): split at the key
    /// separator when there is one, the value decoded with `--input-format`.
    fn record(
        &self,
        args: &ProduceArgs,
        raw: &[u8],
        what: &str,
    ) -> Result<ProducerRecord, Failure> {
        let (key, value) = match &self.separator {
            Some(sep) => match find(raw, sep) {
                Some(at) => (Some(raw[..at].to_vec()), &raw[at + sep.len()..]),
                None => {
                    return Err(Failure::data(format!(
                        "{what} has no key separator `{}`: write KEY{0}VALUE",
                        String::from_utf8_lossy(sep)
                    )))
                }
            },
            None => (self.key.clone(), raw),
        };
        let value = args
            .input_format
            .decode(value)
            .map_err(|e| Failure::data(format!("{what}: {e}")))?;
        Ok(ProducerRecord {
            key,
            headers: self.headers.clone(),
            timestamp_ms: self.timestamp_ms,
            value,
        })
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Arguments (one record each), then one produce each; prints each offset (with
/// `-o json` one object per record), as the plain path does.
pub(crate) fn produce_given(
    s: &Settings,
    args: &ProduceArgs,
    out: &mut Out<'_>,
) -> Result<(), Output> {
    if !args.value_file.is_empty() {
        return Err(Failure::usage(
            "--value-file cannot be combined with --record-key, --key-separator, --header or --timestamp yet",
        )
        .into());
    }
    let template = Template::from_args(args)?;
    let records = args
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| template.record(args, v.as_bytes(), &format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = produce_client(s, args)?;
    let fixed = fixed_partition(s, &mut client, &args.topic, args.partition)?;
    for record in &records {
        let produced = client
            .produce_records(&args.topic, args.partition, std::slice::from_ref(record))
            .map_err(|e| explain(&s.addr, e))?;
        for b in produced {
            print_offset(
                out,
                s.output,
                &args.topic,
                fixed,
                b.partition,
                b.first_offset,
            )?;
        }
    }
    Ok(())
}

fn print_offset(
    out: &mut Out<'_>,
    output: OutputKind,
    topic: &str,
    fixed: Option<u32>,
    partition: u32,
    offset: Offset,
) -> io::Result<()> {
    use std::io::Write;
    match (output, fixed) {
        (OutputKind::Json, _) => {
            let line = serde_json::json!({
                "topic": topic,
                "partition": partition,
                "offset": offset.0,
            });
            writeln!(out, "{line}")
        }
        (OutputKind::Text, Some(_)) => writeln!(out, "{offset}"),
        (OutputKind::Text, None) => writeln!(out, "{partition}\t{offset}"),
    }
}

/// Stdin, one record per delimited input, sent in batches (one per partition the
/// batch's records go to); prints the summary the plain path prints.
pub(crate) fn produce_stdin(
    s: &Settings,
    args: &ProduceArgs,
    out: &mut Out<'_>,
    (delimiter, strip_cr): (&[u8], bool),
) -> Result<(), Output> {
    let template = Template::from_args(args)?;
    let mut client = produce_client(s, args)?;
    let fixed = fixed_partition(s, &mut client, &args.topic, args.partition)?;
    let mut ranges = Ranges::new();
    let parse =
        |raw: &[u8], number: u64| template.record(args, raw, &format!("record {number} of stdin"));
    let size = |r: &ProducerRecord| r.value.len() + r.key.as_ref().map_or(0, Vec::len);
    let send = |batch: &[ProducerRecord]| send(s, &mut client, args, batch, &mut ranges);
    let produced = stdin_batches(args, (delimiter, strip_cr), parse, size, send)?;
    match s.output {
        OutputKind::Json => write_summary_json(out, &args.topic, &ranges)?,
        OutputKind::Text => write_summary(out, &args.topic, fixed, produced, &ranges)?,
    }
    Ok(())
}

/// One stdin batch; returns the records written and adds them to `ranges`.
fn send(
    s: &Settings,
    client: &mut ClusterClient,
    args: &ProduceArgs,
    batch: &[ProducerRecord],
    ranges: &mut Ranges,
) -> Result<u64, Failure> {
    let produced = client
        .produce_records(&args.topic, args.partition, batch)
        .map_err(|e| explain(&s.addr, e))?;
    let mut n = 0;
    for b in produced {
        let count = u64::from(b.count);
        add_range(ranges, b.partition, b.first_offset, count);
        n += count;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_separator_splits_at_its_first_occurrence() {
        assert_eq!(find(b"k1:v:x", b":"), Some(2));
        assert_eq!(find(b"k1::v", b"::"), Some(2));
        assert_eq!(find(b"novalue", b":"), None);
        assert_eq!(find(b"", b":"), None);
    }
}
