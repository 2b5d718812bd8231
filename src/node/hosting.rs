//! Which partition groups run on this node: the raft thread applies the metadata
//! group's committed entries ([`Metadata`]) and starts the groups the catalogue
//! places here, stops (and removes the data of) deleted ones, and hands changed topic
//! settings to the running ones. Start-up opens the groups the persisted catalogue
//! places here the same way.
//!
//! Order matters for crashes: a created group's directory exists before the
//! catalogue that names it is persisted, so after a restart a hosted group whose
//! directory is missing really lost its data (it does not vote until it caught up);
//! a deleted group's directory goes after the catalogue without it is persisted
//! (leftovers are removed at start-up).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::group_open::{self, GroupSpec, Opened};
use super::journal::NodeJournal;
use super::metadata::Metadata;
use super::{NodeConfig, Shared};
use crate::catalogue::{Catalogue, PartitionGroup, TimestampType, Topic, TopicSettings};
use crate::raft::Membership;
use crate::storage::LogConfig;
use crate::types::{GroupId, NodeId};

/// Most groups opened per raft-thread iteration.
const MAX_HOSTS_PER_ROUND: usize = 64;

/// Where partition groups other than the default one live in the data dir.
pub(crate) const GROUPS_DIR: &str = "groups";

/// A partition group's directory.
pub(crate) fn group_dir(data_dir: &Path, id: GroupId) -> PathBuf {
    data_dir.join(GROUPS_DIR).join(id.0.to_string())
}

/// A topic's settings as a partition log's configuration. The index of a segment
/// is allocated in full when the segment starts (no SIGBUS on a full disk), so a
/// partition's is sized to its segments (one 8-byte slot per 64 bytes of segment,
/// at least 64 KiB, at most `--index-max-bytes`): 10,000 partitions of 64 MiB
/// segments hold 10 GB of index instead of 100 GB.
pub(crate) fn log_config(base: &LogConfig, settings: &TopicSettings) -> LogConfig {
    let index_bytes = (settings.segment_bytes / 64 / 8 * 8).max(64 * 1024);
    LogConfig {
        max_index_bytes: base.max_index_bytes.min(index_bytes),
        max_store_bytes: settings.segment_bytes,
        retention_bytes: settings.retention_bytes,
        retention_age: settings
            .retention_age_ms
            .map(std::time::Duration::from_millis),
        ..base.clone()
    }
}

/// The timestamp type of the topic whose partition `group` is: the one place the
/// produce path reads it (it stamps records with the leader's clock for
/// [`TimestampType::Leader`]); the default (producer) for a group the catalogue
/// does not know (the `default` topic before any setting).
pub(crate) fn timestamp_type_of(shared: &Shared, group: GroupId) -> TimestampType {
    shared
        .catalogue()
        .group(group)
        .map_or(TimestampType::default(), |(topic, _)| {
            topic.settings.timestamp_type
        })
}

/// How to open a partition group placed on this node. `maybe_lost`: it was placed
/// here before and its directory is gone.
pub(crate) fn partition_spec(
    cfg: &NodeConfig,
    topic: &Topic,
    group: GroupId,
    replicas: &[NodeId],
    voters: &[NodeId],
    maybe_lost: bool,
) -> GroupSpec {
    let follows_voters = replicas.is_empty();
    let members = if follows_voters { voters } else { replicas };
    let alone = members == [cfg.node_id];
    GroupSpec {
        id: group,
        dir: group_dir(&cfg.data_dir, group),
        initial: Membership::with_voters(members.iter().map(|n| n.0)),
        follows_voters,
        log: log_config(&cfg.log, &topic.settings),
        // A group only this node replicates cannot be refetched from anyone.
        maybe_lost: maybe_lost && !alone,
        has_peers: !alone,
        max_record_bytes: u64::from(topic.settings.max_record_bytes),
    }
}

