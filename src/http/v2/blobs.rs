//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::range::parse_range;
use super::{Ctx, DOCKER_CONTENT_DIGEST};
use crate::http::error::ApiError;
use crate::oci::{Digest, RepoName};

pub(super) async fn get(
    ctx: Ctx<'_>,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<Response, ApiError> {
    let registry = &ctx.app.registry;
    // A HEAD stats the stored copy; a GET checks it as it opens it.
    let size = if head {
        registry.blob_size(repo.as_str(), digest).await?
    } else {
        registry.linked_size(repo.as_str(), digest).await?
    };
    let etag = format!("\"{digest}\"");
    let builder = Response::builder()
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(header::ETAG, &etag)
        // Content addressed: the bytes behind this URL can never change.
        .header(header::CACHE_CONTROL, "max-age=31536000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    // If-None-Match compares weakly (RFC 9110 13.1.2): `W/"x"` matches `"x"`.
    let not_modified = ctx.header(header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    });
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(internal);
    }
    if head {
        return builder
            .header(header::CONTENT_LENGTH, size)
            .body(Body::empty())
            .map_err(internal);
    }
    // Bytes straight from the object store: the client follows the redirect
    // (with its Range, which the presigned URL leaves unsigned) and verifies
    // the digest, as it does for any blob.
    if let Some(url) = registry.blob_download_url(digest).await? {
        return builder
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .map_err(internal);
    }
    // A Range under an If-Range that does not match (strongly; a date never
    // does, as there is no Last-Modified) is ignored: the whole blob (RFC 9110 13.1.5).
    let range_applies = ctx
        .header(header::IF_RANGE)
        .is_none_or(|v| v.trim() == etag);
    let range = match ctx.header(header::RANGE) {
        Some(v) if range_applies => parse_range(v, size)?,
        _ => None,
    };
    let reader = registry.read_blob(digest, size, range).await?;
    let builder = match range {
        Some(r) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, r.len())
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end, reader.size),
            ),
        None => builder.header(header::CONTENT_LENGTH, reader.size),
    };
    builder
        .body(Body::from_stream(reader.stream))
        .map_err(internal)
}

pub(super) async fn delete(
    ctx: Ctx<'_>,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    ctx.app.registry.delete_blob(repo.as_str(), digest).await?;
    accepted()
}

pub(super) fn accepted() -> Result<Response, ApiError> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(internal)
}

/// A response that could not be built (a header value we made is invalid).
pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "could not build response");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal error building the response",
    )
}
