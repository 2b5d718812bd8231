//! The consistency checker shared by every cluster test.
//!
//! It records every acknowledged `(offset, value)` while the test runs (two
//! different values acknowledged at one offset is already a violation), then reads
//! each node's whole committed log and checks:
//!
//! 1. **No acknowledged record is lost**: every acknowledged record is readable at
//!    its offset from every node checked.
//! 2. **No divergence**: no offset holds two different records on any two nodes.
//! 3. Each node returns strictly increasing offsets (Fetch's contract).
//! 4. No *forbidden* value is committed anywhere: a test marks values that no
//!    correct cluster can ever commit (e.g. sent only to a leader cut off from its
//!    quorum, whose uncommitted entries the new leader must overwrite).
//!
//! Retried produces may legitimately appear twice at different offsets (the client
//! is at-least-once), so duplicate values are not an error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::types::Offset;

/// Most records one node's log may hold in a test (bounds the read loop).
const MAX_RECORDS_PER_NODE: usize = 1_000_000;

/// Records acknowledgements and verifies node logs against them.
#[derive(Default)]
pub struct Checker {
    acked: Mutex<BTreeMap<u64, Vec<u8>>>,
    forbidden: Mutex<Vec<Vec<u8>>>,
}

/// What [`Checker::verify`] saw.
#[derive(Debug)]
pub struct Verified {
    /// Acknowledged records checked.
    pub acked: usize,
    /// Records read per node address.
    pub per_node: Vec<(String, usize)>,
}

impl Checker {
    /// An empty checker.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Records an acknowledgement. Panics if another value was acknowledged at
    /// `offset` before.
    pub fn ack(&self, offset: Offset, value: &[u8]) {
        let mut acked = self.acked.lock().expect("checker lock");
        if let Some(previous) = acked.get(&offset.0) {
            assert_eq!(
                previous.as_slice(),
                value,
                "offset {offset} acknowledged twice with different values: {:?} then {:?}",
                String::from_utf8_lossy(previous),
                String::from_utf8_lossy(value)
            );
        }
        acked.insert(offset.0, value.to_vec());
    }

    /// Records a batch acknowledged at contiguous offsets from `first`.
    pub fn ack_batch(&self, first: Offset, values: &[&[u8]]) {
        for (i, v) in values.iter().enumerate() {
            self.ack(Offset(first.0 + i as u64), v);
        }
    }

    /// Marks `value` as one that must never appear in any node's committed log.
    pub fn forbid(&self, value: &[u8]) {
        self.forbidden
            .lock()
            .expect("checker lock")
            .push(value.to_vec());
    }

    /// Number of acknowledged records.
    pub fn len(&self) -> usize {
        self.acked.lock().expect("checker lock").len()
    }

    /// Whether nothing was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The read high-water mark that covers every acknowledged record
    /// (largest acknowledged offset + 1), or `None` if none.
    pub fn required_hwm(&self) -> Option<Offset> {
        let acked = self.acked.lock().expect("checker lock");
        acked.keys().next_back().map(|o| Offset(o + 1))
    }

