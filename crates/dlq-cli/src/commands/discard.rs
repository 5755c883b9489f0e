//! `dlq discard`: settles dead letters as discarded (a purge), with the
//! selection of `dlq replay` and the audit log of `dlq serve`.
//!
//! The records are chosen and settled by `dlq_core::discard`, as the
//! server's discard endpoint does. Before anything is settled, one entry is
//! appended to the audit log (the file and format of `dlq serve`, so API
//! and command-line discards share one trail) and synced: a discard that
//! cannot be audited is not carried out. A dry run changes and audits
//! nothing.

use crate::Outcome;
use crate::cli::{Cli, DiscardArgs, Format, SelectArgs, StatusArg};
use crate::output;
use anyhow::Context as _;
use dlq_server::audit::{Action, AuditEntry, AuditLog};
use dlq_server::{Principal, Role};
use std::path::{Path, PathBuf};

/// The config file read when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "dlq.toml";
/// The audit log when neither `--audit-log` nor `[serve] audit_log` names
/// one: the default of `dlq serve`.
const DEFAULT_AUDIT_LOG: &str = "dlq-audit.jsonl";
/// Record ids written into one audit entry (the count is always there), as
/// the server does.
const AUDIT_IDS: usize = 1000;
/// Record ids a dry run lists in the table format.
const SHOWN_IDS: usize = 20;

/// Runs `dlq discard`.
pub fn run(cli: &Cli, args: &DiscardArgs) -> anyhow::Result<Outcome> {
    if args.filter.is_none() && args.ids.is_empty() && !args.all {
        anyhow::bail!(
            "say what to discard: --filter EXPR (e.g. the replay_filter of a `dlq analyze` group), \
             --id ID, or --all for every record of the selection"
        );
    }
    if let Some(s) = args.status.iter().find(|s| {
        matches!(
            s,
            StatusArg::Replayed | StatusArg::Discarded | StatusArg::Archived
        )
    }) {
        anyhow::bail!(
            "--status {}: only pending and parked records can be discarded",
            format!("{s:?}").to_lowercase()
        );
    }
    // Known before the store is touched: a bad config costs nothing.
    let audit_path = (!args.dry_run).then(|| audit_log_path(args)).transpose()?;
    let mut store = crate::store::open(cli.store_url())?;
    let mut selection = super::selection(
        &store,
        &SelectArgs {
            dlq: Some(args.dlq.clone()),
            filter: args.filter.clone(),
            status: args.status.clone(),
        },
    )?;
    if args.status.contains(&StatusArg::All) {
        selection.statuses = vec![
            dlq_core::store::Status::Pending,
            dlq_core::store::Status::Parked,
        ];
    }
    selection.filter = super::with_fingerprints(&store, selection.filter.take())?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let chosen = dlq_core::discard::choose(&store, &args.dlq, &args.ids, &selection, limit)?;
    let selected = chosen.ids.len();
    let mut settled = 0;
    if let Some(path) = &audit_path
        && selected > 0
    {
        let log = AuditLog::open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        let entry = AuditEntry {
            at: chrono::Utc::now(),
            actor: actor(),
            action: Action::Discard,
            dlq: args.dlq.clone(),
            details: serde_json::json!({
                "via": "cli",
                "count": selected,
                "filter": args.filter,
                "statuses": selection.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "ids": chosen.ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
                "ids_truncated": selected > AUDIT_IDS,
            }),
        };
        log.append(&entry).with_context(|| {
            format!(
                "writing the audit log {}; nothing was discarded",
                path.display()
            )
        })?;
        settled = dlq_core::discard::settle(&mut store, &args.dlq, &chosen.ids)?;
        eprintln!(
            "dlq discard: {settled} of {selected} selected records of {} settled as discarded \
             (audit: {})",
            args.dlq,
            path.display()
        );
    }
    let report = serde_json::json!({
        "dlq": args.dlq,
        "dry_run": args.dry_run,
        "selected": selected,
        "discarded": settled,
        "not_found": chosen.not_found,
        "ids": if args.dry_run { chosen.ids.clone() } else { Vec::new() },
        "audit_log": audit_path.as_ref().map(|p| p.display().to_string()),
    });
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Json | Format::Ndjson => output::json(&mut out, cli.format, &report)?,
        Format::Table => {
            let mut rows = vec![
                vec!["dlq".to_owned(), args.dlq.clone()],
                vec![
                    if args.dry_run {
                        "would discard"
                    } else {
                        "selected"
                    }
                    .to_owned(),
                    selected.to_string(),
                ],
            ];
            if !args.dry_run {
                rows.push(vec!["discarded".to_owned(), settled.to_string()]);
            }
            if !chosen.not_found.is_empty() {
                rows.push(vec![
                    "not found".to_owned(),
                    output::cell(&chosen.not_found.join(", "), 80),
                ]);
            }
            if args.dry_run {
                let mut ids = chosen
                    .ids
                    .iter()
                    .take(SHOWN_IDS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if selected > SHOWN_IDS {
                    ids.push_str(&format!(" … and {} more", selected - SHOWN_IDS));
                }
                rows.push(vec!["ids".to_owned(), ids]);
            }
            output::table(&mut out, &["", "records"], &rows)?;
        }
    }
    Ok(if selected == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}

/// Who discards: the operating-system user, as an operator (the command
/// line has no tokens; whoever can open the store may discard).
fn actor() -> Principal {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Principal {
        role: Role::Operator,
        label: format!("cli:{user}"),
    }
}

/// `--audit-log`, else the config's `[serve] audit_log` (relative to the
/// config file, as `dlq serve` reads it), else [`DEFAULT_AUDIT_LOG`].
fn audit_log_path(args: &DiscardArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.audit_log {
        return Ok(p.clone());
    }
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.config.is_none() => {
            return Ok(PathBuf::from(DEFAULT_AUDIT_LOG));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
        }
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    match table.get("serve").and_then(|s| s.get("audit_log")) {
        None => Ok(PathBuf::from(DEFAULT_AUDIT_LOG)),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => {
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Ok(base.join(s))
        }
        Some(_) => anyhow::bail!(
            "{}: serve.audit_log: expected the path of a file",
            path.display()
        ),
    }
}
