//! What the conformance suite cannot see: what the store does to the SQS
//! queues themselves, against the real SQS-compatible server (ElasticMQ,
//! `DLQ_SQS_ENDPOINT`). Each test has its own queues and index files; a
//! second index reads the queues as another machine would.

use aws_sdk_sqs::types::QueueAttributeName;
use dlq_core::conformance::entry;
use dlq_core::store::{Selection, Status};
use dlq_core::{DlqStore, Header};
use dlq_sqs::client::{Client, Outgoing};
use dlq_sqs::{SqsConfig, SqsStore, codec};
use std::collections::HashMap;

struct Setup {
    dir: tempfile::TempDir,
    config: SqsConfig,
    dlq: String,
}

impl Setup {
    fn new() -> Option<Setup> {
        let endpoint = dlq_testkit::sqs::endpoint()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dlq_testkit::sqs::queue("dlqs");
        let mut config = SqsConfig::new("us-east-1");
        config.endpoint = Some(endpoint);
        config.state = dir.path().join("a.db");
        config.prefix = Some(prefix.clone());
        config.lease_secs = 5;
        Some(Setup {
            dlq: format!("{prefix}-dlq"),
            dir,
            config,
        })
    }

    /// A store on the same queues with an index of its own (`name`).
    fn store(&self, name: &str) -> SqsStore {
        let mut config = self.config.clone();
        config.state = self.dir.path().join(format!("{name}.db"));
        SqsStore::open(config).expect("open")
    }

    fn client(&self) -> Client {
        Client::new(&self.config).expect("client")
    }

    fn url(&self) -> String {
        self.client()
            .queue_url(&self.dlq)
            .expect("queue url")
            .expect("the queue exists")
    }

    /// Visible plus in-flight messages of the DLQ queue.
    fn depth(&self) -> u64 {
        let c = self.store("probe").queue_counts(&self.dlq).expect("counts");
        c.map_or(0, |c| c.visible + c.in_flight)
    }
}

fn pending_ids(store: &SqsStore, dlq: &str) -> Vec<String> {
    store
        .scan_all(&Selection::pending(Some(dlq)), 100)
        .map(|r| r.expect("scan").letter.id)
        .collect()
}

#[test]
fn records_dlq_writes_are_read_back_byte_exact_through_the_queue_by_another_index() {
    let Some(s) = Setup::new() else { return };
    let payloads: [&[u8]; 5] = [
        b"{\"price\":\"N/A\"}",
        b"\xff\xfe\x00binary",
        b"",
        b"",
        "snow \u{2603}".as_bytes(),
    ];
    let mut entries: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = entry(&s.dlq, &format!("r{i}"), p, i as i32);
            e.letter.key = Some(vec![0, 0xff, i as u8]);
            e.letter.headers = vec![
                Header {
                    name: "trace".into(),
                    value: Some(b"abc".to_vec()),
                },
                Header {
                    name: "null".into(),
                    value: None,
                },
            ];
            e
        })
        .collect();
    entries[3].letter.null_payload = true;
    entries[4].status = Status::Parked;
    let mut a = s.store("a");
    a.append(&entries).expect("append");
    assert_eq!(s.depth(), 5, "one message per record");

    let b = s.store("b");
    for e in &entries {
        let r = b
            .get(&s.dlq, &e.letter.id)
            .expect("get")
            .expect("read from the queue");
        assert_eq!(r.letter.payload, e.letter.payload, "{}", e.letter.id);
        assert_eq!(
            r.letter.null_payload, e.letter.null_payload,
            "{}",
            e.letter.id
        );
        assert_eq!(r.letter.key, e.letter.key);
        assert_eq!(r.letter.headers, e.letter.headers);
        assert_eq!(r.letter.error_class, e.letter.error_class);
        assert_eq!(r.letter.source, e.letter.source);
        assert_eq!(r.status, e.status, "{}", e.letter.id);
    }
    assert_eq!(s.depth(), 5, "reading deleted nothing");
}

