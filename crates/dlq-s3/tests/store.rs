//! The S3 store's own behaviour beyond the shared contract, against the
//! real S3-compatible server (`DLQ_S3_ENDPOINT`): the bucket layout that
//! query engines read, several store instances on one prefix, snapshots,
//! claim checks, and precise errors for what cannot be read.

use dlq_core::conformance::entry;
use dlq_core::store::{DlqStore, Selection, Status};
use dlq_s3::{S3Config, S3Store};
use std::io::Read as _;

struct Env {
    endpoint: String,
    config: S3Config,
}

impl Env {
    fn new(name: &str) -> Option<Env> {
        let endpoint = dlq_testkit::s3::endpoint()?;
        let mut config = S3Config::new(dlq_testkit::s3::bucket(&endpoint));
        config.prefix = format!("store-tests/{}", dlq_testkit::s3::prefix(name));
        config.endpoint = Some(endpoint.clone());
        Some(Env { endpoint, config })
    }

    fn open(&self) -> S3Store {
        S3Store::open_with_sdk_config(self.config.clone(), dlq_testkit::s3::sdk_config())
            .expect("open")
    }

    fn keys(&self) -> Vec<String> {
        dlq_testkit::s3::list_keys(&self.endpoint, &self.config.bucket, &self.config.prefix)
    }

    fn object(&self, key: &str) -> Vec<u8> {
        dlq_testkit::s3::get_object(&self.endpoint, &self.config.bucket, key)
    }

    fn put(&self, key: &str, body: &[u8]) {
        dlq_testkit::s3::put_object(&self.endpoint, &self.config.bucket, key, body.to_vec());
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("valid gzip of UTF-8 text");
    text
}

fn pending_ids(store: &S3Store, dlq: &str) -> Vec<String> {
    store
        .scan_all(&Selection::pending(Some(dlq)), 100)
        .map(|r| r.expect("scan").letter.id)
        .collect()
}

#[test]
fn each_commit_writes_one_gzip_ndjson_object_per_dlq_under_hive_partitions() {
    let Some(env) = Env::new("layout") else {
        return;
    };
    let mut s = env.open();
    s.append(&[
        entry("dlq.rss.events", "a1", b"{\"x\":1}", 0),
        entry("dlq.rss.events", "a2", b"{\"x\":2}", 1),
        entry("dlq.prices", "p1", b"not json", 0),
    ])
    .expect("append");
    s.append(&[entry("dlq.rss.events", "a3", b"{\"x\":3}", 0)])
        .expect("append");
    let data: Vec<String> = env
        .keys()
        .into_iter()
        .filter(|k| k.ends_with(".ndjson.gz"))
        .collect();
    assert_eq!(data.len(), 3, "two commits, three DLQ objects: {data:?}");
    let hive = regex_free_hive_check(&env.config.prefix);
    for key in &data {
        assert!(hive(key), "not a Hive-partitioned key: {key}");
    }
    let rss: Vec<&String> = data
        .iter()
        .filter(|k| k.contains("/dlq=dlq.rss.events/"))
        .collect();
    assert_eq!(rss.len(), 2);
    let first = gunzip(&env.object(rss[0]));
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "one envelope per line: {first}");
    for (line, id) in lines.iter().zip(["a1", "a2"]) {
        let json: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(json["dlq"]["id"], id, "{line}");
        let letter = dlq_core::envelope::decode(line.as_bytes(), "fallback");
        assert_eq!(letter.id, id);
        assert_eq!(letter.error_class, "conformance.bad");
    }
    let prices = data
        .iter()
        .find(|k| k.contains("/dlq=dlq.prices/"))
        .expect("prices object");
    let letter = dlq_core::envelope::decode(gunzip(&env.object(prices)).trim_end().as_bytes(), "f");
    assert_eq!(letter.payload, b"not json");
}

