//! Leaders spread over the nodes: each partition replicated on a chosen set of nodes
//! has a preferred leader (its first replica, spread evenly by the catalogue's
//! assignment). A leader that is not its partition's preferred leader hands
//! leadership over (Raft leadership transfer) once the preferred one is live and
//! fully caught up, so leadership returns to a node that comes back and load stays
//! spread. Partitions replicated on every voter (the `default` topic) keep whatever
//! leader they elected.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::lock;
use crate::raft::Role;
use crate::types::{GroupId, NodeId};

/// How often leaders look for a preferred leader to hand over to.
pub(crate) const REBALANCE_INTERVAL: Duration = Duration::from_secs(2);
/// Most transfers started per round (bounds election bursts).
const MAX_TRANSFERS_PER_ROUND: usize = 128;

impl super::raft_loop::RaftLoop {
    /// Starts leadership transfers to live, caught-up preferred leaders.
    pub(super) fn rebalance_leaders(&mut self, last: &mut Instant) {
        if last.elapsed() < REBALANCE_INTERVAL {
            return;
        }
        *last = Instant::now();
        let me = self.shared.cfg.node_id;
        let live: BTreeSet<NodeId> = lock(&self.shared.members)
            .iter()
            .filter(|(_, m)| m.live && !m.decommission)
            .map(|(id, _)| *id)
            .collect();
        let catalogue = self.metadata.catalogue();
        let mut handover: Vec<(GroupId, NodeId)> = Vec::new();
        for (id, g) in &self.groups {
            if handover.len() >= MAX_TRANSFERS_PER_ROUND {
                break;
            }
            let node = g.driver.raft();
            if node.role() != Role::Leader {
                continue;
            }
            let Some(preferred) = catalogue.group(*id).and_then(|(_, p)| p.preferred_leader())
            else {
                continue;
            };
            if preferred == me || !live.contains(&preferred) {
                continue;
            }
            let ready = node
                .status()
                .followers
                .iter()
                .any(|f| f.id == preferred && f.voter && f.lag_entries == 0 && f.recent_active);
            if ready {
                handover.push((*id, preferred));
            }
        }
        for (id, to) in handover {
            self.touch(id);
            if let Some(g) = self.groups.get_mut(&id) {
                if let Err(e) = g.driver.transfer_leadership_to(to) {
                    log::warn!("group {id}: leadership transfer to {to}: {e}");
                }
            }
        }
    }
}
