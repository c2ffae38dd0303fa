//! Infrastructure errors of the HTTP API: Convex's `{code, message}` body with
//! the matching status. (A function's own failure is not one of these: it is
//! a 200 with `status: "error"`.)

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jangar_engine::error::EngineError;
use jangar_engine::storage::StorageError;
use serde_json::json;

use jangar_domain::error::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a rate-limited caller may try again (the `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// An answer with one of the application's codes, at that code's HTTP status.
    pub fn of(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, code.as_str(), message)
    }

    pub fn rate_limited(wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("Too many requests from this identity; try again in {seconds} s.");
        ApiError { retry_after: Some(seconds), ..ApiError::of(ErrorCode::RateLimited, message) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Your request couldn't be completed. Try again later.",
        )
    }
}

impl ApiError {
    /// An engine failure: a storage failure by its kind (see [`ApiError::storage`]), anything
    /// else a 500.
    pub fn engine(error: EngineError) -> ApiError {
        match error {
            EngineError::Storage(e) => ApiError::storage(e),
            other => ApiError::internal(other),
        }
    }

    /// A storage failure. One that may pass (the database is unreachable or stopped, another
    /// writer was in the way) is a 503 the client may retry, with `Retry-After`; any other
    /// (corrupt data, a full disk, a bug) is a 500. Either way the message stays generic: the
    /// details go to the log.
    pub fn storage(error: StorageError) -> ApiError {
        if !error.is_transient() {
            return ApiError::internal(error);
        }
        tracing::warn!(error = %error, kind = ?error.kind(), "storage unavailable");
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "StorageUnavailable",
                "The database is unavailable at the moment. Try again later.",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_code_answers_at_its_status() {
        for (code, status) in [
            (ErrorCode::Unauthenticated, StatusCode::UNAUTHORIZED),
            (ErrorCode::Forbidden, StatusCode::FORBIDDEN),
            (ErrorCode::NotFound, StatusCode::NOT_FOUND),
            (ErrorCode::RateLimited, StatusCode::TOO_MANY_REQUESTS),
        ] {
            let error = ApiError::of(code, "no");
            assert_eq!((error.status, error.code, error.message.as_str()), (status, code.as_str(), "no"));
        }
        let limited = ApiError::rate_limited(std::time::Duration::from_millis(1500));
        assert_eq!(
            (limited.status, limited.code, limited.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, "RateLimited", Some(2))
        );
    }

    #[test]
    fn storage_failures_answer_by_their_kind() {
        for (error, status) in [
            (StorageError::Unavailable("connection lost".into()), StatusCode::SERVICE_UNAVAILABLE),
            (StorageError::Conflict("locked".into()), StatusCode::SERVICE_UNAVAILABLE),
            (StorageError::Corrupt("index mismatch".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (StorageError::Limit("too big".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (StorageError::Io("disk full".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (StorageError::Other("bug".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let transient = error.is_transient();
            let answer = ApiError::engine(EngineError::Storage(error));
            assert_eq!(answer.status, status);
            assert_eq!(answer.retry_after.is_some(), transient);
            assert!(!answer.message.contains("connection lost"), "details stay in the log");
        }
        let response = ApiError::storage(StorageError::Unavailable("stopped".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        assert_eq!(
            ApiError::engine(EngineError::Schema("no such index".into())).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
