//! Drive's file browser at `/_drive/ui/`: the page and its assets (built into the binary),
//! browser sign-in (OIDC authorization code flow with PKCE against Drive's issuer), a
//! session holding the user's STS session credentials, and a small JSON API that presigns
//! the S3 requests the page then sends to Drive itself, so every byte goes between the
//! browser and the S3 endpoint under Drive's normal authorization.
//!
//! Nothing is kept in the replica: the sign-in in flight (PKCE verifier, redirect URI,
//! `state`, start) and the session (principal, session credentials, CSRF token, expiry) are
//! sealed with the server key into their `HttpOnly` cookies, so any replica that shares the
//! key (or has it among its previous keys) continues them. Signing out clears the cookie
//! and records the session's id in the ended-sessions list of the metadata database, so a
//! copy of the cookie is refused too, on every replica within the revocation cache age.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared_identity::{ALNUM, DevIssuer, Principal, Sealer, SessionCredentials, random_string};

use crate::api::{error, json_response};
use crate::namespace;
use crate::revocations::Revocations;
use crate::sts::Sts;

/// The path prefix of the file browser.
pub const PREFIX: &str = "/_drive/ui";
const SESSION_COOKIE: &str = "drive_ui_session";
const LOGIN_COOKIE: &str = "drive_ui_login";
/// Sealing contexts of the two cookies, so that neither opens as the other.
const LOGIN_CONTEXT: &str = "drive-ui-login";
const SESSION_CONTEXT: &str = "drive-ui-session";
/// How long a browser session (and its session credentials) lasts, at most (also capped
/// by `--sts-max-duration-secs`).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a sign-in may take between the redirect to the issuer and the callback.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// Validity of the URLs the page presigns for itself.
const PRESIGN_SECS: u64 = 900;
/// Longest validity of a share link, as S3 allows: 7 days.
const MAX_SHARE_SECS: u64 = 7 * 24 * 3600;
const MAX_BODY: usize = 16 * 1024;
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' blob: data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Where users sign in.
pub enum Provider {
    /// The built-in development issuer, called in-process.
    Dev(Arc<DevIssuer>),
    /// An external issuer, whose endpoints come from its discovery document.
    External(String),
}

/// A sign-in in flight, sealed into the login cookie: the `state` it answers, the PKCE
/// verifier, where the code comes back and when it started (Unix seconds).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Login {
    state: String,
    verifier: String,
    redirect_uri: String,
    started: u64,
}

/// A signed-in browser, sealed into the session cookie.
#[derive(Serialize, Deserialize)]
struct Session {
    /// Names the session in the ended-sessions list when it signs out.
    id: String,
    #[serde(rename = "p")]
    principal: Principal,
    #[serde(rename = "ak")]
    access_key_id: String,
    #[serde(rename = "sk")]
    secret_access_key: String,
    #[serde(rename = "st")]
    session_token: String,
    /// When the session and its credentials end (Unix seconds).
    #[serde(rename = "exp")]
    expires: u64,
    /// The CSRF token of this session's page.
    csrf: String,
}

impl Session {
    fn new(principal: Principal, credentials: SessionCredentials) -> Self {
        Self {
            id: random_string(22, ALNUM),
            principal,
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
            expires: unix(credentials.expiration),
            csrf: random_string(43, ALNUM),
        }
    }
}

/// The file browser's state.
pub struct Ui {
    provider: Provider,
    client_id: String,
    scope: String,
    public_url: Option<String>,
    region: String,
    http: reqwest::Client,
    sealer: Sealer,
    ended: Arc<Revocations>,
}

