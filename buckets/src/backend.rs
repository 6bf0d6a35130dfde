//! The one trait every storage backend implements.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::{
    BodyInfo, BucketInfo, BucketName, ByteRange, CompletedPart, ListPage, ListQuery, ObjectAttrs,
    ObjectInfo, ObjectKey, PartInfo, PartsPage, PutOptions, Result, UploadsPage, UploadsQuery,
    WriteCondition,
};

/// An object body in flight: a stream of chunks. An error item aborts the write that consumes it.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// The storage operations an S3 front door needs.
///
/// Contract for writes: an object (or part) becomes visible only after its whole body has
/// been read without error and the [`BodyInfo::seal`] accepted it; until then, readers see
/// the previous version, and a failed or cancelled write leaves nothing behind.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Checks that the store can take writes now; the error says why not (for `/readyz`).
    async fn check_ready(&self) -> Result<()>;

    /// Creates an empty bucket.
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()>;

    /// Describes a bucket, or fails with [`crate::Error::NoSuchBucket`].
    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo>;

    /// Deletes an empty bucket (in-progress uploads in it are aborted).
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()>;

    /// Lists all buckets by name.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;

    /// Writes an object from a streamed body.
    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo>;

    /// Reads an object, or a byte range of it. The body belongs to the same version as the info.
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, BodyStream)>;

    /// Describes an object.
    async fn head_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectInfo>;

    /// Deletes an object; deleting a missing key succeeds.
    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()>;

    /// Copies an object. `attrs: None` keeps the source's attributes (S3's `COPY` directive);
    /// `source_etag` makes the copy fail with a precondition error unless the source still
    /// has that ETag when it is read.
    async fn copy_object(
        &self,
        src: (&BucketName, &ObjectKey),
        dst: (&BucketName, &ObjectKey),
        attrs: Option<ObjectAttrs>,
        condition: Option<WriteCondition>,
        source_etag: Option<&str>,
    ) -> Result<ObjectInfo>;

    /// Lists keys of a bucket in S3 order.
    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage>;

    /// Starts a multipart upload and returns its id.
    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        attrs: ObjectAttrs,
    ) -> Result<String>;

    /// Stores (or replaces) one part of an upload.
    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part: u32,
        body: BodyStream,
        info: BodyInfo,
    ) -> Result<PartInfo>;

    /// Lists the parts of an upload after `marker`.
    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        marker: u32,
        max_parts: usize,
    ) -> Result<PartsPage>;

    /// Assembles the named parts into the object; the upload ends.
    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo>;

    /// Abandons an upload and frees its parts.
    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()>;

    /// Lists in-progress uploads of a bucket.
    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage>;
}
