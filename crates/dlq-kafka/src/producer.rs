//! [`GuardedProducer`]: produce records to a primary topic so that none is
//! ever lost — delivered, or dead-lettered with its error, or spooled.
//!
//! # Delivery semantics
//!
//! **At-least-once, never dropped.** When [`GuardedProducer::flush`]
//! returns `Ok`, every record accepted by [`GuardedProducer::send`] is in
//! one of three places:
//!
//! 1. **the primary topic**, acknowledged by every in-sync replica
//!    (`acks=all`, idempotent producer);
//! 2. **the DLQ topic** (`dlq.<topic>` by default), written through the
//!    [`KafkaStore`] as a dead letter with stage `produce`, its error class
//!    (`produce.timeout`, `produce.record_too_large`,
//!    `produce.unknown_topic`, `produce.authorization`, `produce.error`) and
//!    its bytes (key, value, headers) intact — or the DLQ of another store
//!    given to [`GuardedProducer::with_dlq_store`] (an SQS queue);
//! 3. **the spool**, a local durable [`DlqStore`] (the embedded
//!    [`SqliteStore`] by default), when the DLQ write fails too (the cluster
//!    is down). [`flush_spool`] moves spooled dead letters to the DLQ later;
//!    the producer does it by itself at start and once a delivery succeeds
//!    after failures (Kafka is back), and `dlq spool flush` does it on
//!    demand.
//!
//! A delivery that fails or times out (`message.timeout.ms` =
//! [`ProducerConfig::delivery_timeout`]) counts as **not delivered**.
//! Retryable failures (timeouts, transient broker errors) are sent again
//! after a backoff of the [`RetryPolicy`], from a retry queue that holds no
//! other record back; after the last attempt — or at once for a permanent
//! failure (record too large, unknown topic, authorization) — the record is
//! dead-lettered. Topics are never auto-created by the producer
//! (`allow.auto.create.topics=false`).
//!
//! **Duplicates.** A delivery that timed out may still have reached the log
//! (librdkafka calls it *possibly persisted*); it is sent again, so the
//! primary topic may hold such a record twice, and a record dead-lettered
//! as `produce.timeout` may also be in the primary topic. The DLQ and the
//! spool never hold a record twice: each record gets a UUIDv7 when it is
//! accepted (it has no Kafka offset yet), its dead letter carries it as its
//! id, and stores deduplicate on it — so a spool flush interrupted between
//! the DLQ write and the spool's settlement writes nothing twice.
//!
//! **Order.** librdkafka keeps the order of first attempts per partition
//! (idempotence); a record sent again after a failure lands after the
//! records sent meanwhile.
//!
//! **Failure of the last resort.** If the spool cannot be written either,
//! the dead letters stay in memory and `flush` returns
//! [`ProducerError::Unstored`]: calling it again retries them. Dropping a
//! producer that still holds records flushes it first (best effort, logged).
//!
//! # Example
//!
//! ```no_run
//! use dlq_kafka::KafkaConfig;
//! use dlq_kafka::producer::{GuardedProducer, ProduceRecord, ProducerConfig};
//!
//! let kafka = KafkaConfig::from_url("kafka://127.0.0.1:19092")?;
//! let config = ProducerConfig::new("rss.events");
//! let mut producer = GuardedProducer::with_spool_url(kafka, config, "sqlite://dlq-spool.db")?;
//! producer.send(ProduceRecord::value(br#"{"title":"Fed holds rates"}"#.to_vec()))?;
//! let report = producer.flush()?;
//! assert_eq!(report.sent, report.delivered + report.dead_lettered + report.spooled);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::KafkaStore;
use crate::client::base_config;
use crate::client::block_on_unless;
use crate::config::{KafkaConfig, valid_topic};
use crate::processor::{AckContext, owned_headers, produce_failure};
use crate::retry::{Health, Redactor, Watched, is_retryable};
use chrono::{DateTime, Utc};
use dlq_core::Failure;
use dlq_core::envelope::{DeadLetter, Header, Source};
use dlq_core::retry::{Decision, RetryPolicy, RetryState};
use dlq_core::store::{DlqStore, Entry, Selection, Status, StoreError};
use dlq_sqlite::SqliteStore;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

/// The stage of every dead letter the producer writes.
pub const STAGE: &str = "produce";

/// How the error text of a dead letter starts, as the seed's Python
/// producer writes it (`{"error": "Failed to send to primary topic", …}`).
pub const ERROR_PREFIX: &str = "Failed to send to primary topic";

/// Spooled records moved per DLQ write by [`flush_spool`].
const SPOOL_PAGE: usize = 500;

/// Longest wait between two attempts to reach the DLQ store (or the spool)
/// after failures.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(30);

/// Bytes kept free in a batch below the topic's `max.message.bytes` for
/// the record batch framing.
const BATCH_FRAMING: usize = 512;

/// Bytes a produce request may carry beyond its largest record.
const REQUEST_SLACK: usize = 64 * 1024;

