//! Which server a request goes to: the pure routing state of the cluster client.
//!
//! The [`Router`] holds the seeds it was given, the member list from the latest
//! `GetServers`, and the leader it believes in. Produces go to the leader; reads go
//! round-robin over live followers and fall back to the leader (then to anyone).
//! Failures update the belief: a `NOT_LEADER` hint moves the leader, a failed node
//! loses its leader status, and any failure marks the list stale so the client
//! refreshes it before the next attempt. No sockets, no clocks.

use crate::types::NodeId;
use crate::wire::{ServerInfo, ServerRole};

/// Most members kept from one `GetServers` answer (a hostile or buggy server cannot
/// make the client hold an unbounded list).
pub const MAX_MEMBERS: usize = 256;

/// A server as the client knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Where to connect, `host:port`.
    pub addr: String,
    /// Raft role as the answering node saw it.
    pub role: ServerRole,
    /// Gossip liveness as the answering node saw it.
    pub live: bool,
}

impl From<ServerInfo> for Member {
    fn from(s: ServerInfo) -> Member {
        Member {
            id: s.id,
            name: s.name,
            addr: s.rpc_addr,
            role: s.role,
            live: s.live,
        }
    }
}

/// Routing state (see the module doc).
#[derive(Clone, Debug)]
pub struct Router {
    seeds: Vec<String>,
    members: Vec<Member>,
    leader: Option<String>,
    next_read: usize,
    next_any: usize,
    stale: bool,
}

impl Router {
    /// A router that knows only its seeds (deduplicated, empty ones dropped).
    pub fn new(seeds: Vec<String>) -> Router {
        let mut unique: Vec<String> = Vec::new();
        for s in seeds {
            let s = s.trim().to_string();
            if !s.is_empty() && !unique.contains(&s) {
                unique.push(s);
            }
        }
        Router {
            seeds: unique,
            members: Vec::new(),
            leader: None,
            next_read: 0,
            next_any: 0,
            stale: true,
        }
    }

    /// The seeds.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// The members from the latest refresh.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The leader's address, if one is believed.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Whether the member list should be refreshed before the next attempt.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The member list cannot be asked for (the identity may not `describe`): route
    /// with the seeds alone instead of asking again before every attempt.
    pub fn without_discovery(&mut self) {
        self.stale = false;
    }

    /// Takes a `GetServers` answer obtained from `via` (the address asked). A member
    /// advertising an unspecified host (`0.0.0.0`, `[::]`) is reached at `via`'s host.
    pub fn update(&mut self, servers: Vec<ServerInfo>, via: &str) {
        let mut members: Vec<Member> = servers
            .into_iter()
            .take(MAX_MEMBERS)
            .map(Member::from)
            .collect();
        for m in &mut members {
            m.addr = reachable_addr(&m.addr, via);
        }
        members.sort_by_key(|m| m.id);
        self.leader = members
            .iter()
            .find(|m| m.role == ServerRole::Leader && !m.addr.is_empty())
            .map(|m| m.addr.clone());
        self.members = members;
        self.stale = false;
    }

    /// Where a produce goes: the leader if known; otherwise some live member (in
    /// turn), who will answer with a leader hint; otherwise a seed.
    pub fn write_target(&mut self) -> Option<String> {
        if let Some(leader) = &self.leader {
            return Some(leader.clone());
        }
        self.any_target()
    }

