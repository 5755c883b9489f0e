//! The ledger: what a Kafka log cannot say about its own records.
//!
//! A DLQ topic is an immutable log, so "this record was replayed" is written
//! elsewhere: to one compacted topic (`dlq.ledger` by default) whose latest
//! value per key is the truth. Three kinds of entries share it:
//!
//! | key | value |
//! |---|---|
//! | `<dlq>/<id>` | `{"dlq","id","outcome","dlq_partition","dlq_offset","at"}`: the record's status |
//! | `checkpoint/<name>` | `{"checkpoint","value","at"}`: a [`Batch`](dlq_core::store::Batch) checkpoint |
//! | `blob/<sha256>` | `{"blob","size","chunks":[[partition, offset], …],"at"}`: where a claim-check blob lies in the blob topic |
//!
//! A record entry names the DLQ partition and offset it settles, so it
//! applies to that copy only: a record that expired from its topic and was
//! appended again with the same id starts pending, and a ledger entry never
//! settles a different record by accident. A record without an entry is
//! pending. DLQ names cannot contain `/`, so the keys never collide (the
//! store refuses DLQs named `checkpoint` or `blob`).
//!
//! Entries are JSON so that `kcat -C -t dlq.ledger` is readable; unknown or
//! malformed entries (written by something else) are skipped with a warning,
//! never fatal. A `null` value (a tombstone) deletes the key.

use chrono::{DateTime, Utc};
use dlq_core::store::Status;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Key prefix of checkpoint entries.
pub const CHECKPOINT_PREFIX: &str = "checkpoint/";
/// Key prefix of blob locator entries.
pub const BLOB_PREFIX: &str = "blob/";

/// The status of one DLQ record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// The DLQ topic.
    pub dlq: String,
    /// The record id.
    pub id: String,
    /// Its status.
    pub outcome: Status,
    /// The DLQ partition holding the record.
    pub dlq_partition: i32,
    /// The record's offset in that partition.
    pub dlq_offset: i64,
    /// When the status was written.
    pub at: DateTime<Utc>,
}

/// A named checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// The checkpoint name.
    pub checkpoint: String,
    /// Its value.
    pub value: String,
    /// When it was written.
    pub at: DateTime<Utc>,
}

/// Where a claim-check blob's chunks are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Hex SHA-256 of the whole blob.
    pub blob: String,
    /// Its size in bytes.
    pub size: u64,
    /// `(partition, offset)` of each chunk in the blob topic, in order.
    pub chunks: Vec<(i32, i64)>,
    /// When it was written.
    pub at: DateTime<Utc>,
}

/// One ledger value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LedgerValue {
    /// A record status.
    Record(RecordEntry),
    /// A checkpoint.
    Checkpoint(CheckpointEntry),
    /// A blob locator.
    Blob(BlobEntry),
}

impl LedgerValue {
    /// The compaction key of this value.
    pub fn key(&self) -> String {
        match self {
            LedgerValue::Record(r) => record_key(&r.dlq, &r.id),
            LedgerValue::Checkpoint(c) => format!("{CHECKPOINT_PREFIX}{}", c.checkpoint),
            LedgerValue::Blob(b) => format!("{BLOB_PREFIX}{}", b.blob),
        }
    }

    /// The JSON value written to the ledger topic.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The key of a record's ledger entry.
pub fn record_key(dlq: &str, id: &str) -> String {
    format!("{dlq}/{id}")
}

/// What the ledger says about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    pub outcome: Status,
    pub partition: i32,
    pub offset: i64,
    pub at: DateTime<Utc>,
}

/// The ledger as read so far: latest value per key.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    records: HashMap<String, HashMap<String, Settled>>,
    checkpoints: HashMap<String, String>,
    blobs: HashMap<String, BlobEntry>,
}

impl Ledger {
    /// Applies one ledger message (in log order). Returns a description of
    /// what was wrong with a malformed message; the caller logs it.
    pub fn apply_message(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let Some(value) = value else {
            let key = key
                .and_then(|k| std::str::from_utf8(k).ok())
                .ok_or("tombstone without a UTF-8 key")?;
            self.delete(key);
            return Ok(());
        };
        let parsed: LedgerValue =
            serde_json::from_slice(value).map_err(|e| format!("not a ledger entry: {e}"))?;
        self.apply(parsed);
        Ok(())
    }

