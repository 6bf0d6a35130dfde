//! Multipart uploads for providers without S3's multipart (Azure, GCS), kept as small records
//! in the provider itself, so any replica serves any call of an upload:
//! - `<root>/.drive/uploads/<bucket>/<upload id>`: the upload (key, attributes, start time);
//! - `<root>/.drive/parts/<upload id>/<part number>`: one part.
//!
//! And the description of an object that such providers keep in one metadata value: the S3
//! ETag, checksums and user metadata, which their own properties cannot hold.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Layout;
use crate::{BucketName, Checksums, Error, ObjectAttrs, Result};

/// An in-progress upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadRecord {
    /// The object key.
    pub key: String,
    /// The attributes the object gets.
    pub attrs: ObjectAttrs,
    /// When the upload was created, in milliseconds since the epoch.
    pub initiated_ms: u64,
}

/// What Drive keeps about an object in one provider metadata value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Description {
    /// The S3 ETag, unquoted.
    pub etag: String,
    /// Checksums verified when the object was written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: Checksums,
    /// The client's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// `Expires` as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `Cache-Control`, for providers whose writes cannot set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Disposition`, for providers that do not keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// Number of parts of a multipart object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

/// The metadata name of the [`Description`].
pub(crate) const DESCRIPTION: &str = "drive";

impl Description {
    /// Encodes the description as a metadata value.
    pub(crate) fn encode(&self) -> String {
        encode_value(self)
    }

    /// Decodes a metadata value; `None` if it is not one Drive wrote.
    pub(crate) fn decode(value: &str) -> Option<Self> {
        decode_value(value)
    }
}

/// A record as a provider metadata value: base64 of its JSON, which every provider's
/// metadata (HTTP headers) can carry.
pub(crate) fn encode_value<T: Serialize>(record: &T) -> String {
    let json = serde_json::to_vec(record).expect("a record serializes");
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(json)
}

/// Decodes a value of [`encode_value`]; `None` if it is not one Drive wrote.
pub(crate) fn decode_value<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    let json = base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(value.as_bytes())
        .ok()?;
    serde_json::from_slice(&json).ok()
}

impl Layout {
    /// The record of an upload.
    pub(crate) fn upload_record(&self, bucket: &BucketName, upload_id: &str) -> String {
        format!("{}{upload_id}", self.uploads_prefix(bucket))
    }

    /// The prefix of a bucket's upload records.
    pub(crate) fn uploads_prefix(&self, bucket: &BucketName) -> String {
        format!("{}.drive/uploads/{}/", self.root, bucket.as_str())
    }

    /// The record of one part.
    pub(crate) fn part_record(&self, upload_id: &str, part: u32) -> String {
        format!("{}{part:05}", self.parts_prefix(upload_id))
    }

    /// The prefix of an upload's part records.
    pub(crate) fn parts_prefix(&self, upload_id: &str) -> String {
        format!("{}.drive/parts/{upload_id}/", self.root)
    }

    /// The prefix of temporary objects.
    pub(crate) fn temp_prefix(&self) -> String {
        format!("{}.drive/tmp/", self.root)
    }
}

/// An upload id as these backends issue them, or `NoSuchUpload`: ids become parts of
/// provider names, so a crafted one must never reach the provider.
pub(crate) fn upload_id(id: &str) -> Result<&str> {
    if crate::ids::is_id(id) {
        Ok(id)
    } else {
        Err(Error::NoSuchUpload)
    }
}

/// The part number of a part record's name.
pub(crate) fn part_number(name: &str) -> Option<u32> {
    name.rsplit('/').next()?.parse().ok()
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time from milliseconds since the epoch.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_as_header_safe_text() {
        let d = Description {
            etag: "abc-2".into(),
            checksums: BTreeMap::from([("CRC32".into(), "AAAA==".into())]),
            user_metadata: BTreeMap::from([("Über key".into(), "välue\n".into())]),
            expires: Some("Thu, 01 Jan 2099 00:00:00 GMT".into()),
            cache_control: None,
            content_disposition: None,
            parts: Some(2),
        };
        let v = d.encode();
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let back = Description::decode(&v).unwrap();
        assert_eq!((back.etag, back.parts), ("abc-2".to_owned(), Some(2)));
        assert_eq!(back.user_metadata, d.user_metadata);
        assert!(Description::decode("not base64!").is_none());
    }

    #[test]
    fn record_names() {
        let l = Layout::new("r");
        let b = BucketName::new("bkt").unwrap();
        assert_eq!(l.upload_record(&b, "ab"), "r/.drive/uploads/bkt/ab");
        assert_eq!(l.part_record("ab", 7), "r/.drive/parts/ab/00007");
        assert_eq!(part_number(&l.part_record("ab", 10_000)), Some(10_000));
        assert!(upload_id("../x").is_err());
    }
}
