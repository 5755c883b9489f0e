//! `dlq replay`: select, fix, reprocess and settle dead letters.

use crate::Outcome;
use crate::cli::{Cli, Format, ReplayArgs, ToFormat};
use crate::marketlag::PipelineHandler;
use crate::output;
use crate::store::AnyStore;
use anyhow::Context as _;
use dlq_core::filter::Filter;
use dlq_core::fix::{Fix, FixLimits};
use dlq_core::replay::{
    self, FileFormat, FileTarget, HandlerTarget, ReplayOptions, ReplayOptionsError, ReplayReport,
    StoreOutputs,
};
use dlq_core::store::{DlqStore, Status};
use dlq_marketlag::Pipeline;
use std::path::Path;

/// A parsed `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To<'a> {
    /// Append to a file.
    File(&'a Path),
    /// Validate with the DLQ's MarketLag pipeline, then append to a file.
    Pipeline(&'a Path),
    /// Topics of a Kafka cluster: `kafka://HOST:PORT[/TOPIC][?param=…]`
    /// (without a topic, each record's source topic).
    Kafka(&'a str),
}

/// Parses `--to`.
pub fn parse_to(to: &str) -> anyhow::Result<To<'_>> {
    if let Some(p) = to.strip_prefix("file:") {
        Ok(To::File(Path::new(p)))
    } else if let Some(p) = to.strip_prefix("pipeline:") {
        Ok(To::Pipeline(Path::new(p)))
    } else if to.starts_with("kafka://") {
        Ok(To::Kafka(to))
    } else {
        anyhow::bail!(
            "--to {to:?}: expected file:PATH, pipeline:PATH or kafka://HOST:PORT[/TOPIC] \
             (kafka:TOPIC on a Kafka store, sqs:QUEUE on an SQS store)"
        )
    }
}

/// The cluster and topic of a `kafka://HOST:PORT[/TOPIC][?param=…]` target:
/// the cluster's settings as for a Kafka store URL (credentials from the
/// environment only), the topic from the path.
pub fn kafka_target(spec: &str) -> anyhow::Result<(dlq_kafka::KafkaConfig, Option<String>)> {
    let rest = spec.strip_prefix("kafka://").unwrap_or(spec);
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (hosts, topic) = match before_query.split_once('/') {
        Some((h, t)) => (h, Some(t).filter(|t| !t.is_empty()).map(str::to_owned)),
        None => (before_query, None),
    };
    let url = match query {
        Some(q) => format!("kafka://{hosts}?{q}"),
        None => format!("kafka://{hosts}"),
    };
    let config = dlq_kafka::KafkaConfig::from_url(&url).map_err(|e| {
        anyhow::anyhow!(
            "--to {}: {}",
            dlq_kafka::config::redact_url(spec),
            e.problems.join("; ")
        )
    })?;
    Ok((config, topic))
}

/// Checks a `kafka://HOST:PORT[,HOST:PORT…][/TOPIC][?param=…]` target
/// before anything connects: broker addresses with a port, a valid topic
/// name, and URL parameters the Kafka store URL takes.
///
/// # Errors
///
/// What is wrong, naming the part (never a credential: the spec is
/// redacted).
pub fn check_kafka_target(spec: &str) -> Result<(), String> {
    let shown = dlq_kafka::config::redact_url(spec);
    let rest = spec.strip_prefix("kafka://").unwrap_or(spec);
    let before_query = rest.split_once('?').map_or(rest, |(b, _)| b);
    let (hosts, topic) = match before_query.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (before_query, None),
    };
    if hosts.is_empty() {
        return Err(format!(
            "{shown:?}: no broker address (kafka://HOST:PORT[/TOPIC])"
        ));
    }
    for host in hosts.split(',') {
        let port = host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        match port {
            Some((h, Ok(p))) if !h.is_empty() && p > 0 => {}
            Some((h, _)) if !h.is_empty() => {
                return Err(format!(
                    "{shown:?}: broker {host:?} has no valid port (1 to 65535)"
                ));
            }
            _ => {
                return Err(format!("{shown:?}: broker {host:?} is not HOST:PORT"));
            }
        }
    }
    if let Some(topic) = topic.filter(|t| !t.is_empty()) {
        let legal = topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !legal || topic.len() > 249 || topic == "." || topic == ".." {
            return Err(format!(
                "{shown:?}: {topic:?} is not a Kafka topic name (1 to 249 letters, digits, \
                 '.', '_' or '-')"
            ));
        }
    }
    kafka_target(spec).map(drop).map_err(|e| format!("{e:#}"))
}

/// The MarketLag pipeline a DLQ belongs to (`dlq.rss.events` → rss).
pub fn pipeline_of_dlq(dlq: &str) -> Option<Pipeline> {
    Pipeline::from_topic(dlq.strip_prefix("dlq.").unwrap_or(dlq))
}

