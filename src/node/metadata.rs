//! The metadata group's state machine on a node: applies the committed entries of
//! group 0's log to the [`Catalogue`] in log order (catalogue commands are its data
//! entries; configuration entries tell which voters it has), keeps the result in
//! `meta/catalogue.state` (written atomically after each applied batch, so a restart
//! replays only what came after), and remembers the outcome of recent commands so
//! the node that proposed one can answer its client.
//!
//! The voters at each applied index are tracked because a new partition replicated
//! on every voter ([`crate::catalogue::Replication::All`]) starts with the metadata
//! group's voters of the moment its command was committed: the same on every node,
//! since it is a function of the committed log prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bytes::ByteReader;
use crate::catalogue::{
    Applied, Catalogue, CatalogueError, Change, Command, CursorResults, ProducerGrant,
};
use crate::raft::Membership;
use crate::storage::{Log, Offset, StorageError};
use crate::types::{NodeId, RecordKind};

/// The applied catalogue's file in the metadata group's directory.
pub(crate) const CATALOGUE_FILE: &str = "catalogue.state";
const FILE_VERSION: u8 = 1;
/// Outcomes kept for proposers (oldest dropped first).
const MAX_OUTCOMES: usize = 1024;
/// Record bytes read per round while applying.
const READ_BYTES: u64 = 1 << 20;

/// What a committed command did, for the node that proposed it.
pub(crate) type Outcome = Result<Change, CatalogueError>;

/// The node's catalogue and how far it applied the metadata log.
pub(crate) struct Metadata {
    catalogue: Catalogue,
    /// The metadata group's voters as of `catalogue.applied()`.
    voters: Vec<NodeId>,
    dir: PathBuf,
    outcomes: BTreeMap<u64, Outcome>,
    /// Outcomes of applied cursor commands, for their proposers (bounded as
    /// `outcomes`).
    cursor_outcomes: BTreeMap<u64, CursorResults>,
    /// Producer ids handed out by recent InitProducer commands, for their proposers.
    grants: BTreeMap<u64, ProducerGrant>,
    /// The entry applying stopped at (logged once).
    undecodable: Option<u64>,
}

