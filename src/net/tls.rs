//! TLS on the shared client/peer port, driven by hand inside the mio event loop.
//!
//! # Detection
//! A connection starts plaintext. If its first byte is `0x16` (a TLS handshake record)
//! and the server has TLS configured, the loop hands the bytes read so far to a fresh
//! `rustls::ServerConnection` (`Link::start_tls`) and from then on every read and
//! write of that connection goes through it. After the handshake, the first
//! *decrypted* byte picks the binary or text protocol exactly as on a plaintext
//! connection (so `openssl s_client` + `PING` works). With TLS configured, a
//! connection whose first byte is anything else gets one line,
//! `-ERR UNAUTHENTICATED …`, and is closed, unless [`Security::allow_plaintext`].
//!
//! # mTLS
//! Client certificates are required ([`server_config`]): rustls' `WebPkiClientVerifier`
//! checks the chain against the configured CA(s), the validity period and the key
//! usage; a client without a certificate or with one from another CA fails the
//! handshake and is closed (rustls sends the alert). The identity used by the ACL is
//! the verified leaf certificate's subject CN ([`crate::auth::common_name`]), read
//! once when the handshake completes.
//!
//! # Driving rustls without blocking
//! `Link` implements `Read`/`Write` over the non-blocking mio `TcpStream`:
//! - `read`: hand out buffered plaintext (`reader()`); when there is none, move TLS
//!   bytes from the socket into rustls (`read_tls`), decrypt (`process_new_packets`),
//!   send what the handshake wants to send (`write_tls`), and try again. `WouldBlock`
//!   from the socket is returned as is, so the loop's edge-triggered "read until
//!   `WouldBlock`" rule still holds.
//! - `write`: plaintext goes into rustls (`writer()`), records go out with
//!   `write_tls` until the socket would block; when rustls' buffer is full the write
//!   reports `WouldBlock` and the loop retries on the next writable event.
//! - `Link::flush_tls` pushes records rustls still holds (the loop calls it on every
//!   drive) and `Link::wants_write` keeps a connection open until they are out.
//!
//! # Bounds
//! rustls keeps at most 16 KiB of decrypted but unread plaintext (its own limit; we
//! always drain it before reading more from the socket) and at most
//! [`TLS_SEND_BUFFER_BYTES`] of plaintext/records waiting for the socket
//! (`set_buffer_limit`). One `read` call processes at most
//! [`MAX_RECORDS_WITHOUT_DATA`] socket reads that yield no plaintext, so a peer that
//! streams empty records or handshake junk is cut off instead of spinning the loop.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::{self, Action, Authorizer, DecisionCache};
use crate::wire::{ErrorCode, Request};

/// Most plaintext + TLS record bytes a connection's rustls session buffers for sending.
pub const TLS_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// Socket reads without any decrypted byte in one connection read before the connection
/// is considered abusive (a handshake needs a handful).
pub const MAX_RECORDS_WITHOUT_DATA: usize = 256;

/// The largest PEM file read (certificates chains and keys are a few KiB).
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// The one line a plaintext connection to a TLS server gets before it is closed. Binary
/// clients of this crate recognise a `-ERR` line in place of a frame.
pub const PLAINTEXT_REFUSAL: &str = "-ERR UNAUTHENTICATED this server requires TLS with a client certificate; \
connect with TLS (clog --ca <ca.pem> --cert <client.pem> --key <client-key.pem>, or \
openssl s_client -cert <client.pem> -key <client-key.pem> -CAfile <ca.pem> -connect <host:port>)\r\n";

/// The server's TLS and ACL settings, given to [`Server::with_security`](super::Server::with_security).
#[derive(Clone, Debug)]
pub struct Security {
    /// TLS for incoming connections; `None` serves plaintext only (and the ACL is off).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With TLS configured, also accept plaintext connections (as [`auth::ANONYMOUS`]).
    pub allow_plaintext: bool,
    /// The ACL, checked for every request when TLS is configured.
    pub authorizer: Option<Arc<Authorizer>>,
}

/// A certificate/key/CA file problem. The message names the flag and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Certificate, key and CA files of one TLS role (`--server-tls-*`, `--peer-tls-*`,
/// or the client's `--cert/--key/--ca`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s) that issued the other side's certificates.
    pub ca: PathBuf,
}

