//! The conformance suite against Drive on the Azure backend, over Azurite, and the Azure
//! backend's fault tests.

use s3_compat_tests::cases;
use s3_compat_tests::emulator::Emulator;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let upstream = Emulator::azurite().await;
            let drive = upstream.drive(stringify!($case), &[]);
            cases::$case(&drive.ctx()).await;
            assert!(drive.terminate().success(), "drive exits 0 on SIGTERM");
        }
    )*};
}

s3_compat_tests::for_each_case!(suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host() {
    let upstream = Emulator::azurite().await;
    let drive = upstream.drive("vhost", &["--domain", "s3.test"]);
    cases::virtual_host(&drive.ctx()).await;
    assert!(drive.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outages_mid_upload_and_mid_download() {
    let mut upstream = Emulator::azurite().await;
    s3_compat_tests::faults::provider_outages(&mut upstream).await;
}

/// Wrong credentials or a missing container stop `drive serve` at start with a message
/// that says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_provider_settings_stop_drive_at_start() {
    let upstream = Emulator::azurite().await;
    let wrong_key = "d3Jvbmcta2V5LW9mLXRoZS1yaWdodC1sZW5ndGgtZm9yLWF6dXJpdGUtdGVzdHMhIQ==";
    let (status, stderr) = s3_compat_tests::server::DriveProcess::start_failing(
        &upstream.drive_flags_with(&[("--azure-access-key", wrong_key)]),
    );
    assert!(!status.success());
    assert!(stderr.contains("refused Drive's credentials"), "{stderr}");
    assert!(!stderr.contains(wrong_key), "secrets are never printed");
    let (status, stderr) = s3_compat_tests::server::DriveProcess::start_failing(
        &upstream.drive_flags_with(&[("--azure-container", "no-such-container")]),
    );
    assert!(!status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// Parts larger than a block are staged as several blocks, a re-uploaded part replaces the
/// earlier attempt's blocks, and the object is whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_replaced_parts_commit_in_order() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    use s3_compat_tests::{md5_hex, pattern};

    let upstream = Emulator::azurite().await;
    let drive = upstream.drive("blocks", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let b = ctx.bucket("blocks").await;
    let part = 20 * 1024 * 1024 + 7;
    let data = pattern(5, part * 2 + 1000);
    let id = c
        .create_multipart_upload()
        .bucket(&b)
        .key("big")
        .send()
        .await
        .expect("create")
        .upload_id()
        .expect("id")
        .to_owned();
    let upload = |n: i32, body: Vec<u8>| {
        let id = id.clone();
        let b = b.clone();
        async move {
            c.upload_part()
                .bucket(&b)
                .key("big")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(body))
                .send()
                .await
                .expect("upload part")
                .e_tag()
                .expect("etag")
                .to_owned()
        }
    };
    upload(1, vec![9; part]).await;
    let e1 = upload(1, data[..part].to_vec()).await;
    let e2 = upload(2, data[part..2 * part].to_vec()).await;
    let e3 = upload(3, data[2 * part..].to_vec()).await;
    let completed = [(1, e1), (2, e2), (3, e3)]
        .into_iter()
        .map(|(n, e)| CompletedPart::builder().part_number(n).e_tag(e).build())
        .collect();
    c.complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    let got = c
        .get_object()
        .bucket(&b)
        .key("big")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.len(), data.len());
    assert_eq!(
        md5_hex(&got),
        md5_hex(&data),
        "the later attempt of part 1 wins"
    );
    assert!(drive.terminate().success());
}

const MIB: usize = 1024 * 1024;

/// A streamed body of `chunks` (of known length), or, if `broken`, of `chunks` and then an
/// error instead of the rest.
fn body_of(chunks: Vec<bytes::Bytes>, broken: bool) -> aws_sdk_s3::primitives::ByteStream {
    aws_sdk_s3::primitives::ByteStream::from_body_1_x(Chunks {
        left: chunks.iter().map(|c| c.len() as u64).sum(),
        chunks: chunks.into(),
        broken,
    })
}

struct Chunks {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    left: u64,
    broken: bool,
}

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let next = match self.chunks.pop_front() {
            Some(chunk) => {
                self.left -= chunk.len() as u64;
                Some(Ok(http_body::Frame::data(chunk)))
            }
            None if self.broken => {
                self.broken = false;
                Some(Err(std::io::Error::other("the client's body broke")))
            }
            None => None,
        };
        std::task::Poll::Ready(next)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.broken {
            http_body::SizeHint::default()
        } else {
            http_body::SizeHint::with_exact(self.left)
        }
    }
}

