//! `dlq archive`: moves dead letters from a store (a Kafka DLQ before its
//! retention deletes them, an embedded store that should stay small) to an
//! S3 archive store, where every command, replays included, works on them.
//!
//! Delivery: at least once into the archive, and idempotent there. Page by
//! page, the selected records are appended to the archive (durable when the
//! commit returns; appends are idempotent by `(dlq, id)`), the move is
//! audited, and only then are they settled in the source. A crash between
//! the two leaves them pending in the source and already in the archive: a
//! rerun finds them there (counted as `already_archived`) and settles them.
//! Records keep their id, envelope and status (pending or parked).
//!
//! The source settles them as `archived` (final: no replay or discard
//! selects them again there; the archive's copy is the live one), and the
//! audit log says where they went (`"action": "archive"`, the archive's
//! URL, the ids).
//!
//! Which records: every pending and parked one, or those stored longer ago
//! than `--older-than`, or (`--expiring`) those that retention deletes
//! within the monitor's expiry window — the records the monitor's expiry
//! risk counts, plus the parked ones retention deletes just the same.

use crate::Outcome;
use crate::cli::{ArchiveArgs, Cli, Format};
use crate::output;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use dlq_core::DlqStore as _;
use dlq_core::store::{Entry, Selection, Status, StoredRecord};
use dlq_monitor::{MonitorConfig, RetentionSource as _};
use dlq_server::audit::{Action, AuditEntry, AuditLog};
use dlq_server::{Principal, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Record ids written into one audit entry (the count is always there).
const AUDIT_IDS: usize = 1000;

/// What was moved from one DLQ.
#[derive(Debug, Default, serde::Serialize)]
struct Moved {
    selected: u64,
    archived: u64,
    already_archived: u64,
    settled: u64,
}

/// Runs `dlq archive`.
pub fn run(cli: &Cli, args: &ArchiveArgs) -> anyhow::Result<Outcome> {
    let from = args.from.as_deref().unwrap_or(cli.store_url());
    if !args.to.starts_with("s3://") {
        anyhow::bail!(
            "--to {:?}: the archive is an s3://BUCKET/PREFIX store",
            dlq_kafka::config::redact_url(&args.to)
        );
    }
    if from == args.to {
        anyhow::bail!("--from and --to name the same store");
    }
    let now = Utc::now();
    let older_than = args
        .older_than
        .map(|d| chrono::Duration::from_std(d).map(|d| now - d))
        .transpose()
        .context("--older-than is too long")?;
    let audit_path = (!args.dry_run).then(|| {
        args.audit_log
            .clone()
            .unwrap_or_else(|| PathBuf::from("dlq-audit.jsonl"))
    });
    let mut source = crate::store::open(from)?;
    if let Some(dlq) = &args.dlq {
        super::check_dlq_name(&source, dlq)?;
    }
    let expiring = if args.expiring {
        Some(expiring(args, &source, now)?)
    } else {
        None
    };
    let mut archive = crate::store::open(&args.to)?;
    let audit = audit_path
        .as_ref()
        .map(|p| {
            AuditLog::open(p).with_context(|| format!("opening the audit log {}", p.display()))
        })
        .transpose()?;
    let selection = Selection {
        dlq: args.dlq.clone(),
        statuses: vec![Status::Pending, Status::Parked],
        filter: None,
    };
    let mut by_dlq: BTreeMap<String, Moved> = BTreeMap::new();
    let mut cursor = None;
    // With --expiring and no DLQ of known retention, nothing can be chosen.
    let mut done = expiring.as_ref().is_some_and(|e| e.known.is_empty());
    while !done {
        let page = source.scan(&selection, cursor.as_ref(), args.batch_size as usize)?;
        let chosen: Vec<StoredRecord> = page
            .records
            .into_iter()
            .filter(|r| match &expiring {
                // At or before the cutoff, as the monitor's expiry risk counts.
                Some(e) => e.cutoff(&r.dlq).is_some_and(|c| r.stored_at <= c),
                None => older_than.is_none_or(|c| r.stored_at < c),
            })
            .collect();
        for r in &chosen {
            by_dlq.entry(r.dlq.clone()).or_default().selected += 1;
        }
        if !chosen.is_empty()
            && let Some(audit) = &audit
        {
            move_page(
                &mut source,
                &mut archive,
                audit,
                &args.to,
                chosen,
                &mut by_dlq,
            )?;
        }
        done = page.next.is_none();
        cursor = page.next;
    }
    let selected: u64 = by_dlq.values().map(|m| m.selected).sum();
    if let Some(e) = &expiring {
        for (dlq, why) in &e.unknown {
            eprintln!("{dlq}: not archived: {why}");
        }
    }
    let report = serde_json::json!({
        "from": dlq_kafka::config::redact_url(from),
        "to": args.to,
        "dry_run": args.dry_run,
        "selected": selected,
        "archived": by_dlq.values().map(|m| m.archived).sum::<u64>(),
        "already_archived": by_dlq.values().map(|m| m.already_archived).sum::<u64>(),
        "settled": by_dlq.values().map(|m| m.settled).sum::<u64>(),
        "dlqs": by_dlq,
        "expiring": expiring.as_ref().map(Expiring::report),
        "audit_log": audit_path.as_ref().map(|p| p.display().to_string()),
    });
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Json | Format::Ndjson => output::json(&mut out, cli.format, &report)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = by_dlq
                .iter()
                .map(|(dlq, m)| {
                    vec![
                        dlq.clone(),
                        m.selected.to_string(),
                        m.archived.to_string(),
                        m.already_archived.to_string(),
                        m.settled.to_string(),
                    ]
                })
                .collect();
            output::table(
                &mut out,
                &["dlq", "selected", "archived", "already archived", "settled"],
                &rows,
            )?;
        }
    }
    Ok(if selected == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}

