//! Follows every open run the bridge started, by long-polling its workflow's history, and
//! applies what happens there: a worker taking the first task moves the run to `running`, the
//! close event to its final status. Reading the history from its start, rather than waiting for
//! news, makes a restart (or a replica taking over) a reconciliation: a workflow that closed
//! while nobody followed it shows its close event on the first read.
//!
//! Every [`RECONCILE_EVERY`] (and when the local dispatcher started a workflow) the open runs
//! are listed again and each one without a follower gets one. With several replicas each
//! follows every open run; applying an outcome twice changes nothing (a final run stays final).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jangar_domain::temporal::{self as bridge, Closed, OpenRun};
use jangar_engine::database::Database;
use jangar_engine::id::DocumentId;
use serde_json::Value as Json;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use super::{BridgeStats, Ending, HistoryError, HistoryFilter, Temporal, ending};

const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// History long polls open at once. Temporal caps a namespace's concurrent polls (1,200 on the
/// dev server, answering 429 beyond), and workers need some of them.
const POLLS_AT_ONCE: usize = 500;
/// The longest wait between attempts to read a history that failed.
const MAX_RETRY: Duration = Duration::from_secs(30);

pub(super) async fn run(
    db: Arc<Database>,
    temporal: Arc<Temporal>,
    stats: Arc<BridgeStats>,
    started: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut followers: HashMap<DocumentId, JoinHandle<()>> = HashMap::new();
    let polls = Arc::new(Semaphore::new(POLLS_AT_ONCE));
    while !*stop.borrow() {
        match db.query(bridge::open_runs).await {
            Ok(outcome) => {
                // A run closed here (a worker reported its end) needs no follower.
                let open: std::collections::HashSet<DocumentId> = outcome.value.iter().map(|r| r.run).collect();
                followers.retain(|run, follower| {
                    let keep = open.contains(run) && !follower.is_finished();
                    if !keep {
                        follower.abort();
                    }
                    keep
                });
                for run in outcome.value {
                    if !followers.contains_key(&run.run) {
                        let id = run.run;
                        let follower =
                            follow(db.clone(), temporal.clone(), stats.clone(), polls.clone(), run, stop.clone());
                        followers.insert(id, tokio::spawn(follower));
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list the open runs to follow"),
        }
        stats.followed.store(followers.len() as u64, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            () = started.notified() => {}
            _ = stop.wait_for(|stopping| *stopping) => {}
        }
    }
    for (_, follower) in followers {
        let _ = follower.await;
    }
}

/// Follows one run to its end (or until `stop`): every event until a worker takes the first
/// task, then only the close event, so a long workflow costs one idle long poll.
async fn follow(
    db: Arc<Database>,
    temporal: Arc<Temporal>,
    stats: Arc<BridgeStats>,
    polls: Arc<Semaphore>,
    run: OpenRun,
    mut stop: watch::Receiver<bool>,
) {
    let mut run_id = run.temporal_run_id.clone();
    let mut filter = HistoryFilter::All;
    let mut token: Option<String> = None;
    let mut failures = 0u32;
    'poll: loop {
        let page = tokio::select! {
            page = async {
                let _poll = polls.acquire().await;
                temporal.history(&run.workflow_id, &run_id, filter, token.as_deref()).await
            } => page,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        let (events, next) = match page {
            Ok(page) => {
                failures = 0;
                page
            }
            Err(HistoryError::NotFound) => {
                apply(&db, &stats, run.run, &Closed::NotFound, None, &mut stop).await;
                return;
            }
            Err(HistoryError::Other(error)) => {
                // A long poll that outlived the client's timeout fails once; more in a row is news.
                failures += 1;
                let wait = Duration::from_millis(500 * 2u64.pow(failures.min(6))).min(MAX_RETRY);
                if failures > 1 {
                    tracing::warn!(workflow = %run.workflow_id, %error, retry_in = ?wait, "cannot read the workflow's history");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue 'poll,
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
            }
        };
        token = next;
        for event in &events {
            if matches!(filter, HistoryFilter::All) && event["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_STARTED" {
                let worker = event["workflowTaskStartedEventAttributes"]["identity"].as_str().map(str::to_owned);
                let id = run.run;
                if let Err(e) = db.mutate(move |tx| bridge::mark_running(tx, id, worker.as_deref())).await {
                    tracing::error!(error = %e, run = %id, "cannot record that the workflow runs");
                }
                // Nothing but the end matters now.
                filter = HistoryFilter::Close;
                token = None;
            }
            match ending(event) {
                Some(Ending::Closed(closed)) => {
                    apply(&db, &stats, run.run, &closed, Some(event), &mut stop).await;
                    return;
                }
                Some(Ending::ContinuedAs(next_run)) if !next_run.is_empty() => {
                    let id = run.run;
                    let recorded = next_run.clone();
                    if let Err(e) = db.mutate(move |tx| bridge::continue_as(tx, id, &recorded)).await {
                        tracing::error!(error = %e, run = %id, "cannot record the workflow's new run");
                    }
                    (run_id, filter, token) = (next_run, HistoryFilter::All, None);
                    continue 'poll;
                }
                _ => {}
            }
        }
        if events.is_empty() && token.is_none() {
            // Nothing, and nothing to wait on: do not ask again at once.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stopping| *stopping) => return,
            }
        }
    }
}

/// Records a workflow's end on its run, retrying while the database cannot take it.
/// Gives up only when the process stops (the next start applies it then).
async fn apply(
    db: &Arc<Database>,
    stats: &BridgeStats,
    run: DocumentId,
    closed: &Closed,
    event: Option<&Json>,
    stop: &mut watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        let outcome = closed.clone();
        match db.mutate(move |tx| bridge::mark_closed(tx, run, &outcome)).await {
            Ok(_) => break,
            Err(e) => {
                tracing::error!(error = %e, %run, retry_in = ?wait, "cannot record the workflow's end");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    }
    if let Some(closed_at) = event.and_then(|e| e["eventTime"].as_str()).and_then(rfc3339_ms) {
        let lag = (super::now_ms() - closed_at).max(0.0);
        stats.mirror_lag_ms.store(lag as u64, Ordering::Relaxed);
    }
}

/// Milliseconds since the epoch of an RFC 3339 time, as Temporal writes its event times.
fn rfc3339_ms(text: &str) -> Option<f64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e6)
}
