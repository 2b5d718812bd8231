//! Opening one Raft group's storage (its `log/` and Raft state files in its own
//! directory) and building its driver, the same way for every group: the default
//! topic's partition 0 (the data dir's top level), the metadata group (`meta/`) and
//! every other partition (`groups/<id>/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::group::GroupState;
use super::group_run::GroupRun;
use super::journal::NodeJournal;
use super::raft_storage::LogStorage;
use super::{heal, meta, FsyncPolicy, NodeConfig, View};
use crate::raft::{Config as RaftConfig, Index, LogStart, Membership, RaftNode, Role};
use crate::replica::{Driver, DriverConfig, Recovering};
use crate::storage::journal::JournalRecord;
use crate::storage::{DamagedRange, Log, LogConfig, Offset, StorageError};
use crate::types::GroupId;

/// What a group is and how to open it.
pub(crate) struct GroupSpec {
    pub id: GroupId,
    /// Its Raft state files and `log/`.
    pub dir: PathBuf,
    /// The log start's membership when the group has no state yet.
    pub initial: Membership,
    /// Membership follows the metadata group's voters (gossip policy).
    pub follows_voters: bool,
    /// Segment sizes and retention (the initial offset is forced to 1).
    pub log: LogConfig,
    /// This node may have held the group's entries before and lost them (a
    /// joiner's fresh data dir, a group the catalogue placed here whose files are
    /// gone): it does not vote until it caught up with a leader.
    pub maybe_lost: bool,
    /// Peers may hold copies of the log: damage is healed from them rather than
    /// refused at open.
    pub has_peers: bool,
    /// Largest record value its topic accepts (`u64::MAX`: the node's limits only).
    pub max_record_bytes: u64,
}

/// A group opened but not yet running.
pub(crate) struct Opened {
    pub run: GroupRun,
    pub state: Arc<GroupState>,
    /// Damaged sealed ranges found at open, for the healer.
    pub damaged: Vec<DamagedRange>,
}

/// The Raft settings every group of this node uses.
pub(crate) fn raft_config(cfg: &NodeConfig) -> RaftConfig {
    let mut raft_cfg = RaftConfig::new(cfg.node_id);
    raft_cfg.election_tick = cfg.election_ticks;
    raft_cfg.heartbeat_tick = cfg.heartbeat_ticks;
    raft_cfg.max_size_per_msg = (u64::from(cfg.max_frame_bytes) / 2).clamp(4096, 1 << 20);
    // At most 64 messages and 8 of the largest (8 MiB) in flight per follower: a
    // catch-up streams at the follower's pace (it acknowledges after its fsync),
    // and the leader holds at most 8 MiB read ahead per follower and group.
    raft_cfg.max_inflight_msgs = 64;
    raft_cfg.max_inflight_bytes = 8 * raft_cfg.max_size_per_msg;
    raft_cfg.catch_up_bytes_per_tick =
        catch_up_per_tick(cfg.catch_up_bytes_per_sec, cfg.raft_tick_ms);
    // Idle groups stop heartbeating; the raft thread reports dead nodes (gossip's
    // failure detector) so a quiesced follower notices a dead leader.
    raft_cfg.quiesce = true;
    raft_cfg
}

/// The catch-up throttle's budget per tick (at least one byte when it is on, so
/// a throttled follower still gets one entry per tick).
fn catch_up_per_tick(bytes_per_sec: u64, tick_ms: u64) -> u64 {
    if bytes_per_sec == 0 {
        return 0;
    }
    (u128::from(bytes_per_sec) * u128::from(tick_ms.max(1)) / 1000).clamp(1, u128::from(u64::MAX))
        as u64
}

fn seed(id: GroupId) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ id.0.rotate_left(17)
}

