//! Storage in memory: the reference that the storage conformance and property
//! tests hold the databases to, and a fast store for tests that need no disk.
//! Nothing is durable.
//!
//! The committed state is one immutable [`State`] behind an `Arc`. A snapshot
//! keeps the `Arc` it found, so it reads exactly that commit however many come
//! after. The batch reads the state it began on; its commit applies the group's
//! writes to a copy and puts that in place of the shared one. Every read and write is a plain map operation: the
//! point is to be obviously right, not fast.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{
    Batch, BatchCounts, CommitFeed, GroupWrites, Make, MutationKey, Order, Snapshot, Storage, StorageError, Timestamp,
    missing_entry, new_secret, written_documents,
};
use crate::cursor::CursorKey;
use crate::document::Document;
use crate::id::{DocumentId, TableNumber};
use crate::keys::KeyRange;
use crate::schema::{IndexId, Schema};
use crate::sets::{Commit, WriteSet};

pub struct MemoryStorage {
    shared: Arc<Shared>,
    /// Held by the open batch: one writer at a time.
    writer: Mutex<()>,
    /// The fields of every declared index.
    indexes: HashMap<IndexId, Vec<&'static str>>,
    cursor_key: CursorKey,
    /// Whether commits are announced through a [`CommitFeed`] (as a database that other
    /// processes share announces them) rather than by the committer.
    feed: bool,
}

