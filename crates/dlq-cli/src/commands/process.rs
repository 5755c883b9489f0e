//! `dlq process`: validate a file of records with retries; dead-letter failures.

use crate::Outcome;
use crate::cli::{Cli, Format, ProcessArgs, RetryArgs, SimulateArgs};
use crate::marketlag::PipelineHandler;
use crate::output;
use crate::shutdown::StopFlag;
use anyhow::Context as _;
use dlq_core::RetryPolicy;
use dlq_core::process::{self, Input, ProcessConfig, ProcessSummary};
use dlq_kafka::processor::{self, ProcessorConfig, Stop};
use dlq_kafka::{KafkaConfig, KafkaStore};
use dlq_marketlag::{Limits, Pipeline, SimulatedDownstream};
use std::path::PathBuf;
use std::time::Duration;

/// The retry policy described by the retry flags.
pub fn retry_policy(args: &RetryArgs) -> anyhow::Result<RetryPolicy> {
    let policy = RetryPolicy {
        max_attempts: args.max_attempts,
        initial_backoff: Duration::from_millis(args.initial_backoff_ms),
        max_backoff: Duration::from_millis(args.max_backoff_ms),
        ..RetryPolicy::default()
    };
    policy
        .validate()
        .map_err(|problems| anyhow::anyhow!("invalid retry settings: {}", problems.join("; ")))?;
    Ok(policy)
}

/// The simulated downstream described by the `--simulate-*` flags; every
/// fraction outside [0, 1] is reported at once.
pub fn downstream(args: &SimulateArgs) -> anyhow::Result<SimulatedDownstream> {
    let problems: Vec<String> = [
        ("--simulate-transient", args.simulate_transient),
        ("--simulate-outage", args.simulate_outage),
    ]
    .iter()
    .filter(|(_, v)| !(0.0..=1.0).contains(v))
    .map(|(flag, v)| format!("{flag} is {v}, expected a fraction of lines in [0, 1]"))
    .collect();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    Ok(SimulatedDownstream {
        seed: args.simulate_seed,
        transient_rate: args.simulate_transient,
        fail_first: args.simulate_fail_first,
        outage_rate: args.simulate_outage,
        outage_active: args.simulate_outage > 0.0,
    })
}

/// Runs `dlq process`.
pub fn run(cli: &Cli, args: &ProcessArgs) -> anyhow::Result<Outcome> {
    // Kept alive while the processor runs; stops serving when dropped.
    let _metrics = super::serve_metrics(args.metrics_listen)?;
    if args.source.is_some() {
        return run_kafka(cli, args);
    }
    let pipeline: Pipeline = args.pipeline.into();
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        anyhow::bail!("a file processor needs --input and --output");
    };
    let input = if input == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(input))
    };
    let sqs = crate::store::sqs_dlq(
        args.dlq.as_deref(),
        args.dlq_store.as_deref(),
        cli.store_url(),
        pipeline.dlq_topic(),
    )?;
    let dlq = match &sqs {
        Some(sqs) => sqs.queue.clone(),
        None => args
            .dlq
            .clone()
            .unwrap_or_else(|| pipeline.dlq_topic().to_owned()),
    };
    let mut config = ProcessConfig::new(input, output.clone(), &dlq, pipeline.topic());
    config.retry = retry_policy(&args.retry)?;
    config.batch_size = args.batch_size.max(1);
    // SIGINT/SIGTERM: stop reading, commit, exit 0 (a rerun resumes).
    config.stop = Some(StopFlag::install()?.shared());
    let mut handler = handler(args)?;
    // An SQS DLQ: dead letters and the checkpoint go to the SQS store,
    // whose commit sends the messages before it writes the checkpoint to
    // its index (a checkpoint never runs ahead of its dead letters).
    let mut store = match sqs {
        Some(sqs) => crate::store::AnyStore::Sqs(Box::new(sqs.store)),
        None => crate::store::open(cli.store_url())?,
    };
    let summary = run_with_progress(&config, &mut handler, &mut store, !cli.no_progress)?;
    print_summary(cli.format, &summary)?;
    Ok(Outcome::Ok)
}

fn handler(args: &ProcessArgs) -> anyhow::Result<PipelineHandler> {
    Ok(PipelineHandler {
        pipeline: args.pipeline.into(),
        limits: Limits {
            max_record_bytes: args.max_record_bytes,
        },
        downstream: downstream(&args.simulate)?,
    })
}

