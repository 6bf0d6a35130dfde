//! Bounded memory: 2 GiB objects stream through Drive (single PUT and multipart, up and
//! down) while the server's peak RSS stays under 200 MiB.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use md5::{Digest as _, Md5};
use s3_compat_tests::server::DriveProcess;
use s3_compat_tests::{multipart_put, pattern};

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 2048 * MIB;
const PART: u64 = 64 * MIB;
const LIMIT_KIB: u64 = 200 * 1024;

/// A body of `len` bytes made of one repeated 1 MiB chunk, generated as it is sent.
struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(
            self.chunk.slice(..usize::try_from(n).unwrap()),
        ))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn generated(len: u64, chunk: &Bytes) -> ByteStream {
    ByteStream::from_body_1_x(Generated {
        left: len,
        chunk: chunk.clone(),
    })
}

fn expected_md5(len: u64, chunk: &Bytes) -> String {
    let mut m = Md5::new();
    for _ in 0..len / chunk.len() as u64 {
        m.update(chunk);
    }
    hex(&m.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn download_md5(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (u64, String) {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get");
    let mut body = out.body;
    let mut m = Md5::new();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        n += chunk.len() as u64;
        m.update(&chunk);
    }
    (n, hex(&m.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_objects_stream_in_bounded_memory() {
    let drive = DriveProcess::start();
    let ctx = drive.ctx();
    let bucket = ctx.bucket("memory").await;
    let chunk = Bytes::from(pattern(42, usize::try_from(MIB).unwrap()));
    let want = expected_md5(SIZE, &chunk);

    let put = ctx
        .client
        .put_object()
        .bucket(&bucket)
        .key("single")
        .content_length(i64::try_from(SIZE).unwrap())
        .body(generated(SIZE, &chunk))
        .send()
        .await
        .expect("2 GiB put");
    assert_eq!(put.e_tag(), Some(format!("\"{want}\"").as_str()));
    assert_eq!(
        download_md5(&ctx.client, &bucket, "single").await,
        (SIZE, want.clone())
    );
    ctx.client
        .delete_object()
        .bucket(&bucket)
        .key("single")
        .send()
        .await
        .unwrap();
    let after_single = drive.peak_rss_kib();
    assert!(
        after_single < LIMIT_KIB,
        "peak RSS {after_single} KiB after the single PUT/GET"
    );

    let parts = usize::try_from(SIZE / PART).unwrap();
    multipart_put(&ctx.client, &bucket, "multi", parts, 4, |_| {
        generated(PART, &chunk)
    })
    .await;
    assert_eq!(
        download_md5(&ctx.client, &bucket, "multi").await,
        (SIZE, want)
    );
    let peak = drive.peak_rss_kib();
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB streaming 2 GiB objects"
    );
    eprintln!("drive peak RSS: {peak} KiB");
    assert!(drive.terminate().success());
}
