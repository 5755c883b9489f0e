//! `dlq ledger migrate`: the Kafka store's ledger in its current format.
//!
//! Versions before settlement segments wrote one ledger entry per settled
//! record; the store still reads them, and this command rewrites them as
//! segments (one commit) and deletes them, so that the ledger stays small
//! and a recreated DLQ topic cannot inherit them.

use crate::Outcome;
use crate::cli::{Cli, Format, LedgerAction, LedgerArgs};
use crate::commands::produce::kafka_config;
use crate::output;
use anyhow::Context as _;
use dlq_kafka::KafkaStore;

/// Runs `dlq ledger`.
pub fn run(cli: &Cli, args: &LedgerArgs) -> anyhow::Result<Outcome> {
    match args.action {
        LedgerAction::Migrate => migrate(cli),
    }
}

fn migrate(cli: &Cli) -> anyhow::Result<Outcome> {
    let config = kafka_config(cli, "dlq ledger migrate")?;
    let ledger = config.ledger_topic.clone();
    let mut store = KafkaStore::open(config).context("opening the Kafka store")?;
    let report = store
        .migrate_ledger()
        .with_context(|| format!("migrating the ledger {ledger}"))?;
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let rows = vec![
                vec!["converted".to_owned(), report.converted.to_string()],
                vec!["superseded".to_owned(), report.superseded.to_string()],
                vec!["dropped".to_owned(), report.dropped.to_string()],
                vec!["segments written".to_owned(), report.segments.to_string()],
            ];
            output::table(&mut out, &["per-record entries", "count"], &rows)?;
        }
        _ => output::json(&mut out, cli.format, &report)?,
    }
    Ok(Outcome::Ok)
}
