//! Operator repair of a log that [`Log::open`] refuses as corrupt:
//! `commitlogd repair --data-dir D` reports the damage, and
//! `commitlogd repair --data-dir D --truncate-from N --i-understand-records-from-N-are-lost`
//! truncates the log at `N`, but only when `N` is exactly the first damaged offset
//! the log reports and truncation can repair it. What was dropped is logged.
//!
//! A cluster node keeps its log in `D/log/`, a single node (today) in `D/`; the
//! subcommand finds either (and accepts the log directory itself).

use std::path::{Path, PathBuf};

use super::{Damage, Log, LogConfig, Offset, OuterLock, StorageError, TruncatedRange};
use crate::storage::checkpoint;
use crate::storage::segment::parse_file_name;

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repaired {
    /// The log directory repaired.
    pub log_dir: PathBuf,
    /// The offsets dropped.
    pub dropped: TruncatedRange,
}

/// The log directory inside a data directory: `D/log` (cluster node) if it holds a
/// log, else `D` itself (single node, or the log directory given directly).
pub fn find_log_dir(data_dir: &Path) -> PathBuf {
    let nested = data_dir.join("log");
    if holds_log(&nested) {
        nested
    } else {
        data_dir.to_path_buf()
    }
}

/// Takes the lock of each directory enclosing `log_dir` (up to three levels:
/// `D/groups/<id>/log`) that holds a `LOCK` file: a node locks its data dir once
/// for the logs of all its groups, which then hold no lock of their own
/// (`DirLock::Covered`), so a log a running node has open is refused here. The
/// locks are held until the returned guards drop.
pub fn lock_enclosing(log_dir: &Path) -> Result<Vec<OuterLock>, String> {
    // Absolute, so that the enclosing directories of a relative path are seen.
    let log_dir = std::fs::canonicalize(log_dir).unwrap_or_else(|_| log_dir.to_path_buf());
    log_dir
        .ancestors()
        .skip(1)
        .take(3)
        .filter(|dir| dir.join(super::engine::LOCK_FILE_NAME).is_file())
        .map(|dir| {
            OuterLock::acquire(dir).map_err(|e| {
                format!(
                    "{} is in use (a running commitlogd holds its lock?): {e}",
                    dir.display()
                )
            })
        })
        .collect()
}

/// True when `dir` holds segment files or a checkpoint.
fn holds_log(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name == checkpoint::FILE_NAME || parse_file_name(&name).is_some()
    })
}

/// Opens the log strictly and closes it again: `Ok(None)` when it is healthy,
/// `Ok(Some(error))` with the corruption report when it is refused.
pub fn inspect(log_dir: &Path, config: LogConfig) -> Result<Option<StorageError>, String> {
    if !holds_log(log_dir) {
        return Err(format!("no log found in {}", log_dir.display()));
    }
    match Log::open(log_dir, config) {
        Ok(log) => log
            .close()
            .map(|()| None)
            .map_err(|e| format!("closing {}: {e}", log_dir.display())),
        Err(e @ StorageError::Corrupt { .. }) => Ok(Some(e)),
        Err(e) => Err(format!("cannot open the log in {}: {e}", log_dir.display())),
    }
}

/// Truncates the log in `log_dir` at its first damaged offset, which the operator
/// acknowledges as `acknowledged_from` (every record from there on is lost).
/// Refuses when the log is healthy, when the acknowledged offset is not the first
/// damaged one, or when truncation cannot repair the damage.
pub fn repair(
    log_dir: &Path,
    config: LogConfig,
    acknowledged_from: Offset,
) -> Result<Repaired, String> {
    let Some(error) = inspect(log_dir, config.clone())? else {
        return Err(format!(
            "the log in {} is not damaged; nothing to repair",
            log_dir.display()
        ));
    };
    let damage: Damage = error
        .damage()
        .ok_or_else(|| format!("{error}; no offsets to truncate at"))?;
    if !damage.repairable_by_truncation {
        return Err(format!("{error}; refusing to truncate"));
    }
    if damage.first_offset != acknowledged_from {
        return Err(format!(
            "refusing: the first damaged offset is {}, not {acknowledged_from}; the records \
             from {} on would be lost: {error}",
            damage.first_offset, damage.first_offset
        ));
    }
    let (log, cut) = Log::open_and_repair(log_dir, config)
        .map_err(|e| format!("repairing {}: {e}", log_dir.display()))?;
    let next = log.next_offset();
    log.close()
        .map_err(|e| format!("closing {}: {e}", log_dir.display()))?;
    let dropped = cut.ok_or_else(|| "internal: repair found nothing to cut".to_string())?;
    if dropped.from != acknowledged_from || next != acknowledged_from {
        return Err(format!(
            "internal: repair cut at {} (next offset {next}), not at the acknowledged {}",
            dropped.from, acknowledged_from
        ));
    }
    log::warn!(
        "repair of {}: dropped offsets {}..{} ({}); the log now ends at {next}",
        log_dir.display(),
        dropped.from,
        dropped.to,
        dropped.reason
    );
    Ok(Repaired {
        log_dir: log_dir.to_path_buf(),
        dropped,
    })
}

/// The acknowledgement flag for truncating at `from`.
pub fn acknowledgement_flag(from: Offset) -> String {
    format!("--i-understand-records-from-{from}-are-lost")
}

