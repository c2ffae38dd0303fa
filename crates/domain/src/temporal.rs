//! The Temporal bridge's side of the data model. A work order that must start (or stop) a
//! workflow gets a request in the outbox, `_temporal_requests`, in the same transaction as the
//! status change that calls for it, so a committed change is a request that will be sent and a
//! rolled-back one is none. The process that sends the requests and follows the workflows
//! (`jangar_api::temporal`) records every answer and every outcome through the mutations here.
//!
//! Exactly one execution per work order rests on three things: the workflow id and the start's
//! request id are derived from the work order id (so every resend is the same request), Temporal
//! dedupes a start by its request id and refuses a second run of a closed workflow id
//! (`REJECT_DUPLICATE`), and a request is only ever marked answered by the mutation that records
//! Temporal's answer.

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::{TableDef, v};
use jangar_engine::storage::Order;
use jangar_engine::transaction::{All, Transaction};
use jangar_engine::value::{Object, Value};

use super::access::{Caller, Ctx};
use super::common::{Args, load, object};
use super::error::{FunctionError, FunctionResult};
use super::registry::Function;
use super::schema::tables;
use super::status::{RunStatus, Status, Word, WorkOrderStatus, words};
use super::{runs, work_orders};

pub const TABLE: &str = tables::TEMPORAL_REQUESTS;

/// What the deployment's bridge was configured with (`serve --temporal-*`).
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    /// The task queue of work orders that name none.
    pub task_queue: String,
    /// How long a canceled work order's workflow may keep running before it is terminated.
    pub cancel_grace_ms: f64,
}

/// What every workflow id the bridge derives starts with.
const WORKFLOW_PREFIX: &str = "jangar-wo-";

/// The workflow a work order starts: one id per work order, whatever sends it.
pub fn workflow_id(order: DocumentId) -> String {
    format!("{WORKFLOW_PREFIX}{order}")
}

fn request_id(kind: RequestKind, order: DocumentId) -> String {
    format!("jangar-{}-{order}", kind.as_str())
}

words! {
    /// What a request asks of Temporal.
    RequestKind {
        Start = "start",
        Cancel = "cancel",
        Terminate = "terminate",
    }
}

words! {
    /// Where a request is. `pending` ones are sent (again) until Temporal answers; the rest are final.
    RequestState {
        Pending = "pending",
        Done = "done",
        Dead = "dead",
        Skipped = "skipped",
    }
}

words! {
    /// The bridge's state on a work order (`workOrders.temporalState`).
    BridgeState {
        Pending = "pending",
        Retrying = "retrying",
        Started = "started",
        Refused = "refused",
        Skipped = "skipped",
        CancelRequested = "cancel_requested",
        CancelSent = "cancel_sent",
        TerminateSent = "terminate_sent",
    }
}

pub(crate) fn table() -> TableDef {
    TableDef::new(
        TABLE,
        102,
        vec![
            ("workOrderId", v::id(tables::WORK_ORDERS)),
            ("kind", RequestKind::validator()),
            ("workflowId", v::string()),
            ("requestId", v::string()),
            ("state", RequestState::validator()),
            ("attempts", v::number()),
            ("nextAttemptAt", v::number()),
            // The process sending it now; none between attempts.
            ("claimedBy", v::optional(v::string())),
            // An attempt went out whose answer was never read: Temporal may have acted on it.
            ("mayHaveArrived", v::boolean()),
            ("lastError", v::optional(v::string())),
            ("temporalRunId", v::optional(v::string())),
            ("createdAt", v::number()),
            ("updatedAt", v::number()),
        ],
    )
    .index("by_state_next", &["state", "nextAttemptAt"])
    .index("by_work_order", &["workOrderId", "createdAt"])
}

/// Records on the order what the bridge last did (`temporalState`, `temporalAttempts`,
/// `temporalError`: an error is kept until a later state replaces it with none).
fn set_order_state(
    tx: &mut Ctx<'_, '_>,
    order: DocumentId,
    state: BridgeState,
    attempts: f64,
    error: Option<&str>,
) -> Result<(), FunctionError> {
    let changes = [
        ("temporalState".to_owned(), Some(Value::from(state))),
        ("temporalAttempts".to_owned(), Some(Value::from(attempts))),
        ("temporalError".to_owned(), error.map(Value::from)),
    ];
    tx.patch(tables::WORK_ORDERS, order, changes)?;
    Ok(())
}

