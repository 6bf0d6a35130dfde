//! The conformance cases. Each takes a [`Ctx`] for a running Drive and panics on a mismatch
//! with what AWS S3 does.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, EncodingType,
    MetadataDirective, ObjectIdentifier,
};
use bytes::Bytes;

use crate::sign::{self, send};
use crate::{Ctx, client, failure, md5_hex, pattern};

const MIB: usize = 1024 * 1024;

async fn put(ctx: &Ctx, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> String {
    let out = ctx
        .client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .expect("put");
    out.e_tag().expect("etag").to_owned()
}

async fn get(ctx: &Ctx, bucket: &str, key: &str) -> Vec<u8> {
    let out = ctx
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get");
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Every key under `prefix`, listed with `encoding-type=url` (keys may hold characters XML
/// cannot carry) and decoded.
async fn list_all(ctx: &Ctx, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = ctx
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(EncodingType::Url)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(url_decode)),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return keys,
        }
    }
}

/// CreateBucket, HeadBucket, ListBuckets, GetBucketLocation, DeleteBucket and their errors.
pub async fn bucket_lifecycle(ctx: &Ctx) {
    let b = ctx.bucket("life").await;
    ctx.client
        .head_bucket()
        .bucket(&b)
        .send()
        .await
        .expect("head");
    let listed = ctx.client.list_buckets().send().await.expect("list");
    assert!(
        listed
            .buckets()
            .iter()
            .any(|x| x.name() == Some(b.as_str()))
    );
    let loc = ctx
        .client
        .get_bucket_location()
        .bucket(&b)
        .send()
        .await
        .expect("location");
    assert!(
        loc.location_constraint()
            .is_none_or(|c| c.as_str().is_empty())
    );

    assert_eq!(
        failure(ctx.client.create_bucket().bucket(&b).send().await),
        ("BucketAlreadyOwnedByYou".into(), 409)
    );
    for bad in [
        "ab",
        "Upper-Case",
        "bad_name",
        "-lead",
        "a..b",
        "192.168.0.1",
    ] {
        let (code, status) = failure(ctx.client.create_bucket().bucket(bad).send().await);
        assert_eq!((code.as_str(), status), ("InvalidBucketName", 400), "{bad}");
    }
    put(ctx, &b, "k", "v").await;
    assert_eq!(
        failure(ctx.client.delete_bucket().bucket(&b).send().await),
        ("BucketNotEmpty".into(), 409)
    );
    ctx.client
        .delete_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .expect("delete object");
    ctx.client
        .delete_bucket()
        .bucket(&b)
        .send()
        .await
        .expect("delete bucket");
    assert_eq!(
        failure(ctx.client.head_bucket().bucket(&b).send().await).1,
        404
    );
    assert_eq!(
        failure(ctx.client.list_objects_v2().bucket(&b).send().await),
        ("NoSuchBucket".into(), 404)
    );
    assert_eq!(
        failure(ctx.client.delete_bucket().bucket(&b).send().await),
        ("NoSuchBucket".into(), 404)
    );
}

/// PutObject/GetObject/HeadObject round-trip body, ETag, metadata and content headers.
pub async fn object_round_trip(ctx: &Ctx) {
    let b = ctx.bucket("obj").await;
    let body = pattern(1, 100_000);
    let expires = DateTime::from_secs(2_000_000_000);
    let out = ctx
        .client
        .put_object()
        .bucket(&b)
        .key("dir/file.bin")
        .body(ByteStream::from(body.clone()))
        .content_type("application/x-test")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"f.bin\"")
        .content_language("en-GB")
        .cache_control("max-age=60")
        .expires(expires)
        .metadata("color", "blue")
        .metadata("Mixed-Case", "Value With Spaces")
        .send()
        .await
        .expect("put");
    assert_eq!(
        out.e_tag(),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );

    let got = ctx
        .client
        .get_object()
        .bucket(&b)
        .key("dir/file.bin")
        .send()
        .await
        .expect("get");
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(got.content_encoding(), Some("identity"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"f.bin\"")
    );
    assert_eq!(got.content_language(), Some("en-GB"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("mixed-case"))
            .map(String::as_str),
        Some("Value With Spaces")
    );
    assert_eq!(got.content_length(), Some(100_000));
    assert!(got.last_modified().is_some());
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref(),
        body.as_slice()
    );

    let head = ctx
        .client
        .head_object()
        .bucket(&b)
        .key("dir/file.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(100_000));
    assert_eq!(head.e_tag(), out.e_tag());
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );

    let empty = put(ctx, &b, "empty", Vec::new()).await;
    assert_eq!(empty, "\"d41d8cd98f00b204e9800998ecf8427e\"");
    assert!(get(ctx, &b, "empty").await.is_empty());

    put(ctx, &b, "dir/file.bin", "replaced").await;
    assert_eq!(get(ctx, &b, "dir/file.bin").await, b"replaced");

    assert_eq!(
        failure(
            ctx.client
                .get_object()
                .bucket(&b)
                .key("missing")
                .send()
                .await
        ),
        ("NoSuchKey".into(), 404)
    );
    assert_eq!(
        failure(
            ctx.client
                .head_object()
                .bucket(&b)
                .key("missing")
                .send()
                .await
        )
        .1,
        404
    );
    ctx.client
        .delete_object()
        .bucket(&b)
        .key("missing")
        .send()
        .await
        .expect("deleting a missing key succeeds");
    ctx.client
        .delete_object()
        .bucket(&b)
        .key("empty")
        .send()
        .await
        .expect("delete");
    assert_eq!(
        failure(ctx.client.get_object().bucket(&b).key("empty").send().await).1,
        404
    );
}

