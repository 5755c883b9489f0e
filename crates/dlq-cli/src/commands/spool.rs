//! `dlq spool`: the guarded producer's local spool, where dead letters wait
//! when the Kafka DLQ could not be written.
//!
//! `flush` moves them to their DLQ topics: each page is appended to the
//! Kafka store (durable, idempotent by record id) before it is settled in
//! the spool, so an interrupted flush run again writes nothing twice.

use crate::Outcome;
use crate::cli::{Cli, Format, SpoolAction, SpoolArgs};
use crate::commands::produce::{kafka_config, open_spool};
use crate::output;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use dlq_core::DlqStore as _;
use dlq_kafka::KafkaStore;
use dlq_kafka::producer::{SpoolFlushReport, flush_spool, spool_pending};
use serde::Serialize;

/// `dlq spool flush --format json`.
#[derive(Debug, Serialize)]
struct FlushOutput<'a> {
    spool: &'a str,
    #[serde(flatten)]
    report: SpoolFlushReport,
    /// Records still pending in the spool afterwards.
    pending: u64,
}

/// One DLQ in `dlq spool stats --format json`.
#[derive(Debug, Serialize)]
struct SpoolDlq {
    dlq: String,
    pending: u64,
    replayed: u64,
    total: u64,
    oldest_pending_at: Option<DateTime<Utc>>,
}

/// `dlq spool stats --format json`.
#[derive(Debug, Serialize)]
struct StatsOutput<'a> {
    spool: &'a str,
    pending: u64,
    dlqs: Vec<SpoolDlq>,
}

/// Runs `dlq spool`.
pub fn run(cli: &Cli, args: &SpoolArgs) -> anyhow::Result<Outcome> {
    match args.action {
        SpoolAction::Flush => flush(cli, args),
        SpoolAction::Stats => stats(cli, args),
    }
}

fn flush(cli: &Cli, args: &SpoolArgs) -> anyhow::Result<Outcome> {
    let mut spool = open_spool(&args.spool)?;
    // A producer with an SQS DLQ (`--dlq sqs:QUEUE`) spools for that
    // queue: its spool flushes to the SQS store.
    let mut store: Box<dyn dlq_core::DlqStore> = if cli.store_url().starts_with("sqs://") {
        Box::new(crate::store::open(cli.store_url())?)
    } else {
        let kafka = kafka_config(cli, "dlq spool flush")?;
        let shown = dlq_kafka::config::redact_url(cli.store_url());
        Box::new(KafkaStore::open(kafka).with_context(|| {
            format!(
                "opening the Kafka store {shown} (is the cluster up? the spooled records stay in \
                 {} until a flush succeeds)",
                args.spool
            )
        })?)
    };
    let shown = dlq_sqs::config::redact_url(&dlq_kafka::config::redact_url(cli.store_url()));
    let report = flush_spool(&mut spool, store.as_mut()).with_context(|| {
        format!(
            "moving spooled dead letters to {shown}; what was not moved stays in {} \
             (run the flush again)",
            args.spool
        )
    })?;
    let pending = spool_pending(&spool)?;
    let o = FlushOutput {
        spool: &args.spool,
        report,
        pending,
    };
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => output::table(
            &mut out,
            &["", "records"],
            &[
                vec!["flushed".to_owned(), report.flushed.to_string()],
                vec!["appended".to_owned(), report.appended.to_string()],
                vec!["duplicates".to_owned(), report.duplicates.to_string()],
                vec!["pending".to_owned(), pending.to_string()],
            ],
        )?,
        _ => output::json(&mut out, cli.format, &o)?,
    }
    Ok(if report.flushed == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}

fn stats(cli: &Cli, args: &SpoolArgs) -> anyhow::Result<Outcome> {
    let spool = open_spool(&args.spool)?;
    let dlqs: Vec<SpoolDlq> = spool
        .stats()?
        .into_iter()
        .map(|s| SpoolDlq {
            dlq: s.dlq,
            pending: s.pending,
            replayed: s.replayed,
            total: s.total,
            oldest_pending_at: s.oldest_pending_at,
        })
        .collect();
    let o = StatsOutput {
        spool: &args.spool,
        pending: dlqs.iter().map(|d| d.pending).sum(),
        dlqs,
    };
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let now = Utc::now();
            let rows: Vec<Vec<String>> = o
                .dlqs
                .iter()
                .map(|d| {
                    vec![
                        d.dlq.clone(),
                        d.pending.to_string(),
                        d.replayed.to_string(),
                        d.total.to_string(),
                        d.oldest_pending_at.map_or_else(
                            || "-".to_owned(),
                            |t| output::age((now - t).num_seconds()),
                        ),
                    ]
                })
                .collect();
            output::table(
                &mut out,
                &["dlq", "pending", "flushed", "total", "oldest pending"],
                &rows,
            )?;
        }
        _ => output::json(&mut out, cli.format, &o)?,
    }
    Ok(Outcome::Ok)
}
