//! The Temporal bridge's process side: Temporal's HTTP API, the dispatcher that sends the
//! outbox's requests (`jangar_domain::temporal`), and the mirror that follows every started
//! workflow to its end. Both record what they learn through the domain's mutations, so what
//! Jangar shows is what Temporal said, and a crash at any point repeats a request Temporal
//! dedupes rather than losing or doubling it.

mod dispatcher;
mod mirror;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};
use jangar_domain::temporal::{Answer, Claimed, Closed, RequestKind};
use jangar_engine::base64;
use jangar_engine::database::Database;
use jangar_engine::value::Value;
use serde_json::{Value as Json, json};
use tokio::sync::{Notify, watch};

use crate::client::{HttpClient, HttpResponse, SendError};

/// How Jangar reaches Temporal (`serve --temporal-*`).
#[derive(Clone, Debug)]
pub struct TemporalConfig {
    /// Temporal's HTTP API, e.g. `http://127.0.0.1:7243` (`https://` for TLS).
    pub url: String,
    pub namespace: String,
    /// The task queue of work orders that name none.
    pub task_queue: String,
    /// How long a canceled work order's workflow may go on before it is terminated.
    pub cancel_grace: Duration,
    /// Sent as `Authorization: Bearer <key>` (hosted Temporal's API keys).
    pub api_key: Option<String>,
    /// `workflowExecutionTimeout` of every start, if set.
    pub execution_timeout: Option<Duration>,
}

impl TemporalConfig {
    /// What the domain's mutations need to know of the bridge.
    pub fn settings(&self) -> jangar_domain::temporal::BridgeSettings {
        jangar_domain::temporal::BridgeSettings {
            task_queue: self.task_queue.clone(),
            cancel_grace_ms: self.cancel_grace.as_secs_f64() * 1000.0,
        }
    }
}

/// The bridge's figures for `/metrics`.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Requests waiting to be sent (or sent again), as of the dispatcher's last look.
    pub pending: AtomicU64,
    /// Requests Temporal took (starts, cancels, terminations).
    pub sent: AtomicU64,
    /// Attempts that got no definite answer and will be repeated.
    pub failed_attempts: AtomicU64,
    /// Requests Temporal refused for good.
    pub dead: AtomicU64,
    /// Workflows being followed now.
    pub followed: AtomicU64,
    /// Milliseconds from a workflow's close (Temporal's clock) to its run showing it, last seen.
    pub mirror_lag_ms: AtomicU64,
}

/// The bridge's two tasks; dropping their handles does not stop them, `stop` does.
pub struct Bridge {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    /// Starts the dispatcher and the mirror on `db`; both end when `stop` turns true.
    pub fn start(
        db: Arc<Database>,
        config: TemporalConfig,
        stats: Arc<BridgeStats>,
        stop: watch::Receiver<bool>,
    ) -> Bridge {
        let temporal = Arc::new(Temporal::new(config));
        let started = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(dispatcher::run(db.clone(), temporal.clone(), stats.clone(), started.clone(), stop.clone())),
            tokio::spawn(mirror::run(db, temporal, stats, started, stop)),
        ];
        Bridge { tasks }
    }

    /// Waits for both tasks to end (after `stop`), so no handle to the database outlives them.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A start, cancel or terminate waits this long for Temporal's answer; far less than a claim's
/// lease, so an answer never arrives after another process took the request over.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A history long poll waits this long; Temporal answers an idle one after 20 s by default.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(35);

const JSON_PLAIN: &str = "anNvbi9wbGFpbg=="; // base64 of `json/plain`

struct Temporal {
    http: HttpClient,
    config: TemporalConfig,
}

/// Which events a history read returns.
#[derive(Clone, Copy)]
enum HistoryFilter {
    All,
    Close,
}

/// Why the mirror could not read a workflow's history.
enum HistoryError {
    NotFound,
    Other(String),
}

impl Temporal {
    fn new(config: TemporalConfig) -> Temporal {
        Temporal { http: HttpClient::default(), config }
    }