impl Ui {
    /// A file browser signing users in at `provider` as the public client `client_id`
    /// with `scope`, reached at `public_url` (else at the request's host), signing for
    /// `region`, sealing its cookies with `sealer` and refusing the sessions in `ended`.
    pub fn new(
        provider: Provider,
        client_id: String,
        scope: String,
        public_url: Option<String>,
        region: String,
        sealer: Sealer,
        ended: Arc<Revocations>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            provider,
            client_id,
            scope,
            public_url,
            region,
            http,
            sealer,
            ended,
        }
    }

    /// The sign-in sealed for its cookie.
    fn seal_login(&self, login: &Login) -> String {
        let json = serde_json::to_vec(login).expect("a sign-in serializes");
        self.sealer.seal(LOGIN_CONTEXT, &json)
    }

    /// The sign-in a login cookie holds, if it was sealed by a replica and is still
    /// running at `now`.
    fn open_login(&self, sealed: &str, now: SystemTime) -> Option<Login> {
        let json = self.sealer.open(LOGIN_CONTEXT, sealed)?;
        let login: Login = serde_json::from_slice(&json).ok()?;
        (unix(now) < login.started.saturating_add(LOGIN_LIFETIME.as_secs())).then_some(login)
    }

    /// The session sealed for its cookie.
    fn seal_session(&self, session: &Session) -> String {
        let json = serde_json::to_vec(session).expect("a session serializes");
        self.sealer.seal(SESSION_CONTEXT, &json)
    }

    /// The session a session cookie holds, if it was sealed by a replica and has not
    /// ended at `now`.
    fn open_session(&self, sealed: &str, now: SystemTime) -> Option<Session> {
        let json = self.sealer.open(SESSION_CONTEXT, sealed)?;
        let session: Session = serde_json::from_slice(&json).ok()?;
        (unix(now) < session.expires).then_some(session)
    }

    /// Answers a request under [`PREFIX`].
    pub async fn handle(&self, sts: &Sts, req: Request<Incoming>) -> Response<s3s::Body> {
        let path = req.uri().path()[PREFIX.len()..].to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "") => redirect(&format!("{PREFIX}/"), None),
            (Method::GET | Method::HEAD, "/") => asset("text/html; charset=utf-8", INDEX_HTML),
            (Method::GET | Method::HEAD, "/app.js") => {
                asset("text/javascript; charset=utf-8", APP_JS)
            }
            (Method::GET | Method::HEAD, "/app.css") => asset("text/css; charset=utf-8", APP_CSS),
            (Method::GET, "/login") => self.login(&req).await,
            (Method::GET, "/callback") => self.callback(sts, &req).await,
            (Method::GET, "/api/me") => self.me(&req).await,
            (Method::POST, "/api/logout") => self.logout(&req).await,
            (Method::POST, "/api/presign") => self.presign(req).await,
            _ => error(StatusCode::NOT_FOUND, "not_found", "No such page."),
        }
    }

    /// The base URL browsers reach Drive at, and whether cookies must be `Secure`.
    fn base(&self, req: &Request<Incoming>) -> (String, bool) {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", host(req).unwrap_or("127.0.0.1")));
        let base = base.trim_end_matches('/').to_owned();
        let loopback = base
            .strip_prefix("http://")
            .map(|rest| {
                let host = rest.split('/').next().unwrap_or("");
                let name = host
                    .rsplit_once(':')
                    .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(host, |(n, _)| n);
                matches!(name, "127.0.0.1" | "localhost" | "[::1]")
            })
            .unwrap_or(false);
        (base, !loopback)
    }

    /// The issuer's authorization and token endpoints.
    async fn endpoints(&self) -> Result<(String, Option<String>), String> {
        match &self.provider {
            Provider::Dev(dev) => Ok((format!("{}/authorize", dev.issuer()), None)),
            Provider::External(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let text = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| format!("the identity provider did not answer: {e}"))?
                    .text()
                    .await
                    .map_err(|e| format!("the identity provider did not answer: {e}"))?;
                let doc: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the identity provider's metadata is not JSON: {e}"))?;
                let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
                let authorize = field("authorization_endpoint")
                    .ok_or("the identity provider has no authorization endpoint")?;
                let token =
                    field("token_endpoint").ok_or("the identity provider has no token endpoint")?;
                Ok((authorize, Some(token)))
            }
        }
    }

    /// Starts a sign-in: a PKCE verifier sealed into the login cookie, the browser sent to
    /// the issuer.
    async fn login(&self, req: &Request<Incoming>) -> Response<s3s::Body> {
        let (base, secure) = self.base(req);
        let (authorize, _) = match self.endpoints().await {
            Ok(e) => e,
            Err(e) => return page(StatusCode::BAD_GATEWAY, &e),
        };
        let state = random_string(32, ALNUM);
        let verifier = random_string(64, ALNUM);
        let challenge = base64_simd::URL_SAFE_NO_PAD.encode_to_string(Sha256::digest(&verifier));
        let redirect_uri = format!("{base}{PREFIX}/callback");
        let Ok(mut url) = reqwest::Url::parse(&authorize) else {
            return page(
                StatusCode::BAD_GATEWAY,
                "The identity provider's authorization endpoint is not a URL.",
            );
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &random_string(16, ALNUM))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let sealed = self.seal_login(&Login {
            state,
            verifier,
            redirect_uri,
            started: unix(SystemTime::now()),
        });
        let cookie = cookie(LOGIN_COOKIE, &sealed, LOGIN_LIFETIME.as_secs(), secure);
        redirect(url.as_str(), Some(cookie))
    }

    /// Ends a sign-in: the code exchanged for an access token, the token for session
    /// credentials (as STS does), and a new session.
    async fn callback(&self, sts: &Sts, req: &Request<Incoming>) -> Response<s3s::Body> {
        let (_, secure) = self.base(req);
        let params = crate::sts::parse_form(req.uri().query().unwrap_or(""));
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if let Some(e) = get("error") {
            let why = get("error_description").unwrap_or(e);
            return page(
                StatusCode::FORBIDDEN,
                &format!("The identity provider refused the sign-in: {why}"),
            );
        }
        let state = get("state").unwrap_or("");
        let now = SystemTime::now();
        let login = cookies(req)
            .filter(|(k, _)| *k == LOGIN_COOKIE)
            .filter_map(|(_, v)| self.open_login(v, now))
            .find(|l| !state.is_empty() && l.state == state);
        let (Some(login), Some(code)) = (login, get("code")) else {
            return page(
                StatusCode::BAD_REQUEST,
                "This sign-in is unknown or has expired; please sign in again.",
            );
        };
        let token = match self.exchange(code, &login).await {
            Ok(t) => t,
            Err((status, e)) => {
                tracing::info!(error = %e, "file browser sign-in failed");
                return page(status, &e);
            }
        };
        let (verified, credentials) = match sts.assume(&token, SESSION_LIFETIME).await {
            Ok(answer) => answer,
            Err(refusal) => {
                return page(
                    StatusCode::FORBIDDEN,
                    &format!("Drive does not accept this sign-in: {}", refusal.message),
                );
            }
        };
        let max_age = credentials
            .expiration
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        let sealed = self.seal_session(&Session::new(verified.principal, credentials));
        let mut response = redirect(
            &format!("{PREFIX}/"),
            Some(cookie(SESSION_COOKIE, &sealed, max_age, secure)),
        );
        response.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie(LOGIN_COOKIE, "", 0, secure)).expect("a cookie"),
        );
        response
    }

    /// Redeems an authorization code for an access token. A code the provider refuses
    /// (used already, expired, forged) is the browser's 400; a provider that does not
    /// answer properly is a 502.
    async fn exchange(&self, code: &str, login: &Login) -> Result<String, (StatusCode, String)> {
        let unreachable = |e: String| (StatusCode::BAD_GATEWAY, e);
        let refused = |why: String| {
            (
                StatusCode::BAD_REQUEST,
                format!("This sign-in cannot be completed ({why}); please sign in again."),
            )
        };
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", login.verifier.as_str()),
            ("redirect_uri", login.redirect_uri.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        let answer = match &self.provider {
            Provider::Dev(dev) => {
                let params: Vec<(String, String)> = form
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                dev.token(&params, SystemTime::now())
                    .map_err(|e| refused(e.to_string()))?
            }
            Provider::External(_) => {
                let (_, token) = self.endpoints().await.map_err(unreachable)?;
                let token = token.ok_or_else(|| {
                    unreachable("the identity provider has no token endpoint".to_owned())
                })?;
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
                    .collect::<Vec<_>>()
                    .join("&");
                let response = self
                    .http
                    .post(&token)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        unreachable(format!("the identity provider did not answer: {e}"))
                    })?;
                let status = response.status();
                let text = response.text().await.map_err(|e| {
                    unreachable(format!("the identity provider did not answer: {e}"))
                })?;
                if status.is_client_error() {
                    let why = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| status.to_string());
                    return Err(refused(why));
                }
                if !status.is_success() {
                    return Err(unreachable(format!(
                        "the identity provider failed ({status}): {text}"
                    )));
                }
                serde_json::from_str(&text).map_err(|e| {
                    unreachable(format!("the identity provider's answer is not JSON: {e}"))
                })?
            }
        };
        answer
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| unreachable("the identity provider sent no access token".to_owned()))
    }

    /// The request's session, if it has a live one that has not signed out; when the
    /// sign-outs cannot be read, the answer to give instead (503).
    async fn session(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Option<Session>, Response<s3s::Body>> {
        let now = SystemTime::now();
        let Some(session) = cookies(req)
            .filter(|(k, _)| *k == SESSION_COOKIE)
            .find_map(|(_, v)| self.open_session(v, now))
        else {
            return Ok(None);
        };
        match self.ended.is_revoked(&session.id).await {
            Ok(false) => Ok(Some(session)),
            Ok(true) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "file browser sign-out lookup failed");
                Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Drive could not check your session; try again.",
                ))
            }
        }
    }

    /// Who is signed in, their buckets, the CSRF token and when the session ends.
    async fn me(&self, req: &Request<Incoming>) -> Response<s3s::Body> {
        let s = match self.session(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return signed_out(),
            Err(unavailable) => return unavailable,
        };
        let buckets: Vec<String> = namespace::aliases(&s.principal)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "user": s.principal.display_name(),
                "buckets": buckets,
                "csrf": s.csrf,
                "expires": s.expires,
                "max_share_secs": MAX_SHARE_SECS,
            }),
        )
    }

    /// Ends the session: its id joins the ended sessions, its cookie is cleared.
    async fn logout(&self, req: &Request<Incoming>) -> Response<s3s::Body> {
        let (_, secure) = self.base(req);
        let s = match self.session(req).await {
            Ok(Some(s)) if csrf_ok(req, &s) => s,
            Ok(Some(_)) => return bad_csrf(),
            Ok(None) => return signed_out(),
            Err(unavailable) => return unavailable,
        };
        if let Err(e) = self.ended.revoke(&s.id).await {
            tracing::error!(error = %e, "file browser sign-out failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Drive could not sign you out; try again.",
            );
        }
        let mut response = json_response(StatusCode::OK, &json!({}));
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie(SESSION_COOKIE, "", 0, secure)).expect("a cookie"),
        );
        response
    }

    /// Presigns one S3 request for the page with the session's credentials.
    async fn presign(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let Some(host) = host(&req).map(str::to_owned) else {
            return error(StatusCode::BAD_REQUEST, "bad_request", "No Host header.");
        };
        let session = match self.session(&req).await {
            Ok(Some(s)) if csrf_ok(&req, &s) => s,
            Ok(Some(_)) => return bad_csrf(),
            Ok(None) => return signed_out(),
            Err(unavailable) => return unavailable,
        };
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "bad_request",
                    "The request is too large.",
                );
            }
        };
        let request = match serde_json::from_slice::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| PresignRequest::parse(&v))
        {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
        };
        let now = SystemTime::now();
        let left = session.expires.saturating_sub(unix(now));
        let expires = request.expires.unwrap_or(PRESIGN_SECS).min(left);
        if request.expires.is_some_and(|e| e > left) {
            return error(
                StatusCode::BAD_REQUEST,
                "too_long",
                &format!(
                    "A link cannot outlive your session, which ends in {} minutes; sign in again for longer links.",
                    left / 60
                ),
            );
        }
        if expires == 0 {
            return signed_out();
        }
        let path = match &request.key {
            Some(key) => format!("/{}/{key}", request.bucket),
            None => format!("/{}", request.bucket),
        };
        let url = presign_url(
            &Signing {
                access_key: &session.access_key_id,
                secret_key: &session.secret_access_key,
                token: Some(&session.session_token),
                region: &self.region,
                host: &host,
            },
            request.method.as_str(),
            &path,
            &request.query,
            &request.headers,
            expires,
            now,
        );
        json_response(
            StatusCode::OK,
            &json!({ "url": url, "expires": unix(now) + expires }),
        )
    }
}

