//! [`KafkaStore`]: the [`DlqStore`] implementation.
//!
//! The store keeps nothing per record in memory. Before each call it asks
//! the broker for the watermarks of the DLQ partitions (two requests,
//! whatever their number) and reads what is new in the ledger: settlement
//! marks and count state per segment of 65,536 offsets. Counts are the
//! offsets between the watermarks less the settled ones and those that
//! hold no record (found by reading each offset once, ever: see
//! [`Inner::count`]); scans stream from the first offset they want,
//! skipping settled runs; settling by id finds positions in a bounded cache
//! the scans fill. See docs/store-contract.md.

use crate::client::{Client, Fetched, Outgoing, TxnOffsets, headers_of};
use crate::config::{Format, KafkaConfig, redact_url, valid_topic};
use crate::ledger::{BlobEntry, CheckpointEntry, Ledger, LedgerValue, RecordEntry};
use crate::partitioner::default_partition;
use crate::position::{PartitionOffset, TopicPartition};
use crate::retry::failure;
use crate::settlement::MarkCounts;
use crate::settlement::{Mark, SEGMENT_OFFSETS, Segment};
use chrono::{DateTime, Utc};
use dlq_core::envelope::{
    self, Blob, ClaimError, DeadLetter, EncodeOptions, Header, KafkaRecord,
    decode_kafka_with_prefix, to_headers_format,
};
use dlq_core::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Entry, Output, PartitionStats,
    Result, ScanPage, Selection, Settle, Status, StoreError, StoredRecord, Submitted, Ticket,
    can_settle,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

mod index;
mod migrate;
mod read;
mod scan;
mod stats;
mod write;

use index::*;
pub use migrate::MigrationReport;
pub(crate) use write::PendingSettle;
use write::*;

/// Bytes reserved in a record for the batch and record framing, so that a
/// record of `max_message_bytes` never exceeds the broker's limit.
const RECORD_OVERHEAD: usize = 1024;

/// Records whose position the store remembers for settling them by id:
/// far more than the pages a replay has in flight, about 20 MB.
const POSITION_CACHE_ENTRIES: usize = 200_000;

/// Error texts in the headers format are cut to this, like the envelope's.
const MAX_HEADER_ERROR: usize = 64 * 1024;

