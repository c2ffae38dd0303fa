//! The system queries the official Convex CLI calls over the sync protocol (`_system/cli/*`):
//! the table list and a table's documents for `npx convex data`, the function catalogue and the deployment's URL for
//! `npx convex function-spec`, and the deployment's environment variables for `npx convex env`.
//! They read what any deployment has (the schema, the registry, its system tables), so they
//! know no table of the data model.
//! All are admin-only, as in Convex.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::schema::v;
use jangar_engine::value::Value;

use super::access::Ctx;
use jangar_engine::keys::IndexRange;
use jangar_engine::knobs::{MAX_ENVIRONMENT_VARIABLE_BYTES, MAX_ENVIRONMENT_VARIABLES, MAX_LIST_LIMIT};
use jangar_engine::schema::{BY_CREATION_TIME, Validator};
use jangar_engine::storage::Order;

use super::common::{Args, ListRequest, object};
use super::error::{AppError, ErrorCode, FunctionError, FunctionResult};
use super::registry::{Function, Kind};
use super::schema::tables::ENVIRONMENT_VARIABLES;

/// What operators' long-running requests report while and after they run: the latest
/// export and recent imports, in Convex's shapes (`_exports`, `_snapshot_imports` documents).
/// Kept in memory, by the process that ran them, so the CLI's queries that follow them are
/// time-dependent (re-run every second) rather than cached.
#[derive(Default)]
pub struct Operations {
    latest_export: Mutex<Option<Value>>,
    imports: Mutex<VecDeque<(String, Value)>>,
}

impl Operations {
    pub fn set_export(&self, export: Value) {
        *self.latest_export.lock().unwrap_or_else(|e| e.into_inner()) = Some(export);
    }

    pub fn latest_export(&self) -> Option<Value> {
        self.latest_export.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records (or updates) an import's document, keeping the most recent few.
    pub fn set_import(&self, id: &str, document: Value) {
        let mut imports = self.imports.lock().unwrap_or_else(|e| e.into_inner());
        imports.retain(|(known, _)| known != id);
        imports.push_back((id.to_owned(), document));
        while imports.len() > KEPT_IMPORTS {
            imports.pop_front();
        }
    }

    fn import(&self, id: &str) -> Option<Value> {
        let imports = self.imports.lock().unwrap_or_else(|e| e.into_inner());
        imports.iter().find(|(known, _)| known == id).map(|(_, document)| document.clone())
    }

    fn imports(&self) -> Vec<Value> {
        self.imports.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, d)| d.clone()).collect()
    }
}

/// Imports whose outcome `npx convex import` can still ask for.
const KEPT_IMPORTS: usize = 20;