/// What the page asks to have presigned.
struct PresignRequest {
    method: Method,
    bucket: String,
    key: Option<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    expires: Option<u64>,
}

/// Query parameters the page may have signed.
const QUERY: &[&str] = &[
    "list-type",
    "prefix",
    "delimiter",
    "continuation-token",
    "max-keys",
    "start-after",
    "uploads",
    "uploadId",
    "partNumber",
    "part-number-marker",
    "max-parts",
    "delete",
    "response-content-disposition",
    "response-content-type",
];
/// Headers the page may have signed.
const HEADERS: &[&str] = &["x-amz-copy-source", "range"];

impl PresignRequest {
    fn parse(v: &Value) -> Result<Self, String> {
        let text = |name: &str| v.get(name).and_then(Value::as_str);
        let method = match text("method") {
            Some(m @ ("GET" | "HEAD" | "PUT" | "POST" | "DELETE")) => {
                Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?
            }
            _ => return Err("method must be GET, HEAD, PUT, POST or DELETE".into()),
        };
        let bucket = text("bucket").unwrap_or_default().to_owned();
        if bucket.is_empty()
            || !(bucket == namespace::HOME_ALIAS || s3s::path::check_bucket_name(&bucket))
        {
            return Err("bucket must name a bucket".into());
        }
        let key = text("key").filter(|k| !k.is_empty()).map(str::to_owned);
        let pairs = |name: &str, allowed: &[&str]| -> Result<Vec<(String, String)>, String> {
            let Some(map) = v.get(name) else {
                return Ok(vec![]);
            };
            let map = map
                .as_object()
                .ok_or_else(|| format!("{name} must be an object"))?;
            map.iter()
                .map(|(k, value)| {
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("{name}.{k} must be a string"))?;
                    if allowed.contains(&k.as_str()) {
                        Ok((k.clone(), value.to_owned()))
                    } else {
                        Err(format!("{name}.{k} is not allowed"))
                    }
                })
                .collect()
        };
        let query = pairs("query", QUERY)?;
        let headers = pairs("headers", HEADERS)?;
        let expires = match v.get("expires") {
            None | Some(Value::Null) => None,
            Some(e) => match e.as_u64() {
                Some(s) if (1..=MAX_SHARE_SECS).contains(&s) => Some(s),
                _ => return Err("expires must be 1 to 604800 seconds (7 days)".into()),
            },
        };
        Ok(Self {
            method,
            bucket,
            key,
            query,
            headers,
            expires,
        })
    }
}

