//! `messages:*` — the message API of seeds 003 and 004: sending with code
//! changes, streamed assistant messages, and committing their changes.

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::schema::v;
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::chat_messages::{self, TABLE};
use super::chat_sessions;
use super::common::{Args, list_args, list_of, load_active, object, session_or_thread};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::{MESSAGE_ROLES, changes_validator};

pub(crate) fn functions() -> Vec<Function> {
    let message_id = || ("messageId", v::id(TABLE));
    vec![
        Function::mutation(
            "messages:send",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("role", v::one_of(MESSAGE_ROLES)),
                ("content", v::string()),
                ("changes", v::optional(changes_validator())),
            ]),
            v::id(TABLE),
            send,
        ),
        Function::query(
            "messages:list",
            list_args(vec![
                ("sessionId", v::optional(v::id(chat_sessions::TABLE))),
                ("threadId", v::optional(v::id(chat_sessions::TABLE))),
            ]),
            list_of(TABLE),
            list,
        ),
        Function::mutation(
            "messages:createStreaming",
            v::object(vec![
                ("sessionId", v::id(chat_sessions::TABLE)),
                ("role", v::optional(v::one_of(MESSAGE_ROLES))),
            ]),
            v::id(TABLE),
            create_streaming,
        ),
        Function::mutation(
            "messages:appendStreamingContent",
            v::object(vec![message_id(), ("delta", v::string())]),
            v::null(),
            append_streaming_content,
        ),
        Function::mutation(
            "messages:finalizeStreaming",
            v::object(vec![
                message_id(),
                ("content", v::optional(v::string())),
                ("changes", v::optional(changes_validator())),
            ]),
            v::null(),
            finalize_streaming,
        ),
        Function::mutation(
            "messages:markChangesCommitted",
            v::object(vec![message_id(), ("commitSha", v::string()), ("prUrl", v::optional(v::string()))]),
            v::null(),
            mark_changes_committed,
        ),
    ]
}

/// Like `chatMessages:append`, with optional code changes; the first message also names the session's `firstMessage`.
fn send(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let session_id = args.id("sessionId")?;
    let session = load_active(tx, chat_sessions::TABLE, session_id, "Session")?;
    if !session.fields.contains_key("firstMessage") {
        tx.patch(chat_sessions::TABLE, session_id, [("firstMessage".to_owned(), Some(args.str("content").into()))])?;
    }
    let mut extra = Object::new();
    args.copy_into(&mut extra, &["changes"]);
    chat_messages::insert_message(tx, session_id, args.str("role"), args.str("content"), extra)
}

fn list(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    chat_messages::list_messages(tx, session_or_thread(args)?, args)
}

fn create_streaming(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let role = args.opt_str("role").unwrap_or("assistant");
    chat_messages::insert_message(tx, args.id("sessionId")?, role, "", object([("streaming", true.into())]))
}

/// A message that is still streaming (a finished one refuses more content).
fn load_streaming(tx: &mut Ctx<'_, '_>, id: DocumentId) -> Result<Document, FunctionError> {
    let message = load_active(tx, TABLE, id, "Message")?;
    if message.fields.get("streaming") != Some(&Value::Boolean(true)) {
        return Err(AppError::new(ErrorCode::Conflict, format!("Message {id} is not streaming."))
            .with("id", id.encode())
            .into());
    }
    Ok(message)
}

fn append_streaming_content(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("messageId")?;
    let message = load_streaming(tx, id)?;
    let content =
        format!("{}{}", message.fields.get("content").and_then(Value::as_str).unwrap_or_default(), args.str("delta"));
    let now = tx.now_ms();
    tx.patch(TABLE, id, [("content".to_owned(), Some(content.into())), ("updatedAt".to_owned(), Some(now.into()))])?;
    Ok(Value::Null)
}

fn finalize_streaming(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("messageId")?;
    load_streaming(tx, id)?;
    let now = tx.now_ms();
    let mut changes =
        vec![("streaming".to_owned(), Some(Value::Boolean(false))), ("updatedAt".to_owned(), Some(now.into()))];
    for field in ["content", "changes"] {
        if let Some(value) = args.get(field) {
            changes.push((field.to_owned(), Some(value.clone())));
        }
    }
    tx.patch(TABLE, id, changes)?;
    Ok(Value::Null)
}

/// Marks a message's code changes committed, keeping its list of files.
fn mark_changes_committed(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let id = args.id("messageId")?;
    let message = load_active(tx, TABLE, id, "Message")?;
    let Some(Value::Object(mut changes)) = message.fields.get("changes").cloned() else {
        return Err(AppError::new(ErrorCode::NoChanges, format!("Message {id} has no changes to commit."))
            .with("id", id.encode())
            .into());
    };
    changes.insert("committed".into(), true.into());
    changes.insert("commitSha".into(), args.str("commitSha").into());
    if let Some(url) = args.get("prUrl") {
        changes.insert("prUrl".into(), url.clone());
    }
    let now = tx.now_ms();
    tx.patch(
        TABLE,
        id,
        [("changes".to_owned(), Some(Value::Object(changes))), ("updatedAt".to_owned(), Some(now.into()))],
    )?;
    Ok(Value::Null)
}
