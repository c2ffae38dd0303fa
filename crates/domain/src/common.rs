//! Helpers every function module uses: typed argument access, soft delete,
//! list arguments (`limit` / `paginationOpts` / `order`) and status transitions.

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::knobs::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use jangar_engine::schema::{Validator, v};
use jangar_engine::storage::Order;
use jangar_engine::transaction::{Keep, Query};
use jangar_engine::value::{Object, Value};

use super::access::Ctx;
use super::error::{AppError, ErrorCode, FunctionError};
use super::status::{Status, Word};

/// A function's arguments, already checked against its validator.
pub struct Args(pub Object);

impl Args {
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A required string (the validator guarantees presence and type).
    pub(crate) fn str(&self, name: &str) -> &str {
        self.opt_str(name).unwrap_or_default()
    }

    pub(crate) fn opt_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub(crate) fn opt_f64(&self, name: &str) -> Option<f64> {
        self.0.get(name).and_then(Value::as_f64)
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(Value::Boolean(true)))
    }

    /// An id argument (validated as `v.id(table)`, so decoding cannot fail).
    pub(crate) fn id(&self, name: &str) -> Result<DocumentId, FunctionError> {
        let text = self.str(name);
        DocumentId::decode(text).map_err(|e| AppError::new(ErrorCode::InvalidArgument, format!("{name}: {e}")).into())
    }

    /// A word argument (validated as a union of the enum's literals, so parsing cannot fail).
    pub(crate) fn word<W: Word>(&self, name: &str) -> Result<W, FunctionError> {
        let text = self.str(name);
        W::parse(text).ok_or_else(|| {
            AppError::new(ErrorCode::InvalidArgument, format!("{name}: {text:?} is not allowed.")).into()
        })
    }

    pub(crate) fn opt_word<W: Word>(&self, name: &str) -> Result<Option<W>, FunctionError> {
        self.0.get(name).map(|_| self.word(name)).transpose()
    }

    pub(crate) fn opt_id(&self, name: &str) -> Result<Option<DocumentId>, FunctionError> {
        self.0.get(name).map(|_| self.id(name)).transpose()
    }

    /// Copies the named optional fields that are present into `fields`.
    pub(crate) fn copy_into(&self, fields: &mut Object, names: &[&str]) {
        for name in names {
            if let Some(value) = self.0.get(*name) {
                fields.insert((*name).to_owned(), value.clone());
            }
        }
    }
}

/// The session a call names, as `sessionId` or (seed 004) `threadId`: exactly one of them.
pub(crate) fn session_or_thread(args: &Args) -> Result<DocumentId, FunctionError> {
    match (args.get("sessionId"), args.get("threadId")) {
        (Some(_), None) => args.id("sessionId"),
        (None, Some(_)) => args.id("threadId"),
        _ => Err(AppError::new(ErrorCode::InvalidArgument, "Pass exactly one of sessionId and threadId.").into()),
    }
}

/// Builds an object from pairs, for documents and results.
pub(crate) fn object<const N: usize>(pairs: [(&str, Value); N]) -> Object {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) fn is_deleted(document: &Document) -> bool {
    matches!(document.fields.get("deletedAt"), Some(Value::Float64(_)))
}

/// Reads a document that must exist and must not be soft-deleted.
pub(crate) fn load_active(
    tx: &mut Ctx<'_, '_>,
    table: &str,
    id: DocumentId,
    what: &str,
) -> Result<Document, FunctionError> {
    let document = load(tx, table, id, what)?;
    if is_deleted(&document) {
        return Err(AppError::new(ErrorCode::Deleted, format!("{what} {id} is deleted."))
            .with("id", id.encode())
            .into());
    }
    Ok(document)
}

/// Reads a document that must exist (soft-deleted or not).
pub(crate) fn load(tx: &mut Ctx<'_, '_>, table: &str, id: DocumentId, what: &str) -> Result<Document, FunctionError> {
    tx.get_owned(table, id)?.ok_or_else(|| {
        AppError::new(ErrorCode::NotFound, format!("{what} {id} does not exist.")).with("id", id.encode()).into()
    })
}

/// A soft delete, or its undoing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SoftDelete {
    Delete,
    Restore,
}

/// `deletedAt = now` (kept as it was if already set) or cleared, on any soft-deletable table.
pub(crate) fn set_deleted(
    tx: &mut Ctx<'_, '_>,
    table: &str,
    id: DocumentId,
    what: &str,
    change: SoftDelete,
) -> Result<Value, FunctionError> {
    let document = load(tx, table, id, what)?;
    let deleted = change == SoftDelete::Delete;
    if is_deleted(&document) == deleted {
        return Ok(Value::Null);
    }
    let now = tx.now_ms();
    let deleted_at = deleted.then_some(Value::from(now));
    tx.patch(table, id, [("deletedAt".to_owned(), deleted_at), ("updatedAt".to_owned(), Some(now.into()))])?;
    Ok(Value::Null)
}

