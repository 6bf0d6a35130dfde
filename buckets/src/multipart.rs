//! Multipart uploads: the rules every backend applies when parts are completed.

use std::time::SystemTime;

use md5::{Digest as _, Md5};

use crate::{Error, Result};

/// The smallest size S3 allows for any part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The highest part number S3 allows.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An upload's opaque id.
pub type UploadId = String;

/// A stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The part number (1..=10000).
    pub number: u32,
    /// The part's MD5 in hex, its ETag.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// When the part was uploaded.
    pub last_modified: SystemTime,
    /// Checksums verified when the part was uploaded.
    pub checksums: crate::Checksums,
}

/// One page of an upload's parts.
#[derive(Debug, Clone, Default)]
pub struct PartsPage {
    /// Parts in ascending order.
    pub parts: Vec<PartInfo>,
    /// Set when more parts follow: the marker to continue from.
    pub next_marker: Option<u32>,
}

/// A part named by the client in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// The part number.
    pub number: u32,
    /// The ETag the client got for it (unquoted).
    pub etag: String,
}

/// Checks a client's completion list against the stored parts and returns, in order, the
/// stored parts that make up the object. `stored` must be sorted by part number.
pub fn select_parts<'a>(
    requested: &[CompletedPart],
    stored: &'a [PartInfo],
) -> Result<Vec<&'a PartInfo>> {
    if requested.is_empty() {
        return Err(Error::InvalidArgument(
            "the upload must name at least one part".into(),
        ));
    }
    if requested.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(Error::InvalidPartOrder);
    }
    let mut chosen = Vec::with_capacity(requested.len());
    for want in requested {
        let found = stored
            .binary_search_by_key(&want.number, |p| p.number)
            .ok()
            .map(|i| &stored[i])
            .filter(|p| p.etag.eq_ignore_ascii_case(want.etag.trim_matches('"')));
        match found {
            Some(part) => chosen.push(part),
            None => {
                return Err(Error::InvalidPart(format!(
                    "part {} was not uploaded or its ETag does not match",
                    want.number
                )));
            }
        }
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART_SIZE)
    {
        return Err(Error::EntityTooSmall {
            part: small.number,
            size: small.size,
            min: MIN_PART_SIZE,
        });
    }
    Ok(chosen)
}

/// The S3 ETag of a multipart object: the MD5 of the parts' binary MD5s, then `-N`.
pub fn multipart_etag<'a>(part_etags: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = part_etags.len();
    let mut md5 = Md5::new();
    for etag in part_etags {
        let bin = hex_simd::decode_to_vec(etag.as_bytes()).unwrap_or_default();
        md5.update(&bin);
    }
    format!(
        "{}-{n}",
        hex_simd::encode_to_string(md5.finalize(), hex_simd::AsciiCase::Lower)
    )
}

impl PartsPage {
    /// The page of `parts` (sorted by number) after `marker`, at most `max_parts` long.
    pub(crate) fn after(parts: Vec<PartInfo>, marker: u32, max_parts: usize) -> Self {
        let mut parts: Vec<PartInfo> = parts.into_iter().filter(|p| p.number > marker).collect();
        let next_marker = if parts.len() > max_parts {
            parts.truncate(max_parts);
            parts.last().map(|p| p.number)
        } else {
            None
        };
        Self { parts, next_marker }
    }
}

/// Checks a part number from a request.
pub fn check_part_number(number: i32) -> Result<u32> {
    u32::try_from(number)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "part number must be an integer between 1 and {MAX_PART_NUMBER}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, etag: &str, size: u64) -> PartInfo {
        PartInfo {
            number,
            etag: etag.into(),
            size,
            last_modified: SystemTime::UNIX_EPOCH,
            checksums: crate::Checksums::new(),
        }
    }

    fn req(number: u32, etag: &str) -> CompletedPart {
        CompletedPart {
            number,
            etag: etag.into(),
        }
    }

    #[test]
    fn completion_rules() {
        let stored = [
            part(1, "aa", MIN_PART_SIZE),
            part(2, "bb", 1),
            part(3, "cc", 1),
        ];
        let ok = select_parts(&[req(1, "\"aa\""), req(3, "cc")], &stored).unwrap();
        assert_eq!(ok.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 3]);
        assert!(matches!(
            select_parts(&[req(2, "bb"), req(1, "aa")], &stored),
            Err(Error::InvalidPartOrder)
        ));
        assert!(matches!(
            select_parts(&[req(1, "aa"), req(1, "aa")], &stored),
            Err(Error::InvalidPartOrder)
        ));
        assert!(matches!(
            select_parts(&[req(1, "zz")], &stored),
            Err(Error::InvalidPart(_))
        ));
        assert!(matches!(
            select_parts(&[req(4, "dd")], &stored),
            Err(Error::InvalidPart(_))
        ));
        assert!(matches!(
            select_parts(&[req(2, "bb"), req(3, "cc")], &stored),
            Err(Error::EntityTooSmall { part: 2, .. })
        ));
        assert!(select_parts(&[], &stored).is_err());
    }

    #[test]
    fn etag_of_parts() {
        // md5 of the two binary digests of "" (d41d8cd98f00b204e9800998ecf8427e).
        let e = "d41d8cd98f00b204e9800998ecf8427e";
        let got = multipart_etag([e, e].into_iter());
        assert!(got.ends_with("-2"));
        assert_eq!(got.len(), 32 + 2);
        assert_ne!(got, multipart_etag([e].into_iter()));
    }

    #[test]
    fn part_numbers() {
        assert_eq!(check_part_number(1).unwrap(), 1);
        assert_eq!(check_part_number(10_000).unwrap(), 10_000);
        for bad in [0, -1, 10_001] {
            assert!(check_part_number(bad).is_err());
        }
    }
}
