//! The HTTP server: accepts connections, serves health and metrics beside the S3 service,
//! stamps every response with a request id, logs and measures every request, and shuts
//! down gracefully.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use s3s::service::S3Service;
use tokio::net::TcpListener;

use crate::alias_copy::ServeAgain;
use crate::api::{self, Api};
use crate::auth::OperationName;
use crate::dev_idp;
use crate::framing;
use crate::metrics::{Metrics, OperationLabels, RequestLabels};
use crate::sts::{self, Sts};
use crate::ui;
use shared_identity::discovery::{self, Discovery};

/// Everything a request handler needs.
pub struct State {
    /// The S3 protocol service.
    pub s3: S3Service,
    /// Metrics registry.
    pub metrics: Metrics,
    /// The storage backend, for readiness checks.
    pub backend: Arc<dyn buckets::Backend>,
    /// The STS endpoint.
    pub sts: Sts,
    /// Cloud discovery.
    pub discovery: Discovery,
    /// The built-in development issuer, when it runs (`--dev-issuer`).
    pub dev_issuer: Option<Arc<shared_identity::DevIssuer>>,
    /// Drive's own API (access keys).
    pub api: Api,
    /// The file browser.
    pub ui: ui::Ui,
}

/// Serves on `listener` until `shutdown` resolves, then waits up to `grace` for in-flight
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
    grace: std::time::Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without this a small response's body waits for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| guarded(Arc::clone(&state), req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "in-flight requests did not finish in time");
    }
}

fn request_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex_simd::encode_to_string(b, hex_simd::AsciiCase::Upper)
}

fn is_signed(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("Signature="))
}

type ResponseBody = s3s::Body;

/// Handles a request; a panic while doing so answers 500 instead of dropping the
/// connection (clients would take that for a network error and retry).
async fn guarded(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(handle(state, req))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("request handler panicked");
            Ok(Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(s3s::Body::empty())
                .expect("static response"))
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let id = request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let header_u64 = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let bytes_in = header_u64("x-amz-decoded-content-length")
        .or_else(|| header_u64(header::CONTENT_LENGTH.as_str()));
    // botocore before 1.44 (bundled in aws-cli 1.x) misreads the response that follows an
    // empty upload sent with `Expect: 100-continue` on the same connection; closing that
    // connection keeps such clients working (Ceph's gateway does the same).
    let close_after = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && header_u64(header::CONTENT_LENGTH.as_str()) == Some(0);

    let signed = is_signed(&req);
    let (operation, mut response) = match internal_route(&req) {
        _ if req.uri().path().starts_with(api::PREFIX) => {
            ("Api".to_owned(), state.api.handle(req).await)
        }
        _ if req.uri().path().starts_with(dev_idp::PREFIX) && state.dev_issuer.is_some() => {
            let issuer = state.dev_issuer.as_ref().expect("checked");
            ("DevIssuer".to_owned(), dev_idp::handle(issuer, req).await)
        }
        _ if req.uri().path() == ui::PREFIX
            || req.uri().path().starts_with(&format!("{}/", ui::PREFIX)) =>
        {
            (
                "FileBrowser".to_owned(),
                state.ui.handle(&state.sts, req).await,
            )
        }
        // Drive's own paths: no bucket can be named `_drive`.
        _ if req.uri().path().starts_with("/_drive/") => (
            "NotFound".to_owned(),
            api::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such Drive endpoint.",
            ),
        ),
        Some(route) if !signed => (route.to_owned(), internal(&state, route, &req).await),
        _ if !signed && is_sts(&req) => (
            "AssumeRoleWithWebIdentity".to_owned(),
            serve_sts(&state, req, &id).await,
        ),
        _ => {
            let slot = OperationName::default();
            let chunked = framing::is_chunked(req.headers());
            let mut req = req.map(|b| {
                let counted = Counting {
                    inner: b,
                    counter: state.metrics.bytes_in.clone(),
                };
                if chunked {
                    s3s::Body::http_body(framing::ChunkGuard::new(counted))
                } else {
                    s3s::Body::http_body(counted)
                }
            });
            req.extensions_mut().insert(slot.clone());
            let mut response = call_s3(&state, req).await;
            if let Some(again) = response.extensions_mut().remove::<ServeAgain>() {
                response = call_s3(&state, again.request(slot.clone())).await;
            }
            (
                slot.0
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "Unknown".to_owned()),
                response,
            )
        }
    };

    stamp_request_id(&mut response, &id);
    if close_after {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status();
    let bytes_out = (method != Method::HEAD)
        .then(|| response.headers().get(header::CONTENT_LENGTH))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: operation.clone(),
            status: status.as_u16(),
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&OperationLabels {
            operation: operation.clone(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        request_id = %id,
        %method,
        path = %path,
        operation = %operation,
        status = status.as_u16(),
        bytes_in,
        bytes_out,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let counter = state.metrics.bytes_out.clone();
    Ok(response.map(|b| s3s::Body::http_body(Counting { inner: b, counter })))
}

/// The S3 service's answer to `req`; a failure of the service itself is a bare 500.
async fn call_s3(state: &State, req: Request<s3s::Body>) -> Response<ResponseBody> {
    match state.s3.call(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "S3 service failed");
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(s3s::Body::empty())
                .expect("static response")
        }
    }
}

