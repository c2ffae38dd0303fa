//! Backups of a SQLite data directory while a server writes it (on demand or on a schedule),
//! and restoring one.
//!
//! A backup is `VACUUM INTO` on a read-only connection of its own. In WAL mode that is one read
//! transaction: the copy is exactly one committed state, and the writer, in this process or
//! another, never waits for it (it only keeps the WAL from being restarted until the copy is
//! done). The copy is written as `<name>.partial`, fsynced, then renamed, so a crash mid-backup
//! leaves a `.partial` file and never a truncated file under a backup's name. A backup takes no
//! `jangar.lock`: it writes nothing in the data directory.
//!
//! The copy is the database alone. Admin keys (`admin-keys`) and `auth.json` are separate files
//! and not in it; the cursor secret is (a table), so cursors stay valid across a restore.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, InterruptHandle, OpenFlags};

use super::{Access, DATABASE_FILE, database_in, lock_data_dir, open_connection};
use crate::storage::{StorageError, Timestamp};

/// What one backup wrote.
#[derive(Clone, Debug)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

/// Writes a consistent copy of the database in `data_dir` to `out`, which must not exist yet.
/// Works the same whether a server is using the directory or not.
pub fn backup(data_dir: &Path, out: &Path) -> Result<BackupInfo, StorageError> {
    write_copy(&open_source(data_dir)?, out)
}

fn open_source(data_dir: &Path) -> Result<Connection, StorageError> {
    let path = database_in(data_dir)?;
    // Reading a WAL database needs its shared-memory file, which SQLite may have to create.
    open_connection(&path, Access::ReadOnly).map_err(|e| {
        StorageError::of_kind(
            e.kind(),
            format!("cannot read {}: {e} (reading needs write access to the directory)", path.display()),
        )
    })
}

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("cannot {doing} {}: {e}", path.display()))
}

