//! The App Store under test with real neighbours: the `drive` binary for bundle storage, the
//! test OpenID provider, and SQLite or the real PostgreSQL server for metadata.

#![allow(dead_code)] // each test binary uses part of this module

pub mod platform;
pub mod ws;

use std::io::Write as _;

use appstore::config::{Config, ServeArgs};
use appstore::server::Running;
use reqwest::{Method, StatusCode};
use s3_compat_tests::database::TestDatabase;
use s3_compat_tests::idp::{APP_CLIENT_SECRET, AUDIENCE, CLIENT_ID, Idp};
use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
use serde_json::Value;
use shared_identity::Secret;

/// The fixture app's icon, a real 400×400 PNG.
pub const ICON: &[u8] = include_bytes!("../fixtures/hello/static/icon.png");
/// The system bucket the stack uses.
pub const BUCKET: &str = "appstore";

/// Which metadata database the App Store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in the data directory (the embedded default).
    Sqlite,
    /// A fresh database on the real PostgreSQL server.
    Postgres,
}

/// A running App Store and its neighbours.
pub struct Stack {
    /// The App Store's base URL.
    pub url: String,
    /// Drive's endpoint.
    pub drive_endpoint: String,
    drive: Option<DriveProcess>,
    /// The identity provider.
    pub idp: Idp,
    /// A plain HTTP client (no redirects followed).
    pub http: reqwest::Client,
    /// The database URL.
    pub database_url: String,
    app: Option<Running>,
    database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// Settings every stack uses; `tweak` changes them before the start.
pub fn args(
    stack_dir: &std::path::Path,
    drive: &str,
    issuer: &str,
    database_url: &str,
    public_url: &str,
) -> ServeArgs {
    ServeArgs {
        data_dir: Some(stack_dir.join("appstore")),
        database_url: Some(Secret::from(database_url.to_owned())),
        public_url: Some(public_url.to_owned()),
        drive_endpoint: Some(drive.to_owned()),
        drive_access_key: Some(ACCESS_KEY.to_owned()),
        drive_secret_key: Some(Secret::from(SECRET_KEY.to_owned())),
        bucket: Some(BUCKET.to_owned()),
        oidc_provider_url: Some(issuer.to_owned()),
        oidc_audience: vec![AUDIENCE.to_owned()],
        oidc_client_id: Some("appstore".to_owned()),
        oidc_client_secret: Some(Secret::from(APP_CLIENT_SECRET.to_owned())),
        oidc_cli_client_id: Some(CLIENT_ID.to_owned()),
        oidc_admin_role_name: Some("drive-admin".to_owned()),
        oidc_full_access_role_name: Some("app-user".to_owned()),
        public_mode_enabled: Some(true),
        cookie_secure: Some(false),
        ..ServeArgs::default()
    }
}

impl Stack {
    /// Starts Drive, the provider and the App Store on `db`.
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Like [`Stack::start`], with settings changed by `tweak`.
    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut ServeArgs)) -> Self {
        Self::start_with_drive(db, |_, _| Vec::new(), tweak).await
    }

    /// Like [`Stack::start_with`], Drive started with the flags `drive_flags` returns for the
    /// App Store's URL and the provider's issuer.
    pub async fn start_with_drive(
        db: Db,
        drive_flags: impl FnOnce(&str, &str) -> Vec<String>,
        tweak: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let idp = Idp::start_for_app(&format!("{url}/auth/callback")).await;
        let flags = drive_flags(&url, idp.issuer());
        let drive_dir = dir.path().join("drive");
        std::fs::create_dir_all(&drive_dir).expect("drive dir");
        let drive = tokio::task::spawn_blocking(move || {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            DriveProcess::start_in(&drive_dir, &flags)
        })
        .await
        .expect("drive starts");
        let (database, database_url) = match db {
            Db::Sqlite => (
                None,
                format!("sqlite://{}/appstore.db?mode=rwc", dir.path().display()),
            ),
            Db::Postgres => {
                let d = TestDatabase::create().await;
                let u = d.url().to_owned();
                (Some(d), u)
            }
        };
        let drive_endpoint = drive.endpoint.clone();
        let mut serve = args(
            dir.path(),
            &drive_endpoint,
            idp.issuer(),
            &database_url,
            &url,
        );
        tweak(&mut serve);
        let config = Config::resolve(serve).expect("a valid configuration");
        let app = appstore::server::start(config, listener)
            .await
            .expect("the App Store starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Self {
            url,
            drive_endpoint,
            drive: Some(drive),
            idp,
            http,
            database_url,
            app: Some(app),
            database,
            _dir: dir,
        }
    }

    /// An access token of `user`.
    pub async fn token(&self, user: &str) -> String {
        self.idp.password_token(user).await.access_token
    }

    /// The App Store's data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("appstore")
    }

    /// Sends a request as `user` (`None`: anonymous) and returns status and JSON body
    /// (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(user) = user {
            request = request.bearer_auth(self.token(user).await);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the App Store answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("a body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Imports `bundle` as `user` with `visibility` (`None`: the default).
    pub async fn import(
        &self,
        user: &str,
        bundle: Vec<u8>,
        visibility: Option<&str>,
    ) -> (StatusCode, Value) {
        let token = self.token(user).await;
        self.import_with_token(&token, bundle, visibility).await
    }

    /// Imports `bundle` with an access token already in hand.
    pub async fn import_with_token(
        &self,
        token: &str,
        bundle: Vec<u8>,
        visibility: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut url = format!("{}/api/v1/apps", self.url);
        if let Some(v) = visibility {
            url.push_str(&format!("?visibility={v}"));
        }
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/zip")
            .body(bundle)
            .send()
            .await
            .expect("the App Store answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("a body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// An S3 client for Drive with its root keys.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_compat_tests::client(&self.drive_endpoint, ACCESS_KEY, SECRET_KEY)
    }

    /// Every object key in the system bucket.
    pub async fn objects(&self) -> Vec<String> {
        let out = self
            .s3()
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list the system bucket");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// App rows in the database, in every state.
    pub async fn rows(&self) -> i64 {
        let repo = appstore::repository::Repository::open(&self.database_url)
            .await
            .expect("open the database");
        repo.count_apps().await.expect("count apps")
    }

    /// Stops Drive, as an outage would; its endpoint stays, refusing connections.
    pub fn stop_drive(&mut self) {
        if let Some(drive) = self.drive.take() {
            drive.terminate();
        }
    }

    /// Stops the App Store and drops a PostgreSQL test database.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("the App Store stops cleanly");
        }
        if let Some(d) = self.database.take() {
            d.drop().await;
        }
    }
}

