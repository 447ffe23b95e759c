//! The model API under `/api/v1`: JSON, dispatched on a parsed `ApiEndpoint`,
//! paginated with opaque cursors (`?limit=&cursor=` → `{"items": [...],
//! "next_cursor": "..." | null}`), errors mapped in `error.rs`. Reads (models,
//! versions, aliases, audit, events) and the governed writes (promotions,
//! rollbacks, approvals, labels, deletes, the policy).

mod accounts;
mod admin;
mod aliases;
mod endpoint;
mod error;
mod models;
mod review;
mod storage;
mod views;

pub(super) use error::denial_status;

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;

use endpoint::ApiEndpoint;
use error::ModelApiError;

use super::App;

use super::dispatch::{Call, Surface};
use crate::http::access::Principal;
use crate::store::Actor;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// At most this many values of a repeatable query parameter.
const MAX_REPEATS: usize = 32;
/// Largest JSON request body.
const MAX_JSON_BODY: usize = 64 * 1024;

/// What every handler gets of the request.
pub(super) struct ApiCtx<'a> {
    app: &'a Arc<App>,
    headers: &'a HeaderMap,
    query: &'a Query,
    actor: &'a Actor,
    principal: &'a Principal,
    grant: crate::http::access::Grant<'a>,
}

impl ApiCtx<'_> {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The `/api/v1` surface for the dispatcher.
pub(super) struct ModelApi;

impl Surface for ModelApi {
    type Endpoint = ApiEndpoint;
    type Error = ModelApiError;
    const UNKNOWN_ROUTE: &'static str = "api_unknown";

    fn parse(parts: &Parts) -> Result<ApiEndpoint, ModelApiError> {
        Ok(ApiEndpoint::parse(parts.uri.path())?)
    }

    fn actor_invalid(message: String) -> ModelApiError {
        ModelApiError::bad_request("ACTOR_INVALID", message)
    }

    async fn handle(call: Call<'_, ApiEndpoint>, body: Body) -> Result<Response, ModelApiError> {
        let query = Query::parse(call.parts.uri.query())?;
        let ctx = ApiCtx {
            app: call.app,
            headers: &call.parts.headers,
            query: &query,
            actor: call.actor,
            principal: call.principal,
            grant: call.grant,
        };
        handle(&ctx, call.endpoint, &call.parts.method, body).await
    }

    fn respond(
        endpoint: Option<&ApiEndpoint>,
        result: Result<Response, ModelApiError>,
    ) -> Response {
        result.unwrap_or_else(|e| {
            let mut r = e.into_response();
            if r.status() == StatusCode::METHOD_NOT_ALLOWED {
                // RFC 9110: a 405 names the methods the resource does allow.
                let allow = endpoint.map_or("GET, HEAD", ApiEndpoint::allowed_methods);
                r.headers_mut()
                    .insert(header::ALLOW, axum::http::HeaderValue::from_static(allow));
            }
            r
        })
    }
}

async fn handle(
    ctx: &ApiCtx<'_>,
    endpoint: &ApiEndpoint,
    method: &Method,
    body: Body,
) -> Result<Response, ModelApiError> {
    use ApiEndpoint as E;
    // HEAD is GET without the body (hyper leaves the body out).
    let m = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    if m != Method::GET {
        // A change takes only the parameters it reads: a misspelt `dry_run`
        // must not go through as a real promotion.
        let takes: &[&str] = match (endpoint, &m) {
            (E::Alias { .. }, &Method::PUT) | (E::Rollback { .. }, _) => &["dry_run"],
            (E::Alias { .. }, &Method::DELETE) => &["reason"],
            (E::Scrub, _) => &["max_mib_per_sec"],
            (E::Gc, _) => &["apply", "keep_untagged", "grace_secs", "tag_window_secs"],
            _ => &[],
        };
        ctx.query.only(takes)?;
    }
    let app = ctx.app.as_ref();
    let q = ctx.query;
    match (endpoint, m) {
        (E::Models, Method::GET) => models::list(app, q, ctx.grant).await,
        (E::Versions { repo }, Method::GET) => models::versions(app, repo, q).await,
        (E::Version { repo, reference }, Method::GET) => models::show(app, repo, reference).await,
        (E::Version { repo, reference }, Method::DELETE) => {
            review::delete_version(ctx, repo, reference).await
        }
        (E::Compare { repo }, Method::GET) => models::compare(app, repo, q).await,
        (E::Approvals { repo, reference }, Method::GET) => {
            review::approvals(ctx, repo, reference).await
        }
        (E::Approvals { repo, reference }, Method::POST) => {
            review::approve(ctx, repo, reference, json_body(ctx, body).await?).await
        }
        (E::Labels { repo, reference }, Method::GET) => review::labels(ctx, repo, reference).await,
        (E::Labels { repo, reference }, Method::PATCH) => {
            review::patch_labels(ctx, repo, reference, json_body(ctx, body).await?).await
        }
        (
            E::Label {
                repo,
                reference,
                key,
            },
            Method::PUT,
        ) => review::put_label(ctx, repo, reference, key, json_body(ctx, body).await?).await,
        (
            E::Label {
                repo,
                reference,
                key,
            },
            Method::DELETE,
        ) => review::delete_label(ctx, repo, reference, key).await,
        (E::Aliases { repo }, Method::GET) => aliases::list(ctx, repo).await,
        (E::Alias { repo, alias }, Method::GET) => aliases::get(ctx, repo, alias).await,
        (E::Alias { repo, alias }, Method::PUT) => {
            aliases::promote(ctx, repo, alias, json_body(ctx, body).await?).await
        }
        (E::Alias { repo, alias }, Method::DELETE) => aliases::unset(ctx, repo, alias).await,
        (E::AliasHistory { repo, alias }, Method::GET) => aliases::history(ctx, repo, alias).await,
        (E::Rollback { repo, alias }, Method::POST) => {
            aliases::rollback(ctx, repo, alias, json_body(ctx, body).await?).await
        }
        (E::Policy, Method::GET) => admin::get_policy(ctx).await,
        (E::Policy, Method::PUT) => {
            let text = read_body(body, crate::governance::policy::MAX_POLICY_BYTES).await?;
            admin::put_policy(ctx, text).await
        }
        (E::SigningKey, Method::GET) => admin::signing_key(ctx).await,
        (E::Audit, Method::GET) => admin::audit(ctx).await,
        (E::AuditExport, Method::GET) => admin::audit_export(ctx).await,
        (E::Events, Method::GET) => admin::events(ctx).await,
        (E::Deliveries, Method::GET) => json(&ctx.app.registry.delivery_status()),
        (E::Whoami, Method::GET) => accounts::whoami(ctx).await,
        (E::Robots, Method::GET) => accounts::list(ctx).await,
        (E::Robots, Method::POST) => accounts::create(ctx, json_body(ctx, body).await?).await,
        (E::Robot { name }, Method::GET) => accounts::get(ctx, name).await,
        (E::Robot { name }, Method::DELETE) => accounts::revoke(ctx, name).await,
        (E::Scrub, Method::POST) => storage::scrub(ctx).await,
        (E::Gc, Method::POST) => storage::gc(ctx).await,
        (E::Storage, Method::GET) => json(&*ctx.app.registry.storage_report().await?),
        _ => Err(ModelApiError::method_not_allowed(
            endpoint.allowed_methods(),
        )),
    }
}

