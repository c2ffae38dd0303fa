//! Engine tests on a real SQLite file: read sets, write sets, group commit.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::database::Database;
use super::error::EngineError;
use super::id::DocumentId;
use super::keys::IndexRange;
use super::schema::{Schema, TableDef, v};
use super::storage::sqlite::{Durability, SqliteStorage};
use super::storage::{Order, StorageError};
use super::transaction::All;
use super::value::{Object, Value};
use tempfile::TempDir;

fn schema() -> Schema {
    Schema::new(vec![
        TableDef::new(
            "items",
            10_001,
            vec![("group", v::string()), ("rank", v::number()), ("note", v::optional(v::string()))],
        )
        .index("by_group", &["group", "rank"]),
    ])
    .unwrap()
}

fn open(dir: &TempDir) -> Arc<Database> {
    open_with_committer(dir).0
}

fn open_with_committer(dir: &TempDir) -> (Arc<Database>, super::database::CommitterHandle) {
    let schema = Arc::new(schema());
    let storage = SqliteStorage::open(dir.path(), &schema, Durability::Normal).unwrap();
    Database::start(schema, Arc::new(storage), 100).unwrap()
}

fn item(group: &str, rank: f64) -> Object {
    Object::from([("group".to_owned(), Value::from(group)), ("rank".to_owned(), Value::from(rank))])
}

async fn insert(db: &Database, group: &str, rank: f64) -> DocumentId {
    let fields = item(group, rank);
    db.mutate(move |tx| tx.insert("items", fields)).await.map(|o| o.value).unwrap()
}

fn ranks(db: &Database, range: IndexRange, order: Order, limit: usize) -> Vec<f64> {
    db.query_blocking(move |tx| {
        let docs = tx.query("items", "by_group", range, order)?.take(limit, All)?;
        Ok::<_, EngineError>(docs.iter().map(|d| d.fields["rank"].as_f64().unwrap()).collect())
    })
    .unwrap()
    .value
}

#[tokio::test]
async fn index_ranges_return_ordered_limited_results() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for rank in [3.0, 1.0, 2.0, 5.0, 4.0] {
        insert(&db, "a", rank).await;
    }
    insert(&db, "b", 0.0).await;
    assert_eq!(ranks(&db, IndexRange::default().eq("a"), Order::Asc, 10), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(ranks(&db, IndexRange::default().eq("a"), Order::Desc, 2), vec![5.0, 4.0]);
    assert_eq!(ranks(&db, IndexRange::default().eq("a").gt(2.0).lte(4.0), Order::Asc, 10), vec![3.0, 4.0]);
    assert_eq!(ranks(&db, IndexRange::default().eq("c"), Order::Asc, 10), Vec::<f64>::new());
}

/// Every index ends with `_creationTime`: after equal values on all of an index's fields (or on
/// none, for `by_creation_time`), a range bounds the creation time; one field more is refused.
#[tokio::test]
async fn a_range_after_the_last_field_bounds_the_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for rank in [1.0, 2.0, 3.0, 4.0] {
        insert(&db, "a", 1.0).await;
        insert(&db, "b", rank).await;
    }
    let created = |index: &'static str, range: IndexRange| {
        db.query_blocking(move |tx| {
            let docs = tx.query("items", index, range, Order::Asc)?.take(100, All)?;
            Ok::<_, EngineError>(docs.iter().map(|d| (d.creation_time, d.fields["group"].clone())).collect::<Vec<_>>())
        })
        .unwrap()
        .value
    };
    let all = created("by_creation_time", IndexRange::default());
    assert_eq!(all.len(), 8);
    let (third, fifth) = (all[2].0, all[4].0);
    let window = created("by_creation_time", IndexRange::default().gte(third).lt(fifth));
    assert_eq!(window.iter().map(|d| d.0).collect::<Vec<_>>(), [all[2].0, all[3].0]);
    // In group "a" with rank 1 (both fields equal), the creation times after the third document.
    let later = created("by_group", IndexRange::default().eq("a").eq(1.0).gt(third));
    let expected: Vec<f64> = all.iter().filter(|d| d.1 == Value::from("a") && d.0 > third).map(|d| d.0).collect();
    assert_eq!(later.iter().map(|d| d.0).collect::<Vec<_>>(), expected);
    assert_eq!(expected.len(), 2);
    let too_many = db.query_blocking(move |tx| {
        tx.query("items", "by_group", IndexRange::default().eq("a").eq(1.0).eq(third), Order::Asc).map(|_| ())
    });
    assert!(matches!(too_many, Err(EngineError::Schema(_))), "equal values past the fields are refused");
}

