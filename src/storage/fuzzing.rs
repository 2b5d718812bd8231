//! Property checks over what is read from disk, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/{record_format,index_slots,log_recovery,node_meta}.rs`) and the
//! corpus replay test (`tests/fuzz_corpus_replay.rs`), so both check the same thing.
//! Like `wire::fuzzing`, each function panics when a property fails (the fuzzer
//! reports panics) and must never panic for any other reason.
//!
//! The node metadata files (`node::meta`) are checked here too: they are on-disk
//! formats like the store and the index, and this keeps every disk check in one place.
//!
//! Every decode goes through an [`AllocationProbe`], so a fuzz binary with a counting
//! allocator can assert that it allocates at most [`decode_budget_bytes`] for its
//! input (the replay test passes [`NoProbe`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{decode_slot, encode_slot, SLOT_BYTES};
use super::record::{encode_into, parse_frame, to_record, Frame, NewRecord, RECORD_HEADER_BYTES};
use super::{DamagedRange, Log, LogConfig, Offset, RebuildError, ReplicaRecovery, StorageError};
use crate::node::meta;

/// Runs each decode of the checks, so a caller can measure what it allocates.
pub trait AllocationProbe {
    /// Runs `decode`, which reads `input_bytes` bytes of untrusted data and may
    /// allocate at most `max_bytes` (see [`decode_budget_bytes`]).
    fn decode(
        &self,
        what: &'static str,
        input_bytes: usize,
        max_bytes: usize,
        decode: &mut dyn FnMut(),
    );
}

/// A probe that only runs the decode.
pub struct NoProbe;

impl AllocationProbe for NoProbe {
    fn decode(&self, _: &'static str, _: usize, _: usize, decode: &mut dyn FnMut()) {
        decode();
    }
}

/// What decoding `input_bytes` of disk data may allocate at its peak: the decoders
/// size every buffer from the bytes actually present (a value copy, a scan buffer
/// no larger than the file, a slot per record), so four times the input plus a
/// fixed amount for paths, maps and log lines.
pub fn decode_budget_bytes(input_bytes: usize) -> usize {
    input_bytes.saturating_mul(4).saturating_add(64 * 1024)
}

/// Runs `f` through `probe` and returns its result.
fn probed<T>(
    probe: &dyn AllocationProbe,
    what: &'static str,
    input_bytes: usize,
    f: impl FnOnce() -> T,
) -> T {
    let mut f = Some(f);
    let mut out = None;
    probe.decode(
        what,
        input_bytes,
        decode_budget_bytes(input_bytes),
        &mut || {
            out = f.take().map(|f| f());
        },
    );
    match out {
        Some(out) => out,
        None => panic!("the allocation probe did not run the {what} decode"),
    }
}

/// A scratch directory for one check (on tmpfs when there is one: fuzzing writes
/// and fsyncs files at every input), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = root.join(format!(
            "commitlog-fuzz-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("cannot create scratch dir {}: {e}", path.display());
        }
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    if let Err(e) = fs::write(path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
}

fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------
// Record format
// ---------------------------------------------------------------------------------

/// The encoding of a record, crc included.
fn encode_record(offset: u64, term: u64, kind: crate::types::RecordKind, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + value.len());
    let record = NewRecord {
        term: crate::types::Term(term),
        kind,
        value,
    };
    encode_into(&mut out, offset, &record);
    out
}

/// `data` with the crc field of its first record recomputed (when the header and
/// the value its length field announces are all there), so the fuzzer gets past
/// the checksum to the fields behind it.
pub fn with_record_crc_fixed(data: &[u8]) -> Option<Vec<u8>> {
    let len_field: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let total = RECORD_HEADER_BYTES.checked_add(u32::from_le_bytes(len_field) as usize)?;
    let body = data.get(4..total)?;
    let mut fixed = data.to_vec();
    fixed[..4].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    Some(fixed)
}

/// Parses `data` as the record at a store position (for several "bytes left in the
/// store" values), then as a whole store, record after record. Checks: no panic; a
/// valid record has a good checksum and re-encodes to exactly its bytes; "need more
/// bytes" never asks for more than the store has left, nor for bytes already there.
/// The same again with the first record's crc recomputed.
pub fn check_record_format(data: &[u8]) {
    check_record_format_probed(data, &NoProbe);
}

/// [`check_record_format`], decoding through `probe`.
pub fn check_record_format_probed(data: &[u8], probe: &dyn AllocationProbe) {
    check_record_bytes(data, probe);
    if let Some(fixed) = with_record_crc_fixed(data) {
        check_record_bytes(&fixed, probe);
    }
}

