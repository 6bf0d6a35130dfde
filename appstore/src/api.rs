//! The App Store's HTTP API (JSON; errors as `application/problem+json` with stable codes),
//! used by the CLI and the web UI, and the browser sign-in routes. Callers authenticate with
//! `Authorization: Bearer <access token>` or with a session cookie; see [`crate::authz`]
//! for what each may do.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use shared_identity::{Verifier, VerifyError};

use crate::authz::{Caller, Denied, Roles};
use crate::bundle::archive::ArchiveError;
use crate::bundle::manifest::ManifestError;
use crate::import::{ImportError, Importer, new_id};
use crate::metrics::{ImportLabels, Metrics};
use crate::repository::{AppFilter, AppRecord, RepoError, Repository, Tag, Visibility, now_ms};
use crate::store::Store;
use crate::web::{self, LOGIN_COOKIE, SESSION_COOKIE, SignIn};

/// What every handler shares.
pub struct AppState {
    /// Metadata.
    pub repo: Repository,
    /// Objects in Drive.
    pub store: Store,
    /// Bundle imports.
    pub importer: Importer,
    /// Browser sign-in.
    pub sign_in: SignIn,
    /// Access-token verification.
    pub verifier: Arc<Verifier>,
    /// What roles mean.
    pub roles: Roles,
    /// Instances.
    pub scheduler: crate::scheduler::Scheduler,
    /// The instances' token broker.
    pub broker: crate::broker::Broker,
    /// Discovery as instances see it (the broker as issuer).
    pub discovery: shared_identity::discovery::Discovery,
    /// Forwarding to instances.
    pub proxy: crate::proxy::Proxy,
    /// Seals the tickets that hand a browser's session to an instance's host.
    pub tickets: shared_identity::Sealer,
    /// Bearer tokens verified lately.
    pub bearers: BearerCache,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether apps may be PUBLIC.
    pub public_mode: bool,
    /// `Secure` on cookies.
    pub cookie_secure: bool,
    /// What clients need to sign in: issuer and CLI client id.
    pub client_config: Value,
}

type Shared = Arc<AppState>;

/// Verified bearer tokens by SHA-256, until they expire and for a minute at most, so that a
/// token sent with every request (an instance's pages, the API) is verified once.
#[derive(Default)]
pub struct BearerCache(
    std::sync::Mutex<
        std::collections::HashMap<[u8; 32], (std::time::SystemTime, shared_identity::Principal)>,
    >,
);

/// Entries at which the bearer cache is emptied.
const BEARER_CACHE_MAX: usize = 10_000;

impl BearerCache {
    fn key(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, token: &str) -> Option<shared_identity::Principal> {
        let map = self.0.lock().expect("bearer cache");
        map.get(&Self::key(token))
            .filter(|(until, _)| *until > std::time::SystemTime::now())
            .map(|(_, p)| p.clone())
    }

    fn put(
        &self,
        token: &str,
        until: std::time::SystemTime,
        principal: shared_identity::Principal,
    ) {
        let until = until.min(std::time::SystemTime::now() + std::time::Duration::from_secs(60));
        let mut map = self.0.lock().expect("bearer cache");
        if map.len() >= BEARER_CACHE_MAX {
            map.clear();
        }
        map.insert(Self::key(token), (until, principal));
    }
}

/// An error answer in RFC 9457 form.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    field: Option<String>,
}

impl Problem {
    /// A problem with `status`, stable `code` and a human `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn internal(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what} failed; the server log has the details"),
        )
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:appstore:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(crate) fn denied(d: Denied, what: &str) -> Problem {
    match d {
        Denied::SignIn => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("sign in to {what}"),
        ),
        Denied::Forbidden => Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("you may not {what}"),
        ),
    }
}

