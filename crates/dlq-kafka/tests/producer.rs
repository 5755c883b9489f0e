//! `GuardedProducer` against a real broker: records delivered exactly as
//! sent, permanent failures (too large, unknown topic) dead-lettered at once
//! with their bytes, the spool moved to the DLQ at start without
//! duplicates. Two tests need no broker: an unreachable cluster spools
//! everything, and a spool that fails too is an error, never a drop.
//!
//! The broker address comes from `DLQ_KAFKA_BOOTSTRAP` (start one with
//! `scripts/kafka.sh start`, which prints it). Without it the broker tests
//! print a skip message and pass, except when `CI` is set: then they fail
//! loudly. Every test uses its own random topic names. The broker-restart
//! test lives in `crates/dlq-cli/tests/kafka_produce.rs`.

use dlq_core::envelope::Header;
use dlq_core::memory::MemoryStore;
use dlq_core::store::{
    Batch, CommitReport, Cursor, DlqStats, DlqStore, Entry, Result, ScanPage, Selection, Status,
    StoreError, StoredRecord,
};
use dlq_core::{DeadLetter, Failure, RetryPolicy};
use dlq_kafka::producer::{
    ERROR_PREFIX, GuardedProducer, ProduceRecord, ProducerConfig, ProducerError, flush_spool,
    spool_pending,
};
use dlq_kafka::{KafkaConfig, KafkaStore};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use dlq_testkit::block_on;
use dlq_testkit::kafka::bootstrap;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::time::{Duration, Instant};

/// A record as (key, value, headers), comparable.
type Raw = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Option<Vec<u8>>)>);

fn raw_of(r: &ProduceRecord) -> Raw {
    (
        r.key.clone(),
        r.payload.clone(),
        r.headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    )
}

fn raw_of_letter(l: &DeadLetter) -> Raw {
    (
        l.key.clone(),
        l.payload.clone(),
        l.headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    )
}

