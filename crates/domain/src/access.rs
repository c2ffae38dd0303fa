//! Who may call what, and who may see which document.
//!
//! Every function declares an [`Audience`]: worker functions (the writes of
//! runs, steps, events, artifacts and tool calls, work-order status and
//! results, agent state, and the operator views across all sessions) are for
//! admins; the rest are open to signed-in users too. A user sees only what
//! belongs to their own sessions: a session whose `userId` is their subject or
//! token identifier, and every document that hangs off such a session. The
//! rest reads as if it did not exist, so ids cannot be probed. Teams and repos
//! are shared by everyone signed in.
//!
//! Handlers get a [`Ctx`]: the transaction plus the caller, and no other way to
//! the database. Its reads say at the call site whether they check: by id,
//! [`Ctx::get_owned`] applies the ownership rule (no handler reads by id without
//! it); index reads are [`Ctx::query_unchecked`], made safe by checking their
//! parent document first ([`Ctx::may_list_under`], a checked load) or by
//! filtering with [`Ctx::owned`].

use std::borrow::Cow;

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::Schema;
use jangar_engine::storage::Order;
use jangar_engine::transaction::{Keep, Query, Transaction};
use jangar_engine::value::{Object, Value};

use super::error::{AppError, ErrorCode, FunctionError};
use super::schema::tables;

/// Whose documents a call sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Viewer {
    /// An admin, or anyone in open development mode.
    Everything,
    /// A signed-in user (or an admin acting as one).
    User(User),
}

/// The parts of a user identity that ownership depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    /// `issuer|subject`, Convex's stable name for a user across providers.
    pub token_identifier: String,
    /// The bare subject also names the user, where only one provider issues
    /// subjects (with two, the same subject may be two different people).
    pub subject: Option<String>,
}

impl Viewer {
    /// A key that separates cached results of different viewers.
    pub(crate) fn key(&self) -> String {
        match self {
            Viewer::Everything => "*".into(),
            Viewer::User(user) => {
                format!("user {}\u{0}{}", user.token_identifier, user.subject.as_deref().unwrap_or(""))
            }
        }
    }

    /// May this viewer act for the user named `user_id` (a session's `userId`)?
    pub fn is(&self, user_id: &str) -> bool {
        match self {
            Viewer::Everything => true,
            // A bare subject never names a token identifier (`issuer|subject`): a subject
            // "https://issuer|bob" must not own Bob's sessions.
            Viewer::User(user) => {
                user_id == user.token_identifier || (!user_id.contains('|') && user.subject.as_deref() == Some(user_id))
            }
        }
    }
}

/// Who is calling a function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub viewer: Viewer,
    /// Holds an admin key (possibly acting as a user): may call worker functions.
    pub admin: bool,
}

impl Caller {
    /// An admin, or anyone in open development mode.
    pub const ADMIN: Caller = Caller { viewer: Viewer::Everything, admin: true };
}

/// Who a function is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Admins only: the agent workers and operators.
    Workers,
    /// Admins, and users on their own documents.
    Users,
}

impl Audience {
    pub(crate) fn admits(self, caller: &Caller, path: &str) -> Result<(), FunctionError> {
        if self == Audience::Workers && !caller.admin {
            let message = format!("{path} is a worker function: it needs an admin key.");
            return Err(AppError::new(ErrorCode::Forbidden, message).into());
        }
        Ok(())
    }
}

/// A handler's view of the database: the transaction, seen as the caller.
/// It does not hand out the transaction, so every read goes through a method
/// whose name says whether it checks ownership.
pub struct Ctx<'c, 'a> {
    tx: &'c mut Transaction<'a>,
    caller: &'c Caller,
}

impl<'c, 'a> Ctx<'c, 'a> {
    pub fn new(tx: &'c mut Transaction<'a>, caller: &'c Caller) -> Ctx<'c, 'a> {
        Ctx { tx, caller }
    }

    /// Whom the function runs for.
    pub(crate) fn viewer(&self) -> &Viewer {
        &self.caller.viewer
    }

