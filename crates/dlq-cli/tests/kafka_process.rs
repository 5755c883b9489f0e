//! The Kafka processor on the real broker, killed with SIGKILL mid-run and
//! restarted: at-least-once loses nothing; exactly-once also duplicates
//! nothing for read_committed readers.

mod common;

use common::kafka;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const RECORDS: u64 = 20_000;

fn generate(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let path = dir.join("in.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["generate", "--pipeline", "polymarket", "--records"])
        .arg(RECORDS.to_string())
        .args(["--seed", "9", "--output"])
        .arg(&path)
        .status()
        .expect("generate");
    assert!(status.success());
    let data = std::fs::read(&path).expect("read");
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

struct Run {
    bootstrap: String,
    source: String,
    output: String,
    group: String,
    exactly_once: bool,
}

impl Run {
    fn spawn(&self, stop_when_idle: &str) -> Child {
        let store = format!("kafka://{}?session.timeout.ms=6000", self.bootstrap);
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args([
            "--store",
            &store,
            "--format",
            "json",
            "--no-progress",
            "process",
        ])
        .args(["--pipeline", "polymarket"])
        .args(["--source", &format!("kafka:{}", self.source)])
        .args(["--group", &self.group, "--output-topic", &self.output])
        .args(["--stop-when-idle", stop_when_idle])
        .args(["--simulate-transient", "0.01", "--initial-backoff-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_remove("DLQ_STORE");
        if self.exactly_once {
            c.arg("--exactly-once");
        }
        c.spawn().expect("spawn dlq process")
    }
}

/// Where each input line ended up: output copies and DLQ copies.
fn tally(input: &[Vec<u8>], outputs: &[Vec<u8>], dead: &[Vec<u8>]) -> (u64, u64) {
    let mut seen: HashMap<&[u8], u64> = HashMap::new();
    for o in outputs.iter().chain(dead) {
        *seen.entry(o.as_slice()).or_default() += 1;
    }
    let mut lost = 0;
    let mut duplicates = 0;
    for line in input {
        match seen.get(line.as_slice()) {
            None | Some(0) => lost += 1,
            Some(n) => duplicates += n - 1,
        }
    }
    (lost, duplicates)
}

fn kill_and_resume(exactly_once: bool) {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let input = generate(dir.path());
    let run = Run {
        source: kafka::topic("src"),
        output: kafka::topic("out"),
        group: kafka::topic("group"),
        bootstrap: bootstrap.clone(),
        exactly_once,
    };
    kafka::create_topics(&bootstrap, &[&run.source, &run.output], PARTITIONS);
    kafka::produce(&bootstrap, &run.source, PARTITIONS, &input);

    // Kill once a good part of the output is there: mid-run.
    let mut child = run.spawn("60");
    let started = Instant::now();
    while kafka::size(&bootstrap, &run.output) < (RECORDS / 4) as i64 {
        assert!(started.elapsed() < Duration::from_secs(180), "no progress");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "processor exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = kafka::size(&bootstrap, &run.output);
    assert!(
        at_kill < RECORDS as i64 * 9 / 10,
        "killed too late ({at_kill})"
    );

    // Restart; it stops by itself once the topic is drained.
    let child = run.spawn("4");
    let out = child.wait_with_output().expect("resume");
    assert!(out.status.success(), "resumed processor failed");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert!(stats["consumed"].as_u64().expect("consumed") > 0, "{stats}");

    let outputs: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &run.output, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let dead = kafka::dead_letter_payloads(&bootstrap, &format!("dlq.{}", run.source));
    assert!(!dead.is_empty(), "the generated mix has failures");
    let (lost, duplicates) = tally(&input, &outputs, &dead);
    eprintln!(
        "exactly_once={exactly_once}: {} outputs, {} dead letters, lost {lost}, duplicates {duplicates}",
        outputs.len(),
        dead.len()
    );
    assert_eq!(lost, 0, "records lost across the kill");
    if exactly_once {
        assert_eq!(
            duplicates, 0,
            "read_committed readers must see each record once"
        );
        assert_eq!(outputs.len() + dead.len(), input.len());
    }
}

#[test]
fn at_least_once_processor_killed_and_restarted_loses_nothing() {
    kill_and_resume(false);
}

#[test]
fn exactly_once_processor_killed_and_restarted_writes_each_record_once() {
    kill_and_resume(true);
}
