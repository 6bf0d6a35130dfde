//! The S3 backend: Drive over AWS S3 or any S3-compatible service, through aws-sdk-s3.
//!
//! Drive's buckets are prefixes of one provider bucket (see [`crate::cloud`]). Objects keep
//! the provider's own ETag, which S3 defines exactly as Drive does (MD5 of a single PUT,
//! `md5-of-md5s-N` of a multipart upload made of the same parts). Checksums the client
//! declared are computed and kept by the provider. Multipart uploads are the provider's own:
//! the upload id is the provider's, parts go straight through, and any replica can serve any
//! call of an upload.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3 as sdk;
use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::StreamBody;
use sdk::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sdk::primitives::{ByteStream, DateTime};
use sdk::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, EncodingType};

use crate::cloud::{self, Layout, ProviderPage, Verified};
use crate::{
    Backend, BodyInfo, BodyStream, BucketInfo, BucketName, ByteRange, Checksums, CompletedPart,
    Error, ListPage, ListQuery, ObjectAttrs, ObjectInfo, ObjectKey, ObjectSummary, PartInfo,
    PartsPage, PutOptions, Result, UploadSummary, UploadsPage, UploadsQuery, WriteCondition,
    select_parts,
};

/// Bodies up to this size are received and verified in full before they are sent, so the
/// SDK can retry them; larger ones stream with their last chunk held back.
const BUFFER_MAX: u64 = 1024 * 1024;

/// Metadata names Drive keeps for itself on provider objects.
const INTERNAL: &str = "drive-";
/// Prefix that escapes a client's metadata name which would look internal.
const ESCAPE: &str = "u-";

/// Sets content headers and metadata on a request builder that has S3's object setters.
macro_rules! with_attrs {
    ($req:expr, $attrs:expr) => {{
        let attrs: &ObjectAttrs = $attrs;
        $req.set_content_type(attrs.content_type.clone())
            .set_content_encoding(attrs.content_encoding.clone())
            .set_content_disposition(attrs.content_disposition.clone())
            .set_content_language(attrs.content_language.clone())
            .set_cache_control(attrs.cache_control.clone())
            .set_metadata(Some(metadata(attrs)))
    }};
}

/// An [`ObjectInfo`] from a GetObject or HeadObject output.
macro_rules! object_info {
    ($out:expr, $size:expr) => {{
        let out = &$out;
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        let parts = etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok());
        let (user_metadata, expires) = attrs_from(out.metadata());
        let mut checksums = Checksums::new();
        for (name, value) in [
            ("CRC32", out.checksum_crc32()),
            ("CRC32C", out.checksum_crc32_c()),
            ("SHA1", out.checksum_sha1()),
            ("SHA256", out.checksum_sha256()),
            ("CRC64NVME", out.checksum_crc64_nvme()),
        ] {
            if let Some(v) = value.filter(|v| !v.contains('-')) {
                checksums.insert(name.to_owned(), v.to_owned());
            }
        }
        ObjectInfo {
            size: $size,
            etag,
            last_modified: time(out.last_modified()),
            attrs: ObjectAttrs {
                content_type: out.content_type().map(str::to_owned),
                content_encoding: out.content_encoding().map(str::to_owned),
                content_disposition: out.content_disposition().map(str::to_owned),
                content_language: out.content_language().map(str::to_owned),
                cache_control: out.cache_control().map(str::to_owned),
                expires,
                user_metadata,
            },
            checksums,
            parts,
        }
    }};
}

/// Where the S3 backend stores data and how it signs in.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Service endpoint, e.g. `https://s3.eu-west-1.amazonaws.com`; `None` uses AWS's default.
    pub endpoint: Option<String>,
    /// Region to sign for.
    pub region: String,
    /// The one provider bucket that holds every Drive bucket.
    pub bucket: String,
    /// Prefix inside it.
    pub root: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

/// Drive's buckets inside one S3 bucket.
pub struct S3Backend {
    client: sdk::Client,
    bucket: String,
    layout: Layout,
}

