//! Reads a snapshot ZIP or a single-table file and writes it in one transaction: all of it
//! or, on the first bad line, none of it.

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value as Json;

use super::{UNIFORM, from_export_json, from_plain_json};
use crate::document::Document;
use crate::id::{DocumentId, TableNumber};
use crate::keys::IndexRange;
use crate::schema::{BY_CREATION_TIME, TableDef, Validator};
use crate::storage::Order;
use crate::transaction::{All, Transaction};
use crate::value::{Object, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    JsonLines,
    JsonArray,
    Zip,
}

impl ImportFormat {
    /// Convex's names, as `finish_upload` sends them.
    pub fn parse(word: &str) -> Option<ImportFormat> {
        Some(match word {
            "csv" => ImportFormat::Csv,
            "jsonLines" | "jsonl" => ImportFormat::JsonLines,
            "jsonArray" | "json" => ImportFormat::JsonArray,
            "zip" => ImportFormat::Zip,
            _ => return None,
        })
    }

    /// Convex's name, the inverse of [`ImportFormat::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Csv => "csv",
            ImportFormat::JsonLines => "jsonLines",
            ImportFormat::JsonArray => "jsonArray",
            ImportFormat::Zip => "zip",
        }
    }

    /// The format a file's extension names, as `npx convex import` decides it.
    pub fn of_path(path: &std::path::Path) -> Option<ImportFormat> {
        ImportFormat::parse(path.extension()?.to_str()?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Every table imported into must be empty (the default).
    RequireEmpty,
    Append,
    /// The tables imported into are emptied first.
    Replace,
    /// Every table of the app is emptied first, named in the import or not.
    ReplaceAll,
}

impl ImportMode {
    /// Convex's name, the inverse of [`ImportMode::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::RequireEmpty => "requireEmpty",
            ImportMode::Append => "append",
            ImportMode::Replace => "replace",
            ImportMode::ReplaceAll => "replaceAll",
        }
    }

    pub fn parse(word: &str) -> Option<ImportMode> {
        Some(match word {
            "requireEmpty" => ImportMode::RequireEmpty,
            "append" => ImportMode::Append,
            "replace" => ImportMode::Replace,
            "replaceAll" => ImportMode::ReplaceAll,
            _ => return None,
        })
    }
}

/// Why an import was refused; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImportError {
    /// `InvalidImport` (the file), `ImportConflict` (an id for another table, a table that is
    /// not empty), `InvalidDocument` (a document its table's validator refuses).
    pub code: &'static str,
    pub message: String,
}

/// The storage failed under the import (or it broke an engine rule): nothing was written.
impl From<crate::error::EngineError> for ImportError {
    fn from(error: crate::error::EngineError) -> ImportError {
        ImportError { code: "ImportFailed", message: error.to_string() }
    }
}

fn invalid(message: impl Into<String>) -> ImportError {
    ImportError { code: "InvalidImport", message: message.into() }
}

/// One table's documents as read from the file, each with where it came from.
#[derive(Debug)]
pub struct ImportedTable {
    pub name: String,
    rows: Vec<(String, Object)>,
}

/// A parsed import: its tables, and the table numbers of the deployment it came from (a
/// snapshot ZIP's `_tables/documents.jsonl`), by table name.
#[derive(Debug)]
pub struct ParsedImport {
    pub tables: Vec<ImportedTable>,
    source_numbers: HashMap<String, TableNumber>,
    /// What the file held that Jangar does not import (file storage), for the report.
    pub skipped: Vec<String>,
}

/// What an import wrote.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub written: Vec<(String, u64)>,
    /// Tables whose numbers differ from the source deployment's: (table, from, to). Every `_id`
    /// of them, and every `v.id` field naming them, was rewritten.
    pub remapped: Vec<(String, TableNumber, TableNumber)>,
    pub skipped: Vec<String>,
}

impl ImportReport {
    pub fn rows_written(&self) -> u64 {
        self.written.iter().map(|(_, n)| n).sum()
    }
}

