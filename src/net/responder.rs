//! The hand-off of finished responses from any thread back to the event loop.
//!
//! A [`Responder`] is created by the event loop for every decoded request and passed to
//! the [`Service`](super::Service). Whoever finishes the request (a worker, the group
//! commit writer, a fetch timer) calls [`Responder::respond`]; the response is encoded
//! on that thread, pushed onto the loop's completion channel, and the loop is woken
//! through its `mio::Waker`.
//!
//! Wake-ups are coalesced: a `pending` flag records that a wake is already on its way,
//! so completing a group commit of a thousand produces costs one `eventfd` write, not a
//! thousand. The protocol (both sides use `swap` with acquire-release ordering):
//! - sender: `send(completion)`, then `if !pending.swap(true) { waker.wake() }`;
//! - loop: on a waker event, `pending.swap(false)`, then drain the channel.
//!
//! If the sender's swap reads `true`, the loop's later `swap(false)` reads that write and
//! synchronizes with it, so the drain that follows sees the completion; if it reads
//! `false`, the sender wakes the loop itself. Either way no completion is stranded.
//!
//! The channel is unbounded in type but bounded in practice: at most one completion
//! exists per in-flight request, and in-flight requests are capped per connection and
//! connections are capped per server. Its bytes are bounded too: each request carries
//! the byte allowance the loop reserved for its answer from the memory budget (see
//! [`Responder::max_response_bytes`]), and a `Fetch` built with
//! [`Responder::fetch_builder`] never grows past it (beyond its first record).

use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mio::Waker;

use crate::types::{Offset, RecordKind, Term};
use crate::wire::{
    self, ApiKey, ErrorBody, ErrorCode, RecordView, ResponseBody, ResponseFrame, WireRecord,
    FETCH_RESPONSE_PREFIX_BYTES,
};

/// Which protocol a connection speaks, decided by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Length-prefixed binary frames (first byte 0x00).
    Binary,
    /// Inline text commands, one per line (first byte an ASCII letter).
    Text,
}

/// Identifies a connection slot and the generation of the connection in it, so a late
/// completion for a closed connection is never delivered to its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnKey {
    pub(crate) index: usize,
    pub(crate) generation: u64,
}

/// A finished response on its way to the event loop.
pub(crate) struct Completion {
    pub(crate) key: ConnKey,
    pub(crate) bytes: Vec<u8>,
    /// The bytes the loop reserved for this answer (released when it arrives).
    pub(crate) reserved_bytes: usize,
    /// Close the connection once this answer is flushed (a refused peer handshake).
    pub(crate) close: bool,
}

/// Coalesces wake-ups of the event loop (protocol in the module docs; model-checked
/// by `loom_completion_is_never_stranded`).
pub(crate) struct WakeFlag {
    pending: crate::sync::AtomicBool,
}

impl WakeFlag {
    pub(crate) fn new() -> WakeFlag {
        WakeFlag {
            pending: crate::sync::AtomicBool::new(false),
        }
    }

    /// Sender side, after queueing a completion: true if this sender must wake the
    /// loop (no wake is pending yet).
    pub(crate) fn should_wake(&self) -> bool {
        !self.pending.swap(true, crate::sync::Ordering::AcqRel)
    }

    /// Loop side, before draining the queue: later completions will wake it again.
    pub(crate) fn clear(&self) {
        self.pending.swap(false, crate::sync::Ordering::AcqRel);
    }
}

/// Shared by every responder of one server: the completion channel and the waker.
pub(crate) struct CompletionSink {
    pub(crate) tx: Sender<Completion>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) wake: WakeFlag,
    /// Set once by [`Server::with_metrics`](super::Server::with_metrics).
    pub(crate) metrics: OnceLock<Arc<crate::metrics::Metrics>>,
}

impl CompletionSink {
    fn deliver(&self, completion: Completion) {
        if self.tx.send(completion).is_err() {
            // The event loop is gone (server stopped); nobody is waiting.
            return;
        }
        if self.wake.should_wake() {
            if let Err(e) = self.waker.wake() {
                log::error!("failed to wake the event loop: {e}");
            }
        }
    }
}

/// Completes one request, from any thread, exactly once.
///
/// Dropping a `Responder` without calling [`respond`](Responder::respond) answers the
/// request with an `INTERNAL` error, so a bug in a service can never leave a client
/// waiting forever or leak the connection's in-flight slot.
pub struct Responder {
    key: ConnKey,
    correlation_id: u32,
    api_key: ApiKey,
    protocol: Protocol,
    sink: Arc<CompletionSink>,
    done: bool,
    /// When the request was decoded (only taken with metrics on).
    started: Option<Instant>,
    /// Records and value bytes of a produce request, counted on success (0
    /// records: not a produce). Two plain fields keep the responder small.
    produce_records: u32,
    produce_bytes: u64,
    /// The bytes reserved for this answer from the connection's memory budget;
    /// `u32::MAX`: none (no limit). A `u32` keeps the responder small.
    allowance_bytes: u32,
}