impl S3Backend {
    /// Connects and checks that the bucket exists and the credentials are accepted.
    pub async fn connect(settings: S3Settings) -> Result<Self> {
        let credentials = sdk::config::Credentials::new(
            settings.access_key,
            settings.secret_key,
            None,
            None,
            "drive-config",
        );
        let timeouts = sdk::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build();
        let mut config = sdk::Config::builder()
            .behavior_version(sdk::config::BehaviorVersion::latest())
            .region(sdk::config::Region::new(settings.region))
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(sdk::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(sdk::config::ResponseChecksumValidation::WhenRequired)
            .retry_config(sdk::config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(timeouts);
        if let Some(endpoint) = settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let backend = Self {
            client: sdk::Client::from_conf(config.build()),
            bucket: settings.bucket,
            layout: Layout::new(&settings.root),
        };
        backend.check_ready().await?;
        Ok(backend)
    }

    /// Fails with `NoSuchBucket` unless the Drive bucket is recorded.
    async fn check_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.head_bucket(bucket).await.map(|_| ())
    }

    /// Sends a body: small ones verified first, large ones streamed through the seal.
    async fn send_body<T, E, F, Fut>(
        &self,
        body: BodyStream,
        info: BodyInfo,
        send: F,
    ) -> Result<(T, Verified)>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnOnce(ByteStream, i64) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, sdk::config::http::HttpResponse>>>,
    {
        let len = info.len.ok_or_else(|| {
            Error::InvalidArgument("the request must declare the body's length".into())
        })?;
        let (stream, outcome) = cloud::sealing(body, info.seal, info.md5_needed);
        if len <= BUFFER_MAX {
            let chunks: std::io::Result<Vec<Bytes>> = stream.try_collect().await;
            let verified = match (chunks, outcome.take()) {
                (Ok(chunks), Some(Ok(verified))) => (Bytes::from(chunks.concat()), verified),
                (_, Some(Err(e))) => return Err(e),
                (Err(e), _) => return Err(Error::Body(e)),
                (Ok(_), None) => {
                    return Err(Error::Body(std::io::Error::other(
                        "the body ended before it was verified",
                    )));
                }
            };
            let (body, verified) = (verified.0, outcome_len(verified.1, len)?);
            let out = send(ByteStream::from(body), to_i64(len))
                .await
                .map_err(provider)?;
            return Ok((out, verified));
        }
        let frames = stream.map_ok(http_body::Frame::data);
        let result = send(
            ByteStream::from_body_1_x(StreamBody::new(frames)),
            to_i64(len),
        )
        .await;
        match (result, outcome.take()) {
            (Ok(out), Some(Ok(verified))) => Ok((out, outcome_len(verified, len)?)),
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(provider(e)),
            (Ok(_), None) => Err(Error::Backend(
                "the provider accepted a body it did not read in full".into(),
            )),
        }
    }

    /// One page of the provider's flat listing under `prefix`, after `after`.
    async fn list_page(
        &self,
        prefix: String,
        after: Option<String>,
        page_size: i32,
    ) -> Result<ProviderPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after)
            .max_keys(page_size)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(provider)?;
        let mut objects = Vec::with_capacity(out.contents().len());
        for o in out.contents() {
            objects.push(ObjectSummary {
                key: url_decoded(o.key().unwrap_or_default())?,
                size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                last_modified: time(o.last_modified()),
            });
        }
        Ok(ProviderPage {
            objects,
            truncated: out.is_truncated() == Some(true),
        })
    }

    /// Every part the provider lists, in its order (a replaced part may be listed twice).
    async fn all_parts(&self, name: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(name)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(upload_error)?;
            parts.extend(out.parts().iter().map(part_info));
            match out.next_part_number_marker() {
                Some(next) if out.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => return Ok(parts),
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn check_ready(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| match provider(e) {
                Error::NoSuchKey => Error::Backend(format!(
                    "the S3 bucket {:?} does not exist at the provider",
                    self.bucket
                )),
                other => other,
            })?;
        Ok(())
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.layout.bucket_record(bucket))
            .if_none_match("*")
            .body(ByteStream::from_static(b""))
            .send()
            .await;
        match result.map_err(provider) {
            Ok(_) => Ok(()),
            Err(Error::PreconditionFailed(_)) => Err(Error::BucketAlreadyExists),
            Err(e) => Err(e),
        }
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.layout.bucket_record(bucket))
            .send()
            .await
            .map_err(|e| match provider(e) {
                Error::NoSuchKey => Error::NoSuchBucket,
                other => other,
            })?;
        Ok(BucketInfo {
            name: bucket.to_string(),
            created: time(out.last_modified()),
        })
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.check_bucket(bucket).await?;
        let prefix = self.layout.bucket_prefix(bucket);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(provider)?;
        if !out.contents().is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .send()
                .await
                .map_err(provider)?;
            for u in out.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    match self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(upload_error)
                    {
                        Ok(_) | Err(Error::NoSuchUpload) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.layout.bucket_record(bucket))
            .send()
            .await
            .map_err(provider)?;
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let prefix = self.layout.registry_prefix();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut buckets = Vec::new();
        while let Some(page) = pages.next().await {
            for o in page.map_err(provider)?.contents() {
                if let Some(name) = o.key().and_then(|k| k.strip_prefix(&prefix)) {
                    buckets.push(BucketInfo {
                        name: name.to_owned(),
                        created: time(o.last_modified()),
                    });
                }
            }
        }
        Ok(buckets)
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        self.check_bucket(bucket).await?;
        let PutOptions {
            attrs,
            condition,
            body: info,
        } = opts;
        let algorithm = info.checksum_algorithm.clone();
        let name = self.layout.object(bucket, key)?;
        let (out, verified) = self
            .send_body(body, info, |body, len| {
                let mut req = with_attrs!(
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&name)
                        .content_length(len)
                        .body(body),
                    &attrs
                )
                .set_checksum_algorithm(algorithm.as_deref().map(ChecksumAlgorithm::from));
                match &condition {
                    Some(WriteCondition::IfNoneExists) => req = req.if_none_match("*"),
                    Some(WriteCondition::IfMatch(etag)) => req = req.if_match(quoted(etag)),
                    None => {}
                }
                // Drive has verified the body already; hashing it again to sign it would only
                // cost time (TLS protects it on the way to a remote provider).
                req.customize().disable_payload_signing().send()
            })
            .await?;
        Ok(ObjectInfo {
            size: verified.len,
            etag: upstream_etag(out.e_tag())?,
            last_modified: SystemTime::now(),
            attrs,
            checksums: verified.checksums,
            parts: None,
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, BodyStream)> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.layout.object(bucket, key)?)
            .set_range(range.map(range_header))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let out = match result.map_err(provider) {
            Ok(out) => out,
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                return Err(Error::NoSuchKey);
            }
            Err(e) => return Err(e),
        };
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|total| total.parse().ok())
            .unwrap_or_else(|| u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0));
        let info = object_info!(out, size);
        let body = futures::stream::unfold(out.body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(std::io::Error::other), body))
        });
        Ok((info, Box::pin(body)))
    }

    async fn head_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectInfo> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.layout.object(bucket, key)?)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match result.map_err(provider) {
            Ok(out) => {
                let size = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
                Ok(object_info!(out, size))
            }
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                Err(Error::NoSuchKey)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.check_bucket(bucket).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.layout.object(bucket, key)?)
            .send()
            .await
            .map_err(provider)?;
        Ok(())
    }

    async fn copy_object(
        &self,
        src: (&BucketName, &ObjectKey),
        dst: (&BucketName, &ObjectKey),
        attrs: Option<ObjectAttrs>,
        condition: Option<WriteCondition>,
        source_etag: Option<&str>,
    ) -> Result<ObjectInfo> {
        self.check_bucket(dst.0).await?;
        let source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(&self.layout.object(src.0, src.1)?, COPY_SOURCE)
        );
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.layout.object(dst.0, dst.1)?)
            .copy_source(source)
            .set_copy_source_if_match(source_etag.map(quoted));
        req = match &attrs {
            Some(attrs) => with_attrs!(
                req.metadata_directive(sdk::types::MetadataDirective::Replace),
                attrs
            ),
            None => req.metadata_directive(sdk::types::MetadataDirective::Copy),
        };
        match &condition {
            Some(WriteCondition::IfNoneExists) => req = req.if_none_match("*"),
            Some(WriteCondition::IfMatch(etag)) => req = req.if_match(quoted(etag)),
            None => {}
        }
        match req.send().await.map_err(provider) {
            Ok(_) => {}
            Err(Error::NoSuchKey) => {
                self.check_bucket(src.0).await?;
                return Err(Error::NoSuchKey);
            }
            Err(Error::PreconditionFailed(_)) if source_etag.is_some() => {
                return Err(Error::PreconditionFailed(
                    "the source or destination changed during the copy",
                ));
            }
            Err(e) => return Err(e),
        }
        self.head_object(dst.0, dst.1).await
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        self.check_bucket(bucket).await?;
        let base = self.layout.bucket_prefix(bucket);
        let page_size = i32::try_from(query.max_keys.saturating_add(1).min(1000)).unwrap_or(1000);
        cloud::list(&base, query, |prefix, after| {
            Box::pin(self.list_page(prefix, after, page_size))
        })
        .await
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        attrs: ObjectAttrs,
    ) -> Result<String> {
        self.check_bucket(bucket).await?;
        let out = with_attrs!(
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(self.layout.object(bucket, key)?),
            &attrs
        )
        .send()
        .await
        .map_err(provider)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::Backend("the provider returned no upload id".into()))
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part: u32,
        body: BodyStream,
        info: BodyInfo,
    ) -> Result<PartInfo> {
        let name = self.layout.object(bucket, key)?;
        let number =
            i32::try_from(part).map_err(|_| Error::InvalidArgument("part number".into()))?;
        let result = self
            .send_body(body, info, |body, len| {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&name)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len)
                    .body(body)
                    .customize()
                    .disable_payload_signing()
                    .send()
            })
            .await;
        let (out, verified) = match result {
            Err(Error::NoSuchKey) => return Err(Error::NoSuchUpload),
            other => other?,
        };
        Ok(PartInfo {
            number: part,
            etag: upstream_etag(out.e_tag())?,
            size: verified.len,
            last_modified: SystemTime::now(),
            checksums: verified.checksums,
        })
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        marker: u32,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let name = self.layout.object(bucket, key)?;
        let parts = latest_parts(self.all_parts(&name, upload_id).await?);
        Ok(PartsPage::after(parts, marker, max_parts))
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo> {
        let name = self.layout.object(bucket, key)?;
        let stored = chosen_versions(self.all_parts(&name, upload_id).await?, parts);
        let chosen = select_parts(parts, &stored)?;
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                chosen
                    .iter()
                    .map(|p| {
                        sdk::types::CompletedPart::builder()
                            .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                            .e_tag(quoted(&p.etag))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&name)
            .upload_id(upload_id)
            .multipart_upload(completed);
        match &condition {
            Some(WriteCondition::IfNoneExists) => req = req.if_none_match("*"),
            Some(WriteCondition::IfMatch(etag)) => req = req.if_match(quoted(etag)),
            None => {}
        }
        req.send().await.map_err(upload_error)?;
        self.head_object(bucket, key).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        let name = self.layout.object(bucket, key)?;
        // Some services answer an abort of an unknown upload with success; S3 says NoSuchUpload.
        self.client
            .list_parts()
            .bucket(&self.bucket)
            .key(&name)
            .upload_id(upload_id)
            .max_parts(1)
            .send()
            .await
            .map_err(upload_error)?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&name)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(upload_error)?;
        Ok(())
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage> {
        self.check_bucket(bucket).await?;
        let base = self.layout.bucket_prefix(bucket);
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(format!("{base}{}", cloud::encode_key(&query.prefix)))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(provider)?;
            for u in out.uploads() {
                let key = u
                    .key()
                    .and_then(|k| k.strip_prefix(base.as_str()))
                    .and_then(cloud::decode_key);
                if let (Some(key), Some(id)) = (key, u.upload_id()) {
                    uploads.push(UploadSummary {
                        key,
                        upload_id: id.to_owned(),
                        initiated: time(u.initiated()),
                    });
                }
            }
            if out.is_truncated() != Some(true) || out.next_key_marker().is_none() {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
        }
        crate::list::sorted_uploads_page(uploads, query)
    }
}