/// Records of every shape: JSON, text, binary, empty; with and without a
/// key; headers with bytes and null values.
fn records(n: usize) -> Vec<ProduceRecord> {
    (0..n)
        .map(|i| {
            let payload = match i % 4 {
                0 => format!(r#"{{"event_id":"evt-{i}","price":0.{i}}}"#).into_bytes(),
                1 => format!("plain text — {i}").into_bytes(),
                2 => vec![0, 159, 146, 150, (i % 256) as u8, 255],
                _ if i % 8 == 3 => Vec::new(),
                _ => format!("{i}").into_bytes(),
            };
            let key = (i % 3 != 0).then(|| format!("key-{}", i % 7).into_bytes());
            let headers = if i % 5 == 0 {
                vec![
                    Header {
                        name: "trace-id".into(),
                        value: Some(format!("t-{i}").into_bytes()),
                    },
                    Header {
                        name: "null".into(),
                        value: None,
                    },
                    Header {
                        name: "bin".into(),
                        value: Some(vec![0xff, 0, 0xfe]),
                    },
                ]
            } else {
                Vec::new()
            };
            ProduceRecord {
                key,
                payload,
                headers,
            }
        })
        .collect()
}

fn sorted(mut v: Vec<Raw>) -> Vec<Raw> {
    v.sort();
    v
}

/// One test's private corner of the broker.
struct Env {
    bootstrap: String,
    tag: String,
    config: KafkaConfig,
}

impl Env {
    fn new() -> Option<Env> {
        let bootstrap = bootstrap()?;
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let prefix = format!("dlqt-{tag}.");
        let mut config = KafkaConfig::new(bootstrap.clone());
        config.dlq_prefix = prefix.clone();
        config.ledger_topic = format!("{prefix}ledger");
        config.blob_topic = format!("{prefix}blobs");
        config.replication_factor = Some(1);
        config.timeout_ms = 10_000;
        Some(Env {
            bootstrap,
            tag,
            config,
        })
    }

    /// A primary topic name of this test.
    fn topic(&self, name: &str) -> String {
        format!("prod-{}.{name}", self.tag)
    }

    fn producer_config(&self, topic: &str) -> ProducerConfig {
        let mut c = ProducerConfig::new(topic);
        c.delivery_timeout = Duration::from_secs(5);
        c.retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        };
        c
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("allow.auto.create.topics", "false");
        c
    }

    fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().expect("admin");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let res =
            block_on(admin.create_topics([&topic], &AdminOptions::new())).expect("create topics");
        for r in res {
            r.expect("topic created");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.partitions(name) != Some(partitions as usize) {
            assert!(Instant::now() < deadline, "topic {name} not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A topic's partition count, `None` when it does not exist.
    fn partitions(&self, topic: &str) -> Option<usize> {
        let consumer: BaseConsumer = self.client().create().expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len())
    }

    /// Every record of a topic as a plain reader sees it.
    fn read_raw(&self, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
        dlq_testkit::kafka::read_messages(&self.bootstrap, topic, true)
    }
}

fn raw_of_message(m: &rdkafka::message::OwnedMessage) -> Raw {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    (
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    )
}

fn pending(store: &impl DlqStore, dlq: &str) -> Vec<StoredRecord> {
    store
        .scan_all(&Selection::pending(Some(dlq)), 100)
        .collect::<Result<_>>()
        .expect("scan")
}

/// Asserts what every dead letter of the producer carries.
fn assert_produce_letter(l: &DeadLetter, topic: &str, class: &str, retryable: bool) {
    assert_eq!(l.stage, "produce");
    assert_eq!(l.error_class, class, "{}", l.error);
    assert!(l.error.starts_with(ERROR_PREFIX), "{}", l.error);
    assert_eq!(l.retryable, retryable);
    assert_eq!(l.source.system, "kafka");
    assert_eq!(l.source.topic.as_deref(), Some(topic));
    assert_eq!(l.source.offset, None, "no offset: never delivered");
    let id = uuid::Uuid::parse_str(&l.id).expect("the id is a UUID");
    assert_eq!(id.get_version_num(), 7, "UUIDv7 id, got {}", l.id);
}

// ------------------------------------------------------------ with a broker

#[test]
fn every_record_is_delivered_exactly_as_sent() {
    let Some(env) = Env::new() else { return };
    let topic = env.topic("orders");
    env.create_topic(&topic, 3, &[]);
    let sent = records(2000);
    let mut producer = GuardedProducer::new(
        env.config.clone(),
        env.producer_config(&topic),
        MemoryStore::new(),
    )
    .expect("producer");
    for r in &sent {
        producer.send(r.clone()).expect("send");
    }
    let report = producer.flush().expect("flush");
    assert_eq!(report.sent, 2000);
    assert_eq!(report.delivered, 2000, "{report:?}");
    assert_eq!(
        (report.dead_lettered, report.spooled, report.retried),
        (0, 0, 0)
    );
    let read: Vec<Raw> = env.read_raw(&topic).iter().map(raw_of_message).collect();
    assert_eq!(read.len(), 2000, "no record lost, none twice");
    assert_eq!(
        sorted(read),
        sorted(sent.iter().map(raw_of).collect()),
        "byte for byte"
    );
    assert_eq!(
        env.partitions(producer.dlq()),
        None,
        "no DLQ topic without a dead letter"
    );
}

#[test]
fn a_record_too_large_for_the_topic_goes_to_the_dlq_with_its_bytes() {
    let Some(env) = Env::new() else { return };
    let topic = env.topic("small");
    env.create_topic(&topic, 1, &[("max.message.bytes", "8192")]);
    let mut kafka = env.config.clone();
    // Small DLQ records too: the large payloads go through claim-check blobs.
    kafka.max_message_bytes = 16 * 1024;
    // Small records that fill many batches: only a batch kept within the
    // topic's limit gets them all through.
    let small: Vec<ProduceRecord> = (0..100)
        .map(|i| ProduceRecord {
            key: Some(format!("k{i}").into_bytes()),
            payload: format!("{i:0>200}").into_bytes(),
            headers: Vec::new(),
        })
        .collect();
    // One the broker refuses, one the client refuses (over 1 MB).
    let broker_refuses: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let client_refuses: Vec<u8> = (0..1_200_000).map(|i| (i % 241) as u8).collect();
    let large = [
        ProduceRecord {
            key: Some(b"big-1".to_vec()),
            payload: broker_refuses.clone(),
            headers: vec![Header {
                name: "h".into(),
                value: Some(b"v".to_vec()),
            }],
        },
        ProduceRecord::value(client_refuses.clone()),
    ];
    let mut producer = GuardedProducer::new(
        kafka.clone(),
        env.producer_config(&topic),
        MemoryStore::new(),
    )
    .expect("producer");
    for (i, r) in small.iter().enumerate() {
        producer.send(r.clone()).expect("send");
        if i == 50 {
            for l in &large {
                producer.send(l.clone()).expect("send");
            }
        }
    }
    let report = producer.flush().expect("flush");
    assert_eq!(report.delivered, 100, "{report:?}");
    assert_eq!(report.dead_lettered, 2, "{report:?}");
    assert_eq!(report.retried, 0, "permanent: never retried");
    assert_eq!(report.by_error_class["produce.record_too_large"], 2);
    let delivered: Vec<Raw> = env.read_raw(&topic).iter().map(raw_of_message).collect();
    assert_eq!(
        sorted(delivered),
        sorted(small.iter().map(raw_of).collect())
    );

    let dlq = producer.dlq().to_owned();
    let store = KafkaStore::open(kafka.clone()).expect("store");
    let letters: Vec<DeadLetter> = pending(&store, &dlq)
        .into_iter()
        .map(|r| r.letter)
        .collect();
    assert_eq!(
        sorted(letters.iter().map(raw_of_letter).collect()),
        sorted(large.iter().map(raw_of).collect()),
        "key, value and headers byte for byte"
    );
    for l in &letters {
        assert_produce_letter(l, &topic, "produce.record_too_large", false);
        assert_eq!(l.attempts, 1);
    }
    // The DLQ topic holds envelopes within its limit, pointing at blobs.
    for m in env.read_raw(&dlq) {
        let value = m.payload().expect("value");
        assert!(value.len() <= kafka.max_message_bytes);
        let v: serde_json::Value = serde_json::from_slice(value).expect("envelope");
        assert!(
            v["dlq"]["claim_checks"]
                .as_array()
                .is_some_and(|c| !c.is_empty()),
            "claim-checked"
        );
    }
}

#[test]
fn an_unknown_topic_sends_its_records_to_the_dlq_and_is_not_created() {
    let Some(env) = Env::new() else { return };
    let topic = env.topic("missing");
    let mut config = env.producer_config(&topic);
    config.delivery_timeout = Duration::from_secs(3);
    let sent = records(5);
    let mut producer =
        GuardedProducer::new(env.config.clone(), config, MemoryStore::new()).expect("producer");
    for r in &sent {
        producer.send(r.clone()).expect("send");
    }
    let report = producer.flush().expect("flush");
    assert_eq!(report.delivered, 0);
    assert_eq!(report.dead_lettered, 5, "{report:?}");
    assert_eq!(report.by_error_class["produce.unknown_topic"], 5);
    assert_eq!(report.retried, 0, "permanent: never retried");
    assert_eq!(
        env.partitions(&topic),
        None,
        "the producer never creates it"
    );
    let store = KafkaStore::open(env.config.clone()).expect("store");
    let letters: Vec<DeadLetter> = pending(&store, producer.dlq())
        .into_iter()
        .map(|r| r.letter)
        .collect();
    assert_eq!(
        sorted(letters.iter().map(raw_of_letter).collect()),
        sorted(sent.iter().map(raw_of).collect())
    );
    for l in &letters {
        assert_produce_letter(l, &topic, "produce.unknown_topic", false);
    }
}

#[test]
fn the_spool_moves_to_the_dlq_at_start_and_never_twice() {
    let Some(env) = Env::new() else { return };
    let topic = env.topic("spooled");
    env.create_topic(&topic, 1, &[]);
    let mut kafka = env.config.clone();
    kafka.max_message_bytes = 16 * 1024;
    let dlq = format!("{}{topic}", kafka.dlq_prefix);
    // Dead letters an earlier run spooled while Kafka was down.
    let failure = Failure::transient(
        "produce",
        "produce.timeout",
        format!("{ERROR_PREFIX} {topic}: timed out"),
    );
    let payloads: Vec<Vec<u8>> = vec![
        br#"{"a":1}"#.to_vec(),
        (0..40_000).map(|i| (i % 256) as u8).collect(),
        b"text".to_vec(),
    ];
    let entries: Vec<Entry> = payloads
        .iter()
        .map(|p| {
            let mut l = DeadLetter::new(uuid::Uuid::now_v7().to_string(), p.clone(), &failure);
            l.source.topic = Some(topic.clone());
            Entry {
                dlq: dlq.clone(),
                letter: l,
                status: Status::Pending,
            }
        })
        .collect();
    let mut spool = MemoryStore::new();
    spool.append(&entries).expect("spool");
    // An earlier flush stopped after its DLQ write, before settling the
    // spool: the first record is in the DLQ already.
    let mut store = KafkaStore::open(kafka.clone()).expect("store");
    store.append(&entries[..1]).expect("append");

    let producer =
        GuardedProducer::new(kafka.clone(), env.producer_config(&topic), spool).expect("new");
    assert_eq!(producer.report().spool_flushed, 3, "moved at start");
    assert_eq!(spool_pending(producer.spool()).expect("stats"), 0);
    let stats = producer.spool().stats().expect("stats");
    assert_eq!(stats[0].replayed, 3, "settled as replayed in the spool");

    let stored = pending(&store, &dlq);
    assert_eq!(stored.len(), 3, "none twice");
    let mut got: Vec<Vec<u8>> = stored.into_iter().map(|r| r.letter.payload).collect();
    got.sort();
    let mut want = payloads.clone();
    want.sort();
    assert_eq!(got, want, "byte for byte");
    drop(producer);

    // A flush of a spool already moved moves nothing.
    let mut again = MemoryStore::new();
    for e in &entries {
        let mut e = e.clone();
        e.status = Status::Replayed;
        again.append(&[e]).expect("append");
    }
    let r = flush_spool(&mut again, &mut store).expect("flush");
    assert_eq!(r.flushed, 0);
    assert_eq!(pending(&store, &dlq).len(), 3);
}

// --------------------------------------------------------- without a broker

/// Nothing listens on port 1: every connection is refused at once.
fn unreachable() -> KafkaConfig {
    let mut kafka = KafkaConfig::new("127.0.0.1:1");
    kafka.timeout_ms = 500;
    kafka
}

fn quick(topic: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(topic);
    c.delivery_timeout = Duration::from_millis(300);
    c.retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    c
}

#[test]
fn an_unreachable_cluster_spools_every_record_byte_exact() {
    let path = std::env::temp_dir().join(format!("dlq-spool-{}.db", uuid::Uuid::new_v4()));
    let spool = SqliteStore::open(&path, SqliteOptions::default()).expect("spool");
    let sent = records(12);
    let started = Instant::now();
    // Opening the DLQ store fails (it needs the cluster): the producer
    // still takes every record and spools it.
    let mut producer =
        GuardedProducer::new(unreachable(), quick("rss.events"), spool).expect("producer");
    for r in &sent {
        producer.send(r.clone()).expect("send");
    }
    let report = producer.flush().expect("flush");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded");
    assert_eq!(report.sent, 12);
    assert_eq!(report.spooled, 12, "{report:?}");
    assert_eq!((report.delivered, report.dead_lettered), (0, 0));
    assert_eq!(report.retried, 12, "one retry each (2 attempts)");
    assert_eq!(report.by_error_class["produce.timeout"], 12);
    assert_eq!(producer.dlq(), "dlq.rss.events");
    drop(producer);

    // Durable: another store on the file sees them all.
    let spool = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    let letters: Vec<DeadLetter> = pending(&spool, "dlq.rss.events")
        .into_iter()
        .map(|r| r.letter)
        .collect();
    assert_eq!(
        sorted(letters.iter().map(raw_of_letter).collect()),
        sorted(sent.iter().map(raw_of).collect()),
        "nothing lost, byte for byte"
    );
    for l in &letters {
        assert_produce_letter(l, "rss.events", "produce.timeout", true);
        assert_eq!(l.attempts, 2);
    }
    drop(spool);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A spool that cannot be written (a full disk, say).
struct BrokenSpool;

impl DlqStore for BrokenSpool {
    fn commit(&mut self, _: Batch<'_>) -> Result<CommitReport> {
        Err(StoreError::Backend {
            backend: "test",
            message: "disk full".into(),
            retryable: true,
        })
    }
    fn scan(&self, _: &Selection, _: Option<&Cursor>, _: usize) -> Result<ScanPage> {
        Ok(ScanPage::default())
    }
    fn get(&self, _: &str, _: &str) -> Result<Option<StoredRecord>> {
        Ok(None)
    }
    fn stats(&self) -> Result<Vec<DlqStats>> {
        Ok(Vec::new())
    }
    fn dlqs(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn checkpoint(&self, _: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

#[test]
fn a_spool_that_fails_too_is_an_error_never_a_silent_drop() {
    let mut producer =
        GuardedProducer::new(unreachable(), quick("rss.events"), BrokenSpool).expect("producer");
    for r in records(3) {
        producer.send(r).expect("send");
    }
    match producer.flush() {
        Err(ProducerError::Unstored { count, source }) => {
            assert_eq!(count, 3);
            assert!(source.to_string().contains("disk full"));
        }
        other => panic!("expected Unstored, got {other:?}"),
    }
    assert_eq!(producer.outstanding(), 3, "still held, not dropped");
    assert_eq!(producer.report().spooled, 0);
}

#[test]
fn a_dlq_outside_the_store_prefix_is_refused_up_front() {
    let mut config = quick("rss.events");
    config.dlq = Some("errors.rss".into());
    config.retry.max_attempts = 0;
    let err = GuardedProducer::new(unreachable(), config, MemoryStore::new())
        .expect_err("invalid config");
    let text = err.to_string();
    assert!(text.contains("errors.rss"), "{text}");
    assert!(
        text.contains("max_attempts"),
        "every problem at once: {text}"
    );
}
