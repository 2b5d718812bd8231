//! [`Gate`]: the service the event loop serves from the moment the port is bound.
//! Until the node has opened its log and started its threads, every request but
//! Ping is answered UNAVAILABLE ("starting") instead of being left unanswered; then
//! requests go to the node's [`ClusterService`].

use std::sync::{Arc, OnceLock};

use super::answer::{self, Refusal};
use super::ClusterService;
use crate::net::{ConnContext, Responder, Service};
use crate::wire::{Request, RequestFrame};

/// Serves "starting" until [`Gate::open`], then the node.
#[derive(Default)]
pub struct Gate {
    node: OnceLock<Arc<ClusterService>>,
}

impl Gate {
    /// A gate that answers "starting".
    pub fn new() -> Gate {
        Gate::default()
    }

    /// From now on requests go to `service` (later calls are ignored).
    pub fn open(&self, service: Arc<ClusterService>) {
        let _ = self.node.set(service);
    }

    /// True once [`Gate::open`] was called.
    pub fn is_open(&self) -> bool {
        self.node.get().is_some()
    }
}

impl Service for Gate {
    fn call(&self, frame: RequestFrame, ctx: &ConnContext, reply: Responder) {
        match (self.node.get(), &frame.request) {
            (Some(node), _) => node.call(frame, ctx, reply),
            (None, Request::Ping) => answer::pong(reply),
            (None, _) => answer::refuse(reply, Refusal::Starting),
        }
    }

    fn begin_shutdown(&self) {
        if let Some(node) = self.node.get() {
            node.begin_shutdown();
        }
    }
}
