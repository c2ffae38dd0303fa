//! The `jangar` binary: `jangar serve`, `jangar run`, and the operator's commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jangar::remote::Remote;
use jangar::server::{Limits, ServerConfig, serve};
use jangar::snapshots::{self, LocalStore, Target};
use jangar_api::auth::keys::{self, AdminKeys};
use jangar_api::temporal::TemporalConfig;
use jangar_engine::knobs::{DEFAULT_BACKUP_EVERY, DEFAULT_BACKUP_KEEP};
use jangar_engine::snapshot::{ImportFormat, ImportMode};
use jangar_engine::storage::postgres::PostgresStorage;
use jangar_engine::storage::sqlite::backup::{self, BackupSchedule};
use jangar_engine::storage::sqlite::{Durability, SqliteStorage};

// glibc's malloc took about a third of the CPU of a cold list (most of it consolidating freed
// chunks after each response's buffers); mimalloc's per-thread free lists take a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "jangar", version, about = "A Convex-compatible backend for coding-agent control planes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The Temporal bridge: with `--temporal-url`, a submitted work order with a `workflowType`
/// starts its workflow exactly once, and its run follows the workflow to its end.
#[derive(clap::Args)]
struct TemporalArgs {
    /// Temporal's HTTP API (`http://127.0.0.1:7243`; `https://` for TLS). Without it, work
    /// orders start nothing.
    #[arg(long = "temporal-url", env = "JANGAR_TEMPORAL_URL")]
    url: Option<String>,
    #[arg(long = "temporal-namespace", env = "JANGAR_TEMPORAL_NAMESPACE", default_value = "default")]
    namespace: String,
    /// The task queue of work orders that name none (`taskQueue`).
    #[arg(long = "temporal-task-queue", env = "JANGAR_TEMPORAL_TASK_QUEUE", default_value = "jangar")]
    task_queue: String,
    /// An API key, sent as `Authorization: Bearer` (hosted Temporal).
    #[arg(long = "temporal-api-key", env = "JANGAR_TEMPORAL_API_KEY")]
    api_key: Option<String>,
    /// The longest a workflow may run (its `workflowExecutionTimeout`; `30m`, `2h`); none by default.
    #[arg(long = "temporal-execution-timeout", env = "JANGAR_TEMPORAL_EXECUTION_TIMEOUT", value_parser = parse_every)]
    execution_timeout: Option<Duration>,
    /// How long a canceled work order's workflow may go on (it is asked to cancel) before it is terminated.
    #[arg(long = "temporal-cancel-grace", env = "JANGAR_TEMPORAL_CANCEL_GRACE", default_value = "10m",
          value_parser = parse_every)]
    cancel_grace: Duration,
}

impl TemporalArgs {
    fn config(self) -> Option<TemporalConfig> {
        Some(TemporalConfig {
            url: self.url.filter(|u| !u.is_empty())?,
            namespace: self.namespace,
            task_queue: self.task_queue,
            api_key: self.api_key.filter(|k| !k.is_empty()),
            execution_timeout: self.execution_timeout,
            cancel_grace: self.cancel_grace,
        })
    }
}