#[test]
fn reading_leaves_every_message_visible_and_settling_deletes_only_the_settled() {
    let Some(s) = Setup::new() else { return };
    let mut a = s.store("a");
    let entries: Vec<_> = (0..25)
        .map(|i| entry(&s.dlq, &format!("r{i:02}"), b"{}", 0))
        .collect();
    a.append(&entries).expect("append");
    let b = s.store("b");
    assert_eq!(
        pending_ids(&b, &s.dlq).len(),
        25,
        "another index reads them all"
    );
    let counts = b.queue_counts(&s.dlq).expect("counts").expect("queue");
    assert_eq!(
        (counts.visible, counts.in_flight),
        (25, 0),
        "leases are released at once"
    );
    a.settle(&s.dlq, &["r03".into(), "r17".into()], Status::Replayed)
        .expect("settle");
    a.settle(&s.dlq, &["r20".into()], Status::Parked)
        .expect("park");
    assert_eq!(
        s.depth(),
        23,
        "replayed messages left the queue, parked stay"
    );
    let mut c = s.store("c");
    let seen = pending_ids(&c, &s.dlq);
    assert_eq!(seen.len(), 23);
    assert!(!seen.contains(&"r03".to_owned()) && !seen.contains(&"r17".to_owned()));
    // Appending again what the queue already holds adds nothing to it.
    let r = c.append(&entries[..2]).expect("append again");
    assert_eq!((r.appended, r.duplicates), (0, 2));
    assert_eq!(s.depth(), 23);
}

#[test]
fn archiving_deletes_the_messages_and_the_index_keeps_them_archived() {
    let Some(s) = Setup::new() else { return };
    let mut a = s.store("a");
    let mut entries: Vec<_> = (0..4)
        .map(|i| entry(&s.dlq, &format!("r{i}"), b"{}", 0))
        .collect();
    entries[3].status = Status::Parked;
    a.append(&entries).expect("append");
    let r = a
        .settle(&s.dlq, &["r1".into(), "r3".into()], Status::Archived)
        .expect("archive");
    assert_eq!(r.settled, 2, "a pending and a parked record");
    assert_eq!(s.depth(), 2, "archived messages left the queue");
    let got = a.get(&s.dlq, "r3").expect("get").expect("in the index");
    assert_eq!(got.status, Status::Archived);
    let st = a.stats().expect("stats");
    let st = st
        .iter()
        .find(|x| x.dlq == s.dlq)
        .expect("stats of the DLQ");
    assert_eq!((st.pending, st.parked, st.archived), (2, 0, 2));
    assert_eq!(pending_ids(&s.store("b"), &s.dlq), ["r0", "r2"]);
}

#[test]
fn a_message_left_behind_by_a_crash_is_read_once_and_its_copies_deleted() {
    let Some(s) = Setup::new() else { return };
    let mut a = s.store("a");
    a.append(&[entry(&s.dlq, "kept", b"{}", 0)])
        .expect("append");
    // A writer that sent and died before its index write, and retried:
    // two messages of one record the index does not know.
    let orphan = entry(&s.dlq, "orphan", b"{\"v\":1}", 0);
    let enc = codec::encode(&orphan.letter, Status::Pending).expect("encode");
    let message = Outgoing {
        body: enc.body,
        attributes: enc.attributes,
        group: None,
        dedup: None,
    };
    let client = s.client();
    client
        .send(&s.url(), &[message.clone(), message])
        .expect("send");
    assert_eq!(s.depth(), 3);
    let ids = pending_ids(&a, &s.dlq);
    assert_eq!(ids, ["kept", "orphan"], "the orphan is read, once");
    assert_eq!(s.depth(), 2, "its copy is deleted");
    // A settled record whose message came back (its delete was lost).
    a.settle(&s.dlq, &["kept".into()], Status::Discarded)
        .expect("settle");
    let kept = entry(&s.dlq, "kept", b"{}", 0);
    let enc = codec::encode(&kept.letter, Status::Pending).expect("encode");
    client
        .send(
            &s.url(),
            &[Outgoing {
                body: enc.body,
                attributes: enc.attributes,
                group: None,
                dedup: None,
            }],
        )
        .expect("send");
    assert_eq!(pending_ids(&a, &s.dlq), ["orphan"], "settled stays settled");
    assert_eq!(
        s.depth(),
        1,
        "the next pass deletes the settled record's message"
    );
}

