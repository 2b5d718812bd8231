//! Small metadata files of a cluster node, written atomically.
//!
//! # Files (in the node's data directory)
//! * `node.meta` — the node's identity: node id, cluster name, and how the data dir
//!   was created (bootstrap or join). Written once, on first start.
//! * `raft.hardstate` — Raft's term, vote and a commit index (a lower bound of the
//!   real commit index, see `raft_storage`).
//! * `raft.logstart` — the log-start ("snapshot") record: the log starts after
//!   `index`, whose term and configuration are recorded here.
//! * `raft.recovering` — present while the node must not vote (it lost log entries
//!   and is catching up from a leader); removed once caught up.
//! * `raft.configs` — where the log's configuration entries are, up to an index
//!   ([`ConfigIndex`]), so start-up reads only the log's tail, not the whole log.
//! * `gossip.seeds` — gossip addresses of the members last seen alive (at most
//!   [`MAX_SEEDS`], one per line), used as extra join seeds after a restart so a
//!   node whose flags name no live seed (the first node, restarted with
//!   `--bootstrap`) still finds the cluster.
//!
//! # Format
//! Every file is one record:
//! `magic "CLGM" | u8 format version (1) | u8 kind | u32 payload length | payload |
//! u32 crc32c(kind byte .. end of payload)`, integers big-endian. A file with a bad
//! magic, unknown version, wrong kind, impossible length, trailing bytes or a crc
//! mismatch is reported as [`MetaError::Corrupt`] naming the file: a node never
//! guesses its term or vote.
//!
//! # Atomic update (etcd#13766)
//! [`write_atomic`]: write `<name>.tmp`, fsync it, rename it over `<name>`, fsync the
//! directory. A crash leaves either the old or the new file, never a mix; a leftover
//! `.tmp` is ignored (and overwritten by the next write).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::bytes::{ByteReader, ReadError, TrailingBytes};
use crate::raft::{HardState, Index, LogStart, Membership, NodeId, Term};
use crate::replica::dedup_log::MAX_FLOOR_EPOCHS;
use crate::replica::ProducerFloor;

/// Name of the identity file.
pub const IDENTITY_FILE: &str = "node.meta";
/// Name of the hard-state file.
pub const HARD_STATE_FILE: &str = "raft.hardstate";
/// Name of the log-start file.
pub const LOG_START_FILE: &str = "raft.logstart";
/// Name of the dedup producer floor file (a partition's `meta` directory).
pub const PRODUCER_FLOOR_FILE: &str = "dedup.floor";
/// Name of the file with the gossip addresses of the last known members.
pub const SEEDS_FILE: &str = "gossip.seeds";
/// Most addresses kept in the seeds file.
pub const MAX_SEEDS: usize = 64;

const MAGIC: &[u8; 4] = b"CLGM";
const FORMAT_VERSION: u8 = 1;
/// Header: magic, version, kind, payload length.
const HEADER_BYTES: usize = 4 + 1 + 1 + 4;
/// Largest payload any metadata file holds (a configuration of 1024 members is ~16 KiB).
const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

const KIND_IDENTITY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_LOG_START: u8 = 3;
const KIND_SEEDS: u8 = 4;
const KIND_PRODUCER_FLOOR: u8 = 6;

/// Why a metadata file could not be read or written.
#[derive(Debug)]
pub enum MetaError {
    /// The file system failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file exists but does not hold a valid record.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            MetaError::Corrupt { path, reason } => write!(
                f,
                "{} is corrupt ({reason}); the node cannot trust its Raft state: \
                 restore the file or wipe the data dir and re-add the node",
                path.display()
            ),
        }
    }
}

impl std::error::Error for MetaError {}

/// How the data directory was first initialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--bootstrap`: the first node of a new cluster.
    Bootstrap,
    /// `--join`: added to an existing cluster through gossip.
    Join,
}

