//! Replay on the real broker: exactly-once and at-least-once replays killed
//! midway and resumed, and DLQ records written by Kafka Connect and Spring Kafka inspected,
//! analyzed and replayed to their original topic.

mod common;

use common::kafka;
use dlq_core::envelope::{EncodeOptions, encode};
use dlq_core::{DeadLetter, Failure, Header};
use rdkafka::ClientConfig;
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dlq(store: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
    c.args(["--store", store, "--no-progress"])
        .args(args)
        .env_remove("DLQ_STORE");
    c
}

fn ok(store: &str, args: &[&str]) -> Output {
    let out = dlq(store, args).output().expect("run dlq");
    assert!(
        out.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(store: &str, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ok(store, &all).stdout).expect("json")
}

#[test]
fn exactly_once_replay_killed_midway_and_resumed_delivers_each_record_once() {
    replay_killed_midway_and_resumed(true);
}

/// At least once, a killed replay loses nothing either: what it delivered
/// without settling is delivered again by the next run (at most twice in
/// all), and every record ends up settled once.
#[test]
fn at_least_once_replay_killed_midway_and_resumed_delivers_every_record() {
    replay_killed_midway_and_resumed(false);
}

fn replay_killed_midway_and_resumed(exactly_once: bool) {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let mode: &[&str] = if exactly_once {
        &["--exactly-once"]
    } else {
        &[]
    };
    let store = format!("kafka://{bootstrap}");
    let source = kafka::topic("orig");
    let dlq_topic = format!("dlq.{source}");
    kafka::create_topics(&bootstrap, &[&source], 2);
    const N: usize = 6000;
    // Dead letters of `source`, imported as envelopes.
    let dir = tempfile::tempdir().expect("dir");
    let mut lines = Vec::new();
    let failure = Failure::transient("sink", "downstream.timeout", "timed out");
    for i in 0..N {
        let payload = format!(r#"{{"event_id":"e{i}","pad":"{}"}}"#, "x".repeat(60)).into_bytes();
        let mut l = DeadLetter::new(format!("kafka:{source}:{}:{i}", i % 2), payload, &failure);
        l.source.system = "kafka".into();
        l.source.topic = Some(source.clone());
        l.source.partition = Some((i % 2) as i32);
        l.source.offset = Some(i as i64);
        l.key = Some(format!("k{i}").into_bytes());
        let mut line = encode(&l, &EncodeOptions::default()).expect("encode").bytes;
        line.push(b'\n');
        lines.extend(line);
    }
    let file = dir.path().join("dead.ndjson");
    std::fs::write(&file, &lines).expect("write");
    let imported = json(
        &store,
        &[
            "import",
            "--input",
            file.to_str().expect("path"),
            "--dlq",
            &dlq_topic,
        ],
    );
    assert_eq!(imported["imported"], N as u64);

    // A slow replay, killed once part of it is committed.
    let mut child = dlq(
        &store,
        &[&["replay", "--dlq", &dlq_topic, "--rate", "1500"], mode].concat(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    // At least once, settlements trail the outputs (by about a page, more
    // while the store's producer starts): kill later, so that some are in.
    let kill_at = if exactly_once { N / 4 } else { N / 2 };
    let started = Instant::now();
    while kafka::size(&bootstrap, &source) < kill_at as i64 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "replay ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mid = json(&store, &["stats", "--dlq", &dlq_topic]);
    let pending_mid = mid["dlqs"][0]["pending"].as_u64().expect("pending");
    assert!(
        pending_mid > 0 && pending_mid < N as u64,
        "killed midway: {pending_mid}"
    );

    let resumed = json(&store, &[&["replay", "--dlq", &dlq_topic], mode].concat());
    assert_eq!(resumed["replayed"].as_u64(), Some(pending_mid), "{resumed}");

    let delivered = kafka::read_all(&bootstrap, &source, true);
    let mut copies: HashMap<Vec<u8>, u32> = HashMap::new();
    for r in &delivered {
        *copies.entry(r.value.clone()).or_default() += 1;
    }
    assert_eq!(copies.len(), N, "every record delivered");
    if exactly_once {
        assert!(
            copies.values().all(|&n| n == 1),
            "no record delivered twice"
        );
    } else {
        // Delivered by the killed run without its settlement, then again.
        assert!(
            copies.values().all(|&n| n <= 2),
            "no record delivered more than twice"
        );
    }
    let first = &delivered[0];
    let lineage: Vec<&str> = first.headers.iter().map(|h| h.name.as_str()).collect();
    assert!(lineage.contains(&"dlq.replay_of") && lineage.contains(&"dlq.replays"));
    let stats = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(stats["dlqs"][0]["pending"], 0);
    assert_eq!(stats["dlqs"][0]["replayed"], N as u64, "settled once each");
}

fn produce_with_headers(bootstrap: &str, topic: &str, value: &[u8], headers: &[(&str, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let mut hs = OwnedHeaders::new();
    for (k, v) in headers {
        hs = hs.insert(KHeader {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    producer
        .send(BaseRecord::to(topic).key("k1").payload(value).headers(hs))
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

#[test]
fn connect_and_spring_dead_letters_are_inspected_analyzed_and_replayed_to_their_topic() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let original = kafka::topic("orders");
    let dlq_topic = format!("dlq.{original}");
    kafka::create_topics(&bootstrap, &[&original, &dlq_topic], 1);
    let connect_value = br#"{"price": "N/A"}"#.to_vec();
    let spring_value = b"\xff\x00 not json".to_vec();
    produce_with_headers(
        &bootstrap,
        &dlq_topic,
        &connect_value,
        &[
            ("trace-id", b"t-1".to_vec()),
            ("__connect.errors.topic", original.clone().into_bytes()),
            ("__connect.errors.partition", b"0".to_vec()),
            ("__connect.errors.offset", b"41".to_vec()),
            ("__connect.errors.stage", b"VALUE_CONVERTER".to_vec()),
            (
                "__connect.errors.exception.class.name",
                b"org.apache.kafka.connect.errors.DataException".to_vec(),
            ),
            (
                "__connect.errors.exception.message",
                b"Converting byte[] to Kafka Connect data failed".to_vec(),
            ),
        ],
    );
    produce_with_headers(
        &bootstrap,
        &dlq_topic,
        &spring_value,
        &[
            ("kafka_dlt-original-topic", original.clone().into_bytes()),
            ("kafka_dlt-original-partition", 0i32.to_be_bytes().to_vec()),
            ("kafka_dlt-original-offset", 42i64.to_be_bytes().to_vec()),
            (
                "kafka_dlt-exception-fqcn",
                b"org.springframework.kafka.listener.ListenerExecutionFailedException".to_vec(),
            ),
            (
                "kafka_dlt-exception-cause-fqcn",
                b"com.fasterxml.jackson.core.JsonParseException".to_vec(),
            ),
            (
                "kafka_dlt-exception-message",
                b"Listener failed; Unexpected character".to_vec(),
            ),
        ],
    );

    let shown = json(&store, &["inspect", "--dlq", &dlq_topic]);
    let records = shown["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    for r in records {
        assert_eq!(r["record"]["dlq"]["source"]["topic"], original.as_str());
    }
    assert_eq!(records[0]["record"]["dlq"]["origin"], "connect");
    assert_eq!(records[1]["record"]["dlq"]["origin"], "spring");

    let groups = json(&store, &["analyze", "--dlq", &dlq_topic]);
    let classes: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["error_class"].as_str().expect("class"))
        .collect();
    assert!(
        classes.contains(&"org.apache.kafka.connect.errors.DataException"),
        "{classes:?}"
    );
    assert!(
        classes.contains(&"com.fasterxml.jackson.core.JsonParseException"),
        "{classes:?}"
    );

    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], 2);
    let back = kafka::read_all(&bootstrap, &original, true);
    let values: Vec<&[u8]> = back.iter().map(|r| r.value.as_slice()).collect();
    assert!(values.contains(&connect_value.as_slice()));
    assert!(values.contains(&spring_value.as_slice()));
    let connect_copy = back
        .iter()
        .find(|r| r.value == connect_value)
        .expect("connect record");
    assert!(
        connect_copy.headers.contains(&Header {
            name: "trace-id".into(),
            value: Some(b"t-1".to_vec())
        }),
        "the original headers travel with the record"
    );
    assert!(
        !connect_copy
            .headers
            .iter()
            .any(|h| h.name.starts_with("__connect"))
    );
    let stats = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(stats["dlqs"][0]["pending"], 0);
}
