//! A transaction over one snapshot: index-range reads that record their read
//! set and, for mutations, validated writes that record their write set.

use super::cursor::CursorKey;
use super::document::Document;
use super::error::EngineError;
use super::id::DocumentId;
use super::keys::{IndexRange, KeyRange, key_successor};
use super::schema::{IndexId, Schema, TableDef, Validator};
use super::sets::{IndexWrite, ReadSet, WriteSet};
use super::storage::StorageError;
use super::storage::{MutationKey, Order, Snapshot, Timestamp};
use super::value::{Object, Value};
use super::write_buffer::MutationStore;
use crate::knobs::{
    MAX_DOCUMENT_BYTES, MAX_INDEX_KEY_BYTES, MAX_NESTING, MAX_READ_BYTES, MAX_READ_DOCUMENTS, MAX_READ_RANGES,
    MAX_WRITE_BYTES, MAX_WRITE_DOCUMENTS, SCAN_CHUNK,
};

/// What a transaction reads from: a snapshot (a query), or the group's write buffer over the
/// committer's batch (a mutation).
enum Store<'a> {
    Read(&'a mut dyn Snapshot),
    Write(&'a mut dyn MutationStore),
}

impl Store<'_> {
    fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError> {
        match self {
            Store::Read(snapshot) => snapshot.get(id),
            Store::Write(buffer) => buffer.get(id),
        }
    }

    fn scan(
        &mut self,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
        match self {
            Store::Read(snapshot) => snapshot.scan(index, range, order, limit),
            Store::Write(buffer) => buffer.scan(index, range, order, limit),
        }
    }

    fn cursor_key(&mut self) -> CursorKey {
        match self {
            Store::Read(snapshot) => snapshot.cursor_key(),
            Store::Write(buffer) => buffer.cursor_key(),
        }
    }
}

/// The result shape of Convex's `paginate`.
#[derive(Debug)]
pub struct Page {
    pub page: Vec<Document>,
    pub is_done: bool,
    pub continue_cursor: String,
}

struct ReadOutcome {
    documents: Vec<Document>,
    last_key: Option<Vec<u8>>,
    exhausted: bool,
}

pub struct Transaction<'a> {
    schema: &'a Schema,
    store: Store<'a>,
    ts: Timestamp,
    /// The creation time of the newest document, so new ones are strictly later.
    last_creation_time: f64,
    reads: ReadSet,
    writes: WriteSet,
    /// Documents this transaction already read or wrote, so repeated gets do not go to storage.
    seen: std::collections::HashMap<DocumentId, Option<Document>>,
    documents_read: usize,
    bytes_read: usize,
    documents_written: usize,
    bytes_written: usize,
    /// A bulk import, which must be atomic however large: the per-function limits on reads
    /// and writes do not apply.
    pub(crate) bulk: bool,
}

/// A read through one index: `query(table, index).range(..).order(..)` then `take` or `paginate`.
/// Which documents of a scanned range a query keeps. A plain closure over the
/// document is one; a filter that must read other documents (who owns this?)
/// gets the transaction, so those reads enter the read set too.
pub trait Keep {
    fn keep(&mut self, tx: &mut Transaction<'_>, document: &Document) -> Result<bool, EngineError>;
}

impl<F: Fn(&Document) -> bool> Keep for F {
    fn keep(&mut self, _: &mut Transaction<'_>, document: &Document) -> Result<bool, EngineError> {
        Ok(self(document))
    }
}

/// Keeps every document.
pub struct All;

impl Keep for All {
    fn keep(&mut self, _: &mut Transaction<'_>, _: &Document) -> Result<bool, EngineError> {
        Ok(true)
    }
}

pub struct Query<'t, 'a> {
    tx: &'t mut Transaction<'a>,
    index: IndexId,
    range: KeyRange,
    order: Order,
}

impl<'a> Transaction<'a> {
    pub(crate) fn read_only(schema: &'a Schema, snapshot: &'a mut dyn Snapshot) -> Transaction<'a> {
        let ts = snapshot.ts();
        Transaction::new(schema, Store::Read(snapshot), ts, 0.0)
    }

