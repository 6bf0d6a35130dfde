//! HTTP endpoints of the built-in development issuer under `/_drive/idp/`: discovery,
//! key set and token endpoint (password and refresh grants, JSON errors as OAuth clients
//! expect). Active only when no external issuer is configured.

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use shared_identity::DevIssuer;

use crate::api::{self, json_response};

/// The path prefix of the development issuer.
pub const PREFIX: &str = "/_drive/idp";
const MAX_BODY: usize = 64 * 1024;

/// Answers a request for the development issuer.
pub async fn handle(issuer: &DevIssuer, req: Request<Incoming>) -> Response<s3s::Body> {
    let path = req.uri().path()[PREFIX.len()..].to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/.well-known/openid-configuration") => {
            json_response(StatusCode::OK, &issuer.metadata())
        }
        (Method::GET, "/jwks") => json_response(StatusCode::OK, &issuer.jwks()),
        (Method::POST, "/token") => {
            let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await;
            let Ok(body) = body else {
                return oauth_error("invalid_request");
            };
            let params = crate::sts::parse_form(&String::from_utf8_lossy(&body.to_bytes()));
            match issuer.token(&params, std::time::SystemTime::now()) {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => oauth_error(&e.to_string()),
            }
        }
        _ => api::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such issuer endpoint.",
        ),
    }
}

fn oauth_error(code: &str) -> Response<s3s::Body> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": code }))
}
