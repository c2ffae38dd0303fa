//! One conformance suite for every storage: each behaviour the engine relies on
//! is written once, as a function of a [`Store`], and run against the memory
//! storage (with and without a commit feed), SQLite and PostgreSQL. PostgreSQL
//! runs whenever its server binaries are on this machine (CI installs them);
//! without them its tests print that they were skipped and pass.
//!
//! The tests talk to the `Storage` trait directly, as the committer does:
//! batches, a group's net writes, outcomes, commits, snapshots, the feed.
//! The last part runs the group committer on a storage that fails a chosen
//! commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jangar_engine::cursor::CursorKey;
use jangar_engine::database::Database;
use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::{DocumentId, TableNumber};
use jangar_engine::integrity;
use jangar_engine::keys::{IndexRange, KeyRange};
use jangar_engine::schema::{IndexId, Schema, TableDef, v};
use jangar_engine::sets::{Commit, IndexWrite, WriteSet};
use jangar_engine::storage::memory::MemoryStorage;
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
use jangar_engine::storage::{
    Batch, BatchCounts, CommitFeed, GroupWrites, IndexEntry, MutationKey, Order, Snapshot, Storage, StorageError,
    StorageErrorKind, Timestamp,
};
use jangar_engine::transaction::All;
use jangar_engine::value::{Object, Value};
use jangar_test_support::TempDir;
use jangar_test_support::postgres::TestPostgres;

const TABLE: TableNumber = 10_001;
/// `items.by_group` (group, rank) in the first schema.
const BY_GROUP: IndexId = IndexId { table: TABLE, slot: 1 };
/// `items.by_rank` (rank) in the first schema.
const BY_RANK: IndexId = IndexId { table: TABLE, slot: 2 };

fn fields() -> Vec<(&'static str, jangar_engine::schema::Validator)> {
    vec![("group", v::string()), ("rank", v::number())]
}

fn schema() -> Schema {
    let table =
        TableDef::new("items", TABLE, fields()).index("by_group", &["group", "rank"]).index("by_rank", &["rank"]);
    Schema::new(vec![table]).unwrap()
}

/// The first schema's next version: `by_group` is gone, `by_rank` moved to slot 1 and a new
/// index `by_rank_group` on (rank, group) takes slot 2.
fn schema_v2() -> Schema {
    let table =
        TableDef::new("items", TABLE, fields()).index("by_rank", &["rank"]).index("by_rank_group", &["rank", "group"]);
    Schema::new(vec![table]).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    MemoryWithFeed,
    Sqlite,
    Postgres,
}

/// One storage under test, which can be opened again (as after a restart) with another schema.
struct Store {
    kind: Kind,
    dir: TempDir,
    url: Option<String>,
    memory: Option<Arc<MemoryStorage>>,
}

impl Store {
    /// `None` for PostgreSQL on a machine without its server binaries.
    fn new(kind: Kind) -> Option<Store> {
        let url = match kind {
            Kind::Postgres => Some(TestPostgres::shared()?.fresh_database()),
            _ => None,
        };
        Some(Store { kind, dir: jangar_test_support::temp_dir(), url, memory: None })
    }

    /// Opens the store with `schema`: the data of every earlier open is there. (SQLite's
    /// earlier storage must be gone: one writer per data directory.)
    fn open(&mut self, schema: &Schema) -> Arc<dyn Storage> {
        match self.kind {
            Kind::Memory | Kind::MemoryWithFeed => {
                let memory = match (&self.memory, self.kind) {
                    (Some(previous), _) => previous.reopen(schema),
                    (None, Kind::Memory) => MemoryStorage::new(schema),
                    (None, _) => MemoryStorage::with_feed(schema),
                };
                let memory = Arc::new(memory.unwrap());
                self.memory = Some(memory.clone());
                memory
            }
            Kind::Sqlite => Arc::new(SqliteStorage::open(self.dir.path(), schema, Durability::Normal).unwrap()),
            Kind::Postgres => Arc::new(PostgresStorage::open(self.url.as_ref().unwrap(), schema).unwrap()),
        }
    }

    /// Whether the storage announces commits through a feed (as a shared database does).
    fn has_feed(&self) -> bool {
        matches!(self.kind, Kind::MemoryWithFeed | Kind::Postgres)
    }
}

fn item(n: u8, group: &str, rank: f64) -> Document {
    let fields = Object::from([("group".to_owned(), Value::from(group)), ("rank".to_owned(), Value::from(rank))]);
    Document {
        id: DocumentId { table: TABLE, internal: [n; 16] },
        creation_time: 1_700_000_000_000.0 + f64::from(n),
        fields,
    }
}

