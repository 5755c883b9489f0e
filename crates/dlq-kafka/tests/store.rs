//! `KafkaStore` against a real broker: the `DlqStore` contract (the same
//! cases as `MemoryStore`'s tests), plus what only Kafka has: topics,
//! the ledger, blobs in chunks, foreign records, the headers format.
//!
//! The broker address comes from `DLQ_KAFKA_BOOTSTRAP` (start one with
//! `scripts/kafka.sh start`, which prints it). Without it the tests print a
//! skip message and pass, except when `CI` is set: then they fail loudly.
//! Every test uses its own random topic names, so tests run in parallel and
//! never see each other's data.

use dlq_core::envelope::{Header, Origin, sha256_hex};
use dlq_core::filter::Filter;
use dlq_core::store::{
    Batch, DlqStore, Entry, PartitionStats, Result, Selection, Settle, Status, StoreError,
    StoredRecord,
};
use dlq_core::{DeadLetter, Failure};
use dlq_kafka::{Format, KafkaConfig, KafkaStore, Secret};
use dlq_testkit::block_on;
use dlq_testkit::kafka::bootstrap;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A record as another system writes it: key, value, headers.
type RawRecord<'a> = (Option<&'a [u8]>, &'a [u8], Vec<Header>);

/// One test's private corner of the broker.
struct Env {
    bootstrap: String,
    prefix: String,
    config: KafkaConfig,
}

impl Env {
    fn new() -> Option<Env> {
        let bootstrap = bootstrap()?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("dlqt-{}.", &tag[..12]);
        let mut config = KafkaConfig::new(bootstrap.clone());
        config.dlq_prefix = prefix.clone();
        config.ledger_topic = format!("{prefix}ledger");
        config.blob_topic = format!("{prefix}blobs");
        config.replication_factor = Some(1);
        config.timeout_ms = 10_000;
        Some(Env {
            bootstrap,
            prefix,
            config,
        })
    }

    /// A DLQ name of this test.
    fn dlq(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn open(&self) -> KafkaStore {
        KafkaStore::open(self.config.clone()).expect("open store")
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
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
        // Wait until the leader is known.
        let consumer: BaseConsumer = self.client().create().expect("consumer");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let md = consumer
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .expect("metadata");
            if md.topics()[0].partitions().len() == partitions as usize {
                return;
            }
            assert!(Instant::now() < deadline, "topic {name} not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes the records of a partition below `before`, as retention does.
    fn delete_records(&self, topic: &str, partition: i32, before: i64) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().expect("admin");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(before))
            .expect("tpl");
        let res = block_on(admin.delete_records(&tpl, &AdminOptions::new())).expect("delete");
        for el in res.elements() {
            el.error().expect("deleted");
        }
    }

    /// Produces records directly (not through the store), as another
    /// system writing to a DLQ topic would.
    fn produce(&self, topic: &str, records: &[RawRecord<'_>]) {
        self.produce_in(topic, None, records);
    }

    /// [`Env::produce`] to one partition.
    fn produce_in(&self, topic: &str, partition: Option<i32>, records: &[RawRecord<'_>]) {
        // Idempotent, so that a retried first batch (a topic whose leader
        // is still being elected) cannot land after the second: tests read
        // the records back by offset.
        let producer: BaseProducer = self
            .client()
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        for (key, value, headers) in records {
            let mut hs = OwnedHeaders::new();
            for h in headers {
                hs = hs.insert(rdkafka::message::Header {
                    key: &h.name,
                    value: h.value.as_deref(),
                });
            }
            let mut r = BaseRecord::to(topic).payload(*value).headers(hs);
            if let Some(k) = key {
                r = r.key(*k);
            }
            if let Some(p) = partition {
                r = r.partition(p);
            }
            producer.send(r).map_err(|(e, _)| e).expect("send");
        }
        // rdkafka's flush polls in 100 ms steps; this is quicker.
        let deadline = Instant::now() + Duration::from_secs(10);
        while producer.in_flight_count() > 0 {
            assert!(Instant::now() < deadline, "records not delivered");
            producer.poll(Duration::from_millis(1));
        }
    }

    /// Every record of a topic as a plain reader sees it.
    fn read_raw(&self, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
        dlq_testkit::kafka::read_messages(&self.bootstrap, topic, true)
    }

    fn partitions(&self, topic: &str) -> usize {
        let consumer: BaseConsumer = self.client().create().expect("consumer");
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata")
            .topics()[0]
            .partitions()
            .len()
    }
}

/// A pending entry with a permanent validation failure.
fn entry(dlq: &str, id: &str, payload: &[u8], partition: Option<i32>) -> Entry {
    let f = Failure::permanent("validate", "validation.missing_field", "missing link");
    let mut letter = DeadLetter::new(id, payload.to_vec(), &f);
    letter.source.system = "kafka".into();
    letter.source.topic = Some("rss.events".into());
    letter.source.partition = partition;
    Entry {
        dlq: dlq.into(),
        letter,
        status: Status::Pending,
    }
}

fn all(store: &KafkaStore, selection: &Selection) -> Vec<StoredRecord> {
    store
        .scan_all(selection, 7)
        .collect::<Result<_>>()
        .expect("scan")
}

fn every_status(dlq: Option<&str>) -> Selection {
    Selection {
        dlq: dlq.map(str::to_owned),
        statuses: Status::ALL.to_vec(),
        filter: None,
    }
}

/// Asserts that `stats` agrees with a full scan, DLQ by DLQ and status by
/// status, and per source partition for pending records.
fn assert_stats_match_scan(store: &KafkaStore) {
    let stats = store.stats().expect("stats");
    let records = all(store, &every_status(None));
    let mut counted: BTreeMap<(String, Status), u64> = BTreeMap::new();
    for r in &records {
        *counted.entry((r.dlq.clone(), r.status)).or_default() += 1;
    }
    for s in &stats {
        let n = |st| counted.get(&(s.dlq.clone(), st)).copied().unwrap_or(0);
        assert_eq!(s.pending, n(Status::Pending), "pending of {}", s.dlq);
        assert_eq!(s.parked, n(Status::Parked), "parked of {}", s.dlq);
        assert_eq!(s.replayed, n(Status::Replayed), "replayed of {}", s.dlq);
        assert_eq!(s.discarded, n(Status::Discarded), "discarded of {}", s.dlq);
        assert_eq!(
            s.total,
            Status::ALL.into_iter().map(n).sum::<u64>(),
            "total of {}",
            s.dlq
        );
        // Per DLQ partition (which dlq's writers choose as the source
        // partition): they add up.
        assert_eq!(
            s.partitions.iter().map(|p| p.pending).sum::<u64>(),
            s.pending,
            "pending per partition of {}",
            s.dlq
        );
        let pending_scan = all(store, &Selection::pending(Some(&s.dlq))).len() as u64;
        assert_eq!(s.pending, pending_scan, "pending scan of {}", s.dlq);
    }
    assert_eq!(
        stats.iter().map(|s| s.total).sum::<u64>(),
        records.len() as u64
    );
}

#[test]
fn append_is_idempotent_by_dlq_and_id() {
    let Some(env) = Env::new() else { return };
    let (a, b) = (env.dlq("a"), env.dlq("b"));
    let mut s = env.open();
    let r = s
        .append(&[
            entry(&a, "1", b"{}", Some(0)),
            entry(&a, "2", b"{}", Some(0)),
        ])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (2, 0));
    let r = s
        .append(&[
            entry(&a, "1", b"{\"changed\":1}", Some(0)),
            entry(&b, "1", b"{}", Some(0)),
            entry(&b, "1", b"{\"same batch\":1}", Some(0)),
        ])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (1, 2));
    let first = s.get(&a, "1").expect("get").expect("present");
    assert_eq!(first.letter.payload, b"{}", "first write wins");
    let first = s.get(&b, "1").expect("get").expect("present");
    assert_eq!(first.letter.payload, b"{}", "first write in a batch wins");
    let totals: Vec<(String, u64)> = s
        .stats()
        .expect("stats")
        .into_iter()
        .map(|st| (st.dlq, st.total))
        .collect();
    assert_eq!(totals, vec![(a.clone(), 2), (b.clone(), 1)]);
    assert_eq!(s.dlqs().expect("dlqs"), vec![a.clone(), b.clone()]);

    // A fresh store (another process) knows the ids from the log.
    let mut other = env.open();
    let r = other
        .append(&[entry(&a, "2", b"again", Some(0))])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (0, 1));
    assert_eq!(env.read_raw(&a).len(), 2, "nothing more was written");
}