/// `PREFIX/dlq=<name>/dt=YYYY-MM-DD/hour=HH/<file>.ndjson.gz`.
fn regex_free_hive_check(prefix: &str) -> impl Fn(&str) -> bool + '_ {
    move |key: &str| {
        let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        parts.len() == 4
            && parts[0].starts_with("dlq=")
            && parts[1].len() == "dt=2026-12-06".len()
            && parts[1].starts_with("dt=")
            && chrono::NaiveDate::parse_from_str(&parts[1][3..], "%Y-%m-%d").is_ok()
            && parts[2].len() == "hour=04".len()
            && parts[2][5..].parse::<u32>().is_ok_and(|h| h < 24)
            && parts[3].ends_with(".ndjson.gz")
    }
}

#[test]
fn two_stores_on_one_prefix_see_each_others_commits_and_never_duplicate_an_id() {
    let Some(env) = Env::new("two-writers") else {
        return;
    };
    let (mut a, mut b) = (env.open(), env.open());
    a.append(&[entry("dlq.shared", "1", b"{}", 0)]).expect("a");
    // b opened before a's commit: it reads the log before it writes.
    let r = b
        .append(&[
            entry("dlq.shared", "1", b"{\"b\":1}", 0),
            entry("dlq.shared", "2", b"{}", 0),
        ])
        .expect("b");
    assert_eq!((r.appended, r.duplicates), (1, 1), "b sees a's record");
    let r = a
        .settle("dlq.shared", &["2".into()], Status::Replayed)
        .expect("a settles b's");
    assert_eq!(r.settled, 1);
    let r = b
        .settle("dlq.shared", &["2".into()], Status::Discarded)
        .expect("b");
    assert_eq!(r.settled, 0, "b sees that a settled it");
    assert_eq!(pending_ids(&b, "dlq.shared"), ["1"]);
    assert_eq!(
        b.get("dlq.shared", "1")
            .expect("get")
            .expect("there")
            .letter
            .payload,
        b"{}",
        "the first write wins across writers"
    );
    let fresh = env.open();
    let st = fresh.stats().expect("stats");
    assert_eq!((st[0].total, st[0].pending, st[0].replayed), (2, 1, 1));
}

#[test]
fn a_data_object_no_log_entry_names_is_never_read() {
    let Some(env) = Env::new("orphan") else {
        return;
    };
    let mut s = env.open();
    s.append(&[entry("dlq.o", "kept", b"{}", 0)])
        .expect("append");
    // What a writer killed between its data object and its log entry leaves.
    let line = dlq_core::envelope::encode(
        &entry("dlq.o", "orphan", b"{}", 0).letter,
        &dlq_core::envelope::EncodeOptions::default(),
    )
    .expect("encode")
    .bytes;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &line).expect("gzip");
    let orphan = format!(
        "{}/dlq=dlq.o/dt=2026-01-01/hour=00/00000000000000000099-dead.ndjson.gz",
        env.config.prefix
    );
    env.put(&orphan, &gz.finish().expect("gzip"));
    let s = env.open();
    assert_eq!(pending_ids(&s, "dlq.o"), ["kept"]);
    assert!(s.get("dlq.o", "orphan").expect("get").is_none());
    assert_eq!(s.stats().expect("stats")[0].total, 1);
}

#[test]
fn reopening_reads_the_newest_snapshot_and_the_log_after_it() {
    let Some(mut env) = Env::new("snapshots") else {
        return;
    };
    env.config.snapshot_every = 3;
    let mut s = env.open();
    for i in 0..7 {
        s.append(&[entry("dlq.snap", &format!("r{i}"), b"{}", 0)])
            .expect("append");
    }
    s.settle("dlq.snap", &["r0".into()], Status::Discarded)
        .expect("settle");
    let keys = env.keys();
    let snapshots: Vec<&String> = keys.iter().filter(|k| k.contains("/_dlq_state/")).collect();
    assert_eq!(snapshots.len(), 2, "versions 3 and 6: {snapshots:?}");
    let hint = keys
        .iter()
        .find(|k| k.ends_with("/_dlq_log/_last_snapshot"))
        .expect("a hint");
    assert_eq!(env.object(hint), b"6");
    let s = env.open();
    assert_eq!(
        pending_ids(&s, "dlq.snap"),
        ["r1", "r2", "r3", "r4", "r5", "r6"]
    );
    // A hint whose snapshot is gone: the log alone still holds everything.
    env.put(hint, b"42");
    let s = env.open();
    assert_eq!(pending_ids(&s, "dlq.snap").len(), 6);
    assert_eq!(
        s.get("dlq.snap", "r0").expect("get").expect("there").status,
        Status::Discarded
    );
}

