//! Starting and stopping a Jangar server: storage, committer, HTTP listener,
//! graceful shutdown. Used by `jangar serve` and by the tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::api::sync::SyncHub;
use crate::api::sync::manager::{Manager, SyncStats};
use crate::api::{AppState, router};
use crate::auth::Auth;
use crate::auth::keys::AdminKeys;
use crate::domain;
use crate::engine::database::Database;
use crate::engine::storage::sqlite::{Durability, SqliteStorage};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Results the query cache holds at most; 0 turns it off.
    pub query_cache_entries: usize,
    /// Messages queued for one WebSocket client before it counts as too slow and is disconnected.
    pub sync_queue_messages: usize,
    /// Admin keys given outside the data directory (the environment).
    pub admin_keys: Vec<String>,
    /// Browser origins allowed by CORS (any origin in open development mode).
    pub cors_origins: Vec<String>,
}

/// Connections waiting to be accepted: large, so thousands of clients
/// reconnecting at once are queued rather than dropped (the default is 128).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests and commits finish, and returns.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let schema = Arc::new(domain::schema::schema());
    let storage = SqliteStorage::open(&config.data_dir, &schema, config.durability).map_err(|e| e.to_string())?;
    let (db, committer) =
        Database::start(schema, Arc::new(storage), config.query_cache_entries).map_err(|e| e.to_string())?;
    let keys = AdminKeys::load(&config.data_dir, &config.admin_keys);
    let loopback = config.listen.ip().is_loopback();
    if keys.is_empty() && !loopback {
        return Err(format!(
            "refusing to listen on {} without an admin key: run `jangar keys generate` or set JANGAR_ADMIN_KEY",
            config.listen
        ));
    }
    let open = loopback && keys.is_empty();
    let auth = Auth::new(keys, open);
    if auth.is_open() {
        tracing::warn!(
            "no admin key is configured: open development mode, anyone who can reach this port may call anything"
        );
    }
    let registry = Arc::new(domain::registry());
    let (events, event_queue) = tokio::sync::mpsc::channel(4096);
    let (stop_sockets, sockets_stopped) = tokio::sync::watch::channel(false);
    let sync_stats = Arc::new(SyncStats::default());
    tokio::spawn(Manager::new(db.clone(), auth.clone(), registry.clone(), event_queue, sync_stats.clone()).run());
    let sync = Arc::new(SyncHub::new(events, sync_stats, sockets_stopped, config.sync_queue_messages));
    let state = AppState { db, registry, sync, auth };
    let listener = listen(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), durability = ?config.durability, "Jangar is serving");
    on_ready(address);
    let shutdown = async move {
        shutdown.await;
        // Upgraded WebSocket connections are not tracked by the HTTP server: close them too.
        let _ = stop_sockets.send(true);
    };
    axum::serve(listener, router(state, &config.cors_origins))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    // Every handle to the database is gone with the router: the committer
    // drains its queue and stops.
    let joined = tokio::task::spawn_blocking(move || committer.join());
    if tokio::time::timeout(Duration::from_secs(30), joined).await.is_err() {
        return Err("the committer did not stop within 30 s".into());
    }
    tracing::info!("Jangar stopped");
    Ok(())
}
