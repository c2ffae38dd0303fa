//! Every function call once it has finished: one structured log line (target `jangar::calls`),
//! the function metrics, and a bounded in-memory log that `npx convex logs` long-polls
//! (`GET /api/stream_function_logs`). Every place that runs a function records through
//! [`ExecutionLog::record`], so the three always agree.

use jangar_engine::knobs::FUNCTION_LOG_MESSAGE_BYTES;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::auth::Identity;
use crate::error::{ApiError, engine_code};
use crate::metrics::FunctionMetrics;
use jangar_domain::error::FunctionError;
use jangar_domain::registry::{Function, Kind};

/// Whose credentials a call came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CallerKind {
    Admin,
    /// An admin key acting as a user (`Convex <key>:<identity>`).
    AdminAsUser,
    User,
    /// No credentials: only open development mode lets such a call run.
    Anonymous,
}

impl CallerKind {
    pub(crate) fn of(identity: &Identity) -> CallerKind {
        match identity {
            Identity::Anonymous => CallerKind::Anonymous,
            Identity::Admin { acting_as: None } => CallerKind::Admin,
            Identity::Admin { acting_as: Some(_) } => CallerKind::AdminAsUser,
            Identity::User { .. } => CallerKind::User,
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            CallerKind::Admin => "admin",
            CallerKind::AdminAsUser => "admin-as-user",
            CallerKind::User => "user",
            CallerKind::Anonymous => "anonymous",
        }
    }
}

/// Names a request, or one execution in it, in the logs: 16 hex digits like Convex's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestId(u64);

impl RequestId {
    /// A fresh id. Ids are a counter from a random start put through a bijection of `u64`, so no
    /// two in one process are equal, while ids of different processes (replicas) look unrelated.
    pub(crate) fn next() -> RequestId {
        static START: OnceLock<u64> = OnceLock::new();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let start = *START.get_or_init(|| {
            let mut bytes = [0; 8];
            // Without randomness the ids are still unique within the process.
            let _ = getrandom::fill(&mut bytes);
            u64::from_le_bytes(bytes)
        });
        RequestId(scramble(start.wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed))))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// SplitMix64's finaliser: each step (xor-shift, multiplication by an odd number) is invertible,
/// so distinct inputs give distinct outputs.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// `cached`: the query cache answered; the function did not run.
    Success { cached: bool },
    /// `code`: what the caller was told (an application error's code, or the API's code for an
    /// infrastructure failure); `message`: why, at most `FUNCTION_LOG_MESSAGE_BYTES` of it.
    Failure { code: &'static str, message: String },
}

impl Outcome {
    /// The outcome of a function that ran (not from the cache).
    pub(crate) fn of<T>(result: &Result<T, FunctionError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success { cached: false },
            Err(error) => Outcome::of_error(error),
        }
    }

    pub(crate) fn of_error(error: &FunctionError) -> Outcome {
        match error {
            FunctionError::App(app) => Outcome::failure(app.code().as_str(), &app.message),
            FunctionError::Engine(e) => Outcome::failure(engine_code(e).as_str(), &e.to_string()),
        }
    }

    /// A call answered with an infrastructure error (a read as of a timestamp too old, say).
    pub(crate) fn of_api(error: &ApiError) -> Outcome {
        Outcome::failure(error.code, &error.message)
    }

    fn failure(code: &'static str, message: &str) -> Outcome {
        let kept = &message[..message.floor_char_boundary(FUNCTION_LOG_MESSAGE_BYTES)];
        Outcome::Failure { code, message: kept.to_owned() }
    }

    /// `success` or `error`, as the log line and the metrics' `outcome` label say it.
    pub(crate) const fn word(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::Failure { .. } => "error",
        }
    }
}

/// What ran, for whom, as part of which request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Invocation {
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    pub(crate) caller: CallerKind,
    pub(crate) request: RequestId,
}

impl Invocation {
    pub(crate) fn new(function: &Function, caller: CallerKind, request: RequestId) -> Invocation {
        Invocation { path: function.path, kind: function.kind, caller, request }
    }

    /// A call of an action the protocol layer serves itself (`auth:signIn`, `auth:signOut`).
    pub(crate) fn action(path: &'static str, caller: CallerKind, request: RequestId) -> Invocation {
        Invocation { path, kind: Kind::Action, caller, request }
    }
}

/// One finished call.
#[derive(Clone, Debug)]
pub(crate) struct Execution {
    pub(crate) invocation: Invocation,
    pub(crate) finished_at: SystemTime,
    pub(crate) duration: Duration,
    pub(crate) outcome: Outcome,
    /// Its own id: one request (a query batch, a subscription step) may run several functions.
    pub(crate) execution_id: RequestId,
}

