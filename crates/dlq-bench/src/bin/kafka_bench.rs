//! kafka_bench: dlq's Kafka components side by side with their baselines on
//! one broker, in one run: the four Kafka ratios of DESIGN.md.
//!
//! 1. **processor** — `dlq_kafka::processor::run_at_least_once` with a handler
//!    that returns the payload, against a plain rdkafka loop written here
//!    (`BaseConsumer::poll` → handler → `BaseProducer::send` with a delivery
//!    callback; the source offset stored after the acknowledgement, highest
//!    contiguous per partition; auto-commit, a synchronous commit at the end).
//! 2. **poison** — the same processor with a handler that fails permanently
//!    on 1% of the records (their payload starts with `{"poison":true`);
//!    the rate of the healthy records against the happy path of (1).
//! 3. **replay** — `dlq_core::replay::run_to_store` from an at-least-once store
//!    (`transactions=false`) of a DLQ topic of dead letters with binary
//!    payloads and headers, against `kcat -C … | kcat -P …` copying the same
//!    topic.
//! 4. **exactly-once replay** — the same replay with `transactions=true`
//!    against `transactions=false`, at 100-byte payloads.
//!
//! Not criterion: each run needs fresh topics, a fresh group or a fresh
//! ledger on a real broker, and takes seconds. Each comparison runs its
//! sides in rounds, alternating the order from round to round (A B, B A,
//! …), and reports the median rate of each side and their ratio
//! (**dlq rate ÷ baseline rate**; above 1 dlq is faster). Every run is
//! verified before it counts: the target holds all N records (read back, not
//! estimated from watermarks where transactions leave markers), the group
//! committed the source's end, the replay settled every record; the first
//! replay run of each side also checks every record's bytes.
//!
//! What is timed:
//! * processors: from the handler's first call (the group is joined) until
//!   the run returns with every output acknowledged and the offsets committed
//!   synchronously; the handler raises the stop flag when it has seen all N
//!   records, so no idle wait is timed. A poison run's store makes one
//!   warm-up commit first (its transactional producer's InitProducerId and
//!   first ledger read, paid once per process), reported but not timed;
//! * dlq replay: the `replay` call (its first scan reads the DLQ topic to
//!   build the store's index; opening the store, which creates the run's
//!   fresh ledger topic, is not timed);
//! * kcat: from spawning both processes until both have exited.
//!
//! Run it through `scripts/bench-kafka.sh` (installs kcat, builds in
//! release, starts the broker when needed); by hand:
//!
//! ```text
//! DLQ_KAFKA_BOOTSTRAP=127.0.0.1:19092 target/release/kafka_bench [--records N]
//!     [--replay-records N] [--eos-records N] [--replay-batch N] [--rounds R]
//!     [--only processor,replay,eos]
//! ```

/// The allocator of the `dlq` binary (crates/dlq-cli/src/main.rs), so that
/// dlq's side runs as the command does; the plain loop shares it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context as _, anyhow, bail, ensure};
use dlq_core::process::Handler;
use dlq_core::replay::{ReplayOptions, StoreOutputs, run_to_store};
use dlq_core::store::{DlqStore as _, Entry, Status};
use dlq_core::{DeadLetter, Failure, Header};
use dlq_kafka::processor::{
    FIRST_FAILED_AT_HEADER, ProcessorConfig, REPLAY_OF_HEADER, REPLAYS_HEADER, run_at_least_once,
};
use dlq_kafka::{KafkaConfig, KafkaStore};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Partitions of every topic the bench creates.
const PARTITIONS: i32 = 4;
/// Processor source payloads: bytes each (JSON).
const SOURCE_PAYLOAD: usize = 200;
/// One record in this many is poison in the source topic.
const POISON_EVERY: u64 = 100;
/// Marker at the start of a poison payload.
const POISON_MARK: &[u8] = br#"{"poison":true"#;
/// Replay (3): binary payload bytes each.
const BINARY_PAYLOAD: usize = 200;
/// Replay (4): payload bytes each.
const SMALL_PAYLOAD: usize = 100;
/// Dead letters per `KafkaStore::append`, as `dlq import` does.
const IMPORT_BATCH: usize = 1000;
/// kcat's key and message delimiters (ASCII unit and record separators):
/// never raw in an envelope, which is JSON (control characters escaped).
const KCAT_KEY_DELIM: &str = r"\x1f";
const KCAT_MSG_DELIM: &str = r"\x1e";

// ------------------------------------------------------------------ arguments

/// Quiet before each timed run, so that every side starts on a broker that
/// has finished the previous run's background work (log appends of the
/// run before, group and transaction bookkeeping): without it a run can
/// inherit the leftovers of the one before.
const DEFAULT_PAUSE: f64 = 3.0;

/// The `--pause` of this run (set once by `run`).
static PAUSE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Waits the `--pause` before a timed run.
fn quiet() {
    if let Some(p) = PAUSE.get() {
        std::thread::sleep(*p);
    }
}

