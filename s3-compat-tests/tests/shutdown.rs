//! Graceful shutdown: on SIGTERM Drive stops accepting, finishes the upload in flight and
//! exits 0.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
use s3_compat_tests::sign::signature;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_upload_in_flight() {
    let drive = DriveProcess::start();
    let ctx = drive.ctx();
    let bucket = ctx.bucket("shutdown").await;
    let url = format!("{}/{bucket}/slow", drive.endpoint);
    const CHUNKS: usize = 20;
    const CHUNK: usize = 64 * 1024;
    let length = (CHUNKS * CHUNK).to_string();
    let headers = [("content-length", length.as_str())];
    let mut req = http::Request::put(&url);
    for (k, v) in headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(signature(
            "PUT", &url, &headers, None, ACCESS_KEY, SECRET_KEY,
        ))
    {
        req = req.header(k, v);
    }
    // A body that trickles in over ~2 s.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = req.body(body).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let upload = tokio::spawn(async move { client.request(req).await });
    let feeder = tokio::spawn(async move {
        for i in 0..CHUNKS {
            tx.send(Ok(Frame::data(Bytes::from(vec![
                u8::try_from(i).unwrap();
                CHUNK
            ]))))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = drive.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused =
        tokio::net::TcpStream::connect(drive.endpoint.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "no new connections after SIGTERM");

    feeder.await.unwrap();
    let response = upload
        .await
        .unwrap()
        .expect("the in-flight upload gets its answer");
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
    let status = drive.terminate();
    assert!(status.success(), "drive exits 0 after draining: {status:?}");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
