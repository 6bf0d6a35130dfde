//! One S3 conformance suite for Drive. `cases` holds async test functions that take a
//! [`Ctx`] (an SDK client pointed at a running Drive); `server` starts and stops the real
//! `drive` binary. Each backend's runner (in `tests/`) calls every case against its own
//! Drive configuration.

pub mod browser;
pub mod cases;
pub mod cpu;
pub mod database;
pub mod emulator;
pub mod faults;
pub mod idp;
/// A fake Kubernetes API server for the App Store's controller tests.
pub mod kube_api;
pub mod server;
pub mod sign;
pub mod sts;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// What a test case needs: a client and the endpoint it talks to.
#[derive(Clone)]
pub struct Ctx {
    /// A client signed with the root credentials.
    pub client: Client,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Root access key.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// The cloud backend's root prefix, when Drive runs on one (its keys are shorter).
    pub root_prefix: Option<String>,
    /// Whether keys may hold control characters (not on Azure: docs/backends.md).
    pub control_chars_in_keys: bool,
}

impl Ctx {
    /// A context for `endpoint` with these credentials.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        Self {
            client: client(endpoint, access_key, secret_key),
            endpoint: endpoint.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            root_prefix: None,
            control_chars_in_keys: true,
        }
    }

    /// The longest key of plain letters Drive accepts in `bucket`, in bytes: S3's 1024, less
    /// on cloud backends, whose provider names carry the root prefix, the bucket and a
    /// 5-byte break every 200 bytes (docs/backends.md).
    pub fn max_key_len(&self, bucket: &str) -> usize {
        match &self.root_prefix {
            None => 1024,
            Some(root) => {
                let budget = 1024 - root.len() - 1 - bucket.len() - 1;
                (1..=budget)
                    .rev()
                    .find(|n| n + 5 * ((n - 1) / 200) <= budget)
                    .unwrap_or(0)
            }
        }
    }

    /// Creates a bucket with a name unique to this test run.
    pub async fn bucket(&self, hint: &str) -> String {
        let name = unique(hint);
        self.client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }
}

/// Calls `$m!` with the name of every case of the conformance suite that runs unchanged on
/// every backend (see [`cases`]); each backend's test file turns them into tests.
#[macro_export]
macro_rules! for_each_case {
    ($m:ident) => {
        $m!(
            bucket_lifecycle,
            object_round_trip,
            ranges,
            conditionals,
            hostile_keys,
            listing,
            delete_objects,
            copy_object,
            multipart,
            multipart_listing,
            checksums,
            large_bodies,
            authentication,
            payload_signing,
            operations_endpoints,
        );
    };
}

/// An SDK client for `endpoint` (path style, no retries so errors surface at once).
pub fn client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "s3-compat-tests",
        ))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// A lowercase name that no other test uses.
pub fn unique(hint: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{hint}-{}-{n}-{nanos:x}", std::process::id())
}

/// The S3 error code and HTTP status of a failed call.
pub fn failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R>(
    result: Result<T, SdkError<E, R>>,
) -> (String, u16)
where
    R: std::fmt::Debug + HasStatus,
{
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let status = e.raw_response().map_or(0, HasStatus::status);
            (e.code().unwrap_or_default().to_owned(), status)
        }
    }
}

/// Gives the HTTP status of a raw response.
pub trait HasStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Writes `body` to `bucket/key`; panics with the error.
pub async fn put(client: &Client, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"));
}

/// Reads `bucket/key` whole; panics with the error.
pub async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"));
    out.body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("the body of GET {bucket}/{key}: {e:?}"))
        .to_vec()
}

/// Uploads `key` as a multipart upload whose part `n` (from 1) is `part(n)`, with
/// `in_flight` parts sent at once; returns the completed object's ETag.
pub async fn multipart_put(
    client: &Client,
    bucket: &str,
    key: &str,
    parts: usize,
    in_flight: usize,
    part: impl Fn(usize) -> aws_sdk_s3::primitives::ByteStream,
) -> String {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    use futures::StreamExt;
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create upload");
    let id = created.upload_id().expect("upload id");
    let completed: Vec<CompletedPart> = futures::stream::iter(1..=parts)
        .map(|n| {
            let body = part(n);
            async move {
                let number = i32::try_from(n).expect("at most 10000 parts");
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .expect("upload part");
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(out.e_tag().expect("part etag"))
                    .build()
            }
        })
        .buffered(in_flight)
        .collect()
        .await;
    let done = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete upload");
    done.e_tag().expect("object etag").to_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so content can be recomputed to verify it.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    let d = md5::Md5::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
