//! Drive's own HTTP API (JSON) under `/_drive/api/v1/` — a path no bucket can have.
//! Users manage their long-term access keys here with OIDC bearer tokens:
//! `GET keys` lists them, `POST keys` creates one (the secret is shown once),
//! `DELETE keys/<id>` revokes one. The App Store, holding the root credentials (HTTP
//! Basic), revokes terminated app instances: `POST revocations` with `{"instance_id": …}`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use shared_identity::{Principal, Verifier};

use crate::credentials::RootCredentials;
use crate::keys::{KeyInfo, KeyStore, KeyStoreError};
use crate::revocations::{self, Revocations};

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
    /// The revoked app instances.
    pub revocations: Arc<Revocations>,
    /// The root credentials, which alone may revoke instances.
    pub root: RootCredentials,
}

/// The caller of a bearer-token route.
struct Caller {
    principal: Principal,
    /// The app instance the token was minted for, if a token broker minted it.
    instance: Option<String>,
}

impl Api {
    /// Answers one API request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let path = req.uri().path()[PREFIX.len()..].to_owned();
        let method = req.method().clone();
        if (&method, path.as_str()) == (&Method::POST, "revocations") {
            return self.revoke_instance(req).await;
        }
        let Caller {
            principal,
            instance,
        } = match self.caller(&req).await {
            Ok(c) => c,
            Err(response) => return response,
        };
        let result = match (method, path.split('/').collect::<Vec<_>>().as_slice()) {
            (Method::GET, ["keys"]) => self.list(&principal).await,
            // A long-term key would outlive the instance: instances use STS only.
            (Method::POST, ["keys"]) if instance.is_some() => {
                return error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Tokens minted for an app instance cannot create long-term access keys.",
                );
            }
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
                unavailable("The key store")
            }
        })
    }

    /// The caller, from an `Authorization: Bearer` OIDC access token; tokens minted for a
    /// revoked app instance are refused.
    async fn caller(&self, req: &Request<Incoming>) -> Result<Caller, Response<s3s::Body>> {
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
        let verified = self
            .verifier
            .verify(token.trim())
            .await
            .map_err(|e| unauthorized(&e.to_string()))?;
        if let Some(instance) = &verified.instance {
            match self.revocations.is_revoked(instance).await {
                Ok(false) => {}
                Ok(true) => {
                    return Err(unauthorized(
                        "The token was minted for an app instance that has been terminated.",
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "instance revocation lookup failed");
                    return Err(unavailable("The revocation list"));
                }
            }
        }
        Ok(Caller {
            principal: verified.principal,
            instance: verified.instance,
        })
    }

    /// `POST revocations`: the root credentials (HTTP Basic) revoke an app instance, so its
    /// broker tokens and the session credentials minted from them are refused from now on.
    async fn revoke_instance(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let authorized = basic_credentials(req.headers())
            .is_some_and(|(access, secret)| self.root.matches(&access, &secret));
        if !authorized {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send the root credentials: Authorization: Basic <access key:secret key>.",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"drive\""),
            );
            return response;
        }
        let body = match read_json(req).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let Some(instance) = body
            .get("instance_id")
            .and_then(Value::as_str)
            .filter(|id| revocations::is_valid_id(id))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "instance_id must be 1 to 128 characters of letters, digits, - and _.",
            );
        };
        match self.revocations.revoke(instance).await {
            Ok(()) => {
                tracing::info!(instance, "app instance revoked");
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(s3s::Body::empty())
                    .expect("static response")
            }
            Err(e) => {
                tracing::error!(error = %e, instance, "instance revocation failed");
                unavailable("The revocation list")
            }
        }
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

/// A 503 saying that `what` is unavailable.
fn unavailable(what: &str) -> Response<s3s::Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &format!("{what} is unavailable; try again."),
    )
}

/// The access key and secret of an `Authorization: Basic` header.
fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_simd::STANDARD
        .decode_to_vec(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())?;
    let (access, secret) = decoded.split_once(':')?;
    Some((access.to_owned(), secret.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read() {
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            basic_credentials(&headers)
        };
        let encoded = base64_simd::STANDARD.encode_to_string("root:se:cret");
        assert_eq!(
            with(&format!("Basic {encoded}")),
            Some(("root".into(), "se:cret".into()))
        );
        assert!(with(&format!("basic  {encoded}")).is_some());
        assert_eq!(with(&format!("Bearer {encoded}")), None);
        assert_eq!(with("Basic not-base64!"), None);
        let no_colon = base64_simd::STANDARD.encode_to_string("root");
        assert_eq!(with(&format!("Basic {no_colon}")), None);
        assert_eq!(basic_credentials(&http::HeaderMap::new()), None);
    }
}