impl Responder {
    pub(crate) fn new(
        key: ConnKey,
        correlation_id: u32,
        api_key: ApiKey,
        protocol: Protocol,
        sink: Arc<CompletionSink>,
    ) -> Responder {
        Responder {
            key,
            correlation_id,
            api_key,
            protocol,
            started: sink.metrics.get().map(|_| Instant::now()),
            sink,
            done: false,
            produce_records: 0,
            produce_bytes: 0,
            allowance_bytes: u32::MAX,
        }
    }

    /// Sets the bytes reserved for this answer (see [`Responder::max_response_bytes`]),
    /// capped below 4 GiB; returns what was set, which the completion gives back.
    pub(crate) fn set_allowance(&mut self, bytes: usize) -> usize {
        self.allowance_bytes = u32::try_from(bytes).unwrap_or(u32::MAX - 1);
        self.reserved_bytes()
    }

    /// The bytes the connection reserved for this answer from the node's memory
    /// budget. A `Fetch` built with [`Responder::fetch_builder`] stays within it
    /// (it always takes its first record); a service may also read no more than
    /// this from storage.
    pub fn max_response_bytes(&self) -> usize {
        if self.allowance_bytes == u32::MAX {
            usize::MAX
        } else {
            self.allowance_bytes as usize
        }
    }

    /// Hands the encoded answer to the loop. A `PeerHandshake` refused with
    /// `PERMISSION_DENIED` (a foreign cluster name) closes the connection
    /// (wire-spec.md §5): its sender is not a peer of this cluster.
    fn deliver(&self, bytes: Vec<u8>, denied: bool) {
        self.sink.deliver(Completion {
            key: self.key,
            bytes,
            reserved_bytes: self.reserved_bytes(),
            close: denied && self.api_key == ApiKey::PeerHandshake,
        });
    }

    /// The allowance as the loop counted it (0 when none was set).
    fn reserved_bytes(&self) -> usize {
        if self.allowance_bytes == u32::MAX {
            0
        } else {
            self.allowance_bytes as usize
        }
    }

    /// Notes the size of a produce request (for the produce metrics).
    pub(crate) fn set_produce_size(&mut self, size: Option<(u64, u64)>) {
        let (records, bytes) = size.unwrap_or((0, 0));
        // A frame holds far fewer than 2^32 records.
        self.produce_records = u32::try_from(records).unwrap_or(u32::MAX);
        self.produce_bytes = bytes;
    }

    /// Counts this response in the metrics (if on): request, latency, and the
    /// produced or consumed records (`consumed`: records and value bytes returned).
    fn count(&self, code: ErrorCode, consumed: Option<(u64, u64)>) {
        let (Some(m), Some(started)) = (self.sink.metrics.get(), self.started) else {
            return;
        };
        m.record_request(self.api_key, code, started.elapsed());
        if code == ErrorCode::None {
            if self.produce_records > 0 {
                m.add_produced(u64::from(self.produce_records), self.produce_bytes);
            }
            if let Some((records, bytes)) = consumed {
                m.add_consumed(records, bytes);
            }
        }
    }

    /// The correlation id of the request this responder answers.
    pub fn correlation_id(&self) -> u32 {
        self.correlation_id
    }

    /// The API of the request this responder answers.
    pub fn api_key(&self) -> ApiKey {
        self.api_key
    }

    /// Sends the response (encoded for the connection's protocol) to the event loop.
    pub fn respond(mut self, result: Result<ResponseBody, ErrorBody>) {
        self.done = true;
        match &result {
            Ok(ResponseBody::Consume { record }) => {
                self.count(ErrorCode::None, Some((1, record.value.len() as u64)))
            }
            Ok(ResponseBody::Fetch { records, .. }) => self.count(
                ErrorCode::None,
                Some((
                    records.len() as u64,
                    records.iter().map(|r| r.value.len() as u64).sum(),
                )),
            ),
            Ok(_) => self.count(ErrorCode::None, None),
            Err(e) => self.count(e.code, None),
        }
        let denied = matches!(&result, Err(e) if e.code == ErrorCode::PermissionDenied);
        let bytes = encode_for(self.protocol, self.correlation_id, result);
        self.deliver(bytes, denied);
    }

