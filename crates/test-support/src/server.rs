//! The test server and the integrity check of what it stored.

use std::path::PathBuf;

use jangar::server::{ServerConfig, serve};
use jangar_api::client::{HttpClient, HttpResponse};
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{TempDir, postgres, tokens};

/// Where a test server keeps its data, for the integrity check at the end of each test.
#[derive(Clone, Debug)]
pub enum Store {
    DataDir(PathBuf),
    Postgres(String),
}

impl Store {
    /// The store a server with this configuration uses.
    pub fn of(config: &ServerConfig) -> Store {
        match &config.database_url {
            Some(url) => Store::Postgres(url.clone()),
            None => Store::DataDir(config.data_dir.clone()),
        }
    }

    /// The integrity check of everything stored (off the caller's thread: PostgreSQL's client
    /// blocks on a runtime of its own).
    pub fn check(&self) -> jangar_engine::integrity::Report {
        let store = self.clone();
        let schema = jangar_domain::schema::schema();
        std::thread::spawn(move || match store {
            Store::DataDir(dir) => SqliteStorage::check_data_dir(&dir, &schema),
            Store::Postgres(url) => PostgresStorage::check_database(&url, &schema),
        })
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the integrity check of {self:?} could not run: {e}"))
    }

    /// Fails the test unless every index matches its documents.
    pub fn assert_consistent(&self) {
        let report = self.check();
        assert!(
            report.is_clean(),
            "the integrity check of {self:?} found {} problems: {:#?}",
            report.problem_count,
            report.problems
        );
    }
}

/// A server of the suite's backend on a free loopback port. When a test ends
/// (the server stopped or dropped) without panicking, the integrity check runs
/// on what it stored and fails the test if any index does not match its documents.
pub struct TestServer {
    pub url: String,
    pub client: HttpClient,
    /// Sent by `post` and the helpers built on it: the first admin key, if the server has one.
    pub admin: Option<String>,
    /// Checked when the server goes; `None` for a test that leaves its store broken on purpose.
    pub store: Option<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(store) = self.store.take()
            && !std::thread::panicking()
        {
            store.assert_consistent();
        }
    }
}

impl TestServer {
    pub async fn start(dir: &TempDir) -> TestServer {
        TestServer::start_with(dir, 256).await
    }

    /// A server whose WebSocket clients may fall at most `sync_queue_messages` messages behind.
    pub async fn start_with(dir: &TempDir, sync_queue_messages: usize) -> TestServer {
        TestServer::start_custom(dir, |config| config.limits.sync_queue_messages = sync_queue_messages).await
    }

    /// A server with its configuration adjusted by `adjust`.
    pub async fn start_custom(dir: &TempDir, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, address) = oneshot::channel();
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        config.durability = Durability::Normal;
        config.query_cache_entries = 1000;
        if postgres::selected() {
            let server = postgres::TestPostgres::shared()
                .expect("JANGAR_TEST_BACKEND=postgres needs PostgreSQL's server binaries (Debian: postgresql)");
            config.database_url = Some(server.database_for(dir.path()));
        }
        adjust(&mut config);
        let store = Store::of(&config);
        let admin = config.admin_keys.first().map(|key| format!("Convex {key}"));
        let task = tokio::spawn(serve(
            config,
            async move {
                let _ = stopped.await;
            },
            move |address| {
                let _ = ready.send(address);
            },
        ));
        let address = address.await.expect("server started");
        TestServer {
            url: format!("http://{address}"),
            client: HttpClient::default(),
            admin,
            store: Some(store),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A server with an admin key and these identity providers (an auth config written into `dir`).
    pub async fn start_with_auth(
        dir: &TempDir,
        admin_key: &str,
        providers: Vec<Value>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let auth_config = tokens::write_config(dir.path(), providers);
        TestServer::start_custom(dir, |config| {
            config.admin_keys = vec![admin_key.to_owned()];
            config.auth_config = Some(auth_config);
            adjust(config);
        })
        .await
    }

    /// Stops the server gracefully and waits until it has (then drop checks what it stored).
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn post(&self, route: &str, body: Value) -> HttpResponse {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(admin) = &self.admin {
            headers.push(("authorization", admin.as_str()));
        }
        let url = format!("{}{route}", self.url);
        self.client.send(hyper::Method::POST, &url, &headers, body.to_string()).await.unwrap()
    }

    /// Calls a function with an `Authorization` header (if any); returns the response as it came.
    pub async fn call_as(&self, authorization: Option<&str>, route: &str, path: &str, args: Value) -> HttpResponse {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        let body = json!({"path": path, "args": args, "format": "json"}).to_string();
        self.client.send(hyper::Method::POST, &format!("{}{route}", self.url), &headers, body).await.unwrap()
    }

    /// Calls a function and returns the UdfResponse body (asserting HTTP 200).
    pub async fn call(&self, route: &str, path: &str, args: Value) -> Value {
        let response = self.post(route, json!({"path": path, "args": args, "format": "json"})).await;
        assert_eq!(response.status, 200, "{path}: {}", String::from_utf8_lossy(&response.body));
        response.json().unwrap()
    }

    /// Calls a function that must succeed and returns its value.
    pub async fn ok(&self, route: &str, path: &str, args: Value) -> Value {
        let body = self.call(route, path, args.clone()).await;
        assert_eq!(body["status"], "success", "{path} {args}: {body}");
        body["value"].clone()
    }

    pub async fn mutation(&self, path: &str, args: Value) -> Value {
        self.ok("/api/mutation", path, args).await
    }

    pub async fn query(&self, path: &str, args: Value) -> Value {
        self.ok("/api/query", path, args).await
    }

    /// Calls a function that must fail with an application error; returns its errorData.
    pub async fn app_error(&self, route: &str, path: &str, args: Value) -> Value {
        let body = self.call(route, path, args.clone()).await;
        assert_eq!(body["status"], "error", "{path} {args} should fail: {body}");
        body["errorData"].clone()
    }
}
