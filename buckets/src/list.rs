//! Listing: queries and pages in S3's order (bytes of UTF-8, ascending).

use std::time::SystemTime;

/// A listing request over one bucket.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only keys that start with this.
    pub prefix: String,
    /// Roll keys that contain this after the prefix up into common prefixes.
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) strictly after this.
    pub start_after: Option<String>,
    /// At most this many keys and common prefixes together.
    pub max_keys: usize,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag, unquoted.
    pub etag: String,
    /// When it was written.
    pub last_modified: SystemTime,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects in order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes in order.
    pub common_prefixes: Vec<String>,
    /// Set when the listing was cut: the last key or common prefix returned, to continue after.
    pub next: Option<String>,
}

/// A request to list in-progress multipart uploads of a bucket.
#[derive(Debug, Clone, Default)]
pub struct UploadsQuery {
    /// Only keys with this prefix.
    pub prefix: String,
    /// Roll keys up into common prefixes at this delimiter.
    pub delimiter: Option<String>,
    /// Continue after this key ...
    pub key_marker: Option<String>,
    /// ... and, within it, after this upload id.
    pub upload_id_marker: Option<String>,
    /// At most this many uploads and common prefixes together.
    pub max_uploads: usize,
}

/// An in-progress upload as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// The object key.
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
    /// When the upload was created.
    pub initiated: SystemTime,
}

/// One page of in-progress uploads.
#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    /// Uploads ordered by key, then upload id.
    pub uploads: Vec<UploadSummary>,
    /// Common prefixes in order.
    pub common_prefixes: Vec<String>,
    /// Set when the page was cut: `(key marker, upload id marker)` to continue after.
    pub next: Option<(String, Option<String>)>,
}

/// Sorts `uploads` by key, then upload id, and cuts the page the query asks for.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub(crate) fn sorted_uploads_page(
    mut uploads: Vec<UploadSummary>,
    q: &UploadsQuery,
) -> crate::Result<UploadsPage> {
    uploads.sort_by(|a, b| {
        (a.key.as_bytes(), a.upload_id.as_bytes()).cmp(&(b.key.as_bytes(), b.upload_id.as_bytes()))
    });
    uploads_page(uploads.into_iter().map(Ok), q)
}

/// Cuts a page of in-progress uploads from `rows` (ordered by key, then upload id), applying
/// the query's markers, delimiter and page size.
pub(crate) fn uploads_page(
    rows: impl Iterator<Item = crate::Result<UploadSummary>>,
    q: &UploadsQuery,
) -> crate::Result<UploadsPage> {
    let mut page = UploadsPage::default();
    // The last upload or common prefix returned: where the next page starts.
    let mut last: Option<(String, Option<String>)> = None;
    let mut count = 0;
    for row in rows {
        let upload = row?;
        let (key, upload_id) = (upload.key.as_str(), upload.upload_id.as_str());
        if !key.starts_with(&q.prefix) {
            continue;
        }
        if let Some(marker) = q.key_marker.as_deref() {
            let after_marker = match q.upload_id_marker.as_deref() {
                Some(id) => (key, upload_id) > (marker, id),
                None => key > marker,
            };
            if !after_marker {
                continue;
            }
        }
        let cp = common_prefix(key, &q.prefix, q.delimiter.as_deref());
        if let Some(cp) = cp {
            let seen = page.common_prefixes.last().map(String::as_str) == Some(cp);
            let before_marker = q.key_marker.as_deref().is_some_and(|m| cp <= m);
            if seen || before_marker {
                continue;
            }
        }
        if count == q.max_uploads {
            page.next = last;
            break;
        }
        count += 1;
        if let Some(cp) = cp {
            page.common_prefixes.push(cp.to_owned());
            last = Some((cp.to_owned(), None));
            continue;
        }
        last = Some((upload.key.clone(), Some(upload.upload_id.clone())));
        page.uploads.push(upload);
    }
    Ok(page)
}

/// The smallest string that sorts after every string starting with `prefix`, if any.
/// Listing uses it to skip past a whole common prefix in one step.
#[must_use]
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut s = prefix.to_owned();
    while let Some(c) = s.pop() {
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            s.push(next);
            return Some(s);
        }
    }
    None
}

/// Where a key falls in a delimited listing: the common prefix it rolls up into, if any.
#[must_use]
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter)
        .map(|i| &key[..prefix.len() + i + delimiter.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_sorts_after_every_extension() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor(""), None);
        let succ = prefix_successor("dir/").unwrap();
        for ext in ["dir/", "dir/\u{10FFFF}", "dir/zzz", "dir/ü"] {
            assert!(ext.as_bytes() < succ.as_bytes());
        }
    }

    #[test]
    fn rolls_up_at_the_delimiter() {
        assert_eq!(common_prefix("a/b/c", "", Some("/")), Some("a/"));
        assert_eq!(common_prefix("a/b/c", "a/", Some("/")), Some("a/b/"));
        assert_eq!(common_prefix("a/b", "a/", Some("/")), None);
        assert_eq!(common_prefix("a/b", "", None), None);
        assert_eq!(common_prefix("a--b--c", "a", Some("--")), Some("a--"));
    }
}