struct Shared {
    state: Mutex<Arc<State>>,
    /// Notified after every commit (the feed waits on it).
    committed: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Arc<State>> {
        // The state is replaced whole, never changed in place: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything stored, as of one commit.
#[derive(Clone, Default)]
struct State {
    ts: Timestamp,
    documents: BTreeMap<DocumentId, Document>,
    /// Per declared index: key → the internal id of the document it names.
    entries: BTreeMap<IndexId, BTreeMap<Vec<u8>, [u8; 16]>>,
    /// (client, request) → (commit timestamp, result).
    outcomes: BTreeMap<(String, u64), (Timestamp, String)>,
    /// With a feed: every commit as (its timestamp, the previous commit's, its writes).
    log: Vec<(Timestamp, Timestamp, WriteSet)>,
    /// `Storage::keep_secret`'s, by name.
    secrets: BTreeMap<String, Vec<u8>>,
}

impl MemoryStorage {
    /// An empty store whose committer announces its own commits (like SQLite).
    pub fn new(schema: &Schema) -> Result<MemoryStorage, StorageError> {
        MemoryStorage::open(schema, State::default(), CursorKey::new(new_secret()?), false)
    }

    /// An empty store that announces its commits through a commit feed, as a database shared
    /// with other processes does (like PostgreSQL).
    pub fn with_feed(schema: &Schema) -> Result<MemoryStorage, StorageError> {
        MemoryStorage::open(schema, State::default(), CursorKey::new(new_secret()?), true)
    }

    /// What a restart with `schema` would find: the committed documents, outcomes and cursor
    /// secret, with every index of `schema` built from the documents (so new indexes are
    /// backfilled and those no longer declared are gone).
    pub fn reopen(&self, schema: &Schema) -> Result<MemoryStorage, StorageError> {
        let state = State::clone(&self.shared.state());
        MemoryStorage::open(schema, state, self.cursor_key.clone(), self.feed)
    }

    fn open(
        schema: &Schema,
        mut state: State,
        cursor_key: CursorKey,
        feed: bool,
    ) -> Result<MemoryStorage, StorageError> {
        let mut indexes = HashMap::new();
        for table in schema.tables() {
            for (position, index) in table.indexes.iter().enumerate() {
                indexes.insert(IndexId { table: table.number, slot: position as u16 + 1 }, index.fields.clone());
            }
        }
        state.entries.clear();
        for (&index, fields) in &indexes {
            let entries = state
                .documents
                .range(table_range(index.table))
                .map(|(id, document)| (document.index_key(fields), id.internal))
                .collect();
            state.entries.insert(index, entries);
        }
        Ok(MemoryStorage {
            shared: Arc::new(Shared { state: Mutex::new(Arc::new(state)), committed: Condvar::new() }),
            writer: Mutex::new(()),
            indexes,
            cursor_key,
            feed,
        })
    }

    /// A declared index (its entries are kept under its own id).
    fn index_number(&self, index: IndexId) -> Result<IndexId, StorageError> {
        if self.indexes.contains_key(&index) {
            Ok(index)
        } else {
            Err(StorageError::Other(format!("unknown index {index:?}")))
        }
    }
}

/// The ids of one table's documents, as a range of the document map.
fn table_range(table: TableNumber) -> (Bound<DocumentId>, Bound<DocumentId>) {
    (
        Bound::Included(DocumentId { table, internal: [0; 16] }),
        Bound::Included(DocumentId { table, internal: [0xff; 16] }),
    )
}

fn get(state: &State, id: &DocumentId) -> Result<Option<Document>, StorageError> {
    Ok(state.documents.get(id).cloned())
}

fn scan(
    state: &State,
    index: IndexId,
    table: TableNumber,
    range: &KeyRange,
    order: Order,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
    let Some(entries) = state.entries.get(&index) else {
        return Ok(Vec::new());
    };
    if range.is_empty() {
        return Ok(Vec::new());
    }
    let end = range.end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let inside = entries.range::<[u8], _>((Bound::Included(range.start.as_slice()), end));
    // An entry whose document is gone is skipped, as the databases' join does.
    let with_documents = |(key, internal): (&Vec<u8>, &[u8; 16])| {
        let document = state.documents.get(&DocumentId { table, internal: *internal })?;
        Some((key.clone(), document.clone()))
    };
    Ok(match order {
        Order::Asc => inside.filter_map(with_documents).take(limit).collect(),
        Order::Desc => inside.rev().filter_map(with_documents).take(limit).collect(),
    })
}

fn documents(
    state: &State,
    table: TableNumber,
    after: Option<&DocumentId>,
    limit: usize,
) -> Result<Vec<Document>, StorageError> {
    let (_, end) = table_range(table);
    let start = match after {
        Some(after) => Bound::Excluded(DocumentId { table, internal: after.internal }),
        None => Bound::Included(DocumentId { table, internal: [0; 16] }),
    };
    Ok(state.documents.range((start, end)).take(limit).map(|(_, document)| document.clone()).collect())
}

fn index_entries(
    state: &State,
    index: IndexId,
    table: TableNumber,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, DocumentId)>, StorageError> {
    let Some(entries) = state.entries.get(&index) else {
        return Ok(Vec::new());
    };
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    Ok(entries
        .range::<[u8], _>((start, Bound::Unbounded))
        .take(limit)
        .map(|(key, internal)| (key.clone(), DocumentId { table, internal: *internal }))
        .collect())
}

/// A committed state, held.
struct MemorySnapshot<'a> {
    storage: &'a MemoryStorage,
    state: Arc<State>,
    ts: Timestamp,
}

impl MemorySnapshot<'_> {
    fn state(&self) -> &State {
        &self.state
    }
}

/// The writer's working copy.
struct MemoryBatch<'a> {
    storage: &'a MemoryStorage,
    _writer: MutexGuard<'a, ()>,
    ts: Timestamp,
    state: State,
}

impl MemoryBatch<'_> {
    fn state(&self) -> &State {
        &self.state
    }
}

reads_through!(MemorySnapshot, state);
reads_through!(MemoryBatch, state);

