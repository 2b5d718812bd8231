//! Tests of idle logs giving back their file descriptors
//! ([`Log::release_idle_files`]) and of logs opened under an outer lock
//! ([`DirLock::Covered`]): every operation reopens what it needs, nothing written
//! before a release is lost, and the descriptors are really closed.

use std::path::Path;
use std::sync::Arc;

use super::tests::{append_range, check_range, expected, small_config, TempDir};
use super::*;

/// Descriptors of this process open on files in `dir` (sockets, pipes and files
/// elsewhere, e.g. of tests running in parallel, are not counted).
fn fds_in(dir: &Path) -> usize {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// A log under an outer lock on `root` (no `LOCK` of its own) in `root/log`.
fn covered(root: &Path) -> (Arc<OuterLock>, Log) {
    let outer = Arc::new(OuterLock::acquire(root).unwrap());
    let config = LogConfig {
        dir_lock: DirLock::Covered(Arc::clone(&outer)),
        ..small_config()
    };
    let log = Log::open(&root.join("log"), config).unwrap();
    (outer, log)
}

#[test]
fn an_idle_covered_log_holds_no_descriptor_and_works_after_release() {
    let root = TempDir::new("idle-covered");
    let (outer, log) = covered(root.path());
    let dir = root.path().join("log");
    append_range(&log, 0, 23, 4);
    log.sync().unwrap();
    assert!(fds_in(&dir) >= 2, "the active store and index are open");
    check_range(&log, 0, 23);
    assert!(
        log.open_sealed_segments() > 0,
        "reads cached sealed segments"
    );
    assert!(log.release_idle_files().unwrap());
    assert_eq!(fds_in(&dir), 0, "nothing open in the log directory");
    assert_eq!(log.open_sealed_segments(), 0);
    assert!(
        !log.release_idle_files().unwrap(),
        "nothing left to release"
    );

    // Reads and syncs of a released log use descriptors of their own, briefly.
    check_range(&log, 0, 23);
    assert_eq!(log.read(Offset(22)).unwrap(), expected(22));
    assert_eq!(log.sync().unwrap(), Offset(23));
    assert!(
        !log.active_files_open(),
        "reads and syncs do not reopen for good"
    );
    assert!(
        log.release_idle_files().unwrap(),
        "sealed segments cached again"
    );
    assert_eq!(fds_in(&dir), 0);

    // Appends (across segment rolls) reopen the files and keep them.
    append_range(&log, 23, 60, 3);
    assert!(log.active_files_open());
    assert_eq!(log.sync().unwrap(), Offset(60));
    check_range(&log, 0, 60);
    assert!(log.release_idle_files().unwrap());
    assert_eq!(fds_in(&dir), 0);
    log.close().unwrap();
    drop(outer);

    let (_outer, log) = covered(root.path());
    check_range(&log, 0, 60);
}

#[test]
fn a_release_fsyncs_what_was_not_yet_durable() {
    let root = TempDir::new("idle-unsynced");
    let (outer, log) = covered(root.path());
    append_range(&log, 0, 12, 5);
    log.sync().unwrap();
    // Rolls a segment (sealed at the next sync) and leaves records unsynced.
    append_range(&log, 12, 30, 2);
    assert!(log.durable_offset() < Offset(30));
    assert!(log.release_idle_files().unwrap());
    assert_eq!(log.durable_offset(), Offset(30), "fsynced before closing");
    assert_eq!(fds_in(&root.path().join("log")), 0);
    // A crash now (no close: the checkpoint and the index trim of the active
    // segment are not written) loses nothing.
    drop(log);
    drop(outer);
    let (_outer, log) = covered(root.path());
    assert_eq!(log.next_offset(), Offset(30));
    check_range(&log, 0, 30);
}

#[test]
fn structural_changes_after_a_release_reopen_what_they_need() {
    let dir = TempDir::new("idle-changes");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 40, 4);
    log.sync().unwrap();
    let active_base = log.sealed_segments().last().unwrap().1;

    // Cut inside the active segment, then back into a sealed one.
    assert!(log.release_idle_files().unwrap());
    log.truncate_suffix(Some(Offset(38))).unwrap();
    assert_eq!(log.next_offset(), Offset(39));
    assert!(log.release_idle_files().unwrap());
    log.truncate_suffix(Some(Offset(active_base - 3))).unwrap();
    assert_eq!(log.next_offset(), Offset(active_base - 2));
    check_range(&log, 0, active_base - 2);
    append_range(&log, active_base - 2, 45, 4);
    log.sync().unwrap();

    // Prefix removal and retention.
    assert!(log.release_idle_files().unwrap());
    log.truncate_prefix(Offset(10)).unwrap();
    let first = log.first_offset().0;
    assert!(first > 0);
    check_range(&log, first, 45);
    log.set_retention(Some(200), None);
    assert!(log.release_idle_files().unwrap());
    assert!(log.apply_retention(std::time::SystemTime::now()).unwrap() > 0);
    assert!(!log.active_files_open(), "retention needs no active file");
    let first = log.first_offset().0;
    check_range(&log, first, 45);

    // Reset (InstallSnapshot).
    log.release_idle_files().unwrap();
    log.reset(Offset(100)).unwrap();
    append_range(&log, 100, 105, 2);
    assert!(log.release_idle_files().unwrap());
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.first_offset(), Offset(100));
    check_range(&log, 100, 105);
}

