//! What the cloud backends share: where Drive's buckets live inside the one provider
//! container, how a body is verified before the provider commits it, and how a provider's
//! listing becomes a Drive listing page.
//!
//! Layout inside the configured container, under the root prefix `<root>/`:
//! - `<root>/<bucket>/<escaped key>`: the objects of Drive bucket `<bucket>`, one provider
//!   object each. Keys are escaped (see [`escape_key`]) so that no provider ever sees a `/` in
//!   them: providers that are file systems underneath (SeaweedFS, MinIO) cannot hold both `a`
//!   and `a/b`, nor `.`, `..` or empty segments, and list directory by directory instead of in
//!   S3's byte order. The escape keeps byte order, so a flat provider listing is in S3 order,
//!   and Drive rolls common prefixes up itself.
//! - `<root>/.drive/buckets/<bucket>`: the record of a Drive bucket (an empty object; its
//!   modification time is the bucket's creation time). Bucket names never start with `.`, so
//!   no Drive bucket can collide with `.drive`.

pub(crate) mod known;
mod sealing;
#[cfg(any(feature = "azure", feature = "gcs"))]
pub(crate) mod staged;

pub(crate) use sealing::{Verified, sealing};

use futures::future::BoxFuture;

use crate::{
    BucketName, Error, ListPage, ListQuery, ObjectKey, ObjectSummary, Result, common_prefix,
};

/// The longest object name providers accept, in bytes.
const MAX_NAME: usize = 1024;

/// Escapes a key for a provider: `.` becomes `.-` and `/` becomes `.~`. The code is
/// prefix-free and keeps the order of bytes (`.-` < `.~`, and nothing sorts between `.`
/// and `/`), so escaped keys sort exactly as the keys do.
pub(crate) fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '.' => out.push_str(".-"),
            '/' => out.push_str(".~"),
            c => out.push(c),
        }
    }
    out
}

/// Longest piece of a provider name between two `/`: file-system providers limit a name
/// segment to 255 bytes.
const PIECE: usize = 200;

/// Ends every piece of a long name but the last; the highest character, so that a piece
/// that goes on sorts after one that ends there (keys may not contain it).
const MARK: char = char::MAX;

/// The provider name of a key: escaped, then cut into pieces of at most [`PIECE`] bytes
/// joined by `MARK /`, which keeps the order of keys both as strings and as a provider that
/// lists directory by directory sees them.
pub(crate) fn encode_key(key: &str) -> String {
    let escaped = escape_key(key);
    let mut out = String::with_capacity(escaped.len() + 16);
    let mut rest = escaped.as_str();
    while rest.len() > PIECE {
        let mut cut = PIECE;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push(MARK);
        out.push('/');
        rest = &rest[cut..];
    }
    out.push_str(rest);
    out
}

/// Undoes [`encode_key`]; `None` for a name Drive did not write.
pub(crate) fn decode_key(name: &str) -> Option<String> {
    unescape_key(&name.replace(&format!("{MARK}/"), ""))
}

