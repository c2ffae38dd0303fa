//! `GET /metrics`: the server's figures in the OpenMetrics text format, for Prometheus.
//!
//! Function calls are counted as they finish, from the same records as the function log
//! ([`crate::executions::ExecutionLog::record`]). Everything else is read when scraped (a
//! [`Collector`]) from the counters the engine, the sync layer and auth keep anyway, so serving
//! requests pays nothing more for it.

use jangar_engine::knobs::LATENCY_BUCKETS;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::auth::Auth;
use crate::executions::{ExecutionLog, Invocation, Outcome};
use crate::sync::manager::SyncStats;
use crate::temporal::BridgeStats;
use jangar_engine::database::Database;

/// What `/metrics` answers with: OpenMetrics 1.0 text, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// When the last scheduled backup succeeded (`None`: none has yet), read at each scrape.
pub type LastBackup = Arc<dyn Fn() -> Option<SystemTime> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    function: &'static str,
    kind: &'static str,
    code: &'static str,
}

/// The function calls' counters and latency histograms, by function, kind and outcome.
#[derive(Clone, Debug)]
pub(crate) struct FunctionMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<CallLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl Default for FunctionMetrics {
    fn default() -> FunctionMetrics {
        FunctionMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            errors: Family::default(),
        }
    }
}

impl FunctionMetrics {
    pub(crate) fn observe(&self, call: &Invocation, duration: Duration, outcome: &Outcome) {
        let labels = CallLabels { function: call.path, kind: call.kind.name(), outcome: outcome.word() };
        self.calls.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(duration.as_secs_f64());
        if let Outcome::Failure { code, .. } = outcome {
            self.errors.get_or_create(&ErrorLabels { function: call.path, kind: call.kind.name(), code }).inc();
        }
    }
}

/// Every metric the server exposes.
pub struct Metrics {
    registry: Registry,
    figures: Arc<ServerFigures>,
}

impl Metrics {
    /// `last_backup`: when the scheduled backups last succeeded, if the server takes any.
    pub fn new(
        db: Arc<Database>,
        sync: Arc<SyncStats>,
        auth: Arc<Auth>,
        executions: &ExecutionLog,
        last_backup: Option<LastBackup>,
        temporal: Option<Arc<BridgeStats>>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let functions = executions.metrics().clone();
        registry.register(
            "jangar_function_calls",
            "Function calls that finished, by function, kind and outcome (success or error); \
             a query answered from the query cache is a success",
            functions.calls,
        );
        registry.register_with_unit(
            "jangar_function_duration",
            "Seconds from a call's start (its request read, its caller known) to its result; a \
             mutation's includes waiting for its group commit, a subscription's run only the run",
            Unit::Seconds,
            functions.durations,
        );
        registry.register(
            "jangar_function_errors",
            "Function calls that failed, by the error code the caller was given",
            functions.errors,
        );
        let figures =
            Arc::new(ServerFigures { db, sync, auth, storage_bytes: Mutex::new(None), last_backup, temporal });
        registry.register_collector(Box::new(figures.clone()));
        Metrics { registry, figures }
    }

    /// The exposition: every metric as of now.
    pub async fn render(&self) -> Result<String, fmt::Error> {
        // Measured before encoding: on PostgreSQL it is a query, which the encoder cannot wait for.
        let measured = self.figures.db.storage_bytes().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot measure the database's size for /metrics");
            None
        });
        *self.figures.storage_bytes.lock().unwrap_or_else(|p| p.into_inner()) = measured;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The figures read at each scrape.
struct ServerFigures {
    db: Arc<Database>,
    sync: Arc<SyncStats>,
    auth: Arc<Auth>,
    /// The database's size, as measured at the start of the scrape being encoded.
    storage_bytes: Mutex<Option<u64>>,
    last_backup: Option<LastBackup>,
    temporal: Option<Arc<BridgeStats>>,
}

