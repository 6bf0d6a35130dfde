//! Drive's own HTTP API (JSON, OIDC bearer tokens) under `/_drive/api/v1/` — a path no
//! bucket can have. Users manage their long-term access keys here:
//! `GET keys` lists them, `POST keys` creates one (the secret is shown once),
//! `DELETE keys/<id>` revokes one.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use shared_identity::{Principal, Verifier};

use crate::keys::{KeyInfo, KeyStore, KeyStoreError};

/// The path prefix of the API.
pub const PREFIX: &str = "/_drive/api/v1/";
/// Largest request body.
const MAX_BODY: usize = 16 * 1024;

/// What the API needs.
pub struct Api {
    /// Verifies bearer tokens.
    pub verifier: Arc<Verifier>,
    /// The access keys.
    pub keys: Arc<KeyStore>,
}

impl Api {
    /// Answers one API request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let principal = match self.principal(&req).await {
            Ok(p) => p,
            Err(response) => return response,
        };
        let path = req.uri().path()[PREFIX.len()..].to_owned();
        let method = req.method().clone();
        let result = match (method, path.split('/').collect::<Vec<_>>().as_slice()) {
            (Method::GET, ["keys"]) => self.list(&principal).await,
            (Method::POST, ["keys"]) => match read_json(req).await {
                Ok(body) => self.create(&principal, &body).await,
                Err(response) => return response,
            },
            (Method::DELETE, ["keys", id]) => self.revoke(&principal, id).await,
            _ => return error(StatusCode::NOT_FOUND, "not_found", "No such API route."),
        };
        result.unwrap_or_else(|e| match e {
            KeyStoreError::TooManyKeys | KeyStoreError::DescriptionTooLong => {
                error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string())
            }
            e => {
                tracing::error!(error = %e, "key store failed");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The key store is unavailable; try again.",
                )
            }
        })
    }

    /// The caller, from an `Authorization: Bearer` OIDC access token.
    async fn principal(&self, req: &Request<Incoming>) -> Result<Principal, Response<s3s::Body>> {
        let unauthorized = |message: &str| error(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                unauthorized("Send an OIDC access token: Authorization: Bearer <token>.")
            })?;
        self.verifier
            .verify(token.trim())
            .await
            .map(|v| v.principal)
            .map_err(|e| unauthorized(&e.to_string()))
    }

    async fn list(&self, principal: &Principal) -> Result<Response<s3s::Body>, KeyStoreError> {
        let keys = self.keys.list(&principal.subject).await?;
        let keys: Vec<Value> = keys.iter().map(info_json).collect();
        Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
    }

    async fn create(
        &self,
        principal: &Principal,
        body: &Value,
    ) -> Result<Response<s3s::Body>, KeyStoreError> {
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = self.keys.create(principal, description).await?;
        tracing::info!(user = principal.display_name(), access_key = %key.info.access_key_id, "access key created");
        let mut out = info_json(&key.info);
        out["secretAccessKey"] = Value::String(key.secret);
        Ok(json_response(StatusCode::CREATED, &out))
    }

    async fn revoke(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Response<s3s::Body>, KeyStoreError> {
        if self.keys.revoke(&principal.subject, id).await? {
            tracing::info!(user = principal.display_name(), access_key = %id, "access key revoked");
            Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(s3s::Body::empty())
                .expect("static response"))
        } else {
            Ok(error(
                StatusCode::NOT_FOUND,
                "not_found",
                "You have no active access key with that id.",
            ))
        }
    }
}

fn info_json(info: &KeyInfo) -> Value {
    let mut v = json!({
        "accessKeyId": info.access_key_id,
        "description": info.description,
        "createdAt": rfc3339(info.created),
    });
    if let Some(revoked) = info.revoked {
        v["revokedAt"] = Value::String(rfc3339(revoked));
    }
    v
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("timestamps format")
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Response<s3s::Body>> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "invalid_request", m);
    let body: Bytes = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| bad("The body is too large or was cut off."))?
        .to_bytes();
    if body.is_empty() {
        return Ok(json!({}));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| bad(&format!("The body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(bad("The body must be a JSON object."))
    }
}

/// A JSON answer of Drive's own endpoints; never cached (some carry secrets or tokens).
pub fn json_response(status: StatusCode, body: &Value) -> Response<s3s::Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(s3s::Body::from(body.to_string()))
        .expect("static response")
}

/// A JSON error of Drive's own endpoints: `{"error": code, "message": message}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<s3s::Body> {
    json_response(status, &json!({ "error": code, "message": message }))
}