/// Undoes [`escape_key`]; `None` for a name Drive did not write.
fn unescape_key(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '.' {
            match chars.next()? {
                '-' => out.push('.'),
                '~' => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Names of Drive's buckets and objects inside the provider container.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: String,
    refuse_control: bool,
}

impl Layout {
    /// A layout under `root` (no leading or trailing `/` needed; empty means the container's top).
    pub(crate) fn new(root: &str) -> Self {
        let root = root.trim_matches('/');
        Self {
            root: if root.is_empty() {
                String::new()
            } else {
                format!("{root}/")
            },
            refuse_control: false,
        }
    }

    /// The same layout for a provider that cannot list names with control characters.
    #[cfg(feature = "azure")]
    pub(crate) fn refusing_control_characters(self) -> Self {
        Self {
            refuse_control: true,
            ..self
        }
    }

    /// The provider name of an object, or `InvalidKey` when the escaped key does not fit the
    /// provider's name limit.
    pub(crate) fn object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<String> {
        if self.refuse_control && key.as_str().chars().any(char::is_control) {
            return Err(Error::InvalidKey(
                "keys with control characters cannot be stored on this backend".into(),
            ));
        }
        if key.as_str().contains(MARK) {
            return Err(Error::InvalidKey(
                "keys may not contain U+10FFFF on this backend".into(),
            ));
        }
        let name = format!("{}{}", self.bucket_prefix(bucket), encode_key(key.as_str()));
        if name.len() > MAX_NAME {
            return Err(Error::InvalidKey(format!(
                "the key is above the limit of this backend: with its escapes, bucket and \
                 root prefix it takes {} bytes of the provider's {MAX_NAME}",
                name.len()
            )));
        }
        Ok(name)
    }

    /// The provider prefix of everything in a bucket.
    pub(crate) fn bucket_prefix(&self, bucket: &BucketName) -> String {
        format!("{}{}/", self.root, bucket.as_str())
    }

    /// The provider prefix of all bucket records.
    pub(crate) fn registry_prefix(&self) -> String {
        format!("{}.drive/buckets/", self.root)
    }

    /// The provider name of a bucket's record.
    pub(crate) fn bucket_record(&self, bucket: &BucketName) -> String {
        format!("{}{}", self.registry_prefix(), bucket.as_str())
    }
}

/// One page of a provider's flat listing: objects named by their provider names, in order.
pub(crate) struct ProviderPage {
    /// Objects in order, `key` holding the provider name.
    pub objects: Vec<ObjectSummary>,
    /// Whether the provider has more after this page.
    pub truncated: bool,
}

/// Lists a Drive bucket whose objects are under `base`, from a provider's flat listing:
/// `fetch(prefix, start_after)` returns the provider's next page of names after `start_after`.
/// Common prefixes are rolled up here; each one costs one more provider call, which skips
/// past everything under it.
pub(crate) async fn list<'a>(
    base: &str,
    query: &ListQuery,
    mut fetch: impl FnMut(String, Option<String>) -> BoxFuture<'a, Result<ProviderPage>>,
) -> Result<ListPage> {
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    let prefix = format!("{base}{}", encode_key(&query.prefix));
    // After every key that starts with `entry`.
    let past = |entry: &str| format!("{base}{}{MARK}{MARK}", encode_key(entry));
    let mut cursor = query.start_after.as_deref().map(|a| {
        if common_prefix(a, &query.prefix, delimiter) == Some(a) {
            past(a)
        } else {
            format!("{base}{}", encode_key(a))
        }
    });
    let mut last: Option<String> = query.start_after.clone();
    let mut page = ListPage::default();
    let mut taken = 0;
    loop {
        let batch = fetch(prefix.clone(), cursor.clone()).await?;
        let mut skipped_ahead = false;
        for o in batch.objects {
            let name = o.key.clone();
            let Some(key) = name.strip_prefix(base).and_then(decode_key) else {
                cursor = Some(name);
                continue;
            };
            if !key.starts_with(&query.prefix) {
                cursor = Some(name);
                continue;
            }
            let rolled = common_prefix(&key, &query.prefix, delimiter).map(str::to_owned);
            let entry = rolled.clone().unwrap_or_else(|| key.clone());
            if last
                .as_ref()
                .is_some_and(|l| entry.as_bytes() <= l.as_bytes())
            {
                cursor = Some(name);
                continue;
            }
            if taken == query.max_keys {
                page.next = last;
                return Ok(page);
            }
            taken += 1;
            last = Some(entry.clone());
            if let Some(cp) = rolled {
                cursor = Some(past(&cp));
                page.common_prefixes.push(cp);
                skipped_ahead = true;
                break;
            }
            cursor = Some(name);
            page.objects.push(ObjectSummary { key, ..o });
        }
        if !skipped_ahead && !batch.truncated {
            return Ok(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn obj(key: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.into(),
            size: 0,
            etag: String::new(),
            last_modified: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn layout_names() {
        let l = Layout::new("/drive/");
        let b = BucketName::new("bkt").unwrap();
        assert_eq!(
            l.object(&b, &ObjectKey::new("a//b.c").unwrap()).unwrap(),
            "drive/bkt/a.~.~b.-c"
        );
        // 990 bytes: four pieces break, each adding `MARK /` (5 bytes).
        let long = ObjectKey::new(&"k".repeat(990)).unwrap();
        assert_eq!(l.object(&b, &long).unwrap().len(), 10 + 990 + 4 * 5);
        let longer = ObjectKey::new(&"k".repeat(995)).unwrap();
        assert!(matches!(l.object(&b, &longer), Err(Error::InvalidKey(_))));
        assert_eq!(l.bucket_record(&b), "drive/.drive/buckets/bkt");
        assert_eq!(Layout::new("").bucket_prefix(&b), "bkt/");
    }

    #[test]
    fn escaped_keys_keep_byte_order_and_lose_every_slash() {
        let mut keys = vec![
            "a", "a/b", "a-b", "a.b", "a./", "a/.", "a0", ".", "..", "/", "//", "a.-", "a.~",
            "ä/x", "~", "",
        ];
        keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let escaped: Vec<String> = keys.iter().map(|k| escape_key(k)).collect();
        let mut sorted = escaped.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(escaped, sorted);
        for (k, e) in keys.iter().zip(&escaped) {
            assert!(!e.contains('/') && e != "." && e != "..", "{e}");
            assert_eq!(unescape_key(e).as_deref(), Some(*k));
        }
        assert_eq!(unescape_key("a.b"), None);
        assert_eq!(unescape_key("a."), None);
    }

    #[test]
    fn long_keys_become_short_pieces_in_order() {
        let base = "x".repeat(PIECE - 2);
        let mut keys: Vec<String> = ["", "a", "é", "ab", "a/b", "aaa", "\u{1}", "日本語日本語"]
            .iter()
            .flat_map(|tail| {
                [
                    format!("{base}{tail}"),
                    format!("{base}{tail}{}", "y".repeat(PIECE)),
                    format!("{base}{base}{tail}"),
                ]
            })
            .collect();
        keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let names: Vec<String> = keys.iter().map(|k| encode_key(k)).collect();
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(names, sorted);
        for (k, n) in keys.iter().zip(&names) {
            assert!(
                n.split('/')
                    .all(|piece| piece.len() <= PIECE + MARK.len_utf8()),
                "{n}"
            );
            assert_eq!(decode_key(n).as_deref(), Some(k.as_str()));
        }
        let files: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        for n in &names {
            for (i, _) in n.match_indices('/') {
                assert!(
                    !files.contains(&n[..i]),
                    "a file and a directory share {}",
                    &n[..i]
                );
            }
        }
    }

    fn provider(names: &[&str]) -> Vec<ObjectSummary> {
        let mut all: Vec<ObjectSummary> = names
            .iter()
            .map(|k| obj(&format!("r/b/{}", encode_key(k))))
            .collect();
        all.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        all
    }

    async fn list_over(all: &[ObjectSummary], query: &ListQuery) -> (ListPage, usize) {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let page = list("r/b/", query, |prefix, after| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let objects: Vec<ObjectSummary> = all
                .iter()
                .filter(|o| o.key.starts_with(&prefix))
                .filter(|o| {
                    after
                        .as_ref()
                        .is_none_or(|a| o.key.as_bytes() > a.as_bytes())
                })
                .take(2)
                .cloned()
                .collect();
            let truncated = all
                .iter()
                .filter(|o| o.key.starts_with(&prefix))
                .filter(|o| {
                    after
                        .as_ref()
                        .is_none_or(|a| o.key.as_bytes() > a.as_bytes())
                })
                .count()
                > 2;
            Box::pin(async move { Ok(ProviderPage { objects, truncated }) })
        })
        .await
        .unwrap();
        (page, calls.into_inner())
    }

    #[tokio::test]
    async fn flat_listings_roll_up_and_page() {
        let all = provider(&["a/1", "a/2", "a/3", "a-b", "b", "c/x/y", "c/z"]);
        let q = |start_after: Option<&str>, max_keys| ListQuery {
            prefix: String::new(),
            delimiter: Some("/".into()),
            start_after: start_after.map(str::to_owned),
            max_keys,
        };
        let (p, _) = list_over(&all, &q(None, 1000)).await;
        let keys: Vec<&str> = p.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a-b", "b"]);
        assert_eq!(p.common_prefixes, ["a/", "c/"]);
        assert!(p.next.is_none());

        let (p, _) = list_over(&all, &q(None, 2)).await;
        assert_eq!(p.objects[0].key, "a-b");
        assert_eq!(p.common_prefixes, ["a/"]);
        assert_eq!(p.next.as_deref(), Some("a/"));
        let (p, _) = list_over(&all, &q(Some("a/"), 2)).await;
        assert_eq!(p.objects[0].key, "b");
        assert_eq!(p.common_prefixes, ["c/"]);
        assert!(p.next.is_none());
        let (p, _) = list_over(&all, &q(Some("a-b"), 1)).await;
        assert!(p.objects.is_empty());
        assert_eq!(p.common_prefixes, ["a/"]);
        assert_eq!(p.next.as_deref(), Some("a/"));

        let flat = ListQuery {
            prefix: "a/".into(),
            delimiter: None,
            start_after: None,
            max_keys: 1000,
        };
        let (p, calls) = list_over(&all, &flat).await;
        assert_eq!(p.objects.len(), 3);
        assert_eq!(calls, 2, "pages of the provider are followed");
    }
}
