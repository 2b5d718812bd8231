//! Consume and Fetch on a cluster node: served from the local log up to the commit
//! index (DESIGN decision 2), internal entries (no-op, config) skipped.
//!
//! Same design as the single-node service: a bounded worker pool reads; a Fetch at
//! the high-water mark parks (no thread held, bounded list) until the raft thread
//! raises the high-water mark ([`Reads::on_hw_raised`]) or its `max_wait_ms` runs out
//! (the timer thread answers it empty). The parker re-checks the high-water mark under
//! the parked-list lock and the raft thread raises it before taking that lock, so no
//! wake-up is lost.
//!
//! The high-water mark is exclusive: `commit index + 1`. The first readable offset is
//! `max(log.first_offset(), raft log start + 1)`. Offset 0 is never a record's
//! offset; a read at 0 starts at the first readable offset.

use std::sync::{Arc, Condvar, Mutex};

use crate::sync::lock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::answer::{self, Refusal};
use super::fetch_many::ManyFetch;
use super::group::GroupState;
use super::served::{self, BadPayload, ReadFormat, Served};
use crate::net::{PoolSubmitter, Responder, WorkerPool};
use crate::types::{Offset, RecordKind};
use crate::wire::{self, WireRecord};

/// Most read rounds one Consume or Fetch makes while skipping internal entries.
const MAX_SCAN_ROUNDS: usize = 64;

/// Read-side limits.
#[derive(Clone, Debug)]
pub struct ReadConfig {
    /// Threads serving reads.
    pub threads: usize,
    /// Reads queued before new ones get UNAVAILABLE.
    pub queue_cap: usize,
    /// Most parked long-polls.
    pub max_parked: usize,
    /// Upper bound on a fetch's wait.
    pub max_wait_ms: u64,
    /// Upper bound on the record bytes of one fetch response.
    pub max_fetch_bytes: u32,
}

pub(crate) struct Reads {
    shared: Arc<ReadShared>,
    submit: PoolSubmitter<Job>,
    pool: Mutex<Option<WorkerPool<Job>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

struct ReadShared {
    cfg: ReadConfig,
    parked: Mutex<Parked>,
    changed: Condvar,
}

struct Parked {
    fetches: Vec<ParkedFetch>,
    stopping: bool,
}

struct ParkedFetch {
    want: Want,
    deadline: Instant,
    reply: Responder,
}

/// What a parked fetch waits for.
enum Want {
    /// Fetch v0: one group past `offset`.
    One {
        group: Arc<GroupState>,
        offset: Offset,
        max_bytes: u32,
    },
    /// Fetch v1: any of its partitions.
    Many(ManyFetch),
}

impl Want {
    fn wakes_on(&self, group: &GroupState) -> bool {
        match self {
            Want::One {
                group: g, offset, ..
            } => g.id == group.id && *offset < group.hw(),
            Want::Many(m) => m.wakes_on(group),
        }
    }

    /// The job that serves it now.
    fn into_job(self, reply: Responder) -> Job {
        match self {
            Want::One {
                group,
                offset,
                max_bytes,
            } => Job::Fetch {
                group,
                offset,
                max_bytes,
                reply,
            },
            Want::Many(fetch) => Job::FetchMany {
                fetch,
                park: false,
                reply,
            },
        }
    }

    /// Answers it with nothing (its wait ended).
    fn answer_empty(self, reply: Responder) {
        match self {
            Want::One { group, .. } => answer::nothing_fetched(reply, group.hw()),
            Want::Many(m) => answer::fetched_partitions(reply, m.format, m.empty()),
        }
    }
}

enum Job {
    Consume {
        group: Arc<GroupState>,
        offset: Offset,
        format: ReadFormat,
        reply: Responder,
    },
    Fetch {
        group: Arc<GroupState>,
        offset: Offset,
        max_bytes: u32,
        reply: Responder,
    },
    FetchMany {
        fetch: ManyFetch,
        /// Park when nothing is there yet (false once woken).
        park: bool,
        reply: Responder,
    },
    ReadEntries {
        group: Arc<GroupState>,
        from: Offset,
        end: Offset,
        anchor: Offset,
        max_bytes: u32,
        reply: Responder,
    },
    ListOffsets {
        lookups: Vec<super::list_offsets::Lookup>,
        reply: Responder,
    },
}

impl Job {
    fn into_reply(self) -> Responder {
        match self {
            Job::Consume { reply, .. }
            | Job::Fetch { reply, .. }
            | Job::FetchMany { reply, .. }
            | Job::ReadEntries { reply, .. }
            | Job::ListOffsets { reply, .. } => reply,
        }
    }

