//! The guarded Kafka processor: consume a topic in a consumer group, run a
//! handler, write its output to a topic and its failures to a DLQ topic.
//!
//! # Delivery semantics
//!
//! **At-least-once** ([`run_at_least_once`], the default): a source offset is
//! stored for commit only after the output or DLQ write of that record *and
//! of every earlier record of its partition* is acknowledged by the broker
//! (the highest contiguous acknowledged offset; `enable.auto.offset.store` is
//! off). A crash replays what was not committed, so records may be written
//! twice, never lost. A delivery that times out counts as not delivered and
//! is sent again; an output that cannot be delivered at all (too large, no
//! such topic, not authorized) goes to the DLQ; a DLQ write that fails is
//! retried until it succeeds — the partition's lag grows, nothing is skipped.
//!
//! Dead letters are written through the [`KafkaStore`] (so they get its
//! deduplication, ledger entries for parked records and claim-check blobs),
//! in batches, by a writer thread of their own, so that a store commit never
//! stalls the other partitions; their source offsets wait for the batch's
//! commit like outputs wait for their acknowledgement.
//! [`run_at_least_once_to`] writes them to another store instead (an SQS
//! queue), on the same terms. A store that is down makes the writer retry
//! with backoff: those partitions' commits stall (their lag grows), nothing
//! is skipped.
//!
//! **Exactly-once** ([`run_exactly_once`]): each batch's outputs, dead letters
//! (with their ledger entries) and source offsets are committed in one Kafka
//! transaction — the store's — so `read_committed` readers see every record
//! exactly once. When a commit fails the store aborts it (or, for a fatal or
//! fenced producer, or a commit whose outcome is unknown since librdkafka
//! lacks KIP-890, drops the producer and creates a new one), and the consumer
//! rewinds to the batch start and processes it again.
//!
//! # Stopping
//!
//! Both loops run until `stop` is set (a caller's signal handler sets it)
//! or, with [`ProcessorConfig::stop_when_idle`], until the source is
//! drained — measured: every partition caught up to its end — or the run
//! stalls with lag left. A stop finishes what is in flight (at-least-once:
//! outputs awaiting their acknowledgement and dead letters awaiting their
//! store write, for at most 60 s; exactly-once: the batch whose transaction
//! is open), commits, and returns `Ok`; a record waiting for a retry is not
//! committed and is processed again by the next run.
//! [`ProcessorStats::stop`], [`ProcessorStats::caught_up`] and
//! [`ProcessorStats::lag`] say how the run ended.
//!
//! With [`ProcessorConfig::group_instance_id`] (static membership), an
//! instance restarted after a crash takes its partitions back at once: the
//! broker replaces the old member with the same instance id instead of
//! waiting out its session.
//!
//! # Ordering and retries
//!
//! Order is kept per partition: while a record of a partition waits for a
//! retry, later records of that partition wait behind it (the partition is
//! paused once its backlog is large), and every other partition goes on, so
//! one slow record never stalls the pipeline. In exactly-once mode retries
//! run inside the batch.

use crate::KafkaStore;
use crate::client::Outgoing;
use crate::position::PartitionOffset;
use crate::retry::{Access, Health, Redactor};
use dlq_core::envelope::{DeadLetter, Header, Source};
use dlq_core::process::{Handler, ProcessorCounters};
use dlq_core::retry::{Decision, RetryPolicy, RetryState};
use dlq_core::store::{Batch, DlqStore, Entry};
use dlq_core::{Failure, Status};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// How a processor runs.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// The topic to consume.
    pub source_topic: String,
    /// The consumer group.
    pub group_id: String,
    /// Where handled records go.
    pub output_topic: String,
    /// Where failed records go (`dlq.<source>` by default).
    pub dlq_topic: String,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// A record replayed more often than this and failing again is parked.
    pub max_replays: u32,
    /// Exactly-once: records per transaction.
    pub batch_size: usize,
    /// Exactly-once: longest wait to fill a batch.
    pub batch_timeout: Duration,
    /// Exactly-once: the transactional id (stable per processor instance).
    pub transactional_id: String,
    /// Stop once the source is drained (for batch jobs and tests): every
    /// partition of the source caught up to its end (measured: end offsets
    /// against this instance's positions and the group's committed offsets)
    /// with nothing in flight, for this long. A run that makes no progress
    /// for this long (no record, no lag that shrinks; before the first
    /// assignment at least [`JOIN_ALLOWANCE`]) while lag is left stops too,
    /// and says so: [`ProcessorStats::stop`] is [`Stop::Stalled`] and
    /// [`ProcessorStats::lag`] names the partitions.
    pub stop_when_idle: Option<Duration>,
    /// Static group membership (`group.instance.id`, KIP-345): an instance
    /// restarted with the same id gets its partitions back at once, without
    /// waiting for its crashed predecessor's session to time out. `None`:
    /// dynamic membership.
    pub group_instance_id: Option<String>,
    /// Most records waiting behind a retry per partition before the
    /// partition is paused.
    pub max_backlog: usize,
    /// At-least-once: dead letters per store commit.
    pub dlq_batch: usize,
    /// At-least-once: longest a dead letter waits for its batch's commit.
    pub dlq_linger: Duration,
}

impl ProcessorConfig {
    /// A config with defaults for the given topics and group.
    pub fn new(source_topic: &str, group_id: &str, output_topic: &str) -> Self {
        ProcessorConfig {
            source_topic: source_topic.to_owned(),
            group_id: group_id.to_owned(),
            output_topic: output_topic.to_owned(),
            dlq_topic: format!("dlq.{source_topic}"),
            retry: RetryPolicy::default(),
            max_replays: 3,
            batch_size: 1000,
            batch_timeout: Duration::from_millis(100),
            transactional_id: format!("dlq-processor-{group_id}-{source_topic}"),
            stop_when_idle: None,
            group_instance_id: None,
            max_backlog: 10_000,
            dlq_batch: 500,
            dlq_linger: Duration::from_millis(100),
        }
    }
}

/// What a processor run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessorStats {
    /// Records consumed (a record consumed again after an abort counts again).
    pub consumed: u64,
    /// Records written to the output topic.
    pub delivered: u64,
    /// Records written to the DLQ.
    pub dead_lettered: u64,
    /// Of those, parked (failed replays past the limit).
    pub parked: u64,
    /// Retry attempts of the handler.
    pub retries: u64,
    /// Records that succeeded on a retry.
    pub recovered_by_retry: u64,
    /// Deliveries that failed and were sent again.
    pub redeliveries: u64,
    /// Exactly-once: transactions committed.
    pub transactions: u64,
    /// Exactly-once: transactions aborted (and their batch reprocessed).
    pub aborts: u64,
    /// Dead letters per error class.
    pub by_error_class: BTreeMap<String, u64>,
    /// Why the run ended.
    pub stop: Stop,
    /// Whether every partition of the source was caught up when the run
    /// ended (measured after the last commit).
    pub caught_up: bool,
    /// The partitions with records left when the run ended (empty when
    /// caught up, or when the lag could not be measured).
    pub lag: Vec<PartitionLag>,
}

/// Why a processor run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The stop flag was set (a signal).
    #[default]
    Requested,
    /// `stop_when_idle`: the source was drained.
    Drained,
    /// `stop_when_idle`: no progress while lag was left (a partition held
    /// by another member, a partition not assigned, a stuck record).
    Stalled,
}

/// The records left on one partition of the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// Records between this group's position and the end of the partition.
    pub lag: i64,
    /// Whether this instance owned the partition (else another member of
    /// the group, or none, held it).
    pub owned: bool,
}

impl std::fmt::Display for PartitionLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whose = if self.owned {
            "owned by this instance"
        } else {
            "not assigned to this instance"
        };
        write!(
            f,
            "partition {}: {} records ({whose})",
            self.partition, self.lag
        )
    }
}

/// A processor failed; it can be restarted (nothing committed is lost).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A Kafka client call failed.
    #[error("kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The error.
        source: KafkaError,
    },
    /// The DLQ store failed in a way a retry cannot fix.
    #[error("DLQ store: {0}")]
    Store(#[from] dlq_core::store::StoreError),
    /// The setup is wrong (e.g. the output topic does not exist).
    #[error("{0}")]
    Config(String),
    /// The cluster refused the credentials or the operation
    /// (authentication or authorization): no retry helps.
    #[error("{0}")]
    Denied(String),
}