/// Reads `bytes` in `format`; `table` names the target of a single-table format (and must be
/// absent for a ZIP, which names its own).
pub fn parse(format: ImportFormat, table: Option<&str>, bytes: &[u8]) -> Result<ParsedImport, ImportError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let single = |rows| -> Result<ParsedImport, ImportError> {
        let name = table.ok_or_else(|| invalid("A .csv, .jsonl or .json import needs the table to import into."))?;
        Ok(ParsedImport {
            tables: vec![ImportedTable { name: name.to_owned(), rows }],
            source_numbers: HashMap::new(),
            skipped: Vec::new(),
        })
    };
    match format {
        ImportFormat::JsonLines => single(json_lines(bytes, "line", false)?),
        ImportFormat::JsonArray => {
            let json: Json = serde_json::from_slice(bytes).map_err(|e| invalid(format!("Not a JSON array: {e}")))?;
            let Json::Array(items) = json else { return Err(invalid("A .json import must be one array of objects.")) };
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| row(&format!("element {}", i + 1), item, false))
                .collect::<Result<_, _>>()?;
            single(rows)
        }
        ImportFormat::Csv => single(csv_rows(bytes)?),
        ImportFormat::Zip => {
            if table.is_some() {
                return Err(invalid("A ZIP snapshot names its own tables: import it without a table name."));
            }
            zip_tables(bytes)
        }
    }
}

fn row(place: &str, json: &Json, uniform: bool) -> Result<(String, Object), ImportError> {
    let value = if uniform { from_export_json(json) } else { from_plain_json(json) };
    match value.map_err(|e| invalid(format!("{place}: {e}")))? {
        Value::Object(object) => Ok((place.to_owned(), object)),
        _ => Err(invalid(format!("{place}: a document must be a JSON object."))),
    }
}

fn json_lines(bytes: &[u8], what: &str, uniform: bool) -> Result<Vec<(String, Object)>, ImportError> {
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("The file is not UTF-8: {e}")))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("{what} {}", i + 1);
        let json: Json = serde_json::from_str(line).map_err(|e| invalid(format!("{place}: not JSON: {e}")))?;
        rows.push(row(&place, &json, uniform)?);
    }
    Ok(rows)
}

/// A header row, then one document per row: a cell that reads as a number is a float64, any
/// other a string (Convex's rule).
fn csv_rows(bytes: &[u8]) -> Result<Vec<(String, Object)>, ImportError> {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader.headers().map_err(|e| invalid(format!("line 1: {e}")))?.clone();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let place = format!("line {}", i + 2);
        let record = record.map_err(|e| invalid(format!("{place}: {e}")))?;
        let object = header
            .iter()
            .zip(record.iter())
            .map(|(name, cell)| {
                let value = cell.parse::<f64>().map_or_else(|_| Value::String(cell.to_owned()), Value::Float64);
                (name.to_owned(), value)
            })
            .collect();
        rows.push((place, object));
    }
    Ok(rows)
}

fn zip_tables(bytes: &[u8]) -> Result<ParsedImport, ImportError> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| invalid(format!("Not a ZIP archive: {e}")))?;
    let mut files: HashMap<(String, String), Vec<u8>> = HashMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| invalid(format!("Reading the ZIP: {e}")))?;
        let name = entry.name().map_err(|e| invalid(format!("Reading the ZIP: {e}")))?.into_owned();
        let parts: Vec<&str> = name.split('/').collect();
        let [.., table, file] = parts.as_slice() else { continue };
        if parts.contains(&"_components") {
            return Err(invalid(format!("{name}: the snapshot has components, which Jangar does not have.")));
        }
        if !matches!(*file, "documents.jsonl" | "generated_schema.jsonl") {
            continue;
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| invalid(format!("Reading {name}: {e}")))?;
        files.insert(((*table).to_owned(), (*file).to_owned()), content);
    }
    let mut source_numbers = HashMap::new();
    if let Some(listing) = files.get(&("_tables".to_owned(), "documents.jsonl".to_owned())) {
        for (place, object) in json_lines(listing, "_tables/documents.jsonl line", false)? {
            match (object.get("name"), object.get("id")) {
                (Some(Value::String(name)), Some(Value::Float64(id))) if id.fract() == 0.0 && *id >= 1.0 => {
                    source_numbers.insert(name.clone(), *id as TableNumber);
                }
                _ => return Err(invalid(format!("{place}: expected {{\"name\": …, \"id\": <table number>}}."))),
            }
        }
    }
    let mut tables = Vec::new();
    let mut skipped = Vec::new();
    let mut names: Vec<&String> =
        files.keys().filter(|(_, file)| file == "documents.jsonl").map(|(table, _)| table).collect();
    names.sort();
    for name in names {
        let documents = &files[&(name.clone(), "documents.jsonl".to_owned())];
        if name == "_storage" {
            if documents.iter().any(|b| !b.is_ascii_whitespace()) {
                skipped.push("file storage (_storage): Jangar stores no files".to_owned());
            }
            continue;
        }
        if name.starts_with('_') {
            continue;
        }
        let uniform = match files.get(&(name.clone(), "generated_schema.jsonl".to_owned())) {
            None => false,
            Some(schema) => {
                let first = String::from_utf8_lossy(schema).lines().next().unwrap_or_default().trim().to_owned();
                if first != UNIFORM {
                    return Err(invalid(format!(
                        "{name}/generated_schema.jsonl is in an older Convex format that Jangar does not read \
                         (it would lose int64 and bytes values); export the snapshot again."
                    )));
                }
                true
            }
        };
        let rows = json_lines(documents, &format!("{name}/documents.jsonl line"), uniform)?;
        tables.push(ImportedTable { name: name.clone(), rows });
    }
    Ok(ParsedImport { tables, source_numbers, skipped })
}

