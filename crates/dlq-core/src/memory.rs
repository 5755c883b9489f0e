//! An in-memory [`DlqStore`] (`memory://`): for tests and throwaway runs.
//!
//! It honours the whole store contract (idempotent appends, settle rules,
//! checkpoints, claim checks through the envelope size limit, outputs and
//! consumer positions in the commit) except durability: everything is gone
//! when the process ends.

use crate::envelope::{self, EncodeOptions};
use crate::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Output, PartitionStats, Result,
    ScanPage, Selection, Status, StoredRecord, can_settle,
};
use chrono::DurationRound as _;
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};

/// An in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Vec<Stored>,
    index: HashMap<(String, String), usize>,
    blobs: HashMap<String, Vec<u8>>,
    checkpoints: HashMap<String, String>,
    options: EncodeOptions,
    /// Outputs committed to each destination, in commit order.
    outputs: BTreeMap<String, Vec<Output>>,
    /// Committed consumer positions by (group, topic, partition).
    positions: HashMap<(String, String, i32), i64>,
}

#[derive(Debug)]
struct Stored {
    meta: StoredRecord,
    envelope: Vec<u8>,
}

impl MemoryStore {
    /// An empty store with the default envelope limit.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store with an envelope limit (to exercise claim checks).
    pub fn with_options(options: EncodeOptions) -> Self {
        MemoryStore {
            options,
            ..MemoryStore::default()
        }
    }

    /// The outputs committed to `destination`, in commit order (the
    /// in-memory stand-in for a topic a replay writes to).
    pub fn outputs(&self, destination: &str) -> &[Output] {
        self.outputs.get(destination).map_or(&[], Vec::as_slice)
    }