/// Opens a group's log and Raft state and builds its driver.
pub(crate) fn open(
    cfg: &NodeConfig,
    spec: GroupSpec,
    journal: &Arc<NodeJournal>,
) -> Result<Opened, String> {
    let dir = &spec.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create group directory {}: {e}", dir.display()))?;
    let log_config = LogConfig {
        initial_offset: Offset(1),
        ..spec.log.clone()
    };
    let records = journal.pending(spec.id);
    let folded = super::journal::fold(&records);
    let journaled_from = folded.as_ref().map(|r| r.first);
    let (log, repaired, damaged) =
        open_log(spec.has_peers, &dir.join("log"), log_config, journaled_from)?;
    let log = Arc::new(log);
    let damage = Arc::new(heal::DamageReports::default());
    let default_start = LogStart {
        membership: spec.initial.clone(),
        ..LogStart::default()
    };
    let mut storage = LogStorage::open(dir, Arc::clone(&log), default_start)
        .map_err(|e| format!("cannot open the raft state in {}: {e}", dir.display()))?;
    replay_journal(&mut storage, spec.id, journal, folded, records.len())?;
    storage.use_journal(Arc::clone(journal));
    storage.report_damage_to(Arc::clone(&damage));
    let persisted_commit = storage.hard_state().commit;
    let start_index = storage.log_start().index;
    let last = crate::raft::Storage::last_index(&storage);
    let raft_cfg = raft_config(cfg);
    let seed = seed(spec.id);
    let node = RaftNode::new(raft_cfg.clone(), storage, seed)
        .map_err(|e| format!("cannot start raft for group {}: {e}", spec.id))?;
    let single_voter =
        node.membership().voters.len() == 1 && node.membership().voters.contains(&cfg.node_id);
    let recovering = recovery_guard(&spec, repaired, last, persisted_commit, single_voter);
    if recovering.is_some() && !meta::has_recovering_marker(dir) {
        meta::write_recovering_marker(dir).map_err(|e| e.to_string())?;
    }
    let view = View {
        role: Role::Follower,
        term: node.term(),
        leader: None,
        commit: start_index,
        first: node.first_index(),
        last: node.last_index(),
        membership: node.membership().clone(),
        followers: Vec::new(),
        recovering: recovering.is_some(),
        term_committed: false,
    };
    let state = Arc::new(GroupState::new(
        spec.id,
        dir.clone(),
        Arc::clone(&log),
        start_index.into(),
        view,
        damage,
    ));
    state
        .max_record_bytes
        .store(spec.max_record_bytes, std::sync::atomic::Ordering::Relaxed);
    let driver_cfg = DriverConfig {
        skip_fsync_when_alone: cfg.fsync == FsyncPolicy::Never,
        ..DriverConfig::default()
    };
    // The driver rebuilds the dedup state from the retained log (a read of it).
    let started = std::time::Instant::now();
    let driver = Driver::new(node, driver_cfg.clone(), recovering);
    log::info!(
        "group {}: driver built in {} ms ({} idempotent producers known)",
        spec.id,
        started.elapsed().as_millis(),
        driver.dedup().producer_count()
    );
    let run = GroupRun::new(
        driver,
        Arc::clone(&state),
        spec.follows_voters,
        (raft_cfg, driver_cfg, seed),
    );
    Ok(Opened {
        run,
        state,
        damaged,
    })
}

/// Whether the group must not vote until it caught up with a leader.
fn recovery_guard(
    spec: &GroupSpec,
    repaired: bool,
    last: Index,
    persisted_commit: Index,
    single_voter: bool,
) -> Option<Recovering> {
    let id = spec.id;
    if meta::has_recovering_marker(&spec.dir) {
        log::warn!(
            "group {id} was catching up after losing log entries when it stopped: \
             not voting until caught up from a leader"
        );
        return Some(Recovering {
            min_commit: persisted_commit,
            need_leader: true,
        });
    }
    if spec.maybe_lost {
        // A fresh directory may replace a wiped one whose entries counted toward
        // commits: do not vote before catching up with a leader.
        return Some(Recovering {
            min_commit: Index(0),
            need_leader: true,
        });
    }
    if (repaired || last < persisted_commit) && !single_voter {
        log::warn!(
            "group {id}: log ends at {last} but the persisted commit index is \
             {persisted_commit}{}: not voting until caught up from a leader",
            if repaired { " (log was repaired)" } else { "" }
        );
        return Some(Recovering {
            min_commit: persisted_commit,
            need_leader: true,
        });
    }
    if repaired || last < persisted_commit {
        log::error!(
            "group {id}: single-voter group lost committed entries (log ends at {last}, \
             commit was {persisted_commit}); continuing with what is left"
        );
    }
    None
}

