//! A small fixed-size pool of worker threads fed by a bounded queue.
//!
//! The event loop never blocks; anything that may touch the disk (a `Consume`, a
//! `Fetch`) is handed to this pool as a job. The queue is bounded: when it is full,
//! [`WorkerPool::try_submit`] gives the job back so the caller can answer the request
//! with an `UNAVAILABLE` error instead of queueing without limit.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

struct Queue<J> {
    state: Mutex<QueueState<J>>,
    ready: Condvar,
    cap: usize,
}

struct QueueState<J> {
    jobs: VecDeque<J>,
    closed: bool,
}

impl<J> Queue<J> {
    fn lock(&self) -> MutexGuard<'_, QueueState<J>> {
        // A panicking job never holds this lock, so poisoning carries no broken state.
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn try_push(&self, job: J) -> Result<(), J> {
        let mut state = self.lock();
        if state.closed || state.jobs.len() >= self.cap {
            return Err(job);
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Blocks for the next job; `None` once closed and empty.
    fn pop(&self) -> Option<J> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = match self.ready.wait(state) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }
}

/// A pool of worker threads running a handler on each submitted job of type `J`.
pub struct WorkerPool<J: Send + 'static> {
    queue: Arc<Queue<J>>,
    threads: Vec<JoinHandle<()>>,
}

/// A cloneable way to submit jobs to a [`WorkerPool`] from other threads.
pub struct PoolSubmitter<J: Send + 'static> {
    queue: Arc<Queue<J>>,
}

impl<J: Send + 'static> Clone for PoolSubmitter<J> {
    fn clone(&self) -> Self {
        PoolSubmitter {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<J: Send + 'static> PoolSubmitter<J> {
    /// Queues `job`; gives it back if the queue is full or the pool has stopped.
    pub fn try_submit(&self, job: J) -> Result<(), J> {
        self.queue.try_push(job)
    }
}

impl<J: Send + 'static> WorkerPool<J> {
    /// Starts `threads` (at least 1) workers named `name-N` sharing a queue of at most
    /// `queue_cap` jobs.
    pub fn start<F>(
        name: &str,
        threads: usize,
        queue_cap: usize,
        handler: F,
    ) -> std::io::Result<WorkerPool<J>>
    where
        F: Fn(J) + Send + Sync + 'static,
    {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            cap: queue_cap.max(1),
        });
        let handler = Arc::new(handler);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let worker_queue = Arc::clone(&queue);
            let handler = Arc::clone(&handler);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Some(job) = worker_queue.pop() {
                        handler(job);
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let pool = WorkerPool {
                        queue,
                        threads: handles,
                    };
                    pool.join();
                    return Err(e);
                }
            }
        }
        Ok(WorkerPool {
            queue,
            threads: handles,
        })
    }

    /// A handle other threads can submit through.
    pub fn submitter(&self) -> PoolSubmitter<J> {
        PoolSubmitter {
            queue: Arc::clone(&self.queue),
        }
    }

    /// Queues `job`; gives it back if the queue is full or the pool has stopped.
    pub fn try_submit(&self, job: J) -> Result<(), J> {
        self.queue.try_push(job)
    }

    /// Stops accepting jobs, lets the workers finish the queued ones, and joins them.
    pub fn join(mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                log::error!("a worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_and_joins() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let pool = WorkerPool::start("t", 2, 100, move |n: usize| {
            c.fetch_add(n, Ordering::SeqCst);
        })
        .unwrap();
        for _ in 0..10 {
            assert!(pool.try_submit(1).is_ok());
        }
        pool.join();
        assert_eq!(count.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn full_queue_gives_the_job_back() {
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let block_rx = Mutex::new(block_rx);
        let pool = WorkerPool::start("t", 1, 1, move |_: u32| {
            let _ = block_rx.lock().unwrap().recv();
        })
        .unwrap();
        // One job runs (blocked), one waits in the queue; eventually one is refused.
        let mut refused = None;
        for i in 0..3u32 {
            if let Err(j) = pool.try_submit(i) {
                refused = Some(j);
                break;
            }
        }
        assert!(refused.is_some(), "a bounded queue must refuse");
        drop(block_tx);
        pool.join();
    }
}