/// Opens, at start-up, every partition group the persisted catalogue places here
/// (but the default partition, opened with the node), and removes the directories
/// of groups deleted from it.
pub(crate) fn open_hosted(
    cfg: &NodeConfig,
    metadata: &Metadata,
    journal: &Arc<NodeJournal>,
) -> Result<Vec<Opened>, String> {
    let catalogue = metadata.catalogue();
    remove_deleted_dirs(&cfg.data_dir, catalogue, journal);
    let mut opened = Vec::new();
    for (topic, p) in catalogue.groups_on(cfg.node_id) {
        if p.group == super::group::DEFAULT_GROUP {
            continue;
        }
        let lost = !group_dir(&cfg.data_dir, p.group).exists();
        if lost {
            log::warn!(
                "partition {}/{} (group {}) has no data here any more: refetching it",
                topic.name,
                p.partition,
                p.group
            );
        }
        let spec = partition_spec(cfg, topic, p.group, &p.replicas, metadata.voters(), lost);
        opened.push(group_open::open(cfg, spec, journal)?);
    }
    Ok(opened)
}

/// Directories of groups the catalogue numbered but no longer has (deleted while
/// the node was down or before it removed them). Groups numbered after the
/// catalogue's last one are kept: they were created but not yet persisted.
fn remove_deleted_dirs(data_dir: &Path, catalogue: &Catalogue, journal: &NodeJournal) {
    let Ok(entries) = std::fs::read_dir(data_dir.join(GROUPS_DIR)) else {
        return;
    };
    for e in entries.flatten().take(1_000_000) {
        let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let id = GroupId(id);
        if id < catalogue.next_group() && catalogue.group(id).is_none() {
            log::info!("removing the data of deleted group {id}");
            journal.forget(id);
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                log::warn!("cannot remove {}: {err}", e.path().display());
            }
        }
    }
}

