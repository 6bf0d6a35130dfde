//! What an object is: its attributes, its stored description, and how it is written and read.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Checksums of an object by algorithm name (`CRC32`, `CRC32C`, `SHA1`, `SHA256`,
/// `CRC64NVME`), each the base64 value S3 returns in `x-amz-checksum-*`.
pub type Checksums = BTreeMap<String, String>;

/// Attributes a client sets when writing an object and gets back when reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as the HTTP date the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-*`), names in lowercase without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
}

/// The stored description of one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size of the body in bytes.
    pub size: u64,
    /// The S3 ETag without quotes: the body's MD5 for single PUTs, `md5-of-part-md5s-N` for multipart.
    pub etag: String,
    /// When this version was written.
    pub last_modified: SystemTime,
    /// Client-set attributes.
    pub attrs: ObjectAttrs,
    /// Checksums verified when the object was written.
    pub checksums: Checksums,
    /// Number of parts for objects completed from a multipart upload.
    pub parts: Option<u32>,
}

/// A bucket as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: String,
    /// When it was created.
    pub created: SystemTime,
}

/// A condition checked atomically with the write that it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: write only if no object exists under the key.
    IfNoneExists,
    /// `If-Match: <etag>`: write only if the current object has this ETag (unquoted).
    IfMatch(String),
}

impl WriteCondition {
    /// Checks the condition against the current object, if any.
    pub fn check(&self, current: Option<&str>) -> Result<()> {
        match (self, current) {
            (Self::IfNoneExists, Some(_)) => Err(Error::PreconditionFailed(
                "an object already exists under this key",
            )),
            (Self::IfMatch(_), None) => {
                Err(Error::PreconditionFailed("no object exists under this key"))
            }
            (Self::IfMatch(want), Some(have)) if want != "*" && want != have => {
                Err(Error::PreconditionFailed("the ETag does not match"))
            }
            _ => Ok(()),
        }
    }
}

/// Called once a body has been read in full, with its MD5 (hex), before the object becomes
/// visible. It returns the checksums to store, or refuses the body (the write is then undone).
pub type Seal = Box<dyn FnOnce(&str) -> Result<Checksums> + Send>;

/// What the client declared about a body, and how to verify it before it becomes visible.
#[derive(Default)]
pub struct BodyInfo {
    /// The body's length when the request declared it (cloud stores need it up front).
    pub len: Option<u64>,
    /// The checksum algorithm the client declared (`CRC32`, ...), so that stores keeping
    /// checksums themselves compute the same one.
    pub checksum_algorithm: Option<String>,
    /// Whether the seal needs the body's MD5 (the client sent `Content-MD5`); stores whose
    /// ETags are not MD5s they compute themselves skip it otherwise.
    pub md5_needed: bool,
    /// Verification of the complete body before commit.
    pub seal: Option<Seal>,
}

/// How to write an object.
#[derive(Default)]
pub struct PutOptions {
    /// Attributes stored with the object.
    pub attrs: ObjectAttrs,
    /// A condition checked atomically with the commit.
    pub condition: Option<WriteCondition>,
    /// What is known about the body.
    pub body: BodyInfo,
}

/// A byte range as a client asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (inclusive).
    Bounded { first: u64, last: u64 },
    /// `bytes=first-`.
    From { first: u64 },
    /// `bytes=-len`: the last `len` bytes.
    Suffix { len: u64 },
}

impl ByteRange {
    /// Resolves the range against an object of `size` bytes to `(offset, length)`, with S3's
    /// rules: a last byte past the end is clamped; a start past the end, or an empty suffix,
    /// is not satisfiable.
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        match self {
            Self::Bounded { first, last } if first <= last && first < size => {
                Ok((first, last.min(size - 1) - first + 1))
            }
            Self::From { first } if first < size => Ok((first, size - first)),
            Self::Suffix { len } if len > 0 && size > 0 => {
                let len = len.min(size);
                Ok((size - len, len))
            }
            _ => Err(Error::InvalidRange),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_s3() {
        assert_eq!(
            ByteRange::Bounded { first: 0, last: 9 }
                .resolve(100)
                .unwrap(),
            (0, 10)
        );
        assert_eq!(
            ByteRange::Bounded {
                first: 90,
                last: 200
            }
            .resolve(100)
            .unwrap(),
            (90, 10)
        );
        assert_eq!(ByteRange::From { first: 99 }.resolve(100).unwrap(), (99, 1));
        assert_eq!(
            ByteRange::Suffix { len: 10 }.resolve(100).unwrap(),
            (90, 10)
        );
        assert_eq!(
            ByteRange::Suffix { len: 500 }.resolve(100).unwrap(),
            (0, 100)
        );
        for bad in [
            ByteRange::Bounded {
                first: 100,
                last: 200,
            },
            ByteRange::Bounded { first: 5, last: 4 },
            ByteRange::From { first: 100 },
            ByteRange::Suffix { len: 0 },
        ] {
            assert!(
                matches!(bad.resolve(100), Err(Error::InvalidRange)),
                "{bad:?}"
            );
        }
        assert!(ByteRange::Suffix { len: 1 }.resolve(0).is_err());
    }

    #[test]
    fn write_conditions() {
        assert!(WriteCondition::IfNoneExists.check(None).is_ok());
        assert!(WriteCondition::IfNoneExists.check(Some("e")).is_err());
        assert!(WriteCondition::IfMatch("e".into()).check(Some("e")).is_ok());
        assert!(
            WriteCondition::IfMatch("e".into())
                .check(Some("f"))
                .is_err()
        );
        assert!(WriteCondition::IfMatch("e".into()).check(None).is_err());
    }
}
