//! Fetch v1 (`FetchPartitions`): records of several partitions in one request, each
//! from its own hosted group, within a per-partition and a total byte budget. A
//! partition this node cannot serve is answered with its own error (UNKNOWN_TOPIC,
//! NOT_LEADER pointing at a replica) and does not fail the others. When every
//! servable partition is at its high-water mark the request long-polls (parked in
//! `reads` until any of its groups' mark passes its offset, or its wait ends).

use std::sync::Arc;

use super::group::GroupState;
use super::reads::ScanError;
use super::served::ReadFormat;
use crate::storage::StorageError;
use crate::types::{Offset, RecordKind};
use crate::wire::{self, ErrorBody, FetchedPartition, TopicPartition, WireRecord};

/// One partition of a multi-partition fetch.
pub(crate) struct Part {
    pub target: TopicPartition,
    /// The group serving it here, or the error it is answered with.
    pub group: Result<Arc<GroupState>, ErrorBody>,
    pub offset: Offset,
    pub max_bytes: u32,
}

/// A multi-partition fetch waiting for the read pool (or parked).
pub(crate) struct ManyFetch {
    pub parts: Vec<Part>,
    /// Total record bytes budget.
    pub max_bytes: u64,
    /// Longest wait when nothing is there yet.
    pub wait: std::time::Duration,
    /// Values only (Fetch v1) or v1 payloads (Fetch v2).
    pub format: ReadFormat,
}

impl ManyFetch {
    /// True if some servable partition has records past its offset now.
    pub(crate) fn ready(&self) -> bool {
        self.parts
            .iter()
            .any(|p| p.group.as_ref().is_ok_and(|g| p.offset < g.hw()))
    }

    /// True if a parked fetch should wake for `group` (its mark passed our offset).
    pub(crate) fn wakes_on(&self, group: &GroupState) -> bool {
        let hw = group.hw();
        self.parts.iter().any(|p| {
            p.group
                .as_ref()
                .is_ok_and(|g| g.id == group.id && p.offset < hw)
        })
    }

    /// True if any partition has an error to report (answer at once, no wait).
    pub(crate) fn has_errors(&self) -> bool {
        self.parts.iter().any(|p| p.group.is_err())
    }

    /// Reads every partition; damaged records met are reported to their healer.
    /// The total budget bounds the answer: only the first partition read may go
    /// past it (by one record, so a big record is never stuck); once it is spent the
    /// remaining partitions are answered empty at their high-water marks (a request
    /// naming 1,000 partitions cannot make 1,000 records of the largest size).
    pub(crate) fn read(&self, max_fetch_bytes: u32) -> Vec<FetchedPartition> {
        let mut left = self.max_bytes.min(u64::from(max_fetch_bytes)).max(1);
        self.parts
            .iter()
            .map(|p| {
                if left == 0 {
                    return empty_part(p);
                }
                let fetched = read_part(p, left, self.format);
                let used: u64 = fetched
                    .records
                    .iter()
                    .map(|r| r.value.len() as u64 + self.format.header_bytes())
                    .sum();
                left = left.saturating_sub(used);
                fetched
            })
            .collect()
    }

    /// Every partition answered empty (see `empty_part`).
    pub(crate) fn empty(&self) -> Vec<FetchedPartition> {
        self.parts.iter().map(empty_part).collect()
    }
}

/// A partition answered with no records (its wait ended, the pool was full, or the
/// request's budget went to other partitions): the mark answered is where the
/// consumer asked to read (at most the high-water mark), so an empty answer never
/// makes it skip records; or its error.
fn empty_part(p: &Part) -> FetchedPartition {
    match &p.group {
        Ok(g) => {
            let asked = if p.offset.0 == 0 { g.first() } else { p.offset };
            answer_part(p, None, asked.min(g.hw()), Vec::new())
        }
        Err(e) => answer_part(p, Some(e.clone()), Offset(0), Vec::new()),
    }
}

fn answer_part(
    p: &Part,
    error: Option<ErrorBody>,
    high_watermark: Offset,
    records: Vec<WireRecord>,
) -> FetchedPartition {
    FetchedPartition {
        target: p.target.clone(),
        error,
        high_watermark,
        records,
    }
}

/// Data records of one partition from its offset, below its high-water mark, within
/// `min(part budget, left)` bytes (at least one record if any).
fn read_part(p: &Part, left: u64, format: ReadFormat) -> FetchedPartition {
    let g = match &p.group {
        Ok(g) => g,
        Err(e) => return answer_part(p, Some(e.clone()), Offset(0), Vec::new()),
    };
    let hw = g.hw();
    let offset = if p.offset.0 == 0 { g.first() } else { p.offset };
    if offset < g.first() || offset > hw {
        let e = ErrorBody::offset_out_of_range(offset, g.first(), hw);
        return answer_part(p, Some(e), hw, Vec::new());
    }
    let budget = u64::from(p.max_bytes).min(left).max(1);
    let mut records = Vec::new();
    // `value` holds what `format` serves: the value, or (v2) the v1 payload.
    let scanned = super::reads::scan_data(&g.log, (offset, hw), budget, format, &mut |r, s| {
        records.push(WireRecord {
            offset: r.offset,
            term: r.term,
            kind: RecordKind::Data,
            value: s.to_vec(),
        })
    });
    match scanned {
        Ok(mark) => answer_part(p, None, mark, records),
        Err(e) => read_failed(p, g, &e, hw, records),
    }
}

/// A read error: the records read before it are answered; damage goes to the
/// healer and is reported on the partition when nothing was read.
fn read_failed(
    p: &Part,
    g: &GroupState,
    e: &ScanError,
    hw: Offset,
    records: Vec<WireRecord>,
) -> FetchedPartition {
    if let ScanError::Storage(StorageError::CorruptRecord { offset, .. }) = e {
        g.damage.report(*offset);
    }
    if !records.is_empty() {
        return answer_part(p, None, hw, records);
    }
    let (code, message) = match e {
        ScanError::Storage(e @ StorageError::CorruptRecord { .. }) => {
            (wire::ErrorCode::CorruptRecord, e.to_string())
        }
        ScanError::Storage(e) => (wire::ErrorCode::Unavailable, e.to_string()),
        ScanError::Bad(bad) => {
            log::error!("{}", bad.message());
            (wire::ErrorCode::Internal, bad.message())
        }
    };
    answer_part(p, Some(ErrorBody::new(code, message)), hw, Vec::new())
}
