//! Realtime fanout benchmark client, driven by bench/fanout.py.
//!
//! Opens N subscribers against one server, spread round-robin over the sessions
//! listed in `--sessions`, then appends messages over HTTP at a fixed rate
//! (round-robin over the sessions) and measures how fast and how completely
//! each write reaches the subscribers of its session.
//!
//! * `--system jangar`: one WebSocket per subscriber on `/api/1.48.0/sync` (the
//!   Convex sync protocol): `Connect`, then `ModifyQuerySet` adding
//!   `chatMessages:listBySession {sessionId, limit: 20}`. Every Transition's
//!   startVersion must equal the previous endVersion. Writes are
//!   `POST /api/mutation chatMessages:append`.
//! * `--system pocketbase`: one SSE stream per subscriber on `GET /api/realtime`;
//!   after `PB_CONNECT`, `POST /api/realtime` subscribes the client to
//!   `messages/*?options={"query":{"filter":"session='<id>'"}}` (one session's
//!   records). Writes are `POST /api/collections/messages/records`.
//!
//! A message's content is its send time (ns since the epoch). A subscriber that
//! sees a message for the first time records now - send time; writer and
//! subscribers share this process, hence one clock. Server memory and CPU come
//! from /proc/<--pid>. The result is one line on stdout, `RESULT {json}`;
//! progress goes to stderr.
//!
//! Every subscriber holds one socket: raise `ulimit -n` above N first
//! (bench/fanout.py raises RLIMIT_NOFILE to the hard limit before starting it).
//!
//! Usage: fanout --system jangar|pocketbase --port P --pid PID --sessions FILE
//!        [--subscribers 1000] [--rate 20] [--duration 20] [--drain 10] [--clk-tck 100]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Subscribers connecting (not yet initialised) at once. This is above the accept
/// backlog of a tokio listener (128), so a slow accept loop shows as dropped SYNs.
const CONNECT_CONCURRENCY: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writes may still be answered after the last one was sent.
const WRITE_GRACE: Duration = Duration::from_secs(120);

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos() as u64
}

fn log(text: &str) {
    eprintln!("[fanout] {text}");
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start with field 3, the state.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    fields.iter().sum()
}

/// Busy time of the whole machine (all CPUs), in clock ticks.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let ticks: Vec<u64> = cpu.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
    ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum()
}

/// The machine's TcpExt ListenOverflows counter: SYNs dropped because an accept queue was full.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else { return 0 };
    let column = names.split_whitespace().position(|name| name == "ListenOverflows");
    column.and_then(|c| values.split_whitespace().nth(c)?.parse().ok()).unwrap_or(0)
}

/// Percent-encodes everything but unreserved characters (for a query parameter value).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    let i = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().checked_sub(1)?);
    Some(sorted_us[i] as f64 / 1000.0)
}

/// What every subscriber and the writer add up.
#[derive(Default)]
struct Counters {
    /// Subscribers connected and initialised (first result or subscription confirmed).
    held: AtomicU64,
    /// Subscribers that never got that far.
    failed: AtomicU64,
    /// Held subscribers whose connection ended before the end of the run.
    dropped: AtomicU64,
    /// Transitions whose startVersion was not the previous endVersion.
    violations: AtomicU64,
    /// QueryFailed, FatalError, AuthError or unexpected frames.
    server_errors: AtomicU64,
    /// Every first sighting of a message by a subscriber: (send time ns, latency µs).
    deliveries: Mutex<Vec<(u64, u64)>>,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, text: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(text.chars().take(300).collect());
        }
    }
}

/// One subscriber's state.
struct Sub {
    permit: Option<OwnedSemaphorePermit>,
    held: bool,
    seen: HashSet<u64>,
}

impl Sub {
    /// Takes in the messages a subscriber now sees (send times). The first call
    /// marks it held; messages already there then are not deliveries.
    fn update(&mut self, ctx: &Counters, sent: impl IntoIterator<Item = u64>) {
        let now = now_ns();
        let first = !self.held;
        for ns in sent {
            if self.seen.insert(ns) && !first {
                ctx.deliveries.lock().unwrap().push((ns, now.saturating_sub(ns) / 1000));
            }
        }
        if first {
            self.held = true;
            self.permit = None;
            ctx.held.fetch_add(1, Relaxed);
        }
    }
}

/// A small HTTP/1.1 client for the writer, stats and PocketBase subscription requests.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    in_flight: Semaphore,
}

