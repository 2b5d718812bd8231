//! The sparse time index of a segment: which offset to start scanning from to
//! find the first record whose timestamp is at least T. Pure parts (the builder,
//! the lookup, the file codec); `engine/time.rs` keeps them for a [`Log`].
//!
//! # What is indexed
//!
//! Only v1 records (`DataV1`, `DataV1Batch`) have a time: bytes `[2..10]` of their
//! v1 payload (`records::stored_v1_payload`), a big-endian i64 of ms since the
//! epoch (`crate::records`, wire-spec §13). v0
//! `Data` records have none, and internal records are never consumer-visible;
//! both are skipped by lookups (never answered) but count for the spacing.
//!
//! # Entries
//!
//! An entry `(max_before, offset)` says: every record of the segment *before*
//! `offset` has a timestamp `≤ max_before` (`i64::MIN` when none has one). One is
//! taken at the first record after every [`INTERVAL_BYTES`] of stored records
//! (headers included). Because `max_before` is a running maximum, entries are
//! monotonic even when producers send timestamps out of order, and the first
//! record with timestamp `≥ T` lies between the last entry with `max_before < T`
//! and the next entry: a lookup scans at most about one interval (one 4 KiB read
//! plus the record that crosses it). The segment's newest timestamp (`max_ts`)
//! is kept too: the first segment whose `max_ts ≥ T` holds the answer, and
//! retention by age counts from it.
//!
//! Why 4 KiB: it is one page, i.e. the unit a read costs anyway, so a lookup costs
//! one small read after the index; 16 bytes per 4 KiB is 0.4 % of the data (256
//! KiB for a 64 MiB segment, read on a lookup and not kept in memory).
//!
//! # File (`<base, 20 digits>.timeindex`, little-endian like the store)
//!
//! ```text
//! 0..4    magic "CLTI"
//! 4       version 1, then 3 zero bytes
//! 8..16   base         u64  first offset of the segment
//! 16..24  count        u64  records in the segment
//! 24..32  store_bytes  u64  indexed bytes of its store
//! 32..36  last_crc     u32  the crc32c field of the segment's last record
//! 36      has_max      u8   1 when some record has a timestamp, then 3 zero bytes
//! 40..48  max_ts       i64  the newest timestamp (0 when has_max is 0)
//! 48..52  n            u32  entries
//! 52..    n × (i64 max_before, u64 offset)
//! end-4   crc32c of every byte before it
//! ```
//!
//! Written only for sealed segments, never fsynced: it can always be rebuilt from
//! the segment, so a torn or stale file is detected (crc, and the stamp — base,
//! count, store bytes and the last record's crc — must match the segment as it
//! is now) and rebuilt, never trusted blindly.
//!
//! [`Log`]: crate::storage::Log

use std::path::{Path, PathBuf};

use crate::types::RecordKind;

/// Extension of time index files.
pub(crate) const TIMEINDEX_EXT: &str = "timeindex";

/// Stored bytes between two entries.
pub(crate) const INTERVAL_BYTES: u64 = 4096;

const MAGIC: &[u8; 4] = b"CLTI";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 52;
const ENTRY_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

/// `dir/<base, 20 digits>.timeindex`.
pub(crate) fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{TIMEINDEX_EXT}"))
}

/// The timestamp of a stored record: v1 records only (`DataV1`, `DataV1Batch`).
pub(crate) fn record_timestamp(kind: RecordKind, value: &[u8]) -> Option<i64> {
    let payload = crate::records::stored_v1_payload(kind, value)?;
    let bytes: [u8; 8] = payload.get(2..10)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// One entry: every record before `offset` has a timestamp `≤ max_before`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub max_before: i64,
    pub offset: u64,
}

/// The time index of one segment (or of the first records of the active one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    pub base: u64,
    /// One past the last record indexed.
    pub next: u64,
    /// The newest timestamp of the records indexed.
    pub max_ts: Option<i64>,
    pub entries: Vec<Entry>,
    /// Stored bytes since the last entry (building only).
    since_entry_bytes: u64,
}

impl TimeIndex {
    /// An empty index of the segment starting at `base`.
    pub fn new(base: u64) -> TimeIndex {
        TimeIndex {
            base,
            next: base,
            max_ts: None,
            entries: Vec::new(),
            since_entry_bytes: 0,
        }
    }