    /// Answers a `Fetch` from borrowed records: binary connections get the frame
    /// encoded straight from `records` (no intermediate copies), text connections
    /// the usual lines.
    pub fn respond_fetch<R: RecordView>(mut self, high_watermark: Offset, records: &[R]) {
        self.done = true;
        self.count(
            ErrorCode::None,
            Some((
                records.len() as u64,
                records.iter().map(|r| r.value().len() as u64).sum(),
            )),
        );
        let bytes = match self.protocol {
            Protocol::Binary => {
                let mut out = Vec::new();
                wire::encode_fetch_response(self.correlation_id, high_watermark, records, &mut out);
                out
            }
            Protocol::Text => {
                let records = records
                    .iter()
                    .map(|r| WireRecord {
                        offset: r.offset(),
                        term: r.term(),
                        kind: r.kind(),
                        value: r.value().to_vec(),
                    })
                    .collect();
                encode_for(
                    Protocol::Text,
                    self.correlation_id,
                    Ok(ResponseBody::Fetch {
                        high_watermark,
                        records,
                    }),
                )
            }
        };
        self.deliver(bytes, false);
    }

    /// A builder for this request's `Fetch` response, for records that are only
    /// borrowed while they are pushed (e.g. straight out of a storage read buffer).
    /// `capacity_hint_bytes` pre-sizes the buffer (record bytes expected).
    /// The builder takes records only while the answer stays within
    /// [`max_response_bytes`](Responder::max_response_bytes) (the first record is
    /// always taken, so a consumer always advances); the rest are left for the
    /// consumer's next Fetch.
    pub fn fetch_builder(&self, capacity_hint_bytes: usize) -> FetchBuilder {
        let limit_bytes = self.max_response_bytes();
        match self.protocol {
            Protocol::Binary => {
                let records_limit = limit_bytes.saturating_sub(FETCH_RESPONSE_PREFIX_BYTES);
                let capacity = capacity_hint_bytes.min(records_limit);
                let mut out = Vec::with_capacity(FETCH_RESPONSE_PREFIX_BYTES + capacity);
                out.resize(FETCH_RESPONSE_PREFIX_BYTES, 0);
                FetchBuilder {
                    out,
                    text: None,
                    count: 0,
                    used_bytes: FETCH_RESPONSE_PREFIX_BYTES,
                    limit_bytes,
                    full: false,
                }
            }
            Protocol::Text => FetchBuilder {
                out: Vec::new(),
                text: Some(Vec::new()),
                count: 0,
                used_bytes: 0,
                limit_bytes,
                full: false,
            },
        }
    }

    /// Answers a `Fetch` with the records pushed into `builder` (made by
    /// [`Responder::fetch_builder`] of this responder).
    pub fn respond_fetch_built(mut self, high_watermark: Offset, builder: FetchBuilder) {
        self.done = true;
        let FetchBuilder {
            mut out,
            text,
            count,
            ..
        } = builder;
        let value_bytes = match &text {
            Some(records) => records.iter().map(|r| r.value.len() as u64).sum(),
            None => out
                .len()
                .saturating_sub(FETCH_RESPONSE_PREFIX_BYTES)
                .saturating_sub(count as usize * wire::RECORD_HEADER_BYTES)
                as u64,
        };
        self.count(ErrorCode::None, Some((u64::from(count), value_bytes)));
        let bytes = match (self.protocol, text) {
            (Protocol::Binary, None) => {
                let records_bytes = out.len() - FETCH_RESPONSE_PREFIX_BYTES;
                let prefix = wire::fetch_response_prefix(
                    self.correlation_id,
                    high_watermark,
                    count,
                    records_bytes,
                );
                out[..FETCH_RESPONSE_PREFIX_BYTES].copy_from_slice(&prefix);
                out
            }
            (_, text) => encode_for(
                self.protocol,
                self.correlation_id,
                Ok(ResponseBody::Fetch {
                    high_watermark,
                    records: text.unwrap_or_default(),
                }),
            ),
        };
        self.deliver(bytes, false);
    }

    /// Shorthand for a successful response.
    pub fn ok(self, body: ResponseBody) {
        self.respond(Ok(body));
    }

    /// Completes the request without writing an answer (a request whose protocol
    /// answers only refusals: RaftBatch v1). The connection's in-flight slot and
    /// memory reservation are released as for an answer.
    pub fn no_answer(mut self) {
        self.done = true;
        self.count(ErrorCode::None, None);
        self.deliver(Vec::new(), false);
    }