fn kafka(operation: &'static str) -> impl FnOnce(KafkaError) -> ProcessorError {
    move |source| ProcessorError::Kafka { operation, source }
}

/// The lineage headers a replay sets (defined with the envelope, read here).
pub use dlq_core::envelope::{FIRST_FAILED_AT_HEADER, REPLAY_OF_HEADER, REPLAYS_HEADER};

/// A consumed record, detached from the consumer.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// The value was null (a tombstone), not empty: its dead letter says so.
    null_value: bool,
    headers: Vec<Header>,
    timestamp: Option<i64>,
}

impl Record {
    fn from_message(m: &BorrowedMessage<'_>) -> Record {
        let headers = crate::headers::of(m);
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            null_value: m.payload().is_none(),
            headers,
            timestamp: m.timestamp().to_millis(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Builds the dead letter for a record that failed for good; a replayed
/// record (with lineage headers) becomes its next generation.
fn dead_letter(
    cfg: &ProcessorConfig,
    rec: &Record,
    failure: &Failure,
    attempts: u32,
) -> (DeadLetter, Status) {
    let mut letter = DeadLetter::new(
        format!(
            "kafka:{}:{}:{}",
            cfg.source_topic, rec.partition, rec.offset
        ),
        rec.payload.clone(),
        failure,
    );
    letter.attempts = attempts;
    letter.null_payload = rec.null_value;
    letter.key = rec.key.clone();
    // Lineage headers are ours, not the record's: keep them out of the copy.
    letter.headers = rec
        .headers
        .iter()
        .filter(|h| !h.name.starts_with("dlq."))
        .cloned()
        .collect();
    letter.source = Source {
        system: "kafka".into(),
        topic: Some(cfg.source_topic.clone()),
        partition: Some(rec.partition),
        offset: Some(rec.offset),
        timestamp: rec
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis),
    };
    let mut status = Status::Pending;
    if let Some(previous) = rec.header(REPLAY_OF_HEADER) {
        let replays = rec
            .header(REPLAYS_HEADER)
            .and_then(|r| r.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        let root = previous.split("~r").next().unwrap_or(&previous).to_owned();
        letter.id = format!("{root}~r{replays}");
        letter.replays = replays;
        letter.replay_of = Some(previous);
        if let Some(t) = rec
            .header(FIRST_FAILED_AT_HEADER)
            .and_then(|t| dlq_core::envelope::parse_timestamp(&t))
        {
            letter.first_failed_at = t;
        }
        if replays > cfg.max_replays {
            status = Status::Parked;
        }
    }
    (letter, status)
}

/// A per-record seed for the retry jitter (reproducible, spread out).
fn jitter_seed(rec: &Record) -> u64 {
    (rec.offset as u64) ^ (u64::from(rec.partition as u32) << 48)
}

/// Classifies a failed produce of an output record.
pub(crate) fn produce_failure(err: &KafkaError, topic: &str) -> Failure {
    let code = err.rdkafka_error_code();
    let (class, retryable) = match code {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            ("produce.timeout", true)
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            ("produce.record_too_large", false)
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            ("produce.unknown_topic", false)
        }
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed,
        ) => ("produce.authorization", false),
        _ => ("produce.error", true),
    };
    let mut f = Failure::permanent("produce", class, format!("producing to {topic}: {err}"));
    f.retryable = retryable;
    f
}

pub(crate) fn owned_headers(headers: &[Header]) -> Option<OwnedHeaders> {
    crate::headers::owned(headers)
}

/// Deliveries reported by librdkafka, picked up by the processor loop.
pub(crate) struct AckContext {
    pub(crate) acks: Mutex<Vec<(usize, Result<(), KafkaError>)>>,
    health: Health,
}

impl AckContext {
    pub(crate) fn new(health: Health) -> AckContext {
        AckContext {
            acks: Mutex::default(),
            health,
        }
    }
}

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.health.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.on_error(&error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        if let Ok(mut acks) = self.acks.lock() {
            acks.push((token, r));
        }
    }
}

