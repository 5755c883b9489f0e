//! One store shared by every request, the sampler and replay jobs.

use dlq_core::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Result, ScanPage, Selection,
    StoredRecord, Submitted, Ticket,
};
use std::sync::{Arc, Mutex, MutexGuard};

/// A store behind a mutex, locked for one store call at a time.
///
/// It implements [`DlqStore`] itself, so a long replay run on a
/// `SharedStore` holds the lock per page (one scan, one commit), not for
/// the whole run: the dashboard stays responsive while a replay runs. Store
/// calls block, so async code calls them from `spawn_blocking`.
pub struct SharedStore<S> {
    inner: Arc<Mutex<S>>,
}

impl<S> Clone for SharedStore<S> {
    fn clone(&self) -> Self {
        SharedStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> SharedStore<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        SharedStore {
            inner: Arc::new(Mutex::new(store)),
        }
    }

    /// Locks the store for a sequence of calls that must not interleave
    /// with others (e.g. a backend-specific replay).
    pub fn lock(&self) -> MutexGuard<'_, S> {
        // A panic while the lock was held leaves the store as the last
        // completed call left it: store calls are atomic, so go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: DlqStore> DlqStore for SharedStore<S> {
    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        self.lock().commit(batch)
    }

    fn capabilities(&self) -> Capabilities {
        self.lock().capabilities()
    }

    // The lock is taken per call: a replay that submits page by page lets
    // API requests in between its pages.
    fn submit(&mut self, batch: Batch<'_>) -> Result<Submitted> {
        self.lock().submit(batch)
    }

    fn completed(&mut self, wait: bool) -> Result<Vec<(Ticket, CommitReport)>> {
        self.lock().completed(wait)
    }

    fn has_destination(&self, name: &str) -> Result<bool> {
        self.lock().has_destination(name)
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        self.lock().scan(selection, after, limit)
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        self.lock().get(dlq, id)
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        self.lock().stats()
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        self.lock().dlqs()
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        self.lock().checkpoint(name)
    }
}
