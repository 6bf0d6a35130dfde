//! Copies whose source is in the caller's home bucket, named by its alias `_my`.
//!
//! s3s checks a copy source's bucket against AWS's naming rules, which `_my` breaks, when it
//! parses the request — after the signature check and the access hook, before Drive sees
//! the copy. So once s3s has verified its signature, such a request is taken aside as a
//! custom route and served again, unsigned, with the source's bucket renamed to a stand-in
//! and the verified credentials attached; the access hook maps the stand-in back to the
//! caller's home bucket, and only on a request served again.

use http::{HeaderMap, HeaderValue, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result, s3_error};

use crate::auth::{OperationName, presign_limit, query_param};
use crate::namespace::HOME_ALIAS;

/// The valid bucket name that stands for `_my` in the copy source of a request served
/// again. It is reserved (`home--`), so no bucket of that name can be created, and the
/// access hook maps it only on requests that carry [`Verified`].
pub const STAND_IN: &str = "home--alias";

const COPY_SOURCE: &str = "x-amz-copy-source";

/// Query parameters of presigned requests (SigV4 and SigV2), dropped when served again.
const SIGNING_PARAMS: [&str; 10] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// Characters of a key escaped in the renamed copy source: all but unreserved ones and `/`.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The credentials s3s verified on the original of a request served again (no `Debug`:
/// it holds a session token).
#[derive(Clone)]
pub struct Verified {
    /// The access key that signed the original request.
    pub access_key: String,
    /// Its session token, from the header or the presigned query.
    pub token: Option<String>,
}

/// A request to serve again, handed from the route to the server in the response's
/// extensions (copies have no body).
#[derive(Clone)]
pub struct ServeAgain {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    verified: Verified,
}

impl ServeAgain {
    /// The request to serve, with `slot` to record its operation's name in.
    pub fn request(&self, slot: OperationName) -> http::Request<Body> {
        let mut req = http::Request::new(Body::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req.extensions_mut().insert(self.verified.clone());
        req.extensions_mut().insert(slot);
        req
    }
}

/// The custom route that takes copies from `_my` aside.
pub struct AliasCopy;

#[async_trait::async_trait]
impl S3Route for AliasCopy {
    fn is_match(
        &self,
        method: &Method,
        _uri: &Uri,
        headers: &HeaderMap,
        extensions: &mut http::Extensions,
    ) -> bool {
        *method == Method::PUT
            && extensions.get::<Verified>().is_none()
            && headers
                .get(COPY_SOURCE)
                .and_then(|v| v.to_str().ok())
                .and_then(renamed)
                .is_some()
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let credentials = req.credentials.ok_or_else(|| {
            s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign the request."
            )
        })?;
        let query = req.uri.query().unwrap_or("");
        presign_limit(query)?;
        let token = req
            .headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(query, "X-Amz-Security-Token"));
        let source = req
            .headers
            .get(COPY_SOURCE)
            .and_then(|v| v.to_str().ok())
            .and_then(renamed)
            .and_then(|s| HeaderValue::from_str(&s).ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "Invalid copy source"))?;
        let mut headers = req.headers;
        headers.insert(COPY_SOURCE, source);
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("x-amz-security-token");
        let again = ServeAgain {
            method: req.method,
            uri: unsigned(&req.uri)?,
            headers,
            verified: Verified {
                access_key: credentials.access_key,
                token,
            },
        };
        let mut response = S3Response::new(Body::empty());
        response.extensions.insert(again);
        Ok(response)
    }
}

/// A copy-source header naming `_my`, with the stand-in in its place; `None` for any other
/// source.
fn renamed(header: &str) -> Option<String> {
    let (path, version) = match header.split_once('?') {
        Some((path, version)) => (path, Some(version)),
        None => (header, None),
    };
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = decoded.split_once('/')?;
    (bucket == HOME_ALIAS).then(|| {
        let key = utf8_percent_encode(key, KEY);
        match version {
            Some(v) => format!("{STAND_IN}/{key}?{v}"),
            None => format!("{STAND_IN}/{key}"),
        }
    })
}

/// `uri` without the parameters that presigned it.
fn unsigned(uri: &Uri) -> S3Result<Uri> {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !SIGNING_PARAMS.contains(&name)
        })
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    path_and_query
        .parse()
        .map_err(|_| s3_error!(InvalidURI, "Couldn't parse the specified URI."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_home_sources() {
        assert_eq!(renamed("_my/a.txt").unwrap(), "home--alias/a.txt");
        assert_eq!(
            renamed("/_my/dir/a b.txt").unwrap(),
            "home--alias/dir/a%20b.txt"
        );
        assert_eq!(renamed("%2F_my%2Fx%2Fy").unwrap(), "home--alias/x/y");
        assert_eq!(
            renamed("_my/%3Cimg%3E?versionId=null").unwrap(),
            "home--alias/%3Cimg%3E?versionId=null"
        );
        assert_eq!(renamed("_my/ü/€").unwrap(), "home--alias/%C3%BC/%E2%82%AC");
        for other in ["default/a", "team-a/_my/a", "_my", "_myx/a", "%ZZ_my/a"] {
            assert_eq!(renamed(other), None, "{other}");
        }
    }

    #[test]
    fn renamed_sources_parse_to_the_same_key() {
        for key in [
            "a",
            "dir/a b+c.txt",
            "ü/€",
            "<img src=x onerror=alert(1)>",
            "a//b",
        ] {
            let header = format!("_my/{}", utf8_percent_encode(key, NON_ALPHANUMERIC));
            let parsed = s3s::dto::CopySource::parse(&renamed(&header).unwrap()).unwrap();
            let s3s::dto::CopySource::Bucket { bucket, key: k, .. } = parsed else {
                panic!("not a bucket source");
            };
            assert_eq!((&*bucket, &*k), (STAND_IN, key));
        }
    }

    #[test]
    fn serving_again_drops_the_presigned_query() {
        let uri: Uri = "/_my/b?partNumber=2&uploadId=u%2B1&X-Amz-Signature=ab&X-Amz-Security-Token=t&X-Amz-Expires=60"
            .parse()
            .unwrap();
        assert_eq!(
            unsigned(&uri).unwrap().to_string(),
            "/_my/b?partNumber=2&uploadId=u%2B1"
        );
        let plain: Uri = "/_my/b?X-Amz-Signature=ab".parse().unwrap();
        assert_eq!(unsigned(&plain).unwrap().to_string(), "/_my/b");
    }
}