fn requests_of(tx: &mut Ctx<'_, '_>, order: DocumentId) -> Result<Vec<Document>, FunctionError> {
    let range = IndexRange::default().eq(order.encode());
    Ok(tx.query_unchecked(TABLE, "by_work_order", range, Order::Asc)?.take(usize::MAX, All)?)
}

fn kind_of(request: &Document) -> Option<RequestKind> {
    request.fields.get("kind").and_then(Value::as_str).and_then(RequestKind::parse)
}

fn state_of(request: &Document) -> Option<RequestState> {
    request.fields.get("state").and_then(Value::as_str).and_then(RequestState::parse)
}

fn text<'d>(document: &'d Document, field: &str) -> Option<&'d str> {
    document.fields.get(field).and_then(Value::as_str)
}

fn number(document: &Document, field: &str) -> f64 {
    document.fields.get(field).and_then(Value::as_f64).unwrap_or(0.0)
}

fn enqueue(tx: &mut Ctx<'_, '_>, order: DocumentId, kind: RequestKind, at: f64) -> Result<(), FunctionError> {
    let now = tx.now_ms();
    tx.insert(
        TABLE,
        object([
            ("workOrderId", order.encode().into()),
            ("kind", kind.into()),
            ("workflowId", workflow_id(order).into()),
            ("requestId", request_id(kind, order).into()),
            ("state", RequestState::Pending.into()),
            ("attempts", 0.0.into()),
            ("nextAttemptAt", at.into()),
            ("mayHaveArrived", false.into()),
            ("createdAt", now.into()),
            ("updatedAt", now.into()),
        ]),
    )?;
    Ok(())
}

/// A work order became `submitted`: if it names a workflow type and has no start yet, queue its
/// start, and name the workflow and task queue on the order.
pub(crate) fn on_submitted(
    tx: &mut Ctx<'_, '_>,
    bridge: &BridgeSettings,
    order_id: DocumentId,
) -> Result<(), FunctionError> {
    let order = load(tx, tables::WORK_ORDERS, order_id, "Work order")?;
    if !bridge_starts(&order) {
        return Ok(());
    }
    if requests_of(tx, order_id)?.iter().any(|r| kind_of(r) == Some(RequestKind::Start)) {
        return Ok(());
    }
    let now = tx.now_ms();
    enqueue(tx, order_id, RequestKind::Start, now)?;
    let mut changes = vec![("workflowId".to_owned(), Some(Value::from(workflow_id(order_id))))];
    if text(&order, "taskQueue").is_none_or(str::is_empty) {
        changes.push(("taskQueue".to_owned(), Some(Value::from(bridge.task_queue.as_str()))));
    }
    tx.patch(tables::WORK_ORDERS, order_id, changes)?;
    set_order_state(tx, order_id, BridgeState::Pending, 0.0, None)
}

/// Whether the bridge starts this order's workflow: it names a workflow type, and no workflow id
/// of its own (a client that names one starts that workflow itself, as without the bridge).
fn bridge_starts(order: &Document) -> bool {
    let own_id = text(order, "workflowId").is_some_and(|id| id != workflow_id(order.id));
    text(order, "workflowType").is_some_and(|t| !t.is_empty()) && !own_id
}

/// Queues the start of every `submitted` order the bridge should have started and has not: orders
/// restored from an export (the outbox is a system table, not exported), or submitted before the
/// bridge was configured.
pub fn adopt_unsent(tx: &mut Transaction<'_>, bridge: &BridgeSettings) -> Result<usize, FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    let range = IndexRange::default().eq(WorkOrderStatus::Submitted.as_str());
    let submitted =
        tx.query_unchecked(tables::WORK_ORDERS, "by_status", range, Order::Asc)?.take(ADOPT_AT_ONCE, All)?;
    let mut adopted = 0;
    for order in submitted.iter().filter(|o| bridge_starts(o)) {
        if requests_of(tx, order.id)?.is_empty() {
            on_submitted(tx, bridge, order.id)?;
            adopted += 1;
        }
    }
    Ok(adopted)
}

