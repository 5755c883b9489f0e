//! `dlq monitor`: sample every DLQ at an interval, keep the history,
//! evaluate alert rules and notify (see docs/monitoring.md).
//!
//! Each tick is one transaction in the history (samples, alert states,
//! queued notifications), so stopping the monitor at any moment (Ctrl-C)
//! loses at most the tick in progress, and a restart notifies nothing twice.

use crate::Outcome;
use crate::cli::{Cli, Format, MonitorArgs};
use crate::output;
use crate::store::AnyStore;
use anyhow::Context as _;
use chrono::Utc;
use dlq_kafka::KafkaConfig;
use dlq_monitor::{
    History, Monitor, MonitorConfig, RetentionSource, StoreGauge, StoreGaugeSource, TickReport,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The history file when neither the config nor the store gives one.
const DEFAULT_HISTORY: &str = "dlq-monitor.db";

/// How long a topic's retention.ms is trusted before it is read again.
const RETENTION_TTL: Duration = Duration::from_secs(600);

/// The rule in effect without a config: the seed's "DLQ size > 1000".
pub(crate) const DEFAULT_CONFIG: &str = r#"
[[rule]]
name = "dlq-size"
kind = "size"
above = 1000
"#;

/// Runs `dlq monitor`.
pub fn run(cli: &Cli, args: &MonitorArgs) -> anyhow::Result<Outcome> {
    let mut config = load_config(args)?;
    if let Some(i) = args.interval {
        config.interval = i;
    }
    if let Some(a) = args.metrics_listen {
        config.metrics_listen = Some(a);
    }
    if let Some(h) = &args.history {
        config.history = Some(h.clone());
    }
    let store = crate::store::open(cli.store_url())?;
    let history = open_history(&config, &store)?;
    let history_label = history.label().to_owned();
    let _metrics = super::serve_metrics(config.metrics_listen)?;
    let interval = config.interval;
    let mut monitor = Monitor::new(config, history)?;
    if let AnyStore::Kafka(k) = &store {
        monitor.set_retention_source(KafkaRetention::new(k.config().clone()));
    }
    if let AnyStore::Sqs(s) = &store {
        monitor.set_store_gauge_source(SqsQueueGauges::new(s.config())?);
    }

    if args.once {
        let report = monitor.tick(&store, Utc::now())?;
        print(cli.format, &history_label, &report, true)?;
        return Ok(if report.samples.is_empty() {
            Outcome::NothingMatched
        } else {
            Outcome::Ok
        });
    }
    // SIGINT/SIGTERM: finish the sample being taken (its alerts and
    // history are written), then exit 0.
    let stop = crate::shutdown::StopFlag::install()?;
    eprintln!(
        "monitoring {} every {} (history: {history_label}); Ctrl-C stops",
        dlq_kafka::config::redact_url(cli.store_url()),
        dlq_monitor::format_duration(interval)
    );
    while !stop.is_set() {
        let started = Instant::now();
        match monitor.tick(&store, Utc::now()) {
            Ok(report) => print(cli.format, &history_label, &report, false)?,
            // A store that is down for a while must not end the monitor.
            Err(e) if e.is_retriable() || matches!(e, dlq_monitor::Error::Store(_)) => {
                tracing::warn!(error = %e, "monitor tick failed; trying again at the next tick");
                eprintln!("warning: {e}");
            }
            Err(e) => return Err(e.into()),
        }
        // Sleep in short steps, so that a stop does not wait for the
        // whole interval.
        let next = started + interval;
        while !stop.is_set() {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
    eprintln!("monitor stopped");
    Ok(Outcome::Ok)
}

fn load_config(args: &MonitorArgs) -> anyhow::Result<MonitorConfig> {
    let (text, source) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the monitor config {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_CONFIG.to_owned(), "the built-in config".to_owned()),
    };
    MonitorConfig::from_toml(&text).with_context(|| {
        format!("{source}: fix the config (every problem is listed; see docs/monitoring.md)")
    })
}

/// The history: the config's file, else the embedded store's own file,
/// else `dlq-monitor.db`.
pub(crate) fn open_history(config: &MonitorConfig, store: &AnyStore) -> anyhow::Result<History> {
    match history_file(config, store) {
        None => Ok(History::open_in_memory()?),
        Some(path) => History::open(&path)
            .with_context(|| format!("opening the monitor history {}", path.display())),
    }
}

/// The history's file (`None`: an in-memory store keeps it in memory too).
pub(crate) fn history_file(config: &MonitorConfig, store: &AnyStore) -> Option<PathBuf> {
    Some(match (&config.history, store) {
        (Some(p), _) => p.clone(),
        (None, AnyStore::Sqlite(s)) if s.path().as_os_str() == ":memory:" => return None,
        (None, AnyStore::Sqlite(s)) => s.path().to_path_buf(),
        (None, _) => PathBuf::from(DEFAULT_HISTORY),
    })
}

/// The `retention.ms` of Kafka DLQ topics, read at most every ten minutes.
pub(crate) struct KafkaRetention {
    config: KafkaConfig,
    cache: BTreeMap<String, (Instant, Option<Duration>)>,
}

impl KafkaRetention {
    pub(crate) fn new(config: KafkaConfig) -> Self {
        KafkaRetention {
            config,
            cache: BTreeMap::new(),
        }
    }
}

impl RetentionSource for KafkaRetention {
    fn retention(&mut self, dlqs: &[String]) -> BTreeMap<String, Option<Duration>> {
        let stale: Vec<&str> = dlqs
            .iter()
            .filter(|d| {
                self.cache
                    .get(d.as_str())
                    .is_none_or(|(at, _)| at.elapsed() > RETENTION_TTL)
            })
            .map(String::as_str)
            .collect();
        if !stale.is_empty() {
            match dlq_kafka::retention::topic_retention_ms(&self.config, &stale) {
                Ok(found) => {
                    let now = Instant::now();
                    for (topic, ms) in found {
                        let d = ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                        self.cache.insert(topic, (now, d));
                    }
                }
                // The config's retention is used meanwhile; errors never
                // carry credentials.
                Err(e) => tracing::warn!(error = %e, "reading the DLQ topics' retention.ms"),
            }
        }
        dlqs.iter()
            .filter_map(|d| self.cache.get(d).map(|(_, r)| (d.clone(), *r)))
            .collect()
    }
}

/// The approximate counts of SQS DLQ queues, from their attributes (one
/// `GetQueueAttributes` per queue and tick: nothing is received, so no
/// receive count rises and nothing is hidden).
pub(crate) struct SqsQueueGauges {
    client: dlq_sqs::client::Client,
}

impl SqsQueueGauges {
    /// A client of its own on the store's region and endpoint.
    pub(crate) fn new(config: &dlq_sqs::SqsConfig) -> anyhow::Result<SqsQueueGauges> {
        Ok(SqsQueueGauges {
            client: dlq_sqs::client::Client::new(config)?,
        })
    }
}

impl StoreGaugeSource for SqsQueueGauges {
    fn gauges(&mut self, dlqs: &[String]) -> BTreeMap<String, Vec<StoreGauge>> {
        let mut out = BTreeMap::new();
        for dlq in dlqs {
            match dlq_sqs::QueueCounts::of(&self.client, dlq) {
                Ok(Some(c)) => {
                    let gauge = |name, help, value: u64| StoreGauge {
                        name,
                        help,
                        value: value as f64,
                    };
                    out.insert(
                        dlq.clone(),
                        vec![
                            gauge(
                                "dlq_sqs_visible_messages",
                                "Messages of the SQS queue ready to be received \
                                 (ApproximateNumberOfMessages).",
                                c.visible,
                            ),
                            gauge(
                                "dlq_sqs_in_flight_messages",
                                "Messages of the SQS queue received and not yet deleted \
                                 (ApproximateNumberOfMessagesNotVisible).",
                                c.in_flight,
                            ),
                            gauge(
                                "dlq_sqs_delayed_messages",
                                "Messages of the SQS queue whose delay is not over \
                                 (ApproximateNumberOfMessagesDelayed).",
                                c.delayed,
                            ),
                        ],
                    );
                }
                // A DLQ the index knows whose queue is gone: no gauges.
                Ok(None) => {}
                Err(e) => tracing::warn!(dlq, error = %e, "reading the SQS queue's counts"),
            }
        }
        out
    }
}

/// `--format json` of one tick.
#[derive(Serialize)]
struct Report<'a> {
    at: chrono::DateTime<Utc>,
    history: &'a str,
    dlqs: &'a [dlq_monitor::Sample],
    alerts: &'a [dlq_monitor::Notification],
    firing: &'a [dlq_monitor::FiringAlert],
    deliveries: &'a [dlq_monitor::Delivery],
    queued: u64,
    /// Store-specific gauges by DLQ (SQS queue counts).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    store_gauges: &'a BTreeMap<String, Vec<dlq_monitor::StoreGauge>>,
}

fn print(format: Format, history: &str, r: &TickReport, once: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let report = Report {
        at: r.at,
        history,
        dlqs: &r.samples,
        alerts: &r.notifications,
        firing: &r.firing,
        deliveries: &r.deliveries,
        queued: r.queued,
        store_gauges: &r.store_gauges,
    };
    match format {
        Format::Json if once => output::json(&mut out, format, &report)?,
        // A stream of ticks: one JSON object per line.
        Format::Json | Format::Ndjson => {
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = r
                .samples
                .iter()
                .map(|s| {
                    vec![
                        s.dlq.clone(),
                        s.pending.to_string(),
                        s.total.to_string(),
                        s.inflow_per_minute
                            .map_or_else(|| "-".into(), dlq_monitor::format_number),
                        s.oldest_pending_age_seconds
                            .map_or_else(|| "-".to_owned(), output::age),
                        s.expiry_risk.map_or_else(|| "-".into(), |n| n.to_string()),
                    ]
                })
                .collect();
            writeln!(out, "{}", r.at.format("%Y-%m-%d %H:%M:%S UTC"))?;
            output::table(
                &mut out,
                &[
                    "dlq",
                    "pending",
                    "total",
                    "inflow/min",
                    "oldest pending",
                    "expiry risk",
                ],
                &rows,
            )?;
            for (dlq, gauges) in &r.store_gauges {
                let values: Vec<String> = gauges
                    .iter()
                    .map(|g| {
                        let name = g.name.strip_prefix("dlq_").unwrap_or(g.name);
                        format!("{name} {}", dlq_monitor::format_number(g.value))
                    })
                    .collect();
                writeln!(out, "{dlq}: {}", values.join(", "))?;
            }
            for n in &r.notifications {
                writeln!(out, "{}", n.summary())?;
            }
            for f in &r.firing {
                writeln!(
                    out,
                    "firing: {} on {} since {}",
                    f.rule,
                    f.dlq,
                    f.since.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
                )?;
            }
            for d in r.deliveries.iter().filter(|d| !d.delivered) {
                writeln!(
                    out,
                    "not delivered to {}: {} (retried at the next tick)",
                    d.sink,
                    d.error.as_deref().unwrap_or("?")
                )?;
            }
            if r.queued > 0 {
                writeln!(out, "{} notification(s) queued", r.queued)?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}
