//! `jangar export` and `jangar import`: Convex snapshot ZIPs (and single-table files) moved
//! in and out of a running server (through the routes `npx convex` uses) or straight in and
//! out of a stopped data directory or a PostgreSQL database, which is how a deployment moves
//! between SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jangar_api::client::HttpClient;
use jangar_api::operators::snapshots::{report_lines, run_import};
use jangar_engine::database::Database;
use jangar_engine::snapshot::{self, ImportFormat, ImportMode};
use jangar_engine::storage::Storage;
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
use serde_json::json;

/// Where a snapshot comes from or goes to.
pub enum Target {
    /// A running server, with an admin key if it needs one.
    Server { url: String, admin_key: Option<String> },
    /// Storage this process opens itself.
    Local(LocalStore),
}

/// Storage no server is using, opened by `jangar export` / `import` itself.
pub enum LocalStore {
    /// A data directory no server is using.
    DataDir(PathBuf),
    Postgres(String),
}

/// Writes a snapshot ZIP of `target` to `out`; returns what to tell the operator.
pub async fn export(target: Target, out: &Path) -> Result<String, String> {
    match target {
        Target::Server { url, admin_key } => export_from_server(&url, admin_key.as_deref(), out).await,
        Target::Local(local) => {
            let (db, _committer) = open(local).await?;
            let file = std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            let tables = jangar_domain::schema::schema().tables().iter().filter(|t| !t.is_system()).count();
            let bar = progress(tables as u64, "{bar:30} {pos}/{len} tables {msg}");
            let shown = bar.clone();
            let summary = db
                .read_snapshot("an export", move |schema, snapshot| {
                    snapshot::write_zip(schema, snapshot, std::io::BufWriter::new(file), &mut |table, count| {
                        shown.set_message(format!("{table}: {count} documents"));
                        shown.inc(1);
                    })
                })
                .await
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            let documents: u64 = summary.tables.iter().map(|(_, n)| n).sum();
            Ok(format!("Exported {documents} documents of {} tables to {}", summary.tables.len(), out.display()))
        }
    }
}

/// Imports `file` into `target`, all or nothing; returns what to tell the operator.
pub async fn import(
    target: Target,
    file: &Path,
    table: Option<String>,
    format: Option<ImportFormat>,
    mode: ImportMode,
) -> Result<String, String> {
    let format = format
        .or_else(|| ImportFormat::of_path(file))
        .ok_or_else(|| format!("cannot tell the format of {} from its extension: give --format", file.display()))?;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    match target {
        Target::Server { url, admin_key } => {
            import_to_server(&url, admin_key.as_deref(), bytes, table, format, mode).await
        }
        Target::Local(local) => {
            let (db, _committer) = open(local).await?;
            let spinner = progress(0, "{spinner} importing {msg}");
            spinner.set_message(file.display().to_string());
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            let report = run_import(&db, format, table.as_deref(), bytes, mode).await;
            spinner.finish_and_clear();
            let report = report?;
            let mut lines = report_lines(&report);
            lines.push(format!("Added {} documents", report.rows_written()));
            Ok(lines.join("\n"))
        }
    }
}

/// A progress bar (or spinner, for an unknown length) on stderr; indicatif draws nothing when
/// stderr is not a terminal, so logs and pipes get only the closing line.
fn progress(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = if len == 0 { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::new(len) };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

async fn open(store: LocalStore) -> Result<(Arc<Database>, jangar_engine::database::CommitterHandle), String> {
    let schema = Arc::new(jangar_domain::schema::schema());
    let opened = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let storage: Arc<dyn Storage> = match store {
            LocalStore::DataDir(dir) => {
                Arc::new(SqliteStorage::open(&dir, &schema, Durability::Full).map_err(|e| e.to_string())?)
            }
            LocalStore::Postgres(url) => Arc::new(PostgresStorage::open(&url, &schema).map_err(|e| e.to_string())?),
        };
        Database::start(schema, storage, 0).map_err(|e| e.to_string())
    });
    opened.await.map_err(|e| e.to_string())?
}

