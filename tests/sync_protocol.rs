//! The WebSocket sync protocol, frame by frame, and the crates.io `convex` client.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jangar_api::sync::protocol::decode_ts;
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Socket {
    async fn open(server: &TestServer) -> Socket {
        let url = format!("{}/api/1.48.0/sync", server.url.replacen("http", "ws", 1));
        Socket(tokio_tungstenite::connect_async(url).await.expect("websocket upgrade").0)
    }

    async fn send(&mut self, message: Value) {
        self.0.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    /// The next JSON message (Pings skipped), or None when the server closed.
    async fn recv(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.0.next()).await.expect("a message in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] != "Ping" {
                        return Some(value);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next message of type `kind`, skipping Transitions.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.recv().await.expect("the socket stays open");
            match message["type"].as_str() {
                Some(t) if t == kind => return message,
                Some("Transition") => continue,
                _ => panic!("expected {kind}, got {message}"),
            }
        }
    }

    async fn connect(&mut self, session: &str) {
        self.send(json!({"type": "Connect", "sessionId": session, "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0}))
            .await;
    }
}

fn add(query_id: u32, path: &str, args: Value) -> Value {
    json!({"type": "Add", "queryId": query_id, "udfPath": path, "args": [args]})
}

fn ts(version: &Value) -> u64 {
    decode_ts(version["ts"].as_str().unwrap()).unwrap()
}

async fn session(server: &TestServer) -> String {
    server.mutation("chatSessions:create", json!({"userId": "u", "title": "t"})).await.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn transitions_chain_versions_and_carry_only_changed_results() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let (a, b) = (session(&server).await, session(&server).await);
    let mut socket = Socket::open(&server).await;
    socket.connect("s1").await;
    socket
        .send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            add(0, "chatMessages:listBySession", json!({"sessionId": a})),
            add(1, "chatMessages.js:listBySession", json!({"sessionId": b})),
        ]}))
        .await;
    let first = socket.recv().await.unwrap();
    assert_eq!(first["type"], "Transition");
    assert_eq!(first["startVersion"], json!({"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}));
    assert_eq!(
        (first["endVersion"]["querySet"].as_u64(), first["endVersion"]["identity"].as_u64()),
        (Some(1), Some(0))
    );
    let mut ids: Vec<u64> =
        first["modifications"].as_array().unwrap().iter().map(|m| m["queryId"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [0, 1]);
    assert!(
        first["modifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] == "QueryUpdated" && m["value"] == json!([]))
    );

    // A write to session b: only query 1 changes; the Transition starts where the last one ended.
    server.mutation("chatMessages:append", json!({"sessionId": b, "role": "user", "content": "x"})).await;
    let second = socket.recv().await.unwrap();
    assert_eq!(second["startVersion"], first["endVersion"]);
    assert!(ts(&second["endVersion"]) > ts(&first["endVersion"]));
    let modifications = second["modifications"].as_array().unwrap();
    assert_eq!(modifications.len(), 1, "{second}");
    assert_eq!(modifications[0]["queryId"], 1);
    assert_eq!(modifications[0]["value"][0]["content"], "x");

    // Removing a query and changing the identity both move the version on.
    socket.send(json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2, "modifications": [{"type": "Remove", "queryId": 0}]})).await;
    let third = socket.recv().await.unwrap();
    assert_eq!(third["startVersion"], second["endVersion"]);
    assert_eq!(third["endVersion"]["querySet"], 2);
    assert_eq!(third["modifications"], json!([{"type": "QueryRemoved", "queryId": 0}]));
    socket.send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "None"})).await;
    let fourth = socket.recv().await.unwrap();
    assert_eq!(fourth["startVersion"], third["endVersion"]);
    assert_eq!(fourth["endVersion"]["identity"], 1);
    // Results unchanged by the new identity are not sent again.
    assert_eq!(fourth["modifications"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_mutation_answers_then_a_transition_at_or_after_its_commit() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let a = session(&server).await;
    let mut socket = Socket::open(&server).await;
    socket.connect("s2").await;
    socket
        .send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
        add(0, "chatMessages:listBySession", json!({"sessionId": a}))]}))
        .await;
    let initial = socket.recv().await.unwrap();
    socket.send(json!({"type": "Mutation", "requestId": 0, "udfPath": "chatMessages:append", "args": [{"sessionId": a, "role": "user", "content": "m"}]})).await;
    // The commit's own Transition may come before the response; one must come after it.
    let mut version = initial["endVersion"].clone();
    let mut response = None;
    let mut updated_to = None;
    let after_response = loop {
        let message = socket.recv().await.unwrap();
        match message["type"].as_str().unwrap() {
            "MutationResponse" => response = Some(message),
            "Transition" => {
                assert_eq!(message["startVersion"], version, "versions chain");
                version = message["endVersion"].clone();
                if let Some(value) = message["modifications"].get(0) {
                    updated_to = Some(value["value"].clone());
                }
                if response.is_some() {
                    break message;
                }
            }
            other => panic!("unexpected {other}"),
        }
    };
    let response = response.unwrap();
    assert_eq!((response["requestId"].as_u64(), response["success"].as_bool()), (Some(0), Some(true)));
    assert_eq!(response["logLines"], json!([]));
    let committed = decode_ts(response["ts"].as_str().unwrap()).unwrap();
    assert!(ts(&after_response["endVersion"]) >= committed);
    assert_eq!(updated_to.unwrap()[0]["_id"], response["result"]);

    // A failing mutation answers with the error and its data, then a Transition too.
    // (Transitions owed for the first mutation may still be on their way: they are skipped.)
    socket.send(json!({"type": "Mutation", "requestId": 1, "udfPath": "chatMessages:append", "args": [{"sessionId": a, "role": "robot", "content": "m"}]})).await;
    let failed = socket.next_of("MutationResponse").await;
    assert_eq!((failed["success"].as_bool(), failed["ts"].clone()), (Some(false), Value::Null));
    assert_eq!(failed["errorData"]["code"], "InvalidArgument");
    assert!(failed["result"].as_str().unwrap().contains("role"));
    assert_eq!(socket.recv().await.unwrap()["type"], "Transition");

    socket.send(json!({"type": "Action", "requestId": 2, "udfPath": "anything:run", "args": [{}]})).await;
    let action = socket.next_of("ActionResponse").await;
    assert_eq!((action["type"].as_str(), action["success"].as_bool()), (Some("ActionResponse"), Some(false)));
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_get_a_fatal_error_and_the_socket_closes() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    for bad in [
        json!({"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4, "modifications": []}),
        json!({"type": "NoSuchMessage"}),
        json!({"type": "Mutation", "requestId": "not a number"}),
    ] {
        let mut socket = Socket::open(&server).await;
        socket.connect("s3").await;
        socket.send(bad.clone()).await;
        let reply = socket.recv().await.expect("a FatalError before the close");
        assert_eq!(reply["type"], "FatalError", "{bad}");
        assert!(!reply["error"].as_str().unwrap().is_empty());
        assert!(socket.recv().await.is_none(), "closed after {bad}");
    }
    let mut socket = Socket::open(&server).await;
    socket.0.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(socket.recv().await.unwrap()["type"], "FatalError");
    assert!(socket.recv().await.is_none());
    // Queries and mutations before Connect: there is no session yet.
    for early in [
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": []}),
        json!({"type": "Mutation", "requestId": 0, "udfPath": "chatSessions:create", "args": [{"userId": "u", "title": "t"}]}),
    ] {
        let mut socket = Socket::open(&server).await;
        socket.send(early.clone()).await;
        let reply = socket.recv().await.expect("a FatalError before the close");
        assert_eq!(reply["type"], "FatalError", "{early}");
        assert!(socket.recv().await.is_none(), "closed after {early}");
    }
    assert_eq!(server.query("chatSessions:list", json!({"userId": "u"})).await, json!([]), "nothing ran");
    // A text frame that is not UTF-8 closes the socket with 1007.
    let mut socket = Socket::open(&server).await;
    socket.connect("utf8").await;
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, b'{'],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    socket.0.send(Message::Frame(frame)).await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.0.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1007));
    // The server still serves new connections.
    let mut socket = Socket::open(&server).await;
    socket.connect("fine").await;
    socket.send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": []})).await;
    assert_eq!(socket.recv().await.unwrap()["type"], "Transition");
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_mutation_is_not_applied_twice_even_across_a_restart() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let a = session(&server).await;
    let mutation = json!({"type": "Mutation", "requestId": 7, "udfPath": "chatMessages:append", "args": [{"sessionId": a, "role": "user", "content": "once"}]});
    let mut socket = Socket::open(&server).await;
    socket.connect("replaying-client").await;
    socket.send(mutation.clone()).await;
    let first = socket.recv().await.unwrap();
    assert_eq!(first["success"], true);
    drop(socket);
    server.stop().await;

    let server = TestServer::start(&dir).await;
    let mut socket = Socket::open(&server).await;
    socket.connect("replaying-client").await;
    socket.send(mutation.clone()).await;
    let replay = socket.recv().await.unwrap();
    assert_eq!((&replay["result"], &replay["ts"]), (&first["result"], &first["ts"]), "the first outcome, as it was");
    let listed = server.query("chatMessages:listBySession", json!({"sessionId": a})).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Another client session with the same request number is a different mutation.
    let mut other = Socket::open(&server).await;
    other.connect("another-client").await;
    other.send(mutation).await;
    assert_ne!(other.recv().await.unwrap()["result"], first["result"]);
    assert_eq!(server.query("chatMessages:listBySession", json!({"sessionId": a})).await.as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_crates_io_convex_client_subscribes_and_mutates() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let mut client = convex::ConvexClient::new(&server.url).await.unwrap();
    let created = client
        .mutation(
            "chatSessions:create",
            BTreeMap::from([("userId".into(), "rust".into()), ("title".into(), "from convex-rs".into())]),
        )
        .await
        .unwrap();
    let convex::FunctionResult::Value(convex::Value::String(session)) = created else { panic!("{created:?}") };
    let args = || BTreeMap::from([("sessionId".to_owned(), convex::Value::from(session.clone()))]);
    let mut subscription = client.subscribe("chatMessages:listBySession", args()).await.unwrap();
    let initial = subscription.next().await.unwrap();
    assert_eq!(initial, convex::FunctionResult::Value(convex::Value::Array(vec![])));

    let mut writer = client.clone();
    let mut message = args();
    message.insert("role".into(), "user".into());
    message.insert("content".into(), "hello from rust".into());
    writer.mutation("chatMessages:append", message).await.unwrap();
    let contents = loop {
        let update = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
        if let convex::FunctionResult::Value(convex::Value::Array(items)) = update
            && !items.is_empty()
        {
            break items;
        }
    };
    let convex::Value::Object(first) = &contents[0] else { panic!("{contents:?}") };
    assert_eq!(first["content"], convex::Value::from("hello from rust"));

    let error = writer
        .mutation("chatMessages:append", BTreeMap::from([("sessionId".into(), convex::Value::from(session.clone()))]))
        .await
        .unwrap();
    let convex::FunctionResult::ConvexError(error) = error else { panic!("{error:?}") };
    let convex::Value::Object(data) = &error.data else { panic!("{:?}", error.data) };
    assert_eq!(data["code"], convex::Value::from("InvalidArgument"));
    let queried = writer.query("chatSessions:get", args()).await.unwrap();
    let convex::FunctionResult::Value(convex::Value::Object(doc)) = queried else { panic!("{queried:?}") };
    assert_eq!(doc["title"], convex::Value::from("from convex-rs"));
    drop(subscription);
    drop(writer);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_buffered_forever() {
    let dir = temp_dir();
    let server = TestServer::start_with(&dir, 2).await;
    let a = session(&server).await;
    let mut slow = Socket::open(&server).await;
    slow.connect("slow").await;
    slow.send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
        add(0, "chatMessages:listBySession", json!({"sessionId": a}))]}))
        .await;
    assert_eq!(slow.recv().await.unwrap()["type"], "Transition");
    let stats = |server: &TestServer| {
        let url = format!("{}/jangar/stats", server.url);
        let client = server.client.clone();
        async move { client.get(&url).await.unwrap().json().unwrap() }
    };
    assert_eq!(stats(&server).await["syncConnections"], 1);

    // Each write changes a result of about 100 × 64 KiB; the slow client reads none of them.
    let content = "x".repeat(64 * 1024);
    let mut disconnected = false;
    for _ in 0..200 {
        server.mutation("chatMessages:append", json!({"sessionId": a, "role": "user", "content": content})).await;
        if stats(&server).await["syncConnections"] == 0 {
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "the server let a client that does not read fall behind without limit");
    // Whatever was already in flight, the socket ends with a close frame saying to come back later.
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.0.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), 1013);
    assert!(close.reason.starts_with("TooManyConcurrentRequests"));
    // Other clients are unaffected.
    let mut fresh = Socket::open(&server).await;
    fresh.connect("fresh").await;
    fresh
        .send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
        add(0, "chatSessions:get", json!({"sessionId": a}))]}))
        .await;
    assert_eq!(fresh.recv().await.unwrap()["modifications"][0]["value"]["_id"], a.as_str());
    server.stop().await;
}