#[test]
fn messages_another_client_sent_are_read_with_their_attributes_and_sent_time() {
    let Some(s) = Setup::new() else { return };
    let client = s.client();
    let url = client.ensure_queue(&s.dlq).expect("queue");
    let mut attributes = HashMap::new();
    attributes.insert(
        "ErrorCode".to_owned(),
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value("200")
            .build()
            .expect("attr"),
    );
    attributes.insert(
        "ErrorMessage".to_owned(),
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Task timed out after 3.00 seconds")
            .build()
            .expect("attr"),
    );
    let ids = client
        .send(
            &url,
            &[
                Outgoing {
                    body: "{\"event\":\"lambda\"}".into(),
                    attributes,
                    group: None,
                    dedup: None,
                },
                Outgoing {
                    body: "plain text".into(),
                    attributes: HashMap::new(),
                    group: None,
                    dedup: None,
                },
            ],
        )
        .expect("send");
    let before = chrono::Utc::now() - chrono::Duration::minutes(1);
    let store = s.store("a");
    let lambda = store.get(&s.dlq, &ids[0]).expect("get").expect("read");
    assert_eq!(lambda.letter.payload, b"{\"event\":\"lambda\"}");
    assert_eq!(lambda.letter.error_class, "lambda.200");
    assert_eq!(lambda.letter.error, "Task timed out after 3.00 seconds");
    assert_eq!(lambda.letter.source.system, "sqs");
    assert!(lambda.letter.failed_at > before, "the sent time");
    let names: Vec<&str> = lambda
        .letter
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["ErrorCode", "ErrorMessage"]);
    let plain = store.get(&s.dlq, &ids[1]).expect("get").expect("read");
    assert_eq!(plain.letter.payload, b"plain text");
    assert_eq!(plain.letter.error_class, "unknown");
    let attrs = s.client().attributes(&url).expect("attributes");
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("2"),
        "still there"
    );
}

#[test]
fn an_invalid_dlq_name_is_refused_with_the_rule() {
    let Some(s) = Setup::new() else { return };
    let mut a = s.store("a");
    let err = a
        .append(&[entry("no spaces allowed", "1", b"{}", 0)])
        .expect_err("refused")
        .to_string();
    assert!(err.contains("maps to no SQS queue name"), "{err}");
}

#[test]
fn a_fifo_dlq_deeper_than_one_receive_is_replayed_in_full_in_group_order() {
    let Some(s) = Setup::new() else { return };
    let dlq = format!("{}.fifo", s.dlq);
    let target = format!("{}-target.fifo", s.dlq);
    let mut a = s.store("a");
    let entries: Vec<_> = (0..25)
        .map(|i| {
            let mut e = entry(
                &dlq,
                &format!("r{i:02}"),
                format!("{{\"i\":{i}}}").as_bytes(),
                0,
            );
            e.letter.key = Some(b"group-a".to_vec());
            e
        })
        .collect();
    a.append(&entries).expect("append");
    let client = s.client();
    let target_url = client.ensure_queue(&target).expect("target queue");
    // SQS shows a FIFO reader only the first messages of a group until
    // they are deleted; the replay deletes page by page and reads on.
    let mut b = s.store("b");
    let mut sqs_target = dlq_sqs::SqsTarget::new(b.config(), Some(target.clone())).expect("target");
    let mut options = dlq_core::replay::ReplayOptions::for_dlq(&dlq);
    options.batch_size = 7;
    let report = dlq_core::replay::run(&mut b, &mut sqs_target, &options, None).expect("replay");
    assert_eq!(report.replayed, 25, "{report:?}");
    let mut bodies = Vec::new();
    loop {
        let messages = client.receive(&target_url, 5).expect("receive");
        if messages.is_empty() {
            break;
        }
        for m in &messages {
            bodies.push(m.body().unwrap_or_default().to_owned());
        }
        let handles: Vec<String> = messages
            .iter()
            .filter_map(|m| m.receipt_handle().map(str::to_owned))
            .collect();
        client.delete(&target_url, &handles).expect("delete");
    }
    let want: Vec<String> = (0..25).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(bodies, want, "every record once, in group order");
    let dlq_left = b.queue_counts(&dlq).expect("counts").expect("queue");
    assert_eq!(
        (dlq_left.visible, dlq_left.in_flight),
        (0, 0),
        "the DLQ is empty"
    );
}