#[test]
fn a_duplicate_that_reached_the_log_is_invisible() {
    // Two stores that both believe an id is new (each warmed before the
    // other wrote) both write it: the first copy in the log is the record.
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut s1 = env.open();
    let mut s2 = env.open();
    s1.append(&[entry(&a, "warm", b"0", Some(0))])
        .expect("append");
    assert_eq!(s2.stats().expect("warm")[0].total, 1);
    s1.append(&[entry(&a, "x", b"first", Some(0))])
        .expect("append");
    // s2 refreshes before it writes, so it sees s1's copy and skips.
    let r = s2
        .append(&[entry(&a, "x", b"second", Some(0))])
        .expect("append");
    assert_eq!(r.duplicates, 1);
    // Force a real second copy into the log, as a crash between produce
    // and acknowledgement would.
    let copy = s1.get(&a, "x").expect("get").expect("present");
    let enc = dlq_core::envelope::encode(
        &DeadLetter {
            payload: b"second".to_vec(),
            null_payload: false,
            ..copy.letter.clone()
        },
        &Default::default(),
    )
    .expect("encode");
    // In the first copy's partition, where every writer of dlq puts a
    // record (by its source partition).
    env.produce_in(&a, Some(0), &[(None, &enc.bytes, Vec::new())]);
    assert_eq!(env.read_raw(&a).len(), 3);
    for store in [&s1, &s2, &env.open()] {
        let st = &store.stats().expect("stats")[0];
        assert_eq!((st.total, st.pending), (2, 2));
        let x = store.get(&a, "x").expect("get").expect("present");
        assert_eq!(x.letter.payload, b"first");
        assert_eq!(all(store, &Selection::pending(Some(&a))).len(), 2);
    }
    s2.settle(&a, &["x".into()], Status::Discarded)
        .expect("settle");
    assert_eq!(s1.stats().expect("stats")[0].pending, 1);
    assert_stats_match_scan(&s1);
}

#[test]
fn settle_moves_records_out_of_pending_once() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut s = env.open();
    let mut parked = entry(&a, "3", b"z", Some(0));
    parked.status = Status::Parked;
    s.append(&[
        entry(&a, "1", b"x", Some(0)),
        entry(&a, "2", b"y", Some(0)),
        parked,
    ])
    .expect("append");
    let r = s
        .settle(&a, &["1".into()], Status::Replayed)
        .expect("settle");
    assert_eq!(r.settled, 1);
    let r = s
        .settle(&a, &["1".into()], Status::Discarded)
        .expect("settle");
    assert_eq!(r.settled, 0, "a replayed record stays replayed");
    let r = s
        .settle(&a, &["3".into(), "nope".into()], Status::Parked)
        .expect("settle");
    assert_eq!(r.settled, 0, "parked stays parked; unknown ids are ignored");
    let st = &s.stats().expect("stats")[0];
    assert_eq!((st.pending, st.replayed, st.parked, st.total), (1, 1, 1, 3));
    let pending = all(&s, &Selection::pending(Some(&a)));
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].letter.payload, b"y");
    let parked: Vec<_> = all(
        &s,
        &Selection {
            dlq: Some(a.clone()),
            statuses: vec![Status::Parked],
            filter: None,
        },
    );
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].letter.payload, b"z");
    let r = s
        .settle(&a, &["3".into()], Status::Replayed)
        .expect("settle");
    assert_eq!(r.settled, 1, "a parked record can be replayed on purpose");

    let replayed = s.get(&a, "1").expect("get").expect("present");
    assert_eq!(replayed.status, Status::Replayed);
    assert!(replayed.settled_at.is_some());

    // The ledger is the truth for a store opened from scratch.
    let fresh = env.open();
    let st = &fresh.stats().expect("stats")[0];
    assert_eq!((st.pending, st.replayed, st.parked, st.total), (1, 2, 0, 3));
    assert_eq!(
        fresh.get(&a, "3").expect("get").expect("present").status,
        Status::Replayed
    );
}