/// Partitions revoked and assigned by a rebalance, picked up by the
/// processor loop.
struct GroupContext {
    revoked: Mutex<Vec<i32>>,
    assigned: Mutex<Vec<i32>>,
    health: Health,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.health.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.on_error(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance
            && let Ok(mut revoked) = self.revoked.lock()
        {
            revoked.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Ok(mut assigned) = self.assigned.lock()
        {
            assigned.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

impl GroupContext {
    fn take_revoked(&self) -> Vec<i32> {
        self.revoked
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    fn take_assigned(&self) -> Vec<i32> {
        self.assigned
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

fn consumer(
    base: &ClientConfig,
    cfg: &ProcessorConfig,
    exactly_once: bool,
    health: &Health,
) -> Result<BaseConsumer<GroupContext>, ProcessorError> {
    let mut c = base.clone();
    c.set("group.id", &cfg.group_id)
        // The end of a partition is how the idle check knows it is caught
        // up also when the log ends with a transaction marker (which no
        // consumed record's offset + 1 reaches).
        .set("enable.partition.eof", "true")
        .set_if_unset("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    if exactly_once {
        c.set("enable.auto.commit", "false");
    } else {
        c.set("enable.auto.commit", "true")
            .set_if_unset("auto.commit.interval.ms", "1000");
    }
    if let Some(id) = &cfg.group_instance_id {
        c.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<GroupContext> = c
        .create_with_context(GroupContext {
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            health: health.clone(),
        })
        .map_err(kafka("creating the consumer"))?;
    consumer
        .subscribe(&[cfg.source_topic.as_str()])
        .map_err(kafka("subscribing"))?;
    Ok(consumer)
}

trait SetIfUnset {
    fn set_if_unset(&mut self, key: &str, value: &str) -> &mut Self;
}

impl SetIfUnset for ClientConfig {
    fn set_if_unset(&mut self, key: &str, value: &str) -> &mut Self {
        if self.get(key).is_none() {
            self.set(key, value);
        }
        self
    }
}

/// The output of one source record, in flight. The output record is built
/// from the source record at each send (its key and headers are the
/// source's), so the source is kept once, not copied beside the output.
struct InFlight {
    /// The consumed record: the output's key and headers, and what is
    /// dead-lettered if the output cannot be delivered.
    source: Record,
    output: Vec<u8>,
    sends: u32,
}

/// In-flight outputs by delivery token. Tokens are handed out in increasing
/// order and mostly come back in order, so a deque indexed from its first
/// live token does what a hash map did, without hashing or a node per record.
#[derive(Default)]
struct InFlightSlab {
    first: usize,
    slots: VecDeque<Option<InFlight>>,
    live: usize,
}

impl InFlightSlab {
    fn insert(&mut self, f: InFlight) -> usize {
        let token = self.first + self.slots.len();
        self.slots.push_back(Some(f));
        self.live += 1;
        token
    }

    fn get_mut(&mut self, token: usize) -> Option<&mut InFlight> {
        let i = token.checked_sub(self.first)?;
        self.slots.get_mut(i)?.as_mut()
    }

    fn remove(&mut self, token: usize) -> Option<InFlight> {
        let i = token.checked_sub(self.first)?;
        let f = self.slots.get_mut(i)?.take()?;
        self.live -= 1;
        self.trim();
        Some(f)
    }

    fn retain(&mut self, keep: impl Fn(&InFlight) -> bool) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|f| !keep(f)) {
                *slot = None;
                self.live -= 1;
            }
        }
        self.trim();
    }

    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }
}

/// The offsets of a partition consumed and not done yet, in offset order,
/// each with how many holds it has: one while the record is being handled
/// or waits for a retry, plus one per output or dead letter in flight. An
/// offset is done when its holds reach 0; the commit point is the first
/// offset not done. Offsets arrive in increasing order, so this is a deque
/// (appends at the back, done offsets leave from the front).
#[derive(Default)]
struct Outstanding(VecDeque<(i64, u32)>);

impl Outstanding {
    /// A consumed offset, held until its handling is decided.
    fn consumed(&mut self, offset: i64) {
        match self.0.back() {
            Some(&(last, _)) if last >= offset => match self.find(offset) {
                Ok(i) => self.0[i].1 += 1,
                Err(i) => self.0.insert(i, (offset, 1)),
            },
            _ => self.0.push_back((offset, 1)),
        }
    }

    fn find(&self, offset: i64) -> Result<usize, usize> {
        // Mostly the newest offset (its handling decided) or the oldest
        // (acknowledgements come back in order): look there first.
        match (self.0.front(), self.0.back()) {
            (_, Some(&(o, _))) if o == offset => Ok(self.0.len() - 1),
            (Some(&(o, _)), _) if o == offset => Ok(0),
            _ => self.0.binary_search_by_key(&offset, |&(o, _)| o),
        }
    }

    /// One more hold on an offset not done yet.
    fn hold(&mut self, offset: i64) {
        if let Ok(i) = self.find(offset) {
            self.0[i].1 += 1;
        }
    }

    /// One hold of `offset` released.
    fn release(&mut self, offset: i64) {
        if let Ok(i) = self.find(offset) {
            self.0[i].1 = self.0[i].1.saturating_sub(1);
        }
        while matches!(self.0.front(), Some(&(_, 0))) {
            self.0.pop_front();
        }
    }

    fn first(&self) -> Option<i64> {
        self.0.front().map(|&(o, _)| o)
    }
}

#[derive(Default)]
struct PartitionState {
    /// Which assignment of the partition this is: acknowledgements of dead
    /// letters written for an earlier one (before a rebalance took the
    /// partition away and gave it back) must not release its offsets.
    epoch: u64,
    outstanding: Outstanding,
    /// The next offset after the highest consumed one.
    next: i64,
    /// The last next-offset stored for commit.
    stored: Option<i64>,
    /// A record waiting for a retry, and when.
    retrying: Option<(Record, RetryState, Instant)>,
    /// Records behind it, in order.
    backlog: VecDeque<Record>,
    paused: bool,
}

impl PartitionState {
    fn commit_point(&self) -> i64 {
        self.outstanding.first().unwrap_or(self.next)
    }
}

/// A source offset a dead letter holds: partition, its epoch, offset.
type Held = (i32, u64, i64);

/// Dead letters gathered for the writer, with the offsets they hold.
#[derive(Default)]
struct DlqBatch {
    entries: Vec<Entry>,
    offsets: Vec<Held>,
    since: Option<Instant>,
}

/// Dead letters handed to the writer thread.
struct DlqJob {
    entries: Vec<Entry>,
    offsets: Vec<Held>,
}

/// What the writer thread reports: how many jobs it wrote, and the offsets
/// their dead letters held, now durable in the store.
type DlqDone = (usize, Vec<Held>);

/// Where the writer thread puts dead letters: the Kafka store, another
/// store (an SQS queue), or a fake in tests.
pub(crate) trait DeadLetterSink {
    /// Writes the entries durably (idempotent by record id), or fails.
    fn write(&mut self, entries: &[Entry]) -> Result<(), dlq_core::store::StoreError>;
}

impl<S: DlqStore + ?Sized> DeadLetterSink for S {
    fn write(&mut self, entries: &[Entry]) -> Result<(), dlq_core::store::StoreError> {
        self.append(entries).map(|_| ())
    }
}

/// The dead-letter writer: takes jobs in order, writes each (several at
/// once when they queued up, up to `max_batch` entries) and reports them
/// done. A failed write is retried with backoff until it succeeds — the
/// offsets it holds wait meanwhile, so their partitions' commits stall,
/// never skip — or until `give_up` is set (at shutdown, after its grace
/// period), when it returns without reporting them.
fn write_dead_letters(
    sink: &mut (impl DeadLetterSink + ?Sized),
    jobs: &mpsc::Receiver<DlqJob>,
    done: &mpsc::Sender<DlqDone>,
    give_up: &AtomicBool,
    max_batch: usize,
    backoff_unit: Duration,
) {
    while let Ok(mut job) = jobs.recv() {
        let mut n = 1;
        while job.entries.len() < max_batch {
            match jobs.try_recv() {
                Ok(more) => {
                    job.entries.extend(more.entries);
                    job.offsets.extend(more.offsets);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let mut failures = 0u32;
        loop {
            match sink.write(&job.entries) {
                Ok(()) => {
                    // The loop may be gone (it gave up); nothing to tell.
                    let _ = done.send((n, std::mem::take(&mut job.offsets)));
                    break;
                }
                Err(e) => {
                    failures += 1;
                    let backoff = backoff_unit * failures.min(50);
                    tracing::warn!(error = %e, retry_in = ?backoff, "writing dead letters failed; retrying (their partitions' offsets wait)");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !give_up.load(Ordering::Relaxed) {
                        std::thread::sleep(
                            until
                                .saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(20)),
                        );
                    }
                    if give_up.load(Ordering::Relaxed) {
                        tracing::warn!(
                            dead_letters = job.entries.len(),
                            "stopping with dead letters not written; their offsets are not committed and will be processed again"
                        );
                        return;
                    }
                }
            }
        }
    }
}

/// The loop's end of the writer thread.
struct DlqWriter {
    jobs: Option<mpsc::Sender<DlqJob>>,
    done: mpsc::Receiver<DlqDone>,
    /// Jobs handed over and not reported done.
    open: usize,
}

/// Records consumed per round of bookkeeping: the first poll of a round
/// may wait, the others take what the consumer has already fetched.
const CONSUME_BATCH: usize = 256;

struct AtLeastOnce<'a, H> {
    cfg: &'a ProcessorConfig,
    handler: &'a mut H,
    consumer: BaseConsumer<GroupContext>,
    producer: BaseProducer<AckContext>,
    partitions: HashMap<i32, PartitionState>,
    epochs: u64,
    in_flight: InFlightSlab,
    /// Outputs to send again (after a failed delivery, with backoff) or
    /// not sent yet (librdkafka's queue was full), in order.
    resend: VecDeque<(Instant, usize)>,
    dlq: DlqBatch,
    writer: DlqWriter,
    stats: ProcessorStats,
    counters: ProcessorCounters,
    /// Partitions whose end the consumer reached (no record since).
    eof: HashSet<i32>,
    redactor: Redactor,
}

fn check_topics(
    store: &mut KafkaStore,
    cfg: &ProcessorConfig,
    dlq_in_store: bool,
) -> Result<(), ProcessorError> {
    for topic in [&cfg.source_topic, &cfg.output_topic] {
        if store.topic_partitions(topic)?.is_none() {
            return Err(ProcessorError::Config(format!(
                "topic {topic} does not exist; create it first"
            )));
        }
    }
    if dlq_in_store {
        store.ensure_dlq_topic(&cfg.dlq_topic, &cfg.source_topic)?;
    }
    Ok(())
}

/// Runs the processor at least once until `stop` is set (or it is idle for
/// `stop_when_idle`), then delivers what is in flight and commits.
///
/// Dead letters are written by a thread of their own, so that a store
/// commit (a string of round trips) never stalls consuming, producing and
/// acknowledging on the other partitions; their offsets wait for it.
pub fn run_at_least_once<H: Handler>(
    store: &mut KafkaStore,
    cfg: &ProcessorConfig,
    handler: &mut H,
    stop: &AtomicBool,
) -> Result<ProcessorStats, ProcessorError> {
    run_at_least_once_to(store, None, cfg, handler, stop)
}

/// [`run_at_least_once`] with the dead letters written to `dlq_store` (an
/// SQS queue, say) instead of the Kafka store: DLQ `cfg.dlq_topic` of that
/// store. A source offset is committed only after the store's `append` of
/// its dead letters returned (durable there), as with the Kafka store.
pub fn run_at_least_once_to<H: Handler>(
    store: &mut KafkaStore,
    dlq_store: Option<&mut (dyn DlqStore + Send)>,
    cfg: &ProcessorConfig,
    handler: &mut H,
    stop: &AtomicBool,
) -> Result<ProcessorStats, ProcessorError> {
    check_topics(store, cfg, dlq_store.is_none())?;
    let base = crate::client::base_config(store.config());
    let redactor = Redactor::new(store.config().secret_values());
    let health = Health::new(redactor.clone());
    let mut producer_config = base.clone();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set_if_unset("linger.ms", "5");
    let producer: BaseProducer<AckContext> = producer_config
        .create_with_context(AckContext::new(health.clone()))
        .map_err(kafka("creating the producer"))?;
    let consumer = consumer(&base, cfg, false, &health)?;
    let (jobs_tx, jobs_rx) = mpsc::channel::<DlqJob>();
    let (done_tx, done_rx) = mpsc::channel::<DlqDone>();
    let give_up_flag = AtomicBool::new(false);
    let give_up = &give_up_flag;
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("dlq-writer".into())
            .spawn_scoped(scope, move || {
                let sink: &mut (dyn DlqStore + Send) = match dlq_store {
                    Some(other) => other,
                    None => store,
                };
                write_dead_letters(
                    sink,
                    &jobs_rx,
                    &done_tx,
                    give_up,
                    cfg.dlq_batch.max(1),
                    Duration::from_millis(100),
                );
            })
            .map_err(|e| ProcessorError::Config(format!("starting the DLQ writer thread: {e}")))?;
        let mut p = AtLeastOnce {
            cfg,
            handler,
            consumer,
            producer,
            partitions: HashMap::new(),
            epochs: 0,
            in_flight: InFlightSlab::default(),
            resend: VecDeque::new(),
            dlq: DlqBatch::default(),
            writer: DlqWriter {
                jobs: Some(jobs_tx),
                done: done_rx,
                open: 0,
            },
            stats: ProcessorStats::default(),
            counters: ProcessorCounters::new(&cfg.source_topic),
            eof: HashSet::new(),
            redactor,
        };
        let result = p.run(stop, give_up);
        // Whatever happened, the writer stops: no more jobs, and no more
        // retries of a failing one.
        p.writer.jobs = None;
        give_up.store(true, Ordering::Relaxed);
        let _ = writer.join();
        result.map(|()| p.stats)
    })
}

impl<H: Handler> AtLeastOnce<'_, H> {
    fn run(&mut self, stop: &AtomicBool, give_up: &AtomicBool) -> Result<(), ProcessorError> {
        let mut watch = DrainWatch::new(self.cfg.stop_when_idle);
        loop {
            if stop.load(Ordering::Relaxed) {
                self.stats.stop = Stop::Requested;
                break;
            }
            if let Some(e) = consumer_failed(&self.consumer, &self.redactor) {
                // Nothing more can be committed: what is not is processed
                // again after a restart.
                return Err(e);
            }
            self.housekeeping();
            let mut wait = self.poll_wait();
            let mut got = 0;
            while got < CONSUME_BATCH {
                match self.consumer.poll(wait) {
                    Some(Ok(m)) => {
                        got += 1;
                        let rec = Record::from_message(&m);
                        drop(m);
                        self.eof.remove(&rec.partition);
                        self.accept(rec);
                        wait = Duration::ZERO;
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        self.eof.insert(p);
                        wait = Duration::ZERO;
                    }
                    Some(Err(e)) => {
                        consumer_error(&e, &mut self.eof)?;
                        break;
                    }
                    None => break,
                }
            }
            if got > 0 || self.busy() {
                watch.working();
            } else {
                let me = &*self;
                let measure =
                    || measure_lag(&me.consumer, &me.cfg.source_topic, |p| Some(me.local(p)));
                if let Some(why) = watch.check(measure) {
                    self.stats.stop = why;
                    break;
                }
            }
        }
        self.shutdown(give_up)?;
        let mut stats = std::mem::take(&mut self.stats);
        let me = &*self;
        final_lag(&mut stats, &me.consumer, &me.cfg.source_topic, |p| {
            Some(me.local(p))
        });
        self.stats = stats;
        Ok(())
    }

    /// What this instance knows of a partition it owns.
    fn local(&self, p: i32) -> Local {
        let at_end = self.eof.contains(&p);
        match self.partitions.get(&p) {
            Some(st) => Local {
                position: Some(st.commit_point()),
                at_end: at_end && st.commit_point() == st.next,
            },
            None => Local {
                position: None,
                at_end,
            },
        }
    }

    /// Everything the loop does besides consuming, once per round.
    fn housekeeping(&mut self) {
        self.producer.poll(Duration::ZERO);
        self.drain_acks();
        self.drain_dlq_done();
        self.run_due_retries();
        if !self.resend.is_empty() {
            self.send_due();
        }
        self.hand_off_dlq(false);
        self.store_offsets();
        self.forget_revoked();
    }

    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
            || !self.dlq.entries.is_empty()
            || self.writer.open > 0
            || self.partitions.values().any(|p| p.retrying.is_some())
    }

    fn poll_wait(&self) -> Duration {
        let mut wait = Duration::from_millis(50);
        let now = Instant::now();
        for p in self.partitions.values() {
            if let Some((_, _, due)) = &p.retrying {
                wait = wait.min(due.saturating_duration_since(now));
            }
        }
        if !self.in_flight.is_empty() || !self.dlq.entries.is_empty() || self.writer.open > 0 {
            wait = wait.min(Duration::from_millis(5));
        }
        wait
    }

    fn accept(&mut self, rec: Record) {
        self.stats.consumed += 1;
        self.counters.processed.increment(1);
        let st = match self.partitions.entry(rec.partition) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.epochs += 1;
                e.insert(PartitionState {
                    epoch: self.epochs,
                    ..PartitionState::default()
                })
            }
        };
        if st.stored.is_none() {
            st.stored = Some(rec.offset);
        }
        st.outstanding.consumed(rec.offset);
        st.next = st.next.max(rec.offset + 1);
        if st.retrying.is_some() || !st.backlog.is_empty() {
            let partition = rec.partition;
            st.backlog.push_back(rec);
            if st.backlog.len() >= self.cfg.max_backlog && !st.paused {
                st.paused = true;
                self.pause(partition, true);
            }
            return;
        }
        let state = self.cfg.retry.start(jitter_seed(&rec));
        self.attempt(rec, state);
    }

    fn pause(&self, partition: i32, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.source_topic, partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(partition, error = %e, "pausing or resuming a partition failed");
        }
    }

    /// Runs the handler once: on success sends the output, on a retryable
    /// failure holds the partition behind a timer, else dead-letters. The
    /// record's handling hold is released once its write is in flight.
    fn attempt(&mut self, rec: Record, mut state: RetryState) {
        let retried = state.attempts() > 0;
        match self.handler.handle(&rec.payload, state.attempts() + 1) {
            Ok(out) => {
                if retried {
                    self.stats.recovered_by_retry += 1;
                }
                let (p, o) = (rec.partition, rec.offset);
                self.send(rec, out);
                self.release(p, o);
            }
            Err(failure) => match state.on_failure(failure.retryable) {
                Decision::RetryAfter(delay) => {
                    let st = self.partitions.entry(rec.partition).or_default();
                    st.retrying = Some((rec, state, Instant::now() + delay));
                }
                Decision::GiveUp(_) => {
                    let attempts = state.attempts();
                    self.dead_letter(&rec, &failure, attempts);
                    self.release(rec.partition, rec.offset);
                }
            },
        }
    }

    fn dead_letter(&mut self, rec: &Record, failure: &Failure, attempts: u32) {
        let (letter, status) = dead_letter(self.cfg, rec, failure, attempts);
        *self
            .stats
            .by_error_class
            .entry(failure.error_class.clone())
            .or_default() += 1;
        self.stats.dead_lettered += 1;
        self.counters.dead_lettered.increment(1);
        if status == Status::Parked {
            self.stats.parked += 1;
        }
        let Some(st) = self.partitions.get_mut(&rec.partition) else {
            return;
        };
        st.outstanding.hold(rec.offset);
        self.dlq.since.get_or_insert_with(Instant::now);
        self.dlq.entries.push(Entry {
            dlq: self.cfg.dlq_topic.clone(),
            letter,
            status,
        });
        self.dlq.offsets.push((rec.partition, st.epoch, rec.offset));
    }

    /// Hands the gathered dead letters to the writer thread when the batch
    /// is full or old enough (or always, with `force`).
    fn hand_off_dlq(&mut self, force: bool) {
        let Some(since) = self.dlq.since else {
            return;
        };
        let due = force
            || self.dlq.entries.len() >= self.cfg.dlq_batch
            || since.elapsed() >= self.cfg.dlq_linger;
        if !due {
            return;
        }
        let Some(jobs) = &self.writer.jobs else {
            return;
        };
        let batch = std::mem::take(&mut self.dlq);
        let job = DlqJob {
            entries: batch.entries,
            offsets: batch.offsets,
        };
        match jobs.send(job) {
            Ok(()) => self.writer.open += 1,
            Err(mpsc::SendError(job)) => {
                // The writer is gone: the offsets stay held (never
                // committed), and the records are processed again after a
                // restart.
                tracing::error!(
                    dead_letters = job.entries.len(),
                    "the DLQ writer stopped; these records' offsets will not be committed"
                );
                self.writer.jobs = None;
            }
        }
    }

    /// Releases the offsets of dead letters the writer made durable.
    fn drain_dlq_done(&mut self) {
        while let Ok(done) = self.writer.done.try_recv() {
            self.dlq_done(done);
        }
    }

    fn dlq_done(&mut self, (jobs, offsets): DlqDone) {
        self.writer.open = self.writer.open.saturating_sub(jobs);
        for (p, epoch, o) in offsets {
            if let Some(st) = self.partitions.get_mut(&p)
                && st.epoch == epoch
            {
                st.outstanding.release(o);
            }
        }
    }

    fn send(&mut self, source: Record, output: Vec<u8>) {
        if let Some(st) = self.partitions.get_mut(&source.partition) {
            st.outstanding.hold(source.offset);
        }
        let token = self.in_flight.insert(InFlight {
            source,
            output,
            sends: 0,
        });
        // Behind what waits for room in librdkafka's queue, to keep order.
        if !self.resend.is_empty() || !self.try_send(token) {
            self.resend.push_back((Instant::now(), token));
        }
    }

    /// Sends one output; false when librdkafka's queue is full.
    fn try_send(&mut self, token: usize) -> bool {
        let Some(f) = self.in_flight.get_mut(token) else {
            return true;
        };
        let mut br: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&self.cfg.output_topic, token).payload(f.output.as_slice());
        if let Some(k) = &f.source.key {
            br = br.key(k.as_slice());
        }
        if let Some(h) = passed_owned_headers(&f.source) {
            br = br.headers(h);
        }
        match self.producer.send(br) {
            Ok(()) => {
                f.sends += 1;
                true
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => false,
            Err((e, _)) => {
                // Refused at once (too large, ...): same path as a failed
                // delivery.
                if let Ok(mut acks) = self.producer.context().acks.lock() {
                    acks.push((token, Err(e)));
                }
                true
            }
        }
    }

    /// Sends what is due; when the local queue is full, the rest waits for
    /// the next round.
    fn send_due(&mut self) {
        let now = Instant::now();
        let mut later = VecDeque::new();
        while let Some((due, token)) = self.resend.pop_front() {
            if due > now {
                later.push_back((due, token));
                continue;
            }
            if !self.try_send(token) {
                later.push_back((now, token));
                later.extend(self.resend.drain(..));
                break;
            }
        }
        self.resend = later;
    }

    fn drain_acks(&mut self) {
        let acks = match self.producer.context().acks.lock() {
            Ok(mut a) if !a.is_empty() => std::mem::take(&mut *a),
            _ => return,
        };
        for (token, result) in acks {
            match result {
                Ok(()) => {
                    let Some(f) = self.in_flight.remove(token) else {
                        continue;
                    };
                    self.stats.delivered += 1;
                    self.counters.delivered.increment(1);
                    self.release(f.source.partition, f.source.offset);
                }
                Err(e) => self.delivery_failed(token, &e),
            }
        }
    }

    fn delivery_failed(&mut self, token: usize, e: &KafkaError) {
        let Some(f) = self.in_flight.get_mut(token) else {
            return;
        };
        self.stats.redeliveries += 1;
        let failure = produce_failure(e, &self.cfg.output_topic);
        if !failure.retryable || f.sends >= self.cfg.retry.max_attempts.max(1) {
            let Some(f) = self.in_flight.remove(token) else {
                return;
            };
            // An output that cannot be delivered goes to the DLQ.
            tracing::warn!(topic = %self.cfg.output_topic, error = %e, "output undeliverable; dead-lettering it");
            self.dead_letter(&f.source, &failure, f.sends);
            self.release(f.source.partition, f.source.offset);
        } else {
            let backoff = Duration::from_millis(100 * u64::from(f.sends.min(50)));
            self.resend.push_back((Instant::now() + backoff, token));
        }
    }

    /// One hold of `offset` released; the offset is done when none is left.
    fn release(&mut self, partition: i32, offset: i64) {
        if let Some(st) = self.partitions.get_mut(&partition) {
            st.outstanding.release(offset);
        }
    }

    /// Stores, for commit, each partition's highest contiguous done offset.
    fn store_offsets(&mut self) {
        let moved: Vec<PartitionOffset> = self
            .partitions
            .iter()
            .map(|(&p, st)| (p, st.stored, st.commit_point()))
            .filter(|&(_, stored, point)| stored.is_some_and(|s| point > s))
            .map(|(p, _, point)| PartitionOffset::new(p, point))
            .collect();
        if moved.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(moved.len());
        for at in &moved {
            if let Err(e) = tpl.add_partition_offset(
                &self.cfg.source_topic,
                at.partition,
                Offset::Offset(at.offset),
            ) {
                tracing::debug!(error = %e, "storing offsets");
                return;
            }
        }
        match self.consumer.store_offsets(&tpl) {
            Ok(()) => {
                for at in moved {
                    if let Some(st) = self.partitions.get_mut(&at.partition) {
                        st.stored = Some(at.offset);
                    }
                }
            }
            // A partition revoked meanwhile: its new owner reads it again.
            Err(e) => tracing::debug!(error = %e, "storing offsets"),
        }
    }

    fn run_due_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.retrying.as_ref().is_some_and(|r| r.2 <= now))
            .map(|(&p, _)| p)
            .collect();
        for p in due {
            let Some((rec, state, _)) = self.partitions.get_mut(&p).and_then(|s| s.retrying.take())
            else {
                continue;
            };
            self.stats.retries += 1;
            self.counters.retries.increment(1);
            self.attempt(rec, state);
            // Work off the backlog until a record needs a retry again.
            while let Some(st) = self.partitions.get_mut(&p) {
                if st.retrying.is_some() {
                    break;
                }
                let Some(next) = st.backlog.pop_front() else {
                    if st.paused {
                        st.paused = false;
                        self.pause(p, false);
                    }
                    break;
                };
                let state = self.cfg.retry.start(jitter_seed(&next));
                self.attempt(next, state);
            }
        }
    }

    fn forget_revoked(&mut self) {
        // A partition paused behind a retry and revoked must not come back
        // paused: this instance forgot why it paused it, and would never
        // resume it (the partition would stall with its lag).
        for p in self.consumer.context().take_assigned() {
            if !self.partitions.get(&p).is_some_and(|st| st.paused) {
                self.pause(p, false);
            }
        }
        let revoked = self.consumer.context().take_revoked();
        for p in revoked {
            self.eof.remove(&p);
            // Uncommitted work of a revoked partition is redone by its new
            // owner (at-least-once). Dead letters already handed to the
            // writer are still written (a duplicate at worst, which the
            // store deduplicates); their acknowledgements carry the old
            // epoch and release nothing.
            self.partitions.remove(&p);
            self.in_flight.retain(|f| f.source.partition != p);
        }
    }

    fn shutdown(&mut self, give_up: &AtomicBool) -> Result<(), ProcessorError> {
        // Deliver what is in flight and write the dead letters (bounded),
        // store the offsets, then commit them.
        let deadline = Instant::now() + Duration::from_secs(60);
        self.hand_off_dlq(true);
        loop {
            self.producer.poll(Duration::ZERO);
            self.drain_acks();
            self.drain_dlq_done();
            self.send_due();
            self.hand_off_dlq(true);
            let waiting = !self.in_flight.is_empty() || self.writer.open > 0;
            if !waiting || Instant::now() >= deadline {
                break;
            }
            // Sleep until the writer reports or a millisecond passes (then
            // serve the producer's reports): no spinning poll.
            if let Ok(done) = self.writer.done.recv_timeout(Duration::from_millis(1)) {
                self.dlq_done(done);
            }
        }
        if self.writer.open > 0 {
            // Their offsets stay uncommitted: processed again next time.
            give_up.store(true, Ordering::Relaxed);
        }
        self.store_offsets();
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(kafka("committing offsets")(e)),
        }
    }
}

