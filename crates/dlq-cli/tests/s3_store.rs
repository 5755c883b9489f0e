//! `dlq --store s3://…` end to end against the real S3-compatible server
//! (`DLQ_S3_ENDPOINT`, S3Proxy from `scripts/s3.sh`): a processor fills the
//! store, every reading command works on it, a replay settles what it
//! delivered, and the bucket holds gzip NDJSON under Hive-style keys.

mod common;

use common::env::{Env, lines};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Read as _;
use std::process::{Command, Output};

const PRICES: &str = "dlq.polymarket.price_hourly";
const GOOD_PRICE: &str = r#"{"event_id":"evt-1","market_id":"0x1111111111111111111111111111111111111111","question":"Will the Fed cut rates in December?","outcome":"Yes","price":0.42,"volume":1200.5,"timestamp":"2026-11-29T07:00:00Z"}"#;

/// A temporary directory and a store under a prefix of its own.
struct S3Env {
    env: Env,
    endpoint: String,
    bucket: String,
    prefix: String,
}

impl S3Env {
    fn new(name: &str) -> Option<S3Env> {
        let endpoint = dlq_testkit::s3::endpoint()?;
        let bucket = dlq_testkit::s3::bucket(&endpoint).to_owned();
        Some(S3Env {
            env: Env::new(),
            prefix: format!("cli/{}", dlq_testkit::s3::prefix(name)),
            endpoint,
            bucket,
        })
    }

    fn url(&self) -> String {
        format!(
            "s3://{}/{}?endpoint={}",
            self.bucket, self.prefix, self.endpoint
        )
    }

