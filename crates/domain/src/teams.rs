//! `teams:*` — the teams that own repos (seed 003).

use jangar_engine::schema::v;

use super::access::Ctx;
use super::common::{Args, object};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::tables;

pub(crate) const TABLE: &str = tables::TEAMS;

pub(crate) fn functions() -> Vec<Function> {
    vec![Function::mutation("teams:create", v::object(vec![("name", v::string())]), v::id(TABLE), create).for_workers()]
}

fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let fields = object([("name", args.str("name").into()), ("createdAt", tx.now_ms().into())]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}