/// How often records that were not delivered (or spooled) are summed up
/// in one warning: an outage fails thousands of records, and a line per
/// record would bury the one line that matters.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// How a [`GuardedProducer`] sends, retries and dead-letters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// The primary topic. It must exist: the producer never creates it.
    pub topic: String,
    /// The DLQ. Default (`None`): the store's DLQ prefix and the topic,
    /// `dlq.<topic>`.
    pub dlq: Option<String>,
    /// How failed deliveries are retried: attempts in all (the first
    /// included), backoff between them.
    pub retry: RetryPolicy,
    /// How long one delivery attempt may take, librdkafka's own retries
    /// included (`message.timeout.ms`); past it the attempt failed.
    /// Default [`ProducerConfig::DEFAULT_DELIVERY_TIMEOUT`].
    pub delivery_timeout: Duration,
    /// Most records held at once (in flight, waiting for a retry, or
    /// waiting for their dead-letter write); `send` waits for room.
    /// Default 100 000.
    pub max_in_flight: usize,
    /// Dead letters per DLQ write. Default 500.
    pub dlq_batch: usize,
    /// Longest a dead letter waits for its batch to fill. Default 100 ms.
    pub dlq_linger: Duration,
}

impl ProducerConfig {
    /// 30 s, the store's default operation timeout.
    pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration with defaults for this primary topic.
    pub fn new(topic: impl Into<String>) -> ProducerConfig {
        ProducerConfig {
            topic: topic.into(),
            dlq: None,
            retry: RetryPolicy::default(),
            delivery_timeout: Self::DEFAULT_DELIVERY_TIMEOUT,
            max_in_flight: 100_000,
            dlq_batch: 500,
            dlq_linger: Duration::from_millis(100),
        }
    }

    /// Checks the configuration against the store's; every problem is
    /// reported.
    pub fn validate(&self, kafka: &KafkaConfig) -> Result<(), Vec<String>> {
        self.validate_with(kafka, true)
    }

    /// [`ProducerConfig::validate`]; the DLQ is checked as a DLQ topic of
    /// the Kafka store only when `dlq_in_kafka`.
    fn validate_with(&self, kafka: &KafkaConfig, dlq_in_kafka: bool) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !valid_topic(&self.topic) {
            problems.push(format!(
                "topic {:?} is not a valid topic name (a-z, 0-9, '.', '_', '-'; at most 249)",
                self.topic
            ));
        }
        let dlq = self.dlq_name(kafka);
        if dlq_in_kafka
            && (!dlq.starts_with(&kafka.dlq_prefix)
                || dlq == kafka.ledger_topic
                || dlq == kafka.blob_topic
                || !valid_topic(&dlq))
        {
            problems.push(format!(
                "DLQ {dlq:?} is not a DLQ of the store: name it with the prefix {:?} \
                 (e.g. {}{}), other than the ledger and blob topics",
                kafka.dlq_prefix, kafka.dlq_prefix, self.topic
            ));
        }
        if dlq == self.topic {
            problems.push(format!("the DLQ must differ from the topic ({dlq:?})"));
        }
        if let Err(mut p) = self.retry.validate() {
            problems.append(&mut p);
        }
        if self.delivery_timeout < Duration::from_millis(100) {
            problems.push(format!(
                "delivery_timeout {:?} is too short (at least 100 ms)",
                self.delivery_timeout
            ));
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight must be at least 1".into());
        }
        if self.dlq_batch == 0 {
            problems.push("dlq_batch must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The DLQ name in effect with this store configuration.
    pub fn dlq_name(&self, kafka: &KafkaConfig) -> String {
        self.dlq
            .clone()
            .unwrap_or_else(|| format!("{}{}", kafka.dlq_prefix, self.topic))
    }
}

/// One record to produce. Records without a key go to partitions chosen by
/// librdkafka; keyed ones to their key's partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// The key, byte for byte.
    pub key: Option<Vec<u8>>,
    /// The value, byte for byte.
    pub payload: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<Header>,
}

impl ProduceRecord {
    /// A keyless record without headers.
    pub fn value(payload: impl Into<Vec<u8>>) -> ProduceRecord {
        ProduceRecord {
            payload: payload.into(),
            ..ProduceRecord::default()
        }
    }
}

/// What a producer did so far. After a successful
/// [`flush`](GuardedProducer::flush),
/// `sent == delivered + dead_lettered + spooled`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ProduceReport {
    /// Records accepted by `send`.
    pub sent: u64,
    /// Records acknowledged by the primary topic.
    pub delivered: u64,
    /// Deliveries sent again after a failed attempt.
    pub retried: u64,
    /// Records written to the Kafka DLQ.
    pub dead_lettered: u64,
    /// Records written to the spool because the DLQ could not be written.
    pub spooled: u64,
    /// Spooled records (of this run or earlier ones) moved to the Kafka DLQ
    /// by this producer.
    pub spool_flushed: u64,
    /// Dead letters (DLQ or spool) per error class.
    pub by_error_class: BTreeMap<String, u64>,
}

/// What [`flush_spool`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpoolFlushReport {
    /// Records that left the spool (settled there as `replayed`).
    pub flushed: u64,
    /// Of those, records newly appended to the DLQ store.
    pub appended: u64,
    /// Of those, records the DLQ store already held (an earlier flush
    /// stopped between its DLQ write and the spool's settlement).
    pub duplicates: u64,
}

