//! The query cache: results of deterministic queries, keyed by function,
//! arguments (and later identity), kept exactly as long as no commit has
//! written inside their read set.
//!
//! The committer applies every commit here before it answers the mutation, so
//! a client never reads a result older than its own write. A result computed
//! at snapshot `ts` is admitted only if every commit after `ts` is still in the
//! recent-commit log and none of them touched its read set.
//!
//! On a database other processes write too, their commits arrive through the
//! commit feed a moment after they were acknowledged; a lookup then names the
//! database's latest commit, and the cache answers only once it has applied it.

use crate::knobs::RECENT_COMMITS;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::sets::Commit;
use super::sets::ReadSet;
use super::storage::Timestamp;
use super::value::{JsonFormat, Value};

/// A cached result with its JSON forms made on first use.
#[derive(Debug)]
pub struct CachedResult {
    pub value: Value,
    encoded: OnceLock<Arc<str>>,
    clean: OnceLock<Arc<str>>,
}

impl CachedResult {
    pub fn new(value: Value) -> CachedResult {
        CachedResult { value, encoded: OnceLock::new(), clean: OnceLock::new() }
    }

    pub fn json(&self, format: JsonFormat) -> Arc<str> {
        let cell = match format {
            JsonFormat::Encoded => &self.encoded,
            JsonFormat::Clean => &self.clean,
        };
        cell.get_or_init(|| self.value.to_json_text(format).into()).clone()
    }
}

struct Entry {
    result: Arc<CachedResult>,
    reads: ReadSet,
    /// The snapshot it was computed at: commits up to it are already in the result.
    ts: Timestamp,
}

struct State {
    entries: HashMap<String, Entry>,
    recent: VecDeque<Arc<Commit>>,
    /// Every commit newer than this is in `recent`.
    horizon: Timestamp,
    /// The last commit applied: every cached result is the answer as of it.
    applied: Timestamp,
}

pub struct QueryCache {
    state: Mutex<State>,
    capacity: usize,
    /// Lookups answered from the cache, and lookups that found nothing (the query then runs).
    hits: AtomicU64,
    misses: AtomicU64,
}