/// The node's identity, stored once in `node.meta`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Node id (the gossip member id too).
    pub node_id: NodeId,
    /// Cluster name.
    pub cluster_name: String,
    /// How the data dir was created.
    pub origin: Origin,
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetaError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MetaError::Io { path: p, source }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len() + 4);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[5..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Reads `dir/name`: `Ok(None)` if it does not exist, the payload if valid.
fn read_record(dir: &Path, name: &str, kind: u8) -> Result<Option<Vec<u8>>, MetaError> {
    let path = dir.join(name);
    // Read at most one byte more than the largest valid file, so a damaged (huge)
    // file is reported as corrupt without being read into memory.
    let max_file_bytes = HEADER_BYTES + MAX_PAYLOAD_BYTES + 4;
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(file) => {
            if let Err(source) = io::Read::read_to_end(
                &mut io::Read::take(file, max_file_bytes as u64 + 1),
                &mut bytes,
            ) {
                return Err(MetaError::Io { path, source });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MetaError::Io { path, source }),
    }
    decode_record(&bytes, kind)
        .map(|payload| Some(payload.to_vec()))
        .map_err(|e| e.in_file(dir, name))
}

/// Why a record or its payload does not decode; `read_*` turn it into
/// [`MetaError::Corrupt`] naming the file.
#[derive(Debug)]
struct Invalid(String);

impl Invalid {
    fn in_file(self, dir: &Path, name: &str) -> MetaError {
        MetaError::Corrupt {
            path: dir.join(name),
            reason: self.0,
        }
    }
}

impl From<ReadError> for Invalid {
    fn from(e: ReadError) -> Invalid {
        Invalid(e.to_string())
    }
}

impl From<TrailingBytes> for Invalid {
    fn from(e: TrailingBytes) -> Invalid {
        Invalid(e.to_string())
    }
}

/// Checks a whole file (header, length, crc) and returns its payload.
fn decode_record(bytes: &[u8], kind: u8) -> Result<&[u8], Invalid> {
    if bytes.len() < HEADER_BYTES + 4 {
        return Err(Invalid(format!("{} bytes is too short", bytes.len())));
    }
    let mut r = ByteReader::new(bytes);
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(Invalid("bad magic".into()));
    }
    let version = r.u8("format version")?;
    if version != FORMAT_VERSION {
        return Err(Invalid(format!("unknown format version {version}")));
    }
    let stored_kind = r.u8("record kind")?;
    if stored_kind != kind {
        return Err(Invalid(format!(
            "holds record kind {stored_kind}, expected {kind}"
        )));
    }
    let len = r.u32("payload length")? as usize;
    if len > MAX_PAYLOAD_BYTES || r.remaining() != len + 4 {
        return Err(Invalid(format!(
            "payload length {len} does not match the file size {}",
            bytes.len()
        )));
    }
    let payload = r.take(len, "payload")?;
    let stored_crc = r.u32("checksum")?;
    r.finish("checksum")?;
    // The crc covers the kind byte through the end of the payload.
    if crc32c::crc32c(&bytes[5..HEADER_BYTES + len]) != stored_crc {
        return Err(Invalid("checksum mismatch".into()));
    }
    Ok(payload)
}

/// Writes the identity file.
pub fn write_identity(dir: &Path, id: &Identity) -> Result<(), MetaError> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.node_id.0.to_be_bytes());
    p.push(match id.origin {
        Origin::Bootstrap => 0,
        Origin::Join => 1,
    });
    p.extend_from_slice(id.cluster_name.as_bytes());
    write_atomic(dir, IDENTITY_FILE, &encode(KIND_IDENTITY, &p))
}

/// Reads the identity file (`None` if the data dir has none yet).
pub fn read_identity(dir: &Path) -> Result<Option<Identity>, MetaError> {
    let Some(p) = read_record(dir, IDENTITY_FILE, KIND_IDENTITY)? else {
        return Ok(None);
    };
    decode_identity(&p)
        .map(Some)
        .map_err(|e| e.in_file(dir, IDENTITY_FILE))
}

/// `node_id:u64 | origin:u8 | cluster name (UTF-8, the rest)`.
fn decode_identity(p: &[u8]) -> Result<Identity, Invalid> {
    let mut r = ByteReader::new(p);
    let node_id = NodeId(r.u64("node id")?);
    let origin = match r.u8("origin")? {
        0 => Origin::Bootstrap,
        1 => Origin::Join,
        other => return Err(Invalid(format!("unknown origin {other}"))),
    };
    let cluster_name = r.str(r.remaining(), "cluster name")?.to_string();
    Ok(Identity {
        node_id,
        cluster_name,
        origin,
    })
}