/// A producer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The configuration cannot work; every problem is listed.
    #[error("invalid producer configuration: {}", problems.join("; "))]
    Config {
        /// Each problem, in words a user can act on.
        problems: Vec<String>,
    },
    /// The Kafka client could not be created (bad client options).
    #[error("creating the Kafka producer: {message}")]
    Client {
        /// librdkafka's reason, secrets scrubbed.
        message: String,
    },
    /// Dead letters could be written neither to the DLQ nor to the spool.
    /// They are held in memory: call [`GuardedProducer::flush`] again.
    #[error(
        "{count} dead letters could be written neither to the DLQ nor to the spool \
         (they are held in memory; flush again once the spool is writable): {source}"
    )]
    Unstored {
        /// Dead letters held.
        count: usize,
        /// The spool's error.
        #[source]
        source: StoreError,
    },
    /// The spool could not be read.
    #[error("reading the spool: {0}")]
    Spool(#[source] StoreError),
    /// The cluster refused the credentials or an operation (authentication
    /// or authorization), or the DLQ store cannot work with this
    /// configuration: no retry helps. Records not acknowledged yet are
    /// neither delivered nor stored: produce them again once it is fixed.
    #[error("{message}")]
    Denied {
        /// What failed and what to check (never a secret).
        message: String,
    },
}

/// The warnings of many records, summed up (see [`SUMMARY_EVERY`]).
#[derive(Default)]
struct Summary {
    /// Records given up on (dead-lettered), per error class.
    not_delivered: BTreeMap<String, u64>,
    /// Dead letters written to the spool.
    spooled: u64,
    /// Failed DLQ writes (their dead letters were spooled), and the last error.
    dlq_failures: u64,
    last_dlq_error: Option<String>,
    /// When the first event of this summary happened.
    since: Option<Instant>,
}

impl Summary {
    fn started(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    /// Logs and resets the summary when it is old enough (or with `now`).
    fn emit(&mut self, topic: &str, dlq: &str, now: bool) {
        let Some(since) = self.since else {
            return;
        };
        if !now && since.elapsed() < SUMMARY_EVERY {
            return;
        }
        let s = std::mem::take(self);
        let not_delivered: u64 = s.not_delivered.values().sum();
        let classes = s
            .not_delivered
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        let secs = since.elapsed().as_secs_f64();
        let spooled = if s.spooled > 0 {
            format!(
                "; {} dead letters spooled ({} failed attempts to write {dlq}, last: {})",
                s.spooled,
                s.dlq_failures,
                s.last_dlq_error.as_deref().unwrap_or("-")
            )
        } else {
            String::new()
        };
        tracing::warn!(
            "in the last {secs:.0}s: {not_delivered} records not delivered to {topic} \
             ({classes}), dead-lettered{spooled}"
        );
    }
}

/// A record the producer holds until it is delivered or stored elsewhere.
struct Flight {
    id: String,
    record: ProduceRecord,
    accepted_at: DateTime<Utc>,
    first_failed_at: Option<DateTime<Utc>>,
    retry: RetryState,
    /// Waiting in the retry queue (not in librdkafka).
    queued: bool,
}

/// Produces to a primary topic with retries, a DLQ and a spool; see the
/// [module documentation](self) for the semantics.
///
/// All calls block (like [`KafkaStore`]'s): from async code, run the
/// producer in `spawn_blocking`. Delivery reports, retries and dead-letter
/// writes are served inside `send`, `poll` and `flush` (librdkafka sends
/// on its own threads): a caller that waits between records should call
/// [`poll`](GuardedProducer::poll) meanwhile, as `dlq produce` does while
/// its input is slow.
pub struct GuardedProducer<S: DlqStore = SqliteStore> {
    kafka: KafkaConfig,
    config: ProducerConfig,
    dlq: String,
    /// The topic's `max.message.bytes`, when it could be read.
    topic_limit: Option<usize>,
    redactor: Redactor,
    producer: BaseProducer<AckContext>,
    flights: HashMap<usize, Flight>,
    /// Records due to be sent (again), by time.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    next_token: usize,
    /// Dead letters waiting for their write, and since when.
    dead: Vec<Entry>,
    dead_since: Option<Instant>,
    /// The DLQ store: the Kafka store, opened on first use (opening it
    /// needs the cluster), or another store given at creation.
    store: Option<Box<dyn DlqStore + Send>>,
    store_failures: u32,
    store_retry_at: Option<Instant>,
    spool: S,
    spool_failures: u32,
    spool_retry_at: Option<Instant>,
    /// The spool may hold records to move to the DLQ.
    spool_dirty: bool,
    /// A delivery failed with a retryable error since the last success.
    kafka_trouble: bool,
    report: ProduceReport,
    /// What the clients' contexts saw (an access failure is fatal).
    health: Health,
    /// A failure no retry fixes (the DLQ store refused this configuration).
    fatal: Option<String>,
    summary: Summary,
}

impl<S: DlqStore> std::fmt::Debug for GuardedProducer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the clients: their configuration holds credentials.
        f.debug_struct("GuardedProducer")
            .field("kafka", &self.kafka)
            .field("config", &self.config)
            .field("dlq", &self.dlq)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl GuardedProducer<SqliteStore> {
    /// A producer whose spool is the embedded SQLite store at `spool_url`
    /// (`sqlite://PATH`).
    pub fn with_spool_url(
        kafka: KafkaConfig,
        config: ProducerConfig,
        spool_url: &str,
    ) -> Result<GuardedProducer<SqliteStore>, ProducerError> {
        let spool = SqliteStore::open_url(spool_url).map_err(ProducerError::Spool)?;
        GuardedProducer::new(kafka, config, spool)
    }
}

impl<S: DlqStore> GuardedProducer<S> {
    /// Creates the producer. It does not need the cluster: the DLQ store is
    /// opened when it is first needed. When the spool holds records, it
    /// tries to move them to the DLQ first (a failure is logged, not
    /// returned: they are moved later).
    pub fn new(
        kafka: KafkaConfig,
        config: ProducerConfig,
        spool: S,
    ) -> Result<GuardedProducer<S>, ProducerError> {
        Self::build(kafka, config, spool, None)
    }