impl Metadata {
    /// Reads the persisted catalogue of `dir` (none yet: an empty one whose voters
    /// are `initial_voters`, the metadata group's starting configuration).
    pub(crate) fn load(dir: &Path, initial_voters: Vec<NodeId>) -> Result<Metadata, String> {
        let path = dir.join(CATALOGUE_FILE);
        let (catalogue, voters) = match std::fs::read(&path) {
            Ok(bytes) => match decode_file(&bytes) {
                Ok(applied) => applied,
                // The metadata log is never cut, so the catalogue can be rebuilt
                // from it (groups already here are reopened as their commands are
                // applied again).
                Err(e) => {
                    log::warn!(
                        "the catalogue {} is unreadable ({e}); rebuilding it from the \
                         metadata log",
                        path.display()
                    );
                    (Catalogue::with_default_topic(), initial_voters)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (Catalogue::with_default_topic(), initial_voters)
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Metadata {
            catalogue,
            voters,
            dir: dir.to_path_buf(),
            outcomes: BTreeMap::new(),
            cursor_outcomes: BTreeMap::new(),
            grants: BTreeMap::new(),
            undecodable: None,
        })
    }

    pub(crate) fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The metadata group's voters as of the last applied entry.
    pub(crate) fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Applies the entries of the metadata `log` from the first unapplied one up to
    /// (not including) `hw`, in order. Stops early at a damaged entry (it is applied
    /// once healed). Returns what changed, in log order.
    pub(crate) fn apply_committed(&mut self, log: &Log, hw: Offset) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut at = Offset(self.catalogue.applied() + 1).max(log.first_offset());
        while at < hw {
            let mut next = at;
            let read = log.read_range_with(at, READ_BYTES, |r| {
                if r.offset >= hw {
                    return false;
                }
                match self.apply_entry(r.offset.0, r.kind, r.value) {
                    Ok(change) => changes.extend(change),
                    Err(()) => return false,
                }
                next = Offset(r.offset.0 + 1);
                true
            });
            if let Err(e) = read {
                log_read_error(at, &e);
                break;
            }
            if next == at {
                break;
            }
            at = next;
        }
        changes
    }

    /// Applies one committed entry; returns the change a command made. A command
    /// this version cannot decode (a newer format, or bytes no version wrote) stops
    /// the applying there: skipping it would let this node's catalogue differ from
    /// the nodes that understand it.
    fn apply_entry(
        &mut self,
        index: u64,
        kind: RecordKind,
        value: &[u8],
    ) -> Result<Option<Change>, ()> {
        match kind {
            RecordKind::NoOp => self.catalogue.skip(index),
            RecordKind::Config => {
                // The voters decide new partitions' first configuration: an entry
                // this version cannot read stops the applying like a command would.
                let m = Membership::decode(value).map_err(|e| self.stuck(index, &e))?;
                self.voters = m.voters.iter().copied().collect();
                self.catalogue.skip(index);
            }
            RecordKind::Data => {
                let cmd = Command::decode(value).map_err(|e| self.stuck(index, &e))?;
                let change = match self.catalogue.apply(index, &cmd) {
                    Ok(Applied::AlreadyApplied) => return Ok(None),
                    Ok(Applied::Producer(grant)) => {
                        self.grants.insert(index, grant);
                        while self.grants.len() > MAX_OUTCOMES {
                            self.grants.pop_first();
                        }
                        return Ok(None);
                    }
                    Ok(Applied::Changed(change)) => Ok(change),
                    Ok(Applied::Cursors(results)) => {
                        self.cursor_outcomes.insert(index, results);
                        while self.cursor_outcomes.len() > MAX_OUTCOMES {
                            self.cursor_outcomes.pop_first();
                        }
                        return Ok(None);
                    }
                    Err(e) => {
                        // Refused (identically on every node): applied all the same.
                        self.catalogue.skip(index);
                        log::info!("metadata entry {index}: refused: {e}");
                        Err(e)
                    }
                };
                self.remember(index, change.clone());
                return Ok(change.ok());
            }
            RecordKind::DataV1
            | RecordKind::ProducerBatch
            | RecordKind::DataV1Batch
            | RecordKind::CompactedBatchStart => {
                // Producers never write to the metadata group.
                self.stuck(index, &format!("a {kind:?} entry in the metadata log"));
                return Err(());
            }
        }
        Ok(None)
    }

    /// Applying stops at `index` (logged once per entry).
    fn stuck(&mut self, index: u64, why: &dyn std::fmt::Display) {
        if self.undecodable != Some(index) {
            self.undecodable = Some(index);
            log::error!(
                "metadata entry {index} is not one this version understands ({why}); topic \
                 changes from it on are not applied here until this node runs a version \
                 that does"
            );
        }
    }

    fn remember(&mut self, index: u64, outcome: Outcome) {
        self.outcomes.insert(index, outcome);
        while self.outcomes.len() > MAX_OUTCOMES {
            self.outcomes.pop_first();
        }
    }

    /// The producer id an InitProducer committed at `index` handed out (once).
    pub(crate) fn take_grant(&mut self, index: u64) -> Option<ProducerGrant> {
        self.grants.remove(&index)
    }

    /// The outcome of the command committed at `index` (once).
    pub(crate) fn take_outcome(&mut self, index: u64) -> Option<Outcome> {
        self.outcomes.remove(&index)
    }

    /// The outcome of the cursor command committed at `index` (once): its results,
    /// or why the whole command was refused.
    pub(crate) fn take_cursor_outcome(
        &mut self,
        index: u64,
    ) -> Option<Result<CursorResults, CatalogueError>> {
        if let Some(results) = self.cursor_outcomes.remove(&index) {
            return Some(Ok(results));
        }
        match self.outcomes.remove(&index)? {
            Err(e) => Some(Err(e)),
            // A topic command at that index: not ours to answer as a cursor command.
            Ok(_) => None,
        }
    }

    /// Writes the applied catalogue (atomic rename, fsynced):
    /// `u8 version | u32 crc32c(rest) | u32 n | n × u64 voter | catalogue snapshot`.
    pub(crate) fn persist(&self) -> Result<(), String> {
        let mut rest = Vec::new();
        rest.extend_from_slice(&(self.voters.len() as u32).to_be_bytes());
        for v in &self.voters {
            rest.extend_from_slice(&v.0.to_be_bytes());
        }
        self.catalogue.encode_snapshot(&mut rest);
        let mut bytes = Vec::with_capacity(rest.len() + 5);
        bytes.push(FILE_VERSION);
        bytes.extend_from_slice(&crc32c::crc32c(&rest).to_be_bytes());
        bytes.extend_from_slice(&rest);
        super::meta::write_atomic(&self.dir, CATALOGUE_FILE, &bytes).map_err(|e| e.to_string())
    }
}

fn log_read_error(at: Offset, e: &StorageError) {
    // Damage is healed from a peer (the healer has it from the read); the entry is
    // applied once it reads intact.
    log::warn!("metadata log unreadable at {at}: {e}; applying it once healed");
}

fn decode_file(bytes: &[u8]) -> Result<(Catalogue, Vec<NodeId>), String> {
    let mut r = ByteReader::new(bytes);
    let version = r.u8("version").map_err(|e| e.to_string())?;
    if version != FILE_VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let crc = r.u32("checksum").map_err(|e| e.to_string())?;
    let rest = r.rest();
    if crc32c::crc32c(rest) != crc {
        return Err("checksum mismatch (the file is damaged)".into());
    }
    let mut r = ByteReader::new(rest);
    let n = r.count_u32(8, "voters").map_err(|e| e.to_string())?;
    let mut voters = Vec::with_capacity(n);
    for _ in 0..n {
        voters.push(NodeId(r.u64("voter").map_err(|e| e.to_string())?));
    }
    let catalogue = Catalogue::decode_snapshot(r.rest()).map_err(|e| e.to_string())?;
    Ok((catalogue, voters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Replication, TopicName, TopicSettings};
    use crate::storage::tests::TempDir;
    use crate::storage::{LogConfig, NewRecord};
    use crate::types::{GroupId, Term};

    fn create(name: &str, partitions: u32) -> Vec<u8> {
        let settings = TopicSettings {
            partitions,
            replication: Replication::Factor(1),
            ..TopicSettings::default()
        };
        let cmd = Command::CreateTopic {
            name: TopicName::parse(name).expect("name"),
            settings,
            assignment: vec![vec![NodeId(1)]; partitions as usize],
        };
        cmd.to_bytes()
    }

    fn config(voters: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        Membership::with_voters(voters.iter().copied()).encode(&mut out);
        out
    }

    fn append(log: &Log, kind: RecordKind, value: &[u8]) -> Offset {
        let r = NewRecord {
            term: Term(1),
            kind,
            value,
        };
        log.append_batch(&[r]).expect("append")
    }

    #[test]
    fn applies_committed_entries_in_order_remembers_outcomes_and_persists() {
        let dir = TempDir::new("metadata-apply");
        let cfg = LogConfig {
            initial_offset: Offset(1),
            ..LogConfig::default()
        };
        let log = Log::open(&dir.path().join("log"), cfg).expect("open");
        append(&log, RecordKind::NoOp, b"");
        append(&log, RecordKind::Config, &config(&[1, 2, 3]));
        let orders = append(&log, RecordKind::Data, &create("orders", 2));
        let again = append(&log, RecordKind::Data, &create("orders", 1));
        let later = append(&log, RecordKind::Data, &create("later", 1));
        let mut m = Metadata::load(dir.path(), vec![NodeId(1)]).expect("load");
        assert!(
            m.catalogue().topic("default").is_some(),
            "starts with `default`"
        );

        // Only entries below the high-water mark are applied.
        let changes = m.apply_committed(&log, later);
        assert_eq!(
            changes.len(),
            1,
            "orders created; the second create refused"
        );
        assert_eq!(changes[0].created.len(), 2);
        assert_eq!(changes[0].created[0].group, GroupId(2));
        assert_eq!(m.voters(), [NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(m.catalogue().applied(), again.0);
        assert!(m.take_outcome(orders.0).is_some_and(|o| o.is_ok()));
        assert!(m.take_outcome(again.0).is_some_and(|o| o.is_err()));
        assert!(
            m.take_outcome(orders.0).is_none(),
            "an outcome is taken once"
        );
        assert!(m.catalogue().topic("later").is_none());

        // Persisted and reloaded: nothing is applied twice, the rest is.
        m.persist().expect("persist");
        let mut m = Metadata::load(dir.path(), vec![NodeId(9)]).expect("reload");
        assert_eq!(m.voters(), [NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(
            m.catalogue().topic("orders").map(|t| t.partitions.len()),
            Some(2)
        );
        let changes = m.apply_committed(&log, Offset(later.0 + 1));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].topic.as_str(), "later");
        assert_eq!(
            changes[0].created[0].group,
            GroupId(4),
            "group ids continue"
        );
    }

    #[test]
    fn cursor_commands_are_applied_and_their_outcomes_kept_for_the_proposer() {
        use crate::catalogue::{CursorCommit, GroupName};
        let dir = TempDir::new("metadata-cursors");
        let cfg = LogConfig {
            initial_offset: Offset(1),
            ..LogConfig::default()
        };
        let log = Log::open(&dir.path().join("log"), cfg).expect("open");
        append(&log, RecordKind::Data, &create("orders", 1));
        let entry = |topic: &str| CursorCommit {
            topic: TopicName::parse(topic).expect("name"),
            partition: 0,
            offset: 9,
            metadata: Vec::new(),
        };
        let commit = Command::CommitOffsets {
            group: GroupName::parse("g").expect("group"),
            offsets: vec![entry("orders"), entry("nope")],
        };
        let at = append(&log, RecordKind::Data, &commit.to_bytes());
        let mut m = Metadata::load(dir.path(), vec![NodeId(1)]).expect("load");
        let changes = m.apply_committed(&log, Offset(at.0 + 1));
        assert_eq!(changes.len(), 1, "only the topic creation changes groups");
        assert_eq!(m.catalogue().min_cursor("orders", 0), Some(9));
        let results = m.take_cursor_outcome(at.0).expect("kept").expect("applied");
        assert!(results[0].2.is_ok());
        assert!(results[1].2.is_err(), "no topic nope");
        assert!(m.take_cursor_outcome(at.0).is_none(), "taken once");

        // Persisted with the catalogue.
        m.persist().expect("persist");
        let m = Metadata::load(dir.path(), vec![NodeId(1)]).expect("reload");
        assert_eq!(m.catalogue().min_cursor("orders", 0), Some(9));
    }

    #[test]
    fn an_undecodable_command_stops_applying_there() {
        let dir = TempDir::new("metadata-undecodable");
        let cfg = LogConfig {
            initial_offset: Offset(1),
            ..LogConfig::default()
        };
        let log = Log::open(&dir.path().join("log"), cfg).expect("open");
        let first = append(&log, RecordKind::Data, &create("first", 1));
        let bad = append(&log, RecordKind::Data, &[99, 1, 2, 3]);
        let after = append(&log, RecordKind::Data, &create("after", 1));
        let mut m = Metadata::load(dir.path(), vec![NodeId(1)]).expect("load");
        let changes = m.apply_committed(&log, Offset(after.0 + 1));
        assert_eq!(changes.len(), 1);
        assert_eq!(m.catalogue().applied(), first.0, "stopped before {bad:?}");
        assert!(m.catalogue().topic("after").is_none());
    }

    #[test]
    fn a_damaged_catalogue_file_is_rebuilt_from_the_log() {
        let dir = TempDir::new("metadata-damaged");
        let fresh = |dir: &Path| {
            let m = Metadata::load(dir, vec![NodeId(5)]).expect("a damaged file is not fatal");
            m.catalogue().applied() == 0 && m.voters() == [NodeId(5)]
        };
        std::fs::write(dir.path().join(CATALOGUE_FILE), [FILE_VERSION, 0, 0]).expect("write");
        assert!(fresh(dir.path()), "replayed from the start");
        std::fs::write(dir.path().join(CATALOGUE_FILE), [7u8]).expect("write");
        assert!(fresh(dir.path()));
        // A flipped bit anywhere is caught by the checksum.
        let m = Metadata::load(dir.path().join("fresh").as_path(), vec![NodeId(1)]);
        let m = Metadata {
            dir: dir.path().to_path_buf(),
            ..m.expect("fresh")
        };
        m.persist().expect("persist");
        let path = dir.path().join(CATALOGUE_FILE);
        let good = std::fs::read(&path).expect("read");
        let loaded = Metadata::load(dir.path(), vec![NodeId(5)]).expect("load");
        assert_eq!(loaded.voters(), [NodeId(1)], "the file's voters");
        for i in 1..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).expect("write");
            assert!(fresh(dir.path()), "flip at {i} is caught");
        }
    }
}
