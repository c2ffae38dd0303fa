//! A group commit's writes, held in memory until the group is flushed.
//!
//! The committer runs a group's mutations one after another on this buffer
//! over the storage's write batch. Reads see the batch's state with the
//! group's earlier writes laid over it; a failing mutation's writes are undone
//! alone (an undo log takes the place of a storage savepoint). At the end the
//! group is flushed as its net change: each touched document's final version,
//! and per index the entries its pre-group version had and its final version
//! lacks, and the other way round. A document written by thirty mutations of a
//! group is written once, and the storage sees one write call per group.
//!
//! Index keys end with the document's id, so a key belongs to one document:
//! whether the batch holds a key follows from that document's pre-group
//! version alone, which is what keeps the overlay's entries exact.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::cursor::CursorKey;
use super::document::Document;
use super::document_cache::DocumentCache;
use super::id::DocumentId;
use super::keys::KeyRange;
use super::schema::IndexId;
use super::sets::{IndexWrite, WriteSet};
use super::storage::{Batch, BatchCounts, GroupWrites, IndexEntry, MutationKey, Order, StorageError, Timestamp};

/// An index entry as the group leaves it, against the batch's.
#[derive(Clone, Debug, PartialEq)]
enum Entry {
    /// The group adds this key (the batch does not have it) for this document.
    Added(DocumentId),
    /// The group removes this key of this document (the batch has it).
    Removed(DocumentId),
}

/// A document the group wrote.
#[derive(Clone, Debug)]
struct Pending {
    /// Its keys before the group, one per index slot (`by_id` first); `None` when it did not exist.
    before: Option<Vec<Vec<u8>>>,
    /// Its version now; `None` once deleted.
    after: Option<Document>,
}

/// A mutation outcome the group knows of.
#[derive(Clone, Debug)]
enum Outcome {
    /// What the batch holds (`None`: nothing), as fetched once.
    Stored(Option<(Timestamp, String)>),
    /// Recorded by this group, to flush.
    Recorded(Timestamp, String),
}

/// What one write changed, so a failed mutation can put it back.
enum Undo {
    Document(DocumentId, Option<Pending>),
    Entry(IndexId, Vec<u8>, Option<Entry>),
    Outcome(MutationKey, Option<Outcome>),
}

pub(crate) struct WriteBuffer<'b> {
    batch: Box<dyn Batch + 'b>,
    /// The committer's documents, exact at the batch's state (caught up before the group).
    cache: &'b mut DocumentCache,
    documents: HashMap<DocumentId, Pending>,
    entries: HashMap<IndexId, BTreeMap<Vec<u8>, Entry>>,
    /// Outcomes recorded by the group, and the batch's answers already fetched.
    outcomes: HashMap<MutationKey, Outcome>,
    /// `Some` while a mutation runs: how to undo what it wrote so far.
    undo: Option<Vec<Undo>>,
}

impl<'b> WriteBuffer<'b> {
    pub(crate) fn new(batch: Box<dyn Batch + 'b>, cache: &'b mut DocumentCache) -> WriteBuffer<'b> {
        WriteBuffer {
            batch,
            cache,
            documents: HashMap::new(),
            entries: HashMap::new(),
            outcomes: HashMap::new(),
            undo: None,
        }
    }

    /// The batch underneath, for what the buffer does not hold (its timestamp, purges).
    pub(crate) fn batch(&mut self) -> &mut dyn Batch {
        &mut *self.batch
    }

    /// Starts a mutation: its writes can be undone until `release`.
    pub(crate) fn savepoint(&mut self) {
        debug_assert!(self.undo.is_none(), "mutations of a group do not nest");
        self.undo = Some(Vec::new());
    }

    /// Keeps the running mutation's writes.
    pub(crate) fn release(&mut self) {
        self.undo = None;
    }

    /// Undoes the running mutation's writes, newest first.
    pub(crate) fn rollback(&mut self) {
        for undo in self.undo.take().unwrap_or_default().into_iter().rev() {
            match undo {
                Undo::Document(id, Some(pending)) => {
                    self.documents.insert(id, pending);
                }
                Undo::Document(id, None) => {
                    self.documents.remove(&id);
                }
                Undo::Entry(index, key, Some(entry)) => {
                    self.entries.entry(index).or_default().insert(key, entry);
                }
                Undo::Entry(index, key, None) => {
                    self.entries.entry(index).or_default().remove(&key);
                }
                Undo::Outcome(key, Some(outcome)) => {
                    self.outcomes.insert(key, outcome);
                }
                Undo::Outcome(key, None) => {
                    self.outcomes.remove(&key);
                }
            }
        }
    }
}

