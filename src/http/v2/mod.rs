//! The OCI distribution API under `/v2`, dispatched on a parsed `Endpoint`.

mod blobs;
mod listing;
mod manifests;
mod range;
mod uploads;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::App;
use super::access::Grant;
use super::dispatch::{Call, Surface};
use super::endpoint::Endpoint;
use super::error::ApiError;
use crate::store::ByteStream;

pub(crate) use listing::referrers_page;

pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
pub const API_VERSION: &str = "docker-distribution-api-version";

/// The `Range` value describing an upload's progress: inclusive offsets of the
/// bytes received (`0-0` when none have been, as clients expect).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// The `/v2` surface for the dispatcher.
pub(super) struct V2;

impl Surface for V2 {
    type Endpoint = Endpoint;
    type Error = ApiError;
    const UNKNOWN_ROUTE: &'static str = "unknown";

    fn parse(parts: &Parts) -> Result<Endpoint, ApiError> {
        Endpoint::parse(parts.uri.path()).map_err(|e| ApiError::endpoint(e, &parts.method))
    }

    fn actor_invalid(message: String) -> ApiError {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, "UNSUPPORTED", message)
    }

    async fn handle(call: Call<'_, Endpoint>, body: Body) -> Result<Response, ApiError> {
        let query = Query::parse(call.parts.uri.query());
        let ctx = Ctx {
            app: call.app,
            method: &call.parts.method,
            headers: &call.parts.headers,
            query: &query,
            actor: call.actor,
            grant: call.grant,
        };
        handle(ctx, call.endpoint, body).await
    }

    fn respond(_: Option<&Endpoint>, result: Result<Response, ApiError>) -> Response {
        let mut resp = result.unwrap_or_else(IntoResponse::into_response);
        resp.headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        resp
    }
}

/// What every handler needs of the request besides the endpoint and body.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    app: &'a App,
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a Query,
    actor: &'a crate::store::Actor,
    grant: Grant<'a>,
}

impl Ctx<'_> {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Content-Length`, if present and well formed.
    fn content_length(&self) -> Result<Option<u64>, ApiError> {
        match self.headers.get(header::CONTENT_LENGTH) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "SIZE_INVALID",
                        "Content-Length is not a non-negative integer",
                    )
                }),
        }
    }
}

/// Whether a request brought a body. Framing alone cannot tell: an HTTP/2 body
/// may come with neither `Content-Length` nor `Transfer-Encoding`.
fn has_body(body: &Body) -> bool {
    !http_body::Body::is_end_stream(body)
}

async fn handle(ctx: Ctx<'_>, endpoint: &Endpoint, body: Body) -> Result<Response, ApiError> {
    use Endpoint as E;
    // HEAD is answered as GET; hyper sends the head without the body.
    let (m, head) = match ctx.method {
        m if m == Method::HEAD => (&Method::GET, true),
        m => (m, false),
    };
    match (endpoint, m.clone()) {
        (E::Base, Method::GET) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (E::Catalog, Method::GET) => listing::catalog(ctx).await,
        (E::Tags { repo }, Method::GET) => listing::tags(ctx, repo).await,
        (E::Referrers { repo, subject }, Method::GET) => {
            listing::referrers(ctx, repo, subject).await
        }
        (E::Blob { repo, digest }, Method::GET) => blobs::get(ctx, repo, digest, head).await,
        (E::Blob { repo, digest }, Method::DELETE) => blobs::delete(ctx, repo, digest).await,
        (E::UploadStart { repo }, Method::POST) => uploads::start(ctx, repo, body).await,
        (E::Upload { repo, id }, Method::GET) => uploads::status(ctx, repo, id).await,
        (E::Upload { repo, id }, Method::PATCH) => uploads::patch(ctx, repo, id, body).await,
        (E::Upload { repo, id }, Method::PUT) => uploads::put(ctx, repo, id, body).await,
        (E::Upload { repo, id }, Method::DELETE) => uploads::cancel(ctx, repo, id).await,
        (E::Manifest { repo, reference }, Method::GET) => {
            manifests::get(ctx, repo, reference, head).await
        }
        (E::Manifest { repo, reference }, Method::PUT) => {
            manifests::put(ctx, repo, reference, body).await
        }
        (E::Manifest { repo, reference }, Method::DELETE) => {
            manifests::delete(ctx, repo, reference).await
        }
        _ => Err(ApiError::unsupported_method(endpoint.allowed_methods())),
    }
}

/// Query parameters, keeping repeated keys.
#[derive(Debug, Default)]
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request body as a stream of bytes for the stores.
fn byte_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}
