//! Tests against the real Kafka broker that `scripts/test.sh` starts: the
//! address, topics with random names, producing and reading back.

use crate::block_on;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The broker address, or `None` (with a message) when no broker was
/// started; under CI a missing broker fails the test.
pub fn bootstrap() -> Option<String> {
    match std::env::var("DLQ_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DLQ_KAFKA_BOOTSTRAP is not set: run the tests with scripts/test.sh")
        }
        _ => {
            eprintln!(
                "skipped: no Kafka broker (run `scripts/kafka.sh start` and set DLQ_KAFKA_BOOTSTRAP, \
                 or run scripts/test.sh)"
            );
            None
        }
    }
}

/// A topic name no other test uses.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates topics with `partitions` partitions each.
pub fn create_topics(bootstrap: &str, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create");
    for r in results {
        r.expect("topic created");
    }
}

/// Produces values (key = the line number) round-robin over partitions.
pub fn produce(bootstrap: &str, topic: &str, partitions: i32, values: &[Vec<u8>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (i, v) in values.iter().enumerate() {
        let key = i.to_string();
        let mut record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(v.as_slice())
            .partition((i as i32) % partitions);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Read {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value (empty for a null value).
    pub value: Vec<u8>,
    /// Its headers, in order.
    pub headers: Vec<dlq_core::Header>,
}

/// Reads every record of a topic up to its end (`read_committed` or not).
pub fn read_all(bootstrap: &str, topic: &str, read_committed: bool) -> Vec<Read> {
    read_messages(bootstrap, topic, read_committed)
        .into_iter()
        .map(|m| Read {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: headers_of(&m),
        })
        .collect()
}

/// A message's headers, names as bytes (through dlq-kafka-ffi: rdkafka's
/// own header API panics on a name that is not UTF-8).
pub fn headers_of(m: &OwnedMessage) -> Vec<dlq_core::Header> {
    m.headers()
        .map(|hs| {
            dlq_kafka_ffi::headers(hs.as_borrowed())
                .into_iter()
                .map(|h| dlq_core::Header::from_name_bytes(h.name, h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every record of a topic up to its end, as rdkafka hands them over
/// (`read_committed` or not), partition by partition in offset order.
pub fn read_messages(bootstrap: &str, topic: &str, read_committed: bool) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("verifier-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < parts.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(m.detach());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Records in a topic (sum of high − low watermarks; counts markers too).
pub fn size(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap_or((0, 0));
            hi - lo
        })
        .sum()
}

/// The payloads of the dead letters in a DLQ topic, decoded as the store does.
pub fn dead_letter_payloads(bootstrap: &str, dlq_topic: &str) -> Vec<Vec<u8>> {
    read_all(bootstrap, dlq_topic, true)
        .into_iter()
        .map(|r| {
            dlq_core::envelope::decode_kafka(&dlq_core::envelope::KafkaRecord {
                value: Some(&r.value),
                key: r.key.as_deref(),
                headers: &r.headers,
                topic: dlq_topic,
                partition: r.partition,
                offset: r.offset,
                timestamp: None,
            })
            .payload
        })
        .collect()
}

/// Deletes topics if they exist (only for topics the tests own).
pub fn delete_topics(bootstrap: &str, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let _ = block_on(admin.delete_topics(names, &AdminOptions::new()));
    // Deletion is asynchronous on the broker: wait until the names are free.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        if !md.topics().iter().any(|t| names.contains(&t.name())) {
            return;
        }
        assert!(Instant::now() < deadline, "topics {names:?} not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
}
