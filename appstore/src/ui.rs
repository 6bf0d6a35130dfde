//! The web UI: one HTML page for every screen (catalogue `/`, app page `/apps/{id}`, my
//! instances `/instances`, admin `/admin`), with plain CSS and JavaScript modules that
//! ship inside the binary and talk to the API. Assets live under `/ui/<version>/`, the
//! version a hash of their contents, so they are cached for a year; the page itself is
//! never cached and carries a strict Content-Security-Policy.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use sha2::{Digest, Sha256};

use crate::api::{AppState, Problem};

type Shared = Arc<AppState>;

/// The page's policy: nothing but this origin, no inline code, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../ui/index.html");

/// The assets: file name, media type, contents.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/app.css"),
    ),
    (
        "main.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/main.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/dom.js"),
    ),
    (
        "markdown.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/markdown.js"),
    ),
    (
        "catalogue.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/catalogue.js"),
    ),
    (
        "app-page.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/app-page.js"),
    ),
    (
        "instances.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../ui/instances.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../ui/icon.svg"),
    ),
];

/// The assets' version: the start of the SHA-256 of all of them.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for (name, _, body) in ASSETS {
        hash.update(name.as_bytes());
        hash.update(body);
    }
    hex_simd::encode_to_string(&hash.finalize()[..8], hex_simd::AsciiCase::Lower)
});

/// The page with the assets' version filled in.
static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{version}}", &VERSION));

fn security_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

async fn page() -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE.as_str(),
    )
        .into_response();
    r.headers_mut()
        .insert("content-security-policy", HeaderValue::from_static(CSP));
    r.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    security_headers(&mut r);
    r
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Result<Response, Problem> {
    let (_, media_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "not-found", "no such file"))?;
    // Another version's URL gets today's file, but only briefly cached.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, *media_type),
            (header::CACHE_CONTROL, cache),
        ],
        *body,
    )
        .into_response();
    security_headers(&mut r);
    Ok(r)
}

/// The UI's routes, for [`crate::api::router`]: pages and assets, not part of the API.
pub fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        ("/", get(page)),
        ("/apps/{id}", get(page)),
        ("/instances", get(page)),
        ("/admin", get(page)),
        ("/ui/{version}/{file}", get(asset)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_versioned_assets_that_exist() {
        assert!(!PAGE.contains("{{version}}"));
        for name in ["app.css", "main.js", "icon.svg"] {
            assert!(
                PAGE.contains(&format!("/ui/{}/{name}", *VERSION)),
                "{name} in the page"
            );
        }
        for (name, _, _) in ASSETS {
            if name.ends_with(".js") && *name != "main.js" {
                let imported = ASSETS.iter().any(|(_, _, body)| {
                    String::from_utf8_lossy(body).contains(&format!("'./{name}'"))
                });
                assert!(imported, "{name} is imported by a module");
            }
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code() {
        assert!(!CSP.contains("unsafe"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(!INDEX.contains("style=") && !INDEX.contains("<script>"));
    }
}
