//! The generic document engine: values, ids, schemas, index keys, storage,
//! transactions with read and write sets, and the group committer. It knows
//! nothing of Jangar's tables.

pub mod base64;
pub mod cache;
pub mod cursor;
pub mod database;
pub mod document;
mod document_cache;
pub mod error;
pub mod history;
pub mod id;
pub mod integrity;
pub mod keys;
pub mod knobs;
pub mod schema;
pub mod sets;
pub mod snapshot;
pub mod storage;
pub mod stored_json;
pub mod transaction;
pub mod value;
mod write_buffer;

#[cfg(test)]
mod tests;
