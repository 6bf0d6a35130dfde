//! Verification of request bodies: Content-MD5 and the `x-amz-checksum-*` values that SDKs
//! send in headers or as trailers of `aws-chunked` bodies.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use buckets::{BodyInfo, BodyStream, Checksums, Seal};
use futures::TryStreamExt;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, TrailingHeaders};

/// A body that did not match what the client declared.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The declared digest differs from the body's.
    #[error("{0}")]
    Mismatch(String),
    /// The declared digest is not even well-formed.
    #[error("{0}")]
    Malformed(String),
}

impl DigestError {
    /// The S3 error for this mismatch.
    pub fn to_s3(&self) -> S3Error {
        match self {
            Self::Mismatch(m) => S3Error::with_message(S3ErrorCode::BadDigest, m.clone()),
            Self::Malformed(m) => S3Error::with_message(S3ErrorCode::InvalidDigest, m.clone()),
        }
    }
}

/// The digests a client declared for a body, by header or trailer.
#[derive(Default)]
pub struct Declared {
    /// `Content-MD5` (base64).
    pub content_md5: Option<String>,
    /// `x-amz-checksum-crc32`.
    pub crc32: Option<String>,
    /// `x-amz-checksum-crc32c`.
    pub crc32c: Option<String>,
    /// `x-amz-checksum-sha1`.
    pub sha1: Option<String>,
    /// `x-amz-checksum-sha256`.
    pub sha256: Option<String>,
    /// `x-amz-checksum-crc64nvme`.
    pub crc64nvme: Option<String>,
    /// `x-amz-sdk-checksum-algorithm`.
    pub algorithm: Option<ChecksumAlgorithm>,
}

const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"];

/// Wraps a request body so that its checksums are computed as it streams, and describes it:
/// its declared length, its checksum algorithm and the seal that checks the checksums (and
/// Content-MD5) once the body is complete.
pub fn verify(
    body: StreamingBlob,
    declared: Declared,
    headers: &HeaderMap,
    trailers: Option<TrailingHeaders>,
) -> (BodyStream, BodyInfo) {
    let len = body_len(headers);
    let trailer_names: Vec<String> = headers
        .get_all("x-amz-trailer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: [Option<String>; 5] = [
        declared.crc32,
        declared.crc32c,
        declared.sha1,
        declared.sha256,
        declared.crc64nvme,
    ];
    let wanted: Vec<bool> = ALGORITHMS
        .iter()
        .zip(&expected)
        .map(|(name, value)| {
            value.is_some()
                || declared
                    .algorithm
                    .as_ref()
                    .is_some_and(|a| a.as_str().eq_ignore_ascii_case(name))
                || trailer_names
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&format!("x-amz-checksum-{name}")))
        })
        .collect();
    let checksum_algorithm = ALGORITHMS
        .iter()
        .zip(&wanted)
        .find(|(_, w)| **w)
        .map(|(name, _)| (*name).to_owned());
    let hasher = ChecksumHasher {
        crc32: wanted[0].then(Crc32::new),
        crc32c: wanted[1].then(Crc32c::new),
        sha1: wanted[2].then(Sha1::new),
        sha256: wanted[3].then(Sha256::new),
        crc64nvme: wanted[4].then(Crc64Nvme::new),
    };
    let shared = Arc::new(Mutex::new(Some(hasher)));
    let feeding = Arc::clone(&shared);
    let stream = body
        .inspect_ok(move |chunk| {
            if let Some(h) = feeding
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
            {
                h.update(chunk);
            }
        })
        .map_err(io::Error::other);
    let stream: BodyStream = Box::pin(stream);
    let content_md5 = declared.content_md5;
    let md5_needed = content_md5.is_some();
    let seal: Seal = Box::new(move |md5_hex: &str| {
        let reject = |e: DigestError| buckets::Error::Rejected(Box::new(e));
        if let Some(declared) = content_md5 {
            let decoded = base64_simd::STANDARD
                .decode_to_vec(declared.as_bytes())
                .map_err(|_| {
                    reject(DigestError::Malformed(
                        "The Content-MD5 you specified is not valid.".into(),
                    ))
                })?;
            if decoded.len() != 16 {
                return Err(reject(DigestError::Malformed(
                    "The Content-MD5 you specified is not valid.".into(),
                )));
            }
            if hex_simd::encode_to_string(&decoded, hex_simd::AsciiCase::Lower) != md5_hex {
                return Err(reject(DigestError::Mismatch(
                    "The Content-MD5 you specified did not match what we received.".into(),
                )));
            }
        }
        if let Some(trailers) = trailers.and_then(|t| t.take()) {
            for (slot, name) in expected.iter_mut().zip(ALGORITHMS) {
                if let Some(v) = trailers
                    .get(format!("x-amz-checksum-{}", name.to_ascii_lowercase()))
                    .and_then(|v| v.to_str().ok())
                {
                    *slot = Some(v.to_owned());
                }
            }
        }
        let hasher = shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        let computed = hasher.finalize();
        let computed = [
            computed.checksum_crc32,
            computed.checksum_crc32c,
            computed.checksum_sha1,
            computed.checksum_sha256,
            computed.checksum_crc64nvme,
        ];
        let mut stored = Checksums::new();
        for ((name, want), have) in ALGORITHMS.iter().zip(expected).zip(computed) {
            match (want, have) {
                (Some(want), Some(have)) if want != have => {
                    return Err(reject(DigestError::Mismatch(format!(
                        "The {name} you specified did not match the calculated checksum."
                    ))));
                }
                (_, Some(have)) => {
                    stored.insert((*name).to_owned(), have);
                }
                _ => {}
            }
        }
        Ok(stored)
    });
    let info = BodyInfo {
        len,
        checksum_algorithm,
        md5_needed,
        seal: Some(seal),
    };
    (stream, info)
}

/// The length of the decoded body: `x-amz-decoded-content-length` for `aws-chunked` bodies,
/// otherwise `Content-Length`.
fn body_len(headers: &HeaderMap) -> Option<u64> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    header("x-amz-decoded-content-length").or_else(|| header("content-length"))
}