/// Range requests: bounded, open, suffix, clamped, and unsatisfiable.
pub async fn ranges(ctx: &Ctx) {
    let b = ctx.bucket("range").await;
    let body = pattern(2, 1000);
    put(ctx, &b, "r", body.clone()).await;
    for (range, want, content_range) in [
        ("bytes=0-9", &body[0..10], "bytes 0-9/1000"),
        ("bytes=990-", &body[990..], "bytes 990-999/1000"),
        ("bytes=-10", &body[990..], "bytes 990-999/1000"),
        ("bytes=995-5000", &body[995..], "bytes 995-999/1000"),
        ("bytes=-5000", &body[..], "bytes 0-999/1000"),
    ] {
        let out = ctx
            .client
            .get_object()
            .bucket(&b)
            .key("r")
            .range(range)
            .send()
            .await
            .expect(range);
        assert_eq!(out.content_range(), Some(content_range), "{range}");
        assert_eq!(
            out.content_length(),
            Some(i64::try_from(want.len()).unwrap())
        );
        assert_eq!(
            out.body.collect().await.unwrap().into_bytes().as_ref(),
            want,
            "{range}"
        );
    }
    for bad in ["bytes=1000-", "bytes=5000-6000"] {
        assert_eq!(
            failure(
                ctx.client
                    .get_object()
                    .bucket(&b)
                    .key("r")
                    .range(bad)
                    .send()
                    .await
            ),
            ("InvalidRange".into(), 416),
            "{bad}"
        );
    }
}

/// If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since on reads, and
/// conditional creates.
pub async fn conditionals(ctx: &Ctx) {
    let b = ctx.bucket("cond").await;
    let etag = put(ctx, &b, "c", "conditional").await;
    let past = DateTime::from_secs(1_000_000_000);
    let future = DateTime::from_secs(4_000_000_000);
    let c = &ctx.client;
    c.get_object()
        .bucket(&b)
        .key("c")
        .if_match(&etag)
        .send()
        .await
        .expect("if-match hit");
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .if_match("\"nope\"")
                .send()
                .await
        )
        .1,
        412
    );
    assert_eq!(
        failure(
            c.head_object()
                .bucket(&b)
                .key("c")
                .if_match("\"nope\"")
                .send()
                .await
        )
        .1,
        412
    );
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .if_none_match(&etag)
                .send()
                .await
        )
        .1,
        304
    );
    assert_eq!(
        failure(
            c.head_object()
                .bucket(&b)
                .key("c")
                .if_none_match(&etag)
                .send()
                .await
        )
        .1,
        304
    );
    c.get_object()
        .bucket(&b)
        .key("c")
        .if_none_match("\"other\"")
        .send()
        .await
        .expect("if-none-match miss");
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .if_modified_since(future)
                .send()
                .await
        )
        .1,
        304
    );
    c.get_object()
        .bucket(&b)
        .key("c")
        .if_modified_since(past)
        .send()
        .await
        .expect("modified since past");
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .if_unmodified_since(past)
                .send()
                .await
        )
        .1,
        412
    );
    c.get_object()
        .bucket(&b)
        .key("c")
        .if_unmodified_since(future)
        .send()
        .await
        .expect("unmodified since future");
    // If-Match wins over a failing If-Unmodified-Since, as in S3.
    c.get_object()
        .bucket(&b)
        .key("c")
        .if_match(&etag)
        .if_unmodified_since(past)
        .send()
        .await
        .expect("if-match precedence");

    let (code, status) = failure(
        c.put_object()
            .bucket(&b)
            .key("c")
            .if_none_match("*")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("PreconditionFailed", 412));
    assert_eq!(
        get(ctx, &b, "c").await,
        b"conditional",
        "a refused conditional write changes nothing"
    );
    c.put_object()
        .bucket(&b)
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("create");
    assert_eq!(
        failure(
            c.put_object()
                .bucket(&b)
                .key("c")
                .if_match("\"nope\"")
                .body(ByteStream::from_static(b"y"))
                .send()
                .await
        )
        .1,
        412
    );
    c.put_object()
        .bucket(&b)
        .key("c")
        .if_match(&etag)
        .body(ByteStream::from_static(b"swapped"))
        .send()
        .await
        .expect("compare and swap");
    assert_eq!(get(ctx, &b, "c").await, b"swapped");
    // Preconditions are evaluated before the range: 304/412 win over 416.
    let etag = c
        .head_object()
        .bucket(&b)
        .key("c")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .range("bytes=500-600")
                .if_none_match(&etag)
                .send()
                .await
        )
        .1,
        304
    );
    assert_eq!(
        failure(
            c.get_object()
                .bucket(&b)
                .key("c")
                .range("bytes=500-600")
                .if_match("\"nope\"")
                .send()
                .await
        )
        .1,
        412
    );
    // Conditional deletes are refused, never performed unconditionally.
    let r = c
        .delete_object()
        .bucket(&b)
        .key("c")
        .if_match("\"stale\"")
        .send()
        .await;
    assert_eq!(failure(r).1, 501);
    assert_eq!(get(ctx, &b, "c").await, b"swapped");
}

