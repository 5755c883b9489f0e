//! [`KafkaStore`]: the [`DlqStore`] implementation.
//!
//! The store keeps a small in-memory index of the DLQ topics and the ledger,
//! built by reading them once (read_committed) and then followed
//! incrementally: before each call it asks the broker for the watermarks
//! (two requests, whatever the number of partitions) and reads only what is
//! new. The index holds per record its id, failure time and source
//! partition (not its bytes), which is what deduplication, settling and
//! `stats` need; `scan` and `get` fetch the records themselves by offset.

use crate::client::{Client, Fetched, Outgoing, TxnOffsets, headers_of, timestamp_of};
use crate::config::{Format, KafkaConfig, redact_url, valid_topic};
use crate::decoded::{Decoded, DecodedCache};
use crate::ledger::{BlobEntry, CheckpointEntry, Ledger, LedgerValue, RecordEntry};
use crate::partitioner::default_partition;
use crate::retry::failure;
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

/// Bytes reserved in a record for the batch and record framing, so that a
/// record of `max_message_bytes` never exceeds the broker's limit.
const RECORD_OVERHEAD: usize = 1024;

/// Fewest records fetched at a time while a scan fills a page (it fetches
/// what the page still needs in one go when that is more).
const SCAN_CHUNK: usize = 64;

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

/// One record as the index knows it.
#[derive(Debug, Clone)]
struct Rec {
    id: Arc<str>,
    failed_at: DateTime<Utc>,
    source_partition: Option<i32>,
    /// A later copy of an id already stored: invisible to scans and stats.
    dup: bool,
}

/// What the store knows about the end of a partition it follows beyond
/// what it has read: its own writes, indexed when they were acknowledged,
/// so that the follower does not read them back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tail {
    /// Where the follower had read to when it first moved past its own
    /// records still unconfirmed by a read: they may not be visible to
    /// read_committed readers yet (their transaction markers are written
    /// after the commit returns, and another writer's open transaction can
    /// hold the last stable offset back further), so a last stable offset
    /// between this and `next` is that, not the partition truncated (which
    /// would take it below what was already read).
    own_from: Option<i64>,
    /// The offset after our last transaction's records, where its commit
    /// marker presumably is: confirmed when our next transaction's first
    /// record lands right after it (the marker must lie between the two).
    marker: Option<i64>,
}

impl Tail {
    /// Where our next own record must land for the records between to be
    /// known (nothing but our last transaction's marker).
    fn expected(&self, next: i64) -> i64 {
        match self.marker {
            Some(m) if m == next => next + 1,
            _ => next,
        }
    }

    /// Follows our own write of `span` = (first, last, count) in a partition
    /// read up to `next`: moves `next` past it when it starts where the
    /// partition was known to end and nobody else's record is among it.
    fn own_write(&mut self, next: &mut i64, (first, last, count): (i64, i64, usize), txn: bool) {
        if first != self.expected(*next) || count as i64 != last - first + 1 {
            return;
        }
        self.own_from.get_or_insert(*next);
        *next = last + 1;
        self.marker = txn.then_some(last + 1);
    }

    /// Whether a high watermark below `next` is our own writes not being
    /// visible yet.
    fn lagging(&self, hi: i64) -> bool {
        self.own_from.is_some_and(|f| hi >= f)
    }

    /// The follower saw the partition up to `hi` (and read to `next`).
    fn seen(&mut self, next: i64, hi: i64) {
        if hi >= next {
            self.own_from = None;
        }
        if self.marker.is_some_and(|m| m < next) {
            self.marker = None;
        }
    }
}

/// One partition of a DLQ topic.
#[derive(Debug, Default)]
struct PartIndex {
    /// The next offset to read.
    next: i64,
    /// Our own writes past `next`'s reads.
    tail: Tail,
    /// The low watermark last seen.
    low: i64,
    recs: BTreeMap<i64, Rec>,
}

/// One DLQ topic.
#[derive(Debug, Default)]
struct DlqIndex {
    parts: Vec<PartIndex>,
    /// Where each id's record is (its first copy).
    ids: HashMap<Arc<str>, (i32, i64)>,
    /// Later copies of ids (rare: a write retried across a crash, or two
    /// writers racing), promoted when the first copy expires.
    copies: HashMap<Arc<str>, BTreeSet<(i32, i64)>>,
}

impl DlqIndex {
    fn grow(&mut self, partitions: i32) {
        let n = usize::try_from(partitions).unwrap_or(0);
        if self.parts.len() < n {
            self.parts.resize_with(n, PartIndex::default);
        }
    }

    fn rec_mut(&mut self, (p, o): (i32, i64)) -> Option<&mut Rec> {
        self.parts.get_mut(p as usize)?.recs.get_mut(&o)
    }

    /// Adds a record read (or written) at `partition`/`offset`. The first
    /// copy of an id, by `(partition, offset)`, is the record; later ones
    /// are duplicates. Adding the same position twice is a no-op.
    fn insert(&mut self, partition: i32, offset: i64, mut rec: Rec) {
        let pos = (partition, offset);
        let Some(part) = self.parts.get(partition as usize) else {
            return;
        };
        if part.recs.contains_key(&offset) {
            return;
        }
        match self.ids.get(&rec.id).copied() {
            None => {
                self.ids.insert(rec.id.clone(), pos);
            }
            Some(first) if first < pos => {
                rec.dup = true;
                self.copies.entry(rec.id.clone()).or_default().insert(pos);
            }
            Some(first) => {
                if let Some(old) = self.rec_mut(first) {
                    old.dup = true;
                }
                self.copies.entry(rec.id.clone()).or_default().insert(first);
                self.ids.insert(rec.id.clone(), pos);
            }
        }
        if let Some(part) = self.parts.get_mut(partition as usize) {
            part.recs.insert(offset, rec);
        }
    }

    /// Forgets the records below the low watermark (deleted by retention).
    fn expire(&mut self, partition: i32, low: i64) {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return;
        };
        if low <= part.low && part.recs.first_key_value().is_none_or(|(&o, _)| o >= low) {
            part.low = part.low.max(low);
            return;
        }
        part.low = low;
        let keep = part.recs.split_off(&low);
        let gone = std::mem::replace(&mut part.recs, keep);
        // Expired copies first, so that only copies still retained are
        // promoted below.
        for (&offset, rec) in gone.iter().filter(|(_, r)| r.dup) {
            if let Some(set) = self.copies.get_mut(&rec.id) {
                set.remove(&(partition, offset));
                if set.is_empty() {
                    self.copies.remove(&rec.id);
                }
            }
        }
        for (offset, rec) in gone.into_iter().filter(|(_, r)| !r.dup) {
            if self.ids.get(&rec.id) != Some(&(partition, offset)) {
                continue;
            }
            self.ids.remove(&rec.id);
            // The next copy, if any, becomes the record.
            let next = self.copies.get_mut(&rec.id).and_then(BTreeSet::pop_first);
            if self.copies.get(&rec.id).is_some_and(BTreeSet::is_empty) {
                self.copies.remove(&rec.id);
            }
            if let Some(next) = next {
                self.ids.insert(rec.id.clone(), next);
                if let Some(r) = self.rec_mut(next) {
                    r.dup = false;
                }
            }
        }
    }

    /// Forgets a partition entirely (its topic was recreated).
    fn reset(&mut self, partition: i32, low: i64) {
        self.expire(partition, i64::MAX);
        if let Some(part) = self.parts.get_mut(partition as usize) {
            part.low = low;
            part.next = low;
            part.tail = Tail::default();
        }
    }
}

