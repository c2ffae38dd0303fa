//! `projects:*` — the workspace's view of repos (seed 003).

use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, ListRequest, list_args, list_of, list_order, maybe};
use super::error::FunctionResult;
use super::registry::Function;
use super::{repos, teams};
use jangar_engine::transaction::All;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::query("projects:get", v::object(vec![("repoId", v::id(repos::TABLE))]), maybe(repos::TABLE), get),
        Function::query(
            "projects:listByTeam",
            list_args(vec![("teamId", v::id(teams::TABLE))]),
            list_of(repos::TABLE),
            list_by_team,
        ),
    ]
}

fn get(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    Ok(tx.get_owned(repos::TABLE, args.id("repoId")?)?.map_or(Value::Null, |d| d.to_value()))
}

fn list_by_team(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let request = ListRequest::from_args(args)?;
    let range = IndexRange::default().eq(args.id("teamId")?.encode());
    request.run(tx.query_unchecked(repos::TABLE, "by_team", range, list_order(args, Order::Asc))?, All)
}
