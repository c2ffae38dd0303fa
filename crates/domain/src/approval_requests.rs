//! `approvalRequests:*` — human approval of an agent's plan. A pending request
//! past its `expiresAt` reads as `expired` and can no longer be decided.

use std::time::{SystemTime, UNIX_EPOCH};

use jangar_engine::document::Document;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{
    Args, Deleted, ListRequest, check_transition, empty_list, list_args, list_of, list_order, load, load_active, maybe,
    object,
};
use super::error::{FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;
use super::status::{ApprovalStatus, Status, Word, literals};
use super::{chat_sessions, runs, work_orders};

pub(crate) const TABLE: &str = tables::APPROVAL_REQUESTS;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::mutation(
            "approvalRequests:create",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("planContent", v::string()),
                ("runId", v::optional(v::id(runs::TABLE))),
                ("workOrderId", v::optional(v::id(tables::WORK_ORDERS))),
                ("expiresAt", v::optional(v::number())),
            ]),
            v::id(TABLE),
            create,
        ),
        Function::mutation(
            "approvalRequests:decide",
            v::object(vec![
                ("approvalRequestId", v::id(TABLE)),
                ("decision", literals(ApprovalStatus::DECISIONS)),
                ("decidedBy", v::optional(v::string())),
                ("reason", v::optional(v::string())),
            ]),
            v::document(TABLE),
            decide,
        ),
        Function::query(
            "approvalRequests:listPending",
            list_args(vec![("sessionId", v::optional(v::id(chat_sessions::TABLE)))]),
            list_of(TABLE),
            list_pending,
        )
        .time_dependent(),
        Function::query(
            "approvalRequests:get",
            v::object(vec![("approvalRequestId", v::id(TABLE))]),
            maybe(TABLE),
            get,
        )
        .time_dependent(),
    ]
}

/// Expiry is measured by the wall clock, not a snapshot's time: these queries
/// are marked time-dependent, so they are not cached and subscriptions re-run them.
fn wall_clock_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0)
}

/// The status a request reads as at `now`.
fn status_at(request: &Document, now: f64) -> Result<ApprovalStatus, FunctionError> {
    let stored = ApprovalStatus::of(request)?;
    let expired = request.fields.get("expiresAt").and_then(Value::as_f64).is_some_and(|at| at <= now);
    Ok(if stored == ApprovalStatus::Pending && expired { ApprovalStatus::Expired } else { stored })
}

fn as_read(mut request: Document, now: f64) -> Result<Document, FunctionError> {
    let status = status_at(&request, now)?;
    request.fields.insert("status".into(), status.into());
    Ok(request)
}

fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = args.id("sessionId")?;
    load_active(tx, chat_sessions::TABLE, session, "Session")?;
    if let Some(run) = args.opt_id("runId")? {
        runs::load_in_session(tx, run, session)?;
    }
    if let Some(order) = args.opt_id("workOrderId")? {
        let order = load(tx, tables::WORK_ORDERS, order, "Work order")?;
        work_orders::check_in_session(&order, session)?;
    }
    let now = Value::from(tx.now_ms());
    let mut fields = object([
        ("sessionId", session.encode().into()),
        ("planContent", args.str("planContent").into()),
        ("status", ApprovalStatus::Pending.into()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]);
    args.copy_into(&mut fields, &["runId", "workOrderId", "expiresAt"]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

fn decide(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("approvalRequestId")?;
    let request = load(tx, TABLE, id, "Approval request")?;
    // A user decides as themselves; an admin may record whoever decided.
    if let Some(decided_by) = args.opt_str("decidedBy") {
        tx.check_user_id("decidedBy", decided_by)?;
    }
    let now = tx.now_ms();
    let from = status_at(&request, now)?;
    let to: ApprovalStatus = args.word("decision")?;
    if !check_transition(from, to)? {
        return Ok(request.to_value());
    }
    let mut changes = vec![
        ("status".to_owned(), Some(Value::from(to))),
        ("decidedAt".to_owned(), Some(Value::from(now))),
        ("updatedAt".to_owned(), Some(Value::from(now))),
    ];
    for field in ["decidedBy", "reason"] {
        if let Some(value) = args.get(field) {
            changes.push((field.to_owned(), Some(value.clone())));
        }
    }
    Ok(tx.patch(TABLE, id, changes)?.to_value())
}

/// Pending (and not yet expired) requests, oldest first, of one session or of all.
fn list_pending(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let now = wall_clock_ms();
    let pending = tx.owned(TABLE, move |d: &Document| status_at(d, now).is_ok_and(|s| s == ApprovalStatus::Pending));
    let query = match args.opt_id("sessionId")? {
        Some(session) => {
            if chat_sessions::find(tx, session, Deleted::Hidden)?.is_none() {
                return Ok(empty_list(&request));
            }
            tx.query_unchecked(
                TABLE,
                "by_session",
                IndexRange::default().eq(session.encode()),
                list_order(args, Order::Asc),
            )?
        }
        None => tx.query_unchecked(
            TABLE,
            "by_status",
            IndexRange::default().eq(ApprovalStatus::Pending.as_str()),
            list_order(args, Order::Asc),
        )?,
    };
    // Pending documents read as they are stored: their status is "pending" until decided.
    request.run(query, pending)
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let now = wall_clock_ms();
    let request = tx.get_owned(TABLE, args.id("approvalRequestId")?)?;
    Ok(request.map(|d| as_read(d, now)).transpose()?.map_or(Value::Null, |d| d.to_value()))
}
