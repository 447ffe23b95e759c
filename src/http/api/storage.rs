//! The bytes the registry keeps: `POST /api/v1/scrub` re-hashes them
//! (`GET /api/v1/storage`, what they add up to, is the registry's report as is).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiCtx;
use super::error::ModelApiError;
use crate::registry::{ScrubOptions, ScrubProgress};

/// How often a running scrub reports its progress: also what keeps an idle
/// connection from being taken for a dead one.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `POST /api/v1/scrub[?max_mib_per_sec=N]`: re-reads and hashes every stored
/// blob, setting aside those that fail. The answer is JSON Lines: a
/// `{"progress": …}` line every few seconds, then `{"report": …}` (or
/// `{"error": …}`). The scrub runs to its end even if the caller goes away.
pub(super) async fn scrub(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let max_bytes_per_sec = match ctx.query.get("max_mib_per_sec") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(m) if m.is_finite() && m > 0.0 => Some((m * (1u64 << 20) as f64) as u64),
            _ => {
                return Err(ModelApiError::bad_request(
                    "QUERY_INVALID",
                    "max_mib_per_sec must be a positive number",
                ));
            }
        },
    };
    let turn = ctx.app.registry.scrub_turn()?;
    let progress = Arc::new(ScrubProgress::default());
    let opts = ScrubOptions {
        max_bytes_per_sec,
        progress: progress.clone(),
    };
    let app = ctx.app.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    tokio::spawn(async move {
        let run = app.registry.scrub(&turn, &opts);
        tokio::pin!(run);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                // Never waits on a caller that does not read: a line is dropped instead.
                _ = tick.tick() => { let _ = tx.try_send(progress_line(&progress).into()); }
            }
        };
        let last = match result {
            Ok(report) => json!({ "report": report }),
            Err(e) => json!({ "error": { "message": e.to_string() } }),
        };
        let _ = tx.send(format!("{last}\n").into()).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(line), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /api/v1/gc[?apply=true&keep_untagged=N&grace_secs=S&tag_window_secs=W]`:
/// one garbage collection, a dry run unless `apply=true`; the parameters
/// override the server's configuration. Runs to its end even if the caller
/// goes away; answers with the report.
pub(super) async fn gc(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let mut opts = ctx.app.registry.gc_defaults().clone();
    let number = |key: &str| -> Result<Option<u64>, ModelApiError> {
        ctx.query
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ModelApiError::bad_request(
                        "QUERY_INVALID",
                        format!("{key} must be a whole number"),
                    )
                })
            })
            .transpose()
    };
    opts.apply = match ctx.query.get("apply") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ModelApiError::bad_request(
                "QUERY_INVALID",
                "apply must be true or false",
            ));
        }
    };
    if let Some(n) = number("keep_untagged")? {
        opts.keep_untagged = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if let Some(s) = number("grace_secs")? {
        opts.grace = Duration::from_secs(s);
    }
    if let Some(s) = number("tag_window_secs")? {
        opts.tag_window = Duration::from_secs(s);
    }
    let app = ctx.app.clone();
    let report = tokio::spawn(async move { app.registry.gc(&opts).await })
        .await
        .map_err(ModelApiError::internal)??;
    super::json(&report)
}

fn progress_line(p: &ScrubProgress) -> String {
    let line = json!({ "progress": {
        "blobs_checked": p.blobs.load(Ordering::Relaxed),
        "bytes_checked": p.bytes.load(Ordering::Relaxed),
    }});
    format!("{line}\n")
}