#[test]
fn commit_with_checkpoint_appends_and_settles_together() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut s = env.open();
    s.append(&[entry(&a, "1", b"x", Some(0))]).expect("append");
    let settle = [
        Settle {
            dlq: a.clone(),
            id: "1".into(),
            outcome: Status::Replayed,
        },
        // Settling a record appended in the same batch works too.
        Settle {
            dlq: a.clone(),
            id: "1~r1".into(),
            outcome: Status::Discarded,
        },
    ];
    let append = [entry(&a, "1~r1", b"x2", Some(0))];
    let r = s
        .commit(Batch {
            append: &append,
            settle: &settle,
            checkpoint: Some(("replay", "7")),
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!((r.appended, r.settled), (1, 2));
    assert_eq!(s.checkpoint("replay").expect("cp").as_deref(), Some("7"));
    assert_eq!(s.checkpoint("other").expect("cp"), None);
    let fresh = env.open();
    assert_eq!(
        fresh.checkpoint("replay").expect("cp").as_deref(),
        Some("7")
    );
    let st = &fresh.stats().expect("stats")[0];
    assert_eq!((st.pending, st.replayed, st.discarded), (0, 1, 1));
    // A checkpoint alone is a commit too.
    let mut s = fresh;
    s.commit(Batch {
        checkpoint: Some(("replay", "8")),
        ..Batch::default()
    })
    .expect("commit");
    assert_eq!(
        env.open().checkpoint("replay").expect("cp").as_deref(),
        Some("8")
    );
}

#[test]
fn dlq_topic_takes_the_source_partition_count_and_stats_are_per_partition() {
    let Some(env) = Env::new() else { return };
    let source = format!("{}-src", env.prefix.trim_end_matches('.'));
    env.create_topic(&source, 3);
    let a = env.dlq("events");
    let mut s = env.open();
    // The oldest failure first, as DLQ records are appended in the order
    // they fail: the age of the oldest pending record is that of the first
    // pending record of each partition.
    let mut old = entry(&a, "old", b"{}", Some(2));
    old.letter.source.topic = Some(source.clone());
    old.letter.failed_at = chrono::DateTime::from_timestamp(1_000, 0).expect("ts");
    let mut entries = vec![old];
    for (i, p) in [0, 1, 1, 2, 4, 4, 4].into_iter().enumerate() {
        let mut e = entry(&a, &format!("kafka:{source}:{p}:{i}"), b"{}", Some(p));
        e.letter.source.topic = Some(source.clone());
        e.letter.source.offset = Some(i as i64);
        entries.push(e);
    }
    s.append(&entries).expect("append");
    assert_eq!(env.partitions(&a), 3, "the source topic's partition count");

    // Source partition p lands in DLQ partition p % 3.
    let raw = env.read_raw(&a);
    for m in &raw {
        let l = dlq_core::envelope::decode(m.payload().expect("value"), "x");
        assert_eq!(
            m.partition(),
            l.source.partition.expect("p") % 3,
            "{}",
            l.id
        );
    }
    let st = &s.stats().expect("stats")[0];
    assert_eq!(st.pending, 8);
    assert_eq!(
        st.oldest_pending_at,
        chrono::DateTime::from_timestamp(1_000, 0)
    );
    assert_eq!(
        st.partitions,
        vec![
            PartitionStats {
                partition: 0,
                pending: 1
            },
            PartitionStats {
                partition: 1,
                pending: 5
            },
            PartitionStats {
                partition: 2,
                pending: 2
            },
        ],
        "per DLQ partition: source partitions 1 and 4 share DLQ partition 1"
    );
    s.settle(&a, &["old".into()], Status::Discarded)
        .expect("settle");
    let st = &s.stats().expect("stats")[0];
    assert_ne!(
        st.oldest_pending_at,
        chrono::DateTime::from_timestamp(1_000, 0)
    );
    assert_eq!(
        st.partitions[2],
        PartitionStats {
            partition: 2,
            pending: 1
        }
    );
    assert_stats_match_scan(&s);

    // Without a source topic: the configured default.
    let mut cfg = env.config.clone();
    cfg.default_partitions = 2;
    let mut s = KafkaStore::open(cfg).expect("open");
    let b = env.dlq("no-source");
    let mut e = entry(&b, "1", b"{}", None);
    e.letter.source.topic = None;
    s.append(&[e]).expect("append");
    assert_eq!(env.partitions(&b), 2);
}

#[test]
fn oversized_payload_goes_through_blob_chunks_byte_exact() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut cfg = env.config.clone();
    cfg.max_message_bytes = 16 * 1024;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    let big: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.append(&[entry(&a, "1", &big, Some(0)), entry(&a, "2", &big, Some(0))])
        .expect("append");
    for m in env.read_raw(&a) {
        assert!(m.payload().expect("value").len() <= cfg.max_message_bytes);
    }
    let chunks = env.read_raw(&cfg.blob_topic);
    assert!(chunks.len() >= 7, "{} chunks", chunks.len());
    assert!(
        chunks
            .iter()
            .all(|m| m.payload().expect("chunk").len() < cfg.max_message_bytes)
    );
    let sha = sha256_hex(&big);
    assert_eq!(
        chunks[0].key(),
        Some(format!("sha256:{sha}:0").as_bytes()),
        "chunks are keyed sha256:<hex>:<n>"
    );
    for store in [&s, &KafkaStore::open(cfg.clone()).expect("open")] {
        for id in ["1", "2"] {
            let r = store.get(&a, id).expect("get").expect("present");
            assert_eq!(r.letter.payload, big, "byte-exact");
            assert!(r.letter.claim_checks.is_empty(), "claims resolved");
        }
    }
    // The same blob again: content addressed, stored once.
    s.append(&[entry(&a, "3", &big, Some(0))]).expect("append");
    assert_eq!(env.read_raw(&cfg.blob_topic).len(), chunks.len());
    assert_eq!(
        s.get(&a, "3")
            .expect("get")
            .expect("present")
            .letter
            .payload,
        big
    );
}

#[test]
fn stats_pending_equals_a_full_scan_after_appends_settles_and_reopen() {
    let Some(env) = Env::new() else { return };
    let (a, b) = (env.dlq("a"), env.dlq("b"));
    let mut cfg = env.config.clone();
    cfg.default_partitions = 3;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    let mut entries = Vec::new();
    for i in 0..60 {
        let dlq = if i % 3 == 0 { &b } else { &a };
        let mut e = entry(
            dlq,
            &format!("r{i}"),
            format!("{{\"i\":{i}}}").as_bytes(),
            Some(i % 5),
        );
        e.letter.source.topic = None;
        if i % 11 == 0 {
            e.status = Status::Parked;
        }
        entries.push(e);
    }
    // In three batches, with duplicates across them.
    s.append(&entries[..25]).expect("append");
    s.append(&entries[20..45]).expect("append");
    s.append(&entries[40..]).expect("append");
    assert_stats_match_scan(&s);
    let ids = |range: std::ops::Range<i32>, step| {
        range
            .step_by(step)
            .map(|i| format!("r{i}"))
            .collect::<Vec<_>>()
    };
    s.settle(&a, &ids(0..60, 4), Status::Replayed)
        .expect("settle");
    s.settle(&b, &ids(0..60, 6), Status::Discarded)
        .expect("settle");
    s.settle(&a, &ids(0..60, 7), Status::Parked)
        .expect("settle");
    assert_stats_match_scan(&s);
    let before = s.stats().expect("stats");
    assert_eq!(before.iter().map(|x| x.total).sum::<u64>(), 60);

    let fresh = KafkaStore::open(cfg).expect("reopen");
    assert_eq!(
        fresh.stats().expect("stats"),
        before,
        "same stats from scratch"
    );
    assert_stats_match_scan(&fresh);
    // And the warm store sees later writes by another store.
    let mut fresh = fresh;
    fresh
        .settle(&a, &ids(1..60, 9), Status::Discarded)
        .expect("settle");
    assert_stats_match_scan(&s);
    assert_eq!(s.stats().expect("stats"), fresh.stats().expect("stats"));
}

#[test]
fn scan_pages_resume_from_the_cursor_and_apply_the_filter() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut cfg = env.config.clone();
    cfg.default_partitions = 2;
    let mut s = KafkaStore::open(cfg).expect("open");
    let entries: Vec<Entry> = (0..23)
        .map(|i| {
            let mut e = entry(&a, &format!("r{i}"), b"{}", Some(i % 2));
            e.letter.source.topic = None;
            if i % 3 == 0 {
                e.letter.error_class = "validation.price_out_of_range".into();
            }
            e
        })
        .collect();
    s.append(&entries).expect("append");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .scan(&Selection::pending(Some(&a)), cursor.as_ref(), 5)
            .expect("scan");
        assert!(page.records.len() <= 5);
        seen.extend(page.records.into_iter().map(|r| r.letter.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    let mut want: Vec<String> = (0..23).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(seen, want, "every record exactly once");

    let filter = Filter::parse("error_class == \"validation.price_out_of_range\"").expect("filter");
    let matched = all(
        &s,
        &Selection {
            dlq: Some(a.clone()),
            statuses: Vec::new(),
            filter: Some(filter),
        },
    );
    assert_eq!(matched.len(), 8);
    assert!(
        s.scan(&Selection::pending(Some(&env.dlq("missing"))), None, 5)
            .expect("scan")
            .records
            .is_empty()
    );
    assert!(
        s.scan(
            &Selection::pending(None),
            Some(&dlq_core::store::Cursor("garbage".into())),
            5
        )
        .is_err()
    );
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: Some(value.to_vec()),
    }
}