    /// A mutation committing at `ts`, writing into the group's buffer (undone alone if it fails).
    pub(crate) fn writing(
        schema: &'a Schema,
        buffer: &'a mut dyn MutationStore,
        ts: Timestamp,
        last_creation_time: f64,
    ) -> Transaction<'a> {
        Transaction::new(schema, Store::Write(buffer), ts, last_creation_time)
    }

    fn new(schema: &'a Schema, store: Store<'a>, ts: Timestamp, last_creation_time: f64) -> Transaction<'a> {
        Transaction {
            schema,
            store,
            ts,
            last_creation_time,
            reads: ReadSet::default(),
            writes: WriteSet::default(),
            seen: std::collections::HashMap::new(),
            documents_read: 0,
            bytes_read: 0,
            documents_written: 0,
            bytes_written: 0,
            bulk: false,
        }
    }

    /// The snapshot timestamp of a query, or the commit timestamp of a mutation.
    pub(crate) fn ts(&self) -> Timestamp {
        self.ts
    }

    /// Wall-clock milliseconds of this transaction, for `createdAt`-style fields.
    pub fn now_ms(&self) -> f64 {
        (self.ts / 1_000_000) as f64
    }

    pub fn schema(&self) -> &'a Schema {
        self.schema
    }

    #[cfg(test)]
    pub(crate) fn read_set(&self) -> &ReadSet {
        &self.reads
    }

    pub(crate) fn into_sets(self) -> (ReadSet, WriteSet, f64) {
        (self.reads, self.writes, self.last_creation_time)
    }

    fn table(&self, name: &str) -> Result<&'a TableDef, EngineError> {
        self.schema.table(name).ok_or_else(|| EngineError::Schema(format!("table {name:?} is not in the schema")))
    }

    fn record_read(&mut self, index: IndexId, range: KeyRange) -> Result<(), EngineError> {
        self.reads.record(index, range);
        if self.reads.len() > MAX_READ_RANGES && !self.bulk {
            return Err(EngineError::LimitExceeded(format!(
                "Too many index ranges read in one function (limit: {MAX_READ_RANGES})."
            )));
        }
        Ok(())
    }

    fn count_read(&mut self, document: &Document) -> Result<(), EngineError> {
        self.documents_read += 1;
        self.bytes_read += document.size();
        if (self.documents_read > MAX_READ_DOCUMENTS || self.bytes_read > MAX_READ_BYTES) && !self.bulk {
            return Err(EngineError::LimitExceeded(format!(
                "Too many reads in one function (limits: {MAX_READ_DOCUMENTS} documents, {MAX_READ_BYTES} bytes)."
            )));
        }
        Ok(())
    }

    /// Reads a document of `table` by id; an id of another table reads as absent.
    pub fn get(&mut self, table: &str, id: DocumentId) -> Result<Option<Document>, EngineError> {
        let table = self.table(table)?;
        if id.table != table.number {
            return Ok(None);
        }
        if let Some(known) = self.seen.get(&id) {
            return Ok(known.clone());
        }
        self.record_read(table.by_id(), KeyRange::point(&Document::id_key(&id)))?;
        let document = self.store.get(&id)?;
        if let Some(document) = &document {
            self.count_read(document)?;
        }
        self.seen.insert(id, document.clone());
        Ok(document)
    }

    /// Starts a read of `table` through `index`; fails if the range does not fit the index.
    pub fn query<'t>(
        &'t mut self,
        table: &str,
        index: &str,
        range: IndexRange,
        order: Order,
    ) -> Result<Query<'t, 'a>, EngineError> {
        let def = self.table(table)?;
        let index_id = def
            .index_id(index)
            .ok_or_else(|| EngineError::Schema(format!("index {table}.{index} is not in the schema")))?;
        // Every index ends with `_creationTime` (then the id), as in Convex: after equal values
        // on all of its fields, a range may bound the creation time.
        let fields = self.schema.index_fields(index_id).len();
        if range.eq_len() > fields || range.fields_used() > fields + 1 {
            return Err(EngineError::Schema(format!("range uses more fields than index {table}.{index} has")));
        }
        Ok(Query { tx: self, index: index_id, range: range.to_key_range(), order })
    }

    /// Inserts a new document into `table` and returns its id.
    pub fn insert(&mut self, table: &str, fields: Object) -> Result<DocumentId, EngineError> {
        let def = self.table(table)?;
        let Store::Write(_) = self.store else {
            return Err(EngineError::Schema("a query cannot write".into()));
        };
        let now_ms = self.ts / 1_000_000;
        let creation_time = (self.ts as f64 / 1e6).max(self.last_creation_time.next_up());
        self.last_creation_time = creation_time;
        let document = Document { id: DocumentId::generate(def.number, now_ms), creation_time, fields };
        self.write(def, document.id, None, Some(document.clone()))?;
        Ok(document.id)
    }

    /// Inserts `document` as it is, its id and creation time kept (an import). Fails if the id
    /// names another table or a document that exists.
    pub fn insert_document(&mut self, table: &str, document: Document) -> Result<(), EngineError> {
        let def = self.table(table)?;
        if document.id.table != def.number {
            return Err(EngineError::Validation(format!(
                "{} is an id of table number {}, not of {table:?} (number {}).",
                document.id.encode(),
                document.id.table,
                def.number
            )));
        }
        if !(document.creation_time.is_finite() && document.creation_time > 0.0) {
            return Err(EngineError::Validation(format!(
                "_creationTime {} is not a time (milliseconds since 1970).",
                document.creation_time
            )));
        }
        if self.get(table, document.id)?.is_some() {
            return Err(EngineError::Validation(format!(
                "A document with _id {} exists already.",
                document.id.encode()
            )));
        }
        self.write(def, document.id, None, Some(document))
    }

    /// Replaces every user field of an existing document (its id and creation time stay); returns
    /// the new version.
    pub fn replace(&mut self, table: &str, id: DocumentId, fields: Object) -> Result<Document, EngineError> {
        let def = self.table(table)?;
        let old = self.get(table, id)?.ok_or_else(|| EngineError::NoSuchDocument(id.encode()))?;
        let new = Document { fields, ..old.clone() };
        self.write(def, id, Some(&old), Some(new.clone()))?;
        Ok(new)
    }

    /// Deletes an existing document; returns its last version.
    pub fn delete(&mut self, table: &str, id: DocumentId) -> Result<Document, EngineError> {
        let def = self.table(table)?;
        let old = self.get(table, id)?.ok_or_else(|| EngineError::NoSuchDocument(id.encode()))?;
        self.write(def, id, Some(&old), None)?;
        Ok(old)
    }

    /// Sets (`Some`) or removes (`None`) top-level fields of an existing document; returns the new version.
    pub fn patch(
        &mut self,
        table: &str,
        id: DocumentId,
        changes: impl IntoIterator<Item = (String, Option<Value>)>,
    ) -> Result<Document, EngineError> {
        let def = self.table(table)?;
        let old = self.get(table, id)?.ok_or_else(|| EngineError::NoSuchDocument(id.encode()))?;
        let mut new = old.clone();
        for (field, value) in changes {
            match value {
                Some(value) => new.fields.insert(field, value),
                None => new.fields.remove(&field),
            };
        }
        self.write(def, id, Some(&old), Some(new.clone()))?;
        Ok(new)
    }

    fn buffer(&mut self) -> Result<&mut dyn MutationStore, EngineError> {
        match &mut self.store {
            Store::Write(buffer) => Ok(*buffer),
            Store::Read(_) => Err(EngineError::Schema("a query cannot write".into())),
        }
    }

    /// The outcome recorded for `key` by an earlier run of the same mutation: (commit ts, result).
    pub fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, Value)>, EngineError> {
        let Some((ts, json)) = self.buffer()?.find_outcome(key)? else { return Ok(None) };
        let parsed = serde_json::from_str(&json)
            .map_err(|e| StorageError::Corrupt(format!("stored outcome is not JSON: {e}")))?;
        let value = Value::from_json(&parsed).map_err(|e| StorageError::Corrupt(format!("stored outcome: {e}")))?;
        Ok(Some((ts, value)))
    }

    /// Records this mutation's result under `key`, atomically with its writes.
    pub fn record_outcome(&mut self, key: &MutationKey, result: &Value) -> Result<(), EngineError> {
        let ts = self.ts;
        let json = result.to_json_text(super::value::JsonFormat::Encoded);
        if key.client.contains('\0') {
            // PostgreSQL's text cannot hold it; refused here, the mutation fails alone.
            return Err(EngineError::Validation("A client id cannot contain a NUL character.".into()));
        }
        self.buffer()?.record_outcome(key, ts, &json)?;
        Ok(())
    }

    /// Writes `new` as document `id` over `old` (`None`: an insert), or deletes `old` (`new` is
    /// `None`), with the index changes both storage and the write set need.
    fn write(
        &mut self,
        table: &TableDef,
        id: DocumentId,
        old: Option<&Document>,
        new: Option<Document>,
    ) -> Result<(), EngineError> {
        if let Some(new) = &new {
            check_document(self.schema, table, new)?;
            self.bytes_written += new.size();
        }
        self.documents_written += 1;
        if (self.documents_written > MAX_WRITE_DOCUMENTS || self.bytes_written > MAX_WRITE_BYTES) && !self.bulk {
            return Err(EngineError::LimitExceeded(format!(
                "Too many writes in one mutation (limits: {MAX_WRITE_DOCUMENTS} documents, {MAX_WRITE_BYTES} bytes)."
            )));
        }
        let id_key = Document::id_key(&id);
        let mut index_writes = vec![IndexWrite {
            index: table.by_id(),
            old: old.map(|_| id_key.clone()),
            new: new.as_ref().map(|_| id_key.clone()),
        }];
        for (position, index) in table.indexes.iter().enumerate() {
            let new_key = new.as_ref().map(|d| d.index_key(&index.fields));
            if new_key.as_ref().is_some_and(|key| key.len() > MAX_INDEX_KEY_BYTES) {
                return Err(EngineError::LimitExceeded(format!(
                    "The document's key in index {}.{} is over {MAX_INDEX_KEY_BYTES} bytes: its indexed fields \
                     hold too much.",
                    table.name, index.name
                )));
            }
            index_writes.push(IndexWrite {
                index: IndexId { table: table.number, slot: position as u16 + 1 },
                old: old.map(|d| d.index_key(&index.fields)),
                new: new_key,
            });
        }
        self.buffer()?.write(id, new.clone(), &index_writes);
        self.writes.entries.extend(index_writes);
        self.seen.insert(id, new);
        Ok(())
    }
}