/// Writes `import` in `mode` inside `tx` (a bulk transaction): ids keep their internal part
/// and take this deployment's table numbers, `_creationTime`s are kept, every document is
/// checked against its table's validator. The first problem fails the whole import.
pub fn apply(tx: &mut Transaction<'_>, import: ParsedImport, mode: ImportMode) -> Result<ImportReport, ImportError> {
    let schema = tx.schema();
    let mut targets: Vec<&TableDef> = Vec::new();
    for table in &import.tables {
        let def = schema
            .table(&table.name)
            .filter(|t| !t.is_system())
            .ok_or_else(|| invalid(format!("There is no table {:?} in this deployment's schema.", table.name)))?;
        targets.push(def);
    }
    let mut report = ImportReport { skipped: import.skipped.clone(), ..ImportReport::default() };
    // By target table name: (the source deployment's number, this deployment's).
    let mut renumber: HashMap<&str, (TableNumber, TableNumber)> = HashMap::new();
    for (name, &from) in &import.source_numbers {
        if let Some(def) = schema.table(name)
            && def.number != from
        {
            renumber.insert(def.name, (from, def.number));
            report.remapped.push((def.name.to_owned(), from, def.number));
        }
    }
    report.remapped.sort();

    let engine = |e: crate::error::EngineError| invalid(e.to_string());
    let cleared: Vec<&TableDef> = match mode {
        ImportMode::Replace => targets.clone(),
        ImportMode::ReplaceAll => schema.tables().iter().filter(|t| !t.is_system()).collect(),
        ImportMode::RequireEmpty | ImportMode::Append => Vec::new(),
    };
    for def in cleared {
        let documents = tx.query(def.name, BY_CREATION_TIME, IndexRange::default(), Order::Asc).map_err(engine)?;
        for document in documents.take(usize::MAX, All).map_err(engine)? {
            tx.delete(def.name, document.id).map_err(engine)?;
        }
    }
    if mode == ImportMode::RequireEmpty {
        for def in &targets {
            let query = tx.query(def.name, BY_CREATION_TIME, IndexRange::default(), Order::Asc).map_err(engine)?;
            if !query.take(1, All).map_err(engine)?.is_empty() {
                return Err(ImportError {
                    code: "ImportConflict",
                    message: format!(
                        "Table {:?} is not empty: import with --append or --replace (or --replace-all).",
                        def.name
                    ),
                });
            }
        }
    }

    for (table, def) in import.tables.into_iter().zip(targets) {
        let count = table.rows.len() as u64;
        for (place, mut fields) in table.rows {
            let place = format!("{place} of {:?}", def.name);
            let id = fields.remove("_id");
            let creation_time = fields.remove("_creationTime");
            for (name, value) in fields.iter_mut() {
                if let Validator::Object(declared) = &def.document
                    && let Some(validator) = declared.get(name.as_str())
                {
                    renumber_ids(value, validator, &renumber);
                }
            }
            let written = match (id, creation_time) {
                (None, None) => tx.insert(def.name, fields).map(|_| ()),
                (id, creation_time) => {
                    let id = document_id(&place, def, id, &renumber, tx.now_ms() as u64)?;
                    let creation_time = match creation_time {
                        Some(Value::Float64(time)) => time,
                        None => tx.now_ms(),
                        Some(other) => {
                            return Err(invalid(format!("{place}: _creationTime must be a number, not {other}.")));
                        }
                    };
                    tx.insert_document(def.name, Document { id, creation_time, fields })
                }
            };
            written.map_err(|e| ImportError { code: "InvalidDocument", message: format!("{place}: {e}") })?;
        }
        report.written.push((def.name.to_owned(), count));
    }
    Ok(report)
}