// Parsed once at start-up: the size of `Serve` costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server: data in SQLite in the data directory, or in PostgreSQL with --db.
    Serve {
        /// Address to listen on: `127.0.0.1:3210`, `localhost:3210`, `:3210` or `3210` (loopback),
        /// `0.0.0.0:3210` (every interface; needs credentials).
        #[arg(long, env = "JANGAR_LISTEN", default_value = "127.0.0.1:3210", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Directory of the database, created on first start.
        #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data")]
        data_dir: PathBuf,
        /// `full` fsyncs every group commit (survives power loss); `normal` survives
        /// a crash of Jangar but may lose the last commits on power loss.
        #[arg(long, env = "JANGAR_DURABILITY", default_value = "full", value_parser = parse_durability)]
        durability: Durability,
        /// Query results kept for reuse until a write touches what they read; 0 turns the cache off.
        #[arg(long, env = "JANGAR_QUERY_CACHE_ENTRIES", default_value_t = jangar_engine::knobs::DEFAULT_QUERY_CACHE_ENTRIES)]
        query_cache_entries: usize,
        #[command(flatten)]
        limits: Limits,
        /// A browser origin allowed to call the API (repeat, or comma-separate in the variable).
        /// In open development mode every origin is allowed.
        #[arg(long = "cors-origin", env = "JANGAR_CORS_ORIGINS", value_delimiter = ',')]
        cors_origins: Vec<String>,
        /// The identity providers whose user tokens (JWTs) are accepted, in Convex's
        /// auth.config shape (default: `auth.json` in the data directory, if it exists).
        #[arg(long, env = "JANGAR_AUTH_CONFIG")]
        auth_config: Option<PathBuf>,
        /// Store everything in PostgreSQL at this URL (also DATABASE_URL), shared by any number of
        /// replicas, instead of in SQLite in the data directory.
        #[arg(long = "db", env = "POSTGRES_URL")]
        database_url: Option<String>,
        /// Also serve `GET /metrics` on this address, without credentials (on the API's port it
        /// needs an admin key).
        #[arg(long, env = "JANGAR_METRICS_LISTEN", value_parser = parse_listen)]
        metrics_listen: Option<SocketAddr>,
        /// `text` for people, `json` (one object a line) for log collectors.
        #[arg(long, env = "JANGAR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Write a backup of the database into this directory every --backup-every, keeping the
        /// newest --backup-keep (SQLite only; not with --db).
        #[arg(long, env = "JANGAR_BACKUP_DIR")]
        backup_dir: Option<PathBuf>,
        /// How often to back up: a number and a unit, `s`, `m`, `h` or `d` (`30m`, `1h`).
        #[arg(long, env = "JANGAR_BACKUP_EVERY", default_value = DEFAULT_BACKUP_EVERY, value_parser = parse_every)]
        backup_every: Duration,
        /// How many scheduled backups to keep; older ones are removed after each new one.
        #[arg(long, env = "JANGAR_BACKUP_KEEP", default_value_t = DEFAULT_BACKUP_KEEP,
              value_parser = clap::value_parser!(u32).range(1..))]
        backup_keep: u32,
        #[command(flatten)]
        temporal: TemporalArgs,
        /// The URL users reach this deployment at (behind a proxy, the proxy's): the issuer of
        /// the tokens of the users it signs in. Replicas must share it. Default: `http://` and
        /// the listening address.
        #[arg(long, env = "JANGAR_SITE_URL")]
        site_url: Option<String>,
        /// The RS256 key (PKCS#8 PEM) those tokens are signed with, as Convex Auth's
        /// JWT_PRIVATE_KEY; without it, one is made on first use and kept with the data.
        #[arg(long, env = "JWT_PRIVATE_KEY", hide_env_values = true)]
        jwt_private_key: Option<String>,
        /// How long the access tokens of those users last (`15s` at least); the client
        /// refreshes them ten seconds before they end.
        #[arg(long, env = "JANGAR_AUTH_TOKEN_LIFETIME", default_value = "1h", value_parser = parse_token_lifetime)]
        auth_token_lifetime: Duration,
    },
    /// Write a consistent copy of the SQLite database to a file, while a server uses it or not
    /// (writers do not wait for it). Admin keys and auth.json are not in it.
    Backup {
        /// The file to write (it must not exist yet).
        #[arg(long)]
        out: PathBuf,
        /// The data directory whose database to copy.
        #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data")]
        data_dir: PathBuf,
    },
    /// Put a backup in place as the database of a data directory (no server may be using it),
    /// after checking that it is a sound Jangar database. The directory's admin keys and
    /// auth.json stay as they are.
    Restore {
        /// The backup file (written by `jangar backup` or `serve --backup-dir`).
        file: PathBuf,
        /// The data directory to restore into (created if missing).
        #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data")]
        data_dir: PathBuf,
        /// Replace the database the directory already holds (what it holds is lost).
        #[arg(long)]
        force: bool,
    },
    /// The Temporal bridge of a running server (as `jangar run` reaches it).
    /// The users this deployment signs in itself (`auth:signIn`), on a running server.
    Users {
        #[command(subcommand)]
        action: UsersAction,
        /// The server (else CONVEX_URL, CONVEX_SELF_HOSTED_URL, http://127.0.0.1:3210).
        #[arg(long, global = true)]
        url: Option<String>,
        /// An admin key (else JANGAR_ADMIN_KEY or one of Convex's variables).
        #[arg(long, global = true)]
        admin_key: Option<String>,
    },
    Temporal {
        #[command(subcommand)]
        action: TemporalAction,
        /// The server (else CONVEX_URL, CONVEX_SELF_HOSTED_URL, http://127.0.0.1:3210).
        #[arg(long, global = true)]
        url: Option<String>,
        /// An admin key (else JANGAR_ADMIN_KEY or one of Convex's variables).
        #[arg(long, global = true)]
        admin_key: Option<String>,
    },
    /// Manage admin keys (stored as hashes in the data directory).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// The server's data directory.
        #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data", global = true)]
        data_dir: PathBuf,
    },
    /// Call a function on a running server and print its result as JSON
    /// (the server is CONVEX_URL, else CONVEX_SELF_HOSTED_URL, else http://127.0.0.1:3210;
    /// the admin key, if the server needs one, is JANGAR_ADMIN_KEY or one of Convex's variables).
    Run {
        /// Function path, such as `chatSessions:list`.
        path: String,
        /// Arguments as a JSON object.
        #[arg(default_value = "{}")]
        args: String,
        /// The server (else CONVEX_URL, CONVEX_SELF_HOSTED_URL, http://127.0.0.1:3210).
        #[arg(long)]
        url: Option<String>,
        /// An admin key (else JANGAR_ADMIN_KEY or one of Convex's variables).
        #[arg(long)]
        admin_key: Option<String>,
    },
    /// Check that every index holds exactly one entry per document of its table, under the
    /// document's key, and nothing else; prints the differences and exits 1 if there are any
    /// (2 if the check cannot run). Reads a data directory (a server may be using it), a
    /// PostgreSQL database (--db) or a running server (--url, with an admin key).
    Check {
        /// The data directory to check.
        #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data")]
        data_dir: PathBuf,
        /// Check this PostgreSQL database instead (also DATABASE_URL).
        #[arg(long = "db", env = "POSTGRES_URL")]
        database_url: Option<String>,
        /// Ask the server at this URL to check its database (this wins over --db) (the admin key is JANGAR_ADMIN_KEY
        /// or one of Convex's variables).
        #[arg(long)]
        url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot ZIP (Convex's export format) of a running server (--url), a stopped data
    /// directory, or a PostgreSQL database (--db).
    Export {
        /// The ZIP file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        from: SnapshotTarget,
    },
    /// Import a snapshot ZIP, or one table from .jsonl, .json or .csv, all or nothing, into a
    /// running server (--url), a stopped data directory, or a PostgreSQL database (--db).
    Import {
        /// The file to import.
        file: PathBuf,
        /// The table a .jsonl, .json or .csv file goes into.
        #[arg(long)]
        table: Option<String>,
        /// csv, jsonl, json or zip (default: from the file's extension).
        #[arg(long, value_parser = parse_import_format)]
        format: Option<ImportFormat>,
        /// Add to tables that already hold documents.
        #[arg(long, conflicts_with_all = ["replace", "replace_all"])]
        append: bool,
        /// Empty the tables imported into first.
        #[arg(long, conflicts_with = "replace_all")]
        replace: bool,
        /// Empty every table first, named in the file or not.
        #[arg(long)]
        replace_all: bool,
        #[command(flatten)]
        to: SnapshotTarget,
    },
    /// Write TypeScript bindings for the npm `convex` client (`api.d.ts`, `api.js`,
    /// `dataModel.d.ts`), as Convex's codegen writes them to `convex/_generated`.
    Codegen {
        /// Directory to write the files to (created if missing), such as `convex/_generated`.
        #[arg(long, required_unless_present = "catalogue")]
        out: Option<PathBuf>,
        /// Print the function catalogue as a Markdown table instead (the README's table).
        #[arg(long)]
        catalogue: bool,
    },
}

/// How `serve` writes its log lines (every other command writes text).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where `export` reads and `import` writes: a server, else PostgreSQL, else a data directory.
#[derive(clap::Args)]
struct SnapshotTarget {
    /// A running server (its admin key is JANGAR_ADMIN_KEY or one of Convex's variables).
    #[arg(long)]
    url: Option<String>,
    /// A PostgreSQL database (also DATABASE_URL).
    #[arg(long = "db", env = "POSTGRES_URL")]
    database_url: Option<String>,
    /// A data directory no server is using.
    #[arg(long, env = "JANGAR_DATA_DIR", default_value = "./jangar-data")]
    data_dir: PathBuf,
}

impl SnapshotTarget {
    fn target(self) -> Target {
        let database_url = self.database_url.or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()));
        match (self.url, database_url) {
            (Some(url), _) => Target::Server { url, admin_key: AdminKeys::from_environment().into_iter().next() },
            (None, Some(url)) => Target::Local(LocalStore::Postgres(url)),
            (None, None) => Target::Local(LocalStore::DataDir(self.data_dir)),
        }
    }
}