/// The characters a copy source must have encoded: all but the unreserved ones and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A client's metadata with names that could look internal escaped, and Drive's own fields.
fn metadata(attrs: &ObjectAttrs) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = attrs
        .user_metadata
        .iter()
        .map(|(k, v)| {
            let name = if k.starts_with(INTERNAL) || k.starts_with(ESCAPE) {
                format!("{ESCAPE}{k}")
            } else {
                k.clone()
            };
            (name, v.clone())
        })
        .collect();
    if let Some(expires) = &attrs.expires {
        out.insert(format!("{INTERNAL}expires"), expires.clone());
    }
    out
}

/// The client's metadata and `Expires` back from provider metadata.
fn attrs_from(
    meta: Option<&HashMap<String, String>>,
) -> (std::collections::BTreeMap<String, String>, Option<String>) {
    let mut user = std::collections::BTreeMap::new();
    let mut expires = None;
    for (k, v) in meta.into_iter().flatten() {
        if let Some(escaped) = k.strip_prefix(ESCAPE) {
            user.insert(escaped.to_owned(), v.clone());
        } else if let Some(internal) = k.strip_prefix(INTERNAL) {
            if internal == "expires" {
                expires = Some(v.clone());
            }
        } else {
            user.insert(k.clone(), v.clone());
        }
    }
    (user, expires)
}

