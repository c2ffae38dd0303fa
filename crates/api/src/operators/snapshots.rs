//! `npx convex export` and `import`: a snapshot ZIP made on request, and uploads imported in
//! one bulk transaction. Both run to the end inside the request that starts them, and
//! report through [`jangar_domain::system::Operations`] what the CLI's system queries then read.
//!
//! Files live in the server's scratch directory, so with several PostgreSQL replicas the
//! download must reach the replica that made the export (or use `jangar export`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json_, json};

use super::admin_only;
use crate::AppState;
use crate::error::{ApiCode, ApiError};
use crate::http::{RequestBody, json_body};
use jangar_engine::snapshot::{self, ImportFormat, ImportMode, ImportReport};
use jangar_engine::value::Value;

/// The server's scratch directory (exports, uploads), removed when the server stops, and the
/// uploads in progress.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Each upload's parts by part number: only these files are ever read back.
    uploads: Mutex<HashMap<String, BTreeMap<u32, PathBuf>>>,
    exporting: AtomicBool,
}

impl Scratch {
    pub fn new() -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new().prefix("jangar-scratch-").tempdir()?;
        Ok(Scratch { dir, uploads: Mutex::new(HashMap::new()), exporting: AtomicBool::new(false) })
    }

    fn export_path(&self, ts: u64) -> PathBuf {
        self.dir.path().join(format!("snapshot_{ts}.zip"))
    }
}

/// Marks an export as running until dropped, so an export whose request went away midway
/// (the client disconnected) does not block every later one.
struct ExportRunning<'a>(&'a AtomicBool);

impl<'a> ExportRunning<'a> {
    fn claim(flag: &'a AtomicBool) -> Option<ExportRunning<'a>> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| ExportRunning(flag))
    }
}

impl Drop for ExportRunning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn object(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn io_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("export or import file: {e}"))
}