/// Longest wait for the first assignment before a run with
/// `stop_when_idle` counts as stalled: joining a group takes the
/// coordinator's initial rebalance delay (3 s by default) and a rebalance.
pub const JOIN_ALLOWANCE: Duration = Duration::from_secs(10);

/// How often the lag is measured while no record arrives.
const MEASURE_EVERY: Duration = Duration::from_millis(500);

/// Timeout of each request of a lag measurement.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(5);

/// What this instance knows of a partition it owns.
struct Local {
    /// The first offset not done (`None`: nothing consumed since it was
    /// assigned; the group's committed offset tells).
    position: Option<i64>,
    /// The consumer reached the end of the partition, and everything
    /// consumed is done.
    at_end: bool,
}

/// Measures the lag of every partition of the source: its end offset
/// against this instance's position (partitions it owns) or the group's
/// committed offset (the others). Returns the partitions this instance
/// owns, and every partition's lag.
fn measure_lag(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    local: impl Fn(i32) -> Option<Local>,
) -> Result<(BTreeSet<i32>, Vec<PartitionLag>), KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), MEASURE_TIMEOUT)?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let owned: BTreeSet<i32> = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    let committed = list_offsets(consumer, topic, &parts, None)?;
    let ends = list_offsets(consumer, topic, &parts, Some(Offset::End))?;
    let starts = list_offsets(consumer, topic, &parts, Some(Offset::Beginning))?;
    let mut lags = Vec::with_capacity(parts.len());
    for p in parts {
        let end = ends.get(&p).copied().unwrap_or(0);
        // Without a committed offset, or one that retention deleted, the
        // group starts at the beginning (auto.offset.reset=earliest).
        let start = starts.get(&p).copied().unwrap_or(0);
        let group = committed.get(&p).copied().unwrap_or(start).max(start);
        let is_owned = owned.contains(&p);
        let lag = match local(p).filter(|_| is_owned) {
            Some(Local { at_end: true, .. }) => 0,
            Some(Local {
                position: Some(pos),
                ..
            }) => end - pos,
            _ => end - group,
        };
        lags.push(PartitionLag {
            partition: p,
            lag: lag.max(0),
            owned: is_owned,
        });
    }
    Ok((owned, lags))
}

