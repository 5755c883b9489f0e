//! `dlq inspect`: dead letters, whole.

use crate::Outcome;
use crate::cli::{Cli, Format, InspectArgs};
use crate::output;
use chrono::{DateTime, Utc};
use dlq_core::DlqStore as _;
use dlq_core::analyze::Grouper;
use dlq_core::envelope::{self, EncodeOptions};
use dlq_core::store::{Status, StoredRecord};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// A record as `inspect` and `export` show it: store metadata and the
/// envelope, embedded verbatim so the original record stays byte-exact.
#[derive(Debug, Serialize)]
pub struct Shown {
    /// The DLQ.
    pub dlq: String,
    /// Its status.
    pub status: Status,
    /// The failure group.
    pub fingerprint: String,
    /// When the store received it.
    pub stored_at: DateTime<Utc>,
    /// When it was settled.
    pub settled_at: Option<DateTime<Utc>>,
    /// The whole envelope, claim checks resolved.
    pub record: Box<RawValue>,
}

/// The whole envelope of a stored record as JSON text (no size limit).
pub fn envelope_json(record: &StoredRecord) -> anyhow::Result<Box<RawValue>> {
    let enc = envelope::encode(&record.letter, &EncodeOptions::unlimited())?;
    Ok(RawValue::from_string(String::from_utf8(enc.bytes)?)?)
}

/// Builds the shown form of a record; its fingerprint as the persisted
/// template miners know it.
pub fn shown(record: &StoredRecord, grouper: &Grouper) -> anyhow::Result<Shown> {
    Ok(Shown {
        dlq: record.dlq.clone(),
        status: record.status,
        fingerprint: grouper.fingerprint(record),
        stored_at: record.stored_at,
        settled_at: record.settled_at,
        record: envelope_json(record)?,
    })
}

/// Runs `dlq inspect`.
pub fn run(cli: &Cli, args: &InspectArgs) -> anyhow::Result<Outcome> {
    let store = crate::store::open(cli.store_url())?;
    let mut selection = super::selection(&store, &args.select)?;
    let grouper = Arc::new(super::load_grouper(&store)?);
    selection.filter = selection.filter.map(|f| f.with_grouper(grouper.clone()));
    let mut records = Vec::new();
    for r in store.scan_all(&selection, 500) {
        if records.len() as u64 >= args.limit {
            break;
        }
        records.push(r?);
    }
    let mut out = std::io::stdout().lock();
    match cli.format {
        Format::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    let l = &r.letter;
                    vec![
                        l.id.clone(),
                        r.dlq.clone(),
                        r.status.to_string(),
                        l.error_class.clone(),
                        l.replays.to_string(),
                        output::cell(&l.error, 60),
                        if l.null_payload {
                            "(null: a tombstone)".to_owned()
                        } else {
                            output::cell(&String::from_utf8_lossy(&l.payload), 60)
                        },
                    ]
                })
                .collect();
            output::table(
                &mut out,
                &[
                    "id",
                    "dlq",
                    "status",
                    "error_class",
                    "replays",
                    "error",
                    "payload",
                ],
                &rows,
            )?;
        }
        Format::Json => {
            let shown = records
                .iter()
                .map(|r| shown(r, &grouper))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // A struct, not `json!`: a Value would re-serialize the raw
            // envelopes and lose their exact bytes.
            #[derive(Serialize)]
            struct Records<'a> {
                records: &'a [Shown],
            }
            output::json(&mut out, cli.format, &Records { records: &shown })?;
        }
        Format::Ndjson => {
            for r in &records {
                output::json(&mut out, cli.format, &shown(r, &grouper)?)?;
            }
        }
    }
    Ok(if records.is_empty() {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}
