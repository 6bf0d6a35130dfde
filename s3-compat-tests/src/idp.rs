//! A real OpenID provider on loopback for the identity tests: `oidc-provider` (npm) run by Node
//! from `s3-compat-tests/idp/test-idp.mjs`, which `s3-compat-tests/clients/setup.sh` installs
//! with its packages into `$DRIVE_TOOLS_DIR/idp`. Users `alice`, `bob`, `carol`, `dave` and
//! `erin` sign in with the password `<user>-pass`; access tokens are RS256 JWTs for
//! [`AUDIENCE`] with Keycloak-like claims (`groups`, `realm_access.roles`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{RequestBuilder, Response, Url};

use crate::emulator::{installed, terminate, tools_dir};

/// The public client the helpers sign in with (no secret; PKCE in the code flow).
pub const CLIENT_ID: &str = "drive-cli";
/// The confidential client's id.
pub const WEB_CLIENT_ID: &str = "drive-web";
/// The confidential client's secret.
pub const WEB_CLIENT_SECRET: &str = "drive-web-secret";
/// The redirect URI of both clients; nothing listens there, the code flow stops at it.
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The audience (`aud`) of the access tokens.
pub const AUDIENCE: &str = "urn:drive";
/// Secret of the provider's confidential `appstore` client.
pub const APP_CLIENT_SECRET: &str = "appstore-secret";

/// The scope the helpers ask for: every identity scope and Drive's resource scope.
const SCOPE: &str = "openid email profile groups roles drive";
/// The provider's default access token lifetime, in seconds.
const ACCESS_TOKEN_TTL: u64 = 300;

/// A running test OpenID provider.
pub struct Idp {
    child: Option<Child>,
    issuer: String,
    key_file: PathBuf,
    http: reqwest::Client,
    /// The provider's working directory, with its output (and the key of [`Idp::start`]).
    _dir: tempfile::TempDir,
}

/// What the token endpoint answered.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// The access token, an RS256 JWT for [`AUDIENCE`].
    pub access_token: String,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<String>,
    /// The ID token, if one was issued.
    pub id_token: Option<String>,
    /// The access token's lifetime in seconds.
    pub expires_in: Option<u64>,
}

impl Idp {
    /// Starts a provider with a new signing key in a temporary directory.
    pub async fn start() -> Idp {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("key.json");
        Self::spawn(dir, key_file, ACCESS_TOKEN_TTL, 0, &[]).await
    }

    /// Starts a provider whose confidential `appstore` client (secret
    /// [`APP_CLIENT_SECRET`]) also accepts `redirect_uri`.
    pub async fn start_for_app(redirect_uri: &str) -> Idp {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("key.json");
        let env = [("APP_REDIRECT_URIS", redirect_uri)];
        Self::spawn(dir, key_file, ACCESS_TOKEN_TTL, 0, &env).await
    }

    /// Starts a provider on `port` (so its issuer stays the same across a restart), signing
    /// with the key in `key_file`, created there if missing.
    pub async fn start_on(port: u16, key_file: &Path) -> Idp {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = std::path::absolute(key_file).expect("an absolute key file path");
        Self::spawn(dir, key_file, ACCESS_TOKEN_TTL, port, &[]).await
    }

    /// Starts a provider signing with the key in `key_file`, created there if missing.
    pub async fn start_with_key(key_file: &Path) -> Idp {
        Self::start_with(key_file, ACCESS_TOKEN_TTL).await
    }

    /// Like [`Idp::start_with_key`], with access tokens valid for `access_token_ttl` seconds.
    pub async fn start_with(key_file: &Path, access_token_ttl: u64) -> Idp {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = std::path::absolute(key_file).expect("an absolute key file path");
        Self::spawn(dir, key_file, access_token_ttl, 0, &[]).await
    }

