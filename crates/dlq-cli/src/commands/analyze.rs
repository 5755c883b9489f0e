//! `dlq analyze`: failure groups by source, stage and error class.

use crate::Outcome;
use crate::cli::{AnalyzeArgs, Cli, Format};
use crate::output;
use dlq_core::DlqStore as _;
use dlq_core::analyze::{Analyzer, Group};
use std::collections::BTreeSet;

/// Groups the selected records.
pub fn groups(
    store: &crate::store::AnyStore,
    selection: &dlq_core::store::Selection,
) -> anyhow::Result<(Vec<String>, Vec<Group>)> {
    let mut analyzer = Analyzer::new();
    let mut dlqs = BTreeSet::new();
    for r in store.scan_all(selection, 1000) {
        let r = r?;
        dlqs.insert(r.dlq.clone());
        analyzer.add(&r);
    }
    Ok((dlqs.into_iter().collect(), analyzer.finish()))
}

/// Runs `dlq analyze`.
pub fn run(cli: &Cli, args: &AnalyzeArgs) -> anyhow::Result<Outcome> {
    let store = crate::store::open(cli.store_url())?;
    let selection = super::selection(&args.select)?;
    let (dlqs, groups) = groups(&store, &selection)?;
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    vec![
                        g.fingerprint.clone(),
                        g.dlq.clone(),
                        g.stage.clone(),
                        g.error_class.clone(),
                        g.count.to_string(),
                        format!("{:?}", g.verdict).to_lowercase(),
                        g.last_seen.format("%Y-%m-%d %H:%M:%S").to_string(),
                        output::cell(&g.example_error, 70),
                    ]
                })
                .collect();
            output::table(
                &mut out,
                &[
                    "fingerprint",
                    "dlq",
                    "stage",
                    "error_class",
                    "count",
                    "verdict",
                    "last seen",
                    "example",
                ],
                &rows,
            )?;
        }
        Format::Json => output::json(
            &mut out,
            cli.format,
            &serde_json::json!({ "dlqs": dlqs, "groups": groups }),
        )?,
        Format::Ndjson => {
            for g in &groups {
                output::json(&mut out, cli.format, g)?;
            }
        }
    }
    Ok(if groups.is_empty() {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}
