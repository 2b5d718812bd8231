//! The single-node request handler: glues decoded wire requests to the storage log.
//!
//! [`LogService`] implements [`net::Service`](crate::net::Service). The Raft-backed
//! cluster node will implement the same trait; nothing in `net` knows about storage.
//!
//! # Threads
//! - **Group-commit writer** (one thread, `commitlog-writer`): the only thread that
//!   appends. `Produce` and `ProduceBatch` requests go into a bounded queue
//!   (`max_pending_produces`; when full the request gets `UNAVAILABLE` at once). The
//!   writer blocks for the first request, then drains whatever else is queued (up to
//!   `max_batch_records` / `max_batch_bytes`), does **one** `append_batch` and **one**
//!   `sync()` (fsync), and only then answers every request of the batch. While it is
//!   fsyncing, new requests queue up and form the next batch, so concurrent producers
//!   share fsyncs. With `FsyncPolicy::Never` the `sync()` is skipped and records are
//!   acknowledged from the page cache (they can be lost on power failure).
//! - **Read pool** ([`WorkerPool`], `read_threads` threads, bounded queue):
//!   `Consume` and `Fetch` reads.
//! - **Fetch timer** (one thread): answers long-polls whose `max_wait_ms` ran out.
//! - **Retention** (one thread): `Log::apply_retention` every `retention_interval_ms`.
//!
//! # Visibility
//! The high watermark is the durable end of the log: the writer raises it after its
//! fsync returns (with `FsyncPolicy::Never`, after the append). Consumers never see a
//! record at or above it, so nothing a reader saw can disappear in a crash. Offsets of
//! acknowledged records are below the high watermark when the acknowledgement is sent.
//!
//! # Fetch path
//! A `Fetch` is answered from the storage read buffer: `Log::read_range_with` lends
//! each record (crc checked) to a visitor that pushes it into the response frame
//! (`Responder::fetch_builder`), so each value is copied once in user space, and the
//! event loop adopts the finished frame as the connection's write buffer.
//!
//! # Long-polling fetch
//! A `Fetch` at the high watermark with `max_wait_ms > 0` is parked in a bounded list
//! (`max_parked_fetches`; when full it is answered empty at once) without occupying a
//! thread. When the writer raises the high watermark past a parked offset it moves the
//! fetch to the read pool; when its deadline passes the timer answers it with zero
//! records and the current high watermark. The parker re-checks the high watermark
//! under the list's lock, and the writer raises it before taking that lock, so no
//! wake-up is lost.
//!
//! # Errors
//! Storage errors are converted at this boundary: `OffsetOutOfRange` →
//! `OFFSET_OUT_OF_RANGE` (message from `wire::offset_out_of_range_message`),
//! `RecordTooLarge` → `RECORD_TOO_LARGE`, a closed log → `UNAVAILABLE`, anything else
//! (I/O, corruption) → `INTERNAL` and an error log line. Peer APIs (`Raft`,
//! `PeerHandshake`) get `UNSUPPORTED_API` on a single node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::net::{ConnContext, PoolSubmitter, Responder, Service, WorkerPool};
use crate::storage::{Log, NewRecord, Record, StorageError};
use crate::types::{NodeId, Offset, RecordKind, Term};
use crate::wire::{
    self, ErrorCode, Request, RequestFrame, ResponseBody, ServerInfo, ServerRole, StatusInfo,
    WireRecord,
};

/// Whether produces wait for an fsync before they are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync every batch before acknowledging it (the default; crash-safe).
    Always,
    /// Acknowledge from the page cache: acknowledged records can be lost on power loss.
    Never,
}

