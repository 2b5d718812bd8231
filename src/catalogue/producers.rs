//! Producer ids for idempotent producers (InitProducer), part of the catalogue.
//!
//! The metadata group hands them out, so every node agrees and a restarted or
//! failed-over cluster never hands one out twice: `next_id` starts at 1, only
//! grows, and is in the catalogue snapshot. The dedup state of each partition
//! (`replica::dedup`) relies on that: an id it forgot stays refused, and a new
//! producer always gets a higher id than any forgotten one.
//!
//! A *named* producer (a stable name given to InitProducer) keeps its id; each
//! InitProducer of the name bumps its epoch, which fences the older instance in
//! every partition. At epoch `u16::MAX` the name gets a new id at epoch 0 (epochs
//! never wrap: a wrapped epoch would look older and be fenced). At most
//! [`MAX_NAMED_PRODUCERS`] names are kept; past it InitProducer with a new name is
//! refused (`CatalogueError::Limit`), an anonymous one still works.
//!
//! Snapshot encoding (`codec.rs` conventions): `u64 next_id | u32 count | count ×
//! (name | u64 id | u16 epoch)`, names in order, a name as `u8 len | bytes`.

use std::collections::BTreeMap;

use crate::bytes::ByteReader;

use super::codec::malformed;
use super::error::CatalogueError;

/// Most named producers the catalogue keeps.
pub const MAX_NAMED_PRODUCERS: usize = 100_000;

/// Longest producer name (bytes).
pub const MAX_PRODUCER_NAME_BYTES: usize = 249;

/// Smallest encoded named producer: name (1 + 1), id, epoch.
const MIN_NAMED_BYTES: usize = 2 + 8 + 2;

/// What InitProducer hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerGrant {
    /// The producer id (never 0, never reused).
    pub id: u64,
    /// Its epoch.
    pub epoch: u16,
}

/// The producer ids handed out so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Producers {
    next_id: u64,
    named: BTreeMap<String, ProducerGrant>,
}

impl Default for Producers {
    fn default() -> Producers {
        Producers {
            next_id: 1,
            named: BTreeMap::new(),
        }
    }
}

/// Checks a producer name: 1 to [`MAX_PRODUCER_NAME_BYTES`] bytes of
/// `[a-zA-Z0-9._-]`, like a topic name (it shows up in logs and error messages).
pub fn check_producer_name(name: &str) -> Result<(), CatalogueError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_PRODUCER_NAME_BYTES || !name.chars().all(ok_char) {
        return Err(CatalogueError::InvalidSettings(format!(
            "a producer name is 1 to {MAX_PRODUCER_NAME_BYTES} characters of [a-zA-Z0-9._-]"
        )));
    }
    Ok(())
}

impl Producers {
    /// The id the next new producer gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// InitProducer: a new id at epoch 0, or for a known name its id at the next
    /// epoch. Deterministic (module doc).
    pub fn init(&mut self, name: Option<&str>) -> Result<ProducerGrant, CatalogueError> {
        let Some(name) = name else {
            return self.new_id().map(|id| ProducerGrant { id, epoch: 0 });
        };
        check_producer_name(name)?;
        let grant = match self.named.get(name) {
            Some(g) if g.epoch < u16::MAX => ProducerGrant {
                id: g.id,
                epoch: g.epoch + 1,
            },
            Some(_) => ProducerGrant {
                id: self.new_id()?,
                epoch: 0,
            },
            None if self.named.len() >= MAX_NAMED_PRODUCERS => {
                return Err(CatalogueError::Limit(format!(
                    "a cluster keeps at most {MAX_NAMED_PRODUCERS} named producers; use an \
                     existing name or an anonymous producer"
                )))
            }
            None => ProducerGrant {
                id: self.new_id()?,
                epoch: 0,
            },
        };
        self.named.insert(name.to_string(), grant);
        Ok(grant)
    }

    fn new_id(&mut self) -> Result<u64, CatalogueError> {
        let id = self.next_id;
        self.next_id = id
            .checked_add(1)
            .ok_or_else(|| CatalogueError::Limit("producer ids exhausted".into()))?;
        Ok(id)
    }

