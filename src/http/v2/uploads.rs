//! Blob uploads: `POST` (start, monolithic, mount), `PATCH`, `PUT`, `GET`, `DELETE`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::blobs::internal;
use super::range::parse_content_range;
use super::{Ctx, DOCKER_CONTENT_DIGEST, byte_stream, has_body, upload_range};
use crate::http::error::ApiError;
use crate::oci::{Digest, RepoName};
use crate::registry::{ChunkRange, MountOutcome, RegistryError};

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The `202`/`204` answer that tells a client where an upload stands.
fn progress(
    ctx: Ctx<'_>,
    status: StatusCode,
    repo: &RepoName,
    id: &str,
    size: u64,
) -> Result<Response, ApiError> {
    let mut b = Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(repo, id))
        .header(header::RANGE, upload_range(size))
        .header("docker-upload-uuid", id)
        .header("blob-upload-session-id", id);
    let min = ctx.app.registry.limits().chunk_min_length;
    if min > 0 {
        b = b.header("oci-chunk-min-length", min);
    }
    if status != StatusCode::NO_CONTENT {
        b = b.header(header::CONTENT_LENGTH, 0);
    }
    b.body(Body::empty()).map_err(internal)
}

fn created(repo: &RepoName, digest: &Digest) -> Result<Response, ApiError> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(internal)
}

/// Adds the session's `Location` to errors a client resumes from (416).
fn with_location(e: RegistryError, repo: &RepoName, id: &str) -> ApiError {
    let api = ApiError::from(e);
    match HeaderValue::from_str(&upload_location(repo, id)) {
        Ok(v) if api.status == StatusCode::RANGE_NOT_SATISFIABLE => {
            api.with_header(header::LOCATION, v)
        }
        _ => api,
    }
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::DigestError| ApiError::digest_invalid(e.to_string()))
}

/// Whose sessions an upload counts against: the proven identity, or an
/// anonymous (or merely claimed) caller's address.
fn upload_owner(actor: &crate::store::Actor) -> String {
    match (&actor.address, actor.authenticated) {
        (_, true) | (None, _) => actor.name.clone(),
        (Some(addr), false) => format!("anonymous@{addr}"),
    }
}

pub(super) async fn start(ctx: Ctx<'_>, repo: &RepoName, body: Body) -> Result<Response, ApiError> {
    let registry = &ctx.app.registry;
    let owner = upload_owner(ctx.actor);
    if let Some(mount) = ctx.query.get("mount") {
        // A mount that cannot be honoured (bad digest, unknown source) falls back to
        // an ordinary upload session, as the spec requires. Only an absent `from`
        // lets the registry find the blob anywhere (the spec's MAY); one that is
        // not a repository name names nowhere, so nothing is mounted. A source the
        // caller may not pull is treated as not having the blob; so is "anywhere"
        // while only some repositories are open to the caller.
        let from = ctx.query.get("from");
        let source_allowed = match from {
            Some(f) => f.parse::<RepoName>().is_ok_and(|f| ctx.grant.may_pull(&f)),
            None => ctx.grant.sees_everything(),
        };
        let digest = mount.parse::<Digest>().ok().filter(|_| source_allowed);
        return match registry
            .mount_or_start(repo.as_str(), digest.as_ref(), from, &owner)
            .await?
        {
            MountOutcome::Mounted(d) => created(repo, &d),
            MountOutcome::Started { id } => progress(ctx, StatusCode::ACCEPTED, repo, &id, 0),
        };
    }
    if let Some(d) = ctx.query.get("digest") {
        let digest = parse_digest(d)?;
        let length = ctx.content_length()?;
        registry
            .put_blob(repo.as_str(), &digest, length, byte_stream(body))
            .await?;
        return created(repo, &digest);
    }
    let id = registry.start_upload(repo.as_str(), &owner).await?;
    progress(ctx, StatusCode::ACCEPTED, repo, &id, 0)
}

/// The `Content-Range` of a chunk; a malformed one is a 416 like an out-of-order one.
async fn chunk_range(
    ctx: Ctx<'_>,
    repo: &RepoName,
    id: &str,
) -> Result<Option<ChunkRange>, ApiError> {
    let Some(v) = ctx.header(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    if let Some(r) = parse_content_range(v) {
        return Ok(Some(r));
    }
    let size = ctx.app.registry.upload_size(repo.as_str(), id).await?;
    Err(with_location(
        RegistryError::ChunkOutOfOrder {
            size,
            reason: format!("Content-Range {v:?} is malformed"),
        },
        repo,
        id,
    ))
}

pub(super) async fn patch(
    ctx: Ctx<'_>,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let range = chunk_range(ctx, repo, id).await?;
    let length = ctx.content_length()?;
    let size = ctx
        .app
        .registry
        .append_chunk(repo.as_str(), id, range, length, byte_stream(body))
        .await
        .map_err(|e| with_location(e, repo, id))?;
    progress(ctx, StatusCode::ACCEPTED, repo, id, size)
}

pub(super) async fn put(
    ctx: Ctx<'_>,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    // An unknown session is a 404 whatever else is wrong with the request.
    ctx.app.registry.upload_size(repo.as_str(), id).await?;
    let digests: Vec<&str> = ctx.query.all("digest").collect();
    let Some(first) = digests.first() else {
        return Err(ApiError::digest_invalid(
            "the digest query parameter is required",
        ));
    };
    let digest = parse_digest(first)?;
    for other in &digests[1..] {
        parse_digest(other)?; // extra digests must at least be well formed
    }
    let range = chunk_range(ctx, repo, id).await?;
    let length = ctx.content_length()?;
    let body = has_body(&body).then(|| byte_stream(body));
    ctx.app
        .registry
        .finish_upload(repo.as_str(), id, &digest, range, length, body)
        .await
        .map_err(|e| with_location(e, repo, id))?;
    created(repo, &digest)
}

pub(super) async fn status(ctx: Ctx<'_>, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    let size = ctx.app.registry.upload_size(repo.as_str(), id).await?;
    progress(ctx, StatusCode::NO_CONTENT, repo, id, size)
}

pub(super) async fn cancel(ctx: Ctx<'_>, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    ctx.app.registry.cancel_upload(repo.as_str(), id).await?;
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .map_err(internal)
}