/// `POST /api/export/request/zip`: writes a snapshot ZIP of the latest commit and reports it
/// as the latest export, `completed`, when this answers.
pub(crate) async fn request_export(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin_only(&state, &headers).await?;
    let Some(_running) = ExportRunning::claim(&state.scratch.exporting) else {
        return Err(ApiError::new(ApiCode::ExportInProgress, "An export is already running; try again when it ends."));
    };
    let started = now_ns();
    state.operations.set_export(object([
        ("state", "in_progress".into()),
        ("start_ts", Value::Int64(started)),
        ("requestor", "snapshotExport".into()),
    ]));
    let scratch = state.scratch.clone();
    let written = state
        .db
        .read_snapshot("an export", move |schema, snapshot| {
            let ts = snapshot.ts();
            let partial = scratch.dir.path().join(format!("export-{ts}.partial"));
            let file = std::fs::File::create(&partial)
                .map_err(|e| jangar_engine::storage::StorageError::Io(format!("creating the export: {e}")))?;
            let summary = snapshot::write_zip(schema, snapshot, std::io::BufWriter::new(file), &mut |_, _| {})?;
            std::fs::rename(&partial, scratch.export_path(ts))
                .map_err(|e| jangar_engine::storage::StorageError::Io(format!("keeping the export: {e}")))?;
            Ok(summary)
        })
        .await;
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            state.operations.set_export(object([
                ("state", "failed".into()),
                ("start_ts", Value::Int64(started)),
                ("requestor", "snapshotExport".into()),
            ]));
            return Err(ApiError::storage(e));
        }
    };
    // Only the latest export is kept.
    if let Ok(entries) = std::fs::read_dir(state.scratch.dir.path()) {
        let keep = state.scratch.export_path(summary.ts);
        for entry in entries.flatten() {
            let path = entry.path();
            if path != keep && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snapshot_")) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let complete = now_ns();
    let tables = summary.tables.iter().map(|(name, count)| (name.to_string(), Value::Int64(*count as i64))).collect();
    state.operations.set_export(object([
        ("state", "completed".into()),
        // The snapshot's commit timestamp names the download.
        ("start_ts", Value::Int64(summary.ts as i64)),
        ("complete_ts", Value::Int64(complete)),
        ("expiration_ts", Value::Int64(complete + 7 * 24 * 3_600 * 1_000_000_000)),
        ("format", object([("format", "zip".into()), ("include_storage", false.into())])),
        ("requestor", "snapshotExport".into()),
        ("tables", Value::Object(tables)),
    ]));
    Ok(StatusCode::OK.into_response())
}

/// `GET /api/export/zip/{ts}`: the export's ZIP.
pub(crate) async fn download_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ts): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers).await?;
    let ts: u64 = ts.parse().map_err(|_| ApiError::new(ApiCode::BadRequest, format!("{ts:?} names no export.")))?;
    let path = state.scratch.export_path(ts);
    let bytes = tokio::fs::read(&path).await.map_err(|_| {
        ApiError::new(
            ApiCode::ExportNotFound,
            format!("There is no export {ts} on this server (only the latest is kept)."),
        )
    })?;
    let disposition = format!("attachment; filename=snapshot_{ts}.zip");
    Ok((
        [(header::CONTENT_TYPE, "application/zip".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from(bytes),
    )
        .into_response())
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /api/import/start_upload`.
pub(crate) async fn start_upload(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let token = random_token();
    state.scratch.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), BTreeMap::new());
    Ok(Json(json!({"uploadToken": token})))
}

#[derive(serde::Deserialize)]
pub(crate) struct PartQuery {
    #[serde(rename = "uploadToken")]
    upload_token: String,
    #[serde(rename = "partNumber")]
    part_number: u32,
}

/// `POST /api/import/upload_part?uploadToken=…&partNumber=N`: one chunk, kept as a file; the
/// answer is the part's token, a JSON string.
pub(crate) async fn upload_part(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(part): Query<PartQuery>,
    body: RequestBody,
) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let path = {
        let mut uploads = state.scratch.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let parts = uploads
            .get_mut(&part.upload_token)
            .ok_or_else(|| ApiError::new(ApiCode::BadRequest, "Unknown uploadToken: start the upload first."))?;
        // The token is known, so it is one of ours (hex): safe in a file name.
        let path = state.scratch.dir.path().join(format!("upload-{}-{}", part.upload_token, part.part_number));
        parts.insert(part.part_number, path.clone());
        path
    };
    tokio::fs::write(&path, &body.0).await.map_err(io_error)?;
    Ok(Json(Json_::String(part.part_number.to_string())))
}

/// `POST /api/import/finish_upload`: joins the parts and imports them, all or nothing; the
/// outcome is the import's document, which `_system/cli/queryImport` returns.
pub(crate) async fn finish_upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    let request = json_body(&body)?;
    let bad = |message: &str| ApiError::new(ApiCode::BadRequest, message.to_owned());
    let token = request["uploadToken"].as_str().ok_or_else(|| bad("uploadToken is missing."))?;
    let parts = state
        .scratch
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(token)
        .ok_or_else(|| bad("Unknown uploadToken: start the upload first."))?;
    let mut bytes = Vec::new();
    // The parts are removed whether or not they all join.
    let joined: Result<(), ApiError> = async {
        for part in request["partTokens"].as_array().ok_or_else(|| bad("partTokens must be an array."))? {
            let path = part
                .as_str()
                .and_then(|number| number.parse::<u32>().ok())
                .and_then(|number| parts.get(&number))
                .ok_or_else(|| bad("A part token names no part of this upload."))?;
            bytes.write_all(&tokio::fs::read(path).await.map_err(io_error)?).map_err(io_error)?;
        }
        Ok(())
    }
    .await;
    for path in parts.values() {
        let _ = tokio::fs::remove_file(path).await;
    }
    joined?;
    let import = &request["import"];
    if import["componentPath"].as_str().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::new(ApiCode::BadRequest, "This deployment has no components."));
    }
    let format =
        import["format"].as_str().and_then(ImportFormat::parse).ok_or_else(|| bad("Unknown import format."))?;
    let mode = import["mode"]
        .as_str()
        .map_or(Some(ImportMode::RequireEmpty), ImportMode::parse)
        .ok_or_else(|| bad("Unknown import mode."))?;
    let table = import["tableName"].as_str().map(str::to_owned);
    let id = random_token();
    let outcome = run_import(&state.db, format, table.as_deref(), bytes, mode).await;
    let created = now_ns() as f64 / 1e6;
    let import_state = match &outcome {
        Ok(report) => object([
            ("state", "completed".into()),
            ("timestamp", Value::Int64(now_ns())),
            ("num_rows_written", Value::Int64(report.rows_written() as i64)),
            ("checkpoint_messages", Value::Array(report_lines(report).into_iter().map(Value::from).collect())),
        ]),
        Err(message) => object([("state", "failed".into()), ("error_message", message.as_str().into())]),
    };
    state.operations.set_import(
        &id,
        object([("_id", id.as_str().into()), ("_creationTime", Value::Float64(created)), ("state", import_state)]),
    );
    Ok(Json(json!({"importId": id})))
}

/// Parses and writes an import in one bulk mutation; the error is the message to show.
pub async fn run_import(
    db: &jangar_engine::database::Database,
    format: ImportFormat,
    table: Option<&str>,
    bytes: Vec<u8>,
    mode: ImportMode,
) -> Result<ImportReport, String> {
    let table = table.map(str::to_owned);
    let parsed = tokio::task::spawn_blocking(move || snapshot::parse(format, table.as_deref(), &bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    // A failed import returns its error, so the bulk mutation rolls back whole. The domain's
    // aggregates are derived again from what is now stored.
    let written = db
        .mutate_bulk(move |tx| {
            let report = snapshot::apply(tx, parsed, mode)?;
            jangar_domain::runs::recount(tx)?;
            Ok::<_, snapshot::ImportError>(report)
        })
        .await;
    written.map(|outcome| outcome.value).map_err(|e| format!("{}: {}", e.code, e.message))
}

/// The report of an import as lines for a person: what was remapped and skipped.
pub fn report_lines(report: &ImportReport) -> Vec<String> {
    let mut lines: Vec<String> = report
        .remapped
        .iter()
        .map(|(table, from, to)| format!("Table {table}: ids renumbered from table number {from} to {to}"))
        .collect();
    lines.extend(report.skipped.iter().map(|what| format!("Skipped {what}")));
    lines
}

/// `POST /api/perform_import`: imports run when their upload finishes, so there is nothing
/// left to confirm.
pub(crate) async fn perform_import(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    admin_only(&state, &headers).await?;
    Ok(Json(json!({})))
}
