//! ListOffsets for clients (wire-spec §17): [`Client::list_offsets`] asks one
//! server about several partitions; [`ClusterClient::list_offset`] asks about one
//! partition at one of its replicas in turn, with the retries of the other
//! partition reads (`topic_calls.rs`). Any replica answers, up to its own commit
//! index.

use super::topic_calls::Dest;
use super::{Client, ClientError, ClusterClient, Result, Route};
use crate::wire::{ListedOffset, OffsetQuery, OffsetSpec, Request, ResponseBody, TopicPartition};

impl Client {
    /// The offsets `queries` ask for, one answer per query in order (a partition
    /// this server cannot serve is answered with its own error).
    pub fn list_offsets(&mut self, queries: &[OffsetQuery]) -> Result<Vec<ListedOffset>> {
        let request = Request::ListOffsets {
            queries: queries.to_vec(),
        };
        match self.call(request, std::time::Duration::ZERO)? {
            ResponseBody::ListOffsets { partitions } if partitions.len() == queries.len() => {
                Ok(partitions)
            }
            ResponseBody::ListOffsets { partitions } => Err(ClientError::Protocol(format!(
                "ListOffsets answered {} partitions for {} asked",
                partitions.len(),
                queries.len()
            ))),
            other => Err(super::super::unexpected(&other)),
        }
    }
}

impl ClusterClient {
    /// `target`'s earliest offset, high-water mark, or first offset at or after a
    /// time (with that record's timestamp, -1 when the answer is not a record),
    /// from one of its replicas in turn.
    pub fn list_offset(
        &mut self,
        target: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<ListedOffset> {
        let query = [OffsetQuery {
            target: target.clone(),
            spec,
        }];
        self.run_dest(Dest::Partition(target, Route::Read), |c| {
            let answer = c.list_offsets(&query)?.remove(0);
            match answer.error {
                Some(body) => Err(ClientError::from_body(body)),
                None => Ok(answer),
            }
        })
        .map(|(_, listed)| listed)
    }
}
