//! `repos:*` — GitHub repositories of a team (seed 003).

use jangar_engine::schema::v;

use super::access::Ctx;
use super::common::{Args, load, object};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::tables;
use super::teams;

pub(crate) const TABLE: &str = tables::REPOS;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::mutation(
            "repos:create",
            v::object(vec![
                ("teamId", v::id(teams::TABLE)),
                ("githubOwner", v::string()),
                ("githubRepo", v::string()),
                ("defaultBranch", v::optional(v::string())),
                ("pushStrategy", v::optional(v::one_of(&["direct", "pr"]))),
            ]),
            v::id(TABLE),
            create,
        )
        .for_workers(),
    ]
}

fn create(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let team = args.id("teamId")?;
    load(tx, teams::TABLE, team, "Team")?;
    let mut fields = object([
        ("teamId", team.encode().into()),
        ("githubOwner", args.str("githubOwner").into()),
        ("githubRepo", args.str("githubRepo").into()),
        ("createdAt", tx.now_ms().into()),
    ]);
    args.copy_into(&mut fields, &["defaultBranch", "pushStrategy"]);
    Ok(tx.insert(TABLE, fields)?.encode().into())
}
