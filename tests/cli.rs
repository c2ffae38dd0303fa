//! The `jangar` binary as a user runs it: `serve`, `run`, and SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn jangar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jangar"))
}

#[test]
fn serve_then_run_then_sigterm_exits_cleanly() {
    let dir = jangar_test_support::temp_dir();
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = jangar()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = |path: &str, args: &str| jangar().args(["run", path, args]).env("CONVEX_URL", &url).output().unwrap();
    let created = loop {
        let out = run("chatSessions:create", r#"{"userId":"cli","title":"from the CLI"}"#);
        if out.status.success() {
            break out;
        }
        assert!(Instant::now() < deadline, "server did not come up: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(data.join("jangar.sqlite3").exists(), "the data directory is created on first start");
    let id: String = serde_json::from_slice(&created.stdout).unwrap();
    let listed = run("chatSessions:list", r#"{"userId":"cli"}"#);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["_id"], id.as_str());
    assert_eq!(listed[0]["title"], "from the CLI");

    let failed = run("chatSessions:get", r#"{"sessionId":"nope"}"#);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("InvalidArgument"));

    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn every_command_has_help() {
    for args in [vec!["--help"], vec!["serve", "--help"], vec!["run", "--help"]] {
        let out = jangar().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn a_second_server_on_one_data_directory_refuses_to_start() {
    let dir = jangar_test_support::temp_dir();
    let data = dir.path().join("data");
    let port = free_port();
    let log = || std::fs::File::create(dir.path().join("log")).unwrap();
    let mut first = serve_at(&port.to_string(), &data, log(), &[]);
    wait_for_port(port, &mut first);
    let second = jangar()
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another Jangar server is using"), "{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("jangar.sqlite3")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the database is its owner's alone: {mode:o}");
    }
    // Killed, the first frees the directory (the OS drops its lock): a new server starts.
    first.kill().unwrap();
    first.wait().unwrap();
    let port = free_port();
    let mut third = serve_at(&port.to_string(), &data, log(), &[]);
    wait_for_port(port, &mut third);
    third.kill().unwrap();
    third.wait().unwrap();
}

/// A server on `listen` (in any of the forms `--listen` takes) whose log goes to `log`.
fn serve_at(listen: &str, data: &std::path::Path, log: std::fs::File, env: &[(&str, &str)]) -> std::process::Child {
    jangar()
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .envs(env.iter().copied())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait_for_port(port: u16, server: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn what_a_new_user_types_works() {
    let dir = jangar_test_support::temp_dir();
    // `--listen :PORT` and a bare port mean loopback; the log has no colour codes in a file.
    for form in [":{port}", "{port}", "localhost:{port}"] {
        let port = free_port();
        let data = dir.path().join(format!("data-{port}"));
        let log_path = dir.path().join(format!("log-{port}"));
        let mut server =
            serve_at(&form.replace("{port}", &port.to_string()), &data, std::fs::File::create(&log_path).unwrap(), &[]);
        wait_for_port(port, &mut server);
        // The port listens before the storage is open: wait for the server to say it serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            let log = std::fs::read_to_string(&log_path).unwrap();
            if log.contains("Jangar is serving") || Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(log.contains("Jangar is serving") && !log.contains('\u{1b}'), "{log}");
    }
    let refused = jangar().args(["serve", "--listen", "nowhere:port"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // `jangar run --url --admin-key`, whole numbers printed as such, and a clear word when nothing answers.
    let port = free_port();
    let data = dir.path().join("keyed");
    let mut server = serve_at(
        &port.to_string(),
        &data,
        std::fs::File::create(dir.path().join("keyed.log")).unwrap(),
        &[("JANGAR_ADMIN_KEY", "cli-key")],
    );
    wait_for_port(port, &mut server);
    let url = format!("http://127.0.0.1:{port}");
    let dashboard = jangar()
        .args(["run", "runs:getDashboard", "{}", "--url", &url, "--admin-key", "cli-key"])
        .env_remove("JANGAR_ADMIN_KEY")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&dashboard.stdout);
    assert!(dashboard.status.success(), "{out}{}", String::from_utf8_lossy(&dashboard.stderr));
    assert!(out.contains("\"queued\": 0") && !out.contains(".0"), "{out}");
    server.kill().unwrap();
    server.wait().unwrap();
    let nobody = jangar().args(["run", "chatSessions:list", r#"{"userId":"u"}"#, "--url", &url]).output().unwrap();
    assert!(!nobody.status.success());
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(stderr.contains(&format!("is `jangar serve` running at {url}?")), "{stderr}");
}
