//! The embedded default: one SQLite file in WAL mode.
//!
//! Documents live in `documents` (keyed by table number and internal id) as
//! encoded JSON; every declared index is a set of `(index_number, key) -> id`
//! rows in `index_entries`, whose keys compare bytewise in Convex value order.
//! Readers each use their own connection, so they never wait for the writer.

use crate::knobs::{SQLITE_BUSY_TIMEOUT, WAL_RESTART_FRAMES};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Batch, BatchCounts, GroupWrites, INDEX_REBUILD_VERSION, IndexBuild, Make, MutationKey, Order, Snapshot, Storage,
    StorageError, Timestamp, check_exact_floats, document_json, index_definition, log_builds, missing_entry,
    new_secret, not_built, parse_document, row_id, stored_secret,
};
use crate::cursor::CursorKey;
use crate::document::Document;
use crate::id::{DocumentId, TableNumber};
use crate::integrity;
use crate::keys::KeyRange;
use crate::schema::{IndexId, Schema, TableDef};
use crate::sets::WriteSet;

pub mod backup;

/// The database's file in a data directory (its WAL and shared memory beside it, with
/// `-wal` and `-shm` appended).
pub const DATABASE_FILE: &str = "jangar.sqlite3";

/// How hard a commit pushes data to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit (`synchronous=FULL`): an acknowledged write survives power loss.
    Full,
    /// `synchronous=NORMAL`: survives a crash of Jangar, may lose the last commits on power loss.
    Normal,
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> StorageError {
        use rusqlite::ErrorCode;
        let message = e.to_string();
        match &e {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StorageError::Conflict(message),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StorageError::Corrupt(message),
                ErrorCode::TooBig => StorageError::Limit(message),
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::NoLargeFileSupport => StorageError::Io(message),
                _ => StorageError::Other(message),
            },
            // A stored value of another type than the schema says: not what was written.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..) => StorageError::Corrupt(message),
            _ => StorageError::Other(message),
        }
    }
}

impl From<rusqlite::types::FromSqlError> for StorageError {
    fn from(e: rusqlite::types::FromSqlError) -> StorageError {
        StorageError::Corrupt(e.to_string())
    }
}

pub struct SqliteStorage {
    path: PathBuf,
    access: Access,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// The stored number of each declared index.
    index_numbers: HashMap<IndexId, i64>,
    cursor_key: CursorKey,
    /// None when read-only.
    checkpointer: Option<Checkpointer>,
    /// Held while this process writes the database (`jangar.lock`, an OS lock the system frees
    /// however the process ends); `None` when read-only.
    _lock: Option<std::fs::File>,
}

/// How connections open the database file.
#[derive(Clone, Copy)]
enum Access {
    ReadWrite(Durability),
    /// For checking a data directory, perhaps while a server uses it: nothing is written.
    ReadOnly,
}

/// Copies the WAL into the database file on its own thread and connection, so
/// the committer rarely pays for checkpoints. A writer that never pauses keeps
/// a passive checkpoint from ever finishing, so once the WAL is long the
/// committer restarts it after its next commit (cheap: most frames are copied
/// already). Stops when dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    restart_wanted: Arc<AtomicBool>,
}