impl From<RepoError> for Problem {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Duplicate { .. } => {
                Problem::new(StatusCode::CONFLICT, "app-exists", e.to_string()).field("App.Version")
            }
            RepoError::VersionLimit(_) => {
                Problem::new(StatusCode::CONFLICT, "app-version-limit", e.to_string())
            }
            RepoError::TagExists(_) => {
                Problem::new(StatusCode::CONFLICT, "tag-exists", e.to_string()).field("name")
            }
            RepoError::HasInstances(_) => {
                Problem::new(StatusCode::CONFLICT, "app-has-instances", e.to_string())
            }
            other => Problem::internal("the metadata database", &other),
        }
    }
}

impl From<ImportError> for Problem {
    fn from(e: ImportError) -> Self {
        let bad = |code, e: &dyn std::fmt::Display| {
            Problem::new(StatusCode::BAD_REQUEST, code, e.to_string())
        };
        match e {
            ImportError::TooLarge(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bundle-too-large",
                e.to_string(),
            ),
            ImportError::Upload(_) => bad("upload-failed", &e),
            ImportError::Archive(ArchiveError::Io(io)) => {
                Problem::internal("reading the bundle", &io)
            }
            ImportError::Archive(a) => {
                let p = bad(a.code(), &a);
                match a.path() {
                    Some(path) => p.field(path),
                    None => p,
                }
            }
            ImportError::NoManifest => bad("missing-manifest", &e).field("app.toml"),
            ImportError::Manifest(ManifestError::Invalid { ref field, .. }) => {
                let field = field.clone();
                bad("invalid-manifest", &e).field(field)
            }
            ImportError::Manifest(_) => bad("invalid-manifest", &e).field("app.toml"),
            ImportError::Asset(ref a) => {
                let path = a.path.clone();
                bad("invalid-asset", &e).field(path)
            }
            ImportError::UnknownTag(_) => bad("unknown-tag", &e).field("App.Tags"),
            ImportError::UnknownSecret { ref field, .. } => {
                let field = field.clone();
                bad("unknown-secret", &e).field(field)
            }
            ImportError::Denied(what, d) => {
                let mut p = denied(d, "import apps");
                p.detail = what;
                p
            }
            ImportError::Repository(r) => r.into(),
            ImportError::Store(s) => {
                tracing::error!(error = %s, "Drive failed during an import");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "drive-unavailable",
                    "Drive could not store the bundle; try again later",
                )
            }
            ImportError::Io(io) => Problem::internal("spooling the bundle", &io),
        }
    }
}

/// The authenticated caller of a request, and how it authenticated.
pub struct Authn(pub Caller);

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller a request's bearer token or session cookie names; with the session too, when
/// a cookie did it.
pub(crate) async fn identify(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Caller, Option<web::WebSession>), Problem> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid-token",
                    "Authorization must be `Bearer <access token>`",
                )
            })?;
        if let Some(principal) = state.bearers.get(token) {
            return Ok((state.roles.caller(principal), None));
        }
        let verified = state.verifier.verify(token).await.map_err(|e| match e {
            VerifyError::Provider(_) => {
                tracing::error!(error = %e, "verifying an access token");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity-provider-unavailable",
                    e.to_string(),
                )
            }
            e => Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", e.to_string()),
        })?;
        state
            .bearers
            .put(token, verified.expires, verified.principal.clone());
        return Ok((state.roles.caller(verified.principal), None));
    }
    let Some(session_id) = cookie(headers, SESSION_COOKIE) else {
        return Ok((Caller::Anonymous, None));
    };
    session_caller(state, session_id).await
}

/// The caller of browser session `session_id` (anonymous if it is not one).
pub(crate) async fn session_caller(
    state: &AppState,
    session_id: &str,
) -> Result<(Caller, Option<web::WebSession>), Problem> {
    match state.sign_in.session(session_id).await {
        Ok(Some(s)) => Ok((state.roles.caller(s.principal.clone()), Some(s))),
        Ok(None) => Ok((Caller::Anonymous, None)),
        Err(e) => Err(Problem::internal("looking up the session", &e)),
    }
}