fn check_record_bytes(data: &[u8], probe: &dyn AllocationProbe) {
    let len = data.len() as u64;
    for bytes_left in [len, len / 2, len + 1, len + 4096, u64::MAX] {
        check_one_frame(data, bytes_left, probe);
    }
    // A whole store: the bytes left are exactly the bytes there, so "short" is
    // impossible; walk record after record (each consumes at least a header).
    let mut position = 0usize;
    while position < data.len() {
        let rest = &data[position..];
        match parse_frame(rest, rest.len() as u64) {
            Frame::Valid(header) => position += check_valid(rest, &header, probe),
            Frame::Short { needed_bytes } => {
                panic!("short ({needed_bytes} bytes) although the store ends at the buffer end")
            }
            Frame::Invalid { .. } => break,
        }
    }
}

fn check_one_frame(data: &[u8], bytes_left: u64, probe: &dyn AllocationProbe) {
    match parse_frame(data, bytes_left) {
        Frame::Valid(header) => {
            assert!(
                header.total_bytes() <= bytes_left,
                "record past the store end"
            );
            check_valid(data, &header, probe);
        }
        Frame::Short { needed_bytes } => {
            assert!(
                needed_bytes <= bytes_left,
                "asks for {needed_bytes} bytes with {bytes_left} left in the store"
            );
            assert!(
                needed_bytes > data.len() as u64,
                "asks for {needed_bytes} bytes with {} already buffered",
                data.len()
            );
        }
        Frame::Invalid { value_len, .. } => {
            if let Some(value_len) = value_len {
                assert_eq!(data.get(4..8), Some(&value_len.to_le_bytes()[..]));
            }
        }
    }
}

/// Checks a record `parse_frame` accepted at `data[0]`; returns its size.
fn check_valid(data: &[u8], header: &super::record::Header, probe: &dyn AllocationProbe) -> usize {
    let total = header.total_bytes() as usize;
    assert!(total <= data.len(), "valid record longer than the buffer");
    let frame = &data[..total];
    let stored_crc = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(
        crc32c::crc32c(&frame[4..]),
        stored_crc,
        "record with a bad checksum accepted"
    );
    let record = probed(probe, "record", total, || to_record(header, frame));
    assert_eq!(record.value.len(), header.value_len as usize);
    let again = encode_record(record.offset.0, record.term.0, record.kind, &record.value);
    assert_eq!(again, frame, "record does not re-encode to its bytes");
    total
}

// ---------------------------------------------------------------------------------
// Index slots
// ---------------------------------------------------------------------------------

/// Decodes `data` as an index file, slot after slot, then again with each slot's
/// relative offset rewritten to its slot number (so it decodes). Checks: no panic;
/// a slot decodes exactly when it holds its own slot number; a decoded slot
/// re-encodes to exactly its 8 bytes.
pub fn check_index_slots(data: &[u8]) {
    check_index_slots_probed(data, &NoProbe);
}

/// [`check_index_slots`], decoding through `probe`.
pub fn check_index_slots_probed(data: &[u8], probe: &dyn AllocationProbe) {
    let slots = probed(probe, "index slots", data.len(), || decode_slots(data));
    check_slots(data, &slots);
    let mut fixed = data.to_vec();
    for (slot, chunk) in fixed.chunks_exact_mut(SLOT_BYTES as usize).enumerate() {
        // Slots past u32::MAX cannot occur in an index file of fuzz size.
        chunk[..4].copy_from_slice(&(slot as u32).to_le_bytes());
    }
    let slots = probed(probe, "index slots", fixed.len(), || decode_slots(&fixed));
    assert!(
        slots.iter().all(Result::is_ok),
        "a slot holding its own number is refused"
    );
    check_slots(&fixed, &slots);
}

fn decode_slots(data: &[u8]) -> Vec<Result<u64, &'static str>> {
    data.chunks_exact(SLOT_BYTES as usize)
        .enumerate()
        .map(|(slot, chunk)| decode_slot(slot_value(chunk), slot as u64))
        .collect()
}

fn slot_value(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; SLOT_BYTES as usize];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

