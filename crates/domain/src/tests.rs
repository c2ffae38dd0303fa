//! Domain rules that need no server: state machines, paths, the catalogue.

use super::common::check_transition;
use super::error::FunctionError;
use super::registry::{Kind, canonical_path};
use super::status::{RunStatus, Status, StepStatus, Word, WorkOrderStatus};

#[test]
fn work_order_transitions_follow_the_state_machine() {
    let allowed =
        [("draft", "submitted"), ("submitted", "accepted"), ("accepted", "running"), ("running", "succeeded")];
    for status in WorkOrderStatus::ALL {
        for next in WorkOrderStatus::ALL {
            let (from, to) = (&status.as_str(), &next.as_str());
            let terminal = ["succeeded", "failed", "canceled"].contains(from);
            let expected =
                from == to || allowed.contains(&(*from, *to)) || (!terminal && (*to == "canceled" || *to == "failed"));
            let outcome = check_transition(*status, *next);
            match outcome {
                Ok(changed) => {
                    assert!(expected, "{from} -> {to} should be refused");
                    assert_eq!(changed, from != to, "{from} -> {to}");
                }
                Err(FunctionError::App(e)) => {
                    assert!(!expected, "{from} -> {to} should be allowed");
                    assert_eq!(e.code, "InvalidTransition");
                    assert_eq!(e.data().as_object().unwrap()["from"], (*from).into());
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
}

#[test]
fn paths_follow_convex_rules() {
    assert_eq!(canonical_path("chatSessions:list"), "chatSessions:list");
    assert_eq!(canonical_path("chatSessions.js:list"), "chatSessions:list");
    assert_eq!(canonical_path("messages"), "messages:default");
}

#[test]
fn the_catalogue_resolves_every_issue_2_function() {
    let registry = super::registry();
    for (path, kind) in [
        ("chatSessions:create", Kind::Mutation),
        ("chatSessions:list", Kind::Query),
        ("chatSessions:get", Kind::Query),
        ("chatSessions:updateLastMessage", Kind::Mutation),
        ("chatSessions:rename", Kind::Mutation),
        ("chatSessions:remove", Kind::Mutation),
        ("chatSessions:restore", Kind::Mutation),
        ("chatMessages:append", Kind::Mutation),
        ("chatMessages:listBySession", Kind::Query),
        ("chatMessages:remove", Kind::Mutation),
        ("chatMessages:restore", Kind::Mutation),
        ("workOrders:create", Kind::Mutation),
        ("workOrders:get", Kind::Query),
        ("workOrders:listBySession", Kind::Query),
        ("workOrders:updateStatus", Kind::Mutation),
        ("workOrders:updateResult", Kind::Mutation),
        ("workOrders:remove", Kind::Mutation),
        ("workOrders:restore", Kind::Mutation),
    ] {
        assert_eq!(registry.get(path).map(|f| f.kind), Some(kind), "{path}");
    }
}

#[test]
fn run_and_step_transitions() {
    let run =
        |from: &str, to: &str| RunStatus::may_move(RunStatus::parse(from).unwrap(), RunStatus::parse(to).unwrap());
    let step =
        |from: &str, to: &str| StepStatus::may_move(StepStatus::parse(from).unwrap(), StepStatus::parse(to).unwrap());
    for (from, to, ok) in [
        ("queued", "running", true),
        ("queued", "canceled", true),
        ("queued", "succeeded", false),
        ("running", "succeeded", true),
        ("running", "queued", false),
        ("succeeded", "failed", false),
        ("canceled", "running", false),
    ] {
        assert_eq!(run(from, to), ok, "run {from} -> {to}");
    }
    for (from, to, ok) in [
        ("pending", "running", true),
        ("pending", "succeeded", true),
        ("running", "failed", true),
        ("failed", "running", true),
        ("succeeded", "running", false),
        ("running", "pending", false),
        ("failed", "succeeded", false),
    ] {
        assert_eq!(step(from, to), ok, "step {from} -> {to}");
    }
}

#[test]
fn every_function_of_the_spec_is_registered() {
    // The spec sits beside the repository (shared/spec), as in CI; a checkout without it has nothing to compare.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/functions.md");
    let Ok(spec) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is not here", path.display());
        return;
    };
    let registry = super::registry();
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in spec.lines().filter(|l| l.starts_with("| ") && l.contains(':')) {
        let cell = line.split('|').nth(1).unwrap_or_default().trim();
        for path in cell.split(" / ").map(str::trim).filter(|p| p.contains(':') && !p.contains(' ')) {
            checked += 1;
            if registry.get(path).is_none() {
                missing.push(path.to_owned());
            }
        }
    }
    assert!(checked >= 60, "only {checked} function paths found in the spec: the parser is off");
    assert!(missing.is_empty(), "functions in shared/spec/functions.md without an implementation: {missing:?}");
}

#[test]
fn the_table_names_are_the_schemas_tables() {
    let schema = super::schema::schema();
    let declared: Vec<&str> = schema.tables().iter().filter(|t| !t.is_system()).map(|t| t.name).collect();
    assert_eq!(declared, super::schema::tables::ALL);
    let numbers: Vec<u32> = schema.tables().iter().filter(|t| !t.is_system()).map(|t| t.number).collect();
    assert_eq!(numbers, (10_001..=10_018).collect::<Vec<u32>>(), "ALL is in the order of the table numbers");
}

/// Checked and unchecked reads of a `Ctx`, on a real database: Alice's work
/// order, read by Bob, by Alice and by an admin.
#[tokio::test]
async fn checked_reads_hide_what_the_caller_may_not_see_and_unchecked_reads_do_not() {
    use std::sync::Arc;

    use jangar_engine::database::Database;
    use jangar_engine::error::EngineError;
    use jangar_engine::keys::IndexRange;
    use jangar_engine::storage::Order;
    use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
    use jangar_engine::transaction::All;

    use super::access::{Caller, Ctx, User, Viewer};
    use super::common::object;
    use super::schema::tables;

    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(super::schema::schema());
    let storage = SqliteStorage::open(dir.path(), &schema, Durability::Normal).unwrap();
    let (db, _committer) = Database::start(schema, Arc::new(storage), 100).unwrap();
    let (session, order) = db
        .mutate(|tx| {
            let now = tx.now_ms();
            let session = tx.insert(
                tables::CHAT_SESSIONS,
                object([
                    ("userId", "alice".into()),
                    ("title", "t".into()),
                    ("lastMessageAt", now.into()),
                    ("lastActiveAt", now.into()),
                    ("createdAt", now.into()),
                    ("updatedAt", now.into()),
                ]),
            )?;
            let order = tx.insert(
                tables::WORK_ORDERS,
                object([
                    ("sessionId", session.encode().into()),
                    ("status", WorkOrderStatus::Draft.into()),
                    ("createdAt", now.into()),
                    ("updatedAt", now.into()),
                ]),
            )?;
            Ok::<_, EngineError>((session, order))
        })
        .await
        .unwrap()
        .value;

    let user = |name: &str| Caller {
        viewer: Viewer::User(User { token_identifier: format!("https://issuer|{name}"), subject: Some(name.into()) }),
        admin: false,
    };
    // (owned by id, listed with the owner filter, listed unchecked, may list under the session)
    let reads = |caller: Caller| {
        db.query_blocking(move |tx| {
            let mut ctx = Ctx::new(tx, &caller);
            let owned = ctx.get_owned(tables::WORK_ORDERS, order)?.is_some();
            let range = || IndexRange::default().eq(session.encode());
            let keep = ctx.owned(tables::WORK_ORDERS, |_| true);
            let filtered =
                ctx.query_unchecked(tables::WORK_ORDERS, "by_session", range(), Order::Asc)?.take(10, keep)?;
            let all = ctx.query_unchecked(tables::WORK_ORDERS, "by_session", range(), Order::Asc)?.take(10, All)?;
            let listable = ctx.may_list_under(tables::CHAT_SESSIONS, session)?;
            Ok::<_, EngineError>((owned, filtered.len(), all.len(), listable))
        })
        .unwrap()
        .value
    };
    assert_eq!(reads(user("bob")), (false, 0, 1, false), "Bob");
    assert_eq!(reads(user("alice")), (true, 1, 1, true), "Alice");
    assert_eq!(reads(Caller::ADMIN), (true, 1, 1, true), "an admin");
}

/// The dashboard's counters against a model of every run's status, through random status
/// changes (refused ones included, which must change nothing).
#[tokio::test]
async fn the_run_counters_equal_the_runs_they_count() {
    use jangar_engine::value::Value;

    use super::access::Caller;
    use super::registry::{check_args, run_mutation, run_query};

    let (_dir, db, schema, _committer) = test_database();
    let registry = super::registry();
    let call = |path: &'static str, args: serde_json::Value| {
        let (db, schema, function) = (db.clone(), schema.clone(), registry.get(path).unwrap());
        async move {
            let args = check_args(&function, Value::from_json(&args).unwrap(), &schema)?;
            match function.kind {
                Kind::Query => Ok(run_query(&db, function, Caller::ADMIN, args).await?.result.value.clone()),
                _ => Ok(run_mutation(&db, function, Caller::ADMIN, args).await?.value),
            }
        }
    };
    let id = |value: Value| serde_json::Value::from(value.as_str().unwrap());

    let session = id(call("chatSessions:create", serde_json::json!({"userId": "u", "title": "t"})).await.unwrap());
    let mut runs = Vec::new();
    for n in 0..6 {
        let order = id(call("workOrders:create", serde_json::json!({"sessionId": session})).await.unwrap());
        let status = if n % 2 == 0 { "queued" } else { "running" };
        let args = serde_json::json!({"workOrderId": order, "temporalWorkflowId": format!("wf-{n}"), "status": status});
        runs.push((id(call("runs:start", args).await.unwrap()), RunStatus::parse(status).unwrap()));
    }
    // A fixed-seed generator: the same sequence every run, and a failure names its step.
    let mut seed: u64 = 0x6a61_6e67_6172;
    let mut next = |bound: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % bound
    };
    for step in 0..120 {
        let (run, status) = &mut runs[next(6)];
        let to = RunStatus::ALL[next(RunStatus::ALL.len())];
        let changed = call("runs:updateStatus", serde_json::json!({"runId": run, "status": to.as_str()})).await;
        match changed {
            Ok(_) => *status = to,
            Err(FunctionError::App(e)) => assert_eq!(e.code, "InvalidTransition", "step {step}: {e:?}"),
            Err(other) => panic!("step {step}: {other}"),
        }
        let dashboard = call("runs:getDashboard", serde_json::json!({})).await.unwrap();
        let counts = dashboard.as_object().unwrap()["counts"].as_object().unwrap().clone();
        for status in RunStatus::ALL {
            let expected = runs.iter().filter(|(_, s)| s == status).count() as f64;
            assert_eq!(counts[status.as_str()].as_f64(), Some(expected), "step {step}: {status}");
        }
    }
}

/// The Temporal outbox's rules without a Temporal: a claim is exclusive, a stale claimant's
/// no-answer changes nothing, a start that never left is dropped on cancel, and a delivered
/// cancel queues the termination after the grace period.
#[tokio::test]
async fn the_outbox_claims_each_request_once_and_drops_a_start_that_never_left() {
    use jangar_engine::value::Value;

    use super::access::Caller;
    use super::registry::{check_args, run_mutation};
    use super::temporal::{self, Answer, BridgeSettings};

    let (_dir, db, schema, _committer) = test_database();
    let bridge = BridgeSettings { task_queue: "q".into(), cancel_grace_ms: 60_000.0 };
    let registry = super::registry_serving("http://test".into(), Default::default(), Some(bridge.clone()));
    let call = |path: &'static str, args: serde_json::Value| {
        let (db, schema, function) = (db.clone(), schema.clone(), registry.get(path).unwrap());
        async move {
            let args = check_args(&function, Value::from_json(&args).unwrap(), &schema).unwrap();
            run_mutation(&db, function, Caller::ADMIN, args).await.unwrap().value
        }
    };
    let claim = |who: &'static str| {
        let db = db.clone();
        async move { db.mutate(move |tx| temporal::claim_due(tx, who, 10, 30_000.0)).await.unwrap().value }
    };
    let record = |claimed: temporal::Claimed, answer: Answer| {
        let (db, bridge) = (db.clone(), bridge.clone());
        async move { db.mutate(move |tx| temporal::record_answer(tx, &bridge, &claimed, &answer)).await.unwrap() }
    };
    let state = |order: serde_json::Value| {
        let db = db.clone();
        async move {
            let id = jangar_engine::id::DocumentId::decode(order.as_str().unwrap()).unwrap();
            let doc = db.query(move |tx| tx.get(super::schema::tables::WORK_ORDERS, id)).await.unwrap().value.unwrap();
            let state = doc.fields["temporalState"].as_str().unwrap().to_owned();
            (doc.fields["status"].as_str().unwrap().to_owned(), state)
        }
    };
    let id = |value: Value| serde_json::Value::from(value.as_str().unwrap());
    let session = id(call("chatSessions:create", serde_json::json!({"userId": "u", "title": "t"})).await);
    let order = || serde_json::json!({"sessionId": session, "workflowType": "W"});
    let (first, second) = (id(call("workOrders:create", order()).await), id(call("workOrders:create", order()).await));

    let claimed = claim("a").await;
    assert_eq!(claimed.len(), 2);
    assert!(claim("b").await.is_empty(), "claimed requests are not due for anyone else");
    let (to_first, to_second) = match claimed[0].work_order.encode() == first.as_str().unwrap() {
        true => (claimed[0].clone(), claimed[1].clone()),
        false => (claimed[1].clone(), claimed[0].clone()),
    };
    let refused = Answer::Retry { error: "connection refused".into(), arrived: false, retry_in_ms: 0.0 };
    record(to_first, refused.clone()).await;
    assert_eq!(state(first.clone()).await, ("submitted".into(), "retrying".into()));
    call("workOrders:updateStatus", serde_json::json!({"workOrderId": first, "status": "canceled"})).await;
    assert_eq!(state(first.clone()).await, ("canceled".into(), "skipped".into()), "it never left: nothing to cancel");

    let mut stale = to_second.clone();
    stale.claimant = "b".into();
    record(stale, refused).await;
    assert!(claim("c").await.is_empty(), "a no-answer from a claimant that holds no claim changes nothing");
    record(to_second, Answer::Started { run_id: "r-1".into() }).await;
    assert_eq!(state(second.clone()).await, ("accepted".into(), "started".into()));
    call("workOrders:updateStatus", serde_json::json!({"workOrderId": second, "status": "canceled"})).await;
    let cancel = claim("a").await;
    assert_eq!(cancel.len(), 1, "only the second order has something to stop");
    assert_eq!(cancel[0].kind, temporal::RequestKind::Cancel);
    record(cancel[0].clone(), Answer::Done).await;
    assert_eq!(state(second).await, ("canceled".into(), "cancel_sent".into()));
    let terminate_at = db.query(temporal::next_due).await.unwrap().value.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
    assert!(terminate_at > now + 50_000.0, "the termination waits the grace period");
}