struct Args {
    bootstrap: String,
    records: u64,
    replay_records: u64,
    eos_records: u64,
    /// Records per replay page (store commit); `dlq replay` uses 500.
    replay_batch: usize,
    rounds: usize,
    only: HashSet<String>,
    /// Seconds of quiet before each timed run.
    pause: f64,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            bootstrap: std::env::var("DLQ_KAFKA_BOOTSTRAP").unwrap_or_default(),
            records: 300_000,
            replay_records: 100_000,
            eos_records: 50_000,
            replay_batch: ReplayOptions::for_dlq("-").batch_size,
            rounds: 5,
            pause: DEFAULT_PAUSE,
            only: ["processor", "replay", "eos"]
                .into_iter()
                .map(String::from)
                .collect(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--bootstrap" => args.bootstrap = value()?,
                "--records" => args.records = value()?.parse().context("--records")?,
                "--replay-records" => {
                    args.replay_records = value()?.parse().context("--replay-records")?;
                }
                "--eos-records" => {
                    args.eos_records = value()?.parse().context("--eos-records")?;
                }
                "--replay-batch" => {
                    args.replay_batch = value()?.parse().context("--replay-batch")?;
                }
                "--rounds" => args.rounds = value()?.parse().context("--rounds")?,
                "--pause" => args.pause = value()?.parse().context("--pause")?,
                "--only" => args.only = value()?.split(',').map(String::from).collect(),
                "-h" | "--help" => {
                    eprintln!(
                        "usage: kafka_bench [--bootstrap HOST:PORT] [--records N] \
                         [--replay-records N] [--eos-records N] [--replay-batch N] \
                         [--rounds R] [--pause SECS] [--only processor,replay,eos]\n\
                         (bootstrap defaults to $DLQ_KAFKA_BOOTSTRAP; defaults: 300000 \
                         processor records, 100000 replay records, 50000 exactly-once \
                         replay records, replay pages of 500 as dlq replay, 5 rounds, \
                         {DEFAULT_PAUSE} s of quiet before each timed run)"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        ensure!(
            !args.bootstrap.is_empty(),
            "no broker: pass --bootstrap or set DLQ_KAFKA_BOOTSTRAP (scripts/bench-kafka.sh does)"
        );
        ensure!(args.rounds >= 1, "--rounds must be at least 1");
        ensure!(
            args.pause.is_finite() && args.pause >= 0.0,
            "--pause must be a number of seconds"
        );
        ensure!(args.replay_batch >= 1, "--replay-batch must be at least 1");
        ensure!(
            args.records >= POISON_EVERY,
            "--records must be at least {POISON_EVERY}"
        );
        ensure!(
            args.replay_records >= 1 && args.eos_records >= 1,
            "--replay-records and --eos-records must be at least 1"
        );
        Ok(args)
    }
}

// ------------------------------------------------------------------ results

/// One comparison: per round, the dlq rate and the baseline rate (records/s).
struct Comparison {
    title: &'static str,
    goal: f64,
    subject: &'static str,
    baseline: &'static str,
    rounds: Vec<(f64, f64)>,
    /// A line printed under the comparison's table.
    note: String,
}

impl Comparison {
    fn new(title: &'static str, goal: f64, subject: &'static str, baseline: &'static str) -> Self {
        Comparison {
            title,
            goal,
            subject,
            baseline,
            rounds: Vec::new(),
            note: String::new(),
        }
    }

    fn medians(&self) -> (f64, f64) {
        (
            median(self.rounds.iter().map(|r| r.0).collect()),
            median(self.rounds.iter().map(|r| r.1).collect()),
        )
    }

    fn ratio(&self) -> f64 {
        let (s, b) = self.medians();
        s / b
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(comparisons: &[Comparison]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| comparison | dlq | median records/s | baseline | median records/s | ratio | goal | met |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---:|---:|---|");
    for c in comparisons {
        let (s, b) = c.medians();
        let r = c.ratio();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}× | ≥ {:.2}× | {} |",
            c.title,
            c.subject,
            thousands(s),
            c.baseline,
            thousands(b),
            r,
            c.goal,
            if r >= c.goal { "yes" } else { "no" }
        );
    }
    for c in comparisons {
        let _ = writeln!(
            out,
            "\n{} — per round (records/s; ratio = dlq ÷ baseline)\n",
            c.title
        );
        let _ = writeln!(out, "| round | {} | {} | ratio |", c.subject, c.baseline);
        let _ = writeln!(out, "|---:|---:|---:|---:|");
        for (i, (s, b)) in c.rounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}× |",
                i + 1,
                thousands(*s),
                thousands(*b),
                s / b
            );
        }
        let (s, b) = c.medians();
        let _ = writeln!(
            out,
            "| median | {} | {} | {:.2}× |",
            thousands(s),
            thousands(b),
            s / b
        );
        if !c.note.is_empty() {
            let _ = writeln!(out, "\n{}", c.note);
        }
    }
    out
}

// ------------------------------------------------------------------ broker helpers

/// Runs a future to completion on this thread (the admin client's futures
/// are completed by its own thread; no runtime needed).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Topic administration and read-back for setup and verification (never
/// timed).
struct Broker {
    bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
    meta: BaseConsumer,
    /// Every topic this run created, deleted at the end.
    created: Mutex<Vec<String>>,
}

