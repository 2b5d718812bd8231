//! Process helpers for integration tests: start a real `commitlogd` on 127.0.0.1 with
//! an OS-assigned port and a temporary data dir, wait for readiness (the ready file)
//! with a deadline, stop it with SIGTERM or SIGKILL, and restart it on the same data.
#![allow(dead_code)]

pub mod spawn;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use commitlog::client::Client;

/// How long a server may take to start serving.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a server may take to exit after a signal.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "commitlog-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running (or stopped) `commitlogd`.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub root: TempDir,
    extra_args: Vec<String>,
    starts: u32,
}

impl Server {
    /// Starts `commitlogd --dev --listen 127.0.0.1:0 --data-dir <tmp>` plus `extra_args`.
    pub fn start(extra_args: &[&str]) -> Server {
        let root = TempDir::new("server");
        let mut server = Server {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            root,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let ready = self.root.path().join(format!("ready-{}", self.starts));
        let log = self.root.path().join(format!("stderr-{}", self.starts));
        let mut args: Vec<std::ffi::OsString> = vec![
            "--dev".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.data_dir().into(),
        ];
        args.extend(self.extra_args.iter().map(Into::into));
        let (child, ready) = spawn::spawn_commitlogd(&args, &ready, &log, START_DEADLINE);
        self.child = Some(child);
        self.addr = ready.rpc;
    }

    /// The server's stderr of its latest start.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.root.path().join(format!("stderr-{}", self.starts)))
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A connected client.
    pub fn client(&self) -> Client {
        Client::connect(self.addr, Duration::from_secs(10)).expect("connect")
    }

    /// A raw TCP connection with a read timeout.
    pub fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("tcp connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait_exit()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_DEADLINE;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("commitlogd did not exit in time: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts again on the same data dir (a new port).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Runs `clog` against this server.
    pub fn clog(&self, args: &[&str]) -> Output {
        clog(&self.addr.to_string(), args, None)
    }

    /// Runs `clog` with `stdin` as its input.
    pub fn clog_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        clog(&self.addr.to_string(), args, Some(stdin))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `clog --addr ADDR args...`, bounded in time by clog's own timeouts.
pub fn clog(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    // Each call gets an empty member cache: a cache left by another test could name
    // ports that some other test's server uses now.
    let cache = TempDir::new("clog-cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_clog"))
        .env("CLOG_CACHE_DIR", cache.path())
        .env("CLOG_CONFIG_DIR", cache.path())
        .arg("--addr")
        .arg(addr)
        .arg("--timeout-ms")
        .arg("10000")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clog");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).expect("write clog stdin");
    }
    child.wait_with_output().expect("clog output")
}

/// Reads from `stream` until EOF, an error, or `deadline`; returns the bytes and
/// whether the connection ended (EOF or reset) before the deadline.
pub fn read_to_close(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, bool) {
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= end {
            return (out, false);
        }
        stream.set_read_timeout(Some(end - now)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (out, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (out, true), // reset
        }
    }
}

/// Reads exactly `n` bytes (bounded by the stream's read timeout).
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("read response bytes");
    buf
}

/// Offset of the first record produced to a fresh node: a log starts at 1, and
/// offset 1 holds the first leader's no-op entry (wire-spec §5).
pub const FIRST_OFFSET: u64 = 2;
