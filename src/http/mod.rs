//! The HTTP edge: axum router, observability, the `/v2` API and the `/api/v1` model API.

pub mod access;
pub mod actor;
mod api;
mod authn;
mod dispatch;
mod endpoint;
mod error;
mod metrics;
mod observe;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};

pub use access::{Access, Action, Scope};
pub use endpoint::{Endpoint, EndpointError};
pub use error::ApiError;
pub use metrics::{ConnectionMetrics, Metrics, ReasonLabels};

use crate::auth::Auth;
use crate::registry::Registry;

/// Everything a request handler can reach.
pub struct App {
    pub registry: Registry,
    /// Who asks and what they may do; checked once per request by the dispatcher.
    pub auth: Auth,
    pub metrics: Metrics,
    /// Set when the server stops: endless responses (event streams) end, so
    /// that a graceful shutdown is not held open by a watching client.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Open access: anyone may do anything (loopback, tests).
    pub fn new(registry: Registry) -> Arc<App> {
        App::with_auth(registry, Auth::open_ephemeral())
    }

    pub fn with_auth(registry: Registry, auth: Auth) -> Arc<App> {
        let metrics = Metrics::new();
        metrics.register_counter(
            "integrity_failures",
            "Stored copies (blobs, manifests) found failing verification and set aside",
            registry.rot_found(),
        );
        metrics.register_counter(
            "blob_redirects",
            "Blob GETs answered with a redirect to the object store",
            registry.redirects(),
        );
        Arc::new(App {
            registry,
            auth,
            metrics,
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }
}

/// The full router: `/v2` API, `/api` model API, `/metrics`, `/healthz`, `/readyz`,
/// with request ids, tracing and metrics on every request.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .route(authn::TOKEN_PATH, get(authn::token).post(authn::token))
        .route("/api", any(dispatch::dispatch::<api::ModelApi>))
        .route("/api/{*rest}", any(dispatch::dispatch::<api::ModelApi>))
        .fallback(dispatch::dispatch::<v2::V2>)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            observe::observe,
        ))
        .with_state(app)
}

async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}
