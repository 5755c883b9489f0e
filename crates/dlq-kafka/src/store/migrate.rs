//! `dlq ledger migrate`: rewriting the per-record ledger entries of
//! earlier versions as settlement segments.

use super::*;

/// What [`KafkaStore::migrate_ledger`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// Per-record entries whose status went into a segment.
    pub converted: usize,
    /// Entries whose offset a later segment write had marked already.
    pub superseded: usize,
    /// Entries of DLQ topics that no longer exist.
    pub dropped: usize,
    /// Segment entries written.
    pub segments: usize,
}

impl KafkaStore {
    /// Rewrites the ledger's per-record entries (the format before
    /// settlement segments) as segments, in one commit: each entry's mark
    /// goes into its segment (unless a later segment write already marked
    /// that offset), and the entry is deleted (tombstoned). Entries of DLQ
    /// topics that no longer exist are deleted. Until this runs, both
    /// formats are read; running it again finds nothing to do.
    ///
    /// # Errors
    ///
    /// The cluster's errors; on an error nothing is changed.
    pub fn migrate_ledger(&mut self) -> Result<MigrationReport> {
        self.complete_all()?;
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.refresh(config, Scope::All)?;
        let mut report = MigrationReport::default();
        let mut statuses: Vec<StatusAt> = Vec::new();
        let mut deletes: Vec<String> = Vec::new();
        for (dlq, id, settled) in inner.ledger.record_entries() {
            deletes.push(crate::ledger::record_key(dlq, id));
            let Some(tid) = inner.topic_ids.get(dlq) else {
                report.dropped += 1;
                continue;
            };
            let marked = inner
                .ledger
                .marks(tid, settled.partition)
                .map_or(Mark::Unmarked, |m| m.get(settled.offset));
            if marked != Mark::Unmarked {
                // A segment written since says more.
                report.superseded += 1;
                continue;
            }
            report.converted += 1;
            statuses.push(StatusAt {
                dlq: dlq.to_owned(),
                id: id.to_owned(),
                partition: settled.partition,
                offset: settled.offset,
                outcome: settled.outcome,
            });
        }
        if deletes.is_empty() {
            return Ok(report);
        }
        let now = Utc::now();
        let mut segments = SegmentOverlay::new();
        let values = status_values(
            &inner.ledger,
            &inner.topic_ids,
            &statuses,
            now,
            &mut segments,
        );
        report.segments = values.len();
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ts = now.timestamp_millis();
        let records: Vec<Outgoing> = values
            .iter()
            .map(|v| (v.key(), Some(v.to_json())))
            .chain(deletes.iter().map(|k| (k.clone(), None)))
            .map(|(key, value)| {
                ledger_record(&config.ledger_topic, ledger_partitions, key, value, ts)
            })
            .collect();
        inner.client.write(records, false, None, |_| Vec::new())?;
        for v in values {
            inner.ledger.apply(v);
        }
        for key in &deletes {
            let _ = inner.ledger.apply_message(Some(key.as_bytes()), None);
        }
        Ok(report)
    }
}
