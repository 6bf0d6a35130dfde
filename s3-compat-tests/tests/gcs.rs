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

/// A PUT is one upload straight to the object's name: the suite's large PUTs (streamed,
/// checksums written after, refused at their end) leave no temporary object behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_puts_leave_no_temporary_object() {
    let upstream = Emulator::fake_gcs().await;
    let drive = upstream.drive("direct", &[]);
    cases::large_bodies(&drive.ctx()).await;

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