    /// Adds the next record (offsets must come in order, `offset == self.next`),
    /// `stored_bytes` long (header included), with its timestamp if it has one.
    pub fn push(&mut self, offset: u64, stored_bytes: u64, timestamp: Option<i64>) {
        debug_assert_eq!(offset, self.next);
        if self.since_entry_bytes >= INTERVAL_BYTES {
            // Only useful once some record has a time: before that every lookup
            // starts at the base anyway.
            if let Some(max_before) = self.max_ts {
                self.entries.push(Entry { max_before, offset });
            }
            self.since_entry_bytes = 0;
        }
        self.since_entry_bytes += stored_bytes;
        if let Some(ts) = timestamp {
            self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        }
        self.next = offset + 1;
    }

    /// Where to start scanning for the first record with timestamp `≥ ts`: the
    /// offset of the last entry whose `max_before < ts`, else the base. `None`
    /// when no record indexed has such a timestamp.
    pub fn scan_start(&self, ts: i64) -> Option<u64> {
        if self.max_ts? < ts {
            return None;
        }
        let k = self.entries.partition_point(|e| e.max_before < ts);
        Some(
            k.checked_sub(1)
                .map_or(self.base, |i| self.entries[i].offset),
        )
    }
}

/// What a time index file was built from; it must match the segment as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub count: u64,
    pub store_bytes: u64,
    pub last_crc: u32,
}

