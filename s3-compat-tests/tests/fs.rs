//! The conformance suite against Drive on the filesystem backend.

use s3_compat_tests::cases;
use s3_compat_tests::server::DriveProcess;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let drive = DriveProcess::start();
            cases::$case(&drive.ctx()).await;
            assert!(drive.terminate().success(), "drive exits 0 on SIGTERM");
        }
    )*};
}

s3_compat_tests::for_each_case!(suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host() {
    let dir = tempfile::tempdir().unwrap();
    let drive = DriveProcess::start_in(dir.path(), &["--domain", "s3.test"]);
    cases::virtual_host(&drive.ctx()).await;
    assert!(drive.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_with_the_reason_when_the_store_cannot_take_writes() {
    let drive = DriveProcess::start();
    assert_eq!(
        s3_compat_tests::sign::get_url(format!("{}/readyz", drive.endpoint))
            .await
            .status,
        200
    );
    std::fs::remove_dir_all(drive.data_dir.join("blobs")).unwrap();
    let r = s3_compat_tests::sign::get_url(format!("{}/readyz", drive.endpoint)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("not ready"), "{}", r.text());
    assert_eq!(
        s3_compat_tests::sign::get_url(format!("{}/healthz", drive.endpoint))
            .await
            .status,
        200
    );
    assert!(drive.terminate().success());
}
