//! Raw rdkafka I/O: the admin client (topic creation), one read_committed
//! consumer (metadata, watermarks, reads by offset), and the idempotent,
//! optionally transactional producer.
//!
//! Everything here blocks (the [`DlqStore`](dlq_core::DlqStore) trait is
//! synchronous); async callers run the store in `spawn_blocking`. No type
//! here derives `Debug`: the `ClientConfig`s hold credentials.

use crate::config::KafkaConfig;
use crate::position::{PartitionOffset, TopicPartition};
use crate::retry::{Health, Redactor, Watched, backend, failure, is_retryable, watcher};
use chrono::{DateTime, Utc};
use dlq_core::envelope::Header;
use dlq_core::store::{Result, StoreError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

/// Bytes a produce request may carry beyond the largest record (framing).
const REQUEST_SLACK: usize = 64 * 1024;

/// Longest wait of one metadata request: a request waits for a broker
/// connection, and one that fails authentication never comes; between
/// attempts the store checks what its watcher saw.
const METADATA_ATTEMPT: Duration = Duration::from_secs(1);

/// Offsets further apart than this are read with a new fetch position
/// rather than by reading (and dropping) everything in between.
const SEEK_GAP: i64 = 256;

/// One record to produce.
pub(crate) struct Outgoing {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    /// `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp_ms: i64,
}

impl Outgoing {
    /// The librdkafka record for this one, delivery reports tagged
    /// `opaque` (borrows the key and value; the headers are built).
    pub fn record<D: rdkafka::util::IntoOpaque>(&self, opaque: D) -> BaseRecord<'_, [u8], [u8], D> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, opaque)
            .partition(self.partition)
            .timestamp(self.timestamp_ms);
        if let Some(k) = &self.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &self.value {
            record = record.payload(v.as_slice());
        }
        if let Some(h) = crate::headers::owned(&self.headers) {
            record = record.headers(h);
        }
        record
    }
}

/// One record read, owned.
pub(crate) struct Fetched {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp: Option<DateTime<Utc>>,
}

impl Fetched {
    pub fn of(m: &BorrowedMessage<'_>) -> Fetched {
        Fetched {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: headers_of(m),
            timestamp: timestamp_of(m),
        }
    }
}

/// The headers of a message, byte for byte.
pub(crate) fn headers_of(m: &BorrowedMessage<'_>) -> Vec<Header> {
    crate::headers::of(m)
}

/// The message timestamp, if it has one.
pub(crate) fn timestamp_of(m: &BorrowedMessage<'_>) -> Option<DateTime<Utc>> {
    m.timestamp()
        .to_millis()
        .and_then(DateTime::from_timestamp_millis)
}

/// Which delivery a report belongs to: reports of an earlier, failed batch
/// may still arrive and must not fill the slots of the current one.
struct Tag {
    generation: u64,
    index: usize,
}

/// A delivery report: the position, or the error and the topic.
type Slot = Option<std::result::Result<PartitionOffset, (KafkaError, String)>>;

#[derive(Default)]
struct DeliveryState {
    generation: u64,
    slots: Vec<Slot>,
    /// Slots still empty: the writer waits until this is 0.
    missing: usize,
}

/// The producer context: records each delivery report in its slot and
/// wakes the writer waiting for them. Reports arrive on the producer's
/// polling thread, so the writer sleeps on a condition variable instead
/// of polling (rdkafka 0.39's `poll` spins out the last fraction of each
/// millisecond of its timeout).
struct Deliveries {
    state: Mutex<DeliveryState>,
    reported: Condvar,
    health: Health,
}

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a report arrives or `until`, whichever is first.
    fn wait<'a>(
        &self,
        guard: std::sync::MutexGuard<'a, DeliveryState>,
        until: Instant,
    ) -> std::sync::MutexGuard<'a, DeliveryState> {
        let left = until.saturating_duration_since(Instant::now());
        self.reported
            .wait_timeout(guard, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0)
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.health.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.on_error(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Tag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<Tag>) {
        let mut state = self.lock();
        if tag.generation != state.generation {
            return;
        }
        let st = &mut *state;
        if let Some(slot) = st.slots.get_mut(tag.index) {
            if slot.is_none() {
                st.missing = st.missing.saturating_sub(1);
            }
            *slot = Some(match result {
                Ok(m) => Ok(PartitionOffset::new(m.partition(), m.offset())),
                Err((e, m)) => Err((e.clone(), m.topic().to_owned())),
            });
        }
        drop(state);
        self.reported.notify_all();
    }
}