    /// Starts `test-idp.mjs` in `dir` and waits until it listens.
    async fn spawn(
        dir: tempfile::TempDir,
        key_file: PathBuf,
        access_token_ttl: u64,
        port: u16,
        env: &[(&str, &str)],
    ) -> Idp {
        let script = installed(tools_dir().join("idp/test-idp.mjs"));
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let create = |path: &Path| {
            std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        let child = Command::new("node")
            .arg(&script)
            .env("PORT", port.to_string())
            .env("KEY_FILE", &key_file)
            .env("ACCESS_TOKEN_TTL", access_token_ttl.to_string())
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node {}`: {e}", script.display()));
        let http = no_redirects();
        let mut idp = Idp {
            child: Some(child),
            issuer: String::new(),
            key_file,
            http,
            _dir: dir,
        };
        idp.issuer = idp.wait_for_issuer(&stdout, &stderr).await;
        idp
    }

    /// Waits for the `{"issuer":"..."}` line the provider prints once it listens.
    async fn wait_for_issuer(&mut self, stdout: &Path, stderr: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = std::fs::read_to_string(stdout).unwrap_or_default();
            if let Some((line, _)) = out.split_once('\n') {
                let issuer = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("issuer")?.as_str().map(str::to_owned));
                return issuer.unwrap_or_else(|| {
                    panic!("the test OpenID provider printed {line:?}, not its issuer")
                });
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the test OpenID provider did not start ({}): {}",
                    exited.map_or_else(|| "no issuer within 30 s".to_owned(), |s| s.to_string()),
                    std::fs::read_to_string(stderr).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing key as a PKCS#8 PEM file.
    pub fn key_pem(&self) -> PathBuf {
        let mut path = self.key_file.clone().into_os_string();
        path.push(".pem");
        PathBuf::from(path)
    }

    /// The public half of the signing key as an SPKI PEM file.
    pub fn public_pem(&self) -> PathBuf {
        let mut path = self.key_file.clone().into_os_string();
        path.push(".pub.pem");
        PathBuf::from(path)
    }

    /// The port the provider listens on.
    pub fn port(&self) -> u16 {
        self.issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the issuer ends with a port")
    }

    /// The signing key's `kid`, from its JWK file.
    pub fn kid(&self) -> String {
        let jwk = std::fs::read_to_string(&self.key_file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.key_file.display()));
        serde_json::from_str::<serde_json::Value>(&jwk)
            .ok()
            .and_then(|v| v.get("kid")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no kid in {}", self.key_file.display()))
    }

    /// Tokens for `user` by the password grant, with the password `<user>-pass`.
    pub async fn password_token(&self, user: &str) -> Tokens {
        self.try_password_token(user, &format!("{user}-pass"))
            .await
            .unwrap_or_else(|(status, body)| panic!("password grant for {user}: {status} {body}"))
    }

    /// Tokens by the password grant, or the token endpoint's status and body.
    pub async fn try_password_token(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Tokens, (u16, String)> {
        self.token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("username", user),
            ("password", password),
            ("scope", SCOPE),
        ])
        .await
    }

    /// Tokens for `user` by the authorization code flow with PKCE (S256), as a browser would.
    pub async fn login(&self, user: &str) -> Tokens {
        let verifier = random_token::<32>();
        let challenge = {
            use sha2::Digest as _;
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(sha2::Sha256::digest(&verifier))
        };
        let state = random_token::<16>();
        let nonce = random_token::<16>();
        let mut cookies = Cookies::default();

        let authorize = self.http.get(format!("{}/auth", self.issuer)).query(&[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("scope", SCOPE),
            ("redirect_uri", REDIRECT_URI),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let callback = authorize_as(&mut cookies, &self.http, authorize, user).await;
        assert!(
            callback.as_str().starts_with(REDIRECT_URI),
            "the sign-in of {user} ended at {callback}, not at the redirect URI"
        );
        let params: BTreeMap<_, _> = callback.query_pairs().into_owned().collect();
        assert!(
            !params.contains_key("error"),
            "the sign-in of {user} was refused: {callback}"
        );
        assert_eq!(params.get("state"), Some(&state), "state in {callback}");
        let code = params
            .get("code")
            .unwrap_or_else(|| panic!("no code in {callback}"));
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
            ("redirect_uri", REDIRECT_URI),
        ])
        .await
        .unwrap_or_else(|(status, body)| panic!("code exchange for {user}: {status} {body}"))
    }

    /// New tokens for a refresh token, or the token endpoint's status and body.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, (u16, String)> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Stops the provider: SIGTERM, then SIGKILL if it lingers.
    pub async fn stop(mut self) {
        if let Some(child) = self.child.take() {
            tokio::task::spawn_blocking(move || terminate(child))
                .await
                .expect("stop the test OpenID provider");
        }
    }

    /// Posts `form` to the token endpoint.
    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, (u16, String)> {
        let url = format!("{}/token", self.issuer);
        let response = self
            .http
            .post(&url)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("the reply to POST {url}: {e}"));
        if status != 200 {
            return Err((status, body));
        }
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("the reply to POST {url} is not JSON ({e}): {body}"));
        let text = |name: &str| json.get(name)?.as_str().map(str::to_owned);
        Ok(Tokens {
            access_token: text("access_token")
                .unwrap_or_else(|| panic!("no access_token in the reply to POST {url}: {body}")),
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            expires_in: json.get("expires_in").and_then(serde_json::Value::as_u64),
        })
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

/// The cookies of one sign-in by name, all sent back to the provider (it sets only its own).
#[derive(Default)]
struct Cookies(BTreeMap<String, String>);

impl Cookies {
    /// Sends `request` with the cookies, and keeps those the response sets (an empty value
    /// clears one).
    async fn send(&mut self, request: RequestBuilder) -> Response {
        let header = self
            .0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if header.is_empty() {
            request
        } else {
            request.header(COOKIE, header)
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("a request to the test OpenID provider: {e}"));
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str().unwrap_or_default().split(';').next();
            if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
                let (name, value) = (name.trim(), value.trim());
                if value.is_empty() {
                    self.0.remove(name);
                } else {
                    self.0.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        response
    }
}

/// Signs `user` in at the provider the `authorize` request leads to (filling its login
/// form), and returns where the provider then sends the browser: the client's redirect URI.
async fn authorize_as(
    cookies: &mut Cookies,
    http: &reqwest::Client,
    authorize: RequestBuilder,
    user: &str,
) -> Url {
    let interaction = redirect(cookies.send(authorize).await).await;
    let form = cookies.send(http.get(interaction.clone())).await;
    assert_eq!(form.status(), 200, "the login form at {interaction}");
    let password = format!("{user}-pass");
    let login = http
        .post(format!("{interaction}/login"))
        .form(&[("username", user), ("password", password.as_str())]);
    let resume = redirect(cookies.send(login).await).await;
    redirect(cookies.send(http.get(resume)).await).await
}

/// An HTTP client for loopback that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// A browser on loopback for sign-ins through an application: it keeps the cookies of the
/// application and the provider (both on 127.0.0.1, so one jar) and does not follow
/// redirects by itself.
pub struct Browser {
    http: reqwest::Client,
    cookies: Cookies,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Self {
        let http = no_redirects();
        Self {
            http,
            cookies: Cookies::default(),
        }
    }

    /// The HTTP client, to build requests for [`Browser::send`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` with the browser's cookies and keeps those the response sets.
    pub async fn send(&mut self, request: RequestBuilder) -> Response {
        self.cookies.send(request).await
    }

    /// The value of cookie `name`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.0.get(name).map(String::as_str)
    }

    /// Drops cookie `name`, as a different browser would lack it.
    pub fn forget(&mut self, name: &str) {
        self.cookies.0.remove(name);
    }

    /// Opens `start` (an application URL that redirects to the provider), signs `user` in
    /// there, and returns the application URL the provider sends the browser back to (not
    /// yet visited).
    pub async fn sign_in(&mut self, start: &str, user: &str) -> Url {
        let to_provider = redirect(self.cookies.send(self.http.get(start)).await).await;
        let authorize = self.http.get(to_provider);
        authorize_as(&mut self.cookies, &self.http, authorize, user).await
    }
}

/// Where a redirect sends the browser; panics with the body if `response` is not one.
async fn redirect(response: Response) -> Url {
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let url = response.url().clone();
    match location {
        Some(location) if status.is_redirection() => url
            .join(&location)
            .unwrap_or_else(|e| panic!("bad redirect {location:?} from {url}: {e}")),
        _ => panic!(
            "{url} answered {status}, not a redirect: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

/// `N` random bytes, base64url without padding.
fn random_token<const N: usize>() -> String {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}
