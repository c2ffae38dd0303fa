//! PostgreSQL, shared by any number of Jangar processes (replicas).
//!
//! The tables mirror SQLite's (`jangar_documents`, `jangar_index_entries`, ...).
//! What changes is that other processes write too:
//!
//! - **One writer at a time, across replicas.** A batch takes a transaction-level
//!   advisory lock before it reads the last commit timestamp, and holds it until
//!   its COMMIT. Commits are therefore serial: each continues after the last
//!   one's timestamp, timestamps increase in commit order, and a snapshot that
//!   shows a commit shows every earlier one. Every replica's group commit still
//!   carries many mutations per lock and per fsync.
//! - **Commits are announced through the database.** Each batch appends its
//!   write set to `jangar_commit_log` and sends `NOTIFY jangar_commits` in the
//!   same transaction. Every replica's [`PostgresFeed`] listens, and reads the
//!   log after the last commit it has seen, so a missed notification or a
//!   reconnect loses nothing. The log keeps ten minutes, and 64 MiB at most: each
//!   replica's feed purges it now and then on its own connection, off the lock.
//! - **Migrations are versioned** (`jangar_migrations`) and run under a session
//!   advisory lock, so replicas that start together migrate once.

use crate::knobs::{
    BUILD_CHUNK, COMMIT_LOG_MAX_BYTES, COMMIT_LOG_PURGE_INTERVAL, COMMIT_LOG_RETENTION_NS, FEED_BATCH, POOLED_READERS,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::{
    Batch, BatchCounts, CommitFeed, GroupWrites, INDEX_REBUILD_VERSION, IndexBuild, IndexEntry, Make, MutationKey,
    Order, Snapshot, Storage, StorageError, StorageErrorKind, Timestamp, check_exact_floats, document_json,
    index_definition, log_builds, missing_entry, new_secret, not_built, parse_document, row_id, stored_secret,
    written_documents,
};
use crate::cursor::CursorKey;
use crate::document::Document;
use crate::id::{DocumentId, TableNumber};
use crate::integrity;
use crate::keys::KeyRange;
use crate::schema::{IndexId, Schema, TableDef};
use crate::sets::{Commit, WriteSet};

impl From<postgres::Error> for StorageError {
    fn from(e: postgres::Error) -> StorageError {
        let message = format!("PostgreSQL: {e}");
        if let Some(code) = e.code() {
            return StorageError::of_kind(sqlstate_kind(code.code()), message);
        }
        let io = std::error::Error::source(&e).is_some_and(|source| source.is::<std::io::Error>());
        let text = e.to_string();
        if e.is_closed() || io || text.starts_with("timeout") || text.starts_with("error connecting") {
            StorageError::Unavailable(message)
        } else if text.starts_with("error deserializing") {
            // A stored value the schema's type cannot read: not what was written.
            StorageError::Corrupt(message)
        } else {
            StorageError::Other(message)
        }
    }
}

/// The kind of a server error, by its SQLSTATE (PostgreSQL's appendix "Error Codes").
fn sqlstate_kind(code: &str) -> StorageErrorKind {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available (lock_timeout)
        "40001" | "40P01" | "55P03" => StorageErrorKind::Conflict,
        // too_many_connections; idle_in_transaction_session_timeout
        "53300" | "25P03" => StorageErrorKind::Unavailable,
        // disk_full
        "53100" => StorageErrorKind::Io,
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => StorageErrorKind::Corrupt,
        // connection exceptions; operator intervention (shutdown, cannot connect now, query canceled)
        _ if code.starts_with("08") || code.starts_with("57") => StorageErrorKind::Unavailable,
        // program limits (a row or key too large for an index)
        _ if code.starts_with("54") => StorageErrorKind::Limit,
        _ => StorageErrorKind::Other,
    }
}

/// Advisory lock keys (any constants unlikely to clash with an application's own).
const MIGRATION_LOCK: i64 = 0x6a61_6e67_6172_0001;
const COMMIT_LOCK: i64 = 0x6a61_6e67_6172_0002;
const LISTEN: &str = "LISTEN jangar_commits";
/// Index keys start with a type tag below 0xff, so `[0xff]` bounds every key.
const KEY_CEILING: &[u8] = &[0xff];

/// Each entry is one schema version, applied in order, once.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE jangar_documents (
    table_number BIGINT NOT NULL,
    id BYTEA NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (table_number, id)
);
CREATE TABLE jangar_index_entries (
    index_number BIGINT NOT NULL,
    key BYTEA NOT NULL,
    id BYTEA NOT NULL,
    PRIMARY KEY (index_number, key)
);
CREATE TABLE jangar_indexes (
    definition TEXT PRIMARY KEY,
    index_number BIGINT NOT NULL UNIQUE
);
CREATE TABLE jangar_mutation_outcomes (
    client TEXT NOT NULL,
    request_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (client, request_id)
);
CREATE INDEX jangar_mutation_outcomes_by_ts ON jangar_mutation_outcomes (ts);
CREATE TABLE jangar_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO jangar_meta (name, value) VALUES ('last_commit_ts', 0), ('next_index_number', 1);
CREATE TABLE jangar_commit_log (ts BIGINT PRIMARY KEY, prev_ts BIGINT NOT NULL, writes BYTEA NOT NULL);
",
    "
CREATE TABLE jangar_secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
",
];

pub struct PostgresStorage {
    url: String,
    writer: Mutex<Option<Conn>>,
    readers: Mutex<Vec<Conn>>,
    /// The stored number of each declared index.
    index_numbers: HashMap<IndexId, i64>,
    cursor_key: CursorKey,
}

/// Connects with timeouts and TCP keepalives, so a database (or a network)
/// that goes silent is noticed instead of waited on forever.
fn connect(url: &str) -> Result<Client, StorageError> {
    let mut config: postgres::Config =
        url.parse().map_err(|e| StorageError::Other(format!("bad PostgreSQL URL: {e}")))?;
    config
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    config.connect(NoTls).map_err(|e| {
        // The driver's message names the cause, not the server: say which one.
        let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), |source| format!("{e}: {source}"));
        StorageError::Unavailable(format!("cannot connect to PostgreSQL at {}: {cause}", describe(&config)))
    })
}

