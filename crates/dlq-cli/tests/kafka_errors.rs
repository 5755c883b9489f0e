//! Errors a person can act on, against the real broker: a wrong SASL
//! password fails every command that connects at once, named as an
//! authentication failure, without the secret; an unreachable cluster is
//! one line of stderr, and an outage during `dlq produce` a summary, not a
//! line per record.
//!
//! The SASL tests use the broker's SASL_PLAINTEXT listener that
//! `scripts/test.sh` exports as `DLQ_KAFKA_SASL_BOOTSTRAP` (mechanism PLAIN,
//! the test user of tools/kafka/server.properties.template).

mod common;

use common::kafka;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The test user of the broker's SASL listener.
const USER: &str = "dlqtest";
const PASSWORD: &str = "dlqtest-secret";
/// A wrong password, distinctive enough to search every output for.
const WRONG: &str = "wrong-pw-7f3a9c";

/// The SASL listener's address, or `None` (with a message) when the broker
/// was started without one; under CI a missing listener fails the test.
fn sasl_bootstrap() -> Option<String> {
    match std::env::var("DLQ_KAFKA_SASL_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DLQ_KAFKA_SASL_BOOTSTRAP is not set: run the tests with scripts/test.sh")
        }
        _ => {
            eprintln!(
                "skipped: no SASL listener (run scripts/test.sh, or set DLQ_KAFKA_SASL_BOOTSTRAP \
                 to the address `scripts/kafka.sh sasl-bootstrap` prints)"
            );
            None
        }
    }
}

fn sasl_url(address: &str) -> String {
    format!(
        "kafka://{address}?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN&sasl.username={USER}"
    )
}

/// Runs dlq with a clean environment for the store; returns its output
/// and how long it took.
fn dlq(
    store: &str,
    password: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> (Output, Duration) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
    c.args(["--store", store, "--no-progress"])
        .args(args)
        .env_remove("DLQ_STORE")
        .env_remove("DLQ_LOG")
        .env_remove("DLQ_KAFKA_BOOTSTRAP")
        .env_remove("DLQ_KAFKA_SASL_PASSWORD_FILE")
        .env("DLQ_KAFKA_TIMEOUT_MS", "5000");
    match password {
        Some(p) => c.env("DLQ_KAFKA_SASL_PASSWORD", p),
        None => c.env_remove("DLQ_KAFKA_SASL_PASSWORD"),
    };
    let input = stdin.map(|text| {
        let path = std::env::temp_dir().join(format!("dlq-errors-{}.ndjson", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).expect("input");
        path
    });
    if let Some(path) = &input {
        c.args(["--input", path.to_str().expect("utf-8 path")]);
    }
    let started = Instant::now();
    let out = c.output().expect("run dlq");
    let took = started.elapsed();
    if let Some(path) = input {
        let _ = std::fs::remove_file(path);
    }
    (out, took)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_sasl_password_fails_every_command_at_once_as_an_authentication_failure() {
    let (Some(plain), Some(sasl)) = (kafka::bootstrap(), sasl_bootstrap()) else {
        return;
    };
    let topic = kafka::topic("auth");
    kafka::create_topics(&plain, &[&topic], 1);
    let out_topic = kafka::topic("auth-out");
    kafka::create_topics(&plain, &[&out_topic], 1);
    let spool = tempfile::tempdir().expect("dir");
    let spool_url = format!("sqlite://{}", spool.path().join("spool.db").display());
    let source = format!("kafka:{topic}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["stats"],
        vec!["inspect"],
        vec!["replay", "--dlq", "dlq.x", "--dry-run"],
        vec![
            "process",
            "--pipeline",
            "polymarket",
            "--source",
            &source,
            "--group",
            "g",
            "--output-topic",
            &out_topic,
        ],
        vec!["produce", "--topic", &topic, "--spool", &spool_url],
    ];
    let store = sasl_url(&sasl);
    for args in commands {
        let stdin = (args[0] == "produce").then_some("{\"a\":1}\n");
        let (out, took) = dlq(&store, Some(WRONG), &args, stdin);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout} {stderr}");
        assert!(
            stderr.contains("authentication failed"),
            "{args:?} names the failure: {stderr}"
        );
        assert!(
            stderr.contains("DLQ_KAFKA_SASL_PASSWORD"),
            "{args:?} says what to check: {stderr}"
        );
        assert!(
            !stdout.contains(WRONG) && !stderr.contains(WRONG),
            "{args:?} leaks the password: {stdout} {stderr}"
        );
        // librdkafka fails the handshake after about 300 ms; before this
        // change, commands retried as transient until their 5 s timeout.
        assert!(took < Duration::from_secs(4), "{args:?} took {took:?}");
    }
}

#[test]
fn the_right_sasl_password_connects_and_produces() {
    let (Some(plain), Some(sasl)) = (kafka::bootstrap(), sasl_bootstrap()) else {
        return;
    };
    let topic = kafka::topic("auth-ok");
    kafka::create_topics(&plain, &[&topic], 1);
    let spool = tempfile::tempdir().expect("dir");
    let spool_url = format!("sqlite://{}", spool.path().join("spool.db").display());
    let store = sasl_url(&sasl);
    let (out, _) = dlq(
        &store,
        Some(PASSWORD),
        &[
            "--format", "json", "produce", "--topic", &topic, "--spool", &spool_url,
        ],
        Some("{\"a\":1}\n{\"a\":2}\n"),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(kafka::size(&plain, &topic), 2);
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    let (out, _) = dlq(&store, Some(PASSWORD), &["stats"], None);
    let (stdout, stderr) = text(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "stats connects: {stdout} {stderr}"
    );
    assert!(stderr.is_empty(), "{stderr}");
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn an_unreachable_cluster_is_one_line_of_stderr() {
    let store = format!("kafka://127.0.0.1:{}", closed_port());
    let commands: [&[&str]; 3] = [
        &["stats"],
        &["replay", "--dlq", "dlq.x", "--dry-run"],
        &[
            "process",
            "--pipeline",
            "polymarket",
            "--source",
            "kafka:t",
            "--group",
            "g",
            "--output-topic",
            "o",
        ],
    ];
    for args in commands {
        let (out, _) = dlq(&store, None, args, None);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        // librdkafka's reconnect errors went to stderr, ~100 lines in 5 s.
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

#[test]
fn produce_during_an_outage_sums_up_its_failures_instead_of_a_line_per_record() {
    let store = format!("kafka://127.0.0.1:{}", closed_port());
    let spool = tempfile::tempdir().expect("dir");
    let spool_url = format!("sqlite://{}", spool.path().join("spool.db").display());
    let records = 300;
    let input: String = (0..records).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let (out, _) = dlq(
        &store,
        None,
        &[
            "--format",
            "json",
            "produce",
            "--topic",
            "t",
            "--spool",
            &spool_url,
            "--delivery-timeout-ms",
            "1500",
            "--max-attempts",
            "1",
        ],
        Some(&input),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["spooled"], records, "{report}");
    // A summary every few seconds at most, one at the end, and the spool
    // notice: a handful of lines, not one per record.
    let lines = stderr.lines().count();
    assert!((1..=6).contains(&lines), "{lines} lines: {stderr}");
    assert!(
        stderr.contains(&format!("{records} records not delivered")),
        "the summary counts them: {stderr}"
    );
}