/// `npx convex function-spec` answers every validator as a Convex value inside its list
/// (`[{args, returns}]`): each must fit the value nesting limit (a nested object in a table
/// once took `runs:getTimeline`'s result past it).
#[test]
fn every_validator_fits_the_function_spec() {
    let schema = super::schema::schema();
    for function in super::registry().functions() {
        for validator in [&function.args, &function.returns] {
            let entry = serde_json::json!([{"returns": validator.to_convex_json(&schema)}]);
            let fits = jangar_engine::value::Value::from_json(&entry);
            assert!(fits.is_ok(), "{}: {:?}", function.path, fits.err());
        }
    }
}

/// A fresh SQLite database with Jangar's schema, for tests that run functions or mutations
/// without a server (the directory and the committer live as long as the returned values).
fn test_database() -> (
    tempfile::TempDir,
    std::sync::Arc<jangar_engine::database::Database>,
    std::sync::Arc<jangar_engine::schema::Schema>,
    jangar_engine::database::CommitterHandle,
) {
    use jangar_engine::storage::sqlite::{Durability, SqliteStorage};
    let dir = tempfile::tempdir().unwrap();
    let schema = std::sync::Arc::new(super::schema::schema());
    let storage = SqliteStorage::open(dir.path(), &schema, Durability::Normal).unwrap();
    let (db, committer) =
        jangar_engine::database::Database::start(schema.clone(), std::sync::Arc::new(storage), 0).unwrap();
    (dir, db, schema, committer)
}

