//! The Kafka processor's stop flag against a real broker: a stop request
//! (what a signal handler sets) finishes the work in flight, commits
//! exactly what was delivered, and returns cleanly with its lag; the next
//! run takes over from there, losing nothing.
//!
//! The broker address comes from `DLQ_KAFKA_BOOTSTRAP` (see
//! `tests/producer.rs`); every test uses its own random topic names.

use dlq_core::Failure;
use dlq_kafka::processor::{ProcessorConfig, Stop, run_at_least_once, run_exactly_once};
use dlq_kafka::{KafkaConfig, KafkaStore};
use dlq_testkit::kafka;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 2;
const RECORDS: usize = 20_000;

/// The group's committed offsets, summed over the partitions.
fn committed_total(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

fn stop_mid_run(exactly_once: bool) {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let source = kafka::topic("stop-src");
    let output = kafka::topic("stop-out");
    let group = kafka::topic("stop-group");
    kafka::create_topics(&bootstrap, &[&source, &output], PARTITIONS);
    let values: Vec<Vec<u8>> = (0..RECORDS).map(|i| format!("{i}").into_bytes()).collect();
    kafka::produce(&bootstrap, &source, PARTITIONS, &values);

    let mut cfg = ProcessorConfig::new(&source, &group, &output);
    cfg.group_instance_id = Some(format!("{group}-0"));
    let mut config = KafkaConfig::new(bootstrap.clone());
    config.transactional_id = Some(format!("{group}-tx"));
    let mut store = KafkaStore::open(config).expect("store");
    // Slow enough that the stop lands mid-run.
    let mut handler = |payload: &[u8], _attempt: u32| -> Result<Vec<u8>, Failure> {
        std::thread::sleep(Duration::from_micros(200));
        Ok(payload.to_vec())
    };
    let stop = AtomicBool::new(false);
    let stats = std::thread::scope(|s| {
        let run = s.spawn(|| {
            if exactly_once {
                run_exactly_once(&mut store, &cfg, &mut handler, &stop)
            } else {
                run_at_least_once(&mut store, &cfg, &mut handler, &stop)
            }
        });
        let t = Instant::now();
        while kafka::size(&bootstrap, &output) < (RECORDS / 10) as i64 {
            assert!(t.elapsed() < Duration::from_secs(120), "no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        run.join().expect("processor thread")
    })
    .expect("a stop request returns Ok");

    assert_eq!(stats.stop, Stop::Requested);
    assert!(
        stats.consumed < RECORDS as u64,
        "stopped mid-run: {stats:?}"
    );
    // Everything in flight was finished and committed: the committed
    // offsets are exactly what was delivered (no failures in this run).
    let committed = committed_total(&bootstrap, &group, &source);
    assert_eq!(committed as u64, stats.delivered, "{stats:?}");
    assert!(!stats.caught_up);
    let left: i64 = stats.lag.iter().map(|l| l.lag).sum();
    assert_eq!(left, RECORDS as i64 - committed, "{stats:?}");

    // The next run (same instance) takes over from the commit and drains.
    cfg.stop_when_idle = Some(Duration::from_secs(1));
    let stop = AtomicBool::new(false);
    let rest = if exactly_once {
        run_exactly_once(&mut store, &cfg, &mut handler, &stop)
    } else {
        run_at_least_once(&mut store, &cfg, &mut handler, &stop)
    }
    .expect("second run");
    assert_eq!(rest.stop, Stop::Drained, "{rest:?}");
    assert!(rest.caught_up && rest.lag.is_empty(), "{rest:?}");
    assert_eq!(stats.delivered + rest.delivered, RECORDS as u64);
    assert_eq!(committed_total(&bootstrap, &group, &source), RECORDS as i64);
}

#[test]
fn a_stop_request_finishes_in_flight_work_and_commits_exactly_what_was_delivered() {
    stop_mid_run(false);
}

#[test]
fn an_exactly_once_stop_request_commits_its_open_batch_and_returns_cleanly() {
    stop_mid_run(true);
}
