//! `events:*` — the append-only log of a run or a work order. `seq` counts 1, 2,
//! 3, ... per run (or per work order, for events of an order alone): the parent
//! keeps `lastEventSeq` and every append bumps it in the same transaction, so the
//! sequence has no gaps even under concurrent writers.

use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, ListRequest, empty_list, list_args, list_of, list_order, load, object};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::{EVENT_TYPES, tables};
use jangar_engine::transaction::All;

pub(crate) const TABLE: &str = tables::EVENTS;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::mutation(
            "events:append",
            v::object(vec![
                ("runId", v::optional(v::id(tables::RUNS))),
                ("workOrderId", v::optional(v::id(tables::WORK_ORDERS))),
                ("type", v::one_of(EVENT_TYPES)),
                ("data", v::optional(v::any())),
            ]),
            v::id(TABLE),
            append_event,
        )
        .for_workers(),
        Function::query(
            "events:listByRun",
            list_args(vec![("runId", v::id(tables::RUNS)), ("afterSeq", v::optional(v::count()))]),
            list_of(TABLE),
            list_by_run,
        ),
    ]
}

/// Appends an event. Its sequence number comes from the run if there is one,
/// else from the work order.
pub(crate) fn append(
    tx: &mut Ctx<'_, '_>,
    run: Option<DocumentId>,
    work_order: Option<DocumentId>,
    kind: &str,
    data: Option<Value>,
) -> Result<DocumentId, FunctionError> {
    let (parent_table, parent_id, what) = match (run, work_order) {
        (Some(run), _) => (tables::RUNS, run, "Run"),
        (None, Some(order)) => (tables::WORK_ORDERS, order, "Work order"),
        (None, None) => {
            return Err(AppError::new(ErrorCode::InvalidArgument, "An event needs a runId or a workOrderId.").into());
        }
    };
    let parent = load(tx, parent_table, parent_id, what)?;
    let seq = parent.fields.get("lastEventSeq").and_then(Value::as_f64).unwrap_or(0.0) + 1.0;
    tx.patch(parent_table, parent_id, [("lastEventSeq".to_owned(), Some(Value::from(seq)))])?;
    let mut fields = object([("type", kind.into()), ("seq", seq.into()), ("createdAt", tx.now_ms().into())]);
    if let Some(run) = run {
        fields.insert("runId".into(), run.encode().into());
    }
    if let Some(order) = work_order {
        fields.insert("workOrderId".into(), order.encode().into());
    }
    if let Some(data) = data {
        fields.insert("data".into(), data);
    }
    Ok(tx.insert(TABLE, fields)?)
}

/// The `state_change` event of a status change (`from` is null for a new document).
pub(crate) fn state_change(
    tx: &mut Ctx<'_, '_>,
    run: Option<DocumentId>,
    work_order: Option<DocumentId>,
    from: Option<&str>,
    to: &str,
) -> Result<(), FunctionError> {
    let data = object([("from", from.map_or(Value::Null, Value::from)), ("to", to.into())]);
    append(tx, run, work_order, "state_change", Some(Value::Object(data)))?;
    Ok(())
}

fn append_event(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let run = args.opt_id("runId")?;
    let work_order = args.opt_id("workOrderId")?;
    if let (Some(run_id), Some(order_id)) = (run, work_order) {
        let run_doc = load(tx, tables::RUNS, run_id, "Run")?;
        if run_doc.fields.get("workOrderId").and_then(Value::as_str) != Some(order_id.encode().as_str()) {
            return Err(AppError::new(
                ErrorCode::InvalidArgument,
                format!("Run {run_id} does not belong to work order {order_id}."),
            )
            .into());
        }
    }
    Ok(append(tx, run, work_order, args.str("type"), args.get("data").cloned())?.encode().into())
}

/// Events of a run in `seq` order, after `afterSeq` if given (to replay from a known point).
fn list_by_run(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let run_id = args.id("runId")?;
    if !tx.may_list_under(tables::RUNS, run_id)? {
        return Ok(empty_list(&request));
    }
    let mut range = IndexRange::default().eq(run_id.encode());
    if let Some(after) = args.opt_f64("afterSeq") {
        range = range.gt(after);
    }
    request.run(tx.query_unchecked(TABLE, "by_run", range, list_order(args, Order::Asc))?, All)
}
