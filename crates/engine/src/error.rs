use super::storage::StorageError;

/// Why the engine refused or failed a read or a write.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A document or an argument does not match its validator, or breaks a value rule.
    #[error("{0}")]
    Validation(String),
    /// A Convex limit (document size, reads or writes per transaction) was exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// A malformed pagination cursor.
    #[error("{0}")]
    InvalidCursor(String),
    /// A write to a document that does not exist.
    #[error("document {0} does not exist")]
    NoSuchDocument(String),
    /// The function asked for a table or index the schema does not declare: a bug in the function.
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
