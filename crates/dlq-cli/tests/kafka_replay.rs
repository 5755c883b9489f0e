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

/// A record as another system writes it into a DLQ topic, down to what
/// rdkafka's own API cannot write: a null value, a header name that is not
/// UTF-8, a chosen timestamp.
#[derive(Default)]
struct Foreign<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    timestamp_ms: Option<i64>,
}

fn produce_foreign(bootstrap: &str, topic: &str, records: &[Foreign<'_>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for f in records {
        let mut r: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).headers(dlq_kafka_ffi::owned_headers(f.headers.iter().copied()));
        if let Some(k) = f.key {
            r = r.key(k);
        }
        if let Some(v) = f.value {
            r = r.payload(v);
        }
        if let Some(t) = f.timestamp_ms {
            r = r.timestamp(t);
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// An original topic and its DLQ topic (`dlq.<original>`), both created.
fn topics(bootstrap: &str, partitions: i32) -> (String, String) {
    let original = kafka::topic("orig");
    let dlq_topic = format!("dlq.{original}");
    kafka::create_topics(bootstrap, &[&original], partitions);
    kafka::create_topics(bootstrap, &[&dlq_topic], 1);
    (original, dlq_topic)
}

fn run_failing(store: &str, args: &[&str]) -> (i32, String) {
    let out = dlq(store, args).output().expect("run dlq");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tombstone_is_shown_as_null_and_replays_as_a_tombstone_with_its_key() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 1);
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[
            Foreign {
                key: Some(b"k-deleted"),
                value: None,
                ..Foreign::default()
            },
            Foreign {
                key: Some(b"k-empty"),
                value: Some(b""),
                ..Foreign::default()
            },
        ],
    );
    let shown = json(&store, &["inspect", "--dlq", &dlq_topic]);
    let records = shown["records"].as_array().expect("records");
    assert_eq!(records[0]["record"]["original_record"], Value::Null);
    assert_eq!(records[0]["record"]["dlq"]["payload_encoding"], "null");
    assert_eq!(records[0]["record"]["dlq"]["key"], "k-deleted");
    assert_eq!(records[1]["record"]["original_record"], "");
    assert_eq!(records[1]["record"]["dlq"]["payload_encoding"], "text");
    let exported = ok(&store, &["export", "--dlq", &dlq_topic]).stdout;
    let first: Value =
        serde_json::from_slice(exported.split(|&b| b == b'\n').next().expect("line"))
            .expect("json");
    assert_eq!(first["dlq"]["payload_encoding"], "null");

    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], 2);
    let back = kafka::read_messages(&bootstrap, &original, true);
    use rdkafka::Message as _;
    let deleted = back
        .iter()
        .find(|m| m.key() == Some(&b"k-deleted"[..]))
        .expect("tombstone replayed");
    assert_eq!(deleted.payload(), None, "a delete stays a delete");
    let empty = back
        .iter()
        .find(|m| m.key() == Some(&b"k-empty"[..]))
        .expect("empty replayed");
    assert_eq!(empty.payload(), Some(&b""[..]));
}

#[test]
fn a_raw_value_shaped_like_an_envelope_replays_byte_for_byte() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 1);
    let value = br#"{"dlq": {"v": 1}}"#;
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[Foreign {
            value: Some(value),
            ..Foreign::default()
        }],
    );
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], 1);
    let back = kafka::read_all(&bootstrap, &original, true);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].value, value);
}

#[test]
fn keyed_raw_dead_letters_replay_to_the_partition_of_their_live_records() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 6);
    let keys: Vec<String> = (0..60).map(|i| format!("0xmarket-{i}")).collect();
    // The live records, placed by librdkafka's Java-compatible partitioner.
    let live: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for k in &keys {
        live.send(BaseRecord::to(&original).key(k.as_str()).payload("live"))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    live.flush(Duration::from_secs(30)).expect("flush");
    let dead: Vec<Foreign<'_>> = keys
        .iter()
        .map(|k| Foreign {
            key: Some(k.as_bytes()),
            value: Some(b"dead"),
            ..Foreign::default()
        })
        .collect();
    produce_foreign(&bootstrap, &dlq_topic, &dead);
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], keys.len() as u64);
    let mut live_at: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut replayed_at: HashMap<Vec<u8>, i32> = HashMap::new();
    for r in kafka::read_all(&bootstrap, &original, true) {
        let key = r.key.clone().expect("keyed");
        if r.value == b"live" {
            live_at.insert(key, r.partition);
        } else {
            replayed_at.insert(key, r.partition);
        }
    }
    assert_eq!(live_at.len(), keys.len());
    let spread: std::collections::HashSet<i32> = live_at.values().copied().collect();
    assert!(spread.len() > 1, "the keys spread over partitions");
    assert_eq!(replayed_at, live_at, "each key where its live records are");
}

