//! Prometheus metrics: requests by route and status, imports by outcome, import latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route pattern (`/api/v1/apps/{id}`), not the concrete path.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of one import.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportLabels {
    /// `ok` or the problem code.
    pub outcome: String,
}

/// The App Store's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Imports by outcome.
    pub imports: Family<ImportLabels, Counter>,
    /// Seconds an import took.
    pub import_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("appstore");
        let requests = Family::<RequestLabels, Counter>::default();
        let imports = Family::<ImportLabels, Counter>::default();
        let import_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "requests",
            "Requests served, by method, route and HTTP status",
            requests.clone(),
        );
        registry.register("imports", "Bundle imports, by outcome", imports.clone());
        registry.register(
            "import_duration_seconds",
            "Time to import a bundle",
            import_seconds.clone(),
        );
        Self {
            registry,
            requests,
            imports,
            import_seconds,
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
