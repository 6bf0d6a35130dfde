//! The filesystem backend, Drive's embedded default.
//!
//! Layout under the data directory:
//! - `index.redb`: every bucket, object, upload and part, in one crash-safe ordered index;
//! - `blobs/<2 hex>/<id>`: immutable data files named by random ids (a key never becomes a path,
//!   so no key can escape the directory, and keys `a` and `a/b` coexist);
//!
//! A write streams into a new blob file under its final name, is fsynced (data, then the
//! directory) and only then committed to the index: no reader looks for a blob the index does
//! not reference, and a crash leaves at most an unreferenced blob, whole or partial, which the
//! next start deletes.
//! Bodies of at most [`INLINE_MAX`] bytes are kept in the index itself: one commit, no file.
//! Concurrent commits share one transaction (group commit).
//! Multipart parts are blobs too; completing an upload references them in order, so nothing is
//! copied. CopyObject hard-links the source's blobs.

mod blobs;
mod index;

use std::path::Path;
use std::sync::Arc;

use self::blobs::{BlobRef, Blobs, Received};
use self::index::{FORMAT, Index, ObjectRecord, PartRecord, now_ms};
use crate::{
    Backend, BodyInfo, BodyStream, BucketInfo, BucketName, ByteRange, CompletedPart, Error,
    ListPage, ListQuery, ObjectAttrs, ObjectInfo, ObjectKey, PartInfo, PartsPage, PutOptions,
    Result, Seal, UploadsPage, UploadsQuery, WriteCondition, multipart_etag, select_parts,
};

/// Bodies up to this size are stored in the index instead of a blob file.
pub const INLINE_MAX: usize = 64 * 1024;

/// A received, sealed body, not yet committed.
struct Sealed {
    blob: Option<BlobRef>,
    inline: Option<bytes::Bytes>,
    size: u64,
    md5: String,
    checksums: crate::Checksums,
}

/// How often a read retries when the version it found is replaced before its files open.
const READ_RETRIES: usize = 5;

/// Objects on a local filesystem.
#[derive(Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    blobs: Blobs,
}