/// The index changes of replacing `old` by `new` (either may be absent), as a transaction makes them.
fn index_writes(schema: &Schema, old: Option<&Document>, new: Option<&Document>) -> Vec<IndexWrite> {
    let table = schema.table_by_number(TABLE).unwrap();
    let id_key = |d: &Document| Document::id_key(&d.id);
    let mut writes = vec![IndexWrite { index: table.by_id(), old: old.map(id_key), new: new.map(id_key) }];
    for (position, index) in table.indexes.iter().enumerate() {
        writes.push(IndexWrite {
            index: IndexId { table: TABLE, slot: position as u16 + 1 },
            old: old.map(|d| d.index_key(&index.fields)),
            new: new.map(|d| d.index_key(&index.fields)),
        });
    }
    writes
}

/// Adds writing `new` over `old` (an insert without `old`, a delete without `new`) to `group`,
/// as the engine's write buffer would; returns the write set.
fn put(group: &mut GroupWrites, schema: &Schema, old: Option<&Document>, new: Option<&Document>) -> WriteSet {
    let writes = index_writes(schema, old, new);
    let id = old.or(new).unwrap().id;
    group.documents.push((id, new.cloned()));
    for write in writes.iter().filter(|w| w.index.slot > 0 && w.old != w.new) {
        if let Some(key) = &write.old {
            group.removed.push(IndexEntry { index: write.index, key: key.clone(), id });
        }
        if let Some(key) = &write.new {
            group.added.push(IndexEntry { index: write.index, key: key.clone(), id });
        }
    }
    WriteSet { entries: writes }
}

/// Commits `documents` as inserts in one batch at `ts`.
fn insert_all(storage: &dyn Storage, schema: &Schema, documents: &[Document], ts: Timestamp) -> WriteSet {
    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    let mut writes = WriteSet::default();
    for document in documents {
        writes.extend(put(&mut group, schema, None, Some(document)));
    }
    batch.commit(ts, &group, &writes).unwrap();
    writes
}

/// Commits nothing but the timestamp.
fn commit_empty(batch: Box<dyn Batch + '_>, ts: Timestamp) {
    batch.commit(ts, &GroupWrites::default(), &WriteSet::default()).unwrap();
}

fn ids(documents: &[Document]) -> Vec<u8> {
    documents.iter().map(|d| d.id.internal[0]).collect()
}

fn scanned(snapshot: &mut dyn Snapshot, index: IndexId, range: &KeyRange, order: Order, limit: usize) -> Vec<u8> {
    let found = snapshot.scan(index, range, order, limit).unwrap();
    for (key, document) in &found {
        let fields = if index == BY_GROUP { vec!["group", "rank"] } else { vec!["rank"] };
        assert_eq!(key, &document.index_key(&fields), "a scan returns each entry's key with its document");
    }
    ids(&found.into_iter().map(|(_, d)| d).collect::<Vec<_>>())
}

const EVERYTHING: KeyRange = KeyRange { start: Vec::new(), end: None };

// ---------------------------------------------------------------------------------------------
// The behaviours.