/// Where a PostgreSQL URL points, without its password: `host:port/database`.
pub fn describe_url(url: &str) -> String {
    url.parse::<postgres::Config>().map_or_else(|_| "(an unparsable URL)".into(), |config| describe(&config))
}

fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost:5432".to_owned() } else { hosts.join(",") };
    format!("{hosts}/{}", config.get_dbname().unwrap_or("(the user's database)"))
}

/// The writer's session: a replica that dies (or stalls) inside a batch must
/// not hold the commit lock for long, and others must not wait on it forever.
///
/// And no plan but key probes: every statement the writer runs finds its rows by whole primary
/// keys, and its prepared statements keep the generic plan made in their first runs. Made while
/// a table is small (a new deployment), that plan would read the table, or a whole index's
/// entries, and keep doing so as it grows; without sequential scans, hash and merge joins the
/// planner has only the probes left, at any size.
const WRITER_SESSION: &str = "SET idle_in_transaction_session_timeout = '30s'; SET lock_timeout = '30s'; \
     SET statement_timeout = '60s'; SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// A connection that prepares each statement once: a statement prepared for
/// every call would double the round trips, and round trips bound a commit.
/// It counts both, for the committer's figures.
struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    counts: BatchCounts,
    /// The writer's last durable commit: the next batch reads the commit log after it in the
    /// round trip that takes the lock, which is what a committer's catch-up asks next...
    committed_at: Option<Timestamp>,
    /// ...if other replicas committed before the writer's last batch too (where this replica is
    /// the only writer, the read would find nothing, every group).
    others_commit: bool,
}

/// The commit log's rows after a timestamp (as `ts`, `prev_ts` and the write set), read with a
/// batch's first round trip.
struct LogSince {
    after: Timestamp,
    rows: Vec<(Timestamp, Timestamp, Option<WriteSet>)>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Conn {
    fn open(url: &str) -> Result<Conn, StorageError> {
        Ok(Conn {
            client: connect(url)?,
            prepared: HashMap::new(),
            counts: BatchCounts::default(),
            committed_at: None,
            others_commit: false,
        })
    }

    fn open_writer(url: &str) -> Result<Conn, StorageError> {
        let mut conn = Conn::open(url)?;
        conn.batch_execute(WRITER_SESSION)?;
        Ok(conn)
    }

    /// The prepared statement for `sql`, counted as one statement about to run.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StorageError> {
        self.counts.statements += 1;
        self.counts.round_trips += 1;
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        self.counts.round_trips += 1;
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_one(&statement, params)?)
    }

    fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }

    /// Statements without parameters (transaction control), in one round trip.
    fn batch_execute(&mut self, sql: &str) -> Result<(), StorageError> {
        self.counts.statements += sql.split(';').filter(|s| !s.trim().is_empty()).count() as u64;
        self.counts.round_trips += 1;
        Ok(self.client.batch_execute(sql)?)
    }

    /// Opens the writer's transaction, takes the commit lock and reads the last commit's
    /// timestamp and (where others write too) the commit log after this writer's last commit, in
    /// one round trip: each statement of a simple query takes its own snapshot (READ COMMITTED),
    /// so the reads come after the lock.
    fn begin_locked(&mut self) -> Result<(Timestamp, Option<LogSince>), StorageError> {
        let mut sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({COMMIT_LOCK}); \
             SELECT value FROM jangar_meta WHERE name = 'last_commit_ts'"
        );
        self.counts.statements += 3;
        let log_after = self.committed_at.filter(|_| self.others_commit);
        if let Some(after) = log_after {
            // Base64 without PostgreSQL's line breaks, as the simple protocol answers in text.
            sql.push_str(&format!(
                "; SELECT ts, prev_ts, translate(encode(writes, 'base64'), E'\\n', '') FROM jangar_commit_log \
                 WHERE ts > {after} ORDER BY ts LIMIT {}",
                WRITTEN_SINCE_ROWS + 1
            ));
            self.counts.statements += 1;
        }
        self.counts.round_trips += 1;
        // Each statement's rows, ended by its CommandComplete.
        let mut results: Vec<Vec<postgres::SimpleQueryRow>> = vec![Vec::new()];
        for message in self.client.simple_query(&sql)? {
            match message {
                postgres::SimpleQueryMessage::Row(row) => results.last_mut().expect("never empty").push(row),
                postgres::SimpleQueryMessage::CommandComplete(_) => results.push(Vec::new()),
                _ => {}
            }
        }
        let ts = results
            .get(2)
            .and_then(|rows| rows.first())
            .and_then(|row| row.get(0))
            .and_then(|text| text.parse::<i64>().ok())
            .map(|ts| ts as Timestamp)
            .ok_or_else(|| StorageError::Corrupt("jangar_meta holds no last commit timestamp".into()))?;
        let log = log_after.map(|after| {
            let stamp = |text: Option<&str>| text.and_then(|t| t.parse::<i64>().ok()).map(|ts| ts as Timestamp);
            let rows = results.get(3).map(Vec::as_slice).unwrap_or_default().iter().filter_map(|row| {
                let writes = row.get(2).and_then(super::super::base64::decode);
                Some((stamp(row.get(0))?, stamp(row.get(1))?, writes.as_deref().and_then(WriteSet::decode)))
            });
            LogSince { after, rows: rows.collect() }
        });
        self.others_commit = self.committed_at.is_some_and(|at| at != ts);
        Ok((ts, log))
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl PostgresStorage {
    /// Connects, migrates the schema and registers (building if new) the schema's indexes.
    pub fn open(url: &str, schema: &Schema) -> Result<PostgresStorage, StorageError> {
        check_exact_floats()?;
        let mut client = connect(url)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let migrated = migrate(&mut client).and_then(|()| register_indexes(&mut client, schema));
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        let index_numbers = migrated?;
        unlocked?;
        // The first replica's secret wins; every replica then signs and reads cursors alike.
        let secret = keep_secret_in(&mut client, "cursor", &mut || Ok(new_secret()?.to_vec()))?;
        drop(client);
        Ok(PostgresStorage {
            url: url.to_owned(),
            writer: Mutex::new(Some(Conn::open_writer(url)?)),
            readers: Mutex::new(Vec::new()),
            index_numbers,
            cursor_key: stored_secret(&secret)?,
        })
    }

    /// Runs the integrity check on the database at `url` without migrating or writing to it.
    pub fn check_database(url: &str, schema: &Schema) -> Result<integrity::Report, StorageError> {
        let mut client = connect(url)?;
        let registered = client.query_one("SELECT to_regclass('jangar_indexes') IS NOT NULL", &[])?.get::<_, bool>(0);
        if !registered {
            return Err(StorageError::Other("this database holds no Jangar data (no jangar_indexes table)".into()));
        }
        let mut index_numbers = HashMap::new();
        for table in schema.tables() {
            for (position, index) in table.indexes.iter().enumerate() {
                let definition = index_definition(table, index);
                let row = client
                    .query_opt("SELECT index_number FROM jangar_indexes WHERE definition = $1", &[&definition])?;
                let number: i64 = row.ok_or_else(|| not_built(&definition))?.get(0);
                index_numbers.insert(IndexId { table: table.number, slot: position as u16 + 1 }, number);
            }
        }
        drop(client);
        let storage = PostgresStorage {
            url: url.to_owned(),
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            index_numbers,
            // The check reads no cursors.
            cursor_key: CursorKey::new([0; 32]),
        };
        integrity::check(schema, &mut *storage.snapshot()?)
    }

    fn index_number(&self, index: IndexId) -> Result<i64, StorageError> {
        self.index_numbers.get(&index).copied().ok_or_else(|| StorageError::Other(format!("unknown index {index:?}")))
    }

    fn reader(&self) -> Result<Conn, StorageError> {
        let pooled = self.readers.lock().map_err(|_| StorageError::Other("reader pool poisoned".into()))?.pop();
        match pooled {
            Some(conn) if !conn.is_closed() => Ok(conn),
            _ => Conn::open(&self.url),
        }
    }
}

