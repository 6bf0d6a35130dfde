//! The `appstore` client commands, after the `h2o` CLI: `login`, `bundle`, `app import |
//! list | get | delete | update | download`, `tag list | create | assign | remove`. Human
//! tables by default, `--json` for scripts. Settings live in a TOML file like the H2O CLI's
//! (`Endpoint`, `Token` or `RefreshToken` with `ClientID` and `IssuerURL`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::pack;

/// Options every client command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Settings file [default: ~/.h2oai/appstore-cli.toml].
    #[arg(long, global = true, env = "APPSTORE_CLI_CONFIG")]
    pub conf: Option<PathBuf>,
    /// App Store URL, overriding the settings file.
    #[arg(long, global = true, env = "APPSTORE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Access token, overriding the settings file.
    #[arg(long, global = true, env = "APPSTORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client command.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Save the endpoint and a token: an access token (--token), a refresh token, or one
    /// got by signing in with a browser (--browser).
    Login {
        /// Refresh token of the CLI client, refreshed before each command.
        #[arg(long, env = "APPSTORE_REFRESH_TOKEN", hide_env_values = true)]
        refresh_token: Option<String>,
        /// Sign in with a browser: prints a URL to open, and waits for the identity
        /// provider to send the browser back to this machine.
        #[arg(long, conflicts_with = "refresh_token")]
        browser: bool,
    },
    /// Build `<Name>.<Version>.wave` from an app directory (honours `.appignore`).
    Bundle {
        /// The app directory [default: .].
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Directory to write the bundle to [default: the app directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Tags.
    #[command(subcommand)]
    Tag(TagCommand),
    /// App instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
}

/// `appstore instance …`.
#[derive(Debug, clap::Subcommand)]
pub enum InstanceCommand {
    /// List your instances (everyone's with --all, for admins).
    List {
        /// Every user's instances.
        #[arg(long)]
        all: bool,
        /// Only instances of this app id.
        #[arg(long)]
        app: Option<String>,
    },
    /// Show one instance.
    Get {
        /// Instance id.
        id: String,
    },
    /// Phase, reason, restarts and last failure.
    Status {
        /// Instance id.
        id: String,
    },
    /// Print the instance log.
    Logs {
        /// Instance id.
        id: String,
        /// The previous run's log.
        #[arg(long, short)]
        previous: bool,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop an instance's processes, keeping its volume.
    Suspend {
        /// Instance id.
        id: String,
    },
    /// Start a suspended instance again.
    Resume {
        /// Instance id.
        id: String,
    },
    /// Stop an instance for good and revoke its credentials.
    Terminate {
        /// Instance id.
        id: String,
    },
    /// Change who may open an instance.
    Update {
        /// Instance id.
        id: String,
        /// PRIVATE, ALL_USERS or PUBLIC.
        #[arg(long, short)]
        visibility: String,
    },
}

/// `appstore app …`.
#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Import a bundle.
    Import {
        /// The `.wave` file.
        bundle: PathBuf,
        /// PRIVATE, ALL_USERS or PUBLIC [default: PRIVATE].
        #[arg(long, short)]
        visibility: Option<String>,
    },
    /// List the apps you can see.
    List {
        /// Only this app name.
        #[arg(long)]
        name: Option<String>,
        /// Only apps carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Search name, title and description.
        #[arg(long, short)]
        query: Option<String>,
    },
    /// Show one app.
    Get {
        /// App id.
        id: String,
    },
    /// Delete an app version.
    Delete {
        /// App id.
        id: String,
    },
    /// Change an app's visibility.
    Update {
        /// App id.
        id: String,
        /// PRIVATE, ALL_USERS or PUBLIC.
        #[arg(long, short)]
        visibility: String,
    },
    /// Run an app: start an instance and print its URL.
    Run {
        /// App id.
        id: String,
        /// PRIVATE, ALL_USERS or PUBLIC [default: PRIVATE].
        #[arg(long, short)]
        visibility: Option<String>,
        /// DOMAIN or BASE_URL [default: the app's or the server's].
        #[arg(long)]
        routing_mode: Option<String>,
    },
    /// Download an app's bundle.
    Download {
        /// App id.
        id: String,
        /// File to write [default: <name>.<version>.wave].
        path: Option<PathBuf>,
    },
}

/// `appstore tag …`.
#[derive(Debug, clap::Subcommand)]
pub enum TagCommand {
    /// List tags.
    List,
    /// Create a tag (admins).
    Create {
        /// Tag name, as `app.toml` uses it.
        name: String,
        /// Display title.
        #[arg(long, short)]
        title: Option<String>,
        /// Colour, #RRGGBB.
        #[arg(long, short)]
        color: Option<String>,
        /// Description.
        #[arg(long, short)]
        description: Option<String>,
        /// Show it as a category.
        #[arg(long)]
        category: bool,
        /// Roles that may assign it (repeatable; none: any full-access user).
        #[arg(long = "admin-role")]
        admin_roles: Vec<String>,
        /// Visitor roles that see ALL_USERS apps carrying it (repeatable).
        #[arg(long = "visitor-role")]
        visitor_roles: Vec<String>,
    },
    /// Put a tag on an app.
    Assign {
        /// Tag name.
        tag: String,
        /// App id.
        app: String,
    },
    /// Take a tag off an app.
    Remove {
        /// Tag name.
        tag: String,
        /// App id.
        app: String,
    },
}

/// The settings file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(rename = "ClientID", skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(rename = "IssuerURL", skip_serializing_if = "Option::is_none")]
    issuer_url: Option<String>,
}