/// `dlq process --source kafka:TOPIC`: the Kafka processor, with its DLQ in
/// the `--store kafka://` cluster.
fn run_kafka(cli: &Cli, args: &ProcessArgs) -> anyhow::Result<Outcome> {
    let source = args.source.as_deref().unwrap_or_default();
    let Some(topic) = source.strip_prefix("kafka:") else {
        anyhow::bail!("--source {source:?}: expected kafka:TOPIC");
    };
    let url = cli.store_url();
    if !url.starts_with("kafka://") {
        anyhow::bail!(
            "--source kafka:{topic} reads the cluster of --store: pass --store kafka://HOST:PORT \
             (the DLQ is a topic there, or an SQS queue with --dlq sqs:QUEUE --dlq-store \
             sqs://REGION)"
        );
    }
    let (Some(group), Some(output_topic)) = (&args.group, &args.output_topic) else {
        anyhow::bail!("--source kafka:{topic} needs --group and --output-topic");
    };
    let mut config = KafkaConfig::from_url(url)
        .map_err(|e| anyhow::anyhow!("--store: {}", e.problems.join("; ")))?;
    if config.transactional_id.is_none() {
        // Stable per instance, in both modes: a restarted instance fences
        // its crashed predecessor and aborts its open transaction at once
        // (at-least-once too: its DLQ writes are transactions, and an
        // abandoned one would hold read_committed readers of the DLQ back
        // until the transaction timeout).
        config.transactional_id = Some(format!("dlq-process-{group}-{topic}-{}", args.instance));
    }
    let default_dlq = format!("dlq.{topic}");
    let mut sqs = crate::store::sqs_dlq(
        args.dlq.as_deref(),
        args.dlq_store.as_deref(),
        url,
        &default_dlq,
    )?;
    if args.exactly_once
        && let Some(sqs) = &sqs
    {
        anyhow::bail!(
            "--exactly-once cannot dead-letter to the SQS queue {}: an SQS send cannot join \
                the Kafka transaction that commits a batch's outputs and offsets. Drop \
                --exactly-once (at least once: offsets are committed only after SQS accepted \
                their dead letters), or keep the DLQ on the cluster",
            sqs.queue
        );
    }
    let mut store = KafkaStore::open(config).context("opening the Kafka store")?;
    let mut cfg = ProcessorConfig::new(topic, group, output_topic);
    cfg.retry = retry_policy(&args.retry)?;
    if let Some(sqs) = &sqs {
        cfg.dlq_topic = sqs.queue.clone();
    } else if let Some(dlq) = &args.dlq {
        cfg.dlq_topic = dlq.clone();
    }
    cfg.stop_when_idle = args
        .stop_when_idle
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("--stop-when-idle {secs}: expected seconds > 0"))
        })
        .transpose()?;
    // Static membership: a restarted instance (same group, source and
    // --instance) takes its partitions back at once instead of waiting
    // for its crashed predecessor's session to time out.
    cfg.group_instance_id = Some(format!("dlq-process-{group}-{topic}-{}", args.instance));
    let mut handler = handler(args)?;
    let stop = StopFlag::install()?;
    let stats = if args.exactly_once {
        processor::run_exactly_once(&mut store, &cfg, &mut handler, stop.as_atomic())?
    } else {
        let dlq_store = sqs
            .as_mut()
            .map(|s| &mut s.store as &mut (dyn dlq_core::DlqStore + Send));
        processor::run_at_least_once_to(
            &mut store,
            dlq_store,
            &cfg,
            &mut handler,
            stop.as_atomic(),
        )?
    };
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let mut rows = vec![
                vec!["consumed".to_owned(), stats.consumed.to_string()],
                vec!["delivered".to_owned(), stats.delivered.to_string()],
                vec!["dead_lettered".to_owned(), stats.dead_lettered.to_string()],
                vec![
                    "recovered_by_retry".to_owned(),
                    stats.recovered_by_retry.to_string(),
                ],
                vec!["retries".to_owned(), stats.retries.to_string()],
            ];
            if args.exactly_once {
                rows.push(vec![
                    "transactions".to_owned(),
                    stats.transactions.to_string(),
                ]);
                rows.push(vec!["aborts".to_owned(), stats.aborts.to_string()]);
            }
            for l in &stats.lag {
                rows.push(vec![
                    format!("lag partition {}", l.partition),
                    l.lag.to_string(),
                ]);
            }
            output::table(&mut out, &["", "records"], &rows)?;
        }
        _ => output::json(&mut out, cli.format, &stats)?,
    }
    drop(out);
    // A batch run (--stop-when-idle) that ends with records left did not
    // do its job: say where they are, exit 2. A stop requested by a signal
    // is a clean stop; its lag is in the stats.
    if stats.stop != Stop::Requested && !stats.caught_up {
        let lag: Vec<String> = stats.lag.iter().map(ToString::to_string).collect();
        let detail = match (lag.is_empty(), stats.stop) {
            (false, _) => format!("lag left on {}", lag.join(", ")),
            (true, Stop::Stalled) => "this instance was assigned no partition of the source".into(),
            (true, _) => "the lag could not be measured".into(),
        };
        anyhow::bail!(
            "stopped before {topic} was drained ({}): {detail}",
            match stats.stop {
                Stop::Stalled => "no progress for --stop-when-idle",
                _ => "idle",
            }
        );
    }
    Ok(Outcome::Ok)
}

/// Runs a processor with a spinner.
pub fn run_with_progress(
    config: &ProcessConfig,
    handler: &mut PipelineHandler,
    store: &mut crate::store::AnyStore,
    progress: bool,
) -> anyhow::Result<ProcessSummary> {
    let bar = crate::progress::bar(None, config.topic.as_str(), progress);
    let mut tick = |s: &ProcessSummary| bar.set_position(s.records_in);
    let summary = process::run(config, handler, store, Some(&mut tick))?;
    bar.finish_and_clear();
    Ok(summary)
}

fn print_summary(format: Format, s: &ProcessSummary) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let mut rows = vec![
                vec!["records_in".to_owned(), s.records_in.to_string()],
                vec!["delivered".to_owned(), s.delivered.to_string()],
                vec!["dead_lettered".to_owned(), s.dead_lettered.to_string()],
                vec![
                    "recovered_by_retry".to_owned(),
                    s.recovered_by_retry.to_string(),
                ],
                vec!["retries".to_owned(), s.retries.to_string()],
            ];
            if s.stopped {
                rows.push(vec![
                    "stopped_early".to_owned(),
                    "yes (rerun to resume)".to_owned(),
                ]);
            }
            if s.resumed_from_line > 0 {
                rows.push(vec![
                    "resumed_from_line".to_owned(),
                    s.resumed_from_line.to_string(),
                ]);
            }
            for (class, n) in &s.by_error_class {
                rows.push(vec![format!("  {class}"), n.to_string()]);
            }
            output::table(&mut out, &["", "records"], &rows)?;
        }
        _ => output::json(&mut out, format, s)?,
    }
    Ok(())
}
