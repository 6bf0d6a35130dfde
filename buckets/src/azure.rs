//! The Azure backend: Drive over Azure Blob Storage, through `azure_storage_blobs` (account
//! key credentials).
//!
//! Drive's buckets are prefixes of one container (see [`crate::cloud`]). Small bodies are
//! verified, then written with one Put Blob. Larger bodies of known length (up to
//! [`PUT_BLOB_MAX`]) stream in one Put Blob whose last chunk waits for the body's
//! verification, so a refused body stores nothing. Azure computes the MD5 of a Put Blob's
//! content, which is the S3 ETag, so Drive computes it only when a client's Content-MD5
//! asks for it.
//! Larger bodies of unknown length are staged as blocks of at most [`BLOCK`] bytes,
//! [`IN_FLIGHT`] at once while the body is read on (so a write holds at most
//! `IN_FLIGHT + 1` blocks, whatever its size), and committed by a block list in sequence
//! order, which carries Drive's description (S3 ETag, checksums, user metadata) and the
//! write's condition: the blob appears whole and described at once, and a write that fails
//! before the commit leaves only uncommitted blocks, which Azure discards. Multipart parts are
//! blocks staged the same way on the object's blob under ids that name the upload, the part
//! and the attempt (all the same length); a part record per part keeps its ETag, size and
//! block count, and completion commits the chosen parts' blocks in order.
//!
//! Reads are Get Blob requests of [`RANGE`] bytes, each streamed as it arrives, the next one
//! requested while the current one streams; each carries `If-Match` with the blob's ETag, so
//! an overwrite during a read fails it instead of mixing versions.
//!
//! A replica trusts for [`crate::cloud::known::KNOWN_FOR`] that a bucket it has seen exists,
//! instead of asking for its record before every operation in it; deleting a bucket forgets
//! it at once in this replica, and another replica's deletion can go unnoticed for that long.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::error::ErrorKind;
use azure_core::prelude::{IfMatchCondition, Metadata, NextMarker, Range};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::blob::operations::GetBlobResponse;
use azure_storage_blobs::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::future::Either;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};

use crate::cloud::known::KnownBuckets;
use crate::cloud::staged::{self, DESCRIPTION, Description, UploadRecord};
use crate::cloud::{self, Layout, ProviderPage};
use crate::{
    Backend, BodyInfo, BodyStream, BucketInfo, BucketName, ByteRange, Checksums, CompletedPart,
    Error, ListPage, ListQuery, ObjectAttrs, ObjectInfo, ObjectKey, ObjectSummary, PartInfo,
    PartsPage, PutOptions, Result, UploadSummary, UploadsPage, UploadsQuery, WriteCondition,
    multipart_etag, select_parts,
};

/// Largest block Drive stages.
const BLOCK: usize = 8 * 1024 * 1024;
/// Blocks a write stages at once; with the one being filled, a write holds at most
/// `IN_FLIGHT + 1` blocks in memory.
const IN_FLIGHT: usize = 3;
/// Bytes per Get Blob request of a read (streamed, never held whole); the next range is
/// requested while one streams.
const RANGE: u64 = 32 * 1024 * 1024;
/// Largest body written with one Put Blob (Azure's limit for it); larger ones are staged as
/// blocks.
const PUT_BLOB_MAX: u64 = 5000 * 1024 * 1024;
/// Metadata name of an upload record and of a part record.
const RECORD: &str = "driverecord";
/// How long a pooled connection to the provider may stay idle: under the 5 s keep-alive of
/// Node servers (Azurite), so the pool never hands out a connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Sets content headers and Drive's description on a Put Blob or Put Block List.
macro_rules! with_headers {
    ($req:expr, $attrs:expr, $description:expr) => {{
        let attrs: &ObjectAttrs = $attrs;
        let mut metadata = Metadata::new();
        metadata.insert(DESCRIPTION, $description.encode());
        let mut req = $req.metadata(metadata);
        if let Some(v) = &attrs.content_type {
            req = req.content_type(v.clone());
        }
        if let Some(v) = &attrs.content_encoding {
            req = req.content_encoding(v.clone());
        }
        if let Some(v) = &attrs.content_language {
            req = req.content_language(v.clone());
        }
        if let Some(v) = &attrs.content_disposition {
            req = req.content_disposition(v.clone());
        }
        req
    }};
}

