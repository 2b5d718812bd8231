//! Protocol detection: the first byte a connection sends picks its protocol
//! (0x16 TLS, 0x00 binary frames, an ASCII letter inline text). See the module docs
//! of [`crate::net`].

use super::conn::{Conn, Mode};
use super::server::Env;
use crate::wire;

/// A TLS alert record: fatal `handshake_failure`, sent to a client starting TLS.
const TLS_HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

impl Conn {
    pub(super) fn detect(&mut self, first: u8, env: &Env<'_>) {
        let tls = env.security.and_then(|s| s.tls.as_ref());
        if let (Some(config), false) = (tls, self.stream.is_tls()) {
            if first == 0x16 {
                let hello = self.rbuf[self.rstart..self.rend].to_vec();
                self.rstart = self.rend;
                if let Err(e) = self.stream.start_tls(config, &hello) {
                    log::info!("{}: TLS handshake failed: {e}", self.peer);
                    self.closing = true;
                }
                return; // the first decrypted byte picks the protocol
            }
            if !env.security.is_some_and(|s| s.allow_plaintext) {
                log::info!(
                    "{}: plaintext connection to a TLS server; refusing",
                    self.peer
                );
                self.queue(super::tls::PLAINTEXT_REFUSAL.as_bytes());
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
                return;
            }
        }
        match wire::Protocol::detect(first) {
            wire::Protocol::Binary => self.mode = Mode::Binary,
            wire::Protocol::Text => self.mode = Mode::Text,
            wire::Protocol::Tls if self.stream.is_tls() => {
                log::info!("{}: TLS inside TLS; closing", self.peer);
                self.queue(
                    b"-ERR MALFORMED TLS is already on: send binary frames or text commands\r\n",
                );
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
            wire::Protocol::Tls => {
                log::info!(
                    "{}: client started a TLS handshake, but TLS is not enabled; sending an alert",
                    self.peer
                );
                self.queue(&TLS_HANDSHAKE_FAILURE_ALERT);
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
            wire::Protocol::Unknown => {
                let b = first;
                log::info!(
                    "{}: unrecognized protocol (first byte {b:#04x}); closing",
                    self.peer
                );
                let line = format!(
                    "-ERR MALFORMED unrecognized protocol (first byte {b:#04x}): send binary frames (first byte 0x00, see wire-spec.md) or text commands such as PING\r\n"
                );
                self.queue(line.as_bytes());
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
            }
        }
    }
}
