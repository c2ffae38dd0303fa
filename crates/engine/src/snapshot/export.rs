//! Writes one snapshot of the database as Convex's snapshot ZIP.

use std::io::{Seek, Write};

use zip::write::SimpleFileOptions;

use super::{UNIFORM, to_export_json};
use crate::knobs::EXPORT_CHUNK;
use crate::schema::Schema;
use crate::storage::{Snapshot, StorageError, Timestamp};

const README: &str = "# A snapshot of a deployment\n\n\
This archive is a consistent snapshot of a Jangar deployment in the format of Convex's \
snapshot exports: `_tables/documents.jsonl` lists the tables with their numbers, and each \
`<table>/documents.jsonl` holds the table's documents, one JSON object per line. Import it \
with `jangar import` or `npx convex import`.\n";

/// What an export wrote: the snapshot's timestamp and each table with its document count.
#[derive(Debug)]
pub struct ExportSummary {
    pub ts: Timestamp,
    pub tables: Vec<(&'static str, u64)>,
}

/// Writes every table of the app (not the system tables) from `snapshot` into `out`, in
/// Convex's layout (tables in number order; Convex writes the smallest first, which imports
/// do not depend on). `progress` hears each table's name and count as it is done.
pub fn write_zip<W: Write + Seek>(
    schema: &Schema,
    snapshot: &mut dyn Snapshot,
    out: W,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<ExportSummary, StorageError> {
    let io = |e: std::io::Error| StorageError::Io(format!("writing the export: {e}"));
    let zip_error = |e: zip::result::ZipError| StorageError::Io(format!("writing the export: {e}"));
    let options =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(out);
    zip.start_file("README.md", options).map_err(zip_error)?;
    zip.write_all(README.as_bytes()).map_err(io)?;

    let mut tables: Vec<_> = schema.tables().iter().filter(|t| !t.is_system()).collect();
    tables.sort_by_key(|t| t.number);
    zip.start_file("_tables/documents.jsonl", options).map_err(zip_error)?;
    for table in &tables {
        // Keys in order, as Convex writes them (whatever serde_json's map keeps).
        let name = serde_json::Value::from(table.name);
        writeln!(zip, r#"{{"id":{},"name":{name}}}"#, table.number).map_err(io)?;
    }

    let mut summary = ExportSummary { ts: snapshot.ts(), tables: Vec::new() };
    for table in tables {
        zip.start_file(format!("{}/documents.jsonl", table.name), options).map_err(zip_error)?;
        let mut count = 0u64;
        let mut after = None;
        loop {
            let documents = snapshot.documents(table.number, after.as_ref(), EXPORT_CHUNK)?;
            for document in &documents {
                let line = to_export_json(&document.to_value()).to_string();
                zip.write_all(line.as_bytes()).map_err(io)?;
                zip.write_all(b"\n").map_err(io)?;
            }
            count += documents.len() as u64;
            match documents.last() {
                Some(last) if documents.len() == EXPORT_CHUNK => after = Some(last.id),
                _ => break,
            }
        }
        zip.start_file(format!("{}/generated_schema.jsonl", table.name), options).map_err(zip_error)?;
        writeln!(zip, "{UNIFORM}").map_err(io)?;
        progress(table.name, count);
        summary.tables.push((table.name, count));
    }
    zip.finish().map_err(zip_error)?;
    Ok(summary)
}