impl Execution {
    /// Convex's `FunctionExecution` JSON, as `npx convex logs` and the dashboard read it.
    fn to_json(&self) -> Json {
        let call = &self.invocation;
        let (module, name) = call.path.split_once(':').unwrap_or((call.path, "default"));
        let udf_type = match call.kind {
            Kind::Query => "Query",
            Kind::Mutation => "Mutation",
            Kind::Action => "Action",
        };
        let finished = self.finished_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut entry = json!({
            "kind": "Completion",
            "udfType": udf_type,
            "identifier": format!("{module}.js:{name}"),
            "timestamp": finished.as_secs_f64(),
            "executionTime": self.duration.as_secs_f64(),
            // Functions here print nothing; the CLI expects the array all the same.
            "logLines": [],
            "cachedResult": matches!(self.outcome, Outcome::Success { cached: true }),
            "caller": call.caller.as_str(),
            "requestId": call.request.to_string(),
            "executionId": self.execution_id.to_string(),
            // Convex's read and write counts are not measured here; an empty object, not zeros.
            "usageStats": {},
        });
        if let Outcome::Failure { code, message } = &self.outcome {
            // The CLI prints `error` alone: it starts with the code clients branch on.
            entry["error"] = json!(format!("{code}: {message}"));
            entry["errorCode"] = json!(code);
        }
        entry
    }
}

/// An execution with its place in the log.
struct Logged {
    /// Milliseconds since the epoch, strictly increasing along the log.
    cursor: f64,
    execution: Arc<Execution>,
}

/// The smallest step between two cursors: 1 µs, far above the spacing of `f64`s near today's
/// milliseconds since the epoch (about 0.24 µs), so two calls finishing in the same microsecond
/// still get distinct cursors and a poller pages past each exactly once.
const CURSOR_STEP_MS: f64 = 0.001;

/// The most recent executions, and the long polls waiting for more.
pub struct ExecutionLog {
    entries: Mutex<VecDeque<Logged>>,
    capacity: usize,
    /// The newest entry's cursor; a poll with nothing to answer waits for it to change.
    newest: watch::Sender<f64>,
    /// How long such a poll waits before answering with no entries.
    wait: Duration,
    metrics: FunctionMetrics,
}

/// One answer to a log poll: the executions after its cursor, oldest first, and the cursor to
/// ask from next.
pub(crate) struct LogPage {
    entries: Vec<Arc<Execution>>,
    next_cursor: f64,
}

impl LogPage {
    /// `{entries, newCursor}`, as Convex's `/api/stream_function_logs` answers.
    pub(crate) fn to_json(&self) -> Json {
        let entries: Vec<Json> = self.entries.iter().map(|execution| execution.to_json()).collect();
        json!({"entries": entries, "newCursor": self.next_cursor})
    }
}

impl ExecutionLog {
    /// Keeps the last `capacity` executions; a poll waits up to `wait` for a new one.
    pub fn new(capacity: usize, wait: Duration) -> ExecutionLog {
        ExecutionLog {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            newest: watch::Sender::new(0.0),
            wait,
            metrics: FunctionMetrics::default(),
        }
    }

    /// The per-function counters and histograms the executions feed, for the metrics registry.
    pub(crate) fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }

    /// Records a finished call: logs it, counts it, and keeps it for the log's pollers.
    pub(crate) fn record(&self, invocation: Invocation, duration: Duration, outcome: Outcome) {
        let execution = Execution {
            invocation,
            finished_at: SystemTime::now(),
            duration,
            outcome,
            execution_id: RequestId::next(),
        };
        let (code, error) = match &execution.outcome {
            Outcome::Success { .. } => (None, None),
            Outcome::Failure { code, message } => (Some(*code), Some(message.as_str())),
        };
        tracing::info!(
            target: "jangar::calls",
            path = invocation.path,
            kind = invocation.kind.name(),
            caller = invocation.caller.as_str(),
            duration_ms = duration.as_secs_f64() * 1e3,
            outcome = execution.outcome.word(),
            code,
            error,
            cached = matches!(execution.outcome, Outcome::Success { cached: true }),
            request_id = %invocation.request,
            "function call"
        );
        self.metrics.observe(&invocation, duration, &execution.outcome);
        let since_epoch = execution.finished_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let cursor = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let last = entries.back().map_or(0.0, |e| e.cursor);
            // Whole microseconds, so the step below is never lost in rounding.
            let cursor = (since_epoch.as_micros() as f64 / 1e3).max(last + CURSOR_STEP_MS);
            debug_assert!(cursor > last, "cursors increase along the log");
            if entries.len() == self.capacity {
                entries.pop_front();
            }
            entries.push_back(Logged { cursor, execution: Arc::new(execution) });
            cursor
        };
        self.newest.send_replace(cursor);
    }

    /// The executions after `cursor` (milliseconds since the epoch; 0: all that are kept), at
    /// once if there are any, else the first to come within the log's wait, or none when the
    /// wait ends or `shutdown` turns true (a server stopping must not wait for its pollers).
    pub(crate) async fn poll(&self, cursor: f64, mut shutdown: watch::Receiver<bool>) -> LogPage {
        // Subscribed before looking, so an execution recorded in between still wakes the poll.
        let mut newest = self.newest.subscribe();
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let entries = self.after(cursor);
            if let Some(last) = entries.last() {
                let next_cursor = last.0;
                return LogPage { entries: entries.into_iter().map(|(_, e)| e).collect(), next_cursor };
            }
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, newest.changed()) => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = stopping(&mut shutdown) => break,
            }
        }
        LogPage { entries: Vec::new(), next_cursor: cursor }
    }

    fn after(&self, cursor: f64) -> Vec<(f64, Arc<Execution>)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = entries.partition_point(|e| e.cursor <= cursor);
        entries.range(first..).map(|e| (e.cursor, e.execution.clone())).collect()
    }
}