#[test]
fn an_index_of_other_queues_is_refused() {
    let Some(s) = Setup::new() else { return };
    drop(s.store("a"));
    let mut other = s.config.clone();
    other.state = s.dir.path().join("a.db");
    other.region = "eu-west-1".into();
    let err = SqsStore::open(other).expect_err("refused").to_string();
    assert!(err.contains("belongs to the queues of us-east-1"), "{err}");
    assert!(err.contains("state=PATH"), "{err}");
    SqsStore::open(s.config.clone()).expect("its own queues still open it");
}

#[test]
fn stats_read_a_queue_only_when_sqs_counts_other_than_the_index_holds() {
    let Some(s) = Setup::new() else { return };
    let mut a = s.store("a");
    let entries: Vec<_> = (0..3)
        .map(|i| entry(&s.dlq, &format!("r{i}"), b"{}", 0))
        .collect();
    a.append(&entries).expect("append");
    let pending = |store: &SqsStore| {
        store
            .stats()
            .expect("stats")
            .into_iter()
            .find(|st| st.dlq == s.dlq)
            .map_or(0, |st| st.pending)
    };
    assert_eq!(pending(&a), 3);
    assert_eq!(pending(&a), 3);
    // Nothing changed: the stats received nothing.
    let client = s.client();
    let url = s.url();
    let messages = client.receive(&url, 1).expect("receive");
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let count = m
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .cloned();
        assert_eq!(count.as_deref(), Some("1"), "only this receive");
    }
    let handles: Vec<String> = messages
        .iter()
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect();
    client.release(&url, &handles).expect("release");
    // A message another client sent: the counts differ, the queue is read.
    client
        .send(
            &url,
            &[Outgoing {
                body: "new".into(),
                attributes: HashMap::new(),
                group: None,
                dedup: None,
            }],
        )
        .expect("send");
    assert_eq!(pending(&a), 4);
}

/// The setup with claim checks to the S3-compatible server
/// (`DLQ_S3_ENDPOINT`), under a prefix of this test's own.
fn with_claims(s: &mut Setup) -> Option<(String, dlq_sqs::ClaimsConfig)> {
    let endpoint = dlq_testkit::s3::endpoint()?;
    let claims = dlq_sqs::ClaimsConfig {
        bucket: dlq_testkit::s3::bucket(&endpoint).to_owned(),
        prefix: dlq_testkit::s3::prefix("claims"),
    };
    s.config.claims = Some(claims.clone());
    s.config.s3_endpoint = Some(endpoint.clone());
    Some((endpoint, claims))
}

/// Every message of a queue, received and given back at once.
fn peek(client: &Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let messages = client.receive(url, 5).expect("receive");
    let handles: Vec<String> = messages
        .iter()
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect();
    client.release(url, &handles).expect("release");
    messages
}

