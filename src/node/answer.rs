//! The one adapter from domain outcomes to wire answers: produce results of the
//! replica driver and storage read errors become response bodies and error codes
//! here, and nowhere else in the node.

use super::raft_loop::ProduceReply;
use super::Shared;
use crate::net::Responder;
use crate::replica::{ProduceError, Produced};
use crate::storage::StorageError;
use crate::types::Offset;
use crate::wire::{ErrorCode, ResponseBody};

/// Answers a produce with where it landed, or why not.
pub(crate) fn produce(to: ProduceReply, result: Result<Produced, ProduceError>, shared: &Shared) {
    let reply = to.reply;
    match result {
        Ok(p) => {
            let first = Offset(p.first.0);
            let body = if to.single {
                ResponseBody::Produce { offset: first }
            } else {
                let count = (p.last.0 + 1).saturating_sub(p.first.0);
                ResponseBody::ProduceBatch {
                    first_offset: first,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                }
            };
            reply.ok(body);
        }
        Err(ProduceError::NotLeader { leader }) => shared.reply_not_leader(reply, leader),
        Err(ProduceError::Unavailable(msg)) => reply.error(ErrorCode::Unavailable, msg),
        Err(ProduceError::Indeterminate(msg)) => reply.error(ErrorCode::Timeout, msg),
    }
}

/// A produce that was queued but never proposed, at shutdown.
pub(crate) fn shutting_down(reply: Responder) {
    reply.error(
        ErrorCode::Unavailable,
        "the server is shutting down; the record was not written: retry on another node",
    );
}

/// A storage error met while reading `offset`, as the reader's answer. Only expected
/// outcomes are per-request errors; anything else is logged as a server fault.
pub(crate) fn read_error(e: &StorageError, out_of_range: impl FnOnce() -> String) -> (ErrorCode, String) {
    match e {
        StorageError::OffsetOutOfRange { .. } => (ErrorCode::OffsetOutOfRange, out_of_range()),
        StorageError::Closed => (
            ErrorCode::Unavailable,
            "the log is closed; the server is shutting down".to_string(),
        ),
        other => {
            log::error!("read failed: {other}");
            (
                ErrorCode::Internal,
                format!("storage error: {other}; see the server log"),
            )
        }
    }
}