#[tokio::test]
async fn a_limited_read_records_only_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for rank in 1..=5 {
        insert(&db, "a", rank as f64).await;
    }
    let reads = db
        .query_blocking(|tx| {
            tx.query("items", "by_group", IndexRange::default().eq("a"), Order::Desc)?.take(2, All)?;
            Ok::<_, EngineError>(())
        })
        .unwrap()
        .reads;
    let mut commits = db.subscribe_commits();
    // Below the two newest: outside the read interval.
    insert(&db, "a", 0.5).await;
    let below = commits.recv().await.unwrap();
    assert!(!reads.overlaps(&below.writes), "a write below the limit does not touch the read set");
    // Above them: inside it.
    insert(&db, "a", 9.0).await;
    let above = commits.recv().await.unwrap();
    assert!(reads.overlaps(&above.writes));
    // Another group: never.
    insert(&db, "b", 9.0).await;
    assert!(!reads.overlaps(&commits.recv().await.unwrap().writes));
}

#[tokio::test]
async fn a_get_is_a_point_read_and_a_patch_writes_old_and_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let first = insert(&db, "a", 1.0).await;
    let second = insert(&db, "a", 2.0).await;
    let reads = db.query_blocking(move |tx| tx.get("items", first).map(|_| ())).unwrap().reads;
    let group_a = db
        .query_blocking(|tx| {
            tx.query("items", "by_group", IndexRange::default().eq("a"), Order::Asc)?.take(10, All)?;
            Ok::<_, EngineError>(())
        })
        .unwrap()
        .reads;
    let mut commits = db.subscribe_commits();
    db.mutate(move |tx| tx.patch("items", second, [("group".to_owned(), Some(Value::from("z")))])).await.unwrap();
    let commit = commits.recv().await.unwrap();
    assert!(!reads.overlaps(&commit.writes), "a write to another document");
    assert!(group_a.overlaps(&commit.writes), "moving a document out of a range touches it");
    db.mutate(move |tx| tx.patch("items", first, [("note".to_owned(), Some(Value::from("x")))])).await.unwrap();
    assert!(reads.overlaps(&commits.recv().await.unwrap().writes));
}

#[tokio::test]
async fn group_commit_keeps_each_mutation_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    // Many concurrent mutations; every third writes once and then fails.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.mutate(move |tx| {
                tx.insert("items", item("g", i as f64))?;
                if i % 3 == 0 {
                    // A second, invalid write fails the whole mutation.
                    tx.insert("items", Object::from([("group".to_owned(), Value::from(1.0))]))?;
                }
                Ok::<_, EngineError>(i)
            })
            .await
        }));
    }
    let mut ok = Vec::new();
    let mut timestamps = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => {
                ok.push(outcome.value);
                timestamps.push(outcome.ts);
            }
            Err(EngineError::Validation(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok.len(), 200);
    assert!(ok.iter().all(|i| i % 3 != 0));
    let stored = ranks(&db, IndexRange::default().eq("g"), Order::Asc, 1000);
    let mut expected: Vec<f64> = ok.iter().map(|&i| i as f64).collect();
    expected.sort_by(f64::total_cmp);
    assert_eq!(stored, expected, "exactly the successful mutations' writes are stored");
    timestamps.sort();
    timestamps.dedup();
    assert_eq!(timestamps.len(), 200, "commit timestamps are unique");
    let groups = db.stats().groups.load(std::sync::atomic::Ordering::Relaxed);
    assert!(groups < 300, "mutations shared commits ({groups} groups for 300)");
}

