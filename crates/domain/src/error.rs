//! How a function fails: an application error that clients branch on by
//! `code` (Convex's `ConvexError` with data), or an engine failure.

use jangar_engine::error::EngineError;
use jangar_engine::value::{Object, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    pub code: &'static str,
    pub message: String,
    /// Extra fields of the error data besides `code` and `message`.
    pub details: Object,
}

impl AppError {
    pub fn new(code: &'static str, message: impl Into<String>) -> AppError {
        AppError { code, message: message.into(), details: Object::new() }
    }

    pub fn with(mut self, field: &str, value: impl Into<Value>) -> AppError {
        self.details.insert(field.to_owned(), value.into());
        self
    }

    /// The error's data as clients receive it: `{code, message, ...details}`.
    pub fn data(&self) -> Value {
        let mut data = self.details.clone();
        data.insert("code".into(), self.code.into());
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
                FunctionError::App(AppError::new("InvalidArgument", m))
            }
            FunctionError::Engine(EngineError::InvalidCursor(m)) => {
                FunctionError::App(AppError::new("InvalidCursor", m))
            }
            FunctionError::Engine(EngineError::LimitExceeded(m)) => {
                FunctionError::App(AppError::new("LimitExceeded", m))
            }
            FunctionError::Engine(EngineError::NoSuchDocument(id)) => {
                FunctionError::App(AppError::new("NotFound", format!("Document {id} does not exist.")).with("id", id))
            }
            other => other,
        }
    }
}

pub type FunctionResult = Result<Value, FunctionError>;
