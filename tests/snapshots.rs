//! `jangar export` and `jangar import` as an operator runs them: a snapshot ZIP from a running
//! server, imported into a stopped data directory and into PostgreSQL with every id and
//! reference kept, a snapshot of another deployment with other table numbers renumbered, and
//! imports that fail whole.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use jangar_engine::id::DocumentId;
use jangar_test_support::postgres::TestPostgres;
use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};

fn jangar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jangar")).args(args).env_remove("POSTGRES_URL").output().unwrap()
}

fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// Every entry of a ZIP by name.
fn entries(zip: &Path) -> BTreeMap<String, String> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            (entry.name().unwrap().into_owned(), text)
        })
        .collect()
}

/// A server on SQLite in `data` (else in `dir`), whatever backend the suite runs on: these
/// tests read and write its data directory with `jangar export` and `import`.
async fn sqlite_server(dir: &jangar_test_support::TempDir, data: Option<&Path>) -> TestServer {
    let data = data.map(Path::to_path_buf);
    TestServer::start_custom(dir, move |config| {
        config.database_url = None;
        if let Some(data) = data {
            config.data_dir = data;
        }
    })
    .await
}

/// A session with two messages and a work order: documents that refer to each other.
async fn seed(server: &TestServer) -> (String, String) {
    let session = server.mutation("chatSessions:create", json!({"userId": "u1", "title": "moved"})).await;
    let session = session.as_str().unwrap().to_owned();
    let mut message = String::new();
    for content in ["first", "second"] {
        let id = server
            .mutation("chatMessages:append", json!({"sessionId": session, "role": "user", "content": content}))
            .await;
        message = id.as_str().unwrap().to_owned();
    }
    (session, message)
}