/// What PostgreSQL would refuse at the group's flush (an index key past its B-tree's limit, a NUL
/// in a text column) is refused when the mutation writes it, on every storage: the mutation fails
/// alone with a clear error and the others of its group commit.
#[tokio::test]
async fn what_the_flush_would_refuse_fails_the_mutation_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let long = "x".repeat(3_000);
    let mut pending = Vec::new();
    for case in 0..4 {
        let long = long.clone();
        pending.push(
            db.enqueue(move |tx| {
                match case {
                    1 => tx.insert("items", item(&long, 1.0))?,
                    2 => {
                        let key = crate::storage::MutationKey { client: "a\0b".into(), request: 1 };
                        tx.record_outcome(&key, &Value::Null)?;
                        tx.insert("items", item("g", 2.0))?
                    }
                    _ => tx.insert("items", item("g", case as f64))?,
                };
                Ok::<_, EngineError>(case)
            })
            .await
            .unwrap(),
        );
    }
    let mut answers = Vec::new();
    for pending in pending {
        answers.push(pending.outcome().await.map(|o| o.value));
    }
    assert!(matches!(&answers[0], Ok(0)) && matches!(&answers[3], Ok(3)), "{answers:?}");
    match &answers[1] {
        Err(EngineError::LimitExceeded(message)) => assert!(message.contains("items.by_group"), "{message}"),
        other => panic!("a 3,000-byte key: {other:?}"),
    }
    assert!(matches!(&answers[2], Err(EngineError::Validation(m)) if m.contains("NUL")), "{answers:?}");
    assert_eq!(ranks(&db, IndexRange::default().eq("g"), Order::Asc, 10), [0.0, 3.0]);
}

#[tokio::test]
async fn writes_are_validated_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (db, committer) = open_with_committer(&dir);
        let bad = db.mutate(|tx| tx.insert("items", Object::from([("group".to_owned(), Value::from("a"))]))).await;
        assert!(matches!(bad, Err(EngineError::Validation(m)) if m.contains("`rank`")));
        let big = Value::from("x".repeat(1 << 20));
        let mut fields = item("a", 1.0);
        fields.insert("note".into(), big);
        let too_big = db.mutate(move |tx| tx.insert("items", fields));
        assert!(matches!(too_big.await, Err(EngineError::LimitExceeded(_))));
        let id = insert(&db, "a", 7.0).await;
        // The data directory is this process's until its storage is gone.
        let schema = schema();
        let second = SqliteStorage::open(dir.path(), &schema, Durability::Normal).map(drop);
        assert!(
            second.is_err_and(|e| matches!(&e, StorageError::Conflict(m) if m.contains("another Jangar server"))),
            "one writer per data directory"
        );
        drop(db);
        committer.join();
        id
    };
    let db = open(&dir);
    let doc = db.query_blocking(move |tx| tx.get("items", id)).unwrap().value.unwrap();
    assert_eq!(doc.fields["rank"], Value::from(7.0));
    assert!(db.latest_ts().unwrap() > 0);
}

#[tokio::test]
async fn pagination_continues_where_it_stopped_while_documents_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for rank in 1..=5 {
        insert(&db, "a", rank as f64).await;
    }
    let page = |cursor: Option<String>| {
        db.query_blocking(move |tx| {
            let page = tx.query("items", "by_group", IndexRange::default().eq("a"), Order::Asc)?.paginate(
                2,
                cursor.as_deref(),
                None,
                All,
            )?;
            let ranks: Vec<f64> = page.page.iter().map(|d| d.fields["rank"].as_f64().unwrap()).collect();
            Ok::<_, EngineError>((ranks, page.is_done, page.continue_cursor))
        })
        .unwrap()
        .value
    };
    let (first, done, cursor) = page(None);
    assert_eq!((first, done), (vec![1.0, 2.0], false));
    insert(&db, "a", 0.5).await; // before the cursor: not repeated
    insert(&db, "a", 2.5).await; // after it: seen
    let (second, done, cursor) = page(Some(cursor));
    assert_eq!((second, done), (vec![2.5, 3.0], false));
    let (third, done, cursor) = page(Some(cursor));
    assert_eq!((third, done), (vec![4.0, 5.0], true));
    let (fourth, done, _) = page(Some(cursor));
    assert_eq!((fourth, done), (vec![], true));
    let bad = db.query_blocking(|tx| {
        tx.query("items", "by_group", IndexRange::default(), Order::Asc)?.paginate(2, Some("!!"), None, All).map(|_| ())
    });
    assert!(matches!(bad, Err(EngineError::InvalidCursor(_))));
}

#[tokio::test]
async fn a_panicking_mutation_fails_alone_and_the_committer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let panicked = db
        .mutate(|tx| {
            tx.insert("items", item("p", 1.0))?;
            if tx.ts() > 0 {
                panic!("a bug in a mutation");
            }
            Ok::<_, EngineError>(())
        })
        .await;
    assert!(matches!(panicked, Err(EngineError::Storage(_))), "{panicked:?}");
    insert(&db, "ok", 2.0).await;
    assert_eq!(
        ranks(&db, IndexRange::default().eq("p"), Order::Asc, 10),
        Vec::<f64>::new(),
        "its write was rolled back"
    );
    assert_eq!(ranks(&db, IndexRange::default().eq("ok"), Order::Asc, 10), vec![2.0]);
}

