//! `threads:*` — seed 004's name for sessions: `threadId` names a chat session.

use jangar_engine::schema::v;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::chat_sessions::{self, TABLE};
use super::common::{Args, Deleted, SoftDelete, list_args, list_of, maybe, session_or_thread, set_deleted};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::{MESSAGE_ROLES, tables};
use super::{chat_messages, sessions};

pub(crate) fn functions() -> Vec<Function> {
    let thread_id = || ("threadId", v::id(TABLE));
    vec![
        Function::mutation(
            "threads:create",
            v::object(vec![
                ("userId", v::string()),
                ("title", v::optional(v::string())),
                ("repoId", v::optional(v::id(tables::REPOS))),
            ]),
            v::id(TABLE),
            sessions::create,
        ),
        Function::query("threads:list", list_args(vec![("userId", v::string())]), list_of(TABLE), sessions::list),
        Function::query("threads:get", v::object(vec![thread_id()]), maybe(TABLE), get),
        Function::mutation("threads:remove", v::object(vec![thread_id()]), v::null(), remove),
        Function::mutation(
            "threads:append",
            v::object(vec![
                ("sessionId", v::optional(v::id(TABLE))),
                ("threadId", v::optional(v::id(TABLE))),
                ("role", v::one_of(MESSAGE_ROLES)),
                ("content", v::string()),
                ("metadata", v::optional(v::any())),
            ]),
            v::id(tables::CHAT_MESSAGES),
            append,
        ),
    ]
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(chat_sessions::find(tx, args.id("threadId")?, Deleted::Hidden)?.map_or(Value::Null, |d| d.to_value()))
}

fn remove(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    set_deleted(tx, TABLE, args.id("threadId")?, "Thread", SoftDelete::Delete)
}

fn append(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let mut extra = Object::new();
    args.copy_into(&mut extra, &["metadata"]);
    chat_messages::insert_message(tx, session_or_thread(args)?, args.str("role"), args.str("content"), extra)
}