/// Submitted orders looked at by one start-up's [`adopt_unsent`] (more wait for the next start).
const ADOPT_AT_ONCE: usize = 1000;

/// A work order was canceled by a person or a program: a start that certainly never reached
/// Temporal is dropped; otherwise the workflow is asked to cancel (and, once that is delivered,
/// terminated if it still runs after the grace period: see [`record_answer`]).
pub(crate) fn on_canceled(tx: &mut Ctx<'_, '_>, order_id: DocumentId) -> Result<(), FunctionError> {
    let requests = requests_of(tx, order_id)?;
    let Some(start) = requests.iter().find(|r| kind_of(r) == Some(RequestKind::Start)) else { return Ok(()) };
    let never_sent = state_of(start) == Some(RequestState::Pending)
        && !start.fields.contains_key("claimedBy")
        && start.fields.get("mayHaveArrived") == Some(&Value::Boolean(false));
    let now = tx.now_ms();
    let attempts = number(start, "attempts");
    if never_sent {
        patch_request(tx, start.id, RequestState::Skipped, vec![])?;
        return set_order_state(tx, order_id, BridgeState::Skipped, attempts, None);
    }
    if matches!(state_of(start), Some(RequestState::Dead | RequestState::Skipped)) {
        return Ok(());
    }
    if requests.iter().any(|r| kind_of(r) == Some(RequestKind::Cancel)) {
        return Ok(());
    }
    enqueue(tx, order_id, RequestKind::Cancel, now)?;
    set_order_state(tx, order_id, BridgeState::CancelRequested, 0.0, None)
}

fn patch_request(
    tx: &mut Ctx<'_, '_>,
    id: DocumentId,
    state: RequestState,
    mut changes: Vec<(String, Option<Value>)>,
) -> Result<(), FunctionError> {
    changes.push(("state".into(), Some(state.into())));
    changes.push(("updatedAt".into(), Some(tx.now_ms().into())));
    tx.patch(TABLE, id, changes)?;
    Ok(())
}

/// Arguments one claim gathers at most (a claim may read 16 MiB, an order holds up to 1 MiB).
const CLAIM_ARGS_BYTES: usize = 4 << 20;
/// How long a cancel waits for its start's answer before looking again (the answer wakes it first).
const WAIT_FOR_START_MS: f64 = 30_000.0;

/// A request the dispatcher claimed, with what it needs to send it.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub request: DocumentId,
    pub kind: RequestKind,
    pub work_order: DocumentId,
    pub workflow_id: String,
    pub request_id: String,
    /// The claimant that holds it.
    pub claimant: String,
    /// The attempt this is, from 1.
    pub attempt: u32,
    /// For a start.
    pub start: Option<StartSpec>,
}

#[derive(Clone, Debug)]
pub struct StartSpec {
    pub workflow_type: String,
    pub task_queue: String,
    /// `workOrders.workflowArgs`: the workflow's one argument, if the order has any.
    pub args: Option<Value>,
}

