//! The GCS backend: Drive over Google Cloud Storage, through gcloud-storage (JSON API).
//!
//! Drive's buckets are prefixes of one GCS bucket (see [`crate::cloud`]). A PUT is one
//! upload straight to the object's name, carrying the content headers, Drive's description
//! (checksums, user metadata) and the write's condition as `ifGenerationMatch`; the ETag of a
//! single PUT is the MD5 GCS computes, so the description does not repeat it. Bodies up to
//! [`BUFFER_MAX`] are verified before they are sent; larger ones stream with their last chunk
//! held back until verified (a refused or cut upload request stores nothing), and checksums
//! computed along the way are then written with one metadata patch of that generation.
//! Multipart parts are objects of their own under the upload's prefix (their ETag is the MD5
//! GCS computes), composed in a tree (at most 32 sources per call) on completion; the upload
//! is a record object. No multipart state lives in Drive. Bucket records read in the last
//! [`crate::cloud::known::KNOWN_FOR`] are not read again.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::buckets::get::GetBucketRequest;
use gcloud_storage::http::objects::compose::{ComposeObjectRequest, ComposingTargets};
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::patch::PatchObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::{Object, SourceObjects};

use crate::cloud::known::KnownBuckets;
use crate::cloud::staged::{self, DESCRIPTION, Description, UploadRecord};
use crate::cloud::{self, Layout, ProviderPage};
use crate::{
    Backend, BodyInfo, BodyStream, BucketInfo, BucketName, ByteRange, CompletedPart, Error,
    ListPage, ListQuery, ObjectAttrs, ObjectInfo, ObjectKey, ObjectSummary, PartInfo, PartsPage,
    PutOptions, Result, UploadSummary, UploadsPage, UploadsQuery, WriteCondition, multipart_etag,
    select_parts,
};

/// Bodies of a PUT up to this size are received and verified in full, then sent with their
/// whole description in one upload; larger ones stream (memory stays bounded).
const BUFFER_MAX: usize = 1024 * 1024;
/// Most sources one compose call takes.
const COMPOSE_MAX: usize = 32;
/// Metadata name of an upload record.
const UPLOAD: &str = "drive-upload";

/// Where the GCS backend stores data and how it signs in.
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// JSON API endpoint, e.g. an emulator's `http://127.0.0.1:4443`; `None` for Google.
    pub endpoint: Option<String>,
    /// The one GCS bucket that holds every Drive bucket.
    pub bucket: String,
    /// Prefix inside it.
    pub root: String,
    /// A service account key file; without it, Google's default credentials are used, or no
    /// credentials at all when `endpoint` names an emulator.
    pub credentials_file: Option<String>,
}

/// Drive's buckets inside one GCS bucket.
pub struct GcsBackend {
    client: Client,
    bucket: String,
    layout: Layout,
    known: KnownBuckets,
}

impl GcsBackend {
    /// Connects and checks that the bucket exists and the credentials are accepted.
    pub async fn connect(settings: GcsSettings) -> Result<Self> {
        let mut config = ClientConfig::default();
        if let Some(endpoint) = &settings.endpoint {
            config.storage_endpoint = endpoint.trim_end_matches('/').to_owned();
        }
        let config = match (&settings.credentials_file, &settings.endpoint) {
            (Some(path), _) => {
                let file = gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile::new_from_file(path.clone())
                    .await
                    .map_err(|e| Error::Backend(format!("cannot read the GCS credentials {path}: {e}")))?;
                config
                    .with_credentials(file)
                    .await
                    .map_err(|e| Error::Backend(format!("GCS credentials refused: {e}")))?
            }
            (None, Some(_)) => config.anonymous(),
            (None, None) => config
                .with_auth()
                .await
                .map_err(|e| Error::Backend(format!("no Google credentials: {e}")))?,
        };
        let backend = Self {
            client: Client::new(config),
            bucket: settings.bucket,
            layout: Layout::new(&settings.root),
            known: KnownBuckets::default(),
        };
        backend.check_ready().await?;
        Ok(backend)
    }