impl FromRequestParts<Shared> for Authn {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Problem> {
        let (caller, session) = identify(state, &parts.headers).await?;
        if let Some(session) = session
            && !is_safe(&parts.method)
        {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if !web::csrf_matches(&session, sent) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "requests authenticated by the session cookie must send its X-CSRF-Token",
                ));
            }
        }
        Ok(Authn(caller))
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| web::cookie_value(h, name))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The JSON form of an app; `detail` adds the runtime settings.
fn app_json(app: &AppRecord, detail: bool) -> Value {
    let base = format!("/api/v1/apps/{}", app.id);
    let mut v = json!({
        "id": app.id,
        "name": app.name,
        "version": app.version,
        "title": app.title,
        "description": app.description,
        "owner": app.owner_name,
        "ownerSubject": app.owner_subject,
        "visibility": app.visibility.as_str(),
        "lifecycle": app.lifecycle,
        "runtimeVersion": app.runtime_version,
        "tags": app.tags,
        "bundleSize": app.bundle_size,
        "bundleSha256": app.bundle_sha256,
        "iconUrl": app.icon.as_ref().map(|_| format!("{base}/icon")),
        "screenshotUrls": (0..app.screenshots.len()).map(|i| format!("{base}/screenshots/{i}")).collect::<Vec<_>>(),
        "hasLongDescription": !app.long_description.is_empty(),
        "createdAt": rfc3339(app.created_at),
        "updatedAt": rfc3339(app.updated_at),
    });
    if detail {
        v["manifest"] = app.manifest.clone();
    }
    v
}

fn tag_json(t: &Tag) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "title": t.title,
        "color": t.color,
        "description": t.description,
        "isCategory": t.is_category,
        "adminRoles": t.admin_roles,
        "visitorRoles": t.visitor_roles,
        "createdAt": rfc3339(t.created_at),
        "updatedAt": rfc3339(t.updated_at),
    })
}

/// A JSON body, or a problem saying why it is not one.
pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|Json(v)| v)
        .map_err(|e| Problem::new(e.status(), "invalid-body", e.body_text()))
}

/// Query parameters, or a problem saying which is wrong.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-query", e.body_text()))
}

fn not_found(what: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no such {what}"),
    )
}

/// An app the caller may see, or 404 (whether it exists or not).
async fn visible_app(state: &AppState, caller: &Caller, id: &str) -> Result<AppRecord, Problem> {
    state
        .repo
        .get(caller, id)
        .await?
        .ok_or_else(|| not_found("app"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    name: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    owner: Option<String>,
    visibility: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

pub(crate) fn parse_visibility(s: &str) -> Result<Visibility, Problem> {
    Visibility::parse(s).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-visibility",
            format!("visibility must be PRIVATE, ALL_USERS or PUBLIC, not {s:?}"),
        )
        .field("visibility")
    })
}

async fn list_apps(
    State(state): State<Shared>,
    Authn(caller): Authn,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let after = match q.page_token.as_deref() {
        Some(t) => Some(decode_page_token(t).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-page-token",
                "the page token is not one this server gave",
            )
            .field("pageToken")
        })?),
        None => None,
    };
    let filter = AppFilter {
        name: q.name,
        search: q.q.filter(|s| !s.is_empty()),
        tag: q.tag,
        owner: q.owner,
        visibility: q.visibility.as_deref().map(parse_visibility).transpose()?,
        after,
        limit: q.page_size.unwrap_or(50).clamp(1, 1000),
    };
    let (apps, more) = state.repo.list(&caller, &filter).await?;
    let mut body = json!({ "apps": apps.iter().map(|a| app_json(a, false)).collect::<Vec<_>>() });
    if let (true, Some(last)) = (more, apps.last()) {
        body["nextPageToken"] = Value::String(
            base64_simd::URL_SAFE_NO_PAD
                .encode_to_string(format!("{}\n{}", last.name, last.version)),
        );
    }
    Ok(Json(body))
}

fn decode_page_token(token: &str) -> Option<(String, String)> {
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, version) = text.split_once('\n')?;
    Some((name.to_owned(), version.to_owned()))
}