const USAGE: &str = "usage: commitlogd repair --data-dir DIR \
                     [--truncate-from N --i-understand-records-from-N-are-lost]";

/// `commitlogd repair ARGS` (the arguments after `repair`). Returns the exit code:
/// 0 healthy or repaired, 1 damaged (report only) or refused, 2 usage error.
pub fn run_cli(args: impl IntoIterator<Item = String>) -> u8 {
    let mut data_dir = None;
    let mut truncate_from = None;
    let mut acknowledged = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--truncate-from" => truncate_from = args.next(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            a if a.starts_with("--i-understand-records-from-") => acknowledged.push(arg),
            other => {
                eprintln!("commitlogd repair: unexpected argument {other:?}\n{USAGE}");
                return 2;
            }
        }
    }
    let Some(data_dir) = data_dir else {
        eprintln!("commitlogd repair: --data-dir is required\n{USAGE}");
        return 2;
    };
    let log_dir = find_log_dir(&data_dir);
    let _enclosing = match lock_enclosing(&log_dir) {
        Ok(locks) => locks,
        Err(message) => {
            eprintln!("commitlogd repair: {message}");
            return 1;
        }
    };
    let config = LogConfig::default();
    let Some(from) = truncate_from else {
        return report(&log_dir, config);
    };
    let Ok(from) = from.parse::<u64>().map(Offset) else {
        eprintln!("commitlogd repair: --truncate-from takes an offset (got {from:?})");
        return 2;
    };
    if acknowledged != [acknowledgement_flag(from)] {
        eprintln!(
            "commitlogd repair: truncating at {from} drops every record from {from} on; \
             acknowledge it with {}",
            acknowledgement_flag(from)
        );
        return 2;
    }
    match repair(&log_dir, config, from) {
        Ok(done) => {
            println!(
                "repaired {}: dropped offsets {}..{}; the log now ends at {}",
                done.log_dir.display(),
                done.dropped.from,
                done.dropped.to,
                done.dropped.from
            );
            0
        }
        Err(message) => {
            eprintln!("commitlogd repair: {message}");
            1
        }
    }
}

fn report(log_dir: &Path, config: LogConfig) -> u8 {
    match inspect(log_dir, config) {
        Ok(None) => {
            println!("the log in {} is healthy", log_dir.display());
            0
        }
        Ok(Some(error)) => {
            println!("{error}");
            1
        }
        Err(message) => {
            eprintln!("commitlogd repair: {message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::TempDir;
    use crate::storage::{NewRecord, RecordKind, Term};

    fn filled(n: u64) -> TempDir {
        let dir = TempDir::new("repair");
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let log = Log::open(&dir.path().join("log"), LogConfig::default()).unwrap();
        for i in 0..n {
            let v = i.to_le_bytes();
            log.append(NewRecord {
                term: Term(1),
                kind: RecordKind::Data,
                value: &v,
            })
            .unwrap();
        }
        log.close().unwrap();
        dir
    }

    #[test]
    fn refuses_a_wrong_acknowledgement_then_truncates_the_right_one() {
        let dir = filled(100);
        let log_dir = find_log_dir(dir.path());
        assert_eq!(log_dir, dir.path().join("log"));
        let store = log_dir.join(format!("{:020}.store", 0));
        let mut bytes = std::fs::read(&store).unwrap();
        bytes[36 * 40 + 30] ^= 1; // record 40's value (36 bytes per record)
        std::fs::write(&store, bytes).unwrap();
        assert!(repair(&log_dir, LogConfig::default(), Offset(41)).is_err());
        assert!(repair(&log_dir, LogConfig::default(), Offset(39)).is_err());
        let done = repair(&log_dir, LogConfig::default(), Offset(40)).unwrap();
        assert_eq!(
            (done.dropped.from, done.dropped.to),
            (Offset(40), Offset(100))
        );
        let log = Log::open(&log_dir, LogConfig::default()).unwrap();
        assert_eq!(log.next_offset(), Offset(40));
        drop(log);
        assert!(
            repair(&log_dir, LogConfig::default(), Offset(40)).is_err(),
            "healthy now"
        );
    }

    #[test]
    fn cli_requires_the_matching_acknowledgement() {
        let dir = filled(10);
        let d = dir.path().display().to_string();
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run_cli(args(&["--data-dir", &d])), 0, "healthy");
        assert_eq!(
            run_cli(args(&["--data-dir", &d, "--truncate-from", "3"])),
            2,
            "no acknowledgement"
        );
        assert_eq!(
            run_cli(args(&[
                "--data-dir",
                &d,
                "--truncate-from",
                "3",
                "--i-understand-records-from-4-are-lost"
            ])),
            2,
            "acknowledgement of another offset"
        );
        assert_eq!(run_cli(args(&["--bogus"])), 2);
    }

    #[test]
    fn cli_refuses_a_log_under_a_held_data_dir_lock() {
        let dir = filled(10);
        let d = dir.path().display().to_string();
        let args = || vec!["--data-dir".to_string(), d.clone()];
        let node_lock = OuterLock::acquire(dir.path()).unwrap();
        assert_eq!(run_cli(args()), 1, "a running node holds the data dir");
        drop(node_lock);
        assert_eq!(run_cli(args()), 0, "free again: healthy");
    }
}
