//! `workOrders:*` — requests for work that start Temporal workflows, with their
//! status state machine.

use std::sync::Arc;

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::{Validator, v};
use jangar_engine::storage::Order;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::common::{
    Args, Deleted, ListRequest, SoftDelete, check_transition, documents, list_args, list_of, list_order, load,
    load_active, maybe, object, set_deleted, visible,
};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;
use super::status::{Status, Word, WorkOrderStatus, literal_members};
use super::temporal::{self, BridgeSettings};
use super::{chat_sessions, events};

pub(crate) const TABLE: &str = tables::WORK_ORDERS;

/// Seed 001 calls a submitted order `queued`; the `status` arguments accept it too.
const QUEUED: &str = "queued";

fn status_arg(args: &Args) -> Result<Option<WorkOrderStatus>, FunctionError> {
    match args.opt_str("status") {
        Some(QUEUED) => Ok(Some(WorkOrderStatus::Submitted)),
        Some(_) => args.opt_word("status"),
        None => Ok(None),
    }
}

fn status_validator(statuses: &[WorkOrderStatus]) -> Validator {
    let mut members = literal_members(statuses);
    members.push(v::literal(QUEUED));
    v::union(members)
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
    "taskQueue",
];

/// `bridge`: the Temporal bridge's settings, when the deployment has one; then the changes that
/// start or stop a workflow also queue the request to Temporal.
pub(crate) fn functions(bridge: Option<Arc<BridgeSettings>>) -> Vec<Function> {
    let work_order_id = || ("workOrderId", v::id(TABLE));
    let mut create_args: Vec<_> = OPTIONAL_TEXT.iter().map(|f| (*f, v::optional(v::string()))).collect();
    create_args.push(("sessionId", v::id(chat_sessions::TABLE)));
    create_args.push(("workflowArgs", v::optional(v::any())));
    create_args.push(("status", v::optional(status_validator(&[WorkOrderStatus::Draft, WorkOrderStatus::Submitted]))));
    vec![
        Function::mutation("workOrders:create", v::object(create_args), v::id(TABLE), {
            let bridge = bridge.clone();
            move |tx: &mut Ctx<'_, '_>, args: &Args| create(tx, args, bridge.as_deref())
        }),
        Function::mutation(
            "workOrders:createFromMessage",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("triggerMessageId", v::id(tables::CHAT_MESSAGES)),
                ("summary", v::optional(v::string())),
                ("repo", v::optional(v::string())),
                ("branchHint", v::optional(v::string())),
                ("workflowType", v::optional(v::string())),
                ("workflowArgs", v::optional(v::any())),
            ]),
            v::id(TABLE),
            {
                let bridge = bridge.clone();
                move |tx: &mut Ctx<'_, '_>, args: &Args| create_from_message(tx, args, bridge.as_deref())
            },
        ),
        Function::query(
            "workOrders:listByStatus",
            list_args(vec![("status", status_validator(WorkOrderStatus::ALL))]),
            list_of(TABLE),
            list_by_status,
        )
        .for_workers(),
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
                ("status", status_validator(WorkOrderStatus::ALL)),
                ("workflowId", v::optional(v::string())),
                ("failureReason", v::optional(v::any())),
            ]),
            v::document(TABLE),
            move |tx: &mut Ctx<'_, '_>, args: &Args| update_status(tx, args, bridge.as_deref()),
        )
        .for_workers(),
        Function::mutation(
            "workOrders:updateResult",
            v::object(vec![
                work_order_id(),
                ("prUrl", v::optional(v::string())),
                ("commitSha", v::optional(v::string())),
            ]),
            v::document(TABLE),
            update_result,
        )
        .for_workers(),
        Function::mutation("workOrders:remove", v::object(vec![work_order_id()]), v::null(), remove),
        Function::mutation("workOrders:restore", v::object(vec![work_order_id()]), v::null(), restore),
    ]
}

fn create(tx: &mut Ctx<'_, '_>, args: &Args, bridge: Option<&BridgeSettings>) -> FunctionResult {
    let session_id = args.id("sessionId")?;
    if let Some(requested_by) = args.opt_str("requestedBy") {
        tx.check_user_id("requestedBy", requested_by)?;
    }
    let mut fields = Object::new();
    args.copy_into(&mut fields, OPTIONAL_TEXT);
    args.copy_into(&mut fields, &["workflowArgs"]);
    insert_order(tx, session_id, status_arg(args)?.unwrap_or(WorkOrderStatus::Submitted), fields, bridge)
}

