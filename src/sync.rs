//! Synchronization primitives, swapped for loom's under `--cfg commitlog_loom` so the
//! cross-thread hand-offs can be model-checked (see `make loom`).

#[cfg(commitlog_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(commitlog_loom)]
pub use loom::sync::{Arc, Condvar, Mutex, RwLock};

#[cfg(not(commitlog_loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(commitlog_loom))]
pub use std::sync::{Arc, Condvar, Mutex, RwLock};