/// The first replica's secret wins; every replica then uses the same.
fn keep_secret_in(client: &mut Client, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError> {
    const STORED: &str = "SELECT value FROM jangar_secrets WHERE name = $1";
    if let Some(row) = client.query_opt(STORED, &[&name])? {
        return Ok(row.get(0));
    }
    client.execute(
        "INSERT INTO jangar_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &make()?],
    )?;
    Ok(client.query_one(STORED, &[&name])?.get(0))
}

fn migrate(client: &mut Client) -> Result<(), StorageError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS jangar_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let applied: i32 = client.query_one("SELECT COALESCE(MAX(version), 0) FROM jangar_migrations", &[])?.get(0);
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO jangar_migrations (version) VALUES ($1)", &[&(version as i32 + 1)])?;
        tx.commit()?;
        tracing::info!(version = version + 1, "migrated the PostgreSQL schema");
    }
    Ok(())
}

/// Registers the schema's indexes (building new ones, dropping those no longer
/// declared) and, once per `INDEX_REBUILD_VERSION`, rebuilds the others.
fn register_indexes(client: &mut Client, schema: &Schema) -> Result<HashMap<IndexId, i64>, StorageError> {
    let mut tx = client.transaction()?;
    // No replica commits while an index is built or dropped, so none writes past it.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    let rebuilt: i64 =
        tx.query_opt("SELECT value FROM jangar_meta WHERE name = 'indexes_rebuilt'", &[])?.map_or(0, |row| row.get(0));
    let rebuild = rebuilt < INDEX_REBUILD_VERSION;
    let mut numbers = HashMap::new();
    let mut wanted = Vec::new();
    for table in schema.tables() {
        let mut builds = Vec::new();
        for (position, index) in table.indexes.iter().enumerate() {
            let definition = index_definition(table, index);
            let existing =
                tx.query_opt("SELECT index_number FROM jangar_indexes WHERE definition = $1", &[&definition])?;
            let number: i64 = match existing {
                Some(row) => {
                    let number = row.get(0);
                    if rebuild {
                        let removed =
                            tx.execute("DELETE FROM jangar_index_entries WHERE index_number = $1", &[&number])?;
                        builds.push(IndexBuild { number, index, removed: Some(removed) });
                    }
                    number
                }
                None => {
                    // Numbers are never reused: an older replica still writing a dropped index
                    // must not write into a new one.
                    let number: i64 = tx
                        .query_one(
                            "UPDATE jangar_meta SET value = value + 1 WHERE name = 'next_index_number' RETURNING value - 1",
                            &[],
                        )?
                        .get(0);
                    tx.execute(
                        "INSERT INTO jangar_indexes (definition, index_number) VALUES ($1, $2)",
                        &[&definition, &number],
                    )?;
                    builds.push(IndexBuild { number, index, removed: None });
                    number
                }
            };
            numbers.insert(IndexId { table: table.number, slot: position as u16 + 1 }, number);
            wanted.push(definition);
        }
        let written = build_indexes(&mut tx, table, &builds)?;
        log_builds(table, &builds, written);
    }
    for row in tx.query("SELECT definition, index_number FROM jangar_indexes", &[])? {
        let (definition, number): (String, i64) = (row.get(0), row.get(1));
        if !wanted.contains(&definition) {
            tx.execute("DELETE FROM jangar_index_entries WHERE index_number = $1", &[&number])?;
            tx.execute("DELETE FROM jangar_indexes WHERE definition = $1", &[&definition])?;
        }
    }
    if rebuild {
        tx.execute(
            "INSERT INTO jangar_meta (name, value) VALUES ('indexes_rebuilt', $1)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&INDEX_REBUILD_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(numbers)
}

/// Writes the entries of new or emptied indexes of `table` from one read of its documents, a
/// chunk at a time (other replicas wait for the commit lock meanwhile, so round trips count);
/// returns how many entries each got (one per document).
fn build_indexes(
    tx: &mut postgres::Transaction<'_>,
    table: &TableDef,
    builds: &[IndexBuild<'_>],
) -> Result<u64, StorageError> {
    if builds.is_empty() {
        return Ok(0);
    }
    let select = tx.prepare("SELECT id, json FROM jangar_documents WHERE table_number = $1")?;
    let insert = tx.prepare(
        "INSERT INTO jangar_index_entries (index_number, key, id)
         SELECT $1, key, id FROM unnest($2::bytea[], $3::bytea[]) AS entries (key, id)",
    )?;
    let documents = tx.bind(&select, &[&i64::from(table.number)])?;
    let mut written = 0;
    loop {
        let rows = tx.query_portal(&documents, BUILD_CHUNK as i32)?;
        let parsed: Vec<Document> = rows
            .iter()
            .map(|row| parse_document(row_id(table.number, row.get(0))?, row.get(1)))
            .collect::<Result<_, StorageError>>()?;
        let ids: Vec<&[u8]> = parsed.iter().map(|d| &d.id.internal[..]).collect();
        for build in builds {
            let keys: Vec<Vec<u8>> = parsed.iter().map(|d| d.index_key(&build.index.fields)).collect();
            tx.execute(&insert, &[&build.number, &keys, &ids])?;
        }
        written += parsed.len() as u64;
        if rows.len() < BUILD_CHUNK {
            return Ok(written);
        }
    }
}

fn read_ts(client: &mut Conn) -> Result<Timestamp, StorageError> {
    let ts: i64 = client.query_one("SELECT value FROM jangar_meta WHERE name = 'last_commit_ts'", &[])?.get(0);
    Ok(ts as Timestamp)
}

fn get(client: &mut Conn, id: &DocumentId) -> Result<Option<Document>, StorageError> {
    let row = client.query_opt(
        "SELECT json FROM jangar_documents WHERE table_number = $1 AND id = $2",
        &[&i64::from(id.table), &&id.internal[..]],
    )?;
    row.map(|row| parse_document(*id, row.get(0))).transpose()
}

fn scan(
    client: &mut Conn,
    index_number: i64,
    table: u32,
    range: &KeyRange,
    order: Order,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
    let sql = match order {
        Order::Asc => {
            "SELECT i.key, i.id, d.json FROM jangar_index_entries i
             JOIN jangar_documents d ON d.table_number = $2 AND d.id = i.id
             WHERE i.index_number = $1 AND i.key >= $3 AND i.key < $4 ORDER BY i.key ASC LIMIT $5"
        }
        Order::Desc => {
            "SELECT i.key, i.id, d.json FROM jangar_index_entries i
             JOIN jangar_documents d ON d.table_number = $2 AND d.id = i.id
             WHERE i.index_number = $1 AND i.key >= $3 AND i.key < $4 ORDER BY i.key DESC LIMIT $5"
        }
    };
    let end = range.end.as_deref().unwrap_or(KEY_CEILING);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(sql, &[&index_number, &i64::from(table), &range.start, &end, &limit])?;
    rows.iter()
        .map(|row| {
            let id = row_id(table, row.get(1))?;
            Ok((row.get::<_, Vec<u8>>(0), parse_document(id, row.get(2))?))
        })
        .collect()
}

fn documents(
    client: &mut Conn,
    table: TableNumber,
    after: Option<&DocumentId>,
    limit: usize,
) -> Result<Vec<Document>, StorageError> {
    let after: &[u8] = after.map_or(&[], |id| &id.internal[..]);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(
        "SELECT id, json FROM jangar_documents WHERE table_number = $1 AND id > $2 ORDER BY id LIMIT $3",
        &[&i64::from(table), &after, &limit],
    )?;
    rows.iter().map(|row| parse_document(row_id(table, row.get(0))?, row.get(1))).collect()
}

fn index_entries(
    client: &mut Conn,
    index_number: i64,
    table: TableNumber,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError> {
    let after = after.unwrap_or(&[]);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(
        "SELECT key, id FROM jangar_index_entries WHERE index_number = $1 AND key > $2 ORDER BY key LIMIT $3",
        &[&index_number, &after, &limit],
    )?;
    rows.iter().map(|row| Ok((row.get::<_, Vec<u8>>(0), row_id(table, row.get(1))?))).collect()
}

/// A connection inside a REPEATABLE READ transaction.
struct PostgresSnapshot<'a> {
    storage: &'a PostgresStorage,
    client: Option<Conn>,
    ts: Timestamp,
}

impl PostgresSnapshot<'_> {
    fn client(&mut self) -> &mut Conn {
        self.client.as_mut().expect("client present until drop")
    }
}

reads_through!(PostgresSnapshot, client);
reads_through!(PostgresBatch, client);

impl Drop for PostgresSnapshot<'_> {
    fn drop(&mut self) {
        if let Some(mut client) = self.client.take() {
            // A connection that cannot end its transaction is not reused.
            if client.batch_execute("COMMIT").is_ok()
                && let Ok(mut readers) = self.storage.readers.lock()
                && readers.len() < POOLED_READERS
            {
                readers.push(client);
            }
        }
    }
}

struct PostgresBatch<'a> {
    storage: &'a PostgresStorage,
    writer: std::sync::MutexGuard<'a, Option<Conn>>,
    ts: Timestamp,
    open: bool,
    /// The connection's counts when the batch began.
    counts_before: BatchCounts,
    /// The commit log after the writer's last commit, read as the batch began.
    log: Option<LogSince>,
}

