//! The protocol layer: Convex's HTTP API over the domain's function registry.

pub mod auth;
pub mod client;
mod console;
pub(crate) mod error;
pub mod executions;
pub mod http;
pub mod metrics;
pub mod operators;
pub mod sync;
pub mod temporal;

use jangar_engine::knobs::MAX_ARGS_BYTES;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use jangar_domain::error::{AppError, ErrorCode, FunctionError};
use jangar_domain::registry::Registry;
use jangar_engine::database::Database;
use jangar_engine::value::Value;

/// Decodes arguments: an object, or the legacy `[object]` that the JS client sends.
pub(crate) fn decode_args(args: &serde_json::Value) -> Result<Value, FunctionError> {
    use serde_json::Value as Json_;
    let invalid = |m: String| FunctionError::App(AppError::new(ErrorCode::InvalidArgument, m));
    let args = match args {
        Json_::Array(items) if items.len() == 1 => &items[0],
        Json_::Array(items) => {
            return Err(invalid(format!("Expected one argument object, got {} arguments.", items.len())));
        }
        other => other,
    };
    let value = Value::from_json(args).map_err(|e| invalid(format!("Invalid arguments: {e}")))?;
    if value.size() > MAX_ARGS_BYTES {
        return Err(FunctionError::App(AppError::new(
            ErrorCode::LimitExceeded,
            format!("Arguments are larger than {MAX_ARGS_BYTES} bytes."),
        )));
    }
    Ok(value)
}

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Database>,
    pub registry: Arc<Registry>,
    pub sync: Arc<sync::SyncHub>,
    pub auth: Arc<crate::auth::Auth>,
    pub limits: BodyLimits,
    /// What exports and imports report to the CLI's system queries.
    pub operations: Arc<jangar_domain::system::Operations>,
    pub scratch: Arc<operators::snapshots::Scratch>,
    /// The scheduled backups' counters, when the server takes backups.
    pub backups: Option<Arc<jangar_engine::storage::sqlite::backup::BackupStats>>,
    pub executions: Arc<executions::ExecutionLog>,
    pub metrics: Arc<metrics::Metrics>,
}

/// How large a request body may be, and how long a client may pause while sending one.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
}

/// `cors_origins`: the browser origins allowed to call; any origin in open development mode.
/// What the port answers while the database is not reachable yet: 503 to everything but `/livez`.
pub fn not_ready_router() -> Router {
    Router::new()
        .route("/livez", get(http::live))
        .fallback(|| async { error::ApiError::new(error::ApiCode::NotReady, "Waiting for the database.") })
}

/// What `--metrics-listen` serves: `/metrics` without credentials, and nothing else.
pub fn metrics_router(metrics: Arc<metrics::Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(operators::observability::metrics_unguarded))
        .fallback(http::not_found)
        .with_state(metrics)
}

pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    // Decided per request: open development mode may end while the server runs.
    let allowed: Vec<axum::http::HeaderValue> = cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let auth = state.auth.clone();
    let origins = AllowOrigin::predicate(move |origin, _| auth.is_open() || allowed.contains(origin));
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    Router::new()
        .route("/", get(http::root))
        .route("/version", get(http::version))
        .route("/.well-known/openid-configuration", get(http::openid_configuration))
        .route("/.well-known/jwks.json", get(http::jwks))
        .route("/ready", get(http::ready))
        .route("/readyz", get(http::ready))
        .route("/livez", get(http::live))
        .route("/metrics", get(operators::observability::metrics))
        .route("/api/query", post(http::query).get(http::query_get))
        .route("/api/mutation", post(http::mutation))
        .route("/api/action", post(http::action))
        .route("/api/function", post(http::function))
        .route("/api/run/{*route}", post(http::run_by_path))
        .route("/api/query_ts", post(http::query_ts))
        .route("/api/query_at_ts", post(http::query_at_ts))
        .route("/api/query_batch", post(http::query_batch))
        .route("/api/sync", get(sync::upgrade))
        .route("/api/{client_version}/sync", get(sync::upgrade))
        .route("/api/get_config_hashes", post(operators::push))
        .route("/api/deploy2/{*step}", post(operators::push))
        .route("/api/run_test_function", post(operators::run_test_function))
        .route("/api/v1/get_canonical_urls", get(operators::canonical_urls))
        .route("/api/update_environment_variables", post(operators::update_environment_variables))
        .route("/api/export/request/zip", post(operators::snapshots::request_export))
        .route("/api/export/zip/{ts}", get(operators::snapshots::download_export))
        .route("/api/import/start_upload", post(operators::snapshots::start_upload))
        .route("/api/import/upload_part", post(operators::snapshots::upload_part))
        .route("/api/import/finish_upload", post(operators::snapshots::finish_upload))
        .route("/api/perform_import", post(operators::snapshots::perform_import))
        .route("/api/stream_function_logs", get(operators::observability::stream_function_logs))
        .route("/api/app_metrics/stream_function_logs", get(operators::observability::stream_function_logs))
        .route("/jangar/stats", get(http::stats))
        .route("/jangar/check", post(http::check))
        .merge(console::routes())
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(cors)
        .with_state(state)
}