impl Checkpointer {
    fn start(path: &Path, durability: Durability) -> Result<Checkpointer, StorageError> {
        let conn = open_connection(path, Access::ReadWrite(durability))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let flag = restart_wanted.clone();
        let thread = std::thread::Builder::new()
            .name("jangar-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_millis(100))
                {
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                        Ok(frames) if frames > WAL_RESTART_FRAMES => flag.store(true, Ordering::Relaxed),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
                    }
                }
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            })
            .map_err(|e| StorageError::Io(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread), restart_wanted })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS documents (
    table_number INTEGER NOT NULL,
    id BLOB NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (table_number, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_entries (
    index_number INTEGER NOT NULL,
    key BLOB NOT NULL,
    id BLOB NOT NULL,
    PRIMARY KEY (index_number, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS indexes (
    definition TEXT PRIMARY KEY,
    index_number INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS mutation_outcomes (
    client TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (client, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mutation_outcomes_by_ts ON mutation_outcomes (ts);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('last_commit_ts', 0);
";

/// Index keys start with a type tag below 0xff, so `[0xff]` bounds every key.
const KEY_CEILING: &[u8] = &[0xff];

impl SqliteStorage {
    /// Opens (or creates) `dir/jangar.sqlite3`, registers the schema's indexes
    /// and builds any index that is new since the last start.
    pub fn open(dir: &Path, schema: &Schema, durability: Durability) -> Result<SqliteStorage, StorageError> {
        check_exact_floats()?;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_data_dir(dir)?;
        let path = dir.join(DATABASE_FILE);
        create_private(&path)?;
        let mut writer = open_connection(&path, Access::ReadWrite(durability))?;
        writer.execute_batch(SCHEMA_SQL)?;
        let index_numbers = register_indexes(&mut writer, schema)?;
        let secret = keep_secret_in(&writer, "cursor", &mut || Ok(new_secret()?.to_vec()))?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(&path, durability)?;
        Ok(SqliteStorage {
            path,
            access: Access::ReadWrite(durability),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            index_numbers,
            cursor_key: stored_secret(&secret)?,
            checkpointer: Some(checkpointer),
            _lock: Some(lock),
        })
    }

    /// Runs the integrity check on the database in `dir` without writing to it
    /// (a server may be using it, or none).
    pub fn check_data_dir(dir: &Path, schema: &Schema) -> Result<integrity::Report, StorageError> {
        let path = database_in(dir)?;
        // Reading a WAL database still needs its shared-memory file, which SQLite may have to create.
        let unreadable = |e: StorageError| {
            let kind = e.kind();
            StorageError::of_kind(
                kind,
                format!("cannot read {}: {e} (reading needs write access to the directory)", path.display()),
            )
        };
        let conn = open_connection(&path, Access::ReadOnly).map_err(unreadable)?;
        let mut index_numbers = HashMap::new();
        for table in schema.tables() {
            for (position, index) in table.indexes.iter().enumerate() {
                let definition = index_definition(table, index);
                let number: i64 = conn
                    .query_row("SELECT index_number FROM indexes WHERE definition = ?1", [&definition], |r| r.get(0))
                    .optional()
                    .map_err(|e| unreadable(e.into()))?
                    .ok_or_else(|| not_built(&definition))?;
                index_numbers.insert(IndexId { table: table.number, slot: position as u16 + 1 }, number);
            }
        }
        let storage = SqliteStorage {
            path,
            access: Access::ReadOnly,
            // Read-only like the rest: nothing here begins a batch.
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            index_numbers,
            // The check reads no cursors.
            cursor_key: CursorKey::new([0; 32]),
            checkpointer: None,
            _lock: None,
        };
        integrity::check(schema, &mut *storage.snapshot()?)
    }

    fn index_number(&self, index: IndexId) -> Result<i64, StorageError> {
        self.index_numbers.get(&index).copied().ok_or_else(|| StorageError::Other(format!("unknown index {index:?}")))
    }

    fn reader(&self) -> Result<Connection, StorageError> {
        match self.readers.lock().expect("reader pool lock").pop() {
            Some(conn) => Ok(conn),
            None => open_connection(&self.path, self.access),
        }
    }
}

fn keep_secret_in(conn: &Connection, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError> {
    let stored = |conn: &Connection| conn.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0));
    if let Some(secret) = stored(conn).optional()? {
        return Ok(secret);
    }
    conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)", rusqlite::params![name, make()?])?;
    Ok(stored(conn)?)
}

/// The database file of a data directory, which must exist.
fn database_in(dir: &Path) -> Result<PathBuf, StorageError> {
    let path = dir.join(DATABASE_FILE);
    if !path.is_file() {
        return Err(StorageError::Other(format!("{} holds no Jangar database (no {DATABASE_FILE})", dir.display())));
    }
    Ok(path)
}

/// Takes the data directory's lock, or says who has it: two servers writing one SQLite file
/// would each serve cached results the other's writes made stale.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join("jangar.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Io(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Conflict(format!(
            "another Jangar server is using {} (it holds {}); stop it, or give this one another --data-dir",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Io(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// Creates the database file readable by its owner only (SQLite gives its journals the same mode).
fn create_private(path: &Path) -> Result<(), StorageError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| StorageError::Io(format!("cannot create {}: {e}", path.display())))
}

fn open_connection(path: &Path, access: Access) -> Result<Connection, StorageError> {
    let conn = match access {
        Access::ReadWrite(durability) => {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            let synchronous = if durability == Durability::Full { "FULL" } else { "NORMAL" };
            conn.pragma_update(None, "synchronous", synchronous)?;
            conn
        }
        Access::ReadOnly => Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?,
    };
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    // Temporary b-trees (sorts, an import's staging) stay in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans that do not depend on the values bound: this SQLite estimates ranges from the values
    // (STAT4), so without it rebinding a range's bounds expires the cached statement and every
    // scan parses and plans its SQL again. Every statement here is an index probe or range,
    // whichever values come.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Memory-mapped reads share the OS page cache between connections instead
    // of copying pages into each connection's own cache.
    conn.pragma_update(None, "mmap_size", 1i64 << 31)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Registers the schema's indexes (building new ones, dropping those no longer
/// declared) and, once per `INDEX_REBUILD_VERSION`, rebuilds the others.
fn register_indexes(conn: &mut Connection, schema: &Schema) -> Result<HashMap<IndexId, i64>, StorageError> {
    // Immediate: it writes, and must not start reading a state another writer then changes.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rebuilt: i64 = tx
        .query_row("SELECT value FROM meta WHERE name = 'indexes_rebuilt'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let rebuild = rebuilt < INDEX_REBUILD_VERSION;
    let mut numbers = HashMap::new();
    let mut wanted = Vec::new();
    for table in schema.tables() {
        let mut builds = Vec::new();
        for (position, index) in table.indexes.iter().enumerate() {
            let definition = index_definition(table, index);
            let existing: Option<i64> = tx
                .query_row("SELECT index_number FROM indexes WHERE definition = ?1", [&definition], |r| r.get(0))
                .optional()?;
            let number = match existing {
                Some(number) => {
                    if rebuild {
                        let removed = tx.execute("DELETE FROM index_entries WHERE index_number = ?1", [number])?;
                        builds.push(IndexBuild { number, index, removed: Some(removed as u64) });
                    }
                    number
                }
                None => {
                    let number: i64 =
                        tx.query_row("SELECT COALESCE(MAX(index_number), 0) + 1 FROM indexes", [], |r| r.get(0))?;
                    tx.execute(
                        "INSERT INTO indexes (definition, index_number) VALUES (?1, ?2)",
                        params![definition, number],
                    )?;
                    builds.push(IndexBuild { number, index, removed: None });
                    number
                }
            };
            numbers.insert(IndexId { table: table.number, slot: position as u16 + 1 }, number);
            wanted.push(definition);
        }
        let written = build_indexes(&tx, table, &builds)?;
        log_builds(table, &builds, written);
    }
    let stale: Vec<(String, i64)> = tx
        .prepare("SELECT definition, index_number FROM indexes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (definition, number) in stale.into_iter().filter(|(d, _)| !wanted.contains(d)) {
        tx.execute("DELETE FROM index_entries WHERE index_number = ?1", [number])?;
        tx.execute("DELETE FROM indexes WHERE definition = ?1", [definition])?;
    }
    if rebuild {
        tx.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('indexes_rebuilt', ?1)",
            [INDEX_REBUILD_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(numbers)
}

/// Writes the entries of new or emptied indexes of `table` from one read of its documents;
/// returns how many entries each got (one per document).
fn build_indexes(conn: &Connection, table: &TableDef, builds: &[IndexBuild<'_>]) -> Result<u64, StorageError> {
    if builds.is_empty() {
        return Ok(0);
    }
    let mut select = conn.prepare("SELECT id, json FROM documents WHERE table_number = ?1")?;
    let mut insert = conn.prepare("INSERT INTO index_entries (index_number, key, id) VALUES (?1, ?2, ?3)")?;
    let mut rows = select.query([table.number])?;
    let mut documents = 0;
    while let Some(row) = rows.next()? {
        let id = row_id(table.number, row.get_ref(0)?.as_blob()?)?;
        let document = parse_document(id, row.get_ref(1)?.as_str()?)?;
        for build in builds {
            insert.execute(params![build.number, document.index_key(&build.index.fields), &id.internal[..]])?;
        }
        documents += 1;
    }
    Ok(documents)
}

/// A connection inside a read (or write) transaction.
struct SqliteSnapshot<'a> {
    storage: &'a SqliteStorage,
    conn: Option<Connection>,
    ts: Timestamp,
}

impl SqliteSnapshot<'_> {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

fn read_ts(conn: &Connection) -> Result<Timestamp, StorageError> {
    let ts: i64 =
        conn.prepare_cached("SELECT value FROM meta WHERE name = 'last_commit_ts'")?.query_row([], |r| r.get(0))?;
    Ok(ts as Timestamp)
}

fn get(conn: &Connection, id: &DocumentId) -> Result<Option<Document>, StorageError> {
    let mut statement = conn.prepare_cached("SELECT json FROM documents WHERE table_number = ?1 AND id = ?2")?;
    let json: Option<String> = statement.query_row(params![id.table, &id.internal[..]], |r| r.get(0)).optional()?;
    json.map(|json| parse_document(*id, &json)).transpose()
}

const SCAN_ASC: &str =
    "SELECT i.key, i.id, d.json FROM index_entries i JOIN documents d ON d.table_number = ?2 AND d.id = i.id
    WHERE i.index_number = ?1 AND i.key >= ?3 AND i.key < ?4 ORDER BY i.key ASC LIMIT ?5";
const SCAN_DESC: &str =
    "SELECT i.key, i.id, d.json FROM index_entries i JOIN documents d ON d.table_number = ?2 AND d.id = i.id
    WHERE i.index_number = ?1 AND i.key >= ?3 AND i.key < ?4 ORDER BY i.key DESC LIMIT ?5";

fn scan(
    conn: &Connection,
    index_number: i64,
    table: u32,
    range: &KeyRange,
    order: Order,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
    let sql = match order {
        Order::Asc => SCAN_ASC,
        Order::Desc => SCAN_DESC,
    };
    let mut statement = conn.prepare_cached(sql)?;
    let end = range.end.as_deref().unwrap_or(KEY_CEILING);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![index_number, table, range.start, end, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let key: Vec<u8> = row.get(0)?;
        let id = row_id(table, row.get_ref(1)?.as_blob()?)?;
        out.push((key, parse_document(id, row.get_ref(2)?.as_str()?)?));
    }
    Ok(out)
}

fn documents(
    conn: &Connection,
    table: TableNumber,
    after: Option<&DocumentId>,
    limit: usize,
) -> Result<Vec<Document>, StorageError> {
    let mut statement =
        conn.prepare_cached("SELECT id, json FROM documents WHERE table_number = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?;
    let after: &[u8] = after.map_or(&[], |id| &id.internal[..]);
    let mut rows = statement.query(params![table, after, i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id = row_id(table, row.get_ref(0)?.as_blob()?)?;
        out.push(parse_document(id, row.get_ref(1)?.as_str()?)?);
    }
    Ok(out)
}

fn index_entries(
    conn: &Connection,
    index_number: i64,
    table: TableNumber,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT key, id FROM index_entries WHERE index_number = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
    )?;
    let after = after.unwrap_or(&[]);
    let mut rows = statement.query(params![index_number, after, i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((row.get(0)?, row_id(table, row.get_ref(1)?.as_blob()?)?));
    }
    Ok(out)
}

reads_through!(SqliteSnapshot, conn);
reads_through!(SqliteBatch, counted);

impl SqliteBatch<'_> {
    /// The connection, for one more statement.
    fn counted(&mut self) -> &Connection {
        self.statements += 1;
        &self.conn
    }

    /// Runs a cached statement that changes rows; returns how many.
    fn change(&mut self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StorageError> {
        Ok(self.counted().prepare_cached(sql)?.execute(params)?)
    }
}

impl Drop for SqliteSnapshot<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A connection that cannot end its transaction is not reused.
            if conn.prepare_cached("COMMIT").and_then(|mut commit| commit.execute([])).is_ok() {
                self.storage.readers.lock().expect("reader pool lock").push(conn);
            }
        }
    }
}

struct SqliteBatch<'a> {
    storage: &'a SqliteStorage,
    conn: std::sync::MutexGuard<'a, Connection>,
    ts: Timestamp,
    open: bool,
    statements: u64,
}

impl Batch for SqliteBatch<'_> {
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError> {
        let mut statement = self
            .counted()
            .prepare_cached("SELECT ts, result FROM mutation_outcomes WHERE client = ?1 AND request_id = ?2")?;
        let found = statement
            .query_row(params![key.client, key.request as i64], |r| Ok((r.get::<_, i64>(0)? as Timestamp, r.get(1)?)))
            .optional()?;
        Ok(found)
    }

    fn purge_outcomes(&mut self, before: Timestamp) -> Result<usize, StorageError> {
        self.change("DELETE FROM mutation_outcomes WHERE ts < ?1", [before as i64])
    }

    fn commit(
        mut self: Box<Self>,
        ts: Timestamp,
        group: &GroupWrites,
        _writes: &WriteSet,
    ) -> Result<BatchCounts, StorageError> {
        // In process, a statement per row costs no round trip: prepared once, each is a B-tree
        // probe. Removals first, so an entry's slot is free before any addition.
        for entry in &group.removed {
            let number = self.storage.index_number(entry.index)?;
            let sql = "DELETE FROM index_entries WHERE index_number = ?1 AND key = ?2";
            if self.change(sql, params![number, entry.key])? != 1 {
                return Err(missing_entry(entry.index, &entry.id));
            }
        }
        for (id, document) in &group.documents {
            match document {
                Some(document) => self.change(
                    "INSERT OR REPLACE INTO documents (table_number, id, json) VALUES (?1, ?2, ?3)",
                    params![id.table, &id.internal[..], document_json(document)],
                )?,
                None => self.change(
                    "DELETE FROM documents WHERE table_number = ?1 AND id = ?2",
                    params![id.table, &id.internal[..]],
                )?,
            };
        }
        for entry in &group.added {
            let number = self.storage.index_number(entry.index)?;
            self.change(
                "INSERT INTO index_entries (index_number, key, id) VALUES (?1, ?2, ?3)",
                params![number, entry.key, &entry.id.internal[..]],
            )?;
        }
        for (key, ts, result) in &group.outcomes {
            self.change(
                "INSERT INTO mutation_outcomes (client, request_id, ts, result) VALUES (?1, ?2, ?3, ?4)",
                params![key.client, key.request as i64, *ts as i64, result],
            )?;
        }
        self.change("UPDATE meta SET value = ?1 WHERE name = 'last_commit_ts'", [ts as i64])?;
        self.counted().execute_batch("COMMIT")?;
        self.open = false;
        if let Some(checkpointer) = &self.storage.checkpointer
            && checkpointer.restart_wanted.swap(false, Ordering::Relaxed)
        {
            // Without waiting: a reader may be holding a snapshot while it waits for this very
            // commit to be announced. If a reader is in the way, the next commit tries again.
            self.conn.busy_timeout(std::time::Duration::ZERO)?;
            let busy = self.conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
            self.conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
            if !matches!(busy, Ok(0)) {
                checkpointer.restart_wanted.store(true, Ordering::Relaxed);
            }
        }
        Ok(BatchCounts { statements: self.statements, round_trips: 0 })
    }
}

impl Drop for SqliteBatch<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Storage for SqliteStorage {
    fn keep_secret(&self, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError> {
        if matches!(self.access, Access::ReadOnly) {
            return Err(StorageError::Other("a read-only store keeps no new secrets".into()));
        }
        let writer = self.writer.lock().map_err(|_| StorageError::Other("writer connection poisoned".into()))?;
        keep_secret_in(&writer, name, make)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StorageError> {
        let conn = self.reader()?;
        // Cached, as every statement of a read is: a query is short enough that parsing its SQL shows.
        conn.prepare_cached("BEGIN")?.execute([])?;
        // The first read fixes the snapshot; reading the commit timestamp inside
        // it names exactly the state the rest of the reads will see.
        let ts = read_ts(&conn)?;
        Ok(Box::new(SqliteSnapshot { storage: self, conn: Some(conn), ts }))
    }

    fn begin_batch(&self) -> Result<Box<dyn Batch + '_>, StorageError> {
        let conn = self.writer.lock().map_err(|_| StorageError::Other("writer connection poisoned".into()))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let ts = read_ts(&conn)?;
        // BEGIN and the timestamp's read.
        Ok(Box::new(SqliteBatch { storage: self, conn, ts, open: true, statements: 2 }))
    }

    /// The database file and its write-ahead log: commits land in the WAL first, and it holds up
    /// to `WAL_RESTART_FRAMES` pages between checkpoints.
    fn size_bytes(&self) -> Result<Option<u64>, StorageError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = |path: &Path| match std::fs::metadata(path) {
            Ok(metadata) => Ok(metadata.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StorageError::Io(format!("cannot read the size of {}: {e}", path.display()))),
        };
        Ok(Some(size(&self.path)? + size(Path::new(&wal))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> StorageError {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("message".into())).into()
    }

    #[test]
    fn sqlite_errors_map_to_their_kinds() {
        use crate::storage::StorageErrorKind as Kind;
        assert_eq!(failure(rusqlite::ffi::SQLITE_BUSY).kind(), Kind::Conflict);
        assert_eq!(failure(rusqlite::ffi::SQLITE_LOCKED).kind(), Kind::Conflict);
        assert_eq!(failure(rusqlite::ffi::SQLITE_CORRUPT).kind(), Kind::Corrupt);
        assert_eq!(failure(rusqlite::ffi::SQLITE_NOTADB).kind(), Kind::Corrupt);
        assert_eq!(failure(rusqlite::ffi::SQLITE_TOOBIG).kind(), Kind::Limit);
        assert_eq!(failure(rusqlite::ffi::SQLITE_FULL).kind(), Kind::Io);
        assert_eq!(failure(rusqlite::ffi::SQLITE_IOERR).kind(), Kind::Io);
        assert_eq!(failure(rusqlite::ffi::SQLITE_CONSTRAINT).kind(), Kind::Other);
        let e = failure(rusqlite::ffi::SQLITE_BUSY);
        assert!(e.is_transient() && e.to_string().starts_with("storage error: "), "{e}");
        let text: StorageError = rusqlite::types::FromSqlError::InvalidType.into();
        assert_eq!(text.kind(), Kind::Corrupt);
    }

    /// Issue 16: a cached scan was parsed and planned again each time its range was rebound (a
    /// tenth of a cold list's time), because range estimates from bound values expire it.
    #[test]
    fn a_scan_rebound_to_other_keys_is_not_planned_again() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::new(Vec::new()).unwrap();
        let storage = SqliteStorage::open(dir.path(), &schema, Durability::Normal).unwrap();
        for conn in
            [storage.reader().unwrap(), open_connection(&storage.path, Access::ReadWrite(Durability::Full)).unwrap()]
        {
            for (start, order) in (0u8..4).zip([Order::Asc, Order::Desc].into_iter().cycle()) {
                let range = KeyRange { start: vec![start], end: Some(vec![start + 1]) };
                scan(&conn, 1, 1, &range, order, 10 + start as usize).unwrap();
            }
            for sql in [SCAN_ASC, SCAN_DESC] {
                let statement = conn.prepare_cached(sql).unwrap();
                assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
            }
        }
    }

    #[test]
    fn a_damaged_database_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jangar.sqlite3"), vec![0x5a; 8192]).unwrap();
        let schema = Schema::new(Vec::new()).unwrap();
        let error = SqliteStorage::open(dir.path(), &schema, Durability::Normal).map(drop).unwrap_err();
        assert_eq!(error.kind(), crate::storage::StorageErrorKind::Corrupt, "{error}");
    }
}
