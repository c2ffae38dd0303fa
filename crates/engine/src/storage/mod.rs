//! The narrow persistence interface the engine needs, one implementation per
//! database. A snapshot reads one consistent committed state; a batch is the
//! single writer's transaction: the committer reads through it while a group's
//! mutations run (their writes wait in the engine's write buffer), then hands
//! it the group's net writes, which become durable together in one commit.

/// Implements `Snapshot` for a storage's snapshot or batch type through its
/// connection accessor (`$handle`) and the module's free functions `get`,
/// `scan`, `documents` and `index_entries`: a snapshot and the write batch read alike.
macro_rules! reads_through {
    ($type:ident, $handle:ident) => {
        impl Snapshot for $type<'_> {
            fn ts(&self) -> Timestamp {
                self.ts
            }

            fn cursor_key(&self) -> CursorKey {
                self.storage.cursor_key.clone()
            }

            fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError> {
                get(self.$handle(), id)
            }

            fn scan(
                &mut self,
                index: IndexId,
                range: &KeyRange,
                order: Order,
                limit: usize,
            ) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
                let number = self.storage.index_number(index)?;
                scan(self.$handle(), number, index.table, range, order, limit)
            }

            fn documents(
                &mut self,
                table: TableNumber,
                after: Option<&DocumentId>,
                limit: usize,
            ) -> Result<Vec<Document>, StorageError> {
                documents(self.$handle(), table, after, limit)
            }

            fn index_entries(
                &mut self,
                index: IndexId,
                after: Option<&[u8]>,
                limit: usize,
            ) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError> {
                let number = self.storage.index_number(index)?;
                index_entries(self.$handle(), number, index.table, after, limit)
            }
        }
    };
}

pub mod memory;
pub mod postgres;
pub mod sqlite;

use super::cursor::CursorKey;
use super::document::Document;
use super::id::{DocumentId, TableNumber};
use super::keys::KeyRange;
use super::schema::{IndexDef, IndexId, TableDef};
use super::sets::WriteSet;

/// Bumped when a release must rebuild every index from its table's documents
/// once, at start-up, because a defect left wrong entries behind. 1: entries
/// left at keys computed from `_creationTime`s that were read back inexactly.
const INDEX_REBUILD_VERSION: i64 = 1;

/// Nanoseconds since the Unix epoch; unique and increasing across commits.
pub type Timestamp = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// Why a storage call failed, by what a caller can do about it. Every kind
/// carries the message to log; each displays as `storage error: <message>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is not answering: a lost connection, a stopped
    /// server or database, a failed task. Trying again later may succeed.
    #[error("storage error: {0}")]
    Unavailable(String),
    /// Another writer was in the way (a lock held elsewhere, a serialization failure).
    #[error("storage error: {0}")]
    Conflict(String),
    /// What is stored cannot be read back as written, or the indexes no longer match
    /// their documents: retrying does not help.
    #[error("storage error: {0}")]
    Corrupt(String),
    /// The database refused a value or row as too large.
    #[error("storage error: {0}")]
    Limit(String),
    /// The file system failed (a directory, a file, a full disk).
    #[error("storage error: {0}")]
    Io(String),
    /// Anything else: configuration, a version mismatch, a bug.
    #[error("storage error: {0}")]
    Other(String),
}

/// The kind of a [`StorageError`], without its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageErrorKind {
    Unavailable,
    Conflict,
    Corrupt,
    Limit,
    Io,
    Other,
}

impl StorageError {
    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::Unavailable(_) => StorageErrorKind::Unavailable,
            StorageError::Conflict(_) => StorageErrorKind::Conflict,
            StorageError::Corrupt(_) => StorageErrorKind::Corrupt,
            StorageError::Limit(_) => StorageErrorKind::Limit,
            StorageError::Io(_) => StorageErrorKind::Io,
            StorageError::Other(_) => StorageErrorKind::Other,
        }
    }

    pub(crate) fn of_kind(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
        let message = message.into();
        match kind {
            StorageErrorKind::Unavailable => StorageError::Unavailable(message),
            StorageErrorKind::Conflict => StorageError::Conflict(message),
            StorageErrorKind::Corrupt => StorageError::Corrupt(message),
            StorageErrorKind::Limit => StorageError::Limit(message),
            StorageErrorKind::Io => StorageError::Io(message),
            StorageErrorKind::Other => StorageError::Other(message),
        }
    }

    /// Whether the same call may succeed later, unchanged (the database came back, the other
    /// writer finished).
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unavailable(_) | StorageError::Conflict(_))
    }
}