/// The Kafka DLQ store: DLQ topics, a compacted ledger and a compacted blob
/// topic on a Kafka cluster. See the [crate documentation](crate) for the
/// layout and the guarantees.
pub struct KafkaStore {
    config: KafkaConfig,
    inner: Mutex<Inner>,
    /// Submitted commits not reported yet (see [`crate::pipeline`]).
    pub(crate) pipeline: crate::pipeline::Pipeline,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the clients: their configuration holds credentials.
        f.debug_struct("KafkaStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Which DLQs a refresh covers (the ledger always).
enum Scope<'a> {
    All,
    Only(&'a [String]),
}

/// The mutable part of the store.
struct Inner {
    client: Client,
    ledger: Ledger,
    ledger_next: Vec<i64>,
    ledger_tail: Vec<Tail>,
    blob_partitions: i32,
    dlqs: BTreeMap<String, DlqState>,
    /// Where records this store saw lie (settling by id).
    cache: PositionCache,
    /// DLQ partitions whose low watermark moved since the last commit, with
    /// the new low: their ledger entries below it are deleted (tombstoned)
    /// by the next commit, so that the ledger does not grow forever.
    sweeps: BTreeMap<TopicPartition, i64>,
    /// The last offset per partition of transactions committed without
    /// waiting for their markers (see [`KafkaStore::await_visible`]).
    unseen: HashMap<TopicPartition, i64>,
    /// Whether the state was ever brought up to date (a scan resumed from
    /// a cursor by a store that never asked for the watermarks must).
    refreshed: bool,
    /// The id of each DLQ topic (KIP-516), which settlement segments are
    /// keyed by; asked once per topic, and again when it was recreated.
    topic_ids: HashMap<String, String>,
}

/// FNV-1a: a stable hash for choosing partitions (never changes between
/// versions or processes, unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn pick(bytes: &[u8], partitions: i32) -> i32 {
    (fnv1a(bytes) % u64::from(partitions.max(1).unsigned_abs())) as i32
}

/// A ledger record (`None`: a tombstone) in the partition its key picks.
fn ledger_record(
    topic: &str,
    partitions: i32,
    key: String,
    value: Option<Vec<u8>>,
    timestamp_ms: i64,
) -> Outgoing {
    Outgoing {
        topic: topic.to_owned(),
        partition: pick(key.as_bytes(), partitions),
        key: Some(key.into_bytes()),
        value,
        headers: Vec::new(),
        timestamp_ms,
    }
}

/// The key of a blob chunk in the blob topic.
fn chunk_key(sha256: &str, index: usize) -> String {
    format!("{}:{index}", envelope::blob_pointer(sha256))
}

/// Whether `name` is a DLQ topic of a store with this configuration.
fn is_dlq(config: &KafkaConfig, name: &str) -> bool {
    name.starts_with(&config.dlq_prefix)
        && name != config.ledger_topic
        && name != config.blob_topic
        && valid_topic(name)
}

impl KafkaStore {
    /// Connects to the cluster and makes sure the ledger and blob topics
    /// exist (compacted; created when missing). The index is built on first
    /// use. The configuration is checked again here, so one built in code
    /// gets the same errors as a URL.
    pub fn open(config: KafkaConfig) -> Result<KafkaStore> {
        config.validate().map_err(|e| StoreError::InvalidUrl {
            url: format!("kafka://{}", config.bootstrap_servers),
            reason: e.problems.join("; "),
        })?;
        let client = Client::new(&config)?;
        let compacted = |extra: &[(&'static str, String)]| {
            let mut c = vec![
                ("cleanup.policy", "compact".to_owned()),
                (
                    "max.message.bytes",
                    (config.max_message_bytes + 4096).to_string(),
                ),
            ];
            c.extend_from_slice(extra);
            c
        };
        let ledger_partitions = match client.partitions(&config.ledger_topic)? {
            Some(n) => n,
            None => client.create_topic(
                &config.ledger_topic,
                1,
                config.replication_factor,
                &compacted(&[]),
            )?,
        };
        let blob_partitions = match client.partitions(&config.blob_topic)? {
            Some(n) => n,
            None => client.create_topic(
                &config.blob_topic,
                1,
                config.replication_factor,
                &compacted(&[]),
            )?,
        };
        Ok(KafkaStore {
            inner: Mutex::new(Inner {
                client,
                ledger: Ledger::default(),
                ledger_next: vec![0; usize::try_from(ledger_partitions).unwrap_or(1)],
                ledger_tail: vec![Tail::default(); usize::try_from(ledger_partitions).unwrap_or(1)],
                blob_partitions,
                dlqs: BTreeMap::new(),
                cache: PositionCache::new(POSITION_CACHE_ENTRIES),
                sweeps: BTreeMap::new(),
                unseen: HashMap::new(),
                refreshed: false,
                topic_ids: HashMap::new(),
            }),
            config,
            pipeline: crate::pipeline::Pipeline::default(),
        })
    }

    /// Opens the store a `kafka://` URL names, with the `DLQ_KAFKA_*`
    /// environment applied; see [`KafkaConfig::from_url`].
    pub fn open_url(url: &str) -> Result<KafkaStore> {
        let config = KafkaConfig::from_url(url).map_err(|e| StoreError::InvalidUrl {
            url: redact_url(url),
            reason: e.problems.join("; "),
        })?;
        KafkaStore::open(config)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_dlq(&self, name: &str) -> bool {
        is_dlq(&self.config, name)
    }

    fn check_dlq(&self, name: &str) -> Result<()> {
        if self.is_dlq(name) && !["checkpoint", "blob", "settled", "counted"].contains(&name) {
            return Ok(());
        }
        Err(failure(
            format!(
                "{name:?} cannot be a DLQ of this store: a DLQ is a topic named with the prefix \
                 {:?} (e.g. {}rss.events), other than the ledger ({}) and blob ({}) topics",
                self.config.dlq_prefix,
                self.config.dlq_prefix,
                self.config.ledger_topic,
                self.config.blob_topic
            ),
            false,
        ))
    }

    /// Encodes a record for its DLQ topic, within the message limit.
    fn prepare(&self, letter: &DeadLetter) -> Result<Prepared> {
        let max = self.config.max_message_bytes;
        // The Kafka key is the original key, unless it is absurdly large (it
        // is in the envelope, or its claim check, anyway).
        let key = letter.key.clone().filter(|k| k.len() <= max / 16);
        let budget = max - key.as_ref().map_or(0, Vec::len) - RECORD_OVERHEAD;
        if self.config.format == Format::Headers && letter.claim_checks.is_empty() {
            let mut cut_letter;
            let l = if letter.error.len() > MAX_HEADER_ERROR {
                cut_letter = letter.clone();
                cut_letter.error = cut(&letter.error, MAX_HEADER_ERROR);
                &cut_letter
            } else {
                letter
            };
            let headers = to_headers_format(l);
            let size = letter.payload.len()
                + headers
                    .iter()
                    .map(|h| h.name.len() + h.value.as_ref().map_or(0, Vec::len) + 16)
                    .sum::<usize>();
            if size <= budget {
                return Ok(Prepared {
                    key,
                    value: (!letter.null_payload).then(|| letter.payload.clone()),
                    headers,
                    blobs: Vec::new(),
                });
            }
            // Too large for one message: the envelope with claim checks.
        }
        let opts = EncodeOptions {
            max_bytes: budget,
            ..EncodeOptions::default()
        };
        let enc = envelope::encode(letter, &opts)?;
        Ok(Prepared {
            key,
            value: Some(enc.bytes),
            headers: Vec::new(),
            blobs: enc.blobs,
        })
    }
}

impl KafkaStore {
    /// Creates the store's producer now, if it was not yet (see
    /// [`crate::client`]'s `warm_up`).
    pub(crate) fn warm_up(&mut self) -> Result<()> {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.client.warm_up()
    }
}

impl KafkaStore {
    /// Creates a topic (not a DLQ) if it is missing, with the store's
    /// replication factor; returns its partition count.
    pub fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<i32> {
        let inner = self.lock();
        match inner.client.partitions(topic)? {
            Some(n) => Ok(n),
            None => {
                inner
                    .client
                    .create_topic(topic, partitions, self.config.replication_factor, &[])
            }
        }
    }

    /// Writes records `(key, value)` to a topic, spread over its partitions
    /// by a stable hash of the key (or round-robin without one), in one
    /// transaction when the store is transactional. For tools and demos
    /// that feed a topic; guarded producing is [`crate::processor`]'s and the
    /// producer's job.
    pub fn write_records(
        &mut self,
        topic: &str,
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    ) -> Result<usize> {
        let n = self
            .topic_partitions(topic)?
            .ok_or_else(|| failure(format!("topic {topic} does not exist"), false))?;
        let ts = Utc::now().timestamp_millis();
        let count = records.len();
        let outputs = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| Outgoing {
                topic: topic.to_owned(),
                partition: match &key {
                    Some(k) => pick(k, n),
                    None => (i as i32) % n.max(1),
                },
                key,
                value: Some(value),
                headers: Vec::new(),
                timestamp_ms: ts,
            })
            .collect();
        self.commit_with(Batch::default(), outputs, None)?;
        Ok(count)
    }

    /// Every committed record value of a topic, partition by partition.
    pub fn read_values(&self, topic: &str) -> Result<Vec<Vec<u8>>> {
        let inner = self.lock();
        let n = inner.client.partitions(topic)?.unwrap_or(0);
        let parts: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new(topic, p)).collect();
        let marks = inner.client.watermarks(&parts)?;
        let ranges: Vec<(i32, i64, i64)> = marks
            .iter()
            .map(|(tp, &(lo, hi))| (tp.partition, lo, hi))
            .collect();
        let mut out = Vec::new();
        inner.client.read(topic, &ranges, |m| {
            use rdkafka::Message as _;
            out.push(m.payload().unwrap_or_default().to_vec());
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// The DLQ of a source topic in this store: `<dlq_prefix><topic>`.
    pub fn dlq_name(&self, source_topic: &str) -> String {
        format!("{}{source_topic}", self.config.dlq_prefix)
    }

    /// The source topic a DLQ of this store is named after, if `dlq` is
    /// named with the store's prefix.
    pub fn source_topic_of<'a>(&self, dlq: &'a str) -> Option<&'a str> {
        dlq.strip_prefix(self.config.dlq_prefix.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The partition count of a topic, `None` when it does not exist.
    pub fn topic_partitions(&self, topic: &str) -> Result<Option<i32>> {
        self.lock().client.partitions(topic)
    }

    /// Creates a DLQ topic if it is missing (with the source topic's
    /// partition count), so that writers can check it up front.
    pub(crate) fn ensure_dlq_topic(&mut self, dlq: &str, source: &str) -> Result<i32> {
        self.check_dlq(dlq)?;
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.ensure_dlq(config, dlq, Some(source))
    }
}

impl DlqStore for KafkaStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Outputs to topics of this cluster share the store's
            // transaction; without transactions they are acknowledged
            // before the rest of the batch is written.
            outputs: self.config.transactions,
            outputs_before_commit: true,
            // A transactional offset commit needs the consumer's group
            // metadata, which only a live consumer has: the Kafka processor
            // passes it through its own commit path.
            positions: false,
        }
    }

    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        // Ordered after what was submitted (its records would otherwise
        // join a transaction still open).
        self.complete_all()?;
        self.commit_now(batch)
    }

