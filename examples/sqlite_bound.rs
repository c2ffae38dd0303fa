//! The SQLite bound for the append benchmark: the rows a group of appends writes (each message
//! with its index entries, each session touched rewritten once with its entries moved), committed
//! in process through Jangar's own SQLite storage, `--group` appends per commit, WAL with
//! `synchronous=FULL` (Jangar's default durability). No function runs and nothing is read: what
//! is left is the storage's cost of the rows. Prints `inserts_per_sec=<appends per second>`.
//!
//! Usage: sqlite_bound --dir DIR [--group 32] [--seconds 5]

#[path = "common/append_rows.rs"]
mod append_rows;

use jangar_engine::storage::sqlite::{Durability, SqliteStorage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(append_rows::arg("--dir", "./sqlite-bound"));
    let group: usize = append_rows::arg("--group", "32").parse()?;
    let seconds: f64 = append_rows::arg("--seconds", "5").parse()?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let schema = jangar_domain::schema::schema();
    let storage = SqliteStorage::open(&dir, &schema, Durability::Full)?;
    append_rows::run(&storage, &schema, group, seconds)
}
