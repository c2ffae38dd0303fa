//! `artifacts:*` — PRs, diffs, files, logs, screenshots, plans and reports of a
//! run or a session.

use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::common::{Args, ListRequest, empty_list, list_args, list_of, list_order, load, object, session_or_thread};
use super::error::{AppError, ErrorCode, FunctionResult};
use super::registry::Function;
use super::schema::{ARTIFACT_TYPES, tables};
use super::{chat_sessions, runs};
use jangar_engine::transaction::All;

pub(crate) const TABLE: &str = tables::ARTIFACTS;
const DETAILS: &[&str] = &["url", "label", "content", "status"];

pub(crate) fn functions() -> Vec<Function> {
    let details = |mut fields: Vec<(&'static str, _)>| {
        fields.extend(DETAILS.iter().map(|f| (*f, v::optional(v::string()))));
        v::object(fields)
    };
    vec![
        Function::mutation(
            "artifacts:add",
            v::object(vec![
                ("runId", v::id(runs::TABLE)),
                ("type", v::one_of(ARTIFACT_TYPES)),
                ("url", v::optional(v::string())),
                ("label", v::optional(v::string())),
                ("content", v::optional(v::string())),
            ]),
            v::id(TABLE),
            add,
        )
        .for_workers(),
        Function::mutation(
            "artifacts:create",
            details(vec![
                ("sessionId", v::optional(v::id(chat_sessions::TABLE))),
                ("threadId", v::optional(v::id(chat_sessions::TABLE))),
                ("runId", v::optional(v::id(runs::TABLE))),
                ("type", v::one_of(ARTIFACT_TYPES)),
            ]),
            v::id(TABLE),
            create,
        )
        .for_workers(),
        Function::mutation("artifacts:update", details(vec![("artifactId", v::id(TABLE))]), v::null(), update)
            .for_workers(),
        Function::query(
            "artifacts:listByRun",
            list_args(vec![("runId", v::id(runs::TABLE))]),
            list_of(TABLE),
            list_by_run,
        ),
        Function::query(
            "artifacts:listBySession",
            list_args(vec![("sessionId", v::id(chat_sessions::TABLE))]),
            list_of(TABLE),
            list_by_session,
        ),
    ]
}

fn insert(tx: &mut Ctx<'_, '_>, mut fields: Object, args: &Args) -> FunctionResult {
    let now = Value::from(tx.now_ms());
    fields.insert("type".into(), args.str("type").into());
    fields.insert("createdAt".into(), now.clone());
    fields.insert("updatedAt".into(), now);
    args.copy_into(&mut fields, DETAILS);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

fn add(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let run_id = args.id("runId")?;
    load(tx, runs::TABLE, run_id, "Run")?;
    insert(tx, object([("runId", run_id.encode().into())]), args)
}

/// Seed 004's call: an artifact of a session (or thread), a run, or both.
fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session = if args.get("sessionId").is_some() || args.get("threadId").is_some() {
        Some(session_or_thread(args)?)
    } else {
        None
    };
    let run = args.opt_id("runId")?;
    if session.is_none() && run.is_none() {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            "artifacts:create needs sessionId (or threadId) or runId.",
        )
        .into());
    }
    let mut fields = Object::new();
    if let Some(session) = session {
        super::common::load_active(tx, chat_sessions::TABLE, session, "Session")?;
        fields.insert("sessionId".into(), session.encode().into());
    }
    if let Some(run) = run {
        match session {
            Some(session) => runs::load_in_session(tx, run, session)?,
            None => load(tx, runs::TABLE, run, "Run")?,
        };
        fields.insert("runId".into(), run.encode().into());
    }
    insert(tx, fields, args)
}

fn update(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("artifactId")?;
    load(tx, TABLE, id, "Artifact")?;
    let mut changes = vec![("updatedAt".to_owned(), Some(Value::from(tx.now_ms())))];
    changes.extend(DETAILS.iter().filter_map(|f| Some(((*f).to_owned(), Some(args.get(f)?.clone())))));
    tx.patch(TABLE, id, changes)?;
    Ok(Value::Null)
}

fn list_by_run(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let run = args.id("runId")?;
    if !tx.may_list_under(tables::RUNS, run)? {
        return Ok(empty_list(&request));
    }
    let range = IndexRange::default().eq(run.encode());
    request.run(tx.query_unchecked(TABLE, "by_run", range, list_order(args, Order::Asc))?, All)
}

fn list_by_session(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_sessions::list_in_session(tx, TABLE, args, Order::Asc, All)
}