/// Validates a document against its table: field names, validator, size and nesting.
fn check_document(schema: &Schema, table: &TableDef, document: &Document) -> Result<(), EngineError> {
    if let Some(name) = document.fields.keys().find(|k| k.starts_with('_')) {
        return Err(EngineError::Validation(format!(
            "Field name {name:?} starts with '_', which is reserved for system fields."
        )));
    }
    let value = Value::Object(document.fields.clone());
    if value.nesting() > MAX_NESTING {
        return Err(EngineError::Validation(format!("Document is nested more than {MAX_NESTING} levels deep.")));
    }
    let size = document.size();
    if size > MAX_DOCUMENT_BYTES {
        return Err(EngineError::LimitExceeded(format!(
            "Document is too large ({size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes)."
        )));
    }
    if let Validator::Object(_) = &table.document {
        table.document.check(&value, "", schema).map_err(|e| {
            EngineError::Validation(format!("Failed to insert or update a document in table {:?}: {e}", table.name))
        })?;
    }
    Ok(())
}

impl Query<'_, '_> {
    /// Up to `limit` documents of the range, in order, that pass `keep`.
    pub fn take(self, limit: usize, mut keep: impl Keep) -> Result<Vec<Document>, EngineError> {
        Ok(self.read(limit, &mut keep)?.documents)
    }