/// Makes a secret for [`Storage::keep_secret`] (only called when none is stored: making one may be slow).
pub type Make<'m> = &'m mut dyn FnMut() -> Result<Vec<u8>, StorageError>;

pub trait Storage: Send + Sync {
    /// A read-only view of the latest committed state.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StorageError>;
    /// Opens the write batch; the committer holds at most one at a time.
    fn begin_batch(&self) -> Result<Box<dyn Batch + '_>, StorageError>;
    /// For storage that other processes write too: every commit after `after`,
    /// theirs and this process's, in timestamp order. `None` when this process
    /// is the only writer (its committer announces its own commits).
    fn commit_feed(&self, _after: Timestamp) -> Option<Box<dyn CommitFeed>> {
        None
    }
    /// The timestamp of the last commit, as cheaply as the storage can tell it.
    fn latest_ts(&self) -> Result<Timestamp, StorageError> {
        Ok(self.snapshot()?.ts())
    }
    /// The bytes the stored data takes (files on disk, or the database's size); `None` when the
    /// storage has no such measure (in memory).
    fn size_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }
    /// The secret stored under `name`, made by `make` and stored when there is none (if two
    /// processes make one at once, the first stored wins). Every process sharing the data gets
    /// the same one, and a restart gets it again.
    fn keep_secret(&self, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError>;
}

/// The commits of a shared database, as they happen.
pub trait CommitFeed: Send {
    /// The commits after the last one returned, in timestamp order; waits up
    /// to `wait` for one when there are none (and then returns none). A commit
    /// whose writes cannot be known (a gap in the record) says `everything`.
    fn next(&mut self, wait: std::time::Duration) -> Result<Vec<super::sets::Commit>, StorageError>;
}

pub trait Snapshot {
    /// The timestamp of the last commit this view contains.
    fn ts(&self) -> Timestamp;
    /// The deployment's secret for pagination cursors, kept in the database.
    fn cursor_key(&self) -> CursorKey;
    fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError>;
    /// Up to `limit` entries of `index` inside `range`, in key order, with their documents.
    fn scan(
        &mut self,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Document)>, StorageError>;
    /// Up to `limit` documents of `table` with ids after `after`, in id order
    /// (for the integrity check, which must see every document).
    fn documents(
        &mut self,
        table: TableNumber,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, StorageError>;
    /// Up to `limit` stored entries of `index` with keys after `after`, in key
    /// order, with the id each names, whether or not that document exists.
    fn index_entries(
        &mut self,
        index: IndexId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError>;
}

/// Names a mutation that a client may send more than once (after a reconnect):
/// the client's session id and its request number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MutationKey {
    pub client: String,
    pub request: u64,
}

pub trait Batch: Snapshot {
    /// The recorded outcome of a mutation: its commit timestamp and result (encoded JSON).
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError>;
    /// The versions of `ids` (distinct) in the state the batch reads, in their order (`None`:
    /// absent): one read where the storage can make it one (a single round trip on PostgreSQL),
    /// since the committer asks under the commit lock.
    fn get_many(&mut self, ids: &[DocumentId]) -> Result<Vec<Option<Document>>, StorageError> {
        ids.iter().map(|id| self.get(id)).collect()
    }
    /// Forgets outcomes (and any record of commits kept for other processes) from before `before`.
    fn purge_outcomes(&mut self, before: Timestamp) -> Result<usize, StorageError>;
    /// The documents written by the commits after `after`, up to the state this batch reads, as
    /// the storage's record of commits tells them; `None` when it keeps no such record, or the
    /// record cannot vouch for every commit since (a gap, too many to read).
    fn written_since(&mut self, _after: Timestamp) -> Result<Option<Vec<DocumentId>>, StorageError> {
        Ok(None)
    }
    /// Writes `group` and makes the batch durable, recording `ts` as the last commit timestamp;
    /// `writes` is what the group changed, for a commit feed. All or nothing: an entry to remove
    /// that is not stored, or one to add that is, fails the commit (the indexes no longer match
    /// their documents, and going on would hide that).
    fn commit(
        self: Box<Self>,
        ts: Timestamp,
        group: &GroupWrites,
        writes: &WriteSet,
    ) -> Result<BatchCounts, StorageError>;
}

/// The documents a write set names: its `by_id` writes.
fn written_documents(writes: &WriteSet) -> impl Iterator<Item = DocumentId> + '_ {
    writes.entries.iter().filter(|w| w.index.slot == 0).filter_map(|w| {
        let key = w.new.as_ref().or(w.old.as_ref())?;
        Some(DocumentId { table: w.index.table, internal: key.as_slice().try_into().ok()? })
    })
}