#[test]
fn connect_and_spring_records_are_read_and_settled() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("sink");
    let connect = vec![
        header("trace-id", b"t-1"),
        header("__connect.errors.topic", b"polymarket.price_hourly"),
        header("__connect.errors.partition", b"3"),
        header("__connect.errors.offset", b"1812"),
        header("__connect.errors.stage", b"VALUE_CONVERTER"),
        header(
            "__connect.errors.exception.class.name",
            b"org.apache.kafka.connect.errors.DataException",
        ),
        header(
            "__connect.errors.exception.message",
            b"Converting byte[] to Kafka Connect data failed",
        ),
    ];
    let spring = vec![
        header("kafka_dlt-original-topic", b"rss.events"),
        header("kafka_dlt-original-partition", &5i32.to_be_bytes()),
        header("kafka_dlt-original-offset", &42i64.to_be_bytes()),
        header(
            "kafka_dlt-exception-cause-fqcn",
            b"com.fasterxml.jackson.core.JsonParseException",
        ),
        header("kafka_dlt-exception-message", b"Unexpected character"),
    ];
    let seed = br#"{"original_record": {"title": "Fed holds"}, "error": "Failed to send", "timestamp": "2026-11-29T07:00:00.123456+00:00"}"#;
    // One partition, created and led before the records go in.
    env.create_topic(&a, 1);
    env.produce(
        &a,
        &[
            (Some(b"0xabc"), b"{\"price\":", connect),
            (None, b"\xff\x00raw", spring),
            (None, seed, Vec::new()),
        ],
    );
    let mut s = env.open();
    let records = all(&s, &Selection::pending(Some(&a)));
    assert_eq!(records.len(), 3);
    let c = &records[0];
    assert_eq!(c.letter.origin, Origin::Connect);
    assert_eq!(c.letter.id, format!("kafka:{a}:0:0"));
    assert_eq!(c.letter.payload, b"{\"price\":");
    assert_eq!(c.letter.key.as_deref(), Some(&b"0xabc"[..]));
    assert_eq!(c.letter.headers, vec![header("trace-id", b"t-1")]);
    assert_eq!(
        c.letter.source.topic.as_deref(),
        Some("polymarket.price_hourly")
    );
    assert_eq!(
        (c.letter.source.partition, c.letter.source.offset),
        (Some(3), Some(1812))
    );
    assert_eq!(
        c.letter.error_class,
        "org.apache.kafka.connect.errors.DataException"
    );
    let sp = &records[1];
    assert_eq!(sp.letter.origin, Origin::Spring);
    assert_eq!(sp.letter.id, format!("kafka:{a}:0:1"));
    assert_eq!(sp.letter.payload, b"\xff\x00raw");
    assert_eq!(sp.letter.source.topic.as_deref(), Some("rss.events"));
    assert_eq!(
        (sp.letter.source.partition, sp.letter.source.offset),
        (Some(5), Some(42))
    );
    assert_eq!(records[2].letter.origin, Origin::Seed);
    assert_eq!(records[2].letter.error, "Failed to send");

    let st = &s.stats().expect("stats")[0];
    assert_eq!(st.pending, 3);
    assert_eq!(
        st.partitions,
        vec![PartitionStats {
            partition: 0,
            pending: 3
        }],
        "per partition of the DLQ topic, where the other systems put them all"
    );
    let r = s
        .settle(
            &a,
            &[c.letter.id.clone(), sp.letter.id.clone()],
            Status::Replayed,
        )
        .expect("settle");
    assert_eq!(r.settled, 2);
    let fresh = env.open();
    let pending = all(&fresh, &Selection::pending(Some(&a)));
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].letter.origin, Origin::Seed);
    assert_eq!(
        fresh
            .get(&a, &format!("kafka:{a}:0:0"))
            .expect("get")
            .expect("present")
            .status,
        Status::Replayed
    );
    assert_stats_match_scan(&fresh);
}

#[test]
fn headers_format_writes_the_raw_value_and_reads_back() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut cfg = env.config.clone();
    cfg.format = Format::Headers;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    let mut e = entry(&a, "kafka:rss.events:0:9", b"\x00binary\xffvalue", Some(0));
    e.letter.key = Some(b"k-1".to_vec());
    e.letter.headers = vec![
        header("trace-id", b"t-9"),
        Header {
            name: "null".into(),
            value: None,
        },
    ];
    e.letter.replays = 2;
    e.letter.replay_of = Some("kafka:rss.events:0:9~r1".into());
    // Too large for one message: falls back to the envelope and a blob.
    let mut big = entry(&a, "big", &vec![7u8; 3 * 1024 * 1024], Some(0));
    big.letter.key = Some(b"k-2".to_vec());
    s.append(&[e.clone(), big.clone()]).expect("append");

    let raw = env.read_raw(&a);
    assert_eq!(raw.len(), 2);
    let m = &raw[0];
    assert_eq!(
        m.payload(),
        Some(&b"\x00binary\xffvalue"[..]),
        "the raw value"
    );
    assert_eq!(m.key(), Some(&b"k-1"[..]), "keyed by the original key");
    let names: Vec<String> = m
        .headers()
        .expect("headers")
        .iter()
        .map(|h| h.key.to_owned())
        .collect();
    assert_eq!(&names[..2], ["trace-id", "null"]);
    assert!(names.contains(&"dlq.id".to_owned()) && names.contains(&"dlq.error_class".to_owned()));
    assert_eq!(raw[1].key(), Some(&b"k-2"[..]));

    for store in [&s, &KafkaStore::open(cfg).expect("open")] {
        let back = store.get(&a, &e.letter.id).expect("get").expect("present");
        assert_eq!(back.letter.origin, Origin::Headers);
        assert_eq!(back.letter.payload, e.letter.payload);
        assert_eq!(back.letter.key, e.letter.key);
        assert_eq!(back.letter.headers, e.letter.headers);
        assert_eq!(back.letter.error_class, e.letter.error_class);
        assert_eq!(back.letter.replays, 2);
        assert_eq!(back.letter.replay_of, e.letter.replay_of);
        let back = store.get(&a, "big").expect("get").expect("present");
        assert_eq!(back.letter.payload, big.letter.payload);
        assert_eq!(back.letter.key, big.letter.key);
    }
    assert_eq!(s.append(&[e]).expect("append").duplicates, 1);
}

#[test]
fn without_transactions_the_contract_still_holds() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut cfg = env.config.clone();
    cfg.transactions = false;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    let big = vec![1u8; 2 * 1024 * 1024];
    let mut parked = entry(&a, "p", b"{}", Some(0));
    parked.status = Status::Parked;
    let r = s
        .append(&[
            entry(&a, "1", b"{}", Some(0)),
            entry(&a, "big", &big, Some(0)),
            parked,
        ])
        .expect("append");
    assert_eq!(r.appended, 3);
    assert_eq!(
        s.append(&[entry(&a, "1", b"{}", Some(0))])
            .expect("append")
            .duplicates,
        1
    );
    s.settle(&a, &["1".into()], Status::Replayed)
        .expect("settle");
    let fresh = KafkaStore::open(cfg).expect("open");
    let st = &fresh.stats().expect("stats")[0];
    assert_eq!((st.pending, st.replayed, st.parked), (1, 1, 1));
    assert_eq!(
        fresh
            .get(&a, "big")
            .expect("get")
            .expect("present")
            .letter
            .payload,
        big
    );
}