fn write_copy(source: &Connection, out: &Path) -> Result<BackupInfo, StorageError> {
    let started = Instant::now();
    if out.exists() {
        return Err(StorageError::Other(format!("{} already exists; a backup never overwrites a file", out.display())));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let target =
        partial.to_str().ok_or_else(|| StorageError::Other(format!("{} is not a UTF-8 path", partial.display())))?;
    // VACUUM INTO fills an empty file and keeps its mode: the copy is its owner's alone, like
    // the database it copies.
    create_new_private(&partial).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => StorageError::Conflict(format!(
            "{} exists: another backup is writing it, or one was interrupted (then remove it)",
            partial.display()
        )),
        _ => io_error("create", &partial, e),
    })?;
    let written = source
        .execute("VACUUM INTO ?1", [target])
        .map_err(StorageError::from)
        .and_then(|_| File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| io_error("sync", &partial, e)))
        .and_then(|()| std::fs::rename(&partial, out).map_err(|e| io_error("rename", &partial, e)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    sync_dir(out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    let bytes = std::fs::metadata(out).map_err(|e| io_error("read", out, e))?.len();
    Ok(BackupInfo { path: out.to_path_buf(), bytes, took: started.elapsed() })
}

/// Creates `path`, which must not exist, readable by its owner only.
fn create_new_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Makes the renames and removals in `dir` survive a power loss.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    // On Unix a directory is fsynced like a file; elsewhere renames are durable without it.
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("sync", dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

/// What a restore put in place.
#[derive(Clone, Debug)]
pub struct RestoreInfo {
    pub bytes: u64,
    /// The restored database's last commit timestamp.
    pub last_commit_ts: Timestamp,
    /// Whether the directory held a database before (now gone).
    pub replaced: bool,
}

/// Puts the backup `file` in place as the database of `data_dir` (created if missing), after
/// checking that it is a sound Jangar database. Refuses while a server uses the directory, and
/// refuses a directory that already holds a database unless `replace`. The directory's admin
/// keys and `auth.json` are left as they are.
pub fn restore(file: &Path, data_dir: &Path, replace: bool) -> Result<RestoreInfo, StorageError> {
    let metadata = std::fs::metadata(file).map_err(|e| io_error("read", file, e))?;
    if !metadata.is_file() {
        return Err(StorageError::Other(format!("{} is not a file", file.display())));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io_error("create", data_dir, e))?;
    // Held to the end, so no server starts on the directory halfway through.
    let _lock = lock_data_dir(data_dir)?;
    let database = data_dir.join(DATABASE_FILE);
    let replaced = database.exists();
    if replaced && !replace {
        return Err(StorageError::Other(format!(
            "{} already holds a database ({DATABASE_FILE}); pass --force to replace it (what it holds is lost: \
             back it up first)",
            data_dir.display()
        )));
    }
    let incoming = data_dir.join(format!("{DATABASE_FILE}.restoring"));
    // Only an interrupted restore leaves it, and nothing else writes it while the lock is held.
    remove_if_present(&incoming)?;
    // What is checked is the copy, so a fault while copying cannot slip through.
    let checked = copy_private(file, &incoming).and_then(|()| verify(&incoming, file));
    let last_commit_ts = match checked {
        Ok(ts) => ts,
        Err(e) => {
            let _ = std::fs::remove_file(&incoming);
            return Err(e);
        }
    };
    // The old database's WAL must be gone before the new file takes its name: SQLite would
    // replay the old WAL's frames into the new database.
    for suffix in ["-wal", "-shm", "-journal"] {
        remove_if_present(&data_dir.join(format!("{DATABASE_FILE}{suffix}")))?;
    }
    sync_dir(data_dir)?;
    std::fs::rename(&incoming, &database).map_err(|e| io_error("rename", &incoming, e))?;
    sync_dir(data_dir)?;
    Ok(RestoreInfo { bytes: metadata.len(), last_commit_ts, replaced })
}

fn copy_private(from: &Path, to: &Path) -> Result<(), StorageError> {
    let mut source = File::open(from).map_err(|e| io_error("read", from, e))?;
    let mut copy = create_new_private(to).map_err(|e| io_error("create", to, e))?;
    std::io::copy(&mut source, &mut copy).map_err(|e| io_error("copy to", to, e))?;
    copy.sync_all().map_err(|e| io_error("sync", to, e))
}

/// Checks that `path` passes SQLite's integrity check and has Jangar's tables; returns its last
/// commit timestamp. Errors name `shown`, the file the operator gave.
fn verify(path: &Path, shown: &Path) -> Result<Timestamp, StorageError> {
    let not_jangar =
        |why: String| StorageError::Corrupt(format!("{} is not a Jangar database: {why}", shown.display()));
    // `immutable`: read the file as it is, creating no journal, WAL or shared memory beside it.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(file_uri(path)?, flags).map_err(|e| not_jangar(e.to_string()))?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| not_jangar(e.to_string()))?;
    if problems != ["ok"] {
        return Err(StorageError::Corrupt(format!(
            "{} fails SQLite's integrity check: {}",
            shown.display(),
            problems.join("; ")
        )));
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'
             AND name IN ('documents', 'index_entries', 'indexes', 'meta', 'secrets')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_jangar(e.to_string()))?;
    if tables != 5 {
        return Err(not_jangar("it lacks Jangar's tables".into()));
    }
    let ts: i64 = conn
        .query_row("SELECT value FROM meta WHERE name = 'last_commit_ts'", [], |r| r.get(0))
        .map_err(|e| not_jangar(format!("no last commit timestamp ({e})")))?;
    Ok(ts as Timestamp)
}

/// A `file:` URI naming `path`, with every byte that could read as URI syntax escaped.
fn file_uri(path: &Path) -> Result<String, StorageError> {
    let text = path.to_str().ok_or_else(|| StorageError::Other(format!("{} is not a UTF-8 path", path.display())))?;
    let mut uri = String::from("file:");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// `serve --backup-dir DIR --backup-every D --backup-keep N`.
#[derive(Clone, Debug)]
pub struct BackupSchedule {
    pub dir: PathBuf,
    pub every: Duration,
    /// Backups kept; older ones are removed after each successful backup. At least 1.
    pub keep: usize,
}

/// Counters of the scheduled backups, for operators and metrics (`GET /jangar/stats`).
#[derive(Debug, Default)]
pub struct BackupStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// When the last successful backup finished, in milliseconds since the Unix epoch; 0 before one.
    pub last_success_ms: AtomicU64,
    /// The last successful backup's size in bytes, and how long it took in milliseconds.
    pub last_bytes: AtomicU64,
    pub last_duration_ms: AtomicU64,
}

/// Writes a backup into the schedule's directory on its own thread every `every`, named
/// `jangar-<UTC time>.sqlite3`, and keeps the newest `keep`. Stops when dropped, interrupting a
/// backup in progress (its partial file is removed).
pub struct BackupScheduler {
    stats: Arc<BackupStats>,
    stop: Option<Sender<()>>,
    /// The connection copying right now, to interrupt at shutdown.
    running: Arc<Mutex<Option<InterruptHandle>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackupScheduler {
    pub fn start(data_dir: &Path, schedule: BackupSchedule) -> Result<BackupScheduler, StorageError> {
        std::fs::create_dir_all(&schedule.dir).map_err(|e| io_error("create", &schedule.dir, e))?;
        remove_partials(&schedule.dir);
        // From the newest backup there, so a server restarted often does not back up at each start
        // (and push the older backups out).
        let newest = backups_in(&schedule.dir).last().and_then(|path| std::fs::metadata(path).ok()?.modified().ok());
        let first_wait = newest
            .and_then(|time| time.checked_add(schedule.every))
            .and_then(|due| due.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        tracing::info!(
            dir = %schedule.dir.display(),
            every = ?schedule.every,
            keep = schedule.keep,
            first_in = ?first_wait,
            "scheduled backups"
        );
        let stats = Arc::new(BackupStats::default());
        let running = Arc::new(Mutex::new(None));
        let (stop, stopped) = std::sync::mpsc::channel();
        let job = Job { data_dir: data_dir.to_path_buf(), schedule, stats: stats.clone(), running: running.clone() };
        let thread = std::thread::Builder::new()
            .name("jangar-backup".into())
            .spawn(move || job.run(&stopped, first_wait))
            .map_err(|e| StorageError::Io(format!("cannot start the backup thread: {e}")))?;
        Ok(BackupScheduler { stats, stop: Some(stop), running, thread: Some(thread) })
    }

    pub fn stats(&self) -> Arc<BackupStats> {
        self.stats.clone()
    }
}

impl Drop for BackupScheduler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(copying) = self.running.lock().expect("backup handle lock").as_ref() {
            copying.interrupt();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Job {
    data_dir: PathBuf,
    schedule: BackupSchedule,
    stats: Arc<BackupStats>,
    running: Arc<Mutex<Option<InterruptHandle>>>,
}

fn stopping(stopped: &Receiver<()>) -> bool {
    !matches!(stopped.try_recv(), Err(TryRecvError::Empty))
}

impl Job {
    fn run(&self, stopped: &Receiver<()>, mut wait: Duration) {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
            self.back_up(stopped);
            // From the end of this one: backups slower than the interval do not run back to back.
            wait = self.schedule.every;
        }
    }

    fn back_up(&self, stopped: &Receiver<()>) {
        // One that died mid-copy (a crash, a kill) left its partial file behind.
        remove_partials(&self.schedule.dir);
        let out = self.schedule.dir.join(backup_name(SystemTime::now()));
        let source = match open_source(&self.data_dir) {
            Ok(source) => source,
            Err(e) => return self.failed(&out, &e),
        };
        *self.running.lock().expect("backup handle lock") = Some(source.get_interrupt_handle());
        // Shutdown may have begun before the handle was there to interrupt.
        let result = if stopping(stopped) { None } else { Some(write_copy(&source, &out)) };
        self.running.lock().expect("backup handle lock").take();
        match result {
            Some(Ok(info)) => {
                let took_ms = u64::try_from(info.took.as_millis()).unwrap_or(u64::MAX);
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                self.stats.last_success_ms.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
                self.stats.last_bytes.store(info.bytes, Ordering::Relaxed);
                self.stats.last_duration_ms.store(took_ms, Ordering::Relaxed);
                // Pruned first, so that a logged backup implies the older ones are gone.
                prune(&self.schedule.dir, self.schedule.keep);
                tracing::info!(path = %info.path.display(), bytes = info.bytes, took_ms, "backup written");
            }
            Some(Err(e)) if !stopping(stopped) => self.failed(&out, &e),
            _ => tracing::info!(path = %out.display(), "backup abandoned: the server is stopping"),
        }
    }

    fn failed(&self, out: &Path, e: &StorageError) {
        let failures = self.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(path = %out.display(), error = %e, failures, "backup failed; the earlier backups are kept");
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The scheduled backups in `dir`, oldest first (their names sort by time). Other files,
/// such as an operator's own copies, are not among them and never removed.
fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the backup directory");
            return Vec::new();
        }
    };
    let mut backups: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(is_backup_name))
        .collect();
    backups.sort();
    backups
}

/// Removes all but the newest `keep` scheduled backups in `dir`.
fn prune(dir: &Path, keep: usize) {
    let backups = backups_in(dir);
    for old in &backups[..backups.len().saturating_sub(keep)] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(path = %old.display(), "removed an old backup"),
            Err(e) => tracing::warn!(path = %old.display(), error = %e, "cannot remove an old backup"),
        }
    }
}

/// Removes what interrupted scheduled backups left in `dir`.
fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|entry| entry.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.strip_suffix(".partial").is_some_and(is_backup_name) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed an interrupted backup's partial file"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial backup"),
            }
        }
    }
}

