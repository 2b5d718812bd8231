//! Per-topic and per-partition series, bounded: the raft thread publishes a sample
//! of at most `--metrics-partition-series` hosted partitions (0 turns the
//! per-partition and per-topic series off); the counts of hosted and led groups are
//! always there. Rendered at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One hosted partition as the raft thread last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSample {
    /// Its topic.
    pub topic: String,
    /// Its partition number.
    pub partition: u32,
    /// Exclusive high-water mark (commit + 1): the offset the next record gets.
    pub high_watermark: u64,
    /// This node leads its group.
    pub leader: bool,
}

/// What the raft thread publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionSeries {
    /// Raft groups hosted here (metadata group and partitions).
    pub groups_hosted: u64,
    /// Of those, led by this node.
    pub groups_leading: u64,
    /// Per-partition samples (bounded by the caller).
    pub samples: Vec<PartitionSample>,
}

/// Renders the series in Prometheus text format.
pub(super) fn render(s: &PartitionSeries, out: &mut String) {
    super::header(
        out,
        "commitlog_groups_hosted",
        "gauge",
        "Raft groups hosted on this node (metadata and partitions).",
    );
    let _ = writeln!(out, "commitlog_groups_hosted {}", s.groups_hosted);
    super::header(
        out,
        "commitlog_groups_leading",
        "gauge",
        "Raft groups this node leads.",
    );
    let _ = writeln!(out, "commitlog_groups_leading {}", s.groups_leading);
    if s.samples.is_empty() {
        return;
    }
    super::header(
        out,
        "commitlog_partition_high_watermark",
        "gauge",
        "Offset the next record of the partition gets (commit index + 1), per hosted partition.",
    );
    for p in &s.samples {
        let _ = writeln!(
            out,
            "commitlog_partition_high_watermark{{topic=\"{}\",partition=\"{}\"}} {}",
            p.topic, p.partition, p.high_watermark
        );
    }
    super::header(
        out,
        "commitlog_partition_leader",
        "gauge",
        "1 if this node leads the partition.",
    );
    for p in &s.samples {
        let _ = writeln!(
            out,
            "commitlog_partition_leader{{topic=\"{}\",partition=\"{}\"}} {}",
            p.topic,
            p.partition,
            u8::from(p.leader)
        );
    }
    let mut led: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &s.samples {
        *led.entry(p.topic.as_str()).or_default() += u64::from(p.leader);
    }
    super::header(
        out,
        "commitlog_topic_partitions_leading",
        "gauge",
        "Partitions of the topic this node leads (among the sampled ones).",
    );
    for (topic, n) in led {
        let _ = writeln!(
            out,
            "commitlog_topic_partitions_leading{{topic=\"{topic}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_always_and_partition_series_when_sampled() {
        let mut out = String::new();
        render(
            &PartitionSeries {
                groups_hosted: 3,
                groups_leading: 1,
                samples: Vec::new(),
            },
            &mut out,
        );
        assert!(out.contains("commitlog_groups_hosted 3"));
        assert!(!out.contains("commitlog_partition_"));
        let sample = |p, leader| PartitionSample {
            topic: "orders".into(),
            partition: p,
            high_watermark: 10 + u64::from(p),
            leader,
        };
        let mut out = String::new();
        let s = PartitionSeries {
            groups_hosted: 3,
            groups_leading: 1,
            samples: vec![sample(0, true), sample(1, false)],
        };
        render(&s, &mut out);
        assert!(
            out.contains("commitlog_partition_high_watermark{topic=\"orders\",partition=\"1\"} 11")
        );
        assert!(out.contains("commitlog_partition_leader{topic=\"orders\",partition=\"0\"} 1"));
        assert!(out.contains("commitlog_topic_partitions_leading{topic=\"orders\"} 1"));
    }
}