/// Claims up to `limit` due requests for `claimant` until `now + lease_ms`: another process
/// sends them only once that lease has run out (the claimant died, say). A cancel or terminate
/// waits for its start's answer, and is dropped when there is nothing to stop.
pub fn claim_due(
    tx: &mut Transaction<'_>,
    claimant: &str,
    limit: usize,
    lease_ms: f64,
) -> Result<Vec<Claimed>, FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    let now = tx.now_ms();
    let range = IndexRange::default().eq(RequestState::Pending.as_str()).lte(now);
    let due = tx.query_unchecked(TABLE, "by_state_next", range, Order::Asc)?.take(limit, All)?;
    let mut claimed = Vec::new();
    // The orders' arguments count against the mutation's read limit: stop well before it.
    let mut args_bytes = 0;
    for request in due {
        if args_bytes > CLAIM_ARGS_BYTES {
            break;
        }
        let (Some(kind), Some(order_id)) =
            (kind_of(&request), text(&request, "workOrderId").and_then(|t| DocumentId::decode(t).ok()))
        else {
            // The schema rules this out; were it to happen, the request must not stay due forever.
            let error = ("lastError".to_owned(), Some(Value::from("The request names no kind or work order.")));
            patch_request(tx, request.id, RequestState::Dead, vec![error])?;
            continue;
        };
        let Some(order) = tx.get_owned(tables::WORK_ORDERS, order_id)? else {
            // Gone (an import replaced the table, say): nothing to start or stop.
            let error = ("lastError".to_owned(), Some(Value::from("The work order no longer exists.")));
            patch_request(tx, request.id, RequestState::Skipped, vec![error])?;
            continue;
        };
        let start = match kind {
            RequestKind::Start => {
                let args = order.fields.get("workflowArgs").cloned();
                args_bytes += args.as_ref().map_or(0, Value::size);
                Some(StartSpec {
                    workflow_type: text(&order, "workflowType").unwrap_or_default().to_owned(),
                    task_queue: text(&order, "taskQueue").unwrap_or_default().to_owned(),
                    args,
                })
            }
            RequestKind::Cancel | RequestKind::Terminate => {
                let requests = requests_of(tx, order_id)?;
                let start_state = requests.iter().find(|r| kind_of(r) == Some(RequestKind::Start)).and_then(state_of);
                let closed = kind == RequestKind::Terminate && run_is_closed(tx, order_id)?;
                match start_state {
                    _ if closed => {
                        patch_request(tx, request.id, RequestState::Skipped, vec![])?;
                        continue;
                    }
                    Some(RequestState::Done) => None,
                    Some(RequestState::Pending) => {
                        // Its start is not answered yet; the answer makes this due again at once.
                        let later = ("nextAttemptAt".to_owned(), Some(Value::from(now + WAIT_FOR_START_MS)));
                        patch_request(tx, request.id, RequestState::Pending, vec![later])?;
                        continue;
                    }
                    _ => {
                        patch_request(tx, request.id, RequestState::Skipped, vec![])?;
                        continue;
                    }
                }
            }
        };
        let attempt = number(&request, "attempts") + 1.0;
        patch_request(
            tx,
            request.id,
            RequestState::Pending,
            vec![
                ("claimedBy".into(), Some(claimant.into())),
                ("attempts".into(), Some(attempt.into())),
                ("nextAttemptAt".into(), Some((now + lease_ms).into())),
            ],
        )?;
        claimed.push(Claimed {
            request: request.id,
            kind,
            work_order: order_id,
            workflow_id: text(&request, "workflowId").unwrap_or_default().to_owned(),
            request_id: text(&request, "requestId").unwrap_or_default().to_owned(),
            claimant: claimant.to_owned(),
            attempt: attempt as u32,
            start,
        });
    }
    Ok(claimed)
}

/// Frees every claim, for a process that knows no other can hold one (SQLite's data directory
/// is locked by one process): a claim left by a crashed process would otherwise wait out its
/// lease. The requests may have reached Temporal, so they are sent again, never dropped.
pub fn release_claims(tx: &mut Transaction<'_>) -> Result<usize, FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    let range = IndexRange::default().eq(RequestState::Pending.as_str());
    let pending = tx.query_unchecked(TABLE, "by_state_next", range, Order::Asc)?.take(COUNTED_AT_MOST, All)?;
    let now = tx.now_ms();
    let mut released = 0;
    for request in pending.iter().filter(|r| r.fields.contains_key("claimedBy")) {
        let changes = vec![
            ("claimedBy".to_owned(), None),
            ("mayHaveArrived".to_owned(), Some(true.into())),
            ("nextAttemptAt".to_owned(), Some(now.into())),
        ];
        patch_request(tx, request.id, RequestState::Pending, changes)?;
        released += 1;
    }
    Ok(released)
}

