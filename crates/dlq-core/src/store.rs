//! The [`DlqStore`] trait: what every DLQ backend provides.
//!
//! A store holds dead letters in named DLQs (`dlq.rss.events`, …). A record
//! is *pending* until it is *settled*: replayed, discarded, archived or
//! parked. The
//! contract every backend honours:
//!
//! * [`DlqStore::commit`] is atomic and durable when it returns: the appended
//!   records, the settlements and the checkpoint of one [`Batch`] are all
//!   there after a crash, or none are.
//! * Appends are idempotent by `(dlq, id)`: a retried write never creates a
//!   second record (the first one wins).
//! * Settling only moves a record out of the pending (or parked) set; settling
//!   it again changes nothing. Records are never deleted by settling.
//! * [`DlqStore::stats`] is cheap: it reads counters and indexes, not records.
//!
//! A store may also take **outputs** (records it writes to another topic or
//! queue, e.g. replayed records) and **source positions** (a processor's
//! consumer offsets) into the same atomic commit; [`DlqStore::capabilities`]
//! says which. That is what exactly-once replays and processors are built
//! on: one engine, whatever the backend. A store refuses what it cannot hold
//! in its commit with [`StoreError::Unsupported`], never by writing it
//! outside the commit. The rules are checked by `dlq_core::conformance`;
//! the design is in docs/store-contract.md.

use crate::envelope::{ClaimError, DeadLetter, EncodeError, Header};
use crate::filter::Filter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the DLQ, waiting to be looked at, fixed and replayed.
    Pending,
    /// Replayed and delivered (or returned to its DLQ as a new record).
    Replayed,
    /// Deliberately dropped by an operator.
    Discarded,
    /// Failed again too often; kept out of replays until someone looks.
    Parked,
    /// Moved to an archive store (`dlq archive`) before retention deleted
    /// it; its copy there lives on, this one is settled.
    Archived,
}

impl Status {
    /// Every status, in a stable order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Replayed,
        Status::Discarded,
        Status::Parked,
        Status::Archived,
    ];

    /// The status as stored and shown (`pending`, `replayed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Replayed => "replayed",
            Status::Discarded => "discarded",
            Status::Parked => "parked",
            Status::Archived => "archived",
        }
    }

    /// Parses [`Status::as_str`] back.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record to append to a DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The DLQ to append to, e.g. `dlq.rss.events`.
    pub dlq: String,
    /// The dead letter.
    pub letter: DeadLetter,
    /// The initial status: `Pending`, or `Parked` for a record that failed
    /// too many replays.
    pub status: Status,
}

/// A record to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The DLQ holding the record.
    pub dlq: String,
    /// The record id.
    pub id: String,
    /// The new status.
    pub outcome: Status,
}

/// A record a store writes to a destination outside its DLQs (a topic, a
/// queue) in the same commit as the rest of a [`Batch`]: a replayed record,
/// or a processor's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Where it goes: a topic or queue name of the store's system.
    pub destination: String,
    /// The partition, where the destination has partitions and the caller
    /// chose one (`None`: the store's default placement by key).
    pub partition: Option<i32>,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// The record value; `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record headers, in order.
    pub headers: Vec<Header>,
}

/// A consumer position committed with a [`Batch`]: the next offset a
/// consumer group reads from one partition of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The consumer group.
    pub group: String,
    /// The source topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read (one past the last one done).
    pub next_offset: i64,
}

/// What a store can take into one commit besides its own records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Batch::outputs`] commit atomically with the rest of the batch
    /// (exactly once: they are visible exactly when the batch is).
    pub outputs: bool,
    /// [`Batch::outputs`] are written, and acknowledged by their
    /// destination, before the rest of the batch (at least once: a crash
    /// in between leaves them delivered while their records are still
    /// pending, so a replay run again delivers them again; never a loss).
    /// Implied by `outputs`.
    pub outputs_before_commit: bool,
    /// [`Batch::positions`] commit atomically with the rest of the batch.
    pub positions: bool,
}

impl Capabilities {
    /// Whether the store takes [`Batch::outputs`] at all (atomically or
    /// written before the rest of the batch).
    pub fn takes_outputs(&self) -> bool {
        self.outputs || self.outputs_before_commit
    }
}

/// Identifies a commit started by [`DlqStore::submit`], to match it with
/// its completion in [`DlqStore::completed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What [`DlqStore::submit`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Committed before `submit` returned.
    Done(CommitReport),
    /// Started; [`DlqStore::completed`] reports it once durable.
    Pending(Ticket),
}

