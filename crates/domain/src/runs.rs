//! `runs:*` — Temporal workflow runs of a work order, their state machine, the
//! dashboard (from counters kept in the same transactions as status changes)
//! and the timeline.

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::knobs::TIMELINE_LIMIT;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::common::{
    Args, ListRequest, check_transition, documents, empty_list, list_args, list_of, list_order, load, maybe, object,
};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;
use super::status::{RunStatus, Status, Word, literals};
use super::{events, temporal, work_orders};
use jangar_engine::error::EngineError;
use jangar_engine::transaction::{All, Transaction};

pub(crate) const TABLE: &str = tables::RUNS;
/// The counters document that `runs:getDashboard` reads.
const COUNTER_NAME: &str = "runs";

const OPTIONAL_TEXT: &[&str] = &["temporalRunId", "taskQueue", "workerId", "repo", "branch"];

pub(crate) fn functions() -> Vec<Function> {
    let run_id = || ("runId", v::id(TABLE));
    let mut start_args: Vec<_> = OPTIONAL_TEXT.iter().map(|f| (*f, v::optional(v::string()))).collect();
    start_args.push(("workOrderId", v::id(tables::WORK_ORDERS)));
    start_args.push(("temporalWorkflowId", v::string()));
    start_args.push(("status", v::optional(literals(&[RunStatus::Queued, RunStatus::Running]))));
    let counts = v::object(RunStatus::ALL.iter().map(|s| (s.as_str(), v::number())).collect());
    let dashboard = v::object(vec![
        ("counts", counts),
        (
            "active",
            v::array(v::object(vec![
                ("run", v::document(TABLE)),
                ("workOrderTitle", v::union(vec![v::string(), v::null()])),
            ])),
        ),
        ("recent", v::array(v::document(TABLE))),
    ]);
    let timeline = v::union(vec![
        v::object(vec![
            ("run", v::document(TABLE)),
            ("workOrder", maybe(tables::WORK_ORDERS)),
            ("steps", v::array(v::document(tables::STEPS))),
            ("artifacts", v::array(v::document(tables::ARTIFACTS))),
            ("events", v::array(v::document(tables::EVENTS))),
        ]),
        v::null(),
    ]);
    vec![
        Function::mutation("runs:start", v::object(start_args), v::id(TABLE), start).for_workers(),
        Function::mutation(
            "runs:updateStatus",
            v::object(vec![
                run_id(),
                ("status", RunStatus::validator()),
                ("failureReason", v::optional(v::any())),
                ("prUrl", v::optional(v::string())),
                ("commitSha", v::optional(v::string())),
            ]),
            v::document(TABLE),
            update_status,
        )
        .for_workers(),
        Function::query("runs:get", v::object(vec![run_id()]), maybe(TABLE), get),
        Function::query(
            "runs:listByWorkOrder",
            list_args(vec![("workOrderId", v::id(tables::WORK_ORDERS))]),
            list_of(TABLE),
            list_by_work_order,
        ),
        Function::query(
            "runs:getDashboard",
            v::object(vec![("limit", v::optional(v::count()))]),
            dashboard,
            dashboard_fn,
        )
        .for_workers(),
        Function::query("runs:getTimeline", v::object(vec![run_id()]), timeline, timeline_fn),
    ]
}

