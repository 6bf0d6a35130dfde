//! The conformance suite against Drive on the S3 backend, over SeaweedFS (which checks
//! Drive's signatures), and the S3 backend's fault tests.

use s3_compat_tests::cases;
use s3_compat_tests::emulator::Emulator;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let upstream = Emulator::seaweedfs().await;
            let drive = upstream.drive(stringify!($case), &[]);
            cases::$case(&drive.ctx()).await;
            assert!(drive.terminate().success(), "drive exits 0 on SIGTERM");
        }
    )*};
}

s3_compat_tests::for_each_case!(suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host() {
    let upstream = Emulator::seaweedfs().await;
    let drive = upstream.drive("vhost", &["--domain", "s3.test"]);
    cases::virtual_host(&drive.ctx()).await;
    assert!(drive.terminate().success());
}