struct Admin<'a> {
    client: HttpClient,
    url: &'a str,
    authorization: Option<String>,
}

impl Admin<'_> {
    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<jangar_api::client::HttpResponse, String> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let response = self.client.send(method, &url, &headers, body).await?;
        if !response.status.is_success() {
            let body = response.json().unwrap_or_default();
            return Err(format!("{path}: {} {}", response.status, body["message"].as_str().unwrap_or("")));
        }
        Ok(response)
    }

    /// Runs a system query over HTTP and returns its value.
    async fn query(&self, path: &str, args: serde_json::Value) -> Result<serde_json::Value, String> {
        let body = json!({"path": path, "args": args, "format": "convex_encoded_json"}).to_string();
        let answer = self.call(hyper::Method::POST, "/api/query", body.into_bytes()).await?.json()?;
        match answer["status"].as_str() {
            Some("success") => Ok(answer["value"].clone()),
            _ => Err(answer["errorMessage"].as_str().unwrap_or("the query failed").to_owned()),
        }
    }
}

fn admin<'a>(url: &'a str, admin_key: Option<&str>) -> Admin<'a> {
    Admin { client: HttpClient::default(), url, authorization: admin_key.map(|k| format!("Convex {}", k.trim())) }
}

async fn export_from_server(url: &str, admin_key: Option<&str>, out: &Path) -> Result<String, String> {
    let server = admin(url, admin_key);
    server.call(hyper::Method::POST, "/api/export/request/zip?includeStorage=false", Vec::new()).await?;
    let latest = server.query("_system/cli/exports:getLatest", json!({})).await?;
    let ts = jangar_engine::value::Value::from_json(&latest["start_ts"])
        .ok()
        .and_then(|v| if let jangar_engine::value::Value::Int64(ts) = v { Some(ts) } else { None })
        .filter(|_| latest["state"] == "completed")
        .ok_or_else(|| format!("the export did not complete: {latest}"))?;
    let zip = server.call(hyper::Method::GET, &format!("/api/export/zip/{ts}"), Vec::new()).await?;
    std::fs::write(out, &zip.body).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(format!("Exported the snapshot at {ts} ({} bytes) to {}", zip.body.len(), out.display()))
}

async fn import_to_server(
    url: &str,
    admin_key: Option<&str>,
    bytes: Vec<u8>,
    table: Option<String>,
    format: ImportFormat,
    mode: ImportMode,
) -> Result<String, String> {
    let server = admin(url, admin_key);
    let started = server.call(hyper::Method::POST, "/api/import/start_upload", Vec::new()).await?.json()?;
    let token = started["uploadToken"].as_str().ok_or("the server gave no upload token")?.to_owned();
    let mut parts = Vec::new();
    let bar = progress(bytes.len() as u64, "{bar:30} {bytes}/{total_bytes} uploaded");
    for (number, chunk) in bytes.chunks(jangar_engine::knobs::IMPORT_PART_BYTES).enumerate() {
        let path = format!("/api/import/upload_part?uploadToken={token}&partNumber={}", number + 1);
        parts.push(server.call(hyper::Method::POST, &path, chunk.to_vec()).await?.json()?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let import = json!({"tableName": table, "mode": mode.as_str(), "format": format.as_str()});
    let finish = json!({"import": import, "uploadToken": token, "partTokens": parts});
    let finished =
        server.call(hyper::Method::POST, "/api/import/finish_upload", finish.to_string().into_bytes()).await?.json()?;
    let id = finished["importId"].as_str().ok_or("the server gave no import id")?;
    let document = server.query("_system/cli/queryImport", json!({"importId": id})).await?;
    let state = &document["state"];
    match state["state"].as_str() {
        Some("completed") => {
            let mut lines: Vec<String> = state["checkpoint_messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let written = jangar_engine::value::Value::from_json(&state["num_rows_written"])
                .ok()
                .map_or_else(|| state["num_rows_written"].to_string(), |v| v.to_string());
            lines.push(format!("Added {written} documents"));
            Ok(lines.join("\n"))
        }
        _ => Err(state["error_message"].as_str().unwrap_or("the import failed").to_owned()),
    }
}
