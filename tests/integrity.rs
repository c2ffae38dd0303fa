//! The integrity check (issue 10): what it reports, the admin route and
//! `jangar check`, the rebuild of indexes that a database from before the fix
//! gets at start-up, and a write refused when an index has lost an entry.
//! Each test breaks the index entries of a stopped server's store by hand.

use std::process::Command;

use jangar_engine::integrity::ProblemKind;
use jangar_test_support::{Store, TempDir, TestServer, temp_dir};
use serde_json::{Value, json};

/// A parameter of a raw statement, for either backend.
#[derive(Clone)]
enum Param {
    Int(i64),
    Bytes(Vec<u8>),
}

/// Runs raw SQL on a store: `{t}` in `sql` becomes the table prefix (`jangar_` on PostgreSQL),
/// parameters are `$1, $2, ...` in order. Returns the rows of a SELECT as (number, key, id).
fn sql(store: &Store, sql: &str, params: &[Param]) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let (store, params) = (store.clone(), params.to_vec());
    let prefix = if matches!(store, Store::Postgres(_)) { "jangar_" } else { "" };
    let sql = sql.replace("{t}", prefix);
    std::thread::spawn(move || match store {
        Store::DataDir(dir) => {
            let conn = rusqlite::Connection::open(dir.join("jangar.sqlite3")).unwrap();
            let values: Vec<Box<dyn rusqlite::ToSql>> = params
                .iter()
                .map(|p| -> Box<dyn rusqlite::ToSql> {
                    match p {
                        Param::Int(n) => Box::new(*n),
                        Param::Bytes(b) => Box::new(b.clone()),
                    }
                })
                .collect();
            let mut statement = conn.prepare(&sql).unwrap();
            let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            if statement.column_count() == 0 {
                statement.execute(refs.as_slice()).unwrap();
                return Vec::new();
            }
            statement
                .query_map(refs.as_slice(), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        Store::Postgres(url) => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let values: Vec<Box<dyn postgres::types::ToSql + Sync>> = params
                .iter()
                .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
                    match p {
                        Param::Int(n) => Box::new(*n),
                        Param::Bytes(b) => Box::new(b.clone()),
                    }
                })
                .collect();
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
            client.query(&sql, &refs).unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
        }
    })
    .join()
    .unwrap()
}

fn entries(store: &Store) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    sql(store, "SELECT index_number, key, id FROM {t}index_entries ORDER BY index_number, key", &[])
}

/// A session with three messages and a work order moved along, written through a server that is then stopped.
async fn written_store(dir: &TempDir) -> Store {
    let server = TestServer::start(dir).await;
    let session = server.mutation("chatSessions:create", json!({"userId": "u", "title": "t"})).await;
    for content in ["one", "two", "three"] {
        server.mutation("messages:send", json!({"sessionId": session, "role": "user", "content": content})).await;
    }
    let order = server.mutation("workOrders:create", json!({"sessionId": session, "status": "submitted"})).await;
    server.mutation("workOrders:updateStatus", json!({"workOrderId": order, "status": "accepted"})).await;
    let store = server.store.clone().unwrap();
    server.stop().await;
    store
}

