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