fn part_info(p: &sdk::types::Part) -> PartInfo {
    PartInfo {
        number: p
            .part_number()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        etag: p.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
        size: p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        last_modified: time(p.last_modified()),
        checksums: Checksums::new(),
    }
}

/// Parts by number, each once, for completion: of a part listed twice, the version whose
/// ETag the client named (a service that lists replaced parts keeps both).
fn chosen_versions(parts: Vec<PartInfo>, requested: &[CompletedPart]) -> Vec<PartInfo> {
    let named = |p: &PartInfo| {
        requested
            .iter()
            .any(|r| r.number == p.number && r.etag.trim_matches('"').eq_ignore_ascii_case(&p.etag))
    };
    let (matching, others): (Vec<PartInfo>, Vec<PartInfo>) = parts.into_iter().partition(named);
    let mut chosen = latest_parts(others);
    for p in matching {
        chosen.retain(|c| c.number != p.number);
        chosen.push(p);
    }
    chosen.sort_by_key(|p| p.number);
    chosen.dedup_by_key(|p| p.number);
    chosen
}

/// Parts by number, each once: some services list a replaced part twice; the later upload
/// (or, at equal times, the one listed last) is the part.
fn latest_parts(mut parts: Vec<PartInfo>) -> Vec<PartInfo> {
    parts.sort_by_key(|p| (p.number, p.last_modified));
    let mut latest: Vec<PartInfo> = Vec::with_capacity(parts.len());
    for p in parts {
        match latest.last_mut() {
            Some(last) if last.number == p.number => *last = p,
            _ => latest.push(p),
        }
    }
    latest
}

