//! The system queries the official Convex CLI calls over the sync protocol (`_system/cli/*`):
//! the table list for `npx convex data`, the function catalogue and the deployment's URL for
//! `npx convex function-spec`. They read what any deployment has (the schema, the registry),
//! so they know no Jangar table.
//! All are admin-only, as in Convex.

use jangar_engine::error::EngineError;
use jangar_engine::schema::v;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, object};
use super::error::{FunctionError, FunctionResult};
use super::registry::{Function, Kind};

pub(crate) fn functions(deployment_url: String) -> Vec<Function> {
    let pagination = || ("paginationOpts", v::any());
    vec![
        Function::query("_system/cli/tables:default", v::object(vec![pagination()]), v::any(), tables).for_workers(),
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

/// Every table, in one page (a deployment has a few dozen at most).
fn tables(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let names = tx.schema().tables().iter().map(|t| Value::Object(object([("name", t.name.into())]))).collect();
    Ok(Value::Object(object([
        ("page", Value::Array(names)),
        ("isDone", true.into()),
        ("continueCursor", "end".into()),
    ])))
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