/// Configuration of the single-node service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// This node's id (reported by `GetServers` and `Status`).
    pub node_id: NodeId,
    /// This node's name.
    pub node_name: String,
    /// The client address other parties should use for this node.
    pub advertise_addr: String,
    /// Durability of acknowledgements.
    pub fsync: FsyncPolicy,
    /// Threads serving `Consume`/`Fetch`.
    pub read_threads: usize,
    /// Reads queued for the pool before new ones get `UNAVAILABLE`.
    pub read_queue_cap: usize,
    /// Produce requests queued for the writer before new ones get `UNAVAILABLE`.
    pub max_pending_produces: usize,
    /// Most records in one group-commit batch.
    pub max_batch_records: usize,
    /// Most payload bytes in one group-commit batch.
    pub max_batch_bytes: usize,
    /// Most long-polling fetches parked at once.
    pub max_parked_fetches: usize,
    /// Upper bound on a fetch's `max_wait_ms`.
    pub max_fetch_wait_ms: u64,
    /// Upper bound on the record bytes of one fetch response (keep it below the
    /// server's `max_frame_bytes`).
    pub max_fetch_bytes: u32,
    /// How often retention runs.
    pub retention_interval_ms: u64,
    /// Where fsyncs are counted (see [`crate::metrics`]); `None`: not counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            node_id: NodeId(1),
            node_name: "node-1".to_string(),
            advertise_addr: "127.0.0.1:8400".to_string(),
            fsync: FsyncPolicy::Always,
            read_threads: 2,
            read_queue_cap: 4096,
            max_pending_produces: 16 * 1024,
            max_batch_records: 8 * 1024,
            max_batch_bytes: 16 << 20,
            max_parked_fetches: 4096,
            max_fetch_wait_ms: 30_000,
            max_fetch_bytes: wire::DEFAULT_MAX_FRAME_BYTES - 64 * 1024,
            retention_interval_ms: 60_000,
            metrics: None,
        }
    }
}

/// Per-record overhead of a fetch response (offset, term, kind, length prefix).
const FETCH_RECORD_OVERHEAD_BYTES: u64 = wire::RECORD_HEADER_BYTES as u64;
/// Most records a `Consume` skips looking for a data record.
const CONSUME_MAX_SCAN_ROUNDS: usize = 64;

/// The single-node request handler. Create with [`LogService::start`]; stop with
/// [`LogService::shutdown`] after the network server has stopped.
pub struct LogService {
    shared: Arc<Shared>,
    produce_tx: SyncSender<WriterMsg>,
    reads: PoolSubmitter<ReadJob>,
    pool: Mutex<Option<WorkerPool<ReadJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    retention_stop: Mutex<Option<Sender<()>>>,
}

struct Shared {
    log: Arc<Log>,
    config: ServiceConfig,
    /// Durable end of the log: records below it are visible to consumers.
    high_watermark: AtomicU64,
    closing: AtomicBool,
    parked: Mutex<Parked>,
    parked_changed: Condvar,
}

struct Parked {
    fetches: Vec<ParkedFetch>,
    stopping: bool,
}

struct ParkedFetch {
    offset: Offset,
    max_bytes: u32,
    deadline: Instant,
    reply: Responder,
}

enum WriterMsg {
    Produce(ProduceJob),
    Stop,
}

struct ProduceJob {
    values: Values,
    reply: Responder,
}

enum Values {
    One(Vec<u8>),
    Many(Vec<Vec<u8>>),
}