/// A mutation's view of the group: what its transaction reads and writes through. A trait, so
/// that the transaction holds `&mut dyn MutationStore` and its type does not carry the batch's
/// lifetime as well as its own.
pub(crate) trait MutationStore {
    fn cursor_key(&mut self) -> CursorKey;
    fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError>;
    fn scan(
        &mut self,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Document)>, StorageError>;
    fn write(&mut self, id: DocumentId, document: Option<Document>, index_writes: &[IndexWrite]);
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError>;
    fn record_outcome(&mut self, key: &MutationKey, ts: Timestamp, result: &str) -> Result<(), StorageError>;
}

impl MutationStore for WriteBuffer<'_> {
    fn cursor_key(&mut self) -> CursorKey {
        self.batch.cursor_key()
    }

    fn get(&mut self, id: &DocumentId) -> Result<Option<Document>, StorageError> {
        if let Some(pending) = self.documents.get(id) {
            return Ok(pending.after.clone());
        }
        if let Some(cached) = self.cache.get(id) {
            return Ok(cached);
        }
        let stored = self.batch.get(id)?;
        self.cache.fill(*id, stored.clone());
        Ok(stored)
    }

    /// The batch's entries of `index` in `range` with the group's laid over them: removed keys
    /// dropped, added ones merged in order, and every document the group wrote at its latest
    /// version. Asks the batch for as many more rows as the group removed in the range, so
    /// `limit` rows come back whenever the merged range has that many.
    fn scan(
        &mut self,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Document)>, StorageError> {
        let upper = range.end.as_ref().map_or(Bound::Unbounded, |end| Bound::Excluded(end.clone()));
        let bounds = (Bound::Included(range.start.clone()), upper);
        let overlaid: Vec<(&Vec<u8>, &Entry)> =
            self.entries.get(&index).map(|entries| entries.range(bounds).collect()).unwrap_or_default();
        if overlaid.is_empty() && self.documents.is_empty() {
            return self.batch.scan(index, range, order, limit);
        }
        let removed = overlaid.iter().filter(|(_, entry)| matches!(entry, Entry::Removed(_))).count();
        let mut rows: Vec<(Vec<u8>, Document)> = Vec::new();
        for (key, document) in self.batch.scan(index, range, order, limit.saturating_add(removed))? {
            if matches!(self.entries.get(&index).and_then(|e| e.get(&key)), Some(Entry::Removed(_))) {
                continue;
            }
            let latest = match self.documents.get(&document.id) {
                Some(pending) => pending.after.clone().ok_or_else(|| dangling(index, &document.id))?,
                None => document,
            };
            rows.push((key, latest));
        }
        for (key, entry) in overlaid {
            if let Entry::Added(id) = entry {
                let document = self.documents.get(id).and_then(|p| p.after.clone());
                rows.push((key.clone(), document.ok_or_else(|| dangling(index, id))?));
            }
        }
        match order {
            Order::Asc => rows.sort_by(|a, b| a.0.cmp(&b.0)),
            Order::Desc => rows.sort_by(|a, b| b.0.cmp(&a.0)),
        }
        rows.truncate(limit);
        Ok(rows)
    }

    /// Stores `document` as the new version of `id` (`None`: deletes it); `index_writes` are its
    /// key changes, one per index slot in slot order, `by_id` first, as the transaction computed
    /// them from the version it read through this buffer.
    fn write(&mut self, id: DocumentId, document: Option<Document>, index_writes: &[IndexWrite]) {
        let previous = self.documents.get(&id).cloned();
        let before = match &previous {
            Some(pending) => pending.before.clone(),
            // The first write of this document in the group: its old keys are the batch's.
            None => index_writes.iter().map(|w| w.old.clone()).collect::<Option<Vec<_>>>(),
        };
        for (slot, write) in index_writes.iter().enumerate().skip(1) {
            debug_assert_eq!(usize::from(write.index.slot), slot, "index writes come in slot order");
            let base = before.as_ref().map(|keys| &keys[slot]);
            if let Some(old) = &write.old {
                self.set_entry(write.index, old, None);
            }
            if let Some(base) = base {
                let entry = (write.new.as_ref() != Some(base)).then_some(Entry::Removed(id));
                self.set_entry(write.index, base, entry);
            }
            if let Some(new) = &write.new
                && base != Some(new)
            {
                self.set_entry(write.index, new, Some(Entry::Added(id)));
            }
        }
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Document(id, previous));
        }
        self.documents.insert(id, Pending { before, after: document });
    }

    /// The outcome recorded for `key`, by this group or an earlier commit.
    fn find_outcome(&mut self, key: &MutationKey) -> Result<Option<(Timestamp, String)>, StorageError> {
        match self.outcomes.get(key) {
            Some(Outcome::Stored(stored)) => return Ok(stored.clone()),
            Some(Outcome::Recorded(ts, result)) => return Ok(Some((*ts, result.clone()))),
            None => {}
        }
        let stored = self.batch.find_outcome(key)?;
        // The batch's answer stands whatever the mutation does, so it is not in the undo log.
        self.outcomes.insert(key.clone(), Outcome::Stored(stored.clone()));
        Ok(stored)
    }

    /// Records a mutation's outcome with its writes. An outcome is recorded once: a second is an
    /// error for this mutation alone, never for the group's flush.
    fn record_outcome(&mut self, key: &MutationKey, ts: Timestamp, result: &str) -> Result<(), StorageError> {
        if self.find_outcome(key)?.is_some() {
            return Err(StorageError::Other(format!("an outcome of {key:?} is recorded already")));
        }
        let previous = self.outcomes.insert(key.clone(), Outcome::Recorded(ts, result.to_owned()));
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Outcome(key.clone(), previous));
        }
        Ok(())
    }
}