/// Who signs a presigned URL, and for where.
struct Signing<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    token: Option<&'a str>,
    region: &'a str,
    host: &'a str,
}

/// Characters SigV4 leaves unencoded: letters, digits and `-._~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A SigV4 query-signed URL (path and query, no scheme or host) for `method` on the
/// decoded `path`, with `query` and the signed `headers`, valid for `expires` seconds.
fn presign_url(
    who: &Signing<'_>,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    expires: u64,
    now: SystemTime,
) -> String {
    let at = time::OffsetDateTime::from(now);
    let date = format!("{:04}{:02}{:02}", at.year(), u8::from(at.month()), at.day());
    let amz_date = format!(
        "{date}T{:02}{:02}{:02}Z",
        at.hour(),
        at.minute(),
        at.second()
    );
    let scope = format!("{date}/{}/s3/aws4_request", who.region);
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .chain([("host".to_owned(), who.host.to_owned())])
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut params: Vec<(String, String)> = query.to_vec();
    params.extend([
        ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
        (
            "X-Amz-Credential".into(),
            format!("{}/{scope}", who.access_key),
        ),
        ("X-Amz-Date".into(), amz_date.clone()),
        ("X-Amz-Expires".into(), expires.to_string()),
        ("X-Amz-SignedHeaders".into(), signed_headers.clone()),
    ]);
    if let Some(token) = who.token {
        params.push(("X-Amz-Security-Token".into(), token.to_owned()));
    }
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    let canonical_query = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_path = path.split('/').map(encode).collect::<Vec<_>>().join("/");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{method}\n{canonical_path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD"
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex_simd::encode_to_string(
            Sha256::digest(canonical.as_bytes()),
            hex_simd::AsciiCase::Lower
        )
    );
    let mut key = hmac(
        format!("AWS4{}", who.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [who.region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature =
        hex_simd::encode_to_string(hmac(&key, to_sign.as_bytes()), hex_simd::AsciiCase::Lower);
    format!("{canonical_path}?{canonical_query}&X-Amz-Signature={signature}")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn host(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))
}

/// The request's cookies, name and value.
fn cookies(req: &Request<Incoming>) -> impl Iterator<Item = (&str, &str)> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// Whether the request carries the session's CSRF token in `X-CSRF-Token`.
fn csrf_ok(req: &Request<Incoming>, session: &Session) -> bool {
    use subtle::ConstantTimeEq;
    req.headers()
        .get("x-csrf-token")
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())))
}