/// A snapshot reads the state of one commit: not a batch in progress, not a commit after it,
/// however long it is held.
fn snapshots_see_one_committed_state(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let a = item(1, "a", 1.0);
    insert_all(&*storage, &schema, std::slice::from_ref(&a), 100);
    let mut before = storage.snapshot().unwrap();
    assert_eq!(before.ts(), 100);

    let b = item(2, "a", 2.0);
    let mut batch = storage.begin_batch().unwrap();
    assert_eq!(batch.get(&a.id).unwrap().as_ref(), Some(&a), "a batch reads the last commit");
    assert_eq!(scanned(&mut *batch, BY_GROUP, &EVERYTHING, Order::Asc, 10), [1]);
    let mut during = storage.snapshot().unwrap();
    assert_eq!(during.ts(), 100);
    let mut group = GroupWrites::default();
    let writes = put(&mut group, &schema, None, Some(&b));
    batch.commit(200, &group, &writes).unwrap();

    for snapshot in [&mut before, &mut during] {
        assert_eq!(snapshot.get(&b.id).unwrap(), None, "a commit after the snapshot is not visible");
        assert_eq!(snapshot.get(&a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(scanned(&mut **snapshot, BY_GROUP, &EVERYTHING, Order::Asc, 10), [1]);
        assert_eq!(ids(&snapshot.documents(TABLE, None, 10).unwrap()), [1]);
        assert_eq!(snapshot.index_entries(BY_RANK, None, 10).unwrap().len(), 1);
        assert_eq!(snapshot.ts(), 100);
    }
    drop((before, during));
    let mut after = storage.snapshot().unwrap();
    assert_eq!(after.ts(), 200);
    assert_eq!(after.get(&b.id).unwrap().as_ref(), Some(&b));
    assert_eq!(scanned(&mut *after, BY_GROUP, &EVERYTHING, Order::Asc, 10), [1, 2]);
}

/// Index ranges in both orders, with limits; document and entry listings page by `after`.
fn ranges_orders_and_limits(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    // Ids 1..=9: group "a" has ranks 5,1,4,2,3 (ids 1-5), "b" has 2,9 (6-7), "c" 0,7 (8-9).
    let documents: Vec<Document> = [("a", 5.0), ("a", 1.0), ("a", 4.0), ("a", 2.0), ("a", 3.0), ("b", 2.0), ("b", 9.0)]
        .into_iter()
        .chain([("c", 0.0), ("c", 7.0)])
        .enumerate()
        .map(|(i, (group, rank))| item(i as u8 + 1, group, rank))
        .collect();
    insert_all(&*storage, &schema, &documents, 10);
    let mut snapshot = storage.snapshot().unwrap();
    let range = |r: IndexRange| r.to_key_range();
    let group_a = range(IndexRange::default().eq("a"));
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &group_a, Order::Asc, 100), [2, 4, 5, 3, 1]);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &group_a, Order::Desc, 100), [1, 3, 5, 4, 2]);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &group_a, Order::Asc, 2), [2, 4]);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &group_a, Order::Desc, 2), [1, 3]);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &group_a, Order::Asc, 0), Vec::<u8>::new());
    let middle = range(IndexRange::default().eq("a").gt(1.0).lte(4.0));
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &middle, Order::Asc, 100), [4, 5, 3]);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &middle, Order::Desc, 1), [3]);
    assert_eq!(
        scanned(&mut *snapshot, BY_GROUP, &range(IndexRange::default().eq("z")), Order::Asc, 9),
        Vec::<u8>::new()
    );
    // Everything, by rank: ranks 0,1,2,2,3,4,5,7,9 (the tie between ids 4 and 6 by creation time).
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &EVERYTHING, Order::Asc, 100), [8, 2, 4, 6, 5, 3, 1, 9, 7]);
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &EVERYTHING, Order::Desc, 4), [7, 9, 1, 3]);
    let keys: Vec<Vec<u8>> =
        snapshot.scan(BY_RANK, &EVERYTHING, Order::Asc, 100).unwrap().into_iter().map(|(k, _)| k).collect();
    // A range between two stored keys: the start is inclusive, the end exclusive.
    let between = KeyRange { start: keys[2].clone(), end: Some(keys[6].clone()) };
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &between, Order::Asc, 100), [4, 6, 5, 3]);
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &between, Order::Desc, 100), [3, 5, 6, 4]);
    let inverted = KeyRange { start: keys[6].clone(), end: Some(keys[2].clone()) };
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &inverted, Order::Asc, 100), Vec::<u8>::new());
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &KeyRange::point(&keys[3]), Order::Asc, 100), [6]);

    // Listings page on: documents by id, entries by key.
    let first = snapshot.documents(TABLE, None, 4).unwrap();
    assert_eq!(ids(&first), [1, 2, 3, 4]);
    assert_eq!(ids(&snapshot.documents(TABLE, Some(&first[3].id), 100).unwrap()), [5, 6, 7, 8, 9]);
    assert!(snapshot.documents(TABLE + 1, None, 100).unwrap().is_empty(), "another table");
    let entries = snapshot.index_entries(BY_RANK, None, 3).unwrap();
    assert_eq!(entries.iter().map(|(_, id)| id.internal[0]).collect::<Vec<_>>(), [8, 2, 4]);
    let rest = snapshot.index_entries(BY_RANK, Some(&entries[2].0), 100).unwrap();
    assert_eq!(rest.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys[3..].to_vec());
}

/// A group's net writes apply together: a document moved to other keys, one deleted, one
/// inserted, outcomes recorded; entries and documents agree afterwards.
fn a_group_applies_its_net_writes(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let (a, b, c) = (item(1, "a", 1.0), item(2, "a", 2.0), item(3, "b", 3.0));
    insert_all(&*storage, &schema, &[a.clone(), b.clone()], 10);
    let outcome = |request| MutationKey { client: "client".into(), request };

    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    let moved = Document { fields: item(1, "z", 9.0).fields, ..a.clone() };
    put(&mut group, &schema, Some(&a), Some(&moved));
    put(&mut group, &schema, Some(&b), None);
    put(&mut group, &schema, None, Some(&c));
    group.outcomes.push((outcome(1), 11, "\"b\"".into()));
    group.outcomes.push((outcome(2), 12, "{\"c\":3}".into()));
    batch.commit(20, &group, &WriteSet::default()).unwrap();

    let mut snapshot = storage.snapshot().unwrap();
    assert_eq!(ids(&snapshot.documents(TABLE, None, 100).unwrap()), [1, 3]);
    assert_eq!(snapshot.get(&a.id).unwrap().as_ref(), Some(&moved));
    assert_eq!(snapshot.get(&b.id).unwrap(), None);
    assert_eq!(scanned(&mut *snapshot, BY_GROUP, &EVERYTHING, Order::Asc, 100), [3, 1]);
    assert_eq!(scanned(&mut *snapshot, BY_RANK, &EVERYTHING, Order::Asc, 100), [3, 1]);
    drop(snapshot);
    let mut batch = storage.begin_batch().unwrap();
    assert_eq!(batch.find_outcome(&outcome(1)).unwrap(), Some((11, "\"b\"".to_owned())));
    assert_eq!(batch.find_outcome(&outcome(2)).unwrap(), Some((12, "{\"c\":3}".to_owned())));
    assert_eq!(batch.find_outcome(&outcome(3)).unwrap(), None);
    drop(batch);
    assert_clean(&schema, &*storage);
}