#[test]
fn a_failed_commit_leaves_nothing_behind() {
    // The DLQ topic accepts smaller records than the store believes, so one
    // record of the batch is refused by the broker: the transaction aborts
    // and none of the batch (appends, settlements, checkpoint) is visible.
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    env.create_topic_with(&a, 1, &[("max.message.bytes", "8192")]);
    let mut cfg = env.config.clone();
    cfg.max_message_bytes = 64 * 1024;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    s.append(&[entry(&a, "old", b"{}", Some(0))])
        .expect("append");
    let append = [
        entry(&a, "small", b"{}", Some(0)),
        entry(&a, "large", &vec![b'x'; 30_000], Some(0)),
    ];
    let settle = [Settle {
        dlq: a.clone(),
        id: "old".into(),
        outcome: Status::Replayed,
    }];
    let err = s
        .commit(Batch {
            append: &append,
            settle: &settle,
            checkpoint: Some(("cp", "1")),
            ..Batch::default()
        })
        .expect_err("the broker refuses the large record");
    assert!(!err.is_retriable(), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");

    for store in [&s, &KafkaStore::open(cfg).expect("open")] {
        assert!(store.get(&a, "small").expect("get").is_none());
        assert_eq!(store.checkpoint("cp").expect("cp"), None);
        let st = &store.stats().expect("stats")[0];
        assert_eq!((st.total, st.pending), (1, 1));
    }
    // The producer recovered: the next commit works.
    let r = s
        .commit(Batch {
            append: &append[..1],
            settle: &settle,
            checkpoint: Some(("cp", "2")),
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!((r.appended, r.settled), (1, 1));
    assert_eq!(s.checkpoint("cp").expect("cp").as_deref(), Some("2"));
    assert_stats_match_scan(&s);
}

#[test]
fn records_deleted_by_retention_leave_stats_scan_and_ledger_consistent() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut s = env.open();
    let entries: Vec<Entry> = (0..6)
        .map(|i| entry(&a, &format!("r{i}"), b"{}", Some(0)))
        .collect();
    // One record per commit: offsets 0, 2, 4, … (each commit adds a marker).
    for e in &entries {
        s.append(std::slice::from_ref(e)).expect("append");
    }
    s.settle(
        &a,
        &["r0".into(), "r1".into(), "r4".into()],
        Status::Replayed,
    )
    .expect("settle");
    let offsets: Vec<i64> = env.read_raw(&a).iter().map(|m| m.offset()).collect();
    assert_eq!(offsets.len(), 6);
    // Retention deletes r0, r1 and r2.
    env.delete_records(&a, 0, offsets[3]);
    let st = &s.stats().expect("stats")[0];
    assert_eq!((st.total, st.pending, st.replayed), (3, 2, 1));
    assert_stats_match_scan(&s);
    assert!(s.get(&a, "r1").expect("get").is_none());
    // The settlements are one segment entry (keyed by the topic's id), not
    // one entry per record; it stays while the segment holds records (a
    // segment's entry is deleted once retention passed its last offset).
    s.commit(Batch {
        checkpoint: Some(("cp", "x")),
        ..Batch::default()
    })
    .expect("commit");
    let topic_id = s.topic_id(&a).expect("describe").expect("an id");
    let ledger = env.read_raw(&env.config.ledger_topic);
    let keys: Vec<String> = ledger
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().expect("key")).into_owned())
        .collect();
    assert!(
        keys.contains(&format!("settled/{topic_id}/0/0")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with(&format!("{a}/"))),
        "no per-record entries: {keys:?}"
    );
    assert!(
        ledger.iter().all(|m| m.payload().is_some()),
        "nothing to delete yet"
    );
    let fresh = env.open();
    assert_eq!(fresh.stats().expect("stats"), s.stats().expect("stats"));
    // An id whose record expired may be appended again: a new record.
    let r = s.append(&entries[..1]).expect("append");
    assert_eq!(r.appended, 1);
    assert_eq!(
        s.get(&a, "r0").expect("get").expect("present").status,
        Status::Pending
    );
}

#[test]
fn invalid_dlq_names_are_refused_before_anything_is_written() {
    let Some(env) = Env::new() else { return };
    let mut s = env.open();
    for name in ["rss.events", "bad name", &env.config.ledger_topic.clone()] {
        let err = s
            .append(&[entry(name, "1", b"{}", Some(0))])
            .expect_err("refused");
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("cannot be a DLQ"), "{err}");
    }
    assert!(s.dlqs().expect("dlqs").is_empty());
    assert!(s.get("rss.events", "1").expect("get").is_none());
}