fn parse_import_format(text: &str) -> Result<ImportFormat, String> {
    ImportFormat::parse(text).ok_or_else(|| format!("{text:?} is not a format: use csv, jsonl, json or zip"))
}

#[derive(Subcommand)]
enum UsersAction {
    /// Every user, oldest first: id, email, when they signed up, whether they are disabled.
    List,
    /// Stop a user signing in, and end every session they have.
    Disable { email: String },
    /// Give a user a new password and end their sessions: one made and printed, or the line
    /// read from standard input with --password-stdin.
    ResetPassword {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TemporalAction {
    /// Requests to Temporal by state, and the ones that need a look: pending after failed
    /// attempts (with their last error) and refused ones.
    Status,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Print a new admin key; only its hash is stored.
    Generate,
    /// Stop accepting an admin key (a running server notices at once).
    Revoke {
        /// The whole key.
        key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => LogFormat::Text,
    };
    // Held to the end: dropping it writes out the lines still queued.
    let _flush_log_at_exit = init_logging(log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            listen,
            data_dir,
            durability,
            query_cache_entries,
            limits,
            cors_origins,
            auth_config,
            database_url,
            metrics_listen,
            log_format: _,
            backup_dir,
            backup_every,
            backup_keep,
            temporal,
            site_url,
            jwt_private_key,
            auth_token_lifetime,
        } => {
            let config = ServerConfig {
                listen,
                data_dir,
                durability,
                query_cache_entries,
                limits,
                admin_keys: AdminKeys::from_environment(),
                cors_origins,
                auth_config,
                database_url: database_url.or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty())),
                metrics_listen,
                function_log_wait: jangar_engine::knobs::FUNCTION_LOG_WAIT,
                backup: backup_dir.map(|dir| BackupSchedule { dir, every: backup_every, keep: backup_keep as usize }),
                temporal: temporal.config(),
                site_url,
                jwt_private_key,
                token_lifetime: auth_token_lifetime,
            };
            runtime.block_on(serve(config, shutdown_signal(), |_| {}))
        }
        Command::Run { path, args, url, admin_key } => runtime.block_on(run(&path, &args, url, admin_key)),
        Command::Users { action, url, admin_key } => {
            let remote = Remote::new(url, admin_key);
            let done = match action {
                UsersAction::List => runtime.block_on(jangar::users::list(&remote)),
                UsersAction::Disable { email } => runtime.block_on(jangar::users::disable(&remote, &email)),
                UsersAction::ResetPassword { email, password_stdin } => {
                    let password = password_stdin.then(read_password).transpose();
                    password
                        .and_then(|password| runtime.block_on(jangar::users::reset_password(&remote, &email, password)))
                }
            };
            done.map(|text| print_out(&text))
        }
        Command::Temporal { action: TemporalAction::Status, url, admin_key } => {
            runtime.block_on(run("_system/temporal/status", "{}", url, admin_key))
        }
        Command::Check { data_dir, database_url, url, json } => {
            let database_url = database_url.or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()));
            return match runtime.block_on(check(&data_dir, database_url, url)) {
                Ok(report) => print_report(&report, json),
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Backup { out, data_dir } => backup::backup(&data_dir, &out).map_err(|e| e.to_string()).map(|info| {
            let (bytes, took) = (info.bytes, info.took);
            print_out(&format!("Wrote {} ({bytes} bytes) in {took:.1?}.\n", info.path.display()));
        }),
        Command::Restore { file, data_dir, force } => {
            backup::restore(&file, &data_dir, force).map_err(|e| e.to_string()).map(|info| {
                let replaced = if info.replaced { ", replacing the database it held" } else { "" };
                print_out(&format!(
                    "Restored {} ({} bytes, last commit at {} ns) into {}{replaced}.\n",
                    file.display(),
                    info.bytes,
                    info.last_commit_ts,
                    data_dir.display()
                ));
            })
        }
        Command::Keys { action: KeysAction::Generate, data_dir } => {
            keys::generate(&data_dir).map(|key| print_out(&format!("{key}\n")))
        }
        Command::Keys { action: KeysAction::Revoke { key }, data_dir } => match keys::revoke(&data_dir, &key) {
            Ok(true) => Ok(()),
            Ok(false) => Err("no such admin key in this data directory".into()),
            Err(e) => Err(e),
        },
        Command::Export { out, from } => {
            runtime.block_on(snapshots::export(from.target(), &out)).map(|done| eprintln!("{done}"))
        }
        Command::Import { file, table, format, append, replace, replace_all, to } => {
            let mode = match (append, replace, replace_all) {
                (true, _, _) => ImportMode::Append,
                (_, true, _) => ImportMode::Replace,
                (_, _, true) => ImportMode::ReplaceAll,
                _ => ImportMode::RequireEmpty,
            };
            runtime.block_on(snapshots::import(to.target(), &file, table, format, mode)).map(|done| eprintln!("{done}"))
        }
        Command::Codegen { catalogue: true, .. } => {
            jangar::codegen::catalogue_markdown(&jangar_domain::registry(), &jangar_domain::schema::schema())
                .map(|table| print_out(&table))
        }
        Command::Codegen { out: Some(out), .. } => jangar::codegen::run(&out),
        Command::Codegen { out: None, .. } => Err("codegen needs --out DIR or --catalogue".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr, filtered by RUST_LOG (default `info`), written by a thread of their
/// own: a reader of stderr that stalls drops lines (past `LOG_BUFFERED_LINES`) instead of calls.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(jangar_engine::knobs::LOG_BUFFERED_LINES)
        .thread_name("jangar-log")
        .finish(std::io::stderr());
    let lines = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        // Colour codes only for a person at a terminal, not in a log file or a collector.
        LogFormat::Text => {
            lines.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).init()
        }
        // Each event's fields at the top level of its object, beside `timestamp`, `level` and `target`.
        LogFormat::Json => lines.json().flatten_event(true).init(),
    }
    flush_at_exit
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
}

