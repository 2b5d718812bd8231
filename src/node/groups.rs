//! Consumer group requests on a node (wire-spec §16). Cursors are catalogue state
//! (`catalogue/groups.rs`), so everything is served by the metadata group's leader:
//! CommitOffset and DeleteGroup are catalogue commands proposed like a topic change
//! and answered once applied; FetchOffset and ListGroups read the applied catalogue,
//! but only once this leader has committed an entry of its own term (its catalogue
//! then holds every commit acknowledged by an earlier leader). Until then they wait
//! in a bounded queue ([`WaitingReads`], at most [`MAX_WAITING_READS`] for at most
//! the request timeout), which the raft thread serves after each publish; a full
//! queue, or the timeout, answers `UNAVAILABLE` (the client retries).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::answer::{self, Refusal};
use super::inbox::AdminKind;
use super::raft_loop::ProduceReply;
use super::{lock, topics, Shared};
use crate::catalogue::{
    Catalogue, CatalogueError, Command, CursorCommit, CursorResults, GroupName, TopicName,
};
use crate::net::Responder;
use crate::raft::{NodeId, Role};
use crate::replica::{ProduceError, Produced};
use crate::types::GroupId;
use crate::wire::{
    CommitResult, ErrorCode, FetchedCursor, GroupListing, GroupRequest, GroupResponse,
    OffsetCommit, ResponseBody, TopicPartition,
};

/// A catalogue command to propose, with how its answer is shaped.
pub(crate) type Proposal = (Result<Command, Refusal>, AdminKind, Responder);

/// Serves a group request: answers reads here, and returns the command of a write
/// for the caller to propose to the metadata group.
pub(crate) fn serve(
    shared: &Shared,
    request: GroupRequest,
    identity: Option<&str>,
    reply: Responder,
) -> Option<Proposal> {
    match request {
        GroupRequest::CommitOffset { group, offsets } => {
            if offsets.is_empty() {
                // Nothing to store: no log entry for it.
                return match group_name(&group) {
                    Ok(_) => {
                        reply.ok(ResponseBody::Group(GroupResponse::CommitOffset(Vec::new())));
                        None
                    }
                    Err(why) => refuse(reply, why),
                };
            }
            let cmd = commit_command(&group, &offsets).and_then(|cmd| fits(shared, cmd));
            Some((cmd, AdminKind::CommitOffsets, reply))
        }
        GroupRequest::DeleteGroup { group } => {
            let cmd = group_name(&group).and_then(|group| {
                may_delete(shared, identity, &group)?;
                Ok(Command::DeleteGroup { group })
            });
            Some((cmd, AdminKind::DeleteGroup, reply))
        }
        read @ (GroupRequest::FetchOffset { .. } | GroupRequest::ListGroups) => {
            match serve_read(shared, read) {
                Ok(body) => reply.ok(ResponseBody::Group(body)),
                Err((read, Refusal::NotReady(_))) => wait(shared, read, reply),
                Err((_, why)) => answer::refuse(reply, why),
            }
            None
        }
    }
}

/// Most group reads waiting for a new metadata leader to catch up.
pub(crate) const MAX_WAITING_READS: usize = 1024;

/// Group reads waiting for this node's metadata leadership to be ready.
#[derive(Default)]
pub(crate) struct WaitingReads {
    queue: Mutex<VecDeque<(GroupRequest, Responder, Instant)>>,
}

/// Answers a FetchOffset or ListGroups from a fresh catalogue; gives the request
/// back with the refusal otherwise.
fn serve_read(
    shared: &Shared,
    read: GroupRequest,
) -> Result<GroupResponse, (GroupRequest, Refusal)> {
    let answered = match &read {
        GroupRequest::FetchOffset { group, partitions } => group_name(group).and_then(|g| {
            let catalogue = fresh_catalogue(shared)?;
            Ok(GroupResponse::FetchOffset(fetch_cursors(
                &catalogue, &g, partitions,
            )))
        }),
        _ => fresh_catalogue(shared).map(|c| GroupResponse::ListGroups(list_groups(&c))),
    };
    answered.map_err(|why| (read, why))
}

/// Queues a read until the leader is ready (bounded: a full queue answers at once).
fn wait(shared: &Shared, read: GroupRequest, reply: Responder) {
    let timeout = Duration::from_millis(shared.cfg.request_timeout_ms.max(1));
    let mut queue = lock(&shared.group_reads.queue);
    if queue.len() >= MAX_WAITING_READS {
        drop(queue);
        return answer::refuse(reply, Refusal::Busy("consumer group read queue"));
    }
    queue.push_back((read, reply, Instant::now() + timeout));
}