    /// The committed position of a consumer group on a partition.
    pub fn position(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    fn materialize(&self, stored: &Stored) -> Result<StoredRecord> {
        // Records are kept encoded, like a real store, so that claim checks
        // and the size limit behave the same here.
        let mut letter = envelope::decode(&stored.envelope, &stored.meta.letter.id);
        letter.resolve_claims(|c| Ok(self.blobs.get(&c.sha256).cloned()))?;
        Ok(StoredRecord {
            letter,
            ..stored.meta.clone()
        })
    }
}

impl DlqStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        // The reference model: everything commits together in memory.
        Capabilities {
            outputs: true,
            outputs_before_commit: true,
            positions: true,
        }
    }

    /// Any destination exists: an in-memory one comes into being when
    /// first written to.
    fn has_destination(&self, _name: &str) -> Result<bool> {
        Ok(true)
    }

    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        // Validate and encode everything first so that a failure leaves the
        // store untouched (atomicity).
        let mut encoded = Vec::with_capacity(batch.append.len());
        for entry in batch.append {
            encoded.push(envelope::encode(&entry.letter, &self.options)?);
        }
        let mut report = CommitReport::default();
        // Milliseconds, as the envelope and the SQLite store keep times, so
        // that stats and scans agree on a record's instants.
        let now = Utc::now();
        let now = now
            .duration_trunc(chrono::TimeDelta::milliseconds(1))
            .unwrap_or(now);
        for (entry, enc) in batch.append.iter().zip(encoded) {
            let key = (entry.dlq.clone(), entry.letter.id.clone());
            if self.index.contains_key(&key) {
                report.duplicates += 1;
                continue;
            }
            for blob in enc.blobs {
                self.blobs.insert(blob.sha256, blob.bytes);
            }
            let mut meta_letter = entry.letter.clone();
            // The encoded envelope is the source of truth; keep only the
            // metadata in memory.
            meta_letter.payload.clear();
            self.index.insert(key, self.records.len());
            self.records.push(Stored {
                meta: StoredRecord {
                    dlq: entry.dlq.clone(),
                    status: entry.status,
                    stored_at: now,
                    settled_at: None,
                    letter: meta_letter,
                },
                envelope: enc.bytes,
            });
            report.appended += 1;
        }
        for s in batch.settle {
            if let Some(&i) = self.index.get(&(s.dlq.clone(), s.id.clone())) {
                let meta = &mut self.records[i].meta;
                if can_settle(meta.status, s.outcome) {
                    meta.status = s.outcome;
                    meta.settled_at = Some(now);
                    report.settled += 1;
                }
            }
        }
        if let Some((name, value)) = batch.checkpoint {
            self.checkpoints.insert(name.to_owned(), value.to_owned());
        }
        for output in batch.outputs {
            self.outputs
                .entry(output.destination.clone())
                .or_default()
                .push(output.clone());
        }
        for p in batch.positions {
            self.positions.insert(
                (p.group.clone(), p.topic.clone(), p.partition),
                p.next_offset,
            );
        }
        Ok(report)
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        let start = after.and_then(|c| c.0.parse::<usize>().ok()).unwrap_or(0);
        let mut page = ScanPage::default();
        for (i, stored) in self.records.iter().enumerate().skip(start) {
            if page.records.len() >= limit {
                page.next = Some(Cursor(i.to_string()));
                return Ok(page);
            }
            let cheap = selection
                .dlq
                .as_deref()
                .is_none_or(|d| d == stored.meta.dlq)
                && selection.wants_status(stored.meta.status);
            if !cheap {
                continue;
            }
            let record = self.materialize(stored)?;
            if selection.matches(&record) {
                page.records.push(record);
            }
        }
        Ok(page)
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        match self.index.get(&(dlq.to_owned(), id.to_owned())) {
            Some(&i) => Ok(Some(self.materialize(&self.records[i])?)),
            None => Ok(None),
        }
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        let mut by_dlq: BTreeMap<&str, (DlqStats, BTreeMap<i32, u64>)> = BTreeMap::new();
        for r in &self.records {
            let m = &r.meta;
            let (s, parts) = by_dlq
                .entry(&m.dlq)
                .or_insert_with(|| (DlqStats::empty(&m.dlq), BTreeMap::new()));
            s.total += 1;
            match m.status {
                Status::Pending => {
                    s.pending += 1;
                    let at = m.letter.failed_at;
                    s.oldest_pending_at = Some(s.oldest_pending_at.map_or(at, |o| o.min(at)));
                    *parts
                        .entry(m.letter.source.partition.unwrap_or(-1))
                        .or_default() += 1;
                }
                Status::Parked => s.parked += 1,
                Status::Replayed => s.replayed += 1,
                Status::Discarded => s.discarded += 1,
                Status::Archived => s.archived += 1,
            }
        }
        Ok(by_dlq
            .into_values()
            .map(|(mut s, parts)| {
                s.partitions = parts
                    .into_iter()
                    .map(|(partition, pending)| PartitionStats { partition, pending })
                    .collect();
                s
            })
            .collect())
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        Ok(self.stats()?.into_iter().map(|s| s.dlq).collect())
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        Ok(self.checkpoints.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;
    use crate::{DeadLetter, Failure};

    fn entry(dlq: &str, id: &str, payload: &[u8]) -> Entry {
        let f = Failure::permanent("validate", "validation.missing_field", "missing link");
        let mut letter = DeadLetter::new(id, payload.to_vec(), &f);
        letter.source.partition = Some(if id.ends_with('1') { 1 } else { 0 });
        Entry {
            dlq: dlq.into(),
            letter,
            status: Status::Pending,
        }
    }

    #[test]
    fn oversized_payload_roundtrips_through_claim_check() {
        let mut s = MemoryStore::with_options(EncodeOptions::with_max_bytes(8192).expect("opts"));
        let big = vec![0xabu8; 100_000];
        s.append(&[entry("dlq.a", "1", &big)]).expect("append");
        let r = s.get("dlq.a", "1").expect("get").expect("present");
        assert_eq!(r.letter.payload, big);
        assert!(s.records[0].envelope.len() <= 8192);
    }

    #[test]
    fn positions_commit_with_the_batch_and_the_latest_wins() {
        let mut s = MemoryStore::new();
        let at = |next_offset| crate::store::SourcePosition {
            group: "g".into(),
            topic: "rss.events".into(),
            partition: 2,
            next_offset,
        };
        for offset in [10, 42] {
            s.commit(Batch {
                positions: &[at(offset)],
                ..Batch::default()
            })
            .expect("commit");
        }
        assert_eq!(s.position("g", "rss.events", 2), Some(42));
        assert_eq!(s.position("g", "rss.events", 1), None);
        assert_eq!(s.position("other", "rss.events", 2), None);
    }
}
