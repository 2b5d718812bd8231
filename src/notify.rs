//! systemd readiness notification (`sd_notify`), std only.
//!
//! Under a `Type=notify` unit, systemd passes the address of a datagram socket in the
//! `NOTIFY_SOCKET` environment variable and considers the service started only once it
//! receives `READY=1` there. `commitlogd` sends:
//!
//! * `READY=1` (with a `STATUS=` line) once the node serves clients and has joined its
//!   cluster, so `systemctl start` returns, and units ordered `After=commitlogd.service`
//!   start, only when the node is usable;
//! * `STOPPING=1` when a graceful shutdown begins (leadership transfer, final fsync);
//! * `STATUS=<text>` at any time: shown by `systemctl status`.
//!
//! # Protocol (sd_notify(3))
//! One datagram of newline-separated `KEY=VALUE` assignments, sent to the socket named
//! by `NOTIFY_SOCKET`: an absolute path (`/run/systemd/notify`), or, on Linux, an
//! abstract socket written with a leading `@` (the `@` stands for the leading NUL byte).
//! Any other form (e.g. `vsock:`) is reported as [`NotifyError::UnsupportedAddress`].
//! An unset or empty variable means "not started by systemd": nothing is sent.
//!
//! # Contract
//! * Never fatal: the convenience functions ([`ready`], [`stopping`], [`status`]) log a
//!   failure at `warn` and return; a server must not die because its supervisor's
//!   socket is gone. [`send`] and [`send_to`] return the error for callers and tests.
//! * Bounded: a message is at most [`MAX_MESSAGE_BYTES`]; `STATUS=` text is one line
//!   (newlines become spaces) so it cannot inject further assignments.
//! * The environment is read, never modified (no `unset_environment`): `commitlogd`
//!   starts no child processes that could inherit it, and it needs the socket again
//!   for `STOPPING=1`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Largest notification sent, in bytes (systemd itself accepts far more; ours are
/// a few dozen bytes).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Longest `STATUS=` text kept, in bytes; longer text is cut at a char boundary.
pub const MAX_STATUS_BYTES: usize = 512;

/// Why a notification was not delivered.
#[derive(Debug)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name.
    UnsupportedAddress(String),
    /// The message is longer than [`MAX_MESSAGE_BYTES`].
    TooLong {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// Creating the socket or sending failed (e.g. the socket does not exist).
    Io(io::Error),
    /// The kernel accepted only part of the datagram.
    Truncated {
        /// Bytes sent.
        sent_bytes: usize,
        /// Bytes in the message.
        len_bytes: usize,
    },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::UnsupportedAddress(a) => write!(
                f,
                "{NOTIFY_SOCKET_ENV}={a:?} is not supported (expected an absolute path or @abstract name)"
            ),
            NotifyError::TooLong { len_bytes } => write!(
                f,
                "notification of {len_bytes} bytes exceeds {MAX_MESSAGE_BYTES} bytes"
            ),
            NotifyError::Io(e) => write!(f, "cannot notify systemd: {e}"),
            NotifyError::Truncated {
                sent_bytes,
                len_bytes,
            } => write!(
                f,
                "systemd notification truncated: sent {sent_bytes} of {len_bytes} bytes"
            ),
        }
    }
}

impl std::error::Error for NotifyError {}

impl From<io::Error> for NotifyError {
    fn from(e: io::Error) -> Self {
        NotifyError::Io(e)
    }
}

/// Tells systemd the service is ready (`READY=1`). Logs and ignores failures; does
/// nothing outside systemd. Call once the node serves clients and has joined.
pub fn ready() {
    log_failure("READY=1", send("READY=1"));
}

/// Tells systemd the service is ready, with a status line for `systemctl status`.
pub fn ready_with_status(text: &str) {
    let message = format!("READY=1\n{}", status_line(text));
    log_failure("READY=1", send(&message));
}

/// Tells systemd a graceful shutdown has begun (`STOPPING=1`). Logs and ignores
/// failures; does nothing outside systemd.
pub fn stopping() {
    log_failure("STOPPING=1", send("STOPPING=1"));
}

/// Sets the status line `systemctl status` shows (`STATUS=<text>`, one line, at most
/// [`MAX_STATUS_BYTES`]). Logs and ignores failures; does nothing outside systemd.
pub fn status(text: &str) {
    log_failure("STATUS", send(&status_line(text)));
}

/// Sends `message` to the socket named by `NOTIFY_SOCKET`. `Ok(false)` when the
/// variable is unset or empty (not running under systemd), `Ok(true)` when sent.
pub fn send(message: &str) -> Result<bool, NotifyError> {
    send_from_env(std::env::var_os(NOTIFY_SOCKET_ENV).as_deref(), message)
}

/// [`send`] with the variable's value passed in (`None`: unset).
fn send_from_env(socket: Option<&OsStr>, message: &str) -> Result<bool, NotifyError> {
    match socket {
        None => Ok(false),
        Some(s) if s.is_empty() => Ok(false),
        Some(s) => send_to(s, message).map(|()| true),
    }
}

