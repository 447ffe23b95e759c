//! Approvals, labels and deleting versions.

use std::collections::BTreeMap;

use axum::response::Response;
use serde::Deserialize;

use super::error::ModelApiError;
use super::{ApiCtx, json};
use crate::oci::{Reference, RepoName};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveBody {
    alias: String,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /api/v1/models/<name>/versions/<ref>/approvals` `{"alias", "comment"}`
pub(super) async fn approve(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
    body: ApproveBody,
) -> Result<Response, ModelApiError> {
    let approval = ctx
        .app
        .registry
        .approve(
            repo.as_str(),
            reference,
            &body.alias,
            body.comment.as_deref().filter(|c| !c.is_empty()),
            ctx.actor,
        )
        .await?;
    json(&approval)
}

/// `GET /api/v1/models/<name>/versions/<ref>/approvals`
pub(super) async fn approvals(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ModelApiError> {
    let items = ctx.app.registry.approvals(repo.as_str(), reference).await?;
    json(&super::views::Page {
        items,
        next_cursor: None,
    })
}

/// `GET /api/v1/models/<name>/versions/<ref>/labels`
pub(super) async fn labels(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ModelApiError> {
    json(&ctx.app.registry.labels(repo.as_str(), reference).await?)
}

/// `PATCH /api/v1/models/<name>/versions/<ref>/labels`: a JSON merge patch
/// (RFC 7396) of the labels: a string sets a label, `null` removes it.
pub(super) async fn patch_labels(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
    patch: BTreeMap<String, Option<String>>,
) -> Result<Response, ModelApiError> {
    if patch.len() > super::MAX_REPEATS {
        return Err(ModelApiError::bad_request(
            "BODY_INVALID",
            format!("at most {} labels per patch", super::MAX_REPEATS),
        ));
    }
    json(
        &ctx.app
            .registry
            .set_labels(repo.as_str(), reference, &patch, ctx.actor)
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LabelBody {
    value: String,
}

/// `PUT /api/v1/models/<name>/versions/<ref>/labels/<key>` `{"value"}`
pub(super) async fn put_label(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
    key: &str,
    body: LabelBody,
) -> Result<Response, ModelApiError> {
    let change = BTreeMap::from([(key.to_string(), Some(body.value))]);
    json(
        &ctx.app
            .registry
            .set_labels(repo.as_str(), reference, &change, ctx.actor)
            .await?,
    )
}

/// `DELETE /api/v1/models/<name>/versions/<ref>/labels/<key>`
pub(super) async fn delete_label(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
    key: &str,
) -> Result<Response, ModelApiError> {
    let change = BTreeMap::from([(key.to_string(), None)]);
    json(
        &ctx.app
            .registry
            .set_labels(repo.as_str(), reference, &change, ctx.actor)
            .await?,
    )
}

/// `DELETE /api/v1/models/<name>/versions/<ref>`: the version and its tags,
/// refused while a protected alias or an immutable tag holds it.
pub(super) async fn delete_version(
    ctx: &ApiCtx<'_>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ModelApiError> {
    let digest = ctx
        .app
        .registry
        .delete_version(repo.as_str(), reference, ctx.actor)
        .await?;
    json(&serde_json::json!({ "name": repo.as_str(), "deleted": digest }))
}