    /// Answers a fetch the pool could not take with nothing (it was parked).
    fn answer_empty(self) {
        match self {
            Job::Fetch { group, reply, .. } => answer::nothing_fetched(reply, group.hw()),
            Job::FetchMany { fetch, reply, .. } => {
                answer::fetched_partitions(reply, fetch.format, fetch.empty())
            }
            other => answer::refuse(other.into_reply(), Refusal::Busy("read queue")),
        }
    }
}

impl Reads {
    pub(crate) fn start(cfg: ReadConfig) -> std::io::Result<Reads> {
        let shared = Arc::new(ReadShared {
            parked: Mutex::new(Parked {
                fetches: Vec::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
            cfg,
        });
        let pool_shared = Arc::clone(&shared);
        let pool = WorkerPool::start(
            "commitlog-read",
            shared.cfg.threads.max(1),
            shared.cfg.queue_cap.max(1),
            move |job| pool_shared.run(job),
        )?;
        let timer_shared = Arc::clone(&shared);
        let timer = std::thread::Builder::new()
            .name("commitlog-fetch-timer".into())
            .spawn(move || timer_shared.timer_loop())?;
        Ok(Reads {
            submit: pool.submitter(),
            shared,
            pool: Mutex::new(Some(pool)),
            timer: Mutex::new(Some(timer)),
        })
    }

    pub(crate) fn consume(
        &self,
        group: Arc<GroupState>,
        offset: Offset,
        format: ReadFormat,
        reply: Responder,
    ) {
        let offset = resolve(&group, offset);
        let (first, hw) = (group.first(), group.hw());
        if offset < first || offset >= hw {
            return answer::refuse(reply, out_of_range(&group, offset));
        }
        self.submit(Job::Consume {
            group,
            offset,
            format,
            reply,
        });
    }

    pub(crate) fn fetch(
        &self,
        group: Arc<GroupState>,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
        reply: Responder,
    ) {
        let offset = resolve(&group, offset);
        let (first, hw) = (group.first(), group.hw());
        if offset < first || offset > hw {
            answer::refuse(reply, out_of_range(&group, offset));
        } else if offset < hw {
            self.submit(Job::Fetch {
                group,
                offset,
                max_bytes,
                reply,
            });
        } else if max_wait_ms == 0 {
            answer::nothing_fetched(reply, hw);
        } else {
            let wait_ms = u64::from(max_wait_ms).min(self.shared.cfg.max_wait_ms);
            let wait = Duration::from_millis(wait_ms);
            self.park(group, offset, max_bytes, wait, reply);
        }
    }

    /// A peer's `ReadEntries` (healing its copy): raw records of every kind, up to
    /// the log's end (log matching at the anchor decides whether they are used).
    pub(crate) fn read_entries(
        &self,
        group: Arc<GroupState>,
        (from, end, anchor): (Offset, Offset, Offset),
        max_bytes: u32,
        reply: Responder,
    ) {
        self.submit(Job::ReadEntries {
            group,
            from,
            end,
            anchor,
            max_bytes,
            reply,
        });
    }

    /// ListOffsets: on the pool (a lookup by time may read the disk).
    pub(crate) fn list_offsets(&self, lookups: Vec<super::list_offsets::Lookup>, reply: Responder) {
        self.submit(Job::ListOffsets { lookups, reply });
    }

    fn submit(&self, job: Job) {
        if let Err(job) = self.submit.try_submit(job) {
            answer::refuse(job.into_reply(), Refusal::Busy("read queue"));
        }
    }

    fn park(
        &self,
        group: Arc<GroupState>,
        offset: Offset,
        max_bytes: u32,
        wait: Duration,
        reply: Responder,
    ) {
        let want = Want::One {
            group,
            offset,
            max_bytes,
        };
        if let Some((want, reply)) = self.shared.park(want, wait, reply) {
            self.submit(want.into_job(reply));
        }
    }

    /// Fetch v1 over several partitions: read on the pool; parks there when every
    /// partition is at its mark and `max_wait_ms` allows.
    pub(crate) fn fetch_many(&self, fetch: ManyFetch, max_wait_ms: u32, reply: Responder) {
        let park = max_wait_ms > 0 && !fetch.has_errors();
        let wait_ms = u64::from(max_wait_ms).min(self.shared.cfg.max_wait_ms);
        self.submit(Job::FetchMany {
            fetch: ManyFetch {
                wait: Duration::from_millis(wait_ms),
                ..fetch
            },
            park,
            reply,
        });
    }

    /// Called by the raft thread after it raised a group's high-water mark: that
    /// group's parked fetches below it move to the pool.
    pub(crate) fn on_hw_raised(&self, group: &GroupState) {
        let waits = |f: &ParkedFetch| !f.want.wakes_on(group);
        let ready: Vec<ParkedFetch> = {
            let mut parked = lock(&self.shared.parked);
            if parked.fetches.iter().all(waits) {
                return;
            }
            let (waiting, ready) = std::mem::take(&mut parked.fetches)
                .into_iter()
                .partition(waits);
            parked.fetches = waiting;
            ready
        };
        for f in ready {
            if let Err(job) = self.submit.try_submit(f.want.into_job(f.reply)) {
                job.answer_empty();
            }
        }
    }

    /// Answers every parked fetch now and parks no new ones (graceful shutdown).
    pub(crate) fn release_parked(&self) {
        lock(&self.shared.parked).stopping = true;
        self.shared.changed.notify_all();
    }

    /// Stops the timer and the pool (after the network server stopped).
    pub(crate) fn shutdown(&self) {
        self.release_parked();
        if let Some(t) = lock(&self.timer).take() {
            let _ = t.join();
        }
        if let Some(pool) = lock(&self.pool).take() {
            pool.join();
        }
    }
}

/// Why a scan of data records stopped short.
#[derive(Debug)]
pub(super) enum ScanError {
    /// The log could not be read.
    Storage(crate::storage::StorageError),
    /// A stored v1 payload does not decode (a bug) and nothing was read before it.
    Bad(BadPayload),
}

/// Data records from `from` below `hw` within `budget` bytes (wire bytes of
/// `format`, headers counted; at least one record), each handed to `push` as
/// `format` presents it; internal entries are skipped and reading continues after
/// them (bounded). Returns the high-water mark to answer with: `hw`, or, after
/// [`MAX_SCAN_ROUNDS`] reads of internal entries only, the offset where the scan
/// stopped, so an empty answer never makes a consumer skip data records. A payload
/// that does not decode ends the answer before it, or is the error when first.
pub(super) fn scan_data(
    log: &crate::storage::Log,
    (from, hw): (Offset, Offset),
    budget: u64,
    format: ReadFormat,
    push: &mut dyn FnMut(&crate::storage::RecordRef<'_>, Served<'_>),
) -> Result<Offset, ScanError> {
    let mut at = from;
    for _ in 0..MAX_SCAN_ROUNDS {
        let (mut used, mut next, mut pushed, mut bad) = (0u64, None, false, None);
        log.read_range_with(at, budget, |r| {
            if r.offset >= hw {
                return false;
            }
            let served = match (!r.kind.is_internal())
                .then(|| served::serve(format, r.offset, r.kind, r.value))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => {
                    bad = Some(e);
                    return false;
                }
            };
            let size = served.map_or(r.value.len(), |s| s.len()) as u64 + format.header_bytes();
            if next.is_some() && used + size > budget {
                return false;
            }
            used += size;
            next = Some(Offset(r.offset.0 + 1));
            if let Some(s) = served {
                push(&r, s);
                pushed = true;
            }
            true
        })
        .map_err(ScanError::Storage)?;
        match (bad, next) {
            (Some(e), _) if !pushed => return Err(ScanError::Bad(e)),
            (None, Some(n)) if !pushed && n < hw => at = n,
            _ => return Ok(hw),
        }
    }
    Ok(at)
}

/// Offset 0 is never a record's offset (a log starts at 1): reading at 0 means
/// "from the first retained offset", on every deployment (wire-spec §5).
fn resolve(group: &GroupState, offset: Offset) -> Offset {
    if offset.0 == 0 {
        group.first()
    } else {
        offset
    }
}

fn out_of_range(group: &GroupState, offset: Offset) -> Refusal {
    Refusal::OutOfRange {
        asked: offset,
        first: group.first(),
        next: group.hw(),
    }
}

/// A read failed: damage is reported to the healer, then answered.
fn failed(group: &GroupState, reply: Responder, e: &crate::storage::StorageError, asked: Offset) {
    report_damage(group, e);
    answer::read_failed(reply, e, out_of_range(group, asked))
}

/// A scan failed: storage errors as [`failed`]; a stored payload that does not
/// decode is a bug, answered INTERNAL naming its offset.
fn scan_failed(group: &GroupState, reply: Responder, e: &ScanError, asked: Offset) {
    match e {
        ScanError::Storage(e) => failed(group, reply, e, asked),
        ScanError::Bad(bad) => answer::bad_payload(reply, bad),
    }
}

/// A damaged record met by any read goes to the healer.
fn report_damage(group: &GroupState, e: &crate::storage::StorageError) {
    if let crate::storage::StorageError::CorruptRecord { offset, .. } = e {
        group.damage.report(*offset);
    }
}

impl ReadShared {
    fn run(&self, job: Job) {
        match job {
            Job::Consume {
                group,
                offset,
                format,
                reply,
            } => self.consume(&group, offset, format, reply),
            Job::Fetch {
                group,
                offset,
                max_bytes,
                reply,
            } => self.fetch(&group, offset, max_bytes, reply),
            Job::ReadEntries {
                group,
                from,
                end,
                anchor,
                max_bytes,
                reply,
            } => self.read_entries(&group, (from, end, anchor), max_bytes, reply),
            Job::FetchMany { fetch, park, reply } => self.fetch_many(fetch, park, reply),
            Job::ListOffsets { lookups, reply } => {
                answer::listed_offsets(reply, super::list_offsets::answer(lookups))
            }
        }
    }

