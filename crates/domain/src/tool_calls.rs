//! `toolCalls:*` — the audit trail of an agent's tool calls in a session.

use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, check_transition, list_args, list_of, load, load_active, object};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::tables;
use super::status::{Status, ToolCallStatus, literals};
use super::{chat_sessions, runs};
use jangar_engine::transaction::All;

pub(crate) const TABLE: &str = tables::TOOL_CALLS;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::mutation(
            "toolCalls:record",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("toolName", v::string()),
                ("input", v::any()),
                ("runId", v::optional(v::id(runs::TABLE))),
            ]),
            v::id(TABLE),
            record,
        )
        .for_workers(),
        Function::mutation(
            "toolCalls:complete",
            v::object(vec![
                ("toolCallId", v::id(TABLE)),
                ("output", v::optional(v::any())),
                ("status", literals(ToolCallStatus::OUTCOMES)),
            ]),
            v::null(),
            complete,
        )
        .for_workers(),
        Function::query(
            "toolCalls:listBySession",
            list_args(vec![("sessionId", v::id(chat_sessions::TABLE))]),
            list_of(TABLE),
            list_by_session,
        ),
    ]
}

fn record(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = args.id("sessionId")?;
    load_active(tx, chat_sessions::TABLE, session, "Session")?;
    if let Some(run) = args.opt_id("runId")? {
        runs::load_in_session(tx, run, session)?;
    }
    let now = Value::from(tx.now_ms());
    let mut fields = object([
        ("sessionId", session.encode().into()),
        ("toolName", args.str("toolName").into()),
        ("input", args.get("input").cloned().unwrap_or(Value::Null)),
        ("status", ToolCallStatus::Started.into()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]);
    args.copy_into(&mut fields, &["runId"]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

/// Finishes a started call; its duration is measured by the server.
fn complete(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("toolCallId")?;
    let call = load(tx, TABLE, id, "Tool call")?;
    let from = ToolCallStatus::of(&call)?;
    let to: ToolCallStatus = args.word("status")?;
    if !check_transition(from, to)? {
        return Ok(Value::Null);
    }
    let now = tx.now_ms();
    let started = call.fields.get("createdAt").and_then(Value::as_f64).unwrap_or(now);
    let mut changes = vec![
        ("status".to_owned(), Some(Value::from(to))),
        ("durationMs".to_owned(), Some(Value::from((now - started).max(0.0)))),
        ("updatedAt".to_owned(), Some(Value::from(now))),
    ];
    if let Some(output) = args.get("output") {
        changes.push(("output".to_owned(), Some(output.clone())));
    }
    tx.patch(TABLE, id, changes)?;
    Ok(Value::Null)
}

fn list_by_session(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_sessions::list_in_session(tx, TABLE, args, Order::Asc, All)
}