/// A failed command, printed as `appstore: …`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

fn fail(message: impl Into<String>) -> Failure {
    Failure(message.into())
}

fn settings_path(global: &Global) -> PathBuf {
    global.conf.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".h2oai").join("appstore-cli.toml")
    })
}

fn load_settings(path: &Path) -> Result<Settings, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| fail(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(fail(format!("{}: {e}", path.display()))),
    }
}

fn save_settings(path: &Path, settings: &Settings) -> Result<(), Failure> {
    let text = toml::to_string(settings).map_err(|e| fail(e.to_string()))?;
    let tmp = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&tmp);
    shared_identity::write_private(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// Runs a client command.
pub fn run(global: Global, command: Command) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(dispatch(&global, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appstore: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(global: &Global, command: Command) -> Result<(), Failure> {
    match command {
        Command::Bundle { dir, output } => bundle(&dir, output.as_deref(), global.json),
        Command::Login {
            refresh_token,
            browser,
        } => login(global, refresh_token, browser).await,
        Command::App(c) => app(&Client::new(global).await?, global.json, c).await,
        Command::Tag(c) => tag(&Client::new(global).await?, global.json, c).await,
        Command::Instance(c) => instance(&Client::new(global).await?, global.json, c).await,
    }
}

fn bundle(dir: &Path, output: Option<&Path>, json: bool) -> Result<(), Failure> {
    let text = std::fs::read_to_string(dir.join("app.toml"))
        .map_err(|e| fail(format!("{}: {e}", dir.join("app.toml").display())))?;
    let manifest =
        crate::bundle::manifest::parse(&text).map_err(|e| fail(format!("app.toml: {e}")))?;
    let name = format!("{}.{}.wave", manifest.app.name, manifest.app.version);
    if name.contains('/') || name.starts_with('.') {
        return Err(fail(
            "app.toml: App.Name and App.Version must be plain names",
        ));
    }
    let out = output.unwrap_or(dir).join(&name);
    let packed = pack::pack(dir, &out).map_err(|e| fail(e.to_string()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "path": out, "files": packed.files, "bytes": packed.bytes })
        );
    } else {
        println!(
            "{} ({} files, {} bytes)",
            out.display(),
            packed.files.len(),
            packed.bytes
        );
    }
    Ok(())
}

async fn login(
    global: &Global,
    refresh_token: Option<String>,
    browser: bool,
) -> Result<(), Failure> {
    let path = settings_path(global);
    let mut settings = load_settings(&path)?;
    if let Some(endpoint) = &global.endpoint {
        settings.endpoint = Some(endpoint.trim_end_matches('/').to_owned());
    }
    let endpoint = settings
        .endpoint
        .clone()
        .ok_or_else(|| fail("give the App Store URL with --endpoint"))?;
    let http = reqwest::Client::new();
    let config: Value = get_json(&http, &format!("{endpoint}/api/v1/config"), None).await?;
    let refresh_token = match (refresh_token, browser) {
        (Some(rt), _) => Some(rt),
        (None, true) => Some(browser_sign_in(&http, &config).await?),
        (None, false) => None,
    };
    match (refresh_token, &global.token) {
        (Some(rt), _) => {
            settings.refresh_token = Some(rt);
            settings.token = None;
            settings.client_id = config["cliClientId"].as_str().map(str::to_owned);
            settings.issuer_url = config["issuer"].as_str().map(str::to_owned);
        }
        (None, Some(token)) => {
            settings.token = Some(token.clone());
            settings.refresh_token = None;
        }
        (None, None) => {
            return Err(fail(format!(
                "give --browser, --token ACCESS_TOKEN or --refresh-token TOKEN; tokens come from {}",
                config["issuer"].as_str().unwrap_or("the identity provider")
            )));
        }
    }
    let client = Client::from_settings(&path, &mut settings).await?;
    let me: Value = client.get("/api/v1/me").await?;
    if me["signedIn"] != Value::Bool(true) {
        return Err(fail("the App Store did not accept the token"));
    }
    save_settings(&path, &settings)?;
    if !global.json {
        println!(
            "Signed in to {endpoint} as {}; settings saved in {}",
            me["username"].as_str().unwrap_or("?"),
            path.display()
        );
    } else {
        println!("{me}");
    }
    Ok(())
}

/// Signs in through a browser (authorization code + PKCE with a loopback redirect, RFC
/// 8252): prints the URL to open, answers the provider's redirect on 127.0.0.1, and returns
/// the refresh token the code is redeemed for.
async fn browser_sign_in(http: &reqwest::Client, config: &Value) -> Result<String, Failure> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let issuer = config["issuer"]
        .as_str()
        .ok_or_else(|| fail("the App Store names no issuer"))?;
    let client_id = config["cliClientId"].as_str().unwrap_or("appstore-cli");
    let metadata = get_json(
        http,
        &format!("{issuer}/.well-known/openid-configuration"),
        None,
    )
    .await?;
    let (Some(authorize), Some(token_endpoint)) = (
        metadata["authorization_endpoint"].as_str(),
        metadata["token_endpoint"].as_str(),
    ) else {
        return Err(fail(
            "the identity provider offers no browser sign-in; use --token",
        ));
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = shared_identity::random_string(64, crate::web::B64URL);
    let state = shared_identity::random_string(32, crate::web::B64URL);
    let mut url =
        reqwest::Url::parse(authorize).map_err(|e| fail(format!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "openid offline_access profile email")
        .append_pair("state", &state)
        .append_pair("code_challenge", &crate::web::pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    eprintln!("Open this URL in a browser to sign in (waiting up to 5 minutes):\n  {url}");
    let wait = async {
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| fail(e.to_string()))?;
            let mut reader = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let Ok(back) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
                continue;
            };
            if back.path() != "/callback" {
                continue;
            }
            let params: std::collections::HashMap<String, String> =
                back.query_pairs().into_owned().collect();
            let page = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n\
                        Signed in; you can close this tab.\n";
            let mut stream = reader.into_inner();
            let _ = stream.write_all(page.as_bytes()).await;
            let _ = stream.shutdown().await;
            if let Some(error) = params.get("error") {
                return Err(fail(format!(
                    "the identity provider refused the sign-in: {error}"
                )));
            }
            let same = params.get("state").is_some_and(|s| {
                subtle::ConstantTimeEq::ct_eq(s.as_bytes(), state.as_bytes()).into()
            });
            match (same, params.get("code")) {
                (true, Some(code)) => return Ok(code.clone()),
                _ => return Err(fail("the sign-in came back without this login's state")),
            }
        }
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(300), wait)
        .await
        .map_err(|_| fail("no sign-in within 5 minutes"))??;
    let response = http
        .post(token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", client_id),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| fail(format!("{token_endpoint}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    match body["refresh_token"].as_str() {
        Some(rt) if status.is_success() => Ok(rt.to_owned()),
        _ => Err(fail(format!(
            "redeeming the sign-in failed ({}); the provider must issue refresh tokens to {client_id}",
            body["error"].as_str().unwrap_or(status.as_str())
        ))),
    }
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<Value, Failure> {
    let mut request = http.get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    answer(
        request
            .send()
            .await
            .map_err(|e| fail(format!("{url}: {e}")))?,
    )
    .await
}

/// The body of a successful answer as JSON (empty: null), or the problem's detail.
async fn answer(response: reqwest::Response) -> Result<Value, Failure> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
    if status.is_success() {
        if body.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&body).map_err(|e| fail(format!("answer: {e}")));
    }
    let problem: Value = serde_json::from_slice(&body).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or("");
    let field = problem["field"]
        .as_str()
        .map(|f| format!(" [{f}]"))
        .unwrap_or_default();
    Err(fail(format!(
        "{} {}: {detail}{field}",
        status.as_u16(),
        problem["code"].as_str().unwrap_or("error")
    )))
}

