//! Conversions between S3 DTOs and storage types, and the read-side conditional rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buckets::{BucketName, ObjectAttrs, ObjectInfo, ObjectKey};
use s3s::dto::{ETag, ETagCondition, Metadata, Timestamp, TimestampFormat};
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::error;
use crate::auth::BucketMap;
use crate::namespace;

/// The attributes a write request sets, from any input DTO with S3's content fields
/// (PutObject, CopyObject, CreateMultipartUpload).
macro_rules! write_attrs {
    ($input:ident) => {
        $crate::s3::convert::attrs(
            $input.content_type,
            $input.content_encoding,
            $input.content_disposition,
            $input.content_language,
            $input.cache_control,
            $input.expires,
            $input.metadata,
        )
    };
}
pub(crate) use write_attrs;

/// The conditional headers of a read (GetObject, HeadObject).
macro_rules! read_conditions {
    ($input:ident) => {
        $crate::s3::convert::ReadConditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use read_conditions;

/// The conditions on a copy's source (CopyObject, UploadPartCopy).
macro_rules! copy_source_conditions {
    ($input:ident) => {
        $crate::s3::convert::ReadConditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use copy_source_conditions;

/// The digests a client declared for a body (PutObject, UploadPart).
macro_rules! declared_digests {
    ($input:ident) => {
        $crate::s3::digest::Declared {
            content_md5: $input.content_md5,
            crc32: $input.checksum_crc32,
            crc32c: $input.checksum_crc32c,
            sha1: $input.checksum_sha1,
            sha256: $input.checksum_sha256,
            crc64nvme: $input.checksum_crc64nvme,
            algorithm: $input.checksum_algorithm,
        }
    };
}
pub(crate) use declared_digests;

/// A response DTO with the given fields plus the `checksum_*` fields from a stored
/// checksum map (`None`: no checksums, as when the client did not ask for them).
macro_rules! with_checksums {
    ($output:ident { $($field:ident: $value:expr),* $(,)? }, $checksums:expr) => {{
        let checksums: Option<&buckets::Checksums> = $checksums;
        let sum = |name: &str| checksums.and_then(|c| c.get(name).cloned());
        $output {
            $($field: $value,)*
            checksum_crc32: sum("CRC32"),
            checksum_crc32c: sum("CRC32C"),
            checksum_sha1: sum("SHA1"),
            checksum_sha256: sum("SHA256"),
            checksum_crc64nvme: sum("CRC64NVME"),
            ..Default::default()
        }
    }};
}
pub(crate) use with_checksums;

/// The headers GetObject and HeadObject share, built once for an object (`len` bytes of it,
/// with `content_range` when ranged) and the request's `response-*` overrides.
macro_rules! object_headers {
    ($output:ident { $($field:ident: $value:expr),* $(,)? }, $input:ident, $info:ident, $len:expr, $content_range:expr, $with_checksums:expr) => {{
        let with_checksums: bool = $with_checksums;
        $crate::s3::convert::with_checksums!(
            $output {
                $($field: $value,)*
                content_length: Some(i64::try_from($len).unwrap_or(i64::MAX)),
                content_range: $content_range,
                accept_ranges: Some("bytes".into()),
                last_modified: Some($crate::s3::convert::timestamp($info.last_modified)),
                e_tag: Some($crate::s3::convert::etag(&$info.etag)),
                metadata: $crate::s3::convert::metadata(&$info.attrs),
                content_type: $input.response_content_type.or_else(|| $info.attrs.content_type.clone()),
                content_encoding: $input.response_content_encoding.or_else(|| $info.attrs.content_encoding.clone()),
                content_disposition: $input.response_content_disposition.or_else(|| $info.attrs.content_disposition.clone()),
                content_language: $input.response_content_language.or_else(|| $info.attrs.content_language.clone()),
                cache_control: $input.response_cache_control.or_else(|| $info.attrs.cache_control.clone()),
                expires: $input.response_expires.or_else(|| $crate::s3::convert::expires(&$info.attrs)),
                parts_count: $info.parts.map(|p| i32::try_from(p).unwrap_or(i32::MAX)),
            },
            with_checksums.then_some(&$info.checksums)
        )
    }};
}
pub(crate) use object_headers;

/// Resolves an optional range against an object of `size` bytes: offset, length, and the
/// `Content-Range` header for ranged reads.
pub fn resolve_range(
    range: Option<buckets::ByteRange>,
    size: u64,
) -> S3Result<(u64, u64, Option<String>)> {
    match range {
        Some(r) => {
            let (offset, len) = r.resolve(size).map_err(error::s3)?;
            Ok((
                offset,
                len,
                Some(format!("bytes {offset}-{}/{size}", offset + len - 1)),
            ))
        }
        None => Ok((0, size, None)),
    }
}

/// Whether the request asked for checksums (`x-amz-checksum-mode: ENABLED`).
pub fn checksum_mode(mode: Option<&s3s::dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == s3s::dto::ChecksumMode::ENABLED)
}

/// The backend bucket a request's bucket name stands for: as the access hook resolved it
/// for a user, or the name itself for root.
pub fn bucket(extensions: &http::Extensions, name: &str) -> S3Result<BucketName> {
    match extensions.get::<BucketMap>() {
        Some(map) => map.0.get(name).cloned().ok_or_else(namespace::denied),
        None => BucketName::new(name).map_err(error::s3),
    }
}

/// A validated key from a request.
pub fn key(name: &str) -> S3Result<ObjectKey> {
    ObjectKey::new(name).map_err(error::s3)
}

/// An S3 timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

/// A strong ETag from its unquoted value.
pub fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

/// The attributes a write request sets.
#[allow(clippy::too_many_arguments)]
pub fn attrs(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(|t| {
            let mut out = Vec::new();
            t.format(TimestampFormat::HttpDate, &mut out).ok()?;
            String::from_utf8(out).ok()
        }),
        user_metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    }
}

/// A `Content-Encoding` without the `aws-chunked` transfer framing that SDKs add for
/// streaming uploads (S3 does not store it); `None` when nothing else is left.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// `Expires` as a timestamp again.
pub fn expires(attrs: &ObjectAttrs) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, attrs.expires.as_deref()?).ok()
}

