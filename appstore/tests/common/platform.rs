//! The App Store with instances that really start: Drive trusting the test OpenID provider
//! and the App Store's token broker, and the local runtime with the real launcher, python
//! and the pip and venv caches in the tools directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use appstore::config::ServeArgs;
use reqwest::{Method, StatusCode};
use s3_compat_tests::idp::AUDIENCE;
use serde_json::{Value, json};

use super::{Db, Stack, zip};

/// How long a first start may take: a cold pip cache downloads h2o-wave, h2o-drive, boto3.
pub const START_TIMEOUT: Duration = Duration::from_secs(420);

/// Where the test tools and caches live.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("DRIVE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/drive-tools"),
        PathBuf::from,
    )
}

/// The launcher binary beside the others.
pub fn launcher() -> PathBuf {
    s3_compat_tests::server::binary()
        .parent()
        .expect("the target dir")
        .join("appstore-launcher")
}

/// The drive-app fixture as a bundle.
pub fn drive_app() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drive-app");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("fixture file");
    let (toml, py, req) = (read("app.toml"), read("app.py"), read("requirements.txt"));
    zip(&[
        ("app.toml", &toml),
        ("app.py", &py),
        ("requirements.txt", &req),
    ])
}

/// Drive trusting the provider and the App Store's broker, and an App Store whose instances
/// run on this machine.
pub struct Platform {
    /// The stack.
    pub stack: Stack,
    /// The App Store's host:port.
    pub addr: String,
}

impl std::ops::Deref for Platform {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl Platform {
    /// Starts the platform with settings changed by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut ServeArgs)) -> Platform {
        let drive_flags = |url: &str, issuer: &str| {
            [
                "--oidc-issuer",
                &format!("{issuer},{url}/broker"),
                "--oidc-audience",
                AUDIENCE,
                "--oidc-roles-claim",
                "realm_access.roles",
                "--sts-max-duration-secs",
                "10",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let stack = Stack::start_with_drive(Db::Sqlite, drive_flags, |args| {
            let tools = tools_dir();
            args.launcher = Some(launcher());
            args.pip_cache_dir = Some(tools.join("appstore-pip-cache"));
            args.venv_cache_dir = Some(tools.join("appstore-venvs"));
            args.broker_audience = Some(AUDIENCE.to_owned());
            args.broker_token_ttl_secs = Some(10);
            tweak(args);
        })
        .await;
        let addr = stack.url.trim_start_matches("http://").to_owned();
        Platform { stack, addr }
    }

    /// Imports `bundle` as `user` with `visibility`; the app's id.
    pub async fn import(&self, user: &str, bundle: Vec<u8>, visibility: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/apps?visibility={visibility}", self.url))
            .bearer_auth(self.token(user).await)
            .body(bundle)
            .send()
            .await
            .expect("import");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Changes an instance's visibility as `user`; the status.
    pub async fn set_visibility(&self, user: &str, id: &str, visibility: &str) -> StatusCode {
        let body = json!({ "visibility": visibility });
        let path = format!("/api/v1/instances/{id}");
        self.call(Method::PATCH, &path, Some(user), Some(body))
            .await
            .0
    }

    /// Every instance, as the admin (dave) lists them.
    pub async fn all_instances(&self) -> Vec<Value> {
        let (_, list) = self
            .call(
                Method::GET,
                "/api/v1/instances?all=true",
                Some("dave"),
                None,
            )
            .await;
        list["instances"].as_array().cloned().unwrap_or_default()
    }

    /// Runs `app` as `user` with `body`.
    pub async fn run(&self, user: &str, app: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/apps/{app}/instances"),
            Some(user),
            Some(body),
        )
        .await
    }

    /// GET of an instance page: `host` for DOMAIN instances, else the App Store's host.
    pub async fn open(
        &self,
        host: Option<&str>,
        path: &str,
        user: Option<&str>,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(host) = host {
            r = r.header("host", host);
        }
        if let Some(user) = user {
            r = r.bearer_auth(self.token(user).await);
        }
        let response = r.send().await.expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        (status, response.text().await.unwrap_or_default(), headers)
    }

    /// Waits until the instance serves its page (200) through the router.
    pub async fn until_running(&self, host: Option<&str>, path: &str, user: &str, id: &str) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let (status, body, _) = self.open(host, path, Some(user)).await;
            if status == StatusCode::OK {
                return;
            }
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "while starting: {body}"
            );
            if tokio::time::Instant::now() > deadline {
                let (_, logs) = self.logs(user, id).await;
                panic!("the instance did not start in time; last page: {body}\nlog:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The log of instance `id`, read as `user`.
    pub async fn logs(&self, user: &str, id: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}/api/v1/instances/{id}/logs", self.url))
            .bearer_auth(self.token(user).await)
            .send()
            .await
            .expect("logs");
        (response.status(), response.text().await.unwrap_or_default())
    }

    /// The local runtime's directory of instance `id`.
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.data_dir().join("instances").join(id)
    }

    /// An S3 client for Drive with `user`'s STS credentials.
    pub async fn drive_as(&self, user: &str) -> aws_sdk_s3::Client {
        let token = self.token(user).await;
        let creds = s3_compat_tests::sts::assume(&self.drive_endpoint, &token, None)
            .await
            .expect("STS credentials");
        s3_compat_tests::sts::session_client(&self.drive_endpoint, &creds)
    }

    /// Terminates `ids` as `owner` and stops the stack.
    pub async fn stop(self, ids: &[String], owner: &str) {
        for id in ids {
            let path = format!("/api/v1/instances/{id}");
            let _ = self.call(Method::DELETE, &path, Some(owner), None).await;
        }
        self.stack.stop().await;
    }
}