#[test]
fn a_600_kib_payload_round_trips_byte_exact_through_an_s3_claim_check() {
    let Some(mut s) = Setup::new() else { return };
    let Some((endpoint, claims)) = with_claims(&mut s) else {
        return;
    };
    // Bytes that are not text (sent base64) and JSON text (sent as is).
    let binary: Vec<u8> = (0..600 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let text = format!(r#"{{"blob":"{}"}}"#, "\u{2603}x".repeat(150 * 1024)).into_bytes();
    let small = b"{\"small\":true}".to_vec();
    let mut a = s.store("a");
    a.append(&[
        entry(&s.dlq, "binary", &binary, 0),
        entry(&s.dlq, "text", &text, 0),
        entry(&s.dlq, "small", &small, 0),
    ])
    .expect("append");

    // In the queue: pointers in the Extended Client's shape for the large
    // ones, the small one as it is.
    let client = s.client();
    let url = s.url();
    let messages = peek(&client, &url);
    assert_eq!(messages.len(), 3);
    let mut pointers = 0;
    for m in &messages {
        let size = m
            .message_attributes()
            .and_then(|a| a.get(codec::SIZE_ATTRIBUTE))
            .and_then(|v| v.string_value());
        match codec::pointer_of(m) {
            Some((bucket, key)) => {
                pointers += 1;
                assert_eq!(bucket, claims.bucket);
                assert!(key.starts_with(&claims.prefix), "{key}");
                let object = dlq_testkit::s3::get_object(&endpoint, &bucket, &key);
                assert_eq!(size, Some(object.len().to_string().as_str()));
                if object.starts_with(b"{") {
                    assert_eq!(object, text, "an Extended Client reader gets the text");
                }
            }
            None => {
                assert_eq!(m.body(), Some("{\"small\":true}"));
                assert_eq!(size, None);
            }
        }
    }
    assert_eq!(pointers, 2);

    // Another index reads them back byte for byte.
    let mut b = s.store("b");
    for (id, payload) in [("binary", &binary), ("text", &text), ("small", &small)] {
        let r = b.get(&s.dlq, id).expect("get").expect("read");
        assert!(r.letter.payload == *payload, "{id} changed on the way");
        assert!(
            r.letter
                .headers
                .iter()
                .all(|h| h.name != codec::SIZE_ATTRIBUTE),
            "the size attribute is no header"
        );
    }

    // A replay to another queue claim-checks the text again (the binary
    // one is no SQS text: it goes back to its DLQ as a failed replay).
    let target = format!("{}-target", s.dlq);
    let target_url = client.ensure_queue(&target).expect("target queue");
    let mut sqs_target = dlq_sqs::SqsTarget::new(b.config(), Some(target.clone())).expect("target");
    let options = dlq_core::replay::ReplayOptions::for_dlq(&s.dlq);
    let report = dlq_core::replay::run(&mut b, &mut sqs_target, &options, None).expect("replay");
    assert_eq!(report.replayed, 2, "{report:?}");
    let replayed = peek(&client, &target_url);
    assert_eq!(replayed.len(), 2);
    let big = replayed
        .iter()
        .find(|m| codec::pointer_of(m).is_some())
        .expect("a re-pointed message");
    let (bucket, key) = codec::pointer_of(big).expect("pointer");
    assert_eq!(dlq_testkit::s3::get_object(&endpoint, &bucket, &key), text);
    // Read through a store, the replayed message is the text again.
    let mut t = s.config.clone();
    t.state = s.dir.path().join("t.db");
    let t = SqsStore::open(t).expect("open");
    let pending = t
        .scan_all(&Selection::pending(Some(&target)), 100)
        .map(|r| r.expect("scan").letter.payload)
        .filter(|p| p.len() > 1000)
        .collect::<Vec<_>>();
    assert!(pending == vec![text.clone()], "replayed bytes intact");
}

#[test]
fn a_message_in_the_extended_clients_shape_is_read_with_its_payload() {
    let Some(mut s) = Setup::new() else { return };
    let Some((endpoint, claims)) = with_claims(&mut s) else {
        return;
    };
    // What the Java client writes: the body in S3 under a UUID key, a
    // pointer body, and the size attribute (here the legacy name of the
    // 1.x client beside a String attribute of the sender's).
    let body = format!(r#"{{"order":7,"notes":"{}"}}"#, "n".repeat(300 * 1024));
    let key = uuid::Uuid::new_v4().to_string();
    dlq_testkit::s3::put_object(&endpoint, &claims.bucket, &key, body.clone().into_bytes());
    let client = s.client();
    let url = client.ensure_queue(&s.dlq).expect("queue");
    let attribute = |kind: &str, value: &str| {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type(kind)
            .string_value(value)
            .build()
            .expect("attr")
    };
    let mut attributes = HashMap::new();
    attributes.insert(
        codec::LEGACY_SIZE_ATTRIBUTE.to_owned(),
        attribute("Number", &body.len().to_string()),
    );
    attributes.insert("trace-id".to_owned(), attribute("String", "t-7"));
    let ids = client
        .send(
            &url,
            &[Outgoing {
                body: format!(
                    r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{{"s3BucketName":"{}","s3Key":"{key}"}}]"#,
                    claims.bucket
                ),
                attributes,
                group: None,
                dedup: None,
            }],
        )
        .expect("send");
    // Reading needs no claims= of its own, only the S3 endpoint.
    s.config.claims = None;
    let store = s.store("a");
    let r = store.get(&s.dlq, &ids[0]).expect("get").expect("read");
    assert!(
        r.letter.payload == body.as_bytes(),
        "the payload, not the pointer"
    );
    let names: Vec<&str> = r.letter.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["trace-id"]);
}
