//! The healer's runner on a cluster node: collects damaged log ranges (found at open,
//! by the scrubber, by reads, by Raft's own reads), feeds them to the pure
//! [`Healer`] (`replica::heal`: which peer, which copy is right), fetches intact
//! records with the `ReadEntries` peer request, and writes them in place
//! ([`Log::rebuild_sealed`]). One thread; one range at a time.
//!
//! Until a range is healed, reads of it answer `CORRUPT_RECORD` (a client can read
//! it from another replica) and Raft holds back only what needs it (a follower that
//! must be sent those entries waits). A range with no intact copy on any reachable
//! peer stays damaged and is retried; the scrubber keeps reporting it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::group::GroupState;
use super::Shared;
use crate::client::tls::ClientTls;
use crate::client::{Client, ClientConfig};
use crate::raft::{Entry, Index, NodeId};
use crate::replica::heal::{Action, Anchor, FetchAnswer, FetchRequest, HealConfig, Healer};
use crate::storage::{Log, Offset, Record};
use crate::sync::{lock, wait_timeout};
use crate::types::GroupId;
use crate::wire::{Request, ResponseBody};

/// Most damaged ranges waiting to be picked up (more are dropped: the scrubber
/// finds them again).
const MAX_REPORTED_RANGES: usize = 4096;
/// How often the healer thread looks at its queue without a new report.
const TICK: Duration = Duration::from_millis(200);
/// Record bytes asked per `ReadEntries`.
const PAGE_BYTES: u32 = 1 << 20;
/// Records tried after a damaged range for an intact anchor.
const ANCHOR_SEARCH: u64 = 64;
/// Bound on waiting for a peer's answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Damaged ranges reported by any thread, picked up by the healer thread.
#[derive(Debug, Default)]
pub struct DamageReports {
    /// first offset → end (exclusive); a range inside a known one is dropped.
    ranges: Mutex<BTreeMap<u64, u64>>,
    changed: Condvar,
}

impl DamageReports {
    /// Reports a damaged record (idempotent, bounded, never blocks for long).
    pub fn report(&self, offset: Offset) {
        self.report_range(offset, Offset(offset.0.saturating_add(1)));
    }

    /// Reports damaged records `first..end`.
    pub fn report_range(&self, first: Offset, end: Offset) {
        if first >= end {
            return;
        }
        let mut ranges = lock(&self.ranges);
        if ranges
            .range(..=first.0)
            .next_back()
            .is_some_and(|(_, e)| *e >= end.0)
        {
            return; // already known
        }
        if ranges.len() < MAX_REPORTED_RANGES {
            let e = ranges.entry(first.0).or_insert(end.0);
            *e = (*e).max(end.0);
            self.changed.notify_all();
        }
    }

    /// Takes every reported range.
    fn take_now(&self) -> BTreeMap<u64, u64> {
        std::mem::take(&mut *lock(&self.ranges))
    }

    /// True if a range was reported and not taken yet.
    fn pending(&self) -> bool {
        !lock(&self.ranges).is_empty()
    }
}

/// Healing counters (relaxed atomics, for metrics and logs).
#[derive(Debug, Default)]
pub struct HealCounters {
    /// Entries written back from a peer's copy.
    pub entries_healed: AtomicU64,
    /// Damaged entries known and not yet healed.
    pub entries_damaged: AtomicU64,
}

/// The running healer thread.
pub(crate) struct HealHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl HealHandle {
    /// Stops the thread (after its current peer request, bounded by its timeout).
    pub(crate) fn stop(mut self) {
        let (flag, wake) = &*self.stop;
        *lock(flag) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the node's healer thread: one for every hosted group (a group with no
/// damage known costs a check per tick).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    counters: Arc<HealCounters>,
) -> std::io::Result<HealHandle> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let all = HealAll {
        shared,
        counters,
        runners: BTreeMap::new(),
        started: Instant::now(),
        generation: None,
    };
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("healer".into())
        .spawn(move || all.run(&thread_stop))?;
    Ok(HealHandle {
        stop,
        thread: Some(thread),
    })
}

/// The healer thread's state: a runner per hosted group.
struct HealAll {
    shared: Arc<Shared>,
    counters: Arc<HealCounters>,
    runners: BTreeMap<GroupId, Runner>,
    started: Instant,
    /// The group registry's generation the runners follow.
    generation: Option<u64>,
}

