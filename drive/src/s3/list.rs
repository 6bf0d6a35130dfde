//! Listing objects (v1 and v2).

use buckets::{ListPage, ListQuery};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert::{bucket, etag, timestamp};
use super::{Drive, error};

/// The most keys one page holds, as on S3.
const MAX_KEYS: i32 = 1000;

/// Percent-encodes everything but unreserved characters and `/`, as S3 does for
/// `encoding-type=url`; both `unquote` and `unquote_plus` decode it back exactly.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Applies `encoding-type` to a string of a listing response.
pub fn encoder(encoding: Option<&EncodingType>) -> S3Result<fn(String) -> String> {
    match encoding.map(EncodingType::as_str) {
        None => Ok(|s| s),
        Some(EncodingType::URL) => Ok(|s| url_encode(&s)),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

/// The page size a listing request asks for (`max-keys`, `max-parts`, `max-uploads`):
/// at most 1000, as on S3; negative values are refused.
pub fn page_size(requested: Option<i32>, what: &str) -> S3Result<usize> {
    match requested {
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "{what} must be a non-negative integer"
        )),
        Some(n) => Ok(usize::try_from(n.min(MAX_KEYS)).unwrap_or(0)),
        None => Ok(1000),
    }
}

fn contents(page: &ListPage, enc: fn(String) -> String) -> Vec<Object> {
    page.objects
        .iter()
        .map(|o| Object {
            key: Some(enc(o.key.clone())),
            size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.last_modified)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn prefixes(page: &ListPage, enc: fn(String) -> String) -> Vec<CommonPrefix> {
    page.common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc(p.clone())),
        })
        .collect()
}

impl Drive {
    pub(super) async fn handle_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let enc = encoder(input.encoding_type.as_ref())?;
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: page_size(input.max_keys, "max-keys")?,
        };
        let page = self
            .backend
            .list_objects(&b, &query)
            .await
            .map_err(error::s3)?;
        // S3 returns NextMarker only when a delimiter is given; clients use the last key otherwise.
        let next_marker = page
            .next
            .clone()
            .filter(|_| query.delimiter.is_some())
            .map(enc);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(query.prefix.clone())),
            marker: Some(enc(input.marker.unwrap_or_default())),
            delimiter: input.delimiter.map(enc),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(MAX_KEYS)),
            is_truncated: Some(page.next.is_some()),
            next_marker,
            contents: Some(contents(&page, enc)),
            common_prefixes: Some(prefixes(&page, enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn handle_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let b = bucket(&req.extensions, &input.bucket)?;
        let enc = encoder(input.encoding_type.as_ref())?;
        let after_token = match input.continuation_token.as_deref() {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: after_token
                .or_else(|| input.start_after.clone().filter(|s| !s.is_empty())),
            max_keys: page_size(input.max_keys, "max-keys")?,
        };
        let page = self
            .backend
            .list_objects(&b, &query)
            .await
            .map_err(error::s3)?;
        let key_count = page.objects.len() + page.common_prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(query.prefix.clone())),
            delimiter: input.delimiter.map(enc),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(MAX_KEYS)),
            key_count: Some(i32::try_from(key_count).unwrap_or(MAX_KEYS)),
            is_truncated: Some(page.next.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_deref().map(encode_token),
            start_after: input.start_after.map(enc),
            contents: Some(contents(&page, enc)),
            common_prefixes: Some(prefixes(&page, enc)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// An opaque continuation token naming the key to continue after.
fn encode_token(after: &str) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(after.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_round_trips_through_plus_decoding() {
        assert_eq!(url_encode("a b+c/ü%"), "a%20b%2Bc/%C3%BC%25");
        assert_eq!(url_encode("plain/key-1_2.3~"), "plain/key-1_2.3~");
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        for k in ["a", "dir/ü", "x\u{10FFFF}"] {
            assert_eq!(decode_token(&encode_token(k)).unwrap(), k);
        }
        assert!(decode_token("!!!").is_err());
    }
}
