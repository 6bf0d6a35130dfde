//! The instance API: run apps, list and manage instances, their status and logs; the
//! launcher's endpoints (bundle download and phase reports, authenticated by the instance
//! token); and the token broker and discovery that instances talk to.

use std::time::SystemTime;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    AppState, Authn, Problem, denied, json_body, parse_visibility, query, stream_object,
};
use crate::broker::BrokerError;
use crate::scheduler::runtime::{Phase, RuntimeError};
use crate::scheduler::{Instance, ScheduleError, TOKEN_PREFIX};
use crate::web::SignInError;

type Shared = std::sync::Arc<AppState>;

impl From<ScheduleError> for Problem {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no such {what}"),
            ),
            ScheduleError::Denied(d) => denied(d, "do this with the instance"),
            ScheduleError::Limit { .. } => {
                Problem::new(StatusCode::CONFLICT, "instance-limit", e.to_string())
            }
            ScheduleError::NotRunnable(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "not-runnable", e.to_string())
            }
            ScheduleError::Invalid(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-request", e.to_string())
            }
            ScheduleError::Timeout(_) => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "runtime-timeout",
                e.to_string(),
            ),
            ScheduleError::Runtime(RuntimeError::Conflict(why)) => Problem::new(
                StatusCode::CONFLICT,
                "runtime-conflict",
                format!("the cluster refused a change that conflicts with its state: {why}"),
            ),
            ScheduleError::Runtime(r) => {
                tracing::error!(error = %r, "the runtime failed");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failed-scheduling-app",
                    format!("failed scheduling app: {r}"),
                )
            }
            ScheduleError::Repository(r) => r.into(),
        }
    }
}

async fn instance_json(state: &AppState, instance: &Instance) -> Value {
    let status = state.scheduler.status(instance).await;
    let mut v = serde_json::to_value(instance).unwrap_or_default();
    v["url"] = Value::String(state.scheduler.url(instance));
    v["status"] = status_json(&status);
    v
}

fn status_json(s: &crate::scheduler::runtime::Status) -> Value {
    json!({"phase": s.phase.as_str(), "reason": s.reason, "restarts": s.restarts, "lastFailure": s.last_failure})
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunBody {
    visibility: Option<String>,
    routing_mode: Option<String>,
}

async fn run(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(app): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let body: RunBody = if body.is_empty() {
        RunBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-body", e.to_string()))?
    };
    let visibility = body
        .visibility
        .as_deref()
        .map(parse_visibility)
        .transpose()?;
    let instance = state
        .scheduler
        .run(&caller, &app, visibility, body.routing_mode.as_deref())
        .await?;
    let body = instance_json(&state, &instance).await;
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/instances/{}", instance.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct ListQuery {
    all: Option<bool>,
    app: Option<String>,
}

async fn list(
    State(state): State<Shared>,
    Authn(caller): Authn,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let instances = state
        .scheduler
        .list(&caller, q.all.unwrap_or(false), q.app.as_deref())
        .await?;
    let mut out = Vec::with_capacity(instances.len());
    for i in &instances {
        out.push(instance_json(&state, i).await);
    }
    Ok(Json(json!({ "instances": out })))
}

async fn get_instance(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let instance = state.scheduler.managed(&caller, &id).await?;
    Ok(Json(instance_json(&state, &instance).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    visibility: String,
}

async fn update(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<Value>, Problem> {
    let body = json_body(body)?;
    let visibility = parse_visibility(&body.visibility)?;
    let instance = state
        .scheduler
        .set_visibility(&caller, &id, visibility)
        .await?;
    Ok(Json(instance_json(&state, &instance).await))
}

async fn terminate(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    state.scheduler.terminate(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let instance = state.scheduler.managed(&caller, &id).await?;
    Ok(Json(status_json(&state.scheduler.status(&instance).await)))
}

async fn suspend(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let instance = state.scheduler.suspend(&caller, &id).await?;
    Ok(Json(instance_json(&state, &instance).await))
}

async fn resume(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let instance = state.scheduler.resume(&caller, &id).await?;
    Ok(Json(instance_json(&state, &instance).await))
}

#[derive(Deserialize)]
struct LogQuery {
    previous: Option<bool>,
    follow: Option<bool>,
}

async fn logs(
    State(state): State<Shared>,
    Authn(caller): Authn,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let instance = state.scheduler.managed(&caller, &id).await?;
    let lines = state
        .scheduler
        .runtime()
        .logs(
            &instance.id,
            q.previous.unwrap_or(false),
            q.follow.unwrap_or(false),
        )
        .await
        .map_err(ScheduleError::from)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// The instance whose token the launcher sent, if it is the one in the path.
async fn launcher_instance(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Instance, Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let unauthorized = || {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "the instance token is not valid for this instance",
        )
    };
    match state.scheduler.by_token(token).await? {
        Some(instance) if instance.id == id => Ok(instance),
        _ => Err(unauthorized()),
    }
}

async fn launcher_bundle(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let instance = launcher_instance(&state, &headers, &id).await?;
    let app = state
        .repo
        .ready_app(&instance.app_id)
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "not-found", "no such app"))?;
    stream_object(&state, &app.bundle_key, "application/zip").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseBody {
    phase: String,
    reason: Option<String>,
}

async fn launcher_phase(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<PhaseBody>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    let instance = launcher_instance(&state, &headers, &id).await?;
    let body = json_body(body)?;
    let phase = Phase::reported(&body.phase).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-phase",
            "phase must be sourcing, installing, starting, running or failed",
        )
    })?;
    let reason = body.reason.map(|r| r.chars().take(1000).collect());
    tracing::info!(instance = %instance.id, phase = phase.as_str(), reason = reason.as_deref().unwrap_or(""), "launcher phase");
    state
        .scheduler
        .runtime()
        .report(&instance.id, phase, reason)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn broker_metadata(State(state): State<Shared>) -> Json<Value> {
    Json(state.broker.metadata())
}

async fn broker_jwks(State(state): State<Shared>) -> Json<Value> {
    Json(state.broker.jwks())
}

fn oauth_error(e: BrokerError) -> Response {
    (
        e.status(),
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": e.to_string(), "error_description": e.description()})),
    )
        .into_response()
}

async fn broker_token(State(state): State<Shared>, body: Bytes) -> Result<Response, Problem> {
    let params: Vec<(String, String)> = url_form(&body);
    let token = match state.broker.grant(&params) {
        Ok(t) => t,
        Err(e) => return Ok(oauth_error(e)),
    };
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(wave_refresh(&state, token).await);
    }
    let Some(instance) = state.scheduler.by_token(token).await? else {
        return Ok(oauth_error(BrokerError::InvalidGrant));
    };
    let answer = state.broker.issue(&instance, token, SystemTime::now());
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// A refresh token that is not an instance token: one the provider issued to waved's client
/// when the user signed in to an `EnableOIDC` app (`q.auth.refresh_token`). The broker
/// refreshes it at the provider with the Wave client's credentials — which the app's waved
/// holds already — and relays the provider's answer, so H2O's clients given the discovery's
/// issuer and platform client id (`h2o_authn.TokenProvider`) work with it.
async fn wave_refresh(state: &AppState, refresh_token: &str) -> Response {
    let Some(wave) = state.scheduler.wave_oidc() else {
        return oauth_error(BrokerError::InvalidGrant);
    };
    match state.sign_in.refresh_for_wave(wave, refresh_token).await {
        Ok(answer) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "application/json"),
            ],
            answer,
        )
            .into_response(),
        Err(SignInError::Refused(why)) => {
            tracing::info!(%why, "the provider refused a Wave refresh token");
            oauth_error(BrokerError::InvalidGrant)
        }
        Err(e) => {
            tracing::warn!(error = %e, "a Wave refresh token could not be refreshed");
            oauth_error(BrokerError::TemporarilyUnavailable)
        }
    }
}

