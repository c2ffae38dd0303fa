//! `sessions:*` — the session API of seeds 001 and 003, over the same
//! `chat_sessions` table as `chatSessions:*`.

use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::chat_sessions::{self, TABLE};
use super::common::{Args, Deleted, ListRequest, documents, list_args, list_of, list_order, maybe, object, visible};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::tables;
use jangar_engine::knobs::MAX_LIST_LIMIT;

pub(crate) fn functions() -> Vec<Function> {
    let session_id = || ("sessionId", v::id(TABLE));
    let with_threads = v::union(vec![
        v::object(vec![
            ("session", v::document(TABLE)),
            ("messages", v::array(v::document(tables::CHAT_MESSAGES))),
            ("workOrders", v::array(v::document(tables::WORK_ORDERS))),
        ]),
        v::null(),
    ]);
    vec![
        Function::mutation(
            "sessions:create",
            v::object(vec![
                ("userId", v::string()),
                ("title", v::optional(v::string())),
                ("repoId", v::optional(v::id(tables::REPOS))),
            ]),
            v::id(TABLE),
            create,
        ),
        Function::query("sessions:list", list_args(vec![("userId", v::string())]), list_of(TABLE), list),
        Function::query("sessions:get", v::object(vec![session_id()]), maybe(TABLE), get),
        Function::query("sessions:getWithThreads", v::object(vec![session_id()]), with_threads, get_with_threads),
        Function::query(
            "sessions:listByRepo",
            list_args(vec![("repoId", v::id(tables::REPOS))]),
            list_of(TABLE),
            list_by_repo,
        ),
        Function::mutation("sessions:updateLastActive", v::object(vec![session_id()]), v::null(), update_last_active),
    ]
}

pub(crate) const DEFAULT_TITLE: &str = "New session";

pub(crate) fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let title = args.opt_str("title").unwrap_or(DEFAULT_TITLE);
    chat_sessions::insert_session(tx, args.str("userId"), title, args.opt_id("repoId")?)
}

pub(crate) fn list(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_sessions::list(tx, args)
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(chat_sessions::find(tx, args.id("sessionId")?, Deleted::Hidden)?.map_or(Value::Null, |d| d.to_value()))
}

/// A session with its messages (oldest first) and work orders (newest first), at most 1000 of each.
fn get_with_threads(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("sessionId")?;
    let Some(session) = chat_sessions::find(tx, id, Deleted::Hidden)? else { return Ok(Value::Null) };
    let range = || IndexRange::default().eq(id.encode());
    let messages = tx
        .query_unchecked(tables::CHAT_MESSAGES, "by_session", range(), Order::Asc)?
        .take(MAX_LIST_LIMIT, visible(Deleted::Hidden))?;
    let orders = tx
        .query_unchecked(tables::WORK_ORDERS, "by_session", range(), Order::Desc)?
        .take(MAX_LIST_LIMIT, visible(Deleted::Hidden))?;
    Ok(Value::Object(object([
        ("session", session.to_value()),
        ("messages", documents(messages)),
        ("workOrders", documents(orders)),
    ])))
}

fn list_by_repo(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let range = IndexRange::default().eq(args.id("repoId")?.encode());
    // A repo is shared; its sessions are not: users list their own.
    let keep = tx.owned(TABLE, visible(Deleted::Hidden));
    request.run(tx.query_unchecked(TABLE, "by_repo_recent", range, list_order(args, Order::Desc))?, keep)
}

fn update_last_active(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_sessions::touch(tx, args.id("sessionId")?, &["lastActiveAt"])?;
    Ok(Value::Null)
}
