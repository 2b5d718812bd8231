//! The fault schedule of a random run, independent of what it drives: each tick it
//! draws process faults (crashes aimed at chosen moments, pauses, wiped data dirs,
//! restarts) and link faults (see [`LinkFault`]). The driver applies them and may
//! refuse one that would leave the fault model (e.g. a wipe while another node is
//! still recovering lost data).

use super::net::LinkFault;
use crate::raft::{NodeId, SplitMix64};

/// Where a crash lands relative to the node's I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// At a random moment: a random prefix of the pending writes reached the disk.
    Anywhere,
    /// Right after the next Ready that must be persisted has handed its messages to
    /// the network, before any of its writes reach the disk.
    AfterSendBeforePersist,
    /// In the middle of the last pending write: a prefix of its entries reached the
    /// disk (the append was written, the fsync never finished), its hard state did not.
    TornWrite,
}

/// One fault to apply now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Crash(NodeId, CrashPoint),
    /// The process stops ticking and processing (messages to it wait) for `ticks`,
    /// then resumes with its stale state.
    Pause(NodeId, u64),
    /// The process dies and comes back with an empty data dir under its old id.
    Wipe(NodeId),
    Restart(NodeId),
    Link(LinkFault),
    Heal,
}

/// Rates (percent per tick) of each fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultRates {
    pub crash_pct: u64,
    pub pause_pct: u64,
    pub wipe_pct: u64,
    /// Chance per tick and down node that it restarts.
    pub restart_pct: u64,
    /// Chance per tick of a link fault when all links are up.
    pub link_pct: u64,
    /// Chance per tick of healing a link fault.
    pub heal_pct: u64,
    /// Longest pause, in ticks.
    pub max_pause_ticks: u64,
}

/// Draws faults tick by tick.
pub(crate) struct FaultSchedule {
    pub rates: FaultRates,
    link_fault: bool,
}

impl FaultSchedule {
    pub(crate) fn new(rates: FaultRates) -> FaultSchedule {
        FaultSchedule {
            rates,
            link_fault: false,
        }
    }

    /// The faults of this tick over processes `ids` (`up` tells which run).
    pub(crate) fn draw(
        &mut self,
        rng: &mut SplitMix64,
        ids: &[NodeId],
        up: impl Fn(NodeId) -> bool,
    ) -> Vec<Fault> {
        let r = self.rates;
        let mut out = Vec::new();
        let running: Vec<NodeId> = ids.iter().copied().filter(|i| up(*i)).collect();
        let pick = |rng: &mut SplitMix64| running[rng.below(running.len() as u64) as usize];
        if !running.is_empty() {
            if r.crash_pct > 0 && rng.chance(r.crash_pct) {
                let point = match rng.below(3) {
                    0 => CrashPoint::Anywhere,
                    1 => CrashPoint::AfterSendBeforePersist,
                    _ => CrashPoint::TornWrite,
                };
                out.push(Fault::Crash(pick(rng), point));
            }
            if r.pause_pct > 0 && rng.chance(r.pause_pct) {
                let ticks = 1 + rng.below(r.max_pause_ticks.max(1));
                out.push(Fault::Pause(pick(rng), ticks));
            }
            if r.wipe_pct > 0 && rng.chance(r.wipe_pct) {
                out.push(Fault::Wipe(pick(rng)));
            }
        }
        for id in ids {
            if !up(*id) && rng.chance(r.restart_pct) {
                out.push(Fault::Restart(*id));
            }
        }
        if !self.link_fault && r.link_pct > 0 && rng.chance(r.link_pct) {
            out.push(Fault::Link(LinkFault::pick(rng)));
            self.link_fault = true;
        } else if self.link_fault && rng.chance(r.heal_pct) {
            out.push(Fault::Heal);
            self.link_fault = false;
        }
        out
    }
}