fn cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={PREFIX}/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

fn signed_out() -> Response<s3s::Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "signed_out",
        "You are not signed in, or your session has ended.",
    )
}

fn bad_csrf() -> Response<s3s::Body> {
    error(
        StatusCode::FORBIDDEN,
        "csrf",
        "The request lacks this page's CSRF token; reload the page.",
    )
}

/// Security headers of every page and asset.
fn secure_headers(builder: http::response::Builder) -> http::response::Builder {
    builder
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
}

fn asset(content_type: &str, body: &'static str) -> Response<s3s::Body> {
    secure_headers(Response::builder())
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(s3s::Body::from(body.to_owned()))
        .expect("an asset")
}

fn redirect(location: &str, cookie: Option<String>) -> Response<s3s::Body> {
    let mut builder = secure_headers(Response::builder())
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(c) = cookie {
        builder = builder.header(header::SET_COOKIE, c);
    }
    builder.body(s3s::Body::empty()).expect("a redirect")
}

/// A small page saying what went wrong, with a way to sign in again.
fn page(status: StatusCode, message: &str) -> Response<s3s::Body> {
    let escaped: String = message
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drive</title>\
         <link rel=\"stylesheet\" href=\"{PREFIX}/app.css\"></head><body><main class=\"notice\">\
         <h1>Drive</h1><p role=\"alert\">{escaped}</p><p><a href=\"{PREFIX}/login\">Sign in again</a></p>\
         </main></body></html>"
    );
    secure_headers(Response::builder())
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(s3s::Body::from(body))
        .expect("a page")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_identity::{ServerKey, Sessions};

    fn key(byte: u8) -> ServerKey {
        ServerKey::new(&[byte; 32]).unwrap()
    }

    /// A replica's file browser sealing with `current` and opening with `older` too (its
    /// ended-sessions list is never read here).
    fn replica(current: ServerKey, older: Vec<ServerKey>) -> Ui {
        sqlx::any::install_default_drivers();
        // No maintenance task: these tests run without a runtime.
        let pool = sqlx::any::AnyPoolOptions::new()
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy("sqlite::memory:")
            .unwrap();
        let ended = Revocations::new(
            pool,
            crate::revocations::List::UiSessions {
                lifetime: SESSION_LIFETIME,
            },
            Duration::from_secs(1),
        );
        Ui::new(
            Provider::External("https://id.example.com/realms/platform".into()),
            "drive".into(),
            "openid profile email".into(),
            None,
            "us-east-1".into(),
            Sealer::new(current, older),
            Arc::new(ended),
        )
    }

    /// A session as a Keycloak sign-in gives one, with its credentials issued by `key`.
    fn session(key: &ServerKey, now: SystemTime) -> Session {
        let principal = Principal {
            issuer: "https://keycloak.platform.example.com/realms/h2o-cloud-platform".into(),
            subject: "5f8c2e9a-3b1d-4c7e-9a6f-0d2b8e4c1a73".into(),
            username: Some("jane.doe".into()),
            email: Some("jane.doe@engineering.example.com".into()),
            groups: [
                "engineering",
                "engineering/data-science",
                "platform-admins",
                "project-forecasting",
                "project-fraud-detection",
                "project-churn",
            ]
            .map(str::to_owned)
            .to_vec(),
            roles: [
                "offline_access",
                "uma_authorization",
                "default-roles-h2o-cloud-platform",
                "drive-admin",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let credentials =
            Sessions::new(key.clone(), vec![]).issue(&principal, None, SESSION_LIFETIME, now);
        Session::new(principal, credentials)
    }

    #[test]
    fn sessions_open_on_every_replica_sharing_the_key() {
        let now = SystemTime::now();
        let (one, two) = (replica(key(1), vec![]), replica(key(1), vec![]));
        let sealed = one.seal_session(&session(&key(1), now));
        let opened = two
            .open_session(&sealed, now)
            .expect("another replica opens it");
        let expected = session(&key(1), now);
        assert_eq!(opened.principal, expected.principal);
        assert_eq!(opened.expires, unix(now) + SESSION_LIFETIME.as_secs());
        assert!(opened.access_key_id.starts_with("ASIA"));
        assert_eq!(opened.csrf.len(), 43);
        let again = one.open_session(&sealed, now).unwrap();
        assert_eq!(again.session_token, opened.session_token);
        assert_eq!(again.secret_access_key, opened.secret_access_key);
        assert!(!sealed.contains(&opened.secret_access_key));
        // After a rotation the old key still opens it; another key does not.
        let rotated = replica(key(2), vec![key(1)]);
        assert!(rotated.open_session(&sealed, now).is_some());
        assert!(replica(key(2), vec![]).open_session(&sealed, now).is_none());
        // Nor does it open as a sign-in.
        assert!(two.open_login(&sealed, now).is_none());
    }

    #[test]
    fn ended_or_altered_sessions_are_refused() {
        let now = SystemTime::now();
        let ui = replica(key(1), vec![]);
        let sealed = ui.seal_session(&session(&key(1), now));
        let end = now + SESSION_LIFETIME;
        assert!(
            ui.open_session(&sealed, end - Duration::from_secs(1))
                .is_some()
        );
        assert!(ui.open_session(&sealed, end).is_none());
        let mut altered = sealed.clone().into_bytes();
        let i = altered.len() / 2;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        assert!(
            ui.open_session(&String::from_utf8(altered).unwrap(), now)
                .is_none()
        );
        assert!(ui.open_session(&sealed[..sealed.len() - 4], now).is_none());
        assert!(ui.open_session("", now).is_none());
    }

    #[test]
    fn sign_ins_round_trip_and_expire() {
        let now = SystemTime::now();
        let login = Login {
            state: random_string(32, ALNUM),
            verifier: random_string(64, ALNUM),
            redirect_uri: "https://drive.example.com/_drive/ui/callback".into(),
            started: unix(now),
        };
        let sealed = replica(key(1), vec![]).seal_login(&login);
        let other = replica(key(1), vec![]);
        assert_eq!(other.open_login(&sealed, now).as_ref(), Some(&login));
        assert!(!sealed.contains(&login.verifier));
        let end = now + LOGIN_LIFETIME;
        assert!(
            other
                .open_login(&sealed, end - Duration::from_secs(1))
                .is_some()
        );
        assert!(other.open_login(&sealed, end).is_none());
        assert!(replica(key(2), vec![]).open_login(&sealed, now).is_none());
        assert!(other.open_session(&sealed, now).is_none());
    }

    #[test]
    fn session_cookies_stay_well_under_4_kb() {
        let ui = replica(key(1), vec![]);
        let sealed = ui.seal_session(&session(&key(1), SystemTime::now()));
        let set_cookie = cookie(SESSION_COOKIE, &sealed, SESSION_LIFETIME.as_secs(), true);
        assert!(set_cookie.len() < 3 * 1024, "{} bytes", set_cookie.len());
        assert!(HeaderValue::from_str(&set_cookie).is_ok());
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\",;".contains(&b)),
            "{sealed}"
        );
    }

    #[test]
    fn presigned_urls_match_aws_example() {
        // The example of AWS's "Authenticating Requests: Using Query Parameters".
        let who = Signing {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            token: None,
            region: "us-east-1",
            host: "examplebucket.s3.amazonaws.com",
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        let url = presign_url(&who, "GET", "/test.txt", &[], &[], 86400, at);
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
        assert!(url.starts_with("/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"));
    }

    #[test]
    fn only_known_parameters_are_signed() {
        let ok = json!({"method": "GET", "bucket": "_my", "key": "a b",
            "query": {"response-content-disposition": "attachment"}, "expires": 60});
        let r = PresignRequest::parse(&ok).unwrap();
        assert_eq!(r.key.as_deref(), Some("a b"));
        assert_eq!(r.expires, Some(60));
        for bad in [
            json!({"method": "PATCH", "bucket": "_my"}),
            json!({"method": "GET", "bucket": "Bad_Name"}),
            json!({"method": "GET", "bucket": "_my", "query": {"X-Amz-Expires": "1"}}),
            json!({"method": "GET", "bucket": "_my", "headers": {"authorization": "x"}}),
            json!({"method": "GET", "bucket": "_my", "expires": 604_801}),
        ] {
            assert!(PresignRequest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_encoded_in_the_path() {
        let who = Signing {
            access_key: "AK",
            secret_key: "SK",
            token: Some("T/+="),
            region: "us-east-1",
            host: "127.0.0.1:9000",
        };
        let url = presign_url(
            &who,
            "GET",
            "/_my/<img src=x onerror=alert(1)>.txt",
            &[],
            &[],
            60,
            SystemTime::now(),
        );
        assert!(
            url.starts_with("/_my/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Security-Token=T%2F%2B%3D"), "{url}");
    }
}
