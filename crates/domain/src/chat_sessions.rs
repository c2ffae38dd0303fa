//! `chatSessions:*` — chat sessions, listed by user and most recent message.

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::transaction::Keep;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{
    Args, Deleted, ListRequest, SoftDelete, empty_list, list_args, list_of, list_order, load_active, maybe, object,
    set_deleted, visible,
};
use super::error::{FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;

pub(crate) const TABLE: &str = tables::CHAT_SESSIONS;

pub(crate) fn functions() -> Vec<Function> {
    let session_id = || ("sessionId", v::id(TABLE));
    vec![
        Function::mutation(
            "chatSessions:create",
            v::object(vec![
                ("userId", v::string()),
                ("title", v::string()),
                ("repoId", v::optional(v::id(tables::REPOS))),
            ]),
            v::id(TABLE),
            create,
        ),
        Function::query(
            "chatSessions:list",
            list_args(vec![("userId", v::string()), ("includeDeleted", v::optional(v::boolean()))]),
            list_of(TABLE),
            list,
        ),
        Function::query(
            "chatSessions:get",
            v::object(vec![session_id(), ("includeDeleted", v::optional(v::boolean()))]),
            maybe(TABLE),
            get,
        ),
        Function::mutation(
            "chatSessions:updateLastMessage",
            v::object(vec![session_id()]),
            v::null(),
            update_last_message,
        ),
        Function::mutation(
            "chatSessions:rename",
            v::object(vec![session_id(), ("title", v::string())]),
            v::null(),
            rename,
        ),
        Function::mutation("chatSessions:remove", v::object(vec![session_id()]), v::null(), remove),
        Function::mutation("chatSessions:restore", v::object(vec![session_id()]), v::null(), restore),
    ]
}

/// Inserts a session for `userId` (the caller, unless an admin); a given `repoId` must name an existing repo.
pub(crate) fn insert_session(
    tx: &mut Ctx<'_, '_>,
    user_id: &str,
    title: &str,
    repo_id: Option<DocumentId>,
) -> FunctionResult {
    tx.check_user_id("userId", user_id)?;
    if let Some(repo_id) = repo_id {
        super::common::load(tx, tables::REPOS, repo_id, "Repo")?;
    }
    let now = Value::from(tx.now_ms());
    let mut fields = object([
        ("userId", user_id.into()),
        ("title", title.into()),
        ("lastMessageAt", now.clone()),
        ("lastActiveAt", now.clone()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]);
    if let Some(repo_id) = repo_id {
        fields.insert("repoId".into(), repo_id.encode().into());
    }
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    insert_session(tx, args.str("userId"), args.str("title"), args.opt_id("repoId")?)
}

/// Sessions of `userId` (the caller, unless an admin), latest message first.
pub(crate) fn list(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    tx.check_user_id("userId", args.str("userId"))?;
    let range = IndexRange::default().eq(args.str("userId"));
    let query = tx.query_unchecked(TABLE, "by_user_recent", range, list_order(args, Order::Desc))?;
    request.run(query, visible(Deleted::as_asked(args)))
}

/// A session by id, or null when it does not exist or is hidden.
pub(crate) fn find(tx: &mut Ctx<'_, '_>, id: DocumentId, deleted: Deleted) -> Result<Option<Document>, FunctionError> {
    Ok(tx.get_owned(TABLE, id)?.filter(|d| deleted.shows(d)))
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(find(tx, args.id("sessionId")?, Deleted::as_asked(args))?.map_or(Value::Null, |d| d.to_value()))
}

/// Documents of `table` in one session (the `sessionId` argument), through the
/// table's `by_session` index; a hidden session has none.
pub(crate) fn list_in_session(
    tx: &mut Ctx<'_, '_>,
    table: &str,
    args: &Args,
    default_order: Order,
    keep: impl Keep,
) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let session = args.id("sessionId")?;
    if find(tx, session, Deleted::as_asked(args))?.is_none() {
        return Ok(empty_list(&request));
    }
    let range = IndexRange::default().eq(session.encode());
    let query = tx.query_unchecked(table, "by_session", range, list_order(args, default_order))?;
    request.run(query, keep)
}

/// Sets the named timestamp fields of a live session to now.
pub(crate) fn touch(tx: &mut Ctx<'_, '_>, id: DocumentId, fields: &[&str]) -> Result<(), FunctionError> {
    load_active(tx, TABLE, id, "Session")?;
    let now = tx.now_ms();
    tx.patch(TABLE, id, fields.iter().map(|f| ((*f).to_owned(), Some(Value::from(now)))))?;
    Ok(())
}

fn update_last_message(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    touch(tx, args.id("sessionId")?, &["lastMessageAt", "lastActiveAt", "updatedAt"])?;
    Ok(Value::Null)
}

fn rename(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("sessionId")?;
    load_active(tx, TABLE, id, "Session")?;
    let now = tx.now_ms();
    tx.patch(
        TABLE,
        id,
        [("title".to_owned(), Some(args.str("title").into())), ("updatedAt".to_owned(), Some(now.into()))],
    )?;
    Ok(Value::Null)
}

fn remove(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("sessionId")?, "Session", SoftDelete::Delete)
}

fn restore(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("sessionId")?, "Session", SoftDelete::Restore)
}