impl Broker {
    fn new(bootstrap: &str) -> anyhow::Result<Broker> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("admin client")?;
        let meta = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("metadata client")?;
        Ok(Broker {
            bootstrap: bootstrap.to_owned(),
            admin,
            meta,
            created: Mutex::new(Vec::new()),
        })
    }

    fn note(&self, topic: &str) {
        if let Ok(mut c) = self.created.lock() {
            c.push(topic.to_owned());
        }
    }

    /// Creates a topic with [`PARTITIONS`] partitions and waits for leaders.
    fn create(&self, topic: &str) -> anyhow::Result<()> {
        let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in block_on(self.admin.create_topics([&new], &opts))? {
            r.map_err(|(t, e)| anyhow!("creating {t}: {e}"))?;
        }
        self.note(topic);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = self
                .meta
                .fetch_metadata(Some(topic), Duration::from_secs(10))?;
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic)
                && t.error().is_none()
                && t.partitions().len() == PARTITIONS as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
            {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "topic {topic} not ready in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes every topic this run created (and the store topics named).
    fn cleanup(&self, extra: &[String]) {
        let mut names = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        names.extend_from_slice(extra);
        names.sort();
        names.dedup();
        if names.is_empty() {
            return;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        match block_on(self.admin.delete_topics(&refs, &opts)) {
            Ok(_) => eprintln!("deleted the {} topics of this run", names.len()),
            Err(e) => eprintln!("could not delete this run's topics: {e}"),
        }
    }

    /// `(low, high)` of each partition.
    fn watermarks(&self, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        (0..PARTITIONS)
            .map(|p| {
                self.meta
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .with_context(|| format!("watermarks of {topic}/{p}"))
            })
            .collect()
    }

    /// Records in a topic written without transactions (no control markers).
    fn count(&self, topic: &str) -> anyhow::Result<u64> {
        Ok(self
            .watermarks(topic)?
            .iter()
            .map(|(lo, hi)| (hi - lo) as u64)
            .sum())
    }

    /// Reads every committed record of a topic, from the beginning to its
    /// end at the time of the call (the end is the partition EOF event).
    fn read_all(
        &self,
        topic: &str,
        mut visit: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let consumer: BaseConsumer<QuietEof> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set(
                "group.id",
                format!("kbench-verify-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create_with_context(QuietEof)?;
        let marks = self.watermarks(topic)?;
        let mut tpl = TopicPartitionList::new();
        let mut todo: HashSet<i32> = HashSet::new();
        for (p, &(lo, hi)) in marks.iter().enumerate() {
            if hi > lo {
                tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
                todo.insert(p as i32);
            }
        }
        if todo.is_empty() {
            return Ok(0);
        }
        consumer.assign(&tpl)?;
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(300);
        while !todo.is_empty() {
            ensure!(Instant::now() < deadline, "reading {topic} timed out");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    n += 1;
                    visit(&m)?;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    todo.remove(&p);
                }
                Some(Err(e)) => bail!("reading {topic}: {e}"),
                None => {}
            }
        }
        Ok(n)
    }

    /// Whether `group` committed the end of every partition of `topic`.
    fn committed_to_end(&self, group: &str, topic: &str) -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let marks = self.watermarks(topic)?;
        for el in committed.elements() {
            let (_, hi) = marks[el.partition() as usize];
            ensure!(
                el.offset() == Offset::Offset(hi),
                "group {group} committed {:?} on {topic}/{}, not its end {hi}",
                el.offset(),
                el.partition()
            );
        }
        Ok(())
    }
}

/// A reader's context: the end of a partition is how the reader knows it is
/// done, not an error to log.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports it as a global error too.
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            eprintln!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// The producer settings both processor sides use: dlq's at-least-once
/// processor sets exactly these (on top of `client.id` and
/// `socket.timeout.ms` from the store's base config).
fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "dlq-kafka")
        .set("socket.timeout.ms", "30000")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    c
}

/// The consumer settings both processor sides use (dlq's at-least-once
/// processor's, see `processor::consumer`).
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "dlq-kafka")
        .set("socket.timeout.ms", "30000")
        .set("group.id", group)
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000");
    c
}

/// A store on the bench's own ledger and blob topics (never the shared
/// `dlq.ledger`, whose entries from other work a fresh store would read).
fn store_config(bootstrap: &str, ledger: &str, blobs: &str, transactions: bool) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.ledger_topic = ledger.to_owned();
    c.blob_topic = blobs.to_owned();
    c.replication_factor = Some(1);
    c.transactions = transactions;
    c
}

// ------------------------------------------------------------------ data

/// A small deterministic generator (xorshift64*).
fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn key_of(i: u64) -> Vec<u8> {
    format!("k{i:08}").into_bytes()
}