/// Serves the waiting reads that can be served now, answers the expired ones
/// `UNAVAILABLE` (the raft thread calls this after each publish).
pub(crate) fn serve_waiting(shared: &Shared) {
    let waiting: Vec<_> = {
        let mut queue = lock(&shared.group_reads.queue);
        if queue.is_empty() {
            return;
        }
        queue.drain(..).collect()
    };
    let now = Instant::now();
    let mut still = Vec::new();
    for (read, reply, deadline) in waiting {
        match serve_read(shared, read) {
            Ok(body) => reply.ok(ResponseBody::Group(body)),
            Err((read, Refusal::NotReady(_))) if now < deadline => {
                still.push((read, reply, deadline));
            }
            Err((_, why)) => answer::refuse(reply, why),
        }
    }
    // Bounded: at most what was drained goes back.
    lock(&shared.group_reads.queue).extend(still);
}

fn refuse(reply: Responder, why: Refusal) -> Option<Proposal> {
    answer::refuse(reply, why);
    None
}

fn group_name(name: &str) -> Result<GroupName, Refusal> {
    GroupName::parse(name).map_err(topics::refusal)
}

/// DeleteGroup needs `consume` on every topic the group has a cursor on (as this
/// node's catalogue knows them; a group without cursors has nothing to delete).
fn may_delete(shared: &Shared, identity: Option<&str>, group: &GroupName) -> Result<(), Refusal> {
    let Some(acl) = shared.cfg.acl.as_deref() else {
        return Ok(());
    };
    // Only the metadata leader's catalogue is checked: elsewhere the request is
    // refused NOT_LEADER (and the client resends it there).
    let leads = shared
        .groups
        .get(GroupId::METADATA)
        .is_some_and(|meta| lock(&meta.view).role == Role::Leader);
    if !leads {
        return Ok(());
    }
    // On a TLS server a connection without a certificate identity is plaintext
    // (`--allow-plaintext`): checked as `anonymous`, as the event loop does.
    let identity = identity.unwrap_or(crate::auth::ANONYMOUS);
    let catalogue = shared.catalogue();
    let Some(cursors) = catalogue.cursors().group(group.as_str()) else {
        return Ok(());
    };
    let action = crate::auth::Action::Consume;
    let mut checked: Option<&TopicName> = None;
    for (topic, _) in cursors.keys() {
        // Keys are sorted by topic: check each topic once.
        if checked == Some(topic) {
            continue;
        }
        checked = Some(topic);
        if !acl.allows_on(identity, topic.as_str(), action) {
            let api = crate::wire::ApiKey::DeleteGroup;
            let message = crate::auth::denied_message_on(identity, action, api, topic.as_str());
            return Err(Refusal::Denied(message));
        }
    }
    Ok(())
}

/// The CommitOffsets command of a request (a topic name that cannot exist refuses
/// the whole request: it is a client bug, not a missing topic).
fn commit_command(group: &str, offsets: &[OffsetCommit]) -> Result<Command, Refusal> {
    let group = group_name(group)?;
    let offsets = offsets
        .iter()
        .map(|o| {
            Ok(CursorCommit {
                topic: TopicName::parse(&o.target.topic)?,
                partition: o.target.partition,
                offset: o.offset,
                metadata: o.metadata.clone(),
            })
        })
        .collect::<Result<Vec<_>, CatalogueError>>()
        .map_err(topics::refusal)?;
    Ok(Command::CommitOffsets { group, offsets })
}

/// A command must fit one metadata log record (a commit of 1,000 cursors with
/// large metadata may not, with a small `--max-frame-bytes`).
fn fits(shared: &Shared, cmd: Command) -> Result<Command, Refusal> {
    let max_value_bytes = shared.max_record_value_bytes();
    if cmd.to_bytes().len() <= max_value_bytes {
        return Ok(cmd);
    }
    Err(Refusal::TooLarge {
        max_value_bytes,
        max_batch_bytes: shared.max_produce_bytes(),
        max_batch_records: crate::catalogue::MAX_COMMIT_ENTRIES,
    })
}