/// How many requests wait to be sent (counted up to [`COUNTED_AT_MOST`]).
pub fn count_pending(tx: &mut Transaction<'_>) -> Result<usize, EngineError> {
    let range = IndexRange::default().eq(RequestState::Pending.as_str());
    Ok(tx.query(TABLE, "by_state_next", range, Order::Asc)?.take(COUNTED_AT_MOST, All)?.len())
}

/// When the next pending request falls due (ms since the epoch), if any is pending.
pub fn next_due(tx: &mut Transaction<'_>) -> Result<Option<f64>, EngineError> {
    let range = IndexRange::default().eq(RequestState::Pending.as_str());
    let next = tx.query(TABLE, "by_state_next", range, Order::Asc)?.take(1, All)?;
    Ok(next.first().map(|r| number(r, "nextAttemptAt")))
}

fn bridge_runs(tx: &mut Ctx<'_, '_>, order: DocumentId) -> Result<Vec<Document>, FunctionError> {
    let range = IndexRange::default().eq(workflow_id(order));
    Ok(tx.query_unchecked(tables::RUNS, "by_workflow", range, Order::Asc)?.take(usize::MAX, All)?)
}

fn run_is_closed(tx: &mut Ctx<'_, '_>, order: DocumentId) -> Result<bool, FunctionError> {
    let runs = bridge_runs(tx, order)?;
    Ok(!runs.is_empty() && runs.iter().all(|r| RunStatus::of(r).is_ok_and(|s| s.is_terminal())))
}

/// What Temporal said to a request (or why no answer came).
#[derive(Clone, Debug)]
pub enum Answer {
    /// The workflow runs (or ran) as `run_id`: ours, started now or by an earlier attempt.
    Started { run_id: String },
    /// A cancel or terminate was taken, or there was nothing left to stop.
    Done,
    /// Refused for good (a bad request, an argument over Temporal's limits).
    Refused { message: String },
    /// No definite answer: send again after `retry_in_ms`. `arrived`: the request may have
    /// reached Temporal (it timed out, or the connection broke after it was sent).
    Retry { error: String, arrived: bool, retry_in_ms: f64 },
}

