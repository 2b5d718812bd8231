//! Where a topic partition lives, as the cluster client believes: the pure metadata
//! cache, the metadata leader belief for topic administration, and the partitioner.
//!
//! [`TopicCache`] keeps, per topic, each partition's leader and replicas from the
//! latest `Metadata` answer, plus the node addresses that answer listed. An entry is
//! used until it is older than its maximum age, or until a failure invalidates it
//! (`NOT_LEADER` without a usable hint, `UNKNOWN_TOPIC`, a lost connection); the I/O
//! shell then asks again. The cache holds at most [`MAX_CACHED_TOPICS`] topics (the
//! oldest entry is evicted first), [`MAX_CACHED_PARTITIONS`] partitions per topic
//! (every partition a topic may have), [`MAX_CACHED_ROUTES`] over all topics,
//! [`MAX_REPLICAS`] replicas per partition and [`super::MAX_MEMBERS`] nodes, so a
//! hostile or buggy answer cannot grow it without bound.
//!
//! Produces go to a partition's leader; when the answering node did not know it
//! (leader `0`: a node knows the leaders of the partitions it hosts only), to the
//! partition's first replica, which either serves or answers `NOT_LEADER` with the
//! leader's address ([`TopicCache::follow_hint`]). Reads go round-robin over the
//! partition's replicas. CreateTopic / AlterTopic / DeleteTopic go to the metadata
//! leader, learned from `NOT_LEADER` hints ([`TopicCache::admin_target`]).
//!
//! Time is an input (`now_ms`, any monotonic milliseconds); no sockets, no clocks.

use std::collections::HashMap;

use crate::types::NodeId;
use crate::wire::{ErrorCode, LeaderHint, NodeInfo, TopicMetadata, TopicPartition};

use super::routing::{reachable_addr, MAX_MEMBERS};

/// Most topics cached at once (the least recently fetched is evicted).
pub const MAX_CACHED_TOPICS: usize = 1024;
/// Most partitions kept per topic (more in an answer are ignored).
pub const MAX_CACHED_PARTITIONS: usize = crate::catalogue::MAX_PARTITIONS_PER_TOPIC as usize;
/// Most partitions cached over all topics (oldest topics are evicted beyond it).
pub const MAX_CACHED_ROUTES: usize = 100_000;
/// Most replicas kept per partition.
pub const MAX_REPLICAS: usize = 16;
/// Default maximum age of a cached topic entry: leaders move rarely, and a move is
/// learned at once from a `NOT_LEADER` hint; the age bounds how long a partition
/// count (after an AlterTopic elsewhere) can be outdated.
pub const DEFAULT_MAX_AGE_MS: u64 = 30_000;

/// One partition as the cache knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRoute {
    /// Its leader, if the answering node (or a later hint) knew it.
    pub leader: Option<NodeId>,
    /// The nodes holding a replica.
    pub replicas: Vec<NodeId>,
}

#[derive(Clone, Debug)]
struct TopicEntry {
    partitions: Vec<PartitionRoute>,
    fetched_ms: u64,
}

/// The metadata cache (see the module doc).
#[derive(Clone, Debug)]
pub struct TopicCache {
    nodes: HashMap<NodeId, String>,
    topics: HashMap<String, TopicEntry>,
    max_age_ms: u64,
    max_topics: usize,
    next_read: usize,
    admin_leader: Option<String>,
}

impl TopicCache {
    /// An empty cache whose entries live `max_age_ms` and which holds at most
    /// `max_topics` topics (at least 1, at most [`MAX_CACHED_TOPICS`]).
    pub fn new(max_age_ms: u64, max_topics: usize) -> TopicCache {
        TopicCache {
            nodes: HashMap::new(),
            topics: HashMap::new(),
            max_age_ms,
            max_topics: max_topics.clamp(1, MAX_CACHED_TOPICS),
            next_read: 0,
            admin_leader: None,
        }
    }