/// Whatever the group's size, its flush costs the same round trips: one statement, however many
/// tables and indexes it touches and kinds of change it makes, never one per row. In process, none.
fn the_flush_takes_the_same_round_trips_for_any_group(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let mut costs = Vec::new();
    let mut ts = 0;
    // Ids `base + 1 ..= base + size`, apart for each size. The first round warms the connection
    // (the first use of each statement on it also prepares it) and is not counted.
    for (base, size) in [(230u8, 1u8), (0, 1), (10, 8), (20, 64), (90, 128)] {
        let documents: Vec<Document> = (0..size).map(|n| item(base + n + 1, "a", f64::from(n))).collect();
        for step in 0..2 {
            ts += 10;
            let batch = storage.begin_batch().unwrap();
            let mut group = GroupWrites::default();
            for document in &documents {
                if step == 0 {
                    put(&mut group, &schema, None, Some(document));
                } else {
                    let moved = Document { fields: item(0, "b", 1.0).fields, ..document.clone() };
                    put(&mut group, &schema, Some(document), Some(&moved));
                    group.outcomes.push((
                        MutationKey { client: "c".into(), request: ts * 1_000 + u64::from(document.id.internal[0]) },
                        ts,
                        "1".into(),
                    ));
                }
            }
            let counts = batch.commit(ts, &group, &WriteSet::default()).unwrap();
            if step == 1 {
                costs.push((size, counts.round_trips));
            }
        }
    }
    costs.remove(0);
    let expected = if store.kind == Kind::Postgres { costs[0].1 } else { 0 };
    assert!(costs.iter().all(|(_, trips)| *trips == expected), "round trips by group size: {costs:?}");
    if store.kind == Kind::Postgres {
        // Begin (with the lock and the timestamp), the flush with the commit record, COMMIT.
        assert_eq!(expected, 3, "{costs:?}");
    }
    assert_clean(&schema, &*storage);
}

/// Issue 16: a batch reads many documents by id at once (a replica refreshing what others
/// changed, under the commit lock): each at its version, absent ones as `None`, in the order
/// asked, and on PostgreSQL in the same round trips for one id as for a hundred.
fn many_documents_are_read_at_once(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let documents: Vec<Document> = (1..=100).map(|n| item(n, "a", f64::from(n))).collect();
    let mut group = GroupWrites::default();
    for document in &documents {
        put(&mut group, &schema, None, Some(document));
    }
    storage.begin_batch().unwrap().commit(10, &group, &WriteSet::default()).unwrap();
    let mut costs = Vec::new();
    // The first read warms the connection (and prepares the statement) and is not counted.
    for size in [1, 1, 10, 100] {
        let mut batch = storage.begin_batch().unwrap();
        // Asked newest first, with an absent id in the middle.
        let mut ids: Vec<DocumentId> = documents[..size].iter().rev().map(|d| d.id).collect();
        ids.insert(ids.len() / 2, item(200, "a", 0.0).id);
        let expected: Vec<Option<Document>> =
            ids.iter().map(|id| documents.iter().find(|d| d.id == *id).cloned()).collect();
        assert_eq!(batch.get_many(&ids).unwrap(), expected, "{size} ids");
        costs.push((size, batch.commit(10, &GroupWrites::default(), &WriteSet::default()).unwrap().round_trips));
    }
    costs.remove(0);
    assert!(costs.iter().all(|(_, trips)| *trips == costs[0].1), "round trips by ids read: {costs:?}");
}

