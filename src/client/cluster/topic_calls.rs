//! The topic calls of [`ClusterClient`] (I/O shell): produce to and read from a
//! topic partition, `Metadata`, and topic administration, routed with the pure
//! [`super::topics::TopicCache`] and decided by [`super::retry::classify_topic`].
//!
//! - A partition call asks for the topic's metadata when the cache has none or an
//!   old entry, then goes to the partition's leader (produce) or one of its replicas
//!   in turn (read). `NOT_LEADER` hints are followed at once; `UNKNOWN_TOPIC` asks
//!   the metadata again once (after a back-off) before it is believed; transient
//!   failures invalidate the entry and back off. An identity that may not
//!   `describe` the topic (Metadata refused) still produces and reads: the call then
//!   goes where the member list points and follows hints, as for the default topic.
//! - The `default` topic's partition 0 keeps the version-0 path
//!   ([`ClusterClient::produce`] and friends): no Metadata is needed for it.
//! - Metadata and DescribeTopic go to the metadata leader when known (its catalogue
//!   is the newest), else to the believed cluster leader; CreateTopic, AlterTopic and
//!   DeleteTopic go there too and follow `NOT_LEADER` hints to the metadata leader.
//!
//! Bounds are the module's: every call is limited by [`RetryPolicy`]; a metadata
//! refresh inside a partition call is itself one bounded call.

use super::*;
use crate::wire::{
    FetchPartition, FetchedPartition, NodeInfo, TopicChanges, TopicDescription, TopicMetadata,
    TopicPartition, TopicSettings,
};

/// Where a topic call goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Dest<'a> {
    /// A partition's leader (`Write`) or any of its replicas (`Read`).
    Partition(&'a TopicPartition, Route),
    /// Anyone, the metadata leader preferred (Metadata, DescribeTopic).
    Catalogue,
    /// The metadata leader (CreateTopic, AlterTopic, DeleteTopic).
    Admin,
}

/// What follows a failed attempt of a topic call.
enum Step {
    /// Try this address at once.
    Now(String),
    /// Back off, then pick again.
    Wait,
    /// Return the error.
    Fail,
}

impl ClusterClient {
    /// The cluster's nodes and where the named topics' partitions live (every topic
    /// when `topics` is empty), from the metadata leader if known. The answer also
    /// refreshes the cache.
    pub fn metadata(&mut self, topics: &[&str]) -> Result<(Vec<NodeInfo>, Vec<TopicMetadata>)> {
        let (via, (nodes, answered)) = self.run_dest(Dest::Catalogue, |c| c.metadata(topics))?;
        let now_ms = self.now_ms();
        self.topics
            .update(nodes.clone(), answered.clone(), &via, now_ms);
        Ok((nodes, answered))
    }

    /// Every topic, with its partitions (Metadata without names).
    pub fn list_topics(&mut self) -> Result<Vec<TopicMetadata>> {
        self.metadata(&[]).map(|(_, topics)| topics)
    }

    /// `topic`'s partition count (cached, else asked).
    pub fn partition_count(&mut self, topic: &str) -> Result<u32> {
        let now_ms = self.now_ms();
        if !self.topics.is_fresh(topic, now_ms) {
            self.refresh_topic(topic)?;
        }
        self.topics
            .partition_count(topic)
            .ok_or_else(|| topic_error(topic, ErrorCode::UnknownTopic))
    }

    /// Appends one record to `target` at its leader; returns its offset once
    /// committed.
    pub fn produce_to(&mut self, target: &TopicPartition, value: &[u8]) -> Result<Offset> {
        self.run_dest(Dest::Partition(target, Route::Write), |c| {
            c.produce_to(target, value)
        })
        .map(|(_, o)| o)
    }

    /// Appends records to `target` at contiguous offsets (all or none); returns the
    /// first offset.
    pub fn produce_batch_to(
        &mut self,
        target: &TopicPartition,
        values: &[&[u8]],
    ) -> Result<Offset> {
        self.run_dest(Dest::Partition(target, Route::Write), |c| {
            c.produce_batch_to(target, values)
        })
        .map(|(_, o)| o)
    }