    /// Takes a `Metadata` answer obtained from `via` at `now_ms`. Topics answered
    /// with an error are dropped from the cache and returned with their code.
    pub fn update(
        &mut self,
        nodes: Vec<NodeInfo>,
        topics: Vec<TopicMetadata>,
        via: &str,
        now_ms: u64,
    ) -> Vec<(String, ErrorCode)> {
        for n in nodes.into_iter().take(MAX_MEMBERS) {
            if n.id != NodeId(0) && !n.rpc_addr.is_empty() {
                self.learn_node(n.id, reachable_addr(&n.rpc_addr, via));
            }
        }
        let mut errors = Vec::new();
        for t in topics.into_iter().take(MAX_CACHED_TOPICS) {
            if t.error != ErrorCode::None {
                self.topics.remove(&t.name);
                errors.push((t.name, t.error));
                continue;
            }
            let mut partitions = t.partitions;
            partitions.sort_by_key(|p| p.partition);
            // Partitions are numbered from 0 without holes; a broken answer is cut at
            // the first hole rather than routing a partition to the wrong group.
            let routes: Vec<PartitionRoute> = partitions
                .into_iter()
                .take(MAX_CACHED_PARTITIONS)
                .enumerate()
                .take_while(|(i, p)| p.partition as usize == *i)
                .map(|(_, p)| PartitionRoute {
                    leader: (p.leader != NodeId(0)).then_some(p.leader),
                    replicas: p.replicas.into_iter().take(MAX_REPLICAS).collect(),
                })
                .collect();
            self.insert(t.name, routes, now_ms);
        }
        errors
    }

    fn learn_node(&mut self, id: NodeId, addr: String) {
        if self.nodes.len() < MAX_MEMBERS || self.nodes.contains_key(&id) {
            self.nodes.insert(id, addr);
        }
    }

