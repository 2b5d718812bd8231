//! Parallel fsyncs: when several groups appended in one raft-thread round, their
//! logs are fsynced at the same time by a few worker threads, so the round waits
//! for about one device flush instead of one per group (the raft thread syncs a
//! lone log itself: no hand-off on the single-partition path).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::storage::{Log, StorageError};
use crate::sync::lock;

/// Worker threads: fsyncs of one device gain little beyond a few in flight.
const WORKERS: usize = 4;

type Job = (usize, Arc<Log>, Sender<(usize, Result<(), StorageError>)>);

/// A fixed set of fsync workers.
pub(crate) struct SyncPool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl SyncPool {
    pub(crate) fn start() -> std::io::Result<SyncPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(WORKERS);
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fsync-{i}"))
                    .spawn(move || work(&rx))?,
            );
        }
        Ok(SyncPool {
            jobs: Some(tx),
            threads,
        })
    }

    /// Fsyncs every log; results in the order given. One log is synced on the
    /// calling thread.
    pub(crate) fn sync_all(&self, logs: &[Arc<Log>]) -> Vec<Result<(), StorageError>> {
        let Some(jobs) = self.jobs.as_ref().filter(|_| logs.len() > 1) else {
            return logs.iter().map(|l| l.sync().map(|_| ())).collect();
        };
        let (done_tx, done_rx) = mpsc::channel();
        let mut results: Vec<Option<Result<(), StorageError>>> =
            (0..logs.len()).map(|_| None).collect();
        for (i, log) in logs.iter().enumerate() {
            if let Err(mpsc::SendError((i, log, _))) =
                jobs.send((i, Arc::clone(log), done_tx.clone()))
            {
                results[i] = Some(log.sync().map(|_| ()));
            }
        }
        drop(done_tx);
        // Every worker answers each job it took (or drops the sender on panic,
        // which ends this loop): bounded by the number of logs.
        for (i, r) in done_rx.iter().take(logs.len()) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StorageError::Closed)))
            .collect()
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = lock(rx).recv();
        let Ok((i, log, done)) = job else {
            return;
        };
        let _ = done.send((i, log.sync().map(|_| ())));
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
