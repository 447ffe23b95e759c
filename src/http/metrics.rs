//! Prometheus metrics: requests by route and status, latency, bytes in and out,
//! upload sessions.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as PromRegistry;

use super::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// Connection counts, for `/metrics`.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    /// Refused at accept, by reason (`per_address`, `total`).
    pub refused: Family<ReasonLabels, Counter>,
    /// Closed for silence, by phase (`first_request`, `write`).
    pub timed_out: Family<ReasonLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

impl ConnectionMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "connections_open",
            "Open client connections",
            self.open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept because a limit was reached, by reason",
            self.refused.clone(),
        );
        r.register(
            "connections_timed_out",
            "Connections closed because the client went silent, by phase",
            self.timed_out.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    pub repository: String,
}

/// The figures of the newest storage report (`GET /api/v1/storage`, or the
/// server's periodic walk): set at each scrape, never computed by one.
#[derive(Default)]
pub struct StorageMetrics {
    logical: Gauge,
    physical: Gauge,
    reclaimable: Gauge,
    dedup: Gauge<f64, std::sync::atomic::AtomicU64>,
    repo_logical: Family<RepoLabels, Gauge>,
    repo_physical: Family<RepoLabels, Gauge>,
}

impl StorageMetrics {
    fn register(&self, r: &mut PromRegistry) {
        let gauges = [
            (
                "storage_logical_bytes",
                "Bytes of every version of every repository, counted whole",
                &self.logical,
            ),
            (
                "storage_physical_bytes",
                "Bytes the store holds, each blob and manifest once",
                &self.physical,
            ),
            (
                "storage_reclaimable_bytes",
                "Stored bytes no manifest is or references",
                &self.reclaimable,
            ),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
        r.register(
            "storage_dedup_ratio",
            "Logical over physical bytes",
            self.dedup.clone(),
        );
        r.register(
            "storage_repository_logical_bytes",
            "Bytes of a repository's versions, counted whole",
            self.repo_logical.clone(),
        );
        r.register(
            "storage_repository_physical_bytes",
            "Distinct bytes a repository holds",
            self.repo_physical.clone(),
        );
    }

    fn set(&self, report: &crate::registry::StorageReport) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let t = &report.total;
        self.logical.set(clamp(t.logical_bytes));
        self.physical.set(clamp(t.physical_bytes));
        self.reclaimable.set(clamp(t.reclaimable_bytes));
        self.dedup.set(t.dedup_ratio);
        self.repo_logical.clear();
        self.repo_physical.clear();
        for r in &report.repositories {
            let labels = RepoLabels {
                repository: r.name.clone(),
            };
            self.repo_logical
                .get_or_create(&labels)
                .set(clamp(r.logical_bytes));
            self.repo_physical
                .get_or_create(&labels)
                .set(clamp(r.physical_bytes));
        }
    }
}

pub struct Metrics {
    registry: Mutex<PromRegistry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub bytes_in: Family<RouteLabels, Counter>,
    pub bytes_out: Family<RouteLabels, Counter>,
    pub upload_sessions: Gauge,
    pub connections: ConnectionMetrics,
    /// Requests refused by authentication or access control, by reason
    /// (`unauthenticated`, `insufficient_scope`, `bad_credentials`, `backoff`, `forbidden`).
    pub denials: Family<ReasonLabels, Counter>,
    /// Tokens issued by the token endpoint.
    pub tokens_issued: Counter,
    pub storage: StorageMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = PromRegistry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_25, 2.0, 18))) as fn() -> Histogram,
        );
        let bytes_in = Family::<RouteLabels, Counter>::default();
        let bytes_out = Family::<RouteLabels, Counter>::default();
        let upload_sessions = Gauge::default();
        r.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time from request to the end of the response body",
            latency.clone(),
        );
        r.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        r.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        r.register(
            "upload_sessions_active",
            "Upload sessions this process is tracking",
            upload_sessions.clone(),
        );
        let connections = ConnectionMetrics::default();
        connections.register(&mut r);
        let denials = Family::<ReasonLabels, Counter>::default();
        r.register(
            "auth_denials",
            "Requests refused by authentication or access control, by reason",
            denials.clone(),
        );
        let tokens_issued = Counter::default();
        r.register(
            "auth_tokens_issued",
            "Registry tokens issued",
            tokens_issued.clone(),
        );
        let storage = StorageMetrics::default();
        storage.register(&mut r);
        Metrics {
            storage,
            connections,
            denials,
            tokens_issued,
            registry: Mutex::new(r),
            requests,
            latency: Family::clone(&latency),
            bytes_in,
            bytes_out,
            upload_sessions,
        }
    }

    /// Adds a counter kept elsewhere (in the registry's use cases).
    pub fn register_counter(&self, name: &str, help: &str, counter: Counter) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, counter);
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let r = self.registry.lock().map_err(|_| std::fmt::Error)?;
        prometheus_client::encoding::text::encode(&mut out, &r)?;
        Ok(out)
    }
}

pub async fn scrape(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    if let Err(resp) = super::authn::may_read_metrics(&app, req.headers(), req.extensions()).await {
        return resp;
    }
    app.metrics
        .upload_sessions
        .set(app.registry.active_upload_sessions() as i64);
    if let Some(report) = app.registry.last_storage_report() {
        app.metrics.storage.set(&report);
    }
    match app.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