/// The applied catalogue, if this node leads the metadata group and has committed
/// an entry of its term (else NOT_LEADER, or UNAVAILABLE while it catches up).
fn fresh_catalogue(shared: &Shared) -> Result<std::sync::Arc<Catalogue>, Refusal> {
    let Some(meta) = shared.groups.get(GroupId::METADATA) else {
        return Err(Refusal::Starting);
    };
    let (role, leader, ready, commit) = {
        let v = lock(&meta.view);
        (v.role, v.leader, v.term_committed, v.commit)
    };
    if role != Role::Leader {
        return Err(shared.not_leader(leader));
    }
    let catalogue = shared.catalogue();
    if !ready || catalogue.applied() < commit.0 {
        return Err(Refusal::NotReady(
            "this metadata leader is applying its predecessor's commits",
        ));
    }
    Ok(catalogue)
}

/// FetchOffset's answer: the partitions asked (offset 0 without a cursor,
/// UNKNOWN_TOPIC for one that does not exist), or every cursor of the group.
pub(crate) fn fetch_cursors(
    catalogue: &Catalogue,
    group: &GroupName,
    partitions: &[TopicPartition],
) -> Vec<FetchedCursor> {
    let cursors = catalogue.cursors().group(group.as_str());
    if partitions.is_empty() {
        return cursors
            .into_iter()
            .flatten()
            .map(|((topic, partition), c)| FetchedCursor {
                target: TopicPartition::new(topic.as_str(), *partition),
                offset: c.offset,
                metadata: c.metadata.clone(),
                error: ErrorCode::None,
            })
            .collect();
    }
    partitions
        .iter()
        .map(|target| {
            let mut out = FetchedCursor {
                target: target.clone(),
                offset: 0,
                metadata: Vec::new(),
                error: ErrorCode::None,
            };
            if catalogue
                .partition(&target.topic, target.partition)
                .is_none()
            {
                out.error = ErrorCode::UnknownTopic;
                return out;
            }
            let cursor = TopicName::parse(&target.topic)
                .ok()
                .and_then(|t| cursors?.get(&(t, target.partition)));
            if let Some(c) = cursor {
                out.offset = c.offset;
                out.metadata = c.metadata.clone();
            }
            out
        })
        .collect()
}

fn list_groups(catalogue: &Catalogue) -> Vec<GroupListing> {
    catalogue
        .cursors()
        .groups()
        .map(|(name, cursors)| GroupListing {
            name: name.as_str().to_string(),
            // At most MAX_CURSORS_PER_GROUP.
            cursors: u32::try_from(cursors.len()).unwrap_or(u32::MAX),
        })
        .collect()
}

/// The wire code of one refused commit entry.
fn entry_code(e: &CatalogueError) -> ErrorCode {
    match e {
        CatalogueError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        CatalogueError::InvalidGroup { .. } => ErrorCode::InvalidGroup,
        // Metadata too large, or a cursor bound reached.
        _ => ErrorCode::InvalidConfig,
    }
}

/// Answers an applied (or failed) cursor command's proposer.
pub(crate) fn answer_applied(
    to: ProduceReply,
    result: Result<Produced, ProduceError>,
    outcome: Option<Result<CursorResults, CatalogueError>>,
    not_leader: impl FnOnce(Option<NodeId>) -> Refusal,
) {
    let delete = matches!(
        to.shape,
        super::inbox::ReplyShape::Admin(AdminKind::DeleteGroup)
    );
    match (outcome, result) {
        (Some(Ok(_)), _) if delete => to.reply.ok(ResponseBody::Group(GroupResponse::DeleteGroup)),
        (Some(Ok(results)), _) => {
            let results = results
                .into_iter()
                .map(|(topic, partition, r)| CommitResult {
                    target: TopicPartition::new(topic.as_str(), partition),
                    error: r.as_ref().err().map_or(ErrorCode::None, entry_code),
                })
                .collect();
            to.reply
                .ok(ResponseBody::Group(GroupResponse::CommitOffset(results)))
        }
        (Some(Err(e)), _) => answer::refuse(to.reply, topics::refusal(e)),
        // Committed, but its outcome is no longer known (more than the kept number
        // of commands applied meanwhile): the commit is idempotent, so a retry is safe.
        (None, Ok(_)) => answer::refuse(
            to.reply,
            Refusal::NotReady("the command was applied but its outcome is lost"),
        ),
        (None, Err(e)) => answer::produce(to, Err(e), not_leader),
    }
}

/// Answers every waiting read `UNAVAILABLE` (the node is shutting down).
pub(crate) fn release_waiting(shared: &Shared) {
    let waiting: Vec<_> = lock(&shared.group_reads.queue).drain(..).collect();
    for (_, reply, _) in waiting {
        answer::refuse(reply, Refusal::ShuttingDown);
    }
}