    fn url(&self, workflow_id: &str, rest: &str) -> String {
        let base = self.config.url.trim_end_matches('/');
        format!("{base}/namespaces/{}/workflows/{workflow_id}{rest}", self.config.namespace)
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Json>,
        timeout: Duration,
    ) -> Result<HttpResponse, SendError> {
        let bearer = self.config.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let body = body.map(Json::to_string).unwrap_or_default();
        match tokio::time::timeout(timeout, self.http.request(method, url, &headers, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(SendError { message: format!("no answer from {url} within {timeout:?}"), not_sent: false }),
        }
    }

    /// Sends a claimed request and classifies Temporal's answer.
    async fn send(&self, request: &Claimed) -> Answer {
        let (url, body) = match (request.kind, &request.start) {
            (RequestKind::Start, Some(start)) => {
                let mut body = json!({
                    "workflowType": {"name": start.workflow_type},
                    "taskQueue": {"name": start.task_queue},
                    "requestId": request.request_id,
                    "identity": "jangar",
                    "workflowIdReusePolicy": "WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE",
                    "workflowIdConflictPolicy": "WORKFLOW_ID_CONFLICT_POLICY_FAIL",
                    "memo": {"fields": {"jangarWorkOrderId": payload(&Value::from(request.work_order.encode()))}},
                });
                if let Some(args) = &start.args {
                    body["input"] = json!({"payloads": [payload(args)]});
                }
                if let Some(timeout) = self.config.execution_timeout {
                    body["workflowExecutionTimeout"] = json!(format!("{}s", timeout.as_secs_f64()));
                }
                (self.url(&request.workflow_id, ""), body)
            }
            (RequestKind::Cancel, _) => (
                self.url(&request.workflow_id, "/cancel"),
                json!({"reason": "work order canceled", "requestId": request.request_id, "identity": "jangar"}),
            ),
            (RequestKind::Terminate, _) => (
                self.url(&request.workflow_id, "/terminate"),
                json!({"reason": "work order canceled; the workflow did not stop within the grace period",
                       "identity": "jangar"}),
            ),
            (RequestKind::Start, None) => unreachable!("a claimed start carries its workflow"),
        };
        let answer = self.call(Method::POST, &url, Some(&body), REQUEST_TIMEOUT).await;
        classify(request, answer)
    }

    /// One page of a run's history from `token` on, every event or only the close event, waiting
    /// (a long poll) until there is news.
    async fn history(
        &self,
        workflow_id: &str,
        run_id: &str,
        events: HistoryFilter,
        token: Option<&str>,
    ) -> Result<(Vec<Json>, Option<String>), HistoryError> {
        let filter = match events {
            HistoryFilter::All => "HISTORY_EVENT_FILTER_TYPE_ALL_EVENT",
            HistoryFilter::Close => "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT",
        };
        let mut url = self.url(
            workflow_id,
            &format!(
                "/history?execution.runId={run_id}&waitNewEvent=true\
                 &historyEventFilterType={filter}&noPayloadShorthand=true"
            ),
        );
        if let Some(token) = token {
            url.push_str("&nextPageToken=");
            url.push_str(&percent_encode(token));
        }
        let response =
            self.call(Method::GET, &url, None, LONG_POLL_TIMEOUT).await.map_err(|e| HistoryError::Other(e.message))?;
        let body = response.json().unwrap_or(Json::Null);
        match response.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND if is_workflow_not_found(&body) => return Err(HistoryError::NotFound),
            status => return Err(HistoryError::Other(format!("{status}: {}", message_of(&response, &body)))),
        }
        let events = body["history"]["events"].as_array().cloned().unwrap_or_default();
        let token = body["nextPageToken"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        Ok((events, token))
    }
}

/// A workflow argument as Temporal's full payload form: the JSON bytes, base64-encoded, so
/// `[]`, `{}` and every character arrive exactly as sent (the shorthand form turns `[]` into null).
fn payload(value: &Value) -> Json {
    let bytes = serde_json::to_vec(&workflow_json(value)).unwrap_or_default();
    json!({"metadata": {"encoding": JSON_PLAIN}, "data": base64::encode(&bytes)})
}

/// A value as a workflow reads it: plain JSON, int64 as an exact JSON integer, bytes as base64.
fn workflow_json(value: &Value) -> Json {
    match value {
        Value::Int64(n) => Json::from(*n),
        Value::Array(items) => Json::Array(items.iter().map(workflow_json).collect()),
        Value::Object(fields) => Json::Object(fields.iter().map(|(k, v)| (k.clone(), workflow_json(v))).collect()),
        other => other.to_json(jangar_engine::value::JsonFormat::Clean),
    }
}

/// A result payload as a Jangar value: JSON numbers are float64, as Convex reads JSON; a result
/// Jangar cannot hold as an object (a `$` field name, say) is kept as its JSON text.
fn decode_payload(payload: &Json) -> Option<Value> {
    let bytes = base64::decode(payload["data"].as_str()?)?;
    let json: Json = serde_json::from_slice(&bytes).ok()?;
    Some(Value::from_json(&json).unwrap_or_else(|_| Value::from(json.to_string())))
}

/// What Temporal said: its status message, else the start of whatever came back (a proxy's page).
fn message_of(response: &HttpResponse, body: &Json) -> String {
    match body["message"].as_str() {
        Some(message) => message.to_owned(),
        None => String::from_utf8_lossy(&response.body).chars().take(300).collect(),
    }
}

/// A 404 about the workflow itself (not the namespace, not a wrong URL answering 404 to all).
fn is_workflow_not_found(body: &Json) -> bool {
    detail_type(body).is_some_and(|t| t.ends_with(".NotFoundFailure"))
}

fn detail_type(body: &Json) -> Option<&str> {
    body["details"].as_array()?.first()?["@type"].as_str()
}

/// The wait before attempt `attempt + 1`: 0.5 s doubling to a minute, with ±20% jitter so
/// requests that failed together are not sent again together.
fn backoff_ms(attempt: u32) -> f64 {
    let base = (500.0 * 2f64.powi(attempt.saturating_sub(1).min(20) as i32)).min(60_000.0);
    let mut random = [0u8; 2];
    let _ = getrandom::fill(&mut random);
    base * (0.8 + 0.4 * f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX))
}

