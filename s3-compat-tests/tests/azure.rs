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
