//! JSON errors and the JSON body extractor of the HTTP API.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, async_trait};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::RoleChecked;
use crate::error::RegistryError;

/// An error answer: the status and `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a specific code (`invalid_field`, `invalid_json`, `invalid_query`, …).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500; the message goes to the client, so keep details in the log.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match &e {
            RegistryError::Invalid { .. } => ApiError::bad_request("invalid_field", e.to_string()),
            RegistryError::BadDocument { .. } => {
                ApiError::bad_request("invalid_json", e.to_string())
            }
            RegistryError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            RegistryError::InUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "in_use", e.to_string())
            }
            RegistryError::NotFound { .. } => ApiError::not_found(e.to_string()),
            RegistryError::Read { .. }
            | RegistryError::Corrupt { .. }
            | RegistryError::Write { .. } => {
                tracing::error!(error = %e, "Registry storage failed.");
                ApiError::internal(
                    "the registry could not be saved; nothing was changed (see the server log)",
                )
            }
        }
    }
}

/// A JSON body. Unlike `axum::Json` it does not insist on a
/// `Content-Type`, and its rejection is a 400 [`ApiError`] that names the
/// path of the bad field (`equipment[3].category: unknown variant …`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

#[async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body as bytes. It is read only behind a passed
/// [`crate::auth::Gate`]: who is asking is checked before anything that was
/// sent is looked at, so a 403 never depends on the body. A route that
/// reads a body without a gate answers 500 (a mistake in the route table,
/// which the tests of every body route catch).
pub(crate) struct RawBody(pub Bytes);

#[async_trait]
impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if req.extensions().get::<RoleChecked>().is_none() {
            tracing::error!(path = %req.uri().path(), "A route reads its body without a role gate; refused.");
            return Err(ApiError::internal(
                "this endpoint reads a body before checking the caller's role (a bug); refused",
            ));
        }
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_body"
                };
                ApiError::new(e.status(), code, e.body_text())
            })
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// Parses JSON, naming the path of a bad field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::json::parse(bytes).map_err(|e| {
        let code = if e.syntax {
            "invalid_json"
        } else {
            "invalid_field"
        };
        ApiError::bad_request(code, e.message())
    })
}
