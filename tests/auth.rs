//! Admin keys and safe defaults: who may call, over HTTP and the socket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jangar_api::client::{HttpClient, HttpResponse};
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn jangar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jangar"));
    for name in jangar_api::auth::keys::KEY_VARIABLES {
        command.env_remove(name);
    }
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> Server {
        let port = free_port();
        let mut command = jangar();
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(data).args(extra);
        command.envs(env.iter().copied()).stderr(Stdio::null());
        let child = command.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, url }
    }
}

impl Server {
    /// A server on `data` with no credentials (open development mode), its log in `data/server.log`.
    fn start_logged(data: &std::path::Path) -> Server {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::File::create(data.join("server.log")).unwrap();
        let port = free_port();
        let mut command = jangar();
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(data);
        let child = command.stderr(log).env("NO_COLOR", "1").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn list(url: &str, authorization: Option<&str>) -> HttpResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let body = json!({"path": "chatSessions:list", "args": {"userId": "u"}}).to_string();
    HttpClient::default().send(hyper::Method::POST, &format!("{url}/api/query"), &headers, body).await.unwrap()
}

#[tokio::test]
async fn a_generated_key_opens_the_deployment_until_it_is_revoked() {
    let dir = temp_dir();
    let generated = jangar().args(["keys", "generate", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(generated.status.success());
    let key = String::from_utf8(generated.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("jangar_admin_"));
    let server = Server::start(dir.path(), &[], &[]);

    let anonymous = list(&server.url, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json().unwrap()["code"], "Unauthenticated");
    assert_eq!(list(&server.url, Some("Convex not-the-key")).await.status, 401);
    assert_eq!(list(&server.url, Some("Bearer eyJhbGciOiJub25lIn0.e30.")).await.status, 401);
    let admin = list(&server.url, Some(&format!("Convex {key}"))).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json().unwrap()["status"], "success");

    // `jangar run` uses the key from the environment.
    let run = |key: Option<&str>| {
        let mut command = jangar();
        command.args(["run", "chatSessions:create", r#"{"userId":"u","title":"t"}"#]).env("CONVEX_URL", &server.url);
        if let Some(key) = key {
            command.env("CONVEX_SELF_HOSTED_ADMIN_KEY", key);
        }
        command.output().unwrap()
    };
    assert!(run(Some(&key)).status.success());
    let refused = run(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));

    let revoked = jangar().args(["keys", "revoke", &key, "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(revoked.status.success());
    refused_within_a_second(&server.url, &key).await;
}

/// A key must be refused within one second (the server reads its key file a few times a second).
async fn refused_within_a_second(url: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = list(url, Some(&format!("Convex {key}"))).await.status;
        if status == 401 {
            return;
        }
        assert!(Instant::now() < deadline, "a revoked key was still accepted after a second (HTTP {status})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn generate_key(dir: &std::path::Path) -> String {
    let generated = jangar().args(["keys", "generate", "--data-dir"]).arg(dir).output().unwrap();
    assert!(generated.status.success());
    String::from_utf8(generated.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_key_revoked_right_after_it_was_generated_stops_working_within_a_second_every_time() {
    let dir = temp_dir();
    let keeper = generate_key(dir.path());
    let server = Server::start(dir.path(), &[], &[]);
    for _ in 0..16 {
        // Generated and revoked within one tick of the file system's clock, often.
        let key = generate_key(dir.path());
        let revoked = jangar().args(["keys", "revoke", &key, "--data-dir"]).arg(dir.path()).output().unwrap();
        assert!(revoked.status.success());
        refused_within_a_second(&server.url, &key).await;
    }
    assert_eq!(list(&server.url, Some(&format!("Convex {keeper}"))).await.status, 200);
}

/// What every client sends first.
static CONNECT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({"type": "Connect", "sessionId": "c0ffee00-0000-4000-8000-000000000001", "connectionCount": 0,
        "lastCloseReason": "InitialConnect", "clientTs": 0})
});

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message as JSON (Pings skipped), or Null once the server closed the socket.
async fn next_message(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "Ping" {
                    return value;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
            _ => {}
        }
    }
}

/// A socket that subscribed to a session list, authenticated with `authenticate` (or not at all).
async fn subscribed_socket(url: &str, authenticate: Option<Value>) -> Socket {
    let url = format!("{}/api/sync", url.replacen("http", "ws", 1));
    let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let mut messages = vec![CONNECT.clone()];
    messages.extend(authenticate);
    messages.push(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
        {"type": "Add", "queryId": 0, "udfPath": "chatSessions:list", "args": [{"userId": "u"}]}]}));
    for message in messages {
        socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }
    loop {
        let transition = next_message(&mut socket).await;
        assert_eq!(transition["type"], "Transition", "{transition}");
        if transition["endVersion"]["querySet"] == 1 {
            assert_eq!(transition["modifications"][0]["type"], "QueryUpdated", "{transition}");
            return socket;
        }
    }
}

/// The socket gets `first` (a message type, or Null for a plain close), then closes, within a second.
async fn closed_within_a_second(socket: &mut Socket, first: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, next_message(socket)).await.expect("closed within a second");
        match message["type"].as_str() {
            Some("Transition") => continue,
            Some(kind) => {
                assert_eq!(kind, first, "{message}");
                assert_eq!(next_message(socket).await, Value::Null, "then the socket closes");
                return;
            }
            None => {
                assert_eq!(first, "close", "the socket closed without {first}");
                return;
            }
        }
    }
}

