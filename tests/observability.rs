//! What operators watch a server with: the function log (`/api/stream_function_logs`, what
//! `npx convex logs` polls), the structured log line per call, `/metrics` and its separate
//! listener, `/livez` and `/readyz`. The metrics' values are checked with a real OpenMetrics
//! parser in `tests/python/test_metrics.py`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jangar::server::{ServerConfig, serve};
use jangar_api::client::{HttpClient, HttpResponse};
use jangar_test_support::tokens::{self, SigningKey};
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "observability-admin-key";
const ADMIN: &str = "Convex observability-admin-key";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn get(url: &str, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization.map(|value| ("authorization", value)).into_iter().collect();
    HttpClient::default().send(hyper::Method::GET, url, &headers, String::new()).await.unwrap()
}

async fn function_log(server: &TestServer, cursor: f64) -> Value {
    let response = get(&format!("{}/api/stream_function_logs?cursor={cursor}", server.url), Some(ADMIN)).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    response.json().unwrap()
}

fn identifiers(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|entry| entry["identifier"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn every_kind_of_call_reaches_the_function_log_which_pages_and_long_polls() {
    let dir = temp_dir();
    let key = SigningKey::rsa("rsa-1");
    std::fs::write(dir.path().join("jwks.json"), tokens::jwks(&[&key]).to_string()).unwrap();
    let provider = tokens::provider("RS256", json!("jwks.json"));
    let wait = Duration::from_secs(2);
    let server = TestServer::start_with_auth(&dir, ADMIN_KEY, vec![provider], |config| {
        config.function_log_wait = wait;
    })
    .await;

    // Over HTTP: a mutation, a query twice (the second from the cache), a failing call, a batch
    // of two queries, and a user's query.
    let session = server.mutation("chatSessions:create", json!({"userId": "u1", "title": "logged"})).await;
    for _ in 0..2 {
        server.query("chatSessions:get", json!({"sessionId": session})).await;
    }
    server.app_error("/api/mutation", "chatSessions:create", json!({"userId": "u1"})).await;
    let batch = json!({"queries": [
        {"path": "chatSessions:get", "args": {"sessionId": session}},
        {"path": "chatSessions:list", "args": {"userId": "u1"}},
    ]});
    assert_eq!(server.post("/api/query_batch", batch).await.status, 200);
    let user = format!("Bearer {}", key.token("alice", 60));
    let listed = server.call_as(Some(&user), "/api/query", "chatSessions:list", json!({"userId": "alice"})).await;
    assert_eq!(listed.status, 200);

    let first = function_log(&server, 0.0).await;
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(
        identifiers(entries),
        [
            "chatSessions.js:create",
            "chatSessions.js:get",
            "chatSessions.js:get",
            "chatSessions.js:create",
            "chatSessions.js:get",
            "chatSessions.js:list",
            "chatSessions.js:list",
        ]
    );
    let udf_types: Vec<_> = entries.iter().map(|e| e["udfType"].as_str().unwrap()).collect();
    assert_eq!(udf_types, ["Mutation", "Query", "Query", "Mutation", "Query", "Query", "Query"]);
    let cached: Vec<_> = entries.iter().map(|e| e["cachedResult"].as_bool().unwrap()).collect();
    assert_eq!(cached, [false, false, true, false, false, false, false]);
    let callers: Vec<_> = entries.iter().map(|e| e["caller"].as_str().unwrap()).collect();
    assert_eq!(callers, ["admin", "admin", "admin", "admin", "admin", "admin", "user"]);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["kind"], "Completion");
        assert_eq!(entry["logLines"], json!([]), "the CLI needs the array");
        assert!(entry["executionTime"].as_f64().unwrap() >= 0.0);
        for id in ["requestId", "executionId"] {
            let id = entry[id].as_str().unwrap();
            assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_eq!(entry.get("error").is_some(), i == 3, "{entry}");
    }
    assert_eq!(entries[3]["errorCode"], "InvalidArgument");
    assert!(entries[3]["error"].as_str().unwrap().starts_with("InvalidArgument: ArgumentValidationError"));
    // The batch is one request of two executions; other calls are requests of their own.
    assert_eq!(entries[4]["requestId"], entries[5]["requestId"]);
    assert_ne!(entries[4]["executionId"], entries[5]["executionId"]);
    assert_ne!(entries[0]["requestId"], entries[1]["requestId"]);
    let times: Vec<f64> = entries.iter().map(|e| e["timestamp"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - times[0]).abs() < 60.0, "timestamps are seconds since the epoch");

    // Nothing new: the poll waits, then answers no entries and the same cursor.
    let cursor = first["newCursor"].as_f64().unwrap();
    let started = Instant::now();
    let idle = function_log(&server, cursor).await;
    assert!(started.elapsed() >= wait - Duration::from_millis(100), "answered after {:?}", started.elapsed());
    assert_eq!(idle, json!({"entries": [], "newCursor": cursor}));

    // A waiting poll wakes as soon as a call finishes.
    let waiting = tokio::spawn({
        let url = format!("{}/api/stream_function_logs?cursor={cursor}", server.url);
        async move {
            let started = Instant::now();
            let body: Value = get(&url, Some(ADMIN)).await.json().unwrap();
            (body, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.mutation("chatSessions:create", json!({"userId": "u1", "title": "while polling"})).await;
    let (woken, took) = waiting.await.unwrap();
    assert!(took < wait, "the poll waited {took:?} instead of waking");
    assert_eq!(identifiers(woken["entries"].as_array().unwrap()), ["chatSessions.js:create"]);
    let cursor = woken["newCursor"].as_f64().unwrap();

    // Over the socket: a mutation, and a subscription's first run and its re-run after a write.
    let mut client = convex::ConvexClient::new(&server.url).await.unwrap();
    client.set_admin_auth(ADMIN_KEY.to_owned(), None).await;
    let Value::String(session) = session else { panic!("{session}") };
    let args = || BTreeMap::from([("sessionId".to_owned(), convex::Value::from(session.clone()))]);
    let mut subscription = client.subscribe("chatMessages:listBySession", args()).await.unwrap();
    subscription.next().await.unwrap();
    let mut message = args();
    message.insert("role".into(), "user".into());
    message.insert("content".into(), "hello".into());
    client.mutation("chatMessages:append", message).await.unwrap();
    loop {
        let update = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
        if matches!(update, convex::FunctionResult::Value(convex::Value::Array(items)) if !items.is_empty()) {
            break;
        }
    }
    drop(subscription);
    // A system mutation, as `npx convex env set` makes one.
    let env = json!({"changes": [{"name": "LOGGED", "value": "yes"}]});
    assert_eq!(server.post("/api/update_environment_variables", env).await.status, 200);

    let later = function_log(&server, cursor).await;
    let entries = later["entries"].as_array().unwrap();
    let runs = |identifier: &str| entries.iter().filter(|e| e["identifier"] == identifier).count();
    assert_eq!(runs("chatMessages.js:append"), 1, "{entries:?}");
    assert!(runs("chatMessages.js:listBySession") >= 2, "the first run and the re-run: {entries:?}");
    assert!(entries.iter().all(|e| e["caller"] == "admin"), "{entries:?}");
    let system = entries.last().unwrap();
    assert_eq!(system["identifier"], "_system/cli/updateEnvironmentVariables.js:default");
    assert_eq!(system["udfType"], "Mutation");

    // Admins only: 401 without credentials (the CLI retries those), 403 for a user (fatal to it).
    let url = format!("{}/api/stream_function_logs?cursor=0", server.url);
    let anonymous = get(&url, None).await;
    assert_eq!((anonymous.status.as_u16(), anonymous.json().unwrap()["code"].as_str()), (401, Some("Unauthenticated")));
    let refused = get(&url, Some(&user)).await;
    assert_eq!((refused.status.as_u16(), refused.json().unwrap()["code"].as_str()), (403, Some("Forbidden")));
    let dashboard =
        get(&format!("{}/api/app_metrics/stream_function_logs?cursor={cursor}", server.url), Some(ADMIN)).await;
    assert_eq!(dashboard.json().unwrap()["entries"], later["entries"], "the dashboard's path answers the same");
    let bad = get(&format!("{}/api/stream_function_logs?cursor=yesterday", server.url), Some(ADMIN)).await;
    assert_eq!((bad.status.as_u16(), bad.json().unwrap()["code"].as_str()), (400, Some("InvalidArgument")));
    server.stop().await;
}

#[tokio::test]
async fn metrics_need_an_admin_key_on_the_api_port_and_none_on_their_own() {
    let dir = temp_dir();
    let metrics_port = free_port();
    let server = TestServer::start_custom(&dir, |config| {
        config.admin_keys = vec![ADMIN_KEY.to_owned()];
        config.metrics_listen = Some(([127, 0, 0, 1], metrics_port).into());
    })
    .await;
    server.mutation("chatSessions:create", json!({"userId": "u1", "title": "counted"})).await;
    let counted = r#"jangar_function_calls_total{function="chatSessions:create",kind="mutation",outcome="success"} 1"#;

    let anonymous = get(&format!("{}/metrics", server.url), None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json().unwrap()["code"], "Unauthenticated");
    let wrong_key = get(&format!("{}/metrics", server.url), Some("Convex not-the-key")).await;
    assert_eq!(wrong_key.status, 401);
    let metrics_port_url = format!("http://127.0.0.1:{metrics_port}");
    for (url, authorization) in [(&server.url, Some(ADMIN)), (&metrics_port_url, None)] {
        let scraped = get(&format!("{url}/metrics"), authorization).await;
        assert_eq!(scraped.status, 200, "{url}");
        assert_eq!(scraped.headers["content-type"], OPENMETRICS);
        let text = String::from_utf8(scraped.body.to_vec()).unwrap();
        assert!(text.lines().any(|line| line == counted), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
    let elsewhere = get(&format!("{metrics_port_url}/api/query"), None).await;
    assert_eq!(elsewhere.status, 404, "the metrics listener serves nothing else");

    for route in ["/livez", "/readyz", "/ready"] {
        let answer = get(&format!("{}{route}", server.url), None).await;
        assert_eq!(answer.status, 200, "{route}");
        let body = answer.json().unwrap();
        let field = if route == "/livez" { "live" } else { "ready" };
        assert_eq!(body[field], true, "{route}: {body}");
    }
    server.stop().await;
    let after = HttpClient::default().get(&format!("{metrics_port_url}/metrics")).await;
    assert!(after.is_err(), "the metrics listener stops with the server");

    // In open development mode anyone may call anything, metrics too.
    let dir = temp_dir();
    let open = TestServer::start(&dir).await;
    assert_eq!(get(&format!("{}/metrics", open.url), None).await.status, 200);
    open.stop().await;
}

#[tokio::test]
async fn livez_answers_while_the_database_is_not_reachable_and_readyz_does_not() {
    let dir = temp_dir();
    let port = free_port();
    let mut config = ServerConfig::new(([127, 0, 0, 1], port).into(), dir.path().to_path_buf());
    // A port nobody listens on: PostgreSQL "not up yet".
    config.database_url = Some(format!("postgresql://jangar@127.0.0.1:{}/jangar", free_port()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(config, async move { drop(stopped.await) }, |_| {}));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        match HttpClient::default().send(hyper::Method::GET, &format!("{url}/livez"), &[], String::new()).await {
            Ok(answer) => break answer,
            Err(e) => assert!(Instant::now() < deadline, "nothing listens: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(live.status, 200, "Kubernetes must not restart a pod that waits for its database");
    for route in ["/readyz", "/ready", "/metrics"] {
        let answer = get(&format!("{url}{route}"), None).await;
        assert_eq!(
            (answer.status.as_u16(), answer.json().unwrap()["code"].as_str()),
            (503, Some("NotReady")),
            "{route}"
        );
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn serve_log_format_json_writes_one_line_per_call() {
    let dir = temp_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("stderr");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_jangar"))
        .args(["serve", "--log-format", "json", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let call = |path: &'static str, args: Value| {
        let body = json!({"path": path, "args": args, "format": "json"}).to_string();
        let route = if path.ends_with(":create") { "/api/mutation" } else { "/api/query" };
        let url = format!("{url}{route}");
        async move { HttpClient::default().send(hyper::Method::POST, &url, &[], body).await }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while call("chatSessions:create", json!({"userId": "u1", "title": "logged"})).await.is_err() {
        assert!(Instant::now() < deadline && server.try_wait().unwrap().is_none(), "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = call("chatSessions:get", json!({"sessionId": "nope"})).await.unwrap();
    assert_eq!(failed.json().unwrap()["errorData"]["code"], "InvalidArgument");
    let terminated = std::process::Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    assert!(server.wait().unwrap().success());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let calls: Vec<&Value> = lines.iter().filter(|line| line["target"] == "jangar::calls").collect();
    assert_eq!(calls.len(), 2, "{text}");
    for (line, path, kind, outcome) in
        [(calls[0], "chatSessions:create", "mutation", "success"), (calls[1], "chatSessions:get", "query", "error")]
    {
        assert_eq!((line["level"].as_str(), line["message"].as_str()), (Some("INFO"), Some("function call")));
        assert_eq!((line["path"].as_str(), line["kind"].as_str()), (Some(path), Some(kind)), "{line}");
        assert_eq!((line["outcome"].as_str(), line["caller"].as_str()), (Some(outcome), Some("anonymous")), "{line}");
        assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
        let id = line["request_id"].as_str().unwrap();
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
    }
    assert!(calls[0].get("code").is_none(), "a success has no error code: {}", calls[0]);
    assert_eq!(calls[1]["code"], "InvalidArgument");
    assert!(calls[1]["error"].as_str().unwrap().contains("ArgumentValidationError"), "{}", calls[1]);
}