impl PostgresBatch<'_> {
    fn client(&mut self) -> &mut Conn {
        self.writer.as_mut().expect("the writer is connected while a batch is open")
    }
}

/// A group's flush, in one statement (one round trip) that does not grow with the group: each
/// data-modifying part takes typed arrays and joins nothing, so whatever plan PostgreSQL caches
/// for it (a generic one after five runs) is function scans feeding inserts, or primary-key
/// probes; the plan test holds it to that. The parts run on one snapshot and cannot see each
/// other's rows, which is sound because they touch disjoint rows: a group writes each document
/// once, and its removed and added index keys are disjoint (keys end with the id).
///
/// - `$1, $2`: index entries removed, by index number and key. The deletion joins on every key
///   column: with `key = ANY($2)` beside `index_number = $1`, a generic plan may find the rows by
///   the index number alone and filter the keys. Their count is returned, to be checked.
/// - `$3..$5`: documents written (table number, id, JSON); `$6, $7`: documents deleted.
/// - `$8..$10`: index entries added; `$11..$14`: mutation outcomes.
/// - `$15` (`true` on a chunk that records the commit): the commit timestamp `$16`, the log row
///   chained to the previous commit `$17` with the write set `$18`, and the notification (sent
///   at COMMIT). `prev_ts` lets a follower tell a gap from a quiet spell.
const FLUSH_GROUP: &str = "WITH removed AS (
        DELETE FROM jangar_index_entries e
        USING unnest($1::int8[], $2::bytea[]) AS r (index_number, key)
        WHERE e.index_number = r.index_number AND e.key = r.key
        RETURNING 1),
    kept AS (
        INSERT INTO jangar_documents (table_number, id, json)
        SELECT * FROM unnest($3::int8[], $4::bytea[], $5::text[])
        ON CONFLICT (table_number, id) DO UPDATE SET json = EXCLUDED.json),
    deleted AS (
        DELETE FROM jangar_documents d
        USING unnest($6::int8[], $7::bytea[]) AS r (table_number, id)
        WHERE d.table_number = r.table_number AND d.id = r.id),
    added AS (
        INSERT INTO jangar_index_entries (index_number, key, id)
        SELECT * FROM unnest($8::int8[], $9::bytea[], $10::bytea[])),
    outcomes AS (
        INSERT INTO jangar_mutation_outcomes (client, request_id, ts, result)
        SELECT * FROM unnest($11::text[], $12::int8[], $13::int8[], $14::text[])),
    meta AS (
        UPDATE jangar_meta SET value = $16::int8 WHERE name = 'last_commit_ts' AND $15::bool),
    logged AS (
        INSERT INTO jangar_commit_log (ts, prev_ts, writes) SELECT $16::int8, $17::int8, $18::bytea WHERE $15::bool),
    notified AS (SELECT pg_notify('jangar_commits', '') WHERE $15::bool)
    SELECT (SELECT count(*) FROM removed), (SELECT count(*) FROM notified)";