#[tokio::test]
async fn a_subscribed_page_grows_instead_of_dropping_documents_between_pages() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let a = session(&server).await;
    let mut orders = Vec::new();
    for title in ["w1", "w2", "w3", "w4"] {
        orders.push(server.mutation("workOrders:create", json!({"sessionId": a, "title": title})).await);
    }
    let mut socket = Socket::open(&server).await;
    socket.connect("pages").await;
    socket
        .send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
        add(0, "workOrders:listBySession", json!({"sessionId": a, "paginationOpts": {"numItems": 2, "cursor": null}}))]}))
        .await;
    let titles = |transition: &Value| -> Vec<String> {
        transition["modifications"][0]["value"]["page"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = socket.recv().await.unwrap();
    assert_eq!(titles(&first), ["w4", "w3"], "newest first");
    let page_end = first["modifications"][0]["value"]["continueCursor"].clone();
    // A new order sorts into this first page: the page grows, w3 stays on it.
    server.mutation("workOrders:create", json!({"sessionId": a, "title": "w5"})).await;
    let second = socket.recv().await.unwrap();
    assert_eq!(titles(&second), ["w5", "w4", "w3"]);
    assert_eq!(second["modifications"][0]["value"]["continueCursor"], page_end, "the page still ends where it did");
    assert_eq!(second["modifications"][0]["value"]["isDone"], false);
    assert_eq!(second["modifications"][0]["journal"], page_end, "the journal names the page's end");
    server.stop().await;

    // Subscribed again with that journal, on another server over the same data (a restart, or on
    // PostgreSQL another replica), the page answers the same three rows, not the first two.
    let server = TestServer::start(&dir).await;
    let mut socket = Socket::open(&server).await;
    socket.connect("pages-again").await;
    let mut again =
        add(0, "workOrders:listBySession", json!({"sessionId": a, "paginationOpts": {"numItems": 2, "cursor": null}}));
    again["journal"] = page_end.clone();
    socket.send(json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [again]})).await;
    let restored = socket.recv().await.unwrap();
    assert_eq!(titles(&restored), ["w5", "w4", "w3"]);
    assert_eq!(restored["modifications"][0]["journal"], page_end);
    // A journal that is not a cursor is the query's error, not a silently different page.
    let mut forged =
        add(1, "workOrders:listBySession", json!({"sessionId": a, "paginationOpts": {"numItems": 2, "cursor": null}}));
    forged["journal"] = json!("not a cursor!");
    socket.send(json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2, "modifications": [forged]})).await;
    let failed = socket.recv().await.unwrap();
    assert_eq!(failed["modifications"][0]["type"], "QueryFailed", "{failed}");
    assert_eq!(failed["modifications"][0]["errorData"]["code"], "InvalidCursor");
    server.stop().await;
}

