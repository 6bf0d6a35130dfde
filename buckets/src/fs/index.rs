//! The metadata index: buckets, objects, uploads and parts in one crash-safe, ordered
//! key-value file (redb). Keys sort in S3's byte order, so a page of a listing is a range
//! scan, never a walk of the whole store.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::blobs::BlobRef;
use crate::{
    BucketInfo, Checksums, Error, ListPage, ListQuery, ObjectAttrs, ObjectInfo, ObjectSummary,
    PartInfo, Result, UploadSummary, UploadsPage, UploadsQuery, common_prefix, prefix_successor,
};

/// Bucket name → creation time (ms since the epoch).
const BUCKETS: TableDefinition<&str, u64> = TableDefinition::new("buckets");
/// `"<bucket>/<key>"` → [`ObjectRecord`] as JSON.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// `"<bucket>/<key>\0<upload id>"` → [`UploadRecord`] as JSON.
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// `"<upload id>/<part number, 5 digits>"` → [`PartRecord`] as JSON.
const PARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("parts");
/// `"<bucket>/<key>"` → the body of a small object kept in the index (see [`ObjectRecord::inline`]).
const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline");

/// Most write transactions committed together (group commit).
const MAX_BATCH: usize = 256;

/// Version of the record formats below; bump with a migration when they change.
pub const FORMAT: u32 = 1;

/// One object version as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Format version.
    pub v: u32,
    /// Size in bytes.
    pub size: u64,
    /// ETag, unquoted.
    pub etag: String,
    /// Write time, ms since the epoch.
    pub mtime: u64,
    /// Client attributes.
    #[serde(default)]
    pub attrs: ObjectAttrs,
    /// Verified checksums.
    #[serde(default)]
    pub checksums: Checksums,
    /// Parts count for multipart objects.
    #[serde(default)]
    pub parts: Option<u32>,
    /// The data, in order.
    pub blobs: Vec<BlobRef>,
    /// The body lives in the index itself (small objects: one commit, no files).
    #[serde(default)]
    pub inline: bool,
}

impl ObjectRecord {
    /// The object's description for callers.
    pub fn info(&self) -> ObjectInfo {
        ObjectInfo {
            size: self.size,
            etag: self.etag.clone(),
            last_modified: from_ms(self.mtime),
            attrs: self.attrs.clone(),
            checksums: self.checksums.clone(),
            parts: self.parts,
        }
    }
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Format version.
    pub v: u32,
    /// Creation time, ms since the epoch.
    pub initiated: u64,
    /// Attributes the completed object gets.
    pub attrs: ObjectAttrs,
}

/// One uploaded part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    /// Format version.
    pub v: u32,
    /// MD5 hex of the part.
    pub etag: String,
    /// Upload time, ms since the epoch.
    pub mtime: u64,
    /// The part's data.
    pub blob: BlobRef,
    /// Checksums verified on upload.
    #[serde(default)]
    pub checksums: Checksums,
}

/// Current time in ms since the epoch.
pub fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

fn upload_key(bucket: &str, key: &str, upload_id: &str) -> String {
    format!("{bucket}/{key}\0{upload_id}")
}

fn part_key(upload_id: &str, part: u32) -> String {
    format!("{upload_id}/{part:05}")
}

