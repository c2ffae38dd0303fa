//! Infrastructure errors of the HTTP API: Convex's `{code, message}` body with
//! the matching status. (A function's own failure is not one of these: it is
//! a 200 with `status: "error"`.)

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jangar_engine::error::EngineError;
use jangar_engine::storage::StorageError;
use serde_json::json;

use jangar_domain::error::ErrorCode;

/// The protocol layer's own error codes: what went wrong with the request or the server rather
/// than with the application's data (those are [`ErrorCode`]s, through [`ApiError::of`]). Each
/// has its wire string and its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ApiCode {
    /// The request body could not be read.
    BadRequest,
    /// The body (or its `args`) is not JSON, or lacks a field the route needs.
    BadJsonBody,
    /// `format` is not one of the known value encodings.
    BadFormat,
    /// `ts` is not a timestamp from `/api/query_ts`, or is later than the latest commit.
    BadTimestamp,
    /// `ts` is older than the history kept, or a later commit changed what the query reads.
    TimestampTooOld,
    /// The `Idempotency-Key` header is empty, too long or not visible ASCII.
    BadIdempotencyKey,
    /// The function is not of the kind the route runs (a mutation on a query route).
    BadFunctionKind,
    /// `/api/run/{route}` does not name `module/function`.
    BadConvexFunctionIdentifier,
    /// The `Convex-Client` header is not `client-semver`.
    BadConvexClientHeader,
    /// No public function has that path.
    FunctionPathNotFound,
    /// A known route called with a method it does not take.
    MethodNotAllowed,
    /// The client stopped sending the body for `--body-timeout-seconds`.
    RequestTimeout,
    /// The body is larger than `--max-request-bytes`.
    PayloadTooLarge,
    /// A bug or a lasting failure; the details go to the log, never to the client.
    InternalServerError,
    /// The database is unreachable or busy for now; the client may retry.
    StorageUnavailable,
    /// The identity provider that would check the token cannot be reached.
    AuthProviderUnavailable,
    /// The database is not reachable yet: the server answers everything with this until it is.
    NotReady,
    /// The sync endpoint called without a valid WebSocket upgrade. Its status here is that of a
    /// plain GET without the upgrade headers; the endpoint answers at the status of axum's
    /// rejection, which differs for other failures (see [`ApiError::upgrade_rejected`]).
    WebSocketUpgradeRequired,
    /// `npx convex deploy` or `dev` tried to push functions: Jangar serves a fixed catalogue.
    PushNotSupported,
    /// `npx convex run --inline-query`: Jangar runs no JavaScript.
    InlineQueryNotSupported,
    /// An export was requested while another was being written.
    ExportInProgress,
    /// The export asked for is not (or no longer) on this server.
    ExportNotFound,
}