/// User metadata for a response.
pub fn metadata(attrs: &ObjectAttrs) -> Option<Metadata> {
    (!attrs.user_metadata.is_empty()).then(|| {
        attrs
            .user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn system_time(t: &Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.clone().into();
    let secs = u64::try_from(odt.unix_timestamp()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn matches(condition: &ETagCondition, current: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == current,
    }
}

/// The conditional headers of a read (or of a copy's source).
pub struct ReadConditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a ETagCondition>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a ETagCondition>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a Timestamp>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl ReadConditions<'_> {
    /// Applies RFC 9110's order as S3 does: a failed If-Match (or, without it, a failed
    /// If-Unmodified-Since) is 412; a matching If-None-Match (or, without it, an unmet
    /// If-Modified-Since) is 304 — or 412 when `for_copy`, as CopyObject reports it.
    pub fn check(&self, info: &ObjectInfo, for_copy: bool) -> S3Result<()> {
        let modified = whole_seconds(info.last_modified);
        let failed = match self.if_match {
            Some(c) => !matches(c, &info.etag),
            None => self
                .if_unmodified_since
                .is_some_and(|t| modified > whole_seconds(system_time(t))),
        };
        if failed {
            return Err(S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        let not_modified = match self.if_none_match {
            Some(c) => matches(c, &info.etag),
            None => self
                .if_modified_since
                .is_some_and(|t| modified <= whole_seconds(system_time(t))),
        };
        if not_modified {
            if for_copy {
                return Err(S3Error::with_message(
                    S3ErrorCode::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
            let mut e = S3Error::new(S3ErrorCode::NotModified);
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
                headers.insert(http::header::ETAG, v);
            }
            e.set_headers(headers);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_a_stored_encoding() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(
            without_aws_chunked("gzip,aws-chunked").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            without_aws_chunked("aws-chunked, br").as_deref(),
            Some("br")
        );
        assert_eq!(without_aws_chunked("gzip").as_deref(), Some("gzip"));
    }
}
