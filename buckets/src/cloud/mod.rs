//! What the cloud backends share: where Drive's buckets live inside the one provider
//! container, how a body is verified before the provider commits it, and how a provider's
//! listing becomes a Drive listing page.
//!
//! Layout inside the configured container, under the root prefix `<root>/`:
//! - `<root>/<bucket>/<key>`: the objects of Drive bucket `<bucket>`, one provider object each;
//! - `<root>/.drive/buckets/<bucket>`: the record of a Drive bucket (an empty object; its
//!   modification time is the bucket's creation time). Bucket names never start with `.`, so
//!   no Drive bucket can collide with `.drive`.

mod sealing;

pub(crate) use sealing::{Verified, sealing};

use crate::{BucketName, ListPage, ObjectKey, ObjectSummary};

/// Names of Drive's buckets and objects inside the provider container.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: String,
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
        }
    }

    /// The provider name of an object.
    pub(crate) fn object(&self, bucket: &BucketName, key: &ObjectKey) -> String {
        format!("{}{}/{}", self.root, bucket.as_str(), key.as_str())
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

/// One provider listing page, with the Drive bucket's prefix already removed from every name.
pub(crate) struct ProviderPage {
    /// Objects in order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes in order.
    pub prefixes: Vec<String>,
    /// Whether the provider has more after this page.
    pub truncated: bool,
}

/// Builds a Drive page from a provider page that was asked for `max_keys + 1` entries after
/// `start_after`: entries at or before `start_after` are dropped (a provider lists the common
/// prefix that `start_after` names again), the rest is cut to `max_keys` in S3 order.
pub(crate) fn page(provider: ProviderPage, start_after: Option<&str>, max_keys: usize) -> ListPage {
    let after = |name: &str| start_after.is_none_or(|s| name.as_bytes() > s.as_bytes());
    let mut objects = provider
        .objects
        .into_iter()
        .filter(|o| after(&o.key))
        .peekable();
    let mut prefixes = provider
        .prefixes
        .into_iter()
        .filter(|p| after(p))
        .peekable();
    let mut out = ListPage::default();
    let mut last: Option<String> = None;
    let mut taken = 0;
    loop {
        let take_object = match (objects.peek(), prefixes.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(o), Some(p)) => o.key.as_bytes() < p.as_bytes(),
        };
        if taken == max_keys {
            out.next = last;
            return out;
        }
        if take_object {
            let o = objects.next().expect("peeked");
            last = Some(o.key.clone());
            out.objects.push(o);
        } else {
            let p = prefixes.next().expect("peeked");
            last = Some(p.clone());
            out.common_prefixes.push(p);
        }
        taken += 1;
    }
    if provider.truncated {
        out.next = last;
    }
    out
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
            l.object(&b, &ObjectKey::new("a//b").unwrap()),
            "drive/bkt/a//b"
        );
        assert_eq!(l.bucket_record(&b), "drive/.drive/buckets/bkt");
        assert_eq!(Layout::new("").bucket_prefix(&b), "bkt/");
    }

    #[test]
    fn pages_merge_drop_and_cut() {
        let provider = || ProviderPage {
            objects: vec![obj("a"), obj("c"), obj("e")],
            prefixes: vec!["b/".into(), "d/".into()],
            truncated: false,
        };
        let p = page(provider(), None, 10);
        assert_eq!(p.objects.len(), 3);
        assert_eq!(p.common_prefixes, ["b/", "d/"]);
        assert!(p.next.is_none());

        let p = page(provider(), Some("b/"), 2);
        assert_eq!(
            p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(p.common_prefixes, ["d/"]);
        assert_eq!(p.next.as_deref(), Some("d/"));

        let truncated = ProviderPage {
            truncated: true,
            ..provider()
        };
        let p = page(truncated, None, 10);
        assert_eq!(p.next.as_deref(), Some("e"));
    }
}