/// One index entry: its key and the document it names.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    pub index: IndexId,
    pub key: Vec<u8>,
    pub id: DocumentId,
}

/// A group's net writes. `documents` holds each written document once, at its final version
/// (`None`: deleted). The entries are of the declared indexes (slot 1 on; `by_id` is the
/// documents themselves); `removed` and `added` are disjoint, since keys end with the id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupWrites {
    pub documents: Vec<(DocumentId, Option<Document>)>,
    pub removed: Vec<IndexEntry>,
    pub added: Vec<IndexEntry>,
    pub outcomes: Vec<(MutationKey, Timestamp, String)>,
}

/// What a batch cost the database, from its start to its commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Statements executed, reads included.
    pub statements: u64,
    /// Messages the writer waited for the database server to answer (0 in process).
    pub round_trips: u64,
}

/// How an index is registered: its table and fields are named, so changing an
/// index's fields builds it anew.
fn index_definition(table: &TableDef, index: &IndexDef) -> String {
    format!("{}:{}.{}({})", table.number, table.name, index.name, index.fields.join(","))
}

/// An index written from its table's documents at start-up: new, or rebuilt
/// after `removed` entries were deleted.
struct IndexBuild<'s> {
    number: i64,
    index: &'s IndexDef,
    removed: Option<u64>,
}

fn log_builds(table: &TableDef, builds: &[IndexBuild<'_>], written: u64) {
    for build in builds {
        let index = format!("{}.{}", table.name, build.index.name);
        match build.removed {
            None => tracing::info!(index, written, "built a new index"),
            Some(removed) if removed == written => tracing::info!(index, written, "rebuilt an index"),
            Some(removed) => tracing::warn!(index, removed, written, "rebuilt an index whose entries did not match"),
        }
    }
}

/// 32 random bytes: a new deployment's cursor secret.
fn new_secret() -> Result<[u8; 32], StorageError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| StorageError::Other(format!("no randomness for the cursor secret: {e}")))?;
    Ok(secret)
}

/// A stored secret: exactly 32 bytes.
fn stored_secret(bytes: &[u8]) -> Result<CursorKey, StorageError> {
    let secret =
        bytes.try_into().map_err(|_| StorageError::Corrupt("the stored cursor secret is not 32 bytes".into()))?;
    Ok(CursorKey::new(secret))
}

/// A stored document id: the table number and the 16 stored bytes.
fn row_id(table: u32, internal: &[u8]) -> Result<DocumentId, StorageError> {
    let internal = internal.try_into().map_err(|_| StorageError::Corrupt("stored id is not 16 bytes".into()))?;
    Ok(DocumentId { table, internal })
}

/// The error for an index change whose old key is not stored.
fn missing_entry(index: IndexId, id: &DocumentId) -> StorageError {
    StorageError::Corrupt(format!(
        "index {index:?} has no entry for the old version of {id}: the index does not match its documents \
         (`jangar check` lists the differences)"
    ))
}

/// The error for checking a database whose indexes an older version registered.
fn not_built(definition: &str) -> StorageError {
    StorageError::Other(format!(
        "index {definition} is not built in this database: another version of Jangar wrote it \
         (start `jangar serve` of this version once to build it)"
    ))
}

/// Documents are stored as JSON text and index keys derived from what is read
/// back, so a float must survive the text bit for bit. serde_json does that only
/// with its `float_roundtrip` feature; a build without it (as the shipped binary
/// once was, while test builds had it) must not open a database.
fn check_exact_floats() -> Result<(), StorageError> {
    // A creation time the best-effort parser reads one ulp off.
    let tricky = 1796169278123.8687_f64;
    let text = serde_json::Value::from(tricky).to_string();
    let back = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.as_f64());
    match back {
        Some(back) if back.to_bits() == tricky.to_bits() => Ok(()),
        _ => Err(StorageError::Other(
            "this build of Jangar reads floats back from JSON inexactly (serde_json without its \
             float_roundtrip feature) and would corrupt its indexes"
                .into(),
        )),
    }
}

/// What a document is stored as: its encoded JSON, system fields included.
fn document_json(document: &Document) -> String {
    super::stored_json::write_document(document)
}

/// A stored document: its encoded JSON.
fn parse_document(id: DocumentId, json: &str) -> Result<Document, StorageError> {
    let value = super::stored_json::read_value(json)
        .map_err(|e| StorageError::Corrupt(format!("stored document {id} is not a stored value: {e}")))?;
    Document::from_value(id, value)
        .ok_or_else(|| StorageError::Corrupt(format!("stored document {id} lacks _creationTime")))
}
