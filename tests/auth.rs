//! Admin keys and safe defaults: who may call, over HTTP and the socket.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, TestServer};
use futures_util::{SinkExt, StreamExt};
use jangar::client::{HttpClient, HttpResponse};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn jangar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jangar"));
    for name in jangar::auth::keys::KEY_VARIABLES {
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
    let dir = TempDir::new();
    let generated = jangar().args(["keys", "generate", "--data-dir"]).arg(&dir.0).output().unwrap();
    assert!(generated.status.success());
    let key = String::from_utf8(generated.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("jangar_admin_"));
    let server = Server::start(&dir.0, &[], &[]);

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

    let revoked = jangar().args(["keys", "revoke", &key, "--data-dir"]).arg(&dir.0).output().unwrap();
    assert!(revoked.status.success());
    assert_eq!(list(&server.url, Some(&format!("Convex {key}"))).await.status, 401, "revocation needs no restart");
}

#[tokio::test]
async fn environment_keys_cors_and_the_loopback_rule() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("JANGAR_ADMIN_KEY", "env-key")], &["--cors-origin", "https://ui.example"]);
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
    let empty = TempDir::new();
    let refused = jangar().args(["serve", "--listen", "0.0.0.0:0", "--data-dir"]).arg(&empty.0).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing"));
}

#[tokio::test]
async fn the_socket_checks_admin_keys_and_refuses_anonymous_calls_when_closed() {
    let dir = TempDir::new();
    let server = TestServer::start_custom(&dir, |c| c.admin_keys = vec!["socket-key".into()]).await;
    let url = format!("{}/api/sync", server.url.replacen("http", "ws", 1));
    let open = || async { tokio_tungstenite::connect_async(url.clone()).await.unwrap().0 };
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
    let mut wrong = open().await;
    wrong
        .send(send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "nope"})))
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
