//! Raw HTTP requests signed with SigV4, for cases the SDK will not send (malformed bodies,
//! hostile headers) and for presigned URLs.

use std::time::SystemTime;

use aws_sdk_s3::config::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
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
    try_send(req).await.expect("the server answers")
}

/// Sends a request; an error means the connection failed (for instance, the server
/// refused a body while it was still being sent).
pub async fn try_send(req: http::Request<Full<Bytes>>) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    try_send_on(&client, req).await
}

/// Like [`try_send`], on `client`: requests sent on one client reuse its kept-alive
/// connections (benchmarks measure the server, not connection setup).
pub async fn try_send_on(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Builds a request as is, with these headers and body.
pub fn request<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    url: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: impl Into<Bytes>,
) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k.as_ref(), v.as_ref());
    }
    req.body(Full::new(body.into())).expect("valid request")
}

/// An unsigned GET of `url` (health checks, presigned URLs).
pub async fn get_url(url: impl AsRef<str>) -> Reply {
    send(request(
        "GET",
        url.as_ref(),
        [("accept", "*/*")],
        Bytes::new(),
    ))
    .await
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
    let signing = signature(method, url, headers, Some(&body), access_key, secret_key);
    let all = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(signing);
    request(method, url, all, body)
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
    let payload = body.map_or(SignableBody::UnsignedPayload, SignableBody::Bytes);
    sign_with(
        method,
        url,
        headers,
        payload,
        SystemTime::now(),
        access_key,
        secret_key,
    )
    .0
}

/// Signs a request and returns the headers to add and the signature itself.
fn sign_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: SignableBody<'_>,
    time: SystemTime,
    access_key: &str,
    secret_key: &str,
) -> (Vec<(String, String)>, String) {
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
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable =
        SignableRequest::new(method, url, headers.iter().copied(), payload).expect("signable");
    let (instructions, signature) = sign(signable, &params).expect("sign").into_parts();
    let (added, _) = instructions.into_parts();
    (
        added
            .into_iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect(),
        signature,
    )
}

/// A presigned URL for `method` on `url`, valid for `expires` (any value, even one S3
/// refuses), signed with these credentials and, if given, a session token.
pub fn presigned_url(
    method: &str,
    url: &str,
    expires: std::time::Duration,
    access_key: &str,
    secret_key: &str,
    session_token: Option<&str>,
) -> String {
    let identity = Credentials::new(
        access_key,
        secret_key,
        session_token.map(str::to_owned),
        None,
        "raw",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("valid request");
    instructions.apply_to_request_http1x(&mut req);
    req.uri().to_string()
}

/// A PUT of `data` as `aws-chunked` with an unsigned payload and `crc32` as its trailing
/// `x-amz-checksum-crc32` (as SDKs send over TLS).
pub fn trailer_put(
    url: &str,
    data: &[u8],
    crc32: &str,
    access_key: &str,
    secret_key: &str,
) -> http::Request<Full<Bytes>> {
    let mut body = Vec::with_capacity(data.len() + 1024);
    for chunk in data.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc32}\r\n\r\n").as_bytes());
    let (decoded, encoded) = (data.len().to_string(), body.len().to_string());
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded.as_str()),
        ("content-length", encoded.as_str()),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let (added, _) = sign_with(
        "PUT",
        url,
        &headers,
        SignableBody::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
        SystemTime::now(),
        access_key,
        secret_key,
    );
    let mut req = http::Request::put(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    for (k, v) in added {
        req = req.header(k, v);
    }
    req.body(Full::new(Bytes::from(body)))
        .expect("valid request")
}

/// A PUT whose body is sent as `aws-chunked` with a chained signature on every chunk
/// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`). With `tamper`, the last data chunk's signature
/// is wrong.
pub fn streaming_signed_put(
    url: &str,
    chunks: &[&[u8]],
    tamper: bool,
    access_key: &str,
    secret_key: &str,
) -> http::Request<Full<Bytes>> {
    const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let sha256 = |b: &[u8]| {
        use sha2::Digest as _;
        hex(&sha2::Sha256::digest(b))
    };
    let decoded: usize = chunks.iter().map(|c| c.len()).sum();
    // Each chunk: hex length, ";chunk-signature=" + 64 hex digits, CRLF, data, CRLF.
    let frame = |len: usize| format!("{len:x}").len() + 17 + 64 + 2 + len + 2;
    let encoded: usize = chunks.iter().map(|c| frame(c.len())).sum::<usize>() + frame(0);
    let (decoded_s, encoded_s) = (decoded.to_string(), encoded.to_string());
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded_s.as_str()),
        ("content-length", encoded_s.as_str()),
    ];
    let time = SystemTime::now();
    let (added, seed) = sign_with(
        "PUT",
        url,
        &headers,
        SignableBody::Precomputed(STREAMING.into()),
        time,
        access_key,
        secret_key,
    );
    let date_time = added
        .iter()
        .find(|(k, _)| k == "x-amz-date")
        .map(|(_, v)| v.clone())
        .expect("x-amz-date");
    let scope = format!("{}/us-east-1/s3/aws4_request", &date_time[..8]);
    let key = v4::generate_signing_key(secret_key, time, "us-east-1", "s3");
    let empty = sha256(b"");
    let mut previous = seed;
    let mut body = Vec::with_capacity(encoded);
    for (i, chunk) in chunks
        .iter()
        .copied()
        .chain(std::iter::once(&[][..]))
        .enumerate()
    {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{date_time}\n{scope}\n{previous}\n{empty}\n{}",
            sha256(chunk)
        );
        let mut signature = v4::calculate_signature(key.as_ref(), to_sign.as_bytes());
        if tamper && i + 1 == chunks.len() {
            signature = "0".repeat(64);
        }
        body.extend_from_slice(
            format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes(),
        );
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
        previous = signature;
    }
    let mut req = http::Request::put(url);
    for (k, v) in headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(added)
    {
        req = req.header(k, v);
    }
    req.body(Full::new(Bytes::from(body)))
        .expect("valid request")
}
