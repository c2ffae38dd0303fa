//! Several Jangar replicas on one PostgreSQL: every replica serves reads,
//! writes and subscriptions, sees the others' commits, and agrees on the
//! final state; a replica killed under load loses no acknowledged write.
//!
//! These run in the PostgreSQL pass of the suite (`JANGAR_TEST_BACKEND=postgres`,
//! which `scripts/test` runs whenever PostgreSQL's server binaries are installed).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jangar_api::client::HttpClient;
use jangar_test_support::postgres::{self, TestPostgres};
use jangar_test_support::{Store, TempDir, TestServer, temp_dir};
use serde_json::{Value, json};

/// The shared PostgreSQL, in the PostgreSQL pass; `None` (the test is skipped) otherwise.
fn database() -> Option<String> {
    if !postgres::selected() {
        eprintln!("skipped: replicas need the PostgreSQL pass (JANGAR_TEST_BACKEND=postgres)");
        return None;
    }
    let server = TestPostgres::shared().expect("JANGAR_TEST_BACKEND=postgres needs PostgreSQL's server binaries");
    Some(server.fresh_database())
}

async fn replicas(url: &str, dirs: &[TempDir]) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for dir in dirs {
        let url = url.to_owned();
        servers.push(
            TestServer::start_custom(dir, move |c| {
                c.database_url = Some(url);
                c.limits.calls_per_second = 0;
            })
            .await,
        );
    }
    servers
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|m| m["_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn three_replicas_serve_writes_and_subscriptions_and_agree() {
    let Some(url) = database() else { return };
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
    let servers = replicas(&url, &dirs).await;
    let session = servers[0].mutation("chatSessions:create", json!({"userId": "u", "title": "shared"})).await;
    let order = servers[1].mutation("workOrders:create", json!({"sessionId": session})).await;
    let run = servers[2].mutation("runs:start", json!({"workOrderId": order, "temporalWorkflowId": "wf"})).await;

    // A subscriber on every replica (the crates.io client), recording each list it is shown.
    let mut watchers = Vec::new();
    for server in &servers {
        let mut client = convex::ConvexClient::new(&server.url).await.unwrap();
        let args = BTreeMap::from([("sessionId".to_owned(), convex::Value::from(session.as_str().unwrap()))]);
        let mut subscription = client.subscribe("chatMessages:listBySession", args).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let _client = client;
            let mut lengths = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while let Ok(Some(update)) = tokio::time::timeout_at(deadline, subscription.next()).await {
                let convex::FunctionResult::Value(convex::Value::Array(items)) = update else { panic!("{update:?}") };
                lengths.push(items.len());
                if items.len() == 90 {
                    break;
                }
            }
            lengths
        }));
    }

    // Three writers on each replica: 90 messages, and 30 events on one run, all at once.
    let mut writers = Vec::new();
    for (r, server) in servers.iter().enumerate() {
        for w in 0..3 {
            let (client, base) = (HttpClient::default(), server.url.clone());
            let (session, run) = (session.clone(), run.clone());
            writers.push(tokio::spawn(async move {
                for k in 0..10 {
                    let append = json!({"path": "chatMessages:append", "format": "json",
                        "args": {"sessionId": session, "role": "user", "content": format!("r{r} w{w} #{k}")}});
                    let response = client.post_json(&format!("{base}/api/mutation"), &append).await.unwrap();
                    assert_eq!(response.json().unwrap()["status"], "success");
                    if k % 3 == 0 {
                        let event = json!({"path": "events:append", "format": "json",
                            "args": {"runId": run, "type": "comment", "data": format!("r{r} w{w} #{k}")}});
                        let response = client.post_json(&format!("{base}/api/mutation"), &event).await.unwrap();
                        assert_eq!(response.json().unwrap()["status"], "success");
                    }
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (r, watcher) in watchers.into_iter().enumerate() {
        let lengths = watcher.await.unwrap();
        assert_eq!(lengths.last(), Some(&90), "replica {r}'s subscriber saw every message: {lengths:?}");
        assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "replica {r} never went back in time: {lengths:?}");
    }

    // Every replica reads the same 90 messages in the same order, and a gapless event sequence.
    let list = json!({"sessionId": session, "limit": 1000});
    let expected = ids(&servers[0].query("chatMessages:listBySession", list.clone()).await);
    assert_eq!(expected.len(), 90);
    for server in &servers[1..] {
        assert_eq!(ids(&server.query("chatMessages:listBySession", list.clone()).await), expected);
    }
    let events = servers[1].query("events:listByRun", json!({"runId": run, "limit": 1000})).await;
    let seqs: Vec<u64> = events.as_array().unwrap().iter().map(|e| e["seq"].as_f64().unwrap() as u64).collect();
    let appended = seqs.len();
    assert!(appended >= 36, "36 comments and the run's state changes: {seqs:?}");
    assert_eq!(seqs, (1..=appended as u64).collect::<Vec<_>>(), "gapless across replicas");
    for server in servers {
        server.stop().await;
    }
}

/// A query cached on one replica never hides a write acknowledged by another: right after each
/// append on A, B answers the same (cached) list with the new message in it.
#[tokio::test]
async fn a_cached_query_on_one_replica_shows_a_write_acknowledged_by_another() {
    let Some(url) = database() else { return };
    let dirs = [temp_dir(), temp_dir()];
    let servers = replicas(&url, &dirs).await;
    let session = servers[0].mutation("chatSessions:create", json!({"userId": "u", "title": "cached"})).await;
    let list = json!({"sessionId": session, "limit": 1000});
    for n in 1..=40 {
        // Asked twice, so B holds the result in its cache before the write.
        for _ in 0..2 {
            servers[1].query("chatMessages:listBySession", list.clone()).await;
        }
        servers[0]
            .mutation("chatMessages:append", json!({"sessionId": session, "role": "user", "content": format!("#{n}")}))
            .await;
        let seen = ids(&servers[1].query("chatMessages:listBySession", list.clone()).await);
        assert_eq!(seen.len(), n, "append {n}, acknowledged by A, is in B's answer");
    }
    let stats: Value =
        servers[1].client.get(&format!("{}/jangar/stats", servers[1].url)).await.unwrap().json().unwrap();
    assert!(stats["queryCacheHits"].as_u64().unwrap() >= 20, "B answered from its cache: {stats}");
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_replayed_mutation_is_applied_once_whichever_replica_it_reaches() {
    let Some(url) = database() else { return };
    let dirs = [temp_dir(), temp_dir()];
    let servers = replicas(&url, &dirs).await;
    let session = servers[0].mutation("chatSessions:create", json!({"userId": "u", "title": "replay"})).await;
    let mut results = Vec::new();
    // The same client session and request id, first on one replica, then (a reconnect) on the other.
    for server in &servers {
        let url = format!("{}/api/sync", server.url.replace("http://", "ws://"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let connect = json!({"type": "Connect", "sessionId": "0b0e0e2e-7d39-4a34-9f0c-1f1b8f1b2a01",
            "connectionCount": 0, "lastCloseReason": null, "clientTs": 0});
        let mutation = json!({"type": "Mutation", "requestId": 7, "udfPath": "chatMessages:append",
            "args": [{"sessionId": session, "role": "user", "content": "once"}]});
        for message in [connect, mutation] {
            socket.send(Message::Text(message.to_string().into())).await.unwrap();
        }
        let response = loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("socket closed") };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "MutationResponse" {
                break message;
            }
        };
        assert_eq!(response["success"], true, "{response}");
        results.push((response["result"].clone(), response["ts"].clone()));
    }
    assert_eq!(results[0], results[1], "the second replica answered the first one's outcome");
    let messages = servers[1].query("chatMessages:listBySession", json!({"sessionId": session})).await;
    assert_eq!(messages.as_array().unwrap().len(), 1, "applied once");
    for server in servers {
        server.stop().await;
    }
}

struct Replica {
    child: Child,
    url: String,
}

impl Replica {
    fn start(database: &str, data: &std::path::Path) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_jangar"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--rate-limit-per-second", "0", "--db", database])
            .arg("--data-dir")
            .arg(data)
            .env_remove("JANGAR_ADMIN_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = HttpClient::default();
        loop {
            if let Ok(response) = client.get(&format!("{}/ready", self.url)).await
                && response.status == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "replica {} never became ready", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mutation's string result (an id), or `None` if it was not acknowledged.
async fn mutate(client: &HttpClient, base: &str, path: &str, args: Value) -> Option<String> {
    let body = json!({"path": path, "args": args, "format": "json"});
    let response = client.post_json(&format!("{base}/api/mutation"), &body).await.ok()?;
    let body = response.json().ok()?;
    if body["status"] != "success" {
        return None;
    }
    body["value"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_acknowledged_write() {
    let Some(database) = database() else { return };
    let dirs = [temp_dir(), temp_dir(), temp_dir()];
    let mut replicas: Vec<Replica> = dirs.iter().map(|d| Replica::start(&database, d.path())).collect();
    for replica in &replicas {
        replica.ready().await;
    }
    let client = HttpClient::default();
    let session = mutate(&client, &replicas[0].url, "chatSessions:create", json!({"userId": "u", "title": "load"}))
        .await
        .expect("a session");

    // Writers on every replica until told to stop; each keeps the ids of its acknowledged writes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for w in 0..2 {
            let (base, session, stop) = (replica.url.clone(), session.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let client = HttpClient::default();
                let mut acknowledged = Vec::new();
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let args = json!({"sessionId": session, "role": "user", "content": format!("r{r} w{w} #{k}")});
                    if let Some(id) = mutate(&client, &base, "chatMessages:append", args).await {
                        acknowledged.push(id);
                    }
                    k += 1;
                    if k > 2_000 {
                        break;
                    }
                }
                (r, acknowledged)
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let killed = replicas.pop().unwrap();
    drop(killed); // SIGKILL, mid-write
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut acknowledged = BTreeSet::new();
    let mut after_kill = [0usize; 3];
    for writer in writers {
        let (r, ids) = writer.await.unwrap();
        after_kill[r] += ids.len();
        acknowledged.extend(ids);
    }
    assert!(after_kill[0] > 0 && after_kill[1] > 0, "the others kept serving: {after_kill:?}");
    let mut stored = BTreeSet::new();
    let mut cursor = Value::Null;
    loop {
        let args = json!({"sessionId": session, "paginationOpts": {"numItems": 1000, "cursor": cursor}});
        let body = json!({"path": "chatMessages:listBySession", "args": args, "format": "json"});
        let response = client.post_json(&format!("{}/api/query", replicas[1].url), &body).await.unwrap();
        let page = response.json().unwrap()["value"].clone();
        stored.extend(ids(&page["page"]));
        if page["isDone"] == true {
            break;
        }
        cursor = page["continueCursor"].clone();
    }
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    assert!(acknowledged.len() > 10, "the load was real: {} writes", acknowledged.len());
    eprintln!("{} acknowledged writes, {after_kill:?} per replica, none lost", acknowledged.len());
    // The kill left no half-written mutation: every index still matches its documents.
    Store::Postgres(database).assert_consistent();
}

#[tokio::test]
async fn a_replica_waits_for_its_database_and_says_it_is_not_ready_meanwhile() {
    if database().is_none() {
        return;
    }
    let server = TestPostgres::shared().expect("checked above");
    let name = format!("late_{}", std::process::id());
    let dir = temp_dir();
    let replica = Replica::start(&server.url_of(&name), dir.path());
    let client = HttpClient::default();
    let ready = format!("{}/ready", replica.url);
    // The database does not exist yet: the replica keeps trying, and answers 503 meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        if let Ok(response) = client.get(&ready).await {
            break response;
        }
        assert!(Instant::now() < deadline, "the replica never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting.status, 503);
    assert_eq!(waiting.json().unwrap()["code"], "NotReady");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(client.get(&ready).await.unwrap().status, 503, "still waiting, not crashed");
    server.create_database(&name);
    replica.ready().await;
    let created = mutate(&client, &replica.url, "chatSessions:create", json!({"userId": "u", "title": "t"})).await;
    assert!(created.is_some(), "it serves once the database is there");
    Store::Postgres(server.url_of(&name)).assert_consistent();
}

#[tokio::test]
async fn a_gap_in_the_commit_log_is_announced_as_touching_everything() {
    let Some(url) = database() else { return };
    // The PostgreSQL client blocks on a runtime of its own: off the test's runtime.
    std::thread::spawn(move || {
        use jangar_engine::storage::Storage;
        let storage =
            jangar_engine::storage::postgres::PostgresStorage::open(&url, &jangar_domain::schema::schema()).unwrap();
        let mut feed = storage.commit_feed(0).expect("a shared database has a commit feed");
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        let insert = "INSERT INTO jangar_commit_log (ts, prev_ts, writes) VALUES ($1, $2, $3)";
        let empty = jangar_engine::sets::WriteSet::default().encode();
        // 10 and 20 chain from the start; 40 says it follows 30, which this replica never saw
        // (purged before it read it); 50's write set is unreadable.
        for (ts, previous, writes) in
            [(10i64, 0i64, &empty[..]), (20, 10, &empty), (40, 30, &empty), (50, 40, &[7u8][..])]
        {
            client.execute(insert, &[&ts, &previous, &writes]).unwrap();
        }
        let commits = feed.next(Duration::from_millis(100)).unwrap();
        let seen: Vec<(u64, bool)> = commits.iter().map(|c| (c.ts, c.everything)).collect();
        assert_eq!(seen, [(10, false), (20, false), (40, true), (50, true)]);
        assert!(feed.next(Duration::from_millis(100)).unwrap().is_empty(), "nothing new");
    })
    .join()
    .unwrap();
}
