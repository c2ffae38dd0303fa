//! A PostgreSQL server for the tests, started from the machine's server
//! binaries (Debian's `postgresql` package) into a temporary directory on a
//! free loopback port: one per test binary, stopped when the tests end, with a
//! fresh database for each test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct TestPostgres {
    /// `postgresql://jangar@127.0.0.1:PORT`, without a database name.
    base_url: String,
    /// The shell that runs the server and stops it once this process is gone.
    _watcher: std::process::Child,
}

/// Where `initdb` and `postgres` are: on the PATH, or in Debian's versioned directory.
fn server_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let debian =
        std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().map(|entry| entry.path().join("bin"));
    on_path.chain(debian).find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A command run as the `postgres` user when the tests run as root (PostgreSQL refuses root).
fn command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

impl TestPostgres {
    /// The test binary's server, started on first use; `None` when the machine has no PostgreSQL server.
    pub fn shared() -> Option<&'static TestPostgres> {
        static SERVER: OnceLock<Option<TestPostgres>> = OnceLock::new();
        // Its client blocks on a runtime of its own: never on the test's runtime thread.
        SERVER.get_or_init(|| std::thread::spawn(TestPostgres::start).join().unwrap()).as_ref()
    }

    fn start() -> Option<TestPostgres> {
        let bin = server_binaries()?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("jangar-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            assert!(Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap().success());
        }
        let data = dir.join("data");
        let initdb = command(&bin, "initdb", as_postgres)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "jangar", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The server goes away with this test process: a shell watches it and stops the server.
        let postgres = format!(
            "{} -D {} -p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
            bin.join("postgres").display(),
            data.display(),
            dir.display()
        );
        let watch = format!(
            "{postgres} & server=$!; while [ -d /proc/{parent} ]; do sleep 0.5; done; \
             kill -INT $server; wait $server; rm -rf {dir}",
            parent = std::process::id(),
            dir = dir.display()
        );
        let mut shell = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &watch]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &watch]);
            c
        };
        let watcher = shell.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let base_url = format!("postgresql://jangar@127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match postgres::Client::connect(&format!("{base_url}/postgres"), postgres::NoTls) {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "PostgreSQL did not start: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Some(TestPostgres { base_url, _watcher: watcher })
    }

    /// The database of a test's data directory: made empty on first use, the same one after.
    pub fn database_for(&self, data_dir: &Path) -> String {
        let file = data_dir.join("postgres-url");
        if let Ok(url) = std::fs::read_to_string(&file) {
            return url;
        }
        let url = self.fresh_database();
        std::fs::write(&file, &url).unwrap();
        url
    }

    /// The URL a database of this name would have (it need not exist).
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url)
    }

    /// A new, empty database; returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        self.create_database(&format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// Creates the database `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let admin_url = format!("{}/postgres", self.base_url);
        let create = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
            admin.batch_execute(&create).unwrap();
        })
        .join()
        .unwrap();
        self.url_of(name)
    }
}

/// Whether this run's black-box tests use PostgreSQL (`JANGAR_TEST_BACKEND=postgres`).
pub fn selected() -> bool {
    std::env::var("JANGAR_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}
