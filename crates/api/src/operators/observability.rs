//! What operators watch a running server with: the function log that `npx convex logs`
//! long-polls, and the metrics that Prometheus scrapes.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json_;

use super::admin_only;
use crate::AppState;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use jangar_domain::error::ErrorCode;

#[derive(serde::Deserialize)]
pub(crate) struct LogCursor {
    /// Milliseconds since the epoch: the `newCursor` of the last answer, or 0 for every call kept.
    cursor: Option<f64>,
}

/// `GET /api/stream_function_logs?cursor=<ms>` (and the dashboard's
/// `/api/app_metrics/stream_function_logs`): the calls finished after `cursor`, at once if there
/// are any, else the first to finish within the wait (none after it), as Convex answers.
pub(crate) async fn stream_function_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LogCursor>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let Query(LogCursor { cursor }) = query.map_err(|rejection| {
        let message = format!("`cursor` must be a number of milliseconds: {}", rejection.body_text());
        ApiError::of(ErrorCode::InvalidArgument, message)
    })?;
    let page = state.executions.poll(cursor.unwrap_or(0.0), state.sync.shutdown.clone()).await;
    Ok(Json(page.to_json()))
}

/// `GET /metrics` on the API's port: for admins (anonymous callers of a keyed deployment get 401).
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_only(&state, &headers).await?;
    exposition(&state.metrics).await
}

/// `GET /metrics` on `--metrics-listen`, which serves nothing else and needs no key.
pub(crate) async fn metrics_unguarded(State(metrics): State<std::sync::Arc<Metrics>>) -> Result<Response, ApiError> {
    exposition(&metrics).await
}

async fn exposition(metrics: &Metrics) -> Result<Response, ApiError> {
    let text = metrics.render().await.map_err(ApiError::internal)?;
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}
