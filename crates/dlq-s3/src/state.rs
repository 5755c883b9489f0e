//! The store's state: what the commit log says, folded.
//!
//! Data objects are immutable and hold only envelopes; which records exist,
//! where, and how they stand lives in the commit log (one JSON entry per
//! commit, [`LogEntry`]) and in snapshots of its fold ([`State`]). Records
//! are kept in log order, which is the order of every scan.

use crate::errors::corrupt;
use chrono::{DateTime, Utc};
use dlq_core::store::{Result, Status, can_settle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One commit, as written to `_dlq_log/<version>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    /// Its place in the log: one more than the entry before.
    pub version: u64,
    /// The store instance that wrote it (a UUID), for audits.
    pub writer: String,
    /// When it was committed, ms since the epoch: the stored time of its
    /// records and the settled time of its settlements.
    pub committed_at_ms: i64,
    /// New data objects, one per DLQ.
    #[serde(default)]
    pub objects: Vec<ObjectEntry>,
    /// Settlements that changed a record's status.
    #[serde(default)]
    pub settles: Vec<SettleEntry>,
    /// The checkpoint set by the commit.
    #[serde(default)]
    pub checkpoint: Option<CheckpointEntry>,
}

/// A data object of a commit: its records, one per line, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectEntry {
    /// The DLQ.
    pub dlq: String,
    /// The object key.
    pub key: String,
    /// The records, line by line.
    pub records: Vec<RecordEntry>,
}

/// What the state keeps of an appended record (the rest is in its object).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordEntry {
    /// The record id.
    pub id: String,
    /// Its initial status.
    pub status: Status,
    /// When it failed, ms since the epoch.
    pub failed_at_ms: i64,
    /// Its source partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

/// A settlement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SettleEntry {
    /// The DLQ.
    pub dlq: String,
    /// The record id.
    pub id: String,
    /// The new status.
    pub status: Status,
}

/// A checkpoint set by a commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointEntry {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A record of the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The DLQ.
    pub dlq: String,
    /// The id.
    pub id: String,
    /// Index of its object in [`State::objects`].
    pub object: usize,
    /// Its line in the object.
    pub line: usize,
    /// Its status.
    pub status: Status,
    /// When it was stored, ms.
    pub stored_at_ms: i64,
    /// When it was settled, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at_ms: Option<i64>,
    /// When it failed, ms.
    pub failed_at_ms: i64,
    /// Its source partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

/// The fold of the log up to [`State::version`]; also the snapshot format.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The last log entry applied (0: none).
    pub version: u64,
    /// Data object keys, in log order.
    pub objects: Vec<String>,
    /// Records, in log order (the scan order; a cursor is a position here).
    pub records: Vec<Record>,
    /// Checkpoints by name.
    pub checkpoints: BTreeMap<String, String>,
    /// `(dlq, id)` to position in `records`.
    #[serde(skip)]
    index: HashMap<(String, String), usize>,
}

impl State {
    /// The record of `(dlq, id)`.
    pub(crate) fn find(&self, dlq: &str, id: &str) -> Option<usize> {
        // A tuple key of borrowed strs would need no allocation, but
        // HashMap cannot look up (String, String) by (&str, &str).
        self.index.get(&(dlq.to_owned(), id.to_owned())).copied()
    }

    /// Applies the next log entry.
    pub(crate) fn apply(&mut self, entry: &LogEntry) -> Result<()> {
        if entry.version != self.version + 1 {
            return Err(corrupt(format!(
                "commit log: entry {} follows {} (an entry is missing)",
                entry.version, self.version
            )));
        }
        let at = entry.committed_at_ms;
        for object in &entry.objects {
            let o = self.objects.len();
            self.objects.push(object.key.clone());
            for (line, r) in object.records.iter().enumerate() {
                let key = (object.dlq.clone(), r.id.clone());
                if self.index.contains_key(&key) {
                    // A writer deduplicates before it writes; should two
                    // racing writers both have appended an id, the first
                    // in the log wins, as for any append.
                    continue;
                }
                self.index.insert(key, self.records.len());
                self.records.push(Record {
                    dlq: object.dlq.clone(),
                    id: r.id.clone(),
                    object: o,
                    line,
                    status: r.status,
                    stored_at_ms: at,
                    settled_at_ms: None,
                    failed_at_ms: r.failed_at_ms,
                    partition: r.partition,
                });
            }
        }
        for s in &entry.settles {
            if let Some(i) = self.find(&s.dlq, &s.id) {
                let r = &mut self.records[i];
                if can_settle(r.status, s.status) {
                    r.status = s.status;
                    r.settled_at_ms = Some(at);
                }
            }
        }
        if let Some(c) = &entry.checkpoint {
            self.checkpoints.insert(c.name.clone(), c.value.clone());
        }
        self.version = entry.version;
        Ok(())
    }

    /// The state from a snapshot's JSON.
    pub(crate) fn from_snapshot(json: &[u8]) -> Result<State> {
        let mut state: State =
            serde_json::from_slice(json).map_err(|e| corrupt(format!("state snapshot: {e}")))?;
        state.index = state
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.dlq.clone(), r.id.clone()), i))
            .collect();
        Ok(state)
    }

    /// The snapshot's JSON.
    pub(crate) fn to_snapshot(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| corrupt(format!("encoding a snapshot: {e}")))
    }
}

/// Milliseconds since the epoch as a time.
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