    /// Where a read goes: live followers in turn; else the leader; else anyone.
    pub fn read_target(&mut self) -> Option<String> {
        let followers: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.live && m.role == ServerRole::Follower && !m.addr.is_empty())
            .filter(|m| Some(m.addr.as_str()) != self.leader.as_deref())
            .collect();
        if !followers.is_empty() {
            let pick = followers[self.next_read % followers.len()].addr.clone();
            self.next_read = self.next_read.wrapping_add(1);
            return Some(pick);
        }
        self.write_target()
    }

    /// A live member other than the believed leader, in turn, or a seed if none.
    fn any_target(&mut self) -> Option<String> {
        let live: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.live && !m.addr.is_empty())
            .collect();
        let pick = if !live.is_empty() {
            Some(live[self.next_any % live.len()].addr.clone())
        } else if !self.seeds.is_empty() {
            Some(self.seeds[self.next_any % self.seeds.len()].clone())
        } else {
            None
        };
        self.next_any = self.next_any.wrapping_add(1);
        pick
    }

    /// A `NOT_LEADER` hint from `from`: believe `leader_addr` from now on.
    /// Returns false when the hint points back at `from` (a confused or stale node),
    /// in which case the caller should back off instead of following it.
    pub fn follow_hint(&mut self, from: &str, leader_addr: &str) -> bool {
        self.stale = true;
        if leader_addr == from {
            self.leader = None;
            return false;
        }
        self.leader = Some(leader_addr.to_string());
        true
    }

    /// `addr` failed (connection lost, no leader, no quorum): stop believing it leads
    /// and refresh the list before the next attempt.
    pub fn on_failure(&mut self, addr: &str) {
        if self.leader.as_deref() == Some(addr) {
            self.leader = None;
        }
        self.stale = true;
    }

    /// Where to ask for the member list, most promising first: the believed leader,
    /// live members, other members, then the seeds; no duplicates.
    pub fn discovery_order(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        let mut push = |a: &str| {
            if !a.is_empty() && !order.iter().any(|o| o == a) {
                order.push(a.to_string());
            }
        };
        if let Some(l) = &self.leader {
            push(l);
        }
        self.members
            .iter()
            .filter(|m| m.live)
            .for_each(|m| push(&m.addr));
        self.members.iter().for_each(|m| push(&m.addr));
        self.seeds.iter().for_each(|s| push(s));
        order
    }
}