#[tokio::test]
async fn a_page_pinned_by_its_end_cursor_keeps_its_documents_as_others_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for rank in 1..=4 {
        insert(&db, "a", rank as f64).await;
    }
    let page = |end: Option<String>| {
        db.query_blocking(move |tx| {
            let range = IndexRange::default().eq("a");
            let page = tx.query("items", "by_group", range, Order::Asc)?.paginate(2, None, end.as_deref(), All)?;
            let ranks: Vec<f64> = page.page.iter().map(|d| d.fields["rank"].as_f64().unwrap()).collect();
            Ok::<_, EngineError>((ranks, page.is_done, page.continue_cursor, tx.read_set().clone()))
        })
        .unwrap()
        .value
    };
    let (first, _, end, _) = page(None);
    assert_eq!(first, vec![1.0, 2.0]);
    insert(&db, "a", 1.5).await;
    // Without the end cursor the page would now stop at 1.5 and lose 2.0 to no page at all.
    let (pinned, done, cursor, reads) = page(Some(end.clone()));
    assert_eq!((pinned, done, cursor), (vec![1.0, 1.5, 2.0], false, end.clone()));
    let mut commits = db.subscribe_commits();
    insert(&db, "a", 9.0).await;
    assert!(!reads.overlaps(&commits.recv().await.unwrap().writes), "far past the page and its isDone probe");
    insert(&db, "a", 2.5).await;
    assert!(reads.overlaps(&commits.recv().await.unwrap().writes), "between the end and the next document");
    insert(&db, "a", 0.5).await;
    assert!(reads.overlaps(&commits.recv().await.unwrap().writes), "a document inside the page");
}

#[tokio::test]
async fn cursors_reveal_nothing_outside_what_the_query_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    // Only rank 1 of group "a" is visible to this filter.
    let page = |cursor: Option<String>, end: Option<String>, order: Order| {
        db.query_blocking(move |tx| {
            let query = tx.query("items", "by_group", IndexRange::default().eq("a"), order)?;
            let visible = |d: &crate::document::Document| d.fields["rank"] == Value::from(1.0);
            let page = query.paginate(5, cursor.as_deref(), end.as_deref(), visible)?;
            Ok::<_, EngineError>((page.page.len(), page.is_done, page.continue_cursor))
        })
        .unwrap()
        .value
    };
    insert(&db, "a", 1.0).await;
    let alone = [Order::Asc, Order::Desc].map(|order| page(None, None, order));
    for (group, rank) in [("a", 2.0), ("a", 3.0), ("0", 1.0), ("b", 1.0)] {
        insert(&db, group, rank).await;
    }
    for (order, alone) in [Order::Asc, Order::Desc].into_iter().zip(alone) {
        // A done page ends at the end of the range, not at the key of a document the filter dropped:
        // the same cursor as before those documents existed.
        assert_eq!(page(None, None, order), alone, "{order:?}");
    }
    // End cursors outside the range ("0" < "a" < "b") probe nothing beyond it: with a filter that
    // keeps no document of the range, every page is done, whatever lies outside. (Cursors are
    // signed per index, so a client can only bring one from another range of the same index.)
    let cursor_in = |group: &'static str| {
        db.query_blocking(move |tx| {
            let query = tx.query("items", "by_group", IndexRange::default().eq(group), Order::Asc)?;
            Ok::<_, EngineError>(query.paginate(1, None, None, All)?.continue_cursor)
        })
        .unwrap()
        .value
    };
    let done_with_end = |end: String, order: Order| {
        db.query_blocking(move |tx| {
            let query = tx.query("items", "by_group", IndexRange::default().eq("a"), order)?;
            let outside = |d: &crate::document::Document| d.fields["group"] != Value::from("a");
            Ok::<_, EngineError>(query.paginate(5, None, Some(&end), outside)?.is_done)
        })
        .unwrap()
        .value
    };
    for order in [Order::Asc, Order::Desc] {
        for group in ["0", "b"] {
            assert!(done_with_end(cursor_in(group), order), "isDone looks only inside the range: {order:?} {group}");
        }
    }
    // A cursor not signed by this deployment for this index is refused.
    let unsigned = crate::base64::encode(&[0x00]);
    let refused = db.query_blocking(move |tx| {
        let query = tx.query("items", "by_group", IndexRange::default().eq("a"), Order::Asc)?;
        query.paginate(5, Some(&unsigned), None, All).map(|_| ())
    });
    assert!(matches!(refused, Err(EngineError::InvalidCursor(_))), "{refused:?}");
}