/// Issue 16: on a shared database that other replicas write, what they wrote since this writer's
/// last commit (a committer's catch-up) is known from the commit log with no round trip of its
/// own: it is read with the batch's first one.
fn the_catch_up_after_another_replicas_commit_takes_no_round_trip(mut store: Store) {
    if !store.has_feed() {
        return;
    }
    let schema = schema();
    let this = store.open(&schema);
    // Another process on the same database; the memory storage is its own only writer.
    let other = if store.kind == Kind::Postgres { store.open(&schema) } else { this.clone() };
    let insert = |storage: &Arc<dyn Storage>, document: &Document| {
        let mut group = GroupWrites::default();
        let writes = put(&mut group, &schema, None, Some(document));
        let batch = storage.begin_batch().unwrap();
        let ts = batch.ts() + 10;
        batch.commit(ts, &group, &writes).unwrap();
        ts
    };
    let catch_up = |storage: &Arc<dyn Storage>, after: Timestamp| {
        let mut batch = storage.begin_batch().unwrap();
        let ts = batch.ts();
        // As the committer's cache does: it asks only when the database moved on.
        let written = if ts > after { batch.written_since(after).unwrap() } else { Some(Vec::new()) };
        (written, ts, batch.commit(ts, &GroupWrites::default(), &WriteSet::default()).unwrap().round_trips)
    };
    let mine = insert(&this, &item(1, "a", 1.0));
    // Nothing since: the batch alone.
    let (nothing, mut mine, quiet) = catch_up(&this, mine);
    assert_eq!(nothing, Some(Vec::new()));
    // Another replica commits, and again after this one's next batch (as busy replicas do).
    for n in 2..4 {
        let theirs = item(n, "a", f64::from(n));
        insert(&other, &theirs);
        let (written, ts, trips) = catch_up(&this, mine);
        assert_eq!(written, Some(vec![theirs.id]));
        if n == 3 {
            assert_eq!(trips, quiet, "the log was read in the batch's first round trip");
        }
        mine = ts;
    }
    if store.kind == Kind::Postgres {
        // The begin (lock, timestamp and log) and COMMIT.
        assert_eq!(quiet, 2);
    }
}

fn assert_clean(schema: &Schema, storage: &dyn Storage) -> integrity::Report {
    let report = integrity::check(schema, &mut *storage.snapshot().unwrap()).unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    report
}

/// Opening with a schema that declares new indexes builds them from the stored documents;
/// an index no longer declared is gone, and its slot's entries are the new index's.
fn new_indexes_are_built_from_the_documents(mut store: Store) {
    let (first, second) = (schema(), schema_v2());
    let documents: Vec<Document> =
        (1..=30).map(|n| item(n, ["a", "b", "c"][n as usize % 3], f64::from(n % 7))).collect();
    let cursor_key: CursorKey;
    {
        let storage = store.open(&first);
        insert_all(&*storage, &first, &documents, 50);
        cursor_key = storage.snapshot().unwrap().cursor_key();
    }
    let storage = store.open(&second);
    let mut snapshot = storage.snapshot().unwrap();
    assert_eq!(snapshot.ts(), 50, "the last commit survives the restart");
    assert_eq!(snapshot.documents(TABLE, None, 100).unwrap().len(), 30);
    // Slot 3: the implicit by_creation_time index, after the declared ones.
    for (slot, fields) in [(1, vec!["rank"]), (2, vec!["rank", "group"]), (3, vec![])] {
        let index = IndexId { table: TABLE, slot };
        let mut expected: Vec<(Vec<u8>, DocumentId)> = documents.iter().map(|d| (d.index_key(&fields), d.id)).collect();
        expected.sort();
        assert_eq!(snapshot.index_entries(index, None, 1000).unwrap(), expected, "{fields:?}");
    }
    assert!(snapshot.index_entries(IndexId { table: TABLE, slot: 4 }, None, 10).is_err(), "not declared");
    let secret = |key: &CursorKey| key.encode(BY_GROUP, b"position");
    assert_eq!(secret(&snapshot.cursor_key()), secret(&cursor_key), "the cursor secret survives the restart");
    drop(snapshot);
    let report = assert_clean(&second, &*storage);
    assert_eq!((report.documents, report.entries), (30, 90));
    // And writing through the new indexes works.
    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    put(&mut group, &second, Some(&documents[0]), None);
    batch.commit(60, &group, &WriteSet::default()).unwrap();
    // One document fewer: its three entries are gone.
    assert_eq!(assert_clean(&second, &*storage).entries, 87);
}

/// Outcomes: found in the batch that recorded them and in later ones; purged by timestamp.
fn outcomes_are_kept_until_purged(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let key = |client: &str, request| MutationKey { client: client.into(), request };
    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    group.outcomes.push((key("one", 1), 100, "1".into()));
    group.outcomes.push((key("one", 2), 200, "{\"a\":2}".into()));
    group.outcomes.push((key("two", 1), 300, "null".into()));
    group.outcomes.push((key("two", u64::from(u32::MAX) + 7), 300, "\"big\"".into()));
    batch.commit(300, &group, &WriteSet::default()).unwrap();
    let mut batch = storage.begin_batch().unwrap();
    assert_eq!(batch.find_outcome(&key("one", 2)).unwrap(), Some((200, "{\"a\":2}".to_owned())));
    assert_eq!(batch.find_outcome(&key("two", u64::from(u32::MAX) + 7)).unwrap(), Some((300, "\"big\"".to_owned())));
    assert_eq!(batch.find_outcome(&key("one", 3)).unwrap(), None);
    assert_eq!(batch.find_outcome(&key("three", 1)).unwrap(), None);
    assert_eq!(batch.purge_outcomes(200).unwrap(), 1, "strictly before");
    assert_eq!(batch.find_outcome(&key("one", 1)).unwrap(), None);
    assert!(batch.find_outcome(&key("one", 2)).unwrap().is_some());
    commit_empty(batch, 300);
    let mut batch = storage.begin_batch().unwrap();
    assert_eq!(batch.find_outcome(&key("one", 1)).unwrap(), None, "the purge was committed");
    assert_eq!(batch.purge_outcomes(1_000).unwrap(), 3);
    // Not committed: dropped, the batch rolls back.
    drop(batch);
    let mut batch = storage.begin_batch().unwrap();
    assert!(batch.find_outcome(&key("two", 1)).unwrap().is_some(), "a dropped batch changes nothing");
}