/// Where the Azure backend stores data and how it signs in.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Storage account name.
    pub account: String,
    /// Account key (base64).
    pub access_key: String,
    /// Blob service URL including the account for emulators, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`; `None` for Azure's public cloud.
    pub endpoint: Option<String>,
    /// The one container that holds every Drive bucket.
    pub container: String,
    /// Prefix inside it.
    pub root: String,
}

/// Drive's buckets inside one Azure container.
pub struct AzureBackend {
    container: ContainerClient,
    layout: Layout,
    name: String,
    known: KnownBuckets,
}

/// A part as its record keeps it: which blocks hold it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PartRecord {
    etag: String,
    size: u64,
    #[serde(default)]
    checksums: Checksums,
    uploaded_ms: u64,
    /// The attempt that wrote the part (a re-upload is a new attempt with new blocks).
    attempt: String,
    /// How many blocks hold it.
    blocks: u32,
}

impl AzureBackend {
    /// Connects and checks that the container exists and the key is accepted.
    pub async fn connect(settings: AzureSettings) -> Result<Self> {
        let credentials =
            StorageCredentials::access_key(settings.account.clone(), settings.access_key);
        let location = match settings.endpoint {
            Some(uri) => CloudLocation::Custom {
                account: settings.account,
                uri: uri.trim_end_matches('/').to_owned(),
            },
            None => CloudLocation::Public {
                account: settings.account,
            },
        };
        // Few, quick retries: a client waits for them, and an outage must surface as one.
        let retry = azure_core::ExponentialRetryOptions::default()
            .max_retries(2u32)
            .max_total_elapsed(Duration::from_secs(10));
        // azure_core's own client keeps no idle connection, so every call would open one.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Backend(format!("azure: an HTTP client: {e}")))?;
        let container = ClientBuilder::with_location(location, credentials)
            .retry(azure_core::RetryOptions::exponential(retry))
            .transport(azure_core::TransportOptions::new(Arc::new(http)))
            .container_client(settings.container.clone());
        let backend = Self {
            container,
            layout: Layout::new(&settings.root).refusing_control_characters(),
            name: settings.container,
            known: KnownBuckets::default(),
        };
        backend.check_ready().await?;
        Ok(backend)
    }

    fn blob(&self, name: &str) -> BlobClient {
        self.container.blob_client(name)
    }

