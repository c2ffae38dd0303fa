//! Black-box tests of the Convex HTTP API: a real server on a loopback port.

use jangar_engine::base64;
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};

async fn session(server: &TestServer, user: &str) -> String {
    server.mutation("chatSessions:create", json!({"userId": user, "title": "t"})).await.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn args_as_object_or_array_and_both_output_formats() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    // The JS client's shape: args in a one-element array, encoded output.
    let encoded = server
        .post(
            "/api/query",
            json!({"path": "chatSessions:get", "args": [{"sessionId": id}], "format": "convex_encoded_json"}),
        )
        .await
        .json()
        .unwrap();
    assert_eq!(encoded["status"], "success");
    assert_eq!(encoded["value"]["_id"], id.as_str());
    assert_eq!(encoded["logLines"], json!([]));
    // An int64 in `any` metadata shows both encodings.
    let message = server
        .post(
            "/api/mutation",
            json!({"path": "chatMessages:append", "args": {"sessionId": id, "role": "user", "content": "x",
                   "metadata": {"n": {"$integer": base64::encode(&7i64.to_le_bytes())}, "b": {"$bytes": "AAE="}}}}),
        )
        .await
        .json()
        .unwrap();
    assert_eq!(message["status"], "success", "{message}");
    let list = |format: &'static str| {
        let id = id.clone();
        let server = &server;
        async move {
            server
                .post(
                    "/api/query",
                    json!({"path": "chatMessages:listBySession", "args": {"sessionId": id}, "format": format}),
                )
                .await
                .json()
                .unwrap()
        }
    };
    assert_eq!(
        list("convex_encoded_json").await["value"][0]["metadata"],
        json!({"n": {"$integer": "BwAAAAAAAAA="}, "b": {"$bytes": "AAE="}})
    );
    assert_eq!(list("json").await["value"][0]["metadata"], json!({"n": "7", "b": "AAE="}));
    let bad = server
        .post("/api/query", json!({"path": "chatMessages:listBySession", "args": {"sessionId": id}, "format": "xml"}))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json().unwrap()["code"], "BadFormat");
}