/// The batch starts at the last commit's timestamp; a snapshot names the commit it shows; a
/// dropped batch leaves nothing behind; a group removing an entry that is not stored is refused
/// as corruption, and none of it applies.
fn timestamps_and_abandoned_batches(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    assert_eq!(storage.snapshot().unwrap().ts(), 0, "a new store");
    let mut last = 0;
    for (n, ts) in [(1u8, 1_000u64), (2, 2_000), (3, 2_001)] {
        let batch = storage.begin_batch().unwrap();
        assert_eq!(batch.ts(), last);
        drop(batch);
        insert_all(&*storage, &schema, &[item(n, "a", f64::from(n))], ts);
        assert_eq!(storage.snapshot().unwrap().ts(), ts);
        last = ts;
    }
    let batch = storage.begin_batch().unwrap();
    drop(batch);
    let mut snapshot = storage.snapshot().unwrap();
    assert_eq!(snapshot.ts(), 2_001);
    assert_eq!(snapshot.get(&item(9, "a", 9.0).id).unwrap(), None);
    drop(snapshot);

    // A write whose old key is not stored: the indexes do not match the documents. The group
    // also deletes a document and inserts one: neither applies.
    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    put(&mut group, &schema, Some(&item(2, "a", 2.0)), None);
    put(&mut group, &schema, None, Some(&item(9, "a", 9.0)));
    put(&mut group, &schema, Some(&item(1, "never", 1.0)), None);
    let refused = batch.commit(3_000, &group, &WriteSet::default()).unwrap_err();
    assert_eq!(refused.kind(), StorageErrorKind::Corrupt, "{refused}");
    let mut snapshot = storage.snapshot().unwrap();
    assert_eq!(snapshot.ts(), 2_001, "not committed");
    assert_eq!(ids(&snapshot.documents(TABLE, None, 10).unwrap()), [1, 2, 3], "nothing was deleted or added");
    drop(snapshot);
    assert_clean(&schema, &*storage);
    assert!(storage.snapshot().unwrap().scan(IndexId { table: TABLE, slot: 9 }, &EVERYTHING, Order::Asc, 1).is_err());
}

/// A shared store's feed announces every commit after the one it starts from, in order, with its
/// writes; one that did not move the timestamp is not a commit. A store with one writer has no feed.
fn the_commit_feed_announces_each_commit(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    insert_all(&*storage, &schema, &[item(1, "a", 1.0)], 10);
    let feed = storage.commit_feed(10);
    let Some(mut feed) = feed else {
        assert!(!store.has_feed(), "{:?} has a feed", store.kind);
        return;
    };
    assert!(store.has_feed(), "{:?} has no feed", store.kind);
    let mut expected = Vec::new();
    for (n, ts) in [(2u8, 20u64), (3, 30)] {
        let writes = insert_all(&*storage, &schema, &[item(n, "b", f64::from(n))], ts);
        expected.push((ts, writes));
    }
    // Nothing moved the timestamp: nothing to announce.
    commit_empty(storage.begin_batch().unwrap(), 30);
    let batch = storage.begin_batch().unwrap();
    let mut group = GroupWrites::default();
    let writes = put(&mut group, &schema, Some(&item(1, "a", 1.0)), None);
    batch.commit(45, &group, &writes).unwrap();
    expected.push((45, writes));
    let commits = collect(&mut *feed, expected.len());
    let got: Vec<(Timestamp, WriteSet, bool)> = commits.into_iter().map(|c| (c.ts, c.writes, c.everything)).collect();
    let want: Vec<(Timestamp, WriteSet, bool)> = expected.into_iter().map(|(ts, w)| (ts, w, false)).collect();
    assert_eq!(got, want);
    assert!(feed.next(Duration::from_millis(100)).unwrap().is_empty(), "nothing more");
    // A feed started later begins after where it is told: at a commit, it follows on from it.
    let mut late = storage.commit_feed(30).unwrap();
    let summary = |commits: Vec<Commit>| commits.iter().map(|c| (c.ts, c.everything)).collect::<Vec<_>>();
    assert_eq!(summary(collect(&mut *late, 1)), [(45, false)]);
    // Started between commits, it cannot vouch for what changed before the first one it reads
    // (as after a gap): that commit may have touched anything.
    let mut between = storage.commit_feed(25).unwrap();
    assert_eq!(summary(collect(&mut *between, 2)), [(30, true), (45, false)]);
}