/// Appends one page to the archive, audits it, then settles it in the source.
fn move_page(
    source: &mut crate::store::AnyStore,
    archive: &mut crate::store::AnyStore,
    audit: &AuditLog,
    to: &str,
    chosen: Vec<StoredRecord>,
    by_dlq: &mut BTreeMap<String, Moved>,
) -> anyhow::Result<()> {
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut entries = Vec::with_capacity(chosen.len());
    for r in chosen {
        ids.entry(r.dlq.clone())
            .or_default()
            .push(r.letter.id.clone());
        entries.push(Entry {
            dlq: r.dlq,
            letter: r.letter,
            status: r.status,
        });
    }
    for (dlq, dlq_ids) in &ids {
        let batch: Vec<Entry> = entries.iter().filter(|e| &e.dlq == dlq).cloned().collect();
        let report = archive
            .append(&batch)
            .with_context(|| format!("appending to the archive {to}; nothing was settled"))?;
        let moved = by_dlq.entry(dlq.clone()).or_default();
        moved.archived += report.appended as u64;
        moved.already_archived += report.duplicates as u64;
        let entry = AuditEntry {
            at: chrono::Utc::now(),
            actor: actor(),
            action: Action::Archive,
            dlq: dlq.clone(),
            details: serde_json::json!({
                "via": "archive",
                "to": to,
                "count": dlq_ids.len(),
                "ids": dlq_ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
                "ids_truncated": dlq_ids.len() > AUDIT_IDS,
            }),
        };
        audit
            .append(&entry)
            .context("writing the audit log; the records are in the archive and still pending in the source (a rerun settles them)")?;
        let settled = source.settle(dlq, dlq_ids, Status::Archived)?;
        moved.settled += settled.settled as u64;
    }
    Ok(())
}

/// `--expiring`: per DLQ, the time at or before which a stored record is
/// deleted by retention within the expiry window.
struct Expiring {
    window: Duration,
    /// DLQ → (retention, where it came from, cutoff).
    known: BTreeMap<String, (Duration, &'static str, DateTime<Utc>)>,
    /// DLQ → why nothing of it is archived.
    unknown: BTreeMap<String, String>,
}

impl Expiring {
    fn cutoff(&self, dlq: &str) -> Option<DateTime<Utc>> {
        self.known.get(dlq).map(|k| k.2)
    }

    fn report(&self) -> serde_json::Value {
        let fmt = dlq_monitor::format_duration;
        serde_json::json!({
            "window": fmt(self.window),
            "dlqs": self.known.iter().map(|(dlq, (retention, from, cutoff))| {
                (dlq.clone(), serde_json::json!({
                    "retention": fmt(*retention),
                    "retention_from": from,
                    "stored_before": cutoff,
                }))
            }).collect::<serde_json::Map<_, _>>(),
            "not_archived": self.unknown,
        })
    }
}

/// The retention of each DLQ (the store's, else the config's) and the
/// cutoff `now + expiry_window - retention`, as `dlq monitor` computes its
/// expiry risk.
fn expiring(
    args: &ArchiveArgs,
    source: &crate::store::AnyStore,
    now: DateTime<Utc>,
) -> anyhow::Result<Expiring> {
    let config = monitor_config(args.config.as_deref())?;
    let names = match &args.dlq {
        Some(dlq) => vec![match source {
            crate::store::AnyStore::Sqs(_) => dlq_sqs::config::queue_name(dlq)?,
            _ => dlq.clone(),
        }],
        None => source.dlqs()?,
    };
    let from_store = match source {
        crate::store::AnyStore::Kafka(k) => {
            super::monitor::KafkaRetention::new(k.config().clone()).retention(&names)
        }
        _ => BTreeMap::new(),
    };
    let window = config.expiry_window;
    let mut e = Expiring {
        window,
        known: BTreeMap::new(),
        unknown: BTreeMap::new(),
    };
    for name in names {
        let (retention, from) = match from_store.get(&name) {
            Some(Some(r)) => (*r, "store"),
            Some(None) => {
                e.unknown
                    .insert(name, "the store keeps its records forever".to_owned());
                continue;
            }
            None => match config.retention_for(&name) {
                Some(r) => (r, "config"),
                None => {
                    e.unknown.insert(
                        name.clone(),
                        format!(
                            "its retention is not known (set monitor.retention, or retention \
                             in [dlq.\"{name}\"], in the config)"
                        ),
                    );
                    continue;
                }
            },
        };
        let cutoff = chrono::Duration::from_std(window)
            .ok()
            .zip(chrono::Duration::from_std(retention).ok())
            .and_then(|(w, r)| now.checked_add_signed(w)?.checked_sub_signed(r));
        match cutoff {
            Some(c) => {
                e.known.insert(name, (retention, from, c));
            }
            None => {
                e.unknown.insert(
                    name,
                    format!(
                        "retention {} is out of range",
                        dlq_monitor::format_duration(retention)
                    ),
                );
            }
        }
    }
    Ok(e)
}

/// The monitor's config: `--config`, else `dlq.toml` when it exists, else
/// the defaults (a one-hour window, no retention).
fn monitor_config(path: Option<&Path>) -> anyhow::Result<MonitorConfig> {
    let default = Path::new("dlq.toml");
    let path = match path {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(MonitorConfig::default()),
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config {}", path.display()))?;
    MonitorConfig::from_toml(&text).with_context(|| {
        format!(
            "{}: fix the config (every problem is listed; see docs/monitoring.md)",
            path.display()
        )
    })
}

/// Who archives: the operating-system user, as an operator.
fn actor() -> Principal {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Principal {
        role: Role::Operator,
        label: format!("cli:{user}"),
    }
}