/// The part number of a [`part_key`].
fn part_number(part_key: &str) -> u32 {
    part_key
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// The index file, and the thread that commits its writes.
pub struct Index {
    db: Arc<Database>,
    jobs: Sender<Job>,
}

/// Tells one writer how its batch ended.
type Report = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Applies one write inside the shared transaction.
type Apply = Box<dyn FnOnce(&WriteTransaction) -> (bool, Report) + Send>;

/// One write queued for the committer: `run` applies it inside the shared transaction and
/// returns whether it failed internally (which aborts the batch) and how to report the
/// outcome; `fail` reports an error when no transaction could be started.
struct Job {
    run: Apply,
    fail: Box<dyn FnOnce(String) + Send>,
}

/// Commits queued writes: everything waiting when a commit starts shares it, so concurrent
/// writers pay for one fsync together. Each job checks its conditions before it changes
/// anything, so a job that fails with a semantic error leaves the transaction untouched.
fn committer(db: &Database, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                for job in batch {
                    (job.fail)(e.to_string());
                }
                continue;
            }
        };
        let mut broken = false;
        let mut reports = Vec::with_capacity(batch.len());
        for job in batch {
            match catch_unwind(AssertUnwindSafe(|| (job.run)(&txn))) {
                Ok((internal, report)) => {
                    broken |= internal;
                    reports.push(report);
                }
                Err(_) => broken = true,
            }
        }
        let outcome = if broken {
            drop(txn.abort());
            Err("a write in this batch failed; the batch was rolled back".to_owned())
        } else {
            txn.commit().map_err(|e| e.to_string())
        };
        for report in reports {
            report(outcome.clone());
        }
    }
}

/// Blobs that a committed change no longer references; the caller deletes them.
pub type Garbage = Vec<BlobRef>;