/// Reads a feed until it gave `count` commits (or fails the test after a while).
fn collect(feed: &mut dyn CommitFeed, count: usize) -> Vec<Commit> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut commits = Vec::new();
    while commits.len() < count {
        assert!(Instant::now() < deadline, "the feed gave {} of {count} commits", commits.len());
        commits.extend(feed.next(Duration::from_millis(200)).unwrap());
    }
    commits
}

// ---------------------------------------------------------------------------------------------
// The group committer over a storage that fails a chosen commit.

/// Wraps a storage and fails its `fail_at`-th commit (counting from 1) without committing it.
struct FailingStorage {
    inner: Arc<dyn Storage>,
    fail_at: usize,
    commits: AtomicUsize,
    /// Documents and outcomes the failed commit's group held.
    failed_group: Mutex<Option<(usize, usize)>>,
}

struct FailingBatch<'a> {
    inner: Box<dyn Batch + 'a>,
    storage: &'a FailingStorage,
}

impl Storage for FailingStorage {
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StorageError> {
        self.inner.snapshot()
    }

    fn begin_batch(&self) -> Result<Box<dyn Batch + '_>, StorageError> {
        Ok(Box::new(FailingBatch { inner: self.inner.begin_batch()?, storage: self }))
    }

    fn commit_feed(&self, after: Timestamp) -> Option<Box<dyn CommitFeed>> {
        self.inner.commit_feed(after)
    }

    fn keep_secret(&self, name: &str, make: jangar_engine::storage::Make<'_>) -> Result<Vec<u8>, StorageError> {
        self.inner.keep_secret(name, make)
    }
}

impl Snapshot for FailingBatch<'_> {
    fn ts(&self) -> Timestamp {
        self.inner.ts()
    }
    fn cursor_key(&self) -> CursorKey {
        self.inner.cursor_key()
    }
    fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError> {
        self.inner.get(id)
    }
    fn scan(
        &mut self,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
        self.inner.scan(index, range, order, limit)
    }
    fn documents(
        &mut self,
        table: TableNumber,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, StorageError> {
        self.inner.documents(table, after, limit)
    }
    fn index_entries(
        &mut self,
        index: IndexId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError> {
        self.inner.index_entries(index, after, limit)
    }
}

impl Batch for FailingBatch<'_> {
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError> {
        self.inner.find_outcome(key)
    }
    fn purge_outcomes(&mut self, before: Timestamp) -> Result<usize, StorageError> {
        self.inner.purge_outcomes(before)
    }
    fn commit(
        self: Box<Self>,
        ts: Timestamp,
        group: &GroupWrites,
        writes: &WriteSet,
    ) -> Result<BatchCounts, StorageError> {
        let number = self.storage.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if number == self.storage.fail_at {
            *self.storage.failed_group.lock().unwrap() = Some((group.documents.len(), group.outcomes.len()));
            // Dropped uncommitted: the storage rolls the batch back.
            return Err(StorageError::Unavailable("the injected commit failure".into()));
        }
        self.inner.commit(ts, group, writes)
    }
}

fn insert_item(
    group: &'static str,
    rank: f64,
) -> impl FnOnce(&mut jangar_engine::transaction::Transaction<'_>) -> Result<DocumentId, EngineError> {
    move |tx| {
        let fields = Object::from([("group".to_owned(), Value::from(group)), ("rank".to_owned(), Value::from(rank))]);
        tx.insert("items", fields)
    }
}