#[derive(Deserialize)]
struct ImportQuery {
    visibility: Option<String>,
}

async fn import_app(
    State(state): State<Shared>,
    Authn(caller): Authn,
    q: Result<Query<ImportQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let started = std::time::Instant::now();
    let visibility = match q.visibility.as_deref() {
        Some(v) => parse_visibility(v)?,
        None => Visibility::Private,
    };
    check_public_mode(&state, visibility)?;
    let result = state
        .importer
        .import(&caller, visibility, body.into_data_stream())
        .await
        .map_err(Problem::from);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(p) => p.code(),
    };
    state
        .metrics
        .imports
        .get_or_create(&ImportLabels {
            outcome: outcome.to_owned(),
        })
        .inc();
    state
        .metrics
        .import_seconds
        .observe(started.elapsed().as_secs_f64());
    let app = result?;
    tracing::info!(app = %app.id, name = %app.name, version = %app.version, "imported");
    let mut response = (StatusCode::CREATED, Json(app_json(&app, true))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/apps/{}", app.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn check_public_mode(state: &AppState, v: Visibility) -> Result<(), Problem> {
    if v == Visibility::Public && !state.public_mode {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "public-mode-disabled",
            "PUBLIC visibility is turned off on this server (public_mode_enabled)",
        )
        .field("visibility"));
    }
    Ok(())
}

async fn get_app(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(app_json(
        &visible_app(&state, &caller, &id).await?,
        true,
    )))
}

