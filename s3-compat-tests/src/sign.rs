//! Raw HTTP requests signed with SigV4, for cases the SDK will not send (malformed bodies,
//! hostile headers) and for presigned URLs.

use std::time::SystemTime;

use aws_sdk_s3::config::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 error document.
    pub fn code(&self) -> String {
        let t = self.text();
        t.split_once("<Code>")
            .and_then(|(_, r)| r.split_once("</Code>"))
            .map(|(c, _)| c.to_owned())
            .unwrap_or_default()
    }
}

/// Sends a request as is.
pub async fn send(req: http::Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await.expect("the server answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("whole body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Builds and signs a request with the given credentials.
pub fn signed(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    access_key: &str,
    secret_key: &str,
) -> http::Request<Full<Bytes>> {
    let body: Bytes = body.into();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    for (k, v) in signature(method, url, headers, Some(&body), access_key, secret_key) {
        req = req.header(k, v);
    }
    req.body(Full::new(body)).expect("valid request")
}

/// The headers that sign a request: `x-amz-date`, `x-amz-content-sha256` (the body's hash,
/// or `UNSIGNED-PAYLOAD` when `body` is `None`) and `authorization`.
pub fn signature(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    access_key: &str,
    secret_key: &str,
) -> Vec<(String, String)> {
    let identity = Credentials::new(access_key, secret_key, None, None, "raw").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    // S3 signs the path as sent: no normalization, single percent-encoding.
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let payload = body.map_or(SignableBody::UnsignedPayload, SignableBody::Bytes);
    let signable =
        SignableRequest::new(method, url, headers.iter().copied(), payload).expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let (added, _) = instructions.into_parts();
    added
        .into_iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect()
}