#[test]
fn lineage_carries_the_kafka_timestamp_of_a_raw_record_and_the_seeds_timestamp_as_written() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 1);
    let seed = br#"{"original_record": {"a": 1}, "error": "boom", "timestamp": "2026-11-29T07:00:00.123456Z"}"#;
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[
            Foreign {
                key: Some(b"raw"),
                value: Some(b"not an envelope"),
                // 2026-11-29T07:00:00.123Z
                timestamp_ms: Some(1_795_935_600_123),
                ..Foreign::default()
            },
            Foreign {
                key: Some(b"seed"),
                value: Some(seed),
                ..Foreign::default()
            },
        ],
    );
    let shown = json(&store, &["inspect", "--dlq", &dlq_topic]);
    let records = shown["records"].as_array().expect("records");
    assert_eq!(
        records[0]["record"]["timestamp"],
        "2026-11-29T07:00:00.123Z"
    );
    assert_eq!(
        records[1]["record"]["timestamp"],
        "2026-11-29T07:00:00.123456Z"
    );
    assert_eq!(
        records[1]["record"]["dlq"]["first_failed_at"],
        "2026-11-29T07:00:00.123456Z"
    );
    json(&store, &["replay", "--dlq", &dlq_topic]);
    let first_failed_at = |key: &[u8]| -> String {
        let r = kafka::read_all(&bootstrap, &original, true)
            .into_iter()
            .find(|r| r.key.as_deref() == Some(key))
            .expect("replayed");
        let h = r
            .headers
            .iter()
            .find(|h| h.name == "dlq.first_failed_at")
            .expect("lineage header");
        String::from_utf8(h.value.clone().expect("value")).expect("utf8")
    };
    assert_eq!(first_failed_at(b"raw"), "2026-11-29T07:00:00.123Z");
    assert_eq!(first_failed_at(b"seed"), "2026-11-29T07:00:00.123456Z");
}

#[test]
fn a_header_name_that_is_not_utf8_is_inspected_and_replayed_byte_for_byte() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 1);
    let name: &[u8] = b"\xff\xfe-trace";
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[Foreign {
            key: Some(b"k"),
            value: Some(b"{}"),
            headers: vec![(name, Some(b"t-1")), (b"plain", Some(b"\xffbin"))],
            ..Foreign::default()
        }],
    );
    let stats = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(stats["dlqs"][0]["pending"], 1, "scanned without a panic");
    let shown = json(&store, &["inspect", "--dlq", &dlq_topic]);
    let headers = &shown["records"][0]["record"]["dlq"]["headers"];
    assert_eq!(
        headers,
        &serde_json::json!([[{"base64": "//4tdHJhY2U="}, "t-1"], ["plain", {"base64": "/2Jpbg=="}]])
    );
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], 1);
    let back = kafka::read_all(&bootstrap, &original, true);
    let names: Vec<Vec<u8>> = back[0]
        .headers
        .iter()
        .map(|h| h.name_bytes().into_owned())
        .collect();
    assert_eq!(names[0], name, "the name's bytes, unchanged");
    assert_eq!(back[0].headers[0].value.as_deref(), Some(&b"t-1"[..]));
    assert_eq!(names[1], b"plain");
    assert_eq!(back[0].headers[1].value.as_deref(), Some(&b"\xffbin"[..]));
}

#[test]
fn replay_names_the_topics_it_wrote_to() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (a, dlq_topic) = topics(&bootstrap, 1);
    let b = kafka::topic("other");
    kafka::create_topics(&bootstrap, &[&b], 1);
    let to_b = |offset: &'static [u8]| Foreign {
        value: Some(b"{}"),
        headers: vec![
            (&b"__connect.errors.topic"[..], Some(b.as_bytes())),
            (b"__connect.errors.partition", Some(b"0")),
            (b"__connect.errors.offset", Some(offset)),
        ],
        ..Foreign::default()
    };
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[
            Foreign {
                value: Some(b"raw, back to its DLQ's topic"),
                ..Foreign::default()
            },
            to_b(b"1"),
            to_b(b"2"),
        ],
    );
    let dry = json(&store, &["replay", "--dlq", &dlq_topic, "--dry-run"]);
    assert_eq!(dry["targets"][a.as_str()], 1, "{dry}");
    assert_eq!(dry["targets"][b.as_str()], 2, "{dry}");
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    let mut names = [a.clone(), b.clone()];
    names.sort();
    assert_eq!(replayed["target"], format!("kafka:{}", names.join(",")));
    assert_eq!(replayed["targets"][a.as_str()], 1);
    assert_eq!(replayed["targets"][b.as_str()], 2);
}