/// A signed-in connection to an App Store.
struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

impl Client {
    async fn new(global: &Global) -> Result<Self, Failure> {
        let path = settings_path(global);
        let mut settings = load_settings(&path)?;
        if let Some(e) = &global.endpoint {
            settings.endpoint = Some(e.trim_end_matches('/').to_owned());
        }
        if let Some(t) = &global.token {
            settings.token = Some(t.clone());
            settings.refresh_token = None;
        }
        Self::from_settings(&path, &mut settings).await
    }

    /// A client for `settings`, refreshing the token when there is a refresh token (and
    /// saving a rotated one).
    async fn from_settings(path: &Path, settings: &mut Settings) -> Result<Self, Failure> {
        let endpoint = settings.endpoint.clone().ok_or_else(|| {
            fail("no App Store endpoint: run `appstore login --endpoint URL …` first")
        })?;
        let http = reqwest::Client::new();
        let token = match (&settings.refresh_token, &settings.token) {
            (Some(rt), _) => {
                let (access, rotated) = refresh(&http, settings, rt).await?;
                if let Some(rotated) = rotated {
                    settings.refresh_token = Some(rotated);
                    if path.exists() {
                        save_settings(path, settings)?;
                    }
                }
                Some(access)
            }
            (None, Some(t)) => Some(t.clone()),
            (None, None) => None,
        };
        Ok(Self {
            http,
            endpoint,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        answer(
            request
                .send()
                .await
                .map_err(|e| fail(format!("{}: {e}", self.endpoint)))?,
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }
}

async fn refresh(
    http: &reqwest::Client,
    settings: &Settings,
    refresh_token: &str,
) -> Result<(String, Option<String>), Failure> {
    let issuer = settings.issuer_url.as_deref().ok_or_else(|| {
        fail("the settings file has a RefreshToken but no IssuerURL; log in again")
    })?;
    let metadata = get_json(
        http,
        &format!("{issuer}/.well-known/openid-configuration"),
        None,
    )
    .await?;
    let token_endpoint = metadata["token_endpoint"]
        .as_str()
        .ok_or_else(|| fail("the identity provider names no token endpoint"))?;
    let response = http
        .post(token_endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            (
                "client_id",
                settings.client_id.as_deref().unwrap_or("appstore-cli"),
            ),
        ])
        .send()
        .await
        .map_err(|e| fail(format!("{token_endpoint}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(fail(format!(
            "refreshing the token failed ({}): log in again",
            body["error"].as_str().unwrap_or(status.as_str())
        )));
    }
    let access = body["access_token"]
        .as_str()
        .ok_or_else(|| fail("the identity provider sent no access token"))?;
    Ok((
        access.to_owned(),
        body["refresh_token"].as_str().map(str::to_owned),
    ))
}

fn date(v: &Value) -> &str {
    v.as_str().map_or("", |s| s.get(..19).unwrap_or(s))
}

fn tags(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>, out: &mut std::io::StdoutLock<'_>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
}

fn print_app(app: &Value) {
    let fields = [
        ("ID", app["id"].as_str().unwrap_or("").to_owned()),
        ("Title", app["title"].as_str().unwrap_or("").to_owned()),
        ("Version", app["version"].as_str().unwrap_or("").to_owned()),
        ("Created At", date(&app["createdAt"]).to_owned()),
        ("Updated At", date(&app["updatedAt"]).to_owned()),
        ("Owner", app["owner"].as_str().unwrap_or("").to_owned()),
        (
            "Visibility",
            app["visibility"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "Description",
            app["description"].as_str().unwrap_or("").to_owned(),
        ),
        ("Tags", tags(&app["tags"])),
    ];
    for (k, v) in fields {
        println!("{k:<12} {v}");
    }
}

/// `s` as one URL path segment: ids and names are letters, digits, `-`, `_` and `.`.
fn segment(s: &str) -> Result<&str, Failure> {
    let plain = !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        Ok(s)
    } else {
        Err(fail(format!("{s:?} is not an app id or tag name")))
    }
}

async fn app(client: &Client, json: bool, command: AppCommand) -> Result<(), Failure> {
    use reqwest::Method;
    let show = |v: &Value| {
        if json {
            println!("{v}");
        } else {
            print_app(v);
        }
    };
    match command {
        AppCommand::Import { bundle, visibility } => {
            let file = tokio::fs::File::open(&bundle)
                .await
                .map_err(|e| fail(format!("{}: {e}", bundle.display())))?;
            let mut path = "/api/v1/apps".to_owned();
            if let Some(v) = visibility {
                path.push_str(&format!("?visibility={v}"));
            }
            let request = client
                .request(Method::POST, &path)
                .header("content-type", "application/zip")
                .body(reqwest::Body::from(file));
            show(&client.send(request).await?);
        }
        AppCommand::List { name, tag, query } => {
            let mut apps = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut params: Vec<(&str, String)> = vec![("pageSize", "500".into())];
                params.extend(name.clone().map(|v| ("name", v)));
                params.extend(tag.clone().map(|v| ("tag", v)));
                params.extend(query.clone().map(|v| ("q", v)));
                params.extend(token.clone().map(|v| ("pageToken", v)));
                let page = client
                    .send(client.request(Method::GET, "/api/v1/apps").query(&params))
                    .await?;
                apps.extend(page["apps"].as_array().cloned().unwrap_or_default());
                match page["nextPageToken"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
            if json {
                println!("{}", Value::Array(apps));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|a| {
                    vec![
                        a["id"].as_str().unwrap_or("").to_owned(),
                        format!(
                            "{} {}",
                            a["title"].as_str().unwrap_or(""),
                            a["version"].as_str().unwrap_or("")
                        ),
                        a["owner"].as_str().unwrap_or("").to_owned(),
                        date(&a["createdAt"]).to_owned(),
                        a["visibility"].as_str().unwrap_or("").to_owned(),
                        tags(&a["tags"]),
                    ]
                })
                .collect();
            table(
                &["ID", "TITLE", "OWNER", "CREATED", "VISIBILITY", "TAGS"],
                &rows,
            );
        }
        AppCommand::Get { id } => show(
            &client
                .get(&format!("/api/v1/apps/{}", segment(&id)?))
                .await?,
        ),
        AppCommand::Delete { id } => {
            client
                .send(client.request(Method::DELETE, &format!("/api/v1/apps/{}", segment(&id)?)))
                .await?;
            if !json {
                println!("Deleted {id}");
            }
        }
        AppCommand::Update { id, visibility } => {
            let request = client
                .request(Method::PATCH, &format!("/api/v1/apps/{}", segment(&id)?))
                .json(&serde_json::json!({ "visibility": visibility }));
            show(&client.send(request).await?);
        }
        AppCommand::Download { id, path } => download(client, &id, path, json).await?,
        AppCommand::Run {
            id,
            visibility,
            routing_mode,
        } => {
            let request = client
                .request(
                    Method::POST,
                    &format!("/api/v1/apps/{}/instances", segment(&id)?),
                )
                .json(
                    &serde_json::json!({ "visibility": visibility, "routingMode": routing_mode }),
                );
            let instance = client.send(request).await?;
            if json {
                println!("{instance}");
            } else {
                print_instance(&instance);
            }
        }
    }
    Ok(())
}

fn print_instance(i: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    println!("ID:          {}", s(&i["id"]));
    println!(
        "App:         {} {} ({})",
        s(&i["appTitle"]),
        s(&i["appVersion"]),
        s(&i["appId"])
    );
    println!("Owner:       {}", s(&i["owner"]));
    println!("Visibility:  {}", s(&i["visibility"]));
    println!("Routing:     {}", s(&i["routingMode"]));
    println!("Status:      {}", s(&i["status"]["phase"]));
    println!("URL:         {}", s(&i["url"]));
}

async fn instance(client: &Client, json: bool, command: InstanceCommand) -> Result<(), Failure> {
    use reqwest::Method;
    let path = |id: &str, rest: &str| -> Result<String, Failure> {
        Ok(format!("/api/v1/instances/{}{rest}", segment(id)?))
    };
    let show = |v: &Value| {
        if json {
            println!("{v}");
        } else {
            print_instance(v);
        }
    };
    match command {
        InstanceCommand::List { all, app } => {
            let mut params: Vec<(&str, String)> = Vec::new();
            if all {
                params.push(("all", "true".into()));
            }
            params.extend(app.map(|a| ("app", a)));
            let list = client
                .send(
                    client
                        .request(Method::GET, "/api/v1/instances")
                        .query(&params),
                )
                .await?;
            if json {
                println!("{}", list["instances"]);
                return Ok(());
            }
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            let rows: Vec<Vec<String>> = list["instances"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|i| {
                    vec![
                        s(&i["id"]),
                        format!("{} {}", s(&i["appTitle"]), s(&i["appVersion"])),
                        s(&i["owner"]),
                        s(&i["status"]["phase"]),
                        s(&i["visibility"]),
                        s(&i["url"]),
                    ]
                })
                .collect();
            table(
                &["ID", "APP", "OWNER", "STATUS", "VISIBILITY", "URL"],
                &rows,
            );
        }
        InstanceCommand::Get { id } => show(&client.get(&path(&id, "")?).await?),
        InstanceCommand::Status { id } => {
            let status = client.get(&path(&id, "/status")?).await?;
            if json {
                println!("{status}");
            } else {
                let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                println!("Phase:         {}", s(&status["phase"]));
                println!("Reason:        {}", s(&status["reason"]));
                println!("Restarts:      {}", status["restarts"]);
                println!("Last failure:  {}", s(&status["lastFailure"]));
            }
        }
        InstanceCommand::Logs {
            id,
            previous,
            follow,
        } => {
            use futures::StreamExt;
            let request = client.request(Method::GET, &path(&id, "/logs")?).query(&[
                ("previous", previous.to_string()),
                ("follow", follow.to_string()),
            ]);
            let response = request
                .send()
                .await
                .map_err(|e| fail(format!("{}: {e}", client.endpoint)))?;
            if !response.status().is_success() {
                answer(response).await?;
                return Ok(());
            }
            let mut body = response.bytes_stream();
            let mut out = std::io::stdout();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| fail(format!("reading the log: {e}")))?;
                std::io::Write::write_all(&mut out, &chunk)
                    .map_err(|e| fail(format!("writing the log: {e}")))?;
            }
        }
        InstanceCommand::Suspend { id } => {
            show(
                &client
                    .send(client.request(Method::POST, &path(&id, "/suspend")?))
                    .await?,
            );
        }
        InstanceCommand::Resume { id } => {
            show(
                &client
                    .send(client.request(Method::POST, &path(&id, "/resume")?))
                    .await?,
            );
        }
        InstanceCommand::Terminate { id } => {
            client
                .send(client.request(Method::DELETE, &path(&id, "")?))
                .await?;
            if !json {
                println!("Terminated {id}");
            }
        }
        InstanceCommand::Update { id, visibility } => {
            let request = client
                .request(Method::PATCH, &path(&id, "")?)
                .json(&serde_json::json!({ "visibility": visibility }));
            show(&client.send(request).await?);
        }
    }
    Ok(())
}

