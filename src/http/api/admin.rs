//! The policy, the registry's public key, the audit log and the event stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::error::ModelApiError;
use super::{ApiCtx, json};
use crate::governance::events::{TYPE_PREFIX, cloud_event};
use crate::http::App;
use crate::store::Action;
use crate::store::audit::{AuditQuery, AuditRecord};

/// `GET /api/v1/policy`: the policy text in force; `ETag` is its SHA-256.
pub(super) async fn get_policy(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let policy = ctx.app.registry.governance().policy();
    let mut resp = (
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        policy.text.clone(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", policy.sha256)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// `PUT /api/v1/policy` (TOML body; `If-Match` with the ETag of the policy edited).
pub(super) async fn put_policy(ctx: &ApiCtx<'_>, text: Bytes) -> Result<Response, ModelApiError> {
    let text = std::str::from_utf8(&text)
        .map_err(|_| ModelApiError::bad_request("POLICY_INVALID", "the policy is not UTF-8"))?;
    // `*`: any policy (there always is one, if only the empty one).
    let expected = ctx
        .header(header::IF_MATCH)
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| v != "*");
    let policy = ctx
        .app
        .registry
        .set_policy(text, expected.as_deref(), ctx.actor)
        .await?;
    json(&serde_json::json!({
        "sha256": policy.sha256,
        "repositories": policy.rules.iter().map(|r| r.pattern.text.as_str()).collect::<Vec<_>>(),
        "webhooks": policy.webhooks.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
    }))
}

/// `GET /api/v1/signing-key`: the public key the registry signs attestations with.
pub(super) async fn signing_key(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let key = &ctx.app.registry.governance().key;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        key.public_pem().to_string(),
    )
        .into_response())
}

fn audit_query(ctx: &ApiCtx<'_>) -> Result<AuditQuery, ModelApiError> {
    let q = ctx.query;
    let action = q
        .get("action")
        .map(|a| {
            Action::parse(a.strip_prefix(TYPE_PREFIX).unwrap_or(a)).ok_or_else(|| {
                ModelApiError::bad_request("QUERY_INVALID", format!("unknown action {a:?}"))
            })
        })
        .transpose()?;
    Ok(AuditQuery {
        repo: q.get("repo").map(str::to_string),
        actor: q.get("actor").map(str::to_string),
        action,
        since_ms: q.time_ms("since")?,
        until_ms: q.time_ms("until")?,
    })
}

fn seq_param(ctx: &ApiCtx<'_>, key: &str) -> Result<Option<u64>, ModelApiError> {
    ctx.query
        .get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ModelApiError::bad_request(
                    "QUERY_INVALID",
                    format!("{key} must be a sequence number"),
                )
            })
        })
        .transpose()
}

#[derive(Serialize)]
struct Head {
    seq: u64,
    hash: String,
    /// The registry's signature (base64, ECDSA P-256 SHA-256) over
    /// `berth audit head <seq> <hash>`: a checkpoint an exported log can be
    /// checked against later.
    signature: String,
}

fn signed_head(app: &App, head: Option<(u64, String)>) -> Option<Head> {
    let (seq, hash) = head?;
    let key = &app.registry.governance().key;
    let signature = key
        .sign(crate::store::audit::head_message(seq, &hash).as_bytes())
        .ok()?;
    Some(Head {
        seq,
        hash,
        signature: crate::governance::b64(&signature),
    })
}

#[derive(Serialize)]
struct AuditView {
    items: Vec<AuditRecord>,
    next_cursor: Option<String>,
    head: Option<Head>,
}

/// `GET /api/v1/audit?repo=&actor=&action=&since=&until=&limit=&cursor=`
pub(super) async fn audit(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let query = audit_query(ctx)?;
    let after = match ctx.query.cursor() {
        Some(c) => c.parse::<u64>().map_err(|_| {
            ModelApiError::bad_request("CURSOR_INVALID", "cursor must be an audit cursor")
        })?,
        None => 0,
    };
    let registry = &ctx.app.registry;
    let page = registry
        .audit_page(&query, after, ctx.query.limit()?)
        .await?;
    let next_cursor = page.next.map(|n| n.to_string());
    let head = signed_head(ctx.app, registry.audit_head().await?);
    json(&AuditView {
        items: page.lines.into_iter().map(|(r, _)| r).collect(),
        next_cursor,
        head,
    })
}

const EXPORT_PAGE: usize = 1000;