/// A group commit that fails answers every mutation in the group with the storage error and
/// applies none of them (nothing is readable, announced or recorded); the next groups commit.
fn a_failed_group_commit_fails_every_mutation_in_it(mut store: Store) {
    const GROUP: usize = 20;
    let schema = Arc::new(schema());
    // Commit 1 is the first mutation, 2 the gate, 3 the group that fails.
    let storage = Arc::new(FailingStorage {
        inner: store.open(&schema),
        fail_at: 3,
        commits: AtomicUsize::new(0),
        failed_group: Mutex::new(None),
    });
    let (db, committer) = Database::start(schema.clone(), storage.clone(), 100).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut commits = db.subscribe_commits();
    let before = runtime.block_on(db.mutate(insert_item("before", 1.0))).unwrap();
    let announced = runtime.block_on(commits.recv()).unwrap();
    // A commit's timestamp is at least its last mutation's (it also covers the creation times handed out).
    assert!(announced.ts >= before.ts);

    // The gate holds the committer inside its own group while the next group queues up behind it.
    let (open_gate, gate) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = std::sync::mpsc::channel::<()>();
    let gated = runtime
        .block_on(db.enqueue(move |tx| {
            entered.send(()).unwrap();
            gate.recv().unwrap();
            insert_item("gate", 2.0)(tx)
        }))
        .unwrap();
    inside.recv().unwrap();
    let key = MutationKey { client: "replayed".into(), request: 1 };
    let mut doomed = Vec::new();
    for i in 0..GROUP {
        let key = key.clone();
        let pending = runtime.block_on(db.enqueue(move |tx| {
            if i == 0 {
                tx.record_outcome(&key, &Value::from("recorded"))?;
            }
            insert_item("doomed", i as f64)(tx)
        }));
        doomed.push(pending.unwrap());
    }
    open_gate.send(()).unwrap();
    let gate_ts = runtime.block_on(gated.outcome()).unwrap().ts;
    for pending in doomed {
        match runtime.block_on(pending.outcome()) {
            Err(EngineError::Storage(e)) => {
                assert_eq!(e, StorageError::Unavailable("the injected commit failure".into()))
            }
            other => panic!("a mutation of the failed group answered {other:?}"),
        }
    }
    assert_eq!(*storage.failed_group.lock().unwrap(), Some((GROUP, 1)), "the doomed mutations shared one group");

    let after = runtime.block_on(db.mutate(insert_item("after", 3.0))).unwrap();
    assert!(after.ts > gate_ts);
    let groups = |group: &'static str| {
        let db = db.clone();
        runtime
            .block_on(db.query(move |tx| {
                let range = IndexRange::default().eq(group);
                tx.query("items", "by_group", range, Order::Asc)?.take(100, All).map(|d| d.len())
            }))
            .unwrap()
            .value
    };
    assert_eq!((groups("before"), groups("gate"), groups("doomed"), groups("after")), (1, 1, 0, 1));
    // Announced: the gate's commit and the one after, nothing between, and nothing of the doomed.
    let gate_commit = runtime.block_on(commits.recv()).unwrap();
    let after_commit = runtime.block_on(commits.recv()).unwrap();
    assert!(gate_commit.ts >= gate_ts && gate_commit.ts < after.ts, "the gate's commit comes next");
    assert!(after_commit.ts >= after.ts, "the failed group was never announced");
    // One insert each: its by_id entry, its two declared index entries and its by_creation_time entry.
    assert_eq!((gate_commit.writes.entries.len(), after_commit.writes.entries.len()), (4, 4));
    // The failed group's outcome record went with it: a replay would run again.
    let replay = runtime.block_on(db.mutate(move |tx| tx.find_outcome(&key).map(|found| found.is_some()))).unwrap();
    assert!(!replay.value);
    let report = runtime.block_on(db.check_integrity()).unwrap();
    assert!(report.is_clean() && report.documents == 3, "{report:?}");
    drop(db);
    committer.join();
}

// ---------------------------------------------------------------------------------------------
// Every behaviour, on every storage.

macro_rules! on_every_storage {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(super::Store::new(super::Kind::Memory).unwrap());
            })*
        }
        mod memory_with_feed {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(super::Store::new(super::Kind::MemoryWithFeed).unwrap());
            })*
        }
        mod sqlite {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(super::Store::new(super::Kind::Sqlite).unwrap());
            })*
        }
        mod postgres {
            $(#[test]
            fn $behaviour() {
                match super::Store::new(super::Kind::Postgres) {
                    Some(store) => super::$behaviour(store),
                    None => eprintln!(
                        "SKIPPED postgres::{}: no PostgreSQL server binaries (initdb, postgres) on this machine",
                        stringify!($behaviour)
                    ),
                }
            })*
        }
    };
}

/// A secret is the first one proposed for its name, after a restart too and, on a shared database,
/// in every process: replicas sign alike.
fn secrets_are_kept_as_first_proposed(mut store: Store) {
    let schema = schema();
    let storage = store.open(&schema);
    let mut made = 0;
    let mut keep = |storage: &Arc<dyn Storage>, name: &str, secret: &[u8]| {
        storage
            .keep_secret(name, &mut || {
                made += 1;
                Ok(secret.to_vec())
            })
            .unwrap()
    };
    assert_eq!(keep(&storage, "signing", b"first"), b"first");
    assert_eq!(keep(&storage, "signing", b"second"), b"first");
    assert_eq!(keep(&storage, "other", b"second"), b"second");
    if store.kind == Kind::Postgres {
        let replica = store.open(&schema);
        assert_eq!(keep(&replica, "signing", b"third"), b"first", "another replica");
    }
    drop(storage);
    let restarted = store.open(&schema);
    assert_eq!(keep(&restarted, "signing", b"third"), b"first", "after a restart");
    assert_eq!(made, 2, "a secret is made only where none is stored");
}

on_every_storage!(
    secrets_are_kept_as_first_proposed,
    snapshots_see_one_committed_state,
    ranges_orders_and_limits,
    a_group_applies_its_net_writes,
    the_flush_takes_the_same_round_trips_for_any_group,
    many_documents_are_read_at_once,
    the_catch_up_after_another_replicas_commit_takes_no_round_trip,
    new_indexes_are_built_from_the_documents,
    outcomes_are_kept_until_purged,
    timestamps_and_abandoned_batches,
    the_commit_feed_announces_each_commit,
    a_failed_group_commit_fails_every_mutation_in_it,
);