/// The follower's position in each partition, by topic and partition.
type FollowState = HashMap<(String, i32), (i64, Tail)>;

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
    dlqs: BTreeMap<String, DlqIndex>,
    /// DLQ partitions whose low watermark moved since the last commit, with
    /// the new low: their ledger entries below it are deleted (tombstoned)
    /// by the next commit, so that the ledger does not grow forever.
    sweeps: BTreeMap<(String, i32), i64>,
    /// The last offset per partition of transactions committed without
    /// waiting for their markers (see [`KafkaStore::await_visible`]).
    unseen: HashMap<(String, i32), i64>,
    /// Records the index read decoded, kept for the scan that asked.
    decoded: DecodedCache,
    /// Whether the index was ever brought up to date (a scan resumed from
    /// a cursor by a store that never read the topics must read them).
    refreshed: bool,
    /// The id of each DLQ topic (KIP-516), which settlement segments are
    /// keyed by; asked once per topic, and again when it was recreated.
    topic_ids: HashMap<String, String>,
}

/// A record prepared for its DLQ topic.
struct Prepared {
    key: Option<Vec<u8>>,
    /// `None` writes a tombstone: a null payload in the headers format.
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    blobs: Vec<Blob>,
}

/// Where a ledger entry's record is: known, or appended in this batch.
#[derive(Clone, Copy)]
enum Pos {
    Known(i32, i64),
    Appended(usize),
}

/// A ledger status entry to write once positions are known.
struct StatusWrite {
    dlq: String,
    id: String,
    outcome: Status,
    pos: Pos,
}

