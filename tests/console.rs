//! The console's server side: its page and assets (compiled in, revalidated by ETag, served for
//! every view's URL, behind a strict content security policy), and the system queries its data
//! browser reads (`_system/console/*`), which are for admins only. The views themselves are
//! tested in a browser by `tests/js/console.test.mjs`.

use jangar_api::client::{HttpClient, HttpResponse};
use jangar_test_support::tokens::{self, SigningKey};
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "console-admin-key";

async fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    HttpClient::default().send(hyper::Method::GET, url, headers, String::new()).await.unwrap()
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> &'a str {
    response.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

#[tokio::test]
async fn every_view_url_answers_the_page_and_the_assets_revalidate_by_etag() {
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |config| config.admin_keys = vec![ADMIN_KEY.to_owned()]).await;
    // The page needs no key (the sign-in form is on it); what it reads does.
    for view in ["/console", "/console/", "/console/runs", "/console/runs/abc", "/console/data/teams/x?index=by_id"] {
        let page = get(&format!("{}{view}", server.url), &[]).await;
        assert_eq!(page.status, 200, "{view}");
        assert!(header(&page, "content-type").starts_with("text/html"), "{view}");
        assert!(String::from_utf8_lossy(&page.body).contains("/console/assets/console.js"), "{view}");
        let policy = header(&page, "content-security-policy");
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    }
    for (asset, kind) in [("console.js", "text/javascript"), ("console.css", "text/css")] {
        let url = format!("{}/console/assets/{asset}", server.url);
        let first = get(&url, &[]).await;
        assert_eq!(first.status, 200);
        assert!(header(&first, "content-type").starts_with(kind));
        assert_eq!(header(&first, "cache-control"), "no-cache");
        assert!(first.body.len() > 1000, "{asset} is {} bytes", first.body.len());
        let etag = header(&first, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
        let again = get(&url, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        let stale = get(&url, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(stale.status, 200);
    }
    assert_eq!(get(&format!("{}/console/assets/missing.js", server.url), &[]).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_console_queries_are_for_admins_only() {
    let dir = temp_dir();
    let key = SigningKey::rsa("rsa-1");
    std::fs::write(dir.path().join("jwks.json"), tokens::jwks(&[&key]).to_string()).unwrap();
    let provider = tokens::provider("RS256", json!("jwks.json"));
    let server = TestServer::start_with_auth(&dir, ADMIN_KEY, vec![provider], |_| {}).await;
    let team = server.mutation("teams:create", json!({"name": "t"})).await;
    let user = format!("Bearer {}", key.token("u1", 600));
    let admin = format!("Convex {ADMIN_KEY}");
    let args =
        json!({"table": "teams", "index": "by_creation_time", "paginationOpts": {"numItems": 5, "cursor": null}});
    for (path, args) in [
        ("_system/console/schema:default", json!({})),
        ("_system/console/indexPage:default", args),
        ("_system/console/document:default", json!({"id": team})),
    ] {
        // A signed-in user reaches the catalogue's functions, not these.
        let refused = server.call_as(Some(&user), "/api/query", path, args.clone()).await.json().unwrap();
        assert_eq!(refused["errorData"]["code"], "Forbidden", "{path}: {refused}");
        let body = server.call_as(Some(&admin), "/api/query", path, args).await.json().unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
    }
    server.stop().await;
}

fn page(table: &str, index: &str, extra: Value) -> Value {
    let mut args = json!({"table": table, "index": index, "paginationOpts": {"numItems": 100, "cursor": null}});
    args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    args
}

fn ids(page: &Value) -> Vec<String> {
    page["page"].as_array().unwrap().iter().map(|d| d["_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_table_pages_through_any_index_with_a_prefix_and_a_range() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let schema = server.query("_system/console/schema:default", json!({})).await;
    let tables: Vec<&str> = schema.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(tables.contains(&"runs") && tables.contains(&"chat_sessions"), "{tables:?}");
    assert!(!tables.iter().any(|t| t.starts_with('_')), "system tables are not shown: {tables:?}");
    let sessions = schema.as_array().unwrap().iter().find(|t| t["name"] == "chat_sessions").unwrap();
    assert_eq!(sessions["indexes"][0], json!({"name": "by_user_recent", "fields": ["userId", "lastMessageAt"]}));
    assert_eq!(sessions["document"]["value"]["repoId"]["fieldType"], json!({"type": "id", "tableName": "repos"}));

    let mut made = Vec::new();
    for (user, title) in [("ann", "a1"), ("ann", "a2"), ("ann", "a3"), ("ben", "b1")] {
        made.push(server.mutation("chatSessions:create", json!({"userId": user, "title": title})).await);
        // lastMessageAt is in whole milliseconds: two sessions made in the same one would tie, and a
        // range from the second session's value would then start at the first.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let of_ann = |extra: Value| {
        let mut extra = extra;
        extra["eq"] = json!(["ann"]);
        page("chat_sessions", "by_user_recent", extra)
    };
    let ann = server.query("_system/console/indexPage:default", of_ann(json!({"order": "asc"}))).await;
    assert_eq!(ids(&ann), [&made[0], &made[1], &made[2]].map(|v| v.as_str().unwrap().to_owned()));
    let desc = server.query("_system/console/indexPage:default", of_ann(json!({}))).await;
    assert_eq!(ids(&desc), ids(&ann).into_iter().rev().collect::<Vec<_>>(), "descending by default");

    // A range on the next field: lastMessageAt from the second session's on.
    let second = server.query("chatSessions:get", json!({"sessionId": made[1]})).await;
    let from = second["lastMessageAt"].clone();
    let lower = json!({"order": "asc", "lower": {"value": from, "inclusive": true}});
    let ranged = server.query("_system/console/indexPage:default", of_ann(lower)).await;
    assert_eq!(ids(&ranged)[0], made[1].as_str().unwrap(), "{ranged}");
    let exclusive = json!({"order": "asc", "lower": {"value": from, "inclusive": false}});
    let after = server.query("_system/console/indexPage:default", of_ann(exclusive)).await;
    assert!(!ids(&after).contains(&made[1].as_str().unwrap().to_owned()), "{after}");

    // After equal values on every field, the range bounds _creationTime; by_creation_time has
    // no other field.
    let third = server.query("chatSessions:get", json!({"sessionId": made[2]})).await["_creationTime"].clone();
    let since = json!({"order": "asc", "lower": {"value": third, "inclusive": true}});
    let newest =
        server.query("_system/console/indexPage:default", page("chat_sessions", "by_creation_time", since)).await;
    assert_eq!(ids(&newest), [&made[2], &made[3]].map(|v| v.as_str().unwrap().to_owned()));
    let from = json!({"eq": ["ann", second["lastMessageAt"]], "lower": {"value": third, "inclusive": false}});
    let none = server.query("_system/console/indexPage:default", page("chat_sessions", "by_user_recent", from)).await;
    assert!(ids(&none).iter().all(|id| id != made[1].as_str().unwrap()), "{none}");

    // Soft-deleted documents only on request.
    server.mutation("chatSessions:remove", json!({"sessionId": made[0]})).await;
    let shown = server.query("_system/console/indexPage:default", of_ann(json!({}))).await;
    assert_eq!(ids(&shown).len(), 2);
    let all = server.query("_system/console/indexPage:default", of_ann(json!({"includeDeleted": true}))).await;
    assert_eq!(ids(&all).len(), 3);

    // `where` keeps the documents whose field equals the value.
    let titled = page("chat_sessions", "by_creation_time", json!({"where": [{"field": "title", "value": "b1"}]}));
    let titled = server.query("_system/console/indexPage:default", titled).await;
    assert_eq!(ids(&titled), [made[3].as_str().unwrap()]);

    // Any document by its id, soft-deleted ones too; an id of nothing is null.
    let found = server.query("_system/console/document:default", json!({"id": made[0]})).await;
    assert_eq!(found["table"], "chat_sessions");
    assert_eq!(found["document"]["title"], "a1");
    assert!(found["document"]["deletedAt"].is_number());
    server.stop().await;
}

#[tokio::test]
async fn bad_arguments_say_what_is_wrong() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let cases = [
        (page("nope", "by_id", json!({})), "NotFound", "no table named \"nope\""),
        (page("_environment_variables", "by_name", json!({})), "NotFound", "no table named"),
        (page("runs", "by_nothing", json!({})), "NotFound", "its indexes are by_work_order, by_status"),
        (page("runs", "by_status", json!({"eq": ["running", 1, 2]})), "InvalidArgument", "are too many"),
        (page("runs", "by_creation_time", json!({"eq": [1]})), "InvalidArgument", "has no field before _creationTime"),
        (
            json!({"table": "runs", "index": "by_status", "paginationOpts": {"numItems": 0, "cursor": null}}),
            "InvalidArgument",
            "numItems",
        ),
    ];
    for (args, code, message) in cases {
        let error = server.app_error("/api/query", "_system/console/indexPage:default", args.clone()).await;
        assert_eq!(error["code"], code, "{args}: {error}");
        assert!(error["message"].as_str().unwrap().contains(message), "{args}: {error}");
    }
    let malformed = server.app_error("/api/query", "_system/console/document:default", json!({"id": "abc"})).await;
    assert_eq!(malformed["code"], "InvalidArgument", "{malformed}");
    server.stop().await;
}
