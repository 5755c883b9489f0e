//! How the `dlq` binary behaves at its edges: signals (a graceful stop,
//! then a hard one), a closed standard output, colour on a pipe, refused
//! settings and error texts. Each test runs the real binary on the
//! embedded store (and the Kafka broker where it says so).

mod common;

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::env::{Env, lines};

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

/// Waits for the child to exit, at most `limit`.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until `ready` holds, at most 60 s.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback address with a port nothing listens on now.
fn free_local_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The processor's `dlq_processor_processed_records_total`, read from its
/// Prometheus endpoint; `None` while it does not answer.
fn processed_records(metrics: std::net::SocketAddr) -> Option<u64> {
    use std::io::Read as _;
    let mut conn = std::net::TcpStream::connect(metrics).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("dlq_processor_processed_records_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

fn stdout_json(child: Child) -> (ExitStatus, Value, String) {
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status, json, stderr)
}

#[test]
fn sigterm_stops_a_file_process_cleanly_and_the_rerun_finishes_without_loss_or_duplicates() {
    let env = Env::new();
    env.generate("in.ndjson", 20_000);
    let args = [
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
    ];
    // A commit (fsync + store transaction) per line: slow enough to be
    // stopped part-way.
    let slow = [&["--format", "json"], &args[..], &["--batch-size", "1"]].concat();
    let child = env
        .cmd(&slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out_path = env.path("out.ndjson");
    wait_until("the first output lines", || lines(&out_path).len() >= 10);
    signal(&child, "TERM");
    let (status, first, stderr) = stdout_json(child);
    assert_eq!(status.code(), Some(0), "graceful stop exits 0: {stderr}");
    assert_eq!(first["stopped"], true, "{first}");
    let read_first = first["records_in"].as_u64().expect("records_in");
    assert!(read_first < 20_000, "stopped before the end: {first}");

    let second = env.json(&args);
    assert_eq!(second["stopped"], false);
    let delivered = lines(&out_path);
    let stats = env.json(&["stats"]);
    let dead = stats["dlqs"][0]["total"].as_u64().expect("total");
    assert_eq!(
        delivered.len() as u64 + dead,
        20_000,
        "every line once, out or in the DLQ"
    );
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), delivered.len(), "no line delivered twice");
}