    /// Appends one record to a partition of `topic` chosen by the partitioner
    /// (round-robin; see [`Partitioner`]); returns the partition and the offset.
    pub fn produce_to_topic(&mut self, topic: &str, value: &[u8]) -> Result<(u32, Offset)> {
        let target = self.next_partition(topic)?;
        let offset = self.produce_to(&target, value)?;
        Ok((target.partition, offset))
    }

    /// Appends a batch to one partition of `topic` chosen by the partitioner; returns
    /// the partition and the first offset.
    pub fn produce_batch_to_topic(
        &mut self,
        topic: &str,
        values: &[&[u8]],
    ) -> Result<(u32, Offset)> {
        let target = self.next_partition(topic)?;
        let offset = self.produce_batch_to(&target, values)?;
        Ok((target.partition, offset))
    }

    /// The partition the partitioner picks for the next record of `topic`.
    pub fn next_partition(&mut self, topic: &str) -> Result<TopicPartition> {
        let count = self.partition_count(topic)?;
        Ok(TopicPartition::new(topic, self.partitioner.pick(count)))
    }

    /// The first record of `target` at an offset ≥ `offset`, from one of its
    /// replicas in turn.
    pub fn consume_from(&mut self, target: &TopicPartition, offset: Offset) -> Result<Record> {
        self.run_dest(Dest::Partition(target, Route::Read), |c| {
            c.consume_from(target, offset)
        })
        .map(|(_, r)| r)
    }

