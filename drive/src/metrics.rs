//! Prometheus metrics: requests by operation and status, bytes in and out, latency.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The S3 operation (or the internal route).
    pub operation: String,
    /// The HTTP status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The S3 operation.
    pub operation: String,
}

/// Drive's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds to the response head.
    pub latency: Family<OperationLabels, Histogram>,
    /// Request body bytes received.
    pub bytes_in: Counter<u64, AtomicU64>,
    /// Response body bytes sent.
    pub bytes_out: Counter<u64, AtomicU64>,
}

impl Metrics {
    /// Registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("drive");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let bytes_in = Counter::<u64, AtomicU64>::default();
        let bytes_out = Counter::<u64, AtomicU64>::default();
        registry.register(
            "requests",
            "Requests served, by S3 operation and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by S3 operation",
            latency.clone(),
        );
        registry.register(
            "received_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        registry.register("sent_bytes", "Response body bytes sent", bytes_out.clone());
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
