//! Object data on disk: immutable files named by random ids.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

use crate::ids::{is_id, new_id};
use crate::{BodyStream, Error, Result};

/// Bodies up to this size are read in one go instead of streamed.
const SMALL_READ: u64 = 256 * 1024;
/// Size of each chunk streamed from disk.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks buffered between the network and the disk writer.
const WRITE_QUEUE: usize = 8;
/// Network reads smaller than this are gathered before they go to the disk writer, which
/// then wakes and writes once per this many bytes instead of once per read.
const WRITE_CHUNK: usize = 256 * 1024;

/// A piece of an object's data: one blob file, read whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob's id (32 hex digits).
    pub id: String,
    /// Its length in bytes.
    pub len: u64,
}

/// A body as received: small ones stay in memory (to be kept in the index), larger ones
/// are written to a blob.
pub enum Received {
    /// The whole body, at most the inline limit.
    Inline {
        /// The body.
        body: Bytes,
        /// Its MD5, hex.
        md5: String,
    },
    /// The body was written to a blob.
    Blob(Written),
}

/// A blob written and made durable, not yet referenced by the index.
pub struct Written {
    /// Where its data lives.
    pub blob: BlobRef,
    /// MD5 of the data, hex.
    pub md5: String,
}

/// The directory of blob files.
pub struct Blobs {
    blobs: PathBuf,
}

impl Blobs {
    /// Opens (and creates) the blob directories under `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = root.join("blobs");
        // Earlier versions received bodies in `tmp/`; a crash could leave files there.
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        for shard in 0..=255u8 {
            fs::create_dir_all(blobs.join(format!("{shard:02x}")))?;
        }
        Ok(Self { blobs })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.blobs.join(&id[..2]).join(id)
    }

    /// Creates and removes a file where blobs are written: fails if bodies cannot be
    /// received. Its name is not an id, so it is never taken for a blob.
    pub fn probe(&self) -> io::Result<()> {
        let probe = self.blobs.join("00").join(format!("probe-{}", new_id()));
        File::create_new(&probe)?;
        fs::remove_file(probe)
    }

    /// Every blob id on disk, for garbage collection at start.
    pub fn all_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for shard in fs::read_dir(&self.blobs)? {
            for entry in fs::read_dir(shard?.path())? {
                if let Some(name) = entry?.file_name().to_str().filter(|n| is_id(n)) {
                    ids.push(name.to_owned());
                }
            }
        }
        Ok(ids)
    }

    /// Receives a body: kept in memory when it ends within `inline_max` bytes, otherwise
    /// written to a blob like [`Blobs::write`].
    pub async fn receive(&self, mut body: BodyStream, inline_max: usize) -> Result<Received> {
        let mut head = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            if head.len() + chunk.len() > inline_max {
                let rest = stream::iter([Ok(head.freeze()), Ok(chunk)]).chain(body);
                return self.write(Box::pin(rest)).await.map(Received::Blob);
            }
            head.extend_from_slice(&chunk);
        }
        let md5 = hex_simd::encode_to_string(Md5::digest(&head), hex_simd::AsciiCase::Lower);
        Ok(Received::Inline {
            body: head.freeze(),
            md5,
        })
    }

    /// Writes a body to a new blob file, then fsyncs it and its directory. The file is
    /// written under its final name: until the index references it, no reader looks for it,
    /// and a crash leaves it unreferenced, for the next start to delete.
    /// On any error nothing remains on disk.
    /// The file work (create, write, fsync, fsync of the directory) runs on a blocking
    /// thread; the file is removed there too when the body fails or the request is dropped.
    pub async fn write(&self, body: BodyStream) -> Result<Written> {
        let id = new_id();
        let dest = self.path(&id);
        let (tx, rx) = mpsc::channel::<Feed>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let result = write_blocking(&dest, rx);
            if result.is_err() {
                let _ = fs::remove_file(&dest);
            }
            result
        });
        let fed = feed(body, &tx).await;
        if fed.is_ok() {
            let _ = tx.send(Feed::End).await;
        }
        drop(tx);
        let written = writer.await.map_err(io::Error::other).and_then(|r| r);
        match (fed, written) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(Error::Io(e)),
            (Ok(()), Ok((len, md5))) => Ok(Written {
                blob: BlobRef { id, len },
                md5,
            }),
        }
    }

    /// Makes a new blob holding the same data as `src` (a hard link: no data is copied).
    pub fn link(&self, src: &BlobRef) -> io::Result<BlobRef> {
        let id = new_id();
        let dest = self.path(&id);
        fs::hard_link(self.path(&src.id), &dest)?;
        File::open(dest.parent().expect("blob paths have a parent"))?.sync_all()?;
        Ok(BlobRef { id, len: src.len })
    }

    /// Deletes blobs that are no longer referenced; a missing file is not an error.
    pub fn remove(&self, blobs: &[BlobRef]) {
        for b in blobs {
            self.remove_id(&b.id);
        }
    }

    /// Deletes one blob by id.
    pub fn remove_id(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.path(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(blob = id, error = %e, "could not delete an unreferenced blob");
        }
    }

    /// Opens the blobs of one object version. `NotFound` means the version was replaced
    /// meanwhile; the caller reads the index again.
    pub fn open_all(&self, blobs: &[BlobRef]) -> io::Result<Vec<(File, u64)>> {
        blobs
            .iter()
            .map(|b| Ok((File::open(self.path(&b.id))?, b.len)))
            .collect()
    }
}