/// The file bytes of a finished segment's index.
pub(crate) fn encode(index: &TimeIndex, stamp: Stamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + index.entries.len() * ENTRY_BYTES + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&index.base.to_le_bytes());
    out.extend_from_slice(&stamp.count.to_le_bytes());
    out.extend_from_slice(&stamp.store_bytes.to_le_bytes());
    out.extend_from_slice(&stamp.last_crc.to_le_bytes());
    out.extend_from_slice(&[u8::from(index.max_ts.is_some()), 0, 0, 0]);
    out.extend_from_slice(&index.max_ts.unwrap_or(0).to_le_bytes());
    // At most one entry per 4 KiB of a store of at most 4 GiB: fits.
    out.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    for e in &index.entries {
        out.extend_from_slice(&e.max_before.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Largest file a segment of `store_bytes` can have (reading more is refused).
pub(crate) fn max_file_bytes(store_bytes: u64) -> u64 {
    (HEADER_BYTES + CRC_BYTES) as u64 + (store_bytes / INTERVAL_BYTES + 1) * ENTRY_BYTES as u64
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes a time index file. Never panics; allocates only after checking the
/// length against the entry count. Checks the crc, the layout and that the
/// entries are in order inside the segment; the caller compares the stamp.
pub(crate) fn decode(bytes: &[u8]) -> Result<(TimeIndex, Stamp), &'static str> {
    if bytes.len() < HEADER_BYTES + CRC_BYTES {
        return Err("time index file too short");
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(crc);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc_bytes) {
        return Err("time index crc mismatch");
    }
    if &body[0..4] != MAGIC || body[4..8] != [VERSION, 0, 0, 0] {
        return Err("not a version 1 time index");
    }
    let base = le_u64(body, 8);
    let stamp = Stamp {
        count: le_u64(body, 16),
        store_bytes: le_u64(body, 24),
        last_crc: u32::from_le_bytes([body[32], body[33], body[34], body[35]]),
    };
    let max_ts = match body[36..40] {
        [0, 0, 0, 0] => None,
        [1, 0, 0, 0] => Some(le_u64(body, 40) as i64),
        _ => return Err("bad has_max byte"),
    };
    let n = u32::from_le_bytes([body[48], body[49], body[50], body[51]]) as usize;
    if Some(body.len() - HEADER_BYTES) != n.checked_mul(ENTRY_BYTES) {
        return Err("time index length does not match its entry count");
    }
    let end = base
        .checked_add(stamp.count)
        .ok_or("segment offsets overflow")?;
    let mut entries = Vec::with_capacity(n);
    for chunk in body[HEADER_BYTES..].chunks_exact(ENTRY_BYTES) {
        let e = Entry {
            max_before: le_u64(chunk, 0) as i64,
            offset: le_u64(chunk, 8),
        };
        let ordered = entries
            .last()
            .is_none_or(|p: &Entry| p.offset < e.offset && p.max_before <= e.max_before);
        if !ordered
            || e.offset <= base
            || e.offset >= end
            || max_ts.is_none_or(|m| e.max_before > m)
        {
            return Err("time index entries out of order or outside the segment");
        }
        entries.push(e);
    }
    let index = TimeIndex {
        base,
        next: end,
        max_ts,
        entries,
        since_entry_bytes: 0,
    };
    Ok((index, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of `bytes` each with the given timestamps.
    fn build(base: u64, bytes: u64, times: &[Option<i64>]) -> TimeIndex {
        let mut idx = TimeIndex::new(base);
        for (i, ts) in times.iter().enumerate() {
            idx.push(base + i as u64, bytes, *ts);
        }
        idx
    }

    /// The first offset with timestamp ≥ ts, by brute force.
    fn brute(base: u64, times: &[Option<i64>], ts: i64) -> Option<u64> {
        times
            .iter()
            .position(|t| t.is_some_and(|t| t >= ts))
            .map(|i| base + i as u64)
    }

    /// The scan the log does: from scan_start forward to the first match.
    fn lookup(idx: &TimeIndex, times: &[Option<i64>], ts: i64) -> Option<(u64, u64)> {
        let start = idx.scan_start(ts)?;
        let found =
            (start..idx.next).find(|&o| times[(o - idx.base) as usize].is_some_and(|t| t >= ts))?;
        Some((found, found - start))
    }

    #[test]
    fn entries_are_monotonic_with_out_of_order_timestamps() {
        // 1 KiB records, timestamps jumping back and forth, some v0.
        let times: Vec<Option<i64>> = (0..400)
            .map(|i: i64| match i % 7 {
                0 => None,
                3 => Some(1_000 + i * 10 - 500),
                _ => Some(1_000 + i * 10),
            })
            .collect();
        let idx = build(100, 1024, &times);
        assert!(idx.entries.len() >= 90, "one entry per 4 KiB");
        assert!(idx
            .entries
            .windows(2)
            .all(|w| w[0].max_before <= w[1].max_before && w[0].offset < w[1].offset));
        for ts in (0..6_000).step_by(37) {
            let got = lookup(&idx, &times, ts);
            assert_eq!(got.map(|g| g.0), brute(100, &times, ts), "ts {ts}");
            if let Some((_, scanned)) = got {
                assert!(scanned <= 8, "scanned {scanned} records for ts {ts}");
            }
        }
        assert_eq!(idx.max_ts, times.iter().flatten().max().copied());
        assert_eq!(idx.scan_start(i64::MAX), None);
    }

    #[test]
    fn v0_only_segment_has_no_time() {
        let idx = build(0, 5000, &[None; 10]);
        assert_eq!(idx.max_ts, None);
        assert!(idx.entries.is_empty());
        assert_eq!(idx.scan_start(i64::MIN), None);
        assert_eq!(record_timestamp(RecordKind::Data, &[1; 20]), None);
        assert_eq!(record_timestamp(RecordKind::NoOp, &[1; 20]), None);
        let mut v1 = vec![1, 0];
        v1.extend_from_slice(&(-5i64).to_be_bytes());
        assert_eq!(record_timestamp(RecordKind::DataV1, &v1), Some(-5));
        assert_eq!(record_timestamp(RecordKind::DataV1, &v1[..9]), None);
        let start = crate::records::batch_start_bytes(&v1, &[0; 27]);
        assert_eq!(record_timestamp(RecordKind::DataV1Batch, &start), Some(-5));
        assert_eq!(
            record_timestamp(RecordKind::CompactedBatchStart, &start),
            None
        );
    }

    #[test]
    fn file_round_trip_and_damage_is_refused() {
        let times: Vec<Option<i64>> = (0..100).map(|i| Some(i * 3)).collect();
        let idx = build(7, 2000, &times);
        let stamp = Stamp {
            count: 100,
            store_bytes: 200_000,
            last_crc: 0xdead_beef,
        };
        let bytes = encode(&idx, stamp);
        assert!(bytes.len() as u64 <= max_file_bytes(stamp.store_bytes));
        let (back, back_stamp) = decode(&bytes).unwrap();
        assert_eq!(back_stamp, stamp);
        assert_eq!((back.base, back.next, back.max_ts), (7, 107, Some(297)));
        assert_eq!(back.entries, idx.entries);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn entries_outside_the_segment_are_refused() {
        let mut idx = build(10, 5000, &[Some(1), Some(2), Some(3)]);
        idx.entries.push(Entry {
            max_before: 3,
            offset: 50,
        });
        let stamp = Stamp {
            count: 3,
            store_bytes: 15_000,
            last_crc: 1,
        };
        assert!(decode(&encode(&idx, stamp)).is_err());
    }
}
