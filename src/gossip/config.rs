//! Gossip configuration. Defaults follow hashicorp/memberlist's LAN profile (DESIGN,
//! "Parameters from the field"); tests pass faster timings through the same struct.
//!
//! Derived quantities (suspicion timeout, retransmit limit) are functions of the
//! live cluster size `n` and live here so the formulas are in one place.

use std::fmt;

use super::crypto::KEY_BYTES;
use super::member::MAX_TAGS_BYTES;

/// Longest cluster name, in bytes (a `u8`-prefixed field in every packet).
pub const MAX_CLUSTER_NAME_BYTES: usize = 64;
/// Smallest accepted `max_packet_bytes`: room for the header, crypto overhead and one
/// member entry with maximal tags.
pub const MIN_PACKET_BYTES: usize = 1024;
/// Largest accepted `max_packet_bytes` (largest UDP payload over IPv4).
pub const MAX_PACKET_BYTES: usize = 65_507;

// A member entry with a full tag set (plus ids, address and every header, sealed)
// must fit in the smallest allowed packet.
const _: () = assert!(MAX_TAGS_BYTES + 256 < MIN_PACKET_BYTES);

/// Tunables of the SWIM state machine. All durations are milliseconds of the
/// caller-supplied clock.
#[derive(Clone)]
pub struct GossipConfig {
    /// Packets carry this name; packets with another name are dropped and counted.
    pub cluster_name: String,
    /// With a key, every packet is sealed with AES-256-GCM and unsealed packets (or
    /// packets that fail authentication) are dropped and counted.
    pub secret_key: Option<[u8; KEY_BYTES]>,
    /// One protocol period: one member probed per period (memberlist: 1 s).
    pub probe_interval_ms: u64,
    /// Wait for a direct ack before asking others to probe indirectly (500 ms).
    pub probe_timeout_ms: u64,
    /// Members asked to probe indirectly (ping-req) after a missed direct ack (3).
    pub indirect_checks: usize,
    /// Lifeguard local health: the probe interval and timeout stretch up to this many
    /// times while this node itself seems slow or lossy (missed nacks, refutations)
    /// (8).
    pub awareness_max_multiplier: u64,
    /// Suspicion timeout multiplier: min timeout is
    /// `suspicion_mult · max(1, log10(n + 1)) · probe_interval_ms` (4).
    pub suspicion_mult: u64,
    /// Lifeguard: a fresh suspicion starts at this many times the minimum and shrinks
    /// toward the minimum as independent suspicions confirm it (6).
    pub suspicion_max_timeout_mult: u64,
    /// A broadcast is piggy-backed `retransmit_mult · ceil(log10(n + 1))` times (4).
    pub retransmit_mult: u64,
    /// How often pending broadcasts are pushed to random members (200 ms).
    pub gossip_interval_ms: u64,
    /// Members gossiped to per gossip interval (3).
    pub gossip_nodes: usize,
    /// Members that turned dead within this window still receive gossip, so a falsely
    /// declared member learns it and refutes (30 s).
    pub gossip_to_dead_ms: u64,
    /// Full state exchange with one random live member this often (30 s).
    pub push_pull_interval_ms: u64,
    /// While joining and still alone, resend the join state exchange to the seeds this
    /// often (1 s).
    pub join_retry_ms: u64,
    /// Try a full state exchange with one random dead member this often, so healed
    /// partitions merge again (30 s, as serf's reconnect interval).
    pub reconnect_interval_ms: u64,
    /// Dead members are forgotten this long after they were declared dead (10 min).
    pub dead_retention_ms: u64,
    /// Members that left are forgotten this long after their leave (30 s).
    pub left_retention_ms: u64,
    /// Upper bound of every outgoing packet, crypto overhead included (1400 bytes).
    pub max_packet_bytes: usize,
    /// Bound of the member table; unknown members beyond it are ignored and counted.
    pub max_members: usize,
    /// Bound of the output queue; outputs beyond it are dropped and counted. The
    /// owner drains outputs after every call, so this is only a safety net.
    pub max_pending_outputs: usize,
    /// Bound of in-flight relayed (indirect) probes this node runs for others.
    pub max_pending_relays: usize,
    /// Full-state replies (join / push-pull answers) per protocol period; requests
    /// beyond it are refused and counted, bounding the amplification a small spoofed
    /// request can cause (64).
    pub max_sync_replies_per_period: u32,
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig::lan()
    }
}

impl GossipConfig {
    /// hashicorp/memberlist `DefaultLANConfig` timings.
    pub fn lan() -> GossipConfig {
        GossipConfig {
            cluster_name: "commitlog".to_owned(),
            secret_key: None,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            awareness_max_multiplier: 8,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            gossip_to_dead_ms: 30_000,
            push_pull_interval_ms: 30_000,
            join_retry_ms: 1_000,
            reconnect_interval_ms: 30_000,
            dead_retention_ms: 600_000,
            left_retention_ms: 30_000,
            max_packet_bytes: 1_400,
            max_members: 4_096,
            max_pending_outputs: 16_384,
            max_pending_relays: 256,
            max_sync_replies_per_period: 64,
        }
    }

    /// LAN settings scaled down `factor` times in time (e.g. 10 → 100 ms periods), for
    /// tests on loopback. Sizes and counts are unchanged.
    pub fn scaled_down(factor: u64) -> GossipConfig {
        let f = factor.max(1);
        let lan = GossipConfig::lan();
        GossipConfig {
            probe_interval_ms: lan.probe_interval_ms / f,
            probe_timeout_ms: lan.probe_timeout_ms / f,
            gossip_interval_ms: lan.gossip_interval_ms / f,
            gossip_to_dead_ms: lan.gossip_to_dead_ms / f,
            push_pull_interval_ms: lan.push_pull_interval_ms / f,
            join_retry_ms: lan.join_retry_ms / f,
            reconnect_interval_ms: lan.reconnect_interval_ms / f,
            dead_retention_ms: lan.dead_retention_ms / f,
            left_retention_ms: lan.left_retention_ms / f,
            ..lan
        }
    }

