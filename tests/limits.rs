//! Configurable limits: request size, calls per identity per second, and what
//! one WebSocket connection may hold.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jangar_test_support::tokens::{self, SigningKey};
use jangar_test_support::{TempDir, TestServer, temp_dir};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ADMIN_KEY: &str = "limits-admin-key";
/// What every client sends first.
const CONNECT: &str = r#"{"type":"Connect","sessionId":"c0ffee00-0000-4000-8000-000000000002","connectionCount":0,"lastCloseReason":"InitialConnect","clientTs":0}"#;

/// A server that accepts the test issuer's tokens, with `rate` calls a second per user; and a
/// token of user `alice` for it.
async fn rated_server(dir: &TempDir, rate: u32) -> (TestServer, String) {
    let key = SigningKey::rsa("limits");
    let provider = tokens::provider("RS256", tokens::jwks(&[&key]));
    let server =
        TestServer::start_with_auth(dir, ADMIN_KEY, vec![provider], |c| c.limits.calls_per_second = rate).await;
    (server, key.token("alice", 600))
}

#[tokio::test]
async fn a_users_calls_beyond_the_rate_get_429_with_retry_after() {
    let dir = temp_dir();
    let (server, token) = rated_server(&dir, 5).await;
    let bearer = format!("Bearer {token}");
    let list = || server.call_as(Some(&bearer), "/api/query", "chatSessions:list", json!({"userId": "alice"}));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let response = list().await;
        if response.status == 429 {
            assert_eq!(response.json().unwrap()["code"], "RateLimited");
            retry_after = Some(response.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
        }
        statuses.push(response.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s >= 1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(list().await.status, 200, "the bucket refills");
    server.stop().await;
}

#[tokio::test]
async fn admin_keys_and_open_development_mode_are_not_rate_limited() {
    // The workers of a deployment share one admin key: a limit on it would throttle them all.
    let dir = temp_dir();
    let (server, _) = rated_server(&dir, 5).await;
    let admin = format!("Convex {ADMIN_KEY}");
    for _ in 0..20 {
        let response = server.call_as(Some(&admin), "/api/query", "chatSessions:list", json!({"userId": "u"})).await;
        assert_eq!(response.status, 200);
    }
    server.stop().await;
    let dir = temp_dir();
    let open = TestServer::start_custom(&dir, |c| c.limits.calls_per_second = 5).await;
    for _ in 0..20 {
        open.query("chatSessions:list", json!({"userId": "u"})).await;
    }
    open.stop().await;
}

#[tokio::test]
async fn the_request_size_limit_is_configurable() {
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |c| c.limits.request_bytes = 2_000).await;
    let small = server
        .post("/api/mutation", json!({"path": "chatSessions:create", "args": {"userId": "u", "title": "t"}}))
        .await;
    assert_eq!(small.status, 200);
    let large = json!({"path": "chatSessions:create", "args": {"userId": "u", "title": "x".repeat(3_000)}});
    let response = server.post("/api/mutation", large).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json().unwrap()["code"], "PayloadTooLarge");
    server.stop().await;
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message other than a Ping.
async fn next(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "Ping" {
                    return value;
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_subscriptions_and_a_bounded_rate_of_mutations() {
    let dir = temp_dir();
    let key = SigningKey::rsa("limits");
    let provider = tokens::provider("RS256", tokens::jwks(&[&key]));
    let server = TestServer::start_with_auth(&dir, ADMIN_KEY, vec![provider], |c| {
        c.limits.subscriptions_per_connection = 2;
        c.limits.calls_per_second = 3;
    })
    .await;
    let url = format!("{}/api/sync", server.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::Text(CONNECT.into())).await.unwrap();
    let authenticate =
        json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "User", "value": key.token("m", 600)});
    socket.send(Message::Text(authenticate.to_string().into())).await.unwrap();
    let add = |id: u32, path: &str| json!({"type": "Add", "queryId": id, "udfPath": path, "args": [{"userId": "m"}]});
    let message = json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
        "modifications": [add(0, "chatSessions:list"), add(1, "sessions:list"), add(2, "threads:list")]});
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
    let transition = loop {
        let transition = next(&mut socket).await;
        if transition["endVersion"]["querySet"] == 1 {
            break transition;
        }
    };
    let mut outcomes: Vec<(u64, String)> = transition["modifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["queryId"].as_u64().unwrap(), m["type"].as_str().unwrap().to_owned()))
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, [(0, "QueryUpdated".into()), (1, "QueryUpdated".into()), (2, "QueryFailed".into())]);
    let failed = transition["modifications"].as_array().unwrap().iter().find(|m| m["queryId"] == 2).unwrap();
    assert_eq!(failed["errorData"]["code"], "LimitExceeded");

    // Mutations beyond the rate are refused with RateLimited, not run.
    let mut refused = 0;
    let mut responses = 0;
    for request in 0..6u32 {
        let mutation = json!({"type": "Mutation", "requestId": request, "udfPath": "chatSessions:create",
            "args": [{"userId": "m", "title": "t"}]});
        socket.send(Message::Text(mutation.to_string().into())).await.unwrap();
    }
    while responses < 6 {
        let message = next(&mut socket).await;
        if message["type"] == "MutationResponse" {
            responses += 1;
            if message["success"] == false {
                assert_eq!(message["errorData"]["code"], "RateLimited");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 3, "three calls a second");
    let created = server.query("chatSessions:list", json!({"userId": "m"})).await;
    assert_eq!(created.as_array().unwrap().len(), 3, "refused mutations did not run");
    server.stop().await;
}

#[tokio::test]
async fn a_socket_message_over_the_limit_closes_the_socket() {
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |c| c.limits.socket_message_bytes = 4_096).await;
    let url = format!("{}/api/sync", server.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::Text(CONNECT.into())).await.unwrap();
    let mutation = |title: String| {
        json!({"type": "Mutation", "requestId": 0, "udfPath": "chatSessions:create",
            "args": [{"userId": "u", "title": title}]})
    };
    socket.send(Message::Text(mutation("small".into()).to_string().into())).await.unwrap();
    assert_eq!(next(&mut socket).await["type"], "MutationResponse", "a message under the limit is served");
    socket.send(Message::Text(mutation("x".repeat(8_192)).to_string().into())).await.unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            None | Some(Err(_)) => break None,
            Some(Ok(_)) => continue,
        }
    };
    // The server sends 1009 and closes; when the rest of the oversized message is still unread, the
    // kernel may reset the connection before the client reads the close frame.
    assert!(matches!(ended, Some(1009) | None), "the socket ends, as too big: {ended:?}");
    let sessions = server.query("chatSessions:list", json!({"userId": "u"})).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "the oversized mutation did not run");
    server.stop().await;
}

