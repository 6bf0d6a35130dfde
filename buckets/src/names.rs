//! Validated bucket names and object keys: raw strings never reach a backend.

use std::fmt;

use crate::{Error, Result};

/// A bucket name that follows S3's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// Validates `name` against S3's rules for new buckets.
    pub fn new(name: &str) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidBucketName(format!("{name:?}: {why}")));
        if !(3..=63).contains(&name.len()) {
            return bad("must be 3 to 63 characters long");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return bad("only lowercase letters, digits, dots and hyphens are allowed");
        }
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !edge_ok(name.as_bytes()[0]) || !edge_ok(name.as_bytes()[name.len() - 1]) {
            return bad("must begin and end with a letter or digit");
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return bad("dots may not be adjacent to dots or hyphens");
        }
        if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
            return bad("must not look like an IP address");
        }
        if name.starts_with("xn--")
            || name.starts_with("sthree-")
            || name.ends_with("-s3alias")
            || name.ends_with("--ol-s3")
        {
            return bad("uses a reserved prefix or suffix");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// An object key: non-empty UTF-8 of at most 1024 bytes. Backends must store any such key
/// faithfully; none may interpret it as a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: &str) -> Result<Self> {
        if key.is_empty() {
            return Err(Error::InvalidKey("the key is empty".into()));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "the key is {} bytes, above the limit of {MAX_KEY_LEN}",
                key.len()
            )));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket", "a.b.c", "123", &"a".repeat(63)] {
            assert!(BucketName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            &"a".repeat(64),
            "a b",
            "bucket-s3alias",
        ] {
            assert!(
                matches!(BucketName::new(bad), Err(Error::InvalidBucketName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_bounded_but_otherwise_free() {
        for ok in [
            "a",
            "../../etc/passwd",
            "a//b",
            "/lead",
            "nul\0byte",
            "ünï/cødé",
            &"k".repeat(1024),
        ] {
            assert_eq!(ObjectKey::new(ok).unwrap().as_str(), ok);
        }
        assert!(ObjectKey::new("").is_err());
        assert!(ObjectKey::new(&"k".repeat(1025)).is_err());
    }
}