    /// Checks every bound the state machine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str| Err(ConfigError { what });
        if self.cluster_name.len() > MAX_CLUSTER_NAME_BYTES {
            return bad("cluster_name longer than 64 bytes");
        }
        if self.probe_interval_ms == 0 || self.gossip_interval_ms == 0 {
            return bad("probe_interval_ms and gossip_interval_ms must be > 0");
        }
        if self.probe_timeout_ms == 0 || self.probe_timeout_ms >= self.probe_interval_ms {
            return bad("probe_timeout_ms must be in 1..probe_interval_ms");
        }
        if self.push_pull_interval_ms == 0
            || self.join_retry_ms == 0
            || self.reconnect_interval_ms == 0
        {
            return bad("push_pull, join_retry and reconnect intervals must be > 0");
        }
        if self.suspicion_mult == 0 || self.suspicion_max_timeout_mult == 0 {
            return bad("suspicion multipliers must be > 0");
        }
        if self.awareness_max_multiplier == 0 {
            return bad("awareness_max_multiplier must be > 0");
        }
        if self.retransmit_mult == 0 {
            return bad("retransmit_mult must be > 0");
        }
        if !(MIN_PACKET_BYTES..=MAX_PACKET_BYTES).contains(&self.max_packet_bytes) {
            return bad("max_packet_bytes must be in 1024..=65507");
        }
        if self.max_members < 2
            || self.max_pending_outputs < 16
            || self.max_pending_relays == 0
            || self.max_sync_replies_per_period == 0
        {
            return bad("max_members >= 2, max_pending_outputs >= 16, max_pending_relays >= 1, max_sync_replies_per_period >= 1");
        }
        Ok(())
    }

    /// `max(1, log10(n + 1))`: the cluster-size scale of suspicion timeouts.
    fn size_scale(live_members: usize) -> f64 {
        ((live_members as f64) + 1.0).log10().max(1.0)
    }

    /// Lifeguard minimum suspicion timeout for a cluster of `live_members` (self
    /// included): `suspicion_mult · max(1, log10(n + 1)) · probe_interval_ms`.
    pub fn suspicion_min_timeout_ms(&self, live_members: usize) -> u64 {
        let ms = self.suspicion_mult as f64
            * GossipConfig::size_scale(live_members)
            * self.probe_interval_ms as f64;
        ms.round() as u64
    }

    /// Lifeguard maximum suspicion timeout: where an unconfirmed suspicion starts.
    pub fn suspicion_max_timeout_ms(&self, live_members: usize) -> u64 {
        self.suspicion_min_timeout_ms(live_members)
            .saturating_mul(self.suspicion_max_timeout_mult)
    }

    /// How many times one broadcast is piggy-backed:
    /// `retransmit_mult · ceil(log10(n + 1))`, at least `retransmit_mult`.
    pub fn retransmit_limit(&self, live_members: usize) -> u32 {
        let scale = ((live_members as f64) + 1.0).log10().ceil().max(1.0) as u64;
        u32::try_from(self.retransmit_mult.saturating_mul(scale)).unwrap_or(u32::MAX)
    }
}

impl fmt::Debug for GossipConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipConfig")
            .field("cluster_name", &self.cluster_name)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("probe_interval_ms", &self.probe_interval_ms)
            .field("probe_timeout_ms", &self.probe_timeout_ms)
            .field("indirect_checks", &self.indirect_checks)
            .field("suspicion_mult", &self.suspicion_mult)
            .field(
                "suspicion_max_timeout_mult",
                &self.suspicion_max_timeout_mult,
            )
            .field("retransmit_mult", &self.retransmit_mult)
            .field("gossip_interval_ms", &self.gossip_interval_ms)
            .field("gossip_nodes", &self.gossip_nodes)
            .field("push_pull_interval_ms", &self.push_pull_interval_ms)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .finish_non_exhaustive()
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Which rule was broken.
    pub what: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid gossip config: {}", self.what)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_defaults_validate_and_formulas_match_memberlist() {
        let c = GossipConfig::lan();
        c.validate().unwrap();
        // n + 1 <= 10: the scale is clamped to 1 → 4 probe intervals.
        assert_eq!(c.suspicion_min_timeout_ms(5), 4_000);
        assert_eq!(c.suspicion_max_timeout_ms(5), 24_000);
        // 99 members + 1 = 100 → log10 = 2 → 8 s.
        assert_eq!(c.suspicion_min_timeout_ms(99), 8_000);
        assert_eq!(c.retransmit_limit(5), 4);
        assert_eq!(c.retransmit_limit(20), 8);
        assert_eq!(c.retransmit_limit(100), 12);
        GossipConfig::scaled_down(10).validate().unwrap();
    }

    #[test]
    fn validate_rejects_out_of_range_values_and_debug_hides_the_key() {
        let mut c = GossipConfig::lan();
        c.probe_timeout_ms = c.probe_interval_ms;
        assert!(c.validate().is_err());
        let mut c = GossipConfig::lan();
        c.max_packet_bytes = 512;
        assert!(c.validate().is_err());
        let mut c = GossipConfig::lan();
        c.cluster_name = "x".repeat(65);
        assert!(c.validate().is_err());
        let mut c = GossipConfig::lan();
        c.secret_key = Some([0xAB; 32]);
        let shown = format!("{c:?}");
        assert!(shown.contains("redacted") && !shown.contains("171"));
    }
}
