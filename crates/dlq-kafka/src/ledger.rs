//! The ledger: what a Kafka log cannot say about its own records.
//!
//! A DLQ topic is an immutable log, so "this record was replayed" is written
//! elsewhere: to one compacted topic (`dlq.ledger` by default) whose latest
//! value per key is the truth. Three kinds of entries share it:
//!
//! | key | value |
//! |---|---|
//! | `settled/<topic id>/<partition>/<segment>` | `{"dlq","topic_id","partition","segment","marks","at"}`: the settlement marks of 65,536 offsets of a DLQ partition (see [`crate::settlement`]; `marks` is the segment's value in base64) |
//! | `<dlq>/<id>` | `{"dlq","id","outcome","dlq_partition","dlq_offset","at"}`: one record's status, as versions before the segments wrote it (still read; `dlq ledger migrate` rewrites them as segments) |
//! | `counted/<topic id>/<partition>/<segment>` | `{"dlq","topic_id","partition","segment","from","to","gaps","at"}`: which offsets in `[from, to)` of a segment hold no record to count (transaction markers, aborted records, later copies of a record), found by a reader once so that no one reads them again to count (see [`CountEntry`]) |
//! | `checkpoint/<name>` | `{"checkpoint","value","at"}`: a [`Batch`](dlq_core::store::Batch) checkpoint |
//! | `blob/<sha256>` | `{"blob","size","chunks":[[partition, offset], …],"at"}`: where a claim-check blob lies in the blob topic |
//!
//! Segments are keyed by the DLQ topic's id (KIP-516), so a topic deleted
//! and created again under its name starts with nothing settled. A record
//! entry (the former format) names the DLQ partition and offset it settles,
//! so it applies to that copy only: a record that expired from its topic and was
//! appended again with the same id starts pending, and a ledger entry never
//! settles a different record by accident. A record without an entry is
//! pending. DLQ names cannot contain `/`, so the keys never collide (the
//! store refuses DLQs named `checkpoint` or `blob`).
//!
//! Entries are JSON so that `kcat -C -t dlq.ledger` is readable; unknown or
//! malformed entries (written by something else) are skipped with a warning,
//! never fatal. A `null` value (a tombstone) deletes the key.

use crate::position::{PartitionOffset, TopicPartition};
use crate::settlement::{Mark, PartitionMarks, Segment};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use dlq_core::store::Status;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Key prefix of checkpoint entries.
pub const CHECKPOINT_PREFIX: &str = "checkpoint/";
/// Key prefix of settlement segment entries.
pub const SEGMENT_PREFIX: &str = "settled/";
/// Key prefix of count entries.
pub const COUNT_PREFIX: &str = "counted/";
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

/// The settlement marks of one segment of a DLQ partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// The DLQ topic (for people reading the ledger; the key is the id).
    pub dlq: String,
    /// The DLQ topic's id.
    pub topic_id: String,
    /// The partition.
    pub partition: i32,
    /// The segment: offsets `segment * 65536 ..` of the partition.
    pub segment: i64,
    /// The segment's value ([`Segment::encode`]) in base64.
    pub marks: String,
    /// When it was written.
    pub at: DateTime<Utc>,
}

impl SegmentEntry {
    /// The entry for `segment` of a partition, as it stands in `marks`.
    pub fn new(
        dlq: &str,
        topic_id: &str,
        partition: i32,
        segment: i64,
        marks: &Segment,
        at: DateTime<Utc>,
    ) -> Self {
        SegmentEntry {
            dlq: dlq.to_owned(),
            topic_id: topic_id.to_owned(),
            partition,
            segment,
            marks: BASE64.encode(marks.encode()),
            at,
        }
    }
}

/// What a reader learned of one segment of a DLQ partition by reading
/// `[from, to)`: the offsets there that hold no record to count. Facts
/// about an immutable log, so writers never conflict: two readers of the
/// same range write the same value, and a value is whole by itself (a later
/// write of a shorter range only makes the next reader read more).
/// Kept apart from the settlement segments, which writers read, modify and
/// write: a count written beside a settlement could otherwise undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountEntry {
    /// The DLQ topic (for people reading the ledger; the key is the id).
    pub dlq: String,
    /// The DLQ topic's id.
    pub topic_id: String,
    /// The partition.
    pub partition: i32,
    /// The segment: offsets `segment * 65536 ..` of the partition.
    pub segment: i64,
    /// The first offset read.
    pub from: i64,
    /// The offset after the last one read.
    pub to: i64,
    /// [`Segment::encode`] in base64, with [`Mark::Gap`] at each offset in
    /// `[from, to)` that holds no record (a transaction marker, an aborted
    /// record).
    pub gaps: String,
    /// Later copies of a record in `[from, to)`: `[copy offset, offset of
    /// the first copy]`. A copy counts only once its first copy is gone
    /// (deleted by retention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<(i64, i64)>,
    /// When it was written.
    pub at: DateTime<Utc>,
}