/// `application/x-www-form-urlencoded` pairs (a form body or a query string).
pub(crate) fn url_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn discovery(
    State(state): State<Shared>,
    Path(path): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<Value>, Problem> {
    state
        .discovery
        .answer(&path, uri.query().unwrap_or(""), None)
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such discovery resource",
            )
        })
}

/// The instance routes, for [`crate::api::routes`].
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<Shared>)> {
    vec![
        (Method::POST, "/api/v1/apps/{id}/instances", post(run)),
        (Method::GET, "/api/v1/instances", get(list)),
        (Method::GET, "/api/v1/instances/{id}", get(get_instance)),
        (Method::PATCH, "/api/v1/instances/{id}", patch(update)),
        (Method::DELETE, "/api/v1/instances/{id}", delete(terminate)),
        (Method::GET, "/api/v1/instances/{id}/status", get(status)),
        (Method::GET, "/api/v1/instances/{id}/logs", get(logs)),
        (
            Method::POST,
            "/api/v1/instances/{id}/suspend",
            post(suspend),
        ),
        (Method::POST, "/api/v1/instances/{id}/resume", post(resume)),
        (
            Method::GET,
            "/api/v1/instances/{id}/launcher/bundle",
            get(launcher_bundle),
        ),
        (
            Method::POST,
            "/api/v1/instances/{id}/launcher/phase",
            post(launcher_phase),
        ),
        (
            Method::GET,
            "/broker/.well-known/openid-configuration",
            get(broker_metadata),
        ),
        (Method::GET, "/broker/jwks", get(broker_jwks)),
        (Method::POST, "/broker/token", post(broker_token)),
        (
            Method::GET,
            "/broker/.ai.h2o.cloud.discovery/{*path}",
            get(discovery),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        let f = url_form(b"grant_type=refresh_token&refresh_token=ait_a%2Bb+c&x");
        assert_eq!(f[0], ("grant_type".into(), "refresh_token".into()));
        assert_eq!(f[1], ("refresh_token".into(), "ait_a+b c".into()));
        assert_eq!(f[2], ("x".into(), String::new()));
    }
}