fn index_of(key: Option<&[u8]>) -> anyhow::Result<u64> {
    let k = key.ok_or_else(|| anyhow!("a record without a key"))?;
    std::str::from_utf8(k)
        .ok()
        .and_then(|s| s.strip_prefix('k'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("unexpected key {:?}", String::from_utf8_lossy(k)))
}

/// A JSON payload of exactly `len` bytes; poison ones start with
/// [`POISON_MARK`].
fn json_payload(i: u64, len: usize, poison: bool) -> Vec<u8> {
    let head = format!(
        r#"{{"poison":{poison},"event_id":"e{i}","market_id":"0x{:012x}","price":0.{:04},"pad":""#,
        i.wrapping_mul(2_654_435_761) & 0xffff_ffff_ffff,
        i % 10_000
    );
    let mut out = head.into_bytes();
    while out.len() + 2 < len {
        out.push(b'x');
    }
    out.extend_from_slice(b"\"}");
    out
}

fn is_poison(i: u64) -> bool {
    i % POISON_EVERY == POISON_EVERY / 2
}

/// Fills the processor source: `n` keyed JSON records, round-robin over
/// the partitions, 1 in [`POISON_EVERY`] marked as poison.
fn fill_source(bootstrap: &str, topic: &str, n: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = producer_config(bootstrap).create()?;
    for i in 0..n {
        let key = key_of(i);
        let value = json_payload(i, SOURCE_PAYLOAD, is_poison(i));
        let mut record = BaseRecord::to(topic)
            .key(key.as_slice())
            .payload(value.as_slice())
            .partition((i % PARTITIONS as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("filling {topic}: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// The dead letter replay (3) and (4) read back: `binary` ones carry a
/// binary payload and three headers (one of them binary), the others a
/// 100-byte JSON payload and no headers.
fn letter(source: &str, i: u64, binary: bool) -> DeadLetter {
    let partition = (i % PARTITIONS as u64) as i32;
    let offset = (i / PARTITIONS as u64) as i64;
    let failure = Failure::transient(
        "sink",
        "downstream.unavailable",
        "POST https://sink.invalid/events: 503 Service Unavailable",
    );
    let payload = if binary {
        bytes_from(i, BINARY_PAYLOAD)
    } else {
        json_payload(i, SMALL_PAYLOAD, false)
    };
    let mut l = DeadLetter::new(
        format!("kafka:{source}:{partition}:{offset}"),
        payload,
        &failure,
    );
    l.key = Some(key_of(i));
    l.source.system = "kafka".into();
    l.source.topic = Some(source.to_owned());
    l.source.partition = Some(partition);
    l.source.offset = Some(offset);
    l.attempts = 3;
    if binary {
        l.headers = original_headers(i);
    }
    l
}

fn original_headers(i: u64) -> Vec<Header> {
    vec![
        Header {
            name: "trace-id".into(),
            value: Some(format!("{:032x}", u128::from(i) * 0x9E37_79B9_7F4A_7C15).into_bytes()),
        },
        Header {
            name: "content-type".into(),
            value: Some(b"application/octet-stream".to_vec()),
        },
        Header {
            name: "sig".into(),
            value: Some(bytes_from(i ^ 0xABCD, 16)),
        },
    ]
}

/// Fills a DLQ topic with `n` dead letters through `KafkaStore::append`, in
/// batches of [`IMPORT_BATCH`] (what `dlq import` does).
fn fill_dlq(
    broker: &Broker,
    ledger: &str,
    blobs: &str,
    dlq: &str,
    source: &str,
    n: u64,
    binary: bool,
) -> anyhow::Result<()> {
    broker.create(dlq)?;
    let mut store = KafkaStore::open(store_config(&broker.bootstrap, ledger, blobs, true))?;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut appended = 0;
    for i in 0..n {
        batch.push(Entry {
            dlq: dlq.to_owned(),
            letter: letter(source, i, binary),
            status: Status::Pending,
        });
        if batch.len() == IMPORT_BATCH || i + 1 == n {
            appended += store.append(&batch)?.appended as u64;
            batch.clear();
        }
    }
    ensure!(appended == n, "filling {dlq}: appended {appended} of {n}");
    Ok(())
}

// ------------------------------------------------------------------ processors

/// What a processor run measured.
struct Measured {
    /// Records handled (delivered or dead-lettered).
    records: u64,
    /// Records delivered to the output.
    delivered: u64,
    secs: f64,
    /// The store's first commit in this process (poison runs; not timed).
    cold_start: Option<f64>,
}

/// Wraps a handler: notes the first call and raises the stop flag once all
/// `target` records were handled.
struct Counting<'a, F> {
    inner: F,
    target: u64,
    seen: u64,
    first: Option<Instant>,
    stop: &'a AtomicBool,
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, Failure>> Handler for Counting<'_, F> {
    fn handle(&mut self, payload: &[u8], _attempt: u32) -> Result<Vec<u8>, Failure> {
        if self.first.is_none() {
            self.first = Some(Instant::now());
        }
        self.seen += 1;
        if self.seen >= self.target {
            self.stop.store(true, Ordering::Relaxed);
        }
        (self.inner)(payload)
    }
}

fn pass(payload: &[u8]) -> Result<Vec<u8>, Failure> {
    Ok(payload.to_vec())
}

fn pass_unless_poison(payload: &[u8]) -> Result<Vec<u8>, Failure> {
    if payload.starts_with(POISON_MARK) {
        return Err(Failure::permanent(
            "validate",
            "bench.poison",
            "poison record: rejected for good",
        ));
    }
    Ok(payload.to_vec())
}

/// Names shared by a run's processor runs.
struct ProcessorSetup<'a> {
    broker: &'a Broker,
    source: String,
    ledger: String,
    blobs: String,
    n: u64,
    poison: u64,
}

fn run_dlq_processor(s: &ProcessorSetup<'_>, poison: bool) -> anyhow::Result<Measured> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let output = format!("kbench-out-{id}");
    let group = format!("kbench-dlq-{id}");
    s.broker.create(&output)?;
    let mut store = KafkaStore::open(store_config(&s.broker.bootstrap, &s.ledger, &s.blobs, true))?;
    let mut cfg = ProcessorConfig::new(&s.source, &group, &output);
    cfg.dlq_topic = format!("dlq.kbench-{id}");
    s.broker.note(&cfg.dlq_topic);
    // A safety net only: the handler stops the run after N records.
    cfg.stop_when_idle = Some(Duration::from_secs(2));
    // The first commit of a store creates its transactional producer
    // (InitProducerId) and reads its ledger: once per process, not per dead
    // letter. A long-running processor has paid it long ago, so it is paid
    // here before the timed window, and reported on its own.
    let cold_start = if poison {
        let warm = Entry {
            dlq: format!("dlq.kbench-{id}-warmup"),
            letter: letter(&s.source, u64::MAX / 2, false),
            status: Status::Pending,
        };
        s.broker.note(&warm.dlq);
        let t = Instant::now();
        store.append(&[warm])?;
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    quiet();
    let stop = AtomicBool::new(false);
    let inner: fn(&[u8]) -> Result<Vec<u8>, Failure> =
        if poison { pass_unless_poison } else { pass };
    let mut handler = Counting {
        inner,
        target: s.n,
        seen: 0,
        first: None,
        stop: &stop,
    };
    let stats = run_at_least_once(&mut store, &cfg, &mut handler, &stop)?;
    let end = Instant::now();
    let first = handler.first.ok_or_else(|| anyhow!("no record handled"))?;
    let dead = if poison { s.poison } else { 0 };
    ensure!(
        handler.seen == s.n,
        "dlq processor handled {} of {} records",
        handler.seen,
        s.n
    );
    ensure!(
        stats.delivered == s.n - dead && stats.dead_lettered == dead,
        "dlq processor: delivered {}, dead-lettered {} (expected {} and {dead})",
        stats.delivered,
        stats.dead_lettered,
        s.n - dead
    );
    let out = s.broker.count(&output)?;
    ensure!(
        out == s.n - dead,
        "{output} holds {out} records, not {}",
        s.n - dead
    );
    if poison {
        let in_dlq = s.broker.read_all(&cfg.dlq_topic, |_| Ok(()))?;
        ensure!(
            in_dlq == dead,
            "{} holds {in_dlq} dead letters, not {dead}",
            cfg.dlq_topic
        );
    }
    s.broker.committed_to_end(&group, &s.source)?;
    Ok(Measured {
        records: s.n,
        delivered: s.n - dead,
        secs: (end - first).as_secs_f64(),
        cold_start,
    })
}

/// Delivery reports of the plain loop: `(token, delivered)`.
#[derive(Default)]
struct PlainAcks {
    acks: Mutex<Vec<(usize, bool)>>,
}

impl ClientContext for PlainAcks {}

impl ProducerContext for PlainAcks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        if let Ok(mut a) = self.acks.lock() {
            a.push((token, result.is_ok()));
        }
    }
}

/// Offsets of one source partition consumed and not yet acknowledged, in
/// order; the front's acknowledged prefix is what may be committed.
#[derive(Default)]
struct PlainPartition {
    offsets: VecDeque<(i64, bool)>,
}

const OFFSET_BITS: u32 = 48;

fn token(partition: i32, offset: i64) -> usize {
    ((partition as usize) << OFFSET_BITS) | (offset as usize)
}

fn untoken(token: usize) -> (i32, i64) {
    (
        (token >> OFFSET_BITS) as i32,
        (token & ((1 << OFFSET_BITS) - 1)) as i64,
    )
}

/// The baseline: a plain at-least-once consume → produce loop.
fn run_plain_loop(s: &ProcessorSetup<'_>) -> anyhow::Result<Measured> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let output = format!("kbench-out-{id}");
    let group = format!("kbench-plain-{id}");
    s.broker.create(&output)?;
    quiet();
    let consumer: BaseConsumer = consumer_config(&s.broker.bootstrap, &group).create()?;
    consumer.subscribe(&[s.source.as_str()])?;
    let producer: BaseProducer<PlainAcks> =
        producer_config(&s.broker.bootstrap).create_with_context(PlainAcks::default())?;
    let mut parts: HashMap<i32, PlainPartition> = HashMap::new();
    let mut in_flight = 0u64;
    let mut consumed = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(300);

    // Marks acknowledged offsets and stores each partition's highest
    // contiguous acknowledged offset for the next auto-commit.
    let settle =
        |parts: &mut HashMap<i32, PlainPartition>, in_flight: &mut u64| -> anyhow::Result<()> {
            let acks = match producer.context().acks.lock() {
                Ok(mut a) => std::mem::take(&mut *a),
                Err(_) => bail!("ack lock poisoned"),
            };
            if acks.is_empty() {
                return Ok(());
            }
            for (t, ok) in acks {
                ensure!(ok, "the plain loop lost a delivery");
                *in_flight -= 1;
                let (p, o) = untoken(t);
                if let Some(pp) = parts.get_mut(&p)
                    && let Ok(i) = pp.offsets.binary_search_by_key(&o, |e| e.0)
                {
                    pp.offsets[i].1 = true;
                }
            }
            let mut tpl = TopicPartitionList::new();
            for (&p, pp) in parts.iter_mut() {
                let mut next = None;
                while let Some(&(o, true)) = pp.offsets.front() {
                    pp.offsets.pop_front();
                    next = Some(o + 1);
                }
                if let Some(n) = next {
                    tpl.add_partition_offset(&s.source, p, Offset::Offset(n))?;
                }
            }
            if tpl.count() > 0 {
                consumer.store_offsets(&tpl)?;
            }
            Ok(())
        };

    while consumed < s.n {
        ensure!(Instant::now() < deadline, "the plain loop timed out");
        producer.poll(Duration::ZERO);
        settle(&mut parts, &mut in_flight)?;
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                consumed += 1;
                let (p, o) = (m.partition(), m.offset());
                parts.entry(p).or_default().offsets.push_back((o, false));
                let out = pass(m.payload().unwrap_or_default())
                    .map_err(|f| anyhow!("handler: {}", f.message))?;
                let mut record: BaseRecord<'_, [u8], [u8], usize> =
                    BaseRecord::with_opaque_to(&output, token(p, o)).payload(out.as_slice());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(h) = m.headers() {
                    record = record.headers(h.detach());
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => bail!("producing: {e}"),
                    }
                }
                in_flight += 1;
            }
            Some(Err(e)) => eprintln!("plain loop: consumer error: {e}"),
            None => {}
        }
    }
    while in_flight > 0 {
        ensure!(Instant::now() < deadline, "the plain loop timed out");
        producer.poll(Duration::from_millis(1));
        settle(&mut parts, &mut in_flight)?;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => bail!("committing: {e}"),
    }
    // The timed window ends where dlq's does: `run_at_least_once` returns
    // after closing its consumer (leaving the group) and its producer.
    drop(consumer);
    drop(producer);
    let end = Instant::now();
    let first = first.ok_or_else(|| anyhow!("no record consumed"))?;
    let out = s.broker.count(&output)?;
    ensure!(out == s.n, "{output} holds {out} records, not {}", s.n);
    s.broker.committed_to_end(&group, &s.source)?;
    Ok(Measured {
        records: s.n,
        delivered: s.n,
        secs: (end - first).as_secs_f64(),
        cold_start: None,
    })
}

