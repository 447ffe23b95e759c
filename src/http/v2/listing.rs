//! Tags list, catalog and referrers: the content discovery endpoints.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::Ctx;
use super::blobs::internal;
use crate::http::error::ApiError;
use crate::oci::media::OCI_INDEX;
use crate::oci::{Digest, RepoName};
use crate::store::Page;

/// `n` and `last` of a paginated listing.
fn pagination(ctx: Ctx<'_>) -> Result<(Option<usize>, Option<&str>), ApiError> {
    let n = match ctx.query.get("n") {
        None => None,
        // All digits but beyond usize: as many as we give, like any large `n`.
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Some(v.parse::<usize>().unwrap_or(usize::MAX))
        }
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                "the n parameter must be a non-negative integer",
            )
        })?),
    };
    Ok((n, ctx.query.get("last")))
}

/// `path?query`, the query form-encoded from `params`: where a listing continues.
fn page_url(path: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(params);
    format!("{path}?{}", q.finish())
}

/// An RFC 8288 `Link` to the next page.
fn next_link(url: &str) -> String {
    format!("<{url}>; rel=\"next\"")
}

/// Where the referrers of `subject` continue after the referrer digest `last`
/// (the `Link` of a referrers page, and the model API's `referrers_next`).
pub(crate) fn referrers_page(
    repo: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
    last: &str,
) -> String {
    let mut params = Vec::with_capacity(2);
    if let Some(t) = artifact_type {
        params.push(("artifactType", t));
    }
    params.push(("last", last));
    page_url(&format!("/v2/{repo}/referrers/{subject}"), &params)
}

/// A JSON listing with an RFC 8288 `Link` to the next page when there is one.
fn page_response(
    path: &str,
    n: Option<usize>,
    page: &Page,
    body: serde_json::Value,
) -> Result<Response, ApiError> {
    let mut b = Response::builder().header(header::CONTENT_TYPE, "application/json");
    if let (true, Some(last)) = (page.more, page.items.last()) {
        let n = n.map(|n| n.to_string());
        let mut params = Vec::with_capacity(2);
        if let Some(n) = &n {
            params.push(("n", n.as_str()));
        }
        params.push(("last", last.as_str()));
        b = b.header(header::LINK, next_link(&page_url(path, &params)));
    }
    b.body(Body::from(body.to_string())).map_err(internal)
}

pub(super) async fn tags(ctx: Ctx<'_>, repo: &RepoName) -> Result<Response, ApiError> {
    let (n, last) = pagination(ctx)?;
    let page = ctx.app.registry.list_tags(repo.as_str(), n, last).await?;
    let body = json!({ "name": repo.as_str(), "tags": page.items });
    page_response(&format!("/v2/{repo}/tags/list"), n, &page, body)
}

pub(super) async fn catalog(ctx: Ctx<'_>) -> Result<Response, ApiError> {
    let (n, last) = pagination(ctx)?;
    let grant = ctx.grant;
    let visible = move |name: &str| grant.may_list(name);
    let page = ctx.app.registry.list_repos(n, last, &visible).await?;
    let body = json!({ "repositories": page.items });
    page_response("/v2/_catalog", n, &page, body)
}

pub(super) async fn referrers(
    ctx: Ctx<'_>,
    repo: &RepoName,
    subject: &Digest,
) -> Result<Response, ApiError> {
    // An empty artifactType names no type: no filter, as an empty one on a
    // manifest counts as missing.
    let artifact_type = ctx.query.get("artifactType").filter(|t| !t.is_empty());
    let page = ctx
        .app
        .registry
        .referrers(repo.as_str(), subject, artifact_type, ctx.query.get("last"))
        .await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": page.manifests,
    });
    let mut b = Response::builder().header(header::CONTENT_TYPE, OCI_INDEX);
    if artifact_type.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    if let Some(after) = &page.next_after {
        let url = referrers_page(repo.as_str(), subject, artifact_type, after);
        b = b.header(header::LINK, next_link(&url));
    }
    b.body(Body::from(body.to_string())).map_err(internal)
}