    /// A producer whose dead letters go to DLQ `config.dlq` of `dlq_store`
    /// (an SQS queue, say) instead of a topic of the cluster; the spool
    /// holds them while that store cannot be written.
    pub fn with_dlq_store(
        kafka: KafkaConfig,
        config: ProducerConfig,
        spool: S,
        dlq_store: Box<dyn DlqStore + Send>,
    ) -> Result<GuardedProducer<S>, ProducerError> {
        Self::build(kafka, config, spool, Some(dlq_store))
    }

    fn build(
        kafka: KafkaConfig,
        config: ProducerConfig,
        spool: S,
        dlq_store: Option<Box<dyn DlqStore + Send>>,
    ) -> Result<GuardedProducer<S>, ProducerError> {
        let mut problems = Vec::new();
        if let Err(e) = kafka.validate() {
            problems.extend(e.problems);
        }
        if let Err(p) = config.validate_with(&kafka, dlq_store.is_none()) {
            problems.extend(p);
        }
        if !problems.is_empty() {
            return Err(ProducerError::Config { problems });
        }
        let redactor = Redactor::new(kafka.secret_values());
        let health = Health::new(redactor.clone());
        let dlq = config.dlq_name(&kafka);
        let probe = config.delivery_timeout.min(kafka.timeout());
        let topic_limit = topic_limit(&base_config(&kafka), &config.topic, probe, &health);
        if let Some(denied) = health.denied() {
            return Err(ProducerError::Denied {
                message: denied.to_owned(),
            });
        }
        let producer = create_producer(&kafka, &config, topic_limit, &redactor, &health)?;
        let pending: u64 = spool
            .stats()
            .map_err(ProducerError::Spool)?
            .iter()
            .map(|s| s.pending)
            .sum();
        let mut me = GuardedProducer {
            kafka,
            config,
            dlq,
            topic_limit,
            redactor,
            producer,
            flights: HashMap::new(),
            due: BinaryHeap::new(),
            next_token: 0,
            dead: Vec::new(),
            dead_since: None,
            store: dlq_store,
            store_failures: 0,
            store_retry_at: None,
            spool,
            spool_failures: 0,
            spool_retry_at: None,
            spool_dirty: pending > 0,
            kafka_trouble: false,
            report: ProduceReport::default(),
            health,
            fatal: None,
            summary: Summary::default(),
        };
        if me.spool_dirty {
            tracing::info!(
                pending,
                "the spool holds dead letters; moving them to the DLQ"
            );
            me.try_flush_spool();
        }
        Ok(me)
    }