/// A JSON response.
fn json<T: Serialize>(v: &T) -> Result<Response, ModelApiError> {
    let body = serde_json::to_vec(v).map_err(ModelApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The request body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ModelApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ModelApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("the request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(ModelApiError::bad_request(
            "BODY_INVALID",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// The request body as JSON of type `T`. It must say it is JSON: a browser
/// sends a cross-site form or `text/plain` POST without asking first, never a
/// JSON one.
async fn json_body<T: serde::de::DeserializeOwned>(
    ctx: &ApiCtx<'_>,
    body: Body,
) -> Result<T, ModelApiError> {
    let essence = ctx
        .header(header::CONTENT_TYPE)
        .map(crate::oci::media::essence);
    if !essence.is_some_and(|t| t == "application/json" || t.ends_with("+json")) {
        return Err(ModelApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as JSON, with Content-Type: application/json",
        ));
    }
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ModelApiError::bad_request("BODY_INVALID", format!("the request body: {e}")))
}

/// Query parameters, keeping repeated keys.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Result<Query, ModelApiError> {
        let pairs: Vec<(String, String)> = q
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if pairs.len() > 4 * MAX_REPEATS {
            return Err(ModelApiError::bad_request(
                "QUERY_INVALID",
                "too many query parameters",
            ));
        }
        Ok(Query(pairs))
    }

    /// Refuses any parameter but `allowed`, and any given twice.
    fn only(&self, allowed: &[&str]) -> Result<(), ModelApiError> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(ModelApiError::bad_request(
                    "QUERY_INVALID",
                    format!(
                        "unknown query parameter {k:?} (this request takes: {})",
                        if allowed.is_empty() {
                            "none".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
            if self.0[..i].iter().any(|(p, _)| p == k) {
                return Err(ModelApiError::bad_request(
                    "QUERY_INVALID",
                    format!("query parameter {k:?} given twice"),
                ));
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (at most `MAX_REPEATS`).
    fn all(&self, key: &str) -> Result<Vec<&str>, ModelApiError> {
        let v: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if v.len() > MAX_REPEATS {
            return Err(ModelApiError::bad_request(
                "QUERY_INVALID",
                format!("at most {MAX_REPEATS} {key} parameters"),
            ));
        }
        Ok(v)
    }

    /// `limit`: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
    fn limit(&self) -> Result<usize, ModelApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ModelApiError::bad_request(
                        "LIMIT_INVALID",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    }

    /// `cursor`, if present and non-empty.
    fn cursor(&self) -> Option<&str> {
        self.get("cursor").filter(|c| !c.is_empty())
    }

    /// A boolean flag: absent, `false` or `0` is false; `true`, `1` or empty is true.
    fn flag(&self, key: &str) -> Result<bool, ModelApiError> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(v) => Err(ModelApiError::bad_request(
                "QUERY_INVALID",
                format!("{key} must be true or false, not {v:?}"),
            )),
        }
    }

    /// A time parameter (RFC 3339) as milliseconds.
    fn time_ms(&self, key: &str) -> Result<Option<i64>, ModelApiError> {
        self.get(key)
            .map(|v| {
                crate::store::audit::time_ms(v).ok_or_else(|| {
                    ModelApiError::bad_request(
                        "QUERY_INVALID",
                        format!("{key} must be an RFC 3339 time, such as 2026-01-31T12:00:00Z"),
                    )
                })
            })
            .transpose()
    }
}
