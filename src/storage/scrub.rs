//! Background scrubbing: verifies every record of the sealed segments (crc, offset,
//! framing) at a bounded rate, so latent damage is found before a read needs it.
//!
//! [`Scrubber::step`] verifies about `budget_bytes` of records from where the last
//! step stopped and returns the faults found; it wraps around to the oldest
//! segment after the newest sealed one (a *pass*). [`spawn`] runs steps on a
//! thread, `bytes_per_sec / STEPS_PER_SEC` bytes every `1 / STEPS_PER_SEC` s, and
//! hands each fault to a callback. Reads go through the normal read path (no lock
//! but the shared segment list), so scrubbing never blocks appends or fsyncs.
//! [`ScrubCounters`] are plain atomics for metrics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Log, Offset, StorageError, RECORD_HEADER_BYTES};

/// Steps per second of a spawned scrubber.
pub const STEPS_PER_SEC: u64 = 10;

/// Counters of a scrubber (relaxed atomics, for metrics).
#[derive(Debug, Default)]
pub struct ScrubCounters {
    /// Record bytes (headers included) verified.
    pub bytes_verified: AtomicU64,
    /// Damaged records and oversized sealed stores found.
    pub faults_found: AtomicU64,
    /// Completed passes over all sealed segments.
    pub passes_completed: AtomicU64,
}

/// What a scrub found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Records `first..end` failed verification (each read of them returns
    /// [`StorageError::CorruptRecord`]).
    DamagedRecords,
    /// A sealed store holds this many bytes after its last record (appended
    /// garbage); reads ignore them. `first == end` (no record is affected).
    TrailingBytes(u64),
}

/// A damaged range found by a scrub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What was found.
    pub kind: FaultKind,
    /// First damaged offset.
    pub first: Offset,
    /// One past the last damaged offset.
    pub end: Offset,
    /// The file holding the damage.
    pub path: PathBuf,
    /// What failed (of the first record).
    pub reason: String,
}

/// Verifies sealed segments a budget at a time.
#[derive(Debug)]
pub struct Scrubber {
    log: Arc<Log>,
    next: u64,
    counters: Arc<ScrubCounters>,
}

impl Scrubber {
    /// A scrubber starting at the oldest sealed segment.
    pub fn new(log: Arc<Log>) -> Scrubber {
        let next = log.first_offset().0;
        Scrubber {
            log,
            next,
            counters: Arc::new(ScrubCounters::default()),
        }
    }

