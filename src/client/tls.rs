//! TLS for the blocking client: rustls' `ClientConnection` over the client's
//! `std::net::TcpStream` (`rustls::StreamOwned`, fine on a blocking socket).
//!
//! The server is verified against the CA file (`--ca`), and the client presents its
//! certificate and key (`--cert`, `--key`): commitlog servers with TLS require a
//! client certificate, whose subject CN is the identity the server's ACL checks. The
//! name checked in the server's certificate is the host of the address the caller
//! dialled (a DNS name or an IP address; see [`ClientTls::server_name`]).
//!
//! The handshake is completed inside [`Client::connect_with`](super::Client::connect_with),
//! bounded by the client timeout. With TLS 1.3 the server verifies the client's
//! certificate after the client considers the handshake done, so a rejected client
//! certificate surfaces as an error on the first request (rustls reports the server's
//! alert, e.g. `UnknownCA` or `CertificateRequired`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;

use crate::net::tls::{self as net_tls, TlsError};

/// TLS settings of a [`Client`](super::Client).
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls configuration ([`client_config`]).
    pub config: Arc<rustls::ClientConfig>,
    /// Name to verify in the server certificate. `None`: the IP address connected to.
    pub server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Settings that verify `host` (a DNS name or an IP address, as in `host:port`).
    pub fn for_host(config: Arc<rustls::ClientConfig>, host: &str) -> Result<ClientTls, TlsError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| TlsError(format!("`{host}` is not a valid TLS server name: {e}")))?;
        Ok(ClientTls {
            config,
            server_name: Some(server_name),
        })
    }
}

/// The host part of `host:port` (`[::1]:8400` → `::1`).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _port)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A client configuration trusting the CA certificate(s) in `ca` and, with
/// `cert_key`, presenting that certificate chain and key (`--ca`, `--cert`, `--key`).
pub fn client_config(
    ca: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    net_tls::client_config(
        (ca, "--ca"),
        cert_key.map(|(cert, key)| ((cert, "--cert"), (key, "--key"))),
    )
}

/// The client's connection: plain TCP or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<net_tls::BlockingTls>),
}

impl Stream {
    /// Wraps `tcp` in TLS and completes the handshake within `timeout`.
    pub(crate) fn tls(
        tcp: TcpStream,
        addr: SocketAddr,
        tls: &ClientTls,
        timeout: Duration,
    ) -> io::Result<Stream> {
        let name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let stream = net_tls::connect_blocking(&tls.config, name, tcp, timeout)?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_address() {
        assert_eq!(host_of("127.0.0.1:8400"), "127.0.0.1");
        assert_eq!(host_of("localhost:1"), "localhost");
        assert_eq!(host_of("[::1]:8400"), "::1");
        assert_eq!(host_of("node-1.example"), "node-1.example");
    }
}
