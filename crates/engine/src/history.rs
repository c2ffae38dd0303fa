//! The recent commits' write sets, for reading "as of" a timestamp a little
//! in the past (`/api/query_at_ts`). Storage keeps only the latest version of
//! each document, so an old state cannot be read back; but a query's result at
//! `at` equals its result now when no commit since `at` wrote anything it read.
//! This history answers that, for commits of the last minute or so.

use crate::knobs::{HISTORY_COMMITS, HISTORY_RETAIN_NS};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::sets::{Commit, ReadSet};
use super::storage::Timestamp;

/// How a result read now relates to the state at an earlier timestamp.
#[derive(Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Nothing it read changed since: it is the result at that timestamp too.
    Same,
    /// A later commit wrote something it read.
    Changed,
    /// Commits since then are no longer all known.
    TooOld,
    /// The snapshot is newer than the commits announced so far (try again in a moment).
    NotYetKnown,
    /// The timestamp is past the latest commit: no client was given it.
    Future,
}

pub(crate) struct CommitHistory {
    inner: Mutex<Inner>,
}

struct Inner {
    commits: VecDeque<Arc<Commit>>,
    /// Every commit after this timestamp is in `commits`.
    complete_after: Timestamp,
    /// The newest commit announced.
    newest: Timestamp,
}

impl CommitHistory {
    /// An empty history of a database whose last commit is at `latest`.
    pub(crate) fn new(latest: Timestamp) -> CommitHistory {
        CommitHistory { inner: Mutex::new(Inner { commits: VecDeque::new(), complete_after: latest, newest: latest }) }
    }

    pub(crate) fn record(&self, commit: &Arc<Commit>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Commits arrive in timestamp order (the committer's, or the feed's, which reads the log
        // by timestamp); one already known (the feed repeating what was seen) is skipped.
        if commit.ts <= inner.newest {
            return;
        }
        debug_assert!(inner.commits.back().is_none_or(|last| last.ts < commit.ts));
        inner.newest = commit.ts;
        inner.commits.push_back(commit.clone());
        let horizon = commit.ts.saturating_sub(HISTORY_RETAIN_NS);
        while inner.commits.len() > HISTORY_COMMITS || inner.commits.front().is_some_and(|c| c.ts < horizon) {
            let dropped = inner.commits.pop_front().expect("not empty");
            inner.complete_after = dropped.ts;
        }
    }

    /// Whether a result that read `reads` on a snapshot at `now` is also the result at `at`.
    pub(crate) fn as_of(&self, at: Timestamp, now: Timestamp, reads: &ReadSet) -> AsOf {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if at > now {
            return AsOf::Future;
        }
        if at == now {
            return AsOf::Same;
        }
        if at < inner.complete_after {
            return AsOf::TooOld;
        }
        if inner.newest < now {
            return AsOf::NotYetKnown;
        }
        let since = inner.commits.iter().filter(|c| c.ts > at && c.ts <= now);
        if since.into_iter().any(|c| c.touches(reads)) { AsOf::Changed } else { AsOf::Same }
    }
}