pub(crate) fn functions(deployment_url: String, operations: Arc<Operations>) -> Vec<Function> {
    let pagination = || ("paginationOpts", v::any());
    let (export_ops, import_ops, imports_ops) = (operations.clone(), operations.clone(), operations);
    vec![
        Function::query(
            "_system/cli/exports:getLatest",
            v::object(vec![]),
            v::any(),
            move |_: &mut Ctx<'_, '_>, _: &Args| Ok(export_ops.latest_export().unwrap_or(Value::Null)),
        )
        .time_dependent()
        .for_workers(),
        Function::query(
            "_system/cli/queryImport:default",
            v::object(vec![("importId", v::string())]),
            v::any(),
            move |_: &mut Ctx<'_, '_>, args: &Args| Ok(import_ops.import(args.str("importId")).unwrap_or(Value::Null)),
        )
        .time_dependent()
        .for_workers(),
        Function::query(
            "_system/cli/queryImport:list",
            v::object(vec![]),
            v::any(),
            move |_: &mut Ctx<'_, '_>, _: &Args| Ok(Value::Array(imports_ops.imports())),
        )
        .time_dependent()
        .for_workers(),
        Function::query("_system/cli/tables:default", v::object(vec![pagination()]), v::any(), tables).for_workers(),
        Function::query(
            "_system/cli/tableData:default",
            v::object(vec![("table", v::string()), ("order", v::optional(v::one_of(&["asc", "desc"]))), pagination()]),
            v::any(),
            table_data,
        )
        .for_workers(),
        Function::query(
            "_system/cli/queryEnvironmentVariables:default",
            v::object(vec![]),
            v::array(variable()),
            list_variables,
        )
        .for_workers(),
        Function::query(
            "_system/cli/queryEnvironmentVariables:get",
            v::object(vec![("name", v::string())]),
            v::union(vec![variable(), v::null()]),
            get_variable,
        )
        .for_workers(),
        Function::mutation(
            "_system/cli/updateEnvironmentVariables:default",
            v::object(vec![(
                "changes",
                v::array(v::object(vec![("name", v::string()), ("value", v::union(vec![v::string(), v::null()]))])),
            )]),
            v::null(),
            update_variables,
        )
        .for_workers(),
        Function::query("_system/cli/modules:apiSpec", v::object(vec![]), v::any(), api_spec).for_workers(),
        Function::query(
            "_system/cli/convexUrl:cloudUrl",
            v::object(vec![]),
            v::string(),
            move |_: &mut Ctx<'_, '_>, _: &Args| Ok(Value::from(deployment_url.as_str())),
        )
        .for_workers(),
    ]
}

/// Every table of the app (not the system tables), in one page (a deployment has a few dozen at most).
fn tables(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let tables = tx.schema().tables().iter().filter(|t| !t.is_system());
    let names = tables.map(|t| Value::Object(object([("name", t.name.into())]))).collect();
    Ok(Value::Object(object([
        ("page", Value::Array(names)),
        ("isDone", true.into()),
        ("continueCursor", "end".into()),
    ])))
}

/// One page of a table's documents in creation order (newest first unless `order` is `asc`),
/// soft-deleted ones included: an operator sees what is stored. A page larger than a list
/// may be is cut to that size rather than refused, since the CLI asks for one more than it
/// shows to learn whether there are more.
fn table_data(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let name = args.str("table");
    let Some(table) = tx.schema().table(name) else {
        return Err(AppError::new(ErrorCode::NotFound, format!("There is no table named {name:?}.")).into());
    };
    let order = if args.opt_str("order") == Some("asc") { Order::Asc } else { Order::Desc };
    let opts = match args.get("paginationOpts") {
        Some(Value::Object(opts)) => opts,
        _ => return Err(AppError::new(ErrorCode::InvalidArgument, "paginationOpts must be an object.").into()),
    };
    let num_items = opts.get("numItems").and_then(Value::as_f64).unwrap_or(0.0);
    if num_items.fract() != 0.0 || num_items < 1.0 {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("paginationOpts.numItems must be a whole number from 1, not {num_items}."),
        )
        .into());
    }
    let cursor = opts.get("cursor").and_then(Value::as_str).map(str::to_owned);
    let request = ListRequest::Page { num_items: (num_items as usize).min(MAX_LIST_LIMIT), cursor, end_cursor: None };
    let query = tx.query_unchecked(table.name, BY_CREATION_TIME, IndexRange::default(), order)?;
    request.run(query, |_: &Document| true)
}