/// The document's id in this deployment: given, it must be an id of the table in the source
/// deployment (or here); absent, a new one.
fn document_id(
    place: &str,
    def: &TableDef,
    id: Option<Value>,
    renumber: &HashMap<&str, (TableNumber, TableNumber)>,
    now_ms: u64,
) -> Result<DocumentId, ImportError> {
    let Some(id) = id else { return Ok(DocumentId::generate(def.number, now_ms)) };
    let Value::String(text) = &id else { return Err(invalid(format!("{place}: _id must be a string."))) };
    let decoded = DocumentId::decode(text).map_err(|e| invalid(format!("{place}: {e}")))?;
    let source = renumber.get(def.name).map_or(def.number, |&(from, _)| from);
    if decoded.table != source {
        return Err(ImportError {
            code: "ImportConflict",
            message: format!(
                "{place}: _id {text} is an id of table number {}, but the table is number {source} there.",
                decoded.table
            ),
        });
    }
    Ok(DocumentId { table: def.number, ..decoded })
}

/// Rewrites the ids a value holds where its validator says `v.id(table)` and that table has
/// another number here. Returns whether it rewrote anything, so a union rewrites once.
fn renumber_ids(
    value: &mut Value,
    validator: &Validator,
    renumber: &HashMap<&str, (TableNumber, TableNumber)>,
) -> bool {
    match (validator, value) {
        (Validator::Id(table), Value::String(text)) => match (renumber.get(table), DocumentId::decode(text)) {
            (Some(&(from, to)), Ok(id)) if id.table == from => {
                *text = DocumentId { table: to, ..id }.encode();
                true
            }
            _ => false,
        },
        (Validator::Optional(inner), value) => renumber_ids(value, inner, renumber),
        (Validator::Union(members), value) => members.iter().any(|member| renumber_ids(value, member, renumber)),
        (Validator::Array(inner), Value::Array(items)) => {
            renumber_each(items.iter_mut().map(|item| (item, &**inner)), renumber)
        }
        (Validator::Object(fields), Value::Object(object)) => renumber_each(
            object.iter_mut().filter_map(|(name, item)| Some((item, fields.get(name.as_str())?))),
            renumber,
        ),
        (Validator::Record(_, values), Value::Object(object)) => {
            renumber_each(object.values_mut().map(|item| (item, &**values)), renumber)
        }
        _ => false,
    }
}

/// [`renumber_ids`] on every value (none skipped once one changed).
fn renumber_each<'v>(
    values: impl Iterator<Item = (&'v mut Value, &'v Validator)>,
    renumber: &HashMap<&str, (TableNumber, TableNumber)>,
) -> bool {
    let mut changed = false;
    for (value, validator) in values {
        changed |= renumber_ids(value, validator, renumber);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Schema, TableDef, v};

    #[test]
    fn ids_in_fields_take_the_new_table_numbers() {
        let schema = Schema::new(vec![
            TableDef::new("users", 10_001, vec![]),
            TableDef::new("posts", 10_002, vec![("author", v::id("users")), ("tags", v::array(v::id("users")))]),
        ])
        .unwrap();
        let renumber: HashMap<&str, (TableNumber, TableNumber)> = [("users", (7, 10_001))].into_iter().collect();
        let old = DocumentId::generate(7, 0);
        let mut value = Value::Array(vec![Value::String(old.encode())]);
        let validator = match &schema.table("posts").unwrap().document {
            Validator::Object(fields) => fields["tags"].clone(),
            _ => unreachable!(),
        };
        assert!(renumber_ids(&mut value, &validator, &renumber));
        assert_eq!(value, Value::Array(vec![Value::String(DocumentId { table: 10_001, ..old }.encode())]));
        // An id of a table that kept its number is left alone.
        let mut other = Value::String(DocumentId::generate(10_002, 0).encode());
        assert!(!renumber_ids(&mut other, &v::id("users"), &renumber));
    }

    #[test]
    fn convex_names_read_back() {
        for format in [ImportFormat::Csv, ImportFormat::JsonLines, ImportFormat::JsonArray, ImportFormat::Zip] {
            assert_eq!(ImportFormat::parse(format.as_str()), Some(format));
        }
        for mode in [ImportMode::RequireEmpty, ImportMode::Append, ImportMode::Replace, ImportMode::ReplaceAll] {
            assert_eq!(ImportMode::parse(mode.as_str()), Some(mode));
        }
    }

    #[test]
    fn csv_cells_are_numbers_or_strings() {
        let parsed = parse(ImportFormat::Csv, Some("t"), b"a,b\n1.5,x\n").unwrap();
        let (place, row) = &parsed.tables[0].rows[0];
        assert_eq!(place, "line 2");
        assert_eq!(row["a"], Value::Float64(1.5));
        assert_eq!(row["b"], Value::String("x".into()));
    }

    #[test]
    fn a_bad_line_is_named() {
        let error = parse(ImportFormat::JsonLines, Some("t"), b"{\"a\":1}\n{oops\n").unwrap_err();
        assert!(error.message.starts_with("line 2:"), "{error}");
    }
}
