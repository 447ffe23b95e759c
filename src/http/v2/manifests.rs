//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};

use super::blobs::{accepted, internal};
use super::{Ctx, DOCKER_CONTENT_DIGEST};
use crate::http::error::ApiError;
use crate::oci::{Reference, RepoName};
use crate::registry::RegistryError;

pub(super) async fn get(
    ctx: Ctx<'_>,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, ApiError> {
    let registry = &ctx.app.registry;
    let (record, body) = if head {
        (
            registry.head_manifest(repo.as_str(), reference).await?,
            None,
        )
    } else {
        let m = registry.get_manifest(repo.as_str(), reference).await?;
        (m.record, Some(m.bytes))
    };
    let b = Response::builder()
        .header(header::CONTENT_TYPE, &record.media_type)
        .header(header::CONTENT_LENGTH, record.size)
        .header(DOCKER_CONTENT_DIGEST, record.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", record.digest));
    let b = match reference {
        // Immutable by digest; a tag can move, so it must be revalidated.
        Reference::Digest(_) => b.header(header::CACHE_CONTROL, "max-age=31536000, immutable"),
        Reference::Tag(_) => b.header(header::CACHE_CONTROL, "no-cache"),
    };
    b.body(body.map(Body::from).unwrap_or_else(Body::empty))
        .map_err(internal)
}

pub(super) async fn put(
    ctx: Ctx<'_>,
    repo: &RepoName,
    reference: &Reference,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = &ctx.app.registry;
    let limit = registry.limits().max_manifest_bytes;
    let too_large = || ApiError::from(RegistryError::ManifestTooLarge(limit));
    if ctx.content_length()?.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::from(RegistryError::Body(std::io::Error::other(e)))
            }
        })?
        .to_bytes();
    let content_type = ctx.header(header::CONTENT_TYPE);
    let pushed = registry
        .put_manifest(repo.as_str(), reference, content_type, bytes, ctx.actor)
        .await?;
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/manifests/{}", pushed.digest),
        )
        .header(DOCKER_CONTENT_DIGEST, pushed.digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &pushed.subject {
        b = b.header("oci-subject", subject.to_string());
    }
    b.body(Body::empty()).map_err(internal)
}

pub(super) async fn delete(
    ctx: Ctx<'_>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    ctx.app
        .registry
        .delete_manifest(repo.as_str(), reference, ctx.actor)
        .await?;
    accepted()
}
