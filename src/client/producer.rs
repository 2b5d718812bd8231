//! Idempotent producers in the client library: InitProducer.

use std::time::Duration;

use super::{unexpected, Client, Result};
use crate::wire::{Request, ResponseBody};

/// A producer id and epoch handed out by InitProducer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerGrant {
    /// The producer id (never 0, never reused by the cluster).
    pub producer_id: u64,
    /// Its epoch: a named producer's newer instance fences the older ones.
    pub epoch: u16,
}

impl Client {
    /// Asks the metadata leader for a producer id and epoch. With `name`, a stable
    /// producer: the same name keeps its id at the next epoch, which fences any
    /// older instance still sending (its batches get `PRODUCER_FENCED`).
    pub fn init_producer(&mut self, name: Option<&str>) -> Result<ProducerGrant> {
        let request = Request::InitProducer {
            name: name.map(str::to_string),
        };
        match self.call(request, Duration::ZERO)? {
            ResponseBody::InitProducer { producer_id, epoch } => {
                Ok(ProducerGrant { producer_id, epoch })
            }
            other => Err(unexpected(&other)),
        }
    }
}