    /// Reads a multi-partition fetch, or parks it while none of its partitions has
    /// anything (re-checked under the parked lock: no wake-up is lost).
    fn fetch_many(&self, fetch: ManyFetch, park: bool, reply: Responder) {
        if park && !fetch.ready() {
            let wait = fetch.wait;
            match self.park(Want::Many(fetch), wait, reply) {
                None => return,
                Some((Want::Many(fetch), reply)) => return self.fetch_many(fetch, false, reply),
                Some((want, reply)) => return want.answer_empty(reply),
            }
        }
        let budget = u32::try_from(reply.max_response_bytes()).unwrap_or(u32::MAX);
        let parts = fetch.read(self.cfg.max_fetch_bytes.min(budget));
        answer::fetched_partitions(reply, fetch.format, parts);
    }

    /// Parks `want` until woken or `wait` passes. Gives it back when it can be
    /// served now; answers it empty when parking is refused (stopping, full).
    fn park(&self, want: Want, wait: Duration, reply: Responder) -> Option<(Want, Responder)> {
        let mut parked = lock(&self.parked);
        let ready = match &want {
            Want::One { group, offset, .. } => *offset < group.hw(),
            Want::Many(m) => m.ready(),
        };
        if ready {
            return Some((want, reply));
        }
        if parked.stopping || parked.fetches.len() >= self.cfg.max_parked {
            drop(parked);
            want.answer_empty(reply);
            return None;
        }
        parked.fetches.push(ParkedFetch {
            want,
            deadline: Instant::now() + wait,
            reply,
        });
        drop(parked);
        self.changed.notify_all();
        None
    }

