//! The engine's front door: queries on pooled snapshots, mutations through a
//! single committer thread that group-commits.
//!
//! The committer takes every mutation waiting in its queue, runs each on one
//! write buffer over one storage batch (a failing mutation's writes are undone
//! alone) and commits the batch once with the group's net writes: many
//! mutations, one flush, one fsync. Mutations run one after another, so they
//! are serializable without conflict checks; each gets its own commit
//! timestamp, unique and increasing.

use crate::knobs::{
    DOCUMENT_CACHE_BYTES, GROUP_SIZE_BUCKETS, LATENCY_BUCKETS, MAX_GROUP, MAX_QUEUED_MUTATIONS, MAX_READERS,
    OUTCOME_WINDOW_NS, PURGE_INTERVAL_NS,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{broadcast, oneshot};

use super::cache::{CachedResult, QueryCache};
use super::document_cache::DocumentCache;
use super::error::EngineError;
use super::history::{AsOf, CommitHistory};
use super::schema::Schema;
use super::sets::{Commit, ReadSet, WriteSet};
use super::storage::{Batch, Snapshot, Storage, StorageError, Timestamp};
use super::transaction::Transaction;
use super::write_buffer::WriteBuffer;

/// Timestamps step by at least this much, so `_creationTime` (float ms) stays distinct.
const MIN_TS_STEP: Timestamp = 1_000;

/// The outcome of a query: its value, what it read and at which snapshot.
#[derive(Debug)]
pub struct QueryOutcome<T> {
    pub value: T,
    pub reads: ReadSet,
    pub ts: Timestamp,
}

/// A committed mutation's value and commit timestamp.
#[derive(Debug)]
pub struct MutationOutcome<T> {
    pub value: T,
    pub ts: Timestamp,
}

/// What the committer and the commit feed did, for `/jangar/stats` and `/metrics`.
#[derive(Debug)]
pub struct CommitStats {
    pub groups: AtomicU64,
    pub mutations: AtomicU64,
    /// Group commits whose storage transaction failed, failing every mutation in them.
    pub failed_groups: AtomicU64,
    /// Mutations per durable group commit.
    pub group_sizes: Histogram,
    /// Seconds from the start of a group (its batch opened, on PostgreSQL after the commit lock) to
    /// its durable COMMIT, running its mutations included: what a mutation waits once it is taken.
    pub group_seconds: Histogram,
    /// Seconds of a group's storage COMMIT alone: writing it durably, the fsync included.
    pub commit_seconds: Histogram,
    /// Seconds from a commit's timestamp (the committing replica's clock) to this process taking it
    /// in from the commit feed; only a database shared through a feed (PostgreSQL) has any.
    pub feed_lag_seconds: Histogram,
    /// Storage statements of the durable groups, reads included.
    pub statements: AtomicU64,
    /// Round trips to the database server of the durable groups (none in process).
    pub round_trips: AtomicU64,
    /// Mutations' point reads answered by the committer's document cache, and not.
    pub document_cache_hits: AtomicU64,
    pub document_cache_misses: AtomicU64,
    /// The last groups' `group_seconds`, for quantiles (a histogram's buckets only bound them).
    pub recent_group_seconds: RecentSamples,
}

/// The last `RECENT_SAMPLES` observations, for their quantiles.
#[derive(Debug, Default)]
pub struct RecentSamples(std::sync::Mutex<std::collections::VecDeque<f64>>);

const RECENT_SAMPLES: usize = 1_024;

impl RecentSamples {
    pub fn observe(&self, value: f64) {
        let mut samples = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == RECENT_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(value);
    }

    /// The `q` quantiles (each in 0..=1, nearest rank) of the samples kept, and how many there are.
    pub fn quantiles(&self, qs: &[f64]) -> (Vec<f64>, usize) {
        let mut sorted: Vec<f64> =
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        let values = if sorted.is_empty() { vec![0.0; qs.len()] } else { qs.iter().map(|q| at(*q)).collect() };
        (values, sorted.len())
    }
}

impl Default for CommitStats {
    fn default() -> CommitStats {
        CommitStats {
            groups: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
            failed_groups: AtomicU64::new(0),
            group_sizes: Histogram::new(GROUP_SIZE_BUCKETS),
            group_seconds: Histogram::new(LATENCY_BUCKETS),
            commit_seconds: Histogram::new(LATENCY_BUCKETS),
            feed_lag_seconds: Histogram::new(LATENCY_BUCKETS),
            statements: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            recent_group_seconds: RecentSamples::default(),
            document_cache_hits: AtomicU64::new(0),
            document_cache_misses: AtomicU64::new(0),
        }
    }
}

trait Job: Send {
    /// Runs the mutation; returns false when it failed and must be rolled back.
    fn run(&mut self, tx: &mut Transaction<'_>) -> bool;
    /// Answers the caller once the batch is durable (or failed to commit).
    fn finish(self: Box<Self>, commit: Result<Timestamp, StorageError>);
}

struct MutationJob<F, T, E> {
    body: Option<F>,
    result: Option<Result<T, E>>,
    ts: Timestamp,
    reply: oneshot::Sender<Result<MutationOutcome<T>, E>>,
}

impl<F, T, E> Job for MutationJob<F, T, E>
where
    F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<EngineError> + Send,
{
    fn run(&mut self, tx: &mut Transaction<'_>) -> bool {
        let body = self.body.take().expect("a job runs once");
        self.ts = tx.ts();
        let result = body(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<Timestamp, StorageError>) {
        let outcome = match (self.result, commit) {
            (Some(Ok(value)), Ok(_)) => Ok(MutationOutcome { value, ts: self.ts }),
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(E::from(EngineError::Storage(e))),
            (None, Ok(_)) => Err(E::from(EngineError::Storage(StorageError::Other("mutation did not run".into())))),
        };
        // The caller may have gone away; the commit stands regardless.
        let _ = self.reply.send(outcome);
    }
}

pub struct Database {
    schema: Arc<Schema>,
    /// Bounds concurrent snapshots, so readers (and their connections) stay few and warm.
    readers: Arc<tokio::sync::Semaphore>,
    storage: Arc<dyn Storage>,
    /// Bounded, so a burst of writers waits for the committer instead of piling up in memory.
    jobs: tokio::sync::mpsc::Sender<Box<dyn Job>>,
    commits: broadcast::Sender<Arc<Commit>>,
    stats: Arc<CommitStats>,
    cache: Arc<QueryCache>,
    history: Arc<CommitHistory>,
    /// Commits reach this process through the storage's commit feed (a shared database).
    follows_feed: bool,
    /// Tells the commit feed's thread (if any) to stop.
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// Announces the commits of a shared database, every replica's, in timestamp order.
struct Follower {
    feed: Box<dyn super::storage::CommitFeed>,
    cache: Arc<QueryCache>,
    history: Arc<CommitHistory>,
    commits: broadcast::Sender<Arc<Commit>>,
    stats: Arc<CommitStats>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Follower {
    fn run(mut self) {
        let mut failing = false;
        while !self.stopped.load(Ordering::Relaxed) {
            match self.feed.next(std::time::Duration::from_millis(500)) {
                Ok(commits) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("following the database's commits again");
                    }
                    for commit in commits {
                        let lag_ns = now_ns().saturating_sub(commit.ts);
                        self.stats.feed_lag_seconds.observe(lag_ns as f64 / 1e9);
                        let commit = Arc::new(commit);
                        self.cache.apply(&commit);
                        self.history.record(&commit);
                        let _ = self.commits.send(commit);
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(error = %e, "cannot follow the database's commits; retrying");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }
}

/// Joins the committer thread once every `Database` handle is gone.
pub struct CommitterHandle(JoinHandle<()>);

impl CommitterHandle {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Database {
    /// Starts the committer; the query cache holds at most `cache_entries` results (0 turns it off).
    pub fn start(
        schema: Arc<Schema>,
        storage: Arc<dyn Storage>,
        cache_entries: usize,
    ) -> Result<(Arc<Database>, CommitterHandle), StorageError> {
        let (jobs, queue) = tokio::sync::mpsc::channel::<Box<dyn Job>>(MAX_QUEUED_MUTATIONS);
        let (commits, _) = broadcast::channel(4096);
        let stats = Arc::new(CommitStats::default());
        let last_ts = storage.snapshot()?.ts();
        let cache = Arc::new(QueryCache::new(cache_entries));
        let history = Arc::new(CommitHistory::new(last_ts));
        // A shared database announces every replica's commits through its feed; otherwise the committer does.
        let feed = storage.commit_feed(last_ts);
        let following = feed.is_some();
        let committer = Committer {
            cache: cache.clone(),
            documents: DocumentCache::new(DOCUMENT_CACHE_BYTES),
            schema: schema.clone(),
            storage: storage.clone(),
            commits: (!following).then(|| (commits.clone(), history.clone())),
            stats: stats.clone(),
            last_ts,
            last_creation_time: 0.0,
            next_purge: 0,
        };
        let thread = std::thread::Builder::new()
            .name("jangar-committer".into())
            .spawn(move || committer.run(queue))
            .map_err(|e| StorageError::Io(format!("cannot start the committer: {e}")))?;
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(feed) = feed {
            let follower = Follower {
                feed,
                cache: cache.clone(),
                history: history.clone(),
                commits: commits.clone(),
                stats: stats.clone(),
                stopped: stopped.clone(),
            };
            std::thread::Builder::new()
                .name("jangar-commit-feed".into())
                .spawn(move || follower.run())
                .map_err(|e| StorageError::Io(format!("cannot start the commit feed: {e}")))?;
        }
        let readers = Arc::new(tokio::sync::Semaphore::new(MAX_READERS));
        let database = Database {
            schema,
            readers,
            storage,
            jobs,
            commits,
            stats,
            cache,
            history,
            follows_feed: following,
            stopped,
        };
        Ok((Arc::new(database), CommitterHandle(thread)))
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Query results shared by all callers, kept valid by every commit.
    pub fn cache(&self) -> &QueryCache {
        &self.cache
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Whether other processes' commits reach this one through the storage's commit feed.
    pub fn follows_commit_feed(&self) -> bool {
        self.follows_feed
    }

    /// Snapshot readers running now, and how many may run at once (each holds a storage connection).
    pub fn readers_in_use(&self) -> (usize, usize) {
        (MAX_READERS - self.readers.available_permits(), MAX_READERS)
    }

    /// The bytes the database takes where it is stored, if the storage can tell.
    pub async fn storage_bytes(self: &Arc<Self>) -> Result<Option<u64>, StorageError> {
        self.on_reader("measuring the database", |db| db.storage.size_bytes()).await
    }

    /// Every commit from now on, in order.
    pub fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.commits.subscribe()
    }

    /// Runs a read-only function on one snapshot of the latest committed state.
    pub async fn query<T, E, F>(self: &Arc<Self>, body: F) -> Result<QueryOutcome<T>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
    {
        // The permit moves into the blocking task: a caller that goes away must not free it early.
        let permit = self.readers.clone().acquire_owned().await.map_err(|_| E::from(stopped()))?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            db.query_blocking(body)
        })
        .await
        .unwrap_or_else(|e| {
            Err(E::from(EngineError::Storage(StorageError::Unavailable(format!("query task failed: {e}")))))
        })
    }

    /// The blocking form of `query`, for callers already off the async runtime.
    pub fn query_blocking<T, E, F>(&self, body: F) -> Result<QueryOutcome<T>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E>,
        E: From<EngineError>,
    {
        let mut snapshot = self.storage.snapshot().map_err(|e| E::from(e.into()))?;
        let mut tx = Transaction::read_only(&self.schema, &mut *snapshot);
        let value = body(&mut tx)?;
        let ts = tx.ts();
        let (reads, _, _) = tx.into_sets();
        Ok(QueryOutcome { value, reads, ts })
    }

    /// Runs a read-only function as of `at`, a recent commit timestamp: on the latest snapshot,
    /// answering only if no commit since `at` wrote anything it read (so the result is the one at
    /// `at`); otherwise says why not.
    pub async fn query_as_of<T, E, F>(self: &Arc<Self>, at: Timestamp, body: F) -> Result<Result<T, AsOf>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
    {
        let outcome = self.query(body).await?;
        // The snapshot may show a commit a moment before it is announced: wait for it, briefly.
        for _ in 0..200 {
            match self.history.as_of(at, outcome.ts, &outcome.reads) {
                AsOf::Same => return Ok(Ok(outcome.value)),
                AsOf::NotYetKnown => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                other => return Ok(Err(other)),
            }
        }
        Ok(Err(AsOf::NotYetKnown))
    }

    /// Several read-only functions on the same snapshot.
    pub async fn query_many<T, F>(self: &Arc<Self>, bodies: Vec<F>) -> Result<(Vec<T>, Timestamp), EngineError>
    where
        F: FnOnce(&mut Transaction<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.readers.clone().acquire_owned().await.map_err(|_| stopped())?;
        let db = self.clone();
        let run = move || -> Result<(Vec<T>, Timestamp), EngineError> {
            let _permit = permit;
            let mut snapshot = db.storage.snapshot()?;
            let ts = snapshot.ts();
            let results =
                bodies.into_iter().map(|body| body(&mut Transaction::read_only(&db.schema, &mut *snapshot))).collect();
            Ok((results, ts))
        };
        tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Err(EngineError::Storage(StorageError::Unavailable(format!("query task failed: {e}")))))
    }

    /// Opens a snapshot and keeps it open until the handle is dropped, so that
    /// work decided later (after looking at commits up to its timestamp) still
    /// reads exactly this state.
    pub async fn hold_snapshot(self: &Arc<Self>) -> Result<HeldSnapshot, EngineError> {
        let permit = self.readers.clone().acquire_owned().await.map_err(|_| stopped())?;
        let (jobs, queue) = mpsc::channel::<SnapshotJob>();
        let (opened, ts) = oneshot::channel();
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut snapshot = match db.storage.snapshot() {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    let _ = opened.send(Err(EngineError::Storage(e)));
                    return;
                }
            };
            let _ = opened.send(Ok(snapshot.ts()));
            while let Ok(job) = queue.recv() {
                job(&db.schema, &mut *snapshot);
            }
        });
        let ts = ts.await.map_err(|_| stopped())??;
        Ok(HeldSnapshot { ts, jobs })
    }

    /// The timestamp of the latest commit (blocking: off the async runtime, use `current_ts`).
    pub(crate) fn latest_ts(&self) -> Result<Timestamp, StorageError> {
        self.storage.latest_ts()
    }

    /// The cached result for `key` if it is the answer now. On a database other processes write
    /// too, that takes reading the database's last commit (one round trip on PostgreSQL, only
    /// when the key is cached): a commit acknowledged elsewhere must not be hidden.
    pub async fn cached(self: &Arc<Self>, key: &str) -> Result<Option<Arc<CachedResult>>, StorageError> {
        if !self.follows_feed || !self.cache.contains(key) {
            return Ok(self.cache.get(key, None));
        }
        let latest = self.current_ts().await?;
        Ok(self.cache.get(key, Some(latest)))
    }

    /// The timestamp of the latest commit, read off the async runtime.
    pub async fn current_ts(self: &Arc<Self>) -> Result<Timestamp, StorageError> {
        self.on_reader("reading the latest timestamp", |db| db.latest_ts()).await
    }

    /// Checks every index against its table's documents, on one snapshot.
    pub async fn check_integrity(self: &Arc<Self>) -> Result<super::integrity::Report, StorageError> {
        self.read_snapshot("the integrity check", super::integrity::check).await
    }

    /// Runs `read` on a blocking thread holding one of the reader slots, so storage reads
    /// neither block the async runtime nor exceed the readers' connections.
    async fn on_reader<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        read: impl FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Unavailable("the database has stopped".into()))?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read(&db)
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("{what} failed: {e}")))?
    }

    /// Runs a mutation in the next group commit and answers once it is durable.
    pub async fn mutate<T, E, F>(&self, body: F) -> Result<MutationOutcome<T>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
    {
        self.enqueue(body).await?.outcome().await
    }

    /// Runs a bulk mutation (an import): atomic like any other, but without the per-function
    /// limits on reads and writes, since splitting it would make it partial.
    pub async fn mutate_bulk<T, E, F>(&self, body: F) -> Result<MutationOutcome<T>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
    {
        self.mutate(move |tx: &mut Transaction<'_>| {
            tx.bulk = true;
            body(tx)
        })
        .await
    }

    /// Runs `read` on one snapshot of the whole database, on a reader slot (an export, a check).
    pub async fn read_snapshot<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        read: impl FnOnce(&Schema, &mut dyn Snapshot) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.on_reader(what, |db| read(&db.schema, &mut *db.storage.snapshot()?)).await
    }

    /// Queues a mutation for the committer (waiting only for room in its queue) and returns its
    /// answer to come. Mutations run in the order they are queued, so a caller that queues
    /// several before awaiting any pipelines them: one caller's mutations share group commits.
    pub async fn enqueue<T, E, F>(&self, body: F) -> Result<PendingMutation<T, E>, E>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<EngineError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = MutationJob { body: Some(body), result: None, ts: 0, reply };
        self.jobs.send(Box::new(job)).await.map_err(|_| E::from(stopped()))?;
        Ok(PendingMutation(answer))
    }
}