fn check_slots(data: &[u8], slots: &[Result<u64, &'static str>]) {
    assert_eq!(slots.len(), data.len() / SLOT_BYTES as usize);
    for (slot, (chunk, decoded)) in data
        .chunks_exact(SLOT_BYTES as usize)
        .zip(slots)
        .enumerate()
    {
        let relative = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        match decoded {
            Ok(position) => {
                assert_eq!(
                    relative as usize, slot,
                    "slot {slot} decoded with another number"
                );
                let position = u32::try_from(*position)
                    .unwrap_or_else(|_| panic!("slot {slot}: position {position} over u32"));
                let again = encode_slot(relative, position).to_le_bytes();
                assert_eq!(
                    &again[..],
                    chunk,
                    "slot {slot} does not re-encode to its bytes"
                );
            }
            Err(_) => assert_ne!(
                relative as usize, slot,
                "slot {slot} refused its own number"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------
// Log open / recovery
// ---------------------------------------------------------------------------------

/// Names an extra, non-segment file of the fuzzed directory may get (chosen by the
/// first byte of the extra file's bytes). The storage checkpoint file, once the log
/// has one, belongs in this list.
pub const EXTRA_FILE_NAMES: &[&str] = &[
    "LOCK",
    "00000000000000000000.index.tmp",
    "00000000000000000000.store.tmp",
    "notes.txt",
];

/// Flag bits of a [`LogInput`] (its first byte; the low two bits are the segment
/// count minus one).
pub mod flags {
    /// Rewrite every store: each record framed by its length field gets offset
    /// `base + i` and a recomputed crc (kind and reserved bytes are left as fuzzed).
    pub const FIX_RECORDS: u8 = 1 << 2;
    /// Replace every index by the slots of the records framed in its store.
    pub const DERIVE_INDEX: u8 = 1 << 3;
    /// Append one zero slot to every index (an active, unsynced-looking index).
    pub const PAD_INDEX: u8 = 1 << 4;
    /// A segment's base is the previous base plus the previous record count
    /// (instead of plus the fuzzed delta byte).
    pub const CHAIN_BASES: u8 = 1 << 5;
    /// Also run `Log::open_and_repair`.
    pub const REPAIR: u8 = 1 << 6;
    /// Append a record to the opened log and check a reopen returns it.
    pub const APPEND: u8 = 1 << 7;
}

/// One segment's files as written to the directory (`None`: file absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFiles {
    /// Base offset (the file names).
    pub base: u64,
    /// The `.store` file.
    pub store: Option<Vec<u8>>,
    /// The `.index` file.
    pub index: Option<Vec<u8>>,
}

/// A log directory decoded from fuzz bytes. Layout of the bytes:
///
/// ```text
/// byte 0      flags: bits 0-1 segment count - 1, the rest see [`flags`]
/// byte 1      bits 0-5 index capacity - 1 (1..=64 slots), bits 6-7 initial offset
/// bytes 2..10 base of the first segment, u64 LE
/// per segment: u8 base delta (ignored for the first), u8 presence (bit 0 store,
///             bit 1 index), u16 LE store length, u16 LE index length, the store
///             bytes, the index bytes (lengths cut to what is left)
/// the rest    an extra file named by its first byte (see [`EXTRA_FILE_NAMES`])
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogInput {
    /// Flag byte ([`flags`]).
    pub flags: u8,
    /// Index capacity and initial offset.
    pub config_byte: u8,
    /// The segments, in input order (bases need not increase; a later segment
    /// with the same base replaces an earlier one's files).
    pub segments: Vec<SegmentFiles>,
    /// The extra file's bytes (name byte first), if any.
    pub extra: Vec<u8>,
}

/// A bounds-checked cursor over fuzz bytes; past the end it yields zeros / empty.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> usize {
        let b = self.take(2);
        usize::from(b.first().copied().unwrap_or(0))
            | usize::from(b.get(1).copied().unwrap_or(0)) << 8
    }
    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        let b = self.take(8);
        bytes[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(bytes)
    }
}

impl LogInput {
    /// Decodes fuzz bytes (any bytes are a valid input).
    pub fn parse(data: &[u8]) -> LogInput {
        let mut c = Cursor(data);
        let bits = c.u8();
        let config_byte = c.u8();
        let mut base = c.u64();
        let mut segments = Vec::new();
        for i in 0..=(bits & 3) {
            let delta = c.u8();
            let presence = c.u8();
            let (store_len, index_len) = (c.u16(), c.u16());
            let store = c.take(store_len).to_vec();
            let index = c.take(index_len).to_vec();
            if i > 0 {
                let step = match segments.last() {
                    Some(prev) if bits & flags::CHAIN_BASES != 0 => framed_records(prev),
                    _ => u64::from(delta),
                };
                let Some(next) = base.checked_add(step) else {
                    break;
                };
                base = next;
            }
            let mut segment = SegmentFiles {
                base,
                store: (presence & 1 != 0).then_some(store),
                index: (presence & 2 != 0).then_some(index),
            };
            rewrite_segment(&mut segment, bits);
            segments.push(segment);
        }
        LogInput {
            flags: bits,
            config_byte,
            segments,
            extra: c.0.to_vec(),
        }
    }

    /// Encodes back to fuzz bytes (for the seed generator): the files as they are,
    /// with no rewriting flags, bases as deltas.
    pub fn to_bytes(&self) -> Vec<u8> {
        let keep = flags::REPAIR | flags::APPEND;
        let count = self.segments.len().clamp(1, 4) as u8;
        let mut out = vec![(self.flags & keep) | (count - 1), self.config_byte];
        let first = self.segments.first().map_or(0, |s| s.base);
        out.extend_from_slice(&first.to_le_bytes());
        let mut prev = first;
        for s in self.segments.iter().take(4) {
            let delta = u8::try_from(s.base.wrapping_sub(prev)).unwrap_or(u8::MAX);
            prev = s.base;
            let store = s.store.as_deref().unwrap_or_default();
            let index = s.index.as_deref().unwrap_or_default();
            let presence = u8::from(s.store.is_some()) | u8::from(s.index.is_some()) << 1;
            out.extend_from_slice(&[delta, presence]);
            out.extend_from_slice(&(store.len().min(0xffff) as u16).to_le_bytes());
            out.extend_from_slice(&(index.len().min(0xffff) as u16).to_le_bytes());
            out.extend_from_slice(&store[..store.len().min(0xffff)]);
            out.extend_from_slice(&index[..index.len().min(0xffff)]);
        }
        out.extend_from_slice(&self.extra);
        out
    }

    /// The log configuration the input selects.
    pub fn config(&self) -> LogConfig {
        LogConfig {
            max_store_bytes: 64 * 1024,
            max_index_bytes: (u64::from(self.config_byte & 0x3f) + 1) * SLOT_BYTES,
            initial_offset: Offset(u64::from(self.config_byte >> 6)),
            ..LogConfig::default()
        }
    }

    /// Writes the files into `dir` (which exists).
    pub fn write_to(&self, dir: &Path) {
        for s in &self.segments {
            if let Some(store) = &s.store {
                write_file(&super::segment::store_path(dir, s.base), store);
            }
            if let Some(index) = &s.index {
                write_file(&super::segment::index_path(dir, s.base), index);
            }
        }
        if let Some((&name, bytes)) = self.extra.split_first() {
            let name = EXTRA_FILE_NAMES[usize::from(name) % EXTRA_FILE_NAMES.len()];
            write_file(&dir.join(name), bytes);
        }
    }

    /// Total bytes of the files [`LogInput::write_to`] writes.
    pub fn file_bytes(&self) -> usize {
        let segments: usize = self
            .segments
            .iter()
            .map(|s| s.store.as_ref().map_or(0, Vec::len) + s.index.as_ref().map_or(0, Vec::len))
            .sum();
        segments + self.extra.len()
    }

    /// The store bytes of every segment (a returned record must be in one of them).
    fn stores(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().filter_map(|s| s.store.as_deref())
    }
}

/// Start positions of the records framed by their length fields in `store` (valid
/// or not), stopping at the first length that runs past the end.
fn frame_positions(store: &[u8]) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut at = 0usize;
    while let Some(len_field) = store.get(at + 4..at + 8) {
        let value_len =
            u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]);
        let end = at + RECORD_HEADER_BYTES + value_len as usize;
        if end > store.len() {
            break;
        }
        positions.push(at);
        at = end;
    }
    positions
}