#[test]
fn an_unreachable_broker_is_a_retryable_error_and_leaks_no_secret() {
    // Needs no broker: nothing listens on port 1.
    const CANARY: &str = "canary-Pa55-unreachable";
    let mut cfg = KafkaConfig::new("127.0.0.1:1");
    cfg.timeout_ms = 1_000;
    cfg.options
        .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
    cfg.options.insert("sasl.mechanism".into(), "PLAIN".into());
    cfg.options.insert("sasl.username".into(), "dlq".into());
    cfg.set_sasl_password(Secret::new(CANARY));
    let started = Instant::now();
    let err = KafkaStore::open(cfg).expect_err("unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert!(err.is_retriable(), "{err}");
    assert!(matches!(
        err,
        StoreError::Backend {
            backend: "kafka",
            ..
        }
    ));
    let text = format!("{err} {err:?}");
    assert!(!text.contains(CANARY), "{text}");
}

/// A store indexes its own commits and moves its read position past them
/// instead of reading them back; this checks that it still sees every
/// record and settlement another store writes in between, transactional
/// (commit markers take offsets) or not.
/// A scan of offsets nobody counted yet counts them as it reads: a later
/// copy of a record is left out of the pages, and what it found goes to
/// the ledger, so that a fresh store's stats agree without reading again.
#[test]
fn a_scan_counts_what_it_reads_and_the_next_store_uses_that_count() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("inline");
    let mut writer = env.open();
    let entries: Vec<Entry> = (0..6)
        .map(|i| entry(&a, &format!("r{i}"), b"{}", Some(0)))
        .collect();
    writer.append(&entries).expect("append");
    let first = writer.get(&a, "r2").expect("get").expect("present");
    let enc = dlq_core::envelope::encode(&first.letter, &Default::default()).expect("encode");
    env.produce_in(&a, Some(0), &[(None, &enc.bytes, Vec::new())]);

    let reader = env.open();
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = reader
            .scan(&Selection::pending(Some(&a)), cursor.as_ref(), 2)
            .expect("scan");
        ids.extend(page.records.into_iter().map(|r| r.letter.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    assert_eq!(ids, want, "the copy of r2 is left out");
    // The scan wrote what it counted: the ledger holds count entries.
    let counted = env
        .read_raw(&env.config.ledger_topic)
        .iter()
        .filter(|m| m.key().is_some_and(|k| k.starts_with(b"counted/")))
        .count();
    assert!(counted > 0, "no count entry in the ledger");
    let st = &env.open().stats().expect("stats")[0];
    assert_eq!((st.total, st.pending), (6, 6));
}

/// A scan that goes on where an earlier one stopped (the reader is still
/// positioned there, with what it fetched ahead) still sees the records
/// written since: the end of the partition it had reached then is not the
/// end now.
#[test]
fn a_scan_that_goes_on_where_another_stopped_sees_records_written_since() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("goes-on");
    let mut s = env.open();
    let mut other = env.open();
    let first: Vec<Entry> = (0..10)
        .map(|i| entry(&a, &format!("r{i}"), b"{}", Some(0)))
        .collect();
    s.append(&first).expect("append");
    let page = s
        .scan(&Selection::pending(Some(&a)), None, 3)
        .expect("scan");
    assert_eq!(page.records.len(), 3);
    // Settled, so that the next scan's first wanted offset is where this
    // one stopped.
    let ids: Vec<String> = page.records.iter().map(|r| r.letter.id.clone()).collect();
    s.settle(&a, &ids, Status::Replayed).expect("settle");
    let more: Vec<Entry> = (10..15)
        .map(|i| entry(&a, &format!("r{i}"), b"{}", Some(0)))
        .collect();
    other.append(&more).expect("append");
    let pending = all(&s, &Selection::pending(Some(&a)));
    let got: Vec<String> = pending.iter().map(|r| r.letter.id.clone()).collect();
    let want: Vec<String> = (3..15).map(|i| format!("r{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn stores_taking_turns_see_each_others_writes_and_skip_only_their_own() {
    let Some(env) = Env::new() else { return };
    for transactions in [true, false] {
        let a = env.dlq(if transactions { "turns-tx" } else { "turns" });
        let mut cfg = env.config.clone();
        cfg.transactions = transactions;
        cfg.default_partitions = 2;
        let mut one = KafkaStore::open(cfg.clone()).expect("open");
        let mut two = KafkaStore::open(cfg.clone()).expect("open");
        for round in 0..6 {
            let ids: Vec<String> = (0..4).map(|i| format!("r{round}-{i}")).collect();
            let entries: Vec<Entry> = ids
                .iter()
                .map(|id| entry(&a, id, b"{}", Some(round % 2)))
                .collect();
            // Twice in a row by the same store, then the other: both the
            // contiguous case and the interleaved one.
            let (writer, other) = if round % 3 == 2 {
                (&mut two, &mut one)
            } else {
                (&mut one, &mut two)
            };
            writer.append(&entries).expect("append");
            if round > 0 {
                let previous = vec![format!("r{}-0", round - 1), format!("r{}-3", round - 1)];
                writer
                    .settle(&a, &previous, Status::Replayed)
                    .expect("settle");
            }
            let fresh = KafkaStore::open(cfg.clone()).expect("open");
            let expected = fresh.stats().expect("stats");
            assert_eq!(
                writer.stats().expect("stats"),
                expected,
                "round {round}, transactions {transactions}: the writer"
            );
            assert_eq!(
                other.stats().expect("stats"),
                expected,
                "round {round}, transactions {transactions}: the other store"
            );
            assert_stats_match_scan(writer);
            assert_stats_match_scan(other);
        }
        let stats = one.stats().expect("stats");
        let s = stats.iter().find(|s| s.dlq == a).expect("dlq");
        assert_eq!((s.total, s.replayed), (24, 10));
    }
}

/// The replayer overlaps the commits with the next pages' scans and waits
/// for the markers only at the end: every record still arrives once, is
/// settled once, and a fresh store agrees at once.
#[test]
fn pipelined_replay_delivers_and_settles_every_record_once() {
    let Some(env) = Env::new() else { return };
    for transactions in [true, false] {
        let target = env.dlq(if transactions { "out-tx" } else { "out" });
        env.create_topic(&target, 2);
        let a = env.dlq(if transactions { "re-tx" } else { "re" });
        let mut cfg = env.config.clone();
        cfg.transactions = transactions;
        cfg.default_partitions = 2;
        let mut store = KafkaStore::open(cfg.clone()).expect("open");
        let entries: Vec<Entry> = (0..45)
            .map(|i| {
                entry(
                    &a,
                    &format!("r{i}"),
                    format!("{{\"i\":{i}}}").as_bytes(),
                    Some(i % 2),
                )
            })
            .collect();
        store.append(&entries).expect("append");
        let mut options = dlq_core::replay::ReplayOptions::for_dlq(&a);
        options.batch_size = 7;
        let mut pages = 0;
        let mut tick = |_: &dlq_core::replay::ReplayReport| pages += 1;
        let report = dlq_core::replay::run_to_store(
            &mut store,
            &to_topic(&target),
            &options,
            Some(&mut tick),
        )
        .expect("replay");
        assert_eq!((report.selected, report.replayed), (45, 45));
        // Pages sent together share a commit (a transaction within 100 ms,
        // or a ledger write of what was acknowledged together).
        assert!((1..=7).contains(&pages), "{pages} commits");
        let fresh = KafkaStore::open(cfg.clone()).expect("open");
        for s in [&store, &fresh] {
            let stats = s.stats().expect("stats");
            let st = stats.iter().find(|x| x.dlq == a).expect("dlq");
            assert_eq!(
                (st.pending, st.replayed),
                (0, 45),
                "transactions {transactions}"
            );
        }
        let mut values = fresh.read_values(&target).expect("read");
        values.sort();
        let mut expected: Vec<Vec<u8>> = (0..45)
            .map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect();
        expected.sort();
        assert_eq!(values, expected, "each record once");
        let again = dlq_core::replay::run_to_store(&mut store, &to_topic(&target), &options, None)
            .expect("replay again");
        assert_eq!(again.selected, 0);
    }
}

/// A target that refuses an output (too large for its `max.message.bytes`)
/// loses nothing: the replay fails with the target's error, the refused
/// record stays pending, and what the target holds is exactly what the
/// ledger says was replayed, at least once and exactly once.
#[test]
fn replay_to_a_target_that_refuses_a_record_leaves_it_pending() {
    let Some(env) = Env::new() else { return };
    for transactions in [false, true] {
        let target = env.dlq(if transactions { "small-tx" } else { "small" });
        env.create_topic_with(&target, 1, &[("max.message.bytes", "4096")]);
        let a = env.dlq(if transactions { "big-tx" } else { "big" });
        let mut cfg = env.config.clone();
        cfg.transactions = transactions;
        let mut store = KafkaStore::open(cfg.clone()).expect("open");
        let payload = |i: usize| -> Vec<u8> {
            if i == 10 {
                vec![b'x'; 16_000]
            } else {
                format!("{{\"i\":{i}}}").into_bytes()
            }
        };
        let entries: Vec<Entry> = (0..30)
            .map(|i| entry(&a, &format!("r{i}"), &payload(i), Some(0)))
            .collect();
        store.append(&entries).expect("append");
        let mut options = dlq_core::replay::ReplayOptions::for_dlq(&a);
        options.batch_size = 4;
        let err = dlq_core::replay::run_to_store(&mut store, &to_topic(&target), &options, None)
            .expect_err("the oversized record is refused");
        match &err {
            // In a transaction the refused output fails the store's commit
            // of the page (outputs and settlements abort together); at
            // least once, the store reports the output it could not
            // deliver once what was delivered is settled.
            dlq_core::replay::ReplayError::Store(e) => {
                assert!(
                    e.to_string().contains(&format!("kafka:{target}"))
                        || (transactions && e.to_string().contains(&target)),
                    "transactions {transactions}: {e}"
                );
            }
            other => panic!("transactions {transactions}: not a store error: {other}"),
        }
        let fresh = KafkaStore::open(cfg.clone()).expect("open");
        let mut replayed: Vec<Vec<u8>> = Vec::new();
        let mut pending = 0;
        for i in 0..30 {
            let rec = fresh.get(&a, &format!("r{i}")).expect("get").expect("kept");
            assert_eq!(rec.letter.payload, payload(i), "r{i}: bytes intact");
            match rec.status {
                Status::Replayed => replayed.push(payload(i)),
                Status::Pending => pending += 1,
                other => panic!("r{i}: {other:?}"),
            }
        }
        assert_eq!(
            fresh.get(&a, "r10").expect("get").expect("kept").status,
            Status::Pending,
            "transactions {transactions}: the refused record is pending"
        );
        assert_eq!(replayed.len() + pending, 30);
        let mut delivered = fresh.read_values(&target).expect("read");
        delivered.sort();
        replayed.sort();
        assert_eq!(
            delivered, replayed,
            "transactions {transactions}: the target holds exactly the records settled as replayed"
        );
    }
}

/// A scan gives the same records in pages of any size, from a fresh store
/// or the one that wrote them: ids, order, statuses, bytes, claim-checked
/// payloads, foreign records, duplicates left out.
#[test]
fn a_scan_gives_the_same_records_in_pages_of_any_size() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("cached");
    let mut cfg = env.config.clone();
    cfg.max_message_bytes = 16 * 1024;
    cfg.default_partitions = 3;
    let mut writer = KafkaStore::open(cfg.clone()).expect("open");
    let big: Vec<u8> = (0..40_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut entries: Vec<Entry> = (0..40)
        .map(|i| {
            let payload = match i % 4 {
                0 => format!("{{\"i\":{i}}}").into_bytes(),
                1 => vec![0xff, 0x00, i as u8, 0x80],
                2 => format!("plain text {i}").into_bytes(),
                _ => big[..(i as usize * 300)].to_vec(),
            };
            let mut e = entry(&a, &format!("r{i}"), &payload, Some(i % 3));
            e.letter.headers = vec![header("trace-id", format!("t-{i}").as_bytes())];
            e.letter.key = Some(format!("k{i}").into_bytes());
            e
        })
        .collect();
    entries.push(entry(&a, "huge", &big, Some(1)));
    writer.append(&entries).expect("append");
    // A second copy of an id (a duplicate the scan leaves out), a record
    // another system wrote, and some records settled.
    let mut copy = entry(&a, "r5", b"second copy", Some(2));
    copy.letter.source.partition = Some(2);
    env.produce(
        &a,
        &[(
            None,
            b"{\"x\":1}",
            vec![header("__connect.errors.topic", b"t")],
        )],
    );
    let enc = dlq_core::envelope::encode(&copy.letter, &Default::default()).expect("encode");
    // In the first copy's partition, where dlq's writers put every copy.
    env.produce_in(&a, Some(2), &[(None, &enc.bytes, Vec::new())]);
    let settled: Vec<String> = (0..40).step_by(3).map(|i| format!("r{i}")).collect();
    writer
        .settle(&a, &settled, Status::Replayed)
        .expect("settle");

    let scan_in_pages = |store: &KafkaStore, selection: &Selection, size: usize| {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.scan(selection, cursor.as_ref(), size).expect("scan");
            assert!(page.records.len() <= size);
            out.extend(page.records);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    };
    for selection in [
        every_status(Some(&a)),
        Selection::pending(Some(&a)),
        every_status(None),
    ] {
        let whole = scan_in_pages(
            &KafkaStore::open(cfg.clone()).expect("open"),
            &selection,
            1000,
        );
        assert!(whole.len() >= 28, "{} records", whole.len());
        assert!(whole.iter().any(|r| r.letter.payload == big));
        let r5: Vec<_> = whole.iter().filter(|r| r.letter.id == "r5").collect();
        assert!(r5.len() <= 1, "the second copy is left out");
        assert!(r5.iter().all(|r| r.letter.payload != b"second copy"));
        for size in [1, 7] {
            for store in [&writer, &KafkaStore::open(cfg.clone()).expect("open")] {
                let paged = scan_in_pages(store, &selection, size);
                assert_eq!(paged.len(), whole.len(), "pages of {size}");
                for (c, r) in paged.iter().zip(&whole) {
                    assert_eq!(c, r, "pages of {size}");
                }
            }
        }
    }
}

/// A record as another system writes it, down to what rdkafka's own API
/// cannot write: a null value, a header name that is not UTF-8, a chosen
/// timestamp.
struct Foreign<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    timestamp_ms: Option<i64>,
}

impl Env {
    fn produce_foreign(&self, topic: &str, records: &[Foreign<'_>]) {
        let producer: BaseProducer = self
            .client()
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        for f in records {
            let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .headers(dlq_kafka_ffi::owned_headers(f.headers.iter().copied()));
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
        producer.flush(Duration::from_secs(10)).expect("flush");
    }
}

fn foreign<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Foreign<'a> {
    Foreign {
        key,
        value,
        headers: Vec::new(),
        timestamp_ms: None,
    }
}

#[test]
fn a_tombstone_in_a_dlq_topic_reads_as_a_null_payload_with_its_key() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("compacted.prices");
    env.create_topic(&a, 1);
    env.produce_foreign(
        &a,
        &[
            foreign(Some(b"k-deleted"), None),
            foreign(Some(b"k-empty"), Some(b"")),
        ],
    );
    for store in [&env.open(), &env.open()] {
        let records = all(store, &Selection::pending(Some(&a)));
        assert_eq!(records.len(), 2);
        assert!(records[0].letter.null_payload, "a tombstone stays null");
        assert_eq!(records[0].letter.key.as_deref(), Some(&b"k-deleted"[..]));
        assert!(
            !records[1].letter.null_payload,
            "an empty value stays empty"
        );
        assert!(records[1].letter.payload.is_empty());
    }
}

#[test]
fn a_null_payload_written_in_the_headers_format_is_a_tombstone_and_reads_back_null() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    let mut cfg = env.config.clone();
    cfg.format = Format::Headers;
    let mut s = KafkaStore::open(cfg.clone()).expect("open");
    let mut e = entry(&a, "kafka:prices:0:9", b"", Some(0));
    e.letter.null_payload = true;
    e.letter.key = Some(b"k".to_vec());
    s.append(&[e.clone()]).expect("append");
    let raw = env.read_raw(&a);
    assert_eq!(raw[0].payload(), None, "written as a tombstone");
    let back = KafkaStore::open(cfg)
        .expect("open")
        .get(&a, &e.letter.id)
        .expect("get")
        .expect("present");
    assert!(back.letter.null_payload);
    assert_eq!(back.letter.key, e.letter.key);
}

#[test]
fn a_raw_value_shaped_like_an_envelope_keeps_its_bytes() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    env.create_topic(&a, 1);
    let values: [&[u8]; 3] = [
        br#"{"dlq": {"v": 1}}"#,
        br#"{"dlq": {"v": 1, "id": "x"}, "original_record": {"a": 1}, "error": "e"}"#,
        br#"{"original_record": 1, "error": ["not", "text"]}"#,
    ];
    let records: Vec<Foreign<'_>> = values.iter().map(|v| foreign(None, Some(v))).collect();
    env.produce_foreign(&a, &records);
    let back = all(&env.open(), &Selection::pending(Some(&a)));
    assert_eq!(back.len(), 3);
    for (r, v) in back.iter().zip(values) {
        assert_eq!(r.letter.origin, Origin::Raw);
        assert_eq!(r.letter.payload, v, "byte for byte");
    }
}

