//! The integrity check: on one snapshot, every index of every table holds
//! exactly one entry per document, under the key computed from that document
//! as it is stored, and no other entry.
//!
//! Per table, the documents are read once, in chunks, and only the expected
//! keys of each index are kept and sorted (a key and an id, some 50 to 150
//! bytes, per document and index); the stored entries are then read in key
//! order and merged against them, so each difference is found in one pass.

use crate::knobs::{BUILD_CHUNK, MAX_LISTED_PROBLEMS};
use std::cmp::Ordering;

use super::id::DocumentId;
use super::schema::{IndexId, Schema};
use super::storage::{Snapshot, StorageError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A document has no entry under its key.
    Missing,
    /// An entry names a document that exists but has another key now.
    Stale,
    /// An entry names a document that does not exist.
    Dangling,
    /// An entry's key is a document's key, but the entry names another document.
    Misdirected,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Stale => "stale",
            ProblemKind::Dangling => "dangling",
            ProblemKind::Misdirected => "misdirected",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            ProblemKind::Missing => "the document has no entry under its key",
            ProblemKind::Stale => "an entry under a key the document no longer has",
            ProblemKind::Dangling => "an entry for a document that does not exist",
            ProblemKind::Misdirected => "an entry under the document's key that names another document",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `table.index`.
    pub index: String,
    pub kind: ProblemKind,
    /// The document concerned: the one an entry names (`Stale`, `Dangling`), or the one whose key
    /// has no entry (`Missing`) or an entry naming another (`Misdirected`).
    pub(crate) id: DocumentId,
    pub(crate) key: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub(crate) tables: usize,
    pub documents: u64,
    pub(crate) indexes: usize,
    pub entries: u64,
    /// The first `MAX_LISTED_PROBLEMS` problems, by table and index.
    pub problems: Vec<Problem>,
    pub problem_count: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }

    /// The report as the admin route sends it and `jangar check` reads it.
    pub fn to_json(&self) -> serde_json::Value {
        let problems: Vec<serde_json::Value> = self
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "index": p.index,
                    "kind": p.kind.as_str(),
                    "id": p.id.encode(),
                    "key": super::base64::encode(&p.key),
                    "description": p.kind.describe(),
                })
            })
            .collect();
        serde_json::json!({
            "ok": self.is_clean(),
            "tables": self.tables,
            "documents": self.documents,
            "indexes": self.indexes,
            "entries": self.entries,
            "problemCount": self.problem_count,
            "problems": problems,
        })
    }

    fn record(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// Checks every index of `schema` against the documents of its table, as `snapshot` has them.
pub fn check(schema: &Schema, snapshot: &mut dyn Snapshot) -> Result<Report, StorageError> {
    let mut report = Report::default();
    for table in schema.tables() {
        report.tables += 1;
        report.indexes += table.indexes.len();
        // One read of the table gives every index its expected keys; only those are kept.
        let mut expected: Vec<Vec<(Vec<u8>, DocumentId)>> = vec![Vec::new(); table.indexes.len()];
        let mut after: Option<DocumentId> = None;
        loop {
            let chunk = snapshot.documents(table.number, after.as_ref(), BUILD_CHUNK)?;
            report.documents += chunk.len() as u64;
            for (index, keys) in table.indexes.iter().zip(&mut expected) {
                keys.extend(chunk.iter().map(|d| (d.index_key(&index.fields), d.id)));
            }
            let done = chunk.len() < BUILD_CHUNK;
            after = chunk.last().map(|d| d.id);
            if done {
                break;
            }
        }
        for (position, (index, mut keys)) in table.indexes.iter().zip(expected).enumerate() {
            keys.sort_unstable();
            let index_id = IndexId { table: table.number, slot: position as u16 + 1 };
            let name = format!("{}.{}", table.name, index.name);
            check_index(snapshot, index_id, &name, &keys, &mut report)?;
        }
    }
    Ok(report)
}

/// Merges the stored entries of `index` (in key order) against `expected` (sorted).
fn check_index(
    snapshot: &mut dyn Snapshot,
    index: IndexId,
    name: &str,
    expected: &[(Vec<u8>, DocumentId)],
    report: &mut Report,
) -> Result<(), StorageError> {
    let mut wanted = expected.iter().peekable();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = snapshot.index_entries(index, after.as_deref(), BUILD_CHUNK)?;
        let done = chunk.len() < BUILD_CHUNK;
        for (key, id) in chunk {
            report.entries += 1;
            // Every expected key before this entry's has no entry.
            while let Some((missing, owner)) = wanted.next_if(|(k, _)| k < &key) {
                report.record(problem(name, ProblemKind::Missing, *owner, missing));
            }
            match wanted.peek() {
                Some((k, owner)) if k.cmp(&key) == Ordering::Equal => {
                    if *owner != id {
                        report.record(problem(name, ProblemKind::Misdirected, *owner, &key));
                    }
                    wanted.next();
                }
                _ => {
                    let kind = if snapshot.get(&id)?.is_some() { ProblemKind::Stale } else { ProblemKind::Dangling };
                    report.record(problem(name, kind, id, &key));
                }
            }
            after = Some(key);
        }
        if done {
            break;
        }
    }
    for (missing, owner) in wanted {
        report.record(problem(name, ProblemKind::Missing, *owner, missing));
    }
    Ok(())
}

fn problem(index: &str, kind: ProblemKind, id: DocumentId, key: &[u8]) -> Problem {
    Problem { index: index.to_owned(), kind, id, key: key.to_vec() }
}
