//! Who the caller is, and robot accounts: create (the token is shown once),
//! list and revoke. Robots are the registry's own (`admin`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ModelApiError;
use super::{ApiCtx, json};
use crate::auth::{ROBOT_PREFIX, new_robot_token, token_sha256, valid_robot_name};
use crate::http::access::PrincipalKind;
use crate::store::Robot;
use crate::store::audit::format_time;

/// Longest life a robot token may be given, and the default.
const MAX_ROBOT_DAYS: u64 = 365;
const DEFAULT_ROBOT_DAYS: u64 = 90;

/// `GET /api/v1/whoami`.
pub(super) async fn whoami(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let p = ctx.principal;
    let kind = match p.kind {
        PrincipalKind::Anonymous => "anonymous",
        PrincipalKind::User => "user",
        PrincipalKind::Robot => "robot",
    };
    json(&json!({
        "name": p.actor.name,
        "kind": kind,
        "authenticated": p.actor.authenticated,
        "groups": p.groups,
        "open_access": ctx.app.auth.current().access.is_open(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRobot {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    /// Days until the token expires [default: 90, at most 365].
    #[serde(default)]
    expires_in_days: Option<u64>,
}

fn robot_view(r: &Robot, now_ms: i64) -> serde_json::Value {
    let status = if r.revoked.is_some() {
        "revoked"
    } else if r.active_at(now_ms) {
        "active"
    } else {
        "expired"
    };
    json!({
        "name": r.name,
        "username": format!("{ROBOT_PREFIX}{}", r.name),
        "groups": r.groups,
        "description": r.description,
        "created": r.created,
        "created_by": r.created_by,
        "expires": r.expires,
        "revoked": r.revoked,
        "status": status,
    })
}

async fn refresh(ctx: &ApiCtx<'_>) -> Result<(), ModelApiError> {
    ctx.app.auth.set_robots(ctx.app.registry.robots().await?);
    Ok(())
}

/// `POST /api/v1/robots`.
pub(super) async fn create(ctx: &ApiCtx<'_>, body: NewRobot) -> Result<Response, ModelApiError> {
    let bad = |m: String| ModelApiError::bad_request("INVALID", m);
    if !valid_robot_name(&body.name) {
        return Err(bad(format!(
            "invalid robot name {:?}: 1 to 64 of a-z, 0-9, . _ -",
            body.name
        )));
    }
    if let Some(g) = body
        .groups
        .iter()
        .find(|g| !crate::auth::file::valid_group(g))
    {
        return Err(bad(format!("invalid group name {g:?}")));
    }
    if body.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(bad("the description is longer than 1024 bytes".into()));
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_ROBOT_DAYS);
    if days == 0 || days > MAX_ROBOT_DAYS {
        return Err(bad(format!(
            "expires_in_days must be 1 to {MAX_ROBOT_DAYS}"
        )));
    }
    let token = new_robot_token().map_err(ModelApiError::internal)?;
    let now = jiff::Timestamp::now().as_millisecond();
    let robot = Robot {
        name: body.name,
        token_sha256: token_sha256(&token),
        groups: body.groups,
        description: body.description,
        created: format_time(now),
        created_by: ctx.actor.name.clone(),
        expires: Some(format_time(now + (days as i64) * 86_400_000)),
        revoked: None,
    };
    ctx.app.registry.create_robot(&robot, ctx.actor).await?;
    refresh(ctx).await?;
    let mut view = robot_view(&robot, now);
    view["token"] = json!(token);
    let body = serde_json::to_vec(&view).map_err(ModelApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /api/v1/robots`.
pub(super) async fn list(ctx: &ApiCtx<'_>) -> Result<Response, ModelApiError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let robots: Vec<_> = ctx
        .app
        .registry
        .robots()
        .await?
        .iter()
        .map(|r| robot_view(r, now))
        .collect();
    json(&json!({ "items": robots }))
}

/// `GET /api/v1/robots/<name>`.
pub(super) async fn get(ctx: &ApiCtx<'_>, name: &str) -> Result<Response, ModelApiError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let robots = ctx.app.registry.robots().await?;
    let r = robots.iter().find(|r| r.name == name).ok_or_else(|| {
        ModelApiError::new(
            StatusCode::NOT_FOUND,
            "ROBOT_UNKNOWN",
            format!("no robot is named {name:?}"),
        )
    })?;
    json(&robot_view(r, now))
}

/// `DELETE /api/v1/robots/<name>`: revokes it at once (its registry tokens too:
/// each request checks that the robot is live).
pub(super) async fn revoke(ctx: &ApiCtx<'_>, name: &str) -> Result<Response, ModelApiError> {
    ctx.app.registry.revoke_robot(name, ctx.actor).await?;
    refresh(ctx).await?;
    get(ctx, name).await
}