/// Records Temporal's answer to a claimed request, with what follows from it, in one mutation.
/// A request no longer pending (another process recorded it) is left alone, and so is a
/// "no answer" from a claimant whose claim has passed to another process.
pub fn record_answer(
    tx: &mut Transaction<'_>,
    bridge: &BridgeSettings,
    claimed: &Claimed,
    answer: &Answer,
) -> Result<(), FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    let (request_id, order_id, kind) = (claimed.request, claimed.work_order, claimed.kind);
    let Some(request) = tx.get_owned(TABLE, request_id)? else { return Ok(()) };
    if state_of(&request) != Some(RequestState::Pending) {
        return Ok(());
    }
    let still_ours = text(&request, "claimedBy") == Some(claimed.claimant.as_str());
    if !still_ours && matches!(answer, Answer::Retry { .. }) {
        return Ok(());
    }
    let attempts = number(&request, "attempts");
    let unclaimed = ("claimedBy".to_owned(), None);
    let Some(order) = tx.get_owned(tables::WORK_ORDERS, order_id)? else {
        // Gone while the request was out: record the answer on the request alone.
        let (state, error) = match answer {
            Answer::Started { .. } | Answer::Done => (RequestState::Done, None),
            Answer::Refused { message } | Answer::Retry { error: message, .. } => (RequestState::Dead, Some(message)),
        };
        let error = error.map(|e| ("lastError".to_owned(), Some(Value::from(e.as_str()))));
        return patch_request(tx, request_id, state, [unclaimed].into_iter().chain(error).collect());
    };
    let order_status = WorkOrderStatus::of(&order)?;
    match answer {
        Answer::Started { run_id } => {
            let run = ("temporalRunId".to_owned(), Some(Value::from(run_id.as_str())));
            patch_request(tx, request_id, RequestState::Done, vec![unclaimed, run])?;
            record_run(tx, &order, run_id)?;
            if order_status == WorkOrderStatus::Submitted {
                work_orders::move_along(tx, order_id, WorkOrderStatus::Accepted, Vec::new())?;
            }
            if !order_status.is_terminal() {
                set_order_state(tx, order_id, BridgeState::Started, attempts, None)?;
            }
            wake_waiting(tx, order_id)?;
        }
        Answer::Done => {
            patch_request(tx, request_id, RequestState::Done, vec![unclaimed])?;
            let state =
                if kind == RequestKind::Terminate { BridgeState::TerminateSent } else { BridgeState::CancelSent };
            set_order_state(tx, order_id, state, attempts, None)?;
            // Cancellation is cooperative: a workflow still running after the grace is terminated.
            if kind == RequestKind::Cancel {
                let at = tx.now_ms() + bridge.cancel_grace_ms;
                enqueue(tx, order_id, RequestKind::Terminate, at)?;
            }
        }
        Answer::Refused { message } => {
            let error = ("lastError".to_owned(), Some(Value::from(message.as_str())));
            patch_request(tx, request_id, RequestState::Dead, vec![unclaimed, error])?;
            set_order_state(tx, order_id, BridgeState::Refused, attempts, Some(message))?;
            if kind == RequestKind::Start {
                let reason = object([("type", "TemporalRefused".into()), ("message", message.as_str().into())]);
                let extra = vec![("failureReason".to_owned(), Value::Object(reason))];
                work_orders::move_along(tx, order_id, WorkOrderStatus::Failed, extra)?;
                wake_waiting(tx, order_id)?;
            }
        }
        Answer::Retry { error, arrived, retry_in_ms } => {
            let arrived = *arrived || request.fields.get("mayHaveArrived") == Some(&Value::Boolean(true));
            let error_field = ("lastError".to_owned(), Some(Value::from(error.as_str())));
            // The order was canceled while this start was out, and it never reached Temporal.
            if kind == RequestKind::Start && order_status == WorkOrderStatus::Canceled && !arrived {
                patch_request(tx, request_id, RequestState::Skipped, vec![unclaimed, error_field])?;
                set_order_state(tx, order_id, BridgeState::Skipped, attempts, None)?;
                return wake_waiting(tx, order_id);
            }
            let changes = vec![
                unclaimed,
                ("mayHaveArrived".to_owned(), Some(arrived.into())),
                error_field,
                ("nextAttemptAt".to_owned(), Some((tx.now_ms() + retry_in_ms).into())),
            ];
            patch_request(tx, request_id, RequestState::Pending, changes)?;
            // A canceled order keeps saying so; its start's retries show on the request.
            if kind == RequestKind::Start && !order_status.is_terminal() {
                set_order_state(tx, order_id, BridgeState::Retrying, attempts, Some(error))?;
            }
        }
    }
    Ok(())
}

/// The run of a started workflow: a new one, or the one a worker reported first (`runs:start`),
/// which gets what the mirror needs to follow it.
fn record_run(tx: &mut Ctx<'_, '_>, order: &Document, run_id: &str) -> Result<(), FunctionError> {
    let mut fields = object([("temporalRunId", run_id.into())]);
    for (from, to) in [("taskQueue", "taskQueue"), ("targetRepo", "repo"), ("targetBranch", "branch")] {
        if let Some(value) = order.fields.get(from) {
            fields.insert(to.into(), value.clone());
        }
    }
    match bridge_runs(tx, order.id)?.first() {
        None => {
            fields.insert("temporalWorkflowId".into(), workflow_id(order.id).into());
            runs::insert_run(tx, order.id, RunStatus::Queued, fields)?;
        }
        Some(run) => {
            let missing: Vec<_> = fields
                .into_iter()
                .filter(|(field, _)| !run.fields.contains_key(field))
                .map(|(f, v)| (f, Some(v)))
                .collect();
            if !missing.is_empty() {
                tx.patch(tables::RUNS, run.id, missing)?;
            }
        }
    }
    Ok(())
}

