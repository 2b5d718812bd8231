//! Membership policy of a leader (DESIGN 5: gossip drives membership, Raft owns it),
//! as pure functions over the member table and the Raft status.

use std::collections::BTreeMap;

use crate::raft::{ConfChange, FollowerStatus, Index, Membership, NodeId};

/// A learner within this many entries of the leader's last index is promoted.
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 1000;

/// What the leader needs to know of a member gossip reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Alive as far as gossip knows.
    pub live: bool,
    /// Asked to be removed for good (`--leave-on-shutdown`).
    pub decommission: bool,
    /// Advertises an address peers can dial.
    pub has_rpc_addr: bool,
}

/// The one membership change to propose now, if any, in priority order: remove a
/// decommissioned member; promote a caught-up, active learner; add a live member
/// that is not in the configuration as a learner. One change at a time.
///
/// A learner is caught up when its durable log reaches the leader's `commit` (and
/// it is within [`PROMOTE_MAX_LAG_ENTRIES`] of the leader's last index): a fresh
/// learner does not vote until it holds a leader's commit index (the recovery
/// guard), so promoting it earlier could leave a two-voter configuration whose
/// new voter ignores every candidate after a leader restart (found by the replica
/// simulator).
pub fn next_change(
    me: NodeId,
    membership: &Membership,
    followers: &[FollowerStatus],
    members: &BTreeMap<NodeId, MemberView>,
    commit: Index,
) -> Option<ConfChange> {
    let remove = members
        .iter()
        .find(|(id, g)| g.decommission && **id != me && membership.contains(**id))
        .map(|(id, _)| ConfChange::Remove(*id));
    let promote = || {
        followers
            .iter()
            .find(|f| {
                !f.voter
                    && membership.learners.contains(&f.id)
                    && f.recent_active
                    && f.matched >= commit
                    && f.lag_entries <= PROMOTE_MAX_LAG_ENTRIES
            })
            .map(|f| ConfChange::AddVoter(f.id))
    };
    let add = || {
        members
            .iter()
            .find(|(id, g)| {
                g.live
                    && !g.decommission
                    && g.has_rpc_addr
                    && **id != me
                    && !membership.contains(**id)
            })
            .map(|(id, _)| ConfChange::AddLearner(*id))
    };
    remove.or_else(promote).or_else(add)
}

/// The voter to hand leadership to: the most caught-up one.
pub fn transfer_target(followers: &[FollowerStatus]) -> Option<NodeId> {
    followers
        .iter()
        .filter(|f| f.voter)
        .max_by_key(|f| f.matched)
        .map(|f| f.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ProgressState;

    fn follower(id: u64, voter: bool, lag: u64, active: bool) -> FollowerStatus {
        FollowerStatus {
            id: NodeId(id),
            voter,
            matched: Index(10_000 - lag),
            next: Index(10_001 - lag),
            state: ProgressState::Replicate,
            lag_entries: lag,
            recent_active: active,
            inflight_msgs: 0,
        }
    }

    fn member(live: bool, decommission: bool) -> MemberView {
        MemberView {
            live,
            decommission,
            has_rpc_addr: true,
        }
    }

    #[test]
    fn removal_first_then_promotion_then_addition() {
        let mut m = Membership::with_voters([1, 2]);
        m.learners.insert(NodeId(3));
        let followers = [follower(2, true, 0, true), follower(3, false, 10, true)];
        let mut members = BTreeMap::new();
        members.insert(NodeId(2), member(true, true));
        members.insert(NodeId(4), member(true, false));
        let me = NodeId(1);
        assert_eq!(
            next_change(me, &m, &followers, &members, Index(9_000)),
            Some(ConfChange::Remove(NodeId(2)))
        );
        members.insert(NodeId(2), member(true, false));
        assert_eq!(
            next_change(me, &m, &followers, &members, Index(9_000)),
            Some(ConfChange::AddVoter(NodeId(3)))
        );
        // Within the lag bound but below the leader's commit: not yet.
        let below_commit = [follower(2, true, 0, true), follower(3, false, 500, true)];
        assert_eq!(
            next_change(me, &m, &below_commit, &members, Index(9_800)),
            Some(ConfChange::AddLearner(NodeId(4)))
        );
        let lagging = [follower(2, true, 0, true), follower(3, false, 5000, true)];
        assert_eq!(
            next_change(me, &m, &lagging, &members, Index(9_000)),
            Some(ConfChange::AddLearner(NodeId(4)))
        );
        members.insert(NodeId(4), member(false, false));
        assert_eq!(next_change(me, &m, &lagging, &members, Index(9_000)), None);
    }

    #[test]
    fn transfer_goes_to_the_most_caught_up_voter() {
        let followers = [
            follower(2, true, 50, true),
            follower(3, true, 1, true),
            follower(4, false, 0, true),
        ];
        assert_eq!(transfer_target(&followers), Some(NodeId(3)));
        assert_eq!(transfer_target(&[]), None);
    }
}
