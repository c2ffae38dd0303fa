//! `chatMessages:*` — the messages of a session, oldest first.

use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::chat_sessions;
use super::common::{
    Args, Deleted, ListRequest, SoftDelete, documents, empty_list, list_args, list_of, list_order, object, set_deleted,
    visible,
};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::{MESSAGE_ROLES, tables};

pub(crate) const TABLE: &str = tables::CHAT_MESSAGES;

pub(crate) fn functions() -> Vec<Function> {
    let message_id = || ("messageId", v::id(TABLE));
    vec![
        Function::mutation(
            "chatMessages:append",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("role", v::one_of(MESSAGE_ROLES)),
                ("content", v::string()),
                ("metadata", v::optional(v::any())),
            ]),
            v::id(TABLE),
            append,
        ),
        Function::query(
            "chatMessages:listBySession",
            list_args(vec![("sessionId", v::id(chat_sessions::TABLE)), ("includeDeleted", v::optional(v::boolean()))]),
            list_of(TABLE),
            list_by_session,
        ),
        Function::mutation("chatMessages:remove", v::object(vec![message_id()]), v::null(), remove),
        Function::mutation("chatMessages:restore", v::object(vec![message_id()]), v::null(), restore),
    ]
}

/// Inserts a message into a live session and bumps the session's activity
/// times in the same transaction. `extra` holds optional fields (metadata, changes, ...).
pub(crate) fn insert_message(
    tx: &mut Ctx<'_, '_>,
    session_id: DocumentId,
    role: &str,
    content: &str,
    extra: Object,
) -> FunctionResult {
    chat_sessions::touch(tx, session_id, &["lastMessageAt", "lastActiveAt", "updatedAt"])?;
    let now = Value::from(tx.now_ms());
    let mut fields = object([
        ("sessionId", session_id.encode().into()),
        ("role", role.into()),
        ("content", content.into()),
        ("createdAt", now.clone()),
        ("updatedAt", now),
    ]);
    fields.extend(extra);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}

fn append(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let mut extra = Object::new();
    args.copy_into(&mut extra, &["metadata"]);
    insert_message(tx, args.id("sessionId")?, args.str("role"), args.str("content"), extra)
}

/// Messages of a session. Without `order`: chronological; with `limit`, the
/// newest `limit` messages (what a chat view shows), with `paginationOpts`,
/// pages from the oldest on. With `order`, in that order from its start
/// (`desc`: a chat view that opens on the newest and pages back in time). A
/// hidden session has no visible messages.
pub(crate) fn list_messages(tx: &mut Ctx<'_, '_>, session_id: DocumentId, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let deleted = Deleted::as_asked(args);
    if chat_sessions::find(tx, session_id, deleted)?.is_none() {
        return Ok(empty_list(&request));
    }
    let range = IndexRange::default().eq(session_id.encode());
    match (request, args.get("order")) {
        (ListRequest::Limit(limit), None) => {
            let mut newest =
                tx.query_unchecked(TABLE, "by_session", range, Order::Desc)?.take(limit, visible(deleted))?;
            newest.reverse();
            Ok(documents(newest))
        }
        (request, _) => {
            request.run(tx.query_unchecked(TABLE, "by_session", range, list_order(args, Order::Asc))?, visible(deleted))
        }
    }
}

fn list_by_session(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    list_messages(tx, args.id("sessionId")?, args)
}

fn remove(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("messageId")?, "Message", SoftDelete::Delete)
}

fn restore(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("messageId")?, "Message", SoftDelete::Restore)
}
