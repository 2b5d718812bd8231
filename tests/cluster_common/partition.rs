//! Network partitions between loopback addresses with iptables.
//!
//! Each node of a partition test binds (listen, outgoing peer connections, gossip)
//! to its own loopback address (127.0.0.2, .3, ...). A [`Partition`] creates a chain
//! of its own, `CLOGTEST-<pid>-<n>`, jumps to it from `INPUT`, and adds one `DROP`
//! rule per direction per address pair (all protocols: TCP and UDP alike). Dropping
//! on input makes a partition look like a real one (packets vanish; the sender's
//! syscalls succeed), rather than the `EPERM` an `OUTPUT` drop gives the sender.
//! The test process itself talks from 127.0.0.1 and is never cut off.
//!
//! The chain is ALWAYS removed: on [`Partition::heal`] and in `Drop` (so also when
//! the test panics). Removal is idempotent and ignores "does not exist" errors. A
//! test process killed outright (SIGKILL, no `Drop`) would leave its chain behind,
//! so [`Partition::new`] first removes every `CLOGTEST-<pid>-*` chain whose process
//! no longer exists.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A set of DROP rules between address groups; removed on drop.
pub struct Partition {
    chain: String,
    active: bool,
}

/// Why partition tests cannot run here, or `None` if they can (root + iptables).
pub fn unavailable_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (iptables needs it)".into());
    }
    match Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`iptables -S INPUT` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "iptables is not installed ({e}); apt-get install -y iptables"
        )),
    }
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("iptables {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes chains left by test processes that no longer exist.
fn remove_stale_chains() {
    let Ok(out) = Command::new("iptables").args(["-w", "-S"]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in text.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = chain
            .strip_prefix("CLOGTEST-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing iptables chain {chain} left by dead test process {pid}");
            let mut stale = Partition {
                chain: chain.to_string(),
                active: true,
            };
            stale.remove();
        }
    }
}

impl Partition {
    /// Cuts every address in `side_a` off from every address in `side_b`, both ways.
    pub fn new(side_a: &[&str], side_b: &[&str]) -> Partition {
        remove_stale_chains();
        let chain = format!(
            "CLOGTEST-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        // Construct first so that Drop cleans up whatever part of the setup happened.
        let mut p = Partition {
            chain,
            active: true,
        };
        iptables(&["-N", &p.chain]).expect("create chain");
        for a in side_a {
            for b in side_b {
                iptables(&["-A", &p.chain, "-s", a, "-d", b, "-j", "DROP"]).expect("rule");
                iptables(&["-A", &p.chain, "-s", b, "-d", a, "-j", "DROP"]).expect("rule");
            }
        }
        iptables(&["-I", "INPUT", "1", "-j", &p.chain]).expect("hook chain into INPUT");
        p.active = true;
        p
    }

    /// The chain's name.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Removes the rules (the nodes can talk again).
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        // Unhook every reference (bounded: at most a few duplicates could exist).
        for _ in 0..8 {
            if iptables(&["-D", "INPUT", "-j", &self.chain]).is_err() {
                break;
            }
        }
        let _ = iptables(&["-F", &self.chain]);
        if let Err(e) = iptables(&["-X", &self.chain]) {
            eprintln!(
                "warning: could not delete iptables chain {}: {e}",
                self.chain
            );
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.remove();
    }
}