/// `len` bytes of `chunk` repeated, as chunks.
fn repeated(chunk: &bytes::Bytes, len: usize) -> Vec<bytes::Bytes> {
    (0..len.div_ceil(chunk.len()))
        .map(|i| chunk.slice(..chunk.len().min(len - i * chunk.len())))
        .collect()
}

async fn etag_of(c: &aws_sdk_s3::Client, b: &str, key: &str) -> String {
    c.head_object()
        .bucket(b)
        .key(key)
        .send()
        .await
        .expect("head")
        .e_tag()
        .expect("etag")
        .to_owned()
}

/// A large PUT or part whose body breaks, or is refused, after several blocks were staged
/// leaves no object and no part, and the previous version of the key whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_large_writes_leave_the_previous_version() {
    use aws_sdk_s3::primitives::ByteStream;
    use s3_compat_tests::{failure, get, md5_hex, pattern};

    let upstream = Emulator::azurite().await;
    let drive = upstream.drive("failed", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let b = ctx.bucket("failed").await;
    let old = pattern(3, 20 * MIB + 5);
    c.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from(old.clone()))
        .send()
        .await
        .expect("put the first version");
    let old_etag = etag_of(c, &b, "k").await;
    let chunk = bytes::Bytes::from(pattern(4, MIB));

    // The digest is only known wrong at the end, after four blocks were staged.
    let (code, status) = failure(
        c.put_object()
            .bucket(&b)
            .key("k")
            .content_length(40 * MIB as i64)
            .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
            .body(body_of(repeated(&chunk, 40 * MIB), false))
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("BadDigest", 400));
    assert_eq!(
        etag_of(c, &b, "k").await,
        old_etag,
        "a refused body changes nothing"
    );

    // The body breaks after 30 MiB: three blocks staged, more in flight.
    let broken = c
        .put_object()
        .bucket(&b)
        .key("k")
        .content_length(40 * MIB as i64)
        .body(body_of(repeated(&chunk, 30 * MIB), true))
        .send()
        .await;
    assert!(broken.is_err(), "a broken body fails the PUT: {broken:?}");
    let broken = c
        .put_object()
        .bucket(&b)
        .key("new")
        .content_length(40 * MIB as i64)
        .body(body_of(repeated(&chunk, 30 * MIB), true))
        .send()
        .await;
    assert!(broken.is_err(), "a broken body fails the PUT: {broken:?}");
    assert_eq!(
        failure(c.head_object().bucket(&b).key("new").send().await).1,
        404,
        "a broken body leaves no object"
    );

    let id = c
        .create_multipart_upload()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .expect("create")
        .upload_id()
        .expect("id")
        .to_owned();
    let broken = c
        .upload_part()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .content_length(40 * MIB as i64)
        .body(body_of(repeated(&chunk, 30 * MIB), true))
        .send()
        .await;
    assert!(broken.is_err(), "a broken body fails the part: {broken:?}");
    let parts = c
        .list_parts()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("list parts");
    assert!(parts.parts().is_empty(), "no part: {parts:?}");
    c.abort_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .expect("abort");

    assert_eq!(etag_of(c, &b, "k").await, old_etag);
    assert_eq!(
        md5_hex(&get(c, &b, "k").await),
        md5_hex(&old),
        "the old version is whole"
    );
    assert!(drive.terminate().success());
}

