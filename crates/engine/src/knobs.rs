//! Every tunable number of every layer, in one place, with why it has the value it has.
//!
//! They live in the lowest crate so each layer reads the same definition: the CLI's defaults
//! (`jangar serve --help`) and `Limits::default` are taken from here, and a change shows up
//! in one diff. Format constants (key tags, id alphabets, SQL) stay with the code they shape.
//! "Bounds" says what a value may be changed to without breaking something else.

use std::time::Duration;

use crate::storage::Timestamp;

const SECOND_NS: Timestamp = 1_000_000_000;

// ---- Values (Convex's limits; a larger value would not round-trip through the clients) ----

/// Elements of one array. Bounds: Convex's 8192; lower breaks apps written for Convex.
pub(crate) const MAX_ARRAY_LEN: usize = 8192;
/// Fields of one object. Bounds: Convex's 1024.
pub(crate) const MAX_OBJECT_FIELDS: usize = 1024;
/// Bytes of one field name. Bounds: Convex's 1024.
pub(crate) const MAX_FIELD_NAME_LEN: usize = 1024;
/// Depth of nested arrays and objects. Bounds: Convex's 16; the index-key encoder and the
/// validators recurse this deep, so far higher values risk the stack.
pub(crate) const MAX_NESTING: usize = 16;

// ---- Transactions (Convex's per-function limits) ----

/// Bytes of one stored document. Bounds: Convex's 1 MiB.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Bytes of documents the committer keeps for mutations' point reads. Bounds: memory; the hot set
/// (sessions, runs, counters being written) is small, and a miss costs one read.
pub(crate) const DOCUMENT_CACHE_BYTES: usize = 64 << 20;
/// Bytes of one index key (the indexed fields, the creation time and the id, encoded). Bounds:
/// PostgreSQL's B-tree, whose entries must fit a third of a page (about 2,700 bytes with the
/// row's other columns); checked before a group is flushed, so the mutation fails alone, and on
/// every storage alike, so a deployment moves between them unchanged.
pub(crate) const MAX_INDEX_KEY_BYTES: usize = 2_048;
/// Documents one function may read. Bounds: Convex's 32,000.
pub(crate) const MAX_READ_DOCUMENTS: usize = 32_000;
/// Bytes one function may read. Bounds: Convex's 16 MiB.
pub(crate) const MAX_READ_BYTES: usize = 16 << 20;
/// Index ranges one function may read; each one is kept in the read set of a subscription.
/// Bounds: Convex's 4,096.
pub(crate) const MAX_READ_RANGES: usize = 4_096;
/// Documents one mutation may write. Bounds: Convex's 16,000.
pub(crate) const MAX_WRITE_DOCUMENTS: usize = 16_000;
/// Bytes one mutation may write. Bounds: Convex's 16 MiB.
pub(crate) const MAX_WRITE_BYTES: usize = 16 << 20;
/// Rows fetched per storage call while filtering an index range: small enough that a
/// `take(10)` reads little, large enough that a full scan is not a call a row. Bounds: >= 1.
pub(crate) const SCAN_CHUNK: usize = 128;

// ---- The committer ----

/// Concurrent snapshot readers, each holding a storage connection while it runs: about the
/// number of cores, so reads do not starve the committer. Bounds: >= 1.
pub(crate) const MAX_READERS: usize = 4;
/// Mutations waiting for the committer at most; more callers wait to enqueue (backpressure,
/// not an error). Bounds: >= `MAX_GROUP`, or groups never fill.
pub(crate) const MAX_QUEUED_MUTATIONS: usize = 4096;
/// The most mutations one group commit carries: bounds the latency one group adds and the
/// size of one storage transaction. Bounds: >= 1.
pub(crate) const MAX_GROUP: usize = 1024;
/// How long a mutation's outcome is kept so a replay of it (a client reconnecting, an HTTP
/// retry with the same `Idempotency-Key`) is not applied twice. Bounds: longer than any
/// client retries; each outcome costs a row.
pub(crate) const OUTCOME_WINDOW_NS: Timestamp = 3_600 * SECOND_NS;
/// How often outcomes older than the window are purged. Bounds: well under the window.
pub(crate) const PURGE_INTERVAL_NS: Timestamp = 60 * SECOND_NS;

// ---- Caches and history ----

/// Recent commits the query cache keeps to admit results computed a little before the
/// latest commit. Bounds: >= 1; more costs memory, fewer costs cache misses under load.
pub(crate) const RECENT_COMMITS: usize = 4096;
/// Query results the cache holds unless told otherwise (`--query-cache-entries`; 0 turns
/// the cache off). Bounds: any; each entry holds one result.
pub const DEFAULT_QUERY_CACHE_ENTRIES: usize = 10_000;
/// Commits kept in memory for `query_at_ts`, at most, and for how long (by commit time).
/// Bounds: any; a read older than what is kept answers `TimestampTooOld`.
pub(crate) const HISTORY_COMMITS: usize = 10_000;
pub(crate) const HISTORY_RETAIN_NS: Timestamp = 60 * SECOND_NS;