#[tokio::test]
async fn a_deployment_moves_from_sqlite_to_postgresql_and_back_with_every_id_kept() {
    let dir = temp_dir();
    let server = sqlite_server(&dir, None).await;
    let (session, _) = seed(&server).await;
    let zip = dir.path().join("snapshot.zip");
    let url = server.url.clone();
    let zip_arg = zip.to_str().unwrap().to_owned();
    let exported = tokio::task::spawn_blocking(move || jangar(&["export", "--url", &url, "--out", &zip_arg]));
    succeeded(&exported.await.unwrap());
    server.stop().await;
    let original = entries(&zip);
    let sessions = &original["chat_sessions/documents.jsonl"];
    assert!(sessions.contains(&session), "{sessions}");
    assert_eq!(original["chat_messages/documents.jsonl"].lines().count(), 2);
    assert_eq!(original["chat_messages/generated_schema.jsonl"].trim(), "\"uniform\"");
    let tables = &original["_tables/documents.jsonl"];
    assert!(tables.contains(r#"{"id":10003,"name":"chat_sessions"}"#), "{tables}");

    // Into a new data directory, then out of it: the same snapshot.
    let copy = temp_dir();
    let data = copy.path().join("data");
    let (data_arg, zip_arg) = (data.to_str().unwrap(), zip.to_str().unwrap());
    let imported = succeeded(&jangar(&["import", zip_arg, "--data-dir", data_arg]));
    assert!(imported.contains("Added"), "{imported}");
    let again = copy.path().join("again.zip");
    succeeded(&jangar(&["export", "--data-dir", data_arg, "--out", again.to_str().unwrap()]));
    assert_eq!(entries(&again), original, "the data directory holds exactly what was exported");

    // Into PostgreSQL and out of it.
    let Some(postgres) = TestPostgres::shared() else {
        eprintln!("no PostgreSQL server binaries: the PostgreSQL leg is skipped");
        return;
    };
    let database = postgres.fresh_database();
    succeeded(&jangar(&["import", zip_arg, "--db", &database]));
    let from_postgres = copy.path().join("postgres.zip");
    succeeded(&jangar(&["export", "--db", &database, "--out", from_postgres.to_str().unwrap()]));
    assert_eq!(entries(&from_postgres), original, "PostgreSQL holds exactly what SQLite exported");
}

/// Rewrites every id of the snapshot's `chat_sessions` and `chat_messages` into the table
/// numbers another deployment gave them (7 and 8), as Convex would have exported them.
fn as_another_deployment(entries: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let renumber = |text: &str| -> String {
        let mut out = text.to_owned();
        for token in text.split('"') {
            if let Ok(id) = DocumentId::decode(token) {
                let table = match id.table {
                    10_003 => 7,
                    10_004 => 8,
                    other => other,
                };
                out = out.replace(token, &DocumentId { table, ..id }.encode());
            }
        }
        out
    };
    let mut other: BTreeMap<String, String> =
        entries.iter().map(|(name, text)| (name.clone(), renumber(text))).collect();
    let tables = other["_tables/documents.jsonl"]
        .replace(r#""id":10003,"#, r#""id":7,"#)
        .replace(r#""id":10004,"#, r#""id":8,"#);
    other.insert("_tables/documents.jsonl".into(), tables);
    other
}

fn write_zip(path: &Path, entries: &BTreeMap<String, String>) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, text) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[tokio::test]
async fn a_snapshot_with_other_table_numbers_is_renumbered_references_and_all() {
    let dir = temp_dir();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let server = sqlite_server(&dir, Some(&source)).await;
    let (session, message) = seed(&server).await;
    server.stop().await;
    let zip = dir.path().join("ours.zip");
    succeeded(&jangar(&["export", "--data-dir", source.to_str().unwrap(), "--out", zip.to_str().unwrap()]));
    let theirs = as_another_deployment(&entries(&zip));
    let old_session = DocumentId { table: 7, ..DocumentId::decode(&session).unwrap() }.encode();
    assert!(theirs["chat_messages/documents.jsonl"].contains(&old_session), "the references name table 7");
    let their_zip = dir.path().join("theirs.zip");
    write_zip(&their_zip, &theirs);

    let target = temp_dir();
    let imported =
        succeeded(&jangar(&["import", their_zip.to_str().unwrap(), "--data-dir", target.path().to_str().unwrap()]));
    assert!(imported.contains("chat_sessions: ids renumbered from table number 7 to 10003"), "{imported}");
    assert!(imported.contains("chat_messages: ids renumbered from table number 8 to 10004"), "{imported}");
    // Served again, the session has its old id, and its messages still point at it.
    let server = sqlite_server(&target, None).await;
    let messages = server.query("chatMessages:listBySession", json!({"sessionId": session})).await;
    let ids: Vec<&str> = messages.as_array().unwrap().iter().map(|m| m["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{messages}");
    assert!(ids.contains(&message.as_str()));
    assert_eq!(messages[0]["sessionId"], session.as_str());
}

#[tokio::test]
async fn a_bad_line_fails_the_whole_import_and_says_where() {
    let dir = temp_dir();
    let server = sqlite_server(&dir, None).await;
    let session = server.mutation("chatSessions:create", json!({"userId": "u1", "title": "kept"})).await;
    server.stop().await;
    let file = dir.path().join("sessions.jsonl");
    let now = 1.7e12;
    let good = json!({"userId": "u2", "title": "new", "createdAt": now, "updatedAt": now, "lastActiveAt": now, "lastMessageAt": now});
    let bad = json!({"userId": "u3", "title": 5, "createdAt": now, "updatedAt": now, "lastActiveAt": now, "lastMessageAt": now});
    std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
    let data = dir.path().to_str().unwrap();
    let refused =
        jangar(&["import", file.to_str().unwrap(), "--table", "chat_sessions", "--append", "--data-dir", data]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("InvalidDocument: line 2 of \"chat_sessions\""), "{stderr}");
    // Without --append, a table that holds documents is refused before anything is read.
    let not_empty = jangar(&["import", file.to_str().unwrap(), "--table", "chat_sessions", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&not_empty.stderr).contains("is not empty"));

    let server = sqlite_server(&dir, None).await;
    let listed = server.query("chatSessions:list", json!({"userId": "u2"})).await;
    assert_eq!(listed, json!([]), "the good first line was not written either");
    let kept: Value = server.query("chatSessions:get", json!({"sessionId": session})).await;
    assert_eq!(kept["title"], "kept");
}

#[tokio::test]
async fn the_run_counters_are_derived_again_from_the_imported_runs() {
    let dir = temp_dir();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let server = sqlite_server(&dir, Some(&source)).await;
    let session = server.mutation("chatSessions:create", json!({"userId": "u1", "title": "runs"})).await;
    for title in ["one", "two"] {
        let order = server.mutation("workOrders:create", json!({"sessionId": session, "title": title})).await;
        server.mutation("runs:start", json!({"workOrderId": order, "temporalWorkflowId": title})).await;
    }
    let expected = server.query("runs:getDashboard", json!({})).await["counts"].clone();
    server.stop().await;
    let zip = dir.path().join("runs.zip");
    succeeded(&jangar(&["export", "--data-dir", source.to_str().unwrap(), "--out", zip.to_str().unwrap()]));
    // As the upstream app's Convex export would be: no counters table.
    let mut without_counters = entries(&zip);
    without_counters.retain(|name, _| !name.starts_with("counters/"));
    let upstream = dir.path().join("upstream.zip");
    write_zip(&upstream, &without_counters);

    let target = temp_dir();
    succeeded(&jangar(&["import", upstream.to_str().unwrap(), "--data-dir", target.path().to_str().unwrap()]));
    let server = sqlite_server(&target, None).await;
    let counts = server.query("runs:getDashboard", json!({})).await["counts"].clone();
    assert_eq!(counts, expected);
    assert_ne!(counts, json!({}), "{counts}");
}

#[tokio::test]
async fn an_upload_reads_back_only_its_own_parts() {
    let dir = temp_dir();
    let server = sqlite_server(&dir, None).await;
    let secret = dir.path().join("secret.jsonl");
    std::fs::write(&secret, "{\"name\":\"not uploaded\",\"createdAt\":1}\n").unwrap();
    let started = server.post("/api/import/start_upload", json!({})).await.json().unwrap();
    let token = started["uploadToken"].as_str().unwrap().to_owned();
    let route = format!("/api/import/upload_part?uploadToken={token}&partNumber=1");
    let part = server.post(&route, json!({"name": "uploaded", "createdAt": 1})).await.json().unwrap();
    assert_eq!(part, json!("1"));
    // A part token that would name a file outside the upload is refused, and nothing imported.
    let escape = format!("../{}", secret.file_name().unwrap().to_str().unwrap());
    let import = json!({"tableName": "teams", "mode": "append", "format": "jsonLines"});
    let finish = json!({"import": import, "uploadToken": token, "partTokens": [escape]});
    let refused = server.post("/api/import/finish_upload", finish).await;
    assert_eq!(refused.status, 400);
    assert!(refused.json().unwrap()["message"].as_str().unwrap().contains("names no part of this upload"));
    // The refused upload is gone: finishing it again names no upload.
    let finish = json!({"import": import, "uploadToken": token, "partTokens": ["1"]});
    assert_eq!(server.post("/api/import/finish_upload", finish).await.status, 400);
}