/// Makes the order's requests that wait for its start's answer due now.
fn wake_waiting(tx: &mut Ctx<'_, '_>, order: DocumentId) -> Result<(), FunctionError> {
    let now = tx.now_ms();
    for request in requests_of(tx, order)? {
        if kind_of(&request) != Some(RequestKind::Start)
            && state_of(&request) == Some(RequestState::Pending)
            && !request.fields.contains_key("claimedBy")
        {
            patch_request(tx, request.id, RequestState::Pending, vec![("nextAttemptAt".into(), Some(now.into()))])?;
        }
    }
    Ok(())
}

/// Open runs listed per status at most by [`open_runs`].
const FOLLOWED_AT_MOST: usize = 10_000;

/// A run the bridge started that has not finished yet.
#[derive(Clone, Debug)]
pub struct OpenRun {
    pub run: DocumentId,
    pub workflow_id: String,
    pub temporal_run_id: String,
}

/// The open runs of workflows the bridge started, for the mirror to follow: the oldest
/// [`FOLLOWED_AT_MOST`] of each status (a listing must stay under a read's limits; more are
/// followed as these close).
pub fn open_runs(tx: &mut Transaction<'_>) -> Result<Vec<OpenRun>, EngineError> {
    let mut open = Vec::new();
    for status in [RunStatus::Queued, RunStatus::Running] {
        let range = IndexRange::default().eq(status.as_str());
        for run in tx.query(tables::RUNS, "by_status", range, Order::Asc)?.take(FOLLOWED_AT_MOST, All)? {
            let (Some(workflow), Some(temporal_run)) = (text(&run, "temporalWorkflowId"), text(&run, "temporalRunId"))
            else {
                continue;
            };
            if workflow.starts_with(WORKFLOW_PREFIX) {
                open.push(OpenRun {
                    run: run.id,
                    workflow_id: workflow.to_owned(),
                    temporal_run_id: temporal_run.to_owned(),
                });
            }
        }
    }
    Ok(open)
}

/// The largest workflow result kept on a run.
const MAX_RESULT_BYTES: usize = 256 << 10;

/// How a workflow ended, as its close event says.
#[derive(Clone, Debug)]
pub enum Closed {
    Completed {
        result: Option<Value>,
    },
    Failed {
        message: String,
        failure_type: Option<String>,
    },
    TimedOut {
        retry_state: Option<String>,
    },
    Canceled,
    Terminated {
        reason: String,
    },
    /// Not in Temporal (never there, or past its retention).
    NotFound,
}

/// A worker picked the workflow up: the run goes `running` (with the worker's identity).
pub fn mark_running(tx: &mut Transaction<'_>, run: DocumentId, worker: Option<&str>) -> Result<(), FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    // A run removed meanwhile (an import) has nothing left to mirror.
    let Some(doc) = tx.get_owned(tables::RUNS, run)? else { return Ok(()) };
    if RunStatus::of(&doc)? != RunStatus::Queued {
        return Ok(());
    }
    let extra = worker.map(|w| ("workerId".to_owned(), Value::from(w))).into_iter().collect();
    runs::set_status(tx, run, RunStatus::Running, extra)?;
    Ok(())
}

/// The workflow continued as a new run: follow that one.
pub fn continue_as(tx: &mut Transaction<'_>, run: DocumentId, new_run_id: &str) -> Result<(), FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    if tx.get_owned(tables::RUNS, run)?.is_some() {
        tx.patch(tables::RUNS, run, [("temporalRunId".to_owned(), Some(Value::from(new_run_id)))])?;
    }
    Ok(())
}