    fn insert(&mut self, topic: String, partitions: Vec<PartitionRoute>, now_ms: u64) {
        self.topics.remove(&topic);
        let routes = |t: &HashMap<String, TopicEntry>| -> usize {
            t.values().map(|e| e.partitions.len()).sum()
        };
        // Bounded: each turn removes a topic.
        while !self.topics.is_empty()
            && (self.topics.len() >= self.max_topics
                || routes(&self.topics) + partitions.len() > MAX_CACHED_ROUTES)
        {
            let oldest = self
                .topics
                .iter()
                .min_by_key(|(_, e)| e.fetched_ms)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.topics.remove(&oldest);
            }
        }
        let entry = TopicEntry {
            partitions,
            fetched_ms: now_ms,
        };
        self.topics.insert(topic, entry);
    }

    /// Topics cached (fresh or not).
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// True when no topic is cached.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Whether `topic` is cached and younger than the maximum age at `now_ms`.
    pub fn is_fresh(&self, topic: &str, now_ms: u64) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|e| now_ms.saturating_sub(e.fetched_ms) < self.max_age_ms)
    }

    /// `topic`'s partition count, if cached (fresh or not).
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics
            .get(topic)
            .map(|e| u32::try_from(e.partitions.len()).unwrap_or(u32::MAX))
    }

    /// Forget `topic`: it is asked again before its next use.
    pub fn invalidate(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The cached route of `target`.
    pub fn route(&self, target: &TopicPartition) -> Option<&PartitionRoute> {
        self.topics
            .get(&target.topic)
            .and_then(|e| e.partitions.get(target.partition as usize))
    }

    fn addr(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .get(&id)
            .map(String::as_str)
            .filter(|a| !a.is_empty())
    }

    /// Where a produce to `target` goes: its leader; while the leader is unknown,
    /// its first replica with a known address (it serves or hints).
    pub fn write_target(&self, target: &TopicPartition) -> Option<String> {
        let route = self.route(target)?;
        route
            .leader
            .and_then(|l| self.addr(l))
            .or_else(|| route.replicas.iter().find_map(|r| self.addr(*r)))
            .map(str::to_string)
    }

    /// Where a read of `target` goes: its replicas with a known address in turn;
    /// else its write target.
    pub fn read_target(&mut self, target: &TopicPartition) -> Option<String> {
        let route = self.route(target)?;
        let addrs: Vec<&str> = route
            .replicas
            .iter()
            .filter_map(|r| self.addr(*r))
            .collect();
        if addrs.is_empty() {
            return self.write_target(target);
        }
        let pick = addrs[self.next_read % addrs.len()].to_string();
        self.next_read = self.next_read.wrapping_add(1);
        Some(pick)
    }

    /// Whether `addr` is `target`'s known leader.
    pub fn is_leader(&self, target: &TopicPartition, addr: &str) -> bool {
        self.route(target)
            .and_then(|r| r.leader)
            .and_then(|l| self.addr(l))
            == Some(addr)
    }

    /// A `NOT_LEADER` hint from `from` about `target`: believe it, and return where
    /// to try next. `None` when the hint names no address or points back at `from`
    /// (a stale node): the entry is then invalidated and the caller backs off.
    pub fn follow_hint(
        &mut self,
        target: &TopicPartition,
        from: &str,
        hint: Option<&LeaderHint>,
    ) -> Option<String> {
        let usable = hint.filter(|h| !h.addr.is_empty() && h.addr != from);
        let Some(hint) = usable else {
            self.invalidate(&target.topic);
            return None;
        };
        if hint.leader_id != NodeId(0) {
            self.learn_node(hint.leader_id, hint.addr.clone());
            if let Some(route) = self
                .topics
                .get_mut(&target.topic)
                .and_then(|e| e.partitions.get_mut(target.partition as usize))
            {
                route.leader = Some(hint.leader_id);
            }
        }
        Some(hint.addr.clone())
    }

    /// The metadata leader, if a hint named it.
    pub fn admin_target(&self) -> Option<&str> {
        self.admin_leader.as_deref()
    }

    /// A `NOT_LEADER` hint from `from` to a topic administration request: returns
    /// the address to try next (`None`: no usable hint, back off).
    pub fn follow_admin_hint(&mut self, from: &str, hint: Option<&LeaderHint>) -> Option<String> {
        match hint.filter(|h| !h.addr.is_empty() && h.addr != from) {
            Some(h) => {
                self.admin_leader = Some(h.addr.clone());
                Some(h.addr.clone())
            }
            None => {
                self.admin_leader = None;
                None
            }
        }
    }

    /// `addr` failed a topic administration request: stop believing it leads.
    pub fn admin_failed(&mut self, addr: &str) {
        if self.admin_leader.as_deref() == Some(addr) {
            self.admin_leader = None;
        }
    }
}

/// Picks the partition of a record produced without one.
///
/// Today records have no key, so the choice is round-robin (each call takes the
/// next partition, starting at a seeded position so that many clients do not all
/// begin with partition 0). When records get keys, a keyed record will be placed by
/// a hash of its key here (`pick` gains the key), so one key always lands in one
/// partition; the callers already go through this one seam.
#[derive(Clone, Debug)]
pub struct Partitioner {
    next: u64,
}

impl Partitioner {
    /// A round-robin partitioner starting at `seed` (any number).
    pub fn new(seed: u64) -> Partitioner {
        Partitioner { next: seed }
    }

