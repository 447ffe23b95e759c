//! The model API under `/api/v1`: JSON, read-only, dispatched on a parsed
//! `ApiEndpoint`, paginated with opaque cursors (`?limit=&cursor=` →
//! `{"items": [...], "next_cursor": "..." | null}`), errors mapped in `error.rs`.

mod endpoint;
mod error;
mod models;
mod views;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use endpoint::ApiEndpoint;
use error::ModelApiError;

use super::App;
use super::v2::RouteName;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// At most this many values of a repeatable query parameter.
const MAX_REPEATS: usize = 32;

pub async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (route, result) = match ApiEndpoint::parse(req.uri().path()) {
        Ok(endpoint) => {
            let span = tracing::Span::current();
            span.record("route", endpoint.route());
            if let Some(repo) = endpoint.repo() {
                span.record("repo", repo.as_str());
            }
            let result = match Query::parse(req.uri().query()) {
                // HEAD is GET without the body (hyper leaves the body out).
                Ok(query) if matches!(*req.method(), Method::GET | Method::HEAD) => {
                    handle(&app, &endpoint, &query).await
                }
                Ok(_) => Err(ModelApiError::method_not_allowed()),
                Err(e) => Err(e),
            };
            (endpoint.route(), result)
        }
        Err(e) => ("api_unknown", Err(e.into())),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110: a 405 names the methods the resource does allow.
        resp.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static("GET, HEAD"),
        );
    }
    resp.extensions_mut().insert(RouteName(route));
    resp
}

async fn handle(app: &App, endpoint: &ApiEndpoint, q: &Query) -> Result<Response, ModelApiError> {
    match endpoint {
        ApiEndpoint::Models => models::list(app, q).await,
        ApiEndpoint::Versions { repo } => models::versions(app, repo, q).await,
        ApiEndpoint::Version { repo, reference } => models::show(app, repo, reference).await,
        ApiEndpoint::Compare { repo } => models::compare(app, repo, q).await,
    }
}

/// A JSON response.
fn json<T: Serialize>(v: &T) -> Result<Response, ModelApiError> {
    let body = serde_json::to_vec(v).map_err(ModelApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
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
}