impl Values {
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many) = match self {
            Values::One(v) => (Some(v.as_slice()), None),
            Values::Many(vs) => (None, Some(vs.iter().map(|v| v.as_slice()))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn count(&self) -> usize {
        match self {
            Values::One(_) => 1,
            Values::Many(vs) => vs.len(),
        }
    }

    fn bytes(&self) -> usize {
        self.iter().map(<[u8]>::len).sum()
    }
}

enum ReadJob {
    Consume {
        offset: Offset,
        reply: Responder,
    },
    Fetch {
        offset: Offset,
        max_bytes: u32,
        reply: Responder,
    },
}

impl LogService {
    /// Starts the writer, read pool, fetch timer and retention threads over `log`.
    /// The log is synced once first so the initial high watermark is durable.
    pub fn start(log: Arc<Log>, config: ServiceConfig) -> std::io::Result<Arc<LogService>> {
        let durable = match config.fsync {
            FsyncPolicy::Always => log
                .sync()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            FsyncPolicy::Never => log.next_offset(),
        };
        let shared = Arc::new(Shared {
            log,
            high_watermark: AtomicU64::new(durable.0),
            closing: AtomicBool::new(false),
            parked: Mutex::new(Parked {
                fetches: Vec::new(),
                stopping: false,
            }),
            parked_changed: Condvar::new(),
            config,
        });
        let cfg = &shared.config;
        let pool_shared = Arc::clone(&shared);
        let pool = WorkerPool::start(
            "commitlog-read",
            cfg.read_threads,
            cfg.read_queue_cap,
            move |job| pool_shared.run_read(job),
        )?;
        let reads = pool.submitter();
        let (produce_tx, produce_rx) = mpsc::sync_channel(cfg.max_pending_produces.max(1));
        let mut threads = Vec::new();
        {
            let shared = Arc::clone(&shared);
            let reads = reads.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("commitlog-writer".into())
                    .spawn(move || shared.writer_loop(produce_rx, reads))?,
            );
        }
        {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("commitlog-fetch-timer".into())
                    .spawn(move || shared.timer_loop())?,
            );
        }
        let (retention_stop, retention_rx) = mpsc::channel::<()>();
        {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("commitlog-retention".into())
                    .spawn(move || shared.retention_loop(retention_rx))?,
            );
        }
        Ok(Arc::new(LogService {
            shared,
            produce_tx,
            reads,
            pool: Mutex::new(Some(pool)),
            threads: Mutex::new(threads),
            retention_stop: Mutex::new(Some(retention_stop)),
        }))
    }

    /// The current high watermark (durable end of the log).
    pub fn high_watermark(&self) -> Offset {
        Offset(self.shared.high_watermark.load(Ordering::Acquire))
    }

    /// Finishes queued produces (one last append + fsync), answers parked fetches,
    /// stops every thread and syncs the log. Call after the network server stopped;
    /// requests arriving later get `UNAVAILABLE`. Idempotent.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        self.shared.closing.store(true, Ordering::SeqCst);
        // The writer handles everything queued before Stop, then exits.
        let _ = self.produce_tx.send(WriterMsg::Stop);
        self.release_parked();
        if let Some(stop) = lock(&self.retention_stop).take() {
            drop(stop);
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for handle in threads {
            if handle.join().is_err() {
                log::error!("a service thread panicked");
            }
        }
        if let Some(pool) = lock(&self.pool).take() {
            pool.join();
        }
        self.shared.log.sync().map(|_| ())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Service for LogService {
    fn call(&self, frame: RequestFrame, ctx: &ConnContext, reply: Responder) {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            reply.error(
                ErrorCode::Unavailable,
                "the server is shutting down; retry on another node or after restart",
            );
            return;
        }
        match frame.request {
            Request::Ping => reply.ok(ResponseBody::Ping),
            Request::Produce { value } => self.enqueue_produce(Values::One(value), reply),
            Request::ProduceBatch { values } => {
                if values.is_empty() {
                    // wire-spec.md: an empty batch is answered with count 0.
                    reply.ok(ResponseBody::ProduceBatch {
                        first_offset: shared.hw(),
                        count: 0,
                    });
                } else {
                    self.enqueue_produce(Values::Many(values), reply)
                }
            }
            Request::Consume { offset } => {
                let hw = shared.hw();
                if offset >= hw {
                    reply.error(ErrorCode::OffsetOutOfRange, shared.out_of_range(offset, hw));
                    return;
                }
                self.submit_read(ReadJob::Consume { offset, reply });
            }
            Request::Fetch {
                offset,
                max_bytes,
                max_wait_ms,
            } => {
                let hw = shared.hw();
                let first = shared.log.first_offset();
                if offset < first || offset > hw {
                    reply.error(ErrorCode::OffsetOutOfRange, shared.out_of_range(offset, hw));
                } else if offset < hw {
                    self.submit_read(ReadJob::Fetch {
                        offset,
                        max_bytes,
                        reply,
                    });
                } else if max_wait_ms == 0 {
                    reply.ok(ResponseBody::Fetch {
                        high_watermark: hw,
                        records: Vec::new(),
                    });
                } else {
                    let wait_ms = u64::from(max_wait_ms).min(shared.config.max_fetch_wait_ms);
                    self.park(offset, max_bytes, Duration::from_millis(wait_ms), reply);
                }
            }
            Request::GetServers => reply.ok(ResponseBody::GetServers {
                servers: vec![shared.server_info()],
            }),
            Request::Status => reply.ok(ResponseBody::Status(shared.status())),
            other => {
                log::info!(
                    "conn {} ({}): peer API {:?} on a single node",
                    ctx.conn_id,
                    ctx.peer_addr,
                    other.api_key()
                );
                reply.error(
                    ErrorCode::UnsupportedApi,
                    "this is a single-node server; peer APIs are not enabled",
                );
            }
        }
    }

    fn begin_shutdown(&self) {
        self.release_parked();
    }
}

