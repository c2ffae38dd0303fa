//! `steps:*` — the activities, hooks and checks of a run, upserted by name.

use jangar_engine::keys::IndexRange;
use jangar_engine::schema::v;
use jangar_engine::storage::Order;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::{Args, check_transition, load, object};
use super::error::FunctionResult;
use super::registry::Function;
use super::schema::{STEP_KINDS, tables};
use super::status::{Status, StepStatus, Word};
use jangar_engine::transaction::All;

pub(crate) const TABLE: &str = tables::STEPS;

pub(crate) fn functions() -> Vec<Function> {
    vec![
        Function::mutation(
            "steps:appendOrUpdate",
            v::object(vec![
                ("runId", v::id(tables::RUNS)),
                ("name", v::string()),
                ("kind", v::optional(v::one_of(STEP_KINDS))),
                ("status", StepStatus::validator()),
                ("startedAt", v::optional(v::number())),
                ("endedAt", v::optional(v::number())),
                ("payload", v::optional(v::any())),
                ("logUrl", v::optional(v::string())),
            ]),
            v::id(TABLE),
            append_or_update,
        )
        .for_workers(),
    ]
}

/// Inserts the step `(runId, name)` or updates it, following the step state machine.
/// Start and end times default to the server's clock when the step starts or finishes.
fn append_or_update(tx: &mut Ctx<'_, '_>, args: &Args) -> FunctionResult {
    let run_id = args.id("runId")?;
    load(tx, tables::RUNS, run_id, "Run")?;
    let name = args.str("name");
    let status: StepStatus = args.word("status")?;
    let now = tx.now_ms();
    let range = IndexRange::default().eq(run_id.encode()).eq(name);
    let existing = tx.query_unchecked(TABLE, "by_run", range, Order::Asc)?.take(1, All)?.pop();
    let finished = status.is_finished();
    let Some(step) = existing else {
        let mut fields = object([
            ("runId", run_id.encode().into()),
            ("name", name.into()),
            ("kind", args.opt_str("kind").unwrap_or("activity").into()),
            ("status", status.into()),
            ("attempt", 1.0.into()),
            ("createdAt", now.into()),
            ("updatedAt", now.into()),
        ]);
        args.copy_into(&mut fields, &["startedAt", "endedAt", "payload", "logUrl"]);
        if status != StepStatus::Pending {
            fields.entry("startedAt".into()).or_insert(now.into());
        }
        if finished {
            fields.entry("endedAt".into()).or_insert(now.into());
        }
        return Ok(tx.insert(TABLE, fields)?.encode().into());
    };
    let from = StepStatus::of(&step)?;
    let moved = check_transition(from, status)?;
    let mut changes = vec![("updatedAt".to_owned(), Some(Value::from(now)))];
    for field in ["kind", "startedAt", "endedAt", "payload", "logUrl"] {
        if let Some(value) = args.get(field) {
            changes.push((field.to_owned(), Some(value.clone())));
        }
    }
    if moved {
        changes.push(("status".to_owned(), Some(status.into())));
        if from == StepStatus::Failed && status == StepStatus::Running {
            let attempt = step.fields.get("attempt").and_then(Value::as_f64).unwrap_or(1.0);
            changes.push(("attempt".to_owned(), Some((attempt + 1.0).into())));
            changes.push(("startedAt".to_owned(), Some(args.get("startedAt").cloned().unwrap_or(now.into()))));
            changes.push(("endedAt".to_owned(), None));
        } else if status == StepStatus::Running
            && !step.fields.contains_key("startedAt")
            && args.get("startedAt").is_none()
        {
            changes.push(("startedAt".to_owned(), Some(now.into())));
        }
        if finished && args.get("endedAt").is_none() {
            changes.push(("endedAt".to_owned(), Some(now.into())));
        }
    }
    tx.patch(TABLE, step.id, changes)?;
    Ok(step.id.encode().into())
}
