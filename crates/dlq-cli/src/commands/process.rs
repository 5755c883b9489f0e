//! `dlq process`: validate a file of records with retries; dead-letter failures.

use crate::Outcome;
use crate::cli::{Cli, Format, ProcessArgs, RetryArgs, SimulateArgs};
use crate::marketlag::PipelineHandler;
use crate::output;
use dlq_core::RetryPolicy;
use dlq_core::process::{self, Input, ProcessConfig, ProcessSummary};
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

/// The simulated downstream described by the `--simulate-*` flags.
pub fn downstream(args: &SimulateArgs) -> SimulatedDownstream {
    SimulatedDownstream {
        seed: args.simulate_seed,
        transient_rate: args.simulate_transient,
        fail_first: args.simulate_fail_first,
        outage_rate: args.simulate_outage,
        outage_active: args.simulate_outage > 0.0,
    }
}

/// Runs `dlq process`.
pub fn run(cli: &Cli, args: &ProcessArgs) -> anyhow::Result<Outcome> {
    let pipeline: Pipeline = args.pipeline.into();
    let input = if args.input == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(&args.input))
    };
    let dlq = args
        .dlq
        .clone()
        .unwrap_or_else(|| pipeline.dlq_topic().to_owned());
    let mut config = ProcessConfig::new(input, args.output.clone(), &dlq, pipeline.topic());
    config.retry = retry_policy(&args.retry)?;
    config.batch_size = args.batch_size.max(1);
    let mut handler = PipelineHandler {
        pipeline,
        limits: Limits {
            max_record_bytes: args.max_record_bytes,
        },
        downstream: downstream(&args.simulate),
    };
    let mut store = crate::store::open(cli.store_url())?;
    let summary = run_with_progress(&config, &mut handler, &mut store, !cli.no_progress)?;
    print_summary(cli.format, &summary)?;
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