/// The public functions with their argument and result validators, as Convex describes them
/// (`module.js:name`, validators in Convex's JSON form).
fn api_spec(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let schema = tx.schema();
    let registry = super::registry();
    let mut functions: Vec<&Function> = registry.functions().collect();
    functions.sort_by_key(|f| f.path);
    let spec = functions
        .into_iter()
        .map(|function| {
            let (module, name) = function.path.split_once(':').unwrap_or((function.path, "default"));
            let kind = match function.kind {
                Kind::Query => "Query",
                Kind::Mutation => "Mutation",
                Kind::Action => "Action",
            };
            let entry = serde_json::json!({
                "identifier": format!("{module}.js:{name}"),
                "functionType": kind,
                "visibility": {"kind": "public"},
                "args": function.args.to_convex_json(schema),
                "returns": function.returns.to_convex_json(schema),
            });
            Value::from_json(&entry)
                .map_err(|e| FunctionError::Engine(EngineError::Schema(format!("{}: {e}", function.path))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(spec))
}

fn variable() -> Validator {
    v::object(vec![("name", v::string()), ("value", v::string())])
}

fn variable_value(document: &Document) -> Value {
    let field = |name: &str| document.fields.get(name).cloned().unwrap_or(Value::Null);
    Value::Object(object([("name", field("name")), ("value", field("value"))]))
}

/// Every deployment environment variable, by name.
fn list_variables(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let query = tx.query_unchecked(ENVIRONMENT_VARIABLES, "by_name", IndexRange::default(), Order::Asc)?;
    let documents = query.take(MAX_ENVIRONMENT_VARIABLES, |_: &Document| true)?;
    Ok(Value::Array(documents.iter().map(variable_value).collect()))
}

fn get_variable(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(find_variable(tx, args.str("name"))?.as_ref().map_or(Value::Null, variable_value))
}

fn find_variable(tx: &mut Ctx<'_, '_>, name: &str) -> Result<Option<Document>, FunctionError> {
    let range = IndexRange::default().eq(name);
    let query = tx.query_unchecked(ENVIRONMENT_VARIABLES, "by_name", range, Order::Asc)?;
    Ok(query.take(1, |_: &Document| true)?.pop())
}

/// Sets (a string) or unsets (`null`) variables, all or none: a bad name or value anywhere
/// refuses the whole change.
fn update_variables(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let Some(Value::Array(changes)) = args.get("changes") else { return Ok(Value::Null) };
    for change in changes {
        let Value::Object(change) = change else { continue };
        let name = change.get("name").and_then(Value::as_str).unwrap_or_default();
        check_variable_name(name)?;
        let existing = find_variable(tx, name)?;
        match (change.get("value").and_then(Value::as_str), existing) {
            (Some(value), existing) => {
                if value.len() > MAX_ENVIRONMENT_VARIABLE_BYTES {
                    let message = format!(
                        "The value of {name} is {} bytes; the limit is {MAX_ENVIRONMENT_VARIABLE_BYTES}.",
                        value.len()
                    );
                    return Err(AppError::new(ErrorCode::LimitExceeded, message).into());
                }
                match existing {
                    Some(document) => {
                        tx.patch(ENVIRONMENT_VARIABLES, document.id, [("value".to_owned(), Some(value.into()))])?;
                    }
                    None => {
                        tx.insert(ENVIRONMENT_VARIABLES, object([("name", name.into()), ("value", value.into())]))?;
                    }
                }
            }
            (None, Some(document)) => {
                tx.delete(ENVIRONMENT_VARIABLES, document.id)?;
            }
            (None, None) => {}
        }
    }
    let count = tx
        .query_unchecked(ENVIRONMENT_VARIABLES, "by_name", IndexRange::default(), Order::Asc)?
        .take(MAX_ENVIRONMENT_VARIABLES + 1, |_: &Document| true)?
        .len();
    if count > MAX_ENVIRONMENT_VARIABLES {
        let message = format!("A deployment holds at most {MAX_ENVIRONMENT_VARIABLES} environment variables.");
        return Err(AppError::new(ErrorCode::LimitExceeded, message).into());
    }
    Ok(Value::Null)
}

/// Convex's rule: a letter or underscore, then letters, digits and underscores, at most 40.
fn check_variable_name(name: &str) -> Result<(), FunctionError> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 40;
    if valid {
        Ok(())
    } else {
        let message = format!(
            "{name:?} is not a valid environment variable name: use letters, digits and underscores, \
             not starting with a digit, at most 40 characters."
        );
        Err(AppError::new(ErrorCode::InvalidArgument, message).into())
    }
}
