//! `users:*` — the signed-in user (`users:viewer`), and operators' account tools (`jangar users`).

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::{BY_CREATION_TIME, v};
use jangar_engine::storage::Order;
use jangar_engine::transaction::All;
use jangar_engine::value::Value;

use super::access::{Ctx, Viewer};
use super::auth;
use super::common::{Args, ListRequest, list_args, list_of, maybe};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;

pub(crate) const TABLE: &str = tables::USERS;

pub(crate) fn functions() -> Vec<Function> {
    let email = || ("email", v::string());
    vec![
        Function::query("users:viewer", v::object(vec![]), maybe(TABLE), viewer),
        Function::query("users:list", list_args(vec![]), list_of(TABLE), list).for_workers(),
        Function::mutation("users:disable", v::object(vec![email()]), v::id(TABLE), disable).for_workers(),
        Function::mutation(
            "users:setPassword",
            v::object(vec![email(), ("passwordHash", v::string())]),
            v::id(TABLE),
            set_password,
        )
        .for_workers(),
    ]
}

/// The caller's user document: a user this deployment signed in (`getAuthUserId`'s user);
/// null for anyone else (signed out, an admin, a user of another identity provider).
fn viewer(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let Viewer::User(user) = tx.viewer() else { return Ok(Value::Null) };
    let Some(id) = user.subject.as_deref().and_then(|subject| DocumentId::decode(subject).ok()) else {
        return Ok(Value::Null);
    };
    if tx.schema().table_by_number(id.table).map(|t| t.name) != Some(TABLE) {
        return Ok(Value::Null);
    }
    Ok(tx.get_owned(TABLE, id)?.map_or(Value::Null, |user| user.to_value()))
}

fn list(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    request.run(tx.query_unchecked(TABLE, BY_CREATION_TIME, IndexRange::default(), Order::Asc)?, All)
}

/// The user whose password account is `email`.
fn by_email(tx: &mut Ctx<'_, '_>, email: &str) -> Result<Document, FunctionError> {
    let user = auth::password_user(tx, email)?;
    user.ok_or_else(|| AppError::new(ErrorCode::NotFound, format!("No user signs in as {email}.")).into())
}

/// Stops a user signing in, and ends every session they have.
fn disable(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let user = by_email(tx, args.str("email"))?;
    let now = tx.now_ms();
    tx.patch(TABLE, user.id, [("disabledTime".to_owned(), Some(now.into()))])?;
    auth::end_sessions_of(tx, user.id)?;
    Ok(user.id.encode().into())
}

/// Gives a user a new password (hashed by the caller: `jangar users reset-password` hashes it
/// where it runs), ends their sessions, and lifts a rate limit on their sign-ins.
fn set_password(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let hash = args.str("passwordHash");
    if !hash.starts_with("$argon2id$") {
        let message = "passwordHash must be an argon2id PHC string (`$argon2id$...`).";
        return Err(AppError::new(ErrorCode::InvalidArgument, message).into());
    }
    let user = by_email(tx, args.str("email"))?;
    auth::replace_password(tx, args.str("email"), hash)?;
    auth::end_sessions_of(tx, user.id)?;
    Ok(user.id.encode().into())
}
