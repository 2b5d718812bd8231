//! When the disk lies, with real `commitlogd` processes: corruption found at start
//! is refused with the exact repair command (and `commitlogd repair` does what it
//! says), damage inside sealed segments is a `CORRUPT_RECORD` for that record only,
//! and a full disk is `STORAGE_FULL`, never a signal (on a small tmpfs, as root).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use commitlog::client::Client;
use commitlog::storage::RECORD_HEADER_BYTES;
use commitlog::types::Offset;
use commitlog::wire::ErrorCode;
use common::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);

/// A `commitlogd --data-dir D` process.
struct Node {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl Node {
    /// The last lines of the node's log (for failure messages).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts a node and waits until it serves, or returns its stderr if it exits.
    fn start(root: &Path, data: &Path, extra: &[&str]) -> Result<Node, String> {
        let n = std::fs::read_dir(root).map(|d| d.count()).unwrap_or(0);
        let ready = root.join(format!("ready-{n}"));
        let stderr = root.join(format!("stderr-{n}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn commitlogd");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(addr) = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|t| parse_ready(&t))
            {
                return Ok(Node {
                    child: Some(child),
                    addr,
                    stderr,
                });
            }
            if child.try_wait().unwrap().is_some() {
                return Err(std::fs::read_to_string(&stderr).unwrap_or_default());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("commitlogd not ready in time");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.addr, Duration::from_secs(10)).expect("connect")
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGTERM and a bounded wait: a clean stop.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "commitlogd did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A ready file holds the client address, alone (single node) or as an `rpc=`
/// line (cluster mode).
fn parse_ready(text: &str) -> Option<SocketAddr> {
    text.trim().parse().ok().or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("rpc="))
            .and_then(|a| a.trim().parse().ok())
    })
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = &self.stderr;
    }
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i:06}").into_bytes()
}

/// Produces values `0..n` in batches; returns the offset of each.
fn produce(node: &Node, n: u64) -> Vec<Offset> {
    let mut client = node.client();
    let mut offsets = Vec::new();
    for start in (0..n).step_by(100) {
        let values: Vec<Vec<u8>> = (start..(start + 100).min(n)).map(value).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let first = client.produce_batch(&refs).unwrap();
        offsets.extend((0..refs.len() as u64).map(|k| Offset(first.0 + k)));
    }
    offsets
}

fn repair(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .arg("repair")
        .args(args)
        .output()
        .expect("run commitlogd repair")
}

/// The log directory of a data directory: `D/log` (cluster layout) or `D`.
fn log_dir(data: &Path) -> PathBuf {
    let nested = data.join("log");
    if nested.is_dir() {
        nested
    } else {
        data.to_path_buf()
    }
}

/// The store files, oldest first.
fn stores(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir(data))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "store"))
        .collect();
    files.sort();
    files
}

/// The store holding value `i` and the byte position of its record (found by
/// content, so the test does not depend on offsets or internal records).
fn find_record(data: &Path, i: u64) -> (PathBuf, usize) {
    let needle = value(i);
    for store in stores(data) {
        let bytes = std::fs::read(&store).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (store, at - RECORD_HEADER_BYTES);
        }
    }
    panic!("value {i} not found");
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_length_field_is_refused_then_repaired_with_acknowledgement() {
    let root = TempDir::new("faults-len");
    let data = root.path().join("data");
    let node = Node::start(root.path(), &data, &[]).unwrap();
    let offsets = produce(&node, 2000);
    node.stop();
    let (store, at) = find_record(&data, 1000);
    edit(&store, |b| b[at + 5] = 0x5a); // the length field
    let first = offsets[1000];

    let stderr = Node::start(root.path(), &data, &[]).err().expect("refused");
    assert!(stderr.contains("corrupt log data"), "{stderr}");
    assert!(stderr.contains(&format!("offsets {first}..")), "{stderr}");
    let command = format!("--truncate-from {first} --i-understand-records-from-{first}-are-lost");
    assert!(stderr.contains(&command), "{stderr}");
    // Still refused on the next start: nothing was cut.
    assert!(Node::start(root.path(), &data, &[]).is_err());

    let d = data.to_str().unwrap();
    let report = repair(&["--data-dir", d]);
    assert_eq!(report.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&report.stdout).contains(&command));
    let before = Offset(first.0 - 1).to_string();
    let wrong_ack = format!("--i-understand-records-from-{before}-are-lost");
    let wrong = repair(&["--data-dir", d, "--truncate-from", &before, &wrong_ack]);
    assert_eq!(wrong.status.code(), Some(1), "another offset is refused");
    let first_arg = first.to_string();
    let unacknowledged = repair(&["--data-dir", d, "--truncate-from", &first_arg]);
    assert_eq!(unacknowledged.status.code(), Some(2));
    let ack = format!("--i-understand-records-from-{first}-are-lost");
    let done = repair(&["--data-dir", d, "--truncate-from", &first_arg, &ack]);
    assert!(done.status.success(), "{done:?}");
    let dropped = format!("dropped offsets {first}..");
    assert!(String::from_utf8_lossy(&done.stderr).contains(&dropped));

    let node = Node::start(root.path(), &data, &[]).unwrap();
    let mut client = node.client();
    for i in [0, 500, 999] {
        assert_eq!(client.consume(offsets[i]).unwrap().value, value(i as u64));
    }
    assert!(client.produce(b"after repair").unwrap() >= first);
}