    /// The DLQ dead letters go to.
    pub fn dlq(&self) -> &str {
        &self.dlq
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// What the producer did so far.
    pub fn report(&self) -> &ProduceReport {
        &self.report
    }

    /// The spool.
    pub fn spool(&self) -> &S {
        &self.spool
    }

    /// Records held: in flight, waiting for a retry or for their dead-letter
    /// write.
    pub fn outstanding(&self) -> usize {
        self.flights.len() + self.dead.len()
    }

    /// Accepts a record and sends it; returns once it is queued (never
    /// waits for its delivery). When `max_in_flight` records are held, it
    /// first serves deliveries until there is room.
    ///
    /// Fails only when dead letters fill the room and can be written
    /// neither to the DLQ nor to the spool ([`ProducerError::Unstored`]).
    pub fn send(&mut self, record: ProduceRecord) -> Result<(), ProducerError> {
        while self.outstanding() >= self.config.max_in_flight {
            if self.flights.is_empty() {
                // Only dead letters fill the room: write them now.
                self.write_dead_letters(true)?;
            } else {
                self.poll(Duration::from_millis(1))?;
            }
        }
        let id = uuid::Uuid::now_v7();
        let token = self.next_token;
        self.next_token += 1;
        self.flights.insert(
            token,
            Flight {
                id: id.to_string(),
                record,
                accepted_at: Utc::now(),
                first_failed_at: None,
                // The id's random bits: a spread-out, reproducible jitter.
                retry: self.config.retry.start(id.as_u128() as u64),
                queued: true,
            },
        );
        self.report.sent += 1;
        self.due.push(Reverse((Instant::now(), token)));
        self.send_due();
        self.poll(Duration::ZERO)
    }

    /// Serves delivery reports (waiting up to `timeout` for one), sends the
    /// retries that are due and writes dead letters whose batch is due.
    pub fn poll(&mut self, timeout: Duration) -> Result<(), ProducerError> {
        self.check_denied()?;
        self.producer.poll(timeout);
        self.drain_acks();
        self.check_denied()?;
        self.recover_fatal()?;
        self.send_due();
        let written = self.write_dead_letters(false);
        self.summary.emit(&self.config.topic, &self.dlq, false);
        written
    }

    /// An authentication or authorization failure (seen by a client's
    /// context) or a store that refuses this configuration ends the run.
    fn check_denied(&self) -> Result<(), ProducerError> {
        match self.health.denied().or(self.fatal.as_deref()) {
            Some(m) => Err(ProducerError::Denied {
                message: m.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Waits until every record accepted so far is delivered, dead-lettered
    /// or spooled, and returns the report. Bounded: each record takes at
    /// most its attempts' delivery timeouts and backoffs, and each DLQ
    /// write at most the store's timeout.
    pub fn flush(&mut self) -> Result<ProduceReport, ProducerError> {
        while !self.flights.is_empty() {
            let now = Instant::now();
            let mut wait = Duration::from_millis(5);
            if let Some(Reverse((due, _))) = self.due.peek() {
                wait = wait.min(due.saturating_duration_since(now));
            }
            self.poll(wait)?;
        }
        self.write_dead_letters(true)?;
        self.summary.emit(&self.config.topic, &self.dlq, true);
        if self.spool_dirty && !self.kafka_trouble {
            // Kafka answers: a last chance to move what was spooled, even
            // if the store failed a moment ago.
            self.store_retry_at = None;
            self.try_flush_spool();
        }
        Ok(self.report.clone())
    }

    // ------------------------------------------------------------- sending

    /// Sends every record that is due; when librdkafka's queue is full, the
    /// rest waits for the next round.
    fn send_due(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((due, token))) = self.due.peek() {
            if due > now {
                break;
            }
            self.due.pop();
            let Some(f) = self.flights.get_mut(&token) else {
                continue;
            };
            let r = &f.record;
            let mut br: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.config.topic, token).payload(r.payload.as_slice());
            if let Some(k) = &r.key {
                br = br.key(k.as_slice());
            }
            if let Some(h) = owned_headers(&r.headers) {
                br = br.headers(h);
            }
            match self.producer.send(br) {
                Ok(()) => f.queued = false,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.due.push(Reverse((now, token)));
                    self.producer.poll(Duration::from_millis(1));
                    break;
                }
                // Refused at once (too large for the client, unknown
                // topic, …): the same path as a failed delivery.
                Err((e, _)) => {
                    f.queued = false;
                    self.failed(token, &e);
                }
            }
        }
    }

    fn drain_acks(&mut self) {
        let acks = std::mem::take(
            &mut *self
                .producer
                .context()
                .acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (token, result) in acks {
            match result {
                Ok(()) => {
                    if self.flights.remove(&token).is_some() {
                        self.report.delivered += 1;
                        self.kafka_ok();
                    }
                }
                Err(e) => self.failed(token, &e),
            }
        }
    }

    /// An attempt failed: retry it later, or dead-letter it.
    fn failed(&mut self, token: usize, err: &KafkaError) {
        let Some(mut f) = self.flights.remove(&token) else {
            return;
        };
        let failure = classify(err, &self.config.topic, &self.redactor);
        if failure.retryable {
            self.kafka_trouble = true;
        }
        f.first_failed_at.get_or_insert_with(Utc::now);
        match f.retry.on_failure(failure.retryable) {
            Decision::RetryAfter(delay) => {
                tracing::debug!(error = %failure.message, ?delay, "delivery failed; retrying");
                self.report.retried += 1;
                f.queued = true;
                self.flights.insert(token, f);
                self.due.push(Reverse((Instant::now() + delay, token)));
            }
            Decision::GiveUp(why) => {
                tracing::debug!(error = %failure.message, ?why, dlq = %self.dlq, "record not delivered; dead-lettering it");
                self.summary.started();
                *self
                    .summary
                    .not_delivered
                    .entry(failure.error_class.clone())
                    .or_default() += 1;
                self.dead_letter(f, &failure);
            }
        }
    }

    /// A fatal producer error (librdkafka stops producing): every record
    /// still in the old producer is sent again by a new one. Records that
    /// the old one had delivered without a report yet may be written twice
    /// (at-least-once).
    fn recover_fatal(&mut self) -> Result<(), ProducerError> {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return Ok(());
        };
        tracing::error!(?code, reason = %self.redactor.clean(reason), "fatal producer error; recreating the producer");
        let new = create_producer(
            &self.kafka,
            &self.config,
            self.topic_limit,
            &self.redactor,
            &self.health,
        )?;
        // Dropping the old producer purges it; its reports are not needed.
        drop(std::mem::replace(&mut self.producer, new));
        let now = Instant::now();
        for (&token, f) in &mut self.flights {
            if !f.queued {
                f.queued = true;
                self.due.push(Reverse((now, token)));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------- dead letters

    fn dead_letter(&mut self, f: Flight, failure: &Failure) {
        let mut letter = DeadLetter::new(f.id, f.record.payload, failure);
        letter.key = f.record.key;
        letter.headers = f.record.headers;
        letter.attempts = f.retry.attempts();
        if let Some(t) = f.first_failed_at {
            letter.first_failed_at = t;
        }
        letter.source = Source {
            system: "kafka".into(),
            topic: Some(self.config.topic.clone()),
            partition: None,
            offset: None,
            timestamp: Some(f.accepted_at),
        };
        *self
            .report
            .by_error_class
            .entry(failure.error_class.clone())
            .or_default() += 1;
        self.dead_since.get_or_insert_with(Instant::now);
        self.dead.push(Entry {
            dlq: self.dlq.clone(),
            letter,
            status: Status::Pending,
        });
    }

    /// Writes the waiting dead letters when their batch is due (always with
    /// `force`): to the DLQ, else to the spool. When both fail they stay
    /// held; with `force` that is an error.
    fn write_dead_letters(&mut self, force: bool) -> Result<(), ProducerError> {
        if self.dead.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if !force {
            let due = self.dead.len() >= self.config.dlq_batch
                || self
                    .dead_since
                    .is_some_and(|t| now.duration_since(t) >= self.config.dlq_linger);
            if !due || self.spool_retry_at.is_some_and(|t| t > now) {
                return Ok(());
            }
        }
        let entries = std::mem::take(&mut self.dead);
        let n = entries.len() as u64;
        let written = self.open_store().map(|store| store.append(&entries));
        match written {
            Some(Ok(_)) => {
                self.store_ok();
                self.report.dead_lettered += n;
                self.dead_since = None;
                return Ok(());
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, dlq = %self.dlq, records = n, "writing to the DLQ failed; spooling");
                self.summary.started();
                self.summary.dlq_failures += 1;
                self.summary.last_dlq_error = Some(e.to_string());
                self.store_failed();
            }
            None => {}
        }
        match self.spool.append(&entries) {
            Ok(_) => {
                self.spool_failures = 0;
                self.spool_retry_at = None;
                self.report.spooled += n;
                self.spool_dirty = true;
                self.dead_since = None;
                tracing::debug!(records = n, dlq = %self.dlq, "dead letters spooled; they move to the DLQ once Kafka is back");
                self.summary.started();
                self.summary.spooled += n;
                Ok(())
            }
            Err(e) => {
                self.spool_failures += 1;
                self.spool_retry_at = Some(now + backoff(self.spool_failures));
                let count = entries.len();
                self.dead = entries;
                if force {
                    Err(ProducerError::Unstored { count, source: e })
                } else {
                    tracing::error!(error = %e, records = count, "the spool cannot be written either; holding the dead letters");
                    Ok(())
                }
            }
        }
    }

    // ------------------------------------------------------ store, spool

    /// The DLQ store, opened if need be — unless it failed recently.
    fn open_store(&mut self) -> Option<&mut (dyn DlqStore + Send + 'static)> {
        if self.store_retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        if self.store.is_none() {
            match KafkaStore::open(self.kafka.clone()) {
                Ok(s) => self.store = Some(Box::new(s)),
                Err(e) if !e.is_retriable() => {
                    // Credentials, permissions, configuration: spooling
                    // would hide what a person must fix.
                    self.fatal = Some(format!("opening the DLQ store: {e}"));
                    return None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the DLQ store cannot be opened (is Kafka down?)");
                    self.summary.started();
                    self.summary.dlq_failures += 1;
                    self.summary.last_dlq_error = Some(e.to_string());
                    self.store_failed();
                    return None;
                }
            }
        }
        self.store.as_deref_mut()
    }

    fn store_ok(&mut self) {
        self.store_failures = 0;
        self.store_retry_at = None;
    }

    fn store_failed(&mut self) {
        self.store_failures += 1;
        self.store_retry_at = Some(Instant::now() + backoff(self.store_failures));
    }

    /// A delivery succeeded: after failures, Kafka is back — reach for the
    /// store again at once, and move what was spooled.
    fn kafka_ok(&mut self) {
        if self.kafka_trouble {
            self.kafka_trouble = false;
            self.store_retry_at = None;
            tracing::info!("deliveries succeed again");
        }
        if self.spool_dirty {
            self.try_flush_spool();
        }
    }

    /// Moves the spool's records to the DLQ store, if it can be reached.
    fn try_flush_spool(&mut self) {
        if self.open_store().is_none() {
            return;
        }
        let Some(store) = self.store.as_deref_mut() else {
            return;
        };
        match flush_spool(&mut self.spool, store) {
            Ok(r) => {
                self.store_ok();
                self.spool_dirty = false;
                self.report.spool_flushed += r.flushed;
                if r.flushed > 0 {
                    tracing::info!(records = r.flushed, "moved spooled dead letters to the DLQ");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "moving spooled dead letters to the DLQ failed; trying later");
                self.store_failed();
            }
        }
    }
}

impl<S: DlqStore> Drop for GuardedProducer<S> {
    fn drop(&mut self) {
        // Denied: nothing can be delivered or stored; the error said so.
        if self.outstanding() == 0 || self.check_denied().is_err() {
            return;
        }
        tracing::warn!(
            records = self.outstanding(),
            "a guarded producer dropped without flush; flushing"
        );
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "flushing a dropped guarded producer failed");
        }
    }
}

/// Moves every pending record of the spool (all its DLQs) to the DLQ
/// store: a page at a time, each page appended to the store (durable,
/// idempotent by id) *before* it is settled in the spool as `replayed`. A
/// crash in between leaves the records pending in the spool and already in
/// the store; the next flush appends them again, which the store counts as
/// duplicates and ignores. A spool belongs to one cluster.
pub fn flush_spool<S, K>(spool: &mut S, store: &mut K) -> Result<SpoolFlushReport, StoreError>
where
    S: DlqStore + ?Sized,
    K: DlqStore + ?Sized,
{
    let selection = Selection::pending(None);
    let mut report = SpoolFlushReport::default();
    let mut cursor = None;
    loop {
        let page = spool.scan(&selection, cursor.as_ref(), SPOOL_PAGE)?;
        let mut by_dlq: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for r in page.records {
            by_dlq.entry(r.dlq.clone()).or_default().push(Entry {
                dlq: r.dlq,
                letter: r.letter,
                status: Status::Pending,
            });
        }
        for (dlq, entries) in by_dlq {
            let appended = store.append(&entries)?;
            let ids: Vec<String> = entries.iter().map(|e| e.letter.id.clone()).collect();
            spool.settle(&dlq, &ids, Status::Replayed)?;
            report.flushed += ids.len() as u64;
            report.appended += appended.appended as u64;
            report.duplicates += appended.duplicates as u64;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(report),
        }
    }
}

/// The pending records of a spool, all DLQs together.
pub fn spool_pending<S: DlqStore + ?Sized>(spool: &S) -> Result<u64, StoreError> {
    Ok(spool.stats()?.iter().map(|s| s.pending).sum())
}

/// Classifies a failed delivery to the primary topic: the processor's
/// classes, the seed's error text, and for unclassified errors the
/// retryability of their code.
fn classify(err: &KafkaError, topic: &str, redactor: &Redactor) -> Failure {
    let base = produce_failure(err, topic);
    let retryable = if base.error_class == "produce.error" {
        // A fatal producer is replaced (see recover_fatal): its failures
        // are worth another attempt.
        is_retryable(err) || err.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
    } else {
        base.retryable
    };
    Failure {
        stage: STAGE.into(),
        error_class: base.error_class,
        message: format!(
            "{ERROR_PREFIX} {topic}: {}",
            redactor.clean(err.to_string())
        ),
        retryable,
    }
}

/// Exponential backoff between attempts to reach a store: 250 ms, 500 ms,
/// 1 s, … up to [`MAX_STORE_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(MAX_STORE_BACKOFF)
}

fn create_producer(
    kafka: &KafkaConfig,
    config: &ProducerConfig,
    topic_limit: Option<usize>,
    redactor: &Redactor,
    health: &Health,
) -> Result<BaseProducer<AckContext>, ProducerError> {
    let mut c = base_config(kafka);
    let timeout_ms = config.delivery_timeout.as_millis();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("allow.auto.create.topics", "false")
        .set("message.timeout.ms", timeout_ms.to_string());
    set_if_unset(&mut c, "linger.ms", "5");
    // A missing topic fails its records (produce.unknown_topic) well within
    // one delivery timeout, instead of timing out.
    set_if_unset(
        &mut c,
        "topic.metadata.propagation.max.ms",
        &(timeout_ms / 2).min(30_000).to_string(),
    );
    if let Some(limit) = topic_limit {
        // librdkafka does not split a batch the broker refuses as too large
        // (the Java client does): keep batches within the topic's limit, so
        // that only a record too large by itself is refused.
        c.set(
            "batch.size",
            limit.saturating_sub(BATCH_FRAMING).max(1).to_string(),
        )
        .set(
            "message.max.bytes",
            (limit + REQUEST_SLACK).max(1_000_000).to_string(),
        );
    }
    c.create_with_context(AckContext::new(health.clone()))
        .map_err(|e| ProducerError::Client {
            message: redactor.clean(e.to_string()),
        })
}

fn set_if_unset(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// The topic's `max.message.bytes`, or `None` when it cannot be read in
/// `timeout` (no cluster, no such topic, not authorized).
fn topic_limit(
    base: &ClientConfig,
    topic: &str,
    timeout: Duration,
    health: &Health,
) -> Option<usize> {
    let admin: AdminClient<Watched> = base.create_with_context(Watched(health.clone())).ok()?;
    let _watcher = crate::retry::watcher(base, health);
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let resources = [ResourceSpecifier::Topic(topic)];
    let results = block_on_unless(admin.describe_configs(&resources, &opts), || {
        health.denied().is_some()
    })?
    .ok()?;
    let limit = results
        .into_iter()
        .next()?
        .ok()?
        .get("max.message.bytes")?
        .value
        .as_deref()?
        .parse()
        .ok();
    if limit.is_none() {
        tracing::debug!(topic, "the topic's max.message.bytes is unknown");
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_core::memory::MemoryStore;
    use dlq_core::store::{Batch, CommitReport, Cursor, DlqStats, ScanPage, StoredRecord};

    fn code(c: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(c)
    }

    #[test]
    fn failures_are_classified_with_the_seed_error_text() {
        let r = Redactor::default();
        let cases = [
            (RDKafkaErrorCode::MessageTimedOut, "produce.timeout", true),
            (RDKafkaErrorCode::RequestTimedOut, "produce.timeout", true),
            (
                RDKafkaErrorCode::MessageSizeTooLarge,
                "produce.record_too_large",
                false,
            ),
            (
                RDKafkaErrorCode::UnknownTopic,
                "produce.unknown_topic",
                false,
            ),
            (
                RDKafkaErrorCode::UnknownTopicOrPartition,
                "produce.unknown_topic",
                false,
            ),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                "produce.authorization",
                false,
            ),
            (
                RDKafkaErrorCode::NotLeaderForPartition,
                "produce.error",
                true,
            ),
            (RDKafkaErrorCode::AllBrokersDown, "produce.error", true),
            (RDKafkaErrorCode::Fatal, "produce.error", true),
            (RDKafkaErrorCode::InvalidRecord, "produce.error", false),
            (RDKafkaErrorCode::PolicyViolation, "produce.error", false),
        ];
        for (c, class, retryable) in cases {
            let f = classify(&code(c), "rss.events", &r);
            assert_eq!(f.stage, STAGE);
            assert_eq!(f.error_class, class, "{c:?}");
            assert_eq!(f.retryable, retryable, "{c:?}");
            assert!(
                f.message
                    .starts_with("Failed to send to primary topic rss.events: "),
                "{}",
                f.message
            );
        }
    }

    #[test]
    fn error_texts_never_carry_secrets() {
        let r = Redactor::new(vec!["hunter2".into()]);
        let f = classify(
            &KafkaError::ClientCreation("sasl.password=hunter2".into()),
            "t",
            &r,
        );
        assert!(!f.message.contains("hunter2"), "{}", f.message);
    }

    #[test]
    fn store_backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_secs(2));
        assert_eq!(backoff(40), MAX_STORE_BACKOFF);
    }

