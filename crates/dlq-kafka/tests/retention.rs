//! `topic_retention_ms` against a real broker: the retention the store gave
//! its DLQ topic, a topic kept forever, a topic's changed config, and a
//! topic that does not exist.
//!
//! The broker address comes from `DLQ_KAFKA_BOOTSTRAP` (start one with
//! `scripts/kafka.sh start`, which prints it). Without it the test prints a
//! skip message and passes, except when `CI` is set: then it fails loudly.

use dlq_core::store::{DlqStore as _, Entry, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_kafka::retention::topic_retention_ms;
use dlq_kafka::{KafkaConfig, KafkaStore};
use dlq_testkit::block_on;
use dlq_testkit::kafka::bootstrap;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

#[test]
fn reads_the_retention_of_dlq_topics() {
    let Some(bootstrap) = bootstrap() else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("dlqr-{}.", &tag[..12]);
    let mut config = KafkaConfig::new(bootstrap.clone());
    config.dlq_prefix = prefix.clone();
    config.ledger_topic = format!("{prefix}ledger");
    config.blob_topic = format!("{prefix}blobs");
    config.replication_factor = Some(1);
    config.timeout_ms = 10_000;
    config.retention_ms = Some(3_600_000);

    // A DLQ topic the store creates, with the configured retention.
    let dlq = format!("{prefix}rss.events");
    let mut store = KafkaStore::open(config.clone()).expect("open store");
    let letter = DeadLetter::new(
        "kafka:rss.events:0:1",
        br#"{"title":"x"}"#.to_vec(),
        &Failure::permanent("validate", "validation.missing_field", "no link"),
    );
    store
        .append(&[Entry {
            dlq: dlq.clone(),
            letter,
            status: Status::Pending,
        }])
        .expect("append");

    // A topic someone else created, kept forever.
    let forever = format!("{prefix}forever");
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let admin: AdminClient<DefaultClientContext> = client.create().expect("admin");
    let topic = NewTopic::new(&forever, 1, TopicReplication::Fixed(1)).set("retention.ms", "-1");
    for r in block_on(admin.create_topics([&topic], &AdminOptions::new())).expect("create") {
        r.expect("topic created");
    }

    let got = topic_retention_ms(&config, &[&dlq, &forever]).expect("retention");
    assert_eq!(got.get(&dlq), Some(&Some(3_600_000)));
    assert_eq!(got.get(&forever), Some(&None), "-1 is forever");
    assert_eq!(got.len(), 2);
    assert!(
        topic_retention_ms(&config, &[])
            .expect("nothing")
            .is_empty()
    );

    // A topic that does not exist is an error that names it.
    let missing = format!("{prefix}missing");
    let err = topic_retention_ms(&config, &[&dlq, &missing]).expect_err("no such topic");
    assert!(err.to_string().contains(&missing), "{err}");

    let ledger = config.ledger_topic.clone();
    let blobs = config.blob_topic.clone();
    let names = [
        dlq.as_str(),
        forever.as_str(),
        ledger.as_str(),
        blobs.as_str(),
    ];
    let _ = block_on(admin.delete_topics(&names, &AdminOptions::new()));
}