    /// `NoSuchBucket` unless the bucket exists: asks the provider, unless this replica has
    /// seen the bucket there lately (see [`KnownBuckets`]).
    async fn check_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.known
            .check(bucket, async { self.head_bucket(bucket).await.map(drop) })
            .await
    }

    async fn properties(&self, name: &str) -> Result<Blob> {
        Ok(self
            .blob(name)
            .get_properties()
            .await
            .map_err(provider)?
            .blob)
    }

    async fn find(&self, name: &str) -> Result<Option<Blob>> {
        match self.properties(name).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::NoSuchKey) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        match self.blob(name).delete().await.map_err(provider) {
            Ok(_) | Err(Error::NoSuchKey) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The Azure condition of a write, after checking an `If-Match` against Drive's ETag.
    async fn condition(
        &self,
        name: &str,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<IfMatchCondition>> {
        match condition {
            None => Ok(None),
            Some(WriteCondition::IfNoneExists) => Ok(Some(IfMatchCondition::NotMatch("*".into()))),
            Some(c @ WriteCondition::IfMatch(_)) => {
                let current = self.find(name).await?;
                c.check(current.as_ref().map(|b| describe(b).etag).as_deref())?;
                let blob = current.expect("the condition held, so the blob exists");
                Ok(Some(IfMatchCondition::Match(
                    blob.properties.etag.to_string(),
                )))
            }
        }
    }

    /// Stages a verified body as blocks named by `block_id(sequence)`; returns the number of
    /// blocks and what was verified (its MD5 if `md5` asks for it). Small bodies come back
    /// whole instead (no block staged).
    ///
    /// Up to [`IN_FLIGHT`] blocks are staged at once while the body is read on into the next;
    /// once that one is full and all slots are taken, reading waits for a slot, so a write
    /// holds at most `IN_FLIGHT + 1` blocks (plus one chunk of the body) whatever its size.
    /// A full block is staged only when more of the body follows it, so the last block waits
    /// for the seal's verdict. On any failure the in-flight calls are dropped (cancelled) and
    /// the error returned before anything is committed: staged blocks stay uncommitted, and
    /// Azure discards them.
    async fn stage(
        &self,
        name: &str,
        body: BodyStream,
        info: BodyInfo,
        block_id: impl Fn(u32) -> String,
        whole_up_to: usize,
        md5: bool,
    ) -> Result<(Staged, cloud::Verified)> {
        let (mut stream, outcome) = cloud::sealing(body, info.seal, md5);
        let blob = self.blob(name);
        let mut staging = FuturesUnordered::new();
        let mut buffer = BytesMut::new();
        let mut blocks = 0u32;
        loop {
            let chunk = tokio::select! {
                Some(staged) = staging.next() => {
                    staged?;
                    continue;
                }
                chunk = stream.next() => chunk,
            };
            let mut chunk = match chunk {
                Some(Ok(c)) => c,
                // The outcome says why the body ended early.
                Some(Err(_)) | None => break,
            };
            while !chunk.is_empty() {
                if buffer.len() == BLOCK {
                    // More follows a full block: stage it, once a slot is free.
                    if staging.len() >= IN_FLIGHT
                        && let Some(staged) = staging.next().await
                    {
                        staged?;
                    }
                    let block = std::mem::replace(&mut buffer, BytesMut::with_capacity(BLOCK));
                    staging.push(self.put_block(&blob, block_id(blocks), block.freeze()));
                    blocks += 1;
                }
                let n = chunk.len().min(BLOCK - buffer.len());
                buffer.extend_from_slice(&chunk.split_to(n));
            }
        }
        let verified = match outcome.take() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(e),
            None => return Err(Error::Body(std::io::Error::other("the body was cut"))),
        };
        if blocks == 0 && buffer.len() <= whole_up_to {
            return Ok((Staged::Whole(buffer.freeze()), verified));
        }
        if !buffer.is_empty() {
            staging.push(self.put_block(&blob, block_id(blocks), buffer.freeze()));
            blocks += 1;
        }
        while let Some(staged) = staging.next().await {
            staged?;
        }
        Ok((Staged::Blocks(blocks), verified))
    }

    /// Writes a body of known length `len` with one Put Blob, streamed as it arrives, its last
    /// chunk held back until the body is verified (see [`cloud::sealing`]): a refused or
    /// broken body never completes the call, and Azure stores nothing. Azure computes the MD5
    /// of a Put Blob's content, which is the S3 ETag, so Drive does not (see [`describe`]);
    /// checksums known only once the body has ended (trailers) are set on the blob afterwards,
    /// on the ETag the Put Blob returned, so a newer write is never overwritten.
    async fn put_streamed(
        &self,
        name: &str,
        body: BodyStream,
        len: u64,
        info: BodyInfo,
        attrs: ObjectAttrs,
        condition: Option<IfMatchCondition>,
    ) -> Result<ObjectInfo> {
        let mut description = description_of(&attrs);
        let (stream, outcome) = cloud::sealing(body, info.seal, info.md5_needed);
        let body = azure_core::Body::SeekableStream(Box::new(OnceBody::new(stream, len)));
        let blob = self.blob(name);
        let mut req = with_headers!(blob.put_block_blob(body), &attrs, &description);
        if let Some(c) = condition {
            req = req.if_match(c);
        }
        let put = req.await;
        let (verified, stored) = match (outcome.take(), put) {
            (Some(Err(e)), _) => return Err(e),
            (_, Err(e)) => return Err(provider(e)),
            (Some(Ok(v)), Ok(stored)) => (v, stored),
            (None, Ok(_)) => {
                return Err(Error::Body(std::io::Error::other(
                    "the body ended before it was verified",
                )));
            }
        };
        let etag = etag_of(stored.content_md5.as_ref(), verified.md5.clone())?;
        if !verified.checksums.is_empty() {
            description.checksums.clone_from(&verified.checksums);
            let mut metadata = Metadata::new();
            metadata.insert(DESCRIPTION, description.encode());
            match blob
                .set_metadata()
                .metadata(metadata)
                .if_match(IfMatchCondition::Match(stored.etag))
                .await
                .map_err(provider)
            {
                // A newer write replaced the blob meanwhile: its description stands.
                Ok(_) | Err(Error::PreconditionFailed(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written(verified, etag, attrs))
    }

    async fn put_block(&self, blob: &BlobClient, id: String, data: Bytes) -> Result<()> {
        blob.put_block(BlockId::new(id), data)
            .await
            .map_err(provider)?;
        Ok(())
    }

    /// Lists blobs under `prefix` (with metadata), following markers, from the start.
    async fn list_from(
        &self,
        prefix: String,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Blob>, bool)> {
        let mut found = Vec::new();
        let mut marker: Option<NextMarker> = None;
        loop {
            let mut req = self
                .container
                .list_blobs()
                .prefix(prefix.clone())
                .include_metadata(true)
                .max_results(NonZeroU32::new(5000).expect("nonzero"));
            if let Some(m) = marker.take() {
                req = req.marker(m);
            }
            let page = req
                .into_stream()
                .next()
                .await
                .ok_or_else(|| Error::Backend("the provider ended a listing early".into()))?
                .map_err(provider)?;
            for item in page.blobs.blobs() {
                if after.is_none_or(|a| item.name.as_bytes() > a.as_bytes()) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(item.clone());
                }
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok((found, false)),
            }
        }
    }

    async fn upload_record(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        let id = staged::upload_id(upload_id)?;
        self.find(&self.layout.upload_record(bucket, id))
            .await?
            .and_then(|b| record_of::<UploadRecord>(&b))
            .filter(|r| r.key == key.as_str())
            .ok_or(Error::NoSuchUpload)
    }

    async fn parts(&self, upload_id: &str) -> Result<Vec<(u32, PartRecord)>> {
        let (blobs, _) = self
            .list_from(self.layout.parts_prefix(upload_id), None, usize::MAX)
            .await?;
        let mut parts: Vec<(u32, PartRecord)> = blobs
            .iter()
            .filter_map(|b| Some((staged::part_number(&b.name)?, record_of(b)?)))
            .collect();
        parts.sort_by_key(|(n, _)| *n);
        Ok(parts)
    }

    async fn discard_upload(&self, bucket: &BucketName, upload_id: &str) -> Result<()> {
        for (n, _) in self.parts(upload_id).await? {
            self.delete(&self.layout.part_record(upload_id, n)).await?;
        }
        self.delete(&self.layout.upload_record(bucket, upload_id))
            .await
    }

    /// Deletes an empty bucket: its uploads, then its record.
    async fn delete_bucket_now(&self, bucket: &BucketName) -> Result<()> {
        self.head_bucket(bucket).await?;
        let (any, _) = self
            .list_from(self.layout.bucket_prefix(bucket), None, 1)
            .await?;
        if !any.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        let (uploads, _) = self
            .list_from(self.layout.uploads_prefix(bucket), None, usize::MAX)
            .await?;
        for u in uploads {
            if let Some(id) = u.name.rsplit('/').next() {
                self.discard_upload(bucket, id).await?;
            }
        }
        self.delete(&self.layout.bucket_record(bucket)).await
    }

    async fn put_record<T: serde::Serialize>(&self, name: &str, record: &T) -> Result<()> {
        let mut metadata = Metadata::new();
        metadata.insert(RECORD, staged::encode_value(record));
        self.blob(name)
            .put_block_blob(Bytes::new())
            .metadata(metadata)
            .await
            .map_err(provider)?;
        Ok(())
    }
}

/// A staged body: whole in memory (small), or as this many blocks.
enum Staged {
    Whole(Bytes),
    Blocks(u32),
}

#[async_trait::async_trait]
impl Backend for AzureBackend {
    async fn check_ready(&self) -> Result<()> {
        match self.container.get_properties().await.map_err(provider) {
            Ok(_) => Ok(()),
            Err(Error::NoSuchKey) => Err(Error::Backend(format!(
                "the Azure container {:?} does not exist at the provider",
                self.name
            ))),
            Err(e) => Err(e),
        }
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let mark = self.known.mark();
        let result = self
            .blob(&self.layout.bucket_record(bucket))
            .put_block_blob(Bytes::new())
            .if_match(IfMatchCondition::NotMatch("*".into()))
            .await
            .map_err(provider);
        match result {
            Ok(_) => {
                self.known.seen(bucket, mark);
                Ok(())
            }
            Err(Error::PreconditionFailed(_)) => Err(Error::BucketAlreadyExists),
            Err(e) => Err(e),
        }
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        match self.properties(&self.layout.bucket_record(bucket)).await {
            Ok(b) => Ok(BucketInfo {
                name: bucket.to_string(),
                created: b.properties.last_modified.into(),
            }),
            Err(Error::NoSuchKey) => Err(Error::NoSuchBucket),
            Err(e) => Err(e),
        }
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.known.forget(bucket);
        let deleted = self.delete_bucket_now(bucket).await;
        self.known.forget(bucket);
        deleted
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let prefix = self.layout.registry_prefix();
        let (blobs, _) = self.list_from(prefix.clone(), None, usize::MAX).await?;
        Ok(blobs
            .into_iter()
            .filter_map(|b| {
                Some(BucketInfo {
                    name: b.name.strip_prefix(&prefix)?.to_owned(),
                    created: b.properties.last_modified.into(),
                })
            })
            .collect())
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        self.check_bucket(bucket).await?;
        let name = self.layout.object(bucket, key)?;
        let PutOptions {
            attrs,
            condition,
            body: info,
        } = opts;
        if let Some(len) = info
            .len
            .filter(|n| (BLOCK as u64 + 1..=PUT_BLOB_MAX).contains(n))
        {
            let condition = self.condition(&name, condition.as_ref()).await?;
            return self
                .put_streamed(&name, body, len, info, attrs, condition)
                .await;
        }
        let mut description = description_of(&attrs);
        // A body declared to fit one Put Blob is sent whole, and Azure computes its MD5.
        let whole = info.len.is_some_and(|n| n <= BLOCK as u64);
        let md5 = info.md5_needed || !whole;
        let put_id = crate::ids::new_id();
        let (staged, verified) = self
            .stage(&name, body, info, |n| format!("{put_id}{n:08}"), BLOCK, md5)
            .await?;
        description.etag.clone_from(&verified.md5);
        description.checksums.clone_from(&verified.checksums);
        let condition = self.condition(&name, condition.as_ref()).await?;
        let blob = self.blob(&name);
        let etag = match staged {
            Staged::Whole(data) => {
                let mut req = with_headers!(blob.put_block_blob(data), &attrs, &description);
                if let Some(c) = condition {
                    req = req.if_match(c);
                }
                let stored = req.await.map_err(provider)?;
                etag_of(stored.content_md5.as_ref(), verified.md5.clone())?
            }
            Staged::Blocks(_) if verified.md5.is_empty() => {
                return Err(Error::Body(std::io::Error::other(
                    "the body is longer than its declared length",
                )));
            }
            Staged::Blocks(n) => {
                let list = block_list((0..n).map(|i| format!("{put_id}{i:08}")));
                let mut req = with_headers!(blob.put_block_list(list), &attrs, &description);
                if let Some(c) = condition {
                    req = req.if_match(c);
                }
                req.await.map_err(provider)?;
                verified.md5.clone()
            }
        };
        Ok(written(verified, etag, attrs))
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, BodyStream)> {
        let name = self.layout.object(bucket, key)?;
        let blob = match self.properties(&name).await {
            Ok(b) => b,
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                return Err(Error::NoSuchKey);
            }
            Err(e) => return Err(e),
        };
        let info = info_of(&blob);
        let (offset, len) = match range {
            Some(r) => r.resolve(info.size)?,
            None => (0, info.size),
        };
        let (tx, rx) = futures::channel::mpsc::channel(4);
        if len > 0 {
            let pages = self
                .blob(&name)
                .get()
                .range(Range::new(offset, offset + len))
                .chunk_size(RANGE)
                .if_match(IfMatchCondition::Match(blob.properties.etag.to_string()))
                .into_stream();
            tokio::spawn(read_ranges(pages, tx));
        }
        Ok((info, Box::pin(rx)))
    }

    async fn head_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectInfo> {
        match self.properties(&self.layout.object(bucket, key)?).await {
            Ok(b) => Ok(info_of(&b)),
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                Err(Error::NoSuchKey)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.check_bucket(bucket).await?;
        self.delete(&self.layout.object(bucket, key)?).await
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
        let (info, body) = self.get_object(src.0, src.1, None).await?;
        if source_etag.is_some_and(|want| want != info.etag) {
            return Err(Error::PreconditionFailed(
                "the source changed during the copy",
            ));
        }
        let attrs = attrs.unwrap_or_else(|| info.attrs.clone());
        let checksums = info.checksums.clone();
        let body_info = BodyInfo {
            len: Some(info.size),
            ..BodyInfo::default()
        };
        let mut copied = self
            .put_object(
                dst.0,
                dst.1,
                body,
                PutOptions {
                    attrs,
                    condition,
                    body: body_info,
                },
            )
            .await?;
        copied.checksums = checksums;
        Ok(copied)
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        self.check_bucket(bucket).await?;
        let base = self.layout.bucket_prefix(bucket);
        let page_size = query.max_keys.saturating_add(1).min(1000);
        cloud::list(&base, query, |prefix, after| {
            Box::pin(async move {
                let (blobs, truncated) =
                    self.list_from(prefix, after.as_deref(), page_size).await?;
                let objects = blobs
                    .iter()
                    .map(|b| ObjectSummary {
                        key: b.name.clone(),
                        size: b.properties.content_length,
                        etag: describe(b).etag,
                        last_modified: b.properties.last_modified.into(),
                    })
                    .collect();
                Ok(ProviderPage { objects, truncated })
            })
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
        self.layout.object(bucket, key)?;
        let id = crate::ids::new_id();
        let record = UploadRecord {
            key: key.to_string(),
            attrs,
            initiated_ms: staged::now_ms(),
        };
        self.put_record(&self.layout.upload_record(bucket, &id), &record)
            .await?;
        Ok(id)
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
        self.upload_record(bucket, key, upload_id).await?;
        let name = self.layout.object(bucket, key)?;
        let attempt = crate::ids::new_id()[..8].to_owned();
        let (staged, verified) = self
            .stage(
                &name,
                body,
                info,
                |n| part_block(upload_id, part, &attempt, n),
                0,
                true,
            )
            .await?;
        let blocks = match staged {
            Staged::Blocks(n) => n,
            Staged::Whole(_) => 0,
        };
        let record = PartRecord {
            etag: verified.md5.clone(),
            size: verified.len,
            checksums: verified.checksums.clone(),
            uploaded_ms: staged::now_ms(),
            attempt,
            blocks,
        };
        self.put_record(&self.layout.part_record(upload_id, part), &record)
            .await?;
        Ok(PartInfo {
            number: part,
            etag: verified.md5,
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
        self.upload_record(bucket, key, upload_id).await?;
        let parts: Vec<PartInfo> = self
            .parts(upload_id)
            .await?
            .iter()
            .map(|(n, r)| part_info(*n, r))
            .collect();
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
        let record = self.upload_record(bucket, key, upload_id).await?;
        let stored = self.parts(upload_id).await?;
        let infos: Vec<PartInfo> = stored.iter().map(|(n, r)| part_info(*n, r)).collect();
        let chosen = select_parts(parts, &infos)?;
        let mut ids = Vec::new();
        for c in &chosen {
            let (_, r) = stored
                .iter()
                .find(|(n, _)| *n == c.number)
                .expect("chosen parts are stored");
            ids.extend((0..r.blocks).map(|i| part_block(upload_id, c.number, &r.attempt, i)));
        }
        let description = Description {
            etag: multipart_etag(chosen.iter().map(|c| c.etag.as_str())),
            parts: Some(u32::try_from(chosen.len()).expect("at most 10000 parts")),
            ..description_of(&record.attrs)
        };
        let name = self.layout.object(bucket, key)?;
        let condition = self.condition(&name, condition.as_ref()).await?;
        let mut req = with_headers!(
            self.blob(&name).put_block_list(block_list(ids.into_iter())),
            &record.attrs,
            &description
        );
        if let Some(c) = condition {
            req = req.if_match(c);
        }
        match req.await.map_err(provider) {
            Ok(_) => {}
            Err(Error::Backend(m)) if m.contains("InvalidBlockList") => {
                return Err(Error::InvalidPart(
                    "a part's data was discarded by another write to the same key; upload it again"
                        .into(),
                ));
            }
            Err(e) => return Err(e),
        }
        self.discard_upload(bucket, upload_id).await?;
        self.head_object(bucket, key).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        self.upload_record(bucket, key, upload_id).await?;
        self.discard_upload(bucket, upload_id).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage> {
        self.check_bucket(bucket).await?;
        let (records, _) = self
            .list_from(self.layout.uploads_prefix(bucket), None, usize::MAX)
            .await?;
        let uploads: Vec<UploadSummary> = records
            .iter()
            .filter_map(|b| {
                let record: UploadRecord = record_of(b)?;
                Some(UploadSummary {
                    key: record.key,
                    upload_id: b.name.rsplit('/').next()?.to_owned(),
                    initiated: staged::from_ms(record.initiated_ms),
                })
            })
            .collect();
        crate::list::sorted_uploads_page(uploads, query)
    }
}

/// Sends the ranges of a Get Blob to `tx` in order, each streamed as it arrives, with the
/// next range requested while the current one streams (its body waits unread at the
/// connection until its turn). Ends at the first error, after sending it, or when the
/// receiver is gone.
async fn read_ranges(
    mut pages: azure_core::Pageable<GetBlobResponse, azure_core::Error>,
    mut tx: futures::channel::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut page = pages.next().await;
    loop {
        let data = match page {
            None => return,
            Some(Ok(p)) => p.data,
            Some(Err(e)) => {
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                return;
            }
        };
        let forward = std::pin::pin!(forward(data, &mut tx));
        match futures::future::select(forward, pages.next()).await {
            Either::Left((sent, ahead)) => {
                if !sent {
                    return;
                }
                page = ahead.await;
            }
            Either::Right((ahead, forward)) => {
                if !forward.await {
                    return;
                }
                page = ahead;
            }
        }
    }
}

/// Forwards one response body; whether all of it went (false on an error, after sending it,
/// or when the receiver is gone).
async fn forward(
    mut data: azure_core::ResponseBody,
    tx: &mut futures::channel::mpsc::Sender<std::io::Result<Bytes>>,
) -> bool {
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(std::io::Error::other);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return false;
        }
    }
    true
}

/// A body handed to azure_core as a stream of known length that can be read once: azure_core
/// clones it for each attempt of a call and resets it before a retry, which it refuses once
/// reading has begun (a streamed body cannot be sent again). Bytes beyond the declared
/// length, or fewer, fail the read.
#[derive(Clone)]
struct OnceBody {
    state: Arc<std::sync::Mutex<OnceState>>,
    len: usize,
}

struct OnceState {
    body: BodyStream,
    pending: Bytes,
    read: u64,
    started: bool,
}

impl OnceBody {
    fn new(body: BodyStream, len: u64) -> Self {
        Self {
            state: Arc::new(std::sync::Mutex::new(OnceState {
                body,
                pending: Bytes::new(),
                read: 0,
                started: false,
            })),
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }
    }
}

impl std::fmt::Debug for OnceBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceBody").field("len", &self.len).finish()
    }
}

impl futures::io::AsyncRead for OnceBody {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let len = self.len as u64;
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.started = true;
        while s.pending.is_empty() {
            match std::task::ready!(s.body.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => s.pending = chunk,
                Some(Err(e)) => return std::task::Poll::Ready(Err(e)),
                None if s.read == len => return std::task::Poll::Ready(Ok(0)),
                None => {
                    return std::task::Poll::Ready(Err(std::io::Error::other(
                        "the body is shorter than its declared length",
                    )));
                }
            }
        }
        let n = buf.len().min(s.pending.len());
        s.read += n as u64;
        if s.read > len {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the body is longer than its declared length",
            )));
        }
        buf[..n].copy_from_slice(&s.pending.split_to(n));
        std::task::Poll::Ready(Ok(n))
    }
}