#[test]
fn a_payload_over_the_envelope_limit_is_claim_checked_to_a_blob_and_restored() {
    let Some(env) = Env::new("claims") else {
        return;
    };
    let mut s = env.open();
    let big: Vec<u8> = format!("{{\"blob\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    s.append(&[entry("dlq.big", "big", &big, 0)])
        .expect("append");
    let blobs: Vec<String> = env
        .keys()
        .into_iter()
        .filter(|k| k.contains("/_dlq_blobs/"))
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let s = env.open();
    assert_eq!(
        s.get("dlq.big", "big")
            .expect("get")
            .expect("there")
            .letter
            .payload,
        big
    );
}

#[test]
fn stats_need_no_data_object_and_a_corrupt_one_is_a_precise_error() {
    let Some(env) = Env::new("corrupt") else {
        return;
    };
    let mut s = env.open();
    s.append(&[entry("dlq.c", "1", b"{}", 3)]).expect("append");
    let data = env
        .keys()
        .into_iter()
        .find(|k| k.ends_with(".ndjson.gz"))
        .expect("data object");
    env.put(&data, b"this is not gzip");
    let s = env.open();
    let st = s.stats().expect("stats read the log, not the data");
    assert_eq!((st[0].pending, st[0].partitions[0].partition), (1, 3));
    let err = s.get("dlq.c", "1").expect_err("corrupt object").to_string();
    assert!(
        err.contains("not valid gzip") && err.contains(&data),
        "{err}"
    );
}

#[test]
fn a_missing_bucket_is_named_in_the_error() {
    let Some(env) = Env::new("no-bucket") else {
        return;
    };
    let mut config = env.config.clone();
    config.bucket = "dlq-no-such-bucket".into();
    let err = S3Store::open_with_sdk_config(config, dlq_testkit::s3::sdk_config())
        .expect_err("no bucket")
        .to_string();
    assert!(
        err.contains("dlq-no-such-bucket") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn the_server_of_the_tests_is_found_not_to_enforce_conditional_writes() {
    // S3Proxy accepts If-None-Match but overwrites; the store must know,
    // so that it checks for a log entry before writing it (docs/aws.md).
    let Some(env) = Env::new("probe") else { return };
    assert_eq!(
        env.open().conditional_writes(),
        dlq_s3::ConditionalWrites::Ignored
    );
    assert!(
        !env.keys().iter().any(|k| k.contains("_probe-")),
        "the probe object is removed"
    );
}

#[test]
fn a_store_can_be_used_and_dropped_inside_another_async_runtime() {
    // `dlq serve` drops its store in async code; Tokio forbids blocking
    // on a runtime's shutdown there.
    let Some(env) = Env::new("in-async") else {
        return;
    };
    let mut store = env.open();
    store
        .append(&[entry("dlq.a", "1", b"{}", 0)])
        .expect("append");
    let outer = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    outer.block_on(async move {
        assert_eq!(store.stats().expect("stats")[0].pending, 1);
        drop(store);
    });
}

#[test]
fn a_cursor_from_another_store_instance_resumes_its_scan() {
    // Cursors are positions in the log's order: `dlq serve` restarted, or a
    // second instance, continues a scan another one began.
    let Some(env) = Env::new("cursor") else {
        return;
    };
    let stale = env.open();
    let mut writer = env.open();
    writer
        .append(&[
            entry("dlq.c", "1", b"{}", 0),
            entry("dlq.c", "2", b"{}", 0),
            entry("dlq.c", "3", b"{}", 0),
        ])
        .expect("append");
    let sel = Selection::pending(Some("dlq.c"));
    let first = writer.scan(&sel, None, 2).expect("first page");
    let cursor = first.next.expect("more to come");
    let rest = stale.scan(&sel, Some(&cursor), 2).expect("the rest");
    let ids: Vec<String> = rest.records.iter().map(|r| r.letter.id.clone()).collect();
    assert_eq!((ids, rest.next), (vec!["3".to_owned()], None));
}
