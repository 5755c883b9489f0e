//! `send_to_dlq`: dead letters written straight to a DLQ topic — the
//! seed's function, with a result.
//!
//! The seed produced `{original_record, error, timestamp}` to the DLQ topic
//! and called `flush()` without reading a delivery report. Here each record
//! becomes a dlq envelope (a superset of that shape) appended to the Kafka
//! DLQ store — a durable write (`acks=all`, a transaction), idempotent by
//! the record's id; when the store cannot be reached or written, the
//! records go to the spool file, if one was given; what neither took is
//! counted as `failed`. It returns only when every record is in one of
//! those three states. After a successful write, records a spool still
//! holds from earlier calls are moved to Kafka too.

use crate::config::{StoreOptions, kafka_config, seconds};
use crate::errors::{DeliveryError, no_panic};
use crate::records::value_bytes;
use crate::spool::Spool;
use dlq_core::Failure;
use dlq_core::envelope::{DeadLetter, Source};
use dlq_core::store::{DlqStore, Entry, Status};
use dlq_kafka::KafkaStore;
use dlq_kafka::producer::{flush_spool, spool_pending};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;

/// Dead letters per store write.
const BATCH: usize = 500;

/// What `send_to_dlq` did with the records.
#[pyclass(module = "dlq", frozen, get_all)]
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// The DLQ topic.
    pub dlq: String,
    /// Records given.
    pub records: u64,
    /// Records written to the DLQ topic (acknowledged by every in-sync replica).
    pub dead_lettered: u64,
    /// Of those, records the DLQ already held (same id).
    pub duplicates: u64,
    /// Records written to the spool file because the DLQ could not be written.
    pub spooled: u64,
    /// Records neither in the DLQ nor in a spool: lost unless the caller
    /// keeps them (`send_to_dlq` raises `DeliveryError`).
    pub failed: u64,
    /// Records of earlier calls moved from the spool to Kafka.
    pub spool_flushed: u64,
    /// Records the spool still holds.
    pub spool_pending: u64,
    /// The ids given to the records, in order (the `dlq.id` of each envelope).
    pub ids: Vec<String>,
    /// Why the DLQ or the spool could not be written, when they could not.
    pub errors: Vec<String>,
}

#[pymethods]
impl SendReport {
    /// The report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("dlq", &self.dlq)?;
        d.set_item("records", self.records)?;
        d.set_item("dead_lettered", self.dead_lettered)?;
        d.set_item("duplicates", self.duplicates)?;
        d.set_item("spooled", self.spooled)?;
        d.set_item("failed", self.failed)?;
        d.set_item("spool_flushed", self.spool_flushed)?;
        d.set_item("spool_pending", self.spool_pending)?;
        d.set_item("ids", PyList::new(py, &self.ids)?)?;
        d.set_item("errors", PyList::new(py, &self.errors)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "SendReport(dlq={:?}, records={}, dead_lettered={}, duplicates={}, spooled={}, \
             failed={}, spool_flushed={}, spool_pending={})",
            self.dlq,
            self.records,
            self.dead_lettered,
            self.duplicates,
            self.spooled,
            self.failed,
            self.spool_flushed,
            self.spool_pending
        )
    }
}

/// The failure every record of one call shares.
struct Why {
    failure: Failure,
    attempts: u32,
    source_topic: Option<String>,
}

