//! Backups and restores as an operator runs them: `jangar backup` beside a running `jangar serve`,
//! `serve --backup-dir` on a schedule (and killed in the middle of one), `jangar restore`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jangar_api::client::HttpClient;
use serde_json::{Value, json};

fn jangar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jangar"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `jangar ARGS` to the end, off the async runtime's threads.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || jangar().args(&args).output().unwrap()).await.unwrap()
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    items.iter().map(|item| item.as_ref().to_string_lossy().into_owned()).collect()
}

async fn succeeds(arguments: Vec<String>) -> String {
    let output = run(arguments.clone()).await;
    assert!(output.status.success(), "jangar {arguments:?} failed: {}", text(&output));
    text(&output)
}

async fn fails(arguments: Vec<String>, saying: &str) {
    let output = run(arguments.clone()).await;
    assert!(!output.status.success(), "jangar {arguments:?} should fail: {}", text(&output));
    assert!(text(&output).contains(saying), "jangar {arguments:?} should say {saying:?}: {}", text(&output));
}

/// The integrity check of a data directory must find nothing wrong.
async fn check(data: &Path) {
    let report = succeeds(args(&[&"check", &"--data-dir", &data])).await;
    assert!(report.contains("no problems"), "{report}");
}

/// `jangar serve` on a free loopback port, in its own process, its log in a file; killed if dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
    client: HttpClient,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data: &Path, log: PathBuf, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Server {
        let port = free_port();
        let child = jangar()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .args(extra.iter().map(|item| item.as_ref()))
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server { child, url: format!("http://127.0.0.1:{port}"), log, client: HttpClient::default() };
        // The port listens before the storage is open: wait for the server to say it serves.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.log().contains("Jangar is serving") {
            assert!(server.child.try_wait().unwrap().is_none(), "the server exited: {}", server.log());
            assert!(Instant::now() < deadline, "the server did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Calls a function; its value, or the error body.
    async fn call(&self, route: &str, path: &str, args: Value) -> Result<Value, String> {
        let body = json!({"path": path, "args": args, "format": "json"}).to_string();
        let url = format!("{}{route}", self.url);
        let response =
            self.client.send(hyper::Method::POST, &url, &[("content-type", "application/json")], body).await?;
        let body = response.json()?;
        match body["status"].as_str() {
            Some("success") => Ok(body["value"].clone()),
            _ => Err(format!("{path}: HTTP {} {body}", response.status)),
        }
    }

    async fn mutation(&self, path: &str, args: Value) -> Value {
        self.call("/api/mutation", path, args).await.unwrap()
    }

    async fn query(&self, path: &str, args: Value) -> Value {
        self.call("/api/query", path, args).await.unwrap()
    }

    async fn stats(&self) -> Value {
        let url = format!("{}/jangar/stats", self.url);
        self.client.send(hyper::Method::GET, &url, &[], "").await.unwrap().json().unwrap()
    }

    /// SIGTERM, and the clean exit that follows.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "exit status {exit:?}: {}", self.log());
    }

    /// SIGKILL: nothing of the server runs after this.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Messages of about 900 kB each, so that copying the database takes a while.
async fn fill(server: &Server, megabytes: usize) {
    let session = server.mutation("chatSessions:create", json!({"userId": "filler", "title": "bulk"})).await;
    for n in 0..megabytes {
        let content = format!("{n:08}").repeat(112_500);
        server.mutation("chatMessages:append", json!({"sessionId": session, "role": "user", "content": content})).await;
    }
}

/// One acknowledged write: a session that writer `writer` created as its `seq`th.
#[derive(Clone, Debug)]
struct Write {
    writer: usize,
    seq: usize,
    id: String,
    sent: Instant,
    acked: Instant,
}

/// Writers creating sessions one after another, each as soon as its previous one is acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    writes: Arc<Mutex<Vec<Write>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..writers)
            .map(|writer| {
                let (stop, writes, client, url) =
                    (stop.clone(), writes.clone(), server.client.clone(), server.url.clone());
                tokio::spawn(async move {
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let args = json!({"userId": format!("writer-{writer}"), "title": format!("{seq}")});
                        let body = json!({"path": "chatSessions:create", "args": args, "format": "json"}).to_string();
                        let sent = Instant::now();
                        let headers = [("content-type", "application/json")];
                        let Ok(response) =
                            client.send(hyper::Method::POST, &format!("{url}/api/mutation"), &headers, body).await
                        else {
                            // The server is gone (killed on purpose): nothing more is acknowledged.
                            return;
                        };
                        let acked = Instant::now();
                        let body = response.json().unwrap();
                        assert_eq!(body["status"], "success", "{body}");
                        let id = body["value"].as_str().unwrap().to_owned();
                        writes.lock().unwrap().push(Write { writer, seq, id, sent, acked });
                        seq += 1;
                    }
                })
            })
            .collect();
        Load { stop, writes, tasks }
    }

    async fn finish(self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.writes.lock().unwrap().clone()
    }
}