/// Writes the hard state file.
pub fn write_hard_state(dir: &Path, hs: &HardState) -> Result<(), MetaError> {
    let mut p = Vec::with_capacity(25);
    p.extend_from_slice(&hs.term.0.to_be_bytes());
    p.extend_from_slice(&hs.vote.map_or(0, |v| v.0).to_be_bytes());
    p.extend_from_slice(&hs.commit.0.to_be_bytes());
    write_atomic(dir, HARD_STATE_FILE, &encode(KIND_HARD_STATE, &p))
}

/// Reads the hard state (`None` if never written).
pub fn read_hard_state(dir: &Path) -> Result<Option<HardState>, MetaError> {
    let Some(p) = read_record(dir, HARD_STATE_FILE, KIND_HARD_STATE)? else {
        return Ok(None);
    };
    decode_hard_state(&p)
        .map(Some)
        .map_err(|e| e.in_file(dir, HARD_STATE_FILE))
}

/// `term:u64 | vote:u64 (0 = none) | commit:u64`, exactly.
fn decode_hard_state(p: &[u8]) -> Result<HardState, Invalid> {
    let mut r = ByteReader::new(p);
    let term = Term(r.u64("term")?);
    let vote = r.u64("vote")?;
    let commit = Index(r.u64("commit")?);
    r.finish("hard state")?;
    Ok(HardState {
        term,
        vote: (vote != 0).then_some(NodeId(vote)),
        commit,
    })
}

/// Writes the log-start file.
pub fn write_log_start(dir: &Path, start: &LogStart) -> Result<(), MetaError> {
    let mut p = Vec::new();
    p.extend_from_slice(&start.index.0.to_be_bytes());
    p.extend_from_slice(&start.term.0.to_be_bytes());
    start.membership.encode(&mut p);
    write_atomic(dir, LOG_START_FILE, &encode(KIND_LOG_START, &p))
}

/// Reads the log-start record (`None` if never written).
pub fn read_log_start(dir: &Path) -> Result<Option<LogStart>, MetaError> {
    let Some(p) = read_record(dir, LOG_START_FILE, KIND_LOG_START)? else {
        return Ok(None);
    };
    decode_log_start(&p)
        .map(Some)
        .map_err(|e| e.in_file(dir, LOG_START_FILE))
}

/// `index:u64 | term:u64 | membership` (the membership fills the rest).
fn decode_log_start(p: &[u8]) -> Result<LogStart, Invalid> {
    let mut r = ByteReader::new(p);
    let index = Index(r.u64("index")?);
    let term = Term(r.u64("term")?);
    let membership =
        Membership::decode(r.rest()).map_err(|e| Invalid(format!("bad configuration: {e}")))?;
    Ok(LogStart {
        index,
        term,
        membership,
    })
}

/// Writes the dedup producer floor (`replica::dedup_log::ProducerFloor`: the highest
/// producer id whose batches a move of the log start may have removed, and the
/// newest epoch of each producer then known). Layout: `u64 high`, then (since the
/// epochs) `u32 n`, n x (`u64 id`, `u16 epoch`); a file of the `u64` alone (written
/// by earlier builds) reads as no epochs.
pub fn write_producer_floor(dir: &Path, floor: &ProducerFloor) -> Result<(), MetaError> {
    let mut p = Vec::with_capacity(12 + 10 * floor.epochs.len());
    p.extend_from_slice(&floor.high.to_be_bytes());
    let n = floor.epochs.len().min(MAX_FLOOR_EPOCHS);
    p.extend_from_slice(&(n as u32).to_be_bytes());
    for (id, epoch) in &floor.epochs[floor.epochs.len() - n..] {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&epoch.to_be_bytes());
    }
    write_atomic(dir, PRODUCER_FLOOR_FILE, &encode(KIND_PRODUCER_FLOOR, &p))
}