fn processors(
    broker: &Broker,
    run: &str,
    n: u64,
    rounds: usize,
    store_topics: &mut Vec<String>,
) -> anyhow::Result<[Comparison; 2]> {
    let source = format!("kbench-{run}-source");
    broker.create(&source)?;
    let t = Instant::now();
    fill_source(&broker.bootstrap, &source, n)?;
    let poison = (0..n).filter(|&i| is_poison(i)).count() as u64;
    ensure!(broker.count(&source)? == n, "the source does not hold {n}");
    eprintln!(
        "processor source {source}: {n} records of {SOURCE_PAYLOAD} B, {poison} poison, filled in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let setup = ProcessorSetup {
        broker,
        source,
        ledger: format!("kbench-{run}-ledger"),
        blobs: format!("kbench-{run}-blobs"),
        n,
        poison,
    };
    store_topics.extend([setup.ledger.clone(), setup.blobs.clone()]);
    let mut happy_vs_plain = Comparison::new(
        "1. processor happy path vs plain rdkafka loop",
        0.95,
        "dlq processor",
        "plain loop",
    );
    let mut poison_vs_happy = Comparison::new(
        "2. processor with 1% poison vs happy path",
        0.9,
        "dlq with 1% poison (healthy records/s)",
        "dlq happy path",
    );
    let mut cold_starts = Vec::new();
    for round in 0..rounds {
        let order: [u8; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        let mut rates = [0.0f64; 3];
        for side in order {
            let m = match side {
                0 => run_plain_loop(&setup)?,
                1 => run_dlq_processor(&setup, false)?,
                _ => run_dlq_processor(&setup, true)?,
            };
            // Healthy records per second: what was delivered.
            rates[side as usize] = m.delivered as f64 / m.secs;
            eprintln!(
                "  round {} {:<12} {:>7} records in {:>6.3}s: {:>9} delivered/s{}",
                round + 1,
                ["plain", "dlq", "dlq+poison"][side as usize],
                m.records,
                m.secs,
                thousands(rates[side as usize]),
                m.cold_start
                    .map(|c| format!(" (store cold start {:.0} ms, not timed)", c * 1e3))
                    .unwrap_or_default()
            );
            if let Some(c) = m.cold_start {
                cold_starts.push(c);
            }
        }
        happy_vs_plain.rounds.push((rates[1], rates[0]));
        poison_vs_happy.rounds.push((rates[2], rates[1]));
    }
    poison_vs_happy.note = format!(
        "Before each poison run the store made one warm-up commit (its transactional \
         producer's InitProducerId and first ledger read, once per process): median {:.0} ms, \
         not timed.",
        median(cold_starts) * 1e3
    );
    Ok([happy_vs_plain, poison_vs_happy])
}

// ------------------------------------------------------------------ replay

/// Names shared by a run's replay runs.
struct ReplaySetup<'a> {
    broker: &'a Broker,
    run: &'a str,
    blobs: String,
    dlq: String,
    n: u64,
    binary: bool,
    /// Records per replay page.
    batch: usize,
}