/// The group's committed offsets (`which` = `None`) or the partitions'
/// end or start offsets, by partition; partitions without one are left out.
fn list_offsets(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    parts: &[i32],
    which: Option<Offset>,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(parts.len());
    for &p in parts {
        tpl.add_partition_offset(topic, p, which.unwrap_or(Offset::Invalid))?;
    }
    let answer = match which {
        None => consumer.committed_offsets(tpl, MEASURE_TIMEOUT)?,
        Some(_) => consumer.offsets_for_times(tpl, MEASURE_TIMEOUT)?,
    };
    let mut out = HashMap::with_capacity(parts.len());
    for el in answer.elements() {
        el.error()?;
        if let Offset::Offset(o) = el.offset() {
            out.insert(el.partition(), o);
        }
    }
    Ok(out)
}

/// When a processor with `stop_when_idle` stops: drained (caught up on
/// every partition, this instance owning some, for the idle time), or
/// stalled (lag left and no progress for the idle time).
struct DrainWatch {
    after: Option<Duration>,
    /// The last sign of progress: a record, pending work, a lag that
    /// shrank, an assignment that changed (or the start).
    progress: Instant,
    next_check: Instant,
    last_total: Option<i64>,
    last_owned: BTreeSet<i32>,
    caught_up_since: Option<Instant>,
    joined: bool,
}