#[tokio::test]
async fn an_open_socket_loses_a_revoked_key_within_a_second() {
    let dir = temp_dir();
    let key = generate_key(dir.path());
    let server = Server::start(dir.path(), &[], &[]);
    let authenticate = json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": key});
    let mut socket = subscribed_socket(&server.url, Some(authenticate)).await;
    let revoked = jangar().args(["keys", "revoke", &key, "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(revoked.status.success());
    closed_within_a_second(&mut socket, "AuthError").await;
}

#[tokio::test]
async fn the_first_key_or_provider_ends_open_development_mode_at_once() {
    for configure in ["a key", "a provider"] {
        let dir = temp_dir();
        let server = Server::start_logged(dir.path());
        assert_eq!(list(&server.url, None).await.status, 200, "open development mode");
        let mut socket = subscribed_socket(&server.url, None).await;
        match configure {
            "a key" => drop(generate_key(dir.path())),
            _ => {
                let provider = json!({"type": "customJwt", "issuer": "https://idp.example", "algorithm": "RS256",
                    "jwks": {"keys": []}});
                std::fs::write(dir.path().join("auth.json"), json!({"providers": [provider]}).to_string()).unwrap();
            }
        }
        closed_within_a_second(&mut socket, "close").await;
        assert_eq!(list(&server.url, None).await.status, 401, "after {configure}, calls need credentials");
        // The logger writes from a background thread, so the line may land a moment after the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
            if log.contains("open development mode has ended") {
                break;
            }
            assert!(Instant::now() < deadline, "{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn the_counters_and_the_timestamp_need_credentials_when_configured() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[("JANGAR_ADMIN_KEY", "counter-key")], &[]);
    let client = HttpClient::default();
    let stats = format!("{}/jangar/stats", server.url);
    let query_ts = format!("{}/api/query_ts", server.url);
    let admin = [("authorization", "Convex counter-key")];
    assert_eq!(client.send(hyper::Method::GET, &stats, &[], "").await.unwrap().status, 401);
    assert_eq!(client.send(hyper::Method::POST, &query_ts, &[], "").await.unwrap().status, 401);
    assert_eq!(client.send(hyper::Method::GET, &stats, &admin, "").await.unwrap().status, 200);
    assert_eq!(client.send(hyper::Method::POST, &query_ts, &admin, "").await.unwrap().status, 200);
}

#[tokio::test]
async fn environment_keys_cors_and_the_loopback_rule() {
    let dir = temp_dir();
    let server =
        Server::start(dir.path(), &[("JANGAR_ADMIN_KEY", "env-key")], &["--cors-origin", "https://ui.example"]);
    assert_eq!(list(&server.url, Some("Convex env-key")).await.status, 200);
    assert_eq!(list(&server.url, None).await.status, 401);
    let preflight = |origin: &'static str| {
        let url = format!("{}/api/query", server.url);
        async move {
            HttpClient::default()
                .send(
                    hyper::Method::OPTIONS,
                    &url,
                    &[("origin", origin), ("access-control-request-method", "POST")],
                    "",
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(preflight("https://ui.example").await.headers["access-control-allow-origin"], "https://ui.example");
    assert!(preflight("https://evil.example").await.headers.get("access-control-allow-origin").is_none());

    // Without any key, only a loopback listener is allowed.
    let empty = temp_dir();
    let refused = jangar().args(["serve", "--listen", "0.0.0.0:0", "--data-dir"]).arg(empty.path()).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing"));
}

#[tokio::test]
async fn the_socket_checks_admin_keys_and_refuses_anonymous_calls_when_closed() {
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |c| c.admin_keys = vec!["socket-key".into()]).await;
    let url = format!("{}/api/sync", server.url.replacen("http", "ws", 1));
    let open = || async {
        let mut socket = tokio_tungstenite::connect_async(url.clone()).await.unwrap().0;
        socket.send(Message::Text(CONNECT.to_string().into())).await.unwrap();
        socket
    };
    async fn next(
        socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Close(_))) | None => return Value::Null,
                _ => {}
            }
        }
    }
    let send = |v: Value| Message::Text(v.to_string().into());

    // Anonymous: queries fail and mutations are refused, with the Unauthenticated code.
    let mut anonymous = open().await;
    anonymous
        .send(send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "chatSessions:list", "args": [{"userId": "u"}]}]})))
        .await
        .unwrap();
    let failed = next(&mut anonymous).await;
    assert_eq!(failed["modifications"][0]["type"], "QueryFailed", "{failed}");
    assert_eq!(failed["modifications"][0]["errorData"]["code"], "Unauthenticated");
    anonymous
        .send(send(json!({"type": "Mutation", "requestId": 0, "udfPath": "chatSessions:create", "args": [{"userId": "u", "title": "t"}]})))
        .await
        .unwrap();
    let refused = next(&mut anonymous).await;
    assert_eq!(
        (refused["success"].as_bool(), refused["errorData"]["code"].as_str()),
        (Some(false), Some("Unauthenticated"))
    );

    // A wrong key: AuthError, then the socket closes.
    // A wrong key, with a subscription right behind it, as the JS client sends them: the AuthError
    // comes first, and nothing runs for the refused identity.
    let mut wrong = open().await;
    wrong
        .send(send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "nope"})))
        .await
        .unwrap();
    wrong
        .send(send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "chatSessions:list", "args": [{"userId": "u"}]}]})))
        .await
        .unwrap();
    let error = next(&mut wrong).await;
    assert_eq!(error["type"], "AuthError");
    assert_eq!(error["baseVersion"], 0);
    assert_eq!(next(&mut wrong).await, Value::Null);

    // The right key: the identity version moves on and calls work.
    let mut admin = open().await;
    admin
        .send(send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "socket-key"})))
        .await
        .unwrap();
    admin
        .send(send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "chatSessions:list", "args": [{"userId": "u"}]}]})))
        .await
        .unwrap();
    let transition = loop {
        let transition = next(&mut admin).await;
        assert_eq!(transition["type"], "Transition", "{transition}");
        if transition["endVersion"]["querySet"] == 1 {
            break transition;
        }
    };
    assert_eq!(transition["endVersion"]["identity"], 1);
    assert_eq!(transition["modifications"][0]["type"], "QueryUpdated", "{transition}");
    server.stop().await;
}