#[test]
fn truncated_store_and_missing_first_segment_are_refused() {
    let root = TempDir::new("faults-trunc");
    let data = root.path().join("data");
    let small = ["--segment-max-bytes", "16KiB"];
    let node = Node::start(root.path(), &data, &small).unwrap();
    let offsets = produce(&node, 2000);
    node.stop();
    // Cut the active store on the boundary of a record well below the end.
    let (active, at) = find_record(&data, 1990);
    assert_eq!(
        Some(&active),
        stores(&data).last(),
        "1990 is in the active store"
    );
    let saved = std::fs::read(&active).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(at as u64)
        .unwrap();
    let stderr = Node::start(root.path(), &data, &small)
        .err()
        .expect("refused");
    assert!(stderr.contains("below the durable end"), "{stderr}");
    let at_stake = format!("offsets {}..", offsets[1990]);
    assert!(stderr.contains(&at_stake), "{stderr}");
    std::fs::write(&active, saved).unwrap();
    Node::start(root.path(), &data, &small).unwrap().stop();

    let first_store = stores(&data)[0].clone();
    let base = first_store
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&first_store).unwrap();
    std::fs::remove_file(first_store.with_extension("index")).unwrap();
    let stderr = Node::start(root.path(), &data, &small)
        .err()
        .expect("refused");
    let base: u64 = base.parse().unwrap();
    let missing = format!("segment starting at offset {base} is missing");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("restore the missing files"), "{stderr}");
}

#[test]
fn damage_in_sealed_segments_is_a_corrupt_record_for_that_record_only() {
    let root = TempDir::new("faults-sealed");
    let data = root.path().join("data");
    let small = ["--segment-max-bytes", "16KiB"];
    let node = Node::start(root.path(), &data, &small).unwrap();
    let offsets = produce(&node, 2000);
    node.stop();
    let (store, at) = find_record(&data, 5);
    assert_eq!(store, stores(&data)[0]);
    edit(&store, |b| b[at + RECORD_HEADER_BYTES + 3] ^= 1); // a value byte
    let garbage = stores(&data)[1].clone();
    edit(&garbage, |b| b.extend([0xab; 1000]));

    let node = Node::start(root.path(), &data, &small).unwrap();
    let mut client = node.client();
    let err = client.consume(offsets[5]).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CorruptRecord), "{err}");
    for i in [0, 4, 6, 400, 500, 800, 1999] {
        let got = client.consume(offsets[i]).unwrap().value;
        assert_eq!(got, value(i as u64), "{i}");
    }
    let before = client.fetch(offsets[0], 1 << 20, 0).unwrap();
    assert_eq!(before.records.len(), 5, "a fetch stops before the damage");
    let err = client.fetch(offsets[5], 1 << 20, 0).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CorruptRecord), "{err}");
    let after = client.fetch(offsets[6], 1 << 20, 0).unwrap();
    assert_eq!(after.records.first().map(|r| r.offset), Some(offsets[6]));
    let base: u64 = garbage
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let across = client.fetch(Offset(base), 1 << 20, 0).unwrap();
    assert!(across.records.len() >= 400, "the garbage is not read");
}

