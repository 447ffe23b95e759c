//! The one place where errors become OCI error responses.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::access::Denial;
use super::endpoint::EndpointError;
use crate::registry::RegistryError;

/// An OCI error response: status, code, message, optional detail and headers.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A 405, naming the methods the resource does allow (RFC 9110 requires it).
    pub fn unsupported_method(allow: &'static str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_header(axum::http::header::ALLOW, HeaderValue::from_static(allow))
    }

    pub fn digest_invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    /// A path that names no valid endpoint. A manifest reference that is neither
    /// a tag nor a digest names nothing that could exist, so reading or deleting
    /// it is a 404 (the spec lists only 404 for those; its conformance suite asks
    /// exactly that), while pushing to it is the client's error.
    pub fn endpoint(e: EndpointError, method: &axum::http::Method) -> Self {
        use axum::http::Method;
        match e {
            EndpointError::Reference(_)
                if [Method::GET, Method::HEAD, Method::DELETE].contains(method) =>
            {
                ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", e.to_string())
            }
            e => e.into(),
        }
    }
}

/// A denial in the OCI error format; the dispatcher adds its headers.
impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        let (status, code) = super::api::denial_status(&d);
        let message = match &d {
            Denial::Forbidden { .. } => "requested access to the resource is denied".to_string(),
            d => d.to_string(),
        };
        let mut api = ApiError::new(status, code, message);
        if let Some(scope) = d.scope() {
            api.detail = Some(json!({ "scope": scope.to_string() }));
        }
        api
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        let (status, code) = match &e {
            EndpointError::NotFound => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            EndpointError::Name(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            EndpointError::Digest(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            EndpointError::Reference(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let message = e.to_string();
        let (status, code) = match &e {
            E::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            E::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            E::StoredCopyBad {
                manifest: false, ..
            } => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            E::StoredCopyBad { manifest: true, .. } => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            E::UploadUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            E::Body(e) if body_timed_out(e) => (StatusCode::REQUEST_TIMEOUT, "BLOB_UPLOAD_INVALID"),
            E::UploadInvalid(_) | E::Body(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            E::ChunkOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            E::DigestMismatch { .. } | E::DigestInvalid(_) => {
                (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
            }
            E::ManifestUnknown(_) | E::AliasUnknown(_) => {
                (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
            }
            E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            E::ManifestTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
            E::SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            E::ModelUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            E::ModelVersionUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            E::Query(_) | E::Invalid(_) | E::PolicyInvalid(_) => {
                (StatusCode::BAD_REQUEST, "UNSUPPORTED")
            }
            E::TagDenied(_) | E::GateFailed(_) => (StatusCode::FORBIDDEN, "DENIED"),
            E::TagStale { .. } | E::Conflict(_) | E::RobotExists(_) => {
                (StatusCode::CONFLICT, "UNSUPPORTED")
            }
            E::RobotUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            E::TooManyUploads { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        let mut api = ApiError::new(status, code, message);
        match &e {
            E::ManifestBlobUnknown(d) | E::BlobUnknown(d) | E::StoredCopyBad { digest: d, .. } => {
                api.detail = Some(json!({ "digest": d.to_string() }));
            }
            E::ChunkOutOfOrder { size, .. } => {
                if let Ok(v) = HeaderValue::from_str(&super::v2::upload_range(*size)) {
                    api.headers.push((HeaderName::from_static("range"), v));
                }
            }
            _ => {}
        }
        api
    }
}

/// Whether a body failed because the client went quiet for longer than the
/// server waits (the timeout sits a few error layers down).
fn body_timed_out(e: &std::io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|e| e as _);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(d) = self.detail {
            error["detail"] = d;
        }
        let body = json!({ "errors": [error] });
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