    /// `dlq --store s3://… --no-progress ARGS` with the test credentials in
    /// the environment (the standard AWS chain), and nothing of the
    /// caller's AWS setup.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_on(&self.url(), args)
    }

    /// [`S3Env::cmd`] on another store.
    fn cmd_on(&self, store: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args(["--store", store, "--no-progress"])
            .args(args)
            .current_dir(self.env.dir.path())
            .env_remove("DLQ_STORE")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in dlq_testkit::s3::env() {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run dlq")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// `--format json` on another store, which must succeed.
    fn json_on(&self, store: &str, args: &[&str]) -> Value {
        let out = self
            .cmd_on(store, &[&["--format", "json"], args].concat())
            .output()
            .expect("run dlq");
        assert!(out.status.success(), "dlq {args:?} on {store}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

fn write_lines(path: &std::path::Path, lines: &[Vec<u8>]) {
    let mut data = Vec::new();
    for l in lines {
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    std::fs::write(path, data).expect("write");
}

#[test]
fn every_command_works_on_an_s3_store_and_the_bucket_holds_gzip_ndjson_in_hive_partitions() {
    let Some(s3) = S3Env::new("every-command") else {
        return;
    };
    // 25 prices sent as strings (dead-lettered), 10 good ones.
    let mut input: Vec<Vec<u8>> = (0..25)
        .map(|i| {
            GOOD_PRICE
                .replace("0.42", "\"0.42\"")
                .replace("evt-1", &format!("evt-bad-{i}"))
                .into_bytes()
        })
        .collect();
    input.extend((0..10).map(|i| {
        GOOD_PRICE
            .replace("evt-1", &format!("evt-{i}"))
            .into_bytes()
    }));
    write_lines(&s3.env.path("in.ndjson"), &input);
    s3.ok(&[
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
    ]);
    assert_eq!(lines(&s3.env.path("out.ndjson")).len(), 10);

    let stats = s3.json(&["stats"]);
    let dlq = &stats["dlqs"][0];
    assert_eq!(
        (dlq["dlq"].as_str(), dlq["pending"].as_u64()),
        (Some(PRICES), Some(25)),
        "{stats:#}"
    );

    let inspected = s3.json(&["inspect", "--dlq", PRICES, "--limit", "100"]);
    let records = inspected["records"].as_array().expect("records");
    assert_eq!(records.len(), 25, "{inspected:#}");
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| {
            r["record"]["dlq"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("id in {r:#}"))
        })
        .collect();
    assert_eq!(ids.len(), 25, "each record once");

    let analyzed = s3.json(&["analyze", "--dlq", PRICES]);
    let groups = analyzed["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{analyzed:#}");
    assert_eq!(groups[0]["error_class"], "validation.wrong_type");
    assert_eq!(groups[0]["count"], 25);

    // Gzip NDJSON objects under PREFIX/dlq=…/dt=…/hour=…/, each line an
    // envelope, every dead letter in exactly one of them.
    let keys = dlq_testkit::s3::list_keys(&s3.endpoint, &s3.bucket, &s3.prefix);
    let data: Vec<&String> = keys.iter().filter(|k| k.ends_with(".ndjson.gz")).collect();
    assert!(!data.is_empty(), "{keys:?}");
    let mut stored = Vec::new();
    for key in &data {
        let rest = key
            .strip_prefix(&format!("{}/dlq={PRICES}/dt=", s3.prefix))
            .unwrap_or_else(|| panic!("not under dlq=…/dt=: {key}"));
        let (day, rest) = rest.split_once("/hour=").expect("hour partition");
        assert!(
            chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok(),
            "{key}"
        );
        let (hour, file) = rest.split_once('/').expect("file");
        assert!(
            hour.len() == 2 && hour.parse::<u32>().is_ok_and(|h| h < 24),
            "{key}"
        );
        assert!(!file.contains('/'), "{key}");
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(
            &dlq_testkit::s3::get_object(&s3.endpoint, &s3.bucket, key)[..],
        )
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{key} is not gzip: {e}"));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["dlq"]["error_class"], "validation.wrong_type", "{line}");
            stored.push(v["dlq"]["id"].as_str().expect("id").to_owned());
        }
    }
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(
        (stored.len(), stored_set),
        (25, ids.clone()),
        "each dead letter once in the bucket"
    );

    // Replay with a fix to a file: every record once; a rerun selects nothing.
    for round in 0..2 {
        let r = s3.run(&[
            "--format",
            "json",
            "replay",
            "--dlq",
            PRICES,
            "--to",
            "file:replayed.ndjson",
            "--fix",
            ".price |= tonumber",
        ]);
        assert_eq!(
            r.status.code(),
            Some(if round == 0 { 0 } else { 1 }),
            "round {round}: {r:?}"
        );
    }
    let replayed = lines(&s3.env.path("replayed.ndjson"));
    assert_eq!(replayed.len(), 25);
    assert!(
        replayed
            .iter()
            .all(|l| l.windows(12).any(|w| w == br#""price":0.42"#))
    );
    let stats = s3.json(&["stats"]);
    assert_eq!(
        (
            stats["dlqs"][0]["pending"].as_u64(),
            stats["dlqs"][0]["replayed"].as_u64()
        ),
        (Some(0), Some(25))
    );

    // Export of the replayed records: their original payloads.
    s3.ok(&[
        "export",
        "--dlq",
        PRICES,
        "--status",
        "replayed",
        "--payloads",
        "--output",
        "payloads.ndjson",
    ]);
    let payloads = lines(&s3.env.path("payloads.ndjson"));
    assert_eq!(payloads.len(), 25);
    assert!(
        payloads
            .iter()
            .all(|p| p.windows(14).any(|w| w == br#""price":"0.42""#))
    );
}

#[test]
fn a_wrong_secret_fails_with_a_precise_error_that_never_shows_it() {
    let Some(s3) = S3Env::new("wrong-secret") else {
        return;
    };
    let out = s3
        .cmd(&["stats"])
        .env("AWS_SECRET_ACCESS_KEY", "canary-not-the-secret-7f3a")
        .output()
        .expect("run dlq");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("opening the S3 store") && stderr.contains("access denied"),
        "{stderr}"
    );
    assert!(!stderr.contains("canary-not-the-secret"), "{stderr}");
}

#[test]
fn archive_moves_dead_letters_to_s3_once_and_a_replay_from_the_archive_delivers_each_once() {
    let Some(s3) = S3Env::new("archive") else {
        return;
    };
    let bad: Vec<Vec<u8>> = (0..25)
        .map(|i| {
            GOOD_PRICE
                .replace("0.42", "\"0.42\"")
                .replace("evt-1", &format!("evt-{i}"))
                .into_bytes()
        })
        .collect();
    write_lines(&s3.env.path("in.ndjson"), &bad);
    s3.env.process_input();
    let source = s3.env.store();
    let archive = s3.url();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["archive", "--from", &source, "--to", &archive]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |extra: &[&str]| -> Output {
        let mut all = vec!["--format".to_owned(), "json".to_owned()];
        all.extend(args(extra));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        s3.run(&refs)
    };
    let json = |out: &Output| -> Value { serde_json::from_slice(&out.stdout).expect("json") };

    let young = run(&["--older-than", "1h"]);
    assert_eq!(
        young.status.code(),
        Some(1),
        "nothing is an hour old: {young:?}"
    );
    let dry = run(&["--dry-run"]);
    assert_eq!(json(&dry)["selected"], 25, "{dry:?}");
    let empty = s3.run(&["--format", "json", "stats"]);
    assert_eq!(
        (
            empty.status.code(),
            json(&empty)["dlqs"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "a dry run moves nothing"
    );

    // Before the move, a copy of the source: what a crash after the
    // archive's commit and before the source's settlement leaves behind.
    for suffix in ["", "-wal", "-shm"] {
        let from = s3.env.path(&format!("dlq.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, s3.env.path(&format!("crashed.db{suffix}"))).expect("copy");
        }
    }
    let moved = run(&[]);
    assert_eq!(moved.status.code(), Some(0), "{moved:?}");
    let m = json(&moved);
    assert_eq!(
        (m["archived"].as_u64(), m["settled"].as_u64()),
        (Some(25), Some(25)),
        "{m:#}"
    );
    let at_source = s3.env.json(&["stats"]);
    assert_eq!(
        (
            at_source["dlqs"][0]["pending"].as_u64(),
            at_source["dlqs"][0]["archived"].as_u64()
        ),
        (Some(0), Some(25)),
        "{at_source:#}"
    );
    let in_archive = s3.json(&["stats"]);
    assert_eq!(in_archive["dlqs"][0]["pending"], 25, "{in_archive:#}");
    let again = run(&[]);
    assert_eq!(
        (again.status.code(), json(&again)["selected"].as_u64()),
        (Some(1), Some(0))
    );
    let audit = std::fs::read_to_string(s3.env.path("dlq-audit.jsonl")).expect("audit log");
    assert!(
        audit.contains("\"action\":\"archive\"")
            && audit.contains("\"via\":\"archive\"")
            && audit.contains("\"count\":25"),
        "{audit}"
    );
    let archived = s3
        .env
        .json(&["inspect", "--status", "archived", "--limit", "100"]);
    assert_eq!(
        archived["records"].as_array().map(Vec::len),
        Some(25),
        "archived records stay readable in the source: {archived:#}"
    );

    // The rerun after the crash: all already archived, settled now, no copy.
    let crashed = format!("sqlite://{}", s3.env.arg("crashed.db"));
    let rerun = s3.run(&[
        "--format", "json", "archive", "--from", &crashed, "--to", &archive,
    ]);
    let r = json(&rerun);
    assert_eq!(
        (
            r["archived"].as_u64(),
            r["already_archived"].as_u64(),
            r["settled"].as_u64()
        ),
        (Some(0), Some(25), Some(25)),
        "{r:#}"
    );
    assert_eq!(
        s3.json(&["stats"])["dlqs"][0]["total"],
        25,
        "still one copy of each"
    );

    // A replay from the archive, like from any store.
    for round in 0..2 {
        let r = s3.run(&[
            "replay",
            "--dlq",
            PRICES,
            "--to",
            "file:from-archive.ndjson",
            "--fix",
            ".price |= tonumber",
        ]);
        assert_eq!(
            r.status.code(),
            Some(if round == 0 { 0 } else { 1 }),
            "round {round}: {r:?}"
        );
    }
    let replayed = lines(&s3.env.path("from-archive.ndjson"));
    let unique: HashSet<&Vec<u8>> = replayed.iter().collect();
    assert_eq!((replayed.len(), unique.len()), (25, 25));
}

/// Envelopes of `n` dead letters `{prefix}-{i}`, one per line.
fn envelopes(prefix: &str, n: usize) -> Vec<u8> {
    let failure = dlq_core::Failure::permanent("validate", "validation.wrong_type", "price");
    let mut file = Vec::new();
    for i in 0..n {
        let l = dlq_core::DeadLetter::new(
            format!("{prefix}-{i}"),
            format!(r#"{{"event_id":"{prefix}{i}"}}"#).into_bytes(),
            &failure,
        );
        file.extend(
            dlq_core::envelope::encode(&l, &dlq_core::envelope::EncodeOptions::default())
                .expect("encode")
                .bytes,
        );
        file.push(b'\n');
    }
    file
}

#[test]
fn archive_expiring_moves_only_what_retention_deletes_within_the_window() {
    let Some(s3) = S3Env::new("archive-expiring") else {
        return;
    };
    let (risky, unknown) = ("dlq.expiring.a", "dlq.expiring.b");
    std::fs::write(s3.env.path("a.ndjson"), envelopes("a", 12)).expect("write");
    std::fs::write(s3.env.path("b.ndjson"), envelopes("b", 5)).expect("write");
    s3.env
        .ok(&["import", "--input", "a.ndjson", "--dlq", risky]);
    s3.env
        .ok(&["import", "--input", "b.ndjson", "--dlq", unknown]);
    // Four records of `risky` were stored three hours ago (behind the
    // store's back: `stored_at` is set by the store when it appends).
    {
        let conn = rusqlite::Connection::open(s3.env.path("dlq.db")).expect("open");
        let n = conn
            .execute(
                "UPDATE records SET stored_at = stored_at - 3 * 3600 * 1000 \
                 WHERE dlq = ?1 AND id IN ('a-1', 'a-4', 'a-7', 'a-10')",
                [risky],
            )
            .expect("backdate");
        assert_eq!(n, 4);
    }
    // Retention 3 h and a 1 h window: records stored more than 2 h ago
    // are deleted within the hour.
    std::fs::write(
        s3.env.path("dlq.toml"),
        format!("[monitor]\nexpiry_window = \"1h\"\n\n[dlq.\"{risky}\"]\nretention = \"3h\"\n"),
    )
    .expect("config");
    let archive = s3.url();
    let source = s3.env.store();
    let both = s3.run(&[
        "archive",
        "--from",
        &source,
        "--to",
        &archive,
        "--expiring",
        "--older-than",
        "1h",
    ]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{both:?}"
    );

    let out = s3.run(&[
        "--format",
        "json",
        "archive",
        "--from",
        &source,
        "--to",
        &archive,
        "--expiring",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (
            r["selected"].as_u64(),
            r["archived"].as_u64(),
            r["settled"].as_u64()
        ),
        (Some(4), Some(4), Some(4)),
        "{r:#}"
    );
    assert_eq!(r["expiring"]["window"], "1h", "{r:#}");
    assert_eq!(r["expiring"]["dlqs"][risky]["retention_from"], "config");
    assert!(
        r["expiring"]["not_archived"][unknown]
            .as_str()
            .is_some_and(|w| w.contains("retention is not known")),
        "{r:#}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{unknown}: not archived")),
        "{stderr}"
    );

    let stats = s3.env.json(&["stats"]);
    let row = |dlq: &str| {
        stats["dlqs"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["dlq"] == dlq))
            .map(|d| (d["pending"].as_u64(), d["archived"].as_u64()))
    };
    assert_eq!(row(risky), Some((Some(8), Some(4))), "{stats:#}");
    assert_eq!(row(unknown), Some((Some(5), Some(0))), "{stats:#}");
    let moved = s3.env.json(&[
        "inspect", "--dlq", risky, "--status", "archived", "--limit", "100",
    ]);
    let mut ids: Vec<String> = moved["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "archived");
            r["record"]["dlq"]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a-1", "a-10", "a-4", "a-7"],
        "only the records at risk"
    );
    let in_archive = s3.json(&["stats"]);
    assert_eq!(in_archive["dlqs"][0]["pending"], 4, "{in_archive:#}");

    // Nothing is at risk any more: a second run selects nothing.
    let again = s3.run(&[
        "--format",
        "json",
        "archive",
        "--from",
        &source,
        "--to",
        &archive,
        "--expiring",
    ]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
}

#[test]
fn archive_refuses_a_target_that_is_not_s3() {
    let env = Env::new();
    let out = env.run(&["archive", "--to", "sqlite://other.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3://BUCKET/PREFIX"),
        "{out:?}"
    );
}

#[test]
fn archive_from_a_kafka_dlq_moves_every_record_once_with_its_source() {
    let Some(s3) = S3Env::new("archive-kafka") else {
        return;
    };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let kafka = format!("kafka://{bootstrap}");
    let source = dlq_testkit::kafka::topic("archived");
    let dlq_topic = format!("dlq.{source}");
    const N: usize = 300;
    let failure = dlq_core::Failure::permanent("validate", "validation.wrong_type", "price");
    let mut file = Vec::new();
    for i in 0..N {
        let mut l = dlq_core::DeadLetter::new(
            format!("kafka:{source}:{}:{i}", i % 2),
            format!(r#"{{"event_id":"e{i}"}}"#).into_bytes(),
            &failure,
        );
        l.source.system = "kafka".into();
        l.source.topic = Some(source.clone());
        l.source.partition = Some((i % 2) as i32);
        l.source.offset = Some(i as i64);
        file.extend(
            dlq_core::envelope::encode(&l, &dlq_core::envelope::EncodeOptions::default())
                .expect("encode")
                .bytes,
        );
        file.push(b'\n');
    }
    std::fs::write(s3.env.path("dead.ndjson"), &file).expect("write");
    let imported = s3.json_on(
        &kafka,
        &["import", "--input", "dead.ndjson", "--dlq", &dlq_topic],
    );
    assert_eq!(imported["imported"], N as u64, "{imported:#}");

    let archive = s3.url();
    let moved = s3.json(&[
        "archive",
        "--from",
        &kafka,
        "--to",
        &archive,
        "--dlq",
        &dlq_topic,
        "--batch-size",
        "64",
    ]);
    assert_eq!(
        (moved["archived"].as_u64(), moved["settled"].as_u64()),
        (Some(N as u64), Some(N as u64)),
        "{moved:#}"
    );
    let at_kafka = s3.json_on(&kafka, &["stats", "--dlq", &dlq_topic]);
    assert_eq!(at_kafka["dlqs"][0]["pending"], 0, "{at_kafka:#}");
    let in_archive = s3.json(&["stats"]);
    let st = &in_archive["dlqs"][0];
    assert_eq!(
        (st["dlq"].as_str(), st["pending"].as_u64()),
        (Some(dlq_topic.as_str()), Some(N as u64))
    );
    let partitions: Vec<(i64, u64)> = st["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap_or(-9),
                p["pending"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        partitions,
        [(0, N as u64 / 2), (1, N as u64 / 2)],
        "sources kept"
    );
    s3.ok(&["export", "--dlq", &dlq_topic, "--output", "archived.ndjson"]);
    let ids: HashSet<String> = lines(&s3.env.path("archived.ndjson"))
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("json");
            v["dlq"]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), N, "every record once");
    assert!(ids.contains(&format!("kafka:{source}:1:299")));

    // A replay from the archive back to Kafka: each record to its source
    // topic, in its source partition, once; the archive settles it.
    dlq_testkit::kafka::create_topics(&bootstrap, &[&source], 2);
    let back = s3.json(&[
        "replay",
        "--dlq",
        &dlq_topic,
        "--to",
        &format!("kafka://{bootstrap}"),
        "--batch-size",
        "64",
    ]);
    assert_eq!(
        (back["selected"].as_u64(), back["replayed"].as_u64()),
        (Some(N as u64), Some(N as u64)),
        "{back:#}"
    );
    assert_eq!(back["targets"][source.as_str()], N as u64, "{back:#}");
    let delivered = dlq_testkit::kafka::read_messages(&bootstrap, &source, true);
    let mut events: Vec<(i32, String)> = delivered
        .iter()
        .map(|m| {
            use rdkafka::Message as _;
            (
                m.partition(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), N, "each record once");
    assert_eq!(delivered.len(), N, "nothing twice");
    assert!(
        events.contains(&(1, r#"{"event_id":"e299"}"#.to_owned())),
        "source partition kept"
    );
    let again = s3.run(&[
        "replay",
        "--dlq",
        &dlq_topic,
        "--to",
        &format!("kafka://{bootstrap}"),
    ]);
    assert_eq!(again.status.code(), Some(1), "nothing left to replay");
    assert_eq!(
        dlq_testkit::kafka::read_messages(&bootstrap, &source, true).len(),
        N
    );
}

#[test]
fn process_into_s3_killed_midway_and_rerun_loses_nothing_and_duplicates_nothing() {
    let Some(s3) = S3Env::new("kill") else {
        return;
    };
    s3.env.generate("in.ndjson", 20_000);
    let input = lines(&s3.env.path("in.ndjson"));
    let args = [
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
        "--batch-size",
        "200",
    ];
    let mut child = s3
        .cmd(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill once some output is durable, so that the kill lands mid-run.
    let started = std::time::Instant::now();
    while std::fs::metadata(s3.env.path("out.ndjson")).map_or(0, |m| m.len()) < 1_000_000 {
        assert!(started.elapsed().as_secs() < 120, "no progress");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "finished before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let resumed = s3.json(&args);
    assert!(
        resumed["resumed_from_line"].as_u64().expect("resume") > 0,
        "{resumed}"
    );
    let out = lines(&s3.env.path("out.ndjson"));
    s3.ok(&[
        "export",
        "--dlq",
        PRICES,
        "--payloads",
        "--output",
        "dead.ndjson",
    ]);
    let dead = lines(&s3.env.path("dead.ndjson"));
    let found: HashSet<&[u8]> = out.iter().chain(&dead).map(Vec::as_slice).collect();
    let missing = input
        .iter()
        .filter(|l| !found.contains(l.as_slice()))
        .count();
    assert_eq!(missing, 0, "records lost across the crash");
    assert_eq!(out.len() + dead.len(), input.len(), "no duplicates either");
    let stats = s3.json(&["stats"]);
    assert_eq!(
        stats["dlqs"][0]["total"].as_u64(),
        Some(dead.len() as u64),
        "{stats:#}"
    );
}

/// `--expiring` on Kafka takes each DLQ topic's own `retention.ms`: of a
/// topic kept 3 h, the records written 2.5 h ago (their timestamps, which
/// retention goes by) move and the fresh ones stay; a topic kept forever
/// is reported and keeps everything.
#[test]
fn archive_expiring_on_kafka_moves_what_the_topics_retention_deletes_within_the_hour() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let Some(s3) = S3Env::new("archive-expiring-kafka") else {
        return;
    };
    let Some(bootstrap) = dlq_testkit::kafka::bootstrap() else {
        return;
    };
    let prefix = format!("{}.", dlq_testkit::kafka::topic("archexp"));
    let kafka = format!(
        "kafka://{bootstrap}?dlq_prefix={prefix}&ledger={prefix}ledger&blobs={prefix}blobs\
         &replication_factor=1&retention_ms=10800000"
    );
    let (risky, forever) = (format!("{prefix}orders"), format!("{prefix}forever"));
    // The store creates `risky` with its 3 h retention: six fresh records.
    std::fs::write(s3.env.path("fresh.ndjson"), envelopes("fresh", 6)).expect("write");
    s3.json_on(
        &kafka,
        &["import", "--input", "fresh.ndjson", "--dlq", &risky],
    );
    // Another client's topic, kept forever.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin");
    let topic =
        rdkafka::admin::NewTopic::new(&forever, 1, rdkafka::admin::TopicReplication::Fixed(1))
            .set("retention.ms", "-1");
    let created = block_on(admin.create_topics([&topic], &rdkafka::admin::AdminOptions::new()))
        .expect("create");
    for r in created {
        r.expect("topic created");
    }
    // Raw records written two and a half hours ago, into both.
    let old = chrono::Utc::now().timestamp_millis() - 150 * 60 * 1000;
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for (topic, n) in [(&risky, 5), (&forever, 3)] {
        for i in 0..n {
            let value = format!(r#"{{"old":{i}}}"#);
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(topic)
                        .payload(value.as_bytes())
                        .timestamp(old),
                )
                .map_err(|(e, _)| e)
                .expect("send");
        }
    }
    producer
        .flush(std::time::Duration::from_secs(30))
        .expect("flush");

    let archive = s3.url();
    let out = s3
        .cmd_on(
            &kafka,
            &[
                "--format",
                "json",
                "archive",
                "--to",
                &archive,
                "--expiring",
            ],
        )
        .output()
        .expect("run dlq");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (r["selected"].as_u64(), r["settled"].as_u64()),
        (Some(5), Some(5)),
        "{r:#}"
    );
    assert_eq!(r["expiring"]["dlqs"][&risky]["retention"], "3h", "{r:#}");
    assert_eq!(r["expiring"]["dlqs"][&risky]["retention_from"], "store");
    assert!(
        r["expiring"]["not_archived"][&forever]
            .as_str()
            .is_some_and(|w| w.contains("forever")),
        "{r:#}"
    );
    let stats = s3.json_on(&kafka, &["stats"]);
    let row = |dlq: &str| {
        stats["dlqs"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["dlq"] == dlq))
            .map(|d| (d["pending"].as_u64(), d["archived"].as_u64()))
    };
    assert_eq!(row(&risky), Some((Some(6), Some(5))), "{stats:#}");
    assert_eq!(row(&forever), Some((Some(3), Some(0))), "{stats:#}");
    let in_archive = s3.json(&["stats"]);
    assert_eq!(in_archive["dlqs"][0]["pending"], 5, "{in_archive:#}");
    dlq_testkit::kafka::delete_topics(
        &bootstrap,
        &[
            &risky,
            &forever,
            &format!("{prefix}ledger"),
            &format!("{prefix}blobs"),
        ],
    );
}

/// Waits for a future on this thread (the admin client's calls are async).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