/// `dlq._native.send_dead_letters`: the mechanics of `dlq.send_to_dlq`
/// (which documents the arguments).
#[pyfunction]
#[pyo3(signature = (
    dlq_topic, records, *, error, error_class, stage, retryable, attempts,
    source_topic, config, spool, timeout, dlq_prefix, replication_factor
))]
#[allow(clippy::too_many_arguments)]
pub fn send_dead_letters(
    py: Python<'_>,
    dlq_topic: String,
    records: &Bound<'_, PyAny>,
    error: String,
    error_class: String,
    stage: String,
    retryable: bool,
    attempts: u32,
    source_topic: Option<String>,
    config: Option<&Bound<'_, PyDict>>,
    spool: Option<PathBuf>,
    timeout: Option<f64>,
    dlq_prefix: Option<String>,
    replication_factor: Option<i16>,
) -> PyResult<SendReport> {
    no_panic(|| {
        let options = StoreOptions {
            dlq_prefix,
            timeout: timeout.map(|t| seconds("timeout", t)).transpose()?,
            replication_factor,
        };
        let kafka = kafka_config(config, &options)?;
        if !dlq_topic.starts_with(&kafka.dlq_prefix) || dlq_topic == kafka.dlq_prefix {
            return Err(crate::errors::config_error(&[format!(
                "the DLQ topic {dlq_topic:?} must start with the DLQ prefix {:?} (e.g. {}rss.events), \
                 so that `dlq stats` and `dlq replay` find it; pass dlq_prefix=… if your DLQs \
                 are named otherwise",
                kafka.dlq_prefix, kafka.dlq_prefix
            )]));
        }
        let why = Why {
            failure: Failure {
                stage,
                error_class,
                message: error,
                retryable,
            },
            attempts: attempts.max(1),
            // dlq.rss.events holds the failures of rss.events: a replay
            // sends them back there.
            source_topic: source_topic
                .or_else(|| dlq_topic.strip_prefix(&kafka.dlq_prefix).map(str::to_owned)),
        };
        let mut payloads = Vec::new();
        for record in records.try_iter()? {
            payloads.push(value_bytes(&record?)?);
        }
        let entries: Vec<Entry> = payloads
            .into_iter()
            .map(|p| Entry {
                dlq: dlq_topic.clone(),
                letter: dead_letter(p, &why),
                status: Status::Pending,
            })
            .collect();
        let report = SendReport {
            dlq: dlq_topic.clone(),
            records: entries.len() as u64,
            ids: entries.iter().map(|e| e.letter.id.clone()).collect(),
            ..SendReport::default()
        };
        let report = py.detach(move || -> PyResult<SendReport> {
            let mut report = report;
            write(kafka, entries, spool.as_deref(), &mut report)?;
            Ok(report)
        })?;
        if report.failed > 0 {
            let message = format!(
                "{} of {} records could be written neither to the DLQ {} nor to a spool: {}",
                report.failed,
                report.records,
                report.dlq,
                report.errors.join("; ")
            );
            let err = DeliveryError::new_err(message);
            err.value(py).setattr("report", report.clone())?;
            return Err(err);
        }
        Ok(report)
    })
}

fn dead_letter(payload: Vec<u8>, why: &Why) -> DeadLetter {
    let id = uuid::Uuid::now_v7().to_string();
    let mut letter = DeadLetter::new(id, payload, &why.failure);
    letter.attempts = why.attempts;
    letter.source = Source {
        system: if why.source_topic.is_some() {
            "kafka".into()
        } else {
            "unknown".into()
        },
        topic: why.source_topic.clone(),
        ..Source::default()
    };
    letter
}

/// Writes the entries: the DLQ store, else the spool, else failed.
fn write(
    kafka: dlq_kafka::KafkaConfig,
    entries: Vec<Entry>,
    spool_path: Option<&std::path::Path>,
    report: &mut SendReport,
) -> PyResult<()> {
    let mut spool = match spool_path {
        Some(p) => Some(Spool::open(Some(p))?),
        None => None,
    };
    let mut store = match KafkaStore::open(kafka) {
        Ok(s) => Some(s),
        Err(e) => {
            report.errors.push(format!(
                "the DLQ store cannot be opened (is Kafka down?): {e}"
            ));
            None
        }
    };
    let mut stored_ok = false;
    let mut unwritten: Vec<Entry> = Vec::new();
    for chunk in entries.chunks(BATCH) {
        let written = match store.as_mut() {
            Some(s) if unwritten.is_empty() => Some(s.append(chunk)),
            _ => None,
        };
        match written {
            Some(Ok(r)) => {
                stored_ok = true;
                report.dead_lettered += chunk.len() as u64;
                report.duplicates += r.duplicates as u64;
            }
            Some(Err(e)) => {
                report
                    .errors
                    .push(format!("writing to the DLQ {} failed: {e}", report.dlq));
                unwritten.extend_from_slice(chunk);
            }
            None => unwritten.extend_from_slice(chunk),
        }
    }
    if !unwritten.is_empty() {
        let n = unwritten.len() as u64;
        match spool.as_mut() {
            Some(s) => match s.append(&unwritten) {
                Ok(_) => report.spooled += n,
                Err(e) => {
                    report
                        .errors
                        .push(format!("writing to the spool failed too: {e}"));
                    report.failed += n;
                }
            },
            None => report.failed += n,
        }
    }
    if let (Some(spool), Some(store), true) = (spool.as_mut(), store.as_mut(), stored_ok)
        && report.spooled == 0
    {
        // Kafka takes writes: move what earlier calls had to spool.
        match flush_spool(spool, store) {
            Ok(r) => report.spool_flushed = r.flushed,
            Err(e) => report.errors.push(format!(
                "moving the spool to Kafka failed (it stays spooled): {e}"
            )),
        }
    }
    if let Some(spool) = &spool {
        report.spool_pending = spool_pending(spool).unwrap_or(0);
    }
    Ok(())
}
