//! End-to-end tests of `dlq monitor` on the embedded store: the real
//! binary after a real (small) `dlq demo`, with a webhook receiver started
//! by the test on 127.0.0.1; and on Kafka (when `DLQ_KAFKA_BOOTSTRAP` names
//! a broker), where the expiry risk uses the DLQ topic's `retention.ms`.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const DLQS: [&str; 2] = ["dlq.polymarket.price_hourly", "dlq.rss.events"];
const TOKEN: &str = "hook-T0KEN-5b1d2c";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> String {
        format!("sqlite://{}", self.path("demo/dlq.db").display())
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args(["--store", &self.store(), "--no-progress"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DLQ_STORE")
            .env_remove("DLQ_MONITOR_CONFIG")
            .env("DLQ_LOG", "info");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run dlq")
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn demo(&self) {
        let dir = self.path("demo");
        self.ok(
            &[
                "demo",
                "--records",
                "300",
                "--dir",
                dir.to_str().expect("path"),
            ],
            &[],
        );
    }
}

/// A webhook receiver: the JSON bodies it was sent.
struct Receiver {
    server: Arc<tiny_http::Server>,
    got: Arc<Mutex<Vec<Value>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (Arc::clone(&server), Arc::clone(&got));
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                g.lock()
                    .expect("lock")
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Receiver {
            server,
            got,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        let addr = self.server.server_addr().to_ip().expect("ip");
        format!("http://{addr}/services/{TOKEN}")
    }

    fn bodies(&self) -> Vec<Value> {
        self.got.lock().expect("lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn monitor_once_after_the_demo_shows_both_dlqs_and_fires_a_size_alert() {
    let env = Env::new();
    env.demo();
    let hook = Receiver::start();
    std::fs::write(
        env.path("dlq.toml"),
        r#"
        [monitor]
        retention = "7d"

        [sink.ops]
        kind = "webhook"
        url_env = "DLQ_TEST_HOOK"

        [[rule]]
        name = "low-size"
        kind = "size"
        above = 1
        sinks = ["log", "ops"]
        "#,
    )
    .expect("write config");
    let url = hook.url();
    let hook_env = [("DLQ_TEST_HOOK", url.as_str())];
    let args = [
        "--format", "json", "monitor", "--once", "--config", "dlq.toml",
    ];
    let out = env.ok(&args, &hook_env);
    let report = json(&out);

    let dlqs = report["dlqs"].as_array().expect("dlqs");
    let names: Vec<&str> = dlqs.iter().filter_map(|d| d["dlq"].as_str()).collect();
    assert_eq!(names, DLQS);
    for d in dlqs {
        let pending = d["pending"].as_u64().expect("pending");
        assert!(pending > 0, "{d}");
        assert!(d["total"].as_u64().expect("total") >= pending);
        assert_eq!(d["retention_ms"], 7 * 86_400_000u64);
        assert_eq!(d["expiry_risk"], 0, "nothing is 7 days old");
        assert!(d["oldest_pending_age_seconds"].as_i64().is_some());
    }
    let alerts = report["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    for (a, d) in alerts.iter().zip(dlqs) {
        assert_eq!(a["rule"], "low-size");
        assert_eq!(a["kind"], "size");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["dlq"], d["dlq"]);
        assert_eq!(a["value"], d["pending"]);
        assert_eq!(a["threshold"], 1);
    }
    assert_eq!(report["firing"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["queued"], 0);

    // The webhook got one notification per DLQ.
    let got = hook.bodies();
    let states: Vec<(&str, &str)> = got
        .iter()
        .map(|b| {
            (
                b["dlq"].as_str().unwrap_or(""),
                b["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states, [(DLQS[0], "firing"), (DLQS[1], "firing")]);
    // The log sink wrote them too, and no output holds the webhook token.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[FIRING] low-size on dlq.rss.events"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN));

    // A second run: the alert state was kept in the store's file, so it is
    // still firing and nobody is notified again.
    let again = json(&env.ok(&args, &hook_env));
    assert_eq!(again["alerts"], serde_json::json!([]));
    assert_eq!(again["firing"].as_array().map(Vec::len), Some(2));
    assert_eq!(hook.bodies().len(), 2);
    // Its inflow is known now: nothing was dead-lettered in between.
    assert_eq!(again["dlqs"][0]["inflow_per_minute"], 0.0);
}

#[test]
fn monitor_reports_every_config_problem_at_once() {
    let env = Env::new();
    std::fs::write(
        env.path("bad.toml"),
        r#"
        [monitor]
        interval = "15x"
        [sink.ops]
        kind = "webhook"
        url_env = "DLQ_TEST_UNSET_VARIABLE"
        [[rule]]
        name = "r"
        kind = "size"
        above = -3
        sinks = ["ops", "pager"]
        "#,
    )
    .expect("write config");
    let out = env.run(&["monitor", "--once", "--config", "bad.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.toml",
        "4 problems",
        "monitor.interval: invalid duration \"15x\"",
        "sink.ops.url_env: environment variable DLQ_TEST_UNSET_VARIABLE is not set",
        "rule[0].above: is negative (-3)",
        "rule[0].sinks[1]: unknown sink \"pager\"",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}

#[test]
fn monitor_once_on_an_empty_store_exits_1() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("demo")).expect("mkdir");
    let out = env.run(&["monitor", "--once", "--interval", "1s"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = env.run(&["monitor", "--once", "--interval", "0s"], &[]);
    assert_eq!(out.status.code(), Some(2), "a zero interval is refused");
}

#[test]
fn monitor_once_on_kafka_uses_the_topics_retention() {
    let Some(bootstrap) = common::kafka::bootstrap() else {
        return;
    };
    let env = Env::new();
    let prefix = format!("{}.", common::kafka::topic("dlqmon"));
    let dlq = format!("{prefix}rss.events");
    // The store creates DLQ topics with a 30 min retention; the config says
    // 7 days, which the topic's own retention.ms overrides.
    let store = format!(
        "kafka://{bootstrap}?dlq_prefix={prefix}&ledger={prefix}ledger&blobs={prefix}blobs\
         &replication_factor=1&retention_ms=1800000"
    );
    let lines: String = (0..4)
        .map(|i| {
            format!(
                "{{\"original_record\":{{\"n\":{i}}},\"error\":\"bad {i}\",\
                 \"timestamp\":\"2026-11-29T07:00:00Z\"}}\n"
            )
        })
        .collect();
    std::fs::write(env.path("in.ndjson"), lines).expect("write input");
    std::fs::write(
        env.path("dlq.toml"),
        "[monitor]\nretention = \"7d\"\nexpiry_window = \"1h\"\n",
    )
    .expect("write config");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dlq"))
            .args(["--store", &store, "--no-progress"])
            .args(args)
            .current_dir(env.dir.path())
            .env_remove("DLQ_STORE")
            .output()
            .expect("run dlq");
        assert!(
            out.status.success(),
            "dlq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&["import", "--input", "in.ndjson", "--dlq", &dlq]);
    let report = json(&run(&[
        "--format", "json", "monitor", "--once", "--config", "dlq.toml",
    ]));
    let d = report["dlqs"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["dlq"] == dlq.as_str()))
        .unwrap_or_else(|| panic!("{dlq} missing in {report}"));
    assert_eq!(d["pending"], 4);
    assert_eq!(d["retention_ms"], 1_800_000, "the topic's retention.ms");
    // Kept 30 min, all four are deleted within the 1 h window (with the
    // config's 7 days none would be).
    assert_eq!(d["expiry_risk"], 4);
    assert_eq!(
        report["history"], "dlq-monitor.db",
        "a Kafka store keeps its history in dlq-monitor.db"
    );
    assert!(env.path("dlq-monitor.db").exists());
    common::kafka::delete_topics(
        &bootstrap,
        &[&dlq, &format!("{prefix}ledger"), &format!("{prefix}blobs")],
    );
}

/// One GET over HTTP/1.1 with `Connection: close`; the body.
fn get_body(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of one sample line of a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn process_serves_its_counters_while_it_runs() {
    use std::io::{BufRead as _, Write as _};
    let env = Env::new();
    let input = env.ok(
        &[
            "generate",
            "--pipeline",
            "polymarket",
            "--records",
            "200",
            "--seed",
            "3",
        ],
        &[],
    );
    let store = format!("sqlite://{}", env.path("process.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["--store", &store, "--no-progress", "process"])
        .args([
            "--pipeline",
            "polymarket",
            "--input",
            "-",
            "--batch-size",
            "10",
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--output"])
        .arg(env.path("out.ndjson"))
        .current_dir(env.dir.path())
        .env_remove("DLQ_STORE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dlq process");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() && stderr.read_line(&mut line).expect("stderr") > 0 {
        addr = line
            .trim()
            .strip_prefix("metrics at http://")
            .and_then(|r| r.strip_suffix("/metrics"))
            .map(str::to_owned);
        line.clear();
    }
    let addr = addr.expect("the metrics address on stderr");
    // Keep reading stderr, so the processor never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    stdin.write_all(&input.stdout).expect("records");
    stdin.flush().expect("flush");

    // stdin stays open, so the processor is still running: its counters
    // reach every record.
    let topic = "topic=\"polymarket.price_hourly\"";
    let series = |name: &str| format!("{name}{{{topic}}}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = get_body(&addr, "/metrics");
        if sample(&text, &series("dlq_processor_processed_records_total")) == Some(200.0) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters stuck: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let delivered = sample(&text, &series("dlq_processor_delivered_records_total")).unwrap_or(0.0);
    let dead = sample(&text, &series("dlq_processor_dead_lettered_records_total")).unwrap_or(0.0);
    assert!(dead > 0.0, "the generator's mix has failures: {text}");
    assert_eq!(delivered + dead, 200.0, "{text}");
    drop(stdin);
    assert!(child.wait().expect("wait").success());
}
