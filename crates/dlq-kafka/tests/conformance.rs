//! `KafkaStore` passes the `DlqStore` contract checks of
//! `dlq_core::conformance` against the real broker (`DLQ_KAFKA_BOOTSTRAP`).
//! Every check gets its own DLQ prefix, ledger and blob topics; each reopen
//! opens a new store that rebuilds its view from the topics.

use dlq_core::conformance::Harness;
use dlq_core::store::Output;
use dlq_kafka::{KafkaConfig, KafkaStore};
use rdkafka::Message as _;

/// One check's private corner of the broker.
struct Kafka {
    config: KafkaConfig,
}

impl Kafka {
    fn new() -> Option<Kafka> {
        let bootstrap = dlq_testkit::kafka::bootstrap()?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("dlqc-{}.", &tag[..12]);
        let mut config = KafkaConfig::new(bootstrap);
        config.dlq_prefix = prefix.clone();
        config.ledger_topic = format!("{prefix}ledger");
        config.blob_topic = format!("{prefix}blobs");
        config.replication_factor = Some(1);
        config.timeout_ms = 10_000;
        Some(Kafka { config })
    }
}

impl Harness for Kafka {
    type Store = KafkaStore;

    fn dlq(&mut self, name: &str) -> String {
        format!("{}{name}", self.config.dlq_prefix)
    }

    fn open(&mut self) -> KafkaStore {
        KafkaStore::open(self.config.clone()).expect("open the Kafka store")
    }

    fn reopen(&mut self, store: KafkaStore) -> KafkaStore {
        drop(store);
        self.open()
    }

    fn destination(&mut self) -> Option<String> {
        let topic = dlq_testkit::kafka::topic("dlqc-out");
        dlq_testkit::kafka::create_topics(&self.config.bootstrap_servers, &[&topic], 1);
        Some(topic)
    }

    fn read_destination(&mut self, _store: &KafkaStore, destination: &str) -> Vec<Output> {
        // read_committed: outputs count only once their transaction is.
        dlq_testkit::kafka::read_messages(&self.config.bootstrap_servers, destination, true)
            .iter()
            .map(|m| Output {
                destination: destination.to_owned(),
                partition: Some(m.partition()),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: dlq_testkit::kafka::headers_of(m),
            })
            .collect()
    }

    fn stats_by_dlq_partition(&self) -> bool {
        true
    }
}

dlq_core::store_conformance_tests!(Kafka::new);

/// The same contract without transactions: outputs are acknowledged before
/// the settlements are written (at least once), and everything else holds.
mod at_least_once {
    use super::*;

    fn without_transactions() -> Option<Kafka> {
        let mut k = Kafka::new()?;
        k.config.transactions = false;
        Some(k)
    }

    dlq_core::store_conformance_tests!(without_transactions);
}