/// A refresh token used again within the reuse window (another tab refreshing at once) gets the
/// session's current token; used again past it, it is taken for a stolen token's and ends the
/// session (its current token stops working too).
#[tokio::test]
async fn a_refresh_token_reused_past_its_window_ends_the_session() {
    use std::sync::Arc;

    use jangar_engine::database::Database;
    use jangar_engine::storage::memory::MemoryStorage;

    use super::access::{Caller, Ctx};
    use super::auth::{self, SignedIn};
    use super::schema::tables;

    let schema = Arc::new(super::schema::schema());
    let (db, _committer) = Database::start(schema.clone(), Arc::new(MemoryStorage::new(&schema).unwrap()), 0).unwrap();
    type Change = Box<dyn FnOnce(&mut Ctx<'_, '_>) -> Result<Option<SignedIn>, FunctionError> + Send>;
    let change = |f: Change| {
        let db = db.clone();
        async move { db.mutate(move |tx| f(&mut Ctx::new(tx, &Caller::ADMIN))).await.unwrap().value }
    };
    let first = change(Box::new(|tx| Ok(Some(auth::sign_in_anonymously(tx, "a", None)?)))).await.unwrap();
    let refresh = |token: String| change(Box::new(move |tx| Ok(auth::refresh(tx, &token)?)));
    let second = refresh(first.refresh_token_text()).await.expect("the first use rotates it");
    assert_ne!(second.refresh_token, first.refresh_token);
    let within = refresh(first.refresh_token_text()).await.expect("within the window");
    assert_eq!(within.refresh_token, second.refresh_token, "the session's current token");

    // The first use was a minute ago: the window has passed.
    let used = first.refresh_token;
    change(Box::new(move |tx| {
        let minute_ago = tx.now_ms() - 60_000.0;
        tx.patch(tables::AUTH_REFRESH_TOKENS, used, [("firstUsedTime".to_owned(), Some(minute_ago.into()))])?;
        Ok(None)
    }))
    .await;
    assert_eq!(refresh(first.refresh_token_text()).await, None, "a stolen token's use");
    assert_eq!(refresh(second.refresh_token_text()).await, None, "the session is over");
}