impl HealAll {
    fn run(mut self, stop: &(Mutex<bool>, Condvar)) {
        let stopped = || *lock(&stop.0);
        while !stopped() {
            self.follow_groups();
            let mut damaged = 0;
            for r in self.runners.values_mut() {
                // Only a group with work costs a look at the stop flag.
                if r.has_work() {
                    if stopped() {
                        return;
                    }
                    r.round(&stopped);
                }
                damaged += r.damaged();
            }
            self.counters
                .entries_damaged
                .store(damaged, Ordering::Relaxed);
            let flag = lock(&stop.0);
            if !*flag {
                drop(wait_timeout(&stop.1, flag, TICK));
            }
        }
    }

    /// Runners for the groups hosted now (new ones added, removed ones dropped).
    fn follow_groups(&mut self) {
        let Some(groups) = self.shared.groups.changed_since(&mut self.generation) else {
            return;
        };
        // A set: re-read at every change while thousands of groups are created.
        let hosted: std::collections::BTreeSet<GroupId> = groups.iter().map(|g| g.id).collect();
        self.runners.retain(|id, _| hosted.contains(id));
        for g in groups {
            if self.runners.contains_key(&g.id) {
                continue;
            }
            let runner = Runner {
                log: Arc::clone(&g.log),
                reports: Arc::clone(&g.damage),
                group: g,
                shared: Arc::clone(&self.shared),
                counters: Arc::clone(&self.counters),
                healer: Healer::new(HealConfig::default()),
                waiting: BTreeMap::new(),
                started: self.started,
            };
            self.runners.insert(runner.group.id, runner);
        }
    }
}

struct Runner {
    log: Arc<Log>,
    group: Arc<GroupState>,
    shared: Arc<Shared>,
    reports: Arc<DamageReports>,
    counters: Arc<HealCounters>,
    healer: Healer,
    /// Reported ranges without an intact anchor yet (retried every tick).
    waiting: BTreeMap<u64, u64>,
    started: Instant,
}

impl Runner {
    /// Damage is reported, waiting or being healed.
    fn has_work(&self) -> bool {
        !self.waiting.is_empty() || self.healer.damaged_entries() > 0 || self.reports.pending()
    }

    /// Damaged entries known here and not healed yet.
    fn damaged(&self) -> u64 {
        self.healer.damaged_entries() + self.waiting.iter().map(|(f, e)| e - f).sum::<u64>()
    }