    #[test]
    fn config_defaults_the_dlq_to_the_store_prefix_and_reports_every_problem() {
        let mut kafka = KafkaConfig::new("127.0.0.1:9092");
        let c = ProducerConfig::new("rss.events");
        assert_eq!(c.dlq_name(&kafka), "dlq.rss.events");
        assert!(c.validate(&kafka).is_ok());
        kafka.dlq_prefix = "errors.".into();
        assert_eq!(c.dlq_name(&kafka), "errors.rss.events");

        let bad = ProducerConfig {
            topic: "bad topic".into(),
            dlq: Some("dlq.ledger".into()),
            delivery_timeout: Duration::from_millis(5),
            max_in_flight: 0,
            ..ProducerConfig::new("x")
        };
        let problems = bad
            .validate(&KafkaConfig::new("127.0.0.1:9092"))
            .expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    fn spooled(dlq: &str, n: usize) -> Vec<Entry> {
        let f = Failure::transient(
            "produce",
            "produce.timeout",
            "Failed to send to primary topic t",
        );
        (0..n)
            .map(|i| {
                let payload = if i == 0 {
                    // Larger than the spool's envelope limit: claim-checked.
                    vec![7u8; 10_000]
                } else {
                    format!("{{\"i\":{i}}}").into_bytes()
                };
                Entry {
                    dlq: dlq.into(),
                    letter: DeadLetter::new(uuid::Uuid::now_v7().to_string(), payload, &f),
                    status: Status::Pending,
                }
            })
            .collect()
    }

    fn small_spool() -> MemoryStore {
        MemoryStore::with_options(
            dlq_core::envelope::EncodeOptions::with_max_bytes(4096).expect("options"),
        )
    }

    fn payloads(store: &impl DlqStore, dlq: &str) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = store
            .scan_all(&Selection::pending(Some(dlq)), 100)
            .map(|r| r.expect("scan").letter.payload)
            .collect();
        out.sort();
        out
    }

