//! The leader's produce path for idempotent batches (`replica::dedup`): each batch
//! with producer meta is checked against the dedup state; a new one is proposed
//! with its producer batch header at the end of its first record (a
//! [`RecordKind::DataV1Batch`] entry: one entry per one-record batch) and recorded
//! at once (the next batch of the same proposal must see it); a retry is answered with its
//! original offsets once they commit; a refused one gets its typed error. Produces
//! without meta ride in the same proposal as before.

use super::super::dedup::{BatchMeta, Verdict};
use super::super::dedup_log::append_header;
use super::ReplicaStorage;
use super::{
    refusal, Driver, DriverError, Pending, ProduceError, ProduceRequest, Produced, ProducerRefusal,
};
use crate::raft::{Index, ProposeError, Term};
use crate::types::RecordKind;

/// How often an incomplete dedup state is tried again while batches wait.
const DEDUP_RETRY_MS: u64 = 1000;

/// Where one request of a proposal goes.
enum Placement {
    /// Appended in this proposal at `first ..= last`.
    New { first: Index, last: Index },
    /// A retry of the batch at `first ..= last` (of `term`).
    Duplicate {
        first: Index,
        last: Index,
        term: Option<Term>,
    },
    /// Refused before proposing.
    Refused(ProduceError),
}

impl<S: ReplicaStorage, R> Driver<S, R> {
    /// [`Driver::propose`] when some request carries producer meta.
    pub(super) fn propose_idempotent(
        &mut self,
        reqs: Vec<ProduceRequest<R>>,
    ) -> Result<(), DriverError> {
        let first = self.node.last_index() + 1;
        let mut at = first;
        let mut entries: Vec<(RecordKind, Vec<u8>)> = Vec::new();
        let mut placed = Vec::with_capacity(reqs.len());
        let leader = self.node.role() == crate::raft::Role::Leader;
        for mut r in reqs {
            let placement = match r.producer {
                // Not the leader: the proposal is refused below, as any produce.
                Some(meta) if leader => self.place_batch(&meta, &mut r, &mut at, &mut entries),
                _ => {
                    let n = r.values.len() as u64;
                    let placement = Placement::New {
                        first: at,
                        last: (at + n) - 1,
                    };
                    push_values(&mut r, &mut entries);
                    at = at + n;
                    placement
                }
            };
            placed.push((r.deadline_ms, r.reply, placement));
        }
        let proposed = if entries.is_empty() {
            Ok(None)
        } else {
            self.node.propose_entries(entries).map(Some)
        };
        let term = match proposed {
            Ok(Some(p)) => {
                debug_assert_eq!(p.first, first, "proposal placed where computed");
                self.uncommitted_batches.push_back(p.last);
                self.dedup.proposed(p.first, p.last, p.term);
                Some(p.term)
            }
            Ok(None) => None,
            Err(ProposeError::Fatal(e)) => return Err(e.into()),
            Err(e) => {
                // Nothing was appended: the batches recorded for it go again (a
                // no-op when none was).
                self.dedup.retract(first);
                let err = refusal(&e);
                for (_, reply, placement) in placed {
                    match placement {
                        Placement::Refused(why) => self.complete(reply, Err(why)),
                        _ => self.complete(reply, Err(err.clone())),
                    }
                }
                return self.process();
            }
        };
        for (deadline_ms, reply, placement) in placed {
            self.settle(deadline_ms, reply, placement, term);
        }
        self.process()
    }

