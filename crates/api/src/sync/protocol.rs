//! The JSON messages of Convex's WebSocket sync protocol (shared/spec/convex-wire.md §4).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use jangar_engine::base64;
use jangar_engine::storage::Timestamp;

/// Timestamps and other u64s travel as base64 of the little-endian bytes.
pub fn encode_ts(ts: Timestamp) -> String {
    base64::encode(&ts.to_le_bytes())
}

pub fn decode_ts(text: &str) -> Option<Timestamp> {
    Some(Timestamp::from_le_bytes(base64::decode(text)?.try_into().ok()?))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Connect {
        session_id: String,
        #[serde(default)]
        connection_count: u32,
        #[serde(default)]
        last_close_reason: Option<String>,
        #[serde(default)]
        max_observed_timestamp: Option<String>,
    },
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
pub enum TokenType {
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
pub struct StateVersion {
    pub query_set: u32,
    pub identity: u32,
    #[serde(serialize_with = "serialize_ts")]
    pub ts: Timestamp,
}

fn serialize_ts<S: serde::Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode_ts(*ts))
}

#[derive(Debug, Serialize, Clone)]
#[serde(tag = "type")]
pub enum StateModification {
    #[serde(rename_all = "camelCase")]
    QueryUpdated { query_id: u32, value: Json, log_lines: Vec<String>, journal: Json },
    #[serde(rename_all = "camelCase")]
    QueryFailed {
        query_id: u32,
        error_message: String,
        log_lines: Vec<String>,
        journal: Json,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    #[serde(rename_all = "camelCase")]
    QueryRemoved { query_id: u32 },
}

#[derive(Debug, Serialize, Clone)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename_all = "camelCase")]
    Transition {
        start_version: StateVersion,
        end_version: StateVersion,
        modifications: Vec<StateModification>,
    },
    #[serde(rename_all = "camelCase")]
    MutationResponse {
        request_id: u32,
        success: bool,
        /// The value on success, the error message on failure.
        result: Json,
        /// Commit timestamp (base64) on success, null on failure.
        ts: Option<String>,
        log_lines: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    #[serde(rename_all = "camelCase")]
    ActionResponse {
        request_id: u32,
        success: bool,
        result: Json,
        log_lines: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    #[serde(rename_all = "camelCase")]
    AuthError {
        error: String,
        base_version: u32,
        auth_update_attempted: bool,
    },
    FatalError {
        error: String,
    },
    Ping,
}