    #[test]
    fn flush_spool_moves_every_page_of_every_dlq_once() {
        let mut spool = small_spool();
        let a = spooled("dlq.a", SPOOL_PAGE * 2 + 7);
        let b = spooled("dlq.b", 3);
        spool.append(&a).expect("spool");
        spool.append(&b).expect("spool");
        let mut store = MemoryStore::new();
        let r = flush_spool(&mut spool, &mut store).expect("flush");
        assert_eq!(r.flushed, (a.len() + b.len()) as u64);
        assert_eq!((r.appended, r.duplicates), (r.flushed, 0));
        assert_eq!(spool_pending(&spool).expect("stats"), 0);
        let mut want: Vec<Vec<u8>> = a.iter().map(|e| e.letter.payload.clone()).collect();
        want.sort();
        assert_eq!(payloads(&store, "dlq.a"), want, "byte for byte");
        assert_eq!(payloads(&store, "dlq.b").len(), 3);
        let again = flush_spool(&mut spool, &mut store).expect("flush again");
        assert_eq!(again, SpoolFlushReport::default(), "nothing moves twice");
    }

    /// A store whose settlements fail while `fail` is set: a flush that
    /// stops between the DLQ write and the spool's settlement.
    struct SettleFails {
        inner: MemoryStore,
        fail: bool,
    }

