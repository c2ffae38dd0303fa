//! Property test of the engine's index maintenance (issue 10): random groups of
//! mutations, each a few inserts, patches, replaces and deletes (of the same
//! documents, often, and some rolled back), committed through the group
//! committer with timestamps in the same millisecond. Afterwards every document
//! must be what an in-memory model says, with the creation time it was given,
//! every index must list exactly the model's documents in the order of the keys
//! computed from the model, and the integrity check must find nothing.
//!
//! Runs on the storage the suite runs on (`JANGAR_TEST_BACKEND=postgres`: a fresh
//! PostgreSQL database per case). `PROPTEST_CASES` sets the number of cases.

use std::sync::{Arc, Mutex};

use jangar_engine::database::Database;
use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::{Schema, TableDef, v};
use jangar_engine::storage::Order;
use jangar_engine::storage::Storage;
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
use jangar_engine::transaction::{All, Transaction};
use jangar_engine::value::{Object, Value};
use proptest::prelude::*;

const TABLE: &str = "items";
const INDEXES: [(&str, &[&str]); 3] =
    [("by_group", &["group", "rank"]), ("by_tag", &["tag"]), ("by_rank_and_tag", &["rank", "tag"])];

fn schema() -> Schema {
    let fields = vec![("group", v::string()), ("rank", v::number()), ("tag", v::optional(v::string()))];
    let table = INDEXES.iter().fold(TableDef::new(TABLE, 10_001, fields), |t, (name, fields)| t.index(name, fields));
    Schema::new(vec![table]).unwrap()
}

#[derive(Clone, Debug)]
struct Fields {
    group: &'static str,
    rank: f64,
    tag: Option<&'static str>,
}

impl Fields {
    fn object(&self) -> Object {
        let mut object = Object::from([("group".into(), Value::from(self.group)), ("rank".into(), self.rank.into())]);
        if let Some(tag) = self.tag {
            object.insert("tag".into(), Value::from(tag));
        }
        object
    }
}

/// A write; `target` picks one of the documents live when it runs (modulo their number).
#[derive(Clone, Debug)]
enum Op {
    Insert(Fields),
    /// Sets the rank and, when `Some`, sets (`Some(Some)`) or removes (`Some(None)`) the tag.
    Patch {
        target: usize,
        rank: f64,
        tag: Option<Option<&'static str>>,
    },
    Replace {
        target: usize,
        fields: Fields,
    },
    Delete {
        target: usize,
    },
}

#[derive(Clone, Debug)]
struct MutationPlan {
    ops: Vec<Op>,
    /// Fails after its writes, which must then vanish.
    fails: bool,
}

fn rank() -> impl Strategy<Value = f64> {
    // Few distinct values, so keys tie on fields and order by creation time; signed zeros, NaN
    // and fractions that decimal text cannot hold exactly.
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(0.1),
        Just(1.0 / 3.0),
        Just(1e-300),
        Just(f64::NAN),
        Just(f64::INFINITY),
        (-5i32..5).prop_map(f64::from),
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    (prop::sample::select(vec!["a", "b"]), rank(), prop::option::of(prop::sample::select(vec!["x", "y", "z"])))
        .prop_map(|(group, rank, tag)| Fields { group, rank, tag })
}

fn op() -> impl Strategy<Value = Op> {
    let tag = prop::option::of(prop::option::of(prop::sample::select(vec!["x", "y"])));
    prop_oneof![
        3 => fields().prop_map(Op::Insert),
        3 => (any::<usize>(), rank(), tag).prop_map(|(target, rank, tag)| Op::Patch { target, rank, tag }),
        1 => (any::<usize>(), fields()).prop_map(|(target, fields)| Op::Replace { target, fields }),
        1 => any::<usize>().prop_map(|target| Op::Delete { target }),
    ]
}

fn mutation() -> impl Strategy<Value = MutationPlan> {
    (prop::collection::vec(op(), 1..5), prop::bool::weighted(0.15)).prop_map(|(ops, fails)| MutationPlan { ops, fails })
}

fn groups() -> impl Strategy<Value = Vec<Vec<MutationPlan>>> {
    prop::collection::vec(prop::collection::vec(mutation(), 1..6), 1..8)
}

/// The documents there should be, in insertion order: id, creation time (as insert gave it), fields.
type Model = Vec<(DocumentId, f64, Object)>;