impl WriteBuffer<'_> {
    fn set_entry(&mut self, index: IndexId, key: &[u8], entry: Option<Entry>) {
        let entries = self.entries.entry(index).or_default();
        let previous = match entry {
            Some(entry) => entries.insert(key.to_vec(), entry),
            None => entries.remove(key),
        };
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Entry(index, key.to_vec(), previous));
        }
    }

    /// Flushes the group's net writes and commits the batch at `ts`; `writes` is the union of the
    /// mutations' write sets, for the commit feed.
    pub(crate) fn commit(mut self, ts: Timestamp, writes: &WriteSet) -> Result<BatchCounts, StorageError> {
        debug_assert!(self.undo.is_none(), "a group commits between mutations");
        let group = self.net_writes();
        let WriteBuffer { batch, cache, .. } = self;
        let committed = batch.commit(ts, &group, writes);
        match &committed {
            Ok(_) => cache.committed(ts, &group),
            Err(_) => cache.forget(),
        }
        committed
    }

    fn net_writes(&mut self) -> GroupWrites {
        let mut group = GroupWrites::default();
        // Sorted, so the storage writes rows in key order (and tests see one order).
        let mut documents: Vec<(DocumentId, Pending)> = self.documents.drain().collect();
        documents.sort_by_key(|(id, _)| (id.table, id.internal));
        for (id, pending) in documents {
            // Inserted and deleted inside the group: the batch never had it.
            if pending.before.is_some() || pending.after.is_some() {
                group.documents.push((id, pending.after));
            }
        }
        let mut entries: Vec<(IndexId, BTreeMap<Vec<u8>, Entry>)> = self.entries.drain().collect();
        entries.sort_by_key(|(index, _)| (index.table, index.slot));
        for (index, keys) in entries {
            for (key, entry) in keys {
                match entry {
                    Entry::Added(id) => group.added.push(IndexEntry { index, key, id }),
                    Entry::Removed(id) => group.removed.push(IndexEntry { index, key, id }),
                }
            }
        }
        for (key, outcome) in self.outcomes.drain() {
            if let Outcome::Recorded(ts, result) = outcome {
                group.outcomes.push((key, ts, result));
            }
        }
        group
    }
}

fn dangling(index: IndexId, id: &DocumentId) -> StorageError {
    StorageError::Corrupt(format!("index {index:?} names {id}, which this group deleted"))
}

#[cfg(test)]
mod tests {
    //! The buffer against a model that keeps a whole copy of the state per mutation: random
    //! mutations of puts, deletes and scans, each kept or undone, in groups committed or
    //! abandoned, over the memory storage (with and without a commit log) and SQLite. Each group
    //! runs on one of two committers, each with its own document cache, as two replicas would:
    //! the other's commits are foreign. Reads inside a group and the stored state after it must
    //! be the model's.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{MutationStore, WriteBuffer};
    use crate::document::Document;
    use crate::document_cache::DocumentCache;
    use crate::id::{DocumentId, TableNumber};
    use crate::integrity;
    use crate::keys::{IndexRange, KeyRange};
    use crate::schema::{IndexId, Schema, TableDef, v};
    use crate::sets::{IndexWrite, WriteSet};
    use crate::storage::memory::MemoryStorage;
    use crate::storage::sqlite::{Durability, SqliteStorage};
    use crate::storage::{Order, Storage};
    use crate::value::{Object, Value};