impl Http {
    fn new(port: u16) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build(connector);
        Http { client, base: format!("http://127.0.0.1:{port}"), in_flight: Semaphore::new(64) }
    }

    async fn request(&self, method: Method, path: &str, body: Option<&Json>) -> Result<(u16, Vec<u8>), String> {
        let _permit = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(data)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| format!("{path}: {e}"))?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| format!("{path}: {e}"))?.to_bytes();
            Ok((status, bytes.to_vec()))
        };
        tokio::time::timeout(HTTP_TIMEOUT, exchange).await.map_err(|_| format!("{path}: timed out"))?
    }

    async fn jangar_stats(&self) -> Json {
        match self.request(Method::GET, "/jangar/stats", None).await {
            Ok((200, body)) => serde_json::from_slice(&body).unwrap_or(Json::Null),
            _ => Json::Null,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Jangar,
    PocketBase,
}

/// Convex sync protocol subscriber. Returns Ok when told to stop.
async fn jangar_subscriber(
    port: u16,
    session: &str,
    i: usize,
    ctx: &Counters,
    sub: &mut Sub,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let url = format!("ws://127.0.0.1:{port}/api/1.48.0/sync");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connect = json!({
        "type": "Connect", "sessionId": format!("fanout-{}-{i:08}", std::process::id()),
        "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": now_ns() / 1_000_000,
    });
    let modify = json!({
        "type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
        "modifications": [{"type": "Add", "queryId": 0, "udfPath": "chatMessages:listBySession",
                           "args": [{"sessionId": session, "limit": 20}]}],
    });
    for message in [connect, modify] {
        ws.send(Message::text(message.to_string())).await.map_err(|e| format!("send: {e}"))?;
    }
    let mut version = json!({"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="});
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return Ok(());
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => return Err(format!("server closed the socket: {frame:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("websocket: {e}")),
            None => return Err("websocket ended".into()),
        };
        let message: Json = serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
        match message["type"].as_str() {
            Some("Transition") => {
                if message["startVersion"] != version {
                    ctx.violations.fetch_add(1, Relaxed);
                    ctx.error(format!("version violation: start {} after end {version}", message["startVersion"]));
                }
                version = message["endVersion"].clone();
                for modification in message["modifications"].as_array().into_iter().flatten() {
                    match (modification["type"].as_str(), modification["value"].as_array()) {
                        (Some("QueryUpdated"), Some(messages)) => {
                            let sent = messages.iter().filter_map(|m| m["content"].as_str()?.parse().ok());
                            sub.update(ctx, sent);
                        }
                        _ => {
                            ctx.server_errors.fetch_add(1, Relaxed);
                            ctx.error(format!("unexpected modification: {modification}"));
                        }
                    }
                }
            }
            Some("Ping") => {}
            _ => {
                ctx.server_errors.fetch_add(1, Relaxed);
                ctx.error(format!("unexpected message: {text}"));
            }
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// PocketBase realtime (SSE) subscriber. Returns Ok when told to stop.
async fn pocketbase_subscriber(
    port: u16,
    session: &str,
    http: &Http,
    ctx: &Counters,
    sub: &mut Sub,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("http: {e}"))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = Request::get("/api/realtime")
        .header(header::HOST, format!("127.0.0.1:{port}"))
        .header(header::ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("GET /api/realtime: {e}"))?;
    if response.status() != 200 {
        return Err(format!("GET /api/realtime: status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => return Ok(()),
        };
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(format!("event stream: {e}")),
            None => return Err("event stream ended".into()),
        }
        // Events end with a blank line; each has "event:" and "data:" lines.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
            };
            let (event, data) = (field("event:").unwrap_or_default(), field("data:").unwrap_or_default());
            let data: Json = serde_json::from_str(&data).unwrap_or(Json::Null);
            if event == "PB_CONNECT" {
                let client_id = data["clientId"].as_str().ok_or("PB_CONNECT without clientId")?;
                let options = json!({"query": {"filter": format!("session='{session}'")}}).to_string();
                let topic = format!("messages/*?options={}", percent_encode(&options));
                let subscribe = json!({"clientId": client_id, "subscriptions": [topic]});
                match http.request(Method::POST, "/api/realtime", Some(&subscribe)).await? {
                    (204, _) => sub.update(ctx, []),
                    (status, body) => {
                        return Err(format!("POST /api/realtime: {status} {}", String::from_utf8_lossy(&body)));
                    }
                }
            } else if data["action"] == "create" {
                sub.update(ctx, data["record"]["content"].as_str().and_then(|c| c.parse().ok()));
            } else {
                ctx.server_errors.fetch_add(1, Relaxed);
                ctx.error(format!("unexpected event {event}: {data}"));
            }
        }
    }
}

#[derive(Default)]
struct Writes {
    /// Writes answered with success, per session index.
    per_session: Vec<usize>,
    /// The send times of those writes.
    acked: HashSet<u64>,
    /// Writes answered with an error.
    failed: u64,
    /// Writes without an answer: timed out, or still open WRITE_GRACE after the last was
    /// sent. They may still have committed; the stored messages tell.
    unanswered: u64,
    round_trips_us: Vec<u64>,
}

enum Outcome {
    Acked,
    Failed,
    Unanswered,
}

/// Appends `rate` messages per second for `seconds`, round-robin over the sessions.
/// Round trips count from the scheduled send time, so they include waiting for one of
/// the 64 client connections when the server falls behind.
async fn write_phase(
    system: System,
    http: Arc<Http>,
    sessions: &[String],
    rate: f64,
    seconds: f64,
    ctx: Arc<Counters>,
) -> Writes {
    let total = (rate * seconds).round() as usize;
    let start = tokio::time::Instant::now();
    let mut writes = JoinSet::new();
    for k in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        let (index, session) = (k % sessions.len(), sessions[k % sessions.len()].clone());
        let (http, ctx) = (http.clone(), ctx.clone());
        writes.spawn(async move {
            let sent = now_ns();
            let (path, body) = match system {
                System::Jangar => (
                    "/api/mutation",
                    json!({"path": "chatMessages:append", "format": "json",
                    "args": {"sessionId": session, "role": "user", "content": sent.to_string()}}),
                ),
                System::PocketBase => (
                    "/api/collections/messages/records",
                    json!({"session": session, "role": "user", "content": sent.to_string()}),
                ),
            };
            let outcome = match http.request(Method::POST, path, Some(&body)).await {
                Ok((200, _)) if system == System::PocketBase => Outcome::Acked,
                Ok((200, reply)) if serde_json::from_slice::<Json>(&reply).is_ok_and(|r| r["status"] == "success") => {
                    Outcome::Acked
                }
                Ok((status, reply)) => {
                    ctx.error(format!("write: {status} {}", String::from_utf8_lossy(&reply)));
                    Outcome::Failed
                }
                Err(e) => {
                    ctx.error(e);
                    Outcome::Unanswered
                }
            };
            (index, sent, outcome, (now_ns() - sent) / 1000)
        });
    }
    let mut out = Writes { per_session: vec![0; sessions.len()], ..Writes::default() };
    let deadline = tokio::time::Instant::now() + WRITE_GRACE;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, writes.join_next()).await {
        match done {
            Ok((index, sent, Outcome::Acked, us)) => {
                out.per_session[index] += 1;
                out.acked.insert(sent);
                out.round_trips_us.push(us);
            }
            Ok((_, _, Outcome::Failed, _)) => out.failed += 1,
            _ => out.unanswered += 1,
        }
    }
    out.unanswered += writes.len() as u64;
    writes.abort_all();
    out
}

