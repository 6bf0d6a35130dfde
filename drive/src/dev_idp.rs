//! HTTP endpoints of the built-in development issuer under `/_drive/idp/`: discovery,
//! key set, a login page for the authorization code flow (`/authorize`), and the token
//! endpoint (code, password and refresh grants, JSON errors as OAuth clients expect).
//! Active by default when no external issuer is configured, or beside them with
//! `--dev-issuer true`.

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use shared_identity::{Authorization, DevIssuer};

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
        (Method::GET, "/authorize") => {
            let params = crate::sts::parse_form(req.uri().query().unwrap_or_default());
            match Authorization::from_params(&params) {
                Ok(_) => login_page(&params, None),
                Err(reason) => bad_request(&reason),
            }
        }
        (Method::POST, "/authorize") => {
            let Some(params) = form(req).await else {
                return bad_request("the form is too large");
            };
            let auth = match Authorization::from_params(&params) {
                Ok(a) => a,
                Err(reason) => return bad_request(&reason),
            };
            let field = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or("", |(_, v)| v.as_str())
            };
            match issuer.authorize(
                &auth,
                field("username"),
                field("password"),
                std::time::SystemTime::now(),
            ) {
                Ok(location) => Response::builder()
                    .status(StatusCode::FOUND)
                    .header(http::header::LOCATION, location)
                    .header(http::header::CACHE_CONTROL, "no-store")
                    .body(s3s::Body::empty())
                    .expect("a redirect"),
                Err(_) => login_page(&params, Some("Wrong user name or password.")),
            }
        }
        (Method::POST, "/token") => {
            let Some(params) = form(req).await else {
                return oauth_error("invalid_request");
            };
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

/// The fields of a form body, or `None` when it is too large or cut off.
async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .ok()?;
    Some(crate::sts::parse_form(&String::from_utf8_lossy(
        &body.to_bytes(),
    )))
}

/// Text made safe inside HTML, attribute values included.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The sign-in form, carrying the authorization request in hidden fields.
fn login_page(params: &[(String, String)], error: Option<&str>) -> Response<s3s::Body> {
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k != "username" && k != "password")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let error = error.map_or(String::new(), |e| {
        format!("<p role=\"alert\">{}</p>", escape(e))
    });
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head>\
         <body><h1>Sign in to the development issuer</h1>{error}\
         <form method=\"post\" action=\"authorize\">{hidden}\
         <label>User <input name=\"username\" autocomplete=\"username\" autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Sign in</button></form></body></html>"
    );
    Response::builder()
        .status(if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        })
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        .header("content-security-policy", "default-src 'none'")
        .body(s3s::Body::from(page))
        .expect("a page")
}

fn bad_request(reason: &str) -> Response<s3s::Body> {
    api::error(StatusCode::BAD_REQUEST, "invalid_request", reason)
}

fn oauth_error(code: &str) -> Response<s3s::Body> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": code }))
}