/// What the network side hands the disk writer.
enum Feed {
    /// More of the body.
    Chunk(Bytes),
    /// The body is complete and may be published.
    End,
}

/// Hands the body to the disk writer in chunks of at least [`WRITE_CHUNK`] bytes (the last
/// may be shorter); a body error is returned before anything still gathered is handed on.
async fn feed(mut body: BodyStream, tx: &mpsc::Sender<Feed>) -> Result<()> {
    let mut gathered = BytesMut::with_capacity(WRITE_CHUNK);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(body_error)?;
        let ready = if gathered.is_empty() && chunk.len() >= WRITE_CHUNK {
            chunk
        } else {
            gathered.extend_from_slice(&chunk);
            if gathered.len() < WRITE_CHUNK {
                continue;
            }
            let full = gathered.split().freeze();
            gathered.reserve(WRITE_CHUNK);
            full
        };
        if tx.send(Feed::Chunk(ready)).await.is_err() {
            // The writer stopped early; its own error explains why.
            return Ok(());
        }
    }
    if !gathered.is_empty() {
        // An error here means the writer stopped early; its own error explains why.
        let _ = tx.send(Feed::Chunk(gathered.freeze())).await;
    }
    Ok(())
}

/// The storage error for a failed body read: the caller's own error if it carried one.
fn body_error(e: io::Error) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::Body(e),
    }
}

/// Writes the body to `dest` and, once the network side says it is complete, makes it
/// durable: its data, then its name.
fn write_blocking(dest: &Path, mut rx: mpsc::Receiver<Feed>) -> io::Result<(u64, String)> {
    let file = File::create_new(dest)?;
    let mut flusher = Flusher::new(&file)?;
    let mut md5 = Md5::new();
    let mut len = 0u64;
    loop {
        match rx.blocking_recv() {
            Some(Feed::Chunk(chunk)) => {
                md5.update(&chunk);
                (&file).write_all(&chunk)?;
                len += chunk.len() as u64;
                flusher.written(len);
            }
            Some(Feed::End) => break,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the body ended early",
                ));
            }
        }
    }
    flusher.finish();
    // fdatasync: the data and the size needed to read it back, not the timestamps.
    file.sync_data()?;
    File::open(dest.parent().expect("blob paths have a parent"))?.sync_all()?;
    Ok((
        len,
        hex_simd::encode_to_string(md5.finalize(), hex_simd::AsciiCase::Lower),
    ))
}

/// Bodies flush to disk in the background every this many bytes, so that the final
/// fdatasync of a large body waits only for its tail.
const FLUSH_EVERY: u64 = 16 * 1024 * 1024;

/// Starts writeback of a large body while it is still arriving: a helper thread (started
/// at the first [`FLUSH_EVERY`] bytes) runs fdatasync on a second handle of the file.
struct Flusher {
    file: Option<File>,
    next: u64,
    wake: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn new(file: &File) -> io::Result<Self> {
        Ok(Self {
            file: Some(file.try_clone()?),
            next: FLUSH_EVERY,
            wake: None,
            thread: None,
        })
    }