    /// One page of Convex pagination: after `cursor`, `num_items` documents, or
    /// with `end_cursor` exactly the documents up to and including that cursor
    /// (a page pinned by an earlier run, so it neither loses nor repeats documents
    /// when others arrive before it).
    pub fn paginate(
        self,
        num_items: usize,
        cursor: Option<&str>,
        end_cursor: Option<&str>,
        mut keep: impl Keep,
    ) -> Result<Page, EngineError> {
        let Query { tx, index, mut range, order } = self;
        let cursors = tx.store.cursor_key();
        let decode = |cursor: &str| cursors.decode(index, cursor);
        if let Some(cursor) = cursor {
            // The cursor is the last key returned: continue strictly past it.
            let key = decode(cursor)?;
            match order {
                Order::Asc => range.start = range.start.clone().max(key_successor(&key)),
                Order::Desc => range.end = Some(range.end.take().map_or(key.clone(), |end| end.min(key))),
            }
        }
        let Some(end_cursor) = end_cursor else {
            let whole = range.clone();
            let ReadOutcome { documents: page, last_key, exhausted: is_done } =
                Query::read_recorded(tx, index, range, order, num_items, &mut keep)?;
            // Not done: the page ends at its last document. Done: past the end of the range, which
            // also keeps the key of a document the filter dropped out of the cursor.
            let continue_cursor = match (last_key, order) {
                (Some(key), _) if !is_done => key,
                (_, Order::Asc) => whole.end.unwrap_or_else(|| vec![0xff]),
                (_, Order::Desc) => whole.start,
            };
            return Ok(Page { page, is_done, continue_cursor: cursors.encode(index, &continue_cursor) });
        };
        let end = decode(end_cursor)?;
        // Both parts stay inside the query's range, whatever the end cursor says.
        let (page_range, rest) = match order {
            Order::Asc => {
                let split = key_successor(&end);
                let bound = range.end.clone().map_or(split.clone(), |e| e.min(split.clone()));
                let rest = KeyRange { start: split.max(range.start.clone()), end: range.end.clone() };
                (KeyRange { start: range.start, end: Some(bound) }, rest)
            }
            Order::Desc => {
                let bound = range.end.clone().map_or(end.clone(), |e| e.min(end.clone()));
                let page = KeyRange { start: range.start.clone().max(end), end: range.end };
                (page, KeyRange { start: range.start, end: Some(bound) })
            }
        };
        let page = Query::read_recorded(tx, index, page_range, order, MAX_READ_DOCUMENTS, &mut keep)?.documents;
        // Whether anything the filter keeps lies past the pinned end decides `isDone`, so that read counts too.
        let is_done =
            rest.is_empty() || Query::read_recorded(tx, index, rest, order, 1, &mut keep)?.documents.is_empty();
        Ok(Page { page, is_done, continue_cursor: end_cursor.to_owned() })
    }