#[test]
fn raw_records_fail_at_their_kafka_timestamp_on_every_read() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    env.create_topic(&a, 1);
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-29T07:00:00.123Z")
        .expect("ts")
        .to_utc();
    let mut r = foreign(None, Some(b"not an envelope"));
    r.timestamp_ms = Some(at.timestamp_millis());
    let seed = br#"{"original_record": {"a": 1}, "error": "boom", "timestamp": "2026-11-29T07:00:00.123456Z"}"#;
    env.produce_foreign(&a, &[r, foreign(None, Some(seed))]);
    for _ in 0..2 {
        let back = all(&env.open(), &Selection::pending(Some(&a)));
        assert_eq!(back[0].letter.failed_at, at);
        assert_eq!(back[0].letter.first_failed_at, at);
        assert_eq!(
            dlq_core::envelope::format_timestamp(&back[1].letter.first_failed_at),
            "2026-11-29T07:00:00.123456Z",
            "the seed's timestamp as written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // `--since` selects by that time, not by the time of the read.
    let mut since = Selection::pending(Some(&a));
    since.filter =
        Some(Filter::parse(r#"first_failed_at < "2026-11-30T00:00:00Z""#).expect("filter"));
    assert_eq!(all(&env.open(), &since).len(), 2);
}

#[test]
fn a_header_name_that_is_not_utf8_is_read_byte_for_byte() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("a");
    env.create_topic(&a, 1);
    let mut r = foreign(Some(b"k"), Some(b"{}"));
    r.headers = vec![
        (&b"\xff\xfe-trace"[..], Some(&b"t-1"[..])),
        (b"plain", None),
    ];
    env.produce_foreign(&a, &[r]);
    let back = all(&env.open(), &Selection::pending(Some(&a)));
    let headers = &back[0].letter.headers;
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].name_bytes().as_ref(), b"\xff\xfe-trace");
    assert_eq!(headers[0].value.as_deref(), Some(&b"t-1"[..]));
    assert_eq!(
        headers[1],
        Header {
            name: "plain".into(),
            value: None
        }
    );
}