impl DrainWatch {
    fn new(after: Option<Duration>) -> Self {
        let now = Instant::now();
        DrainWatch {
            after,
            progress: now,
            next_check: now,
            last_total: None,
            last_owned: BTreeSet::new(),
            caught_up_since: None,
            joined: false,
        }
    }

    /// A record arrived or work is pending: not idle.
    fn working(&mut self) {
        self.progress = Instant::now();
        self.caught_up_since = None;
    }

    /// Whether to stop now; measures the lag at most every
    /// [`MEASURE_EVERY`].
    fn check(
        &mut self,
        measure: impl FnOnce() -> Result<(BTreeSet<i32>, Vec<PartitionLag>), KafkaError>,
    ) -> Option<Stop> {
        let after = self.after?;
        let now = Instant::now();
        if now < self.next_check {
            return None;
        }
        self.next_check = now + MEASURE_EVERY;
        match measure() {
            Ok((owned, lags)) => {
                let total: i64 = lags.iter().map(|l| l.lag).sum();
                if !owned.is_empty() {
                    self.joined = true;
                }
                if owned != self.last_owned || self.last_total.is_some_and(|t| total < t) {
                    self.progress = now;
                }
                self.last_owned = owned;
                self.last_total = Some(total);
                if total == 0 && !self.last_owned.is_empty() {
                    let since = *self.caught_up_since.get_or_insert(now);
                    return (now.duration_since(since) >= after).then_some(Stop::Drained);
                }
            }
            Err(e) => tracing::debug!(error = %e, "measuring the lag failed"),
        }
        self.caught_up_since = None;
        let limit = if self.joined {
            after
        } else {
            after.max(JOIN_ALLOWANCE)
        };
        (now.duration_since(self.progress) >= limit).then_some(Stop::Stalled)
    }
}

/// The lag when the run ends (after the last commit), into the stats.
fn final_lag(
    stats: &mut ProcessorStats,
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    local: impl Fn(i32) -> Option<Local>,
) {
    match measure_lag(consumer, topic, local) {
        Ok((owned, lags)) => {
            stats.caught_up = !owned.is_empty() && lags.iter().all(|l| l.lag == 0);
            stats.lag = lags.into_iter().filter(|l| l.lag > 0).collect();
        }
        Err(e) => {
            tracing::warn!(error = %e, "the lag left could not be measured");
            stats.caught_up = false;
        }
    }
}

/// A consumer that cannot go on: a fatal error (another process took over
/// its `group.instance.id`), or an access failure.
fn consumer_failed(
    consumer: &BaseConsumer<GroupContext>,
    redactor: &Redactor,
) -> Option<ProcessorError> {
    let health = &consumer.context().health;
    if let Some(denied) = health.denied() {
        return Some(ProcessorError::Denied(denied.to_owned()));
    }
    let (code, reason) = consumer.client().fatal_error()?;
    let hint = if code == RDKafkaErrorCode::FencedInstanceId {
        " (another process runs with the same --instance / group.instance.id)"
    } else {
        ""
    };
    Some(ProcessorError::Config(format!(
        "the consumer stopped: {}{hint}",
        redactor.clean(reason)
    )))
}

/// A consumer error from `poll`: the end of a partition (noted), an access
/// failure (fatal), or a transient one (logged).
fn consumer_error(e: &KafkaError, eof: &mut HashSet<i32>) -> Result<(), ProcessorError> {
    if let KafkaError::PartitionEOF(p) = e {
        eof.insert(*p);
        return Ok(());
    }
    if let Some(access) = e.rdkafka_error_code().and_then(Access::of) {
        return Err(ProcessorError::Denied(
            access.message(&format!("consuming: {e}")),
        ));
    }
    if crate::retry::is_retryable(e) {
        tracing::debug!(error = %e, "consumer error");
    } else {
        tracing::warn!(error = %e, "consumer error");
    }
    Ok(())
}

