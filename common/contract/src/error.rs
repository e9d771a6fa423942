//! Typed errors on the wire: a stable code, an HTTP-like status, a message safe to show a client,
//! and optional validation errors with paths.

use serde::{Deserialize, Serialize};

/// Stable error codes. The edge maps each to exactly one HTTP status (`edge::error::status_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Input failed validation (400).
    Validation,
    /// No or invalid credentials (401).
    Unauthorized,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The resource does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The body is too large (413).
    PayloadTooLarge,
    /// The body is not JSON (415).
    UnsupportedMediaType,
    /// Well-formed but not acceptable in this state, e.g. an `Idempotency-Key` reused with
    /// another body (422).
    Unprocessable,
    /// An `If-Match` precondition does not hold: the resource changed since it was read (412).
    PreconditionFailed,
    /// An upstream system (e.g. ConnectWise) failed (502).
    Upstream,
    /// A dependency is unavailable (503).
    Unavailable,
    /// A dependency did not answer in time (504).
    Timeout,
    /// Anything else (500). The cause is logged where it happened, never sent.
    Internal,
}

/// One validation problem, located by a path into the request (e.g. `["fields", 1, "value"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path segments: object keys as strings, array indexes as numbers.
    pub path: Vec<serde_json::Value>,
    /// What is wrong, in words a client can show.
    pub message: String,
}

/// An error reply on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// The stable code.
    pub code: ErrorCode,
    /// A message safe to show a client; never a secret or an internal cause.
    pub message: String,
    /// Validation problems, when `code` is `Validation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl WireError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// A validation error with the given problems.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            code: ErrorCode::Validation,
            message: "Validation error".into(),
            errors,
        }
    }

    /// The generic internal error; log the cause before returning it.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "Internal server error")
    }

    /// The resource was not found.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// The principal lacks a permission.
    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "Insufficient permissions")
    }
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: Vec<serde_json::Value>, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}
