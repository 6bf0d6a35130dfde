//! The filesystem backend through the `Backend` trait: inline and blob bodies, overwrites
//! between the two, copies, conditional writes and refused bodies.

use std::collections::BTreeMap;

use buckets::fs::{FsBackend, INLINE_MAX};
use buckets::{
    Backend, BodyInfo, BodyStream, BucketName, Error, ObjectKey, PutOptions, WriteCondition,
};
use bytes::Bytes;
use futures::StreamExt;

fn body(data: &[u8]) -> BodyStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(7000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn read(b: &FsBackend, bucket: &BucketName, key: &ObjectKey) -> Vec<u8> {
    let (_, mut s) = b.get_object(bucket, key, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn blob_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("blobs"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_blob_bodies_replace_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path()).unwrap();
    let bucket = BucketName::new("inline").unwrap();
    b.create_bucket(&bucket).await.unwrap();
    let key = ObjectKey::new("k").unwrap();
    let small = vec![1u8; INLINE_MAX];
    let large = vec![2u8; INLINE_MAX + 1];

    b.put_object(&bucket, &key, body(&small), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        blob_files(dir.path()),
        0,
        "a body of INLINE_MAX bytes stays in the index"
    );
    assert_eq!(read(&b, &bucket, &key).await, small);

    b.put_object(&bucket, &key, body(&large), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(blob_files(dir.path()), 1);
    assert_eq!(read(&b, &bucket, &key).await, large);

    b.put_object(&bucket, &key, body(&small), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(blob_files(dir.path()), 0, "the replaced blob is deleted");
    assert_eq!(read(&b, &bucket, &key).await, small);

    let copy = ObjectKey::new("copy").unwrap();
    b.copy_object((&bucket, &key), (&bucket, &copy), None, None, None)
        .await
        .unwrap();
    assert_eq!(read(&b, &bucket, &copy).await, small);
    b.delete_object(&bucket, &key).await.unwrap();
    assert_eq!(
        read(&b, &bucket, &copy).await,
        small,
        "a copy outlives its source"
    );

    let (info, _) = b
        .get_object(&bucket, &copy, Some(buckets::ByteRange::Suffix { len: 10 }))
        .await
        .unwrap();
    assert_eq!(info.size, INLINE_MAX as u64);

    // A copy that expects another source version fails and writes nothing.
    let other = ObjectKey::new("other").unwrap();
    b.put_object(&bucket, &key, body(&large), PutOptions::default())
        .await
        .unwrap();
    for source in [&copy, &key] {
        let r = b
            .copy_object(
                (&bucket, source),
                (&bucket, &other),
                None,
                None,
                Some("not-the-etag"),
            )
            .await;
        assert!(matches!(r, Err(Error::PreconditionFailed(_))), "{r:?}");
        assert!(matches!(
            b.head_object(&bucket, &other).await,
            Err(Error::NoSuchKey)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_conditional_writes_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path()).unwrap();
    let bucket = BucketName::new("refuse").unwrap();
    b.create_bucket(&bucket).await.unwrap();
    let key = ObjectKey::new("k").unwrap();
    for size in [10, INLINE_MAX * 4] {
        let refuse = PutOptions {
            body: BodyInfo {
                seal: Some(Box::new(|_: &str| {
                    Err(Error::Rejected("digest mismatch".into()))
                })),
                ..BodyInfo::default()
            },
            ..PutOptions::default()
        };
        assert!(matches!(
            b.put_object(&bucket, &key, body(&vec![0; size]), refuse)
                .await,
            Err(Error::Rejected(_))
        ));
        assert!(matches!(
            b.head_object(&bucket, &key).await,
            Err(Error::NoSuchKey)
        ));
        assert_eq!(blob_files(dir.path()), 0);
    }
    let failing: BodyStream = Box::pin(futures::stream::iter([
        Ok(Bytes::from(vec![0; 100_000])),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        b.put_object(&bucket, &key, failing, PutOptions::default())
            .await,
        Err(Error::Body(_))
    ));
    assert_eq!(
        blob_files(dir.path()),
        0,
        "an interrupted upload leaves no blob"
    );

    let only_new = || PutOptions {
        condition: Some(WriteCondition::IfNoneExists),
        ..PutOptions::default()
    };
    b.put_object(&bucket, &key, body(b"first"), only_new())
        .await
        .unwrap();
    assert!(matches!(
        b.put_object(&bucket, &key, body(&vec![9; 200_000]), only_new())
            .await,
        Err(Error::PreconditionFailed(_))
    ));
    assert_eq!(read(&b, &bucket, &key).await, b"first");
    assert_eq!(
        blob_files(dir.path()),
        0,
        "the refused body's blob is deleted"
    );

    let checksums = PutOptions {
        body: BodyInfo {
            seal: Some(Box::new(|md5: &str| {
                assert_eq!(md5, "8d777f385d3dfec8815d20f7496026dc");
                Ok(BTreeMap::from([("CRC32".to_owned(), "abc".to_owned())]))
            })),
            ..BodyInfo::default()
        },
        ..PutOptions::default()
    };
    let info = b
        .put_object(&bucket, &key, body(b"data"), checksums)
        .await
        .unwrap();
    assert_eq!(info.checksums.get("CRC32").map(String::as_str), Some("abc"));
    assert_eq!(
        b.head_object(&bucket, &key).await.unwrap().checksums,
        info.checksums
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_each_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path()).unwrap();
    let bucket = BucketName::new("group").unwrap();
    b.create_bucket(&bucket).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (b, bucket) = (b.clone(), bucket.clone());
            tokio::spawn(async move {
                let key = ObjectKey::new(&format!("k{}", i % 8)).unwrap();
                let opts = PutOptions {
                    condition: Some(WriteCondition::IfNoneExists),
                    ..PutOptions::default()
                };
                b.put_object(&bucket, &key, body(format!("v{i}").as_bytes()), opts)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 8, "exactly one conditional create per key wins");
    let page = b
        .list_objects(
            &bucket,
            &buckets::ListQuery {
                max_keys: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_of_one_key_end_with_one_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path()).unwrap();
    let bucket = BucketName::new("overwrite").unwrap();
    b.create_bucket(&bucket).await.unwrap();
    let key = ObjectKey::new("contended").unwrap();
    let versions: Vec<Vec<u8>> = (0..16u8)
        .map(|i| vec![i; 300_000 + usize::from(i) * 1000])
        .collect();
    let tasks: Vec<_> = versions
        .iter()
        .cloned()
        .map(|v| {
            let (b, bucket, key) = (b.clone(), bucket.clone(), key.clone());
            tokio::spawn(async move {
                b.put_object(&bucket, &key, body(&v), PutOptions::default())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let data = read(&b, &bucket, &key).await;
    assert!(versions.contains(&data), "the object is one whole version");
    assert_eq!(
        blob_files(dir.path()),
        1,
        "every replaced version's data is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_store_that_cannot_take_writes() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path()).unwrap();
    b.check_ready().await.expect("a fresh store is ready");
    std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
    let err = b
        .check_ready()
        .await
        .expect_err("no blob directory, no uploads");
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}