/// Every message of a session, oldest first, as their contents.
async fn message_contents(server: &TestServer, session: &str) -> Vec<String> {
    let mut contents = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let args = json!({"sessionId": session, "paginationOpts": {"numItems": 1000, "cursor": cursor}});
        let page = server.query("chatMessages:listBySession", args).await;
        contents.extend(page["page"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()));
        if page["isDone"] == true {
            return contents;
        }
        cursor = page["continueCursor"].clone();
    }
}

#[tokio::test]
async fn the_crates_io_client_with_ten_thousand_mutations_in_flight_gets_each_applied_once_in_order() {
    const IN_FLIGHT: usize = 10_000;
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |config| config.limits.calls_per_second = 0).await;
    let session = session(&server).await;
    let client = convex::ConvexClient::new(&server.url).await.unwrap();
    // Polled in order, so sent in order, all before the first answer.
    let calls = (0..IN_FLIGHT).map(|i| {
        let mut client = client.clone();
        let args = BTreeMap::from([
            ("sessionId".to_owned(), convex::Value::from(session.as_str())),
            ("role".to_owned(), convex::Value::from("user")),
            ("content".to_owned(), convex::Value::from(i.to_string())),
        ]);
        async move { client.mutation("chatMessages:append", args).await.unwrap() }
    });
    let answers = tokio::time::timeout(Duration::from_secs(120), futures_util::future::join_all(calls))
        .await
        .expect("every mutation answered");
    let ids: std::collections::HashSet<String> = answers
        .into_iter()
        .map(|answer| match answer {
            convex::FunctionResult::Value(convex::Value::String(id)) => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), IN_FLIGHT, "one message per mutation");
    let contents = message_contents(&server, &session).await;
    let expected: Vec<String> = (0..IN_FLIGHT).map(|i| i.to_string()).collect();
    assert!(contents == expected, "applied once each, in the order sent ({} applied)", contents.len());
    drop(client);
    server.stop().await;
}