impl Index {
    /// Opens (creating if needed) the index at `path`. redb recovers a torn file by itself.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(32 * 1024 * 1024)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(BUCKETS)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(UPLOADS)?;
        txn.open_table(PARTS)?;
        txn.open_table(INLINE)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel();
        let for_thread = Arc::clone(&db);
        std::thread::Builder::new()
            .name("index-commit".into())
            .spawn(move || committer(&for_thread, &queue))?;
        Ok(Self { db, jobs })
    }

    /// Runs `f` in a write transaction shared with concurrent writers and returns its result
    /// once the transaction is durable.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel::<Result<T>>(1);
        let fail_tx = tx.clone();
        let job = Job {
            run: Box::new(move |txn| {
                let out = f(txn);
                let internal = matches!(out, Err(Error::Index(_) | Error::Io(_)));
                let report: Box<dyn FnOnce(Result<(), String>) + Send> =
                    Box::new(move |committed| {
                        let _ = tx.send(committed.map_err(Error::Index).and(out));
                    });
                (internal, report)
            }),
            fail: Box::new(move |e| {
                let _ = fail_tx.send(Err(Error::Index(e)));
            }),
        };
        let stopped = || Error::Index("the index writer has stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Runs an empty write through the committer: fails if the index cannot commit.
    pub fn ping(&self) -> Result<()> {
        self.write(|_| Ok(()))
    }

    /// Every blob id the index references.
    pub fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>> {
        let txn = self.db.begin_read()?;
        let mut ids = std::collections::HashSet::new();
        for row in txn.open_table(OBJECTS)?.iter()? {
            let rec: ObjectRecord = decode(row?.1.value())?;
            ids.extend(rec.blobs.into_iter().map(|b| b.id));
        }
        for row in txn.open_table(PARTS)?.iter()? {
            let rec: PartRecord = decode(row?.1.value())?;
            ids.insert(rec.blob.id);
        }
        Ok(ids)
    }

    /// Records a new bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let bucket = bucket.to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(BUCKETS)?;
            if t.get(bucket.as_str())?.is_some() {
                return Err(Error::BucketAlreadyExists);
            }
            t.insert(bucket.as_str(), now_ms())?;
            Ok(())
        })
    }

    /// Describes a bucket.
    pub fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let txn = self.db.begin_read()?;
        let created = txn
            .open_table(BUCKETS)?
            .get(bucket)?
            .ok_or(Error::NoSuchBucket)?
            .value();
        Ok(BucketInfo {
            name: bucket.to_owned(),
            created: from_ms(created),
        })
    }

    /// All buckets by name.
    pub fn buckets(&self) -> Result<Vec<BucketInfo>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BUCKETS)?;
        t.iter()?
            .map(|row| {
                let (name, created) = row?;
                Ok(BucketInfo {
                    name: name.value().to_owned(),
                    created: from_ms(created.value()),
                })
            })
            .collect()
    }

    /// Removes an empty bucket and aborts its uploads.
    pub fn delete_bucket(&self, bucket: &str) -> Result<Garbage> {
        let bucket = bucket.to_owned();
        self.write(move |txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(bucket.as_str())?.is_none() {
                return Err(Error::NoSuchBucket);
            }
            let start = format!("{bucket}/");
            let end = prefix_successor(&start).expect("a bucket prefix has a successor");
            if txn
                .open_table(OBJECTS)?
                .range(start.as_str()..end.as_str())?
                .next()
                .is_some()
            {
                return Err(Error::BucketNotEmpty);
            }
            let mut uploads = txn.open_table(UPLOADS)?;
            let ids: Vec<String> = uploads
                .range(start.as_str()..end.as_str())?
                .map(|row| Ok(row?.0.value().to_owned()))
                .collect::<Result<_>>()?;
            let mut parts = txn.open_table(PARTS)?;
            let mut garbage = Vec::new();
            for full in ids {
                uploads.remove(full.as_str())?;
                let upload_id = full.rsplit('\0').next().unwrap_or_default();
                garbage.extend(remove_parts(&mut parts, upload_id)?);
            }
            buckets.remove(bucket.as_str())?;
            Ok(garbage)
        })
    }

    fn require_bucket(txn: &WriteTransaction, bucket: &str) -> Result<()> {
        match txn.open_table(BUCKETS)?.get(bucket)? {
            Some(_) => Ok(()),
            None => Err(Error::NoSuchBucket),
        }
    }

    /// Fails unless the bucket exists (a cheap check before a body is received).
    pub fn check_bucket(&self, bucket: &str) -> Result<()> {
        self.bucket(bucket).map(drop)
    }

    /// The current version of an object.
    pub fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket);
        }
        let t = txn.open_table(OBJECTS)?;
        let row = t
            .get(object_key(bucket, key).as_str())?
            .ok_or(Error::NoSuchKey)?;
        decode(row.value())
    }

    /// The current version of an object and, for an inline object, its body — read together.
    pub fn object_with_body(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Option<Vec<u8>>)> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket);
        }
        let k = object_key(bucket, key);
        let record: ObjectRecord = decode(
            txn.open_table(OBJECTS)?
                .get(k.as_str())?
                .ok_or(Error::NoSuchKey)?
                .value(),
        )?;
        if !record.inline {
            return Ok((record, None));
        }
        let body = txn
            .open_table(INLINE)?
            .get(k.as_str())?
            .map(|v| v.value().to_vec());
        match body {
            Some(body) => Ok((record, Some(body))),
            None => Err(Error::Index(format!(
                "the body of inline object {k:?} is missing"
            ))),
        }
    }

    /// Commits a new object version (with its body when inline), after `check` accepted the
    /// current one (if any). Returns the replaced version's blobs.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        body: Option<Vec<u8>>,
        check: impl FnOnce(Option<&ObjectRecord>) -> Result<()> + Send + 'static,
    ) -> Result<Garbage> {
        let value = encode(record)?;
        let (bucket, k) = (bucket.to_owned(), object_key(bucket, key));
        self.write(move |txn| {
            Self::require_bucket(txn, &bucket)?;
            let current = current(txn, &k)?;
            check(current.as_ref())?;
            store(txn, &k, &value, body.as_deref())?;
            Ok(current.map(|c| c.blobs).unwrap_or_default())
        })
    }

    /// Copies an inline object in one transaction. `None` when the source is no longer
    /// inline (it was replaced meanwhile); the caller copies its blobs instead.
    pub fn copy_inline(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
        attrs: Option<ObjectAttrs>,
        source_etag: String,
        check: impl FnOnce(Option<&ObjectRecord>) -> Result<()> + Send + 'static,
    ) -> Result<Option<(ObjectRecord, Garbage)>> {
        let (sk, dk, dst_bucket) = (
            object_key(src.0, src.1),
            object_key(dst.0, dst.1),
            dst.0.to_owned(),
        );
        self.write(move |txn| {
            Self::require_bucket(txn, &dst_bucket)?;
            let Some(source) = current(txn, &sk)? else {
                return Err(Error::NoSuchKey);
            };
            if !source.inline {
                return Ok(None);
            }
            if source.etag != source_etag {
                return Err(Error::PreconditionFailed(
                    "the source changed during the copy",
                ));
            }
            let body = txn
                .open_table(INLINE)?
                .get(sk.as_str())?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            let previous = current(txn, &dk)?;
            check(previous.as_ref())?;
            let record = ObjectRecord {
                mtime: now_ms(),
                attrs: attrs.unwrap_or_else(|| source.attrs.clone()),
                ..source
            };
            store(txn, &dk, &encode(&record)?, Some(&body))?;
            Ok(Some((
                record,
                previous.map(|c| c.blobs).unwrap_or_default(),
            )))
        })
    }

    /// Replaces the attributes of an object in place (a copy onto itself).
    pub fn update_attrs(
        &self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        expect_etag: &str,
    ) -> Result<ObjectRecord> {
        let (bucket, k, expect_etag) = (
            bucket.to_owned(),
            object_key(bucket, key),
            expect_etag.to_owned(),
        );
        self.write(move |txn| {
            Self::require_bucket(txn, &bucket)?;
            let mut t = txn.open_table(OBJECTS)?;
            let mut rec: ObjectRecord =
                decode(t.get(k.as_str())?.ok_or(Error::NoSuchKey)?.value())?;
            if rec.etag != expect_etag {
                return Err(Error::PreconditionFailed(
                    "the object changed during the copy",
                ));
            }
            rec.attrs = attrs;
            rec.mtime = now_ms();
            t.insert(k.as_str(), encode(&rec)?.as_slice())?;
            Ok(rec)
        })
    }

    /// Deletes an object; returns its blobs.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<Garbage> {
        let (bucket, k) = (bucket.to_owned(), object_key(bucket, key));
        self.write(move |txn| {
            Self::require_bucket(txn, &bucket)?;
            let old = txn
                .open_table(OBJECTS)?
                .remove(k.as_str())?
                .map(|v| decode::<ObjectRecord>(v.value()))
                .transpose()?;
            if old.as_ref().is_some_and(|o| o.inline) {
                txn.open_table(INLINE)?.remove(k.as_str())?;
            }
            Ok(old.map(|o| o.blobs).unwrap_or_default())
        })
    }

    /// One page of a listing.
    pub fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket);
        }
        let t = txn.open_table(OBJECTS)?;
        let base = format!("{bucket}/");
        let end = prefix_successor(&format!("{base}{}", q.prefix))
            .expect("a bucket prefix has a successor");
        let mut from = format!("{base}{}", q.prefix);
        let mut exclusive = None;
        if let Some(after) = q
            .start_after
            .as_deref()
            .filter(|a| a.as_bytes() >= q.prefix.as_bytes())
        {
            from = format!("{base}{after}");
            exclusive = Some(from.clone());
        }
        let delimiter = q.delimiter.as_deref();
        let mut page = ListPage::default();
        let mut count = 0usize;
        'scan: loop {
            let mut rows = t.range(from.as_str()..end.as_str())?;
            loop {
                let Some(row) = rows.next() else { break 'scan };
                let (k, v) = row?;
                let full = k.value();
                if exclusive.as_deref() == Some(full) {
                    continue;
                }
                let key = &full[base.len()..];
                if count == q.max_keys {
                    page.next = page
                        .objects
                        .last()
                        .map(|o| o.key.clone())
                        .into_iter()
                        .chain(page.common_prefixes.last().cloned())
                        .max();
                    break 'scan;
                }
                if let Some(cp) = common_prefix(key, &q.prefix, delimiter) {
                    let cp = cp.to_owned();
                    let already = q
                        .start_after
                        .as_deref()
                        .is_some_and(|a| cp.as_bytes() <= a.as_bytes());
                    if !already {
                        page.common_prefixes.push(cp.clone());
                        count += 1;
                    }
                    match prefix_successor(&format!("{base}{cp}")) {
                        Some(next) => {
                            from = next;
                            exclusive = None;
                            continue 'scan;
                        }
                        None => break 'scan,
                    }
                }
                let rec: ObjectRecord = decode(v.value())?;
                page.objects.push(ObjectSummary {
                    key: key.to_owned(),
                    size: rec.size,
                    etag: rec.etag,
                    last_modified: from_ms(rec.mtime),
                });
                count += 1;
            }
        }
        Ok(page)
    }

    /// Records a new multipart upload.
    pub fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        attrs: ObjectAttrs,
    ) -> Result<()> {
        let rec = encode(&UploadRecord {
            v: FORMAT,
            initiated: now_ms(),
            attrs,
        })?;
        let (bucket, uk) = (bucket.to_owned(), upload_key(bucket, key, upload_id));
        self.write(move |txn| {
            Self::require_bucket(txn, &bucket)?;
            txn.open_table(UPLOADS)?
                .insert(uk.as_str(), rec.as_slice())?;
            Ok(())
        })
    }

    fn upload_in(
        txn: &WriteTransaction,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        Self::require_bucket(txn, bucket)?;
        let t = txn.open_table(UPLOADS)?;
        let row = t
            .get(upload_key(bucket, key, upload_id).as_str())?
            .ok_or(Error::NoSuchUpload)?;
        decode(row.value())
    }

    /// Fails unless the upload exists.
    pub fn check_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket);
        }
        match txn
            .open_table(UPLOADS)?
            .get(upload_key(bucket, key, upload_id).as_str())?
        {
            Some(_) => Ok(()),
            None => Err(Error::NoSuchUpload),
        }
    }

    /// Records a part, replacing an earlier one with the same number.
    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        rec: &PartRecord,
    ) -> Result<Garbage> {
        let value = encode(rec)?;
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(move |txn| {
            Self::upload_in(txn, &bucket, &key, &upload_id)?;
            let mut t = txn.open_table(PARTS)?;
            let old = t
                .insert(part_key(&upload_id, part).as_str(), value.as_slice())?
                .map(|v| decode::<PartRecord>(v.value()))
                .transpose()?;
            Ok(old.map(|o| vec![o.blob]).unwrap_or_default())
        })
    }

    /// Parts of an upload after `marker`, at most `max` (plus whether more follow).
    pub fn parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool)> {
        self.check_upload(bucket, key, upload_id)?;
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PARTS)?;
        let from = part_key(upload_id, marker + 1);
        let to = format!("{upload_id}0");
        let mut parts = Vec::new();
        for row in t.range(from.as_str()..to.as_str())? {
            let (k, v) = row?;
            if parts.len() == max {
                return Ok((parts, true));
            }
            let number = part_number(k.value());
            let rec: PartRecord = decode(v.value())?;
            parts.push(PartInfo {
                number,
                etag: rec.etag,
                size: rec.blob.len,
                last_modified: from_ms(rec.mtime),
                checksums: rec.checksums,
            });
        }
        Ok((parts, false))
    }

    /// Completes an upload: `assemble` gets the upload and all its parts (in order) and
    /// returns the new object and the part numbers it uses; everything else is released.
    pub fn complete(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        assemble: impl FnOnce(
            &UploadRecord,
            &[(u32, PartRecord)],
            Option<&ObjectRecord>,
        ) -> Result<ObjectRecord>
        + Send
        + 'static,
    ) -> Result<(ObjectRecord, Garbage)> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(move |txn| {
            let (bucket, key, upload_id) = (bucket.as_str(), key.as_str(), upload_id.as_str());
            let upload = Self::upload_in(txn, bucket, key, upload_id)?;
            let mut parts_t = txn.open_table(PARTS)?;
            let from = part_key(upload_id, 0);
            let to = format!("{upload_id}0");
            let mut parts = Vec::new();
            for row in parts_t.range(from.as_str()..to.as_str())? {
                let (k, v) = row?;
                parts.push((part_number(k.value()), decode::<PartRecord>(v.value())?));
            }
            let k = object_key(bucket, key);
            let current = current(txn, &k)?;
            let record = assemble(&upload, &parts, current.as_ref())?;
            store(txn, &k, &encode(&record)?, None)?;
            let used: std::collections::HashSet<&str> =
                record.blobs.iter().map(|b| b.id.as_str()).collect();
            let mut garbage: Garbage = parts
                .iter()
                .filter(|(_, p)| !used.contains(p.blob.id.as_str()))
                .map(|(_, p)| p.blob.clone())
                .collect();
            garbage.extend(current.map(|c| c.blobs).unwrap_or_default());
            drop(remove_parts(&mut parts_t, upload_id)?);
            txn.open_table(UPLOADS)?
                .remove(upload_key(bucket, key, upload_id).as_str())?;
            Ok((record, garbage))
        })
    }

    /// Aborts an upload; returns its parts' blobs.
    pub fn abort(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Garbage> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(move |txn| {
            Self::upload_in(txn, &bucket, &key, &upload_id)?;
            txn.open_table(UPLOADS)?
                .remove(upload_key(&bucket, &key, &upload_id).as_str())?;
            remove_parts(&mut txn.open_table(PARTS)?, &upload_id)
        })
    }

    /// One page of in-progress uploads.
    pub fn uploads(&self, bucket: &str, q: &UploadsQuery) -> Result<UploadsPage> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket);
        }
        let t = txn.open_table(UPLOADS)?;
        let base = format!("{bucket}/");
        let from = format!("{base}{}", q.prefix);
        let end = prefix_successor(&from).expect("a bucket prefix has a successor");
        let rows = t.range(from.as_str()..end.as_str())?.filter_map(|row| {
            let (k, v) = match row {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let (key, upload_id) = k.value()[base.len()..].rsplit_once('\0')?;
            let summary = decode::<UploadRecord>(v.value()).map(|rec| UploadSummary {
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
                initiated: from_ms(rec.initiated),
            });
            Some(summary)
        });
        crate::list::uploads_page(rows, q)
    }
}

/// The current record under an index key.
fn current(txn: &WriteTransaction, k: &str) -> Result<Option<ObjectRecord>> {
    txn.open_table(OBJECTS)?
        .get(k)?
        .map(|v| decode(v.value()))
        .transpose()
}

/// Writes an object record, and its body when inline (dropping an old inline body otherwise).
fn store(txn: &WriteTransaction, k: &str, record: &[u8], body: Option<&[u8]>) -> Result<()> {
    txn.open_table(OBJECTS)?.insert(k, record)?;
    let mut inline = txn.open_table(INLINE)?;
    match body {
        Some(body) => drop(inline.insert(k, body)?),
        None => drop(inline.remove(k)?),
    }
    Ok(())
}

fn remove_parts(parts: &mut Table<&str, &[u8]>, upload_id: &str) -> Result<Garbage> {
    let from = part_key(upload_id, 0);
    let to = format!("{upload_id}0");
    let mut garbage = Vec::new();
    for row in parts.extract_from_if(from.as_str()..to.as_str(), |_, _| true)? {
        let (_, v) = row?;
        garbage.push(decode::<PartRecord>(v.value())?.blob);
    }
    Ok(garbage)
}
