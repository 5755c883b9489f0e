//! `dlq produce`: guarded produce of NDJSON records to a Kafka topic.
//!
//! Delivery semantics (see `dlq_kafka::producer`): at-least-once, never
//! dropped. When the command exits 0, every line is in the primary topic,
//! in the DLQ (after its retries, or at once for a permanent failure), or
//! in the local spool (when the DLQ could not be written either).

use crate::Outcome;
use crate::cli::{Cli, Format, ProduceArgs};
use crate::commands::process::retry_policy;
use crate::output;
use anyhow::Context as _;
use dlq_kafka::KafkaConfig;
use dlq_kafka::config::redact_url;
use dlq_kafka::producer::{
    GuardedProducer, ProduceRecord, ProduceReport, ProducerConfig, spool_pending,
};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

/// `--format json`: the producer's report with what was read.
#[derive(Debug, Serialize)]
struct ProduceOutput<'a> {
    topic: &'a str,
    dlq: &'a str,
    spool: &'a str,
    lines: u64,
    blank_lines_skipped: u64,
    #[serde(flatten)]
    report: &'a ProduceReport,
}

/// The cluster of `--store`, which must be `kafka://`.
pub fn kafka_config(cli: &Cli, command: &str) -> anyhow::Result<KafkaConfig> {
    let url = cli.store_url();
    if !url.starts_with("kafka://") {
        anyhow::bail!(
            "{command} needs a Kafka cluster: pass --store kafka://HOST:PORT (or set DLQ_STORE), \
             not {}",
            redact_url(url)
        );
    }
    KafkaConfig::from_url(url).map_err(|e| anyhow::anyhow!("--store: {}", e.problems.join("; ")))
}

/// Opens the spool: the embedded store only (a spool must survive the
/// process and must not need the cluster that is down).
pub fn open_spool(url: &str) -> anyhow::Result<dlq_sqlite::SqliteStore> {
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "--spool {}: the spool is a local durable store, sqlite://PATH",
            redact_url(url)
        );
    }
    dlq_sqlite::SqliteStore::open_url(url).with_context(|| format!("opening the spool {url}"))
}

/// Runs `dlq produce`.
pub fn run(cli: &Cli, args: &ProduceArgs) -> anyhow::Result<Outcome> {
    let kafka = kafka_config(cli, "dlq produce")?;
    let spool = open_spool(&args.spool)?;
    let mut config = ProducerConfig::new(&args.topic);
    config.dlq = args.dlq.clone();
    config.retry = retry_policy(&args.retry)?;
    config.delivery_timeout = Duration::from_millis(args.delivery_timeout_ms);
    let default_dlq = format!("{}{}", kafka.dlq_prefix, args.topic);
    let sqs = crate::store::sqs_dlq(
        args.dlq.as_deref(),
        args.dlq_store.as_deref(),
        cli.store_url(),
        &default_dlq,
    )?;
    let mut producer = match sqs {
        Some(sqs) => {
            config.dlq = Some(sqs.queue);
            GuardedProducer::with_dlq_store(kafka, config, spool, Box::new(sqs.store))?
        }
        None => GuardedProducer::new(kafka, config, spool)?,
    };

    let reader: Box<dyn BufRead + Send> = if args.input == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(&args.input).with_context(|| format!("opening {}", args.input))?,
        ))
    };
    // Lines are read on their own thread, so that while the input is slow
    // (a pipe) the producer keeps serving deliveries, retries and dead
    // letters.
    let (tx, rx) = mpsc::sync_channel::<io::Result<Line>>(1024);
    let read_thread = std::thread::spawn(move || read_lines(reader, &tx));
    let bar = crate::progress::bar(None, &args.topic, !cli.no_progress);
    let (mut lines, mut blank) = (0u64, 0u64);
    // SIGINT/SIGTERM: take no further line, deliver what was accepted
    // (to the topic, the DLQ or the spool), report, exit 0.
    let stop = crate::shutdown::StopFlag::install()?;
    let mut stopped = false;
    loop {
        if stop.is_set() {
            stopped = true;
            break;
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Ok(Line::Record(record))) => {
                lines += 1;
                producer.send(ProduceRecord::value(record))?;
                bar.set_position(lines);
            }
            Ok(Ok(Line::Blank)) => {
                lines += 1;
                blank += 1;
            }
            Ok(Err(e)) => {
                // What was accepted so far is still delivered or stored.
                producer.flush()?;
                return Err(e).with_context(|| format!("reading {}", args.input));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => producer.poll(Duration::ZERO)?,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if stopped {
        // The reader may be blocked on a pipe that never ends: leave it;
        // lines it read but did not hand over were never accepted.
        drop(rx);
        eprintln!("stopping: {lines} lines accepted; delivering them before exiting");
    } else {
        let _ = read_thread.join();
    }
    let report = producer.flush()?;
    bar.finish_and_clear();
    let still_spooled = spool_pending(producer.spool())?;
    if still_spooled > 0 {
        eprintln!(
            "warning: {still_spooled} dead letters wait in the spool {} (Kafka was \
             unreachable); run `dlq spool flush --store ... --spool {}` once Kafka is back \
             (the next `dlq produce` also tries)",
            args.spool, args.spool
        );
    }
    let out = ProduceOutput {
        topic: &args.topic,
        dlq: producer.dlq(),
        spool: &args.spool,
        lines,
        blank_lines_skipped: blank,
        report: &report,
    };
    print(cli.format, &out)?;
    Ok(Outcome::Ok)
}

/// One input line.
enum Line {
    /// A record value.
    Record(Vec<u8>),
    /// A blank line, skipped.
    Blank,
}

/// Reads NDJSON lines until the end of the input (or a read error, sent
/// last).
fn read_lines(mut reader: Box<dyn BufRead + Send>, tx: &mpsc::SyncSender<io::Result<Line>>) {
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                // The line break is not part of the record (\n, or \r\n).
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                let item = if line.iter().all(u8::is_ascii_whitespace) {
                    Line::Blank
                } else {
                    Line::Record(line)
                };
                if tx.send(Ok(item)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

fn print(format: Format, o: &ProduceOutput<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Table => {
            let r = o.report;
            let mut rows = vec![
                vec!["sent".to_owned(), r.sent.to_string()],
                vec!["delivered".to_owned(), r.delivered.to_string()],
                vec!["retried".to_owned(), r.retried.to_string()],
                vec![
                    format!("dead_lettered ({})", o.dlq),
                    r.dead_lettered.to_string(),
                ],
                vec![format!("spooled ({})", o.spool), r.spooled.to_string()],
            ];
            if r.spool_flushed > 0 {
                rows.push(vec![
                    "spool_flushed".to_owned(),
                    r.spool_flushed.to_string(),
                ]);
            }
            for (class, n) in &r.by_error_class {
                rows.push(vec![format!("  {class}"), n.to_string()]);
            }
            output::table(&mut out, &["", "records"], &rows)?;
        }
        _ => output::json(&mut out, format, o)?,
    }
    Ok(())
}