impl ApiCode {
    #[cfg(test)]
    pub(crate) const ALL: &'static [ApiCode] = &[
        ApiCode::BadRequest,
        ApiCode::BadJsonBody,
        ApiCode::BadFormat,
        ApiCode::BadTimestamp,
        ApiCode::TimestampTooOld,
        ApiCode::BadIdempotencyKey,
        ApiCode::BadFunctionKind,
        ApiCode::BadConvexFunctionIdentifier,
        ApiCode::BadConvexClientHeader,
        ApiCode::FunctionPathNotFound,
        ApiCode::MethodNotAllowed,
        ApiCode::RequestTimeout,
        ApiCode::PayloadTooLarge,
        ApiCode::InternalServerError,
        ApiCode::StorageUnavailable,
        ApiCode::AuthProviderUnavailable,
        ApiCode::NotReady,
        ApiCode::WebSocketUpgradeRequired,
        ApiCode::PushNotSupported,
        ApiCode::InlineQueryNotSupported,
        ApiCode::ExportInProgress,
        ApiCode::ExportNotFound,
    ];

    /// The code on the wire, in the body's `code` field.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ApiCode::BadRequest => "BadRequest",
            ApiCode::BadJsonBody => "BadJsonBody",
            ApiCode::BadFormat => "BadFormat",
            ApiCode::BadTimestamp => "BadTimestamp",
            ApiCode::TimestampTooOld => "TimestampTooOld",
            ApiCode::BadIdempotencyKey => "BadIdempotencyKey",
            ApiCode::BadFunctionKind => "BadFunctionKind",
            ApiCode::BadConvexFunctionIdentifier => "BadConvexFunctionIdentifier",
            ApiCode::BadConvexClientHeader => "BadConvexClientHeader",
            ApiCode::FunctionPathNotFound => "FunctionPathNotFound",
            ApiCode::MethodNotAllowed => "MethodNotAllowed",
            ApiCode::RequestTimeout => "RequestTimeout",
            ApiCode::PayloadTooLarge => "PayloadTooLarge",
            ApiCode::InternalServerError => "InternalServerError",
            ApiCode::StorageUnavailable => "StorageUnavailable",
            ApiCode::AuthProviderUnavailable => "AuthProviderUnavailable",
            ApiCode::NotReady => "NotReady",
            ApiCode::WebSocketUpgradeRequired => "WebSocketUpgradeRequired",
            ApiCode::PushNotSupported => "PushNotSupported",
            ApiCode::InlineQueryNotSupported => "InlineQueryNotSupported",
            ApiCode::ExportInProgress => "ExportInProgress",
            ApiCode::ExportNotFound => "ExportNotFound",
        }
    }

    /// The HTTP status an answer with this code has.
    pub(crate) const fn status(self) -> StatusCode {
        match self {
            ApiCode::BadRequest
            | ApiCode::BadJsonBody
            | ApiCode::BadFormat
            | ApiCode::BadTimestamp
            | ApiCode::TimestampTooOld
            | ApiCode::BadIdempotencyKey
            | ApiCode::BadFunctionKind
            | ApiCode::BadConvexFunctionIdentifier
            | ApiCode::BadConvexClientHeader
            | ApiCode::WebSocketUpgradeRequired
            | ApiCode::PushNotSupported
            | ApiCode::InlineQueryNotSupported
            | ApiCode::ExportInProgress => StatusCode::BAD_REQUEST,
            ApiCode::FunctionPathNotFound | ApiCode::ExportNotFound => StatusCode::NOT_FOUND,
            ApiCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiCode::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::StorageUnavailable | ApiCode::AuthProviderUnavailable | ApiCode::NotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds after which a rate-limited caller may try again (the `Retry-After` header).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    /// An answer with one of the protocol layer's codes, at that code's HTTP status.
    pub(crate) fn new(code: ApiCode, message: impl Into<String>) -> ApiError {
        ApiError { status: code.status(), code: code.as_str(), message: message.into(), retry_after: None }
    }

    /// An answer with one of the application's codes, at that code's HTTP status.
    pub(crate) fn of(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError { status, code: code.as_str(), message: message.into(), retry_after: None }
    }

    pub(crate) fn rate_limited(wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("Too many requests from this identity; try again in {seconds} s.");
        ApiError { retry_after: Some(seconds), ..ApiError::of(ErrorCode::RateLimited, message) }
    }

    /// A request to the sync endpoint that is no WebSocket upgrade. The one answer whose status
    /// is not its code's: it keeps axum's for the rejection (400 for missing or wrong upgrade
    /// headers, 405 for a HEAD, 426 when the connection cannot be upgraded).
    pub(crate) fn upgrade_rejected(rejection: WebSocketUpgradeRejection) -> ApiError {
        let message = format!("This is the sync protocol's WebSocket endpoint: {}", rejection.body_text());
        ApiError { status: rejection.status(), ..ApiError::new(ApiCode::WebSocketUpgradeRequired, message) }
    }

    pub(crate) fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "internal error");
        ApiError::new(ApiCode::InternalServerError, "Your request couldn't be completed. Try again later.")
    }
}

/// The code [`ApiError::engine`] answers an engine failure with, for the function log.
pub(crate) fn engine_code(error: &EngineError) -> ApiCode {
    match error {
        EngineError::Storage(e) if e.is_transient() => ApiCode::StorageUnavailable,
        _ => ApiCode::InternalServerError,
    }
}

impl ApiError {
    /// An engine failure: a storage failure by its kind (see [`ApiError::storage`]), anything
    /// else a 500.
    pub(crate) fn engine(error: EngineError) -> ApiError {
        match error {
            EngineError::Storage(e) => ApiError::storage(e),
            other => ApiError::internal(other),
        }
    }

