//! The Kafka processor on the real broker, killed with SIGKILL mid-run and
//! restarted: at-least-once loses nothing; exactly-once also duplicates
//! nothing for read_committed readers; a restarted instance takes its
//! partitions over at once; `--stop-when-idle` exits 0 only once the source
//! is drained, else 2 naming the lag; two instances in one group share the
//! source, and the survivor of a SIGKILL drains it without loss (nor
//! duplicates, exactly once).

mod common;

use common::kafka;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// `None`: the client's default session timeout (45 s).
    session_timeout_ms: Option<u32>,
}

impl Run {
    fn spawn(&self, stop_when_idle: &str) -> Child {
        self.spawn_with(stop_when_idle, Stdio::inherit())
    }

    fn spawn_with(&self, stop_when_idle: &str, stderr: Stdio) -> Child {
        self.command()
            .args(["--stop-when-idle", stop_when_idle])
            .stderr(stderr)
            .spawn()
            .expect("spawn dlq process")
    }

    /// `dlq process` on this run's topics, stdout piped, without an end
    /// condition.
    fn command(&self) -> Command {
        let store = match self.session_timeout_ms {
            Some(ms) => format!("kafka://{}?session.timeout.ms={ms}", self.bootstrap),
            None => format!("kafka://{}", self.bootstrap),
        };
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
        .args(["--simulate-transient", "0.01", "--initial-backoff-ms", "20"])
        .stdout(Stdio::piped())
        .env_remove("DLQ_STORE");
        if self.exactly_once {
            c.arg("--exactly-once");
        }
        c
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
        session_timeout_ms: Some(6000),
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

/// The group's lag per partition: end offset minus committed offset (or
/// the whole partition when nothing is committed), measured independently
/// of dlq.
fn group_lag(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => lo,
            };
            hi - at
        })
        .collect()
}

fn exit_code_and_json(out: &std::process::Output) -> (Option<i32>, serde_json::Value) {
    let stats = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), stats)
}