    fn read_entries(
        &self,
        group: &GroupState,
        (from, end, anchor): (Offset, Offset, Offset),
        max_bytes: u32,
        reply: Responder,
    ) {
        // Bounded like a Fetch: by the asker's cap, the node's, and what the
        // connection may still buffer; headers count, so empty records cannot make
        // an answer (or this Vec) grow without bound.
        let budget = u64::from(max_bytes.min(self.cfg.max_fetch_bytes))
            .min(u64::try_from(reply.max_response_bytes()).unwrap_or(u64::MAX))
            .max(1);
        let mut records = Vec::new();
        let mut used = 0u64;
        let read = group.log.read_range_with(from, budget, |r| {
            let size = r.value.len() as u64 + wire::RECORD_HEADER_BYTES as u64;
            if r.offset >= end || (!records.is_empty() && used + size > budget) {
                return false;
            }
            used += size;
            records.push(WireRecord {
                offset: r.offset,
                term: r.term,
                kind: r.kind,
                value: r.value.to_vec(),
            });
            true
        });
        if let Err(e) = read {
            return failed(group, reply, &e, from);
        }
        // 0 = "not held intact here": the asker then tries another peer.
        let anchor_term = group.log.read(anchor).map_or_else(
            |e| {
                report_damage(group, &e);
                crate::types::Term(0)
            },
            |r| r.term,
        );
        let commit_index = Offset(group.hw().0.saturating_sub(1));
        answer::entries(reply, anchor_term, commit_index, records)
    }

