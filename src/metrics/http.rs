//! A tiny HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz` (std only).
//!
//! One accept thread; each connection is handled on its own short-lived thread, at
//! most [`MAX_CONNECTIONS`] at once (more are closed at accept). A connection serves
//! exactly one request and is closed (`Connection: close`). The request head is read
//! until the blank line, capped at [`MAX_REQUEST_BYTES`] (larger gets 431) and
//! [`READ_TIMEOUT_MS`] per read; the body, if any, is ignored. Only `GET` (and `HEAD`)
//! are served; anything unparsable gets 400, other methods 405, unknown paths 404.
//! The thread runs until the process exits.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Metrics, Readiness};

/// Most connections handled at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Timeout of each read and write on a connection.
pub const READ_TIMEOUT_MS: u64 = 2000;

/// Binds `addr` and serves on a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || accept_loop(listener, metrics))?;
    Ok(local)
}

fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::debug!("metrics: accept failed: {e}");
                // Bounded back-off so an fd shortage does not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            log::debug!("metrics: over {MAX_CONNECTIONS} connections; closing one");
            continue;
        }
        let (metrics, active2) = (Arc::clone(&metrics), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                if let Err(e) = handle(stream, &metrics) {
                    log::debug!("metrics: connection error: {e}");
                }
                active2.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            log::warn!("metrics: cannot start a connection thread: {e}");
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The response to a request head: (status line, content type, body).
pub fn respond_to(head: &[u8], metrics: &Metrics) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") else {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    };
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    }
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "use GET\n".into());
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" => match metrics.readiness() {
            Readiness::Ready => ("200 OK", TEXT, "ok\n".into()),
            r => ("503 Service Unavailable", TEXT, format!("{}\n", r.reason())),
        },
        _ => (
            "404 Not Found",
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let timeout = Some(Duration::from_millis(READ_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // Bounded: each round adds ≥ 1 byte and stops at MAX_REQUEST_BYTES.
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST_BYTES {
            break false;
        }
        let want = buf.len().min(MAX_REQUEST_BYTES - head.len());
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (status, content_type, body) = if complete {
        respond_to(&head, metrics)
    } else {
        (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request too large\n".to_string(),
        )
    };
    let is_head = head.starts_with(b"HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}