/// Deletes removed groups' data on one thread, off the raft thread (big
/// directories take a while; a deleted topic of thousands of partitions is one
/// thread, not thousands). Readers still holding a log keep their open files until
/// they finish; what is left after a crash is removed at the next start.
pub(crate) fn retire(shared: &Arc<Shared>, groups: Vec<PartitionGroup>) {
    if groups.is_empty() {
        return;
    }
    let dirs: Vec<(PathBuf, String)> = groups
        .iter()
        .map(|g| {
            let what = format!("{}/{} (group {})", g.topic, g.partition, g.group);
            (group_dir(&shared.cfg.data_dir, g.group), what)
        })
        .collect();
    let spawned = std::thread::Builder::new()
        .name("retire-groups".into())
        .spawn(move || {
            for (dir, what) in dirs {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => log::info!("deleted partition {what}"),
                    Err(e) => log::warn!("cannot remove {} of {what}: {e}", dir.display()),
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot remove deleted groups now ({e}); they are removed at the next start");
    }
}

impl super::raft_loop::RaftLoop {
    /// Applies the metadata group's newly committed entries: hosts created groups,
    /// retires deleted ones, passes changed settings on, then persists and publishes
    /// the catalogue.
    pub(super) fn apply_metadata(&mut self) {
        let Some(meta) = self.groups.get(&GroupId::METADATA) else {
            return;
        };
        let (log, hw) = (Arc::clone(&meta.state.log), meta.state.hw());
        let before = self.metadata.catalogue().applied();
        let changes = self.metadata.apply_committed(&log, hw);
        if self.metadata.catalogue().applied() == before {
            return;
        }
        let me = self.shared.cfg.node_id;
        for change in &changes {
            let created = change.created.iter().filter(|pg| hosted(pg, me));
            self.pending_hosts.extend(created.cloned());
            let mut retired = Vec::new();
            for pg in &change.deleted {
                self.pending_hosts.retain(|p| p.group != pg.group);
                if self.unhost(pg) {
                    retired.push(pg.clone());
                }
            }
            retire(&self.shared, retired);
            if change.settings_changed {
                self.apply_settings(change.topic.as_str());
            }
        }
        self.persist_due = true;
        self.shared.publish_catalogue(self.metadata.catalogue());
        self.host_pending();
    }

    /// Opens up to [`MAX_HOSTS_PER_ROUND`] groups the catalogue placed here (a
    /// topic of thousands of partitions is opened over many iterations, so the
    /// raft thread keeps serving the other groups meanwhile); once none is left,
    /// persists the catalogue (after the directories it names exist: see the
    /// module doc).
    pub(super) fn host_pending(&mut self) {
        for _ in 0..MAX_HOSTS_PER_ROUND {
            let Some(pg) = self.pending_hosts.pop_front() else {
                break;
            };
            self.host(&pg);
        }
        if self.pending_hosts.is_empty() && self.persist_due {
            self.persist_due = false;
            if let Err(e) = self.metadata.persist() {
                log::error!("cannot persist the catalogue (it is replayed at start): {e}");
            }
        }
    }

    /// Opens and starts a partition group placed here by a committed command.
    fn host(&mut self, pg: &PartitionGroup) {
        if self.groups.contains_key(&pg.group) {
            return;
        }
        let catalogue = self.metadata.catalogue();
        let Some(topic) = catalogue.topic(pg.topic.as_str()) else {
            return;
        };
        let cfg = &self.shared.cfg;
        let spec = partition_spec(
            cfg,
            topic,
            pg.group,
            &pg.replicas,
            self.metadata.voters(),
            false,
        );
        let opened = match group_open::open(cfg, spec, &self.shared.journal) {
            Ok(o) => o,
            Err(e) => {
                log::error!(
                    "cannot open partition {}/{} (group {}): {e}",
                    pg.topic,
                    pg.partition,
                    pg.group
                );
                return;
            }
        };
        let Opened {
            run,
            state,
            damaged,
        } = opened;
        group_open::report_damage_found_at_open(&state, damaged);
        self.shared.groups.insert(state);
        self.add_group(run);
        log::info!(
            "hosting partition {}/{} (group {}, replicas {:?})",
            pg.topic,
            pg.partition,
            pg.group,
            pg.replicas
        );
        if let Err(e) = self.start_group(pg.group) {
            log::error!("group {}: cannot start: {e}", pg.group);
        }
        // The preferred leader of a new partition campaigns at once: it is elected
        // first, instead of whoever times out first and a transfer later.
        if pg.replicas.len() > 1 && pg.replicas.first() == Some(&self.shared.cfg.node_id) {
            let campaigned = self.group_call(pg.group, |g| Ok(g.driver.campaign_now()?));
            if let Err(e) = campaigned {
                log::warn!("group {}: {e}", pg.group);
            }
        }
    }

    /// Stops a deleted partition group: its waiting produces are refused; true if
    /// it was hosted (its data is then to be deleted).
    fn unhost(&mut self, pg: &PartitionGroup) -> bool {
        let Some(mut run) = self.remove_group(pg.group) else {
            return false;
        };
        // Its data goes: answer what waits, no checkpoint for a restart.
        run.answer_waiting(&self.shared);
        self.shared.journal.forget(pg.group);
        self.shared.groups.remove(pg.group);
        for job in self.inbox.drain_group(pg.group) {
            super::answer::refuse(job.reply, super::answer::Refusal::TopicDeleted);
        }
        true
    }

    /// A topic's retention changed: its hosted partitions' logs use the new limits.
    fn apply_settings(&mut self, topic: &str) {
        let Some(t) = self.metadata.catalogue().topic(topic) else {
            return;
        };
        for p in &t.partitions {
            if let Some(g) = self.groups.get(&p.group) {
                g.state.max_record_bytes.store(
                    u64::from(t.settings.max_record_bytes),
                    std::sync::atomic::Ordering::Relaxed,
                );
                g.state.log.set_retention(
                    t.settings.retention_bytes,
                    t.settings
                        .retention_age_ms
                        .map(std::time::Duration::from_millis),
                );
            }
        }
    }
}

/// True if `me` replicates the partition.
fn hosted(pg: &PartitionGroup, me: NodeId) -> bool {
    pg.replicas.is_empty() || pg.replicas.contains(&me)
}

impl super::raft_loop::RaftLoop {
    /// Answers a catalogue command's proposer with what applying it did.
    pub(super) fn answer_admin(
        &mut self,
        to: super::raft_loop::ProduceReply,
        result: Result<crate::replica::Produced, crate::replica::ProduceError>,
    ) {
        if let super::inbox::ReplyShape::Admin(
            super::inbox::AdminKind::CommitOffsets | super::inbox::AdminKind::DeleteGroup,
        ) = to.shape
        {
            let outcome = match &result {
                Ok(p) => self.metadata.take_cursor_outcome(p.first.0),
                Err(_) => None,
            };
            let shared = &self.shared;
            return super::groups::answer_applied(to, result, outcome, |l| shared.not_leader(l));
        }
        if to.shape == super::inbox::ReplyShape::Admin(super::inbox::AdminKind::InitProducer) {
            return super::producers::answer_init(&mut self.metadata, &self.shared, to, result);
        }
        let outcome = match &result {
            Ok(p) => self.metadata.take_outcome(p.first.0),
            Err(_) => None,
        };
        use super::inbox::{AdminKind, ReplyShape};
        use super::topics::ApiAnswer;
        match outcome {
            Some(outcome) => {
                let api = match to.shape {
                    ReplyShape::Admin(AdminKind::Create) => Some(ApiAnswer::Create),
                    ReplyShape::Admin(AdminKind::Alter) => Some(ApiAnswer::Alter),
                    ReplyShape::Admin(AdminKind::CreateV1) => Some(ApiAnswer::Create),
                    ReplyShape::Admin(AdminKind::AlterV1) => Some(ApiAnswer::Alter),
                    _ => None,
                };
                let settings_v2 = matches!(
                    to.shape,
                    ReplyShape::Admin(AdminKind::CreateV1 | AdminKind::AlterV1)
                );
                let described = match (&outcome, api) {
                    (Ok(change), Some(api)) => self
                        .metadata
                        .catalogue()
                        .topic(change.topic.as_str())
                        .map(|t| {
                            let d = super::topics::describe(&self.shared, t);
                            (api, crate::wire::TopicDescription { settings_v2, ..d })
                        }),
                    _ => None,
                };
                super::answer::admin(to.reply, outcome, described);
            }
            None => super::answer::produce(to, result, |l| self.shared.not_leader(l)),
        }
    }
}

impl super::raft_loop::RaftLoop {
    /// Publishes the hosted groups and a bounded per-partition sample to the
    /// metrics (`--metrics-partition-series`; 0: counts only).
    pub(super) fn publish_partition_metrics(&self, m: &crate::metrics::Metrics) {
        use crate::metrics::{PartitionSample, PartitionSeries};
        let limit = self.shared.cfg.metrics_partition_series;
        let catalogue = self.metadata.catalogue();
        let mut series = PartitionSeries {
            groups_hosted: self.groups.len() as u64,
            ..PartitionSeries::default()
        };
        for (id, g) in &self.groups {
            let leader = g.driver.raft().role() == crate::raft::Role::Leader;
            series.groups_leading += u64::from(leader);
            if series.samples.len() >= limit {
                continue;
            }
            if let Some((topic, p)) = catalogue.group(*id) {
                series.samples.push(PartitionSample {
                    topic: topic.name.as_str().to_string(),
                    partition: p.partition,
                    high_watermark: g.state.hw().0,
                    leader,
                });
            }
        }
        m.publish_partitions(series);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_index_is_sized_to_its_segments() {
        let base = LogConfig::default();
        let mut settings = TopicSettings {
            segment_bytes: 64 << 20,
            ..TopicSettings::default()
        };
        assert_eq!(log_config(&base, &settings).max_index_bytes, 1 << 20);
        settings.segment_bytes = 1 << 20;
        assert_eq!(log_config(&base, &settings).max_index_bytes, 64 * 1024);
        settings.segment_bytes = u64::from(u32::MAX);
        assert_eq!(
            log_config(&base, &settings).max_index_bytes,
            base.max_index_bytes,
            "never above the node's own limit"
        );
        settings.retention_age_ms = Some(1500);
        let cfg = log_config(&base, &settings);
        assert_eq!(
            cfg.retention_age,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(cfg.max_store_bytes, u64::from(u32::MAX));
    }
}