#[async_trait::async_trait]
impl azure_core::SeekableStream for OnceBody {
    async fn reset(&mut self) -> azure_core::Result<()> {
        let started = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .started;
        if started {
            return Err(azure_core::Error::message(
                ErrorKind::Io,
                "a streamed body cannot be sent again",
            ));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The id of block `n` of a part: the same length for every block of every upload.
fn part_block(upload_id: &str, part: u32, attempt: &str, n: u32) -> String {
    format!("{upload_id}{part:05}{attempt}{n:05}")
}

fn block_list(ids: impl Iterator<Item = String>) -> BlockList {
    BlockList {
        blocks: ids.map(BlobBlockType::new_uncommitted).collect(),
    }
}

fn part_info(number: u32, r: &PartRecord) -> PartInfo {
    PartInfo {
        number,
        etag: r.etag.clone(),
        size: r.size,
        last_modified: staged::from_ms(r.uploaded_ms),
        checksums: r.checksums.clone(),
    }
}

fn record_of<T: serde::de::DeserializeOwned>(b: &Blob) -> Option<T> {
    staged::decode_value(b.metadata.as_ref()?.get(RECORD)?)
}

/// What a client learns of a single write it just made.
fn written(verified: cloud::Verified, etag: String, attrs: ObjectAttrs) -> ObjectInfo {
    ObjectInfo {
        size: verified.len,
        etag,
        last_modified: SystemTime::now(),
        attrs,
        checksums: verified.checksums,
        parts: None,
    }
}

/// The description of a single write with `attrs`, before its body is known (no ETag, no
/// checksums yet).
fn description_of(attrs: &ObjectAttrs) -> Description {
    Description {
        etag: String::new(),
        checksums: crate::Checksums::new(),
        user_metadata: attrs.user_metadata.clone(),
        expires: attrs.expires.clone(),
        cache_control: attrs.cache_control.clone(),
        content_disposition: attrs.content_disposition.clone(),
        parts: None,
    }
}

/// The S3 ETag of a Put Blob: the MD5 Drive computed, if it did, or the one Azure did.
fn etag_of(stored: Option<&azure_storage::ConsistencyMD5>, computed: String) -> Result<String> {
    match stored {
        _ if !computed.is_empty() => Ok(computed),
        Some(md5) => Ok(hex_simd::encode_to_string(
            md5.bytes(),
            hex_simd::AsciiCase::Lower,
        )),
        None => Err(Error::Backend(
            "the provider returned no MD5 for a Put Blob".into(),
        )),
    }
}

/// Drive's description of a blob. A blob written by one Put Blob may carry no ETag in it:
/// then its ETag is the MD5 Azure computed of the content.
fn describe(b: &Blob) -> Description {
    let mut d: Description = b
        .metadata
        .as_ref()
        .and_then(|m| m.get(DESCRIPTION))
        .and_then(|v| Description::decode(v))
        .unwrap_or_default();
    if d.etag.is_empty()
        && let Some(md5) = &b.properties.content_md5
    {
        d.etag = hex_simd::encode_to_string(md5.bytes(), hex_simd::AsciiCase::Lower);
    }
    d
}

fn info_of(b: &Blob) -> ObjectInfo {
    let d = describe(b);
    let p = &b.properties;
    ObjectInfo {
        size: p.content_length,
        etag: d.etag,
        last_modified: p.last_modified.into(),
        attrs: ObjectAttrs {
            content_type: Some(p.content_type.clone()).filter(|t| !t.is_empty()),
            content_encoding: p.content_encoding.clone(),
            content_disposition: d
                .content_disposition
                .or_else(|| p.content_disposition.clone()),
            content_language: p.content_language.clone(),
            cache_control: d.cache_control,
            expires: d.expires,
            user_metadata: d.user_metadata,
        },
        checksums: d.checksums,
        parts: d.parts,
    }
}

/// Classifies a provider error by its HTTP status and Azure error code.
fn provider(e: azure_core::Error) -> Error {
    let ErrorKind::HttpResponse { status, error_code } = e.kind() else {
        return Error::Unavailable(e.to_string());
    };
    let code = error_code.clone().unwrap_or_default();
    match u16::from(*status) {
        404 => Error::NoSuchKey,
        412 => Error::PreconditionFailed("the condition did not hold at the provider"),
        409 if code == "BlobAlreadyExists" => {
            Error::PreconditionFailed("the condition did not hold at the provider")
        }
        416 => Error::InvalidRange,
        503 if code == "ServerBusy" => Error::SlowDown,
        s if s >= 500 => Error::Unavailable(format!("the provider answered {s} {code}")),
        401 | 403 => Error::Backend(format!("the provider refused Drive's credentials ({code})")),
        s => Error::Backend(format!("the provider answered {s} {code}")),
    }
}

#[cfg(test)]
mod tests {
    use azure_core::SeekableStream as _;
    use futures::io::AsyncReadExt as _;

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> BodyStream {
        let chunks: Vec<std::io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_once_body_is_read_once_through_any_clone() {
        let mut once = OnceBody::new(body(&[b"abc", b"defg"]), 7);
        assert_eq!(once.len(), 7);
        once.reset().await.expect("nothing was read yet");
        let mut out = Vec::new();
        once.clone().read_to_end(&mut out).await.expect("read");
        assert_eq!(out, b"abcdefg");
        assert!(once.reset().await.is_err(), "a retry cannot send it again");
    }

    #[tokio::test]
    async fn a_once_body_of_another_length_than_declared_fails() {
        for (chunks, declared) in [
            (&[b"abc".as_slice()][..], 4),
            (&[b"abcde".as_slice()][..], 4),
        ] {
            let mut out = Vec::new();
            let read = OnceBody::new(body(chunks), declared)
                .read_to_end(&mut out)
                .await;
            assert!(read.is_err(), "{chunks:?} declared {declared}");
        }
    }

    #[test]
    fn a_put_blobs_etag_is_drives_md5_or_else_azures() {
        // MD5 of the empty body.
        let azure = azure_storage::ConsistencyMD5::decode("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap();
        assert_eq!(
            etag_of(Some(&azure), String::new()).unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(etag_of(Some(&azure), "drive".into()).unwrap(), "drive");
        assert!(etag_of(None, String::new()).is_err());
    }
}