/// One dlq replay of the whole DLQ into a fresh target, on a fresh ledger
/// (so that every record of the DLQ topic is pending again).
fn run_dlq_replay(
    s: &ReplaySetup<'_>,
    transactions: bool,
    verify: bool,
    store_topics: &mut Vec<String>,
) -> anyhow::Result<f64> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let target = format!("kbench-target-{id}");
    let ledger = format!("kbench-{}-ledger-{id}", s.run);
    store_topics.push(ledger.clone());
    s.broker.create(&target)?;
    let mut store = KafkaStore::open(store_config(
        &s.broker.bootstrap,
        &ledger,
        &s.blobs,
        transactions,
    ))?;
    let mut options = ReplayOptions::for_dlq(&s.dlq);
    options.batch_size = s.batch;
    quiet();
    let t = Instant::now();
    let outputs = StoreOutputs::kafka(Some(&target));
    let report = run_to_store(&mut store, &outputs, &options, None)?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        report.replayed == s.n && report.selected == s.n,
        "replay settled {} of {} (selected {})",
        report.replayed,
        s.n,
        report.selected
    );
    let mut seen = vec![false; s.n as usize];
    let got = s.broker.read_all(&target, |m| {
        if !verify {
            return Ok(());
        }
        let i = index_of(m.key())?;
        ensure!(i < s.n, "unexpected key index {i}");
        ensure!(!seen[i as usize], "record {i} replayed twice");
        seen[i as usize] = true;
        let want = letter("x", i, s.binary);
        ensure!(
            m.payload().unwrap_or_default() == want.payload.as_slice(),
            "record {i}: payload differs from the dead letter's"
        );
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let originals = want.headers.len();
        ensure!(
            headers.len() == originals + 3,
            "record {i}: {} headers, expected {}",
            headers.len(),
            originals + 3
        );
        for (h, w) in headers.iter().zip(&want.headers) {
            ensure!(
                h.0 == w.name && h.1 == w.value,
                "record {i}: header {} differs",
                w.name
            );
        }
        let lineage: Vec<&str> = headers[originals..].iter().map(|h| h.0.as_str()).collect();
        ensure!(
            lineage == [REPLAY_OF_HEADER, REPLAYS_HEADER, FIRST_FAILED_AT_HEADER],
            "record {i}: lineage headers {lineage:?}"
        );
        Ok(())
    })?;
    ensure!(got == s.n, "{target} holds {got} records, not {}", s.n);
    if verify {
        ensure!(seen.iter().all(|&b| b), "records missing from {target}");
        eprintln!(
            "  verified {target}: all {} records byte-exact (payload{}), with lineage headers",
            s.n,
            if s.binary {
                ", key, 3 original headers"
            } else {
                ", key"
            }
        );
    }
    Ok(secs)
}

