//! The raw SQLite bound for the append benchmark: in-process inserts into an
//! indexed table, `--group` rows per transaction, WAL with `synchronous=FULL`
//! (Jangar's default durability). Prints `inserts_per_sec=<float>`.
//!
//! Usage: sqlite_bound --dir DIR [--group 32] [--seconds 5]

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(arg("--dir", "./sqlite-bound"));
    let group: usize = arg("--group", "32").parse()?;
    let seconds: f64 = arg("--seconds", "5").parse()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bound.sqlite3");
    let _ = std::fs::remove_file(&path);
    let conn = Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, session TEXT NOT NULL, created REAL NOT NULL, body TEXT NOT NULL);
         CREATE INDEX messages_by_session ON messages (session, created);",
    )?;
    let body = r#"{"role":"user","content":"hello from the benchmark, a message of typical size"}"#;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut inserted = 0u64;
    while Instant::now() < deadline {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        {
            let mut insert =
                conn.prepare_cached("INSERT INTO messages (session, created, body) VALUES (?1, ?2, ?3)")?;
            for _ in 0..group {
                inserted += 1;
                insert.execute(params![format!("session-{}", inserted % 100), inserted as f64, body])?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("inserts_per_sec={:.1}", inserted as f64 / elapsed);
    println!("commits_per_sec={:.1}", inserted as f64 / group as f64 / elapsed);
    Ok(())
}