/// Moves one run from `from` (None for a new run) to `to` in the status counters.
/// Invariant: each count equals the number of runs with that status. It holds because every
/// status change of a run calls this in the same transaction, and mutations run one at a time
/// (a group's, and every replica's under the commit lock), so no two changes read one count.
fn count(tx: &mut Ctx<'_, '_>, from: Option<RunStatus>, to: RunStatus) -> Result<(), FunctionError> {
    let existing = tx
        .query_unchecked(tables::COUNTERS, "by_name", IndexRange::default().eq(COUNTER_NAME), Order::Asc)?
        .take(1, All)?
        .pop();
    let mut counts = match &existing {
        Some(doc) => doc.fields.get("counts").and_then(Value::as_object).cloned().unwrap_or_default(),
        None => Object::new(),
    };
    for status in RunStatus::ALL {
        counts.entry(status.as_str().to_owned()).or_insert(Value::from(0.0));
    }
    let bump = |counts: &mut Object, status: RunStatus, delta: f64| {
        if let Some(Value::Float64(n)) = counts.get_mut(status.as_str()) {
            *n += delta;
            // A run leaving a status was counted in it.
            debug_assert!(*n >= 0.0, "the {status} count went below zero");
        }
    };
    if let Some(from) = from {
        bump(&mut counts, from, -1.0);
    }
    bump(&mut counts, to, 1.0);
    match existing {
        Some(doc) => {
            tx.patch(tables::COUNTERS, doc.id, [("counts".to_owned(), Some(Value::Object(counts)))])?;
        }
        None => {
            tx.insert(tables::COUNTERS, object([("name", COUNTER_NAME.into()), ("counts", Value::Object(counts))]))?;
        }
    }
    Ok(())
}

/// Sets the status counters from the runs themselves: after an import, whose snapshot may
/// carry counters of other runs or none at all (a Convex export of the upstream app has no
/// counters table). Runs in a bulk transaction, which may read every run.
pub fn recount(tx: &mut Transaction<'_>) -> Result<(), EngineError> {
    let mut counts = Object::new();
    for status in RunStatus::ALL {
        let range = IndexRange::default().eq(status.as_str());
        let runs = tx.query(tables::RUNS, "by_status", range, Order::Asc)?.take(usize::MAX, All)?;
        counts.insert(status.as_str().to_owned(), Value::from(runs.len() as f64));
    }
    let range = IndexRange::default().eq(COUNTER_NAME);
    let mut stored = tx.query(tables::COUNTERS, "by_name", range, Order::Asc)?.take(usize::MAX, All)?.into_iter();
    let kept = stored.next();
    for duplicate in stored {
        tx.delete(tables::COUNTERS, duplicate.id)?;
    }
    let counts = Value::Object(counts);
    match kept {
        // Unchanged documents are not rewritten, so a snapshot imports as exactly itself.
        Some(document) if document.fields.get("counts") == Some(&counts) => {}
        Some(document) => {
            tx.patch(tables::COUNTERS, document.id, [("counts".to_owned(), Some(counts))])?;
        }
        // No runs and no counters: the dashboard reads absent counters as zeros.
        None if RunStatus::ALL
            .iter()
            .all(|s| counts.as_object().and_then(|c| c.get(s.as_str())) == Some(&Value::from(0.0))) => {}
        None => {
            tx.insert(tables::COUNTERS, object([("name", COUNTER_NAME.into()), ("counts", counts)]))?;
        }
    }
    Ok(())
}

/// A worker starting a run. For the workflow the Temporal bridge started for this work order,
/// its run is the answer: one run per workflow.
fn start(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let order_id = args.id("workOrderId")?;
    work_orders::load_live(tx, order_id)?;
    let status = args.opt_word("status")?.unwrap_or(RunStatus::Running);
    let workflow = args.str("temporalWorkflowId");
    // Only the bridge's workflow of this order has one run for good (finished or not: its workflow
    // ran once); other ids keep their meaning, each call a run.
    let existing = if workflow == temporal::workflow_id(order_id) {
        let range = IndexRange::default().eq(workflow);
        tx.query_unchecked(TABLE, "by_workflow", range, Order::Asc)?.take(usize::MAX, All)?
    } else {
        Vec::new()
    };
    if let Some(run) = existing.into_iter().next() {
        if status == RunStatus::Running && RunStatus::of(&run)? == RunStatus::Queued {
            let worker = args.get("workerId").map(|w| ("workerId".to_owned(), w.clone()));
            set_status(tx, run.id, RunStatus::Running, worker.into_iter().collect())?;
        }
        return Ok(run.id.encode().into());
    }
    let mut fields = object([("temporalWorkflowId", workflow.into())]);
    args.copy_into(&mut fields, OPTIONAL_TEXT);
    Ok(insert_run(tx, order_id, status, fields)?.encode().into())
}

