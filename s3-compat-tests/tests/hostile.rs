//! Malformed and hostile requests: each gets a 4xx S3 error, nothing escapes the data
//! directory, and the server stays up.

use bytes::Bytes;
use http_body_util::Full;
use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
use s3_compat_tests::sign::{request, send, signed, streaming_signed_put, try_send};

/// A named request and the S3 error code it must get, where one is certain.
type Case = (
    &'static str,
    http::Request<Full<Bytes>>,
    Option<&'static str>,
);

/// An unsigned request, headers and body as given.
fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    request(
        method,
        url,
        headers.iter().copied(),
        Bytes::from_static(body),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_and_the_server_stays_up() {
    let drive = DriveProcess::start();
    let ctx = drive.ctx();
    let b = ctx.bucket("hostile").await;
    ctx.client
        .put_object()
        .bucket(&b)
        .key("obj")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"0123456789",
        ))
        .send()
        .await
        .unwrap();
    let id = ctx
        .client
        .create_multipart_upload()
        .bucket(&b)
        .key("mp")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let ep = &drive.endpoint;
    let s = |method: &str, url: String, headers: &[(&str, &str)], body: &'static [u8]| {
        signed(method, &url, headers, body, ACCESS_KEY, SECRET_KEY)
    };
    let huge = "x".repeat(128 * 1024);
    let many: Vec<(String, String)> = (0..300)
        .map(|i| (format!("x-junk-{i}"), "v".into()))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let table: Vec<Case> = vec![
        (
            "malformed DeleteObjects XML",
            s(
                "POST",
                format!("{ep}/{b}?delete"),
                &[],
                b"<Delete><Object><Key>obj",
            ),
            Some("MalformedXML"),
        ),
        (
            "not XML at all",
            s("POST", format!("{ep}/{b}?delete"), &[], b"\x00\x01garbage"),
            Some("MalformedXML"),
        ),
        (
            "malformed CompleteMultipartUpload XML",
            s(
                "POST",
                format!("{ep}/{b}/mp?uploadId={id}"),
                &[],
                b"<CompleteMultipartUpload><Part>",
            ),
            Some("MalformedXML"),
        ),
        (
            "complete with no parts",
            s(
                "POST",
                format!("{ep}/{b}/mp?uploadId={id}"),
                &[],
                b"<CompleteMultipartUpload></CompleteMultipartUpload>",
            ),
            None,
        ),
        (
            "range past the end",
            s(
                "GET",
                format!("{ep}/{b}/obj"),
                &[("range", "bytes=100-200")],
                b"",
            ),
            Some("InvalidRange"),
        ),
        (
            "part number zero",
            s(
                "PUT",
                format!("{ep}/{b}/mp?partNumber=0&uploadId={id}"),
                &[],
                b"x",
            ),
            None,
        ),
        (
            "part number too large",
            s(
                "PUT",
                format!("{ep}/{b}/mp?partNumber=10001&uploadId={id}"),
                &[],
                b"x",
            ),
            None,
        ),
        (
            "part number not a number",
            s(
                "PUT",
                format!("{ep}/{b}/mp?partNumber=abc&uploadId={id}"),
                &[],
                b"x",
            ),
            None,
        ),
        (
            "unknown upload id",
            s(
                "PUT",
                format!("{ep}/{b}/mp?partNumber=1&uploadId=nope"),
                &[],
                b"x",
            ),
            Some("NoSuchUpload"),
        ),
        (
            "crafted upload id",
            s("PUT", format!("{ep}/{b}/mp?partNumber=1&uploadId={id}%2F00001%00{id}"), &[], b"x"),
            Some("NoSuchUpload"),
        ),
        (
            "crafted upload id on complete",
            s(
                "POST",
                format!("{ep}/{b}/mp?uploadId=..%2F{id}"),
                &[],
                b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            ),
            Some("NoSuchUpload"),
        ),
        (
            "bad bucket name",
            s("PUT", format!("{ep}/Bad_Bucket"), &[], b""),
            Some("InvalidBucketName"),
        ),
        (
            "bucket name too long",
            s("PUT", format!("{ep}/{}", "a".repeat(64)), &[], b""),
            Some("InvalidBucketName"),
        ),
        (
            "unsigned write",
            raw("PUT", &format!("{ep}/{b}/unsigned"), &[], b"x"),
            Some("AccessDenied"),
        ),
        (
            "unsigned listing",
            raw("GET", &format!("{ep}/{b}"), &[], b""),
            Some("AccessDenied"),
        ),
        (
            "forged signature",
            raw(
                "GET",
                &format!("{ep}/{b}/obj"),
                &[
                    (
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=compat-access/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                    ),
                    ("x-amz-date", "20250101T000000Z"),
                    ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ],
                b"",
            ),
            None,
        ),
        (
            "garbage authorization header",
            raw(
                "GET",
                &format!("{ep}/{b}/obj"),
                &[("authorization", "Bearer nonsense")],
                b"",
            ),
            None,
        ),
        (
            "oversized header",
            raw(
                "GET",
                &format!("{ep}/{b}/obj"),
                &[("x-amz-meta-big", huge.as_str())],
                b"",
            ),
            None,
        ),
        (
            "too many headers",
            raw("GET", &format!("{ep}/{b}/obj"), &many_refs, b""),
            None,
        ),
        (
            "bad max-keys",
            s("GET", format!("{ep}/{b}?list-type=2&max-keys=-1"), &[], b""),
            None,
        ),
        (
            "bad continuation token",
            s(
                "GET",
                format!("{ep}/{b}?list-type=2&continuation-token=%%%"),
                &[],
                b"",
            ),
            None,
        ),
        (
            "copy from a missing bucket",
            s(
                "PUT",
                format!("{ep}/{b}/copy"),
                &[("x-amz-copy-source", "/no-such-bucket/obj")],
                b"",
            ),
            Some("NoSuchBucket"),
        ),
        (
            "bad copy source",
            s(
                "PUT",
                format!("{ep}/{b}/copy"),
                &[("x-amz-copy-source", "nonsense")],
                b"",
            ),
            None,
        ),
        (
            "wrong content-md5",
            s(
                "PUT",
                format!("{ep}/{b}/md5"),
                &[("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")],
                b"body",
            ),
            Some("BadDigest"),
        ),
        (
            "malformed content-md5",
            s(
                "PUT",
                format!("{ep}/{b}/md5"),
                &[("content-md5", "not base64!")],
                b"body",
            ),
            None,
        ),
        (
            "key too long",
            s("PUT", format!("{ep}/{b}/{}", "k".repeat(1100)), &[], b"x"),
            None,
        ),
    ];
    // A body that differs from the one whose hash was signed.
    let mut swapped = s("PUT", format!("{ep}/{b}/swapped"), &[], b"the signed body");
    *swapped.body_mut() = Full::new(Bytes::from_static(b"another body!!!"));
    let mut table = table;
    table.push((
        "body differs from x-amz-content-sha256",
        swapped,
        Some("XAmzContentSHA256Mismatch"),
    ));
    for (name, req, code) in table {
        let r = send(req).await;
        assert!(
            (400..500).contains(&r.status),
            "{name}: expected a 4xx, got {} {}",
            r.status,
            r.text()
        );
        if let Some(code) = code {
            assert_eq!(r.code(), code, "{name}: {}", r.text());
        }
        if r.status != 431 {
            assert!(
                r.headers.contains_key("x-amz-request-id"),
                "{name}: no request id"
            );
        }
    }

    // One aws-chunked chunk larger than Drive's 16 MiB limit is refused at its header: the
    // answer is InvalidRequest, or the connection closes while the client is still sending.
    let huge_chunk = vec![7u8; 17 * 1024 * 1024];
    let url = format!("{ep}/{b}/huge-chunk");
    match try_send(streaming_signed_put(
        &url,
        &[&huge_chunk],
        false,
        ACCESS_KEY,
        SECRET_KEY,
    ))
    .await
    {
        Ok(r) => assert_eq!(
            (r.status, r.code().as_str()),
            (400, "InvalidRequest"),
            "{}",
            r.text()
        ),
        Err(e) => assert!(
            e.contains("BrokenPipe") || e.contains("ConnectionReset"),
            "{e}"
        ),
    }
    assert!(
        ctx.client
            .head_object()
            .bucket(&b)
            .key("huge-chunk")
            .send()
            .await
            .is_err()
    );
    // Traversal-looking keys are stored as keys, inside the data directory.
    for key in [
        "%2e%2e%2f%2e%2e%2fescape",
        "..%2F..%2Fescape2",
        "a/../../escape3",
    ] {
        let r = send(s("PUT", format!("{ep}/{b}/{key}"), &[], b"inside")).await;
        assert!(
            r.status == 200 || (400..500).contains(&r.status),
            "{key}: {} {}",
            r.status,
            r.text()
        );
    }
    let swapped = ctx
        .client
        .head_object()
        .bucket(&b)
        .key("swapped")
        .send()
        .await;
    assert!(
        swapped.is_err(),
        "a body that failed its hash is not stored"
    );
    let parent = drive.data_dir.parent().unwrap();
    for name in ["escape", "escape2", "escape3"] {
        assert!(
            !parent.join(name).exists() && !drive.data_dir.join(name).exists(),
            "{name} escaped"
        );
    }

    let health = send(raw("GET", &format!("{ep}/healthz"), &[], b"")).await;
    assert_eq!(health.status, 200);
    ctx.client
        .head_object()
        .bucket(&b)
        .key("obj")
        .send()
        .await
        .expect("the server still serves");
    assert!(drive.terminate().success());
}
