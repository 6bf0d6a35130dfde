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