    fn submit(&mut self, batch: Batch<'_>) -> Result<Submitted> {
        self.submit_batch(batch)
    }

    fn completed(&mut self, wait: bool) -> Result<Vec<(Ticket, CommitReport)>> {
        self.completed_batches(wait)
    }

    fn has_destination(&self, name: &str) -> Result<bool> {
        Ok(self.topic_partitions(name)?.is_some())
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        // A scan sees the DLQs as its first page found them: the pages
        // after it use the watermarks the first one read, which saves the
        // metadata and watermark round trips on every page of a long scan.
        let refresh = after.is_none() || !self.lock().refreshed;
        self.scan_page(selection, after, limit, refresh)
    }
    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        if !self.is_dlq(dlq) {
            return Ok(None);
        }
        let mut inner = self.lock();
        inner.refresh(&self.config, Scope::Only(&[dlq.to_owned()]))?;
        let n = inner.dlqs.get(dlq).map_or(0, |d| d.parts.len());
        for p in 0..n as i32 {
            inner.count(&self.config, dlq, p)?;
        }
        for attempt in 0..2 {
            let Some(&at) = inner.locate(&self.config, dlq, &[id])?.get(id) else {
                return Ok(None);
            };
            if let Some(f) = inner
                .client
                .fetch(dlq, at.partition, &[at.offset])?
                .into_iter()
                .next()
            {
                let record = inner.materialize(&self.config, dlq, f)?;
                if record.letter.id == id {
                    return Ok(Some(record));
                }
            }
            // The cache was wrong (the record is gone): search once.
            if attempt == 0 {
                inner.cache.forget(dlq);
            }
        }
        Ok(None)
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        let mut inner = self.lock();
        inner.refresh(&self.config, Scope::All)?;
        let names: Vec<String> = inner.dlqs.keys().cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let n = inner.dlqs.get(&name).map_or(0, |d| d.parts.len()) as i32;
            let mut s = DlqStats::empty(&name);
            for p in 0..n {
                inner.count(&self.config, &name, p)?;
                let c = inner.partition_counts(&name, p);
                s.total += c.total;
                s.pending += c.pending;
                s.parked += c.parked;
                s.replayed += c.replayed;
                s.discarded += c.discarded;
                s.archived += c.archived;
                if c.pending > 0 {
                    s.partitions.push(PartitionStats {
                        partition: p,
                        pending: c.pending,
                    });
                    if let Some(at) = inner.head(&self.config, &name, p)? {
                        s.oldest_pending_at = Some(s.oldest_pending_at.map_or(at, |t| t.min(at)));
                    }
                }
            }
            out.push(s);
        }
        inner.persist_counts(&self.config);
        Ok(out)
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        Ok(inner
            .client
            .topics()?
            .into_keys()
            .filter(|t| self.is_dlq(t))
            .collect())
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        let mut inner = self.lock();
        inner.refresh(&self.config, Scope::Only(&[]))?;
        Ok(inner.ledger.checkpoint(name).map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KafkaStore>();
    }

    #[test]
    fn dlq_partition_follows_the_source_partition() {
        let f = dlq_core::Failure::permanent("s", "c", "m");
        let mut l = DeadLetter::new("id-1", Vec::new(), &f);
        l.source.partition = Some(7);
        assert_eq!(dlq_partition(&l, 3), 1);
        assert_eq!(dlq_partition(&l, 8), 7);
        l.source.partition = None;
        let p = dlq_partition(&l, 4);
        assert_eq!(p, dlq_partition(&l, 4), "stable for retries");
        assert!((0..4).contains(&p));
    }
}