/// One ledger value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LedgerValue {
    /// A record status (the format before segments).
    Record(RecordEntry),
    /// A checkpoint.
    Checkpoint(CheckpointEntry),
    /// A blob locator.
    Blob(BlobEntry),
    /// A segment of settlement marks.
    Segment(SegmentEntry),
    /// What a reader counted in a segment.
    Count(CountEntry),
}

impl LedgerValue {
    /// The compaction key of this value.
    pub fn key(&self) -> String {
        match self {
            LedgerValue::Record(r) => record_key(&r.dlq, &r.id),
            LedgerValue::Checkpoint(c) => format!("{CHECKPOINT_PREFIX}{}", c.checkpoint),
            LedgerValue::Blob(b) => format!("{BLOB_PREFIX}{}", b.blob),
            LedgerValue::Segment(g) => segment_key(&g.topic_id, g.partition, g.segment),
            LedgerValue::Count(c) => count_key(&c.topic_id, c.partition, c.segment),
        }
    }

    /// The JSON value written to the ledger topic.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The key of a record's ledger entry (the format before segments).
pub fn record_key(dlq: &str, id: &str) -> String {
    format!("{dlq}/{id}")
}

/// The key of a settlement segment's entry.
pub fn segment_key(topic_id: &str, partition: i32, segment: i64) -> String {
    format!("{SEGMENT_PREFIX}{topic_id}/{partition}/{segment}")
}

/// The key of a count entry.
pub fn count_key(topic_id: &str, partition: i32, segment: i64) -> String {
    format!("{COUNT_PREFIX}{topic_id}/{partition}/{segment}")
}

/// What the ledger says about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    pub outcome: Status,
    pub partition: i32,
    pub offset: i64,
    pub at: DateTime<Utc>,
}

/// One DLQ partition's settlement state, by topic id (as the topic) and
/// partition.
type PartitionKey = TopicPartition;

/// The ledger as read so far: latest value per key.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Record entries of the former format, by DLQ and id.
    records: HashMap<String, HashMap<String, Settled>>,
    /// The same entries by DLQ and the position they name.
    legacy_at: HashMap<String, HashMap<PartitionOffset, Settled>>,
    checkpoints: HashMap<String, String>,
    blobs: HashMap<String, BlobEntry>,
    /// Settlement marks by topic id and partition.
    marks: HashMap<PartitionKey, PartitionMarks>,
    /// When each segment was last written, by topic id, partition, segment.
    written: HashMap<(String, i32, i64), DateTime<Utc>>,
    /// What was counted, by topic id and partition.
    counts: HashMap<PartitionKey, Counted>,
}

/// What is known of one DLQ partition's offsets that hold no record to
/// count: its gaps, and the ranges read to find them (per segment).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counted {
    /// [`Mark::Gap`] at each gap found.
    pub gaps: PartitionMarks,
    /// Later copies of records: copy offset -> offset of the first copy.
    pub copies: std::collections::BTreeMap<i64, i64>,
    /// The range read in each segment, `[from, to)`.
    pub spans: std::collections::BTreeMap<i64, (i64, i64)>,
    /// Segments counted further than the ledger says.
    pub dirty: std::collections::BTreeSet<i64>,
}

impl Counted {
    /// Where counting must go on from for a partition whose log starts at
    /// `low`: the end of the ranges read, contiguous from `low`.
    pub fn frontier(&self, low: i64) -> i64 {
        let mut at = low.max(0);
        loop {
            let segment = at.div_euclid(crate::settlement::SEGMENT_OFFSETS);
            match self.spans.get(&segment) {
                Some(&(from, to)) if from <= at && to > at => at = to,
                _ => return at,
            }
        }
    }

