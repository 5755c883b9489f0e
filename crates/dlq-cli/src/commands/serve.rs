//! `dlq serve`: the HTTP API, the dashboard and `/metrics` (crate
//! `dlq-server`) over the store of `--store`.
//!
//! Replays started from the server go to allow-listed targets only
//! (`[serve.replay_targets]` in the config file) and run through the same
//! code as `dlq replay`: a record is settled only once its target has it.

use crate::Outcome;
use crate::cli::{Cli, ServeArgs};
use crate::commands::replay::{To, parse_to, replay_to};
use crate::store::AnyStore;
use anyhow::Context as _;
use dlq_core::replay::{FileFormat, ReplayOptions, ReplayReport, StoreOutputs, run_to_store};
use dlq_monitor::{History, Monitor, MonitorConfig};
use dlq_server::{FiringAlertView, MonitorView, ReplayRunner, Server, SharedStore, SizePoint};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The config file read when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "dlq.toml";

/// Runs server replays with the command line's replay code.
struct CliRunner {
    /// Whether the store is a Kafka cluster (then targets are `kafka:`).
    kafka: bool,
    /// The SQS store's settings, for `sqs:QUEUE` targets (`None`: not an
    /// SQS store).
    sqs: Option<dlq_sqs::SqsConfig>,
}

/// The targets a config may name, for error messages.
const TARGETS: &str = "file:PATH, pipeline:PATH, kafka://HOST:PORT[/TOPIC], \
     kafka:TOPIC (on a Kafka store) or sqs:QUEUE (on an SQS store)";

impl ReplayRunner<AnyStore> for CliRunner {
    fn check_target(&self, spec: &str) -> Result<(), String> {
        // `kafka://` first: it starts with `kafka:` too. On a Kafka store,
        // as `dlq replay`, a topic is named as kafka:TOPIC (its own
        // cluster, through the store's commit).
        if spec.starts_with("kafka://") {
            if self.kafka {
                return Err(format!(
                    "{spec:?}: on a Kafka store, targets are kafka:TOPIC (or kafka: for each \
                     record's original topic) of the store's own cluster"
                ));
            }
            return super::replay::check_kafka_target(spec);
        }
        if let Some(queue) = spec.strip_prefix("sqs:") {
            if self.sqs.is_none() {
                return Err(format!(
                    "{spec:?}: sqs: targets need an sqs:// store (--store)"
                ));
            }
            let valid = dlq_sqs::config::queue_name(queue).is_ok_and(|q| q == queue);
            if !valid {
                return Err(format!(
                    "{spec:?}: {queue:?} is not an SQS queue name (1 to 80 letters, digits, \
                     '-' or '_', a FIFO queue ending in .fifo)"
                ));
            }
            return Ok(());
        }
        match (self.kafka, spec.strip_prefix("kafka:")) {
            (true, Some(_)) => Ok(()),
            (true, None) => Err(format!(
                "{spec:?}: on a Kafka store, targets are kafka:TOPIC (or kafka: for each record's original topic)"
            )),
            (false, Some(_)) => Err(format!(
                "{spec:?}: kafka:TOPIC targets need a kafka:// store (--store); \
                 kafka://HOST:PORT/TOPIC names a cluster from any store"
            )),
            (false, None) => parse_to(spec)
                .map(drop)
                .map_err(|_| format!("{spec:?}: expected {TARGETS}")),
        }
    }

    fn run(
        &self,
        store: &SharedStore<AnyStore>,
        spec: &str,
        dlq: &str,
        options: &ReplayOptions,
        progress: &mut dyn FnMut(&ReplayReport),
    ) -> Result<ReplayReport, String> {
        // Page by page on the shared store, so that the API keeps answering.
        let mut shared = store.clone();
        if let Some(topic) = spec
            .strip_prefix("kafka:")
            .filter(|_| !spec.starts_with("kafka://"))
        {
            let outputs = StoreOutputs::kafka(Some(topic).filter(|t| !t.is_empty()));
            return run_to_store(&mut shared, &outputs, options, Some(progress))
                .map_err(|e| format!("{e:#}"));
        }
        if let Some(queue) = spec.strip_prefix("sqs:") {
            let config = self
                .sqs
                .as_ref()
                .ok_or_else(|| format!("{spec:?}: sqs: targets need an sqs:// store"))?;
            // At least once, as `dlq replay --to sqs:QUEUE`: a record is
            // settled (its DLQ message deleted) after SQS accepted its send.
            let mut target = dlq_sqs::SqsTarget::new(config, Some(queue.to_owned()))
                .map_err(|e| format!("starting the SQS client of the replay target: {e}"))?;
            let mut report =
                dlq_core::replay::run(&mut shared, &mut target, options, Some(progress))
                    .map_err(|e| format!("{e:#}"))?;
            report.targets = target.sent().iter().map(|(q, n)| (q.clone(), *n)).collect();
            return Ok(report);
        }
        let to: To<'_> = parse_to(spec).map_err(|e| format!("{e:#}"))?;
        replay_to(
            &mut shared,
            dlq,
            &to,
            FileFormat::Payload,
            options,
            progress,
        )
        .map_err(|e| format!("{e:#}"))
    }
}