    /// The first data record at an offset >= `offset` below the high-water mark
    /// (internal entries skipped, one record per read round, bounded).
    fn consume(&self, group: &GroupState, offset: Offset, format: ReadFormat, reply: Responder) {
        let mut found = None;
        let scanned = scan_data(&group.log, (offset, group.hw()), 1, format, &mut |r, s| {
            if found.is_none() {
                found = Some((r.offset, r.term, s.to_vec()));
            }
        });
        match (found, scanned) {
            (Some((at, term, bytes)), _) => answer::record(reply, format, (at, term), bytes),
            (None, Ok(_)) => answer::refuse(reply, out_of_range(group, offset)),
            (None, Err(e)) => scan_failed(group, reply, &e, offset),
        }
    }

    /// Data records from `offset` below the high-water mark, values only (Fetch v0).
    /// If a read returns only internal entries, reading continues after them
    /// (bounded), so an empty answer with `high_watermark > offset` never makes a
    /// consumer skip data records.
    fn fetch(&self, group: &GroupState, offset: Offset, max_bytes: u32, reply: Responder) {
        let budget = u64::from(max_bytes.min(self.cfg.max_fetch_bytes)).max(1);
        // Records are encoded straight from the storage read buffer (one copy each
        // of the value, a sub-slice of a v1 payload), as on a single node.
        let mut builder = reply.fetch_builder(usize::try_from(budget).unwrap_or(usize::MAX));
        let range = (offset, group.hw());
        let scanned = scan_data(&group.log, range, budget, ReadFormat::Value, &mut |r, s| {
            builder.push(r.offset, r.term, RecordKind::Data, s.as_value())
        });
        match scanned {
            Ok(mark) => reply.respond_fetch_built(mark, builder),
            Err(e) => scan_failed(group, reply, &e, offset),
        }
    }

