//! Crash safety: kill -9 during concurrent uploads and overwrites, restart on the same data,
//! and find every acknowledged object intact and nothing partial.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use s3_compat_tests::server::DriveProcess;
use s3_compat_tests::{md5_hex, pattern};

const WRITERS: u64 = 20;

fn body(writer: u64, version: u64) -> Vec<u8> {
    // Sizes from 64 KiB to ~3 MiB, so some writes are in flight when the kill comes.
    let len = 64 * 1024
        + usize::try_from((writer * 7919 + version * 104_729) % (3 * 1024 * 1024)).unwrap();
    pattern(writer * 1_000_000 + version, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_uploads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let drive = DriveProcess::start_in(dir.path(), &[]);
    let ctx = drive.ctx();
    let bucket = ctx.bucket("crash").await;
    // Per writer: the last acknowledged version.
    let acked: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (client, bucket, acked) = (ctx.client.clone(), bucket.clone(), Arc::clone(&acked));
        tasks.push(tokio::spawn(async move {
            for v in 0.. {
                let r = client
                    .put_object()
                    .bucket(&bucket)
                    .key(format!("obj-{w}"))
                    .body(ByteStream::from(body(w, v)))
                    .send()
                    .await;
                if r.is_err() {
                    return;
                }
                acked.lock().unwrap().insert(w, v);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drive.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "the writers got going before the kill: {acked:?}"
    );

    let drive = DriveProcess::start_in(dir.path(), &[]);
    let ctx = drive.ctx();
    let listed = ctx
        .client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    for w in 0..WRITERS {
        let key = format!("obj-{w}");
        let Some(&last) = acked.get(&w) else {
            continue;
        };
        assert!(
            keys.contains(&key),
            "{key} was acknowledged but is not listed"
        );
        let got = ctx
            .client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("acknowledged object reads");
        let etag = got.e_tag().unwrap().to_owned();
        let data = got.body.collect().await.unwrap().into_bytes();
        // The last acknowledged version, or the one that was in flight after it — whole.
        let candidates = [body(w, last), body(w, last + 1)];
        assert!(
            candidates.iter().any(|c| c.as_slice() == data.as_ref()),
            "{key}: content is not a whole version"
        );
        assert_eq!(etag, format!("\"{}\"", md5_hex(&data)));
    }
    for key in &keys {
        let w: u64 = key.trim_start_matches("obj-").parse().unwrap();
        let data = ctx
            .client
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(
            (0..=acked.get(&w).map_or(0, |l| l + 1))
                .any(|v| body(w, v).as_slice() == data.as_ref()),
            "{key} is partial"
        );
    }
    let blobs: usize = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(
        blobs,
        keys.len(),
        "no unreferenced data is left after restart"
    );
    assert!(drive.terminate().success());
}
