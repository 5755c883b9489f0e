//! `dlq import`: NDJSON in; v1 envelopes, seed-format envelopes and raw
//! records are told apart line by line.

use crate::Outcome;
use crate::cli::{Cli, Format, ImportArgs};
use crate::output;
use anyhow::Context as _;
use dlq_core::DlqStore as _;
use dlq_core::envelope;
use dlq_core::store::{Entry, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};

/// What an import did.
#[derive(Debug, Default, Serialize)]
struct ImportReport {
    lines: u64,
    imported: u64,
    duplicates: u64,
    blank_lines_skipped: u64,
    by_format: BTreeMap<&'static str, u64>,
    by_dlq: BTreeMap<String, u64>,
}

/// Runs `dlq import`.
pub fn run(cli: &Cli, args: &ImportArgs) -> anyhow::Result<Outcome> {
    let mut store = crate::store::open(cli.store_url())?;
    // DLQs are named after the records' source topics with the store's
    // prefix (`dlq.` unless a Kafka store is configured otherwise).
    let prefix = match &store {
        crate::store::AnyStore::Kafka(k) => k.config().dlq_prefix.clone(),
        _ => "dlq.".to_owned(),
    };
    if let Some(dlq) = &args.dlq {
        super::check_dlq_name(&store, dlq)?;
    }
    let mut reader: Box<dyn BufRead> = if args.input == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            File::open(&args.input).with_context(|| format!("opening {}", args.input))?,
        ))
    };
    let mut report = ImportReport::default();
    let mut batch = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        report.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            report.blank_lines_skipped += 1;
            continue;
        }
        // Content-derived ids make importing the same file twice a no-op.
        let fallback = format!("import:{}", &envelope::sha256_hex(&line)[..24]);
        let mut letter = envelope::decode(&line, &fallback);
        if letter.has_claim_checks() {
            // Its blobs live in another store; keep the line itself instead.
            letter = envelope::decode(b"", &fallback);
            letter.payload = line.clone();
            letter.error = "envelope refers to claim-check blobs that are not in this store; \
                            the whole envelope is kept as the payload"
                .into();
        }
        *report.by_format.entry(letter.origin.as_str()).or_default() += 1;
        let dlq = args
            .dlq
            .clone()
            .unwrap_or_else(|| match &letter.source.topic {
                Some(t) if !t.is_empty() => format!("{prefix}{t}"),
                _ => format!("{prefix}imported"),
            });
        *report.by_dlq.entry(dlq.clone()).or_default() += 1;
        batch.push(Entry {
            dlq,
            letter,
            status: Status::Pending,
        });
        if batch.len() >= 1000 {
            flush(&mut store, &mut batch, &mut report)?;
        }
    }
    flush(&mut store, &mut batch, &mut report)?;
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => output::table(
            &mut out,
            &["", "records"],
            &[
                vec!["lines".into(), report.lines.to_string()],
                vec!["imported".into(), report.imported.to_string()],
                vec!["duplicates".into(), report.duplicates.to_string()],
                vec![
                    "blank lines skipped".into(),
                    report.blank_lines_skipped.to_string(),
                ],
            ],
        )?,
        _ => output::json(&mut out, cli.format, &report)?,
    }
    Ok(if report.imported + report.duplicates == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}

fn flush(
    store: &mut crate::store::AnyStore,
    batch: &mut Vec<Entry>,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let r = store.append(batch)?;
    report.imported += r.appended as u64;
    report.duplicates += r.duplicates as u64;
    batch.clear();
    Ok(())
}