    /// Records what a reader found in `[from, to)`: `gaps` are the offsets
    /// there that hold no record, `copies` the later copies of records
    /// (with their first copy's offset).
    pub fn add(&mut self, from: i64, to: i64, gaps: &[i64], copies: &[(i64, i64)]) {
        if to <= from {
            return;
        }
        let marks: Vec<(i64, Mark)> = gaps.iter().map(|&o| (o, Mark::Gap)).collect();
        self.gaps.mark(&marks);
        self.copies.extend(copies.iter().copied());
        let size = crate::settlement::SEGMENT_OFFSETS;
        let mut at = from;
        while at < to {
            let segment = at.div_euclid(size);
            let end = to.min((segment + 1) * size);
            let span = self.spans.entry(segment).or_insert((at, end));
            if span.0 <= at && span.1 >= at {
                span.1 = span.1.max(end);
                span.0 = span.0.min(at);
            } else {
                // Not contiguous with what was read before: start over.
                *span = (at, end);
            }
            self.dirty.insert(segment);
            at = end;
        }
    }

    /// Offsets in `[from, to)` of a partition whose log starts at `low`
    /// that are not records to count: gaps, and copies whose first copy is
    /// still there.
    pub fn hidden_in(&self, low: i64, from: i64, to: i64) -> u64 {
        let copies = self
            .copies
            .range(from..to)
            .filter(|&(_, &first)| first >= low)
            .count() as u64;
        self.gaps.counts(from, to)[Mark::Gap as usize] + copies
    }

    /// Whether `offset` is no record to show in a partition whose log
    /// starts at `low`.
    pub fn hides(&self, low: i64, offset: i64) -> bool {
        self.gaps.get(offset) == Mark::Gap
            || self.copies.get(&offset).is_some_and(|&first| first >= low)
    }

    /// Forgets segments wholly below `low`; returns them.
    pub fn expire(&mut self, low: i64) -> Vec<i64> {
        let first_kept = low.max(0).div_euclid(crate::settlement::SEGMENT_OFFSETS);
        let gone: Vec<i64> = self.spans.range(..first_kept).map(|(k, _)| *k).collect();
        for k in &gone {
            self.spans.remove(k);
            self.dirty.remove(k);
        }
        self.gaps.expire(low);
        let size = crate::settlement::SEGMENT_OFFSETS;
        self.copies = self.copies.split_off(&(first_kept * size));
        gone
    }
}