    /// `NoSuchBucket` unless the bucket exists: reads its record, unless this replica has
    /// seen the bucket lately (see [`KnownBuckets`]).
    async fn check_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.known
            .check(bucket, async { self.head_bucket(bucket).await.map(drop) })
            .await
    }

    fn get_request(&self, name: String) -> GetObjectRequest {
        GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name,
            ..Default::default()
        }
    }

    async fn object(&self, name: String) -> Result<Object> {
        self.client
            .get_object(&self.get_request(name))
            .await
            .map_err(provider)
    }

    /// The object under `name`, or `None`.
    async fn find(&self, name: String) -> Result<Option<Object>> {
        match self.object(name).await {
            Ok(o) => Ok(Some(o)),
            Err(Error::NoSuchKey) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads a small object with metadata; `only_new` makes it fail if the name exists.
    async fn put_small(
        &self,
        name: String,
        metadata: HashMap<String, String>,
        only_new: bool,
    ) -> Result<Object> {
        let req = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: only_new.then_some(0),
            ..Default::default()
        };
        let object = Object {
            name,
            metadata: Some(metadata),
            ..Default::default()
        };
        self.client
            .upload_object(
                &req,
                Vec::<u8>::new(),
                &UploadType::Multipart(Box::new(object)),
            )
            .await
            .map_err(provider)
    }

    /// Streams a verified body into `object` (its name, content headers and metadata) with
    /// the request's precondition; returns the stored object with what was verified.
    /// Nothing is stored when the body is refused or the upload fails: the multipart body's
    /// closing boundary follows the last chunk, which the seal releases only once it
    /// accepted the body, and a cut upload request creates nothing at GCS.
    async fn upload(
        &self,
        req: &UploadObjectRequest,
        object: Object,
        body: BodyStream,
        info: BodyInfo,
    ) -> Result<(Object, cloud::Verified)> {
        let (stream, outcome) = cloud::sealing(body, info.seal, info.md5_needed);
        let name = object.name.clone();
        let result = self
            .client
            .upload_streamed_object(req, stream, &UploadType::Multipart(Box::new(object)))
            .await;
        match (result, outcome.take()) {
            (Ok(o), Some(Ok(v))) => Ok((o, v)),
            (Ok(o), outcome) => {
                // Not expected (see above); should a provider commit anyway, only what it
                // committed goes, not a newer write of the name.
                self.remove_generation(name, o.generation).await;
                Err(match outcome {
                    Some(Err(e)) => e,
                    _ => Error::Backend("the provider kept a body it did not read in full".into()),
                })
            }
            (Err(_), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(provider(e)),
        }
    }

    /// Sets on an object just uploaded what its upload could not carry: a description known
    /// only after the body (checksums), a content type the provider dropped. Only that
    /// generation is changed: a write of the name since then (GCS answers 412) or a delete
    /// (404) superseded this one, so there is nothing left to amend.
    async fn amend(
        &self,
        mut object: Object,
        content_type: Option<String>,
        description: Option<&Description>,
    ) -> Result<Object> {
        let metadata = description.map(|d| HashMap::from([(DESCRIPTION.to_owned(), d.encode())]));
        let req = PatchObjectRequest {
            bucket: self.bucket.clone(),
            object: object.name.clone(),
            if_generation_match: Some(object.generation),
            metadata: Some(Object {
                content_type: content_type.clone(),
                metadata: metadata.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.client.patch_object(&req).await {
            Ok(_) => {}
            // fake-gcs-server answers a patch with its own form of the object, which the
            // crate cannot read; the status was a success, so the patch was applied.
            Err(GcsError::HttpClient(e)) if e.is_decode() => {}
            Err(e) => match provider(e) {
                Error::PreconditionFailed(_) | Error::NoSuchKey => {}
                e => return Err(e),
            },
        }
        if content_type.is_some() {
            object.content_type = content_type;
        }
        if metadata.is_some() {
            object.metadata = metadata;
        }
        Ok(object)
    }

    /// Deletes an object, logging (not failing) when it cannot: used for temporary objects.
    async fn remove(&self, name: String) {
        if let Err(e) = self.delete(name.clone()).await {
            tracing::warn!(object = %name, error = %e, "a temporary object could not be deleted");
        }
    }

    /// Deletes one generation of an object, logging (not failing) when it cannot.
    async fn remove_generation(&self, name: String, generation: i64) {
        let req = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.clone(),
            if_generation_match: Some(generation),
            ..Default::default()
        };
        match self.client.delete_object(&req).await.map_err(provider) {
            Ok(()) | Err(Error::NoSuchKey | Error::PreconditionFailed(_)) => {}
            Err(e) => {
                tracing::warn!(object = %name, error = %e, "an unverified object could not be deleted");
            }
        }
    }

    async fn delete(&self, name: String) -> Result<()> {
        let req = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name,
            ..Default::default()
        };
        match self.client.delete_object(&req).await.map_err(provider) {
            Ok(()) | Err(Error::NoSuchKey) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Composes `sources` (in order, each pinned to its generation) into `destination`,
    /// in a tree of calls of at most [`COMPOSE_MAX`] sources; intermediate objects are
    /// deleted afterwards.
    async fn compose(
        &self,
        sources: Vec<(String, i64)>,
        destination: Object,
        if_generation_match: Option<i64>,
    ) -> Result<Object> {
        let mut level = sources;
        let mut intermediates = Vec::new();
        let result = async {
            while level.len() > COMPOSE_MAX {
                let mut next = Vec::with_capacity(level.len().div_ceil(COMPOSE_MAX));
                for chunk in level.chunks(COMPOSE_MAX) {
                    let name = format!("{}{}", self.layout.temp_prefix(), crate::ids::new_id());
                    intermediates.push(name.clone());
                    let o = self
                        .compose_once(
                            chunk,
                            Object {
                                name,
                                ..Default::default()
                            },
                            None,
                        )
                        .await?;
                    next.push((o.name, o.generation));
                }
                level = next;
            }
            self.compose_once(&level, destination, if_generation_match)
                .await
        }
        .await;
        for name in intermediates {
            self.remove(name).await;
        }
        result
    }

    async fn compose_once(
        &self,
        sources: &[(String, i64)],
        destination: Object,
        if_generation_match: Option<i64>,
    ) -> Result<Object> {
        let req = ComposeObjectRequest {
            bucket: self.bucket.clone(),
            destination_object: destination.name.clone(),
            if_generation_match,
            composing_targets: ComposingTargets {
                destination: Some(destination),
                source_objects: sources
                    .iter()
                    .map(|(name, generation)| SourceObjects {
                        name: name.clone(),
                        generation: Some(*generation),
                        ..Default::default()
                    })
                    .collect(),
            },
            ..Default::default()
        };
        self.client.compose_object(&req).await.map_err(provider)
    }

    /// The generation a conditional write must match (0: must not exist), after checking the
    /// condition against the current object's ETag.
    async fn generation_for(
        &self,
        name: &str,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<i64>> {
        let Some(condition) = condition else {
            return Ok(None);
        };
        // ETags are Drive's, so Drive compares them; GCS then checks the generation with the
        // write (fake-gcs-server honours it on uploads, but ignores it on compose).
        let current = self.find(name.to_owned()).await?;
        let etag = current.as_ref().map(|o| describe(o).etag);
        condition.check(etag.as_deref())?;
        Ok(Some(current.map_or(0, |o| o.generation)))
    }

    /// Lists every object under `prefix`, page by page.
    async fn list_all(&self, prefix: String) -> Result<Vec<Object>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects(&ListObjectsRequest {
                    bucket: self.bucket.clone(),
                    prefix: Some(prefix.clone()),
                    page_token: token.take(),
                    ..Default::default()
                })
                .await
                .map_err(provider)?;
            all.extend(out.items.unwrap_or_default());
            match out.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// One page of the flat listing under `prefix`, after `after`.
    async fn list_page(
        &self,
        prefix: String,
        after: Option<String>,
        page_size: i32,
    ) -> Result<ProviderPage> {
        let out = self
            .client
            .list_objects(&ListObjectsRequest {
                bucket: self.bucket.clone(),
                prefix: Some(prefix),
                start_offset: after.clone(),
                max_results: Some(page_size),
                ..Default::default()
            })
            .await
            .map_err(provider)?;
        let objects = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|o| after.as_ref() != Some(&o.name))
            .map(|o| ObjectSummary {
                etag: describe(&o).etag,
                size: u64::try_from(o.size).unwrap_or(0),
                last_modified: time(&o),
                key: o.name,
            })
            .collect();
        Ok(ProviderPage {
            objects,
            truncated: out.next_page_token.is_some_and(|t| !t.is_empty()),
        })
    }

    /// An upload's record, or `NoSuchUpload`.
    async fn upload_record(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        let id = staged::upload_id(upload_id)?;
        let record = self
            .find(self.layout.upload_record(bucket, id))
            .await?
            .and_then(|o| upload_of(&o))
            .filter(|r| r.key == key.as_str());
        record.ok_or(Error::NoSuchUpload)
    }

    /// The parts of an upload: the latest object of each part number.
    async fn parts(&self, upload_id: &str) -> Result<Vec<(PartInfo, i64, String)>> {
        let mut parts: Vec<(PartInfo, i64, String)> = self
            .list_all(self.layout.parts_prefix(upload_id))
            .await?
            .into_iter()
            .filter_map(|o| {
                let info = PartInfo {
                    number: staged::part_number(&o.name)?,
                    etag: md5_of(&o).ok()?,
                    size: u64::try_from(o.size).unwrap_or(0),
                    last_modified: time(&o),
                    checksums: crate::Checksums::new(),
                };
                Some((info, o.generation, o.name))
            })
            .collect();
        parts.sort_by_key(|(p, _, _)| p.number);
        Ok(parts)
    }

    /// Deletes an upload's parts and its record.
    async fn discard_upload(&self, bucket: &BucketName, upload_id: &str) -> Result<()> {
        for (_, _, name) in self.parts(upload_id).await? {
            self.delete(name).await?;
        }
        self.delete(self.layout.upload_record(bucket, upload_id))
            .await
    }
}

#[async_trait::async_trait]
impl Backend for GcsBackend {
    async fn check_ready(&self) -> Result<()> {
        let req = GetBucketRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        match self.client.get_bucket(&req).await.map_err(provider) {
            Ok(_) => Ok(()),
            Err(Error::NoSuchKey) => Err(Error::Backend(format!(
                "the GCS bucket {:?} does not exist at the provider",
                self.bucket
            ))),
            Err(e) => Err(e),
        }
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        match self
            .put_small(self.layout.bucket_record(bucket), HashMap::new(), true)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::PreconditionFailed(_)) => Err(Error::BucketAlreadyExists),
            Err(e) => Err(e),
        }
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        match self.object(self.layout.bucket_record(bucket)).await {
            Ok(o) => Ok(BucketInfo {
                name: bucket.to_string(),
                created: time(&o),
            }),
            Err(Error::NoSuchKey) => Err(Error::NoSuchBucket),
            Err(e) => Err(e),
        }
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.known.forget(bucket);
        self.head_bucket(bucket).await?;
        let out = self
            .client
            .list_objects(&ListObjectsRequest {
                bucket: self.bucket.clone(),
                prefix: Some(self.layout.bucket_prefix(bucket)),
                max_results: Some(1),
                ..Default::default()
            })
            .await
            .map_err(provider)?;
        if !out.items.unwrap_or_default().is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        for record in self.list_all(self.layout.uploads_prefix(bucket)).await? {
            if let Some(id) = record.name.rsplit('/').next() {
                self.discard_upload(bucket, id).await?;
            }
        }
        let deleted = self.delete(self.layout.bucket_record(bucket)).await;
        self.known.forget(bucket);
        deleted
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let prefix = self.layout.registry_prefix();
        Ok(self
            .list_all(prefix.clone())
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = o.name.strip_prefix(&prefix)?.to_owned();
                Some(BucketInfo {
                    name,
                    created: time(&o),
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
        let if_generation_match = match &condition {
            None => None,
            // GCS (and fake-gcs-server) check an upload's precondition atomically with it.
            Some(WriteCondition::IfNoneExists) => Some(0),
            Some(c) => self.generation_for(&name, Some(c)).await?,
        };
        let req = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match,
            ..Default::default()
        };
        // No ETag: a single PUT's is the body's MD5, which GCS computes (see `describe`).
        let mut description = Description {
            etag: String::new(),
            checksums: crate::Checksums::new(),
            user_metadata: attrs.user_metadata.clone(),
            expires: attrs.expires.clone(),
            cache_control: None,
            content_disposition: None,
            parts: None,
        };
        let (head, rest) = read_up_to(body, BUFFER_MAX).await.map_err(Error::Body)?;
        let head = futures::stream::iter(head.into_iter().map(Ok));
        let (stored, late) = if let Some(rest) = rest {
            // A larger body streams; its checksums are known once it has been read.
            let object = destination(name, &attrs, &description);
            let (stored, verified) = self
                .upload(&req, object, Box::pin(head.chain(rest)), info)
                .await?;
            (stored, verified.checksums)
        } else {
            // The whole body is here: verified first, then sent with its whole description.
            let (stream, outcome) = cloud::sealing(Box::pin(head), info.seal, info.md5_needed);
            let chunks: std::io::Result<Vec<Bytes>> = stream.try_collect().await;
            let (chunks, verified) = match (chunks, outcome.take()) {
                (Ok(chunks), Some(Ok(verified))) => (chunks, verified),
                (_, Some(Err(e))) => return Err(e),
                (Err(e), _) => return Err(Error::Body(e)),
                (Ok(_), None) => {
                    return Err(Error::Body(std::io::Error::other(
                        "the body ended before it was verified",
                    )));
                }
            };
            description.checksums = verified.checksums;
            let object = destination(name, &attrs, &description);
            let stored = self
                .client
                .upload_object(
                    &req,
                    Bytes::from(chunks.concat()),
                    &UploadType::Multipart(Box::new(object)),
                )
                .await
                .map_err(provider)?;
            (stored, crate::Checksums::new())
        };
        // GCS keeps the content type of the upload's metadata; fake-gcs-server takes it from
        // the body's part, which the crate sends without one.
        let dropped_type = attrs
            .content_type
            .clone()
            .filter(|t| stored.content_type.as_ref() != Some(t));
        if late.is_empty() && dropped_type.is_none() {
            return Ok(info_of(&stored));
        }
        let description = (!late.is_empty()).then(|| {
            description.checksums = late;
            description
        });
        let stored = self
            .amend(stored, dropped_type, description.as_ref())
            .await?;
        Ok(info_of(&stored))
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, BodyStream)> {
        let name = self.layout.object(bucket, key)?;
        let found = match self.object(name.clone()).await {
            Ok(o) => o,
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                return Err(Error::NoSuchKey);
            }
            Err(e) => return Err(e),
        };
        let info = info_of(&found);
        let range = match range {
            Some(r) => {
                let (offset, len) = r.resolve(info.size)?;
                Range(Some(offset), Some(offset + len - 1))
            }
            None => Range::default(),
        };
        let req = GetObjectRequest {
            generation: Some(found.generation),
            ..self.get_request(name)
        };
        let stream = self
            .client
            .download_streamed_object(&req, &range)
            .await
            .map_err(provider)?;
        // The client's stream is not `Sync`; a task forwards it through a channel that is.
        let (mut tx, rx) = futures::channel::mpsc::channel(4);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(std::io::Error::other);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok((info, Box::pin(rx)))
    }

    async fn head_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectInfo> {
        match self.object(self.layout.object(bucket, key)?).await {
            Ok(o) => Ok(info_of(&o)),
            Err(Error::NoSuchKey) => {
                self.check_bucket(bucket).await?;
                Err(Error::NoSuchKey)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.check_bucket(bucket).await?;
        self.delete(self.layout.object(bucket, key)?).await
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
        let source = match self.object(self.layout.object(src.0, src.1)?).await {
            Ok(o) => o,
            Err(Error::NoSuchKey) => {
                self.check_bucket(src.0).await?;
                return Err(Error::NoSuchKey);
            }
            Err(e) => return Err(e),
        };
        let mut description = describe(&source);
        if source_etag.is_some_and(|want| want != description.etag) {
            return Err(Error::PreconditionFailed(
                "the source changed during the copy",
            ));
        }
        let attrs = match attrs {
            Some(attrs) => {
                description.user_metadata = attrs.user_metadata.clone();
                description.expires = attrs.expires.clone();
                attrs
            }
            None => info_of(&source).attrs,
        };
        let name = self.layout.object(dst.0, dst.1)?;
        let generation = self.generation_for(&name, condition.as_ref()).await?;
        let object = self
            .compose(
                vec![(source.name.clone(), source.generation)],
                destination(name, &attrs, &description),
                generation,
            )
            .await?;
        Ok(info_of(&object))
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
        self.layout.object(bucket, key)?;
        let id = crate::ids::new_id();
        let record = UploadRecord {
            key: key.to_string(),
            attrs,
            initiated_ms: staged::now_ms(),
        };
        self.put_small(
            self.layout.upload_record(bucket, &id),
            HashMap::from([(UPLOAD.to_owned(), staged::encode_value(&record))]),
            true,
        )
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
        let req = UploadObjectRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        let object = Object {
            name: self.layout.part_record(upload_id, part),
            ..Default::default()
        };
        let (uploaded, verified) = self.upload(&req, object, body, info).await?;
        Ok(PartInfo {
            number: part,
            etag: md5_of(&uploaded)?,
            size: verified.len,
            last_modified: time(&uploaded),
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
            .into_iter()
            .map(|(p, _, _)| p)
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
        let infos: Vec<PartInfo> = stored.iter().map(|(p, _, _)| p.clone()).collect();
        let chosen = select_parts(parts, &infos)?;
        let sources: Vec<(String, i64)> = chosen
            .iter()
            .map(|c| {
                let (_, generation, name) = stored
                    .iter()
                    .find(|(p, _, _)| p.number == c.number)
                    .expect("chosen parts are stored");
                (name.clone(), *generation)
            })
            .collect();
        let description = Description {
            etag: multipart_etag(chosen.iter().map(|c| c.etag.as_str())),
            checksums: crate::Checksums::new(),
            user_metadata: record.attrs.user_metadata.clone(),
            expires: record.attrs.expires.clone(),
            cache_control: None,
            content_disposition: None,
            parts: Some(u32::try_from(chosen.len()).expect("at most 10000 parts")),
        };
        let name = self.layout.object(bucket, key)?;
        let generation = self.generation_for(&name, condition.as_ref()).await?;
        let object = self
            .compose(
                sources,
                destination(name, &record.attrs, &description),
                generation,
            )
            .await?;
        self.discard_upload(bucket, upload_id).await?;
        Ok(info_of(&object))
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
        let uploads: Vec<UploadSummary> = self
            .list_all(self.layout.uploads_prefix(bucket))
            .await?
            .into_iter()
            .filter_map(|o| {
                let record = upload_of(&o)?;
                Some(UploadSummary {
                    key: record.key,
                    upload_id: o.name.rsplit('/').next()?.to_owned(),
                    initiated: staged::from_ms(record.initiated_ms),
                })
            })
            .collect();
        crate::list::sorted_uploads_page(uploads, query)
    }
}

/// Reads `body` until it ends or more than `max` bytes came: the chunks read, and the rest
/// of the body unless it ended.
async fn read_up_to(
    mut body: BodyStream,
    max: usize,
) -> std::io::Result<(Vec<Bytes>, Option<BodyStream>)> {
    let mut chunks = Vec::new();
    let mut len = 0;
    while len <= max {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                len += chunk.len();
                chunks.push(chunk);
            }
            None => return Ok((chunks, None)),
        }
    }
    Ok((chunks, Some(body)))
}

/// The object to write or compose into: its name, content headers and Drive's description.
fn destination(name: String, attrs: &ObjectAttrs, description: &Description) -> Object {
    Object {
        name,
        content_type: attrs.content_type.clone(),
        content_encoding: attrs.content_encoding.clone(),
        content_disposition: attrs.content_disposition.clone(),
        content_language: attrs.content_language.clone(),
        cache_control: attrs.cache_control.clone(),
        metadata: Some(HashMap::from([(
            DESCRIPTION.to_owned(),
            description.encode(),
        )])),
        ..Default::default()
    }
}

/// Drive's description of an object (empty if it has none). A description without an ETag
/// is that of a single PUT uploaded directly, whose ETag is the MD5 GCS computed; objects
/// made by compose (multipart, copies, conditional writes of old) carry theirs, as GCS
/// gives composite objects no MD5.
fn describe(o: &Object) -> Description {
    let mut d: Description = o
        .metadata
        .as_ref()
        .and_then(|m| m.get(DESCRIPTION))
        .and_then(|v| Description::decode(v))
        .unwrap_or_default();
    if d.etag.is_empty() {
        d.etag = md5_of(o).unwrap_or_default();
    }
    d
}

/// An upload record kept in an object's metadata.
fn upload_of(o: &Object) -> Option<UploadRecord> {
    staged::decode_value(o.metadata.as_ref()?.get(UPLOAD)?)
}

fn info_of(o: &Object) -> ObjectInfo {
    let d = describe(o);
    ObjectInfo {
        size: u64::try_from(o.size).unwrap_or(0),
        etag: d.etag,
        last_modified: time(o),
        attrs: ObjectAttrs {
            content_type: o.content_type.clone(),
            content_encoding: o.content_encoding.clone(),
            content_disposition: o.content_disposition.clone(),
            content_language: o.content_language.clone(),
            cache_control: o.cache_control.clone(),
            expires: d.expires,
            user_metadata: d.user_metadata,
        },
        checksums: d.checksums,
        parts: d.parts,
    }
}

/// The MD5 GCS computed for an uploaded object, as hex.
fn md5_of(o: &Object) -> Result<String> {
    let b64 = o
        .md5_hash
        .as_deref()
        .ok_or_else(|| Error::Backend("the provider gave no MD5 for an upload".into()))?;
    let bin = base64_simd::STANDARD
        .decode_to_vec(b64.as_bytes())
        .map_err(|_| Error::Backend("the provider gave a malformed MD5".into()))?;
    Ok(hex_simd::encode_to_string(bin, hex_simd::AsciiCase::Lower))
}

fn time(o: &Object) -> SystemTime {
    o.updated
        .or(o.time_created)
        .map_or(SystemTime::UNIX_EPOCH, SystemTime::from)
}

/// Classifies a provider error by its HTTP status.
fn provider(e: GcsError) -> Error {
    match &e {
        GcsError::Response(r) => match r.code {
            404 => Error::NoSuchKey,
            412 => Error::PreconditionFailed("the condition did not hold at the provider"),
            416 => Error::InvalidRange,
            429 => Error::SlowDown,
            401 | 403 => Error::Backend(format!(
                "the provider refused Drive's credentials ({}: {})",
                r.code, r.message
            )),
            s if s >= 500 => {
                Error::Unavailable(format!("the provider answered {s}: {}", r.message))
            }
            s => Error::Backend(format!("the provider answered {s}: {}", r.message)),
        },
        GcsError::HttpClient(_) | GcsError::HttpMiddleware(_) | GcsError::RawResponse(..) => {
            Error::Unavailable(e.to_string())
        }
        _ => Error::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_map_to_meaning() {
        let response = |code| {
            GcsError::Response(gcloud_storage::http::error::ErrorResponse {
                code,
                errors: Vec::new(),
                message: "m".into(),
            })
        };
        assert!(matches!(provider(response(404)), Error::NoSuchKey));
        assert!(matches!(
            provider(response(412)),
            Error::PreconditionFailed(_)
        ));
        assert!(matches!(provider(response(503)), Error::Unavailable(_)));
        assert!(matches!(provider(response(429)), Error::SlowDown));
        assert!(matches!(provider(response(403)), Error::Backend(_)));
    }

    #[test]
    fn a_description_without_etag_takes_the_md5_of_gcs() {
        let mut d = Description::default();
        let mut o = Object {
            md5_hash: Some("XUFAKrxLKna5cZ2REBfFkg==".into()),
            metadata: Some(HashMap::from([(DESCRIPTION.to_owned(), d.encode())])),
            ..Default::default()
        };
        assert_eq!(describe(&o).etag, "5d41402abc4b2a76b9719d911017c592");
        d.etag = "abc-2".into();
        o.metadata = Some(HashMap::from([(DESCRIPTION.to_owned(), d.encode())]));
        assert_eq!(
            describe(&o).etag,
            "abc-2",
            "a composed object keeps its own"
        );
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_a_limit() {
        let body = |n: usize| -> BodyStream {
            Box::pin(futures::stream::iter(
                (0..n).map(|_| Ok(Bytes::from_static(b"abcd"))),
            ))
        };
        let (head, rest) = read_up_to(body(2), 8).await.unwrap();
        assert_eq!((head.len(), rest.is_none()), (2, true), "ended within");
        let (head, rest) = read_up_to(body(5), 8).await.unwrap();
        assert_eq!(head.len(), 3);
        assert_eq!(rest.unwrap().count().await, 2);
    }
}