impl LogService {
    /// Answers every parked long-poll now (empty) and parks no new ones.
    fn release_parked(&self) {
        self.shared.lock_parked().stopping = true;
        self.shared.parked_changed.notify_all();
    }

    fn enqueue_produce(&self, values: Values, reply: Responder) {
        match self
            .produce_tx
            .try_send(WriterMsg::Produce(ProduceJob { values, reply }))
        {
            Ok(()) => {}
            Err(TrySendError::Full(WriterMsg::Produce(job))) => job.reply.error(
                ErrorCode::Unavailable,
                "produce queue full (the disk is behind); retry with backoff",
            ),
            Err(TrySendError::Disconnected(WriterMsg::Produce(job))) => job.reply.error(
                ErrorCode::Unavailable,
                "the writer has stopped; the server is shutting down",
            ),
            Err(_) => {}
        }
    }

    fn submit_read(&self, job: ReadJob) {
        if let Err(job) = self.reads.try_submit(job) {
            let reply = match job {
                ReadJob::Consume { reply, .. } | ReadJob::Fetch { reply, .. } => reply,
            };
            reply.error(
                ErrorCode::Unavailable,
                "too many reads queued; retry with backoff",
            );
        }
    }

    fn park(&self, offset: Offset, max_bytes: u32, wait: Duration, reply: Responder) {
        let shared = &self.shared;
        let mut parked = shared.lock_parked();
        // Re-check under the lock: the writer raises the watermark before locking.
        let hw = shared.hw();
        if offset < hw {
            drop(parked);
            self.submit_read(ReadJob::Fetch {
                offset,
                max_bytes,
                reply,
            });
            return;
        }
        if parked.stopping || parked.fetches.len() >= shared.config.max_parked_fetches {
            drop(parked);
            reply.ok(ResponseBody::Fetch {
                high_watermark: hw,
                records: Vec::new(),
            });
            return;
        }
        parked.fetches.push(ParkedFetch {
            offset,
            max_bytes,
            deadline: Instant::now() + wait,
            reply,
        });
        drop(parked);
        shared.parked_changed.notify_all();
    }
}

impl Shared {
    fn hw(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    fn lock_parked(&self) -> MutexGuard<'_, Parked> {
        lock(&self.parked)
    }