    /// The deployment's tables.
    pub(crate) fn schema(&self) -> &'a Schema {
        self.tx.schema()
    }

    /// The transaction's time, in milliseconds since the epoch.
    pub(crate) fn now_ms(&self) -> f64 {
        self.tx.now_ms()
    }

    /// The document, or `None` when it does not exist or the caller may not see
    /// it (as if it did not exist, so ids cannot be probed). The right read for
    /// any id that came from the caller, and for whatever a result will show.
    pub(crate) fn get_owned(&mut self, table: &str, id: DocumentId) -> Result<Option<Document>, EngineError> {
        let Some(document) = self.tx.get(table, id)? else { return Ok(None) };
        Ok(may_see(self.tx, &self.caller.viewer, table, &document)?.then_some(document))
    }

    /// A point read that checks nothing: for what no user owns (the auth tables), read by the
    /// sign-in flows and by worker functions.
    pub(crate) fn get_unchecked(&mut self, table: &str, id: DocumentId) -> Result<Option<Document>, EngineError> {
        self.tx.get(table, id)
    }

    /// An index read that checks nothing by itself. Right when the caller may
    /// see everything under the range (its parent passed [`Ctx::may_list_under`]
    /// or a checked load, or the function is for workers and shows what no
    /// session owns), or with [`Ctx::owned`] as the filter of its results.
    pub(crate) fn query_unchecked<'t>(
        &'t mut self,
        table: &str,
        index: &str,
        range: IndexRange,
        order: Order,
    ) -> Result<Query<'t, 'a>, EngineError> {
        self.tx.query(table, index, range, order)
    }

    /// Inserts a document. Writes check nothing: check the documents they hang off first.
    pub(crate) fn insert(&mut self, table: &str, fields: Object) -> Result<DocumentId, EngineError> {
        self.tx.insert(table, fields)
    }

    /// Sets (`Some`) or removes (`None`) fields of a document the handler has
    /// already loaded with a checked read; returns the new version.
    pub(crate) fn patch(
        &mut self,
        table: &str,
        id: DocumentId,
        changes: impl IntoIterator<Item = (String, Option<Value>)>,
    ) -> Result<Document, EngineError> {
        self.tx.patch(table, id, changes)
    }

    /// Deletes a document the handler has already loaded with a checked read.
    pub(crate) fn delete(&mut self, table: &str, id: DocumentId) -> Result<Document, EngineError> {
        self.tx.delete(table, id)
    }

    /// May the caller list the documents under this parent? Admins may (without
    /// reading it: a missing parent lists nothing anyway); users only under a
    /// parent they can see.
    pub(crate) fn may_list_under(&mut self, table: &str, id: DocumentId) -> Result<bool, EngineError> {
        match self.caller.viewer {
            Viewer::Everything => Ok(true),
            Viewer::User(_) => Ok(self.get_owned(table, id)?.is_some()),
        }
    }

    /// Arguments that name a user (`userId`, `requestedBy`, ...) must name the
    /// caller, unless the caller sees everything (an admin).
    pub(crate) fn check_user_id(&self, argument: &str, user_id: &str) -> Result<(), FunctionError> {
        if self.caller.viewer.is(user_id) {
            return Ok(());
        }
        let message = format!("{argument} {user_id:?} is not the signed-in user.");
        Err(AppError::new(ErrorCode::Forbidden, message).with(argument, user_id).into())
    }

    /// Keeps the documents of `table` that the caller may see and `also` keeps.
    pub(crate) fn owned<F: Fn(&Document) -> bool>(&self, table: &'static str, also: F) -> Owned<F> {
        Owned { viewer: self.caller.viewer.clone(), table, also }
    }
}

/// A list filter: the documents the viewer may see, among those `also` keeps.
pub(crate) struct Owned<F> {
    viewer: Viewer,
    table: &'static str,
    also: F,
}

impl<F: Fn(&Document) -> bool> Keep for Owned<F> {
    fn keep(&mut self, tx: &mut Transaction<'_>, document: &Document) -> Result<bool, EngineError> {
        Ok((self.also)(document) && may_see(tx, &self.viewer, self.table, document)?)
    }
}

/// The link from a document to the one that owns it, tried in order: the
/// first of these fields that is set names the owner.
const OWNER_LINKS: [(&str, &str); 3] =
    [("sessionId", tables::CHAT_SESSIONS), ("runId", tables::RUNS), ("workOrderId", tables::WORK_ORDERS)];

/// Follows owner links up to a session (at most run -> work order -> session).
fn may_see(tx: &mut Transaction<'_>, viewer: &Viewer, table: &str, document: &Document) -> Result<bool, EngineError> {
    let Viewer::User(_) = viewer else { return Ok(true) };
    let mut table = table;
    let mut document = Cow::Borrowed(document);
    loop {
        match table {
            tables::CHAT_SESSIONS => {
                return Ok(document.fields.get("userId").and_then(Value::as_str).is_some_and(|u| viewer.is(u)));
            }
            tables::TEAMS | tables::REPOS => return Ok(true),
            // A user sees their own user document (`users:viewer`), and no one else's.
            tables::USERS => return Ok(viewer.is(&document.id.encode())),
            _ => {}
        }
        let link = OWNER_LINKS.iter().find_map(|(field, parent)| {
            let id = document.fields.get(*field)?.as_str().and_then(|text| DocumentId::decode(text).ok())?;
            Some((*parent, id))
        });
        // A document that hangs off no session belongs to the workers alone.
        let Some((parent, id)) = link else { return Ok(false) };
        let Some(owner) = tx.get(parent, id)? else { return Ok(false) };
        table = parent;
        document = Cow::Owned(owner);
    }
}