/// Inserts a run of a live work order with `fields`, counts it and moves the order along.
pub(crate) fn insert_run(
    tx: &mut Ctx<'_, '_>,
    order_id: DocumentId,
    status: RunStatus,
    mut fields: Object,
) -> Result<DocumentId, FunctionError> {
    let now = Value::from(tx.now_ms());
    fields.extend(object([
        ("workOrderId", order_id.encode().into()),
        ("status", status.into()),
        ("createdAt", now.clone()),
        ("updatedAt", now.clone()),
    ]));
    if status == RunStatus::Running {
        fields.insert("startedAt".into(), now);
    }
    let id = tx.insert(TABLE, fields)?;
    count(tx, None, status)?;
    events::state_change(tx, Some(id), Some(order_id), None, status.as_str())?;
    if let Some(target) = status.work_order_status() {
        work_orders::move_along(tx, order_id, target, Vec::new())?;
    }
    Ok(id)
}

fn update_status(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("runId")?;
    let to: RunStatus = args.word("status")?;
    let extra =
        ["failureReason", "prUrl", "commitSha"].into_iter().filter_map(|f| Some((f.to_owned(), args.get(f)?.clone())));
    Ok(set_status(tx, id, to, extra.collect())?.to_value())
}

/// Moves a run to `to` (a no-op if it is there; `InvalidTransition` if its state machine says
/// no), setting `extra` fields, and its work order along; a final run's failure reason, PR and
/// commit go to the order too.
pub(crate) fn set_status(
    tx: &mut Ctx<'_, '_>,
    id: DocumentId,
    to: RunStatus,
    extra: Vec<(String, Value)>,
) -> Result<Document, FunctionError> {
    let run = load(tx, TABLE, id, "Run")?;
    let from = RunStatus::of(&run)?;
    if !check_transition(from, to)? {
        return Ok(run);
    }
    let now = tx.now_ms();
    let mut changes = vec![("status".to_owned(), Some(Value::from(to))), ("updatedAt".to_owned(), Some(now.into()))];
    if to == RunStatus::Running && !run.fields.contains_key("startedAt") {
        changes.push(("startedAt".to_owned(), Some(now.into())));
    }
    if to.is_terminal() {
        changes.push(("endedAt".to_owned(), Some(now.into())));
    }
    let copied: Vec<_> =
        extra.iter().filter(|(f, _)| matches!(f.as_str(), "failureReason" | "prUrl" | "commitSha")).cloned().collect();
    changes.extend(extra.into_iter().map(|(field, value)| (field, Some(value))));
    tx.patch(TABLE, id, changes)?;
    count(tx, Some(from), to)?;
    let order_id = run_order(&run)?;
    events::state_change(tx, Some(id), Some(order_id), Some(from.as_str()), to.as_str())?;
    if let Some(target) = to.work_order_status() {
        work_orders::move_along(tx, order_id, target, if to.is_terminal() { copied } else { Vec::new() })?;
    }
    load(tx, TABLE, id, "Run")
}

/// Loads a run that must belong to `session` (through its work order): a
/// document naming both a session and a run must not tie two sessions together.
pub(crate) fn load_in_session(
    tx: &mut Ctx<'_, '_>,
    run: DocumentId,
    session: DocumentId,
) -> Result<Document, FunctionError> {
    let run_doc = load(tx, TABLE, run, "Run")?;
    let order = load(tx, tables::WORK_ORDERS, run_order(&run_doc)?, "Work order")?;
    work_orders::check_in_session(&order, session)?;
    Ok(run_doc)
}

pub(crate) fn run_order(run: &Document) -> Result<DocumentId, FunctionError> {
    let text = run.fields.get("workOrderId").and_then(Value::as_str).unwrap_or_default();
    DocumentId::decode(text).map_err(|e| AppError::new(ErrorCode::NotFound, e.to_string()).into())
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(tx.get_owned(TABLE, args.id("runId")?)?.map_or(Value::Null, |d| d.to_value()))
}