    /// A storage failure. One that may pass (the database is unreachable or stopped, another
    /// writer was in the way) is a 503 the client may retry, with `Retry-After`; any other
    /// (corrupt data, a full disk, a bug) is a 500. Either way the message stays generic: the
    /// details go to the log.
    pub(crate) fn storage(error: StorageError) -> ApiError {
        if !error.is_transient() {
            return ApiError::internal(error);
        }
        tracing::warn!(error = %error, kind = ?error.kind(), "storage unavailable");
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(ApiCode::StorageUnavailable, "The database is unavailable at the moment. Try again later.")
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

    /// What each infrastructure code means on the wire, written out apart from the code's own
    /// `as_str` and `status`. The position makes a variant missing from `ApiCode::ALL` show: the
    /// match must name every variant, and `ALL` must then hold positions 0 to n - 1.
    fn meaning(code: ApiCode) -> (usize, &'static str, StatusCode) {
        match code {
            ApiCode::BadRequest => (0, "BadRequest", StatusCode::BAD_REQUEST),
            ApiCode::BadJsonBody => (1, "BadJsonBody", StatusCode::BAD_REQUEST),
            ApiCode::BadFormat => (2, "BadFormat", StatusCode::BAD_REQUEST),
            ApiCode::BadTimestamp => (3, "BadTimestamp", StatusCode::BAD_REQUEST),
            ApiCode::TimestampTooOld => (4, "TimestampTooOld", StatusCode::BAD_REQUEST),
            ApiCode::BadIdempotencyKey => (5, "BadIdempotencyKey", StatusCode::BAD_REQUEST),
            ApiCode::BadFunctionKind => (6, "BadFunctionKind", StatusCode::BAD_REQUEST),
            ApiCode::BadConvexFunctionIdentifier => (7, "BadConvexFunctionIdentifier", StatusCode::BAD_REQUEST),
            ApiCode::BadConvexClientHeader => (8, "BadConvexClientHeader", StatusCode::BAD_REQUEST),
            ApiCode::FunctionPathNotFound => (9, "FunctionPathNotFound", StatusCode::NOT_FOUND),
            ApiCode::MethodNotAllowed => (10, "MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED),
            ApiCode::RequestTimeout => (11, "RequestTimeout", StatusCode::REQUEST_TIMEOUT),
            ApiCode::PayloadTooLarge => (12, "PayloadTooLarge", StatusCode::PAYLOAD_TOO_LARGE),
            ApiCode::InternalServerError => (13, "InternalServerError", StatusCode::INTERNAL_SERVER_ERROR),
            ApiCode::StorageUnavailable => (14, "StorageUnavailable", StatusCode::SERVICE_UNAVAILABLE),
            ApiCode::AuthProviderUnavailable => (15, "AuthProviderUnavailable", StatusCode::SERVICE_UNAVAILABLE),
            ApiCode::NotReady => (16, "NotReady", StatusCode::SERVICE_UNAVAILABLE),
            ApiCode::WebSocketUpgradeRequired => (17, "WebSocketUpgradeRequired", StatusCode::BAD_REQUEST),
            ApiCode::PushNotSupported => (18, "PushNotSupported", StatusCode::BAD_REQUEST),
            ApiCode::InlineQueryNotSupported => (19, "InlineQueryNotSupported", StatusCode::BAD_REQUEST),
            ApiCode::ExportInProgress => (20, "ExportInProgress", StatusCode::BAD_REQUEST),
            ApiCode::ExportNotFound => (21, "ExportNotFound", StatusCode::NOT_FOUND),
        }
    }

    #[test]
    fn every_infrastructure_code_has_its_own_wire_string_and_status() {
        let mut positions: Vec<usize> = ApiCode::ALL.iter().map(|&code| meaning(code).0).collect();
        positions.sort_unstable();
        assert_eq!(positions, (0..ApiCode::ALL.len()).collect::<Vec<_>>(), "ApiCode::ALL lists every code once");
        let mut seen = std::collections::HashSet::new();
        for &code in ApiCode::ALL {
            let (_, wire, status) = meaning(code);
            assert_eq!((code.as_str(), code.status()), (wire, status), "{code:?}");
            assert_eq!(format!("{code:?}"), wire, "the wire string is the variant's name");
            assert!(seen.insert(wire), "{wire} is used by two codes");
            assert!(ErrorCode::ALL.iter().all(|app| app.as_str() != wire), "{wire} is also an application code");
            let error = ApiError::new(code, "why");
            assert_eq!(
                (error.status, error.code, error.message.as_str(), error.retry_after),
                (status, wire, "why", None)
            );
            // A client error is a 4xx, a server-side failure a 5xx.
            let client_side = !matches!(
                code,
                ApiCode::InternalServerError
                    | ApiCode::StorageUnavailable
                    | ApiCode::AuthProviderUnavailable
                    | ApiCode::NotReady
            );
            assert_eq!(status.is_client_error(), client_side, "{code:?}");
            assert_eq!(status.is_server_error(), !client_side, "{code:?}");
        }
    }

    #[tokio::test]
    async fn an_answer_is_its_status_and_a_code_message_body() {
        let response = ApiError::new(ApiCode::BadJsonBody, "The request body must be a JSON object.").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[axum::http::header::CONTENT_TYPE], "application/json");
        assert!(response.headers().get(axum::http::header::RETRY_AFTER).is_none());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], br#"{"code":"BadJsonBody","message":"The request body must be a JSON object."}"#);

        let response = ApiError::storage(StorageError::Conflict("locked".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"code":"StorageUnavailable","message":"The database is unavailable at the moment. Try again later."}"#
        );
    }

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
            let logged = engine_code(&EngineError::Storage(error.clone()));
            let answer = ApiError::engine(EngineError::Storage(error));
            assert_eq!(logged.as_str(), answer.code, "the function log names the code the caller got");
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