/// The one crypto provider used everywhere (ring), passed explicitly so a second
/// provider compiled in by some dependency can never make rustls panic.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, flag: &str) -> Result<Vec<u8>, TlsError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| TlsError(format!("cannot read {flag} {}: {e}", path.display())))?;
    if meta.len() > MAX_PEM_FILE_BYTES {
        return Err(TlsError(format!(
            "{flag} {} is {} bytes; a PEM file is expected (at most {MAX_PEM_FILE_BYTES})",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {flag} {}: {e}", path.display())))
}

/// Reads every certificate of a PEM file (`flag` names it in errors).
pub fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{flag} {}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{flag} {}: no `BEGIN CERTIFICATE` block found",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path, flag)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError(format!(
            "{flag} {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM expected): {e}",
            path.display()
        ))
    })
}

/// A root store with every certificate of the given CA files.
pub fn load_roots(cas: &[(&Path, &str)]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (path, flag) in cas {
        for cert in load_certs(path, flag)? {
            roots.add(cert).map_err(|e| {
                TlsError(format!(
                    "{flag} {}: not a CA certificate: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(roots)
}

/// The server side of mTLS: present `files.cert`/`files.key`, require a client
/// certificate issued by `files.ca` (or by any of `extra_cas`, e.g. the peers' CA).
pub fn server_config(
    files: &TlsFiles,
    extra_cas: &[(&Path, &str)],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut cas = vec![(files.ca.as_path(), "--server-tls-ca-file")];
    cas.extend_from_slice(extra_cas);
    let roots = Arc::new(load_roots(&cas)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| TlsError(format!("cannot build the client certificate verifier: {e}")))?;
    let certs = load_certs(&files.cert, "--server-tls-cert-file")?;
    let key = load_key(&files.key, "--server-tls-key-file")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError(format!(
                "--server-tls-cert-file {} and --server-tls-key-file {} do not form a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// A file and the flag that named it (for error messages).
pub type FlaggedPath<'a> = (&'a Path, &'a str);

/// A client-side mTLS configuration: trust the CA in `ca`, present `cert`/`key` when
/// given. Each path comes with the flag that named it, for error messages.
pub fn client_config(
    ca: FlaggedPath<'_>,
    cert_key: Option<(FlaggedPath<'_>, FlaggedPath<'_>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = load_roots(&[ca])?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS protocol versions: {e}")))?
        .with_root_certificates(roots);
    let config = match cert_key {
        Some(((cert, cert_flag), (key, key_flag))) => builder
            .with_client_auth_cert(load_certs(cert, cert_flag)?, load_key(key, key_flag)?)
            .map_err(|e| {
                TlsError(format!(
                    "{cert_flag} {} and {key_flag} {} do not form a usable pair: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Node-to-node TLS (`--peer-tls-{cert,key,ca}-file`), loaded and validated at start.
///
/// Incoming peer connections arrive on the shared port and are verified by the
/// server config (the peer CA is added to its client roots, see [`server_config`]);
/// [`PeerTls::client`] is what a node presents when it dials a peer. The Raft-backed
/// cluster uses it for its outgoing peer connections; a single node only validates it.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// The files it was loaded from.
    pub files: TlsFiles,
    /// Client config for outgoing peer connections: presents the peer certificate,
    /// trusts the peer CA.
    pub client: Arc<rustls::ClientConfig>,
    /// The subject CN of the peer certificate: the identity other nodes' ACLs check
    /// for the `replicate` action (e.g. `commitlog-peer`).
    pub identity: String,
}

/// A TLS client connection over a blocking socket: the one used by the client
/// library and by a node's outgoing peer connections.
pub type BlockingTls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Opens TLS over `sock` and completes the handshake within `timeout` (each round
/// blocks at most `timeout` on the socket; the deadline ends the loop). On failure
/// the alert rustls queued is sent (best effort) and the error says it was the
/// handshake. The socket keeps `timeout` as its read timeout.
pub fn connect_blocking(
    config: &Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
    sock: std::net::TcpStream,
    timeout: std::time::Duration,
) -> io::Result<BlockingTls> {
    let conn = rustls::ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
    sock.set_read_timeout(Some(timeout))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let deadline = std::time::Instant::now() + timeout;
    while tls.conn.is_handshaking() {
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let _ = flush_blocking(&mut tls.conn, &mut tls.sock);
            // rustls reports certificate and protocol errors as InvalidData.
            return Err(io::Error::new(e.kind(), format!("TLS handshake: {e}")));
        }
    }
    Ok(tls)
}

/// Sends every TLS record rustls holds (bounded: each round writes some bytes).
pub fn flush_blocking(
    conn: &mut rustls::ClientConnection,
    sock: &mut std::net::TcpStream,
) -> io::Result<()> {
    while conn.wants_write() {
        if conn.write_tls(sock)? == 0 {
            return Err(io::Error::new(
                ErrorKind::WriteZero,
                "socket accepted no bytes",
            ));
        }
    }
    Ok(())
}

/// Loads and validates the peer TLS files.
pub fn load_peer_tls(files: &TlsFiles) -> Result<PeerTls, TlsError> {
    let client = client_config(
        (&files.ca, "--peer-tls-ca-file"),
        Some((
            (&files.cert, "--peer-tls-cert-file"),
            (&files.key, "--peer-tls-key-file"),
        )),
    )?;
    let certs = load_certs(&files.cert, "--peer-tls-cert-file")?;
    let identity = auth::common_name(certs[0].as_ref()).map_err(|e| {
        TlsError(format!(
            "--peer-tls-cert-file {}: {e}",
            files.cert.display()
        ))
    })?;
    Ok(PeerTls {
        files: files.clone(),
        client,
        identity,
    })
}

/// A connection's transport: plaintext TCP, or a rustls server session over it.
pub(crate) struct Link {
    tcp: TcpStream,
    tls: Option<Box<TlsSession>>,
}

struct TlsSession {
    conn: ServerConnection,
    /// The socket returned EOF.
    tcp_eof: bool,
    /// The client certificate's CN, once the handshake completed.
    identity: Option<Arc<str>>,
    acl: DecisionCache,
}

impl Link {
    pub(crate) fn plain(tcp: TcpStream) -> Link {
        Link { tcp, tls: None }
    }

    /// Whether TLS is active on this connection.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Switches to TLS: `already_read` are the bytes read from the socket so far (the
    /// start of the ClientHello).
    pub(crate) fn start_tls(
        &mut self,
        config: &Arc<rustls::ServerConfig>,
        already_read: &[u8],
    ) -> io::Result<()> {
        let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
        let mut rest = already_read;
        // Bounded: every round consumes at least one byte or returns.
        while !rest.is_empty() {
            let n = conn.read_tls(&mut rest)?;
            if n == 0 {
                return Err(io::Error::other("TLS session refused the first bytes"));
            }
            if let Err(e) = conn.process_new_packets() {
                self.tls = Some(Box::new(TlsSession::new(conn)));
                let _ = self.flush_tls(); // the alert
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
        self.tls = Some(Box::new(TlsSession::new(conn)));
        self.flush_tls()?;
        Ok(())
    }

    /// Sends TLS records rustls holds until done or the socket would block. Returns
    /// whether any byte was written.
    pub(crate) fn flush_tls(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut wrote = false;
        // Bounded by the (limited) bytes rustls buffers: each round writes some.
        while tls.conn.wants_write() {
            match tls.conn.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(wrote)
    }

    /// Whether rustls still holds records to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Before dropping a TLS connection: send `close_notify` (best effort, never
    /// blocks), so the client sees a clean end of stream rather than a truncation.
    pub(crate) fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.conn.send_close_notify();
            let _ = self.flush_tls();
        }
    }

    /// Half-closes: a TLS `close_notify` first, then the TCP write side.
    pub(crate) fn shutdown(&mut self, how: std::net::Shutdown) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            tls.conn.send_close_notify();
            let _ = self.flush_tls();
        }
        self.tcp.shutdown(how)
    }

    /// Checks `request` against the ACL: its action on each of its objects (topics,
    /// or `*`; see `auth`). `Err` carries the code and message to answer with.
    pub(crate) fn authorize(
        &mut self,
        security: &Security,
        request: &Request,
        peer: std::net::SocketAddr,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(authorizer) = security.authorizer.as_deref() else {
            return Ok(());
        };
        if Action::for_api(request.api_key()).is_none() {
            return Ok(());
        }
        let (identity, cache): (&str, Option<&mut DecisionCache>) = match self.tls.as_mut() {
            Some(tls) => match tls.identity.as_deref() {
                Some(identity) => (identity, Some(&mut tls.acl)),
                None => {
                    return Err((
                        ErrorCode::Unauthenticated,
                        "the TLS handshake has not produced a client identity".to_string(),
                    ))
                }
            },
            None => (auth::ANONYMOUS, None),
        };
        let Err(denial) = auth::check_request(authorizer, cache, identity, request) else {
            return Ok(());
        };
        let api = request.api_key();
        let (action, object) = (denial.action, denial.object.as_str());
        log::info!("{peer}: denied {api} to `{identity}` on `{object}` (needs `{action}`)");
        Err((
            ErrorCode::PermissionDenied,
            auth::denied_message_on(identity, action, api, object),
        ))
    }

    /// The verified client identity (certificate CN), if this is a TLS connection past
    /// its handshake.
    pub(crate) fn identity(&self) -> Option<Arc<str>> {
        self.tls.as_ref().and_then(|t| t.identity.clone())
    }

    fn read_tls_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for _ in 0..MAX_RECORDS_WITHOUT_DATA {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(0);
            };
            match tls.conn.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the client sent close_notify
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.tcp_eof {
                return Ok(0);
            }
            match tls.conn.read_tls(&mut self.tcp) {
                Ok(0) => tls.tcp_eof = true,
                Ok(_) => {}
                Err(e) => return Err(e), // WouldBlock included: the socket is drained
            }
            if let Err(e) = tls.conn.process_new_packets() {
                if let Ok(peer) = self.tcp.peer_addr() {
                    log::info!("{peer}: TLS error, closing: {e}");
                }
                let _ = self.flush_tls(); // deliver the alert rustls queued
                return Err(io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            if tls.identity.is_none() && !tls.conn.is_handshaking() {
                match client_identity(&tls.conn) {
                    Ok(identity) => tls.identity = Some(identity),
                    Err(e) => {
                        if let Ok(peer) = self.tcp.peer_addr() {
                            log::info!("{peer}: closing: {e}");
                        }
                        return Err(e);
                    }
                }
            }
            self.flush_tls()?;
        }
        Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("TLS: {MAX_RECORDS_WITHOUT_DATA} reads without application data"),
        ))
    }
}

impl TlsSession {
    fn new(conn: ServerConnection) -> TlsSession {
        TlsSession {
            conn,
            tcp_eof: false,
            identity: None,
            acl: DecisionCache::default(),
        }
    }
}

/// The CN of the verified leaf certificate.
fn client_identity(conn: &ServerConnection) -> io::Result<Arc<str>> {
    let leaf = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "TLS: no client certificate"))?;
    match auth::common_name(leaf.as_ref()) {
        Ok(cn) => Ok(Arc::from(cn)),
        Err(e) => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("TLS: unusable client certificate: {e}"),
        )),
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_some() {
            self.read_tls_plaintext(buf)
        } else {
            self.tcp.read(buf)
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.tcp.write(buf);
        }
        // Make room first: if rustls' buffer is still full afterwards, the socket
        // returned WouldBlock, so a writable event will come (edge-triggered safe).
        self.flush_tls()?;
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        let n = tls.conn.writer().write(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::WouldBlock,
                "TLS send buffer full",
            ));
        }
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }
}

impl mio::event::Source for Link {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("commitlog-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn pem_errors_name_flag_and_file() {
        let missing = std::env::temp_dir().join("commitlog-no-such-cert.pem");
        let err = load_certs(&missing, "--cert").unwrap_err().to_string();
        assert!(
            err.contains("--cert") && err.contains("commitlog-no-such-cert.pem"),
            "{err}"
        );

        let not_pem = temp_file("not-pem.pem", "hello\n");
        let err = load_certs(&not_pem, "--server-tls-cert-file")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--server-tls-cert-file") && err.contains("no `BEGIN CERTIFICATE`"),
            "{err}"
        );
        let err = load_key(&not_pem, "--key").unwrap_err().to_string();
        assert!(
            err.contains("--key") && err.contains("not-pem.pem"),
            "{err}"
        );
        let err = load_roots(&[(not_pem.as_path(), "--ca")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--ca"), "{err}");
    }

    #[test]
    fn certificates_and_keys_load_and_pair_up() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = temp_file("self.pem", &cert.pem());
        let key_path = temp_file("self-key.pem", &key.serialize_pem());
        assert_eq!(load_certs(&cert_path, "--cert").unwrap().len(), 1);
        load_key(&key_path, "--key").unwrap();
        // A self-signed leaf is its own CA here: the server config builds.
        let files = TlsFiles {
            cert: cert_path.clone(),
            key: key_path,
            ca: cert_path.clone(),
        };
        server_config(&files, &[]).unwrap();
        // A key that does not match the certificate is refused at load time.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_path = temp_file("other-key.pem", &other.serialize_pem());
        let err = server_config(
            &TlsFiles {
                key: other_path,
                ..files
            },
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("do not form a usable pair"), "{err}");
    }
}
