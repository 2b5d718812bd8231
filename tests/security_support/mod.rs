//! Certificates for the security tests, generated at run time with rcgen (nothing that
//! can expire is committed): a CA; a server certificate for 127.0.0.1/localhost; client
//! certificates for `root`, `nobody` and the peer identity `commitlog-peer`; an expired
//! `root`; and a `root` and a `commitlog-peer` issued by another CA. Plus helpers to start a TLS `commitlogd`
//! and to connect with the client library or a raw rustls stream.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commitlog::client::tls::{client_config, ClientTls};
use commitlog::client::{Client, ClientConfig, ClientError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::common::{Server, TempDir};

/// A generated PKI in a temp dir.
pub struct Pki {
    pub dir: TempDir,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} test CA"));
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).expect("self-sign CA");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    Ca {
        issuer: Issuer::new(params, key),
    }
}

fn leaf(dir: &Path, ca: &Ca, file: &str, cn: &str, server: bool, expired: bool) {
    let key = KeyPair::generate().expect("leaf key");
    let sans = if server {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(sans).expect("leaf params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "commitlog tests");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("sign leaf");
    std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem()).unwrap();
}

impl Pki {
    /// Generates everything (a few milliseconds).
    pub fn generate() -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let main = ca(d, "ca");
        leaf(d, &main, "server", "commitlog-server", true, false);
        leaf(d, &main, "root", "root", false, false);
        leaf(d, &main, "nobody", "nobody", false, false);
        leaf(d, &main, "peer", "commitlog-peer", true, false);
        leaf(d, &main, "expired-root", "root", false, true);
        let other = ca(d, "other-ca");
        leaf(d, &other, "stranger-root", "root", false, false);
        leaf(d, &other, "stranger-peer", "commitlog-peer", true, false);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn cert(&self, who: &str) -> PathBuf {
        self.path(&format!("{who}.pem"))
    }

    pub fn key(&self, who: &str) -> PathBuf {
        self.path(&format!("{who}-key.pem"))
    }

    /// `commitlogd` flags for TLS with this PKI's server certificate.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--server-tls-cert-file".into(),
            self.cert("server").display().to_string(),
            "--server-tls-key-file".into(),
            self.key("server").display().to_string(),
            "--server-tls-ca-file".into(),
            self.ca().display().to_string(),
        ]
    }

    /// Starts a TLS `commitlogd` with `extra` flags.
    pub fn start_server(&self, extra: &[&str]) -> Server {
        let mut args = self.server_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(&refs)
    }

    /// The rustls client config presenting `who`'s certificate (None: no certificate).
    pub fn rustls_config(&self, who: Option<&str>) -> Arc<rustls::ClientConfig> {
        let cert = who.map(|w| (self.cert(w), self.key(w)));
        client_config(
            &self.ca(),
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .expect("client TLS config")
    }

    /// A library client over TLS as `who` (None: no client certificate).
    pub fn client(&self, addr: SocketAddr, who: Option<&str>) -> Result<Client, ClientError> {
        let tls = ClientTls::for_host(self.rustls_config(who), "127.0.0.1").unwrap();
        Client::connect_with(
            addr,
            ClientConfig {
                timeout: Duration::from_secs(10),
                tls: Some(tls),
                ..ClientConfig::default()
            },
        )
    }

    /// A raw TLS stream as `who` (for the text protocol), handshake done.
    pub fn raw(&self, addr: SocketAddr, who: &str) -> StreamOwned<ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(self.rustls_config(Some(who)), name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake");
        }
        stream
    }
}

/// Sends one text command and reads one reply line (bounded by the read timeout).
pub fn text_command(stream: &mut impl ReadWrite, line: &str) -> String {
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\r\n").unwrap();
    stream.flush().unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Bounded: at most 64 KiB or until the deadline.
    while reply.len() < 65_536 && Instant::now() < deadline {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                reply.push(byte[0]);
                if reply.ends_with(b"\r\n") {
                    break;
                }
            }
            Err(e) => panic!("reading the reply to {line}: {e}"),
        }
    }
    String::from_utf8_lossy(&reply).trim_end().to_string()
}

/// Read + Write, for the text helper.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
