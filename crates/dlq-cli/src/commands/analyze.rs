//! `dlq analyze`: failure groups by source, stage, error class and the
//! template of the root-cause message (see `dlq_core::analyze`).

use crate::Outcome;
use crate::cli::{AnalyzeArgs, Cli, Format, FormatArg};
use crate::output;
use dlq_core::DlqStore as _;
use dlq_core::analyze::{Analyzer, Group};
use dlq_core::triage::Triage;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The config file read when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "dlq.toml";

/// The triage rules: the `[[triage.rule]]`s of the config file (`--config`,
/// else `./dlq.toml` if it exists) before the shipped ones.
pub fn load_triage(config: Option<&Path>) -> anyhow::Result<Arc<Triage>> {
    let path = config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.is_none() => {
            return Ok(Triage::builtin());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
        }
    };
    let triage = Triage::from_config(&text, true).map_err(|e| {
        anyhow::anyhow!(
            "{}: fix the [triage] section (every problem is listed; see docs/cli.md): {e}",
            path.display()
        )
    })?;
    Ok(Arc::new(triage))
}

/// Groups the selected records whose last failure is at or after `since`,
/// continuing from the template miners persisted in the store, and persists
/// what they learned.
pub fn groups(
    store: &mut crate::store::AnyStore,
    selection: &dlq_core::store::Selection,
    since: Option<chrono::DateTime<chrono::Utc>>,
    members: bool,
    triage: Arc<Triage>,
) -> anyhow::Result<(Vec<String>, Vec<Group>)> {
    let grouper = std::sync::Arc::new(super::load_grouper(store)?);
    let mut selection = selection.clone();
    // A filter on `fingerprint` sees the groups as they were before this
    // analysis: it keeps the saved state, and the analyzer learns on a copy
    // (made only then).
    selection.filter = selection.filter.map(|f| f.with_grouper(grouper.clone()));
    let grouper = std::sync::Arc::try_unwrap(grouper).unwrap_or_else(|shared| (*shared).clone());
    let mut analyzer = if members {
        Analyzer::with_members()
    } else {
        Analyzer::new()
    }
    .with_grouper(grouper)
    .with_triage(triage);
    let mut dlqs = BTreeSet::new();
    for r in store.scan_all(&selection, 1000) {
        let r = r?;
        if since.is_some_and(|t| r.letter.failed_at < t) {
            continue;
        }
        dlqs.insert(r.dlq.clone());
        analyzer.add(&r);
    }
    let (groups, grouper) = analyzer.finish_with_grouper();
    // The groups stand without the saved state; only later selections by
    // fingerprint need it. A state the store cannot take (e.g. larger than
    // a Kafka message may be) must not cost the analysis.
    if let Err(e) = dlq_core::analyze::save_grouper(store, &grouper) {
        eprintln!(
            "warning: the template miners could not be saved ({e}); this run's fingerprints \
             will not select records in inspect/replay until an analysis saves them"
        );
    }
    Ok((dlqs.into_iter().collect(), groups))
}

/// Runs `dlq analyze`.
pub fn run(cli: &Cli, args: &AnalyzeArgs) -> anyhow::Result<Outcome> {
    // The config first: a mistake in it costs no scan.
    let triage = load_triage(args.config.as_deref())?;
    let mut store = crate::store::open(cli.store_url())?;
    let selection = super::selection(&store, &args.select)?;
    let (dlqs, mut groups) = groups(&mut store, &selection, args.since, args.members, triage)?;
    if let Some(n) = args.top {
        groups.truncate(n);
    }
    let mut out = std::io::stdout().lock();
    match (cli.format_arg, cli.format) {
        (FormatArg::Markdown, _) => markdown(&mut out, &dlqs, &groups)?,
        (FormatArg::Html, _) => {
            crate::report_html::write(&mut out, &dlqs, &groups, chrono::Utc::now())?
        }
        (_, Format::Table) => table(&mut out, &groups)?,
        (_, Format::Json) => output::json(
            &mut out,
            cli.format,
            &serde_json::json!({ "dlqs": dlqs, "groups": groups }),
        )?,
        (_, Format::Ndjson) => {
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

/// The verdict, with the triage rule that gave it (`transient
/// [kafka.message_timed_out]`) unless the records' own flags did.
fn verdict(g: &Group) -> String {
    if g.verdict_rule == "record" {
        g.verdict.as_str().to_owned()
    } else {
        format!("{} [{}]", g.verdict.as_str(), g.verdict_rule)
    }
}

fn table(out: &mut impl Write, groups: &[Group]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.fingerprint.clone(),
                g.dlq.clone(),
                g.error_class.clone(),
                g.count.to_string(),
                verdict(g),
                g.last_seen.format("%Y-%m-%d %H:%M:%S").to_string(),
                output::cell(&g.typed_template, 60),
                output::cell(
                    &g.fields
                        .first()
                        .map(|f| f.detail.clone())
                        .unwrap_or_default(),
                    50,
                ),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "fingerprint",
            "dlq",
            "error_class",
            "count",
            "verdict",
            "last seen",
            "template",
            "fields",
        ],
        &rows,
    )?;
    Ok(())
}

/// Markdown text for a table cell: one line, pipes and backticks escaped.
fn md(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|").replace('`', "'")
}

fn markdown(out: &mut impl Write, dlqs: &[String], groups: &[Group]) -> anyhow::Result<()> {
    let total: u64 = groups.iter().map(|g| g.count).sum();
    writeln!(out, "# Failure groups\n")?;
    writeln!(
        out,
        "{} records in {} groups, DLQs: {}.\n",
        total,
        groups.len(),
        dlqs.join(", ")
    )?;
    writeln!(
        out,
        "| fingerprint | dlq | stage | error class | count | verdict | last seen |"
    )?;
    writeln!(out, "|---|---|---|---|--:|---|---|")?;
    for g in groups {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            g.fingerprint,
            md(&g.dlq),
            md(&g.stage),
            md(&g.error_class),
            g.count,
            verdict(g),
            g.last_seen.format("%Y-%m-%d %H:%M:%S")
        )?;
    }
    for g in groups {
        writeln!(
            out,
            "\n## `{}` {} ({})\n",
            g.fingerprint,
            md(&g.error_class),
            g.count
        )?;
        writeln!(out, "- template: `{}`", md(&g.typed_template))?;
        writeln!(
            out,
            "- source: {} / {}, partitions: {}",
            md(g.source_topic.as_deref().unwrap_or("-")),
            md(&g.stage),
            g.partitions
                .iter()
                .map(|(p, n)| format!("{p} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            out,
            "- seen: {} … {}",
            g.first_seen.format("%Y-%m-%d %H:%M:%S"),
            g.last_seen.format("%Y-%m-%d %H:%M:%S")
        )?;
        writeln!(
            out,
            "- verdict: **{}**: {}",
            verdict(g),
            md(&g.verdict_reason)
        )?;
        for f in &g.fields {
            writeln!(out, "- field: {}", f.detail)?;
        }
        writeln!(
            out,
            "- samples: {}",
            g.sample_ids
                .iter()
                .map(|i| format!("`{}`", md(i)))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            out,
            "- replay: `dlq replay --dlq {} --filter '{}'`",
            md(&g.dlq),
            g.replay_filter
        )?;
    }
    Ok(())
}