/// The messages the server stored: (session index, send time), read back over HTTP.
async fn stored_messages(system: System, http: &Http, sessions: &[String]) -> Result<HashSet<(usize, u64)>, String> {
    let sent = |m: &Json| m["content"].as_str()?.parse::<u64>().ok();
    let mut stored = HashSet::new();
    match system {
        System::Jangar => {
            for (i, session) in sessions.iter().enumerate() {
                let mut cursor = Json::Null;
                loop {
                    let query = json!({"path": "chatMessages:listBySession", "format": "json",
                        "args": {"sessionId": session, "paginationOpts": {"numItems": 1000, "cursor": cursor}}});
                    let (_, reply) = http.request(Method::POST, "/api/query", Some(&query)).await?;
                    let reply: Json = serde_json::from_slice(&reply).unwrap_or(Json::Null);
                    let Some(page) = reply["value"]["page"].as_array() else {
                        return Err(format!("listing {session}: {reply}"));
                    };
                    stored.extend(page.iter().filter_map(|m| Some((i, sent(m)?))));
                    if reply["value"]["isDone"] != true {
                        cursor = reply["value"]["continueCursor"].clone();
                    } else {
                        break;
                    }
                }
            }
        }
        System::PocketBase => {
            let index: std::collections::HashMap<&str, usize> =
                sessions.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
            for page in 1.. {
                let path = format!("/api/collections/messages/records?page={page}&perPage=500&skipTotal=1");
                let (_, reply) = http.request(Method::GET, &path, None).await?;
                let reply: Json = serde_json::from_slice(&reply).unwrap_or(Json::Null);
                let Some(items) = reply["items"].as_array() else { return Err(format!("listing records: {reply}")) };
                stored.extend(items.iter().filter_map(|m| Some((*index.get(m["session"].as_str()?)?, sent(m)?))));
                if items.len() < 500 {
                    break;
                }
            }
        }
    }
    Ok(stored)
}