/// Issue 16: a document one replica keeps reading and another writes (a session both append to)
/// is read again, with the other documents the other replica wrote, when the next group catches
/// up under the commit lock: the group then finds it in its cache at its new version instead of
/// missing on it (one round trip each on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_another_replica_wrote_is_read_again_before_the_next_group() {
    let schema = Arc::new(schema());
    let storage = Arc::new(super::storage::memory::MemoryStorage::with_feed(&schema).unwrap());
    let (one, _) = Database::start(schema.clone(), storage.clone(), 0).unwrap();
    let (other, _) = Database::start(schema, storage, 0).unwrap();
    let id = insert(&one, "a", 1.0).await;
    let rank_seen_by = |db: &Arc<Database>| {
        let db = db.clone();
        async move {
            let counts = |db: &Database| {
                let stats = db.stats();
                (stats.document_cache_hits.load(Relaxed), stats.document_cache_misses.load(Relaxed))
            };
            let (hits, misses) = counts(&db);
            let rank = db
                .mutate(move |tx| Ok::<_, EngineError>(tx.get("items", id)?.unwrap().fields["rank"].as_f64().unwrap()))
                .await
                .unwrap()
                .value;
            let (hits_after, misses_after) = counts(&db);
            (rank, hits_after - hits, misses_after - misses)
        }
    };
    assert_eq!(rank_seen_by(&one).await, (1.0, 1, 0), "cached by its own insert");
    other.mutate(move |tx| tx.patch("items", id, [("rank".to_owned(), Some(Value::from(2.0)))])).await.unwrap();
    assert_eq!(rank_seen_by(&one).await, (2.0, 1, 0), "read again at the new version before the group");
}

/// Asks its store for batches, and tells each time it does (before the batch may wait for the
/// commit lock).
struct AnnouncingStorage {
    inner: Arc<super::storage::memory::MemoryStorage>,
    asked: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
}

impl super::storage::Storage for AnnouncingStorage {
    fn snapshot(&self) -> Result<Box<dyn super::storage::Snapshot + '_>, StorageError> {
        self.inner.snapshot()
    }

    fn begin_batch(&self) -> Result<Box<dyn super::storage::Batch + '_>, StorageError> {
        let _ = self.asked.lock().unwrap().send(());
        self.inner.begin_batch()
    }

    fn keep_secret(&self, name: &str, make: super::storage::Make<'_>) -> Result<Vec<u8>, StorageError> {
        self.inner.keep_secret(name, make)
    }
}

/// Issue 16: mutations queued while a group waits for the commit lock (another replica's group
/// holds it) join that group, rather than wait for it and then take the lock again as a group of
/// their own: each group pays the lock's round trips and an fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_queued_while_a_group_waits_for_the_lock_join_it() {
    use super::storage::Storage;
    let schema = Arc::new(schema());
    let inner = Arc::new(super::storage::memory::MemoryStorage::new(&schema).unwrap());
    let (asked, batch_asked) = std::sync::mpsc::channel();
    let storage = AnnouncingStorage { inner: inner.clone(), asked: std::sync::Mutex::new(asked) };
    let (db, _) = Database::start(schema, Arc::new(storage), 0).unwrap();
    let insert = |rank: f64| db.enqueue(move |tx| tx.insert("items", item("a", rank)));
    // As another replica's group would, this holds the lock until it is dropped.
    let other_group = inner.begin_batch().unwrap();
    let first = insert(1.0).await.unwrap();
    batch_asked.recv_timeout(std::time::Duration::from_secs(10)).expect("the committer asks for a batch");
    let later = [insert(2.0).await.unwrap(), insert(3.0).await.unwrap()];
    drop(other_group);
    first.outcome().await.unwrap();
    for pending in later {
        pending.outcome().await.unwrap();
    }
    let stats = db.stats();
    assert_eq!((stats.groups.load(Relaxed), stats.mutations.load(Relaxed)), (1, 3), "one group of three");
}