/// Documents by id, for a batch's reads of many at once: primary-key probes driven by the arrays.
const GET_DOCUMENTS: &str = "SELECT d.table_number, d.id, d.json
     FROM unnest($1::int8[], $2::bytea[]) AS r (table_number, id)
     JOIN jangar_documents d ON d.table_number = r.table_number AND d.id = r.id";

/// Past this many commits of other replicas since its last group, a replica clears its document
/// cache rather than read them all under the commit lock.
const WRITTEN_SINCE_ROWS: i64 = 1_000;

/// Rows per flush statement: a group of a bulk import can hold a million, and one statement's
/// arrays must stay a reasonable message.
const FLUSH_CHUNK: usize = 8_192;

impl PostgresBatch<'_> {
    /// Writes a group, and records its commit at `ts` where that moves the database on, in one
    /// statement per `FLUSH_CHUNK` rows of its largest kind of change: one, but for bulk imports.
    fn flush(&mut self, ts: Timestamp, group: &GroupWrites, writes: &WriteSet) -> Result<(), StorageError> {
        let record = ts > self.ts;
        let (kept, deleted): (Vec<_>, Vec<_>) = group.documents.iter().partition(|(_, d)| d.is_some());
        let longest = [group.removed.len(), kept.len(), deleted.len(), group.added.len(), group.outcomes.len()];
        let statements = longest.into_iter().max().unwrap_or(0).div_ceil(FLUSH_CHUNK).max(usize::from(record));
        let (ts, previous) = (ts as i64, self.ts as i64);
        let encoded = if record { writes.encode() } else { Vec::new() };
        for n in 0..statements {
            let removed = chunk(&group.removed, n);
            let removed_numbers = self.index_numbers(removed)?;
            let removed_keys: Vec<&[u8]> = removed.iter().map(|e| &e.key[..]).collect();
            let kept = chunk(&kept, n);
            let kept_tables: Vec<i64> = kept.iter().map(|(id, _)| i64::from(id.table)).collect();
            let kept_ids: Vec<&[u8]> = kept.iter().map(|(id, _)| &id.internal[..]).collect();
            let json: Vec<String> = kept.iter().filter_map(|(_, d)| d.as_ref().map(document_json)).collect();
            let deleted = chunk(&deleted, n);
            let deleted_tables: Vec<i64> = deleted.iter().map(|(id, _)| i64::from(id.table)).collect();
            let deleted_ids: Vec<&[u8]> = deleted.iter().map(|(id, _)| &id.internal[..]).collect();
            let added = chunk(&group.added, n);
            let added_numbers = self.index_numbers(added)?;
            let added_keys: Vec<&[u8]> = added.iter().map(|e| &e.key[..]).collect();
            let added_ids: Vec<&[u8]> = added.iter().map(|e| &e.id.internal[..]).collect();
            let outcomes = chunk(&group.outcomes, n);
            let clients: Vec<&str> = outcomes.iter().map(|(key, _, _)| &key.client[..]).collect();
            let requests: Vec<i64> = outcomes.iter().map(|(key, _, _)| key.request as i64).collect();
            let stamps: Vec<i64> = outcomes.iter().map(|(_, ts, _)| *ts as i64).collect();
            let results: Vec<&str> = outcomes.iter().map(|(_, _, result)| &result[..]).collect();
            let records = record && n + 1 == statements;
            let row = self.client().query_one(
                FLUSH_GROUP,
                &[
                    &removed_numbers,
                    &removed_keys,
                    &kept_tables,
                    &kept_ids,
                    &json,
                    &deleted_tables,
                    &deleted_ids,
                    &added_numbers,
                    &added_keys,
                    &added_ids,
                    &clients,
                    &requests,
                    &stamps,
                    &results,
                    &records,
                    &ts,
                    &previous,
                    &encoded,
                ],
            )?;
            if let Some(entry) = removed.first()
                && row.get::<_, i64>(0) != removed.len() as i64
            {
                return Err(missing_entry(entry.index, &entry.id));
            }
        }
        Ok(())
    }

    fn index_numbers(&self, entries: &[IndexEntry]) -> Result<Vec<i64>, StorageError> {
        entries.iter().map(|e| self.storage.index_number(e.index)).collect()
    }
}

/// The `n`th `FLUSH_CHUNK` of `items`: empty past the end.
fn chunk<T>(items: &[T], n: usize) -> &[T] {
    items.chunks(FLUSH_CHUNK).nth(n).unwrap_or_default()
}