/// The embedded default: an App Store trusting Drive's development issuer (its audience,
/// a public client, default roles), Drive serving `dev_user`.
pub struct DevStack {
    /// The App Store's base URL.
    pub url: String,
    /// Drive's endpoint, with the issuer at `/_drive/idp`.
    pub drive_endpoint: String,
    /// The App Store's data directory.
    pub dir: tempfile::TempDir,
    app: Running,
    _drive: DriveProcess,
    _drive_dir: tempfile::TempDir,
}

impl DevStack {
    /// Starts Drive with `dev_user` (`NAME:PASSWORD[:GROUPS[:ROLES]]`) and the App Store.
    pub async fn start(dev_user: &str) -> Self {
        let drive_dir = tempfile::tempdir().expect("temp dir");
        let drive = tokio::task::spawn_blocking({
            let dir = drive_dir.path().to_owned();
            let user = dev_user.to_owned();
            move || DriveProcess::start_in(&dir, &["--dev-user", &user])
        })
        .await
        .expect("drive starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let database = format!("sqlite://{}/appstore.db?mode=rwc", dir.path().display());
        let mut serve = args(dir.path(), &drive.endpoint, "", &database, &url);
        serve.oidc_provider_url = None;
        serve.oidc_audience = Vec::new();
        serve.oidc_client_secret = None;
        serve.oidc_cli_client_id = None;
        serve.oidc_full_access_role_name = None;
        serve.oidc_admin_role_name = None;
        let config = Config::resolve(serve).expect("a valid configuration");
        let app = appstore::server::start(config, listener)
            .await
            .expect("the App Store starts");
        Self {
            url,
            drive_endpoint: drive.endpoint.clone(),
            dir,
            app,
            _drive: drive,
            _drive_dir: drive_dir,
        }
    }

    /// Stops the App Store, then Drive.
    pub async fn stop(self) {
        self.app.stop().await.expect("the App Store stops cleanly");
    }
}

/// A zip archive of `entries`, deflated.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, options).expect("a zip entry");
            w.write_all(data).expect("zip data");
        }
        w.finish().expect("the zip closes");
    }
    out.into_inner()
}

/// `app.toml` of a hello-world app named `name` at `version`, plus `extra` lines.
pub fn manifest(name: &str, version: &str, extra: &str) -> String {
    format!(
        "[App]\nName = \"{name}\"\nVersion = \"{version}\"\nTitle = \"Hello\"\nDescription = \"A test app\"\n\n[Runtime]\nModule = \"app\"\n{extra}"
    )
}

/// A hello-world bundle (the S8 layout) with `app_toml`.
pub fn bundle_with(app_toml: &str) -> Vec<u8> {
    zip(&[
        ("app.toml", app_toml.as_bytes()),
        ("app.py", include_bytes!("../fixtures/hello/app.py")),
        ("requirements.txt", b"h2o-wave==1.8.16\n"),
        ("static/icon.png", ICON),
    ])
}

/// A valid hello-world bundle named `name` at `version`.
pub fn bundle(name: &str, version: &str) -> Vec<u8> {
    bundle_with(&manifest(name, version, ""))
}

/// Starts `appstore serve` with `envs` and waits for its ready line; returns the child and
/// its base URL.
pub fn serve(envs: &[(&str, String)]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_appstore"))
        .arg("serve")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("APPSTORE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("appstore serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("App Store ready on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("appstore serve becomes ready");
    (child, url)
}