/// Reads the dedup producer floor (none if never written).
pub fn read_producer_floor(dir: &Path) -> Result<ProducerFloor, MetaError> {
    let Some(p) = read_record(dir, PRODUCER_FLOOR_FILE, KIND_PRODUCER_FLOOR)? else {
        return Ok(ProducerFloor::default());
    };
    let decode = |p: &[u8]| -> Result<ProducerFloor, Invalid> {
        let mut r = ByteReader::new(p);
        let high = r.u64("producer floor")?;
        let mut epochs = Vec::new();
        if r.remaining() > 0 {
            let n = r.u32("producer floor epochs")? as usize;
            if n > MAX_FLOOR_EPOCHS {
                return Err(Invalid(format!(
                    "{n} producer epochs (at most {MAX_FLOOR_EPOCHS})"
                )));
            }
            epochs.reserve(n);
            for _ in 0..n {
                epochs.push((r.u64("producer id")?, r.u16("producer epoch")?));
            }
        }
        r.finish("producer floor")?;
        Ok(ProducerFloor { high, epochs })
    };
    decode(&p).map_err(|e| e.in_file(dir, PRODUCER_FLOOR_FILE))
}

/// Writes the seeds file (at most [`MAX_SEEDS`] addresses).
pub fn write_seeds(dir: &Path, seeds: &[std::net::SocketAddr]) -> Result<(), MetaError> {
    let text: Vec<String> = seeds
        .iter()
        .take(MAX_SEEDS)
        .map(|a| a.to_string())
        .collect();
    write_atomic(
        dir,
        SEEDS_FILE,
        &encode(KIND_SEEDS, text.join("\n").as_bytes()),
    )
}

/// Reads the seeds file (empty if never written).
pub fn read_seeds(dir: &Path) -> Result<Vec<std::net::SocketAddr>, MetaError> {
    let Some(p) = read_record(dir, SEEDS_FILE, KIND_SEEDS)? else {
        return Ok(Vec::new());
    };
    decode_seeds(&p).map_err(|e| e.in_file(dir, SEEDS_FILE))
}