/// Applies a workflow's end to its run (and so to its work order). A run already final stays.
pub fn mark_closed(tx: &mut Transaction<'_>, run: DocumentId, closed: &Closed) -> Result<(), FunctionError> {
    let caller = Caller::ADMIN;
    let tx = &mut Ctx::new(tx, &caller);
    // A run removed meanwhile (an import) has nothing left to mirror.
    let Some(doc) = tx.get_owned(tables::RUNS, run)? else { return Ok(()) };
    let from = RunStatus::of(&doc)?;
    if from.is_terminal() {
        return Ok(());
    }
    let reason =
        |kind: &str, message: String| Value::Object(object([("type", kind.into()), ("message", message.into())]));
    let (to, extra): (RunStatus, Vec<(String, Value)>) = match closed {
        Closed::Completed { result } => {
            let mut extra = Vec::new();
            if let Some(Value::Object(fields)) = result {
                for field in ["prUrl", "commitSha"] {
                    if let Some(value @ Value::String(_)) = fields.get(field) {
                        extra.push((field.to_owned(), value.clone()));
                    }
                }
            }
            if let Some(result) = result {
                // Temporal's payloads may be larger than a document holds: keep what fits.
                let kept = if result.size() <= MAX_RESULT_BYTES {
                    result.clone()
                } else {
                    Value::Object(object([("truncated", true.into()), ("bytes", (result.size() as f64).into())]))
                };
                extra.push(("result".to_owned(), kept));
            }
            (RunStatus::Succeeded, extra)
        }
        Closed::Failed { message, failure_type } => {
            let mut fields = object([("message", message.as_str().into())]);
            if let Some(kind) = failure_type {
                fields.insert("type".into(), kind.as_str().into());
            }
            (RunStatus::Failed, vec![("failureReason".to_owned(), Value::Object(fields))])
        }
        Closed::TimedOut { retry_state } => {
            let mut fields = object([("type", "timeout".into()), ("message", "The workflow timed out.".into())]);
            if let Some(state) = retry_state {
                fields.insert("retryState".into(), state.as_str().into());
            }
            (RunStatus::Failed, vec![("failureReason".to_owned(), Value::Object(fields))])
        }
        Closed::Canceled => (RunStatus::Canceled, Vec::new()),
        Closed::Terminated { reason: why } => {
            let order = tx.get_owned(tables::WORK_ORDERS, runs::run_order(&doc)?)?;
            let asked = order.map(|o| WorkOrderStatus::of(&o)).transpose()? == Some(WorkOrderStatus::Canceled);
            if asked {
                (RunStatus::Canceled, Vec::new())
            } else {
                (RunStatus::Failed, vec![("failureReason".to_owned(), reason("terminated", why.clone()))])
            }
        }
        Closed::NotFound => {
            let message = "The workflow is not in Temporal (never started there, or past its retention).";
            (RunStatus::Failed, vec![("failureReason".to_owned(), reason("not_found", message.into()))])
        }
    };
    if from == RunStatus::Queued && to == RunStatus::Succeeded {
        runs::set_status(tx, run, RunStatus::Running, Vec::new())?;
    }
    runs::set_status(tx, run, to, extra)?;
    Ok(())
}

/// Requests counted per state at most (a read stays far under its limits however long the
/// outbox grows).
const COUNTED_AT_MOST: usize = 5000;

/// Counts of requests by state (up to [`COUNTED_AT_MOST`] each), and the ones that need a look:
/// pending after failed attempts, and dead ones.
fn status(tx: &mut Ctx<'_, '_>, _: &Args) -> FunctionResult {
    let mut counts = Object::new();
    let mut stuck = Vec::new();
    for state in RequestState::ALL {
        let range = IndexRange::default().eq(state.as_str());
        let requests = tx.query_unchecked(TABLE, "by_state_next", range, Order::Asc)?.take(COUNTED_AT_MOST, All)?;
        counts.insert(state.as_str().to_owned(), Value::from(requests.len() as f64));
        let needs_a_look = |r: &&Document| match state {
            RequestState::Pending => r.fields.contains_key("lastError"),
            RequestState::Dead => true,
            _ => false,
        };
        stuck.extend(requests.iter().filter(needs_a_look).take(100).map(Document::to_value));
    }
    Ok(Value::Object(object([("counts", Value::Object(counts)), ("stuck", Value::Array(stuck))])))
}

pub(crate) fn functions() -> Vec<Function> {
    let counts = v::object(RequestState::ALL.iter().map(|s| (s.as_str(), v::number())).collect());
    vec![
        Function::query(
            "_system/temporal/status:default",
            v::object(vec![]),
            v::object(vec![("counts", counts), ("stuck", v::array(v::document(TABLE)))]),
            status,
        )
        .for_workers(),
    ]
}