async fn delete_app(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let app = visible_app(&state, &caller, &id).await?;
    caller
        .manager_of(&app)
        .map_err(|d| denied(d, "delete this app"))?;
    if !state.repo.delete(&app.id).await? {
        return Err(not_found("app"));
    }
    state.importer.delete_objects(&app).await;
    tracing::info!(app = %app.id, name = %app.name, version = %app.version, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AppUpdate {
    visibility: String,
}

async fn update_app(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
    update: Result<Json<AppUpdate>, JsonRejection>,
) -> Result<Json<Value>, Problem> {
    let update = json_body(update)?;
    let app = visible_app(&state, &caller, &id).await?;
    caller
        .manager_of(&app)
        .map_err(|d| denied(d, "change this app"))?;
    let visibility = parse_visibility(&update.visibility)?;
    check_public_mode(&state, visibility)?;
    state.repo.set_visibility(&app.id, visibility).await?;
    Ok(Json(app_json(
        &visible_app(&state, &caller, &id).await?,
        true,
    )))
}

pub(crate) async fn stream_object(
    state: &AppState,
    key: &str,
    content_type: &str,
) -> Result<Response, Problem> {
    let download = state.store.get(key).await.map_err(|e| {
        tracing::error!(error = %e, "reading from Drive");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "drive-unavailable",
            "Drive could not be read; try again later",
        )
    })?;
    let reader = download.body.into_async_read();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(len) = download.length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(response)
}

async fn download_bundle(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let app = visible_app(&state, &caller, &id).await?;
    caller
        .manager_of(&app)
        .map_err(|d| denied(d, "download this bundle"))?;
    let mut response = stream_object(&state, &app.bundle_key, "application/zip").await?;
    // Name and version match [A-Za-z0-9._-]+, so they are safe in the header.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.{}.wave\"",
        app.name, app.version
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

async fn get_icon(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let app = visible_app(&state, &caller, &id).await?;
    let icon = app.icon.as_ref().ok_or_else(|| not_found("icon"))?;
    stream_object(&state, &icon.key, &icon.content_type).await
}

async fn get_screenshot(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, Problem> {
    let app = visible_app(&state, &caller, &id).await?;
    let shot = app
        .screenshots
        .get(n)
        .ok_or_else(|| not_found("screenshot"))?;
    stream_object(&state, &shot.key, &shot.content_type).await
}

async fn get_long_description(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let app = visible_app(&state, &caller, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        app.long_description,
    )
        .into_response())
}

async fn list_tags(
    State(state): State<Shared>,
    Authn(caller): Authn,
) -> Result<Json<Value>, Problem> {
    caller.full_access().map_err(|d| denied(d, "see tags"))?;
    let tags = state.repo.tags().await?;
    Ok(Json(
        json!({ "tags": tags.iter().map(tag_json).collect::<Vec<_>>() }),
    ))
}

async fn get_tag(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.full_access().map_err(|d| denied(d, "see tags"))?;
    let tag = state
        .repo
        .tag(&name)
        .await?
        .ok_or_else(|| not_found("tag"))?;
    Ok(Json(tag_json(&tag)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagBody {
    name: Option<String>,
    title: Option<String>,
    color: Option<String>,
    description: Option<String>,
    is_category: Option<bool>,
    admin_roles: Option<Vec<String>>,
    visitor_roles: Option<Vec<String>>,
}

fn check_tag(tag: &Tag) -> Result<(), Problem> {
    let bad = |field: &str, detail: &str| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-tag", detail.to_owned()).field(field)
    };
    let name_ok = tag.name.len() <= 63
        && tag
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && tag
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && tag
            .name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !name_ok {
        return Err(bad(
            "name",
            "a tag name is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ));
    }
    let color_ok = tag.color.is_empty()
        || (tag.color.len() == 7
            && tag.color.starts_with('#')
            && tag.color[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    if !color_ok {
        return Err(bad("color", "a colour is #RRGGBB"));
    }
    if tag.title.len() > 256 || tag.description.len() > 1024 {
        return Err(bad(
            "title",
            "the title is at most 256 bytes and the description 1024",
        ));
    }
    Ok(())
}

fn apply_tag_body(tag: &mut Tag, body: TagBody) {
    if let Some(v) = body.title {
        tag.title = v;
    }
    if let Some(v) = body.color {
        tag.color = v;
    }
    if let Some(v) = body.description {
        tag.description = v;
    }
    if let Some(v) = body.is_category {
        tag.is_category = v;
    }
    if let Some(v) = body.admin_roles {
        tag.admin_roles = v;
    }
    if let Some(v) = body.visitor_roles {
        tag.visitor_roles = v;
    }
}

async fn create_tag(
    State(state): State<Shared>,
    Authn(caller): Authn,
    body: Result<Json<TagBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let body = json_body(body)?;
    caller.admin().map_err(|d| denied(d, "create tags"))?;
    let now = now_ms();
    let mut tag = Tag {
        id: new_id(),
        name: body.name.clone().unwrap_or_default(),
        created_at: now,
        updated_at: now,
        ..Tag::default()
    };
    apply_tag_body(&mut tag, body);
    if tag.title.is_empty() {
        tag.title.clone_from(&tag.name);
    }
    check_tag(&tag)?;
    state.repo.create_tag(&tag).await?;
    Ok((StatusCode::CREATED, Json(tag_json(&tag))))
}

async fn update_tag(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(name): Path<String>,
    body: Result<Json<TagBody>, JsonRejection>,
) -> Result<Json<Value>, Problem> {
    let body = json_body(body)?;
    caller.admin().map_err(|d| denied(d, "change tags"))?;
    let mut tag = state
        .repo
        .tag(&name)
        .await?
        .ok_or_else(|| not_found("tag"))?;
    if body.name.as_ref().is_some_and(|n| *n != tag.name) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-tag",
            "a tag's name cannot change",
        )
        .field("name"));
    }
    apply_tag_body(&mut tag, body);
    check_tag(&tag)?;
    state.repo.update_tag(&tag).await?;
    let tag = state
        .repo
        .tag(&tag.id)
        .await?
        .ok_or_else(|| not_found("tag"))?;
    Ok(Json(tag_json(&tag)))
}

async fn tagging(
    state: &AppState,
    caller: &Caller,
    id: &str,
    tag: &str,
) -> Result<(AppRecord, Tag), Problem> {
    let app = visible_app(state, caller, id).await?;
    let tag = state.repo.tag(tag).await?.ok_or_else(|| not_found("tag"))?;
    caller
        .tagger_of(&tag)
        .map_err(|d| denied(d, &format!("assign tag {}", tag.name)))?;
    Ok((app, tag))
}

async fn assign_tag(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (app, tag) = tagging(&state, &caller, &id, &tag).await?;
    state.repo.assign_tag(&app.id, &tag.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_tag(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (app, tag) = tagging(&state, &caller, &id, &tag).await?;
    if !state.repo.remove_tag(&app.id, &tag.id).await? {
        return Err(not_found("tag on this app"));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn caller_json(caller: &Caller) -> Value {
    match caller {
        Caller::Anonymous => json!({ "signedIn": false }),
        Caller::User(u) => json!({
            "signedIn": true,
            "subject": u.principal.subject,
            "username": u.principal.display_name(),
            "email": u.principal.email,
            "roles": u.principal.roles,
            "admin": u.admin,
            "fullAccess": u.full_access,
        }),
    }
}

async fn me(Authn(caller): Authn) -> Json<Value> {
    Json(caller_json(&caller))
}

async fn client_config(State(state): State<Shared>) -> Json<Value> {
    Json(state.client_config.clone())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginQuery {
    return_to: Option<String>,
}

pub(crate) fn redirect(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn login(
    State(state): State<Shared>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, Problem> {
    let (url, flow) = state
        .sign_in
        .start(q.return_to.as_deref().unwrap_or("/"))
        .await
        .map_err(sign_in_problem)?;
    let mut response = redirect(&url);
    set_cookie(
        &mut response,
        &web::cookie(LOGIN_COOKIE, &flow, "/auth", 600, state.cookie_secure),
    );
    Ok(response)
}

fn sign_in_problem(e: web::SignInError) -> Problem {
    match e {
        web::SignInError::UnknownFlow
        | web::SignInError::Refused(_)
        | web::SignInError::Token(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "sign-in-failed", e.to_string())
        }
        web::SignInError::NoBrowserSignIn => Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "browser-sign-in-unavailable",
            e.to_string(),
        ),
        web::SignInError::Provider(_) => {
            tracing::error!(error = %e, "sign-in");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "identity-provider-unavailable",
                e.to_string(),
            )
        }
        web::SignInError::Database(db) => Problem::internal("the metadata database", &db),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Problem> {
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return Err(sign_in_problem(web::SignInError::Refused(format!(
            "{error} {detail}"
        ))));
    }
    let (Some(code), Some(flow)) = (q.code, q.state) else {
        return Err(sign_in_problem(web::SignInError::UnknownFlow));
    };
    let (session, return_to) = state
        .sign_in
        .finish(&flow, cookie(&headers, LOGIN_COOKIE), &code)
        .await
        .map_err(sign_in_problem)?;
    let mut response = redirect(&return_to);
    set_cookie(
        &mut response,
        &web::cookie(LOGIN_COOKIE, "", "/auth", 0, state.cookie_secure),
    );
    set_cookie(
        &mut response,
        &web::cookie(
            SESSION_COOKIE,
            &session,
            "/",
            12 * 3600,
            state.cookie_secure,
        ),
    );
    Ok(response)
}

async fn session_info(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let none = || {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no session; sign in at /auth/login",
        )
    };
    let id = cookie(&headers, SESSION_COOKIE).ok_or_else(none)?;
    let session = state
        .sign_in
        .session(id)
        .await
        .map_err(sign_in_problem)?
        .ok_or_else(none)?;
    let csrf = session.csrf_token.clone();
    let mut body = caller_json(&state.roles.caller(session.principal));
    body["csrfToken"] = Value::String(csrf);
    Ok(Json(body))
}

async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, Problem> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let session = state.sign_in.session(id).await.map_err(sign_in_problem)?;
        if let Some(session) = session {
            let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if !web::csrf_matches(&session, sent) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "sign-out must send the session's X-CSRF-Token",
                ));
            }
        }
        state.sign_in.end(id).await.map_err(sign_in_problem)?;
    }
    let mut response = redirect(&state.sign_in.after_logout().await);
    *response.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(
        &mut response,
        &web::cookie(SESSION_COOKIE, "", "/", 0, state.cookie_secure),
    );
    Ok(response)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Shared>) -> Response {
    if let Err(e) = state.repo.check().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response();
    }
    if let Err(e) = state.store.check().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("drive: {e}\n")).into_response();
    }
    "ready\n".into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Every route: method, path pattern and handler. The OpenAPI document is tested against
/// this list, so neither can drift from the other.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<Shared>)> {
    vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/readyz", get(readyz)),
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/api/v1/openapi.json", get(openapi)),
        (Method::GET, "/api/v1/config", get(client_config)),
        (Method::GET, "/api/v1/me", get(me)),
        (Method::GET, "/api/v1/apps", get(list_apps)),
        (Method::POST, "/api/v1/apps", post(import_app)),
        (Method::GET, "/api/v1/apps/{id}", get(get_app)),
        (Method::PATCH, "/api/v1/apps/{id}", patch(update_app)),
        (Method::DELETE, "/api/v1/apps/{id}", delete(delete_app)),
        (
            Method::GET,
            "/api/v1/apps/{id}/bundle",
            get(download_bundle),
        ),
        (Method::GET, "/api/v1/apps/{id}/icon", get(get_icon)),
        (
            Method::GET,
            "/api/v1/apps/{id}/screenshots/{n}",
            get(get_screenshot),
        ),
        (
            Method::GET,
            "/api/v1/apps/{id}/long-description",
            get(get_long_description),
        ),
        (Method::PUT, "/api/v1/apps/{id}/tags/{tag}", put(assign_tag)),
        (
            Method::DELETE,
            "/api/v1/apps/{id}/tags/{tag}",
            delete(remove_tag),
        ),
        (Method::GET, "/api/v1/tags", get(list_tags)),
        (Method::POST, "/api/v1/tags", post(create_tag)),
        (Method::GET, "/api/v1/tags/{tag}", get(get_tag)),
        (Method::PATCH, "/api/v1/tags/{tag}", patch(update_tag)),
        (Method::GET, "/auth/login", get(login)),
        (Method::GET, "/auth/callback", get(callback)),
        (Method::GET, "/auth/session", get(session_info)),
        (Method::POST, "/auth/logout", post(logout)),
        (
            Method::GET,
            "/auth/instance/{id}",
            get(crate::router::hand_off),
        ),
    ]
    .into_iter()
    .chain(crate::instances::routes())
    .collect()
}