/// A read longer than one range request gets exactly its bytes, whole or in a range across
/// range boundaries; an overwrite while it streams fails it rather than mixing versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_reads_are_exact_and_never_mix_versions() {
    use aws_sdk_s3::primitives::ByteStream;
    use s3_compat_tests::{get, md5_hex, pattern};

    let upstream = Emulator::azurite().await;
    let drive = upstream.drive("ranges", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let b = ctx.bucket("ranges").await;
    // Four Get Blob ranges of up to 32 MiB: 32 + 32 + 32 + 1. While the reader below pauses,
    // the first range cannot all have gone out (the connections buffer far less), so the
    // fourth, requested once the second streams, is asked for after the overwrite.
    let len = 97 * MIB + 3;
    let v1 = pattern(21, len);
    let v2 = pattern(22, len);
    let put = |data: Vec<u8>| {
        let b = b.clone();
        async move {
            c.put_object()
                .bucket(&b)
                .key("long")
                .body(ByteStream::from(data))
                .send()
                .await
                .expect("put")
        }
    };
    put(v1.clone()).await;
    assert_eq!(md5_hex(&get(c, &b, "long").await), md5_hex(&v1));
    for (first, last) in [
        (32 * MIB - 100, 32 * MIB + 100),
        (1000, len - 2000),
        (96 * MIB - 1, len - 1),
    ] {
        let got = c
            .get_object()
            .bucket(&b)
            .key("long")
            .range(format!("bytes={first}-{last}"))
            .send()
            .await
            .expect("ranged get")
            .body
            .collect()
            .await
            .expect("ranged body")
            .into_bytes();
        assert!(
            got[..] == v1[first..=last],
            "bytes {first}-{last} ({} bytes back)",
            got.len()
        );
    }

    // Read a little, overwrite, read on: the read must fail before it would reach bytes of
    // the new version, and everything it gave is the old one's.
    let out = c
        .get_object()
        .bucket(&b)
        .key("long")
        .send()
        .await
        .expect("get");
    let mut body = out.body;
    let mut got = body.next().await.expect("a chunk").expect("chunk").to_vec();
    put(v2.clone()).await;
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    eprintln!(
        "the overwritten read ended after {} of {len} bytes",
        got.len()
    );
    assert!(got[..] == v1[..got.len()], "only bytes of the old version");
    assert!(
        failed && got.len() < len,
        "an overwrite during a long read fails it ({} of {len} bytes read)",
        got.len()
    );
    assert_eq!(md5_hex(&get(c, &b, "long").await), md5_hex(&v2));
    assert!(drive.terminate().success());
}

/// Large objects stream through Drive on Azure in bounded memory: a 256 MiB PUT and GET, and
/// a multipart upload with four 64 MiB parts at once, keep the server's peak RSS below what
/// holding the object, or the four parts, would take. A write holds up to 4 blocks of 8 MiB
/// (3 being staged, 1 filling), so four parts at once hold up to 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_stream_in_bounded_memory() {
    use md5::Digest as _;
    use s3_compat_tests::{multipart_put, pattern};

    const SINGLE_LIMIT_KIB: u64 = 128 * 1024;
    const LIMIT_KIB: u64 = 224 * 1024;
    let upstream = Emulator::azurite().await;
    let drive = upstream.drive("memory", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let b = ctx.bucket("memory").await;
    let chunk = bytes::Bytes::from(pattern(42, MIB));
    let md5_of = |len: usize| {
        let mut m = md5::Md5::new();
        for piece in repeated(&chunk, len) {
            m.update(&piece);
        }
        m.finalize()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let read = |key: &'static str| {
        let b = b.clone();
        async move {
            let mut body = c
                .get_object()
                .bucket(&b)
                .key(key)
                .send()
                .await
                .expect("get")
                .body;
            let mut m = md5::Md5::new();
            while let Some(piece) = body.next().await {
                m.update(piece.expect("chunk"));
            }
            m.finalize()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        }
    };

    let single = 256 * MIB;
    let put = c
        .put_object()
        .bucket(&b)
        .key("single")
        .content_length(single as i64)
        .body(body_of(repeated(&chunk, single), false))
        .send()
        .await
        .expect("256 MiB put");
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_of(single)).as_str())
    );
    assert_eq!(read("single").await, md5_of(single));
    let after_single = drive.peak_rss_kib();

    multipart_put(c, &b, "multi", 4, 4, |_| {
        body_of(repeated(&chunk, 64 * MIB), false)
    })
    .await;
    assert_eq!(read("multi").await, md5_of(256 * MIB));
    let peak = drive.peak_rss_kib();
    eprintln!("drive peak RSS: {after_single} KiB after the single PUT/GET, {peak} KiB in all");
    assert!(
        after_single < SINGLE_LIMIT_KIB,
        "peak RSS {after_single} KiB after the single PUT/GET"
    );
    assert!(
        peak < LIMIT_KIB,
        "peak RSS {peak} KiB streaming 256 MiB objects"
    );
    assert!(drive.terminate().success());
}