/// Keys `a` and `a/b` coexist, and hostile keys are stored faithfully or refused with a 4xx.
pub async fn hostile_keys(ctx: &Ctx) {
    let b = ctx.bucket("keys").await;
    let long = "k".repeat(ctx.max_key_len(&b));
    let keys = [
        "a",
        "a/b",
        "a/b/c",
        "../../etc/passwd",
        "./dot",
        "a//double",
        "/leading",
        "trailing/",
        "%2e%2e%2fescaped",
        "..",
        ".",
        "ünïcödé/日本語/🚀",
        "space and +plus",
        "ctrl\u{1}char",
        long.as_str(),
    ];
    let keys: Vec<&str> = if ctx.control_chars_in_keys {
        keys.to_vec()
    } else {
        let (code, status) = failure(
            ctx.client
                .put_object()
                .bucket(&b)
                .key("ctrl\u{1}char")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
        );
        assert_eq!((code.as_str(), status), ("InvalidArgument", 400));
        keys.into_iter().filter(|k| !k.contains('\u{1}')).collect()
    };
    for (i, k) in keys.iter().enumerate() {
        put(ctx, &b, k, format!("body {i}")).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(ctx, &b, k).await,
            format!("body {i}").as_bytes(),
            "{k:?}"
        );
    }
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(list_all(ctx, &b, "").await, expected);
    let (code, status) = failure(
        ctx.client
            .put_object()
            .bucket(&b)
            .key("k".repeat(ctx.max_key_len(&b) + 1))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
    );
    assert!((400..500).contains(&status), "{code} {status}");
    assert_eq!(code, "KeyTooLongError");
}