async fn no_route() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

/// The App Store's router.
pub fn router(state: Shared) -> axum::Router {
    let count = state.clone();
    routes()
        .into_iter()
        .map(|(_, path, handler)| (path, handler))
        .chain(crate::ui::routes())
        .fold(axum::Router::new(), |r, (path, handler)| {
            r.route(path, handler)
        })
        .fallback(no_route)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let state = count.clone();
                async move {
                    let method = req.method().to_string();
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
                    let response = next.run(req).await;
                    state
                        .metrics
                        .requests
                        .get_or_create(&crate::metrics::RequestLabels {
                            method,
                            route,
                            status: response.status().as_u16(),
                        })
                        .inc();
                    response
                }
            },
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: Value =
            serde_json::from_str(crate::OPENAPI).expect("the OpenAPI document is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = routes()
            .iter()
            .map(|(m, p, _)| (m.to_string(), (*p).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let token = base64_simd::URL_SAFE_NO_PAD.encode_to_string("a.b\n1.0.0");
        assert_eq!(
            decode_page_token(&token),
            Some(("a.b".into(), "1.0.0".into()))
        );
        assert_eq!(decode_page_token("!!"), None);
    }

    #[test]
    fn problems_carry_code_and_field() {
        let p = Problem::from(RepoError::Duplicate {
            name: "a".into(),
            version: "1.0.0".into(),
        });
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(p.code(), "app-exists");
        let r = p.into_response();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