impl Batch for MemoryBatch<'_> {
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError> {
        Ok(self.state.outcomes.get(&(key.client.clone(), key.request)).cloned())
    }

    fn purge_outcomes(&mut self, before: Timestamp) -> Result<usize, StorageError> {
        let count = self.state.outcomes.len();
        self.state.outcomes.retain(|_, (ts, _)| *ts >= before);
        self.state.log.retain(|(ts, _, _)| *ts >= before);
        Ok(count - self.state.outcomes.len())
    }

    fn written_since(&mut self, after: Timestamp) -> Result<Option<Vec<DocumentId>>, StorageError> {
        if !self.storage.feed {
            return Ok(None);
        }
        // The log is complete from `after` on only if a commit there (or nothing before) is in it.
        let mut previous = after;
        let mut ids = Vec::new();
        for (ts, prev, writes) in self.state.log.iter().filter(|(ts, _, _)| *ts > after) {
            if *prev != previous {
                return Ok(None);
            }
            ids.extend(written_documents(writes));
            previous = *ts;
        }
        Ok((previous == self.ts).then_some(ids))
    }

    fn commit(
        self: Box<Self>,
        ts: Timestamp,
        group: &GroupWrites,
        writes: &WriteSet,
    ) -> Result<BatchCounts, StorageError> {
        let MemoryBatch { storage, _writer, ts: previous, mut state } = *self;
        for (id, document) in &group.documents {
            match document {
                Some(document) => state.documents.insert(*id, document.clone()),
                None => state.documents.remove(id),
            };
        }
        for entry in &group.removed {
            let index = storage.index_number(entry.index)?;
            if state.entries.entry(index).or_default().remove(&entry.key).is_none() {
                return Err(missing_entry(entry.index, &entry.id));
            }
        }
        for entry in &group.added {
            let index = storage.index_number(entry.index)?;
            if state.entries.entry(index).or_default().insert(entry.key.clone(), entry.id.internal).is_some() {
                return Err(StorageError::Other(format!("index {index:?} already has an entry at this key")));
            }
        }
        for (key, ts, result) in &group.outcomes {
            let slot = (key.client.clone(), key.request);
            if state.outcomes.insert(slot, (*ts, result.clone())).is_some() {
                return Err(StorageError::Other(format!("an outcome of {key:?} is recorded already")));
            }
        }
        if storage.feed && ts > previous {
            state.log.push((ts, previous, writes.clone()));
        }
        state.ts = ts;
        *storage.shared.state() = Arc::new(state);
        storage.shared.committed.notify_all();
        Ok(BatchCounts::default())
    }
}

impl Storage for MemoryStorage {
    fn keep_secret(&self, name: &str, make: Make<'_>) -> Result<Vec<u8>, StorageError> {
        let mut state = self.shared.state();
        if let Some(secret) = state.secrets.get(name) {
            return Ok(secret.clone());
        }
        let secret = make()?;
        let mut next = State::clone(&state);
        next.secrets.insert(name.to_owned(), secret.clone());
        *state = Arc::new(next);
        Ok(secret)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StorageError> {
        let state = self.shared.state().clone();
        Ok(Box::new(MemorySnapshot { storage: self, ts: state.ts, state }))
    }

    fn begin_batch(&self) -> Result<Box<dyn Batch + '_>, StorageError> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let state = State::clone(&self.shared.state());
        Ok(Box::new(MemoryBatch { storage: self, _writer: writer, ts: state.ts, state }))
    }

    fn commit_feed(&self, after: Timestamp) -> Option<Box<dyn CommitFeed>> {
        self.feed.then(|| Box::new(MemoryFeed { shared: self.shared.clone(), last: after }) as Box<dyn CommitFeed>)
    }
}

/// Follows the commit log of a store made [`MemoryStorage::with_feed`].
struct MemoryFeed {
    shared: Arc<Shared>,
    last: Timestamp,
}

impl CommitFeed for MemoryFeed {
    fn next(&mut self, wait: Duration) -> Result<Vec<Commit>, StorageError> {
        let mut state = self.shared.state();
        if state.ts <= self.last {
            state = self.shared.committed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
        let state = state.clone();
        let mut commits = Vec::new();
        let after = self.last;
        for (ts, previous, writes) in state.log.iter().filter(|(ts, _, _)| *ts > after) {
            // A commit that does not follow the last one seen: those between were purged unseen.
            commits.push(if *previous == self.last {
                Commit::new(*ts, writes.clone())
            } else {
                Commit { ts: *ts, writes: WriteSet::default(), everything: true }
            });
            self.last = *ts;
        }
        Ok(commits)
    }
}