/// The headers an output carries, built straight from the source record's
/// (no copy of them in between).
fn passed_owned_headers(rec: &Record) -> Option<OwnedHeaders> {
    crate::headers::owned(rec.headers.iter().filter(|h| !h.name.starts_with("dlq.")))
}

fn passed_headers(rec: &Record) -> Vec<Header> {
    // dlq's own lineage headers describe the replay, not the record.
    rec.headers
        .iter()
        .filter(|h| !h.name.starts_with("dlq."))
        .cloned()
        .collect()
}

/// Runs the processor exactly once until `stop` is set (or idle).
///
/// The store must be transactional (the default) and have a stable
/// `transactional_id` per processor instance, so that a restarted instance
/// fences its crashed predecessor and aborts its open transaction at once.
pub fn run_exactly_once<H: Handler>(
    store: &mut KafkaStore,
    cfg: &ProcessorConfig,
    handler: &mut H,
    stop: &AtomicBool,
) -> Result<ProcessorStats, ProcessorError> {
    if !store.config().transactions {
        return Err(ProcessorError::Config(
            "exactly-once processing needs a transactional store (transactions=true)".into(),
        ));
    }
    check_topics(store, cfg, true)?;
    let output_partitions = store
        .topic_partitions(&cfg.output_topic)?
        .unwrap_or(1)
        .max(1);
    let base = crate::client::base_config(store.config());
    let redactor = Redactor::new(store.config().secret_values());
    let health = Health::new(redactor.clone());
    let consumer = consumer(&base, cfg, true, &health)?;
    let mut stats = ProcessorStats::default();
    let counters = ProcessorCounters::new(&cfg.source_topic);
    let mut watch = DrainWatch::new(cfg.stop_when_idle);
    // Per partition: the next offset committed by this instance's last
    // transaction, and whether the consumer reached the end after it.
    let mut committed_next: HashMap<i32, i64> = HashMap::new();
    let mut eof: HashSet<i32> = HashSet::new();
    let mut failures = 0u32;
    let local = |committed_next: &HashMap<i32, i64>, eof: &HashSet<i32>, p: i32| {
        Some(Local {
            position: committed_next.get(&p).copied(),
            at_end: eof.contains(&p),
        })
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            stats.stop = Stop::Requested;
            break;
        }
        if let Some(e) = consumer_failed(&consumer, &redactor) {
            return Err(e);
        }
        for p in consumer.context().take_revoked() {
            committed_next.remove(&p);
            eof.remove(&p);
        }
        consumer.context().take_assigned();
        let mut batch: Vec<Record> = Vec::new();
        let deadline = Instant::now() + cfg.batch_timeout;
        while batch.len() < cfg.batch_size {
            let wait = if batch.is_empty() {
                Duration::from_millis(100)
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    eof.remove(&m.partition());
                    batch.push(Record::from_message(&m));
                }
                Some(Err(e)) => consumer_error(&e, &mut eof)?,
                None => break,
            }
            if Instant::now() >= deadline && !batch.is_empty() {
                break;
            }
        }
        if batch.is_empty() {
            let measure = || {
                measure_lag(&consumer, &cfg.source_topic, |p| {
                    local(&committed_next, &eof, p)
                })
            };
            if let Some(why) = watch.check(measure) {
                stats.stop = why;
                break;
            }
            continue;
        }
        watch.working();
        stats.consumed += batch.len() as u64;
        let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
        let mut next = TopicPartitionList::new();
        let mut next_by: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &batch {
            starts.entry(r.partition).or_insert(r.offset);
            next_by.insert(r.partition, r.offset + 1);
        }
        for (&p, &o) in &next_by {
            next.add_partition_offset(&cfg.source_topic, p, Offset::Offset(o))
                .map_err(kafka("building offsets"))?;
        }
        let (outputs, entries, batch_stats) = handle_batch(cfg, handler, &batch, output_partitions);
        let committed = match consumer.group_metadata() {
            Some(meta) => store
                .commit_with(
                    Batch {
                        append: &entries,
                        ..Batch::default()
                    },
                    outputs,
                    Some((&next, &meta)),
                )
                .map_err(ProcessorError::from),
            None => Err(ProcessorError::Config(
                "the consumer has no group metadata".into(),
            )),
        };
        match committed {
            Ok(_) => {
                failures = 0;
                stats.transactions += 1;
                committed_next.extend(next_by.iter().map(|(&p, &o)| (p, o)));
                // Counted once committed: an aborted batch is processed again.
                counters.processed.increment(batch.len() as u64);
                counters.delivered.increment(batch_stats.delivered);
                counters.dead_lettered.increment(batch_stats.dead_lettered);
                counters.retries.increment(batch_stats.retries);
                merge(&mut stats, batch_stats);
            }
            Err(e) => {
                // The store aborted the transaction (or replaced a fatal
                // producer); redo the batch from its start.
                failures += 1;
                stats.aborts += 1;
                tracing::warn!(error = %e, "transaction failed; processing the batch again");
                for p in starts.keys() {
                    eof.remove(p);
                }
                rewind(&consumer, cfg, &starts);
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(50))));
            }
        }
    }
    final_lag(&mut stats, &consumer, &cfg.source_topic, |p| {
        local(&committed_next, &eof, p)
    });
    Ok(stats)
}

/// Handles a batch for a transaction: outputs, dead letters, and stats.
fn handle_batch<H: Handler>(
    cfg: &ProcessorConfig,
    handler: &mut H,
    batch: &[Record],
    output_partitions: i32,
) -> (Vec<Outgoing>, Vec<Entry>, ProcessorStats) {
    let mut stats = ProcessorStats::default();
    let mut outputs = Vec::new();
    let mut entries = Vec::new();
    let now = chrono::Utc::now().timestamp_millis();
    for rec in batch {
        let mut state = cfg.retry.start(jitter_seed(rec));
        let result = loop {
            match handler.handle(&rec.payload, state.attempts() + 1) {
                Ok(out) => {
                    if state.attempts() > 0 {
                        stats.recovered_by_retry += 1;
                    }
                    break Ok(out);
                }
                Err(f) => match state.on_failure(f.retryable) {
                    Decision::RetryAfter(d) => {
                        stats.retries += 1;
                        std::thread::sleep(d);
                    }
                    Decision::GiveUp(_) => break Err(f),
                },
            }
        };
        match result {
            Ok(out) => {
                outputs.push(Outgoing {
                    topic: cfg.output_topic.clone(),
                    // The source partition's records stay together, in order.
                    partition: rec.partition % output_partitions,
                    key: rec.key.clone(),
                    value: Some(out),
                    headers: passed_headers(rec),
                    timestamp_ms: rec.timestamp.unwrap_or(now),
                });
                stats.delivered += 1;
            }
            Err(failure) => {
                let (letter, status) = dead_letter(cfg, rec, &failure, state.attempts());
                stats.dead_lettered += 1;
                if status == Status::Parked {
                    stats.parked += 1;
                }
                *stats
                    .by_error_class
                    .entry(failure.error_class.clone())
                    .or_default() += 1;
                entries.push(Entry {
                    dlq: cfg.dlq_topic.clone(),
                    letter,
                    status,
                });
            }
        }
    }
    (outputs, entries, stats)
}

fn merge(total: &mut ProcessorStats, b: ProcessorStats) {
    total.delivered += b.delivered;
    total.dead_lettered += b.dead_lettered;
    total.parked += b.parked;
    total.retries += b.retries;
    total.recovered_by_retry += b.recovered_by_retry;
    for (k, v) in b.by_error_class {
        *total.by_error_class.entry(k).or_default() += v;
    }
}