    fn out_of_range(&self, offset: Offset, hw: Offset) -> String {
        wire::offset_out_of_range_message(offset, self.log.first_offset(), hw)
    }

    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            id: self.config.node_id,
            name: self.config.node_name.clone(),
            rpc_addr: self.config.advertise_addr.clone(),
            role: ServerRole::Leader,
            live: true,
        }
    }

    fn status(&self) -> StatusInfo {
        let hw = self.hw();
        StatusInfo {
            node_name: self.config.node_name.clone(),
            role: ServerRole::Leader,
            term: Term(0),
            commit_index: hw,
            last_index: self.log.last_offset().unwrap_or(Offset(0)),
            first_index: self.log.first_offset(),
        }
    }

    fn storage_error(&self, e: &StorageError, offset: Offset) -> (ErrorCode, String) {
        match e {
            StorageError::OffsetOutOfRange { .. } => (
                ErrorCode::OffsetOutOfRange,
                self.out_of_range(offset, self.hw()),
            ),
            StorageError::RecordTooLarge { .. } => (
                ErrorCode::RecordTooLarge,
                format!("{e}; send smaller records"),
            ),
            StorageError::Closed => (
                ErrorCode::Unavailable,
                "the log is closed; the server is shutting down".to_string(),
            ),
            StorageError::NoSpace { .. } => {
                log::error!("storage error: {e}");
                (
                    ErrorCode::StorageFull,
                    format!("{e}; nothing was written, retry later"),
                )
            }
            StorageError::CorruptRecord { .. } => {
                log::error!("read failed: {e}");
                (ErrorCode::CorruptRecord, e.to_string())
            }
            other => {
                log::error!("storage error: {other}");
                (
                    ErrorCode::Internal,
                    format!("storage error: {other}; see the server log"),
                )
            }
        }
    }

    // ---- group-commit writer ----

    fn writer_loop(self: Arc<Self>, rx: Receiver<WriterMsg>, reads: PoolSubmitter<ReadJob>) {
        let cfg = &self.config;
        let mut stop = false;
        while !stop {
            let first = match rx.recv() {
                Ok(WriterMsg::Produce(job)) => job,
                Ok(WriterMsg::Stop) | Err(_) => break,
            };
            let mut records = first.values.count();
            let mut bytes = first.values.bytes();
            let mut batch = vec![first];
            while records < cfg.max_batch_records && bytes < cfg.max_batch_bytes {
                match rx.try_recv() {
                    Ok(WriterMsg::Produce(job)) => {
                        records += job.values.count();
                        bytes += job.values.bytes();
                        batch.push(job);
                    }
                    Ok(WriterMsg::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch, true);
            self.wake_parked(&reads);
        }
        // Anything queued after Stop arrived after shutdown began.
        while let Ok(msg) = rx.try_recv() {
            if let WriterMsg::Produce(job) = msg {
                job.reply.error(
                    ErrorCode::Unavailable,
                    "the server is shutting down; retry after restart",
                );
            }
        }
        log::debug!("writer stopped");
    }

    /// Appends a batch, fsyncs it (per policy), raises the high watermark and answers
    /// every request of the batch. If the batch fails for a reason that may belong to
    /// one request (say, one record too large), each request is retried on its own so
    /// the others still succeed.
    fn commit(&self, batch: Vec<ProduceJob>, split_on_error: bool) {
        let new_records: Vec<NewRecord<'_>> = batch
            .iter()
            .flat_map(|job| job.values.iter())
            .map(|value| NewRecord {
                term: Term(0),
                kind: RecordKind::Data,
                value,
            })
            .collect();
        let count = new_records.len() as u64;
        let appended = self.log.append_batch(&new_records);
        drop(new_records);
        let first = match appended {
            Ok(first) => first.0,
            Err(e) => {
                let per_request = !matches!(
                    e,
                    StorageError::Io { .. } | StorageError::Closed | StorageError::NoSpace { .. }
                );
                if split_on_error && per_request && batch.len() > 1 {
                    for job in batch {
                        self.commit(vec![job], false);
                    }
                    return;
                }
                let (code, message) = self.storage_error(&e, Offset(0));
                for job in batch {
                    job.reply.error(code, message.clone());
                }
                return;
            }
        };
        let end = first + count;
        let durable_end = match self.config.fsync {
            FsyncPolicy::Always => match self.timed_sync() {
                Ok(durable) => durable.0,
                Err(e) => {
                    log::error!("fsync failed: {e}; {count} record(s) not acknowledged");
                    for job in batch {
                        job.reply.error(
                            ErrorCode::Internal,
                            format!("fsync failed: {e}; the record may not be durable, retry"),
                        );
                    }
                    return;
                }
            },
            FsyncPolicy::Never => end,
        };
        // Invariant: an acknowledged record is below the high watermark.
        assert!(
            durable_end >= end,
            "sync returned durable end {durable_end} below appended end {end}"
        );
        self.high_watermark.fetch_max(durable_end, Ordering::AcqRel);
        let mut offset = first;
        for job in batch {
            let n = job.values.count() as u64;
            match job.values {
                Values::One(_) => job.reply.ok(ResponseBody::Produce {
                    offset: Offset(offset),
                }),
                Values::Many(_) => job.reply.ok(ResponseBody::ProduceBatch {
                    first_offset: Offset(offset),
                    count: u32::try_from(n).unwrap_or(u32::MAX),
                }),
            }
            offset += n;
        }
    }

    /// `Log::sync`, observed in the fsync metrics.
    fn timed_sync(&self) -> Result<Offset, StorageError> {
        let started = std::time::Instant::now();
        let synced = self.log.sync();
        if let Some(m) = &self.config.metrics {
            m.observe_fsync(started.elapsed());
        }
        synced
    }

    /// Moves parked fetches whose offset is now below the high watermark to the pool.
    fn wake_parked(&self, reads: &PoolSubmitter<ReadJob>) {
        let hw = self.hw();
        let ready: Vec<ParkedFetch> = {
            let mut parked = self.lock_parked();
            if parked.fetches.iter().all(|f| f.offset >= hw) {
                return;
            }
            let (ready, waiting) = std::mem::take(&mut parked.fetches)
                .into_iter()
                .partition(|f| f.offset < hw);
            parked.fetches = waiting;
            ready
        };
        for fetch in ready {
            let job = ReadJob::Fetch {
                offset: fetch.offset,
                max_bytes: fetch.max_bytes,
                reply: fetch.reply,
            };
            if let Err(job) = reads.try_submit(job) {
                let (ReadJob::Fetch { reply, .. } | ReadJob::Consume { reply, .. }) = job;
                // The pool is saturated: an empty answer makes the client fetch again.
                reply.ok(ResponseBody::Fetch {
                    high_watermark: hw,
                    records: Vec::new(),
                });
            }
        }
    }

    // ---- fetch timer ----

    fn timer_loop(self: Arc<Self>) {
        let mut parked = self.lock_parked();
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
                let hw = self.hw();
                for fetch in expired {
                    fetch.reply.ok(ResponseBody::Fetch {
                        high_watermark: hw,
                        records: Vec::new(),
                    });
                }
                parked = self.lock_parked();
                continue;
            }
            if stopping {
                return;
            }
            // Wake at the earliest deadline, or within a second to re-check.
            let wait = next_deadline
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            parked = match self.parked_changed.wait_timeout(parked, wait) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    // ---- retention ----

    fn retention_loop(self: Arc<Self>, stop: Receiver<()>) {
        let interval = Duration::from_millis(self.config.retention_interval_ms.max(10));
        loop {
            match stop.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match self.log.apply_retention(SystemTime::now()) {
                Ok(0) => {}
                Ok(freed_bytes) => log::info!("retention freed {freed_bytes} bytes"),
                Err(e) => log::error!("retention failed: {e}"),
            }
        }
    }

    // ---- reads (on the pool) ----

    fn run_read(&self, job: ReadJob) {
        match job {
            ReadJob::Consume { offset, reply } => self.consume(offset, reply),
            ReadJob::Fetch {
                offset,
                max_bytes,
                reply,
            } => self.fetch(offset, max_bytes, reply),
        }
    }

    /// The first data record at an offset ≥ `offset` below the high watermark.
    fn consume(&self, offset: Offset, reply: Responder) {
        let hw = self.hw();
        let mut at = offset;
        // Bounded: each round reads at least one record and moves `at` past it.
        for _ in 0..CONSUME_MAX_SCAN_ROUNDS {
            if at >= hw {
                break;
            }
            let records = match self.log.read_range(at, 1) {
                Ok(records) => records,
                Err(e) => {
                    let (code, message) = self.storage_error(&e, offset);
                    return reply.error(code, message);
                }
            };
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            if let Some(record) = records
                .into_iter()
                .find(|r| !r.kind.is_internal() && r.offset >= at)
            {
                if record.offset < hw {
                    return reply.ok(ResponseBody::Consume {
                        record: to_wire(record),
                    });
                }
                break;
            }
            at = Offset(last.0 + 1);
        }
        reply.error(ErrorCode::OffsetOutOfRange, self.out_of_range(offset, hw));
    }

    fn fetch(&self, offset: Offset, max_bytes: u32, reply: Responder) {
        let hw = self.hw();
        let budget = u64::from(max_bytes.min(self.config.max_fetch_bytes));
        // Records are encoded straight from the storage read buffer: one copy each.
        let hint = usize::try_from(budget).unwrap_or(usize::MAX);
        let mut builder = reply.fetch_builder(hint);
        let mut used = 0u64;
        let read = self.log.read_range_with(offset, budget, |record| {
            if record.offset >= hw {
                return false;
            }
            let size = record.value.len() as u64 + FETCH_RECORD_OVERHEAD_BYTES;
            if used > 0 && used + size > budget {
                return false;
            }
            used += size;
            if !record.kind.is_internal() {
                builder.push(record.offset, record.term, record.kind, record.value);
            }
            true
        });
        match read {
            Ok(_) => reply.respond_fetch_built(hw, builder),
            Err(e) => {
                let (code, message) = self.storage_error(&e, offset);
                reply.error(code, message);
            }
        }
    }
}

fn to_wire(record: Record) -> WireRecord {
    WireRecord {
        offset: record.offset,
        term: record.term,
        kind: record.kind,
        value: record.value,
    }
}
