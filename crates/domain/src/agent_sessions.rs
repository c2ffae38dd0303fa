//! `agentSessions:*` — the agent SDK's resumable state, one per chat session.

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::chat_sessions;
use super::common::{Args, Deleted, load_active, maybe, object};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::{AGENT_PHASES, tables};
use jangar_engine::transaction::All;

pub(crate) const TABLE: &str = tables::AGENT_SESSIONS;

pub(crate) fn functions() -> Vec<Function> {
    let session_id = || ("sessionId", v::id(chat_sessions::TABLE));
    vec![
        Function::mutation(
            "agentSessions:upsert",
            v::object(vec![
                session_id(),
                ("sdkSessionId", v::string()),
                ("phase", v::optional(v::one_of(AGENT_PHASES))),
                ("plan", v::optional(v::any())),
                ("mode", v::optional(v::one_of(&["local", "sandbox"]))),
            ]),
            v::id(TABLE),
            upsert,
        )
        .for_workers(),
        Function::mutation(
            "agentSessions:updatePhase",
            v::object(vec![session_id(), ("phase", v::one_of(AGENT_PHASES)), ("plan", v::optional(v::any()))]),
            v::null(),
            update_phase,
        )
        .for_workers(),
        Function::query("agentSessions:getBySession", v::object(vec![session_id()]), maybe(TABLE), get_by_session),
    ]
}

/// The agent state of a session (at most one: `by_session` is kept unique by `upsert`).
fn find(tx: &mut Ctx<'_, '_>, session: DocumentId) -> Result<Option<Document>, FunctionError> {
    let range = IndexRange::default().eq(session.encode());
    Ok(tx.query_unchecked(TABLE, "by_session", range, Order::Asc)?.take(1, All)?.pop())
}

fn upsert(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = args.id("sessionId")?;
    load_active(tx, chat_sessions::TABLE, session, "Session")?;
    let now = Value::from(tx.now_ms());
    match find(tx, session)? {
        Some(existing) => {
            let mut changes = vec![
                ("sdkSessionId".to_owned(), Some(args.str("sdkSessionId").into())),
                ("updatedAt".to_owned(), Some(now)),
            ];
            changes.extend(
                ["phase", "plan", "mode"].iter().filter_map(|f| Some(((*f).to_owned(), Some(args.get(f)?.clone())))),
            );
            tx.patch(TABLE, existing.id, changes)?;
            Ok(existing.id.encode().into())
        }
        None => {
            let mut fields = object([
                ("sessionId", session.encode().into()),
                ("sdkSessionId", args.str("sdkSessionId").into()),
                ("phase", args.opt_str("phase").unwrap_or("idle").into()),
                ("createdAt", now.clone()),
                ("updatedAt", now),
            ]);
            args.copy_into(&mut fields, &["plan", "mode"]);
            Ok(tx.insert(TABLE, fields)?.encode().into())
        }
    }
}

fn update_phase(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = args.id("sessionId")?;
    let Some(existing) = find(tx, session)? else {
        return Err(AppError::new(ErrorCode::NotFound, format!("Session {session} has no agent state.")).into());
    };
    let mut changes = vec![
        ("phase".to_owned(), Some(args.str("phase").into())),
        ("updatedAt".to_owned(), Some(Value::from(tx.now_ms()))),
    ];
    if let Some(plan) = args.get("plan") {
        changes.push(("plan".to_owned(), Some(plan.clone())));
    }
    tx.patch(TABLE, existing.id, changes)?;
    Ok(Value::Null)
}

fn get_by_session(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = args.id("sessionId")?;
    if chat_sessions::find(tx, session, Deleted::Hidden)?.is_none() {
        return Ok(Value::Null);
    }
    Ok(find(tx, session)?.map_or(Value::Null, |d| d.to_value()))
}