/// Replays with the given options to `to`, with a progress bar.
pub fn replay(
    store: &mut AnyStore,
    dlq: &str,
    to: &To<'_>,
    format: FileFormat,
    options: &ReplayOptions,
    progress: bool,
) -> anyhow::Result<ReplayReport> {
    let bar = crate::progress::bar(None, "replay", progress);
    let mut tick = |r: &ReplayReport| bar.set_position(r.selected);
    let report = replay_to(store, dlq, to, format, options, &mut tick)?;
    bar.finish_and_clear();
    Ok(report)
}

/// Replays with the given options to a file or pipeline target on any
/// store; `progress` is called after each commit (`dlq serve` runs its
/// replay jobs through this).
pub fn replay_to<S: DlqStore>(
    store: &mut S,
    dlq: &str,
    to: &To<'_>,
    format: FileFormat,
    options: &ReplayOptions,
    progress: &mut dyn FnMut(&ReplayReport),
) -> anyhow::Result<ReplayReport> {
    Ok(match to {
        To::File(path) => {
            let mut target = FileTarget::open(path, format, store)
                .with_context(|| format!("opening replay target {}", path.display()))?;
            replay::run(store, &mut target, options, Some(progress))?
        }
        To::Kafka(spec) => {
            let (config, topic) = kafka_target(spec)?;
            let mut target = dlq_kafka::KafkaTarget::new(&config, topic)
                .context("starting the producer of the Kafka replay target")?;
            let mut report = replay::run(store, &mut target, options, Some(progress))?;
            report.targets = target.sent().clone();
            report
        }
        To::Pipeline(path) => {
            let pipeline = pipeline_of_dlq(dlq).with_context(|| {
                format!("--to pipeline: {dlq} is not the DLQ of a MarketLag topic (dlq.rss.events, dlq.polymarket.price_hourly)")
            })?;
            let file = FileTarget::open(path, FileFormat::Payload, store)
                .with_context(|| format!("opening replay target {}", path.display()))?;
            let mut target = HandlerTarget::new(
                format!("pipeline:{}", pipeline.name()),
                PipelineHandler::healthy(pipeline),
                file,
            );
            replay::run(store, &mut target, options, Some(progress))?
        }
    })
}