/// Breaks the store in each of the four ways the check names; returns the kinds it should report.
fn break_entries(store: &Store) -> Vec<ProblemKind> {
    let all = entries(store);
    // Two entries of one index with different documents: the messages' by_session index.
    let (number, _, _) = all.iter().find(|(n, _, _)| all.iter().filter(|(m, _, _)| m == n).count() >= 3).unwrap();
    let same: Vec<_> = all.iter().filter(|(n, _, _)| n == number).cloned().collect();
    let (n, key, id) = same[0].clone();
    // Stale: the document, under a key it does not have (its creation time's last byte changed).
    let mut stale = key.clone();
    let at = stale.len() - 17;
    stale[at] ^= 1;
    let insert = "INSERT INTO {t}index_entries (index_number, key, id) VALUES ($1, $2, $3)";
    sql(store, insert, &[Param::Int(n), Param::Bytes(stale), Param::Bytes(id.clone())]);
    // Dangling: an entry for a document that does not exist.
    let mut dangling = key.clone();
    dangling.push(0);
    sql(store, insert, &[Param::Int(n), Param::Bytes(dangling), Param::Bytes(vec![7; 16])]);
    // Missing: the second document loses its entry.
    let delete = "DELETE FROM {t}index_entries WHERE index_number = $1 AND key = $2";
    sql(store, delete, &[Param::Int(n), Param::Bytes(same[1].1.clone())]);
    // Misdirected: the third document's entry names the first document.
    let update = "UPDATE {t}index_entries SET id = $1 WHERE index_number = $2 AND key = $3";
    sql(store, update, &[Param::Bytes(id), Param::Int(n), Param::Bytes(same[2].1.clone())]);
    vec![ProblemKind::Stale, ProblemKind::Dangling, ProblemKind::Missing, ProblemKind::Misdirected]
}

fn kinds(report: &jangar_engine::integrity::Report) -> Vec<ProblemKind> {
    let mut kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind).collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds
}

#[tokio::test]
async fn the_check_names_every_difference_between_an_index_and_its_documents() {
    let dir = temp_dir();
    let store = written_store(&dir).await;
    let clean = store.check();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert!(clean.documents >= 5 && clean.entries > clean.documents, "{clean:?}");
    let mut expected = break_entries(&store);
    expected.sort_by_key(|k| k.as_str());
    let report = store.check();
    assert_eq!(kinds(&report), expected, "{:#?}", report.problems);
    assert_eq!(report.problem_count, 4);
    assert!(report.problems.iter().all(|p| p.index == "chat_messages.by_session"), "{:#?}", report.problems);

    // A running server answers the same through the admin route (start-up does not touch a
    // database that is already at the current rebuild version).
    let mut server = TestServer::start(&dir).await;
    server.store = None;
    let response = server.post("/jangar/check", json!({})).await;
    assert_eq!(response.status, 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["problemCount"], 4);
    let mut listed: Vec<&str> =
        body["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, expected.iter().map(|k| k.as_str()).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn a_database_from_before_the_fix_gets_its_indexes_rebuilt_once_at_start() {
    let dir = temp_dir();
    let store = written_store(&dir).await;
    break_entries(&store);
    // What a database written by an earlier version looks like: no rebuild recorded.
    let forget = "DELETE FROM {t}meta WHERE name = 'indexes_rebuilt'";
    sql(&store, forget, &[]);
    assert!(!store.check().is_clean());
    let server = TestServer::start(&dir).await;
    // The lists read through the rebuilt index: three messages, once each.
    let sessions = server.query("chatSessions:list", json!({"userId": "u"})).await;
    let session = sessions[0]["_id"].clone();
    let messages = server.query("chatMessages:listBySession", json!({"sessionId": session})).await;
    let contents: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["one", "two", "three"]);
    server.stop().await;
    store.assert_consistent();
    // Once: the rebuild is recorded, so entries broken after it stay broken over a restart
    // (for `jangar check` to report, not for every start to pay for a rebuild).
    break_entries(&store);
    let mut server = TestServer::start(&dir).await;
    server.store = None;
    server.stop().await;
    assert_eq!(store.check().problem_count, 4);
}

#[tokio::test]
async fn a_write_over_a_lost_entry_fails_whole_instead_of_hiding_it() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let session = server.mutation("chatSessions:create", json!({"userId": "u", "title": "before"})).await;
    let store = server.store.clone().unwrap();
    server.stop().await;
    // Every entry of the session goes (the messages table is empty, so these are the session's).
    sql(&store, "DELETE FROM {t}index_entries", &[]);
    let mut server = TestServer::start(&dir).await;
    server.store = None;
    let before = server.query("chatSessions:get", json!({"sessionId": session})).await;
    // A write that moves the session in its indexes (a write that leaves its keys alone does not
    // touch its entries, and does not notice).
    let args = json!({"path": "sessions:updateLastActive", "args": {"sessionId": session}, "format": "json"});
    let response = server.post("/api/mutation", args).await;
    assert_eq!(response.status, 500, "{}", String::from_utf8_lossy(&response.body));
    let after = server.query("chatSessions:get", json!({"sessionId": session})).await;
    assert_eq!(after, before, "a failed mutation changes nothing");
    server.stop().await;
}

