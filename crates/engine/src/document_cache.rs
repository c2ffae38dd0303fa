//! The committer's cache of documents, exact as of a commit.
//!
//! A mutation's point reads (a session to touch, a run whose event counter to bump) mostly hit
//! the same few documents, and on PostgreSQL each miss is a round trip under the commit lock. The
//! cache answers them from memory, and stays exact because every change reaches it:
//! - the committer's own groups: after each durable commit it takes the group's final documents;
//! - other replicas' commits: when a group begins, under the commit lock, it asks the storage for
//!   the documents written since the commit it is exact at (the commit log's write sets) and reads
//!   the cached ones among them again, all in one read; a storage that cannot tell (no log, a gap
//!   in it) has the cache cleared instead;
//! - a group whose commit failed, or may have: the cache is cleared.
//!
//! Absent documents are cached too: an insert always writes its id, so it is seen like any write.
//! Nothing may write Jangar's tables but Jangar (its commits log what they write).

use std::collections::HashMap;

use super::document::Document;
use super::id::DocumentId;
use super::storage::{Batch, GroupWrites, StorageError, Timestamp};

pub(crate) struct DocumentCache {
    documents: HashMap<DocumentId, Option<Document>>,
    bytes: usize,
    capacity_bytes: usize,
    /// Every commit up to this one is applied; `None` before the first group (or after a failure).
    exact_at: Option<Timestamp>,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl DocumentCache {
    pub(crate) fn new(capacity_bytes: usize) -> DocumentCache {
        DocumentCache { documents: HashMap::new(), bytes: 0, capacity_bytes, exact_at: None, hits: 0, misses: 0 }
    }

    /// Brings the cache to the state `batch` reads (its last commit), before a group runs on it.
    pub(crate) fn catch_up(&mut self, batch: &mut dyn Batch) -> Result<(), StorageError> {
        let now = batch.ts();
        match self.exact_at {
            Some(at) if at == now => {}
            Some(at) if at < now => match batch.written_since(at)? {
                Some(ids) => self.refresh(batch, ids)?,
                None => self.clear(),
            },
            // The first group, or the database went back (a restore): nothing cached is known good.
            _ => self.clear(),
        }
        self.exact_at = Some(now);
        Ok(())
    }

    /// Reads again, in one read, the cached documents among `written` (by other replicas): the
    /// documents a replica keeps reading (a session, a run) are the ones the others write, and
    /// dropping them would cost the next group a miss, a round trip under the lock, for each.
    fn refresh(&mut self, batch: &mut dyn Batch, written: Vec<DocumentId>) -> Result<(), StorageError> {
        let mut stale: Vec<DocumentId> = written.into_iter().filter(|id| self.documents.contains_key(id)).collect();
        stale.sort_unstable();
        stale.dedup();
        // Dropped first: if the read fails the cache is still exact (the committer clears it then too).
        for id in &stale {
            self.remove(id);
        }
        if stale.is_empty() {
            return Ok(());
        }
        let fresh = batch.get_many(&stale)?;
        for (id, document) in stale.into_iter().zip(fresh) {
            self.put(id, document);
        }
        self.evict();
        Ok(())
    }

    /// The cached version of `id` (`Some(None)`: known absent), counting the lookup.
    pub(crate) fn get(&mut self, id: &DocumentId) -> Option<Option<Document>> {
        let found = self.documents.get(id).cloned();
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Keeps what the batch said of `id` (read before the group wrote it).
    pub(crate) fn fill(&mut self, id: DocumentId, document: Option<Document>) {
        self.put(id, document);
        self.evict();
    }

    /// Takes a durable group's final documents: the cache is exact at `ts`.
    pub(crate) fn committed(&mut self, ts: Timestamp, group: &GroupWrites) {
        for (id, document) in &group.documents {
            self.put(*id, document.clone());
        }
        self.evict();
        self.exact_at = Some(ts);
    }

    /// Forgets everything: a commit failed, and whether it applied is not known.
    pub(crate) fn forget(&mut self) {
        self.clear();
        self.exact_at = None;
    }

    fn put(&mut self, id: DocumentId, document: Option<Document>) {
        self.bytes += document.as_ref().map_or(0, Document::size) + ENTRY_OVERHEAD;
        if let Some(old) = self.documents.insert(id, document) {
            self.bytes -= old.as_ref().map_or(0, Document::size) + ENTRY_OVERHEAD;
        }
    }

    fn remove(&mut self, id: &DocumentId) {
        if let Some(old) = self.documents.remove(id) {
            self.bytes -= old.as_ref().map_or(0, Document::size) + ENTRY_OVERHEAD;
        }
    }

    fn clear(&mut self) {
        self.documents.clear();
        self.bytes = 0;
    }

    /// Over capacity, drops entries (any: dropping never makes the cache wrong) to three quarters.
    fn evict(&mut self) {
        if self.bytes <= self.capacity_bytes {
            return;
        }
        let goal = self.capacity_bytes / 4 * 3;
        let victims: Vec<DocumentId> = self
            .documents
            .iter()
            .scan(self.bytes, |bytes, (id, document)| {
                (*bytes > goal).then(|| {
                    *bytes -= document.as_ref().map_or(0, Document::size) + ENTRY_OVERHEAD;
                    *id
                })
            })
            .collect();
        for id in victims {
            self.remove(&id);
        }
    }
}

/// Bytes counted per entry besides the document: its id and the map's slot.
const ENTRY_OVERHEAD: usize = 64;