/// The integrity report (as JSON) of a running server, a PostgreSQL database or a data directory.
async fn check(
    data_dir: &std::path::Path,
    database_url: Option<String>,
    url: Option<String>,
) -> Result<serde_json::Value, String> {
    let schema = jangar_domain::schema::schema();
    let report = match (url, database_url) {
        (Some(url), _) => return check_server(&url).await,
        (None, Some(database_url)) => {
            // The PostgreSQL client blocks on a runtime of its own: off this one's threads.
            tokio::task::spawn_blocking(move || PostgresStorage::check_database(&database_url, &schema))
                .await
                .map_err(|e| e.to_string())?
        }
        (None, None) => SqliteStorage::check_data_dir(data_dir, &schema),
    };
    report.map(|report| report.to_json()).map_err(|e| e.to_string())
}

async fn check_server(url: &str) -> Result<serde_json::Value, String> {
    Remote::new(Some(url.to_owned()), None).post("/jangar/check", String::new()).await
}

/// Prints an integrity report; exits 0 when it found nothing wrong, 1 otherwise.
fn print_report(report: &serde_json::Value, as_json: bool) -> ExitCode {
    use std::fmt::Write;
    let mut out = String::new();
    if as_json {
        out = serde_json::to_string_pretty(report).unwrap_or_default() + "\n";
    } else {
        let count = report["problemCount"].as_u64().unwrap_or(0);
        let summary = match count {
            0 => "no problems".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        };
        let _ = writeln!(
            out,
            "Checked {} tables, {} documents, {} indexes, {} index entries: {summary}.",
            report["tables"], report["documents"], report["indexes"], report["entries"],
        );
        let problems = report["problems"].as_array().map(Vec::as_slice).unwrap_or_default();
        for problem in problems {
            let text = |name: &str| problem[name].as_str().unwrap_or_default().to_owned();
            let _ = writeln!(out, "  {}: {} {} ({})", text("index"), text("kind"), text("id"), text("description"));
        }
        if count > problems.len() as u64 {
            let _ = writeln!(out, "  ... and {} more", count - problems.len() as u64);
        }
    }
    print_out(&out);
    if report["ok"].as_bool() == Some(true) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Writes to stdout; a reader that went away (`jangar check | head`) is not an error worth a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A line of standard input, without its line break.
fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn run(path: &str, args: &str, url: Option<String>, admin_key: Option<String>) -> Result<(), String> {
    let args: serde_json::Value = serde_json::from_str(args).map_err(|e| format!("arguments are not JSON: {e}"))?;
    let value = whole_numbers(Remote::new(url, admin_key).call(path, args).await?);
    print_out(&format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default()));
    Ok(())
}

