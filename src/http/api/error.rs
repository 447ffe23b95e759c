//! The one place where errors become model-API error responses:
//! `{"error": {"code": "...", "message": "..."}}` with the matching status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::endpoint::ApiEndpointError;
use crate::http::access::Denial;
use crate::models::query::QueryError;
use crate::registry::RegistryError;

#[derive(Debug)]
pub struct ModelApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More for the client to read (a gate report, the current target).
    pub detail: Option<(&'static str, serde_json::Value)>,
}

impl ModelApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ModelApiError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.detail = Some((key, value));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ModelApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        ModelApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("this resource answers {allow}"),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "model API request failed");
        ModelApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }
}

impl From<ApiEndpointError> for ModelApiError {
    fn from(e: ApiEndpointError) -> Self {
        let (status, code) = match &e {
            ApiEndpointError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiEndpointError::Name(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            ApiEndpointError::Reference(_) => (StatusCode::BAD_REQUEST, "REFERENCE_INVALID"),
            ApiEndpointError::Alias(_) => (StatusCode::BAD_REQUEST, "ALIAS_INVALID"),
            ApiEndpointError::Robot(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        };
        ModelApiError::new(status, code, e.to_string())
    }
}

impl From<Denial> for ModelApiError {
    fn from(d: Denial) -> Self {
        let (status, code) = denial_status(&d);
        let e = ModelApiError::new(status, code, d.to_string());
        match d.scope() {
            Some(scope) => e.with("scope", serde_json::json!(scope.to_string())),
            None => e,
        }
    }
}

/// The status and code of a denial, on either surface: 401 `UNAUTHORIZED`
/// (the dispatcher adds the challenge), 429 `TOOMANYREQUESTS`, 403 `DENIED`.
pub fn denial_status(d: &Denial) -> (StatusCode, &'static str) {
    match d {
        Denial::Unauthenticated { .. }
        | Denial::InsufficientScope { .. }
        | Denial::BadCredentials(_)
        | Denial::Expired => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        Denial::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        Denial::Forbidden { .. } => (StatusCode::FORBIDDEN, "DENIED"),
    }
}

impl From<QueryError> for ModelApiError {
    fn from(e: QueryError) -> Self {
        let code = match &e {
            QueryError::Cursor(_) => "CURSOR_INVALID",
            QueryError::Filter(..) | QueryError::TooManyFilters => "FILTER_INVALID",
            QueryError::Sort(..) => "SORT_INVALID",
        };
        ModelApiError::bad_request(code, e.to_string())
    }
}

impl From<RegistryError> for ModelApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let (status, code) = match &e {
            E::Query(q) => return q.clone().into(),
            E::ModelUnknown(_) | E::NameUnknown(_) => (StatusCode::NOT_FOUND, "MODEL_UNKNOWN"),
            E::ModelVersionUnknown(_) | E::ManifestUnknown(_) => {
                (StatusCode::NOT_FOUND, "VERSION_UNKNOWN")
            }
            E::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "REFERENCE_INVALID"),
            E::AliasUnknown(_) => (StatusCode::NOT_FOUND, "ALIAS_UNKNOWN"),
            E::TagDenied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            E::TagStale { current, .. } => {
                let current = serde_json::json!(current);
                return ModelApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "PRECONDITION_FAILED",
                    e.to_string(),
                )
                .with("current", current);
            }
            E::GateFailed(report) => {
                let report = serde_json::to_value(report).unwrap_or_default();
                return ModelApiError::new(StatusCode::CONFLICT, "GATE_FAILED", e.to_string())
                    .with("report", report);
            }
            E::Conflict(_) | E::RobotExists(_) => (StatusCode::CONFLICT, "CONFLICT"),
            E::RobotUnknown(_) => (StatusCode::NOT_FOUND, "ROBOT_UNKNOWN"),
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID"),
            E::PolicyInvalid(_) => (StatusCode::BAD_REQUEST, "POLICY_INVALID"),
            E::Store(_)
            | E::BlobUnknown(_)
            | E::StoredCopyBad { .. }
            | E::UploadUnknown(_)
            | E::UploadInvalid(_)
            | E::ChunkOutOfOrder { .. }
            | E::DigestMismatch { .. }
            | E::ManifestInvalid(_)
            | E::ManifestBlobUnknown(_)
            | E::ManifestTooLarge(_)
            | E::SizeInvalid(_)
            | E::TooManyUploads { .. }
            | E::Body(_) => return ModelApiError::internal(e),
        };
        ModelApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ModelApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some((k, v)) = self.detail {
            error[k] = v;
        }
        let body = json!({ "error": error });
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