/// Applies group `id`'s journal records, folded (appends made durable only there
/// before a crash), then fsyncs the log so the journal may forget them.
fn replay_journal(
    storage: &mut LogStorage,
    id: GroupId,
    journal: &NodeJournal,
    folded: Option<JournalRecord>,
    record_count: usize,
) -> Result<(), String> {
    let Some(folded) = folded else {
        return Ok(());
    };
    let before = crate::raft::Storage::last_index(storage);
    storage.replay(&folded).map_err(|e| {
        format!(
            "group {id}: cannot replay the node journal from offset {}: {e}",
            folded.first
        )
    })?;
    storage
        .sync()
        .map_err(|e| format!("group {id}: cannot fsync the replayed log: {e}"))?;
    journal.replayed(id, storage.log());
    log::info!(
        "group {id}: replayed {} journal record(s); log ends at {} (was {before})",
        record_count,
        crate::raft::Storage::last_index(storage)
    );
    Ok(())
}

/// Opens the log. With peers, damaged sealed segments are kept (quarantined, to be
/// healed from the peers) and only damage in the active segment is cut (refetched
/// from the leader); without peers any corruption is refused. Returns the log,
/// whether something was cut, and the damaged ranges kept.
fn open_log(
    has_peers: bool,
    log_dir: &Path,
    log_config: LogConfig,
    journaled_from: Option<Offset>,
) -> Result<(Log, bool, Vec<DamagedRange>), String> {
    if let Some(from) = journaled_from {
        return open_covered_log(has_peers, log_dir, log_config, from);
    }
    if !has_peers {
        return match Log::open(log_dir, log_config) {
            Ok(l) => Ok((l, false, Vec::new())),
            // Nobody to re-fetch from: never cut acknowledged records silently (the
            // message names the repair command and the offsets at stake).
            Err(e @ StorageError::Corrupt { .. }) => Err(format!(
                "cannot open the log in {}: {e}. This node has no peers to heal from, so \
                 it does not start",
                log_dir.display()
            )),
            Err(e) => Err(format!("cannot open the log in {}: {e}", log_dir.display())),
        };
    }
    let (log, found) = Log::open_for_replica(log_dir, log_config)
        .map_err(|e| format!("cannot open the log in {}: {e}", log_dir.display()))?;
    if let Some(cut) = &found.cut {
        log::warn!(
            "log {} damaged in its newest segment: cut at {cut:?}; re-fetching from the \
             leader (this group will not vote until it has caught up)",
            log_dir.display()
        );
    }
    Ok((log, found.cut.is_some(), found.damaged))
}

/// Opens a log the node journal holds records of from `from` on (see
/// [`Log::open_covered`]): a bad tail there is cut and written again by replay.
fn open_covered_log(
    has_peers: bool,
    log_dir: &Path,
    log_config: LogConfig,
    from: Offset,
) -> Result<(Log, bool, Vec<DamagedRange>), String> {
    let (log, found) = Log::open_covered(log_dir, log_config, has_peers, from)
        .map_err(|e| format!("cannot open the log in {}: {e}", log_dir.display()))?;
    if let Some(cut) = &found.cut {
        log::warn!(
            "log {}: cut at {cut:?}; what the journal holds is written again",
            log_dir.display()
        );
    }
    // A cut at or after `from` is restored by replay; one below it is not.
    let lost = found.cut.as_ref().is_some_and(|c| c.from < from);
    Ok((log, lost, found.damaged))
}

/// Damaged sealed ranges found at open go to the healer; bytes after a sealed
/// segment's last record (no record affected) are cleaned up at once.
pub(crate) fn report_damage_found_at_open(group: &GroupState, damaged: Vec<DamagedRange>) {
    let (log, damage) = (&group.log, &group.damage);
    for d in damaged {
        if d.first < d.end {
            log::warn!(
                "damaged records {}..{} in the segment at {} ({}): healing them from peers",
                d.first,
                d.end,
                d.segment,
                d.reason
            );
            damage.report_range(d.first, d.end);
            continue;
        }
        match log.rebuild_sealed(d.segment, &[]) {
            Ok(_) => log::warn!(
                "removed bytes after the last record of the segment at {} ({})",
                d.segment,
                d.reason
            ),
            Err(e) => log::warn!("segment at {}: {} ({e})", d.segment, d.reason),
        }
    }
}