/// Inserts a work order into a live session and logs its first state.
fn insert_order(
    tx: &mut Ctx<'_, '_>,
    session_id: DocumentId,
    status: WorkOrderStatus,
    mut fields: Object,
    bridge: Option<&BridgeSettings>,
) -> FunctionResult {
    load_active(tx, chat_sessions::TABLE, session_id, "Session")?;
    let now = Value::from(tx.now_ms());
    fields.extend(object([
        ("sessionId", session_id.encode().into()),
        ("status", status.into()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]));
    let id = tx.insert(TABLE, fields)?;
    events::state_change(tx, None, Some(id), None, status.as_str())?;
    if let Some(bridge) = bridge
        && status == WorkOrderStatus::Submitted
    {
        temporal::on_submitted(tx, bridge, id)?;
    }
    Ok(id.encode().into())
}

/// A work order started from a chat message: titled by the summary or the message's first line.
fn create_from_message(tx: &mut Ctx<'_, '_>, args: &Args, bridge: Option<&BridgeSettings>) -> FunctionResult {
    let session_id = args.id("sessionId")?;
    let message_id = args.id("triggerMessageId")?;
    let message = load_active(tx, tables::CHAT_MESSAGES, message_id, "Message")?;
    if message.fields.get("sessionId").and_then(Value::as_str) != Some(session_id.encode().as_str()) {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("Message {message_id} is not in session {session_id}."),
        )
        .into());
    }
    let first_line = message.fields.get("content").and_then(Value::as_str).unwrap_or_default().lines().next();
    let title = args.opt_str("summary").or(first_line).unwrap_or_default().trim().to_owned();
    let mut fields = object([("triggerMessageId", message_id.encode().into())]);
    if !title.is_empty() {
        fields.insert("title".into(), title.into());
    }
    for (arg, field) in [("summary", "summary"), ("repo", "targetRepo"), ("branchHint", "targetBranch")] {
        if let Some(value) = args.get(arg) {
            fields.insert(field.into(), value.clone());
        }
    }
    args.copy_into(&mut fields, &["workflowType", "workflowArgs"]);
    insert_order(tx, session_id, WorkOrderStatus::Submitted, fields, bridge)
}

/// Work orders in one status, most recently updated first, hiding deleted ones
/// and those of deleted sessions.
fn list_by_status(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let status = status_arg(args)?.map_or("", WorkOrderStatus::as_str);
    let (page_size, mut cursor, end_cursor, wanted) = match &request {
        ListRequest::Limit(limit) => (*limit, None, None, *limit),
        ListRequest::Page { num_items, cursor, end_cursor } => {
            (*num_items, cursor.clone(), end_cursor.clone(), *num_items)
        }
    };
    // Pages of the index, keeping orders whose session is visible; one page for
    // `paginationOpts` (Convex pages may be short), until `limit` for `limit`.
    let mut kept = Vec::new();
    loop {
        let range = IndexRange::default().eq(status);
        let page = tx.query_unchecked(TABLE, "by_status", range, list_order(args, Order::Desc))?.paginate(
            page_size,
            cursor.as_deref(),
            end_cursor.as_deref(),
            visible(Deleted::Hidden),
        )?;
        for order in page.page {
            let session =
                order.fields.get("sessionId").and_then(Value::as_str).and_then(|s| DocumentId::decode(s).ok());
            if let Some(session) = session
                && chat_sessions::find(tx, session, Deleted::Hidden)?.is_some()
            {
                kept.push(order);
            }
        }
        if end_cursor.is_none() {
            kept.truncate(wanted);
        }
        let done = page.is_done;
        cursor = Some(page.continue_cursor);
        if matches!(request, ListRequest::Page { .. }) {
            return Ok(Value::Object(object([
                ("page", documents(kept)),
                ("isDone", done.into()),
                ("continueCursor", cursor.unwrap_or_default().into()),
            ])));
        }
        if done || kept.len() >= wanted {
            return Ok(documents(kept));
        }
    }
}

/// A work order, unless it or its session is soft-deleted (then `None`, as if absent).
/// Fails unless the work order belongs to `session`.
pub(crate) fn check_in_session(order: &Document, session: DocumentId) -> Result<(), FunctionError> {
    if order.fields.get("sessionId").and_then(Value::as_str) == Some(session.encode().as_str()) {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::InvalidArgument,
        format!("Work order {} belongs to another session than {session}.", order.id),
    )
    .with("sessionId", session.encode())
    .into())
}