/// `kcat -C | kcat -P`: copies the DLQ topic into a fresh target, keys kept.
fn run_kcat_copy(s: &ReplaySetup<'_>, verify: bool) -> anyhow::Result<f64> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let target = format!("kbench-target-{id}");
    s.broker.create(&target)?;
    let b = &s.broker.bootstrap;
    let format = format!("%k{KCAT_KEY_DELIM}%s{KCAT_MSG_DELIM}");
    quiet();
    let t = Instant::now();
    let mut consume = Command::new("kcat")
        .args(["-C", "-q", "-b", b, "-t", &s.dlq, "-o", "beginning", "-e"])
        .args(["-X", "isolation.level=read_committed", "-f", &format])
        .stdout(Stdio::piped())
        .spawn()
        .context("running kcat (scripts/bench-kafka.sh installs it)")?;
    let pipe = consume
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no kcat stdout"))?;
    let mut produce = Command::new("kcat")
        .args(["-P", "-q", "-b", b, "-t", &target])
        .args(["-K", KCAT_KEY_DELIM, "-D", KCAT_MSG_DELIM])
        // The settings of the store's producer (client.rs, ensure_producer).
        .args(["-X", "enable.idempotence=true", "-X", "acks=all"])
        .args(["-X", "linger.ms=5", "-X", "batch.size=1048576"])
        .stdin(Stdio::from(pipe))
        .spawn()
        .context("running kcat -P")?;
    let c = consume.wait()?;
    let p = produce.wait()?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(c.success() && p.success(), "kcat failed: {c}, {p}");
    let got = s.broker.count(&target)?;
    ensure!(got == s.n, "kcat copied {got} records, not {}", s.n);
    if verify {
        let mut dlq: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        s.broker.read_all(&s.dlq, |m| {
            dlq.insert(
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            );
            Ok(())
        })?;
        let mut with_headers = 0u64;
        let mut raw_payloads = 0u64;
        s.broker.read_all(&target, |m| {
            let key = m.key().unwrap_or_default();
            let want = dlq
                .remove(key)
                .ok_or_else(|| anyhow!("kcat: unexpected or repeated key"))?;
            ensure!(
                m.payload().unwrap_or_default() == want.as_slice(),
                "kcat changed a value"
            );
            if m.headers().is_some_and(|h| h.count() > 0) {
                with_headers += 1;
            }
            let i = index_of(Some(key))?;
            if m.payload().unwrap_or_default() == letter("x", i, s.binary).payload.as_slice() {
                raw_payloads += 1;
            }
            Ok(())
        })?;
        ensure!(dlq.is_empty(), "kcat left {} records out", dlq.len());
        eprintln!(
            "  verified {target}: keys and values byte-identical to the DLQ topic's \
             (the envelopes); {with_headers} records with Kafka headers, {raw_payloads} with \
             the original payload as the value"
        );
    }
    Ok(secs)
}

fn replays(
    broker: &Broker,
    run: &str,
    (n, eos_n, batch): (u64, u64, usize),
    rounds: usize,
    only: &HashSet<String>,
    store_topics: &mut Vec<String>,
) -> anyhow::Result<Vec<Comparison>> {
    let fill_ledger = format!("kbench-{run}-fill-ledger");
    let blobs = format!("kbench-{run}-blobs");
    store_topics.extend([fill_ledger.clone(), blobs.clone()]);
    let mut out = Vec::new();
    if only.contains("replay") {
        let s = ReplaySetup {
            broker,
            run,
            blobs: blobs.clone(),
            dlq: format!("dlq.kbench-{run}-binary"),
            n,
            binary: true,
            batch,
        };
        let t = Instant::now();
        fill_dlq(
            broker,
            &fill_ledger,
            &blobs,
            &s.dlq,
            &format!("kbench-{run}-orders"),
            n,
            true,
        )?;
        eprintln!(
            "DLQ {}: {n} dead letters ({BINARY_PAYLOAD}-byte binary payloads, 3 headers) \
             imported in {:.1}s",
            s.dlq,
            t.elapsed().as_secs_f64()
        );
        let mut c = Comparison::new(
            "3. replay (at-least-once) vs kcat -C \\| kcat -P",
            1.0,
            "dlq replay",
            "kcat \\| kcat",
        );
        for round in 0..rounds {
            let verify = round == 0;
            let (dlq_secs, kcat_secs) = if round % 2 == 0 {
                let k = run_kcat_copy(&s, verify)?;
                (run_dlq_replay(&s, false, verify, store_topics)?, k)
            } else {
                let d = run_dlq_replay(&s, false, verify, store_topics)?;
                (d, run_kcat_copy(&s, verify)?)
            };
            eprintln!(
                "  round {} replay {:.3}s ({} records/s), kcat {:.3}s ({} records/s)",
                round + 1,
                dlq_secs,
                thousands(n as f64 / dlq_secs),
                kcat_secs,
                thousands(n as f64 / kcat_secs)
            );
            c.rounds.push((n as f64 / dlq_secs, n as f64 / kcat_secs));
        }
        out.push(c);
    }
    if only.contains("eos") {
        let n = eos_n;
        let s = ReplaySetup {
            broker,
            run,
            blobs,
            dlq: format!("dlq.kbench-{run}-small"),
            n,
            binary: false,
            batch,
        };
        let t = Instant::now();
        fill_dlq(
            broker,
            &fill_ledger,
            &s.blobs,
            &s.dlq,
            &format!("kbench-{run}-prices"),
            n,
            false,
        )?;
        eprintln!(
            "DLQ {}: {n} dead letters ({SMALL_PAYLOAD}-byte payloads) imported in {:.1}s",
            s.dlq,
            t.elapsed().as_secs_f64()
        );
        let mut c = Comparison::new(
            "4. exactly-once replay vs at-least-once replay",
            0.85,
            "replay transactions=true",
            "replay transactions=false",
        );
        for round in 0..rounds {
            let verify = round == 0;
            let (eos, alo) = if round % 2 == 0 {
                let a = run_dlq_replay(&s, false, verify, store_topics)?;
                (run_dlq_replay(&s, true, verify, store_topics)?, a)
            } else {
                let e = run_dlq_replay(&s, true, verify, store_topics)?;
                (e, run_dlq_replay(&s, false, verify, store_topics)?)
            };
            eprintln!(
                "  round {} exactly-once {:.3}s ({} records/s), at-least-once {:.3}s ({} records/s)",
                round + 1,
                eos,
                thousands(n as f64 / eos),
                alo,
                thousands(n as f64 / alo)
            );
            c.rounds.push((n as f64 / eos, n as f64 / alo));
        }
        out.push(c);
    }
    Ok(out)
}

