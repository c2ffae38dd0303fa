//! The rows a group of `chatMessages:append` calls writes, built without running any function,
//! for the storage bounds (`sqlite_bound`, `postgres_bound`): each append's new message with its
//! index entries, and each session it touched rewritten once per group with its index entries
//! moved, exactly as the engine's write buffer hands a group to `Batch::commit`. Sessions are
//! drawn from 100 at random, as `bench/run.py`'s appends are. Each group goes through the
//! storage's own commit, so its statements are those of Jangar's flush.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::schema::{IndexId, Schema, TableDef};
use jangar_engine::sets::{IndexWrite, WriteSet};
use jangar_engine::storage::{BatchCounts, GroupWrites, IndexEntry, Storage, Timestamp};
use jangar_engine::value::{Object, Value};

const SESSIONS: usize = 100;

pub(crate) fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

/// The index writes of replacing `old` by `new` in `table`, `by_id` first, as a transaction makes them.
fn index_writes(table: &TableDef, old: Option<&Document>, new: Option<&Document>) -> Vec<IndexWrite> {
    let id_key = |d: &Document| Document::id_key(&d.id);
    let mut writes = vec![IndexWrite { index: table.by_id(), old: old.map(id_key), new: new.map(id_key) }];
    for (position, index) in table.indexes.iter().enumerate() {
        writes.push(IndexWrite {
            index: IndexId { table: table.number, slot: position as u16 + 1 },
            old: old.map(|d| d.index_key(&index.fields)),
            new: new.map(|d| d.index_key(&index.fields)),
        });
    }
    writes
}

/// Adds the net entry changes of `before` → `after` to `group`.
fn add_entries(group: &mut GroupWrites, table: &TableDef, before: Option<&Document>, after: &Document) {
    for write in index_writes(table, before, Some(after)).into_iter().skip(1).filter(|w| w.old != w.new) {
        if let Some(key) = write.old {
            group.removed.push(IndexEntry { index: write.index, key, id: after.id });
        }
        if let Some(key) = write.new {
            group.added.push(IndexEntry { index: write.index, key, id: after.id });
        }
    }
}

struct Appender<'s> {
    sessions_table: &'s TableDef,
    messages_table: &'s TableDef,
    sessions: Vec<Document>,
    ts: Timestamp,
    creation_ms: f64,
    seed: u64,
}

impl Appender<'_> {
    fn next_session(&mut self) -> usize {
        // xorshift64: a fixed, cheap sequence.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % SESSIONS as u64) as usize
    }

    fn new_id(&mut self, table: u32) -> DocumentId {
        let mut internal = [0u8; 16];
        internal[..8].copy_from_slice(&self.seed.to_be_bytes());
        internal[8..].copy_from_slice(&self.ts.to_be_bytes());
        self.next_session();
        DocumentId { table, internal }
    }

    fn document(&mut self, table: u32, fields: Vec<(&str, Value)>) -> Document {
        self.creation_ms += 0.001;
        let fields: Object = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Document { id: self.new_id(table), creation_time: self.creation_ms, fields }
    }

    /// One group of `size` appends: the group's net writes and its write set.
    fn group(&mut self, size: usize) -> (GroupWrites, WriteSet) {
        let mut group = GroupWrites::default();
        let mut writes = WriteSet::default();
        let mut touched: HashMap<usize, Document> = HashMap::new();
        for _ in 0..size {
            self.ts += 1_000;
            let now = Value::from((self.ts / 1_000_000) as f64);
            let session = self.next_session();
            let current = touched.get(&session).unwrap_or(&self.sessions[session]).clone();
            let mut updated = current.clone();
            for field in ["lastMessageAt", "lastActiveAt", "updatedAt"] {
                updated.fields.insert(field.into(), now.clone());
            }
            writes.entries.extend(index_writes(self.sessions_table, Some(&current), Some(&updated)));
            touched.insert(session, updated);
            let session_id = self.sessions[session].id.encode();
            let messages = self.messages_table.number;
            let message = self.document(
                messages,
                vec![
                    ("sessionId", session_id.into()),
                    ("role", "user".into()),
                    ("content", "hello from the benchmark, a message of typical size".into()),
                    ("createdAt", now.clone()),
                    ("updatedAt", now),
                ],
            );
            writes.entries.extend(index_writes(self.messages_table, None, Some(&message)));
            add_entries(&mut group, self.messages_table, None, &message);
            group.documents.push((message.id, Some(message)));
        }
        for (session, after) in touched {
            add_entries(&mut group, self.sessions_table, Some(&self.sessions[session]), &after);
            group.documents.push((after.id, Some(after.clone())));
            self.sessions[session] = after;
        }
        (group, writes)
    }
}

/// Seeds `SESSIONS` sessions, then commits groups of `size` appends for `seconds`; prints
/// `inserts_per_sec=` (appends per second), commits per second and, per group, statements and
/// round trips.
pub(crate) fn run(
    storage: &dyn Storage,
    schema: &Schema,
    size: usize,
    seconds: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let sessions_table = schema.table("chat_sessions").ok_or("no chat_sessions table")?;
    let messages_table = schema.table("chat_messages").ok_or("no chat_messages table")?;
    let start_ts = storage.snapshot()?.ts().max(1_800_000_000_000_000_000);
    let mut appender = Appender {
        sessions_table,
        messages_table,
        sessions: Vec::new(),
        ts: start_ts,
        creation_ms: (start_ts / 1_000_000) as f64,
        seed: 0x9e37_79b9_7f4a_7c15,
    };
    let mut seed = GroupWrites::default();
    for n in 0..SESSIONS {
        let now = Value::from((start_ts / 1_000_000) as f64);
        let session = appender.document(
            sessions_table.number,
            vec![
                ("userId", format!("user-{n}").into()),
                ("title", format!("session {n}").into()),
                ("lastMessageAt", now.clone()),
                ("lastActiveAt", now.clone()),
                ("createdAt", now.clone()),
                ("updatedAt", now),
            ],
        );
        add_entries(&mut seed, sessions_table, None, &session);
        seed.documents.push((session.id, Some(session.clone())));
        appender.sessions.push(session);
    }
    appender.ts += 1_000;
    storage.begin_batch()?.commit(appender.ts, &seed, &WriteSet::default())?;

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (mut appends, mut groups, mut counts) = (0u64, 0u64, BatchCounts::default());
    while Instant::now() < deadline {
        let batch = storage.begin_batch()?;
        let (group, writes) = appender.group(size);
        appender.ts += 1_000;
        let spent = batch.commit(appender.ts, &group, &writes)?;
        counts.statements += spent.statements;
        counts.round_trips += spent.round_trips;
        appends += size as u64;
        groups += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("inserts_per_sec={:.1}", appends as f64 / elapsed);
    println!("commits_per_sec={:.1}", groups as f64 / elapsed);
    println!("statements_per_group={:.1}", counts.statements as f64 / groups as f64);
    println!("round_trips_per_group={:.1}", counts.round_trips as f64 / groups as f64);
    Ok(())
}
