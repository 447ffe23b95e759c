//! Aliases: resolve (the deploy hot path, with `ETag` and `304`), list, promote,
//! roll back, remove, history and time travel.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ModelApiError;
use super::{ApiCtx, json};
use crate::governance::gates::GateReport;
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::registry::{AliasView, Promotion, PromotionRequest};
use crate::store::{Actor, Expect, HistoryEntry, MoveKind};

/// How long a client may reuse a resolved alias without asking again.
pub const ALIAS_MAX_AGE_SECS: u32 = 5;

/// An alias as the API shows it.
#[derive(Serialize)]
pub struct AliasRecord<'a> {
    pub name: &'a str,
    pub alias: &'a str,
    pub digest: &'a Digest,
    /// Every tag on the target, the alias among them.
    pub tags: &'a [String],
    pub protected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_by: Option<&'a Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<MoveKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<&'a Digest>,
    /// The audit sequence number of the move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<&'a Digest>,
}

impl<'a> From<&'a AliasView> for AliasRecord<'a> {
    fn from(v: &'a AliasView) -> Self {
        let last = v.last.as_ref();
        AliasRecord {
            name: &v.repo,
            alias: &v.alias,
            digest: &v.target,
            tags: &v.tags,
            protected: v.protected,
            moved_by: last.map(|e| &e.actor),
            moved_at: last.map(|e| e.time.as_str()),
            kind: last.map(|e| e.kind),
            reason: last.and_then(|e| e.reason.as_deref()),
            previous: last.and_then(|e| e.previous.as_ref()),
            seq: last.map(|e| e.seq),
            attestation: last.and_then(|e| e.attestation.as_ref()),
        }
    }
}

#[derive(Serialize)]
struct PromotionView<'a> {
    alias: AliasRecord<'a>,
    previous: Option<&'a Digest>,
    changed: bool,
    dry_run: bool,
    report: &'a GateReport,
}

fn promotion_response(p: &Promotion) -> Result<Response, ModelApiError> {
    json(&PromotionView {
        alias: AliasRecord::from(&p.alias),
        previous: p.previous.as_ref(),
        changed: p.changed,
        dry_run: p.dry_run,
        report: &p.report,
    })
}

/// The entity tags an `If-Match` or `If-None-Match` lists (`*` as itself).
fn entity_tags(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(|t| t.trim())
        .map(|t| t.strip_prefix("W/").unwrap_or(t))
        .map(|t| t.trim_matches('"'))
        .filter(|t| !t.is_empty())
        .collect()
}

/// The precondition of a move: `If-Match: "<digest>"` (compare-and-swap),
/// `If-Match: *` (the alias must exist), `If-None-Match: *` (create only), or none.
fn expectation(ctx: &ApiCtx<'_>) -> Result<Expect, ModelApiError> {
    let invalid = |m: String| ModelApiError::bad_request("PRECONDITION_INVALID", m);
    match (
        ctx.header(header::IF_MATCH),
        ctx.header(header::IF_NONE_MATCH),
    ) {
        (None, None) => Ok(Expect::Any),
        (Some(_), Some(_)) => Err(invalid("give If-Match or If-None-Match, not both".into())),
        (None, Some(v)) => match entity_tags(v).as_slice() {
            ["*"] => Ok(Expect::Absent),
            _ => Err(invalid(
                "If-None-Match on a move must be * (create only)".into(),
            )),
        },
        (Some(v), None) => match entity_tags(v).as_slice() {
            ["*"] => Ok(Expect::Present),
            [one] => one.parse::<Digest>().map(Expect::Target).map_err(|e| {
                invalid(format!(
                    "If-Match must name the alias's current digest: {e}"
                ))
            }),
            _ => Err(invalid("If-Match must name one digest".into())),
        },
    }
}