    /// Records of `target` from `offset` on (see [`Client::fetch`]), from one of its
    /// replicas in turn (Fetch v1 with one partition; version 0 for the default
    /// topic).
    pub fn fetch_from(
        &mut self,
        target: &TopicPartition,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<FetchResult> {
        if target.is_default() {
            return self.fetch(offset, max_bytes, max_wait_ms);
        }
        let asked = [FetchPartition {
            target: target.clone(),
            offset,
            max_bytes,
        }];
        self.run_dest(Dest::Partition(target, Route::Read), |c| {
            let answered = c.fetch_partitions(&asked, max_bytes, max_wait_ms)?;
            one_partition(answered, target)
        })
        .map(|(_, f)| f)
    }

    /// Creates topic `name` at the metadata leader; returns it as created.
    pub fn create_topic(
        &mut self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicDescription> {
        self.topics.invalidate(name);
        let mut attempts = 0u32;
        let created = self.run_dest(Dest::Admin, |c| {
            attempts += 1;
            c.create_topic(name, settings)
        });
        match created {
            Ok((_, d)) => Ok(d),
            // A retry after an attempt whose answer was lost (a timeout while the
            // cluster created many partitions) finds the topic: if it is the one
            // asked for, that attempt created it.
            Err(e) if attempts > 1 && e.code() == Some(ErrorCode::TopicExists) => {
                match self.describe_topic(name) {
                    Ok(d)
                        if d.settings.partitions == settings.partitions.max(1)
                            && d.settings.replication == settings.replication =>
                    {
                        Ok(d)
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Topic `name`'s settings and partitions.
    pub fn describe_topic(&mut self, name: &str) -> Result<TopicDescription> {
        self.run_dest(Dest::Catalogue, |c| c.describe_topic(name))
            .map(|(_, d)| d)
    }

    /// Changes topic `name`'s settings at the metadata leader; returns it as altered.
    pub fn alter_topic(&mut self, name: &str, changes: TopicChanges) -> Result<TopicDescription> {
        self.topics.invalidate(name);
        self.run_dest(Dest::Admin, |c| c.alter_topic(name, changes))
            .map(|(_, d)| d)
    }

    /// Deletes topic `name` (and its records) at the metadata leader.
    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        self.topics.invalidate(name);
        self.run_dest(Dest::Admin, |c| c.delete_topic(name))
            .map(|(_, ())| ())
    }

    /// A new connection of its own to `target`'s leader as the metadata names it
    /// (its first replica while the leader is unknown), for pipelining (e.g. `clog
    /// bench`). It does not follow leader changes: see [`ClusterClient::forget_topic`].
    pub fn partition_connection(&mut self, target: &TopicPartition) -> Result<Client> {
        if target.is_default() {
            return self.leader_connection();
        }
        let addr = self.pick(Dest::Partition(target, Route::Write))?;
        Client::connect_with(addr.as_str(), self.options_for(&addr))
    }

    /// A new connection of its own to one of `target`'s replicas (taken in turn, as
    /// reads are), for pipelined reading (e.g. `clog bench --consume`); for the
    /// default topic's partition 0, [`ClusterClient::read_connection`]. It does not
    /// follow replica changes: see [`ClusterClient::forget_topic`].
    pub fn partition_read_connection(&mut self, target: &TopicPartition) -> Result<Client> {
        if target.is_default() {
            return self.read_connection();
        }
        let addr = self.pick(Dest::Partition(target, Route::Read))?;
        Client::connect_with(addr.as_str(), self.options_for(&addr))
    }

    /// Forget what is cached about `topic` (e.g. after its leader moved): the next
    /// call asks for its metadata again.
    pub fn forget_topic(&mut self, topic: &str) {
        self.topics.invalidate(topic);
    }

    /// Milliseconds since this client was made: the cache's clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Asks for `topic`'s metadata; a topic answered with an error fails with it.
    fn refresh_topic(&mut self, topic: &str) -> Result<()> {
        let (_, answered) = self.metadata(&[topic])?;
        match answered.iter().find(|t| t.name == topic) {
            Some(t) if t.error != ErrorCode::None => Err(topic_error(topic, t.error)),
            Some(_) => Ok(()),
            None => Err(ClientError::Protocol(format!(
                "the Metadata answer does not mention topic {topic}"
            ))),
        }
    }

    /// Runs `op` where `dest` says, retrying as the module doc says.
    pub(super) fn run_dest<T>(
        &mut self,
        dest: Dest<'_>,
        mut op: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<(String, T)> {
        if let Dest::Partition(target, route) = dest {
            if target.is_default() {
                return self.run(route, op);
            }
        }
        let started = Instant::now();
        let mut backoff = Backoff::new(self.config.retry.clone());
        let mut forced: Option<String> = None;
        let mut refreshed = false;
        // Bounded by `backoff`: every pass returns or consumes an attempt.
        loop {
            let target = match forced.take() {
                Some(t) => t,
                None => self.pick(dest)?,
            };
            let err = match self.conn(&target).and_then(&mut op) {
                Ok(v) => {
                    self.forget_failure(&target);
                    self.last_served_by = Some(target.clone());
                    return Ok((target, v));
                }
                Err(e) => e,
            };
            log::debug!("attempt {} at {target} failed: {err}", backoff.attempts());
            match self.after_failure(dest, &target, &err, refreshed) {
                Step::Fail => return Err(err),
                Step::Now(next) if backoff.try_immediate(started.elapsed()) => {
                    self.retries += 1;
                    forced = Some(next);
                    continue;
                }
                Step::Now(_) | Step::Wait => {}
            }
            refreshed |= err.code() == Some(ErrorCode::UnknownTopic);
            match backoff.next_delay(started.elapsed(), self.jitter.next_u64()) {
                Some(wait) => {
                    self.retries += 1;
                    std::thread::sleep(wait);
                }
                None => return Err(give_up(err, backoff.attempts(), started.elapsed())),
            }
        }
    }

    /// The address for the next attempt at `dest`. A partition whose metadata is
    /// missing or old is asked for first; an identity that may not `describe` it
    /// routes as for the default topic (the member list, then hints).
    fn pick(&mut self, dest: Dest<'_>) -> Result<String> {
        if self.router.is_stale() {
            if let Err(e) = self.refresh() {
                log::debug!("member list refresh failed: {e}");
            }
        }
        let picked = match dest {
            Dest::Partition(target, route) => {
                let now_ms = self.now_ms();
                if !self.topic_metadata_denied && !self.topics.is_fresh(&target.topic, now_ms) {
                    match self.refresh_topic(&target.topic) {
                        Ok(()) => {}
                        Err(e) if e.code() == Some(ErrorCode::PermissionDenied) => {
                            log::debug!("Metadata refused ({e}); routing by the member list");
                            self.topic_metadata_denied = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
                match route {
                    Route::Write => self.topics.write_target(target),
                    Route::Read => self.topics.read_target(target),
                }
                .or_else(|| match route {
                    Route::Write => self.router.write_target(),
                    Route::Read => self.router.read_target(),
                })
            }
            Dest::Catalogue | Dest::Admin => self
                .topics
                .admin_target()
                .map(str::to_string)
                .or_else(|| self.router.write_target()),
        };
        picked.ok_or_else(no_server)
    }

    /// Updates the beliefs after `err` from `target` and says what follows.
    fn after_failure(
        &mut self,
        dest: Dest<'_>,
        target: &str,
        err: &ClientError,
        refreshed: bool,
    ) -> Step {
        let from_leader = match dest {
            Dest::Partition(t, _) => self.topics.is_leader(t, target),
            Dest::Catalogue | Dest::Admin => true,
        };
        match (classify_topic(err, from_leader, refreshed), dest) {
            (Next::Fail, _) => Step::Fail,
            (Next::RefreshMetadata, Dest::Partition(t, _)) => {
                self.topics.invalidate(&t.topic);
                Step::Wait
            }
            (Next::RefreshMetadata, _) => Step::Fail,
            (Next::FollowLeader(_), Dest::Partition(t, _)) => self
                .topics
                .follow_hint(t, target, err.leader_hint())
                .map_or(Step::Wait, Step::Now),
            (Next::FollowLeader(_), Dest::Catalogue | Dest::Admin) => self
                .topics
                .follow_admin_hint(target, err.leader_hint())
                .map_or(Step::Wait, Step::Now),
            (Next::AskLeader, Dest::Partition(t, _)) => match self.topics.write_target(t) {
                Some(leader) if leader != target => Step::Now(leader),
                _ => Step::Fail,
            },
            (Next::AskLeader, _) => Step::Fail,
            (Next::Retry { drop_conn }, dest) => {
                if drop_conn {
                    self.conns.remove(target);
                }
                self.note_failure(target);
                self.router.on_failure(target);
                match dest {
                    Dest::Partition(t, _) => self.topics.invalidate(&t.topic),
                    Dest::Catalogue | Dest::Admin => self.topics.admin_failed(target),
                }
                Step::Wait
            }
        }
    }
}

/// The error of a topic a Metadata answer refused.
fn topic_error(topic: &str, code: ErrorCode) -> ClientError {
    let message = match code {
        ErrorCode::UnknownTopic => format!("no topic named {topic}"),
        ErrorCode::PermissionDenied => format!("may not describe topic {topic}"),
        other => format!("topic {topic}: {other}"),
    };
    ClientError::Server {
        code,
        message,
        leader_hint: None,
    }
}

/// The one partition of a Fetch v1 answer asked for `target`, as a [`FetchResult`]
/// (its error as the call's error).
fn one_partition(answered: Vec<FetchedPartition>, target: &TopicPartition) -> Result<FetchResult> {
    let Some(p) = answered.into_iter().find(|p| &p.target == target) else {
        return Err(ClientError::Protocol(format!(
            "the Fetch answer does not mention {target}"
        )));
    };
    match p.error {
        Some(body) => Err(ClientError::from_body(body)),
        None => Ok(FetchResult {
            high_watermark: p.high_watermark,
            records: p.records.into_iter().map(Record::from).collect(),
        }),
    }
}