    fn timer_loop(self: Arc<Self>) {
        let mut parked = lock(&self.parked);
        loop {
            let now = Instant::now();
            let stopping = parked.stopping;
            let (expired, waiting): (Vec<ParkedFetch>, Vec<ParkedFetch>) =
                std::mem::take(&mut parked.fetches)
                    .into_iter()
                    .partition(|f| stopping || f.deadline <= now);
            parked.fetches = waiting;
            let next_deadline = parked.fetches.iter().map(|f| f.deadline).min();
            if !expired.is_empty() {
                drop(parked);
                for f in expired {
                    f.want.answer_empty(f.reply);
                }
                parked = lock(&self.parked);
                continue;
            }
            if stopping {
                return;
            }
            let wait = next_deadline
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            parked = crate::sync::wait_timeout(&self.changed, parked, wait).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{self, Timestamp, TimestampSource};
    use crate::storage::tests::TempDir;
    use crate::storage::{Log, LogConfig, NewRecord};
    use crate::types::Term;

    /// What `scan_data` hands out from `log`, whole.
    fn scan_all(log: &Log, format: ReadFormat) -> Result<Vec<(Offset, Vec<u8>)>, ScanError> {
        let range = (log.first_offset(), log.next_offset());
        let mut got = Vec::new();
        scan_data(log, range, 1 << 20, format, &mut |r, s| {
            got.push((r.offset, s.to_vec()))
        })?;
        Ok(got)
    }

    fn log_of(dir: &TempDir, entries: &[(RecordKind, &[u8])]) -> Log {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        for (kind, value) in entries {
            let record = NewRecord {
                term: Term(1),
                kind: *kind,
                value,
            };
            log.append(record).unwrap();
        }
        log.sync().unwrap();
        log
    }

    /// A log written before record format v1 (bare `Data` values), with v1 records
    /// and internal entries after it: version 2 reads the old records with no key,
    /// no headers and time -1; versions 0/1 read every value.
    #[test]
    fn old_v0_records_read_through_v2_with_unknown_time() {
        let dir = TempDir::new("reads-v0-log");
        let stamp = Timestamp {
            unix_ms: 5,
            source: TimestampSource::Leader,
        };
        let v1 = records::encode_value_only(b"new", stamp);
        let entries: [(RecordKind, &[u8]); 4] = [
            (RecordKind::Data, b"old"),
            (RecordKind::NoOp, b""),
            (RecordKind::DataV1, &v1),
            (RecordKind::Data, b""),
        ];
        let log = log_of(&dir, &entries);
        let v2 = scan_all(&log, ReadFormat::V1).unwrap();
        assert_eq!(v2.len(), 3, "the no-op is skipped");
        let decoded: Vec<_> = v2
            .iter()
            .map(|(_, p)| records::decode(p).unwrap().to_record())
            .collect();
        assert_eq!(decoded[0].value, b"old");
        assert_eq!(decoded[0].timestamp.unix_ms, -1);
        assert_eq!(decoded[0].key, None);
        assert!(decoded[0].headers.is_empty());
        assert_eq!(v2[1].1, v1, "a v1 record is answered as stored");
        assert_eq!(
            (decoded[2].value.len(), decoded[2].timestamp.unix_ms),
            (0, -1)
        );
        let values: Vec<Vec<u8>> = scan_all(&log, ReadFormat::Value)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values, [b"old".to_vec(), b"new".to_vec(), Vec::new()]);
    }

    /// A stored v1 payload that does not decode ends the answer before it, or is
    /// the error (naming its offset) when nothing comes before it.
    #[test]
    fn an_undecodable_v1_payload_is_an_error_naming_its_offset() {
        let dir = TempDir::new("reads-bad-v1");
        let log = log_of(
            &dir,
            &[(RecordKind::DataV1, &[9, 9]), (RecordKind::Data, b"x")],
        );
        match scan_all(&log, ReadFormat::Value) {
            Err(ScanError::Bad(bad)) => assert_eq!(bad.offset, log.first_offset()),
            Err(ScanError::Storage(e)) => panic!("storage error {e}"),
            Ok(got) => panic!("read {got:?}"),
        }
        let dir = TempDir::new("reads-bad-v1-later");
        let log = log_of(
            &dir,
            &[(RecordKind::Data, b"x"), (RecordKind::DataV1, &[9])],
        );
        let got = scan_all(&log, ReadFormat::V1).unwrap();
        assert_eq!(got.len(), 1, "the records before it are answered");
    }
}