/// `addr` with an unspecified host replaced by `via`'s host.
pub(crate) fn reachable_addr(addr: &str, via: &str) -> String {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return addr.to_string();
    };
    if matches!(host, "0.0.0.0" | "[::]" | "::" | "") {
        if let Some((via_host, _)) = via.rsplit_once(':') {
            return format!("{via_host}:{port}");
        }
    }
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u64, role: ServerRole, live: bool) -> ServerInfo {
        ServerInfo {
            id: NodeId(id),
            name: format!("n{id}"),
            rpc_addr: format!("10.0.0.{id}:8400"),
            role,
            live,
        }
    }

    fn three(leader: u64) -> Vec<ServerInfo> {
        (1..=3)
            .map(|id| {
                let role = if id == leader {
                    ServerRole::Leader
                } else {
                    ServerRole::Follower
                };
                server(id, role, true)
            })
            .collect()
    }

    #[test]
    fn seeds_are_deduplicated_and_used_before_discovery() {
        let mut r = Router::new(vec!["a:1".into(), " a:1".into(), "".into(), "b:2".into()]);
        assert_eq!(r.seeds(), ["a:1", "b:2"]);
        assert!(r.is_stale());
        assert_eq!(r.write_target().as_deref(), Some("a:1"));
        assert_eq!(r.write_target().as_deref(), Some("b:2"));
        assert_eq!(r.read_target().as_deref(), Some("a:1"));
    }

    #[test]
    fn produces_go_to_the_leader_and_reads_round_robin_over_followers() {
        let mut r = Router::new(vec!["seed:1".into()]);
        r.update(three(2), "seed:1");
        assert!(!r.is_stale());
        assert_eq!(r.leader(), Some("10.0.0.2:8400"));
        for _ in 0..3 {
            assert_eq!(r.write_target().as_deref(), Some("10.0.0.2:8400"));
        }
        let reads: Vec<String> = (0..4).map(|_| r.read_target().unwrap()).collect();
        assert_eq!(
            reads,
            [
                "10.0.0.1:8400",
                "10.0.0.3:8400",
                "10.0.0.1:8400",
                "10.0.0.3:8400"
            ]
        );
    }

    #[test]
    fn reads_skip_dead_followers_and_learners_and_fall_back_to_the_leader() {
        let mut r = Router::new(vec![]);
        let mut servers = three(1);
        servers[1].live = false; // n2
        servers[2].role = ServerRole::Learner; // n3
        r.update(servers, "x:1");
        assert_eq!(r.read_target().as_deref(), Some("10.0.0.1:8400"));
        assert_eq!(r.read_target().as_deref(), Some("10.0.0.1:8400"));
    }

    #[test]
    fn a_single_dev_node_is_leader_reader_and_writer() {
        let mut r = Router::new(vec!["127.0.0.1:8400".into()]);
        r.update(
            vec![ServerInfo {
                id: NodeId(1),
                name: "dev".into(),
                rpc_addr: "127.0.0.1:8400".into(),
                role: ServerRole::Leader,
                live: true,
            }],
            "127.0.0.1:8400",
        );
        assert_eq!(r.write_target().as_deref(), Some("127.0.0.1:8400"));
        assert_eq!(r.read_target().as_deref(), Some("127.0.0.1:8400"));
    }

    #[test]
    fn without_a_leader_writes_rotate_over_live_members() {
        let mut r = Router::new(vec!["seed:1".into()]);
        let mut servers = three(0);
        servers[0].live = false;
        r.update(servers, "seed:1");
        assert_eq!(r.leader(), None);
        let picks: Vec<String> = (0..3).map(|_| r.write_target().unwrap()).collect();
        assert_eq!(picks, ["10.0.0.2:8400", "10.0.0.3:8400", "10.0.0.2:8400"]);
    }

    #[test]
    fn hints_move_the_leader_unless_they_point_back() {
        let mut r = Router::new(vec![]);
        r.update(three(1), "x:1");
        assert!(r.follow_hint("10.0.0.1:8400", "10.0.0.3:8400"));
        assert_eq!(r.leader(), Some("10.0.0.3:8400"));
        assert!(r.is_stale());
        assert_eq!(r.write_target().as_deref(), Some("10.0.0.3:8400"));
        assert!(!r.follow_hint("10.0.0.3:8400", "10.0.0.3:8400"));
        assert_eq!(r.leader(), None);
    }

    #[test]
    fn a_failed_leader_is_forgotten_and_the_list_goes_stale() {
        let mut r = Router::new(vec![]);
        r.update(three(1), "x:1");
        r.on_failure("10.0.0.2:8400");
        assert_eq!(r.leader(), Some("10.0.0.1:8400"));
        assert!(r.is_stale());
        r.on_failure("10.0.0.1:8400");
        assert_eq!(r.leader(), None);
    }

    #[test]
    fn discovery_asks_leader_then_live_then_others_then_seeds() {
        let mut r = Router::new(vec!["seed:1".into(), "10.0.0.1:8400".into()]);
        let mut servers = three(3);
        servers[1].live = false;
        r.update(servers, "seed:1");
        assert_eq!(
            r.discovery_order(),
            ["10.0.0.3:8400", "10.0.0.1:8400", "10.0.0.2:8400", "seed:1"]
        );
    }

    #[test]
    fn unspecified_hosts_are_reached_through_the_seed_host() {
        let mut r = Router::new(vec![]);
        let mut s = server(1, ServerRole::Leader, true);
        s.rpc_addr = "0.0.0.0:9000".into();
        r.update(vec![s], "192.168.1.5:8400");
        assert_eq!(r.leader(), Some("192.168.1.5:9000"));
        assert_eq!(reachable_addr("[::]:7", "[::1]:8400"), "[::1]:7");
        assert_eq!(reachable_addr("noport", "h:1"), "noport");
    }

    #[test]
    fn the_member_list_is_bounded() {
        let mut r = Router::new(vec![]);
        let many: Vec<ServerInfo> = (1..=(MAX_MEMBERS as u64 + 50))
            .map(|id| server(id, ServerRole::Follower, true))
            .collect();
        r.update(many, "x:1");
        assert_eq!(r.members().len(), MAX_MEMBERS);
    }
}