// ------------------------------------------------------------------ main

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let _ = PAUSE.set(Duration::from_secs_f64(args.pause));
    let broker = Broker::new(&args.bootstrap)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let started = Instant::now();
    let load_before = loadavg();
    eprintln!(
        "kafka_bench run {run} on {}: {} processor records, {} replay records, {} exactly-once \
         replay records, {} rounds",
        args.bootstrap, args.records, args.replay_records, args.eos_records, args.rounds
    );
    let mut store_topics = Vec::new();
    let result = (|| -> anyhow::Result<Vec<Comparison>> {
        let mut all = Vec::new();
        if args.only.contains("processor") {
            all.extend(processors(
                &broker,
                &run,
                args.records,
                args.rounds,
                &mut store_topics,
            )?);
        }
        if args.only.contains("replay") || args.only.contains("eos") {
            all.extend(replays(
                &broker,
                &run,
                (args.replay_records, args.eos_records, args.replay_batch),
                args.rounds,
                &args.only,
                &mut store_topics,
            )?);
        }
        Ok(all)
    })();
    broker.cleanup(&store_topics);
    let comparisons = result?;
    println!(
        "\nKafka ratios (ratio = dlq rate ÷ baseline rate; medians of {} rounds, sides \
         alternated; {} partitions per topic; {} processor records, {} replay records, {} \
         exactly-once replay records, replay pages of {}; broker {})\n",
        args.rounds,
        PARTITIONS,
        args.records,
        args.replay_records,
        args.eos_records,
        args.replay_batch,
        args.bootstrap
    );
    print!("{}", report(&comparisons));
    println!(
        "\nload average before {load_before}, after {}; whole run {:.0}s",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roundtrip_partition_and_offset() {
        for (p, o) in [(0, 0), (3, 12_345_678), (127, (1 << OFFSET_BITS) - 1)] {
            assert_eq!(untoken(token(p, o)), (p, o));
        }
    }

    #[test]
    fn payloads_have_their_size_and_poison_marks() {
        assert_eq!(json_payload(7, SOURCE_PAYLOAD, false).len(), SOURCE_PAYLOAD);
        assert_eq!(json_payload(7, SMALL_PAYLOAD, false).len(), SMALL_PAYLOAD);
        assert!(json_payload(7, SOURCE_PAYLOAD, true).starts_with(POISON_MARK));
        assert!(!json_payload(7, SOURCE_PAYLOAD, false).starts_with(POISON_MARK));
        assert!(serde_json::from_slice::<serde_json::Value>(&json_payload(9, 100, true)).is_ok());
        let poison = (0..1000).filter(|&i| is_poison(i)).count();
        assert_eq!(poison, 10, "1% poison");
        assert!(pass_unless_poison(&json_payload(50, 200, true)).is_err());
        assert!(pass_unless_poison(&json_payload(51, 200, false)).is_ok());
    }

    #[test]
    fn binary_payloads_are_binary_and_deterministic() {
        let a = bytes_from(3, BINARY_PAYLOAD);
        assert_eq!(a, bytes_from(3, BINARY_PAYLOAD));
        assert_ne!(a, bytes_from(4, BINARY_PAYLOAD));
        assert!(std::str::from_utf8(&a).is_err(), "not UTF-8");
        assert_eq!(index_of(Some(&key_of(42))).unwrap_or(0), 42);
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut c = Comparison::new("t", 1.0, "a", "b");
        c.rounds = vec![(10.0, 20.0), (30.0, 20.0), (20.0, 40.0)];
        assert_eq!(c.medians(), (20.0, 20.0));
        assert_eq!(c.ratio(), 1.0);
        assert!(report(&[c]).contains("| 1.00× |"));
    }
}