/// A queued mutation's answer: its outcome once its group commit is durable.
pub struct PendingMutation<T, E>(oneshot::Receiver<Result<MutationOutcome<T>, E>>);

impl<T, E: From<EngineError>> PendingMutation<T, E> {
    pub async fn outcome(self) -> Result<MutationOutcome<T>, E> {
        self.0.await.unwrap_or_else(|_| Err(E::from(stopped())))
    }
}

fn stopped() -> EngineError {
    EngineError::Storage(StorageError::Unavailable("the database has stopped".into()))
}

type SnapshotJob = Box<dyn FnOnce(&Schema, &mut dyn Snapshot) + Send>;

/// A snapshot held open on a reader thread; see [`Database::hold_snapshot`].
pub struct HeldSnapshot {
    pub ts: Timestamp,
    jobs: mpsc::Sender<SnapshotJob>,
}

impl HeldSnapshot {
    /// Runs read-only functions on the held snapshot, each in its own transaction.
    pub async fn run<T, F>(&self, bodies: Vec<F>) -> Result<Vec<QueryOutcome<T>>, EngineError>
    where
        F: FnOnce(&mut Transaction<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: SnapshotJob = Box::new(move |schema, snapshot| {
            let outcomes = bodies
                .into_iter()
                .map(|body| {
                    let mut tx = Transaction::read_only(schema, &mut *snapshot);
                    let value = body(&mut tx);
                    let ts = tx.ts();
                    let (reads, _, _) = tx.into_sets();
                    QueryOutcome { value, reads, ts }
                })
                .collect();
            let _ = reply.send(outcomes);
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

struct Committer {
    cache: Arc<QueryCache>,
    /// The documents mutations read, exact at the last commit (this process's or caught up).
    documents: DocumentCache,
    schema: Arc<Schema>,
    storage: Arc<dyn Storage>,
    /// Where the committer announces (and records) its commits; `None` when a commit feed does.
    commits: Option<(broadcast::Sender<Arc<Commit>>, Arc<CommitHistory>)>,
    stats: Arc<CommitStats>,
    last_ts: Timestamp,
    last_creation_time: f64,
    next_purge: Timestamp,
}

fn now_ns() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as Timestamp).unwrap_or(0)
}

impl Committer {
    fn run(mut self, mut queue: tokio::sync::mpsc::Receiver<Box<dyn Job>>) {
        // Ends when every sender is gone, after the queue is drained.
        while let Some(first) = queue.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit_group(group, &mut queue);
        }
    }

    /// Runs a group in one storage batch. Readers see a group whole or not at
    /// all, so it is announced as one commit: the group's last timestamp and
    /// the union of its mutations' write sets.
    fn commit_group(&mut self, mut group: Vec<Box<dyn Job>>, queue: &mut tokio::sync::mpsc::Receiver<Box<dyn Job>>) {
        // From when the batch holds the commit lock: waiting for other replicas is not holding it.
        let mut locked = None;
        let storage = self.storage.clone();
        let previous_ts = self.last_ts;
        let mut writes = WriteSet::default();
        // Lent to the group's buffer while the committer's other fields stay usable.
        let mut documents = std::mem::replace(&mut self.documents, DocumentCache::new(0));
        let result = (|| -> Result<Timestamp, StorageError> {
            let mut batch = storage.begin_batch()?;
            locked = Some(Instant::now());
            // What arrived while the batch waited for the commit lock (other replicas held it)
            // joins the group: a replica that waits for its turn commits more in it, rather than
            // as many groups of a few, each paying the lock's round trips and an fsync.
            while group.len() < MAX_GROUP
                && let Ok(job) = queue.try_recv()
            {
                group.push(job);
            }
            let caught_up = documents.catch_up(&mut *batch);
            if caught_up.is_err() {
                documents.forget();
            }
            caught_up?;
            let mut buffer = WriteBuffer::new(batch, &mut documents);
            let batch_ts = buffer.batch().ts();
            // Another process may have committed since (a shared database): continue after it.
            self.last_ts = self.last_ts.max(batch_ts);
            self.purge_old_outcomes(buffer.batch())?;
            for job in group.iter_mut() {
                writes.extend(self.run_job(&mut buffer, batch_ts, job.as_mut()));
            }
            // The commit's timestamp also covers the `_creationTime`s it handed out, so that the
            // next commit (perhaps another process's) starts past them.
            let creation_tail = (self.last_creation_time * 1e6) as Timestamp + MIN_TS_STEP;
            let ts = if writes.entries.is_empty() { self.last_ts } else { self.last_ts.max(creation_tail) };
            // Invariant: timestamps increase in commit order, across processes sharing the store:
            // a group that writes commits after the last commit the batch saw.
            debug_assert!(writes.entries.is_empty() || ts > batch_ts, "commit at {ts} after {batch_ts}");
            self.last_ts = ts;
            let committing = Instant::now();
            let counts = buffer.commit(ts, &writes)?;
            self.stats.commit_seconds.observe(committing.elapsed().as_secs_f64());
            self.stats.statements.fetch_add(counts.statements, Ordering::Relaxed);
            self.stats.round_trips.fetch_add(counts.round_trips, Ordering::Relaxed);
            Ok(ts)
        })();
        self.stats.document_cache_hits.store(documents.hits, Ordering::Relaxed);
        self.stats.document_cache_misses.store(documents.misses, Ordering::Relaxed);
        self.documents = documents;
        match &result {
            Ok(ts) => {
                self.stats.groups.fetch_add(1, Ordering::Relaxed);
                self.stats.mutations.fetch_add(group.len() as u64, Ordering::Relaxed);
                self.stats.group_sizes.observe(group.len() as f64);
                let held = locked.map_or(0.0, |at| at.elapsed().as_secs_f64());
                self.stats.group_seconds.observe(held);
                self.stats.recent_group_seconds.observe(held);
                if *ts > previous_ts {
                    let commit = Arc::new(Commit::new(*ts, writes));
                    // Before any mutation is answered, so nobody reads a result older than their write.
                    self.cache.apply(&commit);
                    // No receivers is fine: nobody is subscribed.
                    if let Some((commits, history)) = &self.commits {
                        history.record(&commit);
                        let _ = commits.send(commit);
                    }
                }
            }
            Err(e) => {
                self.stats.failed_groups.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, mutations = group.len(), "group commit failed; every mutation in it fails");
                // Continue from the durable timestamp.
                self.last_ts = previous_ts;
            }
        }
        for job in group {
            job.finish(result.clone());
        }
    }