    /// A scrubber counting into shared counters (one node scrubbing many logs).
    pub fn with_counters(log: Arc<Log>, counters: Arc<ScrubCounters>) -> Scrubber {
        Scrubber {
            counters,
            ..Scrubber::new(log)
        }
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<ScrubCounters> {
        Arc::clone(&self.counters)
    }

    /// Verifies about `budget_bytes` of sealed records (at least one record) from
    /// where the previous step stopped, and returns the faults it found (adjacent
    /// damaged records merged into one range).
    pub fn step(&mut self, budget_bytes: u64) -> Vec<Fault> {
        let mut faults: Vec<Fault> = Vec::new();
        let sealed = self.log.sealed_segments();
        let (Some(oldest), Some(newest)) = (sealed.first(), sealed.last()) else {
            return faults;
        };
        let sealed_end = newest.1;
        if self.next >= sealed_end {
            self.counters
                .passes_completed
                .fetch_add(1, Ordering::Relaxed);
        }
        if self.next < oldest.0 || self.next >= sealed_end {
            self.next = oldest.0;
        }
        let mut spent = 0u64;
        // Bounded: every iteration verifies or skips at least one record, or stops.
        while spent < budget_bytes && self.next < sealed_end {
            // One segment per read, so each segment's size is checked on the way.
            let i = sealed
                .partition_point(|s| s.0 <= self.next)
                .saturating_sub(1);
            let (base, segment_end, store_bytes) = sealed[i];
            // A quarantined segment has no indexed end (its reads all fail).
            if let (true, Some(store_bytes)) = (base == self.next, store_bytes) {
                self.check_size(base, segment_end, store_bytes, &mut faults);
            }
            let mut verified = 0u64;
            let left = budget_bytes - spent;
            let result = self.log.read_range_with(Offset(self.next), left, |record| {
                let bytes = RECORD_HEADER_BYTES as u64 + record.value.len() as u64;
                if record.offset.0 >= segment_end || (verified > 0 && verified + bytes > left) {
                    return false;
                }
                verified += bytes;
                true
            });
            spent += verified;
            match result {
                Ok(0) => break,
                Ok(taken) => self.next += taken,
                Err(StorageError::CorruptRecord {
                    offset,
                    path,
                    reason,
                    ..
                }) => {
                    spent += RECORD_HEADER_BYTES as u64;
                    self.next = offset.0 + 1;
                    add_damaged(&mut faults, offset.0, path, reason);
                }
                Err(StorageError::OffsetOutOfRange { first, .. }) => {
                    // Retention removed the segment under the cursor.
                    self.next = first.0;
                    break;
                }
                Err(StorageError::Closed) => break,
                Err(e) => {
                    // The segment cannot be read at all (a file missing, short or
                    // unreadable): all of it is a fault; go on with the next one.
                    log::warn!("scrubbing {}: {e}", self.log.dir().display());
                    faults.push(Fault {
                        kind: FaultKind::DamagedRecords,
                        first: Offset(self.next),
                        end: Offset(segment_end),
                        path: super::segment::store_path(self.log.dir(), base),
                        reason: e.to_string(),
                    });
                    self.next = segment_end;
                }
            }
        }
        self.counters
            .bytes_verified
            .fetch_add(spent, Ordering::Relaxed);
        let found: u64 = faults.iter().map(|f| (f.end.0 - f.first.0).max(1)).sum();
        self.counters
            .faults_found
            .fetch_add(found, Ordering::Relaxed);
        faults
    }

    /// Reports a sealed store longer than its records.
    fn check_size(&self, base: u64, end: u64, store_bytes: u64, faults: &mut Vec<Fault>) {
        let path = super::segment::store_path(self.log.dir(), base);
        let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else {
            return;
        };
        if len > store_bytes {
            faults.push(Fault {
                kind: FaultKind::TrailingBytes(len - store_bytes),
                first: Offset(end),
                end: Offset(end),
                path,
                reason: format!(
                    "{} bytes after the last record of the sealed store",
                    len - store_bytes
                ),
            });
        }
    }
}

fn add_damaged(faults: &mut Vec<Fault>, offset: u64, path: PathBuf, reason: String) {
    if let Some(last) = faults.last_mut() {
        if last.kind == FaultKind::DamagedRecords && last.end.0 == offset && last.path == path {
            last.end = Offset(offset + 1);
            return;
        }
    }
    faults.push(Fault {
        kind: FaultKind::DamagedRecords,
        first: Offset(offset),
        end: Offset(offset + 1),
        path,
        reason,
    });
}

/// A running scrubber thread; [`ScrubHandle::stop`] (or drop) ends it.
#[derive(Debug)]
pub struct ScrubHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<ScrubCounters>,
}

impl ScrubHandle {
    /// The scrubber's counters.
    pub fn counters(&self) -> Arc<ScrubCounters> {
        Arc::clone(&self.counters)
    }

    /// Stops the thread and waits for it (at most one step).
    pub fn stop(&mut self) {
        let (flag, wake) = &*self.stop;
        if let Ok(mut stopped) = flag.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the scrubber thread panicked");
            }
        }
    }
}