/// `GET /api/v1/audit/export[?after=]`: the log as JSON Lines, each line exactly
/// as stored (so its hash can be checked), streamed page by page. The head at
/// the start of the export is in `Berth-Audit-Head: <seq> <hash>`, signed by the
/// registry in `Berth-Audit-Head-Signature` (see `store::audit::head_message`).
pub(super) async fn audit_export(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let after = seq_param(ctx, "after")?.unwrap_or(0);
    let app = ctx.app.clone();
    let head = app.registry.audit_head().await?;
    let until = head.as_ref().map_or(0, |(s, _)| *s);
    let stream = futures_util::stream::unfold(Some(after), move |state| {
        let app = app.clone();
        async move {
            let after = state?;
            if after >= until {
                return None;
            }
            match app
                .registry
                .audit_page(&AuditQuery::default(), after, EXPORT_PAGE)
                .await
            {
                Ok(page) => {
                    let mut out = Vec::new();
                    let mut last = after;
                    for (r, line) in page.lines.iter().take_while(|(r, _)| r.seq <= until) {
                        out.extend_from_slice(line);
                        out.push(b'\n');
                        last = r.seq;
                    }
                    let next = page.next.and((last > after).then_some(last));
                    Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(ModelApiError::internal)?;
    if let Some(h) = signed_head(ctx.app, head) {
        let pairs = [
            ("berth-audit-head", format!("{} {}", h.seq, h.hash)),
            ("berth-audit-head-signature", h.signature),
        ];
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    Ok(resp)
}

/// What an event stream sends.
struct Stream {
    app: Arc<App>,
    query: AuditQuery,
    types: Vec<Action>,
    after: u64,
    buffer: VecDeque<AuditRecord>,
    changes: tokio::sync::watch::Receiver<u64>,
    /// The server is stopping: the stream ends.
    stopping: tokio::sync::watch::Receiver<bool>,
}

const EVENT_BATCH: usize = 100;

impl Stream {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                let source = &self.app.registry.governance().settings.event_source;
                let data = serde_json::to_string(&cloud_event(&r, source)).ok()?;
                return Some(
                    Event::default()
                        .id(r.seq.to_string())
                        .event(format!("{TYPE_PREFIX}{}", r.action.as_str()))
                        .data(data),
                );
            }
            self.changes.borrow_and_update();
            let page = self
                .app
                .registry
                .audit_page(&self.query, self.after, EVENT_BATCH)
                .await
                .ok()?;
            match (page.next, page.lines.last()) {
                (Some(n), _) => self.after = n,
                (None, Some((last, _))) => self.after = last.seq,
                (None, None) => {}
            }
            let types = &self.types;
            self.buffer.extend(
                page.lines
                    .into_iter()
                    .map(|(r, _)| r)
                    .filter(|r| types.is_empty() || types.contains(&r.action)),
            );
            if self.buffer.is_empty() && page.next.is_none() {
                tokio::select! {
                    changed = self.changes.changed() => changed.ok()?,
                    _ = self.stopping.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}

/// `GET /api/v1/events?since=<seq>&type=&repo=`: Server-Sent Events, one per
/// audit record after `since` (or after `Last-Event-ID`; by default only new
/// ones), each a CloudEvent with the sequence number as its SSE id.
pub(super) async fn events(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let last_id = ctx
        .header(header::HeaderName::from_static("last-event-id"))
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ModelApiError::bad_request(
                    "QUERY_INVALID",
                    "Last-Event-ID must be a sequence number",
                )
            })
        })
        .transpose()?;
    let after = match last_id.or(seq_param(ctx, "since")?) {
        Some(s) => s,
        None => ctx.app.registry.audit_head().await?.map_or(0, |(s, _)| s),
    };
    let mut types = Vec::new();
    for list in ctx.query.all("type")? {
        for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let a = Action::parse(t.strip_prefix(TYPE_PREFIX).unwrap_or(t)).ok_or_else(|| {
                ModelApiError::bad_request("QUERY_INVALID", format!("unknown event type {t:?}"))
            })?;
            types.push(a);
        }
    }
    let state = Stream {
        app: ctx.app.clone(),
        query: AuditQuery {
            repo: ctx.query.get("repo").map(str::to_string),
            ..AuditQuery::default()
        },
        types,
        after,
        buffer: VecDeque::new(),
        changes: ctx.app.registry.audit_changes(),
        stopping: ctx.app.stopping.subscribe(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let e = s.next().await?;
        Some((Ok::<_, Infallible>(e), s))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
