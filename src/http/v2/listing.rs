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

/// A JSON listing with an RFC 5988 `Link` to the next page when there is one.
fn page_response(
    path: &str,
    n: Option<usize>,
    page: &Page,
    body: serde_json::Value,
) -> Result<Response, ApiError> {
    let mut b = Response::builder().header(header::CONTENT_TYPE, "application/json");
    if let (true, Some(last)) = (page.more, page.items.last()) {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = n {
            q.append_pair("n", &n.to_string());
        }
        q.append_pair("last", last);
        b = b.header(
            header::LINK,
            format!("<{path}?{}>; rel=\"next\"", q.finish()),
        );
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
    let page = ctx.app.registry.list_repos(n, last).await?;
    let body = json!({ "repositories": page.items });
    page_response("/v2/_catalog", n, &page, body)
}

pub(super) async fn referrers(
    ctx: Ctx<'_>,
    repo: &RepoName,
    subject: &Digest,
) -> Result<Response, ApiError> {
    let artifact_type = ctx.query.get("artifactType");
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
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(t) = artifact_type {
            q.append_pair("artifactType", t);
        }
        q.append_pair("last", after);
        b = b.header(
            header::LINK,
            format!(
                "</v2/{repo}/referrers/{subject}?{}>; rel=\"next\"",
                q.finish()
            ),
        );
    }
    b.body(Body::from(body.to_string())).map_err(internal)
}