/// Sends `message` as one datagram to `socket` (a `NOTIFY_SOCKET` value: an absolute
/// path, or `@name` for a Linux abstract socket).
pub fn send_to(socket: &OsStr, message: &str) -> Result<(), NotifyError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(NotifyError::TooLong {
            len_bytes: message.len(),
        });
    }
    let bytes = socket.as_encoded_bytes();
    let sender = UnixDatagram::unbound()?;
    let sent_bytes = match bytes.first() {
        Some(b'/') => sender.send_to(message.as_bytes(), socket)?,
        Some(b'@') => send_abstract(&sender, &bytes[1..], message.as_bytes(), socket)?,
        _ => {
            return Err(NotifyError::UnsupportedAddress(
                socket.to_string_lossy().into_owned(),
            ))
        }
    };
    if sent_bytes != message.len() {
        return Err(NotifyError::Truncated {
            sent_bytes,
            len_bytes: message.len(),
        });
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(
    sender: &UnixDatagram,
    name: &[u8],
    message: &[u8],
    _socket: &OsStr,
) -> Result<usize, NotifyError> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    Ok(sender.send_to_addr(message, &addr)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(
    _sender: &UnixDatagram,
    _name: &[u8],
    _message: &[u8],
    socket: &OsStr,
) -> Result<usize, NotifyError> {
    Err(NotifyError::UnsupportedAddress(
        socket.to_string_lossy().into_owned(),
    ))
}

/// `STATUS=<text>` with newlines (and other control characters) replaced by spaces
/// and the text cut to [`MAX_STATUS_BYTES`].
fn status_line(text: &str) -> String {
    let mut line = String::with_capacity(7 + text.len().min(MAX_STATUS_BYTES));
    line.push_str("STATUS=");
    let mut kept_bytes = 0;
    for c in text.chars() {
        if kept_bytes + c.len_utf8() > MAX_STATUS_BYTES {
            break;
        }
        kept_bytes += c.len_utf8();
        line.push(if c.is_control() { ' ' } else { c });
    }
    line
}

fn log_failure(what: &str, result: Result<bool, NotifyError>) {
    match result {
        Ok(true) => log::debug!("told systemd {what}"),
        Ok(false) => {}
        Err(e) => log::warn!("{e} (while sending {what}); continuing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A datagram listener standing in for systemd's notify socket.
    struct Listener {
        socket: UnixDatagram,
        dir: PathBuf,
    }

    impl Listener {
        fn bind(tag: &str) -> (Listener, PathBuf) {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "commitlog-notify-{tag}-{}-{nanos:08x}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify.sock");
            let socket = UnixDatagram::bind(&path).unwrap();
            // Upper bound only: the datagram is queued before send_to returns.
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            (Listener { socket, dir }, path)
        }

        fn recv(&self) -> String {
            let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
            let n = self.socket.recv(&mut buf).expect("a notification arrives");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn ready_and_stopping_arrive_as_single_datagrams_on_a_path_socket() {
        let (listener, path) = Listener::bind("path");
        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(listener.recv(), "READY=1");
        let message = format!("READY=1\n{}", status_line("serving on 127.0.0.1:8400"));
        send_to(path.as_os_str(), &message).unwrap();
        assert_eq!(listener.recv(), "READY=1\nSTATUS=serving on 127.0.0.1:8400");
        assert!(send_from_env(Some(path.as_os_str()), "STOPPING=1").unwrap());
        assert_eq!(listener.recv(), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_names_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "commitlog-notify-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let env_value = format!("@{name}");
        send_to(OsStr::new(&env_value), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn unset_or_empty_variable_means_not_under_systemd() {
        assert!(!send_from_env(None, "READY=1").unwrap());
        assert!(!send_from_env(Some(OsStr::new("")), "READY=1").unwrap());
    }

    #[test]
    fn failures_are_errors_not_panics() {
        let missing = std::env::temp_dir().join(format!(
            "commitlog-notify-missing-{}/none.sock",
            std::process::id()
        ));
        assert!(matches!(
            send_to(missing.as_os_str(), "READY=1"),
            Err(NotifyError::Io(_))
        ));
        assert!(matches!(
            send_to(OsStr::new("relative/notify.sock"), "READY=1"),
            Err(NotifyError::UnsupportedAddress(_))
        ));
        assert!(matches!(
            send_to(OsStr::new("vsock:2:1234"), "READY=1"),
            Err(NotifyError::UnsupportedAddress(_))
        ));
        let (_listener, path) = Listener::bind("long");
        let huge = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(
            send_to(path.as_os_str(), &huge),
            Err(NotifyError::TooLong { len_bytes }) if len_bytes == MAX_MESSAGE_BYTES + 1
        ));
        // The logging wrappers swallow the same failure.
        log_failure(
            "READY=1",
            send_to(missing.as_os_str(), "READY=1").map(|()| true),
        );
    }

    #[test]
    fn status_text_is_one_bounded_line() {
        assert_eq!(
            status_line("joined\nREADY=1\r\tok"),
            "STATUS=joined READY=1  ok"
        );
        let long = "é".repeat(MAX_STATUS_BYTES);
        let line = status_line(&long);
        assert!(line.len() <= "STATUS=".len() + MAX_STATUS_BYTES);
        assert!(line.len() > "STATUS=".len() + MAX_STATUS_BYTES - 2);
    }
}
