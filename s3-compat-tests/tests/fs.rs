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

suite!(
    bucket_lifecycle,
    object_round_trip,
    ranges,
    conditionals,
    hostile_keys,
    listing,
    delete_objects,
    copy_object,
    multipart,
    multipart_listing,
    checksums,
    authentication,
    payload_signing,
    operations_endpoints,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host() {
    let dir = tempfile::tempdir().unwrap();
    let drive = DriveProcess::start_in(dir.path(), &["--domain", "s3.test"]);
    cases::virtual_host(&drive.ctx()).await;
    assert!(drive.terminate().success());
}