    /// Applies one entry.
    pub fn apply(&mut self, value: LedgerValue) {
        match value {
            LedgerValue::Record(r) => {
                self.records.entry(r.dlq).or_default().insert(
                    r.id,
                    Settled {
                        outcome: r.outcome,
                        partition: r.dlq_partition,
                        offset: r.dlq_offset,
                        at: r.at,
                    },
                );
            }
            LedgerValue::Checkpoint(c) => {
                self.checkpoints.insert(c.checkpoint, c.value);
            }
            LedgerValue::Blob(b) => {
                self.blobs.insert(b.blob.clone(), b);
            }
        }
    }

    fn delete(&mut self, key: &str) {
        if let Some(name) = key.strip_prefix(CHECKPOINT_PREFIX) {
            self.checkpoints.remove(name);
        } else if let Some(sha) = key.strip_prefix(BLOB_PREFIX) {
            self.blobs.remove(sha);
        } else if let Some((dlq, id)) = key.split_once('/')
            && let Some(m) = self.records.get_mut(dlq)
        {
            m.remove(id);
        }
    }

    /// The status of the record `id` stored at `partition`/`offset` of
    /// `dlq`, with when it was settled: pending unless an entry names
    /// exactly this copy.
    pub fn status(
        &self,
        dlq: &str,
        id: &str,
        partition: i32,
        offset: i64,
    ) -> (Status, Option<DateTime<Utc>>) {
        match self.records.get(dlq).and_then(|m| m.get(id)) {
            Some(s) if s.partition == partition && s.offset == offset => (s.outcome, Some(s.at)),
            _ => (Status::Pending, None),
        }
    }

    /// Ids of `dlq` whose entry settles a record below `low` in
    /// `partition`: records deleted by retention, whose entries only take
    /// room now.
    pub fn expired(&self, dlq: &str, partition: i32, low: i64) -> Vec<String> {
        self.records
            .get(dlq)
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| s.partition == partition && s.offset < low)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A checkpoint's value.
    pub fn checkpoint(&self, name: &str) -> Option<&str> {
        self.checkpoints.get(name).map(String::as_str)
    }

    /// Where a blob lies, if it was stored.
    pub fn blob(&self, sha256: &str) -> Option<&BlobEntry> {
        self.blobs.get(sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("ts")
    }

    fn record(outcome: Status, offset: i64) -> LedgerValue {
        LedgerValue::Record(RecordEntry {
            dlq: "dlq.a".into(),
            id: "kafka:t:0:1".into(),
            outcome,
            dlq_partition: 0,
            dlq_offset: offset,
            at: at(),
        })
    }

    #[test]
    fn entries_roundtrip_as_json_with_stable_keys() {
        for v in [
            record(Status::Replayed, 7),
            LedgerValue::Checkpoint(CheckpointEntry {
                checkpoint: "replay".into(),
                value: "42".into(),
                at: at(),
            }),
            LedgerValue::Blob(BlobEntry {
                blob: "ab".repeat(32),
                size: 3,
                chunks: vec![(0, 1), (0, 2)],
                at: at(),
            }),
        ] {
            let back: LedgerValue = serde_json::from_slice(&v.to_json()).expect("parse");
            assert_eq!(back, v);
        }
        assert_eq!(record(Status::Parked, 1).key(), "dlq.a/kafka:t:0:1");
        let json = String::from_utf8(record(Status::Replayed, 7).to_json()).expect("utf8");
        assert_eq!(
            json,
            r#"{"dlq":"dlq.a","id":"kafka:t:0:1","outcome":"replayed","dlq_partition":0,"dlq_offset":7,"at":"2027-01-15T08:00:00Z"}"#
        );
    }

    #[test]
    fn latest_entry_wins_and_applies_to_its_copy_only() {
        let mut l = Ledger::default();
        l.apply(record(Status::Parked, 7));
        l.apply(record(Status::Replayed, 7));
        assert_eq!(l.status("dlq.a", "kafka:t:0:1", 0, 7).0, Status::Replayed);
        assert_eq!(
            l.status("dlq.a", "kafka:t:0:1", 0, 9).0,
            Status::Pending,
            "a later copy with the same id is not settled by an entry for another offset"
        );
        l.apply_message(Some(b"dlq.a/kafka:t:0:1"), None)
            .expect("tombstone");
        assert_eq!(l.status("dlq.a", "kafka:t:0:1", 0, 7).0, Status::Pending);
        assert!(l.apply_message(Some(b"x"), Some(b"garbage")).is_err());
    }
}
