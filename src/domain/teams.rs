//! `teams:*` — the teams that own repos (seed 003).

use crate::engine::schema::v;
use crate::engine::transaction::Transaction;

use super::common::{Args, object};
use super::error::FunctionResult;
use super::registry::Function;

pub const TABLE: &str = "teams";

pub fn functions() -> Vec<Function> {
    vec![Function::mutation("teams:create", v::object(vec![("name", v::string())]), v::id(TABLE), create)]
}

fn create(tx: &mut Transaction<'_>, args: &Args) -> FunctionResult {
    let fields = object([("name", args.str("name").into()), ("createdAt", tx.now_ms().into())]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}