// ---- Storage ----

/// SQLite: WAL frames (pages) after which the committer restarts the WAL (16 MiB of 4 KiB
/// pages), so the file does not grow without bound under steady writes. Bounds: >= 1000.
pub(crate) const WAL_RESTART_FRAMES: i64 = 4096;
/// SQLite: how long a connection waits for a lock held by another connection (the backup,
/// an operator's `sqlite3`). Bounds: > 0.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL: commits one read of the commit feed returns at most. Bounds: >= 1.
pub(crate) const FEED_BATCH: i64 = 1000;
/// PostgreSQL: how long the commit log keeps a commit (by the database's clock, its last commit).
/// Replicas read it within milliseconds; a replica that falls further behind (stopped, cut off)
/// sees a gap and drops its caches, which is correct, only slower. Bounds: well above a
/// replica's worst lag; each minute at full speed is about 20,000 rows.
pub(crate) const COMMIT_LOG_RETENTION_NS: Timestamp = 10 * 60 * SECOND_NS;
/// PostgreSQL: the commit log's stored write sets at most, whatever their age, so a burst of
/// large groups cannot grow it (and every replica's reads of it) without bound. Bounds: enough
/// for a replica's worst lag.
pub(crate) const COMMIT_LOG_MAX_BYTES: i64 = 64 << 20;
/// PostgreSQL: how often each replica purges the commit log, on its feed's connection (not
/// under the commit lock). Bounds: well under the retention.
pub(crate) const COMMIT_LOG_PURGE_INTERVAL: Duration = Duration::from_secs(30);
/// PostgreSQL: reader connections kept for reuse; more are closed when done. Bounds: >= 1,
/// and the server's `max_connections` shared by every replica.
pub(crate) const POOLED_READERS: usize = 8;
/// Rows read, and index entries written per statement, while building indexes and while
/// checking integrity. Bounds: >= 1; larger uses more memory per statement.
pub(crate) const BUILD_CHUNK: usize = 1000;
/// Documents an export reads from storage at a time. Bounds: >= 1; larger uses more memory.
pub(crate) const EXPORT_CHUNK: usize = 1000;
/// The size of each part `jangar import` uploads to a server (the Convex CLI's, 5 MiB).
/// Bounds: below `--max-request-bytes`.
pub const IMPORT_PART_BYTES: usize = 5 << 20;
/// Problems an integrity report lists at most; all are counted.
pub(crate) const MAX_LISTED_PROBLEMS: usize = 1000;

// ---- Backups (SQLite) ----

/// How often `serve --backup-dir` writes a backup unless told otherwise (`--backup-every`).
/// Bounds: any; each backup reads the whole database once (the writer goes on meanwhile).
pub const DEFAULT_BACKUP_EVERY: &str = "1h";
/// Scheduled backups kept (`--backup-keep`): a day of hourly ones. Bounds: >= 1; each costs
/// about the database's size on disk.
pub const DEFAULT_BACKUP_KEEP: u32 = 24;

// ---- Functions ----

/// Items a list function returns when the caller gives no `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// The largest `limit` a list function accepts. Bounds: keeps a page under the read limits.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Steps, artifacts and events a run's timeline returns at most, each.
pub const TIMELINE_LIMIT: usize = 1000;
/// Deployment environment variables at most (Convex's limit). Bounds: a list of them all
/// is one read.
pub const MAX_ENVIRONMENT_VARIABLES: usize = 100;
/// The longest environment variable value, in bytes (Convex's limit).
pub const MAX_ENVIRONMENT_VARIABLE_BYTES: usize = 8 << 10;

// ---- HTTP ----

/// Convex's limit on one function's arguments.
pub const MAX_ARGS_BYTES: usize = 16 << 20;
/// Request bodies may carry the arguments plus their JSON overhead (`--max-request-bytes`
/// and `--max-socket-message-bytes` default to it). Bounds: >= `MAX_ARGS_BYTES`.
pub const MAX_BODY_BYTES: usize = MAX_ARGS_BYTES + (1 << 20);
/// How long an HTTP client's `Idempotency-Key` may be.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Seconds a client has to send a request's headers; idle keep-alive connections close
/// after as long (`--header-timeout-seconds`). Bounds: >= 1; low values drop slow links.
pub const HEADER_TIMEOUT_SECONDS: u64 = 10;
/// Seconds a client may pause while sending a body (`--body-timeout-seconds`; 408 after).
pub const BODY_TIMEOUT_SECONDS: u64 = 30;
/// Connections waiting to be accepted: large, so thousands of clients reconnecting at once
/// are queued rather than refused (the OS default is 128). Bounds: the OS caps it at somaxconn.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Function calls per user token per second (`--rate-limit-per-second`; 0: unlimited).
pub const CALLS_PER_SECOND: u32 = 1000;
/// Rate-limit buckets kept at most; full, idle ones are dropped first. Bounds: the number
/// of distinct users active at once, or limits reset for the dropped ones.
pub const MAX_RATE_BUCKETS: usize = 100_000;