/// Turns Temporal's answer (or its absence) into what the outbox records.
fn classify(request: &Claimed, answer: Result<HttpResponse, SendError>) -> Answer {
    let retry_in_ms = backoff_ms(request.attempt);
    let response = match answer {
        Ok(response) => response,
        Err(e) => return Answer::Retry { error: e.message, arrived: !e.not_sent, retry_in_ms },
    };
    let body = response.json().unwrap_or(Json::Null);
    let message = message_of(&response, &body);
    match (request.kind, response.status) {
        (RequestKind::Start, StatusCode::OK) => match body["runId"].as_str() {
            Some(run_id) => Answer::Started { run_id: run_id.to_owned() },
            None => {
                Answer::Retry { error: format!("a start answer without a runId: {body}"), arrived: true, retry_in_ms }
            }
        },
        // Already started: by an earlier attempt of ours (the same request id), which is the
        // success whose answer we lost, or already finished; either way the one execution.
        (RequestKind::Start, StatusCode::CONFLICT)
            if detail_type(&body).is_some_and(|t| t.ends_with("WorkflowExecutionAlreadyStartedFailure")) =>
        {
            let details = &body["details"][0];
            if details["startRequestId"].as_str() != Some(request.request_id.as_str()) {
                tracing::warn!(workflow = %request.workflow_id, started_by = %details["startRequestId"],
                    "the work order's workflow was started by another request; following that execution");
            }
            match details["runId"].as_str() {
                Some(run_id) => Answer::Started { run_id: run_id.to_owned() },
                None => Answer::Retry {
                    error: format!("already started, without a runId: {message}"),
                    arrived: true,
                    retry_in_ms,
                },
            }
        }
        (RequestKind::Cancel | RequestKind::Terminate, StatusCode::OK) => Answer::Done,
        // Nothing (left) to stop: the workflow is gone or already closed.
        (RequestKind::Cancel | RequestKind::Terminate, StatusCode::NOT_FOUND) if is_workflow_not_found(&body) => {
            Answer::Done
        }
        // Only InvalidArgument (gRPC code 3) is final; the gateway maps other codes, some of them
        // passing (FailedPrecondition during a failover), to 400 too.
        (_, StatusCode::BAD_REQUEST) if body["code"] == 3 => {
            Answer::Refused { message: format!("Temporal refused the request: {message}") }
        }
        (_, status) => {
            Answer::Retry { error: format!("Temporal answered {status}: {message}"), arrived: true, retry_in_ms }
        }
    }
}

/// How a run's history ends.
enum Ending {
    Closed(Closed),
    /// The workflow goes on as this new run.
    ContinuedAs(String),
}

/// How a close event reads in Jangar's terms; `None` for any other event.
fn ending(event: &Json) -> Option<Ending> {
    let attributes = |name: &str| &event[name];
    Some(Ending::Closed(match event["eventType"].as_str()? {
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" => {
            let result = attributes("workflowExecutionCompletedEventAttributes")["result"]["payloads"][0].clone();
            Closed::Completed { result: decode_payload(&result) }
        }
        "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED" => {
            let failure = &attributes("workflowExecutionFailedEventAttributes")["failure"];
            Closed::Failed {
                message: failure["message"].as_str().unwrap_or("the workflow failed").to_owned(),
                failure_type: failure["applicationFailureInfo"]["type"].as_str().map(str::to_owned),
            }
        }
        "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT" => Closed::TimedOut {
            retry_state: attributes("workflowExecutionTimedOutEventAttributes")["retryState"]
                .as_str()
                .map(str::to_owned),
        },
        "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED" => Closed::Canceled,
        "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED" => Closed::Terminated {
            reason: attributes("workflowExecutionTerminatedEventAttributes")["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" => {
            let next = attributes("workflowExecutionContinuedAsNewEventAttributes")["newExecutionRunId"].as_str();
            return Some(Ending::ContinuedAs(next.unwrap_or_default().to_owned()));
        }
        _ => return None,
    }))
}

/// Encodes a page token for a query string (tokens are base64, with `+`, `/` and `=`).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