/// Asserts that every write acknowledged before `before` is in the database `server` serves, and
/// that what is there of each writer's writes is a prefix of them (one committed state, not a
/// torn copy); returns how many of `writes` are there.
async fn assert_has_writes(server: &Server, writes: &[Write], before: Instant) -> usize {
    let mut present = 0;
    for writer in 0..=writes.iter().map(|w| w.writer).max().unwrap_or(0) {
        let mut missing_from = None;
        let mut own: Vec<&Write> = writes.iter().filter(|w| w.writer == writer).collect();
        own.sort_by_key(|w| w.seq);
        for write in own {
            let found = !server.query("chatSessions:get", json!({"sessionId": write.id})).await.is_null();
            assert!(
                found || write.acked >= before,
                "writer {writer}'s write {} was acknowledged before the backup began, and is missing",
                write.seq
            );
            match (found, missing_from) {
                (true, Some(gap)) => panic!("writer {writer}'s write {} is there, its write {gap} is not", write.seq),
                (true, None) => present += 1,
                (false, None) => missing_from = Some(write.seq),
                (false, Some(_)) => {}
            }
        }
    }
    present
}

/// How many `writes` there are, and their median, 99th percentile and largest latency.
fn latencies(writes: &[&Write]) -> String {
    let mut ms: Vec<f64> = writes.iter().map(|w| (w.acked - w.sent).as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    format!("{} writes, latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms.len(), at(0.5), at(0.99), at(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let dir = jangar_test_support::temp_dir();
    let data = dir.path().join("data");
    let server = Server::start(&data, dir.path().join("serve.log"), &[]);
    fill(&server, 48).await;
    let load = Load::start(&server, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = dir.path().join("under-load.sqlite3");
    let began = Instant::now();
    // Another process, beside the server that holds the directory's lock.
    let said = succeeds(args(&[&"backup", &"--data-dir", &data, &"--out", &out])).await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = load.finish().await;
    server.stop();

    let before: Vec<&Write> = writes.iter().filter(|w| w.acked < began).collect();
    let during: Vec<&Write> = writes.iter().filter(|w| w.sent < ended && w.acked > began).collect();
    assert!(
        before.len() > 20 && !during.is_empty(),
        "too little load: {} before, {} during",
        before.len(),
        during.len()
    );
    // The measurement (not asserted: it depends on the machine): writers wait on no lock of the
    // backup's, so what a backup costs them is the CPU and disk it shares with them.
    let slowest = during.iter().max_by_key(|w| w.acked - w.sent).unwrap();
    println!(
        "jangar backup {:.0} ms ({}): before it {}; overlapping it {} (the slowest sent {:.0} ms into it)",
        (ended - began).as_secs_f64() * 1000.0,
        said.trim(),
        latencies(&before),
        latencies(&during),
        slowest.sent.saturating_duration_since(began).as_secs_f64() * 1000.0,
    );

    let restored = dir.path().join("restored");
    succeeds(args(&[&"restore", &out, &"--data-dir", &restored])).await;
    check(&restored).await;
    let server = Server::start(&restored, dir.path().join("restored.log"), &[]);
    let present = assert_has_writes(&server, &writes, began).await;
    assert!(present >= before.len(), "{present} writes restored, {} acknowledged before the backup", before.len());
    server.stop();
}

/// The scheduled backups in `dir`: complete ones, and partial ones.
fn backups_in(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let is = |path: &PathBuf, suffix: &str| {
        let name = path.file_name().unwrap().to_str().unwrap();
        name.starts_with("jangar-") && name.ends_with(suffix)
    };
    let complete = names.iter().filter(|p| is(p, ".sqlite3")).cloned().collect();
    let partial = names.iter().filter(|p| is(p, ".sqlite3.partial")).cloned().collect();
    (complete, partial)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_and_each_restores() {
    let dir = jangar_test_support::temp_dir();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let schedule: &[&dyn AsRef<std::ffi::OsStr>] =
        &[&"--backup-dir", &backups, &"--backup-every", &"1s", &"--backup-keep", &"2"];
    let server = Server::start(&data, dir.path().join("serve.log"), schedule);
    let session = server.mutation("chatSessions:create", json!({"userId": "u", "title": "kept"})).await;
    wait_until("three backups are written", Duration::from_secs(60), || {
        server.log().matches("backup written").count() >= 3
    });
    let stats = server.stats().await["backups"].clone();
    assert!(stats["succeeded"].as_u64().unwrap() >= 3 && stats["failed"] == 0, "{stats}");
    assert!(stats["lastSuccessAtMs"].as_u64().unwrap() > 0 && stats["lastBytes"].as_u64().unwrap() > 0, "{stats}");
    let log = server.log();
    server.stop();
    assert!(log.contains("removed an old backup"), "{log}");

    let (complete, partial) = backups_in(&backups);
    assert_eq!(complete.len(), 2, "{complete:?}");
    assert!(partial.is_empty(), "a stopped server leaves no partial backup: {partial:?}");
    for (n, backup) in complete.iter().enumerate() {
        let restored = dir.path().join(format!("restored-{n}"));
        succeeds(args(&[&"restore", backup, &"--data-dir", &restored])).await;
        check(&restored).await;
        let server = Server::start(&restored, dir.path().join(format!("restored-{n}.log")), &[]);
        assert_eq!(server.query("chatSessions:get", json!({"sessionId": session})).await["title"], "kept");
        server.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_backup_leaves_the_previous_backup_and_the_data_intact() {
    let dir = jangar_test_support::temp_dir();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let schedule: &[&dyn AsRef<std::ffi::OsStr>] =
        &[&"--backup-dir", &backups, &"--backup-every", &"1s", &"--backup-keep", &"3"];
    let server = Server::start(&data, dir.path().join("serve.log"), schedule);
    // Large enough that a backup takes a while, so the kill lands inside one.
    fill(&server, 48).await;
    wait_until("a complete backup is written", Duration::from_secs(60), || !backups_in(&backups).0.is_empty());
    let load = Load::start(&server, 2);
    let (earlier, partial) = tokio::task::spawn_blocking({
        let backups = backups.clone();
        move || {
            // A backup begun after the load started (one may have been under way before it).
            let seen = backups_in(&backups).1;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (complete, partial) = backups_in(&backups);
                if let Some(new) = partial.into_iter().find(|p| !seen.contains(p)) {
                    return (complete, new);
                }
                assert!(Instant::now() < deadline, "no backup began");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .await
    .unwrap();
    server.kill();
    let killed = Instant::now();
    let writes = load.finish().await;
    assert!(partial.exists(), "the kill came after the backup had finished: {}", partial.display());
    assert!(!earlier.is_empty());

    // The data directory: sound, and every acknowledged write there (also in a backup of it, stopped).
    check(&data).await;
    let of_stopped = dir.path().join("of-stopped.sqlite3");
    succeeds(args(&[&"backup", &"--data-dir", &data, &"--out", &of_stopped])).await;
    // The backups complete before the kill: each restores, sound.
    for (n, backup) in earlier.iter().enumerate() {
        let restored = dir.path().join(format!("earlier-{n}"));
        succeeds(args(&[&"restore", backup, &"--data-dir", &restored])).await;
        check(&restored).await;
    }
    let server = Server::start(&data, dir.path().join("restarted.log"), schedule);
    // Every write whose acknowledgement arrived is there, not only those before some point.
    assert_eq!(assert_has_writes(&server, &writes, killed).await, writes.len());
    wait_until("the restarted server removes the partial file", Duration::from_secs(30), || !partial.exists());
    server.stop();
    let restored = dir.path().join("of-stopped");
    succeeds(args(&[&"restore", &of_stopped, &"--data-dir", &restored])).await;
    let server = Server::start(&restored, dir.path().join("of-stopped.log"), &[]);
    assert_eq!(assert_has_writes(&server, &writes, killed).await, writes.len());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_what_it_must_and_replaces_with_force() {
    let dir = jangar_test_support::temp_dir();
    let path = |name: &str| dir.path().join(name);
    let (original, target) = (path("original"), path("target"));
    let server = Server::start(&original, path("original.log"), &[]);
    let kept = server.mutation("chatSessions:create", json!({"userId": "u", "title": "in the backup"})).await;
    server.stop();
    let backup = path("backup.sqlite3");
    succeeds(args(&[&"backup", &"--data-dir", &original, &"--out", &backup])).await;
    fails(args(&[&"backup", &"--data-dir", &original, &"--out", &backup]), "already exists").await;
    fails(args(&[&"backup", &"--data-dir", &path("nothing"), &"--out", &path("x")]), "holds no Jangar database").await;

    // Not a database, and a database that is not Jangar's: refused, and nothing is left behind.
    std::fs::write(path("notes.txt"), "not a database at all, but long enough to look like one".repeat(100)).unwrap();
    fails(args(&[&"restore", &path("notes.txt"), &"--data-dir", &target]), "is not a Jangar database").await;
    let other = rusqlite::Connection::open(path("other.sqlite3")).unwrap();
    other.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    drop(other);
    fails(args(&[&"restore", &path("other.sqlite3"), &"--data-dir", &target]), "lacks Jangar's tables").await;
    fails(args(&[&"restore", &path("missing"), &"--data-dir", &target]), "cannot read").await;
    let left: Vec<_> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["jangar.lock"], "a refused restore leaves no database");

    succeeds(args(&[&"restore", &backup, &"--data-dir", &target])).await;
    let key = succeeds(args(&[&"keys", &"generate", &"--data-dir", &target])).await;
    let keys = std::fs::read_to_string(target.join("admin-keys")).unwrap();

    // The target moves on, and is killed: its WAL, holding that commit, stays beside it.
    let server = Server::start(&target, path("target.log"), &[]);
    let key = key.lines().find(|line| line.starts_with("jangar_admin_")).unwrap();
    let admin = format!("Convex {key}");
    let headers = [("content-type", "application/json"), ("authorization", admin.as_str())];
    let body = json!({"path": "chatSessions:create", "args": {"userId": "u", "title": "after"}, "format": "json"});
    let url = format!("{}/api/mutation", server.url);
    let created = server.client.send(hyper::Method::POST, &url, &headers, body.to_string()).await.unwrap();
    let after = created.json().unwrap()["value"].clone();
    assert!(after.is_string(), "{:?}", created.json());
    fails(args(&[&"restore", &backup, &"--data-dir", &target, &"--force"]), "another Jangar server is using").await;
    server.kill();
    assert!(target.join("jangar.sqlite3-wal").exists());

    fails(args(&[&"restore", &backup, &"--data-dir", &target]), "already holds a database").await;
    let said = succeeds(args(&[&"restore", &backup, &"--data-dir", &target, &"--force"])).await;
    assert!(said.contains("replacing the database it held"), "{said}");
    assert!(!target.join("jangar.sqlite3-wal").exists(), "the old database's WAL is gone");
    assert_eq!(std::fs::read_to_string(target.join("admin-keys")).unwrap(), keys, "the admin keys stay");
    check(&target).await;
    let server = Server::start(&target, path("restored.log"), &[]);
    let get = |id: &Value| {
        let body = json!({"path": "chatSessions:get", "args": {"sessionId": id}, "format": "json"}).to_string();
        let url = format!("{}/api/query", server.url);
        let client = server.client.clone();
        let admin = admin.clone();
        async move {
            let headers = [("content-type", "application/json"), ("authorization", admin.as_str())];
            client.send(hyper::Method::POST, &url, &headers, body).await.unwrap().json().unwrap()["value"].clone()
        }
    };
    assert_eq!(get(&kept).await["title"], "in the backup");
    assert!(get(&after).await.is_null(), "what the replaced database held is gone");
    server.stop();
}

#[tokio::test]
async fn backup_flags_are_checked_before_anything_starts() {
    let dir = jangar_test_support::temp_dir();
    let data = dir.path().join("data");
    let serve = |extra: &[&str]| {
        let mut arguments = args(&[&"serve", &"--listen", &format!("127.0.0.1:{}", free_port()), &"--data-dir", &data]);
        arguments.extend(extra.iter().map(|s| s.to_string()));
        arguments
    };
    fails(serve(&["--backup-dir", "b", "--db", "postgresql://127.0.0.1:1/none"]), "pg_dump").await;
    fails(serve(&["--backup-dir", "b", "--backup-every", "0s"]), "at least 1s").await;
    fails(serve(&["--backup-dir", "b", "--backup-every", "10"]), "is not an interval").await;
    fails(serve(&["--backup-dir", "b", "--backup-every", "1w"]), "is not an interval").await;
    fails(serve(&["--backup-dir", "b", "--backup-keep", "0"]), "--backup-keep").await;
    assert!(!data.exists(), "a refused start creates nothing");
}