    /// Checks one idempotent batch and, if new, queues its records (the header in
    /// the first).
    fn place_batch(
        &mut self,
        meta: &BatchMeta,
        r: &mut ProduceRequest<R>,
        at: &mut Index,
        entries: &mut Vec<(RecordKind, Vec<u8>)>,
    ) -> Placement {
        let n = r.values.len();
        if meta.seq.count() as usize != n {
            return Placement::Refused(ProduceError::Producer(ProducerRefusal::CountMismatch {
                meta: meta.seq.count(),
                values: n,
            }));
        }
        if !self.dedup_complete() {
            return Placement::Refused(ProduceError::Unavailable(
                "this replica's producer state is incomplete (log entries it is derived from \
                 are damaged here and being healed from peers); retry in a moment"
                    .into(),
            ));
        }
        let refused = |why| Placement::Refused(ProduceError::Producer(why));
        match self.dedup.check(meta, self.wall_ms) {
            Verdict::Append => {
                let first = *at;
                self.dedup.record_own(meta, first, self.wall_ms);
                let start = entries.len();
                push_values(r, entries);
                // The count matches (checked above), so the batch has a first record.
                // The header goes after its payload (`records::stored`), in the
                // room the request decoder left: no copy.
                if let Some((kind, value)) = entries.get_mut(start) {
                    *kind = RecordKind::DataV1Batch;
                    append_header(meta, self.wall_ms, value);
                }
                *at = first + n as u64;
                Placement::New {
                    first,
                    last: (first + n as u64) - 1,
                }
            }
            Verdict::Duplicate {
                first_offset,
                last_offset,
                ..
            } => {
                let last = Index(last_offset.0);
                Placement::Duplicate {
                    first: Index(first_offset.0),
                    last,
                    term: self.node.term_at(last).ok(),
                }
            }
            Verdict::OutOfOrder { expected_seq } => {
                refused(ProducerRefusal::OutOfOrder { expected_seq })
            }
            Verdict::Fenced { current_epoch } => refused(ProducerRefusal::Fenced { current_epoch }),
            Verdict::UnknownProducer => refused(ProducerRefusal::UnknownProducer),
            Verdict::DuplicateTooOld => refused(ProducerRefusal::DuplicateTooOld),
        }
    }

    /// True when the dedup state may check batches: complete, or completed now
    /// (tried at most once a second: it reads the log).
    fn dedup_complete(&mut self) -> bool {
        if self.dedup.is_complete() {
            return true;
        }
        if self.now_ms < self.dedup_retry_at_ms {
            return false;
        }
        self.dedup_retry_at_ms = self.now_ms + DEDUP_RETRY_MS;
        self.dedup.try_complete(self.node.storage())
    }

    /// Answers a placed request now, or queues it until its entries commit.
    fn settle(&mut self, deadline_ms: u64, reply: R, placement: Placement, term: Option<Term>) {
        match placement {
            Placement::Refused(why) => self.complete(reply, Err(why)),
            Placement::New { first, last } => match term {
                Some(term) => self.pending.push_back(Pending {
                    first,
                    last,
                    term,
                    deadline_ms,
                    reply,
                    duplicate: false,
                }),
                // Only an empty batch proposes nothing: nothing to wait for.
                None => self.complete(
                    reply,
                    Ok(Produced {
                        first,
                        last,
                        duplicate: false,
                    }),
                ),
            },
            Placement::Duplicate { first, last, term } => {
                self.settle_duplicate(deadline_ms, reply, first, last, term)
            }
        }
    }

    /// A retry: answered with the original's offsets once they commit (at once if
    /// they did), or with the original's error if they are cut.
    fn settle_duplicate(
        &mut self,
        deadline_ms: u64,
        reply: R,
        first: Index,
        last: Index,
        term: Option<Term>,
    ) {
        let committed = last <= self.commit;
        match term {
            // Committed entries never change; below the log start (retention) they
            // were committed too.
            _ if committed => self.complete(
                reply,
                Ok(Produced {
                    first,
                    last,
                    duplicate: true,
                }),
            ),
            Some(term) => {
                // Pending answers go in order of their last offset.
                let at = self.pending.partition_point(|p| p.last <= last);
                self.pending.insert(
                    at,
                    Pending {
                        first,
                        last,
                        term,
                        deadline_ms,
                        reply,
                        duplicate: true,
                    },
                );
            }
            None => self.complete(
                reply,
                Err(ProduceError::Indeterminate(
                    "a retry of a batch whose first attempt is not readable here; it may or \
                     may not be written: retry"
                        .into(),
                )),
            ),
        }
    }
}

/// Moves a request's values into the proposal as entries of its kind.
fn push_values<R>(r: &mut ProduceRequest<R>, entries: &mut Vec<(RecordKind, Vec<u8>)>) {
    r.values.move_to(r.kind, entries);
}