    /// Notes that `len` bytes have been handed to the file.
    fn written(&mut self, len: u64) {
        if len < self.next {
            return;
        }
        self.next = len + FLUSH_EVERY;
        if self.wake.is_none()
            && let Some(file) = self.file.take()
        {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            self.wake = Some(tx);
            self.thread = std::thread::Builder::new()
                .name("blob-flush".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        while rx.try_recv().is_ok() {}
                        // Best effort: the final fdatasync reports any error.
                        let _ = file.sync_data();
                    }
                })
                .ok();
        }
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
    }

    /// Stops the helper thread.
    fn finish(mut self) {
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Streams `len` bytes starting at `offset` of an in-memory body.
pub fn read_inline(body: Vec<u8>, offset: u64, len: u64) -> BodyStream {
    let start = usize::try_from(offset).expect("inline bodies are small");
    let end = start + usize::try_from(len).expect("inline bodies are small");
    let bytes = Bytes::from(body).slice(start..end);
    Box::pin(stream::once(async move { Ok(bytes) }))
}

/// Streams `len` bytes starting at `offset` across the opened blobs of one object.
pub fn read_range(files: Vec<(File, u64)>, mut offset: u64, len: u64) -> io::Result<BodyStream> {
    let mut pieces = Vec::new();
    let mut left = len;
    for (file, size) in files {
        if left == 0 {
            break;
        }
        if offset >= size {
            offset -= size;
            continue;
        }
        let take = (size - offset).min(left);
        pieces.push((file, offset, take));
        left -= take;
        offset = 0;
    }
    if len <= SMALL_READ {
        let mut buf = BytesMut::zeroed(usize::try_from(len).expect("small reads fit in memory"));
        let mut at = 0;
        for (mut file, offset, take) in pieces {
            let take = usize::try_from(take).expect("small reads fit in memory");
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut buf[at..at + take])?;
            at += take;
        }
        return Ok(Box::pin(stream::once(async move { Ok(buf.freeze()) })));
    }
    let body = stream::iter(pieces)
        .then(|(file, offset, take)| async move {
            let mut file = tokio::fs::File::from_std(file);
            tokio::io::AsyncSeekExt::seek(&mut file, SeekFrom::Start(offset)).await?;
            Ok::<_, io::Error>(ReaderStream::with_capacity(file.take(take), READ_CHUNK))
        })
        .try_flatten();
    Ok(Box::pin(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fed(chunks: Vec<io::Result<Bytes>>) -> (Result<()>, Vec<Bytes>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let out = feed(Box::pin(stream::iter(chunks)), &tx).await;
        drop(tx);
        let mut sent = Vec::new();
        while let Some(Feed::Chunk(c)) = rx.recv().await {
            sent.push(c);
        }
        (out, sent)
    }

    #[tokio::test]
    async fn small_reads_reach_the_writer_gathered_and_in_order() {
        let data: Vec<u8> = (0..3 * WRITE_CHUNK + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut chunks: Vec<io::Result<Bytes>> = data[..WRITE_CHUNK + 5000]
            .chunks(7000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        // A read as large as a gathered chunk, arriving while nothing is gathered.
        let big_at = WRITE_CHUNK + 5000;
        chunks.extend(
            data[big_at..]
                .chunks(WRITE_CHUNK + 1)
                .map(|c| Ok(Bytes::copy_from_slice(c))),
        );
        let reads = chunks.len();
        let (out, sent) = fed(chunks).await;
        assert!(out.is_ok());
        assert_eq!(sent.concat(), data, "every byte arrives once, in order");
        assert!(
            sent.len() < reads / 10,
            "{} writes for {reads} reads",
            sent.len()
        );
        let (last, whole) = sent.split_last().unwrap();
        assert!(whole.iter().all(|c| c.len() >= WRITE_CHUNK));
        assert!(!last.is_empty());
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error() {
        let chunks = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        ];
        let (out, sent) = fed(chunks).await;
        assert!(matches!(out, Err(Error::Body(_))), "{out:?}");
        assert!(
            sent.is_empty(),
            "nothing gathered is handed on after the error"
        );
    }
}