fn reason_of(reason: Option<String>) -> Result<Option<String>, ModelApiError> {
    match reason.filter(|r| !r.trim().is_empty()) {
        Some(r) => {
            crate::registry::check_text("reason", &r)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// `GET /api/v1/models/<name>/aliases/<alias>`: what a deploy asks for.
pub(super) async fn get(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    alias: &Tag,
) -> Result<Response, ModelApiError> {
    if let Some(at) = ctx.query.time_ms("at")? {
        let entry = ctx
            .app
            .registry
            .alias_at(repo.as_str(), alias.as_str(), at)
            .await?;
        return json(&AtView {
            name: repo.as_str(),
            alias: alias.as_str(),
            at: ctx.query.get("at").unwrap_or_default(),
            digest: entry.target.as_ref(),
            entry: &entry,
        });
    }
    let view = ctx
        .app
        .registry
        .alias(repo.as_str(), alias.as_str())
        .await?;
    let etag = format!("\"{}\"", view.target);
    let cache = format!("max-age={ALIAS_MAX_AGE_SECS}");
    let fresh = ctx.header(header::IF_NONE_MATCH).is_some_and(|v| {
        entity_tags(v)
            .iter()
            .any(|t| *t == "*" || *t == view.target.to_string())
    });
    let mut resp = if fresh {
        (StatusCode::NOT_MODIFIED, Body::empty()).into_response()
    } else {
        json(&AliasRecord::from(&view))?
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&view.target.to_string()) {
        h.insert(crate::http::v2::DOCKER_CONTENT_DIGEST, v);
    }
    Ok(resp)
}

#[derive(Serialize)]
struct AtView<'a> {
    name: &'a str,
    alias: &'a str,
    at: &'a str,
    digest: Option<&'a Digest>,
    /// The move in force at that time.
    entry: &'a HistoryEntry,
}

/// `GET /api/v1/models/<name>/aliases`
pub(super) async fn list(ctx: &ApiCtx<'_>, repo: &RepoName) -> Result<Response, ModelApiError> {
    let views = ctx.app.registry.aliases(repo.as_str()).await?;
    json(&super::views::Page {
        items: views.iter().map(AliasRecord::from).collect(),
        next_cursor: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    target: String,
    #[serde(default)]
    reason: Option<String>,
}

fn parse_reference(what: &str, s: &str) -> Result<Reference, ModelApiError> {
    s.parse()
        .map_err(|e| ModelApiError::bad_request("REFERENCE_INVALID", format!("{what} {s:?}: {e}")))
}

/// `PUT /api/v1/models/<name>/aliases/<alias>` `{"target", "reason"}`
pub(super) async fn promote(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    alias: &Tag,
    body: PromoteBody,
) -> Result<Response, ModelApiError> {
    let expect = expectation(ctx)?;
    let req = PromotionRequest {
        repo: repo.to_string(),
        alias: alias.to_string(),
        target: parse_reference("target", &body.target)?,
        reason: reason_of(body.reason)?,
        expect,
        dry_run: ctx.query.flag("dry_run")?,
        actor: ctx.actor.clone(),
    };
    let p = ctx.app.registry.promote(&req).await?;
    promotion_response(&p)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/models/<name>/aliases/<alias>/rollback` `{"to"?, "reason"?}`
pub(super) async fn rollback(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    alias: &Tag,
    body: RollbackBody,
) -> Result<Response, ModelApiError> {
    let expect = expectation(ctx)?;
    let to = body
        .to
        .as_deref()
        .map(|t| parse_reference("to", t))
        .transpose()?;
    let req = PromotionRequest {
        repo: repo.to_string(),
        alias: alias.to_string(),
        // Unused by a rollback: the target is `to` or the previous one.
        target: Reference::Tag(alias.clone()),
        reason: reason_of(body.reason)?,
        expect,
        dry_run: ctx.query.flag("dry_run")?,
        actor: ctx.actor.clone(),
    };
    let p = ctx.app.registry.rollback(&req, to.as_ref()).await?;
    promotion_response(&p)
}

/// `DELETE /api/v1/models/<name>/aliases/<alias>[?reason=]`
pub(super) async fn unset(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    alias: &Tag,
) -> Result<Response, ModelApiError> {
    let expect = expectation(ctx)?;
    let reason = reason_of(ctx.query.get("reason").map(str::to_string))?;
    let previous = ctx
        .app
        .registry
        .unset_alias(repo.as_str(), alias.as_str(), expect, reason, ctx.actor)
        .await?;
    json(
        &serde_json::json!({ "name": repo.as_str(), "alias": alias.as_str(), "previous": previous }),
    )
}

/// `GET /api/v1/models/<name>/aliases/<alias>/history?limit=&cursor=`
pub(super) async fn history(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    alias: &Tag,
) -> Result<Response, ModelApiError> {
    let before = match ctx.query.cursor() {
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ModelApiError::bad_request("CURSOR_INVALID", "cursor must be a history cursor")
        })?),
        None => None,
    };
    let (items, more) = ctx
        .app
        .registry
        .alias_history(repo.as_str(), alias.as_str(), before, ctx.query.limit()?)
        .await?;
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => Some(last.seq.to_string()),
        _ => None,
    };
    json(&super::views::Page { items, next_cursor })
}