    /// About once a minute, forgets mutation outcomes older than the replay window.
    fn purge_old_outcomes(&mut self, batch: &mut dyn Batch) -> Result<(), StorageError> {
        let now = now_ns();
        if now < self.next_purge {
            return Ok(());
        }
        self.next_purge = now + PURGE_INTERVAL_NS;
        // By the database's clock (its last commit), not this process's: a replica whose clock
        // runs ahead must not purge what others still need.
        let purged = batch.purge_outcomes(batch.ts().saturating_sub(OUTCOME_WINDOW_NS))?;
        if purged > 0 {
            tracing::debug!(purged, "forgot old mutation outcomes");
        }
        Ok(())
    }

    /// Runs one mutation on the group's buffer; returns what it wrote (nothing if it failed, its
    /// writes undone).
    fn run_job(&mut self, buffer: &mut WriteBuffer<'_>, batch_ts: Timestamp, job: &mut dyn Job) -> WriteSet {
        // Each mutation of a group runs at a timestamp past the one before it (its writes are
        // ordered by it), at least `MIN_TS_STEP` apart so `_creationTime`s stay distinct.
        let ts = now_ns().max(self.last_ts + MIN_TS_STEP);
        debug_assert!(ts > batch_ts, "mutation at {ts} not after the last commit {batch_ts}");
        buffer.savepoint();
        let mut tx = Transaction::writing(&self.schema, buffer, ts, self.last_creation_time);
        // A panicking mutation fails alone (as a rolled-back mutation) instead of stopping the committer.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&mut tx))).unwrap_or_else(|_| {
            tracing::error!("a mutation panicked; it is rolled back");
            false
        });
        let (_, writes, last_creation_time) = tx.into_sets();
        if !ok {
            buffer.rollback();
            return WriteSet::default();
        }
        buffer.release();
        self.last_ts = ts;
        self.last_creation_time = last_creation_time;
        writes
    }
}