    /// Reads the whole committed log of every node in `addrs` (waiting up to
    /// `deadline` per node for it to catch up with the acknowledgements) and checks
    /// the properties in the module doc. Panics with details on a violation.
    pub fn verify(&self, addrs: &[String], deadline: Duration) -> Verified {
        let acked = self.acked.lock().expect("checker lock").clone();
        let need = acked
            .keys()
            .next_back()
            .map_or(Offset(0), |o| Offset(o + 1));
        let mut logs: Vec<(String, BTreeMap<u64, Vec<u8>>)> = Vec::new();
        for addr in addrs {
            logs.push((addr.clone(), read_log(addr, need, deadline)));
        }
        for (addr, log) in &logs {
            for (offset, value) in &acked {
                match log.get(offset) {
                    Some(v) if v == value => {}
                    Some(v) => panic!(
                        "node {addr}: offset {offset} holds {:?}, but {:?} was acknowledged there",
                        String::from_utf8_lossy(v),
                        String::from_utf8_lossy(value)
                    ),
                    None => panic!(
                        "node {addr}: acknowledged record {:?} at offset {offset} is missing \
                         (node has {} records, last offset {:?})",
                        String::from_utf8_lossy(value),
                        log.len(),
                        log.keys().next_back()
                    ),
                }
            }
        }
        let forbidden = self.forbidden.lock().expect("checker lock").clone();
        for (addr, log) in &logs {
            for (offset, value) in log {
                assert!(
                    !forbidden.contains(value),
                    "node {addr}: {:?} is committed at offset {offset}, but no quorum ever \
                     accepted it",
                    String::from_utf8_lossy(value)
                );
            }
        }
        for (i, (addr_a, log_a)) in logs.iter().enumerate() {
            for (addr_b, log_b) in &logs[i + 1..] {
                for (offset, value_a) in log_a {
                    if let Some(value_b) = log_b.get(offset) {
                        assert_eq!(
                            value_a,
                            value_b,
                            "offset {offset} differs: {addr_a} has {:?}, {addr_b} has {:?}",
                            String::from_utf8_lossy(value_a),
                            String::from_utf8_lossy(value_b)
                        );
                    }
                }
            }
        }
        Verified {
            acked: acked.len(),
            per_node: logs.iter().map(|(a, l)| (a.clone(), l.len())).collect(),
        }
    }
}

/// Every committed record of the node at `addr`, once its high-water mark reaches
/// `need` (waiting up to `deadline`).
fn read_log(addr: &str, need: Offset, deadline: Duration) -> BTreeMap<u64, Vec<u8>> {
    let end = Instant::now() + deadline;
    // Wait for the node to catch up (bounded by the deadline).
    let (mut client, first, hwm) = loop {
        let attempt = (|| {
            let mut c = Client::connect(addr, Duration::from_secs(5)).ok()?;
            let first = c.status().ok()?.first_index;
            let hwm = c.fetch(first, 1, 0).ok()?.high_watermark;
            Some((c, first, hwm))
        })();
        match attempt {
            Some((c, first, hwm)) if hwm >= need => break (c, first, hwm),
            other => {
                assert!(
                    Instant::now() < end,
                    "node {addr} did not reach high-water mark {need} within {deadline:?} \
                     (last seen: {:?})",
                    other.map(|(_, f, h)| (f, h))
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    };
    let mut log = BTreeMap::new();
    let mut next = first;
    let mut last_seen: Option<u64> = None;
    // Bounded: every fetch advances `next` (or ends the loop), and the log is capped.
    while next < hwm {
        let fetched = client
            .fetch(next, 4 << 20, 0)
            .unwrap_or_else(|e| panic!("node {addr}: fetch at {next} failed: {e}"));
        if fetched.records.is_empty() {
            break;
        }
        for r in fetched.records {
            if let Some(prev) = last_seen {
                assert!(
                    r.offset.0 > prev,
                    "node {addr}: offsets not increasing ({prev} then {})",
                    r.offset
                );
            }
            last_seen = Some(r.offset.0);
            next = Offset(r.offset.0 + 1);
            log.insert(r.offset.0, r.value);
        }
        assert!(
            log.len() <= MAX_RECORDS_PER_NODE,
            "node {addr}: more records than a test should write"
        );
    }
    log
}

#[cfg(test)]
mod tests {
    // The checker's own logic is exercised by every cluster test; the violations it
    // reports are covered here without processes.
    use super::*;

    #[test]
    #[should_panic(expected = "acknowledged twice with different values")]
    fn two_values_at_one_offset_is_a_violation() {
        let c = Checker::new();
        c.ack(Offset(3), b"a");
        c.ack(Offset(3), b"b");
    }

    #[test]
    fn the_same_ack_twice_is_fine() {
        let c = Checker::new();
        c.ack(Offset(3), b"a");
        c.ack(Offset(3), b"a");
        c.ack_batch(Offset(4), &[b"x", b"y"]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.required_hwm(), Some(Offset(6)));
    }
}
