//! `dlq stats`: the size of each DLQ.

use crate::Outcome;
use crate::cli::{Cli, Format, StatsArgs};
use crate::output;
use crate::store::AnyStore;
use chrono::{DateTime, Utc};
use dlq_core::DlqStore as _;
use dlq_core::store::{DlqStats, PartitionStats};
use serde::Serialize;

/// One DLQ in `--format json`.
#[derive(Debug, Serialize)]
struct StatsRow<'a> {
    dlq: &'a str,
    pending: u64,
    parked: u64,
    replayed: u64,
    discarded: u64,
    archived: u64,
    total: u64,
    oldest_pending_at: Option<DateTime<Utc>>,
    oldest_pending_age_seconds: Option<i64>,
    partitions: &'a [PartitionStats],
    /// An SQS store: what SQS itself counts in the DLQ's queue right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    sqs: Option<SqsCounts>,
}

/// SQS's own approximate counts of a DLQ queue.
#[derive(Debug, Serialize)]
struct SqsCounts {
    visible: u64,
    in_flight: u64,
    delayed: u64,
}

/// Runs `dlq stats`.
pub fn run(cli: &Cli, args: &StatsArgs) -> anyhow::Result<Outcome> {
    let store = crate::store::open(cli.store_url())?;
    if let Some(dlq) = &args.dlq {
        super::check_dlq_name(&store, dlq)?;
        // An SQS store knows the queues its index holds and the redrive
        // targets; a DLQ named here may be neither yet (dlq wrote it from
        // another machine): read it first.
        if let AnyStore::Sqs(sqs) = &store {
            sqs.sync(dlq)?;
        }
    }
    let mut stats: Vec<DlqStats> = store.stats()?;
    if let Some(dlq) = &args.dlq {
        // An SQS store names DLQs by their queues (dlq.rss.events is
        // dlq-rss-events).
        let wanted = match &store {
            AnyStore::Sqs(_) => dlq_sqs::config::queue_name(dlq)?,
            _ => dlq.clone(),
        };
        stats.retain(|s| s.dlq == wanted);
    }
    let now = Utc::now();
    let mut sqs_counts = Vec::with_capacity(stats.len());
    for s in &stats {
        sqs_counts.push(match &store {
            AnyStore::Sqs(sqs) => sqs.queue_counts(&s.dlq)?.map(|c| SqsCounts {
                visible: c.visible,
                in_flight: c.in_flight,
                delayed: c.delayed,
            }),
            _ => None,
        });
    }
    let rows: Vec<StatsRow<'_>> = stats
        .iter()
        .zip(sqs_counts)
        .map(|(s, sqs)| StatsRow {
            dlq: &s.dlq,
            pending: s.pending,
            parked: s.parked,
            replayed: s.replayed,
            discarded: s.discarded,
            archived: s.archived,
            total: s.total,
            oldest_pending_at: s.oldest_pending_at,
            oldest_pending_age_seconds: s.oldest_pending_age(now).map(|d| d.num_seconds()),
            partitions: &s.partitions,
            sqs,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.dlq.to_owned(),
                        r.pending.to_string(),
                        r.parked.to_string(),
                        r.replayed.to_string(),
                        r.discarded.to_string(),
                        r.archived.to_string(),
                        r.total.to_string(),
                        r.oldest_pending_age_seconds
                            .map_or_else(|| "-".to_owned(), output::age),
                    ]
                })
                .collect();
            output::table(
                &mut out,
                &[
                    "dlq",
                    "pending",
                    "parked",
                    "replayed",
                    "discarded",
                    "archived",
                    "total",
                    "oldest pending",
                ],
                &table,
            )?;
        }
        Format::Json => output::json(&mut out, cli.format, &serde_json::json!({ "dlqs": rows }))?,
        Format::Ndjson => {
            for r in &rows {
                output::json(&mut out, cli.format, r)?;
            }
        }
    }
    Ok(if rows.is_empty() {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}