impl Drop for ScrubHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a thread that scrubs `log`'s sealed segments at about `bytes_per_sec`
/// and calls `on_fault` for every fault found.
pub fn spawn<F>(log: Arc<Log>, bytes_per_sec: u64, on_fault: F) -> std::io::Result<ScrubHandle>
where
    F: Fn(&Fault) + Send + 'static,
{
    let mut scrubber = Scrubber::new(log);
    let counters = scrubber.counters();
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let stop_thread = Arc::clone(&stop);
    let budget = (bytes_per_sec / STEPS_PER_SEC).max(1);
    let pause = Duration::from_millis(1000 / STEPS_PER_SEC);
    let thread = std::thread::Builder::new()
        .name("scrubber".into())
        .spawn(move || {
            let (flag, wake) = &*stop_thread;
            loop {
                for fault in scrubber.step(budget) {
                    on_fault(&fault);
                }
                let Ok(stopped) = flag.lock() else { return };
                let Ok((stopped, _)) = wake.wait_timeout_while(stopped, pause, |s| !*s) else {
                    return;
                };
                if *stopped {
                    return;
                }
            }
        })?;
    Ok(ScrubHandle {
        stop,
        thread: Some(thread),
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::TempDir;
    use crate::storage::{LogConfig, NewRecord, RecordKind, Term};

    /// 30 sealed segments of 10 records of 72 bytes (44-byte values), + active.
    fn log_with_segments(dir: &std::path::Path) -> Arc<Log> {
        let config = LogConfig {
            max_store_bytes: 720,
            ..LogConfig::default()
        };
        let log = Log::open(dir, config.clone()).unwrap();
        for i in 0..305u64 {
            let v = [i as u8; 44];
            log.append(NewRecord {
                term: Term(1),
                kind: RecordKind::Data,
                value: &v,
            })
            .unwrap();
        }
        log.close().unwrap();
        Arc::new(Log::open(dir, config).unwrap())
    }

    #[test]
    fn finds_a_flipped_byte_within_a_bounded_budget_per_step() {
        let dir = TempDir::new("scrub");
        let log = log_with_segments(dir.path());
        drop(log);
        let victim = dir.path().join(format!("{:020}.store", 120));
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[3 * 72 + 40] ^= 0x08; // record 123
        std::fs::write(&victim, bytes).unwrap();
        let log = log_with_segments_reopen(dir.path());
        let mut scrubber = Scrubber::new(log);
        let counters = scrubber.counters();
        let mut found = Vec::new();
        let mut steps = 0;
        // 300 sealed records of 72 bytes: 21600 bytes at 720 per step is 30 steps.
        while counters.passes_completed.load(Ordering::Relaxed) == 0 && steps < 100 {
            let before = counters.bytes_verified.load(Ordering::Relaxed);
            found.extend(scrubber.step(720));
            let spent = counters.bytes_verified.load(Ordering::Relaxed) - before;
            assert!(spent <= 720 + 72, "a step stays within its budget: {spent}");
            steps += 1;
        }
        assert!(steps >= 30, "the budget bounds the rate: {steps} steps");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, FaultKind::DamagedRecords);
        assert_eq!((found[0].first, found[0].end), (Offset(123), Offset(124)));
        assert_eq!(counters.faults_found.load(Ordering::Relaxed), 1);
        // Every intact sealed record once, then the wrapping step's first budget.
        assert_eq!(
            counters.bytes_verified.load(Ordering::Relaxed),
            299 * 72 + RECORD_HEADER_BYTES as u64 + 720,
        );
    }

    #[test]
    fn an_unopenable_segment_is_one_fault_and_the_scrub_goes_on() {
        let dir = TempDir::new("scrub-missing");
        let log = log_with_segments(dir.path());
        // Deleted while the log is open (it was never opened for reads, so the
        // scrubber is the first to notice).
        std::fs::remove_file(dir.path().join(format!("{:020}.index", 50))).unwrap();
        let mut scrubber = Scrubber::new(log);
        let faults = scrubber.step(u64::MAX);
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!((faults[0].first, faults[0].end), (Offset(50), Offset(60)));
        let counters = scrubber.counters();
        assert_eq!(counters.bytes_verified.load(Ordering::Relaxed), 290 * 72);
    }

    fn log_with_segments_reopen(dir: &std::path::Path) -> Arc<Log> {
        let config = LogConfig {
            max_store_bytes: 720,
            ..LogConfig::default()
        };
        Arc::new(Log::open(dir, config).unwrap())
    }

    #[test]
    fn reports_trailing_garbage_and_spawned_thread_stops() {
        let dir = TempDir::new("scrub-garbage");
        drop(log_with_segments(dir.path()));
        let victim = dir.path().join(format!("{:020}.store", 10));
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes.extend([0xee; 1000]);
        std::fs::write(&victim, bytes).unwrap();
        let log = log_with_segments_reopen(dir.path());
        let mut scrubber = Scrubber::new(Arc::clone(&log));
        let faults = scrubber.step(u64::MAX);
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].kind, FaultKind::TrailingBytes(1000));
        assert_eq!(log.read(Offset(19)).unwrap().value, vec![19u8; 44]);

        let (tx, rx) = std::sync::mpsc::channel();
        let mut handle = spawn(log, 1 << 30, move |fault| {
            let _ = tx.send(fault.clone());
        })
        .unwrap();
        let fault = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(fault.kind, FaultKind::TrailingBytes(1000));
        handle.stop();
        assert!(handle.counters().bytes_verified.load(Ordering::Relaxed) > 0);
    }
}
