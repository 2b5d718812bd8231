//! systemd `Type=notify` contract of a real `commitlogd` process: with `NOTIFY_SOCKET`
//! set, it sends `READY=1` only once it serves clients, and `STOPPING=1` when SIGTERM
//! starts the graceful shutdown (deploy/systemd/commitlogd.service relies on both).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn commitlogd_notifies_ready_after_serving_and_stopping_on_sigterm() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = Scratch(std::env::temp_dir().join(format!(
        "commitlog-deploy-notify-{}-{nanos:08x}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let socket_path = dir.0.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // An upper bound for a slow CI machine, not a synchronization sleep.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ready_file = dir.0.join("ready");

    let mut child = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .arg("--ready-file")
        .arg(&ready_file)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let first = recv(&socket);
    let ready = first.lines().any(|l| l == "READY=1");
    // READY=1 comes after the node serves: the ready file (written once bound) exists
    // and the address in it accepts connections.
    let text = std::fs::read_to_string(&ready_file).unwrap_or_default();
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("rpc="))
        .unwrap_or("");
    let connected = std::net::TcpStream::connect(addr.trim()).is_ok();

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let second = recv(&socket);
    let status = child.wait().unwrap();
    assert!(ready, "first notification was {first:?}, not READY=1");
    assert!(
        connected,
        "READY=1 arrived before {addr:?} accepted connections"
    );
    assert!(kill.success());
    assert!(
        second.lines().any(|l| l == "STOPPING=1"),
        "after SIGTERM got {second:?}"
    );
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