/// ListObjectsV2 and ListObjects: prefix, delimiter, pagination, start-after, marker,
/// encoding-type=url, and S3's byte order.
pub async fn listing(ctx: &Ctx) {
    let b = ctx.bucket("list").await;
    let keys = ["a-b", "a/b", "a/c/d", "a/c/e", "a0", "b", "z/y", "~", "ä"];
    for k in keys {
        put(ctx, &b, k, "x").await;
    }
    assert_eq!(list_all(ctx, &b, "").await, keys, "byte order");

    let top = ctx
        .client
        .list_objects_v2()
        .bucket(&b)
        .delimiter("/")
        .send()
        .await
        .expect("delimited");
    let objects: Vec<_> = top.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(objects, ["a-b", "a0", "b", "~", "ä"]);
    assert_eq!(prefixes, ["a/", "z/"]);
    assert_eq!(top.key_count(), Some(7));

    let nested = ctx
        .client
        .list_objects_v2()
        .bucket(&b)
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .expect("nested");
    assert_eq!(
        nested
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .collect::<Vec<_>>(),
        ["a/b"]
    );
    assert_eq!(
        nested
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect::<Vec<_>>(),
        ["a/c/"]
    );

    // Pages of two with a delimiter: common prefixes count toward max-keys and never repeat.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = ctx
            .client
            .list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .expect("page");
        assert!(page.key_count().unwrap_or_default() <= 2);
        seen.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        seen.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    seen.sort();
    let mut want = ["a-b", "a/", "a0", "b", "z/", "~", "ä"]
        .map(str::to_owned)
        .to_vec();
    want.sort();
    assert_eq!(seen, want);

    let after = ctx
        .client
        .list_objects_v2()
        .bucket(&b)
        .start_after("a0")
        .send()
        .await
        .expect("start-after");
    assert_eq!(
        after
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .collect::<Vec<_>>(),
        ["b", "z/y", "~", "ä"]
    );

    let v1 = ctx
        .client
        .list_objects()
        .bucket(&b)
        .max_keys(3)
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.is_truncated(), Some(true));
    let last = v1
        .contents()
        .last()
        .and_then(|o| o.key())
        .expect("a key")
        .to_owned();
    let v1b = ctx
        .client
        .list_objects()
        .bucket(&b)
        .marker(&last)
        .send()
        .await
        .expect("v1 marker");
    assert_eq!(v1b.contents().first().and_then(|o| o.key()), Some("a/c/e"));

    let v1d = ctx
        .client
        .list_objects()
        .bucket(&b)
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .expect("v1 delimited");
    assert_eq!(v1d.next_marker(), Some("a/"));

    put(ctx, &b, "enc/a b+c&ü", "x").await;
    let enc = ctx
        .client
        .list_objects_v2()
        .bucket(&b)
        .prefix("enc/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("url");
    // The Rust SDK hands url-encoded keys over as they are; boto3 decodes them.
    assert_eq!(
        enc.contents().first().and_then(|o| o.key()),
        Some("enc/a%20b%2Bc%26%C3%BC")
    );
    assert_eq!(enc.prefix(), Some("enc/"));

    let none = ctx
        .client
        .list_objects_v2()
        .bucket(&b)
        .prefix("nothing/")
        .send()
        .await
        .expect("empty");
    assert!(none.contents().is_empty());
    assert_eq!(none.key_count(), Some(0));
    assert_eq!(
        failure(
            ctx.client
                .list_objects_v2()
                .bucket(&b)
                .continuation_token("!!bad!!")
                .send()
                .await
        )
        .1,
        400
    );
}

/// DeleteObjects: batch, quiet mode, missing keys count as deleted.
pub async fn delete_objects(ctx: &Ctx) {
    let b = ctx.bucket("del").await;
    for k in ["one", "two", "three"] {
        put(ctx, &b, k, "x").await;
    }
    let ids = |keys: &[&str]| {
        keys.iter()
            .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
            .collect::<Vec<_>>()
    };
    let out = ctx
        .client
        .delete_objects()
        .bucket(&b)
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&["one", "missing"])))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("delete");
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["missing", "one"]);
    assert!(out.errors().is_empty());
    let quiet = ctx
        .client
        .delete_objects()
        .bucket(&b)
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&["two", "three"])))
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("quiet delete");
    assert!(quiet.deleted().is_empty());
    assert!(list_all(ctx, &b, "").await.is_empty());
}