/// A key from a listing made with `encoding-type=url` (form encoding: `+` is a space).
fn url_decoded(name: &str) -> Result<String> {
    percent_encoding::percent_decode_str(&name.replace('+', " "))
        .decode_utf8()
        .map(|n| n.into_owned())
        .map_err(|_| Error::Backend("the provider listed a name that is not UTF-8".into()))
}

fn outcome_len(verified: Verified, declared: u64) -> Result<Verified> {
    if verified.len == declared {
        Ok(verified)
    } else {
        Err(Error::Body(std::io::Error::other(format!(
            "the body has {} bytes, not the {declared} declared",
            verified.len
        ))))
    }
}

/// The ETag the provider gave a write, unquoted.
fn upstream_etag(etag: Option<&str>) -> Result<String> {
    etag.map(|e| e.trim_matches('"').to_owned())
        .ok_or_else(|| Error::Backend("the provider returned no ETag".into()))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn quoted(etag: &str) -> String {
    if etag == "*" {
        etag.to_owned()
    } else {
        format!("\"{}\"", etag.trim_matches('"'))
    }
}

fn range_header(range: ByteRange) -> String {
    match range {
        ByteRange::Bounded { first, last } => format!("bytes={first}-{last}"),
        ByteRange::From { first } => format!("bytes={first}-"),
        ByteRange::Suffix { len } => format!("bytes=-{len}"),
    }
}

fn time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A provider error in multipart calls, where a missing key means a missing upload.
fn upload_error<E>(e: SdkError<E, sdk::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match provider(e) {
        Error::NoSuchKey => Error::NoSuchUpload,
        other => other,
    }
}

/// Classifies a provider error by its S3 code and HTTP status.
fn provider<E>(e: SdkError<E, sdk::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let SdkError::ServiceError(service) = &e else {
        return Error::Unavailable(DisplayErrorContext(&e).to_string());
    };
    let err = service.err();
    let message = err.message().unwrap_or_default();
    match (err.code(), status) {
        (Some("NoSuchUpload"), _) => Error::NoSuchUpload,
        (Some("NoSuchBucket"), _) => Error::Backend("the provider bucket does not exist".into()),
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => Error::NoSuchKey,
        (Some("PreconditionFailed"), _) | (_, Some(412)) => {
            Error::PreconditionFailed("the condition did not hold at the provider")
        }
        (Some("InvalidRange"), _) | (_, Some(416)) => Error::InvalidRange,
        (Some("InvalidPart"), _) => Error::InvalidPart(message.to_owned()),
        (Some("InvalidPartOrder"), _) => Error::InvalidPartOrder,
        (Some("SlowDown"), _) => Error::SlowDown,
        (code, Some(s)) if s >= 500 => Error::Unavailable(format!(
            "the provider answered {s} {}",
            code.unwrap_or_default()
        )),
        (code, Some(403)) => Error::Backend(format!(
            "the provider refused Drive's credentials ({}: {message})",
            code.unwrap_or("AccessDenied")
        )),
        (code, s) => Error::Backend(format!(
            "the provider answered {} {}: {message}",
            s.unwrap_or_default(),
            code.unwrap_or_default()
        )),
    }
}
