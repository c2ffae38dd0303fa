//! The subscription manager: one task that owns every connection's query set
//! and versions, and every shared subscription.
//!
//! A subscription is shared by all connections that ask for the same function,
//! arguments and identity: it is computed once and its read set is kept in a
//! [`ReadSetIndex`]. Each step the manager opens one snapshot, takes in every
//! commit up to that snapshot's timestamp, re-runs exactly the subscriptions
//! those commits touched (plus new ones) on that snapshot, and sends each
//! affected connection one Transition ending at the snapshot's timestamp.
//! Connections whose results did not change do no work.

use jangar_engine::knobs::{COMMIT_WAIT, TIME_DEPENDENT_EVERY};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::close::{CloseCode, INVALID_CLIENT_MESSAGE};
use super::outbox::{Outbound, Outbox};
use super::protocol::{QuerySetModification, StateVersion, encode_ts};
use crate::auth::{Auth, Identity};
use crate::decode_args;
use crate::executions::{CallerKind, ExecutionLog, Invocation, Outcome, RequestId};
use jangar_domain::access::Caller;
use jangar_domain::error::{AppError, ErrorCode, FunctionError};
use jangar_domain::registry::{Function, Kind, Registry, check_args};
use jangar_engine::cache::CachedResult;
use jangar_engine::database::Database;
use jangar_engine::sets::{Commit, ReadSetIndex};
use jangar_engine::storage::Timestamp;
use jangar_engine::value::{JsonFormat, Value};

pub(crate) type ConnectionId = u64;

/// What connections tell the manager.
pub enum Event {
    Connected {
        conn: ConnectionId,
        out: Outbox,
        overloaded: oneshot::Sender<()>,
    },
    ModifyQuerySet {
        conn: ConnectionId,
        base_version: u32,
        new_version: u32,
        modifications: Vec<QuerySetModification>,
    },
    Authenticated {
        conn: ConnectionId,
        base_version: u32,
        identity: Identity,
    },
    /// Mutations finished and their responses are queued: a Transition is owed (at or after their
    /// commits). The Rust and Python clients settle even a failed mutation only on the next Transition.
    MutationDone {
        conn: ConnectionId,
    },
    Disconnected {
        conn: ConnectionId,
    },
}

/// Counters for operators, `/metrics` and the fanout benchmark.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub(crate) connections: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) queries_run: AtomicU64,
    /// Runs of subscriptions that had a result already: what commits (and clock ticks) cost.
    pub(crate) query_reruns: AtomicU64,
    /// Commits the manager took in.
    pub(crate) commits: AtomicU64,
    pub(crate) transitions: AtomicU64,
    pub(crate) steps: AtomicU64,
    /// Messages refused by a full outbox (the client is disconnected as too slow).
    pub(crate) outbound_dropped: AtomicU64,
}

type Key = Arc<str>;

/// A subscription's run on a step's snapshot: what ran, its result and how long it took; or,
/// when it could not run (no such function, no credentials), the error to report.
type SubscriptionRun = Result<(Invocation, Result<Value, FunctionError>, Duration), (String, Option<Json>)>;

enum QueryResult {
    Value(Arc<CachedResult>),
    Error { message: String, data: Option<Json> },
}

/// A subscription's function, whom it runs as and its arguments, or why it cannot run.
type PreparedCall = Result<(Arc<Function>, Caller, Value), FunctionError>;

struct Subscription {
    call: PreparedCall,
    /// Whose credentials it runs with (part of its key, so the same for every subscriber).
    caller_kind: CallerKind,
    result: Option<(QueryResult, u64)>,
    subscribers: HashSet<(ConnectionId, u32)>,
}

impl Subscription {
    /// The journal sent with each answer: a pinned page's end cursor (Convex's journal is the
    /// same idea), which the client sends back when it subscribes again.
    fn journal(&self) -> Option<&str> {
        let Ok((_, _, Value::Object(args))) = &self.call else { return None };
        let Some(Value::Object(options)) = args.get("paginationOpts") else { return None };
        match options.get("endCursor") {
            Some(Value::String(end)) => Some(end),
            _ => None,
        }
    }
}

