//! A connection's outgoing messages, in the one order the socket sends them.
//!
//! Two kinds of sender share it, bounded differently:
//! - the subscription manager (Transitions, errors) must never wait on one
//!   slow client, so it only *tries*: past `limit` queued messages the client
//!   counts as not reading and is disconnected;
//! - the connection's mutation pipeline *waits* for room (a permit per queued
//!   response), so a client that sends faster than it reads is slowed down, the
//!   pipeline stops taking its mutations and the socket stops reading them,
//!   instead of being disconnected while it is reading.
//!
//! One queue keeps the order: a MutationResponse is queued before the manager
//! hears the mutation is done, so the Transition that settles it comes after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::close::CloseCode;
use super::manager::SyncStats;

/// What the socket sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(String),
    Close { code: CloseCode, reason: String },
}

/// A queued message, holding its share of the bound it counts against until it is sent (or dropped).
pub(crate) struct Queued {
    pub(crate) message: Outbound,
    share: Share,
}

enum Share {
    Counted(Arc<AtomicUsize>),
    /// Held until the message goes: frees room for the next response.
    Permit {
        _held: OwnedSemaphorePermit,
    },
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Share::Counted(queued) = &self.share {
            queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    responses: Arc<Semaphore>,
    /// Where refusals of a full queue are counted.
    stats: Arc<SyncStats>,
}

/// The queue is full (the client is not reading), or the connection is gone.
#[derive(Debug)]
pub(crate) struct Refused;

impl Outbox {
    /// An outbox holding at most `limit` messages that are tried, and as many mutation responses.
    pub(crate) fn new(limit: usize, stats: Arc<SyncStats>) -> (Outbox, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = limit.max(1);
        let outbox = Outbox { tx, queued: Arc::default(), limit, responses: Arc::new(Semaphore::new(limit)), stats };
        (outbox, rx)
    }

    /// Queues a message if there is room, without waiting.
    pub(crate) fn try_push(&self, message: Outbound) -> Result<(), Refused> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.outbound_dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Refused);
        }
        let queued = Queued { message, share: Share::Counted(self.queued.clone()) };
        self.tx.send(queued).map_err(|_| Refused)
    }

    /// Queues a mutation response once there is room for it.
    pub(crate) async fn push_response(&self, text: String) -> Result<(), Refused> {
        let permit = self.responses.clone().acquire_owned().await.map_err(|_| Refused)?;
        self.tx
            .send(Queued { message: Outbound::Text(text), share: Share::Permit { _held: permit } })
            .map_err(|_| Refused)
    }
}