    impl DlqStore for SettleFails {
        fn commit(&mut self, batch: Batch<'_>) -> dlq_core::store::Result<CommitReport> {
            if self.fail && !batch.settle.is_empty() {
                return Err(StoreError::Backend {
                    backend: "test",
                    message: "crash".into(),
                    retryable: true,
                });
            }
            self.inner.commit(batch)
        }
        fn scan(
            &self,
            s: &Selection,
            after: Option<&Cursor>,
            limit: usize,
        ) -> dlq_core::store::Result<ScanPage> {
            self.inner.scan(s, after, limit)
        }
        fn get(&self, dlq: &str, id: &str) -> dlq_core::store::Result<Option<StoredRecord>> {
            self.inner.get(dlq, id)
        }
        fn stats(&self) -> dlq_core::store::Result<Vec<DlqStats>> {
            self.inner.stats()
        }
        fn dlqs(&self) -> dlq_core::store::Result<Vec<String>> {
            self.inner.dlqs()
        }
        fn checkpoint(&self, name: &str) -> dlq_core::store::Result<Option<String>> {
            self.inner.checkpoint(name)
        }
    }

    #[test]
    fn a_flush_interrupted_before_the_spool_settles_duplicates_nothing() {
        let mut spool = SettleFails {
            inner: small_spool(),
            fail: true,
        };
        let entries = spooled("dlq.a", 5);
        spool.inner.append(&entries).expect("spool");
        let mut store = MemoryStore::new();
        flush_spool(&mut spool, &mut store).expect_err("settle fails");
        assert_eq!(payloads(&store, "dlq.a").len(), 5, "in the DLQ already");
        assert_eq!(spool_pending(&spool).expect("stats"), 5, "still spooled");

        spool.fail = false;
        let r = flush_spool(&mut spool, &mut store).expect("flush");
        assert_eq!((r.flushed, r.appended, r.duplicates), (5, 0, 5));
        assert_eq!(store.stats().expect("stats")[0].total, 5, "none twice");
        assert_eq!(spool_pending(&spool).expect("stats"), 0);
    }
}