/// Every number that is a whole number, as one (`3`, not `3.0`): the values are float64s, as in
/// JavaScript, and people read them as a JavaScript client would print them.
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Json::Number(n) => match n.as_f64() {
            // 2^53: above it, not every whole float64 is an integer a reader expects.
            Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Json::from(f as i64),
            _ => Json::Number(n),
        },
        Json::Array(items) => Json::Array(items.into_iter().map(whole_numbers).collect()),
        Json::Object(fields) => Json::Object(fields.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}

/// `--durability full|normal` (the engine knows nothing of command lines).
fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(format!("{other:?} is not a durability: use full or normal")),
    }
}

/// `--backup-every`: a whole number and a unit (`10s`, `30m`, `1h`, `1d`), at least a second.
fn parse_every(text: &str) -> Result<Duration, String> {
    let wrong = || format!("{text:?} is not an interval: use a number and s, m, h or d, such as 30m or 1h");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(wrong)?;
    let count: u64 = text[..split].parse().map_err(|_| wrong())?;
    let unit = match &text[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(wrong()),
    };
    match count.checked_mul(unit) {
        Some(0) => Err(format!("{text:?}: the interval must be at least 1s")),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Err(wrong()),
    }
}

fn parse_token_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = parse_every(text)?;
    let least = jangar_engine::knobs::MIN_ISSUED_TOKEN_LIFETIME;
    if lifetime < least {
        return Err(format!("{text:?}: a token must last at least {}s", least.as_secs()));
    }
    Ok(lifetime)
}

/// `--listen`: an address, or (on loopback) `localhost:PORT`, `:PORT` or a bare port.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let loopback = |port: &str| {
        port.parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| format!("{port:?} is not a port number"))
    };
    if let Some(port) = text.strip_prefix(':').or_else(|| text.strip_prefix("localhost:")) {
        return loopback(port);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return loopback(text);
    }
    text.parse().map_err(|_| format!("{text:?} is not an address: use 127.0.0.1:3210, localhost:3210, :3210 or 3210"))
}