#[test]
fn sigterm_on_an_idle_stdin_process_dead_letters_the_records_waiting_for_a_retry() {
    let env = Env::new();
    let metrics = free_local_port();
    let mut child = env
        .cmd(&[
            "--format",
            "json",
            "process",
            "--pipeline",
            "polymarket",
            "--input",
            "-",
            "--output",
            "out.ndjson",
            // Every line fails its first attempts and waits an hour.
            "--simulate-transient",
            "1",
            "--simulate-fail-first",
            "5",
            "--max-attempts",
            "10",
            "--initial-backoff-ms",
            "3600000",
            "--max-backoff-ms",
            "3600000",
            "--metrics-listen",
            &metrics.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    env.generate("in.ndjson", 5);
    let mut stdin = child.stdin.take().expect("stdin");
    let input = std::fs::read(env.path("in.ndjson")).expect("input");
    let valid: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    stdin.write_all(&input).expect("write");
    stdin.flush().expect("flush");
    // The pipe stays open: the processor waits for more input, once it has
    // read the five lines (its own counter says so).
    wait_until("the five lines read", || {
        processed_records(metrics).is_some_and(|n| n == 5)
    });
    signal(&child, "TERM");
    let (status, summary, stderr) = stdout_json(child);
    drop(stdin);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(summary["stopped"], true);
    assert_eq!(summary["records_in"], 5);
    let out = env.path("payloads.ndjson");
    env.ok(&["export", "--payloads", "-o", &out.display().to_string()]);
    let exported = std::fs::read(&out).expect("export");
    let mut dead: Vec<&[u8]> = exported
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut want = valid.clone();
    dead.sort();
    want.sort();
    assert_eq!(dead, want, "every waiting line is in the DLQ, bytes intact");
    let records = env.json(&["inspect"]);
    for r in records["records"].as_array().expect("array") {
        assert_eq!(r["record"]["dlq"]["retryable"], true, "{r}");
    }
}

#[test]
fn sigterm_stops_a_replay_after_a_commit_and_the_rerun_replays_the_rest_once() {
    let env = Env::new();
    env.fill_dlq(20_000);
    let dlq = "dlq.polymarket.price_hourly";
    let pending = env.json(&["stats"])["dlqs"][0]["pending"]
        .as_u64()
        .expect("pending");
    assert!(pending > 100, "{pending}");
    let target = format!("file:{}", env.arg("replayed.ndjson"));
    let args = [
        "replay",
        "--dlq",
        dlq,
        "--to",
        &target,
        "--rate",
        "50",
        "--batch-size",
        "10",
    ];
    let child = env
        .cmd(&[&["--format", "json"], &args[..]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let replayed = env.path("replayed.ndjson");
    wait_until("the first replayed records", || {
        lines(&replayed).len() >= 20
    });
    signal(&child, "TERM");
    let (status, first, stderr) = stdout_json(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(first["stopped"], true, "{first}");
    let done_first = first["replayed"].as_u64().expect("replayed");
    assert!(done_first >= 20 && done_first < pending, "{first}");
    assert_eq!(
        lines(&replayed).len() as u64,
        done_first,
        "what was settled is in the file"
    );

    let fast = [
        "replay",
        "--dlq",
        dlq,
        "--to",
        &target,
        "--batch-size",
        "500",
    ];
    let second = env.json(&fast);
    assert_eq!(second["replayed"].as_u64(), Some(pending - done_first));
    let mut all = lines(&replayed);
    assert_eq!(all.len() as u64, pending);
    all.sort();
    all.dedup();
    assert_eq!(all.len() as u64, pending, "no record replayed twice");
}

#[test]
fn sigterm_ends_a_monitor_after_its_sample_with_exit_0() {
    let env = Env::new();
    let mut child = env
        .cmd(&["monitor", "--interval", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The first line on stdout is the first sample's output.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read");
    signal(&child, "TERM");
    let status = wait_at_most(&mut child, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exits 0 within seconds"
    );
}

#[test]
fn a_second_signal_ends_a_stopping_command_at_once() {
    // A paced replay (one record every 50 s) stops before its next record:
    // a SIGTERM that arrives during the pacing wait waits for it, and the
    // second one ends the replay at once.
    let env = Env::new();
    env.fill_dlq(2_000);
    let target = format!("file:{}", env.arg("replayed.ndjson"));
    let mut child = env
        .cmd(&[
            "replay",
            "--dlq",
            "dlq.polymarket.price_hourly",
            "--to",
            &target,
            "--rate",
            "0.02",
            "--batch-size",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let replayed = env.path("replayed.ndjson");
    wait_until("the first replayed record", || !lines(&replayed).is_empty());
    // The first record is committed; the replay now reads the next page and
    // waits 50 s before sending from it. A signal sent before it reaches the
    // wait would end it at once (the stop is checked before each record):
    // give it time to get there.
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still stopping after one signal"
    );
    signal(&child, "TERM");
    let status = wait_at_most(&mut child, Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(143),
        "128 + SIGTERM, at once"
    );
    assert_eq!(
        lines(&replayed).len(),
        1,
        "the settled record stays; nothing else was written"
    );
}

#[test]
fn export_into_a_reader_that_closes_early_exits_0_quietly() {
    let env = Env::new();
    env.fill_dlq(20_000);
    let mut child = env
        .cmd(&["export"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // `dlq export | head -1`: read one line, close the pipe.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing on stderr"
    );
}

#[test]
fn logs_on_a_pipe_have_no_colour_codes() {
    let env = Env::new();
    env.fill_dlq(200);
    // A rule that fires at once, notifying the log (tracing, on stderr).
    std::fs::write(
        env.path("dlq.toml"),
        "[[rule]]\nname = \"any\"\nkind = \"size\"\nabove = 0\nsinks = [\"log\"]\n",
    )
    .expect("config");
    let out = env
        .cmd(&["monitor", "--once", "--config", "dlq.toml"])
        .env("DLQ_LOG", "info")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("any"), "the alert was logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no escape codes: {stderr:?}");
}

#[test]
fn fractions_outside_0_to_1_are_refused_with_every_problem_named() {
    let env = Env::new();
    env.generate("in.ndjson", 10);
    let out = env.run(&[
        "process",
        "--pipeline",
        "polymarket",
        "--input",
        "in.ndjson",
        "--output",
        "out.ndjson",
        "--simulate-transient",
        "2",
        "--simulate-outage=-0.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--simulate-transient is 2"), "{stderr}");
    assert!(stderr.contains("--simulate-outage is -0.1"), "{stderr}");
    assert!(!env.path("out.ndjson").exists(), "nothing was processed");

    let out = env.run(&[
        "generate",
        "--pipeline",
        "rss",
        "--mix",
        r#"{"bad_url": -0.5, "malformed_json": 0.2}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad_url is -0.5"), "{stderr}");
    assert!(out.stdout.is_empty(), "no record generated");
}

#[test]
fn an_error_names_its_cause_once() {
    let env = Env::new();
    let out = env.run(&[
        "process",
        "--pipeline",
        "rss",
        "--input",
        "missing.ndjson",
        "--output",
        "out.ndjson",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.ndjson"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_dlq_name_outside_the_kafka_prefix_is_refused_with_the_prefix_named() {
    let Some(bootstrap) = common::kafka::bootstrap() else {
        return;
    };
    for args in [
        vec!["inspect", "--dlq", "rss.events"],
        vec!["stats", "--dlq", "rss.events"],
        vec!["replay", "--dlq", "rss.events", "--dry-run"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--store", &format!("kafka://{bootstrap}"), "--no-progress"])
            .args(&args)
            .env_remove("DLQ_STORE")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("start with \"dlq.\""), "{args:?}: {stderr}");
        assert!(stderr.contains("dlq.rss.events"), "{args:?}: {stderr}");
    }
}

#[test]
fn sigterm_stops_a_kafka_process_after_committing_and_the_rerun_neither_loses_nor_repeats() {
    let Some(bootstrap) = common::kafka::bootstrap() else {
        return;
    };
    use common::kafka;
    let env = Env::new();
    env.generate("in.ndjson", 20_000);
    let input = lines(&env.path("in.ndjson"));
    let (source, output, group) = (kafka::topic("src"), kafka::topic("out"), kafka::topic("g"));
    let dlq = format!("dlq.{source}");
    kafka::create_topics(&bootstrap, &[&source, &output], 2);
    kafka::produce(&bootstrap, &source, 2, &input);
    let spawn = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args([
                "--store",
                &format!("kafka://{bootstrap}"),
                "--format",
                "json",
            ])
            .args(["--no-progress", "process", "--pipeline", "polymarket"])
            .args(["--source", &format!("kafka:{source}"), "--group", &group])
            .args(["--output-topic", &output])
            // Slow enough to be stopped part-way: 1% of lines hold their
            // partition for two retries.
            .args(["--simulate-transient", "0.01", "--initial-backoff-ms", "20"])
            .args(extra)
            .env_remove("DLQ_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let child = spawn(&[]);
    wait_until("the first outputs", || {
        kafka::size(&bootstrap, &output) >= 1_000
    });
    signal(&child, "TERM");
    let (status, first, stderr) = stdout_json(child);
    assert_eq!(status.code(), Some(0), "graceful stop exits 0: {stderr}");
    // Records fetched but not yet handled at the stop are not counted as
    // done: their offsets were not committed, the rerun reads them again.
    let done = |j: &Value| {
        j["delivered"].as_u64().expect("delivered") + j["dead_lettered"].as_u64().expect("dead")
    };
    let done_first = done(&first);
    assert!(done_first < 20_000, "stopped part-way: {first}");

    let (status, second, stderr) = stdout_json(spawn(&["--stop-when-idle", "3"]));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        done_first + done(&second),
        20_000,
        "offsets were committed at the stop: nothing handled twice"
    );
    let outputs: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &output, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let dead = kafka::dead_letter_payloads(&bootstrap, &dlq);
    let mut all: Vec<&Vec<u8>> = outputs.iter().chain(&dead).collect();
    assert_eq!(all.len(), 20_000, "every record once, out or dead-lettered");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20_000, "no record twice");
}

#[test]
fn sigterm_stops_a_kafka_replay_after_settling_what_it_sent_and_the_rerun_sends_the_rest_once() {
    let Some(bootstrap) = common::kafka::bootstrap() else {
        return;
    };
    use common::kafka;
    let source = kafka::topic("replay-src");
    let dlq = format!("dlq.{source}");
    let target = kafka::topic("replay-out");
    kafka::create_topics(&bootstrap, &[&dlq, &target], 1);
    // Raw records in the DLQ topic, as another producer dead-letters them.
    let values: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    kafka::produce(&bootstrap, &dlq, 1, &values);
    let store = format!("kafka://{bootstrap}");
    let replay = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args([
                "--store",
                &store,
                "--format",
                "json",
                "--no-progress",
                "replay",
            ])
            .args([
                "--dlq",
                &dlq,
                "--to",
                &format!("kafka:{target}"),
                "--batch-size",
                "20",
            ])
            .args(extra)
            .env_remove("DLQ_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let child = replay(&["--rate", "100"]);
    wait_until("the first replayed records", || {
        kafka::size(&bootstrap, &target) >= 60
    });
    signal(&child, "TERM");
    let (status, first, stderr) = stdout_json(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(first["stopped"], true, "{first}");
    let sent_first = first["replayed"].as_u64().expect("replayed");
    assert!((60..600).contains(&sent_first), "{first}");

    let (status, second, stderr) = stdout_json(replay(&[]));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        second["replayed"].as_u64(),
        Some(600 - sent_first),
        "{second}"
    );
    let mut got: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &target, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(got.len(), 600, "every record once");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 600, "no record twice");
}

#[test]
fn export_of_payloads_leaves_a_tombstone_out_and_says_so_while_envelopes_keep_it() {
    let env = Env::new();
    let failure = dlq_core::Failure::permanent("produce", "test.deleted", "a delete failed");
    let mut tombstone = dlq_core::DeadLetter::new("t1", Vec::new(), &failure);
    tombstone.null_payload = true;
    tombstone.source.topic = Some("rss.events".into());
    let live = dlq_core::DeadLetter::new("l1", b"{\"a\":1}".to_vec(), &failure);
    let mut lines = Vec::new();
    for letter in [&tombstone, &live] {
        let enc =
            dlq_core::envelope::encode(letter, &dlq_core::envelope::EncodeOptions::unlimited())
                .expect("encode");
        lines.extend_from_slice(&enc.bytes);
        lines.push(b'\n');
    }
    std::fs::write(env.path("in.ndjson"), lines).expect("write");
    env.ok(&["import", "--input", "in.ndjson", "--dlq", "dlq.rss.events"]);

    let out = env.ok(&["export", "--payloads"]);
    assert_eq!(
        out.stdout, b"{\"a\":1}\n",
        "only the live payload has a line"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 records with a null payload"), "{stderr}");

    let out = env.ok(&["export"]);
    let exported: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("envelope"))
        .collect();
    let t = exported
        .iter()
        .find(|e| e["dlq"]["id"] == "t1")
        .expect("the tombstone's envelope");
    assert_eq!(t["original_record"], Value::Null);
    assert_eq!(t["dlq"]["payload_encoding"], "null");
}
