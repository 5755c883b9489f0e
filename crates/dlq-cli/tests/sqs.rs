//! The SQS store end to end, against the real SQS-compatible server
//! (ElasticMQ, `DLQ_SQS_ENDPOINT`): a source queue whose redrive policy
//! (`maxReceiveCount` 2) fills a DLQ while a consumer keeps failing, then
//! `dlq stats`, `analyze` and `replay --fix` on it, with the AWS SDK playing
//! the other clients (the producer, the failing consumer, the reader).

mod common;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use common::env::Env;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::time::{Duration, Instant};

/// The server, an SDK client on it, and a `dlq` whose store is an SQS store
/// with its index in a temporary directory.
struct Sqs {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    endpoint: String,
    /// This test's queue names start with it; the store discovers no others.
    base: String,
    env: Env,
}

/// One message as a reader gets it.
#[derive(Debug)]
struct Received {
    body: String,
    attributes: BTreeMap<String, String>,
    group: Option<String>,
    dedup: Option<String>,
}

impl Sqs {
    fn new() -> Option<Sqs> {
        let endpoint = dlq_testkit::sqs::endpoint()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let shared = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .load(),
        );
        Some(Sqs {
            client: aws_sdk_sqs::Client::new(&shared),
            rt,
            endpoint,
            base: dlq_testkit::sqs::queue("orders"),
            env: Env::new(),
        })
    }

    /// The same queues seen from another machine: an index of its own.
    fn another_machine(&self) -> Sqs {
        let mut other = Sqs::new().expect("the server");
        other.base = self.base.clone();
        other
    }

    /// The store URL: this server, this test's index.
    fn store(&self) -> String {
        format!(
            "sqs://us-east-1?endpoint={}&state={}&lease=2&prefix={}",
            self.endpoint,
            self.env.arg("index.db"),
            self.base
        )
    }

    fn dlq(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args(["--store", &self.store(), "--no-progress"])
            .args(args)
            .current_dir(self.env.dir.path())
            .env_remove("DLQ_STORE");
        c.output().expect("run dlq")
    }

    fn dlq_ok(&self, args: &[&str]) -> Output {
        let out = self.dlq(args);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn dlq_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.dlq_ok(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn create(&self, name: &str, attributes: &[(QueueAttributeName, String)]) -> String {
        let mut req = self.client.create_queue().queue_name(name);
        for (k, v) in attributes {
            req = req.attributes(k.clone(), v);
        }
        let out = self.rt.block_on(req.send()).expect("create queue");
        out.queue_url().expect("url").to_owned()
    }

    fn attribute(&self, url: &str, name: QueueAttributeName) -> String {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(name.clone())
                    .send(),
            )
            .expect("attributes");
        out.attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    }

    /// Visible plus in-flight messages.
    fn depth(&self, url: &str) -> u64 {
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .into_iter()
        .map(|a| self.attribute(url, a).parse::<u64>().unwrap_or(0))
        .sum()
    }

    /// A source queue whose redrive policy moves a message to its DLQ after
    /// two receives; returns (source name, source URL, DLQ name, DLQ URL).
    fn redriven_pair(&self, fifo: bool) -> (String, String, String, String) {
        let base = &self.base;
        let suffix = if fifo { ".fifo" } else { "" };
        let (source, dlq) = (format!("{base}{suffix}"), format!("{base}-dlq{suffix}"));
        let fifo_attrs: Vec<(QueueAttributeName, String)> = if fifo {
            vec![(QueueAttributeName::FifoQueue, "true".into())]
        } else {
            Vec::new()
        };
        let dlq_url = self.create(&dlq, &fifo_attrs);
        let arn = self.attribute(&dlq_url, QueueAttributeName::QueueArn);
        let mut attrs = fifo_attrs.clone();
        attrs.push((
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"2"}}"#),
        ));
        let source_url = self.create(&source, &attrs);
        (source, source_url, dlq, dlq_url)
    }

    /// Sends orders as another client would: a JSON body with an invalid
    /// price, a String and a Number message attribute.
    fn send_orders(&self, url: &str, n: usize, fifo: bool) {
        for i in 0..n {
            let mut req = self
                .client
                .send_message()
                .queue_url(url)
                .message_body(format!(r#"{{"order":{i},"price":"N/A"}}"#))
                .message_attributes(
                    "trace-id",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(format!("trace-{i}"))
                        .build()
                        .expect("attribute"),
                )
                .message_attributes(
                    "attempt",
                    MessageAttributeValue::builder()
                        .data_type("Number")
                        .string_value("1")
                        .build()
                        .expect("attribute"),
                );
            if fifo {
                req = req
                    .message_group_id(format!("customer-{}", i % 2))
                    .message_deduplication_id(format!("order-{i}"));
            }
            self.rt.block_on(req.send()).expect("send");
        }
    }

    /// A consumer that fails on every message: it receives and never
    /// deletes, until the redrive policy moved all `n` to the DLQ.
    fn fail_until_redriven(&self, source_url: &str, dlq_url: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.depth(dlq_url) < n {
            assert!(
                Instant::now() < deadline,
                "the redrive policy moved too little"
            );
            self.rt
                .block_on(
                    self.client
                        .receive_message()
                        .queue_url(source_url)
                        .max_number_of_messages(10)
                        .visibility_timeout(0)
                        .send(),
                )
                .expect("receive");
        }
        assert_eq!(self.depth(source_url), 0, "the source queue is drained");
    }

    /// Reads (and deletes) every message of a queue, as its consumer would.
    fn read_all(&self, url: &str) -> Vec<Received> {
        let mut all = Vec::new();
        let mut empty = 0;
        while empty < 3 {
            let out = self
                .rt
                .block_on(
                    self.client
                        .receive_message()
                        .queue_url(url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .message_attribute_names("All")
                        .message_system_attribute_names(MessageSystemAttributeName::All)
                        .send(),
                )
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            for m in messages {
                let system =
                    |a: MessageSystemAttributeName| m.attributes().and_then(|s| s.get(&a)).cloned();
                all.push(Received {
                    body: m.body().unwrap_or_default().to_owned(),
                    attributes: m
                        .message_attributes()
                        .map(|a| {
                            a.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.string_value().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    group: system(MessageSystemAttributeName::MessageGroupId),
                    dedup: system(MessageSystemAttributeName::MessageDeduplicationId),
                });
                self.rt
                    .block_on(
                        self.client
                            .delete_message()
                            .queue_url(url)
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .send(),
                    )
                    .expect("delete");
            }
        }
        all
    }
}

fn stats_of(stats: &Value, dlq: &str) -> Value {
    stats["dlqs"]
        .as_array()
        .expect("dlqs")
        .iter()
        .find(|s| s["dlq"] == dlq)
        .unwrap_or_else(|| panic!("no stats for {dlq}: {stats}"))
        .clone()
}

fn order_of(body: &str) -> (i64, Value) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (v["order"].as_i64().expect("order"), v["price"].clone())
}

#[test]
fn a_redriven_dlq_is_counted_grouped_replayed_once_fixed_to_its_source_and_left_empty() {
    let Some(sqs) = Sqs::new() else { return };
    let (source, source_url, dlq, dlq_url) = sqs.redriven_pair(false);
    sqs.send_orders(&source_url, 6, false);
    sqs.fail_until_redriven(&source_url, &dlq_url, 6);

    // stats finds the DLQ by the source queue's redrive policy.
    let stats = sqs.dlq_json(&["stats"]);
    let s = stats_of(&stats, &dlq);
    assert_eq!(
        (s["pending"].as_u64(), s["total"].as_u64()),
        (Some(6), Some(6)),
        "{s}"
    );
    assert!(s["oldest_pending_at"].is_string(), "the age is known: {s}");
    assert_eq!(
        (s["sqs"]["visible"].as_u64(), s["sqs"]["in_flight"].as_u64()),
        (Some(6), Some(0)),
        "SQS's own counts, leases released: {s}"
    );
    let dotted = sqs.dlq_json(&["stats", "--dlq", &dlq.replace('-', ".")]);
    assert_eq!(
        stats_of(&dotted, &dlq)["pending"].as_u64(),
        Some(6),
        "a dotted name is its dashed queue"
    );
    assert_eq!(sqs.depth(&dlq_url), 6, "reading deleted nothing");

    // dlq monitor samples the queue like any DLQ.
    let history = sqs.env.arg("monitor.db");
    let sample = sqs.dlq_json(&["monitor", "--once", "--history", &history]);
    let m = stats_of(&sample, &dlq);
    assert_eq!(m["pending"].as_u64(), Some(6), "{sample}");
    assert!(m["oldest_pending_age_seconds"].is_u64(), "{sample}");

    // inspect reads the messages as SQS moved them.
    let inspected = sqs.dlq_json(&["inspect", "--dlq", &dlq]);
    let text = inspected.to_string();
    assert!(text.contains("sqs.max_receives_exceeded"), "{text}");
    assert!(text.contains(&source), "the source queue is named: {text}");
    assert!(text.contains("trace-id"), "attributes are headers: {text}");
    for r in inspected["records"].as_array().expect("records") {
        assert_eq!(
            r["record"]["dlq"]["attempts"].as_u64(),
            Some(2),
            "the consumer's receives (maxReceiveCount): {r}"
        );
    }

    // analyze puts them in one group.
    let analysis = sqs.dlq_json(&["analyze", "--dlq", &dlq]);
    let groups = analysis["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{analysis}");
    assert_eq!(groups[0]["count"].as_u64(), Some(6));
    assert_eq!(groups[0]["error_class"], "sqs.max_receives_exceeded");

    // A dry run shows the fix and changes nothing.
    let dry = sqs.dlq_json(&["replay", "--dlq", &dlq, "--fix", ".price = 1", "--dry-run"]);
    let previews = dry["previews"].as_array().expect("previews");
    assert_eq!(previews.len(), 6, "{dry}");
    assert!(previews.iter().all(|p| p["changed"] == true), "{dry}");
    assert_eq!((sqs.depth(&dlq_url), sqs.depth(&source_url)), (6, 0));

    // replay --fix sends every message once, fixed, to the source queue.
    let report = sqs.dlq_json(&["replay", "--dlq", &dlq, "--fix", ".price = 1"]);
    assert_eq!(report["replayed"].as_u64(), Some(6), "{report}");
    assert_eq!(report["targets"][&source].as_u64(), Some(6), "{report}");
    let got = sqs.read_all(&source_url);
    let mut orders: Vec<i64> = got.iter().map(|m| order_of(&m.body).0).collect();
    orders.sort_unstable();
    assert_eq!(orders, [0, 1, 2, 3, 4, 5], "each once");
    for m in &got {
        let (order, price) = order_of(&m.body);
        assert_eq!(price, 1, "repaired: {}", m.body);
        assert_eq!(
            m.attributes.get("trace-id").map(String::as_str),
            Some(format!("trace-{order}").as_str()),
            "attributes kept"
        );
    }

    // The DLQ is empty, and a second replay selects nothing.
    assert_eq!(sqs.depth(&dlq_url), 0, "replayed messages left the DLQ");
    let again = sqs.dlq(&[
        "--format",
        "json",
        "replay",
        "--dlq",
        &dlq,
        "--fix",
        ".price = 1",
    ]);
    assert_eq!(again.status.code(), Some(1), "nothing matched");
    let again: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(again["selected"].as_u64(), Some(0), "{again}");
    assert!(
        sqs.read_all(&source_url).is_empty(),
        "no duplicate from a rerun"
    );
    let s = stats_of(&sqs.dlq_json(&["stats"]), &dlq);
    assert_eq!(
        (s["pending"].as_u64(), s["replayed"].as_u64()),
        (Some(0), Some(6)),
        "the index keeps the history: {s}"
    );
}

#[test]
fn a_fifo_replay_keeps_the_message_group_and_sets_a_deduplication_id() {
    let Some(sqs) = Sqs::new() else { return };
    let (_source, source_url, dlq, dlq_url) = sqs.redriven_pair(true);
    sqs.send_orders(&source_url, 4, true);
    sqs.fail_until_redriven(&source_url, &dlq_url, 4);
    let report = sqs.dlq_json(&["replay", "--dlq", &dlq, "--fix", ".price = 2"]);
    assert_eq!(report["replayed"].as_u64(), Some(4), "{report}");
    let got = sqs.read_all(&source_url);
    assert_eq!(got.len(), 4);
    for m in &got {
        let (order, price) = order_of(&m.body);
        assert_eq!(price, 2);
        assert_eq!(
            m.group.as_deref(),
            Some(format!("customer-{}", order % 2).as_str()),
            "the message group is kept"
        );
        let dedup = m.dedup.as_deref().unwrap_or_default();
        assert!(
            dedup.len() == 64 && dedup != format!("order-{order}"),
            "a deduplication id of the replay: {dedup:?}"
        );
    }
    assert_eq!(sqs.depth(&dlq_url), 0);
}

#[test]
fn a_replay_killed_mid_way_loses_nothing_and_a_rerun_finishes_it() {
    let Some(sqs) = Sqs::new() else { return };
    let (_source, source_url, dlq, dlq_url) = sqs.redriven_pair(false);
    sqs.send_orders(&source_url, 8, false);
    sqs.fail_until_redriven(&source_url, &dlq_url, 8);
    let store = sqs.store();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["--store", &store, "--no-progress", "replay", "--dlq", &dlq])
        .args(["--fix", ".price = 3", "--rate", "4", "--batch-size", "1"])
        .current_dir(sqs.env.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill it once some, not all, are sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqs.depth(&source_url) < 2 {
        assert!(Instant::now() < deadline, "the replay sent nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(sqs.depth(&source_url) < 8, "killed before the end");
    sqs.dlq_ok(&["replay", "--dlq", &dlq, "--fix", ".price = 3"]);
    let got = sqs.read_all(&source_url);
    let mut orders: Vec<i64> = got.iter().map(|m| order_of(&m.body).0).collect();
    orders.sort_unstable();
    orders.dedup();
    assert_eq!(orders, [0, 1, 2, 3, 4, 5, 6, 7], "every order arrived");
    assert!(
        got.len() <= 9,
        "at most the one in flight at the kill came twice: {}",
        got.len()
    );
    // Messages the killed run held come back after their lease (2 s); the
    // next pass deletes those already settled.
    std::thread::sleep(Duration::from_secs(3));
    let s = stats_of(&sqs.dlq_json(&["stats"]), &dlq);
    assert_eq!(s["pending"].as_u64(), Some(0), "{s}");
    assert_eq!(sqs.depth(&dlq_url), 0, "the DLQ is empty");
}

#[test]
fn a_credential_in_an_sqs_store_url_is_refused_without_being_shown() {
    let env = Env::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["--store", "sqs://us-east-1?secret_key=hunter2", "stats"])
        .current_dir(env.dir.path())
        .output()
        .expect("run dlq");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("standard AWS chain"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the secret is not shown: {stderr}"
    );
}

#[test]
fn records_no_redrive_moved_stop_a_replay_without_to_and_go_to_the_queue_it_names() {
    let Some(sqs) = Sqs::new() else { return };
    let (dlq, target) = (format!("{}-dlq", sqs.base), format!("{}-retry", sqs.base));
    let dlq_url = sqs.create(&dlq, &[]);
    let target_url = sqs.create(&target, &[]);
    // Another client wrote them straight into the DLQ: no source queue.
    sqs.send_orders(&dlq_url, 3, false);
    let out = sqs.dlq(&["replay", "--dlq", &dlq]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--to sqs:QUEUE"), "{stderr}");
    assert_eq!(sqs.depth(&dlq_url), 3, "nothing left the DLQ");
    let report = sqs.dlq_json(&["replay", "--dlq", &dlq, "--to", &format!("sqs:{target}")]);
    assert_eq!(report["replayed"].as_u64(), Some(3), "{report}");
    let mut orders: Vec<i64> = sqs
        .read_all(&target_url)
        .iter()
        .map(|m| order_of(&m.body).0)
        .collect();
    orders.sort_unstable();
    assert_eq!(orders, [0, 1, 2]);
    assert_eq!(sqs.depth(&dlq_url), 0);
}

#[test]
fn dead_letters_dlq_process_writes_to_sqs_are_read_by_another_machine_and_replayed_to_a_file() {
    let Some(sqs) = Sqs::new() else { return };
    let input = sqs.env.path("in.ndjson");
    let generated = sqs.dlq_ok(&["generate", "--pipeline", "rss", "--records", "300"]);
    std::fs::write(&input, &generated.stdout).expect("write input");
    let dlq = format!("{}.rss.events", sqs.base);
    let queue = format!("{}-rss-events", sqs.base);
    let processed = sqs.dlq_json(&[
        "process",
        "--pipeline",
        "rss",
        "--input",
        &sqs.env.arg("in.ndjson"),
        "--output",
        &sqs.env.arg("out.ndjson"),
        "--dlq",
        &dlq,
    ]);
    let here = stats_of(&sqs.dlq_json(&["stats"]), &queue);
    let dead = here["pending"].as_u64().expect("pending");
    assert!(dead > 0, "the mix has failures: {processed}");

    let other = sqs.another_machine();
    let there = stats_of(&other.dlq_json(&["stats", "--dlq", &dlq]), &queue);
    assert_eq!(there["pending"].as_u64(), Some(dead), "{there}");
    let mine = sqs.dlq_json(&["analyze", "--dlq", &dlq]);
    let theirs = other.dlq_json(&["analyze", "--dlq", &dlq]);
    let classes = |a: &Value| {
        let mut c: Vec<(String, u64)> = a["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                (
                    g["error_class"].as_str().unwrap_or("").to_owned(),
                    g["count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        classes(&theirs),
        classes(&mine),
        "the envelope's metadata travels in the message"
    );
    assert!(
        classes(&theirs)
            .iter()
            .all(|(c, _)| c.starts_with("validation.") || c.starts_with("decode."))
    );

    let out = other.env.arg("replayed.ndjson");
    let report = other.dlq_json(&["replay", "--dlq", &dlq, "--to", &format!("file:{out}")]);
    assert_eq!(report["replayed"].as_u64(), Some(dead), "{report}");
    let lines = std::fs::read_to_string(&out)
        .expect("replayed file")
        .lines()
        .count() as u64;
    assert_eq!(lines, dead);
    let url = format!("{}/000000000000/{queue}", sqs.endpoint);
    assert_eq!(sqs.depth(&url), 0, "replayed records left the queue");
}

/// A replay from an SQS DLQ to a Kafka topic (`--to kafka://HOST:PORT/TOPIC`,
/// the same target as from any store): every message arrives fixed, once,
/// with its attributes as headers, and leaves the DLQ only after the
/// cluster acknowledged it.
#[test]
fn an_sqs_dlq_replays_to_a_kafka_topic_fixed_and_once() {
    let Some(sqs) = Sqs::new() else { return };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let dlq = format!("{}-dlq", sqs.base);
    let dlq_url = sqs.create(&dlq, &[]);
    sqs.send_orders(&dlq_url, 3, false);
    let topic = dlq_testkit::kafka::topic("from-sqs");
    dlq_testkit::kafka::create_topics(&bootstrap, &[&topic], 1);
    let report = sqs.dlq_json(&[
        "replay",
        "--dlq",
        &dlq,
        "--fix",
        ".price = 0",
        "--to",
        &format!("kafka://{bootstrap}/{topic}"),
    ]);
    assert_eq!(report["replayed"].as_u64(), Some(3), "{report}");
    assert_eq!(report["targets"][topic.as_str()], 3, "{report}");
    let messages = dlq_testkit::kafka::read_messages(&bootstrap, &topic, true);
    let mut bodies: Vec<String> = messages
        .iter()
        .map(|m| {
            use rdkafka::Message as _;
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
        })
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            r#"{"order":0,"price":0}"#,
            r#"{"order":1,"price":0}"#,
            r#"{"order":2,"price":0}"#
        ]
    );
    let headers = dlq_testkit::kafka::headers_of(&messages[0]);
    assert!(
        headers.iter().any(|h| h.name == "dlq.replay_of"),
        "lineage: {headers:?}"
    );
    assert_eq!(sqs.depth(&dlq_url), 0, "the DLQ is empty");
}

impl Sqs {
    /// `dlq --store STORE ARGS --format json`, which must succeed.
    fn json_on(&self, store: &str, args: &[&str]) -> Value {
        let out = self.run_on(store, args);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// `dlq --store STORE ARGS --format json`.
    fn run_on(&self, store: &str, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--store", store, "--no-progress", "--format", "json"])
            .args(args)
            .current_dir(self.env.dir.path())
            .env_remove("DLQ_STORE")
            .env_remove("DLQ_DLQ_STORE")
            .output()
            .expect("run dlq")
    }

    fn queue_url(&self, queue: &str) -> String {
        format!("{}/000000000000/{queue}", self.endpoint)
    }
}

/// A message's payload as dlq wrote it: the body, decoded as its
/// `dlq.body` attribute says.
fn payload_of(m: &Received) -> Vec<u8> {
    use base64::Engine as _;
    match m.attributes.get("dlq.body").map(String::as_str) {
        Some("text") => m.body.clone().into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(&m.body)
            .expect("base64 body"),
        Some("empty" | "null") => Vec::new(),
        other => panic!("a message dlq did not write: dlq.body {other:?}"),
    }
}

/// `dlq process --source kafka:TOPIC --dlq sqs:QUEUE`: the cluster is
/// `--store`, the queue is on `--dlq-store`. Every record that fails goes
/// to the queue with its bytes and its metadata in attributes; the offsets
/// are committed after SQS took the dead letters, so a rerun consumes and
/// dead-letters nothing.
#[test]
fn a_kafka_processor_dead_letters_into_an_sqs_queue_bytes_intact_and_a_rerun_adds_none() {
    let Some(sqs) = Sqs::new() else { return };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let source = dlq_testkit::kafka::topic("to-sqs-src");
    let output = dlq_testkit::kafka::topic("to-sqs-out");
    dlq_testkit::kafka::create_topics(&bootstrap, &[&source, &output], 2);
    let generated = sqs.dlq_ok(&["generate", "--pipeline", "rss", "--records", "300"]);
    let input: Vec<Vec<u8>> = generated
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    dlq_testkit::kafka::produce(&bootstrap, &source, 2, &input);
    let queue = format!("{}-dead", sqs.base);
    let kafka = format!("kafka://{bootstrap}");
    let group = format!("{source}-group");
    let dlq = format!("sqs:{queue}");
    let store = sqs.store();
    let from = format!("kafka:{source}");
    let args = [
        "process",
        "--pipeline",
        "rss",
        "--source",
        &from,
        "--group",
        &group,
        "--output-topic",
        &output,
        "--dlq",
        &dlq,
        "--dlq-store",
        &store,
        "--stop-when-idle",
        "2",
    ];
    let first = sqs.json_on(&kafka, &args);
    let dead = first["dead_lettered"].as_u64().expect("dead_lettered");
    assert!(dead > 0, "the mix has failures: {first}");
    assert_eq!(first["consumed"].as_u64(), Some(input.len() as u64));
    let delivered = dlq_testkit::kafka::read_all(&bootstrap, &output, false).len() as u64;
    assert_eq!(delivered + dead, input.len() as u64, "{first}");

    let messages = sqs.read_all(&sqs.queue_url(&queue));
    assert_eq!(messages.len() as u64, dead, "each dead letter once");
    let mut left: HashMap<&[u8], usize> = HashMap::new();
    for line in &input {
        *left.entry(line.as_slice()).or_default() += 1;
    }
    for m in &messages {
        let payload = payload_of(m);
        let n = left
            .get_mut(payload.as_slice())
            .unwrap_or_else(|| panic!("not an input record: {:?}", m.body));
        assert!(*n > 0, "a record dead-lettered twice: {:?}", m.body);
        *n -= 1;
        let class = m.attributes.get("dlq.error_class").expect("error class");
        assert!(
            class.starts_with("validation.") || class.starts_with("decode."),
            "{class}"
        );
        assert!(m.attributes.contains_key("dlq.id"), "{:?}", m.attributes);
    }

    let second = sqs.json_on(&kafka, &args);
    assert_eq!(second["consumed"].as_u64(), Some(0), "{second}");
    assert_eq!(second["dead_lettered"].as_u64(), Some(0), "{second}");
    assert_eq!(sqs.depth(&sqs.queue_url(&queue)), 0, "nothing sent twice");
}

/// `--exactly-once` cannot include an SQS send in its Kafka transaction:
/// refused before anything runs, saying why and what to do; `--dlq
/// sqs:QUEUE` without an SQS store names the option that gives one.
#[test]
fn an_sqs_dlq_is_refused_with_exactly_once_and_without_a_dlq_store() {
    let Some(sqs) = Sqs::new() else { return };
    let kafka = "kafka://127.0.0.1:1";
    let store = sqs.store();
    let base = [
        "process",
        "--pipeline",
        "rss",
        "--source",
        "kafka:rss.events",
        "--group",
        "g",
        "--output-topic",
        "out",
        "--dlq",
        "sqs:dead",
    ];
    let mut exactly = base.to_vec();
    exactly.extend(["--dlq-store", &store, "--exactly-once"]);
    let out = sqs.run_on(kafka, &exactly);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--exactly-once") && err.contains("cannot join"),
        "{err}"
    );

    let out = sqs.run_on(kafka, &base);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dlq-store sqs://"), "{err}");
}

/// `dlq produce --dlq sqs:QUEUE`: records the cluster refuses (here: the
/// topic does not exist) end in the queue, byte for byte, with the error
/// class `produce.unknown_topic`.
#[test]
fn produce_dead_letters_what_kafka_refuses_into_an_sqs_queue() {
    let Some(sqs) = Sqs::new() else { return };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let missing = dlq_testkit::kafka::topic("never-created");
    let input = sqs.env.path("produce.ndjson");
    let lines = [
        r#"{"title":"Fed holds rates"}"#,
        "{\"title\":\"caf\u{e9} \u{2603}\"}",
    ];
    std::fs::write(&input, lines.join("\n")).expect("input");
    let queue = format!("{}-produce-dead", sqs.base);
    let dlq = format!("sqs:{queue}");
    let report = sqs.json_on(
        &format!("kafka://{bootstrap}"),
        &[
            "produce",
            "--topic",
            &missing,
            "--input",
            &sqs.env.arg("produce.ndjson"),
            "--spool",
            &format!("sqlite://{}", sqs.env.arg("spool.db")),
            "--dlq",
            &dlq,
            "--dlq-store",
            &sqs.store(),
            "--delivery-timeout-ms",
            "3000",
        ],
    );
    assert_eq!(report["dead_lettered"].as_u64(), Some(2), "{report}");
    assert_eq!(report["spooled"].as_u64(), Some(0), "{report}");
    assert_eq!(report["dlq"], queue.as_str());
    let messages = sqs.read_all(&sqs.queue_url(&queue));
    let mut payloads: Vec<Vec<u8>> = messages.iter().map(payload_of).collect();
    payloads.sort();
    let mut want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(payloads, want);
    for m in &messages {
        assert_eq!(
            m.attributes.get("dlq.error_class").map(String::as_str),
            Some("produce.unknown_topic"),
            "{:?}",
            m.attributes
        );
    }
}

/// `dlq monitor` on an SQS store shows each queue's own counts (from its
/// attributes) beside the generic ones: a message another consumer holds
/// is in flight, the others visible.
#[test]
fn monitor_shows_the_visible_and_in_flight_counts_of_an_sqs_dlq() {
    let Some(sqs) = Sqs::new() else { return };
    let (_, _, dlq, dlq_url) = sqs.redriven_pair(false);
    sqs.send_orders(&dlq_url, 3, false);
    // Someone holds one message for a minute.
    let held = sqs
        .rt
        .block_on(
            sqs.client
                .receive_message()
                .queue_url(&dlq_url)
                .max_number_of_messages(1)
                .visibility_timeout(60)
                .send(),
        )
        .expect("receive");
    assert_eq!(held.messages().len(), 1);
    let report = sqs.dlq_json(&["monitor", "--once", "--history", &sqs.env.arg("monitor.db")]);
    let gauges: BTreeMap<String, f64> = report["store_gauges"][dlq.as_str()]
        .as_array()
        .unwrap_or_else(|| panic!("no SQS gauges for {dlq}: {report}"))
        .iter()
        .map(|g| {
            (
                g["name"].as_str().expect("name").to_owned(),
                g["value"].as_f64().expect("value"),
            )
        })
        .collect();
    assert_eq!(gauges["dlq_sqs_visible_messages"], 2.0, "{report}");
    assert_eq!(gauges["dlq_sqs_in_flight_messages"], 1.0, "{report}");
    assert_eq!(gauges["dlq_sqs_delayed_messages"], 0.0, "{report}");
    let sample = report["dlqs"]
        .as_array()
        .expect("dlqs")
        .iter()
        .find(|s| s["dlq"] == dlq.as_str())
        .expect("a sample of the DLQ");
    assert_eq!(
        sample["pending"], 2,
        "the held message is not read: {sample}"
    );
    let table = sqs.dlq_ok(&["monitor", "--once", "--history", &sqs.env.arg("monitor.db")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!(
            "{dlq}: sqs_visible_messages 2, sqs_in_flight_messages 1"
        )),
        "{text}"
    );
}

/// Items 1 and 2 end to end: a Kafka processor dead-letters a 600 KiB
/// record into an SQS queue (its body claim-checked to S3), and a replay
/// of that queue to a Kafka topic delivers the record's bytes, resolved.
#[test]
fn a_600_kib_dead_letter_goes_through_an_sqs_claim_check_and_replays_to_kafka_byte_exact() {
    let Some(sqs) = Sqs::new() else { return };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let Some(s3) = dlq_testkit::s3::endpoint() else {
        return;
    };
    let bucket = dlq_testkit::s3::bucket(&s3);
    let prefix = dlq_testkit::s3::prefix("claims");
    let store = format!(
        "{}&claims=s3://{bucket}/{prefix}&s3_endpoint={s3}",
        sqs.store()
    );
    let source = dlq_testkit::kafka::topic("big-src");
    let output = dlq_testkit::kafka::topic("big-out");
    let fixed = dlq_testkit::kafka::topic("big-back");
    dlq_testkit::kafka::create_topics(&bootstrap, &[&source, &output, &fixed], 1);
    // Not an RSS event (no title, link, …): dead-lettered as invalid.
    let big = format!(r#"{{"blob":"{}"}}"#, "\u{e9}t\u{e9}".repeat(120 * 1024)).into_bytes();
    assert!(big.len() > 600 * 1024);
    dlq_testkit::kafka::produce(&bootstrap, &source, 1, std::slice::from_ref(&big));
    let queue = format!("{}-big", sqs.base);
    let kafka = format!("kafka://{bootstrap}");
    let group = format!("{source}-group");
    let from = format!("kafka:{source}");
    let dlq = format!("sqs:{queue}");
    let processed = sqs.json_on(
        &kafka,
        &[
            "process",
            "--pipeline",
            "rss",
            "--source",
            &from,
            "--group",
            &group,
            "--output-topic",
            &output,
            "--dlq",
            &dlq,
            "--dlq-store",
            &store,
            "--stop-when-idle",
            "2",
        ],
    );
    assert_eq!(processed["dead_lettered"].as_u64(), Some(1), "{processed}");
    assert_eq!(
        dlq_testkit::s3::list_keys(&s3, bucket, &prefix).len(),
        1,
        "one claim-check object"
    );

    let to = format!("kafka://{bootstrap}/{fixed}");
    let report = sqs.json_on(&store, &["replay", "--dlq", &queue, "--to", &to]);
    assert_eq!(report["replayed"].as_u64(), Some(1), "{report}");
    let back = dlq_testkit::kafka::read_all(&bootstrap, &fixed, false);
    assert_eq!(back.len(), 1);
    assert!(
        back[0].value == big,
        "the replayed record is the payload, byte for byte"
    );
    assert_eq!(sqs.depth(&sqs.queue_url(&queue)), 0, "the DLQ is empty");
}

/// SQS unreachable while `dlq produce` dead-letters: the records wait in
/// the spool, and `dlq spool flush --store sqs://…` moves them to their
/// queue once it is back.
#[test]
fn dead_letters_spooled_while_sqs_is_unreachable_are_flushed_to_their_queue() {
    let Some(sqs) = Sqs::new() else { return };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let missing = dlq_testkit::kafka::topic("never-created");
    std::fs::write(sqs.env.path("in.ndjson"), "{\"n\":1}\n{\"n\":2}\n").expect("input");
    let queue = format!("{}-spooled", sqs.base);
    let dlq = format!("sqs:{queue}");
    let spool = format!("sqlite://{}", sqs.env.arg("spool.db"));
    let down = format!(
        "sqs://us-east-1?endpoint=http://127.0.0.1:1&state={}",
        sqs.env.arg("down.db")
    );
    let report = sqs.json_on(
        &format!("kafka://{bootstrap}"),
        &[
            "produce",
            "--topic",
            &missing,
            "--input",
            &sqs.env.arg("in.ndjson"),
            "--spool",
            &spool,
            "--dlq",
            &dlq,
            "--dlq-store",
            &down,
            "--delivery-timeout-ms",
            "3000",
        ],
    );
    assert_eq!(report["spooled"].as_u64(), Some(2), "{report}");
    assert_eq!(report["dead_lettered"].as_u64(), Some(0), "{report}");

    let flushed = sqs.json_on(&sqs.store(), &["spool", "flush", "--spool", &spool]);
    assert_eq!(flushed["flushed"].as_u64(), Some(2), "{flushed}");
    assert_eq!(flushed["pending"].as_u64(), Some(0), "{flushed}");
    let mut payloads: Vec<Vec<u8>> = sqs
        .read_all(&sqs.queue_url(&queue))
        .iter()
        .map(payload_of)
        .collect();
    payloads.sort();
    assert_eq!(payloads, [b"{\"n\":1}".to_vec(), b"{\"n\":2}".to_vec()]);
}

/// The file processor with `--dlq sqs:QUEUE --dlq-store sqs://…` beside
/// an embedded `--store`: dead letters go to the queue, the checkpoint to
/// the SQS store's index, so a rerun resumes after the end and sends
/// nothing again.
#[test]
fn the_file_processor_dead_letters_to_an_sqs_queue_and_a_rerun_resumes_past_them() {
    let Some(sqs) = Sqs::new() else { return };
    let generated = sqs.dlq_ok(&["generate", "--pipeline", "rss", "--records", "200"]);
    std::fs::write(sqs.env.path("in.ndjson"), &generated.stdout).expect("input");
    let queue = format!("{}-file-dead", sqs.base);
    let dlq = format!("sqs:{queue}");
    let embedded = format!("sqlite://{}", sqs.env.arg("embedded.db"));
    let (input, output, store) = (
        sqs.env.arg("in.ndjson"),
        sqs.env.arg("out.ndjson"),
        sqs.store(),
    );
    let args = [
        "process",
        "--pipeline",
        "rss",
        "--input",
        &input,
        "--output",
        &output,
        "--dlq",
        &dlq,
        "--dlq-store",
        &store,
    ];
    let first = sqs.json_on(&embedded, &args);
    let dead = first["dead_lettered"].as_u64().expect("dead_lettered");
    assert!(dead > 0, "{first}");
    let second = sqs.json_on(&embedded, &args);
    assert_eq!(second["records_in"].as_u64(), Some(0), "resumed: {second}");
    assert_eq!(second["dead_lettered"].as_u64(), Some(0), "{second}");
    assert_eq!(sqs.read_all(&sqs.queue_url(&queue)).len() as u64, dead);
    assert!(
        !sqs.env.path("embedded.db").exists(),
        "the embedded store was not used"
    );
}