/// At most [`MAX_SEEDS`] addresses, one per line.
fn decode_seeds(p: &[u8]) -> Result<Vec<std::net::SocketAddr>, Invalid> {
    let text = std::str::from_utf8(p).map_err(|_| Invalid("not UTF-8".into()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .take(MAX_SEEDS)
        .map(|l| l.parse().map_err(|_| Invalid("bad address".into())))
        .collect()
}

/// Name of the marker a node keeps while its recovery guard holds (it lost log
/// entries and must not vote until caught up): a crash during the catch-up must not
/// bring it back as a voter with a partial log.
pub const RECOVERING_FILE: &str = "raft.recovering";

/// Writes the recovering marker (durably).
pub fn write_recovering_marker(dir: &Path) -> Result<(), MetaError> {
    write_atomic(
        dir,
        RECOVERING_FILE,
        b"recovering: no vote until caught up\n",
    )
}

/// True if the recovering marker exists.
pub fn has_recovering_marker(dir: &Path) -> bool {
    dir.join(RECOVERING_FILE).exists()
}

/// Removes the recovering marker (durably: the directory is fsynced).
pub fn remove_recovering_marker(dir: &Path) -> Result<(), MetaError> {
    let path = dir.join(RECOVERING_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(MetaError::Io { path, source }),
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MetaError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Name of the configuration-entry checkpoint (see [`ConfigIndex`]).
pub const CONFIG_INDEX_FILE: &str = "raft.configs";
const KIND_CONFIG_INDEX: u8 = 5;
/// Most configuration-entry indexes the checkpoint lists (fits the payload bound).
pub const MAX_CONFIG_INDEXES: usize = 4096;

/// Where the log's configuration entries are, so start-up need not scan the log:
/// every `Config` entry at an index <= `through` is listed, and every listed index
/// holds one. Entries above `through` are found by scanning only that tail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigIndex {
    /// The checkpoint covers the log up to here.
    pub through: Index,
    /// Indexes of `Config` entries <= `through`, ascending.
    pub indexes: Vec<Index>,
}

/// Writes the configuration-entry checkpoint (at most [`MAX_CONFIG_INDEXES`]).
pub fn write_config_index(dir: &Path, c: &ConfigIndex) -> Result<(), MetaError> {
    if c.indexes.len() > MAX_CONFIG_INDEXES {
        let too_many = Invalid("too many configuration entries".into());
        return Err(too_many.in_file(dir, CONFIG_INDEX_FILE));
    }
    let mut p = Vec::with_capacity(8 + 8 * c.indexes.len());
    p.extend_from_slice(&c.through.0.to_be_bytes());
    for i in &c.indexes {
        p.extend_from_slice(&i.0.to_be_bytes());
    }
    write_atomic(dir, CONFIG_INDEX_FILE, &encode(KIND_CONFIG_INDEX, &p))
}

/// Reads the configuration-entry checkpoint (`None` if never written).
pub fn read_config_index(dir: &Path) -> Result<Option<ConfigIndex>, MetaError> {
    let Some(p) = read_record(dir, CONFIG_INDEX_FILE, KIND_CONFIG_INDEX)? else {
        return Ok(None);
    };
    decode_config_index(&p)
        .map(Some)
        .map_err(|e| e.in_file(dir, CONFIG_INDEX_FILE))
}

/// `through:u64 | n × index:u64`, indexes ascending and <= `through`.
fn decode_config_index(p: &[u8]) -> Result<ConfigIndex, Invalid> {
    let mut r = ByteReader::new(p);
    let through = Index(r.u64("through")?);
    let n = r.checked_count((r.remaining() / 8) as u64, 8, "indexes")?;
    let mut indexes = Vec::with_capacity(n);
    for _ in 0..n {
        indexes.push(Index(r.u64("index")?));
    }
    r.finish("configuration checkpoint")?;
    let ascending = indexes.windows(2).all(|w| w[0] < w[1]);
    if !ascending || indexes.last().is_some_and(|l| *l > through) {
        return Err(Invalid("indexes out of order".into()));
    }
    Ok(ConfigIndex { through, indexes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "commitlog-meta-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn records_round_trip_and_missing_files_read_as_none() {
        let d = tmp("roundtrip");
        assert!(read_identity(&d).unwrap().is_none());
        assert!(read_hard_state(&d).unwrap().is_none());
        assert!(read_log_start(&d).unwrap().is_none());
        let id = Identity {
            node_id: NodeId(7),
            cluster_name: "prod-eu".into(),
            origin: Origin::Join,
        };
        write_identity(&d, &id).unwrap();
        assert_eq!(read_identity(&d).unwrap(), Some(id));
        let hs = HardState {
            term: Term(5),
            vote: Some(NodeId(3)),
            commit: Index(99),
        };
        write_hard_state(&d, &hs).unwrap();
        assert_eq!(read_hard_state(&d).unwrap(), Some(hs));
        let hs2 = HardState { vote: None, ..hs };
        write_hard_state(&d, &hs2).unwrap();
        assert_eq!(read_hard_state(&d).unwrap(), Some(hs2), "overwrite");
        let mut m = Membership::with_voters([1, 2, 3]);
        m.learners.insert(NodeId(4));
        let start = LogStart {
            index: Index(1000),
            term: Term(4),
            membership: m,
        };
        write_log_start(&d, &start).unwrap();
        assert_eq!(read_log_start(&d).unwrap(), Some(start));
        assert_eq!(
            read_producer_floor(&d).unwrap(),
            ProducerFloor::default(),
            "never written"
        );
        let floor = ProducerFloor {
            high: 41,
            epochs: vec![(3, 2), (41, 0)],
        };
        write_producer_floor(&d, &floor).unwrap();
        assert_eq!(read_producer_floor(&d).unwrap(), floor);
        // An earlier build's file: the id alone.
        write_atomic(
            &d,
            PRODUCER_FLOOR_FILE,
            &encode(KIND_PRODUCER_FLOOR, &9u64.to_be_bytes()),
        )
        .unwrap();
        let old = read_producer_floor(&d).unwrap();
        assert_eq!((old.high, old.epochs.len()), (9, 0));
        // A count beyond the bound is refused before anything is allocated for it.
        let mut p = 41u64.to_be_bytes().to_vec();
        p.extend_from_slice(&u32::MAX.to_be_bytes());
        write_atomic(&d, PRODUCER_FLOOR_FILE, &encode(KIND_PRODUCER_FLOOR, &p)).unwrap();
        assert!(read_producer_floor(&d).is_err());
        fs::write(d.join(PRODUCER_FLOOR_FILE), b"CLGM").unwrap();
        assert!(
            read_producer_floor(&d).is_err(),
            "a torn floor file is an error"
        );
        assert!(
            !d.join("raft.logstart.tmp").exists(),
            "temp file renamed away"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_damaged_byte_and_every_truncation_is_a_clear_error() {
        let d = tmp("corrupt");
        let hs = HardState {
            term: Term(2),
            vote: Some(NodeId(1)),
            commit: Index(10),
        };
        write_hard_state(&d, &hs).unwrap();
        let good = fs::read(d.join(HARD_STATE_FILE)).unwrap();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            fs::write(d.join(HARD_STATE_FILE), &b).unwrap();
            let err = read_hard_state(&d).unwrap_err();
            assert!(matches!(err, MetaError::Corrupt { .. }), "flip at {i}");
            assert!(err.to_string().contains("raft.hardstate"), "{err}");
        }
        for len in 0..good.len() {
            fs::write(d.join(HARD_STATE_FILE), &good[..len]).unwrap();
            assert!(read_hard_state(&d).is_err(), "cut at {len}");
        }
        // A file of another kind is refused too.
        fs::write(d.join(HARD_STATE_FILE), &good).unwrap();
        fs::copy(d.join(HARD_STATE_FILE), d.join(IDENTITY_FILE)).unwrap();
        assert!(read_identity(&d).is_err());
        // A stale temp file does not matter.
        fs::write(d.join("raft.hardstate.tmp"), b"garbage").unwrap();
        assert_eq!(read_hard_state(&d).unwrap(), Some(hs));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn payloads_decode_exactly_and_name_what_is_wrong() {
        let hs = HardState {
            term: Term(3),
            vote: None,
            commit: Index(7),
        };
        let mut p = Vec::new();
        for v in [3u64, 0, 7] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(decode_hard_state(&p).unwrap(), hs);
        let short = decode_hard_state(&p[..20]).unwrap_err();
        assert!(short.0.contains("commit needs 8 bytes"), "{short:?}");
        p.push(0);
        let long = decode_hard_state(&p).unwrap_err();
        assert!(long.0.contains("1 unexpected trailing bytes"), "{long:?}");

        let mut id = 9u64.to_be_bytes().to_vec();
        id.push(0);
        id.extend_from_slice(b"prod");
        let decoded = decode_identity(&id).unwrap();
        assert_eq!(
            (
                decoded.node_id,
                decoded.origin,
                decoded.cluster_name.as_str()
            ),
            (NodeId(9), Origin::Bootstrap, "prod")
        );
        id[8] = 2;
        assert!(decode_identity(&id)
            .unwrap_err()
            .0
            .contains("unknown origin 2"));
        id[8] = 1;
        id.push(0xff);
        assert!(decode_identity(&id).unwrap_err().0.contains("UTF-8"));

        let mut ls = [5u64.to_be_bytes(), 2u64.to_be_bytes()].concat();
        Membership::with_voters([1, 2]).encode(&mut ls);
        assert_eq!(decode_log_start(&ls).unwrap().index, Index(5));
        ls.truncate(ls.len() - 1);
        assert!(decode_log_start(&ls)
            .unwrap_err()
            .0
            .contains("bad configuration"));

        // The record header: payload length against the file size, never trusted.
        let mut file = encode(KIND_SEEDS, b"127.0.0.1:1");
        assert_eq!(decode_record(&file, KIND_SEEDS).unwrap(), b"127.0.0.1:1");
        file[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_record(&file, KIND_SEEDS)
            .unwrap_err()
            .0
            .contains("does not match the file size"));
    }

    #[test]
    fn an_oversized_file_is_corrupt_without_being_read_whole() {
        let d = tmp("oversized");
        // A sparse 1 GiB file where a few dozen bytes belong.
        let f = File::create(d.join(HARD_STATE_FILE)).unwrap();
        f.set_len(1 << 30).unwrap();
        match read_hard_state(&d) {
            Err(MetaError::Corrupt { reason, .. }) => {
                assert!(
                    reason.contains("bad magic") || reason.contains("length"),
                    "{reason}"
                )
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let _ = fs::remove_dir_all(&d);
    }
}