/// One atomic unit of work on a store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Batch<'a> {
    /// Records to append (deduplicated by `(dlq, id)`).
    pub append: &'a [Entry],
    /// Records to settle.
    pub settle: &'a [Settle],
    /// A named position to record with the batch (e.g. a processor's input
    /// offset), so that resuming starts right after what was committed.
    pub checkpoint: Option<(&'a str, &'a str)>,
    /// Records to write to destinations outside the DLQs, visible exactly
    /// when the rest of the batch is (needs [`Capabilities::outputs`]).
    pub outputs: &'a [Output],
    /// Consumer positions to commit with the batch (needs
    /// [`Capabilities::positions`]).
    pub positions: &'a [SourcePosition],
}

impl Batch<'_> {
    /// Refuses the parts of the batch a store with `capabilities` cannot
    /// commit atomically; `backend` names the store in the error.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] naming what the store cannot take.
    pub fn check_supported(&self, capabilities: Capabilities, backend: &'static str) -> Result<()> {
        if !self.outputs.is_empty() && !capabilities.takes_outputs() {
            return Err(StoreError::Unsupported {
                backend,
                what: "outputs (records to other destinations) in a commit",
            });
        }
        if !self.positions.is_empty() && !capabilities.positions {
            return Err(StoreError::Unsupported {
                backend,
                what: "consumer positions in a commit",
            });
        }
        Ok(())
    }
}

/// What a commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CommitReport {
    /// Records newly appended.
    pub appended: usize,
    /// Appends skipped because the `(dlq, id)` was already there.
    pub duplicates: usize,
    /// Records whose status changed.
    pub settled: usize,
}

/// A stored record with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The DLQ holding it.
    pub dlq: String,
    /// Its status.
    pub status: Status,
    /// When the store received it.
    pub stored_at: DateTime<Utc>,
    /// When it was settled, if it was.
    pub settled_at: Option<DateTime<Utc>>,
    /// The dead letter, claim checks resolved.
    pub letter: DeadLetter,
}

/// Which records a scan returns.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this DLQ (all when `None`).
    pub dlq: Option<String>,
    /// Only these statuses (pending only when empty).
    pub statuses: Vec<Status>,
    /// Only records that match.
    pub filter: Option<Filter>,
}

impl Selection {
    /// The pending records of one DLQ, or of all.
    pub fn pending(dlq: Option<&str>) -> Self {
        Selection {
            dlq: dlq.map(str::to_owned),
            ..Selection::default()
        }
    }

    /// Whether a record's status is selected.
    pub fn wants_status(&self, status: Status) -> bool {
        if self.statuses.is_empty() {
            status == Status::Pending
        } else {
            self.statuses.contains(&status)
        }
    }

    /// Whether a stored record is selected (DLQ, status and filter).
    pub fn matches(&self, record: &StoredRecord) -> bool {
        self.dlq.as_deref().is_none_or(|d| d == record.dlq)
            && self.wants_status(record.status)
            && self.filter.as_ref().is_none_or(|f| f.matches(record))
    }
}

/// An opaque position in a scan, to resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub String);

/// One page of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// The records, in store order.
    pub records: Vec<StoredRecord>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Cursor>,
}

/// Pending records of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStats {
    /// The source partition (`-1` where the source had none); on a store
    /// whose DLQs have partitions of their own (Kafka), the DLQ's
    /// partition, which dlq's writers choose as the source partition
    /// (modulo the DLQ's partition count), so that the two agree.
    pub partition: i32,
    /// Pending records from it.
    pub pending: u64,
}

/// The size of one DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqStats {
    /// The DLQ name.
    pub dlq: String,
    /// Records waiting.
    pub pending: u64,
    /// Records parked after too many failed replays.
    pub parked: u64,
    /// Records replayed.
    pub replayed: u64,
    /// Records discarded.
    pub discarded: u64,
    /// Records moved to an archive store.
    pub archived: u64,
    /// Every record the DLQ ever received.
    pub total: u64,
    /// When the oldest pending record failed.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Pending records per partition (see [`PartitionStats`]), those with
    /// any, in partition order.
    pub partitions: Vec<PartitionStats>,
}

impl DlqStats {
    /// Empty stats for a DLQ.
    pub fn empty(dlq: &str) -> Self {
        DlqStats {
            dlq: dlq.to_owned(),
            pending: 0,
            parked: 0,
            replayed: 0,
            discarded: 0,
            archived: 0,
            total: 0,
            oldest_pending_at: None,
            partitions: Vec::new(),
        }
    }

    /// Age of the oldest pending record at `now`.
    pub fn oldest_pending_age(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.oldest_pending_at.map(|t| now - t)
    }
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed; `retryable` says whether the same call may work later.
    #[error("{backend} store: {message}")]
    Backend {
        /// Which backend (`sqlite`, `kafka`, `memory`).
        backend: &'static str,
        /// What went wrong.
        message: String,
        /// Whether a retry may succeed (busy, unreachable) or not (corrupt, full).
        retryable: bool,
    },
    /// A claim-checked part could not be restored.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// A record could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store cannot take this into an atomic commit (see
    /// [`Capabilities`]); nothing was written.
    #[error("the {backend} store cannot commit {what} atomically")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// What it cannot take.
        what: &'static str,
    },
    /// The store URL is not understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A dead letter queue backend.
