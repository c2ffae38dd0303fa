//! Sends the outbox's due requests to Temporal and records each answer in one mutation.
//!
//! A request is claimed (by a mutation, so with PostgreSQL replicas exactly one process holds
//! it) for [`LEASE_MS`]; if its claimant dies, it falls due again and another process sends the
//! same request, which Temporal dedupes. The dispatcher wakes when a commit touches the outbox,
//! when the next request falls due, and every [`IDLE_LOOK`] whatever happens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jangar_domain::error::FunctionError;
use jangar_domain::temporal::{self as outbox, Answer, BridgeSettings, Claimed};
use jangar_engine::database::Database;
use tokio::sync::{Notify, broadcast, watch};

use super::{BridgeStats, Temporal, add, now_ms};

/// Requests claimed at once.
const BATCH: usize = 64;
/// How long a claim holds; far beyond [`super::REQUEST_TIMEOUT`].
const LEASE_MS: f64 = 30_000.0;
/// The longest the dispatcher sleeps with nothing to do.
const IDLE_LOOK: Duration = Duration::from_secs(5);
/// How often the pending gauge is counted.
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// For crash tests only, and only in debug builds: `JANGAR_FAILPOINT=temporal-start-answered`
/// aborts the process after Temporal answered a start and before the answer is recorded.
const FAILPOINT: &str = "temporal-start-answered";

pub(super) async fn run(
    db: Arc<Database>,
    temporal: Arc<Temporal>,
    stats: Arc<BridgeStats>,
    started: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let claimant = claimant();
    let crash_after_start = cfg!(debug_assertions) && std::env::var("JANGAR_FAILPOINT").is_ok_and(|f| f == FAILPOINT);
    let outbox_table = db.schema().table(outbox::TABLE).map(|t| t.number);
    let mut commits = db.subscribe_commits();
    let mut counted = tokio::time::Instant::now() - COUNT_EVERY;
    tracing::info!(temporal = %temporal.config.url, namespace = %temporal.config.namespace, %claimant,
        "sending work orders' workflows to Temporal");
    let settings = temporal.config.settings();
    let adopting = settings.clone();
    match db.mutate(move |tx| outbox::adopt_unsent(tx, &adopting)).await {
        Ok(outcome) if outcome.value > 0 => {
            tracing::info!(orders = outcome.value, "queued the starts of submitted orders that had none");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot look for submitted orders without a start"),
    }
    // Alone on its database (SQLite), this process knows every claim is a dead one's.
    if !db.follows_commit_feed() {
        match db.mutate(outbox::release_claims).await {
            Ok(outcome) if outcome.value > 0 => {
                tracing::info!(requests = outcome.value, "sending again the requests an earlier process had claimed");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot release earlier claims; they wait out their lease"),
        }
    }
    while !*stop.borrow() {
        if counted.elapsed() >= COUNT_EVERY {
            counted = tokio::time::Instant::now();
            if let Ok(outcome) = db.query(outbox::count_pending).await {
                stats.pending.store(outcome.value as u64, Ordering::Relaxed);
            }
        }
        let wait = match db.query(outbox::next_due).await {
            Ok(outcome) => match outcome.value {
                Some(at) if at <= now_ms() => {
                    match dispatch_due(&db, &temporal, &settings, &stats, &claimant, crash_after_start).await {
                        Ok(true) => started.notify_one(),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "cannot claim or record Temporal requests");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    continue;
                }
                Some(at) => Duration::from_millis((at - now_ms()).max(1.0) as u64).min(IDLE_LOOK),
                None => IDLE_LOOK,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the Temporal outbox");
                Duration::from_secs(1)
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                _ = stop.wait_for(|stopping| *stopping) => break,
                commit = commits.recv() => match commit {
                    Ok(commit) if commit.everything
                        || commit.writes.entries.iter().any(|w| Some(w.index.table) == outbox_table) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

/// Claims the due requests, sends them at once, and records every answer as it comes; true if
/// a workflow started (for the mirror to follow). An answer that cannot be recorded is logged:
/// its request is sent again once its claim's lease runs out, and Temporal dedupes it.
async fn dispatch_due(
    db: &Arc<Database>,
    temporal: &Arc<Temporal>,
    settings: &BridgeSettings,
    stats: &Arc<BridgeStats>,
    claimant: &str,
    crash_after_start: bool,
) -> Result<bool, FunctionError> {
    let who = claimant.to_owned();
    let claimed = db.mutate(move |tx| outbox::claim_due(tx, &who, BATCH, LEASE_MS)).await?.value;
    let mut sends = tokio::task::JoinSet::new();
    for request in claimed {
        let (db, temporal, settings, stats) = (db.clone(), temporal.clone(), settings.clone(), stats.clone());
        sends.spawn(async move {
            let answer = temporal.send(&request).await;
            let started = note(&request, &answer, &stats, crash_after_start);
            let workflow = request.workflow_id.clone();
            let recorded = db.mutate(move |tx| outbox::record_answer(tx, &settings, &request, &answer)).await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, %workflow, "cannot record Temporal's answer; the request will be sent again");
            }
            started
        });
    }
    let mut any_started = false;
    while let Some(started) = sends.join_next().await {
        any_started |= started.unwrap_or(false);
    }
    Ok(any_started)
}

/// Logs and counts an answer; true for a started workflow.
fn note(request: &Claimed, answer: &Answer, stats: &BridgeStats, crash_after_start: bool) -> bool {
    match answer {
        Answer::Started { run_id } => {
            if crash_after_start {
                tracing::error!("failpoint {FAILPOINT}: aborting before recording the start");
                std::process::abort();
            }
            tracing::info!(workflow = %request.workflow_id, %run_id, "workflow started");
            add(&stats.sent, 1);
            return true;
        }
        Answer::Done => add(&stats.sent, 1),
        Answer::Refused { message } => {
            tracing::warn!(workflow = %request.workflow_id, kind = %request.kind, %message, "Temporal refused a request");
            add(&stats.dead, 1);
        }
        Answer::Retry { error, retry_in_ms, .. } => {
            tracing::warn!(workflow = %request.workflow_id, kind = %request.kind, attempt = request.attempt,
                retry_in_ms = *retry_in_ms as u64, %error, "no answer from Temporal; the request will be sent again");
            add(&stats.failed_attempts, 1);
        }
    }
    false
}

/// A name for this process in claims: unique across replicas and restarts.
fn claimant() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    format!("jangar-{}-{:08x}", std::process::id(), u32::from_le_bytes(bytes))
}