/// The unsigned routes served beside S3.
fn internal_route(req: &Request<Incoming>) -> Option<&'static str> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    match req.uri().path() {
        "/healthz" => Some("Healthz"),
        "/readyz" => Some("Readyz"),
        "/metrics" => Some("Metrics"),
        p if p.starts_with(discovery::PREFIX) => Some("Discovery"),
        _ => None,
    }
}

/// Whether an unsigned request is an STS call: a form POST, or a query naming an action.
fn is_sts(req: &Request<Incoming>) -> bool {
    let form = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    form || req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")))
}

/// Largest STS request body (a web identity token is at most 20 000 characters).
const MAX_STS_BODY: usize = 64 * 1024;

async fn serve_sts(state: &State, req: Request<Incoming>, id: &str) -> Response<ResponseBody> {
    use http_body_util::BodyExt;
    let mut params = sts::parse_form(req.uri().query().unwrap_or(""));
    let body = http_body_util::Limited::new(req.into_body(), MAX_STS_BODY)
        .collect()
        .await;
    let (status, xml) = match body {
        Ok(body) => {
            params.extend(sts::parse_form(&String::from_utf8_lossy(&body.to_bytes())));
            state.sts.handle(&params, id).await
        }
        Err(_) => sts::error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "The request body is too large or was cut off.",
            id,
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(s3s::Body::from(xml))
        .expect("static response")
}

async fn internal(state: &State, route: &str, req: &Request<Incoming>) -> Response<ResponseBody> {
    let mut status = StatusCode::OK;
    let (content_type, body) = match route {
        "Discovery" => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok());
            let path = &req.uri().path()[discovery::PREFIX.len()..];
            match state
                .discovery
                .answer(path, req.uri().query().unwrap_or(""), host)
            {
                Some(json) => ("application/json", json.to_string()),
                None => {
                    status = StatusCode::NOT_FOUND;
                    (
                        "application/json",
                        r#"{"code":5,"message":"not found"}"#.to_owned(),
                    )
                }
            }
        }
        "Metrics" => (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        "Readyz" => match state
            .backend
            .check_ready()
            .await
            .map_err(|e| e.to_string())
            .and(state.api.keys.check().await.map_err(|e| e.to_string()))
        {
            Ok(()) => ("text/plain; charset=utf-8", "ok\n".to_owned()),
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                status = StatusCode::SERVICE_UNAVAILABLE;
                ("text/plain; charset=utf-8", format!("not ready: {e}\n"))
            }
        },
        _ => ("text/plain; charset=utf-8", "ok\n".to_owned()),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(s3s::Body::from(body))
        .expect("static response")
}

/// Adds the request id header, and completes S3 error documents with the `RequestId` and,
/// where the protocol layer left it out, the `Message` S3 would send.
fn stamp_request_id(response: &mut Response<ResponseBody>, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-amz-request-id", v.clone());
        response.headers_mut().insert("x-amz-id-2", v);
    }
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return;
    }
    let Some(xml) = response.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&xml) else {
        return;
    };
    let Some(at) = text.rfind("</Error>") else {
        return;
    };
    let mut extra = String::new();
    if !text.contains("<Message>") {
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map_or("", |(c, _)| c);
        extra.push_str(&format!(
            "<Message>{}</Message>",
            crate::s3::default_message(code)
        ));
    }
    if !text.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{id}</RequestId>"));
    }
    if !extra.is_empty() {
        let stamped = format!("{}{extra}{}", &text[..at], &text[at..]);
        response.headers_mut().remove(header::CONTENT_LENGTH);
        *response.body_mut() = s3s::Body::from(stamped);
    }
}

/// A body that counts the data bytes passing through it.
struct Counting<B> {
    inner: B,
    counter: Counter<u64, AtomicU64>,
}

impl<B> HttpBody for Counting<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
