//! Counts per partition from the watermarks, the settlement marks and the
//! count state, the age of the oldest pending record from one fetch, and
//! writing what a count found so that no later reader reads it again.

use super::*;

/// The records of one DLQ partition by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) total: u64,
    pub(super) pending: u64,
    pub(super) parked: u64,
    pub(super) replayed: u64,
    pub(super) discarded: u64,
    pub(super) archived: u64,
}

impl Counts {
    fn add(&mut self, status: Status, n: u64) {
        match status {
            Status::Pending => {}
            Status::Parked => self.parked += n,
            Status::Replayed => self.replayed += n,
            Status::Discarded => self.discarded += n,
            Status::Archived => self.archived += n,
        }
    }
}

/// At most this many first-pending candidates are fetched for a
/// partition's age before giving up on it (each one a record the count
/// state did not know was gone).
const HEAD_ATTEMPTS: usize = 16;

impl Inner {
    /// The counts of a partition, as of its last refresh and count: the
    /// offsets between its watermarks, less those that hold no record,
    /// by settlement mark (or entry of the former format).
    pub(super) fn partition_counts(&self, dlq: &str, p: i32) -> Counts {
        let Some(part) = self.dlqs.get(dlq).and_then(|d| d.parts.get(p as usize)) else {
            return Counts::default();
        };
        let (low, high) = (part.low, part.high);
        let counted = self.counted(dlq, p);
        let hidden = counted.map_or(0, |c| c.hidden_in(low, low, high));
        let mut c = Counts {
            total: ((high - low).max(0) as u64).saturating_sub(hidden),
            ..Counts::default()
        };
        let marks: Option<&crate::settlement::PartitionMarks> = self
            .topic_ids
            .get(dlq)
            .and_then(|t| self.ledger.marks(t, p));
        if let Some(m) = marks {
            let by_mark: MarkCounts = m.counts(low, high);
            for mark in crate::settlement::Mark::ALL {
                if let Some(status) = mark.status() {
                    c.add(status, by_mark[mark as usize]);
                }
            }
        }
        for (o, status) in self.ledger.legacy_in(dlq, p, low, high) {
            let unmarked = marks.is_none_or(|m| m.get(o) == crate::settlement::Mark::Unmarked);
            if unmarked && !counted.is_some_and(|k| k.hides(low, o)) {
                c.add(status, 1);
            }
        }
        c.pending = c
            .total
            .saturating_sub(c.parked + c.replayed + c.discarded + c.archived);
        c
    }

    /// When the first pending record of a partition failed: DLQ records
    /// are appended in the order they fail, so the first pending one is
    /// the oldest (a record imported or flushed from a spool late can be
    /// older than the records before it; it is not looked for). One fetch,
    /// remembered until that record is settled.
    pub(super) fn head(
        &mut self,
        config: &KafkaConfig,
        dlq: &str,
        p: i32,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(part) = self.dlqs.get(dlq).and_then(|d| d.parts.get(p as usize)) else {
            return Ok(None);
        };
        let (low, high, cached) = (part.low, part.high, part.head);
        let mut at = low;
        for _ in 0..HEAD_ATTEMPTS {
            let Some(o) = self.first_pending(dlq, p, at, high) else {
                return Ok(None);
            };
            if let Some((c, failed_at)) = cached
                && c == o
            {
                return Ok(Some(failed_at));
            }
            let fetched = self.client.fetch(dlq, p, &[o])?;
            if let Some(f) = fetched.into_iter().find(|f| f.offset == o) {
                let failed_at = decode_fetched(config, dlq, &f).failed_at;
                if let Some(part) = self
                    .dlqs
                    .get_mut(dlq)
                    .and_then(|d| d.parts.get_mut(p as usize))
                {
                    part.head = Some((o, failed_at));
                }
                return Ok(Some(failed_at));
            }
            at = o + 1;
        }
        Ok(None)
    }

    /// The first offset in `[from, to)` of a partition that holds a
    /// pending record, as far as the settlement marks and the count state
    /// say (offsets not counted yet may hold no record).
    pub(super) fn first_pending(&self, dlq: &str, p: i32, from: i64, to: i64) -> Option<i64> {
        let low = self.dlqs.get(dlq)?.parts.get(p as usize)?.low;
        let marks = self
            .topic_ids
            .get(dlq)
            .and_then(|t| self.ledger.marks(t, p));
        let counted = self.counted(dlq, p);
        let mut at = from.max(low);
        while at < to {
            let o = match marks {
                Some(m) => m.first(at, to, |mark| mark == crate::settlement::Mark::Unmarked)?,
                None => at,
            };
            if counted.is_some_and(|c| c.hides(low, o)) || self.ledger.legacy(dlq, p, o).is_some() {
                at = o + 1;
                continue;
            }
            return Some(o);
        }
        None
    }

    /// Writes what counts found and the ledger does not say yet, so that
    /// later readers do not read those offsets again. Best effort, with a
    /// plain producer of its own (see `Client::write_plain`): a store that
    /// may not write the ledger (a read-only user), or a failed write, only
    /// leaves the next reader to count again.
    pub(super) fn persist_counts(&mut self, config: &KafkaConfig) {
        let values = self.dirty_counts();
        if values.is_empty() {
            return;
        }
        let ledger_partitions = self.ledger_next.len() as i32;
        let ts = Utc::now().timestamp_millis();
        let records: Vec<Outgoing> = values
            .iter()
            .map(|v| {
                ledger_record(
                    &config.ledger_topic,
                    ledger_partitions,
                    v.key(),
                    Some(v.to_json()),
                    ts,
                )
            })
            .collect();
        if let Err(e) = self.client.write_plain(&records) {
            tracing::debug!(error = %e, "could not write the count state; the next reader counts again");
        }
    }

    /// The count entries of segments counted further than the ledger says
    /// (they count as written from now on).
    pub(super) fn dirty_counts(&mut self) -> Vec<LedgerValue> {
        let names: HashMap<String, String> = self
            .topic_ids
            .iter()
            .map(|(name, id)| (id.clone(), name.clone()))
            .collect();
        self.ledger
            .take_dirty_counts(&names, Utc::now())
            .into_iter()
            .map(LedgerValue::Count)
            .collect()
    }
}

/// The dead letter of a fetched DLQ record (claim checks not resolved).
fn decode_fetched(config: &KafkaConfig, dlq: &str, f: &Fetched) -> DeadLetter {
    decode_kafka_with_prefix(
        &KafkaRecord {
            value: f.value.as_deref(),
            key: f.key.as_deref(),
            headers: &f.headers,
            topic: dlq,
            partition: f.partition,
            offset: f.offset,
            timestamp: f.timestamp,
        },
        &config.dlq_prefix,
    )
}