impl fmt::Debug for ServerFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFigures").finish_non_exhaustive()
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<N>(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, value: N) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &Histogram,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for ServerFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        let seconds = Some(&Unit::Seconds);
        let commits = self.db.stats();
        let read = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        counter(
            e,
            "jangar_commit_groups",
            "Group commits made durable (each one storage transaction).",
            read(&commits.groups),
        )?;
        counter(
            e,
            "jangar_commit_groups_failed",
            "Group commits whose storage transaction failed, failing every mutation in them.",
            read(&commits.failed_groups),
        )?;
        counter(
            e,
            "jangar_mutations_committed",
            "Mutations taken by the committer in durable group commits (failed mutations included).",
            read(&commits.mutations),
        )?;
        counter(
            e,
            "jangar_commit_statements",
            "Storage statements of durable group commits, reads included.",
            read(&commits.statements),
        )?;
        counter(
            e,
            "jangar_commit_round_trips",
            "Round trips to the database server of durable group commits (0 for SQLite, in process).",
            read(&commits.round_trips),
        )?;
        counter(
            e,
            "jangar_document_cache_hits",
            "Mutations' point reads answered by the committer's document cache.",
            read(&commits.document_cache_hits),
        )?;
        counter(
            e,
            "jangar_document_cache_misses",
            "Mutations' point reads the committer's document cache did not hold (read from storage).",
            read(&commits.document_cache_misses),
        )?;
        histogram(
            e,
            "jangar_commit_group_mutations",
            "Mutations per durable group commit.",
            None,
            &commits.group_sizes,
        )?;
        histogram(
            e,
            "jangar_commit_group_duration",
            "Seconds from the start of a group commit (on PostgreSQL after taking the commit lock) to its durable COMMIT, running its mutations included.",
            seconds,
            &commits.group_seconds,
        )?;
        histogram(
            e,
            "jangar_commit_fsync_duration",
            "Seconds of each group's storage COMMIT: writing the group durably, the fsync included (SQLite writes its WAL and fsyncs it in one call, so the two are not told apart; --durability normal does not fsync each commit).",
            seconds,
            &commits.commit_seconds,
        )?;
        if self.db.follows_commit_feed() {
            histogram(
                e,
                "jangar_commit_feed_lag",
                "Seconds from a commit's timestamp (the committing replica's clock) to this replica taking it in from the database's commit feed.",
                seconds,
                &commits.feed_lag_seconds,
            )?;
        }
        let (hits, misses) = self.db.cache().hits_and_misses();
        counter(e, "jangar_query_cache_hits", "Query calls answered from the query cache.", hits)?;
        counter(
            e,
            "jangar_query_cache_misses",
            "Query calls the query cache had no result for (it is off on PostgreSQL).",
            misses,
        )?;
        let (in_use, slots) = self.db.readers_in_use();
        gauge(
            e,
            "jangar_storage_readers_in_use",
            "Snapshot readers running now, each holding a storage connection (PostgreSQL: from the reader pool).",
            None,
            in_use as u64,
        )?;
        gauge(
            e,
            "jangar_storage_readers_max",
            "Snapshot readers that may run at once; more wait for a slot.",
            None,
            slots as u64,
        )?;
        if let Some(bytes) = *self.storage_bytes.lock().unwrap_or_else(|p| p.into_inner()) {
            let help = "Bytes the database takes: SQLite's database file and write-ahead log, or PostgreSQL's pg_database_size.";
            gauge(e, "jangar_storage_size", help, Some(&Unit::Bytes), bytes)?;
        }
        let sync = &self.sync;
        gauge(e, "jangar_sync_connections", "Open WebSocket sync connections.", None, read(&sync.connections))?;
        gauge(
            e,
            "jangar_sync_subscriptions",
            "Queries subscribed to over sync connections (a query two connections share counts twice).",
            None,
            read(&sync.subscriptions),
        )?;
        counter(e, "jangar_sync_commits", "Commits the subscription manager took in.", read(&sync.commits))?;
        counter(
            e,
            "jangar_sync_query_reruns",
            "Subscribed queries run again because a commit touched what they read (or their clock ticked); divided by jangar_sync_commits, re-runs per commit.",
            read(&sync.query_reruns),
        )?;
        counter(
            e,
            "jangar_sync_queries_run",
            "Subscribed queries run, first runs and re-runs.",
            read(&sync.queries_run),
        )?;
        counter(e, "jangar_sync_transitions", "Transitions sent to sync clients.", read(&sync.transitions))?;
        counter(
            e,
            "jangar_sync_outbound_dropped",
            "Messages refused because a client's outgoing queue was full (--sync-queue-messages); the client is then disconnected to reconnect.",
            read(&sync.outbound_dropped),
        )?;
        counter(
            e,
            "jangar_rate_limited_calls",
            "Calls refused because their user exceeded --rate-limit-per-second.",
            self.auth.rate_limited_calls(),
        )?;
        if let Some(last) = self.last_backup.as_ref().and_then(|last_backup| last_backup()) {
            let age = SystemTime::now().duration_since(last).unwrap_or_default().as_secs_f64();
            gauge(
                e,
                "jangar_backup_age",
                "Seconds since the last scheduled backup succeeded (absent before the first).",
                seconds,
                age,
            )?;
        }
        if let Some(bridge) = &self.temporal {
            let help = "Requests to Temporal waiting to be sent, or sent again (counted every 5 s).";
            gauge(e, "jangar_temporal_requests_pending", help, None, read(&bridge.pending))?;
            let help = "Requests Temporal took: workflow starts, cancellations, terminations.";
            counter(e, "jangar_temporal_requests_sent", help, read(&bridge.sent))?;
            let help = "Attempts to send a request that got no definite answer (it is sent again with backoff).";
            counter(e, "jangar_temporal_attempts_failed", help, read(&bridge.failed_attempts))?;
            let help = "Requests Temporal refused for good (their work orders failed).";
            counter(e, "jangar_temporal_requests_dead", help, read(&bridge.dead))?;
            let help = "Workflows whose histories this process follows now.";
            gauge(e, "jangar_temporal_workflows_followed", help, None, read(&bridge.followed))?;
            let help = "Seconds from the last workflow close (Temporal's clock) to its run showing it.";
            gauge(e, "jangar_temporal_mirror_lag", help, seconds, read(&bridge.mirror_lag_ms) as f64 / 1000.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::WatchedProviders;
    use crate::auth::keys::AdminKeys;
    use jangar_engine::storage::memory::MemoryStorage;

    async fn metrics(last_backup: Option<LastBackup>) -> Metrics {
        let schema = Arc::new(jangar_domain::schema::schema());
        let storage = Arc::new(MemoryStorage::new(&schema).unwrap());
        let shared: Arc<dyn jangar_engine::storage::Storage> = storage.clone();
        let issuer = crate::auth::issuer::Issuer::new(
            "http://127.0.0.1:3210",
            jangar_engine::knobs::ISSUED_TOKEN_LIFETIME,
            None,
            &shared,
        );
        let (db, _committer) = Database::start(schema, storage, 10).unwrap();
        let dir = std::env::temp_dir().join("jangar-metrics-unit-none");
        let auth = Auth::new(AdminKeys::load(&dir, &[]), WatchedProviders::load(None).unwrap(), issuer, true, 0);
        let executions = ExecutionLog::new(10, Duration::ZERO);
        Metrics::new(db, Arc::default(), auth, &executions, last_backup, None)
    }

    #[tokio::test]
    async fn the_backup_age_is_read_from_the_backups_clock() {
        let an_hour_ago: LastBackup = Arc::new(|| Some(SystemTime::now() - Duration::from_secs(3600)));
        let text = metrics(Some(an_hour_ago)).await.render().await.unwrap();
        let age = text.lines().find_map(|line| line.strip_prefix("jangar_backup_age_seconds ")).expect(&text);
        let age: f64 = age.parse().unwrap();
        assert!((3600.0..3660.0).contains(&age), "{age}");
        assert!(text.contains("# UNIT jangar_backup_age_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));

        let never: LastBackup = Arc::new(|| None);
        let before_the_first = metrics(Some(never)).await.render().await.unwrap();
        let without_backups = metrics(None).await.render().await.unwrap();
        for text in [before_the_first, without_backups] {
            assert!(!text.contains("jangar_backup_age"), "{text}");
            // The memory storage has no size to tell, and no commit feed.
            assert!(!text.contains("jangar_storage_size") && !text.contains("jangar_commit_feed_lag"));
            assert!(text.contains("jangar_storage_readers_max 4"));
        }
    }
}