    /// The partition for the next record of a topic with `partitions` partitions
    /// (0 when it has none, which the server then refuses as unknown).
    pub fn pick(&mut self, partitions: u32) -> u32 {
        if partitions == 0 {
            return 0;
        }
        let p = (self.next % u64::from(partitions)) as u32;
        self.next = self.next.wrapping_add(1);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::GroupId;
    use crate::wire::PartitionInfo;

    fn node(id: u64) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            name: format!("n{id}"),
            rpc_addr: format!("10.0.0.{id}:8400"),
        }
    }

    fn topic(name: &str, partitions: &[(u64, &[u64])]) -> TopicMetadata {
        TopicMetadata {
            name: name.into(),
            error: ErrorCode::None,
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(i, (leader, replicas))| PartitionInfo {
                    partition: i as u32,
                    group: GroupId(10 + i as u64),
                    leader: NodeId(*leader),
                    replicas: replicas.iter().map(|r| NodeId(*r)).collect(),
                })
                .collect(),
        }
    }

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn cache_with_orders() -> TopicCache {
        let mut c = TopicCache::new(1_000, 8);
        let errors = c.update(
            vec![node(1), node(2), node(3)],
            vec![topic("orders", &[(2, &[1, 2, 3]), (0, &[3, 1, 2])])],
            "seed:1",
            0,
        );
        assert!(errors.is_empty());
        c
    }

    #[test]
    fn produces_go_to_the_leader_or_the_first_replica_when_it_is_unknown() {
        let c = cache_with_orders();
        assert_eq!(c.partition_count("orders"), Some(2));
        assert_eq!(
            c.write_target(&tp("orders", 0)).as_deref(),
            Some("10.0.0.2:8400")
        );
        assert!(c.is_leader(&tp("orders", 0), "10.0.0.2:8400"));
        assert_eq!(
            c.write_target(&tp("orders", 1)).as_deref(),
            Some("10.0.0.3:8400")
        );
        assert!(!c.is_leader(&tp("orders", 1), "10.0.0.3:8400"));
        assert_eq!(c.write_target(&tp("orders", 2)), None);
        assert_eq!(c.write_target(&tp("payments", 0)), None);
    }

    #[test]
    fn reads_rotate_over_the_replicas() {
        let mut c = cache_with_orders();
        let reads: Vec<String> = (0..4)
            .map(|_| c.read_target(&tp("orders", 0)).unwrap())
            .collect();
        assert_eq!(
            reads,
            [
                "10.0.0.1:8400",
                "10.0.0.2:8400",
                "10.0.0.3:8400",
                "10.0.0.1:8400"
            ]
        );
    }

    #[test]
    fn entries_expire_and_can_be_invalidated() {
        let mut c = cache_with_orders();
        assert!(c.is_fresh("orders", 999));
        assert!(!c.is_fresh("orders", 1_000));
        assert!(c.is_fresh("orders", 0));
        c.invalidate("orders");
        assert!(!c.is_fresh("orders", 0));
        assert_eq!(c.partition_count("orders"), None);
    }

    #[test]
    fn topics_answered_with_an_error_are_dropped_and_reported() {
        let mut c = cache_with_orders();
        let mut gone = topic("orders", &[]);
        gone.error = ErrorCode::UnknownTopic;
        let errors = c.update(vec![], vec![gone], "seed:1", 5);
        assert_eq!(errors, [("orders".to_string(), ErrorCode::UnknownTopic)]);
        assert!(c.is_empty());
    }

    #[test]
    fn hints_move_a_partition_leader_unless_they_point_back_or_are_empty() {
        let mut c = cache_with_orders();
        let target = tp("orders", 1);
        let hint = LeaderHint {
            leader_id: NodeId(1),
            addr: "10.0.0.1:8400".into(),
        };
        assert_eq!(
            c.follow_hint(&target, "10.0.0.3:8400", Some(&hint))
                .as_deref(),
            Some("10.0.0.1:8400")
        );
        assert!(c.is_leader(&target, "10.0.0.1:8400"));
        assert_eq!(c.write_target(&target).as_deref(), Some("10.0.0.1:8400"));
        // A hint naming the node that sent it is stale: forget the topic.
        assert_eq!(c.follow_hint(&target, "10.0.0.1:8400", Some(&hint)), None);
        assert_eq!(c.partition_count("orders"), None);
        let mut c = cache_with_orders();
        assert_eq!(c.follow_hint(&target, "10.0.0.3:8400", None), None);
        assert_eq!(c.partition_count("orders"), None);
    }

    #[test]
    fn the_metadata_leader_is_learned_from_hints_and_forgotten_on_failure() {
        let mut c = TopicCache::new(1_000, 8);
        assert_eq!(c.admin_target(), None);
        let hint = LeaderHint {
            leader_id: NodeId(2),
            addr: "10.0.0.2:8400".into(),
        };
        assert_eq!(
            c.follow_admin_hint("10.0.0.1:8400", Some(&hint)).as_deref(),
            Some("10.0.0.2:8400")
        );
        assert_eq!(c.admin_target(), Some("10.0.0.2:8400"));
        c.admin_failed("10.0.0.3:8400");
        assert_eq!(c.admin_target(), Some("10.0.0.2:8400"));
        c.admin_failed("10.0.0.2:8400");
        assert_eq!(c.admin_target(), None);
        assert_eq!(c.follow_admin_hint("10.0.0.2:8400", Some(&hint)), None);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest_topic() {
        let mut c = TopicCache::new(1_000, 3);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            c.update(
                vec![node(1)],
                vec![topic(name, &[(1, &[1])])],
                "s:1",
                i as u64,
            );
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.partition_count("a"), None);
        assert_eq!(c.partition_count("d"), Some(1));
        let many: Vec<(u64, &[u64])> = vec![(1, &[1][..]); MAX_CACHED_PARTITIONS + 10];
        c.update(vec![], vec![topic("big", &many)], "s:1", 9);
        assert_eq!(c.partition_count("big"), Some(MAX_CACHED_PARTITIONS as u32));
    }

    #[test]
    fn every_partition_a_topic_may_have_is_routed_and_all_routes_are_bounded() {
        let mut c = TopicCache::new(1_000, 1024);
        let full: Vec<(u64, &[u64])> = vec![(1, &[1][..]); MAX_CACHED_PARTITIONS];
        for i in 0..12u64 {
            c.update(vec![], vec![topic(&format!("t{i}"), &full)], "s:1", i);
        }
        assert_eq!(c.partition_count("t11"), Some(MAX_CACHED_PARTITIONS as u32));
        let cached: usize = (0..12)
            .filter_map(|i| c.partition_count(&format!("t{i}")))
            .map(|n| n as usize)
            .sum();
        assert!(cached <= MAX_CACHED_ROUTES, "{cached} routes cached");
        assert_eq!(c.partition_count("t0"), None, "the oldest topic went first");
    }

    #[test]
    fn a_partition_list_with_a_hole_is_cut_at_the_hole() {
        let mut c = TopicCache::new(1_000, 8);
        let mut t = topic("t", &[(1, &[1]), (1, &[1]), (1, &[1])]);
        t.partitions[1].partition = 7;
        c.update(vec![node(1)], vec![t], "s:1", 0);
        // Sorted: 0, 2, 7 -> only 0 is where it should be.
        assert_eq!(c.partition_count("t"), Some(1));
    }

    #[test]
    fn unspecified_node_addresses_are_reached_through_the_answering_host() {
        let mut c = TopicCache::new(1_000, 8);
        let mut n = node(1);
        n.rpc_addr = "0.0.0.0:9000".into();
        c.update(
            vec![n],
            vec![topic("t", &[(1, &[1])])],
            "192.168.1.5:8400",
            0,
        );
        assert_eq!(
            c.write_target(&tp("t", 0)).as_deref(),
            Some("192.168.1.5:9000")
        );
    }

    #[test]
    fn the_partitioner_goes_round_robin_from_its_seed() {
        let mut p = Partitioner::new(4);
        let picks: Vec<u32> = (0..6).map(|_| p.pick(3)).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
        assert_eq!(p.pick(0), 0);
        assert_eq!(p.pick(1), 0);
    }
}
