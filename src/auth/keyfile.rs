//! The gossip key file (`commitlogd --gossip-key-file`).
//!
//! Format: exactly 32 raw bytes, or 64 hexadecimal characters (upper or lower case),
//! optionally followed by one line terminator (`\n` or `\r\n`) so `openssl rand -hex 32
//! > gossip.key` works. Anything else is an error that says what was found. The key
//! seals every gossip packet with AES-256-GCM ([`crate::gossip::GossipConfig`]'s
//! `secret_key`); every node of a cluster needs the same key.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::gossip::crypto::KEY_BYTES;

/// A gossip key file that cannot be used. The message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError(String);

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyFileError {}

/// Reads and parses a gossip key file (reads at most 1 KiB: a key file is tiny).
pub fn load_gossip_key(path: &Path) -> Result<[u8; KEY_BYTES], KeyFileError> {
    let file = std::fs::File::open(path).map_err(|e| {
        KeyFileError(format!(
            "cannot read --gossip-key-file {}: {e}",
            path.display()
        ))
    })?;
    let mut bytes = Vec::with_capacity(128);
    file.take(1024).read_to_end(&mut bytes).map_err(|e| {
        KeyFileError(format!(
            "cannot read --gossip-key-file {}: {e}",
            path.display()
        ))
    })?;
    parse_gossip_key(&bytes)
        .map_err(|why| KeyFileError(format!("--gossip-key-file {}: {why}", path.display())))
}

/// Parses key file contents: 32 raw bytes or 64 hex characters (+ optional newline).
pub fn parse_gossip_key(bytes: &[u8]) -> Result<[u8; KEY_BYTES], String> {
    if bytes.len() == KEY_BYTES {
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    if text.len() == 2 * KEY_BYTES && text.iter().all(u8::is_ascii_hexdigit) {
        let mut key = [0u8; KEY_BYTES];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            key[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        return Ok(key);
    }
    Err(format!(
        "expected {KEY_BYTES} raw bytes or {} hex characters, found {} bytes{}; \
         create one with `openssl rand -hex {KEY_BYTES} > gossip.key`",
        2 * KEY_BYTES,
        bytes.len(),
        if text.len() == 2 * KEY_BYTES {
            " with a non-hex character"
        } else {
            ""
        }
    ))
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0, // unreachable: callers check is_ascii_hexdigit first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_32_bytes_are_the_key() {
        let raw: Vec<u8> = (0..32).collect();
        assert_eq!(parse_gossip_key(&raw).unwrap().to_vec(), raw);
        // 32 raw bytes that happen to end in a newline are still raw.
        let mut raw_nl = vec![7u8; 31];
        raw_nl.push(b'\n');
        assert_eq!(parse_gossip_key(&raw_nl).unwrap()[31], b'\n');
    }

    #[test]
    fn hex_with_or_without_newline() {
        let hex = "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100";
        let key = parse_gossip_key(hex.as_bytes()).unwrap();
        assert_eq!(key[0..3], [0x00, 0x11, 0x22]);
        assert_eq!(key[16], 0xFF);
        assert_eq!(key[31], 0x00);
        assert_eq!(
            parse_gossip_key(format!("{hex}\n").as_bytes()).unwrap(),
            key
        );
        assert_eq!(
            parse_gossip_key(format!("{hex}\r\n").as_bytes()).unwrap(),
            key
        );
    }

    #[test]
    fn wrong_lengths_and_bad_hex_are_clear_errors() {
        let short = parse_gossip_key(b"abcd").unwrap_err();
        assert!(short.contains("found 4 bytes"), "{short}");
        assert!(short.contains("openssl rand -hex 32"), "{short}");
        let bad = "zz".repeat(32);
        let err = parse_gossip_key(bad.as_bytes()).unwrap_err();
        assert!(err.contains("non-hex"), "{err}");
        assert!(parse_gossip_key(&[0u8; 33]).is_err());
        assert!(parse_gossip_key(b"").is_err());
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("commitlog-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.key");
        let err = load_gossip_key(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.key"), "{err}");
        let bad = dir.join("bad.key");
        std::fs::write(&bad, b"not a key").unwrap();
        let err = load_gossip_key(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.key") && err.contains("found 9 bytes"),
            "{err}"
        );
        let good = dir.join("good.key");
        std::fs::write(&good, "ab".repeat(32) + "\n").unwrap();
        assert_eq!(load_gossip_key(&good).unwrap(), [0xAB; 32]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
