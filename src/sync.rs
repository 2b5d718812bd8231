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

/// Locks `m`, tolerating poison. A thread that panicked while holding a lock is a
/// bug reported on that thread (the raft thread's panic stops the node); the state
/// behind our plain mutexes (queues, tables, counters) stays usable, and taking the
/// guard anyway keeps one bug from cascading into every thread that touches it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`std::sync::Condvar::wait_timeout`], tolerating poison like [`lock`]; true if
/// the wait timed out.
pub fn wait_timeout<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> (std::sync::MutexGuard<'a, T>, bool) {
    match cv.wait_timeout(guard, timeout) {
        Ok((g, t)) => (g, t.timed_out()),
        Err(p) => {
            let (g, t) = p.into_inner();
            (g, t.timed_out())
        }
    }
}

/// [`std::sync::Condvar::wait`], tolerating poison like [`lock`].
pub fn wait<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
) -> std::sync::MutexGuard<'a, T> {
    cv.wait(guard)
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
