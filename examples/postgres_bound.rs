//! The PostgreSQL bound for the append benchmark, the twin of `sqlite_bound`: the same rows of a
//! group of appends, committed through Jangar's own PostgreSQL storage (so the statements are
//! those of its group flush, with the commit lock, the commit log and the notification), `--group`
//! appends per commit, on a database at `--url` that should be empty (fsync and synchronous commit
//! as the server has them). No function runs and nothing is read. Prints
//! `inserts_per_sec=<appends per second>` and the statements and round trips per group.
//!
//! Usage: postgres_bound --url postgresql://... [--group 32] [--seconds 5]

#[path = "common/append_rows.rs"]
mod append_rows;

use jangar_engine::storage::postgres::PostgresStorage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = append_rows::arg("--url", "");
    if url.is_empty() {
        return Err("--url postgresql://... is required".into());
    }
    let group: usize = append_rows::arg("--group", "32").parse()?;
    let seconds: f64 = append_rows::arg("--seconds", "5").parse()?;
    let schema = jangar_domain::schema::schema();
    let storage = PostgresStorage::open(&url, &schema)?;
    append_rows::run(&storage, &schema, group, seconds)
}
