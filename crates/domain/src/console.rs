//! The system queries the web console reads (`_system/console/*`): the schema with its
//! indexes and validators, a page of any table through any of its indexes, and any document by
//! its id. Like the CLI's (`system.rs`) they know no table of the data model: the console's
//! data browser works on whatever the schema holds. All are admin-only.

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, ListRequest, object};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::Function;

pub(crate) fn functions() -> Vec<Function> {
    let bound = || v::optional(v::object(vec![("value", v::any()), ("inclusive", v::boolean())]));
    vec![
        Function::query("_system/console/schema:default", v::object(vec![]), v::any(), schema).for_workers(),
        Function::query(
            "_system/console/indexPage:default",
            v::object(vec![
                ("table", v::string()),
                ("index", v::string()),
                ("eq", v::optional(v::array(v::any()))),
                ("lower", bound()),
                ("upper", bound()),
                ("order", v::optional(v::one_of(&["asc", "desc"]))),
                ("includeDeleted", v::optional(v::boolean())),
                ("where", v::optional(v::array(v::object(vec![("field", v::string()), ("value", v::any())])))),
                ("paginationOpts", v::any()),
            ]),
            v::any(),
            index_page,
        )
        .for_workers(),
        Function::query(
            "_system/console/document:default",
            v::object(vec![("id", v::string())]),
            v::any(),
            document_by_id,
        )
        .for_workers(),
    ]
}

/// The app's tables (not the system tables) in number order, each with its number (the one an
/// id encodes), its indexes and their fields, and its document validator in Convex's JSON form
/// (where the console finds which fields are ids of which table).
fn schema(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let schema = tx.schema();
    let mut tables: Vec<_> = schema.tables().iter().filter(|t| !t.is_system()).collect();
    tables.sort_by_key(|t| t.number);
    let tables = tables
        .into_iter()
        .map(|table| {
            let indexes = table.indexes.iter().map(|index| {
                let fields = index.fields.iter().map(|f| Value::from(*f)).collect();
                Value::Object(object([("name", index.name.into()), ("fields", Value::Array(fields))]))
            });
            let document = Value::from_json(&table.document.to_convex_json(schema))
                .map_err(|e| FunctionError::Engine(EngineError::Schema(format!("{}: {e}", table.name))))?;
            Ok(Value::Object(object([
                ("name", table.name.into()),
                ("number", f64::from(table.number).into()),
                ("indexes", Value::Array(indexes.collect())),
                ("document", document),
            ])))
        })
        .collect::<Result<Vec<_>, FunctionError>>()?;
    Ok(Value::Array(tables))
}

/// One page of `table` through `index`: equal to `eq` on the index's first fields, then within
/// `lower`/`upper` on the next one (`_creationTime` after all of them), in `order` (descending unless `asc`). `where` keeps only the
/// documents whose top-level fields equal the values given (checked on the documents the range
/// reads, so pages may come back short, never wrong). Soft-deleted documents (`deletedAt` set)
/// are left out unless `includeDeleted`.
fn index_page(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let invalid = |message: String| FunctionError::from(AppError::new(ErrorCode::InvalidArgument, message));
    let name = args.str("table");
    let table = tx.schema().table(name).filter(|t| !t.is_system());
    let Some(table) = table else {
        return Err(AppError::new(ErrorCode::NotFound, format!("There is no table named {name:?}.")).into());
    };
    let index_name = args.str("index");
    let Some(index) = table.indexes.iter().find(|i| i.name == index_name) else {
        let names: Vec<&str> = table.indexes.iter().map(|i| i.name).collect();
        return Err(AppError::new(
            ErrorCode::NotFound,
            format!("Table {name:?} has no index {index_name:?}; its indexes are {}.", names.join(", ")),
        )
        .into());
    };
    let eq = match args.get("eq") {
        Some(Value::Array(values)) => values.clone(),
        _ => Vec::new(),
    };
    // After equal values on every field of the index, a range bounds `_creationTime`, the
    // field every index ends with.
    if eq.len() > index.fields.len() {
        let fields = if index.fields.is_empty() {
            "no field".to_owned()
        } else {
            format!("the field(s) {}", index.fields.join(", "))
        };
        return Err(invalid(format!(
            "Index {index_name:?} has {fields} before _creationTime: {} equal value(s) are too many.",
            eq.len()
        )));
    }
    let mut range = IndexRange::default();
    for value in eq {
        range = range.eq(value);
    }
    if let Some((value, inclusive)) = bound(args, "lower") {
        range = if inclusive { range.gte(value) } else { range.gt(value) };
    }
    if let Some((value, inclusive)) = bound(args, "upper") {
        range = if inclusive { range.lte(value) } else { range.lt(value) };
    }
    let wanted: Vec<(String, Value)> = match args.get("where") {
        Some(Value::Array(conditions)) => conditions
            .iter()
            .filter_map(|c| match c {
                Value::Object(c) => Some((c.get("field")?.as_str()?.to_owned(), c.get("value")?.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let include_deleted = args.flag("includeDeleted");
    let keep = move |document: &Document| {
        let deleted = matches!(document.fields.get("deletedAt"), Some(value) if *value != Value::Null);
        (include_deleted || !deleted)
            && wanted.iter().all(|(field, value)| document.fields.get(field.as_str()) == Some(value))
    };
    let order = if args.opt_str("order") == Some("asc") { Order::Asc } else { Order::Desc };
    let request = match ListRequest::from_args(args)? {
        ListRequest::Limit(_) => return Err(invalid("paginationOpts is required.".into())),
        page => page,
    };
    let query = tx.query_unchecked(table.name, index.name, range, order)?;
    request.run(query, keep)
}

fn bound(args: &Args, name: &str) -> Option<(Value, bool)> {
    let Some(Value::Object(bound)) = args.get(name) else { return None };
    Some((bound.get("value")?.clone(), matches!(bound.get("inclusive"), Some(Value::Boolean(true)))))
}

/// `{table, document}` for the document an id names (soft-deleted or not), or null when it names
/// none; an id that is malformed, or names no table of the app, is an error saying so.
fn document_by_id(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let text = args.str("id");
    let id = DocumentId::decode(text)
        .map_err(|e| AppError::new(ErrorCode::InvalidArgument, format!("{text:?} is not a document id: {e}")))?;
    let table = tx.schema().table_by_number(id.table).filter(|t| !t.is_system());
    let Some(table) = table else {
        let message = format!("{text:?} names table number {}, which this deployment does not have.", id.table);
        return Err(AppError::new(ErrorCode::NotFound, message).into());
    };
    let Some(document) = tx.get_owned(table.name, id)? else { return Ok(Value::Null) };
    Ok(Value::Object(object([("table", table.name.into()), ("document", document.to_value())])))
}