    /// Reads until `limit` documents passed `keep` or the range ends. Returns the
    /// documents, the last key read and whether the range is exhausted. Only the
    /// part of the range actually read enters the read set.
    fn read(self, limit: usize, keep: &mut impl Keep) -> Result<ReadOutcome, EngineError> {
        let Query { tx, index, range, order } = self;
        Query::read_recorded(tx, index, range, order, limit, keep)
    }

    fn read_recorded(
        tx: &mut Transaction<'_>,
        index: IndexId,
        range: KeyRange,
        order: Order,
        limit: usize,
        keep: &mut impl Keep,
    ) -> Result<ReadOutcome, EngineError> {
        match Self::read_range(tx, index, &range, order, limit, keep) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // A failed read still depends on the whole range: a write there may make it succeed.
                tx.reads.record(index, range);
                Err(e)
            }
        }
    }

    fn read_range(
        tx: &mut Transaction<'_>,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
        keep: &mut impl Keep,
    ) -> Result<ReadOutcome, EngineError> {
        let range = range.clone();
        let mut remaining = range.clone();
        let mut documents = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut first_key: Option<Vec<u8>> = None;
        let mut exhausted = range.is_empty();
        while documents.len() < limit && !exhausted {
            // One row more than needed tells whether the range goes on.
            let want = (limit - documents.len()).min(SCAN_CHUNK) + 1;
            let chunk = tx.store.scan(index, &remaining, order, want)?;
            exhausted = chunk.len() < want;
            for (key, document) in chunk {
                if documents.len() == limit {
                    break;
                }
                tx.count_read(&document)?;
                match order {
                    Order::Asc => remaining.start = key_successor(&key),
                    Order::Desc => remaining.end = Some(key.clone()),
                }
                if keep.keep(tx, &document)? {
                    documents.push(document);
                }
                if first_key.is_none() {
                    first_key = Some(key.clone());
                }
                last_key = Some(key);
            }
        }
        let read_range = match (&last_key, order) {
            (Some(key), Order::Asc) if !exhausted => {
                KeyRange { start: range.start.clone(), end: Some(key_successor(key)) }
            }
            (Some(key), Order::Desc) if !exhausted => KeyRange { start: key.clone(), end: range.end.clone() },
            _ => range,
        };
        // Invariant: the read set covers every key this read returned, so any write that could
        // change its result overlaps it. The keys returned lie between the first and the last.
        debug_assert!(
            [&first_key, &last_key].into_iter().flatten().all(|key| read_range.contains(key)),
            "a read's recorded range misses a key it returned"
        );
        tx.record_read(index, read_range)?;
        Ok(ReadOutcome { documents, last_key, exhausted })
    }
}
