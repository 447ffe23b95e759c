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
        Metrics {
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