    const TABLE: TableNumber = 10_001;
    const GROUPS: [&str; 3] = ["a", "b", "c"];

    fn schema() -> Schema {
        let fields = vec![("group", v::string()), ("rank", v::number())];
        let table =
            TableDef::new("items", TABLE, fields).index("by_group", &["group", "rank"]).index("by_rank", &["rank"]);
        Schema::new(vec![table]).unwrap()
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Writes document `n` (an insert or a replace).
        Put {
            n: u8,
            group: usize,
            rank: i8,
        },
        Delete {
            n: u8,
        },
        /// Scans `by_group` for one group (`None`: every group) or `by_rank` over everything.
        Scan {
            group: Option<usize>,
            by_rank: bool,
            descending: bool,
            limit: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..8, 0..GROUPS.len(), -3i8..4).prop_map(|(n, group, rank)| Op::Put { n, group, rank }),
            2 => (0u8..8).prop_map(|n| Op::Delete { n }),
            3 => (prop::option::of(0..GROUPS.len()), any::<bool>(), any::<bool>(), 0usize..6)
                .prop_map(|(group, by_rank, descending, limit)| Op::Scan { group, by_rank, descending, limit }),
        ]
    }

    /// A mutation: its ops, and whether it succeeds (kept) or fails (undone).
    fn mutation() -> impl Strategy<Value = (Vec<Op>, bool)> {
        (prop::collection::vec(op(), 0..6), any::<bool>())
    }

    fn id(n: u8) -> DocumentId {
        DocumentId { table: TABLE, internal: [n; 16] }
    }

    fn fields_of(slot: u16) -> &'static [&'static str] {
        if slot == 1 { &["group", "rank"] } else { &["rank"] }
    }

    /// The range and index a scan op reads.
    fn scan_of(group: Option<usize>, by_rank: bool) -> (IndexId, KeyRange) {
        match (group, by_rank) {
            (Some(group), false) => {
                (IndexId { table: TABLE, slot: 1 }, IndexRange::default().eq(GROUPS[group]).to_key_range())
            }
            (_, by_rank) => {
                (IndexId { table: TABLE, slot: if by_rank { 2 } else { 1 } }, KeyRange { start: Vec::new(), end: None })
            }
        }
    }

    /// The model's answer to a scan: every document's key, filtered, sorted, limited.
    fn model_scan(
        model: &BTreeMap<DocumentId, Document>,
        index: IndexId,
        range: &KeyRange,
        order: Order,
        limit: usize,
    ) -> Vec<DocumentId> {
        let mut keys: Vec<(Vec<u8>, DocumentId)> = model
            .values()
            .map(|d| (d.index_key(fields_of(index.slot)), d.id))
            .filter(|(key, _)| range.contains(key))
            .collect();
        keys.sort();
        if order == Order::Desc {
            keys.reverse();
        }
        keys.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// Writes `new` as document `id` through the buffer, as a transaction would, adding its index
    /// writes to the mutation's write set.
    fn write(buffer: &mut WriteBuffer<'_>, id: DocumentId, new: Option<Document>, written: &mut WriteSet) {
        let old = buffer.get(&id).unwrap();
        if old.is_none() && new.is_none() {
            return;
        }
        let mut writes = vec![IndexWrite {
            index: IndexId { table: TABLE, slot: 0 },
            old: old.as_ref().map(|_| Document::id_key(&id)),
            new: new.as_ref().map(|_| Document::id_key(&id)),
        }];
        // Slot 3 is the implicit by_creation_time index.
        for slot in 1..=3u16 {
            let fields: &[&str] = if slot == 3 { &[] } else { fields_of(slot) };
            writes.push(IndexWrite {
                index: IndexId { table: TABLE, slot },
                old: old.as_ref().map(|d| d.index_key(fields)),
                new: new.as_ref().map(|d| d.index_key(fields)),
            });
        }
        buffer.write(id, new, &writes);
        written.entries.extend(writes);
    }

    /// Applies one op to the buffer and the model; a scan's answers must agree.
    fn apply(
        buffer: &mut WriteBuffer<'_>,
        model: &mut BTreeMap<DocumentId, Document>,
        op: &Op,
        clock: &mut f64,
        written: &mut WriteSet,
    ) -> Result<(), TestCaseError> {
        match op {
            Op::Put { n, group, rank } => {
                *clock += 0.25;
                let creation_time = model.get(&id(*n)).map_or(*clock, |d| d.creation_time);
                let fields = Object::from([
                    ("group".to_owned(), Value::from(GROUPS[*group])),
                    ("rank".to_owned(), Value::from(f64::from(*rank))),
                ]);
                let document = Document { id: id(*n), creation_time, fields };
                model.insert(id(*n), document.clone());
                write(buffer, id(*n), Some(document), written);
            }
            Op::Delete { n } => {
                model.remove(&id(*n));
                write(buffer, id(*n), None, written);
            }
            Op::Scan { group, by_rank, descending, limit } => {
                let (index, range) = scan_of(*group, *by_rank);
                let order = if *descending { Order::Desc } else { Order::Asc };
                let got: Vec<DocumentId> =
                    buffer.scan(index, &range, order, *limit).unwrap().into_iter().map(|(_, d)| d.id).collect();
                prop_assert_eq!(got, model_scan(model, index, &range, order, *limit), "{:?}", op);
            }
        }
        for n in 0..8 {
            prop_assert_eq!(buffer.get(&id(n)).unwrap(), model.get(&id(n)).cloned(), "document {} after {:?}", n, op);
        }
        Ok(())
    }

    /// The stored state against the model: every document, both indexes in both orders, and
    /// entries that match their documents.
    fn check_stored(
        storage: &dyn Storage,
        schema: &Schema,
        model: &BTreeMap<DocumentId, Document>,
    ) -> Result<(), TestCaseError> {
        let mut snapshot = storage.snapshot().unwrap();
        let stored = snapshot.documents(TABLE, None, 100).unwrap();
        prop_assert_eq!(stored, model.values().cloned().collect::<Vec<_>>());
        for by_rank in [false, true] {
            let (index, range) = scan_of(None, by_rank);
            for order in [Order::Asc, Order::Desc] {
                let got: Vec<DocumentId> =
                    snapshot.scan(index, &range, order, 100).unwrap().into_iter().map(|(_, d)| d.id).collect();
                prop_assert_eq!(got, model_scan(model, index, &range, order, 100));
            }
        }
        let report = integrity::check(schema, &mut *snapshot).unwrap();
        prop_assert!(report.is_clean(), "{:#?}", report.problems);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_buffer_reads_and_commits_as_the_model_does(
            groups in prop::collection::vec(
                (prop::collection::vec(mutation(), 0..6), any::<bool>(), 0..2usize),
                1..6,
            ),
            cache_bytes in prop_oneof![Just(1 << 20), Just(600)],
        ) {
            let schema = schema();
            let dir = jangar_test_support::temp_dir();
            let sqlite = SqliteStorage::open(dir.path(), &schema, Durability::Normal).unwrap();
            let memory = MemoryStorage::new(&schema).unwrap();
            let logged = MemoryStorage::with_feed(&schema).unwrap();
            for storage in [&memory as &dyn Storage, &logged, &sqlite] {
                let mut model = BTreeMap::new();
                let mut clock = 1_700_000_000_000.0;
                // A small capacity evicts as the groups go.
                let mut caches = [DocumentCache::new(cache_bytes), DocumentCache::new(cache_bytes)];
                for (n, (mutations, commit, committer)) in groups.iter().enumerate() {
                    let cache = &mut caches[*committer];
                    let mut batch = storage.begin_batch().unwrap();
                    cache.catch_up(&mut *batch).unwrap();
                    let mut buffer = WriteBuffer::new(batch, cache);
                    let mut group_model = model.clone();
                    // The kept mutations' writes, for the commit log (as the committer keeps them).
                    let mut group_writes = WriteSet::default();
                    for (ops, keep) in mutations {
                        buffer.savepoint();
                        let before = group_model.clone();
                        let mut written = WriteSet::default();
                        for op in ops {
                            apply(&mut buffer, &mut group_model, op, &mut clock, &mut written)?;
                        }
                        if *keep {
                            buffer.release();
                            group_writes.extend(written);
                        } else {
                            buffer.rollback();
                            group_model = before;
                            for n in 0..8 {
                                prop_assert_eq!(buffer.get(&id(n)).unwrap(), group_model.get(&id(n)).cloned(), "undone");
                            }
                        }
                    }
                    if *commit {
                        buffer.commit(1_000 * (n as u64 + 1), &group_writes).unwrap();
                        model = group_model;
                    }
                    check_stored(storage, &schema, &model)?;
                }
            }
        }
    }
}