    /// Shorthand for an error response without a leader hint.
    pub fn error(self, code: ErrorCode, message: impl Into<String>) {
        self.respond(Err(error_body(code, message)));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.count(ErrorCode::Internal, None);
            log::error!(
                "request {} ({:?}) dropped without a response",
                self.correlation_id,
                self.api_key
            );
            let bytes = encode_for(
                self.protocol,
                self.correlation_id,
                Err(error_body(
                    ErrorCode::Internal,
                    "the server dropped this request; retry it",
                )),
            );
            self.deliver(bytes, false);
        }
    }
}

/// The records of a `Fetch` response being built (see [`Responder::fetch_builder`]):
/// binary connections get the frame encoded as records are pushed (one copy of
/// each value), text connections collect records for their lines.
pub struct FetchBuilder {
    /// Binary: the frame, its prefix patched at the end.
    out: Vec<u8>,
    /// Text: the records.
    text: Option<Vec<WireRecord>>,
    count: u32,
    /// Bytes the answer takes so far (binary: the frame; text: headers + values).
    used_bytes: usize,
    /// The responder's allowance; records past it are not taken.
    limit_bytes: usize,
    /// A record was refused: later ones are refused too, so the answer stays a
    /// contiguous run of the log.
    full: bool,
}

impl FetchBuilder {
    /// Appends one record, unless it would take the answer past the responder's
    /// allowance (the first record is always taken; after a refusal, every later
    /// record is refused).
    ///
    /// # Panics
    /// After `u32::MAX` records or a value over 4 GiB (both far beyond any frame).
    pub fn push(&mut self, offset: Offset, term: Term, kind: RecordKind, value: &[u8]) {
        let size = wire::RECORD_HEADER_BYTES.saturating_add(value.len());
        if self.full || (self.count > 0 && self.used_bytes.saturating_add(size) > self.limit_bytes)
        {
            self.full = true;
            return;
        }
        self.used_bytes = self.used_bytes.saturating_add(size);
        self.count = self
            .count
            .checked_add(1)
            .unwrap_or_else(|| panic!("more than u32::MAX records in one Fetch response"));
        match &mut self.text {
            None => {
                let len = u32::try_from(value.len())
                    .unwrap_or_else(|_| panic!("a record value over 4 GiB"));
                self.out
                    .extend_from_slice(&wire::record_header(offset, term, kind, len));
                self.out.extend_from_slice(value);
            }
            Some(records) => records.push(WireRecord {
                offset,
                term,
                kind,
                value: value.to_vec(),
            }),
        }
    }

    /// Records taken so far (pushes refused for the allowance are not counted).
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// Builds an [`ErrorBody`] without a leader hint.
pub fn error_body(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

/// Room for a whole Produce / ProduceBatch / Ping answer or a short error (a produce
/// answer is 18-22 bytes): one allocation instead of growing 8 → 16 → 32 bytes, on
/// the raft thread, once per answered produce.
const SMALL_RESPONSE_BYTES: usize = 64;

/// Encodes a response for `protocol`: a binary frame, or one or more text lines.
pub(crate) fn encode_for(
    protocol: Protocol,
    correlation_id: u32,
    result: Result<ResponseBody, ErrorBody>,
) -> Vec<u8> {
    match protocol {
        Protocol::Binary => {
            let mut out = Vec::with_capacity(SMALL_RESPONSE_BYTES);
            wire::encode_response(
                &ResponseFrame {
                    correlation_id,
                    result,
                },
                &mut out,
            );
            out
        }
        Protocol::Text => {
            let mut out = Vec::new();
            wire::text::format_response(&result, &mut out);
            out
        }
    }
}

#[cfg(all(test, commitlog_loom))]
mod loom_tests {
    use super::WakeFlag;
    use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

    /// A completion queued by another thread is either drained by the loop's current
    /// iteration or followed by a wake that starts another one: never stranded.
    #[test]
    fn loom_completion_is_never_stranded() {
        loom::model(|| {
            let flag = Arc::new(WakeFlag::new());
            let queue = Arc::new(Mutex::new(Vec::<u32>::new()));
            let wakes = Arc::new(AtomicU64::new(0));
            let producer = {
                let (flag, queue, wakes) = (flag.clone(), queue.clone(), wakes.clone());
                loom::thread::spawn(move || {
                    queue.lock().unwrap().push(1);
                    if flag.should_wake() {
                        wakes.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            // One loop iteration: note the wakes it answers, clear, drain.
            let wakes_before = wakes.load(Ordering::SeqCst);
            flag.clear();
            let drained = std::mem::take(&mut *queue.lock().unwrap());
            producer.join().unwrap();
            let stranded = drained.is_empty() && !queue.lock().unwrap().is_empty();
            if stranded {
                assert!(
                    wakes.load(Ordering::SeqCst) > wakes_before,
                    "completion queued with no wake to come"
                );
            }
        });
    }
}
