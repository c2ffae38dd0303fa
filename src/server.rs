//! Starting and stopping a Jangar server: storage, committer, HTTP listener,
//! graceful shutdown. Used by `jangar serve` and by the tests.

use jangar_engine::knobs::{
    BODY_TIMEOUT_SECONDS, CALLS_PER_SECOND, DEFAULT_QUERY_CACHE_ENTRIES, FUNCTION_LOG_ENTRIES, FUNCTION_LOG_WAIT,
    HEADER_TIMEOUT_SECONDS, LISTEN_BACKLOG, MAX_BODY_BYTES, PENDING_MUTATIONS, SUBSCRIPTIONS_PER_CONNECTION,
    SYNC_QUEUE_MESSAGES,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use jangar_api::auth::Auth;
use jangar_api::auth::WatchedProviders;
use jangar_api::auth::issuer::Issuer;
use jangar_api::auth::keys::AdminKeys;
use jangar_api::executions::ExecutionLog;
use jangar_api::metrics::{LastBackup, Metrics};
use jangar_api::operators::snapshots::Scratch;
use jangar_api::sync::SyncHub;
use jangar_api::sync::manager::{Manager, SyncStats};
use jangar_api::temporal::{Bridge, BridgeStats, TemporalConfig};
use jangar_api::{AppState, BodyLimits, router};
use jangar_engine::database::Database;
use jangar_engine::storage::Storage;
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::backup::{BackupSchedule, BackupScheduler};
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};

/// Bounds on what one caller or connection may use; every one is configurable.
#[derive(Clone, Debug, clap::Args)]
pub struct Limits {
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long = "max-request-bytes", env = "JANGAR_MAX_REQUEST_BYTES", default_value_t = MAX_BODY_BYTES)]
    pub request_bytes: usize,
    /// Largest WebSocket message a client may send, in bytes (the socket closes with 1009 above it).
    #[arg(long = "max-socket-message-bytes", env = "JANGAR_MAX_SOCKET_MESSAGE_BYTES", default_value_t = MAX_BODY_BYTES)]
    pub socket_message_bytes: usize,
    /// Function calls per user (user token) per second (429 with Retry-After beyond it; 0: no
    /// limit). Admin keys and open development mode are not limited.
    #[arg(long = "rate-limit-per-second", env = "JANGAR_RATE_LIMIT_PER_SECOND", default_value_t = CALLS_PER_SECOND)]
    pub calls_per_second: u32,
    /// Queries one WebSocket connection may subscribe to.
    #[arg(long = "max-subscriptions-per-connection", env = "JANGAR_MAX_SUBSCRIPTIONS", default_value_t = SUBSCRIPTIONS_PER_CONNECTION)]
    pub subscriptions_per_connection: usize,
    /// Mutations one WebSocket connection may have waiting to run.
    #[arg(long = "max-pending-mutations", env = "JANGAR_MAX_PENDING_MUTATIONS", default_value_t = PENDING_MUTATIONS)]
    pub pending_mutations: usize,
    /// Messages queued for one WebSocket client; a client further behind is disconnected (it reconnects).
    #[arg(long = "sync-queue-messages", env = "JANGAR_SYNC_QUEUE_MESSAGES", default_value_t = SYNC_QUEUE_MESSAGES)]
    pub sync_queue_messages: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is closed
    /// after as long.
    #[arg(long = "header-timeout-seconds", env = "JANGAR_HEADER_TIMEOUT_SECONDS", default_value_t = HEADER_TIMEOUT_SECONDS)]
    pub header_timeout_seconds: u64,
    /// Seconds a client may pause while sending a request body (408 after it).
    #[arg(long = "body-timeout-seconds", env = "JANGAR_BODY_TIMEOUT_SECONDS", default_value_t = BODY_TIMEOUT_SECONDS)]
    pub body_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes: MAX_BODY_BYTES,
            socket_message_bytes: MAX_BODY_BYTES,
            calls_per_second: CALLS_PER_SECOND,
            subscriptions_per_connection: SUBSCRIPTIONS_PER_CONNECTION,
            pending_mutations: PENDING_MUTATIONS,
            sync_queue_messages: SYNC_QUEUE_MESSAGES,
            header_timeout_seconds: HEADER_TIMEOUT_SECONDS,
            body_timeout_seconds: BODY_TIMEOUT_SECONDS,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Results the query cache holds at most; 0 turns it off.
    pub query_cache_entries: usize,
    pub limits: Limits,
    /// Admin keys given outside the data directory (the environment).
    pub admin_keys: Vec<String>,
    /// Browser origins allowed by CORS (any origin in open development mode).
    pub cors_origins: Vec<String>,
    /// The identity providers' file; `None`: `auth.json` in the data directory, if it exists.
    pub auth_config: Option<PathBuf>,
    /// A PostgreSQL URL: store everything there (shared with other replicas) instead of in SQLite.
    pub database_url: Option<String>,
    /// Backups of the SQLite database on a schedule (refused with `database_url`).
    pub backup: Option<BackupSchedule>,
    /// A second address serving only `/metrics`, without credentials.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a function-log poll with nothing new waits (`FUNCTION_LOG_WAIT`; tests shorten it).
    pub function_log_wait: Duration,
    /// The Temporal bridge, if work orders start workflows.
    pub temporal: Option<TemporalConfig>,
    /// The URL users reach this deployment at: the issuer of the tokens it signs users in with.
    /// `None`: `http://` and the listening address.
    pub site_url: Option<String>,
    /// The PKCS#8 PEM the tokens are signed with; `None`: a key made once and kept with the data.
    pub jwt_private_key: Option<String>,
    /// How long the access tokens it issues last.
    pub token_lifetime: Duration,
}

