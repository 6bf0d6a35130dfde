//! The conformance suite against Drive on the GCS backend, over fake-gcs-server, and the GCS
//! backend's fault tests.

use s3_compat_tests::cases;
use s3_compat_tests::emulator::Emulator;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let upstream = Emulator::fake_gcs().await;
            let drive = upstream.drive(stringify!($case), &[]);
            cases::$case(&drive.ctx()).await;
            assert!(drive.terminate().success(), "drive exits 0 on SIGTERM");
        }
    )*};
}

s3_compat_tests::for_each_case!(suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host() {
    let upstream = Emulator::fake_gcs().await;
    let drive = upstream.drive("vhost", &["--domain", "s3.test"]);
    cases::virtual_host(&drive.ctx()).await;
    assert!(drive.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outages_mid_upload_and_mid_download() {
    let mut upstream = Emulator::fake_gcs().await;
    s3_compat_tests::faults::provider_outages(&mut upstream).await;
}

/// A missing GCS bucket stops `drive serve` at start with a message that says so.
/// (fake-gcs-server accepts any credentials, so wrong ones cannot be shown here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_stops_drive_at_start() {
    let upstream = Emulator::fake_gcs().await;
    let (status, stderr) = s3_compat_tests::server::DriveProcess::start_failing(
        &upstream.drive_flags_with(&[("--gcs-bucket", "no-such-container")]),
    );
    assert!(!status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// An upload of more parts than one compose call takes (32) is composed in a tree; the
/// object is whole and in order, and no part, intermediate or record is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parts_compose_in_a_tree_and_leave_nothing_behind() {
    use aws_sdk_s3::primitives::ByteStream;
    use s3_compat_tests::{md5_hex, multipart_put, pattern};

    let upstream = Emulator::fake_gcs().await;
    let drive = upstream.drive("tree", &[]);
    let ctx = drive.ctx();
    let b = ctx.bucket("tree").await;
    let part = 5 * 1024 * 1024;
    let data = pattern(3, part * 34 + 123);
    let etag = multipart_put(&ctx.client, &b, "big", 35, 4, |n| {
        let start = (n - 1) * part;
        ByteStream::from(data[start..(start + part).min(data.len())].to_vec())
    })
    .await;
    assert!(etag.ends_with("-35\""), "{etag}");
    let got = ctx
        .client
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
    assert_eq!(md5_hex(&got), md5_hex(&data));
    let left = s3_compat_tests::sign::get_url(format!(
        "{}/storage/v1/b/{}/o?prefix=tree/.drive/",
        upstream.endpoint,
        s3_compat_tests::emulator::CONTAINER
    ))
    .await;
    let listing = left.text();
    let names: Vec<&str> = listing
        .split("\"name\":")
        .skip(1)
        .filter_map(|s| s.trim().trim_start_matches('"').split('"').next())
        .collect();
    assert!(!names.is_empty(), "the bucket record is listed: {listing}");
    assert!(
        names.iter().all(|n| n.starts_with("tree/.drive/buckets/")),
        "only bucket records remain: {names:?}"
    );
    assert!(drive.terminate().success());
}

/// A PUT is one upload straight to the object's name (no temporary object): its ETag is the
/// body's MD5 with and without checksums, small (sent whole) and large (streamed, checksums
/// written after), and a large body refused at its end — wrong Content-MD5, wrong trailing
/// checksum — leaves the previous object as it was and nothing else behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_puts_keep_etags_checksums_and_refused_bodies_change_nothing() {
    use aws_sdk_s3::config::RequestChecksumCalculation;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::ChecksumMode;
    use s3_compat_tests::{failure, md5_hex, pattern};

    let upstream = Emulator::fake_gcs().await;
    let drive = upstream.drive("direct", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let plain = aws_sdk_s3::Client::from_conf(
        c.config()
            .to_builder()
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build(),
    );
    let b = ctx.bucket("direct").await;
    let small = pattern(1, 1000);
    let large = pattern(2, 3 * 1024 * 1024 + 17);
    let mut crc32 = String::new();
    for (key, data) in [("small", &small), ("large", &large)] {
        // The SDK's default: a CRC32 trailer.
        let out = c
            .put_object()
            .bucket(&b)
            .key(key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("put");
        assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(data)).as_str()));
        let sent = out.checksum_crc32().expect("CRC32 returned").to_owned();
        let head = c
            .head_object()
            .bucket(&b)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        assert_eq!(head.e_tag(), out.e_tag(), "{key}");
        assert_eq!(
            head.checksum_crc32(),
            Some(sent.as_str()),
            "{key} keeps its CRC32"
        );
        crc32 = sent;
        // No checksum at all.
        let key = format!("{key}-plain");
        let out = plain
            .put_object()
            .bucket(&b)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .expect("put without checksum");
        assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(data)).as_str()));
        let head = plain
            .head_object()
            .bucket(&b)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        assert_eq!(head.e_tag(), out.e_tag());
        assert_eq!(head.checksum_crc32(), None);
    }

    // A raw aws-chunked PUT with a trailing CRC32: right, then wrong over "large".
    let url = |key: &str| format!("{}/{b}/{key}", ctx.endpoint);
    let r = s3_compat_tests::sign::send(trailer_put(
        &url("raw"),
        &large,
        &crc32,
        &ctx.access_key,
        &ctx.secret_key,
    ))
    .await;
    assert_eq!(r.status, 200, "a right trailer: {}", r.text());
    let other = pattern(3, large.len());
    let r = s3_compat_tests::sign::send(trailer_put(
        &url("large"),
        &other,
        &crc32,
        &ctx.access_key,
        &ctx.secret_key,
    ))
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "BadDigest"),
        "{}",
        r.text()
    );
    let (code, status) = failure(
        c.put_object()
            .bucket(&b)
            .key("large")
            .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
            .body(ByteStream::from(other.clone()))
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("BadDigest", 400));
    let got = c
        .get_object()
        .bucket(&b)
        .key("large")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("get");
    assert_eq!(got.checksum_crc32(), Some(crc32.as_str()));
    assert_eq!(
        got.e_tag(),
        Some(format!("\"{}\"", md5_hex(&large)).as_str())
    );
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(
        md5_hex(&body),
        md5_hex(&large),
        "the previous object is intact"
    );

    let listing = s3_compat_tests::sign::get_url(format!(
        "{}/storage/v1/b/{}/o?prefix=direct/.drive/",
        upstream.endpoint,
        s3_compat_tests::emulator::CONTAINER
    ))
    .await
    .text();
    let names: Vec<&str> = listing
        .split("\"name\":")
        .skip(1)
        .filter_map(|s| s.trim().trim_start_matches('"').split('"').next())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("direct/.drive/buckets/")),
        "no temporary object: {names:?}"
    );
    assert!(drive.terminate().success());
}

/// A PUT of `data` as `aws-chunked` with an unsigned payload and `crc32` as its trailing
/// `x-amz-checksum-crc32` (as SDKs send over TLS).
fn trailer_put(
    url: &str,
    data: &[u8],
    crc32: &str,
    access_key: &str,
    secret_key: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    let mut body = Vec::with_capacity(data.len() + 1024);
    for chunk in data.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc32}\r\n\r\n").as_bytes());
    let (decoded, encoded) = (data.len().to_string(), body.len().to_string());
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded.as_str()),
        ("content-length", encoded.as_str()),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let identity =
        aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        "PUT",
        url,
        headers.iter().copied(),
        SignableBody::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let (added, _) = instructions.into_parts();
    let mut req = http::Request::put(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    for h in added {
        req = req.header(h.name(), h.value());
    }
    req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("valid request")
}