#[test]
fn a_replay_to_a_topic_that_does_not_exist_fails_at_once_naming_it() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (_, dlq_topic) = topics(&bootstrap, 1);
    let missing = kafka::topic("missing");
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[
            Foreign {
                value: Some(b"{}"),
                ..Foreign::default()
            },
            Foreign {
                value: Some(b"{}"),
                headers: vec![(&b"kafka_dlt-original-topic"[..], Some(missing.as_bytes()))],
                ..Foreign::default()
            },
        ],
    );
    let to = format!("kafka:{missing}");
    let (code, stderr) = run_failing(&store, &["replay", "--dlq", &dlq_topic, "--to", &to]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("no such topic"),
        "{stderr}"
    );
    // To the original topics: the second record's is missing; the replay
    // stops there with the same error, and the record stays pending.
    let (code, stderr) = run_failing(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("no such topic"),
        "{stderr}"
    );
    let stats = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(stats["dlqs"][0]["pending"], 1, "{stats}");
}

#[test]
fn a_store_with_another_prefix_replays_raw_records_to_the_topic_its_dlq_is_named_after() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("errors-{}.", &tag[..8]);
    let store = format!(
        "kafka://{bootstrap}?dlq_prefix={prefix}&ledger={prefix}ledger&blobs={prefix}blobs"
    );
    let original = kafka::topic("orig");
    let dlq_topic = format!("{prefix}{original}");
    kafka::create_topics(&bootstrap, &[&original, &dlq_topic], 1);
    produce_foreign(
        &bootstrap,
        &dlq_topic,
        &[Foreign {
            value: Some(b"raw"),
            ..Foreign::default()
        }],
    );
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(
        replayed["target"],
        format!("kafka:{original}"),
        "{replayed}"
    );
    let back = kafka::read_all(&bootstrap, &original, true);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].value, b"raw");
}

/// Values that are not complete envelopes, of every kind: random bytes,
/// JSON objects with some envelope members, and real envelopes with one
/// member taken out or of the wrong type. Deterministic (xorshift).
fn not_envelopes(n: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let failure = Failure::permanent("validate", "validation.wrong_type", "bad");
    let mut letter = DeadLetter::new("kafka:t:0:1", br#"{"a":1}"#.to_vec(), &failure);
    letter.key = Some(b"k".to_vec());
    let full: Value = serde_json::from_slice(
        &encode(&letter, &EncodeOptions::default())
            .expect("encode")
            .bytes,
    )
    .expect("json");
    let members = [
        "original_record",
        "error",
        "timestamp",
        "dlq.v",
        "dlq.id",
        "dlq.source",
        "dlq.key",
        "dlq.headers",
        "dlq.stage",
        "dlq.error_class",
        "dlq.retryable",
        "dlq.attempts",
        "dlq.first_failed_at",
        "dlq.replays",
        "dlq.payload_encoding",
    ];
    (0..n)
        .map(|i| match i % 3 {
            0 => {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            }
            1 => {
                let mut v = full.clone();
                let member = members[(next() % members.len() as u64) as usize];
                let (object, name) = match member.strip_prefix("dlq.") {
                    Some(name) => (&mut v["dlq"], name),
                    None => (&mut v, member),
                };
                let object = object.as_object_mut().expect("object");
                // Any JSON is a valid JSON payload: that member only goes.
                if next() % 2 == 0 || name == "original_record" {
                    object.remove(name);
                } else {
                    object.insert(name.into(), serde_json::json!([i]));
                }
                serde_json::to_vec(&v).expect("json")
            }
            _ => format!(r#"{{"dlq": {{"v": 1, "n": {i}}}, "error": "e{i}"}}"#).into_bytes(),
        })
        .collect()
}

#[test]
fn values_that_are_not_complete_envelopes_replay_byte_for_byte() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 1);
    let values = not_envelopes(150);
    let records: Vec<Foreign<'_>> = values
        .iter()
        .map(|v| Foreign {
            value: Some(v),
            ..Foreign::default()
        })
        .collect();
    produce_foreign(&bootstrap, &dlq_topic, &records);
    let replayed = json(&store, &["replay", "--dlq", &dlq_topic]);
    assert_eq!(replayed["replayed"], values.len() as u64, "{replayed}");
    let back: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &original, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(back, values, "every value, byte for byte, in order");
}