#[test]
fn a_rebuild_after_a_release_repairs_a_sealed_segment() {
    let dir = TempDir::new("idle-rebuild");
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 30, 5);
    log.close().unwrap();
    let (base, next, _) = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        log.sealed_segments()[1]
    };
    let store = dir.path().join(format!("{base:020}.store"));
    let mut bytes = std::fs::read(&store).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&store, bytes).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(
        log.read(Offset(next - 1)).is_err(),
        "the flipped byte is seen"
    );
    assert!(log.release_idle_files().unwrap());
    let supplied: Vec<Record> = (base..next).map(expected).collect();
    log.rebuild_sealed(Offset(next - 1), &supplied).unwrap();
    check_range(&log, 0, 30);
    append_range(&log, 30, 33, 3);
    check_range(&log, 0, 33);
}

#[test]
fn an_outer_lock_excludes_a_second_holder_and_must_cover_the_log() {
    let root = TempDir::new("idle-outer");
    let (outer, log) = covered(root.path());
    assert!(
        !root.path().join("log").join("LOCK").exists(),
        "a covered log takes no lock of its own"
    );
    match OuterLock::acquire(root.path()) {
        Err(StorageError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock)
        }
        other => panic!("a second outer lock must fail, got {other:?}"),
    }
    let elsewhere = TempDir::new("idle-outer-elsewhere");
    let config = LogConfig {
        dir_lock: DirLock::Covered(Arc::clone(&outer)),
        ..small_config()
    };
    assert!(matches!(
        Log::open(elsewhere.path(), config),
        Err(StorageError::InvalidConfig { .. })
    ));
    // The log keeps the outer lock alive after its holder let go of it.
    drop(outer);
    assert!(OuterLock::acquire(root.path()).is_err());
    log.close().unwrap();
    assert!(
        OuterLock::acquire(root.path()).is_ok(),
        "released with the log"
    );
}

#[test]
fn a_brand_new_log_writes_its_checkpoint_and_directory_at_the_first_sync() {
    let dir = TempDir::new("idle-fresh");
    let checkpoint = dir.path().join(checkpoint::FILE_NAME);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(!checkpoint.exists(), "nothing durable to vouch for yet");
    append_range(&log, 0, 3, 3);
    assert_eq!(log.sync().unwrap(), Offset(3));
    assert!(checkpoint.exists(), "the first sync writes it");
    drop(log); // a crash: no close
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 3);
    drop(log);

    // Never synced, never written: a crash leaves a log that opens empty.
    let dir = TempDir::new("idle-fresh-unsynced");
    drop(Log::open(dir.path(), small_config()).unwrap());
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.next_offset(), Offset(0));
    drop(log);

    // Released only after the first sync made the new segment's entry durable.
    let dir = TempDir::new("idle-fresh-release");
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(log.release_idle_files().unwrap());
    assert!(dir.path().join(checkpoint::FILE_NAME).exists());
    assert!(!log.active_files_open());
}

#[test]
fn a_clean_stop_of_an_idle_log_rewrites_no_checkpoint() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("idle-checkpoint");
    let inode = || {
        std::fs::metadata(dir.path().join(checkpoint::FILE_NAME))
            .unwrap()
            .ino()
    };
    let log = Log::open(dir.path(), small_config()).unwrap();
    append_range(&log, 0, 12, 4);
    assert_eq!(log.checkpoint().unwrap(), Offset(12));
    let written = inode();
    assert!(log.release_idle_files().unwrap());
    assert_eq!(log.sync().unwrap(), Offset(12));
    assert_eq!(log.checkpoint().unwrap(), Offset(12));
    assert_eq!(inode(), written, "the same checkpoint is not written again");
    append_range(&log, 12, 13, 1);
    assert_eq!(log.checkpoint().unwrap(), Offset(13));
    assert_ne!(inode(), written, "a new durable end is");
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    check_range(&log, 0, 13);
}
