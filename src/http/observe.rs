//! Per-request observability: a request id, a tracing span with method, route,
//! repository and status, and metrics. The closing log line and latency are taken
//! when the response body ends, so they cover streamed downloads.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tracing::Instrument;

use super::App;
use super::actor::ClientAddr;
use super::dispatch::RouteName;
use super::metrics::{RequestLabels, RouteLabels};

const REQUEST_ID: &str = "x-request-id";

/// A client-supplied request id is kept if it is short and printable.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

pub async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string());
    let span = tracing::info_span!(
        "request",
        id = %id,
        client = client.as_deref().unwrap_or("-"),
        method = %req.method(),
        path = %req.uri().path(),
        route = tracing::field::Empty,
        repo = tracing::field::Empty,
        actor = tracing::field::Empty,
        auth = tracing::field::Empty,
    );
    let start = Instant::now();
    let method = req.method().to_string();
    let received = Arc::new(AtomicU64::new(0));
    let req = req.map(|b| {
        Body::new(Counted {
            inner: b,
            count: received.clone(),
            finish: None,
        })
    });
    let mut resp = next.run(req).instrument(span.clone()).await;
    let route = resp
        .extensions()
        .get::<RouteName>()
        .map(|r| r.0)
        .unwrap_or("other");
    let status = resp.status();
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: status.as_u16(),
        })
        .inc();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let finish = Finish {
        app,
        span,
        route,
        status,
        start,
        received,
        sent: 0,
    };
    resp.map(|b| {
        Body::new(Counted {
            inner: b,
            count: Arc::new(AtomicU64::new(0)),
            finish: Some(finish),
        })
    })
}

/// Logs and records a request once its response body is finished or dropped.
struct Finish {
    app: Arc<App>,
    span: tracing::Span,
    route: &'static str,
    status: StatusCode,
    start: Instant,
    received: Arc<AtomicU64>,
    sent: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let labels = RouteLabels { route: self.route };
        let m = &self.app.metrics;
        m.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        m.bytes_in.get_or_create(&labels).inc_by(received);
        m.bytes_out.get_or_create(&labels).inc_by(self.sent);
        let _e = self.span.enter();
        tracing::info!(
            status = self.status.as_u16(),
            bytes_in = received,
            bytes_out = self.sent,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    }
}

/// A body that counts the data bytes passing through it.
struct Counted {
    inner: Body,
    count: Arc<AtomicU64>,
    finish: Option<Finish>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            self.count.fetch_add(n, Ordering::Relaxed);
            if let Some(f) = self.finish.as_mut() {
                f.sent += n;
            }
        }
        if let Poll::Ready(None) = &polled {
            self.finish.take(); // the body is complete: log now, not when hyper drops it
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