/// Sends `request` on a raw connection and reads what comes back until the server closes it.
/// Returns the reply and how long the server held the connection.
async fn raw_exchange(server: &TestServer, request: &[u8]) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let started = std::time::Instant::now();
    let mut reply = Vec::new();
    // Far longer than the timeouts under test: a server that never lets go fails here.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server held the connection for 20 s; got {:?}", String::from_utf8_lossy(&reply));
    (String::from_utf8_lossy(&reply).into_owned(), started.elapsed())
}

#[tokio::test]
async fn slow_and_oversized_requests_do_not_hold_a_connection() {
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |c| {
        c.limits.header_timeout_seconds = 1;
        c.limits.body_timeout_seconds = 1;
        c.limits.request_bytes = 1_000;
    })
    .await;
    // Headers that never end: the connection is closed.
    let (reply, held) = raw_exchange(&server, b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: app").await;
    assert!(held < Duration::from_secs(10), "held for {held:?}: {reply}");
    // A promised body that never comes: 408.
    let (reply, _) =
        raw_exchange(&server, b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"path\":").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("RequestTimeout"), "{reply}");
    // A body over the limit is refused before it is read: 413 at once, whatever is promised.
    let (reply, _) =
        raw_exchange(&server, b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("PayloadTooLarge"), "{reply}");
    // An idle keep-alive connection is closed after the header timeout.
    let request = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
    let (reply, held) = raw_exchange(&server, request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(held < Duration::from_secs(10), "an idle keep-alive connection stayed open {held:?}");
    server.stop().await;
}