#[tokio::main]
async fn main() {
    let system = match arg("--system", "jangar").as_str() {
        "jangar" => System::Jangar,
        "pocketbase" => System::PocketBase,
        other => panic!("--system must be jangar or pocketbase, not {other}"),
    };
    let port: u16 = arg("--port", "3210").parse().expect("--port");
    let pid = arg("--pid", "0");
    let n: usize = arg("--subscribers", "1000").parse().expect("--subscribers");
    let rate: f64 = arg("--rate", "20").parse().expect("--rate");
    let seconds: f64 = arg("--duration", "20").parse().expect("--duration");
    let drain = Duration::from_secs_f64(arg("--drain", "10").parse().expect("--drain"));
    let clk_tck: f64 = arg("--clk-tck", "100").parse().expect("--clk-tck");
    let sessions: Vec<String> = std::fs::read_to_string(arg("--sessions", "sessions.txt"))
        .expect("--sessions file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(!sessions.is_empty(), "no sessions");

    let http = Arc::new(Http::new(port));
    let ctx = Arc::new(Counters::default());
    let rss_before = rss_kib(&pid);

    // Connect phase: N subscribers, at most CONNECT_CONCURRENCY not yet initialised at a time.
    log(&format!("connecting {n} subscribers over {} sessions", sessions.len()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (connect_start, overflows0) = (Instant::now(), listen_overflows());
    let mut subscribers = JoinSet::new();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (ctx, http, session, mut stop) =
            (ctx.clone(), http.clone(), sessions[i % sessions.len()].clone(), stop_rx.clone());
        subscribers.spawn(async move {
            let mut sub = Sub { permit: Some(permit), held: false, seen: HashSet::new() };
            let outcome = match system {
                System::Jangar => jangar_subscriber(port, &session, i, &ctx, &mut sub, &mut stop).await,
                System::PocketBase => pocketbase_subscriber(port, &session, &http, &ctx, &mut sub, &mut stop).await,
            };
            if let Err(e) = outcome {
                let counter = if sub.held { &ctx.dropped } else { &ctx.failed };
                counter.fetch_add(1, Relaxed);
                ctx.error(format!("subscriber {i}: {e}"));
            }
        });
    }
    let mut ticks = 0u64;
    while (ctx.held.load(Relaxed) + ctx.failed.load(Relaxed)) < n as u64 && connect_start.elapsed() < CONNECT_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ticks += 1;
        if ticks.is_multiple_of(25) {
            log(&format!(
                "  {:.1}s: {} held, {} failed",
                connect_start.elapsed().as_secs_f64(),
                ctx.held.load(Relaxed),
                ctx.failed.load(Relaxed)
            ));
        }
    }
    let (connect_secs, overflows) = (connect_start.elapsed().as_secs_f64(), listen_overflows() - overflows0);
    let held_initial = ctx.held.load(Relaxed);
    log(&format!("{held_initial} held, {} failed after {connect_secs:.1}s", ctx.failed.load(Relaxed)));
    tokio::time::sleep(Duration::from_secs(2)).await; // let the server settle before measuring idle memory
    let rss_idle = rss_kib(&pid);
    let stats_idle = http.jangar_stats().await;

    // Write phase, then wait (bounded) for every expected delivery.
    let (cpu0, client_cpu0, busy0, stats0) =
        (cpu_ticks(&pid), cpu_ticks("self"), machine_busy_ticks(), stats_idle.clone());
    let write_start = Instant::now();
    log(&format!("writing {rate}/s for {seconds}s"));
    let mut writes = write_phase(system, http.clone(), &sessions, rate, seconds, ctx.clone()).await;
    let subscribers_of = |s: usize| (n / sessions.len() + usize::from(s < n % sessions.len())) as u64;
    let expected: u64 = writes.per_session.iter().enumerate().map(|(s, w)| *w as u64 * subscribers_of(s)).sum();
    // Deliveries of acknowledged writes (unanswered writes may still have committed).
    let received = || ctx.deliveries.lock().unwrap().iter().filter(|(sent, _)| writes.acked.contains(sent)).count();
    let drain_start = Instant::now();
    while (received() as u64) < expected && drain_start.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let write_secs = write_start.elapsed().as_secs_f64();
    let (cpu1, client_cpu1, busy1) = (cpu_ticks(&pid), cpu_ticks("self"), machine_busy_ticks());
    let stats1 = http.jangar_stats().await;
    let rss_end = rss_kib(&pid);
    let held_end = ctx.held.load(Relaxed) - ctx.dropped.load(Relaxed);
    let stored = stored_messages(system, &http, &sessions).await.unwrap_or_else(|e| {
        ctx.error(format!("cannot read the stored messages back: {e}"));
        HashSet::new()
    });

    // Stop every subscriber (bounded).
    let _ = stop_tx.send(true);
    let _ =
        tokio::time::timeout(Duration::from_secs(15), async { while subscribers.join_next().await.is_some() {} }).await;
    subscribers.abort_all();

    // Expected and received count every message the server stored, answered or not.
    let stored_sent: HashSet<u64> = stored.iter().map(|(_, sent)| *sent).collect();
    let stored_expected: u64 = stored.iter().map(|(s, _)| subscribers_of(*s)).sum();
    let stored_received = ctx.deliveries.lock().unwrap().iter().filter(|(sent, _)| stored_sent.contains(sent)).count();
    let (acked_received, deliveries) = (received(), ctx.deliveries.lock().unwrap().len());
    let mut latencies: Vec<u64> = ctx.deliveries.lock().unwrap().iter().map(|(_, us)| *us).collect();
    latencies.sort_unstable();
    writes.round_trips_us.sort_unstable();
    let round_trips = &writes.round_trips_us;
    let delta = |key: &str| match (stats1[key].as_u64(), stats0[key].as_u64()) {
        (Some(b), Some(a)) => json!(b - a),
        _ => Json::Null,
    };
    let writes_ok: usize = writes.per_session.iter().sum();
    let result = json!({
        "system": if system == System::Jangar { "jangar" } else { "pocketbase" },
        "subscribers": n, "sessions": sessions.len(),
        "held_initial": held_initial, "held_end": held_end,
        "failed": ctx.failed.load(Relaxed), "dropped": ctx.dropped.load(Relaxed),
        "connect_secs": connect_secs, "listen_overflows": overflows,
        "writes_ok": writes_ok, "writes_failed": writes.failed, "writes_unanswered": writes.unanswered,
        "write_secs": write_secs, "stored": stored.len(),
        "expected": stored_expected, "received": stored_received,
        "acked_expected": expected, "acked_received": acked_received, "deliveries": deliveries,
        "violations": ctx.violations.load(Relaxed), "server_errors": ctx.server_errors.load(Relaxed),
        "p50_ms": percentile_ms(&latencies, 0.50), "p99_ms": percentile_ms(&latencies, 0.99),
        "max_ms": latencies.last().map(|us| *us as f64 / 1000.0),
        "write_p50_ms": percentile_ms(round_trips, 0.50), "write_p99_ms": percentile_ms(round_trips, 0.99),
        "rss_before_kib": rss_before, "rss_idle_kib": rss_idle, "rss_end_kib": rss_end,
        "server_cpu_s": (cpu1 - cpu0) as f64 / clk_tck, "client_cpu_s": (client_cpu1 - client_cpu0) as f64 / clk_tck,
        "other_cpu_s": (busy1 - busy0).saturating_sub(cpu1 - cpu0 + client_cpu1 - client_cpu0) as f64 / clk_tck,
        "queries_run": delta("syncQueriesRun"), "transitions": delta("syncTransitions"), "steps": delta("syncSteps"),
        "stats_idle": stats_idle, "stats_end": stats1,
        "errors": *ctx.errors.lock().unwrap(),
    });
    println!("RESULT {result}");
}