impl ServerConfig {
    /// The defaults of `jangar serve`, on `listen` with data in `data_dir`, no keys from the environment.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir,
            durability: Durability::Full,
            query_cache_entries: DEFAULT_QUERY_CACHE_ENTRIES,
            limits: Limits::default(),
            admin_keys: Vec::new(),
            cors_origins: Vec::new(),
            auth_config: None,
            database_url: None,
            backup: None,
            metrics_listen: None,
            function_log_wait: FUNCTION_LOG_WAIT,
            site_url: None,
            jwt_private_key: None,
            token_lifetime: jangar_engine::knobs::ISSUED_TOKEN_LIFETIME,
            temporal: None,
        }
    }
}

/// The identity providers' file a deployment reads when none is named.
pub const AUTH_CONFIG_FILE: &str = "auth.json";

/// Serves HTTP/1.1 (with WebSocket upgrades) on `listener` until `shutdown` resolves, then stops
/// accepting and lets every connection finish the request it is in.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Headers must arrive in time, and the same timer closes keep-alive connections left idle.
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: a MutationResponse and the Transition that settles it are two small
        // writes, and the second would wait out the client's delayed ACK (about 40 ms a mutation).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    // Finish the request in flight (an idle connection closes at once), then end.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        // Forget connections that are done, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
}

