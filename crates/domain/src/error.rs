//! How a function fails: an application error that clients branch on by
//! `code` (Convex's `ConvexError` with data), or an engine failure.

use jangar_engine::error::EngineError;
use jangar_engine::value::{Object, Value};

/// The `code` of an application error: what clients branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Arguments that break a rule their validator cannot express (or no validator at all).
    InvalidArgument,
    /// A pagination cursor that is malformed, or was signed for another query.
    InvalidCursor,
    /// A Convex limit: argument size, document size, reads or writes per transaction.
    LimitExceeded,
    /// The document does not exist (or the caller may not see it).
    NotFound,
    /// The document, or the session it belongs to, is soft-deleted.
    Deleted,
    /// No credentials where a call needs them.
    Unauthenticated,
    /// The caller may not do this: a worker function without an admin key, or acting for another user.
    Forbidden,
    /// Too many calls from one identity.
    RateLimited,
    /// The document is not in a state that allows the change (e.g. a message that is not streaming).
    Conflict,
    /// A status change that its state machine does not allow.
    InvalidTransition,
    /// Nothing to do: e.g. committing a message without changes.
    NoChanges,
    /// An `Idempotency-Key` used again for another call.
    IdempotencyKeyReused,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidCursor,
        ErrorCode::LimitExceeded,
        ErrorCode::NotFound,
        ErrorCode::Deleted,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::InvalidTransition,
        ErrorCode::NoChanges,
        ErrorCode::IdempotencyKeyReused,
    ];

    /// The code as clients receive it in the error data.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::InvalidCursor => "InvalidCursor",
            ErrorCode::LimitExceeded => "LimitExceeded",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Deleted => "Deleted",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::RateLimited => "RateLimited",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::InvalidTransition => "InvalidTransition",
            ErrorCode::NoChanges => "NoChanges",
            ErrorCode::IdempotencyKeyReused => "IdempotencyKeyReused",
        }
    }

    /// The HTTP status that goes with the code when the HTTP API answers with it
    /// itself, before any function runs (`Unauthenticated` is a 401, `RateLimited`
    /// a 429). A function's own failure is not sent this way: it is a 200 whose
    /// body has `status: "error"` and the code in `errorData`, as Convex does.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::InvalidCursor => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::InvalidTransition | ErrorCode::NoChanges => 409,
            ErrorCode::Deleted => 410,
            ErrorCode::LimitExceeded => 413,
            ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::RateLimited => 429,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire string, so tests and logs can say `e.code == "NotFound"`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    pub(crate) code: ErrorCode,
    pub message: String,
    /// Extra fields of the error data besides `code` and `message`.
    pub(crate) details: Object,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError { code, message: message.into(), details: Object::new() }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn with(mut self, field: &str, value: impl Into<Value>) -> AppError {
        self.details.insert(field.to_owned(), value.into());
        self
    }

    /// The error's data as clients receive it: `{code, message, ...details}`.
    pub fn data(&self) -> Value {
        let mut data = self.details.clone();
        data.insert("code".into(), self.code.as_str().into());
        data.insert("message".into(), self.message.clone().into());
        Value::Object(data)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("{}", .0.message)]
    App(AppError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<AppError> for FunctionError {
    fn from(e: AppError) -> FunctionError {
        FunctionError::App(e)
    }
}

impl FunctionError {
    /// Folds client-caused engine errors into application errors; leaves
    /// infrastructure failures (storage, schema bugs) as they are.
    pub fn into_client_facing(self) -> FunctionError {
        match self {
            FunctionError::Engine(EngineError::Validation(m)) => {
                FunctionError::App(AppError::new(ErrorCode::InvalidArgument, m))
            }
            FunctionError::Engine(EngineError::InvalidCursor(m)) => {
                FunctionError::App(AppError::new(ErrorCode::InvalidCursor, m))
            }
            FunctionError::Engine(EngineError::LimitExceeded(m)) => {
                FunctionError::App(AppError::new(ErrorCode::LimitExceeded, m))
            }
            FunctionError::Engine(EngineError::NoSuchDocument(id)) => FunctionError::App(
                AppError::new(ErrorCode::NotFound, format!("Document {id} does not exist.")).with("id", id),
            ),
            other => other,
        }
    }
}

pub type FunctionResult = Result<Value, FunctionError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_distinct_wire_strings() {
        let words: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(words.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(code.to_string(), code.as_str());
            assert!(*code == code.as_str());
        }
        assert_eq!(ErrorCode::IdempotencyKeyReused.as_str(), "IdempotencyKeyReused");
    }

    #[test]
    fn http_statuses_are_client_errors() {
        for code in ErrorCode::ALL {
            assert!((400..500).contains(&code.http_status()), "{code}");
        }
        assert_eq!(ErrorCode::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
    }

    #[test]
    fn the_data_carries_the_wire_code_then_the_details() {
        let error = AppError::new(ErrorCode::InvalidTransition, "Cannot move.").with("from", "draft");
        let data = error.data();
        let data = data.as_object().unwrap();
        assert_eq!(data["code"], "InvalidTransition".into());
        assert_eq!(data["message"], "Cannot move.".into());
        assert_eq!(data["from"], "draft".into());
    }
}