#[test]
fn a_processor_restarted_after_sigkill_takes_its_partitions_over_at_once_and_drains_the_backlog() {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let input = generate(dir.path());
    // The client's default session timeout (45 s): without static
    // membership the crashed member would hold the partitions that long.
    let run = Run {
        source: kafka::topic("src"),
        output: kafka::topic("out"),
        group: kafka::topic("group"),
        bootstrap: bootstrap.clone(),
        exactly_once: false,
        session_timeout_ms: None,
    };
    kafka::create_topics(&bootstrap, &[&run.source, &run.output], PARTITIONS);
    kafka::produce(&bootstrap, &run.source, PARTITIONS, &input);

    let mut child = run.spawn("60");
    let started = Instant::now();
    while kafka::size(&bootstrap, &run.output) < (RECORDS / 4) as i64 {
        assert!(started.elapsed() < Duration::from_secs(180), "no progress");
        assert!(child.try_wait().expect("wait").is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let backlog: i64 = group_lag(&bootstrap, &run.group, &run.source, PARTITIONS)
        .iter()
        .sum();
    assert!(backlog > 0, "killed with a backlog");

    // At once, with a short idle time: it must get the partitions, drain
    // them and say so, long before the dead member's session (45 s) ends.
    let at_kill = kafka::size(&bootstrap, &run.output);
    let restarted = Instant::now();
    let child = run.spawn("5");
    while kafka::size(&bootstrap, &run.output) <= at_kill {
        assert!(restarted.elapsed() < Duration::from_secs(60), "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_output = restarted.elapsed();
    let out = child.wait_with_output().expect("resume");
    let took = restarted.elapsed();
    eprintln!(
        "restarted run: first output after {first_output:?}, done after {took:?}, backlog {backlog}"
    );
    assert!(
        first_output < Duration::from_secs(10),
        "took its partitions over after {first_output:?}, not at once"
    );
    let (code, stats) = exit_code_and_json(&out);
    assert_eq!(code, Some(0), "{stats}");
    assert!(
        stats["consumed"].as_u64().expect("consumed") as i64 >= backlog,
        "consumed the backlog of {backlog}: {stats}"
    );
    assert_eq!(stats["caught_up"], true, "{stats}");
    assert_eq!(stats["stop"], "drained", "{stats}");
    assert_eq!(stats["lag"], serde_json::json!([]), "{stats}");
    assert!(
        took < Duration::from_secs(35),
        "took {took:?}: waited for the session timeout"
    );
    assert_eq!(
        group_lag(&bootstrap, &run.group, &run.source, PARTITIONS),
        vec![0; PARTITIONS as usize],
        "every partition committed to its end"
    );
    let outputs: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &run.output, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let dead = kafka::dead_letter_payloads(&bootstrap, &format!("dlq.{}", run.source));
    assert_eq!(tally(&input, &outputs, &dead).0, 0, "records lost");
}

#[test]
fn a_processor_that_cannot_drain_the_source_exits_2_naming_the_partitions_and_their_lag() {
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
        exactly_once: false,
        session_timeout_ms: Some(6000),
    };
    kafka::create_topics(&bootstrap, &[&run.source, &run.output], PARTITIONS);
    kafka::produce(&bootstrap, &run.source, PARTITIONS, &input);

    // A live member of the same group that holds its partitions and never
    // consumes them.
    let holder: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &run.group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("holder");
    holder.subscribe(&[&run.source]).expect("subscribe");
    let done = Arc::new(AtomicBool::new(false));
    let held = std::thread::scope(|scope| {
        let keep_alive = scope.spawn(|| {
            let mut held = Vec::new();
            while !done.load(Ordering::Relaxed) {
                // Polls keep it in the group; its records are not
                // processed and nothing is committed.
                let _ = holder.poll(Duration::from_millis(50));
                if let Ok(a) = holder.assignment() {
                    let now: Vec<i32> = a.elements().iter().map(|e| e.partition()).collect();
                    if !now.is_empty() {
                        held = now;
                    }
                }
            }
            held
        });
        // Let it join first, so that the processor finds a live member.
        let t = Instant::now();
        while holder.assignment().map_or(true, |a| a.count() == 0) {
            assert!(t.elapsed() < Duration::from_secs(30), "holder never joined");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = run
            .spawn_with("3", Stdio::piped())
            .wait_with_output()
            .expect("processor");
        done.store(true, Ordering::Relaxed);
        let held = keep_alive.join().expect("holder thread");
        let (code, stats) = exit_code_and_json(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code, Some(2), "{stats} {stderr}");
        assert_eq!(stats["caught_up"], false, "{stats}");
        assert_eq!(stats["stop"], "stalled", "{stats}");
        assert!(!held.is_empty());
        for p in &held {
            assert!(
                stderr.contains(&format!("partition {p}: "))
                    && stderr.contains("not assigned to this instance"),
                "names held partition {p}: {stderr}"
            );
        }
        held
    });
    // What the processor owned it drained; what the holder held is left.
    let lag = group_lag(&bootstrap, &run.group, &run.source, PARTITIONS);
    for p in 0..PARTITIONS {
        if held.contains(&p) {
            assert!(lag[p as usize] > 0, "{lag:?}");
        } else {
            assert_eq!(lag[p as usize], 0, "{lag:?}");
        }
    }
}

/// One `dlq process` instance of a scale-out run: its process, and what it
/// says on stderr (kept, for failure messages) and at `/metrics`.
struct Instance {
    name: &'static str,
    child: Child,
    metrics: std::net::SocketAddr,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Instance {
    /// Starts instance `name` of `run` (its own `--instance`, so its own
    /// static membership and transactional id) with its counters served on
    /// a free port, and waits until it says where.
    fn start(run: &Run, name: &'static str) -> Instance {
        let mut child = run
            .command()
            .args(["--instance", name, "--metrics-listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dlq process");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let kept = Arc::clone(&stderr);
        // Reads stderr to its end, so that the processor never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line
                    .trim()
                    .strip_prefix("metrics at http://")
                    .and_then(|r| r.strip_suffix("/metrics"))
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                kept.lock().expect("stderr").push_str(&line);
                line.clear();
            }
        });
        let metrics = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "instance {name} never served its metrics: {}",
                    stderr.lock().expect("stderr")
                )
            });
        Instance {
            name,
            child,
            metrics,
            stderr,
        }
    }

    /// Its `dlq_processor_processed_records_total` (0 before the first
    /// record); panics once it has exited.
    fn processed(&mut self) -> u64 {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "instance {} exited early ({status}): {}",
                self.name,
                self.stderr.lock().expect("stderr")
            );
        }
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(self.metrics).expect("metrics connection");
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("metrics response");
        text.lines()
            .find(|l| l.starts_with("dlq_processor_processed_records_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse::<f64>().expect("a counter") as u64)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }
}

/// The consumer group as the broker describes it: its state and how many
/// members it has.
fn group_state(bootstrap: &str, group: &str) -> (String, usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .expect("group list");
    list.groups()
        .iter()
        .find(|g| g.name() == group)
        .map_or((String::new(), 0), |g| {
            (g.state().to_owned(), g.members().len())
        })
}

/// Polls `done` every 50 ms until it holds, failing after `limit` with
/// `what` (a deadline for a loaded machine, not a timing assertion).
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two instances in one consumer group on a 4-partition source: A starts
/// alone, B joins while A is working (a rebalance), both process records,
/// then A is killed with SIGKILL mid-run and B, the survivor, drains the
/// source (A's partitions too, once A's session times out). The source is
/// produced in three parts, each only once the run is in the state that
/// needs it, so that every phase has records to work on whatever the
/// machine's speed.
fn scale_out(exactly_once: bool) {
    let Some(bootstrap) = kafka::bootstrap() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let input = generate(dir.path());
    let (first, rest) = input.split_at(input.len() * 2 / 5);
    let (second, third) = rest.split_at(rest.len() / 2);
    let run = Run {
        source: kafka::topic("src"),
        output: kafka::topic("out"),
        group: kafka::topic("group"),
        bootstrap: bootstrap.clone(),
        exactly_once,
        // A killed static member keeps its partitions until its session
        // times out: short, so that the survivor gets them soon.
        session_timeout_ms: Some(6000),
    };
    kafka::create_topics(&bootstrap, &[&run.source, &run.output], PARTITIONS);
    let limit = Duration::from_secs(180);

    // A alone, on the first part.
    kafka::produce(&bootstrap, &run.source, PARTITIONS, first);
    let mut a = Instance::start(&run, "a");
    wait_until(limit, "instance a to process records", || a.processed() > 0);

    // B joins while A works through the first part; the group settles with
    // both as members.
    let mut b = Instance::start(&run, "b");
    wait_until(limit, "a stable group of two members", || {
        a.processed();
        b.processed();
        group_state(&bootstrap, &run.group) == ("Stable".to_owned(), 2)
    });

    // The second part is spread over every partition: both members get
    // records of it.
    let a_before = a.processed();
    kafka::produce(&bootstrap, &run.source, PARTITIONS, second);
    wait_until(limit, "both instances to process the second part", || {
        a.processed() > a_before && b.processed() > 0
    });
    let a_shared = a.processed() - a_before;
    let b_shared = b.processed();

    // The third part; A is killed as soon as it is working on it.
    let a_before = a.processed();
    kafka::produce(&bootstrap, &run.source, PARTITIONS, third);
    wait_until(limit, "instance a to start on the third part", || {
        a.processed() > a_before
    });
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reap");
    let lag_at_kill = group_lag(&bootstrap, &run.group, &run.source, PARTITIONS);
    assert!(
        lag_at_kill.iter().sum::<i64>() > 0,
        "a was killed mid-run, with records not yet committed: {lag_at_kill:?}"
    );

    // B alone drains the source: its own partitions, then A's once A's
    // session has timed out. Then it is stopped as an operator would.
    wait_until(
        limit,
        "the group to commit every partition to its end",
        || {
            b.processed();
            group_lag(&bootstrap, &run.group, &run.source, PARTITIONS)
                == vec![0; PARTITIONS as usize]
        },
    );
    let status = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM");
    let b_stderr = Arc::clone(&b.stderr);
    let out = b.child.wait_with_output().expect("survivor");
    let (code, stats) = exit_code_and_json(&out);
    let b_stderr = b_stderr.lock().expect("stderr").clone();
    assert_eq!(code, Some(0), "{stats} {b_stderr}");
    assert_eq!(stats["caught_up"], true, "{stats}");
    assert!(
        stats["consumed"].as_u64().expect("consumed") >= lag_at_kill.iter().sum::<i64>() as u64,
        "the survivor consumed at least the lag the kill left ({lag_at_kill:?}): {stats}"
    );

    let outputs: Vec<Vec<u8>> = kafka::read_all(&bootstrap, &run.output, true)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let dead = kafka::dead_letter_payloads(&bootstrap, &format!("dlq.{}", run.source));
    assert!(!dead.is_empty(), "the generated mix has failures");
    let (lost, duplicates) = tally(&input, &outputs, &dead);
    // Bytes intact: a record changed on its way would be lost and foreign.
    let known: std::collections::HashSet<&[u8]> = input.iter().map(Vec::as_slice).collect();
    let foreign = outputs
        .iter()
        .chain(&dead)
        .filter(|o| !known.contains(o.as_slice()))
        .count();
    let report = format!(
        "exactly_once={exactly_once}: {} inputs, {} outputs, {} dead letters, lost {lost}, \
         duplicates {duplicates}, foreign {foreign}; processed while both ran: a {a_shared}, \
         b {b_shared}; lag at the kill {lag_at_kill:?}; survivor {stats}",
        input.len(),
        outputs.len(),
        dead.len()
    );
    eprintln!("{report}");
    assert_eq!(lost, 0, "records lost: {report}\n{}", a.stderr());
    assert_eq!(foreign, 0, "records changed: {report}");
    if exactly_once {
        assert_eq!(
            duplicates, 0,
            "read_committed readers must see each record once: {report}"
        );
        assert_eq!(outputs.len() + dead.len(), input.len(), "{report}");
    }
}

#[test]
fn two_at_least_once_processors_in_one_group_scale_out_and_survive_a_kill_losing_nothing() {
    scale_out(false);
}

#[test]
fn two_exactly_once_processors_in_one_group_scale_out_and_survive_a_kill_writing_each_record_once()
{
    scale_out(true);
}