/// `<topic id>/<partition>/<segment>` of a segment or count key.
fn split_segment_key(rest: &str) -> Option<(&str, i32, i64)> {
    let mut parts = rest.rsplitn(3, '/');
    let (segment, partition, topic_id) = (parts.next()?, parts.next()?, parts.next()?);
    Some((topic_id, partition.parse().ok()?, segment.parse().ok()?))
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
                let settled = Settled {
                    outcome: r.outcome,
                    partition: r.dlq_partition,
                    offset: r.dlq_offset,
                    at: r.at,
                };
                let by_pos = self.legacy_at.entry(r.dlq.clone()).or_default();
                if let Some(old) = self.records.entry(r.dlq).or_default().insert(r.id, settled) {
                    by_pos.remove(&PartitionOffset::new(old.partition, old.offset));
                }
                by_pos.insert(
                    PartitionOffset::new(settled.partition, settled.offset),
                    settled,
                );
            }
            LedgerValue::Checkpoint(c) => {
                self.checkpoints.insert(c.checkpoint, c.value);
            }
            LedgerValue::Blob(b) => {
                self.blobs.insert(b.blob.clone(), b);
            }
            LedgerValue::Count(c) => {
                let Ok(bytes) = BASE64.decode(&c.gaps) else {
                    tracing::warn!(dlq = %c.dlq, partition = c.partition, segment = c.segment,
                        "skipping a count entry that is not base64");
                    return;
                };
                let size = crate::settlement::SEGMENT_OFFSETS;
                let base = c.segment.saturating_mul(size);
                if c.from < base || c.to > base.saturating_add(size) || c.from >= c.to {
                    tracing::warn!(dlq = %c.dlq, partition = c.partition, segment = c.segment,
                        "skipping a count entry whose range lies outside its segment");
                    return;
                }
                let counted = self
                    .counts
                    .entry(TopicPartition::new(c.topic_id, c.partition))
                    .or_default();
                // Only a longer range says more than what is known.
                let known = counted.spans.get(&c.segment).copied();
                if known.is_some_and(|(f, t)| f <= c.from && t >= c.to) {
                    return;
                }
                let mut marks = PartitionMarks::default();
                if let Err(e) = marks.load(c.segment, &bytes) {
                    tracing::warn!(dlq = %c.dlq, partition = c.partition,
                        segment = c.segment, "skipping a count entry: {e}");
                    return;
                }
                let gaps: Vec<i64> = (c.from..c.to)
                    .filter(|&o| marks.get(o) == Mark::Gap)
                    .collect();
                let copies: Vec<(i64, i64)> = c
                    .copies
                    .iter()
                    .copied()
                    .filter(|&(o, first)| o >= c.from && o < c.to && first < o)
                    .collect();
                // Overlapping or touching what is known: the union.
                let span = match known {
                    Some((f, t)) if f <= c.to && t >= c.from => (f.min(c.from), t.max(c.to)),
                    _ => (c.from, c.to),
                };
                counted.spans.insert(c.segment, span);
                counted.add(c.from, c.to, &gaps, &copies);
                counted.dirty.remove(&c.segment);
            }
            LedgerValue::Segment(g) => {
                let Ok(bytes) = BASE64.decode(&g.marks) else {
                    tracing::warn!(dlq = %g.dlq, partition = g.partition, segment = g.segment,
                        "skipping a settlement segment that is not base64");
                    return;
                };
                let marks = self
                    .marks
                    .entry(TopicPartition::new(g.topic_id.as_str(), g.partition))
                    .or_default();
                match marks.load(g.segment, &bytes) {
                    Ok(()) => {
                        self.written
                            .insert((g.topic_id, g.partition, g.segment), g.at);
                    }
                    Err(e) => tracing::warn!(dlq = %g.dlq, partition = g.partition,
                        segment = g.segment, "skipping a settlement segment: {e}"),
                }
            }
        }
    }

    /// The record entries of the former format, as `(dlq, id, settled)`.
    pub fn record_entries(&self) -> impl Iterator<Item = (&str, &str, &Settled)> {
        self.records
            .iter()
            .flat_map(|(dlq, m)| m.iter().map(move |(id, s)| (dlq.as_str(), id.as_str(), s)))
    }

    /// Segments of a partition wholly below `low` (their records were
    /// deleted by retention), as ledger keys to delete.
    pub fn expired_segments(&self, topic_id: &str, partition: i32, low: i64) -> Vec<String> {
        let first_kept = low.max(0) / crate::settlement::SEGMENT_OFFSETS;
        self.written
            .keys()
            .filter(|(t, p, s)| t == topic_id && *p == partition && *s < first_kept)
            .map(|(t, p, s)| segment_key(t, *p, *s))
            .collect()
    }

    fn delete(&mut self, key: &str) {
        if let Some(rest) = key.strip_prefix(COUNT_PREFIX) {
            if let Some((topic_id, partition, segment)) = split_segment_key(rest)
                && let Some(c) = self
                    .counts
                    .get_mut(&TopicPartition::new(topic_id, partition))
            {
                c.spans.remove(&segment);
                c.dirty.remove(&segment);
                c.gaps.forget(segment);
            }
        } else if let Some(name) = key.strip_prefix(CHECKPOINT_PREFIX) {
            self.checkpoints.remove(name);
        } else if let Some(rest) = key.strip_prefix(SEGMENT_PREFIX) {
            let Some((topic_id, partition, segment)) = split_segment_key(rest) else {
                return;
            };
            if let Some(m) = self
                .marks
                .get_mut(&TopicPartition::new(topic_id, partition))
            {
                m.forget(segment);
            }
            self.written
                .remove(&(topic_id.to_owned(), partition, segment));
        } else if let Some(sha) = key.strip_prefix(BLOB_PREFIX) {
            self.blobs.remove(sha);
        } else if let Some((dlq, id)) = key.split_once('/')
            && let Some(m) = self.records.get_mut(dlq)
            && let Some(old) = m.remove(id)
            && let Some(by_pos) = self.legacy_at.get_mut(dlq)
        {
            by_pos.remove(&PartitionOffset::new(old.partition, old.offset));
        }
    }

    /// The status of the record stored at `partition`/`offset` of `dlq`
    /// (whose topic has `topic_id`), with when it was settled (for a
    /// segment: when the segment was last written): its segment's mark,
    /// else a record entry of the former format naming exactly this copy,
    /// else pending.
    pub fn status(
        &self,
        dlq: &str,
        topic_id: Option<&str>,
        partition: i32,
        offset: i64,
    ) -> (Status, Option<DateTime<Utc>>) {
        if let Some(t) = topic_id
            && let Some(marks) = self.marks.get(&TopicPartition::new(t, partition))
        {
            let mark = marks.get(offset);
            if let Some(status) = mark.status().filter(|s| *s != Status::Pending) {
                let segment = offset.div_euclid(crate::settlement::SEGMENT_OFFSETS);
                let at = self
                    .written
                    .get(&(t.to_owned(), partition, segment))
                    .copied();
                return (status, at);
            }
        }
        match self.legacy(dlq, partition, offset) {
            Some(s) => (s.outcome, Some(s.at)),
            None => (Status::Pending, None),
        }
    }

    /// The record entry of the former format naming this position.
    pub fn legacy(&self, dlq: &str, partition: i32, offset: i64) -> Option<&Settled> {
        self.legacy_at
            .get(dlq)?
            .get(&PartitionOffset::new(partition, offset))
    }

    /// Whether any record entry of the former format names a record of `dlq`.
    pub fn has_legacy(&self, dlq: &str) -> bool {
        self.legacy_at.get(dlq).is_some_and(|m| !m.is_empty())
    }

    /// Record entries of the former format of a partition of `dlq`, by
    /// offset, in `[from, to)`.
    pub fn legacy_in(&self, dlq: &str, partition: i32, from: i64, to: i64) -> Vec<(i64, Status)> {
        self.legacy_at
            .get(dlq)
            .map(|m| {
                m.iter()
                    .filter(|(at, _)| {
                        at.partition == partition && at.offset >= from && at.offset < to
                    })
                    .map(|(at, s)| (at.offset, s.outcome))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The settlement marks of a partition, if any were written.
    pub fn marks(&self, topic_id: &str, partition: i32) -> Option<&PartitionMarks> {
        self.marks.get(&TopicPartition::new(topic_id, partition))
    }

    /// The segment entries that record `marks` (offset, mark) in a
    /// partition of `dlq`, over what the ledger holds and what `pending`
    /// (segments written by a commit still under way) holds; the new
    /// segments are also put into `pending`.
    pub fn segment_entries(
        &self,
        dlq: &str,
        topic_id: &str,
        partition: i32,
        marks: &[(i64, Mark)],
        pending: &mut HashMap<(String, i32, i64), Segment>,
        at: DateTime<Utc>,
    ) -> Vec<SegmentEntry> {
        let mut by_segment: std::collections::BTreeMap<i64, Vec<(i64, Mark)>> =
            std::collections::BTreeMap::new();
        for &(offset, mark) in marks.iter().filter(|m| m.0 >= 0) {
            by_segment
                .entry(offset.div_euclid(crate::settlement::SEGMENT_OFFSETS))
                .or_default()
                .push((offset, mark));
        }
        let mut out = Vec::with_capacity(by_segment.len());
        for (segment, marks) in by_segment {
            let key = (topic_id.to_owned(), partition, segment);
            let mut current = match pending.get(&key) {
                Some(s) => s.clone(),
                None => self
                    .marks
                    .get(&TopicPartition::new(topic_id, partition))
                    .and_then(|m| m.segment(segment))
                    .cloned()
                    .unwrap_or_default(),
            };
            let base = segment * crate::settlement::SEGMENT_OFFSETS;
            let mut ranges: Vec<(u32, u32, Mark)> = marks
                .iter()
                .map(|&(o, m)| ((o - base) as u32, (o - base) as u32 + 1, m))
                .collect();
            ranges.sort_by_key(|r| r.0);
            ranges.dedup_by(|later, earlier| {
                // The last mark given for an offset wins.
                if later.0 == earlier.0 {
                    *earlier = *later;
                    true
                } else {
                    false
                }
            });
            current.overlay(&ranges);
            out.push(SegmentEntry::new(
                dlq, topic_id, partition, segment, &current, at,
            ));
            pending.insert(key, current);
        }
        out
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

    /// What was counted of a partition, if anything.
    pub fn counted(&self, topic_id: &str, partition: i32) -> Option<&Counted> {
        self.counts.get(&TopicPartition::new(topic_id, partition))
    }

    /// What was counted of a partition, to add to.
    pub fn counted_mut(&mut self, topic_id: &str, partition: i32) -> &mut Counted {
        self.counts
            .entry(TopicPartition::new(topic_id, partition))
            .or_default()
    }

    /// The count entries of segments counted further than the ledger
    /// says, to write; they count as written from now on (a failed write
    /// only means the next reader counts them again).
    pub fn take_dirty_counts(
        &mut self,
        names: &HashMap<String, String>,
        at: DateTime<Utc>,
    ) -> Vec<CountEntry> {
        let mut out = Vec::new();
        for (
            TopicPartition {
                topic: topic_id,
                partition,
            },
            c,
        ) in &mut self.counts
        {
            let Some(dlq) = names.get(topic_id) else {
                continue;
            };
            for segment in std::mem::take(&mut c.dirty) {
                let Some(&(from, to)) = c.spans.get(&segment) else {
                    continue;
                };
                let gaps = c.gaps.segment(segment).cloned().unwrap_or_default();
                let copies = c
                    .copies
                    .range(from..to)
                    .map(|(&o, &first)| (o, first))
                    .collect();
                out.push(CountEntry {
                    dlq: dlq.clone(),
                    topic_id: topic_id.clone(),
                    partition: *partition,
                    segment,
                    from,
                    to,
                    gaps: BASE64.encode(gaps.encode()),
                    copies,
                    at,
                });
            }
        }
        out
    }

    /// Count entries of a partition wholly below `low`, as keys to delete.
    pub fn expired_counts(&self, topic_id: &str, partition: i32, low: i64) -> Vec<String> {
        let first_kept = low.max(0) / crate::settlement::SEGMENT_OFFSETS;
        self.counts
            .get(&TopicPartition::new(topic_id, partition))
            .map(|c| {
                c.spans
                    .range(..first_kept)
                    .map(|(s, _)| count_key(topic_id, partition, *s))
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
        assert_eq!(l.status("dlq.a", None, 0, 7).0, Status::Replayed);
        assert_eq!(
            l.status("dlq.a", None, 0, 9).0,
            Status::Pending,
            "a later copy with the same id is not settled by an entry for another offset"
        );
        l.apply_message(Some(b"dlq.a/kafka:t:0:1"), None)
            .expect("tombstone");
        assert_eq!(l.status("dlq.a", None, 0, 7).0, Status::Pending);
        assert!(l.apply_message(Some(b"x"), Some(b"garbage")).is_err());
    }

    #[test]
    fn segments_settle_by_offset_and_expire_whole() {
        use crate::settlement::SEGMENT_OFFSETS;
        let mut l = Ledger::default();
        let mut pending = HashMap::new();
        let marks = [(3, Mark::Replayed), (SEGMENT_OFFSETS + 1, Mark::Parked)];
        let entries = l.segment_entries("dlq.a", "TID", 0, &marks, &mut pending, at());
        assert_eq!(entries.len(), 2, "one entry per segment touched");
        for e in entries {
            let v = LedgerValue::Segment(e);
            let back: LedgerValue = serde_json::from_slice(&v.to_json()).expect("parse");
            assert_eq!(back, v);
            l.apply(back);
        }
        assert_eq!(
            l.status("dlq.a", Some("TID"), 0, 3),
            (Status::Replayed, Some(at()))
        );
        assert_eq!(l.status("dlq.a", Some("TID"), 0, 4).0, Status::Pending);
        assert_eq!(
            l.status("dlq.a", Some("OTHER"), 0, 3).0,
            Status::Pending,
            "a recreated topic (another id) inherits nothing"
        );
        assert_eq!(
            l.status("dlq.a", Some("TID"), 0, SEGMENT_OFFSETS + 1).0,
            Status::Parked
        );
        // Retention passed the first segment only.
        let gone = l.expired_segments("TID", 0, SEGMENT_OFFSETS + 1);
        assert_eq!(gone, vec![segment_key("TID", 0, 0)]);
        l.apply_message(Some(gone[0].as_bytes()), None)
            .expect("tombstone");
        assert_eq!(l.status("dlq.a", Some("TID"), 0, 3).0, Status::Pending);
        assert!(l.expired_segments("TID", 0, SEGMENT_OFFSETS + 1).is_empty());
    }

    #[test]
    fn a_segment_extends_the_one_written_in_the_same_commit() {
        let l = Ledger::default();
        let mut pending = HashMap::new();
        let first = l.segment_entries("dlq.a", "T", 1, &[(0, Mark::Replayed)], &mut pending, at());
        let second =
            l.segment_entries("dlq.a", "T", 1, &[(1, Mark::Discarded)], &mut pending, at());
        let mut fresh = Ledger::default();
        fresh.apply(LedgerValue::Segment(first[0].clone()));
        fresh.apply(LedgerValue::Segment(second[0].clone()));
        assert_eq!(fresh.status("dlq.a", Some("T"), 1, 0).0, Status::Replayed);
        assert_eq!(fresh.status("dlq.a", Some("T"), 1, 1).0, Status::Discarded);
    }
}