impl Batch for PostgresBatch<'_> {
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError> {
        let row = self.client().query_opt(
            "SELECT ts, result FROM jangar_mutation_outcomes WHERE client = $1 AND request_id = $2",
            &[&key.client, &(key.request as i64)],
        )?;
        Ok(row.map(|row| (row.get::<_, i64>(0) as Timestamp, row.get(1))))
    }

    fn get_many(&mut self, ids: &[DocumentId]) -> Result<Vec<Option<Document>>, StorageError> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(FLUSH_CHUNK) {
            let tables: Vec<i64> = chunk.iter().map(|id| i64::from(id.table)).collect();
            let internals: Vec<&[u8]> = chunk.iter().map(|id| &id.internal[..]).collect();
            for row in self.client().query(GET_DOCUMENTS, &[&tables, &internals])? {
                let table = u32::try_from(row.get::<_, i64>(0))
                    .map_err(|_| StorageError::Corrupt("a document's table number is out of range".into()))?;
                let id = row_id(table, row.get(1))?;
                found.insert(id, parse_document(id, row.get(2))?);
            }
        }
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }

    fn purge_outcomes(&mut self, before: Timestamp) -> Result<usize, StorageError> {
        let before = before as i64;
        let purged = self.client().execute("DELETE FROM jangar_mutation_outcomes WHERE ts < $1", &[&before])?;
        Ok(purged as usize)
    }

    fn written_since(&mut self, after: Timestamp) -> Result<Option<Vec<DocumentId>>, StorageError> {
        let log = match self.log.take() {
            // The usual case: the cache is exact at this writer's last commit, read already.
            Some(log) if log.after == after => log,
            _ => {
                let rows = self.client().query(
                    "SELECT ts, prev_ts, writes FROM jangar_commit_log WHERE ts > $1 ORDER BY ts LIMIT $2",
                    &[&(after as i64), &(WRITTEN_SINCE_ROWS + 1)],
                )?;
                let rows = rows.iter().map(|row| {
                    let stamp = |i| row.get::<_, i64>(i) as Timestamp;
                    (stamp(0), stamp(1), WriteSet::decode(row.get(2)))
                });
                LogSince { after, rows: rows.collect() }
            }
        };
        if log.rows.len() as i64 > WRITTEN_SINCE_ROWS {
            return Ok(None);
        }
        let mut previous = after;
        let mut ids = Vec::new();
        for (ts, prev, writes) in log.rows {
            let Some(writes) = writes.filter(|_| prev == previous) else {
                return Ok(None);
            };
            ids.extend(written_documents(&writes));
            previous = ts;
        }
        // Under the commit lock the log is complete up to the batch's timestamp.
        Ok((previous == self.ts).then_some(ids))
    }

    fn commit(
        mut self: Box<Self>,
        ts: Timestamp,
        group: &GroupWrites,
        writes: &WriteSet,
    ) -> Result<BatchCounts, StorageError> {
        self.flush(ts, group, writes)?;
        let recorded = ts > self.ts;
        let committed = self.client().batch_execute("COMMIT");
        self.open = false;
        let counts = self.writer.as_ref().map_or(BatchCounts::default(), |conn| BatchCounts {
            statements: conn.counts.statements - self.counts_before.statements,
            round_trips: conn.counts.round_trips - self.counts_before.round_trips,
        });
        if committed.is_ok()
            && let Some(conn) = self.writer.as_mut()
        {
            conn.committed_at = Some(ts);
        }
        match committed {
            Ok(()) => Ok(counts),
            Err(e) if recorded => {
                // The connection may have failed after the server committed: find out, rather
                // than tell callers their (durable) mutations failed and have them applied twice.
                *self.writer = None;
                match committed_at(&self.storage.url, ts as i64) {
                    Ok(true) => Ok(counts),
                    Ok(false) => Err(e),
                    Err(check) => {
                        Err(StorageError::Unavailable(format!("{e}; and whether it committed is unknown: {check}")))
                    }
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether the commit at `ts` is in the log: under the commit lock, so an
/// in-flight COMMIT of the old connection has finished either way.
fn committed_at(url: &str, ts: i64) -> Result<bool, StorageError> {
    let mut conn = Conn::open_writer(url)?;
    conn.batch_execute("BEGIN")?;
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    let found = conn.query_opt("SELECT 1 FROM jangar_commit_log WHERE ts = $1", &[&ts])?.is_some();
    conn.batch_execute("ROLLBACK")?;
    Ok(found)
}

impl Drop for PostgresBatch<'_> {
    fn drop(&mut self) {
        if self.open
            && let Some(client) = self.writer.as_mut()
            && client.batch_execute("ROLLBACK").is_err()
        {
            // The connection is broken: the next batch connects again.
            *self.writer = None;
        }
    }
}

impl Storage for PostgresStorage {
    fn keep_secret(&self, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError> {
        keep_secret_in(&mut self.reader()?.client, name, make)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StorageError> {
        let mut client = self.reader()?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        // The first read fixes the snapshot; the commit timestamp it reads names that state.
        let ts = read_ts(&mut client)?;
        Ok(Box::new(PostgresSnapshot { storage: self, client: Some(client), ts }))
    }

    fn begin_batch(&self) -> Result<Box<dyn Batch + '_>, StorageError> {
        let mut writer = self.writer.lock().map_err(|_| StorageError::Other("writer connection poisoned".into()))?;
        // A connection that went stale (the database restarted) gets one fresh try.
        for attempt in 0..2 {
            if writer.as_ref().is_none_or(Conn::is_closed) {
                *writer = Some(Conn::open_writer(&self.url)?);
            }
            let client = writer.as_mut().expect("connected above");
            let counts_before = client.counts;
            match client.begin_locked() {
                Ok((ts, log)) => {
                    return Ok(Box::new(PostgresBatch { storage: self, writer, ts, open: true, counts_before, log }));
                }
                Err(e) => {
                    // Whatever state the session is in (the lock may be held), it goes.
                    *writer = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    fn commit_feed(&self, after: Timestamp) -> Option<Box<dyn CommitFeed>> {
        Some(Box::new(PostgresFeed {
            url: self.url.clone(),
            client: None,
            last: after,
            next_purge: std::time::Instant::now(),
        }))
    }

    /// One statement on a pooled connection, outside any transaction: one round trip.
    fn latest_ts(&self) -> Result<Timestamp, StorageError> {
        let mut client = self.reader()?;
        let ts = read_ts(&mut client)?;
        if let Ok(mut readers) = self.readers.lock()
            && readers.len() < POOLED_READERS
        {
            readers.push(client);
        }
        Ok(ts)
    }

    /// The whole database's size as PostgreSQL counts it (tables, indexes, the commit log), shared
    /// by every replica.
    fn size_bytes(&self) -> Result<Option<u64>, StorageError> {
        let mut client = self.reader()?;
        let bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[])?.get(0);
        if let Ok(mut readers) = self.readers.lock()
            && readers.len() < POOLED_READERS
        {
            readers.push(client);
        }
        Ok(Some(bytes.max(0) as u64))
    }
}

/// Deletes the commit log's rows older than `retention_ns` before the last commit, and then the
/// oldest while the rest hold more than `max_bytes` (as stored). Takes no commit lock: it touches
/// only rows committed long ago, which no batch writes, so a group never waits for it.
/// Returns the rows deleted.
const PURGE_COMMIT_LOG: &str = "
DELETE FROM jangar_commit_log WHERE ts < GREATEST(
    (SELECT value FROM jangar_meta WHERE name = 'last_commit_ts') - $1,
    (SELECT COALESCE(MAX(ts) + 1, 0) FROM (
        SELECT ts, SUM(pg_column_size(writes)) OVER (ORDER BY ts DESC) AS newer FROM jangar_commit_log
    ) AS sized WHERE newer > $2))";

fn purge_commit_log(client: &mut Client, retention_ns: Timestamp, max_bytes: i64) -> Result<u64, StorageError> {
    Ok(client.execute(PURGE_COMMIT_LOG, &[&(retention_ns as i64), &max_bytes])?)
}

/// Follows `jangar_commit_log`, woken by `NOTIFY jangar_commits`.
pub(crate) struct PostgresFeed {
    url: String,
    client: Option<Client>,
    last: Timestamp,
    /// When this replica next purges the log (every replica does: the purge is idempotent).
    next_purge: std::time::Instant,
}

impl PostgresFeed {
    /// The logged commits after the last one seen. The log is chained (`prev_ts`): a row that does
    /// not continue from the one before means commits were purged before this replica read them,
    /// so it is announced as touching everything; so is a row whose write set cannot be read.
    fn read_log(&mut self) -> Result<Vec<Commit>, StorageError> {
        let client = self.client.as_mut().expect("connected");
        let rows = client.query(
            "SELECT ts, prev_ts, writes FROM jangar_commit_log WHERE ts > $1 ORDER BY ts LIMIT $2",
            &[&(self.last as i64), &FEED_BATCH],
        )?;
        let mut commits = Vec::with_capacity(rows.len());
        let mut last = self.last;
        for row in rows {
            let (ts, previous) = (row.get::<_, i64>(0) as Timestamp, row.get::<_, i64>(1) as Timestamp);
            let writes = WriteSet::decode(row.get(2));
            let commit = match writes {
                Some(writes) if previous == last => Commit::new(ts, writes),
                writes => {
                    tracing::warn!(ts, previous, last, readable = writes.is_some(), "a gap in the commit log");
                    Commit { ts, writes: WriteSet::default(), everything: true }
                }
            };
            commits.push(commit);
            last = ts;
        }
        self.last = last;
        Ok(commits)
    }
}

impl CommitFeed for PostgresFeed {
    fn next(&mut self, wait: Duration) -> Result<Vec<Commit>, StorageError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut client = connect(&self.url)?;
            client.batch_execute(LISTEN)?;
            self.client = Some(client);
        }
        if self.next_purge <= std::time::Instant::now() {
            self.next_purge = std::time::Instant::now() + COMMIT_LOG_PURGE_INTERVAL;
            let client = self.client.as_mut().expect("connected");
            match purge_commit_log(client, COMMIT_LOG_RETENTION_NS, COMMIT_LOG_MAX_BYTES) {
                Ok(purged) if purged > 0 => tracing::debug!(purged, "purged the commit log"),
                Ok(_) => {}
                // Kept for the next turn: a log purged late is only larger.
                Err(e) => tracing::warn!(error = %e, "cannot purge the commit log"),
            }
        }
        let result = (|| {
            let commits = self.read_log()?;
            if !commits.is_empty() {
                return Ok(commits);
            }
            // Listening since before the read above, so no commit slips between the two.
            {
                let mut notifications = self.client.as_mut().expect("connected").notifications();
                notifications.timeout_iter(wait).next()?;
                // Several notifications may be waiting: one read of the log answers them all.
                while notifications.iter().next()?.is_some() {}
            }
            // Read whether woken or not: a connection that went silent fails this query
            // (keepalives) instead of leaving the replica waiting for a notification.
            self.read_log()
        })();
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        let kinds = [
            ("40001", StorageErrorKind::Conflict),
            ("40P01", StorageErrorKind::Conflict),
            ("55P03", StorageErrorKind::Conflict),
            ("08006", StorageErrorKind::Unavailable),
            ("57P01", StorageErrorKind::Unavailable),
            ("57P03", StorageErrorKind::Unavailable),
            ("53300", StorageErrorKind::Unavailable),
            ("25P03", StorageErrorKind::Unavailable),
            ("53100", StorageErrorKind::Io),
            ("54000", StorageErrorKind::Limit),
            ("XX001", StorageErrorKind::Corrupt),
            ("23505", StorageErrorKind::Other),
            ("42P01", StorageErrorKind::Other),
        ];
        for (code, kind) in kinds {
            assert_eq!(sqlstate_kind(code), kind, "{code}");
        }
    }

    /// Every flush statement's generic plan (the one PostgreSQL caches after five runs, when it
    /// cannot see the arrays), in the writer's session, probes the primary keys by every key
    /// column or inserts from a function scan: no sequential scan, bitmap scan, hash or merge
    /// join or filter on a table that grows (documents, entries, outcomes, the log), on an empty
    /// database or a 50,000-row one. A plan cached while a table was small stays while it grows:
    /// one that found the entries to delete by their index number alone and filtered on the key
    /// walked every entry of that index, dead ones too, in every group (appends on PostgreSQL
    /// fell to a third within a minute).
    #[test]
    fn the_flush_statements_plans_scan_no_table() {
        let Some(server) = jangar_test_support::postgres::TestPostgres::shared() else {
            eprintln!("SKIPPED: no PostgreSQL server binaries on this machine");
            return;
        };
        let url = server.fresh_database();
        let table = crate::schema::TableDef::new("items", 10_001, vec![("n", crate::schema::v::number())]);
        drop(PostgresStorage::open(&url, &Schema::new(vec![table]).unwrap()).unwrap());
        let mut client = connect(&url).unwrap();
        client.batch_execute(WRITER_SESSION).unwrap();
        let flush = "'{1}', '{\\x01}', '{10001}', '{\\x01}', '{\"{}\"}', '{10001}', '{\\x02}', \
                     '{1}', '{\\x02}', '{\\x02}', '{c}', '{1}', '{1}', '{null}', true, 1, 0, '\\x'";
        let args = [(FLUSH_GROUP, flush), (GET_DOCUMENTS, "'{10001}', '{\\x01}'")];
        // Never analyzed (PostgreSQL then guesses from the pages), then analyzed at each size:
        // a plan made at a few hundred rows is the one a new deployment caches.
        let mut stored = 0;
        for rows in [0, 30, 300, 50_000] {
            if rows > 0 {
                client
                    .batch_execute(&format!(
                        "INSERT INTO jangar_documents SELECT 10001, int8send(n), '{{}}' FROM generate_series({first}, {rows}) AS n;
                         INSERT INTO jangar_index_entries SELECT n % 6, int8send(n), int8send(n) FROM generate_series({first}, {rows}) AS n;
                         ANALYZE",
                        first = stored + 1
                    ))
                    .unwrap();
                stored = rows;
            }
            for (sql, values) in args {
                let mut tx = client.transaction().unwrap();
                tx.batch_execute(&format!("SET LOCAL plan_cache_mode = force_generic_plan; PREPARE flush AS {sql}"))
                    .unwrap();
                let plan: Vec<String> = tx
                    .simple_query(&format!("EXPLAIN EXECUTE flush({values})"))
                    .unwrap()
                    .into_iter()
                    .filter_map(|message| match message {
                        postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .collect();
                let growing = ["documents", "index_entries", "mutation_outcomes", "commit_log"];
                // Each line's node, and the table of the scan it belongs to (a filter belongs
                // to the scan above it).
                let mut scanned = "";
                let mut wrong = Vec::new();
                for line in &plan {
                    if let Some((_, table)) = line.split_once(" on jangar_") {
                        scanned = table.split_whitespace().next().unwrap_or("");
                    }
                    let on_growing = growing.contains(&scanned);
                    let walk = line.contains("Seq Scan") || line.contains("Bitmap Heap Scan");
                    let filtered = line.trim_start().starts_with("Filter:");
                    if (on_growing && (walk || filtered)) || line.contains("Hash Join") || line.contains("Merge Join") {
                        wrong.push(line.trim().to_owned());
                    }
                }
                assert!(wrong.is_empty(), "{rows} rows, {sql}: {wrong:?}\n{}", plan.join("\n"));
                tx.rollback().unwrap();
                client.batch_execute("DEALLOCATE ALL").unwrap();
            }
        }
    }

    /// The log keeps the commits younger than the retention and, of those, the newest within the
    /// byte bound; the purge goes ahead while a group holds the commit lock (it takes none).
    #[test]
    fn the_commit_log_keeps_minutes_and_bytes_and_is_purged_off_the_lock() {
        let Some(server) = jangar_test_support::postgres::TestPostgres::shared() else {
            eprintln!("SKIPPED: no PostgreSQL server binaries on this machine");
            return;
        };
        let url = server.fresh_database();
        let table = crate::schema::TableDef::new("items", 10_001, vec![("n", crate::schema::v::number())]);
        let storage = PostgresStorage::open(&url, &Schema::new(vec![table]).unwrap()).unwrap();
        let mut client = connect(&url).unwrap();
        // A hundred commits a second apart, each with a write set stored as 1,004 bytes (below
        // the size PostgreSQL compresses at), the last at 100 s.
        let second = 1_000_000_000i64;
        client
            .batch_execute(&format!(
                "INSERT INTO jangar_commit_log SELECT n::bigint * {second}, (n::bigint - 1) * {second}, \
                     convert_to(repeat('x', 1000), 'UTF8') FROM generate_series(1, 100) AS n;
                 UPDATE jangar_meta SET value = 100::bigint * {second} WHERE name = 'last_commit_ts'"
            ))
            .unwrap();
        let kept = |client: &mut Client| {
            let row = client.query_one("SELECT MIN(ts) / $1, COUNT(*) FROM jangar_commit_log", &[&second]).unwrap();
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        };
        assert_eq!(purge_commit_log(&mut client, 60 * second as Timestamp, i64::MAX).unwrap(), 39);
        assert_eq!(kept(&mut client), (40, 61), "from 100 s - 60 s on");

        let batch = storage.begin_batch().unwrap();
        // Were the purge to wait for the lock, it would fail here instead of hanging the test.
        client.batch_execute("SET statement_timeout = '5s'").unwrap();
        assert_eq!(purge_commit_log(&mut client, 60 * second as Timestamp, 10 * 1_004 + 500).unwrap(), 51);
        assert_eq!(kept(&mut client), (91, 10), "the newest ten fit in the bytes");
        commit_empty_batch(batch);
        assert_eq!(purge_commit_log(&mut client, 60 * second as Timestamp, 10 * 1_004).unwrap(), 0, "exactly full");
    }

    fn commit_empty_batch(batch: Box<dyn Batch + '_>) {
        let ts = batch.ts();
        batch.commit(ts, &GroupWrites::default(), &WriteSet::default()).unwrap();
    }

    #[test]
    fn an_unreachable_server_is_unavailable() {
        // Nothing listens on port 1 of the loopback address.
        let error = connect("postgresql://jangar@127.0.0.1:1/none?connect_timeout=2").map(drop).unwrap_err();
        assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
        assert!(error.is_transient());
        let error = connect("postgresql://jangar@127.0.0.1:1/none?sslmode=nonsense").map(drop).unwrap_err();
        assert_eq!(error.kind(), StorageErrorKind::Other, "a bad URL is not worth retrying: {error}");
    }
}
