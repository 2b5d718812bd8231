//! Topic names.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use super::error::CatalogueError;

/// The topic the v0 protocol and the inline text commands use; it cannot be deleted.
pub const DEFAULT_TOPIC: &str = "default";

/// Longest topic name, in bytes (names are ASCII).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// Most bytes of a refused name kept in the error (names come from clients).
const ERROR_NAME_BYTES: usize = 64;

/// A valid topic name: 1 to 249 characters out of `a-z A-Z 0-9 . _ -`, and neither
/// `.` nor `..` (names may become directory names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

impl TopicName {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<TopicName, CatalogueError> {
        Self::check(name.as_bytes())?;
        Ok(TopicName(name.to_owned()))
    }

    /// Checks raw bytes (from a decoder) and wraps them.
    pub(crate) fn from_bytes(raw: &[u8]) -> Result<TopicName, CatalogueError> {
        Self::check(raw)?;
        // Only ASCII passed the check.
        let name = std::str::from_utf8(raw).map_err(|_| invalid(raw, "not ASCII"))?;
        Ok(TopicName(name.to_owned()))
    }

    /// The `default` topic's name.
    pub fn default_topic() -> TopicName {
        TopicName(DEFAULT_TOPIC.to_owned())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the `default` topic.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_TOPIC
    }

    fn check(raw: &[u8]) -> Result<(), CatalogueError> {
        if raw.is_empty() {
            return Err(invalid(raw, "empty"));
        }
        if raw.len() > MAX_TOPIC_NAME_BYTES {
            return Err(invalid(raw, "longer than 249 characters"));
        }
        if raw == b"." || raw == b".." {
            return Err(invalid(raw, "\".\" and \"..\" are reserved"));
        }
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if !raw.iter().all(allowed) {
            return Err(invalid(
                raw,
                "only letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        Ok(())
    }
}

fn invalid(raw: &[u8], reason: &'static str) -> CatalogueError {
    let shown = &raw[..raw.len().min(ERROR_NAME_BYTES)];
    CatalogueError::InvalidTopic {
        name: String::from_utf8_lossy(shown).into_owned(),
        reason,
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `TopicName` be searched with a `&str` (ordering and equality
/// are those of the string).
impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for TopicName {
    type Err = CatalogueError;

    fn from_str(s: &str) -> Result<TopicName, CatalogueError> {
        TopicName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_accepted_and_kept_verbatim() {
        for name in ["a", "default", "Orders.v2", "a_b-c", "...", ".a", "0"] {
            let parsed = TopicName::parse(name).unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
            assert_eq!(name.parse::<TopicName>().unwrap(), parsed);
        }
        let longest = "x".repeat(MAX_TOPIC_NAME_BYTES);
        assert_eq!(TopicName::parse(&longest).unwrap().as_str(), longest);
        assert!(TopicName::default_topic().is_default());
        assert!(!TopicName::parse("defaults").unwrap().is_default());
    }

    #[test]
    fn invalid_names_are_refused_with_a_reason() {
        let too_long = "x".repeat(MAX_TOPIC_NAME_BYTES + 1);
        for name in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "é",
            "a\0",
            "tab\t",
            too_long.as_str(),
        ] {
            match TopicName::parse(name) {
                Err(CatalogueError::InvalidTopic { name: shown, .. }) => {
                    assert!(shown.len() <= ERROR_NAME_BYTES, "error keeps a short name")
                }
                other => panic!("{name:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn raw_bytes_are_checked_like_strings() {
        assert_eq!(
            TopicName::from_bytes(b"ok.1").unwrap(),
            TopicName::parse("ok.1").unwrap()
        );
        assert!(TopicName::from_bytes(&[0xc3, 0xa9]).is_err());
        assert!(TopicName::from_bytes(&[0xff]).is_err());
    }
}
