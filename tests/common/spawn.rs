//! The one way tests start a `commitlogd` process: spawn it with a ready file and a
//! log file, then wait (bounded) until the ready file names its addresses. Used by
//! `common::Server`, `cluster_common::Cluster` and the cluster tests' own node sets.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a started node's ready file says.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    /// Client/peer address.
    pub rpc: SocketAddr,
    /// Gossip address.
    pub gossip: SocketAddr,
    /// Metrics address, with `--metrics-addr`.
    pub metrics: Option<SocketAddr>,
}

/// Parses a ready file (`rpc=`, `gossip=`, optional `metrics=` lines).
pub fn parse_ready(text: &str) -> Option<Ready> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse::<SocketAddr>().ok())
    };
    Some(Ready {
        rpc: field("rpc=")?,
        gossip: field("gossip=")?,
        metrics: field("metrics="),
    })
}

/// Starts `commitlogd` with `args` plus `--ready-file ready`, stderr into `log`
/// (`RUST_LOG` from `CLOGTEST_LOG`, default info), and waits up to `deadline` for the
/// ready file. Panics with the log's tail if the process exits or is not ready.
pub fn spawn_commitlogd(
    args: &[std::ffi::OsString],
    ready: &Path,
    log: &Path,
    deadline: Duration,
) -> (Child, Ready) {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args(args)
        .arg("--ready-file")
        .arg(ready)
        .env(
            "RUST_LOG",
            std::env::var("CLOGTEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn commitlogd");
    let end = Instant::now() + deadline;
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    // Bounded by the deadline.
    loop {
        if let Some(r) = std::fs::read_to_string(ready)
            .ok()
            .and_then(|t| parse_ready(&t))
        {
            return (child, r);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("commitlogd exited during start-up ({status}):\n{}", tail());
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("commitlogd not ready within {deadline:?}:\n{}", tail());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