impl FsBackend {
    /// Opens the store in `root` (created if missing), discards leftovers of interrupted
    /// writes and deletes blobs that no committed object or part references.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        let index = Index::open(&root.join("index.redb"))?;
        let blobs = Blobs::open(root)?;
        let referenced = index.referenced_blobs()?;
        let mut removed = 0usize;
        for id in blobs.all_ids()? {
            if !referenced.contains(&id) {
                blobs.remove_id(&id);
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "deleted blobs left by interrupted writes");
        }
        Ok(Self {
            inner: Arc::new(Inner { index, blobs }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    /// Commits a written blob with `commit`, or deletes it if the commit fails.
    async fn commit_blob<T: Send + 'static>(
        &self,
        blob: Option<BlobRef>,
        commit: impl FnOnce(&Index) -> Result<(T, Vec<BlobRef>)> + Send + 'static,
    ) -> Result<T> {
        self.blocking(move |inner| match commit(&inner.index) {
            Ok((out, garbage)) => {
                inner.blobs.remove(&garbage);
                Ok(out)
            }
            Err(e) => {
                inner.blobs.remove(blob.as_slice());
                Err(e)
            }
        })
        .await
    }

    /// Receives a body (inline when small and `inline_max` allows) and runs the seal.
    async fn receive(
        &self,
        body: BodyStream,
        seal: Option<Seal>,
        inline_max: usize,
    ) -> Result<Sealed> {
        let (blob, inline, md5) = match self.inner.blobs.receive(body, inline_max).await? {
            Received::Inline { body, md5 } if inline_max > 0 => (None, Some(body), md5),
            Received::Inline { body, .. } => {
                let written = self
                    .inner
                    .blobs
                    .write(Box::pin(futures::stream::iter([Ok(body)])))
                    .await?;
                (Some(written.blob), None, written.md5)
            }
            Received::Blob(written) => (Some(written.blob), None, written.md5),
        };
        let size = blob
            .as_ref()
            .map_or_else(|| inline.as_ref().map_or(0, |b| b.len() as u64), |b| b.len);
        match seal.map(|s| s(&md5)).transpose() {
            Ok(checksums) => Ok(Sealed {
                blob,
                inline,
                size,
                md5,
                checksums: checksums.unwrap_or_default(),
            }),
            Err(e) => {
                self.inner.blobs.remove(blob.as_slice());
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for FsBackend {
    async fn check_ready(&self) -> Result<()> {
        self.blocking(|i| {
            i.blobs.probe()?;
            i.index.ping()
        })
        .await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let b = bucket.to_string();
        self.blocking(move |i| i.index.create_bucket(&b)).await
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        self.inner.index.bucket(bucket.as_str())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        let b = bucket.to_string();
        self.blocking(move |i| {
            let garbage = i.index.delete_bucket(&b)?;
            i.blobs.remove(&garbage);
            Ok(())
        })
        .await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.index.buckets()
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        self.inner.index.check_bucket(bucket.as_str())?;
        let PutOptions {
            attrs,
            condition,
            body: BodyInfo { seal, .. },
        } = opts;
        let sealed = self.receive(body, seal, INLINE_MAX).await?;
        let record = ObjectRecord {
            v: FORMAT,
            size: sealed.size,
            etag: sealed.md5,
            mtime: now_ms(),
            attrs,
            checksums: sealed.checksums,
            parts: None,
            blobs: sealed.blob.iter().cloned().collect(),
            inline: sealed.inline.is_some(),
        };
        let info = record.info();
        let (b, k) = (bucket.to_string(), key.to_string());
        let inline = sealed.inline.map(|body| body.to_vec());
        self.commit_blob(sealed.blob, move |index| {
            let garbage = index.put_object(&b, &k, &record, inline, move |current| {
                check(condition.as_ref(), current)
            })?;
            Ok(((), garbage))
        })
        .await?;
        Ok(info)
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, BodyStream)> {
        for _ in 0..READ_RETRIES {
            let (record, body) = self
                .inner
                .index
                .object_with_body(bucket.as_str(), key.as_str())?;
            let (offset, len) = match range {
                Some(r) => r.resolve(record.size)?,
                None => (0, record.size),
            };
            if let Some(body) = body {
                return Ok((record.info(), blobs::read_inline(body, offset, len)));
            }
            match self.inner.blobs.open_all(&record.blobs) {
                Ok(files) => return Ok((record.info(), blobs::read_range(files, offset, len)?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Io(std::io::Error::other(
            "the object kept changing while it was being opened",
        )))
    }

    async fn head_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectInfo> {
        Ok(self
            .inner
            .index
            .object(bucket.as_str(), key.as_str())?
            .info())
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.blocking(move |i| {
            let garbage = i.index.delete_object(&b, &k)?;
            i.blobs.remove(&garbage);
            Ok(())
        })
        .await
    }

    async fn copy_object(
        &self,
        src: (&BucketName, &ObjectKey),
        dst: (&BucketName, &ObjectKey),
        attrs: Option<ObjectAttrs>,
        condition: Option<WriteCondition>,
        source_etag: Option<&str>,
    ) -> Result<ObjectInfo> {
        let (sb, sk) = (src.0.to_string(), src.1.to_string());
        let (db, dk) = (dst.0.to_string(), dst.1.to_string());
        let source_etag = source_etag.map(str::to_owned);
        self.blocking(move |i| {
            for _ in 0..READ_RETRIES {
                let source = i.index.object(&sb, &sk)?;
                if source_etag
                    .as_ref()
                    .is_some_and(|want| *want != source.etag)
                {
                    return Err(Error::PreconditionFailed(
                        "the source changed during the copy",
                    ));
                }
                if (sb.as_str(), sk.as_str()) == (db.as_str(), dk.as_str()) {
                    check(condition.as_ref(), Some(&source))?;
                    let attrs = attrs.clone().unwrap_or_else(|| source.attrs.clone());
                    return Ok(i.index.update_attrs(&db, &dk, attrs, &source.etag)?.info());
                }
                if source.inline {
                    let condition = condition.clone();
                    match i.index.copy_inline(
                        (&sb, &sk),
                        (&db, &dk),
                        attrs.clone(),
                        source.etag.clone(),
                        move |current| check(condition.as_ref(), current),
                    )? {
                        Some((record, garbage)) => {
                            i.blobs.remove(&garbage);
                            return Ok(record.info());
                        }
                        None => continue,
                    }
                }
                let mut linked = Vec::with_capacity(source.blobs.len());
                let mut replaced = false;
                for b in &source.blobs {
                    match i.blobs.link(b) {
                        Ok(l) => linked.push(l),
                        Err(e) => {
                            i.blobs.remove(&linked);
                            if e.kind() == std::io::ErrorKind::NotFound {
                                replaced = true;
                                break;
                            }
                            return Err(e.into());
                        }
                    }
                }
                if replaced {
                    continue;
                }
                let record = ObjectRecord {
                    v: FORMAT,
                    mtime: now_ms(),
                    attrs: attrs.clone().unwrap_or_else(|| source.attrs.clone()),
                    blobs: linked.clone(),
                    ..source
                };
                let condition = condition.clone();
                return match i.index.put_object(&db, &dk, &record, None, move |current| {
                    check(condition.as_ref(), current)
                }) {
                    Ok(garbage) => {
                        i.blobs.remove(&garbage);
                        Ok(record.info())
                    }
                    Err(e) => {
                        i.blobs.remove(&linked);
                        Err(e)
                    }
                };
            }
            Err(Error::Io(std::io::Error::other(
                "the source kept changing while it was being copied",
            )))
        })
        .await
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        self.inner.index.list(bucket.as_str(), query)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        attrs: ObjectAttrs,
    ) -> Result<String> {
        let upload_id = crate::ids::new_id();
        let (b, k, id) = (bucket.to_string(), key.to_string(), upload_id.clone());
        self.blocking(move |i| i.index.create_upload(&b, &k, &id, attrs))
            .await?;
        Ok(upload_id)
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
        let upload_id = upload(upload_id)?;
        self.inner
            .index
            .check_upload(bucket.as_str(), key.as_str(), upload_id)?;
        let Sealed {
            blob,
            md5,
            checksums,
            ..
        } = self.receive(body, info.seal, 0).await?;
        let blob = blob.expect("parts are always blobs");
        let record = PartRecord {
            v: FORMAT,
            etag: md5.clone(),
            mtime: now_ms(),
            blob: blob.clone(),
            checksums: checksums.clone(),
        };
        let info = PartInfo {
            number: part,
            etag: md5,
            size: blob.len,
            last_modified: std::time::SystemTime::now(),
            checksums,
        };
        let (b, k, id) = (bucket.to_string(), key.to_string(), upload_id.to_owned());
        self.commit_blob(Some(blob), move |index| {
            Ok(((), index.put_part(&b, &k, &id, part, &record)?))
        })
        .await?;
        Ok(info)
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        marker: u32,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let upload_id = upload(upload_id)?;
        let (parts, more) =
            self.inner
                .index
                .parts(bucket.as_str(), key.as_str(), upload_id, marker, max_parts)?;
        let next_marker = if more {
            parts.last().map(|p| p.number)
        } else {
            None
        };
        Ok(PartsPage { parts, next_marker })
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo> {
        let (b, k, id) = (
            bucket.to_string(),
            key.to_string(),
            upload(upload_id)?.to_owned(),
        );
        let requested = parts.to_vec();
        self.blocking(move |i| {
            let (record, garbage) =
                i.index
                    .complete(&b, &k, &id, move |upload, stored, current| {
                        check(condition.as_ref(), current)?;
                        let infos: Vec<PartInfo> = stored
                            .iter()
                            .map(|(n, p)| PartInfo {
                                number: *n,
                                etag: p.etag.clone(),
                                size: p.blob.len,
                                last_modified: std::time::SystemTime::UNIX_EPOCH,
                                checksums: p.checksums.clone(),
                            })
                            .collect();
                        let chosen = select_parts(&requested, &infos)?;
                        let by_number: std::collections::HashMap<u32, &BlobRef> =
                            stored.iter().map(|(n, p)| (*n, &p.blob)).collect();
                        let blobs: Vec<BlobRef> = chosen
                            .iter()
                            .map(|c| {
                                (*by_number.get(&c.number).expect("chosen parts are stored"))
                                    .clone()
                            })
                            .collect();
                        Ok(ObjectRecord {
                            v: FORMAT,
                            size: blobs.iter().map(|b| b.len).sum(),
                            etag: multipart_etag(chosen.iter().map(|c| c.etag.as_str())),
                            mtime: now_ms(),
                            attrs: upload.attrs.clone(),
                            checksums: crate::Checksums::default(),
                            parts: Some(u32::try_from(chosen.len()).expect("at most 10000 parts")),
                            blobs,
                            inline: false,
                        })
                    })?;
            i.blobs.remove(&garbage);
            Ok(record.info())
        })
        .await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        let (b, k, id) = (
            bucket.to_string(),
            key.to_string(),
            upload(upload_id)?.to_owned(),
        );
        self.blocking(move |i| {
            let garbage = i.index.abort(&b, &k, &id)?;
            i.blobs.remove(&garbage);
            Ok(())
        })
        .await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage> {
        self.inner.index.uploads(bucket.as_str(), query)
    }
}

/// An upload id as this backend issues them, or `NoSuchUpload`: ids are index keys, so a
/// crafted one must never reach the index.
fn upload(id: &str) -> Result<&str> {
    if crate::ids::is_id(id) {
        Ok(id)
    } else {
        Err(Error::NoSuchUpload)
    }
}

fn check(condition: Option<&WriteCondition>, current: Option<&ObjectRecord>) -> Result<()> {
    condition.map_or(Ok(()), |c| c.check(current.map(|r| r.etag.as_str())))
}
