//! Lifeguard suspicion timers ("Lifeguard: Local Health Awareness for More Accurate
//! Failure Detection", Dadgar et al. 2018, section IV-B).
//!
//! A suspicion starts at `max_ms` and shrinks toward `min_ms` as *independent*
//! suspicions of the same member arrive (distinct suspectors, at most `k` of them):
//!
//! ```text
//! timeout(c) = max(min_ms, max_ms - (max_ms - min_ms) · ln(c + 1) / ln(k + 1))
//! ```
//!
//! so a member many peers cannot reach is declared dead after `min_ms`, while a
//! suspicion raised by one slow or lossy observer waits long enough for the member to
//! hear of it and refute. With `k = 0` (clusters too small for `k` confirmations)
//! the timeout is `min_ms`.

use crate::types::NodeId;

/// One running suspicion.
#[derive(Clone, Debug)]
pub struct Suspicion {
    start_ms: u64,
    min_ms: u64,
    max_ms: u64,
    k: u32,
    /// Distinct suspectors seen, the first one included; bounded by `k + 1`.
    suspectors: Vec<NodeId>,
}

impl Suspicion {
    /// A suspicion raised by `from` at `start_ms`. `k` is the number of independent
    /// confirmations that shrink the timeout all the way to `min_ms`.
    pub fn new(from: NodeId, start_ms: u64, min_ms: u64, max_ms: u64, k: u32) -> Suspicion {
        Suspicion {
            start_ms,
            min_ms,
            max_ms: max_ms.max(min_ms),
            k,
            suspectors: vec![from],
        }
    }

    /// Confirmations so far (suspectors other than the first).
    pub fn confirmations(&self) -> u32 {
        (self.suspectors.len() - 1) as u32
    }

    /// Records a suspicion from `from`. Returns true when it is a new independent
    /// confirmation (the caller then re-gossips it so others can count it too).
    pub fn confirm(&mut self, from: NodeId) -> bool {
        if self.confirmations() >= self.k || self.suspectors.contains(&from) {
            return false;
        }
        self.suspectors.push(from);
        true
    }

    /// When the member is declared dead unless it refutes first.
    pub fn deadline_ms(&self) -> u64 {
        if self.k == 0 {
            return self.start_ms.saturating_add(self.min_ms);
        }
        let c = f64::from(self.confirmations());
        let frac = (c + 1.0).ln() / (f64::from(self.k) + 1.0).ln();
        let span = (self.max_ms - self.min_ms) as f64;
        let timeout = (self.max_ms as f64 - span * frac).max(self.min_ms as f64);
        self.start_ms.saturating_add(timeout.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_shrinks_from_max_to_min_with_independent_confirmations() {
        let mut s = Suspicion::new(NodeId(1), 1_000, 4_000, 24_000, 3);
        assert_eq!(s.deadline_ms(), 25_000);
        assert!(
            !s.confirm(NodeId(1)),
            "the first suspector does not confirm"
        );
        assert!(s.confirm(NodeId(2)));
        let one = s.deadline_ms();
        assert!(one < 25_000 && one > 5_000);
        assert!(!s.confirm(NodeId(2)), "duplicates do not confirm");
        assert!(s.confirm(NodeId(3)));
        assert!(s.deadline_ms() < one);
        assert!(s.confirm(NodeId(4)));
        assert_eq!(s.deadline_ms(), 5_000);
        assert!(!s.confirm(NodeId(5)), "confirmations are capped at k");
        assert_eq!(s.confirmations(), 3);
    }

    #[test]
    fn small_clusters_use_the_minimum() {
        let s = Suspicion::new(NodeId(1), 0, 4_000, 24_000, 0);
        assert_eq!(s.deadline_ms(), 4_000);
    }
}