/// A blob to store: its chunks' indexes among the first-phase records.
struct BlobWrite {
    sha256: String,
    size: u64,
    chunks: Vec<usize>,
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

/// The DLQ partition of a record: its source partition modulo the DLQ's
/// partition count (keeps per-partition order and makes per-partition stats
/// line up with the source), else a stable hash of its id.
fn dlq_partition(letter: &DeadLetter, partitions: i32) -> i32 {
    match letter.source.partition {
        Some(p) if p >= 0 => p % partitions.max(1),
        _ => pick(letter.id.as_bytes(), partitions),
    }
}

/// The key of a blob chunk in the blob topic.
fn chunk_key(sha256: &str, index: usize) -> String {
    format!("{}:{index}", envelope::blob_pointer(sha256))
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!(" …[truncated, {} bytes in all]", text.len());
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

/// Whether `name` is a DLQ topic of a store with this configuration.
fn is_dlq(config: &KafkaConfig, name: &str) -> bool {
    name.starts_with(&config.dlq_prefix)
        && name != config.ledger_topic
        && name != config.blob_topic
        && valid_topic(name)
}

/// Decodes a DLQ record for the index; the whole record too, when the
/// scan that asked for the read can keep it.
fn decode_for_index(
    config: &KafkaConfig,
    topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
    decoded: &DecodedCache,
) -> (Rec, Option<Decoded>) {
    use rdkafka::Message as _;
    let headers = headers_of(m);
    let timestamp = timestamp_of(m);
    let letter = decode_kafka_with_prefix(
        &KafkaRecord {
            value: m.payload(),
            key: m.key(),
            headers: &headers,
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp,
        },
        &config.dlq_prefix,
    );
    let size = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
    let (failed_at, source_partition) = (letter.failed_at, letter.source.partition);
    let (id, keep): (Arc<str>, _) = if decoded.wants(size) {
        let id = Arc::from(letter.id.as_str());
        (id, Some(Decoded::new(letter, timestamp, size)))
    } else {
        (Arc::from(letter.id), None)
    };
    let rec = Rec {
        id,
        failed_at,
        source_partition,
        dup: false,
    };
    (rec, keep)
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
                sweeps: BTreeMap::new(),
                unseen: HashMap::new(),
                decoded: DecodedCache::new(config.scan_cache_bytes.unwrap_or(0)),
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
        if self.is_dlq(name) && !["checkpoint", "blob", "settled"].contains(&name) {
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

impl Inner {
    /// The ledger entries that settle `settle` now, and how many records
    /// they settle: records the index knows, whose status may move to the
    /// outcome (a record named twice is settled once). `pending` holds the
    /// segments written by the commit under way, which this one extends.
    fn settlements(
        &self,
        settle: &[Settle],
        now: DateTime<Utc>,
        pending: &mut SegmentOverlay,
    ) -> (Vec<LedgerValue>, usize) {
        let mut overlay: HashMap<(&str, &str), Status> = HashMap::new();
        let mut marks: Vec<StatusAt> = Vec::new();
        for s in settle {
            let Some(&(p, o)) = self
                .dlqs
                .get(&s.dlq)
                .and_then(|di| di.ids.get(s.id.as_str()))
            else {
                continue;
            };
            let key = (s.dlq.as_str(), s.id.as_str());
            let current = overlay
                .get(&key)
                .copied()
                .unwrap_or_else(|| self.current_status(&s.dlq, &s.id, p, o, pending));
            if can_settle(current, s.outcome) {
                overlay.insert(key, s.outcome);
                marks.push(StatusAt {
                    dlq: s.dlq.clone(),
                    id: s.id.clone(),
                    partition: p,
                    offset: o,
                    outcome: s.outcome,
                });
            }
        }
        let n = marks.len();
        (
            status_values(&self.ledger, &self.topic_ids, &marks, now, pending),
            n,
        )
    }

    /// A record's status: in the segments of the commit under way, else
    /// as the ledger says.
    fn current_status(
        &self,
        dlq: &str,
        id: &str,
        p: i32,
        o: i64,
        pending: &SegmentOverlay,
    ) -> Status {
        if let Some(tid) = self.topic_ids.get(dlq) {
            let segment = o.div_euclid(SEGMENT_OFFSETS);
            if let Some(seg) = pending.get(&(tid.clone(), p, segment)) {
                let mark = seg.get((o - segment * SEGMENT_OFFSETS) as u32);
                if let Some(status) = mark.status().filter(|s| *s != Status::Pending) {
                    return status;
                }
            }
        }
        self.status_of(dlq, id, p, o)
    }

    /// A record's status as the ledger says.
    fn status_of(&self, dlq: &str, id: &str, p: i32, o: i64) -> Status {
        let tid = self.topic_ids.get(dlq).map(String::as_str);
        self.ledger.status(dlq, tid, id, p, o).0
    }

    /// The ledger keys that records deleted by retention no longer need:
    /// record entries below the new low watermark, and whole segments.
    fn swept_keys(&self, sweeps: &BTreeMap<(String, i32), i64>) -> Vec<String> {
        let mut keys = Vec::new();
        for ((dlq, p), &low) in sweeps {
            keys.extend(
                self.ledger
                    .expired(dlq, *p, low)
                    .into_iter()
                    .map(|id| crate::ledger::record_key(dlq, &id)),
            );
            if let Some(tid) = self.topic_ids.get(dlq) {
                keys.extend(self.ledger.expired_segments(tid, *p, low));
            }
        }
        keys
    }

    /// Asks the ids of `topics` (one request) and returns those whose id
    /// changed since it was learned: recreated topics.
    fn check_topic_ids(&mut self, topics: &[&str]) -> Result<Vec<String>> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        for (topic, id) in topics.iter().zip(self.client.topic_ids(topics)?) {
            let Some(id) = id else { continue };
            match self.topic_ids.insert((*topic).to_owned(), id.clone()) {
                Some(old) if old != id => changed.push((*topic).to_owned()),
                _ => {}
            }
        }
        Ok(changed)
    }

    /// Learns the ids of the DLQ topics in `topics` not known yet.
    fn learn_topic_ids(&mut self, topics: &[&str]) -> Result<()> {
        let missing: Vec<&str> = topics
            .iter()
            .copied()
            .filter(|t| !self.topic_ids.contains_key(*t))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for (topic, id) in missing.iter().zip(self.client.topic_ids(&missing)?) {
            if let Some(id) = id {
                self.topic_ids.insert((*topic).to_owned(), id);
            }
        }
        Ok(())
    }
}

/// The ledger entries recording `statuses`: segment entries for DLQs
/// whose topic id is known, else record entries (the former format, still
/// read). `pending` holds the segments of the commit under way.
fn status_values(
    ledger: &Ledger,
    topic_ids: &HashMap<String, String>,
    statuses: &[StatusAt],
    now: DateTime<Utc>,
    pending: &mut SegmentOverlay,
) -> Vec<LedgerValue> {
    let mut values = Vec::new();
    let mut by_partition: BTreeMap<(&str, i32), Vec<(i64, Mark)>> = BTreeMap::new();
    for w in statuses {
        if topic_ids.contains_key(&w.dlq) {
            by_partition
                .entry((w.dlq.as_str(), w.partition))
                .or_default()
                .push((w.offset, Mark::settled(w.outcome)));
        } else {
            values.push(LedgerValue::Record(RecordEntry {
                dlq: w.dlq.clone(),
                id: w.id.clone(),
                outcome: w.outcome,
                dlq_partition: w.partition,
                dlq_offset: w.offset,
                at: now,
            }));
        }
    }
    for ((dlq, p), marks) in by_partition {
        let Some(tid) = topic_ids.get(dlq) else {
            continue;
        };
        values.extend(
            ledger
                .segment_entries(dlq, tid, p, &marks, pending, now)
                .into_iter()
                .map(LedgerValue::Segment),
        );
    }
    values
}

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

/// Segments written by a commit under way, by topic id, partition and
/// segment.
pub(crate) type SegmentOverlay = HashMap<(String, i32, i64), Segment>;

/// A status to record for the record at a position.
struct StatusAt {
    dlq: String,
    id: String,
    partition: i32,
    offset: i64,
    outcome: Status,
}

impl Inner {
    /// The partition count of a DLQ topic, creating it when missing: with
    /// the source topic's partition count when that topic exists, else the
    /// configured default.
    fn ensure_dlq(&mut self, config: &KafkaConfig, dlq: &str, source: Option<&str>) -> Result<i32> {
        if let Some(di) = self.dlqs.get(dlq)
            && !di.parts.is_empty()
        {
            return Ok(di.parts.len() as i32);
        }
        let n = match self.client.partitions(dlq)? {
            Some(n) => n,
            None => {
                let from_source = match source.filter(|s| valid_topic(s) && *s != dlq) {
                    Some(s) => self.client.partitions(s)?,
                    None => None,
                };
                let partitions = from_source.unwrap_or(config.default_partitions);
                let mut configs = vec![(
                    "max.message.bytes",
                    (config.max_message_bytes + 4096).to_string(),
                )];
                if let Some(ms) = config.retention_ms {
                    configs.push(("retention.ms", ms.to_string()));
                }
                self.client
                    .create_topic(dlq, partitions, config.replication_factor, &configs)?
            }
        };
        self.dlqs.entry(dlq.to_owned()).or_default().grow(n);
        self.learn_topic_ids(&[dlq])?;
        Ok(n)
    }

    /// Brings the index up to date with the DLQ topics in `scope` and with
    /// the ledger: watermarks, then only the records not read yet.
    fn refresh(&mut self, config: &KafkaConfig, scope: Scope<'_>) -> Result<()> {
        self.refreshed = true;
        let topics: BTreeMap<String, i32> = match scope {
            Scope::All => {
                let all: BTreeMap<String, i32> = self
                    .client
                    .topics()?
                    .into_iter()
                    .filter(|(t, _)| is_dlq(config, t))
                    .collect();
                self.dlqs.retain(|t, _| all.contains_key(t));
                all
            }
            Scope::Only(names) => {
                let mut found = BTreeMap::new();
                for name in names.iter().filter(|n| is_dlq(config, n)) {
                    match self.client.partitions(name)? {
                        Some(n) => {
                            found.insert(name.clone(), n);
                        }
                        None => {
                            self.dlqs.remove(name);
                        }
                    }
                }
                found
            }
        };
        // A topic deleted and created again under its name has a new id:
        // what was known of it is forgotten, and it is read afresh.
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        for topic in self.check_topic_ids(&names)? {
            tracing::warn!(topic, "DLQ topic was recreated; reading it afresh");
            if let Some(di) = self.dlqs.get_mut(&topic) {
                *di = DlqIndex::default();
            }
            self.decoded.clear();
        }
        let mut parts: Vec<(String, i32)> = Vec::new();
        for (t, &n) in &topics {
            self.dlqs.entry(t.clone()).or_default().grow(n);
            parts.extend((0..n).map(|p| (t.clone(), p)));
        }
        let ledger_partitions = self.ledger_next.len() as i32;
        parts.extend((0..ledger_partitions).map(|p| (config.ledger_topic.clone(), p)));
        let marks = self.client.watermarks(&parts)?;

        let mut recreated: Vec<String> = Vec::new();
        let Inner {
            client,
            dlqs,
            ledger,
            ledger_next,
            ledger_tail,
            sweeps,
            decoded,
            topic_ids,
            ..
        } = self;
        for (topic, &n) in &topics {
            let Some(di) = dlqs.get_mut(topic) else {
                continue;
            };
            let mut ranges = Vec::new();
            for p in 0..n {
                let Some(&(lo, hi)) = marks.get(&(topic.clone(), p)) else {
                    continue;
                };
                let next = di.parts[p as usize].next;
                if hi < next && di.parts[p as usize].tail.lagging(hi) {
                    // Our own last commit, its markers not written yet.
                    if lo > di.parts[p as usize].low {
                        sweeps.insert((topic.clone(), p), lo);
                    }
                    di.expire(p, lo);
                    continue;
                }
                if hi < next {
                    tracing::warn!(
                        topic,
                        partition = p,
                        "DLQ partition was truncated or recreated; re-reading it"
                    );
                    di.reset(p, lo);
                    decoded.drop_partition(topic, p);
                    recreated.push(topic.clone());
                }
                if lo > di.parts[p as usize].low {
                    sweeps.insert((topic.clone(), p), lo);
                }
                di.expire(p, lo);
                let part = &mut di.parts[p as usize];
                part.next = part.next.max(lo);
                if part.next < hi {
                    ranges.push((p, part.next, hi));
                }
            }
            if ranges.is_empty() {
                continue;
            }
            client.read(topic, &ranges, |m| {
                use rdkafka::Message as _;
                let (p, o) = (m.partition(), m.offset());
                let (rec, whole) = decode_for_index(config, topic, m, decoded);
                di.insert(p, o, rec);
                if let Some(d) = whole {
                    decoded.offer(topic, p, o, d);
                }
                if let Some(part) = di.parts.get_mut(p as usize) {
                    part.next = part.next.max(o + 1);
                }
                ControlFlow::Continue(())
            })?;
            for (p, _, hi) in ranges {
                let part = &mut di.parts[p as usize];
                part.next = part.next.max(hi);
            }
            for p in 0..n {
                if let (Some(&(_, hi)), Some(part)) =
                    (marks.get(&(topic.clone(), p)), di.parts.get_mut(p as usize))
                {
                    part.tail.seen(part.next, hi);
                }
            }
        }
        // A recreated topic has a new id: its settlements start afresh.
        for t in &recreated {
            topic_ids.remove(t);
        }

        let ledger_topic = &config.ledger_topic;
        let mut ranges = Vec::new();
        for (p, next) in ledger_next.iter_mut().enumerate() {
            let Some(&(lo, hi)) = marks.get(&(ledger_topic.clone(), p as i32)) else {
                continue;
            };
            if hi < *next && ledger_tail[p].lagging(hi) {
                // Our own last commit, its markers not written yet.
                continue;
            }
            if hi < *next {
                tracing::warn!(topic = %ledger_topic, "the ledger was truncated or recreated; re-reading it");
                *ledger = Ledger::default();
                ledger_next.iter_mut().for_each(|n| *n = 0);
                ledger_tail.iter_mut().for_each(|t| *t = Tail::default());
                return Err(failure(
                    format!("the ledger {ledger_topic} was recreated; retry to re-read it"),
                    true,
                ));
            }
            *next = (*next).max(lo);
            if *next < hi {
                ranges.push((p as i32, *next, hi));
            }
        }
        if !ranges.is_empty() {
            client.read(ledger_topic, &ranges, |m| {
                use rdkafka::Message as _;
                if let Err(problem) = ledger.apply_message(m.key(), m.payload()) {
                    tracing::warn!(
                        topic = %ledger_topic,
                        partition = m.partition(),
                        offset = m.offset(),
                        problem,
                        "skipping a ledger entry"
                    );
                }
                if let Some(n) = ledger_next.get_mut(m.partition() as usize) {
                    *n = (*n).max(m.offset() + 1);
                }
                ControlFlow::Continue(())
            })?;
            for (p, _, hi) in ranges {
                ledger_next[p as usize] = ledger_next[p as usize].max(hi);
            }
        }
        for (p, tail) in ledger_tail.iter_mut().enumerate() {
            if let Some(&(_, hi)) = marks.get(&(ledger_topic.clone(), p as i32)) {
                tail.seen(ledger_next[p], hi);
            }
        }
        let recreated: Vec<&str> = recreated.iter().map(String::as_str).collect();
        self.learn_topic_ids(&recreated)?;
        Ok(())
    }

    /// Where the follower stands in each partition a commit writes to (the
    /// ledger's and the DLQs'), to recognize the commit's own records after.
    fn follow_state(&self, config: &KafkaConfig, topics: &[String]) -> FollowState {
        let mut out = HashMap::new();
        for t in topics {
            if *t == config.ledger_topic {
                for (p, (&next, &tail)) in
                    self.ledger_next.iter().zip(&self.ledger_tail).enumerate()
                {
                    out.insert((t.clone(), p as i32), (next, tail));
                }
            } else if let Some(di) = self.dlqs.get(t) {
                for (p, part) in di.parts.iter().enumerate() {
                    out.insert((t.clone(), p as i32), (part.next, part.tail));
                }
            }
        }
        out
    }

    /// Moves the follower past the records a commit just wrote (they are
    /// indexed already), where nothing else can be among them and nothing
    /// was read meanwhile; elsewhere the follower reads them as usual.
    fn follow_own_writes(
        &mut self,
        config: &KafkaConfig,
        before: &FollowState,
        topics: &[String],
        positions: &[(i32, i64)],
    ) {
        let mut spans: HashMap<(&str, i32), (i64, i64, usize)> = HashMap::new();
        for (t, &(p, o)) in topics.iter().zip(positions) {
            let e = spans.entry((t.as_str(), p)).or_insert((o, o, 0));
            e.0 = e.0.min(o);
            e.1 = e.1.max(o);
            e.2 += 1;
        }
        let txn = config.transactions;
        for ((t, p), span) in spans {
            let Some(&was) = before.get(&(t.to_owned(), p)) else {
                continue;
            };
            let at = if t == config.ledger_topic {
                self.ledger_next
                    .get_mut(p as usize)
                    .zip(self.ledger_tail.get_mut(p as usize))
            } else {
                self.dlqs
                    .get_mut(t)
                    .and_then(|di| di.parts.get_mut(p as usize))
                    .map(|part| (&mut part.next, &mut part.tail))
            };
            if let Some((next, tail)) = at
                && (*next, *tail) == was
            {
                tail.own_write(next, span, txn);
            }
        }
    }

    /// A claim-check blob's bytes, from its chunks in the blob topic.
    fn read_blob(&self, config: &KafkaConfig, sha256: &str) -> Result<Option<Vec<u8>>> {
        let topic = &config.blob_topic;
        let Some(loc) = self.ledger.blob(sha256) else {
            return self.find_blob(config, sha256);
        };
        let mut out = Vec::with_capacity(usize::try_from(loc.size).unwrap_or(0));
        for (i, &(p, o)) in loc.chunks.iter().enumerate() {
            let key = chunk_key(sha256, i);
            let at = self.client.fetch(topic, p, &[o])?;
            let chunk = match at
                .into_iter()
                .find(|f| f.key.as_deref() == Some(key.as_bytes()))
            {
                Some(f) => f.value.unwrap_or_default(),
                // Compacted away: a later copy of the same chunk exists
                // (the same blob written again); it lies after this offset.
                None => match self.find_chunk(config, p, o, &key)? {
                    Some(v) => v,
                    None => return Ok(None),
                },
            };
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// The first record with `key` at or after `from` in a blob partition.
    fn find_chunk(
        &self,
        config: &KafkaConfig,
        p: i32,
        from: i64,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let topic = &config.blob_topic;
        let marks = self.client.watermarks(&[(topic.clone(), p)])?;
        let Some(&(_, hi)) = marks.get(&(topic.clone(), p)) else {
            return Ok(None);
        };
        let mut found = None;
        self.client.read(topic, &[(p, from, hi)], |m| {
            use rdkafka::Message as _;
            if m.key() == Some(key.as_bytes()) {
                found = m.payload().map(<[u8]>::to_vec);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// A blob without a locator in the ledger (a non-transactional commit
    /// interrupted between its records and its ledger entries): search the
    /// blob topic for its chunks. Slow, and only ever needed after such a
    /// failure.
    fn find_blob(&self, config: &KafkaConfig, sha256: &str) -> Result<Option<Vec<u8>>> {
        let p = pick(sha256.as_bytes(), self.blob_partitions);
        let mut out = Vec::new();
        for i in 0.. {
            match self.find_chunk(config, p, 0, &chunk_key(sha256, i))? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None if i == 0 => return Ok(None),
                None => break,
            }
        }
        tracing::warn!(sha256, "claim-check blob found without a ledger locator");
        Ok(Some(out))
    }

    /// A stored record from its fetched message.
    fn materialize(&self, config: &KafkaConfig, dlq: &str, f: Fetched) -> Result<StoredRecord> {
        let letter = decode_kafka_with_prefix(
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
        );
        self.stored(config, dlq, (f.partition, f.offset), letter, f.timestamp)
    }

    /// The stored record of a decoded DLQ record at `(partition, offset)`
    /// with Kafka timestamp `timestamp`: claim checks resolved, status from
    /// the ledger.
    fn stored(
        &self,
        config: &KafkaConfig,
        dlq: &str,
        (partition, offset): (i32, i64),
        mut letter: DeadLetter,
        timestamp: Option<DateTime<Utc>>,
    ) -> Result<StoredRecord> {
        if letter.has_claim_checks() {
            letter.resolve_claims(|c| {
                self.read_blob(config, &c.sha256)
                    .map_err(|e| ClaimError::Store {
                        pointer: c.pointer.clone(),
                        message: e.to_string(),
                    })
            })?;
        }
        let tid = self.topic_ids.get(dlq).map(String::as_str);
        let (status, settled_at) = self.ledger.status(dlq, tid, &letter.id, partition, offset);
        Ok(StoredRecord {
            dlq: dlq.to_owned(),
            status,
            stored_at: timestamp.unwrap_or(letter.failed_at),
            settled_at,
            letter,
        })
    }

    fn status(&self, dlq: &str, rec: &Rec, p: i32, o: i64) -> Status {
        self.status_of(dlq, &rec.id, p, o)
    }

    /// Whether any record selected by status lies at or after the cursor
    /// positions (DLQs in order, from `dlq`/`partition` on).
    fn more_after(&self, selection: &Selection, positions: &BTreeMap<(String, i32), i64>) -> bool {
        self.dlqs
            .iter()
            .filter(|(name, _)| selection.dlq.as_deref().is_none_or(|d| d == name.as_str()))
            .any(|(name, di)| {
                di.parts.iter().enumerate().any(|(p, part)| {
                    let p = p as i32;
                    let from = positions.get(&(name.clone(), p)).copied().unwrap_or(0);
                    part.recs
                        .range(from..)
                        .any(|(&o, r)| !r.dup && selection.wants_status(self.status(name, r, p, o)))
                })
            })
    }
}

/// `v1;<topic>/<partition>=<next offset>;…`: where each partition's scan
/// resumes (partitions not listed start at their beginning).
fn encode_cursor(positions: &BTreeMap<(String, i32), i64>) -> Cursor {
    let mut s = String::from("v1");
    for ((t, p), o) in positions {
        s.push_str(&format!(";{t}/{p}={o}"));
    }
    Cursor(s)
}

fn decode_cursor(cursor: &Cursor) -> Result<BTreeMap<(String, i32), i64>> {
    let bad = || failure(format!("invalid scan cursor {:?}", cursor.0), false);
    let mut parts = cursor.0.split(';');
    if parts.next() != Some("v1") {
        return Err(bad());
    }
    let mut out = BTreeMap::new();
    for part in parts {
        let (tp, o) = part.rsplit_once('=').ok_or_else(bad)?;
        let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
        let p: i32 = p.parse().map_err(|_| bad())?;
        let o: i64 = o.parse().map_err(|_| bad())?;
        out.insert((t.to_owned(), p), o);
    }
    Ok(out)
}

impl KafkaStore {
    /// A topic's id on the cluster (KIP-516, base64), `None` when the topic
    /// does not exist. A topic deleted and created again under the same name
    /// has a new id: state keyed by it does not carry over.
    pub fn topic_id(&self, topic: &str) -> Result<Option<String>> {
        self.lock().client.topic_id(topic)
    }

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
                .status(dlq, Some(tid), "", settled.partition, settled.offset)
                .0;
            if marked != Status::Pending {
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

    /// [`DlqStore::commit`] once nothing submitted is under way.
    pub(crate) fn commit_now(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        batch.check_supported(self.capabilities(), "kafka")?;
        let outputs = self.outgoing(batch.outputs)?;
        self.commit_with(batch, outputs, None)
    }

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
        let parts: Vec<(String, i32)> = (0..n).map(|p| (topic.to_owned(), p)).collect();
        let marks = inner.client.watermarks(&parts)?;
        let ranges: Vec<(i32, i64, i64)> = marks
            .iter()
            .map(|((_, p), &(lo, hi))| (*p, lo, hi))
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

    /// The records of [`Batch::outputs`], placed: the partition asked for
    /// (modulo the topic's partition count, so that a record keeps its
    /// source partition where the target has as many), else Kafka's default
    /// partitioner for a keyed record, else spread round robin. A
    /// destination topic that does not exist is an error before anything
    /// is written.
    pub(crate) fn outgoing(&self, outputs: &[Output]) -> Result<Vec<Outgoing>> {
        let ts = Utc::now().timestamp_millis();
        let mut partitions: HashMap<&str, i32> = HashMap::new();
        let mut placed = Vec::with_capacity(outputs.len());
        for (i, o) in outputs.iter().enumerate() {
            let n = match partitions.get(o.destination.as_str()) {
                Some(&n) => n,
                None => {
                    let n = self.topic_partitions(&o.destination)?.ok_or_else(|| {
                        failure(format!("topic {} does not exist", o.destination), false)
                    })?;
                    partitions.insert(&o.destination, n);
                    n
                }
            };
            let partition = match (o.partition, &o.key) {
                (Some(p), _) => p.rem_euclid(n.max(1)),
                (None, Some(key)) => default_partition(key, n),
                (None, None) => (i as i32) % n.max(1),
            };
            placed.push(Outgoing {
                topic: o.destination.clone(),
                partition,
                key: o.key.clone(),
                value: o.value.clone(),
                headers: o.headers.clone(),
                timestamp_ms: ts,
            });
        }
        Ok(placed)
    }

    /// A commit that also writes `outputs` and, when given, commits the
    /// consumer's `offsets`, all in the store's one transaction: what an
    /// exactly-once processor needs (its outputs, its dead letters, their
    /// ledger entries and its source offsets, atomically).
    pub(crate) fn commit_with(
        &mut self,
        batch: Batch<'_>,
        outputs: Vec<Outgoing>,
        offsets: Option<TxnOffsets<'_>>,
    ) -> Result<CommitReport> {
        for e in batch.append {
            self.check_dlq(&e.dlq)?;
        }
        // Encode first: a record that cannot be encoded fails the batch
        // before anything is written.
        let prepared: Vec<Prepared> = batch
            .append
            .iter()
            .map(|e| self.prepare(&e.letter))
            .collect::<Result<_>>()?;
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Without transactions, outputs are acknowledged before the ledger
        // entries that settle their records are written (at least once).
        let outputs_first = !outputs.is_empty() && !config.transactions;

        let mut scope: BTreeSet<String> = BTreeSet::new();
        for e in batch.append {
            if !scope.contains(&e.dlq) {
                let source = e
                    .letter
                    .source
                    .topic
                    .clone()
                    .or_else(|| e.dlq.strip_prefix(&config.dlq_prefix).map(str::to_owned));
                inner.ensure_dlq(config, &e.dlq, source.as_deref())?;
                scope.insert(e.dlq.clone());
            }
        }
        scope.extend(batch.settle.iter().map(|s| s.dlq.clone()));
        let scope: Vec<String> = scope.into_iter().collect();
        inner.refresh(config, Scope::Only(&scope))?;

        let now = Utc::now();
        let ts = now.timestamp_millis();
        let mut report = CommitReport::default();
        let mut first: Vec<Outgoing> = outputs;
        // (index in batch.append, index in `first`) of each record written.
        let mut appended: Vec<(usize, usize)> = Vec::new();
        // (dlq, id) -> index in `first` of the records written by this batch.
        let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
        let mut blobs: Vec<BlobWrite> = Vec::new();
        let mut planned_blobs: HashSet<String> = HashSet::new();
        let chunk_size = config.max_message_bytes - RECORD_OVERHEAD;

        for (i, (entry, prep)) in batch.append.iter().zip(prepared).enumerate() {
            let key = (entry.dlq.as_str(), entry.letter.id.as_str());
            let stored = inner
                .dlqs
                .get(&entry.dlq)
                .is_some_and(|di| di.ids.contains_key(entry.letter.id.as_str()));
            if stored || in_batch.contains_key(&key) {
                report.duplicates += 1;
                continue;
            }
            for blob in prep.blobs {
                if inner.ledger.blob(&blob.sha256).is_some()
                    || !planned_blobs.insert(blob.sha256.clone())
                {
                    continue;
                }
                let p = pick(blob.sha256.as_bytes(), inner.blob_partitions);
                let mut chunks = Vec::new();
                let pieces: Vec<&[u8]> = if blob.bytes.is_empty() {
                    vec![&[][..]]
                } else {
                    blob.bytes.chunks(chunk_size).collect()
                };
                for (c, piece) in pieces.into_iter().enumerate() {
                    chunks.push(first.len());
                    first.push(Outgoing {
                        topic: config.blob_topic.clone(),
                        partition: p,
                        key: Some(chunk_key(&blob.sha256, c).into_bytes()),
                        value: Some(piece.to_vec()),
                        headers: Vec::new(),
                        timestamp_ms: ts,
                    });
                }
                blobs.push(BlobWrite {
                    size: blob.bytes.len() as u64,
                    sha256: blob.sha256,
                    chunks,
                });
            }
            let partitions = inner
                .dlqs
                .get(&entry.dlq)
                .map_or(1, |di| di.parts.len() as i32);
            let partition = dlq_partition(&entry.letter, partitions);
            in_batch.insert(key, first.len());
            appended.push((i, first.len()));
            first.push(Outgoing {
                topic: entry.dlq.clone(),
                partition,
                key: prep.key,
                value: prep.value,
                headers: prep.headers,
                timestamp_ms: ts,
            });
            report.appended += 1;
        }

        // Statuses: appended records that do not start pending, then the
        // settlements, each checked against the status it has by then.
        let mut writes: Vec<StatusWrite> = Vec::new();
        let mut overlay: HashMap<(String, String), Status> = HashMap::new();
        for &(i, fi) in &appended {
            let e: &Entry = &batch.append[i];
            overlay.insert((e.dlq.clone(), e.letter.id.clone()), e.status);
            if e.status != Status::Pending {
                writes.push(StatusWrite {
                    dlq: e.dlq.clone(),
                    id: e.letter.id.clone(),
                    outcome: e.status,
                    pos: Pos::Appended(fi),
                });
            }
        }
        for s in batch.settle {
            let key = (s.dlq.clone(), s.id.clone());
            let (current, pos) = if let Some(&fi) = in_batch.get(&(s.dlq.as_str(), s.id.as_str())) {
                (
                    overlay.get(&key).copied().unwrap_or(Status::Pending),
                    Pos::Appended(fi),
                )
            } else if let Some(&(p, o)) = inner
                .dlqs
                .get(&s.dlq)
                .and_then(|di| di.ids.get(s.id.as_str()))
            {
                let current = overlay
                    .get(&key)
                    .copied()
                    .unwrap_or_else(|| inner.status_of(&s.dlq, &s.id, p, o));
                (current, Pos::Known(p, o))
            } else {
                continue;
            };
            if can_settle(current, s.outcome) {
                overlay.insert(key, s.outcome);
                writes.push(StatusWrite {
                    dlq: s.dlq.clone(),
                    id: s.id.clone(),
                    outcome: s.outcome,
                    pos,
                });
                report.settled += 1;
            }
        }
        let checkpoint = batch.checkpoint.map(|(name, value)| CheckpointEntry {
            checkpoint: name.to_owned(),
            value: value.to_owned(),
            at: now,
        });
        if first.is_empty() && writes.is_empty() && checkpoint.is_none() {
            return Ok(report);
        }

        // Ledger entries of records deleted by retention, tombstoned in
        // this commit.
        let sweeps = std::mem::take(&mut inner.sweeps);
        let tombstones = inner.swept_keys(&sweeps);
        let wait_between = outputs_first
            || !blobs.is_empty()
            || writes.iter().any(|w| matches!(w.pos, Pos::Appended(_)));
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = config.ledger_topic.clone();
        let mut values: Vec<LedgerValue> = Vec::new();
        let mut topics_written: Vec<String> = first.iter().map(|o| o.topic.clone()).collect();
        let mut follow_topics: Vec<String> = scope.clone();
        follow_topics.push(ledger_topic.clone());
        let before = inner.follow_state(config, &follow_topics);
        let (ledger, topic_ids) = (&inner.ledger, &inner.topic_ids);
        let mut segments = SegmentOverlay::new();
        let written = inner.client.write(first, wait_between, offsets, |pos| {
            let at = |i: usize| pos.get(i).copied().unwrap_or((-1, -1));
            for b in &blobs {
                values.push(LedgerValue::Blob(BlobEntry {
                    blob: b.sha256.clone(),
                    size: b.size,
                    chunks: b.chunks.iter().map(|&i| at(i)).collect(),
                    at: now,
                }));
            }
            let statuses: Vec<StatusAt> = writes
                .iter()
                .map(|w| {
                    let (partition, offset) = match w.pos {
                        Pos::Known(p, o) => (p, o),
                        Pos::Appended(i) => at(i),
                    };
                    StatusAt {
                        dlq: w.dlq.clone(),
                        id: w.id.clone(),
                        partition,
                        offset,
                        outcome: w.outcome,
                    }
                })
                .collect();
            values.extend(status_values(
                ledger,
                topic_ids,
                &statuses,
                now,
                &mut segments,
            ));
            if let Some(c) = &checkpoint {
                values.push(LedgerValue::Checkpoint(c.clone()));
            }
            let entries = values.iter().map(|v| (v.key(), Some(v.to_json())));
            let deletes = tombstones.iter().map(|k| (k.clone(), None));
            let out: Vec<Outgoing> = entries
                .chain(deletes)
                .map(|(key, value)| ledger_record(&ledger_topic, ledger_partitions, key, value, ts))
                .collect();
            topics_written.extend(std::iter::repeat_n(ledger_topic.clone(), out.len()));
            out
        });
        let positions = match written {
            Ok(p) => p,
            Err(e) => {
                // Sweep again next time.
                inner.sweeps.extend(sweeps);
                return Err(e);
            }
        };

        if config.transactions {
            let mut last: HashMap<(String, i32), i64> = HashMap::new();
            for (out, &(p, o)) in topics_written.iter().zip(&positions) {
                let e = last.entry((out.clone(), p)).or_insert(o);
                *e = (*e).max(o);
            }
            inner.client.await_visible(&last);
        }

        // Committed: index what was written (the follower will read it
        // again later and find it already there).
        for &(i, fi) in &appended {
            let e = &batch.append[i];
            let Some(&(p, o)) = positions.get(fi) else {
                continue;
            };
            if let Some(di) = inner.dlqs.get_mut(&e.dlq) {
                di.grow(p + 1);
                di.insert(
                    p,
                    o,
                    Rec {
                        id: Arc::from(e.letter.id.as_str()),
                        // The precision of the envelope, as a reader
                        // of the log will see it.
                        failed_at: DateTime::from_timestamp_millis(
                            e.letter.failed_at.timestamp_millis(),
                        )
                        .unwrap_or(e.letter.failed_at),
                        source_partition: e.letter.source.partition,
                        dup: false,
                    },
                );
            }
        }
        for v in values {
            inner.ledger.apply(v);
        }
        for key in &tombstones {
            let _ = inner.ledger.apply_message(Some(key.as_bytes()), None);
        }
        inner.follow_own_writes(config, &before, &topics_written, &positions);
        Ok(report)
    }

    /// Starts a commit that settles records this store has just scanned
    /// and writes `outputs`, in one transaction when the store is
    /// transactional, without waiting for it: the caller scans the next
    /// page meanwhile, then calls [`KafkaStore::finish_settle`] (before any
    /// other commit). Used by the replayer.
    ///
    /// Unlike [`DlqStore::commit`], it does not ask the broker for the
    /// DLQs' state first: the statuses it checks are those the scan that
    /// selected the records just read (a refresh in between would narrow,
    /// not close, the window in which a concurrent writer could settle them
    /// too). Nor does it wait for the transaction markers to become visible
    /// to other readers: the store indexes its own writes, and
    /// [`KafkaStore::await_visible`] waits once at the end.
    pub(crate) fn start_settle(
        &mut self,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<PendingSettle> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        let ts = now.timestamp_millis();
        let mut report = CommitReport::default();
        let mut segments = SegmentOverlay::new();
        let (values, settled) = inner.settlements(settle, now, &mut segments);
        report.settled += settled;
        let sweeps = std::mem::take(&mut inner.sweeps);
        let tombstones = inner.swept_keys(&sweeps);
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = &config.ledger_topic;
        let mut records = outputs;
        let entries = values.iter().map(|v| (v.key(), Some(v.to_json())));
        let deletes = tombstones.iter().map(|k| (k.clone(), None));
        records.extend(
            entries
                .chain(deletes)
                .map(|(key, value)| ledger_record(ledger_topic, ledger_partitions, key, value, ts)),
        );
        let topics: Vec<String> = records.iter().map(|r| r.topic.clone()).collect();
        let before = inner.follow_state(config, std::slice::from_ref(ledger_topic));
        if records.is_empty() {
            inner.sweeps.extend(sweeps);
            return Ok(PendingSettle {
                report,
                values,
                tombstones,
                topics,
                before,
                sweeps: BTreeMap::new(),
                started: false,
                segments,
            });
        }
        if let Err(e) = inner.client.start_write(records) {
            inner.sweeps.extend(sweeps);
            return Err(e);
        }
        Ok(PendingSettle {
            report,
            values,
            tombstones,
            topics,
            before,
            sweeps,
            started: true,
            segments,
        })
    }

    /// Adds more settlements and outputs to the write
    /// [`KafkaStore::start_settle`] started: into its transaction when the
    /// store is transactional, so that one commit covers several pages. On
    /// an error the whole write is abandoned (its transaction aborted).
    pub(crate) fn extend_settle(
        &mut self,
        mut pending: PendingSettle,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<PendingSettle> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        let ts = now.timestamp_millis();
        // Records settled earlier in this write are not in the ledger yet:
        // their segments are in the write's overlay, which this one extends.
        let (values, settled) = inner.settlements(settle, now, &mut pending.segments);
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = &config.ledger_topic;
        let mut records = outputs;
        records.extend(values.iter().map(|v| {
            ledger_record(
                ledger_topic,
                ledger_partitions,
                v.key(),
                Some(v.to_json()),
                ts,
            )
        }));
        if records.is_empty() {
            return Ok(pending);
        }
        let topics = records.iter().map(|r| r.topic.clone());
        pending.topics.extend(topics);
        let sent = if pending.started {
            inner.client.extend_write(records)
        } else {
            inner.client.start_write(records)
        };
        if let Err(e) = sent {
            inner.sweeps.extend(std::mem::take(&mut pending.sweeps));
            return Err(e);
        }
        pending.started = true;
        pending.report.settled += settled;
        pending.values.extend(values);
        Ok(pending)
    }

    /// Waits for the commit [`KafkaStore::start_settle`] started and
    /// commits it; on success the settlements are in the index.
    pub(crate) fn finish_settle(&mut self, pending: PendingSettle) -> Result<CommitReport> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !pending.started {
            return Ok(pending.report);
        }
        let positions = match inner.client.finish_write() {
            Ok(p) => p,
            Err(e) => {
                inner.sweeps.extend(pending.sweeps);
                return Err(e);
            }
        };
        if config.transactions {
            let mut last: HashMap<(String, i32), i64> = HashMap::new();
            for (t, &(p, o)) in pending.topics.iter().zip(&positions) {
                let e = last.entry((t.clone(), p)).or_insert(o);
                *e = (*e).max(o);
            }
            for (k, o) in last {
                let e = inner.unseen.entry(k).or_insert(o);
                *e = (*e).max(o);
            }
        }
        for v in pending.values {
            inner.ledger.apply(v);
        }
        for key in &pending.tombstones {
            let _ = inner.ledger.apply_message(Some(key.as_bytes()), None);
        }
        inner.follow_own_writes(config, &pending.before, &pending.topics, &positions);
        Ok(pending.report)
    }

    /// Whether the write of [`KafkaStore::start_settle`] is acknowledged
    /// (or failed), so that [`KafkaStore::finish_settle`] returns at once.
    pub(crate) fn settle_reported(&mut self) -> bool {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.client.write_reported()
    }

    /// Waits until read_committed readers elsewhere can see every record
    /// committed by [`KafkaStore::start_settle`] so far (bounded by the
    /// store's timeout).
    pub(crate) fn await_visible(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let last = std::mem::take(&mut inner.unseen);
        if !last.is_empty() {
            inner.client.await_visible(&last);
        }
    }
}

/// A record a scan looks at: kept decoded from the index's read, or read
/// again. Held only for one chunk of a scan; boxing the larger variant would
/// cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
enum Found {
    Decoded(Decoded),
    Fetched(Fetched),
}

/// A commit started by [`KafkaStore::start_settle`].
pub(crate) struct PendingSettle {
    report: CommitReport,
    values: Vec<LedgerValue>,
    tombstones: Vec<String>,
    topics: Vec<String>,
    before: FollowState,
    sweeps: BTreeMap<(String, i32), i64>,
    started: bool,
    /// The segments this write records, as they will stand.
    segments: SegmentOverlay,
}

impl PendingSettle {
    /// Records this commit settles (so far).
    pub(crate) fn settled(&self) -> usize {
        self.report.settled
    }
}

impl KafkaStore {
    /// A page of [`DlqStore::scan`]; without `refresh`, from the index as
    /// it stands (brought up to date by an earlier call and by the store's
    /// own commits), which saves the round trips for metadata and
    /// watermarks on every page of a long scan.
    pub(crate) fn scan_page(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
        refresh: bool,
    ) -> Result<ScanPage> {
        let mut positions = match after {
            Some(c) => decode_cursor(c)?,
            None => BTreeMap::new(),
        };
        let mut inner = self.lock();
        if after.is_none() {
            // A new scan: what an earlier one left is stale.
            inner.decoded.clear();
        }
        let refreshed = match &selection.dlq {
            Some(d) if !self.is_dlq(d) => return Ok(ScanPage::default()),
            _ if !refresh => Ok(()),
            dlq => {
                inner.decoded.filling = true;
                let r = match dlq {
                    Some(d) => inner.refresh(&self.config, Scope::Only(std::slice::from_ref(d))),
                    None => inner.refresh(&self.config, Scope::All),
                };
                inner.decoded.filling = false;
                r
            }
        };
        refreshed?;

        let mut page = ScanPage::default();
        if limit == 0 {
            page.next = Some(encode_cursor(&positions));
            return Ok(page);
        }
        let inner = &mut *inner;
        let names: Vec<String> = inner
            .dlqs
            .keys()
            .filter(|n| selection.dlq.as_deref().is_none_or(|d| d == n.as_str()))
            .cloned()
            .collect();
        for name in names {
            let Some(di) = inner.dlqs.get(&name) else {
                continue;
            };
            for (p, part) in di.parts.iter().enumerate() {
                let p = p as i32;
                let mut pos = positions.get(&(name.clone(), p)).copied().unwrap_or(0);
                inner.decoded.drop_below(&name, p, pos);
                loop {
                    let candidates: Vec<i64> = part
                        .recs
                        .range(pos..)
                        .filter(|(o, r)| {
                            !r.dup && selection.wants_status(inner.status(&name, r, p, **o))
                        })
                        .map(|(o, _)| *o)
                        .take(SCAN_CHUNK.max(limit.saturating_sub(page.records.len())))
                        .collect();
                    let Some(&last) = candidates.last() else {
                        break;
                    };
                    // Kept from the index's read where it could, read
                    // again where not.
                    let mut found: Vec<(i64, Found)> = Vec::with_capacity(candidates.len());
                    let mut missing: Vec<i64> = Vec::new();
                    for &o in &candidates {
                        match inner.decoded.take(&name, p, o) {
                            Some(d) => found.push((o, Found::Decoded(d))),
                            None => missing.push(o),
                        }
                    }
                    if !missing.is_empty() {
                        let fetched = inner.client.fetch(&name, p, &missing)?;
                        found.extend(fetched.into_iter().map(|f| (f.offset, Found::Fetched(f))));
                        found.sort_by_key(|(o, _)| *o);
                    }
                    let mut found = found.into_iter();
                    while let Some((offset, item)) = found.next() {
                        let record = match item {
                            Found::Decoded(d) => inner.stored(
                                &self.config,
                                &name,
                                (p, offset),
                                d.letter,
                                d.timestamp,
                            )?,
                            Found::Fetched(f) => inner.materialize(&self.config, &name, f)?,
                        };
                        pos = offset + 1;
                        if selection.matches(&record) {
                            page.records.push(record);
                            if page.records.len() >= limit {
                                // What the page had no room for stays for
                                // the next one.
                                for (o, item) in found {
                                    if let Found::Decoded(d) = item {
                                        inner.decoded.put_back(&name, p, o, d);
                                    }
                                }
                                positions.insert((name.clone(), p), pos);
                                if inner.more_after(selection, &positions) {
                                    page.next = Some(encode_cursor(&positions));
                                } else {
                                    inner.decoded.clear();
                                }
                                return Ok(page);
                            }
                        }
                    }
                    pos = last + 1;
                }
                positions.insert((name.clone(), p), pos.max(part.next));
            }
        }
        inner.decoded.clear();
        Ok(page)
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
        // A scan sees the DLQs as its first page found them (and the
        // store's own commits since): the pages after it are read from the
        // index as it stands, which saves the metadata and watermark round
        // trips on every page of a long scan.
        let refresh = after.is_none() || !self.lock().refreshed;
        self.scan_page(selection, after, limit, refresh)
    }
    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        if !self.is_dlq(dlq) {
            return Ok(None);
        }
        let mut inner = self.lock();
        inner.refresh(&self.config, Scope::Only(&[dlq.to_owned()]))?;
        let Some(&(p, o)) = inner.dlqs.get(dlq).and_then(|di| di.ids.get(id)) else {
            return Ok(None);
        };
        let Some(f) = inner.client.fetch(dlq, p, &[o])?.into_iter().next() else {
            return Ok(None);
        };
        inner.materialize(&self.config, dlq, f).map(Some)
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        let mut inner = self.lock();
        inner.refresh(&self.config, Scope::All)?;
        let mut out = Vec::with_capacity(inner.dlqs.len());
        for (name, di) in &inner.dlqs {
            let mut s = DlqStats::empty(name);
            let mut by_source: BTreeMap<i32, u64> = BTreeMap::new();
            for (p, part) in di.parts.iter().enumerate() {
                for (&o, rec) in &part.recs {
                    if rec.dup {
                        continue;
                    }
                    s.total += 1;
                    match inner.status(name, rec, p as i32, o) {
                        Status::Pending => {
                            s.pending += 1;
                            *by_source
                                .entry(rec.source_partition.unwrap_or(-1))
                                .or_default() += 1;
                            let at = rec.failed_at;
                            s.oldest_pending_at =
                                Some(s.oldest_pending_at.map_or(at, |t| t.min(at)));
                        }
                        Status::Parked => s.parked += 1,
                        Status::Replayed => s.replayed += 1,
                        Status::Discarded => s.discarded += 1,
                    }
                }
            }
            s.partitions = by_source
                .into_iter()
                .map(|(partition, pending)| PartitionStats { partition, pending })
                .collect();
            out.push(s);
        }
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

    fn rec(id: &str) -> Rec {
        Rec {
            id: Arc::from(id),
            failed_at: Utc::now(),
            source_partition: Some(0),
            dup: false,
        }
    }

    #[test]
    fn first_copy_of_an_id_wins_and_later_ones_are_duplicates() {
        let mut di = DlqIndex::default();
        di.grow(2);
        di.insert(0, 5, rec("a"));
        di.insert(0, 9, rec("a"));
        di.insert(0, 5, rec("a"));
        assert_eq!(di.ids[&Arc::from("a")], (0, 5));
        assert!(di.parts[0].recs[&9].dup);
        // A copy at a lower position found later takes over.
        di.insert(0, 2, rec("a"));
        assert_eq!(di.ids[&Arc::from("a")], (0, 2));
        assert!(di.parts[0].recs[&5].dup);
        // Expiring the first copy promotes the next one.
        di.expire(0, 3);
        assert_eq!(di.ids[&Arc::from("a")], (0, 5));
        assert!(!di.parts[0].recs[&5].dup);
        di.expire(0, 100);
        assert!(di.ids.is_empty() && di.copies.is_empty());
    }

    #[test]
    fn the_store_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<KafkaStore>();
    }

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        let mut m = BTreeMap::new();
        m.insert(("dlq.a.b".to_owned(), 0), 5);
        m.insert(("dlq.c".to_owned(), 12), 0);
        let c = encode_cursor(&m);
        assert_eq!(decode_cursor(&c).expect("decode"), m);
        assert!(decode_cursor(&Cursor("17".into())).is_err());
        assert!(decode_cursor(&Cursor("v1;x=1".into())).is_err());
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
