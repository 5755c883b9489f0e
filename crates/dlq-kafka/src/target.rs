//! [`KafkaTarget`]: a replay target that writes to topics of a Kafka cluster
//! from a DLQ held elsewhere (an S3 archive, the embedded store, SQS).
//!
//! A replay from a Kafka store to its own cluster goes through the store
//! (`dlq_core::replay::run_to_store`), which can commit the outputs with
//! the settlements. From another store the two cannot share a commit, so
//! this target is at least once, like every external target: each page's
//! records are sent, [`ReplayTarget::flush`] waits until the cluster
//! acknowledged every one of them, and only then does the engine settle the
//! page in the source store. A crash in between sends that page again; a
//! record the cluster refuses fails the flush, and its whole page stays
//! pending.

use crate::client::{Outgoing, base_config, idempotent_producer};
use crate::config::KafkaConfig;
use crate::partitioner::default_partition;
use crate::retry::Redactor;
use dlq_core::Failure;
use dlq_core::envelope::{
    DeadLetter, FIRST_FAILED_AT_HEADER, Header, REPLAY_OF_HEADER, REPLAYS_HEADER, format_timestamp,
};
use dlq_core::replay::ReplayTarget;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the producer's delivery reports said since the last flush.
#[derive(Default)]
struct Reports {
    /// Records not acknowledged yet.
    waiting: usize,
    /// The first failure: topic and error.
    failed: Option<(String, String)>,
    failures: u64,
}

#[derive(Default)]
struct Acks(Mutex<Reports>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.waiting = r.waiting.saturating_sub(1);
        if let Err((e, m)) = result {
            r.failures += 1;
            r.failed
                .get_or_insert_with(|| (m.topic().to_owned(), e.to_string()));
        }
    }
}

/// Replays to topics of a Kafka cluster (see the [module doc](self)).
pub struct KafkaTarget {
    producer: BaseProducer<Acks>,
    redactor: Redactor,
    /// Every record goes here; `None`: to its source topic.
    topic: Option<String>,
    /// Partition counts of the topics written to (`None`: no such topic).
    partitions: HashMap<String, Option<i32>>,
    timeout: Duration,
    /// Records sent per topic.
    sent: BTreeMap<String, u64>,
    next_unkeyed: i32,
}

impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the producer: its configuration holds credentials.
        f.debug_struct("KafkaTarget")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaTarget {
    /// A target on the cluster `config` names: every record to `topic`, or
    /// (`None`) each to its source topic.
    ///
    /// # Errors
    ///
    /// The producer cannot be created (a bad client option).
    pub fn new(config: &KafkaConfig, topic: Option<String>) -> io::Result<KafkaTarget> {
        let redactor = Redactor::new(config.secret_values());
        let timeout = Duration::from_millis(config.timeout_ms);
        let producer = idempotent_producer(&base_config(config), config.max_message_bytes, timeout)
            .create_with_context(Acks::default())
            .map_err(|e| io::Error::other(redactor.clean(e.to_string())))?;
        Ok(KafkaTarget {
            producer,
            redactor,
            topic,
            partitions: HashMap::new(),
            timeout,
            sent: BTreeMap::new(),
            next_unkeyed: 0,
        })
    }

    /// Records sent to each topic so far.
    pub fn sent(&self) -> &BTreeMap<String, u64> {
        &self.sent
    }

    fn partitions_of(&mut self, topic: &str) -> io::Result<Option<i32>> {
        if let Some(&n) = self.partitions.get(topic) {
            return Ok(n);
        }
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| io::Error::other(self.redactor.clean(e.to_string())))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32);
        self.partitions.insert(topic.to_owned(), n);
        Ok(n)
    }
}

impl ReplayTarget for KafkaTarget {
    fn name(&self) -> String {
        match &self.topic {
            Some(t) => format!("kafka:{t}"),
            None => "kafka:(each record's source topic)".to_owned(),
        }
    }

    fn deliver(&mut self, letter: &DeadLetter, payload: &[u8]) -> io::Result<Result<(), Failure>> {
        let Some(topic) = self.topic.clone().or_else(|| letter.source.topic.clone()) else {
            return Err(io::Error::other(format!(
                "record {} has no original topic: replay it with --to kafka://HOST:PORT/TOPIC",
                letter.id
            )));
        };
        let Some(n) = self.partitions_of(&topic)? else {
            return Err(io::Error::other(format!(
                "no such topic {topic} (create it, or name another with --to kafka://HOST:PORT/TOPIC)"
            )));
        };
        let partition = match (letter.source.partition, &letter.key) {
            (Some(p), _) if p >= 0 => p % n.max(1),
            (_, Some(key)) => default_partition(key, n),
            _ => {
                self.next_unkeyed = (self.next_unkeyed + 1) % n.max(1);
                self.next_unkeyed
            }
        };
        let mut headers: Vec<Header> = letter.headers.clone();
        for (name, value) in [
            (REPLAY_OF_HEADER, letter.id.clone()),
            (REPLAYS_HEADER, letter.replays.to_string()),
            (
                FIRST_FAILED_AT_HEADER,
                format_timestamp(&letter.first_failed_at),
            ),
        ] {
            headers.push(Header {
                name: name.to_owned(),
                value: Some(value.into_bytes()),
            });
        }
        let null = letter.null_payload && payload.is_empty();
        let out = Outgoing {
            topic: topic.clone(),
            partition,
            key: letter.key.clone(),
            value: (!null).then(|| payload.to_vec()),
            headers,
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
        };
        let mut record = out.record(());
        self.producer
            .context()
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting += 1;
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    let mut r = self
                        .producer
                        .context()
                        .0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    r.waiting = r.waiting.saturating_sub(1);
                    drop(r);
                    return Err(io::Error::other(format!(
                        "kafka:{topic}: {}",
                        self.redactor.clean(e.to_string())
                    )));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        *self.sent.entry(topic).or_default() += 1;
        Ok(Ok(()))
    }

    fn flush(&mut self) -> io::Result<Option<(String, String)>> {
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        loop {
            let waiting = {
                let r = self
                    .producer
                    .context()
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                r.waiting
            };
            if waiting == 0 || Instant::now() >= deadline {
                break;
            }
            self.producer.poll(Duration::from_millis(5));
        }
        let mut r = self
            .producer
            .context()
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if r.waiting > 0 {
            return Err(io::Error::other(format!(
                "{} records not acknowledged in time; their page stays pending",
                r.waiting
            )));
        }
        if let Some((topic, error)) = r.failed.take() {
            let n = std::mem::take(&mut r.failures);
            return Err(io::Error::other(format!(
                "kafka:{topic}: {n} records not delivered, their page stays pending; the first: {}",
                self.redactor.clean(error)
            )));
        }
        Ok(None)
    }
}