#[tokio::test]
async fn the_check_route_is_for_admins() {
    let dir = temp_dir();
    let key = "integrity-admin-key";
    let server = TestServer::start_custom(&dir, |config| config.admin_keys = vec![key.to_owned()]).await;
    let check = |authorization: Option<String>| {
        let server = &server;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(value) = &authorization {
                headers.push(("authorization", value.as_str()));
            }
            let url = format!("{}/jangar/check", server.url);
            server.client.send(hyper::Method::POST, &url, &headers, String::new()).await.unwrap()
        }
    };
    assert_eq!(check(None).await.status, 401);
    assert_eq!(check(Some("Convex wrong-key".into())).await.status, 401);
    let acting = jangar_engine::base64::encode(br#"{"subject":"u1","issuer":"https://idp"}"#);
    let as_user = check(Some(format!("Convex {key}:{acting}"))).await;
    assert_eq!(as_user.status, 403, "an admin acting as a user sees only that user's documents");
    let admin = check(Some(format!("Convex {key}"))).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json().unwrap()["ok"], true);
    server.stop().await;
}

fn jangar_check(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jangar")).arg("check").args(args).output().unwrap()
}

/// `jangar check`'s arguments for a stopped store.
fn store_args(store: &Store) -> Vec<String> {
    match store {
        Store::DataDir(dir) => vec!["--data-dir".into(), dir.display().to_string()],
        Store::Postgres(url) => vec!["--db".into(), url.clone()],
    }
}

#[tokio::test]
async fn jangar_check_exits_zero_one_or_two() {
    let dir = temp_dir();
    let store = written_store(&dir).await;
    let args = store_args(&store);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let clean = jangar_check(&args);
    let out = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(clean.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&clean.stderr));
    assert!(out.contains("no problems"), "{out}");

    break_entries(&store);
    let broken = jangar_check(&args);
    let out = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{out}");
    assert!(out.contains("4 problems") && out.contains("chat_messages.by_session: stale"), "{out}");
    // A reader that goes away (`jangar check | head`) does not turn the answer into a panic.
    let mut piped = Command::new(env!("CARGO_BIN_EXE_jangar"))
        .arg("check")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(piped.stdout.take());
    assert_eq!(piped.wait().unwrap().code(), Some(1));
    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let report: Value = serde_json::from_slice(&jangar_check(&json_args).stdout).unwrap();
    assert_eq!(report["problemCount"], 4);

    // Through a running server.
    let mut server = TestServer::start(&dir).await;
    server.store = None;
    let url = server.url.clone();
    // A PostgreSQL deployment's environment names its database; --url still wins.
    let remote = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jangar"));
        command.args(["check", "--url", &url]).env("POSTGRES_URL", "postgresql://jangar@127.0.0.1:1/none");
        command.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(remote.status.code(), Some(1), "{}", String::from_utf8_lossy(&remote.stderr));
    server.stop().await;

    let nowhere = dir.path().join("no-such-dir");
    let missing = jangar_check(&["--data-dir", nowhere.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("holds no Jangar database"));
}

#[tokio::test]
async fn every_test_server_fails_its_test_when_it_leaves_an_index_broken() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    server.mutation("chatSessions:create", json!({"userId": "u", "title": "t"})).await;
    let store = server.store.clone().unwrap();
    sql(&store, "DELETE FROM {t}index_entries", &[]);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(server)));
    let message = *dropped.expect_err("the harness's check fails the test").downcast::<String>().unwrap();
    // Its two declared indexes and by_creation_time.
    assert!(message.contains("found 3 problems"), "{message}");
}
