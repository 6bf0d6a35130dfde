//! Fault tests shared by the cloud backends: what clients see when the provider goes away.

use aws_sdk_s3::primitives::ByteStream;
use futures::{SinkExt, StreamExt};

use crate::emulator::Emulator;
use crate::{failure, md5_hex, pattern};

/// An upload cut by a provider outage fails with a clean S3 error and leaves nothing; a
/// download cut by one ends in an error, never in a short body taken for the whole; while
/// the provider is down, requests get `ServiceUnavailable` and `/readyz` fails; afterwards
/// everything written before is intact.
pub async fn provider_outages(upstream: &mut Emulator) {
    let drive = upstream.drive("outage", &[]);
    let ctx = drive.ctx();
    let c = &ctx.client;
    let b = ctx.bucket("outage").await;
    let whole = pattern(7, 64 * 1024 * 1024);
    c.put_object()
        .bucket(&b)
        .key("whole")
        .body(ByteStream::from(whole.clone()))
        .send()
        .await
        .expect("put whole");

    // Mid-upload: the body flows through a channel of one chunk, so once 16 MiB went in,
    // Drive has passed most of it on to the provider.
    let (mut tx, rx) = futures::channel::mpsc::channel::<bytes::Bytes>(0);
    let frames = rx.map(|b| Ok::<_, std::convert::Infallible>(http_body::Frame::data(b)));
    let body = ByteStream::from_body_1_x(http_body_util::StreamBody::new(frames));
    let upload = {
        let c = c.clone();
        let b = b.clone();
        tokio::spawn(async move {
            c.put_object()
                .bucket(&b)
                .key("partial")
                .content_length(64 * 1024 * 1024)
                .body(body)
                .send()
                .await
        })
    };
    let chunk = bytes::Bytes::from(vec![1u8; 1024 * 1024]);
    for _ in 0..16 {
        tx.send(chunk.clone()).await.expect("Drive reads the body");
    }
    upstream.stop();
    for _ in 0..48 {
        if tx.send(chunk.clone()).await.is_err() {
            break;
        }
    }
    drop(tx);
    match upload.await.expect("upload task") {
        Ok(out) => panic!("an upload cut by an outage succeeded: {out:?}"),
        Err(e) => {
            if let Some(raw) = e.raw_response() {
                let status = raw.status().as_u16();
                assert!(
                    status >= 500,
                    "a provider outage is a server error: {status}"
                );
                assert!(raw.headers().get("x-amz-request-id").is_some());
            }
        }
    }

    let (code, status) = failure(c.head_object().bucket(&b).key("whole").send().await);
    assert_eq!(status, 503, "{code}");
    let get = c.get_object().bucket(&b).key("whole").send().await;
    let (code, status) = failure(get);
    assert_eq!((code.as_str(), status), ("ServiceUnavailable", 503));
    let ready = crate::sign::get_url(format!("{}/readyz", drive.endpoint)).await;
    assert_eq!(ready.status, 503, "{}", ready.text());

    upstream.start().await;
    let (code, status) = failure(c.head_object().bucket(&b).key("partial").send().await);
    assert_eq!(
        (code.as_str(), status),
        ("NotFound", 404),
        "no partial object"
    );

    // Mid-download: read the first chunk, cut the provider, read on.
    let out = c
        .get_object()
        .bucket(&b)
        .key("whole")
        .send()
        .await
        .expect("get whole");
    let mut body = out.body;
    let mut got = body
        .next()
        .await
        .expect("a first chunk")
        .expect("first chunk")
        .len();
    upstream.stop();
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed && got < whole.len(),
        "a cut download must end in an error ({got} bytes read)"
    );

    upstream.start().await;
    // An emulator that has just come back may still answer 5xx for a moment (SeaweedFS's
    // volume server registers after its master answers); Drive says ServiceUnavailable, which
    // clients retry.
    let mut tries = 0;
    let again = loop {
        match c.get_object().bucket(&b).key("whole").send().await {
            Ok(out) => break out,
            Err(e) if tries < 20 && format!("{e:?}").contains("ServiceUnavailable") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("get after the outage: {e:?}"),
        }
    }
    .body
    .collect()
    .await
    .expect("whole body")
    .into_bytes();
    assert_eq!(md5_hex(&again), md5_hex(&whole), "the object is intact");
    let listed = c.list_objects_v2().bucket(&b).send().await.expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["whole"]);
    assert!(drive.terminate().success());
}