const NAME_PREFIX: &str = "jangar-";
const NAME_SUFFIX: &str = ".sqlite3";
/// The shape of the UTC time in a backup's name (`0` is any digit): fixed width, so names sort by time.
const TIME_SHAPE: &str = "00000000T000000.000Z";

/// `jangar-20250102T030405.678Z.sqlite3` for 2025-01-02 03:04:05.678 UTC.
fn backup_name(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let of_day = seconds % 86_400;
    format!(
        "{NAME_PREFIX}{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z{NAME_SUFFIX}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

fn is_backup_name(name: &str) -> bool {
    let Some(time) = name.strip_prefix(NAME_PREFIX).and_then(|rest| rest.strip_suffix(NAME_SUFFIX)) else {
        return false;
    };
    time.len() == TIME_SHAPE.len()
        && time
            .bytes()
            .zip(TIME_SHAPE.bytes())
            .all(|(c, shape)| if shape == b'0' { c.is_ascii_digit() } else { c == shape })
}

/// The Gregorian (year, month, day) of a day counted from 1970-01-01. Counts from 0000-03-01
/// instead, in eras of 400 years (146,097 days, always the same): a year that starts in March
/// ends with its leap day, so the months' lengths repeat without exception.
fn civil_date(days_since_1970: u64) -> (u64, u64, u64) {
    // 0000-03-01 to 1970-01-01.
    let days = days_since_1970 + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    // Less the leap days before it in its era (one per 4 years, none per 100, one per 400).
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // March to July and August to December each run 31, 30, 31, 30, 31 days: 153 in five months.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    (era * 400 + year_of_era + u64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(10_956), (1999, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_723), (2024, 1, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(47_541), (2100, 3, 1));
    }

    #[test]
    fn backup_names_carry_the_utc_time_and_sort_by_it() {
        let time = UNIX_EPOCH + Duration::from_millis(1_735_787_045_678);
        let name = backup_name(time);
        assert_eq!(name, "jangar-20250102T030405.678Z.sqlite3");
        assert!(is_backup_name(&name));
        assert!(backup_name(time) < backup_name(time + Duration::from_millis(1)));
        for other in ["jangar-20250102T030405Z.sqlite3", "jangar-2025010xT030405.678Z.sqlite3", "mine.sqlite3"] {
            assert!(!is_backup_name(other), "{other}");
        }
        assert!(!is_backup_name(&format!("{name}.partial")));
    }

    #[test]
    fn pruning_keeps_the_newest_and_leaves_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for minute in 0..5 {
            std::fs::write(dir.path().join(backup_name(start + Duration::from_secs(60 * minute))), b"").unwrap();
        }
        std::fs::write(dir.path().join("jangar-before-upgrade.sqlite3"), b"").unwrap();
        let partial = format!("{}.partial", backup_name(start));
        std::fs::write(dir.path().join(&partial), b"").unwrap();
        prune(dir.path(), 2);
        remove_partials(dir.path());
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let newest = |minute: u64| backup_name(start + Duration::from_secs(60 * minute));
        assert_eq!(left, vec![newest(3), newest(4), "jangar-before-upgrade.sqlite3".to_owned()]);
    }

    #[test]
    fn file_uris_escape_what_sqlite_would_parse() {
        assert_eq!(file_uri(Path::new("/tmp/a b?c#d%e")).unwrap(), "file:/tmp/a%20b%3Fc%23d%25e?immutable=1");
    }
}