/// Runs `dlq serve`.
pub fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<Outcome> {
    let url = cli.store_url();
    let sqs = url
        .starts_with("sqs://")
        .then(|| dlq_sqs::SqsConfig::from_url(url))
        .transpose()?;
    let runner = Arc::new(CliRunner {
        kafka: url.starts_with("kafka://"),
        sqs,
    });
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let loaded = dlq_server::config::load_file(
        &path,
        required,
        &|name| std::env::var(name).ok(),
        &|spec| runner.check_target(spec),
    )?;
    let mut config = loaded.config;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let store = crate::store::open(url)?;
    let monitor = monitor_for_serve(&path, &store)?;
    let tokens = loaded.tokens;
    let triage = loaded.triage;
    let (viewers, operators) = tokens.principals().fold((0, 0), |(v, o), p| match p.role {
        dlq_server::Role::Viewer => (v + 1, o),
        dlq_server::Role::Operator => (v, o + 1),
    });
    let targets = config.replay_targets.len();
    let server = Server::new(store, config, tokens, runner)?;
    // The groups are triaged with the config file's rules, as `dlq analyze
    // --config` triages them.
    server.set_triage(triage);
    start_monitor(&server, monitor)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = server.config().listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {addr}, not a loopback address: the API is plain HTTP; \
                 put it behind a TLS proxy or bind 127.0.0.1"
            );
        }
        eprintln!(
            "dlq serve: {viewers} viewer and {operators} operator tokens, {targets} replay targets, \
             audit log {}",
            server.config().audit_log.display()
        );
        // Requests by any other name are refused (DNS rebinding): say which.
        eprintln!(
            "dlq serve: answers to {} (more names: allowed_hosts in [serve])",
            dlq_server::hosts::HostCheck::new(&[addr], &server.config().allowed_hosts).describe()
        );
        // The first line of stdout, for scripts and tests that asked for port 0.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        server.serve(listener, shutdown()).await?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Ok)
}

/// The monitor `dlq serve` runs: the monitor sections of the same config
/// file (see docs/monitoring.md), or the built-in rule (size > 1000, to the
/// log) when the file has none or does not exist.
struct ServeMonitor {
    monitor: Monitor,
    /// A second connection to the history file, for the dashboard's reads
    /// while a tick writes (`None`: an in-memory history).
    reader: Option<History>,
    kafka: Option<dlq_kafka::KafkaConfig>,
}

fn monitor_for_serve(path: &Path, store: &AnyStore) -> anyhow::Result<ServeMonitor> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let has_monitor_sections = text.as_deref().is_some_and(|t| {
        t.parse::<toml::Table>().is_ok_and(|table| {
            ["monitor", "rule", "sink", "dlq"]
                .iter()
                .any(|k| table.contains_key(*k))
        })
    });
    let config = match text.filter(|_| has_monitor_sections) {
        Some(t) => MonitorConfig::from_toml(&t).with_context(|| {
            format!(
                "{}: fix the monitor sections (every problem is listed; see docs/monitoring.md)",
                path.display()
            )
        })?,
        None => MonitorConfig::from_toml(super::monitor::DEFAULT_CONFIG)?,
    };
    let reader = super::monitor::history_file(&config, store)
        .map(|p| {
            History::open(&p)
                .with_context(|| format!("opening the monitor history {}", p.display()))
        })
        .transpose()?;
    let history = super::monitor::open_history(&config, store)?;
    let kafka = match store {
        AnyStore::Kafka(k) => Some(k.config().clone()),
        _ => None,
    };
    Ok(ServeMonitor {
        monitor: Monitor::new(config, history)?,
        reader,
        kafka,
    })
}

/// What the dashboard and `/metrics` read from the monitor.
struct MonitorBridge {
    /// The monitor itself, locked by its ticks (and by history reads when
    /// the history is in memory).
    monitor: Arc<Mutex<Monitor>>,
    reader: Option<Mutex<History>>,
    /// The alerts firing after the last tick.
    firing: RwLock<Vec<FiringAlertView>>,
    metrics: dlq_monitor::metrics::MetricsHandle,
}