#[tokio::test]
async fn malformed_requests_get_clear_http_errors() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let client = &server.client;
    let url = |route: &str| format!("{}{route}", server.url);

    let malformed = client.send(hyper::Method::POST, &url("/api/mutation"), &[], "{not json").await.unwrap();
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json().unwrap()["code"], "BadJsonBody");

    let no_path = server.post("/api/query", json!({"args": {}})).await;
    assert_eq!((no_path.status.as_u16(), no_path.json().unwrap()["code"].clone()), (400, json!("BadJsonBody")));

    // Every error has the API's shape, whatever layer answers it.
    for (method, route, status, code) in [
        (hyper::Method::GET, "/api/mutation", 405, "MethodNotAllowed"),
        (hyper::Method::PUT, "/api/query", 405, "MethodNotAllowed"),
        (hyper::Method::GET, "/api/sync", 400, "WebSocketUpgradeRequired"),
        (hyper::Method::GET, "/api/1.48.0/sync", 400, "WebSocketUpgradeRequired"),
        (hyper::Method::GET, "/no/such/route", 404, "NotFound"),
    ] {
        let response = client.send(method.clone(), &url(route), &[], "").await.unwrap();
        assert_eq!(response.status, status, "{method} {route}");
        let body = response.json().unwrap_or_else(|e| panic!("{method} {route}: not JSON: {e}"));
        assert_eq!(body["code"], code, "{method} {route}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }

    let unknown = server.post("/api/query", json!({"path": "nope:missing", "args": {}})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json().unwrap()["code"], "FunctionPathNotFound");

    let huge = "x".repeat(jangar_engine::knobs::MAX_BODY_BYTES + 10);
    let too_large = client.send(hyper::Method::POST, &url("/api/mutation"), &[], huge).await.unwrap();
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json().unwrap()["code"], "PayloadTooLarge");

    let bad_client = client
        .send(
            hyper::Method::POST,
            &url("/api/query"),
            &[("convex-client", "nonsense")],
            json!({"path": "chatSessions:list", "args": {"userId": "u"}}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(bad_client.status, 400);
    let good_client = client
        .send(
            hyper::Method::POST,
            &url("/api/query"),
            &[("convex-client", "npm-1.48.0")],
            json!({"path": "chatSessions:list", "args": {"userId": "u"}}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(good_client.status, 200);

    // Special forms that do not decode are argument errors, not crashes.
    let bad_value =
        server.call("/api/mutation", "chatSessions:create", json!({"userId": {"$integer": "xx"}, "title": "t"})).await;
    assert_eq!(bad_value["errorData"]["code"], "InvalidArgument");
    let two_args = server.call("/api/mutation", "chatSessions:create", json!([{}, {}])).await;
    assert_eq!(two_args["errorData"]["code"], "InvalidArgument");
}

#[tokio::test]
async fn wrong_kind_unknown_args_and_action_errors() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let as_query = server.call("/api/query", "chatSessions:create", json!({"userId": "u", "title": "t"})).await;
    assert_eq!(as_query["status"], "error");
    assert!(as_query["errorMessage"].as_str().unwrap().contains("defined as mutation"), "{as_query}");
    let action = server.call("/api/action", "chatSessions:list", json!({"userId": "u"})).await;
    assert_eq!(action["status"], "error");
    let extra = server
        .app_error("/api/mutation", "chatSessions:create", json!({"userId": "u", "title": "t", "bogus": 1}))
        .await;
    assert_eq!(extra["code"], "InvalidArgument");
    assert!(extra["message"].as_str().unwrap().contains("bogus"));
    let missing = server.app_error("/api/mutation", "chatSessions:create", json!({"userId": "u"})).await;
    assert!(missing["message"].as_str().unwrap().contains("`title`"), "{missing}");
    let message_id = server
        .mutation(
            "chatMessages:append",
            json!({"sessionId": session(&server, "u").await, "role": "user", "content": "c"}),
        )
        .await;
    let wrong_table = server.app_error("/api/query", "chatSessions:get", json!({"sessionId": message_id})).await;
    assert!(wrong_table["message"].as_str().unwrap().contains("another table"), "{wrong_table}");
    let bad_role = server
        .app_error(
            "/api/mutation",
            "chatMessages:append",
            json!({"sessionId": message_id, "role": "robot", "content": "c"}),
        )
        .await;
    assert_eq!(bad_role["code"], "InvalidArgument");
}

#[tokio::test]
async fn other_routes_run_query_ts_batch_function_version_and_cors() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    // /api/run/{module}/{fn}: args and format in the body, clean JSON by default.
    let run = server.post("/api/run/chatSessions/get", json!({"args": {"sessionId": id}})).await.json().unwrap();
    assert_eq!(run["value"]["_id"], id.as_str());
    // /api/function runs any kind.
    let created = server
        .post("/api/function", json!({"path": "chatSessions:create", "args": {"userId": "v", "title": "x"}}))
        .await
        .json()
        .unwrap();
    assert_eq!(created["status"], "success");
    // GET /api/query with args as a JSON string.
    let args = "%7B%22userId%22%3A%22u%22%7D";
    let got = server.client.get(&format!("{}/api/query?path=chatSessions:list&args={args}", server.url)).await.unwrap();
    assert_eq!(got.json().unwrap()["value"][0]["_id"], id.as_str());
    // query_ts: base64 of a u64, at least the last commit.
    let ts = server.post("/api/query_ts", Value::Null).await.json().unwrap();
    let bytes = base64::decode(ts["ts"].as_str().unwrap()).unwrap();
    let ts = u64::from_le_bytes(bytes.try_into().unwrap());
    assert!(ts > 1_700_000_000_000_000_000, "nanoseconds since the epoch: {ts}");
    // query_batch: one result per query, errors in place.
    let batch = server
        .post(
            "/api/query_batch",
            json!({"queries": [
                {"path": "chatSessions:get", "args": {"sessionId": id}},
                {"path": "chatSessions:get", "args": {"sessionId": "bad"}},
                {"path": "chatSessions:list", "args": {"userId": "v"}},
            ]}),
        )
        .await
        .json()
        .unwrap();
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["value"]["_id"], id.as_str());
    assert_eq!(results[1]["status"], "error");
    assert_eq!(results[2]["value"].as_array().unwrap().len(), 1);
    let version = server.client.get(&format!("{}/version", server.url)).await.unwrap();
    assert_eq!(version.status, 200);
    assert!(String::from_utf8_lossy(&version.body).starts_with("jangar "));
    // CORS mirrors the origin and allows credentials.
    let preflight = server
        .client
        .send(
            hyper::Method::OPTIONS,
            &format!("{}/api/query", server.url),
            &[
                ("origin", "http://ui.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type,convex-client"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(preflight.headers["access-control-allow-origin"], "http://ui.example");
    assert_eq!(preflight.headers["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn sessions_list_by_recency_and_soft_delete_hides_children() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let first = session(&server, "u").await;
    let second = session(&server, "u").await;
    session(&server, "someone-else").await;
    let ids = |list: &Value| {
        list.as_array().unwrap().iter().map(|s| s["_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&server.query("chatSessions:list", json!({"userId": "u"})).await),
        vec![second.clone(), first.clone()]
    );
    // A new message moves the first session to the top.
    server.mutation("chatMessages:append", json!({"sessionId": first, "role": "user", "content": "hi"})).await;
    assert_eq!(
        ids(&server.query("chatSessions:list", json!({"userId": "u"})).await),
        vec![first.clone(), second.clone()]
    );
    let order = server.mutation("workOrders:create", json!({"sessionId": first, "title": "w"})).await;

    server.mutation("chatSessions:remove", json!({"sessionId": first})).await;
    assert_eq!(ids(&server.query("chatSessions:list", json!({"userId": "u"})).await), vec![second.clone()]);
    assert_eq!(server.query("chatSessions:get", json!({"sessionId": first})).await, Value::Null);
    assert!(
        server.query("chatSessions:get", json!({"sessionId": first, "includeDeleted": true})).await["deletedAt"]
            .is_number()
    );
    assert_eq!(server.query("chatMessages:listBySession", json!({"sessionId": first})).await, json!([]));
    assert_eq!(server.query("workOrders:listBySession", json!({"sessionId": first})).await, json!([]));
    assert_eq!(server.query("workOrders:get", json!({"workOrderId": order})).await, Value::Null);
    let append = server
        .app_error("/api/mutation", "chatMessages:append", json!({"sessionId": first, "role": "user", "content": "x"}))
        .await;
    assert_eq!(append["code"], "Deleted");
    let status = server
        .app_error("/api/mutation", "workOrders:updateStatus", json!({"workOrderId": order, "status": "accepted"}))
        .await;
    assert_eq!(status["code"], "Deleted");

    server.mutation("chatSessions:restore", json!({"sessionId": first})).await;
    assert_eq!(
        server.query("chatMessages:listBySession", json!({"sessionId": first})).await.as_array().unwrap().len(),
        1
    );
    assert_eq!(server.query("workOrders:get", json!({"workOrderId": order})).await["_id"], order);
    let restored = server.query("chatSessions:get", json!({"sessionId": first})).await;
    assert!(restored.get("deletedAt").is_none(), "{restored}");

    server.mutation("chatSessions:rename", json!({"sessionId": first, "title": "renamed"})).await;
    assert_eq!(server.query("chatSessions:get", json!({"sessionId": first})).await["title"], "renamed");
    let missing = server
        .app_error(
            "/api/mutation",
            "chatSessions:rename",
            json!({"sessionId": jangar_engine::id::DocumentId::generate(10_003, 0).encode(), "title": "x"}),
        )
        .await;
    assert_eq!(missing["code"], "NotFound");
}

#[tokio::test]
async fn limits_and_pagination_over_messages() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    for i in 0..7 {
        server
            .mutation("chatMessages:append", json!({"sessionId": id, "role": "user", "content": format!("m{i}")}))
            .await;
    }
    let contents = |list: &Value| {
        list.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    // `limit`: the newest messages, oldest first.
    assert_eq!(
        contents(&server.query("chatMessages:listBySession", json!({"sessionId": id, "limit": 3})).await),
        ["m4", "m5", "m6"]
    );
    // `paginationOpts`: pages from the oldest.
    let mut cursor = Value::Null;
    let mut seen = Vec::new();
    loop {
        let page = server
            .query(
                "chatMessages:listBySession",
                json!({"sessionId": id, "paginationOpts": {"numItems": 3, "cursor": cursor}}),
            )
            .await;
        seen.extend(contents(&page["page"]));
        cursor = page["continueCursor"].clone();
        assert!(cursor.is_string());
        if page["isDone"] == true {
            break;
        }
    }
    assert_eq!(seen, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"limit": 2.5}),
        json!({"limit": 5, "paginationOpts": {"numItems": 1, "cursor": null}}),
    ] {
        let mut args = bad.clone();
        args["sessionId"] = json!(id);
        let error = server.app_error("/api/query", "chatMessages:listBySession", args).await;
        assert_eq!(error["code"], "InvalidArgument", "{bad}");
    }
    let args = json!({"sessionId": id, "paginationOpts": {"numItems": 1, "cursor": "!!"}});
    let error = server.app_error("/api/query", "chatMessages:listBySession", args).await;
    assert_eq!(error["code"], "InvalidCursor");
}

#[tokio::test]
async fn work_order_state_machine_and_results() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    let order = server
        .mutation(
            "workOrders:create",
            json!({"sessionId": id, "status": "queued", "workflowType": "codex", "workflowArgs": {"a": [1, 2]}}),
        )
        .await;
    let get = || async { server.query("workOrders:get", json!({"workOrderId": order})).await };
    assert_eq!(get().await["status"], "submitted", "queued is stored as submitted");
    let draft = server.mutation("workOrders:create", json!({"sessionId": id, "status": "draft"})).await;
    let skip = server
        .app_error("/api/mutation", "workOrders:updateStatus", json!({"workOrderId": draft, "status": "running"}))
        .await;
    assert_eq!(
        skip,
        json!({"code": "InvalidTransition", "from": "draft", "to": "running", "message": "Cannot move from draft to running."})
    );
    server.mutation("workOrders:updateStatus", json!({"workOrderId": draft, "status": "canceled"})).await;

    for status in ["accepted", "running"] {
        let updated = server
            .mutation("workOrders:updateStatus", json!({"workOrderId": order, "status": status, "workflowId": "wf-1"}))
            .await;
        assert_eq!(updated["status"], status);
    }
    // The same status again is a no-op that still answers with the document.
    let same = server.mutation("workOrders:updateStatus", json!({"workOrderId": order, "status": "running"})).await;
    assert_eq!(same["status"], "running");
    let result = server
        .mutation(
            "workOrders:updateResult",
            json!({"workOrderId": order, "prUrl": "https://github.com/a/b/pull/1", "commitSha": "abc"}),
        )
        .await;
    assert_eq!(
        (result["prUrl"].as_str(), result["commitSha"].as_str()),
        (Some("https://github.com/a/b/pull/1"), Some("abc"))
    );
    server.mutation("workOrders:updateStatus", json!({"workOrderId": order, "status": "succeeded"})).await;
    let done = get().await;
    assert_eq!((done["status"].as_str(), done["workflowId"].as_str()), (Some("succeeded"), Some("wf-1")));
    assert_eq!(done["workflowArgs"], json!({"a": [1.0, 2.0]}));
    for to in ["running", "failed", "canceled", "submitted"] {
        let error = server
            .app_error("/api/mutation", "workOrders:updateStatus", json!({"workOrderId": order, "status": to}))
            .await;
        assert_eq!(
            (error["code"].as_str(), error["from"].as_str()),
            (Some("InvalidTransition"), Some("succeeded")),
            "{to}"
        );
    }
    let listed = server.query("workOrders:listBySession", json!({"sessionId": id})).await;
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|o| o["_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [draft.as_str().unwrap(), order.as_str().unwrap()], "newest first");
    server.mutation("workOrders:remove", json!({"workOrderId": order})).await;
    assert_eq!(get().await, Value::Null);
    assert_eq!(server.query("workOrders:listBySession", json!({"sessionId": id})).await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    let mut pending = Vec::new();
    for i in 0..50 {
        let client = server.client.clone();
        let url = format!("{}/api/mutation", server.url);
        let body = json!({"path": "chatMessages:append", "args": {"sessionId": id, "role": "user", "content": format!("{i}")}});
        pending.push(tokio::spawn(async move { client.post_json(&url, &body).await.unwrap().json().unwrap() }));
    }
    for task in pending {
        assert_eq!(task.await.unwrap()["status"], "success");
    }
    server.stop().await;
    let server = TestServer::start(&dir).await;
    let listed = server.query("chatMessages:listBySession", json!({"sessionId": id})).await;
    assert_eq!(listed.as_array().unwrap().len(), 50);
    server.stop().await;
}

#[tokio::test]
async fn every_list_takes_an_order_served_by_the_same_index() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    for i in 0..5 {
        server
            .mutation("chatMessages:append", json!({"sessionId": id, "role": "user", "content": format!("m{i}")}))
            .await;
        server.mutation("workOrders:create", json!({"sessionId": id, "title": format!("w{i}")})).await;
    }
    let field = |list: &Value, name: &str| -> Vec<String> {
        let items = list.get("page").unwrap_or(list);
        items.as_array().unwrap().iter().map(|d| d[name].as_str().unwrap().to_owned()).collect()
    };
    let messages = |extra: Value| {
        let mut args = json!({"sessionId": id});
        args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        server.query("chatMessages:listBySession", args)
    };
    let oldest_first: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();
    assert_eq!(field(&messages(json!({})).await, "content"), oldest_first, "the default: chronological");
    assert_eq!(field(&messages(json!({"order": "desc"})).await, "content"), newest_first);
    assert_eq!(field(&messages(json!({"order": "desc", "limit": 2})).await, "content"), ["m4", "m3"]);
    assert_eq!(field(&messages(json!({"order": "asc", "limit": 2})).await, "content"), ["m0", "m1"]);
    assert_eq!(
        field(&messages(json!({"limit": 2})).await, "content"),
        ["m3", "m4"],
        "the default: the newest, in order"
    );
    // Pages newest first, each continuing where the last ended.
    let first = messages(json!({"order": "desc", "paginationOpts": {"numItems": 3, "cursor": null}})).await;
    let rest =
        messages(json!({"order": "desc", "paginationOpts": {"numItems": 3, "cursor": first["continueCursor"]}})).await;
    assert_eq!([field(&first, "content"), field(&rest, "content")].concat(), newest_first);
    assert_eq!(rest["isDone"], true);

    let orders = |order: &str| server.query("workOrders:listBySession", json!({"sessionId": id, "order": order}));
    assert_eq!(field(&orders("asc").await, "title"), ["w0", "w1", "w2", "w3", "w4"]);
    assert_eq!(field(&orders("desc").await, "title"), ["w4", "w3", "w2", "w1", "w0"]);
    let bad = server
        .app_error("/api/query", "chatMessages:listBySession", json!({"sessionId": id, "order": "sideways"}))
        .await;
    assert_eq!(bad["code"], "InvalidArgument");
    server.stop().await;
}

#[tokio::test]
async fn forged_cursors_and_numbers_that_do_not_count_are_refused() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    for i in 0..3 {
        server
            .mutation("chatMessages:append", json!({"sessionId": id, "role": "user", "content": format!("m{i}")}))
            .await;
    }
    let page = |cursor: Value| json!({"sessionId": id, "paginationOpts": {"numItems": 1, "cursor": cursor}});
    let first = server.query("chatMessages:listBySession", page(Value::Null)).await;
    let cursor = first["continueCursor"].as_str().unwrap().to_owned();
    let second = server.query("chatMessages:listBySession", page(json!(cursor))).await;
    assert_eq!(second["page"][0]["content"], "m1", "a genuine cursor continues the list");

    // Edited, made up, or taken from another list: an error naming the cursor, never another page.
    let mut edited = jangar_engine::base64::decode(&cursor).unwrap();
    edited[3] ^= 0x40;
    let orders = server
        .query("workOrders:listBySession", json!({"sessionId": id, "paginationOpts": {"numItems": 1, "cursor": null}}));
    server.mutation("workOrders:create", json!({"sessionId": id, "title": "w"})).await;
    let other_list = orders.await["continueCursor"].as_str().unwrap().to_owned();
    for forged in [jangar_engine::base64::encode(&edited), jangar_engine::base64::encode(b"\x60made up"), other_list] {
        let error = server.app_error("/api/query", "chatMessages:listBySession", page(json!(forged))).await;
        assert_eq!(error["code"], "InvalidCursor", "{forged}: {error}");
    }

    // Not-a-number and infinite counts are argument errors that name the argument.
    let nan = json!({"$float": jangar_engine::base64::encode(&f64::NAN.to_le_bytes())});
    let infinity = json!({"$float": jangar_engine::base64::encode(&f64::INFINITY.to_le_bytes())});
    let order = server.mutation("workOrders:create", json!({"sessionId": id})).await;
    let run = server.mutation("runs:start", json!({"workOrderId": order, "temporalWorkflowId": "wf"})).await;
    for (path, args, field) in [
        ("events:listByRun", json!({"runId": run, "afterSeq": nan}), "afterSeq"),
        ("events:listByRun", json!({"runId": run, "afterSeq": -1}), "afterSeq"),
        ("events:listByRun", json!({"runId": run, "afterSeq": 1.5}), "afterSeq"),
        ("chatMessages:listBySession", json!({"sessionId": id, "limit": infinity}), "limit"),
    ] {
        let body = json!({"path": path, "args": args, "format": "convex_encoded_json"});
        let response: Value = server.post("/api/query", body).await.json().unwrap();
        assert_eq!(response["errorData"]["code"], "InvalidArgument", "{path} {args}: {response}");
        assert!(response["errorMessage"].as_str().unwrap().contains(field), "{response}");
    }
    server.stop().await;
}

/// POSTs `body` with an `Idempotency-Key` header.
async fn post_with_key(server: &TestServer, route: &str, key: &str, body: Value) -> jangar_api::client::HttpResponse {
    let headers = [("content-type", "application/json"), ("idempotency-key", key)];
    let url = format!("{}{route}", server.url);
    server.client.send(hyper::Method::POST, &url, &headers, body.to_string()).await.unwrap()
}

#[tokio::test]
async fn a_retried_mutation_with_an_idempotency_key_runs_once() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let id = session(&server, "u").await;
    let append = |content: &str| json!({"path": "chatMessages:append", "args": {"sessionId": id, "role": "user", "content": content}});
    let first: Value = post_with_key(&server, "/api/mutation", "retry-1", append("once")).await.json().unwrap();
    assert_eq!(first["status"], "success", "{first}");
    let again: Value = post_with_key(&server, "/api/mutation", "retry-1", append("once")).await.json().unwrap();
    assert_eq!(again["value"], first["value"], "the first outcome, not a second message");
    // Through /api/run too, and after a restart (the record is stored with the writes).
    let by_path = json!({"args": {"sessionId": id, "role": "user", "content": "by path"}});
    let run: Value =
        post_with_key(&server, "/api/run/chatMessages/append", "retry-2", by_path.clone()).await.json().unwrap();
    server.stop().await;
    let server = TestServer::start(&dir).await;
    let replayed: Value =
        post_with_key(&server, "/api/run/chatMessages/append", "retry-2", by_path).await.json().unwrap();
    assert_eq!(replayed["value"], run["value"]);
    let messages = server.query("chatMessages:listBySession", json!({"sessionId": id})).await;
    let contents: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["once", "by path"]);

    // The same key for another call is an error, and runs nothing.
    let reused: Value = post_with_key(&server, "/api/mutation", "retry-1", append("different")).await.json().unwrap();
    assert_eq!(reused["errorData"]["code"], "IdempotencyKeyReused", "{reused}");
    let count = server.query("chatMessages:listBySession", json!({"sessionId": id})).await.as_array().unwrap().len();
    assert_eq!(count, 2);
    // Without a key, every call runs; a malformed key is refused.
    let response = post_with_key(&server, "/api/mutation", &"k".repeat(300), append("x")).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json().unwrap()["code"], "BadIdempotencyKey");
    server.stop().await;
}
