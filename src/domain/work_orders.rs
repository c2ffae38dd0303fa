//! `workOrders:*` — requests for work that start Temporal workflows, with their
//! status state machine.

use crate::engine::document::Document;
use crate::engine::id::DocumentId;
use crate::engine::keys::IndexRange;
use crate::engine::schema::{Validator, v};
use crate::engine::transaction::Transaction;
use crate::engine::value::Value;

use super::chat_sessions;
use super::common::{
    Args, ListRequest, check_transition, empty_list, list_args, list_of, load_active, maybe, object, order,
    set_deleted, visible,
};
use super::error::{AppError, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::WORK_ORDER_STATUSES;

pub const TABLE: &str = "work_orders";

const TERMINAL: &[&str] = &["succeeded", "failed", "canceled"];

/// draft -> submitted -> accepted -> running -> succeeded | failed | canceled;
/// every non-terminal status may also go to canceled or failed.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    if TERMINAL.contains(&from) {
        return false;
    }
    matches!(
        (from, to),
        ("draft", "submitted") | ("submitted", "accepted") | ("accepted", "running") | ("running", "succeeded")
    ) || to == "canceled"
        || to == "failed"
}

/// Seed 001 calls a submitted order `queued`.
fn status_arg(args: &Args) -> Option<&str> {
    args.opt_str("status").map(|s| if s == "queued" { "submitted" } else { s })
}

fn status_validator(words: &[&'static str]) -> Validator {
    let mut words = words.to_vec();
    words.push("queued");
    v::one_of(&words)
}

const OPTIONAL_TEXT: &[&str] = &[
    "title",
    "prompt",
    "summary",
    "workflowId",
    "workflowType",
    "githubIssueUrl",
    "requestedBy",
    "targetRepo",
    "targetBranch",
];

pub fn functions() -> Vec<Function> {
    let work_order_id = || ("workOrderId", v::id(TABLE));
    let mut create_args: Vec<_> = OPTIONAL_TEXT.iter().map(|f| (*f, v::optional(v::string()))).collect();
    create_args.push(("sessionId", v::id(chat_sessions::TABLE)));
    create_args.push(("workflowArgs", v::optional(v::any())));
    create_args.push(("status", v::optional(status_validator(&["draft", "submitted"]))));
    vec![
        Function::mutation("workOrders:create", v::object(create_args), v::id(TABLE), create),
        Function::query(
            "workOrders:get",
            v::object(vec![work_order_id(), ("includeDeleted", v::optional(v::boolean()))]),
            maybe(TABLE),
            get,
        ),
        Function::query(
            "workOrders:listBySession",
            list_args(vec![("sessionId", v::id(chat_sessions::TABLE)), ("includeDeleted", v::optional(v::boolean()))]),
            list_of(TABLE),
            list_by_session,
        ),
        Function::mutation(
            "workOrders:updateStatus",
            v::object(vec![
                work_order_id(),
                ("status", status_validator(WORK_ORDER_STATUSES)),
                ("workflowId", v::optional(v::string())),
                ("failureReason", v::optional(v::any())),
            ]),
            v::document(TABLE),
            update_status,
        ),
        Function::mutation(
            "workOrders:updateResult",
            v::object(vec![
                work_order_id(),
                ("prUrl", v::optional(v::string())),
                ("commitSha", v::optional(v::string())),
            ]),
            v::document(TABLE),
            update_result,
        ),
        Function::mutation("workOrders:remove", v::object(vec![work_order_id()]), v::null(), remove),
        Function::mutation("workOrders:restore", v::object(vec![work_order_id()]), v::null(), restore),
    ]
}

fn create(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    let session_id = args.id("sessionId")?;
    load_active(tx, chat_sessions::TABLE, session_id, "Session")?;
    let now = Value::from(tx.now_ms());
    let mut fields = object([
        ("sessionId", session_id.encode().into()),
        ("status", status_arg(args).unwrap_or("submitted").into()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]);
    args.copy_into(&mut fields, OPTIONAL_TEXT);
    args.copy_into(&mut fields, &["workflowArgs"]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

/// A work order, unless it or its session is soft-deleted (then `None`, as if absent).
pub fn find(
    tx: &mut Transaction<'_>,
    id: DocumentId,
    include_deleted: bool,
) -> Result<Option<Document>, FunctionError> {
    let Some(order) = tx.get(TABLE, id)?.filter(|d| visible(include_deleted)(d)) else {
        return Ok(None);
    };
    let session_id = order.fields.get("sessionId").and_then(Value::as_str).and_then(|s| DocumentId::decode(s).ok());
    let session_visible = match session_id {
        Some(session_id) => chat_sessions::find(tx, session_id, include_deleted)?.is_some(),
        None => false,
    };
    Ok(session_visible.then_some(order))
}

/// A work order that may be changed: it and its session exist and are not deleted.
fn load_live(tx: &mut Transaction<'_>, id: DocumentId) -> Result<Document, FunctionError> {
    let order = load_active(tx, TABLE, id, "Work order")?;
    if find(tx, id, false)?.is_none() {
        return Err(AppError::new("Deleted", format!("The session of work order {id} is deleted."))
            .with("id", id.encode())
            .into());
    }
    Ok(order)
}

fn get(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    Ok(find(tx, args.id("workOrderId")?, args.flag("includeDeleted"))?.map_or(Value::Null, |d| d.to_value()))
}

fn list_by_session(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let session_id = args.id("sessionId")?;
    let include_deleted = args.flag("includeDeleted");
    if chat_sessions::find(tx, session_id, include_deleted)?.is_none() {
        return Ok(empty_list(&request));
    }
    let query = tx.query(TABLE, "by_session", IndexRange::default().eq(session_id.encode()), order(true))?;
    request.run(query, visible(include_deleted))
}

fn update_status(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    let id = args.id("workOrderId")?;
    let order = load_live(tx, id)?;
    let from = order.fields.get("status").and_then(Value::as_str).unwrap_or("draft").to_owned();
    let to = status_arg(args).unwrap_or_default();
    if !check_transition(&from, to, transition_allowed)? {
        return Ok(order.to_value());
    }
    let mut changes =
        vec![("status".to_owned(), Some(Value::from(to))), ("updatedAt".to_owned(), Some(Value::from(tx.now_ms())))];
    for field in ["workflowId", "failureReason"] {
        if let Some(value) = args.get(field) {
            changes.push((field.to_owned(), Some(value.clone())));
        }
    }
    Ok(tx.patch(TABLE, id, changes)?.to_value())
}

fn update_result(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    let id = args.id("workOrderId")?;
    load_live(tx, id)?;
    let mut changes = vec![("updatedAt".to_owned(), Some(Value::from(tx.now_ms())))];
    for field in ["prUrl", "commitSha"] {
        if let Some(value) = args.get(field) {
            changes.push((field.to_owned(), Some(value.clone())));
        }
    }
    Ok(tx.patch(TABLE, id, changes)?.to_value())
}

fn remove(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("workOrderId")?, "Work order", true)
}

fn restore(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("workOrderId")?, "Work order", false)
}