struct Connection {
    out: Outbox,
    overloaded: Option<oneshot::Sender<()>>,
    /// The version the client is at: the end of the last Transition sent.
    sent: StateVersion,
    query_set: u32,
    identity_version: u32,
    identity: Identity,
    queries: HashMap<u32, Key>,
    /// The udf path, encoded args and journal of each query, to re-key them when the identity changes.
    calls: HashMap<u32, (String, Json, Option<String>)>,
    /// Queries whose current result this client has not seen yet.
    unsent: HashSet<u32>,
    removed: Vec<u32>,
    /// A Transition is owed even without modifications (new versions, a mutation's ts).
    owed: bool,
}

pub struct Manager {
    /// Queries one connection may subscribe to.
    max_subscriptions: usize,
    db: Arc<Database>,
    auth: Arc<Auth>,
    registry: Arc<Registry>,
    events: mpsc::Receiver<Event>,
    commits: broadcast::Receiver<Arc<Commit>>,
    /// A commit received past the current snapshot, for the next step.
    held_over: Option<Arc<Commit>>,
    processed_ts: Timestamp,
    /// Subscriptions touched by commits taken in but not yet re-run.
    touched: HashSet<Key>,
    everything_touched: bool,
    subscriptions: HashMap<Key, Subscription>,
    /// Subscriptions not computed yet.
    fresh: HashSet<Key>,
    /// Subscriptions whose results depend on the wall clock: re-run every second.
    time_dependent: HashSet<Key>,
    index: ReadSetIndex<Key>,
    connections: HashMap<ConnectionId, Connection>,
    /// Connections owed a Transition; only these are visited when a step sends.
    dirty: HashSet<ConnectionId>,
    stats: Arc<SyncStats>,
    executions: Arc<ExecutionLog>,
}

impl Manager {
    pub async fn new(
        db: Arc<Database>,
        auth: Arc<Auth>,
        registry: Arc<Registry>,
        events: mpsc::Receiver<Event>,
        stats: Arc<SyncStats>,
        executions: Arc<ExecutionLog>,
        max_subscriptions: usize,
    ) -> Manager {
        // Subscribe before reading the latest timestamp, so no commit falls in between.
        let commits = db.subscribe_commits();
        let processed_ts = db.current_ts().await.unwrap_or(0);
        Manager {
            max_subscriptions,
            db,
            auth,
            registry,
            events,
            commits,
            held_over: None,
            processed_ts,
            touched: HashSet::new(),
            everything_touched: false,
            subscriptions: HashMap::new(),
            fresh: HashSet::new(),
            time_dependent: HashSet::new(),
            index: ReadSetIndex::default(),
            connections: HashMap::new(),
            dirty: HashSet::new(),
            stats,
            executions,
        }
    }