/// Unmounts (and removes) a tmpfs on drop, also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn full_disk_is_storage_full_and_the_node_resumes_when_space_frees() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let root = TempDir::new("faults-full");
    let mount = match Tmpfs::mount(&root.path().join("mnt"), "64m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; 12 << 20]).unwrap();
    let data = mount.0.join("data");
    let mut node = Node::start(root.path(), &data, &[]).unwrap();
    let mut client = node.client();

    let mut acked: Vec<(Offset, Vec<u8>)> = Vec::new();
    let mut full = None;
    for batch in 0..10_000u64 {
        let values: Vec<Vec<u8>> = (0..10)
            .map(|k| vec![(batch * 10 + k) as u8; 20_000])
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        match client.produce_batch(&refs) {
            Ok(first) => {
                acked.extend((0..10).map(|k| (Offset(first.0 + k), values[k as usize].clone())))
            }
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let full = full.expect("the disk filled up");
    assert_eq!(full.code(), Some(ErrorCode::StorageFull), "{full}");

    // Small records need index slots: they must not grow the mapped index into
    // unallocated space (that was SIGBUS).
    let empties: Vec<&[u8]> = vec![b"".as_slice(); 600];
    for _ in 0..50 {
        match client.produce_batch(&empties) {
            Ok(first) => acked.extend((0..600).map(|k| (Offset(first.0 + k), Vec::new()))),
            Err(e) => assert_eq!(
                e.code(),
                Some(ErrorCode::StorageFull),
                "{e}\nnode log:\n{}",
                node.log_tail()
            ),
        }
    }
    assert!(node.alive(), "the node survived a full disk");
    client.status().expect("still answering");

    std::fs::remove_file(&filler).unwrap();
    let after = client
        .produce(b"space again")
        .expect("produce after space freed");
    acked.push((after, b"space again".to_vec()));
    for (offset, value) in &acked {
        assert_eq!(&client.consume(*offset).unwrap().value, value, "{offset}");
    }
    drop(client);
    node.stop();
}

/// In-process: a batch that spans segment rolls and runs out of space half-way is
/// rolled back (nothing of it stays visible), the log stays usable, and it appends
/// again once space is freed.
#[test]
fn log_batch_failing_half_way_on_a_full_disk_is_rolled_back() {
    use commitlog::storage::{Log, LogConfig, NewRecord, RecordKind, StorageError, Term};
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let root = TempDir::new("faults-rollback");
    let mount = match Tmpfs::mount(&root.path().join("mnt"), "2m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; 1 << 20]).unwrap();
    let config = LogConfig {
        max_store_bytes: 64 * 1024,
        max_index_bytes: 8 * 1024,
        ..LogConfig::default()
    };
    let dir = mount.0.join("log");
    let log = Log::open(&dir, config.clone()).unwrap();
    let values: Vec<Vec<u8>> = (0..8u8).map(|k| vec![k; 10_000]).collect();
    let batch: Vec<NewRecord<'_>> = values
        .iter()
        .map(|v| NewRecord {
            term: Term(1),
            kind: RecordKind::Data,
            value: v,
        })
        .collect();
    let mut failed = false;
    // 80 KB per batch, 64 KiB segments: every batch spans a roll.
    for _ in 0..1000 {
        let before = log.next_offset();
        match log.append_batch(&batch) {
            Ok(first) => assert_eq!(first, before),
            Err(StorageError::NoSpace { .. }) => {
                assert_eq!(log.next_offset(), before, "nothing of the batch stays");
                failed = true;
                break;
            }
            Err(other) => panic!("expected NoSpace, got {other}"),
        }
    }
    assert!(failed, "the disk filled up");
    let end = log.next_offset();
    log.sync().unwrap();
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(log.append_batch(&batch).unwrap(), end, "appends resume");
    log.close().unwrap();
    let log = Log::open(&dir, config).unwrap();
    assert_eq!(log.next_offset().0, end.0 + 8);
    for offset in 0..log.next_offset().0 {
        let record = log.read(Offset(offset)).unwrap();
        assert_eq!(record.value, values[(offset % 8) as usize], "{offset}");
    }
}