fn list_by_work_order(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let order_id = args.id("workOrderId")?;
    if !tx.may_list_under(tables::WORK_ORDERS, order_id)? {
        return Ok(empty_list(&request));
    }
    let range = IndexRange::default().eq(order_id.encode());
    request.run(tx.query_unchecked(TABLE, "by_work_order", range, list_order(args, Order::Desc))?, All)
}

/// The most recently updated runs among `statuses`, newest first.
fn latest(tx: &mut Ctx<'_, '_>, statuses: &[RunStatus], limit: usize) -> Result<Vec<Document>, FunctionError> {
    let mut runs = Vec::new();
    for status in statuses {
        let range = IndexRange::default().eq(status.as_str());
        runs.extend(tx.query_unchecked(TABLE, "by_status", range, Order::Desc)?.take(limit, All)?);
    }
    let updated = |d: &Document| d.fields.get("updatedAt").and_then(Value::as_f64).unwrap_or(0.0);
    runs.sort_by(|a, b| updated(b).total_cmp(&updated(a)));
    runs.truncate(limit);
    Ok(runs)
}

fn dashboard_fn(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let limit = match args.opt_f64("limit") {
        Some(l) if l.fract() == 0.0 && (1.0..=1000.0).contains(&l) => l as usize,
        Some(l) => {
            return Err(AppError::new(
                ErrorCode::InvalidArgument,
                format!("limit must be a whole number from 1 to 1000, not {l}."),
            )
            .into());
        }
        None => 20,
    };
    let stored = tx
        .query_unchecked(tables::COUNTERS, "by_name", IndexRange::default().eq(COUNTER_NAME), Order::Asc)?
        .take(1, All)?
        .pop();
    let stored = stored.and_then(|d| d.fields.get("counts").and_then(Value::as_object).cloned()).unwrap_or_default();
    let counts: Object = RunStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), stored.get(s.as_str()).cloned().unwrap_or(Value::from(0.0))))
        .collect();
    let mut active = Vec::new();
    for run in latest(tx, &[RunStatus::Running, RunStatus::Queued], limit)? {
        let title = match run_order(&run).ok().map(|id| tx.get_owned(tables::WORK_ORDERS, id)).transpose()?.flatten() {
            Some(order) => order.fields.get("title").cloned().unwrap_or(Value::Null),
            None => Value::Null,
        };
        active.push(Value::Object(object([("run", run.to_value()), ("workOrderTitle", title)])));
    }
    let finished: Vec<RunStatus> = RunStatus::ALL.iter().copied().filter(|s| s.is_terminal()).collect();
    let recent = latest(tx, &finished, limit)?;
    Ok(Value::Object(object([
        ("counts", Value::Object(counts)),
        ("active", Value::Array(active)),
        ("recent", documents(recent)),
    ])))
}

fn timeline_fn(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let run_id = args.id("runId")?;
    let Some(run) = tx.get_owned(TABLE, run_id)? else { return Ok(Value::Null) };
    let order = match run_order(&run).ok() {
        Some(id) => tx.get_owned(tables::WORK_ORDERS, id)?,
        None => None,
    };
    let by_run = || IndexRange::default().eq(run_id.encode());
    let mut steps = tx.query_unchecked(tables::STEPS, "by_run", by_run(), Order::Asc)?.take(TIMELINE_LIMIT, All)?;
    let started = |d: &Document| d.fields.get("startedAt").and_then(Value::as_f64).unwrap_or(f64::INFINITY);
    steps.sort_by(|a, b| started(a).total_cmp(&started(b)));
    let artifacts = tx.query_unchecked(tables::ARTIFACTS, "by_run", by_run(), Order::Asc)?.take(TIMELINE_LIMIT, All)?;
    let events = tx.query_unchecked(tables::EVENTS, "by_run", by_run(), Order::Asc)?.take(TIMELINE_LIMIT, All)?;
    Ok(Value::Object(object([
        ("run", run.to_value()),
        ("workOrder", order.map_or(Value::Null, |d| d.to_value())),
        ("steps", documents(steps)),
        ("artifacts", documents(artifacts)),
        ("events", documents(events)),
    ])))
}