    /// Runs until every connection and the server have dropped their event senders.
    pub async fn run(mut self) {
        let mut clock = tokio::time::interval(TIME_DEPENDENT_EVERY);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = clock.tick() => self.touched.extend(self.time_dependent.iter().cloned()),
                event = self.events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return,
                },
                commit = self.commits.recv() => self.take_in(commit),
            }
            // Take in everything already waiting, so one step serves it all.
            while let Ok(event) = self.events.try_recv() {
                self.handle(event);
            }
            loop {
                match self.commits.try_recv() {
                    Ok(commit) => self.take_in(Ok(commit)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.take_in(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => break,
                }
            }
            if self.needs_step() {
                self.step().await;
            }
        }
    }

    fn take_in(&mut self, commit: Result<Arc<Commit>, broadcast::error::RecvError>) {
        // A commit held over from the last step comes first: commits must be taken in order.
        if let Some(held) = self.held_over.take() {
            self.apply_commit(&held);
        }
        match commit {
            Ok(commit) => self.apply_commit(&commit),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "subscription manager fell behind the commit stream; re-running every query");
                self.everything_touched = true;
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn apply_commit(&mut self, commit: &Commit) {
        if commit.ts <= self.processed_ts {
            return;
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if commit.everything {
            self.everything_touched = true;
        } else {
            self.touched.extend(self.index.touched_by(&commit.writes));
        }
        self.processed_ts = commit.ts;
    }

    fn needs_step(&self) -> bool {
        !self.touched.is_empty()
            || self.everything_touched
            || !self.dirty.is_empty()
            || !self.fresh.is_empty()
            || self.held_over.is_some()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Connected { conn, out, overloaded } => {
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                self.connections.insert(
                    conn,
                    Connection {
                        out,
                        overloaded: Some(overloaded),
                        sent: StateVersion { query_set: 0, identity: 0, ts: 0 },
                        query_set: 0,
                        identity_version: 0,
                        identity: Identity::Anonymous,
                        queries: HashMap::new(),
                        calls: HashMap::new(),
                        unsent: HashSet::new(),
                        removed: Vec::new(),
                        owed: false,
                    },
                );
            }
            Event::ModifyQuerySet { conn, base_version, new_version, modifications } => {
                self.modify_query_set(conn, base_version, new_version, modifications)
            }
            Event::Authenticated { conn, base_version, identity } => self.authenticate(conn, base_version, identity),
            Event::MutationDone { conn } => {
                if let Some(c) = self.connections.get_mut(&conn) {
                    // The next step's snapshot is opened after these commits, so its Transition is late enough.
                    c.owed = true;
                    self.dirty.insert(conn);
                }
            }
            Event::Disconnected { conn } => self.disconnect(conn),
        }
    }

    fn fatal(&mut self, conn: ConnectionId, message: String) {
        if let Some(c) = self.connections.get_mut(&conn) {
            let error = serde_json::json!({"type": "FatalError", "error": message}).to_string();
            let queued = c.out.try_push(Outbound::Text(error)).is_ok()
                && c.out
                    .try_push(Outbound::Close {
                        code: CloseCode::PolicyViolation,
                        reason: INVALID_CLIENT_MESSAGE.into(),
                    })
                    .is_ok();
            if !queued && let Some(overloaded) = c.overloaded.take() {
                // No room to say why: close it as a client too far behind.
                let _ = overloaded.send(());
            }
        }
        self.disconnect(conn);
    }

    fn modify_query_set(&mut self, conn: ConnectionId, base: u32, new: u32, modifications: Vec<QuerySetModification>) {
        let Some(c) = self.connections.get(&conn) else { return };
        if base != c.query_set || new <= base {
            let message =
                format!("ModifyQuerySet from version {base} to {new}, but the query set is at version {}", c.query_set);
            return self.fatal(conn, message);
        }
        for modification in modifications {
            match modification {
                QuerySetModification::Add { query_id, udf_path, args, journal } => {
                    if self.connections[&conn].queries.contains_key(&query_id) {
                        return self.fatal(conn, format!("Query {query_id} was added twice"));
                    }
                    let args = Json::Array(args);
                    self.subscribe(conn, query_id, &udf_path, &args, journal.as_deref());
                    let c = self.connections.get_mut(&conn).expect("checked above");
                    c.calls.insert(query_id, (udf_path, args, journal));
                }
                QuerySetModification::Remove { query_id } => {
                    let c = self.connections.get_mut(&conn).expect("checked above");
                    if c.calls.remove(&query_id).is_none() {
                        return self.fatal(conn, format!("Query {query_id} was removed but never added"));
                    }
                    c.unsent.remove(&query_id);
                    c.removed.push(query_id);
                    if let Some(key) = c.queries.remove(&query_id) {
                        self.unsubscribe(conn, query_id, &key);
                    }
                }
            }
        }
        let c = self.connections.get_mut(&conn).expect("checked above");
        c.query_set = new;
        c.owed = true;
        self.dirty.insert(conn);
    }

    fn authenticate(&mut self, conn: ConnectionId, base: u32, identity: Identity) {
        let Some(c) = self.connections.get_mut(&conn) else { return };
        if base != c.identity_version {
            let message = format!("Authenticate from identity version {base}, but it is at {}", c.identity_version);
            return self.fatal(conn, message);
        }
        c.identity_version += 1;
        c.owed = true;
        self.dirty.insert(conn);
        // A refreshed token for the same user keeps every subscription.
        if c.identity.key() == identity.key() {
            c.identity = identity;
            return;
        }
        c.identity = identity;
        // Every query is asked again as the new identity.
        let calls: Vec<(u32, String, Json, Option<String>)> = c
            .calls
            .iter()
            .map(|(id, (path, args, journal))| (*id, path.clone(), args.clone(), journal.clone()))
            .collect();
        let old: Vec<(u32, Key)> = c.queries.drain().collect();
        for (query_id, key) in old {
            self.unsubscribe(conn, query_id, &key);
        }
        for (query_id, path, args, journal) in calls {
            self.subscribe(conn, query_id, &path, &args, journal.as_deref());
        }
    }

    fn subscribe(&mut self, conn: ConnectionId, query_id: u32, path: &str, args: &Json, journal: Option<&str>) {
        let Some(c) = self.connections.get_mut(&conn) else { return };
        // Over the limit, the query gets a subscription of its own that only reports the error.
        let over_limit = c.queries.len() >= self.max_subscriptions;
        let key: Key = if over_limit {
            format!("over limit\u{0}{conn}\u{0}{query_id}").into()
        } else {
            let path = jangar_domain::registry::canonical_path(path);
            format!("{}\u{0}{path}\u{0}{args}\u{0}{}", c.identity.key(), journal.unwrap_or_default()).into()
        };
        let caller = if over_limit {
            let message = format!("A connection may subscribe to at most {} queries.", self.max_subscriptions);
            Err(AppError::new(ErrorCode::LimitExceeded, message))
        } else {
            self.auth
                .caller(&c.identity)
                .ok_or_else(|| AppError::new(ErrorCode::Unauthenticated, crate::auth::AuthError::Missing.to_string()))
        };
        let caller_kind = CallerKind::of(&c.identity);
        c.queries.insert(query_id, key.clone());
        c.unsent.insert(query_id);
        self.dirty.insert(conn);
        let registry = &self.registry;
        let db = &self.db;
        let fresh = &mut self.fresh;
        let time_dependent = &mut self.time_dependent;
        let subscription = self.subscriptions.entry(key.clone()).or_insert_with(|| {
            let mut call = match caller {
                Ok(caller) => prepare_call(registry, db, path, args).map(|(function, args)| (function, caller, args)),
                Err(refusal) => Err(refusal.into()),
            };
            if let Some(end) = journal {
                pin_page_at(&mut call, end);
            }
            if matches!(&call, Ok((function, ..)) if function.time_dependent) {
                time_dependent.insert(key.clone());
            }
            fresh.insert(key);
            Subscription { call, caller_kind, result: None, subscribers: HashSet::new() }
        });
        subscription.subscribers.insert((conn, query_id));
        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    fn unsubscribe(&mut self, conn: ConnectionId, query_id: u32, key: &Key) {
        self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        if let Some(subscription) = self.subscriptions.get_mut(key) {
            subscription.subscribers.remove(&(conn, query_id));
            if subscription.subscribers.is_empty() {
                self.subscriptions.remove(key);
                self.index.remove(key);
                self.touched.remove(key);
                self.fresh.remove(key);
                self.time_dependent.remove(key);
            }
        }
    }

    fn disconnect(&mut self, conn: ConnectionId) {
        let Some(c) = self.connections.remove(&conn) else { return };
        self.dirty.remove(&conn);
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        for (query_id, key) in c.queries {
            self.unsubscribe(conn, query_id, &key);
        }
    }

    /// Queues a message for a connection; a client too far behind to take it is disconnected.
    fn send(conn: ConnectionId, c: &mut Connection, text: String) -> bool {
        match c.out.try_push(Outbound::Text(text)) {
            Ok(()) => true,
            Err(_) => {
                tracing::info!(conn, "client fell too far behind; disconnecting it");
                if let Some(overloaded) = c.overloaded.take() {
                    let _ = overloaded.send(());
                }
                false
            }
        }
    }

    async fn step(&mut self) {
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let snapshot = match self.db.hold_snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::error!(error = %e, "cannot open a snapshot for subscriptions; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        if !self.catch_up_to(snapshot.ts).await {
            // Some commit was missed: start over on a snapshot new enough to include it, re-running everything.
            self.everything_touched = true;
            return;
        }

        let mut to_run = std::mem::take(&mut self.touched);
        to_run.extend(std::mem::take(&mut self.fresh));
        if std::mem::take(&mut self.everything_touched) {
            to_run.extend(self.subscriptions.keys().cloned());
        }
        let to_run: Vec<Key> = to_run.into_iter().filter(|key| self.subscriptions.contains_key(key)).collect();
        // One request in the function log: the step's runs share its snapshot.
        let request = RequestId::next();
        let bodies: Vec<_> = to_run
            .iter()
            .map(|key| {
                let subscription = &self.subscriptions[key];
                let call = match &subscription.call {
                    Ok((function, caller, args)) => {
                        let invocation = Invocation::new(function, subscription.caller_kind, request);
                        Ok((invocation, function.clone(), caller.clone(), args.clone()))
                    }
                    Err(e) => Err(describe(e)),
                };
                // Timed here, on the snapshot's thread: the step runs every body in one job.
                move |tx: &mut jangar_engine::transaction::Transaction<'_>| -> SubscriptionRun {
                    let (invocation, function, caller, args) = call?;
                    let started = Instant::now();
                    let result = match args {
                        Value::Object(args) => function
                            .call(tx, &caller, &jangar_domain::common::Args(args))
                            .map_err(FunctionError::into_client_facing),
                        _ => Err(AppError::new(ErrorCode::InvalidArgument, "Arguments must be an object.").into()),
                    };
                    Ok((invocation, result, started.elapsed()))
                }
            })
            .collect();
        let outcomes = match snapshot.run(bodies).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, "running subscriptions failed; retrying");
                self.touched.extend(to_run);
                return;
            }
        };
        let ts = snapshot.ts;
        drop(snapshot);
        self.stats.queries_run.fetch_add(outcomes.len() as u64, Ordering::Relaxed);

        for (key, outcome) in to_run.into_iter().zip(outcomes) {
            let result = match outcome.value {
                Ok((invocation, result, elapsed)) => {
                    self.executions.record(invocation, elapsed, Outcome::of(&result));
                    match result {
                        Ok(value) => QueryResult::Value(Arc::new(CachedResult::new(value))),
                        Err(e) => {
                            let (message, data) = describe(&e);
                            QueryResult::Error { message, data }
                        }
                    }
                }
                Err((message, data)) => QueryResult::Error { message, data },
            };
            let hash = result_hash(&result);
            let Some(subscription) = self.subscriptions.get_mut(&key) else { continue };
            if subscription.result.is_some() {
                self.stats.query_reruns.fetch_add(1, Ordering::Relaxed);
            }
            self.index.insert(key.clone(), outcome.reads);
            let changed = subscription.result.as_ref().is_none_or(|(_, old)| *old != hash);
            pin_page_end(&mut subscription.call, &result);
            subscription.result = Some((result, hash));
            if changed {
                for (conn, query_id) in &subscription.subscribers {
                    if let Some(c) = self.connections.get_mut(conn) {
                        c.unsent.insert(*query_id);
                        self.dirty.insert(*conn);
                    }
                }
            }
        }
        self.send_transitions(ts);
    }

    /// Takes in every commit up to `ts`, which the snapshot already shows. False
    /// when some commit cannot be accounted for (the stream lagged or stalled).
    async fn catch_up_to(&mut self, ts: Timestamp) -> bool {
        if let Some(commit) = self.held_over.take() {
            if commit.ts > ts {
                self.held_over = Some(commit);
                return true;
            }
            self.apply_commit(&commit);
        }
        while self.processed_ts < ts {
            match tokio::time::timeout(COMMIT_WAIT, self.commits.recv()).await {
                Ok(Ok(commit)) if commit.ts > ts => {
                    self.held_over = Some(commit);
                    return true;
                }
                Ok(Ok(commit)) => self.apply_commit(&commit),
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::warn!(missed, "subscription manager fell behind the commit stream");
                    return false;
                }
                Err(_) => {
                    tracing::warn!(waited = ?COMMIT_WAIT, "a commit the snapshot shows was not announced in time");
                    return false;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return true,
            }
        }
        true
    }

    fn send_transitions(&mut self, ts: Timestamp) {
        let mut overloaded = Vec::new();
        for conn in std::mem::take(&mut self.dirty) {
            let Some(c) = self.connections.get_mut(&conn) else { continue };
            if !c.owed && c.unsent.is_empty() && c.removed.is_empty() {
                continue;
            }
            let end = StateVersion { query_set: c.query_set, identity: c.identity_version, ts: ts.max(c.sent.ts) };
            // Invariant: a Transition starts at the version the client is at (`sent`, the end of
            // the last one it was sent, which only a sent Transition moves) and never goes back.
            debug_assert!(
                end.query_set >= c.sent.query_set && end.identity >= c.sent.identity && end.ts >= c.sent.ts,
                "a Transition would move the client back"
            );
            let mut modifications = Vec::with_capacity(c.unsent.len() + c.removed.len());
            for query_id in c.unsent.drain() {
                let Some(key) = c.queries.get(&query_id) else { continue };
                let Some((result, _)) = self.subscriptions.get(key).and_then(|s| s.result.as_ref()) else { continue };
                let journal = self.subscriptions.get(key).and_then(Subscription::journal);
                modifications.push(modification(query_id, result, journal));
            }
            for query_id in c.removed.drain(..) {
                modifications.push(format!(r#"{{"type":"QueryRemoved","queryId":{query_id}}}"#));
            }
            let text = format!(
                r#"{{"type":"Transition","startVersion":{},"endVersion":{},"modifications":[{}]}}"#,
                version_json(&c.sent),
                version_json(&end),
                modifications.join(",")
            );
            c.owed = false;
            if Self::send(conn, c, text) {
                c.sent = end;
                self.stats.transitions.fetch_add(1, Ordering::Relaxed);
            } else {
                overloaded.push(conn);
            }
        }
        for conn in overloaded {
            self.disconnect(conn);
        }
    }
}

/// After a paginated subscription's first run, its page ends where that run
/// ended (Convex's `endCursor`): documents arriving inside the page then grow it
/// instead of pushing its last documents out of every page.
fn pin_page_end(call: &mut PreparedCall, result: &QueryResult) {
    let QueryResult::Value(cached) = result else { return };
    if let Some(Value::String(end)) = cached.value.as_object().and_then(|page| page.get("continueCursor")) {
        pin_page_at(call, end);
    }
}

/// Pins a paginated call's page to end at `end`, unless it is pinned already.
fn pin_page_at(call: &mut PreparedCall, end: &str) {
    let Ok((_, _, Value::Object(args))) = call else { return };
    let Some(Value::Object(options)) = args.get_mut("paginationOpts") else { return };
    if !options.contains_key("endCursor") {
        options.insert("endCursor".into(), Value::String(end.to_owned()));
    }
}

fn version_json(version: &StateVersion) -> String {
    format!(r#"{{"querySet":{},"identity":{},"ts":"{}"}}"#, version.query_set, version.identity, encode_ts(version.ts))
}

fn modification(query_id: u32, result: &QueryResult, journal: Option<&str>) -> String {
    let journal = Json::from(journal);
    match result {
        QueryResult::Value(value) => format!(
            r#"{{"type":"QueryUpdated","queryId":{query_id},"value":{},"logLines":[],"journal":{journal}}}"#,
            value.json(JsonFormat::Encoded)
        ),
        QueryResult::Error { message, data } => {
            let mut failed = serde_json::json!({
                "type": "QueryFailed", "queryId": query_id, "errorMessage": message, "logLines": [], "journal": journal,
            });
            if let Some(data) = data {
                failed["errorData"] = data.clone();
            }
            failed.to_string()
        }
    }
}

fn result_hash(result: &QueryResult) -> u64 {
    let mut hasher = DefaultHasher::new();
    match result {
        QueryResult::Value(value) => value.json(JsonFormat::Encoded).hash(&mut hasher),
        QueryResult::Error { message, data } => {
            message.hash(&mut hasher);
            data.as_ref().map(|d| d.to_string()).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// A failure as the protocol reports it: a message and, for application errors, data.
pub(crate) fn describe(error: &FunctionError) -> (String, Option<Json>) {
    match error {
        FunctionError::App(app) => (app.message.clone(), Some(app.data().to_json(JsonFormat::Encoded))),
        FunctionError::Engine(e) => {
            tracing::error!(error = %e, "query failed");
            ("Your request couldn't be completed. Try again later.".to_owned(), None)
        }
    }
}

/// Looks the function up and checks its arguments once per subscription.
fn prepare_call(
    registry: &Registry,
    db: &Database,
    path: &str,
    args: &Json,
) -> Result<(Arc<Function>, Value), FunctionError> {
    let function = registry.get(path).ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            format!("Could not find public function for '{}'.", jangar_domain::registry::canonical_path(path)),
        )
    })?;
    if function.kind != Kind::Query {
        return Err(AppError::new(
            ErrorCode::InvalidArgument,
            format!("{} is a {}, not a query.", function.path, function.kind.name()),
        )
        .into());
    }
    let args = check_args(&function, decode_args(args)?, db.schema())?;
    Ok((function, Value::Object(args.0)))
}
