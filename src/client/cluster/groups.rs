//! The consumer group calls of [`ClusterClient`] (wire-spec §16): cursors live in
//! the metadata group, so every call goes to the metadata leader (as the topic
//! administration calls), follows its `NOT_LEADER` hints, and retries `UNAVAILABLE`
//! (e.g. a new metadata leader still applying its predecessor's commits) within the
//! client's [`RetryPolicy`](super::RetryPolicy). A commit is idempotent, so a retry
//! after a lost answer is harmless.

use std::time::Duration;

use super::topic_calls::Dest;
use super::{Client, ClientError, ClusterClient, Result};
use crate::wire::{
    CommitResult, FetchedCursor, GroupListing, GroupRequest, GroupResponse, OffsetCommit, Request,
    ResponseBody, TopicPartition,
};

impl Client {
    /// Sends one consumer group request and returns its answer.
    pub fn group_call(&mut self, request: GroupRequest) -> Result<GroupResponse> {
        match self.call(Request::Group(request), Duration::ZERO)? {
            ResponseBody::Group(answer) => Ok(answer),
            other => Err(super::super::unexpected(&other)),
        }
    }
}

impl ClusterClient {
    /// Stores `group`'s cursors (the next offset it will read of each partition);
    /// returns one result per partition, in order (`ErrorCode::None` = stored).
    pub fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[OffsetCommit],
    ) -> Result<Vec<CommitResult>> {
        let request = GroupRequest::CommitOffset {
            group: group.to_string(),
            offsets: offsets.to_vec(),
        };
        match self.group(request)? {
            GroupResponse::CommitOffset(results) => Ok(results),
            other => Err(mismatch(&other)),
        }
    }

    /// `group`'s cursors of `partitions` (offset 0: none committed), or every cursor
    /// it has when `partitions` is empty.
    pub fn fetch_offsets(
        &mut self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<FetchedCursor>> {
        let request = GroupRequest::FetchOffset {
            group: group.to_string(),
            partitions: partitions.to_vec(),
        };
        match self.group(request)? {
            GroupResponse::FetchOffset(cursors) => Ok(cursors),
            other => Err(mismatch(&other)),
        }
    }

    /// Every consumer group, in name order, with its number of cursors.
    pub fn list_groups(&mut self) -> Result<Vec<GroupListing>> {
        match self.group(GroupRequest::ListGroups)? {
            GroupResponse::ListGroups(groups) => Ok(groups),
            other => Err(mismatch(&other)),
        }
    }

    /// Deletes `group` and its cursors (succeeds if it has none).
    pub fn delete_group(&mut self, group: &str) -> Result<()> {
        let request = GroupRequest::DeleteGroup {
            group: group.to_string(),
        };
        match self.group(request)? {
            GroupResponse::DeleteGroup => Ok(()),
            other => Err(mismatch(&other)),
        }
    }

    fn group(&mut self, request: GroupRequest) -> Result<GroupResponse> {
        self.run_dest(Dest::Admin, |c| c.group_call(request.clone()))
            .map(|(_, answer)| answer)
    }
}

fn mismatch(answer: &GroupResponse) -> ClientError {
    ClientError::Protocol(format!(
        "a {} answer to another consumer group request",
        answer.api_key()
    ))
}