    /// Appends the snapshot encoding (module doc).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.next_id.to_be_bytes());
        // At most MAX_NAMED_PRODUCERS names (init's limit) fit in a u32.
        out.extend_from_slice(&(self.named.len() as u32).to_be_bytes());
        for (name, g) in &self.named {
            // A checked name is at most 249 bytes.
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&g.id.to_be_bytes());
            out.extend_from_slice(&g.epoch.to_be_bytes());
        }
    }

    /// Decodes [`Producers::encode`], checking what `init` keeps: valid names in
    /// order, ids below `next_id` and never 0, the bound.
    pub fn decode(r: &mut ByteReader<'_>) -> Result<Producers, CatalogueError> {
        let next_id = r.u64("next producer id")?;
        if next_id == 0 {
            return Err(malformed("next producer id 0".into()));
        }
        let count = r.u32("named producer count")? as usize;
        if count > MAX_NAMED_PRODUCERS {
            return Err(malformed(format!("{count} named producers")));
        }
        let count = r.checked_count(count as u64, MIN_NAMED_BYTES, "named producer count")?;
        let mut named = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..count {
            let name = r.str_u8("producer name")?.to_string();
            check_producer_name(&name).map_err(|e| malformed(e.to_string()))?;
            if last.as_ref().is_some_and(|l| *l >= name) {
                return Err(malformed("producer names out of order".into()));
            }
            let grant = ProducerGrant {
                id: r.u64("producer id")?,
                epoch: r.u16("producer epoch")?,
            };
            if grant.id == 0 || grant.id >= next_id {
                return Err(malformed(format!(
                    "producer id {} not handed out",
                    grant.id
                )));
            }
            last = Some(name.clone());
            named.insert(name, grant);
        }
        Ok(Producers { next_id, named })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_names_bump_their_epoch() {
        let mut p = Producers::default();
        assert_eq!(p.init(None).unwrap(), ProducerGrant { id: 1, epoch: 0 });
        assert_eq!(
            p.init(Some("a")).unwrap(),
            ProducerGrant { id: 2, epoch: 0 }
        );
        assert_eq!(
            p.init(Some("a")).unwrap(),
            ProducerGrant { id: 2, epoch: 1 }
        );
        assert_eq!(p.init(None).unwrap(), ProducerGrant { id: 3, epoch: 0 });
        assert!(p.init(Some("bad name")).is_err());
        assert!(p.init(Some("")).is_err());
    }

    #[test]
    fn the_last_epoch_moves_the_name_to_a_new_id() {
        let mut p = Producers::default();
        p.named.insert(
            "a".into(),
            ProducerGrant {
                id: 1,
                epoch: u16::MAX,
            },
        );
        p.next_id = 2;
        assert_eq!(
            p.init(Some("a")).unwrap(),
            ProducerGrant { id: 2, epoch: 0 }
        );
    }

    #[test]
    fn the_bound_refuses_new_names_only() {
        let mut p = Producers::default();
        for i in 0..MAX_NAMED_PRODUCERS {
            p.named
                .insert(format!("n{i}"), ProducerGrant { id: 1, epoch: 0 });
        }
        assert!(matches!(p.init(Some("new")), Err(CatalogueError::Limit(_))));
        assert!(p.init(Some("n5")).is_ok());
        assert!(p.init(None).is_ok());
    }

    #[test]
    fn apply_hands_out_ids_and_the_snapshot_keeps_them() {
        use super::super::{Applied, Catalogue, Command};
        let mut c = Catalogue::with_default_topic();
        let init = |name: Option<&str>| Command::InitProducer {
            name: name.map(str::to_string),
        };
        let cmd = init(Some("app"));
        assert_eq!(Command::decode(&cmd.to_bytes()), Ok(cmd.clone()));
        assert_eq!(
            c.apply(1, &cmd),
            Ok(Applied::Producer(ProducerGrant { id: 1, epoch: 0 }))
        );
        assert_eq!(
            c.apply(2, &cmd),
            Ok(Applied::Producer(ProducerGrant { id: 1, epoch: 1 }))
        );
        assert_eq!(c.apply(2, &cmd), Ok(Applied::AlreadyApplied));
        assert!(c.apply(3, &init(Some("no spaces"))).is_err());
        assert_eq!(c.applied(), 3, "a refused command is applied all the same");
        let mut bytes = Vec::new();
        c.encode_snapshot(&mut bytes);
        let back = Catalogue::decode_snapshot(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.producers().next_id(), 2);
    }

    #[test]
    fn snapshot_round_trips_and_checks_invariants() {
        let mut p = Producers::default();
        p.init(Some("b")).unwrap();
        p.init(Some("a")).unwrap();
        p.init(None).unwrap();
        let mut bytes = Vec::new();
        p.encode(&mut bytes);
        let mut r = ByteReader::new(&bytes);
        assert_eq!(Producers::decode(&mut r).unwrap(), p);
        // An id not yet handed out.
        let mut bad = bytes.clone();
        bad[..8].copy_from_slice(&2u64.to_be_bytes());
        assert!(Producers::decode(&mut ByteReader::new(&bad)).is_err());
        for cut in 0..bytes.len() {
            let mut r = ByteReader::new(&bytes[..cut]);
            let _ = Producers::decode(&mut r);
        }
    }
}