async fn download(
    client: &Client,
    id: &str,
    path: Option<PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let id = segment(id)?;
    let app = client.get(&format!("/api/v1/apps/{id}")).await?;
    let path = path.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.{}.wave",
            app["name"].as_str().unwrap_or("app"),
            app["version"].as_str().unwrap_or("0")
        ))
    });
    let mut response = client
        .request(reqwest::Method::GET, &format!("/api/v1/apps/{id}/bundle"))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return answer(response).await.map(|_| ());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        bytes += chunk.len() as u64;
        tmp.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
    }
    tmp.persist(&path).map_err(|e| fail(e.to_string()))?;
    if json {
        println!("{}", serde_json::json!({ "path": path, "bytes": bytes }));
    } else {
        println!("{} ({bytes} bytes)", path.display());
    }
    Ok(())
}

async fn tag(client: &Client, json: bool, command: TagCommand) -> Result<(), Failure> {
    use reqwest::Method;
    match command {
        TagCommand::List => {
            let page = client.get("/api/v1/tags").await?;
            if json {
                println!("{}", page["tags"]);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = page["tags"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        t["name"].as_str().unwrap_or("").to_owned(),
                        t["title"].as_str().unwrap_or("").to_owned(),
                        t["color"].as_str().unwrap_or("").to_owned(),
                        t["isCategory"].as_bool().unwrap_or(false).to_string(),
                        t["description"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            table(
                &["NAME", "TITLE", "COLOR", "CATEGORY", "DESCRIPTION"],
                &rows,
            );
        }
        TagCommand::Create {
            name,
            title,
            color,
            description,
            category,
            admin_roles,
            visitor_roles,
        } => {
            let body = serde_json::json!({
                "name": name,
                "title": title.unwrap_or_default(),
                "color": color.unwrap_or_default(),
                "description": description.unwrap_or_default(),
                "isCategory": category,
                "adminRoles": admin_roles,
                "visitorRoles": visitor_roles,
            });
            let tag = client
                .send(client.request(Method::POST, "/api/v1/tags").json(&body))
                .await?;
            if json {
                println!("{tag}");
            } else {
                println!("Created tag {}", tag["name"].as_str().unwrap_or(""));
            }
        }
        TagCommand::Assign { tag, app } => {
            client
                .send(client.request(
                    Method::PUT,
                    &format!("/api/v1/apps/{}/tags/{}", segment(&app)?, segment(&tag)?),
                ))
                .await?;
            if !json {
                println!("Tag {tag} assigned to {app}");
            }
        }
        TagCommand::Remove { tag, app } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/api/v1/apps/{}/tags/{}", segment(&app)?, segment(&tag)?),
                ))
                .await?;
            if !json {
                println!("Tag {tag} removed from {app}");
            }
        }
    }
    Ok(())
}