fn rewind(
    consumer: &BaseConsumer<GroupContext>,
    cfg: &ProcessorConfig,
    starts: &BTreeMap<i32, i64>,
) {
    for (&p, &offset) in starts {
        if let Err(e) = consumer.seek(
            &cfg.source_topic,
            p,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            // Revoked meanwhile: its new owner starts from the committed
            // offset, which this batch never moved.
            tracing::warn!(partition = p, error = %e, "rewinding after a failed transaction");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_core::store::StoreError;

    fn entry(id: &str) -> Entry {
        let f = Failure::permanent("s", "c", "m");
        Entry {
            dlq: "dlq.t".into(),
            letter: DeadLetter::new(id, b"x".to_vec(), &f),
            status: Status::Pending,
        }
    }

    /// A sink that fails its first `failures` writes.
    struct Flaky {
        failures: u32,
        written: Vec<String>,
    }

    impl DeadLetterSink for Flaky {
        fn write(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(StoreError::Backend {
                    backend: "kafka",
                    message: "broker down".into(),
                    retryable: true,
                });
            }
            self.written
                .extend(entries.iter().map(|e| e.letter.id.clone()));
            Ok(())
        }
    }

    #[test]
    fn a_failing_dlq_writer_stalls_the_offsets_until_it_succeeds() {
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let give_up = AtomicBool::new(false);
        let mut sink = Flaky {
            failures: 3,
            written: Vec::new(),
        };
        std::thread::scope(|s| {
            let (sink, give_up) = (&mut sink, &give_up);
            let w = s.spawn(move || {
                write_dead_letters(
                    sink,
                    &jobs_rx,
                    &done_tx,
                    give_up,
                    500,
                    Duration::from_millis(30),
                );
            });
            jobs_tx
                .send(DlqJob {
                    entries: vec![entry("a")],
                    offsets: vec![(0, 1, 7)],
                })
                .expect("send");
            // While the writes fail, nothing is reported done.
            assert!(done_rx.recv_timeout(Duration::from_millis(40)).is_err());
            let (jobs, offsets) = done_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("done after the store recovers");
            assert_eq!((jobs, offsets), (1, vec![(0, 1, 7)]));
            drop(jobs_tx);
            w.join().expect("writer");
        });
        assert_eq!(sink.written, vec!["a".to_owned()]);
    }

    #[test]
    fn a_dlq_writer_that_gives_up_reports_nothing() {
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let give_up = AtomicBool::new(false);
        let mut sink = Flaky {
            failures: u32::MAX,
            written: Vec::new(),
        };
        std::thread::scope(|s| {
            let (sink, give_up) = (&mut sink, &give_up);
            let w = s.spawn(move || {
                write_dead_letters(
                    sink,
                    &jobs_rx,
                    &done_tx,
                    give_up,
                    500,
                    Duration::from_millis(5),
                );
            });
            jobs_tx
                .send(DlqJob {
                    entries: vec![entry("a")],
                    offsets: vec![(0, 1, 7)],
                })
                .expect("send");
            std::thread::sleep(Duration::from_millis(30));
            give_up.store(true, Ordering::Relaxed);
            w.join().expect("writer");
        });
        assert!(done_rx.try_recv().is_err(), "never reported written");
        assert!(sink.written.is_empty());
    }

    #[test]
    fn the_commit_point_waits_for_every_hold_of_earlier_offsets() {
        let mut st = PartitionState {
            next: 0,
            ..PartitionState::default()
        };
        for o in 10..15 {
            st.outstanding.consumed(o);
            st.next = o + 1;
        }
        // 11 is dead-lettered (a hold for the DLQ write), the rest go out.
        st.outstanding.hold(11);
        for o in 10..15 {
            st.outstanding.hold(o);
            st.outstanding.release(o); // handled
        }
        assert_eq!(st.commit_point(), 10);
        for o in [14, 12, 13, 10] {
            st.outstanding.release(o); // delivered, out of order
        }
        assert_eq!(st.commit_point(), 11, "the dead letter is not written yet");
        st.outstanding.release(11); // the output of 11 (none: its DLQ hold stays)
        assert_eq!(st.commit_point(), 11);
        st.outstanding.release(11); // the DLQ write acknowledged
        assert_eq!(st.commit_point(), 15);
    }

    fn lags(owned: &[i32], lag: &[i64]) -> (BTreeSet<i32>, Vec<PartitionLag>) {
        let owned: BTreeSet<i32> = owned.iter().copied().collect();
        let lags = lag
            .iter()
            .enumerate()
            .map(|(p, &lag)| PartitionLag {
                partition: p as i32,
                lag,
                owned: owned.contains(&(p as i32)),
            })
            .collect();
        (owned, lags)
    }

    #[test]
    fn a_drain_watch_stops_drained_only_after_the_source_stayed_caught_up() {
        let after = Duration::from_millis(600);
        let mut w = DrainWatch::new(Some(after));
        assert_eq!(w.check(|| Ok(lags(&[0, 1], &[0, 0]))), None);
        std::thread::sleep(MEASURE_EVERY + Duration::from_millis(150));
        assert_eq!(w.check(|| Ok(lags(&[0, 1], &[0, 0]))), Some(Stop::Drained));
        // A record in between starts the wait over.
        let mut w = DrainWatch::new(Some(after));
        assert_eq!(w.check(|| Ok(lags(&[0], &[0]))), None);
        w.working();
        w.next_check = Instant::now();
        assert_eq!(w.check(|| Ok(lags(&[0], &[0]))), None);
    }

    #[test]
    fn a_drain_watch_stops_stalled_when_lag_is_left_and_does_not_shrink() {
        let after = Duration::from_millis(600);
        let mut w = DrainWatch::new(Some(after));
        let wait = || std::thread::sleep(MEASURE_EVERY + Duration::from_millis(150));
        // Partition 1 is held by another member: its lag stays.
        assert_eq!(w.check(|| Ok(lags(&[0], &[0, 5]))), None);
        wait();
        assert_eq!(w.check(|| Ok(lags(&[0], &[0, 5]))), Some(Stop::Stalled));
        // A lag that shrinks is progress.
        let mut w = DrainWatch::new(Some(after));
        for left in [9, 7, 5] {
            assert_eq!(w.check(|| Ok(lags(&[0], &[left]))), None);
            wait();
        }
        // Owning nothing is never drained, even with no lag.
        let mut w = DrainWatch::new(Some(Duration::from_millis(1)));
        assert_eq!(w.check(|| Ok(lags(&[], &[0]))), None, "join allowance");
    }

    #[test]
    fn a_tombstone_that_fails_is_dead_lettered_as_null_not_as_empty() {
        let cfg = ProcessorConfig::new("src", "g", "out");
        let failure = Failure::permanent("validate", "test.null", "a null value");
        let rec = |null_value| Record {
            partition: 0,
            offset: 7,
            key: Some(b"deleted".to_vec()),
            payload: Vec::new(),
            null_value,
            headers: Vec::new(),
            timestamp: None,
        };
        let (tombstone, _) = dead_letter(&cfg, &rec(true), &failure, 1);
        assert!(tombstone.null_payload);
        assert_eq!(tombstone.key.as_deref(), Some(&b"deleted"[..]));
        let (empty, _) = dead_letter(&cfg, &rec(false), &failure, 1);
        assert!(!empty.null_payload, "an empty value stays an empty value");
    }

    #[test]
    fn in_flight_slab_hands_out_tokens_in_order_and_forgets_removed_ones() {
        let rec = |o| Record {
            partition: (o % 2) as i32,
            offset: o,
            key: None,
            payload: Vec::new(),
            null_value: false,
            headers: Vec::new(),
            timestamp: None,
        };
        let mut slab = InFlightSlab::default();
        let tokens: Vec<usize> = (0..4)
            .map(|o| {
                slab.insert(InFlight {
                    source: rec(o),
                    output: Vec::new(),
                    sends: 0,
                })
            })
            .collect();
        assert_eq!(tokens, vec![0, 1, 2, 3]);
        assert!(slab.remove(1).is_some());
        assert!(slab.remove(1).is_none(), "removed once");
        slab.retain(|f| f.source.partition != 0);
        assert!(slab.get_mut(0).is_none() && slab.get_mut(2).is_none());
        assert!(slab.get_mut(3).is_some());
        assert_eq!(
            slab.insert(InFlight {
                source: rec(9),
                output: Vec::new(),
                sends: 0
            }),
            4
        );
        assert!(slab.remove(3).is_some() && slab.remove(4).is_some());
        assert!(slab.is_empty());
    }
}