/// How a write failed: the commit itself (whose outcome may be unknown),
/// or anything before it.
enum Failed {
    Commit(KafkaError),
    Other(StoreError),
}

/// The producer and whether `init_transactions` has run on it.
struct TxProducer {
    inner: ThreadedProducer<Deliveries>,
    initialized: bool,
}

/// The settings every client of a store shares: bootstrap servers, the
/// pass-through options and the password. Holds the secret: never print it.
pub(crate) fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "dlq-kafka");
    for (k, v) in &config.options {
        base.set(k, v);
    }
    if let Some(pw) = config.sasl_password() {
        base.set("sasl.password", pw.expose());
    }
    base.set("socket.timeout.ms", config.timeout_ms.to_string());
    base
}

/// The settings of every producer the store and the replayer create:
/// idempotent, `acks=all`, no topic auto-creation, records up to the
/// store's `max_message_bytes`, and `timeout` for a delivery.
pub(crate) fn idempotent_producer(
    base: &ClientConfig,
    max_message_bytes: usize,
    timeout: Duration,
) -> ClientConfig {
    let mut c = base.clone();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("allow.auto.create.topics", "false")
        .set(
            "message.max.bytes",
            (max_message_bytes + REQUEST_SLACK).to_string(),
        )
        // A batch must fit the topic's max.message.bytes; a record larger
        // than batch.size still goes alone.
        .set("batch.size", max_message_bytes.to_string())
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout.as_millis().to_string());
    c
}

/// Source offsets to commit in a write's transaction (exactly-once
/// processing): the next offsets to read, and the consumer group's metadata.
pub(crate) type TxnOffsets<'a> = (
    &'a TopicPartitionList,
    &'a rdkafka::consumer::ConsumerGroupMetadata,
);

