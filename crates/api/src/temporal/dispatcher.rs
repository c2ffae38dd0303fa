//! Sends the outbox's due requests to Temporal and records each answer in one mutation.
//!
//! A request is claimed (by a mutation, so with PostgreSQL replicas exactly one process holds
//! it) for [`LEASE_MS`]; if its claimant dies, it falls due again and another process sends the
//! same request, which Temporal dedupes. Up to [`IN_FLIGHT`] requests are out at once, each
//! answer recorded as it comes. The dispatcher wakes when a commit touches the outbox, when an
//! answer frees room, when the next request falls due, and every [`IDLE_LOOK`] whatever happens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jangar_domain::error::FunctionError;
use jangar_domain::temporal::{self as outbox, Answer, BridgeSettings, Claimed};
use jangar_engine::database::Database;
use tokio::sync::{Notify, broadcast, watch};

use super::{BridgeStats, Temporal, add, now_ms};

/// Requests out to Temporal at once (each claim takes what room is left).
const IN_FLIGHT: usize = 64;
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
    let mut sends = Sends {
        db: db.clone(),
        temporal: temporal.clone(),
        settings,
        stats: stats.clone(),
        started,
        claimant,
        crash_after_start,
        in_flight: tokio::task::JoinSet::new(),
    };
    while !*stop.borrow() {
        while sends.in_flight.try_join_next().is_some() {}
        if counted.elapsed() >= COUNT_EVERY {
            counted = tokio::time::Instant::now();
            if let Ok(outcome) = db.query(outbox::count_pending).await {
                stats.pending.store(outcome.value as u64, Ordering::Relaxed);
            }
        }
        let wait = match db.query(outbox::next_due).await {
            Ok(outcome) => match outcome.value {
                // Sending as many as may be out at once: wait for one of them to be answered.
                Some(at) if at <= now_ms() && sends.in_flight.len() >= IN_FLIGHT => {
                    sends.in_flight.join_next().await;
                    continue;
                }
                Some(at) if at <= now_ms() => {
                    if let Err(e) = sends.claim_and_send(IN_FLIGHT - sends.in_flight.len()).await {
                        tracing::error!(error = %e, "cannot claim Temporal requests");
                        tokio::time::sleep(Duration::from_secs(1)).await;
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
                // An answer frees room for the next due request.
                Some(_) = sends.in_flight.join_next(), if !sends.in_flight.is_empty() => break,
                commit = commits.recv() => match commit {
                    Ok(commit) if commit.everything
                        || commit.writes.entries.iter().any(|w| Some(w.index.table) == outbox_table) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    // The database is gone: nothing can be claimed or recorded any more.
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
    // Requests out now get their answers recorded (a send waits at most REQUEST_TIMEOUT).
    while sends.in_flight.join_next().await.is_some() {}
}

/// What sending a request needs, and the sends under way.
struct Sends {
    db: Arc<Database>,
    temporal: Arc<Temporal>,
    settings: BridgeSettings,
    stats: Arc<BridgeStats>,
    /// Told of every workflow started, so the mirror follows it at once.
    started: Arc<Notify>,
    claimant: String,
    crash_after_start: bool,
    in_flight: tokio::task::JoinSet<()>,
}

impl Sends {
    /// Claims up to `room` due requests and sends each on its own task, which records the answer
    /// as it comes. An answer that cannot be recorded is logged: its request is sent again once
    /// its claim's lease runs out, and Temporal dedupes it.
    async fn claim_and_send(&mut self, room: usize) -> Result<(), FunctionError> {
        let who = self.claimant.clone();
        let claimed = self.db.mutate(move |tx| outbox::claim_due(tx, &who, room, LEASE_MS)).await?.value;
        for request in claimed {
            let (db, temporal, settings) = (self.db.clone(), self.temporal.clone(), self.settings.clone());
            let (stats, started, crash_after_start) =
                (self.stats.clone(), self.started.clone(), self.crash_after_start);
            self.in_flight.spawn(async move {
                let answer = temporal.send(&request).await;
                let is_start = note(&request, &answer, &stats, crash_after_start);
                let workflow = request.workflow_id.clone();
                let recorded = db.mutate(move |tx| outbox::record_answer(tx, &settings, &request, &answer)).await;
                match recorded {
                    Ok(_) if is_start => started.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, %workflow, "cannot record Temporal's answer; the request will be sent again");
                    }
                }
            });
        }
        Ok(())
    }
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
