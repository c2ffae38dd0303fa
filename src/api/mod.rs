//! The protocol layer: Convex's HTTP API over the domain's function registry.

pub mod error;
pub mod http;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::domain::registry::Registry;
use crate::engine::database::Database;

/// Convex's limit on function arguments.
pub const MAX_ARGS_BYTES: usize = 16 << 20;
/// Request bodies may carry the arguments plus their JSON overhead.
pub const MAX_BODY_BYTES: usize = MAX_ARGS_BYTES + (1 << 20);

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Database>,
    pub registry: Arc<Registry>,
}

pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    Router::new()
        .route("/", get(http::root))
        .route("/version", get(http::version))
        .route("/api/query", post(http::query).get(http::query_get))
        .route("/api/mutation", post(http::mutation))
        .route("/api/action", post(http::action))
        .route("/api/function", post(http::function))
        .route("/api/run/{*route}", post(http::run_by_path))
        .route("/api/query_ts", post(http::query_ts))
        .route("/api/query_batch", post(http::query_batch))
        .route("/jangar/stats", get(http::stats))
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .with_state(state)
}
