//! The routes of operators' tools (the official `npx convex` CLI and `jangar`'s own
//! commands): environment variables, function logs, export and import, and the push routes
//! refused at once. All answer admins only.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value as Json_, json};

pub mod snapshots;

use super::AppState;
use super::error::{ApiCode, ApiError};
use super::executions::{CallerKind, Invocation, Outcome, RequestId};
use super::http::{RequestBody, caller, json_body};
use jangar_domain::access::Caller;
use jangar_domain::error::{ErrorCode, FunctionError};
use jangar_domain::registry::{check_args, run_mutation};

pub(crate) mod observability;

/// `npx convex deploy` and `dev` begin their push here (`/api/get_config_hashes`, then
/// `/api/deploy2/*`): refused at once, not after the CLI's retries of a 404.
pub(crate) async fn push(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_only(&state, &headers).await?;
    let message = "This Jangar deployment serves a fixed function catalogue: there is nothing to push, \
                   and `npx convex deploy` / `dev` are not needed. Point CONVEX_URL at it and use the functions it has.";
    Err(ApiError::new(ApiCode::PushNotSupported, message))
}

/// `npx convex run --inline-query` sends JavaScript to run here.
pub(crate) async fn run_test_function(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_only(&state, &headers).await?;
    let message = "This Jangar deployment runs no JavaScript: call a function of its catalogue instead \
                   (`npx convex function-spec` lists them).";
    Err(ApiError::new(ApiCode::InlineQueryNotSupported, message))
}

/// `npx convex dev` asks where the deployment's clients and HTTP actions are: here, as the
/// request reached it.
pub(crate) async fn canonical_urls(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let url = format!("http://{host}");
    Ok(Json(json!({"convexCloudUrl": url, "convexSiteUrl": url})))
}

/// Operators' routes answer admins only (others get 401 or 403).
pub(crate) async fn admin_only(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if caller(state, headers).await?.admin {
        Ok(())
    } else {
        Err(ApiError::of(ErrorCode::Forbidden, "This route needs an admin key."))
    }
}

/// `npx convex env set/remove`: `{changes: [{name, value}]}`, `value: null` unsets.
pub(crate) async fn update_environment_variables(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let args = json_body(&body)?;
    call_system_mutation(&state, "_system/cli/updateEnvironmentVariables:default", &args).await?;
    Ok(Json(json!({})))
}

/// Runs one of the registry's system mutations for an admin, its errors as `{code, message}`.
async fn call_system_mutation(state: &AppState, path: &str, args: &Json_) -> Result<(), ApiError> {
    let function = state.registry.get(path).ok_or_else(|| ApiError::internal(format!("{path} is not registered")))?;
    let invocation = Invocation::new(&function, CallerKind::Admin, RequestId::next());
    let started = Instant::now();
    let ran = match super::decode_args(args).and_then(|a| check_args(&function, a, state.db.schema())) {
        Ok(args) => run_mutation(&state.db, function, Caller::ADMIN, args).await,
        Err(e) => Err(e),
    };
    state.executions.record(invocation, started.elapsed(), Outcome::of(&ran));
    ran.map(drop).map_err(|error| match error {
        FunctionError::App(app) => ApiError::of(app.code(), app.message),
        FunctionError::Engine(e) => ApiError::engine(e),
    })
}