pub trait DlqStore {
    /// Applies one batch atomically; durable when it returns. A batch with
    /// outputs or positions the store cannot take (see
    /// [`DlqStore::capabilities`]) fails with [`StoreError::Unsupported`]
    /// and writes nothing.
    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport>;

    /// What the store can take into a commit besides its own records.
    /// Default: nothing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Starts a commit of `batch` and may return before it is durable, so
    /// that a caller can prepare the next batch meanwhile (a replay reads
    /// its next page while the last one travels). Submitted batches are
    /// applied in order. A store may commit at once
    /// ([`Submitted::Done`]), which is the default; one that pipelines
    /// returns [`Submitted::Pending`] and reports the batch in
    /// [`DlqStore::completed`]. Any other call that writes ([`DlqStore::commit`])
    /// first completes what was submitted.
    ///
    /// # Errors
    ///
    /// As [`DlqStore::commit`]; nothing of this batch is written then.
    fn submit(&mut self, batch: Batch<'_>) -> Result<Submitted> {
        self.commit(batch).map(Submitted::Done)
    }

    /// The submitted batches that became durable since the last call,
    /// oldest first; with `wait`, completes every batch submitted so far
    /// before returning. Default: none pending.
    ///
    /// # Errors
    ///
    /// A submitted batch failed: it and every batch submitted after it
    /// are not applied (outputs written before the commit, see
    /// [`Capabilities::outputs_before_commit`], may have been delivered
    /// all the same); those reported before stay applied.
    fn completed(&mut self, wait: bool) -> Result<Vec<(Ticket, CommitReport)>> {
        let _ = wait;
        Ok(Vec::new())
    }

    /// Whether [`Output::destination`] `name` exists (a topic, a queue),
    /// so that a replay can refuse a missing target before it writes
    /// anything. Default: no destination exists.
    fn has_destination(&self, name: &str) -> Result<bool> {
        let _ = name;
        Ok(false)
    }

    /// One page of the records selected, after `after`, at most `limit`.
    fn scan(&self, selection: &Selection, after: Option<&Cursor>, limit: usize)
    -> Result<ScanPage>;

    /// One record by DLQ and id, whatever its status.
    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>>;

    /// The size of every DLQ.
    fn stats(&self) -> Result<Vec<DlqStats>>;

    /// The names of the DLQs this store holds.
    fn dlqs(&self) -> Result<Vec<String>>;

    /// A checkpoint recorded by [`Batch::checkpoint`].
    fn checkpoint(&self, name: &str) -> Result<Option<String>>;

    /// Appends records (idempotent by `(dlq, id)`).
    fn append(&mut self, entries: &[Entry]) -> Result<CommitReport> {
        self.commit(Batch {
            append: entries,
            ..Batch::default()
        })
    }

    /// Settles records of one DLQ with an outcome.
    fn settle(&mut self, dlq: &str, ids: &[String], outcome: Status) -> Result<CommitReport> {
        let settle: Vec<Settle> = ids
            .iter()
            .map(|id| Settle {
                dlq: dlq.to_owned(),
                id: id.clone(),
                outcome,
            })
            .collect();
        self.commit(Batch {
            settle: &settle,
            ..Batch::default()
        })
    }

    /// Every selected record, page by page.
    fn scan_all<'s>(&'s self, selection: &'s Selection, page_size: usize) -> ScanAll<'s, Self>
    where
        Self: Sized,
    {
        ScanAll {
            store: self,
            selection,
            page_size: page_size.max(1),
            cursor: None,
            buffer: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

/// Iterator over every selected record; see [`DlqStore::scan_all`].
pub struct ScanAll<'s, S: DlqStore> {
    store: &'s S,
    selection: &'s Selection,
    page_size: usize,
    cursor: Option<Cursor>,
    buffer: std::collections::VecDeque<StoredRecord>,
    done: bool,
}

impl<S: DlqStore> Iterator for ScanAll<'_, S> {
    type Item = Result<StoredRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            match self
                .store
                .scan(self.selection, self.cursor.as_ref(), self.page_size)
            {
                Ok(page) => {
                    self.done = page.next.is_none();
                    self.cursor = page.next;
                    self.buffer.extend(page.records);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Whether `to` is a legal move from `from`: only pending records settle,
/// and a parked record can still be replayed, discarded or archived on
/// purpose. Replayed, discarded and archived are final.
pub fn can_settle(from: Status, to: Status) -> bool {
    match (from, to) {
        (Status::Pending, Status::Pending) => false,
        (Status::Pending, _) => true,
        (Status::Parked, Status::Replayed | Status::Discarded | Status::Archived) => true,
        _ => false,
    }
}