pub(crate) fn find(tx: &mut Ctx<'_, '_>, id: DocumentId, deleted: Deleted) -> Result<Option<Document>, FunctionError> {
    let Some(order) = tx.get_owned(TABLE, id)?.filter(|d| visible(deleted)(d)) else {
        return Ok(None);
    };
    let session_id = order.fields.get("sessionId").and_then(Value::as_str).and_then(|s| DocumentId::decode(s).ok());
    let session_visible = match session_id {
        Some(session_id) => chat_sessions::find(tx, session_id, deleted)?.is_some(),
        None => false,
    };
    Ok(session_visible.then_some(order))
}

/// A work order that may be changed: it and its session exist and are not deleted.
pub(crate) fn load_live(tx: &mut Ctx<'_, '_>, id: DocumentId) -> Result<Document, FunctionError> {
    let order = load_active(tx, TABLE, id, "Work order")?;
    if find(tx, id, Deleted::Hidden)?.is_none() {
        return Err(AppError::new(ErrorCode::Deleted, format!("The session of work order {id} is deleted."))
            .with("id", id.encode())
            .into());
    }
    Ok(order)
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(find(tx, args.id("workOrderId")?, Deleted::as_asked(args))?.map_or(Value::Null, |d| d.to_value()))
}

fn list_by_session(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_sessions::list_in_session(tx, TABLE, args, Order::Desc, visible(Deleted::as_asked(args)))
}

fn update_status(tx: &mut Ctx<'_, '_>, args: &Args, bridge: Option<&BridgeSettings>) -> FunctionResult {
    let id = args.id("workOrderId")?;
    let order = load_live(tx, id)?;
    let from = WorkOrderStatus::of(&order)?;
    let Some(to) = status_arg(args)? else {
        return Err(AppError::new(ErrorCode::InvalidArgument, "status is required.").into());
    };
    if !check_transition(from, to)? {
        return Ok(order.to_value());
    }
    let extra = ["workflowId", "failureReason"].into_iter().filter_map(|f| Some((f.to_owned(), args.get(f)?.clone())));
    let order = set_status(tx, id, from, to, extra.collect())?;
    match (bridge, to) {
        (Some(bridge), WorkOrderStatus::Submitted) => temporal::on_submitted(tx, bridge, id)?,
        (Some(_), WorkOrderStatus::Canceled) => temporal::on_canceled(tx, id)?,
        _ => return Ok(order.to_value()),
    }
    Ok(load(tx, TABLE, id, "Work order")?.to_value())
}

/// Moves a work order to `to` (already checked), setting `extra` fields, and logs the change.
fn set_status(
    tx: &mut Ctx<'_, '_>,
    id: DocumentId,
    from: WorkOrderStatus,
    to: WorkOrderStatus,
    extra: Vec<(String, Value)>,
) -> Result<Document, FunctionError> {
    let mut changes =
        vec![("status".to_owned(), Some(Value::from(to))), ("updatedAt".to_owned(), Some(tx.now_ms().into()))];
    changes.extend(extra.into_iter().map(|(field, value)| (field, Some(value))));
    tx.patch(TABLE, id, changes)?;
    events::state_change(tx, None, Some(id), Some(from.as_str()), to.as_str())?;
    load(tx, TABLE, id, "Work order")
}

/// Moves a work order along with its run: through the happy path towards
/// `running` or `succeeded`, straight to `failed` or `canceled`. A final order
/// stays as it is. `extra` fields are set with the last step.
pub(crate) fn move_along(
    tx: &mut Ctx<'_, '_>,
    id: DocumentId,
    target: WorkOrderStatus,
    extra: Vec<(String, Value)>,
) -> Result<(), FunctionError> {
    const PATH: &[WorkOrderStatus] = WorkOrderStatus::HAPPY_PATH;
    let order = load(tx, TABLE, id, "Work order")?;
    let mut current = WorkOrderStatus::of(&order)?;
    if current.is_terminal() || current == target {
        return Ok(());
    }
    let mut hops: Vec<WorkOrderStatus> =
        match (PATH.iter().position(|s| *s == current), PATH.iter().position(|s| *s == target)) {
            (Some(from), Some(to)) if to > from => PATH[from + 1..=to].to_vec(),
            _ => vec![target],
        };
    let last = hops.pop().unwrap_or(target);
    for hop in hops {
        set_status(tx, id, current, hop, Vec::new())?;
        current = hop;
    }
    set_status(tx, id, current, last, extra)?;
    Ok(())
}

fn update_result(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
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

fn remove(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("workOrderId")?, "Work order", SoftDelete::Delete)
}

fn restore(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("workOrderId")?, "Work order", SoftDelete::Restore)
}