impl QueryCache {
    pub(crate) fn new(capacity: usize) -> QueryCache {
        QueryCache {
            state: Mutex::new(State { entries: HashMap::new(), recent: VecDeque::new(), horizon: 0, applied: 0 }),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A result that is valid at the latest applied commit, if that is at least `latest` (the
    /// database's last commit when asked; `None` when this process makes every commit and applies
    /// each before answering it).
    pub fn get(&self, key: &str, latest: Option<Timestamp>) -> Option<Arc<CachedResult>> {
        let state = self.state();
        let current = latest.is_none_or(|latest| state.applied >= latest);
        let found = if current { state.entries.get(key).map(|e| e.result.clone()) } else { None };
        drop(state);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether a result for `key` is held (not counted as a lookup).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.state().entries.contains_key(key)
    }

    /// Lookups answered from the cache so far, and lookups that missed.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Admits a result computed at snapshot `ts`, unless a later commit already invalidated it.
    pub fn insert(&self, key: String, result: Arc<CachedResult>, reads: ReadSet, ts: Timestamp) {
        if self.capacity == 0 {
            return;
        }
        let mut state = self.state();
        if ts < state.horizon {
            return;
        }
        if state.recent.iter().rev().take_while(|c| c.ts > ts).any(|c| c.touches(&reads)) {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            // Full: drop an arbitrary entry; it is recomputed on its next use.
            if let Some(victim) = state.entries.keys().next().cloned() {
                state.entries.remove(&victim);
            }
        }
        state.entries.insert(key, Entry { result, reads, ts });
    }

    /// Drops every result computed before the commit whose read set it touched. A result computed
    /// at the commit or later stays: a query can read a commit before the cache is told of it (a
    /// replica's follower hears of its own commits after answering them).
    pub(crate) fn apply(&self, commit: &Arc<Commit>) {
        let mut state = self.state();
        state.entries.retain(|_, entry| entry.ts >= commit.ts || !commit.touches(&entry.reads));
        state.applied = state.applied.max(commit.ts);
        state.recent.push_back(commit.clone());
        while state.recent.len() > RECENT_COMMITS {
            let dropped = state.recent.pop_front().expect("non-empty");
            state.horizon = dropped.ts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRange;
    use crate::schema::IndexId;
    use crate::sets::{IndexWrite, WriteSet};

    const INDEX: IndexId = IndexId { table: 10_001, slot: 1 };

    fn reads(start: u8, end: u8) -> ReadSet {
        let mut set = ReadSet::default();
        set.record(INDEX, KeyRange { start: vec![start], end: Some(vec![end]) });
        set
    }

    fn commit(ts: Timestamp, key: u8) -> Arc<Commit> {
        Arc::new(Commit {
            everything: false,
            ts,
            writes: WriteSet { entries: vec![IndexWrite { index: INDEX, old: None, new: Some(vec![key]) }] },
        })
    }

    fn result() -> Arc<CachedResult> {
        Arc::new(CachedResult::new(Value::from("r")))
    }

    #[test]
    fn a_commit_drops_exactly_the_results_it_touched() {
        let cache = QueryCache::new(10);
        cache.insert("a".into(), result(), reads(0, 10), 5);
        cache.insert("b".into(), result(), reads(20, 30), 5);
        cache.apply(&commit(6, 25));
        assert!(cache.get("a", None).is_some());
        assert!(cache.get("b", None).is_none());
        assert_eq!(cache.hits_and_misses(), (1, 1));
    }

    #[test]
    fn a_commit_of_unknown_writes_drops_everything_and_admits_nothing_older() {
        let cache = QueryCache::new(10);
        cache.insert("a".into(), result(), reads(0, 10), 5);
        cache.insert("b".into(), result(), reads(50, 60), 5);
        cache.apply(&Arc::new(Commit { ts: 10, writes: WriteSet::default(), everything: true }));
        assert!(cache.get("a", None).is_none() && cache.get("b", None).is_none());
        cache.insert("c".into(), result(), reads(200, 201), 8);
        assert!(cache.get("c", None).is_none(), "computed before the unknown writes");
        cache.insert("d".into(), result(), reads(200, 201), 10);
        assert!(cache.get("d", None).is_some());
    }

    #[test]
    fn a_result_older_than_a_touching_commit_is_not_admitted() {
        let cache = QueryCache::new(10);
        cache.apply(&commit(10, 5));
        cache.insert("stale".into(), result(), reads(0, 10), 9);
        assert!(cache.get("stale", None).is_none(), "computed before a commit that changed it");
        cache.insert("fresh".into(), result(), reads(0, 10), 10);
        cache.insert("untouched".into(), result(), reads(50, 60), 9);
        assert!(cache.get("fresh", None).is_some());
        assert!(cache.get("untouched", None).is_some());
    }

    #[test]
    fn a_commit_heard_of_after_a_result_computed_at_it_keeps_the_result() {
        let cache = QueryCache::new(10);
        cache.insert("read-the-commit".into(), result(), reads(0, 10), 10);
        cache.insert("older".into(), result(), reads(0, 10), 9);
        cache.apply(&commit(10, 5));
        assert!(cache.get("read-the-commit", None).is_some(), "its snapshot already had the commit");
        assert!(cache.get("older", None).is_none());
        cache.apply(&Arc::new(Commit { ts: 10, writes: WriteSet::default(), everything: true }));
        assert!(cache.get("read-the-commit", None).is_some(), "the same commit heard of again");
    }

    #[test]
    fn results_older_than_the_commit_log_are_not_admitted() {
        let cache = QueryCache::new(10);
        for ts in 1..=(RECENT_COMMITS as u64 + 5) {
            cache.apply(&commit(ts, 200));
        }
        cache.insert("old".into(), result(), reads(0, 10), 2);
        assert!(cache.get("old", None).is_none());
    }

    #[test]
    fn a_result_is_served_only_once_the_databases_latest_commit_is_applied() {
        let cache = QueryCache::new(10);
        cache.apply(&commit(10, 200));
        cache.insert("a".into(), result(), reads(0, 10), 10);
        assert!(cache.get("a", Some(10)).is_some());
        assert!(cache.get("a", Some(12)).is_none(), "another process committed at 12, not applied here yet");
        cache.apply(&commit(12, 201));
        assert!(cache.get("a", Some(12)).is_some(), "12 did not touch it");
        assert_eq!(cache.hits_and_misses(), (2, 1));
    }

    #[test]
    fn json_is_made_once_per_format() {
        let cached = CachedResult::new(Value::Int64(5));
        assert_eq!(&*cached.json(JsonFormat::Clean), "\"5\"");
        assert_eq!(&*cached.json(JsonFormat::Encoded), r#"{"$integer":"BQAAAAAAAAA="}"#);
        assert!(Arc::ptr_eq(&cached.json(JsonFormat::Clean), &cached.json(JsonFormat::Clean)));
    }
}
