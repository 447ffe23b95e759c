//! Handlers of the model API.

use axum::response::Response;

use super::error::ModelApiError;
use super::views::{CompareView, ModelItem, ModelsCursor, Page, VersionDetail, VersionItem};
use super::{App, MAX_REPEATS, Query, json};
use crate::models::query::{VersionQuery, decode_token, encode_token};
use crate::oci::{Reference, RepoName};
use crate::store::ModelFilter;

/// `GET /api/v1/models?q=&annotation=key=value&limit=&cursor=`
pub(super) async fn list(
    app: &App,
    q: &Query,
    grant: crate::http::access::Grant<'_>,
) -> Result<Response, ModelApiError> {
    let limit = q.limit()?;
    let after = match q.cursor() {
        Some(c) => Some(decode_token::<ModelsCursor>(c)?.after),
        None => None,
    };
    let mut filter = ModelFilter {
        name_contains: q.get("q").filter(|s| !s.is_empty()).map(str::to_lowercase),
        annotations: Vec::new(),
    };
    for a in q.all("annotation")? {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                filter.annotations.push((k.to_string(), v.to_string()));
            }
            _ => {
                return Err(ModelApiError::bad_request(
                    "FILTER_INVALID",
                    format!("annotation filter {a:?} is not KEY=VALUE"),
                ));
            }
        }
    }
    let page = app
        .registry
        .list_models(&filter, after.as_deref(), limit, &|name: &str| {
            grant.may_list(name)
        })
        .await?;
    let next_cursor = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(encode_token(&ModelsCursor {
            after: last.name.clone(),
        })),
        _ => None,
    };
    json(&Page {
        items: page.items.iter().map(ModelItem::from).collect(),
        next_cursor,
    })
}

/// `GET /api/v1/models/<name>/versions?filter=&sort=&limit=&cursor=`
pub(super) async fn versions(
    app: &App,
    repo: &RepoName,
    q: &Query,
) -> Result<Response, ModelApiError> {
    let limit = q.limit()?;
    let query = VersionQuery::parse(q.all("filter")?, q.get("sort"))?;
    let after = q.cursor().map(|c| query.cursor(c)).transpose()?;
    let page = app
        .registry
        .model_versions(repo.as_str(), &query, after.as_ref(), limit)
        .await?;
    json(&Page {
        items: page.items.iter().map(VersionItem::new).collect(),
        next_cursor: page.next.as_ref().map(encode_token),
    })
}

/// `GET /api/v1/models/<name>/versions/<tag or digest>`
pub(super) async fn show(
    app: &App,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ModelApiError> {
    let v = app.registry.model_version(repo.as_str(), reference).await?;
    json(&VersionDetail::new(repo.as_str(), &v))
}

/// `GET /api/v1/models/<name>/compare?versions=v1,v2,...` (the first is the baseline).
pub(super) async fn compare(
    app: &App,
    repo: &RepoName,
    q: &Query,
) -> Result<Response, ModelApiError> {
    let mut refs = Vec::new();
    for list in q.all("versions")? {
        for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let parsed: Reference = r.parse().map_err(|e| {
                ModelApiError::bad_request("REFERENCE_INVALID", format!("version {r:?}: {e}"))
            })?;
            refs.push(parsed);
        }
    }
    if !(2..=MAX_REPEATS).contains(&refs.len()) {
        return Err(ModelApiError::bad_request(
            "QUERY_INVALID",
            format!("versions must name 2 to {MAX_REPEATS} versions, comma-separated"),
        ));
    }
    let comparison = app.registry.compare_models(repo.as_str(), &refs).await?;
    json(&CompareView {
        name: repo.as_str(),
        comparison: &comparison,
    })
}