fn framed_records(segment: &SegmentFiles) -> u64 {
    segment
        .store
        .as_deref()
        .map_or(0, |s| frame_positions(s).len() as u64)
}

/// Applies the rewriting flags to one segment's files.
fn rewrite_segment(segment: &mut SegmentFiles, bits: u8) {
    let positions = segment
        .store
        .as_deref()
        .map(frame_positions)
        .unwrap_or_default();
    if let (Some(store), true) = (&mut segment.store, bits & flags::FIX_RECORDS != 0) {
        for (i, &at) in positions.iter().enumerate() {
            let offset = segment.base.wrapping_add(i as u64);
            store[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            let len_field = [store[at + 4], store[at + 5], store[at + 6], store[at + 7]];
            let end = at + RECORD_HEADER_BYTES + u32::from_le_bytes(len_field) as usize;
            let crc = crc32c::crc32c(&store[at + 4..end]);
            store[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    if bits & flags::DERIVE_INDEX != 0 {
        let mut index = Vec::with_capacity(positions.len() * SLOT_BYTES as usize);
        for (slot, &at) in positions.iter().enumerate() {
            index.extend_from_slice(&encode_slot(slot as u32, at as u32).to_le_bytes());
        }
        segment.index = Some(index);
    }
    if let (Some(index), true) = (&mut segment.index, bits & flags::PAD_INDEX != 0) {
        index.extend_from_slice(&[0u8; SLOT_BYTES as usize]);
    }
}

/// What an opened log shows: its offsets and each record's encoding (`None`: the
/// read failed with `Corrupt`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogState {
    first: u64,
    next: u64,
    records: Vec<Option<Vec<u8>>>,
}

/// The record [`flags::APPEND`] appends.
const APPENDED_VALUE: &[u8] = b"appended after recovery";
const APPENDED_TERM: u64 = 7;

/// Writes the directory `data` describes (see [`LogInput`]), opens it with
/// `Log::open` twice (and `Log::open_and_repair` if asked). Checks: no panic; the
/// log claims no more records than its files can hold; every record it returns has
/// a good checksum, the offset asked for, and bytes that are in one of the store
/// files; single and range reads agree; a failed strict open fails again (it did
/// not cut anything); a second open shows the same state as the first; repair
/// changes nothing a strict open accepted; an appended record survives a reopen.
pub fn check_log_recovery(data: &[u8]) {
    check_log_recovery_probed(data, &NoProbe);
}

/// [`check_log_recovery`], opening through `probe`.
pub fn check_log_recovery_probed(data: &[u8], probe: &dyn AllocationProbe) {
    let input = LogInput::parse(data);
    let scratch = Scratch::new("log");
    let dir = scratch.path().join("log");
    if let Err(e) = fs::create_dir(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    input.write_to(&dir);
    let first = open_and_capture(&dir, &input, false, probe);
    let second = open_and_capture(&dir, &input, false, probe);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "a second open shows another log"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("open gave {a:?}, the next open {b:?}"),
    }
    if input.flags & flags::REPAIR != 0 {
        check_replica(scratch.path(), &input, first.as_ref().ok(), probe);
    }
    let mut current = first.ok();
    if input.flags & flags::REPAIR != 0 {
        let repaired = open_and_capture(&dir, &input, true, probe);
        if let (Some(strict), Ok(repaired)) = (&current, &repaired) {
            assert_eq!(
                strict, repaired,
                "repair changed a log a strict open accepted"
            );
        }
        if let Ok(repaired) = repaired {
            let again = open_and_capture(&dir, &input, false, probe);
            assert_eq!(
                again.as_ref().ok(),
                Some(&repaired),
                "strict open after repair"
            );
            current = Some(repaired);
        }
    }
    if let (Some(state), true) = (current, input.flags & flags::APPEND != 0) {
        check_append(&dir, &input, state, probe);
    }
}

/// Opens the log (through the probe), captures its state, closes it by dropping.
fn open_and_capture(
    dir: &Path,
    input: &LogInput,
    repair: bool,
    probe: &dyn AllocationProbe,
) -> Result<LogState, String> {
    let config = input.config();
    let opened = probed(probe, "Log::open", input.file_bytes(), || {
        if repair {
            Log::open_and_repair(dir, config).map(|(log, _cut)| log)
        } else {
            Log::open(dir, config)
        }
    });
    match opened {
        Ok(log) => Ok(capture(&log, input, &[])),
        Err(e @ StorageError::Corrupt { .. }) => Err(e.to_string()),
        Err(e) => panic!("opening the log failed with {e} (only Corrupt is expected)"),
    }
}

/// Reads every offset of `log` one by one and as one range and checks them;
/// `appended` are encodings of records this check appended (not in any input file).
fn capture(log: &Log, input: &LogInput, appended: &[Vec<u8>]) -> LogState {
    let (first, next) = (log.first_offset().0, log.next_offset().0);
    assert!(first <= next, "first offset {first} past next {next}");
    assert_eq!(log.last_offset(), (next > first).then(|| Offset(next - 1)));
    // Every offset needs at least an 8-byte index slot or a 28-byte record.
    let max_records = input.file_bytes() as u64 / SLOT_BYTES + appended.len() as u64;
    assert!(
        next - first <= max_records,
        "log claims {} records in {} bytes of files",
        next - first,
        input.file_bytes()
    );
    let on_disk = |bytes: &[u8]| {
        appended.iter().any(|a| a == bytes) || input.stores().any(|s| contains(s, bytes))
    };
    let mut records = Vec::new();
    for offset in first..next {
        records.push(read_one(log, offset, &on_disk));
    }
    check_range_read(log, first, &records, &on_disk);
    LogState {
        first,
        next,
        records,
    }
}

fn read_one(log: &Log, offset: u64, on_disk: &dyn Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    match log.read(Offset(offset)) {
        Ok(record) => {
            assert_eq!(
                record.offset.0, offset,
                "read {offset} returned another offset"
            );
            let bytes = encode_record(offset, record.term.0, record.kind, &record.value);
            assert!(
                on_disk(&bytes),
                "record {offset} is in no store file with a good checksum"
            );
            Some(bytes)
        }
        Err(StorageError::Corrupt { .. } | StorageError::CorruptRecord { .. }) => None,
        Err(e) => panic!("reading {offset} failed with {e} (only Corrupt is expected)"),
    }
}

/// A range read of the whole log fails, or returns a prefix of the offsets in order
/// (it stops before a damaged record), each the record the single read returned. A single read may fail where the
/// range read succeeds: it looks the record up in the index, which the range read
/// consults only for its first record (a damaged slot of an intact record).
fn check_range_read(
    log: &Log,
    first: u64,
    records: &[Option<Vec<u8>>],
    on_disk: &dyn Fn(&[u8]) -> bool,
) {
    let range = match log.read_range(Offset(first), u64::MAX) {
        Ok(range) => range,
        Err(StorageError::Corrupt { .. } | StorageError::CorruptRecord { .. }) => return,
        Err(e) => panic!("range read failed with {e} (only Corrupt is expected)"),
    };
    // A range read stops before a damaged record (it returns what precedes it, and
    // the read that starts at the damage gets the error): a prefix, never more.
    assert!(
        range.len() <= records.len(),
        "range read longer than the log"
    );
    if range.len() < records.len() {
        let at = first + range.len() as u64;
        assert!(
            log.read_range(Offset(at), u64::MAX).is_err() || records[range.len()].is_none(),
            "range read stopped before {at}, which reads back intact"
        );
    }
    for (i, (record, single)) in range.iter().zip(records).enumerate() {
        let offset = first + i as u64;
        let bytes = encode_record(record.offset.0, record.term.0, record.kind, &record.value);
        assert_eq!(
            record.offset.0, offset,
            "range read skipped or repeated an offset"
        );
        match single {
            Some(single) => assert_eq!(
                &bytes, single,
                "range and single reads of {offset} disagree"
            ),
            None => assert!(
                on_disk(&bytes),
                "range read of {offset} is in no store file"
            ),
        }
    }
}

/// `needle` occurs in `haystack` (candidates found by the leading crc bytes).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(head) = needle.get(..4) else {
        return false;
    };
    haystack
        .windows(needle.len())
        .any(|w| &w[..4] == head && w == needle)
}

/// `Log::open_for_replica` (with [`flags::REPAIR`]) on a fresh copy of the files.
/// Checks: no panic; only `Corrupt` refuses it; the damaged ranges lie inside
/// the log and `damaged_ranges` lists them; a log a strict open accepted shows
/// the same state; every record read outside the damaged ranges is one of the
/// files' (within a damaged range a read returns such a record or
/// `CorruptRecord`); a second replica open cuts nothing and shows the same
/// ranges and records; rebuilding every sealed segment from its own intact
/// records (nothing supplied) either refuses with `Incomplete` or works, and
/// never changes a record that read back before.
fn check_replica(
    root: &Path,
    input: &LogInput,
    strict: Option<&LogState>,
    probe: &dyn AllocationProbe,
) {
    let dir = root.join("replica");
    if let Err(e) = fs::create_dir(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    input.write_to(&dir);
    let Some((log, recovery)) = open_replica(&dir, input, probe) else {
        return;
    };
    assert_eq!(log.damaged_ranges(), recovery.damaged);
    if let Some(strict) = strict {
        let state = capture(&log, input, &[]);
        assert_eq!(
            &state, strict,
            "a replica open changed a log a strict open accepted"
        );
    }
    let before = sparse_capture(&log, input, &recovery.damaged);
    drop(log);
    let Some((log, again)) = open_replica(&dir, input, probe) else {
        panic!("a second replica open failed");
    };
    assert_eq!(again.cut, None, "a second replica open cut again");
    assert_eq!(spans(&again.damaged), spans(&recovery.damaged));
    assert_eq!(
        sparse_capture(&log, input, &again.damaged),
        before,
        "a second replica open shows another log"
    );
    for (base, _, _) in log.sealed_segments() {
        match log.rebuild_sealed(Offset(base), &[]) {
            Ok(_)
            | Err(RebuildError::Incomplete { .. })
            | Err(RebuildError::Storage(StorageError::Corrupt { .. })) => {}
            Err(e) => panic!("rebuilding segment {base} from itself failed: {e}"),
        }
    }
    let after = sparse_capture(&log, input, &log.damaged_ranges());
    assert_eq!((after.0, after.1), (before.0, before.1));
    for (offset, record) in &before.2 {
        if record.is_some() {
            assert_eq!(
                after.2.get(offset),
                Some(record),
                "rebuild changed record {offset}"
            );
        }
    }
}

fn open_replica(
    dir: &Path,
    input: &LogInput,
    probe: &dyn AllocationProbe,
) -> Option<(Log, ReplicaRecovery)> {
    let config = input.config();
    let opened = probed(probe, "Log::open", input.file_bytes(), || {
        Log::open_for_replica(dir, config)
    });
    match opened {
        Ok(opened) => Some(opened),
        Err(StorageError::Corrupt { .. }) => None,
        Err(e) => panic!("a replica open failed with {e} (only Corrupt is expected)"),
    }
}

fn spans(damaged: &[DamagedRange]) -> Vec<(u64, u64, u64, u64)> {
    damaged
        .iter()
        .map(|d| (d.segment.0, d.first.0, d.end.0, d.segment_end.0))
        .collect()
}

/// First and next offset, and what each offset outside the damaged ranges reads
/// as (checked like [`capture`] does). Only two offsets of each damaged range are
/// read (a quarantined range need not be backed by any file bytes).
fn sparse_capture(
    log: &Log,
    input: &LogInput,
    damaged: &[DamagedRange],
) -> (u64, u64, BTreeMap<u64, Option<Vec<u8>>>) {
    let (first, next) = (log.first_offset().0, log.next_offset().0);
    assert!(first <= next, "first offset {first} past next {next}");
    for d in damaged {
        let (s, f, e, se) = (d.segment.0, d.first.0, d.end.0, d.segment_end.0);
        assert!(
            first <= s && s <= f && f <= e && e <= se && se <= next,
            "{d:?}"
        );
    }
    let max_records = input.file_bytes() as u64 / SLOT_BYTES;
    let on_disk = |bytes: &[u8]| input.stores().any(|s| contains(s, bytes));
    let mut records = BTreeMap::new();
    let mut offset = first;
    // Bounded: each iteration reads one backed offset (at most `max_records`) or
    // skips a damaged range.
    while offset < next {
        if let Some(d) = damaged
            .iter()
            .find(|d| d.first.0 <= offset && offset < d.end.0)
        {
            for o in [d.first.0, d.end.0 - 1] {
                match log.read(Offset(o)) {
                    Ok(_) => assert!(read_one(log, o, &on_disk).is_some()),
                    Err(StorageError::CorruptRecord { offset: at, .. }) => assert_eq!(at.0, o),
                    Err(e) => panic!("reading damaged {o} failed with {e}"),
                }
            }
            offset = d.end.0;
            continue;
        }
        records.insert(offset, read_one(log, offset, &on_disk));
        assert!(
            records.len() as u64 <= max_records,
            "log claims more records outside its damaged ranges than its files hold"
        );
        offset += 1;
    }
    (first, next, records)
}

/// Appends one record to the log in `dir` (whose state is `before`), syncs, and
/// checks a reopen shows `before` plus that record.
fn check_append(dir: &Path, input: &LogInput, before: LogState, probe: &dyn AllocationProbe) {
    let log = match Log::open(dir, input.config()) {
        Ok(log) => log,
        Err(e) => panic!("reopening a log that opened before failed: {e}"),
    };
    let record = NewRecord {
        term: crate::types::Term(APPENDED_TERM),
        kind: crate::types::RecordKind::Data,
        value: APPENDED_VALUE,
    };
    match log
        .append(record)
        .and_then(|offset| log.sync().map(|_| offset))
    {
        Ok(offset) => assert_eq!(offset.0, before.next, "append got another offset"),
        Err(StorageError::InvalidConfig { .. }) if before.next.checked_add(1).is_none() => return,
        Err(e) => panic!("appending to a recovered log failed: {e}"),
    }
    drop(log);
    let appended = encode_record(before.next, APPENDED_TERM, record.kind, APPENDED_VALUE);
    let mut expected = before;
    expected.next += 1;
    expected.records.push(Some(appended.clone()));
    let config = input.config();
    let reopened = probed(
        probe,
        "Log::open",
        input.file_bytes() + appended.len(),
        || Log::open(dir, config),
    );
    let state = match reopened {
        Ok(log) => capture(&log, input, &[appended]),
        Err(e) => panic!("reopening after an append failed: {e}"),
    };
    assert_eq!(
        state, expected,
        "the appended record did not survive a reopen"
    );
}

// ---------------------------------------------------------------------------------
// Node metadata files
// ---------------------------------------------------------------------------------

/// Header bytes of a metadata file (magic, version, kind, payload length) and its
/// trailing crc (layout in the module doc of `node::meta`).
const META_HEADER_BYTES: usize = 10;
const META_CRC_BYTES: usize = 4;

/// `data` with a metadata file's length field set to the payload it holds and its
/// crc recomputed, so the fuzzer gets past both to the payload decoders.
pub fn with_meta_framing_fixed(data: &[u8]) -> Option<Vec<u8>> {
    let payload = data.len().checked_sub(META_HEADER_BYTES + META_CRC_BYTES)?;
    let mut fixed = data.to_vec();
    fixed[6..10].copy_from_slice(&u32::try_from(payload).ok()?.to_be_bytes());
    let end = META_HEADER_BYTES + payload;
    let crc = crc32c::crc32c(&fixed[5..end]);
    fixed[end..].copy_from_slice(&crc.to_be_bytes());
    Some(fixed)
}

/// Writes `data` as each node metadata file (identity, hard state, log start,
/// gossip seeds) and reads them with the `node::meta` readers, then the same with
/// the framing fixed ([`with_meta_framing_fixed`]). Checks: no panic; a file that
/// does not decode is `Corrupt` naming the file; a decoded identity, hard state or
/// log start re-encodes to exactly the file's bytes; decoded seeds survive a
/// write and a read.
pub fn check_node_meta(data: &[u8]) {
    check_node_meta_probed(data, &NoProbe);
}

/// [`check_node_meta`], decoding through `probe`.
pub fn check_node_meta_probed(data: &[u8], probe: &dyn AllocationProbe) {
    let scratch = Scratch::new("meta");
    check_meta_files(scratch.path(), data, probe);
    if let Some(fixed) = with_meta_framing_fixed(data) {
        check_meta_files(scratch.path(), &fixed, probe);
    }
}

fn check_meta_files(root: &Path, data: &[u8], probe: &dyn AllocationProbe) {
    let dir = root.join("in");
    let out = root.join("out");
    for d in [&dir, &out] {
        let _ = fs::remove_dir_all(d);
        if let Err(e) = fs::create_dir(d) {
            panic!("cannot create {}: {e}", d.display());
        }
    }
    for name in [
        meta::IDENTITY_FILE,
        meta::HARD_STATE_FILE,
        meta::LOG_START_FILE,
        meta::SEEDS_FILE,
    ] {
        write_file(&dir.join(name), data);
    }
    let n = data.len();
    let identity = probed(probe, "read_identity", n, || meta::read_identity(&dir));
    if let Some(id) = decoded(identity, meta::IDENTITY_FILE) {
        expect_ok(meta::write_identity(&out, &id));
        assert_meta_file_eq(&out, meta::IDENTITY_FILE, data);
    }
    let hard_state = probed(probe, "read_hard_state", n, || meta::read_hard_state(&dir));
    if let Some(hs) = decoded(hard_state, meta::HARD_STATE_FILE) {
        expect_ok(meta::write_hard_state(&out, &hs));
        assert_meta_file_eq(&out, meta::HARD_STATE_FILE, data);
    }
    let log_start = probed(probe, "read_log_start", n, || meta::read_log_start(&dir));
    if let Some(start) = decoded(log_start, meta::LOG_START_FILE) {
        expect_ok(meta::write_log_start(&out, &start));
        assert_meta_file_eq(&out, meta::LOG_START_FILE, data);
    }
    let seeds = probed(probe, "read_seeds", n, || meta::read_seeds(&dir));
    if let Some(seeds) = decoded(seeds.map(Some), meta::SEEDS_FILE) {
        assert!(seeds.len() <= meta::MAX_SEEDS, "{} seeds", seeds.len());
        expect_ok(meta::write_seeds(&out, &seeds));
        let again = meta::read_seeds(&out).map_err(|e| e.to_string());
        assert_eq!(
            again.as_ref(),
            Ok(&seeds),
            "seeds do not survive write + read"
        );
    }
}

/// The decoded value; an error must be `Corrupt` and name the file.
fn decoded<T>(result: Result<Option<T>, meta::MetaError>, name: &str) -> Option<T> {
    match result {
        Ok(Some(value)) => Some(value),
        Ok(None) => panic!("{name} exists but reads as missing"),
        Err(meta::MetaError::Corrupt { path, reason }) => {
            assert!(
                path.ends_with(name),
                "{name}: error names {}",
                path.display()
            );
            assert!(!reason.is_empty());
            None
        }
        Err(e) => panic!("reading {name} failed with {e} (only Corrupt is expected)"),
    }
}

fn expect_ok(result: Result<(), meta::MetaError>) {
    if let Err(e) = result {
        panic!("writing metadata failed: {e}");
    }
}

fn assert_meta_file_eq(dir: &Path, name: &str, expected: &[u8]) {
    let written = read_file(&dir.join(name));
    assert_eq!(written, expected, "{name} does not re-encode to its bytes");
}