/// Resolves once `shutdown` turns true; never, if its sender is gone without saying so.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(path: &'static str, kind: Kind) -> Invocation {
        Invocation { path, kind, caller: CallerKind::Admin, request: RequestId::next() }
    }

    /// A shutdown signal that says `now` and never changes (its sender is gone).
    fn shutdown_signal(now: bool) -> watch::Receiver<bool> {
        watch::channel(now).1
    }

    #[test]
    fn request_ids_are_16_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| RequestId::next().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn calls_in_the_same_millisecond_page_one_by_one() {
        let log = ExecutionLog::new(100, Duration::from_millis(10));
        for _ in 0..50 {
            log.record(
                invocation("chatSessions:create", Kind::Mutation),
                Duration::ZERO,
                Outcome::Success { cached: false },
            );
        }
        let all = log.poll(0.0, shutdown_signal(false)).await;
        assert_eq!(all.entries.len(), 50);
        let mut cursor = 0.0;
        for seen in 0..50 {
            let page = log.after(cursor);
            assert_eq!(page.len(), 50 - seen, "after {seen} entries");
            cursor = page[0].0;
        }
        assert_eq!(all.next_cursor, cursor, "the first answer's cursor is its last entry's");
        let nothing = log.poll(cursor, shutdown_signal(false)).await;
        assert!(nothing.entries.is_empty());
        assert_eq!(nothing.next_cursor, cursor);
    }

    #[tokio::test]
    async fn the_log_keeps_the_newest_entries() {
        let log = ExecutionLog::new(3, Duration::ZERO);
        for path in ["a:one", "a:two", "a:three", "a:four"] {
            log.record(invocation(path, Kind::Query), Duration::ZERO, Outcome::Success { cached: true });
        }
        let page = log.poll(0.0, shutdown_signal(false)).await;
        let paths: Vec<_> = page.entries.iter().map(|e| e.invocation.path).collect();
        assert_eq!(paths, ["a:two", "a:three", "a:four"]);
    }

    #[tokio::test]
    async fn a_waiting_poll_wakes_for_a_new_call_and_ends_at_shutdown() {
        let log = Arc::new(ExecutionLog::new(10, Duration::from_secs(30)));
        let waiting = tokio::spawn({
            let log = log.clone();
            async move { log.poll(0.0, shutdown_signal(false)).await.entries.len() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.record(invocation("a:b", Kind::Query), Duration::ZERO, Outcome::Success { cached: false });
        let woke = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woke up").unwrap();
        assert_eq!(woke, 1);
        let newest = log.after(0.0)[0].0;
        let stopped = tokio::time::timeout(Duration::from_secs(5), log.poll(newest, shutdown_signal(true))).await;
        assert!(stopped.expect("answered at once").entries.is_empty());
    }

    #[test]
    fn an_entry_is_convex_s_function_execution() {
        let log = ExecutionLog::new(10, Duration::ZERO);
        let call = Invocation {
            path: "chatSessions:get",
            kind: Kind::Query,
            caller: CallerKind::AdminAsUser,
            request: RequestId::next(),
        };
        let failure = Outcome::failure("NotFound", &"x".repeat(FUNCTION_LOG_MESSAGE_BYTES * 2));
        log.record(call, Duration::from_millis(1500), failure);
        let (_, execution) = log.after(0.0).pop().unwrap();
        let entry = execution.to_json();
        assert_eq!(entry["kind"], "Completion");
        assert_eq!(entry["udfType"], "Query");
        assert_eq!(entry["identifier"], "chatSessions.js:get");
        assert_eq!(entry["executionTime"], 1.5);
        assert_eq!(entry["logLines"], json!([]));
        assert_eq!(entry["caller"], "admin-as-user");
        assert_eq!(entry["cachedResult"], false);
        assert_eq!(entry["errorCode"], "NotFound");
        let error = entry["error"].as_str().unwrap();
        assert_eq!(error.len(), "NotFound: ".len() + FUNCTION_LOG_MESSAGE_BYTES, "long messages are cut");
        assert_eq!(entry["requestId"], call.request.to_string());
        assert_ne!(entry["executionId"], entry["requestId"]);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - entry["timestamp"].as_f64().unwrap()).abs() < 60.0, "seconds since the epoch");
        let success = Outcome::Success { cached: true };
        log.record(invocation("a:b", Kind::Mutation), Duration::ZERO, success);
        let entry = log.after(0.0).pop().unwrap().1.to_json();
        assert!(entry.get("error").is_none() && entry.get("errorCode").is_none());
        assert_eq!((entry["udfType"].as_str(), entry["cachedResult"].as_bool()), (Some("Mutation"), Some(true)));
    }
}