#[test]
fn raw_records_go_back_to_the_topic_their_dlq_is_named_after_with_the_stores_prefix() {
    let Some(env) = Env::new() else { return };
    // Env's stores use a prefix of their own (`dlqt-….`), not `dlq.`.
    assert!(!env.prefix.starts_with("dlq."));
    let a = env.dlq("rss.events");
    env.create_topic(&a, 1);
    env.produce_foreign(&a, &[foreign(None, Some(b"raw"))]);
    let store = env.open();
    let back = all(&store, &Selection::pending(Some(&a)));
    assert_eq!(back[0].letter.source.topic.as_deref(), Some("rss.events"));
    assert_eq!(store.source_topic_of(&a), Some("rss.events"));
    assert_eq!(store.source_topic_of("dlq.rss.events"), None);
    assert_eq!(store.dlq_name("rss.events"), a);
}

/// Replay outputs to `topic` of the store's cluster.
fn to_topic(topic: &str) -> dlq_core::replay::StoreOutputs {
    dlq_core::replay::StoreOutputs::kafka(Some(topic))
}

/// A topic deleted and created again under its name has a new id (what the
/// settlement state is keyed by), and a missing topic has none.
#[test]
fn a_recreated_topic_has_a_new_id() {
    let Some(env) = Env::new() else { return };
    let store = env.open();
    let topic = env.dlq("recreated");
    assert_eq!(store.topic_id(&topic).expect("describe"), None);
    env.create_topic(&topic, 2);
    let first = store.topic_id(&topic).expect("describe").expect("an id");
    assert_eq!(
        store.topic_id(&topic).expect("describe").as_deref(),
        Some(first.as_str()),
        "stable"
    );
    dlq_testkit::kafka::delete_topics(&env.bootstrap, &[&topic]);
    // The deletion completes in the background: wait until the name is free.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.topic_id(&topic).expect("describe").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the topic was not deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    env.create_topic(&topic, 2);
    let second = store.topic_id(&topic).expect("describe").expect("an id");
    assert_ne!(first, second, "a new topic, a new id");
    assert!(!first.is_empty() && first.len() >= 22, "{first}");
}

/// A ledger written before settlement segments (one entry per settled
/// record, keyed `<dlq>/<id>`) is read as it was, a settlement made since
/// (a segment) takes precedence over it, and `migrate_ledger` rewrites the
/// entries as segments and deletes them, with every status unchanged.
#[test]
fn a_ledger_of_per_record_entries_is_read_and_migrated_to_segments() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("upgrade");
    let mut store = env.open();
    let entries: Vec<Entry> = (0..5)
        .map(|i| {
            entry(
                &a,
                &format!("r{i}"),
                format!("{{\"i\":{i}}}").as_bytes(),
                Some(0),
            )
        })
        .collect();
    store.append(&entries).expect("append");
    // Where each record is: appended in order into partition 0.
    let offsets: Vec<i64> = env.read_raw(&a).iter().map(|m| m.offset()).collect();
    assert_eq!(offsets.len(), 5);
    // Entries exactly as the former version wrote them.
    let legacy = |id: &str, outcome: &str, offset: i64| -> (String, String) {
        (
            format!("{a}/{id}"),
            format!(
                r#"{{"dlq":"{a}","id":"{id}","outcome":"{outcome}","dlq_partition":0,"dlq_offset":{offset},"at":"2026-11-30T10:00:00Z"}}"#
            ),
        )
    };
    let producer: BaseProducer = env.client().create().expect("producer");
    for (key, value) in [
        legacy("r0", "replayed", offsets[0]),
        legacy("r1", "parked", offsets[1]),
        legacy("r2", "discarded", offsets[2]),
    ] {
        producer
            .send(
                BaseRecord::to(&env.config.ledger_topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let status = |s: &KafkaStore, id: &str| s.get(&a, id).expect("get").expect("present").status;
    let fresh = env.open();
    assert_eq!(status(&fresh, "r0"), Status::Replayed);
    assert_eq!(status(&fresh, "r1"), Status::Parked);
    assert_eq!(status(&fresh, "r2"), Status::Discarded);
    let st = fresh.stats().expect("stats");
    let st = st.iter().find(|s| s.dlq == a).expect("dlq");
    assert_eq!(
        (st.pending, st.replayed, st.parked, st.discarded),
        (2, 1, 1, 1)
    );
    assert_stats_match_scan(&fresh);
    drop(fresh);

    // A parked record replayed now: its segment says so, over the entry.
    let mut now = env.open();
    let r = now
        .settle(&a, &["r1".to_owned()], Status::Replayed)
        .expect("settle");
    assert_eq!(r.settled, 1);
    let migrated = now.migrate_ledger().expect("migrate");
    assert_eq!(
        (migrated.converted, migrated.superseded, migrated.dropped),
        (2, 1, 0),
        "{migrated:?}"
    );
    assert!(migrated.segments >= 1);
    let again = now.migrate_ledger().expect("migrate again");
    assert_eq!(
        again,
        dlq_kafka::MigrationReport::default(),
        "nothing left to do"
    );

    let fresh = env.open();
    for (id, want) in [
        ("r0", Status::Replayed),
        ("r1", Status::Replayed),
        ("r2", Status::Discarded),
        ("r3", Status::Pending),
        ("r4", Status::Pending),
    ] {
        assert_eq!(status(&fresh, id), want, "{id}");
    }
    assert_stats_match_scan(&fresh);
    // The former entries are deleted: the latest value of each is null.
    let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    for m in env.read_raw(&env.config.ledger_topic) {
        latest.insert(
            m.key().expect("key").to_vec(),
            m.payload().map(<[u8]>::to_vec),
        );
    }
    for id in ["r0", "r1", "r2"] {
        assert_eq!(latest[format!("{a}/{id}").as_bytes()], None, "{id}");
    }
}

/// A DLQ topic deleted and created again under its name does not inherit
/// the settlements of the topic it replaces (they are keyed by topic id),
/// whether the store that settled them is still running or opened afresh.
#[test]
fn a_recreated_dlq_topic_starts_with_nothing_settled() {
    let Some(env) = Env::new() else { return };
    let a = env.dlq("again");
    env.create_topic(&a, 1);
    let mut store = env.open();
    let old: Vec<Entry> = (0..3)
        .map(|i| entry(&a, &format!("old{i}"), b"{}", Some(0)))
        .collect();
    store.append(&old).expect("append");
    store
        .settle(
            &a,
            &["old0".to_owned(), "old1".to_owned()],
            Status::Replayed,
        )
        .expect("settle");
    dlq_testkit::kafka::delete_topics(&env.bootstrap, &[&a]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.topic_id(&a).expect("describe").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the topic was not deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    env.create_topic(&a, 1);
    // The same records again (a re-import), at the offsets they had: new
    // records of a new topic, not the ones settled before.
    let r = store.append(&old).expect("append");
    assert_eq!(r.appended, 3);
    let fresh = env.open();
    for s in [&store, &fresh] {
        let stats = s.stats().expect("stats");
        let st = stats.iter().find(|x| x.dlq == a).expect("dlq");
        assert_eq!((st.total, st.pending, st.replayed), (3, 3, 0), "{st:?}");
        for i in 0..3 {
            let rec = s
                .get(&a, &format!("old{i}"))
                .expect("get")
                .expect("present");
            assert_eq!(rec.status, Status::Pending, "old{i}");
        }
        assert_stats_match_scan(s);
    }
}