/// Connects to PostgreSQL and migrates it, retrying with backoff (1 s, doubling to 30 s) while it
/// cannot: a database that is not up yet must not turn into a crash loop.
async fn open_postgres(url: String, schema: Arc<jangar_engine::schema::Schema>) -> PostgresStorage {
    let mut wait = Duration::from_secs(1);
    loop {
        let (url, schema) = (url.clone(), schema.clone());
        match tokio::task::spawn_blocking(move || PostgresStorage::open(&url, &schema)).await {
            Ok(Ok(storage)) => {
                tracing::info!("connected to PostgreSQL");
                return storage;
            }
            Ok(Err(e)) => tracing::error!(error = %e, retry_in = ?wait, "PostgreSQL is not available"),
            Err(e) => tracing::error!(error = %e, retry_in = ?wait, "connecting to PostgreSQL failed"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Two listeners on one socket: one serves while the other waits its turn.
fn split_listener(listener: TcpListener) -> std::io::Result<(TcpListener, TcpListener)> {
    let socket = listener.into_std()?;
    Ok((TcpListener::from_std(socket.try_clone()?)?, TcpListener::from_std(socket)?))
}

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
    if config.backup.is_some() && config.database_url.is_some() {
        return Err("--backup-dir backs up the SQLite database of --data-dir, and this server stores its data in \
                    PostgreSQL (--db): back that up with pg_dump or continuous archiving (see the README)"
            .into());
    }
    let schema = Arc::new(jangar_domain::schema::schema());
    let mut shutdown = Box::pin(shutdown);
    let keys = AdminKeys::load(&config.data_dir, &config.admin_keys);
    let providers = match &config.auth_config {
        Some(path) if !path.exists() => return Err(format!("{} does not exist", path.display())),
        Some(path) => WatchedProviders::load(Some(path.clone()))?,
        None => WatchedProviders::load(Some(config.data_dir.join(AUTH_CONFIG_FILE)))?,
    };
    let loopback = config.listen.ip().is_loopback();
    let header_timeout = Duration::from_secs(config.limits.header_timeout_seconds.max(1));
    let credentials = !keys.is_empty() || providers.current().is_some();
    if !credentials && !loopback {
        return Err(format!(
            "refusing to listen on {} without credentials: run `jangar keys generate`, set JANGAR_ADMIN_KEY \
             or configure an identity provider",
            config.listen
        ));
    }
    if let Some(providers) = providers.current() {
        tracing::info!(issuers = ?providers.issuers().collect::<Vec<_>>(), "accepting user tokens");
    }
    let mut listener = listen(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    // Bound at once, so a taken port stops the start here; it serves once the database does.
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(listen(at).map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?),
        None => None,
    };
    let (storage, cache_entries): (Arc<dyn Storage>, usize) = match &config.database_url {
        None => {
            let storage =
                SqliteStorage::open(&config.data_dir, &schema, config.durability).map_err(|e| e.to_string())?;
            (Arc::new(storage), config.query_cache_entries)
        }
        Some(url) => {
            tracing::info!(
                database = %jangar_engine::storage::postgres::describe_url(url),
                "storing data in PostgreSQL (not SQLite in the data directory)"
            );
            // Until the database answers, the port answers 503 (so a load balancer sees "not ready").
            let (waiting, serving) = split_listener(listener).map_err(|e| e.to_string())?;
            listener = serving;
            let (connected, until_connected) = tokio::sync::oneshot::channel::<()>();
            let not_ready =
                tokio::spawn(serve_http(waiting, jangar_api::not_ready_router(), header_timeout, async move {
                    let _ = until_connected.await;
                }));
            let storage = tokio::select! {
                storage = open_postgres(url.clone(), schema.clone()) => storage,
                () = &mut shutdown => return Ok(()),
            };
            let _ = connected.send(());
            // A client lingering on the not-ready server must not hold this one up.
            let _ = tokio::time::timeout(Duration::from_secs(5), not_ready).await;
            (Arc::new(storage), config.query_cache_entries)
        }
    };
    // The users this deployment signs in carry its tokens; their key is kept with the data.
    let site_url = config.site_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let issuer = Issuer::new(&site_url, config.token_lifetime, config.jwt_private_key.clone(), &storage);
    let auth = Auth::new(keys, providers, issuer, loopback, config.limits.calls_per_second);
    auth.watch();
    if auth.is_open() {
        tracing::warn!(
            "no admin key or identity provider is configured: open development mode, \
             anyone who can reach this port may call anything"
        );
    }
    // Storage calls block: off the async runtime (PostgreSQL's client insists on it).
    let started = tokio::task::spawn_blocking(move || Database::start(schema, storage, cache_entries));
    let (db, committer) = started.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    // After the storage opened: the database exists, and this process holds the directory's lock.
    let backups = match config.backup.clone() {
        Some(schedule) => Some(BackupScheduler::start(&config.data_dir, schedule).map_err(|e| e.to_string())?),
        None => None,
    };
    // The URL clients use on this machine; behind a proxy it is the proxy's, which only the
    // CLI's `function-spec` printout shows.
    let operations = Arc::new(jangar_domain::system::Operations::default());
    let bridge_settings = config.temporal.as_ref().map(TemporalConfig::settings);
    let registry =
        Arc::new(jangar_domain::registry_serving(format!("http://{address}"), operations.clone(), bridge_settings));
    let scratch = Arc::new(Scratch::new().map_err(|e| format!("cannot create a scratch directory: {e}"))?);
    let (events, event_queue) = tokio::sync::mpsc::channel(4096);
    let (stop_sockets, sockets_stopped) = tokio::sync::watch::channel(false);
    let sync_stats = Arc::new(SyncStats::default());
    let executions = Arc::new(ExecutionLog::new(FUNCTION_LOG_ENTRIES, config.function_log_wait));
    tokio::spawn(
        Manager::new(
            db.clone(),
            auth.clone(),
            registry.clone(),
            event_queue,
            sync_stats.clone(),
            executions.clone(),
            config.limits.subscriptions_per_connection,
        )
        .await
        .run(),
    );
    let last_backup = backups.as_ref().map(|scheduler| {
        let stats = scheduler.stats();
        let last: LastBackup = Arc::new(move || {
            // Milliseconds since the epoch; 0 until the first backup succeeds.
            let ms = stats.last_success_ms.load(std::sync::atomic::Ordering::Relaxed);
            (ms > 0).then(|| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        });
        last
    });
    let bridge_stats = config.temporal.as_ref().map(|_| Arc::new(BridgeStats::default()));
    let metrics = Arc::new(Metrics::new(
        db.clone(),
        sync_stats.clone(),
        auth.clone(),
        &executions,
        last_backup,
        bridge_stats.clone(),
    ));
    let bridge = config
        .temporal
        .clone()
        .zip(bridge_stats)
        .map(|(temporal, stats)| Bridge::start(db.clone(), temporal, stats, stop_sockets.subscribe()));
    let sync = Arc::new(SyncHub::new(
        events,
        sync_stats,
        sockets_stopped,
        config.limits.sync_queue_messages,
        config.limits.pending_mutations,
        config.limits.socket_message_bytes,
    ));
    let limits = BodyLimits {
        max_body_bytes: config.limits.request_bytes,
        body_timeout: Duration::from_secs(config.limits.body_timeout_seconds),
    };
    let metrics_server = metrics_listener.map(|listener| {
        if let Ok(at) = listener.local_addr() {
            tracing::info!(address = %at, "serving /metrics without credentials");
        }
        let mut stopping = stop_sockets.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        };
        tokio::spawn(serve_http(listener, jangar_api::metrics_router(metrics.clone()), header_timeout, stopped))
    });
    let state = AppState {
        db,
        registry,
        sync,
        auth,
        limits,
        operations,
        scratch,
        backups: backups.as_ref().map(BackupScheduler::stats),
        executions,
        metrics,
    };
    let storage = if config.database_url.is_some() { "postgres" } else { "sqlite" };
    tracing::info!(%address, storage, data_dir = %config.data_dir.display(), "Jangar is serving");
    on_ready(address);
    let shutdown = async move {
        shutdown.await;
        // Upgraded WebSocket connections are not tracked by the HTTP server: close them too, and
        // the metrics listener with them.
        let _ = stop_sockets.send(true);
    };
    serve_http(listener, router(state, &config.cors_origins), header_timeout, shutdown).await;
    if let Some(metrics_server) = metrics_server {
        // Its requests are quick; a scraper lingering on a connection must not hold the exit up.
        let _ = tokio::time::timeout(Duration::from_secs(5), metrics_server).await;
    }
    // A backup in progress is interrupted (its partial file removed), not waited for.
    drop(backups);
    if let Some(bridge) = bridge {
        bridge.join().await;
    }
    // Every handle to the database is gone with the router: the committer
    // drains its queue and stops.
    let joined = tokio::task::spawn_blocking(move || committer.join());
    if tokio::time::timeout(Duration::from_secs(30), joined).await.is_err() {
        return Err("the committer did not stop within 30 s".into());
    }
    tracing::info!("Jangar stopped");
    Ok(())
}
