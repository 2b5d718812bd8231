//! Packet sealing with AES-256-GCM (`ring`).
//!
//! Sealed body: `nonce[12] | ciphertext | tag[16]`. The two plaintext header bytes
//! (version, flags) are the associated data, so flipping the "encrypted" flag or the
//! version fails authentication instead of changing how a packet is read.
//!
//! ## Nonce uniqueness
//! GCM breaks if a (key, nonce) pair repeats. Nonces come from a [`NonceSource`]:
//! - the UDP driver installs one that draws 96 fresh bits per packet from
//!   `ring::rand::SystemRandom`. With random nonces the chance of any repeat after `q`
//!   packets under one key is about `q² / 2^97`: for a 100-node cluster sending 5,000
//!   packets/s in total, that is below 2^-23 after a year; rotate the key long before
//!   2^32 packets (NIST SP 800-38D's limit for random nonces).
//! - the pure core, which takes no randomness from the OS, defaults to
//!   [`CounterNonces`]: a 32-bit prefix from the seeded PRNG plus a 64-bit counter.
//!   One instance never repeats a nonce, but two instances that share a key are only
//!   distinct if their prefixes differ, so this source is for tests and simulation.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// Secret key size for AES-256-GCM.
pub const KEY_BYTES: usize = 32;
/// GCM nonce size.
pub const NONCE_BYTES: usize = 12;
/// GCM authentication tag size.
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed body adds to the plaintext.
pub const SEAL_OVERHEAD_BYTES: usize = NONCE_BYTES + TAG_BYTES;

/// Where per-packet nonces come from. Implementations must never return the same
/// nonce twice for one key (see the module doc).
pub trait NonceSource: Send {
    /// The next nonce, or `None` if the source failed (the packet is then not sent).
    fn next_nonce(&mut self) -> Option<[u8; NONCE_BYTES]>;
}

/// Deterministic nonces: `prefix (4 bytes) | counter (8 bytes, big-endian)`.
#[derive(Clone, Debug)]
pub struct CounterNonces {
    prefix: u32,
    counter: u64,
}

impl CounterNonces {
    /// A source whose nonces start at `prefix | 0`.
    pub fn new(prefix: u32) -> CounterNonces {
        CounterNonces { prefix, counter: 0 }
    }
}

impl NonceSource for CounterNonces {
    fn next_nonce(&mut self) -> Option<[u8; NONCE_BYTES]> {
        // 2^64 packets never happen; refuse rather than wrap if it ever did.
        let counter = self.counter;
        self.counter = self.counter.checked_add(1)?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..4].copy_from_slice(&self.prefix.to_be_bytes());
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        Some(nonce)
    }
}

/// A packet failed authentication (wrong key, tampered bytes, or too short to hold a
/// nonce and tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError;

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gossip packet failed authentication")
    }
}

impl std::error::Error for AuthError {}

/// An AES-256-GCM key ready to seal and open packet bodies.
pub struct Cipher {
    key: LessSafeKey,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

impl Cipher {
    /// Builds the cipher for a 32-byte key.
    pub fn new(key: &[u8; KEY_BYTES]) -> Cipher {
        // `UnboundKey::new` only fails for a wrong key length, which the array type
        // rules out.
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key");
        Cipher {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Appends `nonce | seal(plain) | tag` to `out`. `aad` is authenticated, not
    /// encrypted.
    pub fn seal_into(
        &self,
        aad: &[u8],
        nonce: [u8; NONCE_BYTES],
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        let mut in_out = Vec::with_capacity(plain.len() + TAG_BYTES);
        in_out.extend_from_slice(plain);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| AuthError)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        Ok(())
    }

    /// Opens a sealed body (`nonce | ciphertext | tag`), returning the plaintext.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        if sealed.len() < SEAL_OVERHEAD_BYTES {
            return Err(AuthError);
        }
        let (nonce_bytes, rest) = sealed.split_at(NONCE_BYTES);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(nonce_bytes);
        let mut in_out = rest.to_vec();
        let plain_len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| AuthError)?
            .len();
        in_out.truncate(plain_len);
        Ok(in_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let c = Cipher::new(&[1; KEY_BYTES]);
        let mut nonces = CounterNonces::new(9);
        let mut sealed = Vec::new();
        let nonce = nonces.next_nonce().unwrap();
        c.seal_into(b"hd", nonce, b"hello gossip", &mut sealed)
            .unwrap();
        assert_eq!(sealed.len(), 12 + SEAL_OVERHEAD_BYTES);
        assert_eq!(c.open(b"hd", &sealed).unwrap(), b"hello gossip");
        // Wrong AAD, wrong key, flipped bit, truncation: all fail.
        assert_eq!(c.open(b"hX", &sealed), Err(AuthError));
        assert_eq!(
            Cipher::new(&[2; KEY_BYTES]).open(b"hd", &sealed),
            Err(AuthError)
        );
        let mut flipped = sealed.clone();
        flipped[15] ^= 1;
        assert_eq!(c.open(b"hd", &flipped), Err(AuthError));
        assert_eq!(c.open(b"hd", &sealed[..27]), Err(AuthError));
    }

    #[test]
    fn counter_nonces_never_repeat() {
        let mut n = CounterNonces::new(1);
        let a = n.next_nonce().unwrap();
        let b = n.next_nonce().unwrap();
        assert_ne!(a, b);
        assert_eq!(&a[..4], &1u32.to_be_bytes());
    }
}