/// The argument fields every list query accepts.
pub(crate) fn list_args(mut fields: Vec<(&'static str, Validator)>) -> Validator {
    fields.push(("limit", v::optional(v::count())));
    // Through the same index either way; without it, each list's own order.
    fields.push(("order", v::optional(v::union(vec![v::literal("asc"), v::literal("desc")]))));
    fields.push((
        "paginationOpts",
        v::optional(v::object(vec![
            ("numItems", v::count()),
            ("cursor", v::union(vec![v::string(), v::null()])),
            // The page ends at this cursor (inclusive) instead of after numItems documents.
            ("endCursor", v::optional(v::union(vec![v::string(), v::null()]))),
            // usePaginatedQuery tags its requests with an id; it does not change the result.
            ("id", v::optional(v::count())),
            // Convex's per-page read budgets; this server's per-transaction limits apply instead.
            ("maximumRowsRead", v::optional(v::count())),
            ("maximumBytesRead", v::optional(v::count())),
        ])),
    ));
    v::object(fields)
}

/// The result of a list query: an array, or Convex's page object with `paginationOpts`.
pub(crate) fn list_of(table: &'static str) -> Validator {
    v::union(vec![
        v::array(v::document(table)),
        v::object(vec![
            ("page", v::array(v::document(table))),
            ("isDone", v::boolean()),
            ("continueCursor", v::string()),
        ]),
    ])
}

/// A document of `table`, or null.
pub(crate) fn maybe(table: &'static str) -> Validator {
    v::union(vec![v::document(table), v::null()])
}

/// What a list query was asked for.
pub(crate) enum ListRequest {
    Limit(usize),
    Page { num_items: usize, cursor: Option<String>, end_cursor: Option<String> },
}

fn whole_number(value: f64, name: &str) -> Result<usize, FunctionError> {
    if value.fract() != 0.0 || !(1.0..=MAX_LIST_LIMIT as f64).contains(&value) {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("{name} must be a whole number from 1 to {MAX_LIST_LIMIT}, not {value}."),
        )
        .into());
    }
    Ok(value as usize)
}

impl ListRequest {
    pub(crate) fn from_args(args: &Args) -> Result<ListRequest, FunctionError> {
        match (args.opt_f64("limit"), args.get("paginationOpts")) {
            (Some(_), Some(_)) => {
                Err(AppError::new(ErrorCode::InvalidArgument, "Pass either limit or paginationOpts, not both.").into())
            }
            (limit, None) => Ok(ListRequest::Limit(
                limit.map(|l| whole_number(l, "limit")).transpose()?.unwrap_or(DEFAULT_LIST_LIMIT),
            )),
            (None, Some(Value::Object(opts))) => Ok(ListRequest::Page {
                num_items: whole_number(
                    opts.get("numItems").and_then(Value::as_f64).unwrap_or(0.0),
                    "paginationOpts.numItems",
                )?,
                cursor: opts.get("cursor").and_then(Value::as_str).map(str::to_owned),
                end_cursor: opts.get("endCursor").and_then(Value::as_str).map(str::to_owned),
            }),
            (None, Some(_)) => {
                Err(AppError::new(ErrorCode::InvalidArgument, "paginationOpts must be an object.").into())
            }
        }
    }

    /// Runs the request on `query`: an array for `limit`, Convex's page object for `paginationOpts`.
    pub(crate) fn run(self, query: Query<'_, '_>, keep: impl Keep) -> Result<Value, FunctionError> {
        match self {
            ListRequest::Limit(limit) => Ok(documents(query.take(limit, keep)?)),
            ListRequest::Page { num_items, cursor, end_cursor } => {
                let page = query.paginate(num_items, cursor.as_deref(), end_cursor.as_deref(), keep)?;
                Ok(Value::Object(object([
                    ("page", documents(page.page)),
                    ("isDone", page.is_done.into()),
                    ("continueCursor", page.continue_cursor.into()),
                ])))
            }
        }
    }
}

pub(crate) fn documents(documents: Vec<Document>) -> Value {
    Value::Array(documents.into_iter().map(Document::into_value).collect())
}

/// An empty list in the shape the request asked for (for a hidden parent).
pub(crate) fn empty_list(request: &ListRequest) -> Value {
    match request {
        ListRequest::Limit(_) => Value::Array(Vec::new()),
        ListRequest::Page { .. } => Value::Object(object([
            ("page", Value::Array(Vec::new())),
            ("isDone", true.into()),
            ("continueCursor", "".into()),
        ])),
    }
}

/// Whether soft-deleted documents count as present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    Hidden,
    Shown,
}

impl Deleted {
    /// As the function's `includeDeleted` argument asks (hidden without it).
    pub(crate) fn as_asked(args: &Args) -> Deleted {
        if args.flag("includeDeleted") { Deleted::Shown } else { Deleted::Hidden }
    }

    /// Whether `document` counts as present.
    pub(crate) fn shows(self, document: &Document) -> bool {
        self == Deleted::Shown || !is_deleted(document)
    }
}

/// A filter keeping the documents that count as present.
pub(crate) fn visible(deleted: Deleted) -> impl Fn(&Document) -> bool {
    move |d| deleted.shows(d)
}

/// The order a list query asked for (`order: "asc" | "desc"`), else the list's own.
pub(crate) fn list_order(args: &Args, default: Order) -> Order {
    match args.opt_str("order") {
        Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        _ => default,
    }
}

/// Checks a status change against its state machine. `Ok(false)` means the
/// status is unchanged (a no-op); an illegal move is `InvalidTransition`.
pub(crate) fn check_transition<S: Status>(from: S, to: S) -> Result<bool, FunctionError> {
    if from == to {
        return Ok(false);
    }
    if !S::may_move(from, to) {
        let (from, to) = (from.as_str(), to.as_str());
        return Err(AppError::new(ErrorCode::InvalidTransition, format!("Cannot move from {from} to {to}."))
            .with("from", from)
            .with("to", to)
            .into());
    }
    Ok(true)
}
