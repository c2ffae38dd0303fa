//! The JSON messages of Convex's WebSocket sync protocol (shared/spec/convex-wire.md §4).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use jangar_engine::base64;
use jangar_engine::storage::Timestamp;

/// Timestamps and other u64s travel as base64 of the little-endian bytes.
pub(crate) fn encode_ts(ts: Timestamp) -> String {
    base64::encode(&ts.to_le_bytes())
}

pub fn decode_ts(text: &str) -> Option<Timestamp> {
    Some(Timestamp::from_le_bytes(base64::decode(text)?.try_into().ok()?))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Connect { session_id: String },
    #[serde(rename_all = "camelCase")]
    ModifyQuerySet { base_version: u32, new_version: u32, modifications: Vec<QuerySetModification> },
    #[serde(rename_all = "camelCase")]
    Mutation { request_id: u32, udf_path: String, args: Vec<Json> },
    #[serde(rename_all = "camelCase")]
    Action { request_id: u32, udf_path: String, args: Vec<Json> },
    #[serde(rename_all = "camelCase")]
    Authenticate {
        base_version: u32,
        token_type: TokenType,
        #[serde(default)]
        value: Option<String>,
        /// The user an admin acts as (`acting_as` from the Rust and Python clients).
        #[serde(default, alias = "acting_as")]
        impersonating: Option<Json>,
    },
    /// Client-side telemetry: accepted and ignored.
    Event {},
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenType {
    Admin,
    User,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum QuerySetModification {
    #[serde(rename_all = "camelCase")]
    Add {
        query_id: u32,
        udf_path: String,
        args: Vec<Json>,
        /// What an earlier answer to this query said to send back with it (a paginated page's
        /// end), so that after a reconnect it answers the same rows.
        #[serde(default)]
        journal: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Remove { query_id: u32 },
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateVersion {
    pub(crate) query_set: u32,
    pub(crate) identity: u32,
    #[serde(serialize_with = "serialize_ts")]
    pub(crate) ts: Timestamp,
}

fn serialize_ts<S: serde::Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode_ts(*ts))
}