impl MonitorView for MonitorBridge {
    fn size_history(&self, dlq: &str, since: chrono::DateTime<chrono::Utc>) -> Vec<SizePoint> {
        let samples = match &self.reader {
            Some(r) => r
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .samples(dlq, since),
            None => self
                .monitor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .history()
                .samples(dlq, since),
        };
        match samples {
            Ok(samples) => samples
                .into_iter()
                .map(|s| SizePoint {
                    at: s.at,
                    pending: s.pending,
                    parked: s.parked,
                    total: s.total,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the monitor history");
                Vec::new()
            }
        }
    }

    fn firing(&self) -> Vec<FiringAlertView> {
        self.firing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

fn alert_view(a: &dlq_monitor::FiringAlert, now: chrono::DateTime<chrono::Utc>) -> FiringAlertView {
    let value = a.value.unwrap_or(f64::NAN);
    FiringAlertView {
        rule: a.rule.clone(),
        dlq: Some(a.dlq.clone()),
        severity: "warning".to_owned(),
        value,
        threshold: Some(a.threshold),
        since: a.since.unwrap_or(now),
        message: format!(
            "{}: {} of {} is {} (above {})",
            a.rule,
            a.kind.as_str(),
            a.dlq,
            value,
            a.threshold
        ),
    }
}

/// Plugs the monitor into the server and ticks it on a thread of its own,
/// over the server's shared store (locked per call, so ticks and requests
/// interleave).
fn start_monitor(server: &Server<AnyStore>, serve_monitor: ServeMonitor) -> anyhow::Result<()> {
    let ServeMonitor {
        mut monitor,
        reader,
        kafka,
    } = serve_monitor;
    if let Some(k) = kafka {
        monitor.set_retention_source(super::monitor::KafkaRetention::new(k));
    }
    let interval = monitor.config().interval;
    let bridge = Arc::new(MonitorBridge {
        monitor: Arc::new(Mutex::new(monitor)),
        reader: reader.map(Mutex::new),
        firing: RwLock::new(Vec::new()),
        metrics: dlq_monitor::metrics::install()?,
    });
    server.set_monitor(bridge.clone());
    let store = server.store();
    std::thread::Builder::new()
        .name("dlq-monitor".into())
        .spawn(move || {
            loop {
                let started = std::time::Instant::now();
                let now = chrono::Utc::now();
                let tick = {
                    let mut m = bridge.monitor.lock().unwrap_or_else(|p| p.into_inner());
                    m.tick(&store, now).map(|_| m.firing())
                };
                match tick {
                    Ok(firing) => {
                        *bridge.firing.write().unwrap_or_else(|p| p.into_inner()) =
                            firing.iter().map(|a| alert_view(a, now)).collect();
                    }
                    // A store that is down must not end the server.
                    Err(e) => tracing::warn!(error = %e, "monitor tick failed; next tick retries"),
                }
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            }
        })
        .context("starting the monitor thread")?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("dlq serve: stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_against_the_store_kind() {
        let file = CliRunner {
            kafka: false,
            sqs: None,
        };
        assert!(file.check_target("file:/tmp/out.ndjson").is_ok());
        assert!(file.check_target("pipeline:out.ndjson").is_ok());
        assert!(file.check_target("kafka:topic").is_err());
        assert!(file.check_target("kafka://127.0.0.1:9092/topic").is_ok());
        assert!(file.check_target("kafka://127.0.0.1:9092").is_ok());
        assert!(file.check_target("sqs:queue").is_err());
        assert!(file.check_target("http://example.invalid").is_err());
        let kafka = CliRunner {
            kafka: true,
            sqs: None,
        };
        assert!(kafka.check_target("kafka:rss.events").is_ok());
        assert!(kafka.check_target("kafka:").is_ok());
        assert!(kafka.check_target("file:/tmp/x").is_err());
        assert!(kafka.check_target("kafka://127.0.0.1:9092/t").is_err());
        let sqs = CliRunner {
            kafka: false,
            sqs: Some(dlq_sqs::SqsConfig::new("us-east-1")),
        };
        assert!(sqs.check_target("sqs:orders-in").is_ok());
        assert!(sqs.check_target("sqs:orders.fifo").is_ok());
        assert!(sqs.check_target("sqs:").is_err());
        assert!(sqs.check_target("kafka://127.0.0.1:9092/t").is_ok());
        assert!(sqs.check_target("kafka:t").is_err());
    }
}