/// Runs `dlq replay`.
pub fn run(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let mut options = ReplayOptions::for_dlq(&args.dlq);
    options.selection.filter = args
        .filter
        .as_deref()
        .map(Filter::parse)
        .transpose()
        .context("--filter")?;
    if args.include_parked {
        options.selection.statuses = vec![Status::Pending, Status::Parked];
    }
    let limits = FixLimits {
        timeout: std::time::Duration::from_millis(args.fix_timeout_ms),
        max_output_bytes: args.fix_max_output_bytes,
        ..FixLimits::default()
    };
    options.fix = args
        .fix
        .as_deref()
        .map(Fix::compile)
        .transpose()
        .context("--fix")?
        .map(|fix| fix.with_limits(limits));
    options.rate = args.rate;
    options.limit = args.limit;
    options.dry_run = args.dry_run;
    options.max_replays = args.max_replays;
    options.batch_size = args.batch_size.max(1);
    options.validate().map_err(|e| {
        let flag = match e {
            ReplayOptionsError::Rate { .. } => "--rate",
            ReplayOptionsError::BatchSize => "--batch-size",
            _ => "--fix-timeout-ms / --fix-max-output-bytes",
        };
        anyhow::anyhow!("{flag}: {e}")
    })?;
    // SIGINT/SIGTERM: commit what was delivered, stop, exit 0.
    options.stop = Some(crate::shutdown::StopFlag::install()?.shared());
    let format = match args.to_format {
        ToFormat::Payload => FileFormat::Payload,
        ToFormat::Envelope => FileFormat::Envelope,
    };
    let mut store = crate::store::open_for_replay(cli.store_url(), args.exactly_once, &args.dlq)?;
    options.selection.filter = super::with_fingerprints(&store, options.selection.filter)?;
    let sqs_target = args.to.as_deref().is_none_or(|t| t.starts_with("sqs:"));
    let report = match store.output_scheme() {
        Some(scheme) => {
            let to = match args.to.as_deref() {
                None => None,
                Some(t) if t.starts_with(&format!("{scheme}://")) => anyhow::bail!(
                    "--to {t:?}: on a {scheme} store, --to {scheme}:TOPIC names a topic of the store's own cluster"
                ),
                Some(t) => Some(t.strip_prefix(&format!("{scheme}:")).with_context(|| {
                    format!("--to {t:?}: on a {scheme} store, replay to {scheme}:TOPIC (or leave --to out for each record's original topic)")
                })?),
            };
            let outputs = StoreOutputs {
                to: to.map(str::to_owned),
                scheme: scheme.to_owned(),
                kind: "topic".to_owned(),
            };
            let bar = crate::progress::bar(None, "replay", !cli.no_progress);
            let mut tick = |r: &ReplayReport| bar.set_position(r.selected);
            let report = replay::run_to_store(&mut store, &outputs, &options, Some(&mut tick))?;
            bar.finish_and_clear();
            report
        }
        None if matches!(store, AnyStore::Sqs(_)) && sqs_target => {
            replay_sqs(cli, args, &mut store, &options)?
        }
        None => {
            let Some(to) = args.to.as_deref() else {
                anyhow::bail!(
                    "--to is required: file:PATH, pipeline:PATH or kafka://HOST:PORT[/TOPIC]"
                );
            };
            let to = parse_to(to)?;
            replay(
                &mut store,
                &args.dlq,
                &to,
                format,
                &options,
                !cli.no_progress,
            )?
        }
    };
    print_report(cli.format, &report)?;
    Ok(if report.selected == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}

/// Replay on an SQS store, to SQS queues: `--to sqs:QUEUE`, or (no `--to`)
/// each record's source queue, from its `DeadLetterQueueSourceArn`. A
/// record's DLQ message is deleted only after SQS accepted its send.
fn replay_sqs(
    cli: &Cli,
    args: &ReplayArgs,
    store: &mut AnyStore,
    options: &ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let queue = match args.to.as_deref().map(|t| t.strip_prefix("sqs:")) {
        Some(Some("")) => anyhow::bail!("--to sqs:QUEUE needs a queue name"),
        Some(q) => q.map(str::to_owned),
        None => None,
    };
    super::check_dlq_name(store, &args.dlq)?;
    let AnyStore::Sqs(sqs) = &*store else {
        anyhow::bail!("--store {} is not an SQS store", cli.store_url());
    };
    let mut target = dlq_sqs::SqsTarget::new(sqs.config(), queue)
        .context("starting the SQS client of the replay target")?;
    let bar = crate::progress::bar(None, "replay", !cli.no_progress);
    let mut tick = |r: &ReplayReport| bar.set_position(r.selected);
    let mut report = replay::run(store, &mut target, options, Some(&mut tick))?;
    bar.finish_and_clear();
    report.targets = target.sent().iter().map(|(q, n)| (q.clone(), *n)).collect();
    Ok(report)
}

fn print_report(format: Format, r: &ReplayReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table if r.dry_run => {
            let rows: Vec<Vec<String>> = r
                .previews
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        if p.changed { "yes" } else { "no" }.to_owned(),
                        output::cell(&p.before, 70),
                        match &p.after {
                            Ok(a) => output::cell(a, 70),
                            Err(e) => format!("fix failed: {}", output::cell(e, 60)),
                        },
                    ]
                })
                .collect();
            output::table(&mut out, &["id", "changed", "before", "after"], &rows)?;
            use std::io::Write as _;
            writeln!(
                out,
                "dry run: {} records selected, nothing changed",
                r.selected
            )?;
        }
        Format::Table => {
            let mut rows = vec![
                vec!["selected".to_owned(), r.selected.to_string()],
                vec!["replayed".to_owned(), r.replayed.to_string()],
                vec!["failed_again".to_owned(), r.failed_again.to_string()],
                vec!["parked".to_owned(), r.parked.to_string()],
                vec!["fix_failed".to_owned(), r.fix_failed.to_string()],
            ];
            if r.stopped {
                rows.push(vec![
                    "stopped_early".to_owned(),
                    "yes (the rest is pending; rerun to go on)".to_owned(),
                ]);
            }
            for (msg, n) in &r.fix_errors {
                rows.push(vec![
                    format!("  fix error: {}", output::cell(msg, 60)),
                    n.to_string(),
                ]);
            }
            for (topic, n) in &r.targets {
                rows.push(vec![format!("  to {topic}"), n.to_string()]);
            }
            output::table(&mut out, &["", "records"], &rows)?;
        }
        _ => output::json(&mut out, format, r)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_parses_file_and_pipeline_targets() {
        assert_eq!(
            parse_to("file:/tmp/a").expect("file"),
            To::File(Path::new("/tmp/a"))
        );
        assert_eq!(
            parse_to("pipeline:o.ndjson").expect("p"),
            To::Pipeline(Path::new("o.ndjson"))
        );
        assert!(parse_to("kafka:topic").is_err());
    }

    #[test]
    fn marketlag_dlqs_map_to_their_pipelines() {
        assert_eq!(pipeline_of_dlq("dlq.rss.events"), Some(Pipeline::Rss));
        assert_eq!(
            pipeline_of_dlq("dlq.polymarket.price_hourly"),
            Some(Pipeline::Polymarket)
        );
        assert_eq!(pipeline_of_dlq("dlq.other"), None);
    }
}