/// CopyObject: same and cross bucket, COPY and REPLACE, onto itself.
pub async fn copy_object(ctx: &Ctx) {
    let b1 = ctx.bucket("copy1").await;
    let b2 = ctx.bucket("copy2").await;
    let body = pattern(3, 50_000);
    ctx.client
        .put_object()
        .bucket(&b1)
        .key("src")
        .body(ByteStream::from(body.clone()))
        .content_type("text/x-src")
        .metadata("origin", "src")
        .send()
        .await
        .expect("put");
    let out = ctx
        .client
        .copy_object()
        .bucket(&b2)
        .key("dst")
        .copy_source(format!("{b1}/src"))
        .send()
        .await
        .expect("copy");
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    let got = ctx
        .client
        .get_object()
        .bucket(&b2)
        .key("dst")
        .send()
        .await
        .expect("get copy");
    assert_eq!(got.content_type(), Some("text/x-src"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("src")
    );
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body.as_slice()
    );

    ctx.client
        .copy_object()
        .bucket(&b1)
        .key("replaced")
        .copy_source(format!("{b1}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/x-new")
        .metadata("origin", "new")
        .send()
        .await
        .expect("copy replace");
    let head = ctx
        .client
        .head_object()
        .bucket(&b1)
        .key("replaced")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("text/x-new"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("new")
    );

    let (code, status) = failure(
        ctx.client
            .copy_object()
            .bucket(&b1)
            .key("src")
            .copy_source(format!("{b1}/src"))
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("InvalidRequest", 400));
    ctx.client
        .copy_object()
        .bucket(&b1)
        .key("src")
        .copy_source(format!("{b1}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("origin", "self")
        .send()
        .await
        .expect("copy onto itself with REPLACE");
    let head = ctx
        .client
        .head_object()
        .bucket(&b1)
        .key("src")
        .send()
        .await
        .expect("head self");
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("self")
    );
    assert_eq!(get(ctx, &b1, "src").await, body);

    let key = "dir with space/ü+?.txt";
    put(ctx, &b1, key, "odd").await;
    ctx.client
        .copy_object()
        .bucket(&b2)
        .key("odd")
        .copy_source(format!("{b1}/{}", urlencode(key)))
        .send()
        .await
        .expect("copy odd key");
    assert_eq!(get(ctx, &b2, "odd").await, b"odd");

    assert_eq!(
        failure(
            ctx.client
                .copy_object()
                .bucket(&b2)
                .key("x")
                .copy_source(format!("{b1}/missing"))
                .send()
                .await
        )
        .1,
        404
    );
    assert_eq!(
        failure(
            ctx.client
                .copy_object()
                .bucket(&b2)
                .key("x")
                .copy_source(format!("{b1}/src"))
                .copy_source_if_match("\"nope\"")
                .send()
                .await
        )
        .1,
        412
    );
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 key")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Multipart: create, upload parts (replacing one), UploadPartCopy with a range, ListParts,
/// ListMultipartUploads, Complete with validation, Abort.
pub async fn multipart(ctx: &Ctx) {
    let b = ctx.bucket("mpu").await;
    let c = &ctx.client;
    let source = pattern(4, 300_000);
    put(ctx, &b, "source", source.clone()).await;
    let meta = c
        .create_multipart_upload()
        .bucket(&b)
        .key("big")
        .content_type("application/x-mpu")
        .metadata("m", "1")
        .send()
        .await
        .expect("create");
    let id = meta.upload_id().expect("upload id").to_owned();

    let p1 = pattern(5, 5 * MIB);
    let p2 = pattern(6, 5 * MIB + 1);
    let upload = |n: i32, data: Vec<u8>| {
        let id = id.clone();
        let b = b.clone();
        async move {
            c.upload_part()
                .bucket(&b)
                .key("big")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(data))
                .send()
                .await
                .expect("part")
                .e_tag()
                .unwrap()
                .to_owned()
        }
    };
    upload(1, pattern(99, 5 * MIB)).await;
    let e1 = upload(1, p1.clone()).await;
    let e2 = upload(2, p2.clone()).await;
    let e3 = c
        .upload_part_copy()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .part_number(3)
        .copy_source(format!("{b}/source"))
        .copy_source_range("bytes=100-199")
        .send()
        .await
        .expect("part copy")
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_owned();
    assert_eq!(e1, format!("\"{}\"", md5_hex(&p1)));
    assert_eq!(e3, format!("\"{}\"", md5_hex(&source[100..200])));
    let beyond = c
        .upload_part_copy()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .part_number(4)
        .copy_source(format!("{b}/source"))
        .copy_source_range("bytes=0-300000")
        .send()
        .await;
    assert_eq!(failure(beyond), ("InvalidRange".into(), 416));

    let parts = c
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .expect("list parts");
    assert_eq!(
        parts
            .parts()
            .iter()
            .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
            .collect::<Vec<_>>(),
        [(1, 5 * 1024 * 1024), (2, 5 * 1024 * 1024 + 1), (3, 100)]
    );
    let paged = c
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await
        .expect("paged parts");
    assert_eq!(paged.is_truncated(), Some(true));
    assert_eq!(paged.next_part_number_marker(), Some("2"));
    let uploads = c
        .list_multipart_uploads()
        .bucket(&b)
        .send()
        .await
        .expect("list uploads");
    assert!(
        uploads
            .uploads()
            .iter()
            .any(|u| u.upload_id() == Some(id.as_str()) && u.key() == Some("big"))
    );

    let part = |n: i32, e: &str| CompletedPart::builder().part_number(n).e_tag(e).build();
    let complete = |parts: Vec<CompletedPart>| {
        c.complete_multipart_upload()
            .bucket(&b)
            .key("big")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
    };
    assert_eq!(
        failure(
            complete(vec![part(1, "\"0000\""), part(2, &e2)])
                .send()
                .await
        )
        .0,
        "InvalidPart"
    );
    assert_eq!(
        failure(complete(vec![part(2, &e2), part(1, &e1)]).send().await).0,
        "InvalidPartOrder"
    );
    assert_eq!(
        failure(
            complete(vec![part(1, &e1), part(3, &e3), part(2, &e2)])
                .send()
                .await
        )
        .0,
        "InvalidPartOrder"
    );
    assert_eq!(
        failure(
            complete(vec![part(1, &e1), part(3, &e3), part(4, &e2)])
                .send()
                .await
        )
        .0,
        "InvalidPart"
    );
    assert_eq!(
        failure(complete(vec![part(3, &e3), part(4, &e2)]).send().await).0,
        "InvalidPart"
    );
    let small = complete(vec![part(1, &e1), part(3, &e3)]).send().await;
    assert!(small.is_ok(), "the last part may be small: {small:?}");
    let etag = small.unwrap().e_tag().unwrap().to_owned();
    let expected = {
        use md5::Digest as _;
        let mut m = md5::Md5::new();
        m.update(md5::Md5::digest(&p1));
        m.update(md5::Md5::digest(&source[100..200]));
        format!(
            "\"{}-2\"",
            m.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    assert_eq!(etag, expected);
    let got = c
        .get_object()
        .bucket(&b)
        .key("big")
        .send()
        .await
        .expect("get");
    assert_eq!(got.content_type(), Some("application/x-mpu"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("m")).map(String::as_str),
        Some("1")
    );
    let data = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(data.len(), 5 * MIB + 100);
    assert!(data[..5 * MIB] == p1[..] && data[5 * MIB..] == source[100..200]);
    assert_eq!(
        failure(
            c.list_parts()
                .bucket(&b)
                .key("big")
                .upload_id(&id)
                .send()
                .await
        )
        .0,
        "NoSuchUpload"
    );

    // A non-final part under 5 MiB is refused.
    let id2 = c
        .create_multipart_upload()
        .bucket(&b)
        .key("small")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let s1 = c
        .upload_part()
        .bucket(&b)
        .key("small")
        .upload_id(&id2)
        .part_number(1)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let s2 = c
        .upload_part()
        .bucket(&b)
        .key("small")
        .upload_id(&id2)
        .part_number(2)
        .body(ByteStream::from_static(b"tail"))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let r = c
        .complete_multipart_upload()
        .bucket(&b)
        .key("small")
        .upload_id(&id2)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(part(1, &s1))
                .parts(part(2, &s2))
                .build(),
        )
        .send()
        .await;
    assert_eq!(failure(r), ("EntityTooSmall".into(), 400));
    // Conditional completion: If-None-Match * when the key exists.
    put(ctx, &b, "small", "exists").await;
    let r = c
        .complete_multipart_upload()
        .bucket(&b)
        .key("small")
        .upload_id(&id2)
        .if_none_match("*")
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(part(2, &s2))
                .build(),
        )
        .send()
        .await;
    assert_eq!(failure(r).1, 412);
    c.abort_multipart_upload()
        .bucket(&b)
        .key("small")
        .upload_id(&id2)
        .send()
        .await
        .expect("abort");
    assert_eq!(
        failure(
            c.list_parts()
                .bucket(&b)
                .key("small")
                .upload_id(&id2)
                .send()
                .await
        ),
        ("NoSuchUpload".into(), 404)
    );
    assert_eq!(
        failure(
            c.abort_multipart_upload()
                .bucket(&b)
                .key("small")
                .upload_id(&id2)
                .send()
                .await
        )
        .0,
        "NoSuchUpload"
    );
    assert_eq!(
        failure(
            c.upload_part()
                .bucket(&b)
                .key("small")
                .upload_id(&id2)
                .part_number(1)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        )
        .0,
        "NoSuchUpload"
    );
    assert_eq!(get(ctx, &b, "small").await, b"exists");
    for bad in [0, 10_001] {
        let id3 = c
            .create_multipart_upload()
            .bucket(&b)
            .key("bad")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let (_, status) = failure(
            c.upload_part()
                .bucket(&b)
                .key("bad")
                .upload_id(&id3)
                .part_number(bad)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
        );
        assert_eq!(status, 400, "part number {bad}");
    }
}

/// ListMultipartUploads pages through uploads and common prefixes, each exactly once.
pub async fn multipart_listing(ctx: &Ctx) {
    let b = ctx.bucket("uploads").await;
    let c = &ctx.client;
    for key in ["0", "a/x", "a/y", "b", "c/z"] {
        c.create_multipart_upload()
            .bucket(&b)
            .key(key)
            .send()
            .await
            .expect("create");
    }
    c.create_multipart_upload()
        .bucket(&b)
        .key("b")
        .send()
        .await
        .expect("a second upload of b");
    for max in [1, 2, 3] {
        let (mut seen, mut key_marker, mut id_marker) =
            (Vec::new(), None::<String>, None::<String>);
        for _ in 0..20 {
            let page = c
                .list_multipart_uploads()
                .bucket(&b)
                .delimiter("/")
                .max_uploads(max)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .expect("list uploads");
            seen.extend(
                page.uploads()
                    .iter()
                    .filter_map(|u| u.key().map(str::to_owned)),
            );
            seen.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        seen.sort();
        assert_eq!(seen, ["0", "a/", "b", "b", "c/"], "max-uploads {max}");
    }
}

/// Checksums: SDK defaults (CRC32 trailers), explicit algorithms, mismatches, Content-MD5.
pub async fn checksums(ctx: &Ctx) {
    let b = ctx.bucket("sums").await;
    let c = &ctx.client;
    let out = c
        .put_object()
        .bucket(&b)
        .key("default")
        .body(ByteStream::from_static(b"hello world"))
        .send()
        .await
        .expect("default put");
    let crc = out
        .checksum_crc32()
        .expect("the SDK sends CRC32 by default and Drive returns it")
        .to_owned();
    let got = c
        .get_object()
        .bucket(&b)
        .key("default")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("get");
    assert_eq!(got.checksum_crc32(), Some(crc.as_str()));
    let plain = c
        .head_object()
        .bucket(&b)
        .key("default")
        .send()
        .await
        .expect("head");
    assert!(
        plain.checksum_crc32().is_none(),
        "checksums come only with checksum mode"
    );

    for alg in [
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc64Nvme,
    ] {
        c.put_object()
            .bucket(&b)
            .key("alg")
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(pattern(7, 70_000)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        let head = c
            .head_object()
            .bucket(&b)
            .key("alg")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        let value = match alg {
            ChecksumAlgorithm::Crc32C => head.checksum_crc32_c(),
            ChecksumAlgorithm::Sha1 => head.checksum_sha1(),
            ChecksumAlgorithm::Sha256 => head.checksum_sha256(),
            _ => head.checksum_crc64_nvme(),
        };
        assert!(value.is_some(), "{alg:?} stored");
    }

    let (code, status) = failure(
        c.put_object()
            .bucket(&b)
            .key("bad")
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from_static(b"data"))
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("BadDigest", 400));
    let (code, _) = failure(
        c.put_object()
            .bucket(&b)
            .key("bad")
            .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
            .body(ByteStream::from_static(b"data"))
            .send()
            .await,
    );
    assert_eq!(code, "BadDigest");
    assert_eq!(
        failure(c.head_object().bucket(&b).key("bad").send().await).1,
        404,
        "a refused body leaves nothing"
    );
    c.put_object()
        .bucket(&b)
        .key("md5ok")
        .content_md5("jXd/OF09/siBXSD3SWAm3A==")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .expect("right md5");
}

/// Bodies larger than any backend keeps whole before sending (streamed to the store, their
/// checksums known at the end): the ETag is the body's MD5 with a CRC32 trailer and without
/// any checksum, the checksum is kept, and a body refused at its end — wrong trailing CRC32,
/// wrong Content-MD5 — leaves the previous object as it was.
pub async fn large_bodies(ctx: &Ctx) {
    use aws_sdk_s3::config::RequestChecksumCalculation;

    let c = &ctx.client;
    let plain = aws_sdk_s3::Client::from_conf(
        c.config()
            .to_builder()
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build(),
    );
    let b = ctx.bucket("large").await;
    let small = pattern(1, 1000);
    let large = pattern(2, 9 * MIB + 17);
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
    let r = send(sign::trailer_put(
        &url("raw"),
        &large,
        &crc32,
        &ctx.access_key,
        &ctx.secret_key,
    ))
    .await;
    assert_eq!(r.status, 200, "a right trailer: {}", r.text());
    let other = pattern(3, large.len());
    let r = send(sign::trailer_put(
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
    let listed = c
        .list_objects_v2()
        .bucket(&b)
        .prefix("large")
        .send()
        .await
        .expect("list");
    let etags: Vec<_> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap_or_default(), o.e_tag().unwrap_or_default()))
        .collect();
    let want = format!("\"{}\"", md5_hex(&large));
    assert_eq!(
        etags,
        [("large", want.as_str()), ("large-plain", want.as_str())],
        "listings show the same ETags"
    );
}

/// SigV4: wrong secret, unknown key, anonymous requests, presigned GET and PUT, expiry and
/// tampering.
pub async fn authentication(ctx: &Ctx) {
    let b = ctx.bucket("auth").await;
    put(ctx, &b, "secret.txt", "classified").await;
    let wrong = client(&ctx.endpoint, &ctx.access_key, "not-the-secret");
    assert_eq!(
        failure(wrong.get_object().bucket(&b).key("secret.txt").send().await),
        ("SignatureDoesNotMatch".into(), 403)
    );
    let unknown = client(&ctx.endpoint, "NOSUCHKEY", "whatever-secret");
    assert_eq!(
        failure(unknown.list_buckets().send().await),
        ("InvalidAccessKeyId".into(), 403)
    );

    let anon = sign::get_url(format!("{}/{b}/secret.txt", ctx.endpoint)).await;
    assert_eq!((anon.status, anon.code().as_str()), (403, "AccessDenied"));
    assert!(anon.headers.contains_key("x-amz-request-id"));
    assert!(anon.text().contains("<RequestId>"), "{}", anon.text());

    let presigned = ctx
        .client
        .get_object()
        .bucket(&b)
        .key("secret.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .expect("presign");
    let ok = sign::get_url(presigned.uri()).await;
    assert_eq!((ok.status, ok.body.as_ref()), (200, b"classified".as_ref()));
    let tampered = presigned.uri().replace("secret.txt", "secret.txx");
    let bad = sign::get_url(tampered).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );

    let short = ctx
        .client
        .get_object()
        .bucket(&b)
        .key("secret.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .expect("presign");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = sign::get_url(short.uri()).await;
    assert_eq!(
        (expired.status, expired.code().as_str()),
        (403, "AccessDenied"),
        "{}",
        expired.text()
    );

    let put_url = ctx
        .client
        .put_object()
        .bucket(&b)
        .key("uploaded")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .expect("presign put");
    let up = send(sign::request(
        "PUT",
        put_url.uri(),
        put_url.headers(),
        &b"via presigned put"[..],
    ))
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(get(ctx, &b, "uploaded").await, b"via presigned put");
}

/// SigV4 streaming payloads (`aws-chunked` with a signature per chunk) and
/// `UNSIGNED-PAYLOAD`; a tampered chunk is refused and stores nothing.
pub async fn payload_signing(ctx: &Ctx) {
    let b = ctx.bucket("stream").await;
    let url = format!("{}/{b}/chunked", ctx.endpoint);
    let chunks: [&[u8]; 3] = [&[b'a'; 70_000], &[b'b'; 65_536], b"tail"];
    let r = send(sign::streaming_signed_put(
        &url,
        &chunks,
        false,
        &ctx.access_key,
        &ctx.secret_key,
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(ctx, &b, "chunked").await, chunks.concat());
    let head = ctx
        .client
        .head_object()
        .bucket(&b)
        .key("chunked")
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.content_encoding(),
        None,
        "aws-chunked is framing, not a stored encoding"
    );

    let url = format!("{}/{b}/tampered", ctx.endpoint);
    let r = send(sign::streaming_signed_put(
        &url,
        &chunks,
        true,
        &ctx.access_key,
        &ctx.secret_key,
    ))
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "SignatureDoesNotMatch"),
        "{}",
        r.text()
    );
    assert_eq!(
        failure(
            ctx.client
                .head_object()
                .bucket(&b)
                .key("tampered")
                .send()
                .await
        )
        .1,
        404
    );

    let url = format!("{}/{b}/unsigned", ctx.endpoint);
    let signing = sign::signature("PUT", &url, &[], None, &ctx.access_key, &ctx.secret_key);
    let r = send(sign::request(
        "PUT",
        &url,
        signing,
        &b"unsigned payload"[..],
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(ctx, &b, "unsigned").await, b"unsigned payload");
}

/// Health, readiness and metrics are served unsigned beside S3.
pub async fn operations_endpoints(ctx: &Ctx) {
    let b = ctx.bucket("ops").await;
    put(ctx, &b, "k", "v").await;
    for path in ["/healthz", "/readyz"] {
        let r = sign::get_url(format!("{}{path}", ctx.endpoint)).await;
        assert_eq!(r.status, 200, "{path}");
    }
    let m = sign::get_url(format!("{}/metrics", ctx.endpoint)).await;
    let text = m.text();
    assert!(
        text.contains("drive_requests_total{operation=\"PutObject\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("drive_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("drive_received_bytes_total"), "{text}");
}

/// Virtual-host-style requests under the configured domain (needs `--domain s3.test`).
pub async fn virtual_host(ctx: &Ctx) {
    let b = ctx.bucket("vhost").await;
    put(ctx, &b, "hello.txt", "virtual").await;
    let port = ctx.endpoint.rsplit(':').next().unwrap();
    let url = format!("http://{b}.s3.test:{port}/hello.txt");
    let mut req = sign::signed(
        "GET",
        &url,
        &[],
        Bytes::new(),
        &ctx.access_key,
        &ctx.secret_key,
    );
    *req.uri_mut() = format!("{}/hello.txt", ctx.endpoint).parse().unwrap();
    req.headers_mut().insert(
        http::header::HOST,
        format!("{b}.s3.test:{port}").parse().unwrap(),
    );
    let r = send(req).await;
    assert_eq!(
        (r.status, r.body.as_ref()),
        (200, b"virtual".as_ref()),
        "{}",
        r.text()
    );
}