// ---- The sync socket ----

/// Queries one connection may subscribe to (`--max-subscriptions-per-connection`).
pub const SUBSCRIPTIONS_PER_CONNECTION: usize = 1024;
/// Mutations one connection may have waiting (`--max-pending-mutations`).
pub const PENDING_MUTATIONS: usize = 1024;
/// Messages queued for one client; one further behind is disconnected and reconnects
/// (`--sync-queue-messages`). Bounds: >= 2 (a response and its transition).
pub const SYNC_QUEUE_MESSAGES: usize = 256;
/// How long one message may take to go out before the client counts as gone.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A Ping goes out after this long without any other message; under the idle timeouts of
/// common proxies (60 s).
pub const PING_AFTER: Duration = Duration::from_secs(15);
/// How often subscriptions to time-dependent queries are re-run.
pub const TIME_DEPENDENT_EVERY: Duration = Duration::from_secs(1);
/// How long a step waits for the broadcast of a commit its snapshot already shows.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);

// ---- Operating: function logs and metrics ----

/// Finished function calls kept in memory for `npx convex logs` (`/api/stream_function_logs`);
/// the oldest go first. Bounds: >= 1; each costs a few hundred bytes, and a poller that falls
/// further behind than this misses the calls in between.
pub const FUNCTION_LOG_ENTRIES: usize = 10_000;
/// Bytes of an error message an entry keeps: the log line and the CLI show the start of a longer
/// one. Bounds: >= 64; with `FUNCTION_LOG_ENTRIES`, bounds the buffer's memory.
pub const FUNCTION_LOG_MESSAGE_BYTES: usize = 2_048;
/// How long a log poll with nothing new waits for a call before answering with no entries
/// (Convex's 60 s). Bounds: under the idle timeouts of proxies in front of the server.
pub const FUNCTION_LOG_WAIT: Duration = Duration::from_secs(60);
/// Log lines waiting for stderr at most; past them lines are dropped, so a reader of the log
/// that stalls (a full pipe, a slow collector) never stalls calls. Bounds: >= 1; each costs a
/// line's bytes while it waits.
pub const LOG_BUFFERED_LINES: usize = 128_000;
/// Upper bounds, in seconds, of the latency histograms' buckets (function calls, group commits,
/// fsyncs, the commit feed's lag): 0.5 ms to 10 s, about 2.5x apart. Bounds: increasing; each
/// bucket is one more series per histogram (per function and outcome for function calls).
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the histogram of mutations per group commit: 1 to `MAX_GROUP`, doubling.
pub const GROUP_SIZE_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

// ---- Authentication ----

/// How often the admin-key file and the auth config are read again (a revoked key stops
/// working within this).
pub const CREDENTIALS_WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long an identity provider's fetched keys are kept when its response does not say,
/// and the bounds put on what it says.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(3600);
pub const MIN_KEY_TTL: Duration = Duration::from_secs(300);
pub const MAX_KEY_TTL: Duration = Duration::from_secs(86_400);
/// An unknown key id fetches the keys again at most this often: a stream of forged tokens
/// must not become a stream of requests to the provider.
pub const KEYS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long fetching a provider's keys may take, and how large the answer may be.
pub const KEYS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_KEYS_BYTES: usize = 1 << 20;
/// Verified tokens remembered, so a client sending the same token on every call pays for
/// one signature check (a token whose key the provider drops stays valid until it expires,
/// as with any stateless token).
pub const MAX_VERIFIED_TOKENS: usize = 10_000;

/// How long an access token this deployment issues lasts by default (Convex Auth's default: an
/// hour; `--auth-token-lifetime`). The client refreshes it ten seconds before it ends.
pub const ISSUED_TOKEN_LIFETIME: Duration = Duration::from_secs(3_600);
/// How long a signed-in session seen alive is trusted without reading it again: a token of a
/// session ended elsewhere (another replica's sign-out, `jangar users disable`) is refused within
/// this; one ended by this process's sign-out, at once.
pub const SESSION_RECHECK: Duration = Duration::from_secs(5);
/// The shortest lifetime allowed: the client refreshes ten seconds before the end.
pub const MIN_ISSUED_TOKEN_LIFETIME: Duration = Duration::from_secs(15);