    /// One healing round: new reports, ranges whose anchor appeared, and the
    /// healer's requests and rewrites (bounded).
    fn round(&mut self, stopped: &dyn Fn() -> bool) {
        for (f, e) in self.reports.take_now() {
            self.wait(f, e);
        }
        self.healer
            .set_commit(Index(self.group.hw().0.saturating_sub(1)));
        self.queue_waiting();
        let peers = self.peers();
        let ids: Vec<NodeId> = peers.keys().copied().collect();
        self.healer.tick(self.now_ms(), &ids);
        // Bounded: each round either ends or sends one request (which ends in an
        // answer or a timeout) or writes one range.
        for _ in 0..1024 {
            let actions = self.healer.take_actions();
            if actions.is_empty() || stopped() {
                break;
            }
            for action in actions {
                self.execute(action, &peers, &ids);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Hands the waiting ranges that are still damaged and have an anchor to the
    /// healer; drops those retention removed or that read fine again.
    fn queue_waiting(&mut self) {
        let (first, next) = (self.log.first_offset().0, self.log.next_offset().0);
        for (f, e) in std::mem::take(&mut self.waiting) {
            let (f, e) = (f.max(first), e.min(next));
            if f >= e || self.log.read(Offset(f)).is_ok() {
                continue;
            }
            let committed = e.saturating_sub(1) < self.group.hw().0;
            match find_anchor(&self.log, e) {
                Some(anchor) => self.healer.damaged(Index(f), Index(e), anchor),
                // Nothing intact after it (a damaged tail): committed, a peer's
                // commit index proves its copy.
                None if committed => self.healer.damaged_committed(Index(f), Index(e)),
                None => self.wait(f, e),
            }
        }
    }

    /// Keeps a range until it can be queued (bounded like the reports: beyond the
    /// bound the scrubber finds it again).
    fn wait(&mut self, first: u64, end: u64) {
        if let Some(e) = self.waiting.get_mut(&first) {
            *e = (*e).max(end);
        } else if self.waiting.len() < MAX_REPORTED_RANGES {
            self.waiting.insert(first, end);
        }
    }

    /// The other members of the configuration with a known client address.
    fn peers(&self) -> BTreeMap<NodeId, String> {
        let me = self.shared.cfg.node_id;
        let ids: Vec<NodeId> = {
            let view = lock(&self.group.view);
            let m = &view.membership;
            m.voters.iter().chain(m.learners.iter()).copied().collect()
        };
        let members = lock(&self.shared.members);
        ids.into_iter()
            .filter(|id| *id != me)
            .filter_map(|id| {
                let addr = members.get(&id)?.rpc_addr.clone()?;
                Some((id, addr))
            })
            .collect()
    }

    fn execute(&mut self, action: Action, peers: &BTreeMap<NodeId, String>, ids: &[NodeId]) {
        match action {
            Action::Fetch(req) => {
                let answer = match peers.get(&req.peer) {
                    Some(addr) => self.fetch(addr, &req),
                    None => Err(format!("no address known for node {}", req.peer)),
                };
                self.healer.answered(req.id, answer, ids);
            }
            Action::Rebuild {
                first,
                end,
                entries,
                from_peer,
                anchor,
            } => {
                if let Some(anchor) = anchor.filter(|a| !self.anchor_holds(*a)) {
                    log::info!(
                        "heal: entry {} changed while {first}..{end} was fetched; fetching again",
                        anchor.index
                    );
                    self.healer.rebuilt(first, Ok(()));
                    self.reports.report_range(Offset(first.0), Offset(end.0));
                    return;
                }
                let result = write_healed(&self.log, &entries);
                match &result {
                    Ok(()) => {
                        log::warn!(
                            "healed damaged entries {first}..{end} ({} records) from node \
                             {from_peer}'s copy",
                            entries.len()
                        );
                        self.counters
                            .entries_healed
                            .fetch_add(end.0 - first.0, Ordering::Relaxed);
                    }
                    Err(e) => log::warn!("healing {first}..{end} failed for now: {e}"),
                }
                self.healer.rebuilt(first, result);
            }
        }
    }

    /// This node still holds `anchor` intact with the same term.
    fn anchor_holds(&self, anchor: Anchor) -> bool {
        self.log
            .read(Offset(anchor.index.0))
            .is_ok_and(|r| r.term == anchor.term)
    }

    /// One `ReadEntries` round trip to `addr`.
    fn fetch(&self, addr: &str, req: &FetchRequest) -> Result<FetchAnswer, String> {
        let cfg = &self.shared.cfg;
        let tls = cfg.peer_tls.as_ref().map(|config| ClientTls {
            config: Arc::clone(config),
            server_name: None,
        });
        let client_cfg = ClientConfig {
            timeout: PEER_TIMEOUT,
            max_frame_bytes: cfg.max_frame_bytes,
            tls,
        };
        let mut client = Client::connect_with(addr, client_cfg).map_err(|e| e.to_string())?;
        let request = Request::ReadEntries {
            group: self.group.id,
            from: Offset(req.from.0),
            end: Offset(req.end.0),
            anchor: Offset(req.anchor.0),
            max_bytes: PAGE_BYTES,
        };
        client.send(request).map_err(|e| e.to_string())?;
        let (_, result) = client.recv().map_err(|e| e.to_string())?;
        match result.map_err(|e| e.to_string())? {
            ResponseBody::ReadEntries {
                anchor_term,
                commit_index,
                records,
            } => Ok(FetchAnswer {
                anchor_term: (anchor_term.0 != 0).then_some(anchor_term),
                peer_commit: Index(commit_index.0),
                entries: records
                    .into_iter()
                    .map(|r| Entry {
                        index: Index(r.offset.0),
                        term: r.term,
                        kind: r.kind,
                        data: r.value.into(),
                    })
                    .collect(),
            }),
            other => Err(format!("unexpected answer {:?}", other.api_key())),
        }
    }
}

/// The first intact record at or after `end` (within [`ANCHOR_SEARCH`] records).
fn find_anchor(log: &Log, end: u64) -> Option<Anchor> {
    let next = log.next_offset().0;
    (end..next.min(end.saturating_add(ANCHOR_SEARCH))).find_map(|i| match log.read(Offset(i)) {
        Ok(r) => Some(Anchor {
            index: Index(i),
            term: r.term,
        }),
        Err(_) => None,
    })
}

/// Writes verified records in place of the damaged copies, segment by segment.
fn write_healed(log: &Log, entries: &[Entry]) -> Result<(), String> {
    let records: Vec<Record> = entries
        .iter()
        .map(|e| Record {
            offset: Offset(e.index.0),
            term: e.term,
            kind: e.kind,
            value: e.data.to_vec(),
        })
        .collect();
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(());
    };
    let (mut at, last) = (first.offset, last.offset);
    // Bounded: every rebuild covers the whole segment holding `at`, so `at` moves
    // past at least one record each round.
    while at <= last {
        let report = log
            .rebuild_sealed(at, &records)
            .map_err(|e| e.to_string())?;
        if report.end <= at {
            return Err(format!(
                "rebuild of the segment holding {at} did not move on"
            ));
        }
        at = report.end;
    }
    Ok(())
}
