//! `dlq produce` and `dlq spool` end to end, when Kafka is not there.
//!
//! * `produce_with_the_cluster_unreachable_spools_every_line` needs no
//!   broker (nothing listens on port 1) and always runs.
//! * `a_stopped_broker_loses_nothing_and_spool_flush_moves_everything`
//!   stops the shared test broker (`scripts/kafka.sh stop`, data kept) and
//!   starts it again, so it must not run beside other Kafka tests: it runs
//!   only with `DLQ_KAFKA_RESTARTABLE=1`, in this binary alone:
//!
//!   ```text
//!   DLQ_KAFKA_RESTARTABLE=1 cargo test -p dlq-cli --test kafka_produce
//!   ```
//!
//!   It needs `DLQ_KAFKA_BOOTSTRAP` (the broker of `scripts/kafka.sh`, with
//!   the same `DLQ_KAFKA_*` environment) and leaves the broker answering,
//!   also when it fails.

use dlq_core::DlqStore as _;
use dlq_core::store::Selection;
use dlq_kafka::{KafkaConfig, KafkaStore};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spool(&self) -> String {
        format!("sqlite://{}", self.path("spool.db").display())
    }

    /// The `dlq` binary in this test's directory. The store and spool come
    /// from the arguments only: `DLQ_STORE`, `DLQ_SPOOL` and `DLQ_KAFKA_*`
    /// are removed, so that only the URL says where the cluster is.
    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.current_dir(self.dir.path())
            .env_remove("DLQ_STORE")
            .env_remove("DLQ_SPOOL");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DLQ_KAFKA_") {
                c.env_remove(name);
            }
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .arg("--no-progress")
            .args(args)
            .output()
            .expect("run dlq")
    }

    /// Runs `dlq --format json ARGS`, expects exit `code`, returns stdout
    /// as JSON.
    fn json(&self, code: i32, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "dlq {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
        })
    }

    /// Writes NDJSON lines (each ending with a line break) to a file.
    fn input(&self, lines: &[Vec<u8>]) -> PathBuf {
        let path = self.path("in.ndjson");
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        std::fs::write(&path, bytes).expect("write input");
        path
    }

    /// The payloads of a spool's DLQ, as `dlq export --payloads` writes them.
    fn spooled_payloads(&self, dlq: &str) -> Vec<Vec<u8>> {
        let out = self.path("payloads.out");
        let r = self.run(&[
            "--store",
            &self.spool(),
            "export",
            "--dlq",
            dlq,
            "--payloads",
            "--output",
            out.to_str().expect("path"),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let bytes = std::fs::read(&out).expect("read export");
        let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        lines.sort();
        lines
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// NDJSON lines of several shapes, one large enough for claim checks.
fn lines(n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..n)
        .map(|i| match i % 3 {
            0 => format!(r#"{{"event_id":"evt-{i}","title":"Fed holds rates","price":0.{i}}}"#),
            1 => format!(r#"{{"market_id":"0x{i:x}","price":"N/A","note":"naïve — ünïcode"}}"#),
            _ => format!("not json at all {i}"),
        })
        .map(String::into_bytes)
        .collect();
    out.push(format!(r#"{{"big":"{}"}}"#, "x".repeat(100_000)).into_bytes());
    out
}

#[test]
fn produce_with_the_cluster_unreachable_spools_every_line() {
    let env = Env::new();
    let store = "kafka://127.0.0.1:1?timeout_ms=500";
    let sent = lines(5);
    let input = env.input(&sent);
    // A blank line and a CRLF line: neither the blank line nor the line
    // break is a record.
    let mut bytes = std::fs::read(&input).expect("read");
    bytes.extend_from_slice(b"\n{\"crlf\":true}\r\n");
    std::fs::write(&input, bytes).expect("write");
    let mut want = sent.clone();
    want.push(br#"{"crlf":true}"#.to_vec());

    let started = Instant::now();
    let report = env.json(
        0,
        &[
            "--store",
            store,
            "produce",
            "--topic",
            "rss.events",
            "--input",
            path_str(&input),
            "--spool",
            &env.spool(),
            "--max-attempts",
            "2",
            "--initial-backoff-ms",
            "10",
            "--delivery-timeout-ms",
            "300",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");
    assert_eq!(report["lines"], 8);
    assert_eq!(report["blank_lines_skipped"], 1);
    assert_eq!(report["sent"], 7);
    assert_eq!(report["spooled"], 7, "{report}");
    assert_eq!(report["delivered"], 0);
    assert_eq!(report["dead_lettered"], 0);
    assert_eq!(report["dlq"], "dlq.rss.events");
    assert_eq!(report["by_error_class"]["produce.timeout"], 7);

    let stats = env.json(0, &["spool", "stats", "--spool", &env.spool()]);
    assert_eq!(stats["pending"], 7);
    assert_eq!(stats["dlqs"][0]["dlq"], "dlq.rss.events");
    assert_eq!(env.spooled_payloads("dlq.rss.events"), sorted(want));

    // A flush needs the cluster: an error that says the records stay.
    let out = env.run(&["--store", store, "spool", "flush", "--spool", &env.spool()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stay in"), "{err}");
    let stats = env.json(0, &["spool", "stats", "--spool", &env.spool()]);
    assert_eq!(stats["pending"], 7, "nothing left the spool");

    // Only a local store can be a spool.
    let out = env.run(&[
        "--store",
        store,
        "produce",
        "--topic",
        "rss.events",
        "--spool",
        "memory://",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Stops and starts the broker of `scripts/kafka.sh`; started again when
/// dropped (a failing test must not leave it down).
struct Broker {
    stopped: bool,
}

impl Broker {
    fn script(action: &str) -> Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka.sh");
        Command::new("bash")
            .arg(script)
            .arg(action)
            .output()
            .expect("run scripts/kafka.sh")
    }

    fn stop(&mut self) {
        self.stopped = true;
        let out = Broker::script("stop");
        assert!(
            out.status.success(),
            "kafka.sh stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it and waits until it answers requests.
    fn start(&mut self) {
        let out = Broker::script("start");
        assert!(
            out.status.success(),
            "kafka.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.stopped = false;
    }
}

/// Creates a topic with the broker's own tool, from the jars of
/// `scripts/kafka.sh` (`DLQ_KAFKA_LIBS`, default `<repo>/.kafka/libs`).
fn create_topic(bootstrap: &str, topic: &str) {
    let libs = std::env::var("DLQ_KAFKA_LIBS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.kafka/libs").to_owned());
    let java = std::env::var("JAVA_HOME")
        .map(|h| format!("{h}/bin/java"))
        .unwrap_or_else(|_| "java".to_owned());
    let out = Command::new(java)
        .args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
        ])
        .arg(format!("{libs}/*"))
        .args([
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            bootstrap,
        ])
        .args(["--create", "--topic", topic, "--partitions", "2"])
        .output()
        .expect("run the Kafka topic tool");
    assert!(
        out.status.success(),
        "creating {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.stopped {
            let out = Broker::script("start");
            if !out.status.success() {
                eprintln!(
                    "could not start the broker again: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

#[test]
fn a_stopped_broker_loses_nothing_and_spool_flush_moves_everything() {
    if std::env::var("DLQ_KAFKA_RESTARTABLE").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: this test stops and restarts the shared Kafka broker; run it alone with \
             DLQ_KAFKA_RESTARTABLE=1 cargo test -p dlq-cli --test kafka_produce"
        );
        return;
    }
    let bootstrap = std::env::var("DLQ_KAFKA_BOOTSTRAP")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .expect(
            "DLQ_KAFKA_RESTARTABLE=1 needs the broker: start it with `scripts/kafka.sh start` \
             and export DLQ_KAFKA_BOOTSTRAP=$(scripts/kafka.sh bootstrap)",
        );
    let env = Env::new();
    let tag = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let prefix = format!("dlqt-{tag}.");
    let topic = format!("prod-{tag}.orders");
    let dlq = format!("{prefix}{topic}");
    let store_params = format!(
        "dlq_prefix={prefix}&ledger={prefix}ledger&blobs={prefix}blobs&replication_factor=1\
         &max_message_bytes=32768"
    );
    // Short operation timeouts while the broker is down, the default once
    // it is back (a restarted broker takes a moment to load its
    // transaction state).
    let down_store = format!("kafka://{bootstrap}?{store_params}&timeout_ms=2000");
    let live_store = format!("kafka://{bootstrap}?{store_params}&timeout_ms=5000");
    let up_store = format!("kafka://{bootstrap}?{store_params}");
    let sent = lines(40);
    let input = env.input(&sent);
    let live_spool = format!("sqlite://{}", env.path("live-spool.db").display());
    let produce_args = |store: &str, input: &str, spool: &str| -> Vec<String> {
        [
            "--store",
            store,
            "produce",
            "--topic",
            &topic,
            "--input",
            input,
            "--spool",
            spool,
            "--max-attempts",
            "2",
            "--initial-backoff-ms",
            "50",
            "--delivery-timeout-ms",
            "1000",
        ]
        .map(str::to_owned)
        .to_vec()
    };

    create_topic(&bootstrap, &topic);
    let mut broker = Broker { stopped: false };
    broker.stop();
    // A producer that lives through the outage, fed by a pipe: two records
    // now (spooled), one once the broker is back (delivered, and the
    // spool moves to the DLQ by itself).
    let mut live = env
        .command()
        .args(["--no-progress", "--format", "json"])
        .args(produce_args(&live_store, "-", &live_spool))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dlq produce");
    let mut live_in = live.stdin.take().expect("stdin");
    live_in
        .write_all(b"{\"live\":1}\n{\"live\":2}\n")
        .expect("write");
    live_in.flush().expect("flush");

    let args = produce_args(&down_store, path_str(&input), &env.spool());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = env.json(0, &args);
    assert_eq!(report["sent"], 41);
    assert_eq!(report["spooled"], 41, "{report}");
    assert_eq!(report["delivered"], 0);
    let stats = env.json(0, &["spool", "stats", "--spool", &env.spool()]);
    assert_eq!(stats["pending"], 41, "every record in the spool: {stats}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = env.json(0, &["spool", "stats", "--spool", &live_spool]);
        if stats["pending"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the live producer spools: {stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    broker.start();
    let flushed = env.json(
        0,
        &[
            "--store",
            &up_store,
            "spool",
            "flush",
            "--spool",
            &env.spool(),
        ],
    );
    assert_eq!(flushed["flushed"], 41, "{flushed}");
    assert_eq!(flushed["appended"], 41);
    assert_eq!(flushed["pending"], 0);

    // Kafka is back for the live producer too.
    live_in.write_all(b"{\"live\":3}\n").expect("write");
    drop(live_in);
    let out = live.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "live produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live_report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(live_report["delivered"], 1, "{live_report}");
    assert_eq!(live_report["spooled"], 2);
    assert_eq!(live_report["spool_flushed"], 2, "moved once Kafka was back");
    let stats = env.json(0, &["spool", "stats", "--spool", &live_spool]);
    assert_eq!(stats["pending"], 0, "{stats}");

    // Every record in the Kafka DLQ, byte for byte, with its error.
    let config = KafkaConfig::from_url(&up_store).expect("config");
    let store = KafkaStore::open(config).expect("store");
    let letters: Vec<_> = store
        .scan_all(&Selection::pending(Some(&dlq)), 100)
        .collect::<Result<_, _>>()
        .expect("scan");
    let mut want = sent.clone();
    want.extend([b"{\"live\":1}".to_vec(), b"{\"live\":2}".to_vec()]);
    assert_eq!(
        sorted(letters.iter().map(|r| r.letter.payload.clone()).collect()),
        sorted(want),
        "nothing lost, nothing twice, byte for byte"
    );
    for r in &letters {
        assert_eq!(r.letter.stage, "produce");
        assert_eq!(r.letter.error_class, "produce.timeout");
        assert!(
            r.letter
                .error
                .starts_with("Failed to send to primary topic"),
            "{}",
            r.letter.error
        );
        assert_eq!(r.letter.source.topic.as_deref(), Some(topic.as_str()));
    }
    let stats = env.json(0, &["spool", "stats", "--spool", &env.spool()]);
    assert_eq!(stats["pending"], 0, "the spool is empty: {stats}");
    assert_eq!(stats["dlqs"][0]["replayed"], 41);

    // Again: nothing to move (exit 1), nothing written twice.
    let again = env.json(
        1,
        &[
            "--store",
            &up_store,
            "spool",
            "flush",
            "--spool",
            &env.spool(),
        ],
    );
    assert_eq!(again["flushed"], 0);
    let pending = store.stats().expect("stats");
    let ours = pending.iter().find(|s| s.dlq == dlq).expect("our DLQ");
    assert_eq!((ours.pending, ours.total), (43, 43));
    assert!(
        Broker::script("status").status.success(),
        "the broker answers again"
    );
}