/// Kills `dlq serve` when the test ends, whatever happens.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the status line and the body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         X-DLQ-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `dlq serve` replays a Kafka DLQ through the same engine as `dlq replay`,
/// page by page on the shared store: the API answers while the replay runs
/// (before, the Kafka replay held the store to its end), and every record
/// reaches its original topic once.
#[test]
fn serve_answers_during_a_kafka_replay_and_delivers_every_record_once() {
    use std::io::BufRead as _;
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let store = format!("kafka://{bootstrap}");
    let (original, dlq_topic) = topics(&bootstrap, 2);
    let values: Vec<String> = (0..3000).map(|i| format!("{{\"i\":{i}}}")).collect();
    let records: Vec<Foreign<'_>> = values
        .iter()
        .map(|v| Foreign {
            value: Some(v.as_bytes()),
            ..Foreign::default()
        })
        .collect();
    produce_foreign(&bootstrap, &dlq_topic, &records);
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("dlq.toml");
    std::fs::write(
        &config,
        "[serve]\naudit_log = \"audit.jsonl\"\n[serve.replay_targets]\nback = \"kafka:\"\n",
    )
    .expect("config");
    let operator = "operator-token-kafka-serve-0001";
    let mut child = dlq(&store, &["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(tmp.path())
        .env("DLQ_OPERATOR_TOKEN", operator)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dlq serve");
    let stdout = child.stdout.take().expect("stdout");
    let _serving = Serving(child);
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the address");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    // 3,000 records at 300/s: a replay of about 10 s.
    let body = format!(r#"{{"dlq":"{dlq_topic}","target":"back","rate":300}}"#);
    let (status, reply) = http(&addr, "POST", "/api/replays", operator, &body);
    assert!(
        status.contains(" 202 ") || status.contains(" 200 "),
        "{status} {reply}"
    );
    let job: Value = serde_json::from_str(&reply).expect("json");
    let job = job["job"]["id"].as_str().expect("job id").to_owned();
    let job_status = || -> Value {
        let (_, body) = http(&addr, "GET", &format!("/api/replays/{job}"), operator, "");
        serde_json::from_str::<Value>(&body).expect("json")["job"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_status()["replayed"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the replay never settled a page");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, dlq_info) = http(
        &addr,
        "GET",
        &format!("/api/dlqs/{dlq_topic}"),
        operator,
        "",
    );
    assert!(status.contains(" 200 "), "{status} {dlq_info}");
    let during = job_status();
    assert_eq!(
        during["status"], "running",
        "the API answered only once the replay had ended: {during}"
    );
    while !job_status()["done"].as_bool().unwrap_or(false) {
        assert!(Instant::now() < deadline, "the replay did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = job_status();
    assert_eq!(after["status"], "done", "{after}");
    assert_eq!(after["replayed"], 3000, "{after}");
    let mut got: Vec<Vec<u8>> = kafka::read_messages(&bootstrap, &original, true)
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap_or_default().to_vec())
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(got, want, "every record once");
    let stats = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(stats["dlqs"][0]["pending"], 0, "{stats}");
}

/// `dlq ledger migrate` rewrites a settlement written in the former
/// per-record format as a segment: the record stays settled, and a second
/// run has nothing to do. Other stores are refused with the reason.
#[test]
fn ledger_migrate_rewrites_per_record_entries_and_keeps_their_statuses() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let prefix = format!("{}.", kafka::topic("dlqmig"));
    let dlq_topic = format!("{prefix}orders");
    let ledger = format!("{prefix}ledger");
    let store = format!(
        "kafka://{bootstrap}?dlq_prefix={prefix}&ledger={ledger}&blobs={prefix}blobs&replication_factor=1"
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("seed.ndjson");
    std::fs::write(
        &file,
        "{\"original_record\":{\"n\":1},\"error\":\"bad\",\"timestamp\":\"2026-11-30T10:00:00Z\"}\n\
         {\"original_record\":{\"n\":2},\"error\":\"bad\",\"timestamp\":\"2026-11-30T10:00:00Z\"}\n",
    )
    .expect("write");
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
    assert_eq!(imported["imported"], 2);
    let listed = json(&store, &["inspect", "--dlq", &dlq_topic]);
    let first = &listed["records"][0];
    let id = first["record"]["dlq"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The first record's offset: it was imported first into partition 0.
    let offset = rdkafka::Message::offset(&kafka::read_messages(&bootstrap, &dlq_topic, true)[0]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let key = format!("{dlq_topic}/{id}");
    let value = format!(
        r#"{{"dlq":"{dlq_topic}","id":"{id}","outcome":"discarded","dlq_partition":0,"dlq_offset":{offset},"at":"2026-11-30T11:00:00Z"}}"#
    );
    producer
        .send(
            BaseRecord::to(&ledger)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");
    let before = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(
        before["dlqs"][0]["discarded"], 1,
        "the former format is read: {before}"
    );

    let migrated = json(&store, &["ledger", "migrate"]);
    assert_eq!(migrated["converted"], 1, "{migrated}");
    let again = json(&store, &["ledger", "migrate"]);
    assert_eq!(again["converted"], 0, "{again}");
    let after = json(&store, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(after["dlqs"][0]["discarded"], 1, "{after}");
    assert_eq!(after["dlqs"][0]["pending"], 1, "{after}");

    let (code, stderr) = run_failing("sqlite://ledger.db", &["ledger", "migrate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs a Kafka cluster"), "{stderr}");
}

/// `dlq serve` on an embedded store replays to a `kafka://HOST:PORT/TOPIC`
/// target of `[serve.replay_targets]` (as `dlq replay --to kafka://…`):
/// every selected record reaches the topic once, and is settled.
#[test]
fn serve_replays_from_an_embedded_store_to_a_kafka_url_target_and_delivers_every_record() {
    use std::io::BufRead as _;
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", tmp.path().join("dlq.db").display());
    let target = dlq_testkit::kafka::topic("serve-url-target");
    dlq_testkit::kafka::create_topics(&bootstrap, &[&target], 2);
    const N: usize = 120;
    let failure = Failure::permanent("validate", "validation.wrong_type", "price");
    let mut file = Vec::new();
    let mut want: Vec<Vec<u8>> = Vec::new();
    for i in 0..N {
        let payload = format!(r#"{{"i":{i}}}"#).into_bytes();
        let mut l = DeadLetter::new(format!("r{i}"), payload.clone(), &failure);
        l.source.system = "kafka".into();
        l.source.topic = Some("orders".into());
        l.source.partition = Some((i % 2) as i32);
        file.extend(encode(&l, &EncodeOptions::default()).expect("encode").bytes);
        file.push(b'\n');
        want.push(payload);
    }
    std::fs::write(tmp.path().join("dead.ndjson"), &file).expect("write");
    ok(
        &store,
        &[
            "import",
            "--input",
            &tmp.path().join("dead.ndjson").display().to_string(),
            "--dlq",
            "dlq.orders",
        ],
    );
    let config = tmp.path().join("dlq.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\naudit_log = \"audit.jsonl\"\n[serve.replay_targets]\n\
             cluster = \"kafka://{bootstrap}/{target}\"\n"
        ),
    )
    .expect("config");
    let operator = "operator-token-kafka-url-0001";
    let mut child = dlq(&store, &["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(tmp.path())
        .env("DLQ_OPERATOR_TOKEN", operator)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dlq serve");
    let stdout = child.stdout.take().expect("stdout");
    let _serving = Serving(child);
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the address");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let (status, reply) = http(
        &addr,
        "POST",
        "/api/replays",
        operator,
        r#"{"dlq":"dlq.orders","target":"cluster"}"#,
    );
    assert!(
        status.contains(" 202 ") || status.contains(" 200 "),
        "{status} {reply}"
    );
    let job: Value = serde_json::from_str(&reply).expect("json");
    let job = job["job"]["id"].as_str().expect("job id").to_owned();
    let job_status = || -> Value {
        let (_, body) = http(&addr, "GET", &format!("/api/replays/{job}"), operator, "");
        serde_json::from_str::<Value>(&body).expect("json")["job"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job_status()["done"].as_bool().unwrap_or(false) {
        assert!(Instant::now() < deadline, "the replay did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = job_status();
    assert_eq!(after["status"], "done", "{after}");
    assert_eq!(after["replayed"], N as u64, "{after}");
    let mut got: Vec<Vec<u8>> = kafka::read_messages(&bootstrap, &target, false)
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap_or_default().to_vec())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every record once, in the named topic");
    let stats = json(&store, &["stats", "--dlq", "dlq.orders"]);
    assert_eq!(
        (
            stats["dlqs"][0]["pending"].as_u64(),
            stats["dlqs"][0]["replayed"].as_u64()
        ),
        (Some(0), Some(N as u64)),
        "{stats}"
    );
}