/// Runs one mutation's ops on a copy of the model; the copy replaces the model if it commits.
fn apply(tx: &mut Transaction<'_>, model: &Mutex<Model>, plan: &MutationPlan) -> Result<(), EngineError> {
    let mut live = model.lock().unwrap().clone();
    for op in &plan.ops {
        let pick = |target: usize| (!live.is_empty()).then(|| target % live.len());
        match op {
            Op::Insert(fields) => {
                let id = tx.insert(TABLE, fields.object())?;
                let created = tx.get(TABLE, id)?.expect("inserted").creation_time;
                live.push((id, created, fields.object()));
            }
            Op::Patch { target, rank, tag } => {
                let Some(at) = pick(*target) else { continue };
                let mut changes = vec![("rank".to_owned(), Some(Value::from(*rank)))];
                if let Some(tag) = tag {
                    changes.push(("tag".to_owned(), tag.map(Value::from)));
                }
                let object = &mut live[at].2;
                for (field, value) in &changes {
                    match value {
                        Some(value) => object.insert(field.clone(), value.clone()),
                        None => object.remove(field),
                    };
                }
                tx.patch(TABLE, live[at].0, changes)?;
            }
            Op::Replace { target, fields } => {
                let Some(at) = pick(*target) else { continue };
                tx.replace(TABLE, live[at].0, fields.object())?;
                live[at].2 = fields.object();
            }
            Op::Delete { target } => {
                let Some(at) = pick(*target) else { continue };
                tx.delete(TABLE, live[at].0)?;
                live.remove(at);
            }
        }
    }
    if plan.fails {
        return Err(EngineError::Validation("this mutation fails on purpose".into()));
    }
    *model.lock().unwrap() = live;
    Ok(())
}

fn storage(dir: &jangar_test_support::TempDir, schema: &Schema) -> Arc<dyn Storage> {
    if jangar_test_support::postgres::selected() {
        let server = jangar_test_support::postgres::TestPostgres::shared().expect("PostgreSQL's server binaries");
        Arc::new(PostgresStorage::open(&server.fresh_database(), schema).unwrap())
    } else {
        Arc::new(SqliteStorage::open(dir.path(), schema, Durability::Normal).unwrap())
    }
}

fn check_case(groups: Vec<Vec<MutationPlan>>) -> Result<(), TestCaseError> {
    let dir = jangar_test_support::temp_dir();
    let schema = Arc::new(schema());
    // PostgreSQL's client blocks on a runtime of its own, so storage is opened off the test's.
    let storage = std::thread::scope(|s| s.spawn(|| storage(&dir, &schema)).join().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (db, committer) = Database::start(schema.clone(), storage, 0).unwrap();
    let model = Arc::new(Mutex::new(Model::new()));
    runtime.block_on(async {
        for group in groups {
            // Sent together, so the committer takes them as one group (or a few).
            let calls = group.into_iter().map(|plan| {
                let (db, model) = (db.clone(), model.clone());
                async move {
                    let expect_failure = plan.fails;
                    let outcome = db.mutate(move |tx| apply(tx, &model, &plan)).await;
                    assert_eq!(outcome.is_err(), expect_failure, "{outcome:?}");
                }
            });
            futures_util::future::join_all(calls).await;
        }
    });
    let model = model.lock().unwrap().clone();
    let report = runtime.block_on(db.check_integrity()).unwrap();
    prop_assert!(report.is_clean(), "{:?}", report.problems);
    let expected_documents = model.len() as u64;
    prop_assert_eq!(report.documents, expected_documents);
    let reads = db
        .query_blocking(move |tx| {
            let mut stored = Vec::new();
            for (id, _, _) in &model {
                stored.push(tx.get(TABLE, *id)?);
            }
            let mut listed = Vec::new();
            for (name, _) in INDEXES {
                let documents = tx.query(TABLE, name, IndexRange::default(), Order::Asc)?.take(100_000, All)?;
                listed.push(documents.into_iter().map(|d| d.id).collect::<Vec<_>>());
            }
            Ok::<_, EngineError>((model, stored, listed))
        })
        .unwrap()
        .value;
    let (model, stored, listed) = reads;
    for ((id, created, fields), stored) in model.iter().zip(&stored) {
        let stored = stored.as_ref().ok_or_else(|| TestCaseError::fail(format!("{id} is gone")))?;
        prop_assert_eq!(stored.creation_time.to_bits(), created.to_bits(), "{} was created at {}", id, created);
        prop_assert_eq!(Value::Object(stored.fields.clone()).to_json(jangar_engine::value::JsonFormat::Encoded), {
            Value::Object(fields.clone()).to_json(jangar_engine::value::JsonFormat::Encoded)
        });
    }
    for ((name, index_fields), listed) in INDEXES.iter().zip(listed) {
        let mut keyed: Vec<(Vec<u8>, DocumentId)> = model
            .iter()
            .map(|(id, created, fields)| {
                let document = Document { id: *id, creation_time: *created, fields: fields.clone() };
                (document.index_key(index_fields), *id)
            })
            .collect();
        keyed.sort();
        let expected: Vec<DocumentId> = keyed.into_iter().map(|(_, id)| id).collect();
        prop_assert_eq!(listed, expected, "index {}", name);
    }
    drop(db);
    committer.join();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn indexes_match_their_documents_after_any_writes(groups in groups()) {
        check_case(groups)?;
    }
}