/// The reader's context: the end of a partition is how the reader knows it
/// has read everything (`enable.partition.eof`), not an error worth logging;
/// other errors go to the store's [`Health`].
pub(crate) struct ReaderContext(Health);

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            self.0.on_error(&error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// The store's clients.
pub(crate) struct Client {
    /// Common settings (with the password): for the producer, which is
    /// recreated after a fatal error.
    base: ClientConfig,
    admin: AdminClient<Watched>,
    consumer: BaseConsumer<ReaderContext>,
    producer: Option<TxProducer>,
    redactor: Redactor,
    /// What the clients' contexts saw: an access failure ends every call.
    health: Health,
    /// Serves the error callbacks that fill `health` (see [`watcher`]).
    _watcher: Option<ThreadedProducer<Watched>>,
    timeout: Duration,
    transactions: bool,
    transactional_id: String,
    max_message_bytes: usize,
    generation: u64,
    /// The deadline of a write started and not finished yet.
    pending: Option<Instant>,
    /// Where the consumer stands when a read of one partition ended before
    /// the partition's end: `(topic, partition, next offset it delivers)`.
    /// It stays assigned, with what it fetched ahead, so that a read that
    /// goes on from there (the next page of a scan) costs no seek and no
    /// round trip.
    stream: Mutex<Option<(String, i32, i64)>>,
}

/// Runs a future to completion on this thread. The admin client's futures
/// are completed by its own polling thread, so no runtime is needed (and
/// none is started, so the store also works inside one, from
/// `spawn_blocking`).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// [`block_on`], giving up (`None`) as soon as `give_up` says so, checked
/// at least every 50 ms: an admin request waits for a connection that an
/// authentication failure never lets come.
pub(crate) fn block_on_unless<F: Future>(fut: F, give_up: impl Fn() -> bool) -> Option<F::Output> {
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return Some(v),
            Poll::Pending if give_up() => return None,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// A waker that unparks the current thread.
fn thread_waker() -> std::task::Waker {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    Arc::new(Unpark(std::thread::current())).into()
}

impl Client {
    /// Creates the admin client and the consumer (the producer is created
    /// on first use). librdkafka connects lazily: this fails only on bad
    /// configuration.
    pub fn new(config: &KafkaConfig) -> Result<Client> {
        let redactor = Redactor::new(config.secret_values());
        let health = Health::new(redactor.clone());
        let base = base_config(config);
        let watcher = watcher(&base, &health);

        let admin: AdminClient<Watched> = base
            .create_with_context(Watched(health.clone()))
            .map_err(|e| backend(&redactor, "creating the admin client", None, &e))?;
        let mut consumer_config = base.clone();
        consumer_config
            // Needed by librdkafka for assign(); the store never subscribes
            // and never commits offsets.
            .set(
                "group.id",
                format!("dlq-kafka-reader-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("fetch.wait.max.ms", "5")
            // librdkafka fetches ahead of what is read, by default up to
            // 100,000 messages or 64 MiB per partition: a read of one record
            // (a stats' first pending record) would hold 64 MiB. 16 MiB keeps
            // a streaming scan fed, provided the fetcher asks again soon
            // once the queue has room: by default it waits a second
            // (`fetch.queue.backoff.ms`), which made reading 1M records take
            // 7 to 22 s instead of 2.
            .set("queued.min.messages", "20000")
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.queue.backoff.ms", "5");
        let consumer: BaseConsumer<ReaderContext> = consumer_config
            .create_with_context(ReaderContext(health.clone()))
            .map_err(|e| backend(&redactor, "creating the consumer", None, &e))?;
        let transactional_id = config
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("dlq-kafka-{}", uuid::Uuid::new_v4()));
        Ok(Client {
            base,
            admin,
            consumer,
            producer: None,
            redactor,
            health,
            _watcher: watcher,
            timeout: config.timeout(),
            transactions: config.transactions,
            transactional_id,
            max_message_bytes: config.max_message_bytes,
            generation: 0,
            pending: None,
            stream: Mutex::new(None),
        })
    }

    /// The error of a failed call; once a client was denied access, that
    /// denial (the transport error librdkafka returns says nothing about it).
    fn err(&self, op: &str, topic: Option<&str>, e: &KafkaError) -> StoreError {
        match self.health.denied() {
            Some(denied) => failure(format!("{op}: {denied}"), false),
            None => backend(&self.redactor, op, topic, e),
        }
    }

    // ---------------------------------------------------------------- metadata

    /// Every topic of the cluster with its partition count.
    pub fn topics(&self) -> Result<BTreeMap<String, i32>> {
        self.retrying(|| self.topics_once())
    }

    fn topics_once(&self) -> Result<BTreeMap<String, i32>> {
        let md = self
            .consumer
            .fetch_metadata(None, self.timeout.min(METADATA_ATTEMPT))
            .map_err(|e| self.err("listing topics", None, &e))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    }

    /// A topic's id (KIP-516, base64), `None` when it does not exist: it
    /// changes when a topic is deleted and created again under its name.
    pub fn topic_id(&self, topic: &str) -> Result<Option<String>> {
        Ok(self.topic_ids(&[topic])?.into_iter().next().flatten())
    }

    /// [`Client::topic_id`] of several topics in one request, in order.
    pub fn topic_ids(&self, topics: &[&str]) -> Result<Vec<Option<String>>> {
        let ids = dlq_kafka_ffi::topic_ids(self.consumer.client(), topics, self.timeout)
            .map_err(|e| failure(self.redactor.clean(e), true))?;
        Ok(ids
            .into_iter()
            .map(|id| match id {
                dlq_kafka_ffi::TopicId::Id(id) => Some(id),
                dlq_kafka_ffi::TopicId::Missing => None,
            })
            .collect())
    }

    /// A topic's partition count, `None` when it does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        self.retrying(|| self.partitions_once(topic))
    }

    fn partitions_once(&self, topic: &str) -> Result<Option<i32>> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout.min(METADATA_ATTEMPT))
            .map_err(|e| self.err("reading metadata", Some(topic), &e))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error().map(RDKafkaErrorCode::from) {
            None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as i32)),
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
            Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(None),
            Some(code) => Err(self.err(
                "reading metadata",
                Some(topic),
                &KafkaError::MetadataFetch(code),
            )),
        }
    }

    /// Creates a topic (an existing one is fine) and waits until its
    /// partitions have leaders.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: Option<i16>,
        configs: &[(&str, String)],
    ) -> Result<i32> {
        let op = "creating the topic";
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(replication_factor.map_or(-1, i32::from)),
        );
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let results = block_on(self.admin.create_topics([&topic], &opts))
            .map_err(|e| self.err(op, Some(name), &e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(self.err(op, Some(name), &KafkaError::AdminOp(code)));
                }
            }
        }
        tracing::info!(topic = name, partitions, "created topic");
        let deadline = Instant::now() + self.timeout;
        loop {
            let md = self
                .consumer
                .fetch_metadata(Some(name), self.timeout)
                .map_err(|e| self.err(op, Some(name), &e))?;
            if let Some(t) = md.topics().iter().find(|t| t.name() == name)
                && t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
            {
                return Ok(t.partitions().len() as i32);
            }
            if Instant::now() > deadline {
                return Err(failure(
                    format!("{op} {name}: it was not ready after {:?}", self.timeout),
                    true,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(low, high)` watermarks of each partition; under read_committed the
    /// high one is the last stable offset. One request per broker for the
    /// lows and one for the highs, whatever the number of partitions.
    pub fn watermarks(
        &self,
        parts: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, (i64, i64)>> {
        self.retrying(|| self.watermarks_once(parts))
    }

    /// Runs an idempotent request again while it fails with a transient
    /// error (a leader moving, metadata not yet propagated after a topic
    /// was created), until the operation timeout.
    fn retrying<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let result = f();
            // An access failure is reported by a context, while the call
            // itself fails as a transport error: never retried.
            if result.is_err()
                && let Some(denied) = self.health.denied_error()
            {
                return Err(denied);
            }
            match result {
                Err(e) if e.is_retriable() && Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Waits until read_committed readers can see every record written at
    /// these positions: a transaction's markers are written by the
    /// coordinator after the commit returns, and the last stable offset
    /// moves only then. Gives up quietly after the timeout (the records are
    /// committed; only their visibility is late).
    pub fn await_visible(&self, last: &HashMap<TopicPartition, i64>) {
        let parts: Vec<TopicPartition> = last.keys().cloned().collect();
        let deadline = Instant::now() + self.timeout;
        // The markers usually land within a few milliseconds: ask again
        // soon, then less and less often.
        let mut pause = Duration::from_millis(1);
        loop {
            match self.watermarks_once(&parts) {
                Ok(marks)
                    if last
                        .iter()
                        .all(|(k, &o)| marks.get(k).is_some_and(|&(_, hi)| hi > o)) =>
                {
                    return;
                }
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                _ => {
                    tracing::warn!(
                        "committed records not yet visible to readers after the timeout"
                    );
                    return;
                }
            }
        }
    }

    fn watermarks_once(
        &self,
        parts: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, (i64, i64)>> {
        let mut out = HashMap::with_capacity(parts.len());
        if parts.is_empty() {
            return Ok(out);
        }
        let query = |offset: Offset| -> Result<HashMap<TopicPartition, i64>> {
            let mut tpl = TopicPartitionList::with_capacity(parts.len());
            for tp in parts {
                tpl.add_partition_offset(&tp.topic, tp.partition, offset)
                    .map_err(|e| self.err("reading watermarks", Some(&tp.topic), &e))?;
            }
            let res = self
                .consumer
                .offsets_for_times(tpl, self.timeout)
                .map_err(|e| self.err("reading watermarks", None, &e))?;
            let mut map = HashMap::new();
            for el in res.elements() {
                if let Err(e) = el.error() {
                    return Err(self.err("reading watermarks", Some(el.topic()), &e));
                }
                match el.offset() {
                    Offset::Offset(o) => {
                        map.insert(TopicPartition::new(el.topic(), el.partition()), o);
                    }
                    other => {
                        return Err(failure(
                            format!(
                                "reading watermarks of {}/{}: the broker answered {other:?}",
                                el.topic(),
                                el.partition()
                            ),
                            true,
                        ));
                    }
                }
            }
            Ok(map)
        };
        let lows = query(Offset::Beginning)?;
        let highs = query(Offset::End)?;
        for key in parts {
            let (Some(&lo), Some(&hi)) = (lows.get(key), highs.get(key)) else {
                return Err(failure(
                    format!("reading watermarks of {key}: no answer"),
                    true,
                ));
            };
            out.insert(key.clone(), (lo, hi.max(lo)));
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- reading

    /// Reads each `(partition, from, to)` range of `topic` (read_committed),
    /// calling `visit` for every record in it, in offset order per
    /// partition, until every range is read or `visit` breaks. A range ends
    /// at `to` or at the end of the partition, whichever comes first
    /// (transaction markers and aborted records are skipped, so the last
    /// offsets of a range may hold no record).
    pub fn read(
        &self,
        topic: &str,
        ranges: &[(i32, i64, i64)],
        mut visit: impl FnMut(&BorrowedMessage<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let op = "reading";
        let mut todo: HashMap<i32, i64> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &(p, from, to) in ranges {
            if from < to {
                tpl.add_partition_offset(topic, p, Offset::Offset(from.max(0)))
                    .map_err(|e| self.err(op, Some(topic), &e))?;
                todo.insert(p, to);
            }
        }
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        if todo.is_empty() {
            return Ok(());
        }
        // One partition, from where the last read of it stopped: go on.
        let single = match ranges {
            [(p, from, _)] => Some((*p, *from)),
            _ => None,
        };
        let continuing = single.is_some_and(|(p, from)| {
            stream
                .as_ref()
                .is_some_and(|(t, sp, next)| t == topic && *sp == p && *next == from)
        });
        let was_streaming = stream.take().is_some();
        let mut continuing = continuing;
        if !continuing {
            // A live assignment is dropped first: assigning over it can
            // leave its queued events (an end of partition) to this read.
            if was_streaming {
                let _ = self.consumer.unassign();
            }
            self.consumer
                .assign(&tpl)
                .map_err(|e| self.err(op, Some(topic), &e))?;
        }
        // The offset after the last message taken from the consumer, and
        // whether the read stopped before the end of the partition.
        let mut next: Option<i64> = None;
        let mut stopped_early = false;
        let deadline = Instant::now() + self.timeout;
        let result = loop {
            if todo.is_empty() {
                break Ok(());
            }
            if Instant::now() > deadline {
                let parts: BTreeSet<i32> = todo.keys().copied().collect();
                break Err(failure(
                    format!(
                        "{op} topic {topic}: partitions {parts:?} not read to the end within {:?}",
                        self.timeout
                    ),
                    true,
                ));
            }
            match self.consumer.poll(Duration::from_millis(5)) {
                None => {
                    // Idle: the position may have moved past trailing
                    // control records without a message to show for it.
                    next = None;
                    if let Ok(pos) = self.consumer.position() {
                        for el in pos.elements_for_topic(topic) {
                            if let (Offset::Offset(o), Some(&end)) =
                                (el.offset(), todo.get(&el.partition()))
                                && o >= end
                            {
                                todo.remove(&el.partition());
                            }
                        }
                    }
                }
                Some(Ok(m)) => {
                    let p = m.partition();
                    let Some(&end) = todo.get(&p) else { continue };
                    if m.topic() != topic {
                        continue;
                    }
                    next = Some(m.offset() + 1);
                    if m.offset() >= end {
                        todo.remove(&p);
                        continue;
                    }
                    if visit(&m).is_break() {
                        stopped_early = true;
                        break Ok(());
                    }
                    if m.offset() + 1 >= end {
                        stopped_early = true;
                        todo.remove(&p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) if continuing => {
                    // Queued by the read this one goes on from: the end as
                    // it was then. Read again from where this one stands.
                    continuing = false;
                    let at = next.or(single.map(|s| s.1)).unwrap_or(0);
                    let mut again = TopicPartitionList::new();
                    again
                        .add_partition_offset(topic, p, Offset::Offset(at))
                        .map_err(|e| self.err(op, Some(topic), &e))?;
                    let _ = self.consumer.unassign();
                    self.consumer
                        .assign(&again)
                        .map_err(|e| self.err(op, Some(topic), &e))?;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The end of the partition (its last stable offset),
                    // which is at or beyond the end asked for.
                    next = None;
                    stopped_early = false;
                    todo.remove(&p);
                }
                Some(Err(e)) if matches!(e, KafkaError::MessageConsumptionFatal(_)) => {
                    break Err(self.err(op, Some(topic), &e));
                }
                Some(Err(e)) => {
                    // librdkafka retries by itself (a broker went away, a
                    // leader moved); the deadline bounds the wait.
                    tracing::debug!(topic, error = %self.redactor.clean(e.to_string()), "transient read error");
                }
            }
        };
        match (single, next) {
            (Some((p, _)), Some(n)) if result.is_ok() && stopped_early => {
                *stream = Some((topic.to_owned(), p, n));
            }
            _ => {
                let _ = self.consumer.unassign();
            }
        }
        result
    }

    /// The records at exactly these offsets of one partition (fewer when
    /// some no longer exist), in offset order.
    pub fn fetch(&self, topic: &str, partition: i32, offsets: &[i64]) -> Result<Vec<Fetched>> {
        let wanted: BTreeSet<i64> = offsets.iter().copied().collect();
        let mut out = Vec::with_capacity(wanted.len());
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for &o in &wanted {
            match runs.last_mut() {
                Some((_, end)) if o - *end <= SEEK_GAP => *end = o + 1,
                _ => runs.push((o, o + 1)),
            }
        }
        for (from, to) in runs {
            self.read(topic, &[(partition, from, to)], |m| {
                if wanted.contains(&m.offset()) {
                    out.push(Fetched::of(m));
                }
                ControlFlow::Continue(())
            })?;
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- writing

    /// Creates the producer if there is none, and runs
    /// `init_transactions` once on a transactional one.
    /// Creates the store's producer now if it does not exist yet. A new
    /// idempotent producer waits about half a second for its producer id
    /// (librdkafka asks again 500 ms after its first try, made before any
    /// broker connection is up), so a caller that will write soon starts
    /// that wait early, beside other work.
    pub fn warm_up(&mut self) -> Result<()> {
        self.ensure_producer()
    }

    fn ensure_producer(&mut self) -> Result<()> {
        if self.producer.is_none() {
            let mut c = idempotent_producer(&self.base, self.max_message_bytes, self.timeout);
            if self.transactions {
                // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
                let txn_timeout = self.timeout.max(Duration::from_secs(60)).as_millis();
                c.set("transactional.id", &self.transactional_id)
                    .set("transaction.timeout.ms", txn_timeout.to_string());
            }
            let inner: ThreadedProducer<Deliveries> = c
                .create_with_context(Deliveries {
                    state: Mutex::default(),
                    reported: Condvar::new(),
                    health: self.health.clone(),
                })
                .map_err(|e| backend(&self.redactor, "creating the producer", None, &e))?;
            self.producer = Some(TxProducer {
                inner,
                initialized: !self.transactions,
            });
        }
        if let Some(p) = self.producer.as_mut()
            && !p.initialized
        {
            // Connect first: librdkafka looks for the transaction
            // coordinator as soon as a broker is up, but retries only every
            // 500 ms when none is yet.
            let _ = p.inner.client().fetch_metadata(None, self.timeout);
            if let Err(e) = p.inner.init_transactions(self.timeout) {
                let err = backend(&self.redactor, "initializing transactions", None, &e);
                self.producer = None;
                return Err(err);
            }
            p.initialized = true;
        }
        Ok(())
    }

    /// Drops the producer; the next write creates a new one, whose
    /// `init_transactions` fences the old one and aborts its open
    /// transaction (the recovery for fatal errors and for a commit or abort
    /// that timed out, whose outcome librdkafka cannot know).
    fn reset_producer(&mut self, why: &str) {
        if self.producer.take().is_some() {
            tracing::warn!(reason = why, "recreating the Kafka producer");
        }
    }

    /// Writes `first`, then the records `then` builds from the positions
    /// `first` got (only known once delivered, so the two are separated by
    /// a wait when `wait_between`), all in one transaction when the store
    /// is transactional. Returns when every record is acknowledged by the
    /// broker (`acks=all`) and the transaction is committed, with each
    /// record's `(partition, offset)`, `first`'s then `then`'s.
    ///
    /// On any error nothing is committed (transactional) and the error says
    /// whether a retry can help; a delivery timeout is an error, never
    /// "sent".
    pub fn write(
        &mut self,
        first: Vec<Outgoing>,
        wait_between: bool,
        offsets: Option<TxnOffsets<'_>>,
        then: impl FnOnce(&[PartitionOffset]) -> Vec<Outgoing>,
    ) -> Result<Vec<PartitionOffset>> {
        if offsets.is_some() && !self.transactions {
            return Err(failure(
                "committing consumer offsets with the records needs transactions (transactions=true)",
                false,
            ));
        }
        self.generation += 1;
        let generation = self.generation;
        self.ensure_producer()?;
        let written = self.write_inner(generation, first, wait_between, offsets, then);
        self.after_failure(written)
    }

    /// Starts a write of `records` (one transaction when the store is
    /// transactional) and returns once they are handed to librdkafka,
    /// without waiting for them: the caller does other work (reads the next
    /// page) while they travel, then calls [`Client::finish_write`], which
    /// must follow before any other write.
    pub fn start_write(&mut self, records: Vec<Outgoing>) -> Result<()> {
        self.generation += 1;
        let generation = self.generation;
        self.ensure_producer()?;
        let started = self.start_inner(generation, &records);
        self.pending = Some(Instant::now() + self.timeout + Duration::from_secs(5));
        if let Err(e) = self.after_failure(started) {
            self.pending = None;
            return Err(e);
        }
        Ok(())
    }

    /// Adds records to the write [`Client::start_write`] started (to its
    /// transaction when the store is transactional), without waiting.
    pub fn extend_write(&mut self, records: Vec<Outgoing>) -> Result<()> {
        if self.pending.is_none() {
            return Err(failure("extending a write that was not started", false));
        }
        let generation = self.generation;
        let sent = match self.producer.as_ref() {
            Some(p) => {
                let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
                self.send_all(&p.inner, generation, &records, deadline)
                    .map_err(Failed::Other)
            }
            None => Err(Failed::Other(failure("no producer", true))),
        };
        if let Err(e) = self.after_failure(sent) {
            self.pending = None;
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the records of [`Client::start_write`] and commits them;
    /// the same outcome as [`Client::write`].
    pub fn finish_write(&mut self) -> Result<Vec<PartitionOffset>> {
        let Some(deadline) = self.pending.take() else {
            return Err(failure("finishing a write that was not started", false));
        };
        let finished = self.finish_inner(deadline, None);
        self.after_failure(finished)
    }

    /// Writes records outside the store's producer and its transactions,
    /// best effort and without knowing whether each landed: for ledger
    /// entries that are facts anyone may write again (what a count found),
    /// from a store that has no reason to create its transactional producer
    /// (a `dlq stats`), or whose writer may be mid-transaction. A plain,
    /// short-lived producer: no producer id to wait for, no fencing.
    pub fn write_plain(&self, records: &[Outgoing]) -> Result<()> {
        use rdkafka::producer::BaseProducer;
        let mut c = self.base.clone();
        c.set("enable.idempotence", "false")
            .set("acks", "all")
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "0")
            .set("message.timeout.ms", self.timeout.as_millis().to_string());
        let producer: BaseProducer = c
            .create()
            .map_err(|e| backend(&self.redactor, "creating a producer", None, &e))?;
        for r in records {
            producer
                .send(r.record(()))
                .map_err(|(e, _)| backend(&self.redactor, "producing", Some(&r.topic), &e))?;
        }
        let deadline = Instant::now() + self.timeout;
        while producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(failure("records not acknowledged within the timeout", true));
            }
            producer.poll(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Gives up the write [`Client::start_write`] started: its transaction
    /// is aborted (without transactions, what was sent stays sent).
    pub fn abandon_write(&mut self) {
        if self.pending.take().is_some() && self.transactions {
            self.abort();
        }
    }

    /// Whether the write of [`Client::start_write`] has every delivery
    /// report, so that [`Client::finish_write`] will not wait for any.
    pub fn write_reported(&self) -> bool {
        match &self.producer {
            Some(p) if self.pending.is_some() => p.inner.context().lock().missing == 0,
            _ => true,
        }
    }

    /// Turns a failed write into its error, cleaning up the producer: abort
    /// the transaction, or drop the producer when its state is unknown.
    fn after_failure<T>(&mut self, written: std::result::Result<T, Failed>) -> Result<T> {
        match written {
            Ok(v) => Ok(v),
            Err(Failed::Commit(e)) => {
                let err = backend(&self.redactor, "committing the transaction", None, &e);
                let abortable = matches!(&e, KafkaError::Transaction(t)
                    if t.txn_requires_abort() && !t.is_fatal());
                if abortable {
                    self.abort();
                } else {
                    // Fatal, fenced, or timed out: librdkafka cannot know
                    // whether the commit happened (no KIP-890); only a new
                    // producer (an epoch bump) settles it.
                    self.reset_producer("a transaction commit that failed or timed out");
                }
                Err(err)
            }
            Err(Failed::Other(err)) => {
                if self.transactions {
                    self.abort();
                } else if !err.is_retriable() {
                    self.reset_producer("a non-retryable produce error");
                }
                Err(err)
            }
        }
    }

    fn start_inner(
        &self,
        generation: u64,
        records: &[Outgoing],
    ) -> std::result::Result<(), Failed> {
        let Some(p) = self.producer.as_ref() else {
            return Err(Failed::Other(failure("no producer", true)));
        };
        let producer = &p.inner;
        {
            let mut st = producer.context().lock();
            st.generation = generation;
            st.slots = Vec::new();
            st.missing = 0;
        }
        if self.transactions {
            producer.begin_transaction().map_err(|e| {
                Failed::Other(backend(&self.redactor, "beginning a transaction", None, &e))
            })?;
        }
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        self.send_all(producer, generation, records, deadline)
            .map_err(Failed::Other)
    }

    fn finish_inner(
        &self,
        deadline: Instant,
        offsets: Option<TxnOffsets<'_>>,
    ) -> std::result::Result<Vec<PartitionOffset>, Failed> {
        let Some(p) = self.producer.as_ref() else {
            return Err(Failed::Other(failure("no producer", true)));
        };
        let producer = &p.inner;
        // Wait for every acknowledgement first: rdkafka's own flush (inside
        // commit_transaction) polls in 100 ms steps; this wakes on each report.
        let positions = self.wait_all(producer, deadline).map_err(Failed::Other)?;
        if let Some((tpl, meta)) = offsets {
            producer
                .send_offsets_to_transaction(tpl, meta, self.timeout)
                .map_err(Failed::Commit)?;
        }
        if self.transactions {
            producer
                .commit_transaction(self.timeout)
                .map_err(Failed::Commit)?;
        }
        Ok(positions)
    }

    fn write_inner(
        &self,
        generation: u64,
        first: Vec<Outgoing>,
        wait_between: bool,
        offsets: Option<TxnOffsets<'_>>,
        then: impl FnOnce(&[PartitionOffset]) -> Vec<Outgoing>,
    ) -> std::result::Result<Vec<PartitionOffset>, Failed> {
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        self.start_inner(generation, &first)?;
        let Some(p) = self.producer.as_ref() else {
            return Err(Failed::Other(failure("no producer", true)));
        };
        let producer = &p.inner;
        let mut positions = Vec::new();
        if wait_between {
            positions = self.wait_all(producer, deadline).map_err(Failed::Other)?;
        }
        let second = then(&positions);
        self.send_all(producer, generation, &second, deadline)
            .map_err(Failed::Other)?;
        self.finish_inner(deadline, offsets)
    }

    /// Enqueues records, waiting for room in librdkafka's queue when it is
    /// full. Everything stays in flight; nothing is awaited one by one.
    fn send_all(
        &self,
        producer: &ThreadedProducer<Deliveries>,
        generation: u64,
        records: &[Outgoing],
        deadline: Instant,
    ) -> Result<()> {
        // Every slot at once: one lock, not one per record taken against
        // the polling thread that fills them.
        let first = {
            let mut st = producer.context().lock();
            let first = st.slots.len();
            st.slots.resize(first + records.len(), None);
            st.missing += records.len();
            first
        };
        for (i, r) in records.iter().enumerate() {
            let index = first + i;
            let mut record = r.record(Box::new(Tag { generation, index }));
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        record = back;
                        // Room comes with delivery reports: wait for one
                        // (bounded, in case it came before the wait).
                        let ctx = producer.context();
                        let until = (Instant::now() + Duration::from_millis(5)).min(deadline);
                        drop(ctx.wait(ctx.lock(), until));
                    }
                    Err((e, _)) => {
                        // This slot and the later ones stay empty: the write
                        // fails as a whole.
                        let mut st = producer.context().lock();
                        st.missing = st.missing.saturating_sub(records.len() - i);
                        return Err(backend(&self.redactor, "producing", Some(&r.topic), &e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until every record sent so far has its delivery report (they
    /// arrive on the producer's polling thread); the first failed delivery
    /// is the error.
    fn wait_all(
        &self,
        producer: &ThreadedProducer<Deliveries>,
        deadline: Instant,
    ) -> Result<Vec<PartitionOffset>> {
        let ctx = producer.context();
        let mut st = ctx.lock();
        while st.missing > 0 {
            if Instant::now() > deadline {
                return Err(failure(
                    format!(
                        "delivering records: no acknowledgement within {:?} (treated as not delivered)",
                        self.timeout
                    ),
                    true,
                ));
            }
            st = ctx.wait(st, deadline);
        }
        let mut out = Vec::with_capacity(st.slots.len());
        for s in st.slots.iter().flatten() {
            match s {
                Ok(pos) => out.push(*pos),
                Err((e, topic)) => {
                    return Err(backend(
                        &self.redactor,
                        "delivering a record",
                        Some(topic),
                        e,
                    ));
                }
            }
        }
        drop(st);
        // The report reaches us from inside librdkafka's callback, a moment
        // before librdkafka counts the message as done; commit_transaction
        // flushes first and would then poll for a whole 100 ms step.
        while producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(out)
    }

    /// Aborts the open transaction, then recreates the producer. The abort
    /// ends the transaction at once (so that readers' last stable offset
    /// moves on instead of waiting for the transaction timeout); the new
    /// producer avoids a librdkafka race in which the abort's purge, still
    /// running in the broker threads, purges records of the next
    /// transaction. Failures are rare, so the cost of a new producer
    /// (`init_transactions`) does not matter.
    fn abort(&mut self) {
        let Some(p) = self.producer.as_ref() else {
            return;
        };
        let why = match p.inner.abort_transaction(self.timeout) {
            Ok(()) => "an aborted transaction",
            Err(e) if is_retryable(&e) => "an abort that timed out",
            Err(_) => "a fatal transaction error",
        };
        self.reset_producer(why);
    }
}
